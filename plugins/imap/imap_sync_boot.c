/* Bootstrap (the newest N messages of a folder) and progressive backfill
 * downward by UID. */
#include "imap_sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The examine mode that yields HIGHESTMODSEQ when the server has it. */
static imap_examine_mode modseq_mode(imap_conn *conn)
{
    if (conn == NULL)
        return IMAP_EXAMINE_PLAIN;
    imap_strategy s =
        imap_strategy_choose(imap_conn_caps(conn)->bits, imap_conn_enabled(conn));
    return s == IMAP_STRATEGY_PLAIN ? IMAP_EXAMINE_PLAIN : IMAP_EXAMINE_CONDSTORE;
}

typedef struct boot_ctx {
    mp_batch *batch;
    uint32_t lowest; /* lowest UID of the batches completed so far */
    uint32_t floor;  /* lowest UID that exists below the cursor     */
    uint32_t uidvalidity;
    int more_older; /* messages older than the list exist          */
    int with_pos;   /* checkpoint commits the backfill position    */
    int64_t deadline;
} boot_ctx;

static mp_status boot_checkpoint(void *arg, uint32_t lo, uint32_t hi, size_t emitted,
                                 int *stop_r, mp_error *err)
{
    boot_ctx *bx = arg;
    (void)hi;
    (void)emitted;
    if (bx->lowest == 0 || lo < bx->lowest)
        bx->lowest = lo;
    /* Backfill makes its position durable batch by batch. A bootstrap
     * commits its cursor at the end; until then the host's ingest bound
     * commits what is staged in steps. */
    mp_status st = MP_OK;
    if (bx->with_pos) {
        char *pos = imap_pos_format(bx->uidvalidity, bx->lowest);
        int done = !bx->more_older && bx->lowest <= bx->floor;
        st = imap_host->batch_commit(bx->batch, NULL, pos, done, err);
        free(pos);
    }
    if (bx->deadline > 0 && imap_host->now_ms() >= bx->deadline)
        *stop_r = 1;
    return st;
}

/* The newest `max` UIDs below `uidnext` by sequence number, which needs
 * no listing of the whole folder; with sizes, each one's RFC822.SIZE in
 * the same answer (the body fetch then needs no SEARCH LARGER, and sizes
 * its window from them). */
typedef struct seq_msg {
    uint32_t uid;
    uint32_t size; /* clamped: anything that large is over max_message */
} seq_msg;

typedef struct seq_ctx {
    seq_msg *msgs;
    size_t n, cap;
    uint32_t below;
    imap_budget budget;
} seq_ctx;

static int seq_untagged(const imap_response *r, void *arg)
{
    seq_ctx *cx = arg;
    if (r->kind != IMAP_R_UNTAGGED || r->keyword == NULL ||
        strcasecmp(r->keyword, "FETCH") != 0)
        return 0;
    const imap_token *u = imap_fetch_item(r, "UID");
    uint64_t uid = 0, size = 0;
    if (u == NULL || imap_token_u64(u, &uid) < 0 || uid == 0 || uid > UINT32_MAX)
        return 0;
    /* Mail that arrived after the EXAMINE belongs to delta (as new). */
    if (cx->below != 0 && uid >= cx->below)
        return 0;
    const imap_token *sz = imap_fetch_item(r, "RFC822.SIZE");
    if (sz == NULL || imap_token_u64(sz, &size) < 0)
        size = 0;
    if (imap_budget_reserve(&cx->budget, (void **)&cx->msgs, &cx->cap, cx->n + 1,
                            sizeof *cx->msgs) < 0)
        return 1;
    cx->msgs[cx->n].uid = (uint32_t)uid;
    cx->msgs[cx->n].size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
    cx->n++;
    return 0;
}

static int cmp_seq_msg(const void *x, const void *y)
{
    const seq_msg *a = x, *b = y;
    return a->uid < b->uid ? -1 : a->uid > b->uid;
}

/* Send FETCH <range> (UID [RFC822.SIZE]) by sequence number. */
static int send_seq_fetch(imap_conn *conn, char *tag, const char *range, int with_sizes,
                          char **error_r)
{
    return imap_send(conn, tag, error_r, "FETCH %a %a", range,
                     with_sizes ? "(UID RFC822.SIZE)" : "(UID)");
}

/* Wait for a FETCH sent by send_seq_fetch, adding to cx. -1 on a failed
 * connection (*st_r set, the connection dropped); else 0 with its status. */
static int wait_seq_fetch(imap_account *a, imap_conn **connp, const char *tag,
                          seq_ctx *cx, imap_status *status_r, char **text_r,
                          mp_status *st_r, mp_error *err)
{
    char *error = NULL;
    int rc = imap_sync_finish(*connp, 0, tag, seq_untagged, cx, status_r, text_r, &error);
    if (rc < 0)
        *st_r = cx->budget.over ? imap_sync_over_budget(a, connp, "FETCH UID", err)
                                : imap_sync_io_fail(a, connp, "FETCH UID", error, err);
    free(error);
    return rc;
}

/* cx's messages sorted by UID, each once, the newest `max`, split into
 * *uids_r and *sizes_r (NULL unless `with_sizes`); cx emptied. */
static void seq_finish(seq_ctx *cx, uint32_t max, int with_sizes, uint32_t **uids_r,
                       uint32_t **sizes_r, size_t *n_r)
{
    if (cx->n > 0)
        qsort(cx->msgs, cx->n, sizeof *cx->msgs, cmp_seq_msg);
    size_t n = 0;
    for (size_t i = 0; i < cx->n; i++)
        if (n == 0 || cx->msgs[n - 1].uid != cx->msgs[i].uid)
            cx->msgs[n++] = cx->msgs[i];
    size_t skip = n > max ? n - max : 0;
    n -= skip;
    uint32_t *uids = imap_xcalloc(n > 0 ? n : 1, sizeof *uids);
    uint32_t *sizes = with_sizes ? imap_xcalloc(n > 0 ? n : 1, sizeof *sizes) : NULL;
    for (size_t i = 0; i < n; i++) {
        uids[i] = cx->msgs[skip + i].uid;
        if (sizes != NULL)
            sizes[i] = cx->msgs[skip + i].size;
    }
    free(cx->msgs);
    memset(cx, 0, sizeof *cx);
    *uids_r = uids;
    *sizes_r = sizes;
    *n_r = n;
}

/* The newest `max` messages of the examined box, sequence numbers
 * [lo, hi] of which are in cx already (lo 0: none). */
static mp_status newest_uids(imap_account *a, imap_conn **connp, const imap_box *box,
                             uint32_t max, int with_sizes, seq_ctx *cx, uint32_t have_lo,
                             uint32_t **uids_r, uint32_t **sizes_r, size_t *n_r,
                             mp_error *err)
{
    uint32_t lo = box->exists > max ? box->exists - max + 1 : 1;
    char range[32];
    if (have_lo == 0)
        snprintf(range, sizeof range, "%u:*", (unsigned)lo);
    else
        snprintf(range, sizeof range, "%u:%u", (unsigned)lo, (unsigned)(have_lo - 1));
    mp_status st = MP_OK;
    if (have_lo == 0 || lo < have_lo) {
        imap_status status = IMAP_NONE;
        char tag[16];
        char *text = NULL, *error = NULL;
        if (send_seq_fetch(*connp, tag, range, with_sizes, &error) < 0) {
            st = imap_sync_io_fail(a, connp, "FETCH UID", error, err);
            free(error);
        } else if (wait_seq_fetch(a, connp, tag, cx, &status, &text, &st, err) == 0 &&
                   status != IMAP_OK) {
            st = imap_sync_answer_fail(a, NULL, "FETCH UID", NULL, status, text, err);
        }
        free(text);
    }
    if (st != MP_OK) {
        free(cx->msgs);
        memset(cx, 0, sizeof *cx);
        return st;
    }
    seq_finish(cx, max, with_sizes, uids_r, sizes_r, n_r);
    return MP_OK;
}

/* The FETCH of the newest UIDs pipelined behind the EXAMINE, its range
 * from the LIST-STATUS hint: what EXISTS will probably say. */
typedef struct spec_fetch {
    uint32_t lo; /* first sequence number asked for */
    int with_sizes;
    char tag[16];
} spec_fetch;

static int send_spec(imap_conn *conn, void *arg, char **error_r)
{
    spec_fetch *sp = arg;
    char range[32];
    snprintf(range, sizeof range, "%u:*", (unsigned)sp->lo);
    return send_seq_fetch(conn, sp->tag, range, sp->with_sizes, error_r);
}

mp_status imap_bootstrap(mp_account *acct, const char *folder, uint32_t max,
                         mp_batch *batch, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    mp_status st = imap_sync_connect(a, &a->sync_conn, err);
    if (st != MP_OK)
        return st;
    int bodies = imap_host->core_setting("sync.fetch_bodies") == 1;
    /* With a hint from LIST-STATUS, the newest UIDs are asked for behind
     * the EXAMINE: one round trip for both. What the hint got wrong is
     * mended below from EXISTS. */
    uint32_t hint = 0;
    spec_fetch sp = {.with_sizes = bodies};
    int spec = max > 0 && imap_list_hint_take(a, folder, &hint) && hint > 0;
    if (spec)
        sp.lo = hint > max ? hint - max + 1 : 1;
    imap_box box;
    st = imap_sync_examine_then(a, &a->sync_conn, folder, modseq_mode(a->sync_conn), NULL,
                                spec ? send_spec : NULL, &sp, &box, err);
    if (st != MP_OK)
        return st;

    uint32_t *uids = NULL, *sizes = NULL;
    size_t n = 0;
    seq_ctx cx = {.below = box.uidnext, .budget = {.limit = a->max_memory}};
    uint32_t have_lo = 0;
    if (spec) {
        imap_status status = IMAP_NONE;
        char *text = NULL;
        if (wait_seq_fetch(a, &a->sync_conn, sp.tag, &cx, &status, &text, &st, err) < 0) {
            imap_box_clear(&box);
            return st;
        }
        free(text);
        /* Refused (an empty folder), or the folder shrank below the range
         * (its answer was then the last message only): as without. */
        if (status == IMAP_OK && sp.lo <= box.exists) {
            have_lo = sp.lo;
        } else {
            free(cx.msgs);
            cx.msgs = NULL;
            cx.n = cx.cap = 0;
        }
    }
    if (max > 0 && box.exists > 0)
        st = newest_uids(a, &a->sync_conn, &box, max, bodies, &cx, have_lo, &uids, &sizes,
                         &n, err);
    else
        free(cx.msgs);
    if (st == MP_OK && box.uidnext == 0) {
        /* No UIDNEXT in the EXAMINE (pre-RFC 3501 servers): the highest UID
         * seen stands in, which is what the cursor needs. */
        uint32_t *all = NULL;
        size_t n_all = 0;
        st = imap_sync_uids(a, &a->sync_conn, 1, 0, 1, &all, &n_all, NULL, err);
        box.uidnext = n_all > 0 ? all[n_all - 1] + 1 : 1;
        free(all);
    }
    /* The cursor is the state as of the EXAMINE, before fetching, so mail
     * arriving meanwhile is delivered by delta (a replay folds). */
    imap_cursor cur = {box.uidvalidity, box.uidnext, box.highestmodseq};
    int more_older = box.exists > max;
    boot_ctx bx = {
        .batch = batch,
        .uidvalidity = box.uidvalidity,
        .more_older = more_older,
        .floor = n > 0 ? uids[0] : 1,
    };
    if (st == MP_OK && n > 0)
        st = imap_sync_summaries_sized(a, &a->sync_conn, batch, folder, box.uidvalidity,
                                       uids, sizes, n, 1, MP_CHANGE_SYNCED, 0,
                                       boot_checkpoint, &bx, err);
    if (st == MP_OK) {
        char *cursor = imap_cursor_format(&cur);
        char *pos = NULL;
        int done = 1;
        if (max > 0 && n > 0) {
            pos = imap_pos_format(box.uidvalidity, bx.lowest != 0 ? bx.lowest : uids[0]);
            done = !more_older;
        } else if (max > 0 && more_older) {
            /* Every listed message vanished meanwhile: backfill continues
             * below the cursor. */
            pos = imap_pos_format(box.uidvalidity, box.uidnext);
            done = 0;
        }
        st = imap_host->batch_commit(batch, cursor, pos, done, err);
        free(cursor);
        free(pos);
        imap_sync_log(a, MP_LOG_DEBUG,
                      "bootstrap \"%s\": %zu of %u messages, cursor v1:%u:%u", folder, n,
                      (unsigned)box.exists, (unsigned)box.uidvalidity,
                      (unsigned)box.uidnext);
    }
    free(uids);
    free(sizes);
    imap_box_clear(&box);
    return st;
}

mp_status imap_backfill(mp_account *acct, const char *folder, const char *backfill_pos,
                        uint32_t max, mp_batch *batch, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    uint32_t uidvalidity = 0, lowest = 0;
    if (imap_pos_parse(backfill_pos, &uidvalidity, &lowest) < 0)
        return mp_fail(err, MP_RESYNC,
                       "backfill position \"%s\" is not an imap v1 position",
                       backfill_pos != NULL ? backfill_pos : "(none)");
    if (lowest <= 1)
        return imap_host->batch_commit(batch, NULL, NULL, 1, err);
    if (max == 0)
        return MP_OK;

    imap_box box;
    mp_status st =
        imap_sync_examine(a, &a->sync_conn, folder, IMAP_EXAMINE_PLAIN, NULL, &box, err);
    if (st != MP_OK)
        return st;
    if (box.uidvalidity != uidvalidity) {
        /* Delta re-maps the folder and commits a position in the new UID
         * space; backfilling the old one meanwhile would load wrong ids. */
        imap_box_clear(&box);
        st = mp_fail(err, MP_RETRY, "uidvalidity changed; waiting for resync");
        err->retry_after_ms = 60000;
        return st;
    }
    imap_box_clear(&box);

    uint32_t *uids = NULL;
    size_t n = 0, total = 0;
    st = imap_sync_uids(a, &a->sync_conn, 1, lowest - 1, max, &uids, &n, &total, err);
    if (st != MP_OK)
        return st;
    if (n == 0) {
        free(uids);
        return imap_host->batch_commit(batch, NULL, NULL, 1, err);
    }
    boot_ctx bx = {
        .batch = batch,
        .uidvalidity = uidvalidity,
        .more_older = total > n,
        .floor = uids[0],
        .with_pos = 1,
        .deadline = imap_host->batch_deadline_ms(batch),
    };
    st = imap_sync_summaries_sized(a, &a->sync_conn, batch, folder, uidvalidity, uids,
                                   NULL, n, 1, MP_CHANGE_SYNCED, bx.deadline,
                                   boot_checkpoint, &bx, err);
    free(uids);
    return st;
}

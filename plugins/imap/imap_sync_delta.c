/* Delta sync by strategy: QRESYNC (VANISHED and changed flags come with the
 * EXAMINE), CONDSTORE (CHANGEDSINCE, expunges by UID set comparison at a
 * slower cadence), plain (UIDNEXT for new mail, a full UID/flag scan at a
 * slower cadence). New mail is found by UID, never by \Seen or \Recent. */
#include "imap_sync.h"

#include <stdlib.h>
#include <string.h>

/* Plain servers: how many of the newest stored messages have their flags
 * compared on every poll (the full scan runs at IMAP_SCAN_INTERVAL_MS). */
#define IMAP_RECENT_WINDOW 500

typedef struct delta_ctx {
    imap_account *a;
    const char *folder;
    mp_batch *batch;
    imap_cursor cur;    /* as given; intermediate commits stay behind it   */
    uint32_t done_upto; /* highest new UID committed                      */
} delta_ctx;

static mp_status emit_simple(delta_ctx *dx, mp_change_kind kind, const char *id,
                             uint32_t uid, const char *flags, mp_error *err)
{
    mp_change c = {.kind = kind, .id = id, .uid = uid, .flags = flags, .size = -1};
    return imap_host->batch_change(dx->batch, &c, err);
}

static mp_status emit_uid(delta_ctx *dx, mp_change_kind kind, uint32_t uid,
                          const char *flags, mp_error *err)
{
    char *id = imap_id_format(dx->folder, dx->cur.uidvalidity, uid);
    mp_status st = emit_simple(dx, kind, id, uid, flags, err);
    free(id);
    return st;
}

/* Stored messages of the current UID space below the cursor's UIDNEXT. */
static int stored_in_space(const delta_ctx *dx, const imap_stored *s, uint32_t *uid_r)
{
    uint32_t uv = 0, uid = 0;
    if (imap_id_parse(s->id, NULL, &uv, &uid) < 0 || uv != dx->cur.uidvalidity)
        return 0;
    if (dx->cur.uidnext != 0 && uid >= dx->cur.uidnext)
        return 0;
    *uid_r = uid;
    return 1;
}

/* QRESYNC: flag changes and VANISHED reported by the EXAMINE itself. */
static mp_status apply_qresync(delta_ctx *dx, const imap_box *box, size_t *count_r,
                               mp_error *err)
{
    mp_status st = MP_OK;
    for (size_t i = 0; i < box->n_changed && st == MP_OK; i++) {
        const imap_flag_change *c = &box->changed[i];
        /* New messages are delivered whole (as NEW) further down. */
        if (dx->cur.uidnext != 0 && c->uid >= dx->cur.uidnext)
            continue;
        st = emit_uid(dx, MP_CHANGE_UPDATED, c->uid, c->flags, err);
        (*count_r)++;
    }
    if (st != MP_OK || box->n_vanished == 0)
        return st;
    /* VANISHED (EARLIER) may name wide ranges; only what we store matters. */
    imap_stored *stored = NULL;
    size_t n = 0;
    st = imap_sync_stored(dx->a, dx->folder, &stored, &n, err);
    for (size_t i = 0; i < n && st == MP_OK; i++) {
        uint32_t uid = 0;
        if (stored_in_space(dx, &stored[i], &uid) &&
            imap_ranges_contain(box->vanished, box->n_vanished, uid)) {
            st = emit_simple(dx, MP_CHANGE_DELETED, stored[i].id, uid, NULL, err);
            (*count_r)++;
        }
    }
    imap_stored_free(&stored, n);
    return st;
}

/* CONDSTORE: flags changed since the cursor's modseq. */
static mp_status apply_changedsince(delta_ctx *dx, size_t *count_r, mp_error *err)
{
    if (dx->cur.uidnext <= 1)
        return MP_OK;
    imap_flag_change *list = NULL;
    size_t n = 0;
    mp_status st = imap_sync_flags(dx->a, &dx->a->sync_conn, 1, dx->cur.uidnext - 1,
                                   dx->cur.modseq, &list, &n, err);
    for (size_t i = 0; i < n && st == MP_OK; i++) {
        st = emit_uid(dx, MP_CHANGE_UPDATED, list[i].uid, list[i].flags, err);
        (*count_r)++;
    }
    imap_flag_changes_free(&list, n);
    return st;
}

static int cmp_flag_uid(const void *key, const void *elem)
{
    uint32_t k = *(const uint32_t *)key;
    const imap_flag_change *e = elem;
    return k < e->uid ? -1 : k > e->uid;
}

static int cmp_u32_key(const void *key, const void *elem)
{
    uint32_t a = *(const uint32_t *)key, b = *(const uint32_t *)elem;
    return a < b ? -1 : a > b;
}

/* Compare the server with the store. With `with_flags` (plain servers)
 * flags are compared too; otherwise only the UID set (expunges). `window`
 * limits the comparison to the newest that many stored messages (0: all):
 * plain servers get this cheap check on every poll, since recent mail is
 * where flags change, and the full one at the slower cadence. */
static mp_status compare_scan(delta_ctx *dx, int with_flags, size_t window,
                              size_t *count_r, mp_error *err)
{
    if (dx->cur.uidnext == 1)
        return MP_OK;
    imap_stored *stored = NULL;
    size_t n = 0;
    mp_status st = imap_sync_stored(dx->a, dx->folder, &stored, &n, err);
    if (st != MP_OK)
        return st;
    /* Stored messages come in ascending UID order: the window starts at
     * the window-th from the end of those in the current UID space. */
    uint32_t lo = 1;
    if (window > 0) {
        size_t seen = 0;
        for (size_t i = n; i-- > 0;) {
            uint32_t uid = 0;
            if (stored_in_space(dx, &stored[i], &uid) && ++seen == window) {
                lo = uid;
                break;
            }
        }
    }
    uint32_t hi = dx->cur.uidnext != 0 ? dx->cur.uidnext - 1 : 0;
    imap_flag_change *flags = NULL;
    size_t n_flags = 0;
    uint32_t *uids = NULL;
    size_t n_uids = 0;
    st = with_flags
             ? imap_sync_flags(dx->a, &dx->a->sync_conn, lo, hi, 0, &flags, &n_flags, err)
             : imap_sync_uids(dx->a, &dx->a->sync_conn, lo, hi, 0, &uids, &n_uids, NULL,
                              err);
    for (size_t i = 0; i < n && st == MP_OK; i++) {
        uint32_t uid = 0;
        if (!stored_in_space(dx, &stored[i], &uid) || uid < lo)
            continue;
        if (with_flags) {
            const imap_flag_change *f =
                bsearch(&uid, flags, n_flags, sizeof *flags, cmp_flag_uid);
            if (f == NULL) {
                st = emit_simple(dx, MP_CHANGE_DELETED, stored[i].id, uid, NULL, err);
                (*count_r)++;
            } else if (!imap_flags_equal(f->flags, stored[i].flags)) {
                st = emit_simple(dx, MP_CHANGE_UPDATED, stored[i].id, uid, f->flags, err);
                (*count_r)++;
            }
        } else if (bsearch(&uid, uids, n_uids, sizeof *uids, cmp_u32_key) == NULL) {
            st = emit_simple(dx, MP_CHANGE_DELETED, stored[i].id, uid, NULL, err);
            (*count_r)++;
        }
    }
    imap_stored_free(&stored, n);
    imap_flag_changes_free(&flags, n_flags);
    free(uids);
    return st;
}

/* After each batch of new mail: a cursor that is safe if we stop here,
 * i.e. UIDNEXT just past what is committed and the old modseq. */
static mp_status delta_checkpoint(void *arg, uint32_t lo, uint32_t hi, size_t emitted,
                                  int *stop_r, mp_error *err)
{
    delta_ctx *dx = arg;
    (void)lo;
    (void)emitted;
    (void)stop_r;
    if (hi > dx->done_upto)
        dx->done_upto = hi;
    imap_cursor mid = dx->cur;
    if (dx->done_upto + 1 > mid.uidnext)
        mid.uidnext = dx->done_upto + 1;
    char *cursor = imap_cursor_format(&mid);
    mp_status st = imap_host->batch_commit(dx->batch, cursor, NULL, 0, err);
    free(cursor);
    return st;
}

mp_status imap_delta(mp_account *acct, const char *folder, const char *cursor,
                     mp_batch *batch, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    delta_ctx dx = {.a = a, .folder = folder, .batch = batch};
    /* UIDNEXT 0 would make every message "new": never trust such a cursor. */
    if (imap_cursor_parse(cursor, &dx.cur) < 0 || dx.cur.uidnext == 0)
        return mp_fail(err, MP_RESYNC, "cursor \"%s\" is not an imap v1 cursor",
                       cursor != NULL ? cursor : "(none)");
    /* A bootstrapped folder has no use for a LIST-STATUS hint: dropped. */
    uint32_t unused;
    (void)imap_list_hint_take(a, folder, &unused);
    mp_status st = imap_sync_connect(a, &a->sync_conn, err);
    if (st != MP_OK)
        return st;
    imap_strategy strategy = imap_strategy_choose(imap_conn_caps(a->sync_conn)->bits,
                                                  imap_conn_enabled(a->sync_conn));
    imap_examine_mode mode = IMAP_EXAMINE_PLAIN;
    if (strategy == IMAP_STRATEGY_QRESYNC && dx.cur.modseq > 0)
        mode = IMAP_EXAMINE_QRESYNC;
    else if (strategy != IMAP_STRATEGY_PLAIN)
        mode = IMAP_EXAMINE_CONDSTORE;
    imap_box box;
    st = imap_sync_examine(a, &a->sync_conn, folder, mode, &dx.cur, &box, err);
    if (st != MP_OK)
        return st;
    if (box.uidvalidity != dx.cur.uidvalidity) {
        st = imap_sync_remap(a, &a->sync_conn, folder, dx.cur.uidvalidity, &box, batch,
                             err);
        imap_box_clear(&box);
        return st;
    }

    /* The modseq channel is usable only when both the cursor and the server
     * have one; otherwise this run behaves like a plain server. */
    int modseq_ok =
        box.highestmodseq > 0 && dx.cur.modseq > 0 && strategy != IMAP_STRATEGY_PLAIN;

    /* New mail: everything from the cursor's UIDNEXT on. Listed first, as
     * the count tells whether EXISTS moved by more than new arrivals. */
    uint32_t *uids = NULL;
    size_t n = 0;
    if ((box.uidnext == 0 || box.uidnext > dx.cur.uidnext) && box.exists > 0)
        st = imap_sync_uids(a, &a->sync_conn, dx.cur.uidnext, 0, 0, &uids, &n, NULL, err);

    size_t changes = 0;
    int64_t now = imap_host->now_ms();
    imap_folder_mem mem = imap_sync_mem_get(a, folder);
    int scan_due = imap_scan_due(mem.scan_ms, now, IMAP_SCAN_INTERVAL_MS);
    /* Fewer messages than the last count plus the new ones: something was
     * expunged, so the comparison runs now rather than at its cadence. */
    /* Arrivals after the EXAMINE are listed but not in its EXISTS. */
    size_t late = 0;
    for (size_t i = 0; i < n && box.uidnext != 0; i++)
        late += uids[i] >= box.uidnext;
    if (mem.exists >= 0 && (int64_t)box.exists != mem.exists + (int64_t)(n - late))
        scan_due = 1;
    /* A cursor without modseq on a server that now has one: one full scan
     * makes the server's current modseq a safe starting point. */
    if (!modseq_ok && strategy != IMAP_STRATEGY_PLAIN && box.highestmodseq > 0)
        scan_due = 1;
    int flags_scanned = 0;
    int scanned = 0;
    if (st != MP_OK) {
        /* listing failed: status set */
    } else if (modseq_ok && mode == IMAP_EXAMINE_QRESYNC) {
        st = apply_qresync(&dx, &box, &changes, err);
    } else if (modseq_ok) {
        if (box.highestmodseq != dx.cur.modseq)
            st = apply_changedsince(&dx, &changes, err);
        if (st == MP_OK && scan_due) {
            st = compare_scan(&dx, 0, 0, &changes, err);
            scanned = st == MP_OK;
        }
    } else if (scan_due) {
        st = compare_scan(&dx, 1, 0, &changes, err);
        scanned = flags_scanned = st == MP_OK;
    } else {
        st = compare_scan(&dx, 1, IMAP_RECENT_WINDOW, &changes, err);
    }
    if (st == MP_OK && changes > 0)
        st = imap_host->batch_commit(batch, NULL, NULL, 0, err);

    if (st == MP_OK && n > 0)
        st = imap_sync_summaries(a, &a->sync_conn, batch, folder, box.uidvalidity, uids,
                                 n, 0, MP_CHANGE_NEW, delta_checkpoint, &dx, err);
    if (st == MP_OK) {
        imap_cursor next = {box.uidvalidity, dx.cur.uidnext, 0};
        if (strategy != IMAP_STRATEGY_PLAIN && box.highestmodseq > 0)
            next.modseq = modseq_ok || flags_scanned ? box.highestmodseq : dx.cur.modseq;
        if (box.uidnext > next.uidnext)
            next.uidnext = box.uidnext;
        if (n > 0 && uids[n - 1] >= next.uidnext)
            next.uidnext = uids[n - 1] + 1;
        char *text = imap_cursor_format(&next);
        st = imap_host->batch_commit(batch, text, NULL, 0, err);
        free(text);
        if (st == MP_OK)
            imap_sync_mem_set(a, folder, scanned ? now : 0, (int64_t)(box.exists + late));
        if (changes > 0 || n > 0)
            imap_sync_log(a, MP_LOG_DEBUG, "delta \"%s\" (%s): %zu new, %zu changed",
                          folder, imap_strategy_name(strategy), n, changes);
    }
    free(uids);
    imap_box_clear(&box);
    return st;
}

/* Pipelined summary fetches: several UID FETCH batches in flight (as mbsync
 * does), each answer turned into one change as it arrives.
 *
 * With sync.fetch_bodies the sizes come first: one SEARCH LARGER lists the
 * messages over the account's max_message_size, and those are fetched in
 * the same batch with ENVELOPE instead of their body. Fetching such a body
 * would fail on the client's literal bound at every retry and hold the
 * folder's cursor back for good. */
#include "imap_sync.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMAP_PIPELINE_WINDOW 3
#define IMAP_DEFAULT_BATCH 100
#define IMAP_MAX_BATCH 1000

typedef struct summary_ctx {
    imap_account *a;
    mp_batch *batch;
    const char *folder;
    uint32_t uidvalidity;
    mp_change_kind kind;
    int bodies;           /* BODY[] asked for (ENVELOPE for the big) */
    uint64_t max_message; /* with bodies: larger ones got ENVELOPE    */
    const uint32_t *uids;
    size_t n;
    imap_arena *arena;
    size_t emitted;
    mp_status st;
    mp_error *err;
} summary_ctx;

static int cmp_u32_key(const void *key, const void *elem)
{
    uint32_t a = *(const uint32_t *)key, b = *(const uint32_t *)elem;
    return a < b ? -1 : a > b;
}

static const char *atom_or_string(const imap_token *t)
{
    if (t == NULL || (t->type != IMAP_T_ATOM && t->type != IMAP_T_STRING))
        return NULL;
    return t->str;
}

static mp_status emit_summary(summary_ctx *cx, const imap_response *r, uint32_t uid)
{
    mp_change c = {.kind = cx->kind, .uid = uid, .size = -1};
    imap_envelope env;
    memset(&env, 0, sizeof env);
    const imap_token *e = imap_fetch_item(r, "ENVELOPE");
    const imap_token *body = imap_fetch_item(r, "BODY[]");
    if (body != NULL && (body->type != IMAP_T_STRING || body->str == NULL))
        body = NULL;
    if (e != NULL) {
        if (imap_envelope_parse(e, cx->arena, &env) < 0)
            memset(&env, 0, sizeof env);
    } else if (body != NULL) {
        imap_header_envelope(body->str, body->len, cx->arena, &env);
    }

    const imap_token *f = imap_fetch_item(r, "FLAGS");
    char *flags = NULL;
    if (f != NULL && f->type == IMAP_T_LIST) {
        const char **words = imap_xcalloc(f->n_items, sizeof *words);
        size_t n = 0;
        for (size_t i = 0; i < f->n_items; i++)
            if (f->items[i].type == IMAP_T_ATOM && f->items[i].str != NULL)
                words[n++] = f->items[i].str;
        flags = imap_flags_join(words, n);
        free(words);
    }
    uint64_t size = 0;
    const imap_token *sz = imap_fetch_item(r, "RFC822.SIZE");
    if (sz != NULL && imap_token_u64(sz, &size) == 0 && size <= INT64_MAX)
        c.size = (int64_t)size;
    char *id = imap_id_format(cx->folder, cx->uidvalidity, uid);
    if (cx->bodies && body == NULL && e != NULL)
        imap_sync_log(cx->a, MP_LOG_WARNING,
                      "message \"%s\" in \"%s\" is %lld bytes, over max_message_size "
                      "(%llu): indexed without its body",
                      id, cx->folder, (long long)c.size,
                      (unsigned long long)cx->max_message);
    int64_t date = env.date != NULL ? imap_parse_rfc5322_date(env.date) : -1;
    if (date <= 0) {
        const char *idate = atom_or_string(imap_fetch_item(r, "INTERNALDATE"));
        date = idate != NULL ? imap_parse_internaldate(idate) : -1;
    }
    c.date = date > 0 ? date : 0;
    c.message_id = env.message_id;
    c.subject = env.subject;
    c.from = env.from;
    c.to = env.to;
    c.flags = flags != NULL ? flags : "";
    if (body != NULL) {
        c.raw = (const uint8_t *)body->str;
        c.raw_len = body->len;
    }
    c.id = id;
    mp_status st = imap_host->batch_change(cx->batch, &c, cx->err);
    free(id);
    free(flags);
    return st;
}

static int summary_untagged(const imap_response *r, void *arg)
{
    summary_ctx *cx = arg;
    if (r->kind != IMAP_R_UNTAGGED || r->keyword == NULL ||
        strcasecmp(r->keyword, "FETCH") != 0)
        return 0;
    /* Answers without the summary asked for (ENVELOPE, or BODY[]) are
     * unsolicited flag updates of another session: delta picks those up
     * through its own channel. */
    const imap_token *u = imap_fetch_item(r, "UID");
    uint64_t uid = 0;
    if ((imap_fetch_item(r, "ENVELOPE") == NULL &&
         (!cx->bodies || imap_fetch_item(r, "BODY[]") == NULL)) ||
        u == NULL || imap_token_u64(u, &uid) < 0 || uid == 0 || uid > UINT32_MAX)
        return 0;
    uint32_t key = (uint32_t)uid;
    if (bsearch(&key, cx->uids, cx->n, sizeof *cx->uids, cmp_u32_key) == NULL)
        return 0;
    mp_status st = emit_summary(cx, r, key);
    imap_arena_reset(cx->arena);
    if (st != MP_OK) {
        cx->st = st;
        return 1;
    }
    cx->emitted++;
    return 0;
}

static size_t batch_size(void)
{
    int64_t v = imap_host->core_setting("sync.batch_size");
    if (v <= 0)
        return IMAP_DEFAULT_BATCH;
    return v > IMAP_MAX_BATCH ? IMAP_MAX_BATCH : (size_t)v;
}

typedef struct inflight {
    char tag[16];
    char big_tag[16]; /* the ENVELOPE fetch of the batch's big ones, or "" */
    size_t from, to;  /* indexes into uids: [from, to) */
} inflight;

static int is_big(const uint32_t *big, size_t n_big, uint32_t uid)
{
    return n_big > 0 && bsearch(&uid, big, n_big, sizeof *big, cmp_u32_key) != NULL;
}

/* Send the FETCH commands of uids[from, to): the messages in `big` with
 * ENVELOPE (big_items), the others with `items`. */
static int send_batch(imap_conn *conn, inflight *f, const uint32_t *uids,
                      const char *items, const char *big_items, const uint32_t *big,
                      size_t n_big, char **error_r)
{
    size_t n = f->to - f->from;
    f->big_tag[0] = '\0';
    size_t k = 0;
    for (size_t i = f->from; i < f->to; i++)
        k += is_big(big, n_big, uids[i]);
    if (k == 0) {
        char *set = imap_uids_format(uids + f->from, n);
        int rc = imap_send(conn, f->tag, error_r, "UID FETCH %a %a", set, items);
        free(set);
        return rc;
    }
    uint32_t *small = imap_xcalloc(n, sizeof *small);
    uint32_t *large = imap_xcalloc(k, sizeof *large);
    size_t ns = 0, nl = 0;
    for (size_t i = f->from; i < f->to; i++) {
        if (is_big(big, n_big, uids[i]))
            large[nl++] = uids[i];
        else
            small[ns++] = uids[i];
    }
    char *set = imap_uids_format(large, nl);
    int rc = imap_send(conn, f->big_tag, error_r, "UID FETCH %a %a", set, big_items);
    free(set);
    if (rc == 0 && ns > 0) {
        set = imap_uids_format(small, ns);
        rc = imap_send(conn, f->tag, error_r, "UID FETCH %a %a", set, items);
        free(set);
    } else if (rc == 0) {
        /* Only big ones: wait for that one command. */
        memcpy(f->tag, f->big_tag, sizeof f->tag);
        f->big_tag[0] = '\0';
    }
    free(small);
    free(large);
    return rc;
}

mp_status imap_sync_summaries(imap_account *a, imap_conn **connp, mp_batch *batch,
                              const char *folder, uint32_t uidvalidity,
                              const uint32_t *uids, size_t n, int descending,
                              mp_change_kind kind, imap_checkpoint_cb checkpoint,
                              void *arg, mp_error *err)
{
    if (n == 0)
        return MP_OK;
    mp_status st = imap_sync_connect(a, connp, err);
    if (st != MP_OK)
        return st;
    /* With the body in the answer the summary is read from its header
     * (imap_header_envelope): ENVELOPE as well would have the server parse
     * the same header, which doubles its side of a full sync. */
    int bodies = imap_host->core_setting("sync.fetch_bodies") == 1;
    const char *items = bodies ? "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"
                               : "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)";
    const char *big_items = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)";
    uint32_t *big = NULL;
    size_t n_big = 0;
    if (bodies) {
        st = imap_sync_uids_larger(a, connp, uids[0], uids[n - 1], a->max_message, &big,
                                   &n_big, err);
        if (st != MP_OK)
            return st;
    }
    size_t bs = batch_size();
    size_t nb = (n + bs - 1) / bs;
    summary_ctx cx = {
        .a = a,
        .batch = batch,
        .folder = folder,
        .uidvalidity = uidvalidity,
        .kind = kind,
        .bodies = bodies,
        .max_message = a->max_message,
        .uids = uids,
        .n = n,
        .arena = imap_arena_new(),
        .st = MP_OK,
        .err = err,
    };
    inflight q[IMAP_PIPELINE_WINDOW];
    size_t qh = 0, qn = 0, next = 0;
    int stop = 0;
    st = MP_OK;
    while (st == MP_OK) {
        while (!stop && next < nb && qn < IMAP_PIPELINE_WINDOW) {
            inflight *f = &q[(qh + qn) % IMAP_PIPELINE_WINDOW];
            if (descending) {
                f->to = n - next * bs;
                f->from = f->to > bs ? f->to - bs : 0;
            } else {
                f->from = next * bs;
                f->to = f->from + bs < n ? f->from + bs : n;
            }
            char *error = NULL;
            int rc = send_batch(*connp, f, uids, items, big_items, big, n_big, &error);
            if (rc < 0) {
                st = imap_sync_io_fail(a, connp, "UID FETCH", error, err);
                free(error);
                break;
            }
            qn++;
            next++;
        }
        if (st != MP_OK || qn == 0)
            break;
        inflight *f = &q[qh];
        qh = (qh + 1) % IMAP_PIPELINE_WINDOW;
        qn--;
        size_t before = cx.emitted;
        /* The big ones' command went first: its answer comes first. */
        for (int k = f->big_tag[0] != '\0' ? 0 : 1; k < 2 && st == MP_OK; k++) {
            const char *tag = k == 0 ? f->big_tag : f->tag;
            int more = k == 0 || qn > 0;
            imap_status status = IMAP_NONE;
            char *error = NULL;
            char *text = NULL;
            int rc =
                imap_wait(*connp, tag, summary_untagged, &cx, &status, &text, &error);
            if (rc < 0) {
                if (cx.st != MP_OK) {
                    imap_conn_abort(connp);
                    st = cx.st;
                } else {
                    st = imap_sync_io_fail(a, connp, "UID FETCH", error, err);
                }
            } else if (status != IMAP_OK) {
                st = imap_sync_answer_fail(a, more ? connp : NULL, "UID FETCH", folder,
                                           status, text, err);
            }
            free(text);
            free(error);
        }
        if (st != MP_OK)
            break;
        if (checkpoint != NULL) {
            st = checkpoint(arg, uids[f->from], uids[f->to - 1], cx.emitted - before,
                            &stop, err);
            if (st != MP_OK && qn > 0)
                imap_conn_abort(connp); /* answers still in flight */
        }
    }
    imap_arena_free(&cx.arena);
    free(big);
    return st;
}

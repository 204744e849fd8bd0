/* Pipelined summary fetches: UID FETCH commands kept in flight up to a
 * window sized in bytes of answer (like mbsync's BufferLimit), each answer
 * turned into one change as it arrives.
 *
 * Why bytes: over a link with a round trip of R and a rate of B, the
 * server idles unless about R * B bytes of answer are asked for ahead of
 * what is being read. A fixed number of batches covers that for small
 * messages on loopback only (three batches of 100 bodies of 5 KB were
 * 1.5 MB: 37 MB/s at 40 ms). The window holds no memory of ours: the
 * answers wait in the server and the kernel until read, one at a time.
 * Refilling it comes before the checkpoint's commit, so the server keeps
 * sending while the store writes.
 *
 * With sync.fetch_bodies the sizes come first: the caller's RFC822.SIZE
 * listing when it made one, else one SEARCH LARGER lists the messages over
 * the account's max_message_size; those are fetched in the same batch with
 * ENVELOPE instead of their body. Fetching such a body would fail on the
 * client's literal bound at every retry and hold the folder's cursor back
 * for good. */
#include "imap_sync.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMAP_DEFAULT_BATCH 100
#define IMAP_MAX_BATCH 1000
/* Answer bytes asked for and not yet read. 32 MiB keeps a link of
 * 200 MB/s busy over 160 ms. */
#define IMAP_WINDOW_BYTES ((uint64_t)32 << 20)
/* A command asks for at most this much (at least one message), so the
 * window refills in steps smaller than itself. */
#define IMAP_COMMAND_BYTES ((uint64_t)2 << 20)
/* Batches in flight (a batch is one command, two when some of its
 * messages are over max_message_size): 64 batches of sync.batch_size
 * (100) bodies of 5 KB fill the window. Answers come in order and are
 * waited for in order, so none is parked among the client's completed
 * tags (IMAPC_MAX_PENDING_TAGS) however many are in flight. */
#define IMAP_MAX_IN_FLIGHT 64
/* With a deadline (a backfill's job budget), what a stop leaves in flight
 * must not outlast it on a slow link: the window is then what the rate
 * measured so far delivers in the time left, this much before any answer
 * came. */
#define IMAP_DEADLINE_WINDOW ((uint64_t)4 << 20)
/* Expected answer per message: without a body (ENVELOPE, flags, dates),
 * and with one before any size is known. */
#define IMAP_SUMMARY_BYTES 1024u
#define IMAP_BODY_GUESS ((uint64_t)32 * 1024)

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
    uint64_t seen_bytes; /* RFC822.SIZE of the answers read, for estimates */
    size_t seen;
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
    if (sz != NULL && imap_token_u64(sz, &size) == 0 && size <= INT64_MAX) {
        c.size = (int64_t)size;
        if (size < IMAP_COMMAND_BYTES * 32) {
            cx->seen_bytes += size;
            cx->seen++;
        }
    }
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
    uint64_t bytes;   /* answer expected                  */
} inflight;

/* What decides, per message, the items asked for and the answer expected. */
typedef struct plan {
    const uint32_t *uids;
    const uint32_t *sizes; /* parallel to uids, or NULL */
    const uint32_t *big;   /* without sizes: SEARCH LARGER's answer */
    size_t n_big;
    int bodies;
    uint64_t max_message;
} plan;

static int is_big(const plan *p, size_t i)
{
    if (!p->bodies)
        return 0;
    if (p->sizes != NULL)
        return p->sizes[i] > p->max_message;
    uint32_t uid = p->uids[i];
    return p->n_big > 0 &&
           bsearch(&uid, p->big, p->n_big, sizeof *p->big, cmp_u32_key) != NULL;
}

/* Answer bytes expected for uids[i]; `guess` stands in for an unknown
 * body size. */
static uint64_t expected(const plan *p, size_t i, uint64_t guess)
{
    if (!p->bodies || is_big(p, i))
        return IMAP_SUMMARY_BYTES;
    return IMAP_SUMMARY_BYTES + (p->sizes != NULL ? p->sizes[i] : guess);
}

/* Send the FETCH commands of uids[from, to): the big ones with ENVELOPE
 * (big_items), the others with `items`. */
static int send_batch(imap_conn *conn, inflight *f, const plan *p, const char *items,
                      const char *big_items, char **error_r)
{
    size_t n = f->to - f->from;
    f->big_tag[0] = '\0';
    size_t k = 0;
    for (size_t i = f->from; i < f->to; i++)
        k += is_big(p, i);
    if (k == 0) {
        char *set = imap_uids_format(p->uids + f->from, n);
        int rc = imap_send(conn, f->tag, error_r, "UID FETCH %a %a", set, items);
        free(set);
        return rc;
    }
    uint32_t *small = imap_xcalloc(n, sizeof *small);
    uint32_t *large = imap_xcalloc(k, sizeof *large);
    size_t ns = 0, nl = 0;
    for (size_t i = f->from; i < f->to; i++) {
        if (is_big(p, i))
            large[nl++] = p->uids[i];
        else
            small[ns++] = p->uids[i];
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

/* The next batch: up to `bs` messages and IMAP_COMMAND_BYTES of answer
 * (at least one message) from the unsent range [*lo, *hi), taken from
 * the top when descending. */
static void next_batch(const plan *p, size_t *lo, size_t *hi, int descending, size_t bs,
                       uint64_t guess, inflight *f)
{
    f->bytes = 0;
    size_t k = 0;
    while (*lo < *hi && k < bs) {
        size_t i = descending ? *hi - 1 : *lo;
        uint64_t b = expected(p, i, guess);
        if (k > 0 && f->bytes + b > IMAP_COMMAND_BYTES)
            break;
        f->bytes += b;
        k++;
        if (descending)
            (*hi)--;
        else
            (*lo)++;
    }
    f->from = descending ? *hi : *lo - k;
    f->to = f->from + k;
}

mp_status imap_sync_summaries(imap_account *a, imap_conn **connp, mp_batch *batch,
                              const char *folder, uint32_t uidvalidity,
                              const uint32_t *uids, size_t n, int descending,
                              mp_change_kind kind, imap_checkpoint_cb checkpoint,
                              void *arg, mp_error *err)
{
    return imap_sync_summaries_sized(a, connp, batch, folder, uidvalidity, uids, NULL, n,
                                     descending, kind, 0, checkpoint, arg, err);
}

/* The commands in flight, oldest first. */
typedef struct pipeline {
    inflight q[IMAP_MAX_IN_FLIGHT];
    size_t head, count;
    size_t lo, hi;      /* unsent: uids[lo, hi) */
    uint64_t in_flight; /* answer bytes expected  */
    size_t commands, max_count;
    uint64_t max_bytes;
    int64_t deadline;    /* ms since the epoch, 0: none          */
    int64_t started;     /* ms since the epoch of the first send  */
    uint64_t done_bytes; /* answer expected of completed batches  */
} pipeline;

/* The window: IMAP_WINDOW_BYTES, or with a deadline what the rate so far
 * delivers until then. */
static uint64_t window(const pipeline *pl)
{
    if (pl->deadline <= 0)
        return IMAP_WINDOW_BYTES;
    int64_t now = imap_host->now_ms();
    int64_t elapsed = now - pl->started;
    if (pl->done_bytes == 0 || elapsed <= 0)
        return IMAP_DEADLINE_WINDOW;
    int64_t left = pl->deadline - now;
    if (left <= 0)
        return 0;
    double w = (double)pl->done_bytes / (double)elapsed * (double)left;
    return w >= (double)IMAP_WINDOW_BYTES ? IMAP_WINDOW_BYTES : (uint64_t)w;
}

/* Send batches until the window is full (or nothing is left). */
static int fill(pipeline *pl, imap_conn *conn, const plan *p, const summary_ctx *cx,
                int descending, size_t bs, const char *items, const char *big_items,
                char **error_r)
{
    uint64_t limit = window(pl);
    if (pl->started == 0)
        pl->started = imap_host->now_ms();
    /* One batch at least is always in flight until the end. */
    while (pl->lo < pl->hi && pl->count < IMAP_MAX_IN_FLIGHT &&
           (pl->count == 0 || pl->in_flight < limit)) {
        inflight *f = &pl->q[(pl->head + pl->count) % IMAP_MAX_IN_FLIGHT];
        uint64_t guess = cx->seen > 0 ? cx->seen_bytes / cx->seen : IMAP_BODY_GUESS;
        next_batch(p, &pl->lo, &pl->hi, descending, bs, guess, f);
        if (send_batch(conn, f, p, items, big_items, error_r) < 0)
            return -1;
        pl->count++;
        pl->commands += f->big_tag[0] != '\0' ? 2 : 1;
        pl->in_flight += f->bytes;
        if (pl->count > pl->max_count)
            pl->max_count = pl->count;
        if (pl->in_flight > pl->max_bytes)
            pl->max_bytes = pl->in_flight;
    }
    return 0;
}

mp_status imap_sync_summaries_sized(imap_account *a, imap_conn **connp, mp_batch *batch,
                                    const char *folder, uint32_t uidvalidity,
                                    const uint32_t *uids, const uint32_t *sizes, size_t n,
                                    int descending, mp_change_kind kind, int64_t deadline,
                                    imap_checkpoint_cb checkpoint, void *arg,
                                    mp_error *err)
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
    plan p = {
        .uids = uids, .sizes = sizes, .bodies = bodies, .max_message = a->max_message};
    uint32_t *big = NULL;
    if (bodies && sizes == NULL) {
        st = imap_sync_uids_larger(a, connp, uids[0], uids[n - 1], a->max_message, &big,
                                   &p.n_big, err);
        if (st != MP_OK)
            return st;
        p.big = big;
    }
    size_t bs = batch_size();
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
    pipeline *pl = imap_xcalloc(1, sizeof *pl);
    pl->hi = n;
    pl->deadline = deadline;
    int stop = 0;
    char *error = NULL;
    if (fill(pl, *connp, &p, &cx, descending, bs, items, big_items, &error) < 0)
        st = imap_sync_io_fail(a, connp, "UID FETCH", error, err);
    while (st == MP_OK && pl->count > 0) {
        /* A copy: refilling a full ring reuses this slot. */
        inflight done = pl->q[pl->head];
        const inflight *f = &done;
        pl->head = (pl->head + 1) % IMAP_MAX_IN_FLIGHT;
        pl->count--;
        pl->in_flight -= f->bytes;
        pl->done_bytes += f->bytes;
        size_t before = cx.emitted;
        /* The big ones' command went first: its answer comes first. */
        for (int k = f->big_tag[0] != '\0' ? 0 : 1; k < 2 && st == MP_OK; k++) {
            const char *tag = k == 0 ? f->big_tag : f->tag;
            int more = k == 0 || pl->count > 0;
            imap_status status = IMAP_NONE;
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
        }
        /* The window refilled before the checkpoint commits: the server
         * keeps sending while the store writes. A stop from it lets what
         * is in flight complete. */
        if (st == MP_OK && !stop &&
            fill(pl, *connp, &p, &cx, descending, bs, items, big_items, &error) < 0)
            st = imap_sync_io_fail(a, connp, "UID FETCH", error, err);
        if (st == MP_OK && checkpoint != NULL) {
            st = checkpoint(arg, uids[f->from], uids[f->to - 1], cx.emitted - before,
                            &stop, err);
            if (st != MP_OK && pl->count > 0)
                imap_conn_abort(connp); /* answers still in flight */
        }
    }
    imap_sync_log(a, MP_LOG_DEBUG,
                  "\"%s\": %zu summaries in %zu FETCH commands, at most %zu batches "
                  "(%llu KiB of answer) in flight",
                  folder, cx.emitted, pl->commands, pl->max_count,
                  (unsigned long long)(pl->max_bytes >> 10));
    free(error);
    free(pl);
    imap_arena_free(&cx.arena);
    free(big);
    return st;
}

/* A UIDVALIDITY change: every stored UID of the folder is void. Instead of
 * dropping the folder (a flood of message.new on the next bootstrap), the
 * stored messages are matched to the server's by Message-ID (plus size and
 * date) and re-keyed silently, with one folder.reset. */
#include "imap_sync.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct server_msg {
    uint32_t uid;
    char *message_id;
    int64_t size;
    int64_t date;
    char *flags;
} server_msg;

typedef struct remap_ctx {
    server_msg *list;
    size_t n, cap;
    uint32_t below; /* 0: no bound */
    imap_arena *arena;
    imap_budget budget;
} remap_ctx;

static int remap_untagged(const imap_response *r, void *arg)
{
    remap_ctx *cx = arg;
    if (r->kind != IMAP_R_UNTAGGED || r->keyword == NULL ||
        strcasecmp(r->keyword, "FETCH") != 0)
        return 0;
    const imap_token *u = imap_fetch_item(r, "UID");
    const imap_token *e = imap_fetch_item(r, "ENVELOPE");
    uint64_t uid = 0;
    if (u == NULL || e == NULL || imap_token_u64(u, &uid) < 0 || uid == 0 ||
        uid > UINT32_MAX || (cx->below != 0 && uid >= cx->below))
        return 0;
    imap_envelope env;
    if (imap_envelope_parse(e, cx->arena, &env) < 0)
        memset(&env, 0, sizeof env);
    if (imap_budget_reserve(&cx->budget, (void **)&cx->list, &cx->cap, cx->n + 1,
                            sizeof *cx->list) < 0 ||
        imap_budget_take(&cx->budget, env.message_id != NULL ? strlen(env.message_id) : 0) < 0)
        return 1;
    server_msg *m = &cx->list[cx->n++];
    memset(m, 0, sizeof *m);
    m->uid = (uint32_t)uid;
    m->message_id = imap_xstrdup(env.message_id);
    m->size = -1;
    uint64_t size = 0;
    const imap_token *sz = imap_fetch_item(r, "RFC822.SIZE");
    if (sz != NULL && imap_token_u64(sz, &size) == 0 && size <= INT64_MAX)
        m->size = (int64_t)size;
    /* The same derivation as the summary emitted at bootstrap. */
    int64_t date = env.date != NULL ? imap_parse_rfc5322_date(env.date) : -1;
    if (date <= 0) {
        const imap_token *d = imap_fetch_item(r, "INTERNALDATE");
        date = d != NULL && d->str != NULL ? imap_parse_internaldate(d->str) : -1;
    }
    m->date = date > 0 ? date : 0;
    const imap_token *f = imap_fetch_item(r, "FLAGS");
    if (f != NULL && f->type == IMAP_T_LIST) {
        const char **words = imap_xcalloc(f->n_items, sizeof *words);
        size_t n = 0;
        for (size_t i = 0; i < f->n_items; i++)
            if (f->items[i].type == IMAP_T_ATOM && f->items[i].str != NULL)
                words[n++] = f->items[i].str;
        m->flags = imap_flags_join(words, n);
        free(words);
    }
    imap_arena_reset(cx->arena);
    return 0;
}

static void server_free(server_msg *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].message_id);
        free(list[i].flags);
    }
    free(list);
}

static int cmp_server_uid(const void *a, const void *b)
{
    const server_msg *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static mp_status remap_checkpoint(void *arg, uint32_t lo, uint32_t hi, size_t emitted,
                                  int *stop_r, mp_error *err)
{
    (void)lo;
    (void)hi;
    (void)emitted;
    (void)stop_r;
    return imap_host->batch_commit(arg, NULL, NULL, 0, err);
}

mp_status imap_sync_remap(imap_account *a, imap_conn **connp, const char *folder,
                          uint32_t old_uidvalidity, const imap_box *box, mp_batch *batch,
                          mp_error *err)
{
    imap_stored *stored = NULL;
    size_t n_stored = 0;
    mp_status st = imap_sync_stored(a, folder, &stored, &n_stored, err);
    if (st != MP_OK)
        return st;

    remap_ctx cx = {.below = box->uidnext,
                    .arena = imap_arena_new(),
                    .budget = {.limit = a->max_memory}};
    if (box->exists > 0) {
        imap_status status = IMAP_NONE;
        char *error = NULL;
        char tag[16];
        char *text = NULL;
        int rc = imap_sync_finish(
            *connp,
            imap_send(*connp, tag, &error,
                      "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)"),
            tag, remap_untagged, &cx, &status, &text, &error);
        if (rc < 0 && cx.budget.over)
            st = imap_sync_over_budget(a, connp, "UID FETCH", err);
        else if (rc < 0)
            st = imap_sync_io_fail(a, connp, "UID FETCH", error, err);
        else if (status != IMAP_OK)
            st = imap_sync_answer_fail(a, NULL, "UID FETCH", folder, status, text, err);
        free(text);
        free(error);
    }
    imap_arena_free(&cx.arena);
    if (st != MP_OK) {
        server_free(cx.list, cx.n);
        imap_stored_free(&stored, n_stored);
        return st;
    }
    qsort(cx.list, cx.n, sizeof *cx.list, cmp_server_uid);
    server_msg *server = cx.list;
    size_t n_server = cx.n;

    imap_remap_key *skeys = imap_xcalloc(n_stored, sizeof *skeys);
    imap_remap_key *vkeys = imap_xcalloc(n_server, sizeof *vkeys);
    long *match = imap_xcalloc(n_stored, sizeof *match);
    unsigned char *taken = imap_xcalloc(n_server, 1);
    for (size_t i = 0; i < n_stored; i++)
        skeys[i] = (imap_remap_key){stored[i].message_id, stored[i].size, stored[i].date,
                                    stored[i].uid};
    for (size_t i = 0; i < n_server; i++)
        vkeys[i] = (imap_remap_key){server[i].message_id, server[i].size, server[i].date,
                                    server[i].uid};
    imap_remap_match(skeys, n_stored, vkeys, n_server, match);

    char reason[96];
    snprintf(reason, sizeof reason, "uidvalidity changed from %u to %u",
             (unsigned)old_uidvalidity, (unsigned)box->uidvalidity);
    imap_host->batch_reset(batch, reason);

    size_t remapped = 0, gone = 0;
    uint32_t low = 0;
    for (size_t i = 0; i < n_stored && st == MP_OK; i++) {
        mp_change c = {.id = stored[i].id, .size = -1};
        char *new_id = NULL;
        if (match[i] >= 0) {
            const server_msg *v = &server[match[i]];
            taken[match[i]] = 1;
            new_id = imap_id_format(folder, box->uidvalidity, v->uid);
            c.kind = MP_CHANGE_UPDATED;
            c.old_id = stored[i].id;
            c.id = new_id;
            c.uid = v->uid;
            c.flags = v->flags != NULL ? v->flags : "";
            if (low == 0 || v->uid < low)
                low = v->uid;
            remapped++;
        } else {
            c.kind = MP_CHANGE_DELETED;
            gone++;
        }
        st = imap_host->batch_change(batch, &c, err);
        free(new_id);
    }

    /* The window that was loaded before: from the lowest re-mapped message
     * up; without any match, as many of the newest as were stored. */
    if (low == 0)
        low =
            n_stored > 0 && n_server > 0
                ? server[n_server > n_stored ? n_server - n_stored : 0].uid
                : (box->uidnext != 0 ? box->uidnext
                                     : (n_server > 0 ? server[n_server - 1].uid + 1 : 1));
    uint32_t *load = imap_xcalloc(n_server, sizeof *load);
    size_t n_load = 0;
    for (size_t i = 0; i < n_server; i++)
        if (!taken[i] && server[i].uid >= low)
            load[n_load++] = server[i].uid;
    if (st == MP_OK)
        st = imap_host->batch_commit(batch, NULL, NULL, 0, err);
    if (st == MP_OK && n_load > 0)
        st = imap_sync_summaries(a, connp, batch, folder, box->uidvalidity, load, n_load,
                                 1, MP_CHANGE_SYNCED, remap_checkpoint, batch, err);
    if (st == MP_OK) {
        imap_strategy strategy = *connp != NULL
                                     ? imap_strategy_choose(imap_conn_caps(*connp)->bits,
                                                            imap_conn_enabled(*connp))
                                     : IMAP_STRATEGY_PLAIN;
        imap_cursor cur = {box->uidvalidity, box->uidnext,
                           strategy != IMAP_STRATEGY_PLAIN ? box->highestmodseq : 0};
        if (cur.uidnext == 0)
            cur.uidnext = n_server > 0 ? server[n_server - 1].uid + 1 : 1;
        char *cursor = imap_cursor_format(&cur);
        char *pos = imap_pos_format(box->uidvalidity, low);
        int done = n_server == 0 || server[0].uid >= low;
        st = imap_host->batch_commit(batch, cursor, pos, done, err);
        free(cursor);
        free(pos);
        imap_sync_log(a, MP_LOG_INFO,
                      "folder \"%s\": UIDVALIDITY changed from %u to %u; %zu messages "
                      "re-mapped, %zu gone, %zu loaded",
                      folder, (unsigned)old_uidvalidity, (unsigned)box->uidvalidity,
                      remapped, gone, n_load);
    }
    free(load);
    free(taken);
    free(match);
    free(vkeys);
    free(skeys);
    server_free(server, n_server);
    imap_stored_free(&stored, n_stored);
    return st;
}

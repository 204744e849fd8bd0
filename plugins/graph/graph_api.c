/*
 * The Graph calls the sync steps share: URLs under the mailbox, a page of
 * messages, summaries through JSON $batch, emitting a message with its one
 * folder, and the per-folder driver record. Only read methods: the driver
 * never changes the mailbox.
 */
#include "graph_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

/* Bounds on what one answer may be: summaries and ids are small. */
#define PAGE_MAX_RESPONSE ((size_t)16 << 20)
#define BATCH_MAX_RESPONSE ((size_t)8 << 20)
/* How often one id may come back throttled or failing inside $batch
 * before the call gives up with MP_RETRY. */
#define PART_ATTEMPTS 3

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

char *graph_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (e == NULL)
        abort();
    char *out = xstrdup(e);
    curl_free(e);
    return out;
}

char *graph_user_url(const graph_account *a, const char *rest)
{
    size_t n = strlen(a->inst->api_url) + strlen(a->user_path) + strlen(rest) + 16;
    char *u = malloc(n);
    if (u == NULL)
        abort();
    snprintf(u, n, "%s/users/%s/%s", a->inst->api_url, a->user_path, rest);
    return u;
}

char *graph_batch_path(const graph_account *a, const char *rest)
{
    size_t n = strlen(a->user_path) + strlen(rest) + 16;
    char *u = malloc(n);
    if (u == NULL)
        abort();
    snprintf(u, n, "/users/%s/%s", a->user_path, rest);
    return u;
}

int graph_link_ok(const graph_account *a, const char *url)
{
    size_t n = strlen(a->inst->api_url);
    return url != NULL && strncmp(url, a->inst->api_url, n) == 0 &&
           (url[n] == '/' || url[n] == '?');
}

mp_status graph_get_page(graph_account *a, const char *url, uint32_t page_size,
                         const char *what, graph_page *p, mp_error *err)
{
    memset(p, 0, sizeof *p);
    graph_call c = {.method = "GET", .url = url, .page_size = page_size,
                    .max_response = PAGE_MAX_RESPONSE};
    mp_http_response resp;
    mp_status st = graph_http_call(a, &c, what, &resp, err);
    if (st != MP_OK)
        return st;
    char *error = NULL;
    int r = graph_page_parse((const char *)resp.body, resp.body_len, p, &error);
    graph_host->http_free(&resp);
    if (r < 0) {
        mp_fail(err, MP_RETRY, "%s: %s", what, error);
        free(error);
        return MP_RETRY;
    }
    if ((p->next_link != NULL && !graph_link_ok(a, p->next_link)) ||
        (p->delta_link != NULL && !graph_link_ok(a, p->delta_link))) {
        graph_page_clear(p);
        return mp_fail(err, MP_RETRY, "%s: Graph's next link is not under api_url", what);
    }
    return MP_OK;
}

/* One $batch of GET message for ids[idx[0..k-1]]. */
static mp_status one_batch(graph_account *a, const char *const *ids, const size_t *idx,
                           size_t k, graph_msg *out, int *gone, int *done, uint32_t *retry_r,
                           mp_error *err)
{
    json_t *reqs = json_array();
    for (size_t i = 0; i < k; i++) {
        char *eid = graph_escape(ids[idx[i]]);
        size_t rl = strlen(eid) + sizeof GRAPH_SELECT + 32;
        char *rest = malloc(rl);
        if (rest == NULL)
            abort();
        snprintf(rest, rl, "messages/%s?$select=%s", eid, GRAPH_SELECT);
        free(eid);
        char *path = graph_batch_path(a, rest);
        free(rest);
        char rid[24];
        snprintf(rid, sizeof rid, "%zu", i);
        json_t *r = json_pack("{s:s, s:s, s:s, s:{s:s}}", "id", rid, "method", "GET", "url",
                              path, "headers", "Prefer", "IdType=\"ImmutableId\"");
        free(path);
        if (r == NULL)
            abort();
        json_array_append_new(reqs, r);
    }
    json_t *root = json_pack("{s:o}", "requests", reqs);
    char *body = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (body == NULL)
        abort();
    size_t ul = strlen(a->inst->api_url) + 16;
    char *url = malloc(ul);
    if (url == NULL)
        abort();
    snprintf(url, ul, "%s/$batch", a->inst->api_url);
    graph_call c = {.method = "POST", .url = url, .content_type = "application/json",
                    .body = (const uint8_t *)body, .body_len = strlen(body),
                    .requests = (uint32_t)k + 1, .weight = (unsigned)k,
                    .max_response = BATCH_MAX_RESPONSE};
    mp_http_response resp;
    mp_status st = graph_http_call(a, &c, "$batch messages", &resp, err);
    free(url);
    free(body);
    if (st != MP_OK)
        return st;
    graph_part parts[GRAPH_BATCH_MAX];
    char *error = NULL;
    if (graph_batch_parse((const char *)resp.body, resp.body_len, parts, k, &error) < 0) {
        graph_host->http_free(&resp);
        mp_fail(err, MP_RETRY, "$batch messages: %s", error);
        free(error);
        return MP_RETRY;
    }
    graph_host->http_free(&resp);
    for (size_t i = 0; i < k && st == MP_OK; i++) {
        size_t j = idx[i];
        if (!parts[i].present)
            continue; /* asked again in the next round */
        char *pbody = parts[i].body != NULL ? json_dumps(parts[i].body, JSON_COMPACT) : NULL;
        mp_error perr;
        memset(&perr, 0, sizeof perr);
        mp_status ps = graph_http_status(a, parts[i].status, pbody,
                                         pbody != NULL ? strlen(pbody) : 0,
                                         parts[i].retry_after_ms, "GET message", &perr);
        free(pbody);
        if (ps == MP_OK) {
            if (graph_msg_from_json(parts[i].body, &out[j], &error) < 0) {
                mp_fail(err, MP_RETRY, "GET message: %s", error);
                free(error);
                error = NULL;
                st = MP_RETRY;
            } else {
                done[j] = 1;
            }
        } else if (ps == MP_SKIP) {
            gone[j] = done[j] = 1;
        } else if (ps == MP_RETRY || ps == MP_RESYNC) {
            if (perr.retry_after_ms > *retry_r)
                *retry_r = perr.retry_after_ms;
        } else {
            *err = perr;
            st = ps; /* a 401 or 403 inside the batch ends the call */
        }
    }
    graph_parts_clear(parts, k);
    return st;
}

mp_status graph_read_messages(graph_account *a, const char *const *ids, size_t n,
                              graph_msg *out, int *gone, mp_error *err)
{
    memset(out, 0, n * sizeof *out);
    memset(gone, 0, n * sizeof *gone);
    int *done = calloc(n + 1, sizeof *done);
    unsigned *tries = calloc(n + 1, sizeof *tries);
    if (done == NULL || tries == NULL)
        abort();
    size_t idx[GRAPH_BATCH_MAX];
    mp_status st = MP_OK;
    for (;;) {
        size_t k = 0;
        for (size_t i = 0; i < n && k < GRAPH_BATCH_MAX; i++)
            if (!done[i])
                idx[k++] = i;
        if (k == 0)
            break;
        uint32_t retry = 0;
        for (size_t i = 0; i < k; i++)
            tries[idx[i]]++;
        st = one_batch(a, ids, idx, k, out, gone, done, &retry, err);
        if (st != MP_OK)
            break;
        int give_up = 0;
        for (size_t i = 0; i < k; i++)
            give_up |= !done[idx[i]] && tries[idx[i]] >= PART_ATTEMPTS;
        if (give_up) {
            err->retry_after_ms = retry;
            st = mp_fail(err, MP_RETRY, "$batch messages: Graph keeps failing parts"
                                        " (throttled or unavailable)");
            break;
        }
        /* A throttled part closed the budget: the next round waits for it
         * inside graph_http_call, or gives up with MP_RETRY. */
    }
    if (st != MP_OK)
        for (size_t i = 0; i < n; i++)
            graph_msg_clear(&out[i]);
    free(done);
    free(tries);
    return st;
}

mp_status graph_emit(graph_account *a, mp_batch *batch, mp_change_kind kind,
                     const char *folder, const graph_msg *m, graph_fstate *fs, mp_error *err)
{
    char *flags = graph_msg_flags(m);
    mp_change ch = {
        .kind = kind,
        .id = m->id,
        .message_id = m->message_id,
        .subject = m->subject,
        .from = m->from,
        .to = m->to,
        .date = m->received,
        .size = -1,
        .thread_id = m->thread_id,
        .flags = flags,
    };
    const char *in[1] = {folder};
    mp_folders f = {.now_in = in, .n_now_in = 1};
    mp_status st = graph_host->batch_change_folders(batch, &ch, &f, err);
    free(flags);
    if (st == MP_OK && m->missing != 0 && fs != NULL &&
        graph_repair_add(fs, m->id, graph_host->now_ms()) < 0)
        graph_log(a, MP_LOG_WARNING,
                  "message %s came back with an incomplete summary and the repair list of"
                  " \"%s\" is full: stored as it is",
                  m->id, folder);
    return st;
}

mp_status graph_fstate_load(graph_account *a, const char *folder, graph_fstate *f,
                            mp_error *err)
{
    char key[64];
    graph_fstate_key(folder, key, sizeof key);
    char *text = NULL;
    mp_status st = graph_host->state_get(a->acct, key, &text, err);
    if (st == MP_SKIP) {
        memset(err, 0, sizeof *err);
        return graph_fstate_parse(NULL, f, NULL) == 0 ? MP_OK : MP_RETRY;
    }
    if (st != MP_OK)
        return st;
    char *error = NULL;
    int r = graph_fstate_parse(text, f, &error);
    graph_host->free(text);
    if (r < 0) {
        /* A record we cannot read is started afresh, not a stuck folder. */
        graph_log(a, MP_LOG_WARNING, "folder \"%s\": %s; starting it afresh", folder, error);
        free(error);
        graph_fstate_parse(NULL, f, NULL);
    }
    return MP_OK;
}

mp_status graph_fstate_stage(graph_account *a, mp_batch *batch, const char *folder,
                             const graph_fstate *f, mp_error *err)
{
    (void)a;
    char key[64];
    graph_fstate_key(folder, key, sizeof key);
    char *text = graph_fstate_dump(f);
    mp_status st = graph_host->batch_state(batch, key, text, err);
    free(text);
    return st;
}

mp_status graph_emit_moved(graph_account *a, mp_batch *batch, const char *folder,
                           const graph_folder *to, const graph_msg *m, mp_error *err)
{
    /* Entering a folder the host does not sync would store a membership it
     * never shows: the message just leaves. */
    if (to != NULL && graph_host->cursor_get(a->acct, to->path) == NULL)
        to = NULL;
    const char *removed[1] = {folder};
    const char *added[1] = {to != NULL ? to->path : NULL};
    char *flags = graph_msg_flags(m);
    mp_change ch = {.kind = MP_CHANGE_UPDATED, .id = m->id, .size = -1, .flags = flags};
    mp_folders fo = {
        .added = to != NULL ? added : NULL,
        .n_added = to != NULL ? 1 : 0,
        .removed = removed,
        .n_removed = 1,
    };
    mp_status st = graph_host->batch_change_folders(batch, &ch, &fo, err);
    free(flags);
    return st;
}

/*
 * The Gmail API calls the sync steps share: getProfile, labels.list,
 * messages.list, metadata through the batch endpoint, and emitting a message
 * with its folder memberships. Only read methods: the driver never changes
 * the mailbox.
 */
#include "gmail_driver.h"
#include "gmail_multipart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/rand.h>

/* Bounds on what one answer may be: metadata and lists are small. */
#define LIST_MAX_RESPONSE (4u << 20)
#define BATCH_MAX_RESPONSE (16u << 20)
/* How often one id may come back 429/5xx inside a batch before the whole
 * call gives up with MP_RETRY. */
#define PART_ATTEMPTS 4

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

char *gmail_api_url(const gmail_account *a, const char *rest)
{
    size_t n = strlen(a->inst->api_url) + strlen(rest) + 32;
    char *u = malloc(n);
    if (u == NULL)
        abort();
    snprintf(u, n, "%s/gmail/v1/users/me/%s", a->inst->api_url, rest);
    return u;
}

/* Percent-encode one query value (page tokens, label ids). */
static char *qenc(const char *v)
{
    char *e = curl_easy_escape(NULL, v, 0);
    if (e == NULL)
        abort();
    char *out = xstrdup(e);
    curl_free(e);
    return out;
}

static json_t *parse_json(const mp_http_response *resp, const char *what, mp_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)resp->body, resp->body_len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        mp_fail(err, MP_RETRY, "%s: Gmail's answer is not a JSON object", what);
        return NULL;
    }
    return root;
}

mp_status gmail_get_profile(gmail_account *a, char **history_id_r, mp_error *err)
{
    char *url = gmail_api_url(a, "profile");
    gmail_call c = {.method = "GET", .url = url, .units = GMAIL_UNITS_GET_PROFILE,
                    .max_response = LIST_MAX_RESPONSE};
    mp_http_response resp;
    mp_status st = gmail_http_call(a, &c, "getProfile", &resp, err);
    free(url);
    if (st == MP_SKIP)
        return mp_fail(err, MP_FATAL, "getProfile: no such mailbox");
    if (st != MP_OK)
        return st;
    json_t *root = parse_json(&resp, "getProfile", err);
    gmail_host->http_free(&resp);
    if (root == NULL)
        return MP_RETRY;
    json_t *h = json_object_get(root, "historyId");
    char num[32];
    const char *hs = json_string_value(h);
    if (hs == NULL && json_is_integer(h)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(h));
        hs = num;
    }
    if (hs == NULL || hs[0] == '\0') {
        json_decref(root);
        return mp_fail(err, MP_RETRY, "getProfile: no historyId in the answer");
    }
    *history_id_r = xstrdup(hs);
    json_decref(root);
    return MP_OK;
}

mp_status gmail_load_labels(gmail_account *a, mp_error *err)
{
    char *url = gmail_api_url(a, "labels");
    gmail_call c = {.method = "GET", .url = url, .units = GMAIL_UNITS_LABELS_LIST,
                    .max_response = LIST_MAX_RESPONSE};
    mp_http_response resp;
    mp_status st = gmail_http_call(a, &c, "labels.list", &resp, err);
    free(url);
    if (st == MP_SKIP)
        return mp_fail(err, MP_FATAL, "labels.list: no such mailbox");
    if (st != MP_OK)
        return st;
    char *error = NULL;
    int r = gmail_labels_parse(&a->labels, (const char *)resp.body, resp.body_len, &error);
    gmail_host->http_free(&resp);
    if (r < 0) {
        mp_fail(err, MP_RETRY, "%s", error);
        free(error);
        return MP_RETRY;
    }
    a->labels_loaded = 1;
    return MP_OK;
}

mp_status gmail_labels_ready(gmail_account *a, int refresh, mp_error *err)
{
    if (a->labels_loaded && !refresh)
        return MP_OK;
    return gmail_load_labels(a, err);
}

const char *gmail_folder_label(const gmail_account *a, const char *folder)
{
    for (size_t i = 0; i < a->labels.n; i++)
        if (a->labels.v[i].kind == GMAIL_LABEL_FOLDER && strcmp(a->labels.v[i].name, folder) == 0)
            return a->labels.v[i].id;
    const gmail_label *sys = gmail_labels_find(&a->labels, folder);
    return sys != NULL && sys->kind == GMAIL_LABEL_FOLDER ? sys->id : NULL;
}

void gmail_free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

mp_status gmail_list_messages(gmail_account *a, const char *label_id, const char *page_token,
                              uint32_t max, char ***ids_r, size_t *n_r, char **next_r,
                              mp_error *err)
{
    *ids_r = NULL;
    *n_r = 0;
    *next_r = NULL;
    if (max == 0 || max > 500)
        max = max == 0 ? 1 : 500;
    char *lab = qenc(label_id);
    char *tok = page_token != NULL ? qenc(page_token) : NULL;
    size_t rl = strlen(lab) + (tok != NULL ? strlen(tok) : 0) + 128;
    char *rest = malloc(rl);
    if (rest == NULL)
        abort();
    /* SPAM and TRASH are listed only when asked for. */
    int st_label = strcmp(label_id, "SPAM") == 0 || strcmp(label_id, "TRASH") == 0;
    snprintf(rest, rl, "messages?labelIds=%s&maxResults=%u%s%s%s", lab, (unsigned)max,
             st_label ? "&includeSpamTrash=true" : "", tok != NULL ? "&pageToken=" : "",
             tok != NULL ? tok : "");
    free(lab);
    free(tok);
    char *url = gmail_api_url(a, rest);
    free(rest);
    gmail_call c = {.method = "GET", .url = url, .units = GMAIL_UNITS_MESSAGES_LIST,
                    .max_response = LIST_MAX_RESPONSE, .skip_on_400 = page_token != NULL};
    mp_http_response resp;
    mp_status st = gmail_http_call(a, &c, "messages.list", &resp, err);
    free(url);
    if (st == MP_SKIP && page_token != NULL)
        return mp_fail(err, MP_SKIP, "messages.list: page token of label %s no longer valid",
                       label_id);
    if (st == MP_SKIP)
        return mp_fail(err, MP_RETRY, "messages.list: label %s not found (deleted?)", label_id);
    if (st != MP_OK)
        return st;
    json_t *root = parse_json(&resp, "messages.list", err);
    gmail_host->http_free(&resp);
    if (root == NULL)
        return MP_RETRY;
    json_t *msgs = json_object_get(root, "messages");
    char **ids = calloc(json_array_size(msgs) + 1, sizeof *ids);
    if (ids == NULL)
        abort();
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (id != NULL && id[0] != '\0')
            ids[n++] = xstrdup(id);
    }
    const char *next = json_string_value(json_object_get(root, "nextPageToken"));
    if (next != NULL && next[0] != '\0')
        *next_r = xstrdup(next);
    json_decref(root);
    *ids_r = ids;
    *n_r = n;
    return MP_OK;
}

/* What a batch of messages.get asks for and does with each answer. */
typedef struct get_kind {
    const char *query;    /* "format=metadata&..." or "format=raw"      */
    const char *what;     /* for errors                                */
    size_t max_response;
    /* One part's 2xx body for ids[j]: 0, or -1 with *error_r. */
    int (*part)(void *arg, size_t j, const char *body, size_t len, char **error_r);
    void *arg;
} get_kind;

/* One batch of messages.get for ids[idx[0..k-1]]. Hands every part that
 * succeeded to kind->part and marks the gone ones; *clean_r is zero when
 * any part (or the whole batch) failed. Returns MP_OK unless the batch as
 * a whole failed with a status that ends the call. */
static mp_status one_batch(gmail_account *a, const get_kind *kind, const char *const *ids,
                           const size_t *idx, size_t k, int *gone, int *done, int *clean_r,
                           uint32_t *retry_r, mp_error *err)
{
    *clean_r = 1;
    char **targets = calloc(k, sizeof *targets);
    if (targets == NULL)
        abort();
    for (size_t i = 0; i < k; i++) {
        char *id = qenc(ids[idx[i]]);
        size_t n = strlen(a->inst->api_path) + strlen(id) + strlen(kind->query) + 64;
        targets[i] = malloc(n);
        if (targets[i] == NULL)
            abort();
        snprintf(targets[i], n, "%s/gmail/v1/users/me/messages/%s?%s", a->inst->api_path, id,
                 kind->query);
        free(id);
    }
    unsigned char rnd[12];
    char boundary[48];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memset(rnd, 0x5a, sizeof rnd);
    int bl = snprintf(boundary, sizeof boundary, "mailpulse_");
    for (size_t i = 0; i < sizeof rnd; i++)
        bl += snprintf(boundary + bl, sizeof boundary - (size_t)bl, "%02x", rnd[i]);
    size_t body_len = 0;
    char *body = gmail_multipart_build(boundary, (const char *const *)targets, k, &body_len);
    for (size_t i = 0; i < k; i++)
        free(targets[i]);
    free(targets);
    char ctype[96];
    snprintf(ctype, sizeof ctype, "multipart/mixed; boundary=%s", boundary);
    size_t ul = strlen(a->inst->api_url) + 32;
    char *url = malloc(ul);
    if (url == NULL)
        abort();
    snprintf(url, ul, "%s/batch/gmail/v1", a->inst->api_url);
    gmail_call c = {.method = "POST", .url = url, .content_type = ctype,
                    .body = (const uint8_t *)body, .body_len = body_len,
                    .units = (uint32_t)k * GMAIL_UNITS_MESSAGES_GET,
                    .max_response = kind->max_response};
    mp_http_response resp;
    mp_status st = gmail_http_call(a, &c, kind->what, &resp, err);
    free(url);
    free(body);
    if (st != MP_OK) {
        *clean_r = 0;
        return st;
    }
    char rtype[256];
    gmail_part *parts = calloc(k, sizeof *parts);
    if (parts == NULL)
        abort();
    char *error = NULL;
    if (resp.headers == NULL ||
        gmail_header_value(resp.headers, strlen(resp.headers), "Content-Type", rtype,
                           sizeof rtype) < 0 ||
        gmail_multipart_parse(rtype, (const char *)resp.body, resp.body_len, parts, k,
                              &error) < 0) {
        gmail_host->http_free(&resp);
        free(parts);
        *clean_r = 0;
        mp_fail(err, MP_RETRY, "%s: %s", kind->what,
                error != NULL ? error : "answer without a Content-Type");
        free(error);
        return MP_RETRY;
    }
    st = MP_OK;
    for (size_t i = 0; i < k && st == MP_OK; i++) {
        size_t j = idx[i];
        if (!parts[i].present) {
            *clean_r = 0;
            continue;
        }
        mp_error perr;
        memset(&perr, 0, sizeof perr);
        mp_status ps = gmail_http_status(a, parts[i].status, parts[i].body, parts[i].body_len,
                                         parts[i].retry_after_ms, "messages.get", &perr);
        if (ps == MP_OK) {
            if (kind->part(kind->arg, j, parts[i].body, parts[i].body_len, &error) < 0) {
                mp_fail(err, MP_RETRY, "messages.get %s: %s", ids[j], error);
                free(error);
                error = NULL;
                st = MP_RETRY;
            } else {
                done[j] = 1;
            }
        } else if (ps == MP_SKIP) {
            gone[j] = 1;
            done[j] = 1;
        } else if (ps == MP_RETRY) {
            *clean_r = 0;
            if (perr.retry_after_ms > *retry_r)
                *retry_r = perr.retry_after_ms;
        } else {
            *err = perr;
            st = ps; /* 401 inside a batch, a refused scope: the call ends */
        }
    }
    gmail_host->http_free(&resp);
    free(parts);
    return st;
}

/* messages.get of every id through the batch endpoint, in adaptive
 * batches; with `est` (estimated bytes of each answer) a batch also stops
 * at `budget` bytes, but holds at least one id. */
static mp_status batch_get(gmail_account *a, const get_kind *kind, const char *const *ids,
                           size_t n, const int64_t *est, int64_t budget, int *gone,
                           mp_error *err)
{
    memset(gone, 0, n * sizeof *gone);
    int *done = calloc(n + 1, sizeof *done);
    unsigned *tries = calloc(n + 1, sizeof *tries);
    size_t *idx = calloc(GMAIL_BATCH_MAX, sizeof *idx);
    if (done == NULL || tries == NULL || idx == NULL)
        abort();
    mp_status st = MP_OK;
    for (;;) {
        unsigned size = gmail_batch_size(a);
        size_t k = 0;
        int64_t bytes = 0;
        for (size_t i = 0; i < n && k < size; i++) {
            if (done[i])
                continue;
            if (est != NULL && k > 0 && bytes + est[i] > budget)
                break;
            bytes += est != NULL ? est[i] : 0;
            idx[k++] = i;
        }
        if (k == 0)
            break;
        int clean = 1;
        uint32_t retry = 0;
        for (size_t i = 0; i < k; i++)
            tries[idx[i]]++;
        st = one_batch(a, kind, ids, idx, k, gone, done, &clean, &retry, err);
        gmail_batch_feedback(a, clean);
        if (st != MP_OK)
            break;
        int give_up = 0;
        for (size_t i = 0; i < k; i++)
            give_up |= !done[idx[i]] && tries[idx[i]] >= PART_ATTEMPTS;
        if (give_up) {
            err->retry_after_ms = retry;
            st = mp_fail(err, MP_RETRY, "%s: Gmail keeps failing parts"
                                        " (rate limited or unavailable)", kind->what);
            break;
        }
    }
    free(done);
    free(tries);
    free(idx);
    return st;
}

static int metadata_part(void *arg, size_t j, const char *body, size_t len, char **error_r)
{
    gmail_msg *out = arg;
    return gmail_msg_parse(&out[j], body, len, error_r);
}

mp_status gmail_get_metadata(gmail_account *a, const char *const *ids, size_t n,
                             gmail_msg *out, int *gone, mp_error *err)
{
    memset(out, 0, n * sizeof *out);
    get_kind kind = {.query = "format=metadata&" GMAIL_METADATA_HEADERS,
                     .what = "batch messages.get",
                     .max_response = BATCH_MAX_RESPONSE,
                     .part = metadata_part,
                     .arg = out};
    mp_status st = batch_get(a, &kind, ids, n, NULL, 0, gone, err);
    if (st != MP_OK)
        for (size_t i = 0; i < n; i++)
            gmail_msg_clear(&out[i]);
    return st;
}

typedef struct raw_ctx {
    gmail_msg *msgs;
    const size_t *map; /* ids[j] is msgs[map[j]] */
} raw_ctx;

static int raw_part(void *arg, size_t j, const char *body, size_t len, char **error_r)
{
    raw_ctx *cx = arg;
    gmail_msg *m = &cx->msgs[cx->map[j]];
    uint8_t *data = NULL;
    size_t n = 0;
    int r = gmail_raw_decode(body, len, malloc, free, &data, &n, error_r);
    if (r == -2 || r > 0) {
        /* Undecodable or over the size limit: indexed without its body
         * (a reader's fetch says why). */
        free(*error_r);
        *error_r = NULL;
        return 0;
    }
    if (r < 0)
        return -1;
    free(m->raw);
    m->raw = data;
    m->raw_len = n;
    return 0;
}

mp_status gmail_get_bodies(gmail_account *a, gmail_msg *msgs, const int *skip, size_t n,
                           mp_error *err)
{
    if (gmail_host->core_setting("sync.fetch_bodies") != 1 || n == 0)
        return MP_OK;
    const char **ids = calloc(n, sizeof *ids);
    size_t *map = calloc(n, sizeof *map);
    int64_t *est = calloc(n, sizeof *est);
    int *gone = calloc(n, sizeof *gone);
    if (ids == NULL || map == NULL || est == NULL || gone == NULL)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if ((skip != NULL && skip[i]) || msgs[i].id == NULL)
            continue;
        /* base64url in JSON is 4/3 of the message, plus the part's framing. */
        int64_t size = msgs[i].size > 0 ? msgs[i].size : 0;
        est[k] = size / 3 * 4 + 4096;
        map[k] = i;
        ids[k++] = msgs[i].id;
    }
    raw_ctx cx = {msgs, map};
    get_kind kind = {.query = "format=raw",
                     .what = "batch messages.get raw",
                     .max_response = GMAIL_RAW_MAX_RESPONSE,
                     .part = raw_part,
                     .arg = &cx};
    /* A message gone since its metadata came is simply stored without a
     * body (its messageDeleted follows in history). */
    mp_status st = batch_get(a, &kind, ids, k, est, GMAIL_RAW_BATCH_BYTES, gone, err);
    if (st != MP_OK)
        for (size_t i = 0; i < n; i++) {
            free(msgs[i].raw);
            msgs[i].raw = NULL;
            msgs[i].raw_len = 0;
        }
    free(ids);
    free(map);
    free(est);
    free(gone);
    return st;
}

mp_status gmail_emit_message(gmail_account *a, mp_batch *batch, mp_change_kind kind,
                             const gmail_msg *m, mp_error *err)
{
    gmail_placement p;
    gmail_labels_place(&a->labels, (const char *const *)m->label_ids, m->n_labels, &p);
    if (p.unknown > 0) {
        /* A label created since the table was loaded. */
        gmail_placement_clear(&p);
        mp_status st = gmail_load_labels(a, err);
        if (st != MP_OK)
            return st;
        gmail_labels_place(&a->labels, (const char *const *)m->label_ids, m->n_labels, &p);
    }
    mp_change ch = {
        .kind = kind,
        .id = m->id,
        .message_id = m->message_id,
        .subject = m->subject,
        .from = m->from,
        .to = m->to,
        .date = m->date,
        .size = m->size,
        .thread_id = m->thread_id,
        .flags = p.flags,
        .raw = m->raw,
        .raw_len = m->raw_len,
    };
    static const char *const none[1] = {NULL};
    mp_folders f = {
        .now_in = p.n_folders > 0 ? p.folders : none,
        .n_now_in = p.n_folders,
    };
    mp_status st = gmail_host->batch_change_folders(batch, &ch, &f, err);
    gmail_placement_clear(&p);
    return st;
}

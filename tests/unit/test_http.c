/*
 * core/http against a fake daemon API (every function of daemon/api.h is
 * defined here, so no daemon object is linked). The server runs on an
 * event loop in its own thread; the test thread drives it with libcurl
 * over TCP and the unix socket. Fake state is only touched on the loop
 * thread (directly from the API calls, or through run_on_loop()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "daemon/api.h"
#include "http/http.h"
#include "http/http_private.h"
#include "util/log.h"
#include "util/util.h"

#define TOKEN "s3cret-token"
#define MAX_BODY 4096
#define BASE_EVENTS 5
#define WAIT_S 30 /* hang guard only: a broken server fails instead of blocking */

/* ---- fake daemon ------------------------------------------------------ */

typedef struct fake_event {
    int64_t seq;
    const char *type;
    const char *account;
    size_t pad; /* bytes of "subject" padding */
} fake_event;

static struct {
    fake_event *events;
    size_t count, cap;
    struct {
        mpd_events_cb cb;
        void *arg;
    } watch[4];
    int watches, unwatches;
    char *backfill_account, *backfill_folder;
    size_t messages_limit;
    char *messages_folder;
    mpd_raw_cb pending_cb; /* the "slow" raw fetch, fired by the test */
    void *pending_arg;
    int fail_reads;   /* outbox reads that fail before they work again */
    int64_t horizon;  /* events up to this seq "pruned" */
} fake;

static struct event_base *base;
static int fake_mpd_storage;
static mpd *const fake_d = (mpd *)&fake_mpd_storage;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool raw_pending; /* under mu: a "slow" raw fetch is waiting */

static void fake_add_event(const char *type, const char *account, size_t pad)
{
    if (fake.count == fake.cap) {
        fake.cap = fake.cap ? fake.cap * 2 : 16;
        fake.events = mpu_realloc(fake.events, fake.cap * sizeof(*fake.events));
    }
    fake.events[fake.count] = (fake_event){(int64_t)fake.count + 1, type, account, pad};
    fake.count++;
}

static void fake_reset_events(void)
{
    fake.count = 0;
    fake_add_event("message.new", "alice", 0);
    fake_add_event("message.new", "bob", 0);
    fake_add_event("message.updated", "alice", 0);
    fake_add_event("message.deleted", "alice", 0);
    fake_add_event("account.status", "bob", 0);
}

static bool in_list(const char *const *list, const char *value)
{
    if (list == NULL)
        return true;
    for (; *list != NULL; list++)
        if (strcmp(*list, value) == 0)
            return true;
    return false;
}

static bool known_account(const char *id)
{
    return strcmp(id, "alice") == 0 || strcmp(id, "bob") == 0;
}

json_t *mpd_api_health(mpd *d)
{
    return json_pack("{s:s,s:s,s:i}", "status", "ok", "version", "test", "uptime_s", 1);
}

json_t *mpd_api_status(mpd *d)
{
    return json_pack("{s:s,s:{s:I}}", "version", "test", "events", "last_seq",
                     (json_int_t)fake.count);
}

/* Echoes the query the handler parsed, so the tests see what reached it. */
json_t *mpd_api_accounts(mpd *d, const mpd_accounts_query *q)
{
    (void)d;
    return json_pack("{s:[{s:s},{s:s}], s:I, s:s*, s:s*, s:s*}", "accounts", "id", "alice",
                     "id", "bob", "limit", (json_int_t)q->limit, "after", q->after, "status",
                     q->status, "push", q->push);
}

json_t *mpd_api_account(mpd *d, const char *id, int *status_r, char **error_r)
{
    if (!known_account(id)) {
        *status_r = 404;
        *error_r = mpu_strdup("unknown account");
        return NULL;
    }
    return json_pack("{s:s}", "id", id);
}

json_t *mpd_api_messages(mpd *d, const char *account, const char *folder,
                         const char *before, size_t limit, int *status_r, char **error_r)
{
    if (!known_account(account)) {
        *status_r = 404;
        *error_r = mpu_strdup("unknown account");
        return NULL;
    }
    fake.messages_limit = limit;
    free(fake.messages_folder);
    fake.messages_folder = mpu_strdup(folder);
    return json_pack("{s:[],s:n}", "messages", "next_before");
}

json_t *mpd_api_message(mpd *d, const char *id, int *status_r, char **error_r)
{
    if (strcmp(id, "m1") != 0) {
        *status_r = 404;
        *error_r = mpu_strdup("unknown message");
        return NULL;
    }
    return json_pack("{s:s,s:s}", "id", "m1", "account", "alice");
}

static const char raw_bytes[] = "Subject: hi\r\n\r\nbody\0with nul";

static void raw_later(evutil_socket_t fd, short what, void *arg)
{
    struct {
        mpd_raw_cb cb;
        void *arg;
    } *later = arg;
    later->cb(200, (const uint8_t *)raw_bytes, sizeof(raw_bytes) - 1, NULL, later->arg);
    free(later);
}

void mpd_api_message_raw(mpd *d, const char *id, mpd_raw_cb cb, void *arg)
{
    if (strcmp(id, "m1") == 0) {
        cb(200, (const uint8_t *)raw_bytes, sizeof(raw_bytes) - 1, NULL, arg);
    } else if (strcmp(id, "m2") == 0) {
        struct {
            mpd_raw_cb cb;
            void *arg;
        } *later = mpu_malloc(sizeof(*later));
        later->cb = cb;
        later->arg = arg;
        struct timeval zero = {0, 0};
        event_base_once(base, -1, EV_TIMEOUT, raw_later, later, &zero);
    } else if (strcmp(id, "slow") == 0) {
        fake.pending_cb = cb;
        fake.pending_arg = arg;
        pthread_mutex_lock(&mu);
        raw_pending = true;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    } else {
        cb(404, NULL, 0, "unknown message", arg);
    }
}

int mpd_api_sync(mpd *d, const char *account, char **error_r)
{
    if (!known_account(account)) {
        *error_r = mpu_strdup("unknown account");
        return 404;
    }
    return 202;
}

int mpd_api_backfill(mpd *d, const char *account, const char *folder, char **error_r)
{
    free(fake.backfill_account);
    free(fake.backfill_folder);
    fake.backfill_account = mpu_strdup(account);
    fake.backfill_folder = mpu_strdup(folder);
    return 202;
}

int mpd_api_probe(mpd *d, const char *account, char **error_r)
{
    (void)d;
    if (strcmp(account, "alice") != 0) {
        *error_r = mpu_strdup("unknown account");
        return 404;
    }
    return 202;
}

/* Echoes everything it was given: "instance|subpath|query|X-Test|body". */
void mpd_api_push(mpd *d, const char *instance, const char *subpath, const char *query,
                  mpd_header_fn header, void *header_ctx, const uint8_t *body, size_t len,
                  int *status_r, char **content_type_r, char **body_r, size_t *body_len_r)
{
    if (strcmp(instance, "echo") != 0) {
        *status_r = 404;
        *content_type_r = mpu_strdup("application/json");
        *body_r = mpu_strdup("{\"error\":\"unknown instance\"}");
        *body_len_r = strlen(*body_r);
        return;
    }
    const char *h = header(header_ctx, "X-Test");
    char *head = mpu_asprintf("%s|%s|%s|%s|", instance, subpath, query, h ? h : "-");
    size_t head_len = strlen(head);
    char *out = mpu_malloc(head_len + len + 1);
    memcpy(out, head, head_len);
    if (len > 0)
        memcpy(out + head_len, body, len);
    free(head);
    *status_r = 200;
    *content_type_r = mpu_strdup("text/plain");
    *body_r = out;
    *body_len_r = head_len + len;
}

json_t *mpd_api_events(mpd *d, int64_t after, size_t limit, const char *const *types,
                       const char *const *accounts)
{
    if (fake.fail_reads > 0) {
        fake.fail_reads--;
        return NULL;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < fake.count && json_array_size(list) < limit; i++) {
        const fake_event *e = &fake.events[i];
        if (e->seq <= after || e->seq <= fake.horizon || !in_list(types, e->type) ||
            !in_list(accounts, e->account))
            continue;
        char *pad = mpu_malloc(e->pad + 1);
        memset(pad, 'x', e->pad);
        pad[e->pad] = '\0';
        json_array_append_new(
            list, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "seq", (json_int_t)e->seq,
                            "type", e->type, "account", e->account, "folder", "INBOX",
                            "time", "2026-11-22T10:14:04.123Z", "subject", pad));
        free(pad);
    }
    return list;
}

int64_t mpd_api_last_seq(mpd *d)
{
    return (int64_t)fake.count;
}

/* Epoch 2 began at seq 4: a client of epoch 1 resumes at most from 3. */
int64_t mpd_api_epoch(mpd *d)
{
    return 2;
}

int mpd_api_events_resume(mpd *d, int64_t epoch, int64_t seq, int64_t *after_r)
{
    *after_r = epoch == 1 && seq > 3 ? 3 : seq;
    return 0;
}

int64_t mpd_api_events_horizon(mpd *d)
{
    return fake.horizon;
}

void *mpd_events_watch(mpd *d, mpd_events_cb cb, void *arg)
{
    for (size_t i = 0; i < sizeof(fake.watch) / sizeof(fake.watch[0]); i++) {
        if (fake.watch[i].cb == NULL) {
            fake.watch[i].cb = cb;
            fake.watch[i].arg = arg;
            fake.watches++;
            return &fake.watch[i];
        }
    }
    return NULL;
}

void mpd_events_unwatch(mpd *d, void *handle)
{
    for (size_t i = 0; i < sizeof(fake.watch) / sizeof(fake.watch[0]); i++) {
        if (handle == &fake.watch[i]) {
            fake.watch[i].cb = NULL;
            fake.unwatches++;
        }
    }
}

char *mpd_api_metrics(mpd *d)
{
    return mpu_strdup("# TYPE mp_up gauge\nmp_up 1\n");
}

/* Outbound webhooks (core/webhook): routing only. */
json_t *mpd_api_webhooks(mpd *d)
{
    return json_pack("{s:[]}", "webhooks");
}

json_t *mpd_api_webhook(mpd *d, const char *name, int *status_r, char **error_r)
{
    *status_r = 404;
    *error_r = mpu_asprintf("no webhook endpoint '%s'", name);
    return NULL;
}

json_t *mpd_api_webhook_replay(mpd *d, const char *name, int64_t from, int *status_r,
                               char **error_r)
{
    *status_r = 404;
    *error_r = mpu_asprintf("no webhook endpoint '%s'", name);
    return NULL;
}

/* ---- loop thread ---------------------------------------------------------- */

static pthread_t loop_thread;
static mph_server *server;
static int port;
static char tmpdir[64];
static char sock_path[128];

typedef struct job {
    void (*fn)(void *);
    void *arg;
    bool done;
} job;

static void job_cb(evutil_socket_t fd, short what, void *arg)
{
    job *j = arg;
    j->fn(j->arg);
    pthread_mutex_lock(&mu);
    j->done = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void run_on_loop(void (*fn)(void *), void *arg)
{
    job j = {fn, arg, false};
    struct event *ev = event_new(base, -1, 0, job_cb, &j);
    event_active(ev, EV_TIMEOUT, 0);
    pthread_mutex_lock(&mu);
    while (!j.done)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    event_free(ev);
}

static void *loop_main(void *arg)
{
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void stop_on_loop(void *arg)
{
    mph_stop(&server);
    event_base_loopbreak(base);
}

static int group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    evthread_use_pthreads();
    base = event_base_new();
    fake_reset_events();
    mpu_strlcpy(tmpdir, "/tmp/mph-test-XXXXXX", sizeof(tmpdir));
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(sock_path, sizeof(sock_path), "%s/api.sock", tmpdir);
    mph_config config = {
        .listen = "127.0.0.1:0",
        .socket = sock_path,
        .token = TOKEN,
        .max_body = MAX_BODY,
        .sse_heartbeat_ms = 100,
    };
    char *error = NULL;
    server = mph_start(base, &config, fake_d, &error);
    if (server == NULL) {
        fprintf(stderr, "mph_start: %s\n", error);
        free(error);
        return -1;
    }
    port = mph_port(server);
    pthread_create(&loop_thread, NULL, loop_main, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    run_on_loop(stop_on_loop, NULL);
    pthread_join(loop_thread, NULL);
    event_base_free(base);
    struct stat st;
    int left = lstat(sock_path, &st) == 0;
    rmdir(tmpdir);
    free(fake.events);
    free(fake.backfill_account);
    free(fake.backfill_folder);
    free(fake.messages_folder);
    curl_global_cleanup();
    libevent_global_shutdown();
    /* mph_stop removes its socket and drops its watch. */
    return left || fake.watches != fake.unwatches ? -1 : 0;
}

/* ---- HTTP client helpers -------------------------------------------------- */

typedef struct response {
    long status;
    char *body;
    size_t len;
    char *headers;
    size_t headers_len;
    char *content_type;
} response;

typedef struct request {
    const char *method;
    const char *path;
    const char *auth; /* full Authorization value, or NULL */
    bool over_unix;
    const void *body;
    size_t body_len;
    const char *header; /* one extra request header, or NULL */
} request;

typedef struct sink {
    char *data;
    size_t len, cap;
} sink;

static size_t sink_write(char *data, size_t size, size_t n, void *arg)
{
    sink *s = arg;
    if (s->len + size * n + 1 > s->cap) {
        s->cap = (s->len + size * n + 1) * 2;
        s->data = mpu_realloc(s->data, s->cap);
    }
    memcpy(s->data + s->len, data, size * n);
    s->len += size * n;
    s->data[s->len] = '\0';
    return size * n;
}

static void set_target(CURL *curl, const char *path, bool over_unix, char *url,
                       size_t size)
{
    if (over_unix) {
        curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, sock_path);
        snprintf(url, size, "http://localhost%s", path);
    } else {
        snprintf(url, size, "http://127.0.0.1:%d%s", port, path);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
}

static response http(request rq)
{
    response r = {0};
    sink body = {0}, headers = {0};
    char url[512], auth[256];
    CURL *curl = curl_easy_init();
    set_target(curl, rq.path, rq.over_unix, url, sizeof(url));
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, rq.method);
    if (rq.body != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, rq.body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq.body_len);
    }
    struct curl_slist *list = NULL;
    if (rq.header == NULL || strncmp(rq.header, "Expect:", 7) != 0)
        list = curl_slist_append(list, "Expect:");
    if (rq.auth != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: %s", rq.auth);
        list = curl_slist_append(list, auth);
    }
    if (rq.header != NULL)
        list = curl_slist_append(list, rq.header);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, sink_write);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(curl);
    assert_int_equal(rc, CURLE_OK);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    char *ctype = NULL;
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ctype);
    r.content_type = mpu_strdup(ctype);
    curl_slist_free_all(list);
    curl_easy_cleanup(curl);
    r.body = body.data != NULL ? body.data : mpu_strdup("");
    r.len = body.len;
    r.headers = headers.data != NULL ? headers.data : mpu_strdup("");
    r.headers_len = headers.len;
    return r;
}

static response get(const char *path, const char *auth)
{
    return http((request){.method = "GET", .path = path, .auth = auth});
}

static void response_free(response *r)
{
    free(r->body);
    free(r->headers);
    free(r->content_type);
}

static void assert_json_error(const response *r, long status)
{
    assert_int_equal(r->status, status);
    assert_non_null(r->content_type);
    assert_string_equal(r->content_type, "application/json");
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_string(json_object_get(j, "error")));
    json_decref(j);
}

/* Ids of the "id: N" lines of an event stream, in order. */
static size_t stream_ids(const char *text, int64_t *ids, size_t max)
{
    size_t n = 0;
    /* Line by line with bounded scans: strchr/strtoll over a multi-megabyte
     * text are quadratic under ASan's strict_string_checks, which rescans
     * the whole rest of the string on every call. */
    const char *end = text + strlen(text);
    for (const char *line = text; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);
        if (len > 4 && memcmp(line, "id: ", 4) == 0) {
            int64_t v = 0;
            size_t i = 4;
            /* "<epoch>:<seq>": the seq */
            while (i < len && line[i] != ':')
                i++;
            for (i++; i < len && line[i] >= '0' && line[i] <= '9'; i++)
                v = v * 10 + (line[i] - '0');
            if (n < max)
                ids[n] = v;
            n++;
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return n;
}

static void assert_ids(const char *text, int64_t first, int64_t last)
{
    int64_t ids[64];
    size_t n = stream_ids(text, ids, 64);
    assert_int_equal(n, (size_t)(last - first + 1));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], first + (int64_t)i);
}

#define BEARER "Bearer " TOKEN

/* ---- tests ------------------------------------------------------------ */

static void test_auth(void **state)
{
    response r = get("/v1/status", NULL);
    assert_json_error(&r, 401);
    assert_non_null(strcasestr(r.headers, "WWW-Authenticate: Bearer"));
    response_free(&r);

    r = get("/v1/status", "Bearer wrong");
    assert_json_error(&r, 401);
    response_free(&r);

    r = get("/v1/status", "Bearer " TOKEN "x");
    assert_json_error(&r, 401);
    response_free(&r);

    r = get("/v1/status", "Basic " TOKEN);
    assert_json_error(&r, 401);
    response_free(&r);

    /* Unknown /v1 paths do not reveal anything without the token. */
    r = get("/v1/nothing", NULL);
    assert_json_error(&r, 401);
    response_free(&r);

    r = get("/v1/status", BEARER);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_string_equal(r.body, "{\"version\":\"test\",\"events\":{\"last_seq\":5}}");
    response_free(&r);

    r = get("/v1/status", "bearer " TOKEN);
    assert_int_equal(r.status, 200);
    response_free(&r);

    r = http((request){.method = "GET", .path = "/v1/accounts", .over_unix = true});
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"accounts\":[{\"id\":\"alice\"},{\"id\":\"bob\"}],"
                                "\"limit\":0}");
    response_free(&r);
}

/* GET /v1/accounts: limit is checked, the page and filters reach the
 * daemon, empty values count as absent. */
static void test_accounts_query(void **state)
{
    (void)state;
    response r = get("/v1/accounts?limit=5&after=alice&status=ok&push=live", "bearer " TOKEN);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"limit\":5"));
    assert_non_null(strstr(r.body, "\"after\":\"alice\""));
    assert_non_null(strstr(r.body, "\"status\":\"ok\""));
    assert_non_null(strstr(r.body, "\"push\":\"live\""));
    response_free(&r);

    r = get("/v1/accounts?status=&push=", "bearer " TOKEN);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "\"status\""));
    assert_null(strstr(r.body, "\"push\""));
    response_free(&r);

    static const char *const bad[] = {"/v1/accounts?limit=0", "/v1/accounts?limit=1001",
                                      "/v1/accounts?limit=x", "/v1/accounts?limit=-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = get(bad[i], "bearer " TOKEN);
        assert_int_equal(r.status, 400);
        response_free(&r);
    }
}

static void test_open_endpoints(void **state)
{
    response r = get("/healthz", NULL);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    response_free(&r);

    /* /metrics lists account ids: the token on TCP, none on the socket. */
    r = get("/metrics", NULL);
    assert_json_error(&r, 401);
    response_free(&r);

    r = get("/metrics", BEARER);
    assert_int_equal(r.status, 200);
    assert_true(strncmp(r.content_type, "text/plain", 10) == 0);
    assert_non_null(strstr(r.body, "mp_up 1"));
    response_free(&r);

    r = http((request){.method = "GET", .path = "/metrics", .over_unix = true});
    assert_int_equal(r.status, 200);
    response_free(&r);

    r = http((request){.method = "GET", .path = "/healthz", .over_unix = true});
    assert_int_equal(r.status, 200);
    response_free(&r);
}

static void test_not_found_and_methods(void **state)
{
    response r = get("/nope", NULL);
    assert_json_error(&r, 404);
    response_free(&r);

    r = get("/v1/nothing", BEARER);
    assert_json_error(&r, 404);
    response_free(&r);

    r = get("/v1/accounts/", BEARER);
    assert_json_error(&r, 404);
    response_free(&r);

    r = get("/v1/accounts/carol", BEARER);
    assert_json_error(&r, 404);
    assert_non_null(strstr(r.body, "unknown account"));
    response_free(&r);

    r = get("/v1/accounts/alice", BEARER);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"id\":\"alice\"}");
    response_free(&r);

    r = get("/v1/messages/m9", BEARER);
    assert_json_error(&r, 404);
    response_free(&r);

    r = http((request){.method = "POST",
                       .path = "/v1/status",
                       .auth = BEARER,
                       .body = "",
                       .body_len = 0});
    assert_json_error(&r, 405);
    assert_non_null(strstr(r.headers, "Allow: GET\r\n"));
    response_free(&r);

    r = http(
        (request){.method = "GET", .path = "/v1/accounts/alice/sync", .auth = BEARER});
    assert_json_error(&r, 405);
    assert_non_null(strstr(r.headers, "Allow: POST\r\n"));
    response_free(&r);

    r = http((request){.method = "DELETE", .path = "/healthz"});
    assert_json_error(&r, 405);
    response_free(&r);

    r = http((request){.method = "GET", .path = "/push/echo"});
    assert_json_error(&r, 405);
    response_free(&r);
}

static void test_triggers_and_paths(void **state)
{
    response r = http((request){.method = "POST",
                                .path = "/v1/accounts/alice/sync",
                                .auth = BEARER,
                                .body = "",
                                .body_len = 0});
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body, "{\"queued\":true}");
    response_free(&r);

    r = http((request){.method = "POST",
                       .path = "/v1/accounts/carol/sync",
                       .auth = BEARER,
                       .body = "",
                       .body_len = 0});
    assert_json_error(&r, 404);
    response_free(&r);

    r = http((request){.method = "POST",
                       .path = "/v1/accounts/alice/probe",
                       .auth = BEARER,
                       .body = "",
                       .body_len = 0});
    assert_int_equal(r.status, 202);
    response_free(&r);
    r = http((request){.method = "POST",
                       .path = "/v1/accounts/carol/probe",
                       .auth = BEARER,
                       .body = "",
                       .body_len = 0});
    assert_json_error(&r, 404);
    response_free(&r);

    /* %2F is part of the segment, not a separator; '+' stays a plus. */
    r = http((request){.method = "POST",
                       .path = "/v1/accounts/alice/folders/Archive%2F2020/backfill",
                       .auth = BEARER,
                       .body = "",
                       .body_len = 0});
    assert_int_equal(r.status, 202);
    response_free(&r);
    assert_string_equal(fake.backfill_account, "alice");
    assert_string_equal(fake.backfill_folder, "Archive/2020");

    r = http((request){.method = "POST",
                       .path = "/v1/accounts/alice/folders/a+b%20c/backfill",
                       .auth = BEARER,
                       .body = "",
                       .body_len = 0});
    assert_int_equal(r.status, 202);
    response_free(&r);
    assert_string_equal(fake.backfill_folder, "a+b c");

    /* Unencoded, the slash splits the path and no route matches. */
    r = http((request){.method = "POST",
                       .path = "/v1/accounts/alice/folders/Archive/2020/backfill",
                       .auth = BEARER,
                       .body = "",
                       .body_len = 0});
    assert_json_error(&r, 404);
    response_free(&r);

    r = http((request){.method = "POST",
                       .path = "/v1/accounts/alice/folders/bad%00x/backfill",
                       .auth = BEARER,
                       .body = "",
                       .body_len = 0});
    assert_json_error(&r, 400);
    response_free(&r);
    assert_string_equal(fake.backfill_folder, "a+b c");
}

static void test_limit_validation(void **state)
{
    static const char *const bad[] = {"0", "1001", "abc", "-1", "%205", "+5", "", "1.5"};
    char path[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/v1/accounts/alice/messages?limit=%s", bad[i]);
        response r = get(path, BEARER);
        assert_json_error(&r, 400);
        response_free(&r);
    }
    response r = get("/v1/accounts/alice/messages?limit=1000&folder=INBOX%2FSub", BEARER);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"messages\":[],\"next_before\":null}");
    response_free(&r);
    assert_int_equal(fake.messages_limit, 1000);
    assert_string_equal(fake.messages_folder, "INBOX/Sub");

    r = get("/v1/accounts/alice/messages", BEARER);
    assert_int_equal(r.status, 200);
    response_free(&r);
    assert_int_equal(fake.messages_limit, 0);
    assert_null(fake.messages_folder);

    r = get("/v1/accounts/carol/messages?limit=5", BEARER);
    assert_json_error(&r, 404);
    response_free(&r);

    r = get("/v1/accounts/alice/messages?novalue", BEARER);
    assert_json_error(&r, 400);
    response_free(&r);

    r = get("/v1/events?after=-1", BEARER);
    assert_json_error(&r, 400);
    response_free(&r);

    r = get("/v1/events?after=x&once=1", BEARER);
    assert_json_error(&r, 400);
    response_free(&r);

    r = http((request){.method = "GET",
                       .path = "/v1/events?once=1",
                       .auth = BEARER,
                       .header = "Last-Event-ID: abc"});
    assert_json_error(&r, 400);
    response_free(&r);
}

static void test_push(void **state)
{
    static const char body[] = "{\"x\":1}\0tail";
    response r = http((request){.method = "POST",
                                .path = "/push/echo/sub/path?validationToken=a%20b",
                                .body = body,
                                .body_len = sizeof(body) - 1,
                                .header = "X-Test: hello"});
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/plain");
    static const char expect[] =
        "echo|/sub/path|validationToken=a%20b|hello|{\"x\":1}\0tail";
    assert_int_equal(r.len, sizeof(expect) - 1);
    assert_memory_equal(r.body, expect, sizeof(expect) - 1);
    response_free(&r);

    r = http(
        (request){.method = "POST", .path = "/push/echo", .body = "", .body_len = 0});
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "echo|||-|");
    response_free(&r);

    r = http(
        (request){.method = "POST", .path = "/push/other", .body = "x", .body_len = 1});
    assert_json_error(&r, 404);
    response_free(&r);

    /* At the limit passes, one byte over is refused before the driver. */
    char *big = mpu_malloc(MAX_BODY + 1);
    memset(big, 'a', MAX_BODY + 1);
    r = http((request){
        .method = "POST", .path = "/push/echo", .body = big, .body_len = MAX_BODY});
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, strlen("echo|||-|") + MAX_BODY);
    response_free(&r);
    r = http((request){
        .method = "POST", .path = "/push/echo", .body = big, .body_len = MAX_BODY + 1});
    assert_int_equal(r.status, 413);
    response_free(&r);
    /* Announced up front: refused without waiting for the body. */
    r = http((request){.method = "POST", .path = "/push/echo", .body = big,
                       .body_len = MAX_BODY + 1, .header = "Expect: 100-continue"});
    assert_int_equal(r.status, 413);
    response_free(&r);
    free(big);
}

static void test_raw(void **state)
{
    static const char *const paths[] = {"/v1/messages/m1/raw", "/v1/messages/m2/raw"};
    for (size_t i = 0; i < 2; i++) {
        response r = get(paths[i], BEARER);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "message/rfc822");
        assert_int_equal(r.len, sizeof(raw_bytes) - 1);
        assert_memory_equal(r.body, raw_bytes, sizeof(raw_bytes) - 1);
        response_free(&r);
    }
    response r = get("/v1/messages/zz/raw", BEARER);
    assert_json_error(&r, 404);
    response_free(&r);

    r = get("/v1/messages/m1", BEARER);
    assert_int_equal(r.status, 200);
    response_free(&r);
}

static int connect_tcp(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void wait_raw_pending(void)
{
    pthread_mutex_lock(&mu);
    while (!raw_pending)
        pthread_cond_wait(&cv, &mu);
    raw_pending = false;
    pthread_mutex_unlock(&mu);
}

static void fire_pending(void *arg)
{
    mpd_raw_cb cb = fake.pending_cb;
    fake.pending_cb = NULL;
    cb(200, (const uint8_t *)raw_bytes, sizeof(raw_bytes) - 1, NULL, fake.pending_arg);
}

static void send_all(int fd, const char *text)
{
    assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

/* The client hangs up while the daemon is still fetching: the late answer
 * must neither crash nor touch freed memory (ASan), and the server goes on. */
static void test_raw_client_gone(void **state)
{
    int fd = connect_tcp();
    send_all(fd, "GET /v1/messages/slow/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Authorization: " BEARER "\r\n\r\n");
    wait_raw_pending();
    close(fd);
    run_on_loop(fire_pending, NULL);

    response r = get("/v1/messages/m1/raw", BEARER);
    assert_int_equal(r.status, 200);
    response_free(&r);
}

static mph_server *second;

static void start_second(void *arg)
{
    mph_config config = {.listen = "127.0.0.1:0",
                         .token = TOKEN,
                         .max_body = MAX_BODY,
                         .sse_heartbeat_ms = 100};
    char *error = NULL;
    second = mph_start(base, &config, fake_d, &error);
    free(error);
}

static void stop_second(void *arg)
{
    mph_stop(&second);
}

/* The server stops while a raw fetch is pending: its connection closes and
 * the callback arriving afterwards only frees its context. */
static void test_raw_after_stop(void **state)
{
    run_on_loop(start_second, NULL);
    assert_non_null(second);
    int saved = port;
    port = mph_port(second);
    assert_int_not_equal(port, 0);
    int fd = connect_tcp();
    port = saved;
    send_all(fd, "GET /v1/messages/slow/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Authorization: " BEARER "\r\n\r\n");
    wait_raw_pending();
    run_on_loop(stop_second, NULL);
    assert_null(second);
    char buf[64];
    assert_int_equal(recv(fd, buf, sizeof(buf), 0), 0);
    close(fd);
    run_on_loop(fire_pending, NULL);
}

static void test_sse_once(void **state)
{
    response r = get("/v1/events?after=0&once=1", BEARER);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/event-stream");
    assert_non_null(strcasestr(r.headers, "Cache-Control: no-cache"));
    assert_non_null(strcasestr(r.headers, "X-Accel-Buffering: no"));
    assert_ids(r.body, 1, BASE_EVENTS);
    /* Exact framing of the first event. */
    const char *first = "id: 2:1\nevent: message.new\ndata: {\"seq\":1,";
    assert_true(strncmp(r.body, first, strlen(first)) == 0);
    const char *data = strstr(r.body, "data: ") + 6;
    char *line = mpu_strndup(data, strcspn(data, "\n"));
    json_t *j = json_loads(line, 0, NULL);
    free(line);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "account")), "alice");
    json_decref(j);
    assert_non_null(strstr(r.body, "}\n\nid: 2:2\nevent: message.new\n"));
    response_free(&r);

    r = get("/v1/events?after=3&once=1", BEARER);
    assert_ids(r.body, 4, BASE_EVENTS);
    response_free(&r);

    /* Last-Event-ID wins over ?after. */
    r = http((request){.method = "GET",
                       .path = "/v1/events?after=0&once=1",
                       .auth = BEARER,
                       .header = "Last-Event-ID: 2"});
    assert_ids(r.body, 3, BASE_EVENTS);
    response_free(&r);

    /* No resume point: only events newer than now, so nothing. */
    r = http((request){.method = "GET", .path = "/v1/events?once=1", .over_unix = true});
    assert_int_equal(r.status, 200);
    assert_int_equal(stream_ids(r.body, NULL, 0), 0);
    response_free(&r);

    r = get("/v1/events?after=0&once=1&types=message.new,message.deleted", BEARER);
    int64_t ids[8];
    assert_int_equal(stream_ids(r.body, ids, 8), 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 4);
    response_free(&r);

    r = get("/v1/events?after=0&once=1&accounts=bob&types=account.status", BEARER);
    assert_int_equal(stream_ids(r.body, ids, 8), 1);
    assert_int_equal(ids[0], 5);
    assert_non_null(strstr(r.body, "event: account.status\n"));
    response_free(&r);
}

/* A streaming client on its own thread; the test thread waits on its text. */
typedef struct stream {
    int port;
    char path[256];
    const char *header;
    pthread_t thread;
    char *text; /* under mu */
    size_t len;
    bool stop;
    bool done; /* under mu */
    long status;
} stream;

static size_t stream_write(char *data, size_t size, size_t n, void *arg)
{
    stream *s = arg;
    pthread_mutex_lock(&mu);
    bool stop = s->stop;
    s->text = mpu_realloc(s->text, s->len + size * n + 1);
    memcpy(s->text + s->len, data, size * n);
    s->len += size * n;
    s->text[s->len] = '\0';
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return stop ? 0 : size * n;
}

static int stream_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
                           curl_off_t d)
{
    stream *s = arg;
    pthread_mutex_lock(&mu);
    bool stop = s->stop;
    pthread_mutex_unlock(&mu);
    return stop ? 1 : 0;
}

static void *stream_main(void *arg)
{
    stream *s = arg;
    char url[512], auth[] = "Authorization: " BEARER;
    CURL *curl = curl_easy_init();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, s->path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    struct curl_slist *list = curl_slist_append(NULL, auth);
    if (s->header != NULL)
        list = curl_slist_append(list, s->header);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, stream_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, s);
    curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &s->status);
    curl_slist_free_all(list);
    curl_easy_cleanup(curl);
    pthread_mutex_lock(&mu);
    s->done = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void stream_start(stream *s, int to_port, const char *path, const char *header)
{
    memset(s, 0, sizeof(*s));
    s->port = to_port;
    mpu_strlcpy(s->path, path, sizeof(s->path));
    s->header = header;
    pthread_create(&s->thread, NULL, stream_main, s);
}

/* Waits until the stream's text contains `needle`. */
static void stream_wait(stream *s, const char *needle)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S;
    pthread_mutex_lock(&mu);
    while (s->text == NULL || strstr(s->text, needle) == NULL) {
        if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT)
            break;
    }
    bool found = s->text != NULL && strstr(s->text, needle) != NULL;
    pthread_mutex_unlock(&mu);
    assert_true(found);
}

static char *stream_stop(stream *s)
{
    pthread_mutex_lock(&mu);
    s->stop = true;
    pthread_mutex_unlock(&mu);
    pthread_join(s->thread, NULL);
    return s->text;
}

typedef struct append {
    const char *type;
    const char *account;
    int count;
} append;

static void append_and_notify(void *arg)
{
    const append *a = arg;
    for (int i = 0; i < a->count; i++)
        fake_add_event(a->type, a->account, 0);
    for (size_t i = 0; i < sizeof(fake.watch) / sizeof(fake.watch[0]); i++)
        if (fake.watch[i].cb != NULL)
            fake.watch[i].cb((int64_t)fake.count, fake.watch[i].arg);
}

static void reset_events(void *arg)
{
    fake_reset_events();
}

static void set_fail_reads(void *arg)
{
    fake.fail_reads = *(const int *)arg;
}

static void set_horizon(void *arg)
{
    fake.horizon = *(const int64_t *)arg;
}

/* A failed outbox read is reported and retried; the stream keeps its
 * position (before the fix it jumped to the newest seq and never sent
 * 3..5). A ?once=1 stream ends with the error instead of looking done. */
static void test_sse_read_failure(void **state)
{
    int fails = 2;
    run_on_loop(set_fail_reads, &fails);
    stream s;
    stream_start(&s, port, "/v1/events", "Last-Event-ID: 2:2");
    stream_wait(&s, "event: error\n");
    stream_wait(&s, "id: 2:5\n");
    char *text = stream_stop(&s);
    assert_ids(text, 3, BASE_EVENTS);
    /* One report per failing streak, without an id. */
    const char *err = strstr(text, "event: error\ndata: {\"error\":");
    assert_non_null(err);
    assert_null(strstr(err + 1, "event: error"));
    assert_true(err < strstr(text, "id: 2:3\n"));
    free(text);

    fails = 1;
    run_on_loop(set_fail_reads, &fails);
    response r = get("/v1/events?after=0&once=1", BEARER);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "event: error\n"));
    assert_int_equal(stream_ids(r.body, NULL, 0), 0);
    response_free(&r);
    r = get("/v1/events?after=0&once=1", BEARER);
    assert_ids(r.body, 1, BASE_EVENTS);
    response_free(&r);
}

/* Ids are "<epoch>:<seq>"; a position of an older epoch resumes where the
 * daemon says (here: no later than 3), a plain seq is the current epoch. */
static void test_sse_epochs(void **state)
{
    response r = http((request){.method = "GET",
                                .path = "/v1/events?once=1",
                                .auth = BEARER,
                                .header = "Last-Event-ID: 1:5"});
    assert_ids(r.body, 4, BASE_EVENTS);
    response_free(&r);
    r = get("/v1/events?after=1:2&once=1", BEARER);
    assert_ids(r.body, 3, BASE_EVENTS);
    response_free(&r);
    r = get("/v1/events?after=2:4&once=1", BEARER);
    assert_ids(r.body, 5, BASE_EVENTS);
    response_free(&r);
    static const char *const bad[] = {"/v1/events?after=0:4", "/v1/events?after=x:4",
                                      "/v1/events?after=2:", "/v1/events?after=2:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = get(bad[i], BEARER);
        assert_json_error(&r, 400);
        response_free(&r);
    }
}

/* A position below what retention kept gets a gap event first. */
static void test_sse_gap(void **state)
{
    int64_t horizon = 3;
    run_on_loop(set_horizon, &horizon);
    response r = get("/v1/events?after=1&once=1", BEARER);
    const char *gap = "id: 2:3\nevent: gap\ndata: {\"after\":1,\"resumed_from\":3,"
                      "\"reason\":\"retention\"}\n\n";
    assert_true(strncmp(r.body, gap, strlen(gap)) == 0);
    assert_ids(r.body, 3, BASE_EVENTS); /* the gap's id, then 4, 5 */
    response_free(&r);
    /* At or above the horizon: no gap. */
    r = get("/v1/events?after=3&once=1", BEARER);
    assert_null(strstr(r.body, "event: gap"));
    assert_ids(r.body, 4, BASE_EVENTS);
    response_free(&r);
    horizon = 0;
    run_on_loop(set_horizon, &horizon);
}

static void test_sse_live(void **state)
{
    stream resumed, bob;
    stream_start(&resumed, port, "/v1/events", "Last-Event-ID: 2");
    stream_wait(&resumed, "id: 2:5\n");
    /* No resume point: starts at the current end; the heartbeat shows the
     * stream is registered. */
    stream_start(&bob, port, "/v1/events?accounts=bob", NULL);
    stream_wait(&bob, ": ping\n\n");

    run_on_loop(append_and_notify, &(append){"message.new", "alice", 1});
    stream_wait(&resumed, "id: 2:6\n");
    run_on_loop(append_and_notify, &(append){"message.deleted", "bob", 2});
    stream_wait(&resumed, "id: 2:8\n");
    stream_wait(&bob, "id: 2:8\n");

    char *text = stream_stop(&resumed);
    assert_int_equal(resumed.status, 200);
    assert_ids(text, 3, 8);
    free(text);
    text = stream_stop(&bob);
    int64_t ids[8];
    assert_int_equal(stream_ids(text, ids, 8), 2);
    assert_int_equal(ids[0], 7);
    assert_int_equal(ids[1], 8);
    free(text);
    /* Every stream of the server shares one watch. */
    assert_int_equal(fake.watches, 1);
    run_on_loop(reset_events, NULL);
}

/* Stopping the server ends open streams (the client sees the end) and
 * frees them (LSan). */
static void test_stop_with_streams(void **state)
{
    run_on_loop(start_second, NULL);
    assert_non_null(second);
    stream a, b;
    stream_start(&a, mph_port(second), "/v1/events?after=3", NULL);
    stream_start(&b, mph_port(second), "/v1/events", NULL);
    stream_wait(&a, "id: 2:5\n");
    stream_wait(&b, ": ping\n\n");
    run_on_loop(stop_second, NULL);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_S;
    pthread_mutex_lock(&mu);
    while (!(a.done && b.done) &&
           pthread_cond_timedwait(&cv, &mu, &deadline) != ETIMEDOUT)
        ;
    bool ended = a.done && b.done;
    pthread_mutex_unlock(&mu);
    assert_true(ended);
    free(stream_stop(&a));
    free(stream_stop(&b));
}

typedef struct bulk {
    int count;
    size_t pad;
} bulk;

static void add_bulk(void *arg)
{
    const bulk *b = arg;
    for (int i = 0; i < b->count; i++)
        fake_add_event("message.synced", i % 2 ? "alice" : "bob", b->pad);
}

/* A backlog much larger than the 4 MiB high-water mark: the stream pauses
 * and resumes from its cursor, and every event arrives exactly once. */
static void test_sse_backpressure(void **state)
{
    enum { BULK = 9000 };
    run_on_loop(add_bulk, &(bulk){BULK, 1000});
    response r = http((request){
        .method = "GET", .path = "/v1/events?after=0&once=1", .over_unix = true});
    assert_int_equal(r.status, 200);
    assert_true(r.len > (8u << 20));
    size_t max = BULK + BASE_EVENTS + 1;
    int64_t *ids = mpu_calloc(max, sizeof(*ids));
    size_t n = stream_ids(r.body, ids, max);
    for (size_t i = 0; i < n && i < max; i++)
        assert_int_equal(ids[i], (int64_t)i + 1);
    free(ids);
    assert_int_equal(n, BULK + BASE_EVENTS);
    response_free(&r);
    run_on_loop(reset_events, NULL);
}

static void test_start_errors(void **state)
{
    static const char *const bad[] = {
        "nonsense",        "127.0.0.1",     "127.0.0.1:", "::1:80",
        "127.0.0.1:70000", "127.0.0.1:+80", ":80"};
    struct event_base *b = event_base_new();
    char *error = NULL;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mph_config config = {.listen = bad[i], .token = TOKEN, .max_body = 10};
        assert_null(mph_start(b, &config, fake_d, &error));
        assert_non_null(error);
        mpu_freep(&error);
    }
    /* TCP without a token is refused. */
    mph_config config = {.listen = "127.0.0.1:0", .max_body = 10};
    assert_null(mph_start(b, &config, fake_d, &error));
    mpu_freep(&error);

    /* A regular file where the socket should go is left alone. */
    char path[160];
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    FILE *f = fopen(path, "w");
    fclose(f);
    config = (mph_config){.socket = path, .max_body = 10};
    assert_null(mph_start(b, &config, fake_d, &error));
    assert_non_null(strstr(error, "not a socket"));
    mpu_freep(&error);
    unlink(path);

    /* A stale socket file is replaced; the new one is 0660. */
    snprintf(path, sizeof(path), "%s/stale.sock", tmpdir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    mpu_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    mph_server *s = mph_start(b, &config, fake_d, &error);
    assert_non_null(s);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    assert_int_equal(mph_port(s), 0);
    /* A live socket is not taken over. */
    mph_server *again = mph_start(b, &config, fake_d, &error);
    assert_null(again);
    assert_non_null(strstr(error, "listening"));
    mpu_freep(&error);
    mph_stop(&s);
    assert_null(s);
    assert_int_equal(lstat(path, &st), -1);
    mph_stop(&s);

    /* IPv6 with brackets, when the host has ::1. */
    config = (mph_config){.listen = "[::1]:0", .token = TOKEN, .max_body = 10};
    s = mph_start(b, &config, fake_d, &error);
    if (s != NULL)
        assert_int_not_equal(mph_port(s), 0);
    mph_stop(&s);
    free(error);
    event_base_free(b);
}

/* ---- hardening: Host, /metrics, connection limits, log rate ----------- */

/* Raw bytes on a fresh connection to `to_port` from `src` (127.0.0.x);
 * returns the answer's status (0 when closed without one). */
static int raw_status(int to_port, const char *text)
{
    int saved = port;
    port = to_port;
    int fd = connect_tcp();
    port = saved;
    send_all(fd, text);
    char buf[512];
    struct timeval tv = {WAIT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strncmp(buf, "HTTP/1.", 7) == 0 ? (int)strtol(buf + 9, NULL, 10) : -1;
}

static void test_host_header(void **state)
{
    static const struct {
        const char *host; /* NULL: no Host header */
        int status;
    } cases[] = {
        {"127.0.0.1", 200},     {"127.0.0.1:8025", 200}, {"[::1]:8025", 200},
        {"[::1]", 200},         {"LocalHost:1", 200},    {"evil.example", 421},
        {"localhost.evil", 421}, {"127.0.0.1:", 421},     {"[::1", 421},
        {"1.2.3.4:80x", 421},   {NULL, 421},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        if (cases[i].host != NULL)
            snprintf(text, sizeof(text), "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n",
                     cases[i].host);
        else
            snprintf(text, sizeof(text), "GET /healthz HTTP/1.0\r\n\r\n");
        if (raw_status(port, text) != cases[i].status)
            fail_msg("Host %s: expected %d", cases[i].host ? cases[i].host : "(none)",
                     cases[i].status);
    }
    /* The unix socket is not reachable by a browser: no Host rule. */
    response r = http((request){.method = "GET",
                                .path = "/v1/status",
                                .over_unix = true,
                                .header = "Host: evil.example"});
    assert_int_equal(r.status, 200);
    response_free(&r);
    /* An error answer is JSON like the others. */
    r = http((request){.method = "GET", .path = "/healthz", .header = "Host: evil.example"});
    assert_json_error(&r, 421);
    response_free(&r);
}

static mph_server *limited;

static const mph_limits short_deadlines = {.max_connections = 4,
                                           .max_per_client = 2,
                                           .request_timeout_ms = 600,
                                           .idle_timeout_ms = 400};
static const mph_limits long_deadlines = {.max_connections = 4,
                                          .max_per_client = 2,
                                          .request_timeout_ms = 30000,
                                          .idle_timeout_ms = 30000};

static const mph_limits roomy = {.max_connections = 16,
                                 .max_per_client = 16,
                                 .request_timeout_ms = 30000,
                                 .idle_timeout_ms = 30000};

/* arg: the mph_limits to use. */
static void start_limited(void *arg)
{
    static const char *const hosts[] = {"mail.example.org", NULL};
    mph_config config = {.listen = "127.0.0.1:0",
                         .token = TOKEN,
                         .max_body = MAX_BODY,
                         .sse_heartbeat_ms = 100,
                         .limits = *(const mph_limits *)arg,
                         .metrics_public = true,
                         .allowed_hosts = hosts};
    char *error = NULL;
    limited = mph_start(base, &config, fake_d, &error);
    free(error);
}

static void stop_limited(void *arg)
{
    mph_stop(&limited);
}

static void get_stats(void *arg)
{
    mph_get_stats(limited, arg);
}

static int connect_from(const char *src, int to_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    sa.sin_port = htons((uint16_t)to_port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Milliseconds until the server closes fd (EOF or reset), -1 if it is
 * still open after `max_ms`. */
static long closed_after(int fd, long max_ms)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct timeval tv = {max_ms / 1000, (max_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[256];
    ssize_t n;
    do {
        n = recv(fd, buf, sizeof(buf), 0);
    } while (n > 0);
    bool closed = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    return closed ? ms : -1;
}

static void test_metrics_public_and_allowed_hosts(void **state)
{
    run_on_loop(start_limited, (void *)&long_deadlines);
    assert_non_null(limited);
    int p = mph_port(limited);
    assert_int_equal(raw_status(p, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 200);
    assert_int_equal(raw_status(p, "GET /healthz HTTP/1.1\r\nHost: Mail.Example.org:443\r\n\r\n"),
                     200);
    assert_int_equal(raw_status(p, "GET /healthz HTTP/1.1\r\nHost: example.org\r\n\r\n"), 421);
    run_on_loop(stop_limited, NULL);
}

/* A request must be complete within request_timeout of its first byte,
 * however the bytes trickle in; a silent connection goes after
 * idle_timeout; a dispatched request has no deadline. */
static void test_deadlines(void **state)
{
    run_on_loop(start_limited, (void *)&short_deadlines);
    assert_non_null(limited);
    int p = mph_port(limited);
    int silent = connect_from("127.0.0.2", p);
    int slow = connect_from("127.0.0.3", p);
    static const char partial[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    long waited = 0;
    for (size_t i = 0; i < 3; i++) { /* a byte every 150 ms: never idle */
        assert_int_equal(send(slow, partial + i, 1, MSG_NOSIGNAL), 1);
        assert_int_equal(closed_after(slow, 150), -1);
        waited += 150;
    }
    long ms = closed_after(slow, 2000);
    assert_true(ms >= 0 && waited + ms >= 500 && waited + ms < 1200);
    assert_true(closed_after(silent, 2000) >= 0);
    close(slow);
    close(silent);

    /* A pending raw fetch outlives both deadlines. */
    int fd = connect_from("127.0.0.4", p);
    send_all(fd, "GET /v1/messages/slow/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Authorization: " BEARER "\r\n\r\n");
    wait_raw_pending();
    assert_int_equal(closed_after(fd, 1000), -1);
    run_on_loop(fire_pending, NULL);
    char buf[256];
    assert_true(recv(fd, buf, sizeof(buf), 0) > 0);
    assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    /* Then it is an idle keep-alive connection. */
    assert_true(closed_after(fd, 2000) >= 0);
    close(fd);

    mph_stats st;
    run_on_loop(get_stats, &st);
    assert_int_equal(st.tcp.timed_out, 3);
    run_on_loop(stop_limited, NULL);
}

/* At a cap the oldest connection without a dispatched request makes way:
 * per client first, then for the listener. */
static void test_connection_caps(void **state)
{
    run_on_loop(start_limited, (void *)&long_deadlines);
    assert_non_null(limited);
    int p = mph_port(limited);
    int a1 = connect_from("127.0.0.2", p);
    int a2 = connect_from("127.0.0.2", p);
    assert_int_equal(closed_after(a1, 100), -1);
    int a3 = connect_from("127.0.0.2", p); /* third from one client */
    assert_true(closed_after(a1, 1000) >= 0);
    assert_int_equal(closed_after(a2, 50), -1);
    assert_int_equal(closed_after(a3, 50), -1);

    int b1 = connect_from("127.0.0.3", p);
    assert_int_equal(closed_after(a2, 100), -1);
    int b2 = connect_from("127.0.0.4", p); /* the listener is full now: */
    assert_true(closed_after(a2, 1000) >= 0); /* the oldest went */
    assert_int_equal(closed_after(a3, 50), -1);
    assert_int_equal(closed_after(b1, 50), -1);

    /* A prompt client still gets its answer. */
    assert_int_equal(raw_status(p, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 200);

    mph_stats st;
    run_on_loop(get_stats, &st);
    assert_true(st.tcp.evicted >= 2);
    assert_true(st.tcp.open <= 4);
    close(a1);
    close(a2);
    close(a3);
    close(b1);
    close(b2);
    run_on_loop(stop_limited, NULL);
}

/* Past 32 KiB a request being read needs one of 4 slots per listener;
 * the others wait (reading paused) until a slot frees, so unfinished
 * large requests cannot pile up in memory. */
static void test_large_request_slots(void **state)
{
    run_on_loop(start_limited, (void *)&roomy);
    assert_non_null(limited);
    int p = mph_port(limited);
    char *big = mpu_malloc(64 * 1024);
    memset(big, 'x', 64 * 1024);
    int holders[4];
    for (int i = 0; i < 4; i++) {
        holders[i] = connect_from("127.0.0.2", p);
        send_all(holders[i], "POST /push/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Length: 100000\r\n\r\n");
        assert_int_equal(send(holders[i], big, 40000, MSG_NOSIGNAL), 40000);
    }
    /* Over max_body: answered 413 once its 40000 bytes are read. */
    int fifth = connect_from("127.0.0.3", p);
    send_all(fifth, "POST /push/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Length: 40000\r\n\r\n");
    ssize_t sent = send(fifth, big, 40000, MSG_NOSIGNAL | MSG_DONTWAIT);
    assert_true(sent > 0);
    char buf[256];
    struct timeval tv = {0, 300 * 1000};
    setsockopt(fifth, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(recv(fifth, buf, sizeof(buf), 0), -1); /* waiting */
    /* Small requests never wait. */
    assert_int_equal(raw_status(p, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 200);

    close(holders[0]);
    if (sent < 40000)
        assert_int_equal(send(fifth, big + sent, (size_t)(40000 - sent), MSG_NOSIGNAL),
                         40000 - sent);
    tv.tv_sec = WAIT_S;
    setsockopt(fifth, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n = recv(fifth, buf, sizeof(buf) - 1, 0);
    assert_true(n > 12);
    assert_true(strncmp(buf, "HTTP/1.1 413", 12) == 0);
    close(fifth);
    for (int i = 1; i < 4; i++)
        close(holders[i]);
    free(big);
    run_on_loop(stop_limited, NULL);
}

/* Token buckets: a burst of `rate`, refilled at `rate` a second, per
 * client address and for the listener; a refusal takes nothing and says
 * how long until a request would pass. */
static void test_rate_buckets(void **state)
{
    mph_rate *rate = mph_rate_new(2, 3);
    int64_t t = 1000;
    assert_int_equal(mph_rate_take(rate, "10.0.0.1", t), 0);
    assert_int_equal(mph_rate_take(rate, "10.0.0.1", t), 0);
    /* 2 a second: the next whole request is 500 ms away. */
    assert_int_equal(mph_rate_take(rate, "10.0.0.1", t), 500);
    assert_int_equal(mph_rate_take(rate, "10.0.0.1", t + 250), 250);
    /* Another client has its own bucket... */
    assert_int_equal(mph_rate_take(rate, "10.0.0.2", t + 250), 0);
    /* ...but the listener's 3 are spent (0.75 refilled in 250 ms). */
    assert_int_equal(mph_rate_take(rate, "10.0.0.3", t + 250), 84);
    assert_int_equal(mph_rate_take(rate, "10.0.0.3", t + 334), 0);
    /* Refused requests took nothing: the first client passes at 500 ms. */
    assert_int_not_equal(mph_rate_take(rate, "10.0.0.1", t + 499), 0);
    assert_int_equal(mph_rate_take(rate, "10.0.0.1", t + 700), 0);
    /* Buckets never hold more than one second's worth. */
    for (int i = 0; i < 2; i++)
        assert_int_equal(mph_rate_take(rate, "10.0.0.4", t + 100000), 0);
    assert_int_not_equal(mph_rate_take(rate, "10.0.0.4", t + 100000), 0);
    mph_rate_free(&rate);
    assert_null(rate);
}

static mph_server *pushsrv;

static void start_push_only(void *arg)
{
    mph_config config = {.token = TOKEN,
                         .max_body = MAX_BODY,
                         .push = {.listen = "127.0.0.1:0",
                                  .max_body = 1024,
                                  .rate = 1000,
                                  .rate_total = 1000}};
    char *error = NULL;
    pushsrv = mph_start(base, &config, fake_d, &error);
    free(error);
}

static void stop_push_only(void *arg)
{
    mph_stop(&pushsrv);
}

/* The push listener's route table: the push routes and /healthz, nothing
 * of the API whatever the request carries; no Host check, no token; its
 * own body limit. */
static void test_push_listener_routes(void **state)
{
    run_on_loop(start_push_only, NULL);
    assert_non_null(pushsrv);
    assert_int_equal(mph_port(pushsrv), 0); /* no API listener */
    int saved = port;
    port = mph_push_port(pushsrv);
    assert_int_not_equal(port, 0);
    static const struct {
        const char *method, *path, *auth;
        long status;
    } cases[] = {
        {"GET", "/v1/status", BEARER, 404},    {"GET", "/v1/status", NULL, 404},
        {"POST", "/v1/status", BEARER, 404},   {"GET", "/v1/accounts", BEARER, 404},
        {"POST", "/v1/accounts/a1/sync", BEARER, 404},
        {"GET", "/v1/events?once=1", BEARER, 404},
        {"GET", "/v1", BEARER, 404},           {"GET", "/metrics", BEARER, 404},
        {"GET", "/metrics", NULL, 404},        {"GET", "/healthz", NULL, 200},
        {"GET", "/push/echo", NULL, 405},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        response r = http((request){.method = cases[i].method,
                                    .path = cases[i].path,
                                    .auth = cases[i].auth,
                                    .header = "Host: push.example.org"});
        if (r.status != cases[i].status)
            fail_msg("%s %s: %ld, expected %ld", cases[i].method, cases[i].path, r.status,
                     cases[i].status);
        response_free(&r);
    }
    response r = http((request){.method = "POST",
                                .path = "/push/echo/x",
                                .body = "{}",
                                .body_len = 2,
                                .header = "Host: push.example.org"});
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "echo|/x||-|{}");
    response_free(&r);
    char big[1025];
    memset(big, 'a', sizeof(big));
    r = http((request){.method = "POST", .path = "/push/echo", .body = big,
                       .body_len = sizeof(big)});
    assert_int_equal(r.status, 413);
    response_free(&r);
    r = http((request){.method = "POST", .path = "/push/echo", .body = big,
                       .body_len = sizeof(big) - 1});
    assert_int_equal(r.status, 200);
    response_free(&r);
    port = saved;
    run_on_loop(stop_push_only, NULL);
    assert_null(pushsrv);
}

static void test_log_rate_limit(void **state)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/log", tmpdir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    mpu_log_limit limit = MPU_LOG_LIMIT_INIT(3, 200);
    for (int i = 0; i < 10; i++)
        mpu_log_limited(&limit, MP_LOG_WARNING, "t", "repeated %d", i);
    struct timespec pause = {0, 250 * 1000000L};
    nanosleep(&pause, NULL);
    mpu_log_limited(&limit, MP_LOG_WARNING, "t", "repeated %d", 10);
    mpu_log_limited(&limit, MP_LOG_WARNING, "t", "repeated %d", 11);
    mpu_log_limited(&limit, MP_LOG_WARNING, "t", "repeated %d", 12);
    mpu_log_limited(&limit, MP_LOG_WARNING, "t", "repeated %d", 13);
    mpu_log_limit_flush(&limit, MP_LOG_WARNING, "t");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    FILE *f = fopen(path, "r");
    char text[2048] = "";
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(path);
    int lines = 0;
    for (char *c = text; *c != '\0'; c++)
        lines += *c == '\n';
    /* 3 + summary + 3 + summary */
    assert_int_equal(lines, 8);
    assert_non_null(strstr(text, "repeated 2\n"));
    assert_null(strstr(text, "repeated 3\n"));
    assert_non_null(strstr(text, "suppressed 7 similar messages"));
    assert_non_null(strstr(text, "repeated 12\n"));
    assert_non_null(strstr(text, "suppressed 1 similar messages"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_open_endpoints),
        cmocka_unit_test(test_accounts_query),
        cmocka_unit_test(test_not_found_and_methods),
        cmocka_unit_test(test_triggers_and_paths),
        cmocka_unit_test(test_limit_validation),
        cmocka_unit_test(test_push),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_raw_client_gone),
        cmocka_unit_test(test_raw_after_stop),
        cmocka_unit_test(test_sse_once),
        cmocka_unit_test(test_sse_live),
        cmocka_unit_test(test_sse_read_failure),
        cmocka_unit_test(test_sse_epochs),
        cmocka_unit_test(test_sse_gap),
        cmocka_unit_test(test_sse_backpressure),
        cmocka_unit_test(test_stop_with_streams),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_host_header),
        cmocka_unit_test(test_metrics_public_and_allowed_hosts),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_connection_caps),
        cmocka_unit_test(test_large_request_slots),
        cmocka_unit_test(test_log_rate_limit),
        cmocka_unit_test(test_rate_buckets),
        cmocka_unit_test(test_push_listener_routes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* Unit tests of the driver test kit's mock host, used the way a driver
 * test uses it: a small HTTP/JSON "driver" written against mp_host only
 * runs a delta against the scripted HTTP server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_script_server.h"
#include "mock_host.h"
#include "net/net.h"
#include "oauth/oauth.h"

/* ---- a tiny driver, as a provider driver would be written ---- */

static const mp_host *host;

static const mp_config_key demo_keys[] = {
    {"base_url", MP_CFG_STRING, NULL, 1, "API root"},
    {"page_size", MP_CFG_INT, "50", 0, "messages per page"},
    {"token_file", MP_CFG_SECRET_FILE, NULL, 1, "bearer token"},
    {NULL, MP_CFG_END, NULL, 0, NULL},
};

/* GET <base_url>/changes?since=<cursor>; each body line "id subject" is a
 * new message; the answer's X-Cursor header is the next cursor. */
static mp_status demo_delta(mp_account *acct, const mp_config *cfg, mp_batch *batch,
                            mp_error *err)
{
    char *token = NULL;
    size_t token_len = 0;
    mp_status st = host->read_secret(cfg, "token_file", &token, &token_len, err);
    if (st != MP_OK)
        return st;
    const char *since = host->cursor_get(acct, "INBOX");
    char url[256], auth[128];
    snprintf(url, sizeof url, "%s/changes?since=%s&top=%lld",
             host->config_string(cfg, "base_url"), since ? since : "0",
             (long long)host->config_int(cfg, "page_size"));
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    host->free_secret(&token);
    const char *headers[] = {auth, NULL};
    mp_http_request req = {"GET", url, headers, NULL, 0, 5000};
    mp_http_response resp;
    st = host->http(acct, &req, &resp, err);
    if (st != MP_OK)
        return st;
    if (resp.status == 429) {
        err->retry_after_ms = resp.retry_after_ms;
        host->http_free(&resp);
        return mp_fail(err, MP_RETRY, "throttled");
    }
    char *next = NULL;
    const char *h = strstr(resp.headers, "X-Cursor: ");
    if (h != NULL)
        next = strndup(h + 10, strcspn(h + 10, "\r\n"));
    for (char *line = (char *)resp.body; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        char *space = strchr(line, ' ');
        if (space != NULL) {
            *space = '\0';
            mp_change c = {.kind = MP_CHANGE_NEW, .id = line, .subject = space + 1,
                           .size = -1};
            host->batch_change(batch, &c, err);
        }
        line = end != NULL ? end + 1 : NULL;
    }
    host->log(NULL, acct, MP_LOG_INFO, "delta done, cursor %s", next ? next : "(same)");
    host->http_free(&resp);
    st = host->batch_commit(batch, next, NULL, 0, err);
    free(next);
    return st;
}

static int count_stored(const mp_stored_message *msg, void *arg)
{
    (void)msg;
    (*(int *)arg)++;
    return 0;
}

static void on_timer(void *arg)
{
    (*(int *)arg)++;
}

/* ---- tests ---- */

static void test_driver_delta(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.method = "GET", .path = "/api/changes", .query = "since=0&top=50",
         .header = "Authorization: Bearer tok-1", .headers = "X-Cursor: 17\r\n",
         .body = "m1 Hello\nm2 World\n"},
        {.path = "/api/changes", .query = "since=17&top=50", .status = 429,
         .headers = "Retry-After: 3\r\n"},
    };
    mpn_global_init();
    mpt_http_server *s = mpt_http_server_start(steps, 2, NULL);
    char *base = mpt_http_server_url(s, "/api");
    mpt_mock *m = mpt_mock_new();
    host = mpt_mock_host(m);
    mpt_mock_declare(m, demo_keys);
    mpt_mock_config_set(m, "base_url", base);
    mpt_mock_secret_set(m, "token_file", "tok-1");
    mp_account *acct = mpt_mock_account(m, "alice");
    mp_batch *batch = mpt_mock_batch(m, acct, "INBOX");
    mp_error err = {0, ""};

    assert_int_equal(demo_delta(acct, mpt_mock_config(m), batch, &err), MP_OK);
    assert_int_equal(mpt_mock_change_count(m), 2);
    const mpt_mock_change *c = mpt_mock_change_at(m, 1);
    assert_string_equal(c->id, "m2");
    assert_string_equal(c->subject, "World");
    assert_string_equal(c->folder, "INBOX");
    assert_int_equal(c->kind, MP_CHANGE_NEW);
    assert_true(c->committed);
    assert_string_equal(mpt_mock_cursor(m, acct, "INBOX"), "17");
    assert_true(mpt_mock_log_contains(m, "info alice: delta done, cursor 17"));
    int stored = 0;
    assert_int_equal(host->stored_messages(acct, "INBOX", count_stored, &stored, &err), MP_OK);
    assert_int_equal(stored, 2);

    /* Throttled: the driver passes the parsed Retry-After on. */
    assert_int_equal(demo_delta(acct, mpt_mock_config(m), batch, &err), MP_RETRY);
    assert_int_equal(err.retry_after_ms, 3000);
    assert_string_equal(mpt_mock_cursor(m, acct, "INBOX"), "17");
    assert_int_equal(mpt_mock_http_count(m), 2);
    assert_int_equal(mpt_http_server_mismatches(s), 0);

    /* No secret: the driver sees what a missing file would give. */
    mpt_mock *m2 = mpt_mock_new();
    host = mpt_mock_host(m2);
    mp_account *bob = mpt_mock_account(m2, "bob");
    assert_int_equal(demo_delta(bob, mpt_mock_config(m2), mpt_mock_batch(m2, bob, "INBOX"),
                                &err),
                     MP_FATAL);
    mpt_mock_free(&m2);
    mpt_mock_free(&m);
    assert_null(m);
    free(base);
    mpt_http_server_stop(&s);
    mpn_thread_cleanup();
}

static void test_config_and_records(void **state)
{
    (void)state;
    mpt_mock *m = mpt_mock_new();
    const mp_host *h = mpt_mock_host(m);
    mpt_mock_declare(m, demo_keys);
    const mp_config *cfg = mpt_mock_config(m);
    assert_int_equal(h->config_int(cfg, "page_size"), 50);
    mpt_mock_config_set(m, "page_size", "10");
    assert_int_equal(h->config_int(cfg, "page_size"), 10);
    assert_null(h->config_string(cfg, "base_url"));
    mpt_mock_config_set(m, "flag", "true");
    assert_true(h->config_bool(cfg, "flag"));
    mpt_mock_config_list_add(m, "folders", "INBOX");
    mpt_mock_config_list_add(m, "folders", "Sent");
    assert_int_equal(h->config_list_len(cfg, "folders"), 2);
    assert_string_equal(h->config_list_string(cfg, "folders", 1), "Sent");
    assert_int_equal(h->core_setting("sync.batch_size"), -1);
    mpt_mock_setting_set(m, "sync.batch_size", 200);
    assert_int_equal(h->core_setting("sync.batch_size"), 200);

    mp_account *a = mpt_mock_account(m, "alice");
    assert_ptr_equal(h->account_find(mpt_mock_instance(m), "alice"), a);
    assert_string_equal(h->account_id(a), "alice");
    int st = 7;
    mpt_mock_set_account_state(a, &st);
    assert_ptr_equal(h->account_state(a), &st);
    h->folder_add(mpt_mock_folder_sink(m), "INBOX", MP_ROLE_INBOX);
    mp_folder_role role;
    assert_string_equal(mpt_mock_folder_at(m, 0, &role), "INBOX");
    assert_int_equal(role, MP_ROLE_INBOX);
    h->push_state(a, "live: test");
    assert_string_equal(mpt_mock_push_state(m, a), "live: test");
    mp_error err = {0, ""};
    assert_int_equal(h->push_hint(a, "INBOX", "h42", &err), MP_OK);
    assert_string_equal(mpt_mock_last_hint(m), "h42");
    assert_int_equal(mpt_mock_sync_now_count(m), 1);

    const char *hdrs[] = {"X-Goog-Channel-Token: abc", NULL};
    mp_push_request preq = {"", "", NULL, 0, hdrs};
    assert_string_equal(h->request_header(&preq, "x-goog-channel-token"), "abc");
    assert_null(h->request_header(&preq, "Other"));
    h->push_reply(mpt_mock_push_reply(m), 202, "text/plain", "ok", 2);
    assert_int_equal(mpt_mock_reply_status(m), 202);
    assert_string_equal(mpt_mock_reply_body(m), "ok");

    mpt_mock_set_now(m, 1000);
    assert_int_equal(h->now_ms(), 1000);
    int fired = 0;
    mp_timer *t1 = h->timer_add(a, 10, on_timer, &fired);
    mp_timer *t2 = h->timer_add(a, 10, on_timer, &fired);
    h->timer_cancel(&t2);
    assert_null(t2);
    assert_int_equal(mpt_mock_run_timers(m), 1);
    assert_int_equal(mpt_mock_run_timers(m), 0);
    assert_int_equal(fired, 1);
    (void)t1;
    mpt_mock_free(&m);
}

/* ---- ABI 1.1 slots ---- */

/* MP_HOST_HAS: every slot of a full table; on a table cut to the 1.0 size
 * (as a 1.0 host hands out) the 1.1 slots are absent and never read. */
static void test_host_has(void **state)
{
    (void)state;
    mpt_mock *m = mpt_mock_new();
    const mp_host *h = mpt_mock_host(m);
    assert_true(MP_HOST_HAS(h, log));
    assert_true(MP_HOST_HAS(h, core_setting));
    assert_true(MP_HOST_HAS(h, state_get));
    assert_true(MP_HOST_HAS(h, http_ex));

    mp_host old = *h;
    old.abi_minor = 0;
    old.struct_size = (uint32_t)(offsetof(mp_host, core_setting) + sizeof old.core_setting);
    assert_true(MP_HOST_HAS(&old, core_setting));
    assert_false(MP_HOST_HAS(&old, state_get));
    assert_false(MP_HOST_HAS(&old, batch_change_folders));
    assert_false(MP_HOST_HAS(&old, http_ex));
    /* Inside the table but not filled: absent too. */
    old.struct_size = (uint32_t)sizeof old;
    old.state_put = NULL;
    assert_false(MP_HOST_HAS(&old, state_put));
    assert_true(MP_HOST_HAS(&old, state_get));
    assert_false(MP_HOST_HAS((const mp_host *)NULL, log));
    mpt_mock_free(&m);
}

static void test_state_and_account_cursor(void **state)
{
    (void)state;
    mpt_mock *m = mpt_mock_new();
    const mp_host *h = mpt_mock_host(m);
    mp_account *acct = mpt_mock_account(m, "alice");
    mp_batch *batch = mpt_mock_batch(m, acct, "INBOX");
    mp_error err = {0, ""};
    char *v = NULL;

    /* Outside a batch: durable at once. */
    assert_int_equal(h->state_get(acct, "watch", &v, &err), MP_SKIP);
    assert_null(v);
    assert_int_equal(h->state_put(acct, "watch", "w-1", &err), MP_OK);
    assert_int_equal(h->state_get(acct, "watch", &v, &err), MP_OK);
    assert_string_equal(v, "w-1");
    h->free(v);
    assert_int_equal(h->state_put(acct, "watch", NULL, &err), MP_OK);
    assert_null(mpt_mock_state(m, acct, "watch"));
    assert_int_equal(h->state_put(acct, "", "x", &err), MP_FATAL);

    /* With a batch: staged, written by the commit. */
    assert_null(h->account_cursor(acct));
    h->batch_account_cursor(batch, "h-100");
    assert_int_equal(h->batch_state(batch, "sub", "s-1", &err), MP_OK);
    assert_int_equal(h->batch_state(batch, "sub", "s-2", &err), MP_OK);
    assert_null(h->account_cursor(acct));
    assert_null(mpt_mock_state(m, acct, "sub"));
    assert_int_equal(h->batch_commit(batch, NULL, NULL, 0, &err), MP_OK);
    assert_string_equal(h->account_cursor(acct), "h-100");
    assert_string_equal(mpt_mock_state(m, acct, "sub"), "s-2");
    /* Clearing: NULL stages a removal. */
    h->batch_account_cursor(batch, NULL);
    assert_int_equal(h->batch_state(batch, "sub", NULL, &err), MP_OK);
    assert_int_equal(h->batch_commit(batch, NULL, NULL, 0, &err), MP_OK);
    assert_null(h->account_cursor(acct));
    assert_null(mpt_mock_state(m, acct, "sub"));
    mpt_mock_free(&m);
}

static void test_change_folders(void **state)
{
    (void)state;
    mpt_mock *m = mpt_mock_new();
    const mp_host *h = mpt_mock_host(m);
    mp_account *acct = mpt_mock_account(m, "alice");
    mp_batch *batch = mpt_mock_batch(m, acct, "INBOX");
    mp_error err = {0, ""};
    const char *labels[] = {"INBOX", "Work"};
    const char *to[] = {"Archive"}, *from[] = {"INBOX"};
    mp_change c = {.kind = MP_CHANGE_UPDATED, .id = "g1"};
    mp_folders now = {.now_in = labels, .n_now_in = 2};
    mp_folders move = {.added = to, .n_added = 1, .removed = from, .n_removed = 1};

    assert_int_equal(h->batch_change_folders(batch, &c, &now, &err), MP_OK);
    assert_int_equal(h->batch_change_folders(batch, &c, &move, &err), MP_OK);
    assert_int_equal(h->batch_change_folders(batch, &c, NULL, &err), MP_OK);
    assert_int_equal(mpt_mock_change_count(m), 3);
    assert_string_equal(mpt_mock_change_at(m, 0)->folders, "=INBOX =Work");
    assert_string_equal(mpt_mock_change_at(m, 1)->folders, "+Archive -INBOX");
    assert_null(mpt_mock_change_at(m, 2)->folders);
    mpt_mock_free(&m);
}

static void test_push_status(void **state)
{
    (void)state;
    mpt_mock *m = mpt_mock_new();
    const mp_host *h = mpt_mock_host(m);
    mp_account *acct = mpt_mock_account(m, "alice");
    h->push_status(acct, MP_PUSH_STATE_LIVE, NULL);
    assert_string_equal(mpt_mock_push_state(m, acct), "live");
    h->push_status(acct, MP_PUSH_STATE_RECONNECTING, "timeout");
    assert_string_equal(mpt_mock_push_state(m, acct), "reconnecting: timeout");
    h->push_status(acct, (mp_push_state)42, "x");
    assert_string_equal(mpt_mock_push_state(m, acct), "unknown: x");
    mpt_mock_free(&m);
}

typedef struct http_arg {
    const mp_host *h;
    mp_account *acct;
    const char *url;
    mp_status st;
    long status;
} http_arg;

static void *http_thread(void *p)
{
    http_arg *a = p;
    mp_http_request req = {.method = "GET", .url = a->url};
    mp_http_options opt = {.struct_size = sizeof opt};
    mp_http_response resp;
    mp_error err = {0, ""};
    a->st = a->h->http_ex(a->acct, &req, &opt, &resp, &err);
    a->status = resp.status;
    a->h->http_free(&resp);
    mpn_thread_cleanup();
    return NULL;
}

/* http_limit bounds the account's requests in flight; http_ex applies
 * max_response. */
static void test_http_limit_and_options(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/slow", .body = "a", .delay_ms = 300},
        {.path = "/slow", .body = "b", .delay_ms = 300},
        {.path = "/big", .body_fill = 4096},
        {.path = "/big", .body_fill = 4096},
    };
    mpn_global_init();
    mpt_http_server *s = mpt_http_server_start(steps, 4, NULL);
    char *slow = mpt_http_server_url(s, "/slow"), *big = mpt_http_server_url(s, "/big");
    mpt_mock *m = mpt_mock_new();
    const mp_host *h = mpt_mock_host(m);
    mp_account *acct = mpt_mock_account(m, "graph-user");

    h->http_limit(acct, 1);
    assert_int_equal(mpt_mock_http_limit(acct), 1);
    http_arg a[2] = {{h, acct, slow, MP_FATAL, 0}, {h, acct, slow, MP_FATAL, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, http_thread, &a[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(a[i].st, MP_OK);
        assert_int_equal(a[i].status, 200);
    }
    assert_int_equal(mpt_http_server_max_in_flight(s), 1);
    h->http_limit(acct, 0);

    mp_http_request req = {.method = "GET", .url = big};
    mp_http_options opt = {.struct_size = sizeof opt, .max_response = 100};
    mp_http_response resp;
    mp_error err = {0, ""};
    assert_int_equal(h->http_ex(acct, &req, &opt, &resp, &err), MP_RETRY);
    assert_non_null(strstr(err.text, "/big"));
    /* NULL options: the default bound, the whole body. */
    assert_int_equal(h->http_ex(acct, &req, NULL, &resp, &err), MP_OK);
    assert_int_equal(resp.body_len, 4096);
    h->http_free(&resp);
    assert_int_equal(mpt_mock_http_count(m), 4);
    assert_int_equal(mpt_http_server_mismatches(s), 0);
    mpt_mock_free(&m);
    free(slow);
    free(big);
    mpt_http_server_stop(&s);
    mpn_thread_cleanup();
}

/* ---- OAuth2 through the mock: a driver calling an API with a bearer ---- */

/* GET <api>/me with the account's access token; a 401 hands the token
 * back (oauth_reject) and asks for a retry, as a provider driver does. */
static mp_status demo_me(mp_account *acct, const char *api, mp_error *err)
{
    char *token = NULL;
    mp_status st = host->oauth_token(acct, &token, err);
    if (st != MP_OK)
        return st;
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    const char *headers[] = {auth, NULL};
    mp_http_request req = {"GET", api, headers, NULL, 0, 5000};
    mp_http_response resp;
    st = host->http(acct, &req, &resp, err);
    if (st == MP_OK) {
        if (resp.status == 401) {
            host->oauth_reject(acct, token);
            st = mp_fail(err, MP_RETRY, "access token refused");
        }
        host->http_free(&resp);
    }
    host->free_secret(&token);
    return st;
}

static char *write_secret(const char *dir, const char *name, const char *content)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(chmod(path, 0600), 0);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void test_oauth(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.method = "POST", .path = "/token",
         .body_contains = "grant_type=refresh_token&client_id=cid&refresh_token=rt-1",
         .body = "{\"access_token\":\"at-1\",\"expires_in\":3600,\"refresh_token\":\"rt-2\"}"},
        {.method = "GET", .path = "/api/me", .header = "Authorization: Bearer at-1"},
        {.method = "GET", .path = "/api/me", .header = "Authorization: Bearer at-1",
         .status = 401},
        {.method = "POST", .path = "/token", .body_contains = "refresh_token=rt-2",
         .body = "{\"access_token\":\"at-2\",\"expires_in\":3600}"},
        {.method = "GET", .path = "/api/me", .header = "Authorization: Bearer at-2"},
        {.method = "POST", .path = "/token", .status = 400,
         .body = "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been "
                 "expired or revoked.\"}"},
        {.method = "POST", .path = "/token",
         .body_contains = "grant_type=client_credentials", .status = 429,
         .headers = "Retry-After: 30\r\n"},
    };
    char dir[] = "/tmp/mp-mock-oauth-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *rt_file = write_secret(dir, "refresh", "rt-1\n");
    char *secret_file = write_secret(dir, "client_secret", "app-secret\n");
    mpn_global_init();
    mpt_http_server *s = mpt_http_server_start(steps, sizeof steps / sizeof steps[0], NULL);
    assert_non_null(s);
    char *token_url = mpt_http_server_url(s, "/token");
    char *api = mpt_http_server_url(s, "/api/me");
    mpt_mock *m = mpt_mock_new();
    host = mpt_mock_host(m);
    assert_true(MP_HOST_HAS(host, oauth_setup));
    assert_true(MP_HOST_HAS(host, oauth_reject));
    mp_account *alice = mpt_mock_account(m, "alice");
    mp_error err = {0, ""};

    mp_oauth_params p = {.struct_size = sizeof p,
                         .grant = MP_OAUTH_REFRESH_TOKEN,
                         .token_url = token_url,
                         .client_id = "cid",
                         .refresh_token_file = rt_file};
    assert_int_equal(host->oauth_setup(alice, &p, &err), MP_OK);
    assert_int_equal(demo_me(alice, api, &err), MP_OK);
    /* The provider revoked at-1: rejected, then a new one; the rotated
     * refresh token was kept and is the one used. */
    assert_int_equal(demo_me(alice, api, &err), MP_RETRY);
    assert_int_equal(mpt_http_server_count(s), 3);
    const char *record = mpt_mock_state(m, alice, MPO_STATE_KEY);
    assert_non_null(record);
    assert_non_null(strstr(record, " rt-2"));
    assert_int_equal(demo_me(alice, api, &err), MP_OK);
    assert_int_equal(mpt_http_server_count(s), 5);
    assert_int_equal(mpt_mock_oauth_reject_count(m), 1);

    /* SIGHUP-like reset, then the grant is refused: one request, reauth
     * with the reason, and the next call asks nothing. */
    mpo_credentials_changed(mpt_mock_oauth(m), NULL);
    char *token = NULL;
    assert_int_equal(host->oauth_token(alice, &token, &err), MP_REAUTH);
    assert_null(token);
    assert_memory_equal(err.text, "needs re-authorization: ", 24);
    assert_non_null(strstr(err.text, "invalid_grant"));
    assert_non_null(strstr(err.text, "expired or revoked"));
    assert_null(strstr(err.text, "rt-"));
    assert_int_equal(host->oauth_token(alice, &token, &err), MP_REAUTH);
    assert_int_equal(mpt_http_server_count(s), 6);

    /* Client credentials throttled: the window comes back as
     * retry_after_ms and nothing is asked inside it. */
    mp_account *app = mpt_mock_account(m, "app");
    mp_oauth_params cc = {.struct_size = sizeof cc,
                          .grant = MP_OAUTH_CLIENT_CREDENTIALS,
                          .token_url = token_url,
                          .client_id = "app",
                          .client_secret_file = secret_file,
                          .scope = "https://graph.microsoft.com/.default"};
    assert_int_equal(host->oauth_setup(app, &cc, &err), MP_OK);
    memset(&err, 0, sizeof err);
    assert_int_equal(host->oauth_token(app, &token, &err), MP_RETRY);
    assert_true(err.retry_after_ms > 29000 && err.retry_after_ms <= 30000);
    assert_null(strstr(err.text, "app-secret"));
    assert_int_equal(host->oauth_token(app, &token, &err), MP_RETRY);
    assert_int_equal(mpt_http_server_count(s), 7);
    assert_int_equal(mpt_mock_oauth_token_count(m), 7);

    /* Bad descriptions are MP_FATAL at setup. A short struct_size (an
     * older driver) reads the fields beyond it as zero. */
    mp_account *bad = mpt_mock_account(m, "bad");
    assert_int_equal(host->oauth_setup(bad, NULL, &err), MP_FATAL);
    mp_oauth_params small = p;
    small.struct_size = 4;
    assert_int_equal(host->oauth_setup(bad, &small, &err), MP_FATAL);
    assert_non_null(strstr(err.text, "struct_size"));
    small.struct_size = (uint32_t)offsetof(mp_oauth_params, refresh_token_file);
    assert_int_equal(host->oauth_setup(bad, &small, &err), MP_FATAL);
    assert_non_null(strstr(err.text, "refresh_token_file missing"));
    mp_oauth_params unknown = p;
    unknown.grant = (mp_oauth_grant)9;
    assert_int_equal(host->oauth_setup(bad, &unknown, &err), MP_FATAL);
    assert_non_null(strstr(err.text, "unknown grant"));
    /* No credentials set up: unusable, not a retry loop. */
    assert_int_equal(host->oauth_token(bad, &token, &err), MP_FATAL);
    assert_int_equal(mpt_http_server_count(s), 7);
    assert_int_equal(mpt_http_server_mismatches(s), 0);

    mpt_mock_free(&m);
    mpt_http_server_stop(&s);
    free(token_url);
    free(api);
    unlink(rt_file);
    unlink(secret_file);
    rmdir(dir);
    free(rt_file);
    free(secret_file);
    mpn_thread_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_driver_delta),
        cmocka_unit_test(test_config_and_records),
        cmocka_unit_test(test_host_has),
        cmocka_unit_test(test_state_and_account_cursor),
        cmocka_unit_test(test_change_folders),
        cmocka_unit_test(test_push_status),
        cmocka_unit_test(test_http_limit_and_options),
        cmocka_unit_test(test_oauth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

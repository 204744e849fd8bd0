/* gmail.so as the daemon loads it, against the mock host and a scripted
 * Gmail: bootstrap with the account cursor, account_delta, the 401 and
 * 429 handling of the HTTP layer, history 404, raw fetch. The OAuth2 slots
 * are the test's own (the token service has its own tests): a token per
 * call and a count of rejections. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_script_server.h"
#include "mock_host.h"

static mp_host host;
static unsigned tokens_issued, tokens_rejected;
static mp_status token_status = MP_OK;

static mp_status t_oauth_setup(mp_account *acct, const mp_oauth_params *p, mp_error *err)
{
    (void)acct;
    if (p->grant != MP_OAUTH_REFRESH_TOKEN || p->scope == NULL ||
        strstr(p->scope, "gmail.readonly") == NULL)
        return mp_fail(err, MP_FATAL, "unexpected grant or scope");
    return MP_OK;
}

static mp_status t_oauth_token(mp_account *acct, char **token_r, mp_error *err)
{
    (void)acct;
    if (token_status != MP_OK)
        return mp_fail(err, token_status, "token refused");
    char buf[32];
    snprintf(buf, sizeof buf, "tok-%u", ++tokens_issued);
    *token_r = strdup(buf);
    return MP_OK;
}

static void t_free_secret(char **s)
{
    free(*s);
    *s = NULL;
}

static const char *hint;

static const char *t_sync_hint(mp_account *acct, const char *folder)
{
    (void)acct;
    return folder == NULL ? hint : NULL;
}

static void t_oauth_reject(mp_account *acct, const char *token)
{
    (void)acct;
    (void)token;
    tokens_rejected++;
}

typedef struct fx {
    mpt_mock *m;
    void *dl;
    const mp_driver *drv;
    mp_account *acct;
    void *inst_state, *acct_state;
    mpt_http_server *srv;
} fx;

/* Start the scripted server, load the driver, open account "g". */
static void setup_with(fx *f, const mpt_http_step *steps, size_t n)
{
    memset(f, 0, sizeof *f);
    tokens_issued = tokens_rejected = 0;
    token_status = MP_OK;
    f->srv = mpt_http_server_start(steps, n, NULL);
    assert_non_null(f->srv);
    f->m = mpt_mock_new();
    host = *mpt_mock_host(f->m);
    host.oauth_setup = t_oauth_setup;
    host.oauth_token = t_oauth_token;
    host.oauth_reject = t_oauth_reject;
    host.free_secret = t_free_secret;
    host.sync_hint = t_sync_hint;
    hint = NULL;
    f->dl = dlopen(MP_TEST_BUILD_DIR "/drivers/gmail.so", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(f->dl);
    f->drv = dlsym(f->dl, MP_DRIVER_SYMBOL);
    assert_non_null(f->drv);
    mpt_mock_declare(f->m, f->drv->instance_keys);
    char *base = mpt_http_server_url(f->srv, "");
    mpt_mock_config_set(f->m, "api_url", base);
    mpt_mock_config_set(f->m, "token_url", base);
    mpt_mock_config_set(f->m, "client_id", "cid");
    mpt_mock_config_set(f->m, "email", "a@example.com");
    mpt_mock_config_set(f->m, "refresh_token_file", "/nonexistent/rt");
    free(base);
    mp_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(f->drv->init(&host, mpt_mock_instance(f->m), mpt_mock_config(f->m),
                                  &f->inst_state, &err),
                     MP_OK);
    mpt_mock_set_instance_state(f->m, f->inst_state);
    f->acct = mpt_mock_account(f->m, "g");
    assert_int_equal(f->drv->account_open(f->acct, mpt_mock_config(f->m), &f->acct_state, &err),
                     MP_OK);
    mpt_mock_set_account_state(f->acct, f->acct_state);
    assert_int_equal(mpt_mock_http_limit(f->acct), 4);
}

static void teardown_fx(fx *f)
{
    assert_int_equal(mpt_http_server_mismatches(f->srv), 0);
    f->drv->account_close(f->acct, &f->acct_state);
    f->drv->deinit(mpt_mock_instance(f->m), &f->inst_state);
    mpt_http_server_stop(&f->srv);
    mpt_mock_free(&f->m);
    dlclose(f->dl);
}

static const char *uri(fx *f, size_t i, char *buf, size_t cap)
{
    mpt_http_seen s;
    assert_int_equal(mpt_http_server_seen(f->srv, i, &s), 0);
    snprintf(buf, cap, "%s %s", s.method, s.uri);
    mpt_http_seen_clear(&s);
    return buf;
}

#define LABELS                                                                          \
    "{\"labels\":[{\"id\":\"INBOX\",\"name\":\"INBOX\",\"type\":\"system\"},"           \
    "{\"id\":\"UNREAD\",\"name\":\"UNREAD\",\"type\":\"system\"},"                        \
    "{\"id\":\"Label_7\",\"name\":\"Work\",\"type\":\"user\"}]}"
#define BATCH_TYPE "Content-Type: multipart/mixed; boundary=zz\r\n"
#define PART(i, json)                                                                    \
    "--zz\r\nContent-Type: application/http\r\nContent-ID: <response-item-" #i ">\r\n\r\n" \
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" json "\r\n"
#define MSG(id, labels, subj)                                                            \
    "{\"id\":\"" id "\",\"threadId\":\"t\",\"labelIds\":" labels ",\"sizeEstimate\":10," \
    "\"internalDate\":\"1700000000000\",\"payload\":{\"headers\":[{\"name\":\"Subject\","  \
    "\"value\":\"" subj "\"}]}}"

static const mpt_http_step sync_steps[] = {
    {.method = "GET", .path = "/gmail/v1/users/me/labels", .header = "Authorization: Bearer tok-1",
     .body = LABELS},
    {.method = "GET", .path = "/gmail/v1/users/me/profile", .body = "{\"historyId\":\"100\"}"},
    {.method = "GET", .path = "/gmail/v1/users/me/messages",
     .query = "labelIds=INBOX&maxResults=2",
     .body = "{\"messages\":[{\"id\":\"m1\"},{\"id\":\"m2\"}],\"nextPageToken\":\"P/2\"}"},
    {.method = "POST", .path = "/batch/gmail/v1", .body_contains = "messages/m2?format=metadata",
     .headers = BATCH_TYPE,
     .body = PART(1, MSG("m2", "[\"INBOX\",\"UNREAD\"]", "two"))
                 PART(0, MSG("m1", "[\"INBOX\",\"Label_7\"]", "one")) "--zz--\r\n"},
    /* account_delta: m3 arrives, m1 leaves INBOX, m2 is deleted */
    {.method = "GET", .path = "/gmail/v1/users/me/history",
     .body = "{\"history\":["
             "{\"id\":\"101\",\"messagesAdded\":[{\"message\":{\"id\":\"m3\","
             "\"labelIds\":[\"INBOX\"]}}]},"
             "{\"id\":\"102\",\"labelsRemoved\":[{\"message\":{\"id\":\"m1\","
             "\"labelIds\":[\"Label_7\"]},\"labelIds\":[\"INBOX\"]}]},"
             "{\"id\":\"103\",\"messagesDeleted\":[{\"message\":{\"id\":\"m2\"}}]}],"
             "\"historyId\":\"110\"}"},
    {.method = "POST", .path = "/batch/gmail/v1", .headers = BATCH_TYPE,
     .body = PART(0, MSG("m3", "[\"INBOX\"]", "three")) "--zz--\r\n"},
    /* a later sync: the cursor moved on; an expired id is a resync */
    {.method = "GET", .path = "/gmail/v1/users/me/history", .status = 404,
     .body = "{\"error\":{\"code\":404,\"message\":\"Requested entity was not found.\"}}"},
};

static void test_bootstrap_and_delta(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, sync_steps, sizeof sync_steps / sizeof sync_steps[0]);
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_batch *b = mpt_mock_batch(f.m, f.acct, "INBOX");
    assert_int_equal(f.drv->bootstrap(f.acct, "INBOX", 2, b, &err), MP_OK);
    /* The profile was read before the listing, and is the account cursor. */
    char buf[512];
    assert_string_equal(uri(&f, 1, buf, sizeof buf), "GET /gmail/v1/users/me/profile");
    assert_string_equal(mpt_mock_account_cursor(f.m, f.acct), "100");
    assert_string_equal(mpt_mock_cursor(f.m, f.acct, "INBOX"), "100");
    assert_int_equal(mpt_mock_change_count(f.m), 2);
    const mpt_mock_change *c = mpt_mock_change_at(f.m, 0);
    assert_string_equal(c->id, "m1");
    assert_int_equal(c->kind, MP_CHANGE_SYNCED);
    assert_string_equal(c->subject, "one");
    assert_string_equal(c->folders, "=INBOX =Work"); /* one message, two folders */
    assert_string_equal(c->flags, "\\Seen");
    c = mpt_mock_change_at(f.m, 1);
    assert_string_equal(c->id, "m2");
    assert_string_equal(c->flags, "");

    mp_batch *ab = mpt_mock_batch(f.m, f.acct, "");
    assert_int_equal(f.drv->account_delta(f.acct, "100", ab, &err), MP_OK);
    assert_string_equal(uri(&f, 4, buf, sizeof buf),
                        "GET /gmail/v1/users/me/history?startHistoryId=100&maxResults=500"
                        "&historyTypes=messageAdded&historyTypes=messageDeleted"
                        "&historyTypes=labelAdded&historyTypes=labelRemoved");
    assert_string_equal(mpt_mock_account_cursor(f.m, f.acct), "110");
    assert_int_equal(mpt_mock_change_count(f.m), 5);
    c = mpt_mock_change_at(f.m, 2);
    assert_string_equal(c->id, "m3");
    assert_int_equal(c->kind, MP_CHANGE_NEW);
    assert_string_equal(c->folders, "=INBOX");
    c = mpt_mock_change_at(f.m, 3);
    assert_string_equal(c->id, "m1");
    assert_int_equal(c->kind, MP_CHANGE_UPDATED);
    assert_string_equal(c->folders, "-INBOX"); /* left INBOX, still in Work */
    assert_string_equal(c->flags, "\\Seen");
    c = mpt_mock_change_at(f.m, 4);
    assert_string_equal(c->id, "m2");
    assert_int_equal(c->kind, MP_CHANGE_DELETED);

    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->account_delta(f.acct, "110", ab, &err), MP_RESYNC);
    assert_non_null(strstr(err.text, "110"));
    assert_int_equal(tokens_rejected, 0);
    teardown_fx(&f);
}

static const mpt_http_step auth_steps[] = {
    {.path = "/gmail/v1/users/me/labels", .header = "Authorization: Bearer tok-1", .body = LABELS},
    /* an expired token: dropped, a new one works */
    {.path = "/gmail/v1/users/me/profile", .header = "Authorization: Bearer tok-2",
     .status = 401},
    {.path = "/gmail/v1/users/me/profile", .header = "Authorization: Bearer tok-3",
     .body = "{\"historyId\":\"5\"}"},
    /* refused twice: reauth, no third request */
    {.path = "/gmail/v1/users/me/profile", .status = 401},
    {.path = "/gmail/v1/users/me/profile", .status = 401},
    /* rate limited: Retry-After closes the budget */
    {.path = "/gmail/v1/users/me/history", .status = 429, .headers = "Retry-After: 30\r\n",
     .body = "{\"error\":{\"code\":429,\"errors\":[{\"reason\":\"rateLimitExceeded\"}]}}"},
    /* fetch: raw base64url without padding, then a message gone */
    {.path = "/gmail/v1/users/me/messages/m%2F1", .query = "format=raw",
     .body = "{\"id\":\"m/1\",\"raw\":\"U3ViamVjdDogaGkNCg0KYm9keT8-\"}"},
    {.path = "/gmail/v1/users/me/messages/m9", .status = 404,
     .body = "{\"error\":{\"code\":404}}"},
    /* 403 userRateLimitExceeded without Retry-After: our own backoff */
    {.path = "/gmail/v1/users/me/messages/m8", .status = 403,
     .body = "{\"error\":{\"code\":403,\"errors\":[{\"reason\":\"userRateLimitExceeded\"}]}}"},
    /* 5xx: retry later, nothing else */
    {.path = "/gmail/v1/users/me/messages/m7", .status = 503},
    /* another 403 is not a rate limit: fatal, with Google's reason */
    {.path = "/gmail/v1/users/me/messages/m6", .status = 403,
     .body = "{\"error\":{\"code\":403,\"message\":\"Insufficient Permission\","
             "\"errors\":[{\"reason\":\"insufficientPermissions\"}]}}"},
};

static void test_http_layer(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, auth_steps, sizeof auth_steps / sizeof auth_steps[0]);
    const int64_t t0 = 1800000000000LL;
    mpt_mock_set_now(f.m, t0);
    mp_error err;
    memset(&err, 0, sizeof err);
    /* No account cursor yet: start from now (getProfile), 401 retried once. */
    mp_batch *ab = mpt_mock_batch(f.m, f.acct, "");
    assert_int_equal(f.drv->account_delta(f.acct, NULL, ab, &err), MP_OK);
    assert_int_equal(tokens_rejected, 1);
    assert_string_equal(mpt_mock_account_cursor(f.m, f.acct), "5");

    /* Refused twice: MP_REAUTH after exactly two requests. */
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->account_delta(f.acct, NULL, ab, &err), MP_REAUTH);
    assert_int_equal(tokens_rejected, 2);
    assert_int_equal(mpt_http_server_count(f.srv), 5);

    /* 429 with Retry-After: MP_RETRY with it, and nothing is sent inside
     * the window, not even a reader's fetch. */
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->account_delta(f.acct, "5", ab, &err), MP_RETRY);
    assert_int_equal(err.retry_after_ms, 30000);
    mp_raw raw = {0};
    mp_message_ref ref = {.folder = "INBOX", .id = "m/1"};
    mpt_mock_set_now(f.m, t0 + 29000);
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_RETRY);
    assert_true(err.retry_after_ms > 0 && err.retry_after_ms <= 1000);
    assert_int_equal(mpt_http_server_count(f.srv), 6);

    /* After the window: the raw message, decoded. */
    mpt_mock_set_now(f.m, t0 + 31000);
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_OK);
    assert_int_equal(raw.len, 21);
    assert_memory_equal(raw.data, "Subject: hi\r\n\r\nbody?>", 21);
    host.free(raw.data);

    /* Gone: skip. */
    ref.id = "m9";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_SKIP);

    /* Rate limit without Retry-After: backoff of our own, budget closed. */
    ref.id = "m8";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_RETRY);
    assert_int_equal(err.retry_after_ms, 1000);
    mpt_mock_set_now(f.m, t0 + 33000);
    ref.id = "m7";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_RETRY);
    ref.id = "m6";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_FATAL);
    assert_non_null(strstr(err.text, "insufficientPermissions"));
    /* The token never shows in an error text. */
    assert_null(strstr(err.text, "tok-"));
    assert_int_equal(mpt_http_server_count(f.srv), 11);

    /* The host refusing the grant is the account's MP_REAUTH, no request. */
    token_status = MP_REAUTH;
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->fetch(f.acct, &ref, &raw, &err), MP_REAUTH);
    assert_int_equal(mpt_http_server_count(f.srv), 11);
    teardown_fx(&f);
}

static void test_config_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *expect;
    } cases[] = {
        {"api_url", "http://gmail.googleapis.com", "loopback"},
        {"token_url", "ftp://127.0.0.1/", "https"},
        {"push", "webhook", "pubsub-push"},
        {"topic", "topics/t", "projects/PROJECT/topics/TOPIC"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpt_mock *m = mpt_mock_new();
        host = *mpt_mock_host(m);
        host.oauth_setup = t_oauth_setup;
        host.oauth_token = t_oauth_token;
        host.oauth_reject = t_oauth_reject;
        void *dl = dlopen(MP_TEST_BUILD_DIR "/drivers/gmail.so", RTLD_NOW | RTLD_LOCAL);
        const mp_driver *drv = dlsym(dl, MP_DRIVER_SYMBOL);
        mpt_mock_declare(m, drv->instance_keys);
        mpt_mock_config_set(m, cases[i].key, cases[i].value);
        void *st = NULL;
        mp_error err;
        memset(&err, 0, sizeof err);
        assert_int_equal(drv->init(&host, mpt_mock_instance(m), mpt_mock_config(m), &st, &err),
                         MP_FATAL);
        assert_null(st);
        assert_non_null(strstr(err.text, cases[i].key));
        assert_non_null(strstr(err.text, cases[i].expect));
        mpt_mock_free(&m);
        dlclose(dl);
    }
    /* An account needs exactly one credential. */
    fx f;
    setup_with(&f, NULL, 0);
    mp_account *two = mpt_mock_account(f.m, "two");
    mpt_mock_config_set(f.m, "service_account_file", "/nonexistent/sa.json");
    void *st = NULL;
    mp_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->account_open(two, mpt_mock_config(f.m), &st, &err), MP_FATAL);
    assert_non_null(strstr(err.text, "exactly one"));
    teardown_fx(&f);
}

#define EMPTY_HISTORY(id) "{\"historyId\":\"" id "\"}"
static const mpt_http_step hint_steps[] = {
    {.path = "/gmail/v1/users/me/labels", .body = LABELS},
    /* pushed 300, history still at 200: asked again after a second */
    {.path = "/gmail/v1/users/me/history", .query = NULL, .body = EMPTY_HISTORY("200")},
    {.path = "/gmail/v1/users/me/history", .body = EMPTY_HISTORY("300")},
    /* a push equal to the cursor is a plain sync: one walk */
    {.path = "/gmail/v1/users/me/history", .body = EMPTY_HISTORY("300")},
    /* history never catches up: a bounded number of walks, then retry */
    {.path = "/gmail/v1/users/me/history", .body = EMPTY_HISTORY("300")},
    {.path = "/gmail/v1/users/me/history", .body = EMPTY_HISTORY("300")},
    {.path = "/gmail/v1/users/me/history", .body = EMPTY_HISTORY("300")},
    {.path = "/gmail/v1/users/me/history", .body = EMPTY_HISTORY("300")},
};

static void test_push_outran_history(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, hint_steps, sizeof hint_steps / sizeof hint_steps[0]);
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_batch *ab = mpt_mock_batch(f.m, f.acct, "");
    hint = "300";
    assert_int_equal(f.drv->account_delta(f.acct, "200", ab, &err), MP_OK);
    assert_int_equal(mpt_http_server_count(f.srv), 3);
    assert_string_equal(mpt_mock_account_cursor(f.m, f.acct), "300");
    char buf[256];
    assert_non_null(strstr(uri(&f, 2, buf, sizeof buf), "startHistoryId=200"));

    /* Equal to the cursor: not stale, synced once. */
    assert_int_equal(f.drv->account_delta(f.acct, "300", ab, &err), MP_OK);
    assert_int_equal(mpt_http_server_count(f.srv), 4);

    /* Far ahead and never reached: MP_RETRY (the hint stays with the host)
     * after a bounded number of walks. */
    hint = "900";
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->account_delta(f.acct, "300", ab, &err), MP_RETRY);
    assert_true(err.retry_after_ms > 0);
    assert_int_equal(mpt_http_server_count(f.srv), 8);
    teardown_fx(&f);
}

static const mpt_http_step backfill_steps[] = {
    {.path = "/gmail/v1/users/me/labels", .body = LABELS},
    {.path = "/gmail/v1/users/me/messages", .query = "labelIds=Label_7&maxResults=2&pageToken=P%2F2",
     .body = "{\"messages\":[{\"id\":\"m4\"}]}"},
    {.method = "POST", .path = "/batch/gmail/v1", .headers = BATCH_TYPE,
     .body = PART(0, MSG("m4", "[\"Label_7\"]", "four")) "--zz--\r\n"},
    /* a stale position: walk again from the newest, not a fatal error */
    {.path = "/gmail/v1/users/me/messages", .query = "labelIds=Label_7&maxResults=2&pageToken=OLD",
     .status = 400, .body = "{\"error\":{\"code\":400,\"message\":\"Invalid pageToken\"}}"},
    {.path = "/gmail/v1/users/me/messages", .query = "labelIds=Label_7&maxResults=2",
     .body = "{\"messages\":[{\"id\":\"m5\"}],\"nextPageToken\":\"Q\"}"},
    {.method = "POST", .path = "/batch/gmail/v1", .headers = BATCH_TYPE,
     .body = PART(0, MSG("m5", "[\"Label_7\"]", "five")) "--zz--\r\n"},
    {.path = "/gmail/v1/users/me/messages", .query = "labelIds=Label_7&maxResults=1&pageToken=Q",
     .body = "{\"messages\":[]}"},
};

static void test_backfill(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, backfill_steps, sizeof backfill_steps / sizeof backfill_steps[0]);
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_batch *b = mpt_mock_batch(f.m, f.acct, "Work");
    assert_int_equal(f.drv->backfill(f.acct, "Work", "P/2", 2, b, &err), MP_OK);
    assert_int_equal(mpt_mock_change_count(f.m), 1);
    assert_int_equal(mpt_mock_change_at(f.m, 0)->kind, MP_CHANGE_SYNCED);
    assert_string_equal(mpt_mock_change_at(f.m, 0)->folders, "=Work");
    memset(&err, 0, sizeof err);
    assert_int_equal(f.drv->backfill(f.acct, "Work", "OLD", 2, b, &err), MP_OK);
    assert_int_equal(mpt_mock_change_count(f.m), 2);
    assert_string_equal(mpt_mock_change_at(f.m, 1)->id, "m5");
    assert_true(mpt_mock_log_contains(f.m, "starts again from the newest"));
    teardown_fx(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bootstrap_and_delta),
        cmocka_unit_test(test_http_layer),
        cmocka_unit_test(test_config_refusals),
        cmocka_unit_test(test_push_outran_history),
        cmocka_unit_test(test_backfill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* gmail.so's check slot (ABI 1.2) against the mock host and a scripted
 * Google: the verdicts for a complete push setup with a live insert, for
 * credentials Pub/Sub refuses (SKIP, not FAIL), a mailbox other than the
 * configured one, a metadata-only token and no insert scope, and for a
 * refused grant (nothing asked of Google after the token). The OAuth2
 * slots are the test's own, as in test_gmail_driver.c. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "host/host.h"
#include "http_script_server.h"
#include "mock_host.h"

static mp_host host;
static mp_status token_status;
static int have_watch;

static mp_status t_oauth_setup(mp_account *acct, const mp_oauth_params *p, mp_error *err)
{
    (void)acct;
    (void)p;
    (void)err;
    return MP_OK;
}

static mp_status t_oauth_token(mp_account *acct, char **token_r, mp_error *err)
{
    (void)acct;
    if (token_status != MP_OK)
        return mp_fail(err, token_status,
                       "needs re-authorization: invalid_grant: Token has been expired or"
                       " revoked.");
    *token_r = strdup("tok-1");
    return MP_OK;
}

static void t_oauth_reject(mp_account *acct, const char *token)
{
    (void)acct;
    (void)token;
}

static void t_free_secret(char **s)
{
    free(*s);
    *s = NULL;
}

static mp_status t_subscription_get(mp_account *acct, mp_subscription *sub_r,
                                    mp_error *err)
{
    (void)acct;
    memset(sub_r, 0, sizeof *sub_r);
    if (!have_watch)
        return mp_fail(err, MP_SKIP, "none");
    sub_r->provider_id = "projects/p/topics/t";
    sub_r->expires_at = 1800000000;
    return MP_OK;
}

typedef struct fx {
    mpt_mock *m;
    void *dl;
    const mp_driver *drv;
    mp_account *acct;
    void *inst_state, *acct_state;
    mpt_http_server *srv;
    mp_check *chk; /* the daemon's collector, as the mock's check_report */
} fx;

static void setup_with(fx *f, const mpt_http_step *steps, size_t n, const char *push)
{
    memset(f, 0, sizeof *f);
    token_status = MP_OK;
    have_watch = 1;
    f->srv = mpt_http_server_start(steps, n, NULL);
    assert_non_null(f->srv);
    f->m = mpt_mock_new();
    host = *mpt_mock_host(f->m);
    host.oauth_setup = t_oauth_setup;
    host.oauth_token = t_oauth_token;
    host.oauth_reject = t_oauth_reject;
    host.free_secret = t_free_secret;
    host.subscription_get = t_subscription_get;
    f->dl = dlopen(MP_TEST_BUILD_DIR "/drivers/gmail.so", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(f->dl);
    f->drv = dlsym(f->dl, MP_DRIVER_SYMBOL);
    assert_non_null(f->drv);
    assert_non_null(f->drv->check);
    mpt_mock_declare(f->m, f->drv->instance_keys);
    char *base = mpt_http_server_url(f->srv, "");
    char *token_url = mpt_http_server_url(f->srv, "/token");
    mpt_mock_config_set(f->m, "api_url", base);
    mpt_mock_config_set(f->m, "token_url", token_url);
    mpt_mock_config_set(f->m, "pubsub_url", base);
    /* Nothing listens there: the push runtime's JWKS refresher fails
     * quietly instead of asking the scripted server. */
    mpt_mock_config_set(f->m, "certs_url", "http://127.0.0.1:9/certs");
    mpt_mock_config_set(f->m, "client_id", "cid");
    mpt_mock_config_set(f->m, "push", push);
    mpt_mock_config_set(f->m, "topic", "projects/p/topics/t");
    mpt_mock_config_set(f->m, "push_audience", "https://mp.example/push/gmail");
    mpt_mock_config_set(f->m, "push_service_account", "push@p.iam.gserviceaccount.com");
    mpt_mock_config_set(f->m, "email", "a@example.com");
    mpt_mock_config_set(f->m, "refresh_token_file", "/nonexistent/rt");
    free(token_url);
    free(base);
    mp_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(f->drv->init(&host, mpt_mock_instance(f->m), mpt_mock_config(f->m),
                                  &f->inst_state, &err),
                     MP_OK);
    mpt_mock_set_instance_state(f->m, f->inst_state);
    f->acct = mpt_mock_account(f->m, "g");
    assert_int_equal(
        f->drv->account_open(f->acct, mpt_mock_config(f->m), &f->acct_state, &err),
        MP_OK);
    mpt_mock_set_account_state(f->acct, f->acct_state);
}

static void teardown_fx(fx *f)
{
    assert_int_equal(mpt_http_server_mismatches(f->srv), 0);
    mphost_check_free(&f->chk);
    f->drv->account_close(f->acct, &f->acct_state);
    f->drv->deinit(mpt_mock_instance(f->m), &f->inst_state);
    mpt_http_server_stop(&f->srv);
    mpt_mock_free(&f->m);
    dlclose(f->dl);
}

static void run_check(fx *f, unsigned flags)
{
    mp_error err;
    memset(&err, 0, sizeof err);
    mphost_check_free(&f->chk);
    f->chk = mphost_check_new();
    assert_int_equal(f->drv->check(f->acct, flags, f->chk, &err), MP_OK);
}

/* The result `name`, or NULL. */
static const mphost_check_result *find(fx *f, const char *name)
{
    for (size_t i = 0; i < mphost_check_count(f->chk); i++)
        if (strcmp(mphost_check_at(f->chk, i)->name, name) == 0)
            return mphost_check_at(f->chk, i);
    return NULL;
}

/* The detail of `name`, which must have been reported as `want`. */
static const char *result(fx *f, const char *name, mp_check_outcome want)
{
    const mphost_check_result *r = find(f, name);
    if (r == NULL)
        fail_msg("check %s was not reported", name);
    if (r->outcome != want)
        fail_msg("check %s: outcome %d, want %d (%s)", name, (int)r->outcome, (int)want,
                 r->detail);
    return r->detail;
}

#define JSON "Content-Type: application/json\r\n"
#define PROFILE(addr)                                                                    \
    "{\"emailAddress\":\"" addr "\",\"messagesTotal\":12,\"threadsTotal\":9,"            \
    "\"historyId\":\"4711\"}"
#define SCOPES(s)                                                                        \
    "{\"azp\":\"cid\",\"aud\":\"cid\",\"scope\":\"" s "\",\"expires_in\":\"3500\"}"
#define RO "https://www.googleapis.com/auth/gmail.readonly"
#define INS "https://www.googleapis.com/auth/gmail.insert"
#define PS "https://www.googleapis.com/auth/pubsub"
#define POLICY                                                                           \
    "{\"version\":1,\"etag\":\"x\",\"bindings\":[{\"role\":\"roles/pubsub.publisher\","  \
    "\"members\":[\"serviceAccount:gmail-api-push@system.gserviceaccount.com\"]}]}"
#define DENIED                                                                           \
    "{\"error\":{\"code\":403,\"message\":\"Request had insufficient authentication "    \
    "scopes.\",\"status\":\"PERMISSION_DENIED\"}}"

static const mpt_http_step complete[] = {
    {.method = "GET",
     .path = "/gmail/v1/users/me/profile",
     .headers = JSON,
     .header = "Authorization: Bearer tok-1",
     .body = PROFILE("A@Example.com")},
    {.method = "POST",
     .path = "/tokeninfo",
     .body_contains = "access_token=tok-1",
     .headers = JSON,
     .body = SCOPES(RO " " INS " " PS)},
    {.method = "GET",
     .path = "/v1/projects/p/topics/t",
     .headers = JSON,
     .body = "{\"name\":\"projects/p/topics/t\"}"},
    {.method = "GET",
     .path = "/v1/projects/p/topics/t:getIamPolicy",
     .headers = JSON,
     .body = POLICY},
    {.method = "GET",
     .path = "/v1/projects/p/topics/t/subscriptions",
     .headers = JSON,
     .body = "{\"subscriptions\":[\"projects/p/subscriptions/pull\","
             "\"projects/p/subscriptions/push\"],\"nextPageToken\":\"n2\"}"},
    {.method = "GET",
     .path = "/v1/projects/p/subscriptions/pull",
     .headers = JSON,
     .body =
         "{\"name\":\"projects/p/subscriptions/pull\",\"topic\":\"projects/p/topics/t\","
         "\"pushConfig\":{}}"},
    /* Pushes to /push/... without an audience: Pub/Sub signs for the URL,
     * which is not push_audience, so the search goes on. */
    {.method = "GET",
     .path = "/v1/projects/p/subscriptions/push",
     .headers = JSON,
     .body =
         "{\"name\":\"projects/p/subscriptions/push\",\"topic\":\"projects/p/topics/t\","
         "\"pushConfig\":{\"pushEndpoint\":\"https://other.example/push/gmail\","
         "\"oidcToken\":{\"serviceAccountEmail\":\"push@p.iam.gserviceaccount.com\"}}}"},
    {.method = "GET",
     .path = "/v1/projects/p/topics/t/subscriptions",
     .query = "pageToken=n2",
     .headers = JSON,
     .body = "{\"subscriptions\":[\"projects/p/subscriptions/good\"]}"},
    {.method = "GET",
     .path = "/v1/projects/p/subscriptions/good",
     .headers = JSON,
     .body =
         "{\"name\":\"projects/p/subscriptions/good\",\"topic\":\"projects/p/topics/t\","
         "\"pushConfig\":{\"pushEndpoint\":\"https://mp.example/push/gmail\","
         "\"oidcToken\":{\"serviceAccountEmail\":\"push@p.iam.gserviceaccount.com\","
         "\"audience\":\"https://mp.example/push/gmail\"}}}"},
    {.method = "POST",
     .path = "/gmail/v1/users/me/messages",
     .query = "internalDateSource=receivedTime",
     .body_contains = "\"labelIds\":[\"INBOX\",\"UNREAD\"]",
     .headers = JSON,
     .body = "{\"id\":\"18c0abc\",\"threadId\":\"18c0abc\",\"labelIds\":[\"INBOX\","
             "\"UNREAD\"]}"},
};

static void test_complete_push_setup_with_live_insert(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, complete, sizeof complete / sizeof complete[0], "pubsub-push");
    run_check(&f, MP_CHECK_LIVE);
    assert_non_null(strstr(result(&f, "credentials", MP_CHECK_OK), "refresh token"));
    const char *p = result(&f, "profile", MP_CHECK_OK);
    assert_non_null(strstr(p, "12 messages"));
    assert_non_null(strstr(p, "historyId 4711"));
    const char *s = result(&f, "scopes", MP_CHECK_OK);
    assert_non_null(strstr(s, "can insert"));
    assert_non_null(strstr(s, "gmail.insert"));
    result(&f, "topic", MP_CHECK_OK);
    assert_non_null(
        strstr(result(&f, "publisher", MP_CHECK_OK), "roles/pubsub.publisher"));
    const char *ps = result(&f, "push_subscription", MP_CHECK_OK);
    assert_non_null(strstr(ps, "projects/p/subscriptions/good"));
    result(&f, "watch", MP_CHECK_OK);
    const char *live = result(&f, "live_test", MP_CHECK_OK);
    assert_true(strncmp(live, "18c0abc ", 8) == 0);
    assert_null(find(&f, "pull_subscription"));
    /* The token travelled in the form body, never in a URL. */
    mpt_http_seen seen;
    assert_int_equal(mpt_http_server_seen(f.srv, 1, &seen), 0);
    assert_null(strstr(seen.uri, "tok-1"));
    mpt_http_seen_clear(&seen);
    /* The insert is a small RFC 822 message, base64url in `raw`. */
    assert_int_equal(mpt_http_server_seen(f.srv, 9, &seen), 0);
    assert_non_null(strstr(seen.body, "\"raw\":\""));
    mpt_http_seen_clear(&seen);
    /* The profile carries the setup parameters and the endpoint found. */
    const char *profile = mpt_mock_profile(f.m, f.acct);
    assert_non_null(profile);
    assert_non_null(
        strstr(profile, "\"push_endpoint\":\"https://mp.example/push/gmail\""));
    assert_non_null(strstr(profile, "\"push\":\"pubsub-push\""));
    assert_null(strstr(profile, "tok-1"));
    teardown_fx(&f);
}

static const mpt_http_step refused[] = {
    {.method = "GET",
     .path = "/gmail/v1/users/me/profile",
     .headers = JSON,
     .body = PROFILE("someone.else@example.com")},
    {.method = "POST",
     .path = "/tokeninfo",
     .headers = JSON,
     .body = SCOPES("https://www.googleapis.com/auth/gmail.metadata")},
    {.method = "GET",
     .path = "/v1/projects/p/topics/t",
     .status = 403,
     .headers = JSON,
     .body = DENIED},
};

static void test_refusals_and_missing_scopes(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, refused, sizeof refused / sizeof refused[0], "pubsub-push");
    have_watch = 0;
    run_check(&f, MP_CHECK_LIVE);
    const char *p = result(&f, "profile", MP_CHECK_FAIL);
    assert_non_null(strstr(p, "someone.else@example.com"));
    assert_non_null(strstr(p, "authorize as a@example.com"));
    assert_non_null(strstr(result(&f, "scopes", MP_CHECK_FAIL), "gmail.readonly"));
    assert_non_null(strstr(result(&f, "topic", MP_CHECK_SKIP), "cannot verify"));
    result(&f, "publisher", MP_CHECK_SKIP);
    result(&f, "push_subscription", MP_CHECK_SKIP);
    assert_non_null(strstr(result(&f, "watch", MP_CHECK_WARN), "no watch active yet"));
    /* No insert scope: nothing written, the admin is asked to send one. */
    assert_non_null(strstr(result(&f, "live_test", MP_CHECK_SKIP), "send a message to "
                                                                   "a@example.com"));
    assert_int_equal(mpt_http_server_count(f.srv), 3);
    teardown_fx(&f);
}

static void test_refused_grant_asks_nothing_more(void **state)
{
    (void)state;
    fx f;
    setup_with(&f, NULL, 0, "off");
    token_status = MP_REAUTH;
    run_check(&f, MP_CHECK_LIVE);
    const char *c = result(&f, "credentials", MP_CHECK_FAIL);
    assert_non_null(strstr(c, "re-authorize"));
    assert_non_null(strstr(c, "invalid_grant"));
    result(&f, "profile", MP_CHECK_SKIP);
    result(&f, "scopes", MP_CHECK_SKIP);
    result(&f, "live_test", MP_CHECK_SKIP);
    /* Push off: no Pub/Sub checks at all. */
    assert_null(find(&f, "topic"));
    assert_int_equal(mpt_http_server_count(f.srv), 0);
    teardown_fx(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_push_setup_with_live_insert),
        cmocka_unit_test(test_refusals_and_missing_scopes),
        cmocka_unit_test(test_refused_grant_asks_nothing_more),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

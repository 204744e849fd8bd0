/* Unit tests of core/oauth, the OAuth2 token service, against the scripted
 * HTTP server: grants and their bodies, caching and its margin, single
 * flight, refresh-token rotation, reauth without a retry loop, Retry-After,
 * and the RS256 JWT assertion checked with the public key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "http_script_server.h"
#include "net/net.h"
#include "oauth/oauth.h"
#include "store/store.h"
#include "util/util.h"

#define CLIENT_SECRET "s3cr3t-client-value"
#define REFRESH_TOKEN "rt-one-0123456789"

static char dir[64];

static int group_setup(void **state)
{
    (void)state;
    mpn_global_init();
    snprintf(dir, sizeof dir, "/tmp/mp-oauth-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mpn_thread_cleanup();
    char *cmd = mpu_asprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    return 0;
}

/* Owner-only file `name` in the test dir with `content`; returns its path. */
static char *secret_file(const char *name, const char *content)
{
    char *path = mpu_asprintf("%s/%s", dir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
    return path;
}

typedef struct fixture {
    mpt_http_server *srv;
    mpo_service *svc;
    char *url, *secret, *refresh;
} fixture;

static char persisted[256];
static int persist_calls;

static int persist_fail_next;

static int persist_cb(void *arg, const char *key, const char *rt, char **error_r)
{
    (void)arg;
    assert_string_equal(key, "acct");
    persist_calls++;
    if (persist_fail_next) {
        persist_fail_next = 0;
        *error_r = mpu_strdup("disk full");
        return -1;
    }
    mpu_strlcpy(persisted, rt ? rt : "", sizeof persisted);
    return 0;
}

/* The token in the persisted record "v1 <source> <token>" ("" when none). */
static const char *persisted_token(void)
{
    if (!persisted[0])
        return "";
    assert_memory_equal(persisted, "v1 ", 3);
    const char *sp = strchr(persisted + 3, ' ');
    assert_non_null(sp);
    assert_int_equal(sp - persisted - 3, 64);
    return sp + 1;
}

static int load_cb(void *arg, const char *key, char **rt_r, char **error_r)
{
    (void)arg;
    (void)key;
    (void)error_r;
    if (!persisted[0])
        return 1;
    *rt_r = mpu_strdup(persisted);
    return 0;
}

static void fx_start(fixture *f, const mpt_http_step *steps, size_t n,
                     const mpo_options *opt, mpo_grant grant)
{
    memset(f, 0, sizeof *f);
    f->srv = mpt_http_server_start(steps, n, NULL);
    assert_non_null(f->srv);
    f->url = mpt_http_server_url(f->srv, "/token");
    f->secret = secret_file("client_secret", CLIENT_SECRET "\n");
    f->refresh = secret_file("refresh_token", REFRESH_TOKEN "\n");
    f->svc = mpo_service_new(opt);
    mpo_credential c = {
        .grant = grant,
        .token_url = f->url,
        .client_id = "cid",
        .client_secret_file = f->secret,
        .refresh_token_file = grant == MPO_GRANT_REFRESH_TOKEN ? f->refresh : NULL,
        .scope = grant == MPO_GRANT_CLIENT_CREDENTIALS
                     ? "https://graph.microsoft.com/.default"
                     : NULL,
    };
    char *err = NULL;
    assert_int_equal(mpo_account_set(f->svc, "acct", &c, &err), 0);
}

static void fx_stop(fixture *f)
{
    assert_int_equal(mpt_http_server_mismatches(f->srv), 0);
    mpt_http_server_stop(&f->srv);
    mpo_service_free(&f->svc);
    free(f->url);
    free(f->secret);
    free(f->refresh);
}

/* One mpo_token call; returns its status, the token in *tok_r (or NULL). */
static mpo_status get(fixture *f, char **tok_r, uint32_t *retry_r, char **err_r)
{
    char *tok = NULL, *err = NULL;
    int64_t exp = 0;
    mpo_status st = MPO_OK;
    uint32_t retry = 0;
    int rc = mpo_token(f->svc, "acct", &tok, &exp, &st, &retry, &err);
    assert_int_equal(rc, st == MPO_OK ? 0 : -1);
    if (st == MPO_OK) {
        assert_non_null(tok);
        assert_true(exp > mpu_now_ms());
    } else {
        assert_non_null(err);
        assert_null(strstr(err, CLIENT_SECRET));
        assert_null(strstr(err, REFRESH_TOKEN));
    }
    if (tok_r)
        *tok_r = tok;
    else
        mpu_secret_free(&tok);
    if (retry_r)
        *retry_r = retry;
    if (err_r)
        *err_r = err;
    else
        free(err);
    return st;
}

static void assert_token(fixture *f, const char *want)
{
    char *tok = NULL;
    assert_int_equal(get(f, &tok, NULL, NULL), MPO_OK);
    assert_string_equal(tok, want);
    mpu_secret_free(&tok);
}

static char *seen_body(fixture *f, size_t i)
{
    mpt_http_seen seen;
    assert_int_equal(mpt_http_server_seen(f->srv, i, &seen), 0);
    char *b = mpu_strdup(seen.body);
    mpt_http_seen_clear(&seen);
    return b;
}

/* ---- refresh grant ---- */

static void test_refresh_and_cache(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.method = "POST",
         .path = "/token",
         .header = "Content-Type: application/x-www-form-urlencoded",
         .body =
             "{\"access_token\":\"at-1\",\"expires_in\":3600,\"token_type\":\"Bearer\"}"},
    };
    fixture f;
    fx_start(&f, steps, 1, NULL, MPO_GRANT_REFRESH_TOKEN);
    assert_token(&f, "at-1");
    assert_token(&f, "at-1");
    assert_int_equal(mpt_http_server_count(f.srv), 1);
    char *b = seen_body(&f, 0);
    assert_string_equal(
        b, "grant_type=refresh_token&client_id=cid&client_secret=" CLIENT_SECRET
           "&refresh_token=" REFRESH_TOKEN);
    free(b);
    fx_stop(&f);
}

static void test_expiry_margin(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token", .body = "{\"access_token\":\"at-1\",\"expires_in\":2}"},
        {.path = "/token", .body = "{\"access_token\":\"at-2\",\"expires_in\":\"3600\"}"},
    };
    /* 2 s lifetime, 1 s margin: handed out for 1 s. */
    mpo_options opt = {.margin_ms = 1000};
    fixture f;
    fx_start(&f, steps, 2, &opt, MPO_GRANT_REFRESH_TOKEN);
    assert_token(&f, "at-1");
    usleep(500 * 1000);
    assert_token(&f, "at-1");
    assert_int_equal(mpt_http_server_count(f.srv), 1);
    usleep(700 * 1000);
    assert_token(&f, "at-2");
    assert_int_equal(mpt_http_server_count(f.srv), 2);
    fx_stop(&f);
}

typedef struct racer {
    fixture *f;
    char *tok;
    mpo_status st;
} racer;

static void *race(void *p)
{
    racer *r = p;
    char *err = NULL;
    int64_t exp;
    mpo_token(r->f->svc, "acct", &r->tok, &exp, &r->st, NULL, &err);
    free(err);
    mpn_thread_cleanup();
    return NULL;
}

static void *race_last(void *p)
{
    racer *r = p;
    char *err = NULL;
    int64_t exp;
    mpo_token(r->f->svc, "last", &r->tok, &exp, &r->st, NULL, &err);
    free(err);
    mpn_thread_cleanup();
    return NULL;
}

static void test_single_flight(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token",
         .delay_ms = 300,
         .body = "{\"access_token\":\"at-shared\",\"expires_in\":3600}"},
    };
    fixture f;
    fx_start(&f, steps, 1, NULL, MPO_GRANT_REFRESH_TOKEN);
    enum { N = 8 };
    pthread_t th[N];
    racer r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (racer){.f = &f};
        assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].st, MPO_OK);
        assert_string_equal(r[i].tok, "at-shared");
        mpu_secret_free(&r[i].tok);
    }
    assert_int_equal(mpt_http_server_count(f.srv), 1);
    assert_int_equal(mpt_http_server_max_in_flight(f.srv), 1);
    fx_stop(&f);
}

static void test_rotation_persisted(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token",
         .body_contains = "refresh_token=" REFRESH_TOKEN,
         .body =
             "{\"access_token\":\"at-1\",\"expires_in\":1,\"refresh_token\":\"rt-two\"}"},
        {.path = "/token",
         .body_contains = "refresh_token=rt-two",
         .body = "{\"access_token\":\"at-2\",\"expires_in\":3600}"},
        /* A new service (restart) loads the stored token. */
        {.path = "/token",
         .body_contains = "refresh_token=rt-two",
         .body = "{\"access_token\":\"at-3\",\"expires_in\":3600}"},
        /* A reload keeps it. */
        {.path = "/token",
         .body_contains = "refresh_token=rt-two",
         .body = "{\"access_token\":\"at-4\",\"expires_in\":3600}"},
        /* A new refresh token file outranks it, also after a restart. */
        {.path = "/token",
         .body_contains = "refresh_token=rt-fresh",
         .body = "{\"access_token\":\"at-5\",\"expires_in\":3600}"},
        {.path = "/token",
         .body_contains = "refresh_token=rt-fresh",
         .body = "{\"access_token\":\"at-6\",\"expires_in\":3600}"},
    };
    persisted[0] = '\0';
    persist_calls = 0;
    mpo_options opt = {.persist = persist_cb, .load = load_cb};
    fixture f;
    fx_start(&f, steps, 6, &opt, MPO_GRANT_REFRESH_TOKEN);
    assert_token(&f, "at-1");
    assert_string_equal(persisted_token(), "rt-two");
    assert_int_equal(persist_calls, 1);
    usleep(600 * 1000); /* 1 s lifetime: handed out for 0.5 s */
    assert_token(&f, "at-2");
    assert_int_equal(persist_calls, 1); /* not rotated again */

    mpo_service *again = mpo_service_new(&opt);
    mpo_credential c = {.grant = MPO_GRANT_REFRESH_TOKEN,
                        .token_url = f.url,
                        .client_id = "cid",
                        .refresh_token_file = f.refresh};
    char *err = NULL, *tok = NULL;
    assert_int_equal(mpo_account_set(again, "acct", &c, &err), 0);
    int64_t exp;
    mpo_status st;
    assert_int_equal(mpo_token(again, "acct", &tok, &exp, &st, NULL, &err), 0);
    assert_string_equal(tok, "at-3");
    mpu_secret_free(&tok);
    mpo_credentials_changed(again, NULL);
    assert_int_equal(mpo_token(again, "acct", &tok, &exp, &st, NULL, &err), 0);
    assert_string_equal(tok, "at-4");
    mpu_secret_free(&tok);
    free(secret_file("refresh_token", "rt-fresh\n"));
    mpo_credentials_changed(again, "acct");
    assert_int_equal(mpo_token(again, "acct", &tok, &exp, &st, NULL, &err), 0);
    assert_string_equal(tok, "at-5");
    mpu_secret_free(&tok);
    mpo_service_free(&again);
    again = mpo_service_new(&opt);
    assert_int_equal(mpo_account_set(again, "acct", &c, &err), 0);
    assert_int_equal(mpo_token(again, "acct", &tok, &exp, &st, NULL, &err), 0);
    assert_string_equal(tok, "at-6");
    mpu_secret_free(&tok);
    mpo_service_free(&again);
    assert_int_equal(mpt_http_server_count(f.srv), 6);
    fx_stop(&f);
}

static void test_rotation_persist_retried(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token",
         .body =
             "{\"access_token\":\"at-1\",\"expires_in\":1,\"refresh_token\":\"rt-two\"}"},
        {.path = "/token",
         .body_contains = "refresh_token=rt-two",
         .body = "{\"access_token\":\"at-2\",\"expires_in\":3600}"},
    };
    persisted[0] = '\0';
    persist_calls = 0;
    persist_fail_next = 1;
    mpo_options opt = {.persist = persist_cb, .load = load_cb};
    fixture f;
    fx_start(&f, steps, 2, &opt, MPO_GRANT_REFRESH_TOKEN);
    assert_token(&f, "at-1"); /* persisting failed: used from memory */
    assert_int_equal(persist_calls, 1);
    assert_string_equal(persisted_token(), "");
    usleep(600 * 1000);
    assert_token(&f, "at-2"); /* and persisted with the next answer */
    assert_int_equal(persist_calls, 2);
    assert_string_equal(persisted_token(), "rt-two");
    fx_stop(&f);
}

/* A 401 from the provider: only the cached token it names is dropped. */
static void test_token_reject(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token", .body = "{\"access_token\":\"at-1\",\"expires_in\":3600}"},
        {.path = "/token", .body = "{\"access_token\":\"at-2\",\"expires_in\":3600}"},
    };
    fixture f;
    fx_start(&f, steps, 2, NULL, MPO_GRANT_REFRESH_TOKEN);
    assert_token(&f, "at-1");
    /* Other tokens (same length, a prefix, longer, none) change nothing. */
    mpo_token_reject(f.svc, "acct", "at-9");
    mpo_token_reject(f.svc, "acct", "at-");
    mpo_token_reject(f.svc, "acct", "at-1x");
    mpo_token_reject(f.svc, "acct", NULL);
    mpo_token_reject(f.svc, "unknown", "at-1");
    assert_token(&f, "at-1");
    assert_int_equal(mpt_http_server_count(f.srv), 1);
    mpo_token_reject(f.svc, "acct", "at-1");
    assert_token(&f, "at-2");
    assert_int_equal(mpt_http_server_count(f.srv), 2);
    /* A late reject of the old token does not drop its successor. */
    mpo_token_reject(f.svc, "acct", "at-1");
    assert_token(&f, "at-2");
    assert_int_equal(mpt_http_server_count(f.srv), 2);
    fx_stop(&f);
}

/* Removing an account: gone for the next caller, the others untouched,
 * and a request in flight finishes without its account. */
static void test_account_remove(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token", .body = "{\"access_token\":\"at-1\",\"expires_in\":3600}"},
        {.path = "/token",
         .delay_ms = 300,
         .body = "{\"access_token\":\"at-late\",\"expires_in\":3600}"},
    };
    fixture f;
    fx_start(&f, steps, 2, NULL, MPO_GRANT_REFRESH_TOKEN);
    mpo_credential c = {.grant = MPO_GRANT_REFRESH_TOKEN,
                        .token_url = f.url,
                        .client_id = "cid",
                        .refresh_token_file = f.refresh};
    char *err = NULL;
    /* "acct" ends up between two others in the service's list. */
    assert_int_equal(mpo_account_set(f.svc, "first", &c, &err), 0);
    assert_int_equal(mpo_account_set(f.svc, "last", &c, &err), 0);
    mpo_account_remove(f.svc, "acct");
    mpo_account_remove(f.svc, "never-set");
    assert_int_equal(get(&f, NULL, NULL, NULL), MPO_CONFIG);
    char *tok = NULL;
    int64_t exp;
    mpo_status st;
    assert_int_equal(mpo_token(f.svc, "first", &tok, &exp, &st, NULL, &err), 0);
    assert_string_equal(tok, "at-1");
    mpu_secret_free(&tok);

    /* "last" is removed while its request is on the wire. */
    racer r = {.f = &f};
    pthread_t th;
    mpo_account_remove(f.svc, "first");
    assert_int_equal(pthread_create(&th, NULL, race_last, &r), 0);
    assert_int_equal(mpt_http_server_wait_count(f.srv, 2, 5000), 0);
    mpo_account_remove(f.svc, "last");
    pthread_join(th, NULL);
    assert_int_equal(r.st, MPO_CONFIG);
    assert_null(r.tok);
    assert_int_equal(mpo_token(f.svc, "last", &tok, &exp, &st, NULL, &err), -1);
    assert_int_equal(st, MPO_CONFIG);
    free(err);
    assert_int_equal(mpt_http_server_count(f.srv), 2);
    fx_stop(&f);
}

/* ---- failures ---- */

static void test_invalid_grant_reauth(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token",
         .status = 400,
         .body = "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been "
                 "expired "
                 "or revoked for " CLIENT_SECRET "\\u0007\"}"},
        {.path = "/token", .status = 401, .body = "{\"error\":\"invalid_client\"}"},
        {.path = "/token",
         .body_contains = "refresh_token=rt-new",
         .body = "{\"access_token\":\"at-ok\",\"expires_in\":3600}"},
    };
    persisted[0] = '\0';
    mpo_options opt = {.persist = persist_cb, .load = load_cb};
    fixture f;
    fx_start(&f, steps, 3, &opt, MPO_GRANT_REFRESH_TOKEN);
    char *err = NULL;
    assert_int_equal(get(&f, NULL, NULL, &err), MPO_REAUTH);
    assert_non_null(strstr(err, "invalid_grant"));
    assert_non_null(strstr(err, "Token has been expired or revoked"));
    assert_null(strchr(err, '\a'));
    free(err);
    /* No second request: the next calls get the cached failure. */
    assert_int_equal(get(&f, NULL, NULL, NULL), MPO_REAUTH);
    assert_int_equal(mpt_http_server_expect_quiet(f.srv, 300), 0);
    assert_int_equal(get(&f, NULL, NULL, NULL), MPO_REAUTH);
    assert_int_equal(mpt_http_server_count(f.srv), 1);

    /* An explicit reset (SIGHUP) allows one more request. */
    mpo_credentials_changed(f.svc, "acct");
    assert_int_equal(get(&f, NULL, NULL, &err), MPO_REAUTH);
    assert_non_null(strstr(err, "invalid_client"));
    free(err);
    assert_int_equal(get(&f, NULL, NULL, NULL), MPO_REAUTH);
    assert_int_equal(mpt_http_server_count(f.srv), 2);

    /* A new refresh token file is a credential change too. */
    free(secret_file("refresh_token", "rt-new\n"));
    assert_token(&f, "at-ok");
    assert_int_equal(mpt_http_server_count(f.srv), 3);
    fx_stop(&f);
}

static void test_retry_after(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token", .status = 429, .headers = "Retry-After: 2\r\n"},
        {.path = "/token", .status = 503},
        {.path = "/token", .body = "{\"access_token\":\"at-1\",\"expires_in\":3600}"},
    };
    mpo_options opt = {.backoff_min_ms = 200};
    fixture f;
    fx_start(&f, steps, 3, &opt, MPO_GRANT_REFRESH_TOKEN);
    int64_t t0 = mpu_mono_ms();
    uint32_t retry = 0;
    assert_int_equal(get(&f, NULL, &retry, NULL), MPO_RETRY);
    assert_true(retry > 1000 && retry <= 2000);
    assert_int_equal(get(&f, NULL, &retry, NULL), MPO_RETRY);
    assert_true(retry <= 2000);
    assert_int_equal(mpt_http_server_expect_quiet(f.srv, 1500), 0);
    assert_int_equal(get(&f, NULL, NULL, NULL), MPO_RETRY);
    assert_int_equal(mpt_http_server_count(f.srv), 1);
    usleep((useconds_t)(2100 - (mpu_mono_ms() - t0)) * 1000);
    /* 503 without Retry-After: the backoff, doubled by the second failure. */
    assert_int_equal(get(&f, NULL, &retry, NULL), MPO_RETRY);
    assert_true(retry > 200 && retry <= 400);
    assert_int_equal(get(&f, NULL, NULL, NULL), MPO_RETRY);
    assert_int_equal(mpt_http_server_count(f.srv), 2);
    usleep(450 * 1000);
    assert_token(&f, "at-1");
    assert_int_equal(mpt_http_server_count(f.srv), 3);
    fx_stop(&f);
}

static void test_stale_token_while_failing(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/token", .body = "{\"access_token\":\"at-1\",\"expires_in\":2}"},
        {.path = "/token", .status = 503, .headers = "Retry-After: 5\r\n"},
    };
    /* 2 s lifetime, 1 s margin: refreshed after 1 s, usable for 1.5 s. */
    mpo_options opt = {.margin_ms = 1000};
    fixture f;
    fx_start(&f, steps, 2, &opt, MPO_GRANT_REFRESH_TOKEN);
    assert_token(&f, "at-1");
    usleep(1100 * 1000);
    assert_token(&f, "at-1"); /* the refresh failed: the old token */
    assert_int_equal(mpt_http_server_count(f.srv), 2);
    assert_token(&f, "at-1"); /* inside Retry-After: no request */
    assert_int_equal(mpt_http_server_count(f.srv), 2);
    usleep(500 * 1000);
    uint32_t retry = 0;
    assert_int_equal(get(&f, NULL, &retry, NULL), MPO_RETRY);
    assert_true(retry > 3000);
    assert_int_equal(mpt_http_server_count(f.srv), 2);
    fx_stop(&f);
}

/* Rotated refresh tokens through the store's per-account state. */
static void test_store_persistence(void **state)
{
    (void)state;
    char *path = mpu_asprintf("%s/store.db", dir);
    mps_store *st = NULL;
    char *err = NULL, *rt = NULL;
    assert_int_equal(mps_open(path, &st, &err), 0);
    assert_int_equal(mpo_store_load(st, "acct", &rt, &err), 1);
    assert_int_equal(mpo_store_persist(st, "acct", "rt-stored", &err), 0);
    assert_int_equal(mpo_store_load(st, "acct", &rt, &err), 0);
    assert_string_equal(rt, "rt-stored");
    mpu_secret_free(&rt);
    assert_int_equal(mpo_store_persist(st, "acct", NULL, &err), 0);
    assert_int_equal(mpo_store_load(st, "acct", &rt, &err), 1);
    mps_close(&st);
    free(path);
}

static void test_transport_error(void **state)
{
    (void)state;
    fixture f;
    fx_start(&f, NULL, 0, NULL, MPO_GRANT_REFRESH_TOKEN);
    mpt_http_server_stop(&f.srv); /* nothing listens at the URL any more */
    uint32_t retry = 0;
    char *err = NULL;
    assert_int_equal(get(&f, NULL, &retry, &err), MPO_RETRY);
    assert_true(retry > 0 && retry <= MPO_DEFAULT_BACKOFF_MIN_MS);
    assert_non_null(strstr(err, "/token"));
    free(err);
    f.srv = mpt_http_server_start(NULL, 0, NULL);
    fx_stop(&f);
}

static void test_missing_secret_file(void **state)
{
    (void)state;
    mpo_service *svc = mpo_service_new(NULL);
    char *missing = mpu_asprintf("%s/absent", dir);
    mpo_credential c = {.grant = MPO_GRANT_CLIENT_CREDENTIALS,
                        .token_url = "http://127.0.0.1:1/t",
                        .client_id = "cid",
                        .client_secret_file = missing};
    char *err = NULL, *tok = NULL;
    assert_int_equal(mpo_account_set(svc, "acct", &c, &err), 0);
    int64_t exp;
    mpo_status st;
    assert_int_equal(mpo_token(svc, "acct", &tok, &exp, &st, NULL, &err), -1);
    assert_int_equal(st, MPO_CONFIG);
    free(err);
    c.client_id = NULL;
    assert_int_equal(mpo_account_set(svc, "acct", &c, &err), -1);
    assert_non_null(strstr(err, "client_id"));
    free(err);
    assert_int_equal(mpo_token(svc, "other", &tok, &exp, &st, NULL, &err), -1);
    assert_int_equal(st, MPO_CONFIG);
    free(err);
    free(missing);
    mpo_service_free(&svc);
}

/* ---- client credentials ---- */

static void test_client_credentials(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.method = "POST",
         .path = "/token",
         .body = "{\"access_token\":\"app-token\",\"expires_in\":3599}"},
    };
    fixture f;
    fx_start(&f, steps, 1, NULL, MPO_GRANT_CLIENT_CREDENTIALS);
    assert_token(&f, "app-token");
    char *b = seen_body(&f, 0);
    assert_string_equal(
        b, "grant_type=client_credentials&client_id=cid&client_secret=" CLIENT_SECRET
           "&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default");
    free(b);
    fx_stop(&f);
}

/* ---- JWT bearer ---- */

static unsigned char *b64url_decode(const char *s, size_t n, size_t *len_r)
{
    size_t padded = (n + 3) / 4 * 4;
    char *t = mpu_calloc(1, padded + 1);
    for (size_t i = 0; i < padded; i++)
        t[i] = i < n ? (s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i]) : '=';
    unsigned char *out = mpu_malloc(padded);
    int len = EVP_DecodeBlock(out, (unsigned char *)t, (int)padded);
    assert_true(len >= 0);
    size_t pad = padded - n;
    *len_r = (size_t)len - pad;
    free(t);
    return out;
}

static json_t *decode_json(const char *s, size_t n)
{
    size_t len;
    unsigned char *raw = b64url_decode(s, n, &len);
    json_t *j = json_loadb((char *)raw, len, 0, NULL);
    free(raw);
    assert_non_null(j);
    return j;
}

/* A service-account key JSON with a fresh RSA key; *pkey_r to verify. */
static char *make_key_json(EVP_PKEY **pkey_r, const char *token_uri)
{
    EVP_PKEY *pkey = EVP_RSA_gen(2048);
    assert_non_null(pkey);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
    char *pem = NULL;
    long n = BIO_get_mem_data(bio, &pem);
    json_t *j = json_pack("{s:s, s:s, s:s%, s:s}", "type", "service_account",
                          "client_email", "sync@proj.iam.gserviceaccount.com",
                          "private_key", pem, (size_t)n, "token_uri", token_uri);
    BIO_free(bio);
    char *text = json_dumps(j, 0);
    json_decref(j);
    *pkey_r = pkey;
    return text;
}

static void test_jwt_assertion(void **state)
{
    (void)state;
    EVP_PKEY *pkey;
    char *key = make_key_json(&pkey, "https://oauth2.googleapis.com/token");
    char *a = NULL, *uri = NULL, *err = NULL;
    assert_int_equal(mpo_jwt_assertion(key, "https://mail.google.com/",
                                       "user@example.com", NULL, 1795341600, &a, &uri,
                                       &err),
                     0);
    assert_string_equal(uri, "https://oauth2.googleapis.com/token");
    assert_null(strchr(a, '='));
    assert_null(strchr(a, '+'));
    assert_null(strchr(a, '/'));
    const char *d1 = strchr(a, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);

    json_t *h = decode_json(a, (size_t)(d1 - a));
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
    json_decref(h);
    json_t *c = decode_json(d1 + 1, (size_t)(d2 - d1 - 1));
    assert_string_equal(json_string_value(json_object_get(c, "iss")),
                        "sync@proj.iam.gserviceaccount.com");
    assert_string_equal(json_string_value(json_object_get(c, "scope")),
                        "https://mail.google.com/");
    assert_string_equal(json_string_value(json_object_get(c, "aud")),
                        "https://oauth2.googleapis.com/token");
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "user@example.com");
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), 1795341600);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), 1795341600 + 3600);
    json_decref(c);

    size_t sig_len;
    unsigned char *sig = b64url_decode(d2 + 1, strlen(d2 + 1), &sig_len);
    assert_int_equal(sig_len, 256);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey), 1);
    assert_int_equal(
        EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)a, (size_t)(d2 - a)),
        1);
    /* A flipped claim byte fails verification. */
    a[d1 - a + 3] ^= 1;
    EVP_MD_CTX_reset(ctx);
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey), 1);
    assert_int_not_equal(
        EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)a, (size_t)(d2 - a)),
        1);
    EVP_MD_CTX_free(ctx);
    free(sig);
    free(a);
    free(uri);

    /* Without sub no sub claim; a broken key says so without quoting it. */
    assert_int_equal(mpo_jwt_assertion(key, "s", NULL, "aud-x", 1, &a, NULL, &err), 0);
    d1 = strchr(a, '.');
    d2 = strchr(d1 + 1, '.');
    c = decode_json(d1 + 1, (size_t)(d2 - d1 - 1));
    assert_null(json_object_get(c, "sub"));
    assert_string_equal(json_string_value(json_object_get(c, "aud")), "aud-x");
    json_decref(c);
    free(a);
    assert_int_equal(
        mpo_jwt_assertion("{\"client_email\":\"x\",\"private_key\":\"PRIVATEBITS\","
                          "\"token_uri\":\"u\"}",
                          "s", NULL, NULL, 1, &a, NULL, &err),
        -1);
    assert_null(strstr(err, "PRIVATEBITS"));
    free(err);
    free(key);
    EVP_PKEY_free(pkey);
}

static void test_jwt_bearer_grant(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.method = "POST",
         .path = "/sa-token",
         .body_contains =
             "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
             "&assertion=eyJ",
         .body = "{\"access_token\":\"ya29.sa\",\"expires_in\":3600}"},
    };
    mpt_http_server *srv = mpt_http_server_start(steps, 1, NULL);
    assert_non_null(srv);
    char *uri = mpt_http_server_url(srv, "/sa-token");
    EVP_PKEY *pkey;
    char *json = make_key_json(&pkey, uri);
    char *keyfile = secret_file("sa.json", json);
    mpo_service *svc = mpo_service_new(NULL);
    mpo_credential c = {.grant = MPO_GRANT_JWT_BEARER,
                        .key_file = keyfile,
                        .scope = "https://mail.google.com/",
                        .sub = "user@example.com"};
    char *err = NULL, *tok = NULL;
    assert_int_equal(mpo_account_set(svc, "acct", &c, &err), 0);
    int64_t exp;
    mpo_status st;
    assert_int_equal(mpo_token(svc, "acct", &tok, &exp, &st, NULL, &err), 0);
    assert_string_equal(tok, "ya29.sa");
    mpu_secret_free(&tok);
    assert_int_equal(mpt_http_server_mismatches(srv), 0);
    mpo_service_free(&svc);
    mpt_http_server_stop(&srv);
    EVP_PKEY_free(pkey);
    free(json);
    free(keyfile);
    free(uri);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refresh_and_cache),
        cmocka_unit_test(test_expiry_margin),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_rotation_persisted),
        cmocka_unit_test(test_rotation_persist_retried),
        cmocka_unit_test(test_token_reject),
        cmocka_unit_test(test_account_remove),
        cmocka_unit_test(test_invalid_grant_reauth),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_stale_token_while_failing),
        cmocka_unit_test(test_store_persistence),
        cmocka_unit_test(test_transport_error),
        cmocka_unit_test(test_missing_secret_file),
        cmocka_unit_test(test_client_credentials),
        cmocka_unit_test(test_jwt_assertion),
        cmocka_unit_test(test_jwt_bearer_grant),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

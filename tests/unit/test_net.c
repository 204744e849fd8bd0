/* Unit tests of core/net, the one HTTP client, against the scripted HTTP
 * server (plain and TLS with a test CA made by openssl). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "http_script_server.h"
#include "net/net.h"
#include "util/util.h"

static char tls_dir[64];
static int have_tls;

static int group_setup(void **state)
{
    (void)state;
    mpn_global_init();
    snprintf(tls_dir, sizeof tls_dir, "/tmp/mp-net-XXXXXX");
    assert_non_null(mkdtemp(tls_dir));
    have_tls = mpt_tls_make_ca(tls_dir) == 0;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mpn_thread_cleanup();
    char *cmd = mpu_asprintf("rm -rf '%s'", tls_dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    return 0;
}

static char *tls_path(const char *name)
{
    return mpu_asprintf("%s/%s", tls_dir, name);
}

static mpt_http_server *start_tls(const mpt_http_step *steps, size_t n)
{
    char *cert = tls_path("server.pem"), *key = tls_path("server.key");
    mpt_tls_files files = {cert, key};
    mpt_http_server *s = mpt_http_server_start(steps, n, &files);
    free(cert);
    free(key);
    assert_non_null(s);
    return s;
}

/* ---- pure helpers ---- */

static void test_retry_after_values(void **state)
{
    (void)state;
    /* 2026-11-22T10:00:00Z */
    const int64_t now = 1795341600000LL;
    static const struct {
        const char *value;
        uint32_t ms;
    } cases[] = {
        {"7", 7000},
        {"  120 \r\n", 120000},
        {"0", 0},
        {"999999999999", MPN_RETRY_AFTER_CAP_MS},
        {"100000", MPN_RETRY_AFTER_CAP_MS},
        {"-5", 0},
        {"5s", 0},
        {"Sun, 22 Nov 2026 10:01:30 GMT", 90000},
        {"Sunday, 22-Nov-26 10:00:10 GMT", 10000},
        {"Sun Nov 22 10:00:05 2026", 5000},
        {"Sun, 22 Nov 2026 09:59:00 GMT", 0},
        {"Tue, 22 Dec 2026 10:00:00 GMT", MPN_RETRY_AFTER_CAP_MS},
        {"soon", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t got = mpn_retry_after_ms(cases[i].value, now);
        if (got != cases[i].ms)
            fail_msg("Retry-After \"%s\": %u ms, expected %u", cases[i].value, got,
                     cases[i].ms);
    }
}

static void test_url_redact(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"https://graph.example.com/v1.0/me/messages?$skiptoken=abc&access_token=t",
         "https://graph.example.com/v1.0/me/messages"},
        {"https://user:secret@host.example/a/b#frag", "https://host.example/a/b"},
        {"http://127.0.0.1:8080/x?sig=1", "http://127.0.0.1:8080/x"},
        {"https://host.example", "https://host.example/"},
        {"https://[::1]:99/p?q", "https://[::1]:99/p"},
        {"not a url", "(unparsable URL)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = mpn_url_redact(cases[i].in);
        assert_string_equal(got, cases[i].out);
        free(got);
    }
}

/* ---- blocking requests ---- */

static void test_request_and_record(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.method = "POST", .path = "/v1/items", .query = "a=1", .header = "X-Test: yes",
         .body_contains = "\"k\"", .status = 201, .headers = "X-Answer: 42\r\n",
         .body = "{\"ok\":true}"},
        {.method = "GET", .path = "/other"},
    };
    mpt_http_server *s = mpt_http_server_start(steps, 2, NULL);
    char *url = mpt_http_server_url(s, "/v1/items?a=1");
    const char *headers[] = {"X-Test: yes", "Content-Type: application/json", NULL};
    mpn_request req = {.method = "POST", .url = url, .headers = headers,
                       .body = "{\"k\":1}", .body_len = 7};
    mpn_result res;
    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_int_equal(res.kind, MPN_OK);
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "{\"ok\":true}");
    assert_non_null(strstr(res.headers, "X-Answer: 42"));
    assert_int_equal(res.retry_after_ms, 0);
    mpn_result_clear(&res);

    /* A request that does not fit its step is answered 500 and counted. */
    mpn_request wrong = {.url = url};
    assert_int_equal(mpn_perform(&wrong, &res), 0);
    assert_int_equal(res.status, 500);
    mpn_result_clear(&res);
    assert_int_equal(mpt_http_server_mismatches(s), 1);
    assert_non_null(strstr(mpt_http_server_first_mismatch(s), "path /v1/items"));

    mpt_http_seen seen;
    assert_int_equal(mpt_http_server_seen(s, 0, &seen), 0);
    assert_string_equal(seen.method, "POST");
    assert_string_equal(seen.uri, "/v1/items?a=1");
    assert_string_equal(seen.body, "{\"k\":1}");
    assert_non_null(strstr(seen.headers, "User-Agent: mailpulse/"));
    mpt_http_seen_clear(&seen);
    free(url);
    mpt_http_server_stop(&s);
}

static void test_retry_after_answers(void **state)
{
    (void)state;
    char date_header[96], date[64];
    time_t when = time(NULL) + 120;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(date_header, sizeof date_header, "Retry-After: %s\r\n", date);
    mpt_http_step steps[] = {
        {.status = 429, .headers = "Retry-After: 1\r\n", .body = "slow down"},
        {.status = 503, .headers = date_header},
        {.status = 200},
    };
    mpt_http_server *s = mpt_http_server_start(steps, 3, NULL);
    char *url = mpt_http_server_url(s, "/x");
    mpn_request req = {.url = url};
    mpn_result res;

    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_int_equal(res.status, 429);
    assert_int_equal(res.retry_after_ms, 1000);
    mpn_result_clear(&res);
    /* The kit's quiet window: a caller honouring Retry-After sends
     * nothing inside it. */
    assert_int_equal(mpt_http_server_expect_quiet(s, 900), 0);

    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_int_equal(res.status, 503);
    assert_in_range(res.retry_after_ms, 117000, 120000);
    mpn_result_clear(&res);

    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_int_equal(res.status, 200);
    mpn_result_clear(&res);
    assert_int_equal(mpt_http_server_mismatches(s), 0);
    free(url);
    mpt_http_server_stop(&s);
}

static void test_timeout(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {{.delay_ms = 3000, .body = "late"}};
    mpt_http_server *s = mpt_http_server_start(steps, 1, NULL);
    char *url = mpt_http_server_url(s, "/slow?token=SECRET");
    mpn_request req = {.url = url, .timeout_ms = 300};
    mpn_result res;
    int64_t t0 = mpu_mono_ms();
    assert_int_equal(mpn_perform(&req, &res), -1);
    assert_true(mpu_mono_ms() - t0 < 2000);
    assert_int_equal(res.kind, MPN_ETIMEOUT);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.error, "GET http://127.0.0.1:"));
    assert_non_null(strstr(res.error, "/slow: "));
    assert_null(strstr(res.error, "SECRET"));
    mpn_result_clear(&res);
    free(url);
    mpt_http_server_stop(&s);
}

static void test_size_bound(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.body_fill = 1000},
        {.body_fill = 1001},
        {.body_fill = 3u * 1024u * 1024u},
    };
    mpt_http_server *s = mpt_http_server_start(steps, 3, NULL);
    char *url = mpt_http_server_url(s, "/big");
    mpn_request req = {.url = url, .max_response = 1000};
    mpn_result res;
    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_int_equal(res.body_len, 1000);
    mpn_result_clear(&res);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mpn_perform(&req, &res), -1);
        assert_int_equal(res.kind, MPN_ETOOLARGE);
        assert_non_null(strstr(res.error, "response larger than 1000 bytes"));
        assert_null(res.body);
        mpn_result_clear(&res);
    }
    free(url);
    mpt_http_server_stop(&s);
}

static void test_redirects_plain(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.path = "/from", .status = 302, .headers = "Location: /to\r\n"},
        {.path = "/from", .status = 302, .headers = "Location: /to\r\n"},
    };
    mpt_http_server *s = mpt_http_server_start(steps, 2, NULL);
    char *url = mpt_http_server_url(s, "/from");
    /* Not asked: the 3xx comes back as it is. */
    mpn_request req = {.url = url};
    mpn_result res;
    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_int_equal(res.status, 302);
    mpn_result_clear(&res);
    /* Asked, but from plain http: still not followed. */
    req.max_redirects = 3;
    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_int_equal(res.status, 302);
    mpn_result_clear(&res);
    assert_int_equal(mpt_http_server_count(s), 2);
    assert_int_equal(mpt_http_server_mismatches(s), 0);
    free(url);
    mpt_http_server_stop(&s);
}

static void test_tls_and_redirects(void **state)
{
    (void)state;
    if (!have_tls)
        skip();
    char *ca = tls_path("ca.pem");
    mpt_http_step steps[] = {
        /* 1: no CA file: the test CA is unknown, nothing is answered. */
        {.path = "/a", .body = "never"},
        /* 2-3: redirect followed within https. */
        {.path = "/a", .status = 301, .headers = "Location: /b\r\n"},
        {.path = "/b", .body = "landed"},
        /* 4-5: more hops than allowed. */
        {.path = "/a", .status = 302, .headers = "Location: /a\r\n"},
        {.path = "/a", .status = 302, .headers = "Location: /a\r\n"},
        /* 6: redirect to plain http refused. */
        {.path = "/a", .status = 302, .headers = "Location: http://127.0.0.1:9/x?k=SECRET\r\n"},
    };
    mpt_http_server *s = start_tls(steps, 6);
    char *url = mpt_http_server_url(s, "/a");
    mpn_request req = {.url = url};
    mpn_result res;

    assert_int_equal(mpn_perform(&req, &res), -1);
    assert_int_equal(res.kind, MPN_ETLS);
    assert_non_null(strstr(res.error, "GET https://127.0.0.1:"));
    mpn_result_clear(&res);
    /* The handshake failed: the server saw no HTTP request. */
    assert_int_equal(mpt_http_server_count(s), 0);

    /* The script counts requests, so step 1 is consumed by a plain fetch
     * once the CA is known. */
    req.ca_file = ca;
    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_string_equal(res.body, "never");
    mpn_result_clear(&res);

    req.max_redirects = 1;
    assert_int_equal(mpn_perform(&req, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "landed");
    /* Only the final answer's headers are kept. */
    assert_null(strstr(res.headers, "Location"));
    mpn_result_clear(&res);

    assert_int_equal(mpn_perform(&req, &res), -1);
    assert_int_equal(res.kind, MPN_EREDIRECT);
    mpn_result_clear(&res);

    req.max_redirects = 5;
    assert_int_equal(mpn_perform(&req, &res), -1);
    assert_int_equal(res.kind, MPN_EREDIRECT);
    assert_non_null(strstr(res.error, "non-https"));
    assert_null(strstr(res.error, "SECRET"));
    mpn_result_clear(&res);

    assert_int_equal(mpt_http_server_count(s), 6);
    assert_int_equal(mpt_http_server_mismatches(s), 0);
    free(url);
    free(ca);
    mpt_http_server_stop(&s);
}

static void test_refusals_and_redaction(void **state)
{
    (void)state;
    mpn_result res;
    mpn_request file = {.url = "file:///etc/passwd"};
    assert_int_equal(mpn_perform(&file, &res), -1);
    assert_int_equal(res.kind, MPN_EREQUEST);
    mpn_result_clear(&res);
    mpn_request none = {.method = "POST"};
    assert_int_equal(mpn_perform(&none, &res), -1);
    assert_int_equal(res.kind, MPN_EREQUEST);
    mpn_result_clear(&res);

    /* Nothing listens on port 9 of localhost in the test environment. */
    mpn_request dead = {.url = "http://user:pw@127.0.0.1:9/p?access_token=SECRET#frag",
                        .timeout_ms = 2000};
    assert_int_equal(mpn_perform(&dead, &res), -1);
    assert_int_equal(res.kind, MPN_ETRANSPORT);
    assert_non_null(strstr(res.error, "GET http://127.0.0.1:9/p: "));
    assert_null(strstr(res.error, "SECRET"));
    assert_null(strstr(res.error, "pw"));
    assert_null(strstr(res.error, "frag"));
    mpn_result_clear(&res);
}

/* ---- concurrency limiter ---- */

typedef struct caller {
    const char *url;
    const char *key;
    uint32_t wait_ms;
    mpn_result res;
    int rc;
} caller;

static void *call(void *arg)
{
    caller *c = arg;
    mpn_request req = {.url = c->url, .limit_key = c->key, .limit_wait_ms = c->wait_ms};
    c->rc = mpn_perform(&req, &c->res);
    mpn_thread_cleanup();
    return NULL;
}

static void test_limiter(void **state)
{
    (void)state;
    enum { N = 3 };
    mpt_http_step steps[N + 1];
    for (size_t i = 0; i < N + 1; i++)
        steps[i] = (mpt_http_step){.delay_ms = 300, .body = "ok"};
    mpt_http_server *s = mpt_http_server_start(steps, N + 1, NULL);
    char *url = mpt_http_server_url(s, "/limited");
    mpn_limit_set("acct-limited", N);
    caller callers[N + 1];
    pthread_t threads[N + 1];
    for (size_t i = 0; i < N + 1; i++) {
        callers[i] = (caller){.url = url, .key = "acct-limited", .wait_ms = 5000};
        pthread_create(&threads[i], NULL, call, &callers[i]);
    }
    for (size_t i = 0; i < N + 1; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(callers[i].rc, 0);
        assert_string_equal(callers[i].res.body, "ok");
        mpn_result_clear(&callers[i].res);
    }
    assert_int_equal(mpt_http_server_count(s), N + 1);
    assert_int_equal(mpt_http_server_max_in_flight(s), N);
    assert_int_equal(mpn_limit_in_flight("acct-limited"), 0);
    mpt_http_server_stop(&s);

    /* A caller that cannot get a slot in time gets a clear retry error. */
    static const mpt_http_step slow[] = {{.delay_ms = 1500}};
    s = mpt_http_server_start(slow, 1, NULL);
    free(url);
    url = mpt_http_server_url(s, "/limited");
    mpn_limit_set("acct-one", 1);
    caller holder = {.url = url, .key = "acct-one", .wait_ms = 5000};
    pthread_t t;
    pthread_create(&t, NULL, call, &holder);
    assert_int_equal(mpt_http_server_wait_count(s, 1, 5000), 0);
    caller late = {.url = url, .key = "acct-one", .wait_ms = 200};
    int64_t t0 = mpu_mono_ms();
    call(&late);
    assert_true(mpu_mono_ms() - t0 < 1200);
    assert_int_equal(late.rc, -1);
    assert_int_equal(late.res.kind, MPN_EBUSY);
    assert_non_null(strstr(late.res.error, "too many concurrent requests"));
    mpn_result_clear(&late.res);
    /* Another key is not held up. */
    assert_int_equal(mpn_limit_acquire("acct-other", 0), 0);
    mpn_limit_release("acct-other");
    pthread_join(t, NULL);
    assert_int_equal(holder.rc, 0);
    mpn_result_clear(&holder.res);
    assert_int_equal(mpt_http_server_count(s), 1);
    mpn_limit_set("acct-one", 0);
    free(url);
    mpt_http_server_stop(&s);
}

/* ---- event-loop requests ---- */

typedef struct loop_done {
    struct event_base *base;
    int calls;
    long status;
    uint32_t retry_after_ms;
    mpn_error_kind kind;
    char error[256];
} loop_done;

static void on_loop_done(void *arg, const mpn_result *res)
{
    loop_done *d = arg;
    d->calls++;
    d->status = res->status;
    d->retry_after_ms = res->retry_after_ms;
    d->kind = res->kind;
    mpu_strlcpy(d->error, res->error != NULL ? res->error : "", sizeof d->error);
    event_base_loopbreak(d->base);
}

static void test_multi(void **state)
{
    (void)state;
    static const mpt_http_step steps[] = {
        {.method = "POST", .body_contains = "hello", .status = 503,
         .headers = "Retry-After: 30\r\n", .body_fill = 5u * 1024u * 1024u},
        {.delay_ms = 2000},
        {.status = 204},
    };
    mpt_http_server *s = mpt_http_server_start(steps, 3, NULL);
    char *url = mpt_http_server_url(s, "/hook");
    struct event_base *base = event_base_new();
    mpn_multi *m = mpn_multi_new(base);
    loop_done d = {.base = base};
    char *error = NULL;

    /* The body is copied: the caller's buffer may go away at once. A
     * discarded answer body is not bounded. */
    char *body = mpu_strdup("hello");
    mpn_request req = {.method = "POST", .url = url, .body = body, .body_len = 5,
                       .discard_body = 1};
    mpn_transfer *t = mpn_start(m, &req, on_loop_done, &d, &error);
    free(body);
    assert_non_null(t);
    event_base_dispatch(base);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.kind, MPN_OK);
    assert_int_equal(d.status, 503);
    assert_int_equal(d.retry_after_ms, 30000);

    /* Timeouts and errors take the same path as the blocking call. */
    mpn_request slow = {.url = url, .timeout_ms = 300};
    assert_non_null(mpn_start(m, &slow, on_loop_done, &d, &error));
    event_base_dispatch(base);
    assert_int_equal(d.calls, 2);
    assert_int_equal(d.kind, MPN_ETIMEOUT);
    assert_non_null(strstr(d.error, "/hook: "));

    /* A refused request never starts. */
    mpn_request bad = {.url = "ftp://example.org/"};
    assert_null(mpn_start(m, &bad, on_loop_done, &d, &error));
    assert_non_null(strstr(error, "only http:// and https://"));
    free(error);

    /* A cancelled transfer never calls back. */
    mpn_request last = {.url = url};
    t = mpn_start(m, &last, on_loop_done, &d, &error);
    mpn_cancel(m, &t);
    assert_null(t);
    mpn_multi_free(&m);
    assert_null(m);
    assert_int_equal(d.calls, 2);
    event_base_free(base);
    free(url);
    mpt_http_server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_values),
        cmocka_unit_test(test_url_redact),
        cmocka_unit_test(test_request_and_record),
        cmocka_unit_test(test_retry_after_answers),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_size_bound),
        cmocka_unit_test(test_redirects_plain),
        cmocka_unit_test(test_tls_and_redirects),
        cmocka_unit_test(test_refusals_and_redaction),
        cmocka_unit_test(test_limiter),
        cmocka_unit_test(test_multi),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

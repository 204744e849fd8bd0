/*
 * Scripted HTTP server for tests (driver test kit). Runs libevent's evhttp
 * on its own thread on 127.0.0.1 (port chosen by the kernel), plain or TLS,
 * and answers requests with a script: the Nth request that arrives is
 * checked against step N and answered as step N says, after its delay (a
 * delay does not hold up other connections). Whatever arrives is recorded
 * for the test to inspect. A request beyond the script or failing a
 * step's checks is answered 500 and counted as a mismatch, with a reason.
 *
 * Typical use:
 *
 *     static const mpt_http_step steps[] = {
 *         {.method = "GET", .path = "/v1.0/me/messages", .status = 429,
 *          .headers = "Retry-After: 2\r\n"},
 *         {.method = "GET", .path = "/v1.0/me/messages", .status = 200,
 *          .body = "{\"value\":[]}"},
 *     };
 *     mpt_http_server *s = mpt_http_server_start(steps, 2, NULL);
 *     char *url = mpt_http_server_url(s, "/v1.0/me/messages");
 *     ...
 *     assert_int_equal(mpt_http_server_mismatches(s), 0);
 *     mpt_http_server_stop(&s);
 *
 * Threading: every function is called from the test's thread; the server
 * thread only answers and records (under a lock).
 */
#ifndef MP_TEST_HTTP_SCRIPT_SERVER_H
#define MP_TEST_HTTP_SCRIPT_SERVER_H

#include <stddef.h>
#include <stdint.h>

typedef struct mpt_http_step {
    /* Checks (NULL: not checked). */
    const char *method;        /* "GET", "POST", ...                        */
    const char *path;          /* path without query, e.g. "/token"         */
    const char *query;         /* exact query string after '?'              */
    const char *header;        /* "Name: value" that must be present        */
    const char *body_contains; /* substring the request body must contain   */
    /* Answer. */
    int status;                /* 0: 200                                    */
    const char *headers;       /* extra "Name: value\r\n" lines             */
    const char *body;          /* NULL: empty                               */
    size_t body_fill;          /* nonzero: body of this many 'x' instead    */
    uint32_t delay_ms;         /* wait this long before answering           */
} mpt_http_step;

/* One request as received. Strings are NUL-terminated copies. */
typedef struct mpt_http_seen {
    char *method;
    char *uri;      /* path and query as sent                             */
    char *headers;  /* "Name: value\n" lines                              */
    char *body;
    size_t body_len;
    int64_t at_ms;  /* arrival, monotonic ms (mpu_mono_ms)                */
} mpt_http_seen;

typedef struct mpt_http_server mpt_http_server;

/* TLS answers with a certificate and key (PEM files); NULL: plain HTTP. */
typedef struct mpt_tls_files {
    const char *cert_file;
    const char *key_file;
} mpt_tls_files;

/* Start serving `steps` (copied pointers: the array and its strings must
 * outlive the server). Returns NULL when it cannot listen. */
mpt_http_server *mpt_http_server_start(const mpt_http_step *steps, size_t n_steps,
                                       const mpt_tls_files *tls);
/* Stops the thread, drops pending answers and frees everything. Accepts
 * NULL, clears *s. */
void mpt_http_server_stop(mpt_http_server **s);

int mpt_http_server_port(const mpt_http_server *s);
/* "http(s)://127.0.0.1:<port><path>"; free() it. */
char *mpt_http_server_url(const mpt_http_server *s, const char *path);

/* Requests received so far. */
size_t mpt_http_server_count(mpt_http_server *s);
/* Copy of request i (0-based) into *seen_r; 0, or -1 when there is none.
 * Release with mpt_http_seen_clear. */
int mpt_http_server_seen(mpt_http_server *s, size_t i, mpt_http_seen *seen_r);
void mpt_http_seen_clear(mpt_http_seen *seen);
/* Requests that failed their step's checks or came beyond the script,
 * and the first reason (static "" when none; valid until stop). */
size_t mpt_http_server_mismatches(mpt_http_server *s);
const char *mpt_http_server_first_mismatch(mpt_http_server *s);
/* Most requests that were waiting for their answer at the same time. */
unsigned mpt_http_server_max_in_flight(mpt_http_server *s);

/* Wait until `count` requests have arrived; 0, or -1 after timeout_ms. */
int mpt_http_server_wait_count(mpt_http_server *s, size_t count, uint32_t timeout_ms);
/* Watch for window_ms: 0 when no request arrived meanwhile, -1 as soon as
 * one does (for "no retry before Retry-After" checks). */
int mpt_http_server_expect_quiet(mpt_http_server *s, uint32_t window_ms);

/* Write a test CA and a server certificate for 127.0.0.1/localhost
 * signed by it into `dir` (ca.pem, server.pem, server.key) with the
 * openssl command. Returns 0, or -1 when openssl failed. */
int mpt_tls_make_ca(const char *dir);

#endif

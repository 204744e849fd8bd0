/*
 * core/net: the daemon's one HTTP client (libcurl). The driver-facing host
 * `http` slot (core/host/host_http.c) and outbound webhook delivery
 * (core/webhook) both go through it, so every outbound request gets the
 * same rules:
 *
 *   - Only http:// and https://. TLS peer and host name are always
 *     verified; there is no switch to turn that off. `ca_file` replaces the
 *     system store (tests, private CAs).
 *   - Redirects are not followed unless the request sets max_redirects, and
 *     then only from an https URL to https URLs, at most max_redirects
 *     hops. Without it a 3xx answer is returned as it is.
 *   - A connect timeout and a total timeout, both always set.
 *   - A response body bound: past max_response bytes (after content
 *     decoding) the transfer is aborted and fails with MPN_ETOOLARGE.
 *   - Retry-After (delta-seconds or HTTP-date) parsed here and nowhere
 *     else, capped at MPN_RETRY_AFTER_CAP_MS.
 *   - Error texts name the method and the URL without userinfo, query or
 *     fragment (mpn_url_redact): they go to logs and API answers.
 *
 * Two ways to run a request, sharing the option setup and the result:
 * mpn_perform blocks the calling thread (worker threads, drivers) and
 * reuses one connection cache per thread; mpn_multi runs transfers on a
 * libevent loop and never blocks it (webhooks).
 *
 * Per-key concurrency limits (mpn_limit_set) bound how many blocking
 * requests with the same limit_key are in flight at once; a caller over
 * the limit waits up to limit_wait_ms, then fails with MPN_EBUSY.
 *
 * Library code: nothing here logs. Errors come back in the result.
 * Thread safety: every function may be called from any thread, except that
 * an mpn_multi and its transfers belong to the thread running its loop.
 */
#ifndef MP_NET_H
#define MP_NET_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

#define MPN_DEFAULT_TIMEOUT_MS 30000u
#define MPN_DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define MPN_DEFAULT_MAX_RESPONSE (64u * 1024u * 1024u)
#define MPN_DEFAULT_LIMIT_WAIT_MS 30000u
#define MPN_RETRY_AFTER_CAP_MS 86400000u /* one day */

/* One request. Borrowed by the call: mpn_perform reads it until it
 * returns, mpn_start copies what it needs before it returns. */
typedef struct mpn_request {
    const char *method;            /* NULL: "GET"                           */
    const char *url;               /* http:// or https://                   */
    const char *const *headers;    /* NULL-terminated "Name: value" list    */
    const void *body;              /* NULL: none (POST/PUT/PATCH send "")   */
    size_t body_len;
    uint32_t timeout_ms;           /* whole transfer; 0: default            */
    uint32_t connect_timeout_ms;   /* 0: default                            */
    size_t max_response;           /* body bound; 0: default                */
    int discard_body;              /* read and drop the body (no bound)     */
    uint32_t max_redirects;        /* 0: do not follow (https only, bounded) */
    const char *ca_file;           /* NULL: the system CA store             */
    const char *limit_key;         /* blocking calls: limiter key, NULL none */
    uint32_t limit_wait_ms;        /* wait for a limiter slot; 0: default   */
} mpn_request;

/* Why a request produced no response. Never renumbered. */
typedef enum mpn_error_kind {
    MPN_OK = 0,       /* a response arrived (any HTTP status)              */
    MPN_ETRANSPORT,   /* connect, DNS, reset, protocol error               */
    MPN_ETIMEOUT,     /* connect or total timeout                          */
    MPN_ETLS,         /* TLS handshake or certificate verification failed  */
    MPN_ETOOLARGE,    /* body larger than max_response                     */
    MPN_EREDIRECT,    /* too many redirects, or one to a non-https URL     */
    MPN_EBUSY,        /* no limiter slot within limit_wait_ms              */
    MPN_EREQUEST,     /* unusable request: no URL, scheme not allowed      */
} mpn_error_kind;

/* Outcome of one request. With MPN_OK: status, the NUL-terminated body
 * (empty with discard_body), the raw header block of the final response
 * and its Retry-After. Otherwise status is 0 and error says why (URL
 * redacted). Owned by the caller of mpn_perform (mpn_result_clear); a
 * multi callback's result is valid during the callback only. */
typedef struct mpn_result {
    mpn_error_kind kind;
    long status;
    char *body;
    size_t body_len;
    char *headers;
    uint32_t retry_after_ms; /* 0: absent or already past              */
    char *error;
} mpn_result;

/* Once per process, before any thread runs a request. */
void mpn_global_init(void);
/* Frees the calling thread's connection cache (thread exit). */
void mpn_thread_cleanup(void);

/* Blocking request on the calling thread. Returns 0 when a response
 * arrived (res_r->kind MPN_OK), -1 otherwise (res_r->error set).
 * *res_r is overwritten; release it with mpn_result_clear. */
int mpn_perform(const mpn_request *req, mpn_result *res_r);
/* Frees what a result holds and zeroes it. Accepts NULL. */
void mpn_result_clear(mpn_result *res);

/* ---- libcurl multi on a libevent loop ---- */

typedef struct mpn_multi mpn_multi;
typedef struct mpn_transfer mpn_transfer;

/* Runs on the loop thread when a transfer ends, never from inside
 * mpn_start; the transfer is gone once it returns. */
typedef void (*mpn_done_fn)(void *arg, const mpn_result *res);

mpn_multi *mpn_multi_new(struct event_base *base);
/* Cancels every transfer (their callbacks never run). Accepts NULL,
 * clears *m. */
void mpn_multi_free(mpn_multi **m);
/* Start `req` (copied, body included). limit_key is ignored: the loop
 * never waits. Returns the transfer, or NULL with *error_r set. */
mpn_transfer *mpn_start(mpn_multi *m, const mpn_request *req, mpn_done_fn done, void *arg,
                        char **error_r);
/* Abandon a transfer; its callback never runs. Accepts NULL, clears *t. */
void mpn_cancel(mpn_multi *m, mpn_transfer **t);

/* ---- helpers ---- */

/* Retry-After value (delta-seconds or HTTP-date) as a delay in ms from
 * now_ms (ms since the epoch), capped at MPN_RETRY_AFTER_CAP_MS; 0 when
 * unparsable, zero or in the past. */
uint32_t mpn_retry_after_ms(const char *value, int64_t now_ms);

/* scheme://host[:port]/path of `url`, without userinfo, query or
 * fragment; "(unparsable URL)" when libcurl cannot parse it. Never NULL;
 * free() it. */
char *mpn_url_redact(const char *url);

/* ---- per-key concurrency limits (blocking requests) ---- */

/* At most `max` blocking requests with limit_key `key` in flight; 0
 * removes the limit. Takes effect for the next acquisition. */
void mpn_limit_set(const char *key, unsigned max);
/* Take a slot for `key` (no-op without a limit), waiting up to wait_ms.
 * Returns 0, or -1 when none came free in time. */
int mpn_limit_acquire(const char *key, uint32_t wait_ms);
void mpn_limit_release(const char *key);
/* Requests of `key` in flight now (tests, metrics). */
unsigned mpn_limit_in_flight(const char *key);

#endif

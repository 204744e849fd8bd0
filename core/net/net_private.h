/*
 * Private to core/net: the per-transfer state and the option setup shared
 * by the blocking call (blocking.c) and the event-loop call (multi.c).
 */
#ifndef MP_NET_PRIVATE_H
#define MP_NET_PRIVATE_H

#include <curl/curl.h>

#include "net/net.h"

typedef struct mpn_buf {
    char *data;
    size_t len, cap;
} mpn_buf;

/* Everything one transfer needs besides its easy handle. Zero it before
 * mpn_xfer_setup; mpn_xfer_finish fills a result and mpn_xfer_release
 * frees the rest. */
typedef struct mpn_xfer {
    struct curl_slist *headers;
    mpn_buf body, hdrs;
    size_t max_response;
    int discard_body;
    int too_large;
    int follow;
    char method[16];
    char errbuf[CURL_ERROR_SIZE];
} mpn_xfer;

/* Set every option of `req` on `e` (freshly created or reset). With
 * copy_body the body is copied into the handle (multi), else borrowed.
 * Returns 0, or -1 with res_r filled (MPN_EREQUEST). */
int mpn_xfer_setup(mpn_xfer *x, CURL *e, const mpn_request *req, int copy_body,
                   mpn_result *res_r);
/* Turn the transfer's end into a result; hands the buffers over. */
void mpn_xfer_finish(mpn_xfer *x, CURL *e, CURLcode rc, mpn_result *res_r);
/* Frees buffers and headers still held. */
void mpn_xfer_release(mpn_xfer *x);
/* Fill res_r with an error of `kind`: "<method> <redacted url>: <why>". */
void mpn_result_fail(mpn_result *res_r, mpn_error_kind kind, const char *method,
                     const char *url, const char *why);
/* Retry-After of a raw header block (the last one present). */
uint32_t mpn_retry_after_from_headers(const char *headers, int64_t now_ms);

#endif

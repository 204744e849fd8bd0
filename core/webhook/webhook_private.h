/*
 * Private to core/webhook: HTTP transfers on the loop thread (transfer.c),
 * used by the delivery service (service.c).
 */
#ifndef MP_WEBHOOK_PRIVATE_H
#define MP_WEBHOOK_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct curl_slist;

typedef struct mpw_curl mpw_curl;
typedef struct mpw_transfer mpw_transfer;

/* Outcome of one POST: status is the HTTP status (0 when no answer came)
 * and error a description when status is 0 (else NULL); retry_after_s the
 * answer's Retry-After in seconds (0 when absent). Runs on the loop thread,
 * never from inside mpw_post; the transfer is gone afterwards. */
typedef void (*mpw_done_fn)(void *arg, long status, uint32_t retry_after_s,
                            const char *error);

/* A libcurl multi handle driven by `base`. */
mpw_curl *mpw_curl_new(struct event_base *base);
/* Cancels every transfer (their callbacks never run). Accepts NULL. */
void mpw_curl_free(mpw_curl **c);

/* POST `body` (copied) to url with `headers` (owned by the transfer) and a
 * whole-transfer timeout. Returns the transfer, or NULL with *error_r set
 * (headers freed). */
mpw_transfer *mpw_post(mpw_curl *c, const char *url, struct curl_slist *headers,
                       const char *body, size_t len, uint32_t timeout_ms, mpw_done_fn done,
                       void *arg, char **error_r);
/* Abandon a transfer; its callback never runs. Accepts NULL, clears *t. */
void mpw_cancel(mpw_curl *c, mpw_transfer **t);

#endif

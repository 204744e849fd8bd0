/*
 * Outbound webhooks: every outbox event that passes an endpoint's filters
 * is POSTed to it, signed the Standard Webhooks way.
 *
 * Delivery model (per endpoint, independently of the others):
 *   - a cursor in the store (mps_webhook_cursor_*) is a low-water mark:
 *     every event up to it is handled. A restart resumes right after it.
 *     An endpoint seen for the first time starts at the newest event (no
 *     history). The cursor is written at most every 100 ms and when the
 *     endpoint stops (stop, reload).
 *   - order is per account: an account's events go out one at a time in
 *     seq order, the next after a 2xx answer; up to conf.max_in_flight
 *     accounts are in flight at once, across accounts there is no order.
 *   - at-least-once: a crash sends again what was delivered above the
 *     saved cursor (at most the 10,000-event window), with the same
 *     webhook-id; nothing is skipped.
 *   - any other answer or a transport error is retried after a capped
 *     exponential backoff with jitter (mpw_backoff_ms), or after the
 *     answer's Retry-After; meanwhile only that account's later events
 *     wait (other accounts go on until the window is full). After
 *     max_attempts the event becomes a dead letter and its account moves
 *     on. Dead letters queued for replay (mpw_replay) go out one at a time
 *     in seq order, ahead of new events.
 *   - transfers run on the loop thread through one libcurl multi handle
 *     driven by libevent: a slow endpoint holds no worker and never delays
 *     another endpoint. TLS verification is always on.
 *
 * Request: POST <url>, body = the event JSON exactly as GET /v1/events
 * carries it (pointers, never message bodies), headers
 *   webhook-id: <idempotency_key> (or "evt_<seq>" when the key is not
 *               plain printable ASCII)
 *   webhook-timestamp: <unix seconds of this attempt>
 *   webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>
 *   content-type: application/json
 *   user-agent: mailpulse/<version>
 *
 * Threading: mpw_start .. mpw_stop and everything in between run on the
 * daemon's loop thread. The pure helpers are thread-safe.
 *
 * Ownership: the daemon starts the service and passes in all it uses (the
 * event base, the event stream of core/events, a way to reach the loop
 * thread's store connection, the settings); this module includes nothing
 * of core/daemon (tests/check_source.sh enforces it). It owns its
 * endpoints, their timers and the libcurl multi handle; the event JSON it
 * signs is core/events' (mpe_event_json).
 */
#ifndef MP_WEBHOOK_WEBHOOK_H
#define MP_WEBHOOK_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "events/events.h"
#include "store/store.h"

struct event_base;
typedef struct mpw_service mpw_service;

/* ---- pure helpers (sign.c, policy.c) ---- */

/* "v1," + 44 base64 characters + NUL. */
#define MPW_SIGNATURE_SIZE 48

/* The Standard Webhooks signature of one request into out (>=
 * MPW_SIGNATURE_SIZE). Returns 0, or -1 when HMAC fails. */
int mpw_sign(const uint8_t *key, size_t key_len, const char *id, int64_t timestamp,
             const char *body, size_t body_len, char *out, size_t size);

/* The webhook-id of an event: its idempotency key when that is 1..200
 * printable ASCII characters without spaces, else "evt_<seq>". */
void mpw_message_id(const char *idem_key, int64_t seq, char *out, size_t size);

/* Whether an event passes the endpoint's filters: type in `events`,
 * account in `accounts`, folder in `folders` (an event without a folder,
 * like account.status, never passes a folder filter). Absent filters pass
 * everything. */
int mpw_filter_match(const mp_webhook_conf *w, const char *type, const char *account,
                     const char *folder);

/* Delay before the next attempt after `failures` (>= 1) failed attempts:
 * retry_initial * 2^(failures-1) seconds scaled by a jitter factor in
 * [0.75, 1.25) taken from `random`, capped at retry_max. A Retry-After of
 * the answer (seconds, 0 = none) replaces it, capped at one hour. */
uint32_t mpw_backoff_ms(const mp_webhook_conf *w, uint32_t failures,
                        uint32_t retry_after_s, uint32_t random);

/* ---- the delivery service (service.c) ---- */

/* The store connection of the calling thread. The service calls it on the
 * loop thread only, each time it reads or writes, and never keeps the
 * result; it must not be NULL there while the service runs. */
typedef mps_store *(*mpw_store_fn)(void *arg);

/* Start delivering for s->webhooks (their keys must be read). Never fails:
 * store errors are logged and retried on the next check. `base` and
 * `events` are borrowed and must outlive the service (mpw_stop it before
 * closing them); it watches `events` for new commits. `s` is read during
 * the call only. */
mpw_service *mpw_start(struct event_base *base, mpe_events *events, mpw_store_fn store_fn,
                       void *store_arg, const mp_settings *s);
/* Apply a reloaded list: endpoints are matched by name; removed ones stop
 * (a transfer in flight is abandoned and the event is sent again if the
 * endpoint comes back), changed ones use their new settings from the next
 * attempt, new ones start at the newest event. */
void mpw_apply(mpw_service *w, const mp_settings *s);
/* Abandon transfers and free everything. Accepts NULL, clears *w. */
void mpw_stop(mpw_service **w);

/* {"webhooks":[endpoint...]}; endpoint: {"name","url","events","accounts",
 *  "folders","max_attempts","cursor","last_seq","lag","state":"ok"|
 *  "retrying"|"failing","pending_seq","attempts","next_retry","last_error",
 *  "last_success","delivered","failures","dead_letters","replay_queued",
 *  "in_flight","max_in_flight"}. pending_seq/attempts/next_retry describe
 *  the event holding things up: the replay in progress, else the unhandled
 *  event with the most failed attempts, else the oldest unhandled one.
 * The URL is shown without user/password. */
json_t *mpw_status_json(mpw_service *w);
/* One endpoint as above plus "dead":[{"seq","attempts","last_error",
 * "failed","replay"}] (first 100). NULL when unknown. */
json_t *mpw_endpoint_json(mpw_service *w, const char *name);
/* Queue the endpoint's dead letters with seq >= from for delivery.
 * Returns 202 with *count_r, 404 for an unknown endpoint, 500 on a store
 * error; *error_r is set (allocated) when not 202. */
int mpw_replay(mpw_service *w, const char *name, int64_t from, int64_t *count_r,
               char **error_r);
/* Prometheus lines (allocated, "" when there are no endpoints). */
char *mpw_metrics_text(mpw_service *w);

#endif

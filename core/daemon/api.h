/*
 * The daemon's data API: what the HTTP layer serves, as JSON values built
 * by the daemon. The HTTP layer does transport only (routing, auth, limits,
 * SSE framing); everything about accounts, messages and events is here.
 *
 * All functions run on the loop thread. JSON results are new references
 * the caller json_decref()s. On failure they return NULL and set *status_r
 * to the HTTP status to answer (404, 400, 503, ...) and *error_r to an
 * allocated message for the JSON error body.
 */
#ifndef MP_DAEMON_API_H
#define MP_DAEMON_API_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct mpd mpd;

/* {"status":"ok","version":...,"uptime_s":...} */
json_t *mpd_api_health(mpd *d);
/* {"version","uptime_s","state_dir","drivers":[{name,instance,file,status,
 *  error,abi}],"accounts":N,"scheduler":{...},
 *  "events":{"last_seq":N,"epoch":N,"retained_after":N (retention horizon)},
 *  "cache":{"queue","dropped","bodies","bytes","hits","misses","hit_ratio",
 *           "prefetch":{"runs","fetched","failed","skipped"}}} */
json_t *mpd_api_status(mpd *d);
/* GET /v1/accounts: one page of the accounts ordered by id, from memory
 * (no store read, whatever the number of accounts).
 * limit 0: MPD_ACCOUNTS_PAGE; after: the last id of the previous page
 * (NULL: from the start); status: only accounts with this status; push:
 * only accounts whose push state's leading word (mpd_push_class) is this
 * ("live", "off", "failed", ...; "none": no push state recorded). NULL:
 * no filter.
 * {"accounts":[{"id","instance","driver","status","last_error",
 *   "push_state" (the full text)|null,"push" (its class),"push_live":bool,
 *   "last_sync","last_push": RFC3339|null}],
 *  "total": accounts matching the filters (all pages),"limit":N,
 *  "next_after": id to pass as `after` for the next page|null (last page),
 *  "counts":{"accounts": all accounts,"status":{"<status>":N},
 *            "push":{"<class>":N}} (the whole daemon, unfiltered)} */
#define MPD_ACCOUNTS_PAGE 100
#define MPD_ACCOUNTS_PAGE_MAX 1000
typedef struct mpd_accounts_query {
    size_t limit;
    const char *after, *status, *push;
} mpd_accounts_query;
json_t *mpd_api_accounts(mpd *d, const mpd_accounts_query *q);
/* {"id","instance","driver","status","last_error","push_state","profile",
 *  "poll_interval_s","sync":{sched info},"backfill":{sched info},
 *  "subscription":{"provider_id","expires_at","cursor_hint","renewed",
 *                  "last_notification","has_secret":bool}|null (the
 *                  secret itself is never answered),
 *  "folders":[{"name","role","messages","bodies","bootstrapped","cursor",
 *              "backfill":{"status","loaded","target","position"},
 *              "resets","last_sync","last_error"}]} */
json_t *mpd_api_account(mpd *d, const char *id, int *status_r, char **error_r);
/* {"messages":[message...],"next_before":id|null}; limit 0: page size. */
json_t *mpd_api_messages(mpd *d, const char *account, const char *folder,
                         const char *before, size_t limit, int *status_r,
                         char **error_r);
/* {"id","account","folder","uid","message_id","subject","from","to",
 *  "date":RFC3339,"size","flags":[...],"thread_id","cached":bool} */
json_t *mpd_api_message(mpd *d, const char *id, int *status_r, char **error_r);

/* Raw RFC 822 from the body cache, or fetched through the driver and
 * cached, queued behind the account's other fetches (mpd_fetch_on_demand:
 * 503 when too many wait, 504 past cache.fetch_timeout). `cb` runs on the
 * loop thread exactly once (possibly before mpd_api_message_raw returns)
 * with status 200 and the bytes, or an error status and message. The bytes
 * are valid during the callback. */
typedef void (*mpd_raw_cb)(int status, const uint8_t *data, size_t len,
                           const char *error, void *arg);
void mpd_api_message_raw(mpd *d, const char *id, mpd_raw_cb cb, void *arg);

/* Triggers. Return the HTTP status (202, 404, 409) and set *error_r
 * (allocated) when it is not 202. */
int mpd_api_sync(mpd *d, const char *account, char **error_r);
int mpd_api_backfill(mpd *d, const char *account, const char *folder,
                     char **error_r);
/* Re-detect the provider's capabilities before the next sync (202; 409 when
 * the driver has no probe slot). */
int mpd_api_probe(mpd *d, const char *account, char **error_r);

/* An admin's preflight (check.c): run the account driver's `check` slot
 * (ABI 1.2) as the account's alone work, never alongside its syncs, even
 * while they are parked (reauth, back-off), which they stay.
 * POST: body empty or {"live": bool} (400 otherwise); 404 unknown account;
 * 409 account not active or its driver has no check slot; 503 when the
 * scheduler refuses. 202 {"id": N, "state": "pending"|"running"}: a
 * request while one is pending or running answers that one (no queue).
 * GET: {"id": N|null (null: never asked), "state": "none"|"pending"|
 *  "running"|"done"|"error", "live": bool, "requested_at", "started_at",
 *  "finished_at": RFC3339|null, "results": [{"name", "outcome":
 *  "ok"|"warn"|"fail"|"skip", "detail"}], "error": string|null (state
 *  error: why the check itself could not run)}; 404 unknown account. */
json_t *mpd_api_check_start(mpd *d, const char *account, const uint8_t *body, size_t len,
                            int *status_r, char **error_r);
json_t *mpd_api_check_get(mpd *d, const char *account, int *status_r, char **error_r);

/* Webhook POST /push/<instance><subpath>. header(ctx, name) looks up a
 * request header. Fills the answer; every out string is allocated. */
typedef const char *(*mpd_header_fn)(void *ctx, const char *name);
void mpd_api_push(mpd *d, const char *instance, const char *subpath,
                  const char *query, mpd_header_fn header, void *header_ctx,
                  const uint8_t *body, size_t len, int *status_r,
                  char **content_type_r, char **body_r, size_t *body_len_r);

/* ---- events: the HTTP layer's view of core/events (d->events) ---- */

/* Events with seq > after (ascending, at most limit) as JSON objects, each
 * shaped by mpe_event_json (core/events/events.h):
 * {...data fields,"seq","type","account","folder","message","time",
 *  "idempotency_key"}. types/accounts: NULL-terminated filters or NULL.
 * NULL when the outbox could not be read (logged): nothing may be taken
 * as read then. */
json_t *mpd_api_events(mpd *d, int64_t after, size_t limit,
                       const char *const *types, const char *const *accounts);
/* mpe_last_seq. */
int64_t mpd_api_last_seq(mpd *d);
/* mpe_epoch: event positions are "<epoch>:<seq>" (see core/store/store.h,
 * "store generations"). */
int64_t mpd_api_epoch(mpd *d);
/* mpe_resume through the loop thread's store: where a client that last saw
 * (epoch, seq) resumes. epoch 0 stands for the current one (a plain seq).
 * -1 on a store error (logged). */
int mpd_api_events_resume(mpd *d, int64_t epoch, int64_t seq, int64_t *after_r);
/* mpe_horizon: events up to this seq may be gone (0: none pruned). Read it
 * after reading events: a reader whose position is below it has missed
 * events. */
int64_t mpd_api_events_horizon(mpd *d);

/* mpe_watch_add / mpe_unwatch: `cb` is called on the loop thread whenever
 * events were committed, with the highest seq known. */
typedef void (*mpd_events_cb)(int64_t last_seq, void *arg);
void *mpd_events_watch(mpd *d, mpd_events_cb cb, void *arg);
void mpd_events_unwatch(mpd *d, void *handle);

/* Prometheus text exposition (allocated). */
char *mpd_api_metrics(mpd *d);

/* POST /v1/debug/clock, body {"offset_ms": N}: shift the daemon's wall
 * clock by N ms from real time (mpu_clock_set_offset_ms; 0 undoes it) so
 * tests can expire cached bodies. Only when debug.clock_control is set;
 * 404 otherwise, 400 for a bad body. Returns {"offset_ms","now"}. */
json_t *mpd_api_debug_clock(mpd *d, const uint8_t *body, size_t len, int *status_r,
                            char **error_r);

/* ---- outbound webhooks (core/webhook) ---- */

/* Served from d->webhooks, which main.c starts after the scheduler and
 * stops before it. */
/* {"webhooks":[endpoint...]} (see core/webhook/webhook.h). */
json_t *mpd_api_webhooks(mpd *d);
/* One endpoint with its dead letters; 404 when unknown. */
json_t *mpd_api_webhook(mpd *d, const char *name, int *status_r, char **error_r);
/* Queue the endpoint's dead letters with seq >= from for delivery:
 * {"endpoint","queued":N}; 404 unknown endpoint. */
json_t *mpd_api_webhook_replay(mpd *d, const char *name, int64_t from, int *status_r,
                               char **error_r);

#endif

/*
 * core/host: the layer between the daemon and its drivers. It implements
 * the SDK's host table (mp_host, handed to every driver's init) and gives
 * the daemon what it needs to call drivers: batches for the poll slots, the
 * folder sink of list_folders, webhook ingress (push_verify), the per-call
 * arena, the loop objects an account leaves behind.
 *
 * The host calls nothing above it. What it needs from its owner (the
 * calling thread's store connection, "events were committed", scheduling a
 * sync, push bookkeeping, new-mail warming) comes in an mphost_env the
 * owner fills once and points every instance at (mp_instance.env). Core
 * settings that a host slot without context reads (core_setting) are
 * published to the host by the owner, on start and on every reload.
 *
 * Threads: as stated per function; the env's functions must be callable
 * from any thread unless noted.
 */
#ifndef MP_HOST_HOST_H
#define MP_HOST_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include <mailpulse/driver.h>

#include "store/store.h"

struct mp_hostobj;
struct mpo_service;

/* What the host needs from its owner. Every function receives `owner`. */
/* What the ingress made of a webhook request: push_verify's MP_OK,
 * its MP_SKIP (well-formed but for no account of ours: answered 2xx,
 * nothing recorded) and everything refused (4xx/5xx, or no receiver). */
typedef enum mphost_push_outcome {
    MPHOST_PUSH_REJECTED = 0,
    MPHOST_PUSH_ACCEPTED = 1,
    MPHOST_PUSH_IGNORED = 2,
} mphost_push_outcome;

typedef struct mphost_env {
    void *owner;
    /* The loop that runs timers and fd watches (loop thread). */
    struct event_base *base;
    /* The calling thread's store connection, NULL when the store cannot be
     * opened (logged by the owner). */
    mps_store *(*store)(void *owner);
    /* A thread the host started is about to exit: release what store()
     * opened for it. */
    void (*thread_exit)(void *owner);
    /* A commit applied `applied` changes and its events reach `last_seq`
     * (0: no event). */
    void (*committed)(void *owner, uint64_t applied, int64_t last_seq);
    /* Message `id` (provider id) of `account` arrived as new mail and is
     * stored: warm its body. */
    void (*new_mail)(void *owner, const char *account, const char *id);
    /* Run the account's sync soon (folder NULL: every folder). */
    void (*sync)(void *owner, mp_account *acct, const char *folder, const char *reason);
    /* A push notification (webhook hint or stream event) arrived. */
    void (*push_noted)(void *owner, mp_account *acct);
    /* The driver reported its push state: `text` for status, `live` when
     * push is delivering (the poller drops to the reconciliation cadence). */
    void (*push_state)(void *owner, mp_account *acct, const char *text, int live);
    /* A folder was reset at the provider (counted for /metrics). */
    void (*folder_reset)(void *owner);
    /* A webhook request was judged (counted for /metrics). */
    void (*push_counted)(void *owner, mphost_push_outcome outcome);
    /* The OAuth2 token service behind the oauth_* slots (keyed by account
     * id), NULL: none (the slots answer MP_FATAL). Set before the first
     * account opens; the owner frees it after the last one is gone. */
    struct mpo_service *oauth;
} mphost_env;

/* The host table handed to drivers' init. */
const mp_host *mphost_table(void);

/* Core settings a driver may read through core_setting. Any thread. */
typedef struct mphost_settings {
    uint32_t sync_batch_size;
    int fetch_bodies;
    uint32_t backfill_batch_size;
    uint32_t retention_days;
} mphost_settings;
void mphost_publish_settings(const mphost_settings *s);

/* Timers and watches a driver creates without an account run on `base`
 * and belong to the host until mphost_release_global_objs (loop thread,
 * at start and at stop). */
void mphost_set_global_base(struct event_base *base);
void mphost_release_global_objs(void);
/* Free an account's timers and watches (loop thread). */
void mphost_release_loop_objs(struct mp_hostobj **list);

/* Strings the host returns "valid until the slot returns" live in a
 * per-thread arena: call this after every driver call. */
void mphost_call_end(void);

/* ---- batches for the poll slots (host_batch.c) ---- */

typedef struct mphost_batch_params {
    const char *folder;          /* borrowed for the batch's life            */
    int history;                 /* bootstrap/backfill: NEW is stored as SYNCED */
    int64_t deadline_ms;         /* 0: none                                  */
    mps_store *store;            /* the calling worker's connection          */
    int fetch_bodies;            /* keep large bodies the driver hands over  */
    uint32_t ingest_batch_size;  /* write-behind bound; 0: none              */
    int64_t retention_ms;        /* body cache retention                     */
} mphost_batch_params;

/* What a batch did, read after mphost_batch_end. */
typedef struct mphost_batch_stats {
    size_t changes;              /* changes handed over by the driver        */
    size_t events;               /* events committed                         */
    size_t new_messages;
    int cursor_committed;        /* a commit carried a cursor                */
    int backfill_done_seen;
} mphost_batch_stats;

/* A batch for one poll-slot call on `acct`. Worker thread. */
mp_batch *mphost_batch_begin(mp_account *acct, const mphost_batch_params *p);
/* Record a provider-side reset (one folder.reset at the next commit). */
void mphost_batch_note_reset(mp_batch *batch, const char *reason);
/* Commit on the host's own behalf (a backfill with nothing left to load). */
mp_status mphost_batch_commit_now(mp_batch *batch, const char *backfill_pos,
                                  int backfill_done, mp_error *err);
/* After the slot returned `st`: an OK slot's staged but uncommitted
 * changes are committed (without a cursor: replaying them is harmless),
 * otherwise dropped; the write-behind thread is waited for and stopped;
 * the arena is freed. Returns the outcome (st, or the commit's failure)
 * and fills *stats_r (may be NULL); frees the batch and clears *batch. */
mp_status mphost_batch_end(mp_batch **batch, mp_status st, mp_error *err,
                           mphost_batch_stats *stats_r);

/* ---- push hints of a sync run (host_push.c) ----
 * lend: the hints `take` are the ones the run of `acct` on this worker
 * thread took over, until return (sync_hint answers from them); take stays
 * the caller's. */
void mphost_hints_lend(const mp_account *acct, const mps_push_take *take);
void mphost_hints_return(void);

/* ---- list_folders output ---- */

mp_folder_sink *mphost_sink_new(void);
size_t mphost_sink_count(const mp_folder_sink *sink);
const char *mphost_sink_name(const mp_folder_sink *sink, size_t i);
mp_folder_role mphost_sink_role(const mp_folder_sink *sink, size_t i);
void mphost_sink_free(mp_folder_sink **sink);

/* ---- an admin's preflight: the check slot (host_check.c) ----
 * mp_check collects what a driver's `check` reports through
 * host->check_report: at most MPHOST_CHECK_MAX results, one per name (a
 * name reported again replaces its result in place), the name cut to
 * MPHOST_CHECK_NAME_MAX bytes and the detail to MPHOST_CHECK_DETAIL_MAX
 * (never inside a UTF-8 character). Drivers relay provider text, so both
 * are sanitized on the way in: invalid UTF-8 becomes U+FFFD, tab, CR and
 * LF a space, other controls (C0, DEL, C1) '?'. A report without a name
 * is dropped, an outcome outside mp_check_outcome becomes FAIL, and a
 * report past the cap is dropped and counted. A collector is used by one
 * slot call at a time; report is safe from any thread during it. */
#define MPHOST_CHECK_MAX 64
#define MPHOST_CHECK_NAME_MAX 64
#define MPHOST_CHECK_DETAIL_MAX 1024

typedef struct mphost_check_result {
    char *name;                  /* sanitized, never NULL or empty            */
    mp_check_outcome outcome;
    char *detail;                /* sanitized, "" when the driver gave none   */
} mphost_check_result;

mp_check *mphost_check_new(void);
void mphost_check_free(mp_check **chk);
size_t mphost_check_count(const mp_check *chk);
/* The i-th result in report order (first report of each name). */
const mphost_check_result *mphost_check_at(const mp_check *chk, size_t i);
/* Reports dropped because the cap was reached. */
size_t mphost_check_dropped(const mp_check *chk);
/* Hand the results over (the collector is empty afterwards); free them
 * with mphost_check_results_free. */
mphost_check_result *mphost_check_take(mp_check *chk, size_t *n_r);
void mphost_check_results_free(mphost_check_result **list, size_t n);
/* "ok", "warn", "fail", "skip"; NULL for a value outside the enum. */
const char *mphost_check_outcome_name(mp_check_outcome outcome);
/* A copy of `s` sanitized as above and cut to at most `max` bytes ("" for
 * NULL): for other provider text shown next to the results. */
char *mphost_check_clean(const char *s, size_t max);
/* The check_report slot of the host table. */
void mphost_check_report(mp_check *chk, const char *name, mp_check_outcome outcome,
                         const char *detail);

/* Where an account's last preflight is (mp_account.check, under
 * mp_account.check_lock). */
typedef enum mphost_check_state {
    MPHOST_CHECK_NONE = 0,       /* never asked since the account opened    */
    MPHOST_CHECK_PENDING = 1,    /* asked, waiting for the account's turn   */
    MPHOST_CHECK_RUNNING = 2,    /* the slot is running                     */
    MPHOST_CHECK_DONE = 3,       /* the slot returned MP_OK                 */
    MPHOST_CHECK_ERROR = 4,      /* the slot failed or could not run        */
} mphost_check_state;

/* "none", "pending", "running", "done", "error". */
const char *mphost_check_state_name(mphost_check_state state);

typedef struct mphost_check_record {
    uint64_t id;                 /* 0 while state is NONE                   */
    mphost_check_state state;
    unsigned flags;              /* MP_CHECK_LIVE as asked                  */
    int64_t requested_at_ms, started_at_ms, finished_at_ms; /* 0: not yet   */
    mphost_check_result *results;
    size_t n_results;
    char *error;                 /* state ERROR: why; else NULL             */
} mphost_check_record;

/* Free what the record holds and reset it to NONE. */
void mphost_check_record_clear(mphost_check_record *rec);

/* ---- stored webhook subscriptions (host_subscription.c) ----
 * Each instance keeps an in-memory index of its accounts' stored
 * subscriptions behind the subscription_get/subscription_lookup slots:
 * push_verify runs on the loop thread and must answer within
 * milliseconds, so it never asks the store. The store stays the truth;
 * the owner mirrors it here: put when it opens a webhook account with a
 * stored subscription and after upkeep stored one (any thread), forget
 * when upkeep deleted it or the account retires, free with the instance.
 * put's secret NULL keeps the secret indexed before (as the store does);
 * a put for an account already marked removed is dropped. */
void mphost_subs_put(mp_account *acct, const char *provider_id, int64_t expires_at,
                     const char *cursor_hint, const char *secret);
void mphost_subs_forget(mp_instance *inst, const char *account_id);
void mphost_subs_free(mp_instance *inst);

/* ---- webhook ingress (host_ingress.c) ---- */

/* Header lookup of the HTTP request being delivered. */
typedef const char *(*mphost_header_fn)(void *ctx, const char *name);

typedef struct mphost_push_answer {
    int status;
    char *content_type;          /* NULL: none; free                         */
    char *body;                  /* NULL: empty; free                        */
    size_t len;
} mphost_push_answer;

/* Deliver a POST /push/<instance> to `inst` (NULL or not a webhook
 * driver: 404): the driver verifies it before anything is parsed and
 * records hints; the answer is what it chose, else 204 when accepted,
 * 400 when rejected, 503 when it could not persist. Loop thread. */
void mphost_push_deliver(mp_instance *inst, const char *subpath, const char *query,
                         mphost_header_fn header, void *header_ctx, const uint8_t *body,
                         size_t len, mphost_push_answer *answer_r);

#endif

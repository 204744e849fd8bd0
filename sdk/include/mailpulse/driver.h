/*
 * mailpulse driver SDK — the contract between mailpulsed and a provider driver.
 *
 * A driver is a shared object (`<name>.so`) in the daemon's driver directory that
 * exports exactly one symbol, MP_DRIVER_SYMBOL, a `const mp_driver` filled with
 * designated initializers:
 *
 *     MP_DRIVER_EXPORT const mp_driver mailpulse_driver = {
 *         MP_DRIVER_HEAD("example"),
 *         .account_open = example_account_open,
 *         ...
 *     };
 *
 * ABI history (append-only; values are never renumbered, slots never move):
 *   1.0  first release: descriptor head, lifecycle, poll, fetch, webhook and
 *        stream push slots, optional probe; host table with log, config,
 *        secrets, cursors, change emission, sync-now, HTTP, timers and fd
 *        watches, stored-message iteration and core settings.
 *   1.1  the host table grows, and the descriptor gains one optional slot:
 *        MP_HOST_HAS slot test; durable driver state (state_get,
 *        state_put, batch_state); account-level cursors (account_cursor,
 *        batch_account_cursor) and the descriptor slot account_delta for
 *        change logs that cover the whole mailbox (the loader reads it only
 *        from a descriptor whose struct_size covers it; a 1.0 descriptor
 *        has it NULL); changes with folder memberships (mp_folders,
 *        batch_change_folders); per-account HTTP limits and options
 *        (http_limit, mp_http_options, http_ex); push state as an enum plus
 *        text (mp_push_state, push_status); the push hints a sync run took
 *        over (sync_hint; push_hint and sync_now now sync just their
 *        folder); the stored subscription for push_verify
 *        (subscription_get, subscription_lookup) and its verification
 *        secret (mp_subscription.secret, appended: the host allocates the
 *        struct, so a 1.0 driver never sees it); OAuth2 access tokens as a
 *        host service (mp_oauth_grant, mp_oauth_params, oauth_setup,
 *        oauth_token, oauth_reject). Each is marked "added in ABI 1.1".
 *        Drivers built for 1.0 load and run unchanged (tests/drivers/abi10
 *        keeps a frozen 1.0 build of the fixture).
 *   1.2  an admin's preflight: the descriptor slot `check` and the host
 *        slot check_report (mp_check, mp_check_outcome, MP_CHECK_LIVE),
 *        run on POST /v1/accounts/{id}/check; the host slot instance_name
 *        (the <instance> of /push/<instance>). Marked "added in ABI 1.2".
 *
 * The loader refuses a driver whose ABI major differs from the host's, whose
 * minor is newer than the host's, whose struct_size is smaller than the 1.0
 * descriptor, whose name differs from its file name, or that lacks a
 * mandatory slot. A driver built against an older minor keeps working: slots
 * it does not know lie beyond its struct_size and read as NULL.
 *
 * OWNERSHIP (stated once; exceptions are noted at the slot):
 *   - Pointers the host passes in (strings, configs, requests, changes) are
 *     borrowed for the duration of the call only. Copy what you keep.
 *   - Pointers a driver passes to the host are copied by the host before the
 *     host function returns. The driver keeps ownership.
 *   - Memory the host hands over for keeps (secrets, HTTP response bodies)
 *     is released with the matching host function (free_secret, http_free).
 *   - Driver state (`void *` set through `*state_r`) belongs to the driver;
 *     the host only carries it and hands it back, and asks the driver to free
 *     it through the matching close/deinit slot, which receives `void **` and
 *     must clear it. Close slots accept NULL state.
 *   - Output parameters end in `_r`.
 *
 * THREADING (stated once):
 *   - The host runs one event-loop thread (timers, sockets, HTTP server) and a
 *     bounded pool of worker threads for driver calls.
 *   - init, deinit, account_open, account_close, push_verify, push_start,
 *     push_stop and every timer/fd-watch callback run on the loop thread.
 *     They must not block: no network round trips, no sleeping.
 *   - list_folders, bootstrap, delta, backfill, fetch, push_enroll,
 *     push_renew, push_cancel, probe and check run on worker threads and
 *     may block.
 *   - For one account the host never runs two of {list_folders, bootstrap,
 *     delta, backfill, push_enroll, push_renew, push_cancel, probe, check}
 *     at once. fetch may
 *     run concurrently with one of those for the same account (a reader opens
 *     a message while a sync runs), but never with another fetch of the same
 *     account. Loop-thread callbacks for an account may run while a worker
 *     call for that account is in progress: share state between them only
 *     under your own lock.
 *   - Host functions are safe to call from any thread, except those marked
 *     "loop thread only".
 */
#ifndef MAILPULSE_DRIVER_H
#define MAILPULSE_DRIVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MP_ABI_MAJOR 1
#define MP_ABI_MINOR 2

/* The one symbol a driver exports. */
#define MP_DRIVER_SYMBOL "mailpulse_driver"

#if defined(__GNUC__)
#define MP_DRIVER_EXPORT __attribute__((visibility("default")))
#define MP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MP_DRIVER_EXPORT
#define MP_PRINTF(f, a)
#endif

/* Fills the descriptor head with this header's ABI numbers and size. */
#define MP_DRIVER_HEAD(driver_name)                                            \
    .abi_major = MP_ABI_MAJOR, .abi_minor = MP_ABI_MINOR,                      \
    .struct_size = (uint32_t)sizeof(mp_driver), .name = (driver_name)

/* ------------------------------------------------------------------------ */
/* Status codes: what the scheduler should do next. Never renumbered.        */

typedef enum mp_status {
    MP_OK = 0,      /* done; commit what was emitted                         */
    MP_RETRY = 1,   /* transient failure; retry after mp_error.retry_after_ms
                       (0: the scheduler's capped exponential backoff)       */
    MP_REAUTH = 2,  /* credentials rejected or expired; the account waits
                       for new credentials (config reload) and reports it    */
    MP_RESYNC = 3,  /* the folder's cursor is no longer valid at the provider;
                       the host drops it, bootstraps the folder again and
                       emits one folder.reset event                          */
    MP_SKIP = 4,    /* this one item is gone or unusable (fetch of a message
                       deleted meanwhile); skip it without backoff           */
    MP_FATAL = 5,   /* configuration or protocol error that retrying cannot
                       fix; the account stops until the config changes      */
} mp_status;

/* Why a call did not return MP_OK. The host zeroes it before every call. */
typedef struct mp_error {
    uint32_t retry_after_ms; /* with MP_RETRY: provider's hint, 0 = none   */
    char text[512];          /* human-readable reason, no secrets          */
} mp_error;

/* Convenience: set err->text printf-style and return `status`. */
static inline mp_status mp_fail(mp_error *err, mp_status status, const char *fmt, ...)
    MP_PRINTF(3, 4);
static inline mp_status mp_fail(mp_error *err, mp_status status, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* ------------------------------------------------------------------------ */
/* Opaque host objects.                                                      */

typedef struct mp_instance mp_instance; /* one plugins.d file's driver      */
typedef struct mp_account mp_account;   /* one configured account           */
typedef struct mp_config mp_config;     /* a validated config node (map)    */
typedef struct mp_batch mp_batch;       /* an open sync batch of one folder */
typedef struct mp_folder_sink mp_folder_sink; /* collects list_folders     */
typedef struct mp_push_reply mp_push_reply;   /* answer to a webhook POST   */
typedef struct mp_timer mp_timer;
typedef struct mp_watch mp_watch;
typedef struct mp_check mp_check;       /* collects one preflight's results */

/* ------------------------------------------------------------------------ */
/* Configuration keys a driver declares; the core validates, fills defaults
 * and reports errors with file:line. Arrays end with a zeroed entry.        */

typedef enum mp_config_type {
    MP_CFG_END = 0,
    MP_CFG_STRING = 1,
    MP_CFG_INT = 2,      /* int64                                            */
    MP_CFG_BOOL = 3,
    MP_CFG_STRING_LIST = 4,
    MP_CFG_SECRET_FILE = 5, /* a path to a file holding a secret; the key
                               must end in "_file"; read with read_secret   */
} mp_config_type;

typedef struct mp_config_key {
    const char *name;
    mp_config_type type;
    const char *default_value; /* textual default, NULL: no default        */
    int required;              /* nonzero: missing key is an error          */
    const char *help;          /* one line, shown by --check-config errors */
} mp_config_key;

/* ------------------------------------------------------------------------ */
/* Data the driver hands to the host.                                        */

typedef enum mp_folder_role {
    MP_ROLE_NONE = 0,
    MP_ROLE_INBOX = 1,
    MP_ROLE_SENT = 2,
    MP_ROLE_DRAFTS = 3,
    MP_ROLE_JUNK = 4,
    MP_ROLE_TRASH = 5,
    MP_ROLE_ARCHIVE = 6,
    MP_ROLE_ALL = 7,
    MP_ROLE_FLAGGED = 8,
} mp_folder_role;

typedef enum mp_change_kind {
    MP_CHANGE_NEW = 1,     /* arrived after the folder was connected       */
    MP_CHANGE_SYNCED = 2,  /* history brought in by bootstrap or backfill   */
    MP_CHANGE_UPDATED = 3, /* flags/labels (or summary) changed             */
    MP_CHANGE_DELETED = 4, /* gone from the folder                          */
} mp_change_kind;

/*
 * One message change. `id` is the provider-stable id, unique per account
 * (Gmail message id, Graph immutable id, IMAP "<uidvalidity>:<uid>" or
 * better). The host keys its store on it and derives the public message id
 * from it, so it must not change for the same message.
 *
 * For NEW/SYNCED every summary field the provider knows should be set; for
 * UPDATED only `flags` (and what changed) is needed; for DELETED only `id`.
 * A NEW or SYNCED change for an id the host already stores is folded into
 * an update (or nothing) so replays never emit duplicates.
 */
typedef struct mp_change {
    mp_change_kind kind;
    const char *id;         /* required                                     */
    const char *old_id;     /* set to re-key a stored message to `id`
                               silently (UIDVALIDITY re-map); else NULL      */
    const char *ref;        /* opaque fetch reference stored with the
                               message and handed back to fetch; NULL = id  */
    uint32_t uid;           /* IMAP UID, 0 when not applicable              */
    const char *message_id; /* RFC 5322 Message-ID, without < >             */
    const char *subject;    /* decoded UTF-8                                */
    const char *from;       /* "Name <addr>" or addr                         */
    const char *to;         /* comma-separated                              */
    int64_t date;           /* Unix seconds (Date header or INTERNALDATE)   */
    int64_t size;           /* RFC 822 size in bytes, -1 unknown            */
    const char *thread_id;  /* provider thread id or NULL                   */
    const char *flags;      /* space-separated: "\\Seen \\Flagged label:X"  */
    const uint8_t *raw;     /* optional full RFC 822 body to cache          */
    size_t raw_len;
} mp_change;

/* The message reference handed to fetch. */
typedef struct mp_message_ref {
    const char *folder; /* folder name                                      */
    const char *id;     /* provider-stable id                               */
    const char *ref;    /* the ref emitted with the message, or the id      */
    uint32_t uid;       /* 0 when not applicable                            */
} mp_message_ref;

/* A message as the host stores it (host_messages iteration). Pointers are
 * valid during the callback only. */
typedef struct mp_stored_message {
    const char *id;         /* provider-stable id                           */
    const char *ref;        /* fetch reference, or NULL                     */
    uint32_t uid;           /* 0 when not applicable                        */
    const char *message_id; /* or NULL                                      */
    int64_t date;
    int64_t size;
    const char *flags;      /* space-separated, or NULL                     */
} mp_stored_message;

/* Return nonzero to stop the iteration. */
typedef int (*mp_stored_cb)(const mp_stored_message *msg, void *arg);

/* Raw message returned by fetch. The driver fills it with memory from
 * host->alloc; the host takes ownership. */
typedef struct mp_raw {
    uint8_t *data;
    size_t len;
} mp_raw;

/* Subscription state for webhook push. Strings are owned by whoever fills
 * the struct for the duration of the call; the host stores copies. */
typedef struct mp_subscription {
    const char *provider_id;  /* Graph subscription id, Gmail topic, ...    */
    int64_t expires_at;       /* Unix seconds; 0 = never                    */
    const char *cursor_hint;  /* e.g. Gmail historyId returned by watch     */
    /* Added in ABI 1.1 (the host always allocates and zeroes this struct,
     * so a 1.0 driver leaves it NULL): a secret the provider echoes in
     * every notification (Graph's clientState), kept owner-only in the
     * store, never logged and never in an API answer; NULL: none. Compare
     * it in constant time (CRYPTO_memcmp). */
    const char *secret;
} mp_subscription;

/* An incoming webhook request (POST /push/<instance>). Header lookup via
 * host->request_header. The body is the exact raw bytes received, so
 * signatures can be verified before any parsing. */
typedef struct mp_push_request {
    const char *path;       /* path after /push/<instance>, may be ""      */
    const char *query;      /* raw query string or ""                      */
    const uint8_t *body;
    size_t body_len;
    const void *host_private;
} mp_push_request;

/* ------------------------------------------------------------------------ */
/* Host services. Handed to init; valid until deinit returns.                */

typedef enum mp_log_level {
    MP_LOG_ERROR = 0,
    MP_LOG_WARNING = 1,
    MP_LOG_INFO = 2,
    MP_LOG_DEBUG = 3,
} mp_log_level;

typedef enum mp_fd_events {
    MP_FD_READ = 1,
    MP_FD_WRITE = 2,
} mp_fd_events;

/* HTTP request through the host's libcurl (TLS verification always on). */
typedef struct mp_http_request {
    const char *method;          /* "GET", "POST", "PATCH", "DELETE", ...  */
    const char *url;
    const char *const *headers;  /* NULL-terminated "Name: value" list     */
    const uint8_t *body;         /* may be NULL                            */
    size_t body_len;
    uint32_t timeout_ms;         /* 0: 30000                               */
} mp_http_request;

typedef struct mp_http_response {
    long status;                 /* HTTP status, 0 on transport failure    */
    uint8_t *body;               /* NUL-terminated; free with http_free    */
    size_t body_len;
    char *headers;               /* raw response header block; http_free  */
    uint32_t retry_after_ms;     /* parsed Retry-After, 0 if absent        */
} mp_http_response;

/* Options of host->http_ex beyond mp_http_request (added in ABI 1.1).
 * Set struct_size = sizeof(mp_http_options); fields appended by later
 * minors lie beyond an older driver's struct_size and read as zero. */
typedef struct mp_http_options {
    uint32_t struct_size;
    uint32_t max_redirects;      /* 0: never follow; else at most this many,
                                    https to https only                    */
    size_t max_response;         /* body bound in bytes; 0: the host's
                                    default (64 MiB). Larger: MP_RETRY     */
} mp_http_options;

/* A message's folder memberships, for batch_change_folders (added in ABI
 * 1.1), for providers whose message ids are stable across folders. A
 * message is stored once per account and may be in several folders:
 *  - `now_in` not NULL: the message is now in exactly these n_now_in
 *    folders (Gmail's labelIds);
 *  - now_in NULL: NEW/SYNCED add the batch's folder to the folders already
 *    stored (a second label does not move it out of the first); UPDATED
 *    and DELETED start from the stored ones;
 *  - then `added` are entered and `removed` left (a Graph move under the
 *    same immutable id: removed = {old}, added = {new}).
 * Names are folder names as given to folder_add. Leaving the last folder
 * (or DELETED) is one message.deleted; entering or leaving folders is one
 * message.updated with "folders_added", "folders_removed" and "folders"
 * (message.new instead when a NEW change enters the INBOX), never a delete
 * plus a new. The change's uid belongs to its membership in the batch's
 * folder. */
typedef struct mp_folders {
    const char *const *now_in;
    size_t n_now_in;
    const char *const *added;
    size_t n_added;
    const char *const *removed;
    size_t n_removed;
} mp_folders;

/* Push state for host->push_status (added in ABI 1.1). Never renumbered. */
typedef enum mp_push_state {
    MP_PUSH_STATE_STARTING = 0,     /* connecting / enrolling               */
    MP_PUSH_STATE_LIVE = 1,         /* delivering: the host polls only at
                                       the reconciliation cadence           */
    MP_PUSH_STATE_RECONNECTING = 2, /* lost, trying again                   */
    MP_PUSH_STATE_OFF = 3,          /* not used (disabled, unsupported)     */
    MP_PUSH_STATE_FAILED = 4,       /* gave up until the config changes     */
} mp_push_state;

/* OAuth2 grants for oauth_setup (added in ABI 1.1). Never renumbered. */
typedef enum mp_oauth_grant {
    MP_OAUTH_REFRESH_TOKEN = 1,      /* client_id, [client_secret_file],
                                        refresh_token_file                  */
    MP_OAUTH_CLIENT_CREDENTIALS = 2, /* client_id, client_secret_file,
                                        [scope]: app-only (Microsoft 365)   */
    MP_OAUTH_JWT_BEARER = 3,         /* key_file (Google service-account
                                        JSON), scope, [subject] for
                                        domain-wide delegation              */
} mp_oauth_grant;

/* An account's OAuth2 credentials (added in ABI 1.1). Set struct_size =
 * sizeof(mp_oauth_params); fields appended later read as zero beyond an
 * older driver's struct_size. Secrets are named by file (owner-only, read
 * by the host at each token request, so a replaced file takes effect);
 * the driver never sees them. Strings are copied by oauth_setup. */
typedef struct mp_oauth_params {
    uint32_t struct_size;
    mp_oauth_grant grant;
    const char *token_url;          /* JWT bearer: NULL = the key's token_uri */
    const char *client_id;
    const char *client_secret_file; /* NULL: public client (refresh grant)   */
    const char *refresh_token_file;
    const char *key_file;
    const char *scope;              /* space-separated; NULL: not sent       */
    const char *subject;            /* JWT bearer: user to impersonate       */
    const char *audience;           /* JWT bearer: NULL = the token URL      */
} mp_oauth_params;

/* Outcome of one preflight check for host->check_report (added in ABI
 * 1.2). Never renumbered. */
typedef enum mp_check_outcome {
    MP_CHECK_OK = 0,   /* verified                                          */
    MP_CHECK_WARN = 1, /* works, but not as intended (say what to change)    */
    MP_CHECK_FAIL = 2, /* broken: the detail says what to do                 */
    MP_CHECK_SKIP = 3, /* not applicable or not verifiable (say why)         */
} mp_check_outcome;

/* Flags of the check slot (added in ABI 1.2). */
#define MP_CHECK_LIVE 0x1u /* the admin asked for a live test message      */

typedef void (*mp_timer_cb)(void *arg);
typedef void (*mp_watch_cb)(int fd, unsigned events, void *arg);

typedef struct mp_host {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t struct_size; /* check before using a slot newer than 1.0     */

    /* Logging. The host prefixes driver instance and account (acct may be
     * NULL) and never logs secrets; drivers must not pass secrets here. */
    void (*log)(mp_instance *inst, mp_account *acct, mp_log_level level,
                const char *fmt, ...) MP_PRINTF(4, 5);

    /* Memory the host will own or free (mp_raw.data). */
    void *(*alloc)(size_t size);
    void (*free)(void *ptr);

    /* Typed config access on a validated node (instance or account config).
     * Missing optional keys return their declared default (or NULL / 0). */
    const char *(*config_string)(const mp_config *cfg, const char *key);
    int64_t (*config_int)(const mp_config *cfg, const char *key);
    int (*config_bool)(const mp_config *cfg, const char *key);
    size_t (*config_list_len)(const mp_config *cfg, const char *key);
    const char *(*config_list_string)(const mp_config *cfg, const char *key,
                                      size_t index);

    /* Read the secret file named by MP_CFG_SECRET_FILE key `key`. Trailing
     * newlines are stripped. Refuses files readable by group/others.
     * On success *secret_r is host memory released with free_secret, which
     * wipes it. Returns MP_OK, MP_RETRY with err set when the process is
     * out of descriptors (retry later, as with any MP_RETRY), or MP_FATAL
     * with err set. */
    mp_status (*read_secret)(const mp_config *cfg, const char *key,
                             char **secret_r, size_t *len_r, mp_error *err);
    void (*free_secret)(char **secret);

    /* The account's id (from the YAML `id:`) and its driver instance. */
    const char *(*account_id)(mp_account *acct);
    mp_instance *(*account_instance)(mp_account *acct);
    /* Driver state attached by account_open / init. */
    void *(*account_state)(mp_account *acct);
    void *(*instance_state)(mp_instance *inst);
    /* Find an account of this instance by id; NULL if none. Loop thread only. */
    mp_account *(*account_find)(mp_instance *inst, const char *account_id);

    /* Per-folder opaque cursors as last committed (NULL if none). Returned
     * memory is the host's and valid until the call (poll slot) returns. */
    const char *(*cursor_get)(mp_account *acct, const char *folder);

    /* Change emission inside a batch (poll slots only). Changes are staged
     * and become visible, with their events, only at batch_commit. */
    mp_status (*batch_change)(mp_batch *batch, const mp_change *change,
                              mp_error *err);
    /* Commit staged changes, their events and the new cursor (NULL: keep)
     * and backfill position (NULL: keep) in one transaction. May be called
     * several times per slot call to checkpoint long syncs. `backfill_done`
     * nonzero marks the folder's history as fully loaded. */
    mp_status (*batch_commit)(mp_batch *batch, const char *cursor,
                              const char *backfill_pos, int backfill_done,
                              mp_error *err);
    /* Record, inside the batch, that the folder was reset at the provider
     * (UIDVALIDITY change re-mapped); emits one folder.reset at commit. */
    void (*batch_reset)(mp_batch *batch, const char *reason);
    /* Deadline of this slot call in ms since the epoch (backfill budget);
     * 0 if none. Drivers stop at the next checkpoint once passed. */
    int64_t (*batch_deadline_ms)(mp_batch *batch);

    /* list_folders output. */
    void (*folder_add)(mp_folder_sink *sink, const char *name,
                       mp_folder_role role);

    /* Ask the scheduler to run the account's delta sync now for `folder`
     * only (NULL: all folders; an account_delta driver gets its one
     * account_delta call either way). Coalesced with any running or queued
     * sync: the folders merge, all folders absorbing a folder, and a run
     * asked for more than a few folders covers all of them. Any thread. */
    void (*sync_now)(mp_account *acct, const char *folder, const char *reason);

    /* Report push state for status/metrics/events. A state beginning with
     * "watching", "idle" or "live" means push is delivering: the host then
     * polls only at the reconciliation cadence. Anything else ("starting",
     * "reconnecting: ...", "off: ...", "failed: ...") keeps normal polling. */
    void (*push_state)(mp_account *acct, const char *state);
    /* Record a capability/profile JSON object string shown in account
     * status (e.g. IMAP capabilities). */
    void (*set_profile)(mp_account *acct, const char *json);

    /* Webhook support for push_verify (loop thread only). */
    const char *(*request_header)(const mp_push_request *req, const char *name);
    /* Persist a hint for `acct` (any folder if NULL) and trigger a sync
     * of that folder (as sync_now). The hint is durable when this returns;
     * the run it starts reads it back through sync_hint (only the newest
     * hint per folder is kept). */
    mp_status (*push_hint)(mp_account *acct, const char *folder,
                           const char *cursor_hint, mp_error *err);
    /* Set the HTTP answer (default: 204, empty body). */
    void (*push_reply)(mp_push_reply *reply, int status,
                       const char *content_type, const char *body, size_t len);

    /* HTTP through libcurl (worker threads). Returns MP_OK when a response
     * (any status) arrived, MP_RETRY on transport failure. */
    mp_status (*http)(mp_account *acct, const mp_http_request *req,
                      mp_http_response *resp_r, mp_error *err);
    void (*http_free)(mp_http_response *resp);

    /* Timers and fd watches on the loop thread (loop thread only).
     * Callbacks run on the loop thread. A timer fires once and then stays
     * allocated (inactive) until timer_cancel; watches are persistent until
     * watch_cancel. Cancel accepts NULL and clears the pointer. Whatever an
     * account still holds when it closes is freed by the host; acct NULL
     * ties the object to the instance's lifetime instead. */
    mp_timer *(*timer_add)(mp_account *acct, uint32_t after_ms, mp_timer_cb cb,
                           void *arg);
    void (*timer_cancel)(mp_timer **timer);
    mp_watch *(*watch_fd)(mp_account *acct, int fd, unsigned events,
                          mp_watch_cb cb, void *arg);
    void (*watch_update)(mp_watch *watch, unsigned events);
    void (*watch_cancel)(mp_watch **watch);

    /* Current time in ms since the epoch, as the host sees it (tests may
     * move it). */
    int64_t (*now_ms)(void);

    /* Iterate the messages the host stores for `folder` of `acct` (deleted
     * ones left out) in ascending UID order, then id. Worker threads, inside
     * a poll slot: used to re-map ids after a UIDVALIDITY change or to find
     * expunged UIDs by comparing sets. Returns MP_OK, or MP_RETRY with err
     * set when the store cannot be read. */
    mp_status (*stored_messages)(mp_account *acct, const char *folder, mp_stored_cb cb,
                                 void *arg, mp_error *err);

    /* Integer value of a core setting the driver may honour, by its name
     * in mailpulsed.conf: "sync.batch_size", "sync.fetch_bodies" (0/1),
     * "backfill.batch_size", "cache.retention_days". Unknown names: -1. */
    int64_t (*core_setting)(const char *name);

    /* ---- added in ABI 1.1 (test each with MP_HOST_HAS first) ---- */

    /* Durable driver state: small per-account text records kept across
     * restarts (a rotated token, a watch's id, a subscription's
     * clientState). Keys are 1..128 bytes, values at most 64 KiB.
     * state_get: *value_r is host memory released with host->free; MP_SKIP
     * when there is no record. state_put: value NULL deletes; durable when
     * it returns (its own transaction). Out-of-bounds key or value:
     * MP_FATAL; store failure: MP_RETRY. Any thread, but each is a store
     * round trip: prefer worker threads. */
    mp_status (*state_get)(mp_account *acct, const char *key, char **value_r,
                           mp_error *err);
    mp_status (*state_put)(mp_account *acct, const char *key, const char *value,
                           mp_error *err);
    /* The same records, written by the batch's next batch_commit in its
     * transaction (poll slots): a Gmail historyId that belongs to the
     * changes just emitted. MP_FATAL at once when out of bounds. A later
     * call for the same key before the commit replaces the staged value. */
    mp_status (*batch_state)(mp_batch *batch, const char *key, const char *value,
                             mp_error *err);

    /* Account-level cursor, beside the per-folder ones, for providers whose
     * change log covers the whole mailbox (Gmail's historyId).
     * account_cursor: as last committed, or NULL; host memory valid until
     * the calling slot returns (like cursor_get). batch_account_cursor:
     * stage it (NULL: clear it) for the batch's next batch_commit, in the
     * same transaction as the changes. */
    const char *(*account_cursor)(mp_account *acct);
    void (*batch_account_cursor)(mp_batch *batch, const char *cursor);

    /* batch_change with the message's folder memberships (mp_folders);
     * the change's kind, id and fields mean what they mean for
     * batch_change. folders NULL: batch_change. Poll slots only. */
    mp_status (*batch_change_folders)(mp_batch *batch, const mp_change *change,
                                      const mp_folders *folders, mp_error *err);

    /* At most `max` concurrent http/http_ex requests of this account (0:
     * no limit; Graph allows 4 per mailbox). Requests beyond it wait for a
     * free slot (MP_RETRY after 30 s). Takes effect for the next request.
     * Any thread; usually called once from account_open. */
    void (*http_limit)(mp_account *acct, unsigned max);
    /* http with options (opt NULL: as http). Same ownership and threads. */
    mp_status (*http_ex)(mp_account *acct, const mp_http_request *req,
                         const mp_http_options *opt, mp_http_response *resp_r,
                         mp_error *err);

    /* push_state as an enum plus text (NULL: none; no secrets): only
     * MP_PUSH_STATE_LIVE means push is delivering, whatever the text says.
     * Shown in status as "<state>: <text>" (e.g. "reconnecting: timeout").
     * Any thread. On a 1.0 host use push_state with the same words. */
    void (*push_status)(mp_account *acct, mp_push_state state, const char *text);

    /* OAuth2 access tokens. oauth_setup (any thread; usually account_open)
     * describes the account's credentials, replacing earlier ones; MP_FATAL
     * when incomplete for the grant. oauth_token (worker threads) returns
     * a valid access token in *token_r (release with free_secret): cached
     * until shortly before it expires, one token request per account in
     * flight, a refresh token the provider rotates persisted owner-only.
     * MP_REAUTH when the provider refused the grant (invalid_grant, revoked
     * client), err "needs re-authorization: <provider's reason>": after
     * that ONE request the token URL is asked nothing more until a secret
     * file changes; the driver returns the status from its slot and the
     * host marks the account reauth with the reason (one account.status
     * event) and parks it until a reload (SIGHUP) or an API sync.
     * MP_RETRY with retry_after_ms (429/5xx honour Retry-After; no request
     * inside the window); MP_FATAL for unusable credential files or other
     * refusals (invalid_scope...). Errors never contain a secret.
     * oauth_reject: the provider answered 401 to `token`; the host drops it
     * from its cache (if still cached) so the next oauth_token asks for a
     * new one. */
    mp_status (*oauth_setup)(mp_account *acct, const mp_oauth_params *params,
                             mp_error *err);
    mp_status (*oauth_token)(mp_account *acct, char **token_r, mp_error *err);
    void (*oauth_reject)(mp_account *acct, const char *token);

    /* The cursor hint of the newest push this sync run took over for
     * `folder` (NULL: hints pushed for the whole account, e.g. a Gmail
     * historyId), or NULL when the run was not started by such a push.
     * Hints stay stored until the run that took them commits, so a crash
     * or failure never loses one. Poll slots (worker threads); host
     * memory valid until the slot returns. */
    const char *(*sync_hint)(mp_account *acct, const char *folder);

    /* The account's stored subscription (from push_enroll/push_renew), for
     * push_verify (loop thread; answers from memory). subscription_get:
     * MP_OK and *sub_r filled, or MP_SKIP when the account has none.
     * subscription_lookup: the account of this instance whose subscription
     * has `provider_id` (Graph's subscriptionId), MP_SKIP when none. Strings
     * in *sub_r are host memory valid until push_verify returns. */
    mp_status (*subscription_get)(mp_account *acct, mp_subscription *sub_r,
                                  mp_error *err);
    mp_status (*subscription_lookup)(mp_instance *inst, const char *provider_id,
                                     mp_account **acct_r, mp_subscription *sub_r,
                                     mp_error *err);

    /* ---- added in ABI 1.2 ---- */

    /* Report one result of the `check` slot (worker thread, during the
     * slot only). `name` is a short stable key ("credentials", "scopes",
     * "topic", "live_test"); `detail` is one line for the admin: what was
     * verified, or what is wrong and what to do. A name reported twice
     * replaces the earlier result. Never put a secret in either. */
    void (*check_report)(mp_check *chk, const char *name, mp_check_outcome outcome,
                         const char *detail);

    /* The instance's name: its plugins.d file name without ".yaml", the
     * <instance> of its push URL /push/<instance> (a webhook driver tells
     * the provider where to post, or checks that it does). Any thread;
     * valid for the instance's lifetime. */
    const char *(*instance_name)(mp_instance *inst);
} mp_host;

/*
 * Whether `host` offers `slot` (added in ABI 1.1), in the spirit of Redis's
 * RMAPI_FUNC_SUPPORTED: a host built for an older minor has a shorter
 * table, so a slot beyond its struct_size does not exist and is never
 * read; a slot inside it may still be NULL. A driver built for 1.1 tests
 * before calling a 1.1 slot and degrades on a 1.0 host:
 *
 *     if (MP_HOST_HAS(host, state_put))
 *         host->state_put(acct, "watch", id, err);
 *     else
 *         ... keep it in memory, re-enroll after a restart ...
 *
 * Works against every host of major 1, including 1.0 hosts.
 */
#define MP_HOST_HAS(host, slot)                                                \
    ((host) != NULL &&                                                         \
     (size_t)(host)->struct_size >=                                            \
         offsetof(mp_host, slot) + sizeof(((const mp_host *)0)->slot) &&       \
     (host)->slot != NULL)

/* ------------------------------------------------------------------------ */
/* The driver descriptor.                                                    */

typedef enum mp_push_kind {
    MP_PUSH_NONE = 0,    /* poll only                                       */
    MP_PUSH_WEBHOOK = 1, /* provider posts to /push/<instance>              */
    MP_PUSH_STREAM = 2,  /* driver keeps a connection on the loop (IDLE)   */
} mp_push_kind;

typedef struct mp_driver {
    /* Head: never changes shape. Fill with MP_DRIVER_HEAD(name). */
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t struct_size;
    const char *name; /* must equal the file name without ".so"           */

    /* Informational. */
    const char *version;
    const char *description;

    /* Keys accepted in the plugins.d file (top level) and per account. The
     * core handles `driver`, `enabled`, `accounts`, and per account `id`,
     * `folders` and `poll_interval` itself; declare them only to document
     * driver-specific meaning. NULL: none. */
    const mp_config_key *instance_keys;
    const mp_config_key *account_keys;

    /* Default incremental cadence in seconds (0: 180). */
    uint32_t poll_interval_s;
    mp_push_kind push_kind;

    /* ---- lifecycle (loop thread) ---- */

    /* Mandatory. Called once after load with the host table (keep the
     * pointer: it is the driver's only way to the host) and the instance's
     * config. `*state_r` may receive instance state. */
    mp_status (*init)(const mp_host *host, mp_instance *inst,
                      const mp_config *cfg, void **state_r, mp_error *err);
    /* Optional. Frees instance state, clears *state. */
    void (*deinit)(mp_instance *inst, void **state);

    /* Mandatory. Prepare an account from its validated config; no network.
     * MP_FATAL refuses the account with err->text shown in its status.
     * In a cluster (several daemons sharing one database) a webhook
     * driver's account is also opened on the nodes that do not hold it,
     * for push_verify only: no poll slot, push_enroll/renew/cancel or
     * fetch runs for it there, what it would record (push state, profile,
     * state_put, sync_now) is dropped, and push_hint stores the hint for
     * the holder. Such a copy is closed and opened again whenever the
     * holder changes the account's stored state or subscription, so what
     * push_verify needs must be read here (state_get) or from the host
     * (subscription_get/lookup), not learnt later from poll slots. */
    mp_status (*account_open)(mp_account *acct, const mp_config *cfg,
                              void **state_r, mp_error *err);
    /* Mandatory. Frees account state; push streams were stopped before. */
    void (*account_close)(mp_account *acct, void **state);

    /* ---- poll (worker threads) ---- */

    /* Mandatory. Report the account's folders through host->folder_add.
     * The host keeps only folders allowed by the account's `folders` list.
     * A listing that returns MP_OK is complete: a stored folder missing
     * from it was deleted at the provider, and the host takes its messages
     * out of it (message.updated with folders_removed, or message.deleted
     * where it was their only folder) and forgets it (an empty listing
     * removes nothing). A partial listing must fail instead. */
    mp_status (*list_folders)(mp_account *acct, mp_folder_sink *sink,
                              mp_error *err);

    /* Mandatory. Load the newest `max` messages of a folder not yet
     * connected, emitting MP_CHANGE_SYNCED, and commit a delta cursor that
     * covers everything after this moment plus the backfill position just
     * below the oldest message loaded (backfill_done when nothing is
     * older). max == 0 (from-now-on mode): load nothing, commit a cursor. */
    mp_status (*bootstrap)(mp_account *acct, const char *folder, uint32_t max,
                           mp_batch *batch, mp_error *err);

    /* Mandatory. Emit every change since `cursor` (from cursor_get) as
     * NEW/UPDATED/DELETED and commit the new cursor. MP_RESYNC when the
     * cursor is no longer valid. */
    mp_status (*delta)(mp_account *acct, const char *folder,
                       const char *cursor, mp_batch *batch, mp_error *err);

    /* Optional (NULL: bootstrap loads all the history the driver offers).
     * Load up to `max` messages older than `backfill_pos` as SYNCED, commit
     * the new position, stop early at batch_deadline_ms. */
    mp_status (*backfill)(mp_account *acct, const char *folder,
                          const char *backfill_pos, uint32_t max,
                          mp_batch *batch, mp_error *err);

    /* ---- fetch (worker threads) ---- */

    /* Mandatory. The raw RFC 822 message, without side effects at the
     * provider (never sets \Seen). MP_SKIP when it no longer exists. */
    mp_status (*fetch)(mp_account *acct, const mp_message_ref *msg,
                       mp_raw *raw_r, mp_error *err);

    /* ---- push: webhook providers (push_kind == MP_PUSH_WEBHOOK) ---- */

    /* Worker threads. Create / renew / remove the provider subscription.
     * enroll and renew fill *sub_r (strings valid until the call returns). */
    mp_status (*push_enroll)(mp_account *acct, mp_subscription *sub_r,
                             mp_error *err);
    mp_status (*push_renew)(mp_account *acct, const mp_subscription *current,
                            mp_subscription *sub_r, mp_error *err);
    mp_status (*push_cancel)(mp_account *acct, const mp_subscription *current,
                             mp_error *err);

    /* Loop thread, must answer within milliseconds. Verify the request
     * (signature, token, client state) BEFORE parsing the body, then record
     * hints with host->push_hint and choose the answer with push_reply.
     * Return MP_OK for an accepted request, MP_SKIP for a request that is
     * well-formed but not for us (answered 2xx, nothing recorded), MP_FATAL
     * for a rejected one (answered 4xx unless push_reply chose otherwise;
     * nothing recorded). */
    mp_status (*push_verify)(mp_instance *inst, const mp_push_request *req,
                             mp_push_reply *reply, mp_error *err);

    /* ---- push: stream providers (push_kind == MP_PUSH_STREAM) ---- */

    /* Loop thread. Start / stop the account's push connections using the
     * host's fd watches and timers; on a change call host->sync_now. */
    mp_status (*push_start)(mp_account *acct, mp_error *err);
    void (*push_stop)(mp_account *acct);

    /* ---- optional extras ---- */

    /* Worker thread, optional. Re-detect what the provider offers (IMAP
     * capabilities) now, and report it with host->set_profile. The host
     * calls it when an admin asks (POST /v1/accounts/{id}/probe), before
     * the next sync of that account. */
    mp_status (*probe)(mp_account *acct, mp_error *err);

    /* ---- added in ABI 1.1 ---- */

    /* Optional (worker thread): for providers whose change log covers the
     * whole mailbox (Gmail's history). When set, a sync run calls it ONCE
     * per account with the account-level cursor (account_cursor; NULL
     * before the first one was committed) instead of `delta` per folder
     * (bootstrap still runs per folder; the folder cursor it commits then
     * only marks the folder connected, and `delta` is never called; a
     * run for some folders, started by a push naming one, calls it once
     * too). The batch belongs to no folder: emit changes with
     * batch_change_folders (now_in, or added/removed; batch_change of
     * anything but DELETED is MP_FATAL), DELETED removes the message from
     * every folder, and commit the new account cursor with
     * batch_account_cursor before batch_commit (its cursor and backfill
     * arguments must be NULL/0, else MP_FATAL). MP_RESYNC: the account
     * cursor is gone at the provider; the host clears it and every
     * folder's cursor and bootstraps each folder again (one folder.reset
     * each, stored messages fold in without message.new). */
    mp_status (*account_delta)(mp_account *acct, const char *cursor, mp_batch *batch,
                               mp_error *err);

    /* ---- added in ABI 1.2 ---- */

    /* Optional (worker thread): an admin's preflight, run when asked
     * (POST /v1/accounts/{id}/check; `mailpulsectl check`), never with a
     * sync of the same account at once. Verify what only the provider can
     * tell with this account's credentials (the token, the profile, the
     * granted scopes, the push resources the provider needs) and report
     * each result with host->check_report. Return MP_OK when the checks
     * ran, whatever they found (a broken setup is reported, not
     * returned); another status only when checking itself failed (the
     * admin sees the check as "error" with err->text, and the results
     * reported so far). The account's status and syncs are never touched
     * by a check, whatever it returns: it also runs while the account's
     * syncs are parked (reauth) or backing off, which is when an admin
     * needs it. The host keeps at most 64 results, cuts names at 64 and
     * details at 1024 bytes and replaces control characters.
     * MP_CHECK_LIVE in `flags`: the admin also asked for a live test. If
     * the credentials allow it, create ONE test message in the account's
     * inbox through the provider (the only time a driver writes to a
     * mailbox) and report "live_test" OK with its provider id as the
     * detail's first word; otherwise report "live_test" SKIP saying that
     * a message must be sent by hand. The loader reads this slot only
     * from a descriptor whose struct_size covers it. */
    mp_status (*check)(mp_account *acct, unsigned flags, mp_check *chk, mp_error *err);
} mp_driver;

#ifdef __cplusplus
}
#endif

#endif /* MAILPULSE_DRIVER_H */

/*
 * emailengine.so internals shared by its steps: instance and account
 * state, the REST layer (ee_api.c), the sync slots (ee_sync.c, ee_delta.c)
 * and push (ee_push.c). The driver is read-only toward EmailEngine: it
 * lists and reads, never changes a mailbox or EE's settings.
 *
 * Built only against the installed SDK (<mailpulse/driver.h>) plus
 * jansson and OpenSSL: HTTP goes through the host (http_ex), so it
 * inherits the host's TLS policy, limits and proxy settings.
 */
#ifndef EE_DRIVER_H
#define EE_DRIVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

#include "ee_cursor.h"
#include "ee_dedupe.h"
#include "ee_json.h"

/* The host table, set by init (the same for every instance). */
extern const mp_host *ee_host;

typedef struct ee_account ee_account;

typedef struct ee_instance {
    mp_instance *inst;
    char *url;            /* EmailEngine base URL, no trailing '/'         */
    char *token;          /* API token (host secret memory)                */
    size_t token_len;
    char *secret;         /* serviceSecret (host secret memory)            */
    size_t secret_len;
    /* Loop thread only (account_open/close, push_verify). */
    ee_dedupe *dedupe;
    ee_account **accts;
    size_t n_accts, cap_accts;
    int64_t unknown_logged_ms;
} ee_instance;

struct ee_account {
    mp_account *acct;
    ee_instance *inst;
    char *ee_account;     /* the account id in EmailEngine                 */
    char *ee_path;        /* the same, percent-encoded for URLs            */
    /* Set on the loop thread when a verified webhook for the account
     * arrives, read by push_enroll on a worker. */
    atomic_int push_seen;
    /* EE said the account is not usable (authenticationError,
     * connectError, disconnected...):
     * until down_until_ms, requests for it fail with the same status and
     * text without asking EE again, so a run over many folders costs one
     * request, not one per folder. Guarded by `lock` (fetch may run beside
     * a sync). */
    pthread_mutex_t lock;
    int64_t down_until_ms;
    mp_status down_status;
    uint32_t down_retry_ms;
    char down_text[512];
    /* Sync slots only (never two at once for an account): the newest
     * mailbox list and when it was fetched (see ee_cursor.h counted_ms). */
    ee_mailboxes boxes;
    int64_t boxes_ms;
};

/* A full id and flag reconciliation of a folder at least this often. */
#define EE_SWEEP_MS (15 * 60 * 1000)
/* Listing page sizes: the newest page compared on every delta, and the
 * pages of a full listing (EE's maximum). */
#define EE_NEWEST_PAGE 100u
#define EE_FULL_PAGE 1000u
/* Retry waits for account states EE itself is retrying. */
#define EE_RETRY_CONNECT_MS 60000u
#define EE_RETRY_PAUSED_MS 300000u
/* How long one "not usable" answer stands for the account (one run). */
#define EE_DOWN_GATE_MS 5000
/* A mailbox list serves the folders of one sync run, never longer. */
#define EE_MAILBOX_REUSE_MS 30000

void ee_log(ee_account *a, mp_log_level level, const char *fmt, ...) MP_PRINTF(3, 4);

/* Percent-encode all but unreserved characters; never NULL. */
char *ee_escape(const char *s);

/* ---- ee_api.c: REST calls; each maps EE's answer to a status ---- */

/* GET <url><path_query> with the token. MP_OK with *resp_r (2xx) to
 * release with http_free; else a status and err (404 without a code is
 * MP_SKIP only when `missing_ok`, else the account is unknown: MP_FATAL). */
mp_status ee_get(ee_account *a, const char *path_query, int missing_ok, const char *what,
                 mp_http_response *resp_r, mp_error *err);
/* Forget a remembered refusal (a webhook says EE works for the account). */
void ee_ungate(ee_account *a);
/* The account's state at EE as a status: connected/syncing/connecting
 * MP_OK; authenticationError MP_REAUTH; connectError, disconnected, init
 * MP_RETRY with a wait; paused MP_RETRY; unset MP_FATAL. */
mp_status ee_account_check(ee_account *a, mp_error *err);
/* The mailbox list: the one held when it was fetched after `newer_than`
 * (ms) and less than EE_MAILBOX_REUSE_MS ago, else a new one (the
 * account's state is checked first). Sync slots only. */
mp_status ee_mailboxes_get(ee_account *a, int64_t newer_than, const ee_mailboxes **boxes_r,
                           mp_error *err);
/* A new mailbox list into *out (ee_mailboxes_clear it), leaving the
 * sync's one alone (the check slot). */
mp_status ee_mailboxes_fetch(ee_account *a, ee_mailboxes *out, mp_error *err);
/* One listing page (0-based, newest first). */
mp_status ee_page_get(ee_account *a, const char *folder, uint32_t page, uint32_t size,
                      ee_page *out, mp_error *err);

/* ---- slots ---- */
mp_status ee_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err);
mp_status ee_bootstrap(mp_account *acct, const char *folder, uint32_t max, mp_batch *batch,
                       mp_error *err);
mp_status ee_backfill(mp_account *acct, const char *folder, const char *pos, uint32_t max,
                      mp_batch *batch, mp_error *err);
mp_status ee_delta(mp_account *acct, const char *folder, const char *cursor, mp_batch *batch,
                   mp_error *err);
mp_status ee_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r, mp_error *err);
mp_status ee_push_verify(mp_instance *inst, const mp_push_request *req, mp_push_reply *reply,
                         mp_error *err);
mp_status ee_push_enroll(mp_account *acct, mp_subscription *sub_r, mp_error *err);
mp_status ee_push_renew(mp_account *acct, const mp_subscription *current,
                        mp_subscription *sub_r, mp_error *err);
mp_status ee_push_cancel(mp_account *acct, const mp_subscription *current, mp_error *err);
mp_status ee_check(mp_account *acct, unsigned flags, mp_check *chk, mp_error *err);

/* ---- ee_stored.c: the folder's stored messages, sorted by id ---- */
typedef struct ee_stored {
    char *id;
    char *flags;      /* "" when none                                      */
    char *message_id; /* NULL when none                                    */
    uint32_t uid;
    int seen;         /* set by the caller while comparing                 */
} ee_stored;

typedef struct ee_stored_set {
    ee_stored *v;
    size_t n, cap;
} ee_stored_set;

mp_status ee_stored_load(ee_account *a, const char *folder, ee_stored_set *s, mp_error *err);
ee_stored *ee_stored_find(const ee_stored_set *s, const char *id);
void ee_stored_clear(ee_stored_set *s);

/* The summary change for a listing entry. */
void ee_change_of(const ee_msg *m, mp_change_kind kind, mp_change *ch);

#endif

/*
 * gmail.so internals shared by its steps: instance and account state, the
 * HTTP layer (gmail_http.c), the API calls (gmail_api.c) and the slots
 * (gmail_folders.c, gmail_bootstrap.c, gmail_delta.c, gmail_fetch.c).
 * The driver is read-only: it never calls a Gmail method that changes the
 * mailbox, except the one test message an admin asks for (gmail_check.c).
 */
#ifndef GMAIL_DRIVER_H
#define GMAIL_DRIVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

#include "gmail_config.h"
#include "gmail_labels.h"
#include "gmail_message.h"
#include "gmail_quota.h"

/* The host table, set by init (the same for every instance). */
extern const mp_host *gmail_host;

typedef struct gmail_instance {
    char *client_id;
    char *client_secret_file; /* path, NULL for a public client            */
    char *api_url, *api_path; /* base URL and its path part ("" for none)  */
    char *token_url, *pubsub_url, *certs_url;
    gmail_push_mode push;
    char *topic, *subscription, *push_audience, *push_service_account;
    char **watch_labels;
    size_t n_watch_labels;
    /* Push runtime (gmail_push.h); NULL when push is off. */
    struct gmail_push_rt *rt;
} gmail_instance;

typedef struct gmail_account {
    mp_account *acct;
    const gmail_instance *inst;
    char *email;
    /* Guards quota, backoff_ms and batch_size: fetch runs beside a sync. */
    pthread_mutex_t lock;
    gmail_quota quota;
    uint32_t backoff_ms;     /* next wait after a 429 without Retry-After  */
    unsigned batch_size;     /* adaptive calls per batch, 1..GMAIL_BATCH_MAX */
    /* The label table, touched only by poll slots (one at a time). */
    gmail_labels labels;
    int service_account;     /* credentials: service_account_file, not a
                                user's refresh token                       */
    int labels_loaded;
    /* The last watch (gmail_watch.c), under lock: its historyId (lent to
     * the host as the subscription's cursor hint) and real expiry. */
    char *watch_history;
    int64_t watch_expiration_ms;
} gmail_account;

/* ---- HTTP layer (gmail_http.c) ---- */

typedef struct gmail_call {
    const char *method;       /* "GET" or "POST"                          */
    const char *url;          /* absolute                                  */
    const char *content_type; /* of body, or NULL                          */
    const uint8_t *body;
    size_t body_len;
    uint32_t units;           /* quota units this call costs               */
    size_t max_response;      /* 0: the host's default bound                */
    int64_t deadline_ms;      /* wait for quota at most until then (0: 5 s) */
    int skip_on_400;          /* 400 is MP_SKIP (a stale page token), not fatal */
    int any_status;           /* every answer after the 401 retry is MP_OK with
                                 *resp_r, its status for the caller to read
                                 (the preflight reports what it saw)       */
} gmail_call;

/* One authorized call: quota admitted, a token from oauth_token, a 401
 * answered by oauth_reject and one retry. MP_OK with *resp_r for 2xx
 * (release with gmail_host->http_free); MP_SKIP for 404 (the call site
 * decides what it means); MP_REAUTH for 401 twice; MP_RETRY with
 * retry_after_ms for 429, 403 rate limits and 5xx (the budget stays closed
 * until then); MP_FATAL for other answers. err->text names `what`. */
mp_status gmail_http_call(gmail_account *a, const gmail_call *c, const char *what,
                          mp_http_response *resp_r, mp_error *err);

/* The admin's preflight, the `check` slot (gmail_check.c). */
mp_status gmail_check(mp_account *acct, unsigned flags, mp_check *chk, mp_error *err);

/* The account's setup parameters (no secrets) as the JSON object for
 * host->set_profile, with the push endpoint a check found (NULL: none).
 * malloc'd. */
char *gmail_profile_json(const gmail_account *a, const char *push_endpoint);

/* Google's error answer {"error":{"code","message","errors":[{"reason"}],
 * "status"}} (or OAuth's {"error":"..."}): its reason (or status) and
 * message into the buffers ("" when absent). */
void gmail_google_error(const char *body, size_t len, char *reason, size_t rcap,
                        char *msg, size_t mcap);

/* The same mapping for one part of a batch answer (status already known). */
mp_status gmail_http_status(gmail_account *a, long status, const char *body, size_t len,
                            uint32_t retry_after_ms, const char *what, mp_error *err);

/* The adaptive batch size: after a batch with failures, halve it; after a
 * clean one, double it back towards GMAIL_BATCH_MAX. */
unsigned gmail_batch_size(gmail_account *a);
void gmail_batch_feedback(gmail_account *a, int clean);

/* ---- API calls (gmail_api.c) ---- */

/* "{api_url}/gmail/v1/users/me/<rest>" into a malloc'd string. */
char *gmail_api_url(const gmail_account *a, const char *rest);

/* users.getProfile: the mailbox's current historyId (malloc'd). */
mp_status gmail_get_profile(gmail_account *a, char **history_id_r, mp_error *err);

/* labels.list into a->labels. */
mp_status gmail_load_labels(gmail_account *a, mp_error *err);
/* The table, loading it on first use or when `refresh` is nonzero. */
mp_status gmail_labels_ready(gmail_account *a, int refresh, mp_error *err);

/* messages.list of label `label_id`, at most `max` ids (<= 500) from
 * `page_token` (NULL: the newest). *ids_r is a malloc'd array of malloc'd
 * ids; *next_r the next page token or NULL. MP_SKIP when Gmail refuses
 * `page_token` (a stale backfill position). */
mp_status gmail_list_messages(gmail_account *a, const char *label_id, const char *page_token,
                              uint32_t max, char ***ids_r, size_t *n_r, char **next_r,
                              mp_error *err);

/* Metadata of `ids` through the batch endpoint, in adaptive batches.
 * out[i] is filled for every id that exists; gone[i] is set for those that
 * answered 404. On MP_OK every id is either filled or gone. */
mp_status gmail_get_metadata(gmail_account *a, const char *const *ids, size_t n,
                             gmail_msg *out, int *gone, mp_error *err);

void gmail_free_ids(char **ids, size_t n);

/* With sync.fetch_bodies (the host's core_setting): the raw message of
 * every msgs[i] not skipped (skip may be NULL) into msgs[i].raw, through
 * the batch endpoint with format=raw, at the quota cost of a messages.get
 * each, in batches bounded by the sizes the metadata estimated. A message
 * gone meanwhile or over GMAIL_RAW_MAX_BYTES keeps no body. Without the
 * setting: MP_OK at once. */
mp_status gmail_get_bodies(gmail_account *a, gmail_msg *msgs, const int *skip, size_t n,
                           mp_error *err);

/* Gmail accepts messages up to 50 MB (base64 in JSON: 4/3 of it). */
#define GMAIL_RAW_MAX_BYTES ((size_t)64 << 20)
#define GMAIL_RAW_MAX_RESPONSE ((size_t)96 << 20)
/* Estimated answer bytes one format=raw batch is filled up to (one
 * larger message goes alone). */
#define GMAIL_RAW_BATCH_BYTES ((int64_t)8 << 20)

/* A messages.get format=raw answer (JSON with base64url "raw", padded or
 * not) decoded into *data_r (from `alloc`, `len_r` bytes). Returns 0; 1
 * when the message is larger than GMAIL_RAW_MAX_BYTES (nothing kept); with
 * *error_r (malloc'd): -1 for an answer without "raw" (or no memory), -2
 * for a "raw" that is not base64url (retrying will not help). */
int gmail_raw_decode(const char *json, size_t len, void *(*alloc)(size_t),
                     void (*dealloc)(void *), uint8_t **data_r, size_t *len_r,
                     char **error_r);

/* ---- emission helpers (gmail_api.c) ---- */

/* Emit `kind` for a message with its memberships as `now_in` = its folder
 * labels (labels it does not know are refreshed once). */
mp_status gmail_emit_message(gmail_account *a, mp_batch *batch, mp_change_kind kind,
                             const gmail_msg *m, mp_error *err);

/* ---- slots ---- */

mp_status gmail_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err);
mp_status gmail_bootstrap(mp_account *acct, const char *folder, uint32_t max,
                          mp_batch *batch, mp_error *err);
mp_status gmail_backfill(mp_account *acct, const char *folder, const char *backfill_pos,
                         uint32_t max, mp_batch *batch, mp_error *err);
mp_status gmail_delta(mp_account *acct, const char *folder, const char *cursor,
                      mp_batch *batch, mp_error *err);
mp_status gmail_account_delta(mp_account *acct, const char *cursor, mp_batch *batch,
                              mp_error *err);
mp_status gmail_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                      mp_error *err);

/* The label id behind folder name `folder`, or NULL. */
const char *gmail_folder_label(const gmail_account *a, const char *folder);

#endif /* GMAIL_DRIVER_H */

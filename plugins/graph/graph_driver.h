/*
 * graph.so internals shared by its steps: instance and account state, the
 * HTTP layer (graph_http.c), the API calls (graph_api.c, graph_batch.c),
 * the folder table (graph_folders.c) and the slots (graph_bootstrap.c,
 * graph_delta.c, graph_fetch.c). The driver is read-only: it never calls a
 * Graph method that changes the mailbox, except the one test message an
 * admin asks for with `check --live` (graph_check.c).
 *
 * Every request names the mailbox (/users/{user}/...), asks for immutable
 * ids (Prefer: IdType="ImmutableId": a message keeps its id when it moves,
 * so a move is an update of its folder, never a delete plus a new) and
 * goes through graph_http_call.
 */
#ifndef GRAPH_DRIVER_H
#define GRAPH_DRIVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <mailpulse/driver.h>

#include "graph_budget.h"
#include "graph_config.h"
#include "graph_fstate.h"
#include "graph_json.h"
#include "graph_push.h"

/* The host table, set by init (the same for every instance). */
extern const mp_host *graph_host;

/* Outlook's limit of concurrent requests per app and mailbox. */
#define GRAPH_HTTP_LIMIT 4
/* JSON $batch takes at most 20 requests. */
#define GRAPH_BATCH_MAX 20

typedef struct graph_instance {
    char *tenant;
    char *client_id;
    char *client_secret_file; /* path; NULL for a public (delegated) client */
    graph_auth auth;
    char *public_url;         /* NULL: no push (polling)                   */
    int64_t subscription_minutes;
    char *api_url;            /* without trailing '/'                     */
    char *login_url;
    char *token_url;          /* <login_url>/<tenant>/oauth2/v2.0/token    */
    /* Push: the URLs, the lifetime and the index of open accounts for
     * push_verify (graph_push_inst, graph_push.h). */
    graph_push_inst *push;
} graph_instance;

/* The well-known folders and their roles. */
typedef struct graph_wellknown {
    const char *name; /* Graph's well-known name                           */
    mp_folder_role role;
} graph_wellknown;
#define GRAPH_N_WELLKNOWN 6
extern const graph_wellknown graph_wellknown_folders[GRAPH_N_WELLKNOWN];

typedef struct graph_folder {
    char *id;
    char *path; /* "Parent/Child": the folder's name at the host         */
    mp_folder_role role;
} graph_folder;

typedef struct graph_account {
    mp_account *acct;
    const graph_instance *inst;
    char *user;      /* as configured                                     */
    char *user_path; /* URL-escaped, for /users/{user}                    */
    /* Guards budget, backoff_ms and slots: fetch runs beside a sync. */
    pthread_mutex_t lock;
    pthread_cond_t slot_free;
    graph_budget budget;
    uint32_t backoff_ms; /* next wait after a 429/503 without Retry-After  */
    /* Mailbox slots in use (GRAPH_HTTP_LIMIT): a request takes one, a
     * $batch as many parts as Outlook runs at once (up to 4). */
    unsigned slots;
    /* Folder table, touched only by poll slots (one at a time). */
    graph_folder *folders;
    size_t n_folders;
    int folders_loaded;
    char *wellknown_id[GRAPH_N_WELLKNOWN]; /* "" when the mailbox has none */
    int wellknown_loaded;
    /* Push: the subscription set and lifecycle queue (graph_push.h),
     * guarded by the instance's push lock; NULL once closed. */
    graph_push_acct *push;
} graph_account;

/* ---- HTTP layer (graph_http.c) ---- */

typedef struct graph_call {
    const char *method;       /* "GET" or "POST"                           */
    const char *url;          /* absolute, under the instance's api_url    */
    const char *content_type; /* of body, or NULL                          */
    const uint8_t *body;
    size_t body_len;
    uint32_t requests;        /* budget charge (a $batch of n: n + 1)      */
    unsigned weight;          /* mailbox slots it holds (0: 1; a $batch of
                                 n parts: min(n, GRAPH_HTTP_LIMIT))         */
    uint32_t page_size;       /* nonzero: Prefer odata.maxpagesize=<n>     */
    size_t max_response;      /* 0: the host's default bound                */
    int64_t deadline_ms;      /* wait for the budget at most until then     */
    int raw;                  /* the answer is not JSON (a message's MIME)  */
    int skip_on_400;          /* 400 is MP_SKIP (this one item is unusable) */
    int any_status;           /* MP_OK with whatever Graph answered once the
                                 token was sent (a 401 is still retried once
                                 with a fresh token): the preflight reads
                                 resp_r->status itself                     */
} graph_call;

/* One authorized request: budget admitted, a token from oauth_token, the
 * Prefer header, a 401 answered by oauth_reject and one retry. MP_OK with
 * *resp_r for 2xx (release with graph_host->http_free); MP_SKIP for 404
 * (the call site decides what it means); MP_RESYNC for a delta state Graph
 * no longer has (410, or an error code saying so); MP_REAUTH for 401 twice
 * or a refused grant; MP_RETRY with retry_after_ms for 429/503 (the budget
 * stays closed until then), 5xx and transport failures; MP_FATAL for other
 * answers (403: a missing permission). err->text names `what`. */
mp_status graph_http_call(graph_account *a, const graph_call *c, const char *what,
                          mp_http_response *resp_r, mp_error *err);

/* The same mapping for a status already known (a $batch part). */
mp_status graph_http_status(graph_account *a, long status, const char *body, size_t len,
                            uint32_t retry_after_ms, const char *what, mp_error *err);

/* ---- API calls (graph_api.c) ---- */

/* "{api_url}/users/{user}/<rest>" (malloc'd); rest is already escaped. */
char *graph_user_url(const graph_account *a, const char *rest);
/* `rest` with its path relative to the API root ("/users/..."), for a
 * $batch request's url (malloc'd). */
char *graph_batch_path(const graph_account *a, const char *rest);
/* Percent-escape a value for a path segment or a query (malloc'd). */
char *graph_escape(const char *s);
/* Whether `url` (a nextLink, deltaLink or stored cursor) lies under the
 * instance's api_url, so the token is never sent anywhere else. */
int graph_link_ok(const graph_account *a, const char *url);

/* GET one page of messages (list or delta) into *p. */
mp_status graph_get_page(graph_account *a, const char *url, uint32_t page_size,
                         const char *what, graph_page *p, mp_error *err);

/* Read the summaries of `ids` with JSON $batch (GRAPH_BATCH_MAX per
 * request). out[i] is filled for each id that exists, gone[i] set for those
 * answering 404; on MP_OK every id is one or the other. */
mp_status graph_read_messages(graph_account *a, const char *const *ids, size_t n,
                              graph_msg *out, int *gone, mp_error *err);

/* Emit message `m` (its folder is `folder`, by name) as `kind`, with its
 * memberships as exactly that folder; an incomplete summary is queued in
 * `fs` for repair (when given). */
mp_status graph_emit(graph_account *a, mp_batch *batch, mp_change_kind kind,
                     const char *folder, const graph_msg *m, graph_fstate *fs,
                     mp_error *err);

/* Message `m` left folder `folder` (by name) for `to` (NULL: unknown):
 * one UPDATED leaving it, entering `to` when the host syncs it (else just
 * leaving: its last folder left is a delete). Never a delete plus a new. */
mp_status graph_emit_moved(graph_account *a, mp_batch *batch, const char *folder,
                           const graph_folder *to, const graph_msg *m, mp_error *err);

/* The folder's record (fresh when none). */
mp_status graph_fstate_load(graph_account *a, const char *folder, graph_fstate *f,
                            mp_error *err);
/* Stage it for the batch's next commit. */
mp_status graph_fstate_stage(graph_account *a, mp_batch *batch, const char *folder,
                             const graph_fstate *f, mp_error *err);

void graph_log(graph_account *a, mp_log_level level, const char *fmt, ...) MP_PRINTF(3, 4);

/* ---- folder table (graph_folders.c) ---- */

/* Load the table (mailFolders, recursively, and the well-known ids). */
mp_status graph_folders_load(graph_account *a, mp_error *err);
/* The folder named `name`, loading or refreshing the table once when it
 * is not known. MP_RETRY when it does not exist (any more). */
mp_status graph_folder_named(graph_account *a, const char *name, const graph_folder **f_r,
                             mp_error *err);
/* The folder with id `id`, or NULL (no refresh). */
const graph_folder *graph_folder_by_id(const graph_account *a, const char *id);
void graph_folders_clear(graph_account *a);

/* ---- the coverage walk (graph_bootstrap.c) ---- */

/* Advance the unfiltered delta of `f` (ids and flags) by pages until its
 * deltaLink (fs->cover becomes GRAPH_COVER_WALKED), `max_pages` pages, or
 * the deadline (0: none), emitting each listed message's flags as UPDATED
 * into `batch` (stored ones take them; others are ignored by the host);
 * *pages_r counts the pages read. */
mp_status graph_walk(graph_account *a, mp_batch *batch, const graph_folder *f,
                     graph_fstate *fs, unsigned max_pages, int64_t deadline_ms,
                     unsigned *pages_r, mp_error *err);

/* ---- slots ---- */

mp_status graph_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err);
mp_status graph_bootstrap(mp_account *acct, const char *folder, uint32_t max,
                          mp_batch *batch, mp_error *err);
mp_status graph_backfill(mp_account *acct, const char *folder, const char *backfill_pos,
                         uint32_t max, mp_batch *batch, mp_error *err);
mp_status graph_delta(mp_account *acct, const char *folder, const char *cursor,
                      mp_batch *batch, mp_error *err);
mp_status graph_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                      mp_error *err);

/* The admin's preflight, the `check` slot (graph_check.c). */
mp_status graph_check(mp_account *acct, unsigned flags, mp_check *chk, mp_error *err);

/* The account's non-secret setup parameters as a new JSON object (tenant,
 * user, auth, client_id, public_url, instance, notification_url), the
 * base of the profile the driver publishes with set_profile
 * (graph_profile.c); `mailpulsectl graph-setup` reads them there. */
json_t *graph_profile_base(const graph_account *a);

/* Check the next slice of the folder's stored messages against Graph
 * once the delta covers all of its mail (graph_verify.c). */
mp_status graph_verify_step(graph_account *a, mp_batch *batch, const char *fid,
                            const char *folder, graph_fstate *fs, mp_error *err);

/* Re-read the folder's due repairs and emit what became complete
 * (graph_repair.c). */
mp_status graph_repair_run(graph_account *a, mp_batch *batch, const char *fid,
                           const char *folder, graph_fstate *fs, mp_error *err);

#endif /* GRAPH_DRIVER_H */

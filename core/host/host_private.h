/*
 * Inside the host layer only (tests/check_source.sh keeps it so): the
 * definitions behind the SDK's opaque host objects and the host table's
 * slots, shared by host*.c. The daemon uses host.h.
 */
#ifndef MP_HOST_PRIVATE_H
#define MP_HOST_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

#include "host/host.h"
#include "host/host_http.h"
#include "host/host_objects.h"
#include "store/store.h"

/* The owner's services for an account or instance. */
static inline const mphost_env *mphost_env_of(const mp_account *acct)
{
    return acct->inst->env;
}

/* The calling thread's store connection for `acct`'s owner, or NULL. */
static inline mps_store *mphost_store(const mp_account *acct)
{
    const mphost_env *env = mphost_env_of(acct);
    return env->store(env->owner);
}

/* One poll-slot call's batch. */
struct mp_batch {
    struct mp_account *acct;
    const mphost_env *env;
    mphost_batch_params p;    /* as begun                                     */
    mps_batch *staged;
    mphost_batch_stats stats;
    struct mph_writeback *writeback; /* host_writeback.c; NULL until used     */
};

struct mp_folder_sink {
    char **names;
    int *roles;
    size_t n, cap;
    /* Open-addressing hash index of names (slot: index + 1, 0 empty), so
     * a LIST of many folders is de-duplicated in linear time. */
    size_t *slots;
    size_t n_slots; /* a power of two, at least twice n */
};

struct mp_push_reply {
    int set;
    int status;
    char *content_type;
    char *body;
    size_t len;
};

/* mp_push_request.host_private points to this. */
typedef struct mphost_push_private {
    const char *(*header)(void *ctx, const char *name);
    void *ctx;
} mphost_push_private;

/* Keep `s` (malloc'd, may be NULL) until mphost_call_end, which wipes
 * it before freeing it (secrets may go there too); returns it. */
const char *mphost_arena_keep(char *s);
/* The ABI 1.1 subscription slots (host_subscription.c). */
mp_status mphost_subscription_get(mp_account *acct, mp_subscription *sub_r, mp_error *err);
mp_status mphost_subscription_lookup(mp_instance *inst, const char *provider_id,
                                     mp_account **acct_r, mp_subscription *sub_r,
                                     mp_error *err);


/* Host table slots defined across host_*.c. */
mp_status mphost_batch_change(mp_batch *batch, const mp_change *change, mp_error *err);
mp_status mphost_batch_commit(mp_batch *batch, const char *cursor, const char *backfill_pos,
                           int backfill_done, mp_error *err);
void mphost_batch_reset(mp_batch *batch, const char *reason);
/* For the ABI 1.1 slots. A change with its
 * folder memberships (mps_batch_add_in), checked and bounded as
 * batch_change is (history is never new mail). The account-level cursor
 * and driver state records staged for the batch's next commit by the
 * driver (never by a write-behind commit: they wait for the driver's own,
 * like a folder cursor); a record out of bounds is MP_FATAL at once. */
mp_status mphost_batch_change_in(mp_batch *batch, const mp_change *change,
                                 const mps_membership *mem, mp_error *err);
void mphost_batch_account_cursor(mp_batch *batch, const char *cursor);
mp_status mphost_batch_state(mp_batch *batch, const char *key, const char *value,
                             mp_error *err);
/* The batch_change_folders slot: mp_folders mapped to mps_membership. */
mp_status mphost_batch_change_folders(mp_batch *batch, const mp_change *change,
                                      const mp_folders *folders, mp_error *err);

/* Write-behind (host_writeback.c). When a batch reaches the ingest bound,
 * mphost_writeback_start() hands its staged changes to a helper thread
 * (with its own store connection) to commit without a cursor, and gives
 * the batch a fresh staging area; at most one such commit is in flight
 * (start waits for the previous one). mphost_writeback_wait() waits for it
 * and returns its outcome (MP_RETRY with the reason when it failed; MP_OK
 * when there was none); every commit with a cursor waits first.
 * mphost_writeback_end() stops the thread; wait before it, so that no
 * failure goes unreported. */
mp_status mphost_writeback_start(mp_batch *batch, mp_error *err);
mp_status mphost_writeback_wait(mp_batch *batch, mp_error *err);
void mphost_writeback_end(mp_batch *batch);
int64_t mphost_batch_deadline_ms(mp_batch *batch);
/* The `http` slot; the account id is its limit key (host_http.h). */
mp_status mphost_http(mp_account *acct, const mp_http_request *req,
                      mp_http_response *resp_r, mp_error *err);
/* The ABI 1.1 http slots (host_http.c): the limit keyed by account id,
 * and http with options. */
void mphost_http_limit(mp_account *acct, unsigned max);
mp_status mphost_http_ex(mp_account *acct, const mp_http_request *req,
                         const mp_http_options *opt, mp_http_response *resp_r,
                         mp_error *err);
mp_timer *mphost_timer_add(mp_account *acct, uint32_t after_ms, mp_timer_cb cb, void *arg);
void mphost_timer_cancel(mp_timer **timer);
mp_watch *mphost_watch_fd(mp_account *acct, int fd, unsigned events, mp_watch_cb cb,
                       void *arg);
void mphost_watch_update(mp_watch *watch, unsigned events);
void mphost_watch_cancel(mp_watch **watch);

/* The sync_hint slot (host_push.c): the newest lent hint's cursor for
 * `folder` (NULL: account-wide), or NULL. */
const char *mphost_sync_hint(mp_account *acct, const char *folder);

#endif

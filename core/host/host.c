/* The host services table handed to drivers: logging, config, secrets,
 * account accessors, cursors, push hints. Batches are in host_batch.c,
 * timers and fd watches in host_loop.c, HTTP in host_http.c. */
#include "host/host_private.h"
#include "host/host_oauth.h"
#include "host/host_push_status.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config/config.h"
#include "util/fdlimit.h"
#include "util/log.h"
#include "util/util.h"

/* core_setting has no context: it reads what the owner published. */
static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;
static mphost_settings settings;

void mphost_publish_settings(const mphost_settings *s)
{
    pthread_mutex_lock(&settings_lock);
    settings = *s;
    pthread_mutex_unlock(&settings_lock);
}

/* ---- per-call arena ---- */

static __thread char **arena;
static __thread size_t arena_n, arena_cap;

const char *mphost_arena_keep(char *s)
{
    if (s == NULL)
        return NULL;
    if (arena_n == arena_cap) {
        arena_cap = arena_cap ? arena_cap * 2 : 8;
        arena = mpu_realloc(arena, arena_cap * sizeof *arena);
    }
    arena[arena_n++] = s;
    return s;
}

void mphost_call_end(void)
{
    /* Wiped first: the arena also carries secrets (subscription_get). */
    for (size_t i = 0; i < arena_n; i++)
        mpu_secret_free(&arena[i]);
    /* The array goes too: worker threads exit without a hook into this file,
     * and a few bytes reallocated per driver call cost nothing. */
    free(arena);
    arena = NULL;
    arena_n = 0;
    arena_cap = 0;
}

/* ---- logging ---- */

static void host_log(mp_instance *inst, mp_account *acct, mp_log_level level,
                     const char *fmt, ...) MP_PRINTF(4, 5);
static void host_log(mp_instance *inst, mp_account *acct, mp_log_level level,
                     const char *fmt, ...)
{
    char scope[200];
    if (acct != NULL)
        snprintf(scope, sizeof scope, "%s/%s", acct->inst->name, acct->id);
    else if (inst != NULL)
        snprintf(scope, sizeof scope, "%s", inst->name);
    else
        snprintf(scope, sizeof scope, "driver");
    va_list ap;
    va_start(ap, fmt);
    mpu_logv(level, scope, fmt, ap);
    va_end(ap);
}

static void *host_alloc(size_t size)
{
    return mpu_malloc(size);
}

static void host_free(void *ptr)
{
    free(ptr);
}

/* ---- config and secrets ---- */

static const char *host_config_string(const mp_config *cfg, const char *key)
{
    return mpc_string(cfg, key);
}

static int64_t host_config_int(const mp_config *cfg, const char *key)
{
    return mpc_int(cfg, key);
}

static int host_config_bool(const mp_config *cfg, const char *key)
{
    return mpc_bool(cfg, key);
}

static size_t host_config_list_len(const mp_config *cfg, const char *key)
{
    return mpc_list_len(cfg, key);
}

static const char *host_config_list_string(const mp_config *cfg, const char *key,
                                           size_t index)
{
    return mpc_list_string(cfg, key, index);
}

static mp_status host_read_secret(const mp_config *cfg, const char *key,
                                  char **secret_r, size_t *len_r, mp_error *err)
{
    *secret_r = NULL;
    const char *path = mpc_string(cfg, key);
    if (path == NULL || *path == '\0')
        return mp_fail(err, MP_FATAL, "no secret file configured in '%s'", key);
    char *data = NULL, *error = NULL;
    size_t len = 0;
    if (mpu_read_file(path, 64 * 1024, 1, &data, &len, &error) < 0) {
        /* Out of descriptors says nothing about the configuration: a
         * retry with backoff, never the account's end (issue 12). */
        int e = errno;
        mp_status st = mpu_fd_shortage(e) ? MP_RETRY : MP_FATAL;
        if (st == MP_RETRY)
            mpu_fd_shortage_note("secret file", e);
        mp_fail(err, st, "%s (from '%s')", error, key);
        free(error);
        return st;
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        data[--len] = '\0';
    *secret_r = data;
    if (len_r != NULL)
        *len_r = len;
    return MP_OK;
}

static void host_free_secret(char **secret)
{
    if (secret == NULL || *secret == NULL)
        return;
    mpu_secret_free(secret);
}

/* ---- accounts ---- */

static const char *host_account_id(mp_account *acct)
{
    return acct->id;
}

static mp_instance *host_account_instance(mp_account *acct)
{
    return acct->inst;
}

static void *host_account_state(mp_account *acct)
{
    return acct->state;
}

static void *host_instance_state(mp_instance *inst)
{
    return inst->state;
}

static mp_account *host_account_find(mp_instance *inst, const char *account_id)
{
    for (size_t i = 0; i < inst->n_accounts; i++)
        if (strcmp(inst->accounts[i]->id, account_id) == 0)
            return inst->accounts[i];
    return NULL;
}

static const char *host_cursor_get(mp_account *acct, const char *folder)
{
    mps_store *s = mphost_store(acct);
    if (s == NULL)
        return NULL;
    mps_folder f;
    if (mps_folder_get(s, acct->id, folder, &f, NULL) != 0)
        return NULL;
    char *cursor = f.cursor;
    f.cursor = NULL;
    mps_folder_clear(&f);
    return mphost_arena_keep(cursor);
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ^ (h >> 32);
}

/* The slot of `name` in the index: the one holding it, or the empty one
 * where it goes. */
static size_t name_slot(const mp_folder_sink *sink, const char *name)
{
    size_t mask = sink->n_slots - 1;
    size_t i = (size_t)name_hash(name) & mask;
    while (sink->slots[i] != 0 && strcmp(sink->names[sink->slots[i] - 1], name) != 0)
        i = (i + 1) & mask;
    return i;
}

static void index_grow(mp_folder_sink *sink)
{
    free(sink->slots);
    sink->n_slots = sink->n_slots != 0 ? sink->n_slots * 2 : 64;
    sink->slots = mpu_calloc(sink->n_slots, sizeof *sink->slots);
    for (size_t k = 0; k < sink->n; k++)
        sink->slots[name_slot(sink, sink->names[k])] = k + 1;
}

static void host_folder_add(mp_folder_sink *sink, const char *name, mp_folder_role role)
{
    if (name == NULL || *name == '\0')
        return;
    if ((sink->n + 1) * 2 > sink->n_slots)
        index_grow(sink);
    size_t slot = name_slot(sink, name);
    if (sink->slots[slot] != 0)
        return;
    if (sink->n == sink->cap) {
        sink->cap = sink->cap ? sink->cap * 2 : 16;
        sink->names = mpu_realloc(sink->names, sink->cap * sizeof *sink->names);
        sink->roles = mpu_realloc(sink->roles, sink->cap * sizeof *sink->roles);
    }
    sink->names[sink->n] = mpu_strdup(name);
    sink->roles[sink->n] = (int)role;
    sink->n++;
    sink->slots[slot] = sink->n;
}

mp_folder_sink *mphost_sink_new(void)
{
    return mpu_calloc(1, sizeof(mp_folder_sink));
}

size_t mphost_sink_count(const mp_folder_sink *sink)
{
    return sink->n;
}

const char *mphost_sink_name(const mp_folder_sink *sink, size_t i)
{
    return i < sink->n ? sink->names[i] : NULL;
}

mp_folder_role mphost_sink_role(const mp_folder_sink *sink, size_t i)
{
    return i < sink->n ? (mp_folder_role)sink->roles[i] : MP_ROLE_NONE;
}

void mphost_sink_free(mp_folder_sink **sink)
{
    if (sink == NULL || *sink == NULL)
        return;
    mp_folder_sink *k = *sink;
    for (size_t i = 0; i < k->n; i++)
        free(k->names[i]);
    free(k->names);
    free(k->roles);
    free(k->slots);
    free(k);
    *sink = NULL;
}

/* An account opened in standby (host_objects.h) only verifies pushes:
 * the node holding it syncs it and records its status, profile, push
 * state and driver state, so what a standby copy would write is dropped. */
static int standby(const mp_account *acct)
{
    return acct != NULL && atomic_load(&acct->standby);
}

static void host_sync_now(mp_account *acct, const char *folder, const char *reason)
{
    if (standby(acct))
        return;
    /* Only that folder (NULL: all); the periodic sync still covers every
     * folder. */
    const mphost_env *env = mphost_env_of(acct);
    /* A stream driver's sync_now is its push notification. */
    if (acct->inst->desc->push_kind == MP_PUSH_STREAM)
        env->push_noted(env->owner, acct);
    env->sync(env->owner, acct, folder, reason != NULL ? reason : "driver");
}

static void host_push_state(mp_account *acct, const char *state)
{
    if (state == NULL || standby(acct))
        return;
    /* Documented in driver.h: "watching", "idle..." and "live..." mean push
     * is delivering, so the poller drops to the reconciliation cadence. */
    int live = strcmp(state, "watching") == 0 || strncmp(state, "idle", 4) == 0 ||
               strncmp(state, "live", 4) == 0;
    const mphost_env *env = mphost_env_of(acct);
    env->push_state(env->owner, acct, state, live);
}

static void host_push_status(mp_account *acct, mp_push_state state, const char *text)
{
    if (standby(acct))
        return;
    int live = 0;
    char *t = mphost_push_status_text(state, text, &live);
    const mphost_env *env = mphost_env_of(acct);
    env->push_state(env->owner, acct, t, live);
    free(t);
}

static void host_set_profile(mp_account *acct, const char *json)
{
    if (standby(acct))
        return;
    mps_store *s = mphost_store(acct);
    char *error = NULL;
    if (s != NULL && mps_account_set_profile(s, acct->id, json, &error) < 0) {
        mpu_warn(acct->id, "cannot store profile: %s", error);
        free(error);
    }
}

static const char *host_instance_name(mp_instance *inst)
{
    return inst != NULL ? inst->name : NULL;
}

/* ---- webhook support ---- */

static const char *host_request_header(const mp_push_request *req, const char *name)
{
    const mphost_push_private *p = req->host_private;
    if (p == NULL || p->header == NULL)
        return NULL;
    return p->header(p->ctx, name);
}

static mp_status host_push_hint(mp_account *acct, const char *folder,
                                const char *cursor_hint, mp_error *err)
{
    mps_store *s = mphost_store(acct);
    char *error = NULL;
    if (s == NULL)
        return mp_fail(err, MP_RETRY, "store unavailable");
    if (mps_push_hint_add(s, acct->id, folder, cursor_hint, mpu_now_ms(), &error) < 0) {
        mp_fail(err, MP_RETRY, "cannot record push hint: %s", error);
        free(error);
        return MP_RETRY;
    }
    const mphost_env *env = mphost_env_of(acct);
    env->push_noted(env->owner, acct);
    /* In standby the stored hint is the whole job: the store signals the
     * holder (store/signal.h), which syncs. */
    if (!standby(acct))
        env->sync(env->owner, acct, folder, "push");
    return MP_OK;
}

static void host_push_reply(mp_push_reply *reply, int status, const char *content_type,
                            const char *body, size_t len)
{
    reply->set = 1;
    reply->status = status;
    free(reply->content_type);
    free(reply->body);
    reply->content_type = mpu_strdup(content_type);
    reply->body = NULL;
    reply->len = 0;
    if (body != NULL) {
        reply->body = mpu_malloc(len + 1);
        memcpy(reply->body, body, len);
        reply->body[len] = '\0';
        reply->len = len;
    }
}

static int64_t host_now_ms(void)
{
    return mpu_now_ms();
}

typedef struct stored_iter {
    mp_stored_cb cb;
    void *arg;
} stored_iter;

static int stored_one(const mps_message *m, void *arg)
{
    stored_iter *it = arg;
    mp_stored_message sm = {m->provider_id, m->ref,  m->uid,  m->message_id,
                            m->date,        m->size, m->flags};
    return it->cb(&sm, it->arg);
}

static mp_status host_stored_messages(mp_account *acct, const char *folder, mp_stored_cb cb,
                                      void *arg, mp_error *err)
{
    mps_store *s = mphost_store(acct);
    char *error = NULL;
    stored_iter it = {cb, arg};
    if (s == NULL)
        return mp_fail(err, MP_RETRY, "store unavailable");
    if (mps_messages_each(s, acct->id, folder, stored_one, &it, &error) < 0) {
        mp_fail(err, MP_RETRY, "%s", error);
        free(error);
        return MP_RETRY;
    }
    return MP_OK;
}

static int64_t host_core_setting(const char *name)
{
    if (name == NULL)
        return -1;
    pthread_mutex_lock(&settings_lock);
    mphost_settings k = settings;
    pthread_mutex_unlock(&settings_lock);
    if (strcmp(name, "sync.batch_size") == 0)
        return k.sync_batch_size;
    if (strcmp(name, "sync.fetch_bodies") == 0)
        return k.fetch_bodies;
    if (strcmp(name, "backfill.batch_size") == 0)
        return k.backfill_batch_size;
    if (strcmp(name, "cache.retention_days") == 0)
        return k.retention_days;
    return -1;
}

/* ---- ABI 1.1: driver state and the account cursor ---- */

static mp_status host_state_get(mp_account *acct, const char *key, char **value_r,
                                mp_error *err)
{
    mps_store *s = mphost_store(acct);
    char *error = NULL;
    *value_r = NULL;
    if (mps_state_check(key, NULL, &error) < 0) {
        mp_fail(err, MP_FATAL, "%s", error);
        free(error);
        return MP_FATAL;
    }
    if (s == NULL)
        return mp_fail(err, MP_RETRY, "store unavailable");
    int rc = mps_state_get(s, acct->id, key, value_r, &error);
    if (rc < 0) {
        mp_fail(err, MP_RETRY, "cannot read driver state: %s", error);
        free(error);
        return MP_RETRY;
    }
    return rc == 1 ? MP_SKIP : MP_OK;
}

static mp_status host_state_put(mp_account *acct, const char *key, const char *value,
                                mp_error *err)
{
    mps_store *s = mphost_store(acct);
    char *error = NULL;
    if (mps_state_check(key, value, &error) < 0) {
        mp_fail(err, MP_FATAL, "%s", error);
        free(error);
        return MP_FATAL;
    }
    if (standby(acct))
        return MP_OK;
    if (s == NULL)
        return mp_fail(err, MP_RETRY, "store unavailable");
    if (mps_state_put(s, acct->id, key, value, &error) < 0) {
        mp_fail(err, MP_RETRY, "cannot write driver state: %s", error);
        free(error);
        return MP_RETRY;
    }
    return MP_OK;
}

static const char *host_account_cursor(mp_account *acct)
{
    mps_store *s = mphost_store(acct);
    char *cursor = NULL, *error = NULL;
    if (s == NULL)
        return NULL;
    if (mps_account_cursor_get(s, acct->id, &cursor, &error) != 0) {
        free(error);
        return NULL;
    }
    return mphost_arena_keep(cursor);
}

static const mp_host host_table = {
    .abi_major = MP_ABI_MAJOR,
    .abi_minor = MP_ABI_MINOR,
    .struct_size = sizeof(mp_host),
    .log = host_log,
    .alloc = host_alloc,
    .free = host_free,
    .config_string = host_config_string,
    .config_int = host_config_int,
    .config_bool = host_config_bool,
    .config_list_len = host_config_list_len,
    .config_list_string = host_config_list_string,
    .read_secret = host_read_secret,
    .free_secret = host_free_secret,
    .account_id = host_account_id,
    .account_instance = host_account_instance,
    .account_state = host_account_state,
    .instance_state = host_instance_state,
    .account_find = host_account_find,
    .cursor_get = host_cursor_get,
    .batch_change = mphost_batch_change,
    .batch_commit = mphost_batch_commit,
    .batch_reset = mphost_batch_reset,
    .batch_deadline_ms = mphost_batch_deadline_ms,
    .folder_add = host_folder_add,
    .sync_now = host_sync_now,
    .push_state = host_push_state,
    .set_profile = host_set_profile,
    .request_header = host_request_header,
    .push_hint = host_push_hint,
    .push_reply = host_push_reply,
    .http = mphost_http,
    .http_free = mphost_http_free,
    .timer_add = mphost_timer_add,
    .timer_cancel = mphost_timer_cancel,
    .watch_fd = mphost_watch_fd,
    .watch_update = mphost_watch_update,
    .watch_cancel = mphost_watch_cancel,
    .now_ms = host_now_ms,
    .stored_messages = host_stored_messages,
    .core_setting = host_core_setting,
    /* added in ABI 1.1 */
    .state_get = host_state_get,
    .state_put = host_state_put,
    .batch_state = mphost_batch_state,
    .account_cursor = host_account_cursor,
    .batch_account_cursor = mphost_batch_account_cursor,
    .batch_change_folders = mphost_batch_change_folders,
    .http_limit = mphost_http_limit,
    .http_ex = mphost_http_ex,
    .push_status = host_push_status,
    .oauth_setup = mphost_oauth_setup,
    .oauth_token = mphost_oauth_token,
    .oauth_reject = mphost_oauth_reject,
    /* push hints (host_push.c): sync_hint */
    .sync_hint = mphost_sync_hint,
    /* subscriptions (host_subscription.c): subscription_get, subscription_lookup */
    .subscription_get = mphost_subscription_get,
    .subscription_lookup = mphost_subscription_lookup,
    /* added in ABI 1.2: the check slot's collector (host_check.c) */
    .check_report = mphost_check_report,
    .instance_name = host_instance_name,
};

const mp_host *mphost_table(void)
{
    return &host_table;
}

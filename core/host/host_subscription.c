/* subscription_get and subscription_lookup answered from each instance's
 * in-memory index of stored subscriptions (host.h says who keeps it up to
 * date). Copies handed to the driver go on the per-call
 * arena, which the caller of push_verify (and of every other slot) frees
 * when the slot returns, wiping them: they may hold the secret. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "host/host_private.h"
#include "util/util.h"

typedef struct sub_entry {
    char *account;
    char *provider_id;
    int64_t expires_at;
    char *cursor_hint;
    char *secret;
} sub_entry;

/* An instance has a few accounts to a few thousand: a lookup scans the array
 * (microseconds on the loop thread) rather than keep a second index. */
struct mphost_subs {
    sub_entry *v;
    size_t n, cap;
};

/* One lock for the indexes of every instance: taken briefly, never while
 * calling out. */
static pthread_mutex_t subs_lock = PTHREAD_MUTEX_INITIALIZER;

static void entry_clear(sub_entry *e)
{
    free(e->account);
    free(e->provider_id);
    free(e->cursor_hint);
    mpu_secret_free(&e->secret);
    memset(e, 0, sizeof *e);
}

/* Caller holds subs_lock. */
static sub_entry *entry_of(const struct mphost_subs *subs, const char *account)
{
    if (subs == NULL)
        return NULL;
    for (size_t i = 0; i < subs->n; i++)
        if (strcmp(subs->v[i].account, account) == 0)
            return &subs->v[i];
    return NULL;
}

void mphost_subs_put(struct mp_account *acct, const char *provider_id, int64_t expires_at,
                     const char *cursor_hint, const char *secret)
{
    mp_instance *inst = acct->inst;
    pthread_mutex_lock(&subs_lock);
    /* Retirement sets `removed` before it forgets the entry under this
     * lock, so a late put from a job of a retired account is dropped
     * here or forgotten after. */
    if (atomic_load(&acct->removed)) {
        pthread_mutex_unlock(&subs_lock);
        return;
    }
    if (inst->subs == NULL)
        inst->subs = mpu_calloc(1, sizeof *inst->subs);
    struct mphost_subs *subs = inst->subs;
    sub_entry *e = entry_of(subs, acct->id);
    char *kept_secret = NULL;
    if (e != NULL) {
        kept_secret = e->secret;
        e->secret = NULL;
        entry_clear(e);
    } else {
        if (subs->n == subs->cap) {
            subs->cap = subs->cap ? subs->cap * 2 : 16;
            subs->v = mpu_realloc(subs->v, subs->cap * sizeof *subs->v);
        }
        e = &subs->v[subs->n++];
        memset(e, 0, sizeof *e);
    }
    e->account = mpu_strdup(acct->id);
    e->provider_id = provider_id != NULL ? mpu_strdup(provider_id) : NULL;
    e->expires_at = expires_at;
    e->cursor_hint = cursor_hint != NULL ? mpu_strdup(cursor_hint) : NULL;
    if (secret != NULL) {
        mpu_secret_free(&kept_secret);
        e->secret = mpu_strdup(secret);
    } else {
        e->secret = kept_secret;
    }
    pthread_mutex_unlock(&subs_lock);
}

void mphost_subs_forget(mp_instance *inst, const char *id)
{
    pthread_mutex_lock(&subs_lock);
    struct mphost_subs *subs = inst->subs;
    sub_entry *e = entry_of(subs, id);
    if (e != NULL) {
        entry_clear(e);
        *e = subs->v[--subs->n];
    }
    pthread_mutex_unlock(&subs_lock);
}

void mphost_subs_free(mp_instance *inst)
{
    pthread_mutex_lock(&subs_lock);
    struct mphost_subs *subs = inst->subs;
    inst->subs = NULL;
    pthread_mutex_unlock(&subs_lock);
    if (subs == NULL)
        return;
    for (size_t i = 0; i < subs->n; i++)
        entry_clear(&subs->v[i]);
    free(subs->v);
    free(subs);
}

/* Copies for the driver, on the call arena. Caller holds subs_lock. */
static void hand_out(const sub_entry *e, mp_subscription *sub_r)
{
    sub_r->provider_id =
        e->provider_id != NULL ? mphost_arena_keep(mpu_strdup(e->provider_id)) : NULL;
    sub_r->expires_at = e->expires_at;
    sub_r->cursor_hint =
        e->cursor_hint != NULL ? mphost_arena_keep(mpu_strdup(e->cursor_hint)) : NULL;
    sub_r->secret = e->secret != NULL ? mphost_arena_keep(mpu_strdup(e->secret)) : NULL;
}

mp_status mphost_subscription_get(mp_account *acct, mp_subscription *sub_r, mp_error *err)
{
    if (sub_r == NULL)
        return mp_fail(err, MP_FATAL, "subscription_get: sub_r is NULL");
    memset(sub_r, 0, sizeof *sub_r);
    if (acct == NULL)
        return mp_fail(err, MP_FATAL, "subscription_get: no account");
    pthread_mutex_lock(&subs_lock);
    const sub_entry *e = entry_of(acct->inst->subs, acct->id);
    if (e != NULL)
        hand_out(e, sub_r);
    pthread_mutex_unlock(&subs_lock);
    if (e == NULL)
        return mp_fail(err, MP_SKIP, "account '%s' has no stored subscription", acct->id);
    return MP_OK;
}

/* The live account `id` of `inst`, or NULL. Loop thread: the registry
 * changes only there, so its account array holds still meanwhile. */
static struct mp_account *instance_account(mp_instance *inst, const char *id)
{
    for (size_t i = 0; i < inst->n_accounts; i++) {
        struct mp_account *a = inst->accounts[i];
        if (strcmp(a->id, id) == 0 && !atomic_load(&a->removed))
            return a;
    }
    return NULL;
}

mp_status mphost_subscription_lookup(mp_instance *inst, const char *provider_id,
                                     mp_account **acct_r, mp_subscription *sub_r,
                                     mp_error *err)
{
    if (acct_r == NULL || sub_r == NULL)
        return mp_fail(err, MP_FATAL, "subscription_lookup: acct_r or sub_r is NULL");
    *acct_r = NULL;
    memset(sub_r, 0, sizeof *sub_r);
    if (inst == NULL)
        return mp_fail(err, MP_FATAL, "subscription_lookup: no instance");
    /* An id the sender made up is no subscription of ours; not an error
     * of the driver. The id itself is not secret (Graph sends it in the
     * clear), so neither is how long the search takes. */
    if (provider_id == NULL || provider_id[0] == '\0')
        return mp_fail(err, MP_SKIP, "no subscription id given");
    struct mp_account *found = NULL;
    /* Only accounts of this instance are indexed here: an id known to
     * another instance (another tenant, another driver) is unknown. */
    pthread_mutex_lock(&subs_lock);
    struct mphost_subs *subs = inst->subs;
    for (size_t i = 0; subs != NULL && i < subs->n && found == NULL; i++) {
        const sub_entry *e = &subs->v[i];
        if (e->provider_id == NULL || strcmp(e->provider_id, provider_id) != 0)
            continue;
        found = instance_account(inst, e->account);
        if (found != NULL)
            hand_out(e, sub_r);
    }
    pthread_mutex_unlock(&subs_lock);
    if (found == NULL)
        return mp_fail(err, MP_SKIP, "no subscription with that id here");
    *acct_r = found;
    return MP_OK;
}

/*
 * The lease thread (contract in daemon/cluster.h).
 *
 * Blocking libpq on a thread of its own: a lease round is a handful of
 * short statements, and a database that hangs must stall neither the
 * loop nor the workers. The thread keeps the mpl_node to itself; what the
 * loop needs crosses in `ops` (an ordered list: a lease lost and taken
 * again in one round must stop the account before it starts again) and
 * in the cached status, both under c->lock.
 */
#include "daemon/cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cluster_signals.h"
#include "store/fence.h"
#include "store/lease.h"
#include "util/log.h"
#include "util/util.h"

/* How soon to try again after a failed round (the database is down). */
#define RETRY_MS 1000u

typedef struct lease_op {
    char *account; /* NULL: the outbox role                           */
    int64_t epoch; /* 0: lost; for the role, 1 taken and 0 lost      */
} lease_op;

struct mpd_cluster {
    mpd *d;
    mpl_node *node;
    char *name;
    char *owner;
    uint32_t ttl_ms;
    pthread_t thread;
    int thread_started;
    struct event *apply_ev; /* loop: drains ops */
    mpd_signals *signals;   /* other nodes' pushes and changes (loop side) */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
    char **accounts; /* the configured ids, handed over by the loop */
    size_t n_accounts;
    int accounts_changed;
    lease_op *ops;
    size_t n_ops;
    size_t held;
    json_t *members;
    int outbox_role;
    char *error; /* last round's failure, NULL when it went through */
};

static void ops_push(mpd_cluster *c, const char *account, int64_t epoch)
{
    c->ops = mpu_realloc(c->ops, (c->n_ops + 1) * sizeof *c->ops);
    c->ops[c->n_ops].account = account != NULL ? mpu_strdup(account) : NULL;
    c->ops[c->n_ops].epoch = epoch;
    c->n_ops++;
}

/* A round's changes, lost first (see the file comment). Under c->lock. */
static int ops_add_delta(mpd_cluster *c, const mpl_delta *delta)
{
    for (size_t i = 0; i < delta->n_lost; i++)
        ops_push(c, delta->lost[i], 0);
    for (size_t i = 0; i < delta->n_acquired; i++)
        ops_push(c, delta->acquired[i].account, delta->acquired[i].epoch);
    if (delta->outbox_role != 0)
        ops_push(c, NULL, delta->outbox_role > 0);
    return delta->n_lost + delta->n_acquired > 0 || delta->outbox_role != 0;
}

static json_t *members_json(mpl_node *node)
{
    mpl_member *m = NULL;
    size_t n = 0;
    char *err = NULL;
    if (mpl_members(node, &m, &n, &err) != 0) {
        free(err);
        return NULL;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:b, s:I, s:I, s:I}", "name",
                                              m[i].name, "owner", m[i].owner, "live",
                                              m[i].live, "leases", (json_int_t)m[i].leases,
                                              "started_ms", (json_int_t)m[i].started_ms,
                                              "seen_ms", (json_int_t)m[i].seen_ms));
    mpl_members_free(m, n);
    return list;
}

static void wait_ms(mpd_cluster *c, uint32_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!c->stop && !c->accounts_changed)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
            break;
}

static void *lease_main(void *arg)
{
    mpd_cluster *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        mpl_delta delta = {0};
        char *err = NULL;
        int ok = 1;
        if (c->accounts_changed) {
            char **ids = c->accounts;
            size_t n = c->n_accounts;
            c->accounts = NULL;
            c->n_accounts = 0;
            c->accounts_changed = 0;
            pthread_mutex_unlock(&c->lock);
            if (mpl_set_accounts(c->node, (const char *const *)ids, n, &delta, &err) != 0)
                ok = 0;
            for (size_t i = 0; i < n; i++)
                free(ids[i]);
            free(ids);
            pthread_mutex_lock(&c->lock);
            if (!ok) {
                /* Try the list again next round. */
                if (!c->accounts_changed)
                    c->accounts_changed = 1;
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (ok && mpl_tick(c->node, &delta, &err) != 0)
            ok = 0;
        if (!ok)
            mpl_expire_local(c->node, mpu_mono_ms(), &delta);
        json_t *members = ok ? members_json(c->node) : NULL;
        size_t held = mpl_held_count(c->node);
        uint32_t next = ok ? mpl_next_tick_ms(c->node) : RETRY_MS;

        pthread_mutex_lock(&c->lock);
        if (!ok && (c->error == NULL || strcmp(c->error, err) != 0))
            mpu_warn("cluster", "%s (holding %zu accounts; retrying)", err, held);
        else if (ok && c->error != NULL)
            mpu_info("cluster", "lease database reachable again");
        free(c->error);
        c->error = ok ? NULL : err;
        if (ok)
            free(err);
        if (members != NULL) {
            json_decref(c->members);
            c->members = members;
        }
        c->held = held;
        c->outbox_role = mpl_outbox_role(c->node);
        if (ops_add_delta(c, &delta))
            event_active(c->apply_ev, EV_READ, 0);
        mpl_delta_clear(&delta);
        if (!c->stop && !c->accounts_changed)
            wait_ms(c, next);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Loop thread: start what was acquired, stop what was lost, in order. */
static void apply_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mpd_cluster *c = arg;
    pthread_mutex_lock(&c->lock);
    lease_op *ops = c->ops;
    size_t n = c->n_ops;
    c->ops = NULL;
    c->n_ops = 0;
    pthread_mutex_unlock(&c->lock);
    size_t got = 0, lost = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].account == NULL) {
            mpu_info("cluster", "outbox role %s: webhook delivery %s on this node",
                     ops[i].epoch ? "taken" : "lost", ops[i].epoch ? "runs" : "stops");
            mpd_outbox_role(c->d, ops[i].epoch != 0);
            continue;
        }
        if (ops[i].epoch == 0) {
            mps_fence_clear(ops[i].account);
            mpd_registry_account_release(c->d, ops[i].account);
            lost++;
        } else {
            mps_fence_set(ops[i].account, ops[i].epoch);
            mpd_registry_account_acquire(c->d, ops[i].account);
            got++;
        }
        free(ops[i].account);
    }
    free(ops);
    if (got + lost > 0)
        mpu_info("cluster", "leases: %zu acquired, %zu lost or given back", got, lost);
}

mpd_cluster *mpd_cluster_start(mpd *d, const char *conninfo, const char *node,
                               uint32_t lease_ttl_ms, char **error_r)
{
    mpl_options o = {.conninfo = conninfo, .name = node, .ttl_ms = lease_ttl_ms};
    mpl_node *n = mpl_open(&o, error_r);
    if (n == NULL)
        return NULL;
    mpd_cluster *c = mpu_calloc(1, sizeof *c);
    c->d = d;
    c->node = n;
    c->name = mpu_strdup(node);
    c->owner = mpu_strdup(mpl_owner(n));
    c->ttl_ms = lease_ttl_ms;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->apply_ev = event_new(d->base, -1, 0, apply_cb, c);
    mps_fence_enable(c->owner);
    /* Listening before the first lease round, so a push stored for an
     * account from the moment it is ours is not missed (a late listener
     * catches up from the store anyway). */
    c->signals = mpd_signals_start(d, conninfo, c->owner);
    if (pthread_create(&c->thread, NULL, lease_main, c) != 0) {
        *error_r = mpu_strdup("cluster: cannot start the lease thread");
        mpd_cluster_free(&c);
        return NULL;
    }
    c->thread_started = 1;
    mpu_info("cluster", "node %s joined as %s (lease TTL %u ms)", node, c->owner,
             (unsigned)lease_ttl_ms);
    return c;
}

void mpd_cluster_set_accounts(mpd_cluster *c, const char *const *ids, size_t n)
{
    char **copy = mpu_calloc(n + 1, sizeof *copy);
    for (size_t i = 0; i < n; i++)
        copy[i] = mpu_strdup(ids[i]);
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_accounts; i++)
        free(c->accounts[i]);
    free(c->accounts);
    c->accounts = copy;
    c->n_accounts = n;
    c->accounts_changed = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

int mpd_cluster_holds(const mpd_cluster *c, const char *account)
{
    (void)c;
    char *owner = NULL;
    int64_t epoch = 0;
    mps_fence_state st = mps_fence_get(account, &owner, &epoch);
    free(owner);
    return st == MPS_FENCE_HELD;
}

void mpd_cluster_stop(mpd_cluster *c)
{
    if (c == NULL)
        return;
    mpd_signals_free(&c->signals);
    if (!c->thread_started)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    c->thread_started = 0;
}

void mpd_cluster_free(mpd_cluster **cp)
{
    mpd_cluster *c = *cp;
    if (c == NULL)
        return;
    *cp = NULL;
    mpd_cluster_stop(c);
    char *err = NULL;
    if (mpl_release_all(c->node, &err) != 0) {
        mpu_warn("cluster", "%s: the leases expire by themselves", err);
        free(err);
    } else {
        mpu_info("cluster", "node %s left the cluster; its leases were given back", c->name);
    }
    mps_fence_disable();
    mpl_close(c->node);
    event_free(c->apply_ev);
    for (size_t i = 0; i < c->n_ops; i++)
        free(c->ops[i].account);
    free(c->ops);
    for (size_t i = 0; i < c->n_accounts; i++)
        free(c->accounts[i]);
    free(c->accounts);
    json_decref(c->members);
    free(c->error);
    free(c->name);
    free(c->owner);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

json_t *mpd_cluster_status(mpd_cluster *c)
{
    pthread_mutex_lock(&c->lock);
    /* A copy: the thread replaces c->members while the caller reads. */
    json_t *st = json_pack("{s:s, s:s, s:I, s:I, s:b, s:o*, s:s?}", "node", c->name,
                           "owner", c->owner, "lease_ttl_ms", (json_int_t)c->ttl_ms, "held",
                           (json_int_t)c->held, "outbox_role", c->outbox_role, "members",
                           c->members != NULL ? json_deep_copy(c->members) : NULL, "error",
                           c->error);
    pthread_mutex_unlock(&c->lock);
    if (c->signals != NULL)
        json_object_set_new(st, "signals", mpd_signals_status(c->signals));
    return st;
}

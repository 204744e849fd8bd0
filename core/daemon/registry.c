/* The registry of driver instances and accounts, built from plugins.d and
 * re-applied on SIGHUP. An instance whose file did not change is kept as
 * is (its accounts keep running); a changed or removed one is retired and
 * a changed one is created again. Accounts keep their store rows across
 * all of this, so a re-created account continues from its cursors. */
#include "daemon/daemon.h"
#include "daemon/cluster.h"

#include <stdlib.h>
#include <string.h>

#include "oauth/oauth.h"
#include "util/log.h"
#include "util/util.h"

/* ---- references ---- */

static void instance_unref(mp_instance *inst);

static void account_close_now(struct mp_account *a);

/* ---- cancelling the subscription of a removed account ----
 *
 * A reload that drops an account from the configuration also ends its
 * webhook subscription at the provider (a Gmail watch, a Graph
 * subscription), which would otherwise go on notifying a daemon that no
 * longer knows it. That happens at the last reference, so no job of the
 * account runs alongside push_cancel, and before account_close: on a
 * worker (push_cancel may block), then back on the loop thread to close.
 * A shutdown never cancels: the subscription survives a restart. */

typedef struct cancel_work {
    struct mp_account *a;
} cancel_work;

static void push_cancel_work(void *arg)
{
    struct mp_account *a = ((cancel_work *)arg)->a;
    mps_store *s = mpd_store(a->d);
    mps_subscription cur;
    char *error = NULL;
    if (s == NULL)
        return;
    int have = mps_subscription_get(s, a->id, &cur, &error);
    if (have != 0) {
        if (have < 0) {
            mpu_error(a->id, "removed account: cannot read its push subscription: %s",
                      error);
            free(error);
        }
        return;
    }
    mp_subscription c = {cur.provider_id, cur.expires_at, cur.cursor_hint, cur.secret};
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = a->inst->desc->push_cancel(a, &c, &err);
    mphost_call_end();
    if (st != MP_OK)
        mpu_warn(a->id, "removed account: push subscription cancel failed: %s",
                 err.text[0] ? err.text : "no reason given");
    else
        mpu_info(a->id, "removed account: push subscription cancelled");
    /* The account is gone either way. Only the row just cancelled: an
     * account re-created under this id meanwhile may have enrolled anew. */
    mps_subscription now;
    if (mps_subscription_get(s, a->id, &now, &error) == 0) {
        if (now.provider_id != NULL && cur.provider_id != NULL &&
            strcmp(now.provider_id, cur.provider_id) == 0 &&
            mps_subscription_delete(s, a->id, &error) < 0) {
            mpu_error(a->id, "cannot delete the removed account's subscription: %s", error);
            free(error);
        }
        mps_subscription_clear(&now);
    } else {
        free(error);
    }
    mps_subscription_clear(&cur);
}

static void push_cancel_done(void *arg)
{
    cancel_work *w = arg;
    struct mp_account *a = w->a;
    free(w);
    /* Its credentials were kept for push_cancel (instance_retire). */
    if (a->d->oauth != NULL && mpd_account_peek(a->d, a->id) == NULL)
        mpo_account_remove(a->d->oauth, a->id);
    atomic_store(&a->push_cancel, 0);
    account_close_now(a);
}

static void account_close_now(struct mp_account *a)
{
    if (atomic_load(&a->push_cancel) == 1 && a->open && a->d->sched != NULL) {
        atomic_store(&a->push_cancel, 2);
        cancel_work *w = mpu_calloc(1, sizeof *w);
        w->a = a;
        mpj_submit(a->d->sched, 0, push_cancel_work, push_cancel_done, w);
        return;
    }
    if (a->push_started && a->inst->desc != NULL && a->inst->desc->push_stop != NULL)
        a->inst->desc->push_stop(a);
    a->push_started = 0;
    mphost_release_loop_objs(&a->loop_objs);
    if ((a->open || a->standby) && a->inst->desc != NULL)
        a->inst->desc->account_close(a, &a->state);
    a->open = 0;
    a->standby = 0;
    for (size_t i = 0; i < a->n_folders_allowed; i++)
        free(a->folders_allowed[i]);
    free(a->folders_allowed);
    pthread_mutex_destroy(&a->fetch_lock);
    pthread_mutex_destroy(&a->lock);
    mphost_check_record_clear(&a->check);
    pthread_mutex_destroy(&a->check_lock);
    free(a->unrecorded_status);
    free(a->unrecorded_error);
    free(a->view_status);
    free(a->view_error);
    free(a->view_push_state);
    instance_unref(a->inst);
    free(a->id);
    free(a);
}

static void account_close_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    account_close_now(arg);
}

void mpd_account_unref(struct mp_account *a)
{
    if (a == NULL || atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    /* account_close and push_stop belong to the loop thread. */
    if (pthread_equal(pthread_self(), a->d->loop_thread))
        account_close_now(a);
    else
        event_base_once(a->d->base, -1, EV_TIMEOUT, account_close_cb, a, NULL);
}

static void instance_unref(mp_instance *inst)
{
    if (inst == NULL || atomic_fetch_sub(&inst->refs, 1) != 1)
        return;
    if (inst->initialized && inst->desc->deinit != NULL)
        inst->desc->deinit(inst, &inst->state);
    mpl_unload(&inst->drv);
    mphost_subs_free(inst);
    if (inst->conf != NULL) {
        mpc_instance_conf **one = mpu_malloc(sizeof *one);
        one[0] = inst->conf;
        mpc_instances_free(&one, 1);
    }
    free(inst->accounts);
    free(inst->name);
    free(inst->file);
    free(inst->driver_name);
    free(inst->content_hash);
    free(inst->status);
    free(inst->error);
    free(inst);
}

/* ---- lookup ---- */

struct mp_account *mpd_account_peek(mpd *d, const char *id)
{
    for (size_t i = 0; i < d->n_instances; i++) {
        mp_instance *inst = d->instances[i];
        for (size_t j = 0; j < inst->n_accounts; j++)
            if (strcmp(inst->accounts[j]->id, id) == 0)
                return inst->accounts[j];
    }
    return NULL;
}

mp_instance *mpd_instance_peek(mpd *d, const char *name)
{
    for (size_t i = 0; i < d->n_instances; i++)
        if (strcmp(d->instances[i]->name, name) == 0)
            return d->instances[i];
    return NULL;
}

struct mp_account *mpd_account_get(mpd *d, const char *id)
{
    pthread_rwlock_rdlock(&d->registry_lock);
    struct mp_account *a = mpd_account_peek(d, id);
    if (a != NULL)
        atomic_fetch_add(&a->refs, 1);
    pthread_rwlock_unlock(&d->registry_lock);
    return a;
}

/* ---- scheduling ---- */

static uint32_t sync_interval_s(const struct mp_account *a, const mp_settings *s)
{
    /* With live push the poller is demoted to the reconciliation sweep,
     * unless the admin asked for a faster poll than that. */
    if (a->push_live && s->schedule.reconcile_interval > a->poll_interval_s)
        return s->schedule.reconcile_interval;
    return a->poll_interval_s;
}

void mpd_account_apply_intervals(struct mp_account *a)
{
    const mp_settings *s = a->d->settings;
    if (a->d->sched == NULL)
        return;
    mpj_account_set_intervals(a->d->sched, a->id, (uint64_t)sync_interval_s(a, s) * 1000u,
                              (uint64_t)s->schedule.backfill_interval * 1000u);
}

typedef struct push_live_msg {
    mpd *d;
    char *id;
    int live;
} push_live_msg;

static void push_live_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    push_live_msg *m = arg;
    struct mp_account *a = mpd_account_peek(m->d, m->id);
    if (a != NULL && a->push_live != m->live) {
        a->push_live = m->live;
        if (m->live)
            a->push_live_since_ms = mpu_now_ms();
        mpd_account_apply_intervals(a);
    }
    free(m->id);
    free(m);
}

void mpd_account_set_push_live(struct mp_account *a, int live)
{
    push_live_msg *m = mpu_calloc(1, sizeof *m);
    m->d = a->d;
    m->id = mpu_strdup(a->id);
    m->live = live;
    if (pthread_equal(pthread_self(), a->d->loop_thread))
        push_live_cb(-1, 0, m);
    else
        event_base_once(a->d->base, -1, EV_TIMEOUT, push_live_cb, m, NULL);
}

void mpd_account_note_push(struct mp_account *a)
{
    a->last_push_ms = mpu_now_ms();
    if (atomic_exchange(&a->push_silent, 0))
        mpu_info(a->id, "push notifications arrive again");
}

/* ---- creation ---- */

static char *file_hash(const char *path)
{
    char *data = NULL, *error = NULL;
    size_t len = 0;
    if (mpu_read_file(path, 16 * 1024 * 1024, 0, &data, &len, &error) < 0) {
        free(error);
        return mpu_strdup("");
    }
    char hex[65];
    mpu_sha256_hex(data, len, 32, hex);
    free(data);
    return mpu_strdup(hex);
}

static char *join_errors(const mpc_errors *errs)
{
    size_t total = 1;
    for (size_t i = 0; i < errs->n; i++)
        total += strlen(errs->msgs[i]) + 2;
    char *out = mpu_calloc(1, total);
    for (size_t i = 0; i < errs->n; i++) {
        if (i > 0)
            strncat(out, "; ", total - strlen(out) - 1);
        strncat(out, errs->msgs[i], total - strlen(out) - 1);
    }
    return out;
}

static uint32_t interval_from(const mpc_node *cfg, uint32_t fallback)
{
    const mpc_node *n = mpc_get(cfg, "poll_interval");
    if (n != NULL && n->type == MPC_INT && n->i > 0 && n->i <= MP_SCHEDULE_MAX_S)
        return (uint32_t)n->i;
    return fallback;
}

static struct mp_account *account_new(mpd *d, mp_instance *inst, const mpc_node *cfg)
{
    struct mp_account *a = mpu_calloc(1, sizeof *a);
    atomic_init(&a->refs, 1);
    a->d = d;
    a->id = mpu_strdup(mpc_string(cfg, "id"));
    a->inst = inst;
    atomic_fetch_add(&inst->refs, 1);
    a->cfg = cfg;
    a->enabled = mpc_get(cfg, "enabled") != NULL ? mpc_bool(cfg, "enabled") : 1;
    a->poll_interval_s = interval_from(cfg, inst->poll_interval_s);
    pthread_mutex_init(&a->fetch_lock, NULL);
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->check_lock, NULL);
    if (mpc_get(cfg, "folders") != NULL) {
        a->n_folders_allowed = mpc_list_len(cfg, "folders");
        a->folders_allowed = mpu_calloc(a->n_folders_allowed + 1, sizeof(char *));
        for (size_t i = 0; i < a->n_folders_allowed; i++)
            a->folders_allowed[i] = mpu_strdup(mpc_list_string(cfg, "folders", i));
    }
    return a;
}

/* A passing failure to open an account or start its push stream (the
 * driver's MP_RETRY: out of descriptors, a pipe that could not be made) is
 * retried on a timer of the account's, released with it, after 1 s
 * doubling to 5 min; never "fatal" (issue 12). Loop thread. */
#define OPEN_RETRY_MIN_MS 1000u
#define OPEN_RETRY_MAX_MS 300000u

static uint32_t open_retry_ms(struct mp_account *a)
{
    uint32_t ms = OPEN_RETRY_MIN_MS;
    for (unsigned i = 0; i < a->open_retries && ms < OPEN_RETRY_MAX_MS; i++)
        ms *= 2;
    a->open_retries++;
    return ms < OPEN_RETRY_MAX_MS ? ms : OPEN_RETRY_MAX_MS;
}

static void account_start(mpd *d, struct mp_account *a, unsigned index);
static void push_start(mpd *d, struct mp_account *a);

static void account_open_due(void *arg)
{
    struct mp_account *a = arg;
    mphost_table()->timer_cancel(&a->open_retry_timer);
    if (!a->open && !atomic_load(&a->removed))
        account_start(a->d, a, 0);
}

static void push_start_due(void *arg)
{
    struct mp_account *a = arg;
    mphost_table()->timer_cancel(&a->open_retry_timer);
    if (a->open && !a->push_started && !atomic_load(&a->removed))
        push_start(a->d, a);
}

static void push_start(mpd *d, struct mp_account *a)
{
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = a->inst->desc->push_start(a, &err);
    if (st == MP_OK) {
        a->push_started = 1;
        a->open_retries = 0;
    } else if (st == MP_RETRY) {
        uint32_t ms = open_retry_ms(a);
        char *state = mpu_asprintf("reconnecting: %s; retry in %u s", err.text,
                                   (unsigned)((ms + 999) / 1000));
        mpd_set_push_state(d, a->id, state);
        free(state);
        a->open_retry_timer = mphost_table()->timer_add(a, ms, push_start_due, a);
    } else {
        char *state = mpu_asprintf("failed: %s", err.text);
        mpd_set_push_state(d, a->id, state);
        free(state);
    }
}

static void account_standby(mpd *d, struct mp_account *a);

/* Open the account with its driver and put it on the schedule. */
static void account_start(mpd *d, struct mp_account *a, unsigned index)
{
    mp_instance *inst = a->inst;
    char *error = NULL;
    /* In a cluster another node may own it: not a single write until the
     * lease is ours (mpd_registry_account_acquire starts it then); until
     * then a webhook account verifies pushes here (standby). */
    if (d->cluster != NULL && !mpd_cluster_holds(d->cluster, a->id)) {
        account_standby(d, a);
        return;
    }
    if (a->open) /* queued at start, then started by its lease meanwhile */
        return;
    if (mps_account_ensure(d->store, a->id, inst->name, &error) < 0) {
        mpu_error(a->id, "cannot record account: %s", error);
        free(error);
        return;
    }
    if (inst->desc == NULL || !inst->initialized) {
        const char *st = strcmp(inst->status, "disabled") == 0 ? "disabled" : "driver-refused";
        mpd_set_account_status(d, a->id, st, inst->error);
        return;
    }
    if (!a->enabled) {
        mpd_set_account_status(d, a->id, "disabled", NULL);
        return;
    }
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = inst->desc->account_open(a, a->cfg, &a->state, &err);
    mphost_call_end();
    if (st == MP_RETRY) {
        uint32_t ms = open_retry_ms(a);
        mpd_set_account_status(d, a->id, "error",
                               err.text[0] ? err.text : "account_open: retrying");
        a->open_retry_timer = mphost_table()->timer_add(a, ms, account_open_due, a);
        return;
    }
    if (st != MP_OK) {
        mpd_set_account_status(d, a->id, st == MP_REAUTH ? "reauth" : "fatal",
                               err.text[0] ? err.text : "account_open failed");
        return;
    }
    a->open = 1;
    a->open_retries = 0;
    mpd_set_account_status(d, a->id, "pending", NULL);
    /* Stagger first runs so a daemon with many accounts does not stampede. */
    mpj_account_add(d->sched, a->id, (uint64_t)sync_interval_s(a, d->settings) * 1000u,
                    (uint64_t)d->settings->schedule.backfill_interval * 1000u,
                    100u + (index % 50u) * 200u);
    if (inst->desc->push_kind == MP_PUSH_STREAM) {
        push_start(d, a);
    } else if (inst->desc->push_kind == MP_PUSH_NONE) {
        mpd_set_push_state(d, a->id, "off");
    } else {
        /* A subscription that outlived a restart keeps delivering. */
        mps_subscription sub;
        int live = 0;
        if (mps_subscription_get(d->store, a->id, &sub, &error) == 0) {
            live = sub.expires_at == 0 || sub.expires_at * 1000 > mpu_now_ms();
            /* push_verify finds it from memory (host.h). */
            mphost_subs_put(a, sub.provider_id, sub.expires_at, sub.cursor_hint, sub.secret);
            mps_subscription_clear(&sub);
        } else {
            free(error);
            error = NULL;
        }
        mpd_set_push_state(d, a->id, live ? "watching" : "pending");
        if (live)
            mpd_account_set_push_live(a, 1);
    }
}

static mp_instance *instance_new(mpd *d, mpc_instance_conf *conf)
{
    mp_instance *inst = mpu_calloc(1, sizeof *inst);
    atomic_init(&inst->refs, 1);
    inst->d = d;
    inst->env = &d->host_env;
    inst->conf = conf;
    inst->name = mpu_strdup(conf->name);
    inst->file = mpu_strdup(conf->file);
    inst->driver_name = mpu_strdup(conf->driver);
    inst->content_hash = file_hash(conf->file);
    inst->poll_interval_s = 180;

    if (!conf->enabled) {
        inst->status = mpu_strdup("disabled");
        inst->error = mpu_asprintf("%s: enabled: false", conf->file);
        return inst;
    }
    char *error = NULL;
    inst->drv = mpl_load(d->settings->driver_dir, conf->driver, &error);
    if (inst->drv == NULL) {
        inst->status = mpu_strdup("refused");
        inst->error = error;
        mpu_error(inst->name, "driver refused: %s", error);
        return inst;
    }
    inst->desc = &inst->drv->desc;
    if (inst->desc->poll_interval_s > 0)
        inst->poll_interval_s = inst->desc->poll_interval_s;
    inst->poll_interval_s = interval_from(conf->root, inst->poll_interval_s);

    mpc_errors errs = {0};
    if (mpc_validate_instance(conf, inst->desc, &errs) > 0) {
        inst->status = mpu_strdup("refused");
        inst->error = join_errors(&errs);
        for (size_t i = 0; i < errs.n; i++)
            mpu_error(inst->name, "%s", errs.msgs[i]);
        mpc_errors_free(&errs);
        return inst;
    }
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = inst->desc->init(mphost_table(), inst, conf->root, &inst->state, &err);
    mphost_call_end();
    if (st != MP_OK) {
        inst->status = mpu_strdup("init-failed");
        inst->error = mpu_asprintf("%s: init failed: %s", conf->file, err.text);
        mpu_error(inst->name, "%s", inst->error);
        return inst;
    }
    inst->initialized = 1;
    inst->status = mpu_strdup("loaded");
    mpu_info(inst->name, "driver %s loaded from %s (ABI %u.%u)", inst->driver_name,
             inst->drv->path, inst->desc->abi_major, inst->desc->abi_minor);
    return inst;
}

static void instance_add_accounts(mpd *d, mp_instance *inst)
{
    mpc_instance_conf *conf = inst->conf;
    inst->accounts = mpu_calloc(conf->n_accounts + 1, sizeof *inst->accounts);
    for (size_t i = 0; i < conf->n_accounts; i++) {
        /* A duplicate id elsewhere was already reported by the config
         * loader, which leaves such a file out. */
        if (mpd_account_peek(d, mpc_string(conf->accounts[i], "id")) != NULL)
            continue;
        inst->accounts[inst->n_accounts++] = account_new(d, inst, conf->accounts[i]);
    }
}

/* ---- retirement ---- */

/* Is account `id` in the configuration being applied? The kept instances
 * are d->instances by now; the others are still in `confs`. */
static int account_configured(mpd *d, mpc_instance_conf **confs, size_t n, const char *id)
{
    if (mpd_account_peek(d, id) != NULL)
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (confs[i] == NULL)
            continue;
        for (size_t k = 0; k < confs[i]->n_accounts; k++)
            if (strcmp(mpc_string(confs[i]->accounts[k], "id"), id) == 0)
                return 1;
    }
    return 0;
}

/* At a shutdown (reload 0) every account is only closed. On a reload an
 * open webhook account that is not in the new configuration (`confs`, n
 * of them, possibly none) has its subscription cancelled before it
 * closes (account_close_now). */
static void instance_retire(mpd *d, mp_instance *inst, int reload, mpc_instance_conf **confs,
                            size_t n)
{
    for (size_t j = 0; j < inst->n_accounts; j++) {
        struct mp_account *a = inst->accounts[j];
        int cancel = reload && a->open && inst->desc != NULL &&
                     inst->desc->push_kind == MP_PUSH_WEBHOOK &&
                     inst->desc->push_cancel != NULL &&
                     !account_configured(d, confs, n, a->id);
        if (cancel)
            atomic_store(&a->push_cancel, 1);
        a->removed = 1;
        mphost_subs_forget(inst, a->id);
        /* Now, not at the last unref: an account re-created under the same
         * id sets its credentials up right after this. One that is gone
         * keeps them for push_cancel (push_cancel_done drops them). */
        if (d->oauth != NULL && !cancel)
            mpo_account_remove(d->oauth, a->id);
        if (d->sched != NULL) /* NULL during shutdown, after the pool stopped */
            mpj_account_remove(d->sched, a->id);
        if (a->push_started && inst->desc->push_stop != NULL)
            inst->desc->push_stop(a);
        a->push_started = 0;
        mpd_account_unref(a);
    }
    inst->n_accounts = 0;
    instance_unref(inst);
}

/* ---- starting accounts behind the API ----
 *
 * Starting an account records it and its status in the store, opens it
 * with its driver and starts its push: a few milliseconds each, seconds
 * for thousands, during which a loop that started them all at once would
 * answer no API request (the listeners are bound before the registry is
 * applied, but the loop runs only after). So new accounts wait in
 * d->start_queue and are started a slice at a time, STARTS_SLICE_MS of
 * work per loop iteration; the API lists them as "pending" meanwhile. */

#define STARTS_SLICE_MS 20

/* Hints that arrived before a crash or restart are synced first: main.c
 * asks right after applying the registry, when the queued accounts are
 * not on the schedule yet, so ask again once they are. */
void mpd_registry_sync_pending_hints(mpd *d)
{
    char **pending = NULL;
    size_t n_pending = 0;
    char *error = NULL;
    if (mps_push_hints_accounts(d->store, &pending, &n_pending, &error) < 0) {
        mpu_warn("core", "cannot read pending push hints: %s", error);
        free(error);
        return;
    }
    for (size_t i = 0; i < n_pending; i++) {
        mpj_trigger(d->sched, pending[i], MPJ_SYNC, NULL, "pending-push");
        free(pending[i]);
    }
    free(pending);
}

static void starts_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mpd *d = arg;
    int64_t until = mpu_mono_ms() + STARTS_SLICE_MS;
    /* No scheduler: shutting down, nothing more starts (mpd_registry_clear
     * drops the rest). */
    while (d->sched != NULL && d->start_pos < d->n_start) {
        struct mp_account *a = d->start_queue[d->start_pos];
        d->start_queue[d->start_pos++] = NULL;
        if (!a->removed)
            account_start(d, a, d->start_index++);
        mpd_account_unref(a);
        if (mpu_mono_ms() >= until)
            break;
    }
    if (d->start_pos < d->n_start && d->sched != NULL) {
        static const struct timeval now = {0, 0};
        evtimer_add(d->start_ev, &now);
        return;
    }
    if (d->n_start > 0 && d->start_pos == d->n_start) {
        mpu_debug("core", "%zu accounts started", d->n_start);
        mpd_registry_sync_pending_hints(d);
    }
    free(d->start_queue);
    d->start_queue = NULL;
    d->n_start = d->start_pos = 0;
}

/* Queue inst's accounts for starting (each queued one holds a reference). */
static void starts_queue(mpd *d, mp_instance *inst)
{
    if (inst->n_accounts == 0)
        return;
    if (d->start_ev == NULL)
        d->start_ev = evtimer_new(d->base, starts_cb, d);
    d->start_queue = mpu_realloc(d->start_queue,
                                 (d->n_start + inst->n_accounts) * sizeof *d->start_queue);
    for (size_t j = 0; j < inst->n_accounts; j++) {
        atomic_fetch_add(&inst->accounts[j]->refs, 1);
        d->start_queue[d->n_start++] = inst->accounts[j];
    }
    static const struct timeval now = {0, 0};
    evtimer_add(d->start_ev, &now);
}

/* Drop what is still queued (shutdown). */
static void starts_clear(mpd *d)
{
    for (size_t i = d->start_pos; i < d->n_start; i++)
        mpd_account_unref(d->start_queue[i]);
    free(d->start_queue);
    d->start_queue = NULL;
    d->n_start = d->start_pos = 0;
    if (d->start_ev != NULL) {
        event_free(d->start_ev);
        d->start_ev = NULL;
    }
}

/* ---- apply ---- */

void mpd_registry_apply(mpd *d, mpc_instance_conf **confs, size_t n)
{
    mp_instance **next = mpu_calloc(n + 1, sizeof *next);
    int *kept = mpu_calloc(d->n_instances + 1, sizeof *kept);
    size_t n_next = 0;

    /* Keep instances whose file is unchanged; retire the rest first so an
     * account id moving between files never exists twice. */
    for (size_t i = 0; i < n; i++) {
        char *hash = file_hash(confs[i]->file);
        for (size_t j = 0; j < d->n_instances; j++) {
            mp_instance *old = d->instances[j];
            if (!kept[j] && strcmp(old->name, confs[i]->name) == 0 &&
                strcmp(old->content_hash, hash) == 0 && old->desc != NULL) {
                kept[j] = 1;
                next[n_next++] = old;
                mpc_instance_conf **one = mpu_malloc(sizeof *one);
                one[0] = confs[i];
                mpc_instances_free(&one, 1);
                confs[i] = NULL;
                break;
            }
        }
        free(hash);
    }
    pthread_rwlock_wrlock(&d->registry_lock);
    mp_instance **old_list = d->instances;
    size_t old_n = d->n_instances;
    d->instances = next;
    d->n_instances = n_next;
    pthread_rwlock_unlock(&d->registry_lock);
    for (size_t j = 0; j < old_n; j++) {
        if (!kept[j]) {
            mpu_info(old_list[j]->name, "instance removed or changed; retiring it");
            instance_retire(d, old_list[j], 1, confs, n);
        } else {
            /* Kept accounts pick up changed global intervals. */
            for (size_t k = 0; k < old_list[j]->n_accounts; k++)
                if (old_list[j]->accounts[k]->open)
                    mpd_account_apply_intervals(old_list[j]->accounts[k]);
        }
    }
    free(old_list);
    free(kept);

    for (size_t i = 0; i < n; i++) {
        if (confs[i] == NULL)
            continue;
        mp_instance *inst = instance_new(d, confs[i]);
        confs[i] = NULL;
        pthread_rwlock_wrlock(&d->registry_lock);
        instance_add_accounts(d, inst);
        d->instances[d->n_instances++] = inst;
        pthread_rwlock_unlock(&d->registry_lock);
        starts_queue(d, inst);
    }
}

/* ---- cluster leases ---- */

/* The slot of account `id` in its instance, or NULL. Loop thread. */
static struct mp_account **account_slot(mpd *d, const char *id)
{
    for (size_t i = 0; i < d->n_instances; i++) {
        mp_instance *inst = d->instances[i];
        for (size_t j = 0; j < inst->n_accounts; j++)
            if (strcmp(inst->accounts[j]->id, id) == 0)
                return &inst->accounts[j];
    }
    return NULL;
}

/* Stop the account in `slot` the way a removal does (off the schedule,
 * push stopped, closed once its last job let go) and leave a fresh,
 * unstarted object in its place: the driver state of an account is tied
 * to its object's lifetime. Returns the fresh object. */
static struct mp_account *slot_renew(mpd *d, struct mp_account **slot)
{
    struct mp_account *old = *slot;
    mp_instance *inst = old->inst;
    pthread_rwlock_wrlock(&d->registry_lock);
    *slot = account_new(d, inst, old->cfg);
    pthread_rwlock_unlock(&d->registry_lock);
    old->removed = 1;
    mphost_subs_forget(inst, old->id);
    /* The credentials too: while another node held the account it may
     * have rotated the refresh token, so the fresh object's oauth_setup
     * starts from the stored one, not from what this node last knew. */
    if (d->oauth != NULL)
        mpo_account_remove(d->oauth, old->id);
    if (d->sched != NULL)
        mpj_account_remove(d->sched, old->id);
    if (old->push_started && inst->desc != NULL && inst->desc->push_stop != NULL)
        inst->desc->push_stop(old);
    old->push_started = 0;
    mpd_account_unref(old);
    return *slot;
}

void mpd_registry_account_acquire(mpd *d, const char *id)
{
    struct mp_account **slot = account_slot(d, id);
    if (slot == NULL)
        return;
    /* The standby copy gives way to a full one. */
    if (atomic_load(&(*slot)->standby))
        slot_renew(d, slot);
    if ((*slot)->open || (*slot)->open_retry_timer != NULL)
        return;
    account_start(d, *slot, d->start_index++);
}

/* A lost lease stops the account and, for a webhook account, opens its
 * fresh object in standby. */
void mpd_registry_account_release(mpd *d, const char *id)
{
    struct mp_account **slot = account_slot(d, id);
    if (slot == NULL)
        return;
    account_standby(d, slot_renew(d, slot));
}

/* ---- standby ----
 *
 * A provider's POST may land on any node behind a load balancer, and the
 * node that receives it verifies it. So in a cluster every node opens the
 * webhook accounts it does not hold with their driver too, in standby
 * (host_objects.h): push_verify finds them and their subscription (the
 * host's index, and whatever the driver read from its stored state at
 * open), push_hint stores the hint, and the store signals the holder
 * (store/signal.h). Nothing else runs for them here.
 *
 * A standby copy is what the store held when it opened. When the holder
 * changes it (a subscription enrolled, renewed or recreated, a driver
 * state write), the store signals that too and the copy is opened again
 * (mpd_registry_standby_refresh): a fresh object, so the driver reads
 * everything anew. */

#define STANDBY_RETRY_MS 5000

static void standby_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct mp_account *a = arg;
    if (!a->removed && !a->open && !atomic_load(&a->standby) && a->d->cluster != NULL &&
        !mpd_cluster_holds(a->d->cluster, a->id))
        account_standby(a->d, a);
    mpd_account_unref(a);
}

static void account_standby(mpd *d, struct mp_account *a)
{
    mp_instance *inst = a->inst;
    if (d->cluster == NULL || a->open || atomic_load(&a->standby) || a->removed ||
        !a->enabled || inst->desc == NULL || !inst->initialized ||
        inst->desc->push_kind != MP_PUSH_WEBHOOK || inst->desc->push_verify == NULL)
        return;
    /* Set first: what the driver reports while it opens is dropped. */
    atomic_store(&a->standby, 1);
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = inst->desc->account_open(a, a->cfg, &a->state, &err);
    mphost_call_end();
    if (st != MP_OK) {
        atomic_store(&a->standby, 0);
        a->state = NULL;
        /* The holder reports a configuration error; a passing one (the
         * store, the token service) is tried again. */
        if (st == MP_RETRY) {
            mpu_warn(a->id, "standby: %s; trying again in %d s",
                     err.text[0] ? err.text : "account_open: retrying",
                     STANDBY_RETRY_MS / 1000);
            atomic_fetch_add(&a->refs, 1);
            struct timeval tv = {STANDBY_RETRY_MS / 1000, 0};
            event_base_once(d->base, -1, EV_TIMEOUT, standby_retry_cb, a, &tv);
        } else {
            mpu_debug(a->id, "standby: %s (its holder reports it)",
                      err.text[0] ? err.text : "account_open failed");
        }
        return;
    }
    char *error = NULL;
    mps_subscription sub;
    int rc = mps_subscription_get(d->store, a->id, &sub, &error);
    if (rc == 0) {
        mphost_subs_put(a, sub.provider_id, sub.expires_at, sub.cursor_hint, sub.secret);
        mps_subscription_clear(&sub);
    } else if (rc < 0) {
        mpu_warn(a->id, "standby: cannot read the push subscription: %s", error);
        free(error);
    }
}

void mpd_registry_standby_refresh(mpd *d, const char *id)
{
    struct mp_account **slot = account_slot(d, id);
    if (slot == NULL || !atomic_load(&(*slot)->standby))
        return;
    account_standby(d, slot_renew(d, slot));
}

size_t mpd_registry_standby_refresh_all(mpd *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n_instances; i++) {
        mp_instance *inst = d->instances[i];
        for (size_t j = 0; j < inst->n_accounts; j++) {
            if (!atomic_load(&inst->accounts[j]->standby))
                continue;
            account_standby(d, slot_renew(d, &inst->accounts[j]));
            n++;
        }
    }
    return n;
}

size_t mpd_registry_standby_count(mpd *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n_instances; i++)
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++)
            n += atomic_load(&d->instances[i]->accounts[j]->standby) != 0;
    return n;
}

size_t mpd_registry_account_ids(mpd *d, char ***ids_r)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n_instances; i++)
        n += d->instances[i]->n_accounts;
    char **ids = mpu_calloc(n + 1, sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; i < d->n_instances; i++)
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++)
            ids[k++] = mpu_strdup(d->instances[i]->accounts[j]->id);
    *ids_r = ids;
    return k;
}

void mpd_registry_resume_stopped(mpd *d)
{
    for (size_t i = 0; i < d->n_instances; i++) {
        mp_instance *inst = d->instances[i];
        for (size_t j = 0; j < inst->n_accounts; j++) {
            struct mp_account *a = inst->accounts[j];
            if (!a->open || !atomic_exchange(&a->stopped, 0))
                continue;
            mpu_info(a->id, "configuration reloaded: trying the parked account again");
            mpj_trigger(d->sched, a->id, MPJ_SYNC, NULL, "reload");
        }
    }
}

void mpd_registry_clear(mpd *d)
{
    starts_clear(d);
    pthread_rwlock_wrlock(&d->registry_lock);
    mp_instance **list = d->instances;
    size_t n = d->n_instances;
    d->instances = NULL;
    d->n_instances = 0;
    pthread_rwlock_unlock(&d->registry_lock);
    for (size_t i = 0; i < n; i++)
        instance_retire(d, list[i], 0, NULL, 0);
    free(list);
}

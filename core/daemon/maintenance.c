/* Global periodic tasks on the worker pool (the scheduler never overlaps
 * runs of one task):
 *   cache cleanup     delete bodies past their retention (daily);
 *   push renewal      sync accounts whose webhook subscription is missing
 *                     or expires within a day: the sync job renews it
 *                     (hourly; the job itself runs one driver call at a time
 *                     per account, as the driver contract requires);
 *   bootstrap sweep   sync accounts that still have folders never
 *                     connected, e.g. after a failure (every 4 min);
 *   outbox retention  prune events older than outbox.retention_days
 *                     (outbox.prune_interval). Its timer is on the loop
 *                     thread, which owns the settings (a reload swaps
 *                     them): it copies what the run needs, the webhook
 *                     endpoints and the bus relay's cursor name included,
 *                     and hands the run to a worker.
 *                     Each chunk is its own short transaction;
 *   memory trim       give the C library's free pages back to the system
 *                     (every 30 s). */
#include "daemon/daemon.h"

#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "bus/bus.h"
#include "util/log.h"
#include "util/util.h"

#define RENEW_WINDOW_MS (24LL * 3600 * 1000)
#define DAY_MS (24LL * 3600 * 1000)
/* Events per retention chunk: a few milliseconds of write lock. */
#define PRUNE_CHUNK 1000

static void cache_cleanup(void *arg)
{
    mpd *d = arg;
    mps_store *s = mpd_store(d);
    int64_t removed = 0;
    char *error = NULL;
    if (s == NULL)
        return;
    if (mps_body_cleanup(s, mpu_now_ms(), &removed, &error) < 0) {
        mpu_error("cache", "cleanup failed: %s", error);
        free(error);
        return;
    }
    if (removed > 0)
        mpu_info("cache", "removed %lld expired bodies", (long long)removed);
}

/*
 * glibc keeps freed memory inside its arenas: a start with thousands of
 * accounts (connect threads, first syncs) or a reconciliation sweep frees
 * most of what it allocated, but the pages stay resident between the
 * chunks still in use. Measured at 1,000 push-live IMAP accounts: 50.7 MiB
 * RSS before malloc_trim, 36.5 MiB after (14 KiB per account); with TLS,
 * 77.8 MiB before and 62.7 MiB after, 75 s after start. The trim walks
 * the arenas' free lists on a worker every 30 s, so memory freed by a
 * burst (the sync connections closing after sync_idle_close) goes back
 * soon.
 */
#define TRIM_INTERVAL_MS 30000u

static void memory_trim(void *arg)
{
    (void)arg;
#ifdef __GLIBC__
    int64_t t0 = mpu_mono_ms();
    int released = malloc_trim(0);
    mpu_debug("core", "memory trim: %s in %lld ms", released ? "pages released" : "nothing",
              (long long)(mpu_mono_ms() - t0));
#endif
}

/* Snapshot of account ids (with references) so the registry lock is not
 * held across store reads. */
static struct mp_account **accounts_snapshot(mpd *d, size_t *n_r)
{
    pthread_rwlock_rdlock(&d->registry_lock);
    size_t n = 0;
    for (size_t i = 0; i < d->n_instances; i++)
        n += d->instances[i]->n_accounts;
    struct mp_account **list = mpu_calloc(n + 1, sizeof *list);
    size_t k = 0;
    for (size_t i = 0; i < d->n_instances; i++) {
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++) {
            struct mp_account *a = d->instances[i]->accounts[j];
            if (!a->open || a->stopped)
                continue;
            atomic_fetch_add(&a->refs, 1);
            list[k++] = a;
        }
    }
    pthread_rwlock_unlock(&d->registry_lock);
    *n_r = k;
    return list;
}

static void push_renewal(void *arg)
{
    mpd *d = arg;
    mps_store *s = mpd_store(d);
    size_t n = 0;
    struct mp_account **list = accounts_snapshot(d, &n);
    int64_t now = mpu_now_ms();
    for (size_t i = 0; i < n; i++) {
        struct mp_account *a = list[i];
        if (s != NULL && a->inst->desc->push_kind == MP_PUSH_WEBHOOK) {
            mps_subscription sub;
            char *error = NULL;
            int rc = mps_subscription_get(s, a->id, &sub, &error);
            int due = rc == 1 || (rc == 0 && sub.expires_at != 0 &&
                                  sub.expires_at * 1000 - now < RENEW_WINDOW_MS);
            if (rc == 0)
                mps_subscription_clear(&sub);
            free(error);
            if (due)
                mpj_trigger_async(d->sched, a->id, MPJ_SYNC, NULL, "push-renewal");
        }
        mpd_account_unref(a);
    }
    free(list);
}

static void bootstrap_sweep(void *arg)
{
    mpd *d = arg;
    mps_store *s = mpd_store(d);
    size_t n = 0;
    struct mp_account **list = accounts_snapshot(d, &n);
    for (size_t i = 0; i < n; i++) {
        mps_folder *folders = NULL;
        size_t nf = 0;
        char *error = NULL;
        if (s != NULL && mps_folders_list(s, list[i]->id, &folders, &nf, &error) == 0) {
            for (size_t f = 0; f < nf; f++) {
                if (!folders[f].bootstrapped) {
                    mpj_trigger_async(d->sched, list[i]->id, MPJ_SYNC, NULL, "bootstrap");
                    break;
                }
            }
            mps_folders_free(&folders, nf);
        } else {
            free(error);
        }
        mpd_account_unref(list[i]);
    }
    free(list);
}

/* ---- outbox retention ---- */

typedef struct prune_run {
    mpd *d;
    int64_t before_ms;
    char **endpoints; /* NULL-terminated */
    int64_t removed;
    int failed;
} prune_run;

static void prune_work(void *arg)
{
    prune_run *r = arg;
    mps_store *s = mpd_store(r->d);
    const char *const *eps = (const char *const *)r->endpoints;
    if (s == NULL) {
        r->failed = 1;
        return;
    }
    for (;;) {
        int64_t upto = 0, removed = 0;
        int more = 0;
        char *error = NULL;
        if (mps_outbox_prune_plan(s, r->before_ms, eps, PRUNE_CHUNK, &upto, &more,
                                  &error) < 0) {
            mpu_error("outbox", "retention failed: %s", error);
            free(error);
            r->failed = 1;
            return;
        }
        if (upto <= mpe_horizon(r->d->events))
            return;
        /* Raised before the delete commits: see core/events/events.h. */
        mpe_horizon_raise(r->d->events, upto);
        if (mps_outbox_prune_apply(s, upto, eps, &removed, &error) < 0) {
            mpu_error("outbox", "retention failed: %s", error);
            free(error);
            r->failed = 1;
            /* Back to what the store says: a stream that read the raised
             * value meanwhile announced a gap early, which loses nothing
             * it was not told about. */
            int64_t stored = 0;
            if (mps_outbox_horizon(s, &stored, NULL) == 0)
                mpe_horizon_set(r->d->events, stored);
            return;
        }
        r->removed += removed;
        if (!more)
            return;
    }
}

static void prune_done(void *arg)
{
    prune_run *r = arg;
    if (r->removed > 0)
        mpu_info("outbox", "retention removed %lld events (horizon %lld)",
                 (long long)r->removed, (long long)mpe_horizon(r->d->events));
    r->d->outbox_running = 0;
    for (char **p = r->endpoints; *p != NULL; p++)
        free(*p);
    free(r->endpoints);
    free(r);
}

static void prune_tick(evutil_socket_t fd, short what, void *arg)
{
    mpd *d = arg;
    const mp_settings *s = d->settings;
    uint64_t ms = (uint64_t)s->outbox.prune_interval * 1000u;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(d->outbox_timer, &tv);
    if (s->outbox.retention_days == 0 || d->outbox_running || d->sched == NULL)
        return;
    prune_run *r = mpu_calloc(1, sizeof *r);
    r->d = d;
    r->before_ms = mpu_now_ms() - (int64_t)s->outbox.retention_days * DAY_MS;
    r->endpoints = mpu_calloc(s->n_webhooks + 2, sizeof *r->endpoints);
    for (size_t i = 0; i < s->n_webhooks; i++)
        r->endpoints[i] = mpu_strdup(s->webhooks[i].name);
    /* The bus relay keeps its position as one more cursor: nothing it has
     * not published is pruned (core/bus/bus.h). */
    if (s->bus.enabled)
        r->endpoints[s->n_webhooks] = mpu_strdup(MPB_CURSOR_NAME);
    d->outbox_running = 1;
    mpj_submit(d->sched, 0, prune_work, prune_done, r);
}

void mpd_maintenance_stop(mpd *d)
{
    if (d->outbox_timer != NULL)
        event_free(d->outbox_timer);
    d->outbox_timer = NULL;
}

void mpd_maintenance_start(mpd *d)
{
    const mp_settings *s = d->settings;
    /* The first cleanup a minute after start, or sooner when the interval
     * is shorter (tests). */
    uint64_t cleanup_ms = (uint64_t)s->schedule.cache_cleanup_interval * 1000u;
    uint64_t renew_ms = (uint64_t)s->schedule.push_renew_interval * 1000u;
    uint64_t sweep_ms = (uint64_t)s->schedule.bootstrap_interval * 1000u;
    mpj_periodic(d->sched, "cache-cleanup", cleanup_ms,
                 cleanup_ms < 60000u ? cleanup_ms : 60000u, cache_cleanup, d);
    mpj_periodic(d->sched, "push-renewal", renew_ms, renew_ms, push_renewal, d);
    mpj_periodic(d->sched, "bootstrap-sweep", sweep_ms, sweep_ms, bootstrap_sweep, d);
    mpj_periodic(d->sched, "memory-trim", TRIM_INTERVAL_MS, TRIM_INTERVAL_MS, memory_trim, d);
    /* The first run a minute after start, or sooner with a short interval. */
    uint64_t prune_ms = (uint64_t)s->outbox.prune_interval * 1000u;
    if (prune_ms > 60000u)
        prune_ms = 60000u;
    d->outbox_timer = evtimer_new(d->base, prune_tick, d);
    struct timeval tv = {.tv_sec = prune_ms / 1000, .tv_usec = (prune_ms % 1000) * 1000};
    evtimer_add(d->outbox_timer, &tv);
}

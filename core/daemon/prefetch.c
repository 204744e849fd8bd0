/* The cache warmer (see prefetch.h): feeds the queue, runs the warming job
 * on the pool, keeps its counters. */
#include "daemon/prefetch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "daemon/daemon.h"
#include "util/log.h"
#include "util/util.h"

/* New mail is warmed soon, not instantly: a sync commits in several
 * batches and one run after the last of them serves them all. */
#define KICK_DELAY_MS 1000

struct mpd_prefetch {
    mpd_pfq *q;
    pthread_mutex_t run_lock; /* one warming run at a time                  */
    struct event *kick_ev;    /* loop thread: a run soon after new mail     */
    atomic_int kick_armed;    /* kick_ev added and its run not begun        */
    atomic_int stopping;
    atomic_ullong runs, fetched, failed, skipped;
};

/* Fetch one queued entry unless it no longer needs it. Worker thread. */
static void warm_one(mpd *d, mps_store *s, const mpd_pf_item *it)
{
    struct mpd_prefetch *pf = d->prefetch;
    mps_message m;
    char *error = NULL;
    int rc = mps_message_get(s, it->id, &m, &error);
    if (rc != 0) {
        free(error);
        atomic_fetch_add(&pf->skipped, 1);
        return;
    }
    if (m.deleted || m.has_body) {
        atomic_fetch_add(&pf->skipped, 1);
        mps_message_clear(&m);
        return;
    }
    mp_raw raw;
    int status = mpd_fetch_body(d, &m, &raw, &error);
    if (status == 200) {
        atomic_fetch_add(&pf->fetched, 1);
        mpu_debug(it->account, "warmed %s (%zu bytes)", it->id, raw.len);
    } else if (status == 404) {
        atomic_fetch_add(&pf->skipped, 1);
    } else {
        /* The reader still gets it on demand; no retry from here. */
        atomic_fetch_add(&pf->failed, 1);
        mpu_debug(it->account, "could not warm %s: %s", it->id, error);
    }
    free(raw.data);
    free(error);
    mps_message_clear(&m);
}

/* One warming run. Returns 0 when another run was in progress (nothing
 * done). Worker thread. */
static int warm_run(mpd *d)
{
    struct mpd_prefetch *pf = d->prefetch;
    if (pthread_mutex_trylock(&pf->run_lock) != 0)
        return 0;
    mpd_knobs k = mpd_knobs_get(d);
    mps_store *s = mpd_store(d);
    mpd_pf_item *items = NULL;
    size_t n = 0;
    if (s != NULL && !atomic_load(&pf->stopping))
        n = mpd_pfq_take(pf->q, k.prefetch_per_run, &items);
    /* Items are interleaved across accounts, and this loop is the only one
     * fetching for the warmer: each account sees one fetch at a time. */
    for (size_t i = 0; i < n && !atomic_load(&pf->stopping); i++)
        warm_one(d, s, &items[i]);
    free(items);
    atomic_fetch_add(&pf->runs, 1);
    pthread_mutex_unlock(&pf->run_lock);
    return 1;
}

static void arm_kick(struct mpd_prefetch *pf)
{
    if (atomic_exchange(&pf->kick_armed, 1) != 0 || atomic_load(&pf->stopping))
        return;
    struct timeval tv = {KICK_DELAY_MS / 1000, (KICK_DELAY_MS % 1000) * 1000};
    /* event_add is safe from any thread (the loop uses pthread locking). */
    event_add(pf->kick_ev, &tv);
}

static void periodic_work(void *arg)
{
    warm_run(arg);
}

static void kick_work(void *arg)
{
    mpd *d = arg;
    struct mpd_prefetch *pf = d->prefetch;
    /* New mail from now on arms another kick rather than hoping this run
     * sees it. */
    atomic_store(&pf->kick_armed, 0);
    if (!warm_run(d) && mpd_pfq_len(pf->q) > 0)
        arm_kick(pf); /* a periodic run is busy: try again shortly */
}

static void kick_done(void *arg)
{
    (void)arg;
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    mpd *d = arg;
    (void)fd;
    (void)what;
    if (atomic_load(&d->prefetch->stopping)) {
        atomic_store(&d->prefetch->kick_armed, 0);
        return;
    }
    mpj_submit(d->sched, 0, kick_work, kick_done, d);
}

void mpd_prefetch_start(mpd *d)
{
    struct mpd_prefetch *pf = mpu_calloc(1, sizeof *pf);
    pf->q = mpd_pfq_new();
    pthread_mutex_init(&pf->run_lock, NULL);
    pf->kick_ev = evtimer_new(d->base, kick_cb, d);
    d->prefetch = pf;
    uint64_t ms = (uint64_t)d->settings->cache.prefetch_interval * 1000u;
    mpj_periodic(d->sched, "prefetch", ms, ms, periodic_work, d);
}

void mpd_prefetch_stop(mpd *d)
{
    if (d->prefetch == NULL)
        return;
    atomic_store(&d->prefetch->stopping, 1);
    event_del(d->prefetch->kick_ev);
}

void mpd_prefetch_free(mpd *d)
{
    struct mpd_prefetch *pf = d->prefetch;
    if (pf == NULL)
        return;
    event_free(pf->kick_ev);
    mpd_pfq_free(&pf->q);
    pthread_mutex_destroy(&pf->run_lock);
    free(pf);
    d->prefetch = NULL;
}

void mpd_prefetch_new_mail(mpd *d, const char *account, const char *id)
{
    struct mpd_prefetch *pf = d->prefetch;
    if (pf == NULL)
        return;
    mpd_knobs k = mpd_knobs_get(d);
    if (k.prefetch_per_run == 0)
        return;
    if (mpd_pfq_push(pf->q, account, id, MPD_PF_HIGH, k.prefetch_queue_max, mpu_now_ms()) > 0)
        arm_kick(pf);
}

void mpd_prefetch_listed(mpd *d, const mps_message *list, size_t n)
{
    struct mpd_prefetch *pf = d->prefetch;
    if (pf == NULL || d->settings->cache.prefetch_per_run == 0)
        return;
    size_t want = d->settings->cache.prefetch_count;
    size_t max = d->settings->cache.prefetch_queue_max;
    int64_t now = mpu_now_ms();
    for (size_t i = 0; i < n && i < want; i++) {
        if (list[i].has_body || list[i].deleted)
            continue;
        mpd_pfq_push(pf->q, list[i].account, list[i].id, MPD_PF_NORMAL, max, now);
    }
}

void mpd_prefetch_stats_get(mpd *d, mpd_prefetch_stats *st)
{
    memset(st, 0, sizeof *st);
    struct mpd_prefetch *pf = d->prefetch;
    if (pf == NULL)
        return;
    st->queued = mpd_pfq_len(pf->q);
    st->dropped = mpd_pfq_dropped(pf->q);
    st->runs = atomic_load(&pf->runs);
    st->fetched = atomic_load(&pf->fetched);
    st->failed = atomic_load(&pf->failed);
    st->skipped = atomic_load(&pf->skipped);
}

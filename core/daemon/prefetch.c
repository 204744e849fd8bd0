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
/* A fetch slower than this ends the account's share of a run: the rest
 * goes back to the queue, so a slow provider holds its worker (and its
 * fetch lock) for one fetch at a time, not for a whole run. */
#define WARM_SLOW_MS 5000

/*
 * A run (loop thread) takes up to cache.prefetch_per_run entries per
 * account from the queue and hands each account's share to the scheduler
 * as one account job of class WARM: the scheduler's caps keep warming from
 * holding more than its share of workers, an account's warming counts
 * against that account, and one slow provider delays its own bodies only.
 * An account whose previous share is still running gets its entries back
 * in the queue for a later run.
 */
typedef struct warm_run warm_run;
typedef struct warm_batch warm_batch;

struct warm_run {
    size_t pending; /* batches not completed yet */
};

struct warm_batch {
    warm_batch *next;
    mpd *d;
    warm_run *run;
    char account[65];
    mpd_pf_item *items;
    size_t n;
    size_t done; /* worker: entries dealt with; the rest goes back */
};

struct mpd_prefetch {
    mpd_pfq *q;
    struct event *kick_ev;    /* loop thread: a run soon after new mail     */
    struct event *tick_ev;    /* loop thread: the periodic run              */
    atomic_int kick_armed;    /* kick_ev added and its run not begun        */
    atomic_int stopping;
    warm_batch *inflight;     /* loop thread: shares in the pool            */
    atomic_ullong runs, fetched, failed, skipped;
};

/* Fetch one queued entry unless it no longer needs it. Worker thread.
 * Returns 0 when the account's fetch lock was busy (nothing done). */
static int warm_one(mpd *d, mps_store *s, const mpd_pf_item *it)
{
    struct mpd_prefetch *pf = d->prefetch;
    mps_message m;
    char *error = NULL;
    int rc = mps_message_get(s, it->id, &m, &error);
    if (rc != 0) {
        free(error);
        atomic_fetch_add(&pf->skipped, 1);
        return 1;
    }
    if (m.deleted || m.has_body) {
        atomic_fetch_add(&pf->skipped, 1);
        mps_message_clear(&m);
        return 1;
    }
    mp_raw raw;
    int status = mpd_fetch_body(d, &m, &raw, 0, &error);
    if (status == 200) {
        atomic_fetch_add(&pf->fetched, 1);
        mpu_debug(it->account, "warmed %s (%zu bytes)", it->id, raw.len);
    } else if (status == 404) {
        atomic_fetch_add(&pf->skipped, 1);
    } else if (status == 409) {
        /* A fetch on demand has the account: it goes first. */
    } else {
        /* The reader still gets it on demand; no retry from here. */
        atomic_fetch_add(&pf->failed, 1);
        mpu_debug(it->account, "could not warm %s: %s", it->id, error);
    }
    free(raw.data);
    free(error);
    mps_message_clear(&m);
    return status != 409;
}

static void batch_work(void *arg)
{
    warm_batch *b = arg;
    mpd *d = b->d;
    mps_store *s = mpd_store(d);
    if (s == NULL)
        return;
    while (b->done < b->n && !atomic_load(&d->prefetch->stopping)) {
        int64_t started = mpu_mono_ms();
        if (!warm_one(d, s, &b->items[b->done]))
            break;
        b->done++;
        if (mpu_mono_ms() - started > WARM_SLOW_MS)
            break;
    }
}

static void arm_kick(struct mpd_prefetch *pf);

/* Entries back into the queue, for a later run. */
static void requeue(mpd *d, const mpd_pf_item *items, size_t n)
{
    struct mpd_prefetch *pf = d->prefetch;
    mpd_knobs k = mpd_knobs_get(d);
    int64_t now = mpu_now_ms();
    for (size_t i = 0; i < n; i++)
        mpd_pfq_push(pf->q, items[i].account, items[i].id, items[i].prio,
                     k.prefetch_queue_max, now);
}

static void run_release(struct mpd_prefetch *pf, warm_run *run)
{
    if (--run->pending > 0)
        return;
    atomic_fetch_add(&pf->runs, 1);
    free(run);
}

static void batch_done(void *arg)
{
    warm_batch *b = arg;
    mpd *d = b->d;
    struct mpd_prefetch *pf = d->prefetch;
    for (warm_batch **p = &pf->inflight; *p != NULL; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            break;
        }
    if (b->done < b->n && !atomic_load(&pf->stopping)) {
        requeue(d, b->items + b->done, b->n - b->done);
        arm_kick(pf);
    }
    run_release(pf, b->run);
    free(b->items);
    free(b);
}

static int item_cmp(const void *a, const void *b)
{
    const mpd_pf_item *x = a, *y = b;
    int c = strcmp(x->account, y->account);
    if (c != 0)
        return c;
    /* Stable: mpd_pfq_take's order within an account (HIGH first, FIFO). */
    return x->enqueued_ms < y->enqueued_ms ? -1 : x->enqueued_ms > y->enqueued_ms;
}

/* One warming run. Loop thread. */
static void warm_dispatch(mpd *d)
{
    struct mpd_prefetch *pf = d->prefetch;
    if (atomic_load(&pf->stopping))
        return;
    mpd_knobs k = mpd_knobs_get(d);
    mpd_pf_item *items = NULL;
    size_t n = mpd_pfq_take(pf->q, k.prefetch_per_run, &items);
    warm_run *run = mpu_calloc(1, sizeof *run);
    run->pending = 1; /* this function's own reference */
    /* The order within an account is kept by tagging each entry with its
     * position (enqueued_ms is not needed past this point). */
    for (size_t i = 0; i < n; i++)
        items[i].enqueued_ms = (int64_t)i;
    if (n > 1)
        qsort(items, n, sizeof *items, item_cmp);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && strcmp(items[j].account, items[i].account) == 0; j++)
            ;
        int busy = 0;
        for (warm_batch *b = pf->inflight; b != NULL && !busy; b = b->next)
            busy = strcmp(b->account, items[i].account) == 0;
        if (busy) {
            requeue(d, items + i, j - i);
            continue;
        }
        warm_batch *b = mpu_calloc(1, sizeof *b);
        b->d = d;
        b->run = run;
        mpu_strlcpy(b->account, items[i].account, sizeof b->account);
        b->n = j - i;
        b->items = mpu_calloc(b->n, sizeof *b->items);
        memcpy(b->items, items + i, b->n * sizeof *b->items);
        run->pending++;
        if (mpj_account_submit(d->sched, b->account, MPJ_CLASS_WARM, 0, batch_work,
                               batch_done, b) != 0) {
            /* Not a scheduled account (any more): nothing to warm. */
            atomic_fetch_add(&pf->skipped, b->n);
            run->pending--;
            free(b->items);
            free(b);
            continue;
        }
        b->next = pf->inflight;
        pf->inflight = b;
    }
    free(items);
    run_release(pf, run);
}

/* Any thread (event_add is safe: the loop uses pthread locking). */
static void arm_kick(struct mpd_prefetch *pf)
{
    if (atomic_exchange(&pf->kick_armed, 1) != 0 || atomic_load(&pf->stopping))
        return;
    struct timeval tv = {KICK_DELAY_MS / 1000, (KICK_DELAY_MS % 1000) * 1000};
    event_add(pf->kick_ev, &tv);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    mpd *d = arg;
    (void)fd;
    (void)what;
    /* New mail from now on arms another kick rather than hoping this run
     * sees it. */
    atomic_store(&d->prefetch->kick_armed, 0);
    warm_dispatch(d);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    warm_dispatch(arg);
}

void mpd_prefetch_start(mpd *d)
{
    struct mpd_prefetch *pf = mpu_calloc(1, sizeof *pf);
    pf->q = mpd_pfq_new();
    pf->kick_ev = evtimer_new(d->base, kick_cb, d);
    pf->tick_ev = event_new(d->base, -1, EV_PERSIST, tick_cb, d);
    d->prefetch = pf;
    struct timeval tv = {(time_t)d->settings->cache.prefetch_interval, 0};
    if (pf->tick_ev != NULL)
        event_add(pf->tick_ev, &tv);
}

void mpd_prefetch_stop(mpd *d)
{
    if (d->prefetch == NULL)
        return;
    atomic_store(&d->prefetch->stopping, 1);
    event_del(d->prefetch->kick_ev);
    if (d->prefetch->tick_ev != NULL)
        event_del(d->prefetch->tick_ev);
}

void mpd_prefetch_free(mpd *d)
{
    struct mpd_prefetch *pf = d->prefetch;
    if (pf == NULL)
        return;
    /* The scheduler is gone: every share's done callback has run. */
    event_free(pf->kick_ev);
    if (pf->tick_ev != NULL)
        event_free(pf->tick_ev);
    mpd_pfq_free(&pf->q);
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

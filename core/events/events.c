/* The event stream's state (see events.h): one wake-up event on the loop,
 * the watchers it calls, and the positions. Committed events wake the loop
 * thread once, however many commits happened meanwhile; watchers then read
 * the outbox themselves. The outbox's epoch begins here at open and its
 * clean-stop marker is written here at close (see store.h, "store
 * generations"). */
#include "events/events.h"

#include <stdatomic.h>
#include <stdlib.h>

#include <event2/event.h>

#include "util/log.h"
#include "util/util.h"

struct mpe_watch {
    struct mpe_watch *next;
    mpe_watch_cb cb;
    void *arg;
};

struct mpe_events {
    struct event *wake;       /* activated by mpe_committed, from any thread */
    _Atomic int64_t last_seq;
    mpe_watch *watchers;      /* loop thread                                 */
    int64_t epoch;            /* set by mpe_open, constant afterwards        */
    /* Highest seq pruned by outbox retention; raised before the prune
     * commits, so a reader that finds it at or below its position after a
     * read missed nothing. */
    _Atomic int64_t horizon;
};

static const char *scope = "events";

static void events_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mpe_events *e = arg;
    int64_t seq = atomic_load(&e->last_seq);
    for (mpe_watch *w = e->watchers, *next; w != NULL; w = next) {
        next = w->next; /* a callback may unwatch itself */
        w->cb(seq, w->arg);
    }
}

mpe_events *mpe_open(struct event_base *base, mps_store *s)
{
    mpe_events *e = mpu_calloc(1, sizeof *e);
    e->wake = event_new(base, -1, 0, events_wake, e);
    atomic_store(&e->last_seq, mps_events_last_seq(s));
    char *error = NULL;
    int unclean = 0;
    if (mps_epoch_begin(s, &e->epoch, &unclean, &error) < 0) {
        /* The marker stays as it was: a power loss now is noticed only if
         * the last stop was not clean either. */
        mpu_error(scope, "cannot begin the event epoch: %s", error);
        free(error);
        error = NULL;
        e->epoch = mps_epoch_current(s);
    } else if (unclean) {
        mpu_warn(scope,
                 "the last stop was not clean: event epoch %lld begins after seq %lld; "
                 "streams of an earlier epoch resume before it",
                 (long long)e->epoch, (long long)atomic_load(&e->last_seq));
    }
    int64_t horizon = 0;
    if (mps_outbox_horizon(s, &horizon, &error) < 0) {
        mpu_error(scope, "%s", error);
        free(error);
    }
    atomic_store(&e->horizon, horizon);
    return e;
}

void mpe_close(mpe_events **ep, mps_store *s)
{
    if (ep == NULL || *ep == NULL)
        return;
    mpe_events *e = *ep;
    char *error = NULL;
    /* Nothing writes after this (the caller's contract), and the marker's
     * commit makes everything before it durable. */
    if (s != NULL && e->epoch > 0 && mps_epoch_end(s, &error) < 0) {
        mpu_error(scope, "cannot mark the clean stop: %s", error);
        free(error);
    }
    while (e->watchers != NULL) {
        mpe_watch *w = e->watchers;
        e->watchers = w->next;
        free(w);
    }
    if (e->wake != NULL)
        event_free(e->wake);
    free(e);
    *ep = NULL;
}

void mpe_committed(mpe_events *e, int64_t seq)
{
    int64_t cur = atomic_load(&e->last_seq);
    while (seq > cur && !atomic_compare_exchange_weak(&e->last_seq, &cur, seq))
        ;
    /* Activating an event already active is a no-op: one wake per burst. */
    if (e->wake != NULL)
        event_active(e->wake, EV_READ, 0);
}

mpe_watch *mpe_watch_add(mpe_events *e, mpe_watch_cb cb, void *arg)
{
    mpe_watch *w = mpu_calloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    w->next = e->watchers;
    e->watchers = w;
    return w;
}

void mpe_unwatch(mpe_events *e, mpe_watch *handle)
{
    for (mpe_watch **p = &e->watchers; *p != NULL; p = &(*p)->next) {
        if (*p == handle) {
            mpe_watch *w = *p;
            *p = w->next;
            free(w);
            return;
        }
    }
}

int64_t mpe_last_seq(mpe_events *e)
{
    return atomic_load(&e->last_seq);
}

int64_t mpe_epoch(mpe_events *e)
{
    return e->epoch;
}

int mpe_resume(mpe_events *e, mps_store *s, int64_t epoch, int64_t seq,
               int64_t *after_r, char **error_r)
{
    if (epoch == 0 || epoch == e->epoch) {
        *after_r = seq;
        return 0;
    }
    return mps_epoch_resume(s, epoch, seq, after_r, error_r);
}

int64_t mpe_horizon(mpe_events *e)
{
    return atomic_load(&e->horizon);
}

void mpe_horizon_raise(mpe_events *e, int64_t upto)
{
    int64_t cur = atomic_load(&e->horizon);
    while (upto > cur && !atomic_compare_exchange_weak(&e->horizon, &cur, upto))
        ;
}

void mpe_horizon_set(mpe_events *e, int64_t horizon)
{
    atomic_store(&e->horizon, horizon);
}

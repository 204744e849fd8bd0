/* Committed events wake the loop thread once, however many commits happened
 * meanwhile; watchers (the SSE fan-out) then read the outbox themselves.
 * The outbox's epoch begins here at start and its clean-stop marker is
 * written here at stop (see store.h, "store generations"). */
#include "daemon/daemon.h"
#include "daemon/api.h"

#include <stdlib.h>

#include "util/log.h"
#include "util/util.h"

struct mpd_watcher {
    struct mpd_watcher *next;
    mpd_events_cb cb;
    void *arg;
};

static void events_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mpd *d = arg;
    int64_t seq = atomic_load(&d->last_seq);
    for (struct mpd_watcher *w = d->watchers, *next; w != NULL; w = next) {
        next = w->next; /* a callback may unwatch itself */
        w->cb(seq, w->arg);
    }
}

void mpd_events_init(mpd *d)
{
    d->events_ev = event_new(d->base, -1, 0, events_wake, d);
    atomic_store(&d->last_seq, mps_events_last_seq(d->store));
    char *error = NULL;
    int unclean = 0;
    if (mps_epoch_begin(d->store, &d->epoch, &unclean, &error) < 0) {
        /* The marker stays as it was: a power loss now is noticed only if
         * the last stop was not clean either. */
        mpu_error("events", "cannot begin the event epoch: %s", error);
        free(error);
        error = NULL;
        d->epoch = mps_epoch_current(d->store);
    } else if (unclean) {
        mpu_warn("events",
                 "the last stop was not clean: event epoch %lld begins after seq %lld; "
                 "streams of an earlier epoch resume before it",
                 (long long)d->epoch, (long long)atomic_load(&d->last_seq));
    }
    int64_t horizon = 0;
    if (mps_outbox_horizon(d->store, &horizon, &error) < 0) {
        mpu_error("events", "%s", error);
        free(error);
    }
    atomic_store(&d->outbox_horizon, horizon);
}

void mpd_events_free(mpd *d)
{
    char *error = NULL;
    /* Called after the workers and accounts stopped: nothing writes after
     * this, and the marker's commit makes everything before it durable. */
    if (d->store != NULL && d->epoch > 0 && mps_epoch_end(d->store, &error) < 0) {
        mpu_error("events", "cannot mark the clean stop: %s", error);
        free(error);
    }
    while (d->watchers != NULL) {
        struct mpd_watcher *w = d->watchers;
        d->watchers = w->next;
        free(w);
    }
    if (d->events_ev != NULL)
        event_free(d->events_ev);
    d->events_ev = NULL;
}

void mpd_events_committed(mpd *d, int64_t seq)
{
    int64_t cur = atomic_load(&d->last_seq);
    while (seq > cur && !atomic_compare_exchange_weak(&d->last_seq, &cur, seq))
        ;
    if (d->events_ev != NULL)
        event_active(d->events_ev, EV_READ, 0);
}

void *mpd_events_watch(mpd *d, mpd_events_cb cb, void *arg)
{
    struct mpd_watcher *w = mpu_calloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    w->next = d->watchers;
    d->watchers = w;
    return w;
}

void mpd_events_unwatch(mpd *d, void *handle)
{
    for (struct mpd_watcher **p = &d->watchers; *p != NULL; p = &(*p)->next) {
        if (*p == handle) {
            struct mpd_watcher *w = *p;
            *p = w->next;
            free(w);
            return;
        }
    }
}

int64_t mpd_api_last_seq(mpd *d)
{
    return atomic_load(&d->last_seq);
}

int64_t mpd_api_epoch(mpd *d)
{
    return d->epoch;
}

int64_t mpd_api_events_horizon(mpd *d)
{
    return atomic_load(&d->outbox_horizon);
}

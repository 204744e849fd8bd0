/* The signal listener of a cluster node (contract in
 * daemon/cluster_signals.h). */
#include "daemon/cluster_signals.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "store/signal.h"
#include "util/log.h"
#include "util/util.h"

/* How long to wait before connecting again after a failure. */
#define RECONNECT_MS 1000

struct mpd_signals {
    mpd *d;
    char *conninfo;
    char *owner;
    pthread_t thread;
    int thread_started;
    int wake_fd;            /* eventfd: stop                             */
    struct event *apply_ev; /* loop: drains `pending`                   */

    pthread_mutex_t lock;
    int stop;
    mps_signal *pending; /* kind 0: "connected: look at the stored state" */
    size_t n_pending, cap_pending;
    int connected;
    uint64_t n_push, n_standby, n_reconnects;
};

/* Under g->lock. */
static void pending_add(mpd_signals *g, mps_signal sig)
{
    if (g->n_pending == g->cap_pending) {
        g->cap_pending = g->cap_pending ? g->cap_pending * 2 : 16;
        g->pending = mpu_realloc(g->pending, g->cap_pending * sizeof *g->pending);
    }
    g->pending[g->n_pending++] = sig;
}

/* Wait until `fd` is readable, the stop is asked, or ms pass (-1: no
 * limit). 1 readable, 0 not, -1 stop. */
static int wait_for(mpd_signals *g, int fd, int ms)
{
    struct pollfd p[2] = {{.fd = g->wake_fd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    int rc = poll(p, fd >= 0 ? 2 : 1, ms);
    pthread_mutex_lock(&g->lock);
    int stop = g->stop;
    pthread_mutex_unlock(&g->lock);
    if (stop)
        return -1;
    return rc > 0 && fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

static void set_connected(mpd_signals *g, int connected)
{
    pthread_mutex_lock(&g->lock);
    g->connected = connected;
    if (connected) {
        /* What was sent while nobody listened is lost: the loop looks at
         * the stored state instead. */
        pending_add(g, (mps_signal){0});
        event_active(g->apply_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&g->lock);
}

static void *signals_main(void *arg)
{
    mpd_signals *g = arg;
    char *last_error = NULL;
    int had_connection = 0;
    for (;;) {
        char *err = NULL;
        mps_listener *l = mps_listener_open(g->conninfo, g->owner, &err);
        if (l == NULL) {
            if (last_error == NULL || strcmp(last_error, err) != 0)
                mpu_warn("cluster", "%s (pushes other nodes receive for accounts held"
                                    " here wait for their next sync; retrying)",
                         err);
            free(last_error);
            last_error = err;
            if (wait_for(g, -1, RECONNECT_MS) < 0)
                break;
            continue;
        }
        if (last_error != NULL)
            mpu_info("cluster", "signal listener connected again");
        free(last_error);
        last_error = NULL;
        if (had_connection) {
            pthread_mutex_lock(&g->lock);
            g->n_reconnects++;
            pthread_mutex_unlock(&g->lock);
        }
        had_connection = 1;
        set_connected(g, 1);
        int stop = 0;
        for (;;) {
            int r = wait_for(g, mps_listener_fd(l), -1);
            if (r < 0) {
                stop = 1;
                break;
            }
            if (r == 0)
                continue;
            mps_signal *v = NULL;
            size_t n = 0;
            int rc = mps_listener_read(l, &v, &n, &err);
            if (n > 0) {
                pthread_mutex_lock(&g->lock);
                for (size_t i = 0; i < n; i++)
                    pending_add(g, v[i]);
                event_active(g->apply_ev, EV_READ, 0);
                pthread_mutex_unlock(&g->lock);
                free(v); /* the strings moved to pending */
            }
            if (rc < 0) {
                last_error = err;
                mpu_warn("cluster", "%s; connecting again", err);
                break;
            }
        }
        set_connected(g, 0);
        mps_listener_close(l);
        if (stop || wait_for(g, -1, RECONNECT_MS) < 0)
            break;
    }
    free(last_error);
    return NULL;
}

/* Where the shared outbox ends now: this node's SSE clients get what
 * other nodes appended. */
static void events_caught_up(mpd *d)
{
    int64_t seq = mps_events_last_seq(d->store);
    if (seq > 0)
        mpd_events_committed(d, seq);
}

/* After a (re)connect: the outbox's end, the hints stored for accounts
 * held here and every standby copy, as if each had been signalled. */
static void catch_up(mpd_signals *g)
{
    mpd *d = g->d;
    events_caught_up(d);
    /* Only the accounts held here are on the schedule. */
    if (d->sched != NULL)
        mpd_registry_sync_pending_hints(d);
    size_t reopened = mpd_registry_standby_refresh_all(d);
    if (reopened > 0)
        mpu_debug("cluster", "signal listener connected: %zu standby accounts reopened",
                  reopened);
}

static void apply_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mpd_signals *g = arg;
    mpd *d = g->d;
    pthread_mutex_lock(&g->lock);
    mps_signal *v = g->pending;
    size_t n = g->n_pending;
    g->pending = NULL;
    g->n_pending = g->cap_pending = 0;
    pthread_mutex_unlock(&g->lock);
    uint64_t pushes = 0, standbys = 0;
    int events = 0;
    for (size_t i = 0; i < n; i++) {
        const mps_signal *sig = &v[i];
        if (sig->kind == 0) {
            catch_up(g);
            continue;
        }
        if (sig->from != NULL && strcmp(sig->from, g->owner) == 0)
            continue; /* ours: acted on when it was sent */
        if (sig->kind == MPS_SIGNAL_PUSH) {
            struct mp_account *a = mpd_account_peek(d, sig->account);
            if (a == NULL || !a->open || d->sched == NULL)
                continue; /* not ours, or its first sync takes the hint */
            mpd_account_note_push(a);
            mpj_trigger(d->sched, a->id, MPJ_SYNC, sig->folder, "push");
            pushes++;
        } else if (sig->kind == MPS_SIGNAL_STANDBY) {
            mpd_registry_standby_refresh(d, sig->account);
            standbys++;
        } else if (sig->kind == MPS_SIGNAL_EVENTS) {
            events = 1;
        }
    }
    /* However many commits signalled, one read of where the outbox ends
     * wakes this node's SSE clients (after a reconnect too: catch_up). */
    if (events)
        events_caught_up(d);
    mps_signals_free(v, n);
    pthread_mutex_lock(&g->lock);
    g->n_push += pushes;
    g->n_standby += standbys;
    pthread_mutex_unlock(&g->lock);
}

mpd_signals *mpd_signals_start(mpd *d, const char *conninfo, const char *owner)
{
    mpd_signals *g = mpu_calloc(1, sizeof *g);
    g->d = d;
    g->conninfo = mpu_strdup(conninfo);
    g->owner = mpu_strdup(owner);
    pthread_mutex_init(&g->lock, NULL);
    g->apply_ev = event_new(d->base, -1, 0, apply_cb, g);
    g->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g->wake_fd < 0 || pthread_create(&g->thread, NULL, signals_main, g) != 0) {
        mpu_error("cluster", "cannot start the signal listener: pushes received by other"
                             " nodes wait for each account's next sync");
        mpd_signals_free(&g);
        return NULL;
    }
    g->thread_started = 1;
    return g;
}

void mpd_signals_free(mpd_signals **gp)
{
    mpd_signals *g = *gp;
    if (g == NULL)
        return;
    *gp = NULL;
    if (g->thread_started) {
        pthread_mutex_lock(&g->lock);
        g->stop = 1;
        pthread_mutex_unlock(&g->lock);
        uint64_t one = 1;
        ssize_t w = write(g->wake_fd, &one, sizeof one);
        (void)w;
        pthread_join(g->thread, NULL);
    }
    if (g->wake_fd >= 0)
        close(g->wake_fd);
    event_free(g->apply_ev);
    mps_signals_free(g->pending, g->n_pending);
    pthread_mutex_destroy(&g->lock);
    free(g->conninfo);
    free(g->owner);
    free(g);
}

json_t *mpd_signals_status(mpd_signals *g)
{
    pthread_mutex_lock(&g->lock);
    json_t *o = json_pack("{s:b, s:I, s:I, s:I}", "connected", g->connected, "push",
                          (json_int_t)g->n_push, "standby", (json_int_t)g->n_standby,
                          "reconnects", (json_int_t)g->n_reconnects);
    pthread_mutex_unlock(&g->lock);
    return o;
}

/* systemd notification and watchdog (contract in notify.h).
 *
 * Why the watchdog is a loop timer: the event loop is what must not hang
 * (signals, the API, push streams, job completions all run on it). A
 * thread that pinged on its own would keep a stuck daemon alive; a timer
 * of the loop stops pinging exactly when the loop stops turning.
 *
 * Why STATUS= is polled: account and push states change on many paths
 * (jobs, drivers' push reports, reloads) across the daemon. Computing the
 * line from the registry's in-memory flags every few seconds on the loop
 * and sending it only when it differs costs nothing per account change and
 * never sends in a loop, without touching those paths.
 *
 * The unit is Type=notify, as systemd 252 (Debian 12) has no
 * Type=notify-reload; RELOADING=1 therefore carries no MONOTONIC_USEC,
 * which only notify-reload (253+) asks for. */
#include "daemon/notify.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/util.h"

#ifdef MP_HAVE_SYSTEMD

#include <systemd/sd-daemon.h>

/* How often the STATUS= line is recomputed (sent only when changed). */
#define STATUS_CHECK_MS 5000

struct mpd_notify {
    mpd *d;
    struct event *watchdog; /* NULL: no watchdog asked for                  */
    struct event *status;
    char *last_status;      /* the line systemd has                         */
    int reload_refused;     /* the last reload kept the old configuration   */
};

static void send_line(const char *msg)
{
    int r = sd_notify(0, msg);
    if (r < 0)
        mpu_warn("core", "sd_notify: %s", strerror(-r));
}

/* The registry changes only on the loop thread, where this runs. */
static char *status_line(const mpd_notify *n)
{
    const mpd *d = n->d;
    size_t total = 0, open = 0, parked = 0, closed = 0, disabled = 0, live = 0, silent = 0;
    for (size_t i = 0; i < d->n_instances; i++) {
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++) {
            struct mp_account *a = d->instances[i]->accounts[j];
            total++;
            if (!a->enabled) {
                disabled++;
                continue;
            }
            if (atomic_load(&a->stopped))
                parked++;
            else if (atomic_load(&a->open))
                open++;
            else
                closed++;
            if (atomic_load(&a->push_live)) {
                live++;
                if (atomic_load(&a->push_silent))
                    silent++;
            }
        }
    }
    return mpu_asprintf("accounts: %zu (open %zu, parked %zu, not open %zu, disabled %zu); "
                        "push: live %zu, silent %zu%s",
                        total, open, parked, closed, disabled, live, silent,
                        n->reload_refused ? "; last reload refused, see the journal" : "");
}

static void status_update(mpd_notify *n, const char *prefix)
{
    char *line = status_line(n);
    if (prefix == NULL && n->last_status != NULL && strcmp(line, n->last_status) == 0) {
        free(line);
        return;
    }
    char *msg = mpu_asprintf("%s%sSTATUS=%s", prefix != NULL ? prefix : "",
                             prefix != NULL ? "\n" : "", line);
    send_line(msg);
    free(msg);
    free(n->last_status);
    n->last_status = line;
}

static void on_status_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    status_update(arg, NULL);
}

static void on_watchdog_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    send_line("WATCHDOG=1");
}

mpd_notify *mpd_notify_ready(mpd *d)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock == NULL || sock[0] == '\0')
        return NULL;
    mpd_notify *n = mpu_calloc(1, sizeof *n);
    n->d = d;
    uint64_t usec = 0;
    int r = sd_watchdog_enabled(0, &usec);
    if (r < 0)
        mpu_warn("core", "watchdog: %s (no pings)", strerror(-r));
    if (r > 0 && usec > 0) {
        /* sd_watchdog_enabled(3): ping at half the timeout. */
        struct timeval half = {.tv_sec = (time_t)(usec / 2 / 1000000),
                               .tv_usec = (suseconds_t)(usec / 2 % 1000000)};
        n->watchdog = event_new(d->base, -1, EV_PERSIST, on_watchdog_timer, n);
        event_add(n->watchdog, &half);
        mpu_info("core", "systemd watchdog: %llu ms, pinged every %llu ms from the loop",
                 (unsigned long long)(usec / 1000), (unsigned long long)(usec / 2000));
    }
    struct timeval every = {.tv_sec = STATUS_CHECK_MS / 1000,
                            .tv_usec = (STATUS_CHECK_MS % 1000) * 1000};
    n->status = event_new(d->base, -1, EV_PERSIST, on_status_timer, n);
    event_add(n->status, &every);
    status_update(n, "READY=1");
    if (n->watchdog != NULL)
        send_line("WATCHDOG=1");
    return n;
}

void mpd_notify_reloading(mpd_notify *n)
{
    if (n != NULL)
        send_line("RELOADING=1\nSTATUS=reloading the configuration");
}

void mpd_notify_reloaded(mpd_notify *n, int applied)
{
    if (n == NULL)
        return;
    n->reload_refused = !applied;
    status_update(n, "READY=1");
}

void mpd_notify_stopping(mpd_notify *n)
{
    if (n != NULL)
        send_line("STOPPING=1\nSTATUS=stopping");
}

void mpd_notify_free(mpd_notify **np)
{
    if (np == NULL || *np == NULL)
        return;
    mpd_notify *n = *np;
    if (n->watchdog != NULL)
        event_free(n->watchdog);
    if (n->status != NULL)
        event_free(n->status);
    free(n->last_status);
    free(n);
    *np = NULL;
}

#else /* !MP_HAVE_SYSTEMD: built without libsystemd, nothing to tell. */

mpd_notify *mpd_notify_ready(mpd *d)
{
    (void)d;
    return NULL;
}

void mpd_notify_reloading(mpd_notify *n)
{
    (void)n;
}

void mpd_notify_reloaded(mpd_notify *n, int applied)
{
    (void)n;
    (void)applied;
}

void mpd_notify_stopping(mpd_notify *n)
{
    (void)n;
}

void mpd_notify_free(mpd_notify **n)
{
    if (n != NULL)
        *n = NULL;
}

#endif

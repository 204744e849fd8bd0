/* Who delivers the outbox from this process: the outbound webhooks
 * (core/webhook) and the event bus relay (core/bus). Alone, the daemon
 * takes the role at start; in a cluster, the node holding the outbox
 * lease does (cluster.c), so the shared outbox is delivered once. */
#include "daemon/daemon.h"

#include "bus/bus.h"
#include "webhook/webhook.h"

/* core/webhook's and core/bus's way to the store (mpw_store_fn,
 * mpb_store_fn): the calling thread's connection, asked for each time. */
static mps_store *thread_store(void *arg)
{
    return mpd_store(arg);
}

/* core/bus's way to the store: the relay thread's own connection. */
static void bus_store_done(void *arg)
{
    mpd_store_thread_cleanup(arg);
}

void mpd_outbox_role(mpd *d, int held)
{
    if (held) {
        if (d->webhooks == NULL)
            d->webhooks = mpw_start(d->base, d->events, thread_store, d, d->settings);
        if (d->bus == NULL)
            d->bus = mpb_start(d->events, d->store, thread_store, bus_store_done, d,
                               d->settings);
    } else {
        mpw_stop(&d->webhooks);
        mpb_stop(&d->bus);
    }
}

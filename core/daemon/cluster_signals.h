/*
 * Cluster mode: the signals other nodes send through the store
 * (store/signal.h), received on a thread of its own and acted on by the
 * loop. Owned by the cluster (cluster.c starts and stops it).
 *
 * - A push hint another node stored for an account this node holds and
 *   has open: the account syncs, and that run takes the stored hint as if
 *   the push had arrived here. One this node holds but has not opened yet
 *   waits for its first sync, which takes every stored hint.
 * - A change of what push verification reads, for an account this node
 *   keeps in standby: the standby copy is opened again
 *   (mpd_registry_standby_refresh).
 * - Events another node committed: this node's SSE clients are woken
 *   (the outbox is shared; d->events learns where it ends now).
 * - Signals sent while the listener was not connected are lost, so after
 *   every (re)connect the loop syncs each held account with stored hints,
 *   reopens every standby copy and reads where the outbox ends.
 *
 * The thread keeps its libpq connection to itself; signals cross to the
 * loop in a list under a lock, like the lease thread's ops.
 */
#ifndef MP_DAEMON_CLUSTER_SIGNALS_H
#define MP_DAEMON_CLUSTER_SIGNALS_H

#include <jansson.h>

#include "daemon/daemon.h"

typedef struct mpd_signals mpd_signals;

/* Start listening (loop thread). `owner` is this node's fence owner: its
 * own signals are skipped. Connecting happens on the thread, retried
 * every second while the database is away. */
mpd_signals *mpd_signals_start(mpd *d, const char *conninfo, const char *owner);

/* Stop the thread and free (loop thread). NULL-safe. */
void mpd_signals_free(mpd_signals **g);

/* {"connected", "push", "standby", "reconnects"} for the cluster's
 * status. Any thread. */
json_t *mpd_signals_status(mpd_signals *g);

#endif

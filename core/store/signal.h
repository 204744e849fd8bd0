/*
 * Signals between the nodes of a cluster that share a PostgreSQL store.
 *
 * The store sends one (pg_notify) inside the transaction of the write it
 * is about, so PostgreSQL delivers it only once that write is committed,
 * and a node that receives it reads the write back. A node receives them
 * on a connection of its own that LISTENs (mps_listener). An SQLite store
 * sends nothing: one process has nobody to tell.
 *
 *   MPS_SIGNAL_PUSH     a push hint was stored for `account` (folder NULL:
 *                       every folder): the node holding the account syncs.
 *                       Sent by mps_push_hint_add.
 *   MPS_SIGNAL_STANDBY  what a driver's push verification reads for
 *                       `account` changed: its driver state (mps_state_put)
 *                       or its subscription row (mps_subscription_put,
 *                       _delete). Nodes that keep the account open for
 *                       verification only reload it.
 *   MPS_SIGNAL_EVENTS   a transaction appended events to the outbox (one
 *                       signal per transaction, no account): nodes serving
 *                       SSE read the outbox's last seq again.
 *
 * Every signal names its sender, the fence owner of the process that sent
 * it (store/fence.h; NULL outside cluster mode), so a node skips its own.
 *
 * Delivery is at most once: a listener that lost its connection missed
 * whatever was sent meanwhile. mps_listener_read says so by failing; the
 * caller connects again and looks at the stored state (pending hints)
 * instead of trusting that nothing happened.
 *
 * Threading: a listener belongs to one thread; its calls block on the
 * network only in mps_listener_open. Nothing here logs.
 */
#ifndef MP_STORE_SIGNAL_H
#define MP_STORE_SIGNAL_H

#include <stddef.h>

typedef enum mps_signal_kind {
    MPS_SIGNAL_PUSH = 1,
    MPS_SIGNAL_STANDBY = 2,
    MPS_SIGNAL_EVENTS = 3,
} mps_signal_kind;

typedef struct mps_signal {
    mps_signal_kind kind;
    char *account; /* NULL for EVENTS                                    */
    char *folder;  /* PUSH only; NULL: every folder                      */
    char *from;   /* the sender's fence owner; NULL: not in a cluster    */
} mps_signal;

void mps_signals_free(mps_signal *v, size_t n);

typedef struct mps_listener mps_listener;

/* Connect to the PostgreSQL database `conninfo` (a libpq URL or string)
 * and LISTEN on every channel. The connection's application_name is
 * `owner` (the node's fence owner; NULL: libpq's default), which is how
 * the cluster finds and ends the listener of a node it forgot
 * (store/lease.h). NULL with *error_r (never the URL: it may hold a
 * password). */
mps_listener *mps_listener_open(const char *conninfo, const char *owner, char **error_r);
void mps_listener_close(mps_listener *l); /* NULL-safe */

/* The socket to wait on for readability. */
int mps_listener_fd(const mps_listener *l);

/* Read what arrived (never blocks): the signals in arrival order in
 * *v_r (free with mps_signals_free), *n_r of them, possibly none. A
 * payload that is not ours is skipped. -1 with *error_r when the
 * connection is gone (and *v_r what was read before). */
int mps_listener_read(mps_listener *l, mps_signal **v_r, size_t *n_r, char **error_r);

#endif

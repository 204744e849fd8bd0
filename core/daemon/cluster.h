/*
 * The daemon's part in a cluster (issue 15): a thread that keeps this
 * node's account leases (store/lease.h) and tells the loop which accounts
 * to start and stop. Only with `cluster { ... }` in the settings, which
 * needs the PostgreSQL store: every node runs the same configuration and
 * opens only the accounts it holds a lease on.
 *
 * The loop thread owns the registry; the lease thread never touches it.
 * Each round's changes go to the loop in one batch (event_active), which
 * applies them with mpd_registry_account_acquire/_release. The fence of
 * a held account (owner, epoch) is published to the store
 * (mps_fence_set/clear) before an account starts and cleared before it
 * stops, so a commit for an account this node no longer holds fails even
 * before the database's own check refuses it.
 */
#ifndef MP_DAEMON_CLUSTER_H
#define MP_DAEMON_CLUSTER_H

#include <jansson.h>
#include <stdint.h>

#include "daemon/daemon.h"

typedef struct mpd_cluster mpd_cluster;

/* Start the lease thread (loop thread). On error nothing runs and
 * *error_r says why (the daemon must not start accounts without leases). */
mpd_cluster *mpd_cluster_start(mpd *d, const char *conninfo, const char *node,
                               uint32_t lease_ttl_ms, char **error_r);

/* The configured accounts (ids), after every registry apply: the lease
 * thread registers new ones and gives back those that left. Loop thread. */
void mpd_cluster_set_accounts(mpd_cluster *c, const char *const *ids, size_t n);

/* Does this node hold `account` now (loop thread)? */
int mpd_cluster_holds(const mpd_cluster *c, const char *account);

/* Shutdown, loop thread, both NULL-safe: stop makes the lease thread end
 * (no lease changes any more, the leases stay held); free, once the
 * accounts are closed, gives every lease back and frees. */
void mpd_cluster_stop(mpd_cluster *c);
void mpd_cluster_free(mpd_cluster **c);

/* {"node", "owner", "lease_ttl_ms", "held", "outbox_role", "members":
 *  [...], "error"}
 * for /v1/status. Any thread. */
json_t *mpd_cluster_status(mpd_cluster *c);

#endif

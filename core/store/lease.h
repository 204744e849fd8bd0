/*
 * Account leases: which node of a cluster owns which account.
 *
 * Several mailpulsed nodes run the same configuration against one
 * PostgreSQL database. An account is owned by at most one node at a time
 * through a row of mp_lease (account, owner, epoch, expires_at) that the
 * owner renews every heartbeat. The epoch is the fencing token: it grows
 * by one on every claim, and the store checks (owner, epoch, not expired)
 * inside the transaction of every sync commit (store/fence.h), so a node
 * paused past its lease (GC, SIGSTOP, a partition) can never write after
 * another node took the account over, whatever it still believes.
 *
 * Time is the database's (now()); node clocks are never compared. Each
 * node is one row of mp_node that it heartbeats; the live rows are the
 * cluster's members, and a node aims at ceil(accounts / members) leases:
 * it claims unowned or expired accounts up to that share and gives back
 * what it holds above it, so load spreads as nodes come and go.
 *
 * An owner is "<name>#<16 hex>": the configured node name plus a random
 * incarnation, so a restarted node never mistakes its previous life's
 * leases for its own (after a crash its accounts wait out the TTL; after
 * a clean stop, mpl_release_all frees them at once).
 *
 * These tables (mp_node, mp_lease, mp_role) are the cluster's, beside the
 * store's schema; this file owns them (mpl_open creates them if missing).
 *
 * Threading: an mpl_node holds one PGconn and is used by one thread at a
 * time; every call blocks on the network. The daemon runs it on a thread
 * of its own and hands each mpl_delta to the loop. Nothing here logs;
 * errors come back as allocated text.
 */
#ifndef MP_STORE_LEASE_H
#define MP_STORE_LEASE_H

#include <stddef.h>
#include <stdint.h>

typedef struct mpl_node mpl_node;

typedef struct mpl_options {
    const char *conninfo; /* libpq connection string or URL                */
    const char *name;     /* node name shown to admins (1..64 printable)   */
    uint32_t ttl_ms;      /* lease lifetime, >= 300; heartbeat = ttl / 3   */
} mpl_options;

/* A change of ownership seen by one mpl_tick, for the caller to act on:
 * start the acquired accounts (with their epoch), stop the lost ones.
 * Lost covers a lease that expired or was taken, one given back to
 * rebalance, and one of an account no longer configured. */
typedef struct mpl_lease {
    char *account;
    int64_t epoch;
} mpl_lease;

typedef struct mpl_delta {
    mpl_lease *acquired;
    size_t n_acquired;
    char **lost;
    size_t n_lost;
    /* The outbox role (one node of the cluster delivers the outbox:
     * webhooks, the event bus): +1 taken this round, -1 lost, 0 as it was. */
    int outbox_role;
} mpl_delta;

void mpl_delta_clear(mpl_delta *d);

/* Connect, create the tables if missing and register this node. */
mpl_node *mpl_open(const mpl_options *o, char **error_r);
/* Closes the connection only: leases are kept until they expire (what a
 * crash does). Call mpl_release_all first for a clean stop. NULL-safe. */
void mpl_close(mpl_node *n);

/* This node's owner token ("<name>#<incarnation>"). */
const char *mpl_owner(const mpl_node *n);

/* The accounts this node may own (the configuration's). New ones get a
 * lease row; held leases of accounts no longer listed are given back and
 * reported in *d as lost. The list is copied. */
int mpl_set_accounts(mpl_node *n, const char *const *accounts, size_t count, mpl_delta *d,
                     char **error_r);

/* One round: heartbeat the node row, renew held leases (any not renewed
 * is lost), then claim up to the fair share or give back above it.
 * Rounds in the first heartbeat (at most 2 s) after mpl_open only
 * register and renew, so nodes started together see each other before
 * anyone claims. Appends to *d. On error
 * (database unreachable) nothing is reported lost here: see
 * mpl_expire_local. */
int mpl_tick(mpl_node *n, mpl_delta *d, char **error_r);

/* Milliseconds until the next mpl_tick is due: the heartbeat, or sooner
 * when another node's lease on one of our accounts expires first (so a
 * dead node's accounts move as soon as they can). */
uint32_t mpl_next_tick_ms(const mpl_node *n);

/* Without a successful renewal for ttl minus a margin, nothing can be
 * assumed held any more: report every held lease lost (the database
 * fence makes this a courtesy, not the guarantee). now_ms is
 * mpu_mono_ms(). */
void mpl_expire_local(mpl_node *n, int64_t now_ms, mpl_delta *d);

/* Does this node hold the outbox role? It is a lease of its own (row
 * "outbox" of mp_role), taken by any node when free or expired and renewed
 * with the accounts' leases, so exactly one live node delivers the shared
 * outbox at a time (at least once across a handover). */
int mpl_outbox_role(const mpl_node *n);

/* The epoch of a held lease, or 0 when this node does not hold it. */
int64_t mpl_held_epoch(const mpl_node *n, const char *account);
size_t mpl_held_count(const mpl_node *n);

/* Give every lease back and remove the node row (clean shutdown). */
int mpl_release_all(mpl_node *n, char **error_r);

/* The cluster's members as the database sees them. */
typedef struct mpl_member {
    char *owner;
    char *name;
    int live;           /* heartbeat not expired */
    int64_t leases;     /* unexpired leases held */
    int64_t started_ms; /* unix ms */
    int64_t seen_ms;    /* unix ms of the last heartbeat */
} mpl_member;
int mpl_members(mpl_node *n, mpl_member **list_r, size_t *count_r, char **error_r);
void mpl_members_free(mpl_member *list, size_t count);

#endif

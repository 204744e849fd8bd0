/*
 * Fencing tokens of the accounts this process holds a lease on (cluster
 * mode, store/lease.h). The daemon's lease thread publishes them here; a
 * store backend that shares its database with other nodes reads them in
 * every sync commit and every account status change, and checks the lease
 * row in the same transaction (mps__fence, store-private). Outside
 * cluster mode the table is off and every commit goes through unchecked,
 * as on a single node.
 *
 * Any thread; the table has its own lock.
 */
#ifndef MP_STORE_FENCE_H
#define MP_STORE_FENCE_H

#include <stdint.h>

/* Turn fencing on for this process, owner = mpl_owner(). Once on, an
 * account without a token is not held: its commits are refused. */
void mps_fence_enable(const char *owner);
void mps_fence_disable(void); /* forget everything (shutdown, tests) */

void mps_fence_set(const char *account, int64_t epoch);
void mps_fence_clear(const char *account);

typedef enum mps_fence_state {
    MPS_FENCE_OFF = 0, /* not in cluster mode: write freely           */
    MPS_FENCE_HELD,    /* *owner_r (allocated) and *epoch_r are set    */
    MPS_FENCE_LOST,    /* cluster mode, no lease: refuse the commit    */
} mps_fence_state;

mps_fence_state mps_fence_get(const char *account, char **owner_r, int64_t *epoch_r);

/* This process's owner token (allocated), NULL when fencing is off. */
char *mps_fence_owner(void);

/* Store-private, inside a write transaction: may this process write for
 * `account`? 0 yes (fencing off, or the lease row is still this owner's
 * at this epoch and unexpired, now locked FOR SHARE so a claim waits for
 * our commit); 1 no (*error_r says why); -1 the check itself failed. */
struct mps_store;
int mps__fence(struct mps_store *s, const char *account, char **error_r);

#endif

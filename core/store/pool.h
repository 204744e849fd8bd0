/*
 * A process's connections to the store: one per thread, opened on first
 * use, closed when the thread is done, plus the housekeeping the backend
 * runs beside them (SQLite: WAL checkpoints on a thread of their own).
 * Callers open a pool once with the store's location and ask it for the
 * calling thread's connection; they never see the backend's housekeeping.
 *
 * Threads: the thread that opens the pool owns it; its connection is
 * opened by mps_pool_open (migrations run then) and lives until
 * mps_pool_close, which only the owner calls, after every other thread
 * that used the pool has exited or called mps_pool_thread_done.
 *
 * Unlike the rest of the store the pool logs: a connection that a worker
 * thread cannot open, or housekeeping that cannot start or fails, has no
 * caller to report to. Without housekeeping (logged) the connections keep
 * doing that work themselves.
 */
#ifndef MP_STORE_POOL_H
#define MP_STORE_POOL_H

#include "store/store.h"

typedef struct mps_pool mps_pool;

/* Open the owner's connection to the store at `location` (see mps_open)
 * and start the backend's housekeeping. `thread_done` (may be NULL) is run
 * on a thread that is done with the pool, after its connection is closed:
 * at its exit when it had a connection, in mps_pool_thread_done, and on
 * the owner in mps_pool_close; the daemon frees its other per-thread
 * resources there. -1 with *error_r when the store cannot be opened. */
int mps_pool_open(const char *location, void (*thread_done)(void), mps_pool **pool_r,
                  char **error_r);
/* The calling thread's connection, opened on first use (the owner's is
 * the one opened with the pool). NULL when it cannot be opened (logged). */
mps_store *mps_pool_thread(mps_pool *pool);
/* The calling thread is done with the store before it exits: close its
 * connection now (the owner's stays) and run thread_done. */
void mps_pool_thread_done(mps_pool *pool);
/* Stop the housekeeping (it runs once more, so the store is left tidy),
 * close the owner's connection, run thread_done on the owner and free the
 * pool. NULL and *pool NULL are ignored. */
void mps_pool_close(mps_pool **pool);

#endif

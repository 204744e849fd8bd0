/*
 * The connect pool of one imap instance: a fixed, small number of threads
 * (at most `connect_concurrency`, started as the queue needs them) that run
 * the blocking part of push connections (DNS, TCP, TLS, login, EXAMINE or
 * NOTIFY SET) taken from one FIFO queue, gated by the instance's connect
 * limiter, and hand the results back to the loop through one eventfd for
 * the whole instance (not one pipe per account).
 *
 * Why threads rather than a non-blocking connect on the loop: the client
 * (DNS through getaddrinfo, OpenSSL handshakes, SASL exchanges) is
 * blocking code shared with the sync side; a bounded pool reuses it as is,
 * and the loop never runs a TLS handshake or waits on a resolver.
 *
 * Task lifetime: a submitted task belongs to the pool until it calls
 * exactly one of the task's `deliver` (loop thread, result ready) or
 * `discard` (any thread, cancelled or pool stopping). `cancelled` may be
 * asked from a pool thread at any time and must be thread-safe.
 *
 * The pool is refcounted between the loop and its threads: imap_pool_free
 * never waits for a thread stuck in a connect; the last one out frees it.
 * The first thread started makes imap.so resident (RTLD_NODELETE) so a
 * thread finishing after the driver was unloaded still has its code.
 */
#ifndef MP_IMAP_POOL_H
#define MP_IMAP_POOL_H

#include "imap_limit.h"

typedef struct imap_task imap_task;
struct imap_task {
    imap_task *next;                 /* the pool's                          */
    int login;                       /* opens a connection: takes a start
                                        slot of the limiter                 */
    void (*run)(imap_task *t);       /* pool thread, may block              */
    int (*cancelled)(imap_task *t);  /* any thread                          */
    void (*deliver)(imap_task *t);   /* loop thread; frees the task         */
    void (*discard)(imap_task *t);   /* any thread; frees the task          */
};

typedef struct imap_pool imap_pool;

/* Loop thread. `threads` bounds the pool's threads (1..); rate and
 * concurrency configure its limiter (0: unlimited). NULL with *error_r
 * (allocated) when no eventfd could be made. */
imap_pool *imap_pool_new(unsigned threads, uint32_t rate, uint32_t concurrency,
                         char **error_r);

/* Loop thread. Queue a task: FIFO, tasks without a login (work on a
 * connection already open) before those with one. -1 with *error_r when no thread could
 * be started and none runs: the task was not taken. */
int imap_pool_submit(imap_pool *pool, imap_task *t, char **error_r);

/* The limiter the pool's logins go through; sync logins use it too. Valid
 * while the pool is (sync workers of an instance's accounts end before
 * the instance is freed). */
imap_limit *imap_pool_limit(imap_pool *pool);

/* Threads running now (diagnostics, tests). */
unsigned imap_pool_threads(imap_pool *pool);

/* Loop thread. Stop: queued and finished tasks are discarded, running
 * ones are discarded by their thread when they end. Clears *pool. */
void imap_pool_free(imap_pool **pool);

#endif

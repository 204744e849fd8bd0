/*
 * Bounded worker pool with two FIFO queues. Workers always take the
 * high-priority queue first; at most max(1, workers - 1) low-priority items
 * run at once, so a high item always finds a worker soon.
 *
 * Caps keep one slow provider from pinning every worker. Each item has a
 * class (0 .. MPJ_POOL_CLASSES - 1) and optionally a group (an account):
 *   - at most group_cap items of one group run at once;
 *   - at most class_cap[c] items of class c run at once (0: no cap);
 *   - items of every class but 0 together hold at most
 *     max(1, workers - 1) workers, so class 0 (new-mail syncs) always has
 *     a worker when there are two or more.
 * An item that a cap holds back keeps its place; workers take the first
 * item of the queue that no cap holds back.
 *
 * Items are embedded in the caller's structures and never owned by the
 * pool. `work` runs on a worker thread; `complete` runs afterwards on the
 * loop thread (the pool activates a libevent event, so the base must have
 * been created after evthread_use_pthreads()). Everything written by
 * `work` is visible to `complete`. The caller may push the same item again
 * from `complete`.
 *
 * All functions are loop-thread only.
 */
#ifndef MP_SCHED_POOL_H
#define MP_SCHED_POOL_H

#include <stddef.h>

struct event_base;

typedef struct mpj_pool mpj_pool;
typedef struct mpj_pool_item mpj_pool_item;
typedef void (*mpj_pool_fn)(mpj_pool_item *item);

#define MPJ_POOL_CLASSES 8

/* Items sharing a group count against group_cap together. Owned by the
 * caller, zeroed before first use, alive while any of its items is queued
 * or running; `running` is the pool's (under its lock). */
typedef struct mpj_pool_group {
    unsigned running;
} mpj_pool_group;

typedef struct mpj_pool_caps {
    unsigned group_cap;                   /* 0: no cap                    */
    unsigned class_cap[MPJ_POOL_CLASSES]; /* 0: no cap                    */
} mpj_pool_caps;

struct mpj_pool_item {
    mpj_pool_fn work;     /* worker thread                                */
    mpj_pool_fn complete; /* loop thread, after work                      */
    int high;
    unsigned cls;          /* < MPJ_POOL_CLASSES; 0 after init            */
    mpj_pool_group *group; /* NULL after init                             */
    /* owned by the pool */
    int state;
    mpj_pool_item *prev, *next;
};

void mpj_pool_item_init(mpj_pool_item *item, mpj_pool_fn work, mpj_pool_fn complete,
                        int high);

/* NULL when a thread or the event cannot be created. caps may be NULL
 * (no caps but the low-priority one). */
mpj_pool *mpj_pool_new(struct event_base *base, unsigned workers,
                       const mpj_pool_caps *caps);
/* Runs what is still queued, joins the workers, then delivers every
 * pending completion on the calling thread. Nothing may be pushed after. */
void mpj_pool_shutdown(mpj_pool *pool);
/* Shuts down first when not done yet. */
void mpj_pool_free(mpj_pool **pool);

/* The item must be idle (never pushed, or its completion delivered). */
void mpj_pool_push(mpj_pool *pool, mpj_pool_item *item);
/* Takes the item out of its queue when no worker has started it yet;
 * returns 1 then (the item is idle again, complete is not called). */
int mpj_pool_cancel(mpj_pool *pool, mpj_pool_item *item);
/* While the item still waits in a queue, calls fn(item, arg) under the
 * pool lock (so no worker can start it meanwhile) and returns 1; returns 0
 * when it is idle, running or completed. */
int mpj_pool_update_queued(mpj_pool *pool, mpj_pool_item *item,
                           void (*fn)(mpj_pool_item *item, void *arg), void *arg);
/* 1 once a worker took the item (running, or completion not yet
 * delivered). */
int mpj_pool_item_started(mpj_pool *pool, const mpj_pool_item *item);

void mpj_pool_stats(mpj_pool *pool, unsigned *workers_r, unsigned *busy_r,
                    size_t *queued_high_r, size_t *queued_low_r);

#endif

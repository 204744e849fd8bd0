/*
 * State shared by the scheduler's source files (sched.c: accounts,
 * triggers, timer; tasks.c: generic and periodic work). Loop thread only,
 * except the async trigger list under async_lock.
 */
#ifndef MP_SCHED_INTERNAL_H
#define MP_SCHED_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/heap.h"
#include "sched/pool.h"
#include "sched/sched.h"
#include "sched/table.h"

#define mpj_container_of(ptr, type, member)                                              \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* A heap node and what it belongs to. */
typedef struct mpj_due_entry {
    mpj_heap_node node;
    int periodic; /* 1: struct mpj_periodic_task, 0: an account kind */
} mpj_due_entry;

typedef struct mpj_async_trigger mpj_async_trigger;
typedef struct mpj_periodic_task mpj_periodic_task;

struct mpj_sched {
    struct event_base *base;
    mpj_config cfg;
    mpj_pool *pool;
    mpj_heap heap;
    mpj_table accounts; /* id -> struct account, removed ones until idle */
    size_t live_accounts;
    struct event *timer;
    struct event *async_ev;
    pthread_mutex_t async_lock;
    mpj_async_trigger *async_head, *async_tail;
    mpj_periodic_task *periodics;
    uint64_t rng;
    uint64_t jobs_run, jobs_failed, coalesced;
    int closing;
};

/* Re-arm the timer for the earliest heap entry (call after heap changes). */
void mpj_sched_rearm(mpj_sched *s);

/* sched.c: one more piece of submitted work for the account (it is kept
 * while any is in flight); returns its worker-cap group, NULL when the
 * account is unknown or the scheduler is closing. _end after its done. */
mpj_pool_group *mpj_account_submit_begin(mpj_sched *s, const char *account);
void mpj_account_submit_end(mpj_sched *s, const char *account);

/* tasks.c */
void mpj_tasks_due(mpj_sched *s, mpj_due_entry *entry);
/* Drop periodic runs still waiting in the pool (before its shutdown). */
void mpj_tasks_cancel(mpj_sched *s);
void mpj_tasks_free(mpj_sched *s);

#endif

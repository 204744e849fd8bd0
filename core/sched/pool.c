/* Worker pool with high/low queues; see pool.h. */
#include "sched/pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include <event2/event.h>

#include "util/util.h"

enum item_state {
    ITEM_IDLE = 0,
    ITEM_QUEUED,
    ITEM_RUNNING,
    ITEM_DONE,
};

typedef struct item_queue {
    mpj_pool_item *head, *tail;
    size_t len;
} item_queue;

struct mpj_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    item_queue high, low;
    item_queue done; /* completed, waiting for the loop thread */
    unsigned workers, running, running_low, low_cap;
    unsigned running_cls[MPJ_POOL_CLASSES], running_shared, shared_cap;
    mpj_pool_caps caps;
    int stopping;
    pthread_t *threads;
    unsigned started;
    struct event *done_ev;
};

static void queue_append(item_queue *q, mpj_pool_item *item)
{
    item->next = NULL;
    item->prev = q->tail;
    if (q->tail)
        q->tail->next = item;
    else
        q->head = item;
    q->tail = item;
    q->len++;
}

static void queue_unlink(item_queue *q, mpj_pool_item *item)
{
    if (item->prev)
        item->prev->next = item->next;
    else
        q->head = item->next;
    if (item->next)
        item->next->prev = item->prev;
    else
        q->tail = item->prev;
    item->prev = item->next = NULL;
    q->len--;
}

void mpj_pool_item_init(mpj_pool_item *item, mpj_pool_fn work, mpj_pool_fn complete,
                        int high)
{
    item->work = work;
    item->complete = complete;
    item->high = high;
    item->cls = 0;
    item->group = NULL;
    item->state = ITEM_IDLE;
    item->prev = item->next = NULL;
}

/* Called with the lock held: may this item start now? */
static int item_allowed(const mpj_pool *pool, const mpj_pool_item *item)
{
    unsigned cap = pool->caps.class_cap[item->cls];
    if (cap != 0 && pool->running_cls[item->cls] >= cap)
        return 0;
    if (item->cls != 0 && pool->running_shared >= pool->shared_cap)
        return 0;
    if (item->group != NULL && pool->caps.group_cap != 0 &&
        item->group->running >= pool->caps.group_cap)
        return 0;
    return 1;
}

static mpj_pool_item *first_allowed(const mpj_pool *pool, const item_queue *q)
{
    for (mpj_pool_item *it = q->head; it != NULL; it = it->next)
        if (item_allowed(pool, it))
            return it;
    return NULL;
}

/* Called with the lock held: the next item this worker may start. */
static mpj_pool_item *take_item(mpj_pool *pool)
{
    mpj_pool_item *item = first_allowed(pool, &pool->high);
    if (item) {
        queue_unlink(&pool->high, item);
    } else if (pool->running_low < pool->low_cap &&
               (item = first_allowed(pool, &pool->low)) != NULL) {
        queue_unlink(&pool->low, item);
        pool->running_low++;
    } else {
        return NULL;
    }
    item->state = ITEM_RUNNING;
    pool->running++;
    pool->running_cls[item->cls]++;
    if (item->cls != 0)
        pool->running_shared++;
    if (item->group != NULL)
        item->group->running++;
    return item;
}

static void *worker_main(void *arg)
{
    mpj_pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        mpj_pool_item *item = take_item(pool);
        if (!item) {
            if (pool->stopping && !pool->high.len && !pool->low.len)
                break;
            pthread_cond_wait(&pool->wake, &pool->lock);
            continue;
        }
        pthread_mutex_unlock(&pool->lock);
        item->work(item);
        pthread_mutex_lock(&pool->lock);
        pool->running--;
        if (!item->high)
            pool->running_low--;
        pool->running_cls[item->cls]--;
        if (item->cls != 0)
            pool->running_shared--;
        if (item->group != NULL)
            item->group->running--;
        /* A capped slot is free: another idle worker may now take an item
         * that was held back. */
        pthread_cond_broadcast(&pool->wake);
        item->state = ITEM_DONE;
        queue_append(&pool->done, item);
        if (pool->done_ev)
            event_active(pool->done_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Hands every finished item to its complete callback, without the lock so
 * the callbacks may push again. */
static void deliver_done(mpj_pool *pool)
{
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        mpj_pool_item *item = pool->done.head;
        pool->done.head = pool->done.tail = NULL;
        pool->done.len = 0;
        for (mpj_pool_item *it = item; it; it = it->next)
            it->state = ITEM_IDLE;
        pthread_mutex_unlock(&pool->lock);
        if (!item)
            return;
        while (item) {
            mpj_pool_item *next = item->next;
            item->prev = item->next = NULL;
            item->complete(item);
            item = next;
        }
    }
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    deliver_done(arg);
}

mpj_pool *mpj_pool_new(struct event_base *base, unsigned workers,
                       const mpj_pool_caps *caps)
{
    mpj_pool *pool = mpu_calloc(1, sizeof *pool);
    if (workers < 1)
        workers = 1;
    pool->workers = workers;
    pool->low_cap = workers > 1 ? workers - 1 : 1;
    pool->shared_cap = pool->low_cap;
    if (caps != NULL)
        pool->caps = *caps;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->done_ev = event_new(base, -1, 0, done_cb, pool);
    if (!pool->done_ev) {
        mpj_pool_free(&pool);
        return NULL;
    }
    pool->threads = mpu_calloc(workers, sizeof *pool->threads);
    /* Workers block every signal so the loop thread alone handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < workers; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0)
            break;
        pool->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pool->started < workers) {
        mpj_pool_free(&pool);
        return NULL;
    }
    return pool;
}

void mpj_pool_shutdown(mpj_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->started; i++)
        pthread_join(pool->threads[i], NULL);
    pool->started = 0;
    deliver_done(pool);
}

void mpj_pool_free(mpj_pool **poolp)
{
    mpj_pool *pool = *poolp;
    if (!pool)
        return;
    *poolp = NULL;
    mpj_pool_shutdown(pool);
    if (pool->done_ev)
        event_free(pool->done_ev);
    free(pool->threads);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

void mpj_pool_push(mpj_pool *pool, mpj_pool_item *item)
{
    pthread_mutex_lock(&pool->lock);
    if (item->cls >= MPJ_POOL_CLASSES)
        item->cls = MPJ_POOL_CLASSES - 1;
    item->state = ITEM_QUEUED;
    queue_append(item->high ? &pool->high : &pool->low, item);
    /* Broadcast: the woken worker may be unable to take a low item while
     * another could take a high one, and waiters are few. */
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
}

int mpj_pool_cancel(mpj_pool *pool, mpj_pool_item *item)
{
    int cancelled = 0;
    pthread_mutex_lock(&pool->lock);
    if (item->state == ITEM_QUEUED) {
        queue_unlink(item->high ? &pool->high : &pool->low, item);
        item->state = ITEM_IDLE;
        cancelled = 1;
    }
    pthread_mutex_unlock(&pool->lock);
    return cancelled;
}

int mpj_pool_update_queued(mpj_pool *pool, mpj_pool_item *item,
                           void (*fn)(mpj_pool_item *item, void *arg), void *arg)
{
    int queued;
    pthread_mutex_lock(&pool->lock);
    queued = item->state == ITEM_QUEUED;
    if (queued)
        fn(item, arg);
    pthread_mutex_unlock(&pool->lock);
    return queued;
}

int mpj_pool_item_started(mpj_pool *pool, const mpj_pool_item *item)
{
    pthread_mutex_lock(&pool->lock);
    int started = item->state == ITEM_RUNNING || item->state == ITEM_DONE;
    pthread_mutex_unlock(&pool->lock);
    return started;
}

void mpj_pool_stats(mpj_pool *pool, unsigned *workers_r, unsigned *busy_r,
                    size_t *queued_high_r, size_t *queued_low_r)
{
    pthread_mutex_lock(&pool->lock);
    *workers_r = pool->workers;
    *busy_r = pool->running;
    *queued_high_r = pool->high.len;
    *queued_low_r = pool->low.len;
    pthread_mutex_unlock(&pool->lock);
}

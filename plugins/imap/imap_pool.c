/* The connect pool (imap_pool.h). Threads start only when the queue holds
 * more tasks than idle threads can take, up to the fixed maximum, and leave
 * after POOL_IDLE_EXIT_MS without work: a restart with thousands of
 * accounts runs on `max` threads, a daemon at rest on none (push streams
 * live on the loop; only reconnects need a thread again). */
#include "imap_pool.h"
#include "imap_driver.h"
#include "imap_strategy.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#ifndef POOL_IDLE_EXIT_MS
#define POOL_IDLE_EXIT_MS 10000
#endif

struct imap_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    unsigned refs; /* the loop's, plus one per thread */
    int stopping;
    unsigned max_threads, n_threads, idle_threads;
    size_t n_queued;
    /* Tasks on a connection already open (NOTIFY SET after the discovery
     * LIST) go first: they hold a server connection and need no login. */
    imap_task *fast, **fast_tail;
    imap_task *queue, **queue_tail;
    imap_task *done, **done_tail;
    int efd; /* written once when `done` turns non-empty */
    mp_watch *watch;
    imap_limit limit;
};

static void pool_unref(imap_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    unsigned left = --pool->refs;
    pthread_mutex_unlock(&pool->lock);
    if (left > 0)
        return;
    close(pool->efd);
    imap_limit_destroy(&pool->limit);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

/* A finished task goes to the loop unless it was cancelled meanwhile. */
static void pool_finish(imap_pool *pool, imap_task *t)
{
    if (t->cancelled(t)) {
        t->discard(t);
        return;
    }
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping) {
        pthread_mutex_unlock(&pool->lock);
        t->discard(t);
        return;
    }
    int wake = pool->done == NULL;
    t->next = NULL;
    *pool->done_tail = t;
    pool->done_tail = &t->next;
    pthread_mutex_unlock(&pool->lock);
    if (wake) {
        uint64_t one = 1;
        ssize_t n = write(pool->efd, &one, sizeof one);
        (void)n; /* a counter at its maximum is readable already */
    }
}

static int no_work(const imap_pool *pool)
{
    return pool->queue == NULL && pool->fast == NULL;
}

static void *pool_main(void *arg)
{
    imap_pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        int idle_too_long = 0;
        if (!pool->stopping && no_work(pool)) {
            int64_t until_us = imap_limit_now_us() + (int64_t)POOL_IDLE_EXIT_MS * 1000;
            struct timespec until = {(time_t)(until_us / 1000000),
                                     (long)(until_us % 1000000) * 1000};
            pool->idle_threads++;
            while (!pool->stopping && no_work(pool) && !idle_too_long)
                idle_too_long =
                    pthread_cond_timedwait(&pool->work, &pool->lock, &until) == ETIMEDOUT;
            pool->idle_threads--;
        }
        /* A task that came with the timeout is still taken. */
        if (pool->stopping || no_work(pool))
            break;
        imap_task *t;
        if (pool->fast != NULL) {
            t = pool->fast;
            pool->fast = t->next;
            if (pool->fast == NULL)
                pool->fast_tail = &pool->fast;
        } else {
            t = pool->queue;
            pool->queue = t->next;
            if (pool->queue == NULL)
                pool->queue_tail = &pool->queue;
        }
        pool->n_queued--;
        t->next = NULL;
        pthread_mutex_unlock(&pool->lock);

        /* Cancelled while queued (push stopped): no login is spent on it. */
        if (t->cancelled(t)) {
            t->discard(t);
        } else {
            if (t->login)
                imap_limit_acquire(&pool->limit, 0);
            if (!t->cancelled(t))
                t->run(t);
            if (t->login)
                imap_limit_release(&pool->limit);
            pool_finish(pool, t);
        }
        pthread_mutex_lock(&pool->lock);
    }
    pool->n_threads--;
    pthread_mutex_unlock(&pool->lock);
    pool_unref(pool);
    return NULL;
}

/* Keep imap.so mapped for good: a pool thread may still be in a connect
 * when the host unloads the driver, and it must find its code when it
 * returns (as GModule does for modules that start threads). */
static void pin_module(void)
{
    static int pinned; /* loop thread only */
    if (pinned)
        return;
    Dl_info info;
    if (dladdr((void *)&pin_module, &info) != 0 && info.dli_fname != NULL) {
        void *h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
        if (h != NULL)
            pinned = 1; /* the extra reference is never dropped, on purpose */
    }
}

/* Called with the lock held. 0, or an errno from pthread_create. */
static int start_thread(imap_pool *pool)
{
    pin_module();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Signals stay with the daemon's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, &attr, pool_main, pool);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc == 0) {
        pool->n_threads++;
        pool->refs++;
    }
    return rc;
}

static void pool_ready(int fd, unsigned events, void *arg)
{
    (void)events;
    imap_pool *pool = arg;
    uint64_t count;
    ssize_t n = read(fd, &count, sizeof count);
    (void)n;
    pthread_mutex_lock(&pool->lock);
    imap_task *list = pool->done;
    pool->done = NULL;
    pool->done_tail = &pool->done;
    pthread_mutex_unlock(&pool->lock);
    while (list != NULL) {
        imap_task *t = list;
        list = t->next;
        t->next = NULL;
        t->deliver(t);
    }
}

imap_pool *imap_pool_new(unsigned threads, uint32_t rate, uint32_t concurrency,
                         char **error_r)
{
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
        *error_r = imap_xasprintf("cannot create an eventfd: %s", strerror(errno));
        return NULL;
    }
    imap_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        abort();
    pthread_mutex_init(&pool->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->work, &attr);
    pthread_condattr_destroy(&attr);
    pool->refs = 1;
    pool->max_threads = threads > 0 ? threads : 1;
    pool->fast_tail = &pool->fast;
    pool->queue_tail = &pool->queue;
    pool->done_tail = &pool->done;
    pool->efd = efd;
    imap_limit_init(&pool->limit, rate, concurrency);
    pool->watch = imap_host->watch_fd(NULL, efd, MP_FD_READ, pool_ready, pool);
    return pool;
}

int imap_pool_submit(imap_pool *pool, imap_task *t, char **error_r)
{
    pthread_mutex_lock(&pool->lock);
    int rc = 0;
    if (pool->n_queued + 1 > pool->idle_threads && pool->n_threads < pool->max_threads)
        rc = start_thread(pool);
    if (rc != 0 && pool->n_threads == 0) {
        pthread_mutex_unlock(&pool->lock);
        *error_r = imap_xasprintf("cannot start a connect thread: %s", strerror(rc));
        return -1;
    }
    /* A thread that cannot be added now is fine: the running ones drain
     * the queue. */
    t->next = NULL;
    if (t->login) {
        *pool->queue_tail = t;
        pool->queue_tail = &t->next;
    } else {
        *pool->fast_tail = t;
        pool->fast_tail = &t->next;
    }
    pool->n_queued++;
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

imap_limit *imap_pool_limit(imap_pool *pool)
{
    return &pool->limit;
}

unsigned imap_pool_threads(imap_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    unsigned n = pool->n_threads;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void imap_pool_free(imap_pool **poolp)
{
    imap_pool *pool = *poolp;
    if (pool == NULL)
        return;
    *poolp = NULL;
    imap_host->watch_cancel(&pool->watch);
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    imap_task *fast = pool->fast, *queued = pool->queue, *done = pool->done;
    pool->fast = pool->queue = pool->done = NULL;
    pool->fast_tail = &pool->fast;
    pool->queue_tail = &pool->queue;
    pool->done_tail = &pool->done;
    pool->n_queued = 0;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    imap_task *lists[3] = {fast, queued, done};
    for (int i = 0; i < 3; i++)
        while (lists[i] != NULL) {
            imap_task *t = lists[i];
            lists[i] = t->next;
            t->discard(t);
        }
    pool_unref(pool);
}

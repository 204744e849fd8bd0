/* Per-key counting limiter for blocking requests: a provider may allow
 * only a few concurrent requests per mailbox (Graph: 4) and answers more
 * with 429s. Keys are few (one per account) and live for the process, so
 * a list under one lock is enough; one condition variable wakes waiters
 * of every key, who re-check their own count. */
#include "net/net_private.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

typedef struct limit {
    struct limit *next;
    char *key;
    unsigned max; /* 0: unlimited */
    unsigned in_flight;
} limit;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t freed;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static limit *limits;

static void init_cond(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&freed, &a);
    pthread_condattr_destroy(&a);
}

static limit *find(const char *key, int create)
{
    for (limit *l = limits; l != NULL; l = l->next)
        if (strcmp(l->key, key) == 0)
            return l;
    if (!create)
        return NULL;
    limit *l = mpu_calloc(1, sizeof *l);
    l->key = mpu_strdup(key);
    l->next = limits;
    limits = l;
    return l;
}

void mpn_limit_set(const char *key, unsigned max)
{
    if (key == NULL)
        return;
    pthread_once(&once, init_cond);
    pthread_mutex_lock(&lock);
    find(key, 1)->max = max;
    pthread_cond_broadcast(&freed);
    pthread_mutex_unlock(&lock);
}

int mpn_limit_acquire(const char *key, uint32_t wait_ms)
{
    if (key == NULL)
        return 0;
    pthread_once(&once, init_cond);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&lock);
    limit *l = find(key, 1);
    while (l->max != 0 && l->in_flight >= l->max) {
        if (pthread_cond_timedwait(&freed, &lock, &until) == ETIMEDOUT &&
            l->max != 0 && l->in_flight >= l->max) {
            rc = -1;
            break;
        }
    }
    if (rc == 0)
        l->in_flight++;
    pthread_mutex_unlock(&lock);
    return rc;
}

void mpn_limit_release(const char *key)
{
    if (key == NULL)
        return;
    pthread_mutex_lock(&lock);
    limit *l = find(key, 0);
    if (l != NULL && l->in_flight > 0)
        l->in_flight--;
    pthread_cond_broadcast(&freed);
    pthread_mutex_unlock(&lock);
}

unsigned mpn_limit_in_flight(const char *key)
{
    pthread_mutex_lock(&lock);
    limit *l = key != NULL ? find(key, 0) : NULL;
    unsigned n = l != NULL ? l->in_flight : 0;
    pthread_mutex_unlock(&lock);
    return n;
}

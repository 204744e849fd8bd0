/* The connect limiter (imap_limit.h). A start slot is granted when fewer
 * than `concurrency` attempts run, no urgent waiter is ahead (for a
 * non-urgent one), and the clock has reached next_us; granting moves
 * next_us one interval past the later of itself and now. So after an idle
 * period the first start is immediate and the ones behind it are evenly
 * spaced: N starts take at least (N - 1) / rate seconds. */
#include "imap_limit.h"

#include <time.h>

int64_t imap_limit_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void imap_limit_init(imap_limit *l, uint32_t rate, uint32_t concurrency)
{
    pthread_mutex_init(&l->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cond, &attr);
    pthread_condattr_destroy(&attr);
    l->rate = rate;
    l->concurrency = concurrency;
    l->in_use = 0;
    l->urgent_waiting = 0;
    l->next_us = 0;
    l->granted = 0;
    l->peak_in_use = 0;
}

void imap_limit_destroy(imap_limit *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
}

void imap_limit_acquire(imap_limit *l, int urgent)
{
    pthread_mutex_lock(&l->lock);
    if (urgent)
        l->urgent_waiting++;
    for (;;) {
        int slot_free = l->concurrency == 0 || l->in_use < l->concurrency;
        int my_turn = urgent || l->urgent_waiting == 0;
        if (!slot_free || !my_turn) {
            pthread_cond_wait(&l->cond, &l->lock);
            continue;
        }
        int64_t now = imap_limit_now_us();
        if (l->rate == 0 || now >= l->next_us) {
            if (l->rate > 0) {
                /* A waiter wakes a little after its slot (the condition
                 * variable's latency, a busy machine): spacing the next
                 * slot from the one it had keeps the rate; from `now`, every
                 * wake-up's lateness was added to the interval (200/s gave
                 * about 100/s at 10,000 accounts). After an idle spell
                 * (more than an interval late) it starts from now: no burst. */
                int64_t interval = 1000000 / (int64_t)l->rate;
                int64_t late = now - l->next_us;
                int64_t from = l->next_us > 0 && late < interval ? l->next_us : now;
                l->next_us = from + interval;
            }
            break;
        }
        struct timespec until = {(time_t)(l->next_us / 1000000),
                                 (long)(l->next_us % 1000000) * 1000};
        int rc = pthread_cond_timedwait(&l->cond, &l->lock, &until);
        (void)rc; /* ETIMEDOUT or a wakeup: both look again */
    }
    if (urgent)
        l->urgent_waiting--;
    l->in_use++;
    l->granted++;
    if (l->in_use > l->peak_in_use)
        l->peak_in_use = l->in_use;
    pthread_mutex_unlock(&l->lock);
    /* Others may now pass (the urgent count fell, or the slot spacing
     * moved): let them look. */
    pthread_cond_broadcast(&l->cond);
}

void imap_limit_release(imap_limit *l)
{
    pthread_mutex_lock(&l->lock);
    if (l->in_use > 0)
        l->in_use--;
    pthread_mutex_unlock(&l->lock);
    pthread_cond_broadcast(&l->cond);
}

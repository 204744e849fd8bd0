/* Unit tests of the IMAP driver's connect limiter (imap_limit.h): starts
 * spaced by the rate, at most `concurrency` at once, urgent waiters (sync
 * logins) served before the others (push logins). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "imap_limit.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* N starts at `rate` per second cannot take less than (N - 1) / rate: the
 * bound follows from the spacing, whatever the machine's speed. */
static void test_rate_spaces_starts(void **state)
{
    (void)state;
    imap_limit l;
    imap_limit_init(&l, 100, 0);
    int64_t t0 = imap_limit_now_us();
    for (int i = 0; i < 11; i++) {
        imap_limit_acquire(&l, i % 2);
        imap_limit_release(&l);
    }
    int64_t took = imap_limit_now_us() - t0;
    assert_true(took >= 10 * 10000 - 1000); /* 10 intervals of 10 ms */
    assert_int_equal(l.granted, 11);
    imap_limit_destroy(&l);
}

static void test_unlimited_rate_does_not_wait(void **state)
{
    (void)state;
    imap_limit l;
    imap_limit_init(&l, 0, 0);
    for (int i = 0; i < 1000; i++) {
        imap_limit_acquire(&l, 0);
        imap_limit_release(&l);
    }
    assert_int_equal(l.granted, 1000);
    assert_int_equal(l.in_use, 0);
    imap_limit_destroy(&l);
}

typedef struct worker {
    imap_limit *l;
    int urgent;
    atomic_int *order; /* grant sequence number source */
    int granted_as;
} worker;

static void *hold_briefly(void *arg)
{
    worker *w = arg;
    imap_limit_acquire(w->l, w->urgent);
    w->granted_as = atomic_fetch_add(w->order, 1);
    sleep_ms(15);
    imap_limit_release(w->l);
    return NULL;
}

static void test_concurrency_is_capped(void **state)
{
    (void)state;
    imap_limit l;
    imap_limit_init(&l, 0, 2);
    atomic_int order = 0;
    worker w[6];
    pthread_t t[6];
    for (int i = 0; i < 6; i++) {
        w[i] = (worker){.l = &l, .urgent = i % 2, .order = &order};
        assert_int_equal(pthread_create(&t[i], NULL, hold_briefly, &w[i]), 0);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(l.granted, 6);
    assert_int_equal(l.in_use, 0);
    assert_true(l.peak_in_use >= 1 && l.peak_in_use <= 2);
    imap_limit_destroy(&l);
}

static uint32_t urgent_waiting(imap_limit *l)
{
    pthread_mutex_lock(&l->lock);
    uint32_t n = l->urgent_waiting;
    pthread_mutex_unlock(&l->lock);
    return n;
}

/* The slot is taken; a push login queues, then a sync login: when the
 * slot frees, the sync login gets it first. */
static void test_urgent_goes_first(void **state)
{
    (void)state;
    imap_limit l;
    imap_limit_init(&l, 0, 1);
    imap_limit_acquire(&l, 0);
    atomic_int order = 0;
    worker push = {.l = &l, .urgent = 0, .order = &order};
    worker sync = {.l = &l, .urgent = 1, .order = &order};
    pthread_t tp, ts;
    assert_int_equal(pthread_create(&tp, NULL, hold_briefly, &push), 0);
    sleep_ms(20); /* the push waiter is (most likely) queued first */
    assert_int_equal(pthread_create(&ts, NULL, hold_briefly, &sync), 0);
    while (urgent_waiting(&l) == 0)
        sleep_ms(1);
    imap_limit_release(&l);
    pthread_join(tp, NULL);
    pthread_join(ts, NULL);
    assert_int_equal(sync.granted_as, 0);
    assert_int_equal(push.granted_as, 1);
    imap_limit_destroy(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_spaces_starts),
        cmocka_unit_test(test_unlimited_rate_does_not_wait),
        cmocka_unit_test(test_concurrency_is_capped),
        cmocka_unit_test(test_urgent_goes_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

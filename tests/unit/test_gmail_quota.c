/* gmail.so: the per-user quota budget (gmail_quota.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gmail_quota.h"

#define T0 1700000000000LL

static void test_budget(void **state)
{
    (void)state;
    static gmail_quota q;
    gmail_quota_init(&q, 0);
    assert_int_equal(q.limit, 15000);
    /* 60 batches of 50 messages.get (250 units) fill the minute exactly. */
    for (int i = 0; i < 60; i++)
        assert_int_equal(gmail_quota_take(&q, T0 + i * 500, 50 * GMAIL_UNITS_MESSAGES_GET), 0);
    assert_int_equal(gmail_quota_used(&q, T0 + 30000), 15000);
    /* One unit more must wait until the first batch leaves the window. */
    int64_t wait = gmail_quota_take(&q, T0 + 30000, GMAIL_UNITS_GET_PROFILE);
    assert_true(wait > 30000);
    assert_true(wait <= 30000 + GMAIL_QUOTA_BUCKET_MS + GMAIL_QUOTA_GRACE_MS);
    /* Nothing was charged by the refusal. */
    assert_int_equal(gmail_quota_used(&q, T0 + 30000), 15000);
    /* At that time the call fits. */
    assert_int_equal(gmail_quota_take(&q, T0 + 30000 + wait, GMAIL_UNITS_GET_PROFILE), 0);
    /* A big call waits for enough buckets, not just one. */
    int64_t w1 = gmail_quota_take(&q, T0 + 30000 + wait, 250);
    int64_t w2 = gmail_quota_take(&q, T0 + 30000 + wait, 1000);
    assert_true(w1 > 0);
    assert_true(w2 > w1);
    /* Two minutes later everything has expired. */
    assert_int_equal(gmail_quota_used(&q, T0 + 200000), 0);
    assert_int_equal(gmail_quota_take(&q, T0 + 200000, 15000), 0);
}

static void test_closed(void **state)
{
    (void)state;
    static gmail_quota q;
    gmail_quota_init(&q, 100);
    gmail_quota_close(&q, T0 + 7000);
    assert_int_equal(gmail_quota_take(&q, T0, 1), 7000);
    assert_int_equal(gmail_quota_take(&q, T0 + 6999, 1), 1);
    /* An earlier close never shortens a later one. */
    gmail_quota_close(&q, T0 + 10);
    assert_int_equal(gmail_quota_take(&q, T0 + 6000, 1), 1000);
    assert_int_equal(gmail_quota_take(&q, T0 + 7000, 1), 0);
    /* A call larger than the limit is admitted into an empty window only. */
    static gmail_quota big;
    gmail_quota_init(&big, 10);
    assert_int_equal(gmail_quota_take(&big, T0, 50), 0);
    assert_true(gmail_quota_take(&big, T0 + 1, 1) > 0);
}

static void test_slot_reuse(void **state)
{
    (void)state;
    /* Over several minutes, counted independently the way Google counts
     * (a sliding minute), no window holds more than the limit however the
     * ring of buckets wraps, and the budget is not needlessly stingy. */
    static gmail_quota q;
    static int64_t at[20000];
    gmail_quota_init(&q, 1000);
    int64_t now = T0;
    size_t n = 0;
    for (int i = 0; i < 20000; i++, now += 37) {
        if (gmail_quota_take(&q, now, 5) != 0)
            continue;
        at[n++] = now;
        uint32_t in_window = 0;
        for (size_t k = 0; k < n; k++)
            if (at[k] > now - GMAIL_QUOTA_WINDOW_MS)
                in_window += 5;
        assert_true(in_window <= 1000);
    }
    /* 740 s at 1000 units a minute is about 12,300 units, minus the grace. */
    assert_true(n * 5 > 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_closed),
        cmocka_unit_test(test_slot_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

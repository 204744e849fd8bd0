/* Unit tests of gmail.so's watch helpers (plugins/gmail/gmail_watch.c):
 * the watch answer parser (historyId and expiration as strings or
 * numbers, anything else refused) and the expiry reported to the host,
 * which must make the host re-watch about daily and always long before
 * Gmail's 7-day expiry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "gmail_push.h"

/* gmail.c (the descriptor, not in the library) defines it in the driver. */
const mp_host *gmail_host;

#define DAY_MS (86400LL * 1000)

static void parse_strings(void **state)
{
    (void)state;
    const char *body = "{\"historyId\":\"1234567\",\"expiration\":\"1781234567890\"}";
    char *hid = NULL;
    int64_t exp = 0;
    assert_int_equal(gmail_watch_parse(body, strlen(body), &hid, &exp), 0);
    assert_string_equal(hid, "1234567");
    assert_int_equal(exp, 1781234567890LL);
    free(hid);
}

static void parse_numbers(void **state)
{
    (void)state;
    const char *body = "{\"historyId\":99,\"expiration\":1781234567890}";
    char *hid = NULL;
    int64_t exp = 0;
    assert_int_equal(gmail_watch_parse(body, strlen(body), &hid, &exp), 0);
    assert_string_equal(hid, "99");
    assert_int_equal(exp, 1781234567890LL);
    free(hid);
}

static void parse_refusals(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "[]",
        "{\"historyId\":\"1\"}",
        "{\"expiration\":\"1781234567890\"}",
        "{\"historyId\":\"1x\",\"expiration\":\"1781234567890\"}",
        "{\"historyId\":\"1\",\"expiration\":\"-5\"}",
        "{\"historyId\":-1,\"expiration\":1781234567890}",
        "{\"historyId\":\"1\",\"expiration\":\"99999999999999999999\"}",
        "{\"historyId\":true,\"expiration\":\"1781234567890\"}",
        "{\"historyId\":\"\",\"expiration\":\"1781234567890\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *hid = (char *)"untouched";
        int64_t exp = 0;
        assert_int_equal(gmail_watch_parse(bad[i], strlen(bad[i]), &hid, &exp), -1);
        assert_null(hid);
    }
}

static void reported_expiry_makes_daily_renewal(void **state)
{
    (void)state;
    int64_t now = 1800000000000LL;
    /* Gmail's 7 days: reported under two days ahead, so the host (which
     * renews inside the last 24 h) renews within a day... */
    int64_t rep = gmail_watch_report_expiry(now + 7 * DAY_MS, now);
    assert_true(rep * 1000 > now + DAY_MS);
    assert_true(rep * 1000 < now + 2 * DAY_MS);
    /* ...which is always days before the real expiry. */
    assert_true(rep * 1000 <= now + 7 * DAY_MS - 5 * DAY_MS);
    /* A watch that ends sooner than that is reported as it is. */
    int64_t soon = now + 3600 * 1000;
    assert_int_equal(gmail_watch_report_expiry(soon, now), soon / 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_strings),
        cmocka_unit_test(parse_numbers),
        cmocka_unit_test(parse_refusals),
        cmocka_unit_test(reported_expiry_makes_daily_renewal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The check slot's collector (core/host/host_check.c): one result per
 * name, bounded, and provider text made safe for JSON and terminals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/host.h"
#include "loader/loader.h"
#include "mock_host.h"
#include "util/util.h"

/* The SDK's hello example, built for the loader tests. */
#define HELLO_DIR MP_TEST_BUILD_DIR "/tests/refused-drivers/good"

static void test_table_slot(void **state)
{
    const mp_host *h = mphost_table();
    assert_true(h->abi_minor >= 2);
    assert_true(h->struct_size >=
                offsetof(mp_host, check_report) + sizeof h->check_report);
    assert_ptr_equal(h->check_report, mphost_check_report);
}

static void test_replace_by_name(void **state)
{
    mp_check *chk = mphost_check_new();
    const mp_host *h = mphost_table();
    h->check_report(chk, "credentials", MP_CHECK_OK, "token refreshed");
    h->check_report(chk, "scopes", MP_CHECK_WARN, "gmail.modify missing");
    h->check_report(chk, "credentials", MP_CHECK_FAIL, "token revoked");
    assert_int_equal(mphost_check_count(chk), 2);
    /* The replacement keeps the place of the first report. */
    const mphost_check_result *r = mphost_check_at(chk, 0);
    assert_string_equal(r->name, "credentials");
    assert_int_equal(r->outcome, MP_CHECK_FAIL);
    assert_string_equal(r->detail, "token revoked");
    r = mphost_check_at(chk, 1);
    assert_string_equal(r->name, "scopes");
    assert_int_equal(r->outcome, MP_CHECK_WARN);
    assert_null(mphost_check_at(chk, 2));

    size_t n = 0;
    mphost_check_result *list = mphost_check_take(chk, &n);
    assert_int_equal(n, 2);
    assert_string_equal(list[1].detail, "gmail.modify missing");
    assert_int_equal(mphost_check_count(chk), 0);
    mphost_check_results_free(&list, n);
    assert_null(list);
    mphost_check_free(&chk);
    assert_null(chk);
    mphost_check_free(&chk); /* NULL-safe */
}

static void test_bad_reports(void **state)
{
    mp_check *chk = mphost_check_new();
    mphost_check_report(chk, NULL, MP_CHECK_OK, "no name");
    mphost_check_report(chk, "", MP_CHECK_OK, "empty name");
    mphost_check_report(NULL, "x", MP_CHECK_OK, "no collector");
    assert_int_equal(mphost_check_count(chk), 0);
    mphost_check_report(chk, "topic", MP_CHECK_SKIP, NULL);
    assert_string_equal(mphost_check_at(chk, 0)->detail, "");
    mphost_check_report(chk, "weird", (mp_check_outcome)7, "what");
    const mphost_check_result *r = mphost_check_at(chk, 1);
    assert_int_equal(r->outcome, MP_CHECK_FAIL);
    assert_string_equal(r->detail, "driver reported unknown outcome 7: what");
    mphost_check_free(&chk);
}

static void test_cap(void **state)
{
    mp_check *chk = mphost_check_new();
    char name[32];
    for (int i = 0; i < MPHOST_CHECK_MAX + 5; i++) {
        snprintf(name, sizeof name, "n%d", i);
        mphost_check_report(chk, name, MP_CHECK_OK, "ok");
    }
    assert_int_equal(mphost_check_count(chk), MPHOST_CHECK_MAX);
    assert_int_equal(mphost_check_dropped(chk), 5);
    /* A known name is still replaced at the cap. */
    mphost_check_report(chk, "n3", MP_CHECK_FAIL, "now broken");
    assert_int_equal(mphost_check_count(chk), MPHOST_CHECK_MAX);
    assert_int_equal(mphost_check_dropped(chk), 5);
    assert_int_equal(mphost_check_at(chk, 3)->outcome, MP_CHECK_FAIL);
    mphost_check_free(&chk);
}

static void test_lengths(void **state)
{
    mp_check *chk = mphost_check_new();
    char *long_name = mpu_malloc(300);
    memset(long_name, 'k', 299);
    long_name[299] = '\0';
    /* 1023 ASCII bytes then a two-byte character: it does not fit whole. */
    char *detail = mpu_malloc(MPHOST_CHECK_DETAIL_MAX + 64);
    memset(detail, 'd', MPHOST_CHECK_DETAIL_MAX - 1);
    memcpy(detail + MPHOST_CHECK_DETAIL_MAX - 1, "\xC3\xA9 and more",
           sizeof "\xC3\xA9 and more");
    mphost_check_report(chk, long_name, MP_CHECK_OK, detail);
    const mphost_check_result *r = mphost_check_at(chk, 0);
    assert_int_equal(strlen(r->name), MPHOST_CHECK_NAME_MAX);
    assert_int_equal(strlen(r->detail), MPHOST_CHECK_DETAIL_MAX - 1);
    /* The cut name is the key: reporting the long name again replaces. */
    mphost_check_report(chk, long_name, MP_CHECK_WARN, "again");
    assert_int_equal(mphost_check_count(chk), 1);
    free(long_name);
    free(detail);
    mphost_check_free(&chk);
}

static void test_sanitize(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain text", "plain text"},
        {"line one\nline two\r\tend", "line one line two  end"},
        {"\x1b[31mred\x1b[0m", "?[31mred?[0m"},
        {"bell\x07 del\x7f", "bell? del?"},
        {"c1 \xC2\x85 next", "c1 ? next"},
        {"caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x93\xA7",
         "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x93\xA7"},
        {"bad \xFF byte", "bad \xEF\xBF\xBD byte"},
        {"overlong \xC0\xAF", "overlong \xEF\xBF\xBD\xEF\xBF\xBD"},
        {"surrogate \xED\xA0\x80", "surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"cut \xE2\x9C", "cut \xEF\xBF\xBD\xEF\xBF\xBD"},
        {"too big \xF4\x90\x80\x80",
         "too big \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mp_check *chk = mphost_check_new();
        mphost_check_report(chk, "name\x1b", MP_CHECK_OK, cases[i].in);
        const mphost_check_result *r = mphost_check_at(chk, 0);
        assert_string_equal(r->name, "name?");
        if (strcmp(r->detail, cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\"", i, r->detail);
        mphost_check_free(&chk);
    }
    char *clean = mphost_check_clean("x\ny\xFF", 6);
    assert_string_equal(clean, "x y\xEF\xBF\xBD");
    free(clean);
    clean = mphost_check_clean(NULL, 10);
    assert_string_equal(clean, "");
    free(clean);
}

static void test_names(void **state)
{
    assert_string_equal(mphost_check_outcome_name(MP_CHECK_OK), "ok");
    assert_string_equal(mphost_check_outcome_name(MP_CHECK_WARN), "warn");
    assert_string_equal(mphost_check_outcome_name(MP_CHECK_FAIL), "fail");
    assert_string_equal(mphost_check_outcome_name(MP_CHECK_SKIP), "skip");
    assert_null(mphost_check_outcome_name((mp_check_outcome)9));
    assert_string_equal(mphost_check_state_name(MPHOST_CHECK_NONE), "none");
    assert_string_equal(mphost_check_state_name(MPHOST_CHECK_PENDING), "pending");
    assert_string_equal(mphost_check_state_name(MPHOST_CHECK_RUNNING), "running");
    assert_string_equal(mphost_check_state_name(MPHOST_CHECK_DONE), "done");
    assert_string_equal(mphost_check_state_name(MPHOST_CHECK_ERROR), "error");
}

static void test_record_clear(void **state)
{
    mphost_check_record rec;
    memset(&rec, 0, sizeof rec);
    mp_check *chk = mphost_check_new();
    mphost_check_report(chk, "a", MP_CHECK_OK, "fine");
    rec.results = mphost_check_take(chk, &rec.n_results);
    mphost_check_free(&chk);
    rec.id = 4;
    rec.state = MPHOST_CHECK_ERROR;
    rec.error = mpu_strdup("it broke");
    mphost_check_record_clear(&rec);
    assert_int_equal(rec.state, MPHOST_CHECK_NONE);
    assert_int_equal(rec.id, 0);
    assert_null(rec.results);
    assert_null(rec.error);
    mphost_check_record_clear(&rec); /* twice is harmless */
}

/* The SDK example's check through the real loader and the mock host,
 * whose check_report is this collector. */
static void test_hello_check(void **state)
{
    char *error = NULL;
    mpl_driver *drv = mpl_load(HELLO_DIR, "hello", &error);
    if (drv == NULL)
        fail_msg("hello refused: %s", error);
    assert_non_null(drv->desc.check);
    mpt_mock *m = mpt_mock_new();
    mpt_mock_declare(m, drv->desc.account_keys);
    mpt_mock_config_set(m, "messages", "5");
    void *inst_state = NULL, *acct_state = NULL;
    mp_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(drv->desc.init(mpt_mock_host(m), mpt_mock_instance(m),
                                    mpt_mock_config(m), &inst_state, &err),
                     MP_OK);
    mp_account *acct = mpt_mock_account(m, "hi");
    assert_int_equal(drv->desc.account_open(acct, mpt_mock_config(m), &acct_state, &err),
                     MP_OK);
    mpt_mock_set_account_state(acct, acct_state);
    mp_check *chk = mphost_check_new();
    assert_int_equal(drv->desc.check(acct, MP_CHECK_LIVE, chk, &err), MP_OK);
    assert_int_equal(mphost_check_count(chk), 2);
    assert_string_equal(mphost_check_at(chk, 0)->name, "mailbox");
    assert_int_equal(mphost_check_at(chk, 0)->outcome, MP_CHECK_OK);
    assert_string_equal(mphost_check_at(chk, 0)->detail,
                        "INBOX holds 5 synthetic messages");
    assert_string_equal(mphost_check_at(chk, 1)->name, "live_test");
    assert_int_equal(mphost_check_at(chk, 1)->outcome, MP_CHECK_SKIP);
    mphost_check_free(&chk);
    drv->desc.account_close(acct, &acct_state);
    assert_null(acct_state);
    mpt_mock_free(&m);
    mpl_unload(&drv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_slot),  cmocka_unit_test(test_replace_by_name),
        cmocka_unit_test(test_bad_reports), cmocka_unit_test(test_cap),
        cmocka_unit_test(test_lengths),     cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_names),       cmocka_unit_test(test_record_clear),
        cmocka_unit_test(test_hello_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of imap.so's pure sync helpers (plugins/imap/imap_strategy.c,
 * compiled in here: the test links the client library, not the driver):
 * cursor, position and id formats, the strategy and push choice, folder
 * roles, flag normalization, UID ranges and the UIDVALIDITY re-map match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../plugins/imap/imap_strategy.c"

/* Capability bits as in imap_client.h. */
#define T_IDLE (1u << 0)
#define T_CONDSTORE (1u << 1)
#define T_QRESYNC (1u << 2)
#define T_NOTIFY (1u << 10)

static void test_cursor(void **state)
{
    (void)state;
    imap_cursor c = {0};
    assert_int_equal(imap_cursor_parse("v1:3857529045:4392:90060115205545359", &c), 0);
    assert_int_equal(c.uidvalidity, 3857529045u);
    assert_int_equal(c.uidnext, 4392u);
    assert_true(c.modseq == 90060115205545359ull);
    char *text = imap_cursor_format(&c);
    assert_string_equal(text, "v1:3857529045:4392:90060115205545359");
    free(text);

    assert_int_equal(imap_cursor_parse("v1:7:1:0", &c), 0);
    assert_int_equal(c.uidnext, 1u);
    assert_true(c.modseq == 0);

    static const char *const bad[] = {
        "",
        "v1",
        "v2:1:2:3",
        "v1:0:2:3", /* uidvalidity 0 */
        "v1:1:2",
        "v1:1:2:3:4",
        "v1:a:2:3",
        "v1:1:2:3 ",
        "v1:-1:2:3",
        "v1:1::3",
        "v1:4294967296:1:1",
        "v1:1:4294967296:1",
        "v1:1:2:18446744073709551616",
        "17",
        "v1:+1:2:3",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(imap_cursor_parse(bad[i], &c), -1);
    assert_int_equal(imap_cursor_parse(NULL, &c), -1);
}

static void test_position(void **state)
{
    (void)state;
    uint32_t uv = 0, low = 0;
    char *pos = imap_pos_format(42, 1001);
    assert_string_equal(pos, "v1:42:1001");
    assert_int_equal(imap_pos_parse(pos, &uv, &low), 0);
    assert_int_equal(uv, 42u);
    assert_int_equal(low, 1001u);
    free(pos);
    assert_int_equal(imap_pos_parse("v1:42:1001:5", &uv, &low), -1);
    assert_int_equal(imap_pos_parse("v1:42", &uv, &low), -1);
    assert_int_equal(imap_pos_parse("1700000000:gen-1", &uv, &low), -1);
    assert_int_equal(imap_pos_parse(NULL, &uv, &low), -1);
}

static void test_message_id(void **state)
{
    (void)state;
    char *id = imap_id_format("Work;Projects/2024", 9, 77);
    assert_string_equal(id, "Work;Projects/2024;9;77");
    char *folder = NULL;
    uint32_t uv = 0, uid = 0;
    /* Parsed from the end: the folder keeps its own ';'. */
    assert_int_equal(imap_id_parse(id, &folder, &uv, &uid), 0);
    assert_string_equal(folder, "Work;Projects/2024");
    assert_int_equal(uv, 9u);
    assert_int_equal(uid, 77u);
    free(folder);
    free(id);

    static const char *const bad[] = {"INBOX;5",   ";5;7",     "INBOX;0;7",  "INBOX;5;0",
                                      "INBOX;5;x", "INBOX;;7", "INBOX;5;7;", "5;7"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        folder = NULL;
        assert_int_equal(imap_id_parse(bad[i], &folder, &uv, &uid), -1);
        assert_null(folder);
    }
}

static void test_strategy(void **state)
{
    (void)state;
    /* QRESYNC needs the server's ENABLED confirmation. */
    assert_int_equal(imap_strategy_choose(T_QRESYNC | T_CONDSTORE, T_QRESYNC),
                     IMAP_STRATEGY_QRESYNC);
    assert_int_equal(imap_strategy_choose(T_QRESYNC | T_CONDSTORE, 0),
                     IMAP_STRATEGY_CONDSTORE);
    assert_int_equal(imap_strategy_choose(T_CONDSTORE, T_CONDSTORE),
                     IMAP_STRATEGY_CONDSTORE);
    assert_int_equal(imap_strategy_choose(T_IDLE, T_QRESYNC), IMAP_STRATEGY_PLAIN);
    assert_int_equal(imap_strategy_choose(0, 0), IMAP_STRATEGY_PLAIN);
    assert_string_equal(imap_strategy_name(IMAP_STRATEGY_QRESYNC), "qresync");
    assert_string_equal(imap_strategy_name(IMAP_STRATEGY_CONDSTORE), "condstore");
    assert_string_equal(imap_strategy_name(IMAP_STRATEGY_PLAIN), "plain");
}

static void test_push_choice(void **state)
{
    (void)state;
    /* auto */
    assert_int_equal(imap_push_choose(0, T_IDLE | T_NOTIFY), IMAP_PUSHK_NOTIFY);
    assert_int_equal(imap_push_choose(0, T_IDLE), IMAP_PUSHK_IDLE);
    assert_int_equal(imap_push_choose(0, 0), IMAP_PUSHK_POLL);
    /* idle: never NOTIFY, even when offered */
    assert_int_equal(imap_push_choose(1, T_IDLE | T_NOTIFY), IMAP_PUSHK_IDLE);
    assert_int_equal(imap_push_choose(1, T_NOTIFY), IMAP_PUSHK_POLL);
    /* notify falls back to IDLE, then polling */
    assert_int_equal(imap_push_choose(2, T_IDLE), IMAP_PUSHK_IDLE);
    assert_int_equal(imap_push_choose(2, 0), IMAP_PUSHK_POLL);
    /* off */
    assert_int_equal(imap_push_choose(3, T_IDLE | T_NOTIFY), IMAP_PUSHK_POLL);
    assert_string_equal(imap_push_name(IMAP_PUSHK_NOTIFY), "notify");
    assert_string_equal(imap_push_name(IMAP_PUSHK_POLL), "poll");
}

static void test_scan_due(void **state)
{
    (void)state;
    const int64_t t = 1700000000000;
    assert_true(imap_scan_due(0, t, IMAP_SCAN_INTERVAL_MS));
    assert_false(imap_scan_due(t, t + 60000, IMAP_SCAN_INTERVAL_MS));
    assert_false(imap_scan_due(t, t + IMAP_SCAN_INTERVAL_MS - 1, IMAP_SCAN_INTERVAL_MS));
    assert_true(imap_scan_due(t, t + IMAP_SCAN_INTERVAL_MS, IMAP_SCAN_INTERVAL_MS));
    /* clock moved back */
    assert_true(imap_scan_due(t, t - 1000, IMAP_SCAN_INTERVAL_MS));
}

static void test_folder_roles(void **state)
{
    (void)state;
    assert_int_equal(imap_folder_role("\\HasNoChildren", "inbox"), MP_ROLE_INBOX);
    assert_int_equal(imap_folder_role("\\HasNoChildren \\Sent", "Gesendet"),
                     MP_ROLE_SENT);
    assert_int_equal(imap_folder_role("\\junk", "Werbung"), MP_ROLE_JUNK);
    assert_int_equal(imap_folder_role("\\Drafts", "x"), MP_ROLE_DRAFTS);
    assert_int_equal(imap_folder_role("\\Trash", "x"), MP_ROLE_TRASH);
    assert_int_equal(imap_folder_role("\\Archive", "x"), MP_ROLE_ARCHIVE);
    assert_int_equal(imap_folder_role("\\All \\HasChildren", "[Gmail]/All Mail"),
                     MP_ROLE_ALL);
    assert_int_equal(imap_folder_role("\\Flagged", "Starred"), MP_ROLE_FLAGGED);
    /* attribute wins over the name; the name is a fallback */
    assert_int_equal(imap_folder_role("\\Archive", "Sent"), MP_ROLE_ARCHIVE);
    assert_int_equal(imap_folder_role("", "Spam"), MP_ROLE_JUNK);
    assert_int_equal(imap_folder_role(NULL, "Sent Items"), MP_ROLE_SENT);
    /* "\SentX" is not "\Sent" */
    assert_int_equal(imap_folder_role("\\SentX", "Projects"), MP_ROLE_NONE);
    assert_true(imap_folder_selectable("\\HasNoChildren"));
    assert_true(imap_folder_selectable(NULL));
    assert_false(imap_folder_selectable("\\HasChildren \\Noselect"));
    assert_false(imap_folder_selectable("\\NonExistent"));
}

static void test_flags(void **state)
{
    (void)state;
    const char *words[] = {"\\Seen",    "$Label1", "\\Recent",
                           "\\Flagged", "\\Seen",  "Junk"};
    char *s = imap_flags_join(words, 6);
    /* sorted like the store does, \Recent and duplicates dropped */
    assert_string_equal(s, "$Label1 Junk \\Flagged \\Seen");
    free(s);
    s = imap_flags_join(NULL, 0);
    assert_string_equal(s, "");
    free(s);
    assert_true(imap_flags_equal("\\Seen \\Flagged", "\\Flagged  \\Seen"));
    assert_true(imap_flags_equal(NULL, ""));
    assert_true(imap_flags_equal("\\Recent", NULL));
    assert_false(imap_flags_equal("\\Seen", "\\Seen \\Answered"));
    assert_false(imap_flags_equal("$label", "$Label"));
}

static void test_ranges(void **state)
{
    (void)state;
    imap_range *r = NULL;
    size_t n = 0;
    assert_int_equal(imap_ranges_parse("9:*,1:5,7,4:6", 20, &r, &n), 0);
    /* merged and sorted: 1:7, 9:20 */
    assert_int_equal(n, 2);
    assert_int_equal(r[0].lo, 1u);
    assert_int_equal(r[0].hi, 7u);
    assert_int_equal(r[1].lo, 9u);
    assert_int_equal(r[1].hi, 20u);
    assert_true(imap_ranges_contain(r, n, 1));
    assert_true(imap_ranges_contain(r, n, 7));
    assert_false(imap_ranges_contain(r, n, 8));
    assert_true(imap_ranges_contain(r, n, 20));
    assert_false(imap_ranges_contain(r, n, 21));
    assert_true(imap_ranges_count(r, n) == 19);
    free(r);

    /* reversed range, the whole UID space without expansion */
    assert_int_equal(imap_ranges_parse("4294967295:1", 0, &r, &n), 0);
    assert_int_equal(n, 1);
    assert_true(imap_ranges_count(r, n) == 4294967295ull);
    assert_true(imap_ranges_contain(r, n, 4294967295u));
    free(r);

    static const char *const bad[] = {"",  "0",     "1:",         ":5",  "1,,2",
                                      "a", "1:2:3", "4294967296", "1 2", "5,"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(imap_ranges_parse(bad[i], 9, &r, &n), -1);
        assert_null(r);
    }
}

static void test_uids(void **state)
{
    (void)state;
    uint32_t uids[] = {9, 3, 4, 5, 3, 12, 11, 10, 1};
    size_t n = imap_uids_sort_unique(uids, 9);
    assert_int_equal(n, 8);
    char *s = imap_uids_format(uids, n);
    assert_string_equal(s, "1,3:5,9:12");
    free(s);
    s = imap_uids_format(uids, 1);
    assert_string_equal(s, "1");
    free(s);
    uint32_t big[] = {4294967294u, 4294967295u};
    s = imap_uids_format(big, 2);
    assert_string_equal(s, "4294967294:4294967295");
    free(s);
    assert_int_equal(imap_uids_sort_unique(uids, 0), 0);
}

static void test_remap_match(void **state)
{
    (void)state;
    /* The server renumbered in reverse order; Message-IDs, sizes and dates
     * are unchanged. One stored message is gone, one server message is
     * new, two stored copies share a Message-ID, one message has none. */
    imap_remap_key stored[] = {
        {"a@x", 100, 1000, 1},   {"b@x", 200, 2000, 2},    {"dup@x", 300, 3000, 3},
        {"dup@x", 300, 3000, 4}, {"gone@x", 400, 4000, 5}, {NULL, 500, 5000, 6},
        {"c@x", 600, 6000, 7},
    };
    imap_remap_key server[] = {
        {"c@x", 601, 6000, 10}, /* size differs: not the same message */
        {NULL, 500, 5000, 11},  {"dup@x", 300, 3000, 12}, {"dup@x", 300, 3000, 13},
        {"b@x", 200, 2000, 14}, {"a@x", 100, 1000, 15},   {"new@x", 700, 7000, 16},
    };
    long match[7];
    imap_remap_match(stored, 7, server, 7, match);
    assert_int_equal(match[0], 5); /* a -> uid 15 */
    assert_int_equal(match[1], 4); /* b -> uid 14 */
    /* duplicates pair up in UID order, each server copy used once */
    assert_int_equal(match[2], 2);
    assert_int_equal(match[3], 3);
    assert_int_equal(match[4], -1); /* gone */
    assert_int_equal(match[5], 1);  /* no Message-ID: size and date */
    assert_int_equal(match[6], -1); /* size mismatch */

    /* Unknown size or date on one side does not prevent a match by id. */
    imap_remap_key s2[] = {{"a@x", -1, 0, 1}};
    imap_remap_key v2[] = {{"a@x", 100, 1000, 9}};
    long m2[1];
    imap_remap_match(s2, 1, v2, 1, m2);
    assert_int_equal(m2[0], 0);
    /* Without Message-ID, unknown size/date never matches. */
    imap_remap_key s3[] = {{NULL, -1, 0, 1}};
    imap_remap_key v3[] = {{NULL, -1, 0, 9}};
    imap_remap_match(s3, 1, v3, 1, m2);
    assert_int_equal(m2[0], -1);
    /* Empty inputs. */
    imap_remap_match(NULL, 0, v3, 1, m2);
    imap_remap_match(s3, 1, NULL, 0, m2);
    assert_int_equal(m2[0], -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor),       cmocka_unit_test(test_position),
        cmocka_unit_test(test_message_id),   cmocka_unit_test(test_strategy),
        cmocka_unit_test(test_push_choice),  cmocka_unit_test(test_scan_due),
        cmocka_unit_test(test_folder_roles), cmocka_unit_test(test_flags),
        cmocka_unit_test(test_ranges),       cmocka_unit_test(test_uids),
        cmocka_unit_test(test_remap_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* emailengine.so's pure parts: the webhook signature (a vector computed
 * with Python's hmac, unsigned, forged, padded, tampered), the webhook
 * payload parser (routing fields, data.path fallback, bounds, refusals),
 * the event-id ring, EE's REST answers (listing with normalized flags,
 * mailbox list, account state, Boom errors), the id's registry number, ISO
 * dates and the cursor text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ee_cursor.h"
#include "ee_dedupe.h"
#include "ee_json.h"
#include "ee_sig.h"
#include "ee_webhook.h"

static const char key[] = "7f3c9a1e5b2d4c6e8f0a1b2c3d4e5f60";
static const char body[] =
    "{\"account\":\"acc1\",\"event\":\"messageNew\",\"path\":\"INBOX\",\"data\":{\"id\":"
    "\"AAAAAQAACnA\"}}";
/* base64url(HMAC-SHA256(key, body)), unpadded, from Python's hmac. */
static const char good_sig[] = "z8bp2ajJFSx5SG9V-iZjzlZBkB8UJcned-ZJzuxNqVI";

static ee_sig_result verify(const char *b, const char *sig)
{
    return ee_sig_verify((const uint8_t *)key, strlen(key), (const uint8_t *)b, strlen(b), sig);
}

static void test_signature(void **state)
{
    (void)state;
    char sig[EE_SIG_LEN + 1];
    assert_int_equal(ee_sig_compute((const uint8_t *)key, strlen(key), (const uint8_t *)body,
                                    strlen(body), sig),
                     0);
    assert_string_equal(sig, good_sig);
    assert_int_equal(verify(body, good_sig), EE_SIG_OK);
    /* unsigned */
    assert_int_equal(verify(body, NULL), EE_SIG_MISSING);
    assert_int_equal(verify(body, ""), EE_SIG_MISSING);
    /* forged: one character off, another secret, padded, body changed */
    char bad[sizeof good_sig];
    memcpy(bad, good_sig, sizeof good_sig);
    bad[EE_SIG_LEN - 1] = bad[EE_SIG_LEN - 1] == 'I' ? 'J' : 'I';
    assert_int_equal(verify(body, bad), EE_SIG_BAD);
    assert_int_equal(ee_sig_verify((const uint8_t *)"other", 5, (const uint8_t *)body,
                                   strlen(body), good_sig),
                     EE_SIG_BAD);
    char padded[64];
    snprintf(padded, sizeof padded, "%s=", good_sig);
    assert_int_equal(verify(body, padded), EE_SIG_BAD);
    char tampered[sizeof body];
    memcpy(tampered, body, sizeof body);
    tampered[sizeof body - 3] = 'X';
    assert_int_equal(verify(tampered, good_sig), EE_SIG_BAD);
    /* standard base64 instead of base64url is not EE's */
    char std[sizeof good_sig];
    memcpy(std, good_sig, sizeof good_sig);
    for (char *p = std; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    assert_int_equal(verify(body, std), EE_SIG_BAD);
}

static void test_webhook_parse(void **state)
{
    (void)state;
    ee_webhook w;
    char why[200];
    assert_int_equal(ee_webhook_parse(body, strlen(body), &w, why, sizeof why), 0);
    assert_string_equal(w.account, "acc1");
    assert_string_equal(w.event, "messageNew");
    assert_int_equal(w.kind, EE_EV_MESSAGE_NEW);
    assert_string_equal(w.path, "INBOX");
    assert_true(ee_event_is_folder(w.kind));

    /* mailboxReset: the path in data only */
    const char *reset = "{\"account\":\"a\",\"event\":\"mailboxReset\",\"data\":{\"path\":"
                        "\"Archive\",\"uidValidity\":\"17\",\"reason\":\"uidValidityChange\"}}";
    assert_int_equal(ee_webhook_parse(reset, strlen(reset), &w, why, sizeof why), 0);
    assert_int_equal(w.kind, EE_EV_MAILBOX_RESET);
    assert_string_equal(w.path, "Archive");

    const char *auth = "{\"account\":\"a\",\"event\":\"authenticationError\",\"data\":"
                       "{\"response\":\"NO\"}}";
    assert_int_equal(ee_webhook_parse(auth, strlen(auth), &w, why, sizeof why), 0);
    assert_int_equal(w.kind, EE_EV_AUTH_ERROR);
    assert_false(ee_event_is_folder(w.kind));
    assert_string_equal(w.path, "");

    const char *other = "{\"account\":\"a\",\"event\":\"messageSent\",\"data\":{}}";
    assert_int_equal(ee_webhook_parse(other, strlen(other), &w, why, sizeof why), 0);
    assert_int_equal(w.kind, EE_EV_OTHER);

    static const char *const refused[] = {
        "not json",
        "[1,2]",
        "{\"event\":\"messageNew\"}",
        "{\"account\":\"\",\"event\":\"messageNew\"}",
        "{\"account\":7,\"event\":\"messageNew\"}",
        "{\"account\":\"a\"}",
        "{\"account\":\"a\",\"event\":\"messageNew\",\"path\":5}",
        "{\"account\":\"a\",\"account\":\"b\",\"event\":\"messageNew\"}",
        "{\"account\":\"a\\u0000b\",\"event\":\"messageNew\"}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        why[0] = '\0';
        assert_int_equal(ee_webhook_parse(refused[i], strlen(refused[i]), &w, why, sizeof why),
                         -1);
        assert_true(why[0] != '\0');
    }
    /* A path longer than any folder name is refused, never cut. */
    size_t n = EE_PATH_MAX + 64;
    char *big = malloc(n + 64);
    assert_non_null(big);
    int k = snprintf(big, n + 64, "{\"account\":\"a\",\"event\":\"messageNew\",\"path\":\"");
    memset(big + k, 'x', EE_PATH_MAX + 1);
    snprintf(big + k + EE_PATH_MAX + 1, 8, "\"}");
    assert_int_equal(ee_webhook_parse(big, strlen(big), &w, why, sizeof why), -1);
    free(big);
}

static void test_dedupe_ring(void **state)
{
    (void)state;
    ee_dedupe *d = ee_dedupe_new();
    assert_non_null(d);
    assert_int_equal(ee_dedupe_add(d, "e-0"), 1);
    assert_int_equal(ee_dedupe_add(d, "e-0"), 0);
    assert_true(ee_dedupe_contains(d, "e-0"));
    assert_int_equal(ee_dedupe_add(d, ""), -1);
    assert_int_equal(ee_dedupe_add(d, NULL), -1);
    char id[32];
    for (int i = 1; i <= EE_DEDUPE_CAP; i++) {
        snprintf(id, sizeof id, "e-%d", i);
        assert_int_equal(ee_dedupe_add(d, id), 1);
    }
    /* Bounded: the oldest went. */
    assert_int_equal(ee_dedupe_count(d), EE_DEDUPE_CAP);
    assert_false(ee_dedupe_contains(d, "e-0"));
    assert_true(ee_dedupe_contains(d, "e-1"));
    snprintf(id, sizeof id, "e-%d", EE_DEDUPE_CAP);
    assert_true(ee_dedupe_contains(d, id));
    ee_dedupe_free(&d);
    assert_null(d);
    ee_dedupe_free(&d);
}

static void test_listing(void **state)
{
    (void)state;
    const char *page =
        "{\"total\":3,\"page\":0,\"pages\":1,\"nextPageCursor\":null,\"prevPageCursor\":null,"
        "\"messages\":["
        "{\"id\":\"AAAAAQAAAAM\",\"uid\":3,\"flags\":[\"\\\\Seen\",\"\\\\Answered\","
        "\"\\\\Seen\"],\"date\":\"2026-12-07T01:00:00.000Z\",\"size\":120,\"subject\":\"Hi\","
        "\"from\":{\"name\":\"Ann\",\"address\":\"ann@x.org\"},\"to\":[{\"name\":\"\","
        "\"address\":\"me@x.org\"},{\"address\":\"bo@x.org\"}],\"messageId\":\"<m3@x.org>\","
        "\"threadId\":\"t1\"},"
        "{\"uid\":2,\"status\":\"failed\",\"error\":\"boom\"},"
        "{\"id\":\"AAAAAQAAAAE\",\"uid\":1,\"flags\":[],\"date\":\"2026-12-07T03:00:00+02:00\"}"
        "]}";
    ee_page p;
    char why[200];
    assert_int_equal(ee_page_parse(page, strlen(page), &p, why, sizeof why), 0);
    assert_int_equal(p.total, 3);
    assert_int_equal(p.n, 2); /* the failed entry is left out */
    assert_string_equal(p.v[0].id, "AAAAAQAAAAM");
    assert_int_equal(p.v[0].uid, 3);
    assert_string_equal(p.v[0].flags, "\\Answered \\Seen"); /* sorted, once */
    assert_string_equal(p.v[0].from, "Ann <ann@x.org>");
    assert_string_equal(p.v[0].to, "me@x.org, bo@x.org");
    assert_string_equal(p.v[0].message_id, "m3@x.org");
    assert_string_equal(p.v[0].thread_id, "t1");
    assert_int_equal(p.v[0].date, 1796605200);
    assert_int_equal(p.v[0].size, 120);
    assert_string_equal(p.v[1].flags, "");
    assert_int_equal(p.v[1].date, 1796605200);
    assert_int_equal(p.v[1].size, -1);
    assert_null(p.v[1].subject);
    ee_page_clear(&p);
    const char *bad = "{\"messages\":{}}";
    assert_int_equal(ee_page_parse(bad, strlen(bad), &p, why, sizeof why), -1);
}

static void test_mailboxes_account_errors(void **state)
{
    (void)state;
    const char *list =
        "{\"mailboxes\":[{\"path\":\"INBOX\",\"specialUse\":\"\\\\Inbox\",\"messages\":3,"
        "\"uidNext\":4},{\"path\":\"Sent\",\"specialUse\":\"\\\\Sent\",\"messages\":false,"
        "\"uidNext\":false},{\"path\":\"Projects\",\"messages\":0,\"uidNext\":1}]}";
    ee_mailboxes m;
    char why[200];
    assert_int_equal(ee_mailboxes_parse(list, strlen(list), &m, why, sizeof why), 0);
    assert_int_equal(m.n, 3);
    assert_int_equal(m.v[0].role, MP_ROLE_INBOX);
    assert_int_equal(m.v[0].messages, 3);
    assert_int_equal(m.v[0].uid_next, 4);
    assert_int_equal(m.v[1].role, MP_ROLE_SENT);
    assert_int_equal(m.v[1].messages, -1); /* false: unknown */
    assert_int_equal(ee_mailboxes_find(&m, "Projects")->role, MP_ROLE_NONE);
    assert_null(ee_mailboxes_find(&m, "Nope"));
    ee_mailboxes_clear(&m);
    const char *nopath = "{\"mailboxes\":[{\"name\":\"x\"}]}";
    assert_int_equal(ee_mailboxes_parse(nopath, strlen(nopath), &m, why, sizeof why), -1);

    const char *acct = "{\"account\":\"a\",\"state\":\"authenticationError\",\"lastError\":"
                       "{\"response\":\"Invalid credentials\",\"serverResponseCode\":\"X\"}}";
    char st[64], detail[128];
    assert_int_equal(ee_account_parse(acct, strlen(acct), st, sizeof st, detail, sizeof detail,
                                      why, sizeof why),
                     0);
    assert_string_equal(st, "authenticationError");
    assert_string_equal(detail, "Invalid credentials");

    const char *boom = "{\"statusCode\":503,\"error\":\"Service Unavailable\",\"message\":"
                       "\"no\",\"code\":\"AuthenticationFails\",\"state\":\"authenticationError\"}";
    char code[64], msg[64];
    ee_error_parse(boom, strlen(boom), code, sizeof code, st, sizeof st, msg, sizeof msg);
    assert_string_equal(code, "AuthenticationFails");
    assert_string_equal(st, "authenticationError");
    assert_string_equal(msg, "no");
    ee_error_parse("<html>", 6, code, sizeof code, st, sizeof st, msg, sizeof msg);
    assert_string_equal(code, "");
}

static void test_ids_dates_cursor(void **state)
{
    (void)state;
    /* registry 1, uid 2672 (emailengine-api.md §4's example) */
    assert_int_equal(ee_id_registry("AAAAAQAACnA"), 1);
    assert_int_equal(ee_id_registry("AAAAAgAAAAE"), 2);
    assert_int_equal(ee_id_registry("AAAAAQAACn"), -1);   /* 10 chars */
    assert_int_equal(ee_id_registry("AAAAAQAAC+A"), -1);  /* not base64url */
    assert_int_equal(ee_id_registry("18c5f2a6b9d3e4f7"), -1); /* a Gmail id */
    assert_int_equal(ee_parse_date("1970-01-02T00:00:00Z"), 86400);
    assert_int_equal(ee_parse_date("1970-01-02T01:00:00.123+01:00"), 86400);
    assert_int_equal(ee_parse_date("yesterday"), 0);
    assert_int_equal(ee_parse_date(NULL), 0);

    ee_cursor c = {.reg = 5, .floor = 17, .messages = -1, .uid_next = 40,
                   .swept_ms = 1796621061515, .counted_ms = 1796621061600};
    char text[EE_CURSOR_MAX];
    ee_cursor_format(&c, text);
    assert_string_equal(text, "ee1 5 17 -1 40 1796621061515 1796621061600");
    ee_cursor d;
    assert_int_equal(ee_cursor_parse(text, &d), 0);
    /* Field by field: the struct has padding, which memcmp would compare. */
    assert_int_equal(d.reg, c.reg);
    assert_int_equal(d.floor, c.floor);
    assert_int_equal(d.messages, c.messages);
    assert_int_equal(d.uid_next, c.uid_next);
    assert_int_equal(d.swept_ms, c.swept_ms);
    assert_int_equal(d.counted_ms, c.counted_ms);
    assert_int_equal(ee_cursor_parse("ee1 5 17 -1 40 1", &d), -1);     /* short */
    assert_int_equal(ee_cursor_parse(text + 1, &d), -1);               /* not ours */
    assert_int_equal(ee_cursor_parse("ee1 5 17 -1 40 1 2 3", &d), -1); /* trailing */
    assert_int_equal(ee_cursor_parse(NULL, &d), -1);
    uint32_t below;
    char pos[32];
    ee_backfill_format(123, pos);
    assert_string_equal(pos, "uid:123");
    assert_int_equal(ee_backfill_parse(pos, &below), 0);
    assert_int_equal(below, 123);
    assert_int_equal(ee_backfill_parse("uid:x", &below), -1);
    assert_int_equal(ee_backfill_parse("uid:99999999999", &below), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_webhook_parse),
        cmocka_unit_test(test_dedupe_ring),
        cmocka_unit_test(test_listing),
        cmocka_unit_test(test_mailboxes_account_errors),
        cmocka_unit_test(test_ids_dates_cursor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the Gmail Pub/Sub push envelope parser and the messageId
 * dedupe set (plugins/gmail): both field spellings, historyId as string or
 * number, base64 in either alphabet, every malformed shape refused with a
 * reason; the dedupe set remembers exactly its last N ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "gmail_dedupe.h"
#include "gmail_envelope.h"

/* Standard base64 with padding, as Pub/Sub writes message.data. */
static char *b64(const char *text)
{
    size_t len = strlen(text);
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)text, (int)len);
    return out;
}

/* An envelope around `data_json`, with `message_extra` inside "message"
 * (after the data member) and `root_extra` after it. */
static char *envelope(const char *data_json, const char *message_extra,
                      const char *root_extra)
{
    char *d = b64(data_json);
    size_t n = strlen(d) + strlen(message_extra) + strlen(root_extra) + 64;
    char *out = malloc(n);
    snprintf(out, n, "{\"message\":{\"data\":\"%s\"%s}%s}", d, message_extra, root_extra);
    free(d);
    return out;
}

static int parse(const char *body, gmail_envelope *env, char *err, size_t err_len)
{
    return gmail_envelope_parse(body, strlen(body), env, err, err_len);
}

static void test_guide_sample(void **state)
{
    (void)state;
    /* The Gmail push guide's envelope (P§2.1), data = its sample payload. */
    const char *body =
        "{\"message\":{\"data\":"
        "\"eyJlbWFpbEFkZHJlc3MiOiAidXNlckBleGFtcGxlLmNvbSIsICJoaXN0b3J5SWQiOiAiMTIzNDU2Nz"
        "g5MCJ9\","
        "\"messageId\":\"2070443601311540\",\"message_id\":\"2070443601311540\","
        "\"publishTime\":\"2021-02-26T19:13:55.749Z\",\"publish_time\":\"2021-02-26T19:"
        "13:55.749Z\","
        "\"attributes\":{}},\"subscription\":\"projects/myproject/subscriptions/"
        "mysubscription\"}";
    gmail_envelope env;
    char err[200] = "";
    assert_int_equal(parse(body, &env, err, sizeof(err)), 0);
    assert_string_equal(env.message_id, "2070443601311540");
    assert_string_equal(env.publish_time, "2021-02-26T19:13:55.749Z");
    assert_string_equal(env.subscription,
                        "projects/myproject/subscriptions/mysubscription");
    assert_string_equal(env.email, "user@example.com");
    assert_string_equal(env.history_id, "1234567890");
    assert_true(env.history_id_num == 1234567890u);
}

typedef struct {
    const char *name;
    const char *data;          /* JSON to base64 into message.data */
    const char *message_extra; /* more members of "message" */
    const char *root_extra;    /* more members of the root */
    const char *want_id;       /* NULL: must be refused */
    const char *want_history;
    const char *want_time;
} env_case;

#define GOOD_DATA "{\"emailAddress\":\"u@example.com\",\"historyId\":\"42\"}"

static const env_case cases[] = {
    /* Spellings. */
    {"camelCase only", GOOD_DATA, ",\"messageId\":\"7\",\"publishTime\":\"T\"", "", "7",
     "42", "T"},
    {"snake_case only", GOOD_DATA, ",\"message_id\":\"8\",\"publish_time\":\"T2\"", "",
     "8", "42", "T2"},
    {"both, agreeing", GOOD_DATA, ",\"messageId\":\"9\",\"message_id\":\"9\"", "", "9",
     "42", ""},
    {"both, disagreeing", GOOD_DATA, ",\"messageId\":\"9\",\"message_id\":\"10\"", "",
     NULL, NULL, NULL},
    {"publishTime disagreeing", GOOD_DATA,
     ",\"messageId\":\"9\",\"publishTime\":\"a\",\"publish_time\":\"b\"", "", NULL, NULL,
     NULL},
    {"no messageId", GOOD_DATA, ",\"publishTime\":\"T\"", "", NULL, NULL, NULL},
    {"empty messageId", GOOD_DATA, ",\"messageId\":\"\"", "", NULL, NULL, NULL},
    {"messageId a number", GOOD_DATA, ",\"messageId\":7", "", NULL, NULL, NULL},
    {"messageId with a control byte", GOOD_DATA, ",\"messageId\":\"7\\n\"", "", NULL,
     NULL, NULL},
    {"messageId 129 bytes", GOOD_DATA,
     ",\"messageId\":"
     "\"123456789012345678901234567890123456789012345678901234567890123456789"
     "012345678901234567890123456789012345678901234567890123456789\"",
     "", NULL, NULL, NULL},
    /* historyId forms. */
    {"historyId number",
     "{\"emailAddress\":\"u@example.com\",\"historyId\":1234567890123}",
     ",\"messageId\":\"1\"", "", "1", "1234567890123", ""},
    {"historyId leading zeros",
     "{\"emailAddress\":\"u@example.com\",\"historyId\":\"0042\"}",
     ",\"messageId\":\"1\"", "", "1", "42", ""},
    {"historyId 2^64-1",
     "{\"emailAddress\":\"u@example.com\",\"historyId\":\"18446744073709551615\"}",
     ",\"messageId\":\"1\"", "", "1", "18446744073709551615", ""},
    {"historyId 2^64",
     "{\"emailAddress\":\"u@example.com\",\"historyId\":\"18446744073709551616\"}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"historyId 21 digits",
     "{\"emailAddress\":\"u@example.com\",\"historyId\":\"000000000000000000001\"}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"historyId negative number", "{\"emailAddress\":\"u@example.com\",\"historyId\":-5}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"historyId negative string",
     "{\"emailAddress\":\"u@example.com\",\"historyId\":\"-5\"}", ",\"messageId\":\"1\"",
     "", NULL, NULL, NULL},
    {"historyId real", "{\"emailAddress\":\"u@example.com\",\"historyId\":12.5}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"historyId exponent", "{\"emailAddress\":\"u@example.com\",\"historyId\":1e5}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"historyId string with space",
     "{\"emailAddress\":\"u@example.com\",\"historyId\":\"4 2\"}", ",\"messageId\":\"1\"",
     "", NULL, NULL, NULL},
    {"historyId empty", "{\"emailAddress\":\"u@example.com\",\"historyId\":\"\"}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"historyId missing", "{\"emailAddress\":\"u@example.com\"}", ",\"messageId\":\"1\"",
     "", NULL, NULL, NULL},
    {"historyId bool", "{\"emailAddress\":\"u@example.com\",\"historyId\":true}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    /* emailAddress. */
    {"emailAddress missing", "{\"historyId\":\"1\"}", ",\"messageId\":\"1\"", "", NULL,
     NULL, NULL},
    {"emailAddress not an address", "{\"emailAddress\":\"nobody\",\"historyId\":\"1\"}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"emailAddress number", "{\"emailAddress\":5,\"historyId\":\"1\"}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"data not an object", "[1,2]", ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    {"data not JSON", "emailAddress=u@example.com", ",\"messageId\":\"1\"", "", NULL,
     NULL, NULL},
    {"data duplicate members",
     "{\"emailAddress\":\"u@example.com\",\"historyId\":\"1\",\"historyId\":\"2\"}",
     ",\"messageId\":\"1\"", "", NULL, NULL, NULL},
    /* Other members. */
    {"attributes with values", GOOD_DATA,
     ",\"messageId\":\"1\",\"attributes\":{\"a\":\"b\"}", "", "1", "42", ""},
    {"attributes not an object", GOOD_DATA, ",\"messageId\":\"1\",\"attributes\":[]", "",
     NULL, NULL, NULL},
    {"subscription not a string", GOOD_DATA, ",\"messageId\":\"1\"",
     ",\"subscription\":3", NULL, NULL, NULL},
    {"extra root members ignored", GOOD_DATA, ",\"messageId\":\"1\"",
     ",\"deliveryAttempt\":2", "1", "42", ""},
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const env_case *c = &cases[i];
        char *body = envelope(c->data, c->message_extra, c->root_extra);
        gmail_envelope env;
        char err[200] = "";
        int rc = parse(body, &env, err, sizeof(err));
        if (c->want_id) {
            if (rc != 0)
                fail_msg("case \"%s\" refused: %s", c->name, err);
            assert_string_equal(env.message_id, c->want_id);
            assert_string_equal(env.history_id, c->want_history);
            assert_string_equal(env.publish_time, c->want_time);
            assert_string_equal(env.email, "u@example.com");
        } else {
            if (rc != -1)
                fail_msg("case \"%s\" accepted", c->name);
            assert_true(strncmp(err, "push envelope: ", 15) == 0);
            assert_string_equal(env.message_id, ""); /* zeroed on failure */
            assert_string_equal(env.email, "");
        }
        free(body);
    }
}

static void test_base64_forms(void **state)
{
    (void)state;
    /* "?>>" and "~~~" encode to "+" and "/" in standard base64: the
     * URL-safe and the unpadded forms of the same text decode the same. */
    const char *data = "{\"emailAddress\":\"u?>>~~~@example.com\",\"historyId\":\"1\"}";
    char *std = b64(data);
    assert_true(strpbrk(std, "+/") != NULL);
    char *url = strdup(std);
    for (char *p = url; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    char *unpadded = strdup(url);
    char *eq = strchr(unpadded, '=');
    if (eq)
        *eq = '\0';
    const char *forms[] = {std, url, unpadded};
    for (size_t i = 0; i < 3; i++) {
        char body[1024];
        snprintf(body, sizeof(body),
                 "{\"message\":{\"data\":\"%s\",\"messageId\":\"1\"}}", forms[i]);
        gmail_envelope env;
        char err[200] = "";
        if (parse(body, &env, err, sizeof(err)) != 0)
            fail_msg("form %zu refused: %s", i, err);
        assert_string_equal(env.email, "u?>>~~~@example.com");
    }
    /* Mixed alphabets: no encoder writes "+" and "_" in one text. */
    char mixed[512];
    snprintf(mixed, sizeof(mixed), "%s", std);
    char *first = strpbrk(mixed, "+/");
    assert_non_null(first);
    assert_non_null(strpbrk(first + 1, "+/")); /* a standard one stays */
    *first = *first == '+' ? '-' : '_';
    {
        char body[1024];
        snprintf(body, sizeof(body),
                 "{\"message\":{\"data\":\"%s\",\"messageId\":\"1\"}}", mixed);
        gmail_envelope env;
        char err[200] = "";
        assert_int_equal(parse(body, &env, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "base64"));
    }
    /* Bad characters, bad padding, impossible lengths. */
    const char *bad_data[] = {"eyJh!", "eyJhIjo=x", "e", "====", "eyJhIjoxfQ===", ""};
    for (size_t i = 0; i < sizeof(bad_data) / sizeof(bad_data[0]); i++) {
        char body[1024];
        snprintf(body, sizeof(body),
                 "{\"message\":{\"data\":\"%s\",\"messageId\":\"1\"}}", bad_data[i]);
        gmail_envelope env;
        char err[200] = "";
        if (parse(body, &env, err, sizeof(err)) != -1)
            fail_msg("data \"%s\" accepted", bad_data[i]);
    }
    free(std);
    free(url);
    free(unpadded);
}

static void test_malformed_bodies(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "",
        "not json",
        "[]",
        "{}",
        "{\"message\":null}",
        "{\"message\":\"x\"}",
        "{\"message\":{\"messageId\":\"1\"}}",
        "{\"message\":{\"messageId\":\"1\",\"data\":5}}",
        "{\"message\":{\"messageId\":\"1\",\"data\":\"\"}}",
        "{\"message\":{},\"message\":{}}",
        "{\"message\":{\"messageId\":\"1\",\"data\":\"eyJ9\"}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        gmail_envelope env;
        char err[200] = "";
        if (parse(bodies[i], &env, err, sizeof(err)) != -1)
            fail_msg("body %zu accepted", i);
        assert_true(err[0] != '\0');
    }
    /* NULL body, and an otherwise valid body over the size bound. */
    gmail_envelope env;
    char err[200];
    assert_int_equal(gmail_envelope_parse(NULL, 0, &env, err, sizeof(err)), -1);
    char *good = envelope(GOOD_DATA, ",\"messageId\":\"1\"", "");
    size_t glen = strlen(good);
    char *big = malloc(GMAIL_ENV_BODY_MAX + 2);
    memset(big, ' ', GMAIL_ENV_BODY_MAX + 1);
    memcpy(big + GMAIL_ENV_BODY_MAX + 1 - glen, good, glen + 1);
    /* GMAIL_ENV_BODY_MAX + 1 bytes: refused on size; one space less: parsed. */
    assert_int_equal(strlen(big), GMAIL_ENV_BODY_MAX + 1);
    assert_int_equal(gmail_envelope_parse(big, strlen(big), &env, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(
        gmail_envelope_parse(big + 1, strlen(big) - 1, &env, err, sizeof(err)), 0);
    /* Not NUL-terminated: only `len` bytes are read. */
    char *copy = strdup(good);
    size_t n = strlen(copy);
    assert_int_equal(gmail_envelope_parse(copy, n, &env, NULL, 0), 0);
    assert_int_equal(gmail_envelope_parse(copy, n - 1, &env, NULL, 0), -1);
    free(copy);
    free(big);
    free(good);
}

static void test_dedupe(void **state)
{
    (void)state;
    gmail_dedupe *d = gmail_dedupe_new(4);
    assert_non_null(d);
    assert_false(gmail_dedupe_contains(d, "a"));
    assert_int_equal(gmail_dedupe_add(d, "a"), 1);
    assert_int_equal(gmail_dedupe_add(d, "a"), 0);
    assert_true(gmail_dedupe_contains(d, "a"));
    assert_int_equal(gmail_dedupe_add(d, "b"), 1);
    assert_int_equal(gmail_dedupe_add(d, "c"), 1);
    assert_int_equal(gmail_dedupe_add(d, "d"), 1);
    assert_int_equal(gmail_dedupe_count(d), 4);
    /* Full: the oldest goes first, the re-add of "a" did not refresh it. */
    assert_int_equal(gmail_dedupe_add(d, "e"), 1);
    assert_false(gmail_dedupe_contains(d, "a"));
    assert_true(gmail_dedupe_contains(d, "b"));
    assert_true(gmail_dedupe_contains(d, "e"));
    assert_int_equal(gmail_dedupe_count(d), 4);
    /* A forgotten id is new again. */
    assert_int_equal(gmail_dedupe_add(d, "a"), 1);
    assert_false(gmail_dedupe_contains(d, "b"));
    /* Invalid ids. */
    char long_id[GMAIL_DEDUPE_ID_MAX + 2];
    memset(long_id, '9', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    assert_int_equal(gmail_dedupe_add(d, long_id), -1);
    assert_int_equal(gmail_dedupe_add(d, ""), -1);
    assert_int_equal(gmail_dedupe_add(d, NULL), -1);
    assert_false(gmail_dedupe_contains(d, NULL));
    long_id[GMAIL_DEDUPE_ID_MAX] = '\0';
    assert_int_equal(gmail_dedupe_add(d, long_id), 1);
    gmail_dedupe_free(&d);
    assert_null(d);
    gmail_dedupe_free(&d);
    assert_null(gmail_dedupe_new((size_t)1 << 21));
}

/* At the default capacity, many ids in many hash chains: exactly the last
 * 4096 are remembered, in any order of lookup. */
static void test_dedupe_window(void **state)
{
    (void)state;
    gmail_dedupe *d = gmail_dedupe_new(0);
    const unsigned total = 3 * GMAIL_DEDUPE_DEFAULT_CAPACITY + 17;
    char id[32];
    for (unsigned i = 0; i < total; i++) {
        snprintf(id, sizeof(id), "%llu", 2070443601311540ull + i);
        assert_int_equal(gmail_dedupe_add(d, id), 1);
    }
    assert_int_equal(gmail_dedupe_count(d), GMAIL_DEDUPE_DEFAULT_CAPACITY);
    for (unsigned i = 0; i < total; i++) {
        snprintf(id, sizeof(id), "%llu", 2070443601311540ull + i);
        bool want = i >= total - GMAIL_DEDUPE_DEFAULT_CAPACITY;
        if (gmail_dedupe_contains(d, id) != want)
            fail_msg("id #%u: contains=%d, want %d", i, !want, want);
    }
    gmail_dedupe_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guide_sample), cmocka_unit_test(test_cases),
        cmocka_unit_test(test_base64_forms), cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_dedupe),       cmocka_unit_test(test_dedupe_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

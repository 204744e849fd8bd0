/* gmail.so: Message resources, RFC 2047 words, config checks
 * (gmail_message.c, gmail_config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gmail_config.h"
#include "gmail_message.h"

static void test_msg_parse(void **state)
{
    (void)state;
    static const char json[] =
        "{\"id\":\"18c2\",\"threadId\":\"18c0\",\"labelIds\":[\"INBOX\",\"UNREAD\"],"
        "\"snippet\":\"hi\",\"sizeEstimate\":2345,\"historyId\":\"77\","
        "\"internalDate\":\"1700000000123\",\"payload\":{\"mimeType\":\"text/plain\","
        "\"headers\":[{\"name\":\"From\",\"value\":\"Ann <ann@example.com>\"},"
        "{\"name\":\"To\",\"value\":\"bob@example.com\"},"
        "{\"name\":\"Subject\",\"value\":\"=?UTF-8?B?R3LDvMOfZQ==?= =?ISO-8859-1?Q?_=E0_vous?=\"},"
        "{\"name\":\"Message-ID\",\"value\":\" <abc@host> \"},"
        "{\"name\":\"Subject\",\"value\":\"second\"}]}}";
    gmail_msg m;
    char *error = NULL;
    assert_int_equal(gmail_msg_parse(&m, json, strlen(json), &error), 0);
    assert_string_equal(m.id, "18c2");
    assert_string_equal(m.thread_id, "18c0");
    assert_int_equal(m.date, 1700000000);
    assert_int_equal(m.size, 2345);
    assert_int_equal(m.n_labels, 2);
    assert_string_equal(m.label_ids[1], "UNREAD");
    assert_string_equal(m.from, "Ann <ann@example.com>");
    assert_string_equal(m.to, "bob@example.com");
    assert_string_equal(m.subject, "Grüße à vous");
    assert_string_equal(m.message_id, "abc@host");
    gmail_msg_clear(&m);

    /* minimal: no payload, no size */
    static const char minimal[] = "{\"id\":\"x\",\"labelIds\":[]}";
    assert_int_equal(gmail_msg_parse(&m, minimal, strlen(minimal), NULL), 0);
    assert_null(m.subject);
    assert_int_equal(m.size, -1);
    assert_int_equal(m.n_labels, 0);
    gmail_msg_clear(&m);

    static const char *const bad[] = {"", "[]", "{}", "{\"id\":\"\"}", "{\"id\":5}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        error = NULL;
        assert_int_equal(gmail_msg_parse(&m, bad[i], strlen(bad[i]), &error), -1);
        assert_non_null(error);
        free(error);
    }
}

static void test_decode_words(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"=?utf-8?q?a_b?=", "a b"},
        {"=?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?=", "éé"}, /* space between words dropped */
        {"x =?UTF-8?B?w6k=?= y", "x é y"},
        {"=?bogus?X?abc?=", "=?bogus?X?abc?="},
        {"=?utf-8?q?unterminated", "=?utf-8?q?unterminated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = gmail_decode_words(cases[i].in);
        assert_string_equal(s, cases[i].out);
        free(s);
    }
}

static void test_config(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        int ok;
        const char *path;
    } urls[] = {
        {"https://gmail.googleapis.com", 1, ""},
        {"https://gmail.googleapis.com/", 1, ""},
        {"https://proxy.example/gmail/", 1, "/gmail"},
        {"http://127.0.0.1:8080", 1, ""},
        {"http://[::1]:9/x", 1, "/x"},
        {"http://localhost/", 1, ""},
        {"http://gmail.googleapis.com", 0, NULL},
        {"http://127.0.0.1.evil.example", 0, NULL},
        {"http://10.0.0.1", 0, NULL},
        {"ftp://127.0.0.1", 0, NULL},
        {"https://user@host", 0, NULL},
        {"https://host/?q=1", 0, NULL},
        {"https://", 0, NULL},
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char why[256] = "", *path = NULL;
        int r = gmail_url_check(urls[i].url, &path, why, sizeof why);
        assert_int_equal(r, urls[i].ok ? 0 : -1);
        if (urls[i].ok) {
            assert_string_equal(path, urls[i].path);
            free(path);
        } else {
            assert_true(why[0] != '\0');
        }
    }
    gmail_push_mode m;
    assert_int_equal(gmail_push_mode_parse("off", &m), 0);
    assert_int_equal(m, GMAIL_PUSH_OFF);
    assert_int_equal(gmail_push_mode_parse("pubsub-pull", &m), 0);
    assert_int_equal(m, GMAIL_PUSH_PUBSUB_PULL);
    assert_int_equal(gmail_push_mode_parse("pubsub-push", &m), 0);
    assert_int_equal(m, GMAIL_PUSH_PUBSUB_PUSH);
    assert_int_equal(gmail_push_mode_parse("push", &m), -1);
    assert_int_equal(gmail_pubsub_name_check("projects/p/topics/t", "topics"), 0);
    assert_int_equal(gmail_pubsub_name_check("projects/p/subscriptions/s", "subscriptions"), 0);
    assert_int_equal(gmail_pubsub_name_check("projects/p/topics/t", "subscriptions"), -1);
    assert_int_equal(gmail_pubsub_name_check("projects//topics/t", "topics"), -1);
    assert_int_equal(gmail_pubsub_name_check("projects/p/topics/t/x", "topics"), -1);
    assert_int_equal(gmail_pubsub_name_check("topics/t", "topics"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_parse),
        cmocka_unit_test(test_decode_words),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

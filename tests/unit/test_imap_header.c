/* Unit tests of imap_header_envelope: summary fields read from a raw
 * header. Agreement with Dovecot's ENVELOPE on real messages is tested in
 * tests/integration/test_imap_header_summary.py; these are the shapes a
 * server never hands out for comparison: bare LF, no body separator, NULs,
 * lines that are not fields, truncation anywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "imap_client.h"

static imap_envelope parse(imap_arena *a, const char *raw, size_t len)
{
    imap_envelope e;
    assert_int_equal(imap_header_envelope(raw, len, a, &e), 0);
    return e;
}

#define PARSE(a, lit) parse((a), (lit), sizeof(lit) - 1)

static void test_fields(void **state)
{
    (void)state;
    imap_arena *a = imap_arena_new();
    imap_envelope e =
        PARSE(a, "Received: from x\r\n\tby y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                 "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                 "From: \"Doe, John\" <john@example.org>\r\n"
                 "To: a@x, \"B. \\\"Q\\\" C\" <b@y>, Team: c@z (Cee), d@w;\r\n"
                 "Subject: =?UTF-8?Q?Caf=C3=A9?=\r\n =?UTF-8?B?IGF1IGxhaXQ=?=\r\n"
                 "Message-ID: <id1@example.org>\r\n"
                 "In-Reply-To: <parent@example.org> (comment)\r\n"
                 "\r\n"
                 "Subject: in the body\r\n");
    assert_string_equal(e.date, "Tue, 14 Nov 2023 22:13:20 +0000");
    assert_string_equal(e.from, "Doe, John <john@example.org>");
    assert_string_equal(e.to, "a@x, B. \"Q\" C <b@y>, Cee <c@z>, d@w");
    assert_string_equal(e.subject, "Caf\xc3\xa9 au lait");
    assert_string_equal(e.message_id, "id1@example.org");
    assert_string_equal(e.in_reply_to, "parent@example.org");
    imap_arena_free(&a);
}

static void test_line_ends_and_folds(void **state)
{
    (void)state;
    imap_arena *a = imap_arena_new();
    /* Bare LF; a fold with a tab becomes one space; the last of a repeated
     * field counts; names in any case; white space before the colon. */
    imap_envelope e = PARSE(
        a, "subject : one\n\ttwo\nSUBJECT: three\n  four \nto:\n x@y\n\nFrom: b@c\n");
    assert_string_equal(e.subject, "three  four");
    assert_string_equal(e.to, "x@y");
    assert_null(e.from); /* after the empty line: body */
    assert_null(e.date);
    assert_null(e.message_id);

    /* No empty line and no final newline: the header runs to the end. */
    e = PARSE(a, "From: A <a@b>\r\nSubject: cut");
    assert_string_equal(e.from, "A <a@b>");
    assert_string_equal(e.subject, "cut");

    /* An empty message, an empty first line. */
    e = PARSE(a, "");
    assert_null(e.subject);
    e = PARSE(a, "\r\nSubject: body\r\n");
    assert_null(e.subject);
    imap_arena_free(&a);
}

static void test_addresses(void **state)
{
    (void)state;
    imap_arena *a = imap_arena_new();
    imap_envelope e = PARSE(a, "From: <@relay.example,@b.example:frank@example.org>\r\n"
                               "To: undisclosed-recipients:;\r\n");
    assert_string_equal(e.from, "frank@example.org");
    assert_null(e.to);

    e = PARSE(a, "From: =?ISO-8859-1?Q?J=F6rg?= (x) <j@x.de> (work)\r\n"
                 "To: \"odd local\"@example.org, nodomain, <unclosed@example.org\r\n");
    assert_string_equal(e.from, "J\xc3\xb6rg <j@x.de>");
    assert_string_equal(e.to,
                        "\"odd local\"@example.org, nodomain, unclosed@example.org");

    /* Nothing usable: empty entries, stray specials, an unclosed comment. */
    e = PARSE(a, "From: , ; > ) :\r\nTo: (never closed\r\n");
    assert_null(e.from);
    assert_null(e.to);
    imap_arena_free(&a);
}

static void test_hostile(void **state)
{
    (void)state;
    imap_arena *a = imap_arena_new();
    /* NULs are dropped, lines without a colon and leading continuations
     * are skipped, the Message-ID without brackets is taken as it is. */
    static const char raw[] = " stray continuation\r\nno colon here\r\nSubj\0ect: x\r\n"
                              "Subject: a\0b\r\nMessage-ID:  bare-id  \r\n";
    imap_envelope e = parse(a, raw, sizeof raw - 1);
    assert_string_equal(e.subject, "ab");
    assert_string_equal(e.message_id, "bare-id");

    /* Every prefix of a header parses without reading past its length
     * (ASan in CI checks the reads). */
    static const char full[] = "From: \"Q\\\"x\" <a@b> (c (nested) \\) d), e@f\r\n"
                               "Subject: =?utf-8?q?x?= =?utf-8?b?eQ==?=\r\n\r\nbody";
    for (size_t n = 0; n <= sizeof full - 1; n++) {
        char *copy = malloc(n > 0 ? n : 1);
        memcpy(copy, full, n);
        imap_envelope p;
        assert_int_equal(imap_header_envelope(copy, n, a, &p), 0);
        free(copy);
        imap_arena_reset(a);
    }
    e = PARSE(a, "From: \"Q\\\"x\" <a@b> (c (nested) \\) d), e@f\r\n");
    assert_string_equal(e.from, "Q\"x <a@b>, e@f");

    /* A value past the 64 KB cap is cut, not refused. */
    size_t big = 200 * 1024;
    char *huge = malloc(big);
    memcpy(huge, "Subject: ", 9);
    memset(huge + 9, 'x', big - 9);
    e = parse(a, huge, big);
    assert_int_equal(strlen(e.subject), 64 * 1024 - 1);
    free(huge);

    assert_int_equal(imap_header_envelope(NULL, 0, a, &e), -1);
    imap_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_line_ends_and_folds),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

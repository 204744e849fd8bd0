/*
 * Unit tests of mailpulsectl's pure parts: argument parsing, UTF-8 width
 * and truncation, table layout, the SSE parser and query building.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "util/util.h"

/* ---- helpers ---- */

/* Independent strict UTF-8 check (shortest form, no surrogates). */
static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        unsigned char c = *p;
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += n;
    }
    return 1;
}

/* ---- arguments ---- */

#define ARGV(...)                                                                        \
    char *argv[] = {__VA_ARGS__, NULL};                                                  \
    int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1

static int parse(int argc, char **argv, mpctl_args *a, char **error_r)
{
    return mpctl_args_parse(argc, argv, a, error_r);
}

static void test_args_messages(void **state)
{
    char a0[] = "mailpulsectl", a1[] = "-s", a2[] = "/run/mp.sock", a3[] = "--json",
         a4[] = "messages", a5[] = "alice", a6[] = "--folder", a7[] = "Sent Items",
         a8[] = "-n", a9[] = "5", a10[] = "--before", a11[] = "m9";
    ARGV(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11);
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(argc, argv, &a, &error), 0);
    assert_null(error);
    assert_string_equal(a.socket, "/run/mp.sock");
    assert_int_equal(a.json, 1);
    assert_int_equal(a.command, MPCTL_CMD_MESSAGES);
    assert_int_equal(a.n_pos, 1);
    assert_string_equal(a.pos[0], "alice");
    assert_string_equal(a.folder, "Sent Items");
    assert_int_equal(a.limit, 5);
    assert_string_equal(a.before, "m9");
    assert_null(a.url);
    assert_int_equal(a.follow, 0);
}

static void test_args_events_options_after_command(void **state)
{
    char a0[] = "mailpulsectl", a1[] = "-u", a2[] = "http://127.0.0.1:8025", a3[] = "-t",
         a4[] = "/tok", a5[] = "events", a6[] = "--types",
         a7[] = "message.new,folder.reset", a8[] = "--follow", a9[] = "--after",
         a10[] = "10", a11[] = "--accounts", a12[] = "a,b", a13[] = "--json";
    ARGV(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13);
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(argc, argv, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_EVENTS);
    assert_string_equal(a.url, "http://127.0.0.1:8025");
    assert_string_equal(a.token_file, "/tok");
    assert_int_equal(a.follow, 1);
    assert_int_equal(a.after, 10);
    assert_string_equal(a.types, "message.new,folder.reset");
    assert_string_equal(a.accounts, "a,b");
    assert_int_equal(a.json, 1);
    assert_int_equal(a.n_pos, 0);
    assert_int_equal(a.limit, -1);
}

static void test_args_defaults(void **state)
{
    char a0[] = "mailpulsectl", a1[] = "events";
    ARGV(a0, a1);
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(argc, argv, &a, &error), 0);
    assert_int_equal(a.after, -1);
    assert_int_equal(a.follow, 0);
    assert_int_equal(a.json, 0);
    assert_null(a.socket);
    assert_null(a.config);
    assert_null(a.types);
}

static void test_args_backfill_and_check_config(void **state)
{
    char a0[] = "x", a1[] = "-c", a2[] = "/etc/mp.conf", a3[] = "backfill",
         a4[] = "alice", a5[] = "Archive/2024";
    ARGV(a0, a1, a2, a3, a4, a5);
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(argc, argv, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_BACKFILL);
    assert_string_equal(a.config, "/etc/mp.conf");
    assert_int_equal(a.n_pos, 2);
    assert_string_equal(a.pos[1], "Archive/2024");

    char b0[] = "x", b1[] = "check-config";
    char *argv2[] = {b0, b1, NULL};
    assert_int_equal(parse(2, argv2, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_CHECK_CONFIG);
    assert_int_equal(a.n_pos, 0);

    char c0[] = "x", c1[] = "check-config", c2[] = "/tmp/other.conf";
    char *argv3[] = {c0, c1, c2, NULL};
    assert_int_equal(parse(3, argv3, &a, &error), 0);
    assert_int_equal(a.n_pos, 1);
    assert_string_equal(a.pos[0], "/tmp/other.conf");
}

static void test_args_help(void **state)
{
    mpctl_args a;
    char *error = NULL;
    char a0[] = "x", a1[] = "-h";
    char *v1[] = {a0, a1, NULL};
    assert_int_equal(parse(2, v1, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_HELP);

    char b1[] = "help";
    char *v2[] = {a0, b1, NULL};
    assert_int_equal(parse(2, v2, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_HELP);

    char c1[] = "status", c2[] = "--help";
    char *v3[] = {a0, c1, c2, NULL};
    assert_int_equal(parse(3, v3, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_HELP);
    assert_non_null(strstr(mpctl_usage(), "usage: mailpulsectl"));
}

static void expect_usage_error(int argc, char **argv, const char *fragment)
{
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(argc, argv, &a, &error), -1);
    assert_non_null(error);
    if (strstr(error, fragment) == NULL)
        fail_msg("error '%s' lacks '%s'", error, fragment);
    free(error);
}

/* gmail-status takes exactly one account; --json on either side. */
static void test_args_gmail_status(void **state)
{
    (void)state;
    char x[] = "x", cmd[] = "gmail-status", acct[] = "gm", json[] = "--json", more[] = "b";
    char *v1[] = {x, cmd, acct, json, NULL};
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(4, v1, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_GMAIL_STATUS);
    assert_int_equal(a.n_pos, 1);
    assert_string_equal(a.pos[0], "gm");
    assert_true(a.json);
    char *v2[] = {x, cmd, NULL};
    expect_usage_error(2, v2, "missing argument");
    char *v3[] = {x, cmd, acct, more, NULL};
    expect_usage_error(4, v3, "unexpected argument 'b'");
    assert_non_null(strstr(mpctl_usage(), "gmail-status ACCOUNT"));
}

/* check ACCOUNT [--live] [--timeout SECONDS] [--json], options before or
 * after the account; a table of bad invocations. */
static void test_args_check(void **state)
{
    (void)state;
    char x[] = "x", cmd[] = "check", acct[] = "gm", live[] = "--live", json[] = "--json",
         timeout[] = "--timeout", ten[] = "10";
    char *v1[] = {x, cmd, live, acct, timeout, ten, json, NULL};
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(7, v1, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_CHECK);
    assert_int_equal(a.n_pos, 1);
    assert_string_equal(a.pos[0], "gm");
    assert_true(a.live);
    assert_true(a.json);
    assert_int_equal(a.timeout_s, 10);
    char *v2[] = {x, cmd, acct, NULL};
    assert_int_equal(parse(3, v2, &a, &error), 0);
    assert_false(a.live);
    assert_false(a.json);
    assert_int_equal(a.timeout_s, -1);

    static const struct {
        const char *args[3];
        const char *error;
    } bad[] = {
        {{NULL}, "missing argument"},
        {{"gm", "other", NULL}, "unexpected argument 'other'"},
        {{"gm", "--timeout", "0"}, "--timeout"},
        {{"gm", "--timeout", "soon"}, "--timeout"},
        {{"gm", "--timeout", "3601"}, "at most 3600"},
        {{"gm", "--timeout", NULL}, "requires an argument"},
        {{"gm", "--folder", "INBOX"}, "unknown option"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[6] = {x, cmd};
        int argc = 2;
        for (int k = 0; k < 3 && bad[i].args[k] != NULL; k++)
            argv[argc++] = (char *)bad[i].args[k];
        argv[argc] = NULL;
        expect_usage_error(argc, argv, bad[i].error);
    }
    /* --live belongs to check only. */
    char sync[] = "sync";
    char *v3[] = {x, sync, acct, live, NULL};
    expect_usage_error(4, v3, "unknown option");
    assert_non_null(strstr(mpctl_usage(), "check ACCOUNT [--live]"));
}

/* gmail-setup ACCOUNT [--public-url URL] [--no-live] [--timeout SECONDS]. */
static void test_args_gmail_setup(void **state)
{
    (void)state;
    char x[] = "x", cmd[] = "gmail-setup", acct[] = "gm", url[] = "--public-url",
         host[] = "https://mail.example.org", nolive[] = "--no-live",
         timeout[] = "--timeout", ten[] = "10";
    char *v1[] = {x, cmd, url, host, acct, nolive, timeout, ten, NULL};
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(8, v1, &a, &error), 0);
    assert_int_equal(a.command, MPCTL_CMD_GMAIL_SETUP);
    assert_string_equal(a.pos[0], "gm");
    assert_string_equal(a.public_url, "https://mail.example.org");
    assert_true(a.no_live);
    assert_int_equal(a.timeout_s, 10);
    char *v2[] = {x, cmd, acct, NULL};
    assert_int_equal(parse(3, v2, &a, &error), 0);
    assert_null(a.public_url);
    assert_false(a.no_live);
    assert_int_equal(a.timeout_s, -1);
    char *v3[] = {x, cmd, NULL};
    expect_usage_error(2, v3, "missing argument");
    char live[] = "--live";
    char *v4[] = {x, cmd, acct, live, NULL};
    expect_usage_error(4, v4, "unknown option");
    char *v5[] = {x, cmd, acct, url, NULL};
    expect_usage_error(4, v5, "requires an argument");
    assert_non_null(strstr(mpctl_usage(), "gmail-setup ACCOUNT [--public-url URL]"));
}

static void test_args_errors(void **state)
{
    char x[] = "x";
    char none[] = "frob", sync[] = "sync", backfill[] = "backfill", acct[] = "alice",
         extra[] = "more", bad[] = "--nope", status[] = "status", messages[] = "messages",
         limit[] = "--limit", zero[] = "0", word[] = "ten", c[] = "-c",
         after[] = "--after", neg[] = "-1", events[] = "events", badshort[] = "-q";
    char *v0[] = {x, NULL};
    expect_usage_error(1, v0, "missing command");
    char *v1[] = {x, none, NULL};
    expect_usage_error(2, v1, "unknown command 'frob'");
    char *v2[] = {x, sync, NULL};
    expect_usage_error(2, v2, "missing argument");
    char *v3[] = {x, sync, acct, extra, NULL};
    expect_usage_error(4, v3, "unexpected argument 'more'");
    char *v4[] = {x, backfill, acct, NULL};
    expect_usage_error(3, v4, "missing argument");
    char *v5[] = {x, bad, status, NULL};
    expect_usage_error(3, v5, "unknown option '--nope'");
    char *v6[] = {x, messages, acct, limit, word, NULL};
    expect_usage_error(5, v6, "--limit");
    char *v7[] = {x, messages, acct, limit, zero, NULL};
    expect_usage_error(5, v7, "--limit");
    char *v8[] = {x, c, NULL};
    expect_usage_error(2, v8, "requires an argument");
    char *v9[] = {x, events, after, neg, NULL};
    expect_usage_error(4, v9, "--after");
    char *v10[] = {x, status, badshort, NULL};
    expect_usage_error(3, v10, "unknown option '-q'");
    /* A command option is not accepted by another command. */
    char folder[] = "--folder", inbox[] = "INBOX";
    char *v11[] = {x, events, folder, inbox, NULL};
    expect_usage_error(4, v11, "unknown option");
}

/* ---- text ---- */

static void test_width(void **state)
{
    assert_int_equal(mpctl_utf8_width(""), 0);
    assert_int_equal(mpctl_utf8_width("abc"), 3);
    assert_int_equal(mpctl_utf8_width("Zo\xc3\xab"), 3);               /* Zoë */
    assert_int_equal(mpctl_utf8_width("\xe6\x97\xa5\xe6\x9c\xac"), 4); /* 日本 */
    assert_int_equal(mpctl_utf8_width("e\xcc\x81"), 1);                /* e + U+0301 */
    assert_int_equal(mpctl_utf8_width("\xf0\x9f\x98\x80!"), 3);        /* 😀! */
    assert_int_equal(mpctl_utf8_width("\xff\xfe"), 2);                 /* invalid bytes */
}

static void test_sanitize(void **state)
{
    char *s = mpctl_sanitize("a\tb\nc\x1b[31md\x7f");
    assert_string_equal(s, "a b c?[31md?");
    free(s);
    s = mpctl_sanitize("x\xffy");
    assert_string_equal(s, "x\xef\xbf\xbdy");
    free(s);
    /* Truncated sequence, overlong '/', surrogate, C1 control U+009B. */
    s = mpctl_sanitize("\xe6\x97|\xc0\xaf|\xed\xa0\x80|\xc2\x9b|\xc3\xa9");
    assert_true(valid_utf8(s));
    assert_null(strchr(s, '/'));
    assert_non_null(strstr(s, "|?|\xc3\xa9"));
    free(s);
    s = mpctl_sanitize(NULL);
    assert_string_equal(s, "-");
    free(s);
}

static void test_truncate_examples(void **state)
{
    struct {
        const char *in;
        size_t max;
        const char *out;
    } cases[] = {
        {"hello", 5, "hello"},
        {"hello", 10, "hello"},
        {"hello world", 5, "hell\xe2\x80\xa6"},
        {"h\xc3\xa9llo", 3, "h\xc3\xa9\xe2\x80\xa6"}, /* hé… */
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 6,
         "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 5,
         "\xe6\x97\xa5\xe6\x9c\xac\xe2\x80\xa6"},
        /* 日 is 2 columns: at 4 only one fits beside the ellipsis. */
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 4, "\xe6\x97\xa5\xe2\x80\xa6"},
        /* The combining accent stays with its "e". */
        {"e\xcc\x81tude", 2, "e\xcc\x81\xe2\x80\xa6"},
        {"abc", 1, "\xe2\x80\xa6"},
        {"abc", 0, ""},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = mpctl_utf8_truncate(cases[i].in, cases[i].max);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu: got '%s' want '%s'", i, out, cases[i].out);
        free(out);
    }
}

static void test_truncate_never_splits(void **state)
{
    static const char *const inputs[] = {
        "h\xc3\xa9llo w\xc3\xb6rld \xc3\xa7"
        "a va",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83"
        "\x88",
        "\xf0\x9f\x98\x80x\xf0\x9f\x98\x80y\xf0\x9f\x8e\x89",
        "a\xcc\x81\xcc\x82"
        "b\xcc\x83"
        "c",
        "R\xc3\xa9sum\xc3\xa9: \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "
        "\xe4\xb8\x96\xe7\x95\x8c",
    };
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
        const char *in = inputs[k];
        size_t width = mpctl_utf8_width(in);
        for (size_t max = 0; max <= width + 2; max++) {
            size_t cols;
            size_t n = mpctl_utf8_prefix(in, max, &cols);
            assert_true(cols <= max);
            /* The cut is at a code point start, and not before a mark. */
            assert_true(((unsigned char)in[n] & 0xc0) != 0x80);
            assert_false((unsigned char)in[n] == 0xcc);
            char *prefix = mpu_strndup(in, n);
            assert_true(valid_utf8(prefix));
            assert_int_equal(mpctl_utf8_width(prefix), cols);
            free(prefix);

            char *out = mpctl_utf8_truncate(in, max);
            assert_true(valid_utf8(out));
            assert_true(mpctl_utf8_width(out) <= max);
            size_t len = strlen(out);
            if (max >= width) {
                assert_string_equal(out, in);
            } else if (max > 0) {
                assert_true(len >= 3);
                assert_memory_equal(out + len - 3, "\xe2\x80\xa6", 3);
                assert_memory_equal(out, in, len - 3);
            }
            free(out);
        }
    }
}

static void test_duration(void **state)
{
    struct {
        int64_t s;
        const char *text;
    } cases[] = {
        {0, "0s"},          {59, "59s"},         {61, "1m 1s"},
        {3600, "1h 0m 0s"}, {90061, "1d 1h 1m"}, {-5, "0s"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = mpctl_format_duration(cases[i].s);
        assert_string_equal(t, cases[i].text);
        free(t);
    }
}

/* ---- tables ---- */

static void test_table_layout(void **state)
{
    static const char *const headers[] = {"ID", "NAME", "N"};
    mpctl_table *t = mpctl_table_new(3, headers);
    mpctl_table_set_right(t, 2);
    const char *r1[] = {"a", "Zo\xc3\xab", "1"};
    const char *r2[] = {"bb", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "22"}; /* 日本語 */
    const char *r3[] = {NULL, "x", ""};
    mpctl_table_add_row(t, r1);
    mpctl_table_add_row(t, r2);
    mpctl_table_add_row(t, r3);
    assert_int_equal(mpctl_table_rows(t), 3);
    char *out = mpctl_table_render(t);
    assert_string_equal(out, "ID  NAME     N\n"
                             "a   Zo\xc3\xab      1\n"
                             "bb  \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e  22\n"
                             "-   x        -\n");
    free(out);
    mpctl_table_free(&t);
    assert_null(t);
    mpctl_table_free(&t);
}

static void test_table_truncation_and_sanitizing(void **state)
{
    static const char *const headers[] = {"SUBJECT", "FLAGS"};
    mpctl_table *t = mpctl_table_new(2, headers);
    mpctl_table_set_max(t, 0, 8);
    const char *r1[] = {"\xc3\xa9t\xc3\xa9 \xc3\xa0 Paris, encore", "seen"};
    const char *r2[] = {"hi\x1b]0;pwn\x07", "a"};
    mpctl_table_add_row(t, r1);
    mpctl_table_add_row(t, r2);
    char *out = mpctl_table_render(t);
    /* Column 0 is 8 columns: "été à P" + "…" — and no escape reaches it. */
    assert_string_equal(out, "SUBJECT   FLAGS\n"
                             "\xc3\xa9t\xc3\xa9 \xc3\xa0 P\xe2\x80\xa6  seen\n"
                             "hi?]0;p\xe2\x80\xa6  a\n");
    assert_null(strchr(out, '\x1b'));
    assert_true(valid_utf8(out));
    free(out);
    mpctl_table_free(&t);
}

static void test_table_no_trailing_spaces(void **state)
{
    static const char *const headers[] = {"A", "LONGHEADER"};
    mpctl_table *t = mpctl_table_new(2, headers);
    const char *r1[] = {"wide-cell-here", "x"};
    mpctl_table_add_row(t, r1);
    char *out = mpctl_table_render(t);
    assert_string_equal(out, "A               LONGHEADER\n"
                             "wide-cell-here  x\n");
    free(out);
    mpctl_table_free(&t);

    /* Header only. */
    t = mpctl_table_new(2, headers);
    out = mpctl_table_render(t);
    assert_string_equal(out, "A  LONGHEADER\n");
    free(out);
    mpctl_table_free(&t);
}

/* ---- SSE ---- */

struct recorder {
    char *events[32];
    size_t n;
    int stop_after; /* stop when this many were seen; 0 = never */
};

static int record(const mpctl_sse_event *ev, void *ctx)
{
    struct recorder *r = ctx;
    assert_true(r->n < 32);
    assert_int_equal(strlen(ev->data), ev->data_len);
    r->events[r->n++] = mpu_asprintf("%s|%s|%s", ev->id, ev->type, ev->data);
    return r->stop_after != 0 && r->n >= (size_t)r->stop_after;
}

static void recorder_clear(struct recorder *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->events[i]);
    r->n = 0;
}

static const char sse_stream[] =
    "\xef\xbb\xbf: welcome\n"
    ": ping\n\n"
    "id: 1\nevent: message.new\ndata: {\"seq\":1,\"subject\":\"caf\xc3\xa9\"}\n\n"
    "id: 2\r\nevent: account.status\r\ndata: line1\r\ndata: line2\r\n\r\n"
    ": ping\r\r"
    "id:3\revent:x\rdata:no-space\r\r"
    "data\n\n"
    "event: only-type\n\n"
    "id: 4\ndata:  two spaces\nretry: 100\nunknown: z\ndata:\n\n"
    ":ping\n"
    "id: 5\ndata: cut off before the blank line";

static const char *const sse_expected[] = {
    "1|message.new|{\"seq\":1,\"subject\":\"caf\xc3\xa9\"}",
    "2|account.status|line1\nline2",
    "3|x|no-space",
    "3|message|",
    "4|message| two spaces\n",
};
#define N_EXPECTED (sizeof(sse_expected) / sizeof(sse_expected[0]))

static void check_recorded(const struct recorder *r, const char *how)
{
    if (r->n != N_EXPECTED)
        fail_msg("%s: %zu events, want %zu", how, r->n, (size_t)N_EXPECTED);
    for (size_t i = 0; i < N_EXPECTED; i++)
        if (strcmp(r->events[i], sse_expected[i]) != 0)
            fail_msg("%s: event %zu is '%s', want '%s'", how, i, r->events[i],
                     sse_expected[i]);
}

static void test_sse_whole(void **state)
{
    struct recorder r = {0};
    mpctl_sse *p = mpctl_sse_new(record, &r);
    assert_int_equal(mpctl_sse_feed(p, sse_stream, sizeof(sse_stream) - 1), 0);
    check_recorded(&r, "whole");
    assert_string_equal(mpctl_sse_last_id(p), "5");
    recorder_clear(&r);
    mpctl_sse_free(&p);
    assert_null(p);
    mpctl_sse_free(&p);
}

static void test_sse_every_split(void **state)
{
    const size_t len = sizeof(sse_stream) - 1;
    char how[64];
    /* Two chunks split at every byte, then three chunks at every pair. */
    for (size_t i = 0; i <= len; i++) {
        for (size_t j = i; j <= len; j++) {
            struct recorder r = {0};
            mpctl_sse *p = mpctl_sse_new(record, &r);
            assert_int_equal(mpctl_sse_feed(p, sse_stream, i), 0);
            assert_int_equal(mpctl_sse_feed(p, sse_stream + i, j - i), 0);
            assert_int_equal(mpctl_sse_feed(p, sse_stream + j, len - j), 0);
            snprintf(how, sizeof(how), "split at %zu,%zu", i, j);
            check_recorded(&r, how);
            recorder_clear(&r);
            mpctl_sse_free(&p);
        }
    }
    /* One byte at a time. */
    struct recorder r = {0};
    mpctl_sse *p = mpctl_sse_new(record, &r);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(mpctl_sse_feed(p, sse_stream + i, 1), 0);
    check_recorded(&r, "bytewise");
    recorder_clear(&r);
    mpctl_sse_free(&p);
}

static void test_sse_reset_and_stop(void **state)
{
    struct recorder r = {0};
    mpctl_sse *p = mpctl_sse_new(record, &r);
    /* A half event before a reconnect is forgotten; the last id is not. */
    const char *a = "id: 7\ndata: x\n\nid: 8\ndata: half";
    assert_int_equal(mpctl_sse_feed(p, a, strlen(a)), 0);
    mpctl_sse_reset(p);
    assert_string_equal(mpctl_sse_last_id(p), "8");
    const char *b = "\n\nid: 9\ndata: y\n\n";
    assert_int_equal(mpctl_sse_feed(p, b, strlen(b)), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.events[0], "7|message|x");
    assert_string_equal(r.events[1], "9|message|y");
    recorder_clear(&r);

    /* The callback stops the parser. */
    r.stop_after = 1;
    const char *c = "data: 1\n\ndata: 2\n\n";
    assert_int_equal(mpctl_sse_feed(p, c, strlen(c)), -1);
    assert_int_equal(r.n, 1);
    recorder_clear(&r);
    mpctl_sse_free(&p);
}

static void test_sse_oversized_line(void **state)
{
    struct recorder r = {0};
    mpctl_sse *p = mpctl_sse_new(record, &r);
    size_t big = 5u * 1024 * 1024;
    char *chunk = mpu_malloc(64 * 1024);
    memset(chunk, 'a', 64 * 1024);
    memcpy(chunk, "data: ", 6);
    int rc = 0;
    for (size_t sent = 0; sent < big && rc == 0; sent += 64 * 1024)
        rc = mpctl_sse_feed(p, chunk, 64 * 1024);
    assert_int_equal(rc, -1);
    free(chunk);
    /* The parser recovers for the next stream. */
    const char *ok = "data: fine\n\n";
    assert_int_equal(mpctl_sse_feed(p, ok, strlen(ok)), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.events[0], "|message|fine");
    recorder_clear(&r);
    mpctl_sse_free(&p);
}

/* ---- URLs ---- */

static void test_query(void **state)
{
    const mpctl_param params[] = {
        {"folder", "Sent Items/\xc3\xbc"},
        {"limit", NULL},
        {"types", "a,b&c=d"},
        {"before", "m-1_2.3~4"},
    };
    char *q = mpctl_query_build(params, 4);
    assert_string_equal(q, "?folder=Sent%20Items%2F%C3%BC&types=a%2Cb%26c%3Dd"
                           "&before=m-1_2.3~4");
    free(q);

    const mpctl_param none[] = {{"a", NULL}};
    q = mpctl_query_build(none, 1);
    assert_string_equal(q, "");
    free(q);

    const mpctl_param one[] = {{"once", "1"}};
    q = mpctl_query_build(one, 1);
    assert_string_equal(q, "?once=1");
    free(q);

    char *p = mpctl_path_escape("INBOX/Sub Folder#1?x%");
    assert_string_equal(p, "INBOX%2FSub%20Folder%231%3Fx%25");
    free(p);
}

/* --after takes an event id as the stream shows it ("<epoch>:<seq>"). */
static void test_args_after_event_id(void **state)
{
    char a0[] = "mailpulsectl", a1[] = "events", a2[] = "--after", a3[] = "3:120";
    ARGV(a0, a1, a2, a3);
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(argc, argv, &a, &error), 0);
    assert_int_equal(a.after, 120);
    assert_string_equal(a.after_id, "3:120");
    static const char *const bad[] = {"0:5", "x:5", "3:", "3:-1", ":5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char b0[] = "mailpulsectl", b1[] = "events", b2[] = "--after", b3[16];
        snprintf(b3, sizeof b3, "%s", bad[i]);
        char *v[] = {b0, b1, b2, b3, NULL};
        expect_usage_error(4, v, "--after");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_messages),
        cmocka_unit_test(test_args_events_options_after_command),
        cmocka_unit_test(test_args_after_event_id),
        cmocka_unit_test(test_args_defaults),
        cmocka_unit_test(test_args_backfill_and_check_config),
        cmocka_unit_test(test_args_gmail_status),
        cmocka_unit_test(test_args_check),
        cmocka_unit_test(test_args_gmail_setup),
        cmocka_unit_test(test_args_help),
        cmocka_unit_test(test_args_errors),
        cmocka_unit_test(test_width),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_truncate_examples),
        cmocka_unit_test(test_truncate_never_splits),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_table_layout),
        cmocka_unit_test(test_table_truncation_and_sanitizing),
        cmocka_unit_test(test_table_no_trailing_spaces),
        cmocka_unit_test(test_sse_whole),
        cmocka_unit_test(test_sse_every_split),
        cmocka_unit_test(test_sse_reset_and_stop),
        cmocka_unit_test(test_sse_oversized_line),
        cmocka_unit_test(test_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

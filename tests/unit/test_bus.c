/* core/bus pure parts and the `bus` settings group: the subject token
 * mapping (table of cases, injectivity, bounds), message ids, and the
 * group's defaults, errors and token file. The relay itself is tested
 * against a real nats-server (tests/integration/test_bus_nats.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "config/config.h"
#include "util/util.h"

static void test_token_table(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"alice", "alice"},
        {"A-Za_z09", "A-Za_z09"},
        {"bob.smith", "bob%2Esmith"},
        {"message.new", "message%2Enew"},
        {"a*b", "a%2Ab"},
        {"*", "%2A"},
        {">", "%3E"},
        {"a b", "a%20b"},
        {"tab\there", "tab%09here"},
        {"line\r\n", "line%0D%0A"},
        {"100%", "100%25"},
        {"%2E", "%252E"},
        {"caf\xc3\xa9", "caf%C3%A9"},
        {"", "%"},
        {NULL, "%"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        size_t n = mpb_token(cases[i].in, out, sizeof out);
        assert_string_equal(out, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
        /* Never a subject separator, wildcard or whitespace. */
        assert_null(strpbrk(out, ".*> \t\r\n"));
    }
}

/* Truncation behaves like snprintf: the needed length, a NUL inside. */
static void test_token_bounds(void **state)
{
    (void)state;
    char out[5];
    memset(out, 'x', sizeof out);
    assert_int_equal(mpb_token("a.b.c", out, sizeof out), 9);
    assert_string_equal(out, "a%2E");
    assert_int_equal(mpb_token("a.b.c", NULL, 0), 9);
    char one[1] = {'x'};
    assert_int_equal(mpb_token("abc", one, 1), 3);
    assert_int_equal(one[0], '\0');
    /* A 64-character account id of dots (the longest id allowed). */
    char dots[65];
    memset(dots, '.', 64);
    dots[64] = '\0';
    char big[200];
    assert_int_equal(mpb_token(dots, big, sizeof big), 192);
}

/* Distinct values give distinct tokens, including the values that a
 * lossy mapping ('.' -> '_') would merge. */
static void test_token_injective(void **state)
{
    (void)state;
    static const char *const values[] = {
        "a.b", "a_b", "a%2Eb", "a-b", "a b", "a", "", "%", "%25", "a.", ".a", "a..b", "a._b",
        "a_.b", "_", "-", "A.B",
    };
    size_t n = sizeof values / sizeof values[0];
    char tokens[sizeof values / sizeof values[0]][64];
    for (size_t i = 0; i < n; i++)
        mpb_token(values[i], tokens[i], sizeof tokens[i]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(tokens[i], tokens[j]);
}

static void test_subject(void **state)
{
    (void)state;
    char *s = mpb_subject("bob.smith", "message.new");
    assert_string_equal(s, "mailpulse.bob%2Esmith.message%2Enew");
    free(s);
    s = mpb_subject("alice", "account.status");
    assert_string_equal(s, "mailpulse.alice.account%2Estatus");
    free(s);
    s = mpb_subject(NULL, "folder.reset");
    assert_string_equal(s, "mailpulse.%.folder%2Ereset");
    free(s);
}

static void test_msg_id(void **state)
{
    (void)state;
    char id[MPB_MSG_ID_SIZE];
    mpb_msg_id("alice/INBOX:12/3", id, sizeof id);
    assert_string_equal(id, "alice/INBOX:12/3");
    /* Not plain: hashed, the same every time, and different per key. */
    char a[MPB_MSG_ID_SIZE], b[MPB_MSG_ID_SIZE];
    mpb_msg_id("alice/id with space/1", a, sizeof a);
    mpb_msg_id("alice/id with space/1", b, sizeof b);
    assert_string_equal(a, b);
    assert_int_equal(strncmp(a, "sha256:", 7), 0);
    assert_int_equal(strlen(a), 7 + 64);
    mpb_msg_id("alice/id with space/2", b, sizeof b);
    assert_string_not_equal(a, b);
    mpb_msg_id("", a, sizeof a);
    assert_int_equal(strncmp(a, "sha256:", 7), 0);
    mpb_msg_id("line\nbreak", a, sizeof a);
    assert_int_equal(strncmp(a, "sha256:", 7), 0);
    char longkey[300];
    memset(longkey, 'k', 299);
    longkey[299] = '\0';
    mpb_msg_id(longkey, a, sizeof a);
    assert_int_equal(strncmp(a, "sha256:", 7), 0);
    longkey[256] = '\0';
    mpb_msg_id(longkey, a, sizeof a);
    assert_string_equal(a, longkey);
}

/* ---- the settings group ---- */

typedef struct loaded {
    char *dir, *path;
    mp_settings *s;
    mpc_errors errs;
} loaded;

static int load(loaded *l, const char *text)
{
    memset(l, 0, sizeof *l);
    char tmpl[] = "/tmp/mp-test-bus-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    l->dir = mpu_strdup(tmpl);
    l->path = mpu_asprintf("%s/mailpulsed.conf", l->dir);
    FILE *f = fopen(l->path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return mp_settings_load(l->path, &l->s, &l->errs);
}

static void unload(loaded *l)
{
    mp_settings_free(&l->s);
    mpc_errors_free(&l->errs);
    char *cmd = mpu_asprintf("rm -rf '%s'", l->dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(l->dir);
    free(l->path);
}

static void test_settings_absent_and_defaults(void **state)
{
    (void)state;
    loaded l;
    assert_int_equal(load(&l, "workers = 2;\n"), 0);
    assert_false(l.s->bus.enabled);
    assert_null(l.s->bus.nats_url);
    assert_int_equal(mpc_bus_read_secrets(l.s, &l.errs), 0);
    unload(&l);

    assert_int_equal(load(&l, "bus = {\n  nats_url = \"nats://127.0.0.1:4222\";\n};\n"), 0);
    assert_true(l.s->bus.enabled);
    assert_string_equal(l.s->bus.nats_url, "nats://127.0.0.1:4222");
    assert_string_equal(l.s->bus.stream, "MAILPULSE");
    assert_null(l.s->bus.token_file);
    assert_null(l.s->bus.creds_file);
    assert_null(l.s->bus.tls_ca_file);
    assert_int_equal(l.s->bus.duplicate_window, 120);
    assert_int_equal(l.s->bus.max_pending, 256);
    assert_int_equal(l.s->bus.ack_timeout, 5);
    assert_int_equal(l.s->bus.retry_max, 30);
    unload(&l);

    assert_int_equal(load(&l, "bus = { nats_url = \"tls://a:4222,nats://u:p@b:4222\";"
                              " stream = \"EV_1-x\"; creds_file = \"/c.creds\";"
                              " tls_ca_file = \"/ca.pem\"; duplicate_window = 600;"
                              " max_pending = 1; ack_timeout = 30; retry_max = 5; };\n"),
                     0);
    assert_string_equal(l.s->bus.stream, "EV_1-x");
    assert_string_equal(l.s->bus.creds_file, "/c.creds");
    assert_string_equal(l.s->bus.tls_ca_file, "/ca.pem");
    assert_int_equal(l.s->bus.duplicate_window, 600);
    assert_int_equal(l.s->bus.max_pending, 1);
    unload(&l);
}

static void test_settings_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *error; /* after "<path>:" */
    } cases[] = {
        {"bus = 1;\n", "1: \"bus\" must be a group ({ ... }), not an integer"},
        {"bus = {\n  stream = \"X\";\n};\n", "1: missing required key \"nats_url\" (nats:// or tls:// server address; several "
         "separated by commas)"},
        {"bus = { nats_url = \"http://h:4222\"; };\n",
         "1: \"bus.nats_url\" must be nats://host:port (or tls://, ws://, wss://; several "
         "separated by commas), not \"http://h:4222\""},
        {"bus = { nats_url = \"nats://a:1,\"; };\n",
         "1: \"bus.nats_url\" must be nats://host:port (or tls://, ws://, wss://; several "
         "separated by commas), not \"nats://a:1,\""},
        {"bus = { nats_url = \"nats://a:1\";\n stream = \"a.b\"; };\n",
         "2: \"bus.stream\" must be 1..64 characters of [A-Za-z0-9_-], not \"a.b\""},
        {"bus = { nats_url = \"nats://a:1\"; stream = \"\"; };\n",
         "1: \"bus.stream\" must be 1..64 characters of [A-Za-z0-9_-], not \"\""},
        {"bus = { nats_url = \"nats://a:1\"; duplicate_window = 0; };\n",
         "1: \"bus.duplicate_window\" must be between 1 and 604800"},
        {"bus = { nats_url = \"nats://a:1\"; max_pending = 65537; };\n",
         "1: \"bus.max_pending\" must be between 1 and 65536"},
        {"bus = { nats_url = \"nats://a:1\"; ack_timeout = 0; };\n",
         "1: \"bus.ack_timeout\" must be between 1 and 300"},
        {"bus = { nats_url = \"nats://a:1\"; retry_max = 3601; };\n",
         "1: \"bus.retry_max\" must be between 1 and 3600"},
        {"bus = { nats_url = \"nats://a:1\"; tls_ca_file = \"\"; };\n",
         "1: \"bus.tls_ca_file\" must not be empty"},
        {"bus = { nats_url = \"nats://a:1\";\n token_file = \"/t\";\n creds_file = \"/c\"; };\n",
         "3: \"bus.token_file\" and \"bus.creds_file\" exclude each other: a NATS server "
         "authenticates a client one way"},
        {"bus = { nats_url = \"nats://a:1\"; colour = 1; };\n", "1: unknown key \"colour\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loaded l;
        assert_int_equal(load(&l, cases[i].text), -1);
        assert_null(l.s);
        char *want = mpu_asprintf("%s:%s", l.path, cases[i].error);
        if (l.errs.n != 1 || strcmp(l.errs.msgs[0], want) != 0)
            for (size_t e = 0; e < l.errs.n; e++)
                print_error("case %zu error %zu: %s\n", i, e, l.errs.msgs[e]);
        assert_int_equal(l.errs.n, 1);
        assert_string_equal(l.errs.msgs[0], want);
        free(want);
        unload(&l);
    }
}

static void test_token_file(void **state)
{
    (void)state;
    loaded l;
    char tmpl[] = "/tmp/mp-test-bus-token-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret-token\n", 13), 13);
    close(fd);
    assert_int_equal(chmod(tmpl, 0600), 0);
    char *text = mpu_asprintf("bus = { nats_url = \"nats://a:1\"; token_file = \"%s\"; };\n",
                              tmpl);
    assert_int_equal(load(&l, text), 0);
    assert_null(l.s->bus.token);
    assert_int_equal(mpc_bus_read_secrets(l.s, &l.errs), 0);
    assert_string_equal(l.s->bus.token, "s3cret-token");
    unload(&l);

    /* Readable by others: refused, and the message never shows the token. */
    assert_int_equal(chmod(tmpl, 0644), 0);
    assert_int_equal(load(&l, text), 0);
    assert_int_equal(mpc_bus_read_secrets(l.s, &l.errs), 1);
    assert_null(l.s->bus.token);
    assert_non_null(strstr(l.errs.msgs[0], "bus.token_file"));
    assert_null(strstr(l.errs.msgs[0], "s3cret"));
    unload(&l);

    /* Two lines are not one token. */
    fd = open(tmpl, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "a\nb\n", 4), 4);
    close(fd);
    assert_int_equal(chmod(tmpl, 0600), 0);
    assert_int_equal(load(&l, text), 0);
    assert_int_equal(mpc_bus_read_secrets(l.s, &l.errs), 1);
    assert_non_null(strstr(l.errs.msgs[0], "the token must be one non-empty line"));
    unload(&l);
    free(text);
    unlink(tmpl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_table),
        cmocka_unit_test(test_token_bounds),
        cmocka_unit_test(test_token_injective),
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_msg_id),
        cmocka_unit_test(test_settings_absent_and_defaults),
        cmocka_unit_test(test_settings_errors),
        cmocka_unit_test(test_token_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

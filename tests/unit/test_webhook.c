/* Outbound webhooks: signing (Standard Webhooks vector), webhook-id,
 * filters, the backoff schedule, the `webhooks` config list with its
 * secrets, and the store's cursors and dead letters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "store/store.h"
#include "util/util.h"
#include "webhook/webhook.h"

/* ---- helpers ---- */

static char *make_dir(void)
{
    char tmpl[] = "/tmp/mp-test-webhook-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return mpu_strdup(dir);
}

static char *write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char *path = mpu_asprintf("%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
    return path;
}

static void remove_dir(char *dir)
{
    char *cmd = mpu_asprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(dir);
}

static int errors_contain(const mpc_errors *errs, const char *needle)
{
    for (size_t i = 0; i < errs->n; i++)
        if (strstr(errs->msgs[i], needle) != NULL)
            return 1;
    return 0;
}

/* ---- signing ---- */

/* The vector of the Standard Webhooks reference libraries (test_sign_function
 * in standard-webhooks/libraries/python/tests/test_webhooks.py). */
static void test_sign_standard_vector(void **state)
{
    (void)state;
    static const char secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n";
    uint8_t *key = NULL;
    size_t key_len = 0;
    char *error = NULL;
    assert_int_equal(mpc_webhook_key(secret, strlen(secret), &key, &key_len, &error), 0);
    assert_int_equal(key_len, 24);
    static const char body[] = "{\"test\": 2432232314}";
    char sig[MPW_SIGNATURE_SIZE];
    assert_int_equal(mpw_sign(key, key_len, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                              strlen(body), sig, sizeof sig),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* Any change of id, timestamp or body changes the signature. */
    char other[MPW_SIGNATURE_SIZE];
    assert_int_equal(mpw_sign(key, key_len, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331,
                              body, strlen(body), other, sizeof other),
                     0);
    assert_string_not_equal(sig, other);
    assert_int_equal(mpw_sign(key, key_len, "msg_p5jXN8AQM9LWM0D4loKWxJel", 1614265330,
                              body, strlen(body), other, sizeof other),
                     0);
    assert_string_not_equal(sig, other);
    assert_int_equal(mpw_sign(key, key_len, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                              body, strlen(body) - 1, other, sizeof other),
                     0);
    assert_string_not_equal(sig, other);
    /* Too small an output buffer is refused. */
    assert_int_equal(mpw_sign(key, key_len, "id", 1, body, strlen(body), other, 20), -1);
    free(key);
}

/* Without "whsec_" the bytes are the key (one trailing newline dropped):
 * HMAC-SHA256("raw-secret", "evt_1.100.{}") computed independently with
 * Python's hmac module. */
static void test_sign_raw_key(void **state)
{
    (void)state;
    uint8_t *key = NULL;
    size_t key_len = 0;
    char *error = NULL;
    assert_int_equal(mpc_webhook_key("raw-secret\r\n", 12, &key, &key_len, &error), 0);
    assert_int_equal(key_len, 10);
    assert_memory_equal(key, "raw-secret", 10);
    char sig[MPW_SIGNATURE_SIZE];
    assert_int_equal(mpw_sign(key, key_len, "evt_1", 100, "{}", 2, sig, sizeof sig), 0);
    assert_string_equal(sig, "v1,nzSRR1Cj0QTpkHZ8jrsKO+XYm6Qs9NKfVwhenoe2WBc=");
    free(key);

    assert_int_equal(mpc_webhook_key("\n", 1, &key, &key_len, &error), -1);
    assert_non_null(strstr(error, "empty"));
    free(error);
    error = NULL;
    assert_int_equal(mpc_webhook_key("whsec_abc", 9, &key, &key_len, &error), -1);
    assert_non_null(strstr(error, "base64"));
    free(error);
    error = NULL;
    assert_int_equal(mpc_webhook_key("whsec_a*b=", 10, &key, &key_len, &error), -1);
    free(error);
    /* Padding: "YWI=" is "ab". */
    error = NULL;
    assert_int_equal(mpc_webhook_key("whsec_YWI=", 10, &key, &key_len, &error), 0);
    assert_int_equal(key_len, 2);
    assert_memory_equal(key, "ab", 2);
    free(key);
}

static void test_message_id(void **state)
{
    (void)state;
    char id[256];
    mpw_message_id("alice/<abc@x>/1", 7, id, sizeof id);
    assert_string_equal(id, "alice/<abc@x>/1");
    mpw_message_id("alice/with space/1", 7, id, sizeof id);
    assert_string_equal(id, "evt_7");
    mpw_message_id("alice/\xc3\xa9t\xc3\xa9/1", 8, id, sizeof id);
    assert_string_equal(id, "evt_8");
    mpw_message_id(NULL, 9, id, sizeof id);
    assert_string_equal(id, "evt_9");
    mpw_message_id("", 10, id, sizeof id);
    assert_string_equal(id, "evt_10");
}

/* ---- filters and backoff ---- */

static void test_filters(void **state)
{
    (void)state;
    char *events[] = {"message.new", NULL};
    char *accounts[] = {"alice", "bob", NULL};
    char *folders[] = {"INBOX", NULL};
    mp_webhook_conf w;
    memset(&w, 0, sizeof w);
    /* No filter: everything, even events without a folder. */
    assert_true(mpw_filter_match(&w, "account.status", "carol", NULL));
    assert_true(mpw_filter_match(&w, "message.deleted", "alice", "Sent"));

    /* "message.new only from INBOX". */
    w.events = events;
    w.folders = folders;
    assert_true(mpw_filter_match(&w, "message.new", "carol", "INBOX"));
    assert_false(mpw_filter_match(&w, "message.new", "carol", "Archive"));
    assert_false(mpw_filter_match(&w, "message.synced", "carol", "INBOX"));
    assert_false(mpw_filter_match(&w, "message.new", "carol", "inbox"));

    w.accounts = accounts;
    assert_true(mpw_filter_match(&w, "message.new", "bob", "INBOX"));
    assert_false(mpw_filter_match(&w, "message.new", "carol", "INBOX"));

    /* A folder filter never passes folder-less events. */
    w.events = NULL;
    assert_false(mpw_filter_match(&w, "account.status", "alice", NULL));
    w.folders = NULL;
    assert_true(mpw_filter_match(&w, "account.status", "alice", NULL));
}

static void test_backoff_schedule(void **state)
{
    (void)state;
    mp_webhook_conf w;
    memset(&w, 0, sizeof w);
    w.retry_initial = 5;
    w.retry_max = 600;
    /* random % 500 == 250: jitter factor exactly 1.0. */
    const uint32_t mid = 250;
    static const uint32_t expect_s[] = {5, 10, 20, 40, 80, 160, 320, 600, 600, 600};
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(mpw_backoff_ms(&w, i + 1, 0, mid), expect_s[i] * 1000u);
    /* Jitter stays within [0.75, 1.25) and under the cap. */
    assert_int_equal(mpw_backoff_ms(&w, 1, 0, 0), 3750);
    assert_int_equal(mpw_backoff_ms(&w, 1, 0, 499), 6245);
    assert_int_equal(mpw_backoff_ms(&w, 3, 0, 0), 15000);
    assert_int_equal(mpw_backoff_ms(&w, 20, 0, 499), 600000);
    assert_int_equal(mpw_backoff_ms(&w, 20, 0, 0), 450000);
    assert_int_equal(mpw_backoff_ms(&w, 4000000000u, 0, 1), 450000 + 600);
    /* Retry-After wins, capped at an hour. */
    assert_int_equal(mpw_backoff_ms(&w, 1, 42, 0), 42000);
    assert_int_equal(mpw_backoff_ms(&w, 9, 2, 0), 2000);
    assert_int_equal(mpw_backoff_ms(&w, 1, 90000, 0), 3600000);
    /* Another schedule. */
    w.retry_initial = 1;
    w.retry_max = 4;
    assert_int_equal(mpw_backoff_ms(&w, 1, 0, mid), 1000);
    assert_int_equal(mpw_backoff_ms(&w, 2, 0, mid), 2000);
    assert_int_equal(mpw_backoff_ms(&w, 3, 0, mid), 4000);
    assert_int_equal(mpw_backoff_ms(&w, 4, 0, mid), 4000);
}

/* ---- configuration ---- */

static mp_settings *load(const char *dir, const char *text, mpc_errors *errs)
{
    char *path = write_file(dir, "mailpulsed.conf", text, 0644);
    mp_settings *s = NULL;
    mp_settings_load(path, &s, errs);
    free(path);
    return s;
}

static void test_config_webhooks(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *secret = write_file(dir, "crm.secret", "whsec_YWI=\n", 0600);
    char *text = mpu_asprintf(
        "webhooks = (\n"
        "  { name = \"crm\"; url = \"https://crm.example/hook\"; secret_file = \"%s\";\n"
        "    events = [ \"message.new\" ]; folders = [ \"INBOX\" ];\n"
        "    accounts = [ \"alice\" ]; max_attempts = 3; timeout = 7; },\n"
        "  { url = \"http://127.0.0.1:9/x\"; secret_file = \"%s\"; }\n"
        ");\n",
        secret, secret);
    mpc_errors errs = {0};
    mp_settings *s = load(dir, text, &errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(s);
    assert_int_equal(s->n_webhooks, 2);
    mp_webhook_conf *a = &s->webhooks[0], *b = &s->webhooks[1];
    assert_string_equal(a->name, "crm");
    assert_string_equal(a->url, "https://crm.example/hook");
    assert_string_equal(a->events[0], "message.new");
    assert_null(a->events[1]);
    assert_string_equal(a->folders[0], "INBOX");
    assert_string_equal(a->accounts[0], "alice");
    assert_int_equal(a->max_attempts, 3);
    assert_int_equal(a->timeout, 7);
    assert_int_equal(a->retry_initial, 5);
    assert_int_equal(a->retry_max, 600);
    assert_null(a->key);
    /* Defaults. */
    assert_string_equal(b->name, "webhook-2");
    assert_null(b->events);
    assert_null(b->accounts);
    assert_null(b->folders);
    assert_int_equal(b->max_attempts, 10);
    assert_int_equal(b->timeout, 10);
    assert_int_equal(b->max_in_flight, 32);
    /* Secrets only on request. */
    assert_int_equal(mpc_webhooks_read_secrets(s, &errs), 0);
    assert_int_equal(a->key_len, 2);
    assert_memory_equal(a->key, "ab", 2);
    mp_settings_free(&s);
    free(text);

    /* A secret file others can read is refused, naming file:line. */
    chmod(secret, 0644);
    text = mpu_asprintf("webhooks = (\n  { name = \"x\"; url = \"https://h/\";\n"
                        "    secret_file = \"%s\"; } );\n",
                        secret);
    s = load(dir, text, &errs);
    assert_non_null(s);
    assert_int_equal(mpc_webhooks_read_secrets(s, &errs), 1);
    assert_true(errors_contain(&errs, "mailpulsed.conf:2: webhook \"x\""));
    assert_false(errors_contain(&errs, "whsec_"));
    mpc_errors_free(&errs);
    mp_settings_free(&s);
    free(text);
    free(secret);
    remove_dir(dir);
}

static void test_config_webhook_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *error;
    } cases[] = {
        {"webhooks = ( { secret_file = \"/s\"; } );\n",
         "mailpulsed.conf:1: missing required key \"url\""},
        {"webhooks = ( { url = \"https://h/\"; } );\n", "missing required key \"secret_file\""},
        {"webhooks = ( { url = \"ftp://h/\"; secret_file = \"/s\"; } );\n",
         "must be an http:// or https:// URL"},
        {"webhooks = ( { url = \"not a url\"; secret_file = \"/s\"; } );\n",
         "must be an http:// or https:// URL"},
        {"webhooks = (\n { url = \"https://h/\"; secret_file = \"/s\";\n"
         "   events = [ \"message.new\", \"message.exploded\" ]; } );\n",
         "mailpulsed.conf:3: webhook \"webhook-1\": unknown event type \"message.exploded\""},
        {"webhooks = ( { url = \"https://h/\"; secret_file = \"/s\"; folders = []; } );\n",
         "\"folders\" must not be empty"},
        {"webhooks = ( { url = \"https://h/\"; secret_file = \"/s\"; max_attempts = 0; } );\n",
         "\"max_attempts\" must be between 1 and 1000"},
        {"webhooks = ( { url = \"https://h/\"; secret_file = \"/s\"; max_in_flight = 0; } );\n",
         "\"max_in_flight\" must be between 1 and 1000"},
        {"webhooks = ( { url = \"https://h/\"; secret_file = \"/s\"; colour = 1; } );\n",
         "unknown key \"colour\""},
        {"webhooks = ( { name = \"a b\"; url = \"https://h/\"; secret_file = \"/s\"; } );\n",
         "webhook name \"a b\" must be"},
        {"webhooks = ( { name = \"a\"; url = \"https://h/\"; secret_file = \"/s\"; },\n"
         "  { name = \"a\"; url = \"https://h/\"; secret_file = \"/s\"; } );\n",
         "mailpulsed.conf:2: webhook name \"a\" is used twice"},
        {"webhooks = ( { url = \"https://h/\"; secret_file = \"/s\"; retry_initial = 60;\n"
         "  retry_max = 30; } );\n",
         "\"retry_max\" must not be below \"retry_initial\""},
        {"webhooks = { url = \"https://h/\"; };\n", "\"webhooks\" must be a list"},
        {"webhooks = ( 5 );\n", "each entry of \"webhooks\" must be a group"},
    };
    char *dir = make_dir();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpc_errors errs = {0};
        mp_settings *s = load(dir, cases[i].text, &errs);
        if (s != NULL || !errors_contain(&errs, cases[i].error)) {
            for (size_t k = 0; k < errs.n; k++)
                print_message("  got: %s\n", errs.msgs[k]);
            fail_msg("case %zu: expected an error containing '%s'", i, cases[i].error);
        }
        mpc_errors_free(&errs);
    }
    remove_dir(dir);
}

/* ---- store ---- */

static void test_store_delivery_state(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *path = mpu_asprintf("%s/mailpulse.db", dir);
    mps_store *s = NULL;
    char *error = NULL;
    assert_int_equal(mps_open(path, &s, &error), 0);
    int64_t cursor = -1;
    assert_int_equal(mps_webhook_cursor_get(s, "crm", &cursor, &error), 1);
    assert_int_equal(mps_webhook_cursor_set(s, "crm", 5, &error), 0);
    assert_int_equal(mps_webhook_cursor_get(s, "crm", &cursor, &error), 0);
    assert_int_equal(cursor, 5);

    /* Dead-lettering moves the cursor in the same transaction. */
    assert_int_equal(mps_webhook_dead_letter(s, "crm", 6, 3, "HTTP 500", 6, &error), 0);
    assert_int_equal(mps_webhook_dead_letter(s, "crm", 9, 3, "timeout", 9, &error), 0);
    assert_int_equal(mps_webhook_dead_letter(s, "other", 2, 1, NULL, -1, &error), 0);
    assert_int_equal(mps_webhook_cursor_get(s, "crm", &cursor, &error), 0);
    assert_int_equal(cursor, 9);
    assert_int_equal(mps_webhook_cursor_get(s, "other", &cursor, &error), 1);
    int64_t dead = 0, queued = 0;
    assert_int_equal(mps_webhook_dead_count(s, "crm", &dead, &queued, &error), 0);
    assert_int_equal(dead, 2);
    assert_int_equal(queued, 0);
    int64_t seq = 0;
    assert_int_equal(mps_webhook_replay_next(s, "crm", &seq, &error), 1);

    /* Replay from 7 queues only seq 9; then all. */
    int64_t count = 0;
    assert_int_equal(mps_webhook_replay(s, "crm", 7, &count, &error), 0);
    assert_int_equal(count, 1);
    assert_int_equal(mps_webhook_replay_next(s, "crm", &seq, &error), 0);
    assert_int_equal(seq, 9);
    assert_int_equal(mps_webhook_replay(s, "crm", 0, &count, &error), 0);
    assert_int_equal(count, 1);
    assert_int_equal(mps_webhook_replay_next(s, "crm", &seq, &error), 0);
    assert_int_equal(seq, 6);
    mps_dead_letter *list = NULL;
    size_t n = 0;
    assert_int_equal(mps_webhook_dead_list(s, "crm", 10, &list, &n, &error), 0);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].seq, 6);
    assert_string_equal(list[0].last_error, "HTTP 500");
    assert_int_equal(list[0].attempts, 3);
    assert_true(list[0].replay);
    assert_int_equal(list[1].seq, 9);
    mps_dead_letters_free(&list, n);
    assert_null(list);

    /* Delivered on replay: gone. Failed again: back to dead, cursor kept. */
    assert_int_equal(mps_webhook_dead_delete(s, "crm", 6, &error), 0);
    assert_int_equal(mps_webhook_dead_letter(s, "crm", 9, 2, "again", -1, &error), 0);
    assert_int_equal(mps_webhook_dead_count(s, "crm", &dead, &queued, &error), 0);
    assert_int_equal(dead, 1);
    assert_int_equal(queued, 0);
    assert_int_equal(mps_webhook_cursor_get(s, "crm", &cursor, &error), 0);
    assert_int_equal(cursor, 9);

    /* The state survives reopening. */
    mps_close(&s);
    assert_int_equal(mps_open(path, &s, &error), 0);
    assert_int_equal(mps_webhook_cursor_get(s, "crm", &cursor, &error), 0);
    assert_int_equal(cursor, 9);
    assert_int_equal(mps_webhook_dead_count(s, "crm", &dead, &queued, &error), 0);
    assert_int_equal(dead, 1);
    mps_close(&s);
    free(path);
    remove_dir(dir);
}

/* ---- mailpulsectl webhooks ---- */

static int parse(mpctl_args *a, char **error_r, ...)
{
    char *argv[16] = {"mailpulsectl"};
    int argc = 1;
    va_list ap;
    va_start(ap, error_r);
    for (char *s; argc < 15 && (s = va_arg(ap, char *)) != NULL;)
        argv[argc++] = s;
    va_end(ap);
    *error_r = NULL;
    return mpctl_args_parse(argc, argv, a, error_r);
}

static void test_cli_args(void **state)
{
    (void)state;
    mpctl_args a;
    char *error = NULL;
    assert_int_equal(parse(&a, &error, "webhooks", NULL), 0);
    assert_int_equal(a.command, MPCTL_CMD_WEBHOOKS);
    assert_int_equal(a.n_pos, 0);
    assert_int_equal(a.from, -1);
    assert_int_equal(parse(&a, &error, "webhooks", "replay", "crm", "--from", "42", NULL), 0);
    assert_int_equal(a.n_pos, 2);
    assert_string_equal(a.pos[1], "crm");
    assert_int_equal(a.from, 42);
    assert_int_equal(parse(&a, &error, "--json", "webhooks", "replay", "crm", NULL), 0);
    assert_true(a.json);
    assert_int_equal(a.from, -1);
    static const char *const bad[][5] = {
        {"webhooks", "replay", NULL},
        {"webhooks", "resend", "crm", NULL},
        {"webhooks", "--from", "3", NULL},
        {"webhooks", "replay", "crm", "--from", "x"},
        {"webhooks", "replay", "crm", "--from", "-1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(&a, &error, bad[i][0], bad[i][1], bad[i][2], bad[i][3],
                               bad[i][4], NULL),
                         -1);
        assert_non_null(error);
        free(error);
    }
    assert_non_null(strstr(mpctl_usage(), "webhooks replay NAME"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_standard_vector),
        cmocka_unit_test(test_sign_raw_key),
        cmocka_unit_test(test_message_id),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_config_webhooks),
        cmocka_unit_test(test_config_webhook_errors),
        cmocka_unit_test(test_store_delivery_state),
        cmocka_unit_test(test_cli_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of imap.so's sync side against a scripted server: what a
 * hostile server's answers cost (the per-command budget on UID listings,
 * VANISHED and flag collectors) and how login answers map to statuses
 * (RFC 5530). The driver's sources are compiled in with a fake host
 * table; the test links the client library, not the driver. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../../plugins/imap/imap_strategy.c"
#include "../../plugins/imap/imap_sync.c"
#include "../../plugins/imap/imap_account.c"

#include "imap_script_server.h"

const mp_host *imap_host;

/* ---- fake host ---- */

static imap_account *fake_account;

static void fake_log(mp_instance *inst, mp_account *acct, mp_log_level level, const char *fmt,
                     ...)
{
    (void)inst;
    (void)acct;
    (void)level;
    (void)fmt;
}

static mp_status fake_read_secret(const mp_config *cfg, const char *key, char **secret_r,
                                  size_t *len_r, mp_error *err)
{
    (void)cfg;
    (void)key;
    (void)err;
    *secret_r = strdup("secret");
    *len_r = 6;
    return MP_OK;
}

static void fake_free_secret(char **secret)
{
    free(*secret);
    *secret = NULL;
}

static void *fake_account_state(mp_account *acct)
{
    (void)acct;
    return fake_account;
}

static mp_instance *fake_account_instance(mp_account *acct)
{
    (void)acct;
    return NULL;
}

static void fake_set_profile(mp_account *acct, const char *json)
{
    (void)acct;
    (void)json;
}

static int64_t fake_now_ms(void)
{
    return 0;
}

static mp_host fake_host = {
    .log = fake_log,
    .read_secret = fake_read_secret,
    .free_secret = fake_free_secret,
    .account_state = fake_account_state,
    .account_instance = fake_account_instance,
    .set_profile = fake_set_profile,
    .now_ms = fake_now_ms,
};

static imap_account *account_for(const server *s, size_t max_memory)
{
    imap_host = &fake_host;
    imap_account *a = calloc(1, sizeof *a);
    pthread_mutex_init(&a->lock, NULL);
    a->host = strdup("127.0.0.1");
    a->port = s->port;
    a->tls = IMAP_TLS_NONE;
    a->username = strdup("user");
    a->auth = IMAP_AUTH_PLAIN;
    a->secret_key = "password_file";
    a->deadline_ms = 5000;
    a->max_memory = max_memory;
    fake_account = a;
    return a;
}

static void account_done(imap_account **ap)
{
    imap_account *a = *ap;
    imap_conn_abort(&a->sync_conn);
    free(a->host);
    free(a->username);
    free(a->caps.raw);
    free(a->caps.auth_mechs);
    free(a->caps.greeting);
    pthread_mutex_destroy(&a->lock);
    free(a);
    *ap = NULL;
}

/* Peak RSS of this process in MiB. */
static long peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

#define LOGIN                                                                       \
    "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN ESEARCH] ready",               \
        "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0",                                 \
        "S:A1 OK [CAPABILITY IMAP4rev1 ESEARCH CONDSTORE QRESYNC] Logged in"

/* ---- budget ---- */

static void test_esearch_budget(void **state)
{
    (void)state;
    /* Six of the 45-byte lines would have been 483 MB: each is now
     * sized before it is expanded, and the command fails with MP_RETRY. */
    static const char *const script[] = {
        LOGIN,
        "C:A2 UID SEARCH RETURN (ALL) UID 1:*",
        "S:* ESEARCH (TAG \"A2\") UID ALL 1:10000000",
        "S:* ESEARCH (TAG \"A2\") UID ALL 1:10000000",
        "S:* ESEARCH (TAG \"A2\") UID ALL 1:10000000",
        "S:* ESEARCH (TAG \"A2\") UID ALL 1:10000000",
        "S:* ESEARCH (TAG \"A2\") UID ALL 1:10000000",
        "S:* ESEARCH (TAG \"A2\") UID ALL 1:10000000",
        "S:A2 OK done",
        NULL,
    };
    server s = {0};
    server_start(&s, script);
    imap_account *a = account_for(&s, (size_t)16 << 20);
    uint32_t *uids = NULL;
    size_t n = 0;
    mp_error err = {0};
    mp_status st = imap_sync_uids(a, &a->sync_conn, 1, 0, 0, &uids, &n, NULL, &err);
    assert_int_equal(st, MP_RETRY);
    assert_non_null(strstr(err.text, "UID SEARCH: server response exceeds 16 MiB"));
    assert_null(uids);
    assert_null(a->sync_conn);
    assert_true(peak_rss_mib() < 100);
    account_done(&a);
    server_join(&s);

    /* Within the budget, and clipped to the range asked for. */
    static const char *const ok_script[] = {
        LOGIN,
        "C:A2 UID SEARCH RETURN (ALL) UID 5:9",
        "S:* ESEARCH (TAG \"A2\") UID ALL 1:3000000000",
        "S:A2 OK done",
        NULL,
    };
    memset(&s, 0, sizeof s);
    server_start(&s, ok_script);
    a = account_for(&s, (size_t)16 << 20);
    st = imap_sync_uids(a, &a->sync_conn, 5, 9, 0, &uids, &n, NULL, &err);
    assert_int_equal(st, MP_OK);
    assert_int_equal(n, 5);
    assert_int_equal(uids[0], 5);
    assert_int_equal(uids[4], 9);
    free(uids);
    account_done(&a);
    server_join(&s);
}

static void test_collectors_budget(void **state)
{
    (void)state;
    /* Plain SEARCH: 1,000,000 UIDs in 20,000 lines of 50 each, 4 MB that
     * a 2 MiB budget cannot hold. */
    char **lines = calloc(20000 + 8, sizeof *lines);
    size_t k = 0;
    lines[k++] = "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready";
    lines[k++] = "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0";
    lines[k++] = "S:A1 OK [CAPABILITY IMAP4rev1] Logged in";
    lines[k++] = "C:A2 UID SEARCH UID 1:*";
    uint32_t uid = 1;
    for (int i = 0; i < 20000; i++) {
        char buf[600];
        size_t off = (size_t)snprintf(buf, sizeof buf, "S:* SEARCH");
        for (int j = 0; j < 50; j++)
            off += (size_t)snprintf(buf + off, sizeof buf - off, " %u", uid++);
        lines[k++] = strdup(buf);
    }
    lines[k++] = "S:A2 OK done";
    lines[k] = NULL;
    server s = {0};
    server_start(&s, (const char *const *)lines);
    imap_account *a = account_for(&s, (size_t)2 << 20);
    uint32_t *uids = NULL;
    size_t n = 0;
    mp_error err = {0};
    assert_int_equal(imap_sync_uids(a, &a->sync_conn, 1, 0, 0, &uids, &n, NULL, &err),
                     MP_RETRY);
    assert_non_null(strstr(err.text, "exceeds 2 MiB"));
    account_done(&a);
    server_join(&s);
    for (size_t i = 4; i < 20004; i++)
        free(lines[i]);

    /* FETCH FLAGS answers: 200,000 of them with a long keyword each. */
    k = 0;
    lines[k++] = "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready";
    lines[k++] = "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0";
    lines[k++] = "S:A1 OK [CAPABILITY IMAP4rev1] Logged in";
    lines[k++] = "C:A2 UID FETCH 1:* (UID FLAGS)";
    for (int i = 0; i < 19990; i++) {
        char buf[200];
        snprintf(buf, sizeof buf, "S:* %d FETCH (UID %d FLAGS (\\Seen $a-rather-long-keyword-"
                                  "to-make-each-answer-cost-more-than-it-seems))",
                 i + 1, i + 1);
        lines[k++] = strdup(buf);
    }
    lines[k++] = "S:A2 OK done";
    lines[k] = NULL;
    memset(&s, 0, sizeof s);
    server_start(&s, (const char *const *)lines);
    a = account_for(&s, (size_t)1 << 20);
    imap_flag_change *changes = NULL;
    assert_int_equal(imap_sync_flags(a, &a->sync_conn, 1, 0, 0, &changes, &n, &err), MP_RETRY);
    assert_non_null(strstr(err.text, "UID FETCH FLAGS: server response exceeds 1 MiB"));
    assert_null(changes);
    account_done(&a);
    server_join(&s);
    for (size_t i = 4; i < 19994; i++)
        free(lines[i]);

    /* VANISHED (EARLIER) during EXAMINE: 30,000 single UIDs per line. */
    char *vanished = malloc(400000);
    size_t off = (size_t)snprintf(vanished, 400000, "S:* VANISHED (EARLIER) 1");
    for (uint32_t u = 3; u < 60000; u += 2)
        off += (size_t)snprintf(vanished + off, 400000 - off, ",%u", u);
    k = 0;
    lines[k++] = "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN QRESYNC] ready";
    lines[k++] = "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0";
    lines[k++] = "S:A1 OK [CAPABILITY IMAP4rev1 QRESYNC] Logged in";
    lines[k++] = "C:A2 EXAMINE INBOX (QRESYNC (7 5))";
    for (int i = 0; i < 8; i++)
        lines[k++] = vanished;
    lines[k++] = "S:* OK [UIDVALIDITY 7] x";
    lines[k++] = "S:A2 OK done";
    lines[k] = NULL;
    memset(&s, 0, sizeof s);
    server_start(&s, (const char *const *)lines);
    a = account_for(&s, (size_t)1 << 20);
    imap_box box;
    imap_cursor since = {.uidvalidity = 7, .modseq = 5};
    assert_int_equal(imap_sync_examine(a, &a->sync_conn, "INBOX", IMAP_EXAMINE_QRESYNC, &since,
                                       &box, &err),
                     MP_RETRY);
    assert_non_null(strstr(err.text, "EXAMINE: server response exceeds 1 MiB"));
    account_done(&a);
    server_join(&s);
    free(vanished);
    free(lines);
}

/* ---- deadline ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_stall_not_retried(void **state)
{
    (void)state;
    /* An EXAMINE trickled a byte every 100 ms: it fails at the deadline,
     * without the silent second attempt meant for stale connections (which
     * would wait on a connection nobody accepts for a second deadline). */
    const char *script[64] = {LOGIN, "C:A2 EXAMINE INBOX (CONDSTORE)"};
    script_trickle(script, 64, 4, 20);
    server s = {0};
    server_start(&s, script);
    imap_account *a = account_for(&s, (size_t)1 << 20);
    a->deadline_ms = 600;
    mp_error err = {0};
    assert_int_equal(imap_sync_connect(a, &a->sync_conn, &err), MP_OK);
    imap_box box;
    int64_t t0 = mono_ms();
    mp_status st = imap_sync_examine(a, &a->sync_conn, "INBOX", IMAP_EXAMINE_CONDSTORE, NULL,
                                     &box, &err);
    int64_t took = mono_ms() - t0;
    assert_int_equal(st, MP_RETRY);
    assert_non_null(strstr(err.text, "deadline"));
    assert_true(took < 1100);
    account_done(&a);
    server_join(&s);
}

/* ---- reconnect ---- */

static void test_reconnect_to_fewer_capabilities(void **state)
{
    (void)state;
    /* The kept connection offered CONDSTORE; the server restarted without
     * it (an admin changed its configuration). The EXAMINE the caller
     * chose from the old connection is not sent to the new one, which
     * would refuse it as a protocol error (and park the account): the
     * sync is retried, choosing again from what the server offers now. */
    const char *old_server[] = {LOGIN, "C:A2 EXAMINE INBOX (CONDSTORE)", NULL};
    const char *new_server[] = {"S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready",
                                "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0",
                                "S:A1 OK [CAPABILITY IMAP4rev1] Logged in", "E", NULL};
    server s1 = {0}, s2 = {0};
    server_start(&s1, old_server);
    server_start(&s2, new_server);
    imap_account *a = account_for(&s1, (size_t)1 << 20);
    mp_error err = {0};
    assert_int_equal(imap_sync_connect(a, &a->sync_conn, &err), MP_OK);
    a->port = s2.port; /* where the restarted server answers */
    imap_box box;
    mp_status st = imap_sync_examine(a, &a->sync_conn, "INBOX", IMAP_EXAMINE_CONDSTORE, NULL,
                                     &box, &err);
    assert_int_equal(st, MP_RETRY);
    assert_non_null(strstr(err.text, "capabilities changed"));
    account_done(&a);
    server_join(&s1);
    server_join(&s2);
    assert_string_equal(s1.error, "");
    assert_string_equal(s2.error, "");
}

/* ---- login answers ---- */

static void test_login_answers(void **state)
{
    (void)state;
    static const struct {
        const char *answer;
        mp_status expect;
        uint32_t retry_after_ms;
    } cases[] = {
        /* Dovecot when its passdb cannot be read: never reauth. */
        {"S:A1 NO [UNAVAILABLE] Temporary authentication failure. [host:2026-12-06 23:00:00]",
         MP_RETRY, 30000},
        {"S:A1 NO [SERVERBUG] Internal error", MP_RETRY, 30000},
        {"S:A1 NO [INUSE] Mailbox in use", MP_RETRY, 30000},
        {"S:A1 NO [LIMIT] Too many connections", MP_RETRY, 30000},
        {"S:A1 NO [AUTHENTICATIONFAILED] Authentication failed.", MP_REAUTH, 0},
        {"S:A1 NO [AUTHORIZATIONFAILED] Not allowed", MP_REAUTH, 0},
        {"S:A1 NO [EXPIRED] Password expired", MP_REAUTH, 0},
        /* RFC 3501 servers without codes: a NO is bad credentials. */
        {"S:A1 NO Login failed", MP_REAUTH, 0},
        {"S:A1 BAD Syntax error", MP_RETRY, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const script[] = {
            "S:* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready",
            "C:A1 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0",
            cases[i].answer,
            NULL,
        };
        server s = {0};
        server_start(&s, script);
        imap_account *a = account_for(&s, (size_t)1 << 20);
        mp_error err = {0};
        imap_conn *conn = NULL;
        mp_status st = imap_account_connect(a, &conn, &err);
        if (st != cases[i].expect)
            print_error("%s: status %d: %s\n", cases[i].answer, st, err.text);
        assert_int_equal(st, cases[i].expect);
        assert_int_equal(err.retry_after_ms, cases[i].retry_after_ms);
        assert_null(conn);
        account_done(&a);
        server_join(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_esearch_budget),
        cmocka_unit_test(test_collectors_budget),
        cmocka_unit_test(test_stall_not_retried),
        cmocka_unit_test(test_reconnect_to_fewer_capabilities),
        cmocka_unit_test(test_login_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

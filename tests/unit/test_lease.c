/*
 * Account leases against a real PostgreSQL (store/lease.h). The server
 * comes from MP_TEST_PG_URL (tests/integration/pgserver.py --run starts a private one for ctest);
 * every run works in a schema of its own, so runs never see each other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "store/fence.h"
#include "store/lease.h"
#include "store/signal.h"
#include "store/store.h"
#include "util/util.h"

#define TTL_MS 900
#define N_ACCOUNTS 10

static const char *url;
static char schema[64];
static const char *accounts[N_ACCOUNTS] = {"a00", "a01", "a02", "a03", "a04",
                                           "a05", "a06", "a07", "a08", "a09"};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *admin(void)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* A fresh schema per test: PGOPTIONS reaches every connection libpq opens. */
static int setup(void **state)
{
    (void)state;
    static int n;
    snprintf(schema, sizeof schema, "lease_test_%d_%d", (int)getpid(), ++n);
    char opts[128];
    snprintf(opts, sizeof opts, "-csearch_path=%s", schema);
    setenv("PGOPTIONS", opts, 1);
    PGconn *c = admin();
    char sql[160];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema);
    exec_ok(c, sql);
    PQfinish(c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PGconn *c = admin();
    char sql[160];
    snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
    exec_ok(c, sql);
    PQfinish(c);
    return 0;
}

static mpl_node *node(const char *name)
{
    mpl_options o = {.conninfo = url, .name = name, .ttl_ms = TTL_MS};
    char *err = NULL;
    mpl_node *n = mpl_open(&o, &err);
    if (n == NULL)
        fail_msg("mpl_open: %s", err);
    mpl_delta d = {0};
    assert_int_equal(mpl_set_accounts(n, accounts, N_ACCOUNTS, &d, &err), 0);
    assert_int_equal(d.n_lost, 0);
    mpl_delta_clear(&d);
    return n;
}

static void tick(mpl_node *n, mpl_delta *d)
{
    char *err = NULL;
    if (mpl_tick(n, d, &err) != 0)
        fail_msg("mpl_tick: %s", err);
}

/* Past the joining period after mpl_open, when rounds only register. */
static void joined(void)
{
    sleep_ms(TTL_MS / 3 + 50);
}

static void tick_quiet(mpl_node *n)
{
    mpl_delta d = {0};
    tick(n, &d);
    mpl_delta_clear(&d);
}

/* No account is held by both, and the database agrees with each. */
static void assert_disjoint(mpl_node *a, mpl_node *b)
{
    for (size_t i = 0; i < N_ACCOUNTS; i++)
        assert_false(mpl_held_epoch(a, accounts[i]) != 0 && mpl_held_epoch(b, accounts[i]) != 0);
}

/* A sync commit for `account` through the store, as the node whose
 * fencing token is (owner, epoch): 0 committed, -1 refused (the message
 * says by whom). The store lives in the test's schema beside the leases. */
static int commit_as(const char *account, const char *owner, int64_t epoch, const char *id,
                     char **error_r)
{
    mps_store *s = NULL;
    char *err = NULL;
    if (mps_open(url, &s, &err) != 0)
        fail_msg("mps_open: %s", err);
    assert_int_equal(mps_account_ensure(s, account, "inst", &err), 0);
    mps_fence_enable(owner);
    if (epoch != 0)
        mps_fence_set(account, epoch);
    mp_change c = {.kind = MP_CHANGE_NEW, .id = id, .subject = "s", .date = 1700000000,
                   .size = 10, .from = "a@example.org", .to = "b@example.org"};
    mps_batch *b = mps_batch_new(account, "INBOX");
    mps_batch_add(b, &c);
    mps_commit_result res;
    int rc = mps_batch_commit(s, b, "cursor-1", NULL, -1, 0, &res, error_r);
    mps_batch_free(&b);
    mps_fence_disable();
    mps_close(&s);
    return rc;
}

/* Two nodes started together split ten accounts five and five; the first
 * round claims nothing, so neither grabs everything before the other is
 * seen. */
static void test_two_nodes_share(void **state)
{
    (void)state;
    mpl_node *a = node("n1"), *b = node("n2");
    mpl_delta d = {0};
    tick(a, &d);
    assert_int_equal(d.n_acquired, 0);
    tick(b, &d);
    assert_int_equal(d.n_acquired, 0);
    joined();
    for (int round = 0; round < 3; round++) {
        tick_quiet(a);
        assert_disjoint(a, b);
        tick_quiet(b);
        assert_disjoint(a, b);
    }
    assert_int_equal(mpl_held_count(a), 5);
    assert_int_equal(mpl_held_count(b), 5);
    mpl_member *m = NULL;
    size_t nm = 0;
    char *err = NULL;
    assert_int_equal(mpl_members(a, &m, &nm, &err), 0);
    assert_int_equal(nm, 2);
    assert_true(m[0].live && m[1].live);
    assert_int_equal(m[0].leases + m[1].leases, N_ACCOUNTS);
    assert_string_equal(m[0].name, "n1");
    mpl_members_free(m, nm);
    mpl_delta_clear(&d);
    mpl_close(a);
    mpl_close(b);
}

/* A node that stops renewing (killed, paused) loses its accounts to the
 * other once the TTL has run out, with a higher epoch; its old epoch no
 * longer passes the fence, and when it comes back it learns it lost them. */
static void test_takeover_and_fence(void **state)
{
    (void)state;
    mpl_node *a = node("n1"), *b = node("n2");
    tick_quiet(a);
    tick_quiet(b);
    joined();
    for (int round = 0; round < 2; round++) {
        tick_quiet(a);
        tick_quiet(b);
    }
    assert_int_equal(mpl_held_count(a), 5);
    const char *victim = NULL;
    for (size_t i = 0; i < N_ACCOUNTS && victim == NULL; i++)
        if (mpl_held_epoch(a, accounts[i]) != 0)
            victim = accounts[i];
    int64_t old_epoch = mpl_held_epoch(a, victim);
    char *err = NULL;
    assert_int_equal(commit_as(victim, mpl_owner(a), old_epoch, "m1", &err), 0);

    /* a is "paused": b's next round before the TTL takes nothing ... */
    tick_quiet(b);
    assert_int_equal(mpl_held_count(b), 5);
    /* ... and b is told to wake right after a's leases run out. */
    assert_true(mpl_next_tick_ms(b) <= TTL_MS / 3);
    /* b keeps its own leases alive while waiting for a's to run out. */
    mpl_delta d = {0};
    int64_t paused_at = mpu_mono_ms();
    while (mpl_held_count(b) < N_ACCOUNTS && mpu_mono_ms() - paused_at < 4 * TTL_MS) {
        sleep_ms(mpl_next_tick_ms(b));
        tick(b, &d);
    }
    assert_true(mpu_mono_ms() - paused_at >= TTL_MS / 2); /* not before a's expired */
    assert_int_equal(mpl_held_count(b), N_ACCOUNTS);
    assert_int_equal(d.n_acquired, 5);
    assert_int_equal(d.n_lost, 0);
    int64_t new_epoch = mpl_held_epoch(b, victim);
    assert_true(new_epoch > old_epoch);
    mpl_delta_clear(&d);

    /* The fence: a's late commit is refused by the database although a
     * still believes it holds the lease; b's goes through; a node with no
     * token at all is refused before asking the database. */
    assert_int_equal(commit_as(victim, mpl_owner(a), old_epoch, "m2", &err), -1);
    assert_non_null(strstr(err, "refused by the fence"));
    free(err);
    err = NULL;
    assert_int_equal(commit_as(victim, mpl_owner(b), new_epoch, "m2", &err), 0);
    assert_int_equal(commit_as(victim, mpl_owner(a), 0, "m3", &err), -1);
    assert_non_null(strstr(err, "holds no lease"));
    free(err);

    /* a wakes up: its renewal finds nothing, all five are lost. */
    tick(a, &d);
    assert_int_equal(d.n_lost, 5);
    assert_int_equal(mpl_held_count(a), 0);
    assert_disjoint(a, b);
    mpl_delta_clear(&d);
    /* With both alive again the share is five: b gives five back, a
     * takes them over the next rounds. */
    for (int round = 0; round < 3; round++) {
        tick_quiet(b);
        tick_quiet(a);
        assert_disjoint(a, b);
    }
    assert_int_equal(mpl_held_count(a), 5);
    assert_int_equal(mpl_held_count(b), 5);
    mpl_close(a);
    mpl_close(b);
}

/* A clean stop gives everything back at once: no TTL to wait out. */
static void test_release_all(void **state)
{
    (void)state;
    mpl_node *a = node("n1"), *b = node("n2");
    tick_quiet(a);
    tick_quiet(b);
    joined();
    tick_quiet(a);
    tick_quiet(b);
    char *err = NULL;
    assert_int_equal(mpl_release_all(a, &err), 0);
    assert_int_equal(mpl_held_count(a), 0);
    mpl_close(a);
    tick_quiet(b);
    assert_int_equal(mpl_held_count(b), N_ACCOUNTS);
    mpl_close(b);
}

/* An account dropped from the configuration is given back and reported. */
static void test_removed_account(void **state)
{
    (void)state;
    mpl_node *a = node("n1");
    tick_quiet(a);
    joined();
    tick_quiet(a);
    assert_int_equal(mpl_held_count(a), N_ACCOUNTS);
    mpl_delta d = {0};
    char *err = NULL;
    assert_int_equal(mpl_set_accounts(a, accounts + 1, N_ACCOUNTS - 1, &d, &err), 0);
    assert_int_equal(d.n_lost, 1);
    assert_string_equal(d.lost[0], "a00");
    assert_int_equal(mpl_held_epoch(a, "a00"), 0);
    mpl_delta_clear(&d);
    mpl_close(a);
}

/* Without renewals a node stops trusting its leases before the database
 * lets them expire. */
static void test_expire_local(void **state)
{
    (void)state;
    mpl_node *a = node("n1");
    tick_quiet(a);
    joined();
    tick_quiet(a);
    mpl_delta d = {0};
    mpl_expire_local(a, mpu_mono_ms(), &d);
    assert_int_equal(d.n_lost, 0);
    mpl_expire_local(a, mpu_mono_ms() + TTL_MS, &d);
    assert_int_equal(d.n_lost, N_ACCOUNTS);
    assert_int_equal(mpl_held_count(a), 0);
    mpl_delta_clear(&d);
    mpl_close(a);
}

/* Exactly one live node holds the outbox role; it moves on a clean stop
 * and when its holder stops renewing, and the old holder learns it lost it. */
static void test_outbox_role(void **state)
{
    (void)state;
    mpl_node *a = node("n1"), *b = node("n2");
    mpl_delta da = {0}, db = {0};
    tick(a, &da);
    tick(b, &db);
    joined();
    tick(a, &da);
    tick(b, &db);
    assert_int_equal(mpl_outbox_role(a) + mpl_outbox_role(b), 1);
    mpl_node *holder = mpl_outbox_role(a) ? a : b, *other = holder == a ? b : a;
    assert_int_equal((holder == a ? da : db).outbox_role, 1);
    mpl_delta_clear(&da);
    mpl_delta_clear(&db);

    /* The holder pauses: the other takes the role once it expired. */
    int64_t paused_at = mpu_mono_ms();
    mpl_delta d = {0};
    while (!mpl_outbox_role(other) && mpu_mono_ms() - paused_at < 4 * TTL_MS) {
        sleep_ms(mpl_next_tick_ms(other));
        tick(other, &d);
    }
    assert_true(mpl_outbox_role(other));
    assert_int_equal(d.outbox_role, 1);
    mpl_delta_clear(&d);
    tick(holder, &d);
    assert_false(mpl_outbox_role(holder));
    assert_int_equal(d.outbox_role, -1);
    mpl_delta_clear(&d);

    /* A clean stop hands it over at the next round. */
    char *err = NULL;
    assert_int_equal(mpl_release_all(other, &err), 0);
    assert_false(mpl_outbox_role(other));
    tick(holder, &d);
    assert_true(mpl_outbox_role(holder));
    mpl_delta_clear(&d);
    mpl_close(a);
    mpl_close(b);
}

/* Signals a listener has within `ms` (store/signal.h), appended to *v. */
static void signals_wait(mps_listener *l, mps_signal **v, size_t *n, size_t want, int ms)
{
    for (int waited = 0; *n < want && waited < ms; waited += 50) {
        struct pollfd p = {.fd = mps_listener_fd(l), .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        mps_signal *got = NULL;
        size_t k = 0;
        char *err = NULL;
        if (mps_listener_read(l, &got, &k, &err) < 0)
            fail_msg("mps_listener_read: %s", err);
        if (k > 0) {
            *v = realloc(*v, (*n + k) * sizeof **v);
            memcpy(*v + *n, got, k * sizeof *got);
            *n += k;
        }
        free(got);
    }
}

/* The store tells the other nodes, once committed, of a stored push hint
 * (the holder syncs), of a write that push verification reads (driver
 * state, the subscription row: standby copies reload), naming the sender,
 * and of a transaction that appended events (once for all of them). */
static void test_signals(void **state)
{
    (void)state;
    char *err = NULL;
    mps_listener *l = mps_listener_open(url, "n1#00", &err);
    if (l == NULL)
        fail_msg("mps_listener_open: %s", err);
    mps_store *s = NULL;
    if (mps_open(url, &s, &err) != 0)
        fail_msg("mps_open: %s", err);
    assert_int_equal(mps_account_ensure(s, "acct", "inst", &err), 0);
    mps_fence_enable("n1#00");
    assert_int_equal(mps_push_hint_add(s, "acct", "INBOX", "h1", 1, &err), 0);
    assert_int_equal(mps_push_hint_add(s, "acct", NULL, NULL, 2, &err), 0);
    assert_int_equal(mps_state_put(s, "acct", "subs", "v", &err), 0);
    assert_int_equal(mps_subscription_put(s, "acct", "sub-1", 0, NULL, "secret", &err), 0);
    assert_int_equal(mps_subscription_delete(s, "acct", &err), 0);
    mps_fence_disable();
    /* Outside cluster mode: no sender. */
    assert_int_equal(mps_push_hint_add(s, "acct", "Sent", NULL, 3, &err), 0);

    mps_signal *v = NULL;
    size_t n = 0;
    signals_wait(l, &v, &n, 6, 5000);
    assert_int_equal(n, 6);
    assert_int_equal(v[0].kind, MPS_SIGNAL_PUSH);
    assert_string_equal(v[0].account, "acct");
    assert_string_equal(v[0].folder, "INBOX");
    assert_string_equal(v[0].from, "n1#00");
    assert_int_equal(v[1].kind, MPS_SIGNAL_PUSH);
    assert_null(v[1].folder);
    for (size_t i = 2; i < 5; i++) {
        assert_int_equal(v[i].kind, MPS_SIGNAL_STANDBY);
        assert_string_equal(v[i].account, "acct");
        assert_string_equal(v[i].from, "n1#00");
    }
    assert_int_equal(v[5].kind, MPS_SIGNAL_PUSH);
    assert_string_equal(v[5].folder, "Sent");
    assert_null(v[5].from);
    mps_signals_free(v, n);

    /* A sync commit of two new messages: one EVENTS signal for the whole
     * transaction, nothing for its state (it goes with the batch). */
    v = NULL;
    n = 0;
    mp_change c = {.kind = MP_CHANGE_NEW, .id = "m1", .subject = "s", .date = 1700000000,
                   .size = 10, .from = "a@example.org", .to = "b@example.org"};
    mps_batch *b = mps_batch_new("acct", "INBOX");
    mps_batch_add(b, &c);
    c.id = "m2";
    mps_batch_add(b, &c);
    mps_commit_result res;
    assert_int_equal(mps_batch_commit(s, b, "cursor-1", NULL, -1, 0, &res, &err), 0);
    assert_int_equal(res.events, 2);
    mps_batch_free(&b);
    signals_wait(l, &v, &n, 2, 500);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].kind, MPS_SIGNAL_EVENTS);
    assert_null(v[0].account);
    mps_signals_free(v, n);

    /* A payload that is not ours is skipped; a lost connection is told. */
    PGconn *c2 = admin();
    exec_ok(c2, "SELECT pg_notify('mailpulse_push', 'not json')");
    exec_ok(c2, "SELECT pg_notify('mailpulse_push', '{\"account\":\"x\"}')");
    v = NULL;
    n = 0;
    signals_wait(l, &v, &n, 1, 5000);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].account, "x");
    mps_signals_free(v, n);
    /* A node the cluster forgot (its heartbeat expired long ago) loses its
     * listener at the next heartbeat of a live node: a frozen node must
     * not hold back the server's NOTIFY queue. */
    mpl_node *live = node("n2");
    exec_ok(c2, "INSERT INTO mp_node (owner, name, expires_at)"
                " VALUES ('n1#00', 'n1', now() - interval '1 hour')");
    mpl_delta d = {0};
    tick(live, &d);
    mpl_delta_clear(&d);
    PQfinish(c2);
    int lost = 0;
    for (int i = 0; i < 100 && !lost; i++) {
        struct pollfd p = {.fd = mps_listener_fd(l), .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        mps_signal *got = NULL;
        size_t k = 0;
        if (mps_listener_read(l, &got, &k, &err) < 0) {
            lost = 1;
            assert_non_null(strstr(err, "connection lost"));
            free(err);
        }
        mps_signals_free(got, k);
    }
    assert_true(lost);
    mps_listener_close(l);
    mpl_close(live);
    mps_close(&s);
}

static void test_bad_options(void **state)
{
    (void)state;
    char *err = NULL;
    mpl_options o = {.conninfo = url, .name = "has space", .ttl_ms = TTL_MS};
    assert_null(mpl_open(&o, &err));
    assert_non_null(strstr(err, "node name"));
    free(err);
    err = NULL;
    o.name = "n1";
    o.conninfo = "host=/nonexistent-dir port=1 connect_timeout=2";
    assert_null(mpl_open(&o, &err));
    assert_non_null(strstr(err, "cannot connect"));
    free(err);
}

int main(void)
{
    url = getenv("MP_TEST_PG_URL");
    if (url == NULL || *url == '\0') {
        fprintf(stderr, "test_lease: MP_TEST_PG_URL is not set (run through ctest, which "
                        "starts a private PostgreSQL)\n");
        return 77; /* ctest SKIP_RETURN_CODE */
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_nodes_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_and_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_account, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_role, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signals, setup, teardown),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

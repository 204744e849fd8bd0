/* Unit tests of core/events: the event JSON (the wire shape shared by SSE,
 * GET /v1/events and signed webhook bodies) and the stream state (wake-up,
 * watchers, epochs, horizon) against a real store in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

#include "events/events.h"
#include "store/store.h"
#include "util/util.h"

/* ---- mpe_event_json ---- */

static char *dump(const mps_event *ev)
{
    json_t *o = mpe_event_json(ev);
    assert_non_null(o);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    assert_non_null(text);
    return text;
}

static void test_json_shape(void **state)
{
    (void)state;
    /* 2021-02-25T15:02:10.123Z */
    mps_event ev = {.seq = 7,
                    .type = "message.new",
                    .account = "alice",
                    .folder = "INBOX",
                    .message = "alice/INBOX/42",
                    .time_ms = 1614265330123LL,
                    .idem_key = "alice/<m1@x>/7",
                    .data_json = "{\"subject\":\"Hi\",\"from\":\"a@b\",\"size\":12}"};
    char *text = dump(&ev);
    /* Data fields first, in their stored order, then the fixed ones: this
     * exact byte string is what a webhook receiver verifies. */
    assert_string_equal(text, "{\"subject\":\"Hi\",\"from\":\"a@b\",\"size\":12,\"seq\":7,"
                              "\"type\":\"message.new\",\"account\":\"alice\","
                              "\"folder\":\"INBOX\",\"message\":\"alice/INBOX/42\","
                              "\"time\":\"2021-02-25T15:02:10.123Z\","
                              "\"idempotency_key\":\"alice/<m1@x>/7\"}");
    free(text);
}

static void test_json_fixed_fields_win(void **state)
{
    (void)state;
    /* A data field named like a fixed one cannot forge it; it keeps its
     * place in the order, the value is the event's. */
    mps_event ev = {.seq = 3,
                    .type = "message.flags",
                    .account = "bob",
                    .folder = "Sent",
                    .message = NULL,
                    .time_ms = 0,
                    .idem_key = "k3",
                    .data_json = "{\"seq\":999,\"flags\":[\"\\\\Seen\"],\"account\":\"eve\"}"};
    char *text = dump(&ev);
    assert_string_equal(text, "{\"seq\":3,\"flags\":[\"\\\\Seen\"],\"account\":\"bob\","
                              "\"type\":\"message.flags\",\"folder\":\"Sent\","
                              "\"message\":null,\"time\":\"1970-01-01T00:00:00.000Z\","
                              "\"idempotency_key\":\"k3\"}");
    free(text);
}

static void test_json_bad_or_no_data(void **state)
{
    (void)state;
    static const char *const datas[] = {NULL, "[1,2]", "not json", "\"s\"", "{\"a\":"};
    for (size_t i = 0; i < sizeof datas / sizeof datas[0]; i++) {
        mps_event ev = {.seq = 12,
                        .type = "account.status",
                        .account = "carol",
                        .folder = NULL,
                        .message = NULL,
                        .time_ms = 1614265330000LL,
                        .idem_key = "carol/status/12",
                        .data_json = (char *)datas[i]};
        char *text = dump(&ev);
        assert_string_equal(text, "{\"seq\":12,\"type\":\"account.status\","
                                  "\"account\":\"carol\",\"folder\":null,\"message\":null,"
                                  "\"time\":\"2021-02-25T15:02:10.000Z\","
                                  "\"idempotency_key\":\"carol/status/12\"}");
        free(text);
    }
}

/* ---- the stream state ---- */

typedef struct fixture {
    char dir[64];
    char path[128];
    mps_store *s;
    struct event_base *base;
} fixture;

static int setup(void **state)
{
    fixture *fx = mpu_calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/mp-events-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/mailpulse.db", fx->dir);
    char *err = NULL;
    if (mps_open(fx->path, &fx->s, &err) < 0) {
        fprintf(stderr, "open: %s\n", err);
        free(err);
        return -1;
    }
    if (mps_account_ensure(fx->s, "alice", "fix", NULL) < 0)
        return -1;
    fx->base = event_base_new();
    *state = fx;
    return fx->base != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    mps_close(&fx->s);
    event_base_free(fx->base);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", fx->path, suffixes[i]);
        unlink(p);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static int64_t append(fixture *fx, const char *key)
{
    int64_t seq = 0;
    assert_int_equal(mps_event_append(fx->s, "account.status", "alice", NULL, NULL, key,
                                      NULL, &seq, NULL),
                     0);
    return seq;
}

typedef struct counter {
    mpe_events *e;
    mpe_watch *self;
    int calls;
    int64_t seen;
    int unwatch_self;
} counter;

static void on_commit(int64_t last_seq, void *arg)
{
    counter *c = arg;
    c->calls++;
    c->seen = last_seq;
    if (c->unwatch_self) {
        mpe_unwatch(c->e, c->self);
        c->self = NULL;
    }
}

static void *commit_thread(void *arg)
{
    mpe_committed(arg, 5);
    return NULL;
}

static void test_wake_and_watchers(void **state)
{
    fixture *fx = *state;
    append(fx, "k1");
    mpe_events *e = mpe_open(fx->base, fx->s);
    assert_non_null(e);
    assert_int_equal(mpe_last_seq(e), 1);

    counter a = {.e = e}, b = {.e = e, .unwatch_self = 1};
    a.self = mpe_watch_add(e, on_commit, &a);
    b.self = mpe_watch_add(e, on_commit, &b);
    /* Nothing committed yet: no wake. */
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(a.calls, 0);

    /* Several commits before the loop runs: one wake, the highest seq; a
     * lower seq reported late never lowers it. */
    mpe_committed(e, 3);
    mpe_committed(e, 4);
    mpe_committed(e, 2);
    assert_int_equal(mpe_last_seq(e), 4);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.seen, 4);
    assert_int_equal(b.calls, 1);
    assert_null(b.self); /* it unwatched itself inside the callback */

    /* From another thread; b is gone. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, commit_thread, e), 0);
    pthread_join(t, NULL);
    event_base_loop(fx->base, EVLOOP_ONCE);
    assert_int_equal(a.calls, 2);
    assert_int_equal(a.seen, 5);
    assert_int_equal(b.calls, 1);

    mpe_unwatch(e, a.self);
    mpe_unwatch(e, NULL);
    mpe_committed(e, 6);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(a.calls, 2);

    /* Closing with a watcher still registered frees it. */
    mpe_watch_add(e, on_commit, &a);
    mpe_close(&e, fx->s);
    assert_null(e);
    mpe_close(&e, fx->s);
}

static void test_epochs_and_resume(void **state)
{
    fixture *fx = *state;
    mpe_events *e = mpe_open(fx->base, fx->s);
    int64_t first = mpe_epoch(e);
    assert_true(first >= 1);
    append(fx, "k1");
    append(fx, "k2");
    mpe_close(&e, fx->s); /* clean stop */

    e = mpe_open(fx->base, fx->s);
    assert_int_equal(mpe_epoch(e), first);
    assert_int_equal(mpe_last_seq(e), 2);
    mpe_close(&e, NULL); /* as if the process died: no clean-stop marker */

    e = mpe_open(fx->base, fx->s);
    assert_int_equal(mpe_epoch(e), first + 1);
    int64_t after = -1;
    char *error = NULL;
    /* The current epoch, or a plain seq: the position itself. */
    assert_int_equal(mpe_resume(e, fx->s, 0, 40, &after, &error), 0);
    assert_int_equal(after, 40);
    assert_int_equal(mpe_resume(e, fx->s, first + 1, 40, &after, &error), 0);
    assert_int_equal(after, 40);
    /* The older epoch ended at seq 2: no later than that. */
    assert_int_equal(mpe_resume(e, fx->s, first, 40, &after, &error), 0);
    assert_int_equal(after, 2);
    assert_int_equal(mpe_resume(e, fx->s, first, 1, &after, &error), 0);
    assert_int_equal(after, 1);
    assert_null(error);
    mpe_close(&e, fx->s);
}

static void test_horizon(void **state)
{
    fixture *fx = *state;
    mpe_events *e = mpe_open(fx->base, fx->s);
    assert_int_equal(mpe_horizon(e), 0);
    mpe_horizon_raise(e, 5);
    assert_int_equal(mpe_horizon(e), 5);
    mpe_horizon_raise(e, 3); /* never lowered by a raise */
    assert_int_equal(mpe_horizon(e), 5);
    mpe_horizon_set(e, 2);   /* a failed prune goes back to the stored value */
    assert_int_equal(mpe_horizon(e), 2);
    mpe_close(&e, fx->s);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_json_fixed_fields_win),
        cmocka_unit_test(test_json_bad_or_no_data),
        cmocka_unit_test_setup_teardown(test_wake_and_watchers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epochs_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_horizon, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

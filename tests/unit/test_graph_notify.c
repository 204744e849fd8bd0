/* graph.so push, the parts without a host: the notification parser (every
 * refusal and its status, batches, lifecycle events), the clientState
 * generator and its constant-time check, and the subscription set's
 * driver-state record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph_notify.h"
#include "graph_push.h"

static int parse(const char *body, size_t len, graph_note **notes, size_t *n, int *status)
{
    char why[160] = "";
    int rc =
        graph_notes_parse((const uint8_t *)body, len, notes, n, status, why, sizeof why);
    if (rc < 0) {
        assert_true(why[0] != '\0');
        assert_null(*notes);
    }
    return rc;
}

static int parse_s(const char *body, graph_note **notes, size_t *n, int *status)
{
    return parse(body, strlen(body), notes, n, status);
}

static void test_change_batch(void **state)
{
    (void)state;
    /* Two subscriptions in one POST, as Graph batches them. */
    const char *body =
        "{\"value\":[{\"id\":\"n1\",\"subscriptionId\":\"sub-A\","
        "\"subscriptionExpirationDateTime\":"
        "\"2026-12-14T05:08:05.000Z\",\"changeType\":\"created\",\"resource\":\"Users/u/"
        "Messages/m1\","
        "\"clientState\":\"stateA\",\"tenantId\":\"t\",\"resourceData\":{\"id\":\"m1\"}},"
        "{\"subscriptionId\":\"sub-B\",\"changeType\":\"deleted\",\"clientState\":"
        "\"stateB\"}]}";
    graph_note *notes = NULL;
    size_t n = 0;
    int status = 0;
    assert_int_equal(parse_s(body, &notes, &n, &status), 0);
    assert_int_equal(n, 2);
    assert_string_equal(notes[0].subscription_id, "sub-A");
    assert_string_equal(notes[0].client_state, "stateA");
    assert_int_equal(notes[0].client_state_len, 6);
    assert_int_equal(notes[0].kind, GRAPH_NOTE_CHANGE);
    assert_string_equal(notes[1].subscription_id, "sub-B");
    assert_int_equal(notes[1].kind, GRAPH_NOTE_CHANGE);
    free(notes);
}

static void test_lifecycle(void **state)
{
    (void)state;
    const char *body =
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"s\",\"lifecycleEvent\":"
        "\"reauthorizationRequired\",\"tenantId\":\"t\"},{\"subscriptionId\":\"b\","
        "\"clientState\":\"s\",\"lifecycleEvent\":\"subscriptionRemoved\"},{"
        "\"subscriptionId\":"
        "\"c\",\"clientState\":\"s\",\"lifecycleEvent\":\"missed\"}]}";
    graph_note *notes = NULL;
    size_t n = 0;
    int status = 0;
    assert_int_equal(parse_s(body, &notes, &n, &status), 0);
    assert_int_equal(n, 3);
    assert_int_equal(notes[0].kind, GRAPH_NOTE_REAUTH);
    assert_int_equal(notes[1].kind, GRAPH_NOTE_REMOVED);
    assert_int_equal(notes[2].kind, GRAPH_NOTE_MISSED);
    assert_string_equal(graph_note_event_name(GRAPH_NOTE_MISSED), "missed");
    assert_string_equal(graph_note_event_name(GRAPH_NOTE_CHANGE), "");
    free(notes);
}

static void expect_refused(const char *body, size_t len, int want)
{
    graph_note *notes = NULL;
    size_t n = 0;
    int status = 0;
    assert_int_equal(parse(body, len, &notes, &n, &status), -1);
    assert_int_equal(status, want);
    assert_int_equal(n, 0);
}

static void test_refusals(void **state)
{
    (void)state;
    const char *bad[] = {
        "not json",
        "[]",
        "{\"value\":{}}",
        "{\"value\":[]}",
        "{\"value\":[1]}",
        "{\"value\":[{\"changeType\":\"created\",\"clientState\":\"s\"}]}",
        "{\"value\":[{\"subscriptionId\":\"a\",\"changeType\":\"created\"}]}",
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"\",\"changeType\":"
        "\"created\"}]}",
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":7,\"changeType\":"
        "\"created\"}]}",
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"s\",\"changeType\":"
        "\"moved\"}]}",
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"s\"}]}",
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"s\",\"lifecycleEvent\":"
        "\"x\"}]}",
        /* one bad item refuses the whole batch */
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"s\",\"changeType\":"
        "\"created\"},"
        "{\"subscriptionId\":\"b\",\"changeType\":\"created\"}]}",
        /* a second clientState key must not slip past */
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"s\",\"clientState\":"
        "\"t\","
        "\"changeType\":\"created\"}]}",
        /* an embedded NUL cannot shorten the compared state */
        "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"s\\u0000x\","
        "\"changeType\":\"created\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(bad[i], strlen(bad[i]), 400);
    expect_refused("", 0, 400);
    /* ids and states over Graph's bounds */
    char body[600];
    char longid[GRAPH_NOTIFY_MAX_ID + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    snprintf(body, sizeof body,
             "{\"value\":[{\"subscriptionId\":\"%s\",\"clientState\":\"s\","
             "\"changeType\":\"created\"}]}",
             longid);
    expect_refused(body, strlen(body), 400);
    snprintf(body, sizeof body,
             "{\"value\":[{\"subscriptionId\":\"a\",\"clientState\":\"%s\","
             "\"changeType\":\"created\"}]}",
             longid);
    expect_refused(body, strlen(body), 400);
    /* oversized: refused by length before any parsing */
    size_t big = GRAPH_NOTIFY_MAX_BODY + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    expect_refused(huge, big, 413);
    free(huge);
}

static void test_client_state(void **state)
{
    (void)state;
    char *a = graph_client_state();
    char *b = graph_client_state();
    assert_non_null(a);
    assert_non_null(b);
    /* 32 bytes as unpadded base64url */
    assert_int_equal(strlen(a), 43);
    assert_int_equal(
        strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        43);
    assert_string_not_equal(a, b);
    assert_true(graph_client_state_ok(a, a, strlen(a)));
    assert_false(graph_client_state_ok(a, b, strlen(b)));
    assert_false(graph_client_state_ok(a, a, strlen(a) - 1)); /* a prefix */
    assert_false(graph_client_state_ok(NULL, a, strlen(a)));
    assert_false(graph_client_state_ok(a, NULL, 0));
    free(a);
    free(b);
}

static void test_set_record(void **state)
{
    (void)state;
    graph_push_acct p;
    memset(&p, 0, sizeof p);
    graph_sub f = {.id = "s1",
                   .folder_id = "F1",
                   .folder = "Inbox/Projects",
                   .secret = "x1",
                   .expires_at = 1797224885};
    graph_sub w = {.id = "s2", .secret = "x2", .expires_at = 1797000000};
    graph_subs_add(&p, &f);
    graph_subs_add(&p, &w);
    char *text = graph_subs_dump(&p);
    graph_push_acct q;
    memset(&q, 0, sizeof q);
    assert_int_equal(graph_subs_parse(text, &q), 0);
    assert_int_equal(q.n, 2);
    assert_string_equal(q.subs[0].id, "s1");
    assert_string_equal(q.subs[0].folder_id, "F1");
    assert_string_equal(q.subs[0].folder, "Inbox/Projects");
    assert_string_equal(q.subs[0].secret, "x1");
    assert_int_equal(q.subs[0].expires_at, 1797224885);
    assert_null(q.subs[1].folder_id); /* mailbox-wide */
    assert_null(q.subs[1].folder);
    graph_subs_remove(&q, 0);
    assert_int_equal(q.n, 1);
    assert_string_equal(q.subs[0].id, "s2");
    graph_push_acct r;
    memset(&r, 0, sizeof r);
    assert_int_equal(graph_subs_parse("{\"v\":1}", &r), -1);
    assert_int_equal(graph_subs_parse("garbage", &r), -1);
    assert_int_equal(r.n, 0);
    free(text);
    graph_subs_free(&p);
    graph_subs_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_change_batch), cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_refusals),     cmocka_unit_test(test_client_state),
        cmocka_unit_test(test_set_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* graph.so's pure parts: message summaries (complete, sparse, removed),
 * pages and their links, $batch answers, OData errors, DateTimeOffset, the
 * per-folder record with its repair backoff, the request budget and the
 * configuration checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "graph_budget.h"
#include "graph_config.h"
#include "graph_fstate.h"
#include "graph_json.h"

static void test_message_summary(void **state)
{
    (void)state;
    const char *page =
        "{\"value\":["
        "{\"id\":\"AAMk1\",\"subject\":\"Hello\",\"receivedDateTime\":\"2026-12-07T01:00:00Z\","
        "\"from\":{\"emailAddress\":{\"name\":\"Ann Lee\",\"address\":\"ann@example.org\"}},"
        "\"toRecipients\":[{\"emailAddress\":{\"name\":\"me@example.com\",\"address\":"
        "\"me@example.com\"}},{\"emailAddress\":{\"name\":\"Bo\",\"address\":\"bo@example.org\"}}],"
        "\"isRead\":true,\"isDraft\":false,\"flag\":{\"flagStatus\":\"flagged\"},"
        "\"internetMessageId\":\"<abc@example.org>\",\"parentFolderId\":\"F1\","
        "\"conversationId\":\"C1\"},"
        /* a draft: null from is complete; unread */
        "{\"id\":\"AAMk2\",\"subject\":null,\"receivedDateTime\":\"2026-12-07T02:00:00.1234567+01:00\","
        "\"from\":null,\"isRead\":false,\"isDraft\":true,\"parentFolderId\":\"F1\"},"
        /* sparse: the keys are absent */
        "{\"id\":\"AAMk3\",\"isRead\":false},"
        "{\"id\":\"AAMk4\",\"@removed\":{\"reason\":\"deleted\"}}],"
        "\"@odata.nextLink\":\"https://graph.microsoft.com/v1.0/x?$skiptoken=1\"}";
    graph_page p;
    char *error = NULL;
    assert_int_equal(graph_page_parse(page, strlen(page), &p, &error), 0);
    assert_int_equal(p.n, 4);
    assert_string_equal(p.next_link, "https://graph.microsoft.com/v1.0/x?$skiptoken=1");
    assert_null(p.delta_link);
    const graph_msg *m = &p.v[0];
    assert_string_equal(m->subject, "Hello");
    assert_string_equal(m->from, "Ann Lee <ann@example.org>");
    assert_string_equal(m->to, "me@example.com, Bo <bo@example.org>");
    assert_string_equal(m->message_id, "abc@example.org");
    assert_string_equal(m->thread_id, "C1");
    assert_string_equal(m->parent_id, "F1");
    assert_int_equal(m->received, 1796605200);
    assert_int_equal(m->missing, 0);
    char *flags = graph_msg_flags(m);
    assert_string_equal(flags, "\\Seen \\Flagged");
    free(flags);
    m = &p.v[1];
    assert_null(m->subject);
    assert_null(m->from);
    assert_int_equal(m->missing, 0);
    assert_int_equal(m->received, 1796605200); /* 02:00 at +01:00 */
    flags = graph_msg_flags(m);
    assert_string_equal(flags, "\\Draft");
    free(flags);
    m = &p.v[2];
    assert_true(m->missing & GRAPH_MISSING_RECEIVED);
    assert_true(m->missing & GRAPH_MISSING_SUBJECT);
    assert_true(m->missing & GRAPH_MISSING_FROM);
    assert_true(m->missing & GRAPH_MISSING_FOLDER);
    assert_false(m->missing & GRAPH_MISSING_READ);
    m = &p.v[3];
    assert_true(m->removed);
    graph_page_clear(&p);

    /* Unknown isRead: no flags at all, so a sparse read never clears them. */
    graph_msg s;
    json_t *o = json_pack("{s:s}", "id", "x");
    assert_int_equal(graph_msg_from_json(o, &s, NULL), 0);
    assert_null(graph_msg_flags(&s));
    graph_msg_clear(&s);
    json_decref(o);

    static const char *const bad[] = {
        "[]", "{\"value\":{}}", "{\"value\":[{\"subject\":\"no id\"}]}",
        "{\"value\":[],\"@odata.deltaLink\":5}", "{\"value\":[1]}", "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        error = NULL;
        assert_int_equal(graph_page_parse(bad[i], strlen(bad[i]), &p, &error), -1);
        assert_non_null(error);
        free(error);
    }
}

static void test_batch_answer(void **state)
{
    (void)state;
    const char *body =
        "{\"responses\":["
        "{\"id\":\"2\",\"status\":404,\"body\":{\"error\":{\"code\":\"ErrorItemNotFound\"}}},"
        "{\"id\":\"0\",\"status\":200,\"headers\":{\"Content-Type\":\"application/json\"},"
        "\"body\":{\"id\":\"m0\"}},"
        "{\"id\":\"1\",\"status\":429,\"headers\":{\"Retry-After\":\"7\"}}]}";
    graph_part parts[4];
    char *error = NULL;
    assert_int_equal(graph_batch_parse(body, strlen(body), parts, 4, &error), 0);
    assert_true(parts[0].present);
    assert_int_equal(parts[0].status, 200);
    assert_string_equal(json_string_value(json_object_get(parts[0].body, "id")), "m0");
    assert_int_equal(parts[1].status, 429);
    assert_int_equal(parts[1].retry_after_ms, 7000);
    assert_int_equal(parts[2].status, 404);
    assert_false(parts[3].present);
    graph_parts_clear(parts, 4);

    static const char *const bad[] = {
        "{\"responses\":[{\"id\":\"0\",\"status\":200},{\"id\":\"0\",\"status\":200}]}",
        "{\"responses\":[{\"id\":\"9\",\"status\":200}]}",
        "{\"responses\":[{\"id\":\"-1\",\"status\":200}]}",
        "{\"responses\":[{\"id\":\"0\"}]}",
        "{\"responses\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        error = NULL;
        assert_int_equal(graph_batch_parse(bad[i], strlen(bad[i]), parts, 4, &error), -1);
        free(error);
    }
}

static void test_errors_and_times(void **state)
{
    (void)state;
    char code[64], msg[128];
    const char *e = "{\"error\":{\"code\":\"SyncStateNotFound\",\"message\":\"gone\"}}";
    graph_error_parse(e, strlen(e), code, sizeof code, msg, sizeof msg);
    assert_string_equal(code, "SyncStateNotFound");
    assert_string_equal(msg, "gone");
    assert_true(graph_sync_state_gone(code));
    assert_true(graph_sync_state_gone("resyncRequired"));
    assert_true(graph_sync_state_gone("InvalidSyncStateData"));
    assert_true(graph_sync_state_gone("syncStateInvalid"));
    assert_false(graph_sync_state_gone("ErrorItemNotFound"));
    e = "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS70000\"}";
    graph_error_parse(e, strlen(e), code, sizeof code, msg, sizeof msg);
    assert_string_equal(code, "invalid_grant");
    assert_string_equal(msg, "AADSTS70000");
    graph_error_parse("<html>", 6, code, sizeof code, msg, sizeof msg);
    assert_string_equal(code, "");

    int64_t t;
    assert_int_equal(graph_time_parse("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(graph_time_parse("2026-12-07T01:00:00-02:30", &t), 0);
    assert_int_equal(t, 1796605200 + 9000);
    static const char *const bad[] = {"", "2026-12-07", "2026-13-07T01:00:00Z",
                                      "2026-12-07T01:00:00Zjunk", "2026-12-07T01:00:00.Z",
                                      "2026-12-07T01:00:00+0100"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(graph_time_parse(bad[i], &t), -1);
    char buf[32];
    graph_time_format(1796605200, buf, sizeof buf);
    assert_string_equal(buf, "2026-12-07T01:00:00Z");
}

static void test_folder_record(void **state)
{
    (void)state;
    graph_fstate f;
    char *error = NULL;
    assert_int_equal(graph_fstate_parse(NULL, &f, &error), 0);
    f.since_ms = 1000;
    f.cover = GRAPH_COVER_WALKING;
    f.walk = strdup("https://g/v1.0/x?$skiptoken=2");
    const int64_t t0 = 5000000;
    assert_int_equal(graph_repair_add(&f, "a", t0), 0);
    assert_int_equal(graph_repair_add(&f, "a", t0), 0); /* once */
    assert_int_equal(graph_repair_add(&f, "b", t0), 0);
    assert_int_equal(f.n_repair, 2);
    size_t idx[4];
    assert_int_equal(graph_repair_due(&f, t0, idx, 4), 0);
    assert_int_equal(graph_repair_due(&f, t0 + GRAPH_REPAIR_FIRST_MS, idx, 4), 2);
    /* Still incomplete: twice as long each time, then given up. */
    assert_int_equal(graph_repair_again(&f, "a", t0), 0);
    assert_int_equal(f.repair[0].at_ms, t0 + 2 * GRAPH_REPAIR_FIRST_MS);
    char *text = graph_fstate_dump(&f);
    graph_fstate g;
    assert_int_equal(graph_fstate_parse(text, &g, &error), 0);
    free(text);
    assert_int_equal(g.since_ms, 1000);
    assert_int_equal(g.cover, GRAPH_COVER_WALKING);
    assert_string_equal(g.walk, f.walk);
    assert_null(g.full);
    assert_int_equal(g.n_repair, 2);
    assert_int_equal(g.repair[0].tries, 1);
    for (unsigned i = 1; i < GRAPH_REPAIR_TRIES - 1; i++)
        assert_int_equal(graph_repair_again(&g, "a", t0), 0);
    assert_true(g.repair[0].at_ms - t0 <= GRAPH_REPAIR_MAX_WAIT_MS);
    assert_int_equal(graph_repair_again(&g, "a", t0), 1);
    assert_int_equal(g.n_repair, 1);
    graph_repair_drop(&g, "b");
    assert_int_equal(g.n_repair, 0);
    for (int i = 0; i < GRAPH_REPAIR_MAX; i++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", i);
        assert_int_equal(graph_repair_add(&g, id, t0), 0);
    }
    assert_int_equal(graph_repair_add(&g, "one-too-many", t0), -1);
    graph_fstate_clear(&f);
    graph_fstate_clear(&g);
    assert_int_equal(graph_fstate_parse("[1]", &f, &error), -1);
    free(error);

    char k1[64], k2[64];
    graph_fstate_key("Inbox", k1, sizeof k1);
    graph_fstate_key("Inbox/Work", k2, sizeof k2);
    assert_int_equal(strlen(k1), 7 + 32);
    assert_string_not_equal(k1, k2);
}

static void test_budget(void **state)
{
    (void)state;
    graph_budget b;
    graph_budget_init(&b, 10);
    const int64_t t0 = 1800000000000LL;
    assert_int_equal(graph_budget_take(&b, t0, 6), 0);
    assert_int_equal(graph_budget_take(&b, t0 + 500, 4), 0);
    assert_int_equal(graph_budget_used(&b, t0 + 500), 10);
    int64_t wait = graph_budget_take(&b, t0 + 2000, 1);
    assert_true(wait > 0);
    /* Free once the first bucket leaves the window (and its grace). */
    assert_int_equal(graph_budget_take(&b, t0 + 2000 + wait, 1), 0);
    graph_budget_close(&b, t0 + 10000000);
    assert_int_equal(graph_budget_take(&b, t0 + 9000000, 1), 1000000);
    graph_budget_init(&b, 0);
    assert_int_equal(b.limit, GRAPH_BUDGET_REQUESTS);
}

static void test_config_checks(void **state)
{
    (void)state;
    char why[256], *clean = NULL;
    assert_int_equal(graph_url_check("https://graph.microsoft.com/v1.0/", &clean, why,
                                     sizeof why), 0);
    assert_string_equal(clean, "https://graph.microsoft.com/v1.0");
    free(clean);
    assert_int_equal(graph_url_check("http://127.0.0.1:8080/v1.0", &clean, why, sizeof why), 0);
    free(clean);
    assert_int_equal(graph_url_check("http://graph.microsoft.com", &clean, why, sizeof why), -1);
    assert_non_null(strstr(why, "loopback"));
    assert_int_equal(graph_url_check("https://u:p@h/", &clean, why, sizeof why), -1);
    assert_int_equal(graph_url_check("https://h/?q", &clean, why, sizeof why), -1);
    graph_auth a;
    assert_int_equal(graph_auth_parse(NULL, &a), 0);
    assert_int_equal(a, GRAPH_AUTH_APP);
    assert_int_equal(graph_auth_parse("delegated", &a), 0);
    assert_int_equal(a, GRAPH_AUTH_DELEGATED);
    assert_int_equal(graph_auth_parse("oauth", &a), -1);
    assert_int_equal(graph_tenant_check("contoso.onmicrosoft.com", why, sizeof why), 0);
    assert_int_equal(graph_tenant_check("../x", why, sizeof why), -1);
    assert_int_equal(graph_tenant_check("", why, sizeof why), -1);
    assert_int_equal(graph_user_check("ann@contoso.com", why, sizeof why), 0);
    assert_int_equal(graph_user_check("a/b", why, sizeof why), -1);
    assert_int_equal(graph_user_check("a b", why, sizeof why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_summary), cmocka_unit_test(test_batch_answer),
        cmocka_unit_test(test_errors_and_times), cmocka_unit_test(test_folder_record),
        cmocka_unit_test(test_budget),           cmocka_unit_test(test_config_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

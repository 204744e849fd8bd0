/* gmail.so: history.list pages folded per message (gmail_history.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gmail_history.h"

static const gmail_hop *hop(const gmail_history *h, const char *id)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->v[i].id, id) == 0)
            return &h->v[i];
    fail_msg("no hop for %s", id);
    return NULL;
}

static int has(const gmail_strv *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0)
            return 1;
    return 0;
}

static void page(gmail_history *h, const char *json)
{
    char *error = NULL;
    int r = gmail_history_page(h, json, strlen(json), &error);
    if (r != 0)
        fail_msg("page refused: %s", error);
}

/* Gmail's shapes: every entry's message carries id, threadId, labelIds. */
static void test_fold(void **state)
{
    (void)state;
    gmail_history h = {0};
    page(&h,
         "{\"history\":["
         /* m1 arrives in INBOX, unread, then is read and moved to Work */
         "{\"id\":\"101\",\"messages\":[{\"id\":\"m1\"}],\"messagesAdded\":[{\"message\":"
         "{\"id\":\"m1\",\"threadId\":\"t1\",\"labelIds\":[\"INBOX\",\"UNREAD\"]}}]},"
         "{\"id\":\"102\",\"messages\":[{\"id\":\"m1\"}],\"labelsRemoved\":[{\"message\":"
         "{\"id\":\"m1\",\"threadId\":\"t1\",\"labelIds\":[\"INBOX\"]},\"labelIds\":[\"UNREAD\"]}]},"
         /* m2 (old) is moved INBOX -> Label_7 */
         "{\"id\":\"103\",\"messages\":[{\"id\":\"m2\"}],\"labelsAdded\":[{\"message\":"
         "{\"id\":\"m2\",\"threadId\":\"t2\",\"labelIds\":[\"INBOX\",\"Label_7\"]},"
         "\"labelIds\":[\"Label_7\"]}]},"
         "{\"id\":\"104\",\"messages\":[{\"id\":\"m2\"}],\"labelsRemoved\":[{\"message\":"
         "{\"id\":\"m2\",\"threadId\":\"t2\",\"labelIds\":[\"Label_7\"]},"
         "\"labelIds\":[\"INBOX\"]}]},"
         /* m3 starred then unstarred: no net change */
         "{\"id\":\"105\",\"messages\":[{\"id\":\"m3\"}],\"labelsAdded\":[{\"message\":"
         "{\"id\":\"m3\",\"labelIds\":[\"INBOX\",\"STARRED\"]},\"labelIds\":[\"STARRED\"]}]},"
         "{\"id\":\"106\",\"messages\":[{\"id\":\"m3\"}],\"labelsRemoved\":[{\"message\":"
         "{\"id\":\"m3\",\"labelIds\":[\"INBOX\"]},\"labelIds\":[\"STARRED\"]}]},"
         /* m4 relabelled, then deleted: only the delete remains */
         "{\"id\":\"107\",\"messages\":[{\"id\":\"m4\"}],\"labelsAdded\":[{\"message\":"
         "{\"id\":\"m4\",\"labelIds\":[\"INBOX\",\"TRASH\"]},\"labelIds\":[\"TRASH\"]}]},"
         "{\"id\":\"108\",\"messages\":[{\"id\":\"m4\"}],\"messagesDeleted\":[{\"message\":"
         "{\"id\":\"m4\"}}]}"
         "],\"nextPageToken\":\"p2\",\"historyId\":\"120\"}");
    assert_int_equal(h.n, 4);
    assert_string_equal(h.v[0].id, "m1"); /* order of first appearance */
    assert_string_equal(h.v[3].id, "m4");
    assert_string_equal(h.history_id, "120");
    assert_string_equal(h.next_page, "p2");
    assert_string_equal(h.last_record, "108");
    assert_int_equal(h.records, 8);

    const gmail_hop *m1 = hop(&h, "m1");
    assert_true(m1->added);
    assert_false(m1->deleted);
    assert_true(m1->has_labels);
    assert_int_equal(m1->labels.n, 1); /* as of the last record: read */
    assert_true(has(&m1->labels, "INBOX"));

    const gmail_hop *m2 = hop(&h, "m2");
    assert_false(m2->added);
    assert_int_equal(m2->plus.n, 1);
    assert_true(has(&m2->plus, "Label_7"));
    assert_int_equal(m2->minus.n, 1);
    assert_true(has(&m2->minus, "INBOX"));

    const gmail_hop *m3 = hop(&h, "m3");
    assert_int_equal(m3->plus.n, 0);
    assert_int_equal(m3->minus.n, 0);

    const gmail_hop *m4 = hop(&h, "m4");
    assert_true(m4->deleted);
    assert_int_equal(m4->plus.n, 0);

    /* The last page: no token, its historyId is the new cursor; a record
     * without labelIds on its message leaves the label set unknown. */
    gmail_history_clear(&h);
    page(&h,
         "{\"history\":[{\"id\":\"130\",\"labelsAdded\":[{\"message\":{\"id\":\"m5\"},"
         "\"labelIds\":[\"SPAM\"]}]}],\"historyId\":\"131\"}");
    assert_null(h.next_page);
    assert_string_equal(h.history_id, "131");
    assert_false(hop(&h, "m5")->has_labels);
    assert_true(has(&hop(&h, "m5")->plus, "SPAM"));
    gmail_history_clear(&h);
}

static void test_empty_and_errors(void **state)
{
    (void)state;
    gmail_history h = {0};
    /* Nothing new: no "history" at all, a numeric historyId is tolerated. */
    page(&h, "{\"historyId\":99}");
    assert_int_equal(h.n, 0);
    assert_string_equal(h.history_id, "99");
    assert_null(h.last_record);
    static const char *const bad[] = {
        "", "[]", "{\"history\":[]}", "{\"history\":{},\"historyId\":\"5\"}", "nope",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *error = NULL;
        assert_int_equal(gmail_history_page(&h, bad[i], strlen(bad[i]), &error), -1);
        assert_non_null(error);
        free(error);
        /* A refused page leaves what was folded. */
        assert_string_equal(h.history_id, "99");
    }
    gmail_history_clear(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_empty_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* gmail.so: labels as folders and flags (gmail_labels.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gmail_labels.h"

static const char labels_json[] =
    "{\"labels\":["
    "{\"id\":\"INBOX\",\"name\":\"INBOX\",\"type\":\"system\"},"
    "{\"id\":\"SENT\",\"name\":\"SENT\",\"type\":\"system\"},"
    "{\"id\":\"DRAFT\",\"name\":\"DRAFT\",\"type\":\"system\"},"
    "{\"id\":\"SPAM\",\"name\":\"SPAM\",\"type\":\"system\"},"
    "{\"id\":\"TRASH\",\"name\":\"TRASH\",\"type\":\"system\"},"
    "{\"id\":\"UNREAD\",\"name\":\"UNREAD\",\"type\":\"system\"},"
    "{\"id\":\"STARRED\",\"name\":\"STARRED\",\"type\":\"system\"},"
    "{\"id\":\"IMPORTANT\",\"name\":\"IMPORTANT\",\"type\":\"system\"},"
    "{\"id\":\"CHAT\",\"name\":\"CHAT\",\"type\":\"system\"},"
    "{\"id\":\"CATEGORY_SOCIAL\",\"name\":\"CATEGORY_SOCIAL\",\"type\":\"system\"},"
    "{\"id\":\"Label_7\",\"name\":\"Work/Projects\",\"type\":\"user\"}"
    "]}";

static void test_table(void **state)
{
    (void)state;
    static const struct {
        const char *id;
        gmail_label_kind kind;
        const char *name;
        mp_folder_role role;
    } cases[] = {
        {"INBOX", GMAIL_LABEL_FOLDER, "INBOX", MP_ROLE_INBOX},
        {"SENT", GMAIL_LABEL_FOLDER, "SENT", MP_ROLE_SENT},
        {"DRAFT", GMAIL_LABEL_FOLDER, "DRAFT", MP_ROLE_DRAFTS},
        {"SPAM", GMAIL_LABEL_FOLDER, "SPAM", MP_ROLE_JUNK},
        {"TRASH", GMAIL_LABEL_FOLDER, "TRASH", MP_ROLE_TRASH},
        {"Label_7", GMAIL_LABEL_FOLDER, "Work/Projects", MP_ROLE_NONE},
        {"UNREAD", GMAIL_LABEL_UNREAD, NULL, MP_ROLE_NONE},
        {"STARRED", GMAIL_LABEL_FLAG, "\\Flagged", MP_ROLE_NONE},
        {"IMPORTANT", GMAIL_LABEL_FLAG, "$Important", MP_ROLE_NONE},
        {"CATEGORY_SOCIAL", GMAIL_LABEL_FLAG, "$Category_SOCIAL", MP_ROLE_NONE},
        {"CATEGORY_FORUMS", GMAIL_LABEL_FLAG, "$Category_FORUMS", MP_ROLE_NONE},
        {"CHAT", GMAIL_LABEL_IGNORED, NULL, MP_ROLE_NONE},
    };
    gmail_labels t = {0};
    char *error = NULL;
    assert_int_equal(gmail_labels_parse(&t, labels_json, strlen(labels_json), &error), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const gmail_label *l = gmail_labels_find(&t, cases[i].id);
        assert_non_null(l);
        assert_int_equal(l->kind, cases[i].kind);
        assert_int_equal(l->role, cases[i].role);
        if (cases[i].name == NULL)
            assert_null(l->name);
        else
            assert_string_equal(l->name, cases[i].name);
    }
    /* A user label created since the table was loaded is unknown. */
    assert_null(gmail_labels_find(&t, "Label_99"));
    gmail_labels_clear(&t);
    /* System labels are known without a table. */
    assert_non_null(gmail_labels_find(&t, "SPAM"));
    assert_int_equal(gmail_labels_find(&t, "SPAM")->role, MP_ROLE_JUNK);
}

static void test_place(void **state)
{
    (void)state;
    gmail_labels t = {0};
    assert_int_equal(gmail_labels_parse(&t, labels_json, strlen(labels_json), NULL), 0);
    static const struct {
        const char *ids[6];
        const char *folders; /* space-separated, in label order */
        const char *flags;
        size_t unknown;
    } cases[] = {
        {{"INBOX", "UNREAD", NULL}, "INBOX", "", 0},
        {{"INBOX", NULL}, "INBOX", "\\Seen", 0},
        {{"INBOX", "Label_7", "STARRED", "IMPORTANT", NULL}, "INBOX Work/Projects",
         "\\Flagged $Important \\Seen", 0},
        {{"CATEGORY_SOCIAL", "UNREAD", "INBOX", NULL}, "INBOX", "$Category_SOCIAL", 0},
        {{"SENT", "Label_99", NULL}, "SENT", "\\Seen", 1},
        {{"CHAT", NULL}, "", "\\Seen", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        while (cases[i].ids[n] != NULL)
            n++;
        gmail_placement p;
        gmail_labels_place(&t, cases[i].ids, n, &p);
        char folders[256] = "";
        for (size_t k = 0; k < p.n_folders; k++) {
            size_t len = strlen(folders);
            snprintf(folders + len, sizeof folders - len, "%s%s", k > 0 ? " " : "",
                     p.folders[k]);
        }
        assert_string_equal(folders, cases[i].folders);
        assert_string_equal(p.flags, cases[i].flags);
        assert_int_equal(p.unknown, cases[i].unknown);
        gmail_placement_clear(&p);
    }
    assert_true(gmail_label_is_flag(&t, "UNREAD"));
    assert_true(gmail_label_is_flag(&t, "STARRED"));
    assert_false(gmail_label_is_flag(&t, "INBOX"));
    gmail_labels_clear(&t);
}

static void test_parse_errors(void **state)
{
    (void)state;
    gmail_labels t = {0};
    char *error = NULL;
    assert_int_equal(gmail_labels_parse(&t, "nope", 4, &error), -1);
    assert_non_null(error);
    free(error);
    error = NULL;
    assert_int_equal(gmail_labels_parse(&t, "{}", 2, &error), -1);
    free(error);
    assert_int_equal(t.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_place),
        cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

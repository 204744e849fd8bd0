/* Gmail labels as folders and flags (see gmail_labels.h). */
#include "gmail_labels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static const struct {
    const char *id;
    mp_folder_role role;
} folder_labels[] = {
    {"INBOX", MP_ROLE_INBOX}, {"SENT", MP_ROLE_SENT}, {"DRAFT", MP_ROLE_DRAFTS},
    {"SPAM", MP_ROLE_JUNK},   {"TRASH", MP_ROLE_TRASH},
};

void gmail_label_classify(const char *id, const char *name, int user, gmail_label *out)
{
    memset(out, 0, sizeof *out);
    out->id = xstrdup(id);
    if (user) {
        out->kind = GMAIL_LABEL_FOLDER;
        out->name = xstrdup(name != NULL && name[0] != '\0' ? name : id);
        return;
    }
    for (size_t i = 0; i < sizeof folder_labels / sizeof folder_labels[0]; i++)
        if (strcmp(id, folder_labels[i].id) == 0) {
            out->kind = GMAIL_LABEL_FOLDER;
            out->role = folder_labels[i].role;
            out->name = xstrdup(id);
            return;
        }
    if (strcmp(id, "UNREAD") == 0) {
        out->kind = GMAIL_LABEL_UNREAD;
    } else if (strcmp(id, "STARRED") == 0) {
        out->kind = GMAIL_LABEL_FLAG;
        out->name = xstrdup("\\Flagged");
    } else if (strcmp(id, "IMPORTANT") == 0) {
        out->kind = GMAIL_LABEL_FLAG;
        out->name = xstrdup("$Important");
    } else if (strncmp(id, "CATEGORY_", 9) == 0 && id[9] != '\0') {
        size_t n = strlen(id) + 2;
        out->kind = GMAIL_LABEL_FLAG;
        out->name = malloc(n);
        if (out->name == NULL)
            abort();
        snprintf(out->name, n, "$Category_%s", id + 9);
    }
}

static void label_clear(gmail_label *l)
{
    free(l->id);
    free(l->name);
    memset(l, 0, sizeof *l);
}

void gmail_labels_clear(gmail_labels *t)
{
    for (size_t i = 0; i < t->n; i++)
        label_clear(&t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

static int fail(char **error_r, const char *what)
{
    if (error_r != NULL)
        *error_r = xstrdup(what);
    return -1;
}

int gmail_labels_parse(gmail_labels *t, const char *json, size_t len, char **error_r)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (root == NULL)
        return fail(error_r, "labels.list: not JSON");
    json_t *arr = json_object_get(root, "labels");
    if (!json_is_array(arr)) {
        json_decref(root);
        return fail(error_r, "labels.list: no \"labels\" array");
    }
    gmail_labels nt = {NULL, 0};
    nt.v = calloc(json_array_size(arr) + 1, sizeof *nt.v);
    if (nt.v == NULL)
        abort();
    size_t i;
    json_t *l;
    json_array_foreach(arr, i, l)
    {
        const char *id = json_string_value(json_object_get(l, "id"));
        const char *name = json_string_value(json_object_get(l, "name"));
        const char *type = json_string_value(json_object_get(l, "type"));
        if (id == NULL || id[0] == '\0')
            continue;
        int user = type != NULL ? strcmp(type, "user") == 0 : strncmp(id, "Label_", 6) == 0;
        gmail_label_classify(id, name, user, &nt.v[nt.n++]);
    }
    json_decref(root);
    gmail_labels_clear(t);
    *t = nt;
    return 0;
}

const gmail_label *gmail_labels_find(const gmail_labels *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].id, id) == 0)
            return &t->v[i];
    /* System labels mean the same in every mailbox. */
    static const gmail_label system[] = {
        {"INBOX", "INBOX", GMAIL_LABEL_FOLDER, MP_ROLE_INBOX},
        {"SENT", "SENT", GMAIL_LABEL_FOLDER, MP_ROLE_SENT},
        {"DRAFT", "DRAFT", GMAIL_LABEL_FOLDER, MP_ROLE_DRAFTS},
        {"SPAM", "SPAM", GMAIL_LABEL_FOLDER, MP_ROLE_JUNK},
        {"TRASH", "TRASH", GMAIL_LABEL_FOLDER, MP_ROLE_TRASH},
        {"UNREAD", NULL, GMAIL_LABEL_UNREAD, MP_ROLE_NONE},
        {"STARRED", "\\Flagged", GMAIL_LABEL_FLAG, MP_ROLE_NONE},
        {"IMPORTANT", "$Important", GMAIL_LABEL_FLAG, MP_ROLE_NONE},
        {"CHAT", NULL, GMAIL_LABEL_IGNORED, MP_ROLE_NONE},
        {"CATEGORY_PERSONAL", "$Category_PERSONAL", GMAIL_LABEL_FLAG, MP_ROLE_NONE},
        {"CATEGORY_SOCIAL", "$Category_SOCIAL", GMAIL_LABEL_FLAG, MP_ROLE_NONE},
        {"CATEGORY_PROMOTIONS", "$Category_PROMOTIONS", GMAIL_LABEL_FLAG, MP_ROLE_NONE},
        {"CATEGORY_UPDATES", "$Category_UPDATES", GMAIL_LABEL_FLAG, MP_ROLE_NONE},
        {"CATEGORY_FORUMS", "$Category_FORUMS", GMAIL_LABEL_FLAG, MP_ROLE_NONE},
    };
    for (size_t i = 0; i < sizeof system / sizeof system[0]; i++)
        if (strcmp(system[i].id, id) == 0)
            return &system[i];
    return NULL;
}

int gmail_label_is_flag(const gmail_labels *t, const char *id)
{
    const gmail_label *l = gmail_labels_find(t, id);
    return l != NULL && (l->kind == GMAIL_LABEL_FLAG || l->kind == GMAIL_LABEL_UNREAD);
}

void gmail_labels_place(const gmail_labels *t, const char *const *ids, size_t n,
                        gmail_placement *out)
{
    memset(out, 0, sizeof *out);
    out->folders = calloc(n + 1, sizeof *out->folders);
    if (out->folders == NULL)
        abort();
    size_t cap = 16;
    for (size_t i = 0; i < n; i++) {
        const gmail_label *l = gmail_labels_find(t, ids[i]);
        if (l != NULL && l->name != NULL)
            cap += strlen(l->name) + 1;
    }
    out->flags = malloc(cap);
    if (out->flags == NULL)
        abort();
    size_t len = 0;
    int unread = 0;
    for (size_t i = 0; i < n; i++) {
        const gmail_label *l = gmail_labels_find(t, ids[i]);
        if (l == NULL) {
            out->unknown++;
            continue;
        }
        if (l->kind == GMAIL_LABEL_UNREAD) {
            unread = 1;
        } else if (l->kind == GMAIL_LABEL_FOLDER) {
            int dup = 0;
            for (size_t k = 0; k < out->n_folders; k++)
                dup |= strcmp(out->folders[k], l->name) == 0;
            if (!dup)
                out->folders[out->n_folders++] = l->name;
        } else if (l->kind == GMAIL_LABEL_FLAG) {
            len += (size_t)snprintf(out->flags + len, cap - len, "%s%s", len ? " " : "",
                                    l->name);
        }
    }
    if (!unread)
        len += (size_t)snprintf(out->flags + len, cap - len, "%s\\Seen", len ? " " : "");
    out->flags[len] = '\0';
}

void gmail_placement_clear(gmail_placement *p)
{
    free(p->folders);
    free(p->flags);
    memset(p, 0, sizeof *p);
}

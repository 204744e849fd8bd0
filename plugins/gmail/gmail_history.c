/* history.list pages folded per message (see gmail_history.h). */
#include "gmail_history.h"

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

static int strv_has(const gmail_strv *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0)
            return 1;
    return 0;
}

static void strv_add(gmail_strv *s, const char *x)
{
    if (strv_has(s, x))
        return;
    char **v = realloc(s->v, (s->n + 1) * sizeof *v);
    if (v == NULL)
        abort();
    s->v = v;
    s->v[s->n++] = xstrdup(x);
}

/* Removes x; returns whether it was there. */
static int strv_del(gmail_strv *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0) {
            free(s->v[i]);
            memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
            s->n--;
            return 1;
        }
    return 0;
}

static void strv_clear(gmail_strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static gmail_hop *hop_for(gmail_history *h, const char *id)
{
    for (size_t i = h->n; i-- > 0;)
        if (strcmp(h->v[i].id, id) == 0)
            return &h->v[i];
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 32;
        gmail_hop *v = realloc(h->v, cap * sizeof *v);
        if (v == NULL)
            abort();
        h->v = v;
        h->cap = cap;
    }
    gmail_hop *hop = &h->v[h->n++];
    memset(hop, 0, sizeof *hop);
    hop->id = xstrdup(id);
    return hop;
}

static void take_labels(gmail_hop *hop, json_t *msg)
{
    json_t *labels = json_object_get(msg, "labelIds");
    if (!json_is_array(labels))
        return;
    strv_clear(&hop->labels);
    size_t i;
    json_t *l;
    json_array_foreach(labels, i, l)
    {
        if (json_is_string(l))
            strv_add(&hop->labels, json_string_value(l));
    }
    hop->has_labels = 1;
}

/* The entries of one record field ("messagesAdded", ...) applied in order. */
static void apply_field(gmail_history *h, json_t *rec, const char *field)
{
    json_t *arr = json_object_get(rec, field);
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        json_t *msg = json_object_get(e, "message");
        const char *id = json_string_value(json_object_get(msg, "id"));
        if (id == NULL || id[0] == '\0')
            continue;
        gmail_hop *hop = hop_for(h, id);
        if (hop->deleted)
            continue; /* Gmail ids are never reused */
        if (strcmp(field, "messagesAdded") == 0) {
            hop->added = 1;
            take_labels(hop, msg);
        } else if (strcmp(field, "messagesDeleted") == 0) {
            hop->deleted = 1;
            hop->added = 0;
            strv_clear(&hop->plus);
            strv_clear(&hop->minus);
        } else {
            int add = strcmp(field, "labelsAdded") == 0;
            json_t *ids = json_object_get(e, "labelIds");
            size_t k;
            json_t *l;
            json_array_foreach(ids, k, l)
            {
                const char *lab = json_string_value(l);
                if (lab == NULL)
                    continue;
                if (add) {
                    if (!strv_del(&hop->minus, lab))
                        strv_add(&hop->plus, lab);
                } else {
                    if (!strv_del(&hop->plus, lab))
                        strv_add(&hop->minus, lab);
                }
            }
            take_labels(hop, msg);
        }
    }
}

int gmail_history_page(gmail_history *h, const char *json, size_t len, char **error_r)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    json_t *hid = root != NULL ? json_object_get(root, "historyId") : NULL;
    json_t *records = root != NULL ? json_object_get(root, "history") : NULL;
    const char *hid_s = json_string_value(hid);
    char num[32];
    if (hid_s == NULL && json_is_integer(hid)) {
        /* Google types it as a string; tolerate a number. */
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(hid));
        hid_s = num;
    }
    if (root == NULL || hid_s == NULL || (records != NULL && !json_is_array(records))) {
        json_decref(root);
        if (error_r != NULL)
            *error_r = xstrdup("history.list: malformed answer (no historyId)");
        return -1;
    }
    free(h->history_id);
    free(h->next_page);
    free(h->last_record);
    h->history_id = xstrdup(hid_s);
    const char *next = json_string_value(json_object_get(root, "nextPageToken"));
    h->next_page = next != NULL && next[0] != '\0' ? xstrdup(next) : NULL;
    h->last_record = NULL;
    h->records = 0;
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        /* Within a record Gmail lists one kind of change; the order below is
         * the order they happen in when a record carries several. */
        apply_field(h, rec, "messagesAdded");
        apply_field(h, rec, "labelsAdded");
        apply_field(h, rec, "labelsRemoved");
        apply_field(h, rec, "messagesDeleted");
        const char *rid = json_string_value(json_object_get(rec, "id"));
        if (rid != NULL) {
            free(h->last_record);
            h->last_record = xstrdup(rid);
        }
        h->records++;
    }
    json_decref(root);
    return 0;
}

void gmail_history_clear(gmail_history *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].id);
        strv_clear(&h->v[i].plus);
        strv_clear(&h->v[i].minus);
        strv_clear(&h->v[i].labels);
    }
    free(h->v);
    free(h->history_id);
    free(h->next_page);
    free(h->last_record);
    memset(h, 0, sizeof *h);
}

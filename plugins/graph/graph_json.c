/* Graph answers as C values (see graph_json.h). */
#include "graph_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Bounds on what one answer may hold, whatever Graph (or a fake) sends. */
#define PAGE_MAX_ITEMS 10000
#define BATCH_MAX_PARTS 20

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static int fail(char **error_r, const char *what)
{
    if (error_r != NULL)
        *error_r = xstrdup(what);
    return -1;
}

static char *dup_str(json_t *v)
{
    const char *s = json_string_value(v);
    return s != NULL ? xstrdup(s) : NULL;
}

/* {"emailAddress":{"name","address"}} as "Name <addr>" or "addr". */
static char *recipient(json_t *r)
{
    json_t *ea = json_object_get(r, "emailAddress");
    const char *name = json_string_value(json_object_get(ea, "name"));
    const char *addr = json_string_value(json_object_get(ea, "address"));
    if (addr == NULL || addr[0] == '\0')
        return name != NULL && name[0] != '\0' ? xstrdup(name) : NULL;
    if (name == NULL || name[0] == '\0' || strcmp(name, addr) == 0)
        return xstrdup(addr);
    size_t n = strlen(name) + strlen(addr) + 4;
    char *out = malloc(n);
    if (out == NULL)
        abort();
    snprintf(out, n, "%s <%s>", name, addr);
    return out;
}

static char *recipients(json_t *arr)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return NULL;
    char *out = NULL;
    size_t len = 0, i;
    json_t *r;
    json_array_foreach(arr, i, r)
    {
        char *one = recipient(r);
        if (one == NULL)
            continue;
        size_t ol = strlen(one);
        char *grown = realloc(out, len + ol + 3);
        if (grown == NULL)
            abort();
        out = grown;
        if (len > 0) {
            memcpy(out + len, ", ", 2);
            len += 2;
        }
        memcpy(out + len, one, ol + 1);
        len += ol;
        free(one);
    }
    return out;
}

static int bool_of(json_t *v, int unknown)
{
    return json_is_boolean(v) ? json_is_true(v) : unknown;
}

int graph_msg_from_json(json_t *obj, graph_msg *m, char **error_r)
{
    memset(m, 0, sizeof *m);
    m->is_read = -1;
    if (!json_is_object(obj))
        return fail(error_r, "message: not a JSON object");
    const char *id = json_string_value(json_object_get(obj, "id"));
    if (id == NULL || id[0] == '\0')
        return fail(error_r, "message: no id");
    m->id = xstrdup(id);
    m->removed = json_object_get(obj, "@removed") != NULL;
    if (m->removed)
        return 0;
    json_t *v = json_object_get(obj, "receivedDateTime");
    if (v == NULL || graph_time_parse(json_string_value(v), &m->received) < 0) {
        m->received = 0;
        m->missing |= GRAPH_MISSING_RECEIVED;
    }
    v = json_object_get(obj, "subject");
    if (v == NULL)
        m->missing |= GRAPH_MISSING_SUBJECT;
    m->subject = dup_str(v);
    v = json_object_get(obj, "from");
    if (v == NULL)
        m->missing |= GRAPH_MISSING_FROM;
    m->from = json_is_object(v) ? recipient(v) : NULL;
    m->to = recipients(json_object_get(obj, "toRecipients"));
    const char *mid = json_string_value(json_object_get(obj, "internetMessageId"));
    if (mid != NULL) {
        size_t n = strlen(mid);
        if (n >= 2 && mid[0] == '<' && mid[n - 1] == '>')
            m->message_id = strndup(mid + 1, n - 2);
        else
            m->message_id = strdup(mid);
        if (m->message_id == NULL)
            abort();
    }
    m->thread_id = dup_str(json_object_get(obj, "conversationId"));
    v = json_object_get(obj, "parentFolderId");
    if (json_string_value(v) == NULL)
        m->missing |= GRAPH_MISSING_FOLDER;
    m->parent_id = dup_str(v);
    v = json_object_get(obj, "isRead");
    m->is_read = bool_of(v, -1);
    if (m->is_read < 0)
        m->missing |= GRAPH_MISSING_READ;
    m->draft = bool_of(json_object_get(obj, "isDraft"), 0);
    const char *fs = json_string_value(
        json_object_get(json_object_get(obj, "flag"), "flagStatus"));
    m->flagged = fs != NULL && strcmp(fs, "flagged") == 0;
    return 0;
}

void graph_msg_clear(graph_msg *m)
{
    if (m == NULL)
        return;
    free(m->id);
    free(m->subject);
    free(m->from);
    free(m->to);
    free(m->message_id);
    free(m->thread_id);
    free(m->parent_id);
    memset(m, 0, sizeof *m);
}

char *graph_msg_flags(const graph_msg *m)
{
    if (m->is_read < 0)
        return NULL;
    char buf[64];
    snprintf(buf, sizeof buf, "%s%s%s", m->is_read ? "\\Seen " : "",
             m->flagged ? "\\Flagged " : "", m->draft ? "\\Draft " : "");
    size_t n = strlen(buf);
    if (n > 0)
        buf[n - 1] = '\0';
    return xstrdup(buf);
}

static json_t *load_object(const char *body, size_t len, char **error_r)
{
    json_error_t jerr;
    json_t *root = body != NULL ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        fail(error_r, "Graph's answer is not a JSON object");
        return NULL;
    }
    return root;
}

/* A link must be a non-empty string when present. */
static int link_of(json_t *root, const char *key, char **link_r, char **error_r)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return 0;
    const char *s = json_string_value(v);
    if (s == NULL || s[0] == '\0') {
        char why[96];
        snprintf(why, sizeof why, "%s is not a URL", key);
        return fail(error_r, why);
    }
    *link_r = xstrdup(s);
    return 0;
}

int graph_page_parse(const char *body, size_t len, graph_page *p, char **error_r)
{
    memset(p, 0, sizeof *p);
    json_t *root = load_object(body, len, error_r);
    if (root == NULL)
        return -1;
    json_t *value = json_object_get(root, "value");
    if (!json_is_array(value) || json_array_size(value) > PAGE_MAX_ITEMS) {
        json_decref(root);
        return fail(error_r, "page: no \"value\" array (or too long)");
    }
    if (link_of(root, "@odata.nextLink", &p->next_link, error_r) < 0 ||
        link_of(root, "@odata.deltaLink", &p->delta_link, error_r) < 0) {
        json_decref(root);
        graph_page_clear(p);
        return -1;
    }
    p->v = calloc(json_array_size(value) + 1, sizeof *p->v);
    if (p->v == NULL)
        abort();
    size_t i;
    json_t *item;
    json_array_foreach(value, i, item)
    {
        if (graph_msg_from_json(item, &p->v[p->n], error_r) < 0) {
            json_decref(root);
            graph_page_clear(p);
            return -1;
        }
        p->n++;
    }
    json_decref(root);
    return 0;
}

void graph_page_clear(graph_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        graph_msg_clear(&p->v[i]);
    free(p->v);
    free(p->next_link);
    free(p->delta_link);
    memset(p, 0, sizeof *p);
}

int graph_folder_page_parse(const char *body, size_t len, graph_folder_page *p,
                            char **error_r)
{
    memset(p, 0, sizeof *p);
    json_t *root = load_object(body, len, error_r);
    if (root == NULL)
        return -1;
    json_t *value = json_object_get(root, "value");
    if (!json_is_array(value) || json_array_size(value) > PAGE_MAX_ITEMS) {
        json_decref(root);
        return fail(error_r, "mailFolders: no \"value\" array (or too long)");
    }
    if (link_of(root, "@odata.nextLink", &p->next_link, error_r) < 0) {
        json_decref(root);
        return -1;
    }
    p->v = calloc(json_array_size(value) + 1, sizeof *p->v);
    if (p->v == NULL)
        abort();
    size_t i;
    json_t *f;
    json_array_foreach(value, i, f)
    {
        const char *id = json_string_value(json_object_get(f, "id"));
        const char *name = json_string_value(json_object_get(f, "displayName"));
        if (id == NULL || id[0] == '\0' || name == NULL || name[0] == '\0') {
            json_decref(root);
            graph_folder_page_clear(p);
            return fail(error_r, "mailFolders: a folder without id or displayName");
        }
        json_t *cc = json_object_get(f, "childFolderCount");
        graph_folder_item *it = &p->v[p->n++];
        it->id = xstrdup(id);
        it->name = xstrdup(name);
        it->child_count = json_is_integer(cc) ? json_integer_value(cc) : -1;
    }
    json_decref(root);
    return 0;
}

void graph_folder_page_clear(graph_folder_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].id);
        free(p->v[i].name);
    }
    free(p->v);
    free(p->next_link);
    memset(p, 0, sizeof *p);
}

/* A part's Retry-After header (delta-seconds), case-insensitive name. */
static uint32_t part_retry_after(json_t *headers)
{
    const char *key;
    json_t *v;
    json_object_foreach(headers, key, v)
    {
        if (strcasecmp(key, "Retry-After") != 0)
            continue;
        long long s = -1;
        if (json_is_integer(v))
            s = json_integer_value(v);
        else if (json_string_value(v) != NULL) {
            char *end = NULL;
            s = strtoll(json_string_value(v), &end, 10);
            if (end == json_string_value(v))
                s = -1;
        }
        if (s > 0 && s < 86400)
            return (uint32_t)s * 1000u;
    }
    return 0;
}

int graph_batch_parse(const char *body, size_t len, graph_part *parts, size_t n,
                      char **error_r)
{
    memset(parts, 0, n * sizeof *parts);
    json_t *root = load_object(body, len, error_r);
    if (root == NULL)
        return -1;
    json_t *resp = json_object_get(root, "responses");
    if (!json_is_array(resp) || json_array_size(resp) > BATCH_MAX_PARTS) {
        json_decref(root);
        return fail(error_r, "$batch: no \"responses\" array (or too long)");
    }
    size_t i;
    json_t *r;
    json_array_foreach(resp, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "id"));
        json_t *status = json_object_get(r, "status");
        char *end = NULL;
        unsigned long k = id != NULL ? strtoul(id, &end, 10) : 0;
        if (id == NULL || id[0] == '\0' || !isdigit((unsigned char)id[0]) || *end != '\0' ||
            k >= n || parts[k].present || !json_is_integer(status)) {
            json_decref(root);
            graph_parts_clear(parts, n);
            return fail(error_r, "$batch: an answer with an unknown or repeated id");
        }
        parts[k].present = 1;
        parts[k].status = (long)json_integer_value(status);
        parts[k].retry_after_ms = part_retry_after(json_object_get(r, "headers"));
        json_t *b = json_object_get(r, "body");
        if (b != NULL && !json_is_null(b))
            parts[k].body = json_incref(b);
    }
    json_decref(root);
    return 0;
}

void graph_parts_clear(graph_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(parts[i].body);
        parts[i].body = NULL;
        parts[i].present = 0;
    }
}

void graph_error_parse(const char *body, size_t len, char *code, size_t code_cap, char *msg,
                       size_t msg_cap)
{
    code[0] = msg[0] = '\0';
    if (body == NULL || len == 0)
        return;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    json_t *e = json_object_get(root, "error");
    const char *c = NULL, *m = NULL;
    if (json_is_object(e)) {
        c = json_string_value(json_object_get(e, "code"));
        m = json_string_value(json_object_get(e, "message"));
    } else if (json_is_string(e)) {
        c = json_string_value(e);
        m = json_string_value(json_object_get(root, "error_description"));
    }
    if (c != NULL)
        snprintf(code, code_cap, "%s", c);
    if (m != NULL)
        snprintf(msg, msg_cap, "%s", m);
    json_decref(root);
}

int graph_sync_state_gone(const char *code)
{
    static const char *const gone[] = {"SyncStateNotFound", "resyncRequired",
                                       "InvalidSyncStateData", "syncStateInvalid",
                                       "SyncStateInvalid"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        if (strcmp(code, gone[i]) == 0)
            return 1;
    return 0;
}

static int digits(const char *s, int n, int *v_r)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *v_r = v;
    return 0;
}

int graph_time_parse(const char *s, int64_t *t_r)
{
    *t_r = 0;
    if (s == NULL || strlen(s) < 19)
        return -1;
    int y, mo, d, h, mi, sec;
    if (digits(s, 4, &y) < 0 || s[4] != '-' || digits(s + 5, 2, &mo) < 0 || s[7] != '-' ||
        digits(s + 8, 2, &d) < 0 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) < 0 || s[13] != ':' || digits(s + 14, 2, &mi) < 0 ||
        s[16] != ':' || digits(s + 17, 2, &sec) < 0)
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) < 0 || p[3] != ':' || digits(p + 4, 2, &om) < 0 ||
            oh > 23 || om > 59)
            return -1;
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else if (*p != '\0') {
        return -1;
    }
    if (*p != '\0')
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *t_r = (int64_t)t - offset;
    return 0;
}

void graph_time_format(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, cap, "1970-01-01T00:00:00Z");
}

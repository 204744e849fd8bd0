/*
 * EmailEngine answers to structs (ee_json.h). Flags are normalized here,
 * once: sorted and joined, so the stored flags of a message (what we
 * emitted) and a new listing's compare as strings in the delta.
 */
#include "ee_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

static char *xstrdup(const char *s)
{
    char *d = strdup(s != NULL ? s : "");
    if (d == NULL)
        abort();
    return d;
}

static int why_set(char *why, size_t why_len, const char *what)
{
    snprintf(why, why_len, "%s", what);
    return -1;
}

static json_t *load(const char *body, size_t len, char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (root == NULL)
        snprintf(why, why_len, "not JSON: %s", jerr.text);
    else if (!json_is_object(root)) {
        json_decref(root);
        root = NULL;
        snprintf(why, why_len, "not a JSON object");
    }
    return root;
}

/* A number member, or `def` when absent, false or null; -2 for any other
 * type (callers treat it as malformed). */
static int64_t num_or(json_t *obj, const char *key, int64_t def)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_false(v) || json_is_null(v))
        return def;
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v)) {
        /* A real outside int64's range (1e22, inf) cannot be converted:
         * malformed, like any other type. */
        double d = json_real_value(v);
        if (!(d >= -9.2e18 && d <= 9.2e18))
            return -2;
        return (int64_t)d;
    }
    return -2;
}

static const char *str_or(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

mp_folder_role ee_role_of(const char *su)
{
    static const struct {
        const char *name;
        mp_folder_role role;
    } map[] = {
        {"\\Inbox", MP_ROLE_INBOX},   {"\\Sent", MP_ROLE_SENT},   {"\\Drafts", MP_ROLE_DRAFTS},
        {"\\Junk", MP_ROLE_JUNK},     {"\\Trash", MP_ROLE_TRASH}, {"\\Archive", MP_ROLE_ARCHIVE},
        {"\\All", MP_ROLE_ALL},       {"\\Flagged", MP_ROLE_FLAGGED},
    };
    if (su == NULL)
        return MP_ROLE_NONE;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, su) == 0)
            return map[i].role;
    return MP_ROLE_NONE;
}

int ee_mailboxes_parse(const char *body, size_t len, ee_mailboxes *out, char *why,
                       size_t why_len)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, why, why_len);
    if (root == NULL)
        return -1;
    json_t *arr = json_object_get(root, "mailboxes");
    if (!json_is_array(arr)) {
        json_decref(root);
        return why_set(why, why_len, "\"mailboxes\" is not an array");
    }
    size_t n = json_array_size(arr);
    out->v = calloc(n ? n : 1, sizeof *out->v);
    if (out->v == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        const char *path = str_or(m, "path");
        if (!json_is_object(m) || path == NULL || path[0] == '\0') {
            ee_mailboxes_clear(out);
            json_decref(root);
            return why_set(why, why_len, "a mailbox without a path");
        }
        ee_mailbox *b = &out->v[out->n++];
        b->path = xstrdup(path);
        b->role = ee_role_of(str_or(m, "specialUse"));
        b->messages = num_or(m, "messages", -1);
        b->uid_next = num_or(m, "uidNext", -1);
        if (b->messages < -1 || b->uid_next < -1) {
            ee_mailboxes_clear(out);
            json_decref(root);
            return why_set(why, why_len, "a mailbox's messages or uidNext is not a number");
        }
    }
    json_decref(root);
    return 0;
}

void ee_mailboxes_clear(ee_mailboxes *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].path);
    free(m->v);
    memset(m, 0, sizeof *m);
}

const ee_mailbox *ee_mailboxes_find(const ee_mailboxes *m, const char *path)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].path, path) == 0)
            return &m->v[i];
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted, space-separated; flags with spaces or control bytes (none in
 * IMAP's grammar) are dropped rather than split. */
static char *flags_of(json_t *arr)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    const char **v = calloc(n ? n : 1, sizeof *v);
    if (v == NULL)
        abort();
    size_t k = 0, total = 1;
    for (size_t i = 0; i < n; i++) {
        const char *f = json_string_value(json_array_get(arr, i));
        if (f == NULL || f[0] == '\0' || strpbrk(f, " \t\r\n") != NULL)
            continue;
        v[k++] = f;
        total += strlen(f) + 1;
    }
    qsort(v, k, sizeof *v, cmp_str);
    char *s = malloc(total);
    if (s == NULL)
        abort();
    s[0] = '\0';
    size_t at = 0;
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && strcmp(v[i], v[i - 1]) == 0)
            continue;
        at += (size_t)snprintf(s + at, total - at, "%s%s", at ? " " : "", v[i]);
    }
    free(v);
    return s;
}

static char *address_of(json_t *a)
{
    const char *name = str_or(a, "name"), *addr = str_or(a, "address");
    if (addr == NULL)
        return NULL;
    if (name == NULL || name[0] == '\0')
        return xstrdup(addr);
    size_t n = strlen(name) + strlen(addr) + 4;
    char *s = malloc(n);
    if (s == NULL)
        abort();
    snprintf(s, n, "%s <%s>", name, addr);
    return s;
}

static char *addresses_of(json_t *arr)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return NULL;
    size_t cap = 1;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *a = str_or(json_array_get(arr, i), "address");
        cap += a != NULL ? strlen(a) + 2 : 0;
    }
    char *s = malloc(cap);
    if (s == NULL)
        abort();
    size_t at = 0;
    s[0] = '\0';
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *a = str_or(json_array_get(arr, i), "address");
        if (a != NULL)
            at += (size_t)snprintf(s + at, cap - at, "%s%s", at ? ", " : "", a);
    }
    return s;
}

static char *message_id_of(const char *mid)
{
    if (mid == NULL)
        return NULL;
    size_t n = strlen(mid);
    if (n >= 2 && mid[0] == '<' && mid[n - 1] == '>') {
        char *s = malloc(n - 1);
        if (s == NULL)
            abort();
        memcpy(s, mid + 1, n - 2);
        s[n - 2] = '\0';
        return s;
    }
    return xstrdup(mid);
}

static void msg_clear(ee_msg *m)
{
    free(m->id);
    free(m->flags);
    free(m->message_id);
    free(m->subject);
    free(m->from);
    free(m->to);
    free(m->thread_id);
    memset(m, 0, sizeof *m);
}

int ee_page_parse(const char *body, size_t len, ee_page *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, why, why_len);
    if (root == NULL)
        return -1;
    json_t *arr = json_object_get(root, "messages");
    out->total = num_or(root, "total", -1);
    out->page = num_or(root, "page", 0);
    out->pages = num_or(root, "pages", 1);
    if (!json_is_array(arr) || out->total < 0 || out->page < 0 || out->pages < 0) {
        json_decref(root);
        return why_set(why, why_len, "not a message listing (messages, total, page, pages)");
    }
    size_t n = json_array_size(arr);
    out->v = calloc(n ? n : 1, sizeof *out->v);
    if (out->v == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        const char *id = str_or(e, "id");
        int64_t uid = num_or(e, "uid", -1);
        if (!json_is_object(e) || id == NULL || id[0] == '\0' || strlen(id) > 256 ||
            uid <= 0 || uid > UINT32_MAX || str_or(e, "status") != NULL)
            continue;
        ee_msg *m = &out->v[out->n++];
        m->id = xstrdup(id);
        m->uid = (uint32_t)uid;
        m->flags = flags_of(json_object_get(e, "flags"));
        m->message_id = message_id_of(str_or(e, "messageId"));
        const char *subj = str_or(e, "subject");
        m->subject = subj != NULL ? xstrdup(subj) : NULL;
        m->from = address_of(json_object_get(e, "from"));
        m->to = addresses_of(json_object_get(e, "to"));
        const char *tid = str_or(e, "threadId");
        m->thread_id = tid != NULL ? xstrdup(tid) : NULL;
        m->date = ee_parse_date(str_or(e, "date"));
        m->size = num_or(e, "size", -1);
        if (m->size < -1)
            m->size = -1;
    }
    json_decref(root);
    return 0;
}

void ee_page_clear(ee_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        msg_clear(&p->v[i]);
    free(p->v);
    memset(p, 0, sizeof *p);
}

int ee_account_parse(const char *body, size_t len, char *state, size_t cap, char *detail,
                     size_t dcap, char *why, size_t why_len)
{
    state[0] = '\0';
    detail[0] = '\0';
    json_t *root = load(body, len, why, why_len);
    if (root == NULL)
        return -1;
    const char *s = str_or(root, "state");
    if (s == NULL) {
        json_decref(root);
        return why_set(why, why_len, "the account has no \"state\"");
    }
    snprintf(state, cap, "%s", s);
    json_t *le = json_object_get(root, "lastError");
    const char *r = json_is_object(le) ? str_or(le, "response") : NULL;
    if (r != NULL)
        snprintf(detail, dcap, "%s", r);
    json_decref(root);
    return 0;
}

void ee_error_parse(const char *body, size_t len, char *code, size_t ccap, char *state,
                    size_t scap, char *msg, size_t mcap)
{
    code[0] = state[0] = msg[0] = '\0';
    if (body == NULL || len == 0)
        return;
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    const char *c = str_or(root, "code"), *s = str_or(root, "state"),
               *m = str_or(root, "message");
    if (c != NULL)
        snprintf(code, ccap, "%s", c);
    if (s != NULL)
        snprintf(state, scap, "%s", s);
    if (m != NULL)
        snprintf(msg, mcap, "%s", m);
    json_decref(root);
}

int64_t ee_id_registry(const char *id)
{
    if (id == NULL || strlen(id) != 11)
        return -1;
    /* base64url -> base64 with its padding, then OpenSSL decodes. */
    unsigned char b64[13], raw[12];
    for (int i = 0; i < 11; i++) {
        char c = id[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return -1;
        b64[i] = (unsigned char)c;
    }
    b64[11] = '=';
    b64[12] = '\0';
    if (EVP_DecodeBlock(raw, b64, 12) != 9) /* 8 bytes, plus one for the '=' */
        return -1;
    return (int64_t)(((uint32_t)raw[0] << 24) | ((uint32_t)raw[1] << 16) |
                     ((uint32_t)raw[2] << 8) | (uint32_t)raw[3]);
}

int64_t ee_parse_date(const char *s)
{
    if (s == NULL)
        return 0;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int y, mo, d, h, mi, se, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n == 0)
        return 0;
    const char *p = s + n;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    long off = 0;
    if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
            return 0;
        off = (long)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    } else if (*p != 'Z' && *p != '\0')
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : (int64_t)t - off;
}

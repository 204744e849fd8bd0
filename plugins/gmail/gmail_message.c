/* Gmail Message resources and base64url bodies (see gmail_message.h). */
#include "gmail_message.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "gmail_b64.h"

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

/* ---- RFC 2047 ---------------------------------------------------------- */

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL)
            abort();
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = toupper(c);
    return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The B encoding's bytes (gmail_b64: OpenSSL underneath). */
static unsigned char *b64_word(const char *text, size_t n, size_t *len_r)
{
    unsigned char *out = malloc(GMAIL_B64_DECODED_MAX(n) + 1);
    if (out == NULL)
        abort();
    if (n == 0 || !gmail_b64_decode(text, n, GMAIL_B64_EITHER, out, GMAIL_B64_DECODED_MAX(n),
                                    len_r)) {
        free(out);
        return NULL;
    }
    return out;
}

static int to_utf8(buf *out, const char *charset, const unsigned char *in, size_t n)
{
    if (strcasecmp(charset, "utf-8") == 0 || strcasecmp(charset, "us-ascii") == 0) {
        buf_add(out, in, n);
        return 0;
    }
    iconv_t cd = iconv_open("UTF-8", charset);
    if (cd == (iconv_t)-1)
        return -1;
    size_t cap = n * 4 + 16;
    char *tmp = malloc(cap);
    if (tmp == NULL)
        abort();
    char *ip = (char *)in, *op = tmp;
    size_t il = n, ol = cap;
    size_t r = iconv(cd, &ip, &il, &op, &ol);
    iconv_close(cd);
    if (r == (size_t)-1) {
        free(tmp);
        return -1;
    }
    buf_add(out, tmp, cap - ol);
    free(tmp);
    return 0;
}

/* One encoded-word "=?charset?E?text?=" at p; *end_r after it. */
static int decode_word(buf *out, const char *p, const char **end_r)
{
    if (p[0] != '=' || p[1] != '?')
        return -1;
    const char *cs = p + 2;
    const char *q1 = strchr(cs, '?');
    if (q1 == NULL || q1 == cs || q1 - cs > 40 || q1[1] == '\0' || q1[2] != '?')
        return -1;
    char enc = (char)toupper((unsigned char)q1[1]);
    const char *text = q1 + 3;
    const char *e = strstr(text, "?=");
    if (e == NULL || (enc != 'B' && enc != 'Q'))
        return -1;
    for (const char *t = text; t < e; t++)
        if (*t == ' ' || *t == '\t')
            return -1;
    char charset[48];
    size_t csl = (size_t)(q1 - cs);
    memcpy(charset, cs, csl);
    charset[csl] = '\0';
    char *star = strchr(charset, '*'); /* RFC 2231 language suffix */
    if (star != NULL)
        *star = '\0';
    unsigned char *bytes;
    size_t n = 0;
    if (enc == 'B') {
        bytes = b64_word(text, (size_t)(e - text), &n);
        if (bytes == NULL)
            return -1;
    } else {
        bytes = malloc((size_t)(e - text) + 1);
        if (bytes == NULL)
            abort();
        for (const char *t = text; t < e; t++) {
            if (*t == '_') {
                bytes[n++] = ' ';
            } else if (*t == '=' && t + 2 < e && hexval(t[1]) >= 0 && hexval(t[2]) >= 0) {
                bytes[n++] = (unsigned char)(hexval(t[1]) * 16 + hexval(t[2]));
                t += 2;
            } else {
                bytes[n++] = (unsigned char)*t;
            }
        }
    }
    int r = to_utf8(out, charset, bytes, n);
    free(bytes);
    if (r < 0)
        return -1;
    *end_r = e + 2;
    return 0;
}

char *gmail_decode_words(const char *s)
{
    if (strstr(s, "=?") == NULL)
        return xstrdup(s);
    buf out = {0};
    const char *p = s;
    int prev_word = 0;
    while (*p != '\0') {
        if (p[0] == '=' && p[1] == '?') {
            const char *end;
            size_t mark = out.len;
            if (decode_word(&out, p, &end) == 0) {
                p = end;
                prev_word = 1;
                continue;
            }
            out.len = mark;
        }
        if (prev_word && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
            /* White space between two encoded-words is dropped (RFC 2047 §6.2). */
            const char *q = p;
            while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
                q++;
            buf probe = {0};
            const char *end;
            int word = q[0] == '=' && q[1] == '?' && decode_word(&probe, q, &end) == 0;
            free(probe.data);
            if (word) {
                p = q;
                continue;
            }
        }
        prev_word = 0;
        buf_add(&out, p, 1);
        p++;
    }
    if (out.data == NULL)
        return xstrdup("");
    return out.data;
}

/* ---- Message resource -------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

static char *strip_angles(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && isspace((unsigned char)v[n - 1]))
        n--;
    if (n >= 2 && v[0] == '<' && v[n - 1] == '>') {
        v++;
        n -= 2;
    }
    char *out = malloc(n + 1);
    if (out == NULL)
        abort();
    memcpy(out, v, n);
    out[n] = '\0';
    return out;
}

int gmail_msg_parse(gmail_msg *m, const char *json, size_t len, char **error_r)
{
    memset(m, 0, sizeof *m);
    m->size = -1;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return fail(error_r, "message: not a JSON object");
    }
    const char *id = json_string_value(json_object_get(root, "id"));
    if (id == NULL || id[0] == '\0') {
        json_decref(root);
        return fail(error_r, "message: no id");
    }
    m->id = xstrdup(id);
    m->thread_id = dup_or_null(json_string_value(json_object_get(root, "threadId")));
    /* internalDate is a string of ms at Google; tolerate a number. */
    json_t *d = json_object_get(root, "internalDate");
    if (json_is_string(d))
        m->date = strtoll(json_string_value(d), NULL, 10) / 1000;
    else if (json_is_integer(d))
        m->date = (int64_t)json_integer_value(d) / 1000;
    json_t *sz = json_object_get(root, "sizeEstimate");
    if (json_is_integer(sz))
        m->size = (int64_t)json_integer_value(sz);
    json_t *labels = json_object_get(root, "labelIds");
    if (json_is_array(labels)) {
        m->label_ids = calloc(json_array_size(labels) + 1, sizeof *m->label_ids);
        if (m->label_ids == NULL)
            abort();
        size_t i;
        json_t *l;
        json_array_foreach(labels, i, l)
        {
            if (json_is_string(l))
                m->label_ids[m->n_labels++] = xstrdup(json_string_value(l));
        }
    }
    json_t *headers = json_object_get(json_object_get(root, "payload"), "headers");
    size_t i;
    json_t *h;
    json_array_foreach(headers, i, h)
    {
        const char *name = json_string_value(json_object_get(h, "name"));
        const char *value = json_string_value(json_object_get(h, "value"));
        if (name == NULL || value == NULL)
            continue;
        char **slot = NULL;
        if (strcasecmp(name, "Subject") == 0)
            slot = &m->subject;
        else if (strcasecmp(name, "From") == 0)
            slot = &m->from;
        else if (strcasecmp(name, "To") == 0)
            slot = &m->to;
        else if (strcasecmp(name, "Message-ID") == 0)
            slot = &m->message_id;
        if (slot == NULL || *slot != NULL)
            continue; /* the first occurrence wins */
        *slot = slot == &m->message_id ? strip_angles(value) : gmail_decode_words(value);
    }
    json_decref(root);
    return 0;
}

void gmail_msg_clear(gmail_msg *m)
{
    free(m->id);
    free(m->thread_id);
    free(m->message_id);
    free(m->subject);
    free(m->from);
    free(m->to);
    for (size_t i = 0; i < m->n_labels; i++)
        free(m->label_ids[i]);
    free(m->label_ids);
    free(m->raw);
    memset(m, 0, sizeof *m);
}

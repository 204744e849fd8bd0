/* Gmail's batch wire format (see gmail_multipart.h). */
#include "gmail_multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *gmail_multipart_build(const char *boundary, const char *const *targets, size_t n,
                            size_t *len_r)
{
    size_t cap = 64 + strlen(boundary);
    for (size_t i = 0; i < n; i++)
        cap += strlen(targets[i]) + strlen(boundary) + 128;
    char *out = malloc(cap);
    if (out == NULL)
        abort();
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len,
                                "--%s\r\n"
                                "Content-Type: application/http\r\n"
                                "Content-ID: <item-%zu>\r\n"
                                "\r\n"
                                "GET %s\r\n"
                                "\r\n",
                                boundary, i, targets[i]);
    len += (size_t)snprintf(out + len, cap - len, "--%s--\r\n", boundary);
    *len_r = len;
    return out;
}

static int fail(char **error_r, const char *what)
{
    if (error_r != NULL) {
        *error_r = strdup(what);
        if (*error_r == NULL)
            abort();
    }
    return -1;
}

/* memmem over a bounded range. */
static const char *find(const char *p, const char *end, const char *needle, size_t nlen)
{
    if (nlen == 0 || (size_t)(end - p) < nlen)
        return NULL;
    for (const char *q = p; q + nlen <= end; q++)
        if (*q == needle[0] && memcmp(q, needle, nlen) == 0)
            return q;
    return NULL;
}

/* End of the header block starting at p: the first empty line. Sets *body_r
 * to the byte after it. NULL when there is none. */
static const char *head_end(const char *p, const char *end, const char **body_r)
{
    /* No headers at all: the block starts with the empty line. */
    if (end - p >= 2 && memcmp(p, "\r\n", 2) == 0) {
        *body_r = p + 2;
        return p;
    }
    if (end - p >= 1 && p[0] == '\n') {
        *body_r = p + 1;
        return p;
    }
    for (const char *q = p; q < end; q++) {
        if (q + 1 < end && q[0] == '\n' && q[1] == '\n') {
            *body_r = q + 2;
            return q + 1;
        }
        if (q + 3 < end && memcmp(q, "\r\n\r\n", 4) == 0) {
            *body_r = q + 4;
            return q + 2;
        }
    }
    return NULL;
}

int gmail_header_value(const char *block, size_t len, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    int found = -1;
    const char *p = block, *end = block + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol != NULL ? eol : end;
        if ((size_t)(le - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            const char *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && isspace((unsigned char)ve[-1]))
                ve--;
            size_t vl = (size_t)(ve - v);
            if (cap > 0) {
                if (vl >= cap)
                    vl = cap - 1;
                memcpy(out, v, vl);
                out[vl] = '\0';
            }
            found = 0;
        }
        p = le + (eol != NULL ? 1 : 0);
    }
    return found;
}

/* The boundary parameter of a multipart Content-Type, unquoted. */
static int boundary_of(const char *ctype, char *out, size_t cap)
{
    if (strncasecmp(ctype, "multipart/", 10) != 0)
        return -1;
    const char *b = strcasestr(ctype, "boundary=");
    if (b == NULL)
        return -1;
    b += 9;
    int quoted = *b == '"';
    if (quoted)
        b++;
    size_t n = 0;
    while (b[n] != '\0' && (quoted ? b[n] != '"' : (b[n] != ';' && !isspace((unsigned char)b[n]))))
        n++;
    if (n == 0 || n >= cap)
        return -1;
    memcpy(out, b, n);
    out[n] = '\0';
    return 0;
}

/* "<response-item-7>" -> 7; -1 for anything else. */
static long item_index(const char *cid)
{
    const char *p = strstr(cid, "item-");
    if (p == NULL)
        return -1;
    p += 5;
    char *end = NULL;
    if (!isdigit((unsigned char)*p))
        return -1;
    long v = strtol(p, &end, 10);
    if (end == p || (*end != '>' && *end != '\0'))
        return -1;
    return v;
}

static void parse_part(const char *p, const char *end, gmail_part *parts, size_t n)
{
    const char *inner = NULL;
    const char *he = head_end(p, end, &inner);
    if (he == NULL)
        return;
    char cid[128];
    if (gmail_header_value(p, (size_t)(he - p), "Content-ID", cid, sizeof cid) < 0)
        return;
    long idx = item_index(cid);
    if (idx < 0 || (size_t)idx >= n)
        return;
    /* The inner response: status line, headers, empty line, body. */
    const char *sl_end = memchr(inner, '\n', (size_t)(end - inner));
    if (sl_end == NULL || (size_t)(end - inner) < 12 || strncmp(inner, "HTTP/", 5) != 0)
        return;
    const char *sp = memchr(inner, ' ', (size_t)(sl_end - inner));
    if (sp == NULL)
        return;
    /* Three digits inside the status line: the buffer is not a C string,
     * so no strtol on it. */
    long status = 0;
    for (const char *d = sp + 1; d < sl_end && d < sp + 4 && *d >= '0' && *d <= '9'; d++)
        status = status * 10 + (*d - '0');
    const char *hstart = sl_end + 1, *body = NULL;
    const char *ihe = head_end(hstart, end, &body);
    if (ihe == NULL) {
        ihe = end;
        body = end;
    }
    size_t blen = (size_t)(end - body);
    char val[64];
    if (gmail_header_value(hstart, (size_t)(ihe - hstart), "Content-Length", val,
                           sizeof val) == 0) {
        char *e = NULL;
        unsigned long long cl = strtoull(val, &e, 10);
        if (e != val && cl < blen)
            blen = (size_t)cl;
    } else {
        /* Without a length the part's trailing line break is the delimiter's. */
        if (blen >= 2 && memcmp(body + blen - 2, "\r\n", 2) == 0)
            blen -= 2;
        else if (blen >= 1 && body[blen - 1] == '\n')
            blen -= 1;
    }
    gmail_part *out = &parts[idx];
    out->present = 1;
    out->status = status;
    out->body = body;
    out->body_len = blen;
    out->retry_after_ms = 0;
    if (gmail_header_value(hstart, (size_t)(ihe - hstart), "Retry-After", val, sizeof val) ==
        0) {
        char *e = NULL;
        unsigned long s = strtoul(val, &e, 10);
        if (e != val && *e == '\0' && s < 86400)
            out->retry_after_ms = (uint32_t)s * 1000u;
    }
}

int gmail_multipart_parse(const char *content_type, const char *body, size_t len,
                          gmail_part *parts, size_t n, char **error_r)
{
    memset(parts, 0, n * sizeof *parts);
    char boundary[128];
    if (content_type == NULL || boundary_of(content_type, boundary, sizeof boundary) < 0)
        return fail(error_r, "batch answer is not multipart/mixed with a boundary");
    char delim[140];
    int dl = snprintf(delim, sizeof delim, "--%s", boundary);
    const char *end = body + len;
    const char *p = find(body, end, delim, (size_t)dl);
    if (p == NULL)
        return fail(error_r, "batch answer has no part");
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            break; /* the closing delimiter */
        /* Rest of the delimiter line. */
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            break;
        const char *start = eol + 1;
        const char *next = find(start, end, delim, (size_t)dl);
        const char *stop = next != NULL ? next : end;
        /* The line break before a delimiter belongs to the delimiter. */
        if (next != NULL && stop > start && stop[-1] == '\n') {
            stop--;
            if (stop > start && stop[-1] == '\r')
                stop--;
        }
        parse_part(start, stop, parts, n);
        if (next == NULL)
            break;
        p = next;
    }
    return 0;
}

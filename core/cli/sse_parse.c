/*
 * Incremental text/event-stream parser following the WHATWG "event stream
 * interpretation" rules. Bytes arrive in arbitrary chunks (libcurl write
 * callbacks), so a line, a CRLF pair or a UTF-8 sequence may be split
 * anywhere; only complete lines are interpreted.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/util.h"

/* A daemon event is a few hundred bytes; anything this large is a broken
 * or hostile stream, not something worth buffering. */
#define SSE_MAX_BYTES (4u * 1024 * 1024)

struct buf {
    char *data;
    size_t len, cap;
};

struct mpctl_sse {
    mpctl_sse_cb *cb;
    void *ctx;
    struct buf line;
    struct buf data;
    struct buf type;
    char *last_id;
    int have_data;
    int after_cr;   /* previous chunk ended in CR: a leading LF is its pair */
    int first_line; /* the stream's first line may start with a BOM */
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > SSE_MAX_BYTES)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (b->len + n + 1 > cap)
            cap *= 2;
        b->data = mpu_realloc(b->data, cap);
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static void buf_clear(struct buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

mpctl_sse *mpctl_sse_new(mpctl_sse_cb *cb, void *ctx)
{
    mpctl_sse *p = mpu_calloc(1, sizeof(*p));
    p->cb = cb;
    p->ctx = ctx;
    p->last_id = mpu_strdup("");
    p->first_line = 1;
    return p;
}

void mpctl_sse_reset(mpctl_sse *p)
{
    buf_clear(&p->line);
    buf_clear(&p->data);
    buf_clear(&p->type);
    p->have_data = 0;
    p->after_cr = 0;
    p->first_line = 1;
}

const char *mpctl_sse_last_id(const mpctl_sse *p)
{
    return p->last_id;
}

void mpctl_sse_free(mpctl_sse **pp)
{
    mpctl_sse *p = *pp;
    if (p == NULL)
        return;
    free(p->line.data);
    free(p->data.data);
    free(p->type.data);
    free(p->last_id);
    free(p);
    *pp = NULL;
}

static int dispatch(mpctl_sse *p)
{
    if (!p->have_data) {
        buf_clear(&p->type);
        return 0;
    }
    /* Every data line appended a "\n"; the last one is not part of the
     * payload. */
    size_t len = p->data.len;
    if (len > 0 && p->data.data[len - 1] == '\n')
        len--;
    p->data.data[len] = '\0';
    mpctl_sse_event ev = {
        .id = p->last_id,
        /* A value that is empty as a C string (NUL bytes from a broken
         * stream) is no type either. */
        .type = p->type.len > 0 && p->type.data[0] != '\0' ? p->type.data : "message",
        .data = p->data.data,
        .data_len = len,
    };
    int stop = p->cb(&ev, p->ctx);
    buf_clear(&p->data);
    buf_clear(&p->type);
    p->have_data = 0;
    return stop ? -1 : 0;
}

static int field_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int process_line(mpctl_sse *p, const char *line, size_t len)
{
    if (p->first_line) {
        p->first_line = 0;
        if (len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
            line += 3;
            len -= 3;
        }
    }
    if (len == 0)
        return dispatch(p);
    if (line[0] == ':')
        return 0;
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon != NULL ? (size_t)(colon - line) : len;
    const char *value = colon != NULL ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (field_is(line, name_len, "data")) {
        p->have_data = 1;
        if (buf_add(&p->data, value, value_len) < 0 || buf_add(&p->data, "\n", 1) < 0)
            return -1;
    } else if (field_is(line, name_len, "event")) {
        buf_clear(&p->type);
        if (buf_add(&p->type, value, value_len) < 0)
            return -1;
    } else if (field_is(line, name_len, "id")) {
        if (memchr(value, '\0', value_len) == NULL) {
            free(p->last_id);
            p->last_id = mpu_strndup(value, value_len);
        }
    }
    /* "retry" and unknown fields are ignored: reconnect timing is ours. */
    return 0;
}

int mpctl_sse_feed(mpctl_sse *p, const char *buf, size_t len)
{
    size_t i = 0;
    if (p->after_cr && len > 0) {
        p->after_cr = 0;
        if (buf[0] == '\n')
            i = 1;
    }
    while (i < len) {
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r')
            j++;
        if (j == len) {
            if (buf_add(&p->line, buf + i, len - i) < 0)
                goto fail;
            break;
        }
        int rc;
        if (p->line.len > 0) {
            if (buf_add(&p->line, buf + i, j - i) < 0)
                goto fail;
            rc = process_line(p, p->line.data, p->line.len);
            buf_clear(&p->line);
        } else {
            rc = process_line(p, buf + i, j - i);
        }
        if (rc < 0)
            goto fail;
        if (buf[j] == '\r') {
            if (j + 1 == len)
                p->after_cr = 1;
            else if (buf[j + 1] == '\n')
                j++;
        }
        i = j + 1;
    }
    return 0;
fail:
    mpctl_sse_reset(p);
    return -1;
}

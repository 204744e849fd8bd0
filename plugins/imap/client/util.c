/* Allocation, error strings, buffers and base64 for the IMAP client. The
 * driver does not link the core, so these small helpers live here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "imapc.h"

static void *oom(void)
{
    fputs("imap: out of memory\n", stderr);
    abort();
}

void *imapc_malloc(size_t size)
{
    void *p = malloc(size == 0 ? 1 : size);
    return p != NULL ? p : oom();
}

void *imapc_calloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    return p != NULL ? p : oom();
}

void *imapc_realloc(void *p, size_t size)
{
    void *q = realloc(p, size == 0 ? 1 : size);
    return q != NULL ? q : oom();
}

char *imapc_strdup(const char *s)
{
    return s == NULL ? NULL : imapc_strndup(s, strlen(s));
}

char *imapc_strndup(const char *s, size_t n)
{
    char *p = imapc_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *imapc_vasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return oom();
    return s;
}

char *imapc_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = imapc_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

int imapc_fail(char **error_r, const char *fmt, ...)
{
    if (error_r != NULL) {
        va_list ap;
        va_start(ap, fmt);
        free(*error_r);
        *error_r = imapc_vasprintf(fmt, ap);
        va_end(ap);
    }
    return -1;
}

void imapc_buf_append(imapc_buf *b, const void *data, size_t len)
{
    if (len == 0)
        return;
    if (b->cap - b->len < len + 1) {
        /* Sized to need: a capability list or a command is a few hundred
         * bytes and some are kept for the connection's life. */
        size_t cap = b->cap < 64 ? 64 : b->cap;
        while (cap - b->len < len + 1)
            cap *= 2;
        b->data = imapc_realloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void imapc_buf_consume(imapc_buf *b, size_t n)
{
    if (n >= b->len) {
        /* Empty: give the storage back. Tens of thousands of idle
         * connections would otherwise each keep the largest buffer
         * their busiest moment needed. */
        imapc_buf_free(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void imapc_buf_free(imapc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *imapc_b64_encode(const void *data, size_t len)
{
    char *out = imapc_malloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    out[n < 0 ? 0 : n] = '\0';
    return out;
}

unsigned char *imapc_b64_decode(const char *s, size_t len, size_t *len_r)
{
    if (len > (size_t)1 << 28)
        return NULL;
    /* EVP_DecodeBlock wants whole quanta; restore stripped padding. */
    size_t pad = 0;
    while (len > 0 && s[len - 1] == '=') {
        len--;
        pad++;
    }
    if (pad > 2 || len % 4 == 1)
        return NULL;
    size_t full = (len + 3) / 4 * 4;
    pad = full - len;
    char *tmp = imapc_malloc(full + 1);
    memcpy(tmp, s, len);
    memset(tmp + len, '=', pad);
    unsigned char *out = imapc_malloc(full / 4 * 3 + 1);
    int n = full == 0 ? 0 : EVP_DecodeBlock(out, (unsigned char *)tmp, (int)full);
    free(tmp);
    if (n < 0 || (size_t)n < pad) {
        free(out);
        return NULL;
    }
    n -= (int)pad;
    out[n] = '\0';
    *len_r = (size_t)n;
    return out;
}

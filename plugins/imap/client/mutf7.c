/* Modified UTF-7 mailbox names (RFC 3501 5.1.3): UTF-16BE in base64 with
 * ',' for '/', through OpenSSL's base64. */
#include <stdlib.h>
#include <string.h>

#include "imapc.h"

/* One code point from UTF-8; -1 on invalid (overlong, surrogate, > 10FFFF). */
static int32_t utf8_next(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t cp;
    int n;
    if (s[0] < 0x80) {
        *p = s + 1;
        return s[0];
    } else if ((s[0] & 0xe0) == 0xc0) {
        cp = s[0] & 0x1f;
        n = 1;
    } else if ((s[0] & 0xf0) == 0xe0) {
        cp = s[0] & 0x0f;
        n = 2;
    } else if ((s[0] & 0xf8) == 0xf0) {
        cp = s[0] & 0x07;
        n = 3;
    } else {
        return -1;
    }
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *p = s + n + 1;
    return (int32_t)cp;
}

static void utf8_put(imapc_buf *b, uint32_t cp)
{
    unsigned char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        o[0] = (unsigned char)(0xf0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    imapc_buf_append(b, o, n);
}

static void flush_run(imapc_buf *out, imapc_buf *u16)
{
    if (u16->len == 0)
        return;
    char *b64 = imapc_b64_encode(u16->data, u16->len);
    size_t n = strlen(b64);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++)
        if (b64[i] == '/')
            b64[i] = ',';
    imapc_buf_append(out, "&", 1);
    imapc_buf_append(out, b64, n);
    imapc_buf_append(out, "-", 1);
    free(b64);
    u16->len = 0;
}

char *imap_mutf7_encode(const char *utf8)
{
    if (utf8 == NULL)
        return NULL;
    imapc_buf out = {0}, u16 = {0};
    const unsigned char *p = (const unsigned char *)utf8;
    while (*p != '\0') {
        if (*p >= 0x20 && *p <= 0x7e) {
            flush_run(&out, &u16);
            if (*p == '&')
                imapc_buf_append(&out, "&-", 2);
            else
                imapc_buf_append(&out, p, 1);
            p++;
            continue;
        }
        int32_t cp = utf8_next(&p);
        if (cp < 0) {
            imapc_buf_free(&out);
            imapc_buf_free(&u16);
            return NULL;
        }
        unsigned char be[4];
        if (cp >= 0x10000) {
            uint32_t v = (uint32_t)cp - 0x10000;
            uint32_t hi = 0xd800 | (v >> 10), lo = 0xdc00 | (v & 0x3ff);
            be[0] = (unsigned char)(hi >> 8);
            be[1] = (unsigned char)hi;
            be[2] = (unsigned char)(lo >> 8);
            be[3] = (unsigned char)lo;
            imapc_buf_append(&u16, be, 4);
        } else {
            be[0] = (unsigned char)((uint32_t)cp >> 8);
            be[1] = (unsigned char)cp;
            imapc_buf_append(&u16, be, 2);
        }
    }
    flush_run(&out, &u16);
    imapc_buf_free(&u16);
    return out.data != NULL ? out.data : imapc_strdup("");
}

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == ',')
        return 63;
    return -1;
}

/*
 * One base64 run, strictly: a name has exactly one encoding, so two
 * different server names can never decode to the same folder. Refused:
 * characters outside the alphabet, bits left over that are not zero or
 * make a partial UTF-16 unit, unpaired surrogates, printable ASCII (which
 * must stand for itself), and NUL or control characters (C0, DEL, C1),
 * which would cut or disguise a name. *why_r says which.
 */
static int decode_run(imapc_buf *out, const char *s, size_t n, const char **why_r)
{
    *why_r = "a bad base64 run";
    for (size_t i = 0; i < n; i++)
        if (b64_value(s[i]) < 0)
            return -1;
    size_t bits = n * 6;
    size_t len = bits / 8;
    unsigned leftover = (unsigned)(bits % 8);
    if (len == 0 || len % 2 != 0 || leftover >= 6 ||
        ((unsigned)b64_value(s[n - 1]) & ((1u << leftover) - 1)) != 0)
        return -1;
    char *tmp = imapc_strndup(s, n);
    for (size_t i = 0; i < n; i++)
        if (tmp[i] == ',')
            tmp[i] = '/';
    size_t got;
    unsigned char *u = imapc_b64_decode(tmp, n, &got);
    free(tmp);
    if (u == NULL || got != len) {
        free(u);
        return -1;
    }
    int ret = -1;
    for (size_t i = 0; i < len; i += 2) {
        uint32_t w = (uint32_t)u[i] << 8 | u[i + 1];
        if (w >= 0xd800 && w <= 0xdbff) {
            uint32_t lo = i + 3 < len ? (uint32_t)u[i + 2] << 8 | u[i + 3] : 0;
            if (lo < 0xdc00 || lo > 0xdfff) {
                *why_r = "an unpaired surrogate";
                goto out;
            }
            w = 0x10000 + ((w - 0xd800) << 10) + (lo - 0xdc00);
            i += 2;
        } else if (w >= 0xdc00 && w <= 0xdfff) {
            *why_r = "an unpaired surrogate";
            goto out;
        } else if (w == 0) {
            *why_r = "a NUL character";
            goto out;
        } else if (w < 0x20 || (w >= 0x7f && w <= 0x9f)) {
            *why_r = "a control character";
            goto out;
        } else if (w < 0x7f) {
            *why_r = "an ASCII character in base64";
            goto out;
        }
        utf8_put(out, w);
    }
    ret = 0;
out:
    free(u);
    return ret;
}

char *imap_mutf7_decode(const char *mutf7)
{
    return imap_mutf7_decode_why(mutf7, NULL);
}

char *imap_mutf7_decode_why(const char *mutf7, const char **why_r)
{
    const char *why = "no name";
    if (mutf7 == NULL)
        goto fail_nobuf;
    imapc_buf out = {0};
    const char *p = mutf7;
    int after_run = 0;
    while (*p != '\0') {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch > 0x7e) {
            why = ch < 0x20 || ch == 0x7f ? "a control character" : "a raw 8-bit byte";
            goto fail;
        }
        if (ch != '&') {
            imapc_buf_append(&out, p, 1);
            p++;
            after_run = 0;
            continue;
        }
        const char *e = strchr(p + 1, '-');
        if (e == NULL) {
            why = "an unterminated base64 run";
            goto fail;
        }
        if (e == p + 1) {
            imapc_buf_append(&out, "&", 1);
            after_run = 0;
        } else {
            /* Two runs in a row spell what one run would: refused. */
            if (after_run) {
                why = "two adjacent base64 runs";
                goto fail;
            }
            if (decode_run(&out, p + 1, (size_t)(e - p - 1), &why) < 0)
                goto fail;
            after_run = 1;
        }
        p = e + 1;
    }
    if (why_r != NULL)
        *why_r = NULL;
    return out.data != NULL ? out.data : imapc_strdup("");
fail:
    imapc_buf_free(&out);
fail_nobuf:
    if (why_r != NULL)
        *why_r = why;
    return NULL;
}

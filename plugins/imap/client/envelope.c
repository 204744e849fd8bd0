/* ENVELOPE decoding with RFC 2047 encoded-words turned into UTF-8. */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapc.h"

/* Windows-1252 0x80..0x9F; 0 where undefined. */
static const uint16_t cp1252[32] = {
    0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017d, 0,      0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178};

static void put_cp(imapc_buf *b, uint32_t cp)
{
    unsigned char o[3];
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        imapc_buf_append(b, o, 1);
    } else if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        imapc_buf_append(b, o, 2);
    } else {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        imapc_buf_append(b, o, 3);
    }
}

static int convert_iconv(imapc_buf *out, const char *charset, const char *in, size_t len)
{
    iconv_t cd = iconv_open("UTF-8", charset);
    if (cd == (iconv_t)-1)
        return -1;
    char buf[1024];
    char *ip = (char *)in;
    size_t il = len;
    int ret = 0;
    imapc_buf tmp = {0};
    while (il > 0) {
        char *op = buf;
        size_t ol = sizeof buf;
        size_t r = iconv(cd, &ip, &il, &op, &ol);
        imapc_buf_append(&tmp, buf, (size_t)(op - buf));
        if (r == (size_t)-1 && errno != E2BIG) {
            ret = -1;
            break;
        }
    }
    iconv_close(cd);
    if (ret == 0)
        imapc_buf_append(out, tmp.data, tmp.len);
    imapc_buf_free(&tmp);
    return ret;
}

/* Bytes in `charset` appended to out as UTF-8; -1 if unsupported. */
static int to_utf8(imapc_buf *out, const char *charset, const unsigned char *in, size_t len)
{
    if (strcasecmp(charset, "UTF-8") == 0 || strcasecmp(charset, "US-ASCII") == 0 ||
        strcasecmp(charset, "UTF8") == 0) {
        imapc_buf_append(out, in, len);
        return 0;
    }
    int latin1 = strcasecmp(charset, "ISO-8859-1") == 0 || strcasecmp(charset, "LATIN1") == 0;
    int win = strcasecmp(charset, "WINDOWS-1252") == 0 || strcasecmp(charset, "CP1252") == 0;
    if (latin1 || win) {
        for (size_t i = 0; i < len; i++) {
            uint32_t cp = in[i];
            if (win && cp >= 0x80 && cp < 0xa0 && cp1252[cp - 0x80] != 0)
                cp = cp1252[cp - 0x80];
            put_cp(out, cp);
        }
        return 0;
    }
    return convert_iconv(out, charset, (const char *)in, len);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one encoded-word "=?cs?E?text?=" at p; *end_r after it. */
static int decode_word(imapc_buf *out, const char *p, const char **end_r)
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
        bytes = imapc_b64_decode(text, (size_t)(e - text), &n);
        if (bytes == NULL)
            return -1;
    } else {
        bytes = imapc_malloc((size_t)(e - text) + 1);
        for (const char *t = text; t < e; t++) {
            if (*t == '_') {
                bytes[n++] = ' ';
            } else if (*t == '=' && t + 2 < e + 1 && hexval(t[1]) >= 0 && hexval(t[2]) >= 0) {
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

const char *imapc_decode_words(imap_arena *a, const char *s)
{
    if (s == NULL)
        return NULL;
    if (strstr(s, "=?") == NULL)
        return imapc_arena_strndup(a, s, strlen(s));
    imapc_buf out = {0};
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
            /* White space between two encoded-words is dropped. */
            const char *q = p;
            while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
                q++;
            if (q[0] == '=' && q[1] == '?') {
                const char *end;
                imapc_buf probe = {0};
                int ok = decode_word(&probe, q, &end) == 0;
                imapc_buf_free(&probe);
                if (ok) {
                    p = q;
                    continue;
                }
            }
        }
        prev_word = 0;
        imapc_buf_append(&out, p, 1);
        p++;
    }
    const char *r = imapc_arena_strndup(a, out.data != NULL ? out.data : "", out.len);
    imapc_buf_free(&out);
    return r;
}

static const char *tok_str(const imap_token *t)
{
    return t != NULL && t->type == IMAP_T_STRING ? t->str : NULL;
}

void imapc_address_append(imapc_buf *out, imap_arena *a, const char *name, const char *mbox,
                          const char *host)
{
    if (out->len > 0)
        imapc_buf_append(out, ", ", 2);
    const char *dname = name != NULL && name[0] != '\0' ? imapc_decode_words(a, name) : NULL;
    if (dname != NULL) {
        imapc_buf_append(out, dname, strlen(dname));
        imapc_buf_append(out, " <", 2);
    }
    imapc_buf_append(out, mbox, strlen(mbox));
    if (host[0] != '\0') {
        imapc_buf_append(out, "@", 1);
        imapc_buf_append(out, host, strlen(host));
    }
    if (dname != NULL)
        imapc_buf_append(out, ">", 1);
}

const char *imapc_buf_to_arena(imapc_buf *b, imap_arena *a)
{
    if (b->data == NULL)
        return NULL;
    const char *r = imapc_arena_strndup(a, b->data, b->len);
    imapc_buf_free(b);
    return r;
}

/* Address list ((name adl mailbox host) ...) as "Name <m@h>, m@h". */
static const char *format_addresses(imap_arena *a, const imap_token *t)
{
    if (t == NULL || t->type != IMAP_T_LIST)
        return NULL;
    imapc_buf out = {0};
    for (size_t i = 0; i < t->n_items; i++) {
        const imap_token *ad = &t->items[i];
        if (ad->type != IMAP_T_LIST || ad->n_items < 4)
            continue;
        const char *mbox = tok_str(&ad->items[2]);
        const char *host = tok_str(&ad->items[3]);
        if (mbox == NULL || host == NULL)
            continue; /* group start/end markers (RFC 3501 7.4.2) */
        imapc_address_append(&out, a, tok_str(&ad->items[0]), mbox, host);
    }
    return imapc_buf_to_arena(&out, a);
}

const char *imapc_strip_msgid(imap_arena *a, const char *s)
{
    if (s == NULL)
        return NULL;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    const char *lt = strchr(s, '<');
    if (lt != NULL) {
        const char *gt = strchr(lt, '>');
        if (gt != NULL)
            return imapc_arena_strndup(a, lt + 1, (size_t)(gt - lt - 1));
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    return n > 0 ? imapc_arena_strndup(a, s, n) : NULL;
}

int imap_envelope_parse(const imap_token *env, imap_arena *arena, imap_envelope *env_r)
{
    memset(env_r, 0, sizeof *env_r);
    if (env == NULL || env->type != IMAP_T_LIST || env->n_items < 10)
        return -1;
    const imap_token *it = env->items;
    const char *date = tok_str(&it[0]);
    env_r->date = date != NULL ? imapc_arena_strndup(arena, date, strlen(date)) : NULL;
    env_r->subject = imapc_decode_words(arena, tok_str(&it[1]));
    env_r->from = format_addresses(arena, &it[2]);
    env_r->to = format_addresses(arena, &it[5]);
    env_r->in_reply_to = imapc_strip_msgid(arena, tok_str(&it[8]));
    env_r->message_id = imapc_strip_msgid(arena, tok_str(&it[9]));
    return 0;
}

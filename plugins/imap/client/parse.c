/*
 * IMAP response parser (RFC 3501/9051 response grammar, as much as a
 * client needs). Lists are parsed with an explicit stack of bounded depth,
 * so hostile nesting cannot exhaust the C stack; every read is checked
 * against the end of the buffer, and literal sizes against the bytes that
 * are really there. A parsed item costs about ten times its text (a
 * 56-byte token plus its string, and the vector it was collected in), so
 * the memory a parse takes is counted and bounded: an 8 MB capability
 * line of a million atoms would otherwise take 600 MB.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imapc.h"

typedef struct tok_vec {
    imap_token *v;
    size_t n;
    size_t cap;
} tok_vec;

typedef struct parser {
    const char *p;
    const char *end;
    imap_arena *a;
    char **error_r;
    size_t limit;     /* bytes the arena and token vectors may hold        */
    size_t vec_bytes; /* bytes of the token vectors now                     */
    int over;         /* the limit was hit (not a syntax error)            */
} parser;

static int perr(parser *ps, const char *what)
{
    return imapc_fail(ps->error_r, "malformed IMAP response: %s", what);
}

/* -1 (and ps->over) once the parse holds more than its limit, counting
 * `more` bytes about to be allocated. */
static int charge(parser *ps, size_t more)
{
    size_t used = imapc_arena_size(ps->a) + ps->vec_bytes;
    if (used <= ps->limit && more <= ps->limit - used)
        return 0;
    ps->over = 1;
    return imapc_fail(ps->error_r, "parsed response would exceed %zu MiB",
                      ps->limit >> 20);
}

/* Length of the line ending at p ("\r\n" or a bare "\n"), 0 if none. */
static size_t eol_len(const char *p, const char *end)
{
    if (p < end && *p == '\n')
        return 1;
    if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
        return 2;
    return 0;
}

static int is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static imap_token *vec_push(parser *ps, tok_vec *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap == 0 ? 8 : v->cap * 2;
        if (charge(ps, (cap - v->cap) * sizeof(imap_token)) < 0)
            return NULL;
        ps->vec_bytes += (cap - v->cap) * sizeof(imap_token);
        v->cap = cap;
        v->v = imapc_realloc(v->v, v->cap * sizeof(imap_token));
    }
    imap_token *t = &v->v[v->n++];
    memset(t, 0, sizeof *t);
    return t;
}

static int parse_quoted(parser *ps, imap_token *t)
{
    const char *p = ps->p + 1;
    size_t out = 0;
    const char *q = p;
    for (;;) {
        if (q >= ps->end)
            return perr(ps, "unterminated quoted string");
        unsigned char c = (unsigned char)*q;
        if (c == '"')
            break;
        if (c == '\r' || c == '\n' || c == '\0')
            return perr(ps, "bad character in quoted string");
        if (c == '\\') {
            q++;
            if (q >= ps->end)
                return perr(ps, "unterminated quoted string");
            c = (unsigned char)*q;
            if (c == '\r' || c == '\n' || c == '\0')
                return perr(ps, "bad escape in quoted string");
        }
        out++;
        q++;
    }
    if (charge(ps, out + 1) < 0)
        return -1;
    char *s = imapc_arena_alloc(ps->a, out + 1);
    size_t i = 0;
    for (const char *r = p; r < q; r++) {
        if (*r == '\\')
            r++;
        s[i++] = *r;
    }
    s[i] = '\0';
    t->type = IMAP_T_STRING;
    t->str = s;
    t->len = out;
    ps->p = q + 1;
    return 0;
}

static int parse_literal(parser *ps, imap_token *t)
{
    const char *p = ps->p;
    if (*p == '~')
        p++;
    p++; /* '{' */
    uint64_t n = 0;
    const char *digits = p;
    while (p < ps->end && *p >= '0' && *p <= '9') {
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > IMAPC_MAX_LITERAL)
            return perr(ps, "literal too large");
        p++;
    }
    if (p == digits)
        return perr(ps, "bad literal size");
    if (p < ps->end && *p == '+')
        p++;
    if (p >= ps->end || *p != '}')
        return perr(ps, "bad literal size");
    p++;
    size_t el = eol_len(p, ps->end);
    if (el == 0)
        return perr(ps, "literal not at end of line");
    p += el;
    if ((uint64_t)(ps->end - p) < n)
        return perr(ps, "literal longer than the data");
    if (charge(ps, (size_t)n + 1) < 0)
        return -1;
    t->type = IMAP_T_STRING;
    t->str = imapc_arena_strndup(ps->a, p, (size_t)n);
    t->len = (size_t)n;
    ps->p = p + n;
    return 0;
}

/* BODY[...]<...>: brackets may hold a parenthesised field list and quoted
 * names; no nesting of brackets. */
static int scan_section(parser *ps, const char *start, const char *bracket, imap_token *t)
{
    const char *q = bracket + 1;
    int parens = 0;
    for (;;) {
        if (q >= ps->end)
            return perr(ps, "unterminated section");
        char c = *q;
        if (c == '\r' || c == '\n' || c == '\0' || c == '[' || c == '{')
            return perr(ps, "bad character in section");
        if (c == '"') {
            q++;
            while (q < ps->end && *q != '"') {
                if (*q == '\r' || *q == '\n' || *q == '\0')
                    return perr(ps, "bad quoted string in section");
                if (*q == '\\')
                    q++;
                q++;
            }
            if (q >= ps->end)
                return perr(ps, "unterminated section");
        } else if (c == '(') {
            if (++parens > IMAPC_MAX_DEPTH)
                return perr(ps, "section too deep");
        } else if (c == ')') {
            if (--parens < 0)
                return perr(ps, "unbalanced section");
        } else if (c == ']' && parens == 0) {
            break;
        }
        q++;
    }
    q++;
    if (q < ps->end && *q == '<') {
        q++;
        const char *d = q;
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
        if (q == d || q >= ps->end || *q != '>')
            return perr(ps, "bad section origin");
        q++;
    }
    if (charge(ps, (size_t)(q - start) + 1) < 0)
        return -1;
    t->type = IMAP_T_SECTION;
    t->str = imapc_arena_strndup(ps->a, start, (size_t)(q - start));
    t->len = (size_t)(q - start);
    ps->p = q;
    return 0;
}

static int parse_atom(parser *ps, int code_mode, imap_token *t)
{
    const char *start = ps->p;
    const char *q = start;
    while (q < ps->end) {
        unsigned char c = (unsigned char)*q;
        if (c == ' ' || is_ctl(c) || c == '(' || c == ')' || c == '"' || c == '{')
            break;
        if (c == ']' && code_mode)
            break;
        if (c == '[' && !code_mode)
            return scan_section(ps, start, q, t);
        q++;
    }
    if (q == start)
        return perr(ps, "unexpected character");
    size_t n = (size_t)(q - start);
    if (n == 3 && strncasecmp(start, "NIL", 3) == 0) {
        t->type = IMAP_T_NIL;
        t->str = "NIL";
        t->len = 3;
    } else {
        if (charge(ps, n + 1) < 0)
            return -1;
        t->type = IMAP_T_ATOM;
        t->str = imapc_arena_strndup(ps->a, start, n);
        t->len = n;
    }
    ps->p = q;
    return 0;
}

/* Tokens up to the end of the line (or, in code mode, the closing ']'),
 * lists nested up to IMAPC_MAX_DEPTH. */
static int parse_tokens(parser *ps, int code_mode, imap_token **items_r, size_t *n_r)
{
    tok_vec stack[IMAPC_MAX_DEPTH + 1];
    size_t depth = 0;
    int ret = -1;
    memset(stack, 0, sizeof stack);
    for (;;) {
        while (ps->p < ps->end && *ps->p == ' ')
            ps->p++;
        if (ps->p >= ps->end) {
            perr(ps, "missing end of line");
            goto out;
        }
        char c = *ps->p;
        if (eol_len(ps->p, ps->end) > 0 || (code_mode && c == ']')) {
            if (depth > 0) {
                perr(ps, "unterminated list");
                goto out;
            }
            if (code_mode && c != ']') {
                perr(ps, "unterminated response code");
                goto out;
            }
            break;
        }
        if (c == '(') {
            if (depth == IMAPC_MAX_DEPTH) {
                perr(ps, "lists nested too deeply");
                goto out;
            }
            depth++;
            stack[depth].n = 0;
            ps->p++;
            continue;
        }
        if (c == ')') {
            if (depth == 0) {
                perr(ps, "unbalanced ')'");
                goto out;
            }
            tok_vec *v = &stack[depth];
            depth--;
            imap_token *t = vec_push(ps, &stack[depth]);
            if (t == NULL || charge(ps, v->n * sizeof(imap_token)) < 0)
                goto out;
            t->type = IMAP_T_LIST;
            t->n_items = v->n;
            if (v->n > 0) {
                t->items = imapc_arena_alloc(ps->a, v->n * sizeof(imap_token));
                memcpy(t->items, v->v, v->n * sizeof(imap_token));
            }
            t->str = "";
            v->n = 0;
            ps->p++;
            continue;
        }
        imap_token *t = vec_push(ps, &stack[depth]);
        if (t == NULL)
            goto out;
        int r;
        if (c == '"')
            r = parse_quoted(ps, t);
        else if (c == '{' || (c == '~' && ps->end - ps->p >= 2 && ps->p[1] == '{'))
            r = parse_literal(ps, t);
        else
            r = parse_atom(ps, code_mode, t);
        if (r < 0)
            goto out;
    }
    *n_r = stack[0].n;
    *items_r = NULL;
    if (charge(ps, stack[0].n * sizeof(imap_token)) < 0)
        goto out;
    if (stack[0].n > 0) {
        *items_r = imapc_arena_alloc(ps->a, stack[0].n * sizeof(imap_token));
        memcpy(*items_r, stack[0].v, stack[0].n * sizeof(imap_token));
    }
    ret = 0;
out:
    for (size_t i = 0; i <= IMAPC_MAX_DEPTH; i++) {
        ps->vec_bytes -= stack[i].cap * sizeof(imap_token);
        free(stack[i].v);
    }
    return ret;
}

/* A bare word up to SP or end of line, upper-cased into the arena. */
static const char *read_word(parser *ps)
{
    const char *start = ps->p;
    while (ps->p < ps->end && *ps->p != ' ' && !is_ctl((unsigned char)*ps->p) &&
           *ps->p != '[' && *ps->p != ']' && *ps->p != '(')
        ps->p++;
    if (ps->p == start)
        return NULL;
    char *w = imapc_arena_strndup(ps->a, start, (size_t)(ps->p - start));
    for (char *q = w; *q != '\0'; q++)
        *q = (char)toupper((unsigned char)*q);
    return w;
}

/* Rest of the line as text; leaves ps->p after the line end. */
static int read_text(parser *ps, const char **text_r)
{
    const char *nl = memchr(ps->p, '\n', (size_t)(ps->end - ps->p));
    if (nl == NULL)
        return perr(ps, "missing end of line");
    const char *e = nl;
    if (e > ps->p && e[-1] == '\r')
        e--;
    if (memchr(ps->p, '\0', (size_t)(e - ps->p)) != NULL)
        return perr(ps, "NUL in text");
    *text_r = imapc_arena_strndup(ps->a, ps->p, (size_t)(e - ps->p));
    ps->p = nl + 1;
    return 0;
}

static imap_status status_of(const char *w)
{
    if (strcmp(w, "OK") == 0)
        return IMAP_OK;
    if (strcmp(w, "NO") == 0)
        return IMAP_NO;
    if (strcmp(w, "BAD") == 0)
        return IMAP_BAD;
    if (strcmp(w, "BYE") == 0)
        return IMAP_BYE;
    if (strcmp(w, "PREAUTH") == 0)
        return IMAP_PREAUTH;
    return IMAP_NONE;
}

/* resp-text: ["[" code [SP args] "]" SP] text */
static int parse_resp_text(parser *ps, imap_response *r)
{
    if (ps->p < ps->end && *ps->p == ' ')
        ps->p++;
    if (ps->p < ps->end && *ps->p == '[') {
        const char *save = ps->p;
        ps->p++;
        const char *code = read_word(ps);
        int ok = code != NULL;
        imap_token *args = NULL;
        size_t n = 0;
        if (ok && ps->p < ps->end && *ps->p == ' ') {
            char *ignored = NULL;
            char **saved_err = ps->error_r;
            ps->error_r = &ignored;
            ok = parse_tokens(ps, 1, &args, &n) == 0;
            ps->error_r = saved_err;
            if (ps->over) {
                imapc_fail(ps->error_r, "%s", ignored);
                free(ignored);
                return -1;
            }
            free(ignored);
        }
        if (ok && ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            r->code = code;
            r->code_args = args;
            r->n_code_args = n;
            if (ps->p < ps->end && *ps->p == ' ')
                ps->p++;
        } else {
            /* Unparseable code: keep the line as plain text. */
            ps->p = save;
        }
    }
    return read_text(ps, &r->text);
}

/* A failed parse: the error (unless already set, what == NULL) and the
 * over-limit flag go back to the caller's parser. */
static int pfail(parser *out, parser *ps, const char *what)
{
    if (what != NULL)
        perr(ps, what);
    out->over = ps->over;
    return -1;
}

static int parse_response(parser *pps, imap_response *resp_r)
{
    parser ps = *pps;
    const char *buf = ps.p;
    size_t len = (size_t)(ps.end - ps.p);
    imap_arena *arena = ps.a;
    imap_response *r = resp_r;
    memset(r, 0, sizeof *r);
    if (len == 0)
        return pfail(pps, &ps, "empty");
    if (buf[0] == '+') {
        r->kind = IMAP_R_CONTINUATION;
        ps.p++;
        if (ps.p < ps.end && *ps.p == ' ')
            ps.p++;
        if (read_text(&ps, &r->text) < 0)
            return pfail(pps, &ps, NULL);
    } else if (len >= 2 && buf[0] == '*' && buf[1] == ' ') {
        r->kind = IMAP_R_UNTAGGED;
        ps.p += 2;
        if (ps.p < ps.end && *ps.p >= '0' && *ps.p <= '9') {
            uint64_t n = 0;
            while (ps.p < ps.end && *ps.p >= '0' && *ps.p <= '9') {
                n = n * 10 + (uint64_t)(*ps.p - '0');
                if (n > UINT32_MAX)
                    return pfail(pps, &ps, "number too large");
                ps.p++;
            }
            if (ps.p >= ps.end || *ps.p != ' ')
                return pfail(pps, &ps, "number without keyword");
            ps.p++;
            r->has_number = 1;
            r->number = (uint32_t)n;
        }
        r->keyword = read_word(&ps);
        if (r->keyword == NULL)
            return pfail(pps, &ps, "missing keyword");
        r->status = r->has_number ? IMAP_NONE : status_of(r->keyword);
        if (r->status != IMAP_NONE) {
            if (parse_resp_text(&ps, r) < 0)
                return pfail(pps, &ps, NULL);
        } else {
            if (parse_tokens(&ps, 0, &r->args, &r->n_args) < 0)
                return pfail(pps, &ps, NULL);
            ps.p += eol_len(ps.p, ps.end);
        }
    } else {
        r->kind = IMAP_R_TAGGED;
        const char *start = ps.p;
        while (ps.p < ps.end && *ps.p != ' ' && !is_ctl((unsigned char)*ps.p) &&
               *ps.p != '(' && *ps.p != ')' && *ps.p != '{' && *ps.p != '"' && *ps.p != '+')
            ps.p++;
        if (ps.p == start || ps.p >= ps.end || *ps.p != ' ')
            return pfail(pps, &ps, "bad tag");
        r->tag = imapc_arena_strndup(arena, start, (size_t)(ps.p - start));
        ps.p++;
        r->keyword = read_word(&ps);
        if (r->keyword == NULL)
            return pfail(pps, &ps, "missing status");
        r->status = status_of(r->keyword);
        if (r->status != IMAP_OK && r->status != IMAP_NO && r->status != IMAP_BAD)
            return pfail(pps, &ps, "bad status in tagged response");
        if (parse_resp_text(&ps, r) < 0)
            return pfail(pps, &ps, NULL);
    }
    if (ps.p != ps.end)
        return pfail(pps, &ps, "trailing data after response");
    return 0;
}

int imap_parse_response(const char *buf, size_t len, imap_arena *arena, imap_response *resp_r,
                        char **error_r)
{
    int over = 0;
    return imapc_parse_limited(buf, len, arena, SIZE_MAX, &over, resp_r, error_r);
}

int imapc_parse_limited(const char *buf, size_t len, imap_arena *arena, size_t max_memory,
                        int *over_r, imap_response *resp_r, char **error_r)
{
    parser ps = {buf, buf + len, arena, error_r, max_memory, 0, 0};
    int r = parse_response(&ps, resp_r);
    *over_r = ps.over;
    return r;
}

long imap_response_length(const char *buf, size_t len, size_t max)
{
    long n = imapc_response_length(buf, len, max, max);
    return n < 0 ? -1 : n;
}

/* -2 when the text outside literals passes max_text (the budget), -1 for
 * a literal or the whole response passing max_total or IMAPC_MAX_LITERAL. */
long imapc_response_length(const char *buf, size_t len, size_t max_text, size_t max_total)
{
    size_t line_start = 0;
    size_t text = 0; /* bytes of the lines before line_start */
    for (;;) {
        const char *nl = memchr(buf + line_start, '\n', len - line_start);
        if (nl == NULL) {
            if (text + (len - line_start) > max_text)
                return -2;
            return len > max_total ? -1 : 0;
        }
        size_t end = (size_t)(nl - buf);
        text += end + 1 - line_start;
        if (text > max_text)
            return -2;
        if (end + 1 > max_total)
            return -1;
        size_t e = end;
        if (e > line_start && buf[e - 1] == '\r')
            e--;
        if (e > line_start && buf[e - 1] == '}') {
            size_t q = e - 1;
            if (q > line_start && buf[q - 1] == '+')
                q--;
            size_t d = q;
            while (d > line_start && buf[d - 1] >= '0' && buf[d - 1] <= '9' && q - d < 12)
                d--;
            if (d < q && d > line_start && buf[d - 1] == '{') {
                uint64_t n = 0;
                for (size_t i = d; i < q; i++)
                    n = n * 10 + (uint64_t)(buf[i] - '0');
                if (n > IMAPC_MAX_LITERAL || n > max_total || end + 1 + n > max_total)
                    return -1;
                size_t next = end + 1 + (size_t)n;
                if (next > len)
                    return 0;
                line_start = next;
                continue;
            }
        }
        return (long)(end + 1);
    }
}

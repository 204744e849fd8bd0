/* Commands out, tagged completions in: formatting with astring quoting
 * and literals, pipelining (completions of other tags are kept until
 * their wait), and synchronizing literals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "imapc.h"

void imapc_done_add(imap_conn *c, const char *tag, imap_status st, const char *text)
{
    /* Only completions of commands we sent are kept, each with at most
     * IMAPC_MAX_DONE_TEXT of its text: a server inventing tags cannot make
     * us hold 64 lines of 16 MiB. */
    char *end = NULL;
    unsigned long n = tag[0] == 'A' ? strtoul(tag + 1, &end, 10) : 0;
    if (n == 0 || end == NULL || *end != '\0' || n >= c->next_tag)
        return;
    if (c->done == NULL)
        c->done = imapc_calloc(IMAPC_MAX_PENDING_TAGS, sizeof *c->done);
    if (c->n_done == IMAPC_MAX_PENDING_TAGS) {
        /* Nobody waited for the oldest one for 64 commands: drop it. */
        free(c->done[0].text);
        memmove(&c->done[0], &c->done[1], (IMAPC_MAX_PENDING_TAGS - 1) * sizeof c->done[0]);
        c->n_done--;
    }
    imapc_done_tag *d = &c->done[c->n_done++];
    snprintf(d->tag, sizeof d->tag, "%s", tag);
    d->status = st;
    d->text = imapc_strndup(text, strnlen(text, IMAPC_MAX_DONE_TEXT));
}

static int done_take(imap_conn *c, const char *tag, imap_status *st_r, char **text_r)
{
    for (size_t i = 0; i < c->n_done; i++) {
        if (strcmp(c->done[i].tag, tag) != 0)
            continue;
        *st_r = c->done[i].status;
        if (text_r != NULL)
            *text_r = c->done[i].text;
        else
            free(c->done[i].text);
        memmove(&c->done[i], &c->done[i + 1], (c->n_done - i - 1) * sizeof c->done[0]);
        if (--c->n_done == 0) {
            free(c->done);
            c->done = NULL;
        }
        return 1;
    }
    return 0;
}

int imapc_wait_continuation(imap_conn *c, const char *tag, int *got_cont_r, imap_response *resp_r,
                            char **error_r)
{
    char what[64];
    snprintf(what, sizeof what, "a continuation for %s", tag);
    *got_cont_r = 0;
    for (;;) {
        char *raw;
        size_t raw_len;
        if (imapc_read_response(c, what, 1, resp_r, &raw, &raw_len, error_r) < 0)
            return -1;
        if (resp_r->kind == IMAP_R_CONTINUATION) {
            *got_cont_r = 1;
            return 0;
        }
        if (resp_r->kind == IMAP_R_UNTAGGED && resp_r->status == IMAP_BYE)
            return imapc_fail(error_r, "server closed the connection (BYE %s)", resp_r->text);
        if (resp_r->kind == IMAP_R_TAGGED && strcmp(resp_r->tag, tag) == 0) {
            char *text = imapc_resp_text(raw, raw_len);
            imapc_done_add(c, tag, resp_r->status, text);
            free(text);
            return 0;
        }
        /* Someone else's data: replay it to the next imap_wait in order.
         * What a server makes us hold this way is part of the budget. */
        if (raw_len > c->max_memory - c->held.len) {
            char detail[128];
            snprintf(detail, sizeof detail, "more than that held while waiting for %s", what);
            return imapc_fail_budget(c, detail, error_r);
        }
        imapc_buf_append(&c->held, raw, raw_len);
    }
}

static int atom_safe(const char *s, size_t n)
{
    if (n == 0 || (n == 3 && strncasecmp(s, "NIL", 3) == 0))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr("(){\"\\[]%*", ch) != NULL)
            return 0;
    }
    return 1;
}

static int quote_safe(const char *s, size_t n)
{
    if (n > IMAPC_MAX_QUOTED)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch >= 0x80)
            return 0;
    }
    return 1;
}

/* Appends an astring; may flush the line and wait for a continuation.
 * Returns 0, 1 when the server completed the command instead of asking
 * for the literal, -1 on failure. */
static int append_astring(imap_conn *c, imapc_buf *line, const char *tag, const char *s,
                          char **error_r)
{
    size_t n = strlen(s);
    if (atom_safe(s, n)) {
        imapc_buf_append(line, s, n);
        return 0;
    }
    if (quote_safe(s, n)) {
        imapc_buf_append(line, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '"' || s[i] == '\\')
                imapc_buf_append(line, "\\", 1);
            imapc_buf_append(line, &s[i], 1);
        }
        imapc_buf_append(line, "\"", 1);
        return 0;
    }
    char hdr[32];
    int nonsync = (c->caps.bits & IMAP_CAP_LITERAL_PLUS) ||
                  ((c->caps.bits & IMAP_CAP_LITERAL_MINUS) && n <= IMAPC_LITERAL_MINUS_MAX);
    int hl = snprintf(hdr, sizeof hdr, "{%zu%s}\r\n", n, nonsync ? "+" : "");
    imapc_buf_append(line, hdr, (size_t)hl);
    if (!nonsync) {
        if (imapc_write_all(c, line->data, line->len, "a command", error_r) < 0)
            return -1;
        OPENSSL_cleanse(line->data, line->len);
        line->len = 0;
        int got;
        imap_response r;
        if (imapc_wait_continuation(c, tag, &got, &r, error_r) < 0)
            return -1;
        if (!got)
            return 1;
    }
    imapc_buf_append(line, s, n);
    return 0;
}

int imapc_vsend(imap_conn *c, char *tag_r, char **error_r, const char *fmt, va_list ap)
{
    if (c->nonblocking)
        return imapc_fail(error_r, "imap_send used in non-blocking mode");
    if (c->closed || c->fd < 0)
        return imapc_fail(error_r, c->bye != NULL ? "server closed the connection (BYE)"
                                                  : "connection is closed");
    snprintf(tag_r, 16, "A%u", c->next_tag++);
    imapc_deadline_arm(c);
    imapc_buf line = {0};
    char num[32];
    int ret = 0;
    imapc_buf_append(&line, tag_r, strlen(tag_r));
    imapc_buf_append(&line, " ", 1);
    for (const char *p = fmt; *p != '\0' && ret == 0; p++) {
        if (*p != '%') {
            imapc_buf_append(&line, p, 1);
            continue;
        }
        p++;
        switch (*p) {
        case 'a': {
            const char *s = va_arg(ap, const char *);
            imapc_buf_append(&line, s, strlen(s));
            break;
        }
        case 's':
            ret = append_astring(c, &line, tag_r, va_arg(ap, const char *), error_r);
            break;
        case 'm': {
            char *enc = imap_mutf7_encode(va_arg(ap, const char *));
            if (enc == NULL) {
                ret = imapc_fail(error_r, "mailbox name is not valid UTF-8");
                break;
            }
            ret = append_astring(c, &line, tag_r, enc, error_r);
            free(enc);
            break;
        }
        case 'u':
            imapc_buf_append(&line, num,
                             (size_t)snprintf(num, sizeof num, "%u", va_arg(ap, unsigned int)));
            break;
        case 'U':
            imapc_buf_append(&line, num,
                             (size_t)snprintf(num, sizeof num, "%llu",
                                              (unsigned long long)va_arg(ap, uint64_t)));
            break;
        case '%':
            imapc_buf_append(&line, "%", 1);
            break;
        default:
            ret = imapc_fail(error_r, "bad imap_send format");
            break;
        }
        if (*p == '\0')
            break;
    }
    if (ret == 0) {
        imapc_buf_append(&line, "\r\n", 2);
        ret = imapc_write_all(c, line.data, line.len, "a command", error_r);
    } else if (ret == 1) {
        ret = 0;
    }
    if (line.data != NULL)
        OPENSSL_cleanse(line.data, line.len);
    imapc_buf_free(&line);
    return ret;
}

int imap_send(imap_conn *conn, char *tag_r, char **error_r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = imapc_vsend(conn, tag_r, error_r, fmt, ap);
    va_end(ap);
    return r;
}

int imap_wait(imap_conn *conn, const char *tag, imap_untagged_cb cb, void *arg,
              imap_status *status_r, char **text_r, char **error_r)
{
    imap_conn *c = conn;
    imap_status st;
    if (text_r != NULL)
        *text_r = NULL;
    if (done_take(c, tag, &st, text_r)) {
        if (status_r != NULL)
            *status_r = st;
        return 0;
    }
    char what[64];
    snprintf(what, sizeof what, "the response to %s", tag);
    imapc_deadline_arm(c);
    for (;;) {
        imap_response r;
        char *raw;
        size_t raw_len;
        if (imapc_read_response(c, what, 0, &r, &raw, &raw_len, error_r) < 0)
            return -1;
        if (r.kind == IMAP_R_TAGGED) {
            char *text = imapc_resp_text(raw, raw_len);
            if (strcmp(r.tag, tag) != 0) {
                imapc_done_add(c, r.tag, r.status, text);
                free(text);
                continue;
            }
            if (status_r != NULL)
                *status_r = r.status;
            if (text_r != NULL)
                *text_r = text;
            else
                free(text);
            return 0;
        }
        if (r.kind == IMAP_R_UNTAGGED && r.status == IMAP_BYE)
            return imapc_fail(error_r, "server closed the connection (BYE %s)", r.text);
        if (r.kind == IMAP_R_CONTINUATION && cb == NULL)
            return imapc_fail(error_r, "unexpected continuation request while waiting for %s",
                              tag);
        if (cb != NULL && cb(&r, arg) != 0)
            return imapc_fail(error_r, "aborted while waiting for %s", what);
    }
}

int imap_run(imap_conn *conn, imap_untagged_cb cb, void *arg, imap_status *status_r,
             char **error_r, const char *fmt, ...)
{
    char tag[16];
    va_list ap;
    va_start(ap, fmt);
    int r = imapc_vsend(conn, tag, error_r, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -1;
    imap_status st = IMAP_NONE;
    char *text = NULL;
    if (imap_wait(conn, tag, cb, arg, &st, &text, error_r) < 0)
        return -1;
    if (status_r != NULL) {
        *status_r = st;
        free(text);
        return 0;
    }
    if (st != IMAP_OK) {
        size_t cmd_len = strcspn(fmt, " ");
        imapc_fail(error_r, "%.*s failed: %s %s", (int)cmd_len, fmt,
                   st == IMAP_NO ? "NO" : "BAD", text != NULL ? text : "");
        free(text);
        return -1;
    }
    free(text);
    return 0;
}

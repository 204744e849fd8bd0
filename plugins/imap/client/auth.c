/* Login: SASL PLAIN/XOAUTH2/OAUTHBEARER through AUTHENTICATE (with SASL-IR
 * when offered) or the LOGIN command. The secret only ever goes to the
 * socket; buffers holding it are wiped, and errors carry only the server's
 * text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "imapc.h"

static int mech_offered(const imap_conn *c, const char *mech)
{
    const char *p = c->caps.auth_mechs;
    size_t n = strlen(mech);
    while (p != NULL && *p != '\0') {
        const char *e = strchr(p, ' ');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len == n && strncasecmp(p, mech, n) == 0)
            return 1;
        p = e != NULL ? e + 1 : NULL;
    }
    return 0;
}

/* The initial client response of the mechanism; *len_r its length. */
static char *initial_response(const imap_conn *c, const imap_conn_opts *opts, size_t *len_r)
{
    const char *user = opts->username;
    const char *secret = opts->secret;
    char *s = NULL;
    switch (opts->auth) {
    case IMAP_AUTH_PLAIN: {
        size_t ul = strlen(user), sl = strlen(secret);
        s = imapc_malloc(ul + sl + 3);
        s[0] = '\0';
        memcpy(s + 1, user, ul);
        s[1 + ul] = '\0';
        memcpy(s + 2 + ul, secret, sl);
        s[2 + ul + sl] = '\0';
        *len_r = ul + sl + 2;
        return s;
    }
    case IMAP_AUTH_XOAUTH2:
        s = imapc_asprintf("user=%s\001auth=Bearer %s\001\001", user, secret);
        break;
    case IMAP_AUTH_OAUTHBEARER:
        s = imapc_asprintf("n,a=%s,\001host=%s\001port=%u\001auth=Bearer %s\001\001", user,
                           c->host, (unsigned)c->port, secret);
        break;
    default:
        return NULL;
    }
    *len_r = strlen(s);
    return s;
}

/* The response code at the start of a resp-text ("[UNAVAILABLE] ..."). */
static void answer_code(const char *text, char *code, size_t size)
{
    size_t i = 0;
    if (text != NULL && text[0] == '[')
        for (const char *p = text + 1;
             *p != '\0' && *p != ']' && *p != ' ' && i + 1 < size; p++)
            code[i++] = *p;
    code[i] = '\0';
}

static int finish(imap_conn *c, const char *tag, imap_auth_answer *auth_r, char **error_r)
{
    imap_status st;
    char *text = NULL;
    if (imap_wait(c, tag, NULL, NULL, &st, &text, error_r) < 0)
        return -1;
    if (st == IMAP_OK) {
        free(text);
        return 0;
    }
    if (auth_r != NULL) {
        auth_r->refused = 1;
        auth_r->status = st;
        answer_code(text, auth_r->code, sizeof auth_r->code);
    }
    imapc_fail(error_r, "authentication failed: %s %s", st == IMAP_NO ? "NO" : "BAD",
               text != NULL ? text : "");
    free(text);
    return -1;
}

static int auth_login(imap_conn *c, const imap_conn_opts *opts, imap_auth_answer *auth_r,
                      char **error_r)
{
    char tag[16];
    if (c->caps.bits & IMAP_CAP_LOGINDISABLED)
        return imapc_fail(error_r, "%s disables LOGIN (LOGINDISABLED)", c->host);
    if (imap_send(c, tag, error_r, "LOGIN %s %s", opts->username, opts->secret) < 0)
        return -1;
    return finish(c, tag, auth_r, error_r);
}

static int auth_sasl(imap_conn *c, const imap_conn_opts *opts, const char *mech,
                     imap_auth_answer *auth_r, char **error_r)
{
    if (!mech_offered(c, mech))
        return imapc_fail(error_r, "%s does not offer AUTH=%s", c->host, mech);
    size_t ir_len = 0;
    char *ir = initial_response(c, opts, &ir_len);
    char *b64 = imapc_b64_encode(ir, ir_len);
    OPENSSL_cleanse(ir, ir_len);
    free(ir);
    size_t b64_len = strlen(b64);
    char tag[16];
    int ret = -1;
    int sasl_ir = imapc_has_cap(c, "SASL-IR");
    if (sasl_ir) {
        if (imap_send(c, tag, error_r, "AUTHENTICATE %a %a", mech, b64) < 0)
            goto out;
    } else {
        if (imap_send(c, tag, error_r, "AUTHENTICATE %a", mech) < 0)
            goto out;
    }
    for (int round = 0;; round++) {
        int got;
        imap_response r;
        if (imapc_wait_continuation(c, tag, &got, &r, error_r) < 0)
            goto out;
        if (!got)
            break;
        if (!sasl_ir && round == 0) {
            b64[b64_len] = '\r';
            int w = imapc_write_all(c, b64, b64_len + 1, "the AUTHENTICATE response", error_r);
            b64[b64_len] = '\0';
            if (w < 0 || imapc_write_all(c, "\n", 1, "the AUTHENTICATE response", error_r) < 0)
                goto out;
            continue;
        }
        /* A challenge after our response is an error report (XOAUTH2's JSON,
         * OAUTHBEARER's RFC 7628 error); answer so the server sends its NO.
         * PLAIN has no further step: cancel. */
        const char *answer = opts->auth == IMAP_AUTH_XOAUTH2       ? "\r\n"
                             : opts->auth == IMAP_AUTH_OAUTHBEARER ? "AQ==\r\n"
                                                                    : "*\r\n";
        if (round > 4)
            answer = "*\r\n";
        if (imapc_write_all(c, answer, strlen(answer), "the AUTHENTICATE response", error_r) < 0)
            goto out;
    }
    ret = finish(c, tag, auth_r, error_r);
out:
    OPENSSL_cleanse(b64, b64_len);
    free(b64);
    return ret;
}

int imapc_authenticate(imap_conn *c, const imap_conn_opts *opts, imap_auth_answer *auth_r,
                       char **error_r)
{
    if (opts->username == NULL || opts->secret == NULL)
        return imapc_fail(error_r, "no username or secret for %s", c->host);
    switch (opts->auth) {
    case IMAP_AUTH_PLAIN:
        return auth_sasl(c, opts, "PLAIN", auth_r, error_r);
    case IMAP_AUTH_LOGIN:
        return auth_login(c, opts, auth_r, error_r);
    case IMAP_AUTH_XOAUTH2:
        return auth_sasl(c, opts, "XOAUTH2", auth_r, error_r);
    case IMAP_AUTH_OAUTHBEARER:
        return auth_sasl(c, opts, "OAUTHBEARER", auth_r, error_r);
    }
    return imapc_fail(error_r, "unknown authentication mechanism");
}

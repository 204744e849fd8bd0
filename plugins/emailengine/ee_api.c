/*
 * The one place EmailEngine's HTTP answers become statuses (like isync's
 * transform_box_response), and the few REST calls the sync needs.
 *
 * EE's own account problems come back as 503 with a Boom `code`
 * (emailengine-api.md §1): AuthenticationFails is the account's IMAP
 * credentials, which only the EE admin can fix, so MP_REAUTH parks the
 * account with that reason (one request, no retry storm; a reload or an
 * API sync tries again). ConnectionError, NoAvailable, NotYetConnected are
 * EE retrying on its own: MP_RETRY with a minute's wait, so the scheduler
 * does not hammer EE meanwhile. A 401 is our token: MP_REAUTH too, since
 * only a new token_file (a reload) fixes it.
 */
#include "ee_driver.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ee_log(ee_account *a, mp_log_level level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ee_host->log(ee_host->account_instance(a->acct), a->acct, level, "%s", buf);
}

char *ee_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1);
    if (out == NULL)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    out[k] = '\0';
    return out;
}

/* Remember an account-level refusal for EE_DOWN_GATE_MS (ee_driver.h). */
static mp_status gate(ee_account *a, mp_status st, const mp_error *err)
{
    pthread_mutex_lock(&a->lock);
    a->down_until_ms = ee_host->now_ms() + EE_DOWN_GATE_MS;
    a->down_status = st;
    a->down_retry_ms = err->retry_after_ms;
    snprintf(a->down_text, sizeof a->down_text, "%s", err->text);
    pthread_mutex_unlock(&a->lock);
    return st;
}

static int gated(ee_account *a, mp_status *st_r, mp_error *err)
{
    int64_t now = ee_host->now_ms();
    pthread_mutex_lock(&a->lock);
    int down = now < a->down_until_ms;
    if (down) {
        *st_r = a->down_status;
        err->retry_after_ms = a->down_retry_ms;
        snprintf(err->text, sizeof err->text, "%s", a->down_text);
    }
    pthread_mutex_unlock(&a->lock);
    return down;
}

static mp_status state_status(ee_account *a, const char *state, const char *detail,
                              const char *what, mp_error *err)
{
    const char *d = detail != NULL && detail[0] ? detail : "no detail from EmailEngine";
    if (strcmp(state, "connected") == 0 || strcmp(state, "syncing") == 0 ||
        strcmp(state, "connecting") == 0)
        return MP_OK;
    if (strcmp(state, "authenticationError") == 0) {
        mp_fail(err, MP_REAUTH,
                "%s: EmailEngine reports authentication failing for account \"%s\""
                " (authenticationError: %.200s): fix its credentials in EmailEngine,"
                " then reload mailpulse or POST /v1/accounts/{id}/sync",
                what, a->ee_account, d);
        return gate(a, MP_REAUTH, err);
    }
    if (strcmp(state, "unset") == 0)
        return mp_fail(err, MP_FATAL,
                       "%s: EmailEngine account \"%s\" has no IMAP or OAuth2 configuration"
                       " (state unset)", what, a->ee_account);
    err->retry_after_ms = strcmp(state, "paused") == 0 ? EE_RETRY_PAUSED_MS
                                                        : EE_RETRY_CONNECT_MS;
    mp_fail(err, MP_RETRY,
            "%s: EmailEngine account \"%s\" is not connected (state %s: %.200s);"
            " retrying in %u s", what, a->ee_account, state, d,
            (unsigned)(err->retry_after_ms / 1000));
    return gate(a, MP_RETRY, err);
}

static mp_status http_status(ee_account *a, const mp_http_response *r, int missing_ok,
                             const char *what, mp_error *err)
{
    long s = r->status;
    if (s >= 200 && s < 300)
        return MP_OK;
    char code[64], state[64], msg[256];
    ee_error_parse((const char *)r->body, r->body_len, code, sizeof code, state, sizeof state,
                   msg, sizeof msg);
    if (s == 401)
        return mp_fail(err, MP_REAUTH,
                       "%s: EmailEngine refused the API token (401%s%s): put a valid token"
                       " with the api scope in token_file and reload", what,
                       msg[0] ? ": " : "", msg);
    if (s == 403)
        return mp_fail(err, MP_FATAL,
                       "%s: EmailEngine refused the token for account \"%s\" (403%s%s): it"
                       " needs the api scope and access to this account", what, a->ee_account,
                       msg[0] ? ": " : "", msg);
    if (s == 404) {
        if (strcmp(code, "MessageNotFound") == 0 || strcmp(code, "FolderNotFound") == 0 ||
            missing_ok)
            return mp_fail(err, MP_SKIP, "%s: not found at EmailEngine (%s)", what,
                           code[0] ? code : "404");
        return mp_fail(err, MP_FATAL,
                       "%s: EmailEngine has no account \"%s\" (404): check ee_account", what,
                       a->ee_account);
    }
    if (s == 503 && strcmp(code, "AuthenticationFails") == 0)
        return state_status(a, "authenticationError", msg, what, err);
    if (s == 503 && strcmp(code, "NotSyncing") == 0)
        return state_status(a, "unset", msg, what, err);
    if (s == 503 && code[0] != '\0' && strcmp(code, "WorkerNotAvailable") != 0)
        return state_status(a, state[0] ? state : code, msg, what, err);
    if (s == 429) {
        err->retry_after_ms = r->retry_after_ms ? r->retry_after_ms : EE_RETRY_CONNECT_MS;
        return mp_fail(err, MP_RETRY, "%s: EmailEngine's token rate limit (429); retry in %u ms",
                       what, (unsigned)err->retry_after_ms);
    }
    if (s == 0 || s == 408 || s >= 500) {
        err->retry_after_ms = r->retry_after_ms;
        return mp_fail(err, MP_RETRY, "%s: EmailEngine answered %ld%s%s%s%s", what, s,
                       code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
    }
    return mp_fail(err, MP_FATAL, "%s: EmailEngine answered %ld%s%s%s%s", what, s,
                   code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
}

void ee_ungate(ee_account *a)
{
    pthread_mutex_lock(&a->lock);
    a->down_until_ms = 0;
    pthread_mutex_unlock(&a->lock);
}

mp_status ee_get(ee_account *a, const char *path_query, int missing_ok, const char *what,
                 mp_http_response *resp_r, mp_error *err)
{
    memset(resp_r, 0, sizeof *resp_r);
    mp_status down;
    if (gated(a, &down, err))
        return down;
    size_t ul = strlen(a->inst->url) + strlen(path_query) + 1;
    char *url = malloc(ul);
    size_t al = a->inst->token_len + 32;
    char *auth = malloc(al);
    if (url == NULL || auth == NULL)
        abort();
    snprintf(url, ul, "%s%s", a->inst->url, path_query);
    snprintf(auth, al, "Authorization: Bearer %s", a->inst->token);
    const char *headers[] = {auth, "Accept: application/json, message/rfc822", NULL};
    mp_http_request req = {.method = "GET", .url = url, .headers = headers,
                           .timeout_ms = 60000};
    mp_http_options opt = {.struct_size = sizeof opt, .max_redirects = 0};
    mp_http_response resp;
    memset(&resp, 0, sizeof resp);
    mp_status st = ee_host->http_ex(a->acct, &req, &opt, &resp, err);
    volatile char *w = auth;
    for (size_t i = 0; i < al; i++)
        w[i] = 0;
    free(auth);
    free(url);
    if (st != MP_OK)
        return st; /* transport failure: MP_RETRY from the host */
    st = http_status(a, &resp, missing_ok, what, err);
    if (st != MP_OK) {
        ee_host->http_free(&resp);
        return st;
    }
    *resp_r = resp;
    return MP_OK;
}

mp_status ee_account_check(ee_account *a, mp_error *err)
{
    char path[600];
    snprintf(path, sizeof path, "/v1/account/%s", a->ee_path);
    mp_http_response r;
    mp_status st = ee_get(a, path, 0, "account state", &r, err);
    if (st != MP_OK)
        return st;
    char state[64], detail[256], why[256];
    int rc = ee_account_parse((const char *)r.body, r.body_len, state, sizeof state, detail,
                              sizeof detail, why, sizeof why);
    ee_host->http_free(&r);
    if (rc < 0)
        return mp_fail(err, MP_RETRY, "account state: unexpected answer from EmailEngine: %s",
                       why);
    return state_status(a, state, detail, "account state", err);
}

mp_status ee_mailboxes_fetch(ee_account *a, ee_mailboxes *out, mp_error *err)
{
    memset(out, 0, sizeof *out);
    mp_status st = ee_account_check(a, err);
    if (st != MP_OK)
        return st;
    char path[600];
    snprintf(path, sizeof path, "/v1/account/%s/mailboxes", a->ee_path);
    mp_http_response r;
    st = ee_get(a, path, 0, "mailbox list", &r, err);
    if (st != MP_OK)
        return st;
    char why[256];
    int rc = ee_mailboxes_parse((const char *)r.body, r.body_len, out, why, sizeof why);
    ee_host->http_free(&r);
    if (rc < 0)
        return mp_fail(err, MP_RETRY, "mailbox list: unexpected answer from EmailEngine: %s",
                       why);
    return MP_OK;
}

mp_status ee_mailboxes_get(ee_account *a, int64_t newer_than, const ee_mailboxes **boxes_r,
                           mp_error *err)
{
    int64_t now = ee_host->now_ms();
    if (a->boxes_ms != 0 && a->boxes_ms > newer_than && now >= a->boxes_ms &&
        now - a->boxes_ms < EE_MAILBOX_REUSE_MS) {
        *boxes_r = &a->boxes;
        return MP_OK;
    }
    ee_mailboxes m;
    mp_status st = ee_mailboxes_fetch(a, &m, err);
    if (st != MP_OK)
        return st;
    /* Strictly newer than anything a cursor recorded before (a coarse or
     * moved clock must not make a new list look old). */
    if (now <= a->boxes_ms)
        now = a->boxes_ms + 1;
    ee_mailboxes_clear(&a->boxes);
    a->boxes = m;
    a->boxes_ms = now;
    *boxes_r = &a->boxes;
    return MP_OK;
}

mp_status ee_page_get(ee_account *a, const char *folder, uint32_t page, uint32_t size,
                      ee_page *out, mp_error *err)
{
    memset(out, 0, sizeof *out);
    char *p = ee_escape(folder);
    size_t n = strlen(a->ee_path) + strlen(p) + 96;
    char *path = malloc(n);
    if (path == NULL)
        abort();
    snprintf(path, n, "/v1/account/%s/messages?path=%s&page=%u&pageSize=%u", a->ee_path, p,
             (unsigned)page, (unsigned)size);
    free(p);
    mp_http_response r;
    mp_status st = ee_get(a, path, 0, "message listing", &r, err);
    free(path);
    if (st != MP_OK)
        return st;
    char why[256];
    int rc = ee_page_parse((const char *)r.body, r.body_len, out, why, sizeof why);
    ee_host->http_free(&r);
    if (rc < 0)
        return mp_fail(err, MP_RETRY, "message listing of \"%s\": unexpected answer: %s",
                       folder, why);
    return MP_OK;
}

mp_status ee_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r, mp_error *err)
{
    ee_account *a = ee_host->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "emailengine account not open");
    const char *id = msg->ref != NULL ? msg->ref : msg->id;
    char *eid = ee_escape(id);
    size_t n = strlen(a->ee_path) + strlen(eid) + 48;
    char *path = malloc(n);
    if (path == NULL)
        abort();
    /* /source reads with BODY.PEEK[]: no \Seen (emailengine-api.md §5). A
     * deleted message is a 404 without a code: MP_SKIP. */
    snprintf(path, n, "/v1/account/%s/message/%s/source", a->ee_path, eid);
    free(eid);
    mp_http_response r;
    mp_status st = ee_get(a, path, 1, "message source", &r, err);
    free(path);
    if (st != MP_OK)
        return st;
    raw_r->data = ee_host->alloc(r.body_len ? r.body_len : 1);
    if (raw_r->data == NULL) {
        ee_host->http_free(&r);
        return mp_fail(err, MP_RETRY, "message source: out of memory");
    }
    memcpy(raw_r->data, r.body, r.body_len);
    raw_r->len = r.body_len;
    ee_host->http_free(&r);
    return MP_OK;
}

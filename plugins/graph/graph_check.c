/*
 * The admin's preflight, the `check` slot (ABI 1.2), behind
 * `mailpulsectl check` and `mailpulsectl graph-setup`: what only Microsoft
 * can tell, verified with this account's own credentials, one result per
 * step through host->check_report, each a one-line verdict that says what
 * to do.
 *
 *   credentials   an access token from the host's OAuth service
 *   mailbox       GET /users/{user}/mailFolders/inbox: the user exists and
 *                 the token may read the mailbox
 *   permissions   what the answers above prove the token allows
 *   push          public_url, the stored subscription set and its expiry,
 *                 and whether Graph still knows each subscription
 *   live_test     (MP_CHECK_LIVE) one test message created in the inbox
 *
 * Permissions are inferred from Graph's answers, never from the token: an
 * app token's `roles` claim is in a JWT, but Microsoft documents access
 * tokens as opaque to clients (their format may change, and a delegated
 * token for a personal account is not a JWT at all), and parsing one
 * unverified would prove nothing. So Mail.Read is "verified" by the inbox
 * read, and whether the app may write is not probed here (a write probe
 * would change the mailbox): only the live test, which the admin asked
 * for, tries the create and reports SKIP when Graph refuses it.
 *
 * The live test: createMessage (POST .../mailFolders/inbox/messages) makes
 * a message in the inbox, which Graph's change notifications and the
 * folder's delta report like delivered mail; Graph creates it as a draft
 * unless PR_MESSAGE_FLAGS (extended property "Integer 0x0E07") is set at
 * creation, so the request sets it to 1 (MSGFLAG_READ, without
 * MSGFLAG_UNSENT): a read, non-draft message. That property trick is
 * widely used but not in Graph's reference (UNCONFIRMED; the local fake
 * ignores it and answers isDraft true). The subject carries the creation
 * time, which the detail ends with, so the CLI can find its message.new.
 *
 * The check also republishes the profile (graph_profile.c +
 * graph_push.c): graph-setup reads the setup parameters there.
 */
#include "graph_driver.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK_MAX_RESPONSE (1u << 20)
/* GET /subscriptions is paged; a tenant with very many subscriptions of
 * this app is looked at this many pages deep. */
#define SUB_PAGES_MAX 10
#define LIVE_SUBJECT "mailpulse live test "

typedef struct check_ctx {
    graph_account *a;
    mp_check *chk;
    int mailbox_ok;
} check_ctx;

static void report(check_ctx *c, const char *name, mp_check_outcome outcome,
                   const char *fmt, ...) MP_PRINTF(4, 5);
static void report(check_ctx *c, const char *name, mp_check_outcome outcome,
                   const char *fmt, ...)
{
    char line[1000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One line for the admin, whatever Microsoft's message held (AAD's
     * descriptions carry "\r\nTrace ID: ..."). */
    for (char *p = line; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    graph_host->check_report(c->chk, name, outcome, line);
}

static int is_app(const check_ctx *c)
{
    return c->a->inst->auth == GRAPH_AUTH_APP;
}

/* "403 ErrorAccessDenied: Access is denied..." of an error answer. */
static void answer_text(const mp_http_response *r, char *buf, size_t cap)
{
    char code[96], msg[300];
    graph_error_parse((const char *)r->body, r->body_len, code, sizeof code, msg,
                      sizeof msg);
    snprintf(buf, cap, "%ld%s%s%s%s", r->status, code[0] ? " " : "", code,
             msg[0] ? ": " : "", msg);
}

/* ---- credentials ---- */

static int check_credentials(check_ctx *c)
{
    const mp_host *h = graph_host;
    const graph_instance *gi = c->a->inst;
    char *token = NULL;
    mp_error e;
    memset(&e, 0, sizeof e);
    mp_status st = h->oauth_token(c->a->acct, &token, &e);
    if (st == MP_OK) {
        h->free_secret(&token);
        if (is_app(c))
            report(c, "credentials", MP_CHECK_OK,
                   "access token issued (client credentials of app %s in tenant %s)",
                   gi->client_id, gi->tenant);
        else
            report(c, "credentials", MP_CHECK_OK,
                   "access token issued (delegated: the refresh token of %s)",
                   c->a->user);
        return 0;
    }
    if (strstr(e.text, "invalid_client") != NULL)
        report(c, "credentials", MP_CHECK_FAIL,
               "the client secret was refused (%s): in the Entra admin center, App"
               " registrations > %s > Certificates & secrets, create a new client secret,"
               " write its Value to client_secret_file, then reload (SIGHUP)",
               e.text, gi->client_id);
    else if (strstr(e.text, "unauthorized_client") != NULL)
        report(c, "credentials", MP_CHECK_FAIL,
               "tenant %s does not know app %s (%s): check tenant and client_id against"
               " the app registration's Overview page",
               gi->tenant, gi->client_id, e.text);
    else if (strstr(e.text, "invalid_grant") != NULL && is_app(c))
        report(c, "credentials", MP_CHECK_FAIL,
               "the token endpoint refused the grant (%s): grant admin consent for the"
               " app's Microsoft Graph application permissions (API permissions > Grant"
               " admin consent)",
               e.text);
    else if (strstr(e.text, "invalid_grant") != NULL)
        report(c, "credentials", MP_CHECK_FAIL,
               "the refresh token of %s was refused (%s): sign in again with Mail.Read"
               " and offline_access, write the new refresh token to refresh_token_file,"
               " then reload (SIGHUP)",
               c->a->user, e.text);
    else if (st == MP_RETRY)
        report(c, "credentials", MP_CHECK_FAIL,
               "the token endpoint did not answer usefully (%s); run the check again",
               e.text);
    else
        report(c, "credentials", MP_CHECK_FAIL, "%s; fix the credentials and reload",
               e.text);
    return -1;
}

/* ---- the mailbox ---- */

static void check_mailbox(check_ctx *c)
{
    graph_account *a = c->a;
    char *url =
        graph_user_url(a, "mailFolders/inbox?$select=id,displayName,totalItemCount");
    graph_call call = {
        .method = "GET", .url = url, .max_response = CHECK_MAX_RESPONSE, .any_status = 1};
    mp_http_response resp;
    mp_error e;
    memset(&e, 0, sizeof e);
    mp_status st = graph_http_call(a, &call, "read the inbox", &resp, &e);
    free(url);
    if (st != MP_OK) {
        report(c, "mailbox", MP_CHECK_FAIL, "cannot ask Graph: %s", e.text);
        return;
    }
    char why[500];
    answer_text(&resp, why, sizeof why);
    if (resp.status == 200) {
        json_t *j = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
        json_t *total = json_object_get(j, "totalItemCount");
        c->mailbox_ok = 1;
        if (json_is_integer(total))
            report(c, "mailbox", MP_CHECK_OK,
                   "the inbox of %s is readable (%lld messages)", a->user,
                   (long long)json_integer_value(total));
        else
            report(c, "mailbox", MP_CHECK_OK, "the inbox of %s is readable", a->user);
        json_decref(j);
    } else if (resp.status == 403 && is_app(c)) {
        report(c, "mailbox", MP_CHECK_FAIL,
               "Graph refused to read the inbox of %s (%s): the app lacks Mail.Read"
               " (application permission + admin consent): Entra admin center > App"
               " registrations > %s > API permissions > Add > Microsoft Graph >"
               " Application permissions > Mail.Read, then Grant admin consent (or an"
               " Exchange application access policy excludes this mailbox)",
               a->user, why, a->inst->client_id);
    } else if (resp.status == 403) {
        report(
            c, "mailbox", MP_CHECK_FAIL,
            "Graph refused to read the inbox of %s (%s): the signed-in user's token lacks"
            " Mail.Read (delegated permission, consented at sign-in), or the refresh"
            " token is another user's: a delegated token reads only its own mailbox",
            a->user, why);
    } else if (resp.status == 404) {
        report(c, "mailbox", MP_CHECK_FAIL,
               "no mailbox for user %s (%s): the user does not exist in tenant %s or has"
               " no Exchange Online mailbox; check `user` (a UPN or object id)",
               a->user, why, a->inst->tenant);
    } else if (resp.status == 401) {
        report(c, "mailbox", MP_CHECK_FAIL,
               "Graph refused the access token (%s): the token is not for Microsoft Graph"
               " or tenant %s; check tenant, client_id and login_url",
               why, a->inst->tenant);
    } else {
        report(c, "mailbox", MP_CHECK_FAIL, "reading the inbox of %s failed: %s", a->user,
               why);
    }
    graph_host->http_free(&resp);
}

/* ---- permissions (inferred, see the top of this file) ---- */

static void check_permissions(check_ctx *c, unsigned flags)
{
    const char *kind = is_app(c) ? "application permission" : "delegated permission";
    if (!c->mailbox_ok) {
        report(c, "permissions", MP_CHECK_SKIP,
               "not verified: the inbox read failed (see mailbox)");
        return;
    }
    report(
        c, "permissions", MP_CHECK_OK,
        "Mail.Read (%s) verified by reading the inbox; subscriptions need nothing more."
        " Creating messages (Mail.ReadWrite, only for the live test) is %s",
        kind,
        (flags & MP_CHECK_LIVE) ? "tried by live_test"
                                : "not probed (no write without --live)");
}

/* ---- push ---- */

typedef struct sub_view {
    char *id;
    char *folder;
    int64_t expires_at;
} sub_view;

/* A copy of the stored set (under the push lock). */
static size_t copy_subs(const graph_account *a, sub_view **out_r)
{
    graph_push_inst *pi = a->inst->push;
    graph_push_acct *p = a->push;
    *out_r = NULL;
    if (pi == NULL || p == NULL)
        return 0;
    pthread_mutex_lock(&pi->lock);
    size_t n = p->n;
    sub_view *v = n > 0 ? calloc(n, sizeof *v) : NULL;
    if (n > 0 && v == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        v[i].id = strdup(p->subs[i].id != NULL ? p->subs[i].id : "");
        v[i].folder = strdup(p->subs[i].folder != NULL ? p->subs[i].folder : "*");
        if (v[i].id == NULL || v[i].folder == NULL)
            abort();
        v[i].expires_at = p->subs[i].expires_at;
    }
    pthread_mutex_unlock(&pi->lock);
    *out_r = v;
    return n;
}

/* Mark in known[] the stored ids Graph lists under GET /subscriptions (an
 * app sees only its own). -1 with `why` when the list cannot be read. */
static int graph_known(check_ctx *c, const sub_view *v, size_t n, int *known, char *why,
                       size_t why_len)
{
    graph_account *a = c->a;
    char *url = NULL;
    size_t len = strlen(a->inst->api_url) + 32;
    url = malloc(len);
    if (url == NULL)
        abort();
    snprintf(url, len, "%s/subscriptions", a->inst->api_url);
    for (int page = 0; url != NULL && page < SUB_PAGES_MAX; page++) {
        graph_call call = {.method = "GET",
                           .url = url,
                           .max_response = CHECK_MAX_RESPONSE,
                           .any_status = 1};
        mp_http_response resp;
        mp_error e;
        memset(&e, 0, sizeof e);
        mp_status st = graph_http_call(a, &call, "list subscriptions", &resp, &e);
        free(url);
        url = NULL;
        if (st != MP_OK) {
            snprintf(why, why_len, "%.400s", e.text);
            return -1;
        }
        if (resp.status != 200) {
            answer_text(&resp, why, why_len);
            graph_host->http_free(&resp);
            return -1;
        }
        json_t *j = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
        graph_host->http_free(&resp);
        size_t k;
        json_t *item;
        json_array_foreach(json_object_get(j, "value"), k, item)
        {
            const char *id = json_string_value(json_object_get(item, "id"));
            for (size_t i = 0; id != NULL && i < n; i++)
                if (strcmp(v[i].id, id) == 0)
                    known[i] = 1;
        }
        const char *next = json_string_value(json_object_get(j, "@odata.nextLink"));
        if (next != NULL && graph_link_ok(a, next)) {
            url = strdup(next);
            if (url == NULL)
                abort();
        }
        json_decref(j);
    }
    free(url);
    return 0;
}

static void check_push(check_ctx *c)
{
    graph_account *a = c->a;
    const graph_instance *gi = a->inst;
    if (gi->public_url == NULL || gi->push == NULL || gi->push->notify_url == NULL) {
        report(
            c, "push", MP_CHECK_WARN,
            "no public_url: polling only (every poll interval); set public_url in the"
            " instance's plugins.d file for change notifications");
        return;
    }
    sub_view *v;
    size_t n = copy_subs(a, &v);
    if (n == 0) {
        report(c, "push", MP_CHECK_WARN,
               "public_url is set (%s) but no subscription is stored yet: push enrollment"
               " is pending or failing (see the account's push state and last error)",
               gi->push->notify_url);
        return;
    }
    int64_t now = graph_host->now_ms() / 1000;
    int64_t first = 0;
    size_t expired = 0;
    for (size_t i = 0; i < n; i++) {
        if (first == 0 || v[i].expires_at < first)
            first = v[i].expires_at;
        if (v[i].expires_at <= now)
            expired++;
    }
    int *known = calloc(n, sizeof *known);
    if (known == NULL)
        abort();
    char why[500] = "";
    int listed = c->mailbox_ok ? graph_known(c, v, n, known, why, sizeof why) : -1;
    size_t unknown = 0;
    char missing[300] = "";
    for (size_t i = 0; listed == 0 && i < n; i++) {
        if (known[i])
            continue;
        if (unknown++ == 0)
            snprintf(missing, sizeof missing, "%s (%s)", v[i].id, v[i].folder);
    }
    char when[40];
    graph_time_format(first, when, sizeof when);
    if (expired > 0)
        report(
            c, "push", MP_CHECK_WARN,
            "%zu of %zu subscriptions to %s have expired (earliest expiry %s): the next"
            " push renewal recreates them",
            expired, n, gi->push->notify_url, when);
    else if (listed == 0 && unknown > 0)
        report(c, "push", MP_CHECK_WARN,
               "%zu of %zu stored subscriptions are unknown to Graph (e.g. %s): the next"
               " push renewal recreates them",
               unknown, n, missing);
    else if (listed == 0)
        report(c, "push", MP_CHECK_OK,
               "%zu subscription%s to %s, all known to Graph; earliest expiry %s", n,
               n == 1 ? "" : "s", gi->push->notify_url, when);
    else
        report(c, "push", MP_CHECK_OK,
               "%zu subscription%s to %s stored, earliest expiry %s (Graph's list not"
               " read: %s)",
               n, n == 1 ? "" : "s", gi->push->notify_url, when,
               why[0] != '\0' ? why : "the mailbox check failed");
    free(known);
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        free(v[i].folder);
    }
    free(v);
}

/* ---- the live test ---- */

/* "2026-12-07T05:40:00.123Z" of the host's clock. */
static void now_text(char *buf, size_t cap)
{
    int64_t ms = graph_host->now_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

static void live_test(check_ctx *c)
{
    graph_account *a = c->a;
    if (!c->mailbox_ok) {
        report(c, "live_test", MP_CHECK_SKIP,
               "not tried: the inbox is not readable (see mailbox)");
        return;
    }
    char stamp[40];
    now_text(stamp, sizeof stamp);
    char subject[96];
    snprintf(subject, sizeof subject, LIVE_SUBJECT "%s", stamp);
    json_t *doc = json_pack(
        "{s:s, s:{s:s, s:s}, s:[{s:{s:s, s:s}}], s:{s:{s:s, s:s}},"
        " s:[{s:s, s:s}]}",
        "subject", subject, "body", "contentType", "text", "content",
        "A test message created by mailpulse's preflight (mailpulsectl graph-setup or"
        " check --live). It can be deleted.",
        "toRecipients", "emailAddress", "name", "mailpulse", "address", a->user, "from",
        "emailAddress", "name", "mailpulse live test", "address", a->user,
        "singleValueExtendedProperties", "id", "Integer 0x0E07", "value", "1");
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (body == NULL)
        abort();
    char *url =
        graph_user_url(a, "mailFolders/inbox/messages?$select=id,receivedDateTime");
    graph_call call = {.method = "POST",
                       .url = url,
                       .content_type = "application/json",
                       .body = (const uint8_t *)body,
                       .body_len = strlen(body),
                       .max_response = CHECK_MAX_RESPONSE,
                       .any_status = 1};
    mp_http_response resp;
    mp_error e;
    memset(&e, 0, sizeof e);
    mp_status st = graph_http_call(a, &call, "create a test message", &resp, &e);
    free(url);
    free(body);
    if (st != MP_OK) {
        report(c, "live_test", MP_CHECK_FAIL, "cannot ask Graph: %s", e.text);
        return;
    }
    char why[500];
    answer_text(&resp, why, sizeof why);
    if (resp.status == 201 || resp.status == 200) {
        json_t *j = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "id"));
        if (id != NULL && id[0] != '\0' && strchr(id, ' ') == NULL) {
            graph_log(a, MP_LOG_INFO, "check: live test message %s created in the inbox",
                      id);
            report(c, "live_test", MP_CHECK_OK, "%s created in the inbox of %s at %s", id,
                   a->user, stamp);
        } else {
            report(c, "live_test", MP_CHECK_FAIL,
                   "Graph answered %ld to the create without a message id", resp.status);
        }
        json_decref(j);
    } else if (resp.status == 403) {
        report(
            c, "live_test", MP_CHECK_SKIP,
            "Graph refused to create a test message (%s): the app has no Mail.ReadWrite,"
            " which mailpulse does not need; send a message to %s by hand instead",
            why, a->user);
    } else {
        report(c, "live_test", MP_CHECK_FAIL, "creating a test message failed: %s", why);
    }
    graph_host->http_free(&resp);
}

mp_status graph_check(mp_account *acct, unsigned flags, mp_check *chk, mp_error *err)
{
    (void)err;
    graph_account *a = graph_host->account_state(acct);
    check_ctx c = {.a = a, .chk = chk};
    graph_push_profile(a);
    if (check_credentials(&c) == 0)
        check_mailbox(&c);
    else
        report(&c, "mailbox", MP_CHECK_SKIP, "not tried without an access token");
    check_permissions(&c, flags);
    check_push(&c);
    if (flags & MP_CHECK_LIVE)
        live_test(&c);
    return MP_OK;
}

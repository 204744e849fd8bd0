/*
 * The admin's preflight, the `check` slot (ABI 1.2), behind
 * `mailpulsectl check` and `mailpulsectl gmail-setup`: what only Google can
 * tell, verified with this account's own credentials, one result per step
 * through host->check_report, each a one-line verdict that says what to do.
 *
 *   credentials        an access token from the host's OAuth service
 *   profile            users.getProfile opens the configured mailbox
 *   scopes             Google's tokeninfo: read access, insert, Pub/Sub
 *   topic, publisher   the topic exists and Gmail's push account may publish
 *   push_subscription  (pubsub-push) a subscription pushes to /push/<instance>
 *                      with the configured OIDC service account and audience
 *   pull_subscription  (pubsub-pull) the subscription exists, on the topic,
 *                      without a push endpoint
 *   watch              the stored watch and its expiry
 *   live_test          (MP_CHECK_LIVE) one test message inserted into INBOX
 *
 * Pub/Sub is asked with the account's token, as the pull thread does
 * (gmail_pull.c). A push-mode account asks only for gmail.readonly, so
 * Google may answer 403: that is "cannot verify", reported SKIP, never a
 * failure of the setup. The tokeninfo endpoint is the token URL's origin
 * with the path /tokeninfo (Google: oauth2.googleapis.com/tokeninfo); the
 * token goes in a form body, never in a URL a proxy could log.
 *
 * The driver cannot know its instance's name (the host table has no slot
 * for it), so a push endpoint counts when its path ends in /push/<name>;
 * the endpoint found goes into the profile (set_profile, with the
 * instance's setup parameters) and the CLI, which knows the instance,
 * compares the name.
 *
 * The live test is the only write the driver ever makes to a mailbox, and
 * only when asked: messages.insert with internalDateSource=receivedTime
 * and INBOX+UNREAD, as a delivery would leave it, so Gmail's watch
 * publishes to the topic like for real mail.
 */
#include "gmail_driver.h"
#include "gmail_push.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define GMAIL_PUSH_ACCOUNT "gmail-api-push@system.gserviceaccount.com"
#define PUBLISHER_ROLE "roles/pubsub.publisher"
#define SCOPE_PREFIX "https://www.googleapis.com/auth/"
#define SCOPE_FULL "https://mail.google.com/"
#define UNITS_INSERT 25u
/* Pub/Sub answers are small; a topic with very many subscriptions is
 * looked at page by page, at most this many pages. */
#define CHECK_MAX_RESPONSE (1u << 20)
#define SUB_PAGES_MAX 10

typedef struct check_ctx {
    gmail_account *a;
    mp_check *chk;
    int insert;          /* 1 yes, 0 no, -1 unknown (tokeninfo failed) */
    char *push_endpoint; /* the push subscription's endpoint, malloc'd  */
} check_ctx;

static void report(check_ctx *c, const char *name, mp_check_outcome outcome,
                   const char *fmt, ...) MP_PRINTF(4, 5);
static void report(check_ctx *c, const char *name, mp_check_outcome outcome,
                   const char *fmt, ...)
{
    char line[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One line for the admin, whatever Google's message held. */
    for (char *p = line; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    gmail_host->check_report(c->chk, name, outcome, line);
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static const char *str_or(const json_t *v, const char *fallback)
{
    const char *s = json_string_value(v);
    return s != NULL ? s : fallback;
}

/* ---- the profile handed to the host ---- */

char *gmail_profile_json(const gmail_account *a, const char *push_endpoint)
{
    const gmail_instance *gi = a->inst;
    static const char *const modes[] = {"off", "pubsub-push", "pubsub-pull"};
    json_t *o = json_object();
    json_object_set_new(o, "email", json_string(a->email));
    json_object_set_new(o, "push", json_string(modes[gi->push]));
    json_object_set_new(
        o, "credentials",
        json_string(a->service_account ? "service_account" : "refresh_token"));
    if (gi->topic != NULL)
        json_object_set_new(o, "topic", json_string(gi->topic));
    if (gi->subscription != NULL)
        json_object_set_new(o, "subscription", json_string(gi->subscription));
    if (gi->push_audience != NULL)
        json_object_set_new(o, "push_audience", json_string(gi->push_audience));
    if (gi->push_service_account != NULL)
        json_object_set_new(o, "push_service_account",
                            json_string(gi->push_service_account));
    json_t *labels = json_array();
    for (size_t i = 0; i < gi->n_watch_labels; i++)
        json_array_append_new(labels, json_string(gi->watch_labels[i]));
    json_object_set_new(o, "watch_labels", labels);
    if (push_endpoint != NULL)
        json_object_set_new(o, "push_endpoint", json_string(push_endpoint));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text == NULL)
        abort();
    return text;
}

/* ---- credentials ---- */

static int check_credentials(check_ctx *c)
{
    const mp_host *h = gmail_host;
    char *token = NULL;
    mp_error e = {0, ""};
    mp_status st = h->oauth_token(c->a->acct, &token, &e);
    if (st == MP_OK) {
        h->free_secret(&token);
        if (c->a->service_account)
            report(c, "credentials", MP_CHECK_OK,
                   "access token issued (service account, domain-wide delegation as %s)",
                   c->a->email);
        else
            report(c, "credentials", MP_CHECK_OK,
                   "access token issued (user OAuth refresh token of %s)", c->a->email);
        return 0;
    }
    if (st == MP_REAUTH) {
        if (c->a->service_account)
            report(c, "credentials", MP_CHECK_FAIL,
                   "re-authorize: %s; check the service account's domain-wide delegation"
                   " (client id and scopes) in the Workspace Admin console",
                   e.text);
        else
            report(c, "credentials", MP_CHECK_FAIL,
                   "re-authorize: %s; run the OAuth consent for %s again, write the new"
                   " refresh token to refresh_token_file, then reload (SIGHUP)",
                   e.text, c->a->email);
    } else if (st == MP_RETRY) {
        report(c, "credentials", MP_CHECK_FAIL,
               "the token endpoint did not answer usefully (%s); run the check again",
               e.text);
    } else {
        report(c, "credentials", MP_CHECK_FAIL, "%s; fix the credential files and reload",
               e.text);
    }
    return -1;
}

/* ---- getProfile ---- */

/* "Gmail answered 403 forbidden: <message>" for an error answer. */
static void answer_text(const mp_http_response *r, char *buf, size_t cap)
{
    char reason[64], msg[300];
    gmail_google_error((const char *)r->body, r->body_len, reason, sizeof reason, msg,
                       sizeof msg);
    snprintf(buf, cap, "%ld%s%s%s%s", r->status, reason[0] ? " " : "", reason,
             msg[0] ? ": " : "", msg);
}

static void check_profile(check_ctx *c)
{
    gmail_account *a = c->a;
    char *url = gmail_api_url(a, "profile");
    gmail_call call = {.method = "GET",
                       .url = url,
                       .units = GMAIL_UNITS_GET_PROFILE,
                       .max_response = CHECK_MAX_RESPONSE,
                       .any_status = 1};
    mp_http_response resp;
    mp_error e = {0, ""};
    mp_status st = gmail_http_call(a, &call, "getProfile", &resp, &e);
    free(url);
    if (st != MP_OK) {
        report(c, "profile", MP_CHECK_FAIL, "%s; run the check again", e.text);
        return;
    }
    char why[420];
    if (resp.status != 200) {
        answer_text(&resp, why, sizeof why);
        if (resp.status == 400 && a->service_account)
            report(
                c, "profile", MP_CHECK_FAIL,
                "getProfile: Gmail answered %s; %s must be a Workspace user the service"
                " account may impersonate (domain-wide delegation)",
                why, a->email);
        else if (resp.status == 403)
            report(c, "profile", MP_CHECK_FAIL,
                   "getProfile: Gmail answered %s; enable the Gmail API in the OAuth"
                   " client's project and grant gmail.readonly",
                   why);
        else
            report(c, "profile", MP_CHECK_FAIL, "getProfile: Gmail answered %s", why);
        gmail_host->http_free(&resp);
        return;
    }
    json_t *root = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
    gmail_host->http_free(&resp);
    const char *addr = json_string_value(json_object_get(root, "emailAddress"));
    json_t *hid = json_object_get(root, "historyId");
    json_t *total = json_object_get(root, "messagesTotal");
    char hid_text[32];
    if (json_is_integer(hid))
        snprintf(hid_text, sizeof hid_text, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(hid));
    else
        snprintf(hid_text, sizeof hid_text, "%s", str_or(hid, "?"));
    if (addr == NULL) {
        report(c, "profile", MP_CHECK_FAIL,
               "getProfile: the answer has no emailAddress; run the check again");
    } else if (strcasecmp(addr, a->email) != 0) {
        report(c, "profile", MP_CHECK_FAIL,
               "the credentials open %s, not the configured email %s: authorize as %s"
               " (or correct email)",
               addr, a->email, a->email);
    } else {
        report(c, "profile", MP_CHECK_OK,
               "%s: %" JSON_INTEGER_FORMAT " messages, historyId %s", addr,
               json_is_integer(total) ? json_integer_value(total) : (json_int_t)0,
               hid_text);
    }
    json_decref(root);
}

/* ---- scopes through tokeninfo ---- */

/* "{origin of token_url}/tokeninfo", malloc'd. */
static char *tokeninfo_url(const char *token_url)
{
    const char *p = strstr(token_url, "://");
    const char *slash = p != NULL ? strchr(p + 3, '/') : NULL;
    size_t origin = slash != NULL ? (size_t)(slash - token_url) : strlen(token_url);
    size_t n = origin + sizeof "/tokeninfo";
    char *u = malloc(n);
    if (u == NULL)
        abort();
    snprintf(u, n, "%.*s/tokeninfo", (int)origin, token_url);
    return u;
}

static int has_scope(const char *scopes, const char *scope)
{
    size_t n = strlen(scope);
    for (const char *p = scopes; (p = strstr(p, scope)) != NULL; p += n)
        if ((p == scopes || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return 1;
    return 0;
}

/* The short name of the first scope of `list` present in `scopes`. */
static const char *first_scope(const char *scopes, const char *const *list)
{
    for (; *list != NULL; list++)
        if (has_scope(scopes, *list))
            return strncmp(*list, SCOPE_PREFIX, strlen(SCOPE_PREFIX)) == 0
                       ? *list + strlen(SCOPE_PREFIX)
                       : *list;
    return NULL;
}

static void judge_scopes(check_ctx *c, const char *scopes)
{
    static const char *const read[] = {SCOPE_PREFIX "gmail.readonly",
                                       SCOPE_PREFIX "gmail.modify", SCOPE_FULL, NULL};
    static const char *const insert[] = {SCOPE_PREFIX "gmail.insert",
                                         SCOPE_PREFIX "gmail.modify", SCOPE_FULL, NULL};
    static const char *const pubsub[] = {SCOPE_PREFIX "pubsub",
                                         SCOPE_PREFIX "cloud-platform", NULL};
    const char *r = first_scope(scopes, read);
    const char *i = first_scope(scopes, insert);
    const char *p = first_scope(scopes, pubsub);
    c->insert = i != NULL;
    char ins[160], ps[160];
    if (i != NULL)
        snprintf(ins, sizeof ins, "can insert a live test message (%s)", i);
    else
        snprintf(
            ins, sizeof ins,
            "no insert scope (gmail.insert): the live test needs a message sent by hand");
    if (p != NULL)
        snprintf(ps, sizeof ps, "Pub/Sub: %s", p);
    else
        snprintf(ps, sizeof ps, "no Pub/Sub scope (Pub/Sub checks may be skipped)");
    if (r == NULL) {
        report(c, "scopes", MP_CHECK_FAIL,
               "no read scope in \"%s\": authorize gmail.readonly (gmail.metadata cannot"
               " fetch messages); %s",
               scopes, ins);
        return;
    }
    report(c, "scopes", MP_CHECK_OK, "read access (%s); %s; %s", r, ins, ps);
}

static void check_scopes(check_ctx *c)
{
    const mp_host *h = gmail_host;
    char *token = NULL;
    mp_error e = {0, ""};
    if (h->oauth_token(c->a->acct, &token, &e) != MP_OK) {
        report(c, "scopes", MP_CHECK_SKIP, "no access token to look at (%s)", e.text);
        return;
    }
    char *enc = curl_easy_escape(NULL, token, 0);
    OPENSSL_cleanse(token, strlen(token));
    h->free_secret(&token);
    if (enc == NULL)
        abort();
    size_t bl = strlen(enc) + sizeof "access_token=";
    char *body = malloc(bl);
    if (body == NULL)
        abort();
    snprintf(body, bl, "access_token=%s", enc);
    OPENSSL_cleanse(enc, strlen(enc));
    curl_free(enc);
    char *url = tokeninfo_url(c->a->inst->token_url);
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded",
                             "Accept: application/json", NULL};
    mp_http_request req = {.method = "POST",
                           .url = url,
                           .headers = headers,
                           .body = (const uint8_t *)body,
                           .body_len = strlen(body),
                           .timeout_ms = 30000};
    mp_http_options opt = {.struct_size = sizeof opt, .max_response = CHECK_MAX_RESPONSE};
    mp_http_response resp;
    memset(&resp, 0, sizeof resp);
    mp_status st = h->http_ex(c->a->acct, &req, &opt, &resp, &e);
    OPENSSL_cleanse(body, bl);
    free(body);
    if (st != MP_OK) {
        report(c, "scopes", MP_CHECK_WARN,
               "tokeninfo at %s unreachable (%s): scopes not"
               " verified",
               url, e.text);
        free(url);
        return;
    }
    json_t *root = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
    long status = resp.status;
    h->http_free(&resp);
    const char *scope = json_string_value(json_object_get(root, "scope"));
    if (status == 200 && scope != NULL) {
        judge_scopes(c, scope);
    } else if (status == 400) {
        report(c, "scopes", MP_CHECK_FAIL,
               "Google does not accept the access token (tokeninfo: %s): re-authorize",
               str_or(json_object_get(root, "error_description"),
                      str_or(json_object_get(root, "error"), "invalid_token")));
    } else {
        report(c, "scopes", MP_CHECK_WARN,
               "tokeninfo at %s answered %ld: scopes not verified", url, status);
    }
    json_decref(root);
    free(url);
}

/* ---- Pub/Sub ---- */

typedef enum { PS_OK, PS_DENIED, PS_GONE, PS_OTHER } ps_result;

/* GET {pubsub_url}/v1/{path}. PS_OK with *doc_r (a JSON object), PS_DENIED
 * (401/403), PS_GONE (404), PS_OTHER with `why`. */
static ps_result pubsub_get(check_ctx *c, const char *path, json_t **doc_r, char *why,
                            size_t why_len)
{
    *doc_r = NULL;
    size_t n = strlen(c->a->inst->pubsub_url) + strlen(path) + 8;
    char *url = malloc(n);
    if (url == NULL)
        abort();
    snprintf(url, n, "%s/v1/%s", c->a->inst->pubsub_url, path);
    gmail_call call = {.method = "GET",
                       .url = url,
                       .units = 0,
                       .max_response = CHECK_MAX_RESPONSE,
                       .any_status = 1};
    mp_http_response resp;
    mp_error e = {0, ""};
    mp_status st = gmail_http_call(c->a, &call, "Pub/Sub", &resp, &e);
    free(url);
    if (st != MP_OK) {
        snprintf(why, why_len, "%s", e.text);
        return PS_OTHER;
    }
    ps_result r = PS_OTHER;
    if (resp.status == 200) {
        *doc_r = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
        if (json_is_object(*doc_r)) {
            r = PS_OK;
        } else {
            json_decref(*doc_r);
            *doc_r = NULL;
            snprintf(why, why_len, "Pub/Sub's answer is not a JSON object");
        }
    } else {
        answer_text(&resp, why, why_len);
        if (resp.status == 401 || resp.status == 403)
            r = PS_DENIED;
        else if (resp.status == 404)
            r = PS_GONE;
    }
    gmail_host->http_free(&resp);
    return r;
}

static void denied(check_ctx *c, const char *name, const char *why)
{
    report(c, name, MP_CHECK_SKIP,
           "cannot verify with these credentials (Pub/Sub answered %s); run the gcloud"
           " script, or authorize the pubsub scope to let this check see it",
           why);
}

/* A binding that lets Gmail's push account publish: publisher, or a role
 * that includes publishing. */
static const char *publisher_binding(const json_t *policy)
{
    static const char *const roles[] = {PUBLISHER_ROLE, "roles/pubsub.editor",
                                        "roles/pubsub.admin", NULL};
    const json_t *bindings = json_object_get(policy, "bindings");
    size_t i;
    const json_t *b;
    json_array_foreach(bindings, i, b)
    {
        const char *role = json_string_value(json_object_get(b, "role"));
        if (role == NULL || json_object_get(b, "condition") != NULL)
            continue;
        int known = 0;
        for (const char *const *r = roles; *r != NULL; r++)
            known |= strcmp(role, *r) == 0;
        if (!known)
            continue;
        size_t j;
        const json_t *m;
        json_array_foreach(json_object_get(b, "members"), j, m)
        {
            const char *s = json_string_value(m);
            if (s != NULL && strcmp(s, "serviceAccount:" GMAIL_PUSH_ACCOUNT) == 0)
                return role;
        }
    }
    return NULL;
}

/* 0: the topic exists (and the next checks may run). */
static int check_topic(check_ctx *c)
{
    const char *topic = c->a->inst->topic;
    json_t *doc;
    char why[420];
    ps_result r = pubsub_get(c, topic, &doc, why, sizeof why);
    json_decref(doc);
    if (r == PS_DENIED) {
        denied(c, "topic", why);
        denied(c, "publisher", why);
        return -1;
    }
    if (r == PS_GONE) {
        report(c, "topic", MP_CHECK_FAIL,
               "topic %s does not exist: create it (gcloud pubsub topics create %s)",
               topic, topic);
        report(c, "publisher", MP_CHECK_SKIP, "needs the topic");
        return -1;
    }
    if (r != PS_OK) {
        report(c, "topic", MP_CHECK_WARN,
               "topic %s not verified (%s); run the check again", topic, why);
        report(c, "publisher", MP_CHECK_SKIP, "needs the topic");
        return -1;
    }
    report(c, "topic", MP_CHECK_OK, "topic %s exists", topic);

    char path[600];
    snprintf(path, sizeof path, "%s:getIamPolicy", topic);
    r = pubsub_get(c, path, &doc, why, sizeof why);
    if (r == PS_DENIED) {
        denied(c, "publisher", why);
    } else if (r != PS_OK) {
        report(c, "publisher", MP_CHECK_WARN,
               "the topic's IAM policy was not readable (%s); run the check again", why);
    } else {
        const char *role = publisher_binding(doc);
        if (role != NULL)
            report(c, "publisher", MP_CHECK_OK, "%s may publish to %s (%s)",
                   GMAIL_PUSH_ACCOUNT, topic, role);
        else
            report(
                c, "publisher", MP_CHECK_FAIL,
                "Gmail cannot publish: grant %s on %s to serviceAccount:%s (gcloud pubsub"
                " topics add-iam-policy-binding %s --member=serviceAccount:%s --role=%s)",
                PUBLISHER_ROLE, topic, GMAIL_PUSH_ACCOUNT, topic, GMAIL_PUSH_ACCOUNT,
                PUBLISHER_ROLE);
    }
    json_decref(doc);
    return 0;
}

/* Nonzero when the endpoint's path ends in "/push/<one segment>". */
static int push_path(const char *endpoint)
{
    const char *scheme = strstr(endpoint, "://");
    const char *path = scheme != NULL ? strchr(scheme + 3, '/') : NULL;
    if (path == NULL)
        return 0;
    size_t len = strcspn(path, "?#");
    const char *last = NULL;
    for (const char *p = path; p < path + len; p++)
        if (*p == '/')
            last = p;
    if (last == NULL || last + 1 >= path + len || last - path < 5)
        return 0;
    return strncmp(last - 5, "/push", 5) == 0;
}

typedef struct push_candidate {
    char *name, *endpoint, *sa, *aud;
} push_candidate;

static void candidate_clear(push_candidate *p)
{
    free(p->name);
    free(p->endpoint);
    free(p->sa);
    free(p->aud);
    memset(p, 0, sizeof *p);
}

/* 1: `sub` is the push subscription we want; 0 a push to /push/ with some
 * mismatch (kept in *near when it is the first); -1 something else. */
static int judge_push(check_ctx *c, const json_t *sub, push_candidate *near)
{
    const gmail_instance *gi = c->a->inst;
    const json_t *pc = json_object_get(sub, "pushConfig");
    const char *endpoint = json_string_value(json_object_get(pc, "pushEndpoint"));
    if (endpoint == NULL || endpoint[0] == '\0' || !push_path(endpoint))
        return -1;
    const json_t *oidc = json_object_get(pc, "oidcToken");
    const char *sa = json_string_value(json_object_get(oidc, "serviceAccountEmail"));
    const char *aud = json_string_value(json_object_get(oidc, "audience"));
    /* Without an audience Pub/Sub signs for the endpoint URL. */
    if (sa != NULL && (aud == NULL || aud[0] == '\0'))
        aud = endpoint;
    int ok = sa != NULL && strcmp(sa, gi->push_service_account) == 0 &&
             strcmp(aud, gi->push_audience) == 0;
    if (ok || near->name == NULL) {
        candidate_clear(near);
        near->name = xstrdup(str_or(json_object_get(sub, "name"), "?"));
        near->endpoint = xstrdup(endpoint);
        near->sa = sa != NULL ? xstrdup(sa) : NULL;
        near->aud = sa != NULL ? xstrdup(aud) : NULL;
    }
    return ok ? 1 : 0;
}

static void check_push_subscription(check_ctx *c)
{
    const gmail_instance *gi = c->a->inst;
    push_candidate best = {0};
    int found = 0, denied_seen = 0;
    char why[420] = "";
    char *page = NULL;
    for (int pages = 0; pages < SUB_PAGES_MAX && !found; pages++) {
        char path[1200];
        if (page != NULL) {
            char *enc = curl_easy_escape(NULL, page, 0);
            snprintf(path, sizeof path, "%s/subscriptions?pageToken=%s", gi->topic,
                     enc != NULL ? enc : "");
            curl_free(enc);
        } else {
            snprintf(path, sizeof path, "%s/subscriptions", gi->topic);
        }
        free(page);
        page = NULL;
        json_t *list;
        ps_result r = pubsub_get(c, path, &list, why, sizeof why);
        if (r == PS_DENIED) {
            denied_seen = 1;
            break;
        }
        if (r != PS_OK) {
            report(c, "push_subscription", MP_CHECK_WARN,
                   "the topic's subscriptions were not listed (%s); run the check again",
                   why);
            candidate_clear(&best);
            return;
        }
        size_t i;
        json_t *name;
        json_array_foreach(json_object_get(list, "subscriptions"), i, name)
        {
            const char *n = json_string_value(name);
            json_t *sub;
            char swhy[420];
            if (n == NULL || pubsub_get(c, n, &sub, swhy, sizeof swhy) != PS_OK)
                continue;
            if (judge_push(c, sub, &best) == 1)
                found = 1;
            json_decref(sub);
            if (found)
                break;
        }
        const char *next = json_string_value(json_object_get(list, "nextPageToken"));
        if (next != NULL && next[0] != '\0')
            page = xstrdup(next);
        json_decref(list);
        if (page == NULL)
            break;
    }
    free(page);
    if (denied_seen) {
        denied(c, "push_subscription", why);
    } else if (best.name == NULL) {
        report(c, "push_subscription", MP_CHECK_FAIL,
               "no subscription of %s pushes to <public URL>/push/<instance>: create one"
               " with OIDC service account %s and audience %s (script below)",
               gi->topic, gi->push_service_account, gi->push_audience);
    } else if (found) {
        free(c->push_endpoint);
        c->push_endpoint = xstrdup(best.endpoint);
        report(c, "push_subscription", MP_CHECK_OK,
               "%s pushes to %s with OIDC service account %s, audience %s", best.name,
               best.endpoint, best.sa, best.aud);
    } else {
        free(c->push_endpoint);
        c->push_endpoint = xstrdup(best.endpoint);
        char fix[700];
        snprintf(fix, sizeof fix,
                 "gcloud pubsub subscriptions modify-push-config %s --push-endpoint=%s"
                 " --push-auth-service-account=%s --push-auth-token-audience=%s",
                 best.name, best.endpoint, gi->push_service_account, gi->push_audience);
        if (best.sa == NULL)
            report(c, "push_subscription", MP_CHECK_FAIL,
                   "%s pushes to %s without an OIDC token, so every push is refused: %s",
                   best.name, best.endpoint, fix);
        else if (strcmp(best.sa, gi->push_service_account) != 0)
            report(c, "push_subscription", MP_CHECK_FAIL,
                   "%s signs as %s but push_service_account is %s: %s", best.name,
                   best.sa, gi->push_service_account, fix);
        else
            report(c, "push_subscription", MP_CHECK_FAIL,
                   "%s uses OIDC audience %s but push_audience is %s: %s", best.name,
                   best.aud, gi->push_audience, fix);
    }
    candidate_clear(&best);
}

static void check_pull_subscription(check_ctx *c)
{
    const gmail_instance *gi = c->a->inst;
    json_t *sub;
    char why[420];
    ps_result r = pubsub_get(c, gi->subscription, &sub, why, sizeof why);
    if (r == PS_DENIED) {
        denied(c, "pull_subscription", why);
    } else if (r == PS_GONE) {
        report(c, "pull_subscription", MP_CHECK_FAIL,
               "subscription %s does not exist: gcloud pubsub subscriptions create %s"
               " --topic=%s",
               gi->subscription, gi->subscription, gi->topic);
    } else if (r != PS_OK) {
        report(c, "pull_subscription", MP_CHECK_WARN,
               "subscription %s not verified (%s); run the check again", gi->subscription,
               why);
    } else {
        const char *topic = json_string_value(json_object_get(sub, "topic"));
        const char *endpoint = json_string_value(
            json_object_get(json_object_get(sub, "pushConfig"), "pushEndpoint"));
        json_t *ack = json_object_get(sub, "ackDeadlineSeconds");
        if (topic == NULL || strcmp(topic, gi->topic) != 0)
            report(c, "pull_subscription", MP_CHECK_FAIL,
                   "subscription %s is attached to %s, not to topic %s: create one on %s"
                   " (gcloud pubsub subscriptions create NAME --topic=%s) and set"
                   " subscription",
                   gi->subscription, topic != NULL ? topic : "no topic", gi->topic,
                   gi->topic, gi->topic);
        else if (endpoint != NULL && endpoint[0] != '\0')
            report(
                c, "pull_subscription", MP_CHECK_FAIL,
                "subscription %s pushes to %s, so nothing is left to pull: gcloud pubsub"
                " subscriptions modify-push-config %s --push-endpoint=\"\"",
                gi->subscription, endpoint, gi->subscription);
        else
            report(c, "pull_subscription", MP_CHECK_OK,
                   "%s pulls from %s (ack deadline %" JSON_INTEGER_FORMAT " s)",
                   gi->subscription, gi->topic,
                   json_is_integer(ack) ? json_integer_value(ack) : (json_int_t)10);
    }
    json_decref(sub);
}

/* ---- the watch ---- */

/* "2026-12-14 02:50:00 UTC" */
static void utc_text(int64_t unix_s, char *buf, size_t len)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void check_watch(check_ctx *c)
{
    const mp_host *h = gmail_host;
    gmail_account *a = c->a;
    if (!MP_HOST_HAS(h, subscription_get)) {
        report(c, "watch", MP_CHECK_SKIP, "this mailpulsed cannot show stored watches");
        return;
    }
    mp_subscription sub;
    memset(&sub, 0, sizeof sub);
    mp_error e = {0, ""};
    mp_status st = h->subscription_get(a->acct, &sub, &e);
    if (st == MP_SKIP) {
        report(
            c, "watch", MP_CHECK_WARN,
            "no watch active yet: the daemon calls users.watch at its next sync once the"
            " topic and its publisher grant are in place (see gmail-status)");
        return;
    }
    if (st != MP_OK) {
        report(c, "watch", MP_CHECK_WARN, "the stored watch was not readable (%s)",
               e.text);
        return;
    }
    pthread_mutex_lock(&a->lock);
    int64_t real_ms = a->watch_expiration_ms;
    pthread_mutex_unlock(&a->lock);
    /* After a restart the real expiry is only in the driver's state. */
    char *kept = NULL;
    if (real_ms <= 0 && MP_HOST_HAS(h, state_get) &&
        h->state_get(a->acct, "watch_expiration", &kept, &e) == MP_OK) {
        real_ms = strtoll(kept, NULL, 10);
        h->free(kept);
    }
    char real[48], renew[48];
    utc_text(real_ms > 0 ? real_ms / 1000 : sub.expires_at, real, sizeof real);
    utc_text(sub.expires_at - 24 * 3600, renew, sizeof renew);
    report(c, "watch", MP_CHECK_OK, "watch on %s until %s, next renewal around %s",
           sub.provider_id != NULL ? sub.provider_id : a->inst->topic, real, renew);
}

/* ---- the live test ---- */

/* RFC 4648 §5 without padding, through OpenSSL; malloc'd. */
static char *b64url(const char *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out == NULL)
        abort();
    int n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (char *p = out; *p != '\0'; p++)
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    return out;
}

static void check_live(check_ctx *c)
{
    const mp_host *h = gmail_host;
    gmail_account *a = c->a;
    if (c->insert == 0) {
        report(
            c, "live_test", MP_CHECK_SKIP,
            "the credentials cannot insert (no gmail.insert scope): send a message to %s"
            " by hand",
            a->email);
        return;
    }
    int64_t now = h->now_ms();
    time_t t = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char stamp[40], date[64];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + strlen(stamp), sizeof stamp - strlen(stamp), ".%03dZ",
             (int)(now % 1000));
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memset(rnd, 0, sizeof rnd);
    char msg[1024];
    int len =
        snprintf(msg, sizeof msg,
                 "From: mailpulse setup <%s>\r\n"
                 "To: %s\r\n"
                 "Subject: mailpulse live test %s\r\n"
                 "Date: %s\r\n"
                 "Message-ID: <mailpulse-live-%" PRId64 "-%02x%02x%02x%02x%02x%02x%02x"
                 "%02x@mailpulse.invalid>\r\n"
                 "MIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=UTF-8\r\n"
                 "\r\n"
                 "mailpulse inserted this message to test push delivery"
                 " (mailpulsectl gmail-setup). You may delete it.\r\n",
                 a->email, a->email, stamp, date, now, rnd[0], rnd[1], rnd[2], rnd[3],
                 rnd[4], rnd[5], rnd[6], rnd[7]);
    char *raw = b64url(msg, (size_t)len);
    json_t *doc = json_pack("{s:s, s:[s,s]}", "raw", raw, "labelIds", "INBOX", "UNREAD");
    free(raw);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (body == NULL)
        abort();
    char *url = gmail_api_url(a, "messages?internalDateSource=receivedTime");
    gmail_call call = {.method = "POST",
                       .url = url,
                       .content_type = "application/json",
                       .body = (const uint8_t *)body,
                       .body_len = strlen(body),
                       .units = UNITS_INSERT,
                       .max_response = CHECK_MAX_RESPONSE,
                       .any_status = 1};
    mp_http_response resp;
    mp_error e = {0, ""};
    mp_status st = gmail_http_call(a, &call, "messages.insert", &resp, &e);
    free(url);
    free(body);
    if (st != MP_OK) {
        report(c, "live_test", MP_CHECK_FAIL, "%s; run the check again", e.text);
        return;
    }
    char why[420];
    if (resp.status == 403) {
        answer_text(&resp, why, sizeof why);
        report(
            c, "live_test", MP_CHECK_SKIP,
            "the credentials cannot insert (messages.insert answered %s): send a message"
            " to %s by hand",
            why, a->email);
    } else if (resp.status != 200) {
        answer_text(&resp, why, sizeof why);
        report(c, "live_test", MP_CHECK_FAIL, "messages.insert answered %s", why);
    } else {
        json_t *root = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
        const char *id = json_string_value(json_object_get(root, "id"));
        if (id != NULL && id[0] != '\0' && strchr(id, ' ') == NULL)
            report(c, "live_test", MP_CHECK_OK, "%s inserted into INBOX of %s at %s", id,
                   a->email, stamp);
        else
            report(c, "live_test", MP_CHECK_FAIL,
                   "messages.insert answered 200 without a message id");
        json_decref(root);
    }
    h->http_free(&resp);
}

/* ---- the slot ---- */

static void skip_rest(check_ctx *c, int live, const char *why)
{
    static const char *const names[] = {"profile",   "scopes", "topic",
                                        "publisher", "watch",  NULL};
    const gmail_instance *gi = c->a->inst;
    for (const char *const *n = names; *n != NULL; n++) {
        int pubsub = strcmp(*n, "topic") == 0 || strcmp(*n, "publisher") == 0;
        if (!pubsub || gi->push != GMAIL_PUSH_OFF)
            report(c, *n, MP_CHECK_SKIP, "%s", why);
    }
    if (gi->push == GMAIL_PUSH_PUBSUB_PUSH)
        report(c, "push_subscription", MP_CHECK_SKIP, "%s", why);
    if (gi->push == GMAIL_PUSH_PUBSUB_PULL)
        report(c, "pull_subscription", MP_CHECK_SKIP, "%s", why);
    if (live)
        report(c, "live_test", MP_CHECK_SKIP, "%s", why);
}

mp_status gmail_check(mp_account *acct, unsigned flags, mp_check *chk, mp_error *err)
{
    const mp_host *h = gmail_host;
    if (!MP_HOST_HAS(h, check_report))
        return mp_fail(err, MP_FATAL, "this mailpulsed has no check_report (ABI < 1.2)");
    gmail_account *a = h->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "gmail account not open");
    check_ctx c = {.a = a, .chk = chk, .insert = -1};
    int live = (flags & MP_CHECK_LIVE) != 0;
    if (check_credentials(&c) < 0) {
        skip_rest(&c, live, "needs working credentials (see credentials)");
    } else {
        check_profile(&c);
        check_scopes(&c);
        const gmail_instance *gi = a->inst;
        if (gi->push != GMAIL_PUSH_OFF && check_topic(&c) == 0) {
            if (gi->push == GMAIL_PUSH_PUBSUB_PUSH)
                check_push_subscription(&c);
            else
                check_pull_subscription(&c);
        } else if (gi->push == GMAIL_PUSH_PUBSUB_PUSH) {
            report(&c, "push_subscription", MP_CHECK_SKIP, "needs the topic");
        } else if (gi->push == GMAIL_PUSH_PUBSUB_PULL) {
            report(&c, "pull_subscription", MP_CHECK_SKIP, "needs the topic");
        }
        if (gi->push == GMAIL_PUSH_OFF)
            report(&c, "watch", MP_CHECK_SKIP,
                   "push is off: history every poll interval (set push: pubsub-push or"
                   " pubsub-pull for realtime)");
        else
            check_watch(&c);
        if (live)
            check_live(&c);
    }
    /* The setup parameters (no secrets) for `gmail-setup`'s script, from
     * here and not from account_open: set_profile is a store write, which
     * the loop thread should not do once per account at startup. */
    char *profile = gmail_profile_json(a, c.push_endpoint);
    h->set_profile(acct, profile);
    free(profile);
    free(c.push_endpoint);
    return MP_OK;
}

/*
 * The one place Gmail's HTTP answers become statuses (like isync's
 * transform_box_response): every request goes through gmail_http_call,
 * which admits it against the per-user quota budget, authorizes it with the
 * host's OAuth2 token, retries once with a fresh token after a 401, and maps
 * the answer. Rate limits close the budget until Google's Retry-After (or
 * our own backoff), so neither the sync nor a concurrent fetch sends
 * anything inside that window.
 */
#include "gmail_driver.h"
#include "gmail_multipart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#define BACKOFF_FIRST_MS 1000u
#define BACKOFF_MAX_MS 64000u
/* Waiting for quota inside a call is worth it up to this; beyond, the
 * scheduler gets MP_RETRY with the time to the next free unit. */
#define QUOTA_WAIT_MAX_MS 5000

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Admit `units`, waiting once (up to the deadline) when that is enough. */
static mp_status admit(gmail_account *a, uint32_t units, int64_t deadline, const char *what,
                       mp_error *err)
{
    for (int slept = 0;; slept = 1) {
        int64_t now = gmail_host->now_ms();
        pthread_mutex_lock(&a->lock);
        int64_t wait = gmail_quota_take(&a->quota, now, units);
        pthread_mutex_unlock(&a->lock);
        if (wait == 0)
            return MP_OK;
        int64_t limit = deadline > 0 ? deadline : now + QUOTA_WAIT_MAX_MS;
        if (slept || now + wait > limit || wait > QUOTA_WAIT_MAX_MS) {
            err->retry_after_ms = (uint32_t)(wait > 0 ? wait : 1);
            return mp_fail(err, MP_RETRY, "%s: Gmail quota budget spent; next free unit in"
                           " %lld ms", what, (long long)wait);
        }
        sleep_ms(wait);
    }
}

void gmail_google_error(const char *body, size_t len, char *reason, size_t rcap,
                        char *msg, size_t mcap)
{
    reason[0] = msg[0] = '\0';
    if (body == NULL || len == 0)
        return;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    json_t *e = json_object_get(root, "error");
    if (json_is_object(e)) {
        const char *m = json_string_value(json_object_get(e, "message"));
        json_t *first = json_array_get(json_object_get(e, "errors"), 0);
        const char *r = json_string_value(json_object_get(first, "reason"));
        if (r == NULL)
            r = json_string_value(json_object_get(e, "status"));
        if (r != NULL)
            snprintf(reason, rcap, "%s", r);
        if (m != NULL)
            snprintf(msg, mcap, "%s", m);
    } else if (json_is_string(e)) {
        snprintf(reason, rcap, "%s", json_string_value(e));
    }
    json_decref(root);
}

/* Close the budget for `ms` (our backoff when Google gave no Retry-After). */
static uint32_t close_budget(gmail_account *a, uint32_t retry_after_ms)
{
    pthread_mutex_lock(&a->lock);
    uint32_t ms = retry_after_ms;
    if (ms == 0) {
        ms = a->backoff_ms != 0 ? a->backoff_ms : BACKOFF_FIRST_MS;
        a->backoff_ms = ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
    }
    gmail_quota_close(&a->quota, gmail_host->now_ms() + ms);
    pthread_mutex_unlock(&a->lock);
    return ms;
}

mp_status gmail_http_status(gmail_account *a, long status, const char *body, size_t len,
                            uint32_t retry_after_ms, const char *what, mp_error *err)
{
    if (status >= 200 && status < 300) {
        pthread_mutex_lock(&a->lock);
        a->backoff_ms = 0;
        pthread_mutex_unlock(&a->lock);
        return MP_OK;
    }
    char reason[64], msg[256];
    gmail_google_error(body, len, reason, sizeof reason, msg, sizeof msg);
    int rate = status == 429 ||
               (status == 403 && (strcmp(reason, "rateLimitExceeded") == 0 ||
                                  strcmp(reason, "userRateLimitExceeded") == 0 ||
                                  strcmp(reason, "dailyLimitExceeded") == 0));
    if (rate) {
        err->retry_after_ms = close_budget(a, retry_after_ms);
        return mp_fail(err, MP_RETRY, "%s: rate limited by Gmail (%ld %s); retry in %u ms",
                       what, status, reason[0] ? reason : "rateLimitExceeded",
                       (unsigned)err->retry_after_ms);
    }
    if (status >= 500 || status == 0 || status == 408) {
        err->retry_after_ms = retry_after_ms;
        return mp_fail(err, MP_RETRY, "%s: Gmail answered %ld%s%s", what, status,
                       msg[0] ? ": " : "", msg);
    }
    if (status == 404)
        return mp_fail(err, MP_SKIP, "%s: not found", what);
    if (status == 401)
        return mp_fail(err, MP_REAUTH, "%s: Gmail refused the access token twice (%s)", what,
                       msg[0] ? msg : "401");
    return mp_fail(err, MP_FATAL, "%s: Gmail answered %ld %s%s%s", what, status, reason,
                   msg[0] ? ": " : "", msg);
}

mp_status gmail_http_call(gmail_account *a, const gmail_call *c, const char *what,
                          mp_http_response *resp_r, mp_error *err)
{
    memset(resp_r, 0, sizeof *resp_r);
    if (!MP_HOST_HAS(gmail_host, oauth_token) || !MP_HOST_HAS(gmail_host, http_ex))
        return mp_fail(err, MP_FATAL, "the host offers no OAuth2 tokens or http_ex"
                                      " (mailpulsed too old for gmail.so)");
    mp_status st = admit(a, c->units, c->deadline_ms, what, err);
    if (st != MP_OK)
        return st;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *token = NULL;
        st = gmail_host->oauth_token(a->acct, &token, err);
        if (st != MP_OK)
            return st; /* the host's reason and retry_after_ms */
        size_t hl = strlen(token) + 32;
        char *auth = malloc(hl);
        if (auth == NULL)
            abort();
        snprintf(auth, hl, "Authorization: Bearer %s", token);
        char ctype[128];
        const char *headers[4];
        size_t nh = 0;
        headers[nh++] = auth;
        headers[nh++] = "Accept: application/json";
        if (c->content_type != NULL) {
            snprintf(ctype, sizeof ctype, "Content-Type: %s", c->content_type);
            headers[nh++] = ctype;
        }
        headers[nh] = NULL;
        mp_http_request req = {
            .method = c->method,
            .url = c->url,
            .headers = headers,
            .body = c->body,
            .body_len = c->body_len,
            .timeout_ms = 60000,
        };
        mp_http_options opt = {
            .struct_size = sizeof opt,
            .max_redirects = 0,
            .max_response = c->max_response,
        };
        mp_http_response resp;
        memset(&resp, 0, sizeof resp);
        st = gmail_host->http_ex(a->acct, &req, &opt, &resp, err);
        /* The header holds the token: wipe it before it goes back to malloc. */
        volatile char *w = auth;
        for (size_t i = 0; i < hl; i++)
            w[i] = 0;
        free(auth);
        if (st != MP_OK) {
            gmail_host->free_secret(&token);
            return st; /* transport failure: MP_RETRY from the host */
        }
        if (resp.status == 401 && attempt == 0) {
            /* Expired or revoked early: drop it and ask once more. */
            gmail_host->oauth_reject(a->acct, token);
            gmail_host->free_secret(&token);
            gmail_host->http_free(&resp);
            continue;
        }
        gmail_host->free_secret(&token);
        if (c->any_status) {
            *resp_r = resp;
            return MP_OK;
        }
        if (resp.status == 400 && c->skip_on_400) {
            gmail_host->http_free(&resp);
            return mp_fail(err, MP_SKIP, "%s: Gmail refused the request (400)", what);
        }
        st = gmail_http_status(a, resp.status, (const char *)resp.body, resp.body_len,
                               resp.retry_after_ms, what, err);
        if (st == MP_OK) {
            *resp_r = resp;
            return MP_OK;
        }
        gmail_host->http_free(&resp);
        return st;
    }
    return mp_fail(err, MP_REAUTH, "%s: Gmail refused the access token twice", what);
}

unsigned gmail_batch_size(gmail_account *a)
{
    pthread_mutex_lock(&a->lock);
    unsigned n = a->batch_size;
    pthread_mutex_unlock(&a->lock);
    return n != 0 ? n : GMAIL_BATCH_MAX;
}

void gmail_batch_feedback(gmail_account *a, int clean)
{
    pthread_mutex_lock(&a->lock);
    unsigned n = a->batch_size != 0 ? a->batch_size : GMAIL_BATCH_MAX;
    if (clean)
        n = n * 2 > GMAIL_BATCH_MAX ? GMAIL_BATCH_MAX : n * 2;
    else
        n = n / 2 > 0 ? n / 2 : 1;
    a->batch_size = n;
    pthread_mutex_unlock(&a->lock);
}

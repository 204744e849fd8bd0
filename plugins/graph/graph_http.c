/*
 * The one place Graph's HTTP answers become statuses (like isync's
 * transform_box_response): every request goes through graph_http_call,
 * which admits it against the mailbox's request budget, authorizes it
 * with the host's OAuth2 token, asks for immutable ids, retries once with a
 * fresh token after a 401, and maps the answer.
 *
 * Throttling (providers.md §3): 429 and 503 carry Retry-After in seconds;
 * the host parses it into retry_after_ms. The budget is closed until then
 * (or our own doubling backoff without one), so neither the sync nor a
 * concurrent fetch sends anything to the mailbox inside that window; the
 * scheduler gets MP_RETRY with the wait.
 *
 * Concurrency: Outlook allows 4 requests in flight per app and mailbox,
 * and runs up to 4 parts of a JSON $batch at once, each counting against
 * that limit. The host caps the account at GRAPH_HTTP_LIMIT requests
 * (http_limit in account_open), which counts a $batch as one; so the driver
 * also keeps its own weighted count: a request holds one slot, a $batch
 * min(parts, 4), and a request waits for its slots (a reader's fetch waits
 * for the sync's $batch, at most one batch's time) rather than draw a 429.
 */
#include "graph_driver.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_FIRST_MS 2000u
#define BACKOFF_MAX_MS 120000u
/* Waiting for the budget inside a call is worth it up to this; beyond, the
 * scheduler gets MP_RETRY with the time until it opens. */
#define BUDGET_WAIT_MAX_MS 5000

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

void graph_log(graph_account *a, mp_log_level level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    graph_host->log(graph_host->account_instance(a->acct), a->acct, level, "%s", buf);
}

/* Admit `n` requests, waiting once (up to the deadline) when that is
 * enough. */
static mp_status admit(graph_account *a, uint32_t n, int64_t deadline, const char *what,
                       mp_error *err)
{
    for (int slept = 0;; slept = 1) {
        int64_t now = graph_host->now_ms();
        pthread_mutex_lock(&a->lock);
        int64_t wait = graph_budget_take(&a->budget, now, n);
        pthread_mutex_unlock(&a->lock);
        if (wait == 0)
            return MP_OK;
        int64_t limit = deadline > 0 ? deadline : now + BUDGET_WAIT_MAX_MS;
        if (slept || now + wait > limit || wait > BUDGET_WAIT_MAX_MS) {
            err->retry_after_ms = (uint32_t)(wait > 0 ? wait : 1);
            return mp_fail(err, MP_RETRY,
                           "%s: the mailbox's Graph request budget is spent or Graph asked"
                           " us to wait; next request in %lld ms",
                           what, (long long)wait);
        }
        sleep_ms(wait);
    }
}

/* Wait for `w` mailbox slots (see the top of this file). */
static void slots_take(graph_account *a, unsigned w)
{
    pthread_mutex_lock(&a->lock);
    while (a->slots + w > GRAPH_HTTP_LIMIT && a->slots > 0)
        pthread_cond_wait(&a->slot_free, &a->lock);
    a->slots += w;
    pthread_mutex_unlock(&a->lock);
}

static void slots_give(graph_account *a, unsigned w)
{
    pthread_mutex_lock(&a->lock);
    a->slots -= w;
    pthread_cond_broadcast(&a->slot_free);
    pthread_mutex_unlock(&a->lock);
}

/* Close the budget for Retry-After, or for our own doubling backoff. */
static uint32_t close_budget(graph_account *a, uint32_t retry_after_ms)
{
    pthread_mutex_lock(&a->lock);
    uint32_t ms = retry_after_ms;
    if (ms == 0) {
        ms = a->backoff_ms != 0 ? a->backoff_ms : BACKOFF_FIRST_MS;
        a->backoff_ms = ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
    }
    graph_budget_close(&a->budget, graph_host->now_ms() + ms);
    pthread_mutex_unlock(&a->lock);
    return ms;
}

mp_status graph_http_status(graph_account *a, long status, const char *body, size_t len,
                            uint32_t retry_after_ms, const char *what, mp_error *err)
{
    if (status >= 200 && status < 300) {
        pthread_mutex_lock(&a->lock);
        a->backoff_ms = 0;
        pthread_mutex_unlock(&a->lock);
        return MP_OK;
    }
    char code[96], msg[256];
    graph_error_parse(body, len, code, sizeof code, msg, sizeof msg);
    if (status == 410 || graph_sync_state_gone(code))
        return mp_fail(err, MP_RESYNC, "%s: Graph no longer has the delta state (%ld %s)",
                       what, status, code[0] ? code : "Gone");
    if (status == 429 || status == 503) {
        err->retry_after_ms = close_budget(a, retry_after_ms);
        return mp_fail(err, MP_RETRY, "%s: throttled by Graph (%ld%s%s); retry in %u ms", what,
                       status, code[0] ? " " : "", code, (unsigned)err->retry_after_ms);
    }
    if (status >= 500 || status == 0 || status == 408) {
        err->retry_after_ms = retry_after_ms;
        return mp_fail(err, MP_RETRY, "%s: Graph answered %ld%s%s", what, status,
                       msg[0] ? ": " : "", msg);
    }
    if (status == 404)
        return mp_fail(err, MP_SKIP, "%s: not found", what);
    if (status == 401)
        return mp_fail(err, MP_REAUTH, "%s: Graph refused the access token twice (%s)", what,
                       code[0] ? code : "401");
    if (status == 403)
        return mp_fail(err, MP_FATAL,
                       "%s: Graph refused access (403 %s%s%s): the app needs the Mail.Read"
                       " permission for this mailbox (admin consent for auth: app)",
                       what, code, msg[0] ? ": " : "", msg);
    return mp_fail(err, MP_FATAL, "%s: Graph answered %ld %s%s%s", what, status, code,
                   msg[0] ? ": " : "", msg);
}

static void wipe_free(char *s, size_t n)
{
    volatile char *w = s;
    for (size_t i = 0; i < n; i++)
        w[i] = 0;
    free(s);
}

mp_status graph_http_call(graph_account *a, const graph_call *c, const char *what,
                          mp_http_response *resp_r, mp_error *err)
{
    memset(resp_r, 0, sizeof *resp_r);
    if (!graph_link_ok(a, c->url))
        return mp_fail(err, MP_RESYNC, "%s: a link outside the configured api_url was refused",
                       what);
    mp_status st = admit(a, c->requests > 0 ? c->requests : 1, c->deadline_ms, what, err);
    if (st != MP_OK)
        return st;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *token = NULL;
        st = graph_host->oauth_token(a->acct, &token, err);
        if (st != MP_OK)
            return st; /* the host's reason and retry_after_ms */
        size_t hl = strlen(token) + 32;
        char *auth = malloc(hl);
        if (auth == NULL)
            abort();
        snprintf(auth, hl, "Authorization: Bearer %s", token);
        char prefer[96], ctype[128];
        if (c->page_size > 0)
            snprintf(prefer, sizeof prefer,
                     "Prefer: IdType=\"ImmutableId\", odata.maxpagesize=%u",
                     (unsigned)c->page_size);
        else
            snprintf(prefer, sizeof prefer, "Prefer: IdType=\"ImmutableId\"");
        const char *headers[5];
        size_t nh = 0;
        headers[nh++] = auth;
        headers[nh++] = prefer;
        if (!c->raw)
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
        unsigned w = c->weight == 0 ? 1 : c->weight > GRAPH_HTTP_LIMIT ? GRAPH_HTTP_LIMIT
                                                                        : c->weight;
        slots_take(a, w);
        st = graph_host->http_ex(a->acct, &req, &opt, &resp, err);
        slots_give(a, w);
        wipe_free(auth, hl);
        if (st != MP_OK) {
            graph_host->free_secret(&token);
            return st; /* transport failure: MP_RETRY from the host */
        }
        if (resp.status == 401 && attempt == 0) {
            /* Expired or revoked early: drop it and ask once more. */
            graph_host->oauth_reject(a->acct, token);
            graph_host->free_secret(&token);
            graph_host->http_free(&resp);
            continue;
        }
        graph_host->free_secret(&token);
        if (c->any_status) {
            *resp_r = resp;
            return MP_OK;
        }
        if (resp.status == 400 && c->skip_on_400) {
            char code[96], msg[256];
            graph_error_parse((const char *)resp.body, resp.body_len, code, sizeof code, msg,
                              sizeof msg);
            graph_host->http_free(&resp);
            return mp_fail(err, MP_SKIP, "%s: Graph refused it (400 %s)", what, code);
        }
        st = graph_http_status(a, resp.status, (const char *)resp.body, resp.body_len,
                               resp.retry_after_ms, what, err);
        if (st == MP_OK) {
            *resp_r = resp;
            return MP_OK;
        }
        graph_host->http_free(&resp);
        return st;
    }
    return mp_fail(err, MP_REAUTH, "%s: Graph refused the access token twice", what);
}

/*
 * The JWKS refresher (gmail_push.h): one thread per pubsub-push instance
 * that keeps the key cache push_verify reads filled. It fetches certs_url
 * through the host's HTTP client whenever the cache says a refresh is due
 * (nothing loaded, the set about to expire, or push_verify met an unknown
 * kid and the cache allowed a refetch) and loads the answer with its
 * Cache-Control max-age. A failed fetch is retried with its own backoff
 * (5 s doubling to 5 min), so a Google outage costs us one request per
 * backoff step, not one per push.
 */
#include "gmail_multipart.h"
#include "gmail_push.h"

#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 5000
#define BACKOFF_MAX_MS (5 * 60 * 1000)
/* Longest sleep between looks at the cache. */
#define IDLE_MAX_MS (60 * 1000)
#define FETCH_TIMEOUT_MS 15000

/* One fetch; 0 when the cache took a new set. */
static int fetch_once(gmail_push_rt *rt)
{
    const mp_host *h = gmail_host;
    const char *headers[] = {"Accept: application/json", NULL};
    mp_http_request req = {.method = "GET",
                           .url = rt->gi->certs_url,
                           .headers = headers,
                           .timeout_ms = FETCH_TIMEOUT_MS};
    mp_http_options opt = {.struct_size = sizeof opt, .max_response = GMAIL_JWKS_DOC_MAX};
    mp_http_response resp;
    mp_error err = {0, ""};
    mp_status st = h->http_ex(NULL, &req, &opt, &resp, &err);
    if (st != MP_OK) {
        h->log(rt->inst, NULL, MP_LOG_WARNING, "push: JWKS fetch failed: %s", err.text);
        return -1;
    }
    int rc = -1;
    if (resp.status != 200) {
        h->log(rt->inst, NULL, MP_LOG_WARNING, "push: JWKS fetch answered HTTP %ld",
               resp.status);
    } else {
        /* Google sends "public, max-age=N, must-revalidate, no-transform". */
        char cc[512];
        int have_cc = resp.headers != NULL &&
                      gmail_header_value(resp.headers, strlen(resp.headers),
                                         "Cache-Control", cc, sizeof cc) == 0;
        char why[200] = "";
        rc = gmail_jwks_update(rt->jwks, (const char *)resp.body, resp.body_len,
                               have_cc ? cc : NULL, h->now_ms() / 1000, why, sizeof why);
        if (rc < 0)
            h->log(rt->inst, NULL, MP_LOG_WARNING, "push: JWKS refused: %s", why);
        else
            h->log(rt->inst, NULL, MP_LOG_DEBUG, "push: JWKS loaded, %zu keys",
                   gmail_jwks_count(rt->jwks));
    }
    h->http_free(&resp);
    return rc;
}

void *gmail_refresher_main(void *arg)
{
    gmail_push_rt *rt = arg;
    const mp_host *h = gmail_host;
    int64_t backoff = 0, retry_at = 0;
    pthread_mutex_lock(&rt->lock);
    while (!rt->stopping) {
        int64_t now_ms = h->now_ms();
        int due = gmail_jwks_refresh_due(rt->jwks, now_ms / 1000);
        if (due && now_ms >= retry_at) {
            rt->refetch = 0;
            pthread_mutex_unlock(&rt->lock);
            int ok = fetch_once(rt) == 0;
            pthread_mutex_lock(&rt->lock);
            if (ok) {
                backoff = 0;
                retry_at = 0;
            } else {
                backoff = backoff == 0 ? BACKOFF_MIN_MS : backoff * 2;
                if (backoff > BACKOFF_MAX_MS)
                    backoff = BACKOFF_MAX_MS;
                retry_at = h->now_ms() + backoff;
            }
            continue;
        }
        /* Sleep until the set is about to expire, a retry is allowed, or
         * push_verify asks (a refetch wakes us through rt->wake). */
        int64_t wait = IDLE_MAX_MS;
        if (due) {
            wait = retry_at - now_ms;
        } else {
            int64_t exp = gmail_jwks_expires_at(rt->jwks);
            int64_t until = (exp - GMAIL_JWKS_REFRESH_AHEAD) * 1000 - now_ms;
            if (until < wait)
                wait = until;
        }
        if (wait < 50)
            wait = 50;
        if (rt->refetch && !due)
            rt->refetch = 0; /* the cache did not want it (rate limit) */
        gmail_push_wait_locked(rt, wait);
    }
    pthread_mutex_unlock(&rt->lock);
    return NULL;
}

/* libcurl multi on the daemon's event loop: curl tells which sockets and
 * which timeout to watch, libevent tells curl when they are ready. No
 * thread is ever blocked by a slow receiver. */
#include "webhook/webhook_private.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "util/util.h"

struct mpw_transfer {
    mpw_transfer *next;
    CURL *easy;
    struct curl_slist *headers;
    mpw_done_fn done;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
};

struct mpw_curl {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    mpw_transfer *transfers;
};

static void transfer_free(mpw_curl *c, mpw_transfer *t)
{
    for (mpw_transfer **p = &c->transfers; *p != NULL; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    curl_multi_remove_handle(c->multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    free(t);
}

static void finish(mpw_curl *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        mpw_transfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        CURLcode result = msg->data.result;
        long status = 0;
        curl_off_t retry_after = 0;
        char *error = NULL;
        if (result == CURLE_OK) {
            curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &retry_after);
        } else {
            error = mpu_strdup(t->errbuf[0] != '\0' ? t->errbuf : curl_easy_strerror(result));
        }
        mpw_done_fn done = t->done;
        void *arg = t->arg;
        transfer_free(c, t);
        uint32_t ra = retry_after > 0 ? (retry_after > 86400 ? 86400u : (uint32_t)retry_after)
                                      : 0;
        done(arg, status, ra, error);
        free(error);
    }
}

static void on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    mpw_curl *c = arg;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    finish(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mpw_curl *c = arg;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    finish(c);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    mpw_curl *c = userp;
    struct event *ev = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (ev != NULL) {
            event_free(ev);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (ev != NULL) {
        event_del(ev);
        event_assign(ev, c->base, s, kind, on_socket_ready, c);
    } else {
        ev = event_new(c->base, s, kind, on_socket_ready, c);
        curl_multi_assign(c->multi, s, ev);
    }
    event_add(ev, NULL);
    return 0;
}

/* curl must not be re-entered from here: only arm the timer. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    mpw_curl *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 0;
}

mpw_curl *mpw_curl_new(struct event_base *base)
{
    mpw_curl *c = mpu_calloc(1, sizeof *c);
    c->base = base;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timeout, c);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

void mpw_curl_free(mpw_curl **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    mpw_curl *c = *cp;
    while (c->transfers != NULL)
        transfer_free(c, c->transfers);
    curl_multi_cleanup(c->multi);
    event_free(c->timer);
    free(c);
    *cp = NULL;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

mpw_transfer *mpw_post(mpw_curl *c, const char *url, struct curl_slist *headers,
                       const char *body, size_t len, uint32_t timeout_ms, mpw_done_fn done,
                       void *arg, char **error_r)
{
    mpw_transfer *t = mpu_calloc(1, sizeof *t);
    t->easy = curl_easy_init();
    t->headers = headers;
    t->done = done;
    t->arg = arg;
    CURL *e = t->easy;
    if (e == NULL) {
        curl_slist_free_all(headers);
        free(t);
        *error_r = mpu_strdup("cannot create a curl handle");
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* A redirect would resend a signed body somewhere the admin never
     * configured: it counts as a failure instead. */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    CURLMcode mc = curl_multi_add_handle(c->multi, e);
    if (mc != CURLM_OK) {
        *error_r = mpu_asprintf("cannot start the transfer: %s", curl_multi_strerror(mc));
        curl_easy_cleanup(e);
        curl_slist_free_all(headers);
        free(t);
        return NULL;
    }
    t->next = c->transfers;
    c->transfers = t;
    return t;
}

void mpw_cancel(mpw_curl *c, mpw_transfer **t)
{
    if (t == NULL || *t == NULL)
        return;
    transfer_free(c, *t);
    *t = NULL;
}

/* libcurl multi on a libevent loop: curl tells which sockets and which
 * timeout to watch, libevent tells curl when they are ready. No thread is
 * ever blocked by a slow peer. */
#include "net/net_private.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "util/util.h"

struct mpn_transfer {
    mpn_transfer *next;
    CURL *easy;
    mpn_xfer x;
    mpn_done_fn done;
    void *arg;
};

struct mpn_multi {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    mpn_transfer *transfers;
};

static void transfer_free(mpn_multi *m, mpn_transfer *t)
{
    for (mpn_transfer **p = &m->transfers; *p != NULL; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    curl_multi_remove_handle(m->multi, t->easy);
    curl_easy_cleanup(t->easy);
    mpn_xfer_release(&t->x);
    free(t);
}

static void finish(mpn_multi *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        mpn_transfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        mpn_result res;
        mpn_xfer_finish(&t->x, t->easy, msg->data.result, &res);
        mpn_done_fn done = t->done;
        void *arg = t->arg;
        transfer_free(m, t);
        done(arg, &res);
        mpn_result_clear(&res);
    }
}

static void on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    mpn_multi *m = arg;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(m->multi, fd, flags, &running);
    finish(m);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mpn_multi *m = arg;
    int running;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    finish(m);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    mpn_multi *m = userp;
    struct event *ev = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (ev != NULL) {
            event_free(ev);
            curl_multi_assign(m->multi, s, NULL);
        }
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (ev != NULL) {
        event_del(ev);
        event_assign(ev, m->base, s, kind, on_socket_ready, m);
    } else {
        ev = event_new(m->base, s, kind, on_socket_ready, m);
        curl_multi_assign(m->multi, s, ev);
    }
    event_add(ev, NULL);
    return 0;
}

/* curl must not be re-entered from here: only arm the timer. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    mpn_multi *m = userp;
    if (timeout_ms < 0) {
        evtimer_del(m->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(m->timer, &tv);
    return 0;
}

mpn_multi *mpn_multi_new(struct event_base *base)
{
    mpn_multi *m = mpu_calloc(1, sizeof *m);
    m->base = base;
    m->multi = curl_multi_init();
    m->timer = evtimer_new(base, on_timeout, m);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    /* Idle connections kept for reuse (keep-alive). Unset, libcurl keeps
     * 4 per handle currently added, so a finished transfer often closes
     * its connection and concurrent webhook deliveries reconnect for
     * nearly every request. */
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, 256L);
    return m;
}

void mpn_multi_free(mpn_multi **mp)
{
    if (mp == NULL || *mp == NULL)
        return;
    mpn_multi *m = *mp;
    while (m->transfers != NULL)
        transfer_free(m, m->transfers);
    curl_multi_cleanup(m->multi);
    event_free(m->timer);
    free(m);
    *mp = NULL;
}

mpn_transfer *mpn_start(mpn_multi *m, const mpn_request *req, mpn_done_fn done, void *arg,
                        char **error_r)
{
    mpn_transfer *t = mpu_calloc(1, sizeof *t);
    t->done = done;
    t->arg = arg;
    t->easy = curl_easy_init();
    mpn_result res;
    if (t->easy == NULL) {
        free(t);
        *error_r = mpu_strdup("cannot create a curl handle");
        return NULL;
    }
    if (mpn_xfer_setup(&t->x, t->easy, req, 1, &res) < 0) {
        *error_r = res.error;
        res.error = NULL;
        mpn_result_clear(&res);
        curl_easy_cleanup(t->easy);
        mpn_xfer_release(&t->x);
        free(t);
        return NULL;
    }
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    CURLMcode mc = curl_multi_add_handle(m->multi, t->easy);
    if (mc != CURLM_OK) {
        *error_r = mpu_asprintf("cannot start the transfer: %s", curl_multi_strerror(mc));
        curl_easy_cleanup(t->easy);
        mpn_xfer_release(&t->x);
        free(t);
        return NULL;
    }
    t->next = m->transfers;
    m->transfers = t;
    return t;
}

void mpn_cancel(mpn_multi *m, mpn_transfer **t)
{
    if (t == NULL || *t == NULL)
        return;
    transfer_free(m, *t);
    *t = NULL;
}

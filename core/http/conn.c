/*
 * Connection tracking for the API listeners: a cap per listener, a cap
 * per client address, a deadline per request, an idle limit, and accept()
 * failures that pause accepting instead of spinning.
 *
 * Why it looks like this: libevent 2.1 accepts and parses by itself and
 * has no connection cap or per-request hook (evhttp_get_request() is
 * static there, evhttp_set_newreqcb() only came with 2.2). Everything here
 * uses public hooks:
 *  - evhttp_set_bevcb() runs once per accepted connection, before evhttp
 *    builds its connection object. It counts the connection and, at the
 *    cap, disables the listener: its accept loop stops after this one.
 *    It is also where a TLS listener (the push listener) makes an OpenSSL
 *    bufferevent instead of a plain one: evhttp then reads and writes
 *    cleartext through it, and everything below works unchanged (the
 *    input buffer watched is the decrypted one).
 *  - The evhttp connection exists only when the accept callback returns.
 *    The new bufferevent is held (one reference) and attached from an
 *    active event, which runs in the same loop iteration, before anything
 *    is read: bufferevent_getcb() then yields the evhttp_connection (its
 *    cbarg), or no callbacks at all when evhttp freed it on a failure.
 *  - evhttp_connection_set_closecb() counts closes. Its single slot is
 *    shared with raw.c and sse.c through mph_conn_set_closecb().
 *  - An evbuffer callback on the connection's input tells a connection
 *    waiting for a request (idle) from one receiving a request.
 *
 * Deadlines: a connection waiting for a request is closed after
 * idle_timeout; from the first byte of a request, headers and body must be
 * in within request_timeout, however slowly they trickle (evhttp's own
 * timeout restarts on every byte). The clock stops when the request is
 * dispatched (a handler, an SSE stream or a pending raw fetch owns the
 * connection then) and the idle clock starts when the answer is sent.
 *
 * Memory: the token cannot be checked before the body with libevent 2.1
 * (the request object is out of reach until it is dispatched), so what
 * requests still being read can make us hold is bounded instead: past
 * 32 KiB a request needs one of 4 slots of its listener to read on, the
 * others pause reading until a slot frees (or their deadline passes).
 * Worst case per listener: max_connections x (32 KiB + one 16 KiB read)
 * + 4 x max_body.
 *
 * Making room: at a cap, the oldest connection not busy with a dispatched
 * request is closed (slow or idle clients make way for new ones, so a
 * flood cannot lock out a client that sends its request promptly); when
 * every connection is busy, accepting pauses until one closes. When
 * accept() fails (descriptors exhausted), accepting pauses, the oldest
 * idle connection is closed to free a descriptor, and accepting resumes
 * when a connection closes or after a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "http/http_private.h"
#include "util/fdlimit.h"
#include "util/log.h"
#include "util/util.h"

#define DEFAULT_MAX_CONNECTIONS 256
#define DEFAULT_MAX_PER_CLIENT 32
#define DEFAULT_REQUEST_TIMEOUT_MS 20000
#define DEFAULT_IDLE_TIMEOUT_MS 10000
#define ACCEPT_RETRY_MS 1000
/* Bytes a request may bring before it needs a large-request slot: the
 * 16 KiB of headers and a small body. */
#define SMALL_REQUEST_BYTES (32u * 1024u)
/* Requests of a listener reading beyond SMALL_REQUEST_BYTES at once. */
#define LARGE_REQUEST_SLOTS 4

typedef enum conn_state {
    CONN_IDLE,       /* waiting for a request */
    CONN_READING,    /* a request is arriving */
    CONN_DISPATCHED, /* a handler owns the request */
} conn_state;

struct mph_conn {
    mph_listener *l;
    struct evhttp_connection *evcon;
    struct evbuffer *input;
    struct evbuffer_cb_entry *input_cb;
    struct event *timer;
    conn_state state;
    uint64_t received; /* bytes of the request being read */
    bool large;        /* holds a large-request slot */
    bool waiting;      /* reading paused until a slot frees */
    char addr[64];     /* numeric peer address, "" on the unix socket */
    void (*user_close)(struct evhttp_connection *, void *);
    void *user_arg;
    mph_conn *prev, *next;
};

/* Listeners alive on the loop thread, to find a connection from its
 * evhttp_connection alone (mph_conn_set_closecb's callers have no more). */
static mph_listener *all_listeners;

static mpu_log_limit accept_limit = MPU_LOG_LIMIT_INIT(5, 60000);
static mpu_log_limit evict_limit = MPU_LOG_LIMIT_INIT(5, 60000);
static mpu_log_limit timeout_limit = MPU_LOG_LIMIT_INIT(5, 60000);

static uint32_t limit_or(uint32_t value, uint32_t fallback)
{
    return value > 0 ? value : fallback;
}

static uint32_t max_connections(const mph_listener *l)
{
    return limit_or(l->server->limits.max_connections, DEFAULT_MAX_CONNECTIONS);
}

static void arm(mph_conn *c, uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void arm_idle(mph_conn *c)
{
    c->state = CONN_IDLE;
    arm(c, limit_or(c->l->server->limits.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS));
}

/* Accepting resumes when below the cap and no accept() failure waits for
 * its retry; it pauses at the cap. */
static void listener_update(mph_listener *l)
{
    if (l->stopping || l->bound == NULL)
        return;
    struct evconnlistener *lev = evhttp_bound_socket_get_listener(l->bound);
    bool want = !l->error_paused && l->open < max_connections(l);
    if (want && l->paused) {
        evconnlistener_enable(lev);
        l->paused = false;
    } else if (!want && !l->paused) {
        evconnlistener_disable(lev);
        l->paused = true;
    }
}

static void conn_unlink(mph_conn *c)
{
    mph_listener *l = c->l;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->oldest = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        l->newest = c->prev;
}

/* Gives free large-request slots to waiting connections, oldest first. */
static void grant_slots(mph_listener *l)
{
    for (mph_conn *c = l->oldest; c != NULL && l->large_active < LARGE_REQUEST_SLOTS;
         c = c->next) {
        if (!c->waiting)
            continue;
        c->waiting = false;
        c->large = true;
        l->large_active++;
        bufferevent_enable(evhttp_connection_get_bufferevent(c->evcon), EV_READ);
    }
}

/* The request stopped reading (dispatched, or the connection closes). */
static void release_slot(mph_conn *c)
{
    c->received = 0;
    c->waiting = false;
    if (c->large) {
        c->large = false;
        c->l->large_active--;
        if (!c->l->stopping)
            grant_slots(c->l);
    }
}

/* Close callback of every tracked connection: the other user's callback
 * first (it may still look at its request), then the bookkeeping. */
static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    mph_conn *c = arg;
    mph_listener *l = c->l;
    if (c->user_close != NULL)
        c->user_close(evcon, c->user_arg);
    conn_unlink(c);
    release_slot(c);
    evbuffer_remove_cb_entry(c->input, c->input_cb);
    event_free(c->timer);
    free(c);
    l->open--;
    if (l->error_paused && !l->stopping)
        event_active(l->resume_ev, EV_TIMEOUT, 0);
    listener_update(l);
}

static void conn_close(mph_conn *c)
{
    /* Runs from our own events only, never inside an evhttp callback, so
     * freeing the connection here is what evhttp itself would do. */
    evhttp_connection_free(c->evcon);
}

static void conn_timeout(evutil_socket_t fd, short what, void *arg)
{
    mph_conn *c = arg;
    c->l->stats.timed_out++;
    mpu_log_limited(&timeout_limit, MP_LOG_DEBUG, "http",
                    "%s connection from %s: %s deadline passed, closed", c->l->name,
                    c->addr[0] != '\0' ? c->addr : "local",
                    c->state == CONN_IDLE ? "idle" : "request");
    conn_close(c);
}

/* Counts the bytes of a request until it is dispatched: evhttp holds
 * them all (the body stays in the input until complete), whether they
 * come with a token or not. Past SMALL_REQUEST_BYTES a request needs one
 * of the listener's few large-request slots, else its reading pauses
 * until one frees: that bounds what requests still being read can make
 * us hold, whoever sends them. */
static void count_bytes(mph_conn *c, size_t n)
{
    c->received += n;
    if (c->large || c->waiting || c->received <= SMALL_REQUEST_BYTES)
        return;
    if (c->l->large_active < LARGE_REQUEST_SLOTS) {
        c->large = true;
        c->l->large_active++;
    } else {
        c->waiting = true;
        bufferevent_disable(evhttp_connection_get_bufferevent(c->evcon), EV_READ);
    }
}

/* Bytes arriving on a connection waiting for a request start that
 * request's deadline; later bytes do not move it. */
static void conn_input(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                       void *arg)
{
    mph_conn *c = arg;
    if (info->n_added == 0 || c->state == CONN_DISPATCHED)
        return;
    if (c->state == CONN_IDLE) {
        c->state = CONN_READING;
        c->received = 0;
        arm(c, limit_or(c->l->server->limits.request_timeout_ms,
                        DEFAULT_REQUEST_TIMEOUT_MS));
    }
    count_bytes(c, info->n_added);
}

/* Closes the oldest connection of `addr` (any address when NULL) that no
 * handler owns. Returns false when there is none. */
static bool evict_oldest(mph_listener *l, const char *addr, const char *why)
{
    for (mph_conn *c = l->oldest; c != NULL; c = c->next) {
        if (c->state == CONN_DISPATCHED || (addr != NULL && strcmp(c->addr, addr) != 0))
            continue;
        l->stats.evicted++;
        mpu_log_limited(&evict_limit, MP_LOG_WARNING, "http",
                        "%s: %s; closing the oldest idle connection (from %s)", l->name,
                        why, c->addr[0] != '\0' ? c->addr : "local");
        conn_close(c);
        return true;
    }
    return false;
}

static void conn_completed(struct evhttp_request *req, void *arg)
{
    arm_idle(arg);
}

static mph_conn *conn_find(mph_listener *l, struct evhttp_connection *evcon)
{
    for (mph_conn *c = l->newest; c != NULL; c = c->prev)
        if (c->evcon == evcon)
            return c;
    return NULL;
}

void mph_conn_dispatched(mph_listener *l, struct evhttp_request *req)
{
    mph_conn *c = conn_find(l, evhttp_request_get_connection(req));
    if (c == NULL)
        return;
    c->state = CONN_DISPATCHED;
    evtimer_del(c->timer);
    /* evhttp stopped reading for the handler; a waiting connection must
     * not be resumed behind its back. */
    release_slot(c);
    evhttp_request_set_on_complete_cb(req, conn_completed, c);
}

void mph_conn_set_closecb(struct evhttp_connection *evcon,
                          void (*cb)(struct evhttp_connection *, void *), void *arg)
{
    struct evhttp *http = evhttp_connection_get_server(evcon);
    for (mph_listener *l = all_listeners; l != NULL; l = l->next_all) {
        mph_conn *c = l->http == http ? conn_find(l, evcon) : NULL;
        if (c != NULL) {
            c->user_close = cb;
            c->user_arg = arg;
            return;
        }
    }
    /* Not tracked (its bufferevent could not be made by us). */
    evhttp_connection_set_closecb(evcon, cb, arg);
}

static void per_client_check(mph_listener *l, mph_conn *fresh)
{
    uint32_t max = limit_or(l->server->limits.max_per_client, DEFAULT_MAX_PER_CLIENT);
    uint32_t same = 0;
    for (mph_conn *c = l->oldest; c != NULL; c = c->next)
        same += strcmp(c->addr, fresh->addr) == 0;
    /* The new connection itself may be the one closed, when every other
     * connection of that client is busy. */
    if (same > max)
        evict_oldest(l, fresh->addr, "too many connections from one client");
}

/* Attaches one accepted connection; false when evhttp already freed it. */
static bool conn_attach(mph_listener *l, struct bufferevent *bev)
{
    bufferevent_data_cb readcb = NULL;
    bufferevent_event_cb eventcb = NULL;
    void *cbarg = NULL;
    bufferevent_getcb(bev, &readcb, NULL, &eventcb, &cbarg);
    if ((readcb == NULL && eventcb == NULL) || cbarg == NULL)
        return false;
    mph_conn *c = mpu_calloc(1, sizeof(*c));
    c->l = l;
    c->evcon = cbarg;
    c->input = bufferevent_get_input(bev);
    c->input_cb = evbuffer_add_cb(c->input, conn_input, c);
    c->timer = evtimer_new(l->server->base, conn_timeout, c);
    if (!l->is_unix) {
        char *address = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(c->evcon, &address, &port);
        mpu_strlcpy(c->addr, address != NULL ? address : "?", sizeof(c->addr));
    }
    c->prev = l->newest;
    if (l->newest != NULL)
        l->newest->next = c;
    else
        l->oldest = c;
    l->newest = c;
    evhttp_connection_set_closecb(c->evcon, conn_closed, c);
    /* A request may already be waiting in the input buffer. */
    if (evbuffer_get_length(c->input) > 0) {
        c->state = CONN_READING;
        count_bytes(c, evbuffer_get_length(c->input));
        arm(c,
            limit_or(l->server->limits.request_timeout_ms, DEFAULT_REQUEST_TIMEOUT_MS));
    } else {
        arm_idle(c);
    }
    if (!l->is_unix)
        per_client_check(l, c);
    return true;
}

static void attach_all(evutil_socket_t fd, short what, void *arg)
{
    mph_listener *l = arg;
    size_t n = l->n_fresh;
    l->n_fresh = 0;
    for (size_t i = 0; i < n; i++) {
        struct bufferevent *bev = l->fresh[i];
        if (!conn_attach(l, bev))
            l->open--; /* evhttp failed and freed it: no close callback */
        bufferevent_decref(bev);
    }
    /* Keep a slot free for the next client: make room now rather than
     * after the next accept. */
    uint32_t max = max_connections(l);
    while (l->open >= max && evict_oldest(l, NULL, "connection limit reached"))
        ;
    if (l->evict_on_attach) {
        l->evict_on_attach = false;
        evict_oldest(l, NULL, "out of file descriptors");
    }
    listener_update(l);
}

/* A server-side OpenSSL bufferevent; evhttp sets the socket later, and
 * the handshake starts then. A failed handshake (a plaintext client, a
 * scanner) is a bufferevent error: evhttp closes the connection and its
 * close callback counts it like any other. */
static struct bufferevent *tls_bev(mph_listener *l, struct event_base *base)
{
    SSL *ssl = SSL_new(l->tls);
    if (ssl == NULL)
        return NULL;
    /* CLOSE_ON_FREE frees the SSL with the bufferevent; evhttp then
     * leaves closing the socket to it. */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Clients that close without close_notify are the norm for HTTP. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* evhttp's bevcb: one call per accepted connection. */
/* A descriptor held in reserve (/dev/null) for the API: when the process
 * is out of descriptors and no idle connection can be closed, accepting
 * gives this one up, so the API still answers while accounts, which retry
 * with backoff, hold every other descriptor (issue 12). Taken back after
 * the next accept. Loop thread. */
static int spare_fd = -1;
/* When it was given up: the connection it makes room for is young and
 * idle, and the accept loop's next EMFILE must not close it. */
static int64_t spare_released_ms;

static void spare_take(void)
{
    if (spare_fd < 0)
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static struct bufferevent *conn_new_bev(struct event_base *base, void *arg)
{
    mph_listener *l = arg;
    spare_take();
    struct bufferevent *bev = l->tls != NULL ? tls_bev(l, base)
                                             : /* as evhttp's own default (it
                                                  closes the socket itself) */
                                  bufferevent_socket_new(base, -1, 0);
    if (bev == NULL)
        return NULL; /* evhttp tries its own; that one goes untracked (on a
                        TLS listener it is plaintext: dispatch.c refuses
                        its requests) */
    if (l->n_fresh == l->fresh_cap) {
        l->fresh_cap = l->fresh_cap > 0 ? l->fresh_cap * 2 : 16;
        l->fresh = mpu_realloc(l->fresh, l->fresh_cap * sizeof(*l->fresh));
    }
    bufferevent_incref(bev);
    l->fresh[l->n_fresh++] = bev;
    l->open++;
    l->stats.accepted++;
    event_active(l->attach_ev, EV_TIMEOUT, 0);
    /* At the cap, this ends the listener's accept loop after this one. */
    listener_update(l);
    return bev;
}

static void accept_error(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct evhttp *http = arg;
    mph_listener *l = all_listeners;
    while (l != NULL && l->http != http)
        l = l->next_all;
    if (l == NULL) {
        evconnlistener_disable(lev);
        return;
    }
    l->stats.accept_errors++;
    if (mpu_fd_shortage(err))
        mpu_fd_shortage_note("http accept", err);
    mpu_log_limited(&accept_limit, MP_LOG_WARNING, "http",
                    "accept on %s listener: %s; accepting paused", l->name,
                    strerror(err));
    l->error_paused = true;
    listener_update(l);
    struct timeval tv = {.tv_sec = ACCEPT_RETRY_MS / 1000,
                         .tv_usec = (ACCEPT_RETRY_MS % 1000) * 1000};
    evtimer_add(l->resume_ev, &tv);
    /* Out of descriptors: free one held by an idle connection (its close
     * resumes accepting). */
    /* The connections accepted by this same accept loop are attached
     * only when it returns: then one of them may be the oldest. */
    /* Only the connection the spare made room for is left: keep it. */
    bool spared = spare_released_ms != 0 && l->oldest == l->newest &&
                  mpu_mono_ms() - spare_released_ms < 2 * ACCEPT_RETRY_MS;
    if ((err == EMFILE || err == ENFILE) && !spared &&
        !evict_oldest(l, NULL, "out of file descriptors")) {
        l->evict_on_attach = l->n_fresh > 0;
        if (spare_fd >= 0) {
            close(spare_fd);
            spare_fd = -1;
            spare_released_ms = mpu_mono_ms();
            evtimer_del(l->resume_ev);
            struct timeval now = {0, 0};
            evtimer_add(l->resume_ev, &now);
        }
    }
}

static void resume(evutil_socket_t fd, short what, void *arg)
{
    mph_listener *l = arg;
    evtimer_del(l->resume_ev);
    if (!l->error_paused)
        return;
    l->error_paused = false;
    listener_update(l);
}

int mph_conn_listen(mph_listener *l)
{
    l->attach_ev = event_new(l->server->base, -1, 0, attach_all, l);
    l->resume_ev = evtimer_new(l->server->base, resume, l);
    if (l->attach_ev == NULL || l->resume_ev == NULL)
        return -1;
    evhttp_set_bevcb(l->http, conn_new_bev, l);
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(l->bound), accept_error);
    l->next_all = all_listeners;
    all_listeners = l;
    spare_take();
    return 0;
}

void mph_conn_unlisten(mph_listener *l)
{
    for (mph_listener **p = &all_listeners; *p != NULL; p = &(*p)->next_all) {
        if (*p == l) {
            *p = l->next_all;
            break;
        }
    }
    if (all_listeners == NULL && spare_fd >= 0) {
        close(spare_fd);
        spare_fd = -1;
    }
    /* evhttp_free() closed every attached connection; these were accepted
     * but never attached, and evhttp freed them too: drop our reference. */
    for (size_t i = 0; i < l->n_fresh; i++)
        bufferevent_decref(l->fresh[i]);
    free(l->fresh);
    l->fresh = NULL;
    l->n_fresh = 0;
    if (l->attach_ev != NULL)
        event_free(l->attach_ev);
    if (l->resume_ev != NULL)
        event_free(l->resume_ev);
    l->attach_ev = l->resume_ev = NULL;
}

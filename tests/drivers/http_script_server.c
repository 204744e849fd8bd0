/* Scripted HTTP server: evhttp on a thread. Parsing is libevent's; this
 * file only matches requests against the script, schedules the answers
 * and records what came. */
#include "http_script_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "util/util.h"

typedef struct pending {
    struct pending *next;
    mpt_http_server *s;
    struct evhttp_request *req;
    const mpt_http_step *step; /* NULL: mismatch answer */
    struct event *timer;
} pending;

struct mpt_http_server {
    const mpt_http_step *steps;
    size_t n_steps;
    struct event_base *base;
    struct evhttp *http;
    SSL_CTX *ssl;
    int port;
    pthread_t thread;
    pending *pending;
    pthread_mutex_t lock; /* guards what follows */
    mpt_http_seen *seen;
    size_t n_seen;
    size_t mismatches;
    char first_mismatch[256];
    unsigned in_flight, max_in_flight;
};

static const char *method_name(enum evhttp_cmd_type c)
{
    switch (c) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "?";
}

/* Why `req` does not fit `step`, or NULL. */
static char *check(const mpt_http_step *step, struct evhttp_request *req, const char *method,
                   const char *body)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(u);
    const char *query = evhttp_uri_get_query(u);
    if (step->method != NULL && strcmp(step->method, method) != 0)
        return mpu_asprintf("method %s, expected %s", method, step->method);
    if (step->path != NULL && (path == NULL || strcmp(step->path, path) != 0))
        return mpu_asprintf("path %s, expected %s", path ? path : "(none)", step->path);
    if (step->query != NULL && (query == NULL || strcmp(step->query, query) != 0))
        return mpu_asprintf("query %s, expected %s", query ? query : "(none)", step->query);
    if (step->header != NULL) {
        const char *colon = strchr(step->header, ':');
        char *name = mpu_strndup(step->header, colon ? (size_t)(colon - step->header) : 0);
        const char *want = colon ? colon + 1 : "";
        while (*want == ' ')
            want++;
        const char *got = evhttp_find_header(evhttp_request_get_input_headers(req), name);
        char *why = got == NULL || strcmp(got, want) != 0
                        ? mpu_asprintf("header %s is %s, expected %s", name,
                                       got ? got : "(absent)", want)
                        : NULL;
        free(name);
        if (why != NULL)
            return why;
    }
    if (step->body_contains != NULL && strstr(body, step->body_contains) == NULL)
        return mpu_asprintf("body lacks \"%s\"", step->body_contains);
    return NULL;
}

static void answer(pending *p)
{
    mpt_http_server *s = p->s;
    struct evbuffer *out = evbuffer_new();
    if (p->step == NULL) {
        evbuffer_add_printf(out, "unexpected request");
        evhttp_send_reply(p->req, 500, "Unexpected", out);
    } else {
        const mpt_http_step *st = p->step;
        struct evkeyvalq *oh = evhttp_request_get_output_headers(p->req);
        for (const char *l = st->headers; l != NULL && *l != '\0';) {
            size_t len = strcspn(l, "\r\n");
            const char *colon = memchr(l, ':', len);
            if (colon != NULL) {
                char *name = mpu_strndup(l, (size_t)(colon - l));
                const char *v = colon + 1;
                while (*v == ' ')
                    v++;
                char *value = mpu_strndup(v, len - (size_t)(v - l));
                evhttp_add_header(oh, name, value);
                free(name);
                free(value);
            }
            l += len;
            l += strspn(l, "\r\n");
        }
        if (st->body_fill > 0) {
            char chunk[4096];
            memset(chunk, 'x', sizeof chunk);
            for (size_t left = st->body_fill; left > 0;) {
                size_t n = left < sizeof chunk ? left : sizeof chunk;
                evbuffer_add(out, chunk, n);
                left -= n;
            }
        } else if (st->body != NULL) {
            evbuffer_add(out, st->body, strlen(st->body));
        }
        evhttp_send_reply(p->req, st->status ? st->status : 200, "Scripted", out);
    }
    evbuffer_free(out);
    pthread_mutex_lock(&s->lock);
    s->in_flight--;
    pthread_mutex_unlock(&s->lock);
    for (pending **pp = &s->pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (p->timer != NULL)
        event_free(p->timer);
    free(p);
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    answer(arg);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    mpt_http_server *s = arg;
    const char *method = method_name(evhttp_request_get_command(req));
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    mpt_http_seen seen = {0};
    seen.method = mpu_strdup(method);
    seen.uri = mpu_strdup(evhttp_request_get_uri(req));
    seen.body_len = evbuffer_get_length(in);
    seen.body = mpu_malloc(seen.body_len + 1);
    evbuffer_copyout(in, seen.body, seen.body_len);
    seen.body[seen.body_len] = '\0';
    seen.at_ms = mpu_mono_ms();
    char *hdrs = mpu_strdup("");
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    for (struct evkeyval *h = ih->tqh_first; h != NULL; h = h->next.tqe_next) {
        char *more = mpu_asprintf("%s%s: %s\n", hdrs, h->key, h->value);
        free(hdrs);
        hdrs = more;
    }
    seen.headers = hdrs;

    pthread_mutex_lock(&s->lock);
    size_t index = s->n_seen;
    const mpt_http_step *step = index < s->n_steps ? &s->steps[index] : NULL;
    char *why = step != NULL ? check(step, req, method, seen.body)
                             : mpu_asprintf("request %zu beyond the script", index + 1);
    if (why != NULL) {
        if (s->mismatches++ == 0)
            snprintf(s->first_mismatch, sizeof s->first_mismatch, "request %zu (%s %s): %s",
                     index + 1, method, seen.uri, why);
        free(why);
        step = NULL;
    }
    s->seen = mpu_realloc(s->seen, (s->n_seen + 1) * sizeof *s->seen);
    s->seen[s->n_seen++] = seen;
    if (++s->in_flight > s->max_in_flight)
        s->max_in_flight = s->in_flight;
    pthread_mutex_unlock(&s->lock);

    pending *p = mpu_calloc(1, sizeof *p);
    p->s = s;
    p->req = req;
    p->step = step;
    p->next = s->pending;
    s->pending = p;
    if (step != NULL && step->delay_ms > 0) {
        struct timeval tv = {step->delay_ms / 1000, (step->delay_ms % 1000) * 1000};
        p->timer = evtimer_new(s->base, on_delay, p);
        evtimer_add(p->timer, &tv);
    } else {
        answer(p);
    }
}

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    mpt_http_server *s = arg;
    return bufferevent_openssl_socket_new(base, -1, SSL_new(s->ssl),
                                          BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

static void *run(void *arg)
{
    mpt_http_server *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

mpt_http_server *mpt_http_server_start(const mpt_http_step *steps, size_t n_steps,
                                       const mpt_tls_files *tls)
{
    evthread_use_pthreads();
    mpt_http_server *s = mpu_calloc(1, sizeof *s);
    s->steps = steps;
    s->n_steps = n_steps;
    pthread_mutex_init(&s->lock, NULL);
    s->base = event_base_new();
    s->http = evhttp_new(s->base);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(s->http, on_request, s);
    if (tls != NULL) {
        s->ssl = SSL_CTX_new(TLS_server_method());
        if (SSL_CTX_use_certificate_chain_file(s->ssl, tls->cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(s->ssl, tls->key_file, SSL_FILETYPE_PEM) != 1) {
            mpt_http_server_stop(&s);
            return NULL;
        }
        evhttp_set_bevcb(s->http, tls_bev, s);
    }
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    if (bound == NULL) {
        mpt_http_server_stop(&s);
        return NULL;
    }
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &len);
    s->port = ntohs(sin.sin_port);
    pthread_create(&s->thread, NULL, run, s);
    return s;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mpt_http_server *s = arg;
    /* Pending answers are dropped; evhttp_free frees their requests. */
    while (s->pending != NULL) {
        pending *p = s->pending;
        s->pending = p->next;
        if (p->timer != NULL)
            event_free(p->timer);
        free(p);
    }
    event_base_loopbreak(s->base);
}

void mpt_http_server_stop(mpt_http_server **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    mpt_http_server *s = *sp;
    if (s->port != 0) {
        event_base_once(s->base, -1, EV_TIMEOUT, on_stop, s, NULL);
        pthread_join(s->thread, NULL);
    }
    evhttp_free(s->http);
    event_base_free(s->base);
    if (s->ssl != NULL)
        SSL_CTX_free(s->ssl);
    for (size_t i = 0; i < s->n_seen; i++)
        mpt_http_seen_clear(&s->seen[i]);
    free(s->seen);
    pthread_mutex_destroy(&s->lock);
    free(s);
    *sp = NULL;
}

int mpt_http_server_port(const mpt_http_server *s)
{
    return s->port;
}

char *mpt_http_server_url(const mpt_http_server *s, const char *path)
{
    return mpu_asprintf("%s://127.0.0.1:%d%s", s->ssl != NULL ? "https" : "http", s->port,
                        path);
}

size_t mpt_http_server_count(mpt_http_server *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n_seen;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int mpt_http_server_seen(mpt_http_server *s, size_t i, mpt_http_seen *seen_r)
{
    memset(seen_r, 0, sizeof *seen_r);
    pthread_mutex_lock(&s->lock);
    int rc = -1;
    if (i < s->n_seen) {
        const mpt_http_seen *in = &s->seen[i];
        seen_r->method = mpu_strdup(in->method);
        seen_r->uri = mpu_strdup(in->uri);
        seen_r->headers = mpu_strdup(in->headers);
        seen_r->body = mpu_malloc(in->body_len + 1);
        memcpy(seen_r->body, in->body, in->body_len + 1);
        seen_r->body_len = in->body_len;
        seen_r->at_ms = in->at_ms;
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void mpt_http_seen_clear(mpt_http_seen *seen)
{
    if (seen == NULL)
        return;
    free(seen->method);
    free(seen->uri);
    free(seen->headers);
    free(seen->body);
    memset(seen, 0, sizeof *seen);
}

size_t mpt_http_server_mismatches(mpt_http_server *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->mismatches;
    pthread_mutex_unlock(&s->lock);
    return n;
}

const char *mpt_http_server_first_mismatch(mpt_http_server *s)
{
    return s->first_mismatch;
}

unsigned mpt_http_server_max_in_flight(mpt_http_server *s)
{
    pthread_mutex_lock(&s->lock);
    unsigned n = s->max_in_flight;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void nap(void)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int mpt_http_server_wait_count(mpt_http_server *s, size_t count, uint32_t timeout_ms)
{
    int64_t until = mpu_mono_ms() + timeout_ms;
    while (mpt_http_server_count(s) < count) {
        if (mpu_mono_ms() >= until)
            return -1;
        nap();
    }
    return 0;
}

int mpt_http_server_expect_quiet(mpt_http_server *s, uint32_t window_ms)
{
    size_t before = mpt_http_server_count(s);
    int64_t until = mpu_mono_ms() + window_ms;
    while (mpu_mono_ms() < until) {
        if (mpt_http_server_count(s) != before)
            return -1;
        nap();
    }
    return mpt_http_server_count(s) == before ? 0 : -1;
}

int mpt_tls_make_ca(const char *dir)
{
    char *cmd = mpu_asprintf(
        "cd '%s' && "
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mailpulse-test-ca "
        "-keyout ca.key -out ca.pem && "
        "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key "
        "-out server.csr && "
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-days 2 -extfile san.ext -out server.pem",
        dir);
    char *quiet = mpu_asprintf("(%s) >/dev/null 2>&1", cmd);
    int rc = system(quiet);
    free(cmd);
    free(quiet);
    return rc == 0 ? 0 : -1;
}

/*
 * Private to core/http: the server state shared by the listener, routing,
 * reply, raw-message and event-stream files. Everything here runs on the
 * loop thread of the event_base given to mph_start().
 */
#ifndef MP_HTTP_PRIVATE_H
#define MP_HTTP_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "http/http.h"

#define MPH_MAX_PARAMS 4

typedef struct mph_raw_ctx mph_raw_ctx;
typedef struct mph_sse_client mph_sse_client;
typedef struct mph_conn mph_conn;
typedef struct mph_rate mph_rate;

/* One listening socket with its own evhttp (so the connection hooks know
 * which listener a connection came from) and its own connection budget:
 * a TCP flood never locks the unix socket out. */
typedef struct mph_listener {
    mph_server *server;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    const char *name; /* "tcp", "unix" or "push", for logs and metrics */
    bool is_unix;
    bool is_push;     /* serves the push routes only (dispatch.c) */
    struct ssl_ctx_st *tls; /* TLS context for new connections, or NULL */
    mph_rate *rate;   /* push listener: its request buckets */
    uint32_t open;              /* accepted and not yet closed */
    uint32_t large_active;      /* requests holding a large-request slot */
    mph_conn *oldest, *newest;  /* attached connections, in accept order */
    struct bufferevent **fresh; /* accepted, not attached yet (see conn.c) */
    size_t n_fresh, fresh_cap;
    struct event *attach_ev;
    struct event *resume_ev;
    bool paused;          /* accepting stopped */
    bool error_paused;    /* ... after an accept() failure */
    bool evict_on_attach; /* out of descriptors with nothing attached yet */
    bool stopping;
    mph_stats_listener stats;
    struct mph_listener *next_all; /* conn.c's registry of live listeners */
} mph_listener;

struct mph_server {
    struct event_base *base;
    mpd *d;
    char *token;
    uint32_t heartbeat_ms;
    mph_limits limits;
    bool metrics_public;
    char **allowed_hosts;    /* NULL-terminated; may be NULL */
    mph_listener tcp;        /* .http NULL when not listening */
    mph_listener local;      /* the unix socket */
    mph_listener push;       /* the public push listener */
    char *unix_path;         /* unlinked by mph_stop when we created it */
    mph_raw_ctx *raws;       /* raw fetches waiting for their callback */
    mph_sse_client *clients; /* open event streams */
    void *watch;             /* mpd_events_watch handle, once streaming */
    struct event *heartbeat;
};

/* One routed request, valid for the duration of the handler call only:
 * handlers that answer later copy what they need. */
typedef struct mph_request {
    mph_server *server;
    const mph_listener *listener; /* the one the request came in on */
    struct evhttp_request *req;
    const char *params[MPH_MAX_PARAMS]; /* decoded "*" segments, in order */
    size_t param_count;
    const char *rest;       /* raw path after a "**" match: "" or "/..." */
    const char *query;      /* raw query string, "" when absent */
    struct evkeyvalq *args; /* decoded query parameters */
} mph_request;

typedef void (*mph_handler)(mph_request *r);

/* dispatch.c: the evhttp generic callback (arg: mph_listener). */
void mph_dispatch(struct evhttp_request *req, void *arg);

/* conn.c: the connection tracker (caps, deadlines, accept failures).
 * mph_conn_listen() hooks a listener whose evhttp and bound socket exist;
 * mph_conn_unlisten() is called after its evhttp was freed. */
int mph_conn_listen(mph_listener *l);
void mph_conn_unlisten(mph_listener *l);
/* A request was handed to the router: its connection's deadline stops
 * until the answer is sent. */
void mph_conn_dispatched(mph_listener *l, struct evhttp_request *req);
/* evhttp keeps one close callback per connection and the tracker needs
 * it to count closes: every other user in core/http (raw.c, sse.c) goes
 * through mph_conn_set_closecb(), which keeps theirs and calls it first;
 * only conn.c sets the library slot itself. */
void mph_conn_set_closecb(struct evhttp_connection *evcon,
                          void (*cb)(struct evhttp_connection *, void *), void *arg);

/* rate.c: token buckets, one per client address (a fixed table: a client
 * whose slot another address takes over starts with a full bucket) and
 * one for the listener. Each bucket holds `per second` requests and
 * refills at that rate. */
mph_rate *mph_rate_new(uint32_t per_client, uint32_t total);
/* Takes one request for addr at now_ms (monotonic). Returns 0 when
 * allowed, else the milliseconds until a request would be (nothing is
 * taken then). */
uint64_t mph_rate_take(mph_rate *rate, const char *addr, int64_t now_ms);
void mph_rate_free(mph_rate **rate);

/* reply.c. mph_reply_json steals `body` (NULL answers 500). */
void mph_reply_json(struct evhttp_request *req, int status, json_t *body);
void mph_reply_error(struct evhttp_request *req, int status, const char *message);
/* Answers status (500 when not an error status) with *error (freed and
 * cleared) or a generic message. */
void mph_reply_api_error(struct evhttp_request *req, int status, char **error);
void mph_reply_bytes(struct evhttp_request *req, int status, const char *content_type,
                     const void *data, size_t len);
/* A query parameter, or NULL. */
const char *mph_arg(const mph_request *r, const char *name);
/* A decimal number of digits only (no sign, spaces or leading '+');
 * returns 0 or -1. */
int mph_parse_count(const char *s, int64_t *value_r);

/* handlers.c */
void mph_h_health(mph_request *r);
void mph_h_metrics(mph_request *r);
void mph_h_status(mph_request *r);
void mph_h_accounts(mph_request *r);
void mph_h_account(mph_request *r);
void mph_h_messages(mph_request *r);
void mph_h_sync(mph_request *r);
void mph_h_backfill(mph_request *r);
void mph_h_probe(mph_request *r);
void mph_h_check_start(mph_request *r);
void mph_h_check_get(mph_request *r);
void mph_h_message(mph_request *r);
void mph_h_push(mph_request *r);
void mph_h_webhooks(mph_request *r);
void mph_h_webhook(mph_request *r);
void mph_h_webhook_replay(mph_request *r);
void mph_h_debug_clock(mph_request *r);

/* raw.c */
void mph_h_message_raw(mph_request *r);
/* Detach every pending raw fetch from its request and the server: their
 * callbacks, when they come, only free their context. */
void mph_raw_abandon_all(mph_server *server);

/* sse.c */
void mph_h_events(mph_request *r);
/* End every stream and drop the watch and heartbeat. */
void mph_sse_stop_all(mph_server *server);

#endif

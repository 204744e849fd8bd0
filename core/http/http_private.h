/*
 * Private to core/http: the server state shared by the listener, routing,
 * reply, raw-message and event-stream files. Everything here runs on the
 * loop thread of the event_base given to mph_start().
 */
#ifndef MP_HTTP_PRIVATE_H
#define MP_HTTP_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "http/http.h"

#define MPH_MAX_PARAMS 4

typedef struct mph_raw_ctx mph_raw_ctx;
typedef struct mph_sse_client mph_sse_client;

struct mph_server {
    struct event_base *base;
    struct evhttp *http;
    mpd *d;
    char *token;
    uint32_t heartbeat_ms;
    struct evhttp_bound_socket *tcp;
    struct evhttp_bound_socket *unix_listener;
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
    struct evhttp_request *req;
    const char *params[MPH_MAX_PARAMS]; /* decoded "*" segments, in order */
    size_t param_count;
    const char *rest;       /* raw path after a "**" match: "" or "/..." */
    const char *query;      /* raw query string, "" when absent */
    struct evkeyvalq *args; /* decoded query parameters */
} mph_request;

typedef void (*mph_handler)(mph_request *r);

/* dispatch.c: the evhttp generic callback (arg: mph_server). */
void mph_dispatch(struct evhttp_request *req, void *arg);

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

/*
 * GET /v1/messages/{id}/raw. The daemon may answer later (fetch through the
 * driver on a worker), by which time the client or the whole server may be
 * gone. A small context outlives both: the connection's close callback and
 * mph_stop clear its request pointer, and the daemon's callback is the only
 * place that frees it.
 */
#include <stdlib.h>

#include "daemon/api.h"
#include "http/http_private.h"
#include "util/util.h"

struct mph_raw_ctx {
    mph_raw_ctx *prev, *next;
    mph_server *server;         /* NULL once the server stopped */
    struct evhttp_request *req; /* NULL once the connection is gone */
};

static void raw_unlink(mph_raw_ctx *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (c->server != NULL)
        c->server->raws = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->server = NULL;
}

static void raw_closed(struct evhttp_connection *evcon, void *arg)
{
    mph_raw_ctx *c = arg;
    /* On a peer close evhttp detaches the unanswered request and leaves
     * freeing it to us; a request still attached dies with the connection. */
    if (c->req != NULL && evhttp_request_get_connection(c->req) == NULL)
        evhttp_request_free(c->req);
    c->req = NULL;
}

static void raw_done(int status, const uint8_t *data, size_t len, const char *error,
                     void *arg)
{
    mph_raw_ctx *c = arg;
    raw_unlink(c);
    if (c->req != NULL) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
        /* The connection may serve further requests after this one. */
        if (evcon != NULL)
            mph_conn_set_closecb(evcon, NULL, NULL);
        if (status == 200)
            mph_reply_bytes(c->req, 200, "message/rfc822", data, len);
        else
            mph_reply_error(c->req, status >= 400 && status <= 599 ? status : 500,
                            error != NULL ? error : "message unavailable");
    }
    free(c);
}

void mph_h_message_raw(mph_request *r)
{
    mph_raw_ctx *c = mpu_calloc(1, sizeof(*c));
    c->server = r->server;
    c->req = r->req;
    c->next = r->server->raws;
    if (c->next != NULL)
        c->next->prev = c;
    r->server->raws = c;
    mph_conn_set_closecb(evhttp_request_get_connection(r->req), raw_closed, c);
    /* May complete (and free c) before returning. */
    mpd_api_message_raw(r->server->d, r->params[0], raw_done, c);
}

void mph_raw_abandon_all(mph_server *server)
{
    while (server->raws != NULL) {
        mph_raw_ctx *c = server->raws;
        if (c->req != NULL) {
            struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
            if (evcon != NULL)
                mph_conn_set_closecb(evcon, NULL, NULL);
            /* evhttp_free() frees the request with its connection. */
            c->req = NULL;
        }
        raw_unlink(c);
    }
}

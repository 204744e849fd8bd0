/*
 * Private to core/bus: the relay's copy of its settings and the NATS
 * connection helpers (nats.c) the relay thread (relay.c) uses. Nothing
 * outside core/bus includes this; it is the only place besides nats.c and
 * relay.c that names libnats types.
 */
#ifndef MP_BUS_BUS_PRIVATE_H
#define MP_BUS_BUS_PRIVATE_H

#include <stdint.h>

#include <nats/nats.h>

#include "bus/bus.h"

typedef struct mpb_conf {
    char *url;
    char *stream;
    char *token;        /* secret: wiped on free                           */
    char *creds_file;
    char *tls_ca_file;
    int64_t duplicate_window_ns;
    uint32_t max_pending;
    uint32_t ack_timeout_ms;
    uint32_t retry_max_ms;
} mpb_conf;

/* Connection events reported by libnats' threads. */
typedef enum mpb_conn_event {
    MPB_CONN_DISCONNECTED = 1,
    MPB_CONN_RECONNECTED = 2,
    MPB_CONN_CLOSED = 3,
} mpb_conn_event;

typedef struct mpb_nats_hooks {
    /* Run on a libnats thread; must only take the caller's lock. */
    void (*conn_event)(void *arg, mpb_conn_event ev);
    jsPubAckHandler ack;   /* each async publish's outcome (library thread) */
    void *arg;
} mpb_nats_hooks;

/* Relay thread. Connect (one attempt: every server of the URL once,
 * c->ack_timeout_ms each) and open a JetStream context whose async
 * publishes report to hooks->ack, with at most c->max_pending in flight.
 * After a success libnats reconnects by itself forever, buffering
 * publishes meanwhile. -1 with *error_r (allocated, no credentials). */
int mpb_nats_connect(const mpb_conf *c, const mpb_nats_hooks *hooks, natsConnection **nc_r,
                     jsCtx **js_r, char **error_r);
/* Close and free both; NULLs accepted, cleared. */
void mpb_nats_close(natsConnection **nc, jsCtx **js);

/* Relay thread (blocking requests). Make sure c->stream exists with the
 * relay's subjects, file storage and duplicate window: create it when
 * missing, never change an existing one. 0: ready; 1: it exists with
 * another configuration (*error_r says what differs); -1: a request
 * failed (*error_r). */
int mpb_stream_ensure(jsCtx *js, const mpb_conf *c, char **error_r);

/* Text of a libnats status plus its JetStream error code when not 0. */
char *mpb_nats_error(const char *what, natsStatus s, jsErrCode jerr);

#endif

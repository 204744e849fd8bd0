/*
 * The HTTP API server: one libevent evhttp serving a TCP address and/or a
 * unix socket. Routes (see README "HTTP API"):
 *   GET  /healthz                       no auth
 *   GET  /metrics                       no auth (Prometheus text)
 *   GET  /v1/status
 *   GET  /v1/accounts
 *   GET  /v1/accounts/{id}
 *   GET  /v1/accounts/{id}/messages?folder=&limit=&before=
 *   POST /v1/accounts/{id}/sync
 *   POST /v1/accounts/{id}/folders/{folder}/backfill   (folder %-encoded)
 *   POST /v1/accounts/{id}/probe        re-detect provider capabilities
 *   GET  /v1/messages/{id}
 *   GET  /v1/messages/{id}/raw
 *   GET  /v1/events   Server-Sent Events; Last-Event-ID or ?after= resume;
 *                     ?types=a,b&accounts=x,y filter; ?once=1 returns the
 *                     backlog and closes (for scripts)
 *   GET  /v1/webhooks                   outbound endpoints: cursor, lag, state
 *   GET  /v1/webhooks/{name}            one endpoint with its dead letters
 *   POST /v1/webhooks/{name}/replay[?from=SEQ]   deliver dead letters again
 *   POST /v1/debug/clock                (debug.clock_control only)
 *   POST /push/{instance}[/...]         routed to the driver's verifier
 * Requests to /v1 over TCP need "Authorization: Bearer <token>" (compared
 * in constant time); over the unix socket file permissions decide (0660).
 * Bodies over max_body get 413. Errors are JSON: {"error":"..."}.
 */
#ifndef MP_HTTP_HTTP_H
#define MP_HTTP_HTTP_H

#include <stdint.h>

struct event_base;
typedef struct mpd mpd;
typedef struct mph_server mph_server;

typedef struct mph_config {
    const char *listen;     /* "host:port" or NULL/"" for none            */
    const char *socket;     /* unix socket path or NULL/"" for none       */
    const char *token;      /* bearer token for TCP /v1 (required if TCP)  */
    uint32_t max_body;      /* bytes                                       */
    uint32_t sse_heartbeat_ms; /* comment line interval, default 15000     */
} mph_config;

/* Bind and start serving. Returns NULL with *error_r set (allocated) when
 * an address cannot be bound. */
mph_server *mph_start(struct event_base *base, const mph_config *config, mpd *d,
                      char **error_r);
/* The TCP port actually bound (useful with port 0), or 0. */
int mph_port(mph_server *server);
/* Close listeners and every SSE stream. Accepts NULL, clears *server. */
void mph_stop(mph_server **server);

#endif

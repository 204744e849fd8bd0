/*
 * The HTTP API server: one libevent evhttp serving a TCP address and/or a
 * unix socket. Routes (see README "HTTP API"):
 *   GET  /healthz                       no auth
 *   GET  /metrics                       Prometheus text (token on TCP unless
 *                                       metrics_public)
 *   GET  /v1/status
 *   GET  /v1/accounts
 *   GET  /v1/accounts/{id}
 *   GET  /v1/accounts/{id}/messages?folder=&limit=&before=
 *   POST /v1/accounts/{id}/sync
 *   POST /v1/accounts/{id}/folders/{folder}/backfill   (folder %-encoded)
 *   POST /v1/accounts/{id}/probe        re-detect provider capabilities
 *   POST /v1/accounts/{id}/check        an admin's preflight ({"live":true}
 *                                       optional); GET: its last result
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
 *                                       (also, with /healthz alone, on the
 *                                       push listener: mph_push_config)
 * Requests to /v1 (and /metrics unless metrics_public) over TCP need
 * "Authorization: Bearer <token>" (compared in constant time); over the
 * unix socket file permissions decide (0660). A 401 answer closes the
 * connection. TCP requests must carry a Host that is an IP literal,
 * "localhost" or one of allowed_hosts (421 otherwise: DNS rebinding).
 * Bodies over max_body get 413; headers over 16 KiB are refused. Errors
 * are JSON: {"error":"..."}. Connection limits: see mph_limits.
 */
#ifndef MP_HTTP_HTTP_H
#define MP_HTTP_HTTP_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct ssl_ctx_st;
typedef struct mpd mpd;
typedef struct mph_server mph_server;

/* Connection limits, per listener (TCP and the unix socket each have
 * their own budget). 0 in any field means its default. */
typedef struct mph_limits {
    uint32_t max_connections;   /* open connections; default 256. At the cap
                                   the oldest connection not busy with a
                                   request is closed; when every one is busy
                                   accepting pauses until one closes       */
    uint32_t max_per_client;    /* per peer address on TCP; default 32 (the
                                   client's oldest idle connection makes way) */
    uint32_t request_timeout_ms; /* first byte to complete request (headers
                                   and body), default 20000                */
    uint32_t idle_timeout_ms;   /* a connection waiting for a request,
                                   default 10000                           */
} mph_limits;
/* Beyond these: a request still being read past 32 KiB needs one of 4
 * slots per listener, others pause reading until one frees; headers are
 * limited to 16 KiB. */

/* The public push listener (README "Push listener"): a third listener for
 * providers on the internet. Its route table holds only
 *   POST /push/{instance}[/...]   and   GET /healthz
 * so every other path (all of /v1, /metrics) answers 404 there, with or
 * without a token. No bearer token and no Host check apply on it (the
 * driver's verifier authenticates each push). Each request first takes a
 * token from its client address's bucket and from the listener's; an
 * empty bucket answers 429 with Retry-After. Connection caps and
 * deadlines are those of mph_limits, with a budget of its own. */
typedef struct mph_push_config {
    const char *listen;     /* "host:port"; NULL or "" for no push listener */
    struct ssl_ctx_st *tls; /* server context (mph_tls_load), NULL for
                               plaintext; mph_start takes its own reference */
    uint32_t max_body;      /* bytes, 0: 256 KiB                           */
    uint32_t rate;          /* requests per second per client address, with
                               a burst of as many; 0: 20                   */
    uint32_t rate_total;    /* requests per second over all clients, with a
                               burst of as many; 0: 200                    */
} mph_push_config;

typedef struct mph_config {
    const char *listen;     /* "host:port" or NULL/"" for none            */
    const char *socket;     /* unix socket path or NULL/"" for none       */
    const char *token;      /* bearer token for TCP /v1 (required if TCP)  */
    uint32_t max_body;      /* bytes                                       */
    uint32_t sse_heartbeat_ms; /* comment line interval, default 15000     */
    mph_limits limits;
    bool metrics_public;    /* /metrics without the token on TCP           */
    /* Host header names accepted on TCP besides IP literals and
     * "localhost" (DNS-rebinding guard); NULL-terminated, may be NULL.    */
    const char *const *allowed_hosts;
    mph_push_config push;
} mph_config;

/* Counters of one listener, for /metrics. */
typedef struct mph_stats_listener {
    uint32_t open;              /* connections open now                   */
    uint64_t accepted;          /* connections accepted                   */
    uint64_t evicted;           /* closed to make room (caps, descriptors) */
    uint64_t timed_out;         /* closed by the idle or request deadline  */
    uint64_t accept_errors;     /* accept() failures (each pauses accepting) */
    uint64_t rate_limited;      /* requests answered 429 (push listener)   */
} mph_stats_listener;

typedef struct mph_stats {
    mph_stats_listener tcp, local, push;
} mph_stats;

/* Bind and start serving. Returns NULL with *error_r set (allocated) when
 * an address cannot be bound. */
mph_server *mph_start(struct event_base *base, const mph_config *config, mpd *d,
                      char **error_r);
/* Counters of both listeners (zero for one not listening). Loop thread. */
void mph_get_stats(mph_server *server, mph_stats *stats_r);
/* The TCP port actually bound (useful with port 0), or 0. */
int mph_port(mph_server *server);
/* The push listener's port, or 0 when there is none. */
int mph_push_port(mph_server *server);

/* A TLS server context for the push listener: TLS 1.2 or later, the PEM
 * certificate chain of cert_file (leaf first), the PEM private key of
 * key_file, which must be owner-only like every secret (mpu_read_file).
 * Returns a new context (one reference), or NULL with *error_r set
 * (allocated, naming the file). Any thread. */
struct ssl_ctx_st *mph_tls_load(const char *cert_file, const char *key_file,
                                char **error_r);
/* Drops one reference. Accepts NULL, clears *ctx. */
void mph_tls_free(struct ssl_ctx_st **ctx);
/* Connections the push listener accepts from now on use ctx (a reference
 * is taken); open ones keep the context they started with. Ignored
 * without a TLS push listener. Loop thread. */
void mph_push_set_tls(mph_server *server, struct ssl_ctx_st *ctx);
/* Close listeners and every SSE stream. Accepts NULL, clears *server. */
void mph_stop(mph_server **server);

#endif

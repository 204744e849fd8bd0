/*
 * mailpulsectl's HTTP client (libcurl): plain requests and the event
 * stream, over the daemon's unix socket or TCP with a bearer token.
 */
#ifndef MP_CLI_CLIENT_H
#define MP_CLI_CLIENT_H

#include <signal.h>
#include <stdio.h>

#include "cli.h"

typedef struct mpctl_conn {
    char *socket_path; /* unix socket, or NULL for TCP                     */
    char *base_url;    /* "http://localhost" on the socket, else the URL   */
    char *token;       /* bearer token for TCP (secret), NULL on the socket */
} mpctl_conn;

/* Clear the token's bytes, free everything. */
void mpctl_conn_clear(mpctl_conn *conn);
/* "socket /path" or "url http://...", for messages. Allocated. */
char *mpctl_conn_describe(const mpctl_conn *conn);

typedef struct mpctl_response {
    long status; /* 0 when no HTTP answer arrived                    */
    char *body;  /* NUL-terminated; "" when streamed elsewhere      */
    size_t len;
    char *content_type; /* NULL when absent                                 */
} mpctl_response;

void mpctl_response_clear(mpctl_response *resp);

/* Set by the SIGINT handler; running transfers stop soon after. */
extern volatile sig_atomic_t mpctl_interrupted;

/* curl_global_init; call once before any request. Returns 0 or -1. */
int mpctl_client_init(void);
void mpctl_client_cleanup(void);

/* `method` "GET" or "POST" (POST has an empty body); `path` starts with
 * "/". With `sink` non-NULL a 2xx body is written there instead of being
 * buffered. Returns 0 when an HTTP answer was received (any status), or -1
 * with *error_r set (connection or transfer failure, interrupted). */
int mpctl_request(const mpctl_conn *conn, const char *method, const char *path,
                  FILE *sink, mpctl_response *resp_r, char **error_r);

/* POST `json_body` (Content-Type: application/json; NULL: an empty body)
 * to `path`; otherwise as mpctl_request without a sink. */
int mpctl_post_json(const mpctl_conn *conn, const char *path, const char *json_body,
                    mpctl_response *resp_r, char **error_r);

/* GET an event stream: a 200 text/event-stream body is fed to `parser`
 * until the server closes it, the parser's callback stops it or
 * mpctl_interrupted is set; other answers are buffered in *resp_r.
 * `last_event_id` (may be NULL) is sent as Last-Event-ID. Returns 0 when
 * the transfer ended normally or was stopped (check mpctl_interrupted),
 * -1 with *error_r on a connection or transfer failure (resp_r->status
 * tells whether the stream had started). */
int mpctl_stream(const mpctl_conn *conn, const char *path, const char *last_event_id,
                 mpctl_sse *parser, mpctl_response *resp_r, char **error_r);

#endif

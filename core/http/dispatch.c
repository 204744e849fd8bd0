/*
 * Routing: the route table, path matching on raw segments, token check
 * and query parsing, then one handler call per request.
 *
 * The push listener sees only the routes flagged ROUTE_PUSH: /v1 and
 * /metrics are absent from its table, so they answer 404 there whatever
 * the request carries (a token included).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include "http/http_private.h"
#include "util/util.h"

enum {
    ROUTE_QUERY = 1 << 0, /* parse the query string; malformed -> 400 */
    ROUTE_PUSH = 1 << 1,  /* also served on the public push listener */
};

typedef struct route {
    enum evhttp_cmd_type method;
    const char *method_name;
    /* Raw segments: "*" captures one non-empty segment (decoded before
     * the handler sees it), "**" as the last segment takes the rest. */
    const char *pattern;
    unsigned flags;
    mph_handler handler;
} route;

static const route routes[] = {
    {EVHTTP_REQ_GET, "GET", "/healthz", ROUTE_PUSH, mph_h_health},
    {EVHTTP_REQ_GET, "GET", "/metrics", 0, mph_h_metrics},
    {EVHTTP_REQ_GET, "GET", "/v1/status", 0, mph_h_status},
    {EVHTTP_REQ_GET, "GET", "/v1/accounts", ROUTE_QUERY, mph_h_accounts},
    {EVHTTP_REQ_GET, "GET", "/v1/accounts/*", 0, mph_h_account},
    {EVHTTP_REQ_GET, "GET", "/v1/accounts/*/messages", ROUTE_QUERY, mph_h_messages},
    {EVHTTP_REQ_POST, "POST", "/v1/accounts/*/sync", 0, mph_h_sync},
    {EVHTTP_REQ_POST, "POST", "/v1/accounts/*/folders/*/backfill", 0, mph_h_backfill},
    {EVHTTP_REQ_POST, "POST", "/v1/accounts/*/probe", 0, mph_h_probe},
    {EVHTTP_REQ_POST, "POST", "/v1/accounts/*/check", 0, mph_h_check_start},
    {EVHTTP_REQ_GET, "GET", "/v1/accounts/*/check", 0, mph_h_check_get},
    {EVHTTP_REQ_GET, "GET", "/v1/messages/*", 0, mph_h_message},
    {EVHTTP_REQ_GET, "GET", "/v1/messages/*/raw", 0, mph_h_message_raw},
    {EVHTTP_REQ_GET, "GET", "/v1/events", ROUTE_QUERY, mph_h_events},
    {EVHTTP_REQ_GET, "GET", "/v1/webhooks", 0, mph_h_webhooks},
    {EVHTTP_REQ_GET, "GET", "/v1/webhooks/*", 0, mph_h_webhook},
    {EVHTTP_REQ_POST, "POST", "/v1/webhooks/*/replay", ROUTE_QUERY, mph_h_webhook_replay},
    {EVHTTP_REQ_POST, "POST", "/v1/debug/clock", 0, mph_h_debug_clock},
    /* The push verifier gets the raw query: providers' validation
     * handshakes need not follow form encoding. */
    {EVHTTP_REQ_POST, "POST", "/push/*/**", ROUTE_PUSH, mph_h_push},
};

typedef struct span {
    const char *ptr;
    size_t len;
} span;

/* Segments are compared before decoding, so "%2F" inside a segment never
 * acts as a separator. */
static bool route_match(const char *pattern, const char *path, span *params,
                        size_t *count_r, const char **rest_r)
{
    const char *p = pattern, *s = path;
    size_t n = 0;
    while (*p == '/') {
        p++;
        size_t plen = strcspn(p, "/");
        if (plen == 2 && p[0] == '*' && p[1] == '*') {
            *count_r = n;
            *rest_r = s;
            return true;
        }
        if (*s != '/')
            return false;
        s++;
        size_t slen = strcspn(s, "/");
        if (plen == 1 && p[0] == '*') {
            if (slen == 0 || n == MPH_MAX_PARAMS)
                return false;
            params[n].ptr = s;
            params[n].len = slen;
            n++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return false;
        }
        p += plen;
        s += slen;
    }
    if (*s != '\0')
        return false;
    *count_r = n;
    *rest_r = "";
    return true;
}

static bool bearer_ok(const mph_server *server, struct evhttp_request *req)
{
    const char *h =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (h == NULL || server->token == NULL || server->token[0] == '\0')
        return false;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    h += strspn(h, " ");
    size_t len = strlen(h);
    while (len > 0 && h[len - 1] == ' ')
        len--;
    return mpu_secure_equal(h, len, server->token, strlen(server->token)) == 1;
}

static bool needs_token(const mph_server *server, const char *path)
{
    if (strcmp(path, "/metrics") == 0)
        return !server->metrics_public;
    return strncmp(path, "/v1", 3) == 0 && (path[3] == '\0' || path[3] == '/');
}

/* The name part of a Host value: "name[:port]" or "[v6][:port]". */
static bool host_split(const char *value, char *name, size_t size)
{
    const char *end;
    if (value[0] == '[') {
        end = strchr(value, ']');
        if (end == NULL)
            return false;
        value++;
    } else {
        end = strchr(value, ':');
        if (end == NULL)
            end = value + strlen(value);
    }
    size_t len = (size_t)(end - value);
    if (end[0] == ']')
        end++;
    if (len == 0 || len >= size ||
        (end[0] == ':' &&
         (end[1] == '\0' || strspn(end + 1, "0123456789") != strlen(end + 1))) ||
        (end[0] != '\0' && end[0] != ':'))
        return false;
    memcpy(name, value, len);
    name[len] = '\0';
    return true;
}

/* Against DNS rebinding: a browser tricked into sending our answers to
 * another site's page still sends that site's name as Host. IP literals
 * and "localhost" cannot be rebound; other names must be listed. */
static bool host_allowed(const mph_server *server, struct evhttp_request *req)
{
    const char *value = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
    char name[256];
    unsigned char addr[sizeof(struct in6_addr)];
    if (value == NULL || !host_split(value, name, sizeof(name)))
        return false;
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1 ||
        strcasecmp(name, "localhost") == 0)
        return true;
    for (char **h = server->allowed_hosts; h != NULL && *h != NULL; h++)
        if (strcasecmp(name, *h) == 0)
            return true;
    return false;
}

static void reply_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    mph_reply_error(req, 405, "method not allowed");
}

/* Finds the route for (method, path). Returns NULL after answering 404 or
 * 405 itself. */
static const route *route_find(const mph_listener *l, struct evhttp_request *req,
                               const char *path, span *params, size_t *count_r,
                               const char **rest_r)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    char allow[64] = "";
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const route *rt = &routes[i];
        if (l->is_push && (rt->flags & ROUTE_PUSH) == 0)
            continue;
        if (!route_match(rt->pattern, path, params, count_r, rest_r))
            continue;
        if (rt->method == method)
            return rt;
        if (strstr(allow, rt->method_name) == NULL) {
            size_t used = strlen(allow);
            snprintf(allow + used, sizeof(allow) - used, "%s%s", used > 0 ? ", " : "",
                     rt->method_name);
        }
    }
    if (allow[0] != '\0')
        reply_not_allowed(req, allow);
    else
        mph_reply_error(req, 404, "not found");
    return NULL;
}

static int decode_params(const span *raw, size_t count, char **decoded)
{
    for (size_t i = 0; i < count; i++) {
        char *seg = mpu_strndup(raw[i].ptr, raw[i].len);
        size_t len = 0;
        decoded[i] = evhttp_uridecode(seg, 0, &len);
        free(seg);
        /* A %00 would cut the value short for every C consumer after us. */
        if (decoded[i] == NULL || strlen(decoded[i]) != len)
            return -1;
    }
    return 0;
}

/* The push listener's gate, before routing: TLS when configured, then
 * one token from the client's bucket and the listener's. Answers itself
 * and returns false when the request goes no further. */
static bool push_admit(mph_listener *l, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    /* Only when evhttp had to make its own bufferevent (ours failed):
     * such a connection is plaintext and gets no service. */
    if (l->tls != NULL &&
        bufferevent_openssl_get_ssl(evhttp_connection_get_bufferevent(evcon)) == NULL) {
        evhttp_add_header(out, "Connection", "close");
        mph_reply_error(req, 400, "TLS required");
        return false;
    }
    char *address = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evcon, &address, &port);
    uint64_t wait_ms =
        mph_rate_take(l->rate, address != NULL ? address : "?", mpu_mono_ms());
    if (wait_ms == 0)
        return true;
    l->stats.rate_limited++;
    char seconds[24];
    snprintf(seconds, sizeof(seconds), "%llu", (unsigned long long)((wait_ms + 999) / 1000));
    evhttp_add_header(out, "Retry-After", seconds);
    mph_reply_error(req, 429, "too many requests");
    return false;
}

void mph_dispatch(struct evhttp_request *req, void *arg)
{
    mph_listener *l = arg;
    mph_server *server = l->server;
    mph_conn_dispatched(l, req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || path[0] != '/') {
        mph_reply_error(req, 400, "invalid request target");
        return;
    }
    if (l->is_push && !push_admit(l, req))
        return;
    /* No Host check on the push listener: providers address it by its
     * public name, which we need not know, and DNS rebinding has nothing
     * to gain there (it serves no data, only accepts notifications that
     * the driver's verifier authenticates). Nor a token: no route behind
     * one is in its table. */
    if (!l->is_push && !l->is_unix && !host_allowed(server, req)) {
        mph_reply_error(req, 421,
                        "Host not accepted (an IP address, localhost or a "
                        "name in http.allowed_hosts)");
        return;
    }
    if (!l->is_push && !l->is_unix && needs_token(server, path) &&
        !bearer_ok(server, req)) {
        struct evkeyvalq *out = evhttp_request_get_output_headers(req);
        evhttp_add_header(out, "WWW-Authenticate", "Bearer");
        /* A client without the token gets one answer per connection. */
        evhttp_add_header(out, "Connection", "close");
        mph_reply_error(req, 401, "missing or invalid bearer token");
        return;
    }

    span raw[MPH_MAX_PARAMS];
    size_t count = 0;
    const char *rest = "";
    const route *rt = route_find(l, req, path, raw, &count, &rest);
    if (rt == NULL)
        return;

    char *decoded[MPH_MAX_PARAMS] = {NULL};
    struct evkeyvalq args;
    TAILQ_INIT(&args);
    const char *query = evhttp_uri_get_query(uri);
    mph_request r = {
        .server = server,
        .listener = l,
        .req = req,
        .param_count = count,
        .rest = rest,
        .query = query != NULL ? query : "",
        .args = &args,
    };
    if (decode_params(raw, count, decoded) < 0) {
        mph_reply_error(req, 400, "invalid path segment");
    } else if ((rt->flags & ROUTE_QUERY) != 0 && query != NULL &&
               (strstr(query, "%00") != NULL ||
                evhttp_parse_query_str(query, &args) != 0)) {
        mph_reply_error(req, 400, "malformed query string");
    } else {
        for (size_t i = 0; i < count; i++)
            r.params[i] = decoded[i];
        rt->handler(&r);
    }
    evhttp_clear_headers(&args);
    for (size_t i = 0; i < count; i++)
        free(decoded[i]);
}

/* Server lifetime: evhttp setup, the TCP, unix-socket and push listeners,
 * stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <event2/event.h>

#include "http/http_private.h"
#include "util/util.h"

/* Request line and headers together. What a client legitimately sends
 * (a bearer token, a provider's signature headers) is far below this, and
 * it bounds what a client without a token can make us hold. */
#define MPH_MAX_HEADERS (16u * 1024u)
#define MPH_DEFAULT_MAX_BODY (1024u * 1024u)
/* Provider notifications are small: a Pub/Sub envelope or a batch of
 * Graph change notifications is a few KiB. */
#define MPH_DEFAULT_PUSH_MAX_BODY (256u * 1024u)
#define MPH_DEFAULT_PUSH_RATE 20
#define MPH_DEFAULT_PUSH_RATE_TOTAL 200
/* evhttp's inactivity timeout (reads and writes, restarted by every
 * byte): it ends stalled writes. Requests have their own total deadline
 * and idle connections their own limit (conn.c). */
#define MPH_TIMEOUT_S 60

/* "host:port" or "[v6]:port" -> allocated host, port. */
static int parse_listen(const char *text, char **host_r, uint16_t *port_r, char **error_r)
{
    const char *colon = strrchr(text, ':');
    const char *host = text;
    size_t host_len = colon != NULL ? (size_t)(colon - text) : 0;
    int64_t port = -1;
    if (host_len >= 2 && text[0] == '[' && text[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    } else if (memchr(text, ':', host_len) != NULL) {
        host_len = 0; /* an IPv6 address needs its brackets */
    }
    if (colon == NULL || host_len == 0 || mph_parse_count(colon + 1, &port) < 0 ||
        port > 65535) {
        *error_r =
            mpu_asprintf("http listen \"%s\": expected host:port or [v6]:port", text);
        return -1;
    }
    *host_r = mpu_strndup(host, host_len);
    *port_r = (uint16_t)port;
    return 0;
}

static int listen_tcp(mph_listener *l, const char *listen, char **error_r)
{
    char *host = NULL;
    uint16_t port = 0;
    if (parse_listen(listen, &host, &port, error_r) < 0)
        return -1;
    errno = 0;
    l->bound = evhttp_bind_socket_with_handle(l->http, host, port);
    free(host);
    if (l->bound == NULL) {
        *error_r = mpu_asprintf("%s listen \"%s\": %s", l->is_push ? "push" : "http",
                                listen, errno != 0 ? strerror(errno) : "cannot bind");
        return -1;
    }
    return 0;
}

/* A leftover socket file from a previous run is replaced; a live one
 * (another daemon answering) or any other file type is an error. */
static int clear_stale_socket(const char *path, const struct sockaddr_un *sa,
                              char **error_r)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        *error_r = mpu_asprintf("%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        *error_r = mpu_asprintf("%s: exists and is not a socket", path);
        return -1;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
        int live = connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
        close(probe);
        if (live) {
            *error_r = mpu_asprintf("%s: another process is listening on it", path);
            return -1;
        }
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        *error_r = mpu_asprintf("%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int listen_unix(mph_server *server, const char *path, char **error_r)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (mpu_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0) {
        *error_r = mpu_asprintf("%s: socket path too long", path);
        return -1;
    }
    if (clear_stale_socket(path, &sa, error_r) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *error_r = mpu_asprintf("%s: socket: %s", path, strerror(errno));
        return -1;
    }
    /* Permissions are fixed between bind and listen: nobody can connect
     * before listen(), so there is no window with the umask's mode. */
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
        *error_r = mpu_asprintf("%s: bind: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    server->unix_path = mpu_strdup(path);
    if (chmod(path, 0660) < 0 || listen(fd, 128) < 0) {
        *error_r = mpu_asprintf("%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    server->local.bound = evhttp_accept_socket_with_handle(server->local.http, fd);
    if (server->local.bound == NULL) {
        *error_r = mpu_asprintf("%s: cannot accept on socket", path);
        close(fd);
        return -1;
    }
    return 0;
}

/* One evhttp per listener: evhttp's connection hooks carry no listener,
 * and each listener gets its own connection budget. */
static int listener_init(mph_server *server, mph_listener *l, const char *name,
                         bool is_unix, uint32_t max_body)
{
    l->server = server;
    l->name = name;
    l->is_unix = is_unix;
    l->http = evhttp_new(server->base);
    if (l->http == NULL)
        return -1;
    /* 0 would refuse every body; it means "not configured". */
    evhttp_set_max_body_size(l->http, max_body > 0 ? max_body : MPH_DEFAULT_MAX_BODY);
    evhttp_set_max_headers_size(l->http, MPH_MAX_HEADERS);
    evhttp_set_timeout(l->http, MPH_TIMEOUT_S);
    /* Read an oversized body to its end before answering 413, so the
     * client sees the answer instead of a reset (the bytes are discarded
     * as they come, and the request deadline bounds the time). */
    evhttp_set_flags(l->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_default_content_type(l->http, "application/json");
    /* Methods evhttp rejects itself get a 501 page; everything a client
     * may plausibly send reaches the router and gets a JSON 405. */
    evhttp_set_allowed_methods(
        l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                     EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(l->http, mph_dispatch, l);
    return 0;
}

static void listener_free(mph_listener *l)
{
    l->stopping = true;
    /* Closes the listener and every connection, freeing their requests. */
    if (l->http != NULL)
        evhttp_free(l->http);
    l->http = NULL;
    l->bound = NULL;
    mph_conn_unlisten(l);
    mph_rate_free(&l->rate);
    SSL_CTX_free(l->tls);
    l->tls = NULL;
}

/* The push listener: its own evhttp (so its own route table, body limit
 * and connection budget), optionally TLS. */
static int start_push(mph_server *server, const mph_push_config *pc, char **error_r)
{
    mph_listener *l = &server->push;
    l->is_push = true;
    if (listener_init(server, l, "push", false,
                      pc->max_body > 0 ? pc->max_body : MPH_DEFAULT_PUSH_MAX_BODY) < 0) {
        *error_r = mpu_strdup("push: cannot create server");
        return -1;
    }
    if (pc->tls != NULL) {
        SSL_CTX_up_ref(pc->tls);
        l->tls = pc->tls;
    }
    l->rate = mph_rate_new(pc->rate > 0 ? pc->rate : MPH_DEFAULT_PUSH_RATE,
                           pc->rate_total > 0 ? pc->rate_total
                                              : MPH_DEFAULT_PUSH_RATE_TOTAL);
    if (listen_tcp(l, pc->listen, error_r) < 0)
        return -1;
    if (mph_conn_listen(l) < 0) {
        *error_r = mpu_strdup("push: cannot create server");
        return -1;
    }
    return 0;
}

static char **copy_hosts(const char *const *hosts)
{
    size_t n = 0;
    while (hosts != NULL && hosts[n] != NULL)
        n++;
    if (n == 0)
        return NULL;
    char **copy = mpu_calloc(n + 1, sizeof(*copy));
    for (size_t i = 0; i < n; i++)
        copy[i] = mpu_strdup(hosts[i]);
    return copy;
}

mph_server *mph_start(struct event_base *base, const mph_config *config, mpd *d,
                      char **error_r)
{
    const char *listen = config->listen != NULL ? config->listen : "";
    const char *path = config->socket != NULL ? config->socket : "";
    if (listen[0] != '\0' && (config->token == NULL || config->token[0] == '\0')) {
        *error_r = mpu_strdup("http: a token is required to listen on TCP");
        return NULL;
    }
    mph_server *server = mpu_calloc(1, sizeof(*server));
    server->base = base;
    server->d = d;
    server->token = mpu_strdup(config->token);
    server->heartbeat_ms =
        config->sse_heartbeat_ms > 0 ? config->sse_heartbeat_ms : 15000;
    server->limits = config->limits;
    server->metrics_public = config->metrics_public;
    server->allowed_hosts = copy_hosts(config->allowed_hosts);
    if ((listen[0] != '\0' &&
         listener_init(server, &server->tcp, "tcp", false, config->max_body) < 0) ||
        (path[0] != '\0' &&
         listener_init(server, &server->local, "unix", true, config->max_body) < 0)) {
        *error_r = mpu_strdup("http: cannot create server");
        mph_stop(&server);
        return NULL;
    }
    if ((listen[0] != '\0' && listen_tcp(&server->tcp, listen, error_r) < 0) ||
        (path[0] != '\0' && listen_unix(server, path, error_r) < 0)) {
        mph_stop(&server);
        return NULL;
    }
    if ((listen[0] != '\0' && mph_conn_listen(&server->tcp) < 0) ||
        (path[0] != '\0' && mph_conn_listen(&server->local) < 0)) {
        *error_r = mpu_strdup("http: cannot create server");
        mph_stop(&server);
        return NULL;
    }
    if (config->push.listen != NULL && config->push.listen[0] != '\0' &&
        start_push(server, &config->push, error_r) < 0) {
        mph_stop(&server);
        return NULL;
    }
    return server;
}

static int bound_port(const mph_listener *l)
{
    if (l->bound == NULL)
        return 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(l->bound);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

int mph_port(mph_server *server)
{
    return server != NULL ? bound_port(&server->tcp) : 0;
}

int mph_push_port(mph_server *server)
{
    return server != NULL ? bound_port(&server->push) : 0;
}

static void listener_stats(const mph_listener *l, mph_stats_listener *stats_r)
{
    *stats_r = l->stats;
    stats_r->open = l->open;
}

void mph_get_stats(mph_server *server, mph_stats *stats_r)
{
    memset(stats_r, 0, sizeof(*stats_r));
    if (server == NULL)
        return;
    listener_stats(&server->tcp, &stats_r->tcp);
    listener_stats(&server->local, &stats_r->local);
    listener_stats(&server->push, &stats_r->push);
}

void mph_stop(mph_server **serverp)
{
    mph_server *server = *serverp;
    if (server == NULL)
        return;
    *serverp = NULL;
    mph_sse_stop_all(server);
    mph_raw_abandon_all(server);
    listener_free(&server->tcp);
    listener_free(&server->local);
    listener_free(&server->push);
    if (server->allowed_hosts != NULL) {
        for (char **h = server->allowed_hosts; *h != NULL; h++)
            free(*h);
        free(server->allowed_hosts);
    }
    if (server->unix_path != NULL)
        unlink(server->unix_path);
    free(server->unix_path);
    free(server->token);
    free(server);
}

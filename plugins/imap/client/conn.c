/* Opening and closing connections: TCP with a bounded connect, TLS or
 * STARTTLS (never a silent fallback to plaintext), greeting, login,
 * capabilities, ID and ENABLE. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "imapc.h"

static const struct {
    const char *name;
    uint32_t bit;
} cap_names[] = {
    {"IDLE", IMAP_CAP_IDLE},
    {"CONDSTORE", IMAP_CAP_CONDSTORE},
    {"QRESYNC", IMAP_CAP_QRESYNC},
    {"ENABLE", IMAP_CAP_ENABLE},
    {"UIDPLUS", IMAP_CAP_UIDPLUS},
    {"MOVE", IMAP_CAP_MOVE},
    {"ESEARCH", IMAP_CAP_ESEARCH},
    {"SPECIAL-USE", IMAP_CAP_SPECIAL_USE},
    {"LITERAL+", IMAP_CAP_LITERAL_PLUS},
    {"LITERAL-", IMAP_CAP_LITERAL_MINUS},
    {"NOTIFY", IMAP_CAP_NOTIFY},
    {"ID", IMAP_CAP_ID},
    {"X-GM-EXT-1", IMAP_CAP_XGMEXT1},
    {"STARTTLS", IMAP_CAP_STARTTLS},
    {"LOGINDISABLED", IMAP_CAP_LOGINDISABLED},
    {"NAMESPACE", IMAP_CAP_NAMESPACE},
    {"UTF8=ACCEPT", IMAP_CAP_UTF8_ACCEPT},
    {"COMPRESS=DEFLATE", IMAP_CAP_COMPRESS_DEFLATE},
    {"OBJECTID", IMAP_CAP_OBJECTID},
};

void imapc_caps_set(imap_conn *c, const imap_token *atoms, size_t n)
{
    imapc_buf raw = {0}, mechs = {0};
    uint32_t bits = 0;
    for (size_t i = 0; i < n; i++) {
        const imap_token *t = &atoms[i];
        if (t->type != IMAP_T_ATOM)
            continue;
        /* What is kept goes into the stored profile: bounded. */
        if (raw.len + 1 + t->len < IMAPC_MAX_CAPS_TEXT) {
            if (raw.len > 0)
                imapc_buf_append(&raw, " ", 1);
            imapc_buf_append(&raw, t->str, t->len);
        }
        if (strncasecmp(t->str, "AUTH=", 5) == 0 && mechs.len + 1 + t->len < IMAPC_MAX_CAPS_TEXT) {
            if (mechs.len > 0)
                imapc_buf_append(&mechs, " ", 1);
            imapc_buf_append(&mechs, t->str + 5, t->len - 5);
        }
        for (size_t k = 0; k < sizeof cap_names / sizeof cap_names[0]; k++)
            if (strcasecmp(t->str, cap_names[k].name) == 0)
                bits |= cap_names[k].bit;
    }
    free(c->caps.raw);
    c->caps.raw = raw.data != NULL ? raw.data : imapc_strdup("");
    c->caps.bits = bits;
    /* After login servers usually stop listing AUTH=; keep what was offered. */
    if (mechs.data != NULL) {
        free(c->caps.auth_mechs);
        c->caps.auth_mechs = mechs.data;
    }
    c->have_caps = 1;
}

static int word_in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;
    while (p != NULL && *p != '\0') {
        const char *e = strchr(p, ' ');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (len == n && strncasecmp(p, name, n) == 0)
            return 1;
        p = e != NULL ? e + 1 : NULL;
    }
    return 0;
}

int imapc_has_cap(const imap_conn *c, const char *name)
{
    return c->caps.raw != NULL && word_in_list(c->caps.raw, name);
}

void imapc_observe(imap_conn *c, const imap_response *r)
{
    if (r->code != NULL && strcmp(r->code, "CAPABILITY") == 0 && r->status == IMAP_OK)
        imapc_caps_set(c, r->code_args, r->n_code_args);
    if (r->kind != IMAP_R_UNTAGGED)
        return;
    if (r->status == IMAP_NONE && strcmp(r->keyword, "CAPABILITY") == 0) {
        imapc_caps_set(c, r->args, r->n_args);
    } else if (r->status == IMAP_NONE && strcmp(r->keyword, "ENABLED") == 0) {
        for (size_t i = 0; i < r->n_args; i++) {
            /* QRESYNC implies CONDSTORE (RFC 7162 3.2.3). */
            if (imap_token_is(&r->args[i], "QRESYNC"))
                c->enabled |= IMAP_CAP_QRESYNC | IMAP_CAP_CONDSTORE;
            else if (imap_token_is(&r->args[i], "CONDSTORE"))
                c->enabled |= IMAP_CAP_CONDSTORE;
        }
    } else if (r->status == IMAP_BYE) {
        c->closed = 1;
        free(c->bye);
        c->bye = imapc_strdup(r->text != NULL ? r->text : "");
    }
}

char *imapc_resp_text(const char *raw, size_t len)
{
    const char *end = raw + len;
    const char *p = memchr(raw, ' ', len);
    if (p != NULL)
        p = memchr(p + 1, ' ', (size_t)(end - p - 1));
    if (p == NULL)
        return imapc_strdup("");
    p++;
    const char *e = p;
    while (e < end && *e != '\r' && *e != '\n')
        e++;
    return imapc_strndup(p, (size_t)(e - p));
}

static void set_keepalive(int fd)
{
    int on = 1, idle = 60, intvl = 15, cnt = 4;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

static int connect_tcp(imap_conn *c, char **error_r)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)c->port);
    int r = getaddrinfo(c->host, port, &hints, &res);
    if (r != 0)
        return imapc_fail(error_r, "cannot resolve %s: %s", c->host, gai_strerror(r));
    char *last = NULL;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            imapc_fail(&last, "socket: %s", strerror(errno));
            continue;
        }
        int err = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno;
            if (err == EINPROGRESS) {
                /* Each address gets the idle timeout, all of them together
                 * the deadline. */
                c->fd = fd;
                int pr = imapc_wait_fd(c, POLLOUT, "connect", &last);
                c->fd = -1;
                if (pr < 0) {
                    close(fd);
                    if (imapc_deadline_left(c) == 0)
                        break;
                    continue;
                }
                socklen_t sl = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
                    err = errno;
            }
        }
        if (err != 0) {
            imapc_fail(&last, "%s", strerror(err));
            close(fd);
            continue;
        }
        set_keepalive(fd);
        c->fd = fd;
        break;
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        imapc_fail(error_r, "cannot connect to %s:%u: %s", c->host, (unsigned)c->port,
                   last != NULL ? last : "no address");
        free(last);
        return -1;
    }
    free(last);
    return 0;
}

static int run_capability(imap_conn *c, char **error_r)
{
    c->have_caps = 0;
    if (imap_run(c, NULL, NULL, NULL, error_r, "CAPABILITY") < 0)
        return -1;
    if (!c->have_caps)
        return imapc_fail(error_r, "server sent no CAPABILITY response");
    return 0;
}

static int read_greeting(imap_conn *c, int *preauth_r, char **error_r)
{
    imap_response r;
    if (imapc_read_response(c, "the server greeting", 0, &r, NULL, NULL, error_r) < 0)
        return -1;
    if (r.kind != IMAP_R_UNTAGGED ||
        (r.status != IMAP_OK && r.status != IMAP_PREAUTH && r.status != IMAP_BYE))
        return imapc_fail(error_r, "unexpected greeting from %s", c->host);
    c->caps.greeting = imapc_strdup(r.text != NULL ? r.text : "");
    if (r.status == IMAP_BYE)
        return imapc_fail(error_r, "server %s refused the connection: %s", c->host, r.text);
    *preauth_r = r.status == IMAP_PREAUTH;
    return 0;
}

static int start_tls(imap_conn *c, const imap_conn_opts *opts, int preauth, char **error_r)
{
    if (preauth)
        return imapc_fail(error_r, "%s sent PREAUTH, so STARTTLS is impossible; refusing to "
                                   "continue without TLS", c->host);
    if (!c->have_caps && run_capability(c, error_r) < 0)
        return -1;
    if (!(c->caps.bits & IMAP_CAP_STARTTLS))
        return imapc_fail(error_r, "%s does not offer STARTTLS; refusing to continue without TLS",
                          c->host);
    imap_status st;
    if (imap_run(c, NULL, NULL, &st, error_r, "STARTTLS") < 0)
        return -1;
    if (st != IMAP_OK)
        return imapc_fail(error_r, "STARTTLS failed on %s; refusing to continue without TLS",
                          c->host);
    /* Bytes after the OK arrived in plaintext: an injection attempt. */
    if (c->rbuf.len > c->pend_rbuf || c->held.len > c->pend_held)
        return imapc_fail(error_r, "unexpected data after STARTTLS from %s", c->host);
    imapc_buf_consume(&c->rbuf, c->pend_rbuf);
    c->pend_rbuf = 0;
    imapc_deadline_arm(c);
    if (imapc_tls_start(c, opts->ca_file, error_r) < 0)
        return -1;
    /* Capabilities before TLS are not trustworthy. */
    free(c->caps.auth_mechs);
    c->caps.auth_mechs = NULL;
    c->have_caps = 0;
    return run_capability(c, error_r);
}

/* ID and ENABLE go out together and are waited for together: one round
 * trip instead of two, shared with the caller's first command when it
 * defers the wait (imap_conn_settle). Neither depends on the other's
 * answer, and a refusal of either is no reason to give up the
 * connection. */
static int send_id_enable(imap_conn *c, const imap_conn_opts *opts, char **error_r)
{
    char *tags[2] = {c->settle_tags[0], c->settle_tags[1]};
    if (opts->client_id != NULL && (c->caps.bits & IMAP_CAP_ID)) {
        int safe = opts->client_id[0] != '\0' && strlen(opts->client_id) <= 64;
        for (const char *p = opts->client_id; safe && *p != '\0'; p++)
            safe = *p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\' && *p != '%';
        if (safe &&
            imap_send(c, tags[0], error_r, "ID (\"name\" \"%a\")", opts->client_id) < 0)
            return -1;
    }
    if (opts->enable && (c->caps.bits & IMAP_CAP_ENABLE)) {
        const char *what = (c->caps.bits & IMAP_CAP_QRESYNC)     ? "QRESYNC"
                           : (c->caps.bits & IMAP_CAP_CONDSTORE) ? "CONDSTORE"
                                                                 : NULL;
        if (what != NULL && imap_send(c, tags[1], error_r, "ENABLE %a", what) < 0)
            return -1;
    }
    return opts->defer_settle ? 0 : imap_conn_settle(c, error_r);
}

int imap_conn_settle(imap_conn *conn, char **error_r)
{
    for (size_t i = 0; i < 2; i++) {
        char *tag = conn->settle_tags[i];
        imap_status st;
        if (tag[0] != '\0' && imap_wait(conn, tag, NULL, NULL, &st, NULL, error_r) < 0)
            return -1;
        tag[0] = '\0';
    }
    return 0;
}

int imap_conn_open(const imap_conn_opts *opts, imap_conn **conn_r, imap_auth_answer *auth_r,
                   char **error_r)
{
    *conn_r = NULL;
    if (auth_r != NULL)
        memset(auth_r, 0, sizeof *auth_r);
    if (opts == NULL || opts->host == NULL || opts->host[0] == '\0')
        return imapc_fail(error_r, "no IMAP host given");
    imap_conn *c = imapc_calloc(1, sizeof *c);
    c->fd = -1;
    c->host = imapc_strdup(opts->host);
    c->port = opts->port != 0 ? opts->port : opts->tls == IMAP_TLS_IMPLICIT ? 993 : 143;
    c->timeout_ms = opts->timeout_ms != 0 ? opts->timeout_ms : IMAPC_DEFAULT_TIMEOUT_MS;
    c->deadline_ms = opts->deadline_ms != 0 ? opts->deadline_ms : IMAPC_DEFAULT_DEADLINE_MS;
    c->max_memory = opts->max_memory != 0 ? opts->max_memory : IMAPC_DEFAULT_MAX_MEMORY;
    c->arena = imap_arena_new();
    c->next_tag = 1;
    int preauth = 0;
    /* Every step of opening has its own deadline; commands arm theirs. */
    imapc_deadline_arm(c);
    if (connect_tcp(c, error_r) < 0)
        goto fail;
    imapc_deadline_arm(c);
    if (opts->tls == IMAP_TLS_IMPLICIT && imapc_tls_start(c, opts->ca_file, error_r) < 0)
        goto fail;
    imapc_deadline_arm(c);
    if (read_greeting(c, &preauth, error_r) < 0)
        goto fail;
    if (opts->tls == IMAP_TLS_STARTTLS && start_tls(c, opts, preauth, error_r) < 0)
        goto fail;
    if (!preauth) {
        if (!c->have_caps && run_capability(c, error_r) < 0)
            goto fail;
        c->have_caps = 0;
        if (imapc_authenticate(c, opts, auth_r, error_r) < 0)
            goto fail;
    }
    if (!c->have_caps && run_capability(c, error_r) < 0)
        goto fail;
    if (send_id_enable(c, opts, error_r) < 0)
        goto fail;
    *conn_r = c;
    return 0;
fail:
    imap_conn_abort(&c);
    return -1;
}

void imap_conn_abort(imap_conn **conn)
{
    if (conn == NULL || *conn == NULL)
        return;
    imap_conn *c = *conn;
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    if (c->ctx != NULL)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    imapc_buf_free(&c->rbuf);
    imapc_buf_free(&c->held);
    imapc_buf_free(&c->wbuf);
    for (size_t i = 0; i < c->n_done; i++)
        free(c->done[i].text);
    free(c->done);
    free(c->caps.raw);
    free(c->caps.auth_mechs);
    free(c->caps.greeting);
    free(c->bye);
    free(c->host);
    imap_arena_free(&c->arena);
    free(c);
    *conn = NULL;
}

void imap_conn_close(imap_conn **conn)
{
    if (conn == NULL || *conn == NULL)
        return;
    imap_conn *c = *conn;
    if (c->fd >= 0 && !c->closed) {
        char tag[16];
        char *err = NULL;
        imap_status st;
        c->timeout_ms = c->timeout_ms < 2000 ? c->timeout_ms : 2000;
        c->deadline_ms = c->deadline_ms < 2000 ? c->deadline_ms : 2000;
        int nb = c->nonblocking;
        c->nonblocking = 0;
        if ((c->wbuf.len == 0 ||
             imapc_write_all(c, c->wbuf.data, c->wbuf.len, "queued output", &err) == 0) &&
            imap_send(c, tag, &err, "LOGOUT") == 0)
            (void)imap_wait(c, tag, NULL, NULL, &st, NULL, &err);
        c->nonblocking = nb;
        free(err);
        if (c->ssl != NULL && !c->closed)
            (void)SSL_shutdown(c->ssl);
    }
    imap_conn_abort(conn);
}

const imap_caps *imap_conn_caps(const imap_conn *conn)
{
    return &conn->caps;
}

int imap_conn_fd(const imap_conn *conn)
{
    return conn->fd;
}

uint32_t imap_conn_enabled(const imap_conn *conn)
{
    return conn->enabled;
}

int imap_conn_timed_out(const imap_conn *conn)
{
    return conn != NULL && conn->timed_out;
}

/* A scripted IMAP server in a thread for the IMAP unit tests (included
 * after cmocka.h): it accepts one connection and plays a script of
 *   "S:line"  send line + CRLF     "R:bytes"  send bytes as they are
 *   "C:line"  expect a client line (a trailing '*' matches a prefix)
 *   "P:ms"    pause                "T"        TLS accept (STARTTLS)
 *   "E"       expect EOF
 * A mismatch ends the script with server.error set. */
#ifndef MP_TEST_IMAP_SCRIPT_SERVER_H
#define MP_TEST_IMAP_SCRIPT_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "imap_client.h"

typedef struct server {
    int lfd;
    uint16_t port;
    const char *const *script;
    SSL_CTX *tls_ctx;  /* implicit TLS when set and !starttls_only */
    int implicit_tls;
    pthread_t thread;
    char error[2400];
} server;

typedef struct sconn {
    int fd;
    SSL *ssl;
} sconn;

static long s_read(sconn *c, void *buf, size_t len)
{
    if (c->ssl != NULL) {
        int n = SSL_read(c->ssl, buf, (int)len);
        return n > 0 ? n : 0;
    }
    ssize_t n;
    do {
        n = recv(c->fd, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    return n > 0 ? (long)n : 0;
}

static void s_write(sconn *c, const char *data, size_t len)
{
    if (c->ssl != NULL) {
        (void)SSL_write(c->ssl, data, (int)len);
        return;
    }
    (void)send(c->fd, data, len, MSG_NOSIGNAL);
}

static int s_line(sconn *c, char *buf, size_t size)
{
    size_t n = 0;
    while (n + 1 < size) {
        char ch;
        if (s_read(c, &ch, 1) != 1)
            return -1;
        if (ch == '\n')
            break;
        buf[n++] = ch;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return 0;
}

static int s_tls_accept(server *s, sconn *c)
{
    c->ssl = SSL_new(s->tls_ctx);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_accept(c->ssl) != 1) {
        snprintf(s->error, sizeof s->error, "server: TLS accept failed");
        return -1;
    }
    return 0;
}

static void *server_main(void *arg)
{
    server *s = arg;
    sconn c = {.fd = accept(s->lfd, NULL, NULL)};
    if (c.fd < 0) {
        snprintf(s->error, sizeof s->error, "accept failed");
        return NULL;
    }
    if (s->implicit_tls && s_tls_accept(s, &c) < 0)
        goto out;
    for (const char *const *st = s->script; *st != NULL; st++) {
        const char *line = *st;
        const char *arg1 = line + 2;
        if (strncmp(line, "S:", 2) == 0) {
            s_write(&c, arg1, strlen(arg1));
            s_write(&c, "\r\n", 2);
        } else if (strncmp(line, "R:", 2) == 0) {
            s_write(&c, arg1, strlen(arg1));
        } else if (strncmp(line, "P:", 2) == 0) {
            usleep((useconds_t)strtol(arg1, NULL, 10) * 1000);
        } else if (strcmp(line, "T") == 0) {
            if (s_tls_accept(s, &c) < 0)
                goto out;
        } else if (strcmp(line, "E") == 0) {
            char tmp[256];
            if (s_read(&c, tmp, sizeof tmp) != 0)
                snprintf(s->error, sizeof s->error, "expected EOF, got data");
            goto out;
        } else if (strncmp(line, "C:", 2) == 0) {
            char got[1024];
            if (s_line(&c, got, sizeof got) < 0) {
                snprintf(s->error, sizeof s->error, "expected \"%s\", got EOF", arg1);
                goto out;
            }
            size_t n = strlen(arg1);
            int ok = n > 0 && arg1[n - 1] == '*' ? strncmp(got, arg1, n - 1) == 0
                                                 : strcmp(got, arg1) == 0;
            if (!ok) {
                snprintf(s->error, sizeof s->error, "expected \"%s\", got \"%s\"", arg1, got);
                goto out;
            }
        }
    }
out:
    /* Half-close, then drain, so the client reads everything we sent. */
    shutdown(c.fd, SHUT_WR);
    {
        char tmp[256];
        struct pollfd pfd = {.fd = c.fd, .events = POLLIN};
        while (poll(&pfd, 1, 5000) > 0 && recv(c.fd, tmp, sizeof tmp, 0) > 0)
            ;
    }
    if (c.ssl != NULL)
        SSL_free(c.ssl);
    close(c.fd);
    return NULL;
}

static inline void server_start(server *s, const char *const *script)
{
    s->script = script;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

/* Appends to `script` (a NULL-terminated array of `cap` entries whose
 * first `k` are used) `bytes` steps that each send one byte of "*" and
 * pause 100 ms: a server that never stalls long enough for the idle
 * timeout yet never finishes an answer. */
static inline void script_trickle(const char **script, size_t cap, size_t k, int bytes)
{
    for (int i = 0; i < bytes && k + 2 < cap; i++) {
        script[k++] = "R:*";
        script[k++] = "P:100";
    }
    script[k] = NULL;
}

static inline void server_join(server *s)
{
    pthread_join(s->thread, NULL);
    close(s->lfd);
}

static inline imap_conn_opts plain_opts(const server *s)
{
    imap_conn_opts o = {
        .host = "127.0.0.1",
        .port = s->port,
        .tls = IMAP_TLS_NONE,
        .username = "user",
        .secret = "secret",
        .auth = IMAP_AUTH_PLAIN,
        .timeout_ms = 5000,
    };
    return o;
}

#endif

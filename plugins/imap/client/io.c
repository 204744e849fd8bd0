/* Blocking reads and writes on the connection's socket, which is always
 * O_NONBLOCK: every wait is a poll bounded by the connection timeout, so a
 * silent server cannot hang a worker, and by the deadline of the command
 * under way, so a server trickling a byte now and then cannot either.
 * Received responses are held to the connection's memory budget. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/err.h>

#include "imapc.h"

int64_t imapc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void imapc_deadline_arm(imap_conn *c)
{
    c->deadline_at = imapc_now_ms() + (int64_t)c->deadline_ms;
}

int64_t imapc_deadline_left(const imap_conn *c)
{
    if (c->deadline_at == 0)
        return -1;
    int64_t left = c->deadline_at - imapc_now_ms();
    return left > 0 ? left : 0;
}

int imapc_fail_budget(imap_conn *c, const char *detail, char **error_r)
{
    c->closed = 1;
    return imapc_fail(error_r,
                      "server response exceeds %zu MiB (the connection's memory budget, "
                      "max_memory_mb): %s",
                      c->max_memory >> 20, detail);
}

/* Poll for `events` within both the idle timeout and the deadline. */
int imapc_wait_fd(imap_conn *c, short events, const char *what, char **error_r)
{
    struct pollfd pfd = {.fd = c->fd, .events = events};
    for (;;) {
        int64_t left = imapc_deadline_left(c);
        int by_deadline = left >= 0 && left < (int64_t)c->timeout_ms;
        int timeout = by_deadline ? (int)left : (int)c->timeout_ms;
        int r = timeout > 0 ? poll(&pfd, 1, timeout) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return imapc_fail(error_r, "poll failed waiting for %s: %s", what, strerror(errno));
        if (r == 0)
            c->timed_out = 1;
        if (r == 0 && by_deadline)
            return imapc_fail(error_r,
                              "no complete answer within the %u %s deadline waiting for %s "
                              "(server stalling or too slow)",
                              c->deadline_ms % 1000 != 0 ? c->deadline_ms : c->deadline_ms / 1000,
                              c->deadline_ms % 1000 != 0 ? "ms" : "s", what);
        if (r == 0)
            return imapc_fail(error_r, "timed out after %u ms waiting for %s", c->timeout_ms,
                              what);
        return 0;
    }
}

static const char *ssl_err_text(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown error";
}

int imapc_write_all(imap_conn *c, const void *data, size_t len, const char *what,
                    char **error_r)
{
    const char *p = data;
    while (len > 0) {
        if (c->ssl != NULL) {
            ERR_clear_error();
            int n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
            if (n > 0) {
                p += n;
                len -= (size_t)n;
                continue;
            }
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                if (imapc_wait_fd(c, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, what, error_r) < 0)
                    return -1;
                continue;
            }
            c->closed = 1;
            return imapc_fail(error_r, "TLS write failed while sending %s: %s", what,
                              e == SSL_ERROR_SYSCALL ? strerror(errno) : ssl_err_text());
        }
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (imapc_wait_fd(c, POLLOUT, what, error_r) < 0)
                return -1;
            continue;
        }
        c->closed = 1;
        return imapc_fail(error_r, "write failed while sending %s: %s", what, strerror(errno));
    }
    return 0;
}

long imapc_read_some(imap_conn *c, char **error_r)
{
    char tmp[16384];
    if (c->ssl != NULL) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, tmp, sizeof tmp);
        if (n > 0) {
            c->ssl_want_write = 0;
            imapc_buf_append(&c->rbuf, tmp, (size_t)n);
            return n;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            c->ssl_want_write = 0;
            return -2;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            c->ssl_want_write = 1;
            return -2;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
            return 0;
        return imapc_fail(error_r, "TLS read failed: %s",
                          e == SSL_ERROR_SYSCALL ? strerror(errno) : ssl_err_text());
    }
    for (;;) {
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n > 0) {
            imapc_buf_append(&c->rbuf, tmp, (size_t)n);
            return (long)n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -2;
        return imapc_fail(error_r, "read failed: %s", strerror(errno));
    }
}

int imapc_next_buffered(imap_conn *c, int skip_held, imap_response *resp_r, char **raw_r,
                        size_t *raw_len_r, char **error_r)
{
    if (c->pend_held > 0) {
        imapc_buf_consume(&c->held, c->pend_held);
        c->pend_held = 0;
    }
    if (c->pend_rbuf > 0) {
        imapc_buf_consume(&c->rbuf, c->pend_rbuf);
        c->pend_rbuf = 0;
    }
    imapc_buf *src = NULL;
    long n = 0;
    size_t max_text = c->max_memory / 4;
    if (!skip_held && c->held.len > 0) {
        n = imapc_response_length(c->held.data, c->held.len, max_text, IMAPC_MAX_RESPONSE);
        if (n > 0)
            src = &c->held;
    }
    if (src == NULL && c->rbuf.len > 0) {
        n = imapc_response_length(c->rbuf.data, c->rbuf.len, max_text, IMAPC_MAX_RESPONSE);
        if (n == -2) {
            char detail[96];
            snprintf(detail, sizeof detail, "its text outside literals passes %zu MiB",
                     max_text >> 20);
            return imapc_fail_budget(c, detail, error_r);
        }
        if (n < 0) {
            c->closed = 1;
            return imapc_fail(error_r, "malformed IMAP response: line or literal too long");
        }
        if (n > 0)
            src = &c->rbuf;
    }
    if (src == NULL) {
        /* Waiting for data: the previous response is dead (its bytes were
         * consumed above), so its parse goes too. */
        imapc_arena_release(c->arena);
        return 0;
    }
    if (src == &c->held)
        c->pend_held = (size_t)n;
    else
        c->pend_rbuf = (size_t)n;
    imap_arena_reset(c->arena);
    char *perr = NULL;
    int over = 0;
    if (imapc_parse_limited(src->data, (size_t)n, c->arena, c->max_memory, &over, resp_r,
                            &perr) < 0) {
        c->closed = 1;
        if (over)
            imapc_fail_budget(c, perr, error_r);
        else
            imapc_fail(error_r, "%s", perr);
        free(perr);
        return -1;
    }
    imapc_observe(c, resp_r);
    if (raw_r != NULL)
        *raw_r = src->data;
    if (raw_len_r != NULL)
        *raw_len_r = (size_t)n;
    return 1;
}

int imapc_read_response(imap_conn *c, const char *what, int skip_held, imap_response *resp_r,
                        char **raw_r, size_t *raw_len_r, char **error_r)
{
    for (;;) {
        int r = imapc_next_buffered(c, skip_held, resp_r, raw_r, raw_len_r, error_r);
        if (r != 0)
            return r > 0 ? 0 : -1;
        if (c->fd < 0)
            return imapc_fail(error_r, "connection is closed");
        long n = imapc_read_some(c, error_r);
        if (n > 0) {
            if (c->deadline_at != 0)
                c->deadline_at += n / IMAPC_DEADLINE_BYTES_PER_MS;
            continue;
        }
        if (n == 0) {
            c->closed = 1;
            if (c->bye != NULL)
                return imapc_fail(error_r, "server closed the connection (BYE %s)", c->bye);
            return imapc_fail(error_r, "connection closed by server while waiting for %s", what);
        }
        if (n == -1) {
            c->closed = 1;
            return -1;
        }
        if (imapc_wait_fd(c, c->ssl_want_write ? POLLOUT : POLLIN, what, error_r) < 0)
            return -1;
    }
}

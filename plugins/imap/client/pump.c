/* Non-blocking use for push streams on the host's event loop: writes are
 * queued when the socket (or TLS) cannot take them, reads hand every
 * complete response to the callback. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "imapc.h"

int imap_conn_set_nonblocking(imap_conn *conn)
{
    /* The socket is O_NONBLOCK from the start; only the API mode changes. */
    conn->nonblocking = 1;
    return 0;
}

static int flush_queue(imap_conn *c, char **error_r)
{
    while (c->wbuf.len > 0) {
        if (c->ssl != NULL) {
            ERR_clear_error();
            int n = SSL_write(c->ssl, c->wbuf.data,
                              c->wbuf.len > INT32_MAX ? INT32_MAX : (int)c->wbuf.len);
            if (n > 0) {
                imapc_buf_consume(&c->wbuf, (size_t)n);
                continue;
            }
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                return 0;
            c->closed = 1;
            unsigned long le = ERR_peek_last_error();
            return imapc_fail(error_r, "TLS write failed: %s",
                              e == SSL_ERROR_SYSCALL || le == 0 ? strerror(errno)
                                                                : ERR_reason_error_string(le));
        }
        ssize_t n = send(c->fd, c->wbuf.data, c->wbuf.len, MSG_NOSIGNAL);
        if (n > 0) {
            imapc_buf_consume(&c->wbuf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        c->closed = 1;
        return imapc_fail(error_r, "write failed: %s", strerror(errno));
    }
    return 0;
}

int imap_conn_write(imap_conn *conn, const char *data, size_t len, char **error_r)
{
    if (conn->fd < 0)
        return imapc_fail(error_r, "connection is closed");
    if (!conn->nonblocking && conn->wbuf.len == 0)
        return imapc_write_all(conn, data, len, "a command", error_r);
    imapc_buf_append(&conn->wbuf, data, len);
    return flush_queue(conn, error_r);
}

int imap_conn_want_write(const imap_conn *conn)
{
    return conn->wbuf.len > 0 || conn->ssl_want_write;
}

static int deliver(imap_conn *c, imap_untagged_cb cb, void *arg, char **error_r)
{
    for (;;) {
        imap_response r;
        int n = imapc_next_buffered(c, 0, &r, NULL, NULL, error_r);
        if (n <= 0)
            return n;
        if (cb != NULL && cb(&r, arg) != 0)
            return imapc_fail(error_r, "response handler failed");
    }
}

int imap_conn_pump(imap_conn *conn, imap_untagged_cb cb, void *arg, char **error_r)
{
    imap_conn *c = conn;
    if (c->fd < 0)
        return imapc_fail(error_r, "connection is closed");
    if (flush_queue(c, error_r) < 0)
        return -1;
    if (deliver(c, cb, arg, error_r) < 0)
        return -1;
    for (;;) {
        long n = imapc_read_some(c, error_r);
        if (n == -1) {
            c->closed = 1;
            return -1;
        }
        if (n == -2) {
            /* A TLS read may have needed a write step, and vice versa. */
            if (flush_queue(c, error_r) < 0)
                return -1;
            return 1;
        }
        if (deliver(c, cb, arg, error_r) < 0)
            return -1;
        if (n == 0) {
            c->closed = 1;
            return 0;
        }
    }
}

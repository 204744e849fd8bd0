/* TLS client side: verification of chain and host name is always on;
 * there is no switch to turn it off, only an extra CA file to trust. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "imapc.h"

static const char *err_text(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown error";
}

static int is_ip_literal(const char *host)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

static int setup_ctx(imap_conn *c, const char *ca_file, char **error_r)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return imapc_fail(error_r, "cannot create TLS context: %s", err_text());
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    /* The system store may be missing in containers; an explicit ca_file
     * still works then, and without either verification fails. */
    (void)SSL_CTX_set_default_verify_paths(c->ctx);
    if (ca_file != NULL && ca_file[0] != '\0' &&
        SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1)
        return imapc_fail(error_r, "cannot load CA file %s: %s", ca_file, err_text());
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* IMAP frames its own data, so a missing close_notify is harmless. */
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return 0;
}

int imapc_tls_start(imap_conn *c, const char *ca_file, char **error_r)
{
    ERR_clear_error();
    if (setup_ctx(c, ca_file, error_r) < 0)
        return -1;
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return imapc_fail(error_r, "cannot create TLS session: %s", err_text());
    if (is_ip_literal(c->host)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1)
            return imapc_fail(error_r, "cannot set TLS peer address %s", c->host);
    } else {
        if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1 || SSL_set1_host(c->ssl, c->host) != 1)
            return imapc_fail(error_r, "cannot set TLS host name %s", c->host);
    }
    SSL_set_connect_state(c->ssl);
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            struct pollfd pfd = {.fd = c->fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
            int pr;
            do {
                pr = poll(&pfd, 1, (int)c->timeout_ms);
            } while (pr < 0 && errno == EINTR);
            if (pr == 0)
                return imapc_fail(error_r, "timed out after %u ms waiting for the TLS handshake with %s",
                                  c->timeout_ms, c->host);
            if (pr < 0)
                return imapc_fail(error_r, "poll failed during TLS handshake: %s", strerror(errno));
            continue;
        }
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK)
            return imapc_fail(error_r, "TLS certificate verification failed for %s: %s", c->host,
                              X509_verify_cert_error_string(vr));
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
            return imapc_fail(error_r, "TLS handshake with %s failed: %s", c->host,
                              errno != 0 ? strerror(errno) : "connection closed");
        return imapc_fail(error_r, "TLS handshake with %s failed: %s", c->host, err_text());
    }
}

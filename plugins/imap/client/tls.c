/* TLS client side: verification of chain and host name is always on;
 * there is no switch to turn it off, only an extra CA file to trust. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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

static SSL_CTX *new_ctx(const char *ca_file, char **error_r)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        imapc_fail(error_r, "cannot create TLS context: %s", err_text());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* The system store may be missing in containers; an explicit ca_file
     * still works then, and without either verification fails. */
    (void)SSL_CTX_set_default_verify_paths(ctx);
    if (ca_file[0] != '\0' && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        imapc_fail(error_r, "cannot load CA file %s: %s", ca_file, err_text());
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* RELEASE_BUFFERS: an idle connection gives back its record buffers
     * (about 34 KiB); a push connection is idle nearly all the time. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* IMAP frames its own data, so a missing close_notify is harmless. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

/*
 * Contexts are shared. Building one loads the system CA store, which parses
 * every certificate in it (about 45 ms here), and an account opens a
 * connection per IDLE folder and another after every drop. A context is
 * reused per CA file until that file changes (its mtime, size or inode)
 * or for a day at most, so a renewed system store is picked up without a
 * restart, as curl's CA cache does. Connections hold their own reference,
 * so replacing a cached context never pulls it from under one.
 */
#define TLS_CTX_MAX_AGE_S 86400
#define TLS_CTX_SLOTS 8

typedef struct ctx_slot {
    char *ca_file; /* "" for the system store alone */
    struct stat st;
    time_t built;
    SSL_CTX *ctx;
} ctx_slot;

static ctx_slot ctx_cache[TLS_CTX_SLOTS];
static pthread_mutex_t ctx_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static time_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* A context for ca_file with a reference for the caller, or NULL. */
static SSL_CTX *shared_ctx(const char *ca_file, char **error_r)
{
    if (ca_file == NULL)
        ca_file = "";
    struct stat st;
    memset(&st, 0, sizeof st);
    if (ca_file[0] != '\0' && stat(ca_file, &st) < 0)
        memset(&st, 0, sizeof st); /* new_ctx says what is wrong */
    time_t now = now_s();
    pthread_mutex_lock(&ctx_cache_lock);
    ctx_slot *slot = NULL, *oldest = &ctx_cache[0];
    for (size_t i = 0; i < TLS_CTX_SLOTS; i++) {
        ctx_slot *c = &ctx_cache[i];
        if (c->ca_file != NULL && strcmp(c->ca_file, ca_file) == 0)
            slot = c;
        if (c->ctx == NULL || (oldest->ctx != NULL && c->built < oldest->built))
            oldest = c;
    }
    if (slot != NULL && same_file(&slot->st, &st) && now - slot->built < TLS_CTX_MAX_AGE_S) {
        SSL_CTX *ctx = slot->ctx;
        SSL_CTX_up_ref(ctx);
        pthread_mutex_unlock(&ctx_cache_lock);
        return ctx;
    }
    SSL_CTX *ctx = new_ctx(ca_file, error_r);
    if (ctx != NULL) {
        if (slot == NULL)
            slot = oldest;
        SSL_CTX_free(slot->ctx);
        free(slot->ca_file);
        slot->ca_file = imapc_strdup(ca_file);
        slot->st = st;
        slot->built = now;
        slot->ctx = ctx;
        SSL_CTX_up_ref(ctx);
    }
    pthread_mutex_unlock(&ctx_cache_lock);
    return ctx;
}

/* When imap.so is unloaded (or the process ends) the cached references
 * go; connections still open keep theirs. */
__attribute__((destructor)) static void drop_shared_ctxs(void)
{
    pthread_mutex_lock(&ctx_cache_lock);
    for (size_t i = 0; i < TLS_CTX_SLOTS; i++) {
        SSL_CTX_free(ctx_cache[i].ctx);
        free(ctx_cache[i].ca_file);
        memset(&ctx_cache[i], 0, sizeof ctx_cache[i]);
    }
    pthread_mutex_unlock(&ctx_cache_lock);
}

int imapc_tls_start(imap_conn *c, const char *ca_file, char **error_r)
{
    ERR_clear_error();
    c->ctx = shared_ctx(ca_file, error_r);
    if (c->ctx == NULL)
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
            char what[300];
            snprintf(what, sizeof what, "the TLS handshake with %s", c->host);
            if (imapc_wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, what, error_r) < 0)
                return -1;
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

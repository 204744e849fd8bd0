/*
 * The push listener's TLS server context (OpenSSL 3).
 *
 * The private key is read through mpu_read_file's secret mode: the same
 * owner-only rule as every other secret, and its bytes are wiped after
 * parsing. The chain is read by OpenSSL from the file (leaf first, then
 * intermediates), and the key must match the leaf. A reload builds a new
 * context and only swaps it in when all of that succeeded, so a broken
 * file never takes the listener down.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "http/http_private.h"
#include "util/util.h"

/* Keys are a few KiB at most; anything larger is not a key file. */
#define MAX_KEY_FILE (64u * 1024u)

/* The oldest queued OpenSSL error as text (the queue is cleared). */
static void ssl_error_text(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        mpu_strlcpy(buf, "unknown error", size);
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
}

static int use_key(SSL_CTX *ctx, const char *key_file, char **error_r)
{
    char *data = NULL, *error = NULL;
    size_t len = 0;
    char why[256];
    if (mpu_read_file(key_file, MAX_KEY_FILE, 1, &data, &len, &error) < 0) {
        *error_r = mpu_asprintf("push.tls_key_file: %s", error);
        free(error);
        return -1;
    }
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    mpu_secret_free(&data);
    if (key == NULL) {
        ssl_error_text(why, sizeof(why));
        *error_r =
            mpu_asprintf("push.tls_key_file %s: no PEM private key (%s)", key_file, why);
        return -1;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    if (!ok) {
        ssl_error_text(why, sizeof(why));
        *error_r = mpu_asprintf(
            "push.tls_key_file %s: does not match the certificate (%s)", key_file, why);
        return -1;
    }
    return 0;
}

SSL_CTX *mph_tls_load(const char *cert_file, const char *key_file, char **error_r)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        *error_r = mpu_strdup("push: cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No renegotiation (a client-driven CPU cost) and no session tickets
     * (their key would never rotate within a long-running daemon). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_error_text(why, sizeof(why));
        *error_r =
            mpu_asprintf("push.tls_cert_file %s: cannot load the certificate chain "
                         "(%s)",
                         cert_file, why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (use_key(ctx, key_file, error_r) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void mph_tls_free(SSL_CTX **ctx)
{
    if (ctx == NULL || *ctx == NULL)
        return;
    SSL_CTX_free(*ctx);
    *ctx = NULL;
}

void mph_push_set_tls(mph_server *server, SSL_CTX *ctx)
{
    if (server == NULL || server->push.http == NULL || server->push.tls == NULL ||
        ctx == NULL)
        return;
    /* Open connections hold their SSL, which holds the old context. */
    SSL_CTX_up_ref(ctx);
    SSL_CTX_free(server->push.tls);
    server->push.tls = ctx;
}

/*
 * JWT bearer assertion for Google service accounts (RFC 7523): the claims
 * are signed with the account's RSA key (RS256) through OpenSSL's
 * EVP_DigestSign, never with hand-written crypto. The private key text is
 * wiped from jansson's copy and the PEM BIO before they are freed.
 */
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "oauth/oauth.h"
#include "util/util.h"

char *mpo_base64url(const void *data, size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *out = mpu_malloc(cap);
    int n = EVP_EncodeBlock(out, data, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (int i = 0; i < n; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return (char *)out;
}

static char *b64_json(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *b = mpo_base64url(text, strlen(text));
    free(text);
    return b;
}

/* RS256 signature of `input`; NULL with *error_r on failure. */
static char *rs256(const char *pem, const char *input, char **error_r)
{
    char *sig_b64 = NULL;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!pkey || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        *error_r = mpu_strdup("service-account key: private_key is not an RSA PEM key");
        EVP_PKEY_free(pkey);
        return NULL;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t sig_len = 0;
    unsigned char *sig = NULL;
    if (ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
        EVP_DigestSign(ctx, NULL, &sig_len, (const unsigned char *)input,
                       strlen(input)) == 1) {
        sig = mpu_malloc(sig_len);
        if (EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)input,
                           strlen(input)) == 1)
            sig_b64 = mpo_base64url(sig, sig_len);
    }
    free(sig);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    if (!sig_b64)
        *error_r = mpu_strdup("service-account key: RS256 signing failed");
    return sig_b64;
}

static const char *str_field(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s && *s ? s : NULL;
}

int mpo_jwt_assertion(const char *key_json, const char *scope, const char *sub,
                      const char *audience, int64_t now_s, char **assertion_r,
                      char **token_uri_r, char **error_r)
{
    *assertion_r = NULL;
    if (token_uri_r)
        *token_uri_r = NULL;
    json_error_t jerr;
    json_t *key = json_loads(key_json, 0, &jerr);
    if (!json_is_object(key)) {
        /* jerr.text may quote the key; say only where it broke. */
        *error_r =
            mpu_asprintf("service-account key: not a JSON object (line %d)", jerr.line);
        json_decref(key);
        return -1;
    }
    const char *email = str_field(key, "client_email");
    const char *pem = str_field(key, "private_key");
    const char *token_uri = str_field(key, "token_uri");
    const char *aud = audience ? audience : token_uri;
    int rc = -1;
    if (!email || !pem || !aud) {
        *error_r =
            mpu_strdup("service-account key: client_email, private_key or token_uri "
                       "missing");
        goto out;
    }
    json_t *header = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    json_t *claims = json_pack("{s:s, s:s, s:I, s:I}", "iss", email, "aud", aud, "iat",
                               (json_int_t)now_s, "exp", (json_int_t)(now_s + 3600));
    if (scope)
        json_object_set_new(claims, "scope", json_string(scope));
    if (sub)
        json_object_set_new(claims, "sub", json_string(sub));
    char *h = b64_json(header), *c = b64_json(claims);
    json_decref(header);
    json_decref(claims);
    char *input = mpu_asprintf("%s.%s", h, c);
    free(h);
    free(c);
    char *sig = rs256(pem, input, error_r);
    if (sig) {
        *assertion_r = mpu_asprintf("%s.%s", input, sig);
        if (token_uri_r)
            *token_uri_r = mpu_strdup(token_uri);
        rc = 0;
    }
    free(sig);
    free(input);
out:
    if (pem)
        OPENSSL_cleanse((char *)pem, strlen(pem));
    json_decref(key);
    return rc;
}

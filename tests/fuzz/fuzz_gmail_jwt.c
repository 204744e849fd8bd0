/* libFuzzer target: Gmail push-token verification (gmail_oidc_verify and
 * the JWKS cache). The first byte picks what the rest is:
 *   0: a whole token, checked against a cache holding one key: whatever
 *      the bytes, it must never verify (forging needs the private key);
 *   1: the claims JSON, which this target signs with the cached key, so the
 *      claim checks behind the signature are explored: a token accepted
 *      must carry exactly the expected issuer, audience and email;
 *   2: the header JSON, signed with good claims: accepted only if alg is
 *      RS256 and kid is the cached one;
 *   3: a JWKS document fed to gmail_jwks_update (with a Cache-Control
 *      value from its first line), then looked up. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "fuzz_target.h"
#include "gmail_jwks.h"
#include "gmail_oidc.h"
#include "oauth/oauth.h"

#define NOW INT64_C(1700000000)
#define AUD "https://push.example.org/push/gmail"
#define SA "push-sa@proj.iam.gserviceaccount.com"
#define KID "fuzz-kid-1"

static EVP_PKEY *key;
static gmail_jwks *cache;

static char *bn_b64(const char *param)
{
    BIGNUM *bn = NULL;
    FUZZ_ASSERT(EVP_PKEY_get_bn_param(key, param, &bn) == 1);
    unsigned char buf[512];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    return mpo_base64url(buf, (size_t)n);
}

static void setup(void)
{
    if (cache)
        return;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    FUZZ_ASSERT(key != NULL);
    cache = gmail_jwks_new();
    char *n = bn_b64(OSSL_PKEY_PARAM_RSA_N), *e = bn_b64(OSSL_PKEY_PARAM_RSA_E);
    char doc[2048];
    snprintf(
        doc, sizeof(doc),
        "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS256\",\"use\":\"sig\",\"kid\":\"" KID
        "\",\"n\":\"%s\",\"e\":\"%s\"}]}",
        n, e);
    free(n);
    free(e);
    FUZZ_ASSERT(
        gmail_jwks_update(cache, doc, strlen(doc), "max-age=86400", NOW, NULL, 0) == 0);
}

/* b64url(header) "." b64url(claims) "." RS256 signature. */
static char *sign(const char *header, size_t header_len, const char *claims,
                  size_t claims_len)
{
    char *h = mpo_base64url(header, header_len), *c = mpo_base64url(claims, claims_len);
    size_t in_len = strlen(h) + 1 + strlen(c);
    char *input = malloc(in_len + 1);
    snprintf(input, in_len + 1, "%s.%s", h, c);
    unsigned char sig[512];
    size_t sig_len = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    FUZZ_ASSERT(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
                EVP_DigestSign(md, sig, &sig_len, (unsigned char *)input, in_len) == 1);
    EVP_MD_CTX_free(md);
    char *s = mpo_base64url(sig, sig_len);
    size_t tok_len = in_len + 1 + strlen(s);
    char *tok = malloc(tok_len + 1);
    snprintf(tok, tok_len + 1, "%s.%s", input, s);
    free(h);
    free(c);
    free(input);
    free(s);
    return tok;
}

static gmail_oidc_status verify(const char *tok, gmail_oidc_claims *cl)
{
    char err[256];
    bool refetch = false;
    gmail_oidc_status st =
        gmail_oidc_verify(cache, tok, AUD, SA, NOW, 60, cl, &refetch, err, sizeof(err));
    FUZZ_ASSERT(!refetch || st == GMAIL_OIDC_UNKNOWN_KID);
    FUZZ_ASSERT(st == GMAIL_OIDC_OK || err[0] != '\0');
    int http = gmail_oidc_http_status(st);
    FUZZ_ASSERT(http == 200 || http == 401 || http == 403 || http == 503);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size == 0 || size > 16384)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    gmail_oidc_claims cl;
    switch (data[0] % 4) {
    case 0: {
        char *tok = malloc(len + 1);
        memcpy(tok, text, len);
        tok[len] = '\0';
        FUZZ_ASSERT(verify(tok, &cl) != GMAIL_OIDC_OK);
        free(tok);
        break;
    }
    case 1: {
        static const char header[] =
            "{\"alg\":\"RS256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}";
        char *tok = sign(header, strlen(header), text, len);
        if (verify(tok, &cl) == GMAIL_OIDC_OK) {
            FUZZ_ASSERT(strcasecmp(cl.email, SA) == 0);
            FUZZ_ASSERT(strcmp(cl.iss, "accounts.google.com") == 0 ||
                        strcmp(cl.iss, "https://accounts.google.com") == 0);
            FUZZ_ASSERT(cl.exp > NOW - 60 && cl.iat <= NOW + 60);
            FUZZ_ASSERT(strcmp(cl.kid, KID) == 0);
        }
        free(tok);
        break;
    }
    case 2: {
        static const char claims[] =
            "{\"aud\":\"" AUD "\",\"email\":\"" SA "\",\"email_verified\":true,"
            "\"iss\":\"https://"
            "accounts.google.com\",\"iat\":1700000000,\"exp\":1700003600}";
        char *tok = sign(text, len, claims, strlen(claims));
        if (verify(tok, &cl) == GMAIL_OIDC_OK) {
            json_error_t jerr;
            json_t *h = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
            FUZZ_ASSERT(h != NULL);
            FUZZ_ASSERT(strcmp(json_string_value(json_object_get(h, "alg")), "RS256") ==
                        0);
            FUZZ_ASSERT(strcmp(json_string_value(json_object_get(h, "kid")), KID) == 0);
            json_decref(h);
        }
        free(tok);
        break;
    }
    default: {
        const char *nl = memchr(text, '\n', len);
        char cc[128] = "";
        if (nl && (size_t)(nl - text) < sizeof(cc)) {
            memcpy(cc, text, (size_t)(nl - text));
            cc[nl - text] = '\0';
            len -= (size_t)(nl + 1 - text);
            text = nl + 1;
        }
        (void)gmail_jwks_max_age(cc);
        gmail_jwks *j = gmail_jwks_new();
        char err[256];
        if (gmail_jwks_update(j, text, len, cc[0] ? cc : NULL, NOW, err, sizeof(err)) ==
            0) {
            FUZZ_ASSERT(gmail_jwks_count(j) > 0 &&
                        gmail_jwks_count(j) <= GMAIL_JWKS_KEYS_MAX);
            int64_t exp = gmail_jwks_expires_at(j);
            FUZZ_ASSERT(exp >= NOW + GMAIL_JWKS_MIN_TTL &&
                        exp <= NOW + GMAIL_JWKS_MAX_TTL);
            EVP_PKEY *k = NULL;
            gmail_jwks_loan *loan = NULL;
            gmail_jwks_lookup_result r = gmail_jwks_lookup(j, KID, NOW, &k, &loan);
            FUZZ_ASSERT((r == GMAIL_JWKS_FOUND) == (k != NULL && loan != NULL));
            gmail_jwks_release(j, &loan);
        } else {
            FUZZ_ASSERT(err[0] != '\0' && gmail_jwks_count(j) == 0);
        }
        gmail_jwks_free(&j);
        break;
    }
    }
    return 0;
}

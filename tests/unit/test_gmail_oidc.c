/* Unit tests of the Gmail push-token verification (plugins/gmail
 * gmail_oidc + gmail_jwks): RSA keys generated here with OpenSSL, a JWKS
 * built from them, tokens signed here. A valid token is accepted; every
 * forgery of issue 10 is refused with its own status; the JWKS follows
 * max-age, asks for a refetch on an unknown kid at most once a minute, and
 * picks up a rotated key after a refresh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "gmail_jwks.h"
#include "gmail_oidc.h"
#include "oauth/oauth.h"

#define NOW INT64_C(1700000000)
#define SKEW 60
#define AUD "https://push.example.org/push/gmail"
#define SA "push-sa@proj.iam.gserviceaccount.com"
#define KID1 "k1-0123456789abcdef"
#define KID2 "k2-fedcba9876543210"

static EVP_PKEY *key1, *key2, *key_small;

static int group_setup(void **state)
{
    (void)state;
    key1 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    key2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    key_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    return key1 && key2 && key_small ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(key1);
    EVP_PKEY_free(key2);
    EVP_PKEY_free(key_small);
    return 0;
}

static char *bn_b64(EVP_PKEY *k, const char *param)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    unsigned char buf[1024];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    return mpo_base64url(buf, (size_t)n);
}

/* {"kty":"RSA","alg":..,"use":"sig","kid":..,"n":..,"e":..} */
static json_t *jwk(EVP_PKEY *k, const char *kid, const char *alg, const char *use)
{
    char *n = bn_b64(k, OSSL_PKEY_PARAM_RSA_N), *e = bn_b64(k, OSSL_PKEY_PARAM_RSA_E);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "n", n, "e", e);
    if (alg)
        json_object_set_new(o, "alg", json_string(alg));
    if (use)
        json_object_set_new(o, "use", json_string(use));
    free(n);
    free(e);
    return o;
}

/* Load a JWKS made of the given keys into cache at `at`. */
static int load(gmail_jwks *cache, int64_t at, const char *cc, int nkeys, ...)
{
    json_t *keys = json_array();
    va_list ap;
    va_start(ap, nkeys);
    for (int i = 0; i < nkeys; i++) {
        EVP_PKEY *k = va_arg(ap, EVP_PKEY *);
        const char *kid = va_arg(ap, const char *);
        json_array_append_new(keys, jwk(k, kid, "RS256", "sig"));
    }
    va_end(ap);
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    char err[200] = "";
    int rc = gmail_jwks_update(cache, text, strlen(text), cc, at, err, sizeof(err));
    if (rc != 0)
        print_message("update refused: %s\n", err);
    free(text);
    json_decref(doc);
    return rc;
}

static gmail_jwks *cache_with_key1(void)
{
    gmail_jwks *c = gmail_jwks_new();
    assert_non_null(c);
    assert_int_equal(load(c, NOW, "public, max-age=21600", 1, key1, KID1), 0);
    return c;
}

typedef enum { SIGN_RS256, SIGN_HS256_PUBKEY, SIGN_NONE } sign_mode;

static char *b64_json(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    char *b = mpo_base64url(text, strlen(text));
    free(text);
    return b;
}

/* header.claims.signature, signed as `mode` says with `k`. */
static char *make_token(json_t *header, json_t *claims, sign_mode mode, EVP_PKEY *k)
{
    char *h = b64_json(header), *c = b64_json(claims);
    size_t in_len = strlen(h) + 1 + strlen(c);
    char *input = malloc(in_len + 1);
    snprintf(input, in_len + 1, "%s.%s", h, c);
    unsigned char sig[1024];
    size_t sig_len = 0;
    if (mode == SIGN_RS256) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        sig_len = sizeof(sig);
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
        assert_int_equal(
            EVP_DigestSign(md, sig, &sig_len, (unsigned char *)input, in_len), 1);
        EVP_MD_CTX_free(md);
    } else if (mode == SIGN_HS256_PUBKEY) {
        /* The classic confusion: the verifier's public key as HMAC secret. */
        BIO *bio = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PUBKEY(bio, k), 1);
        char *pem = NULL;
        long pem_len = BIO_get_mem_data(bio, &pem);
        assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem,
                                  (size_t)pem_len, (unsigned char *)input, in_len, sig,
                                  sizeof(sig), &sig_len));
        BIO_free(bio);
    }
    char *s = sig_len ? mpo_base64url(sig, sig_len) : strdup("");
    size_t tok_len = in_len + 1 + strlen(s);
    char *tok = malloc(tok_len + 1);
    snprintf(tok, tok_len + 1, "%s.%s", input, s);
    free(h);
    free(c);
    free(input);
    free(s);
    return tok;
}

static json_t *good_header(const char *kid)
{
    return json_pack("{s:s, s:s, s:s}", "alg", "RS256", "kid", kid, "typ", "JWT");
}

static json_t *good_claims(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:s, s:I, s:I}", "aud", AUD, "azp",
                     "1234567890", "email", SA, "sub", "1234567890", "email_verified", 1,
                     "iss", "https://accounts.google.com", "iat", (json_int_t)NOW, "exp",
                     (json_int_t)(NOW + 3600));
}

static gmail_oidc_status verify_at(gmail_jwks *c, const char *tok, int64_t now,
                                   gmail_oidc_claims *cl, bool *refetch)
{
    char err[200] = "";
    gmail_oidc_status st =
        gmail_oidc_verify(c, tok, AUD, SA, now, SKEW, cl, refetch, err, sizeof(err));
    /* An error text says why, never echoes the token. */
    if (st != GMAIL_OIDC_OK) {
        assert_true(err[0] != '\0');
        assert_null(strstr(err, SA));
    }
    return st;
}

static void test_valid_token(void **state)
{
    (void)state;
    gmail_jwks *c = cache_with_key1();
    json_t *h = good_header(KID1), *cl = good_claims();
    char *tok = make_token(h, cl, SIGN_RS256, key1);
    gmail_oidc_claims out;
    bool refetch = true;
    assert_int_equal(verify_at(c, tok, NOW, &out, &refetch), GMAIL_OIDC_OK);
    assert_false(refetch);
    assert_string_equal(out.email, SA);
    assert_string_equal(out.kid, KID1);
    assert_string_equal(out.iss, "https://accounts.google.com");
    assert_string_equal(out.sub, "1234567890");
    assert_int_equal(out.exp, NOW + 3600);
    assert_int_equal(out.iat, NOW);
    assert_int_equal(gmail_oidc_http_status(GMAIL_OIDC_OK), 200);
    free(tok);
    json_decref(h);
    json_decref(cl);
    gmail_jwks_free(&c);
    assert_null(c);
}

/* One forgery or variant: a header (NULL: RS256 with KID1), claims patched
 * with `patch` (merged over the good claims) minus `drop`, signed `mode`
 * with `key` (NULL: key1). */
typedef struct {
    const char *name;
    const char *header;
    const char *patch;
    const char *drop;
    sign_mode mode;
    int use_key2;
    gmail_oidc_status want;
    int http;
} token_case;

static const token_case token_cases[] = {
    {"alg none", "{\"alg\":\"none\",\"kid\":\"" KID1 "\",\"typ\":\"JWT\"}", NULL, NULL,
     SIGN_NONE, 0, GMAIL_OIDC_BAD_ALG, 401},
    {"alg None (case)", "{\"alg\":\"None\",\"kid\":\"" KID1 "\"}", NULL, NULL, SIGN_NONE,
     0, GMAIL_OIDC_BAD_ALG, 401},
    {"HS256 keyed with the public key", "{\"alg\":\"HS256\",\"kid\":\"" KID1 "\"}", NULL,
     NULL, SIGN_HS256_PUBKEY, 0, GMAIL_OIDC_BAD_ALG, 401},
    {"RS512", "{\"alg\":\"RS512\",\"kid\":\"" KID1 "\"}", NULL, NULL, SIGN_RS256, 0,
     GMAIL_OIDC_BAD_ALG, 401},
    {"no alg", "{\"kid\":\"" KID1 "\"}", NULL, NULL, SIGN_RS256, 0, GMAIL_OIDC_BAD_ALG,
     401},
    {"crit header", "{\"alg\":\"RS256\",\"kid\":\"" KID1 "\",\"crit\":[\"b64\"]}", NULL,
     NULL, SIGN_RS256, 0, GMAIL_OIDC_BAD_ALG, 401},
    {"duplicate alg", "{\"alg\":\"none\",\"alg\":\"RS256\",\"kid\":\"" KID1 "\"}", NULL,
     NULL, SIGN_RS256, 0, GMAIL_OIDC_MALFORMED, 401},
    {"missing kid", "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", NULL, NULL, SIGN_RS256, 0,
     GMAIL_OIDC_NO_KID, 401},
    {"kid not a string", "{\"alg\":\"RS256\",\"kid\":7}", NULL, NULL, SIGN_RS256, 0,
     GMAIL_OIDC_MALFORMED, 401},
    {"header not an object", "[1]", NULL, NULL, SIGN_RS256, 0, GMAIL_OIDC_MALFORMED, 401},
    {"unknown kid", "{\"alg\":\"RS256\",\"kid\":\"" KID2 "\"}", NULL, NULL, SIGN_RS256, 1,
     GMAIL_OIDC_UNKNOWN_KID, 401},
    {"signed by another key", NULL, NULL, NULL, SIGN_RS256, 1, GMAIL_OIDC_BAD_SIGNATURE,
     401},
    {"no signature", NULL, NULL, NULL, SIGN_NONE, 0, GMAIL_OIDC_BAD_SIGNATURE, 401},
    {"wrong aud", NULL, "{\"aud\":\"https://evil.example.com/push\"}", NULL, SIGN_RS256,
     0, GMAIL_OIDC_WRONG_AUDIENCE, 403},
    {"no aud", NULL, NULL, "aud", SIGN_RS256, 0, GMAIL_OIDC_WRONG_AUDIENCE, 403},
    {"aud array with ours", NULL, "{\"aud\":[\"x\",\"" AUD "\"]}", NULL, SIGN_RS256, 0,
     GMAIL_OIDC_OK, 200},
    {"wrong iss", NULL, "{\"iss\":\"https://evil.example.com\"}", NULL, SIGN_RS256, 0,
     GMAIL_OIDC_BAD_ISSUER, 401},
    {"no iss", NULL, NULL, "iss", SIGN_RS256, 0, GMAIL_OIDC_BAD_ISSUER, 401},
    {"bare issuer", NULL, "{\"iss\":\"accounts.google.com\"}", NULL, SIGN_RS256, 0,
     GMAIL_OIDC_OK, 200},
    {"wrong email", NULL, "{\"email\":\"other@proj.iam.gserviceaccount.com\"}", NULL,
     SIGN_RS256, 0, GMAIL_OIDC_WRONG_EMAIL, 403},
    {"no email", NULL, NULL, "email", SIGN_RS256, 0, GMAIL_OIDC_WRONG_EMAIL, 403},
    {"email in other case", NULL, "{\"email\":\"Push-SA@proj.iam.gserviceaccount.com\"}",
     NULL, SIGN_RS256, 0, GMAIL_OIDC_OK, 200},
    {"email_verified false", NULL, "{\"email_verified\":false}", NULL, SIGN_RS256, 0,
     GMAIL_OIDC_WRONG_EMAIL, 403},
    {"email_verified as string", NULL, "{\"email_verified\":\"true\"}", NULL, SIGN_RS256,
     0, GMAIL_OIDC_WRONG_EMAIL, 403},
    {"no email_verified", NULL, NULL, "email_verified", SIGN_RS256, 0,
     GMAIL_OIDC_WRONG_EMAIL, 403},
    {"expired (exp = now - skew)", NULL, "{\"exp\":1699999940}", NULL, SIGN_RS256, 0,
     GMAIL_OIDC_EXPIRED, 401},
    {"exp within skew", NULL, "{\"exp\":1699999941}", NULL, SIGN_RS256, 0, GMAIL_OIDC_OK,
     200},
    {"iat in the future", NULL, "{\"iat\":1700000061}", NULL, SIGN_RS256, 0,
     GMAIL_OIDC_NOT_YET_VALID, 401},
    {"iat within skew", NULL, "{\"iat\":1700000060}", NULL, SIGN_RS256, 0, GMAIL_OIDC_OK,
     200},
    {"no exp", NULL, NULL, "exp", SIGN_RS256, 0, GMAIL_OIDC_MALFORMED, 401},
    {"exp as string", NULL, "{\"exp\":\"1700003600\"}", NULL, SIGN_RS256, 0,
     GMAIL_OIDC_MALFORMED, 401},
};

static void test_token_cases(void **state)
{
    (void)state;
    gmail_jwks *c = cache_with_key1();
    for (size_t i = 0; i < sizeof(token_cases) / sizeof(token_cases[0]); i++) {
        const token_case *tc = &token_cases[i];
        json_error_t jerr;
        /* Headers are written raw so duplicates and odd shapes survive. */
        json_t *h = tc->header ? json_loads(tc->header, JSON_DECODE_ANY, &jerr)
                               : good_header(KID1);
        json_t *cl = good_claims();
        if (tc->patch) {
            json_t *p = json_loads(tc->patch, 0, &jerr);
            json_object_update(cl, p);
            json_decref(p);
        }
        if (tc->drop)
            json_object_del(cl, tc->drop);
        char *tok;
        if (tc->header && strstr(tc->header, "\"alg\":\"none\",\"alg\"")) {
            /* jansson keeps one of duplicate members: encode the raw text. */
            char *hb = mpo_base64url(tc->header, strlen(tc->header));
            char *good = make_token(h, cl, SIGN_RS256, key1);
            size_t n = strlen(hb) + strlen(strchr(good, '.')) + 1;
            tok = malloc(n);
            snprintf(tok, n, "%s%s", hb, strchr(good, '.'));
            free(hb);
            free(good);
        } else {
            tok = make_token(h, cl, tc->mode, tc->use_key2 ? key2 : key1);
        }
        bool refetch = false;
        gmail_oidc_status st = verify_at(c, tok, NOW, NULL, &refetch);
        if (st != tc->want)
            fail_msg("case \"%s\": got %s, want %s", tc->name, gmail_oidc_status_name(st),
                     gmail_oidc_status_name(tc->want));
        assert_int_equal(gmail_oidc_http_status(st), tc->http);
        free(tok);
        json_decref(h);
        json_decref(cl);
    }
    gmail_jwks_free(&c);
}

/* Flipping one byte anywhere the signature covers, or in the signature
 * itself, breaks verification. */
static void test_flipped_bytes(void **state)
{
    (void)state;
    gmail_jwks *c = cache_with_key1();
    json_t *h = good_header(KID1), *cl = good_claims();
    char *tok = make_token(h, cl, SIGN_RS256, key1);
    char *dot2 = strrchr(tok, '.');
    /* In the signature: decode, flip, re-encode, so the base64 stays valid. */
    unsigned char sig[512];
    size_t slen = strlen(dot2 + 1);
    char std[1024];
    assert_true(slen + 4 < sizeof(std));
    for (size_t i = 0; i < slen; i++)
        std[i] = dot2[1 + i] == '-' ? '+' : dot2[1 + i] == '_' ? '/' : dot2[1 + i];
    size_t pad = (4 - slen % 4) % 4;
    memset(std + slen, '=', pad);
    int n = EVP_DecodeBlock(sig, (unsigned char *)std, (int)(slen + pad));
    assert_int_equal(n - (int)pad, 256);
    sig[100] ^= 0x01;
    char *bad_sig = mpo_base64url(sig, 256);
    size_t prefix = (size_t)(dot2 - tok) + 1;
    char *forged = malloc(prefix + strlen(bad_sig) + 1);
    memcpy(forged, tok, prefix);
    memcpy(forged + prefix, bad_sig, strlen(bad_sig) + 1);
    assert_int_equal(verify_at(c, forged, NOW, NULL, NULL), GMAIL_OIDC_BAD_SIGNATURE);

    /* In the payload: a different character keeps the base64 valid. */
    char *dot1 = strchr(tok, '.');
    char *forged2 = strdup(tok);
    forged2[dot1 - tok + 5] = forged2[dot1 - tok + 5] == 'A' ? 'B' : 'A';
    gmail_oidc_status st = verify_at(c, forged2, NOW, NULL, NULL);
    assert_true(st == GMAIL_OIDC_BAD_SIGNATURE);

    /* A truncated signature (one byte short) is refused too. */
    char *short_sig = mpo_base64url(sig, 255);
    memcpy(forged + prefix, short_sig, strlen(short_sig) + 1);
    assert_int_equal(verify_at(c, forged, NOW, NULL, NULL), GMAIL_OIDC_BAD_SIGNATURE);

    free(short_sig);
    free(forged2);
    free(forged);
    free(bad_sig);
    free(tok);
    json_decref(h);
    json_decref(cl);
    gmail_jwks_free(&c);
}

static void test_shape(void **state)
{
    (void)state;
    gmail_jwks *c = cache_with_key1();
    json_t *h = good_header(KID1), *cl = good_claims();
    char *tok = make_token(h, cl, SIGN_RS256, key1);

    assert_int_equal(verify_at(c, NULL, NOW, NULL, NULL), GMAIL_OIDC_MISSING);
    assert_int_equal(verify_at(c, "", NOW, NULL, NULL), GMAIL_OIDC_MISSING);

    /* Two parts: the signature dropped. */
    char *two = strdup(tok);
    *strrchr(two, '.') = '\0';
    assert_int_equal(verify_at(c, two, NOW, NULL, NULL), GMAIL_OIDC_MALFORMED);

    /* Four parts: a valid token with one more. */
    size_t n = strlen(tok) + 8;
    char *four = malloc(n);
    snprintf(four, n, "%s.AAAA", tok);
    assert_int_equal(verify_at(c, four, NOW, NULL, NULL), GMAIL_OIDC_MALFORMED);

    /* Oversized: a valid token padded inside the payload is refused on size
     * alone, before any decoding. */
    char *big = malloc(GMAIL_OIDC_TOKEN_MAX + 2);
    memset(big, 'A', GMAIL_OIDC_TOKEN_MAX + 1);
    big[GMAIL_OIDC_TOKEN_MAX + 1] = '\0';
    big[10] = '.';
    big[20] = '.';
    assert_int_equal(verify_at(c, big, NOW, NULL, NULL), GMAIL_OIDC_MALFORMED);

    /* Not base64url: padding and the standard alphabet are not JWS. */
    char *pad = strdup(tok);
    pad[0] = '+';
    assert_int_equal(verify_at(c, pad, NOW, NULL, NULL), GMAIL_OIDC_MALFORMED);

    /* Leading whitespace is not part of a token. */
    n = strlen(tok) + 2;
    char *sp = malloc(n);
    snprintf(sp, n, " %s", tok);
    assert_int_equal(verify_at(c, sp, NOW, NULL, NULL), GMAIL_OIDC_MALFORMED);

    assert_int_equal(verify_at(c, tok, NOW, NULL, NULL), GMAIL_OIDC_OK);
    free(sp);
    free(pad);
    free(big);
    free(four);
    free(two);
    free(tok);
    json_decref(h);
    json_decref(cl);
    gmail_jwks_free(&c);
}

/* An unknown kid asks for a refetch once, then not again within a minute
 * (counted from the request or from the last load). */
static void test_unknown_kid_refetch_rate_limited(void **state)
{
    (void)state;
    gmail_jwks *c = cache_with_key1();
    json_t *h = good_header(KID2), *cl = good_claims();
    char *tok = make_token(h, cl, SIGN_RS256, key2);
    bool refetch = false;

    /* Loaded at NOW: a refetch right away would be the second in a minute. */
    assert_false(gmail_jwks_refresh_due(c, NOW));
    assert_int_equal(verify_at(c, tok, NOW + 10, NULL, &refetch), GMAIL_OIDC_UNKNOWN_KID);
    assert_false(refetch);
    assert_false(gmail_jwks_refresh_due(c, NOW + 10));

    assert_int_equal(verify_at(c, tok, NOW + 60, NULL, &refetch), GMAIL_OIDC_UNKNOWN_KID);
    assert_true(refetch);
    assert_true(gmail_jwks_refresh_due(c, NOW + 60));
    /* Pending: more unknown kids do not raise it again. */
    assert_int_equal(verify_at(c, tok, NOW + 61, NULL, &refetch), GMAIL_OIDC_UNKNOWN_KID);
    assert_false(refetch);
    /* Still pending a minute later (the fetch has not happened). */
    assert_int_equal(verify_at(c, tok, NOW + 200, NULL, &refetch),
                     GMAIL_OIDC_UNKNOWN_KID);
    assert_false(refetch);
    assert_true(gmail_jwks_refresh_due(c, NOW + 200));

    /* A refresh that still lacks the kid clears the request... */
    assert_int_equal(load(c, NOW + 201, "max-age=21600", 1, key1, KID1), 0);
    assert_false(gmail_jwks_refresh_due(c, NOW + 201));
    /* ...and the next request waits a minute from that load. */
    assert_int_equal(verify_at(c, tok, NOW + 230, NULL, &refetch),
                     GMAIL_OIDC_UNKNOWN_KID);
    assert_false(refetch);
    assert_int_equal(verify_at(c, tok, NOW + 261, NULL, &refetch),
                     GMAIL_OIDC_UNKNOWN_KID);
    assert_true(refetch);
    assert_int_equal(gmail_oidc_http_status(GMAIL_OIDC_UNKNOWN_KID), 401);

    free(tok);
    json_decref(h);
    json_decref(cl);
    gmail_jwks_free(&c);
}

/* Google rotates: the new kid appears in a refresh and verifies; once the
 * old key is dropped from the set, its tokens stop verifying. */
static void test_key_rotation(void **state)
{
    (void)state;
    gmail_jwks *c = cache_with_key1();
    json_t *h1 = good_header(KID1), *h2 = good_header(KID2), *cl = good_claims();
    char *tok1 = make_token(h1, cl, SIGN_RS256, key1);
    char *tok2 = make_token(h2, cl, SIGN_RS256, key2);
    bool refetch = false;

    assert_int_equal(verify_at(c, tok2, NOW + 100, NULL, &refetch),
                     GMAIL_OIDC_UNKNOWN_KID);
    assert_true(refetch);
    assert_int_equal(load(c, NOW + 101, "max-age=21600", 2, key1, KID1, key2, KID2), 0);
    assert_int_equal(gmail_jwks_count(c), 2);
    assert_int_equal(verify_at(c, tok2, NOW + 102, NULL, NULL), GMAIL_OIDC_OK);
    assert_int_equal(verify_at(c, tok1, NOW + 102, NULL, NULL), GMAIL_OIDC_OK);

    assert_int_equal(load(c, NOW + 200, "max-age=21600", 1, key2, KID2), 0);
    assert_int_equal(verify_at(c, tok1, NOW + 201, NULL, NULL), GMAIL_OIDC_UNKNOWN_KID);
    assert_int_equal(verify_at(c, tok2, NOW + 201, NULL, NULL), GMAIL_OIDC_OK);

    /* A kid that moves to another key: the old signature no longer verifies. */
    assert_int_equal(load(c, NOW + 300, "max-age=21600", 1, key2, KID1), 0);
    assert_int_equal(verify_at(c, tok1, NOW + 301, NULL, NULL), GMAIL_OIDC_BAD_SIGNATURE);

    free(tok1);
    free(tok2);
    json_decref(h1);
    json_decref(h2);
    json_decref(cl);
    gmail_jwks_free(&c);
}

static void test_max_age_parse(void **state)
{
    (void)state;
    static const struct {
        const char *cc;
        int64_t want;
    } cases[] = {
        {"public, max-age=19204, must-revalidate, no-transform", 19204},
        {"max-age=0", 0},
        {"MAX-AGE=\"300\"", 300},
        {"private,max-age=60", 60},
        {"max-age = 42", 42},
        {"max-age=10, max-age=20", 10},
        {"s-maxage=50", -1},
        {"max-age=", -1},
        {"max-age=12a", -1},
        {"max-age=-5", -1},
        {"max-age=99999999999", INT64_C(2147483648)},
        {"max-age=2147483647", INT64_C(2147483647)},
        {"no-store", 0},
        {"public, no-cache, max-age=600", 0},
        {"public", -1},
        {"", -1},
        {NULL, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = gmail_jwks_max_age(cases[i].cc);
        if (got != cases[i].want)
            fail_msg("Cache-Control \"%s\": got %lld, want %lld",
                     cases[i].cc ? cases[i].cc : "(null)", (long long)got,
                     (long long)cases[i].want);
    }
}

/* The set lives max-age seconds (clamped), is due for refresh a little
 * before, and is not used once expired. */
static void test_jwks_expiry(void **state)
{
    (void)state;
    gmail_jwks *c = gmail_jwks_new();
    assert_true(gmail_jwks_refresh_due(c, NOW));
    assert_int_equal(gmail_jwks_expires_at(c), 0);
    json_t *h = good_header(KID1), *cl = good_claims();
    json_object_set_new(cl, "exp", json_integer(NOW + 100000));
    char *tok = make_token(h, cl, SIGN_RS256, key1);
    /* Nothing loaded: the driver cannot judge yet (503, Pub/Sub retries). */
    assert_int_equal(verify_at(c, tok, NOW, NULL, NULL), GMAIL_OIDC_NO_KEYS);
    assert_int_equal(gmail_oidc_http_status(GMAIL_OIDC_NO_KEYS), 503);

    assert_int_equal(load(c, NOW, "public, max-age=300", 1, key1, KID1), 0);
    assert_int_equal(gmail_jwks_expires_at(c), NOW + 300);
    assert_false(gmail_jwks_refresh_due(c, NOW + 300 - GMAIL_JWKS_REFRESH_AHEAD - 1));
    assert_true(gmail_jwks_refresh_due(c, NOW + 300 - GMAIL_JWKS_REFRESH_AHEAD));
    assert_int_equal(verify_at(c, tok, NOW + 299, NULL, NULL), GMAIL_OIDC_OK);
    assert_int_equal(verify_at(c, tok, NOW + 300, NULL, NULL), GMAIL_OIDC_NO_KEYS);

    static const struct {
        const char *cc;
        int64_t ttl;
    } clamps[] = {
        {"max-age=5", GMAIL_JWKS_MIN_TTL}, {"no-store", GMAIL_JWKS_MIN_TTL},
        {NULL, GMAIL_JWKS_DEFAULT_TTL},    {"max-age=999999999", GMAIL_JWKS_MAX_TTL},
        {"max-age=21600", 21600},
    };
    for (size_t i = 0; i < sizeof(clamps) / sizeof(clamps[0]); i++) {
        assert_int_equal(load(c, NOW + 1000, clamps[i].cc, 1, key1, KID1), 0);
        assert_int_equal(gmail_jwks_expires_at(c), NOW + 1000 + clamps[i].ttl);
    }
    free(tok);
    json_decref(h);
    json_decref(cl);
    gmail_jwks_free(&c);
}

/* Bad documents are refused whole and leave the previous set in place;
 * unusable entries are skipped. */
static void test_jwks_documents(void **state)
{
    (void)state;
    gmail_jwks *c = cache_with_key1();
    char err[200];
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{\"keys\":{}}",
        "{\"keys\":[]}",
        "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":"
        "\"AA\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"!!!!\",\"e\":\"AQAB\"}]}",
        "{\"keys\":[],\"keys\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (gmail_jwks_update(c, bad[i], strlen(bad[i]), "max-age=10", NOW + 5, err,
                              sizeof(err)) != -1)
            fail_msg("document %zu accepted", i);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(gmail_jwks_count(c), 1);
    assert_int_equal(gmail_jwks_expires_at(c), NOW + 21600);

    /* Entries skipped: HS256 alg, enc use, no kid, too small, duplicate kid. */
    json_t *keys = json_array();
    json_array_append_new(keys, jwk(key2, "hs", "HS256", "sig"));
    json_array_append_new(keys, jwk(key2, "enc", "RS256", "enc"));
    json_t *nokid = jwk(key2, "tmp", NULL, NULL);
    json_object_del(nokid, "kid");
    json_array_append_new(keys, nokid);
    json_array_append_new(keys, jwk(key_small, "small", "RS256", "sig"));
    json_array_append_new(keys, jwk(key1, KID1, NULL, NULL)); /* alg/use optional */
    json_array_append_new(keys, jwk(key2, KID1, "RS256", "sig"));
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_int_equal(
        gmail_jwks_update(c, text, strlen(text), NULL, NOW, err, sizeof(err)), 0);
    assert_int_equal(gmail_jwks_count(c), 1);
    EVP_PKEY *k = NULL;
    gmail_jwks_loan *loan = NULL;
    assert_int_equal(gmail_jwks_lookup(c, KID1, NOW, &k, &loan), GMAIL_JWKS_FOUND);
    assert_int_equal(EVP_PKEY_eq(k, key1), 1); /* the first entry for a kid wins */
    assert_non_null(loan);
    /* A key on loan survives its set being replaced (ASan checks the use). */
    assert_int_equal(load(c, NOW + 1, NULL, 1, key2, KID2), 0);
    assert_int_equal(EVP_PKEY_get_bits(k), 2048);
    assert_int_equal(EVP_PKEY_eq(k, key1), 1);
    gmail_jwks_release(c, &loan);
    assert_null(loan);
    gmail_jwks_release(c, &loan); /* NULL-safe */
    /* Just loaded, so no refetch request for an unknown kid. */
    assert_int_equal(gmail_jwks_lookup(c, "small", NOW + 1, &k, &loan),
                     GMAIL_JWKS_UNKNOWN);
    assert_null(k);
    assert_null(loan);
    free(text);
    json_decref(doc);
    gmail_jwks_free(&c);
    gmail_jwks_free(&c); /* NULL-safe */
    gmail_jwks_free(NULL);
}

static void test_bearer(void **state)
{
    (void)state;
    assert_string_equal(gmail_oidc_bearer("Bearer abc.def.ghi"), "abc.def.ghi");
    assert_string_equal(gmail_oidc_bearer("bearer  abc"), "abc");
    assert_null(gmail_oidc_bearer("Basic dXNlcg=="));
    assert_null(gmail_oidc_bearer("Bearer"));
    assert_null(gmail_oidc_bearer("Bearer   "));
    assert_null(gmail_oidc_bearer("Bearerabc"));
    assert_null(gmail_oidc_bearer(NULL));
}

/* Verifications on this thread while another replaces the set over and
 * over (the driver's loop thread and JWKS worker); run under TSan in
 * tests/run-all.sh pass 3. */
static void *refresher(void *arg)
{
    gmail_jwks *c = arg;
    for (int i = 0; i < 50; i++)
        if (load(c, NOW, "max-age=21600", 2, key1, KID1, key2, KID2) != 0)
            return (void *)1;
    return NULL;
}

static void test_concurrent_refresh(void **state)
{
    (void)state;
    gmail_jwks *c = cache_with_key1();
    json_t *h = good_header(KID1), *cl = good_claims();
    char *tok = make_token(h, cl, SIGN_RS256, key1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, refresher, c), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(verify_at(c, tok, NOW + 1, NULL, NULL), GMAIL_OIDC_OK);
    void *res = NULL;
    assert_int_equal(pthread_join(t, &res), 0);
    assert_null(res);
    assert_int_equal(gmail_jwks_count(c), 2);
    free(tok);
    json_decref(h);
    json_decref(cl);
    gmail_jwks_free(&c);
}

static void test_status_names(void **state)
{
    (void)state;
    for (int s = GMAIL_OIDC_OK; s <= GMAIL_OIDC_WRONG_EMAIL; s++) {
        const char *name = gmail_oidc_status_name((gmail_oidc_status)s);
        assert_string_not_equal(name, "unknown");
        for (int t = GMAIL_OIDC_OK; t < s; t++)
            assert_string_not_equal(name, gmail_oidc_status_name((gmail_oidc_status)t));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_token),
        cmocka_unit_test(test_token_cases),
        cmocka_unit_test(test_flipped_bytes),
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_unknown_kid_refetch_rate_limited),
        cmocka_unit_test(test_key_rotation),
        cmocka_unit_test(test_max_age_parse),
        cmocka_unit_test(test_jwks_expiry),
        cmocka_unit_test(test_jwks_documents),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_concurrent_refresh),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

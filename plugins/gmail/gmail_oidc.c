/*
 * OIDC push-token verification (../shared/reference/providers.md §2.2),
 * with OpenSSL for base64 and RSA and jansson for JSON; no JOSE library
 * (see gmail_jwks.c for why).
 *
 * The order is the defence: the algorithm is pinned to RS256 from our
 * side, never taken from the token (the classic "alg: none" and
 * "HS256 keyed with the public key" forgeries then have nothing to work
 * with), the key comes only from Google's JWKS by kid, and the payload is
 * parsed only after the signature over the exact received bytes verifies.
 * Claims are public data: plain comparisons are fine; the signature check
 * is OpenSSL's, which has no early exit an attacker can time.
 */
#include "gmail_oidc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "gmail_b64.h"

/* The two issuers Google ID tokens carry (P§2.2). */
static const char *const google_issuers[] = {"accounts.google.com",
                                             "https://accounts.google.com"};

/* A skew beyond a day would make exp meaningless. */
#define SKEW_MAX 86400

static gmail_oidc_status fail(gmail_oidc_status st, char *err, size_t err_len,
                              const char *msg)
{
    if (err && err_len > 0)
        snprintf(err, err_len, "push token refused: %s", msg);
    return st;
}

/* Decode one base64url part and parse it as a JSON object (duplicate
 * members refused, so two "alg" or two "aud" cannot mean two things). */
static json_t *part_json(const char *part, size_t len)
{
    unsigned char buf[GMAIL_B64_DECODED_MAX(GMAIL_OIDC_TOKEN_MAX)];
    size_t n = 0;
    if (!gmail_b64_decode(part, len, GMAIL_B64_URL, buf, sizeof(buf), &n))
        return NULL;
    json_error_t jerr;
    json_t *v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
    if (v && !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* A string member that fits `cap` (with its NUL) and has no NUL inside. */
static const char *bounded_string(json_t *obj, const char *name, size_t cap)
{
    json_t *v = json_object_get(obj, name);
    const char *s = json_string_value(v);
    if (!s || json_string_length(v) >= cap || strlen(s) != json_string_length(v))
        return NULL;
    return s;
}

static bool rs256_verify(EVP_PKEY *pkey, const char *input, size_t input_len,
                         const unsigned char *sig, size_t sig_len)
{
    /* RFC 7518 §3.3 / RFC 8017 §8.2.2: the signature is exactly k octets. */
    if (sig_len != (size_t)EVP_PKEY_get_size(pkey))
        return false;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok =
        md && EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pkey) == 1 &&
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 &&
        EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)input, input_len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static bool audience_matches(json_t *aud, const char *expected)
{
    if (!expected || !*expected)
        return false;
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), expected) == 0;
    /* RFC 7519 §4.1.3 allows an array; Google sends a string. */
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), expected) == 0)
            return true;
    }
    return false;
}

static gmail_oidc_status check_claims(json_t *c, const char *expected_audience,
                                      const char *expected_email, int64_t now,
                                      int64_t skew, gmail_oidc_claims *out, char *err,
                                      size_t err_len)
{
    const char *iss = json_string_value(json_object_get(c, "iss"));
    bool iss_ok = false;
    for (size_t i = 0; iss && i < sizeof(google_issuers) / sizeof(google_issuers[0]); i++)
        iss_ok = iss_ok || strcmp(iss, google_issuers[i]) == 0;
    if (!iss_ok)
        return fail(GMAIL_OIDC_BAD_ISSUER, err, err_len, "iss is not a Google issuer");

    json_t *exp = json_object_get(c, "exp"), *iat = json_object_get(c, "iat");
    if (!json_is_integer(exp) || !json_is_integer(iat))
        return fail(GMAIL_OIDC_MALFORMED, err, err_len,
                    "exp or iat missing or not an integer");
    if (json_integer_value(exp) <= now - skew)
        return fail(GMAIL_OIDC_EXPIRED, err, err_len, "token expired");
    if (json_integer_value(iat) > now + skew)
        return fail(GMAIL_OIDC_NOT_YET_VALID, err, err_len, "token issued in the future");

    if (!audience_matches(json_object_get(c, "aud"), expected_audience))
        return fail(GMAIL_OIDC_WRONG_AUDIENCE, err, err_len,
                    "aud is not the configured push_audience");

    json_t *emailv = json_object_get(c, "email");
    const char *email = bounded_string(c, "email", sizeof(out->email));
    if (emailv && !email)
        return fail(GMAIL_OIDC_MALFORMED, err, err_len,
                    "email is not a string or too long");
    /* Addresses compare case-insensitively in practice (Google lower-cases
     * service accounts; an admin may not). */
    if (!email || !expected_email || !*expected_email ||
        strcasecmp(email, expected_email) != 0)
        return fail(GMAIL_OIDC_WRONG_EMAIL, err, err_len,
                    "email is not the configured push_service_account");
    if (!json_is_true(json_object_get(c, "email_verified")))
        return fail(GMAIL_OIDC_WRONG_EMAIL, err, err_len, "email_verified is not true");

    json_t *subv = json_object_get(c, "sub");
    const char *sub = bounded_string(c, "sub", sizeof(out->sub));
    if (subv && !sub)
        return fail(GMAIL_OIDC_MALFORMED, err, err_len,
                    "sub is not a string or too long");

    snprintf(out->iss, sizeof(out->iss), "%s", iss);
    snprintf(out->email, sizeof(out->email), "%s", email);
    snprintf(out->sub, sizeof(out->sub), "%s", sub ? sub : "");
    out->exp = json_integer_value(exp);
    out->iat = json_integer_value(iat);
    return GMAIL_OIDC_OK;
}

gmail_oidc_status gmail_oidc_verify(gmail_jwks *cache, const char *token,
                                    const char *expected_audience,
                                    const char *expected_email, int64_t now, int64_t skew,
                                    gmail_oidc_claims *claims_r, bool *refetch_r,
                                    char *err, size_t err_len)
{
    gmail_oidc_claims claims;
    memset(&claims, 0, sizeof(claims));
    if (claims_r)
        memset(claims_r, 0, sizeof(*claims_r));
    if (refetch_r)
        *refetch_r = false;
    if (err && err_len > 0)
        err[0] = '\0';
    skew = skew < 0 ? 0 : skew > SKEW_MAX ? SKEW_MAX : skew;

    /* 1. Size and shape, before decoding anything. */
    if (!token || !*token)
        return fail(GMAIL_OIDC_MISSING, err, err_len, "no bearer token");
    size_t len = strnlen(token, GMAIL_OIDC_TOKEN_MAX + 1);
    if (len > GMAIL_OIDC_TOKEN_MAX)
        return fail(GMAIL_OIDC_MALFORMED, err, err_len, "token longer than 8192 bytes");
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return fail(GMAIL_OIDC_MALFORMED, err, err_len,
                    "token is not three dot-separated parts");
    const char *payload = d1 + 1, *sigpart = d2 + 1;
    size_t header_len = (size_t)(d1 - token), payload_len = (size_t)(d2 - payload);
    size_t sig_len_b64 = len - (size_t)(sigpart - token);

    /* 2. Header: our algorithm, not the token's choice. */
    json_t *header = part_json(token, header_len);
    if (!header)
        return fail(GMAIL_OIDC_MALFORMED, err, err_len, "header is not base64url JSON");
    const char *alg = json_string_value(json_object_get(header, "alg"));
    if (!alg || strcmp(alg, "RS256") != 0) {
        json_decref(header);
        return fail(GMAIL_OIDC_BAD_ALG, err, err_len, "alg is not RS256");
    }
    if (json_object_get(header, "crit")) {
        json_decref(header);
        return fail(GMAIL_OIDC_BAD_ALG, err, err_len, "header has crit extensions");
    }
    json_t *kidv = json_object_get(header, "kid");
    if (!kidv) {
        json_decref(header);
        return fail(GMAIL_OIDC_NO_KID, err, err_len, "header has no kid");
    }
    const char *kid = bounded_string(header, "kid", sizeof(claims.kid));
    if (!kid || !*kid) {
        json_decref(header);
        return fail(GMAIL_OIDC_MALFORMED, err, err_len, "kid is not a short string");
    }
    snprintf(claims.kid, sizeof(claims.kid), "%s", kid);
    json_decref(header);

    /* 3. The key, only from Google's set. */
    EVP_PKEY *pkey = NULL;
    gmail_jwks_loan *loan = NULL;
    switch (gmail_jwks_lookup(cache, claims.kid, now, &pkey, &loan)) {
    case GMAIL_JWKS_FOUND:
        break;
    case GMAIL_JWKS_UNKNOWN_REFETCH:
        if (refetch_r)
            *refetch_r = true;
        return fail(GMAIL_OIDC_UNKNOWN_KID, err, err_len,
                    "kid not in the JWKS (refetch requested)");
    case GMAIL_JWKS_UNKNOWN:
        return fail(GMAIL_OIDC_UNKNOWN_KID, err, err_len, "kid not in the JWKS");
    case GMAIL_JWKS_STALE:
    default:
        return fail(GMAIL_OIDC_NO_KEYS, err, err_len, "no current JWKS to verify with");
    }

    /* 4. The signature over the bytes as received, before any claim. */
    unsigned char sig[GMAIL_JWKS_RSA_MAX_BITS / 8]; /* longer cannot verify */
    size_t sig_len = 0;
    bool sig_ok = gmail_b64_decode(sigpart, sig_len_b64, GMAIL_B64_URL, sig, sizeof(sig),
                                   &sig_len) &&
                  rs256_verify(pkey, token, (size_t)(d2 - token), sig, sig_len);
    gmail_jwks_release(cache, &loan);
    if (!sig_ok)
        return fail(GMAIL_OIDC_BAD_SIGNATURE, err, err_len,
                    "RS256 signature does not verify");

    /* 5. Claims, now that Google vouches for them. */
    json_t *c = part_json(payload, payload_len);
    if (!c)
        return fail(GMAIL_OIDC_MALFORMED, err, err_len, "payload is not base64url JSON");
    gmail_oidc_status st = check_claims(c, expected_audience, expected_email, now, skew,
                                        &claims, err, err_len);
    json_decref(c);
    if (st == GMAIL_OIDC_OK && claims_r)
        *claims_r = claims;
    return st;
}

int gmail_oidc_http_status(gmail_oidc_status status)
{
    switch (status) {
    case GMAIL_OIDC_OK:
        return 200;
    case GMAIL_OIDC_WRONG_AUDIENCE:
    case GMAIL_OIDC_WRONG_EMAIL:
        return 403;
    case GMAIL_OIDC_NO_KEYS:
        return 503;
    case GMAIL_OIDC_MISSING:
    case GMAIL_OIDC_MALFORMED:
    case GMAIL_OIDC_BAD_ALG:
    case GMAIL_OIDC_NO_KID:
    case GMAIL_OIDC_UNKNOWN_KID:
    case GMAIL_OIDC_BAD_SIGNATURE:
    case GMAIL_OIDC_BAD_ISSUER:
    case GMAIL_OIDC_EXPIRED:
    case GMAIL_OIDC_NOT_YET_VALID:
    default:
        return 401;
    }
}

const char *gmail_oidc_status_name(gmail_oidc_status status)
{
    switch (status) {
    case GMAIL_OIDC_OK:
        return "ok";
    case GMAIL_OIDC_MISSING:
        return "missing";
    case GMAIL_OIDC_MALFORMED:
        return "malformed";
    case GMAIL_OIDC_BAD_ALG:
        return "bad_alg";
    case GMAIL_OIDC_NO_KID:
        return "no_kid";
    case GMAIL_OIDC_UNKNOWN_KID:
        return "unknown_kid";
    case GMAIL_OIDC_NO_KEYS:
        return "no_keys";
    case GMAIL_OIDC_BAD_SIGNATURE:
        return "bad_signature";
    case GMAIL_OIDC_BAD_ISSUER:
        return "bad_issuer";
    case GMAIL_OIDC_EXPIRED:
        return "expired";
    case GMAIL_OIDC_NOT_YET_VALID:
        return "not_yet_valid";
    case GMAIL_OIDC_WRONG_AUDIENCE:
        return "wrong_audience";
    case GMAIL_OIDC_WRONG_EMAIL:
        return "wrong_email";
    }
    return "unknown";
}

const char *gmail_oidc_bearer(const char *header)
{
    if (!header)
        return NULL;
    while (*header == ' ' || *header == '\t')
        header++;
    if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return NULL;
    const char *t = header + 7;
    while (*t == ' ' || *t == '\t')
        t++;
    return *t ? t : NULL;
}

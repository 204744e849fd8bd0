/*
 * Verification of the OIDC token Pub/Sub puts in a push request's
 * `Authorization: Bearer` header (../shared/reference/providers.md §2.2).
 * The driver calls it from push_verify, BEFORE it looks at the body.
 *
 * What is checked, in this order (the first failure decides the result):
 *   1. size (at most GMAIL_OIDC_TOKEN_MAX bytes) and shape: exactly three
 *      dot-separated base64url parts (JWS compact form, RFC 7515 §7.1);
 *   2. the header: JSON object, "alg" exactly "RS256" (so "none", HS256 and
 *      every other algorithm are refused before any key is touched), no
 *      "crit" (RFC 7515 §4.1.11: we understand no extension), a "kid";
 *   3. the kid in the JWKS cache (unknown: refused, and the cache may ask
 *      the driver for a refetch, see gmail_jwks_lookup);
 *   4. the RS256 signature over "<header>.<payload>" with that key, by
 *      OpenSSL's EVP_DigestVerify. Nothing in the payload is read before
 *      this succeeds;
 *   5. the claims: iss is "accounts.google.com" or
 *      "https://accounts.google.com"; exp > now - skew; iat <= now + skew;
 *      aud equals expected_audience; email equals expected_email (ASCII
 *      case-insensitive) and email_verified is JSON true.
 *
 * Threads: reentrant; may run on the event loop (no I/O, no blocking
 * beyond the cache's short mutex; one RSA-2048 verification costs tens of
 * microseconds). Concurrent calls may share a cache: keys are only read.
 * Ownership: the caller keeps every argument; results are copied into
 * the caller's structures. Error texts never contain the token or claim
 * values (they come from the network).
 */
#ifndef GMAIL_OIDC_H
#define GMAIL_OIDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gmail_jwks.h"

/* Longest token accepted; Google's push tokens are about 1 KiB. */
#define GMAIL_OIDC_TOKEN_MAX 8192
/* Skew the driver should pass unless configured otherwise, in seconds. */
#define GMAIL_OIDC_DEFAULT_SKEW 60

/* Results, with the HTTP status gmail_oidc_http_status() maps them to. */
typedef enum {
    GMAIL_OIDC_OK = 0,
    /* 401: no token (NULL or empty). */
    GMAIL_OIDC_MISSING,
    /* 401: too long, not three parts, bad base64 or JSON, a claim of the
     * wrong type. */
    GMAIL_OIDC_MALFORMED,
    /* 401: alg is not RS256 (none, HS256, ...), or a crit header. */
    GMAIL_OIDC_BAD_ALG,
    /* 401: the header has no kid. */
    GMAIL_OIDC_NO_KID,
    /* 401: kid not in the cache; see refetch_r. */
    GMAIL_OIDC_UNKNOWN_KID,
    /* 503: the cache is empty or expired, the token cannot be judged. */
    GMAIL_OIDC_NO_KEYS,
    /* 401: the signature does not verify. */
    GMAIL_OIDC_BAD_SIGNATURE,
    /* 401: signed, but iss is not one of Google's. */
    GMAIL_OIDC_BAD_ISSUER,
    /* 401: exp <= now - skew. */
    GMAIL_OIDC_EXPIRED,
    /* 401: iat > now + skew. */
    GMAIL_OIDC_NOT_YET_VALID,
    /* 403: a valid Google token for another audience. */
    GMAIL_OIDC_WRONG_AUDIENCE,
    /* 403: a valid token from another account, or email_verified not true. */
    GMAIL_OIDC_WRONG_EMAIL
} gmail_oidc_status;

/* What a verified token says, copied out (NUL-terminated, truncated never:
 * longer values make the token MALFORMED). Zeroed unless the result is OK. */
typedef struct {
    char kid[GMAIL_JWKS_KID_MAX + 1];
    char iss[32];
    char email[321]; /* RFC 5321 §4.5.3.1: 64 + 1 + 255 */
    char sub[256];
    int64_t iat;
    int64_t exp;
} gmail_oidc_claims;

/*
 * Verify `token` (NUL-terminated, without the "Bearer " prefix) against
 * the keys in `cache` at Unix time `now` with `skew` seconds of tolerance
 * (negative is taken as 0). expected_audience and expected_email are the
 * instance's push_audience and push_service_account; both are required
 * (NULL or empty: every token gets WRONG_AUDIENCE / WRONG_EMAIL).
 *
 * claims_r may be NULL. refetch_r may be NULL; otherwise it is set true
 * only when the result is UNKNOWN_KID and the cache just raised its
 * refetch request (at most once a minute): the driver should then fetch
 * the JWKS on a worker (gmail_jwks_refresh_due() tells the same).
 * err (may be NULL) receives one line saying why a token was refused.
 */
gmail_oidc_status gmail_oidc_verify(gmail_jwks *cache, const char *token,
                                    const char *expected_audience,
                                    const char *expected_email, int64_t now, int64_t skew,
                                    gmail_oidc_claims *claims_r, bool *refetch_r,
                                    char *err, size_t err_len);

/* The HTTP status a push endpoint answers for a result: 200 for OK (the
 * caller goes on), 401, 403, or 503 for NO_KEYS (P§2.3: any non-2xx makes
 * Pub/Sub redeliver). */
int gmail_oidc_http_status(gmail_oidc_status status);

/* A short stable name ("ok", "bad_signature", ...) for logs and metrics. */
const char *gmail_oidc_status_name(gmail_oidc_status status);

/* The token in an Authorization header value ("Bearer <token>", scheme
 * case-insensitive, RFC 6750 §2.1), pointing into `header`; NULL if the
 * header is NULL, another scheme, or has no token. */
const char *gmail_oidc_bearer(const char *header);

#endif

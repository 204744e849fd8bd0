/*
 * Google's OIDC signing keys (JWKS, RFC 7517) for verifying Pub/Sub push
 * tokens (../shared/reference/providers.md §2.2).
 *
 * The cache never fetches: verifying runs on the host's event loop, which
 * must not block. The driver fetches `certs_url` on a worker whenever
 * gmail_jwks_refresh_due() says so and hands the body and its
 * Cache-Control header to gmail_jwks_update().
 *
 * Threads: every function may be called from any thread; one mutex guards
 * the key set, held only for pointer swaps and lookups (never while
 * parsing a document or checking a signature). Typical use: lookups on the
 * loop thread (through gmail_oidc_verify), updates on a worker.
 *
 * Ownership: the cache owns its keys. gmail_jwks_lookup() lends a key
 * together with a loan on the whole set it belongs to; the set is freed
 * when the cache has replaced it and the last loan is returned with
 * gmail_jwks_release(). So an update may replace the set while a
 * verification still uses a key from the previous one. (The loan count
 * lives under the cache's mutex rather than in EVP_PKEY_up_ref: the
 * hand-over of a key between threads is then visible to ThreadSanitizer,
 * which cannot see the atomics inside an uninstrumented libcrypto.)
 *
 * Time: every `now` is Unix seconds from the caller's clock, so tests (and
 * the daemon's debug clock) control expiry and rate limits.
 */
#ifndef GMAIL_JWKS_H
#define GMAIL_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

typedef struct gmail_jwks gmail_jwks;
/* A loan on one key set; see gmail_jwks_lookup. */
typedef struct gmail_jwks_loan gmail_jwks_loan;

/* Limits on what a document may hold; larger ones are refused whole. */
#define GMAIL_JWKS_DOC_MAX (64 * 1024)
#define GMAIL_JWKS_KEYS_MAX 32
#define GMAIL_JWKS_KID_MAX 128
/* RSA moduli accepted, in bits (Google publishes 2048-bit keys). */
#define GMAIL_JWKS_RSA_MIN_BITS 2048
#define GMAIL_JWKS_RSA_MAX_BITS 8192

/* An unknown kid asks for a refetch at most this often (issue 10 §3). */
#define GMAIL_JWKS_REFETCH_INTERVAL 60
/* The lifetime taken from Cache-Control is clamped to this range; a
 * document without max-age lives GMAIL_JWKS_DEFAULT_TTL. */
#define GMAIL_JWKS_MIN_TTL 60
#define GMAIL_JWKS_MAX_TTL 86400
#define GMAIL_JWKS_DEFAULT_TTL 3600
/* gmail_jwks_refresh_due() turns true this long before expiry, so a
 * working fetch replaces the set before lookups start failing. */
#define GMAIL_JWKS_REFRESH_AHEAD 60

typedef enum {
    /* *key_r is lent until gmail_jwks_release. */
    GMAIL_JWKS_FOUND = 0,
    /* No such kid; a refetch was asked (or a set loaded) under a minute ago. */
    GMAIL_JWKS_UNKNOWN,
    /* No such kid; a refetch is now wanted. */
    GMAIL_JWKS_UNKNOWN_REFETCH,
    /* No usable set: never loaded, or past its expiry. */
    GMAIL_JWKS_STALE
} gmail_jwks_lookup_result;

/* A new, empty cache (refresh due at once). NULL only on allocation failure. */
gmail_jwks *gmail_jwks_new(void);
/* Frees the cache and its keys; accepts NULL and *jwks_p == NULL; clears *jwks_p.
 * No other thread may use the cache any more, and no loan may be out. */
void gmail_jwks_free(gmail_jwks **jwks_p);

/*
 * Seconds of freshness from a Cache-Control header value (RFC 9111 §5.2.2.1
 * "max-age=N", quoted or not, case-insensitive, among other directives).
 * Returns -1 if the value is NULL or has no valid max-age; 0 for no-store
 * or no-cache (which the caller then clamps like any other value).
 */
int64_t gmail_jwks_max_age(const char *cache_control);

/*
 * Replace the key set with the RSA signing keys of `doc` (a JWKS JSON
 * object, `len` bytes, need not be NUL-terminated), fetched at `now` with
 * the given Cache-Control value (NULL if absent).
 *
 * Each entry of "keys" with kty "RSA" is imported from n and e (base64url,
 * RFC 7518 §6.3.1) and checked by OpenSSL (EVP_PKEY_public_check); entries
 * with another kty, an alg other than RS256, a use other than "sig", no
 * kid, a duplicate kid, or a key OpenSSL refuses are skipped. The document
 * is refused if it is over GMAIL_JWKS_DOC_MAX, not JSON, has no "keys"
 * array, more than GMAIL_JWKS_KEYS_MAX entries, or no usable key.
 *
 * On success returns 0: the new set is live, it expires at now + max-age
 * (clamped, see above), and a pending refetch request is cleared. On
 * failure returns -1 with a reason in err (may be NULL) and leaves the
 * previous set and the refetch request untouched.
 */
int gmail_jwks_update(gmail_jwks *jwks, const char *doc, size_t len,
                      const char *cache_control, int64_t now, char *err, size_t err_len);

/*
 * Look up the RS256 key for `kid`. On GMAIL_JWKS_FOUND *key_r is the key
 * and *loan_r a loan the caller must return with gmail_jwks_release() once
 * done with the key (the caller must not free the key or keep it beyond
 * the release); otherwise both are NULL.
 * An unknown kid raises the refetch request if none was raised (nor a set
 * loaded) in the last GMAIL_JWKS_REFETCH_INTERVAL seconds: Google rotates
 * keys and publishes the new one before using it, so a kid we lack usually
 * means our copy is old, but a forger can send any kid and must not make
 * us hammer the endpoint.
 */
gmail_jwks_lookup_result gmail_jwks_lookup(gmail_jwks *jwks, const char *kid, int64_t now,
                                           EVP_PKEY **key_r, gmail_jwks_loan **loan_r);

/* Return a loan from gmail_jwks_lookup (NULL and *loan_p == NULL are
 * fine); clears *loan_p. Frees the set if the cache no longer holds it and
 * this was its last loan. Any thread. */
void gmail_jwks_release(gmail_jwks *jwks, gmail_jwks_loan **loan_p);

/*
 * True when the driver should fetch the JWKS now: nothing loaded yet, the
 * set expires within GMAIL_JWKS_REFRESH_AHEAD seconds (or has), or an
 * unknown kid asked for a refetch. It stays true until an update succeeds,
 * so the driver paces its own retries after a failed fetch.
 */
bool gmail_jwks_refresh_due(gmail_jwks *jwks, int64_t now);

/* When the current set expires (Unix seconds); 0 if none was loaded. */
int64_t gmail_jwks_expires_at(gmail_jwks *jwks);

/* Number of keys in the current set. */
size_t gmail_jwks_count(gmail_jwks *jwks);

#endif

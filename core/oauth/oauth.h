/*
 * core/oauth: OAuth2 access tokens as a host service. Three grants against
 * a token URL: refresh_token, client_credentials, and Google's
 * service-account JWT bearer (RS256 assertion, optional `sub` for
 * domain-wide delegation).
 *
 * Behaviour per account (one mpo_service holds many accounts):
 *   - An access token is cached in memory and handed out until `margin_ms`
 *     (default 60 s) before it expires, or half its lifetime when that is
 *     shorter.
 *   - Single flight: one token request per account at a time; callers
 *     arriving meanwhile wait for it and share its result.
 *   - A refresh token the provider rotates (a new refresh_token in the
 *     answer) goes to the `persist` callback before it is used; `load`
 *     provides it again after a restart (mpo_store_persist/mpo_store_load
 *     keep it in the store's per-account state, key MPO_STATE_KEY). The
 *     record names the refresh token file content it descends from: a new
 *     file (a fresh authorization) outranks it, a reload keeps it.
 *   - invalid_grant, invalid_client, unauthorized_client: MPO_REAUTH after
 *     that one request, with the provider's error_description (sanitized)
 *     in the reason. Other 4xx answers (invalid_scope, invalid_request...)
 *     and unusable credential files: MPO_CONFIG. Either way no further
 *     request until the credentials change: a secret file's content
 *     differs (checked on each call), mpo_account_set is called again, or
 *     mpo_credentials_changed (SIGHUP).
 *   - 429 and 5xx: MPO_RETRY with the Retry-After delay (or the backoff
 *     when absent); timeouts, transport errors and unparsable answers:
 *     MPO_RETRY with exponential backoff. Until the delay has passed no
 *     request goes to the token URL; callers get the cached failure.
 *   - While a refresh runs or fails with MPO_RETRY, a cached token that has
 *     not expired yet is still handed out (up to min(5 s, margin/2) before
 *     its expiry), so a slow or failing token URL does not stop callers.
 *
 * Secrets (client secret, refresh and access tokens, private key) are read
 * from owner-only files (mpu_read_file with secret=1), wiped after use and
 * never put in an error text. Library code: nothing here logs.
 *
 * Ownership: strings passed in are copied; strings returned are the
 * caller's (tokens: mpu_secret_free, texts: free).
 * Threading: every function may be called from any thread; mpo_token
 * blocks for the duration of one token request (a worker thread's call).
 */
#ifndef MP_OAUTH_H
#define MP_OAUTH_H

#include <stddef.h>
#include <stdint.h>

struct mps_store;

#define MPO_DEFAULT_MARGIN_MS 60000u
#define MPO_DEFAULT_BACKOFF_MIN_MS 1000u
#define MPO_DEFAULT_BACKOFF_MAX_MS 300000u
#define MPO_STATE_KEY "oauth.refresh_token"
#define MPO_JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"

/* Never renumbered. */
typedef enum mpo_grant {
    MPO_GRANT_REFRESH_TOKEN = 1,      /* client_id, [client_secret], refresh token */
    MPO_GRANT_CLIENT_CREDENTIALS = 2, /* client_id, client_secret, [scope]        */
    MPO_GRANT_JWT_BEARER = 3,         /* service-account key JSON, scope, [sub]     */
} mpo_grant;

/* What the caller (scheduler, driver) should do. Never renumbered. */
typedef enum mpo_status {
    MPO_OK = 0,     /* *token_r holds a valid access token                */
    MPO_RETRY = 1,  /* try again after *retry_ms_r                        */
    MPO_REAUTH = 2, /* needs re-authorization: credentials were refused   */
    MPO_CONFIG = 3, /* credential description or files unusable           */
} mpo_status;

/* One account's credentials. Secrets are named by file, read at each token
 * request (so a replaced file takes effect). */
typedef struct mpo_credential {
    mpo_grant grant;
    const char *token_url;          /* jwt_bearer: NULL = the key's token_uri */
    const char *client_id;          /* refresh_token, client_credentials     */
    const char *client_secret_file; /* NULL: public client (refresh_token)   */
    const char *refresh_token_file; /* refresh_token                         */
    const char *key_file;           /* jwt_bearer: service-account JSON      */
    const char *scope;              /* NULL: not sent                        */
    const char *sub;                /* jwt_bearer: user to impersonate       */
    const char *audience;           /* jwt_bearer: NULL = the token URL      */
    const char *ca_file;            /* NULL: system CA store                 */
} mpo_credential;

/* Persist an account's refresh token record (an opaque secret string:
 * the rotated token and where it descends from). Returns 0, or -1 with
 * *error_r; the service then keeps it in memory and tries again with the
 * next token answer. Called without the service's lock held. */
typedef int (*mpo_persist_fn)(void *arg, const char *account_key, const char *record,
                              char **error_r);
/* The record last persisted into *record_r (mpu_secret_free): 0, 1 when
 * none, -1 with *error_r (the refresh token file is used then). */
typedef int (*mpo_load_fn)(void *arg, const char *account_key, char **record_r,
                           char **error_r);

typedef struct mpo_options {
    uint32_t margin_ms;      /* 0: MPO_DEFAULT_MARGIN_MS              */
    uint32_t timeout_ms;     /* per token request; 0: net's default   */
    uint32_t backoff_min_ms; /* 0: MPO_DEFAULT_BACKOFF_MIN_MS          */
    uint32_t backoff_max_ms; /* 0: MPO_DEFAULT_BACKOFF_MAX_MS          */
    mpo_persist_fn persist;  /* NULL: rotated tokens kept in memory   */
    mpo_load_fn load;        /* NULL: only the refresh token file     */
    void *arg;               /* for persist and load                  */
} mpo_options;

typedef struct mpo_service mpo_service;

/* `opt` may be NULL (defaults). */
mpo_service *mpo_service_new(const mpo_options *opt);
/* Accepts NULL, clears *svc. No mpo_token call may be running. */
void mpo_service_free(mpo_service **svc);

/* Add or replace account `key`'s credentials (copied). Replacing counts
 * as a credential change. Returns 0, or -1 with *error_r when the
 * description is incomplete for its grant. */
int mpo_account_set(mpo_service *svc, const char *key, const mpo_credential *cred,
                    char **error_r);
void mpo_account_remove(mpo_service *svc, const char *key);
/* Credentials changed outside (SIGHUP): drop the cached token and the
 * failure state of `key` (NULL: every account), so the next mpo_token
 * reads the files again and may make one request. A rotated refresh token
 * is kept unless the refresh token file now holds something else. */
void mpo_credentials_changed(mpo_service *svc, const char *key);

/* The provider refused `token` (HTTP 401): when it is the token cached
 * for `key` (compared in constant time), drop it, so the next mpo_token
 * makes a new request. A token that is not the cached one (already
 * replaced, or never handed out) changes nothing. The failure state
 * (a Retry-After window, a reauth block) is kept. */
void mpo_token_reject(mpo_service *svc, const char *key, const char *token);

/* An access token for account `key`: the cached one or a new one.
 * Returns 0 with *status_r MPO_OK, *token_r (mpu_secret_free) and
 * *expires_ms_r (ms since the epoch); otherwise -1 with *status_r,
 * *retry_ms_r (MPO_RETRY: delay before anything is tried again) and
 * *error_r (free; no secret in it). retry_ms_r may be NULL. */
int mpo_token(mpo_service *svc, const char *key, char **token_r, int64_t *expires_ms_r,
              mpo_status *status_r, uint32_t *retry_ms_r, char **error_r);

/* Persistence in the store (arg: the mps_store *), key MPO_STATE_KEY. */
int mpo_store_persist(void *store, const char *account_key, const char *record,
                      char **error_r);
int mpo_store_load(void *store, const char *account_key, char **record_r, char **error_r);

/* ---- pieces, exposed for tests ---- */

/* Signed JWT bearer assertion from a service-account key JSON
 * (client_email, private_key, token_uri): header {"alg":"RS256",
 * "typ":"JWT"}, claims iss, scope, aud (audience or token_uri), iat =
 * now_s, exp = now_s + 3600, sub when given. *assertion_r: free;
 * *token_uri_r (may be NULL): free. Returns 0, or -1 with *error_r. */
int mpo_jwt_assertion(const char *key_json, const char *scope, const char *sub,
                      const char *audience, int64_t now_s, char **assertion_r,
                      char **token_uri_r, char **error_r);
/* base64url without padding; free() it. */
char *mpo_base64url(const void *data, size_t len);

#endif

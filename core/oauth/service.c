/*
 * The token cache and its single flight. Why this shape: drivers call for
 * a token from worker threads, several at once for one account (sync,
 * fetches, warming), and providers punish bursts of refreshes (and a
 * rotating provider invalidates the refresh token two parallel refreshes
 * both used). So per account one thread does the request with the lock
 * released while the others wait on the account's condition variable and
 * then read the shared outcome: a cached token, a retry window, or a
 * blocked state (reauth/config) that lasts until the credentials change.
 * A generation number discards the outcome of a request whose account was
 * reset or replaced while it ran.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>

#include "oauth/oauth_private.h"
#include "util/fdlimit.h"
#include "util/util.h"

#define MPO_SECRET_MAX (64u * 1024u)

typedef struct account {
    struct account *next;
    char *key;
    mpo_credential cred; /* strings owned */
    pthread_cond_t cond;
    int in_flight;
    int removed;
    uint64_t gen;
    /* cache */
    char *token;
    int64_t valid_until_mono;  /* handed out before this */
    int64_t usable_until_mono; /* while a refresh fails or runs: before this */
    int64_t expires_wall;
    /* refresh token in use: from load, a rotation or the file */
    char *refresh_token;
    int loaded;          /* load callback consulted */
    int persist_pending; /* the last rotated token could not be persisted */
    char rt_source[65];  /* hash of the refresh token file it descends from */
    /* failure */
    mpo_status fail_status; /* MPO_OK: none */
    char *fail_error;
    int64_t not_before_mono; /* MPO_RETRY */
    unsigned failures;       /* consecutive, for the backoff */
    char fingerprint[65];    /* blocked: secret files' content then */
} account;

struct mpo_service {
    mpo_options opt;
    pthread_mutex_t lock;
    account *accounts;
};

static char *cred_dup(const char *s)
{
    return s ? mpu_strdup(s) : NULL;
}

static void cred_free(mpo_credential *c)
{
    free((char *)c->token_url);
    free((char *)c->client_id);
    free((char *)c->client_secret_file);
    free((char *)c->refresh_token_file);
    free((char *)c->key_file);
    free((char *)c->scope);
    free((char *)c->sub);
    free((char *)c->audience);
    free((char *)c->ca_file);
    memset(c, 0, sizeof *c);
}

static void cred_copy(mpo_credential *dst, const mpo_credential *src)
{
    dst->grant = src->grant;
    dst->token_url = cred_dup(src->token_url);
    dst->client_id = cred_dup(src->client_id);
    dst->client_secret_file = cred_dup(src->client_secret_file);
    dst->refresh_token_file = cred_dup(src->refresh_token_file);
    dst->key_file = cred_dup(src->key_file);
    dst->scope = cred_dup(src->scope);
    dst->sub = cred_dup(src->sub);
    dst->audience = cred_dup(src->audience);
    dst->ca_file = cred_dup(src->ca_file);
}

mpo_service *mpo_service_new(const mpo_options *opt)
{
    mpo_service *svc = mpu_calloc(1, sizeof *svc);
    if (opt)
        svc->opt = *opt;
    if (!svc->opt.margin_ms)
        svc->opt.margin_ms = MPO_DEFAULT_MARGIN_MS;
    if (!svc->opt.backoff_min_ms)
        svc->opt.backoff_min_ms = MPO_DEFAULT_BACKOFF_MIN_MS;
    if (!svc->opt.backoff_max_ms)
        svc->opt.backoff_max_ms = MPO_DEFAULT_BACKOFF_MAX_MS;
    pthread_mutex_init(&svc->lock, NULL);
    return svc;
}

/* Forget the cached token and the failure state (lock held). */
static void reset_state(account *a)
{
    mpu_secret_free(&a->token);
    a->valid_until_mono = 0;
    a->usable_until_mono = 0;
    a->fail_status = MPO_OK;
    mpu_freep(&a->fail_error);
    a->not_before_mono = 0;
    a->failures = 0;
    a->persist_pending = 0;
    a->gen++;
}

static void account_free(account *a)
{
    reset_state(a);
    mpu_secret_free(&a->refresh_token);
    cred_free(&a->cred);
    pthread_cond_destroy(&a->cond);
    free(a->key);
    free(a);
}

void mpo_service_free(mpo_service **svc)
{
    if (!svc || !*svc)
        return;
    for (account *a = (*svc)->accounts, *next; a; a = next) {
        next = a->next;
        account_free(a);
    }
    pthread_mutex_destroy(&(*svc)->lock);
    free(*svc);
    *svc = NULL;
}

static account *find(mpo_service *svc, const char *key)
{
    for (account *a = svc->accounts; a; a = a->next)
        if (strcmp(a->key, key) == 0)
            return a;
    return NULL;
}

static int check_cred(const mpo_credential *c, char **error_r)
{
    const char *missing = NULL;
    switch (c->grant) {
    case MPO_GRANT_REFRESH_TOKEN:
        missing = !c->token_url            ? "token_url"
                  : !c->client_id          ? "client_id"
                  : !c->refresh_token_file ? "refresh_token_file"
                                           : NULL;
        break;
    case MPO_GRANT_CLIENT_CREDENTIALS:
        missing = !c->token_url            ? "token_url"
                  : !c->client_id          ? "client_id"
                  : !c->client_secret_file ? "client_secret_file"
                                           : NULL;
        break;
    case MPO_GRANT_JWT_BEARER:
        missing = !c->key_file ? "key_file" : !c->scope ? "scope" : NULL;
        break;
    default:
        *error_r = mpu_asprintf("unknown OAuth2 grant %d", (int)c->grant);
        return -1;
    }
    if (missing) {
        *error_r = mpu_asprintf("OAuth2 credentials: %s missing", missing);
        return -1;
    }
    return 0;
}

int mpo_account_set(mpo_service *svc, const char *key, const mpo_credential *cred,
                    char **error_r)
{
    if (check_cred(cred, error_r) < 0)
        return -1;
    pthread_mutex_lock(&svc->lock);
    account *a = find(svc, key);
    if (!a) {
        a = mpu_calloc(1, sizeof *a);
        a->key = mpu_strdup(key);
        pthread_cond_init(&a->cond, NULL);
        a->next = svc->accounts;
        svc->accounts = a;
    } else {
        cred_free(&a->cred);
        reset_state(a);
    }
    cred_copy(&a->cred, cred);
    pthread_mutex_unlock(&svc->lock);
    return 0;
}

void mpo_account_remove(mpo_service *svc, const char *key)
{
    pthread_mutex_lock(&svc->lock);
    for (account **pp = &svc->accounts; *pp; pp = &(*pp)->next) {
        account *a = *pp;
        if (strcmp(a->key, key) != 0)
            continue;
        *pp = a->next; /* unlinked before it may be freed */
        if (a->in_flight) {
            /* The request's thread frees it when it comes back. */
            a->removed = 1;
            a->gen++;
        } else {
            account_free(a);
        }
        break;
    }
    pthread_mutex_unlock(&svc->lock);
}

void mpo_credentials_changed(mpo_service *svc, const char *key)
{
    pthread_mutex_lock(&svc->lock);
    for (account *a = svc->accounts; a; a = a->next)
        if (!key || strcmp(a->key, key) == 0)
            reset_state(a);
    pthread_mutex_unlock(&svc->lock);
}

void mpo_token_reject(mpo_service *svc, const char *key, const char *token)
{
    if (!token)
        return;
    size_t n = strlen(token);
    pthread_mutex_lock(&svc->lock);
    account *a = find(svc, key);
    /* The length is not secret (a token's is fixed by its provider); the
     * bytes are compared in constant time. Only the cache goes: a request
     * in flight will bring a new token anyway. */
    if (a && a->token && strlen(a->token) == n && CRYPTO_memcmp(a->token, token, n) == 0) {
        mpu_secret_free(&a->token);
        a->valid_until_mono = 0;
        a->usable_until_mono = 0;
    }
    pthread_mutex_unlock(&svc->lock);
}

/* The persisted record: "v1 <source> <refresh token>", the source being
 * the hash of the refresh token file the rotated token descends from. A
 * new file (a fresh authorization) thereby outranks a stored token without
 * any reset having to delete it, and a plain reload (SIGHUP) keeps it. */
static char *record_make(const char *source, const char *token)
{
    return mpu_asprintf("v1 %s %s", source, token);
}

/* The token of `record` (mpu_secret_free) when its source is `source`,
 * else NULL. */
static char *record_token(const char *record, const char *source)
{
    size_t n = strlen(source);
    if (strncmp(record, "v1 ", 3) != 0 || strncmp(record + 3, source, n) != 0 ||
        record[3 + n] != ' ' || !record[4 + n])
        return NULL;
    return mpu_strdup(record + 4 + n);
}

/* ---- one token request, lock released ---- */

typedef struct secrets {
    char *client_secret;
    char *refresh_file; /* content of refresh_token_file */
    char *key_json;
} secrets;

static void secrets_clear(secrets *s)
{
    mpu_secret_free(&s->client_secret);
    mpu_secret_free(&s->refresh_file);
    mpu_secret_free(&s->key_json);
}

/* -1: unusable (a configuration matter), -2: out of descriptors now. */
static int read_secret(const char *path, char **data_r, char **error_r)
{
    if (!path)
        return 0;
    size_t len;
    if (mpu_read_file(path, MPO_SECRET_MAX, 1, data_r, &len, error_r) < 0) {
        int e = errno;
        if (!mpu_fd_shortage(e))
            return -1;
        mpu_fd_shortage_note("credential file", e);
        return -2;
    }
    /* One value per file: a trailing newline is not part of it. */
    while (len && ((*data_r)[len - 1] == '\n' || (*data_r)[len - 1] == '\r'))
        (*data_r)[--len] = '\0';
    return 0;
}

static int read_secrets(const mpo_credential *c, secrets *s, char **error_r)
{
    memset(s, 0, sizeof *s);
    int rc = read_secret(c->client_secret_file, &s->client_secret, error_r);
    if (rc == 0)
        rc = read_secret(c->refresh_token_file, &s->refresh_file, error_r);
    if (rc == 0)
        rc = read_secret(c->key_file, &s->key_json, error_r);
    if (rc < 0)
        secrets_clear(s);
    return rc;
}

/* Hash over the secret files' contents: "did the credentials change". */
static void fingerprint(const secrets *s, char out[65])
{
    char *all = mpu_asprintf("%s\n%s\n%s", s->client_secret ? s->client_secret : "",
                             s->refresh_file ? s->refresh_file : "",
                             s->key_json ? s->key_json : "");
    mpu_sha256_hex(all, strlen(all), 32, out);
    mpu_secret_free(&all);
}

/* Files unreadable count as their own fingerprint, so fixing them counts
 * as a change. */
static void fingerprint_files(const mpo_credential *c, char out[65])
{
    secrets s;
    char *err = NULL;
    if (read_secrets(c, &s, &err) < 0) {
        mpu_sha256_hex(err, strlen(err), 32, out);
        free(err);
        return;
    }
    fingerprint(&s, out);
    secrets_clear(&s);
}

static void do_request(const mpo_options *opt, const mpo_credential *c, const secrets *s,
                       const char *refresh_token, mpo_answer *ans)
{
    const char *url = c->token_url;
    char *assertion = NULL, *token_uri = NULL, *form = NULL;
    const char *sec[4] = {s->client_secret, refresh_token, s->refresh_file, NULL};
    memset(ans, 0, sizeof *ans);
    switch (c->grant) {
    case MPO_GRANT_REFRESH_TOKEN: {
        const char *pairs[] = {"grant_type",
                               "refresh_token",
                               "client_id",
                               c->client_id,
                               "client_secret",
                               s->client_secret,
                               "refresh_token",
                               refresh_token,
                               "scope",
                               c->scope,
                               NULL};
        form = mpo_form(pairs);
        break;
    }
    case MPO_GRANT_CLIENT_CREDENTIALS: {
        const char *pairs[] = {"grant_type",
                               "client_credentials",
                               "client_id",
                               c->client_id,
                               "client_secret",
                               s->client_secret,
                               "scope",
                               c->scope,
                               NULL};
        form = mpo_form(pairs);
        break;
    }
    case MPO_GRANT_JWT_BEARER: {
        if (mpo_jwt_assertion(
                s->key_json, c->scope, c->sub, c->audience ? c->audience : c->token_url,
                mpu_now_ms() / 1000, &assertion, &token_uri, &ans->error) < 0) {
            ans->status = MPO_CONFIG;
            return;
        }
        if (!url)
            url = token_uri;
        const char *pairs[] = {"grant_type", MPO_JWT_BEARER, "assertion", assertion,
                               NULL};
        form = mpo_form(pairs);
        sec[3] = assertion;
        break;
    }
    }
    mpo_grant_post(url, c->ca_file, opt->timeout_ms, form, sec, 4, ans);
    mpu_secret_free(&form);
    free(assertion);
    free(token_uri);
}

static uint32_t backoff_ms(const mpo_options *opt, unsigned failures)
{
    uint64_t d = opt->backoff_min_ms;
    for (unsigned i = 1; i < failures && d < opt->backoff_max_ms; i++)
        d *= 2;
    return d > opt->backoff_max_ms ? opt->backoff_max_ms : (uint32_t)d;
}

/* Runs one request for `a` with the lock released; back under the lock,
 * records its outcome unless the account changed meanwhile. */
static void refresh(mpo_service *svc, account *a)
{
    a->in_flight = 1;
    uint64_t gen = a->gen;
    mpo_credential cred;
    cred_copy(&cred, &a->cred);
    char *rt = a->refresh_token ? mpu_strdup(a->refresh_token) : NULL;
    int need_load =
        !a->loaded && !rt && svc->opt.load && cred.grant == MPO_GRANT_REFRESH_TOKEN;
    int pending = a->persist_pending;
    char source[65];
    memcpy(source, a->rt_source, sizeof source);
    char *key = mpu_strdup(a->key);
    pthread_mutex_unlock(&svc->lock);

    mpo_answer ans;
    memset(&ans, 0, sizeof ans);
    secrets s;
    char fp[65] = "";
    int persist_failed = 0, did_load = 0;
    int read_rc = read_secrets(&cred, &s, &ans.error);
    if (read_rc == -2) {
        ans.status = MPO_RETRY; /* out of descriptors: backoff, not config */
    } else if (read_rc < 0) {
        ans.status = MPO_CONFIG;
        fingerprint_files(&cred, fp);
    } else {
        fingerprint(&s, fp);
        if (cred.grant == MPO_GRANT_REFRESH_TOKEN) {
            char file_fp[65];
            mpu_sha256_hex(s.refresh_file, strlen(s.refresh_file), 32, file_fp);
            if (rt && strcmp(source, file_fp) != 0)
                mpu_secret_free(&rt); /* a new file: a new authorization */
            if (need_load) {
                char *record = NULL, *err = NULL;
                if (svc->opt.load(svc->opt.arg, key, &record, &err) == 0 && record)
                    rt = record_token(record, file_fp);
                mpu_secret_free(&record);
                free(err); /* none or unreadable: the file's token */
                did_load = 1;
            }
            if (!rt)
                rt = mpu_strdup(s.refresh_file);
            memcpy(source, file_fp, sizeof source);
        }
        do_request(&svc->opt, &cred, &s, rt, &ans);
        /* A rotated token is persisted before it is used; one that could
         * not be persisted is tried again with the next answer. */
        const char *keep = ans.refresh_token ? ans.refresh_token : rt;
        if (ans.status == MPO_OK && svc->opt.persist && keep &&
            ((ans.refresh_token && rt && strcmp(ans.refresh_token, rt) != 0) ||
             pending)) {
            char *err = NULL, *record = record_make(source, keep);
            if (svc->opt.persist(svc->opt.arg, key, record, &err) < 0) {
                free(err);
                persist_failed = 1;
            }
            mpu_secret_free(&record);
        }
        secrets_clear(&s);
    }

    pthread_mutex_lock(&svc->lock);
    a->in_flight = 0;
    /* The refresh token in use is kept even when the outcome is discarded
     * below: a provider that rotated it has invalidated the old one. */
    if (ans.status == MPO_OK && rt && !a->removed) {
        mpu_secret_free(&a->refresh_token);
        a->refresh_token = ans.refresh_token ? ans.refresh_token : mpu_strdup(rt);
        ans.refresh_token = NULL;
        memcpy(a->rt_source, source, sizeof source);
    }
    if (a->gen == gen && !a->removed) {
        if (did_load)
            a->loaded = 1;
        int64_t now = mpu_mono_ms();
        if (ans.status == MPO_OK) {
            mpu_secret_free(&a->token);
            a->token = ans.access_token;
            ans.access_token = NULL;
            int64_t life = ans.lifetime_ms ? ans.lifetime_ms : 3600000;
            int64_t margin = svc->opt.margin_ms;
            if (margin > life / 2)
                margin = life / 2;
            a->valid_until_mono = now + life - margin;
            /* Still handed out, a little before it expires, while the
             * token URL fails or answers slowly. */
            a->usable_until_mono = now + life - (margin / 2 < 5000 ? margin / 2 : 5000);
            a->expires_wall = mpu_now_ms() + life;
            a->fail_status = MPO_OK;
            mpu_freep(&a->fail_error);
            a->failures = 0;
            a->persist_pending = persist_failed;
        } else {
            a->fail_status = ans.status;
            free(a->fail_error);
            a->fail_error = ans.error;
            ans.error = NULL;
            if (ans.status != MPO_RETRY)
                mpu_secret_free(&a->token);
            if (ans.status == MPO_RETRY) {
                a->failures++;
                uint32_t d =
                    ans.retry_ms ? ans.retry_ms : backoff_ms(&svc->opt, a->failures);
                a->not_before_mono = now + d;
            } else {
                memcpy(a->fingerprint, fp, sizeof fp);
            }
        }
    }
    pthread_cond_broadcast(&a->cond);
    if (a->removed) {
        /* mpo_account_remove left it to us; no waiter can be left. */
        pthread_mutex_unlock(&svc->lock);
        account_free(a);
        pthread_mutex_lock(&svc->lock);
    }
    mpu_secret_free(&rt);
    mpo_answer_clear(&ans);
    cred_free(&cred);
    free(key);
}

int mpo_token(mpo_service *svc, const char *key, char **token_r, int64_t *expires_ms_r,
              mpo_status *status_r, uint32_t *retry_ms_r, char **error_r)
{
    *token_r = NULL;
    *expires_ms_r = 0;
    *error_r = NULL;
    if (retry_ms_r)
        *retry_ms_r = 0;
    pthread_mutex_lock(&svc->lock);
    for (;;) {
        account *a = find(svc, key);
        if (!a) {
            pthread_mutex_unlock(&svc->lock);
            *status_r = MPO_CONFIG;
            *error_r = mpu_asprintf("no OAuth2 credentials for account \"%s\"", key);
            return -1;
        }
        int64_t now = mpu_mono_ms();
        if (a->token && (now < a->valid_until_mono ||
                         (now < a->usable_until_mono &&
                          (a->in_flight || a->fail_status == MPO_RETRY)))) {
            *token_r = mpu_strdup(a->token);
            *expires_ms_r = a->expires_wall;
            *status_r = MPO_OK;
            pthread_mutex_unlock(&svc->lock);
            return 0;
        }
        if (a->in_flight) {
            pthread_cond_wait(&a->cond, &svc->lock);
            continue;
        }
        if (a->fail_status == MPO_REAUTH || a->fail_status == MPO_CONFIG) {
            /* Blocked until the credentials change: look at the files. */
            mpo_credential cred;
            cred_copy(&cred, &a->cred);
            uint64_t gen = a->gen;
            pthread_mutex_unlock(&svc->lock);
            char fp[65];
            fingerprint_files(&cred, fp);
            cred_free(&cred);
            pthread_mutex_lock(&svc->lock);
            a = find(svc, key);
            if (!a || a->gen != gen || a->in_flight)
                continue;
            if (a->fail_status != MPO_OK && strcmp(fp, a->fingerprint) != 0) {
                reset_state(a);
                continue;
            }
            if (a->fail_status == MPO_OK)
                continue;
            *status_r = a->fail_status;
            *error_r = mpu_strdup(a->fail_error);
            pthread_mutex_unlock(&svc->lock);
            return -1;
        }
        if (a->fail_status == MPO_RETRY && now < a->not_before_mono) {
            *status_r = MPO_RETRY;
            if (retry_ms_r)
                *retry_ms_r = (uint32_t)(a->not_before_mono - now);
            *error_r = mpu_strdup(a->fail_error);
            pthread_mutex_unlock(&svc->lock);
            return -1;
        }
        refresh(svc, a);
        /* Loop: the outcome is now cached for us and every waiter. */
    }
}

/*
 * JWKS cache. Keys are imported with OpenSSL 3 (OSSL_PARAM_BLD +
 * EVP_PKEY_fromdata) rather than libcjose: OpenSSL is already a dependency
 * of the daemon and of core/oauth, it is the library whose RSA code the
 * verification uses anyway, and it avoids a new Debian package for three
 * calls (decode n/e, build a key, verify a signature).
 *
 * The set is immutable once built: an update builds a new one outside the
 * lock and swaps a pointer, so the loop thread never waits behind JSON
 * parsing or RSA key checks done on a worker.
 *
 * Expiry follows the document's Cache-Control max-age, as Google asks
 * for its certs (../shared/reference/providers.md §2.2: "cache per HTTP
 * cache headers"). An expired set is not used at all: a key Google has
 * withdrawn must stop verifying, and a push refused meanwhile is
 * redelivered by Pub/Sub (§2.3), so strictness costs a delay, not data.
 */
#include "gmail_jwks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "gmail_b64.h"

typedef struct {
    char kid[GMAIL_JWKS_KID_MAX + 1];
    EVP_PKEY *pkey;
} jwks_key;

/* The loan type is the set itself. */
typedef struct gmail_jwks_loan {
    size_t refs; /* the cache's own (while current) plus loans; under the lock */
    size_t count;
    int64_t expires_at;
    jwks_key keys[GMAIL_JWKS_KEYS_MAX];
} jwks_set;

struct gmail_jwks {
    pthread_mutex_t lock;
    jwks_set *set;        /* NULL until the first successful update */
    bool refetch_wanted;  /* an unknown kid asked for a fetch */
    bool paced;           /* last_refetch is meaningful */
    int64_t last_refetch; /* last request raised or set loaded */
};

static void set_free(jwks_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->count; i++)
        EVP_PKEY_free(s->keys[i].pkey);
    free(s);
}

gmail_jwks *gmail_jwks_new(void)
{
    gmail_jwks *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    if (pthread_mutex_init(&j->lock, NULL) != 0) {
        free(j);
        return NULL;
    }
    return j;
}

void gmail_jwks_free(gmail_jwks **jwks_p)
{
    if (!jwks_p || !*jwks_p)
        return;
    gmail_jwks *j = *jwks_p;
    *jwks_p = NULL;
    set_free(j->set);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static void errf(char *err, size_t err_len, const char *msg)
{
    if (err && err_len > 0)
        snprintf(err, err_len, "%s", msg);
}

int64_t gmail_jwks_max_age(const char *cc)
{
    if (!cc)
        return -1;
    int64_t result = -1;
    const char *p = cc;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t name_len = (size_t)(p - name);
        while (*p == ' ' || *p == '\t')
            p++;
        const char *val = NULL;
        size_t val_len = 0;
        if (*p == '=') {
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            bool quoted = *p == '"';
            if (quoted)
                p++;
            val = p;
            while (*p && (quoted ? *p != '"' : (*p != ',' && *p != ' ' && *p != '\t')))
                p++;
            val_len = (size_t)(p - val);
            if (quoted && *p == '"')
                p++;
        }
        /* Skip whatever else the directive carries up to the next comma. */
        while (*p && *p != ',')
            p++;
        if ((name_len == 8 && strncasecmp(name, "no-store", 8) == 0) ||
            (name_len == 8 && strncasecmp(name, "no-cache", 8) == 0))
            return 0; /* RFC 9111 §5.2.2.4/.5: may not be reused without revalidation */
        if (name_len == 7 && strncasecmp(name, "max-age", 7) == 0 && val && val_len > 0) {
            int64_t v = 0;
            bool ok = true;
            for (size_t i = 0; i < val_len && ok; i++) {
                ok = val[i] >= '0' && val[i] <= '9';
                /* RFC 9111 §1.2.2: a value too large to represent is 2^31. */
                if (ok && v < INT64_C(2147483648))
                    v = v * 10 + (val[i] - '0');
            }
            if (v > INT64_C(2147483648))
                v = INT64_C(2147483648);
            if (ok && result < 0)
                result = v; /* RFC 9111 §4.2.1: the first occurrence counts */
        }
    }
    return result;
}

/* RFC 7518 §6.3.1: n and e are unsigned big-endian integers in base64url. */
static BIGNUM *b64_bignum(json_t *v, size_t max_bytes)
{
    const char *s = json_string_value(v);
    if (!s)
        return NULL;
    size_t len = json_string_length(v);
    unsigned char buf[GMAIL_B64_DECODED_MAX(GMAIL_JWKS_RSA_MAX_BITS / 6 + 4)];
    size_t n = 0;
    if (len > GMAIL_JWKS_RSA_MAX_BITS / 6 + 4 ||
        !gmail_b64_decode(s, len, GMAIL_B64_URL, buf, sizeof(buf), &n) || n > max_bytes)
        return NULL;
    return BN_bin2bn(buf, (int)n, NULL);
}

static EVP_PKEY *import_rsa(json_t *jwk)
{
    BIGNUM *n = b64_bignum(json_object_get(jwk, "n"), GMAIL_JWKS_RSA_MAX_BITS / 8 + 1);
    BIGNUM *e = b64_bignum(json_object_get(jwk, "e"), 8);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    if (!n || !e || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto out;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    int bits = EVP_PKEY_get_bits(pkey);
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    /* public_check: n odd and not too small, 1 < e < n, e odd (SP 800-56B). */
    if (bits < GMAIL_JWKS_RSA_MIN_BITS || bits > GMAIL_JWKS_RSA_MAX_BITS || !check ||
        EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

/* Optional string member: absent is fine, present must equal `want`. */
static bool member_absent_or(json_t *obj, const char *name, const char *want)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return true;
    const char *s = json_string_value(v);
    return s && strcmp(s, want) == 0;
}

static jwks_set *parse_set(const char *doc, size_t len, char *err, size_t err_len)
{
    if (len > GMAIL_JWKS_DOC_MAX) {
        errf(err, err_len, "JWKS document too large");
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = json_object_get(root, "keys");
    if (!root || !json_is_object(root) || !json_is_array(keys)) {
        errf(err, err_len, "JWKS document is not a JSON object with a \"keys\" array");
        json_decref(root);
        return NULL;
    }
    if (json_array_size(keys) > GMAIL_JWKS_KEYS_MAX) {
        errf(err, err_len, "JWKS document has too many keys");
        json_decref(root);
        return NULL;
    }
    jwks_set *s = calloc(1, sizeof(*s));
    if (!s) {
        errf(err, err_len, "out of memory");
        json_decref(root);
        return NULL;
    }
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        const char *kty = json_string_value(json_object_get(jwk, "kty"));
        json_t *kidv = json_object_get(jwk, "kid");
        const char *kid = json_string_value(kidv);
        if (!json_is_object(jwk) || !kty || strcmp(kty, "RSA") != 0 || !kid || !*kid ||
            json_string_length(kidv) > GMAIL_JWKS_KID_MAX ||
            strlen(kid) != json_string_length(kidv) ||
            !member_absent_or(jwk, "alg", "RS256") ||
            !member_absent_or(jwk, "use", "sig"))
            continue;
        bool dup = false;
        for (size_t k = 0; k < s->count; k++)
            dup = dup || strcmp(s->keys[k].kid, kid) == 0;
        if (dup)
            continue; /* the first entry with a kid wins; a second is ambiguous */
        EVP_PKEY *pkey = import_rsa(jwk);
        if (!pkey)
            continue;
        snprintf(s->keys[s->count].kid, sizeof(s->keys[s->count].kid), "%s", kid);
        s->keys[s->count].pkey = pkey;
        s->count++;
    }
    json_decref(root);
    if (s->count == 0) {
        errf(err, err_len, "JWKS document has no usable RS256 signing key");
        set_free(s);
        return NULL;
    }
    return s;
}

static int64_t ttl_from(const char *cache_control)
{
    int64_t ttl = gmail_jwks_max_age(cache_control);
    if (ttl < 0)
        return GMAIL_JWKS_DEFAULT_TTL;
    if (ttl < GMAIL_JWKS_MIN_TTL)
        return GMAIL_JWKS_MIN_TTL; /* unknown kids refetch once a minute anyway */
    if (ttl > GMAIL_JWKS_MAX_TTL)
        return GMAIL_JWKS_MAX_TTL; /* bounds how long a withdrawn key lingers */
    return ttl;
}

int gmail_jwks_update(gmail_jwks *jwks, const char *doc, size_t len,
                      const char *cache_control, int64_t now, char *err, size_t err_len)
{
    if (!doc) {
        errf(err, err_len, "no JWKS document");
        return -1;
    }
    jwks_set *s = parse_set(doc, len, err, err_len);
    if (!s)
        return -1;
    s->expires_at = now + ttl_from(cache_control);
    s->refs = 1;
    pthread_mutex_lock(&jwks->lock);
    jwks_set *old = jwks->set;
    if (old && --old->refs > 0)
        old = NULL; /* still on loan: the last release frees it */
    jwks->set = s;
    jwks->refetch_wanted = false;
    jwks->paced = true;
    jwks->last_refetch = now;
    pthread_mutex_unlock(&jwks->lock);
    set_free(old);
    return 0;
}

gmail_jwks_lookup_result gmail_jwks_lookup(gmail_jwks *jwks, const char *kid, int64_t now,
                                           EVP_PKEY **key_r, gmail_jwks_loan **loan_r)
{
    *key_r = NULL;
    *loan_r = NULL;
    gmail_jwks_lookup_result r;
    pthread_mutex_lock(&jwks->lock);
    jwks_set *s = jwks->set;
    if (!s || now >= s->expires_at) {
        r = GMAIL_JWKS_STALE;
        goto out;
    }
    for (size_t i = 0; kid && i < s->count; i++) {
        if (strcmp(s->keys[i].kid, kid) == 0) {
            s->refs++;
            *key_r = s->keys[i].pkey;
            *loan_r = s;
            r = GMAIL_JWKS_FOUND;
            goto out;
        }
    }
    if (!jwks->refetch_wanted &&
        (!jwks->paced || now - jwks->last_refetch >= GMAIL_JWKS_REFETCH_INTERVAL)) {
        jwks->refetch_wanted = true;
        jwks->paced = true;
        jwks->last_refetch = now;
        r = GMAIL_JWKS_UNKNOWN_REFETCH;
    } else {
        r = GMAIL_JWKS_UNKNOWN;
    }
out:
    pthread_mutex_unlock(&jwks->lock);
    return r;
}

void gmail_jwks_release(gmail_jwks *jwks, gmail_jwks_loan **loan_p)
{
    if (!loan_p || !*loan_p)
        return;
    jwks_set *s = *loan_p;
    *loan_p = NULL;
    pthread_mutex_lock(&jwks->lock);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&jwks->lock);
    if (last)
        set_free(s);
}

bool gmail_jwks_refresh_due(gmail_jwks *jwks, int64_t now)
{
    pthread_mutex_lock(&jwks->lock);
    bool due = !jwks->set || jwks->refetch_wanted ||
               now >= jwks->set->expires_at - GMAIL_JWKS_REFRESH_AHEAD;
    pthread_mutex_unlock(&jwks->lock);
    return due;
}

int64_t gmail_jwks_expires_at(gmail_jwks *jwks)
{
    pthread_mutex_lock(&jwks->lock);
    int64_t t = jwks->set ? jwks->set->expires_at : 0;
    pthread_mutex_unlock(&jwks->lock);
    return t;
}

size_t gmail_jwks_count(gmail_jwks *jwks)
{
    pthread_mutex_lock(&jwks->lock);
    size_t n = jwks->set ? jwks->set->count : 0;
    pthread_mutex_unlock(&jwks->lock);
    return n;
}

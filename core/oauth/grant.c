/*
 * One token request (RFC 6749 §4.4, §6, RFC 7523) through core/net, and
 * the mapping of its answer to an mpo_status in one place: which provider
 * errors mean "a human must re-authorize" (no retry), which mean "later".
 * The request body and the answer hold secrets; both are wiped.
 */
#include <ctype.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "net/net.h"
#include "oauth/oauth_private.h"
#include "util/util.h"

#define MPO_MAX_ANSWER (256u * 1024u)
#define MPO_DESCRIPTION_MAX 200

void mpo_answer_clear(mpo_answer *a)
{
    mpu_secret_free(&a->access_token);
    mpu_secret_free(&a->refresh_token);
    free(a->error);
    memset(a, 0, sizeof *a);
}

/* Append n bytes, growing by copy so no secret is left in a block that
 * realloc would free unwiped. */
static void put(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap * 2 + n;
        char *bigger = mpu_malloc(ncap);
        memcpy(bigger, *buf, *len + 1);
        mpu_secret_free(buf);
        *buf = bigger;
        *cap = ncap;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void put_encoded(char **buf, size_t *len, size_t *cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char enc[3] = {(char)c, 0, 0};
        size_t n = 1;
        if (c == ' ') {
            enc[0] = '+';
        } else if (!isalnum(c) && c != '-' && c != '.' && c != '_' && c != '~') {
            enc[0] = '%';
            enc[1] = hex[c >> 4];
            enc[2] = hex[c & 15];
            n = 3;
        }
        put(buf, len, cap, enc, n);
    }
}

char *mpo_form(const char *const *pairs)
{
    size_t len = 0, cap = 256;
    char *buf = mpu_calloc(1, cap);
    for (size_t i = 0; pairs[i]; i += 2) {
        if (!pairs[i + 1])
            continue;
        if (len)
            put(&buf, &len, &cap, "&", 1);
        put_encoded(&buf, &len, &cap, pairs[i]);
        put(&buf, &len, &cap, "=", 1);
        put_encoded(&buf, &len, &cap, pairs[i + 1]);
    }
    return buf;
}

/* Printable ASCII only, bounded, with every secret cut out. */
static char *sanitize(const char *s, const char *const *secrets, size_t n_secrets)
{
    size_t n = strlen(s);
    if (n > MPO_DESCRIPTION_MAX)
        n = MPO_DESCRIPTION_MAX;
    char *out = mpu_strndup(s, n);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    for (size_t i = 0; i < n_secrets; i++) {
        const char *sec = secrets[i];
        size_t sl = sec ? strlen(sec) : 0;
        if (sl < 4)
            continue;
        char *hit;
        while ((hit = strstr(out, sec)) != NULL) {
            memset(hit, '*', 3);
            memmove(hit + 3, hit + sl, strlen(hit + sl) + 1);
        }
    }
    return out;
}

static void wipe_json_string(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    if (s)
        OPENSSL_cleanse((char *)s, strlen(s));
}

static int is_reauth_error(const char *e)
{
    return strcmp(e, "invalid_grant") == 0 || strcmp(e, "invalid_client") == 0 ||
           strcmp(e, "unauthorized_client") == 0;
}

static void map_answer(const mpn_result *res, const char *url_r,
                       const char *const *secrets, size_t n_secrets, mpo_answer *ans)
{
    json_t *j = res->body_len ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
    long st = res->status;
    if (st >= 200 && st < 300) {
        const char *tok = json_string_value(json_object_get(j, "access_token"));
        if (!tok || !*tok) {
            ans->status = MPO_RETRY;
            ans->error =
                mpu_asprintf("%s: answer %ld without an access_token", url_r, st);
        } else {
            ans->status = MPO_OK;
            ans->access_token = mpu_strdup(tok);
            json_t *ei = json_object_get(j, "expires_in");
            int64_t secs = 0;
            if (json_is_integer(ei))
                secs = json_integer_value(ei);
            else if (json_is_string(ei) &&
                     mpu_parse_i64(json_string_value(ei), &secs) < 0)
                secs = 0;
            ans->lifetime_ms = secs > 0 ? secs * 1000 : 0;
            const char *rt = json_string_value(json_object_get(j, "refresh_token"));
            if (rt && *rt)
                ans->refresh_token = mpu_strdup(rt);
        }
    } else if (st == 429 || st >= 500) {
        ans->status = MPO_RETRY;
        ans->retry_ms = res->retry_after_ms;
        ans->error = mpu_asprintf("%s: HTTP %ld", url_r, st);
    } else {
        const char *err = json_string_value(json_object_get(j, "error"));
        const char *desc = json_string_value(json_object_get(j, "error_description"));
        char *e = sanitize(err ? err : "", secrets, n_secrets);
        char *d = desc ? sanitize(desc, secrets, n_secrets) : NULL;
        ans->status = err && is_reauth_error(err) ? MPO_REAUTH : MPO_CONFIG;
        ans->error = mpu_asprintf("%s: HTTP %ld%s%s%s%s%s", url_r, st, *e ? ": " : "", e,
                                  d ? " (" : "", d ? d : "", d ? ")" : "");
        free(e);
        free(d);
    }
    if (j) {
        wipe_json_string(j, "access_token");
        wipe_json_string(j, "refresh_token");
        json_decref(j);
    }
}

void mpo_grant_post(const char *url, const char *ca_file, uint32_t timeout_ms,
                    const char *form, const char *const *secrets, size_t n_secrets,
                    mpo_answer *ans)
{
    static const char *const headers[] = {
        "Content-Type: application/x-www-form-urlencoded", "Accept: application/json",
        NULL};
    memset(ans, 0, sizeof *ans);
    mpn_request req = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = form,
        .body_len = strlen(form),
        .timeout_ms = timeout_ms,
        .max_response = MPO_MAX_ANSWER,
        .ca_file = ca_file,
    };
    mpn_result res;
    char *url_r = mpn_url_redact(url);
    if (mpn_perform(&req, &res) < 0) {
        ans->status = res.kind == MPN_EREQUEST ? MPO_CONFIG : MPO_RETRY;
        ans->error = mpu_asprintf("token request: %s", res.error ? res.error : "failed");
    } else {
        map_answer(&res, url_r, secrets, n_secrets, ans);
    }
    if (res.body)
        OPENSSL_cleanse(res.body, res.body_len);
    mpn_result_clear(&res);
    free(url_r);
}

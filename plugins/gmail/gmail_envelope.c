/*
 * Pub/Sub push envelope for Gmail notifications (P§2.1). Every field is
 * copied into fixed, bounded buffers so the driver's loop-thread handler
 * owns nothing and the parser is easy to fuzz.
 *
 * historyId: the push guide's sample decodes to a string, many senders
 * (and the fake, on demand) use a JSON number; P§2.1 says to accept both
 * and compare numerically, so it is kept as a canonical decimal string
 * plus its uint64 value.
 */
#include "gmail_envelope.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "gmail_b64.h"

static int fail(gmail_envelope *env, char *err, size_t err_len, const char *msg)
{
    memset(env, 0, sizeof(*env));
    if (err && err_len > 0)
        snprintf(err, err_len, "push envelope: %s", msg);
    return -1;
}

/*
 * Copy an optional string member into out (cap bytes with the NUL).
 * Returns 1 if copied, 0 if absent (JSON null counts as absent), -1 if it
 * is not a string, holds a NUL or control byte, or does not fit.
 */
static int copy_string(json_t *obj, const char *name, char *out, size_t cap)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return 0;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (!s || n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -1; /* these values end up in logs and the store */
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 1;
}

/* One of two spellings; if both are present they must be equal. */
static int copy_either(json_t *obj, const char *a, const char *b, char *out, size_t cap)
{
    char other[GMAIL_ENV_ID_MAX + 64];
    int ra = copy_string(obj, a, out, cap);
    int rb = copy_string(obj, b, other, cap < sizeof(other) ? cap : sizeof(other));
    if (ra < 0 || rb < 0)
        return -1;
    if (ra == 0 && rb == 1)
        memcpy(out, other, strlen(other) + 1);
    else if (ra == 1 && rb == 1 && strcmp(out, other) != 0)
        return -2;
    return ra || rb;
}

static bool history_id(json_t *v, gmail_envelope *env)
{
    uint64_t value = 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return false;
        value = (uint64_t)i;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 0 || n > GMAIL_ENV_HISTORY_ID_MAX)
            return false;
        for (size_t i = 0; i < n; i++) {
            if (s[i] < '0' || s[i] > '9')
                return false;
            unsigned d = (unsigned)(s[i] - '0');
            if (value > (UINT64_MAX - d) / 10)
                return false;
            value = value * 10 + d;
        }
    } else {
        return false; /* reals (1.5, 1e3), booleans, null, objects */
    }
    env->history_id_num = value;
    snprintf(env->history_id, sizeof(env->history_id), "%llu", (unsigned long long)value);
    return true;
}

static int parse_data(json_t *datav, gmail_envelope *env, char *err, size_t err_len)
{
    const char *b64 = json_string_value(datav);
    size_t b64_len = json_string_length(datav);
    if (!b64 || b64_len == 0)
        return fail(env, err, err_len, "message.data missing or not a string");
    if (b64_len > GMAIL_ENV_DATA_MAX)
        return fail(env, err, err_len, "message.data too long");
    unsigned char buf[GMAIL_B64_DECODED_MAX(GMAIL_ENV_DATA_MAX)];
    size_t n = 0;
    if (!gmail_b64_decode(b64, b64_len, GMAIL_B64_EITHER, buf, sizeof(buf), &n))
        return fail(env, err, err_len, "message.data is not base64");
    json_error_t jerr;
    json_t *d = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
    int rc = 0;
    if (!json_is_object(d))
        rc = fail(env, err, err_len, "message.data is not a JSON object");
    else if (copy_string(d, "emailAddress", env->email, sizeof(env->email)) != 1 ||
             !env->email[0])
        rc = fail(env, err, err_len,
                  "data.emailAddress missing, not a string or too long");
    else if (!strchr(env->email, '@'))
        rc = fail(env, err, err_len, "data.emailAddress is not an address");
    else if (!history_id(json_object_get(d, "historyId"), env))
        rc = fail(
            env, err, err_len,
            "data.historyId missing or not a non-negative integer of at most 20 digits");
    json_decref(d);
    return rc;
}

int gmail_envelope_parse(const char *body, size_t len, gmail_envelope *env_r, char *err,
                         size_t err_len)
{
    memset(env_r, 0, sizeof(*env_r));
    if (err && err_len > 0)
        err[0] = '\0';
    if (!body || len == 0)
        return fail(env_r, err, err_len, "empty body");
    if (len > GMAIL_ENV_BODY_MAX)
        return fail(env_r, err, err_len, "body too large");
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *msg = json_object_get(root, "message");
    int rc = -1;
    if (!json_is_object(root)) {
        rc = fail(env_r, err, err_len, "body is not a JSON object");
        goto out;
    }
    if (!json_is_object(msg)) {
        rc = fail(env_r, err, err_len, "\"message\" missing or not an object");
        goto out;
    }
    int r = copy_either(msg, "messageId", "message_id", env_r->message_id,
                        sizeof(env_r->message_id));
    if (r == -2) {
        rc = fail(env_r, err, err_len, "messageId and message_id disagree");
        goto out;
    }
    if (r != 1 || !env_r->message_id[0]) {
        rc = fail(env_r, err, err_len,
                  "message.messageId missing, not a string or over 128 bytes");
        goto out;
    }
    r = copy_either(msg, "publishTime", "publish_time", env_r->publish_time,
                    sizeof(env_r->publish_time));
    if (r == -2) {
        rc = fail(env_r, err, err_len, "publishTime and publish_time disagree");
        goto out;
    }
    if (r < 0) {
        rc = fail(env_r, err, err_len, "message.publishTime not a short string");
        goto out;
    }
    json_t *attrs = json_object_get(msg, "attributes");
    if (attrs && !json_is_object(attrs) && !json_is_null(attrs)) {
        rc = fail(env_r, err, err_len, "message.attributes is not an object");
        goto out;
    }
    if (copy_string(root, "subscription", env_r->subscription,
                    sizeof(env_r->subscription)) < 0) {
        rc = fail(env_r, err, err_len, "subscription is not a string or too long");
        goto out;
    }
    rc = parse_data(json_object_get(msg, "data"), env_r, err, err_len);
out:
    json_decref(root);
    return rc;
}

/*
 * fetch: messages.get?format=raw, the base64url `raw` decoded by gmail_b64.
 * Reading a message this way has no side effect at Gmail (UNREAD stays).
 */
#include "gmail_b64.h"
#include "gmail_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

/* Gmail accepts messages up to 50 MB (base64 in JSON: 4/3 of it). */
#define RAW_MAX_BYTES ((size_t)64 << 20)
#define RAW_MAX_RESPONSE ((size_t)96 << 20)

mp_status gmail_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                      mp_error *err)
{
    gmail_account *a = gmail_host->account_state(acct);
    const char *id = msg->ref != NULL ? msg->ref : msg->id;
    char *eid = curl_easy_escape(NULL, id, 0);
    if (eid == NULL)
        abort();
    size_t rl = strlen(eid) + 32;
    char *rest = malloc(rl);
    if (rest == NULL)
        abort();
    snprintf(rest, rl, "messages/%s?format=raw", eid);
    curl_free(eid);
    char *url = gmail_api_url(a, rest);
    free(rest);
    gmail_call c = {.method = "GET", .url = url, .units = GMAIL_UNITS_MESSAGES_GET,
                    .max_response = RAW_MAX_RESPONSE};
    mp_http_response resp;
    mp_status st = gmail_http_call(a, &c, "messages.get raw", &resp, err);
    free(url);
    if (st != MP_OK)
        return st; /* MP_SKIP: the message is gone */
    json_error_t jerr;
    json_t *root = json_loadb((const char *)resp.body, resp.body_len, 0, &jerr);
    gmail_host->http_free(&resp);
    json_t *raw = json_object_get(root, "raw");
    if (!json_is_string(raw)) {
        json_decref(root);
        return mp_fail(err, MP_RETRY, "messages.get raw: no \"raw\" in Gmail's answer");
    }
    /* base64url, with or without padding (Google sends it padded; tolerate
     * both), decoded by gmail_b64 (OpenSSL underneath). */
    size_t text_len = json_string_length(raw);
    size_t cap = GMAIL_B64_DECODED_MAX(text_len);
    if (cap > RAW_MAX_BYTES + 3) {
        json_decref(root);
        return mp_fail(err, MP_SKIP, "message %s: larger than %zu bytes", id, RAW_MAX_BYTES);
    }
    uint8_t *data = gmail_host->alloc(cap + 1);
    size_t len = 0;
    if (data == NULL) {
        json_decref(root);
        return mp_fail(err, MP_RETRY, "message %s: out of memory", id);
    }
    if (text_len == 0 || !gmail_b64_decode(json_string_value(raw), text_len, GMAIL_B64_EITHER,
                                           data, cap, &len)) {
        gmail_host->free(data);
        json_decref(root);
        return mp_fail(err, MP_SKIP, "message %s: \"raw\" is not base64url", id);
    }
    json_decref(root);
    raw_r->data = data;
    raw_r->len = len;
    return MP_OK;
}

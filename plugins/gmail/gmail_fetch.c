/*
 * fetch: messages.get?format=raw, the base64url `raw` decoded by gmail_b64.
 * Reading a message this way has no side effect at Gmail (UNREAD stays).
 * The same decoding serves the bodies a sync fetches with the metadata
 * (sync.fetch_bodies, gmail_get_bodies).
 */
#include "gmail_b64.h"
#include "gmail_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

static char *error_text(const char *s)
{
    char *e = strdup(s);
    if (e == NULL)
        abort();
    return e;
}

int gmail_raw_decode(const char *json, size_t len, void *(*alloc)(size_t),
                     void (*dealloc)(void *), uint8_t **data_r, size_t *len_r,
                     char **error_r)
{
    *data_r = NULL;
    *len_r = 0;
    *error_r = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    json_t *raw = json_object_get(root, "raw");
    if (!json_is_string(raw)) {
        json_decref(root);
        *error_r = error_text("no \"raw\" in Gmail's answer");
        return -1;
    }
    /* base64url, with or without padding (Google sends it padded; tolerate
     * both), decoded by gmail_b64 (OpenSSL underneath). */
    size_t text_len = json_string_length(raw);
    size_t cap = GMAIL_B64_DECODED_MAX(text_len);
    if (cap > GMAIL_RAW_MAX_BYTES + 3) {
        json_decref(root);
        return 1;
    }
    uint8_t *data = alloc(cap + 1);
    if (data == NULL) {
        json_decref(root);
        *error_r = error_text("out of memory");
        return -1;
    }
    size_t n = 0;
    if (text_len == 0 || !gmail_b64_decode(json_string_value(raw), text_len, GMAIL_B64_EITHER,
                                           data, cap, &n)) {
        dealloc(data);
        json_decref(root);
        *error_r = error_text("\"raw\" is not base64url");
        return -2;
    }
    json_decref(root);
    *data_r = data;
    *len_r = n;
    return 0;
}

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
                    .max_response = GMAIL_RAW_MAX_RESPONSE};
    mp_http_response resp;
    mp_status st = gmail_http_call(a, &c, "messages.get raw", &resp, err);
    free(url);
    if (st != MP_OK)
        return st; /* MP_SKIP: the message is gone */
    uint8_t *data = NULL;
    size_t len = 0;
    char *error = NULL;
    int r = gmail_raw_decode((const char *)resp.body, resp.body_len, gmail_host->alloc,
                             gmail_host->free, &data, &len, &error);
    gmail_host->http_free(&resp);
    if (r > 0)
        return mp_fail(err, MP_SKIP, "message %s: larger than %zu bytes", id,
                       GMAIL_RAW_MAX_BYTES);
    if (r < 0) {
        /* An answer without "raw" may be passing; a body that is not
         * base64url will not get better. */
        st = r == -2 ? MP_SKIP : MP_RETRY;
        mp_fail(err, st, "message %s: %s", id, error);
        free(error);
        return st;
    }
    raw_r->data = data;
    raw_r->len = len;
    return MP_OK;
}

/* HTTP for drivers through libcurl. One easy handle per worker thread so
 * connections (and TLS sessions) to the same provider are reused across
 * calls. TLS peer and host verification stay on: there is no switch. */
#include "host/host_private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "util/util.h"

#define MPH_HTTP_MAX_BODY (64u * 1024u * 1024u)

static __thread CURL *thread_curl;

void mphost_http_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void mphost_http_thread_cleanup(void)
{
    if (thread_curl != NULL) {
        curl_easy_cleanup(thread_curl);
        thread_curl = NULL;
    }
}

typedef struct growbuf {
    char *data;
    size_t len, cap;
    int overflow;
} growbuf;

static size_t append(growbuf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > MPH_HTTP_MAX_BODY) {
        b->overflow = 1;
        return 0; /* makes curl abort the transfer */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->data = mpu_realloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return append(arg, p, size * n);
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    return append(arg, p, size * n);
}

/* A driver's URL may carry an access token or a signature in its query,
 * credentials as userinfo, or state in its fragment; last_error and the
 * logs get only what identifies the endpoint. Parsed by libcurl itself so
 * the result agrees with what was requested. */
char *mphost_url_redact(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *out = NULL;
    if (u != NULL && url != NULL &&
        curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        /* An explicit port names the endpoint too and is no secret. */
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
            port = NULL;
        if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
            path = NULL;
        out = mpu_asprintf("%s://%s%s%s%s", scheme, host, port != NULL ? ":" : "",
                           port != NULL ? port : "", path != NULL ? path : "/");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return out != NULL ? out : mpu_strdup("(unparsable URL)");
}

/* Retry-After is either delta-seconds or an HTTP date. */
static uint32_t parse_retry_after(const char *headers)
{
    for (const char *line = headers; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > 12 && strncasecmp(line, "Retry-After:", 12) == 0) {
            char value[64];
            size_t vlen = len - 12 < sizeof value - 1 ? len - 12 : sizeof value - 1;
            memcpy(value, line + 12, vlen);
            value[vlen] = '\0';
            char *v = value;
            while (*v == ' ' || *v == '\t')
                v++;
            v[strcspn(v, "\r\n")] = '\0';
            int64_t secs;
            if (mpu_parse_i64(v, &secs) == 0 && secs >= 0)
                return secs > 86400 ? 86400000u : (uint32_t)secs * 1000u;
            time_t when = curl_getdate(v, NULL);
            if (when > 0) {
                int64_t delta = (int64_t)when * 1000 - mpu_now_ms();
                return delta > 0 ? (uint32_t)(delta > 86400000 ? 86400000 : delta) : 0;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

mp_status mphost_http(mp_account *acct, const mp_http_request *req,
                   mp_http_response *resp_r, mp_error *err)
{
    (void)acct;
    memset(resp_r, 0, sizeof *resp_r);
    if (req == NULL || req->url == NULL)
        return mp_fail(err, MP_FATAL, "HTTP request without URL");
    if (thread_curl == NULL)
        thread_curl = curl_easy_init();
    else
        curl_easy_reset(thread_curl);
    CURL *c = thread_curl;
    if (c == NULL)
        return mp_fail(err, MP_RETRY, "cannot initialise libcurl");

    growbuf body = {0}, hdrs = {0};
    struct curl_slist *list = NULL;
    for (const char *const *h = req->headers; h != NULL && *h != NULL; h++)
        list = curl_slist_append(list, *h);

    const char *method = req->method ? req->method : "GET";
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms ? req->timeout_ms : 30000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mailpulse/" MP_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (req->body != NULL || strcmp(method, "POST") == 0 ||
            strcmp(method, "PATCH") == 0 || strcmp(method, "PUT") == 0) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        }
    }

    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(list);
    if (rc != CURLE_OK) {
        mp_status st = MP_RETRY;
        char *shown = mphost_url_redact(req->url);
        if (body.overflow)
            mp_fail(err, MP_RETRY, "%s %s: response larger than %u bytes", method, shown,
                    MPH_HTTP_MAX_BODY);
        else
            mp_fail(err, st, "%s %s: %s", method, shown, curl_easy_strerror(rc));
        free(shown);
        free(body.data);
        free(hdrs.data);
        return st;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp_r->status);
    if (body.data == NULL)
        body.data = mpu_calloc(1, 1);
    resp_r->body = (uint8_t *)body.data;
    resp_r->body_len = body.len;
    resp_r->headers = hdrs.data != NULL ? hdrs.data : mpu_calloc(1, 1);
    resp_r->retry_after_ms = parse_retry_after(resp_r->headers);
    return MP_OK;
}

void mphost_http_free(mp_http_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    free(resp->headers);
    resp->body = NULL;
    resp->headers = NULL;
}

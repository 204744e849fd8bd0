/*
 * libcurl transfers for mailpulsectl. One easy handle per request: the CLI
 * makes one or two requests per run, so connection reuse buys nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "client.h"
#include "util/util.h"

/* JSON answers are small; a body this large means something is wrong. */
#define MAX_BODY (64u * 1024 * 1024)

volatile sig_atomic_t mpctl_interrupted;

enum body_mode { MODE_UNDECIDED, MODE_BUFFER, MODE_SINK, MODE_SSE };

struct transfer {
    CURL *curl;
    FILE *sink;
    mpctl_sse *parser;
    enum body_mode mode;
    char *body;
    size_t len, cap;
    int too_large;
    int parser_stopped;
    int sink_failed;
    const char *post_body; /* POST: the JSON body, NULL: empty           */
};

void mpctl_conn_clear(mpctl_conn *conn)
{
    mpu_secret_free(&conn->token);
    free(conn->socket_path);
    free(conn->base_url);
    memset(conn, 0, sizeof(*conn));
}

char *mpctl_conn_describe(const mpctl_conn *conn)
{
    if (conn->socket_path != NULL)
        return mpu_asprintf("socket %s", conn->socket_path);
    return mpu_asprintf("url %s", conn->base_url);
}

void mpctl_response_clear(mpctl_response *resp)
{
    free(resp->body);
    free(resp->content_type);
    memset(resp, 0, sizeof(*resp));
}

int mpctl_client_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void mpctl_client_cleanup(void)
{
    curl_global_cleanup();
}

static enum body_mode decide_mode(struct transfer *t)
{
    long code = 0;
    char *ctype = NULL;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(t->curl, CURLINFO_CONTENT_TYPE, &ctype);
    if (code < 200 || code > 299)
        return MODE_BUFFER;
    if (t->parser != NULL)
        return code == 200 && ctype != NULL &&
                       strncasecmp(ctype, "text/event-stream", 17) == 0
                   ? MODE_SSE
                   : MODE_BUFFER;
    return t->sink != NULL ? MODE_SINK : MODE_BUFFER;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    size_t n = size * nmemb;
    if (t->mode == MODE_UNDECIDED)
        t->mode = decide_mode(t);
    switch (t->mode) {
    case MODE_SSE:
        if (mpctl_sse_feed(t->parser, ptr, n) < 0) {
            t->parser_stopped = 1;
            return 0;
        }
        return n;
    case MODE_SINK:
        if (fwrite(ptr, 1, n, t->sink) != n) {
            t->sink_failed = 1;
            return 0;
        }
        return n;
    default:
        break;
    }
    if (mpu_grow_append(&t->body, &t->len, &t->cap, ptr, n, MAX_BODY) < 0) {
        t->too_large = 1;
        return 0;
    }
    return n;
}

static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    return mpctl_interrupted ? 1 : 0;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *header)
{
    struct curl_slist *next = curl_slist_append(list, header);
    if (next == NULL)
        abort();
    return next;
}

static char *transfer_error(CURL *curl, CURLcode rc, const char *errbuf,
                            const mpctl_conn *conn, const struct transfer *t)
{
    if (t->too_large)
        return mpu_asprintf("response larger than %u bytes", MAX_BODY);
    if (t->sink_failed)
        return mpu_strdup("cannot write the output");
    if (rc == CURLE_ABORTED_BY_CALLBACK && mpctl_interrupted)
        return mpu_strdup("interrupted");
    /* On a unix socket curl's text names "localhost port 80"; the OS
     * error (no such file, permission denied) is what helps. */
    long os_errno = 0;
    curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
    if (conn->socket_path != NULL && rc == CURLE_COULDNT_CONNECT && os_errno != 0)
        return mpu_asprintf("%s (%s)", curl_easy_strerror(rc), strerror((int)os_errno));
    return mpu_strdup(errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
}

/* Perform one transfer; fills resp (status, content type, buffered body). */
static CURLcode perform(const mpctl_conn *conn, const char *method, const char *path,
                        const char *last_event_id, struct transfer *t,
                        mpctl_response *resp, char **error_r)
{
    char errbuf[CURL_ERROR_SIZE];
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        *error_r = mpu_strdup("cannot create a libcurl handle");
        return CURLE_FAILED_INIT;
    }
    t->curl = curl;
    char *url = mpu_asprintf("%s%s", conn->base_url, path);
    struct curl_slist *headers = NULL;
    if (conn->token != NULL) {
        char *auth = mpu_asprintf("Authorization: Bearer %s", conn->token);
        headers = add_header(headers, auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    if (last_event_id != NULL) {
        char *h = mpu_asprintf("Last-Event-ID: %s", last_event_id);
        headers = add_header(headers, h);
        free(h);
    }
    if (t->parser != NULL)
        headers = add_header(headers, "Accept: text/event-stream");
    if (t->post_body != NULL)
        headers = add_header(headers, "Content-Type: application/json");

    errbuf[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "mailpulsectl/" MP_VERSION);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    if (conn->socket_path != NULL)
        curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, conn->socket_path);
    if (headers != NULL)
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (strcmp(method, "POST") == 0) {
        const char *body = t->post_body != NULL ? t->post_body : "";
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (t->parser != NULL) {
        /* The daemon sends heartbeats; a stream silent for this long is
         * dead (peer vanished without closing). */
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 300L);
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);

    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK)
        *error_r = transfer_error(curl, rc, errbuf, conn, t);

    long code = 0;
    char *ctype = NULL;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ctype);
    resp->status = code;
    resp->content_type = mpu_strdup(ctype);
    resp->body = t->body != NULL ? t->body : mpu_strdup("");
    resp->len = t->len;
    t->body = NULL;
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    free(url);
    t->curl = NULL;
    return rc;
}

int mpctl_request(const mpctl_conn *conn, const char *method, const char *path,
                  FILE *sink, mpctl_response *resp_r, char **error_r)
{
    struct transfer t = {.sink = sink};
    memset(resp_r, 0, sizeof(*resp_r));
    *error_r = NULL;
    return perform(conn, method, path, NULL, &t, resp_r, error_r) == CURLE_OK ? 0 : -1;
}

int mpctl_post_json(const mpctl_conn *conn, const char *path, const char *json_body,
                    mpctl_response *resp_r, char **error_r)
{
    struct transfer t = {.post_body = json_body};
    memset(resp_r, 0, sizeof(*resp_r));
    *error_r = NULL;
    return perform(conn, "POST", path, NULL, &t, resp_r, error_r) == CURLE_OK ? 0 : -1;
}

int mpctl_stream(const mpctl_conn *conn, const char *path, const char *last_event_id,
                 mpctl_sse *parser, mpctl_response *resp_r, char **error_r)
{
    struct transfer t = {.parser = parser};
    memset(resp_r, 0, sizeof(*resp_r));
    *error_r = NULL;
    CURLcode rc = perform(conn, "GET", path, last_event_id, &t, resp_r, error_r);
    if (rc == CURLE_OK || t.parser_stopped ||
        (rc == CURLE_ABORTED_BY_CALLBACK && mpctl_interrupted)) {
        free(*error_r);
        *error_r = NULL;
        return 0;
    }
    return -1;
}

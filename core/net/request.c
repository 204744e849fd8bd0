/* The option setup every outbound request shares, and how a finished
 * transfer becomes a result. Kept in one place so that the blocking and
 * the event-loop paths cannot drift apart on TLS, redirects or bounds. */
#include "net/net_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/fdlimit.h"
#include "util/util.h"

static int buf_append(mpn_buf *b, const char *p, size_t n, size_t max)
{
    return mpu_grow_append(&b->data, &b->len, &b->cap, p, n, max);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    mpn_xfer *x = arg;
    if (x->discard_body)
        return size * n;
    if (buf_append(&x->body, p, size * n, x->max_response + 1) < 0) {
        x->too_large = 1;
        return 0; /* makes curl abort the transfer */
    }
    return size * n;
}

/* Header blocks of interim answers (100 Continue, followed redirects)
 * are dropped when the next status line starts: only the final
 * response's headers are kept. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    mpn_xfer *x = arg;
    if (size * n >= 5 && strncmp(p, "HTTP/", 5) == 0)
        x->hdrs.len = 0;
    if (buf_append(&x->hdrs, p, size * n, 256u * 1024u) < 0)
        return 0;
    return size * n;
}

void mpn_result_fail(mpn_result *res_r, mpn_error_kind kind, const char *method,
                     const char *url, const char *why)
{
    char *shown = mpn_url_redact(url);
    memset(res_r, 0, sizeof *res_r);
    res_r->kind = kind;
    res_r->error = mpu_asprintf("%s %s: %s", method, shown, why);
    free(shown);
}

int mpn_xfer_setup(mpn_xfer *x, CURL *e, const mpn_request *req, int copy_body,
                   mpn_result *res_r)
{
    const char *method = req->method != NULL ? req->method : "GET";
    mpu_strlcpy(x->method, method, sizeof x->method);
    if (req->url == NULL) {
        mpn_result_fail(res_r, MPN_EREQUEST, x->method, NULL, "no URL");
        return -1;
    }
    if (strncasecmp(req->url, "http://", 7) != 0 && strncasecmp(req->url, "https://", 8) != 0) {
        mpn_result_fail(res_r, MPN_EREQUEST, x->method, req->url,
                        "only http:// and https:// URLs are allowed");
        return -1;
    }
    x->max_response = req->max_response ? req->max_response : MPN_DEFAULT_MAX_RESPONSE;
    x->discard_body = req->discard_body;
    for (const char *const *h = req->headers; h != NULL && *h != NULL; h++)
        x->headers = curl_slist_append(x->headers, *h);

    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (req->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
    /* A redirect could carry a bearer token or a signed body somewhere
     * nobody configured; followed only on request, only within https. */
    x->follow = req->max_redirects > 0 && strncasecmp(req->url, "https://", 8) == 0;
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, x->follow ? 1L : 0L);
    if (x->follow) {
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)req->max_redirects);
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    }
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)(req->timeout_ms ? req->timeout_ms : MPN_DEFAULT_TIMEOUT_MS));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(req->connect_timeout_ms ? req->connect_timeout_ms
                                                    : MPN_DEFAULT_CONNECT_TIMEOUT_MS));
    if (!x->discard_body)
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_response);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "mailpulse/" MP_VERSION);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        if (req->body != NULL || strcmp(method, "POST") == 0 ||
            strcmp(method, "PATCH") == 0 || strcmp(method, "PUT") == 0) {
            const char *body = req->body != NULL ? (const char *)req->body : "";
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            curl_easy_setopt(e, copy_body ? CURLOPT_COPYPOSTFIELDS : CURLOPT_POSTFIELDS,
                             body);
        }
    }
    return 0;
}

static mpn_error_kind kind_of(const mpn_xfer *x, CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return MPN_ETIMEOUT;
    case CURLE_FILESIZE_EXCEEDED:
        return MPN_ETOOLARGE;
    case CURLE_WRITE_ERROR:
        return x->too_large ? MPN_ETOOLARGE : MPN_ETRANSPORT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
        return MPN_ETLS;
    case CURLE_TOO_MANY_REDIRECTS:
        return MPN_EREDIRECT;
    case CURLE_UNSUPPORTED_PROTOCOL:
        return x->follow ? MPN_EREDIRECT : MPN_EREQUEST;
    default:
        return MPN_ETRANSPORT;
    }
}

void mpn_xfer_finish(mpn_xfer *x, CURL *e, CURLcode rc, mpn_result *res_r)
{
    memset(res_r, 0, sizeof *res_r);
    if (rc != CURLE_OK) {
        const char *url = NULL;
        curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url);
        mpn_error_kind kind = kind_of(x, rc);
        /* Out of descriptors (socket(), or the CA file behind a TLS
         * error): a transport failure the caller retries, and counted. */
        long os_errno = 0;
        if (curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK &&
            (os_errno == EMFILE || os_errno == ENFILE)) {
            mpu_fd_shortage_note("http client", (int)os_errno);
            kind = MPN_ETRANSPORT;
        }
        char why[CURL_ERROR_SIZE + 64];
        if (kind == MPN_ETOOLARGE)
            snprintf(why, sizeof why, "response larger than %zu bytes", x->max_response);
        else if (kind == MPN_EREDIRECT && rc == CURLE_UNSUPPORTED_PROTOCOL)
            snprintf(why, sizeof why, "redirect to a non-https URL refused");
        else
            snprintf(why, sizeof why, "%s",
                     x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(rc));
        mpn_result_fail(res_r, kind, x->method, url, why);
        mpn_xfer_release(x);
        return;
    }
    res_r->kind = MPN_OK;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &res_r->status);
    res_r->body = x->body.data != NULL ? x->body.data : mpu_calloc(1, 1);
    res_r->body_len = x->body.len;
    res_r->headers = x->hdrs.data != NULL ? x->hdrs.data : mpu_calloc(1, 1);
    res_r->retry_after_ms = mpn_retry_after_from_headers(res_r->headers, mpu_now_ms());
    memset(&x->body, 0, sizeof x->body);
    memset(&x->hdrs, 0, sizeof x->hdrs);
    mpn_xfer_release(x);
}

void mpn_xfer_release(mpn_xfer *x)
{
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    free(x->body.data);
    free(x->hdrs.data);
    memset(&x->body, 0, sizeof x->body);
    memset(&x->hdrs, 0, sizeof x->hdrs);
}

void mpn_result_clear(mpn_result *res)
{
    if (res == NULL)
        return;
    free(res->body);
    free(res->headers);
    free(res->error);
    memset(res, 0, sizeof *res);
}

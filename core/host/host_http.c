/* The host `http` slot: a driver's request through the core client
 * (core/net), which owns TLS, redirects, bounds, Retry-After and URL
 * redaction. What stays here is the mapping to the ABI: the response
 * types, and a failed request as MP_RETRY. Requests are counted against
 * the account's concurrency limit (mpn_limit_set keyed by account id). */
#include "host/host_private.h"

#include <stdlib.h>
#include <string.h>

#include "net/net.h"

mp_status mphost_http_run(const char *limit_key, const char *ca_file,
                          const mp_http_request *req, mp_http_response *resp_r, mp_error *err)
{
    return mphost_http_run_ex(limit_key, ca_file, req, NULL, resp_r, err);
}

/* The options a driver built for any 1.x minor passed, zero-extended. */
static void options_read(const mp_http_options *opt, mp_http_options *out)
{
    memset(out, 0, sizeof *out);
    if (opt == NULL || opt->struct_size < sizeof(uint32_t))
        return;
    size_t n = opt->struct_size < sizeof *out ? opt->struct_size : sizeof *out;
    memcpy(out, opt, n);
}

void mphost_http_limit_run(const char *limit_key, unsigned max)
{
    if (limit_key != NULL)
        mpn_limit_set(limit_key, max);
}

mp_status mphost_http_run_ex(const char *limit_key, const char *ca_file,
                             const mp_http_request *req, const mp_http_options *opt,
                             mp_http_response *resp_r, mp_error *err)
{
    mp_http_options o;
    options_read(opt, &o);
    memset(resp_r, 0, sizeof *resp_r);
    if (req == NULL || req->url == NULL)
        return mp_fail(err, MP_FATAL, "HTTP request without URL");
    mpn_request r = {
        .method = req->method,
        .url = req->url,
        .headers = req->headers,
        .body = req->body,
        .body_len = req->body_len,
        .timeout_ms = req->timeout_ms,
        .ca_file = ca_file,
        .limit_key = limit_key,
        .max_redirects = o.max_redirects,
        .max_response = o.max_response,
    };
    mpn_result res;
    if (mpn_perform(&r, &res) < 0) {
        mp_fail(err, MP_RETRY, "%s", res.error);
        mpn_result_clear(&res);
        return MP_RETRY;
    }
    resp_r->status = res.status;
    resp_r->body = (uint8_t *)res.body;
    resp_r->body_len = res.body_len;
    resp_r->headers = res.headers;
    resp_r->retry_after_ms = res.retry_after_ms;
    return MP_OK;
}

mp_status mphost_http(mp_account *acct, const mp_http_request *req,
                      mp_http_response *resp_r, mp_error *err)
{
    return mphost_http_run(acct != NULL ? acct->id : NULL, NULL, req, resp_r, err);
}

void mphost_http_limit(mp_account *acct, unsigned max)
{
    if (acct != NULL)
        mphost_http_limit_run(acct->id, max);
}

mp_status mphost_http_ex(mp_account *acct, const mp_http_request *req,
                         const mp_http_options *opt, mp_http_response *resp_r,
                         mp_error *err)
{
    return mphost_http_run_ex(acct != NULL ? acct->id : NULL, NULL, req, opt, resp_r, err);
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

/* Blocking requests for worker threads. One easy handle per thread so
 * connections (and TLS sessions) to the same provider are reused across
 * calls without any locking. */
#include "net/net_private.h"

#include <string.h>

static __thread CURL *thread_curl;

void mpn_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void mpn_thread_cleanup(void)
{
    if (thread_curl != NULL) {
        curl_easy_cleanup(thread_curl);
        thread_curl = NULL;
    }
}

int mpn_perform(const mpn_request *req, mpn_result *res_r)
{
    mpn_xfer x;
    memset(&x, 0, sizeof x);
    memset(res_r, 0, sizeof *res_r);
    if (thread_curl == NULL)
        thread_curl = curl_easy_init();
    else
        curl_easy_reset(thread_curl);
    if (thread_curl == NULL) {
        mpn_result_fail(res_r, MPN_ETRANSPORT, req->method ? req->method : "GET", req->url,
                        "cannot initialise libcurl");
        return -1;
    }
    if (mpn_xfer_setup(&x, thread_curl, req, 0, res_r) < 0)
        return -1;
    if (mpn_limit_acquire(req->limit_key, req->limit_wait_ms ? req->limit_wait_ms
                                                             : MPN_DEFAULT_LIMIT_WAIT_MS) < 0) {
        mpn_xfer_release(&x);
        mpn_result_fail(res_r, MPN_EBUSY, x.method, req->url,
                        "too many concurrent requests for this account; retry later");
        return -1;
    }
    CURLcode rc = curl_easy_perform(thread_curl);
    mpn_limit_release(req->limit_key);
    mpn_xfer_finish(&x, thread_curl, rc, res_r);
    return res_r->kind == MPN_OK ? 0 : -1;
}

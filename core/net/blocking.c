/* Blocking requests for worker threads. One easy handle per thread so
 * connections (and TLS sessions) to the same provider are reused across
 * calls without any locking.
 *
 * The handle is also registered under a pthread key whose destructor
 * frees it when the thread exits: threads the daemon does not own (a
 * driver's own refresher or pull thread calling host->http) never call
 * mpn_thread_cleanup, and their handle and its connections must not
 * outlive them. */
#include "net/net_private.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static __thread CURL *thread_curl;
static pthread_key_t curl_key;
static pthread_once_t curl_key_once = PTHREAD_ONCE_INIT;

static void curl_key_destroy(void *handle)
{
    curl_easy_cleanup(handle);
}

static void curl_key_create(void)
{
    if (pthread_key_create(&curl_key, curl_key_destroy) != 0)
        abort();
}

void mpn_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_once(&curl_key_once, curl_key_create);
}

void mpn_thread_cleanup(void)
{
    if (thread_curl != NULL) {
        pthread_once(&curl_key_once, curl_key_create);
        pthread_setspecific(curl_key, NULL);
        curl_easy_cleanup(thread_curl);
        thread_curl = NULL;
    }
}

/* This thread's handle, created (and registered for thread exit) on
 * first use. */
static CURL *thread_handle(void)
{
    if (thread_curl != NULL) {
        curl_easy_reset(thread_curl);
        return thread_curl;
    }
    thread_curl = curl_easy_init();
    if (thread_curl != NULL) {
        pthread_once(&curl_key_once, curl_key_create);
        pthread_setspecific(curl_key, thread_curl);
    }
    return thread_curl;
}

int mpn_perform(const mpn_request *req, mpn_result *res_r)
{
    mpn_xfer x;
    memset(&x, 0, sizeof x);
    memset(res_r, 0, sizeof *res_r);
    if (thread_handle() == NULL) {
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

/*
 * The host `http` slot over core/net, without the rest of the host (the
 * test kit's mock host uses it without a daemon). Any thread.
 */
#ifndef MP_HOST_HTTP_H
#define MP_HOST_HTTP_H

#include <mailpulse/driver.h>

/* A driver's request through the core client: counted against the limit
 * of `limit_key` (NULL: none), verified against `ca_file` (NULL: the
 * system store). MP_OK when a response (any status) arrived, MP_RETRY with
 * err set (URL redacted) when none did, MP_FATAL without a URL. The
 * daemon's slot passes the account id and the system store. */
mp_status mphost_http_run(const char *limit_key, const char *ca_file,
                          const mp_http_request *req, mp_http_response *resp_r, mp_error *err);
/* mphost_http_run with the ABI 1.1 options (opt NULL: none). Reads
 * only the fields within opt->struct_size. */
mp_status mphost_http_run_ex(const char *limit_key, const char *ca_file,
                             const mp_http_request *req, const mp_http_options *opt,
                             mp_http_response *resp_r, mp_error *err);
/* The `http_limit` slot keyed by `limit_key`: at most `max` requests in
 * flight (0: none). Ignores a NULL key. */
void mphost_http_limit_run(const char *limit_key, unsigned max);
/* The `http_free` slot. Accepts NULL. */
void mphost_http_free(mp_http_response *resp);

#endif

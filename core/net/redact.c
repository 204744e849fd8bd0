/* A URL may carry an access token or a signature in its query,
 * credentials as userinfo, or state in its fragment; errors and logs get
 * only what identifies the endpoint. Parsed by libcurl itself so the
 * result agrees with what was requested. */
#include "net/net_private.h"

#include "util/util.h"

char *mpn_url_redact(const char *url)
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

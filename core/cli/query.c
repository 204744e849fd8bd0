/*
 * Query strings and path segments for the daemon's API. Encoding is
 * libcurl's (curl_easy_escape keeps only RFC 3986 unreserved characters),
 * which needs no handle since libcurl 7.82 and does no I/O.
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "util/util.h"

static char *escape(const char *s)
{
    size_t len = strlen(s);
    char *e = len > (size_t)0x3fffffff ? NULL : curl_easy_escape(NULL, s, (int)len);
    if (e == NULL)
        abort(); /* only on allocation failure, like mpu_malloc */
    char *out = mpu_strdup(e);
    curl_free(e);
    return out;
}

char *mpctl_path_escape(const char *segment)
{
    return escape(segment);
}

char *mpctl_query_build(const mpctl_param *params, size_t n)
{
    char *query = mpu_strdup("");
    for (size_t i = 0; i < n; i++) {
        if (params[i].value == NULL)
            continue;
        char *k = escape(params[i].key);
        char *v = escape(params[i].value);
        char *next = mpu_asprintf("%s%c%s=%s", query, query[0] == '\0' ? '?' : '&', k, v);
        free(k);
        free(v);
        free(query);
        query = next;
    }
    return query;
}

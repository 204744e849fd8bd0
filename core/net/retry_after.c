/* Retry-After (RFC 9110 10.2.3): delta-seconds or an HTTP-date. The one
 * parser in the daemon; callers apply their own, smaller, policy caps. */
#include "net/net_private.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

uint32_t mpn_retry_after_ms(const char *value, int64_t now_ms)
{
    if (value == NULL)
        return 0;
    while (*value == ' ' || *value == '\t')
        value++;
    char v[64];
    mpu_strlcpy(v, value, sizeof v);
    size_t n = strcspn(v, "\r\n");
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    v[n] = '\0';
    int64_t delta_ms;
    if (isdigit((unsigned char)v[0])) {
        int64_t secs;
        /* Anything but plain digits is malformed, not a date. */
        if (strspn(v, "0123456789") != n)
            return 0;
        if (n > 9 || mpu_parse_i64(v, &secs) < 0)
            return MPN_RETRY_AFTER_CAP_MS;
        delta_ms = secs * 1000;
    } else {
        time_t when = curl_getdate(v, NULL);
        if (when <= 0)
            return 0;
        delta_ms = (int64_t)when * 1000 - now_ms;
    }
    if (delta_ms <= 0)
        return 0;
    return delta_ms > MPN_RETRY_AFTER_CAP_MS ? MPN_RETRY_AFTER_CAP_MS : (uint32_t)delta_ms;
}

uint32_t mpn_retry_after_from_headers(const char *headers, int64_t now_ms)
{
    uint32_t found = 0;
    for (const char *line = headers; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        if (strncasecmp(line, "Retry-After:", 12) == 0)
            found = mpn_retry_after_ms(line + 12, now_ms);
        line = end != NULL ? end + 1 : NULL;
    }
    return found;
}

/* Subject tokens and message ids of the bus (contract in bus.h).
 *
 * Account ids may hold '.', and event types always do ("message.new"); a
 * '.' inside a token would split it, and '*', '>' or whitespace would turn
 * a subject into a wildcard or break the protocol line. Percent-encoding
 * every byte outside [A-Za-z0-9_-] keeps the mapping injective (two
 * accounts never share a subject) and reversible by a consumer. */
#include "bus/bus.h"

#include <stdio.h>
#include <string.h>

#include "util/util.h"

#define MSG_ID_MAX 256

static int keep(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

size_t mpb_token(const char *value, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)(value != NULL ? value : "");
    size_t n = 0;
    char tmp[3];
    if (*p == '\0') {
        if (size > 1)
            out[0] = '%';
        n = 1;
    }
    for (; *p != '\0'; p++) {
        size_t len = 1;
        tmp[0] = (char)*p;
        if (!keep(*p)) {
            tmp[0] = '%';
            tmp[1] = hex[*p >> 4];
            tmp[2] = hex[*p & 15];
            len = 3;
        }
        for (size_t i = 0; i < len; i++, n++)
            if (n + 1 < size)
                out[n] = tmp[i];
    }
    if (size > 0)
        out[n < size ? n : size - 1] = '\0';
    return n;
}

char *mpb_subject(const char *account, const char *type)
{
    size_t la = mpb_token(account, NULL, 0), lt = mpb_token(type, NULL, 0);
    size_t lp = strlen(MPB_SUBJECT_PREFIX);
    char *s = mpu_malloc(lp + 1 + la + 1 + lt + 1);
    memcpy(s, MPB_SUBJECT_PREFIX, lp);
    s[lp] = '.';
    mpb_token(account, s + lp + 1, la + 1);
    s[lp + 1 + la] = '.';
    mpb_token(type, s + lp + 1 + la + 1, lt + 1);
    return s;
}

void mpb_msg_id(const char *idem_key, char *out, size_t size)
{
    const char *k = idem_key != NULL ? idem_key : "";
    size_t n = strlen(k);
    int plain = n > 0 && n <= MSG_ID_MAX;
    for (size_t i = 0; plain && i < n; i++)
        plain = k[i] > 0x20 && k[i] < 0x7f;
    if (plain) {
        mpu_strlcpy(out, k, size);
        return;
    }
    char hex[65];
    mpu_sha256_hex(k, n, 32, hex);
    snprintf(out, size, "sha256:%s", hex);
}

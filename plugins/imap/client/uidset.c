/* UID sets ("1:5,7,9:12") to sorted unique arrays and back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imapc.h"

static int parse_num(const char **p, uint32_t *v_r)
{
    const char *q = *p;
    uint64_t v = 0;
    while (*q >= '0' && *q <= '9') {
        v = v * 10 + (uint64_t)(*q - '0');
        if (v > UINT32_MAX)
            return -1;
        q++;
    }
    if (q == *p || v == 0)
        return -1;
    *p = q;
    *v_r = (uint32_t)v;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int imap_uidset_parse(const char *s, uint32_t **uids_r, size_t *n_r)
{
    uint32_t *v = NULL;
    size_t n = 0, cap = 0;
    const char *p = s;
    if (s == NULL || *s == '\0')
        goto fail;
    for (;;) {
        uint32_t lo, hi;
        if (parse_num(&p, &lo) < 0)
            goto fail;
        hi = lo;
        if (*p == ':') {
            p++;
            if (parse_num(&p, &hi) < 0)
                goto fail;
        }
        if (lo > hi) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        size_t count = (size_t)(hi - lo) + 1;
        if (count > IMAPC_UIDSET_MAX || n + count > IMAPC_UIDSET_MAX)
            goto fail;
        if (n + count > cap) {
            while (n + count > cap)
                cap = cap == 0 ? 64 : cap * 2;
            v = imapc_realloc(v, cap * sizeof(uint32_t));
        }
        for (uint64_t u = lo; u <= hi; u++)
            v[n++] = (uint32_t)u;
        if (*p == '\0')
            break;
        if (*p != ',')
            goto fail;
        p++;
    }
    qsort(v, n, sizeof(uint32_t), cmp_u32);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || v[w - 1] != v[i])
            v[w++] = v[i];
    *uids_r = v;
    *n_r = w;
    return 0;
fail:
    free(v);
    *uids_r = NULL;
    *n_r = 0;
    return -1;
}

char *imap_uidset_format(const uint32_t *uids, size_t n)
{
    imapc_buf b = {0};
    char tmp[32];
    imapc_buf_append(&b, "", 0);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && (uids[j + 1] == uids[j] || uids[j + 1] == uids[j] + 1))
            j++;
        int len;
        if (uids[j] == uids[i])
            len = snprintf(tmp, sizeof tmp, "%s%u", b.len > 0 ? "," : "", uids[i]);
        else
            len = snprintf(tmp, sizeof tmp, "%s%u:%u", b.len > 0 ? "," : "", uids[i], uids[j]);
        imapc_buf_append(&b, tmp, (size_t)len);
        i = j + 1;
    }
    if (b.data == NULL)
        return imapc_strdup("");
    return b.data;
}

/* The folder cursor and backfill position as text (ee_cursor.h). */
#include "ee_cursor.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int ee_cursor_parse(const char *s, ee_cursor *c)
{
    memset(c, 0, sizeof *c);
    if (s == NULL)
        return -1;
    long long reg, floor_, msgs, next, swept, counted;
    int n = 0;
    if (sscanf(s, "ee1 %lld %lld %lld %lld %lld %lld%n", &reg, &floor_, &msgs, &next, &swept,
               &counted, &n) != 6 ||
        s[n] != '\0' || reg < -1 || reg > UINT32_MAX || floor_ < 0 || floor_ > UINT32_MAX ||
        msgs < -1 || next < -1 || swept < 0 || counted < 0)
        return -1;
    c->reg = reg;
    c->floor = (uint32_t)floor_;
    c->messages = msgs;
    c->uid_next = next;
    c->swept_ms = swept;
    c->counted_ms = counted;
    return 0;
}

void ee_cursor_format(const ee_cursor *c, char out[EE_CURSOR_MAX])
{
    snprintf(out, EE_CURSOR_MAX,
             "ee1 %" PRId64 " %" PRIu32 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64, c->reg,
             c->floor, c->messages, c->uid_next, c->swept_ms, c->counted_ms);
}

int ee_backfill_parse(const char *s, uint32_t *below_r)
{
    unsigned long long v;
    int n = 0;
    if (s == NULL || sscanf(s, "uid:%llu%n", &v, &n) != 1 || s[n] != '\0' || v > UINT32_MAX)
        return -1;
    *below_r = (uint32_t)v;
    return 0;
}

void ee_backfill_format(uint32_t below, char out[32])
{
    snprintf(out, 32, "uid:%" PRIu32, below);
}

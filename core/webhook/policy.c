/* Which events an endpoint wants, and when to try again. */
#include "webhook/webhook.h"

#include <string.h>

#define RETRY_AFTER_CAP_S 3600u

static int in_list(char *const *list, const char *value)
{
    if (list == NULL)
        return 1;
    if (value == NULL)
        return 0;
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], value) == 0)
            return 1;
    return 0;
}

int mpw_filter_match(const mp_webhook_conf *w, const char *type, const char *account,
                     const char *folder)
{
    return in_list(w->events, type) && in_list(w->accounts, account) &&
           in_list(w->folders, folder);
}

uint32_t mpw_backoff_ms(const mp_webhook_conf *w, uint32_t failures, uint32_t retry_after_s,
                        uint32_t random)
{
    if (retry_after_s > 0)
        return (retry_after_s < RETRY_AFTER_CAP_S ? retry_after_s : RETRY_AFTER_CAP_S) * 1000u;
    uint64_t base = (uint64_t)w->retry_initial * 1000u;
    uint64_t cap = (uint64_t)w->retry_max * 1000u;
    for (uint32_t i = 1; i < failures && base < cap; i++)
        base *= 2;
    if (base > cap)
        base = cap;
    /* Jitter spreads endpoints that failed together (a receiver outage)
     * so they do not all come back in the same second. */
    uint64_t jittered = base * (750u + random % 500u) / 1000u;
    if (jittered > cap)
        jittered = cap;
    return jittered > UINT32_MAX ? UINT32_MAX : (uint32_t)jittered;
}

/*
 * Request rate limits of the push listener: token buckets per client
 * address and one for the whole listener.
 *
 * Why a fixed table: the listener faces the internet, so the set of
 * addresses is unbounded and must not grow memory. Addresses hash into
 * RATE_SLOTS slots; a new address in a taken slot replaces its owner with
 * a full bucket. That can only let a client through early (never block
 * an innocent one), and the listener's total bucket still bounds what
 * all clients together get.
 *
 * Buckets count in thousandths of a request so that the refill of a
 * single millisecond is not rounded away at low rates.
 */
#include <stdlib.h>
#include <string.h>

#include "http/http_private.h"
#include "util/util.h"

#define RATE_SLOTS 1024
#define MILLI 1000u

typedef struct bucket {
    uint64_t level; /* thousandths of a request */
    int64_t last_ms;
} bucket;

typedef struct client_slot {
    char addr[64];
    bucket b;
} client_slot;

struct mph_rate {
    uint32_t per_client, total; /* requests per second, = burst */
    bucket all;
    client_slot slots[RATE_SLOTS];
};

mph_rate *mph_rate_new(uint32_t per_client, uint32_t total)
{
    mph_rate *rate = mpu_calloc(1, sizeof(*rate));
    rate->per_client = per_client > 0 ? per_client : 1;
    rate->total = total > 0 ? total : 1;
    rate->all.level = (uint64_t)rate->total * MILLI;
    rate->all.last_ms = -1;
    return rate;
}

void mph_rate_free(mph_rate **rate)
{
    free(*rate);
    *rate = NULL;
}

/* Refills b for the time since its last use (per_s requests a second, at
 * most per_s held) and returns how long until one whole request is in. */
static uint64_t refill(bucket *b, uint32_t per_s, int64_t now_ms)
{
    uint64_t cap = (uint64_t)per_s * MILLI;
    if (b->last_ms >= 0 && now_ms > b->last_ms) {
        /* per_s requests per second = per_s thousandths per millisecond */
        uint64_t add = (uint64_t)(now_ms - b->last_ms) * per_s;
        b->level = add >= cap - b->level ? cap : b->level + add;
    }
    if (b->last_ms < 0 || now_ms > b->last_ms)
        b->last_ms = now_ms;
    if (b->level >= MILLI)
        return 0;
    return (MILLI - b->level + per_s - 1) / per_s;
}

static uint32_t hash_addr(const char *addr)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)addr; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

uint64_t mph_rate_take(mph_rate *rate, const char *addr, int64_t now_ms)
{
    client_slot *slot = &rate->slots[hash_addr(addr) % RATE_SLOTS];
    if (strcmp(slot->addr, addr) != 0) {
        mpu_strlcpy(slot->addr, addr, sizeof(slot->addr));
        slot->b.level = (uint64_t)rate->per_client * MILLI;
        slot->b.last_ms = now_ms;
    }
    uint64_t wait_client = refill(&slot->b, rate->per_client, now_ms);
    uint64_t wait_all = refill(&rate->all, rate->total, now_ms);
    if (wait_client > 0 || wait_all > 0)
        return wait_client > wait_all ? wait_client : wait_all;
    slot->b.level -= MILLI;
    rate->all.level -= MILLI;
    return 0;
}

/*
 * Ring of slots plus a chained hash whose chains link slot indices, so the
 * whole set is three allocations sized at creation and never grows: a
 * flood of distinct ids costs the same memory as a quiet day. The ids come
 * from pushes whose OIDC token already verified, so the hash (FNV-1a with
 * a per-set random basis from OpenSSL) needs no defence beyond that.
 */
#include "gmail_dedupe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#define NIL UINT32_MAX
#define CAPACITY_MAX (1u << 20)

typedef struct {
    char id[GMAIL_DEDUPE_ID_MAX + 1];
    uint32_t next; /* next slot in the same bucket */
    uint32_t bucket;
} slot;

struct gmail_dedupe {
    size_t capacity;
    size_t count;
    size_t head; /* next slot to (over)write: the oldest once full */
    uint64_t basis;
    uint32_t mask; /* buckets - 1 */
    uint32_t *buckets;
    slot *slots;
};

static uint32_t bucket_of(const gmail_dedupe *d, const char *id)
{
    uint64_t h = d->basis;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return (uint32_t)(h ^ (h >> 32)) & d->mask;
}

gmail_dedupe *gmail_dedupe_new(size_t capacity)
{
    if (capacity == 0)
        capacity = GMAIL_DEDUPE_DEFAULT_CAPACITY;
    if (capacity > CAPACITY_MAX)
        return NULL;
    gmail_dedupe *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    uint32_t buckets = 1;
    while (buckets < 2 * capacity)
        buckets <<= 1;
    d->capacity = capacity;
    d->mask = buckets - 1;
    d->buckets = malloc(buckets * sizeof(*d->buckets));
    d->slots = calloc(capacity, sizeof(*d->slots));
    if (!d->buckets || !d->slots) {
        gmail_dedupe_free(&d);
        return NULL;
    }
    for (uint32_t i = 0; i < buckets; i++)
        d->buckets[i] = NIL;
    if (RAND_bytes((unsigned char *)&d->basis, sizeof(d->basis)) != 1)
        d->basis = 0xcbf29ce484222325ull; /* FNV offset basis */
    return d;
}

void gmail_dedupe_free(gmail_dedupe **d_p)
{
    if (!d_p || !*d_p)
        return;
    gmail_dedupe *d = *d_p;
    *d_p = NULL;
    free(d->buckets);
    free(d->slots);
    free(d);
}

static bool valid_id(const char *id)
{
    return id && *id && strnlen(id, GMAIL_DEDUPE_ID_MAX + 1) <= GMAIL_DEDUPE_ID_MAX;
}

bool gmail_dedupe_contains(const gmail_dedupe *d, const char *id)
{
    if (!valid_id(id))
        return false;
    for (uint32_t i = d->buckets[bucket_of(d, id)]; i != NIL; i = d->slots[i].next) {
        if (strcmp(d->slots[i].id, id) == 0)
            return true;
    }
    return false;
}

static void unlink_slot(gmail_dedupe *d, uint32_t idx)
{
    uint32_t *link = &d->buckets[d->slots[idx].bucket];
    while (*link != idx)
        link = &d->slots[*link].next;
    *link = d->slots[idx].next;
}

int gmail_dedupe_add(gmail_dedupe *d, const char *id)
{
    if (!valid_id(id))
        return -1;
    if (gmail_dedupe_contains(d, id))
        return 0;
    uint32_t idx = (uint32_t)d->head;
    if (d->count == d->capacity)
        unlink_slot(d, idx); /* forget the oldest */
    else
        d->count++;
    slot *s = &d->slots[idx];
    memcpy(s->id, id, strlen(id) + 1);
    s->bucket = bucket_of(d, id);
    s->next = d->buckets[s->bucket];
    d->buckets[s->bucket] = idx;
    d->head = (d->head + 1) % d->capacity;
    return 1;
}

size_t gmail_dedupe_count(const gmail_dedupe *d)
{
    return d->count;
}

/* String-keyed chained hash table; see table.h. */
#include "sched/table.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

struct mpj_table_entry {
    char *key;
    void *value;
    uint64_t hash;
    mpj_table_entry *next;
};

/* FNV-1a: keys are short account ids, not attacker-chosen at runtime
 * (they come from the configuration). */
static uint64_t hash_key(const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h;
}

void mpj_table_init(mpj_table *t)
{
    t->buckets = NULL;
    t->nbuckets = t->count = 0;
}

void mpj_table_clear(mpj_table *t, void (*free_value)(void *value))
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        mpj_table_entry *e = t->buckets[i];
        while (e) {
            mpj_table_entry *next = e->next;
            if (free_value)
                free_value(e->value);
            free(e->key);
            free(e);
            e = next;
        }
    }
    mpu_freep(&t->buckets);
    t->nbuckets = t->count = 0;
}

static mpj_table_entry **find_slot(const mpj_table *t, const char *key, uint64_t h)
{
    if (!t->nbuckets)
        return NULL;
    mpj_table_entry **slot = &t->buckets[h & (t->nbuckets - 1)];
    while (*slot && ((*slot)->hash != h || strcmp((*slot)->key, key) != 0))
        slot = &(*slot)->next;
    return slot;
}

static void grow(mpj_table *t)
{
    size_t n = t->nbuckets ? t->nbuckets * 2 : 16;
    mpj_table_entry **buckets = mpu_calloc(n, sizeof *buckets);
    for (size_t i = 0; i < t->nbuckets; i++) {
        mpj_table_entry *e = t->buckets[i];
        while (e) {
            mpj_table_entry *next = e->next;
            e->next = buckets[e->hash & (n - 1)];
            buckets[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
    t->nbuckets = n;
}

void *mpj_table_get(const mpj_table *t, const char *key)
{
    mpj_table_entry **slot = find_slot(t, key, hash_key(key));
    return slot && *slot ? (*slot)->value : NULL;
}

void mpj_table_put(mpj_table *t, const char *key, void *value)
{
    uint64_t h = hash_key(key);
    mpj_table_entry **slot = find_slot(t, key, h);
    if (slot && *slot) {
        (*slot)->value = value;
        return;
    }
    if (t->count >= t->nbuckets)
        grow(t);
    mpj_table_entry *e = mpu_malloc(sizeof *e);
    e->key = mpu_strdup(key);
    e->value = value;
    e->hash = h;
    e->next = t->buckets[h & (t->nbuckets - 1)];
    t->buckets[h & (t->nbuckets - 1)] = e;
    t->count++;
}

void *mpj_table_del(mpj_table *t, const char *key)
{
    mpj_table_entry **slot = find_slot(t, key, hash_key(key));
    if (!slot || !*slot)
        return NULL;
    mpj_table_entry *e = *slot;
    void *value = e->value;
    *slot = e->next;
    free(e->key);
    free(e);
    t->count--;
    return value;
}

void mpj_table_each(const mpj_table *t, void (*fn)(void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (mpj_table_entry *e = t->buckets[i]; e; e = e->next)
            fn(e->value, arg);
}

size_t mpj_table_count(const mpj_table *t)
{
    return t->count;
}

/*
 * String-keyed hash table (chained, grows at load 1) mapping to caller
 * pointers. Keys are copied; values are not owned. Loop-thread only.
 */
#ifndef MP_SCHED_TABLE_H
#define MP_SCHED_TABLE_H

#include <stddef.h>

typedef struct mpj_table_entry mpj_table_entry;

typedef struct mpj_table {
    mpj_table_entry **buckets;
    size_t nbuckets, count;
} mpj_table;

void mpj_table_init(mpj_table *t);
/* Frees the table's own memory; free_value (may be NULL) gets each value. */
void mpj_table_clear(mpj_table *t, void (*free_value)(void *value));

void *mpj_table_get(const mpj_table *t, const char *key);
/* Inserts or replaces. */
void mpj_table_put(mpj_table *t, const char *key, void *value);
/* Returns the removed value, or NULL. */
void *mpj_table_del(mpj_table *t, const char *key);
/* Calls fn for every value; fn must not change the table. */
void mpj_table_each(const mpj_table *t, void (*fn)(void *value, void *arg), void *arg);
size_t mpj_table_count(const mpj_table *t);

#endif

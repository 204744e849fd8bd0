/*
 * A bounded set of recently handled Pub/Sub messageIds, so a redelivered
 * push is acknowledged without a second hint or sync (P§2.1: messageId is
 * for dedupe only; P§2.3: duplicates happen).
 *
 * It remembers the last `capacity` ids added; adding one more forgets the
 * oldest (insertion order, a ring). Lookups and adds are O(1) on average
 * (chained hash over the ring's slots).
 *
 * Intended use: after the token and envelope are verified, answer 2xx at
 * once if gmail_dedupe_contains(); otherwise persist the hint and only
 * then gmail_dedupe_add(), so a push whose hint failed to persist is not
 * mistaken for a duplicate when Pub/Sub redelivers it.
 *
 * Threads: none of its own; the owner serializes calls (the driver uses it
 * on the loop thread only). Ownership: ids are copied in.
 */
#ifndef GMAIL_DEDUPE_H
#define GMAIL_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>

/* Longest id stored (the envelope parser enforces the same bound). */
#define GMAIL_DEDUPE_ID_MAX 128
#define GMAIL_DEDUPE_DEFAULT_CAPACITY 4096

typedef struct gmail_dedupe gmail_dedupe;

/* capacity 0 means GMAIL_DEDUPE_DEFAULT_CAPACITY; at most 1 << 20.
 * NULL on allocation failure or a larger capacity. */
gmail_dedupe *gmail_dedupe_new(size_t capacity);
/* Accepts NULL and *d_p == NULL; clears *d_p. */
void gmail_dedupe_free(gmail_dedupe **d_p);

/* True if `id` is among the remembered ids. */
bool gmail_dedupe_contains(const gmail_dedupe *d, const char *id);

/* Remember `id`. Returns 1 if added, 0 if it was already there (nothing
 * changes: its place in the eviction order stays), -1 if id is NULL, empty
 * or longer than GMAIL_DEDUPE_ID_MAX. */
int gmail_dedupe_add(gmail_dedupe *d, const char *id);

/* How many ids are remembered (at most the capacity). */
size_t gmail_dedupe_count(const gmail_dedupe *d);

#endif

/*
 * The X-EE-Wh-Event-Id values of recently accepted webhooks, so a retried
 * delivery (EE retries up to 10 times with the same id) records nothing a
 * second time. Bounded: it remembers the last EE_DEDUPE_CAP ids added; one
 * more forgets the oldest (a ring). Lookup is a scan of the ring: a few
 * microseconds at this size, well inside push_verify's budget.
 *
 * Threads: none of its own; the owner serializes calls (the driver uses it
 * on the loop thread only). Ids are copied in.
 */
#ifndef EE_DEDUPE_H
#define EE_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>

#define EE_DEDUPE_CAP 2048
#define EE_DEDUPE_ID_MAX 96 /* EE sends UUIDs (36 chars)                  */

typedef struct ee_dedupe ee_dedupe;

ee_dedupe *ee_dedupe_new(void); /* NULL on allocation failure            */
void ee_dedupe_free(ee_dedupe **d_p); /* accepts NULL and *d_p NULL     */
bool ee_dedupe_contains(const ee_dedupe *d, const char *id);
/* 1 added, 0 already there, -1 NULL, empty or longer than the max. */
int ee_dedupe_add(ee_dedupe *d, const char *id);
size_t ee_dedupe_count(const ee_dedupe *d);

#endif

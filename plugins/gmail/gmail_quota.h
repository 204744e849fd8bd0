/*
 * gmail_quota: the per-user quota budget, so the driver stays under Gmail's
 * limit by itself instead of learning it from 429s.
 *
 * Gmail charges every call units by method (providers.md §2 "Quota") and
 * allows 15,000 units per user per minute (a batch of n calls costs n
 * calls). The budget keeps the units spent in the last minute in 100 ms
 * buckets; a call is admitted when its units fit, otherwise the caller is
 * told how long until they do. A Retry-After from Google closes the budget
 * until then, for every caller of the account (sync and fetch alike).
 *
 * Pure and single-threaded: the caller serializes access (gmail_http.c holds
 * the account's lock). Times are ms since the epoch from the caller's clock.
 */
#ifndef GMAIL_QUOTA_H
#define GMAIL_QUOTA_H

#include <stdint.h>

#define GMAIL_QUOTA_PER_MINUTE 15000u
#define GMAIL_QUOTA_WINDOW_MS 60000
#define GMAIL_QUOTA_BUCKET_MS 100
/* Google counts a call when it arrives, a little after we admit it, so a
 * unit is held this much longer than the window before it is free again. */
#define GMAIL_QUOTA_GRACE_MS 1000
/* Enough buckets that a slot's previous bucket has expired when reused. */
#define GMAIL_QUOTA_BUCKETS                                                   \
    ((GMAIL_QUOTA_WINDOW_MS + GMAIL_QUOTA_GRACE_MS) / GMAIL_QUOTA_BUCKET_MS + 2)

/* Units per method (providers.md §2). */
#define GMAIL_UNITS_MESSAGES_GET 5u
#define GMAIL_UNITS_MESSAGES_LIST 5u
#define GMAIL_UNITS_HISTORY_LIST 2u
#define GMAIL_UNITS_LABELS_LIST 1u
#define GMAIL_UNITS_GET_PROFILE 1u

typedef struct gmail_quota {
    uint32_t limit;                        /* units per window              */
    int64_t start[GMAIL_QUOTA_BUCKETS];    /* bucket start time, 0 = empty  */
    uint32_t units[GMAIL_QUOTA_BUCKETS];
    int64_t closed_until;                  /* Retry-After from Google       */
} gmail_quota;

/* An empty budget of `limit` units per minute (0: GMAIL_QUOTA_PER_MINUTE). */
void gmail_quota_init(gmail_quota *q, uint32_t limit);

/* Admit a call of `units` at `now`: returns 0 and charges the units, or
 * the ms until the call could be admitted (nothing charged). A call larger
 * than the whole limit is admitted into an empty window only. */
int64_t gmail_quota_take(gmail_quota *q, int64_t now, uint32_t units);

/* Units charged in the window ending at `now`. */
uint32_t gmail_quota_used(const gmail_quota *q, int64_t now);

/* Google said wait: no call is admitted before `until`. */
void gmail_quota_close(gmail_quota *q, int64_t until);

#endif /* GMAIL_QUOTA_H */

/*
 * Body-cache warming ("prefetch"): an accelerator, never a dependency.
 * GET /v1/messages/{id}/raw works the same whether a body was warmed or not
 * (cache first, else fetched on demand).
 *
 * Two things feed an in-memory queue:
 *   - new mail, at HIGH priority, the moment a sync commits it (a warming
 *     run follows about a second later);
 *   - a listing through the API: the newest cache.prefetch_count messages
 *     of the page that are not cached yet, at NORMAL priority.
 * A warming run (every cache.prefetch_interval seconds, and after new mail)
 * takes at most cache.prefetch_per_run entries per account, HIGH before
 * NORMAL and FIFO within a priority, and gives each account's share to the
 * scheduler as one job of that account (class WARM, under the worker
 * caps), which fetches them one at a time through the driver into the
 * cache (with the retention expiry). One share per account at a time; an
 * account still busy gets its entries back for a later run, and so do the
 * rest of a share after a fetch slower than 5 s or when a fetch on demand
 * holds the account's fetch lock. A message already cached or deleted is
 * skipped; a message gone at the provider (MP_SKIP) and a failed fetch drop
 * the entry (counted).
 *
 * Not a public interface: the daemon's files only.
 */
#ifndef MP_DAEMON_PREFETCH_H
#define MP_DAEMON_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

#include "store/store.h"

typedef struct mpd mpd;

typedef enum mpd_pf_prio {
    MPD_PF_HIGH = 0,   /* new mail                                          */
    MPD_PF_NORMAL = 1, /* listed through the API                            */
} mpd_pf_prio;

/* ---- the queue (prefetch_queue.c) ----
 * Entries (account, public message id, priority, enqueued time), unique by
 * id. Internally locked: every function may be called from any thread. */

typedef struct mpd_pfq mpd_pfq;

typedef struct mpd_pf_item {
    char account[65];
    char id[26];
    mpd_pf_prio prio;
    int64_t enqueued_ms;
} mpd_pf_item;

mpd_pfq *mpd_pfq_new(void);
void mpd_pfq_free(mpd_pfq **q);
/* Queue `id` of `account`. An id already queued keeps its place, unless it
 * was NORMAL and now comes as HIGH: then it moves to the end of the HIGH
 * entries. When the queue then holds more than `max` entries, the oldest
 * NORMAL entry is dropped (the oldest HIGH one when there is no NORMAL).
 * Returns 1 queued, 2 upgraded, 0 already queued, -1 invalid arguments
 * (account longer than 64 bytes, id longer than 25, max 0). */
int mpd_pfq_push(mpd_pfq *q, const char *account, const char *id, mpd_pf_prio prio,
                 size_t max, int64_t now_ms);
/* Remove and return up to `per_account` entries of each account (HIGH
 * first, FIFO within a priority), interleaved round-robin: one entry of
 * every account, then a second one of each, ...; the account served first
 * rotates from one call to the next. *items_r is allocated (free()) or
 * NULL when nothing was taken. Returns the count. */
size_t mpd_pfq_take(mpd_pfq *q, size_t per_account, mpd_pf_item **items_r);
/* Entries queued now, and dropped over the queue's life. */
size_t mpd_pfq_len(mpd_pfq *q);
uint64_t mpd_pfq_dropped(mpd_pfq *q);

/* ---- one body through the driver into the cache (fetch.c) ---- */

/* Worker thread. Looks the account up (taking a reference), fetches under
 * the account's fetch_lock (one fetch at a time per account, as the driver
 * contract requires) and caches the bytes with the retention expiry.
 * Returns 200 (raw_r filled; the caller frees raw_r->data), 404 (the
 * provider no longer has it: MP_SKIP), 502 (driver error), 503 (account
 * not active) or, with wait 0, 409 when another fetch of the account holds
 * the lock; with an allocated *error_r when not 200. */
int mpd_fetch_body(mpd *d, const mps_message *msg, mp_raw *raw_r, int wait,
                   char **error_r);

/* Loop thread. Fetch msg's body (not cached) for a GET /raw: one fetch per
 * account in the pool at a time (MPJ_CLASS_FETCH), requests for the same
 * message share it, at most cache.fetch_queue_max others wait per account
 * (beyond: cb with 503). cb runs once on the loop thread: with the fetch's
 * result, or 504 after cache.fetch_timeout seconds (the fetch goes on and
 * caches the body), or 503 when the account is not scheduled. Takes *msg
 * (cleared). */
typedef void (*mpd_fetch_cb)(int status, const uint8_t *data, size_t len,
                             const char *error, void *arg);
void mpd_fetch_on_demand(mpd *d, mps_message *msg, mpd_fetch_cb cb, void *arg);
/* Loop thread, after the scheduler was freed (every fetch answered). */
void mpd_fetch_free(mpd *d);

/* ---- the warmer (prefetch.c) ---- */

/* Loop thread, after the scheduler exists: the periodic warming job. */
void mpd_prefetch_start(mpd *d);
/* Loop thread, at shutdown before the scheduler is freed: a running warm-up
 * ends after its current fetch, no new one starts. */
void mpd_prefetch_stop(mpd *d);
/* Loop thread, after the scheduler was freed (no job runs any more). */
void mpd_prefetch_free(mpd *d);

/* Any thread: a sync committed new mail `id` of `account` (HIGH). */
void mpd_prefetch_new_mail(mpd *d, const char *account, const char *id);
/* Loop thread: a page of messages was listed (newest first); queue those
 * of its first cache.prefetch_count that are not cached (NORMAL). */
void mpd_prefetch_listed(mpd *d, const mps_message *list, size_t n);

typedef struct mpd_prefetch_stats {
    size_t queued;          /* entries waiting                              */
    uint64_t dropped;       /* entries dropped because the queue was full   */
    uint64_t runs;          /* warming runs                                 */
    uint64_t fetched;       /* bodies fetched and cached                    */
    uint64_t failed;        /* fetches that failed                          */
    uint64_t skipped;       /* already cached, deleted, or gone at provider */
} mpd_prefetch_stats;

/* Any thread. Zeros when the warmer is not started. */
void mpd_prefetch_stats_get(mpd *d, mpd_prefetch_stats *stats_r);

#endif

/*
 * Pure helpers of imap.so's sync (no host calls, no network): cursor and
 * id formats, the strategy and push choice from a capability profile,
 * folder roles, flag lists, UID ranges and the UIDVALIDITY re-map match.
 * Unit tests compile imap_strategy.c directly.
 *
 * Formats (opaque to the core):
 *   delta cursor     "v1:<uidvalidity>:<uidnext>:<highestmodseq>"
 *   backfill pos     "v1:<uidvalidity>:<lowest uid loaded>"
 *   message id       "<folder>;<uidvalidity>;<uid>" (folder may hold ';')
 */
#ifndef MP_IMAP_STRATEGY_H
#define MP_IMAP_STRATEGY_H

#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

/* Allocation that aborts on exhaustion, like the host's own policy. */
void *imap_xcalloc(size_t n, size_t size);
void *imap_xrealloc(void *ptr, size_t n, size_t size);
char *imap_xstrdup(const char *s); /* NULL -> NULL */
char *imap_xasprintf(const char *fmt, ...) MP_PRINTF(1, 2);

/* ---- cursors and ids ---- */

typedef struct imap_cursor {
    uint32_t uidvalidity;
    uint32_t uidnext; /* 0: unknown                                     */
    uint64_t modseq;  /* 0: no CONDSTORE                                */
} imap_cursor;

/* 0, or -1 when `s` is NULL or not exactly the v1 format. */
int imap_cursor_parse(const char *s, imap_cursor *cursor_r);
char *imap_cursor_format(const imap_cursor *c); /* allocated */

/* Backfill position; 0 or -1. */
int imap_pos_parse(const char *s, uint32_t *uidvalidity_r, uint32_t *lowest_r);
char *imap_pos_format(uint32_t uidvalidity, uint32_t lowest); /* allocated */

char *imap_id_format(const char *folder, uint32_t uidvalidity, uint32_t uid);
/* Split an id from its end. *folder_r is allocated (may be NULL). 0 or -1. */
int imap_id_parse(const char *id, char **folder_r, uint32_t *uidvalidity_r,
                  uint32_t *uid_r);

/* ---- strategy ---- */

typedef enum imap_strategy {
    IMAP_STRATEGY_PLAIN = 0,     /* UIDNEXT + periodic full UID/flag scan   */
    IMAP_STRATEGY_CONDSTORE = 1, /* CHANGEDSINCE + periodic UID set compare */
    IMAP_STRATEGY_QRESYNC = 2,   /* SELECT (QRESYNC ...): VANISHED + flags  */
} imap_strategy;

typedef enum imap_push_kind {
    IMAP_PUSHK_POLL = 0,
    IMAP_PUSHK_IDLE = 1,
    IMAP_PUSHK_NOTIFY = 2,
} imap_push_kind;

/* From capability bits and the ENABLED set of the connection: QRESYNC only
 * when the server confirmed it (ENABLE QRESYNC), CONDSTORE when offered. */
imap_strategy imap_strategy_choose(uint32_t caps, uint32_t enabled);
const char *imap_strategy_name(imap_strategy s);
/* push_mode is imap_push_mode (imap_driver.h) as int. */
imap_push_kind imap_push_choose(int push_mode, uint32_t caps);
const char *imap_push_name(imap_push_kind k);

/* The slower cadence of full comparisons (expunges without QRESYNC, plain
 * flag scans): due when never done or `interval_ms` has passed. */
#define IMAP_SCAN_INTERVAL_MS (15 * 60 * 1000)
int imap_scan_due(int64_t last_ms, int64_t now_ms, int64_t interval_ms);

/* ---- folders ---- */

/* Role from LIST attributes (space-separated, e.g. "\HasNoChildren \Sent")
 * and the decoded name; the attribute wins, names are a fallback for
 * servers without SPECIAL-USE. */
mp_folder_role imap_folder_role(const char *attrs, const char *name);
/* \Noselect or \NonExistent: not a folder that holds messages. */
int imap_folder_selectable(const char *attrs);

/* ---- flags ---- */

/* Normalized flag string: sorted by strcmp, duplicates and \Recent (a
 * session artefact) dropped, space-separated. Input: array of words. */
char *imap_flags_join(const char *const *words, size_t n);
/* Same set of words, order-insensitive (NULL == ""). */
int imap_flags_equal(const char *a, const char *b);

/* ---- UID ranges (sequence-set text, never expanded) ---- */

typedef struct imap_range {
    uint32_t lo, hi;
} imap_range;

/* Parse "1:5,7,9:*" (star_value substitutes '*'); ranges are normalized
 * (lo <= hi), sorted and merged. 0 or -1. *ranges_r allocated. */
int imap_ranges_parse(const char *s, uint32_t star_value, imap_range **ranges_r,
                      size_t *n_r);
/* Sort and merge ranges (lo <= hi each) in place; returns the new count. */
size_t imap_ranges_normalize(imap_range *r, size_t n);
int imap_ranges_contain(const imap_range *r, size_t n, uint32_t uid);
/* Number of UIDs covered (saturating). */
uint64_t imap_ranges_count(const imap_range *r, size_t n);

/* Compact text of a sorted ascending UID array slice: "3:7,9". */
char *imap_uids_format(const uint32_t *uids, size_t n);
/* Sort ascending and drop duplicates in place; returns the new count. */
size_t imap_uids_sort_unique(uint32_t *uids, size_t n);

/* ---- UIDVALIDITY re-map ---- */

typedef struct imap_remap_key {
    const char *message_id; /* NULL when absent                            */
    int64_t size;           /* -1 unknown                                  */
    int64_t date;           /* Unix seconds, 0/-1 unknown                  */
    uint32_t uid;
} imap_remap_key;

/* Match stored messages to server messages: same Message-ID and, when both
 * sides know them, the same size and date; without a Message-ID both size
 * and date must match. Each message is matched at most once (lowest UIDs
 * first). match_r[i] receives the server index for stored[i], or -1. */
void imap_remap_match(const imap_remap_key *stored, size_t n_stored,
                      const imap_remap_key *server, size_t n_server, long *match_r);

#endif

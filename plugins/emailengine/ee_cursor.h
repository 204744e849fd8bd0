/*
 * A folder's delta cursor. EmailEngine has no change feed (no modseq, no
 * change cursor: emailengine-api.md §6), so the cursor is what the driver
 * needs to compute one cheaply:
 *   reg      the mailbox registry number in the folder's message ids (-1:
 *            not seen yet, an empty folder); a different one means the
 *            folder's UIDVALIDITY changed and every id with it;
 *   floor    the lowest UID the store covers: listing entries below it
 *            are history for backfill, never "new";
 *   messages, uid_next
 *            EE's counters from the mailbox list at the last sync (-1:
 *            unknown); unchanged counters skip the folder's full listing;
 *   swept_ms when the last complete id and flag reconciliation ran;
 *   counted_ms
 *            when the mailbox list those counters come from was fetched:
 *            a list fetched no later than that is not news for this
 *            folder, so the delta fetches a fresh one: one list serves
 *            the folders of a sync run (and at most EE_MAILBOX_REUSE_MS),
 *            a stale one can only delay a change by one run.
 * Text "ee1 <reg> <floor> <messages> <uid_next> <swept_ms> <counted_ms>".
 */
#ifndef EE_CURSOR_H
#define EE_CURSOR_H

#include <stddef.h>
#include <stdint.h>

typedef struct ee_cursor {
    int64_t reg;
    uint32_t floor;
    int64_t messages;
    int64_t uid_next;
    int64_t swept_ms;
    int64_t counted_ms;
} ee_cursor;

#define EE_CURSOR_MAX 128

/* 0, or -1 when `s` is not a cursor this driver wrote. */
int ee_cursor_parse(const char *s, ee_cursor *c);
void ee_cursor_format(const ee_cursor *c, char out[EE_CURSOR_MAX]);

/* Backfill position: the exclusive UID bound, "uid:<n>". */
int ee_backfill_parse(const char *s, uint32_t *below_r);
void ee_backfill_format(uint32_t below, char out[32]);

#endif

/*
 * gmail_history: one history.list page (providers.md §2) folded into the net
 * effect on each message it touches, in the order messages first appear.
 *
 * Records are in ascending history id. Per message: messageAdded marks it
 * new (its metadata is fetched later, with its labels as they are then);
 * messageDeleted marks it gone (whatever came before); labelAdded and
 * labelRemoved are netted (removed then added again is no change); the
 * labelIds Gmail attaches to the record's message are its full label set at
 * that record, kept from the last record that carries them.
 * Pure: no host, no network.
 */
#ifndef GMAIL_HISTORY_H
#define GMAIL_HISTORY_H

#include <stddef.h>

typedef struct gmail_strv {
    char **v;
    size_t n;
} gmail_strv;

typedef struct gmail_hop {
    char *id;
    int added;             /* messageAdded seen (and not deleted)          */
    int deleted;           /* messageDeleted seen                          */
    gmail_strv plus;       /* labels net added                             */
    gmail_strv minus;      /* labels net removed                           */
    int has_labels;        /* `labels` is known                             */
    gmail_strv labels;     /* full label set at the last record            */
} gmail_hop;

typedef struct gmail_history {
    gmail_hop *v;
    size_t n, cap;
    char *history_id;      /* the answer's historyId (last page: the cursor) */
    char *next_page;       /* nextPageToken or NULL                        */
    char *last_record;     /* id of the page's last record, or NULL        */
    size_t records;        /* records on the page                          */
} gmail_history;

/* Fold one page into `h` (ops accumulate; history_id, next_page,
 * last_record and records describe this page). Returns 0, or -1 with
 * *error_r (malloc'd) when the page is malformed; h is unchanged then. */
int gmail_history_page(gmail_history *h, const char *json, size_t len, char **error_r);

/* Drop the accumulated ops (keeps nothing). */
void gmail_history_clear(gmail_history *h);

#endif /* GMAIL_HISTORY_H */

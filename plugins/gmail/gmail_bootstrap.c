/*
 * bootstrap and backfill: the newest messages of one label, then older
 * ones page by page.
 *
 * messages.list gives ids newest first; their metadata comes through the
 * batch endpoint (with sync.fetch_bodies, the raw messages after it); each
 * message is emitted once with all its folder labels
 * (a message in INBOX and "Work" is one stored message in two folders).
 * The page token after the last message loaded is the backfill position.
 *
 * The folder cursor bootstrap commits only marks the folder connected:
 * changes come from the account's history (gmail_delta.c). The first
 * bootstrap of an account also commits that account cursor, the historyId
 * read from getProfile BEFORE listing, so a change made while we list is
 * in the history after it (and folds into what was stored, if listed).
 */
#include "gmail_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most one messages.list page may hold (Gmail's own maximum). */
#define LIST_PAGE_MAX 500u

/* The label id of `folder`, refreshing the table once if unknown. */
static mp_status folder_label(gmail_account *a, const char *folder, const char **label_r,
                              mp_error *err)
{
    mp_status st = gmail_labels_ready(a, 0, err);
    if (st != MP_OK)
        return st;
    *label_r = gmail_folder_label(a, folder);
    if (*label_r == NULL) {
        st = gmail_labels_ready(a, 1, err);
        if (st != MP_OK)
            return st;
        *label_r = gmail_folder_label(a, folder);
    }
    if (*label_r == NULL)
        return mp_fail(err, MP_RETRY, "folder \"%s\": no such Gmail label any more", folder);
    return MP_OK;
}

/* Metadata for one page of ids, emitted as SYNCED. */
static mp_status load_page(gmail_account *a, mp_batch *batch, char **ids, size_t n,
                           mp_error *err)
{
    if (n == 0)
        return MP_OK;
    gmail_msg *msgs = calloc(n, sizeof *msgs);
    int *gone = calloc(n, sizeof *gone);
    if (msgs == NULL || gone == NULL)
        abort();
    mp_status st = gmail_get_metadata(a, (const char *const *)ids, n, msgs, gone, err);
    if (st == MP_OK) /* sync.fetch_bodies: the bodies come with them */
        st = gmail_get_bodies(a, msgs, gone, n, err);
    for (size_t i = 0; i < n && st == MP_OK; i++)
        if (!gone[i]) /* deleted since it was listed */
            st = gmail_emit_message(a, batch, MP_CHANGE_SYNCED, &msgs[i], err);
    for (size_t i = 0; i < n; i++)
        gmail_msg_clear(&msgs[i]);
    free(msgs);
    free(gone);
    return st;
}

/* Load up to `max` messages of `label` from `token` (NULL: the newest),
 * committing after each page; *next_r is the position after the last one
 * loaded (NULL: nothing older). Stops early at the batch deadline when
 * `use_deadline`. */
static mp_status load(gmail_account *a, mp_batch *batch, const char *label, const char *token,
                      uint32_t max, int use_deadline, char **next_r, mp_error *err)
{
    *next_r = token != NULL ? strdup(token) : NULL;
    if (token != NULL && *next_r == NULL)
        abort();
    uint32_t left = max;
    int64_t deadline = use_deadline ? gmail_host->batch_deadline_ms(batch) : 0;
    int first = 1, restarted = 0;
    while (left > 0 && (first || *next_r != NULL)) {
        if (!first && deadline > 0 && gmail_host->now_ms() >= deadline)
            break;
        char **ids = NULL, *next = NULL;
        size_t n = 0;
        uint32_t want = left < LIST_PAGE_MAX ? left : LIST_PAGE_MAX;
        mp_status st = gmail_list_messages(a, label, *next_r, want, &ids, &n, &next, err);
        if (st == MP_SKIP && *next_r != NULL && !restarted) {
            /* A stale position: walk again from the newest; what is stored
             * already folds in without events, and the walk goes on past it. */
            gmail_host->log(gmail_host->account_instance(a->acct), a->acct, MP_LOG_WARNING,
                            "%s; backfill starts again from the newest", err->text);
            memset(err, 0, sizeof *err);
            free(*next_r);
            *next_r = NULL;
            restarted = first = 1;
            continue;
        }
        if (st != MP_OK)
            return st;
        st = load_page(a, batch, ids, n, err);
        gmail_free_ids(ids, n);
        if (st != MP_OK) {
            free(next);
            return st;
        }
        free(*next_r);
        *next_r = next;
        left = n >= left ? 0 : left - (uint32_t)n;
        first = 0;
        if (n == 0)
            break;
        /* Checkpoint: a long load keeps what it has if interrupted. */
        if (left > 0 && *next_r != NULL) {
            st = gmail_host->batch_commit(batch, NULL, use_deadline ? *next_r : NULL, 0, err);
            if (st != MP_OK)
                return st;
        }
    }
    return MP_OK;
}

mp_status gmail_bootstrap(mp_account *acct, const char *folder, uint32_t max, mp_batch *batch,
                          mp_error *err)
{
    gmail_account *a = gmail_host->account_state(acct);
    const char *label = NULL;
    mp_status st = folder_label(a, folder, &label, err);
    if (st != MP_OK)
        return st;
    const char *have = gmail_host->account_cursor(acct);
    char *history_id = NULL;
    if (have == NULL) {
        st = gmail_get_profile(a, &history_id, err);
        if (st != MP_OK)
            return st;
    } else {
        history_id = strdup(have);
        if (history_id == NULL)
            abort();
    }
    char *next = NULL;
    if (max > 0)
        st = load(a, batch, label, NULL, max, 0, &next, err);
    if (st == MP_OK) {
        if (have == NULL)
            gmail_host->batch_account_cursor(batch, history_id);
        /* from-now-on mode (max 0) has no history to backfill either. */
        st = gmail_host->batch_commit(batch, history_id, next, next == NULL, err);
    }
    free(next);
    free(history_id);
    return st;
}

mp_status gmail_backfill(mp_account *acct, const char *folder, const char *backfill_pos,
                         uint32_t max, mp_batch *batch, mp_error *err)
{
    gmail_account *a = gmail_host->account_state(acct);
    if (backfill_pos == NULL || backfill_pos[0] == '\0')
        return gmail_host->batch_commit(batch, NULL, NULL, 1, err);
    const char *label = NULL;
    mp_status st = folder_label(a, folder, &label, err);
    if (st != MP_OK)
        return st;
    char *next = NULL;
    st = load(a, batch, label, backfill_pos, max > 0 ? max : LIST_PAGE_MAX, 1, &next, err);
    if (st == MP_OK)
        st = gmail_host->batch_commit(batch, NULL, next, next == NULL, err);
    free(next);
    return st;
}

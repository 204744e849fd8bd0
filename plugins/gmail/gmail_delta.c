/*
 * account_delta: every change of the mailbox since the stored historyId,
 * from ONE history.list walk per sync (all four history types, paging),
 * whatever folders the run was for: Gmail's history covers the whole
 * mailbox, and the watch label only decides what triggers a push, not what
 * history returns.
 *
 * Per message (gmail_history.c nets a page): added -> its metadata through
 * the batch endpoint (and, with sync.fetch_bodies, its raw body), emitted
 * NEW with all its folder labels; deleted ->
 * DELETED; labels removed or flag labels changed -> UPDATED with the folders
 * it left and its flags; a folder label added -> its metadata again, emitted
 * SYNCED with all its folders (a stored message folds it into one
 * message.updated with folders_added/removed; one archived or never loaded
 * is stored). A move is one message.updated, never a delete plus a new. Each page is committed with the id of its last record (a
 * valid startHistoryId), the last one with the answer's historyId.
 *
 * A push can outrun history (providers.md §1 item 8): when the run carries
 * a pushed historyId newer than what history.list reports, the walk is
 * repeated a few times over a few seconds. A pushed id equal to the cursor
 * is a plain sync, not a stale push.
 */
#include "gmail_driver.h"
#include "gmail_history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define HISTORY_PAGE 500
#define HISTORY_MAX_RESPONSE (16u << 20)
/* Push outran history: wait 1 s, 2 s, 3 s before giving up this run. */
#define HINT_TRIES 3

static unsigned long long to_u64(const char *s)
{
    if (s == NULL)
        return 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    return end != s && *end == '\0' ? v : 0;
}

static void sleep_s(unsigned s)
{
    struct timespec ts = {(time_t)s, 0};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* One history.list page from `start` (with `token`). MP_RESYNC on 404. */
static mp_status history_page(gmail_account *a, const char *start, const char *token,
                              gmail_history *h, mp_error *err)
{
    char *s = curl_easy_escape(NULL, start, 0);
    char *t = token != NULL ? curl_easy_escape(NULL, token, 0) : NULL;
    if (s == NULL || (token != NULL && t == NULL))
        abort();
    size_t rl = strlen(s) + (t != NULL ? strlen(t) : 0) + 256;
    char *rest = malloc(rl);
    if (rest == NULL)
        abort();
    snprintf(rest, rl,
             "history?startHistoryId=%s&maxResults=%d&historyTypes=messageAdded"
             "&historyTypes=messageDeleted&historyTypes=labelAdded"
             "&historyTypes=labelRemoved%s%s",
             s, HISTORY_PAGE, t != NULL ? "&pageToken=" : "", t != NULL ? t : "");
    curl_free(s);
    curl_free(t);
    char *url = gmail_api_url(a, rest);
    free(rest);
    gmail_call c = {.method = "GET", .url = url, .units = GMAIL_UNITS_HISTORY_LIST,
                    .max_response = HISTORY_MAX_RESPONSE};
    mp_http_response resp;
    mp_status st = gmail_http_call(a, &c, "history.list", &resp, err);
    free(url);
    if (st == MP_SKIP)
        return mp_fail(err, MP_RESYNC, "history.list: historyId %s is no longer known"
                                       " to Gmail (404)", start);
    if (st != MP_OK)
        return st;
    char *error = NULL;
    int r = gmail_history_page(h, (const char *)resp.body, resp.body_len, &error);
    gmail_host->http_free(&resp);
    if (r < 0) {
        mp_fail(err, MP_RETRY, "%s", error);
        free(error);
        return MP_RETRY;
    }
    return MP_OK;
}

/* Folder names of the labels in `ids` that are folders; *unknown_r counts
 * labels the table does not know. Names point into the table. */
static void folder_names(const gmail_account *a, const gmail_strv *ids, const char **out,
                         size_t *n_r, size_t *unknown_r, int *flag_r)
{
    *n_r = 0;
    for (size_t i = 0; i < ids->n; i++) {
        const gmail_label *l = gmail_labels_find(&a->labels, ids->v[i]);
        if (l == NULL)
            (*unknown_r)++;
        else if (l->kind == GMAIL_LABEL_FOLDER)
            out[(*n_r)++] = l->name;
        else if (l->kind == GMAIL_LABEL_FLAG || l->kind == GMAIL_LABEL_UNREAD)
            *flag_r = 1;
    }
}

/* Labels changed, labels known: UPDATED with the folders entered and left
 * and the flags the full label set gives. */
static mp_status emit_relabel(gmail_account *a, mp_batch *batch, const gmail_hop *hop,
                              mp_error *err)
{
    const char **plus = calloc(hop->plus.n + 1, sizeof *plus);
    const char **minus = calloc(hop->minus.n + 1, sizeof *minus);
    if (plus == NULL || minus == NULL)
        abort();
    size_t np = 0, nm = 0, unknown = 0;
    int flag = 0;
    folder_names(a, &hop->plus, plus, &np, &unknown, &flag);
    folder_names(a, &hop->minus, minus, &nm, &unknown, &flag);
    mp_status st = MP_OK;
    if (np > 0 || nm > 0 || flag) {
        gmail_placement p;
        gmail_labels_place(&a->labels, (const char *const *)hop->labels.v, hop->labels.n, &p);
        mp_change ch = {.kind = MP_CHANGE_UPDATED, .id = hop->id, .size = -1, .flags = p.flags};
        mp_folders f = {
            .added = np > 0 ? plus : NULL,
            .n_added = np,
            .removed = nm > 0 ? minus : NULL,
            .n_removed = nm,
        };
        st = gmail_host->batch_change_folders(batch, &ch, &f, err);
        gmail_placement_clear(&p);
    }
    free(plus);
    free(minus);
    return st;
}

/* Whether a label-only change needs the table refreshed first. */
static int unknown_labels(const gmail_account *a, const gmail_hop *hop)
{
    const gmail_strv *sets[] = {&hop->plus, &hop->minus, &hop->labels};
    for (size_t s = 0; s < 3; s++)
        for (size_t i = 0; i < sets[s]->n; i++)
            if (gmail_labels_find(&a->labels, sets[s]->v[i]) == NULL)
                return 1;
    return 0;
}

/* Whether a label change puts the message into a folder. Such a message may
 * not be stored (archived earlier, or older than what was loaded), so it is
 * fetched and emitted whole: stored, it folds into one message.updated. */
static int enters_folder(const gmail_account *a, const gmail_hop *hop)
{
    for (size_t i = 0; i < hop->plus.n; i++) {
        const gmail_label *l = gmail_labels_find(&a->labels, hop->plus.v[i]);
        if (l != NULL && l->kind == GMAIL_LABEL_FOLDER)
            return 1;
    }
    return 0;
}

/* Emit the changes of one folded page. */
static mp_status apply(gmail_account *a, mp_batch *batch, const gmail_history *h,
                       mp_error *err)
{
    mp_status st = MP_OK;
    int refreshed = 0;
    /* Messages whose metadata is needed: new ones, and relabelled ones whose
     * record carried no label set. */
    const char **ids = calloc(h->n + 1, sizeof *ids);
    size_t *which = calloc(h->n + 1, sizeof *which);
    if (ids == NULL || which == NULL)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        const gmail_hop *hop = &h->v[i];
        if (hop->deleted)
            continue;
        if (!refreshed && unknown_labels(a, hop)) {
            st = gmail_load_labels(a, err);
            if (st != MP_OK)
                goto out;
            refreshed = 1;
        }
        if (hop->added || enters_folder(a, hop) ||
            (!hop->has_labels && (hop->plus.n > 0 || hop->minus.n > 0))) {
            which[n] = i;
            ids[n++] = hop->id;
        }
    }
    gmail_msg *msgs = NULL;
    int *gone = NULL;
    if (n > 0) {
        msgs = calloc(n, sizeof *msgs);
        gone = calloc(n, sizeof *gone);
        if (msgs == NULL || gone == NULL)
            abort();
        st = gmail_get_metadata(a, ids, n, msgs, gone, err);
        /* sync.fetch_bodies: new mail comes with its body (a relabelled
         * message is not new mail; a reader fetches it on demand). */
        int *skip = calloc(n, sizeof *skip);
        if (skip == NULL)
            abort();
        for (size_t k = 0; k < n; k++)
            skip[k] = gone[k] || !h->v[which[k]].added;
        if (st == MP_OK)
            st = gmail_get_bodies(a, msgs, skip, n, err);
        free(skip);
        if (st != MP_OK) {
            for (size_t k = 0; k < n; k++)
                gmail_msg_clear(&msgs[k]);
            free(msgs);
            free(gone);
            goto out;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < h->n && st == MP_OK; i++) {
        const gmail_hop *hop = &h->v[i];
        if (k < n && which[k] == i) {
            /* Gone meanwhile: its messageDeleted is in a later record. */
            mp_change_kind kind = hop->added           ? MP_CHANGE_NEW
                                  : enters_folder(a, hop) ? MP_CHANGE_SYNCED
                                                          : MP_CHANGE_UPDATED;
            if (!gone[k])
                st = gmail_emit_message(a, batch, kind, &msgs[k], err);
            k++;
        } else if (hop->deleted) {
            mp_change ch = {.kind = MP_CHANGE_DELETED, .id = hop->id, .size = -1};
            st = gmail_host->batch_change_folders(batch, &ch, NULL, err);
        } else if (hop->plus.n > 0 || hop->minus.n > 0) {
            st = emit_relabel(a, batch, hop, err);
        }
    }
    for (size_t i = 0; i < n; i++)
        gmail_msg_clear(&msgs[i]);
    free(msgs);
    free(gone);
out:
    free(ids);
    free(which);
    return st;
}

/* Walk history from *start to its end, applying and committing each page;
 * *start becomes the new cursor. */
static mp_status walk(gmail_account *a, mp_batch *batch, char **start, mp_error *err)
{
    char *token = NULL;
    mp_status st;
    for (;;) {
        gmail_history h;
        memset(&h, 0, sizeof h);
        st = history_page(a, *start, token, &h, err);
        if (st == MP_OK)
            st = apply(a, batch, &h, err);
        if (st != MP_OK) {
            gmail_history_clear(&h);
            break;
        }
        free(token);
        token = h.next_page != NULL ? strdup(h.next_page) : NULL;
        const char *commit = token == NULL ? h.history_id : h.last_record;
        if (commit != NULL) {
            gmail_host->batch_account_cursor(batch, commit);
            st = gmail_host->batch_commit(batch, NULL, NULL, 0, err);
        }
        if (st == MP_OK && token == NULL) {
            /* Never move the cursor backwards (a lagging replica). */
            if (to_u64(h.history_id) >= to_u64(*start)) {
                free(*start);
                *start = strdup(h.history_id);
                if (*start == NULL)
                    abort();
            }
        }
        gmail_history_clear(&h);
        if (st != MP_OK || token == NULL)
            break;
    }
    free(token);
    return st;
}

mp_status gmail_account_delta(mp_account *acct, const char *cursor, mp_batch *batch,
                              mp_error *err)
{
    gmail_account *a = gmail_host->account_state(acct);
    mp_status st = gmail_labels_ready(a, 0, err);
    if (st != MP_OK)
        return st;
    char *start = NULL;
    if (cursor != NULL && to_u64(cursor) == 0)
        return mp_fail(err, MP_RESYNC, "stored historyId \"%.40s\" is not a number", cursor);
    if (cursor == NULL) {
        /* No folder bootstrapped yet (all excluded?): start from now. */
        st = gmail_get_profile(a, &start, err);
        if (st != MP_OK)
            return st;
        gmail_host->batch_account_cursor(batch, start);
        st = gmail_host->batch_commit(batch, NULL, NULL, 0, err);
        free(start);
        return st;
    }
    start = strdup(cursor);
    if (start == NULL)
        abort();
    const char *hint = MP_HOST_HAS(gmail_host, sync_hint) ? gmail_host->sync_hint(acct, NULL)
                                                          : NULL;
    unsigned long long want = to_u64(hint);
    for (unsigned attempt = 0;; attempt++) {
        st = walk(a, batch, &start, err);
        if (st != MP_OK || want <= to_u64(start))
            break;
        if (attempt == HINT_TRIES) {
            gmail_host->log(gmail_host->account_instance(acct), acct, MP_LOG_INFO,
                            "history is at %s, behind the pushed historyId %llu; retrying"
                            " shortly", start, want);
            err->retry_after_ms = 5000;
            st = mp_fail(err, MP_RETRY, "Gmail history has not caught up with the push"
                                        " (at %s, pushed %llu)", start, want);
            break;
        }
        sleep_s(attempt + 1);
    }
    free(start);
    return st;
}

mp_status gmail_delta(mp_account *acct, const char *folder, const char *cursor,
                      mp_batch *batch, mp_error *err)
{
    (void)acct;
    (void)folder;
    (void)cursor;
    (void)batch;
    /* A 1.1 host calls account_delta instead; init refuses older hosts. */
    return mp_fail(err, MP_FATAL, "gmail.so syncs through account_delta (ABI 1.1)");
}

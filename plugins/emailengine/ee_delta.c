/*
 * delta: a folder's new, changed and removed messages since its cursor,
 * without a change feed (EmailEngine has none: emailengine-api.md §6).
 *
 * The cheapest correct delta from what EE offers:
 *  1. The newest page (EE_NEWEST_PAGE entries, one request) is compared
 *     with the store on every run: new ids are NEW, differing flags are
 *     UPDATED. That covers new mail and flag changes on recent mail.
 *  2. A full listing (EE_FULL_PAGE per request) of ids and flags against
 *     the store runs when something the newest page cannot show may have
 *     happened: EE's mailbox counters (messages, uidNext) moved since the
 *     cursor (an expunge, mail beyond the newest page), a push hint other
 *     than messageNew (a delete, a flag change on old mail, a reset), or
 *     the sweep interval (EE_SWEEP_MS) passed: that sweep catches anything
 *     a dropped webhook and unchanged counters hid. Stored messages a
 *     complete listing lacks are DELETED; a listing that shifted while it
 *     was read (its total changed, or the ids read differ from it) deletes
 *     nothing and leaves the sweep due.
 *  3. Listing ids carry the mailbox registry number that EE allocates per
 *     (UIDVALIDITY, path); another number than the cursor's is a
 *     UIDVALIDITY change: MP_RESYNC, and the host bootstraps the folder
 *     again (ee_sync.c re-keys by Message-ID) with one folder.reset.
 * Entries below the cursor's floor that the store lacks are history, left
 * to backfill; stored ones there are still compared and deleted.
 *
 * A push only says "look at this folder now"; the payload is never the
 * record (the hint is the event name, read back with sync_hint).
 */
#include "ee_driver.h"

#include <stdlib.h>
#include <string.h>

typedef struct seen_ids {
    char **v;
    size_t n, cap;
} seen_ids;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Compare one listing entry with the store and emit what it became. */
static mp_status compare(mp_batch *batch, ee_stored_set *s, const ee_msg *m, uint32_t floor,
                         size_t *changes, mp_error *err)
{
    ee_stored *e = ee_stored_find(s, m->id);
    mp_change ch;
    if (e == NULL) {
        if (m->uid < floor)
            return MP_OK; /* history: backfill's */
        ee_change_of(m, MP_CHANGE_NEW, &ch);
    } else {
        e->seen = 1;
        if (strcmp(e->flags, m->flags) == 0)
            return MP_OK;
        memset(&ch, 0, sizeof ch);
        ch.kind = MP_CHANGE_UPDATED;
        ch.id = m->id;
        ch.uid = m->uid;
        ch.flags = m->flags;
        ch.size = m->size;
    }
    (*changes)++;
    return ee_host->batch_change(batch, &ch, err);
}

static mp_status check_registry(const ee_page *p, ee_cursor *c, const char *folder,
                                mp_error *err)
{
    for (size_t i = 0; i < p->n; i++) {
        int64_t r = ee_id_registry(p->v[i].id);
        if (r < 0)
            continue; /* not an IMAP-style id (Gmail API, Graph accounts) */
        if (c->reg < 0)
            c->reg = r;
        else if (r != c->reg)
            return mp_fail(err, MP_RESYNC,
                           "\"%s\": EmailEngine's message ids moved to another mailbox"
                           " registry (%lld, was %lld): UIDVALIDITY changed",
                           folder, (long long)r, (long long)c->reg);
    }
    return MP_OK;
}

static mp_status full_listing(ee_account *a, const char *folder, mp_batch *batch,
                              ee_stored_set *s, ee_cursor *c, size_t *changes, int *complete_r,
                              mp_error *err)
{
    int64_t total = -1;
    int consistent = 1;
    seen_ids ids = {0};
    mp_status st = MP_OK;
    for (uint32_t page = 0; st == MP_OK; page++) {
        ee_page p;
        st = ee_page_get(a, folder, page, EE_FULL_PAGE, &p, err);
        if (st != MP_OK)
            break;
        if (total < 0)
            total = p.total;
        else if (p.total != total)
            consistent = 0;
        st = check_registry(&p, c, folder, err);
        for (size_t i = 0; i < p.n && st == MP_OK; i++) {
            if (ids.n == ids.cap) {
                ids.cap = ids.cap ? ids.cap * 2 : 1024;
                char **v = realloc(ids.v, ids.cap * sizeof *v);
                if (v == NULL)
                    abort();
                ids.v = v;
            }
            ids.v[ids.n] = strdup(p.v[i].id);
            if (ids.v[ids.n] == NULL)
                abort();
            ids.n++;
            st = compare(batch, s, &p.v[i], c->floor, changes, err);
        }
        int last = p.n == 0 || (int64_t)page + 1 >= p.pages;
        ee_page_clear(&p);
        if (last)
            break;
    }
    /* Pages shift with arrivals and expunges: count distinct ids. */
    size_t distinct = 0;
    if (ids.n > 0) {
        qsort(ids.v, ids.n, sizeof *ids.v, cmp_str);
        distinct = 1;
        for (size_t i = 1; i < ids.n; i++)
            distinct += strcmp(ids.v[i], ids.v[i - 1]) != 0;
    }
    for (size_t i = 0; i < ids.n; i++)
        free(ids.v[i]);
    free(ids.v);
    if (st != MP_OK)
        return st;
    *complete_r = consistent && (int64_t)distinct == total;
    if (!*complete_r) {
        ee_log(a, MP_LOG_INFO,
               "%s: the listing changed while it was read (%zu ids, total %lld); deletions"
               " wait for the next full listing", folder, distinct, (long long)total);
        return MP_OK;
    }
    for (size_t i = 0; i < s->n && st == MP_OK; i++) {
        if (s->v[i].seen)
            continue;
        mp_change ch = {.kind = MP_CHANGE_DELETED, .id = s->v[i].id, .size = -1};
        (*changes)++;
        st = ee_host->batch_change(batch, &ch, err);
    }
    return st;
}

mp_status ee_delta(mp_account *acct, const char *folder, const char *cursor, mp_batch *batch,
                   mp_error *err)
{
    ee_account *a = ee_host->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "emailengine account not open");
    ee_cursor c;
    if (ee_cursor_parse(cursor, &c) < 0)
        return mp_fail(err, MP_RESYNC, "\"%s\": the cursor is not this driver's", folder);
    /* The run's hint for this folder, else one for the whole account
     * (mailboxNew/Deleted, authenticationError, connectError). */
    const char *hint = ee_host->sync_hint(acct, folder);
    if (hint == NULL)
        hint = ee_host->sync_hint(acct, NULL);
    /* A list fetched after this cursor's counters is this run's; an
     * account event asks for the account's state now. */
    int64_t newer_than = c.counted_ms;
    if (hint != NULL && (strcmp(hint, "authenticationError") == 0 ||
                         strcmp(hint, "connectError") == 0))
        newer_than = INT64_MAX;
    const ee_mailboxes *boxes;
    mp_status st = ee_mailboxes_get(a, newer_than, &boxes, err);
    if (st != MP_OK)
        return st;
    const ee_mailbox *mb = ee_mailboxes_find(boxes, folder);
    if (mb == NULL)
        return mp_fail(err, MP_SKIP, "\"%s\" is no longer in EmailEngine's mailbox list",
                       folder);
    int64_t now = ee_host->now_ms();
    int counters_moved = mb->messages < 0 || mb->uid_next < 0 ||
                         mb->messages != c.messages || mb->uid_next != c.uid_next;
    int full = counters_moved || now - c.swept_ms >= EE_SWEEP_MS || now < c.swept_ms ||
               (hint != NULL && strcmp(hint, "messageNew") != 0);

    ee_stored_set s;
    st = ee_stored_load(a, folder, &s, err);
    if (st != MP_OK)
        return st;
    size_t changes = 0;
    if (!full) {
        ee_page p;
        st = ee_page_get(a, folder, 0, EE_NEWEST_PAGE, &p, err);
        if (st == MP_OK)
            st = check_registry(&p, &c, folder, err);
        for (size_t i = 0; i < p.n && st == MP_OK; i++)
            st = compare(batch, &s, &p.v[i], c.floor, &changes, err);
        ee_page_clear(&p);
    }
    int complete = !full;
    if (full) {
        st = full_listing(a, folder, batch, &s, &c, &changes, &complete, err);
        if (st == MP_OK && complete)
            c.swept_ms = now;
    }
    ee_stored_clear(&s);
    if (st != MP_OK)
        return st;
    /* A listing that shifted keeps the old counters, so the next run
     * lists the folder in full again. */
    if (complete) {
        c.messages = mb->messages;
        c.uid_next = mb->uid_next;
        c.counted_ms = a->boxes_ms;
    }
    char cur[EE_CURSOR_MAX];
    ee_cursor_format(&c, cur);
    return ee_host->batch_commit(batch, cur, NULL, 0, err);
}

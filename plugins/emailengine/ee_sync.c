/*
 * list_folders, bootstrap and backfill over EmailEngine's listing.
 *
 * The listing is paged by sequence number, newest first (emailengine-api.md
 * §4), and pages shift when mail arrives or goes. So positions are UIDs,
 * never page numbers: the backfill position is "uid:<n>", the next older
 * messages are those with a UID below n, and the page holding them is
 * found by a binary search over the pages (a page is a contiguous UID
 * range, newest first), usually one or two requests.
 *
 * A bootstrap that finds the folder already has stored messages runs after
 * a reset (MP_RESYNC: UIDVALIDITY changed, so EE gave every message a new
 * id). It re-keys what it can (same Message-ID, id from the old mailbox
 * registry) with old_id, silently, and deletes what a complete listing no
 * longer has: a bounded resync, with the one folder.reset the host emits.
 */
#include "ee_driver.h"

#include <stdlib.h>
#include <string.h>

mp_status ee_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err)
{
    ee_account *a = ee_host->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "emailengine account not open");
    const ee_mailboxes *boxes;
    mp_status st = ee_mailboxes_get(a, INT64_MAX, &boxes, err);
    if (st != MP_OK)
        return st;
    for (size_t i = 0; i < boxes->n; i++)
        ee_host->folder_add(sink, boxes->v[i].path, boxes->v[i].role);
    return MP_OK;
}

static const ee_mailbox *mailbox_of(ee_account *a, const char *folder, mp_error *err,
                                    mp_status *st_r)
{
    const ee_mailboxes *boxes;
    /* Bootstrap runs once per folder: any list is fresh enough, the
     * cursor records when it was fetched. */
    *st_r = ee_mailboxes_get(a, 0, &boxes, err);
    if (*st_r != MP_OK)
        return NULL;
    const ee_mailbox *mb = ee_mailboxes_find(boxes, folder);
    if (mb == NULL)
        *st_r = mp_fail(err, MP_SKIP, "\"%s\" is no longer in EmailEngine's mailbox list",
                        folder);
    return mb;
}

/* A stored message of another mailbox registry with this Message-ID, not
 * yet re-keyed. */
static ee_stored *stale_match(ee_stored_set *s, const ee_msg *m, int64_t reg)
{
    if (m->message_id == NULL || m->message_id[0] == '\0' || reg < 0)
        return NULL;
    for (size_t i = 0; i < s->n; i++) {
        ee_stored *e = &s->v[i];
        if (!e->seen && e->message_id != NULL && strcmp(e->message_id, m->message_id) == 0 &&
            ee_id_registry(e->id) != reg)
            return e;
    }
    return NULL;
}

/* Emit one listing entry as SYNCED: a stored id folds, a stale one with
 * the same Message-ID is re-keyed. */
static mp_status emit_synced(mp_batch *batch, ee_stored_set *s, const ee_msg *m, int64_t reg,
                             mp_error *err)
{
    mp_change ch;
    ee_change_of(m, MP_CHANGE_SYNCED, &ch);
    ee_stored *e = ee_stored_find(s, m->id);
    if (e != NULL) {
        e->seen = 1;
    } else if ((e = stale_match(s, m, reg)) != NULL) {
        e->seen = 1;
        ch.old_id = e->id;
    }
    return ee_host->batch_change(batch, &ch, err);
}

/* After a reset: walk the whole listing to re-key older stored messages
 * and delete the ones a complete, consistent listing lacks. */
static mp_status remap_rest(ee_account *a, const char *folder, mp_batch *batch,
                            ee_stored_set *s, int64_t reg, mp_error *err)
{
    size_t unseen = 0;
    for (size_t i = 0; i < s->n; i++)
        unseen += !s->v[i].seen;
    if (unseen == 0)
        return MP_OK;
    int64_t total = -1;
    size_t listed = 0;
    int consistent = 1;
    for (uint32_t page = 0;; page++) {
        ee_page p;
        mp_status st = ee_page_get(a, folder, page, EE_FULL_PAGE, &p, err);
        if (st != MP_OK)
            return st;
        if (total < 0)
            total = p.total;
        else if (p.total != total)
            consistent = 0;
        for (size_t i = 0; i < p.n && st == MP_OK; i++) {
            listed++;
            ee_stored *e = ee_stored_find(s, p.v[i].id);
            if (e != NULL) {
                e->seen = 1;
                continue;
            }
            if (stale_match(s, &p.v[i], reg) != NULL)
                st = emit_synced(batch, s, &p.v[i], reg, err);
        }
        int last = p.n == 0 || (int64_t)page + 1 >= p.pages;
        ee_page_clear(&p);
        if (st != MP_OK)
            return st;
        if (last)
            break;
    }
    if (!consistent || (int64_t)listed != total) {
        ee_log(a, MP_LOG_INFO,
               "%s: the listing changed while it was read; stale messages stay until the"
               " next full reconciliation", folder);
        return MP_OK;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].seen)
            continue;
        mp_change ch = {.kind = MP_CHANGE_DELETED, .id = s->v[i].id, .size = -1};
        mp_status st = ee_host->batch_change(batch, &ch, err);
        if (st != MP_OK)
            return st;
    }
    return MP_OK;
}

mp_status ee_bootstrap(mp_account *acct, const char *folder, uint32_t max, mp_batch *batch,
                       mp_error *err)
{
    ee_account *a = ee_host->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "emailengine account not open");
    mp_status st;
    const ee_mailbox *mb = mailbox_of(a, folder, err, &st);
    if (mb == NULL)
        return st;
    ee_cursor c = {.reg = -1, .floor = 1, .messages = mb->messages,
                   .uid_next = mb->uid_next, .swept_ms = ee_host->now_ms(),
                   .counted_ms = a->boxes_ms};
    ee_stored_set s;
    st = ee_stored_load(a, folder, &s, err);
    if (st != MP_OK)
        return st;
    uint32_t size = max == 0 ? 1 : max < EE_FULL_PAGE ? max : EE_FULL_PAGE;
    uint32_t loaded = 0, min_uid = UINT32_MAX, top_uid = 0;
    int all = 0;
    for (uint32_t page = 0; st == MP_OK; page++) {
        size_t skipped = 0;
        ee_page p;
        st = ee_page_get(a, folder, page, size, &p, err);
        if (st != MP_OK)
            break;
        if (page == 0 && p.n > 0)
            c.reg = ee_id_registry(p.v[0].id);
        for (size_t i = 0; i < p.n && st == MP_OK; i++) {
            if (p.v[i].uid > top_uid)
                top_uid = p.v[i].uid;
            if (max == 0 || loaded >= max) {
                skipped++;
                continue;
            }
            st = emit_synced(batch, &s, &p.v[i], c.reg, err);
            loaded++;
            if (p.v[i].uid < min_uid)
                min_uid = p.v[i].uid;
        }
        /* Everything loaded when the window reached the last page whole. */
        all = p.n == 0 || ((int64_t)page + 1 >= p.pages && skipped == 0);
        ee_page_clear(&p);
        if (all || max == 0 || loaded >= max)
            break;
    }
    if (st == MP_OK && s.n > 0)
        st = remap_rest(a, folder, batch, &s, c.reg, err);
    ee_stored_clear(&s);
    if (st != MP_OK)
        return st;
    if (max == 0)
        c.floor = top_uid + 1; /* from now on: nothing older is new */
    else if (loaded > 0)
        c.floor = min_uid;
    char cur[EE_CURSOR_MAX], pos[32];
    ee_cursor_format(&c, cur);
    ee_backfill_format(c.floor, pos);
    int done = max == 0 ? top_uid == 0 : all;
    return ee_host->batch_commit(batch, cur, pos, done, err);
}

static uint32_t page_min_uid(const ee_page *p)
{
    uint32_t m = UINT32_MAX;
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].uid < m)
            m = p->v[i].uid;
    return m;
}

mp_status ee_backfill(mp_account *acct, const char *folder, const char *pos, uint32_t max,
                      mp_batch *batch, mp_error *err)
{
    ee_account *a = ee_host->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "emailengine account not open");
    uint32_t below = 0;
    if (ee_backfill_parse(pos, &below) < 0) {
        ee_cursor c;
        if (ee_cursor_parse(ee_host->cursor_get(acct, folder), &c) < 0)
            return mp_fail(err, MP_RESYNC, "backfill position \"%s\" is not this driver's",
                           pos != NULL ? pos : "");
        below = c.floor;
    }
    char npos[32];
    if (below <= 1 || max == 0) {
        ee_backfill_format(below, npos);
        return ee_host->batch_commit(batch, NULL, npos, below <= 1, err);
    }
    const uint32_t size = EE_FULL_PAGE;
    /* Binary search for the first page with a UID below `below`; the
     * stored count is where the boundary usually is. */
    ee_stored_set s;
    mp_status st = ee_stored_load(a, folder, &s, err);
    if (st != MP_OK)
        return st;
    int64_t lo = 0, hi = -1, k = (int64_t)(s.n / size), best = -1;
    ee_stored_clear(&s);
    ee_page found;
    memset(&found, 0, sizeof found);
    for (int iter = 0; iter < 40; iter++) {
        ee_page p;
        st = ee_page_get(a, folder, (uint32_t)k, size, &p, err);
        if (st != MP_OK) {
            ee_page_clear(&found);
            return st;
        }
        if (hi < 0 || hi > p.pages - 1)
            hi = p.pages - 1;
        if (p.n > 0 && page_min_uid(&p) < below) {
            ee_page_clear(&found);
            found = p;
            best = k;
            hi = k - 1;
        } else {
            if (p.n > 0)
                lo = k + 1;
            else if (k - 1 < hi)
                hi = k - 1; /* past the end */
            ee_page_clear(&p);
        }
        if (lo > hi)
            break;
        k = lo + (hi - lo) / 2;
    }
    uint32_t loaded = 0, low = below;
    int done = best < 0;
    int64_t deadline = ee_host->batch_deadline_ms(batch);
    while (!done && st == MP_OK) {
        for (size_t i = 0; i < found.n && loaded < max && st == MP_OK; i++) {
            if (found.v[i].uid >= below)
                continue;
            mp_change ch;
            ee_change_of(&found.v[i], MP_CHANGE_SYNCED, &ch);
            st = ee_host->batch_change(batch, &ch, err);
            loaded++;
            if (found.v[i].uid < low)
                low = found.v[i].uid;
        }
        int last = found.n == 0 || best + 1 >= found.pages;
        int full = loaded >= max;
        /* Stopped inside this page: the rest is below `low` next time. */
        int rest = 0;
        for (size_t i = 0; i < found.n; i++)
            rest += found.v[i].uid < low;
        ee_page_clear(&found);
        if (st != MP_OK)
            break;
        if (full || rest > 0 || (deadline > 0 && ee_host->now_ms() >= deadline))
            break;
        if (last) {
            done = 1;
            break;
        }
        best++;
        st = ee_page_get(a, folder, (uint32_t)best, size, &found, err);
    }
    ee_page_clear(&found);
    if (st != MP_OK)
        return st;
    ee_backfill_format(done ? 1 : low, npos);
    return ee_host->batch_commit(batch, NULL, npos, done || low <= 1, err);
}

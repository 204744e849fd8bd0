/*
 * delta: the folder's changes since its stored deltaLink (the whole link is
 * the cursor, opaque), following nextLink to the next deltaLink and
 * committing each page with the link that resumes after it.
 *
 * The cursor's delta asks for ids only ($select=id, kept in the link), so
 * every id a page names is read again with JSON $batch (20 per request),
 * which also tells what happened to it:
 *  - it is in this folder: emitted with its summary and flags, as the
 *    message now in exactly this folder. NEW when received after the folder
 *    was connected (or of unknown date), else SYNCED (a flag changed on old
 *    mail, or old mail moved in, is never message.new). A stored message folds into one
 *    message.updated (flags, or folders_added/removed for a move in).
 *  - it is in another folder (an "@removed" here, under an immutable id, is
 *    a move; providers.md §3): UPDATED leaving this folder and entering
 *    that one when it is synced, so a move is one message.updated, never a
 *    delete plus a new. Whichever folder's delta runs first, the other one
 *    finds the move already stored and adds nothing.
 *  - 404: deleted.
 * A 410 (SyncStateNotFound, resyncRequired, InvalidSyncStateData,
 * syncStateInvalid) is MP_RESYNC: the host bootstraps the folder again with
 * one folder.reset.
 *
 * After the cursor's round: while the coverage walk (graph_bootstrap.c) is
 * not done, a few more of its pages (the backfill walks too, but may stop
 * first at a max_per_folder cap); once it is, the folder switches to the
 * unfiltered deltaLink it produced (its first round brings the changes
 * made since the walk ended; those already seen fold into nothing), and
 * the stored messages are checked once, a slice per sync
 * (graph_verify.c). Then the repair list is served.
 */
#include "graph_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELTA_PAGE 200u
/* One sync's pages per round: 200 ids each; more waits for the next run. */
#define ROUND_PAGES_MAX 500u
/* Coverage-walk pages a delta sync adds while the walk is not done (the
 * backfill walks too, but may stop first: a max_per_folder cap). */
#define DELTA_WALK_PAGES 5u

/* New mail is mail received after the folder was connected. A summary
 * without its date (Graph's sparse answers come mostly for mail that just
 * arrived) counts as new: stored already, it folds into an update anyway. */
static mp_change_kind arrival_kind(const graph_fstate *fs, const graph_msg *m)
{
    return m->received <= 0 || m->received * 1000 >= fs->since_ms ? MP_CHANGE_NEW
                                                                   : MP_CHANGE_SYNCED;
}

/* Apply one page of folder `folder` (id `fid`): read its ids, emit what
 * each became. */
static mp_status apply(graph_account *a, mp_batch *batch, const char *fid,
                       const char *folder, graph_fstate *fs, const graph_page *p,
                       int *reloaded, mp_error *err)
{
    if (p->n == 0)
        return MP_OK;
    const char **ids = calloc(p->n, sizeof *ids);
    if (ids == NULL)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) {
        int dup = 0;
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp(ids[j], p->v[i].id) == 0;
        if (!dup)
            ids[n++] = p->v[i].id;
    }
    graph_msg *msgs = calloc(n, sizeof *msgs);
    int *gone = calloc(n, sizeof *gone);
    if (msgs == NULL || gone == NULL)
        abort();
    mp_status st = graph_read_messages(a, ids, n, msgs, gone, err);
    for (size_t i = 0; i < n && st == MP_OK; i++) {
        if (gone[i]) {
            mp_change ch = {.kind = MP_CHANGE_DELETED, .id = ids[i], .size = -1};
            st = graph_host->batch_change_folders(batch, &ch, NULL, err);
            continue;
        }
        const graph_msg *m = &msgs[i];
        const graph_folder *in = graph_folder_by_id(a, m->parent_id);
        if (in == NULL && m->parent_id != NULL && !*reloaded) {
            /* A folder created since the table was loaded. */
            *reloaded = 1;
            st = graph_folders_load(a, err);
            if (st != MP_OK)
                break;
            in = graph_folder_by_id(a, m->parent_id);
        }
        if (m->parent_id == NULL || strcmp(m->parent_id, fid) == 0)
            st = graph_emit(a, batch, arrival_kind(fs, m), folder, m, fs, err);
        else
            st = graph_emit_moved(a, batch, folder, in, m, err);
    }
    for (size_t i = 0; i < n; i++)
        graph_msg_clear(&msgs[i]);
    free(msgs);
    free(gone);
    free(ids);
    return st;
}

/* One round from `link` to its next deltaLink, committing each page with
 * the link after it (and `fs`). */
static mp_status round_from(graph_account *a, mp_batch *batch, const char *fid,
                            const char *folder, graph_fstate *fs, const char *link,
                            unsigned *committed_r, mp_error *err)
{
    *committed_r = 0;
    char *url = strdup(link);
    if (url == NULL)
        abort();
    int reloaded = 0;
    mp_status st = MP_OK;
    for (unsigned pages = 0; pages < ROUND_PAGES_MAX; pages++) {
        graph_page p;
        st = graph_get_page(a, url, DELTA_PAGE, "messages delta", &p, err);
        if (st == MP_SKIP)
            st = mp_fail(err, MP_RESYNC, "messages delta of \"%s\": 404 (folder recreated?)",
                         folder);
        if (st != MP_OK)
            break;
        st = apply(a, batch, fid, folder, fs, &p, &reloaded, err);
        const char *next = p.delta_link != NULL ? p.delta_link : p.next_link;
        if (st == MP_OK && next == NULL)
            st = mp_fail(err, MP_RETRY, "messages delta: a page with neither nextLink nor"
                                        " deltaLink");
        if (st == MP_OK)
            st = graph_fstate_stage(a, batch, folder, fs, err);
        if (st == MP_OK)
            st = graph_host->batch_commit(batch, next, NULL, 0, err);
        if (st == MP_OK)
            (*committed_r)++;
        int end = p.delta_link != NULL;
        free(url);
        url = st == MP_OK && !end ? strdup(next) : NULL;
        graph_page_clear(&p);
        if (st != MP_OK || end)
            break;
        if (url == NULL)
            abort();
    }
    free(url);
    return st;
}

mp_status graph_delta(mp_account *acct, const char *folder, const char *cursor,
                      mp_batch *batch, mp_error *err)
{
    graph_account *a = graph_host->account_state(acct);
    /* Lifecycle actions a notification queued (graph_push.c). */
    graph_push_service(a, folder);
    if (cursor == NULL || !graph_link_ok(a, cursor))
        return mp_fail(err, MP_RESYNC, "folder \"%s\": the stored cursor is not a Graph"
                                       " deltaLink under api_url", folder);
    const graph_folder *f = NULL;
    mp_status st = graph_folder_named(a, folder, &f, err);
    if (st != MP_OK)
        return st;
    graph_fstate fs;
    st = graph_fstate_load(a, folder, &fs, err);
    if (st != MP_OK)
        return st;
    if (fs.since_ms == 0)
        fs.since_ms = graph_host->now_ms(); /* no record: nothing before now is new */
    /* The table may be reloaded meanwhile: keep the id, not the pointer. */
    char *fid = strdup(f->id);
    if (fid == NULL)
        abort();
    unsigned committed = 0;
    st = round_from(a, batch, fid, folder, &fs, cursor, &committed, err);
    int walked = 0; /* the walk moved: its state needs a commit */
    if (st == MP_OK && fs.cover < GRAPH_COVER_WALKED) {
        const graph_folder *f2 = graph_folder_by_id(a, fid);
        unsigned pages = 0;
        if (f2 != NULL) {
            st = graph_walk(a, batch, f2, &fs, DELTA_WALK_PAGES, 0, &pages, err);
            walked = 1;
        }
    }
    if (st == MP_OK && fs.cover == GRAPH_COVER_WALKED && fs.full != NULL) {
        /* Switch to the unfiltered delta: its first commit moves the cursor. */
        char *full = fs.full;
        fs.full = NULL;
        fs.cover = GRAPH_COVER_ALL;
        st = round_from(a, batch, fid, folder, &fs, full, &committed, err);
        if (st == MP_OK)
            graph_log(a, MP_LOG_INFO, "folder \"%s\": delta now covers all of its mail",
                      folder);
        free(full);
        walked = 0; /* committed with the switch */
        if (st == MP_RESYNC && committed == 0) {
            /* The walk's deltaLink expired before it was used: the folder's
             * own cursor is fine, so walk again rather than reset it. */
            graph_log(a, MP_LOG_INFO, "folder \"%s\": %s; the coverage walk starts over",
                      folder, err->text);
            memset(err, 0, sizeof *err);
            fs.cover = GRAPH_COVER_RECENT;
            free(fs.walk);
            fs.walk = NULL;
            walked = 1;
            st = MP_OK;
        }
    }
    int check = st == MP_OK && fs.cover == GRAPH_COVER_ALL && !fs.checked;
    if (check)
        st = graph_verify_step(a, batch, fid, folder, &fs, err);
    if (st == MP_OK && (fs.n_repair > 0 || walked || check)) {
        st = graph_repair_run(a, batch, fid, folder, &fs, err);
        if (st == MP_OK)
            st = graph_fstate_stage(a, batch, folder, &fs, err);
        if (st == MP_OK)
            st = graph_host->batch_commit(batch, NULL, NULL, 0, err);
    }
    free(fid);
    graph_fstate_clear(&fs);
    return st;
}

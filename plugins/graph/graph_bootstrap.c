/*
 * bootstrap, backfill and the coverage walk of one folder.
 *
 * Bootstrap loads the newest `max` messages with
 *   GET /mailFolders/{id}/messages?$select=...&$orderby=receivedDateTime desc&$top=n
 * (a 100,000-message folder costs max/n pages, never an enumeration), then
 * takes the folder's delta baseline. Graph has no "sync from now" for
 * messages (providers.md §1 item 9), but delta accepts
 * $filter=receivedDateTime ge X (then at most 5,000 results): the baseline
 * is that filtered delta from X = the oldest message loaded, ids only,
 * walked to its deltaLink, which becomes the folder's cursor. Messages it
 * lists that the listing did not (arrived meanwhile) are read and stored.
 *
 * That cursor sees changes to messages received since X only. Older mail
 * the backfill stores needs more: each backfill call also walks a few pages
 * of the folder's UNFILTERED delta, ids and flags only (its initial round
 * lists every message, ~200 per page, so a 100,000-message folder takes
 * ~500 small requests spread over the backfill). Each page's flags are
 * applied to what is stored (a flag changed on old mail before the walk got
 * to it is caught there). Once it reaches its deltaLink the delta slot
 * switches the folder's cursor over to it (graph_delta.c), and from then on
 * flag changes, moves and deletes of old mail arrive like any other. The
 * folder's backfill is done only when both the listing and the walk are.
 * A move of old mail out of the folder during the walk is caught by the
 * folder it went to (synced: it takes the message); a hard delete of old
 * mail during the walk by the check after the switch (graph_verify.c).
 *
 * Backfill lists older mail page by page with
 *   $filter=receivedDateTime lt <position + 1 s>&$orderby=receivedDateTime desc
 * The position is the oldest receivedDateTime loaded plus the ids loaded at
 * exactly that second (Graph gives seconds), so mail sharing the boundary
 * second is neither lost nor loaded twice. It is JSON:
 *   {"before":<unix s>,"seen":["id",...]} or {"listed":true,"walked":<pages>}
 * (the walk's page count makes each call's progress visible to the host).
 */
#include "graph_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_PAGE 250u
#define DELTA_PAGE 200u
/* The filtered baseline has at most 5,000 results: 25 pages and a margin. */
#define BASELINE_PAGES_MAX 60u
/* Walk pages per backfill call (without a deadline from the host). */
#define WALK_PAGES 10u
#define SEEN_MAX 100u
/* Margins for Exchange's clock against ours (see graph_bootstrap). */
#define BASELINE_SLACK_S 86400
#define NEW_SLACK_MS 300000
/* What the coverage walk asks for: ids, and the flags (small). */
#define WALK_SELECT "id,isRead,isDraft,flag"

typedef struct idset {
    char **v;
    size_t n;
} idset;

static void idset_add(idset *s, const char *id)
{
    char **grown = realloc(s->v, (s->n + 1) * sizeof *grown);
    if (grown == NULL)
        abort();
    s->v = grown;
    s->v[s->n] = strdup(id);
    if (s->v[s->n] == NULL)
        abort();
    s->n++;
}

static int idset_has(const idset *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], id) == 0)
            return 1;
    return 0;
}

static void idset_clear(idset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* The backfill position after loading: oldest second and its ids. */
typedef struct position {
    int64_t before; /* 0: nothing loaded yet                             */
    idset seen;
    int listed;     /* nothing older is left to list                     */
    int64_t walked; /* coverage pages read so far (progress the host sees) */
    int64_t newest; /* newest receivedDateTime loaded (not stored)         */
} position;

static char *position_dump(const position *p)
{
    json_t *root;
    if (p->listed) {
        root = json_pack("{s:b, s:I}", "listed", 1, "walked", (json_int_t)p->walked);
    } else {
        json_t *seen = json_array();
        for (size_t i = 0; i < p->seen.n && i < SEEN_MAX; i++)
            json_array_append_new(seen, json_string(p->seen.v[i]));
        root = json_pack("{s:I, s:o}", "before", (json_int_t)p->before, "seen", seen);
    }
    char *out = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (out == NULL)
        abort();
    return out;
}

static int position_parse(const char *text, position *p)
{
    memset(p, 0, sizeof *p);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    if (json_is_true(json_object_get(root, "listed"))) {
        p->listed = 1;
        p->walked = json_integer_value(json_object_get(root, "walked"));
    } else {
        json_t *b = json_object_get(root, "before");
        if (!json_is_integer(b) || json_integer_value(b) <= 0) {
            json_decref(root);
            return -1;
        }
        p->before = json_integer_value(b);
        size_t i;
        json_t *id;
        json_array_foreach(json_object_get(root, "seen"), i, id)
        {
            if (json_string_value(id) != NULL && i < SEEN_MAX)
                idset_add(&p->seen, json_string_value(id));
        }
    }
    json_decref(root);
    return 0;
}

/* A message just loaded moves the position to it. */
static void position_note(position *p, const graph_msg *m)
{
    if (m->received <= 0) {
        /* A sparse summary places no boundary; remembered as seen, the next
         * listing from the same position skips it instead of standing still. */
        if (p->seen.n < SEEN_MAX && !idset_has(&p->seen, m->id))
            idset_add(&p->seen, m->id);
        return;
    }
    if (m->received > p->newest)
        p->newest = m->received;
    if (p->before == 0 || m->received < p->before) {
        p->before = m->received;
        idset_clear(&p->seen);
    }
    if (m->received == p->before && p->seen.n < SEEN_MAX)
        idset_add(&p->seen, m->id);
}

static char *folder_url(const graph_account *a, const graph_folder *f, const char *tail)
{
    char *eid = graph_escape(f->id);
    size_t rl = strlen(eid) + strlen(tail) + 32;
    char *rest = malloc(rl);
    if (rest == NULL)
        abort();
    snprintf(rest, rl, "mailFolders/%s/%s", eid, tail);
    free(eid);
    char *url = graph_user_url(a, rest);
    free(rest);
    return url;
}

/* List messages newest first from `first_url` until `max` were emitted,
 * the list ends (*ended_r), or the deadline passes. Checkpoints after
 * each page (`pos_commits`: with the backfill position). */
static mp_status list_load(graph_account *a, mp_batch *batch, const graph_folder *f,
                           graph_fstate *fs, const char *first_url, uint32_t max,
                           int64_t deadline, int pos_commits, position *pos, idset *loaded,
                           int *ended_r, mp_error *err)
{
    *ended_r = 0;
    char *url = strdup(first_url);
    if (url == NULL)
        abort();
    uint32_t left = max;
    mp_status st = MP_OK;
    int first = 1;
    while (left > 0 && url != NULL) {
        if (!first && deadline > 0 && graph_host->now_ms() >= deadline)
            break;
        first = 0;
        graph_page p;
        st = graph_get_page(a, url, 0, "list messages", &p, err);
        free(url);
        url = NULL;
        if (st == MP_SKIP)
            st = mp_fail(err, MP_RETRY, "folder \"%s\" vanished while listed", f->path);
        if (st != MP_OK)
            break;
        size_t used = 0;
        for (size_t i = 0; i < p.n && left > 0 && st == MP_OK; i++) {
            used = i + 1;
            if (p.v[i].removed || idset_has(&pos->seen, p.v[i].id) ||
                (loaded != NULL && idset_has(loaded, p.v[i].id)))
                continue;
            st = graph_emit(a, batch, MP_CHANGE_SYNCED, f->path, &p.v[i], fs, err);
            if (st != MP_OK)
                break;
            position_note(pos, &p.v[i]);
            if (loaded != NULL)
                idset_add(loaded, p.v[i].id);
            left--;
        }
        if (st == MP_OK && used == p.n && p.next_link == NULL)
            *ended_r = 1;
        else if (st == MP_OK && used == p.n && p.next_link != NULL)
            url = strdup(p.next_link);
        graph_page_clear(&p);
        if (st != MP_OK)
            break;
        if (url != NULL && left > 0) {
            /* Checkpoint: a long load keeps what it has if interrupted. */
            char *ps = pos_commits && pos->before > 0 ? position_dump(pos) : NULL;
            st = graph_fstate_stage(a, batch, f->path, fs, err);
            if (st == MP_OK)
                st = graph_host->batch_commit(batch, NULL, ps, 0, err);
            free(ps);
            if (st != MP_OK)
                break;
        }
    }
    free(url);
    return st;
}

/* The filtered id-only delta from `since_s` to its deltaLink (*link_r);
 * ids it lists that `loaded` lacks are read and emitted. */
static mp_status baseline(graph_account *a, mp_batch *batch, const graph_folder *f,
                          graph_fstate *fs, int64_t since_s, const idset *loaded,
                          int store_extra, int64_t *newest_r, char **link_r, mp_error *err)
{
    *link_r = NULL;
    char when[32], tail[128];
    graph_time_format(since_s, when, sizeof when);
    snprintf(tail, sizeof tail, "messages/delta?$select=id&$filter=receivedDateTime%%20ge%%20%s",
             when);
    char *url = folder_url(a, f, tail);
    idset extra = {0};
    mp_status st = MP_OK;
    for (unsigned pages = 0; st == MP_OK; pages++) {
        if (pages == BASELINE_PAGES_MAX) {
            st = mp_fail(err, MP_RETRY, "folder \"%s\": the delta baseline did not end"
                                        " within %u pages", f->path, BASELINE_PAGES_MAX);
            break;
        }
        graph_page p;
        st = graph_get_page(a, url, DELTA_PAGE, "delta baseline", &p, err);
        free(url);
        url = NULL;
        if (st == MP_SKIP)
            st = mp_fail(err, MP_RETRY, "folder \"%s\" vanished during its baseline", f->path);
        if (st == MP_RESYNC)
            st = mp_fail(err, MP_RETRY, "folder \"%s\": Graph dropped the baseline's state;"
                                        " starting over", f->path);
        if (st != MP_OK)
            break;
        for (size_t i = 0; i < p.n; i++)
            if (!p.v[i].removed && !idset_has(loaded, p.v[i].id) &&
                !idset_has(&extra, p.v[i].id))
                idset_add(&extra, p.v[i].id);
        if (p.delta_link != NULL) {
            *link_r = strdup(p.delta_link);
            if (*link_r == NULL)
                abort();
            graph_page_clear(&p);
            break;
        }
        if (p.next_link == NULL) {
            graph_page_clear(&p);
            st = mp_fail(err, MP_RETRY, "delta baseline: a page with neither nextLink nor"
                                        " deltaLink");
            break;
        }
        url = strdup(p.next_link);
        graph_page_clear(&p);
        if (url == NULL)
            abort();
    }
    free(url);
    if (st == MP_OK && extra.n > 0 && store_extra) {
        graph_msg *msgs = calloc(extra.n, sizeof *msgs);
        int *gone = calloc(extra.n, sizeof *gone);
        if (msgs == NULL || gone == NULL)
            abort();
        st = graph_read_messages(a, (const char *const *)extra.v, extra.n, msgs, gone, err);
        for (size_t i = 0; i < extra.n && st == MP_OK; i++) {
            const graph_folder *in = graph_folder_by_id(a, msgs[i].parent_id);
            if (!gone[i] && (in == NULL || in == f)) {
                st = graph_emit(a, batch, MP_CHANGE_SYNCED, f->path, &msgs[i], fs, err);
                if (msgs[i].received > *newest_r)
                    *newest_r = msgs[i].received;
            }
        }
        for (size_t i = 0; i < extra.n; i++)
            graph_msg_clear(&msgs[i]);
        free(msgs);
        free(gone);
    }
    idset_clear(&extra);
    if (st != MP_OK) {
        free(*link_r);
        *link_r = NULL;
    }
    return st;
}

mp_status graph_bootstrap(mp_account *acct, const char *folder, uint32_t max, mp_batch *batch,
                          mp_error *err)
{
    graph_account *a = graph_host->account_state(acct);
    graph_push_service(a, folder); /* lifecycle actions queued by notifications */
    const graph_folder *f = NULL;
    mp_status st = graph_folder_named(a, folder, &f, err);
    if (st != MP_OK)
        return st;
    /* A folder bootstrapped (again) starts a fresh record. */
    graph_fstate fs;
    memset(&fs, 0, sizeof fs);
    int64_t now_ms = graph_host->now_ms();
    position pos;
    memset(&pos, 0, sizeof pos);
    idset loaded = {0};
    int ended = 0;
    if (max > 0) {
        char tail[sizeof GRAPH_SELECT + 128];
        snprintf(tail, sizeof tail,
                 "messages?$select=%s&$orderby=receivedDateTime%%20desc&$top=%u", GRAPH_SELECT,
                 max < LIST_PAGE ? (unsigned)max : LIST_PAGE);
        char *url = folder_url(a, f, tail);
        st = list_load(a, batch, f, &fs, url, max, 0, 0, &pos, &loaded, &ended, err);
        free(url);
    }
    char *link = NULL;
    if (st == MP_OK) {
        /* From the oldest loaded. When nothing was (an empty folder, or
         * from-now-on mode), from a day ago: receivedDateTime is Exchange's
         * clock, and a filter from our "now" would miss mail arriving while
         * ours runs ahead. In from-now-on mode that day is not stored. */
        int64_t since_s = pos.before > 0 ? pos.before : now_ms / 1000 - BASELINE_SLACK_S;
        st = baseline(a, batch, f, &fs, since_s, &loaded, max > 0, &pos.newest, &link, err);
    }
    /* Mail received after what the bootstrap saw is new mail (message.new);
     * older mail showing up later (flags changed, moved in) is history. The
     * newest date loaded is Exchange's own clock, so skew does not matter;
     * with nothing loaded, our clock with a margin. */
    fs.since_ms = pos.newest > 0 ? pos.newest * 1000 : now_ms - NEW_SLACK_MS;
    if (st == MP_OK) {
        char *ps = NULL;
        int done = 0;
        if (max == 0) {
            done = 1; /* from-now-on mode: no history is wanted */
            fs.cover = GRAPH_COVER_ENOUGH;
        } else {
            if (ended) {
                pos.listed = 1;
            } else if (pos.before == 0) {
                /* Loaded nothing with a date: list from now downwards. */
                pos.before = now_ms / 1000;
            }
            ps = position_dump(&pos);
        }
        st = graph_fstate_stage(a, batch, folder, &fs, err);
        if (st == MP_OK)
            st = graph_host->batch_commit(batch, link, ps, done, err);
        free(ps);
    }
    free(link);
    idset_clear(&pos.seen);
    idset_clear(&loaded);
    graph_fstate_clear(&fs);
    return st;
}

mp_status graph_walk(graph_account *a, mp_batch *batch, const graph_folder *f,
                     graph_fstate *fs, unsigned max_pages, int64_t deadline_ms,
                     unsigned *pages_r, mp_error *err)
{
    *pages_r = 0;
    if (fs->cover >= GRAPH_COVER_WALKED)
        return MP_OK;
    char *url;
    if (fs->cover == GRAPH_COVER_RECENT || fs->walk == NULL) {
        url = folder_url(a, f, "messages/delta?$select=" WALK_SELECT);
        fs->cover = GRAPH_COVER_WALKING;
    } else {
        url = strdup(fs->walk);
        if (url == NULL)
            abort();
    }
    mp_status st = MP_OK;
    for (unsigned pages = 0; pages < max_pages; pages++) {
        if (pages > 0 && deadline_ms > 0 && graph_host->now_ms() >= deadline_ms)
            break;
        graph_page p;
        st = graph_get_page(a, url, DELTA_PAGE, "coverage delta", &p, err);
        if (st == MP_OK)
            (*pages_r)++;
        if (st == MP_RESYNC || st == MP_SKIP) {
            /* Its page state expired: walk again from the start later. */
            graph_log(a, MP_LOG_INFO, "folder \"%s\": %s; the coverage walk starts over",
                      f->path, err->text);
            memset(err, 0, sizeof *err);
            fs->cover = GRAPH_COVER_RECENT;
            free(fs->walk);
            fs->walk = NULL;
            st = MP_OK;
            break;
        }
        if (st != MP_OK)
            break;
        free(url);
        url = NULL;
        /* Flags as they are now: a change made to old mail before the walk
         * got here is in no delta round the folder will see. */
        for (size_t i = 0; i < p.n && st == MP_OK; i++) {
            char *flags = p.v[i].removed ? NULL : graph_msg_flags(&p.v[i]);
            if (flags == NULL)
                continue;
            mp_change ch = {.kind = MP_CHANGE_UPDATED, .id = p.v[i].id, .size = -1,
                            .flags = flags};
            st = graph_host->batch_change_folders(batch, &ch, NULL, err);
            free(flags);
        }
        if (st != MP_OK) {
            graph_page_clear(&p);
            break;
        }
        if (p.delta_link != NULL) {
            free(fs->full);
            fs->full = strdup(p.delta_link);
            free(fs->walk);
            fs->walk = NULL;
            fs->cover = GRAPH_COVER_WALKED;
            graph_page_clear(&p);
            break;
        }
        if (p.next_link == NULL) {
            graph_page_clear(&p);
            st = mp_fail(err, MP_RETRY, "coverage delta: a page with neither nextLink nor"
                                        " deltaLink");
            break;
        }
        free(fs->walk);
        fs->walk = strdup(p.next_link);
        url = strdup(p.next_link);
        graph_page_clear(&p);
        if (fs->walk == NULL || url == NULL)
            abort();
    }
    free(url);
    return st;
}

mp_status graph_backfill(mp_account *acct, const char *folder, const char *backfill_pos,
                         uint32_t max, mp_batch *batch, mp_error *err)
{
    graph_account *a = graph_host->account_state(acct);
    if (backfill_pos == NULL || backfill_pos[0] == '\0')
        return graph_host->batch_commit(batch, NULL, NULL, 1, err);
    position pos;
    if (position_parse(backfill_pos, &pos) < 0) {
        /* Not ours (an older format): list again from now; what is stored
         * folds in without events. */
        graph_log(a, MP_LOG_WARNING, "folder \"%s\": unreadable backfill position; listing"
                                     " again from the newest", folder);
        memset(&pos, 0, sizeof pos);
        pos.before = graph_host->now_ms() / 1000;
    }
    const graph_folder *f = NULL;
    mp_status st = graph_folder_named(a, folder, &f, err);
    graph_fstate fs;
    memset(&fs, 0, sizeof fs);
    if (st == MP_OK)
        st = graph_fstate_load(a, folder, &fs, err);
    int64_t deadline = graph_host->batch_deadline_ms(batch);
    if (st == MP_OK && !pos.listed) {
        char when[32], tail[sizeof GRAPH_SELECT + 192];
        graph_time_format(pos.before + 1, when, sizeof when);
        uint32_t want = max > 0 ? max : LIST_PAGE;
        snprintf(tail, sizeof tail,
                 "messages?$select=%s&$filter=receivedDateTime%%20lt%%20%s"
                 "&$orderby=receivedDateTime%%20desc&$top=%u",
                 GRAPH_SELECT, when, want < LIST_PAGE ? (unsigned)want : LIST_PAGE);
        char *url = folder_url(a, f, tail);
        int ended = 0;
        st = list_load(a, batch, f, &fs, url, want, deadline, 1, &pos, NULL, &ended, err);
        free(url);
        if (st == MP_OK && ended)
            pos.listed = 1;
    }
    if (st == MP_OK && fs.cover < GRAPH_COVER_WALKED &&
        (deadline == 0 || graph_host->now_ms() < deadline)) {
        unsigned pages = 0;
        st = graph_walk(a, batch, f, &fs, WALK_PAGES, deadline, &pages, err);
        pos.walked += pages;
    }
    if (st == MP_OK) {
        int done = pos.listed && fs.cover >= GRAPH_COVER_WALKED;
        char *ps = done ? NULL : position_dump(&pos);
        st = graph_fstate_stage(a, batch, folder, &fs, err);
        if (st == MP_OK)
            st = graph_host->batch_commit(batch, NULL, ps, done, err);
        free(ps);
    }
    idset_clear(&pos.seen);
    graph_fstate_clear(&fs);
    return st;
}

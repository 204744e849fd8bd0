/*
 * mps_batch_commit: one transaction applies a batch's changes, appends the
 * events they cause and advances the folder (see store.h for the rules).
 *
 * Events are derived from stored state, not from what the driver says: a
 * replayed NEW of a stored message changes nothing and so emits nothing,
 * and each event-producing change bumps the message's version, which makes
 * the idempotency key "<account>/<provider id>/<version>" unique.
 */
#include "store/store-private.h"
#include "store/fence.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* Event subjects are previews; the full subject is in the message. */
#define EVENT_SUBJECT_MAX 200

#define CH_VISIBLE 1 /* worth a message.updated event */
#define CH_SILENT 2  /* stored, no event (uid, ref, size, summary refresh) */

typedef struct commit_ctx {
    mps_store *s;
    const mps_batch *b;
    int64_t now;
    int64_t retention_ms;
    int64_t synced_added;
    mps_commit_result res;
    char (*new_ids)[26]; /* message.new inserted without a body (on_new) */
    size_t n_new, cap_new;
    /* Changes to the folders' live_count and body_count, written once per
     * folder at the end of the transaction. */
    struct folder_delta {
        char *folder;
        int64_t live, bodies;
    } *deltas;
    size_t n_deltas;
} commit_ctx;

typedef struct stored {
    mps_message m;
    int64_t version;
    int64_t rowid; /* 0: not stored */
    int body_row;  /* a bodies row exists, expired or not */
} stored;

/* A set of folder names, sorted, without duplicates; uids[i] is the UID of
 * the membership in names[i] (0: none). */
typedef struct fset {
    char **names;
    uint32_t *uids;
    size_t n;
} fset;

static size_t fset_find(const fset *f, const char *name, int *found_r)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(f->names[mid], name);
        if (c == 0) {
            *found_r = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found_r = 0;
    return lo;
}

static int fset_has(const fset *f, const char *name)
{
    int found;
    (void)fset_find(f, name, &found);
    return found;
}

static uint32_t fset_uid(const fset *f, const char *name)
{
    int found;
    size_t i = fset_find(f, name, &found);
    return found ? f->uids[i] : 0;
}

static void fset_add(fset *f, const char *name, uint32_t uid)
{
    int found;
    size_t i = fset_find(f, name, &found);
    if (found)
        return;
    f->names = mpu_realloc(f->names, (f->n + 1) * sizeof *f->names);
    f->uids = mpu_realloc(f->uids, (f->n + 1) * sizeof *f->uids);
    memmove(f->names + i + 1, f->names + i, (f->n - i) * sizeof *f->names);
    memmove(f->uids + i + 1, f->uids + i, (f->n - i) * sizeof *f->uids);
    f->names[i] = mpu_strdup(name);
    f->uids[i] = uid;
    f->n++;
}

static void fset_del(fset *f, const char *name)
{
    int found;
    size_t i = fset_find(f, name, &found);
    if (!found)
        return;
    free(f->names[i]);
    memmove(f->names + i, f->names + i + 1, (f->n - i - 1) * sizeof *f->names);
    memmove(f->uids + i, f->uids + i + 1, (f->n - i - 1) * sizeof *f->uids);
    f->n--;
}

static void fset_clear(fset *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->names[i]);
    free(f->names);
    free(f->uids);
    memset(f, 0, sizeof *f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Flags as a set: sorted, without duplicates, single-spaced. Providers do
 * not keep label order stable; a reordering is not a change. */
static char *normalize_flags(const char *flags)
{
    if (flags == NULL)
        return NULL;
    char *copy = mpu_strdup(flags);
    size_t n = 0, cap = 8;
    char **words = mpu_malloc(cap * sizeof *words);
    char *save = NULL;
    for (char *w = strtok_r(copy, " \t\r\n", &save); w != NULL;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == cap) {
            cap *= 2;
            words = mpu_realloc(words, cap * sizeof *words);
        }
        words[n++] = w;
    }
    qsort(words, n, sizeof *words, cmp_str);
    char *out = mpu_malloc(strlen(flags) + 1);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(words[i], words[i - 1]) == 0)
            continue;
        if (len > 0)
            out[len++] = ' ';
        size_t wl = strlen(words[i]);
        memcpy(out + len, words[i], wl);
        len += wl;
    }
    out[len] = '\0';
    free(words);
    free(copy);
    return out;
}

static int same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Replace *field with value unless value is NULL or equal; 1 if changed. */
static int set_str(char **field, const char *value)
{
    if (value == NULL || same_str(*field, value))
        return 0;
    free(*field);
    *field = mpu_strdup(value);
    return 1;
}

static int load_stored(commit_ctx *cx, const char *provider_id, stored *r_r,
                       char **error_r)
{
    memset(r_r, 0, sizeof *r_r);
    mps__stmt *st;
    if (mps__prepare(cx->s,
                     "SELECT " MPS__MESSAGE_COLS ", m.version, m.rowid,"
                     " EXISTS(SELECT 1 FROM bodies b WHERE b.message_id = m.id)"
                     " FROM messages m WHERE m.account = :account AND m.provider_id = :pid",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", cx->b->account);
    mps__bind_text(st, ":pid", provider_id);
    mps__bind_int(st, ":now", cx->now);
    int rc = mps__step_row(cx->s, st, error_r, "store: read message");
    if (rc == 0) {
        mps__message_read(st, &r_r->m);
        r_r->version = mps__col_int64(st, MPS__MESSAGE_NCOLS);
        r_r->rowid = mps__col_int64(st, MPS__MESSAGE_NCOLS + 1);
        r_r->body_row = mps__col_int(st, MPS__MESSAGE_NCOLS + 2);
    }
    mps__finish(cx->s, st);
    return rc;
}

/* Insert (rowid 0) or overwrite the message row. */
static int write_row(commit_ctx *cx, const stored *r, char **error_r)
{
    const char *sql =
        r->rowid == 0
            ? "INSERT INTO messages (id, account, provider_id, folder, ref, uid,"
              " message_id, subject, from_addr, to_addr, date, size, thread_id, flags,"
              " deleted, version, indexed_ms) VALUES (:id, :account, :pid, :folder,"
              " :ref, :uid, :message_id, :subject, :from, :to, :date, :size, :thread,"
              " :flags, :deleted, :version, :indexed)"
            : "UPDATE messages SET provider_id = :pid, folder = :folder, ref = :ref,"
              " uid = :uid, message_id = :message_id, subject = :subject,"
              " from_addr = :from, to_addr = :to, date = :date, size = :size,"
              " thread_id = :thread, flags = :flags, deleted = :deleted,"
              " version = :version, indexed_ms = :indexed WHERE rowid = :rowid";
    mps__stmt *st;
    if (mps__prepare(cx->s, sql, &st, error_r) < 0)
        return -1;
    const mps_message *m = &r->m;
    mps__bind_text(st, ":id", m->id);
    mps__bind_text(st, ":account", m->account);
    mps__bind_text(st, ":pid", m->provider_id);
    mps__bind_text(st, ":folder", m->folder);
    mps__bind_text(st, ":ref", m->ref);
    mps__bind_int(st, ":uid", m->uid);
    mps__bind_text(st, ":message_id", m->message_id);
    mps__bind_text(st, ":subject", m->subject);
    mps__bind_text(st, ":from", m->from);
    mps__bind_text(st, ":to", m->to);
    mps__bind_int(st, ":date", m->date);
    mps__bind_int(st, ":size", m->size);
    mps__bind_text(st, ":thread", m->thread_id);
    mps__bind_text(st, ":flags", m->flags);
    mps__bind_int(st, ":deleted", m->deleted);
    mps__bind_int(st, ":version", r->version);
    mps__bind_int(st, ":indexed", m->indexed_ms);
    mps__bind_int(st, ":rowid", r->rowid);
    int rc = mps__step_done(cx->s, st, error_r, "store: write message");
    mps__finish(cx->s, st);
    return rc;
}

static json_t *flags_array(const char *flags)
{
    json_t *arr = json_array();
    if (flags == NULL)
        return arr;
    char *copy = mpu_strdup(flags);
    char *save = NULL;
    for (char *w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
        json_array_append_new(arr, mps__json_string(w, 0));
    free(copy);
    return arr;
}

/* Membership fields of an event: which folders were entered and left,
 * and where the message is now (primary first). Any may be NULL. */
typedef struct mem_note {
    const fset *added, *removed, *now;
} mem_note;

static json_t *names_array(const fset *f, const char *first)
{
    json_t *arr = json_array();
    if (first != NULL && fset_has(f, first))
        json_array_append_new(arr, mps__json_string(first, 0));
    for (size_t i = 0; i < f->n; i++) {
        if (first == NULL || strcmp(f->names[i], first) != 0)
            json_array_append_new(arr, mps__json_string(f->names[i], 0));
    }
    return arr;
}

static int message_event(commit_ctx *cx, const char *type, const stored *r,
                         const mem_note *mn, char **error_r)
{
    json_t *data = json_object();
    if (r->m.uid != 0)
        json_object_set_new(data, "uid", json_integer(r->m.uid));
    if (strcmp(type, "message.new") == 0 || strcmp(type, "message.synced") == 0) {
        if (r->m.subject != NULL)
            json_object_set_new(data, "subject",
                                mps__json_string(r->m.subject, EVENT_SUBJECT_MAX));
    }
    if (strcmp(type, "message.updated") == 0 ||
        (strcmp(type, "message.new") == 0 && mn != NULL && mn->added != NULL))
        json_object_set_new(data, "flags", flags_array(r->m.flags));
    if (mn != NULL && mn->added != NULL)
        json_object_set_new(data, "folders_added", names_array(mn->added, NULL));
    if (mn != NULL && mn->removed != NULL)
        json_object_set_new(data, "folders_removed", names_array(mn->removed, NULL));
    if (mn != NULL && mn->now != NULL)
        json_object_set_new(data, "folders", names_array(mn->now, r->m.folder));
    char *data_json = mps__json_take(data);
    char *key =
        mpu_asprintf("%s/%s/%lld", r->m.account, r->m.provider_id, (long long)r->version);
    int64_t seq = 0;
    int rc = mps__event_add(cx->s, type, r->m.account, r->m.folder, r->m.id, key,
                            data_json, &seq, error_r);
    free(key);
    free(data_json);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        cx->res.events++;
        if (seq > cx->res.last_seq)
            cx->res.last_seq = seq;
        if (strcmp(type, "message.new") == 0)
            cx->res.new_messages++;
    }
    return 0;
}

static void note_new(commit_ctx *cx, const char *id)
{
    if (cx->b->on_new == NULL || id == NULL || strlen(id) >= sizeof cx->new_ids[0])
        return;
    if (cx->n_new == cx->cap_new) {
        cx->cap_new = cx->cap_new ? cx->cap_new * 2 : 16;
        cx->new_ids = mpu_realloc(cx->new_ids, cx->cap_new * sizeof cx->new_ids[0]);
    }
    mpu_strlcpy(cx->new_ids[cx->n_new++], id, sizeof cx->new_ids[0]);
}

/* Move a stored message to a new provider id, keeping its public id (and
 * so its cached body). Nothing happens when the old id is unknown or the
 * new one is taken, which makes a replayed re-key harmless. */
static int rekey(commit_ctx *cx, const char *old_id, const char *new_id, int *applied_r,
                 char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(cx->s,
                     "UPDATE messages SET provider_id = :new"
                     " WHERE account = :account AND provider_id = :old"
                     " AND NOT EXISTS (SELECT 1 FROM messages"
                     "   WHERE account = :account AND provider_id = :new)",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":new", new_id);
    mps__bind_text(st, ":old", old_id);
    mps__bind_text(st, ":account", cx->b->account);
    int rc = mps__step_done(cx->s, st, error_r, "store: re-key message");
    mps__finish(cx->s, st);
    if (rc == 0 && mps__changes(cx->s) > 0)
        *applied_r = 1;
    return rc;
}

/* Fill a fresh or tombstoned row from a NEW/SYNCED change. */
static void fill_from_change(commit_ctx *cx, stored *r, const mp_change *c, char *flags)
{
    mps_message *m = &r->m;
    if (m->id == NULL) {
        char id[26];
        mps_message_public_id(cx->b->account, c->id, id, sizeof id);
        m->id = mpu_strdup(id);
        m->account = mpu_strdup(cx->b->account);
        m->provider_id = mpu_strdup(c->id);
    }
    /* A revived tombstone starts over from the change, keeping only its
     * public id and version history. */
    char *keep_id = m->id, *keep_account = m->account, *keep_pid = m->provider_id;
    m->id = m->account = m->provider_id = NULL;
    mps_message_clear(m);
    m->id = keep_id;
    m->account = keep_account;
    m->provider_id = keep_pid;
    m->folder = mpu_strdup(cx->b->folder);
    m->ref = mpu_strdup(c->ref);
    m->uid = c->uid;
    m->message_id = mpu_strdup(c->message_id);
    m->subject = mpu_strdup(c->subject);
    m->from = mpu_strdup(c->from);
    m->to = mpu_strdup(c->to);
    m->date = c->date;
    m->size = c->size;
    m->thread_id = mpu_strdup(c->thread_id);
    m->flags = flags != NULL ? flags : mpu_strdup("");
    m->deleted = 0;
    m->indexed_ms = cx->now;
}

/* Fold a change into a live stored message. `full` (NEW/SYNCED): the
 * change describes the whole message; only flags are a visible change
 * then, the rest is a silent refresh. Folders and UIDs are memberships
 * (apply_change). Takes `flags`. */
static int merge(commit_ctx *cx, stored *r, const mp_change *c, char *flags, int full)
{
    mps_message *m = &r->m;
    int text = full ? CH_SILENT : CH_VISIBLE;
    int ch = 0;
    if (set_str(&m->flags, flags))
        ch |= CH_VISIBLE;
    free(flags);
    if (set_str(&m->subject, c->subject))
        ch |= text;
    if (set_str(&m->from, c->from))
        ch |= text;
    if (set_str(&m->to, c->to))
        ch |= text;
    if (set_str(&m->message_id, c->message_id))
        ch |= text;
    if (set_str(&m->thread_id, c->thread_id))
        ch |= text;
    if (c->date != 0 && c->date != m->date) {
        m->date = c->date;
        ch |= text;
    }
    if (c->size > 0 && c->size != m->size) {
        m->size = c->size;
        ch |= CH_SILENT;
    }
    /* For a full description a NULL ref means "the id" and replaces a
     * stale one; an update only changes what it names. */
    if (full && !same_str(m->ref, c->ref)) {
        free(m->ref);
        m->ref = mpu_strdup(c->ref);
        ch |= CH_SILENT;
    } else if (!full && set_str(&m->ref, c->ref)) {
        ch |= CH_SILENT;
    }
    return ch;
}

static void count_delta(commit_ctx *cx, const char *folder, int64_t live, int64_t bodies)
{
    if (folder == NULL || (live == 0 && bodies == 0))
        return;
    for (size_t i = 0; i < cx->n_deltas; i++) {
        if (strcmp(cx->deltas[i].folder, folder) == 0) {
            cx->deltas[i].live += live;
            cx->deltas[i].bodies += bodies;
            return;
        }
    }
    cx->deltas = mpu_realloc(cx->deltas, (cx->n_deltas + 1) * sizeof *cx->deltas);
    cx->deltas[cx->n_deltas++] = (struct folder_delta){mpu_strdup(folder), live, bodies};
}

static int write_deltas(commit_ctx *cx, char **error_r)
{
    for (size_t i = 0; i < cx->n_deltas; i++) {
        const struct folder_delta *d = &cx->deltas[i];
        if (d->live == 0 && d->bodies == 0)
            continue;
        mps__stmt *st;
        if (mps__prepare(cx->s,
                         "UPDATE folders SET live_count = live_count + :live,"
                         " body_count = body_count + :bodies"
                         " WHERE account = :account AND name = :name",
                         &st, error_r) < 0)
            return -1;
        mps__bind_int(st, ":live", d->live);
        mps__bind_int(st, ":bodies", d->bodies);
        mps__bind_text(st, ":account", cx->b->account);
        mps__bind_text(st, ":name", d->folder);
        int rc = mps__step_done(cx->s, st, error_r, "store: count folder");
        mps__finish(cx->s, st);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static void free_deltas(commit_ctx *cx)
{
    for (size_t i = 0; i < cx->n_deltas; i++)
        free(cx->deltas[i].folder);
    free(cx->deltas);
    cx->deltas = NULL;
    cx->n_deltas = 0;
}

static int drop_body(commit_ctx *cx, const char *id, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(cx->s, "DELETE FROM bodies WHERE message_id = :id", &st, error_r) <
        0)
        return -1;
    mps__bind_text(st, ":id", id);
    int rc = mps__step_done(cx->s, st, error_r, "store: drop body");
    mps__finish(cx->s, st);
    return rc;
}

/* The stored memberships of a message. */
static int load_members(commit_ctx *cx, const char *id, fset *f_r, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(cx->s,
                     "SELECT folder, uid FROM memberships WHERE message = :id",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", id);
    int rc;
    while ((rc = mps__step(st)) == MPS__ROW)
        fset_add(f_r, mps__col_cstr(st, 0),
                 (uint32_t)mps__col_int64(st, 1));
    mps__finish(cx->s, st);
    if (rc != MPS__DONE)
        return mps__fail(cx->s, error_r, "store: read memberships");
    return 0;
}

static int member_sql(commit_ctx *cx, const char *sql, const stored *r, const char *folder,
                      uint32_t uid, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(cx->s, sql, &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", r->m.account);
    mps__bind_text(st, ":folder", folder);
    mps__bind_text(st, ":id", r->m.id);
    mps__bind_int(st, ":uid", uid);
    mps__bind_int(st, ":date", r->m.date);
    mps__bind_int(st, ":now", cx->now);
    int rc = mps__step_done(cx->s, st, error_r, "store: write membership");
    mps__finish(cx->s, st);
    return rc;
}

/* Make the stored memberships `cur` into `target` (with its UIDs), and
 * give every one the message's date. */
static int write_members(commit_ctx *cx, const stored *r, const fset *cur,
                         const fset *target, int date_changed, char **error_r)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < cur->n; i++) {
        if (!fset_has(target, cur->names[i]))
            rc = member_sql(cx,
                            "DELETE FROM memberships WHERE account = :account"
                            " AND folder = :folder AND message = :id",
                            r, cur->names[i], 0, error_r);
    }
    for (size_t i = 0; rc == 0 && i < target->n; i++) {
        int found;
        size_t j = fset_find(cur, target->names[i], &found);
        if (!found)
            rc = member_sql(cx,
                            "INSERT INTO memberships (account, folder, message, uid,"
                            " date, added_ms) VALUES (:account, :folder, :id, :uid,"
                            " :date, :now)",
                            r, target->names[i], target->uids[i], error_r);
        else if (cur->uids[j] != target->uids[i])
            rc = member_sql(cx,
                            "UPDATE memberships SET uid = :uid WHERE account = :account"
                            " AND folder = :folder AND message = :id",
                            r, target->names[i], target->uids[i], error_r);
    }
    if (rc == 0 && date_changed)
        rc = member_sql(cx,
                        "UPDATE memberships SET date = :date WHERE message = :id"
                        " AND date != :date",
                        r, NULL, 0, error_r);
    return rc;
}

/* Whether one of `added` is the account's INBOX (by role). */
static int enters_inbox(commit_ctx *cx, const fset *added, int *yes_r, char **error_r)
{
    *yes_r = 0;
    for (size_t i = 0; i < added->n && !*yes_r; i++) {
        mps__stmt *st;
        if (mps__prepare(cx->s,
                         "SELECT 1 FROM folders WHERE account = :account"
                         " AND name = :name AND role = :role",
                         &st, error_r) < 0)
            return -1;
        mps__bind_text(st, ":account", cx->b->account);
        mps__bind_text(st, ":name", added->names[i]);
        mps__bind_int(st, ":role", MP_ROLE_INBOX);
        int rc = mps__step_row(cx->s, st, error_r, "store: folder role");
        mps__finish(cx->s, st);
        if (rc < 0)
            return -1;
        *yes_r = rc == 0;
    }
    return 0;
}

/* The folders a change leaves the message in (see store.h). `cur` holds
 * the stored memberships of a live message (empty otherwise). */
static void target_folders(commit_ctx *cx, const mp_change *c, const struct mps__mem *mem,
                           int live, const fset *cur, fset *t_r)
{
    const char *here = cx->b->folder;
    if (c->kind == MP_CHANGE_DELETED)
        return;
    if (mem != NULL && mem->has_set) {
        for (size_t i = 0; i < mem->n_folders; i++)
            fset_add(t_r, mem->folders[i], 0);
    } else if ((c->kind == MP_CHANGE_NEW || c->kind == MP_CHANGE_SYNCED) &&
               (!live || mem == NULL)) {
        if (here != NULL)
            fset_add(t_r, here, 0);
    } else {
        for (size_t i = 0; i < cur->n; i++)
            fset_add(t_r, cur->names[i], 0);
        if (c->kind != MP_CHANGE_UPDATED && here != NULL)
            fset_add(t_r, here, 0);
    }
    if (mem != NULL) {
        for (size_t i = 0; i < mem->n_added; i++)
            fset_add(t_r, mem->added[i], 0);
        for (size_t i = 0; i < mem->n_removed; i++)
            fset_del(t_r, mem->removed[i]);
    }
    /* A missing name (staged as "") is no folder. */
    fset_del(t_r, "");
    /* UIDs: the change's in the batch's folder, the stored ones elsewhere. */
    for (size_t i = 0; i < t_r->n; i++) {
        uint32_t uid = fset_uid(cur, t_r->names[i]);
        if (c->uid != 0 && here != NULL && strcmp(t_r->names[i], here) == 0)
            uid = c->uid;
        t_r->uids[i] = uid;
    }
}

/* The primary folder after a change: the one it had if still there, else
 * the batch's folder if in it, else the first by name. */
static const char *primary_of(commit_ctx *cx, const char *was, const fset *target)
{
    if (was != NULL && fset_has(target, was))
        return was;
    if (cx->b->folder != NULL && fset_has(target, cx->b->folder))
        return cx->b->folder;
    return target->n > 0 ? target->names[0] : was;
}

static int apply_change(commit_ctx *cx, const mp_change *c, const struct mps__mem *mem,
                        char **error_r)
{
    if (c->id == NULL)
        return 0;
    int applied = 0;
    if (c->old_id != NULL && strcmp(c->old_id, c->id) != 0 &&
        rekey(cx, c->old_id, c->id, &applied, error_r) < 0)
        return -1;

    stored r;
    int found = load_stored(cx, c->id, &r, error_r);
    if (found < 0)
        return -1;
    int live = found == 0 && !r.m.deleted;
    /* The message's share of its folders' counts before the change. */
    int exists = found == 0;
    int body_row = exists && r.body_row;
    int was_body = body_row;
    fset cur = {0}, target = {0}, added = {0}, removed = {0};
    int rc = 0;
    if (live)
        rc = load_members(cx, r.m.id, &cur, error_r);
    if (rc == 0)
        target_folders(cx, c, mem, live, &cur, &target);
    for (size_t i = 0; i < target.n; i++)
        if (!fset_has(&cur, target.names[i]))
            fset_add(&added, target.names[i], 0);
    for (size_t i = 0; i < cur.n; i++)
        if (!fset_has(&target, cur.names[i]))
            fset_add(&removed, cur.names[i], 0);
    /* Changes given with memberships say where the message is now. */
    mem_note note = {NULL, NULL, mem != NULL ? &target : NULL};
    int kind = c->kind;
    if (rc == 0 && kind != MP_CHANGE_DELETED && target.n == 0)
        kind = live ? MP_CHANGE_DELETED : -1; /* left its last folder / nowhere to go */
    if (rc < 0)
        kind = -1;
    int full = kind == MP_CHANGE_NEW || kind == MP_CHANGE_SYNCED;
    if (full && !live) {
        const char *type = kind == MP_CHANGE_NEW ? "message.new" : "message.synced";
        fill_from_change(cx, &r, c, normalize_flags(c->flags));
        free(r.m.folder);
        r.m.folder = mpu_strdup(primary_of(cx, NULL, &target));
        r.m.uid = fset_uid(&target, r.m.folder);
        r.version++;
        rc = write_row(cx, &r, error_r);
        exists = 1;
        if (rc == 0)
            rc = write_members(cx, &r, &cur, &target, 0, error_r);
        mem_note born = {NULL, NULL, mem != NULL ? &target : NULL};
        if (rc == 0)
            rc = message_event(cx, type, &r, &born, error_r);
        if (rc == 0 && kind == MP_CHANGE_NEW && c->raw == NULL)
            note_new(cx, r.m.id);
        if (kind == MP_CHANGE_SYNCED)
            cx->synced_added++;
        applied = 1;
    } else if ((full || kind == MP_CHANGE_UPDATED) && live) {
        int64_t was_date = r.m.date;
        int ch = merge(cx, &r, c, normalize_flags(c->flags), full);
        int moved = added.n > 0 || removed.n > 0;
        if (moved) {
            ch |= CH_VISIBLE;
            /* Membership changes always say so, whoever staged them. */
            note.added = &added;
            note.removed = &removed;
            note.now = &target;
        }
        const char *primary = primary_of(cx, r.m.folder, &target);
        if (!same_str(primary, r.m.folder)) {
            char *p = mpu_strdup(primary);
            free(r.m.folder);
            r.m.folder = p;
        }
        uint32_t uid = fset_uid(&target, r.m.folder);
        if (uid != r.m.uid) {
            r.m.uid = uid;
            ch |= CH_SILENT;
        }
        for (size_t i = 0; i < target.n; i++)
            if (target.uids[i] != fset_uid(&cur, target.names[i]))
                ch |= CH_SILENT;
        if (ch & CH_VISIBLE)
            r.version++;
        if (ch != 0) {
            rc = write_row(cx, &r, error_r);
            if (rc == 0)
                rc = write_members(cx, &r, &cur, &target, r.m.date != was_date, error_r);
            applied = 1;
        }
        const char *type = "message.updated";
        if (rc == 0 && moved && kind == MP_CHANGE_NEW) {
            int inbox = 0;
            rc = enters_inbox(cx, &added, &inbox, error_r);
            if (inbox) {
                type = "message.new";
                if (!body_row)
                    note_new(cx, r.m.id);
            }
        }
        if (rc == 0 && (ch & CH_VISIBLE))
            rc = message_event(cx, type, &r, &note, error_r);
    } else if (kind == MP_CHANGE_DELETED && live) {
        r.m.deleted = 1;
        r.version++;
        rc = write_row(cx, &r, error_r);
        fset none = {0};
        if (rc == 0)
            rc = write_members(cx, &r, &cur, &none, 0, error_r);
        if (rc == 0)
            rc = drop_body(cx, r.m.id, error_r);
        body_row = 0;
        mem_note gone = {NULL, mem != NULL ? &removed : NULL, NULL};
        if (rc == 0)
            rc = message_event(cx, "message.deleted", &r, &gone, error_r);
        applied = 1;
    }
    if (rc == 0 && kind != MP_CHANGE_DELETED && kind >= 0 && c->raw != NULL &&
        c->raw_len > 0 && r.m.id != NULL && !r.m.deleted && exists) {
        int64_t expires = cx->retention_ms > 0 ? cx->now + cx->retention_ms : 0;
        rc = mps__body_store(cx->s, r.m.id, c->raw, c->raw_len, expires, error_r);
        body_row = 1;
        applied = 1;
    }
    /* Its share after: taken from the folders it was in, given to those
     * it is in now (the same ones, mostly, which nets out). */
    if (rc == 0) {
        for (size_t i = 0; i < cur.n; i++)
            count_delta(cx, cur.names[i], -1, -was_body);
        if (exists && !r.m.deleted)
            for (size_t i = 0; i < target.n; i++)
                count_delta(cx, target.names[i], 1, body_row);
    }
    fset_clear(&cur);
    fset_clear(&target);
    fset_clear(&added);
    fset_clear(&removed);
    mps_message_clear(&r.m);
    if (rc == 0 && applied)
        cx->res.applied++;
    return rc;
}

static int ensure_folder(commit_ctx *cx, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(cx->s,
                     "INSERT INTO folders (account, name) VALUES (:account, :name)"
                     " ON CONFLICT (account, name) DO NOTHING",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", cx->b->account);
    mps__bind_text(st, ":name", cx->b->folder);
    int rc = mps__step_done(cx->s, st, error_r, "store: folder of batch");
    mps__finish(cx->s, st);
    return rc;
}

static int reset_event(commit_ctx *cx, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(cx->s,
                     "UPDATE folders SET resets = resets + 1"
                     " WHERE account = :account AND name = :name RETURNING resets",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", cx->b->account);
    mps__bind_text(st, ":name", cx->b->folder);
    if (mps__step(st) != MPS__ROW) {
        mps__fail(cx->s, error_r, "store: count folder reset");
        mps__finish(cx->s, st);
        return -1;
    }
    int64_t n = mps__col_int64(st, 0);
    /* RETURNING statements write when stepped to the end. */
    int rc = mps__step_done(cx->s, st, error_r, "store: count folder reset");
    mps__finish(cx->s, st);
    if (rc < 0)
        return -1;

    json_t *data = json_object();
    if (cx->b->reset_reason != NULL)
        json_object_set_new(data, "reason", mps__json_string(cx->b->reset_reason, 0));
    char *data_json = mps__json_take(data);
    char *key =
        mpu_asprintf("%s/%s/reset/%lld", cx->b->account, cx->b->folder, (long long)n);
    int64_t seq = 0;
    rc = mps__event_add(cx->s, "folder.reset", cx->b->account, cx->b->folder, NULL, key,
                        data_json, &seq, error_r);
    free(key);
    free(data_json);
    if (rc == 0) {
        cx->res.events++;
        if (seq > cx->res.last_seq)
            cx->res.last_seq = seq;
    }
    return rc < 0 ? -1 : 0;
}

static int advance_folder(commit_ctx *cx, const char *cursor, const char *backfill_pos,
                          int backfill_done, char **error_r)
{
    mps__stmt *st;
    /* A committed step is a successful sync of the folder: it clears the
     * folder's last error. A position given means the pending manual
     * backfill request has been served. */
    if (mps__prepare(
            cx->s,
            "UPDATE folders SET cursor = COALESCE(:cursor, cursor),"
            " bootstrapped = CASE WHEN :cursor IS NULL THEN bootstrapped ELSE 1 END,"
            " backfill_pos = COALESCE(:pos, backfill_pos),"
            " backfill_requested = CASE WHEN :pos IS NULL THEN backfill_requested"
            "   ELSE 0 END,"
            " backfill_done = CASE WHEN :done < 0 THEN backfill_done ELSE :done END,"
            " synced_count = synced_count + :synced,"
            " last_sync_ms = :now, last_error = NULL"
            " WHERE account = :account AND name = :name",
            &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":cursor", cursor);
    mps__bind_text(st, ":pos", backfill_pos);
    mps__bind_int(st, ":done", backfill_done < 0 ? -1 : backfill_done != 0);
    mps__bind_int(st, ":synced", cx->synced_added);
    mps__bind_int(st, ":now", cx->now);
    mps__bind_text(st, ":account", cx->b->account);
    mps__bind_text(st, ":name", cx->b->folder);
    int rc = mps__step_done(cx->s, st, error_r, "store: advance folder");
    mps__finish(cx->s, st);
    return rc;
}

int mps_batch_commit(mps_store *s, mps_batch *b, const char *cursor,
                     const char *backfill_pos, int backfill_done, int64_t retention_ms,
                     mps_commit_result *result_r, char **error_r)
{
    if (result_r != NULL)
        memset(result_r, 0, sizeof *result_r);
    commit_ctx cx = {
        .s = s,
        .b = b,
        .now = mpu_now_ms(),
        .retention_ms = retention_ms,
    };
    /* A batch of no folder (account_delta: a change log over the whole
     * mailbox) names its folders change by change; it has no folder row
     * to create, reset or advance, and no folder cursor. */
    int account_wide = b->folder == NULL;
    if (account_wide && (cursor != NULL || backfill_pos != NULL || b->reset)) {
        if (error_r != NULL)
            *error_r = mpu_strdup("store: a batch of no folder has no folder cursor,"
                                  " backfill position or reset");
        return -1;
    }
    if (mps__begin(s, error_r) < 0)
        return -1;
    /* Cluster mode: first, so the lease is checked (and held FOR SHARE)
     * at the start of the transaction that writes. */
    int rc = mps__fence(s, b->account, error_r) != 0 ? -1 : 0;
    if (rc == 0 && !account_wide)
        rc = ensure_folder(&cx, error_r);
    if (rc == 0 && b->reset)
        rc = reset_event(&cx, error_r);
    for (size_t i = 0; rc == 0 && i < b->n; i++)
        rc = apply_change(&cx, &b->changes[i], b->mems[i], error_r);
    if (rc == 0 && b->has_account_cursor)
        rc = mps__account_cursor_write(s, b->account, b->account_cursor, error_r);
    for (size_t i = 0; rc == 0 && i < b->n_state; i++)
        rc = mps__state_write(s, b->account, b->state[i].key, b->state[i].value, error_r);
    if (rc == 0)
        rc = write_deltas(&cx, error_r);
    free_deltas(&cx);
    if (rc == 0 && !account_wide)
        rc = advance_folder(&cx, cursor, backfill_pos, backfill_done, error_r);
    if (rc < 0) {
        /* The staged changes stay: nothing of them was written. */
        mps__rollback(s);
        free(cx.new_ids);
        return -1;
    }
    if (mps__commit(s, error_r) < 0) {
        free(cx.new_ids);
        return -1;
    }
    mps__batch_clear(b);
    if (result_r != NULL)
        *result_r = cx.res;
    /* Only once committed: a listener must never see an id that a
     * rollback takes back. */
    for (size_t i = 0; i < cx.n_new; i++)
        b->on_new(b->account, cx.new_ids[i], b->on_new_arg);
    free(cx.new_ids);
    return 0;
}

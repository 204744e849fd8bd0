/* Folder rows: sync position, backfill state and per-folder counters. */
#include "store/store-private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int mps_folder_ensure(mps_store *s, const char *account, const char *folder, int role,
                      char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "INSERT INTO folders (account, name, role) VALUES (:account,"
                     " :name, :role) ON CONFLICT (account, name) DO UPDATE"
                     " SET role = excluded.role"
                     " WHERE folders.role IS DISTINCT FROM excluded.role",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    mps__bind_text(st, ":name", folder);
    mps__bind_int(st, ":role", role);
    int rc = mps__step_done(s, st, error_r, "store: ensure folder");
    mps__finish(s, st);
    return rc;
}

/* The counts are kept with every write (migration 5). Bodies past their
 * expiry that the daily cleanup has not removed yet are not cached any
 * more: they come off, found through the expiry index (usually none).
 * SQLite is told to start there (INDEXED BY). PostgreSQL is made to by
 * materializing them first: its planner, with statistics from before a
 * bulk sync, otherwise walks the folder's memberships (9 ms a call at
 * 10,000 messages instead of 0.1 ms). */
#define FOLDER_COLS                                                                      \
    "SELECT f.account, f.name, f.role, f.cursor, f.backfill_pos, f.bootstrapped,"        \
    " f.backfill_done, f.backfill_requested, f.live_count,"
#define FOLDER_TAIL                                                                      \
    " f.synced_count, f.resets, f.last_sync_ms, f.last_error FROM folders f"
#define FOLDER_SELECT_SQLITE                                                             \
    FOLDER_COLS                                                                          \
    " f.body_count - (SELECT COUNT(*) FROM bodies b INDEXED BY bodies_by_expiry"         \
    "   JOIN memberships ms ON ms.message = b.message_id"                                \
    "   WHERE b.expires_ms BETWEEN 1 AND :now AND ms.account = f.account"                \
    "   AND ms.folder = f.name)," FOLDER_TAIL
#define FOLDER_SELECT_PG                                                                 \
    "WITH expired AS MATERIALIZED (SELECT message_id FROM bodies"                        \
    "   WHERE expires_ms BETWEEN 1 AND :now) " FOLDER_COLS                               \
    " f.body_count - (SELECT COUNT(*) FROM expired b"                                    \
    "   JOIN memberships ms ON ms.message = b.message_id"                                \
    "   WHERE ms.account = f.account AND ms.folder = f.name)," FOLDER_TAIL
#define FOLDER_SELECT(s, where)                                                          \
    mps__sql(s, FOLDER_SELECT_SQLITE where, FOLDER_SELECT_PG where)

static void read_folder(mps__stmt *st, mps_folder *f)
{
    f->account = mps__col_text(st, 0);
    f->name = mps__col_text(st, 1);
    f->role = mps__col_int(st, 2);
    f->cursor = mps__col_text(st, 3);
    f->backfill_pos = mps__col_text(st, 4);
    f->bootstrapped = mps__col_int(st, 5);
    f->backfill_done = mps__col_int(st, 6);
    f->backfill_requested = mps__col_int(st, 7);
    f->messages = mps__col_int64(st, 8);
    f->bodies = mps__col_int64(st, 9);
    f->synced_count = mps__col_int64(st, 10);
    f->resets = mps__col_int64(st, 11);
    f->last_sync_ms = mps__col_int64(st, 12);
    f->last_error = mps__col_text(st, 13);
}

int mps_folder_get(mps_store *s, const char *account, const char *folder,
                   mps_folder *folder_r, char **error_r)
{
    memset(folder_r, 0, sizeof *folder_r);
    mps__stmt *st;
    if (mps__prepare(s,
                     FOLDER_SELECT(s, " WHERE f.account = :account AND f.name = :name"),
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    mps__bind_text(st, ":name", folder);
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc = mps__step_row(s, st, error_r, "store: read folder");
    if (rc == 0) {
        read_folder(st, folder_r);
    }
    mps__finish(s, st);
    return rc;
}

int mps_folders_list(mps_store *s, const char *account, mps_folder **list_r, size_t *n_r,
                     char **error_r)
{
    *list_r = NULL;
    *n_r = 0;
    mps__stmt *st;
    /* Roles in enum order (inbox first), folders without a role last. */
    if (mps__prepare(
            s,
            FOLDER_SELECT(s, " WHERE f.account = :account ORDER BY"
                             " CASE f.role WHEN 0 THEN 1 ELSE 0 END, f.role, f.name"),
            &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    mps__bind_int(st, ":now", mpu_now_ms());
    mps_folder *list = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = mps__step(st)) == MPS__ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            list = mpu_realloc(list, cap * sizeof *list);
        }
        read_folder(st, &list[n++]);
    }
    if (rc != MPS__DONE) {
        mps__fail(s, error_r, "store: list folders");
        mps__finish(s, st);
        mps_folders_free(&list, n);
        return -1;
    }
    mps__finish(s, st);
    *list_r = list;
    *n_r = n;
    return 0;
}

void mps_folder_clear(mps_folder *f)
{
    if (f == NULL)
        return;
    free(f->account);
    free(f->name);
    free(f->cursor);
    free(f->backfill_pos);
    free(f->last_error);
    memset(f, 0, sizeof *f);
}

void mps_folders_free(mps_folder **list, size_t n)
{
    if (list == NULL || *list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        mps_folder_clear(&(*list)[i]);
    free(*list);
    *list = NULL;
}

/* Run a one-row UPDATE keyed on :account/:name; returns 1 when no folder
 * matched. */
static int update_folder(mps_store *s, mps__stmt *st, const char *account,
                         const char *folder, char **error_r)
{
    mps__bind_text(st, ":account", account);
    mps__bind_text(st, ":name", folder);
    int rc = mps__step_done(s, st, error_r, "store: update folder");
    if (rc == 0 && mps__changes(s) == 0)
        rc = 1;
    mps__finish(s, st);
    return rc;
}

int mps_folder_set_error(mps_store *s, const char *account, const char *folder,
                         const char *error, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "UPDATE folders SET last_error = :error"
                     " WHERE account = :account AND name = :name",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":error", error);
    int rc = update_folder(s, st, account, folder, error_r);
    if (rc == 1)
        return mps__error(error_r, "store: unknown folder \"%s\" of \"%s\"", folder,
                          account);
    return rc;
}

int mps_folder_request_backfill(mps_store *s, const char *account, const char *folder,
                                char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "UPDATE folders SET backfill_requested = 1"
                     " WHERE account = :account AND name = :name",
                     &st, error_r) < 0)
        return -1;
    return update_folder(s, st, account, folder, error_r);
}

int mps_folder_reset(mps_store *s, const char *account, const char *folder,
                     char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "UPDATE folders SET cursor = NULL, bootstrapped = 0,"
                     " backfill_pos = NULL, backfill_done = 0"
                     " WHERE account = :account AND name = :name",
                     &st, error_r) < 0)
        return -1;
    int rc = update_folder(s, st, account, folder, error_r);
    if (rc == 1)
        return mps__error(error_r, "store: unknown folder \"%s\" of \"%s\"", folder,
                          account);
    return rc;
}

int mps_folder_delete(mps_store *s, const char *account, const char *folder,
                      char **error_r)
{
    static const char *const sql[] = {
        "DELETE FROM memberships WHERE account = :account AND folder = :name",
        "DELETE FROM push_hints WHERE account = :account AND folder = :name",
        "DELETE FROM folders WHERE account = :account AND name = :name",
    };
    if (mps__begin(s, error_r) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0] && rc == 0; i++) {
        mps__stmt *st;
        if (mps__prepare(s, sql[i], &st, error_r) < 0) {
            rc = -1;
            break;
        }
        rc = update_folder(s, st, account, folder, error_r);
        /* Only the folder row itself must have been there. */
        if (rc == 1 && i + 1 < sizeof sql / sizeof sql[0])
            rc = 0;
    }
    if (rc != 0) {
        mps__rollback(s);
        return rc;
    }
    return mps__commit(s, error_r);
}

/* The SQLite backend of the store seam (db.h): its connection, statements
 * and transactions, and opening a store file. */
#include "store/sqlite/sqlite-private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/util.h"

/*
 * Durability level. WAL with synchronous=NORMAL syncs at checkpoints, not
 * at every commit: a committed transaction survives any process crash
 * (SIGKILL, abort), which is what the store promises. A power loss may drop
 * the last few commits, but WAL replay is atomic, so messages, their events
 * and the cursor go back together and the invariant of store.h still holds;
 * the next sync re-emits the same changes under the same idempotency keys.
 * FULL would fsync every commit for a guarantee we do not make.
 */
#define MPS_SYNCHRONOUS "NORMAL"
/* Page cache per connection, in KiB (SQLite's default is 2 MB). A sync
 * transaction (500 messages, a few MB of bodies) then stays in memory
 * until its commit instead of spilling pages to the WAL halfway, some of
 * which the rest of the transaction changes and writes again: about an
 * eighth of the daemon's CPU in a full sync with bodies. Memory is taken
 * as pages are used, per connection (the loop, each worker, the
 * checkpointer). */
#define MPS_CACHE_KB "8192"
/* Writers wait this long for each other's lock before failing. */
#define MPS_BUSY_TIMEOUT_MS 10000

/* The statement: the seam's header, then SQLite's. */
struct sq_stmt {
    struct mps__stmt base;
    struct mps__sqlite *conn;
    sqlite3_stmt *st;
};

static const struct mps__db_ops sq_ops;

struct mps__sqlite *mps__sqlite_of(mps_store *s)
{
    return s != NULL && s->ops == &sq_ops ? (struct mps__sqlite *)s : NULL;
}

static sqlite3 *sq_db(mps_store *s)
{
    return ((struct mps__sqlite *)s)->db;
}

static int sq_prepare(mps_store *s, const char *sql, mps__stmt **st_r, char **error_r)
{
    sqlite3_stmt *raw = NULL;
    if (sqlite3_prepare_v3(sq_db(s), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, NULL) !=
        SQLITE_OK) {
        mps__fail(s, error_r, "store: prepare");
        sqlite3_finalize(raw);
        return -1;
    }
    struct sq_stmt *st = mpu_calloc(1, sizeof *st);
    st->base.ops = &sq_ops;
    st->conn = (struct mps__sqlite *)s;
    st->st = raw;
    *st_r = &st->base;
    return 0;
}

static sqlite3_stmt *raw(mps__stmt *st)
{
    return ((struct sq_stmt *)st)->st;
}

static void sq_reset(mps__stmt *st)
{
    sqlite3_reset(raw(st));
    sqlite3_clear_bindings(raw(st));
}

static void sq_finalize(mps__stmt *st)
{
    sqlite3_finalize(raw(st));
    free(st);
}

static int sq_step(mps__stmt *st)
{
    int rc = sqlite3_step(raw(st));
    if (rc == SQLITE_ROW)
        return MPS__ROW;
    if (rc == SQLITE_DONE)
        return MPS__DONE;
    return MPS__ERROR;
}

static void sq_bind_text(mps__stmt *st, const char *name, const char *value)
{
    int i = sqlite3_bind_parameter_index(raw(st), name);
    if (i == 0)
        return;
    if (value == NULL)
        sqlite3_bind_null(raw(st), i);
    else
        sqlite3_bind_text(raw(st), i, value, -1, SQLITE_TRANSIENT);
}

static void sq_bind_int(mps__stmt *st, const char *name, int64_t value)
{
    int i = sqlite3_bind_parameter_index(raw(st), name);
    if (i != 0)
        sqlite3_bind_int64(raw(st), i, value);
}

static void sq_bind_blob(mps__stmt *st, const char *name, const void *data, size_t len)
{
    int i = sqlite3_bind_parameter_index(raw(st), name);
    if (i != 0)
        sqlite3_bind_blob64(raw(st), i, data, len, SQLITE_TRANSIENT);
}

static int sq_col_null(mps__stmt *st, int col)
{
    return sqlite3_column_type(raw(st), col) == SQLITE_NULL;
}

static int64_t sq_col_int64(mps__stmt *st, int col)
{
    return sqlite3_column_int64(raw(st), col);
}

static const char *sq_col_text(mps__stmt *st, int col, size_t *len_r)
{
    *len_r = 0;
    if (sqlite3_column_type(raw(st), col) == SQLITE_NULL)
        return NULL;
    const unsigned char *text = sqlite3_column_text(raw(st), col);
    *len_r = (size_t)sqlite3_column_bytes(raw(st), col);
    return (const char *)text;
}

static const void *sq_col_blob(mps__stmt *st, int col, size_t *len_r)
{
    const void *blob = sqlite3_column_blob(raw(st), col);
    *len_r = (size_t)sqlite3_column_bytes(raw(st), col);
    return blob;
}

static int64_t sq_changes(mps_store *s)
{
    return sqlite3_changes64(sq_db(s));
}

static int sq_exec(mps_store *s, const char *sql, char **error_r)
{
    char *msg = NULL;
    if (sqlite3_exec(sq_db(s), sql, NULL, NULL, &msg) != SQLITE_OK) {
        mps__error(error_r, "store: %s", msg != NULL ? msg : sqlite3_errmsg(sq_db(s)));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static const char *sq_errmsg(mps_store *s)
{
    return sqlite3_errmsg(sq_db(s));
}

/* Write transactions start with BEGIN IMMEDIATE so two connections never
 * deadlock upgrading a read lock; writers wait for each other's lock up to
 * the busy timeout. */
static int sq_begin(mps_store *s, char **error_r)
{
    return sq_exec(s, "BEGIN IMMEDIATE", error_r);
}

static int sq_commit(mps_store *s, char **error_r)
{
    return sq_exec(s, "COMMIT", error_r);
}

static void sq_rollback(mps_store *s)
{
    if (!sqlite3_get_autocommit(sq_db(s)))
        sqlite3_exec(sq_db(s), "ROLLBACK", NULL, NULL, NULL);
}

static void sq_close(mps_store *s)
{
    sqlite3_close_v2(sq_db(s));
    free(s);
}

static const struct mps__db_ops sq_ops = {
    .dialect = MPS__SQLITE,
    .schema = mps__sqlite_schema,
    .prepare = sq_prepare,
    .reset = sq_reset,
    .finalize = sq_finalize,
    .step = sq_step,
    .bind_text = sq_bind_text,
    .bind_int = sq_bind_int,
    .bind_blob = sq_bind_blob,
    .col_null = sq_col_null,
    .col_int64 = sq_col_int64,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
    .changes = sq_changes,
    .exec = sq_exec,
    .errmsg = sq_errmsg,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .close = sq_close,
};

static int set_pragmas(mps_store *s, char **error_r)
{
    sqlite3_busy_timeout(sq_db(s), MPS_BUSY_TIMEOUT_MS);
    /* journal_mode answers with the mode actually in effect: a file system
     * without shared memory support silently stays in rollback mode. */
    mps__stmt *st;
    if (mps__prepare(s, "PRAGMA journal_mode=WAL", &st, error_r) < 0)
        return -1;
    if (mps__step(st) != MPS__ROW) {
        mps__finish(s, st);
        return mps__fail(s, error_r, "store: set WAL mode");
    }
    const char *mode = mps__col_cstr(st, 0);
    int wal = mode != NULL && sqlite3_stricmp(mode, "wal") == 0;
    mps__finish(s, st);
    if (!wal)
        return mps__error(error_r, "store: WAL journal mode is not available");
    return mps__exec(s,
                     "PRAGMA synchronous=" MPS_SYNCHRONOUS ";"
                     "PRAGMA foreign_keys=ON;"
                     "PRAGMA cache_size=-" MPS_CACHE_KB ";",
                     error_r);
}

/* The store holds secrets (a driver's rotated refresh token, a push
 * subscription's secret): the database is owner-only whatever the umask,
 * and so are its -wal and -shm files, which SQLite creates with the
 * database file's mode. By path only, never by opening the file: closing
 * any descriptor of a database drops every POSIX lock this process holds
 * on it, the other connections' included. Called after SQLite opened (and
 * so created) the file; an empty new file is readable by the group for an
 * instant at most. */
static int owner_only(const char *path, char **error_r)
{
    if (path[0] == ':' || strncmp(path, "file:", 5) == 0)
        return 0; /* in memory, or a URI: not a plain file of ours */
    struct stat st;
    if (stat(path, &st) < 0 || (st.st_mode & 077) == 0)
        return 0;
    if (chmod(path, st.st_mode & 0700) < 0)
        return mps__error(error_r, "store: cannot make \"%s\" owner-only: %s", path,
                          strerror(errno));
    return 0;
}

int mps__sqlite_open(const char *path, mps_store **store_r, char **error_r)
{
    *store_r = NULL;
    struct mps__sqlite *c = mpu_calloc(1, sizeof *c);
    c->base.ops = &sq_ops;
    mps_store *s = &c->base;
    int rc =
        sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        /* The pool tells a descriptor shortage (a retry) by this. */
        int sys = c->db != NULL ? sqlite3_system_errno(c->db) : 0;
        if (c->db != NULL)
            mps__error(error_r, "store: cannot open \"%s\": %s", path,
                       sqlite3_errmsg(c->db));
        else
            mps__error(error_r, "store: cannot open \"%s\": %s", path,
                       sqlite3_errstr(rc));
        mps_close(&s);
        errno = sys;
        return -1;
    }
    sqlite3_extended_result_codes(c->db, 1);
    char *err = NULL;
    if (owner_only(path, &err) < 0 || set_pragmas(s, &err) < 0 ||
        mps__migrate(s, &err) < 0) {
        int sys = sqlite3_system_errno(c->db); /* the WAL files open here */
        mps__error(error_r, "\"%s\": %s", path, err);
        free(err);
        mps_close(&s);
        errno = sys;
        return -1;
    }
    *store_r = s;
    return 0;
}

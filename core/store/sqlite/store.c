/* Opening the store and the SQLite helpers shared by its files. */
#include "store/sqlite/store-private.h"

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

int mps__error(char **error_r, const char *fmt, ...)
{
    if (error_r != NULL) {
        va_list ap;
        va_start(ap, fmt);
        *error_r = mpu_vasprintf(fmt, ap);
        va_end(ap);
    }
    return -1;
}

int mps__fail(mps_store *s, char **error_r, const char *what)
{
    return mps__error(error_r, "%s: %s", what, sqlite3_errmsg(s->db));
}

/* Preparing costs more than most of the store's statements take to run,
 * and a sync batch runs the same few statements for every message. */
uint64_t mps_statements(const mps_store *s)
{
    return s != NULL ? s->statements : 0;
}

int mps__prepare(mps_store *s, const char *sql, sqlite3_stmt **st_r, char **error_r)
{
    *st_r = NULL;
    s->statements++;
    for (size_t i = 0; i < s->n_cached; i++) {
        struct mps__cached_stmt *c = &s->cache[i];
        if (!c->busy && (c->sql == sql || strcmp(c->sql, sql) == 0)) {
            c->busy = 1;
            *st_r = c->st;
            return 0;
        }
    }
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st_r, NULL) !=
        SQLITE_OK) {
        mps__fail(s, error_r, "store: prepare");
        sqlite3_finalize(*st_r);
        *st_r = NULL;
        return -1;
    }
    if (s->n_cached < MPS__STMT_CACHE) {
        struct mps__cached_stmt *c = &s->cache[s->n_cached++];
        c->sql = mpu_strdup(sql);
        c->st = *st_r;
        c->busy = 1;
    }
    return 0;
}

void mps__finish(mps_store *s, sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < s->n_cached; i++) {
        struct mps__cached_stmt *c = &s->cache[i];
        if (c->st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            c->busy = 0;
            return;
        }
    }
    /* Not cached (cache full, or its SQL was already handed out). */
    sqlite3_finalize(st);
}

int mps__step_row(mps_store *s, sqlite3_stmt *st, char **error_r, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return 1;
    return mps__fail(s, error_r, what);
}

int mps__exec(mps_store *s, const char *sql, char **error_r)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        mps__error(error_r, "store: %s", msg != NULL ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int mps__begin(mps_store *s, char **error_r)
{
    return mps__exec(s, "BEGIN IMMEDIATE", error_r);
}

int mps__commit(mps_store *s, char **error_r)
{
    if (mps__exec(s, "COMMIT", error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    return 0;
}

void mps__rollback(mps_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

void mps__bind_text(sqlite3_stmt *st, const char *name, const char *value)
{
    int i = sqlite3_bind_parameter_index(st, name);
    if (i == 0)
        return;
    if (value == NULL)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, value, -1, SQLITE_TRANSIENT);
}

void mps__bind_int(sqlite3_stmt *st, const char *name, int64_t value)
{
    int i = sqlite3_bind_parameter_index(st, name);
    if (i != 0)
        sqlite3_bind_int64(st, i, value);
}

char *mps__col_text(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return NULL;
    const unsigned char *text = sqlite3_column_text(st, col);
    int len = sqlite3_column_bytes(st, col);
    return mpu_strndup((const char *)text, (size_t)len);
}

int mps__step_done(mps_store *s, sqlite3_stmt *st, char **error_r, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return mps__fail(s, error_r, what);
    }
    return 0;
}

static int set_pragmas(mps_store *s, char **error_r)
{
    sqlite3_busy_timeout(s->db, MPS_BUSY_TIMEOUT_MS);
    /* journal_mode answers with the mode actually in effect: a file system
     * without shared memory support silently stays in rollback mode. */
    sqlite3_stmt *st;
    if (mps__prepare(s, "PRAGMA journal_mode=WAL", &st, error_r) < 0)
        return -1;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        mps__finish(s, st);
        return mps__fail(s, error_r, "store: set WAL mode");
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
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

int mps_open(const char *path, mps_store **store_r, char **error_r)
{
    *store_r = NULL;
    mps_store *s = mpu_calloc(1, sizeof *s);
    int rc =
        sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        /* The pool tells a descriptor shortage (a retry) by this. */
        int sys = s->db != NULL ? sqlite3_system_errno(s->db) : 0;
        if (s->db != NULL)
            mps__error(error_r, "store: cannot open \"%s\": %s", path,
                       sqlite3_errmsg(s->db));
        else
            mps__error(error_r, "store: cannot open \"%s\": %s", path,
                       sqlite3_errstr(rc));
        mps_close(&s);
        errno = sys;
        return -1;
    }
    sqlite3_extended_result_codes(s->db, 1);
    char *err = NULL;
    if (owner_only(path, &err) < 0 || set_pragmas(s, &err) < 0 || mps__migrate(s, &err) < 0) {
        int sys = sqlite3_system_errno(s->db); /* the WAL files open here */
        mps__error(error_r, "\"%s\": %s", path, err);
        free(err);
        mps_close(&s);
        errno = sys;
        return -1;
    }
    *store_r = s;
    return 0;
}

void mps_close(mps_store **store)
{
    if (store == NULL || *store == NULL)
        return;
    for (size_t i = 0; i < (*store)->n_cached; i++) {
        sqlite3_finalize((*store)->cache[i].st);
        free((*store)->cache[i].sql);
    }
    sqlite3_close_v2((*store)->db);
    free(*store);
    *store = NULL;
}

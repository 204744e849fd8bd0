/*
 * The seam's calls that are the same for every backend: the statement
 * cache, error messages, and dispatch to the backend's ops.
 */
#include "store/backend.h"
#include "store/store-private.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

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
    return mps__error(error_r, "%s: %s", what, s->ops->errmsg(s));
}

mps__dialect mps__dialect_of(const mps_store *s)
{
    return s->ops->dialect;
}

const char *mps__sql(const mps_store *s, const char *sqlite_sql, const char *pg_sql)
{
    return s->ops->dialect == MPS__POSTGRESQL ? pg_sql : sqlite_sql;
}

/* Preparing costs more than most of the store's statements take to run
 * (PostgreSQL: a round trip), and a sync batch runs the same few
 * statements for every message. */
uint64_t mps_statements(const mps_store *s)
{
    return s != NULL ? s->statements : 0;
}

int mps__prepare(mps_store *s, const char *sql, mps__stmt **st_r, char **error_r)
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
    if (s->ops->prepare(s, sql, st_r, error_r) < 0)
        return -1;
    if (s->n_cached < MPS__STMT_CACHE) {
        struct mps__cached_stmt *c = &s->cache[s->n_cached++];
        c->sql = mpu_strdup(sql);
        c->st = *st_r;
        c->busy = 1;
    }
    return 0;
}

void mps__finish(mps_store *s, mps__stmt *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < s->n_cached; i++) {
        struct mps__cached_stmt *c = &s->cache[i];
        if (c->st == st) {
            s->ops->reset(st);
            c->busy = 0;
            return;
        }
    }
    /* Not cached (cache full, or its SQL was already handed out). */
    s->ops->finalize(st);
}

/* Called by the backends' close before they drop the connection. */
void mps__cache_clear(mps_store *s)
{
    for (size_t i = 0; i < s->n_cached; i++) {
        s->ops->finalize(s->cache[i].st);
        free(s->cache[i].sql);
    }
    s->n_cached = 0;
}

int mps__step(mps__stmt *st)
{
    return st->ops->step(st);
}

int mps__step_row(mps_store *s, mps__stmt *st, char **error_r, const char *what)
{
    int rc = st->ops->step(st);
    if (rc == MPS__ROW)
        return 0;
    if (rc == MPS__DONE)
        return 1;
    return mps__fail(s, error_r, what);
}

int mps__step_done(mps_store *s, mps__stmt *st, char **error_r, const char *what)
{
    int rc = st->ops->step(st);
    if (rc != MPS__DONE && rc != MPS__ROW) {
        mps__fail(s, error_r, what);
        st->ops->reset(st);
        return -1;
    }
    return 0;
}

int mps__exec(mps_store *s, const char *sql, char **error_r)
{
    return s->ops->exec(s, sql, error_r);
}

int64_t mps__changes(mps_store *s)
{
    return s->ops->changes(s);
}

int mps__begin(mps_store *s, char **error_r)
{
    s->events_appended = 0;
    return s->ops->begin(s, error_r);
}

/* One signal per transaction that appended events, however many (SSE
 * clients of the other nodes read them from the shared outbox). */
int mps__commit(mps_store *s, char **error_r)
{
    int events = s->events_appended;
    s->events_appended = 0;
    if ((events && mps__signal(s, MPS_SIGNAL_EVENTS, NULL, NULL, error_r) < 0) ||
        s->ops->commit(s, error_r) < 0) {
        s->ops->rollback(s);
        return -1;
    }
    return 0;
}

void mps__rollback(mps_store *s)
{
    s->events_appended = 0;
    s->ops->rollback(s);
}

void mps__bind_text(mps__stmt *st, const char *name, const char *value)
{
    st->ops->bind_text(st, name, value);
}

void mps__bind_int(mps__stmt *st, const char *name, int64_t value)
{
    st->ops->bind_int(st, name, value);
}

void mps__bind_blob(mps__stmt *st, const char *name, const void *data, size_t len)
{
    st->ops->bind_blob(st, name, data, len);
}

int mps__col_null(mps__stmt *st, int col)
{
    return st->ops->col_null(st, col);
}

int64_t mps__col_int64(mps__stmt *st, int col)
{
    return st->ops->col_int64(st, col);
}

int mps__col_int(mps__stmt *st, int col)
{
    return (int)st->ops->col_int64(st, col);
}

const char *mps__col_cstr(mps__stmt *st, int col)
{
    size_t len;
    return st->ops->col_text(st, col, &len);
}

char *mps__col_text(mps__stmt *st, int col)
{
    size_t len = 0;
    const char *text = st->ops->col_text(st, col, &len);
    return text != NULL ? mpu_strndup(text, len) : NULL;
}

const void *mps__col_blob(mps__stmt *st, int col, size_t *len_r)
{
    return st->ops->col_blob(st, col, len_r);
}

int mps__is_pg_location(const char *location)
{
    return strncmp(location, "postgresql://", 13) == 0 ||
           strncmp(location, "postgres://", 11) == 0;
}

const char *mps__location_name(const char *location)
{
    return mps__is_pg_location(location) ? "the PostgreSQL store" : location;
}

int mps_open(const char *location, mps_store **store_r, char **error_r)
{
    if (mps__is_pg_location(location))
        return mps__pg_open(location, store_r, error_r);
    return mps__sqlite_open(location, store_r, error_r);
}

void mps_close(mps_store **store)
{
    if (store == NULL || *store == NULL)
        return;
    mps__cache_clear(*store);
    (*store)->ops->close(*store);
    *store = NULL;
}

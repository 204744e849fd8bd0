/*
 * Private to core/store: the database-access seam. The store's logic
 * (accounts.c ... webhooks.c, commit.c above all) is written once against
 * these calls and in SQL that both backends accept; a backend implements
 * struct mps__db_ops once (sqlite/db.c, pg/db.c) and owns its schema
 * (migrations) and housekeeping.
 *
 * SQL is written with named parameters (":name", the same name may appear
 * several times) and standard upserts (INSERT ... ON CONFLICT ... DO
 * UPDATE/NOTHING, RETURNING, IS DISTINCT FROM), which SQLite (3.40) and
 * PostgreSQL (15) both run. The PostgreSQL backend translates ":name" to
 * "$n" when it prepares a statement and drops SQLite's planner hint
 * "INDEXED BY <index>". The few statements that differ otherwise are
 * chosen with mps__sql() by dialect.
 *
 * Values: integers are int64; text is UTF-8 without NUL; blobs are bytes.
 * A boolean result (EXISTS, a comparison) reads as 0/1 with mps__col_int64.
 *
 * Threading: an mps_store and its statements belong to one thread at a
 * time (store.h).
 */
#ifndef MP_STORE_DB_H
#define MP_STORE_DB_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef enum mps__dialect {
    MPS__SQLITE = 1,
    MPS__POSTGRESQL = 2,
} mps__dialect;

/* A prepared statement of one connection (the backend's own type). */
typedef struct mps__stmt mps__stmt;

/* mps__step results. */
#define MPS__ROW 100  /* a row is ready to read                           */
#define MPS__DONE 101 /* the statement ran to its end                     */
#define MPS__ERROR 1  /* failed: mps__errmsg() says why                   */

/* What a backend implements. Every slot is mandatory. */
struct mps__db_ops {
    mps__dialect dialect;
    /* The backend's migrations (store-private.h). */
    const struct mps__schema *(*schema)(void);
    /* Compile `sql` into a statement that the store caches (db.c) and
     * reuses: -1 with *error_r ("store: prepare: ..."). */
    int (*prepare)(mps_store *s, const char *sql, mps__stmt **st_r, char **error_r);
    /* Make a statement ready to run again and drop its bindings. */
    void (*reset)(mps__stmt *st);
    void (*finalize)(mps__stmt *st);
    int (*step)(mps__stmt *st);
    /* A name the statement lacks is ignored; text NULL binds NULL. */
    void (*bind_text)(mps__stmt *st, const char *name, const char *value);
    void (*bind_int)(mps__stmt *st, const char *name, int64_t value);
    void (*bind_blob)(mps__stmt *st, const char *name, const void *data, size_t len);
    int (*col_null)(mps__stmt *st, int col);
    int64_t (*col_int64)(mps__stmt *st, int col);
    /* Valid until the next step, reset or finalize; NULL for SQL NULL. */
    const char *(*col_text)(mps__stmt *st, int col, size_t *len_r);
    const void *(*col_blob)(mps__stmt *st, int col, size_t *len_r);
    /* Rows changed by the last INSERT, UPDATE or DELETE run. */
    int64_t (*changes)(mps_store *s);
    /* Run one or more statements without results. */
    int (*exec)(mps_store *s, const char *sql, char **error_r);
    /* The connection's last error, for messages. */
    const char *(*errmsg)(mps_store *s);
    /* Write transactions: writers serialize (see the backends). */
    int (*begin)(mps_store *s, char **error_r);
    int (*commit)(mps_store *s, char **error_r);
    void (*rollback)(mps_store *s);
    void (*close)(mps_store *s);
};

mps__dialect mps__dialect_of(const mps_store *s);
/* The statement text for this store's dialect. */
const char *mps__sql(const mps_store *s, const char *sqlite_sql, const char *pg_sql);

/* Hand out a statement for `sql`, reused from the connection's cache when
 * one is idle. Release it with mps__finish. */
int mps__prepare(mps_store *s, const char *sql, mps__stmt **st_r, char **error_r);
/* Reset a statement from mps__prepare and clear its bindings for reuse
 * (finalize it when it is not cached). NULL is ignored. */
void mps__finish(mps_store *s, mps__stmt *st);
int mps__step(mps__stmt *st);
/* Step a query expected to return at most one row: 0 with the row ready
 * to read, 1 when there is none, -1 with *error_r set ("<what>: ..."). */
int mps__step_row(mps_store *s, mps__stmt *st, char **error_r, const char *what);
/* Run a write statement (or one whose RETURNING row is not needed). */
int mps__step_done(mps_store *s, mps__stmt *st, char **error_r, const char *what);
int mps__exec(mps_store *s, const char *sql, char **error_r);
int64_t mps__changes(mps_store *s);

/* A write transaction; commit rolls back when it fails; rollback is best
 * effort and a no-op outside a transaction. */
int mps__begin(mps_store *s, char **error_r);
int mps__commit(mps_store *s, char **error_r);
void mps__rollback(mps_store *s);

/* Named-parameter binding; a NULL string binds NULL. Binding a name the
 * statement lacks is a programming error and is ignored. */
void mps__bind_text(mps__stmt *st, const char *name, const char *value);
void mps__bind_int(mps__stmt *st, const char *name, int64_t value);
void mps__bind_blob(mps__stmt *st, const char *name, const void *data, size_t len);

int mps__col_null(mps__stmt *st, int col);
int64_t mps__col_int64(mps__stmt *st, int col);
int mps__col_int(mps__stmt *st, int col);
/* Borrowed text (NULL for SQL NULL), valid until the next step. */
const char *mps__col_cstr(mps__stmt *st, int col);
/* Column as an allocated string, NULL for SQL NULL. */
char *mps__col_text(mps__stmt *st, int col);
const void *mps__col_blob(mps__stmt *st, int col, size_t *len_r);

#endif

/*
 * Private to the SQLite backend (core/store/sqlite): the connection struct,
 * the SQLite helpers its files share and its checkpoints. Nothing outside
 * core/store/sqlite includes this but the store's unit test.
 */
#ifndef MP_STORE_SQLITE_STORE_PRIVATE_H
#define MP_STORE_SQLITE_STORE_PRIVATE_H

#include <sqlite3.h>

#include "store/store-shared.h"

/* Prepared statements kept for reuse, keyed by their SQL text; busy while
 * handed out between mps__prepare and mps__finish. */
#define MPS__STMT_CACHE 64
struct mps__cached_stmt {
    char *sql;
    sqlite3_stmt *st;
    int busy;
};

struct mps_store {
    sqlite3 *db;
    struct mps__cached_stmt cache[MPS__STMT_CACHE];
    size_t n_cached;
    uint64_t statements;  /* mps__prepare calls: mps_statements (store.h) */
    void (*checkpoint_wanted)(void *arg); /* see mps_checkpoint_elsewhere */
    void *checkpoint_arg;
};

/* Set *error_r to "<what>: <sqlite message>" and return -1. */
int mps__fail(mps_store *s, char **error_r, const char *what);
/* Set *error_r to a formatted message and return -1. */
int mps__error(char **error_r, const char *fmt, ...) MP_PRINTF(2, 3);

/* Hand out a statement for `sql`, reused from the connection's cache when
 * one is idle. Release it with mps__finish (never sqlite3_finalize). */
int mps__prepare(mps_store *s, const char *sql, sqlite3_stmt **st_r, char **error_r);
/* Reset a statement from mps__prepare and clear its bindings for reuse
 * (finalize it when it is not cached). NULL is ignored. */
void mps__finish(mps_store *s, sqlite3_stmt *st);
/* Step a query expected to return at most one row: 0 with the row ready
 * to read, 1 when there is none, -1 with *error_r set ("<what>: ..."). */
int mps__step_row(mps_store *s, sqlite3_stmt *st, char **error_r, const char *what);
int mps__exec(mps_store *s, const char *sql, char **error_r);

/* Write transactions start with BEGIN IMMEDIATE so two connections never
 * deadlock upgrading a read lock; rollback is best effort. */
int mps__begin(mps_store *s, char **error_r);
int mps__commit(mps_store *s, char **error_r);
void mps__rollback(mps_store *s);

/* Named-parameter binding (":name"); a NULL string binds NULL. Binding a
 * name the statement lacks is a programming error and is ignored. */
void mps__bind_text(sqlite3_stmt *st, const char *name, const char *value);
void mps__bind_int(sqlite3_stmt *st, const char *name, int64_t value);
/* Column as an allocated string, NULL for SQL NULL. */
char *mps__col_text(sqlite3_stmt *st, int col);

/* Run a single-row write statement to completion. */
int mps__step_done(mps_store *s, sqlite3_stmt *st, char **error_r, const char *what);

/* The message columns read by mps__message_read, from alias "m"; the
 * statement must bind :now (body expiry). */
#define MPS__MESSAGE_COLS                                                                \
    "m.id, m.account, m.folder, m.provider_id, m.ref, m.uid, m.message_id, "             \
    "m.subject, m.from_addr, m.to_addr, m.date, m.size, m.thread_id, m.flags, "          \
    "m.deleted, EXISTS(SELECT 1 FROM bodies b INDEXED BY bodies_meta"                    \
    " WHERE b.message_id = m.id AND "                                                    \
    "(b.expires_ms = 0 OR b.expires_ms > :now)), m.indexed_ms"
#define MPS__MESSAGE_NCOLS 17
void mps__message_read(sqlite3_stmt *st, mps_message *m_r);

/* Write (value NULL: delete) a state record / set the account cursor,
 * inside the caller's transaction. */
int mps__state_write(mps_store *s, const char *account, const char *key,
                     const char *value, char **error_r);
int mps__account_cursor_write(mps_store *s, const char *account, const char *cursor,
                              char **error_r);

/* Upsert a body row (no transaction of its own). */
int mps__body_store(mps_store *s, const char *id, const uint8_t *data, size_t len,
                    int64_t expires_ms, char **error_r);

/* Append an event inside the caller's transaction. Returns 0 when
 * appended, 1 when an event with this idempotency key already exists
 * (nothing written; *seq_r is the existing event's seq), -1 on error. */
int mps__event_add(mps_store *s, const char *type, const char *account,
                   const char *folder, const char *message, const char *idem_key,
                   const char *data_json, int64_t *seq_r, char **error_r);

/* Apply pending migrations; see migrate.c. */
int mps__migrate(mps_store *s, char **error_r);

/*
 * Checkpoints (checkpoint.c). A checkpoint copies the WAL into the database
 * file and, with synchronous=NORMAL, is where the fsyncs happen. By default
 * SQLite runs it on the connection whose commit pushed the WAL past 1,000
 * pages, which puts those fsyncs on that thread: a sync job would wait on
 * the disk several times a second during a bulk download.
 *
 * The pool checkpoints on a thread of its own (checkpointer.c) and hands
 * the job over per connection with mps_checkpoint_elsewhere(): after a
 * commit that leaves at least MPS_CHECKPOINT_PAGES in the WAL, `wanted(arg)`
 * is called (on the committing thread, inside the commit: it must only
 * signal). Should the checkpointing thread fall behind, a commit past
 * MPS_CHECKPOINT_BACKSTOP pages still checkpoints on its own connection, so
 * the WAL stays bounded. mps_checkpoint() runs a passive checkpoint (it
 * never blocks readers or writers) and reports the WAL's frames and how
 * many of them are now in the database file (either may be NULL).
 */
#define MPS_CHECKPOINT_PAGES 1000
#define MPS_CHECKPOINT_BACKSTOP 16000
void mps_checkpoint_elsewhere(mps_store *s, void (*wanted)(void *arg), void *arg);
int mps_checkpoint(mps_store *s, int *wal_frames_r, int *checkpointed_r, char **error_r);

#endif

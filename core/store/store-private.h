/*
 * Private to core/store: the connection struct every backend starts with,
 * the helpers the store's files share and the internal calls between them.
 * Nothing outside core/store includes this but the store's unit test.
 */
#ifndef MP_STORE_STORE_PRIVATE_H
#define MP_STORE_STORE_PRIVATE_H

#include "store/db.h"
#include "store/signal.h"
#include "store/store-shared.h"

/* Prepared statements kept for reuse, keyed by their SQL text; busy while
 * handed out between mps__prepare and mps__finish. */
#define MPS__STMT_CACHE 64
struct mps__cached_stmt {
    char *sql;
    mps__stmt *st;
    int busy;
};

/* A backend's connection struct starts with this. */
struct mps_store {
    const struct mps__db_ops *ops;
    struct mps__cached_stmt cache[MPS__STMT_CACHE];
    size_t n_cached;
    uint64_t statements; /* mps__prepare calls: mps_statements (store.h) */
    int events_appended; /* this transaction appended events: mps__commit
                            signals MPS_SIGNAL_EVENTS                    */
};

/* A backend's statement struct starts with this. */
struct mps__stmt {
    const struct mps__db_ops *ops;
};

/* Finalize the cached statements (mps_close does it before ops->close). */
void mps__cache_clear(mps_store *s);

/* Set *error_r to "<what>: <database message>" and return -1. */
int mps__fail(mps_store *s, char **error_r, const char *what);
/* Set *error_r to a formatted message and return -1. */
int mps__error(char **error_r, const char *fmt, ...) MP_PRINTF(2, 3);

/* The message columns read by mps__message_read, from alias "m"; the
 * statement must bind :now (body expiry). */
#define MPS__MESSAGE_COLS                                                                \
    "m.id, m.account, m.folder, m.provider_id, m.ref, m.uid, m.message_id, "             \
    "m.subject, m.from_addr, m.to_addr, m.date, m.size, m.thread_id, m.flags, "          \
    "m.deleted, EXISTS(SELECT 1 FROM bodies b INDEXED BY bodies_meta"                    \
    " WHERE b.message_id = m.id AND "                                                    \
    "(b.expires_ms = 0 OR b.expires_ms > :now)), m.indexed_ms"
#define MPS__MESSAGE_NCOLS 17
void mps__message_read(mps__stmt *st, mps_message *m_r);

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

/* Apply pending migrations of the backend's schema (ops->schema); see
 * migrate.c. */
int mps__migrate(mps_store *s, char **error_r);

/* The cluster's signals (store/signal.h): their channels; send one inside
 * the caller's transaction (nothing on SQLite); read one that arrived
 * (-1: not ours). */
#define MPS__SIGNAL_PUSH_CHANNEL "mailpulse_push"
#define MPS__SIGNAL_STANDBY_CHANNEL "mailpulse_standby"
#define MPS__SIGNAL_EVENTS_CHANNEL "mailpulse_events"
int mps__signal(mps_store *s, mps_signal_kind kind, const char *account, const char *folder,
                char **error_r);
int mps__signal_parse(const char *channel, const char *payload, mps_signal *sig_r);

/* Open a backend's connection (mps_open chooses by location). */
int mps__sqlite_open(const char *path, mps_store **store_r, char **error_r);
int mps__pg_open(const char *url, mps_store **store_r, char **error_r);
/* Whether `location` names a PostgreSQL database (a postgresql:// or
 * postgres:// URL); anything else is an SQLite file path. */
int mps__is_pg_location(const char *location);

/* Schema migrations of a backend, applied by migrate.c: migrations[i]
 * takes the schema from version base + i to base + i + 1. A backend whose
 * history starts later (PostgreSQL: base 7, its first entry creates the
 * whole schema of version 8) goes from an empty store (version 0) straight
 * to base + 1. The version is read and written by the backend's own
 * statements; prepare_sql (may be NULL) runs first in each migration's
 * transaction (PostgreSQL creates its version table there). */
struct mps__schema {
    int base;
    const char *const *migrations;
    int n;
    const char *prepare_sql;
    const char *read_version_sql;  /* one row, one integer */
    const char *write_version_sql; /* followed by the new version */
};
const struct mps__schema *mps__sqlite_schema(void);
const struct mps__schema *mps__pg_schema(void);

#endif

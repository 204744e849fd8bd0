/* The event outbox: append (idempotent by key) and read in seq order. */
#include "store/store-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static int existing_seq(mps_store *s, const char *idem_key, int64_t *seq_r,
                        char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, "SELECT seq FROM events WHERE idem_key = :key", &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":key", idem_key);
    int rc = mps__step(st);
    if (rc == MPS__ROW) {
        *seq_r = mps__col_int64(st, 0);
        mps__finish(s, st);
        return 0;
    }
    mps__finish(s, st);
    return mps__fail(s, error_r, "store: look up event");
}

int mps__event_add(mps_store *s, const char *type, const char *account,
                   const char *folder, const char *message, const char *idem_key,
                   const char *data_json, int64_t *seq_r, char **error_r)
{
    int64_t dummy;
    if (seq_r == NULL)
        seq_r = &dummy;
    *seq_r = 0;
    if (type == NULL || account == NULL || idem_key == NULL)
        return mps__error(error_r, "store: event needs a type, an account and a key");
    mps__stmt *st;
    /* A key already present means this event was appended before (a replay
     * after a crash or a retried call): keep the first one. */
    /* PostgreSQL: the seq is the next value of a counter row, taken only
     * when the key is new (pg/schema.c says why). Writers hold the write
     * lock, so nothing comes between the check and the insert. */
    if (mps__prepare(
            s,
            mps__sql(s,
                     "INSERT INTO events (type, account, folder, message, time_ms,"
                     " idem_key, data_json) VALUES (:type, :account, :folder,"
                     " :message, :time, :key, :data)"
                     " ON CONFLICT (idem_key) DO NOTHING RETURNING seq",
                     "WITH n AS (UPDATE store_meta SET value = value + 1"
                     "  WHERE key = 'event_seq' AND NOT EXISTS"
                     "  (SELECT 1 FROM events WHERE idem_key = :key)"
                     "  RETURNING value)"
                     " INSERT INTO events (seq, type, account, folder, message,"
                     " time_ms, idem_key, data_json) SELECT n.value, :type,"
                     " :account, :folder, :message, :time, :key, :data FROM n"
                     " RETURNING seq"),
            &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":type", type);
    mps__bind_text(st, ":account", account);
    mps__bind_text(st, ":folder", folder);
    mps__bind_text(st, ":message", message);
    mps__bind_int(st, ":time", mpu_now_ms());
    mps__bind_text(st, ":key", idem_key);
    mps__bind_text(st, ":data", data_json);
    /* RETURNING gives the new seq; no row: the key was there. */
    int rc = mps__step_row(s, st, error_r, "store: append event");
    if (rc == 0) {
        *seq_r = mps__col_int64(st, 0);
        /* Run to the end: SQLite writes a RETURNING statement's row then. */
        if (mps__step(st) != MPS__DONE)
            rc = mps__fail(s, error_r, "store: append event");
    }
    mps__finish(s, st);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        if (existing_seq(s, idem_key, seq_r, error_r) < 0)
            return -1;
        return 1;
    }
    s->events_appended = 1;
    return 0;
}

int mps_event_append(mps_store *s, const char *type, const char *account,
                     const char *folder, const char *message, const char *idem_key,
                     const char *data_json, int64_t *seq_r, char **error_r)
{
    if (mps__begin(s, error_r) < 0)
        return -1;
    if (mps__event_add(s, type, account, folder, message, idem_key, data_json, seq_r,
                       error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

/* "name IN (:name0, :name1, ...)" for a NULL-terminated list; only
 * placeholders go into the SQL, the values are bound afterwards. */
static char *in_clause(const char *column, const char *prefix, const char *const *values)
{
    size_t n = 0;
    while (values[n] != NULL)
        n++;
    char *sql = mpu_asprintf(" AND %s IN (", column);
    for (size_t i = 0; i < n; i++) {
        char *next = mpu_asprintf("%s%s:%s%zu", sql, i > 0 ? ", " : "", prefix, i);
        free(sql);
        sql = next;
    }
    char *next = mpu_asprintf("%s)", sql);
    free(sql);
    return next;
}

static void bind_list(mps__stmt *st, const char *prefix, const char *const *values)
{
    for (size_t i = 0; values[i] != NULL; i++) {
        char name[32];
        snprintf(name, sizeof name, ":%s%zu", prefix, i);
        mps__bind_text(st, name, values[i]);
    }
}

int mps_events_after(mps_store *s, int64_t after, size_t limit, const char *const *types,
                     const char *const *accounts, mps_event **list_r, size_t *n_r,
                     char **error_r)
{
    *list_r = NULL;
    *n_r = 0;
    /* An empty list filters nothing, like NULL. */
    int by_type = types != NULL && types[0] != NULL;
    int by_account = accounts != NULL && accounts[0] != NULL;
    char *type_sql = by_type ? in_clause("type", "t", types) : NULL;
    char *account_sql = by_account ? in_clause("account", "a", accounts) : NULL;
    char *sql = mpu_asprintf("SELECT seq, type, account, folder, message, time_ms,"
                             " idem_key, data_json FROM events WHERE seq > :after%s%s"
                             " ORDER BY seq LIMIT :limit",
                             type_sql != NULL ? type_sql : "",
                             account_sql != NULL ? account_sql : "");
    free(type_sql);
    free(account_sql);
    mps__stmt *st;
    int rc = mps__prepare(s, sql, &st, error_r);
    free(sql);
    if (rc < 0)
        return -1;
    mps__bind_int(st, ":after", after);
    mps__bind_int(st, ":limit", limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    if (by_type)
        bind_list(st, "t", types);
    if (by_account)
        bind_list(st, "a", accounts);

    mps_event *list = NULL;
    size_t n = 0, cap = 0;
    while ((rc = mps__step(st)) == MPS__ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            list = mpu_realloc(list, cap * sizeof *list);
        }
        mps_event *e = &list[n++];
        e->seq = mps__col_int64(st, 0);
        e->type = mps__col_text(st, 1);
        e->account = mps__col_text(st, 2);
        e->folder = mps__col_text(st, 3);
        e->message = mps__col_text(st, 4);
        e->time_ms = mps__col_int64(st, 5);
        e->idem_key = mps__col_text(st, 6);
        e->data_json = mps__col_text(st, 7);
    }
    if (rc != MPS__DONE) {
        mps__fail(s, error_r, "store: read events");
        mps__finish(s, st);
        mps_events_free(&list, n);
        return -1;
    }
    mps__finish(s, st);
    *list_r = list;
    *n_r = n;
    return 0;
}

void mps_events_free(mps_event **list, size_t n)
{
    if (list == NULL || *list == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        mps_event *e = &(*list)[i];
        free(e->type);
        free(e->account);
        free(e->folder);
        free(e->message);
        free(e->idem_key);
        free(e->data_json);
    }
    free(*list);
    *list = NULL;
}

int64_t mps_events_last_seq(mps_store *s)
{
    mps__stmt *st;
    if (mps__prepare(s, "SELECT COALESCE(MAX(seq), 0) FROM events", &st, NULL) < 0)
        return 0;
    int64_t seq = 0;
    if (mps__step(st) == MPS__ROW)
        seq = mps__col_int64(st, 0);
    mps__finish(s, st);
    return seq;
}

/* ---- retention ---- */

int mps_outbox_horizon(mps_store *s, int64_t *horizon_r, char **error_r)
{
    *horizon_r = 0;
    mps__stmt *st;
    if (mps__prepare(s, "SELECT value FROM store_meta WHERE key = 'outbox_horizon'", &st,
                     error_r) < 0)
        return -1;
    int rc = mps__step_row(s, st, error_r, "store: read outbox horizon");
    if (rc == 0)
        *horizon_r = mps__col_int64(st, 0);
    mps__finish(s, st);
    return rc < 0 ? -1 : 0;
}

/* Prepares head + a condition that holds for rows of the listed webhook
 * endpoints ("FALSE" when none is listed) + tail, with the names bound. */
static int prepare_for_endpoints(mps_store *s, const char *head, const char *tail,
                                 const char *const *endpoints, mps__stmt **st_r,
                                 char **error_r)
{
    int any = endpoints != NULL && endpoints[0] != NULL;
    char *in = any ? in_clause("endpoint", "e", endpoints) : NULL;
    char *sql = mpu_asprintf("%s%s%s%s", head, any ? "TRUE" : "FALSE",
                             in != NULL ? in : "", tail);
    free(in);
    int rc = mps__prepare(s, sql, st_r, error_r);
    free(sql);
    if (rc == 0 && any)
        bind_list(*st_r, "e", endpoints);
    return rc;
}

/* The highest seq retention may reach: below the newest event and at or
 * below every listed endpoint's cursor. */
static int prune_bound(mps_store *s, const char *const *endpoints, int64_t *bound_r,
                       char **error_r)
{
    mps__stmt *st;
    if (prepare_for_endpoints(s,
                              "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events) - 1,"
                              " (SELECT MIN(cursor) FROM webhook_cursors WHERE ",
                              ")", endpoints, &st, error_r) < 0)
        return -1;
    int rc = mps__step_row(s, st, error_r, "store: read webhook cursors");
    if (rc == 0) {
        *bound_r = mps__col_int64(st, 0);
        if (!mps__col_null(st, 1) && mps__col_int64(st, 1) < *bound_r)
            *bound_r = mps__col_int64(st, 1);
    }
    mps__finish(s, st);
    return rc == 0 ? 0 : -1;
}

int mps_outbox_prune_plan(mps_store *s, int64_t before_ms, const char *const *endpoints,
                          size_t chunk, int64_t *upto_r, int *more_r, char **error_r)
{
    int64_t horizon = 0, bound = 0;
    *more_r = 0;
    *upto_r = 0;
    if (mps_outbox_horizon(s, &horizon, error_r) < 0)
        return -1;
    *upto_r = horizon;
    if (prune_bound(s, endpoints, &bound, error_r) < 0)
        return -1;
    if (bound <= horizon || chunk == 0)
        return 0;
    /* Oldest first, and only a prefix: the first event inside the
     * retention window ends the scan, so a chunk reads at most `chunk`
     * rows whatever the outbox holds. */
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT seq, time_ms FROM events WHERE seq > :from AND seq <= :bound"
                     " ORDER BY seq LIMIT :chunk",
                     &st, error_r) < 0)
        return -1;
    mps__bind_int(st, ":from", horizon);
    mps__bind_int(st, ":bound", bound);
    mps__bind_int(st, ":chunk", (int64_t)chunk);
    size_t seen = 0;
    int rc, young = 0;
    while ((rc = mps__step(st)) == MPS__ROW) {
        if (mps__col_int64(st, 1) >= before_ms) {
            young = 1;
            break;
        }
        *upto_r = mps__col_int64(st, 0);
        seen++;
    }
    if (rc != MPS__ROW && rc != MPS__DONE) {
        mps__fail(s, error_r, "store: read events to prune");
        mps__finish(s, st);
        return -1;
    }
    mps__finish(s, st);
    *more_r = !young && seen == chunk && *upto_r < bound;
    return 0;
}

int mps_outbox_prune_apply(mps_store *s, int64_t upto, const char *const *endpoints,
                           int64_t *removed_r, char **error_r)
{
    int64_t horizon = 0;
    if (removed_r != NULL)
        *removed_r = 0;
    if (mps__begin(s, error_r) < 0)
        return -1;
    if (mps_outbox_horizon(s, &horizon, error_r) < 0)
        goto fail;
    if (upto <= horizon) {
        mps__rollback(s);
        return 0;
    }
    mps__stmt *st;
    if (prepare_for_endpoints(s,
                              "DELETE FROM events WHERE seq > :from AND seq <= :upto"
                              " AND seq NOT IN (SELECT seq FROM webhook_dead_letters WHERE ",
                              ")", endpoints, &st, error_r) < 0)
        goto fail;
    mps__bind_int(st, ":from", horizon);
    mps__bind_int(st, ":upto", upto);
    int rc = mps__step_done(s, st, error_r, "store: prune events");
    mps__finish(s, st);
    if (rc < 0)
        goto fail;
    if (removed_r != NULL)
        *removed_r = mps__changes(s);
    if (mps__prepare(s, "UPDATE store_meta SET value = :upto WHERE key = 'outbox_horizon'",
                     &st, error_r) < 0)
        goto fail;
    mps__bind_int(st, ":upto", upto);
    rc = mps__step_done(s, st, error_r, "store: save outbox horizon");
    mps__finish(s, st);
    if (rc < 0)
        goto fail;
    return mps__commit(s, error_r);
fail:
    mps__rollback(s);
    return -1;
}

/*
 * The PostgreSQL backend of the store seam (db.h), on libpq.
 *
 * Statements: the store writes SQL with ":name" parameters; prepare turns
 * them into "$n" (one number per distinct name) and drops SQLite's planner
 * hint "INDEXED BY <index>", then prepares the statement on the server
 * under a name of its own (the seam's cache keeps it for the connection's
 * life). Parameters go as text, their types inferred by the server from
 * where they stand; blobs go binary (bytea). Results come as text: a step
 * runs the statement and takes its whole result, the following steps walk
 * its rows.
 *
 * Transactions and concurrency: store.h promises that writes serialize
 * ("a writer waits for another one's transaction"), and the store's logic
 * relies on it the way SQLite gives it: read-then-write steps (an
 * account's status_seq, a message's version in an idempotency key) run
 * under that exclusion, and event seq values are taken in commit order, so
 * a reader of the outbox (SSE, webhooks, a relay) that saw seq N never
 * finds N-1 committed later. Under READ COMMITTED with concurrent writers
 * both would break: two transactions could read the same status_seq, and
 * one that took seq N could commit after the one that took N+1.
 * So every write transaction first takes one transaction-scoped advisory
 * lock (released by COMMIT or ROLLBACK, never held across them), waited
 * for up to 10 s like SQLite's busy timeout. Reads run outside
 * transactions and never wait for it.
 *
 * A lost connection (a server restart, a terminated backend) fails the
 * call in progress; the next call outside a transaction reconnects and
 * prepares its statements again on the new session. Never inside one: the
 * statements after a reconnection would run outside the transaction, so a
 * transaction whose connection went fails to its end and is rolled back.
 *
 * A condition a commit must meet (an account lease's fence) is one more
 * statement between begin and commit on the same connection: it holds for
 * the whole transaction, since no other writer runs meanwhile.
 */
#include "store/store-private.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

/* Every session: writers wait 10 s for each other's lock before failing
 * (SQLite's busy timeout is the same); notices are not errors, and the
 * store does not log. Every execution is planned with its values: a
 * statement prepared while its tables were small (a new store, the first
 * batch of a bulk sync) otherwise keeps a generic plan made for them, and
 * statistics come up to date only with autovacuum's next analyze. Seen in
 * the sync benchmark: the lookup of a message by provider id stayed a
 * sequential scan, 1 ms per message at 10,000 (10 s of 27), 3 µs planned
 * with its values. */
#define MPS_PG_SESSION_SETTINGS                                                          \
    "SET lock_timeout = 10000; SET client_min_messages = warning;"                       \
    " SET plan_cache_mode = force_custom_plan"
/* The advisory lock every write transaction takes ("mailpulse"). */
#define MPS_PG_WRITE_LOCK "7165426918723829"

struct pg_conn {
    struct mps_store base;
    PGconn *conn;
    int64_t changes;
    char *err;          /* the last statement's error, or NULL */
    unsigned next_name; /* prepared statements' names: "mps<n>"     */
    unsigned session;   /* counts reconnections                     */
    int in_tx;          /* between begin and commit/rollback        */
};

struct pg_param {
    char *name;  /* ":name" */
    char *value; /* NULL: SQL NULL */
    int length;
    int binary;
};

struct pg_stmt {
    struct mps__stmt base;
    struct pg_conn *c;
    char name[24];
    char *text;       /* translated SQL, to prepare again after a reconnection */
    unsigned session; /* the session it is prepared in                 */
    struct pg_param *params;
    int n_params;
    PGresult *res;
    int row, n_rows;
    int ran;
    unsigned char *blob; /* the last column read as a blob */
};

static const struct mps__db_ops pg_ops;

static struct pg_conn *conn_of(mps_store *s)
{
    return (struct pg_conn *)s;
}

static struct pg_stmt *stmt_of(mps__stmt *st)
{
    return (struct pg_stmt *)st;
}

/* Keep a one-line reason: the primary message and the SQLSTATE; libpq's
 * full text has a trailing newline and may have DETAIL lines. */
static void set_error(struct pg_conn *c, const PGresult *res)
{
    free(c->err);
    const char *primary =
        res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (primary != NULL) {
        c->err = state != NULL ? mpu_asprintf("%s (SQLSTATE %s)", primary, state)
                               : mpu_strdup(primary);
        return;
    }
    const char *text = PQerrorMessage(c->conn);
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    c->err = len > 0 ? mpu_strndup(text, len) : mpu_strdup("connection lost");
}

static int is_ident(int ch)
{
    return isalnum((unsigned char)ch) || ch == '_';
}

static int param_index(struct pg_stmt *st, const char *name)
{
    for (int i = 0; i < st->n_params; i++)
        if (strcmp(st->params[i].name, name) == 0)
            return i;
    return -1;
}

/* ":name" -> "$n" outside string literals and quoted identifiers ("::" is
 * a cast and stays); "INDEXED BY <index>" goes. The parameter names are
 * recorded in st in order of their numbers. */
static char *translate(struct pg_stmt *st, const char *sql)
{
    size_t cap = strlen(sql) * 2 + 16, n = 0;
    char *out = mpu_malloc(cap);
    const char *p = sql;
    while (*p != '\0') {
        if (n + 16 >= cap) {
            cap *= 2;
            out = mpu_realloc(out, cap);
        }
        if (*p == '\'' || *p == '"') {
            char q = *p;
            out[n++] = *p++;
            while (*p != '\0') {
                if (n + 2 >= cap) {
                    cap *= 2;
                    out = mpu_realloc(out, cap);
                }
                char ch = *p++;
                out[n++] = ch;
                if (ch == q) {
                    if (*p == q) {
                        out[n++] = *p++;
                        continue;
                    }
                    break;
                }
            }
            continue;
        }
        if (p[0] == ':' && p[1] == ':') {
            out[n++] = *p++;
            out[n++] = *p++;
            continue;
        }
        if (p[0] == ':' && (isalpha((unsigned char)p[1]) || p[1] == '_')) {
            const char *start = p++;
            while (is_ident(*p))
                p++;
            char *name = mpu_strndup(start, (size_t)(p - start));
            int i = param_index(st, name);
            if (i < 0) {
                st->params = mpu_realloc(st->params,
                                         (size_t)(st->n_params + 1) * sizeof *st->params);
                st->params[st->n_params] = (struct pg_param){.name = name};
                i = st->n_params++;
            } else {
                free(name);
            }
            n += (size_t)snprintf(out + n, cap - n, "$%d", i + 1);
            continue;
        }
        if ((p == sql || !is_ident(p[-1])) && strncasecmp(p, "INDEXED BY", 10) == 0 &&
            !is_ident(p[10])) {
            p += 10;
            while (*p == ' ')
                p++;
            while (is_ident(*p))
                p++;
            continue;
        }
        out[n++] = *p++;
    }
    out[n] = '\0';
    return out;
}

static void clear_values(struct pg_stmt *st)
{
    for (int i = 0; i < st->n_params; i++) {
        free(st->params[i].value);
        st->params[i].value = NULL;
        st->params[i].length = 0;
        st->params[i].binary = 0;
    }
}

static void clear_result(struct pg_stmt *st)
{
    PQclear(st->res);
    st->res = NULL;
    st->row = st->n_rows = 0;
    st->ran = 0;
    PQfreemem(st->blob);
    st->blob = NULL;
}

static void free_stmt(struct pg_stmt *st)
{
    clear_result(st);
    clear_values(st);
    free(st->text);
    for (int i = 0; i < st->n_params; i++)
        free(st->params[i].name);
    free(st->params);
    free(st);
}

/* Reconnect a lost connection, outside a transaction only (see the top). */
static int usable(struct pg_conn *c)
{
    if (PQstatus(c->conn) == CONNECTION_OK)
        return 0;
    if (c->in_tx) {
        free(c->err);
        c->err = mpu_strdup("connection to PostgreSQL lost in a transaction");
        return -1;
    }
    PQreset(c->conn);
    if (PQstatus(c->conn) != CONNECTION_OK) {
        set_error(c, NULL);
        return -1;
    }
    c->session++;
    PGresult *res = PQexec(c->conn, MPS_PG_SESSION_SETTINGS);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        set_error(c, res);
    PQclear(res);
    return ok ? 0 : -1;
}

static int server_prepare(struct pg_stmt *st)
{
    PGresult *res = PQprepare(st->c->conn, st->name, st->text, 0, NULL);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        set_error(st->c, res);
    PQclear(res);
    if (ok) /* else the next step tries again */
        st->session = st->c->session;
    return ok ? 0 : -1;
}

static int pg_prepare(mps_store *s, const char *sql, mps__stmt **st_r, char **error_r)
{
    struct pg_conn *c = conn_of(s);
    struct pg_stmt *st = mpu_calloc(1, sizeof *st);
    st->base.ops = &pg_ops;
    st->c = c;
    snprintf(st->name, sizeof st->name, "mps%u", c->next_name++);
    st->text = translate(st, sql);
    if (usable(c) < 0 || server_prepare(st) < 0) {
        free_stmt(st);
        return mps__fail(s, error_r, "store: prepare");
    }
    *st_r = &st->base;
    return 0;
}

static void pg_reset(mps__stmt *base)
{
    struct pg_stmt *st = stmt_of(base);
    clear_result(st);
    clear_values(st);
}

/* A statement prepared on the server stays there until the connection
 * closes; the seam finalizes only uncached statements, rarely. */
static void pg_finalize(mps__stmt *base)
{
    struct pg_stmt *st = stmt_of(base);
    if (PQstatus(st->c->conn) == CONNECTION_OK) {
        char *sql = mpu_asprintf("DEALLOCATE %s", st->name);
        PQclear(PQexec(st->c->conn, sql));
        free(sql);
    }
    free_stmt(st);
}

static int is_write(const PGresult *res)
{
    const char *tag = PQcmdStatus((PGresult *)res);
    return strncmp(tag, "INSERT", 6) == 0 || strncmp(tag, "UPDATE", 6) == 0 ||
           strncmp(tag, "DELETE", 6) == 0;
}

static int pg_step(mps__stmt *base)
{
    struct pg_stmt *st = stmt_of(base);
    if (!st->ran) {
        st->ran = 1;
        if (usable(st->c) < 0 ||
            (st->session != st->c->session && server_prepare(st) < 0))
            return MPS__ERROR;
        const char **values = mpu_calloc((size_t)st->n_params + 1, sizeof *values);
        int *lengths = mpu_calloc((size_t)st->n_params + 1, sizeof *lengths);
        int *formats = mpu_calloc((size_t)st->n_params + 1, sizeof *formats);
        for (int i = 0; i < st->n_params; i++) {
            values[i] = st->params[i].value;
            lengths[i] = st->params[i].length;
            formats[i] = st->params[i].binary;
        }
        st->res = PQexecPrepared(st->c->conn, st->name, st->n_params, values, lengths,
                                 formats, 0);
        free(values);
        free(lengths);
        free(formats);
        ExecStatusType status = PQresultStatus(st->res);
        if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
            set_error(st->c, st->res);
            PQclear(st->res);
            st->res = NULL;
            return MPS__ERROR;
        }
        if (is_write(st->res))
            st->c->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
        st->n_rows = PQntuples(st->res);
        st->row = -1;
    }
    if (st->res == NULL)
        return MPS__ERROR;
    if (st->row + 1 < st->n_rows) {
        st->row++;
        return MPS__ROW;
    }
    st->row = st->n_rows;
    return MPS__DONE;
}

static struct pg_param *param(mps__stmt *base, const char *name)
{
    struct pg_stmt *st = stmt_of(base);
    int i = param_index(st, name);
    if (i < 0)
        return NULL;
    struct pg_param *p = &st->params[i];
    free(p->value);
    p->value = NULL;
    p->length = 0;
    p->binary = 0;
    return p;
}

/* Length of the valid UTF-8 sequence at s (1-4), 0 if it is not one
 * (overlong forms, surrogates and code points past U+10FFFF are not). */
static size_t utf8_seq(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* PostgreSQL's text is valid UTF-8 and refuses anything else, where
 * SQLite keeps the bytes as given. Providers' headers are not always
 * valid (raw 8-bit subjects), so each byte that starts no valid sequence
 * becomes U+FFFD, the same way on every write and lookup. */
static char *utf8_copy(const char *value)
{
    const unsigned char *s = (const unsigned char *)value;
    size_t len = strlen(value), i = 0;
    while (i < len) {
        size_t n = utf8_seq(s + i);
        if (n == 0)
            break;
        i += n;
    }
    if (i == len)
        return mpu_strdup(value);
    char *out = mpu_malloc(len * 3 + 1);
    size_t o = 0;
    for (i = 0; i < len;) {
        size_t n = utf8_seq(s + i);
        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = '\0';
    return out;
}

static void pg_bind_text(mps__stmt *st, const char *name, const char *value)
{
    struct pg_param *p = param(st, name);
    if (p != NULL && value != NULL)
        p->value = utf8_copy(value);
}

static void pg_bind_int(mps__stmt *st, const char *name, int64_t value)
{
    struct pg_param *p = param(st, name);
    if (p != NULL)
        p->value = mpu_asprintf("%" PRId64, value);
}

static void pg_bind_blob(mps__stmt *st, const char *name, const void *data, size_t len)
{
    struct pg_param *p = param(st, name);
    if (p == NULL)
        return;
    /* libpq takes an int length; bodies are bounded far below (bodies.c). */
    p->value = mpu_malloc(len + 1);
    if (len > 0)
        memcpy(p->value, data, len);
    p->length = (int)len;
    p->binary = 1;
}

static int has_cell(struct pg_stmt *st, int col)
{
    return st->res != NULL && st->row >= 0 && st->row < st->n_rows && col >= 0 &&
           col < PQnfields(st->res);
}

static int pg_col_null(mps__stmt *base, int col)
{
    struct pg_stmt *st = stmt_of(base);
    return !has_cell(st, col) || PQgetisnull(st->res, st->row, col);
}

/* Booleans (EXISTS, comparisons) come as "t"/"f"; SUM over bigint as a
 * numeric in plain digits. */
static int64_t pg_col_int64(mps__stmt *base, int col)
{
    struct pg_stmt *st = stmt_of(base);
    if (pg_col_null(base, col))
        return 0;
    const char *v = PQgetvalue(st->res, st->row, col);
    if (v[0] == 't' && v[1] == '\0')
        return 1;
    if (v[0] == 'f' && v[1] == '\0')
        return 0;
    return strtoll(v, NULL, 10);
}

static const char *pg_col_text(mps__stmt *base, int col, size_t *len_r)
{
    struct pg_stmt *st = stmt_of(base);
    *len_r = 0;
    if (pg_col_null(base, col))
        return NULL;
    *len_r = (size_t)PQgetlength(st->res, st->row, col);
    return PQgetvalue(st->res, st->row, col);
}

/* bytea in text results is hex ("\x..."): unescaped into a buffer that
 * lives until the next blob read, step or reset. */
static const void *pg_col_blob(mps__stmt *base, int col, size_t *len_r)
{
    struct pg_stmt *st = stmt_of(base);
    *len_r = 0;
    if (pg_col_null(base, col))
        return NULL;
    PQfreemem(st->blob);
    size_t len = 0;
    st->blob =
        PQunescapeBytea((const unsigned char *)PQgetvalue(st->res, st->row, col), &len);
    if (st->blob == NULL)
        abort(); /* out of memory, as mpu_malloc */
    *len_r = len;
    return st->blob;
}

static int64_t pg_changes(mps_store *s)
{
    return conn_of(s)->changes;
}

static int run(struct pg_conn *c, const char *sql)
{
    PGresult *res = PQexec(c->conn, sql);
    ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        set_error(c, res);
        PQclear(res);
        return -1;
    }
    if (is_write(res))
        c->changes = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}

static int pg_exec(mps_store *s, const char *sql, char **error_r)
{
    if (usable(conn_of(s)) < 0 || run(conn_of(s), sql) < 0)
        return mps__error(error_r, "store: %s", conn_of(s)->err);
    return 0;
}

static const char *pg_errmsg(mps_store *s)
{
    struct pg_conn *c = conn_of(s);
    if (c->err == NULL)
        set_error(c, NULL);
    return c->err;
}

static int pg_begin(mps_store *s, char **error_r)
{
    struct pg_conn *c = conn_of(s);
    if (usable(c) < 0 || run(c, "BEGIN") < 0 ||
        run(c, "SELECT pg_advisory_xact_lock(" MPS_PG_WRITE_LOCK ")") < 0) {
        mps__error(error_r, "store: begin: %s", c->err);
        if (PQstatus(c->conn) == CONNECTION_OK)
            PQclear(PQexec(c->conn, "ROLLBACK"));
        return -1;
    }
    c->in_tx = 1;
    return 0;
}

/* COMMIT of a transaction that failed earlier answers "ROLLBACK", not an
 * error: that is a failed commit too. */
static int pg_commit(mps_store *s, char **error_r)
{
    struct pg_conn *c = conn_of(s);
    c->in_tx = 0;
    PGresult *res = PQexec(c->conn, "COMMIT");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK &&
             strcmp(PQcmdStatus(res), "COMMIT") == 0;
    if (!ok) {
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            free(c->err);
            c->err = mpu_strdup("the transaction was rolled back");
        } else {
            set_error(c, res);
        }
    }
    PQclear(res);
    return ok ? 0 : mps__error(error_r, "store: commit: %s", c->err);
}

static void pg_rollback(mps_store *s)
{
    struct pg_conn *c = conn_of(s);
    c->in_tx = 0;
    if (PQtransactionStatus(c->conn) != PQTRANS_IDLE &&
        PQtransactionStatus(c->conn) != PQTRANS_UNKNOWN)
        PQclear(PQexec(c->conn, "ROLLBACK"));
}

static void pg_close(mps_store *s)
{
    struct pg_conn *c = conn_of(s);
    PQfinish(c->conn);
    free(c->err);
    free(c);
}

static const struct mps__db_ops pg_ops = {
    .dialect = MPS__POSTGRESQL,
    .schema = mps__pg_schema,
    .prepare = pg_prepare,
    .reset = pg_reset,
    .finalize = pg_finalize,
    .step = pg_step,
    .bind_text = pg_bind_text,
    .bind_int = pg_bind_int,
    .bind_blob = pg_bind_blob,
    .col_null = pg_col_null,
    .col_int64 = pg_col_int64,
    .col_text = pg_col_text,
    .col_blob = pg_col_blob,
    .changes = pg_changes,
    .exec = pg_exec,
    .errmsg = pg_errmsg,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .close = pg_close,
};

/* Notices (CREATE ... IF NOT EXISTS on a migrated store) are not errors
 * and the store does not log. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* The URL may hold a password: it is never part of a message. */
int mps__pg_open(const char *url, mps_store **store_r, char **error_r)
{
    *store_r = NULL;
    struct pg_conn *c = mpu_calloc(1, sizeof *c);
    c->base.ops = &pg_ops;
    mps_store *s = &c->base;
    c->conn = PQconnectdb(url);
    if (c->conn == NULL)
        abort(); /* out of memory, as mpu_malloc */
    if (PQstatus(c->conn) != CONNECTION_OK) {
        set_error(c, NULL);
        mps__error(error_r, "store: cannot connect to PostgreSQL: %s", c->err);
        mps_close(&s);
        errno = 0;
        return -1;
    }
    PQsetNoticeProcessor(c->conn, ignore_notice, NULL);
    char *err = NULL;
    if (mps__exec(s, MPS_PG_SESSION_SETTINGS, &err) < 0 || mps__migrate(s, &err) < 0) {
        mps__error(error_r, "PostgreSQL: %s", err);
        free(err);
        mps_close(&s);
        errno = 0;
        return -1;
    }
    *store_r = s;
    return 0;
}

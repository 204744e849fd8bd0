/*
 * Account leases on PostgreSQL (contract in store/lease.h).
 *
 * Every statement runs on its own (autocommit): each one is a complete
 * step that leaves the tables consistent, so a node that dies between two
 * of them leaves nothing half done. Claims use FOR UPDATE SKIP LOCKED, so
 * two nodes claiming at once take different rows, and READ COMMITTED
 * re-checks a row that another claimer changed meanwhile (an account just
 * claimed is no longer expired and drops out).
 *
 * The configured account list travels as one JSON array parameter
 * (jsonb_array_elements_text), which needs no quoting rules of our own.
 */
#include "store/lease.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define MPL_NAME_MAX 64
/* Local safety margin: stop trusting a lease this long before the
 * database would let it expire (clock rates differ a little, and a
 * renewal's answer may arrive late). */
#define MPL_MARGIN_DIV 6
/* Nodes whose heartbeat expired this many TTLs ago leave mp_node. */
#define MPL_NODE_FORGET_TTLS 20

struct mpl_node {
    PGconn *conn;
    char *owner;
    char *name;
    uint32_t ttl_ms;
    char ttl_text[24];     /* $ ttl in milliseconds, as a parameter  */
    char *accounts_json;   /* configured accounts, JSON array       */
    size_t n_accounts;
    mpl_lease *held;       /* sorted by account                     */
    size_t n_held;
    int64_t claim_after;   /* mono ms: no claims before (joining)   */
    int outbox_role;       /* the "outbox" row of mp_role is ours    */
    int64_t trusted_until; /* mono ms: held leases assumed valid    */
    uint32_t next_ms;      /* from the last round                   */
};

static const char SCHEMA_SQL[] =
    "SELECT pg_advisory_xact_lock(7215064213620553);" /* concurrent CREATEs race */
    "CREATE TABLE IF NOT EXISTS mp_node ("
    " owner text PRIMARY KEY, name text NOT NULL,"
    " started_at timestamptz NOT NULL DEFAULT now(),"
    " seen_at timestamptz NOT NULL DEFAULT now(),"
    " expires_at timestamptz NOT NULL);"
    "CREATE TABLE IF NOT EXISTS mp_lease ("
    " account text PRIMARY KEY, owner text,"
    " epoch bigint NOT NULL DEFAULT 0,"
    " expires_at timestamptz NOT NULL DEFAULT '-infinity');"
    "CREATE INDEX IF NOT EXISTS mp_lease_owner ON mp_lease (owner);"
    "CREATE TABLE IF NOT EXISTS mp_role ("
    " name text PRIMARY KEY, owner text,"
    " epoch bigint NOT NULL DEFAULT 0,"
    " expires_at timestamptz NOT NULL DEFAULT '-infinity');"
    "INSERT INTO mp_role (name) VALUES ('outbox') ON CONFLICT DO NOTHING;";

/* ---- small helpers ---- */

static int fail(char **error_r, const char *what, const PGconn *c, const PGresult *r)
{
    const char *why = r != NULL ? PQresultErrorMessage(r) : NULL;
    if (why == NULL || *why == '\0')
        why = c != NULL ? PQerrorMessage(c) : "unknown error";
    if (error_r != NULL) {
        char *msg = mpu_asprintf("lease: %s: %s", what, why);
        size_t len = strlen(msg);
        while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
            msg[--len] = '\0';
        *error_r = msg;
    }
    return -1;
}

/* Run a statement; NULL (and *error_r) unless it returned `want`. */
static PGresult *run(mpl_node *n, const char *what, const char *sql, int nparams,
                     const char *const *params, ExecStatusType want, char **error_r)
{
    PGresult *r = PQexecParams(n->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        fail(error_r, what, n->conn, r);
        PQclear(r);
        return NULL;
    }
    return r;
}

static int64_t to_i64(const char *s)
{
    return s != NULL ? strtoll(s, NULL, 10) : 0;
}

static int lease_cmp(const void *a, const void *b)
{
    return strcmp(((const mpl_lease *)a)->account, ((const mpl_lease *)b)->account);
}

static mpl_lease *held_find(const mpl_node *n, const char *account)
{
    mpl_lease key = {.account = (char *)account};
    return bsearch(&key, n->held, n->n_held, sizeof *n->held, lease_cmp);
}

static void delta_acquired(mpl_delta *d, const char *account, int64_t epoch)
{
    d->acquired = mpu_realloc(d->acquired, (d->n_acquired + 1) * sizeof *d->acquired);
    d->acquired[d->n_acquired].account = mpu_strdup(account);
    d->acquired[d->n_acquired].epoch = epoch;
    d->n_acquired++;
}

static void delta_lost(mpl_delta *d, const char *account)
{
    d->lost = mpu_realloc(d->lost, (d->n_lost + 1) * sizeof *d->lost);
    d->lost[d->n_lost++] = mpu_strdup(account);
}

void mpl_delta_clear(mpl_delta *d)
{
    for (size_t i = 0; i < d->n_acquired; i++)
        free(d->acquired[i].account);
    for (size_t i = 0; i < d->n_lost; i++)
        free(d->lost[i]);
    free(d->acquired);
    free(d->lost);
    memset(d, 0, sizeof *d);
}

static void held_clear(mpl_node *n)
{
    for (size_t i = 0; i < n->n_held; i++)
        free(n->held[i].account);
    free(n->held);
    n->held = NULL;
    n->n_held = 0;
}

/* Replace the held set with the rows of `r` (account, epoch); what was
 * held and is not in `r` goes to d->lost, what is new to d->acquired. */
static void held_replace(mpl_node *n, const PGresult *r, mpl_delta *d)
{
    size_t rows = (size_t)PQntuples(r);
    mpl_lease *next = mpu_calloc(rows == 0 ? 1 : rows, sizeof *next);
    for (size_t i = 0; i < rows; i++) {
        next[i].account = mpu_strdup(PQgetvalue(r, (int)i, 0));
        next[i].epoch = to_i64(PQgetvalue(r, (int)i, 1));
    }
    qsort(next, rows, sizeof *next, lease_cmp);
    for (size_t i = 0; i < rows; i++) {
        const mpl_lease *old = held_find(n, next[i].account);
        if (old == NULL || old->epoch != next[i].epoch)
            delta_acquired(d, next[i].account, next[i].epoch);
    }
    for (size_t i = 0; i < n->n_held; i++) {
        mpl_lease key = {.account = n->held[i].account};
        if (bsearch(&key, next, rows, sizeof *next, lease_cmp) == NULL)
            delta_lost(d, n->held[i].account);
    }
    held_clear(n);
    n->held = next;
    n->n_held = rows;
}

/* Add the rows of `r` (account, epoch) to the held set, as acquired. */
static void held_add(mpl_node *n, const PGresult *r, mpl_delta *d)
{
    size_t rows = (size_t)PQntuples(r);
    if (rows == 0)
        return;
    n->held = mpu_realloc(n->held, (n->n_held + rows) * sizeof *n->held);
    for (size_t i = 0; i < rows; i++) {
        const char *account = PQgetvalue(r, (int)i, 0);
        int64_t epoch = to_i64(PQgetvalue(r, (int)i, 1));
        n->held[n->n_held].account = mpu_strdup(account);
        n->held[n->n_held].epoch = epoch;
        n->n_held++;
        delta_acquired(d, account, epoch);
    }
    qsort(n->held, n->n_held, sizeof *n->held, lease_cmp);
}

/* Drop the accounts named in column 0 of `r` from the held set, as lost. */
static void held_remove(mpl_node *n, const PGresult *r, mpl_delta *d)
{
    for (int i = 0; i < PQntuples(r); i++) {
        mpl_lease *l = held_find(n, PQgetvalue(r, i, 0));
        if (l == NULL)
            continue;
        delta_lost(d, l->account);
        free(l->account);
        size_t at = (size_t)(l - n->held);
        memmove(l, l + 1, (n->n_held - at - 1) * sizeof *l);
        n->n_held--;
    }
}

static char *json_of(const char *const *items, size_t count)
{
    json_t *a = json_array();
    for (size_t i = 0; i < count; i++)
        json_array_append_new(a, json_string(items[i]));
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    if (text == NULL)
        abort(); /* out of memory, or an id that is not UTF-8 (config refuses those) */
    return text;
}

static int name_ok(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > MPL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] == 0x7f || name[i] == '#')
            return 0;
    return 1;
}

/* ---- life cycle ---- */

/* NOTICEs ("relation already exists, skipping") are not errors, and this
 * module does not log. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

mpl_node *mpl_open(const mpl_options *o, char **error_r)
{
    if (!name_ok(o->name)) {
        if (error_r != NULL)
            *error_r = mpu_strdup("lease: the node name must be 1-64 printable characters "
                                  "without spaces or '#'");
        return NULL;
    }
    if (o->ttl_ms < 300) {
        if (error_r != NULL)
            *error_r = mpu_strdup("lease: the lease TTL must be at least 300 ms");
        return NULL;
    }
    PGconn *c = PQconnectdb(o->conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fail(error_r, "cannot connect to PostgreSQL", c, NULL);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL);
    unsigned char rnd[8];
    if (mpu_random(rnd, sizeof rnd) != 0) {
        PQfinish(c);
        if (error_r != NULL)
            *error_r = mpu_strdup("lease: no random bytes for the node's incarnation");
        return NULL;
    }
    mpl_node *n = mpu_calloc(1, sizeof *n);
    n->conn = c;
    n->name = mpu_strdup(o->name);
    n->owner = mpu_asprintf("%s#%02x%02x%02x%02x%02x%02x%02x%02x", o->name, rnd[0], rnd[1],
                            rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    n->ttl_ms = o->ttl_ms;
    snprintf(n->ttl_text, sizeof n->ttl_text, "%u", o->ttl_ms);
    n->accounts_json = mpu_strdup("[]");
    n->next_ms = 0;
    /* Nodes started together should see each other before anyone claims:
     * the first claim waits a heartbeat (at most 2 s) after joining. */
    uint32_t join_ms = o->ttl_ms / 3 < 2000 ? o->ttl_ms / 3 : 2000;
    n->claim_after = mpu_mono_ms() + join_ms;

    /* Several statements in one simple-query string run in one implicit
     * transaction: the advisory lock is held until the CREATEs commit. */
    PGresult *r = PQexec(c, SCHEMA_SQL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fail(error_r, "cannot create the lease tables", c, r);
        PQclear(r);
        mpl_close(n);
        return NULL;
    }
    PQclear(r);
    return n;
}

void mpl_close(mpl_node *n)
{
    if (n == NULL)
        return;
    PQfinish(n->conn);
    held_clear(n);
    free(n->owner);
    free(n->name);
    free(n->accounts_json);
    free(n);
}

const char *mpl_owner(const mpl_node *n)
{
    return n->owner;
}

int64_t mpl_held_epoch(const mpl_node *n, const char *account)
{
    const mpl_lease *l = held_find(n, account);
    return l != NULL ? l->epoch : 0;
}

size_t mpl_held_count(const mpl_node *n)
{
    return n->n_held;
}

/* ---- the configured accounts ---- */

int mpl_set_accounts(mpl_node *n, const char *const *accounts, size_t count, mpl_delta *d,
                     char **error_r)
{
    char *json = json_of(accounts, count);
    const char *p[2] = {json, n->owner};
    PGresult *r = run(n, "cannot register accounts",
                      "INSERT INTO mp_lease (account) "
                      "SELECT jsonb_array_elements_text($1::jsonb) ON CONFLICT DO NOTHING",
                      1, p, PGRES_COMMAND_OK, error_r);
    if (r == NULL) {
        free(json);
        return -1;
    }
    PQclear(r);
    /* Held leases of accounts this configuration no longer lists. */
    r = run(n, "cannot give back removed accounts",
            "UPDATE mp_lease SET owner = NULL, expires_at = '-infinity' "
            "WHERE owner = $2 AND account NOT IN "
            "(SELECT jsonb_array_elements_text($1::jsonb)) RETURNING account",
            2, p, PGRES_TUPLES_OK, error_r);
    if (r == NULL) {
        free(json);
        return -1;
    }
    held_remove(n, r, d);
    PQclear(r);
    free(n->accounts_json);
    n->accounts_json = json;
    n->n_accounts = count;
    return 0;
}

/* ---- one round ---- */

static int heartbeat(mpl_node *n, char **error_r)
{
    const char *p[3] = {n->owner, n->name, n->ttl_text};
    PGresult *r = run(n, "heartbeat failed",
                      "INSERT INTO mp_node (owner, name, expires_at) "
                      "VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond') "
                      "ON CONFLICT (owner) DO UPDATE SET seen_at = now(), "
                      "expires_at = EXCLUDED.expires_at",
                      3, p, PGRES_COMMAND_OK, error_r);
    if (r == NULL)
        return -1;
    PQclear(r);
    char forget[32];
    snprintf(forget, sizeof forget, "%llu",
             (unsigned long long)n->ttl_ms * MPL_NODE_FORGET_TTLS);
    const char *q[1] = {forget};
    /* A forgotten node's signal listener goes too (store/signal.h names
     * its connection after the owner, cut to PostgreSQL's 63 bytes): a
     * node frozen with its connection open would otherwise hold back the
     * server's NOTIFY queue for every node until it fills. If it wakes up,
     * it connects again and catches up from the store. Only connections of
     * our own role: ending any other needs privileges a node lacks, and
     * the statement would fail the heartbeat. */
    r = run(n, "cannot forget dead nodes",
            "WITH gone AS (DELETE FROM mp_node WHERE expires_at < "
            "now() - $1::bigint * interval '1 millisecond' RETURNING owner) "
            "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a "
            "JOIN gone ON a.application_name = left(gone.owner, 63) "
            "WHERE a.pid <> pg_backend_pid() AND a.usename = current_user",
            1, q, PGRES_TUPLES_OK, error_r);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

/* Renew what the database still lets us hold; anything else is lost. */
static int renew(mpl_node *n, mpl_delta *d, char **error_r)
{
    const char *p[3] = {n->owner, n->ttl_text, n->accounts_json};
    int64_t started = mpu_mono_ms();
    PGresult *r = run(n, "renewal failed",
                      "UPDATE mp_lease SET expires_at = now() + $2::bigint * interval "
                      "'1 millisecond' WHERE owner = $1 AND expires_at > now() AND account IN "
                      "(SELECT jsonb_array_elements_text($3::jsonb)) RETURNING account, epoch",
                      3, p, PGRES_TUPLES_OK, error_r);
    if (r == NULL)
        return -1;
    held_replace(n, r, d);
    PQclear(r);
    n->trusted_until = started + n->ttl_ms - n->ttl_ms / MPL_MARGIN_DIV;
    return 0;
}

static int live_members(mpl_node *n, int64_t *count_r, char **error_r)
{
    PGresult *r = run(n, "cannot count members",
                      "SELECT count(*) FROM mp_node WHERE expires_at > now()", 0, NULL,
                      PGRES_TUPLES_OK, error_r);
    if (r == NULL)
        return -1;
    *count_r = to_i64(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static int claim(mpl_node *n, size_t want, mpl_delta *d, char **error_r)
{
    char limit[24];
    snprintf(limit, sizeof limit, "%zu", want);
    const char *p[4] = {n->owner, n->ttl_text, n->accounts_json, limit};
    /* md5(account || owner) orders each node's candidates differently, so
     * nodes claiming at once rarely even meet on a row. */
    int64_t started = mpu_mono_ms();
    PGresult *r = run(n, "claim failed",
                      "UPDATE mp_lease l SET owner = $1, epoch = l.epoch + 1, "
                      "expires_at = now() + $2::bigint * interval '1 millisecond' "
                      "WHERE l.expires_at <= now() AND l.account IN (SELECT account FROM "
                      "mp_lease WHERE expires_at <= now() AND account IN "
                      "(SELECT jsonb_array_elements_text($3::jsonb)) "
                      "ORDER BY md5(account || $1) LIMIT $4::bigint "
                      "FOR UPDATE SKIP LOCKED) RETURNING account, epoch",
                      4, p, PGRES_TUPLES_OK, error_r);
    if (r == NULL)
        return -1;
    if (PQntuples(r) > 0 && n->n_held == 0)
        n->trusted_until = started + n->ttl_ms - n->ttl_ms / MPL_MARGIN_DIV;
    held_add(n, r, d);
    PQclear(r);
    return 0;
}

static int give_back(mpl_node *n, size_t count, mpl_delta *d, char **error_r)
{
    /* The last `count` of the held set (sorted by name): any choice is
     * fair, a stable one keeps the others' accounts where they are. */
    const char **names = mpu_calloc(count, sizeof *names);
    for (size_t i = 0; i < count; i++)
        names[i] = n->held[n->n_held - count + i].account;
    char *json = json_of(names, count);
    free(names);
    const char *p[2] = {n->owner, json};
    PGresult *r = run(n, "give back failed",
                      "UPDATE mp_lease SET owner = NULL, expires_at = '-infinity' "
                      "WHERE owner = $1 AND account IN "
                      "(SELECT jsonb_array_elements_text($2::jsonb)) RETURNING account",
                      2, p, PGRES_TUPLES_OK, error_r);
    free(json);
    if (r == NULL)
        return -1;
    held_remove(n, r, d);
    PQclear(r);
    return 0;
}

/* Take or renew the outbox role: ours when free, expired, or already
 * ours (unexpired: a node paused past it and replaced finds it gone). */
static int outbox_role(mpl_node *n, mpl_delta *d, char **error_r)
{
    const char *p[2] = {n->owner, n->ttl_text};
    PGresult *r = run(n, "outbox role failed",
                      "UPDATE mp_role SET epoch = CASE WHEN owner = $1 AND expires_at > now() "
                      "THEN epoch ELSE epoch + 1 END, owner = $1, "
                      "expires_at = now() + $2::bigint * interval '1 millisecond' "
                      "WHERE name = 'outbox' AND (expires_at <= now() OR owner = $1) "
                      "RETURNING epoch",
                      2, p, PGRES_TUPLES_OK, error_r);
    if (r == NULL)
        return -1;
    int held = PQntuples(r) == 1;
    PQclear(r);
    if (held != n->outbox_role)
        d->outbox_role = held ? 1 : -1;
    n->outbox_role = held;
    return 0;
}

int mpl_outbox_role(const mpl_node *n)
{
    return n->outbox_role;
}

/* When does another node's lease on one of our accounts run out first? */
static int next_foreign_expiry(mpl_node *n, int64_t *ms_r, char **error_r)
{
    const char *p[2] = {n->owner, n->accounts_json};
    PGresult *r = run(n, "cannot read lease expiries",
                      "SELECT ceil(extract(epoch FROM min(expires_at) - now()) * 1000)::bigint "
                      "FROM mp_lease WHERE expires_at > now() AND owner IS DISTINCT FROM $1 "
                      "AND account IN (SELECT jsonb_array_elements_text($2::jsonb))",
                      2, p, PGRES_TUPLES_OK, error_r);
    if (r == NULL)
        return -1;
    *ms_r = PQgetisnull(r, 0, 0) ? -1 : to_i64(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

int mpl_tick(mpl_node *n, mpl_delta *d, char **error_r)
{
    uint32_t heartbeat_ms = n->ttl_ms / 3;
    if (heartbeat(n, error_r) != 0 || renew(n, d, error_r) != 0)
        return -1;
    int64_t now = mpu_mono_ms();
    if (n->outbox_role && outbox_role(n, d, error_r) != 0)
        return -1;
    if (now < n->claim_after) {
        /* Joining: registered and renewed, nothing claimed yet. */
        n->next_ms = (uint32_t)(n->claim_after - now);
        return 0;
    }
    int64_t members = 1;
    if (live_members(n, &members, error_r) != 0)
        return -1;
    if (members < 1)
        members = 1;
    size_t share = (n->n_accounts + (size_t)members - 1) / (size_t)members;
    if (n->n_held < share) {
        if (claim(n, share - n->n_held, d, error_r) != 0)
            return -1;
    } else if (n->n_held > share) {
        if (give_back(n, n->n_held - share, d, error_r) != 0)
            return -1;
    }
    if (!n->outbox_role && outbox_role(n, d, error_r) != 0)
        return -1;
    int64_t foreign = -1;
    if (next_foreign_expiry(n, &foreign, error_r) != 0)
        return -1;
    n->next_ms = heartbeat_ms;
    /* Wake just after another node's lease runs out, when we would take
     * some of it: that is how a dead node's accounts move within the TTL. */
    if (foreign >= 0 && n->n_held < n->n_accounts && foreign + 20 < (int64_t)heartbeat_ms)
        n->next_ms = (uint32_t)(foreign + 20);
    return 0;
}

uint32_t mpl_next_tick_ms(const mpl_node *n)
{
    return n->next_ms;
}

void mpl_expire_local(mpl_node *n, int64_t now_ms, mpl_delta *d)
{
    if ((n->n_held == 0 && !n->outbox_role) || now_ms < n->trusted_until)
        return;
    if (n->outbox_role) {
        n->outbox_role = 0;
        d->outbox_role = -1;
    }
    for (size_t i = 0; i < n->n_held; i++)
        delta_lost(d, n->held[i].account);
    held_clear(n);
}

int mpl_release_all(mpl_node *n, char **error_r)
{
    const char *p[1] = {n->owner};
    PGresult *r = run(n, "release failed",
                      "UPDATE mp_lease SET owner = NULL, expires_at = '-infinity' "
                      "WHERE owner = $1",
                      1, p, PGRES_COMMAND_OK, error_r);
    if (r == NULL)
        return -1;
    PQclear(r);
    held_clear(n);
    r = run(n, "cannot give the outbox role back",
            "UPDATE mp_role SET owner = NULL, expires_at = '-infinity' WHERE owner = $1", 1, p,
            PGRES_COMMAND_OK, error_r);
    if (r == NULL)
        return -1;
    PQclear(r);
    n->outbox_role = 0;
    r = run(n, "cannot leave the cluster", "DELETE FROM mp_node WHERE owner = $1", 1, p,
            PGRES_COMMAND_OK, error_r);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

/* ---- members ---- */

int mpl_members(mpl_node *n, mpl_member **list_r, size_t *count_r, char **error_r)
{
    PGresult *r = run(n, "cannot list members",
                      "SELECT n.owner, n.name, n.expires_at > now(), "
                      "(SELECT count(*) FROM mp_lease l WHERE l.owner = n.owner "
                      " AND l.expires_at > now()), "
                      "floor(extract(epoch FROM n.started_at) * 1000)::bigint, "
                      "floor(extract(epoch FROM n.seen_at) * 1000)::bigint "
                      "FROM mp_node n ORDER BY n.name, n.owner",
                      0, NULL, PGRES_TUPLES_OK, error_r);
    if (r == NULL)
        return -1;
    size_t rows = (size_t)PQntuples(r);
    mpl_member *list = mpu_calloc(rows == 0 ? 1 : rows, sizeof *list);
    for (size_t i = 0; i < rows; i++) {
        list[i].owner = mpu_strdup(PQgetvalue(r, (int)i, 0));
        list[i].name = mpu_strdup(PQgetvalue(r, (int)i, 1));
        list[i].live = PQgetvalue(r, (int)i, 2)[0] == 't';
        list[i].leases = to_i64(PQgetvalue(r, (int)i, 3));
        list[i].started_ms = to_i64(PQgetvalue(r, (int)i, 4));
        list[i].seen_ms = to_i64(PQgetvalue(r, (int)i, 5));
    }
    PQclear(r);
    *list_r = list;
    *count_r = rows;
    return 0;
}

void mpl_members_free(mpl_member *list, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(list[i].owner);
        free(list[i].name);
    }
    free(list);
}

/* Unit tests of core/store against real SQLite files in a temporary
 * directory, or, with MP_TEST_PG_URL set (tests/integration/pgserver.py
 * --run does it: ctest's unit.test_store.pg), against a fresh PostgreSQL
 * database per test. Tests of what only SQLite has (files, WAL
 * checkpoints, upgrades of released SQLite schemas, power-loss images)
 * are skipped on PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "store/pool.h"
#include "store/sqlite/sqlite-private.h"
#include "store/store.h"
#include "util/util.h"

typedef struct fixture {
    char dir[64];
    char path[512]; /* the store's location: a file, or a PostgreSQL URL */
    char db[64];    /* PostgreSQL: the test's database */
    mps_store *s;
} fixture;

/* MP_TEST_PG_URL: a PostgreSQL URL "postgresql:///<db>?<params>" of a
 * database the tests may create others from; NULL: SQLite. */
static const char *pg_url;

#define SQLITE_ONLY()                                                                    \
    do {                                                                                 \
        if (pg_url != NULL)                                                              \
            skip();                                                                      \
    } while (0)

static void pg_admin(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "postgresql: %s: %s\n", sql, PQerrorMessage(c));
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK ||
                PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(c);
}

/* A fresh database on the test server and its URL in fx->path. */
static int pg_setup(fixture *fx)
{
    static int counter;
    snprintf(fx->db, sizeof fx->db, "mpt_%d_%d", (int)getpid(), counter++);
    char sql[256];
    snprintf(sql, sizeof sql,
             "CREATE DATABASE %s TEMPLATE template0 LOCALE_PROVIDER icu"
             " ICU_LOCALE 'en-US'",
             fx->db);
    pg_admin(pg_url, sql);
    const char *path = strstr(pg_url, ":///");
    const char *query = strchr(pg_url, '?');
    if (path == NULL || query == NULL)
        return -1;
    snprintf(fx->path, sizeof fx->path, "%.*s:///%s%s", (int)(path - pg_url), pg_url,
             fx->db, query);
    return 0;
}

static int setup(void **state)
{
    fixture *fx = mpu_calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/mp-store-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/mailpulse.db", fx->dir);
    if (pg_url != NULL && pg_setup(fx) < 0)
        return -1;
    char *err = NULL;
    if (mps_open(fx->path, &fx->s, &err) < 0) {
        fprintf(stderr, "open: %s\n", err);
        free(err);
        return -1;
    }
    if (mps_account_ensure(fx->s, "alice", "fix", NULL) < 0 ||
        mps_folder_ensure(fx->s, "alice", "INBOX", MP_ROLE_INBOX, NULL) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    mps_close(&fx->s);
    mpu_clock_set_offset_ms(0);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s%s", fx->path, suffixes[i]);
        unlink(p);
    }
    rmdir(fx->dir);
    if (pg_url != NULL && fx->db[0] != '\0') {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", fx->db);
        pg_admin(pg_url, sql);
    }
    free(fx);
    return 0;
}

/* ---- helpers ---- */

static mp_change change(mp_change_kind kind, const char *id, const char *subject,
                        const char *flags, int64_t date)
{
    mp_change c = {
        .kind = kind,
        .id = id,
        .subject = subject,
        .flags = flags,
        .date = date,
        .size = 100,
        .from = "Bob <bob@example.org>",
        .to = "alice@example.org",
    };
    return c;
}

static mps_commit_result commit_one(mps_store *s, const char *folder, const mp_change *c,
                                    const char *cursor)
{
    mps_batch *b = mps_batch_new("alice", folder);
    if (c != NULL)
        mps_batch_add(b, c);
    mps_commit_result res;
    char *err = NULL;
    int rc = mps_batch_commit(s, b, cursor, NULL, -1, 0, &res, &err);
    if (rc != 0)
        fprintf(stderr, "commit: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(mps_batch_pending(b), 0);
    mps_batch_free(&b);
    assert_null(b);
    return res;
}

/* The events after `after`, all of them. */
static size_t events(mps_store *s, int64_t after, mps_event **list_r)
{
    size_t n = 0;
    assert_int_equal(mps_events_after(s, after, 1000, NULL, NULL, list_r, &n, NULL), 0);
    return n;
}

static char *public_id(const char *pid)
{
    char id[26];
    mps_message_public_id("alice", pid, id, sizeof id);
    return mpu_strdup(id);
}

static json_t *event_data(const mps_event *e)
{
    assert_non_null(e->data_json);
    json_t *j = json_loads(e->data_json, 0, NULL);
    assert_non_null(j);
    return j;
}

static void exec_raw(const char *path, const char *sql)
{
    if (pg_url != NULL) {
        pg_admin(path, sql);
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "raw sql: %s\n", msg);
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);
}

/* Take a store back to schema 6 (one folder per message, before
 * memberships, no subscription secrets), the shape of a store from before
 * migration 7. */
static const char schema6_sql[] =
    "ALTER TABLE subscriptions DROP COLUMN secret;"
    "DROP TABLE memberships; DROP TABLE account_cursors; DROP TABLE driver_state;"
    "DROP TRIGGER folders_added;"
    "CREATE INDEX messages_by_folder ON messages"
    "  (account, folder, deleted, date DESC, id DESC);"
    "CREATE INDEX messages_by_uid ON messages (account, folder, uid);"
    "CREATE TRIGGER folders_added AFTER INSERT ON folders BEGIN"
    "  UPDATE folders SET"
    "    live_count = (SELECT COUNT(*) FROM messages m WHERE m.account = NEW.account"
    "      AND m.folder = NEW.name AND m.deleted = 0),"
    "    body_count = (SELECT COUNT(*) FROM messages m JOIN bodies b"
    "      ON b.message_id = m.id WHERE m.account = NEW.account AND m.folder = NEW.name"
    "      AND m.deleted = 0)"
    "  WHERE account = NEW.account AND name = NEW.name;"
    "END;"
    "PRAGMA user_version = 6;";

/* ---- tests ---- */

static void test_public_id(void **state)
{
    (void)state;
    char a[26], b[26], c[26];
    mps_message_public_id("alice", "42:7", a, sizeof a);
    mps_message_public_id("alice", "42:7", b, sizeof b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 25);
    assert_int_equal(a[0], 'm');
    for (size_t i = 1; i < 25; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));

    /* Same digest as SHA-256 over "alice" NUL "42:7". */
    char expect[25];
    mpu_sha256_hex("alice\0"
                   "42:7",
                   10, 12, expect);
    assert_string_equal(a + 1, expect);

    /* The separator keeps the two parts apart. */
    mps_message_public_id("ab", "c", b, sizeof b);
    mps_message_public_id("a", "bc", c, sizeof c);
    assert_string_not_equal(b, c);
    mps_message_public_id("bob", "42:7", c, sizeof c);
    assert_string_not_equal(a, c);

    char small[8];
    mps_message_public_id("alice", "42:7", small, sizeof small);
    assert_int_equal(strlen(small), 7);
    assert_memory_equal(small, a, 7);
}

static void test_migrations_idempotent(void **state)
{
    fixture *fx = *state;
    int version = mps_schema_version(fx->s);
    assert_true(version >= 1);
    mps_close(&fx->s);
    assert_null(fx->s);

    char *err = NULL;
    assert_int_equal(mps_open(fx->path, &fx->s, &err), 0);
    assert_int_equal(mps_schema_version(fx->s), version);
    /* Data survives reopening: migrations did not run again. */
    mps_account_row row;
    assert_int_equal(mps_account_get(fx->s, "alice", &row, NULL), 0);
    assert_string_equal(row.instance, "fix");
    mps_account_row_clear(&row);
    mps_close(&fx->s);

    /* A database from a newer build is refused, not downgraded. */
    char sql[64];
    const char *bump =
        pg_url != NULL ? "UPDATE store_version SET version = " : "PRAGMA user_version=";
    snprintf(sql, sizeof sql, "%s%d", bump, version + 1);
    exec_raw(fx->path, sql);
    assert_int_equal(mps_open(fx->path, &fx->s, &err), -1);
    assert_null(fx->s);
    assert_non_null(strstr(err, "newer"));
    free(err);
    err = NULL;
    snprintf(sql, sizeof sql, "%s%d", bump, version);
    exec_raw(fx->path, sql);
    assert_int_equal(mps_open(fx->path, &fx->s, &err), 0);
}

static void test_open_failure(void **state)
{
    (void)state;
    mps_store *s = NULL;
    char *err = NULL;
    assert_int_equal(mps_open("/nonexistent-dir/x/mailpulse.db", &s, &err), -1);
    assert_null(s);
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent-dir/x/mailpulse.db"));
    free(err);
    mps_close(&s);
    mps_close(NULL);
    if (pg_url == NULL)
        return;
    /* A PostgreSQL store that cannot be reached: a clear error that never
     * shows the URL's password. */
    err = NULL;
    assert_int_equal(mps_open("postgresql://mp:sekrit@/nosuchdb?host=/nonexistent-dir",
                              &s, &err),
                     -1);
    assert_null(s);
    assert_non_null(err);
    assert_non_null(strstr(err, "PostgreSQL"));
    assert_null(strstr(err, "sekrit"));
    free(err);
}

/* The store holds secrets: owner-only whatever the umask, and a file an
 * admin left readable is tightened at open; -wal and -shm follow. */
static void test_owner_only(void **state)
{
    SQLITE_ONLY();
    fixture *fx = *state;
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", fx->path);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);

    char other[160];
    snprintf(other, sizeof other, "%s/loose.db", fx->dir);
    FILE *fp = fopen(other, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(chmod(other, 0644), 0);
    mps_store *s = NULL;
    char *err = NULL;
    assert_int_equal(mps_open(other, &s, &err), 0);
    assert_int_equal(stat(other, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    mps_close(&s);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[200];
        snprintf(p, sizeof p, "%s%s", other, suffixes[i]);
        unlink(p);
    }
}

static void test_batch_rules(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    char *id1 = public_id("p1");

    /* Insert -> message.new with version 1. */
    mp_change c = change(MP_CHANGE_NEW, "p1", "Hello", "\\Seen", 1000);
    c.uid = 7;
    mps_commit_result res = commit_one(s, "INBOX", &c, NULL);
    assert_int_equal(res.applied, 1);
    assert_int_equal(res.events, 1);
    assert_int_equal(res.new_messages, 1);
    mps_event *ev;
    size_t n = events(s, 0, &ev);
    assert_int_equal(n, 1);
    assert_int_equal(res.last_seq, ev[0].seq);
    assert_string_equal(ev[0].type, "message.new");
    assert_string_equal(ev[0].account, "alice");
    assert_string_equal(ev[0].folder, "INBOX");
    assert_string_equal(ev[0].message, id1);
    assert_string_equal(ev[0].idem_key, "alice/p1/1");
    json_t *data = event_data(&ev[0]);
    assert_int_equal(json_integer_value(json_object_get(data, "uid")), 7);
    assert_string_equal(json_string_value(json_object_get(data, "subject")), "Hello");
    json_decref(data);
    int64_t last = ev[0].seq;
    mps_events_free(&ev, n);
    assert_null(ev);

    mps_message m;
    assert_int_equal(mps_message_get(s, id1, &m, NULL), 0);
    assert_string_equal(m.provider_id, "p1");
    assert_string_equal(m.subject, "Hello");
    assert_string_equal(m.flags, "\\Seen");
    assert_int_equal(m.uid, 7);
    assert_int_equal(m.deleted, 0);
    assert_null(m.ref);
    mps_message_clear(&m);

    /* Replaying the same NEW (flags reordered too) changes nothing. */
    res = commit_one(s, "INBOX", &c, NULL);
    assert_int_equal(res.events, 0);
    assert_int_equal(res.applied, 0);
    assert_int_equal(events(s, last, &ev), 0);

    /* A flag change -> message.updated, key with version 2. */
    mp_change u = {.kind = MP_CHANGE_UPDATED, .id = "p1", .flags = "\\Seen \\Flagged"};
    res = commit_one(s, "INBOX", &u, NULL);
    assert_int_equal(res.events, 1);
    assert_int_equal(res.new_messages, 0);
    n = events(s, last, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "message.updated");
    assert_string_equal(ev[0].idem_key, "alice/p1/2");
    data = event_data(&ev[0]);
    json_t *flags = json_object_get(data, "flags");
    assert_int_equal(json_array_size(flags), 2);
    assert_string_equal(json_string_value(json_array_get(flags, 0)), "\\Flagged");
    assert_string_equal(json_string_value(json_array_get(flags, 1)), "\\Seen");
    json_decref(data);
    last = ev[0].seq;
    mps_events_free(&ev, n);

    /* The same flags in another order, as NEW or UPDATED: no event. */
    u.flags = "\\Flagged  \\Seen \\Seen";
    res = commit_one(s, "INBOX", &u, NULL);
    assert_int_equal(res.events, 0);
    c.flags = "\\Flagged \\Seen";
    res = commit_one(s, "INBOX", &c, NULL);
    assert_int_equal(res.events, 0);

    /* UPDATED of an unknown id is ignored. */
    u.id = "nope";
    res = commit_one(s, "INBOX", &u, NULL);
    assert_int_equal(res.events, 0);
    assert_int_equal(res.applied, 0);
    assert_int_equal(mps_message_get(s, "mnope", &m, NULL), 1);

    /* Delete -> tombstone + message.deleted; again -> nothing. */
    mp_change d = {.kind = MP_CHANGE_DELETED, .id = "p1"};
    res = commit_one(s, "INBOX", &d, NULL);
    assert_int_equal(res.events, 1);
    n = events(s, last, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "message.deleted");
    assert_string_equal(ev[0].idem_key, "alice/p1/3");
    assert_string_equal(ev[0].message, id1);
    last = ev[0].seq;
    mps_events_free(&ev, n);
    assert_int_equal(mps_message_get(s, id1, &m, NULL), 0);
    assert_int_equal(m.deleted, 1);
    mps_message_clear(&m);
    res = commit_one(s, "INBOX", &d, NULL);
    assert_int_equal(res.events, 0);
    assert_int_equal(res.applied, 0);

    /* A tombstoned id that comes back is new again, with the next version. */
    res = commit_one(s, "INBOX", &c, NULL);
    assert_int_equal(res.new_messages, 1);
    n = events(s, last, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "message.new");
    assert_string_equal(ev[0].idem_key, "alice/p1/4");
    assert_string_equal(ev[0].message, id1);
    last = ev[0].seq;
    mps_events_free(&ev, n);

    /* Re-key: silent, keeps the public id. */
    mp_change r = change(MP_CHANGE_SYNCED, "p1-new", "Hello", "\\Flagged \\Seen", 1000);
    r.old_id = "p1";
    r.uid = 9;
    res = commit_one(s, "INBOX", &r, NULL);
    assert_int_equal(res.events, 0);
    assert_int_equal(res.applied, 1);
    assert_int_equal(events(s, last, &ev), 0);
    assert_int_equal(mps_message_get(s, id1, &m, NULL), 0);
    assert_string_equal(m.provider_id, "p1-new");
    assert_int_equal(m.uid, 9);
    assert_int_equal(m.deleted, 0);
    mps_message_clear(&m);
    /* A replayed re-key is harmless. */
    res = commit_one(s, "INBOX", &r, NULL);
    assert_int_equal(res.events, 0);
    /* Later events of the re-keyed message use the new provider id. */
    u.id = "p1-new";
    u.flags = "";
    res = commit_one(s, "INBOX", &u, NULL);
    n = events(s, last, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].idem_key, "alice/p1-new/5");
    assert_string_equal(ev[0].message, id1);
    last = ev[0].seq;
    mps_events_free(&ev, n);

    /* NEW of a stored message seen in another folder: a move is an update. */
    assert_int_equal(mps_folder_ensure(s, "alice", "Archive", MP_ROLE_ARCHIVE, NULL), 0);
    mp_change mv = change(MP_CHANGE_NEW, "p1-new", "Hello", "", 1000);
    res = commit_one(s, "Archive", &mv, NULL);
    assert_int_equal(res.events, 1);
    n = events(s, last, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "message.updated");
    assert_string_equal(ev[0].folder, "Archive");
    mps_events_free(&ev, n);

    /* SYNCED counts history depth. */
    mps_batch *b = mps_batch_new("alice", "INBOX");
    mp_change s1 = change(MP_CHANGE_SYNCED, "h1", "old 1", "", 10);
    mp_change s2 = change(MP_CHANGE_SYNCED, "h2", "old 2", "", 20);
    mps_batch_add(b, &s1);
    mps_batch_add(b, &s2);
    mps_batch_add(b, &s2);
    assert_int_equal(mps_batch_pending(b), 3);
    assert_int_equal(mps_batch_commit(s, b, NULL, "pos-1", 0, 0, &res, NULL), 0);
    assert_int_equal(res.events, 2);
    assert_int_equal(res.new_messages, 0);
    mps_batch_free(&b);
    mps_folder f;
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_int_equal(f.synced_count, 2);
    assert_int_equal(f.messages, 2);
    assert_string_equal(f.backfill_pos, "pos-1");
    assert_null(f.cursor);
    assert_int_equal(f.bootstrapped, 0);
    mps_folder_clear(&f);
    free(id1);
}

static void test_cursor_only_at_commit(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    mps_batch *b = mps_batch_new("alice", "INBOX");
    mp_change c = change(MP_CHANGE_SYNCED, "x1", "s", "", 5);
    mps_batch_add(b, &c);

    /* Staged changes are invisible until commit. */
    mps_folder f;
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_null(f.cursor);
    assert_int_equal(f.bootstrapped, 0);
    assert_int_equal(f.messages, 0);
    mps_folder_clear(&f);
    assert_int_equal(mps_events_last_seq(s), 0);

    mps_commit_result res;
    assert_int_equal(mps_batch_commit(s, b, "c1", "p1", 1, 0, &res, NULL), 0);
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_string_equal(f.cursor, "c1");
    assert_int_equal(f.bootstrapped, 1);
    assert_int_equal(f.backfill_done, 1);
    assert_int_equal(f.messages, 1);
    mps_folder_clear(&f);

    /* NULL keeps, -1 keeps; a backfill position clears the request. */
    assert_int_equal(mps_folder_request_backfill(s, "alice", "INBOX", NULL), 0);
    assert_int_equal(mps_folder_request_backfill(s, "alice", "Nope", NULL), 1);
    assert_int_equal(mps_batch_commit(s, b, NULL, NULL, -1, 0, &res, NULL), 0);
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_string_equal(f.cursor, "c1");
    assert_string_equal(f.backfill_pos, "p1");
    assert_int_equal(f.backfill_done, 1);
    assert_int_equal(f.backfill_requested, 1);
    mps_folder_clear(&f);
    assert_int_equal(mps_batch_commit(s, b, NULL, "p2", 0, 0, &res, NULL), 0);
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_string_equal(f.backfill_pos, "p2");
    assert_int_equal(f.backfill_done, 0);
    assert_int_equal(f.backfill_requested, 0);
    mps_folder_clear(&f);

    /* Reset drops the position; messages stay and fold in silently. */
    assert_int_equal(mps_folder_reset(s, "alice", "INBOX", NULL), 0);
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_null(f.cursor);
    assert_null(f.backfill_pos);
    assert_int_equal(f.bootstrapped, 0);
    assert_int_equal(f.messages, 1);
    mps_folder_clear(&f);
    int64_t last = mps_events_last_seq(s);
    mps_batch_reset(b, "uidvalidity changed");
    mps_batch_add(b, &c);
    assert_int_equal(mps_batch_commit(s, b, "c2", NULL, -1, 0, &res, NULL), 0);
    assert_int_equal(res.events, 1);
    mps_event *ev;
    size_t n = events(s, last, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "folder.reset");
    assert_string_equal(ev[0].idem_key, "alice/INBOX/reset/1");
    assert_null(ev[0].message);
    json_t *data = event_data(&ev[0]);
    assert_string_equal(json_string_value(json_object_get(data, "reason")),
                        "uidvalidity changed");
    json_decref(data);
    mps_events_free(&ev, n);
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_int_equal(f.resets, 1);
    assert_int_equal(f.synced_count, 1);
    assert_string_equal(f.cursor, "c2");
    mps_folder_clear(&f);
    assert_int_equal(mps_folder_reset(s, "alice", "Nope", NULL), -1);
    mps_batch_free(&b);
    mps_batch_free(&b);
}

static void test_failed_commit(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    mp_change ok = change(MP_CHANGE_NEW, "a", "fine", "", 1);
    commit_one(s, "INBOX", &ok, "c1");
    int64_t last = mps_events_last_seq(s);

    /* A trigger makes the second insert of the next batch fail. */
    if (pg_url != NULL)
        exec_raw(fx->path, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$"
                           " BEGIN IF NEW.subject = 'boom' THEN"
                           "  RAISE EXCEPTION 'provoked failure'; END IF; RETURN NEW; END $$;"
                           "CREATE TRIGGER boom BEFORE INSERT ON messages"
                           " FOR EACH ROW EXECUTE FUNCTION boom()");
    else
        exec_raw(fx->path, "CREATE TRIGGER boom BEFORE INSERT ON messages"
                           " WHEN NEW.subject = 'boom'"
                           " BEGIN SELECT RAISE(ABORT, 'provoked failure'); END;");
    mps_batch *b = mps_batch_new("alice", "INBOX");
    mp_change good = change(MP_CHANGE_NEW, "b", "good", "", 2);
    mp_change upd = {.kind = MP_CHANGE_UPDATED, .id = "a", .flags = "\\Seen"};
    mp_change bad = change(MP_CHANGE_NEW, "c", "boom", "", 3);
    mps_batch_add(b, &good);
    mps_batch_add(b, &upd);
    mps_batch_add(b, &bad);
    mps_batch_reset(b, "x");
    char *err = NULL;
    mps_commit_result res;
    assert_int_equal(mps_batch_commit(s, b, "c2", "pos", 1, 0, &res, &err), -1);
    assert_non_null(strstr(err, "provoked failure"));
    free(err);
    assert_int_equal(res.events, 0);
    /* Staged changes are kept for a retry. */
    assert_int_equal(mps_batch_pending(b), 3);

    mps_folder f;
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_string_equal(f.cursor, "c1");
    assert_null(f.backfill_pos);
    assert_int_equal(f.backfill_done, 0);
    assert_int_equal(f.resets, 0);
    assert_int_equal(f.messages, 1);
    mps_folder_clear(&f);
    assert_int_equal(mps_events_last_seq(s), last);
    char *idb = public_id("b");
    mps_message m;
    assert_int_equal(mps_message_get(s, idb, &m, NULL), 1);
    char *ida = public_id("a");
    assert_int_equal(mps_message_get(s, ida, &m, NULL), 0);
    assert_string_equal(m.flags, "");
    mps_message_clear(&m);

    /* The connection is still usable and the retry succeeds. */
    exec_raw(fx->path, pg_url != NULL ? "DROP TRIGGER boom ON messages" : "DROP TRIGGER boom");
    assert_int_equal(mps_batch_commit(s, b, "c2", NULL, -1, 0, &res, NULL), 0);
    assert_int_equal(res.events, 4);
    assert_int_equal(res.new_messages, 2);
    assert_int_equal(res.last_seq, mps_events_last_seq(s));
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_string_equal(f.cursor, "c2");
    assert_int_equal(f.messages, 3);
    mps_folder_clear(&f);
    mps_batch_free(&b);
    free(ida);
    free(idb);

    /* A batch for an unknown account fails cleanly. */
    b = mps_batch_new("nobody", "INBOX");
    mps_batch_add(b, &good);
    assert_int_equal(mps_batch_commit(s, b, "c", NULL, -1, 0, &res, &err), -1);
    assert_non_null(err);
    free(err);
    mps_batch_free(&b);
}

static void test_events_paging_filters(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    assert_int_equal(mps_account_ensure(s, "bob", "fix", NULL), 0);
    int64_t seq = 0;
    static const char *const types[] = {"message.new", "message.deleted",
                                        "account.status"};
    for (int i = 0; i < 9; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(mps_event_append(s, types[i % 3], i % 2 ? "bob" : "alice",
                                          "INBOX", NULL, key, "{\"n\":1}", &seq, NULL),
                         0);
        assert_int_equal(seq, i + 1);
    }
    /* Appending an existing key is idempotent and returns its seq. */
    assert_int_equal(
        mps_event_append(s, "message.new", "alice", NULL, NULL, "k2", NULL, &seq, NULL),
        0);
    assert_int_equal(seq, 3);
    assert_int_equal(mps_events_last_seq(s), 9);
    char *err = NULL;
    assert_int_equal(
        mps_event_append(s, "message.new", "alice", NULL, NULL, NULL, NULL, &seq, &err),
        -1);
    free(err);

    mps_event *ev;
    size_t n;
    /* Paging. */
    assert_int_equal(mps_events_after(s, 0, 4, NULL, NULL, &ev, &n, NULL), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ev[0].seq, 1);
    assert_int_equal(ev[3].seq, 4);
    assert_string_equal(ev[0].data_json, "{\"n\":1}");
    assert_true(ev[0].time_ms > 0);
    mps_events_free(&ev, n);
    assert_int_equal(mps_events_after(s, 4, 4, NULL, NULL, &ev, &n, NULL), 0);
    assert_int_equal(n, 4);
    assert_int_equal(ev[0].seq, 5);
    mps_events_free(&ev, n);
    assert_int_equal(mps_events_after(s, 8, 4, NULL, NULL, &ev, &n, NULL), 0);
    assert_int_equal(n, 1);
    mps_events_free(&ev, n);
    assert_int_equal(mps_events_after(s, 9, 4, NULL, NULL, &ev, &n, NULL), 0);
    assert_int_equal(n, 0);
    mps_events_free(&ev, n);

    /* Type filter: seq 1, 4, 7 are message.new. */
    const char *const only_new[] = {"message.new", NULL};
    assert_int_equal(mps_events_after(s, 0, 100, only_new, NULL, &ev, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ev[0].seq, 1);
    assert_int_equal(ev[1].seq, 4);
    assert_int_equal(ev[2].seq, 7);
    mps_events_free(&ev, n);
    /* Two types and an account: bob has the even seqs, of which 4 is
     * message.new and 6 account.status (2 and 8 are message.deleted). */
    const char *const two[] = {"message.new", "account.status", NULL};
    const char *const bob[] = {"bob", NULL};
    assert_int_equal(mps_events_after(s, 0, 100, two, bob, &ev, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].seq, 4);
    assert_int_equal(ev[1].seq, 6);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(ev[i].account, "bob");
    mps_events_free(&ev, n);
    /* Filter values are bound, never part of the SQL. */
    const char *const evil[] = {"x') OR 1=1 --", NULL};
    assert_int_equal(mps_events_after(s, 0, 100, evil, NULL, &ev, &n, NULL), 0);
    assert_int_equal(n, 0);
    mps_events_free(&ev, n);
    const char *const empty[] = {NULL};
    assert_int_equal(mps_events_after(s, 0, 100, empty, bob, &ev, &n, NULL), 0);
    assert_int_equal(n, 4);
    mps_events_free(&ev, n);
}

static void test_account_status(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    mps_account_row row;
    assert_int_equal(mps_account_get(s, "alice", &row, NULL), 0);
    assert_string_equal(row.id, "alice");
    assert_string_equal(row.status, "ok");
    assert_string_equal(row.push_state, "off");
    assert_null(row.last_error);
    assert_null(row.profile_json);
    mps_account_row_clear(&row);
    assert_int_equal(mps_account_get(s, "ghost", &row, NULL), 1);

    int changed = -1;
    assert_int_equal(
        mps_account_set_status(s, "alice", "error", "connect failed", &changed, NULL), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(
        mps_account_set_status(s, "alice", "error", "still failing", &changed, NULL), 0);
    assert_int_equal(changed, 0);
    mps_event *ev;
    size_t n = events(s, 0, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "account.status");
    assert_string_equal(ev[0].idem_key, "alice/status/1");
    assert_null(ev[0].folder);
    assert_null(ev[0].message);
    json_t *data = event_data(&ev[0]);
    assert_string_equal(json_string_value(json_object_get(data, "status")), "error");
    assert_string_equal(json_string_value(json_object_get(data, "error")),
                        "connect failed");
    assert_string_equal(json_string_value(json_object_get(data, "push_state")), "off");
    json_decref(data);
    mps_events_free(&ev, n);
    /* The error text follows without an event. */
    assert_int_equal(mps_account_get(s, "alice", &row, NULL), 0);
    assert_string_equal(row.last_error, "still failing");
    mps_account_row_clear(&row);

    assert_int_equal(mps_account_set_status(s, "alice", "ok", NULL, &changed, NULL), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(mps_account_set_push_state(s, "alice", "watching", NULL), 0);
    assert_int_equal(mps_account_set_push_state(s, "alice", "watching", NULL), 0);
    n = events(s, 0, &ev);
    assert_int_equal(n, 3);
    assert_string_equal(ev[1].idem_key, "alice/status/2");
    data = event_data(&ev[1]);
    assert_true(json_is_null(json_object_get(data, "error")));
    json_decref(data);
    assert_string_equal(ev[2].idem_key, "alice/status/3");
    data = event_data(&ev[2]);
    assert_string_equal(json_string_value(json_object_get(data, "push_state")),
                        "watching");
    assert_string_equal(json_string_value(json_object_get(data, "status")), "ok");
    json_decref(data);
    mps_events_free(&ev, n);

    char *err = NULL;
    assert_int_equal(mps_account_set_status(s, "ghost", "ok", NULL, &changed, &err), -1);
    assert_non_null(strstr(err, "ghost"));
    free(err);

    assert_int_equal(mps_account_set_profile(s, "alice", "{\"caps\":[\"IDLE\"]}", NULL),
                     0);
    assert_int_equal(mps_account_touch_sync(s, "alice", 12345, NULL), 0);
    assert_int_equal(mps_account_touch_sync(s, "ghost", 1, &err), -1);
    free(err);
    /* ensure again keeps data, updates the instance */
    assert_int_equal(mps_account_ensure(s, "alice", "fix2", NULL), 0);
    assert_int_equal(mps_account_get(s, "alice", &row, NULL), 0);
    assert_string_equal(row.profile_json, "{\"caps\":[\"IDLE\"]}");
    assert_int_equal(row.last_sync_ms, 12345);
    assert_string_equal(row.instance, "fix2");
    assert_string_equal(row.status, "ok");
    mps_account_row_clear(&row);
    mps_account_row_clear(NULL);
}

static void test_bodies(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    static const uint8_t raw[] = "Subject: x\r\n\r\nbody\0with nul";
    mp_change c = change(MP_CHANGE_NEW, "b1", "x", "", 1);
    c.raw = raw;
    c.raw_len = sizeof raw;
    mps_batch *b = mps_batch_new("alice", "INBOX");
    mps_batch_add(b, &c);
    mps_commit_result res;
    assert_int_equal(mps_batch_commit(s, b, NULL, NULL, -1, 60000, &res, NULL), 0);
    mps_batch_free(&b);
    char *id = public_id("b1");
    uint8_t *data;
    size_t len;
    assert_int_equal(mps_body_get(s, id, &data, &len, NULL), 0);
    assert_int_equal(len, sizeof raw);
    assert_memory_equal(data, raw, len);
    free(data);
    mps_message m;
    assert_int_equal(mps_message_get(s, id, &m, NULL), 0);
    assert_int_equal(m.has_body, 1);
    mps_message_clear(&m);
    mps_folder f;
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_int_equal(f.bodies, 1);
    mps_folder_clear(&f);

    /* Put with its own expiry; a body for an unknown message is refused. */
    char *id2 = public_id("b2");
    mp_change c2 = change(MP_CHANGE_NEW, "b2", "y", "", 2);
    commit_one(s, "INBOX", &c2, NULL);
    int64_t now = mpu_now_ms();
    assert_int_equal(mps_body_put(s, id2, (const uint8_t *)"abc", 3, 0, NULL), 0);
    assert_int_equal(mps_body_put(s, id2, (const uint8_t *)"abcd", 4, now + 1000, NULL),
                     0);
    assert_int_equal(mps_body_get(s, id2, &data, &len, NULL), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "abcd", 4);
    free(data);
    char *err = NULL;
    assert_int_equal(mps_body_put(s, "mnothere", (const uint8_t *)"a", 1, 0, &err), -1);
    free(err);
    mps_stats st;
    assert_int_equal(mps_stats_get(s, &st, NULL), 0);
    assert_int_equal(st.bodies, 2);
    assert_int_equal(st.body_bytes, (int64_t)sizeof raw + 4);

    /* Two minutes later both are expired: hidden, then cleaned up. */
    mpu_clock_set_offset_ms(120000);
    assert_int_equal(mps_body_get(s, id, &data, &len, NULL), 1);
    assert_null(data);
    assert_int_equal(mps_body_get(s, id2, &data, &len, NULL), 1);
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_int_equal(f.bodies, 0);
    assert_int_equal(f.messages, 2);
    mps_folder_clear(&f);
    int64_t removed = -1;
    assert_int_equal(mps_body_cleanup(s, mpu_now_ms(), &removed, NULL), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(mps_body_cleanup(s, mpu_now_ms(), &removed, NULL), 0);
    assert_int_equal(removed, 0);
    mpu_clock_set_offset_ms(0);
    assert_int_equal(mps_body_get(s, id, &data, &len, NULL), 1);

    /* No expiry (retention 0) survives cleanup; deleting drops the body. */
    assert_int_equal(mps_body_put(s, id, (const uint8_t *)"", 0, 0, NULL), 0);
    assert_int_equal(mps_body_cleanup(s, INT64_MAX, &removed, NULL), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(mps_body_get(s, id, &data, &len, NULL), 0);
    assert_int_equal(len, 0);
    free(data);
    mp_change d = {.kind = MP_CHANGE_DELETED, .id = "b1"};
    commit_one(s, "INBOX", &d, NULL);
    assert_int_equal(mps_body_get(s, id, &data, &len, NULL), 1);
    free(id);
    free(id2);
}

static void test_push(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    mps_subscription sub;
    assert_int_equal(mps_subscription_get(s, "alice", &sub, NULL), 1);
    assert_int_equal(mps_subscription_put(s, "alice", "sub-1", 1700000000, "h1", "cs-1", NULL),
                     0);
    assert_int_equal(mps_subscription_get(s, "alice", &sub, NULL), 0);
    assert_string_equal(sub.account, "alice");
    assert_string_equal(sub.provider_id, "sub-1");
    assert_int_equal(sub.expires_at, 1700000000);
    assert_string_equal(sub.cursor_hint, "h1");
    assert_string_equal(sub.secret, "cs-1");
    assert_true(sub.renewed_ms > 0);
    assert_int_equal(sub.last_notification_ms, 0);
    mps_subscription_clear(&sub);

    assert_int_equal(mps_push_hint_add(s, "alice", "INBOX", "h2", 5000, NULL), 0);
    assert_int_equal(mps_push_hint_add(s, "alice", NULL, NULL, 6000, NULL), 0);
    assert_int_equal(mps_account_ensure(s, "bob", "fix", NULL), 0);
    assert_int_equal(mps_push_hint_add(s, "bob", NULL, NULL, 7000, NULL), 0);

    /* Renewal keeps the notification time. */
    assert_int_equal(mps_subscription_put(s, "alice", "sub-2", 0, NULL, NULL, NULL), 0);
    assert_int_equal(mps_subscription_get(s, "alice", &sub, NULL), 0);
    assert_string_equal(sub.provider_id, "sub-2");
    assert_null(sub.cursor_hint);
    /* A renewal without a new secret keeps the stored one... */
    assert_string_equal(sub.secret, "cs-1");
    assert_int_equal(sub.last_notification_ms, 6000);
    mps_subscription_clear(&sub);
    mps_account_row row;
    assert_int_equal(mps_account_get(s, "alice", &row, NULL), 0);
    assert_int_equal(row.last_push_ms, 6000);
    mps_account_row_clear(&row);

    char **accounts;
    size_t n;
    assert_int_equal(mps_push_hints_accounts(s, &accounts, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(accounts[0], "alice");
    assert_string_equal(accounts[1], "bob");
    for (size_t i = 0; i < n; i++)
        free(accounts[i]);
    free(accounts);

    /* Hints survive reopening (durable); reading takes them over without
     * deleting them (a failed run leaves them), deleting removes exactly
     * the rows read. */
    mps_close(&fx->s);
    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    s = fx->s;
    mps_push_take take;
    assert_int_equal(mps_push_hints_read(s, "alice", NULL, 0, 0, 100, &take, NULL), 0);
    assert_int_equal(take.n, 2);
    assert_int_equal(take.n_rows, 2);
    assert_string_equal(take.hints[0].folder, "INBOX");
    assert_string_equal(take.hints[0].cursor_hint, "h2");
    assert_null(take.hints[1].folder);
    mps_push_take_clear(&take);
    assert_int_equal(mps_push_hints_read(s, "alice", NULL, 0, 0, 100, &take, NULL), 0);
    assert_int_equal(take.n_rows, 2);
    /* A hint arriving during the run is not deleted with the taken ones. */
    assert_int_equal(mps_push_hint_add(s, "alice", "Sent", "h3", 6500, NULL), 0);
    assert_int_equal(mps_push_hints_delete(s, &take, NULL), 0);
    mps_push_take_clear(&take);
    assert_int_equal(mps_push_hints_read(s, "alice", NULL, 0, 0, 100, &take, NULL), 0);
    assert_int_equal(take.n, 1);
    assert_string_equal(take.hints[0].folder, "Sent");
    assert_int_equal(mps_push_hints_delete(s, &take, NULL), 0);
    mps_push_take_clear(&take);
    assert_int_equal(mps_push_hints_read(s, "alice", NULL, 0, 0, 100, &take, NULL), 0);
    assert_int_equal(take.n_rows, 0);
    mps_push_take_clear(&take);
    assert_int_equal(mps_push_hints_accounts(s, &accounts, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(accounts[0], "bob");
    free(accounts[0]);
    free(accounts);

    /* ...and one with a new secret replaces it; it survives reopening. */
    assert_int_equal(mps_subscription_put(s, "alice", "sub-2", 0, NULL, "cs-2", NULL), 0);
    mps_close(&fx->s);
    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    s = fx->s;
    assert_int_equal(mps_subscription_get(s, "alice", &sub, NULL), 0);
    assert_string_equal(sub.secret, "cs-2");
    mps_subscription_clear(&sub);
    assert_null(sub.secret);

    assert_int_equal(mps_subscription_delete(s, "alice", NULL), 0);
    assert_int_equal(mps_subscription_get(s, "alice", &sub, NULL), 1);
    /* A new row after a delete starts without a secret. */
    assert_int_equal(mps_subscription_put(s, "alice", "sub-3", 0, NULL, NULL, NULL), 0);
    assert_int_equal(mps_subscription_get(s, "alice", &sub, NULL), 0);
    assert_null(sub.secret);
    mps_subscription_clear(&sub);
}

/* A store of schema 7 with a subscription (no secret column) upgrades to
 * 8: the row is kept, without a secret, and takes one afterwards. */
static void test_subscription_secret_migration(void **state)
{
    SQLITE_ONLY();
    fixture *fx = *state;
    assert_int_equal(mps_subscription_put(fx->s, "alice", "graph-sub-1", 1800000000, "h7",
                                          "cs-new", NULL),
                     0);
    mps_close(&fx->s);
    exec_raw(fx->path, "DROP TABLE subscriptions;"
                       "CREATE TABLE subscriptions ("
                       "  account TEXT PRIMARY KEY NOT NULL,"
                       "  provider_id TEXT,"
                       "  expires_at INTEGER NOT NULL DEFAULT 0,"
                       "  cursor_hint TEXT,"
                       "  renewed_ms INTEGER NOT NULL DEFAULT 0,"
                       "  last_notification_ms INTEGER NOT NULL DEFAULT 0);"
                       "INSERT INTO subscriptions VALUES"
                       "  ('alice', 'graph-sub-1', 1800000000, 'h7', 1234, 5678);"
                       "PRAGMA user_version = 7;");
    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    assert_int_equal(mps_schema_version(fx->s), 8);
    mps_subscription sub;
    assert_int_equal(mps_subscription_get(fx->s, "alice", &sub, NULL), 0);
    assert_string_equal(sub.provider_id, "graph-sub-1");
    assert_int_equal(sub.expires_at, 1800000000);
    assert_string_equal(sub.cursor_hint, "h7");
    assert_int_equal(sub.renewed_ms, 1234);
    assert_int_equal(sub.last_notification_ms, 5678);
    assert_null(sub.secret);
    mps_subscription_clear(&sub);
    assert_int_equal(mps_subscription_put(fx->s, "alice", "graph-sub-1", 1900000000, "h8",
                                          "cs-8", NULL),
                     0);
    assert_int_equal(mps_subscription_get(fx->s, "alice", &sub, NULL), 0);
    assert_string_equal(sub.secret, "cs-8");
    assert_int_equal(sub.last_notification_ms, 5678);
    mps_subscription_clear(&sub);
}

static void test_listing(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    assert_int_equal(mps_folder_ensure(s, "alice", "Sent", MP_ROLE_SENT, NULL), 0);
    mps_batch *b = mps_batch_new("alice", "INBOX");
    /* Dates: l0..l5 with two ties at 300; l6 deleted; l7 in Sent. */
    static const struct {
        const char *id;
        int64_t date;
    } msgs[] = {{"l0", 100}, {"l1", 300}, {"l2", 300}, {"l3", 200},
                {"l4", 500}, {"l5", 400}, {"l6", 600}};
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        mp_change c = change(MP_CHANGE_SYNCED, msgs[i].id, "s", "", msgs[i].date);
        mps_batch_add(b, &c);
    }
    mp_change d = {.kind = MP_CHANGE_DELETED, .id = "l6"};
    mps_batch_add(b, &d);
    mps_commit_result res;
    assert_int_equal(mps_batch_commit(s, b, "c", NULL, -1, 0, &res, NULL), 0);
    mps_batch_free(&b);
    mp_change sent = change(MP_CHANGE_NEW, "l7", "sent", "", 1000);
    commit_one(s, "Sent", &sent, NULL);

    /* Expected order: date desc, then public id desc for the tie. */
    char *i1 = public_id("l1"), *i2 = public_id("l2");
    const char *first_tie = strcmp(i1, i2) > 0 ? "l1" : "l2";
    const char *second_tie = strcmp(i1, i2) > 0 ? "l2" : "l1";
    const char *order[] = {"l4", "l5", first_tie, second_tie, "l3", "l0"};
    free(i1);
    free(i2);

    mps_message *list;
    size_t n;
    char *before = NULL;
    size_t seen = 0;
    while (1) {
        assert_int_equal(
            mps_messages_list(s, "alice", "INBOX", before, 4, &list, &n, NULL), 0);
        free(before);
        before = NULL;
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            assert_true(seen < 6);
            assert_string_equal(list[i].provider_id, order[seen]);
            assert_string_equal(list[i].folder, "INBOX");
            assert_int_equal(list[i].deleted, 0);
            seen++;
        }
        before = mpu_strdup(list[n - 1].id);
        mps_messages_free(&list, n);
        assert_null(list);
    }
    assert_int_equal(seen, 6);

    /* Page boundary inside the tie: before = the first of the tied pair. */
    char *tie = public_id(first_tie);
    assert_int_equal(mps_messages_list(s, "alice", "INBOX", tie, 10, &list, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].provider_id, second_tie);
    mps_messages_free(&list, n);
    free(tie);

    /* All folders. */
    assert_int_equal(mps_messages_list(s, "alice", NULL, NULL, 100, &list, &n, NULL), 0);
    assert_int_equal(n, 7);
    assert_string_equal(list[0].provider_id, "l7");
    assert_string_equal(list[0].folder, "Sent");
    mps_messages_free(&list, n);

    char *err = NULL;
    assert_int_equal(
        mps_messages_list(s, "alice", "INBOX", "mdoesnotexist", 10, &list, &n, &err), -1);
    assert_string_equal(err, "unknown message id in before");
    free(err);

    /* Folders: inbox first, counts from the messages. */
    assert_int_equal(mps_folder_ensure(s, "alice", "Zeta", MP_ROLE_NONE, NULL), 0);
    assert_int_equal(mps_folder_ensure(s, "alice", "Alpha", MP_ROLE_NONE, NULL), 0);
    assert_int_equal(mps_folder_set_error(s, "alice", "Zeta", "boom", NULL), 0);
    assert_int_equal(mps_folder_set_error(s, "alice", "Nope", "boom", &err), -1);
    free(err);
    mps_folder *folders;
    assert_int_equal(mps_folders_list(s, "alice", &folders, &n, NULL), 0);
    assert_int_equal(n, 4);
    assert_string_equal(folders[0].name, "INBOX");
    assert_int_equal(folders[0].role, MP_ROLE_INBOX);
    assert_int_equal(folders[0].messages, 6);
    assert_int_equal(folders[0].synced_count, 7);
    assert_string_equal(folders[1].name, "Sent");
    assert_int_equal(folders[1].messages, 1);
    assert_int_equal(folders[1].synced_count, 0);
    assert_string_equal(folders[2].name, "Alpha");
    assert_string_equal(folders[3].name, "Zeta");
    assert_string_equal(folders[3].last_error, "boom");
    mps_folders_free(&folders, n);
    assert_null(folders);

    mps_stats st;
    assert_int_equal(mps_stats_get(s, &st, NULL), 0);
    assert_int_equal(st.accounts, 1);
    assert_int_equal(st.folders, 4);
    assert_int_equal(st.messages, 7);
    assert_int_equal(st.last_seq, mps_events_last_seq(s));
    assert_int_equal(st.events, st.last_seq);
}

static void test_two_connections(void **state)
{
    fixture *fx = *state;
    mps_store *other = NULL;
    assert_int_equal(mps_open(fx->path, &other, NULL), 0);
    assert_int_equal(mps_schema_version(other), mps_schema_version(fx->s));
    mps_store *conns[2] = {fx->s, other};
    for (int i = 0; i < 20; i++) {
        mps_store *writer = conns[i % 2], *reader = conns[(i + 1) % 2];
        char id[16], cursor[16];
        snprintf(id, sizeof id, "w%d", i);
        snprintf(cursor, sizeof cursor, "c%d", i);
        mp_change c = change(MP_CHANGE_NEW, id, "s", "", i);
        mps_batch *b = mps_batch_new("alice", "INBOX");
        mps_batch_add(b, &c);
        mps_commit_result res;
        assert_int_equal(mps_batch_commit(writer, b, cursor, NULL, -1, 0, &res, NULL), 0);
        mps_batch_free(&b);
        /* Each connection sees the other's commits at once. */
        assert_int_equal(res.last_seq, mps_events_last_seq(reader));
        mps_folder f;
        assert_int_equal(mps_folder_get(reader, "alice", "INBOX", &f, NULL), 0);
        assert_int_equal(f.messages, i + 1);
        assert_string_equal(f.cursor, cursor);
        mps_folder_clear(&f);
        /* And the reader writes next, on state the writer just changed. */
        int changed = 0;
        assert_int_equal(mps_account_set_status(reader, "alice", i % 2 ? "ok" : "error",
                                                NULL, &changed, NULL),
                         0);
        assert_int_equal(changed, 1);
    }
    assert_int_equal(mps_events_last_seq(fx->s), 40);
    mps_event *ev;
    size_t n = events(other, 0, &ev);
    assert_int_equal(n, 40);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ev[i].seq, (int64_t)i + 1);
    assert_string_equal(ev[39].idem_key, "alice/status/20");
    mps_events_free(&ev, n);
    mps_close(&other);
}

/* What the per-folder counts must say, counted from the rows. */
static void counted(const char *path, const char *folder, int64_t now, int64_t *live_r,
                    int64_t *bodies_r)
{
    mps_store *s = NULL;
    assert_int_equal(mps_open(path, &s, NULL), 0);
    mps__stmt *st = NULL;
    assert_int_equal(
        mps__prepare(s,
                     "SELECT (SELECT COUNT(*) FROM messages m JOIN memberships ms"
                     "  ON ms.message = m.id WHERE m.account = 'alice'"
                     "  AND ms.folder = :folder AND m.deleted = 0),"
                     " (SELECT COUNT(*) FROM messages m JOIN memberships ms"
                     "  ON ms.message = m.id JOIN bodies b"
                     "  ON b.message_id = m.id WHERE m.account = 'alice'"
                     "  AND ms.folder = :folder AND m.deleted = 0"
                     "  AND (b.expires_ms = 0 OR b.expires_ms > :now)),"
                     /* Only live messages have memberships, and a live
                      * message's primary folder is one of them. */
                     " (SELECT COUNT(*) FROM memberships ms JOIN messages m"
                     "  ON m.id = ms.message WHERE m.deleted != 0)"
                     " + (SELECT COUNT(*) FROM messages m WHERE m.deleted = 0"
                     "  AND NOT EXISTS (SELECT 1 FROM memberships ms"
                     "  WHERE ms.message = m.id AND ms.folder = m.folder))",
                     &st, NULL),
        0);
    mps__bind_text(st, ":folder", folder);
    mps__bind_int(st, ":now", now);
    assert_int_equal(mps__step(st), MPS__ROW);
    *live_r = mps__col_int64(st, 0);
    *bodies_r = mps__col_int64(st, 1);
    assert_int_equal(mps__col_int64(st, 2), 0);
    mps__finish(s, st);
    mps_close(&s);
}

/* Every folder's counts equal the rows; INBOX holds `live` and `bodies`. */
static void check_counts(fixture *fx, int64_t live, int64_t bodies)
{
    static const char *const folders[] = {"INBOX", "Archive", "Ghost", "Work", "Sent"};
    for (size_t i = 0; i < 5; i++) {
        int64_t want_live, want_bodies;
        counted(fx->path, folders[i], mpu_now_ms(), &want_live, &want_bodies);
        mps_folder f;
        int rc = mps_folder_get(fx->s, "alice", folders[i], &f, NULL);
        if (rc == 1)
            continue; /* no row yet */
        assert_int_equal(rc, 0);
        assert_int_equal(f.messages, want_live);
        assert_int_equal(f.bodies, want_bodies);
        mps_folder_clear(&f);
    }
    int64_t inbox_live, inbox_bodies;
    counted(fx->path, "INBOX", mpu_now_ms(), &inbox_live, &inbox_bodies);
    assert_int_equal(inbox_live, live);
    assert_int_equal(inbox_bodies, bodies);
}

static void commit_changes(mps_store *s, const char *folder, const mp_change *c, size_t n,
                           int64_t retention_ms)
{
    mps_batch *b = mps_batch_new("alice", folder);
    for (size_t i = 0; i < n; i++)
        mps_batch_add(b, &c[i]);
    mps_commit_result res;
    assert_int_equal(mps_batch_commit(s, b, NULL, NULL, -1, retention_ms, &res, NULL), 0);
    mps_batch_free(&b);
}

/* The folder counts kept by the store's writes always equal a count of
 * the rows, through every way a message or a body comes and goes. */
static void test_folder_counts(void **state)
{
    fixture *fx = *state;
    static const uint8_t raw[] = "Subject: x\r\n\r\nbody";
    mp_change c[8];
    char ids[8][8];
    for (int i = 0; i < 8; i++) {
        snprintf(ids[i], sizeof ids[i], "c%d", i);
        c[i] = change(MP_CHANGE_SYNCED, ids[i], "s", "", 100 + i);
        if (i < 5) { /* five with a body, three without */
            c[i].raw = raw;
            c[i].raw_len = sizeof raw - 1;
        }
    }
    commit_changes(fx->s, "INBOX", c, 8, 0);
    check_counts(fx, 8, 5);
    /* The same again: nothing changes. */
    commit_changes(fx->s, "INBOX", c, 8, 0);
    check_counts(fx, 8, 5);

    /* Two move to Archive, one with a body. */
    mp_change moved[2] = {change(MP_CHANGE_SYNCED, "c0", "s", "", 100),
                          change(MP_CHANGE_SYNCED, "c7", "s", "", 107)};
    commit_changes(fx->s, "Archive", moved, 2, 0);
    check_counts(fx, 6, 4);

    /* Deleted: one with a body, one without; then one comes back. */
    mp_change gone[2] = {change(MP_CHANGE_DELETED, "c1", NULL, NULL, 0),
                         change(MP_CHANGE_DELETED, "c6", NULL, NULL, 0)};
    commit_changes(fx->s, "INBOX", gone, 2, 0);
    check_counts(fx, 4, 3);
    mp_change back = change(MP_CHANGE_NEW, "c6", "again", "", 106);
    commit_changes(fx->s, "INBOX", &back, 1, 0);
    check_counts(fx, 5, 3);

    /* A body cached later, and one stored again (no change). */
    char *id5 = public_id("c5");
    assert_int_equal(mps_body_put(fx->s, id5, raw, sizeof raw - 1, 0, NULL), 0);
    check_counts(fx, 5, 4);
    char *id2 = public_id("c2");
    assert_int_equal(mps_body_put(fx->s, id2, raw, 3, 0, NULL), 0);
    check_counts(fx, 5, 4);

    /* Bodies that expire: off the count at once, and still off once the
     * cleanup removed them. */
    mp_change brief[2] = {change(MP_CHANGE_SYNCED, "e0", "s", "", 200),
                          change(MP_CHANGE_SYNCED, "e1", "s", "", 201)};
    for (int i = 0; i < 2; i++) {
        brief[i].raw = raw;
        brief[i].raw_len = sizeof raw - 1;
    }
    commit_changes(fx->s, "INBOX", brief, 2, 1000);
    check_counts(fx, 7, 6);
    mpu_clock_set_offset_ms(5000);
    check_counts(fx, 7, 4);
    int64_t removed = 0;
    assert_int_equal(mps_body_cleanup(fx->s, mpu_now_ms(), &removed, NULL), 0);
    assert_int_equal(removed, 2);
    check_counts(fx, 7, 4);

    /* A body of a deleted message is not counted, until it comes back. */
    mp_change gone2 = change(MP_CHANGE_DELETED, "c3", NULL, NULL, 0);
    commit_changes(fx->s, "INBOX", &gone2, 1, 0);
    check_counts(fx, 6, 3);
    char *id3 = public_id("c3");
    assert_int_equal(mps_body_put(fx->s, id3, raw, sizeof raw - 1, 0, NULL), 0);
    check_counts(fx, 6, 3);
    mp_change back3 = change(MP_CHANGE_SYNCED, "c3", "s", "", 103);
    commit_changes(fx->s, "INBOX", &back3, 1, 0);
    check_counts(fx, 7, 4);

    /* A folder row made after its messages counts them. */
    exec_raw(fx->path, "INSERT INTO messages (id, account, provider_id, folder, indexed_ms)"
                       " VALUES ('mghost', 'alice', 'ghost-1', 'Ghost', 0);"
                       "INSERT INTO memberships (account, folder, message, added_ms)"
                       " VALUES ('alice', 'Ghost', 'mghost', 0)");
    assert_int_equal(mps_folder_ensure(fx->s, "alice", "Ghost", 0, NULL), 0);
    mps_folder f;
    assert_int_equal(mps_folder_get(fx->s, "alice", "Ghost", &f, NULL), 0);
    assert_int_equal(f.messages, 1);
    mps_folder_clear(&f);
    check_counts(fx, 7, 4);
    free(id5);
    free(id2);
    free(id3);
}

/* A store made before the counts (schema 4) gets them from its rows when
 * it is opened. */
static void test_counts_migration(void **state)
{
    SQLITE_ONLY();
    fixture *fx = *state;
    static const uint8_t raw[] = "Subject: x\r\n\r\nbody";
    mp_change c[3] = {change(MP_CHANGE_SYNCED, "m0", "s", "", 1),
                      change(MP_CHANGE_SYNCED, "m1", "s", "", 2),
                      change(MP_CHANGE_SYNCED, "m2", "s", "", 3)};
    c[0].raw = c[1].raw = raw;
    c[0].raw_len = c[1].raw_len = sizeof raw - 1;
    commit_changes(fx->s, "INBOX", c, 3, 0);
    mps_close(&fx->s);
    exec_raw(fx->path, schema6_sql);
    exec_raw(fx->path, "DROP TABLE store_meta; DROP TABLE epochs;"
                       "DROP TRIGGER folders_added;"
                       "ALTER TABLE folders DROP COLUMN live_count;"
                       "ALTER TABLE folders DROP COLUMN body_count;"
                       "PRAGMA user_version = 4;");
    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    assert_int_equal(mps_schema_version(fx->s), 8);
    mps_folder f;
    assert_int_equal(mps_folder_get(fx->s, "alice", "INBOX", &f, NULL), 0);
    assert_int_equal(f.messages, 3);
    assert_int_equal(f.bodies, 2);
    mps_folder_clear(&f);
}

static void count_wanted(void *arg)
{
    (*(int *)arg)++;
}

/* A commit of `mb` megabytes of bodies (one message per MB). */
static void commit_megabytes(mps_store *s, int *next_id, int mb)
{
    size_t len = (size_t)1024 * 1024;
    uint8_t *raw = mpu_calloc(1, len);
    mps_batch *b = mps_batch_new("alice", "INBOX");
    for (int i = 0; i < mb; i++) {
        char id[16];
        snprintf(id, sizeof id, "big%d", (*next_id)++);
        mp_change c = change(MP_CHANGE_SYNCED, id, "s", "", 1);
        c.raw = raw;
        c.raw_len = len;
        mps_batch_add(b, &c);
    }
    mps_commit_result res;
    assert_int_equal(mps_batch_commit(s, b, NULL, NULL, -1, 0, &res, NULL), 0);
    mps_batch_free(&b);
    free(raw);
}

/* Checkpoints handed elsewhere: a commit past MPS_CHECKPOINT_PAGES only
 * asks for one, mps_checkpoint() does it, and a writer past the backstop
 * checkpoints itself so the WAL cannot grow without bound. */
static void test_checkpoint_elsewhere(void **state)
{
    SQLITE_ONLY();
    fixture *fx = *state;
    int wanted = 0, next_id = 0, frames = 0, done = 0;
    mps_checkpoint_elsewhere(fx->s, count_wanted, &wanted);

    commit_megabytes(fx->s, &next_id, 1);
    assert_int_equal(wanted, 0); /* 1 MB: about 260 pages */
    commit_megabytes(fx->s, &next_id, 5);
    assert_int_equal(wanted, 1);
    /* Nobody checkpointed: the WAL holds every page written so far. */
    assert_int_equal(mps_checkpoint(fx->s, &frames, &done, NULL), 0);
    assert_true(frames > MPS_CHECKPOINT_PAGES);
    assert_int_equal(done, frames);

    /* The WAL restarts after a complete checkpoint. 70 MB more in steps of
     * 10 MB pass the backstop (16,000 pages, 62.5 MB) with the 7th: that
     * commit checkpoints on the writer, so the next one (1 MB) starts the
     * WAL over. */
    for (int i = 0; i < 7; i++)
        commit_megabytes(fx->s, &next_id, 10);
    assert_int_equal(wanted, 1 + 6); /* each commit past 1,000 pages but the 7th */
    commit_megabytes(fx->s, &next_id, 1);
    assert_int_equal(wanted, 7);
    assert_int_equal(mps_checkpoint(fx->s, &frames, &done, NULL), 0);
    assert_true(frames < MPS_CHECKPOINT_PAGES);
    assert_int_equal(done, frames);
}

/* ---- the pool (pool.h) ---- */

static atomic_int pool_threads_done;

static void count_thread_done(void)
{
    atomic_fetch_add(&pool_threads_done, 1);
}

struct pool_worker {
    mps_pool *pool;
    int call_done;     /* leave with mps_pool_thread_done, not by exiting */
    mps_store *first, *second;
    int wrote;
};

static void *pool_worker_main(void *arg)
{
    struct pool_worker *w = arg;
    w->first = mps_pool_thread(w->pool);
    w->second = mps_pool_thread(w->pool);
    w->wrote = mps_state_put(w->first, "alice", "from-worker", "yes", NULL) == 0;
    if (w->call_done)
        mps_pool_thread_done(w->pool);
    return NULL;
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Each thread gets a connection of its own, kept across calls; the owner's
 * is the one opened with the pool; a worker's is closed (thread_done run)
 * when it exits or says it is done; every connection is handed to the
 * checkpointer. */
static void test_pool_threads(void **state)
{
    fixture *fx = *state;
    atomic_store(&pool_threads_done, 0);
    mps_pool *pool = NULL;
    char *err = NULL;
    assert_int_equal(mps_pool_open(fx->path, count_thread_done, &pool, &err), 0);
    mps_store *owner = mps_pool_thread(pool);
    assert_non_null(owner);
    assert_ptr_equal(mps_pool_thread(pool), owner);
    if (pg_url == NULL)
        assert_non_null(mps__sqlite_of(owner)->checkpoint_wanted);

    for (int call_done = 0; call_done <= 1; call_done++) {
        struct pool_worker w = {.pool = pool, .call_done = call_done};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, pool_worker_main, &w), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_non_null(w.first);
        assert_ptr_not_equal(w.first, owner);
        assert_ptr_equal(w.second, w.first);
        assert_true(w.wrote);
        assert_int_equal(atomic_load(&pool_threads_done), call_done + 1);
    }
    char *v = NULL;
    assert_int_equal(mps_state_get(owner, "alice", "from-worker", &v, NULL), 0);
    assert_string_equal(v, "yes");
    free(v);

    mps_pool_close(&pool);
    assert_null(pool);
    assert_int_equal(atomic_load(&pool_threads_done), 3); /* the owner's */
    mps_pool_close(&pool);
    mps_pool_close(NULL);
}

/* Closing the pool checkpoints a last time: commits below the threshold
 * stay in the WAL while the pool runs and are in the database file once
 * it is closed (the fixture's connection stays open, so SQLite's own
 * checkpoint at the last close cannot be what moved them). */
static void test_pool_last_checkpoint(void **state)
{
    SQLITE_ONLY();
    fixture *fx = *state;
    mps_pool *pool = NULL;
    assert_int_equal(mps_pool_open(fx->path, NULL, &pool, NULL), 0);
    assert_int_equal(mps_checkpoint(fx->s, NULL, NULL, NULL), 0);
    off_t before = file_size(fx->path);
    int next_id = 0;
    commit_megabytes(mps_pool_thread(pool), &next_id, 1); /* ~260 pages */
    assert_true(file_size(fx->path) == before);
    mps_pool_close(&pool);
    assert_true(file_size(fx->path) >= before + 1000000);
}

/* A pool cannot open what the store cannot. */
static void test_pool_open_fails(void **state)
{
    (void)state;
    mps_pool *pool = NULL;
    char *err = NULL;
    assert_int_equal(mps_pool_open("/nonexistent-dir/x/mailpulse.db", NULL, &pool, &err), -1);
    assert_null(pool);
    assert_non_null(strstr(err, "cannot open"));
    free(err);
}

/* PostgreSQL: a lost connection fails the call in progress and the next
 * call reconnects, its cached statements prepared again; a transaction
 * whose connection went is not continued on a new one. */
static void test_pg_reconnect(void **state)
{
    fixture *fx = *state;
    if (pg_url == NULL)
        skip();
    mps_store *s = fx->s;
    mps_account_row row;
    assert_int_equal(mps_account_get(s, "alice", &row, NULL), 0); /* cached now */
    mps_account_row_clear(&row);
    for (int round = 0; round < 2; round++) {
        mps__stmt *st = NULL;
        assert_int_equal(mps__prepare(s, "SELECT pg_backend_pid()", &st, NULL), 0);
        assert_int_equal(mps__step(st), MPS__ROW);
        int64_t pid = mps__col_int64(st, 0);
        mps__finish(s, st);
        if (round == 1) {
            /* Inside a transaction: the commit fails, nothing half done. */
            assert_int_equal(mps__begin(s, NULL), 0);
        }
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld)", (long long)pid);
        pg_admin(fx->path, sql);
        char *err = NULL;
        if (round == 0) {
            assert_int_equal(mps_account_get(s, "alice", &row, &err), -1);
            assert_non_null(err);
            free(err);
        } else {
            assert_int_equal(mps__exec(s, "UPDATE accounts SET status = 'x'", &err), -1);
            free(err);
            err = NULL;
            assert_int_equal(mps__commit(s, &err), -1);
            free(err);
        }
        assert_int_equal(mps_account_get(s, "alice", &row, NULL), 0);
        assert_string_equal(row.instance, "fix");
        assert_string_not_equal(row.status, "x");
        mps_account_row_clear(&row);
    }
    mp_change c = change(MP_CHANGE_NEW, "r1", "after reconnect", "", 1);
    commit_one(s, "INBOX", &c, "c1");
    assert_true(mps_events_last_seq(s) > 0);
}

/* Text orders byte by byte on both backends (SQLite's BINARY; PostgreSQL's
 * columns are COLLATE "C", and the test databases use an ICU en-US
 * locale, whose order differs): folder lists and message pages come out
 * the same whichever store holds them. */
static void test_text_order(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    static const char *const names[] = {"beta", "Zeta", "archive", "Archive", "_x", "a-b",
                                        "ab"};
    const size_t n_names = sizeof names / sizeof names[0];
    for (size_t i = 0; i < n_names; i++)
        assert_int_equal(mps_folder_ensure(s, "alice", names[i], 0, NULL), 0);
    mps_folder *list = NULL;
    size_t n = 0;
    assert_int_equal(mps_folders_list(s, "alice", &list, &n, NULL), 0);
    assert_int_equal(n, n_names + 1);
    assert_string_equal(list[0].name, "INBOX");
    for (size_t i = 2; i < n; i++)
        assert_true(strcmp(list[i - 1].name, list[i].name) < 0);
    mps_folders_free(&list, n);
}

static void test_bad_utf8_in_events(void **state)
{
    fixture *fx = *state;
    /* Invalid UTF-8 and a long subject still give valid, small JSON. */
    char subject[600];
    memset(subject, 'a', sizeof subject - 1);
    subject[sizeof subject - 1] = '\0';
    subject[0] = (char)0xff;
    mp_change c = change(MP_CHANGE_NEW, "u1", subject, "", 1);
    commit_one(fx->s, "INBOX", &c, NULL);
    mps_event *ev;
    size_t n = events(fx->s, 0, &ev);
    assert_int_equal(n, 1);
    json_t *data = event_data(&ev[0]);
    const char *subj = json_string_value(json_object_get(data, "subject"));
    assert_non_null(subj);
    assert_true(strlen(subj) <= 200);
    assert_int_equal(subj[0], '?');
    json_decref(data);
    mps_events_free(&ev, n);
    /* The message itself keeps the bytes as given (PostgreSQL: valid
     * UTF-8 only, the invalid byte becomes U+FFFD). */
    char *id = public_id("u1");
    mps_message m;
    assert_int_equal(mps_message_get(fx->s, id, &m, NULL), 0);
    if (pg_url != NULL) {
        assert_memory_equal(m.subject, "\xef\xbf\xbd", 3);
        assert_string_equal(m.subject + 3, subject + 1);
    } else {
        assert_string_equal(m.subject, subject);
    }
    mps_message_clear(&m);
    free(id);
}

/* The statement cache: more distinct statements than it holds, and the same
 * SQL handed out twice at once (the second is not cached and must be
 * finalized on release). Results stay right throughout. */
static void test_statement_cache_limits(void **state)
{
    fixture *fx = *state;
    enum { N = MPS__STMT_CACHE + 10 };
    mps__stmt *sts[N];
    char sql[N][32];
    char *err = NULL;
    mps__stmt *a, *b;

    /* Reused after release, with its bindings cleared. */
    assert_int_equal(mps__prepare(fx->s, "SELECT :v + 0", &a, &err), 0);
    mps__bind_int(a, ":v", 42);
    assert_int_equal(mps__step(a), MPS__ROW);
    assert_int_equal(mps__col_int(a, 0), 42);
    mps__finish(fx->s, a);
    assert_int_equal(mps__prepare(fx->s, "SELECT :v + 0", &b, &err), 0);
    assert_ptr_equal(a, b);
    assert_int_equal(mps__step(b), MPS__ROW);
    assert_true(mps__col_null(b, 0));
    mps__finish(fx->s, b);

    /* More distinct statements than the cache holds. */
    for (int i = 0; i < N; i++) {
        snprintf(sql[i], sizeof sql[i], "SELECT %d", i);
        assert_int_equal(mps__prepare(fx->s, sql[i], &sts[i], &err), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(mps__step(sts[i]), MPS__ROW);
        assert_int_equal(mps__col_int(sts[i], 0), i);
        mps__finish(fx->s, sts[i]);
    }

    /* The same SQL handed out twice at once: the second copy is not cached
     * and is finalized on release. */
    assert_int_equal(mps__prepare(fx->s, sql[0], &a, &err), 0);
    assert_int_equal(mps__prepare(fx->s, sql[0], &b, &err), 0);
    assert_ptr_not_equal(a, b);
    assert_int_equal(mps__step(b), MPS__ROW);
    mps__finish(fx->s, b);
    assert_int_equal(mps__step(a), MPS__ROW);
    assert_int_equal(mps__col_int(a, 0), 0);
    mps__finish(fx->s, a);
}


/* ---- epochs and retention ---- */

static int64_t append_n(mps_store *s, const char *tag, int n)
{
    int64_t seq = 0;
    static int counter;
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "alice/%s/%d", tag, counter++);
        assert_int_equal(mps_event_append(s, "message.new", "alice", "INBOX", NULL, key,
                                          NULL, &seq, NULL),
                         0);
    }
    return seq;
}

/* A consistent copy of the database as it is now: what a power cut would
 * leave if the commits after this point never reached the disk. */
static void crash_image(mps_store *s, const char *dst_path)
{
    sqlite3 *dst = NULL;
    assert_int_equal(sqlite3_open(dst_path, &dst), SQLITE_OK);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", mps__sqlite_of(s)->db, "main");
    assert_non_null(b);
    assert_int_equal(sqlite3_backup_step(b, -1), SQLITE_DONE);
    assert_int_equal(sqlite3_backup_finish(b), SQLITE_OK);
    sqlite3_close(dst);
}

static void restore_image(fixture *fx, const char *image)
{
    static const char *const suffixes[] = {"-wal", "-shm"};
    for (size_t i = 0; i < 2; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s%s", fx->path, suffixes[i]);
        unlink(p);
    }
    assert_int_equal(rename(image, fx->path), 0);
}

/* A start without the clean-stop marker begins a new epoch at the next
 * seq; a client of the old epoch resumes before the reused seqs. */
static void test_epochs_power_loss(void **state)
{
    SQLITE_ONLY();
    fixture *fx = *state;
    int64_t epoch = 0;
    int unclean = -1;
    /* A new (or upgraded) store counts as cleanly stopped: epoch 1. */
    assert_int_equal(mps_epoch_begin(fx->s, &epoch, &unclean, NULL), 0);
    assert_int_equal(epoch, 1);
    assert_int_equal(unclean, 0);
    assert_int_equal(append_n(fx->s, "a", 3), 3);

    char image[160];
    snprintf(image, sizeof image, "%s/image.db", fx->dir);
    crash_image(fx->s, image);
    /* Streamed to a client, then lost with the power. */
    assert_int_equal(append_n(fx->s, "lost", 3), 6);
    mps_close(&fx->s);
    restore_image(fx, image);

    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    assert_int_equal(mps_epoch_begin(fx->s, &epoch, &unclean, NULL), 0);
    assert_int_equal(epoch, 2);
    assert_int_equal(unclean, 1);
    assert_int_equal(mps_epoch_current(fx->s), 2);
    /* The seqs 4..6 are handed out again. */
    assert_int_equal(append_n(fx->s, "b", 3), 6);

    static const struct {
        int64_t epoch, seq, after;
    } cases[] = {
        {1, 6, 3}, /* saw the lost 4..6: gets the new 4..6 */
        {1, 2, 2}, /* behind the loss: unchanged */
        {2, 6, 6}, /* current epoch */
        {0, 5, 5}, /* a plain seq is the current epoch */
        {9, 6, 3}, /* unknown newer epoch: from the current epoch's start */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t after = -1;
        assert_int_equal(mps_epoch_resume(fx->s, cases[i].epoch, cases[i].seq, &after, NULL),
                         0);
        assert_int_equal(after, cases[i].after);
    }

    /* A clean stop keeps the epoch; a second loss starts epoch 3 even with
     * no event in between, and epoch 1 still resumes before epoch 2. */
    assert_int_equal(mps_epoch_end(fx->s, NULL), 0);
    mps_close(&fx->s);
    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    assert_int_equal(mps_epoch_begin(fx->s, &epoch, &unclean, NULL), 0);
    assert_int_equal(epoch, 2);
    assert_int_equal(unclean, 0);
    mps_close(&fx->s);
    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    assert_int_equal(mps_epoch_begin(fx->s, &epoch, &unclean, NULL), 0);
    assert_int_equal(epoch, 3);
    assert_int_equal(unclean, 1);
    int64_t after = -1;
    assert_int_equal(mps_epoch_resume(fx->s, 1, 6, &after, NULL), 0);
    assert_int_equal(after, 3);
    assert_int_equal(mps_epoch_resume(fx->s, 2, 6, &after, NULL), 0);
    assert_int_equal(after, 6);
}

static void prune_step(mps_store *s, int64_t before_ms, const char *const *endpoints,
                       size_t chunk, int64_t want_upto, int want_more, int64_t want_removed)
{
    int64_t upto = -1, removed = -1, horizon = -1;
    int more = -1;
    assert_int_equal(mps_outbox_prune_plan(s, before_ms, endpoints, chunk, &upto, &more, NULL),
                     0);
    assert_int_equal(upto, want_upto);
    assert_int_equal(more, want_more);
    assert_int_equal(mps_outbox_prune_apply(s, upto, endpoints, &removed, NULL), 0);
    assert_int_equal(removed, want_removed);
    assert_int_equal(mps_outbox_horizon(s, &horizon, NULL), 0);
    assert_int_equal(horizon, want_upto);
}

/* Retention prunes old events oldest first, in chunks, never past a
 * configured endpoint's cursor, never its dead letters, never the newest. */
static void test_outbox_retention(void **state)
{
    fixture *fx = *state;
    const int64_t day = 24LL * 3600 * 1000;
    mpu_clock_set_offset_ms(-40 * day);
    assert_int_equal(append_n(fx->s, "old", 10), 10);
    mpu_clock_set_offset_ms(0);
    assert_int_equal(append_n(fx->s, "new", 2), 12);
    int64_t cutoff = mpu_now_ms() - 30 * day;

    assert_int_equal(mps_webhook_cursor_set(fx->s, "hook", 5, NULL), 0);
    assert_int_equal(mps_webhook_cursor_set(fx->s, "removed", 0, NULL), 0);
    assert_int_equal(mps_webhook_dead_letter(fx->s, "hook", 3, 10, "HTTP 500", -1, NULL), 0);
    const char *const hooks[] = {"hook", NULL};

    prune_step(fx->s, cutoff, hooks, 2, 2, 1, 2);  /* 1, 2 */
    prune_step(fx->s, cutoff, hooks, 2, 4, 1, 1);  /* 4; 3 is a dead letter */
    prune_step(fx->s, cutoff, hooks, 2, 5, 0, 1);  /* 5: the endpoint's cursor */
    prune_step(fx->s, cutoff, hooks, 2, 5, 0, 0);  /* nothing past the cursor */

    /* The endpoint caught up: the rest of the old events go, the young
     * ones stay. An unlisted endpoint's cursor holds nothing back. */
    assert_int_equal(mps_webhook_cursor_set(fx->s, "hook", 12, NULL), 0);
    prune_step(fx->s, cutoff, hooks, 100, 10, 0, 5);
    mps_event *list = NULL;
    size_t n = 0;
    assert_int_equal(mps_events_after(fx->s, 0, 100, NULL, NULL, &list, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].seq, 3);
    assert_int_equal(list[1].seq, 11);
    assert_int_equal(list[2].seq, 12);
    mps_events_free(&list, n);

    mps_stats st;
    assert_int_equal(mps_stats_get(fx->s, &st, NULL), 0);
    assert_int_equal(st.events, 3);
    assert_true(st.events_oldest_ms < cutoff);

    /* Everything old: the newest event still stays (its seq is the
     * outbox's position across restarts). */
    prune_step(fx->s, mpu_now_ms() + day, NULL, 100, 11, 0, 1);
    assert_int_equal(mps_events_last_seq(fx->s), 12);
    /* Zero chunk: nothing. */
    prune_step(fx->s, mpu_now_ms() + day, NULL, 0, 11, 0, 0);
}

static void test_epoch_migration(void **state)
{
    SQLITE_ONLY();
    fixture *fx = *state;
    /* A store of schema 5 with events: upgraded to epoch 1, clean. */
    mps_close(&fx->s);
    exec_raw(fx->path, schema6_sql);
    exec_raw(fx->path, "DROP TABLE store_meta; DROP TABLE epochs; PRAGMA user_version=5;");
    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    int64_t epoch = 0, horizon = -1;
    int unclean = -1;
    assert_int_equal(mps_epoch_begin(fx->s, &epoch, &unclean, NULL), 0);
    assert_int_equal(epoch, 1);
    assert_int_equal(unclean, 0);
    assert_int_equal(mps_outbox_horizon(fx->s, &horizon, NULL), 0);
    assert_int_equal(horizon, 0);
}

/* ---- memberships (labels, moves) ---- */

static void commit_in(mps_store *s, const char *folder, const mp_change *c,
                      const mps_membership *mem)
{
    mps_batch *b = mps_batch_new("alice", folder);
    mps_batch_add_in(b, c, mem);
    mps_commit_result res;
    char *err = NULL;
    int rc = mps_batch_commit(s, b, NULL, NULL, -1, 0, &res, &err);
    if (rc != 0)
        fprintf(stderr, "commit: %s\n", err);
    assert_int_equal(rc, 0);
    mps_batch_free(&b);
}

/* The one event after `after`, of `type`, for provider id `pid`. */
static json_t *only_event(mps_store *s, int64_t after, const char *type, const char *pid,
                          const char *folder)
{
    mps_event *ev = NULL;
    size_t n = events(s, after, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, type);
    char *id = public_id(pid);
    assert_string_equal(ev[0].message, id);
    free(id);
    assert_string_equal(ev[0].folder, folder);
    json_t *data = event_data(&ev[0]);
    mps_events_free(&ev, n);
    return data;
}

/* A JSON array of strings equals the NULL-terminated list. */
static void assert_names(json_t *arr, const char *const *want)
{
    assert_true(json_is_array(arr));
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    assert_int_equal(json_array_size(arr), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(arr, i)), want[i]);
}

static void assert_folders(mps_store *s, const char *pid, const char *const *want)
{
    char *id = public_id(pid);
    mps_message m;
    assert_int_equal(mps_message_get(s, id, &m, NULL), 0);
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    assert_int_equal(m.n_folders, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(m.folders[i], want[i]);
    if (n > 0)
        assert_string_equal(m.folder, want[0]);
    mps_message_clear(&m);
    free(id);
}

static size_t listed(mps_store *s, const char *folder, const char *pid)
{
    mps_message *list;
    size_t n, hits = 0;
    assert_int_equal(mps_messages_list(s, "alice", folder, NULL, 100, &list, &n, NULL), 0);
    for (size_t i = 0; i < n; i++)
        hits += strcmp(list[i].provider_id, pid) == 0;
    mps_messages_free(&list, n);
    return hits;
}

/* Labels added and removed, a move under an unchanged id, and the last
 * label removed: one event each, never a delete plus a new, counts equal
 * to the rows throughout, one public id and one body all along. */
static void test_labels_and_moves(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    static const uint8_t raw[] = "Subject: x\r\n\r\nbody";
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(mps_folder_ensure(s, "alice", i ? "Archive" : "Work", 0, NULL), 0);
    assert_int_equal(mps_folder_ensure(s, "alice", "Sent", MP_ROLE_SENT, NULL), 0);

    /* New mail with two labels: one message.new, in both folders. */
    static const char *const in_two[] = {"Work", "INBOX"};
    mps_membership two = {.folders = in_two, .n_folders = 2};
    mp_change c = change(MP_CHANGE_NEW, "g1", "hello", "\\Seen", 100);
    c.raw = raw;
    c.raw_len = sizeof raw - 1;
    int64_t seq = mps_events_last_seq(s);
    commit_in(s, "INBOX", &c, &two);
    json_t *d = only_event(s, seq, "message.new", "g1", "INBOX");
    assert_names(json_object_get(d, "folders"), (const char *const[]){"INBOX", "Work", NULL});
    json_decref(d);
    assert_folders(s, "g1", (const char *const[]){"INBOX", "Work", NULL});
    assert_int_equal(listed(s, "INBOX", "g1"), 1);
    assert_int_equal(listed(s, "Work", "g1"), 1);
    assert_int_equal(listed(s, NULL, "g1"), 1);
    check_counts(fx, 1, 1);
    /* The same again: nothing. */
    seq = mps_events_last_seq(s);
    commit_in(s, "INBOX", &c, &two);
    assert_int_equal(mps_events_last_seq(s), seq);

    /* A label added. */
    static const char *const archive[] = {"Archive"};
    mp_change u = {.kind = MP_CHANGE_UPDATED, .id = "g1", .size = -1};
    mps_membership add = {.added = archive, .n_added = 1};
    commit_in(s, "INBOX", &u, &add);
    d = only_event(s, seq, "message.updated", "g1", "INBOX");
    assert_names(json_object_get(d, "folders_added"), (const char *const[]){"Archive", NULL});
    assert_names(json_object_get(d, "folders_removed"), (const char *const[]){NULL});
    assert_names(json_object_get(d, "folders"),
                 (const char *const[]){"INBOX", "Archive", "Work", NULL});
    assert_names(json_object_get(d, "flags"), (const char *const[]){"\\Seen", NULL});
    json_decref(d);
    check_counts(fx, 1, 1);

    /* A label removed: the primary folder moves on (first by name). */
    static const char *const inbox[] = {"INBOX"};
    mps_membership rm = {.removed = inbox, .n_removed = 1};
    seq = mps_events_last_seq(s);
    commit_in(s, "INBOX", &u, &rm);
    d = only_event(s, seq, "message.updated", "g1", "Archive");
    assert_names(json_object_get(d, "folders_added"), (const char *const[]){NULL});
    assert_names(json_object_get(d, "folders_removed"), (const char *const[]){"INBOX", NULL});
    assert_names(json_object_get(d, "folders"), (const char *const[]){"Archive", "Work", NULL});
    json_decref(d);
    assert_int_equal(listed(s, "INBOX", "g1"), 0);
    check_counts(fx, 0, 0);
    seq = mps_events_last_seq(s);
    commit_in(s, "INBOX", &u, &rm); /* replayed: nothing */
    assert_int_equal(mps_events_last_seq(s), seq);

    /* A move under the same provider id: one message.updated; the public
     * id and the cached body stay. */
    mps_batch *b = mps_batch_new("alice", "Work");
    mps_batch_move(b, "g1", "Work", "Sent");
    assert_int_equal(mps_batch_commit(s, b, NULL, NULL, -1, 0, NULL, NULL), 0);
    mps_batch_free(&b);
    d = only_event(s, seq, "message.updated", "g1", "Archive");
    assert_names(json_object_get(d, "folders_added"), (const char *const[]){"Sent", NULL});
    assert_names(json_object_get(d, "folders_removed"), (const char *const[]){"Work", NULL});
    json_decref(d);
    assert_folders(s, "g1", (const char *const[]){"Archive", "Sent", NULL});
    char *id1 = public_id("g1");
    uint8_t *data;
    size_t len;
    assert_int_equal(mps_body_get(s, id1, &data, &len, NULL), 0);
    assert_int_equal(len, sizeof raw - 1);
    free(data);
    check_counts(fx, 0, 0);
    mps_folder f;
    assert_int_equal(mps_folder_get(s, "alice", "Sent", &f, NULL), 0);
    assert_int_equal(f.messages, 1);
    assert_int_equal(f.bodies, 1);
    mps_folder_clear(&f);

    /* Mail arriving in the INBOX of a message stored under Sent (a copy
     * sent to oneself) is message.new; an UPDATED into the INBOX is not. */
    static const char *const sent[] = {"Sent"};
    mps_membership in_sent = {.folders = sent, .n_folders = 1};
    mp_change g2 = change(MP_CHANGE_SYNCED, "g2", "to me", "", 200);
    mp_change g3 = change(MP_CHANGE_SYNCED, "g3", "to me too", "", 300);
    commit_in(s, "Sent", &g2, &in_sent);
    commit_in(s, "Sent", &g3, &in_sent);
    seq = mps_events_last_seq(s);
    mps_membership none = {0};
    mp_change arrive = change(MP_CHANGE_NEW, "g2", "to me", "", 200);
    commit_in(s, "INBOX", &arrive, &none); /* NEW adds the batch's folder */
    d = only_event(s, seq, "message.new", "g2", "Sent");
    assert_names(json_object_get(d, "folders_added"), (const char *const[]){"INBOX", NULL});
    assert_names(json_object_get(d, "folders"), (const char *const[]){"Sent", "INBOX", NULL});
    json_decref(d);
    seq = mps_events_last_seq(s);
    mp_change g3u = {.kind = MP_CHANGE_UPDATED, .id = "g3", .size = -1};
    mps_membership to_inbox = {.added = inbox, .n_added = 1};
    commit_in(s, "Sent", &g3u, &to_inbox);
    d = only_event(s, seq, "message.updated", "g3", "Sent");
    json_decref(d);
    check_counts(fx, 2, 0);

    /* The last label removed: message.deleted, out of every listing, the
     * body dropped. */
    static const char *const last[] = {"Archive", "Sent"};
    mps_membership rm_all = {.removed = last, .n_removed = 2};
    seq = mps_events_last_seq(s);
    commit_in(s, "Sent", &u, &rm_all);
    d = only_event(s, seq, "message.deleted", "g1", "Archive");
    assert_names(json_object_get(d, "folders_removed"),
                 (const char *const[]){"Archive", "Sent", NULL});
    json_decref(d);
    assert_int_equal(listed(s, NULL, "g1"), 0);
    assert_int_equal(listed(s, "Sent", "g1"), 0);
    assert_int_equal(mps_body_get(s, id1, &data, &len, NULL), 1);
    check_counts(fx, 2, 0);
    /* ... and an empty set is the same as leaving the last folder. */
    mps_membership nowhere = {.folders = sent, .n_folders = 0};
    seq = mps_events_last_seq(s);
    commit_in(s, "Sent", &g3u, &nowhere);
    json_decref(only_event(s, seq, "message.deleted", "g3", "Sent"));
    check_counts(fx, 1, 0);
    free(id1);
}

/* IMAP (ABI 1.0, ids per folder and UID): a copy in a second folder is a
 * second message; events keep their fields; a NEW of a stored id in
 * another folder's batch moves it, as it always did, now saying so. */
static void test_one_folder_changes(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    assert_int_equal(mps_folder_ensure(s, "alice", "Archive", 0, NULL), 0);
    mp_change a = change(MP_CHANGE_NEW, "INBOX:1:7", "copy", "", 100);
    a.uid = 7;
    mp_change b = change(MP_CHANGE_NEW, "Archive:1:3", "copy", "", 100);
    b.uid = 3;
    int64_t seq = mps_events_last_seq(s);
    commit_one(s, "INBOX", &a, NULL);
    commit_one(s, "Archive", &b, NULL);
    mps_event *ev = NULL;
    size_t n = events(s, seq, &ev);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(ev[i].type, "message.new");
        json_t *d = event_data(&ev[i]);
        assert_int_equal(json_object_size(d), 2); /* uid and subject, as before */
        assert_null(json_object_get(d, "folders"));
        json_decref(d);
    }
    mps_events_free(&ev, n);
    assert_folders(s, "INBOX:1:7", (const char *const[]){"INBOX", NULL});
    assert_folders(s, "Archive:1:3", (const char *const[]){"Archive", NULL});

    /* Walking a folder gives each message with its UID there. */
    mp_change up = {.kind = MP_CHANGE_UPDATED, .id = "INBOX:1:7", .uid = 9, .size = -1};
    seq = mps_events_last_seq(s);
    commit_one(s, "INBOX", &up, NULL); /* a UID change is silent */
    assert_int_equal(mps_events_last_seq(s), seq);
    char *id = public_id("INBOX:1:7");
    mps_message m;
    assert_int_equal(mps_message_get(s, id, &m, NULL), 0);
    assert_int_equal(m.uid, 9);
    mps_message_clear(&m);
    free(id);

    /* A provider id seen in another folder's batch (1.0): a move. */
    mp_change moved = change(MP_CHANGE_SYNCED, "INBOX:1:7", "copy", "", 100);
    commit_one(s, "Archive", &moved, NULL);
    json_t *d = only_event(s, seq, "message.updated", "INBOX:1:7", "Archive");
    assert_names(json_object_get(d, "folders_added"), (const char *const[]){"Archive", NULL});
    assert_names(json_object_get(d, "folders_removed"), (const char *const[]){"INBOX", NULL});
    json_decref(d);
    check_counts(fx, 0, 0);
    mps_folder f;
    assert_int_equal(mps_folder_get(s, "alice", "Archive", &f, NULL), 0);
    assert_int_equal(f.messages, 2);
    mps_folder_clear(&f);
}

/* A store of schema 6 (one folder per message) with messages, bodies,
 * a tombstone, counts and events becomes memberships, keeps its events
 * and ids, and takes labels afterwards. */
static void test_membership_migration(void **state)
{
    SQLITE_ONLY();
    fixture *fx = *state;
    static const uint8_t raw[] = "Subject: x\r\n\r\nbody";
    assert_int_equal(mps_folder_ensure(fx->s, "alice", "Archive", 0, NULL), 0);
    mp_change c[4] = {change(MP_CHANGE_SYNCED, "m0", "s", "", 1),
                      change(MP_CHANGE_SYNCED, "m1", "s", "", 2),
                      change(MP_CHANGE_NEW, "m2", "s", "", 3),
                      change(MP_CHANGE_DELETED, "m1", NULL, NULL, 0)};
    c[0].raw = c[2].raw = raw;
    c[0].raw_len = c[2].raw_len = sizeof raw - 1;
    commit_changes(fx->s, "INBOX", c, 4, 0);
    mp_change a = change(MP_CHANGE_SYNCED, "a0", "s", "", 4);
    a.raw = raw;
    a.raw_len = sizeof raw - 1;
    a.uid = 12;
    commit_changes(fx->s, "Archive", &a, 1, 0);
    int64_t last = mps_events_last_seq(fx->s);
    mps_close(&fx->s);
    exec_raw(fx->path, schema6_sql);

    assert_int_equal(mps_open(fx->path, &fx->s, NULL), 0);
    assert_int_equal(mps_schema_version(fx->s), 8);
    assert_int_equal(mps_events_last_seq(fx->s), last);
    check_counts(fx, 2, 2);
    mps_folder f;
    assert_int_equal(mps_folder_get(fx->s, "alice", "Archive", &f, NULL), 0);
    assert_int_equal(f.messages, 1);
    assert_int_equal(f.bodies, 1);
    mps_folder_clear(&f);
    assert_folders(fx->s, "m0", (const char *const[]){"INBOX", NULL});
    assert_folders(fx->s, "a0", (const char *const[]){"Archive", NULL});
    assert_folders(fx->s, "m1", (const char *const[]){NULL});
    assert_int_equal(listed(fx->s, "INBOX", "m1"), 0);
    assert_int_equal(listed(fx->s, "INBOX", "m2"), 1);
    assert_int_equal(listed(fx->s, "Archive", "a0"), 1);

    /* The UID moved to the membership: a walk of Archive sees it. */
    mps_message *list;
    size_t n;
    assert_int_equal(mps_messages_list(fx->s, "alice", "Archive", NULL, 10, &list, &n, NULL),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].uid, 12);
    mps_messages_free(&list, n);

    /* A label on a migrated message. */
    static const char *const archive[] = {"Archive"};
    mps_membership add = {.added = archive, .n_added = 1};
    mp_change u = {.kind = MP_CHANGE_UPDATED, .id = "m0", .size = -1};
    commit_in(fx->s, "INBOX", &u, &add);
    json_decref(only_event(fx->s, last, "message.updated", "m0", "INBOX"));
    check_counts(fx, 2, 2);
    assert_int_equal(mps_folder_get(fx->s, "alice", "Archive", &f, NULL), 0);
    assert_int_equal(f.messages, 2);
    assert_int_equal(f.bodies, 2);
    mps_folder_clear(&f);
}

static int stored_uid(const mps_message *m, void *arg)
{
    *(uint32_t *)arg = m->uid;
    return 0;
}

/* Hints coalesce per folder (newest kept), a run for some folders takes
 * only theirs (plus account-wide ones when asked), and a run takes at
 * most max_rows, saying that more wait. */
static void test_push_hints_take(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    for (int i = 0; i < 50; i++) {
        char hint[16];
        snprintf(hint, sizeof hint, "h%d", i);
        assert_int_equal(mps_push_hint_add(s, "alice", "INBOX", hint, 1000 + i, NULL), 0);
    }
    assert_int_equal(mps_push_hint_add(s, "alice", "Sent", "s1", 2000, NULL), 0);
    assert_int_equal(mps_push_hint_add(s, "alice", NULL, "acct-7", 2001, NULL), 0);
    assert_int_equal(mps_push_hint_add(s, "bob", "INBOX", "b1", 2002, NULL), 0);

    mps_push_take take;
    assert_int_equal(mps_push_hints_read(s, "alice", NULL, 0, 0, 100, &take, NULL), 0);
    assert_int_equal(take.n_rows, 3); /* one row per folder survives */
    assert_int_equal(take.n, 3);
    assert_string_equal(take.hints[0].folder, "INBOX");
    assert_string_equal(take.hints[0].cursor_hint, "h49");
    assert_int_equal(take.hints[0].received_ms, 1049);
    assert_false(take.more);
    mps_push_take_clear(&take);

    static const char *const sent[] = {"Sent"};
    assert_int_equal(mps_push_hints_read(s, "alice", sent, 1, 0, 100, &take, NULL), 0);
    assert_int_equal(take.n, 1);
    assert_string_equal(take.hints[0].cursor_hint, "s1");
    mps_push_take_clear(&take);
    assert_int_equal(mps_push_hints_read(s, "alice", sent, 1, 1, 100, &take, NULL), 0);
    assert_int_equal(take.n, 2);
    assert_null(take.hints[1].folder);
    assert_string_equal(take.hints[1].cursor_hint, "acct-7");
    /* Deleting what the Sent run took leaves INBOX's hint and bob's. */
    assert_int_equal(mps_push_hints_delete(s, &take, NULL), 0);
    mps_push_take_clear(&take);
    assert_int_equal(mps_push_hints_read(s, "alice", NULL, 0, 0, 100, &take, NULL), 0);
    assert_int_equal(take.n, 1);
    assert_string_equal(take.hints[0].folder, "INBOX");
    mps_push_take_clear(&take);

    /* The cap. */
    assert_int_equal(mps_push_hint_add(s, "alice", "Work", "w1", 3000, NULL), 0);
    assert_int_equal(mps_push_hints_read(s, "alice", NULL, 0, 0, 1, &take, NULL), 0);
    assert_int_equal(take.n_rows, 1);
    assert_true(take.more);
    assert_string_equal(take.hints[0].folder, "INBOX"); /* oldest first */
    mps_push_take_clear(&take);
    assert_int_equal(mps_push_hints_read(s, "bob", NULL, 0, 0, 100, &take, NULL), 0);
    assert_int_equal(take.n, 1);
    mps_push_take_clear(&take);
}

/* A batch of no folder (account_delta): changes name their folders,
 * DELETED leaves all of them, folder counts follow, and a folder cursor
 * or a NEW without folders goes nowhere. */
static void test_folderless_batch(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    assert_int_equal(mps_folder_ensure(s, "alice", "INBOX", MP_ROLE_INBOX, NULL), 0);
    assert_int_equal(mps_folder_ensure(s, "alice", "Work", 0, NULL), 0);
    static const char *const both[] = {"INBOX", "Work"};
    mps_membership in_both = {.folders = both, .n_folders = 2};
    mp_change c = change(MP_CHANGE_NEW, "a1", "hi", "", 100);
    int64_t seq = mps_events_last_seq(s);
    commit_in(s, NULL, &c, &in_both);
    json_t *d = only_event(s, seq, "message.new", "a1", "INBOX");
    assert_names(json_object_get(d, "folders"), (const char *const[]){"INBOX", "Work", NULL});
    json_decref(d);
    check_counts(fx, 1, 0);

    /* Without folders a NEW of an unknown id has nowhere to go. */
    mp_change lost = change(MP_CHANGE_NEW, "a2", "lost", "", 100);
    seq = mps_events_last_seq(s);
    commit_in(s, NULL, &lost, NULL);
    assert_int_equal(mps_events_last_seq(s), seq);

    static const char *const work[] = {"Work"};
    mp_change u = {.kind = MP_CHANGE_UPDATED, .id = "a1", .size = -1};
    mps_membership rm = {.removed = work, .n_removed = 1};
    commit_in(s, NULL, &u, &rm);
    d = only_event(s, seq, "message.updated", "a1", "INBOX");
    assert_names(json_object_get(d, "folders_removed"), (const char *const[]){"Work", NULL});
    json_decref(d);

    mp_change del = {.kind = MP_CHANGE_DELETED, .id = "a1", .size = -1};
    seq = mps_events_last_seq(s);
    commit_in(s, NULL, &del, NULL);
    mps_event *ev = NULL;
    size_t n = events(s, seq, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "message.deleted");
    mps_events_free(&ev, n);
    check_counts(fx, 0, 0);

    mps_batch *b = mps_batch_new("alice", NULL);
    char *err = NULL;
    assert_int_equal(mps_batch_commit(s, b, "5", NULL, -1, 0, NULL, &err), -1);
    assert_non_null(err);
    free(err);
    mps_batch_account_cursor(b, "acct-9");
    assert_int_equal(mps_batch_commit(s, b, NULL, NULL, -1, 0, NULL, NULL), 0);
    mps_batch_free(&b);
    char *cursor = NULL;
    assert_int_equal(mps_account_cursor_get(s, "alice", &cursor, NULL), 0);
    assert_string_equal(cursor, "acct-9");
    free(cursor);
}

/* A folder deleted at the provider: its messages leave it through a
 * folderless batch (what sync_job.c does), then mps_folder_delete drops the
 * row, any membership left in it and its pending push hints. */
static void test_folder_delete(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    assert_int_equal(mps_folder_ensure(s, "alice", "Gone", 0, NULL), 0);
    static const char *const both[] = {"INBOX", "Gone"};
    static const char *const gone[] = {"Gone"};
    mps_membership in_both = {.folders = both, .n_folders = 2};
    mps_membership only_gone = {.folders = gone, .n_folders = 1};
    mp_change keep = change(MP_CHANGE_NEW, "k1", "kept", "", 100);
    mp_change lose = change(MP_CHANGE_NEW, "l1", "lost", "", 100);
    commit_in(s, NULL, &keep, &in_both);
    commit_in(s, NULL, &lose, &only_gone);
    assert_int_equal(mps_push_hint_add(s, "alice", "Gone", "h1", 5000, NULL), 0);

    int64_t seq = mps_events_last_seq(s);
    mps_batch *b = mps_batch_new("alice", NULL);
    mps_membership rm = {.removed = gone, .n_removed = 1};
    mp_change u1 = {.kind = MP_CHANGE_UPDATED, .id = "k1", .size = -1};
    mp_change u2 = {.kind = MP_CHANGE_UPDATED, .id = "l1", .size = -1};
    mps_batch_add_in(b, &u1, &rm);
    mps_batch_add_in(b, &u2, &rm);
    assert_int_equal(mps_batch_commit(s, b, NULL, NULL, -1, 0, NULL, NULL), 0);
    mps_batch_free(&b);
    mps_event *ev = NULL;
    size_t n = events(s, seq, &ev);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0].type, "message.updated");
    json_t *d = event_data(&ev[0]);
    assert_names(json_object_get(d, "folders_removed"), (const char *const[]){"Gone", NULL});
    assert_names(json_object_get(d, "folders"), (const char *const[]){"INBOX", NULL});
    json_decref(d);
    assert_string_equal(ev[1].type, "message.deleted");
    assert_string_equal(ev[1].folder, "Gone");
    mps_events_free(&ev, n);

    assert_int_equal(mps_folder_delete(s, "alice", "Gone", NULL), 0);
    mps_folder f;
    assert_int_equal(mps_folder_get(s, "alice", "Gone", &f, NULL), 1);
    assert_int_equal(mps_folder_get(s, "alice", "INBOX", &f, NULL), 0);
    assert_int_equal(f.messages, 1);
    mps_folder_clear(&f);
    /* The folder's hint went with it; an unknown folder is 1. */
    mps_push_take take;
    assert_int_equal(mps_push_hints_read(s, "alice", NULL, 0, 1, 100, &take, NULL), 0);
    assert_int_equal(take.n_rows, 0);
    mps_push_take_clear(&take);
    assert_int_equal(mps_folder_delete(s, "alice", "Gone", NULL), 1);
    assert_int_equal(mps_events_last_seq(s), seq + 2);
}

/* Account cursor and driver state: alone, and with a batch in its one
 * transaction (a failed commit writes neither; a write-behind split
 * leaves them for the commit that ends the step). */
static void test_account_cursor_and_state(void **state)
{
    fixture *fx = *state;
    mps_store *s = fx->s;
    char *v = NULL, *err = NULL;
    assert_int_equal(mps_account_cursor_get(s, "alice", &v, NULL), 1);
    assert_null(v);
    assert_int_equal(mps_account_cursor_set(s, "alice", "h100", NULL), 0);
    assert_int_equal(mps_account_cursor_get(s, "alice", &v, NULL), 0);
    assert_string_equal(v, "h100");
    free(v);
    assert_int_equal(mps_state_get(s, "alice", "watch", &v, NULL), 1);
    assert_int_equal(mps_state_put(s, "alice", "watch", "w1", NULL), 0);
    assert_int_equal(mps_state_put(s, "alice", "watch", "w2", NULL), 0);
    assert_int_equal(mps_state_get(s, "alice", "watch", &v, NULL), 0);
    assert_string_equal(v, "w2");
    free(v);
    assert_int_equal(mps_state_get(s, "bob", "watch", &v, NULL), 1);
    assert_int_equal(mps_state_put(s, "alice", "", "x", &err), -1);
    free(err);
    err = NULL;

    /* With a batch: the change, the cursor and the records together. */
    mps_batch *b = mps_batch_new("alice", "INBOX");
    mp_change c = change(MP_CHANGE_NEW, "k1", "s", "", 1);
    mps_batch_add(b, &c);
    mps_batch_account_cursor(b, "h200");
    mps_batch_state(b, "watch", "w3");
    mps_batch_state(b, "token", "t1");
    mps_batch_state(b, "token", NULL); /* replaced: deleted */
    /* Split off for a write-behind commit: the change goes, the rest stays. */
    mps_batch *part = mps_batch_split(b);
    assert_int_equal(mps_batch_pending(part), 1);
    assert_int_equal(mps_batch_pending(b), 0);
    assert_int_equal(mps_batch_commit(s, part, NULL, NULL, -1, 0, NULL, NULL), 0);
    mps_batch_free(&part);
    assert_int_equal(mps_account_cursor_get(s, "alice", &v, NULL), 0);
    assert_string_equal(v, "h100");
    free(v);
    uint32_t uid = 1;
    assert_int_equal(mps_messages_each(s, "alice", "INBOX", stored_uid, &uid, NULL), 0);
    assert_int_equal(uid, 0);

    /* A record out of bounds fails the whole commit. */
    char *big = mpu_calloc(1, MPS_STATE_VALUE_MAX + 2);
    memset(big, 'x', MPS_STATE_VALUE_MAX + 1);
    mp_change c2 = change(MP_CHANGE_NEW, "k2", "s", "", 2);
    mps_batch_add(b, &c2);
    mps_batch_state(b, "big", big);
    assert_int_equal(mps_batch_commit(s, b, "cur", NULL, -1, 0, NULL, &err), -1);
    assert_non_null(strstr(err, "big"));
    free(err);
    assert_int_equal(listed(s, "INBOX", "k2"), 0);
    assert_int_equal(mps_account_cursor_get(s, "alice", &v, NULL), 0);
    assert_string_equal(v, "h100");
    free(v);
    mps_batch_state(b, "big", NULL);
    assert_int_equal(mps_batch_commit(s, b, "cur", NULL, -1, 0, NULL, NULL), 0);
    mps_batch_free(&b);
    free(big);
    assert_int_equal(listed(s, "INBOX", "k2"), 1);
    assert_int_equal(mps_account_cursor_get(s, "alice", &v, NULL), 0);
    assert_string_equal(v, "h200");
    free(v);
    assert_int_equal(mps_state_get(s, "alice", "watch", &v, NULL), 0);
    assert_string_equal(v, "w3");
    free(v);
    assert_int_equal(mps_state_get(s, "alice", "token", &v, NULL), 1);
    assert_int_equal(mps_state_get(s, "alice", "big", &v, NULL), 1);

    /* A commit without them leaves them alone; NULL clears the cursor. */
    commit_one(s, "INBOX", NULL, NULL);
    assert_int_equal(mps_account_cursor_get(s, "alice", &v, NULL), 0);
    free(v);
    assert_int_equal(mps_account_cursor_set(s, "alice", NULL, NULL), 0);
    assert_int_equal(mps_account_cursor_get(s, "alice", &v, NULL), 1);
    assert_int_equal(mps_state_put(s, "alice", "watch", NULL, NULL), 0);
    assert_int_equal(mps_state_get(s, "alice", "watch", &v, NULL), 1);
}

int main(void)
{
    pg_url = getenv("MP_TEST_PG_URL");
    if (pg_url != NULL && pg_url[0] == '\0')
        pg_url = NULL;
    if (pg_url != NULL)
        printf("test_store: PostgreSQL backend\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_id),
        cmocka_unit_test(test_open_failure),
        cmocka_unit_test_setup_teardown(test_migrations_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_only_at_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_paging_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_utf8_in_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epochs_power_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_and_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_folder_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_membership_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription_secret_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_cursor_and_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_last_checkpoint, setup, teardown),
        cmocka_unit_test(test_pool_open_fails),
        cmocka_unit_test_setup_teardown(test_push_hints_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folderless_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

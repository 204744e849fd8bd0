/* Unit tests of core/host: the services table drivers get, with a real
 * store file, a real event loop and a local HTTP server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <sqlite3.h>

#include "http_script_server.h"
#include "host/host_private.h"
#include "host/host_push_status.h"
#include "net/net.h"
#include "store/pool.h"
#include "util/util.h"


/* The host's owner, as the tests play it: per-thread store connections
 * on one database file, a loop, and what the host reported. */
typedef struct test_owner {
    char *db_path;
    mps_pool *pool;            /* per-thread connections                    */
    mps_store *store;          /* the test thread's connection              */
    struct event_base *base;
    char push_text[128];
    int push_live;
    int syncs;
    int resets;
} test_owner;

typedef struct fixture {
    char dir[64];
    test_owner d;
    mphost_env env;
    mp_instance inst;
    struct mp_account acct;
    const mp_host *host;
} fixture;

static fixture *the_fixture;
static mps_store *owner_store(void *owner)
{
    return mps_pool_thread(((test_owner *)owner)->pool);
}

static void owner_thread_exit(void *owner)
{
    mps_pool_thread_done(((test_owner *)owner)->pool);
}

static void owner_committed(void *owner, uint64_t applied, int64_t last_seq)
{
    (void)owner;
    (void)applied;
    (void)last_seq;
}

static void owner_new_mail(void *owner, const char *account, const char *id)
{
    (void)owner;
    (void)account;
    (void)id;
}

static void owner_sync(void *owner, mp_account *acct, const char *folder, const char *reason)
{
    (void)acct;
    (void)folder;
    (void)reason;
    ((test_owner *)owner)->syncs++;
}

static void owner_push_noted(void *owner, mp_account *acct)
{
    (void)owner;
    (void)acct;
}

static void owner_push_state(void *owner, mp_account *acct, const char *text, int live)
{
    test_owner *o = owner;
    (void)acct;
    snprintf(o->push_text, sizeof o->push_text, "%s", text);
    o->push_live = live;
}

static void owner_folder_reset(void *owner)
{
    ((test_owner *)owner)->resets++;
}

static int push_counts[3]; /* by mphost_push_outcome */

static void owner_push_counted(void *owner, mphost_push_outcome outcome)
{
    (void)owner;
    assert_true(outcome >= MPHOST_PUSH_REJECTED && outcome <= MPHOST_PUSH_IGNORED);
    push_counts[outcome]++;
}

static int setup(void **state)
{
    fixture *f = mpu_calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/mp-host-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->d.db_path = mpu_asprintf("%s/db", f->dir);
    char *error = NULL;
    assert_int_equal(mps_pool_open(f->d.db_path, NULL, &f->d.pool, &error), 0);
    f->d.store = mps_pool_thread(f->d.pool);
    evthread_use_pthreads();
    f->d.base = event_base_new();
    f->env = (mphost_env){
        .owner = &f->d,
        .base = f->d.base,
        .store = owner_store,
        .thread_exit = owner_thread_exit,
        .committed = owner_committed,
        .new_mail = owner_new_mail,
        .sync = owner_sync,
        .push_noted = owner_push_noted,
        .push_state = owner_push_state,
        .folder_reset = owner_folder_reset,
        .push_counted = owner_push_counted,
    };
    f->inst.name = "inst";
    f->inst.env = &f->env;
    f->acct.id = "alice";
    f->acct.inst = &f->inst;
    assert_int_equal(mps_account_ensure(f->d.store, "alice", "inst", &error), 0);
    assert_int_equal(mps_folder_ensure(f->d.store, "alice", "INBOX", MP_ROLE_INBOX, &error), 0);
    mphost_set_global_base(f->d.base);
    mpn_global_init();
    f->host = mphost_table();
    the_fixture = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    mphost_release_loop_objs(&f->acct.loop_objs);
    mphost_release_global_objs();
    f->d.store = NULL;
    mps_pool_close(&f->d.pool);
    event_base_free(f->d.base);
    mpn_thread_cleanup();
    char *cmd = mpu_asprintf("rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(f->d.db_path);
    free(f);
    return 0;
}

static void test_table_head(void **state)
{
    fixture *f = *state;
    assert_int_equal(f->host->abi_major, MP_ABI_MAJOR);
    assert_int_equal(f->host->abi_minor, MP_ABI_MINOR);
    assert_int_equal(f->host->struct_size, sizeof(mp_host));
    /* Every 1.0 slot is filled: a NULL here would crash a driver. */
    const void *const *slot = (const void *const *)&f->host->log;
    const void *const *end = (const void *const *)((const char *)f->host + sizeof(mp_host));
    for (; slot < end; slot++)
        assert_non_null(*slot);
}

/* A webhook driver learns the <instance> of its /push/<instance> URL
 * (added in ABI 1.2). */
static void test_instance_name(void **state)
{
    fixture *f = *state;
    assert_true(MP_HOST_HAS(f->host, instance_name));
    assert_string_equal(f->host->instance_name(&f->inst), "inst");
}

static mpc_node *config_with_secret(const char *path)
{
    char *text = mpu_asprintf("password_file: %s\n", path);
    mpc_errors errs = {0};
    mpc_node *root = mpc_parse_yaml_string(text, strlen(text), "test.yaml", &errs);
    free(text);
    assert_non_null(root);
    mpc_errors_free(&errs);
    return root;
}

static void test_read_secret(void **state)
{
    fixture *f = *state;
    char *path = mpu_asprintf("%s/pw", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("hunter2\r\n", fp);
    fclose(fp);
    mpc_node *cfg = config_with_secret(path);
    char *secret = NULL;
    size_t len = 0;
    mp_error err = {0, ""};

    chmod(path, 0644);
    assert_int_equal(f->host->read_secret(cfg, "password_file", &secret, &len, &err), MP_FATAL);
    assert_null(secret);
    assert_non_null(strstr(err.text, "password_file"));
    assert_null(strstr(err.text, "hunter2"));

    chmod(path, 0600);
    memset(&err, 0, sizeof err);
    assert_int_equal(f->host->read_secret(cfg, "password_file", &secret, &len, &err), MP_OK);
    assert_string_equal(secret, "hunter2");
    assert_int_equal(len, 7);
    f->host->free_secret(&secret);
    assert_null(secret);

    assert_int_equal(f->host->read_secret(cfg, "absent_file", &secret, &len, &err), MP_FATAL);
    mpc_free(&cfg);
    free(path);
}

/* What a job would take from its settings for a batch. */
typedef struct tknobs {
    uint32_t ingest_batch_size;
    int fetch_bodies;
} tknobs;

static tknobs knobs(uint32_t ingest)
{
    tknobs k = {ingest, 0};
    return k;
}

static mp_batch *batch_open(fixture *f, const tknobs *k, int history)
{
    mphost_batch_params p = {
        .folder = "INBOX",
        .history = history,
        .store = f->d.store,
        .fetch_bodies = k->fetch_bodies,
        .ingest_batch_size = k->ingest_batch_size,
    };
    return mphost_batch_begin(&f->acct, &p);
}

/* Drop what is still staged (a test's batch is not ended by a job). */
static void batch_close(mp_batch **b)
{
    mphost_writeback_end(*b);
    mps_batch_free(&(*b)->staged);
    free(*b);
    *b = NULL;
}

static size_t count_events(fixture *f, const char *type)
{
    const char *types[] = {type, NULL};
    mps_event *list = NULL;
    size_t n = 0;
    char *error = NULL;
    assert_int_equal(mps_events_after(f->d.store, 0, 100000, types, NULL, &list, &n, &error), 0);
    mps_events_free(&list, n);
    return n;
}

static void add(fixture *f, mp_batch *b, mp_change_kind kind, const char *id)
{
    mp_change c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.id = id;
    c.subject = "s";
    c.size = 10;
    mp_error err = {0, ""};
    assert_int_equal(f->host->batch_change(b, &c, &err), MP_OK);
}

/* History (bootstrap/backfill) never reaches consumers as new mail. */
static void test_history_is_never_new(void **state)
{
    fixture *f = *state;
    tknobs k = knobs(0);
    mp_batch *b = NULL;
    b = batch_open(f, &k, 1);
    add(f, b, MP_CHANGE_NEW, "h1");
    add(f, b, MP_CHANGE_SYNCED, "h2");
    mp_error err = {0, ""};
    assert_int_equal(f->host->batch_commit(b, "c1", NULL, 0, &err), MP_OK);
    assert_int_equal(b->stats.cursor_committed, 1);
    assert_int_equal(count_events(f, "message.new"), 0);
    assert_int_equal(count_events(f, "message.synced"), 2);
    batch_close(&b);

    b = batch_open(f, &k, 0);
    add(f, b, MP_CHANGE_NEW, "n1");
    assert_int_equal(f->host->batch_commit(b, "c2", NULL, 0, &err), MP_OK);
    assert_int_equal(count_events(f, "message.new"), 1);
    batch_close(&b);
}

/* ingest_batch_size bounds transactions: staged changes are committed in
 * steps without moving the cursor. */
static void test_ingest_batches_commit_without_cursor(void **state)
{
    fixture *f = *state;
    tknobs k = knobs(3);
    mp_batch *b = NULL;
    b = batch_open(f, &k, 0);
    char id[16];
    for (int i = 0; i < 7; i++) {
        snprintf(id, sizeof id, "i%d", i);
        add(f, b, MP_CHANGE_NEW, id);
    }
    /* Two steps of 3 are in the store once the write-behind commit in
     * flight is done; the 7th is staged; no cursor. */
    mp_error werr = {0, ""};
    assert_int_equal(mphost_writeback_wait(b, &werr), MP_OK);
    assert_int_equal(count_events(f, "message.new"), 6);
    assert_int_equal(mps_batch_pending(b->staged), 1);
    mps_folder folder;
    assert_int_equal(mps_folder_get(f->d.store, "alice", "INBOX", &folder, NULL), 0);
    assert_null(folder.cursor);
    mps_folder_clear(&folder);
    mp_error err = {0, ""};
    assert_int_equal(f->host->batch_commit(b, "c7", NULL, 0, &err), MP_OK);
    assert_int_equal(count_events(f, "message.new"), 7);
    assert_int_equal(b->stats.events, 7); /* the write-behind commits' events counted */
    assert_int_equal(mps_folder_get(f->d.store, "alice", "INBOX", &folder, NULL), 0);
    assert_string_equal(folder.cursor, "c7");
    mps_folder_clear(&folder);
    mphost_writeback_end(b);
    batch_close(&b);
}

/* The 1.1 staging helpers: memberships keep the history rule, and the
 * account cursor and driver state wait for the driver's own commit, not a
 * write-behind one. */
static void test_memberships_and_account_state(void **state)
{
    fixture *f = *state;
    tknobs k = knobs(2);
    mp_batch *b = NULL;
    b = batch_open(f, &k, 1);
    static const char *const labels[] = {"INBOX", "Work"};
    mps_membership mem = {.folders = labels, .n_folders = 2};
    mp_change c = {.kind = MP_CHANGE_NEW, .id = "L1", .subject = "s", .size = 10};
    mp_error err = {0, ""};
    mphost_batch_account_cursor(b, "h7");
    assert_int_equal(mphost_batch_state(b, "watch", "w1", &err), MP_OK);
    assert_int_equal(mphost_batch_state(b, "", "w1", &err), MP_FATAL);
    assert_int_equal(mphost_batch_change_in(b, &c, &mem, &err), MP_OK);
    add(f, b, MP_CHANGE_NEW, "L2"); /* the second change: a write-behind commit */
    assert_int_equal(mphost_writeback_wait(b, &err), MP_OK);
    assert_int_equal(count_events(f, "message.synced"), 2);
    assert_int_equal(count_events(f, "message.new"), 0);
    char *v = NULL;
    assert_int_equal(mps_account_cursor_get(f->d.store, "alice", &v, NULL), 1);
    assert_int_equal(mps_state_get(f->d.store, "alice", "watch", &v, NULL), 1);
    assert_int_equal(f->host->batch_commit(b, "c1", NULL, 0, &err), MP_OK);
    assert_int_equal(mps_account_cursor_get(f->d.store, "alice", &v, NULL), 0);
    assert_string_equal(v, "h7");
    free(v);
    assert_int_equal(mps_state_get(f->d.store, "alice", "watch", &v, NULL), 0);
    assert_string_equal(v, "w1");
    free(v);
    mps_folder folder;
    assert_int_equal(mps_folder_get(f->d.store, "alice", "Work", &folder, NULL), 1);
    assert_int_equal(mps_folder_ensure(f->d.store, "alice", "Work", 0, NULL), 0);
    assert_int_equal(mps_folder_get(f->d.store, "alice", "Work", &folder, NULL), 0);
    assert_int_equal(folder.messages, 1);
    mps_folder_clear(&folder);
    mphost_writeback_end(b);
    batch_close(&b);
}

/* An account_delta batch belongs to no folder: a change without folders
 * and a folder cursor are driver bugs (MP_FATAL with a reason); changes
 * with folders, DELETED and the account cursor work. */
static void test_account_delta_batch(void **state)
{
    fixture *f = *state;
    mphost_batch_params p = {.folder = NULL, .store = f->d.store};
    mp_batch *b = mphost_batch_begin(&f->acct, &p);
    mp_error err = {0, ""};
    mp_change c = {.kind = MP_CHANGE_NEW, .id = "A1", .subject = "s", .size = 10};
    assert_int_equal(f->host->batch_change(b, &c, &err), MP_FATAL);
    assert_non_null(strstr(err.text, "batch_change_folders"));
    static const char *const in[] = {"INBOX"};
    mp_folders folders = {.now_in = in, .n_now_in = 1};
    memset(&err, 0, sizeof err);
    assert_int_equal(f->host->batch_change_folders(b, &c, &folders, &err), MP_OK);
    assert_int_equal(f->host->batch_commit(b, "42", NULL, 0, &err), MP_FATAL);
    assert_non_null(strstr(err.text, "batch_account_cursor"));
    f->host->batch_account_cursor(b, "h9");
    memset(&err, 0, sizeof err);
    assert_int_equal(f->host->batch_commit(b, NULL, NULL, 0, &err), MP_OK);
    assert_int_equal(count_events(f, "message.new"), 1);
    mp_change del = {.kind = MP_CHANGE_DELETED, .id = "A1"};
    assert_int_equal(f->host->batch_change(b, &del, &err), MP_OK);
    assert_int_equal(f->host->batch_commit(b, NULL, NULL, 0, &err), MP_OK);
    assert_int_equal(count_events(f, "message.deleted"), 1);
    char *v = NULL;
    assert_int_equal(mps_account_cursor_get(f->d.store, "alice", &v, NULL), 0);
    assert_string_equal(v, "h9");
    free(v);
    mps_folder folder;
    assert_int_equal(mps_folder_get(f->d.store, "alice", "INBOX", &folder, NULL), 0);
    assert_int_equal(folder.messages, 0);
    assert_null(folder.cursor);
    mps_folder_clear(&folder);
    batch_close(&b);
}

/* sync_hint answers from the hints lent to this thread's run, for that
 * account only, newest per folder; nothing outside a run. */
static void test_sync_hint(void **state)
{
    fixture *f = *state;
    mp_account *acct = &f->acct;
    assert_null(f->host->sync_hint(acct, NULL));
    assert_int_equal(mps_push_hint_add(f->d.store, "alice", "INBOX", "old", 1, NULL), 0);
    assert_int_equal(mps_push_hint_add(f->d.store, "alice", "INBOX", "new", 2, NULL), 0);
    assert_int_equal(mps_push_hint_add(f->d.store, "alice", NULL, "acct", 3, NULL), 0);
    mps_push_take take;
    assert_int_equal(mps_push_hints_read(f->d.store, "alice", NULL, 0, 0, 10, &take, NULL), 0);
    mphost_hints_lend(acct, &take);
    assert_string_equal(f->host->sync_hint(acct, "INBOX"), "new");
    assert_string_equal(f->host->sync_hint(acct, NULL), "acct");
    assert_null(f->host->sync_hint(acct, "Work"));
    mphost_hints_return();
    assert_null(f->host->sync_hint(acct, "INBOX"));
    mps_push_take_clear(&take);
}

/* The ABI 1.1 slots through the daemon's host table: driver state outside
 * a batch, the account cursor and state records with a commit, and a
 * Graph-style move under the same id as one message.updated. */
static void test_abi11_slots(void **state)
{
    fixture *f = *state;
    const mp_host *h = f->host;
    tknobs k = knobs(0);
    mp_batch *b = NULL;
    mp_error err = {0, ""};
    char *v = NULL;

    assert_true(MP_HOST_HAS(h, state_get));
    assert_true(MP_HOST_HAS(h, http_ex));
    assert_int_equal(h->state_get(&f->acct, "refresh", &v, &err), MP_SKIP);
    assert_int_equal(h->state_put(&f->acct, "refresh", "r-2", &err), MP_OK);
    assert_int_equal(h->state_get(&f->acct, "refresh", &v, &err), MP_OK);
    assert_string_equal(v, "r-2");
    h->free(v);
    assert_int_equal(h->state_put(&f->acct, "refresh", NULL, &err), MP_OK);
    assert_int_equal(h->state_get(&f->acct, "refresh", &v, &err), MP_SKIP);
    char *long_key = mpu_calloc(1, 200);
    memset(long_key, 'k', 199);
    assert_int_equal(h->state_put(&f->acct, long_key, "x", &err), MP_FATAL);
    assert_int_equal(h->state_get(&f->acct, long_key, &v, &err), MP_FATAL);
    free(long_key);

    assert_int_equal(mps_folder_ensure(f->d.store, "alice", "Archive", MP_ROLE_ARCHIVE, NULL), 0);
    b = batch_open(f, &k, 0);
    add(f, b, MP_CHANGE_NEW, "M1");
    h->batch_account_cursor(b, "h-50");
    assert_int_equal(h->batch_state(b, "sub", "client-1", &err), MP_OK);
    assert_null(h->account_cursor(&f->acct));
    assert_int_equal(h->batch_commit(b, "c1", NULL, 0, &err), MP_OK);
    assert_string_equal(h->account_cursor(&f->acct), "h-50");
    assert_int_equal(h->state_get(&f->acct, "sub", &v, &err), MP_OK);
    assert_string_equal(v, "client-1");
    h->free(v);
    batch_close(&b);

    b = batch_open(f, &k, 0);
    static const char *const to[] = {"Archive"}, *const from[] = {"INBOX"};
    mp_folders move = {.added = to, .n_added = 1, .removed = from, .n_removed = 1};
    mp_change c = {.kind = MP_CHANGE_UPDATED, .id = "M1"};
    assert_int_equal(h->batch_change_folders(b, &c, &move, &err), MP_OK);
    assert_int_equal(h->batch_commit(b, "c2", NULL, 0, &err), MP_OK);
    assert_int_equal(count_events(f, "message.new"), 1);
    assert_int_equal(count_events(f, "message.updated"), 1);
    assert_int_equal(count_events(f, "message.deleted"), 0);
    mps_folder folder;
    assert_int_equal(mps_folder_get(f->d.store, "alice", "Archive", &folder, NULL), 0);
    assert_int_equal(folder.messages, 1);
    mps_folder_clear(&folder);
    assert_int_equal(mps_folder_get(f->d.store, "alice", "INBOX", &folder, NULL), 0);
    assert_int_equal(folder.messages, 0);
    mps_folder_clear(&folder);
    batch_close(&b);
    mphost_call_end();

    /* push_status: stored as "<state>: <text>"; liveness from the enum,
     * not from the text. */
    h->push_status(&f->acct, MP_PUSH_STATE_RECONNECTING, "timeout");
    assert_string_equal(f->d.push_text, "reconnecting: timeout");
    assert_int_equal(f->d.push_live, 0);
    h->push_status(&f->acct, MP_PUSH_STATE_LIVE, "idle on 3 folders");
    assert_string_equal(f->d.push_text, "live: idle on 3 folders");
    assert_int_equal(f->d.push_live, 1);
    h->push_state(&f->acct, "reconnecting: live soon");
    assert_int_equal(f->d.push_live, 0);
    int live = -1;
    char *t = mphost_push_status_text(MP_PUSH_STATE_FAILED, "live forever", &live);
    assert_string_equal(t, "failed: live forever");
    assert_int_equal(live, 0);
    free(t);
    t = mphost_push_status_text(MP_PUSH_STATE_LIVE, NULL, &live);
    assert_string_equal(t, "live");
    assert_int_equal(live, 1);
    free(t);
}

/* Large bodies force a commit before the message count does: 5 MB each,
 * the 4th reaches 16 MB staged. */
static void test_ingest_batches_bounded_by_bytes(void **state)
{
    fixture *f = *state;
    tknobs k = knobs(500);
    k.fetch_bodies = 1;
    mp_batch *b = NULL;
    b = batch_open(f, &k, 1);
    size_t big = (size_t)5 * 1024 * 1024;
    uint8_t *raw = calloc(1, big);
    assert_non_null(raw);
    char id[16];
    mp_error err = {0, ""};
    for (int i = 0; i < 5; i++) {
        mp_change c;
        memset(&c, 0, sizeof c);
        snprintf(id, sizeof id, "big%d", i);
        c.kind = MP_CHANGE_SYNCED;
        c.id = id;
        c.raw = raw;
        c.raw_len = big;
        assert_int_equal(f->host->batch_change(b, &c, &err), MP_OK);
    }
    free(raw);
    assert_int_equal(mphost_writeback_wait(b, &err), MP_OK);
    assert_int_equal(count_events(f, "message.synced"), 4);
    assert_int_equal(mps_batch_pending(b->staged), 1);
    assert_int_equal(mps_batch_pending_bytes(b->staged), big);
    assert_int_equal(f->host->batch_commit(b, "c", NULL, 0, &err), MP_OK);
    assert_int_equal(mps_batch_pending_bytes(b->staged), 0);
    assert_int_equal(count_events(f, "message.synced"), 5);
    mphost_writeback_end(b);
    batch_close(&b);
}

/* A write-behind commit that fails is reported by the next commit, which
 * then writes nothing: the cursor stays behind, and the job retries. */
static void test_writeback_failure_keeps_cursor_back(void **state)
{
    fixture *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->d.db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER boom BEFORE INSERT ON messages"
                                  " WHEN NEW.provider_id = 'boom'"
                                  " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    tknobs k = knobs(2);
    mp_batch *b = NULL;
    b = batch_open(f, &k, 0);
    add(f, b, MP_CHANGE_NEW, "ok1");
    add(f, b, MP_CHANGE_NEW, "ok2");  /* handed to the write-behind thread */
    add(f, b, MP_CHANGE_NEW, "boom");
    add(f, b, MP_CHANGE_NEW, "after"); /* waits for ok1+ok2, hands these over */
    add(f, b, MP_CHANGE_NEW, "last");
    mp_error err = {0, ""};
    assert_int_equal(f->host->batch_commit(b, "cursor", NULL, 0, &err), MP_RETRY);
    assert_non_null(strstr(err.text, "refused by the test"));
    assert_int_equal(count_events(f, "message.new"), 2);
    mps_folder folder;
    assert_int_equal(mps_folder_get(f->d.store, "alice", "INBOX", &folder, NULL), 0);
    assert_null(folder.cursor);
    mps_folder_clear(&folder);
    mphost_writeback_end(b);
    batch_close(&b);
}

static int collect_uid(const mp_stored_message *m, void *arg)
{
    char *out = arg;
    char item[64];
    snprintf(item, sizeof item, "%u:%s ", m->uid, m->id);
    strncat(out, item, 255 - strlen(out));
    return strcmp(m->id, "u3") == 0; /* stop after u3 */
}

/* Drivers walk stored messages in UID order, without deleted ones. */
static void test_stored_messages(void **state)
{
    fixture *f = *state;
    tknobs k = knobs(0);
    mp_batch *b = NULL;
    b = batch_open(f, &k, 0);
    const char *ids[] = {"u9", "u3", "u5", "u1"};
    const uint32_t uids[] = {9, 3, 5, 1};
    mp_error err = {0, ""};
    for (int i = 0; i < 4; i++) {
        mp_change c;
        memset(&c, 0, sizeof c);
        c.kind = MP_CHANGE_NEW;
        c.id = ids[i];
        c.uid = uids[i];
        assert_int_equal(f->host->batch_change(b, &c, &err), MP_OK);
    }
    mp_change del;
    memset(&del, 0, sizeof del);
    del.kind = MP_CHANGE_DELETED;
    del.id = "u1";
    assert_int_equal(f->host->batch_change(b, &del, &err), MP_OK);
    assert_int_equal(f->host->batch_commit(b, "c", NULL, 0, &err), MP_OK);
    batch_close(&b);

    char out[256] = "";
    assert_int_equal(f->host->stored_messages(&f->acct, "INBOX", collect_uid, out, &err), MP_OK);
    assert_string_equal(out, "3:u3 ");
    out[0] = '\0';
    assert_int_equal(f->host->stored_messages(&f->acct, "Other", collect_uid, out, &err), MP_OK);
    assert_string_equal(out, "");
}

static void test_core_settings(void **state)
{
    fixture *f = *state;
    (void)f;
    mphost_settings s = {.fetch_bodies = 1, .sync_batch_size = 77, .retention_days = 30};
    mphost_publish_settings(&s);
    assert_int_equal(f->host->core_setting("sync.fetch_bodies"), 1);
    assert_int_equal(f->host->core_setting("sync.batch_size"), 77);
    assert_int_equal(f->host->core_setting("cache.retention_days"), 30);
    assert_int_equal(f->host->core_setting("no.such"), -1);
}

static void test_bad_changes_refused(void **state)
{
    fixture *f = *state;
    tknobs k = knobs(0);
    mp_batch *b = NULL;
    b = batch_open(f, &k, 0);
    mp_change c;
    memset(&c, 0, sizeof c);
    c.kind = MP_CHANGE_NEW;
    mp_error err = {0, ""};
    assert_int_equal(f->host->batch_change(b, &c, &err), MP_FATAL);
    c.id = "x";
    c.kind = (mp_change_kind)9;
    assert_int_equal(f->host->batch_change(b, &c, &err), MP_FATAL);
    assert_int_equal(mps_batch_pending(b->staged), 0);
    batch_close(&b);
}

static void test_folder_sink_dedups(void **state)
{
    fixture *f = *state;
    mp_folder_sink *sink = mphost_sink_new();
    f->host->folder_add(sink, "INBOX", MP_ROLE_INBOX);
    f->host->folder_add(sink, "Sent", MP_ROLE_SENT);
    f->host->folder_add(sink, "INBOX", MP_ROLE_INBOX);
    f->host->folder_add(sink, "", MP_ROLE_NONE);
    assert_int_equal(mphost_sink_count(sink), 2);
    assert_string_equal(mphost_sink_name(sink, 1), "Sent");
    assert_int_equal(mphost_sink_role(sink, 1), MP_ROLE_SENT);
    mphost_sink_free(&sink);
    assert_null(sink);

    /* A hostile LIST of 100,000 folders, each sent twice: linear time (the
     * pairwise check took minutes), order and first roles kept. */
    sink = mphost_sink_new();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char name[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 100000; i++) {
            snprintf(name, sizeof name, "folder/%d", i);
            f->host->folder_add(sink, name, round == 0 ? MP_ROLE_NONE : MP_ROLE_SENT);
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_int_equal(mphost_sink_count(sink), 100000);
    assert_string_equal(mphost_sink_name(sink, 99999), "folder/99999");
    assert_int_equal(mphost_sink_role(sink, 5), MP_ROLE_NONE);
    assert_true(took < 3.0);
    mphost_sink_free(&sink);
}

static void test_push_reply_and_headers(void **state)
{
    fixture *f = *state;
    struct mp_push_reply reply;
    memset(&reply, 0, sizeof reply);
    f->host->push_reply(&reply, 200, "text/plain", "token", 5);
    f->host->push_reply(&reply, 202, "text/plain", "abc", 3);
    assert_int_equal(reply.status, 202);
    assert_string_equal(reply.body, "abc");
    assert_int_equal(reply.len, 3);
    free(reply.body);
    free(reply.content_type);
}

/* ---- webhook ingress: push_verify's verdict, answered and counted ---- */

static mp_status verdict;

static mp_status verify_as_told(mp_instance *inst, const mp_push_request *req,
                                struct mp_push_reply *reply, mp_error *err)
{
    (void)inst;
    (void)req;
    (void)reply;
    if (verdict != MP_OK && verdict != MP_SKIP)
        return mp_fail(err, verdict, "refused by the test");
    return verdict;
}

static const char *no_header(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return NULL;
}

static int deliver(fixture *f, mp_status st)
{
    verdict = st;
    mphost_push_answer a;
    mphost_push_deliver(&f->inst, "", "", no_header, NULL, (const uint8_t *)"{}", 2, &a);
    free(a.content_type);
    free(a.body);
    return a.status;
}

/* OK is accepted, SKIP (well-formed, for no account here) is answered the
 * same but counted apart, FATAL and RETRY are rejected; no receiver at
 * all is rejected too. */
static void test_push_ingress_outcomes(void **state)
{
    fixture *f = *state;
    mp_driver desc;
    memset(&desc, 0, sizeof desc);
    desc.push_kind = MP_PUSH_WEBHOOK;
    desc.push_verify = verify_as_told;
    f->inst.desc = &desc;
    f->inst.initialized = 1;
    memset(push_counts, 0, sizeof push_counts);

    assert_int_equal(deliver(f, MP_OK), 204);
    assert_int_equal(push_counts[MPHOST_PUSH_ACCEPTED], 1);
    assert_int_equal(deliver(f, MP_SKIP), 204);
    assert_int_equal(push_counts[MPHOST_PUSH_IGNORED], 1);
    assert_int_equal(push_counts[MPHOST_PUSH_ACCEPTED], 1);
    assert_int_equal(deliver(f, MP_FATAL), 400);
    assert_int_equal(deliver(f, MP_RETRY), 503);
    assert_int_equal(push_counts[MPHOST_PUSH_REJECTED], 2);
    desc.push_kind = MP_PUSH_NONE;
    assert_int_equal(deliver(f, MP_OK), 404);
    assert_int_equal(push_counts[MPHOST_PUSH_REJECTED], 3);
    assert_int_equal(push_counts[MPHOST_PUSH_ACCEPTED], 1);
    assert_int_equal(push_counts[MPHOST_PUSH_IGNORED], 1);
    f->inst.desc = NULL;
    f->inst.initialized = 0;
}

static int fired;
static void on_timer(void *arg)
{
    (void)arg;
    fired++;
}

/* Timers fire once on the loop; an account's leftovers are freed with it. */
static void test_timers(void **state)
{
    fixture *f = *state;
    fired = 0;
    mp_timer *t = f->host->timer_add(&f->acct, 1, on_timer, NULL);
    mp_timer *never = f->host->timer_add(&f->acct, 1, on_timer, NULL);
    f->host->timer_cancel(&never);
    assert_null(never);
    while (fired == 0)
        event_base_loop(f->d.base, EVLOOP_ONCE);
    assert_int_equal(fired, 1);
    assert_non_null(f->acct.loop_objs);
    (void)t;
    mp_timer *left = f->host->timer_add(&f->acct, 60000, on_timer, NULL);
    (void)left;
    mphost_release_loop_objs(&f->acct.loop_objs);
    assert_null(f->acct.loop_objs);
}

/* ---- HTTP through libcurl against a local evhttp server ---- */

typedef struct server {
    struct event_base *base;
    struct evhttp *http;
    int port;
    pthread_t thread;
} server;

static void serve(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *out = evbuffer_new();
    const char *uri = evhttp_request_get_uri(req);
    if (strcmp(uri, "/throttled") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "7");
        evbuffer_add_printf(out, "slow down");
        evhttp_send_reply(req, 429, "Too Many Requests", out);
    } else {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        evbuffer_add_printf(out, "%s %zu",
                            evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "GET",
                            evbuffer_get_length(in));
        evhttp_send_reply(req, 200, "OK", out);
    }
    evbuffer_free(out);
}

static void *serve_thread(void *arg)
{
    server *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

static void test_http(void **state)
{
    fixture *f = *state;
    server s;
    memset(&s, 0, sizeof s);
    s.base = event_base_new();
    s.http = evhttp_new(s.base);
    evhttp_set_gencb(s.http, serve, NULL);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(s.http, "127.0.0.1", 0);
    assert_non_null(bound);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl);
    s.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    pthread_create(&s.thread, NULL, serve_thread, &s);

    char url[128];
    mp_http_response resp;
    mp_error err = {0, ""};
    snprintf(url, sizeof url, "http://127.0.0.1:%d/throttled", s.port);
    mp_http_request req = {"GET", url, NULL, NULL, 0, 5000};
    assert_int_equal(f->host->http(&f->acct, &req, &resp, &err), MP_OK);
    assert_int_equal(resp.status, 429);
    assert_int_equal(resp.retry_after_ms, 7000);
    assert_string_equal((char *)resp.body, "slow down");
    f->host->http_free(&resp);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", s.port);
    const char *headers[] = {"Content-Type: application/json", NULL};
    mp_http_request post = {"POST", url, headers, (const uint8_t *)"{\"a\":1}", 7, 5000};
    assert_int_equal(f->host->http(&f->acct, &post, &resp, &err), MP_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal((char *)resp.body, "POST 7");
    f->host->http_free(&resp);

    event_base_loopbreak(s.base);
    pthread_join(s.thread, NULL);
    evhttp_free(s.http);
    event_base_free(s.base);

    /* Nothing listens any more: a transport failure asks for a retry, and
     * the error names the endpoint without query, userinfo or fragment. */
    char secret_url[256];
    snprintf(secret_url, sizeof secret_url,
             "http://user:pw@127.0.0.1:%d/echo?access_token=SECRET#frag", s.port);
    mp_http_request dead = {"GET", secret_url, NULL, NULL, 0, 2000};
    assert_int_equal(f->host->http(&f->acct, &dead, &resp, &err), MP_RETRY);
    assert_non_null(strstr(err.text, url));
    assert_null(strstr(err.text, "SECRET"));
    assert_null(strstr(err.text, "pw@"));
    assert_null(strstr(err.text, "frag"));

    /* Only http and https: no file://, no gopher. */
    mp_http_request file = {"GET", "file:///etc/passwd", NULL, NULL, 0, 2000};
    assert_int_equal(f->host->http(&f->acct, &file, &resp, &err), MP_RETRY);
}

/* The http slot counts requests against the account's limit: with the
 * only slot of "alice" taken, her request waits and reaches the server
 * only once the slot is free. */
typedef struct slot_call {
    fixture *f;
    const char *url;
    mp_status st;
    long status;
} slot_call;

static void *slot_call_run(void *arg)
{
    slot_call *c = arg;
    mp_http_request req = {"GET", c->url, NULL, NULL, 0, 5000};
    mp_http_response resp;
    mp_error err = {0, ""};
    c->st = c->f->host->http(&c->f->acct, &req, &resp, &err);
    c->status = resp.status;
    c->f->host->http_free(&resp);
    mpn_thread_cleanup();
    return NULL;
}

static void test_http_account_limit(void **state)
{
    fixture *f = *state;
    static const mpt_http_step steps[] = {{.path = "/limited", .status = 204}};
    mpt_http_server *s = mpt_http_server_start(steps, 1, NULL);
    char *url = mpt_http_server_url(s, "/limited");
    mpn_limit_set("alice", 1);
    assert_int_equal(mpn_limit_acquire("alice", 0), 0);
    slot_call c = {f, url, MP_FATAL, 0};
    pthread_t t;
    pthread_create(&t, NULL, slot_call_run, &c);
    assert_int_equal(mpt_http_server_expect_quiet(s, 300), 0);
    mpn_limit_release("alice");
    pthread_join(t, NULL);
    assert_int_equal(c.st, MP_OK);
    assert_int_equal(c.status, 204);
    assert_int_equal(mpt_http_server_count(s), 1);
    assert_int_equal(mpt_http_server_mismatches(s), 0);
    mpn_limit_set("alice", 0);
    free(url);
    mpt_http_server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_instance_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_is_never_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingest_batches_bounded_by_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memberships_and_account_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi11_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writeback_failure_keeps_cursor_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ingest_batches_commit_without_cursor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_changes_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stored_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_sink_dedups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_reply_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_ingress_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_account_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_delta_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_hint, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

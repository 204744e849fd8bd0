/* Scheduler, worker pool and heap tests, with a real event_base and real
 * threads. Nothing here asserts durations: only counts and orderings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "sched/heap.h"
#include "sched/sched.h"
#include "util/util.h"

#define MAX_RECS 64
#define MAX_ACCTS 16
#define SAFETY_MS 20000 /* only a guard against hanging, never asserted */
#define HOUR_MS 3600000u

typedef struct rec {
    char account[32];
    mpj_kind kind;
    char folder[32];
    int has_folder;
    char folders[160]; /* SYNC: the folder set joined with ',', "" = all */
    unsigned n_folders;
    unsigned triggers;
    char reason[32];
} rec;

typedef struct tstate {
    struct event_base *base;
    struct event *ticker;
    mpj_sched *s;
    pthread_t loop_thread;
    pthread_mutex_t lock;
    rec recs[MAX_RECS];
    int nrecs;
    char acct_names[MAX_ACCTS][32];
    int acct_conc[MAX_ACCTS], acct_max[MAX_ACCTS];
    atomic_int conc, max_conc, bf_conc, bf_max, sync_saw_bf;
    atomic_int runs;
    atomic_int started;
    atomic_int gate_open;
    int gate_first;
    int sleep_ms;
    mpj_outcome script[16];
    uint32_t retry[16];
    int nscript;
    /* done callback */
    int ndone;
    int wrong_thread;
    int64_t deltas[16];
    unsigned failures[16];
    int64_t next_due[16];
} tstate;

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static void atomic_max(atomic_int *m, int v)
{
    int cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
        ;
}

static int acct_slot(tstate *t, const char *name)
{
    for (int i = 0; i < MAX_ACCTS; i++) {
        if (!t->acct_names[i][0]) {
            mpu_strlcpy(t->acct_names[i], name, sizeof t->acct_names[i]);
            return i;
        }
        if (strcmp(t->acct_names[i], name) == 0)
            return i;
    }
    return MAX_ACCTS - 1;
}

static void t_run(const mpj_job *job, mpj_result *res, void *arg)
{
    tstate *t = arg;
    atomic_max(&t->max_conc, atomic_fetch_add(&t->conc, 1) + 1);
    if (job->kind == MPJ_BACKFILL)
        atomic_max(&t->bf_max, atomic_fetch_add(&t->bf_conc, 1) + 1);
    else
        atomic_max(&t->sync_saw_bf, atomic_load(&t->bf_conc));

    pthread_mutex_lock(&t->lock);
    int slot = acct_slot(t, job->account);
    if (++t->acct_conc[slot] > t->acct_max[slot])
        t->acct_max[slot] = t->acct_conc[slot];
    int n = t->nrecs;
    if (n < MAX_RECS) {
        rec *r = &t->recs[n];
        mpu_strlcpy(r->account, job->account, sizeof r->account);
        r->kind = job->kind;
        r->has_folder = job->folder != NULL;
        mpu_strlcpy(r->folder, job->folder ? job->folder : "", sizeof r->folder);
        r->folders[0] = '\0';
        r->n_folders = job->n_folders;
        for (unsigned i = 0; i < job->n_folders; i++) {
            if (i > 0)
                strncat(r->folders, ",", sizeof r->folders - strlen(r->folders) - 1);
            strncat(r->folders, job->folders[i], sizeof r->folders - strlen(r->folders) - 1);
        }
        r->triggers = job->triggers;
        mpu_strlcpy(r->reason, job->reason ? job->reason : "", sizeof r->reason);
    }
    t->nrecs++;
    pthread_mutex_unlock(&t->lock);
    atomic_fetch_add(&t->started, 1);

    if (n == 0 && t->gate_first)
        while (!atomic_load(&t->gate_open))
            usleep(1000);
    if (t->sleep_ms)
        usleep((useconds_t)t->sleep_ms * 1000);

    pthread_mutex_lock(&t->lock);
    t->acct_conc[slot]--;
    pthread_mutex_unlock(&t->lock);
    if (job->kind == MPJ_BACKFILL)
        atomic_fetch_sub(&t->bf_conc, 1);
    atomic_fetch_sub(&t->conc, 1);
    res->outcome = n < t->nscript ? t->script[n] : MPJ_DONE;
    res->retry_after_ms = n < t->nscript ? t->retry[n] : 0;
    atomic_fetch_add(&t->runs, 1);
}

static void t_done(const mpj_job *job, const mpj_result *res, void *arg)
{
    tstate *t = arg;
    if (!pthread_equal(pthread_self(), t->loop_thread))
        t->wrong_thread++;
    int i = t->ndone++;
    mpj_kind_info info;
    if (i < 16 && mpj_account_info(t->s, job->account, job->kind, &info) == 0) {
        t->next_due[i] = info.next_due_ms;
        t->deltas[i] = info.next_due_ms ? info.next_due_ms - mpu_now_ms() : 0;
        t->failures[i] = info.failures;
    }
}

static tstate *t_new(unsigned workers, uint64_t max_backoff_ms)
{
    tstate *t = mpu_calloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    t->loop_thread = pthread_self();
    t->base = event_base_new();
    assert_non_null(t->base);
    /* Keeps every EVLOOP_ONCE iteration short even when nothing else is
     * pending (completions are only activated, never added). */
    t->ticker = event_new(t->base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 5000};
    event_add(t->ticker, &tv);
    mpj_config cfg = {.workers = workers,
                      .max_backoff_ms = max_backoff_ms,
                      .run = t_run,
                      .done = t_done,
                      .arg = t};
    t->s = mpj_new(t->base, &cfg);
    assert_non_null(t->s);
    return t;
}

static void t_free(tstate *t)
{
    mpj_free(&t->s);
    assert_null(t->s);
    event_free(t->ticker);
    event_base_free(t->base);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

typedef int (*cond_fn)(tstate *t);

static int pump_until(tstate *t, cond_fn cond)
{
    int64_t deadline = mpu_mono_ms() + SAFETY_MS;
    while (!cond(t)) {
        if (mpu_mono_ms() > deadline)
            return 0;
        event_base_loop(t->base, EVLOOP_ONCE);
    }
    return 1;
}

/* Let the loop run for a while so anything that should NOT happen gets
 * its chance to happen. */
static void pump_for(tstate *t, int ms)
{
    int64_t end = mpu_mono_ms() + ms;
    while (mpu_mono_ms() < end)
        event_base_loop(t->base, EVLOOP_ONCE);
}

static mpj_kind_info info_of(tstate *t, const char *account, mpj_kind kind)
{
    mpj_kind_info info;
    assert_int_equal(mpj_account_info(t->s, account, kind, &info), 0);
    return info;
}

static int cond_started1(tstate *t)
{
    return atomic_load(&t->started) >= 1;
}

static int expect_runs;
static int cond_runs(tstate *t)
{
    return atomic_load(&t->runs) >= expect_runs && t->ndone >= expect_runs;
}

static void wait_runs(tstate *t, int n)
{
    expect_runs = n;
    assert_true(pump_until(t, cond_runs));
}

/* ---- coalescing ---------------------------------------------------- */

typedef struct trig_thread {
    mpj_sched *s;
    int n;
} trig_thread;

static void *trigger_thread(void *arg)
{
    trig_thread *tt = arg;
    for (int i = 0; i < tt->n; i++)
        mpj_trigger_async(tt->s, "a", MPJ_SYNC, NULL, "push");
    return NULL;
}

static int cond_201_triggers(tstate *t)
{
    return info_of(t, "a", MPJ_SYNC).triggers >= 201;
}

static void test_triggers_coalesce(void **state)
{
    tstate *t = t_new(3, 0);
    t->gate_first = 1;
    t->sleep_ms = 100;
    mpj_account_add(t->s, "a", HOUR_MS, 0, HOUR_MS);
    assert_int_equal(mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "api"), 0);
    assert_true(pump_until(t, cond_started1));
    assert_int_equal(info_of(t, "a", MPJ_SYNC).running, 1);

    pthread_t th[4];
    trig_thread tt = {t->s, 25};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, trigger_thread, &tt), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "push"), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_true(pump_until(t, cond_201_triggers));
    mpj_kind_info info = info_of(t, "a", MPJ_SYNC);
    assert_int_equal(info.rerun, 1);
    assert_int_equal(info.running, 1);
    assert_int_equal(atomic_load(&t->runs), 0);

    atomic_store(&t->gate_open, 1);
    wait_runs(t, 2);
    pump_for(t, 300);
    assert_int_equal(atomic_load(&t->runs), 2);
    assert_int_equal(t->nrecs, 2);
    assert_int_equal(t->recs[0].triggers, 1);
    assert_string_equal(t->recs[0].reason, "api");
    assert_int_equal(t->recs[1].triggers, 200);
    assert_string_equal(t->recs[1].reason, "push");
    assert_int_equal(t->acct_max[acct_slot(t, "a")], 1);
    info = info_of(t, "a", MPJ_SYNC);
    assert_int_equal(info.runs, 2);
    assert_int_equal(info.rerun, 0);
    assert_int_equal(info.running, 0);
    assert_true(info.next_due_ms > mpu_now_ms());
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.triggers_coalesced, 199);
    assert_int_equal(st.jobs_run, 2);
    assert_int_equal(t->wrong_thread, 0);
    t_free(t);
}

/* Merged triggers while queued: same folder stays, different folders widen
 * to all folders. */
static void test_trigger_merge_queued(void **state)
{
    tstate *t = t_new(1, 0);
    t->gate_first = 1;
    mpj_account_add(t->s, "blocker", HOUR_MS, 0, HOUR_MS);
    mpj_account_add(t->s, "x", HOUR_MS, 0, HOUR_MS);
    mpj_account_add(t->s, "y", HOUR_MS, 0, HOUR_MS);
    mpj_trigger(t->s, "blocker", MPJ_SYNC, NULL, "api");
    assert_true(pump_until(t, cond_started1));
    mpj_trigger(t->s, "x", MPJ_BACKFILL, "INBOX", "api");
    mpj_trigger(t->s, "x", MPJ_BACKFILL, "INBOX", "api");
    mpj_trigger(t->s, "y", MPJ_BACKFILL, "INBOX", "api");
    mpj_trigger(t->s, "y", MPJ_BACKFILL, "Sent", "api");
    mpj_trigger(t->s, "y", MPJ_BACKFILL, "INBOX", "api");
    assert_int_equal(info_of(t, "x", MPJ_BACKFILL).running, 0);
    assert_int_equal(mpj_trigger(t->s, "nobody", MPJ_SYNC, NULL, "api"), -1);
    atomic_store(&t->gate_open, 1);
    wait_runs(t, 3);
    pump_for(t, 100);
    assert_int_equal(t->nrecs, 3);
    assert_string_equal(t->recs[1].account, "x");
    assert_int_equal(t->recs[1].triggers, 2);
    assert_true(t->recs[1].has_folder);
    assert_string_equal(t->recs[1].folder, "INBOX");
    assert_string_equal(t->recs[2].account, "y");
    assert_int_equal(t->recs[2].triggers, 3);
    assert_false(t->recs[2].has_folder);
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.triggers_coalesced, 3);
    t_free(t);
}

/* SYNC triggers merged while queued: folder sets merge as a union, a
 * trigger for all folders absorbs them, and a union beyond the bound
 * becomes all folders. */
static void test_sync_folder_sets(void **state)
{
    tstate *t = t_new(1, 0);
    t->gate_first = 1;
    mpj_account_add(t->s, "blocker", HOUR_MS, 0, HOUR_MS);
    const char *names[] = {"w", "x", "y", "z"};
    for (int i = 0; i < 4; i++)
        mpj_account_add(t->s, names[i], HOUR_MS, 0, HOUR_MS);
    mpj_trigger(t->s, "blocker", MPJ_SYNC, NULL, "api");
    assert_true(pump_until(t, cond_started1));
    mpj_trigger(t->s, "w", MPJ_SYNC, "INBOX", "push");
    mpj_trigger(t->s, "x", MPJ_SYNC, "INBOX", "push");
    mpj_trigger(t->s, "x", MPJ_SYNC, "Sent", "push");
    mpj_trigger(t->s, "x", MPJ_SYNC, "INBOX", "push");
    mpj_trigger(t->s, "y", MPJ_SYNC, "INBOX", "push");
    mpj_trigger(t->s, "y", MPJ_SYNC, NULL, "api");
    mpj_trigger(t->s, "y", MPJ_SYNC, "Sent", "push");
    for (int i = 0; i <= MPJ_MAX_SYNC_FOLDERS; i++) {
        char f[16];
        snprintf(f, sizeof f, "F%d", i);
        mpj_trigger(t->s, "z", MPJ_SYNC, f, "push");
    }
    atomic_store(&t->gate_open, 1);
    wait_runs(t, 5);
    pump_for(t, 100);
    assert_int_equal(t->nrecs, 5);
    for (int i = 1; i < 5; i++) {
        const rec *r = &t->recs[i];
        assert_false(r->has_folder); /* BACKFILL's field stays unused */
        if (strcmp(r->account, "w") == 0) {
            assert_string_equal(r->folders, "INBOX");
        } else if (strcmp(r->account, "x") == 0) {
            assert_string_equal(r->folders, "INBOX,Sent");
            assert_int_equal(r->triggers, 3);
        } else if (strcmp(r->account, "y") == 0) {
            assert_int_equal(r->n_folders, 0);
            assert_int_equal(r->triggers, 3);
        } else {
            assert_string_equal(r->account, "z");
            assert_int_equal(r->n_folders, 0);
        }
    }
    t_free(t);
}

/* Triggers during a run: the one re-run covers the union of their folders,
 * and the run after a timer start covers every folder. */
static void test_sync_folder_rerun(void **state)
{
    tstate *t = t_new(1, 0);
    t->gate_first = 1;
    mpj_account_add(t->s, "a", HOUR_MS, 0, HOUR_MS);
    mpj_trigger(t->s, "a", MPJ_SYNC, "INBOX", "push");
    assert_true(pump_until(t, cond_started1));
    mpj_trigger(t->s, "a", MPJ_SYNC, "Work", "push");
    mpj_trigger(t->s, "a", MPJ_SYNC, "Sent", "push");
    assert_int_equal(info_of(t, "a", MPJ_SYNC).rerun, 1);
    atomic_store(&t->gate_open, 1);
    wait_runs(t, 2);
    pump_for(t, 100);
    assert_int_equal(t->nrecs, 2);
    assert_string_equal(t->recs[0].folders, "INBOX");
    assert_string_equal(t->recs[1].folders, "Work,Sent");
    assert_int_equal(t->recs[1].triggers, 2);
    /* The periodic run: every folder. */
    mpj_schedule_in(t->s, "a", MPJ_SYNC, 0);
    wait_runs(t, 3);
    assert_int_equal(t->recs[2].n_folders, 0);
    assert_string_equal(t->recs[2].reason, "schedule");
    t_free(t);
}

/* A push for one folder takes the place of the due all-folder run but
 * does not postpone it: after the push's run the sweep is due at its old
 * time, not an interval later, and covers every folder. */
static void test_sync_folder_keeps_sweep(void **state)
{
    tstate *t = t_new(1, 0);
    mpj_account_add(t->s, "a", HOUR_MS, 0, 2000);
    int64_t sweep = info_of(t, "a", MPJ_SYNC).next_due_ms;
    mpj_trigger(t->s, "a", MPJ_SYNC, "INBOX", "push");
    wait_runs(t, 1);
    pump_for(t, 50);
    assert_string_equal(t->recs[0].folders, "INBOX");
    mpj_kind_info info = info_of(t, "a", MPJ_SYNC);
    assert_true(info.next_due_ms > 0);
    assert_true(info.next_due_ms <= sweep);
    wait_runs(t, 2);
    assert_int_equal(t->recs[1].n_folders, 0);
    /* After the sweep: the interval again. */
    pump_for(t, 50);
    assert_true(info_of(t, "a", MPJ_SYNC).next_due_ms > mpu_now_ms() + HOUR_MS / 2);
    t_free(t);
}

/* ---- concurrency and priorities ------------------------------------ */

static void test_accounts_run_concurrently(void **state)
{
    tstate *t = t_new(3, 0);
    t->sleep_ms = 100;
    char name[16];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "acct%d", i);
        mpj_account_add(t->s, name, HOUR_MS, 0, 0);
    }
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.accounts, 6);
    assert_int_equal(st.workers, 3);
    wait_runs(t, 6);
    assert_true(atomic_load(&t->max_conc) > 1);
    assert_true(atomic_load(&t->max_conc) <= 3);
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "acct%d", i);
        assert_string_equal(info_of(t, name, MPJ_SYNC).runs ? "ran" : "idle", "ran");
        assert_string_equal(t->recs[i].reason, "first");
    }
    t_free(t);
}

static void test_sync_priority(void **state)
{
    tstate *t = t_new(1, 0);
    t->gate_first = 1;
    const char *names[] = {"blocker", "b1", "b2", "x", "s"};
    for (int i = 0; i < 5; i++)
        mpj_account_add(t->s, names[i], HOUR_MS, HOUR_MS, HOUR_MS);
    mpj_trigger(t->s, "blocker", MPJ_BACKFILL, NULL, "api");
    assert_true(pump_until(t, cond_started1));
    mpj_trigger(t->s, "b1", MPJ_BACKFILL, NULL, "api");
    mpj_trigger(t->s, "x", MPJ_BACKFILL, NULL, "api");
    mpj_trigger(t->s, "b2", MPJ_BACKFILL, NULL, "api");
    /* x's queued BACKFILL gives way to its SYNC. */
    mpj_trigger(t->s, "x", MPJ_SYNC, NULL, "api");
    mpj_trigger(t->s, "s", MPJ_SYNC, NULL, "api");
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.queued_high, 2);
    assert_int_equal(st.queued_low, 2);
    assert_int_equal(st.busy, 1);
    atomic_store(&t->gate_open, 1);
    wait_runs(t, 6);
    static const struct {
        const char *account;
        mpj_kind kind;
    } want[] = {{"blocker", MPJ_BACKFILL}, {"x", MPJ_SYNC},      {"s", MPJ_SYNC},
                {"b1", MPJ_BACKFILL},      {"b2", MPJ_BACKFILL}, {"x", MPJ_BACKFILL}};
    for (int i = 0; i < 6; i++) {
        assert_string_equal(t->recs[i].account, want[i].account);
        assert_int_equal(t->recs[i].kind, want[i].kind);
    }
    t_free(t);
}

static int cond_started2(tstate *t)
{
    return atomic_load(&t->started) >= 2;
}

static void test_backfill_cap(void **state)
{
    tstate *t = t_new(2, 0);
    t->gate_first = 1;
    t->sleep_ms = 20;
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "bf%d", i);
        mpj_account_add(t->s, name, HOUR_MS, HOUR_MS, HOUR_MS);
        mpj_trigger(t->s, name, MPJ_BACKFILL, NULL, "api");
    }
    mpj_account_add(t->s, "new-mail", HOUR_MS, HOUR_MS, HOUR_MS);
    assert_true(pump_until(t, cond_started1));
    /* The first backfill holds its worker; the other one must stay free
     * for new mail although four backfills wait. */
    mpj_trigger(t->s, "new-mail", MPJ_SYNC, NULL, "push");
    assert_true(pump_until(t, cond_started2));
    assert_int_equal(atomic_load(&t->sync_saw_bf), 1);
    atomic_store(&t->gate_open, 1);
    wait_runs(t, 6);
    assert_int_equal(atomic_load(&t->bf_max), 1);
    assert_int_equal(t->recs[1].kind, MPJ_SYNC);
    t_free(t);
}

/* One job per account whatever the kind; a due SYNC wins over BACKFILL. */
static void test_account_exclusive(void **state)
{
    tstate *t = t_new(3, 0);
    t->gate_first = 1;
    mpj_account_add(t->s, "a", HOUR_MS, HOUR_MS, HOUR_MS);
    mpj_trigger(t->s, "a", MPJ_BACKFILL, NULL, "api");
    assert_true(pump_until(t, cond_started1));
    mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "push");
    mpj_trigger(t->s, "a", MPJ_BACKFILL, "INBOX", "api");
    pump_for(t, 100);
    assert_int_equal(atomic_load(&t->started), 1);
    assert_int_equal(info_of(t, "a", MPJ_SYNC).running, 0);
    assert_int_equal(info_of(t, "a", MPJ_BACKFILL).rerun, 1);
    atomic_store(&t->gate_open, 1);
    wait_runs(t, 3);
    pump_for(t, 100);
    assert_int_equal(t->nrecs, 3);
    assert_int_equal(t->recs[0].kind, MPJ_BACKFILL);
    assert_int_equal(t->recs[1].kind, MPJ_SYNC);
    assert_int_equal(t->recs[2].kind, MPJ_BACKFILL);
    assert_string_equal(t->recs[2].folder, "INBOX");
    assert_int_equal(t->acct_max[acct_slot(t, "a")], 1);
    t_free(t);
}

/* ---- work that runs alone (mpj_account_alone) ------------------------ */

typedef struct alone_ctx {
    tstate *t;
    atomic_int ran;   /* work calls                                        */
    atomic_int started;
    atomic_int gated; /* work waits until this is cleared                  */
    int done_ran[4];  /* done's `ran`, in order                            */
    int ndone;
} alone_ctx;

static void alone_work_fn(void *arg)
{
    alone_ctx *c = arg;
    tstate *t = c->t;
    atomic_max(&t->max_conc, atomic_fetch_add(&t->conc, 1) + 1);
    pthread_mutex_lock(&t->lock);
    if (t->nrecs < MAX_RECS) {
        rec *r = &t->recs[t->nrecs];
        memset(r, 0, sizeof *r);
        mpu_strlcpy(r->account, "a", sizeof r->account);
        mpu_strlcpy(r->reason, "alone", sizeof r->reason);
    }
    t->nrecs++;
    pthread_mutex_unlock(&t->lock);
    atomic_store(&c->started, 1);
    while (atomic_load(&c->gated))
        usleep(1000);
    usleep(20000);
    atomic_fetch_sub(&t->conc, 1);
    atomic_fetch_add(&c->ran, 1);
}

static void alone_done_fn(void *arg, int ran)
{
    alone_ctx *c = arg;
    if (c->ndone < 4)
        c->done_ran[c->ndone] = ran;
    c->ndone++;
}

static alone_ctx *alone_wait_ctx;
static int cond_alone_done(tstate *t)
{
    return alone_wait_ctx->ndone >= 1;
}

/* It waits for the running SYNC, goes before the SYNC triggered meanwhile,
 * and nothing of the account ever runs beside it. */
static void test_alone_waits_for_sync(void **state)
{
    tstate *t = t_new(3, 0);
    alone_ctx c = {.t = t};
    t->gate_first = 1;
    mpj_account_add(t->s, "a", HOUR_MS, HOUR_MS, 0);
    assert_true(pump_until(t, cond_started1));
    assert_int_equal(mpj_account_alone(t->s, "a", alone_work_fn, alone_done_fn, &c), 0);
    /* One at a time per account; unknown accounts refused. */
    assert_int_equal(mpj_account_alone(t->s, "a", alone_work_fn, alone_done_fn, &c), -1);
    assert_int_equal(mpj_account_alone(t->s, "zz", alone_work_fn, alone_done_fn, &c), -1);
    mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "push");
    mpj_trigger(t->s, "a", MPJ_BACKFILL, NULL, "api");
    pump_for(t, 100);
    assert_int_equal(atomic_load(&c.ran), 0);
    atomic_store(&t->gate_open, 1);
    wait_runs(t, 3);
    assert_int_equal(c.ndone, 1);
    assert_int_equal(c.done_ran[0], 1);
    assert_int_equal(t->nrecs, 4);
    assert_int_equal(t->recs[0].kind, MPJ_SYNC);
    assert_string_equal(t->recs[1].reason, "alone");
    assert_int_equal(atomic_load(&t->max_conc), 1);
    t_free(t);
}

static int cond_alone_started(tstate *t)
{
    return atomic_load(&alone_wait_ctx->started) != 0;
}

/* While it runs, a due or triggered kind waits, then runs right after. */
static void test_alone_holds_kinds(void **state)
{
    tstate *t = t_new(3, 0);
    alone_ctx c = {.t = t};
    atomic_store(&c.gated, 1);
    mpj_account_add(t->s, "a", HOUR_MS, HOUR_MS, HOUR_MS);
    alone_wait_ctx = &c;
    assert_int_equal(mpj_account_alone(t->s, "a", alone_work_fn, alone_done_fn, &c), 0);
    assert_true(pump_until(t, cond_alone_started));
    mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "push");
    mpj_trigger(t->s, "a", MPJ_BACKFILL, NULL, "api");
    pump_for(t, 100);
    assert_int_equal(atomic_load(&t->runs), 0);
    atomic_store(&c.gated, 0);
    wait_runs(t, 2);
    assert_int_equal(c.ndone, 1);
    assert_string_equal(t->recs[0].reason, "alone");
    assert_int_equal(atomic_load(&t->max_conc), 1);
    t_free(t);
}

/* A SYNC in back-off keeps its due time and failure count, a parked one
 * stays parked: the alone work neither triggers nor reschedules them. */
static void test_alone_keeps_schedule(void **state)
{
    tstate *t = t_new(2, 0);
    alone_ctx c = {.t = t};
    /* The script is indexed by record, and the alone work records too. */
    t->script[0] = MPJ_FAILED;
    t->script[1] = MPJ_STOP;
    t->script[2] = MPJ_STOP;
    t->nscript = 3;
    mpj_account_add(t->s, "a", HOUR_MS, 0, 0);
    wait_runs(t, 1);
    mpj_kind_info before = info_of(t, "a", MPJ_SYNC);
    assert_int_equal(before.failures, 1);
    assert_true(before.next_due_ms > mpu_now_ms());
    alone_wait_ctx = &c;
    assert_int_equal(mpj_account_alone(t->s, "a", alone_work_fn, alone_done_fn, &c), 0);
    assert_true(pump_until(t, cond_alone_done));
    mpj_kind_info after = info_of(t, "a", MPJ_SYNC);
    assert_int_equal(after.failures, 1);
    assert_int_equal(after.next_due_ms, before.next_due_ms);
    assert_int_equal(after.runs, 1);

    alone_ctx c2 = {.t = t};
    mpj_account_add(t->s, "b", HOUR_MS, 0, 0);
    wait_runs(t, 2);
    assert_int_equal(info_of(t, "b", MPJ_SYNC).next_due_ms, 0);
    alone_wait_ctx = &c2;
    assert_int_equal(mpj_account_alone(t->s, "b", alone_work_fn, alone_done_fn, &c2), 0);
    assert_true(pump_until(t, cond_alone_done));
    pump_for(t, 200);
    assert_int_equal(c2.done_ran[0], 1);
    assert_int_equal(info_of(t, "b", MPJ_SYNC).next_due_ms, 0);
    assert_int_equal(info_of(t, "b", MPJ_SYNC).runs, 1);
    assert_int_equal(atomic_load(&t->runs), 2);
    t_free(t);
}

static int alone_free_ndone, alone_free_ran = -1;
static void alone_free_done(void *arg, int ran)
{
    (void)arg;
    alone_free_ndone++;
    alone_free_ran = ran;
}

/* Removal or shutdown before it started: done(ran 0), exactly once. */
static void test_alone_cancelled(void **state)
{
    tstate *t = t_new(2, 0);
    alone_ctx c = {.t = t};
    t->gate_first = 1;
    mpj_account_add(t->s, "a", HOUR_MS, 0, 0);
    mpj_account_add(t->s, "b", HOUR_MS, 0, HOUR_MS);
    assert_true(pump_until(t, cond_started1));
    assert_int_equal(mpj_account_alone(t->s, "a", alone_work_fn, alone_done_fn, &c), 0);
    mpj_account_remove(t->s, "a");
    assert_int_equal(c.ndone, 1);
    assert_int_equal(c.done_ran[0], 0);
    atomic_store(&t->gate_open, 1);
    wait_runs(t, 1);
    pump_for(t, 100);
    assert_int_equal(atomic_load(&c.ran), 0);
    assert_int_equal(c.ndone, 1);

    /* "b" runs a gated SYNC; its alone work waits and is dropped by
     * mpj_free. */
    atomic_store(&t->gate_open, 0);
    t->gate_first = 0;
    t->sleep_ms = 300;
    mpj_trigger(t->s, "b", MPJ_SYNC, NULL, "api");
    expect_runs = 2;
    assert_int_equal(mpj_account_alone(t->s, "b", alone_work_fn, alone_free_done, NULL),
                     0);
    t_free(t);
    assert_int_equal(alone_free_ndone, 1);
    assert_int_equal(alone_free_ran, 0);
}

/* ---- outcomes ------------------------------------------------------ */

static int target_done;
static int cond_done(tstate *t)
{
    return t->ndone >= target_done;
}

static void test_failure_backoff(void **state)
{
    tstate *t = t_new(1, 100000);
    for (int i = 0; i < 6; i++)
        t->script[i] = MPJ_FAILED;
    t->script[6] = MPJ_FAILED;
    t->retry[6] = 5000;
    t->script[7] = MPJ_DONE;
    t->nscript = 8;
    mpj_account_add(t->s, "a", 60000, 0, 0);
    for (int i = 0; i < 8; i++) {
        if (i > 0)
            mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "api");
        target_done = i + 1;
        assert_true(pump_until(t, cond_done));
    }
    /* 15 s, doubling, jitter +-10 %, capped at 100 s (+ jitter). */
    assert_true(t->deltas[0] >= 13000 && t->deltas[0] <= 16500);
    for (int i = 1; i < 3; i++) {
        double ratio = (double)t->deltas[i] / (double)t->deltas[i - 1];
        assert_true(ratio > 1.55 && ratio < 2.5);
    }
    for (int i = 0; i < 6; i++) {
        assert_int_equal(t->failures[i], (unsigned)i + 1);
        assert_true(t->deltas[i] <= 110000);
    }
    /* 120 s capped to 100 s, then stays there. */
    for (int i = 3; i < 6; i++)
        assert_true(t->deltas[i] >= 85000);
    assert_int_equal(t->failures[6], 7);
    assert_true(t->deltas[6] > 4000 && t->deltas[6] <= 5000);
    assert_int_equal(t->failures[7], 0);
    assert_true(t->deltas[7] >= 53000 && t->deltas[7] <= 66000);
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.jobs_failed, 7);
    assert_int_equal(st.jobs_run, 8);
    assert_string_equal(t->recs[0].reason, "first");
    t_free(t);
}

/* A cap of 4294968 s is 4294968000 ms, past 2^32: it must stay that, not
 * wrap to 704 ms. Ten failures: 15 s doubled nine times = 7680 s. */
static void test_backoff_64bit(void **state)
{
    tstate *t = t_new(1, 4294968ull * 1000u);
    for (int i = 0; i < 10; i++)
        t->script[i] = MPJ_FAILED;
    t->nscript = 10;
    mpj_account_add(t->s, "a", 60000, 0, 0);
    for (int i = 0; i < 10; i++) {
        if (i > 0)
            mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "api");
        target_done = i + 1;
        assert_true(pump_until(t, cond_done));
    }
    assert_true(t->deltas[0] >= 13000 && t->deltas[0] <= 16500);
    assert_true(t->deltas[9] >= 6900000 && t->deltas[9] <= 8500000);
    /* Intervals past 2^32 ms are kept as well (50 days). */
    mpj_account_add(t->s, "b", 50ull * 86400 * 1000, 0, 50ull * 86400 * 1000);
    mpj_kind_info info = info_of(t, "b", MPJ_SYNC);
    assert_true(info.next_due_ms - mpu_now_ms() > 49LL * 86400 * 1000);
    t_free(t);
}

static void test_more_and_stop(void **state)
{
    tstate *t = t_new(2, 0);
    t->script[0] = MPJ_MORE;
    t->script[1] = MPJ_STOP;
    t->nscript = 2;
    mpj_account_add(t->s, "a", HOUR_MS, 0, 0);
    target_done = 1;
    assert_true(pump_until(t, cond_done));
    assert_true(t->deltas[0] > 0 && t->deltas[0] <= 1000);
    wait_runs(t, 2);
    assert_string_equal(t->recs[1].reason, "more");
    assert_int_equal(t->next_due[1], 0);
    mpj_kind_info info = info_of(t, "a", MPJ_SYNC);
    assert_int_equal(info.next_due_ms, 0);
    assert_int_equal(info.failures, 0);
    pump_for(t, 300);
    assert_int_equal(atomic_load(&t->runs), 2);
    mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "api");
    wait_runs(t, 3);
    assert_true(info_of(t, "a", MPJ_SYNC).next_due_ms > mpu_now_ms());
    t_free(t);
}

static void test_schedule_in(void **state)
{
    tstate *t = t_new(2, 0);
    mpj_account_add(t->s, "a", HOUR_MS, 0, 100000);
    int64_t due = info_of(t, "a", MPJ_SYNC).next_due_ms;
    assert_int_equal(info_of(t, "a", MPJ_BACKFILL).next_due_ms, 0);
    mpj_schedule_in(t->s, "a", MPJ_SYNC, 200000);
    assert_int_equal(info_of(t, "a", MPJ_SYNC).next_due_ms, due);
    mpj_schedule_in(t->s, "a", MPJ_BACKFILL, 50);
    assert_true(info_of(t, "a", MPJ_BACKFILL).next_due_ms > 0);
    wait_runs(t, 1);
    assert_int_equal(t->recs[0].kind, MPJ_BACKFILL);
    /* Interval 0 and DONE: parked again. */
    assert_int_equal(info_of(t, "a", MPJ_BACKFILL).next_due_ms, 0);
    mpj_schedule_in(t->s, "a", MPJ_SYNC, 50);
    assert_true(info_of(t, "a", MPJ_SYNC).next_due_ms < due);
    wait_runs(t, 2);
    assert_int_equal(t->recs[1].kind, MPJ_SYNC);
    /* A shorter interval applies at once. */
    mpj_account_set_intervals(t->s, "a", 100, 0);
    wait_runs(t, 3);
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_true(st.heap_size >= 1);
    t_free(t);
}

/* ---- accounts ------------------------------------------------------ */

static void test_remove_while_running(void **state)
{
    tstate *t = t_new(2, 0);
    t->gate_first = 1;
    mpj_account_add(t->s, "a", 50, 50, 0);
    assert_true(pump_until(t, cond_started1));
    mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "push");
    mpj_trigger(t->s, "a", MPJ_BACKFILL, NULL, "api");
    mpj_account_remove(t->s, "a");
    mpj_kind_info info;
    assert_int_equal(mpj_account_info(t->s, "a", MPJ_SYNC, &info), -1);
    assert_int_equal(mpj_trigger(t->s, "a", MPJ_SYNC, NULL, "api"), -1);
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.accounts, 0);
    atomic_store(&t->gate_open, 1);
    target_done = 1;
    assert_true(pump_until(t, cond_done));
    pump_for(t, 300);
    assert_int_equal(atomic_load(&t->runs), 1);
    assert_int_equal(t->ndone, 1);
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.heap_size, 0);
    /* Added again: a fresh start. */
    mpj_account_add(t->s, "a", HOUR_MS, 0, 0);
    wait_runs(t, 2);
    t_free(t);
}

static void test_many_accounts(void **state)
{
    tstate *t = t_new(2, 0);
    char name[16];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "u%03d", i);
        mpj_account_add(t->s, name, HOUR_MS, 0, HOUR_MS + (uint32_t)i);
    }
    for (int i = 0; i < 300; i += 2) {
        snprintf(name, sizeof name, "u%03d", i);
        mpj_account_remove(t->s, name);
    }
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.accounts, 150);
    assert_int_equal(st.heap_size, 150);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "u%03d", i);
        mpj_kind_info info;
        assert_int_equal(mpj_account_info(t->s, name, MPJ_SYNC, &info), i % 2 ? 0 : -1);
    }
    t_free(t);
}

/* ---- generic work -------------------------------------------------- */

typedef struct work_item {
    pthread_t main_thread;
    pthread_t work_thread;
    atomic_int worked;
    int done_ok;
    int *ndone;
} work_item;

static void w_work(void *arg)
{
    work_item *w = arg;
    w->work_thread = pthread_self();
    usleep(5000);
    atomic_store(&w->worked, 1);
}

static void w_done(void *arg)
{
    work_item *w = arg;
    w->done_ok = atomic_load(&w->worked) &&
                 pthread_equal(pthread_self(), w->main_thread) &&
                 !pthread_equal(w->work_thread, w->main_thread);
    (*w->ndone)++;
}

static int submit_ndone;
static int cond_submits(tstate *t)
{
    return submit_ndone >= 10;
}

static void test_submit(void **state)
{
    tstate *t = t_new(3, 0);
    work_item items[10];
    submit_ndone = 0;
    for (int i = 0; i < 10; i++) {
        memset(&items[i], 0, sizeof items[i]);
        items[i].main_thread = pthread_self();
        items[i].ndone = &submit_ndone;
        mpj_submit(t->s, i % 2, w_work, w_done, &items[i]);
    }
    assert_true(pump_until(t, cond_submits));
    for (int i = 0; i < 10; i++)
        assert_int_equal(items[i].done_ok, 1);
    t_free(t);
}

/* ---- worker caps ----------------------------------------------------- */

typedef struct cap_state {
    atomic_int conc_a, max_a;       /* work of account "a" (any class)      */
    atomic_int conc_fetch, max_fetch; /* FETCH work of any account          */
    atomic_int release;             /* fetches sleep until this is set      */
    int ndone;
} cap_state;

static cap_state cstate;

typedef struct cap_work {
    int account_a;
    int fetch;
} cap_work;

static void cap_work_fn(void *arg)
{
    cap_work *w = arg;
    if (w->account_a)
        atomic_max(&cstate.max_a, atomic_fetch_add(&cstate.conc_a, 1) + 1);
    if (w->fetch)
        atomic_max(&cstate.max_fetch, atomic_fetch_add(&cstate.conc_fetch, 1) + 1);
    while (!atomic_load(&cstate.release))
        usleep(1000);
    if (w->account_a)
        atomic_fetch_sub(&cstate.conc_a, 1);
    if (w->fetch)
        atomic_fetch_sub(&cstate.conc_fetch, 1);
}

static void cap_done_fn(void *arg)
{
    (void)arg;
    cstate.ndone++;
}

static int cap_n;
static int cond_cap_done(tstate *t)
{
    return cstate.ndone >= cap_n;
}

static int cond_sync_d_started(tstate *t)
{
    return info_of(t, "d", MPJ_SYNC).running || info_of(t, "d", MPJ_SYNC).runs > 0;
}

/* Four workers: one account may hold 3 (workers - 1), one kind other than
 * SYNC 3, and all non-sync work together 3; so while fetches of a slow
 * account hang, a sync of another account still starts at once. */
static void test_worker_caps(void **state)
{
    tstate *t = t_new(4, 0);
    memset(&cstate, 0, sizeof cstate);
    mpj_account_add(t->s, "a", HOUR_MS, 0, HOUR_MS);
    mpj_account_add(t->s, "b", HOUR_MS, 0, HOUR_MS);
    mpj_account_add(t->s, "d", HOUR_MS, 0, HOUR_MS);
    assert_int_equal(mpj_account_submit(t->s, "nobody", MPJ_CLASS_FETCH, 1, cap_work_fn,
                                        cap_done_fn, NULL),
                     -1);
    assert_int_equal(mpj_account_submit(t->s, "a", MPJ_CLASS_SYNC, 1, cap_work_fn,
                                        cap_done_fn, NULL),
                     -1);
    cap_work wa[6], wb[2];
    for (int i = 0; i < 6; i++) {
        wa[i] = (cap_work){1, i < 4};
        assert_int_equal(mpj_account_submit(t->s, "a", i < 4 ? MPJ_CLASS_FETCH
                                                             : MPJ_CLASS_WARM,
                                            1, cap_work_fn, cap_done_fn, &wa[i]),
                         0);
    }
    for (int i = 0; i < 2; i++) {
        wb[i] = (cap_work){0, 1};
        assert_int_equal(mpj_account_submit(t->s, "b", MPJ_CLASS_FETCH, 1, cap_work_fn,
                                            cap_done_fn, &wb[i]),
                         0);
    }
    pump_for(t, 100);
    /* Three workers hang in non-sync work, the rest waits without one; a
     * sync of "d" gets the last worker. */
    mpj_stats st;
    mpj_stats_get(t->s, &st);
    assert_int_equal(st.busy, 3);
    assert_int_equal(st.queued_high, 5);
    mpj_trigger(t->s, "d", MPJ_SYNC, NULL, "api");
    assert_true(pump_until(t, cond_sync_d_started));
    atomic_store(&cstate.release, 1);
    cap_n = 8;
    assert_true(pump_until(t, cond_cap_done));
    wait_runs(t, 1);
    assert_int_equal(atomic_load(&cstate.max_a), 3);
    assert_int_equal(atomic_load(&cstate.max_fetch), 3);
    t_free(t);
}

/* Two workers: one per account, one per kind, one for all non-sync work. */
static void test_worker_caps_two(void **state)
{
    tstate *t = t_new(2, 0);
    memset(&cstate, 0, sizeof cstate);
    mpj_account_add(t->s, "a", HOUR_MS, 0, HOUR_MS);
    mpj_account_add(t->s, "d", HOUR_MS, 0, HOUR_MS);
    cap_work wa[3];
    for (int i = 0; i < 3; i++) {
        wa[i] = (cap_work){1, 1};
        mpj_account_submit(t->s, "a", MPJ_CLASS_FETCH, 1, cap_work_fn, cap_done_fn, &wa[i]);
    }
    pump_for(t, 50);
    mpj_trigger(t->s, "d", MPJ_SYNC, NULL, "api");
    assert_true(pump_until(t, cond_sync_d_started));
    wait_runs(t, 1);
    assert_int_equal(atomic_load(&cstate.max_a), 1);
    atomic_store(&cstate.release, 1);
    cap_n = 3;
    assert_true(pump_until(t, cond_cap_done));
    assert_int_equal(atomic_load(&cstate.max_fetch), 1);
    t_free(t);
}

typedef struct periodic_state {
    atomic_int conc, max_conc, runs;
} periodic_state;

static periodic_state pstate;

static void p_work(void *arg)
{
    periodic_state *p = arg;
    atomic_max(&p->max_conc, atomic_fetch_add(&p->conc, 1) + 1);
    usleep(60000); /* longer than the interval */
    atomic_fetch_sub(&p->conc, 1);
    atomic_fetch_add(&p->runs, 1);
}

static int cond_periodic(tstate *t)
{
    return atomic_load(&pstate.runs) >= 4;
}

static void test_periodic(void **state)
{
    tstate *t = t_new(3, 0);
    memset(&pstate, 0, sizeof pstate);
    mpj_periodic(t->s, "cleanup", 20, 0, p_work, &pstate);
    assert_true(pump_until(t, cond_periodic));
    assert_int_equal(atomic_load(&pstate.max_conc), 1);
    t_free(t);
}

/* ---- shutdown ------------------------------------------------------ */

static void *open_gate_later(void *arg)
{
    tstate *t = arg;
    usleep(100000);
    atomic_store(&t->gate_open, 1);
    return NULL;
}

static void test_free_while_running(void **state)
{
    tstate *t = t_new(1, 0);
    t->gate_first = 1;
    mpj_account_add(t->s, "a", HOUR_MS, 0, 0);
    mpj_account_add(t->s, "b", HOUR_MS, 0, HOUR_MS);
    mpj_periodic(t->s, "p", 10, 0, p_work, &pstate);
    assert_true(pump_until(t, cond_started1));
    mpj_trigger(t->s, "b", MPJ_SYNC, NULL, "api");
    work_item w = {.main_thread = pthread_self(), .ndone = &submit_ndone};
    submit_ndone = 0;
    mpj_submit(t->s, 0, w_work, w_done, &w);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, open_gate_later, t), 0);
    mpj_free(&t->s);
    pthread_join(th, NULL);
    /* The running job finished and reported; queued b was dropped; the
     * submitted work still ran and got its done. */
    assert_int_equal(atomic_load(&t->runs), 1);
    assert_int_equal(t->ndone, 1);
    assert_string_equal(t->recs[0].account, "a");
    assert_int_equal(submit_ndone, 1);
    assert_int_equal(w.done_ok, 1);
    mpj_free(&t->s);
    t_free(t);
}

/* ---- heap ---------------------------------------------------------- */

static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

static void heap_check(const mpj_heap *h)
{
    for (size_t i = 0; i < h->len; i++) {
        assert_int_equal(h->nodes[i]->index, i);
        if (i > 0) {
            const mpj_heap_node *p = h->nodes[(i - 1) / 2], *c = h->nodes[i];
            assert_true(p->due_ms < c->due_ms ||
                        (p->due_ms == c->due_ms && p->seq < c->seq));
        }
    }
}

static void test_heap_order(void **state)
{
    enum { N = 500 };
    mpj_heap h;
    mpj_heap_init(&h);
    mpj_heap_node *nodes = mpu_calloc(N, sizeof *nodes);
    for (int i = 0; i < N; i++) {
        mpj_heap_node_init(&nodes[i]);
        mpj_heap_set(&h, &nodes[i], rnd() % 100);
    }
    heap_check(&h);
    assert_int_equal(mpj_heap_size(&h), N);
    int64_t last = -1;
    uint64_t last_seq = 0;
    for (int i = 0; i < N; i++) {
        mpj_heap_node *n = mpj_heap_pop(&h);
        assert_non_null(n);
        assert_false(mpj_heap_contains(n));
        assert_true(n->due_ms >= last);
        if (n->due_ms == last)
            assert_true(n->seq > last_seq); /* FIFO among equals */
        last = n->due_ms;
        last_seq = n->seq;
    }
    assert_null(mpj_heap_pop(&h));
    mpj_heap_clear(&h);
    free(nodes);
}

static void test_heap_random_ops(void **state)
{
    enum { N = 64 };
    mpj_heap h;
    mpj_heap_init(&h);
    mpj_heap_node nodes[N];
    int64_t ref[N]; /* due per node, -1 = not in heap */
    for (int i = 0; i < N; i++) {
        mpj_heap_node_init(&nodes[i]);
        ref[i] = -1;
    }
    for (int op = 0; op < 1000; op++) {
        int i = (int)(rnd() % N);
        switch (rnd() % 4) {
        case 0: /* push or update */
        case 1:
            ref[i] = rnd() % 1000;
            mpj_heap_set(&h, &nodes[i], ref[i]);
            break;
        case 2:
            mpj_heap_remove(&h, &nodes[i]);
            ref[i] = -1;
            break;
        case 3: {
            int64_t min = -1;
            size_t count = 0;
            for (int j = 0; j < N; j++)
                if (ref[j] >= 0) {
                    count++;
                    if (min < 0 || ref[j] < min)
                        min = ref[j];
                }
            mpj_heap_node *n = mpj_heap_pop(&h);
            if (!count) {
                assert_null(n);
                break;
            }
            assert_non_null(n);
            assert_int_equal(n->due_ms, min);
            ref[n - nodes] = -1;
            break;
        }
        }
        heap_check(&h);
        size_t count = 0;
        for (int j = 0; j < N; j++) {
            count += ref[j] >= 0;
            assert_int_equal(mpj_heap_contains(&nodes[j]), ref[j] >= 0);
            if (ref[j] >= 0)
                assert_int_equal(nodes[j].due_ms, ref[j]);
        }
        assert_int_equal(mpj_heap_size(&h), count);
    }
    mpj_heap_clear(&h);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_order),
        cmocka_unit_test(test_heap_random_ops),
        cmocka_unit_test(test_triggers_coalesce),
        cmocka_unit_test(test_trigger_merge_queued),
        cmocka_unit_test(test_sync_folder_sets),
        cmocka_unit_test(test_sync_folder_rerun),
        cmocka_unit_test(test_sync_folder_keeps_sweep),
        cmocka_unit_test(test_accounts_run_concurrently),
        cmocka_unit_test(test_sync_priority),
        cmocka_unit_test(test_backfill_cap),
        cmocka_unit_test(test_account_exclusive),
        cmocka_unit_test(test_alone_waits_for_sync),
        cmocka_unit_test(test_alone_holds_kinds),
        cmocka_unit_test(test_alone_keeps_schedule),
        cmocka_unit_test(test_alone_cancelled),
        cmocka_unit_test(test_failure_backoff),
        cmocka_unit_test(test_backoff_64bit),
        cmocka_unit_test(test_more_and_stop),
        cmocka_unit_test(test_schedule_in),
        cmocka_unit_test(test_remove_while_running),
        cmocka_unit_test(test_many_accounts),
        cmocka_unit_test(test_submit),
        cmocka_unit_test(test_worker_caps),
        cmocka_unit_test(test_worker_caps_two),
        cmocka_unit_test(test_periodic),
        cmocka_unit_test(test_free_while_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

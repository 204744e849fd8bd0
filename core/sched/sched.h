/*
 * Scheduler and worker pool.
 *
 * The loop thread owns the scheduler: a due-time min-heap of per-account
 * jobs (never a scan of all accounts per tick) and one libevent timer set to
 * the earliest due time. Jobs run on a bounded pool of worker threads; their
 * completion comes back to the loop thread.
 *
 * Per account there are two job kinds, SYNC (new mail: delta sync, first
 * bootstrap) and BACKFILL (older history). At most ONE job of an account
 * runs at a time, whatever its kind. A trigger for a job that is queued is
 * merged into it; a trigger for a job that is running sets a single re-run
 * flag, so any number of triggers during a run give exactly one more run.
 * Work that must run alone for the account (an admin's preflight,
 * mpj_account_alone) takes a turn between its jobs without changing
 * their schedule.
 * SYNC jobs go to the high-priority queue, BACKFILL to the low one; workers
 * always take high first.
 *
 * Worker caps, so that one slow provider or one kind of work cannot pin
 * every worker (see mpj_config): every job belongs to a class (its kind,
 * or fetch, warming, task) and, for account work, to its account. At most
 * account_max_workers jobs of one account and kind_max_workers jobs of one
 * class other than SYNC run at once, and all classes other than SYNC
 * together hold at most max(1, workers - 1) workers: with two or more
 * workers one is always left for new-mail syncs. A job held back by a cap
 * waits in its queue; others pass it.
 *
 * After a run the job is rescheduled at its interval plus jitter (up to
 * +-10 %), or, on failure, after capped exponential backoff (base 15 s,
 * doubling, capped at max_backoff_ms, with jitter) or the driver's
 * retry_after_ms when given. MPJ_STOP parks the kind until the next
 * trigger.
 *
 * Every interval, delay and backoff is in milliseconds, computed in 64 bits
 * and clamped to MPJ_MAX_DELAY_MS (a year), far above any accepted setting.
 *
 * All mpj_* functions are loop-thread only, except mpj_trigger_async.
 */
#ifndef MP_SCHED_SCHED_H
#define MP_SCHED_SCHED_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct mpj_sched mpj_sched;

#define MPJ_MAX_DELAY_MS (366LL * 24 * 3600 * 1000)

typedef enum mpj_kind {
    MPJ_SYNC = 0,
    MPJ_BACKFILL = 1,
    MPJ_KINDS = 2,
} mpj_kind;

/* What a run asks for next. */
typedef enum mpj_outcome {
    MPJ_DONE = 0,    /* success: next run at the interval                   */
    MPJ_MORE = 1,    /* success, more work waiting: run again soon (1 s)    */
    MPJ_FAILED = 2,  /* failure: back off (or retry_after_ms)               */
    MPJ_STOP = 3,    /* do not run this kind again until triggered          */
} mpj_outcome;

/* What a job is, for the worker caps. SYNC and BACKFILL are the account
 * kinds above; the others come through mpj_account_submit and mpj_submit. */
typedef enum mpj_class {
    MPJ_CLASS_SYNC = 0,     /* = MPJ_SYNC                                   */
    MPJ_CLASS_BACKFILL = 1, /* = MPJ_BACKFILL                               */
    MPJ_CLASS_FETCH = 2,    /* a body fetched on demand                     */
    MPJ_CLASS_WARM = 3,     /* cache warming                                */
    MPJ_CLASS_TASK = 4,     /* periodic and generic work (mpj_submit)       */
    MPJ_CLASSES = 5,
} mpj_class;

/* A SYNC run restricted to more folders than this covers all of them. */
#define MPJ_MAX_SYNC_FOLDERS 8

typedef struct mpj_job {
    char *account;
    mpj_kind kind;
    char *folder;    /* BACKFILL on demand: that folder; else NULL          */
    /* SYNC: the folders this run is for (a push or sync_now naming one),
     * n_folders 0: every folder. Triggers merge as a union; a trigger for
     * all folders (the timer, a push without folder) absorbs the set, and
     * a union beyond MPJ_MAX_SYNC_FOLDERS becomes all folders. A run for
     * some folders that took the place of a scheduled one leaves that
     * all-folder run due at its time (pushes never postpone the sweep). */
    char **folders;
    unsigned n_folders;
    char *reason;    /* why it runs: "schedule", "push", "api", ...         */
    unsigned triggers; /* how many triggers were merged into this run      */
} mpj_job;

typedef struct mpj_result {
    mpj_outcome outcome;
    uint32_t retry_after_ms;
} mpj_result;

/* Runs on a worker thread. */
typedef void (*mpj_run_fn)(const mpj_job *job, mpj_result *result, void *arg);
/* Runs on the loop thread after every job (for status/metrics). */
typedef void (*mpj_done_fn)(const mpj_job *job, const mpj_result *result,
                            void *arg);

typedef struct mpj_config {
    unsigned workers;          /* >= 1                                      */
    uint64_t max_backoff_ms;   /* default 1800000; capped at MPJ_MAX_DELAY_MS */
    mpj_run_fn run;
    mpj_done_fn done;          /* may be NULL                               */
    void *arg;
    unsigned account_max_workers; /* 0: max(1, workers - 1)                 */
    unsigned kind_max_workers; /* each class but SYNC; 0: max(1, workers - 1) */
} mpj_config;

mpj_sched *mpj_new(struct event_base *base, const mpj_config *config);
/* Stops accepting work, waits for running jobs, joins the workers. */
void mpj_free(mpj_sched **sched);

/* Add an account with its SYNC and BACKFILL intervals. The first SYNC is
 * due after `first_delay_ms`; BACKFILL is parked until triggered or until
 * a SYNC run reports backfill work (mpj_trigger). Adding an existing
 * account updates its intervals. */
void mpj_account_add(mpj_sched *s, const char *account, uint64_t sync_interval_ms,
                     uint64_t backfill_interval_ms, uint64_t first_delay_ms);
/* Remove: queued jobs are dropped; a running job finishes and is not
 * rescheduled. */
void mpj_account_remove(mpj_sched *s, const char *account);
void mpj_account_set_intervals(mpj_sched *s, const char *account,
                               uint64_t sync_interval_ms,
                               uint64_t backfill_interval_ms);

/* Make a kind due now (coalesced as described above). folder NULL: all
 * folders. BACKFILL on demand: merged runs for different folders become
 * "all folders" (job.folder NULL). SYNC: the run's folder set (job.folders)
 * as described at mpj_job. Returns -1 for an unknown account. */
int mpj_trigger(mpj_sched *s, const char *account, mpj_kind kind,
                const char *folder, const char *reason);
/* Same, from any thread (handed to the loop thread). */
void mpj_trigger_async(mpj_sched *s, const char *account, mpj_kind kind,
                       const char *folder, const char *reason);
/* Make a kind due after delay_ms unless it is already due sooner. */
void mpj_schedule_in(mpj_sched *s, const char *account, mpj_kind kind,
                     uint64_t delay_ms);

typedef struct mpj_kind_info {
    int running;
    int rerun;             /* a trigger arrived during the run              */
    int64_t next_due_ms;   /* wall clock; 0 when parked                     */
    unsigned failures;     /* consecutive                                   */
    uint64_t runs;
    uint64_t triggers;
    int64_t last_run_ms;
    int64_t last_duration_ms;
} mpj_kind_info;

int mpj_account_info(mpj_sched *s, const char *account, mpj_kind kind,
                     mpj_kind_info *info_r); /* -1 unknown */

/* Generic work on the pool (class TASK, no account). `work` runs on a
 * worker thread, `done` on the loop thread after it. high != 0 puts it in
 * the high-priority queue. */
typedef void (*mpj_work_fn)(void *arg);
void mpj_submit(mpj_sched *s, int high, mpj_work_fn work, mpj_work_fn done,
                void *arg);
/* Work for one account: counted against the account's worker cap and the
 * class's (cls: FETCH, WARM or TASK), in the high queue when high != 0.
 * `work` runs on a worker thread, `done` on the loop thread after it; an
 * account removed meanwhile does not stop it (work checks what it needs).
 * Returns -1 (nothing called) for an unknown account or once mpj_free has
 * begun. The caller decides how many of one account it submits at once. */
int mpj_account_submit(mpj_sched *s, const char *account, mpj_class cls, int high,
                       mpj_work_fn work, mpj_work_fn done, void *arg);

/* Work for one account that runs alone: it waits until neither kind of
 * the account is dispatched, and while it is queued or running neither
 * kind is dispatched (a due kind stays due and runs right after it). The
 * kinds' schedules are left as they are: a kind parked (MPJ_STOP) stays
 * parked, a kind in back-off keeps its due time and failure count. It
 * takes the place of a BACKFILL no worker has picked up yet, as a due
 * SYNC does. Class TASK, high queue, counted against the account's cap.
 * At most one per account at a time. `work` runs on a worker thread;
 * `done` runs on the loop thread exactly once: after work (ran 1), or
 * without work when the account is removed or the scheduler is freed
 * before work started (ran 0), possibly from within mpj_account_remove or
 * mpj_free. Returns -1 (nothing called) for an unknown account, one
 * already queued or running, or once mpj_free has begun. */
typedef void (*mpj_alone_done_fn)(void *arg, int ran);
int mpj_account_alone(mpj_sched *s, const char *account, mpj_work_fn work,
                      mpj_alone_done_fn done, void *arg);

/* A periodic global task run on the pool every interval_ms (first run
 * after first_delay_ms); never overlapping with itself. */
void mpj_periodic(mpj_sched *s, const char *name, uint64_t interval_ms,
                  uint64_t first_delay_ms, mpj_work_fn work, void *arg);

typedef struct mpj_stats {
    unsigned workers, busy;
    size_t queued_high, queued_low, heap_size, accounts;
    uint64_t jobs_run, jobs_failed, triggers_coalesced;
} mpj_stats;
void mpj_stats_get(mpj_sched *s, mpj_stats *stats_r);

#endif

/* Per-account job scheduling; see sched.h for the semantics. */
#include "sched/internal.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "util/util.h"

#define BACKOFF_BASE_MS 15000
#define MORE_DELAY_MS 1000
#define DEFAULT_MAX_BACKOFF_MS 1800000u
/* The timer never sleeps longer than this, so a jump of the test clock
 * offset (mpu_clock_set_offset_ms) is noticed soon. */
#define MAX_TIMER_SLEEP_MS 1000

/* Where a kind is in its life cycle. Only one kind per account may be
 * DISPATCHED (queued in the pool or running). */
enum kind_phase {
    K_PARKED = 0, /* no next run until triggered                          */
    K_SCHEDULED,  /* in the heap, due at next_due                         */
    K_WAITING,    /* due, waiting for the account's other job             */
    K_DISPATCHED, /* handed to the pool (queued or running)               */
};

struct account;

/* Where an account's mpj_account_alone work is. */
enum alone_phase {
    ALONE_NONE = 0,
    ALONE_WAITING,    /* asked for, waiting for the account's kinds      */
    ALONE_DISPATCHED, /* handed to the pool (queued or running)          */
};

struct kstate {
    mpj_due_entry due;
    mpj_pool_item item;
    struct account *acct;
    enum kind_phase phase;
    /* The next (or current) run; its strings are ours. While DISPATCHED
     * only the pool lock (mpj_pool_update_queued) may change it. */
    mpj_job job;
    mpj_result result;
    const char *due_reason; /* static string used when the timer fires */
    int64_t next_due;
    int64_t hint_due; /* mpj_schedule_in while dispatched; 0 = none       */
    /* SYNC: when the all-folder run was due that a run for some folders
     * (a push) took the place of; it stays due then, so frequent pushes
     * to one folder never postpone the sweep of the others. 0 = none. */
    int64_t sweep_due;
    int64_t interval;
    /* Triggers that arrived while running, for the one re-run. */
    int rerun;
    mpj_job rerun_job;
    unsigned failures;
    uint64_t runs, triggers;
    int64_t last_run, last_duration;
    /* Written by the worker, read in the completion. */
    int64_t start_wall, start_mono, end_mono;
};

struct account {
    mpj_sched *sched;
    char *id;
    int removed;
    unsigned in_done; /* inside the done callback: do not free */
    mpj_pool_group group; /* worker cap of everything this account runs */
    unsigned submitted;   /* mpj_account_submit work in flight          */
    struct kstate k[MPJ_KINDS];
    struct {
        mpj_pool_item item;
        enum alone_phase phase;
        mpj_work_fn work;
        mpj_alone_done_fn done;
        void *arg;
    } alone; /* mpj_account_alone */
};

struct mpj_async_trigger {
    mpj_async_trigger *next;
    char *account;
    mpj_kind kind;
    char *folder;
    char *reason;
};

/* xorshift64*: jitter needs spread, not secrecy. */
static uint64_t rng_next(mpj_sched *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 0x2545F4914F6CDD1DULL;
}

/* delay +- up to 10 %. */
static int64_t jitter(mpj_sched *s, int64_t delay)
{
    int64_t span = delay / 10;
    if (span <= 0)
        return delay;
    return delay - span + (int64_t)(rng_next(s) % (uint64_t)(2 * span + 1));
}

/* Every delay the callers hand in, as a signed 64-bit count of ms. */
static int64_t clamp_ms(uint64_t ms)
{
    return ms > (uint64_t)MPJ_MAX_DELAY_MS ? MPJ_MAX_DELAY_MS : (int64_t)ms;
}

static int64_t backoff_ms(mpj_sched *s, unsigned failures)
{
    int64_t cap = clamp_ms(s->cfg.max_backoff_ms);
    int64_t delay = BACKOFF_BASE_MS;
    for (unsigned i = 1; i < failures && delay < cap; i++)
        delay *= 2;
    if (delay > cap)
        delay = cap;
    return jitter(s, delay);
}

void mpj_sched_rearm(mpj_sched *s)
{
    if (s->closing)
        return;
    mpj_heap_node *top = mpj_heap_peek(&s->heap);
    if (!top) {
        evtimer_del(s->timer);
        return;
    }
    int64_t delay = top->due_ms - mpu_now_ms();
    if (delay < 0)
        delay = 0;
    if (delay > MAX_TIMER_SLEEP_MS)
        delay = MAX_TIMER_SLEEP_MS;
    struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
    evtimer_add(s->timer, &tv);
}

static void folders_clear(mpj_job *job)
{
    for (unsigned i = 0; i < job->n_folders; i++)
        free(job->folders[i]);
    mpu_freep(&job->folders);
    job->n_folders = 0;
}

static void job_clear(mpj_job *job)
{
    mpu_freep(&job->folder);
    mpu_freep(&job->reason);
    folders_clear(job);
    job->triggers = 0;
}

/* SYNC: add `folder` to the run's set; NULL, or one folder beyond the
 * bound, makes it a run for every folder (the empty set). */
static void folders_add(mpj_job *job, const char *folder)
{
    if (folder == NULL || job->n_folders >= MPJ_MAX_SYNC_FOLDERS) {
        folders_clear(job);
        return;
    }
    for (unsigned i = 0; i < job->n_folders; i++)
        if (strcmp(job->folders[i], folder) == 0)
            return;
    if (job->folders == NULL)
        job->folders = mpu_calloc(MPJ_MAX_SYNC_FOLDERS, sizeof *job->folders);
    job->folders[job->n_folders++] = mpu_strdup(folder);
}

/* A fresh run. folder NULL = all folders. */
static void job_start(mpj_job *job, const char *folder, const char *reason,
                      unsigned triggers)
{
    job_clear(job);
    if (job->kind == MPJ_SYNC)
        folders_add(job, folder);
    else
        job->folder = mpu_strdup(folder);
    job->reason = mpu_strdup(reason);
    job->triggers = triggers;
}

/* One more trigger folded into a run: BACKFILL runs for different folders
 * widen to all folders; SYNC runs take the union of their folder sets,
 * where "all folders" absorbs every set. A trigger's reason beats the
 * timer's. */
static void job_merge(mpj_job *job, const char *folder, const char *reason)
{
    if (job->kind == MPJ_SYNC) {
        /* The empty set is "all folders" already: nothing to add. */
        if (job->n_folders > 0)
            folders_add(job, folder);
    } else if (job->folder && (!folder || strcmp(job->folder, folder) != 0)) {
        mpu_freep(&job->folder);
    }
    if (job->triggers == 0) {
        free(job->reason);
        job->reason = mpu_strdup(reason);
    }
    job->triggers++;
}

struct merge_ctx {
    const char *folder, *reason;
};

static void merge_queued(mpj_pool_item *item, void *arg)
{
    struct kstate *k = mpj_container_of(item, struct kstate, item);
    struct merge_ctx *ctx = arg;
    job_merge(&k->job, ctx->folder, ctx->reason);
}

/* Start the account's next job unless one is already in the pool. A due
 * SYNC takes the place of a BACKFILL no worker has picked up yet. */
static void account_dispatch(mpj_sched *s, struct account *a)
{
    if (a->removed || s->closing || a->alone.phase == ALONE_DISPATCHED)
        return;
    struct kstate *sync = &a->k[MPJ_SYNC], *backfill = &a->k[MPJ_BACKFILL];
    if (backfill->phase == K_DISPATCHED &&
        (sync->phase == K_WAITING || a->alone.phase == ALONE_WAITING) &&
        mpj_pool_cancel(s->pool, &backfill->item))
        backfill->phase = K_WAITING;
    if (sync->phase == K_DISPATCHED || backfill->phase == K_DISPATCHED)
        return;
    /* Work that runs alone goes before the kinds: someone waits for it,
     * and the kinds keep their schedule (they run right after). */
    if (a->alone.phase == ALONE_WAITING) {
        a->alone.phase = ALONE_DISPATCHED;
        mpj_pool_push(s->pool, &a->alone.item);
        return;
    }
    struct kstate *k = sync->phase == K_WAITING       ? sync
                       : backfill->phase == K_WAITING ? backfill
                                                      : NULL;
    if (!k)
        return;
    k->phase = K_DISPATCHED;
    mpj_pool_push(s->pool, &k->item);
}

/* Due at `due` (or sooner if it already is). */
static void kind_schedule(mpj_sched *s, struct kstate *k, int64_t due, const char *reason)
{
    switch (k->phase) {
    case K_SCHEDULED:
        if (due >= k->next_due)
            return;
        /* fall through */
    case K_PARKED:
        k->phase = K_SCHEDULED;
        k->next_due = due;
        k->due_reason = reason;
        mpj_heap_set(&s->heap, &k->due.node, due);
        break;
    case K_WAITING:
        break;
    case K_DISPATCHED:
        if (!k->hint_due || due < k->hint_due)
            k->hint_due = due;
        break;
    }
}

/* Timer: the kind's scheduled time has come. */
static void kind_due(mpj_sched *s, struct kstate *k)
{
    k->phase = K_WAITING;
    job_start(&k->job, NULL, k->due_reason, 0);
    account_dispatch(s, k->acct);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    mpj_sched *s = arg;
    int64_t now = mpu_now_ms();
    mpj_heap_node *top;
    while ((top = mpj_heap_peek(&s->heap)) && top->due_ms <= now) {
        mpj_heap_pop(&s->heap);
        mpj_due_entry *entry = mpj_container_of(top, mpj_due_entry, node);
        if (entry->periodic)
            mpj_tasks_due(s, entry);
        else
            kind_due(s, mpj_container_of(entry, struct kstate, due));
    }
    mpj_sched_rearm(s);
}

static void account_free(struct account *a)
{
    for (int i = 0; i < MPJ_KINDS; i++) {
        job_clear(&a->k[i].job);
        job_clear(&a->k[i].rerun_job);
    }
    free(a->id);
    free(a);
}

static void account_free_cb(void *value)
{
    account_free(value);
}

/* A removed account goes away once nothing of it runs any more. */
static void account_maybe_drop(mpj_sched *s, struct account *a)
{
    if (!a->removed || a->in_done || a->submitted || a->k[MPJ_SYNC].phase == K_DISPATCHED ||
        a->k[MPJ_BACKFILL].phase == K_DISPATCHED || a->alone.phase != ALONE_NONE)
        return;
    mpj_table_del(&s->accounts, a->id);
    account_free(a);
}

/* Next run after a completed one. The kind is PARKED on entry. */
static void kind_reschedule(mpj_sched *s, struct kstate *k, const mpj_result *res,
                            int64_t now, int restricted)
{
    int64_t due = 0;
    const char *reason = "schedule";
    if (!restricted)
        k->sweep_due = 0;
    switch (res->outcome) {
    case MPJ_DONE:
        k->failures = 0;
        if (restricted && k->sweep_due)
            due = k->sweep_due > now ? k->sweep_due : now;
        else if (k->interval)
            due = now + jitter(s, k->interval);
        break;
    case MPJ_MORE:
        k->failures = 0;
        due = now + MORE_DELAY_MS;
        reason = "more";
        break;
    case MPJ_STOP:
        break;
    case MPJ_FAILED:
    default:
        k->failures++;
        due = now + (res->retry_after_ms ? (int64_t)res->retry_after_ms
                                         : backoff_ms(s, k->failures));
        reason = "retry";
        break;
    }
    if (k->rerun) {
        /* Triggers during the run: exactly one more run, right away. */
        mpj_job tmp = k->job;
        k->job = k->rerun_job;
        k->rerun_job = tmp;
        k->rerun = 0;
        k->hint_due = 0;
        k->phase = K_WAITING;
        k->next_due = now;
        return;
    }
    if (k->hint_due && (!due || k->hint_due < due)) {
        due = k->hint_due;
        reason = "schedule";
    }
    k->hint_due = 0;
    if (due)
        kind_schedule(s, k, due, reason);
}

static void kind_work(mpj_pool_item *item)
{
    struct kstate *k = mpj_container_of(item, struct kstate, item);
    mpj_sched *s = k->acct->sched;
    k->start_wall = mpu_now_ms();
    k->start_mono = mpu_mono_ms();
    k->result.outcome = MPJ_DONE;
    k->result.retry_after_ms = 0;
    s->cfg.run(&k->job, &k->result, s->cfg.arg);
    k->end_mono = mpu_mono_ms();
}

static void kind_complete(mpj_pool_item *item)
{
    struct kstate *k = mpj_container_of(item, struct kstate, item);
    struct account *a = k->acct;
    mpj_sched *s = a->sched;
    int64_t now = mpu_now_ms();

    /* The finished job keeps its strings until done returned; the kind
     * starts over with an empty one so done may trigger it again. */
    mpj_job fin = k->job;
    mpj_result res = k->result;
    k->job.folder = k->job.reason = NULL;
    k->job.folders = NULL;
    k->job.n_folders = 0;
    k->job.triggers = 0;
    k->phase = K_PARKED;
    k->next_due = 0;
    k->runs++;
    k->last_run = k->start_wall;
    k->last_duration = k->end_mono - k->start_mono;
    s->jobs_run++;
    if (res.outcome != MPJ_DONE && res.outcome != MPJ_MORE && res.outcome != MPJ_STOP)
        s->jobs_failed++;
    if (a->removed || s->closing) {
        k->rerun = 0;
        k->hint_due = 0;
        job_clear(&k->rerun_job);
    } else {
        kind_reschedule(s, k, &res, now, fin.kind == MPJ_SYNC && fin.n_folders > 0);
    }

    a->in_done++;
    if (s->cfg.done)
        s->cfg.done(&fin, &res, s->cfg.arg);
    a->in_done--;
    job_clear(&fin);

    if (a->removed)
        account_maybe_drop(s, a);
    else
        account_dispatch(s, a);
    mpj_sched_rearm(s);
}

static void alone_work(mpj_pool_item *item)
{
    struct account *a = mpj_container_of(item, struct account, alone.item);
    a->alone.work(a->alone.arg);
}

/* The alone work's done, once: ran 0 when it never started. Its slot is
 * free again before done is called, so done may ask for the next. */
static void alone_finish(struct account *a, int ran)
{
    mpj_alone_done_fn done = a->alone.done;
    void *arg = a->alone.arg;
    a->alone.phase = ALONE_NONE;
    a->alone.work = NULL;
    a->alone.done = NULL;
    a->alone.arg = NULL;
    a->in_done++;
    done(arg, ran);
    a->in_done--;
}

/* Drop alone work that no worker has started (removal, shutdown). */
static void alone_cancel(mpj_sched *s, struct account *a)
{
    if (a->alone.phase == ALONE_WAITING ||
        (a->alone.phase == ALONE_DISPATCHED && mpj_pool_cancel(s->pool, &a->alone.item)))
        alone_finish(a, 0);
}

static void alone_complete(mpj_pool_item *item)
{
    struct account *a = mpj_container_of(item, struct account, alone.item);
    mpj_sched *s = a->sched;
    alone_finish(a, 1);
    if (a->removed)
        account_maybe_drop(s, a);
    else
        account_dispatch(s, a);
    mpj_sched_rearm(s);
}

static struct account *account_new(mpj_sched *s, const char *id)
{
    struct account *a = mpu_calloc(1, sizeof *a);
    a->sched = s;
    a->id = mpu_strdup(id);
    for (int i = 0; i < MPJ_KINDS; i++) {
        struct kstate *k = &a->k[i];
        k->acct = a;
        k->phase = K_PARKED;
        k->job.account = a->id;
        k->job.kind = (mpj_kind)i;
        k->rerun_job.account = a->id;
        k->rerun_job.kind = (mpj_kind)i;
        mpj_heap_node_init(&k->due.node);
        k->due.periodic = 0;
        mpj_pool_item_init(&k->item, kind_work, kind_complete, i == MPJ_SYNC);
        k->item.cls = (unsigned)i; /* MPJ_CLASS_SYNC, MPJ_CLASS_BACKFILL */
        k->item.group = &a->group;
    }
    mpj_pool_item_init(&a->alone.item, alone_work, alone_complete, 1);
    a->alone.item.cls = MPJ_CLASS_TASK;
    a->alone.item.group = &a->group;
    return a;
}

static struct account *account_get(mpj_sched *s, const char *id)
{
    struct account *a = id ? mpj_table_get(&s->accounts, id) : NULL;
    return a && !a->removed ? a : NULL;
}

static void async_cb(evutil_socket_t fd, short what, void *arg)
{
    mpj_sched *s = arg;
    pthread_mutex_lock(&s->async_lock);
    mpj_async_trigger *t = s->async_head;
    s->async_head = s->async_tail = NULL;
    pthread_mutex_unlock(&s->async_lock);
    while (t) {
        mpj_async_trigger *next = t->next;
        (void)mpj_trigger(s, t->account, t->kind, t->folder, t->reason);
        free(t->account);
        free(t->folder);
        free(t->reason);
        free(t);
        t = next;
    }
}

mpj_sched *mpj_new(struct event_base *base, const mpj_config *config)
{
    if (!base || !config || !config->run)
        return NULL;
    mpj_sched *s = mpu_calloc(1, sizeof *s);
    s->base = base;
    s->cfg = *config;
    if (s->cfg.workers < 1)
        s->cfg.workers = 1;
    if (!s->cfg.max_backoff_ms)
        s->cfg.max_backoff_ms = DEFAULT_MAX_BACKOFF_MS;
    mpj_heap_init(&s->heap);
    mpj_table_init(&s->accounts);
    pthread_mutex_init(&s->async_lock, NULL);
    if (mpu_random(&s->rng, sizeof s->rng) != 0 || !s->rng)
        s->rng = (uint64_t)mpu_mono_ms() | 1;
    unsigned fair = s->cfg.workers > 1 ? s->cfg.workers - 1 : 1;
    if (!s->cfg.account_max_workers)
        s->cfg.account_max_workers = fair;
    if (!s->cfg.kind_max_workers)
        s->cfg.kind_max_workers = fair;
    mpj_pool_caps caps = {.group_cap = s->cfg.account_max_workers};
    for (int c = MPJ_CLASS_BACKFILL; c < MPJ_CLASSES; c++)
        caps.class_cap[c] = s->cfg.kind_max_workers;
    s->timer = evtimer_new(base, timer_cb, s);
    s->async_ev = event_new(base, -1, 0, async_cb, s);
    s->pool = s->timer && s->async_ev ? mpj_pool_new(base, s->cfg.workers, &caps) : NULL;
    if (!s->pool) {
        mpj_free(&s);
        return NULL;
    }
    return s;
}

static void cancel_queued_cb(void *value, void *arg)
{
    struct account *a = value;
    mpj_sched *s = arg;
    for (int i = 0; i < MPJ_KINDS; i++)
        if (a->k[i].phase == K_DISPATCHED && mpj_pool_cancel(s->pool, &a->k[i].item))
            a->k[i].phase = K_PARKED;
    alone_cancel(s, a);
}

void mpj_free(mpj_sched **sp)
{
    mpj_sched *s = *sp;
    if (!s)
        return;
    s->closing = 1;
    if (s->timer)
        evtimer_del(s->timer);
    if (s->pool) {
        /* Account and periodic jobs not started are dropped; generic work
         * already submitted still runs, and every done callback is called
         * (here, on this thread) so their arguments are released. */
        mpj_table_each(&s->accounts, cancel_queued_cb, s);
        mpj_tasks_cancel(s);
        mpj_pool_shutdown(s->pool);
        mpj_pool_free(&s->pool);
    }
    /* Only now: the done callbacks above may still use the caller's
     * pointer to query the scheduler. */
    *sp = NULL;
    if (s->timer)
        event_free(s->timer);
    if (s->async_ev)
        event_free(s->async_ev);
    /* Triggers still in flight are dropped (mpj_trigger ignores them now). */
    async_cb(-1, 0, s);
    mpj_tasks_free(s);
    mpj_table_clear(&s->accounts, account_free_cb);
    mpj_heap_clear(&s->heap);
    pthread_mutex_destroy(&s->async_lock);
    free(s);
}

void mpj_account_add(mpj_sched *s, const char *account, uint64_t sync_interval_ms,
                     uint64_t backfill_interval_ms, uint64_t first_delay_ms)
{
    if (!account || s->closing)
        return;
    struct account *a = mpj_table_get(&s->accounts, account);
    if (a && !a->removed) {
        mpj_account_set_intervals(s, account, sync_interval_ms, backfill_interval_ms);
        return;
    }
    if (!a) {
        a = account_new(s, account);
        mpj_table_put(&s->accounts, account, a);
    }
    a->removed = 0;
    s->live_accounts++;
    a->k[MPJ_SYNC].interval = clamp_ms(sync_interval_ms);
    a->k[MPJ_BACKFILL].interval = clamp_ms(backfill_interval_ms);
    kind_schedule(s, &a->k[MPJ_SYNC], mpu_now_ms() + clamp_ms(first_delay_ms), "first");
    mpj_sched_rearm(s);
}

void mpj_account_remove(mpj_sched *s, const char *account)
{
    struct account *a = account_get(s, account);
    if (!a)
        return;
    a->removed = 1;
    s->live_accounts--;
    for (int i = 0; i < MPJ_KINDS; i++) {
        struct kstate *k = &a->k[i];
        mpj_heap_remove(&s->heap, &k->due.node);
        if (k->phase != K_DISPATCHED || mpj_pool_cancel(s->pool, &k->item)) {
            k->phase = K_PARKED;
            job_clear(&k->job);
        }
        k->next_due = 0;
        k->hint_due = 0;
        k->rerun = 0;
        job_clear(&k->rerun_job);
    }
    alone_cancel(s, a);
    account_maybe_drop(s, a);
    mpj_sched_rearm(s);
}

void mpj_account_set_intervals(mpj_sched *s, const char *account,
                               uint64_t sync_interval_ms, uint64_t backfill_interval_ms)
{
    struct account *a = account_get(s, account);
    if (!a)
        return;
    int64_t intervals[MPJ_KINDS] = {clamp_ms(sync_interval_ms),
                                    clamp_ms(backfill_interval_ms)};
    int64_t now = mpu_now_ms();
    for (int i = 0; i < MPJ_KINDS; i++) {
        struct kstate *k = &a->k[i];
        k->interval = intervals[i];
        /* A shorter interval takes effect now, not after the old one. */
        if (k->phase == K_SCHEDULED && k->interval)
            kind_schedule(s, k, now + jitter(s, k->interval), "schedule");
    }
    mpj_sched_rearm(s);
}

int mpj_trigger(mpj_sched *s, const char *account, mpj_kind kind, const char *folder,
                const char *reason)
{
    struct account *a = account_get(s, account);
    if (!a || kind < 0 || kind >= MPJ_KINDS)
        return -1;
    if (s->closing)
        return 0;
    struct kstate *k = &a->k[kind];
    if (!reason)
        reason = "trigger";
    k->triggers++;
    switch (k->phase) {
    case K_DISPATCHED: {
        struct merge_ctx ctx = {folder, reason};
        if (mpj_pool_update_queued(s->pool, &k->item, merge_queued, &ctx)) {
            s->coalesced++;
        } else if (k->rerun) {
            job_merge(&k->rerun_job, folder, reason);
            s->coalesced++;
        } else {
            job_start(&k->rerun_job, folder, reason, 1);
            k->rerun = 1;
        }
        break;
    }
    case K_WAITING:
        job_merge(&k->job, folder, reason);
        s->coalesced++;
        break;
    case K_PARKED:
    case K_SCHEDULED:
        if (kind == MPJ_SYNC && k->phase == K_SCHEDULED && folder != NULL &&
            (!k->sweep_due || k->next_due < k->sweep_due))
            k->sweep_due = k->next_due;
        mpj_heap_remove(&s->heap, &k->due.node);
        job_start(&k->job, folder, reason, 1);
        k->phase = K_WAITING;
        k->next_due = mpu_now_ms();
        account_dispatch(s, a);
        mpj_sched_rearm(s);
        break;
    }
    return 0;
}

void mpj_trigger_async(mpj_sched *s, const char *account, mpj_kind kind,
                       const char *folder, const char *reason)
{
    if (!account)
        return;
    mpj_async_trigger *t = mpu_calloc(1, sizeof *t);
    t->account = mpu_strdup(account);
    t->kind = kind;
    t->folder = mpu_strdup(folder);
    t->reason = mpu_strdup(reason);
    pthread_mutex_lock(&s->async_lock);
    if (s->async_tail)
        s->async_tail->next = t;
    else
        s->async_head = t;
    s->async_tail = t;
    pthread_mutex_unlock(&s->async_lock);
    event_active(s->async_ev, EV_READ, 0);
}

void mpj_schedule_in(mpj_sched *s, const char *account, mpj_kind kind, uint64_t delay_ms)
{
    struct account *a = account_get(s, account);
    if (!a || kind < 0 || kind >= MPJ_KINDS || s->closing)
        return;
    kind_schedule(s, &a->k[kind], mpu_now_ms() + clamp_ms(delay_ms), "schedule");
    mpj_sched_rearm(s);
}

int mpj_account_alone(mpj_sched *s, const char *account, mpj_work_fn work,
                      mpj_alone_done_fn done, void *arg)
{
    struct account *a = account_get(s, account);
    if (!a || !work || !done || s->closing || a->alone.phase != ALONE_NONE)
        return -1;
    a->alone.work = work;
    a->alone.done = done;
    a->alone.arg = arg;
    a->alone.phase = ALONE_WAITING;
    account_dispatch(s, a);
    return 0;
}

mpj_pool_group *mpj_account_submit_begin(mpj_sched *s, const char *account)
{
    struct account *a = account_get(s, account);
    if (!a || s->closing)
        return NULL;
    a->submitted++;
    return &a->group;
}

void mpj_account_submit_end(mpj_sched *s, const char *account)
{
    struct account *a = mpj_table_get(&s->accounts, account);
    if (!a)
        return;
    a->submitted--;
    if (a->removed)
        account_maybe_drop(s, a);
}

int mpj_account_info(mpj_sched *s, const char *account, mpj_kind kind,
                     mpj_kind_info *info_r)
{
    struct account *a = account_get(s, account);
    if (!a || kind < 0 || kind >= MPJ_KINDS)
        return -1;
    const struct kstate *k = &a->k[kind];
    memset(info_r, 0, sizeof *info_r);
    info_r->running =
        k->phase == K_DISPATCHED && mpj_pool_item_started(s->pool, &k->item);
    info_r->rerun = k->rerun;
    info_r->next_due_ms = k->next_due;
    info_r->failures = k->failures;
    info_r->runs = k->runs;
    info_r->triggers = k->triggers;
    info_r->last_run_ms = k->last_run;
    info_r->last_duration_ms = k->last_duration;
    return 0;
}

void mpj_stats_get(mpj_sched *s, mpj_stats *stats_r)
{
    memset(stats_r, 0, sizeof *stats_r);
    if (s->pool)
        mpj_pool_stats(s->pool, &stats_r->workers, &stats_r->busy, &stats_r->queued_high,
                       &stats_r->queued_low);
    stats_r->heap_size = mpj_heap_size(&s->heap);
    stats_r->accounts = s->live_accounts;
    stats_r->jobs_run = s->jobs_run;
    stats_r->jobs_failed = s->jobs_failed;
    stats_r->triggers_coalesced = s->coalesced;
}

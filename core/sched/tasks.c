/* Generic and periodic work on the scheduler's pool; see sched.h. */
#include "sched/internal.h"

#include <stdlib.h>

#include "util/util.h"

typedef struct submit_item {
    mpj_pool_item item;
    mpj_sched *sched;
    mpj_work_fn work, done;
    void *arg;
    char *account; /* mpj_account_submit: counted in the account until done */
} submit_item;

struct mpj_periodic_task {
    mpj_due_entry due;
    mpj_pool_item item;
    mpj_sched *sched;
    mpj_periodic_task *next;
    char *name;
    int64_t interval_ms;
    mpj_work_fn work;
    void *arg;
};

static void submit_work(mpj_pool_item *item)
{
    submit_item *si = mpj_container_of(item, submit_item, item);
    si->work(si->arg);
}

static void submit_complete(mpj_pool_item *item)
{
    submit_item *si = mpj_container_of(item, submit_item, item);
    if (si->done)
        si->done(si->arg);
    if (si->account != NULL) {
        mpj_account_submit_end(si->sched, si->account);
        free(si->account);
    }
    free(si);
}

void mpj_submit(mpj_sched *s, int high, mpj_work_fn work, mpj_work_fn done, void *arg)
{
    if (s->closing) {
        /* Only reachable from a done callback during mpj_free: the workers
         * are gone, so keep the work/done contract inline. */
        if (work)
            work(arg);
        if (done)
            done(arg);
        return;
    }
    submit_item *si = mpu_calloc(1, sizeof *si);
    si->sched = s;
    si->work = work;
    si->done = done;
    si->arg = arg;
    mpj_pool_item_init(&si->item, submit_work, submit_complete, high != 0);
    si->item.cls = MPJ_CLASS_TASK;
    mpj_pool_push(s->pool, &si->item);
}

int mpj_account_submit(mpj_sched *s, const char *account, mpj_class cls, int high,
                       mpj_work_fn work, mpj_work_fn done, void *arg)
{
    if (!work || cls <= MPJ_CLASS_BACKFILL || cls >= MPJ_CLASSES)
        return -1;
    mpj_pool_group *group = mpj_account_submit_begin(s, account);
    if (!group)
        return -1;
    submit_item *si = mpu_calloc(1, sizeof *si);
    si->sched = s;
    si->work = work;
    si->done = done;
    si->arg = arg;
    si->account = mpu_strdup(account);
    mpj_pool_item_init(&si->item, submit_work, submit_complete, high != 0);
    si->item.cls = (unsigned)cls;
    si->item.group = group;
    mpj_pool_push(s->pool, &si->item);
    return 0;
}

static void periodic_work(mpj_pool_item *item)
{
    mpj_periodic_task *p = mpj_container_of(item, mpj_periodic_task, item);
    p->work(p->arg);
}

/* The next run is timed from the end of this one, which is what keeps a
 * slow task from overlapping itself. */
static void periodic_complete(mpj_pool_item *item)
{
    mpj_periodic_task *p = mpj_container_of(item, mpj_periodic_task, item);
    mpj_sched *s = p->sched;
    if (s->closing)
        return;
    mpj_heap_set(&s->heap, &p->due.node, mpu_now_ms() + p->interval_ms);
    mpj_sched_rearm(s);
}

void mpj_periodic(mpj_sched *s, const char *name, uint64_t interval_ms,
                  uint64_t first_delay_ms, mpj_work_fn work, void *arg)
{
    if (!work || s->closing)
        return;
    mpj_periodic_task *p = mpu_calloc(1, sizeof *p);
    p->sched = s;
    p->name = mpu_strdup(name);
    p->interval_ms = interval_ms == 0                          ? 1
                     : interval_ms > (uint64_t)MPJ_MAX_DELAY_MS ? MPJ_MAX_DELAY_MS
                                                               : (int64_t)interval_ms;
    p->work = work;
    p->arg = arg;
    mpj_heap_node_init(&p->due.node);
    p->due.periodic = 1;
    mpj_pool_item_init(&p->item, periodic_work, periodic_complete, 0);
    p->item.cls = MPJ_CLASS_TASK;
    p->next = s->periodics;
    s->periodics = p;
    if (first_delay_ms > (uint64_t)MPJ_MAX_DELAY_MS)
        first_delay_ms = (uint64_t)MPJ_MAX_DELAY_MS;
    mpj_heap_set(&s->heap, &p->due.node, mpu_now_ms() + (int64_t)first_delay_ms);
    mpj_sched_rearm(s);
}

void mpj_tasks_due(mpj_sched *s, mpj_due_entry *entry)
{
    mpj_periodic_task *p = mpj_container_of(entry, mpj_periodic_task, due);
    mpj_pool_push(s->pool, &p->item);
}

void mpj_tasks_cancel(mpj_sched *s)
{
    for (mpj_periodic_task *p = s->periodics; p; p = p->next)
        mpj_pool_cancel(s->pool, &p->item);
}

void mpj_tasks_free(mpj_sched *s)
{
    while (s->periodics) {
        mpj_periodic_task *p = s->periodics;
        s->periodics = p->next;
        free(p->name);
        free(p);
    }
}

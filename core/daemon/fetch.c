/* One message body from the provider into the cache: shared by the
 * on-demand path (GET /v1/messages/{id}/raw) and the cache warmer, so both
 * honour the same per-account fetch lock and retention. Below, the queue
 * that feeds the on-demand path. */
#include "daemon/prefetch.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>


#include "daemon/daemon.h"
#include "util/log.h"
#include "util/util.h"

int mpd_fetch_body(mpd *d, const mps_message *msg, mp_raw *raw_r, int wait,
                   char **error_r)
{
    memset(raw_r, 0, sizeof *raw_r);
    struct mp_account *a = mpd_account_get(d, msg->account);
    if (a == NULL || !a->open) {
        *error_r = mpu_asprintf("account '%s' is not active", msg->account);
        mpd_account_unref(a);
        return 503;
    }
    mp_message_ref ref = {msg->folder, msg->provider_id,
                          msg->ref ? msg->ref : msg->provider_id, msg->uid};
    mp_error err;
    memset(&err, 0, sizeof err);
    /* The contract allows one fetch at a time per account. */
    if (!wait && pthread_mutex_trylock(&a->fetch_lock) != 0) {
        *error_r = mpu_asprintf("account '%s' is fetching already", msg->account);
        mpd_account_unref(a);
        return 409;
    }
    if (wait)
        pthread_mutex_lock(&a->fetch_lock);
    mp_status st = a->inst->desc->fetch(a, &ref, raw_r, &err);
    pthread_mutex_unlock(&a->fetch_lock);
    mphost_call_end();
    int status;
    if (st == MP_OK && raw_r->data != NULL) {
        status = 200;
        mps_store *s = mpd_store(d);
        mpd_knobs k = mpd_knobs_get(d);
        char *error = NULL;
        int64_t expires = k.retention_ms > 0 ? mpu_now_ms() + k.retention_ms : 0;
        if (s != NULL &&
            mps_body_put(s, msg->id, raw_r->data, raw_r->len, expires, &error) < 0) {
            mpu_warn(a->id, "cannot cache body of %s: %s", msg->id, error);
            free(error);
        }
    } else {
        /* A driver that said OK without bytes gave nothing to serve. */
        free(raw_r->data);
        memset(raw_r, 0, sizeof *raw_r);
        if (st == MP_SKIP) {
            /* Gone, or unusable for a reason the driver states (a body
             * over its size limit): either way retrying will not help. */
            status = 404;
            if (err.text[0] != '\0')
                *error_r = mpu_asprintf("%s", err.text);
            else
                *error_r =
                    mpu_asprintf("message %s no longer exists at the provider", msg->id);
        } else {
            status = 502;
            *error_r =
                mpu_asprintf("fetch failed: %s", err.text[0] ? err.text : "driver error");
        }
    }
    mpd_account_unref(a);
    return status;
}

/* ---- fetches on demand, queued per account ----
 *
 * An uncached GET /raw used to take a worker straight away and, behind a
 * slow provider, wait there on the account's fetch lock: a handful of
 * requests for one account pinned every worker and other accounts' syncs
 * waited. Now each account has a queue on the loop thread. One fetch of an
 * account is in the pool at a time (as an account job, so the scheduler's
 * worker caps apply); requests for the same message share it; the others
 * wait here, without a worker, up to cache.fetch_queue_max of them (503
 * beyond). Every request has a deadline (cache.fetch_timeout, 504): the
 * fetch itself goes on and caches the body, so the next try is a hit. A
 * queued fetch nobody waits for any more is dropped before it starts. */

typedef struct fq_waiter fq_waiter;
typedef struct fq_req fq_req;
typedef struct fq_account fq_account;

struct fq_waiter {
    fq_waiter *next;
    fq_req *req;
    mpd_fetch_cb cb;
    void *arg;
    struct event *deadline;
};

struct fq_req {
    fq_req *next;
    fq_account *fa;
    mps_message msg;
    fq_waiter *waiters;
    atomic_int wanted; /* 0: every waiter gave up before a worker started */
    /* Written by the worker, read in the completion. */
    int status;
    char *error;
    mp_raw raw;
};

struct fq_account {
    fq_account *next;
    mpd *d;
    char *id;
    fq_req *running;     /* in the pool                                   */
    fq_req *head, *tail; /* waiting, oldest first                         */
    size_t queued;
};

struct mpd_fetchq {
    fq_account *accounts; /* only those with a fetch running or waiting   */
};

static void fq_answer(fq_waiter *w, int status, const uint8_t *data, size_t len,
                      const char *error)
{
    if (w->deadline != NULL)
        event_free(w->deadline);
    w->cb(status, data, len, error, w->arg);
    free(w);
}

static void fq_req_free(fq_req *r)
{
    free(r->raw.data);
    free(r->error);
    mps_message_clear(&r->msg);
    free(r);
}

static void fq_unlink_waiter(fq_req *r, fq_waiter *w)
{
    for (fq_waiter **p = &r->waiters; *p != NULL; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return;
        }
}

static void fq_unlink_queued(fq_account *fa, fq_req *r)
{
    fq_req *prev = NULL;
    for (fq_req *it = fa->head; it != NULL; prev = it, it = it->next) {
        if (it != r)
            continue;
        if (prev != NULL)
            prev->next = r->next;
        else
            fa->head = r->next;
        if (fa->tail == r)
            fa->tail = prev;
        fa->queued--;
        r->next = NULL;
        return;
    }
}

static void fq_account_maybe_free(fq_account *fa)
{
    if (fa->running != NULL || fa->head != NULL)
        return;
    struct mpd_fetchq *q = fa->d->fetchq;
    for (fq_account **p = &q->accounts; *p != NULL; p = &(*p)->next)
        if (*p == fa) {
            *p = fa->next;
            break;
        }
    free(fa->id);
    free(fa);
}

static void fq_work(void *arg)
{
    fq_req *r = arg;
    if (!atomic_load(&r->wanted))
        return;
    r->status = mpd_fetch_body(r->fa->d, &r->msg, &r->raw, 1, &r->error);
    if (r->status == 502)
        atomic_fetch_add(&r->fa->d->m_fetch_errors, 1);
}

static void fq_kick(fq_account *fa);

static void fq_done(void *arg)
{
    fq_req *r = arg;
    fq_account *fa = r->fa;
    fa->running = NULL;
    while (r->waiters != NULL) {
        fq_waiter *w = r->waiters;
        r->waiters = w->next;
        fq_answer(w, r->status ? r->status : 503, r->raw.data, r->raw.len,
                  r->error != NULL ? r->error : "fetch not run");
    }
    fq_req_free(r);
    fq_kick(fa);
    fq_account_maybe_free(fa);
}

/* Start the account's next fetch unless one is in the pool. */
static void fq_kick(fq_account *fa)
{
    while (fa->running == NULL && fa->head != NULL) {
        fq_req *r = fa->head;
        fq_unlink_queued(fa, r);
        fa->running = r;
        if (mpj_account_submit(fa->d->sched, fa->id, MPJ_CLASS_FETCH, 1, fq_work, fq_done,
                               r) == 0)
            return;
        /* Not (or no longer) a scheduled account, or shutting down. */
        fa->running = NULL;
        while (r->waiters != NULL) {
            fq_waiter *w = r->waiters;
            r->waiters = w->next;
            char *msg = mpu_asprintf("account '%s' is not active", fa->id);
            fq_answer(w, 503, NULL, 0, msg);
            free(msg);
        }
        fq_req_free(r);
    }
}

static void fq_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    fq_waiter *w = arg;
    fq_req *r = w->req;
    fq_account *fa = r->fa;
    (void)fd;
    (void)what;
    fq_unlink_waiter(r, w);
    char *msg = mpu_asprintf("the provider of account '%s' did not deliver the message "
                             "within %u s; the fetch goes on and caches it, try again later",
                             fa->id, fa->d->settings->cache.fetch_timeout);
    fq_answer(w, 504, NULL, 0, msg);
    free(msg);
    if (r->waiters != NULL)
        return;
    if (r == fa->running) {
        /* A worker may not have started it yet: then it is skipped. */
        atomic_store(&r->wanted, 0);
        return;
    }
    fq_unlink_queued(fa, r);
    fq_req_free(r);
    fq_account_maybe_free(fa);
}

void mpd_fetch_on_demand(mpd *d, mps_message *msg, mpd_fetch_cb cb, void *arg)
{
    if (d->fetchq == NULL)
        d->fetchq = mpu_calloc(1, sizeof *d->fetchq);
    struct mpd_fetchq *q = d->fetchq;
    fq_account *fa = q->accounts;
    while (fa != NULL && strcmp(fa->id, msg->account) != 0)
        fa = fa->next;
    if (fa == NULL) {
        fa = mpu_calloc(1, sizeof *fa);
        fa->d = d;
        fa->id = mpu_strdup(msg->account);
        fa->next = q->accounts;
        q->accounts = fa;
    }
    /* The same message already on its way: wait for that fetch. */
    fq_req *r = fa->running != NULL && strcmp(fa->running->msg.id, msg->id) == 0
                    ? fa->running
                    : NULL;
    for (fq_req *it = fa->head; r == NULL && it != NULL; it = it->next)
        if (strcmp(it->msg.id, msg->id) == 0)
            r = it;
    if (r != NULL && !atomic_load(&r->wanted))
        r = NULL; /* given up on: a fresh request queues behind it */
    if (r == NULL) {
        uint32_t max = d->settings->cache.fetch_queue_max;
        if (fa->running != NULL && fa->queued >= max) {
            char *error = mpu_asprintf("%zu fetches of account '%s' are already waiting "
                                       "for its provider (cache.fetch_queue_max); try "
                                       "again later",
                                       fa->queued, fa->id);
            cb(503, NULL, 0, error, arg);
            free(error);
            mps_message_clear(msg);
            fq_account_maybe_free(fa);
            return;
        }
        r = mpu_calloc(1, sizeof *r);
        r->fa = fa;
        r->msg = *msg;
        atomic_init(&r->wanted, 1);
        if (fa->tail != NULL)
            fa->tail->next = r;
        else
            fa->head = r;
        fa->tail = r;
        fa->queued++;
    } else {
        mps_message_clear(msg);
    }
    memset(msg, 0, sizeof *msg);
    fq_waiter *w = mpu_calloc(1, sizeof *w);
    w->req = r;
    w->cb = cb;
    w->arg = arg;
    w->next = r->waiters;
    r->waiters = w;
    w->deadline = evtimer_new(d->base, fq_deadline_cb, w);
    uint32_t secs = d->settings->cache.fetch_timeout;
    struct timeval tv = {(time_t)secs, 0};
    if (w->deadline != NULL)
        evtimer_add(w->deadline, &tv);
    fq_kick(fa);
}

void mpd_fetch_free(mpd *d)
{
    /* Called after the scheduler is gone: every fetch was answered. */
    free(d->fetchq);
    d->fetchq = NULL;
}

/*
 * Write-behind of a long batch's intermediate commits (see host_private.h).
 *
 * Why: a sync job with bodies spends about two thirds of its time in the
 * store and one third reading and parsing what the server sends. Done in
 * turn on one thread, the server waits while a transaction is written and
 * the store waits while the next answers arrive. An intermediate commit
 * moves no cursor, so it can run beside the driver: the driver stages the
 * next changes while a helper thread, with its own connection, writes the
 * previous ones. One commit at most is in flight per batch, so memory stays
 * at two ingest bounds, and every commit with a cursor (and the end of the
 * batch) waits for it first: a cursor never gets ahead of the data.
 */
#include "host/host_private.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

struct mph_writeback {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mpd *d;
    int64_t retention_ms;
    mps_batch *job; /* handed over, being written; NULL when idle */
    int stop;
    /* The outcome of the last job, until collected by a wait. */
    int have_result;
    mps_commit_result result;
    char *error; /* NULL: it succeeded */
};

static void *writer_main(void *arg)
{
    struct mph_writeback *wb = arg;
    pthread_mutex_lock(&wb->lock);
    for (;;) {
        while (wb->job == NULL && !wb->stop)
            pthread_cond_wait(&wb->cond, &wb->lock);
        if (wb->job == NULL)
            break;
        mps_batch *b = wb->job;
        pthread_mutex_unlock(&wb->lock);

        mps_commit_result res;
        memset(&res, 0, sizeof res);
        char *error = NULL;
        mps_store *s = mpd_store(wb->d);
        if (s == NULL)
            error = mpu_strdup("cannot open the store on the write-behind thread");
        else
            (void)mps_batch_commit(s, b, NULL, NULL, -1, wb->retention_ms, &res, &error);
        /* A failed commit wrote nothing; the job fails with MP_RETRY at the
         * next wait and fetches these changes again from its cursor. */
        mps_batch_free(&b);
        if (error == NULL) {
            atomic_fetch_add(&wb->d->m_changes, res.applied);
            if (res.last_seq > 0)
                mpd_events_committed(wb->d, res.last_seq);
        }

        pthread_mutex_lock(&wb->lock);
        wb->job = NULL;
        wb->have_result = 1;
        wb->result = res;
        free(wb->error);
        wb->error = error;
        pthread_cond_broadcast(&wb->cond);
    }
    pthread_mutex_unlock(&wb->lock);
    mpd_store_thread_cleanup(wb->d);
    return NULL;
}

mp_status mphost_writeback_wait(mp_batch *batch, mp_error *err)
{
    struct mph_writeback *wb = batch->writeback;
    if (wb == NULL)
        return MP_OK;
    mp_status st = MP_OK;
    pthread_mutex_lock(&wb->lock);
    while (wb->job != NULL)
        pthread_cond_wait(&wb->cond, &wb->lock);
    if (wb->have_result) {
        wb->have_result = 0;
        if (wb->error != NULL) {
            st = mp_fail(err, MP_RETRY, "store commit failed: %s", wb->error);
            free(wb->error);
            wb->error = NULL;
        } else {
            batch->events += wb->result.events;
            batch->new_messages += wb->result.new_messages;
        }
    }
    pthread_mutex_unlock(&wb->lock);
    return st;
}

mp_status mphost_writeback_start(mp_batch *batch, mp_error *err)
{
    mp_status st = mphost_writeback_wait(batch, err);
    if (st != MP_OK)
        return st;
    if (batch->writeback == NULL) {
        struct mph_writeback *wb = mpu_calloc(1, sizeof *wb);
        pthread_mutex_init(&wb->lock, NULL);
        pthread_cond_init(&wb->cond, NULL);
        wb->d = batch->d;
        wb->retention_ms = batch->knobs->retention_ms;
        if (pthread_create(&wb->thread, NULL, writer_main, wb) != 0) {
            pthread_mutex_destroy(&wb->lock);
            pthread_cond_destroy(&wb->cond);
            free(wb);
            /* No thread: the commit is written here, as it always could be. */
            return mphost_batch_commit(batch, NULL, NULL, 0, err);
        }
        batch->writeback = wb;
    }
    struct mph_writeback *wb = batch->writeback;
    pthread_mutex_lock(&wb->lock);
    /* The staged account cursor and driver state stay for the commit that
     * ends the step: like a folder cursor, they must not get ahead of the
     * changes still to come. */
    wb->job = mps_batch_split(batch->staged);
    pthread_cond_broadcast(&wb->cond);
    pthread_mutex_unlock(&wb->lock);
    return MP_OK;
}

void mphost_writeback_end(mp_batch *batch)
{
    struct mph_writeback *wb = batch->writeback;
    if (wb == NULL)
        return;
    pthread_mutex_lock(&wb->lock);
    wb->stop = 1;
    pthread_cond_broadcast(&wb->cond);
    pthread_mutex_unlock(&wb->lock);
    pthread_join(wb->thread, NULL);
    if (wb->job != NULL) /* never handed back: the thread always finishes a job */
        mps_batch_free(&wb->job);
    free(wb->error);
    pthread_mutex_destroy(&wb->lock);
    pthread_cond_destroy(&wb->cond);
    free(wb);
    batch->writeback = NULL;
}

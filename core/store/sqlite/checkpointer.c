/*
 * The SQLite backend's housekeeping (backend.h): the store's checkpoints on
 * a thread of their own (sqlite-private.h, "Checkpoints"). A PostgreSQL
 * store has none: its housekeeper never runs.
 *
 * Why: with synchronous=NORMAL the only fsyncs of the store are the
 * checkpoint's, and SQLite runs a checkpoint on the connection whose commit
 * filled the WAL. During a bulk download with bodies that was a sync job
 * waiting on the disk every few megabytes, about a third of the wall time
 * of a 10,000-message full sync. Here a dedicated connection checkpoints
 * (passively: writers and readers go on) when a commit asks for it, and
 * the sync path only writes to the WAL.
 */
#include "store/backend.h"
#include "store/sqlite/sqlite-private.h"

#include <pthread.h>
#include <stdlib.h>

#include "util/log.h"
#include "util/util.h"

/* A checkpoint slower than this is worth a line in the log. */
#define SLOW_CHECKPOINT_MS 1000

struct mps__housekeeper {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int wanted; /* a commit left the WAL past MPS_CHECKPOINT_PAGES */
    int stop;
    int running;
    mps_store *store;
};

static void *checkpoint_thread(void *arg)
{
    struct mps__housekeeper *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->wanted && !c->stop)
            pthread_cond_wait(&c->cond, &c->lock);
        int last = c->stop;
        c->wanted = 0;
        pthread_mutex_unlock(&c->lock);

        int64_t t0 = mpu_now_ms();
        int frames = 0, done = 0;
        char *error = NULL;
        if (mps_checkpoint(c->store, &frames, &done, &error) < 0) {
            mpu_warn("store", "%s", error);
            free(error);
        }
        int64_t took = mpu_now_ms() - t0;
        if (took >= SLOW_CHECKPOINT_MS)
            mpu_info("store", "checkpoint of %d WAL pages took %lld ms", done,
                     (long long)took);

        pthread_mutex_lock(&c->lock);
        if (last)
            break;
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void wanted(void *arg)
{
    struct mps__housekeeper *c = arg;
    pthread_mutex_lock(&c->lock);
    c->wanted = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

mps__housekeeper *mps__housekeeper_start(const char *location)
{
    struct mps__housekeeper *c = mpu_calloc(1, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    /* PostgreSQL has no WAL of ours to checkpoint: nothing to run. */
    if (mps__is_pg_location(location))
        return c;
    char *error = NULL;
    if (mps_open(location, &c->store, &error) < 0) {
        mpu_warn("store", "checkpoints stay with the writers: %s", error);
        free(error);
    } else if (pthread_create(&c->thread, NULL, checkpoint_thread, c) != 0) {
        mpu_warn("store", "checkpoints stay with the writers: cannot start a thread");
        mps_close(&c->store);
    } else {
        c->running = 1;
    }
    return c;
}

void mps__housekeeper_adopt(mps__housekeeper *c, mps_store *s)
{
    if (c != NULL && c->running)
        mps_checkpoint_elsewhere(s, wanted, c);
}

void mps__housekeeper_stop(mps__housekeeper *c)
{
    if (c == NULL || !c->running)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    c->running = 0;
    mps_close(&c->store);
}

void mps__housekeeper_free(mps__housekeeper *c)
{
    if (c == NULL)
        return;
    mps__housekeeper_stop(c);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

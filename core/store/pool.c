/*
 * One connection per thread (pool.h). A connection is used by one thread
 * at a time (store.h), and each worker keeping its own lets the backend's
 * own locking serialize writers with no lock of ours around every call.
 * Workers come and go with the scheduler, so their connections hang off a
 * pthread key whose destructor closes them when the thread exits.
 */
#include "store/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "store/backend.h"
#include "util/fdlimit.h"
#include "util/log.h"
#include "util/util.h"

struct mps_pool {
    char *location;
    pthread_t owner;
    mps_store *owner_store;
    pthread_key_t key; /* a worker's struct conn */
    void (*thread_done)(void);
    mps__housekeeper *housekeeper;
};

/* What the key holds: the destructor gets only this pointer. */
struct conn {
    mps_store *store;
    void (*thread_done)(void);
};

static void conn_close(struct conn *c)
{
    mps_close(&c->store);
    if (c->thread_done != NULL)
        c->thread_done();
    free(c);
}

static void thread_exit(void *p)
{
    conn_close(p);
}

int mps_pool_open(const char *location, void (*thread_done)(void), mps_pool **pool_r,
                  char **error_r)
{
    *pool_r = NULL;
    mps_pool *p = mpu_calloc(1, sizeof *p);
    if (pthread_key_create(&p->key, thread_exit) != 0) {
        free(p);
        if (error_r != NULL)
            *error_r = mpu_strdup("store: cannot create a thread key");
        return -1;
    }
    /* The owner's connection first: it creates the store and migrates it
     * before housekeeping opens a connection of its own. */
    if (mps_open(location, &p->owner_store, error_r) < 0) {
        pthread_key_delete(p->key);
        free(p);
        return -1;
    }
    p->location = mpu_strdup(location);
    p->owner = pthread_self();
    p->thread_done = thread_done;
    p->housekeeper = mps__housekeeper_start(location);
    mps__housekeeper_adopt(p->housekeeper, p->owner_store);
    *pool_r = p;
    return 0;
}

mps_store *mps_pool_thread(mps_pool *p)
{
    if (pthread_equal(pthread_self(), p->owner))
        return p->owner_store;
    struct conn *c = pthread_getspecific(p->key);
    if (c != NULL)
        return c->store;
    mps_store *s = NULL;
    char *error = NULL;
    if (mps_open(p->location, &s, &error) < 0) {
        /* The caller's job fails and is retried with backoff. Out of
         * descriptors is counted and logged once per episode; any other
         * cause is rate-limited, as every worker meets it on every job. */
        static mpu_log_limit open_limit = MPU_LOG_LIMIT_INIT(3, 60000);
        int e = errno;
        if (mpu_fd_shortage(e))
            mpu_fd_shortage_note("store connection", e);
        else
            mpu_log_limited(&open_limit, MP_LOG_ERROR, "store", "cannot open %s: %s",
                            mps__location_name(p->location), error);
        free(error);
        return NULL;
    }
    mps__housekeeper_adopt(p->housekeeper, s);
    c = mpu_calloc(1, sizeof *c);
    c->store = s;
    c->thread_done = p->thread_done;
    pthread_setspecific(p->key, c);
    return s;
}

void mps_pool_thread_done(mps_pool *p)
{
    if (pthread_equal(pthread_self(), p->owner)) {
        if (p->thread_done != NULL)
            p->thread_done();
        return;
    }
    struct conn *c = pthread_getspecific(p->key);
    if (c == NULL) {
        if (p->thread_done != NULL)
            p->thread_done();
        return;
    }
    pthread_setspecific(p->key, NULL);
    conn_close(c);
}

void mps_pool_close(mps_pool **pool)
{
    if (pool == NULL || *pool == NULL)
        return;
    mps_pool *p = *pool;
    /* Stop first: the last housekeeping run still sees every commit, and
     * no adopted connection may outlive the housekeeper it signals. */
    mps__housekeeper_stop(p->housekeeper);
    mps_close(&p->owner_store);
    mps__housekeeper_free(p->housekeeper);
    if (p->thread_done != NULL)
        p->thread_done();
    pthread_key_delete(p->key);
    mpu_secret_free(&p->location); /* a PostgreSQL URL may hold a password */
    free(p);
    *pool = NULL;
}

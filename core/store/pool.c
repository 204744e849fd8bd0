/* One SQLite connection per thread: the loop thread's is d->store, each
 * worker opens its own on first use and closes it when the thread exits
 * (pthread key destructor), together with the thread's libcurl handle. */
#include "daemon/daemon.h"

#include <stdlib.h>

#include "net/net.h"
#include "util/log.h"

static pthread_key_t store_key;
static pthread_once_t store_once = PTHREAD_ONCE_INIT;

static void thread_exit(void *p)
{
    mps_store *s = p;
    mps_close(&s);
    mpn_thread_cleanup();
}

static void make_key(void)
{
    pthread_key_create(&store_key, thread_exit);
}

mps_store *mpd_store(mpd *d)
{
    if (pthread_equal(pthread_self(), d->loop_thread))
        return d->store;
    pthread_once(&store_once, make_key);
    mps_store *s = pthread_getspecific(store_key);
    if (s != NULL)
        return s;
    char *error = NULL;
    if (mps_open(d->db_path, &s, &error) < 0) {
        mpu_error("store", "cannot open %s: %s", d->db_path, error);
        free(error);
        return NULL;
    }
    mpd_checkpointer_adopt(d, s);
    pthread_setspecific(store_key, s);
    return s;
}

void mpd_store_thread_cleanup(void)
{
    pthread_once(&store_once, make_key);
    mps_store *s = pthread_getspecific(store_key);
    if (s != NULL) {
        pthread_setspecific(store_key, NULL);
        mps_close(&s);
    }
    mpn_thread_cleanup();
}

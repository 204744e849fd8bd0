/* Account status and push state go through the store, which appends an
 * account.status event when either changes; then the SSE watchers wake. */
#include "daemon/daemon.h"

#include <stdlib.h>

#include "util/log.h"
#include "util/util.h"

void mpd_set_account_status(mpd *d, const char *account, const char *status,
                            const char *error)
{
    mps_store *s = mpd_store(d);
    char *err = NULL;
    int changed = 0;
    if (s == NULL)
        return;
    struct mp_account *a = mpd_account_get(d, account);
    if (mps_account_set_status(s, account, status, error, &changed, &err) < 0) {
        mpu_error(account, "cannot record status '%s': %s", status, err);
        /* Keep it in memory: a full disk must not leave the API showing
         * an old "ok" while every sync fails. */
        if (a != NULL) {
            char *text = mpu_asprintf("%s (status not recorded: %s)",
                                      error != NULL ? error : status, err);
            pthread_mutex_lock(&a->lock);
            free(a->unrecorded_status);
            free(a->unrecorded_error);
            a->unrecorded_status = mpu_strdup(status);
            a->unrecorded_error = text;
            pthread_mutex_unlock(&a->lock);
        }
        mpd_account_unref(a);
        free(err);
        return;
    }
    if (a != NULL) {
        pthread_mutex_lock(&a->lock);
        free(a->unrecorded_status);
        free(a->unrecorded_error);
        a->unrecorded_status = a->unrecorded_error = NULL;
        pthread_mutex_unlock(&a->lock);
        mpd_account_unref(a);
    }
    if (changed) {
        if (error != NULL)
            mpu_warn(account, "status %s: %s", status, error);
        else
            mpu_info(account, "status %s", status);
        mpd_events_committed(d, mps_events_last_seq(s));
    }
}

int mpd_account_unrecorded(struct mp_account *a, char **status_r, char **error_r)
{
    *status_r = *error_r = NULL;
    pthread_mutex_lock(&a->lock);
    if (a->unrecorded_status != NULL) {
        *status_r = mpu_strdup(a->unrecorded_status);
        *error_r = a->unrecorded_error != NULL ? mpu_strdup(a->unrecorded_error) : NULL;
    }
    pthread_mutex_unlock(&a->lock);
    return *status_r != NULL;
}

void mpd_set_push_state(mpd *d, const char *account, const char *state)
{
    mps_store *s = mpd_store(d);
    char *err = NULL;
    if (s == NULL)
        return;
    if (mps_account_set_push_state(s, account, state, &err) < 0) {
        mpu_error(account, "cannot record push state: %s", err);
        free(err);
        return;
    }
    mpd_events_committed(d, mps_events_last_seq(s));
}

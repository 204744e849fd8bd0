/* Account status and push state go through the store, which appends an
 * account.status event when either changes; then the SSE watchers wake. */
#include "daemon/daemon.h"

#include <stdlib.h>

#include "util/log.h"

void mpd_set_account_status(mpd *d, const char *account, const char *status,
                            const char *error)
{
    mps_store *s = mpd_store(d);
    char *err = NULL;
    int changed = 0;
    if (s == NULL)
        return;
    if (mps_account_set_status(s, account, status, error, &changed, &err) < 0) {
        mpu_error(account, "cannot record status '%s': %s", status, err);
        free(err);
        return;
    }
    if (changed) {
        if (error != NULL)
            mpu_warn(account, "status %s: %s", status, error);
        else
            mpu_info(account, "status %s", status);
        mpd_events_committed(d, mps_events_last_seq(s));
    }
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

/* One message body from the provider into the cache: shared by the
 * on-demand path (GET /v1/messages/{id}/raw) and the cache warmer, so both
 * honour the same per-account fetch lock and retention. */
#include "daemon/prefetch.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "host/host_private.h"
#include "util/log.h"
#include "util/util.h"

int mpd_fetch_body(mpd *d, const mps_message *msg, mp_raw *raw_r, char **error_r)
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
    pthread_mutex_lock(&a->fetch_lock);
    mp_status st = a->inst->desc->fetch(a, &ref, raw_r, &err);
    pthread_mutex_unlock(&a->fetch_lock);
    mphost_call_arena_free();
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

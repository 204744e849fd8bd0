/* Account status and push state go through the store, which appends an
 * account.status event when either changes; then the SSE watchers wake.
 * What was recorded is mirrored on the account (view_* in
 * host/host_objects.h) so the account list and /metrics read memory only:
 * with thousands of accounts two store reads per account on the loop
 * thread were the list's whole cost. */
#include "daemon/daemon.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/util.h"

/* Once per account, at its first recorded status (its start): the times
 * an earlier run left in the store, so the list shows them from memory. */
static void view_seed(mps_store *s, struct mp_account *a)
{
    pthread_mutex_lock(&a->lock);
    int seeded = a->view_seeded;
    a->view_seeded = 1;
    pthread_mutex_unlock(&a->lock);
    if (seeded)
        return;
    mps_account_row row;
    char *err = NULL;
    if (mps_account_get(s, a->id, &row, &err) != 0) {
        free(err);
        return;
    }
    pthread_mutex_lock(&a->lock);
    if (a->view_last_sync_ms == 0)
        a->view_last_sync_ms = row.last_sync_ms;
    pthread_mutex_unlock(&a->lock);
    int64_t zero = 0;
    atomic_compare_exchange_strong(&a->last_push_ms, &zero, row.last_push_ms);
    if (a->view_push_state == NULL && row.push_state != NULL) {
        pthread_mutex_lock(&a->lock);
        if (a->view_push_state == NULL)
            a->view_push_state = mpu_strdup(row.push_state);
        pthread_mutex_unlock(&a->lock);
    }
    mps_account_row_clear(&row);
}

void mpd_account_view_synced(struct mp_account *a, int64_t when_ms)
{
    pthread_mutex_lock(&a->lock);
    a->view_last_sync_ms = when_ms;
    pthread_mutex_unlock(&a->lock);
}

void mpd_account_view(struct mp_account *a, mpd_account_view_t *v)
{
    memset(v, 0, sizeof *v);
    pthread_mutex_lock(&a->lock);
    if (a->unrecorded_status != NULL) {
        v->status = mpu_strdup(a->unrecorded_status);
        v->error = a->unrecorded_error != NULL ? mpu_strdup(a->unrecorded_error) : NULL;
    } else {
        v->status = mpu_strdup(a->view_status != NULL ? a->view_status : "pending");
        v->error = a->view_error != NULL ? mpu_strdup(a->view_error) : NULL;
    }
    v->push_state = a->view_push_state != NULL ? mpu_strdup(a->view_push_state) : NULL;
    v->last_sync_ms = a->view_last_sync_ms;
    pthread_mutex_unlock(&a->lock);
    v->last_push_ms = atomic_load(&a->last_push_ms);
}

void mpd_account_view_clear(mpd_account_view_t *v)
{
    free(v->status);
    free(v->error);
    free(v->push_state);
    memset(v, 0, sizeof *v);
}

void mpd_count_in(json_t *counts, const char *key, size_t len)
{
    char name[64];
    if (len >= sizeof name)
        len = sizeof name - 1;
    memcpy(name, key, len);
    name[len] = '\0';
    json_t *v = json_object_get(counts, name);
    if (v != NULL)
        json_integer_set(v, json_integer_value(v) + 1); /* no allocation per account */
    else
        json_object_set_new(counts, name, json_integer(1));
}

/* Copy at most MPD_CLASS_MAX - 1 bytes of `len` of `src`. */
static void class_copy(char *dst, const char *src, size_t len)
{
    if (len >= MPD_CLASS_MAX)
        len = MPD_CLASS_MAX - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

void mpd_account_classes(struct mp_account *a, char *status, char *push)
{
    pthread_mutex_lock(&a->lock);
    const char *st = a->unrecorded_status != NULL ? a->unrecorded_status
                     : a->view_status != NULL     ? a->view_status
                                                  : "pending";
    class_copy(status, st, strlen(st));
    if (a->view_push_state != NULL)
        class_copy(push, a->view_push_state, mpd_push_class(a->view_push_state));
    else
        class_copy(push, "none", 4);
    pthread_mutex_unlock(&a->lock);
}

size_t mpd_push_class(const char *push_state)
{
    if (push_state == NULL)
        return 0;
    const char *colon = strchr(push_state, ':');
    return colon != NULL ? (size_t)(colon - push_state) : strlen(push_state);
}

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
        view_seed(s, a);
        pthread_mutex_lock(&a->lock);
        free(a->unrecorded_status);
        free(a->unrecorded_error);
        a->unrecorded_status = a->unrecorded_error = NULL;
        free(a->view_status);
        free(a->view_error);
        a->view_status = mpu_strdup(status);
        a->view_error = error != NULL ? mpu_strdup(error) : NULL;
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
    struct mp_account *a = mpd_account_get(d, account);
    if (a != NULL) {
        pthread_mutex_lock(&a->lock);
        free(a->view_push_state);
        a->view_push_state = state != NULL ? mpu_strdup(state) : NULL;
        pthread_mutex_unlock(&a->lock);
        mpd_account_unref(a);
    }
    mpd_events_committed(d, mps_events_last_seq(s));
}

/*
 * An admin's preflight: POST /v1/accounts/{id}/check runs the driver's
 * `check` slot (ABI 1.2) once, GET answers the last result.
 *
 * Why it does not ride on the sync job as `probe` does: a preflight is
 * wanted exactly when syncs are parked (the account waits in `reauth`
 * after a rejected token, or backs off after errors), and a sync trigger
 * would un-park them and reset their back-off. The check runs as the
 * account's "alone" work on the scheduler (mpj_account_alone): never at
 * the same time as a SYNC or BACKFILL of the account, which wait for it
 * with their schedules untouched. What it finds goes into the account's
 * check record, never into the account status: a failed check, even a
 * REAUTH from the slot, leaves the status and the parking as they were.
 *
 * One check at a time per account and no queue: a POST while one is
 * pending or running answers that one's id.
 */
#include "daemon/api.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "util/json.h"
#include "util/log.h"
#include "util/util.h"

typedef struct check_job {
    struct mp_account *a; /* a reference, released in check_done */
} check_job;

/* Worker thread, the account's alone work: no sync of it runs now. */
static void check_work(void *arg)
{
    struct mp_account *a = ((check_job *)arg)->a;
    pthread_mutex_lock(&a->check_lock);
    unsigned flags = a->check.flags;
    a->check.state = MPHOST_CHECK_RUNNING;
    a->check.started_at_ms = mpu_now_ms();
    pthread_mutex_unlock(&a->check_lock);

    mp_check *chk = mphost_check_new();
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st;
    const mp_driver *desc = a->inst->desc;
    if (!a->open || a->removed || desc == NULL || desc->check == NULL)
        st = mp_fail(&err, MP_FATAL, "the account was closed before the check ran");
    else
        st = desc->check(a, flags, chk, &err);
    mphost_call_end();

    size_t n = 0, dropped = mphost_check_dropped(chk);
    mphost_check_result *results = mphost_check_take(chk, &n);
    mphost_check_free(&chk);
    size_t failed = 0, warned = 0;
    for (size_t i = 0; i < n; i++) {
        failed += results[i].outcome == MP_CHECK_FAIL;
        warned += results[i].outcome == MP_CHECK_WARN;
    }
    char *error = NULL;
    if (st != MP_OK) {
        char *text = err.text[0] != '\0'
                         ? mpu_strdup(err.text)
                         : mpu_asprintf("the driver's check returned status %d with no "
                                        "reason",
                                        (int)st);
        error = mphost_check_clean(text, sizeof err.text);
        free(text);
    }

    pthread_mutex_lock(&a->check_lock);
    mphost_check_results_free(&a->check.results, a->check.n_results);
    a->check.results = results;
    a->check.n_results = n;
    a->check.finished_at_ms = mpu_now_ms();
    a->check.state = st == MP_OK ? MPHOST_CHECK_DONE : MPHOST_CHECK_ERROR;
    free(a->check.error);
    a->check.error = error;
    uint64_t id = a->check.id;
    pthread_mutex_unlock(&a->check_lock);

    if (dropped > 0)
        mpu_warn(a->id,
                 "check %llu: the driver reported more than %d results; %zu dropped",
                 (unsigned long long)id, MPHOST_CHECK_MAX, dropped);
    if (st != MP_OK)
        mpu_warn(a->id, "check %llu could not run: %s", (unsigned long long)id,
                 err.text[0] != '\0' ? err.text : "no reason given");
    else
        mpu_info(a->id, "check %llu: %zu results, %zu failed, %zu warnings",
                 (unsigned long long)id, n, failed, warned);
}

/* Loop thread, exactly once per started check. */
static void check_done(void *arg, int ran)
{
    check_job *job = arg;
    struct mp_account *a = job->a;
    free(job);
    if (!ran) {
        pthread_mutex_lock(&a->check_lock);
        if (a->check.state == MPHOST_CHECK_PENDING) {
            a->check.state = MPHOST_CHECK_ERROR;
            a->check.finished_at_ms = mpu_now_ms();
            free(a->check.error);
            a->check.error =
                mpu_strdup("the account was removed or the daemon stopped before the "
                           "check ran");
        }
        pthread_mutex_unlock(&a->check_lock);
    }
    mpd_account_unref(a);
}

/* The request body: nothing, or {"live": bool}. */
static int parse_body(const uint8_t *body, size_t len, int *live_r, char **error_r)
{
    *live_r = 0;
    if (body == NULL || len == 0)
        return 0;
    json_error_t jerr;
    json_t *in = json_loadb((const char *)body, len, 0, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        *error_r = mpu_strdup("expected an empty body or {\"live\": true|false}");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v)
    {
        if (strcmp(key, "live") != 0 || !json_is_boolean(v)) {
            *error_r = strcmp(key, "live") != 0
                           ? mpu_strdup("unknown field in the body; expected "
                                        "{\"live\": true|false}")
                           : mpu_strdup("\"live\" must be true or false");
            json_decref(in);
            return -1;
        }
        *live_r = json_is_true(v);
    }
    json_decref(in);
    return 0;
}

json_t *mpd_api_check_start(mpd *d, const char *account, const uint8_t *body, size_t len,
                            int *status_r, char **error_r)
{
    struct mp_account *a = mpd_account_peek(d, account);
    int live = 0;
    if (a == NULL) {
        *status_r = 404;
        *error_r = mpu_asprintf("no account '%s'", account);
        return NULL;
    }
    if (parse_body(body, len, &live, error_r) < 0) {
        *status_r = 400;
        return NULL;
    }
    if (!a->open) {
        *status_r = 409;
        *error_r = mpu_asprintf("account '%s' is not active (see its status)", account);
        return NULL;
    }
    if (a->inst->desc == NULL || a->inst->desc->check == NULL) {
        *status_r = 409;
        *error_r = mpu_asprintf("driver '%s' (instance '%s') has no preflight check",
                                a->inst->driver_name, a->inst->name);
        return NULL;
    }
    pthread_mutex_lock(&a->check_lock);
    mphost_check_state state = a->check.state;
    uint64_t id = a->check.id;
    pthread_mutex_unlock(&a->check_lock);
    if (state == MPHOST_CHECK_PENDING || state == MPHOST_CHECK_RUNNING) {
        *status_r = 202;
        return json_pack("{s:I, s:s}", "id", (json_int_t)id, "state",
                         mphost_check_state_name(state));
    }

    struct mp_account *ref = mpd_account_get(d, a->id); /* the same one, held */
    if (ref == NULL) {
        *status_r = 404;
        *error_r = mpu_asprintf("no account '%s'", account);
        return NULL;
    }
    check_job *job = mpu_calloc(1, sizeof *job);
    job->a = ref;
    /* Recorded before it is handed over: the worker reads the flags. Only
     * the loop thread leaves NONE/DONE/ERROR, so nothing raced us since
     * the look above. */
    pthread_mutex_lock(&a->check_lock);
    mphost_check_record prev = a->check;
    memset(&a->check, 0, sizeof a->check);
    a->check.id = id = ++d->check_seq;
    a->check.state = MPHOST_CHECK_PENDING;
    a->check.flags = live ? MP_CHECK_LIVE : 0;
    a->check.requested_at_ms = mpu_now_ms();
    pthread_mutex_unlock(&a->check_lock);
    mphost_check_record_clear(&prev);

    if (mpj_account_alone(d->sched, a->id, check_work, check_done, job) < 0) {
        pthread_mutex_lock(&a->check_lock);
        a->check.state = MPHOST_CHECK_ERROR;
        a->check.finished_at_ms = mpu_now_ms();
        a->check.error = mpu_strdup("the scheduler did not take the check");
        pthread_mutex_unlock(&a->check_lock);
        free(job);
        mpd_account_unref(a);
        *status_r = 503;
        *error_r = mpu_asprintf("cannot schedule a check of account '%s' now", account);
        return NULL;
    }
    mpu_info(a->id, "check %llu requested%s", (unsigned long long)id,
             live ? " (with a live test message)" : "");
    *status_r = 202;
    return json_pack("{s:I, s:s}", "id", (json_int_t)id, "state", "pending");
}

json_t *mpd_api_check_get(mpd *d, const char *account, int *status_r, char **error_r)
{
    struct mp_account *a = mpd_account_peek(d, account);
    if (a == NULL) {
        *status_r = 404;
        *error_r = mpu_asprintf("no account '%s'", account);
        return NULL;
    }
    json_t *results = json_array();
    pthread_mutex_lock(&a->check_lock);
    const mphost_check_record *c = &a->check;
    for (size_t i = 0; i < c->n_results; i++) {
        /* Names and details were sanitized on the way in: valid UTF-8. */
        json_array_append_new(
            results, json_pack("{s:s, s:s, s:s}", "name", c->results[i].name, "outcome",
                               mphost_check_outcome_name(c->results[i].outcome), "detail",
                               c->results[i].detail));
    }
    json_t *o = json_pack(
        "{s:o, s:s, s:b, s:o, s:o, s:o, s:o, s:o}", "id",
        c->state == MPHOST_CHECK_NONE ? json_null() : json_integer((json_int_t)c->id),
        "state", mphost_check_state_name(c->state), "live",
        (c->flags & MP_CHECK_LIVE) != 0, "requested_at",
        mpu_json_time(c->requested_at_ms), "started_at", mpu_json_time(c->started_at_ms),
        "finished_at", mpu_json_time(c->finished_at_ms), "results", results, "error",
        mpu_json_str(c->error));
    pthread_mutex_unlock(&a->check_lock);
    if (o == NULL) {
        *status_r = 500;
        *error_r = mpu_strdup("cannot render the check");
    }
    return o;
}

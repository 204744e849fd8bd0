/* Account rows: status, push state and profile, with account.status events. */
#include "store/store-private.h"
#include "store/fence.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int mps_account_ensure(mps_store *s, const char *account, const char *instance,
                       char **error_r)
{
    mps__stmt *st;
    /* A reload may move an account to another plugins.d file. */
    if (mps__prepare(s,
                     "INSERT INTO accounts (id, instance, created_ms)"
                     " VALUES (:id, :instance, :now) ON CONFLICT (id) DO UPDATE"
                     " SET instance = excluded.instance"
                     " WHERE accounts.instance IS DISTINCT FROM excluded.instance",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", account);
    mps__bind_text(st, ":instance", instance);
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc = mps__step_done(s, st, error_r, "store: ensure account");
    mps__finish(s, st);
    return rc;
}

typedef struct state_row {
    char *status;
    char *last_error;
    char *push_state;
    int64_t status_seq;
} state_row;

static void state_row_clear(state_row *r)
{
    free(r->status);
    free(r->last_error);
    free(r->push_state);
    memset(r, 0, sizeof *r);
}

static int load_state(mps_store *s, const char *account, state_row *row_r, char **error_r)
{
    memset(row_r, 0, sizeof *row_r);
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT status, last_error, push_state, status_seq"
                     " FROM accounts WHERE id = :id",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", account);
    int rc = mps__step(st);
    if (rc == MPS__ROW) {
        row_r->status = mps__col_text(st, 0);
        row_r->last_error = mps__col_text(st, 1);
        row_r->push_state = mps__col_text(st, 2);
        row_r->status_seq = mps__col_int64(st, 3);
        mps__finish(s, st);
        return 0;
    }
    if (rc == MPS__DONE) {
        mps__finish(s, st);
        return mps__error(error_r, "store: unknown account \"%s\"", account);
    }
    mps__fail(s, error_r, "store: read account");
    mps__finish(s, st);
    return -1;
}

static int same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Store `next` over the current state and, when `emit`, append the
 * account.status event carrying the whole new state. */
static int write_state(mps_store *s, const char *account, const state_row *next, int emit,
                       char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "UPDATE accounts SET status = :status, last_error = :error,"
                     " push_state = :push, status_seq = :seq WHERE id = :id",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":status", next->status);
    mps__bind_text(st, ":error", next->last_error);
    mps__bind_text(st, ":push", next->push_state);
    mps__bind_int(st, ":seq", next->status_seq);
    mps__bind_text(st, ":id", account);
    int rc = mps__step_done(s, st, error_r, "store: update account");
    mps__finish(s, st);
    if (rc < 0 || !emit)
        return rc;

    json_t *data = json_object();
    json_object_set_new(data, "status", mps__json_string(next->status, 0));
    json_object_set_new(data, "error",
                        next->last_error != NULL ? mps__json_string(next->last_error, 0)
                                                 : json_null());
    json_object_set_new(data, "push_state", mps__json_string(next->push_state, 0));
    char *data_json = mps__json_take(data);
    char *key = mpu_asprintf("%s/status/%lld", account, (long long)next->status_seq);
    rc = mps__event_add(s, "account.status", account, NULL, NULL, key, data_json, NULL,
                        error_r);
    free(key);
    free(data_json);
    return rc < 0 ? -1 : 0;
}

/* status/push_state NULL: keep. The error is replaced only with a status. */
static int change_state(mps_store *s, const char *account, const char *status,
                        const char *error, const char *push_state, int *changed_r,
                        char **error_r)
{
    if (changed_r != NULL)
        *changed_r = 0;
    if (mps__begin(s, error_r) < 0)
        return -1;
    /* Cluster mode: a node without the lease writes nothing here; the
     * holder's status stands (no account.status event from a stale node). */
    char *fenced = NULL;
    int fence = mps__fence(s, account, &fenced);
    if (fence != 0) {
        mps__rollback(s);
        if (fence > 0) {
            free(fenced);
            return 0;
        }
        if (error_r != NULL)
            *error_r = fenced;
        else
            free(fenced);
        return -1;
    }
    state_row cur;
    if (load_state(s, account, &cur, error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    state_row next = {
        .status = status != NULL ? (char *)status : cur.status,
        .last_error = status != NULL ? (char *)error : cur.last_error,
        .push_state = push_state != NULL ? (char *)push_state : cur.push_state,
        .status_seq = cur.status_seq,
    };
    int changed =
        !same(cur.status, next.status) || !same(cur.push_state, next.push_state);
    int rc = 0;
    if (changed)
        next.status_seq++;
    if (changed || !same(cur.last_error, next.last_error))
        rc = write_state(s, account, &next, changed, error_r);
    state_row_clear(&cur);
    if (rc < 0) {
        mps__rollback(s);
        return -1;
    }
    if (mps__commit(s, error_r) < 0)
        return -1;
    if (changed_r != NULL)
        *changed_r = changed;
    return 0;
}

int mps_account_set_status(mps_store *s, const char *account, const char *status,
                           const char *error, int *changed_r, char **error_r)
{
    if (status == NULL)
        return mps__error(error_r, "store: account status is required");
    return change_state(s, account, status, error, NULL, changed_r, error_r);
}

int mps_account_set_push_state(mps_store *s, const char *account, const char *push_state,
                               char **error_r)
{
    if (push_state == NULL)
        return mps__error(error_r, "store: push state is required");
    return change_state(s, account, NULL, NULL, push_state, NULL, error_r);
}

/* Run a one-row UPDATE of the account; an unknown account is an error. */
static int update_account(mps_store *s, mps__stmt *st, const char *account,
                          char **error_r)
{
    mps__bind_text(st, ":id", account);
    int rc = mps__step_done(s, st, error_r, "store: update account");
    if (rc == 0 && mps__changes(s) == 0)
        rc = mps__error(error_r, "store: unknown account \"%s\"", account);
    mps__finish(s, st);
    return rc;
}

int mps_account_set_profile(mps_store *s, const char *account, const char *profile_json,
                            char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, "UPDATE accounts SET profile_json = :profile WHERE id = :id", &st,
                     error_r) < 0)
        return -1;
    mps__bind_text(st, ":profile", profile_json);
    return update_account(s, st, account, error_r);
}

int mps_account_touch_sync(mps_store *s, const char *account, int64_t when_ms,
                           char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, "UPDATE accounts SET last_sync_ms = :when WHERE id = :id", &st,
                     error_r) < 0)
        return -1;
    mps__bind_int(st, ":when", when_ms);
    return update_account(s, st, account, error_r);
}

int mps_account_get(mps_store *s, const char *account, mps_account_row *row_r,
                    char **error_r)
{
    memset(row_r, 0, sizeof *row_r);
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT id, instance, status, last_error, push_state, profile_json,"
                     " last_sync_ms, last_push_ms FROM accounts WHERE id = :id",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", account);
    int rc = mps__step_row(s, st, error_r, "store: read account");
    if (rc == 0) {
        row_r->id = mps__col_text(st, 0);
        row_r->instance = mps__col_text(st, 1);
        row_r->status = mps__col_text(st, 2);
        row_r->last_error = mps__col_text(st, 3);
        row_r->push_state = mps__col_text(st, 4);
        row_r->profile_json = mps__col_text(st, 5);
        row_r->last_sync_ms = mps__col_int64(st, 6);
        row_r->last_push_ms = mps__col_int64(st, 7);
    }
    mps__finish(s, st);
    return rc;
}

void mps_account_row_clear(mps_account_row *row)
{
    if (row == NULL)
        return;
    free(row->id);
    free(row->instance);
    free(row->status);
    free(row->last_error);
    free(row->push_state);
    free(row->profile_json);
    memset(row, 0, sizeof *row);
}

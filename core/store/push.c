/* Webhook subscriptions and durable push hints. */
#include "store/store-private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define SUBSCRIPTION_COLUMNS                                                   \
    "account, provider_id, expires_at, cursor_hint, renewed_ms,"               \
    " last_notification_ms, secret"

static void subscription_row(mps__stmt *st, mps_subscription *sub_r)
{
    sub_r->account = mps__col_text(st, 0);
    sub_r->provider_id = mps__col_text(st, 1);
    sub_r->expires_at = mps__col_int64(st, 2);
    sub_r->cursor_hint = mps__col_text(st, 3);
    sub_r->renewed_ms = mps__col_int64(st, 4);
    sub_r->last_notification_ms = mps__col_int64(st, 5);
    sub_r->secret = mps__col_text(st, 6);
}

int mps_subscription_get(mps_store *s, const char *account, mps_subscription *sub_r,
                         char **error_r)
{
    memset(sub_r, 0, sizeof *sub_r);
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT " SUBSCRIPTION_COLUMNS
                     " FROM subscriptions WHERE account = :account",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    int rc = mps__step_row(s, st, error_r, "store: read subscription");
    if (rc == 0)
        subscription_row(st, sub_r);
    mps__finish(s, st);
    return rc;
}

static int subscription_write(mps_store *s, const char *account, const char *provider_id,
                              int64_t expires_at, const char *cursor_hint,
                              const char *secret, char **error_r)
{
    mps__stmt *st;
    /* A renewal keeps the time of the last notification, and the secret
     * when the driver did not hand out a new one (Graph keeps clientState
     * across a PATCH). */
    if (mps__prepare(s,
                     "INSERT INTO subscriptions (account, provider_id, expires_at,"
                     " cursor_hint, renewed_ms, secret) VALUES (:account, :pid, :expires,"
                     " :hint, :now, :secret) ON CONFLICT (account) DO UPDATE SET"
                     " provider_id = excluded.provider_id,"
                     " expires_at = excluded.expires_at,"
                     " cursor_hint = excluded.cursor_hint,"
                     " renewed_ms = excluded.renewed_ms,"
                     " secret = COALESCE(excluded.secret, subscriptions.secret)",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    mps__bind_text(st, ":pid", provider_id);
    mps__bind_int(st, ":expires", expires_at);
    mps__bind_text(st, ":hint", cursor_hint);
    mps__bind_text(st, ":secret", secret);
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc = mps__step_done(s, st, error_r, "store: save subscription");
    mps__finish(s, st);
    return rc;
}

int mps_subscription_put(mps_store *s, const char *account, const char *provider_id,
                         int64_t expires_at, const char *cursor_hint, const char *secret,
                         char **error_r)
{
    /* Nodes that verify this account's pushes in standby reload it. */
    if (mps__begin(s, error_r) < 0)
        return -1;
    if (subscription_write(s, account, provider_id, expires_at, cursor_hint, secret,
                           error_r) < 0 ||
        mps__signal(s, MPS_SIGNAL_STANDBY, account, NULL, error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

int mps_subscription_delete(mps_store *s, const char *account, char **error_r)
{
    if (mps__begin(s, error_r) < 0)
        return -1;
    mps__stmt *st;
    if (mps__prepare(s, "DELETE FROM subscriptions WHERE account = :account", &st,
                     error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    mps__bind_text(st, ":account", account);
    int rc = mps__step_done(s, st, error_r, "store: delete subscription");
    mps__finish(s, st);
    if (rc == 0)
        rc = mps__signal(s, MPS_SIGNAL_STANDBY, account, NULL, error_r);
    if (rc < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

void mps_subscription_clear(mps_subscription *sub)
{
    if (sub == NULL)
        return;
    free(sub->account);
    free(sub->provider_id);
    free(sub->cursor_hint);
    mpu_secret_free(&sub->secret);
    memset(sub, 0, sizeof *sub);
}

static int run_bound(mps_store *s, const char *sql, const char *account, int64_t when_ms,
                     const char *folder, const char *hint, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, sql, &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    mps__bind_int(st, ":when", when_ms);
    mps__bind_text(st, ":folder", folder);
    mps__bind_text(st, ":hint", hint);
    int rc = mps__step_done(s, st, error_r, "store: record push hint");
    mps__finish(s, st);
    return rc;
}

int mps_push_hint_add(mps_store *s, const char *account, const char *folder,
                      const char *cursor_hint, int64_t when_ms, char **error_r)
{
    if (mps__begin(s, error_r) < 0)
        return -1;
    if (run_bound(s,
                  "DELETE FROM push_hints WHERE account = :account"
                  " AND folder IS NOT DISTINCT FROM :folder",
                  account, when_ms, folder, NULL, error_r) < 0 ||
        run_bound(s,
                  "INSERT INTO push_hints (account, folder, cursor_hint, received_ms)"
                  " VALUES (:account, :folder, :hint, :when)",
                  account, when_ms, folder, cursor_hint, error_r) < 0 ||
        run_bound(s, "UPDATE accounts SET last_push_ms = :when WHERE id = :account",
                  account, when_ms, NULL, NULL, error_r) < 0 ||
        run_bound(s,
                  "UPDATE subscriptions SET last_notification_ms = :when"
                  " WHERE account = :account",
                  account, when_ms, NULL, NULL, error_r) < 0 ||
        mps__signal(s, MPS_SIGNAL_PUSH, account, folder, error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

static int wanted(const char *folder, const char *const *folders, size_t n_folders,
                  int account_wide)
{
    if (n_folders == 0)
        return 1;
    if (folder == NULL)
        return account_wide;
    for (size_t i = 0; i < n_folders; i++)
        if (strcmp(folders[i], folder) == 0)
            return 1;
    return 0;
}

static int same_folder(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* A later row of the same folder replaces the entry (rows come oldest
 * first). */
static void take_add(mps_push_take *t, int64_t rowid, char *folder, char *hint,
                     int64_t received_ms)
{
    t->rowids = mpu_realloc(t->rowids, (t->n_rows + 1) * sizeof *t->rowids);
    t->rowids[t->n_rows++] = rowid;
    for (size_t i = 0; i < t->n; i++) {
        if (same_folder(t->hints[i].folder, folder)) {
            free(folder);
            free(t->hints[i].cursor_hint);
            t->hints[i].cursor_hint = hint;
            t->hints[i].received_ms = received_ms;
            return;
        }
    }
    t->hints = mpu_realloc(t->hints, (t->n + 1) * sizeof *t->hints);
    t->hints[t->n++] = (mps_push_hint){folder, hint, received_ms};
}

int mps_push_hints_read(mps_store *s, const char *account, const char *const *folders,
                        size_t n_folders, int account_wide, size_t max_rows,
                        mps_push_take *take_r, char **error_r)
{
    memset(take_r, 0, sizeof *take_r);
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT rowid, folder, cursor_hint, received_ms FROM push_hints"
                     " WHERE account = :account ORDER BY rowid",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    int rc;
    while ((rc = mps__step(st)) == MPS__ROW) {
        const char *folder = mps__col_cstr(st, 1);
        if (!wanted(folder, folders, n_folders, account_wide))
            continue;
        if (take_r->n_rows >= max_rows) {
            take_r->more = 1;
            continue;
        }
        take_add(take_r, mps__col_int64(st, 0), mps__col_text(st, 1),
                 mps__col_text(st, 2), mps__col_int64(st, 3));
    }
    if (rc != MPS__DONE) {
        mps__fail(s, error_r, "store: read push hints");
        mps__finish(s, st);
        mps_push_take_clear(take_r);
        return -1;
    }
    mps__finish(s, st);
    return 0;
}

int mps_push_hints_delete(mps_store *s, const mps_push_take *take, char **error_r)
{
    if (take->n_rows == 0)
        return 0;
    if (mps__begin(s, error_r) < 0)
        return -1;
    for (size_t i = 0; i < take->n_rows; i++) {
        mps__stmt *st;
        if (mps__prepare(s, "DELETE FROM push_hints WHERE rowid = :rowid", &st, error_r) <
            0) {
            mps__rollback(s);
            return -1;
        }
        mps__bind_int(st, ":rowid", take->rowids[i]);
        int rc = mps__step_done(s, st, error_r, "store: delete push hint");
        mps__finish(s, st);
        if (rc < 0) {
            mps__rollback(s);
            return -1;
        }
    }
    return mps__commit(s, error_r);
}

void mps_push_take_clear(mps_push_take *take)
{
    if (take == NULL)
        return;
    for (size_t i = 0; i < take->n; i++) {
        free(take->hints[i].folder);
        free(take->hints[i].cursor_hint);
    }
    free(take->hints);
    free(take->rowids);
    memset(take, 0, sizeof *take);
}

int mps_push_hints_accounts(mps_store *s, char ***accounts_r, size_t *n_r, char **error_r)
{
    *accounts_r = NULL;
    *n_r = 0;
    mps__stmt *st;
    if (mps__prepare(s, "SELECT DISTINCT account FROM push_hints ORDER BY account", &st,
                     error_r) < 0)
        return -1;
    char **list = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = mps__step(st)) == MPS__ROW) {
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 8;
            list = mpu_realloc(list, cap * sizeof *list);
        }
        list[n++] = mps__col_text(st, 0);
        list[n] = NULL;
    }
    if (rc != MPS__DONE) {
        mps__fail(s, error_r, "store: list push hints");
        mps__finish(s, st);
        for (size_t i = 0; i < n; i++)
            free(list[i]);
        free(list);
        return -1;
    }
    mps__finish(s, st);
    *accounts_r = list;
    *n_r = n;
    return 0;
}

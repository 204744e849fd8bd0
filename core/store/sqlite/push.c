/* Webhook subscriptions and durable push hints. */
#include "store/sqlite/store-private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define SUBSCRIPTION_COLUMNS                                                   \
    "account, provider_id, expires_at, cursor_hint, renewed_ms,"               \
    " last_notification_ms, secret"

static void subscription_row(sqlite3_stmt *st, mps_subscription *sub_r)
{
    sub_r->account = mps__col_text(st, 0);
    sub_r->provider_id = mps__col_text(st, 1);
    sub_r->expires_at = sqlite3_column_int64(st, 2);
    sub_r->cursor_hint = mps__col_text(st, 3);
    sub_r->renewed_ms = sqlite3_column_int64(st, 4);
    sub_r->last_notification_ms = sqlite3_column_int64(st, 5);
    sub_r->secret = mps__col_text(st, 6);
}

int mps_subscription_get(mps_store *s, const char *account, mps_subscription *sub_r,
                         char **error_r)
{
    memset(sub_r, 0, sizeof *sub_r);
    sqlite3_stmt *st;
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

int mps_subscription_put(mps_store *s, const char *account, const char *provider_id,
                         int64_t expires_at, const char *cursor_hint, const char *secret,
                         char **error_r)
{
    sqlite3_stmt *st;
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

int mps_subscription_delete(mps_store *s, const char *account, char **error_r)
{
    sqlite3_stmt *st;
    if (mps__prepare(s, "DELETE FROM subscriptions WHERE account = :account", &st,
                     error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    int rc = mps__step_done(s, st, error_r, "store: delete subscription");
    mps__finish(s, st);
    return rc;
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
    sqlite3_stmt *st;
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
                  "INSERT INTO push_hints (account, folder, cursor_hint, received_ms)"
                  " VALUES (:account, :folder, :hint, :when)",
                  account, when_ms, folder, cursor_hint, error_r) < 0 ||
        run_bound(s, "UPDATE accounts SET last_push_ms = :when WHERE id = :account",
                  account, when_ms, NULL, NULL, error_r) < 0 ||
        run_bound(s,
                  "UPDATE subscriptions SET last_notification_ms = :when"
                  " WHERE account = :account",
                  account, when_ms, NULL, NULL, error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

int mps_push_hints_take(mps_store *s, const char *account, int64_t *count_r,
                        char **error_r)
{
    if (count_r != NULL)
        *count_r = 0;
    sqlite3_stmt *st;
    if (mps__prepare(s, "DELETE FROM push_hints WHERE account = :account", &st, error_r) <
        0)
        return -1;
    mps__bind_text(st, ":account", account);
    int rc = mps__step_done(s, st, error_r, "store: take push hints");
    mps__finish(s, st);
    if (rc == 0 && count_r != NULL)
        *count_r = sqlite3_changes(s->db);
    return rc;
}

int mps_push_hints_accounts(mps_store *s, char ***accounts_r, size_t *n_r, char **error_r)
{
    *accounts_r = NULL;
    *n_r = 0;
    sqlite3_stmt *st;
    if (mps__prepare(s, "SELECT DISTINCT account FROM push_hints ORDER BY account", &st,
                     error_r) < 0)
        return -1;
    char **list = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 8;
            list = mpu_realloc(list, cap * sizeof *list);
        }
        list[n++] = mps__col_text(st, 0);
        list[n] = NULL;
    }
    if (rc != SQLITE_DONE) {
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

/* Account-level cursors and drivers' per-account key/value state. */
#include "store/store-private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int mps_state_check(const char *key, const char *value, char **error_r)
{
    if (key == NULL || *key == '\0' || strlen(key) > MPS_STATE_KEY_MAX)
        return mps__error(error_r, "store: state key must be 1 to %d bytes",
                          MPS_STATE_KEY_MAX);
    if (value != NULL && strlen(value) > MPS_STATE_VALUE_MAX)
        return mps__error(error_r, "store: state value of \"%s\" is over %d bytes", key,
                          MPS_STATE_VALUE_MAX);
    return 0;
}

int mps__state_write(mps_store *s, const char *account, const char *key,
                     const char *value, char **error_r)
{
    if (mps_state_check(key, value, error_r) < 0)
        return -1;
    mps__stmt *st;
    if (mps__prepare(s,
                     value != NULL
                         ? "INSERT INTO driver_state (account, key, value, updated_ms)"
                           " VALUES (:account, :key, :value, :now)"
                           " ON CONFLICT (account, key) DO UPDATE SET"
                           " value = excluded.value, updated_ms = excluded.updated_ms"
                         : "DELETE FROM driver_state WHERE account = :account AND key = :key",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    mps__bind_text(st, ":key", key);
    if (value != NULL) {
        mps__bind_text(st, ":value", value);
        mps__bind_int(st, ":now", mpu_now_ms());
    }
    int rc = mps__step_done(s, st, error_r, "store: write driver state");
    mps__finish(s, st);
    return rc;
}

int mps__account_cursor_write(mps_store *s, const char *account, const char *cursor,
                              char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     cursor != NULL
                         ? "INSERT INTO account_cursors (account, cursor, updated_ms)"
                           " VALUES (:account, :cursor, :now)"
                           " ON CONFLICT (account) DO UPDATE SET"
                           " cursor = excluded.cursor, updated_ms = excluded.updated_ms"
                         : "DELETE FROM account_cursors WHERE account = :account",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    if (cursor != NULL) {
        mps__bind_text(st, ":cursor", cursor);
        mps__bind_int(st, ":now", mpu_now_ms());
    }
    int rc = mps__step_done(s, st, error_r, "store: write account cursor");
    mps__finish(s, st);
    return rc;
}

/* One text column of one row: 0 with *value_r, 1 when none. */
static int read_text(mps_store *s, const char *sql, const char *account, const char *key,
                     char **value_r, char **error_r)
{
    *value_r = NULL;
    mps__stmt *st;
    if (mps__prepare(s, sql, &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    if (key != NULL)
        mps__bind_text(st, ":key", key);
    int rc = mps__step_row(s, st, error_r, "store: read driver state");
    if (rc == 0)
        *value_r = mps__col_text(st, 0);
    mps__finish(s, st);
    return rc;
}

int mps_account_cursor_get(mps_store *s, const char *account, char **cursor_r,
                           char **error_r)
{
    return read_text(s, "SELECT cursor FROM account_cursors WHERE account = :account",
                     account, NULL, cursor_r, error_r);
}

int mps_state_get(mps_store *s, const char *account, const char *key, char **value_r,
                  char **error_r)
{
    return read_text(s,
                     "SELECT value FROM driver_state WHERE account = :account"
                     " AND key = :key",
                     account, key, value_r, error_r);
}

int mps_account_cursor_set(mps_store *s, const char *account, const char *cursor,
                           char **error_r)
{
    if (mps__begin(s, error_r) < 0)
        return -1;
    if (mps__account_cursor_write(s, account, cursor, error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

int mps_state_put(mps_store *s, const char *account, const char *key, const char *value,
                  char **error_r)
{
    if (mps_state_check(key, value, error_r) < 0)
        return -1;
    if (mps__begin(s, error_r) < 0)
        return -1;
    /* A driver's own state (not a sync batch's): what its push
     * verification reads lives here, so standby nodes reload it. */
    if (mps__state_write(s, account, key, value, error_r) < 0 ||
        mps__signal(s, MPS_SIGNAL_STANDBY, account, NULL, error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

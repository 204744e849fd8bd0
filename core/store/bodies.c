/* The raw message cache with expiry. */
#include "store/store-private.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int mps__body_store(mps_store *s, const char *id, const uint8_t *data, size_t len,
                    int64_t expires_ms, char **error_r)
{
    if (len > INT_MAX)
        return mps__error(error_r, "store: body of %zu bytes is too large", len);
    mps__stmt *st;
    if (mps__prepare(s,
                     "INSERT INTO bodies (message_id, data, size, fetched_ms, expires_ms)"
                     " VALUES (:id, :data, :size, :now, :expires)"
                     " ON CONFLICT (message_id) DO UPDATE SET data = excluded.data,"
                     " size = excluded.size, fetched_ms = excluded.fetched_ms,"
                     " expires_ms = excluded.expires_ms",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", id);
    /* A zero-length blob must still be a blob, not NULL. */
    mps__bind_blob(st, ":data", data != NULL ? (const void *)data : "", len);
    mps__bind_int(st, ":size", (int64_t)len);
    mps__bind_int(st, ":now", mpu_now_ms());
    mps__bind_int(st, ":expires", expires_ms);
    int rc = mps__step_done(s, st, error_r, "store: cache body");
    mps__finish(s, st);
    return rc;
}

/* A body row new to a live message counts in the body_count of each
 * folder it is in (only live messages have memberships). */
static int count_new_body(mps_store *s, const char *id, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "UPDATE folders SET body_count = body_count + 1"
                     " WHERE (account, name) IN (SELECT account, folder FROM memberships"
                     "   WHERE message = :id)",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", id);
    int rc = mps__step_done(s, st, error_r, "store: count body");
    mps__finish(s, st);
    return rc;
}

int mps_body_put(mps_store *s, const char *id, const uint8_t *data, size_t len,
                 int64_t expires_ms, char **error_r)
{
    if (mps__begin(s, error_r) < 0)
        return -1;
    mps__stmt *st;
    if (mps__prepare(s, "SELECT 1 FROM bodies WHERE message_id = :id", &st, error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    mps__bind_text(st, ":id", id);
    int none = mps__step_row(s, st, error_r, "store: look up body"); /* 1: no row */
    mps__finish(s, st);
    int rc = none < 0 ? -1 : mps__body_store(s, id, data, len, expires_ms, error_r);
    if (rc == 0 && none == 1)
        rc = count_new_body(s, id, error_r);
    if (rc < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

int mps_body_get(mps_store *s, const char *id, uint8_t **data_r, size_t *len_r,
                 char **error_r)
{
    *data_r = NULL;
    *len_r = 0;
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT data FROM bodies WHERE message_id = :id"
                     " AND (expires_ms = 0 OR expires_ms > :now)",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", id);
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc = mps__step_row(s, st, error_r, "store: read body");
    if (rc == 0) {
        size_t len = 0;
        const void *blob = mps__col_blob(st, 0, &len);
        /* One spare NUL byte so callers may treat the body as a string. */
        uint8_t *data = mpu_malloc(len + 1);
        if (len > 0)
            memcpy(data, blob, len);
        data[len] = '\0';
        *data_r = data;
        *len_r = len;
    }
    mps__finish(s, st);
    return rc;
}

int mps_body_cleanup(mps_store *s, int64_t now_ms, int64_t *removed_r, char **error_r)
{
    if (removed_r != NULL)
        *removed_r = 0;
    if (mps__begin(s, error_r) < 0)
        return -1;
    /* The folders' body counts first, from the rows about to go. */
    mps__stmt *st;
    if (mps__prepare(s,
                     "UPDATE folders SET body_count = body_count - x.n FROM"
                     " (SELECT ms.account AS account, ms.folder AS folder, COUNT(*) AS n"
                     "  FROM bodies b INDEXED BY bodies_by_expiry"
                     "  JOIN memberships ms ON ms.message = b.message_id"
                     "  WHERE b.expires_ms BETWEEN 1 AND :now"
                     "  GROUP BY ms.account, ms.folder) AS x"
                     " WHERE folders.account = x.account AND folders.name = x.folder",
                     &st, error_r) < 0) {
        mps__rollback(s);
        return -1;
    }
    mps__bind_int(st, ":now", now_ms);
    int rc = mps__step_done(s, st, error_r, "store: count expired bodies");
    mps__finish(s, st);
    if (rc == 0 && mps__prepare(s, "DELETE FROM bodies WHERE expires_ms BETWEEN 1 AND :now",
                                &st, error_r) == 0) {
        mps__bind_int(st, ":now", now_ms);
        rc = mps__step_done(s, st, error_r, "store: clean body cache");
        mps__finish(s, st);
        if (rc == 0 && removed_r != NULL)
            *removed_r = mps__changes(s);
    } else if (rc == 0) {
        rc = -1;
    }
    if (rc < 0) {
        mps__rollback(s);
        return -1;
    }
    return mps__commit(s, error_r);
}

/* Outbound webhook delivery state: per-endpoint cursors and dead letters. */
#include "store/store-private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int mps_webhook_cursor_get(mps_store *s, const char *endpoint, int64_t *cursor_r,
                           char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, "SELECT cursor FROM webhook_cursors WHERE endpoint = :ep", &st,
                     error_r) < 0)
        return -1;
    mps__bind_text(st, ":ep", endpoint);
    int rc = mps__step_row(s, st, error_r, "store: read webhook cursor");
    if (rc == 0) {
        *cursor_r = mps__col_int64(st, 0);
    }
    mps__finish(s, st);
    return rc;
}

static int cursor_write(mps_store *s, const char *endpoint, int64_t cursor,
                        char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "INSERT INTO webhook_cursors (endpoint, cursor, updated_ms)"
                     " VALUES (:ep, :cursor, :now) ON CONFLICT (endpoint) DO UPDATE SET"
                     " cursor = excluded.cursor, updated_ms = excluded.updated_ms",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":ep", endpoint);
    mps__bind_int(st, ":cursor", cursor);
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc = mps__step_done(s, st, error_r, "store: save webhook cursor");
    mps__finish(s, st);
    return rc;
}

int mps_webhook_cursor_set(mps_store *s, const char *endpoint, int64_t cursor,
                           char **error_r)
{
    return cursor_write(s, endpoint, cursor, error_r);
}

int mps_webhook_dead_letter(mps_store *s, const char *endpoint, int64_t seq,
                            uint32_t attempts, const char *last_error, int64_t cursor,
                            char **error_r)
{
    if (mps__begin(s, error_r) < 0)
        return -1;
    mps__stmt *st;
    if (mps__prepare(s,
                     "INSERT INTO webhook_dead_letters (endpoint, seq, attempts,"
                     " last_error, failed_ms, replay) VALUES (:ep, :seq, :attempts,"
                     " :error, :now, 0) ON CONFLICT (endpoint, seq) DO UPDATE SET"
                     " attempts = excluded.attempts, last_error = excluded.last_error,"
                     " failed_ms = excluded.failed_ms, replay = 0",
                     &st, error_r) < 0)
        goto fail;
    mps__bind_text(st, ":ep", endpoint);
    mps__bind_int(st, ":seq", seq);
    mps__bind_int(st, ":attempts", attempts);
    mps__bind_text(st, ":error", last_error);
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc = mps__step_done(s, st, error_r, "store: save dead letter");
    mps__finish(s, st);
    if (rc < 0 || (cursor >= 0 && cursor_write(s, endpoint, cursor, error_r) < 0))
        goto fail;
    return mps__commit(s, error_r);
fail:
    mps__rollback(s);
    return -1;
}

int mps_webhook_replay(mps_store *s, const char *endpoint, int64_t from, int64_t *count_r,
                       char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "UPDATE webhook_dead_letters SET replay = 1"
                     " WHERE endpoint = :ep AND seq >= :from AND replay = 0",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":ep", endpoint);
    mps__bind_int(st, ":from", from);
    int rc = mps__step_done(s, st, error_r, "store: queue dead letters");
    mps__finish(s, st);
    if (rc == 0 && count_r != NULL)
        *count_r = mps__changes(s);
    return rc;
}

int mps_webhook_replay_next(mps_store *s, const char *endpoint, int64_t *seq_r,
                            char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT seq FROM webhook_dead_letters WHERE endpoint = :ep"
                     " AND replay = 1 ORDER BY seq LIMIT 1",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":ep", endpoint);
    int rc = mps__step_row(s, st, error_r, "store: read dead letters");
    if (rc == 0) {
        *seq_r = mps__col_int64(st, 0);
    }
    mps__finish(s, st);
    return rc;
}

int mps_webhook_dead_delete(mps_store *s, const char *endpoint, int64_t seq,
                            char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "DELETE FROM webhook_dead_letters WHERE endpoint = :ep AND seq = :seq",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":ep", endpoint);
    mps__bind_int(st, ":seq", seq);
    int rc = mps__step_done(s, st, error_r, "store: delete dead letter");
    mps__finish(s, st);
    return rc;
}

int mps_webhook_dead_count(mps_store *s, const char *endpoint, int64_t *dead_r,
                           int64_t *queued_r, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT COUNT(*), COALESCE(SUM(replay), 0) FROM webhook_dead_letters"
                     " WHERE endpoint = :ep",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":ep", endpoint);
    int rc = mps__step(st);
    if (rc == MPS__ROW) {
        *dead_r = mps__col_int64(st, 0);
        *queued_r = mps__col_int64(st, 1);
        rc = 0;
    } else {
        rc = mps__fail(s, error_r, "store: count dead letters");
    }
    mps__finish(s, st);
    return rc;
}

int mps_webhook_dead_list(mps_store *s, const char *endpoint, size_t limit,
                          mps_dead_letter **list_r, size_t *n_r, char **error_r)
{
    *list_r = NULL;
    *n_r = 0;
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT seq, attempts, last_error, failed_ms, replay"
                     " FROM webhook_dead_letters WHERE endpoint = :ep ORDER BY seq"
                     " LIMIT :limit",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":ep", endpoint);
    mps__bind_int(st, ":limit", (int64_t)limit);
    mps_dead_letter *list = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = mps__step(st)) == MPS__ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            list = mpu_realloc(list, cap * sizeof *list);
        }
        mps_dead_letter *d = &list[n++];
        d->seq = mps__col_int64(st, 0);
        d->attempts = (uint32_t)mps__col_int64(st, 1);
        d->last_error = mps__col_text(st, 2);
        d->failed_ms = mps__col_int64(st, 3);
        d->replay = mps__col_int(st, 4);
    }
    mps__finish(s, st);
    if (rc != MPS__DONE) {
        mps_dead_letters_free(&list, n);
        return mps__fail(s, error_r, "store: list dead letters");
    }
    *list_r = list;
    *n_r = n;
    return 0;
}

void mps_dead_letters_free(mps_dead_letter **list, size_t n)
{
    if (list == NULL || *list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free((*list)[i].last_error);
    free(*list);
    *list = NULL;
}

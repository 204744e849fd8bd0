/*
 * Store generations (see store.h). The marker and the epochs table are
 * written with synchronous=FULL on this connection: the commit then
 * fsyncs the WAL, which makes it and every commit before it durable. A
 * cleared marker therefore survives any power loss that could drop the
 * events committed after it, and a new epoch row is on disk before the
 * first event of that epoch is streamed.
 */
#include "store/store-private.h"

#include <stdlib.h>

#include "util/util.h"

static int set_sync(mps_store *s, int full, char **error_r)
{
    /* PostgreSQL (synchronous_commit on, its default) flushes every
     * commit: nothing to raise. */
    if (mps__dialect_of(s) == MPS__POSTGRESQL)
        return 0;
    return mps__exec(s, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     error_r);
}

static int read_int(mps_store *s, const char *sql, int64_t *value_r, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, sql, &st, error_r) < 0)
        return -1;
    int rc = mps__step_row(s, st, error_r, "store: read epoch state");
    if (rc == 0)
        *value_r = mps__col_int64(st, 0);
    mps__finish(s, st);
    return rc;
}

static int write_marker(mps_store *s, int clean, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, "UPDATE store_meta SET value = :v WHERE key = 'clean_shutdown'",
                     &st, error_r) < 0)
        return -1;
    mps__bind_int(st, ":v", clean);
    int rc = mps__step_done(s, st, error_r, "store: write shutdown marker");
    mps__finish(s, st);
    return rc;
}

static int begin_locked(mps_store *s, int64_t *epoch_r, int *unclean_r, char **error_r)
{
    int64_t clean = 0;
    if (read_int(s, "SELECT value FROM store_meta WHERE key = 'clean_shutdown'", &clean,
                 error_r) < 0)
        return -1;
    *unclean_r = clean == 0;
    /* A PostgreSQL server that flushes every commit loses none in a crash,
     * and its seq counter is above every seq ever handed out: an unclean
     * stop needs no new epoch. In a cluster the marker is shared, so a
     * node starting beside running ones always reads it "not clean" and
     * would otherwise begin an epoch each time, which makes SSE clients
     * resuming on another node get events again. With fsync or
     * synchronous_commit off, a crash of the server can lose commits and
     * reuse their seqs: a new epoch then, as on SQLite. */
    if (!clean && mps__dialect_of(s) == MPS__POSTGRESQL) {
        int64_t durable = 0;
        if (read_int(s,
                     "SELECT (current_setting('fsync') = 'on' AND"
                     " current_setting('synchronous_commit') <> 'off')::int",
                     &durable, error_r) < 0)
            return -1;
        clean = durable != 0;
    }
    if (!clean) {
        /* The next seq AUTOINCREMENT hands out: above every seq ever used
         * by what survived, pruned events included. */
        mps__stmt *st;
        if (mps__prepare(
                s,
                mps__sql(s,
                         "INSERT INTO epochs (epoch, first_seq, started_ms) VALUES ("
                         " (SELECT COALESCE(MAX(epoch), 0) + 1 FROM epochs),"
                         " MAX(COALESCE((SELECT seq FROM sqlite_sequence"
                         "   WHERE name = 'events'), 0),"
                         "   (SELECT COALESCE(MAX(seq), 0) FROM events)) + 1, :now)",
                         "INSERT INTO epochs (epoch, first_seq, started_ms) VALUES ("
                         " (SELECT COALESCE(MAX(epoch), 0) + 1 FROM epochs),"
                         " GREATEST((SELECT value FROM store_meta"
                         "   WHERE key = 'event_seq'),"
                         "   (SELECT COALESCE(MAX(seq), 0) FROM events)) + 1, :now)"),
                &st, error_r) < 0)
            return -1;
        mps__bind_int(st, ":now", mpu_now_ms());
        int rc = mps__step_done(s, st, error_r, "store: start an epoch");
        mps__finish(s, st);
        if (rc < 0)
            return -1;
    }
    if (write_marker(s, 0, error_r) < 0)
        return -1;
    return read_int(s, "SELECT MAX(epoch) FROM epochs", epoch_r, error_r) == 0 ? 0 : -1;
}

typedef struct durable_step {
    int64_t *epoch_r;  /* begin: the epoch now current */
    int *unclean_r;    /* begin: the last stop was not clean */
    int clean;         /* end: the marker to write */
} durable_step;

static int durable_body(mps_store *s, const durable_step *step, char **error_r)
{
    if (step->epoch_r != NULL)
        return begin_locked(s, step->epoch_r, step->unclean_r, error_r);
    return write_marker(s, step->clean, error_r);
}

/* One transaction committed with synchronous=FULL, which fsyncs the WAL:
 * it and every commit before it are on disk when this returns 0. */
static int durable_txn(mps_store *s, const durable_step *step, char **error_r)
{
    if (set_sync(s, 1, error_r) < 0)
        return -1;
    int rc = mps__begin(s, error_r);
    if (rc == 0) {
        rc = durable_body(s, step, error_r);
        if (rc < 0)
            mps__rollback(s);
        else
            rc = mps__commit(s, error_r);
    }
    char *err2 = NULL;
    if (set_sync(s, 0, rc < 0 ? &err2 : error_r) < 0 && rc == 0)
        rc = -1;
    free(err2);
    return rc;
}

int mps_epoch_begin(mps_store *s, int64_t *epoch_r, int *unclean_r, char **error_r)
{
    int unclean = 0;
    *epoch_r = 0;
    durable_step step = {.epoch_r = epoch_r, .unclean_r = &unclean};
    int rc = durable_txn(s, &step, error_r);
    if (unclean_r != NULL)
        *unclean_r = rc == 0 && unclean;
    return rc;
}

int mps_epoch_end(mps_store *s, char **error_r)
{
    durable_step step = {.clean = 1};
    return durable_txn(s, &step, error_r);
}

int64_t mps_epoch_current(mps_store *s)
{
    int64_t epoch = 0;
    char *err = NULL;
    if (read_int(s, "SELECT COALESCE(MAX(epoch), 0) FROM epochs", &epoch, &err) != 0)
        epoch = 0;
    free(err);
    return epoch;
}

int mps_epoch_resume(mps_store *s, int64_t epoch, int64_t seq, int64_t *after_r,
                     char **error_r)
{
    *after_r = seq;
    int64_t current = 0;
    if (read_int(s, "SELECT COALESCE(MAX(epoch), 0) FROM epochs", &current, error_r) < 0)
        return -1;
    if (epoch == 0 || epoch == current)
        return 0;
    /* The first epoch after the client's, or the current one when the
     * client's is unknown to this store. */
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT first_seq FROM epochs WHERE epoch > :e OR epoch = :cur"
                     " ORDER BY epoch > :e DESC, epoch LIMIT 1",
                     &st, error_r) < 0)
        return -1;
    mps__bind_int(st, ":e", epoch);
    mps__bind_int(st, ":cur", current);
    int rc = mps__step_row(s, st, error_r, "store: read epochs");
    if (rc == 0) {
        int64_t first = mps__col_int64(st, 0);
        if (first - 1 < seq)
            *after_r = first - 1 < 0 ? 0 : first - 1;
    }
    mps__finish(s, st);
    return rc < 0 ? -1 : 0;
}

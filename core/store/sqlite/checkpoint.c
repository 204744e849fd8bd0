/* Checkpoints handed to another thread (see store-private.h). */
#include "store/sqlite/sqlite-private.h"

/* Replaces SQLite's own auto-checkpoint hook on this connection (a
 * connection has one WAL hook), keeping its behaviour as the backstop. */
static int wal_committed(void *arg, sqlite3 *db, const char *schema, int frames)
{
    struct mps__sqlite *s = arg;
    if (frames >= MPS_CHECKPOINT_BACKSTOP)
        sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    else if (frames >= MPS_CHECKPOINT_PAGES)
        s->checkpoint_wanted(s->checkpoint_arg);
    return SQLITE_OK;
}

void mps_checkpoint_elsewhere(mps_store *store, void (*wanted)(void *arg), void *arg)
{
    struct mps__sqlite *s = mps__sqlite_of(store);
    if (s == NULL)
        return;
    s->checkpoint_wanted = wanted;
    s->checkpoint_arg = arg;
    sqlite3_wal_hook(s->db, wal_committed, s);
}

int mps_checkpoint(mps_store *s, int *wal_frames_r, int *checkpointed_r, char **error_r)
{
    int frames = 0, done = 0;
    if (mps__sqlite_of(s) == NULL)
        return mps__error(error_r, "store: checkpoints are SQLite's");
    int rc =
        sqlite3_wal_checkpoint_v2(mps__sqlite_of(s)->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &done);
    if (wal_frames_r != NULL)
        *wal_frames_r = frames;
    if (checkpointed_r != NULL)
        *checkpointed_r = done;
    /* BUSY: another connection is checkpointing right now; not an error. */
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        return mps__fail(s, error_r, "store: checkpoint");
    return 0;
}

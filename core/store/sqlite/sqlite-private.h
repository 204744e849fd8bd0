/*
 * Private to the SQLite backend (core/store/sqlite): its connection struct
 * and its checkpoints. The store's unit test includes it for the latter.
 */
#ifndef MP_STORE_SQLITE_SQLITE_PRIVATE_H
#define MP_STORE_SQLITE_SQLITE_PRIVATE_H

#include <sqlite3.h>

#include "store/store-private.h"

struct mps__sqlite {
    struct mps_store base;
    sqlite3 *db;
    void (*checkpoint_wanted)(void *arg); /* see mps_checkpoint_elsewhere */
    void *checkpoint_arg;
};

/* The SQLite connection of an SQLite store, NULL for another backend. */
struct mps__sqlite *mps__sqlite_of(mps_store *s);

/*
 * Checkpoints (checkpoint.c). A checkpoint copies the WAL into the database
 * file and, with synchronous=NORMAL, is where the fsyncs happen. By default
 * SQLite runs it on the connection whose commit pushed the WAL past 1,000
 * pages, which puts those fsyncs on that thread: a sync job would wait on
 * the disk several times a second during a bulk download.
 *
 * The pool checkpoints on a thread of its own (checkpointer.c) and hands
 * the job over per connection with mps_checkpoint_elsewhere(): after a
 * commit that leaves at least MPS_CHECKPOINT_PAGES in the WAL, `wanted(arg)`
 * is called (on the committing thread, inside the commit: it must only
 * signal). Should the checkpointing thread fall behind, a commit past
 * MPS_CHECKPOINT_BACKSTOP pages still checkpoints on its own connection, so
 * the WAL stays bounded. mps_checkpoint() runs a passive checkpoint (it
 * never blocks readers or writers) and reports the WAL's frames and how
 * many of them are now in the database file (either may be NULL).
 */
#define MPS_CHECKPOINT_PAGES 1000
#define MPS_CHECKPOINT_BACKSTOP 16000
void mps_checkpoint_elsewhere(mps_store *s, void (*wanted)(void *arg), void *arg);
int mps_checkpoint(mps_store *s, int *wal_frames_r, int *checkpointed_r, char **error_r);

#endif

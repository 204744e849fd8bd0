/* Batch slots: the driver stages changes; a commit writes them, their
 * events and the cursor in one store transaction (see store.h). */
#include "host/host_private.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/util.h"

/* Raw bodies staged before a commit is forced, whatever the message count:
 * 500 messages of a few kilobytes stay far below it, 500 large attachments
 * would not. */
#define MPH_INGEST_MAX_BYTES ((size_t)16 * 1024 * 1024)

static void new_mail(const char *account, const char *id, void *arg)
{
    const mphost_env *env = arg;
    env->new_mail(env->owner, account, id);
}

/* New mail is warmed into the body cache as soon as it is stored. */
static void watch_new_mail(mp_batch *batch)
{
    if (!batch->p.history)
        mps_batch_on_new(batch->staged, new_mail, (void *)batch->env);
}

mp_batch *mphost_batch_begin(mp_account *acct, const mphost_batch_params *p)
{
    mp_batch *b = mpu_calloc(1, sizeof *b);
    b->acct = acct;
    b->env = mphost_env_of(acct);
    b->p = *p;
    b->staged = mps_batch_new(acct->id, p->folder);
    return b;
}

void mphost_batch_note_reset(mp_batch *batch, const char *reason)
{
    mphost_batch_reset(batch, reason);
}

mp_status mphost_batch_commit_now(mp_batch *batch, const char *backfill_pos,
                                  int backfill_done, mp_error *err)
{
    return mphost_batch_commit(batch, NULL, backfill_pos, backfill_done, err);
}

mp_status mphost_batch_end(mp_batch **batchp, mp_status st, mp_error *err,
                           mphost_batch_stats *stats_r)
{
    mp_batch *b = *batchp;
    if (st == MP_OK) {
        st = mphost_writeback_wait(b, err);
    } else {
        mp_error ignored; /* the slot's own error is the one to report */
        memset(&ignored, 0, sizeof ignored);
        (void)mphost_writeback_wait(b, &ignored);
    }
    if (st == MP_OK && mps_batch_pending(b->staged) > 0)
        st = mphost_batch_commit(b, NULL, NULL, 0, err);
    mphost_writeback_end(b);
    mps_batch_free(&b->staged);
    mphost_call_end();
    if (stats_r != NULL)
        *stats_r = b->stats;
    free(b);
    *batchp = NULL;
    return st;
}

mp_status mphost_batch_change(mp_batch *batch, const mp_change *change, mp_error *err)
{
    return mphost_batch_change_in(batch, change, NULL, err);
}

mp_status mphost_batch_change_in(mp_batch *batch, const mp_change *change,
                                 const mps_membership *mem, mp_error *err)
{
    if (change == NULL || change->id == NULL || *change->id == '\0')
        return mp_fail(err, MP_FATAL, "change without an id");
    if (change->kind < MP_CHANGE_NEW || change->kind > MP_CHANGE_DELETED)
        return mp_fail(err, MP_FATAL, "change of unknown kind %d", (int)change->kind);
    /* An account_delta batch belongs to no folder: only the change can say
     * where the message is (DELETED needs nothing: it leaves them all). */
    if (batch->p.folder == NULL && mem == NULL && change->kind != MP_CHANGE_DELETED)
        return mp_fail(err, MP_FATAL,
                       "driver bug: change of %s in an account_delta batch without"
                       " folders (use batch_change_folders)",
                       change->id);
    mp_change copy = *change;
    /* History loaded by bootstrap or backfill is never "new" mail, whatever
     * the driver says: consumers must not be flooded on first connect. */
    if (batch->p.history && copy.kind == MP_CHANGE_NEW)
        copy.kind = MP_CHANGE_SYNCED;
    /* Keep bodies only when the admin asked for it or when the change is
     * small enough to be worth caching for the reader. */
    if (copy.raw != NULL && !batch->p.fetch_bodies && copy.raw_len > 256 * 1024) {
        copy.raw = NULL;
        copy.raw_len = 0;
    }
    mps_batch_add_in(batch->staged, &copy, mem);
    batch->stats.changes++;
    /* Bound each store transaction (and the memory a batch holds): commit
     * what is staged without moving the cursor, on a helper thread while
     * the driver goes on (host_writeback.c). Should the daemon die before
     * the driver's own commit, the changes are delivered again from the old
     * cursor and fold into what is stored, so no event repeats. */
    if ((batch->p.ingest_batch_size > 0 &&
         mps_batch_pending(batch->staged) >= batch->p.ingest_batch_size) ||
        mps_batch_pending_bytes(batch->staged) >= MPH_INGEST_MAX_BYTES) {
        watch_new_mail(batch);
        return mphost_writeback_start(batch, err);
    }
    return MP_OK;
}

mp_status mphost_batch_commit(mp_batch *batch, const char *cursor, const char *backfill_pos,
                           int backfill_done, mp_error *err)
{
    if (batch->p.folder == NULL && (cursor != NULL || backfill_pos != NULL || backfill_done))
        return mp_fail(err, MP_FATAL,
                       "driver bug: batch_commit of an account_delta batch with a folder"
                       " cursor or backfill position (commit the account cursor with"
                       " batch_account_cursor and pass NULL)");
    /* What a write-behind commit still holds comes first. */
    mp_status st = mphost_writeback_wait(batch, err);
    if (st != MP_OK)
        return st;
    mps_commit_result result;
    char *error = NULL;
    memset(&result, 0, sizeof result);
    watch_new_mail(batch);
    if (mps_batch_commit(batch->p.store, batch->staged, cursor, backfill_pos,
                         backfill_done ? 1 : (backfill_pos != NULL ? 0 : -1),
                         batch->p.retention_ms, &result, &error) < 0) {
        mp_fail(err, MP_RETRY, "store commit failed: %s", error);
        free(error);
        return MP_RETRY;
    }
    if (cursor != NULL)
        batch->stats.cursor_committed = 1;
    if (backfill_done)
        batch->stats.backfill_done_seen = 1;
    batch->stats.events += result.events;
    batch->stats.new_messages += result.new_messages;
    batch->env->committed(batch->env->owner, (uint64_t)result.applied, result.last_seq);
    return MP_OK;
}

void mphost_batch_account_cursor(mp_batch *batch, const char *cursor)
{
    mps_batch_account_cursor(batch->staged, cursor);
}

mp_status mphost_batch_state(mp_batch *batch, const char *key, const char *value,
                             mp_error *err)
{
    /* Refused here, where the driver can be told, not at the commit. */
    char *error = NULL;
    if (mps_state_check(key, value, &error) < 0) {
        mp_fail(err, MP_FATAL, "%s", error);
        free(error);
        return MP_FATAL;
    }
    mps_batch_state(batch->staged, key, value);
    return MP_OK;
}

mp_status mphost_batch_change_folders(mp_batch *batch, const mp_change *change,
                                      const mp_folders *folders, mp_error *err)
{
    if (folders == NULL)
        return mphost_batch_change_in(batch, change, NULL, err);
    mps_membership mem = {
        .folders = folders->now_in,
        .n_folders = folders->now_in != NULL ? folders->n_now_in : 0,
        .added = folders->added,
        .n_added = folders->added != NULL ? folders->n_added : 0,
        .removed = folders->removed,
        .n_removed = folders->removed != NULL ? folders->n_removed : 0,
    };
    return mphost_batch_change_in(batch, change, &mem, err);
}

void mphost_batch_reset(mp_batch *batch, const char *reason)
{
    if (batch->p.folder == NULL) {
        /* No folder to reset: the driver returns MP_RESYNC instead. */
        mpu_warn(batch->acct->id, "driver bug: batch_reset in an account_delta batch"
                                  " ignored (return MP_RESYNC)");
        return;
    }
    mps_batch_reset(batch->staged, reason != NULL ? reason : "reset at provider");
    batch->env->folder_reset(batch->env->owner);
}

int64_t mphost_batch_deadline_ms(mp_batch *batch)
{
    return batch->p.deadline_ms;
}

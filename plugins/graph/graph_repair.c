/*
 * Sparse-metadata repair. Graph sometimes answers a message read with
 * summary fields missing (the key absent, not null: receivedDateTime,
 * subject, from, isRead, parentFolderId). Such a message is stored with
 * what is known and queued in its folder's record (graph_fstate.h); each
 * delta run of the folder re-reads the entries that are due, with JSON
 * $batch, at a slower cadence: 15 minutes, then doubling up to 12 hours,
 * at most GRAPH_REPAIR_TRIES reads. A complete answer is emitted as SYNCED
 * (a stored message takes the fields silently; a flag that changed is a
 * message.updated), one that moved away leaves this folder's list (the
 * other folder's delta has it), one that is gone is deleted.
 */
#include "graph_driver.h"

#include <stdlib.h>
#include <string.h>

/* Repairs served per delta run: a burst of sparse answers waits. */
#define REPAIR_PER_RUN 100u

mp_status graph_repair_run(graph_account *a, mp_batch *batch, const char *fid,
                           const char *folder, graph_fstate *fs, mp_error *err)
{
    int64_t now = graph_host->now_ms();
    size_t idx[REPAIR_PER_RUN];
    size_t n = graph_repair_due(fs, now, idx, REPAIR_PER_RUN);
    if (n == 0)
        return MP_OK;
    char **ids = calloc(n, sizeof *ids);
    graph_msg *msgs = calloc(n, sizeof *msgs);
    int *gone = calloc(n, sizeof *gone);
    if (ids == NULL || msgs == NULL || gone == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        ids[i] = strdup(fs->repair[idx[i]].id);
        if (ids[i] == NULL)
            abort();
    }
    mp_status st = graph_read_messages(a, (const char *const *)ids, n, msgs, gone, err);
    for (size_t i = 0; i < n && st == MP_OK; i++) {
        if (gone[i]) {
            mp_change ch = {.kind = MP_CHANGE_DELETED, .id = ids[i], .size = -1};
            st = graph_host->batch_change_folders(batch, &ch, NULL, err);
            graph_repair_drop(fs, ids[i]);
        } else if (msgs[i].parent_id != NULL && strcmp(msgs[i].parent_id, fid) != 0) {
            graph_repair_drop(fs, ids[i]);
        } else if (msgs[i].missing == 0) {
            st = graph_emit(a, batch, MP_CHANGE_SYNCED, folder, &msgs[i], NULL, err);
            graph_repair_drop(fs, ids[i]);
        } else if (graph_repair_again(fs, ids[i], now)) {
            graph_log(a, MP_LOG_WARNING,
                      "message %s in \"%s\": Graph still gives an incomplete summary after"
                      " %d reads; keeping what is known",
                      ids[i], folder, GRAPH_REPAIR_TRIES);
        }
    }
    for (size_t i = 0; i < n; i++) {
        graph_msg_clear(&msgs[i]);
        free(ids[i]);
    }
    free(ids);
    free(msgs);
    free(gone);
    return st;
}

/*
 * The check after the switch. The coverage walk (graph_bootstrap.c) lists
 * the folder's messages once, and the unfiltered delta the folder switches
 * to reports what changes after that; a flag changed meanwhile is applied
 * by the walk, and a message moved to another synced folder is taken by
 * that folder. What neither sees is a stored message hard-deleted (or moved
 * to a folder that is not synced) while the walk ran: it was never in the
 * walk's pages, and no later round names it. So once the folder's delta
 * covers everything, its stored messages are read back once with JSON
 * $batch, VERIFY_PER_RUN per delta sync in id order (the last id checked
 * is kept in the folder's record): 404 is a delete, another folder a move.
 * The cost is one $batch per 20 stored messages, once per folder, spread
 * over the syncs (20,000 stored messages: 1,000 requests over 200 syncs).
 */
#include "graph_driver.h"

#include <stdlib.h>
#include <string.h>

#define VERIFY_PER_RUN 100u

typedef struct slice {
    const char *after; /* ids after this one (NULL: from the first)      */
    char *ids[VERIFY_PER_RUN];
    size_t n;
} slice;

/* Keep the VERIFY_PER_RUN smallest ids after `after`, in order, whatever
 * order the host iterates in. */
static int collect(const mp_stored_message *m, void *arg)
{
    slice *s = arg;
    if (m->id == NULL || (s->after != NULL && strcmp(m->id, s->after) <= 0))
        return 0;
    size_t pos = s->n;
    while (pos > 0 && strcmp(s->ids[pos - 1], m->id) > 0)
        pos--;
    if (pos > 0 && strcmp(s->ids[pos - 1], m->id) == 0)
        return 0; /* listed twice */
    if (pos == VERIFY_PER_RUN)
        return 0;
    if (s->n == VERIFY_PER_RUN) {
        free(s->ids[VERIFY_PER_RUN - 1]);
        s->n--;
    }
    memmove(&s->ids[pos + 1], &s->ids[pos], (s->n - pos) * sizeof s->ids[0]);
    s->ids[pos] = strdup(m->id);
    if (s->ids[pos] == NULL)
        abort();
    s->n++;
    return 0;
}

mp_status graph_verify_step(graph_account *a, mp_batch *batch, const char *fid,
                            const char *folder, graph_fstate *fs, mp_error *err)
{
    slice s;
    memset(&s, 0, sizeof s);
    s.after = fs->check;
    mp_status st = graph_host->stored_messages(a->acct, folder, collect, &s, err);
    if (st != MP_OK)
        goto out;
    if (s.n > 0) {
        graph_msg *msgs = calloc(s.n, sizeof *msgs);
        int *gone = calloc(s.n, sizeof *gone);
        if (msgs == NULL || gone == NULL)
            abort();
        st = graph_read_messages(a, (const char *const *)s.ids, s.n, msgs, gone, err);
        for (size_t i = 0; i < s.n && st == MP_OK; i++) {
            if (gone[i]) {
                mp_change ch = {.kind = MP_CHANGE_DELETED, .id = s.ids[i], .size = -1};
                st = graph_host->batch_change_folders(batch, &ch, NULL, err);
            } else if (msgs[i].parent_id != NULL && strcmp(msgs[i].parent_id, fid) != 0) {
                st = graph_emit_moved(a, batch, folder,
                                      graph_folder_by_id(a, msgs[i].parent_id), &msgs[i], err);
            }
        }
        for (size_t i = 0; i < s.n; i++)
            graph_msg_clear(&msgs[i]);
        free(msgs);
        free(gone);
    }
    if (st == MP_OK) {
        if (s.n > 0) {
            free(fs->check);
            fs->check = strdup(s.ids[s.n - 1]);
            if (fs->check == NULL)
                abort();
        }
        if (s.n < VERIFY_PER_RUN) {
            fs->checked = 1;
            free(fs->check);
            fs->check = NULL;
        }
    }
out:
    for (size_t i = 0; i < s.n; i++)
        free(s.ids[i]);
    return st;
}

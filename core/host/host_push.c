/* The push hints a sync run took over, for the driver's sync_hint slot.
 *
 * A sync run reads the account's stored hints when it starts (sync_job.c)
 * and deletes them only once it has succeeded, so a hint outlives a failed
 * or crashed run. While it runs, the hints are lent to the worker thread
 * that runs it: sync_hint is a poll slot, called on that thread from
 * bootstrap/delta/account_delta, so a thread-local pointer needs no lock
 * and a call from any other thread (a fetch, a timer) sees no hints. */
#include "host/host_private.h"

#include <string.h>

static _Thread_local const struct mp_account *run_account;
static _Thread_local const mps_push_take *run_take;

void mphost_hints_lend(const struct mp_account *acct, const mps_push_take *take)
{
    run_account = acct;
    run_take = take;
}

void mphost_hints_return(void)
{
    run_account = NULL;
    run_take = NULL;
}

const char *mphost_sync_hint(mp_account *acct, const char *folder)
{
    if (acct == NULL || acct != run_account || run_take == NULL)
        return NULL;
    for (size_t i = 0; i < run_take->n; i++) {
        const mps_push_hint *h = &run_take->hints[i];
        if (folder == NULL ? h->folder == NULL
                           : h->folder != NULL && strcmp(h->folder, folder) == 0)
            return h->cursor_hint;
    }
    return NULL;
}

/* The services the daemon lends the host layer (core/host/host.h): the
 * calling thread's store connection, commit notification, sync triggers,
 * push bookkeeping, new-mail warming and counters. The host reaches the
 * daemon through this table only. */
#include "daemon/daemon.h"

#include "daemon/prefetch.h"

static mps_store *env_store(void *owner)
{
    return mpd_store(owner);
}

static void env_thread_exit(void *owner)
{
    mpd_store_thread_cleanup(owner);
}

static void env_committed(void *owner, uint64_t applied, int64_t last_seq)
{
    mpd *d = owner;
    atomic_fetch_add(&d->m_changes, applied);
    if (last_seq > 0)
        mpd_events_committed(d, last_seq);
}

static void env_new_mail(void *owner, const char *account, const char *id)
{
    mpd_prefetch_new_mail(owner, account, id);
}

static void env_sync(void *owner, mp_account *acct, const char *folder, const char *reason)
{
    mpd *d = owner;
    if (d->sched != NULL)
        mpj_trigger_async(d->sched, acct->id, MPJ_SYNC, folder, reason);
}

static void env_push_noted(void *owner, mp_account *acct)
{
    (void)owner;
    mpd_account_note_push(acct);
}

static void env_push_state(void *owner, mp_account *acct, const char *text, int live)
{
    atomic_fetch_add(&acct->push_reports, 1);
    mpd_set_push_state(owner, acct->id, text);
    mpd_account_set_push_live(acct, live);
}

static void env_folder_reset(void *owner)
{
    mpd *d = owner;
    atomic_fetch_add(&d->m_folder_resets, 1);
}

static void env_push_counted(void *owner, mphost_push_outcome outcome)
{
    mpd *d = owner;
    atomic_ullong *c = outcome == MPHOST_PUSH_ACCEPTED  ? &d->m_push_accepted
                       : outcome == MPHOST_PUSH_IGNORED ? &d->m_push_ignored
                                                        : &d->m_push_rejected;
    atomic_fetch_add(c, 1);
}

void mpd_host_env_init(mpd *d)
{
    d->host_env = (mphost_env){
        .owner = d,
        .base = d->base,
        .store = env_store,
        .thread_exit = env_thread_exit,
        .committed = env_committed,
        .new_mail = env_new_mail,
        .sync = env_sync,
        .push_noted = env_push_noted,
        .push_state = env_push_state,
        .folder_reset = env_folder_reset,
        .push_counted = env_push_counted,
    };
    mphost_set_global_base(d->base);
}

void mpd_host_publish_knobs(const mpd_knobs *k)
{
    mphost_settings s = {
        .sync_batch_size = k->sync_batch_size,
        .fetch_bodies = k->fetch_bodies,
        .backfill_batch_size = k->backfill_batch_size,
        .retention_days = (uint32_t)(k->retention_ms / 86400000),
    };
    mphost_publish_settings(&s);
}

/*
 * The daemon's in-memory index of stored webhook subscriptions, behind the
 * subscription_get and subscription_lookup host slots: push_verify runs on
 * the loop thread and must answer within milliseconds, so it never asks
 * the store. The store stays the truth; the index mirrors it:
 *   - account_start (registry.c, loop thread) loads an account's stored
 *     subscription when it opens a webhook account (daemon start, reload);
 *   - subscription upkeep (sync_job.c, worker thread) puts what it just
 *     stored, and forgets what it deleted;
 *   - retiring an account (registry.c) forgets it.
 * One index per daemon (d->subs), guarded by a mutex: any thread.
 */
#ifndef MP_HOST_SUBSCRIPTION_H
#define MP_HOST_SUBSCRIPTION_H

#include <stdint.h>

#include <mailpulse/driver.h>

#include "daemon/daemon.h"

/* Index the subscription of `acct` (replacing the one indexed). secret
 * NULL keeps the secret indexed before, as mps_subscription_put keeps the
 * stored one. Nothing happens for an account already removed from the
 * registry (a job that outlived its account). */
void mphost_subs_put(struct mp_account *acct, const char *provider_id, int64_t expires_at,
                     const char *cursor_hint, const char *secret);
/* Drop the entry of account `id` (no-op when none). */
void mphost_subs_forget(mpd *d, const char *id);
/* Free the daemon's index (shutdown, after the registry was cleared). */
void mphost_subs_free(mpd *d);

/* The host slots (driver.h). */
mp_status mphost_subscription_get(mp_account *acct, mp_subscription *sub_r, mp_error *err);
mp_status mphost_subscription_lookup(mp_instance *inst, const char *provider_id,
                                     mp_account **acct_r, mp_subscription *sub_r,
                                     mp_error *err);

#endif

/*
 * The objects a driver sees as opaque mp_instance and mp_account: what the
 * host layer needs of them and what the daemon's registry keeps there.
 * The registry (core/daemon/registry.c) creates, reference-counts and
 * frees them; the host layer (core/host) reads them to serve the SDK's host
 * table and never looks inside `d`, the owner. Lifetimes and locking are
 * described in core/daemon/daemon.h.
 */
#ifndef MP_HOST_OBJECTS_H
#define MP_HOST_OBJECTS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <mailpulse/driver.h>

#include "config/config.h"
#include "host/host.h"
#include "loader/loader.h"

struct mpd;
struct mphost_env;
struct mp_hostobj;
struct mphost_subs;

struct mp_instance {
    atomic_int refs;
    struct mpd *d;            /* the owner (opaque to the host layer)          */
    char *name;               /* file stem                                    */
    char *file;
    const struct mphost_env *env; /* the host services of this instance's
                                     owner (host.h); set at creation    */
    char *driver_name;
    char *content_hash;       /* to tell a changed file on reload              */
    mpc_instance_conf *conf;  /* owned                                         */
    mpl_driver *drv;          /* NULL when refused or disabled                 */
    const mp_driver *desc;    /* &drv->desc or NULL                            */
    char *status;             /* "loaded", "refused", "disabled", "init-failed" */
    char *error;              /* why, or NULL                                  */
    void *state;              /* driver instance state                         */
    struct mphost_subs *subs; /* stored subscriptions' index (host.h)        */
    int initialized;
    uint32_t poll_interval_s; /* instance-level override or driver default     */
    struct mp_account **accounts;
    size_t n_accounts;
};

struct mp_account {
    atomic_int refs;
    struct mpd *d;            /* the owner (opaque to the host layer)          */
    char *id;
    mp_instance *inst;        /* holds a reference                             */
    const mpc_node *cfg;      /* borrowed from inst->conf                      */
    int enabled;
    atomic_int open;          /* account_open succeeded (set on the loop thread,
                                 read by workers)                              */
    /* Cluster mode: a webhook account another node holds, opened with its
     * driver for push_verify only (registry.c). `open` stays 0: nothing
     * schedules, syncs or fetches it here, and the host drops what it
     * would write (host.c); a push_hint is stored for the holder. */
    atomic_int standby;
    void *state;              /* driver account state                          */
    char **folders_allowed;   /* NULL: all folders                             */
    size_t n_folders_allowed;
    uint32_t poll_interval_s;
    atomic_int push_live;     /* push reported working: poll = reconcile      */
    atomic_uint push_reports; /* push states the driver reported (counted)    */
    _Atomic int64_t push_live_since_ms; /* when push last became live       */
    _Atomic int64_t last_push_ms;  /* last push notification (any kind)    */
    atomic_int push_silent;   /* flagged: no push for push_silence_hours      */
    _Atomic int64_t push_silent_since_ms;
    int push_started;         /* stream push started (loop thread)             */
    unsigned open_retries;    /* account_open / push_start MP_RETRY in a row
                                 (loop thread; registry.c's backoff)           */
    mp_timer *open_retry_timer; /* the pending retry of either (loop_objs)    */
    atomic_int stopped;       /* REAUTH / FATAL: parked until reload or API sync */
    atomic_int removed;       /* dropped from the registry                     */
    /* A reload dropped the account from the configuration: its webhook
     * subscription is cancelled (push_cancel, on a worker) before it closes
     * (registry.c). 1: due, 2: running. */
    atomic_int push_cancel;
    atomic_int backfill_wanted; /* set by a sync job, read by mpd_job_done    */
    atomic_int probe_wanted;  /* an admin asked for a re-probe               */
    pthread_mutex_t fetch_lock; /* one fetch at a time per account            */
    pthread_mutex_t lock;     /* the fields below                              */
    int64_t last_folder_list_ms;
    /* A status the store could not record (disk full, I/O error): the API
     * shows it instead of the stale stored one until a status is recorded. */
    char *unrecorded_status;
    char *unrecorded_error;
    /* The account's view for GET /v1/accounts and /metrics, mirrored from
     * what the daemon records in the store (core/daemon/status.c) so
     * listing thousands of accounts reads no store. NULL: never set. */
    char *view_status;
    char *view_error;
    char *view_push_state;
    int64_t view_last_sync_ms;  /* 0: never                                */
    int view_seeded;            /* last_sync/last_push read from the store */
    struct mp_hostobj *loop_objs; /* timers and watches, loop thread only     */
    /* An admin's preflight (the check slot, core/daemon/check.c): the loop
     * thread records a request and answers the API from `check`; the
     * worker running the slot moves it to running and done/error. */
    pthread_mutex_t check_lock; /* `check`                                   */
    mphost_check_record check;
};

#endif

/*
 * The daemon's runtime model, shared by the host services (core/host), the
 * sync executor, the API facade and main. Not a public interface.
 *
 * Objects and lifetimes:
 *   mpd          one per process; owns settings, the loop, the scheduler, the
 *                HTTP server, the loop thread's store connection and the
 *                registry of driver instances.
 *   mp_instance  one per plugins.d file; holds the loaded driver (or why it
 *                was refused) and its accounts. Reference-counted: the
 *                registry and each of its accounts hold one.
 *   mp_account   one per configured account. Reference-counted: the
 *                registry holds one, every job running for it holds one.
 *                When the last reference goes, the account is closed on the
 *                loop thread (account_close must run there) and releases its
 *                instance; the last instance reference deinits the driver
 *                and unloads it.
 *
 * The registry (instances and their account arrays) changes only on the
 * loop thread, under d->registry_lock (write); worker threads look
 * accounts up under the same lock (read) and take a reference.
 */
#ifndef MP_DAEMON_DAEMON_H
#define MP_DAEMON_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <event2/event.h>

#include <mailpulse/driver.h>

#include "config/config.h"
#include "loader/loader.h"
#include "sched/sched.h"
#include "store/store.h"

typedef struct mpd mpd;
struct mph_server;
struct mpw_service;
struct mpo_service;
struct mp_hostobj;

/* Settings a job needs, copied at job start so a reload never changes them
 * under a running job ("changed settings apply on the next run"). */
typedef struct mpd_knobs {
    uint32_t sync_batch_size;
    int fetch_bodies;
    mp_backfill_mode backfill_mode;
    uint32_t bootstrap_max;
    uint32_t backfill_batch_size;
    uint32_t job_budget_s;
    uint32_t max_per_folder;
    int64_t retention_ms;
    uint32_t folder_list_interval_s;
    uint32_t ingest_batch_size;
    uint32_t prefetch_per_run;   /* bodies per account per warming run    */
    uint32_t prefetch_queue_max;
    uint32_t push_silence_hours;
} mpd_knobs;

struct mp_instance {
    atomic_int refs;
    mpd *d;
    char *name;               /* file stem                                    */
    char *file;
    char *driver_name;
    char *content_hash;       /* to tell a changed file on reload              */
    mpc_instance_conf *conf;  /* owned                                         */
    mpl_driver *drv;          /* NULL when refused or disabled                 */
    const mp_driver *desc;    /* &drv->desc or NULL                            */
    char *status;             /* "loaded", "refused", "disabled", "init-failed" */
    char *error;              /* why, or NULL                                  */
    void *state;              /* driver instance state                         */
    int initialized;
    uint32_t poll_interval_s; /* instance-level override or driver default     */
    struct mp_account **accounts;
    size_t n_accounts;
};

struct mp_account {
    atomic_int refs;
    mpd *d;
    char *id;
    mp_instance *inst;        /* holds a reference                             */
    const mpc_node *cfg;      /* borrowed from inst->conf                      */
    int enabled;
    atomic_int open;          /* account_open succeeded (set on the loop thread,
                                 read by workers)                              */
    void *state;              /* driver account state                          */
    char **folders_allowed;   /* NULL: all folders                             */
    size_t n_folders_allowed;
    uint32_t poll_interval_s;
    atomic_int push_live;     /* push reported working: poll = reconcile      */
    _Atomic int64_t push_live_since_ms; /* when push last became live       */
    _Atomic int64_t last_push_ms;  /* last push notification (any kind)    */
    atomic_int push_silent;   /* flagged: no push for push_silence_hours      */
    _Atomic int64_t push_silent_since_ms;
    int push_started;         /* stream push started (loop thread)             */
    atomic_int stopped;       /* REAUTH / FATAL: parked until reload or API sync */
    atomic_int removed;       /* dropped from the registry                     */
    atomic_int backfill_wanted; /* set by a sync job, read by mpd_job_done    */
    atomic_int probe_wanted;  /* an admin asked for a re-probe               */
    pthread_mutex_t fetch_lock; /* one fetch at a time per account            */
    pthread_mutex_t lock;     /* the fields below                              */
    int64_t last_folder_list_ms;
    /* A status the store could not record (disk full, I/O error): the API
     * shows it instead of the stale stored one until a status is recorded. */
    char *unrecorded_status;
    char *unrecorded_error;
    struct mp_hostobj *loop_objs; /* timers and watches, loop thread only     */
};

struct mpd {
    mp_settings *settings;    /* loop thread; swapped on reload                */
    pthread_mutex_t knobs_lock;
    mpd_knobs knobs;
    char *config_path;        /* NULL: embedded default                        */
    char *db_path;
    struct event_base *base;
    pthread_t loop_thread;
    mps_store *store;         /* the loop thread's connection                  */
    mpj_sched *sched;
    struct mph_server *http;
    struct mpw_service *webhooks; /* outbound webhook delivery (core/webhook) */
    struct mpo_service *oauth;    /* OAuth2 tokens for drivers (core/oauth)   */
    char *token;
    int64_t started_ms;

    pthread_rwlock_t registry_lock;
    mp_instance **instances;
    size_t n_instances;

    /* Event notification from any thread to the loop's watchers. */
    struct event *events_ev;
    _Atomic int64_t last_seq;
    struct mpd_watcher *watchers;
    int64_t epoch;            /* store generation (events.c), set at start     */
    /* Highest seq pruned by outbox retention; raised before the prune
     * commits, so a reader that finds it at or below its position after a
     * read missed nothing. */
    _Atomic int64_t outbox_horizon;
    struct event *outbox_timer; /* retention runs (maintenance.c)            */
    int outbox_running;         /* a retention run is on a worker           */
    struct mp_hostobj *global_objs; /* timers/watches without an account     */
    struct mpd_prefetch *prefetch;  /* body-cache warming (prefetch.h)       */
    struct mpd_fetchq *fetchq;      /* fetches on demand per account (fetch.c) */
    struct mpd_checkpointer *checkpointer; /* store checkpoints (checkpointer.c) */

    struct event *sig_hup, *sig_term, *sig_int;

    /* Counters for /metrics. */
    atomic_ullong m_sync_runs, m_sync_failures, m_backfill_runs, m_changes,
        m_push_accepted, m_push_rejected, m_fetch_hits, m_fetch_misses,
        m_fetch_errors, m_folder_resets, m_reconcile_runs, m_push_silences;
};

/* ---- lifecycle (main.c) ---- */
int mpd_reload(mpd *d);

/* ---- registry.c ---- */

/* Build the registry from plugins_dir (first start) or apply the difference
 * (reload). Errors in files are logged; the daemon keeps running. */
void mpd_registry_apply(mpd *d, mpc_instance_conf **confs, size_t n);
void mpd_registry_clear(mpd *d);
/* Reload: every open account parked by REAUTH or FATAL (`stopped`) is
 * unparked and gets one sync, so replaced credentials take effect; one
 * still failing parks again (its status unchanged, no new event). */
void mpd_registry_resume_stopped(mpd *d);
/* Find by id and take a reference (any thread). NULL if unknown. */
struct mp_account *mpd_account_get(mpd *d, const char *id);
void mpd_account_unref(struct mp_account *acct);
/* Loop thread, registry borrowed: no reference taken. */
struct mp_account *mpd_account_peek(mpd *d, const char *id);
mp_instance *mpd_instance_peek(mpd *d, const char *name);
void mpd_account_set_push_live(struct mp_account *acct, int live);
void mpd_account_apply_intervals(struct mp_account *acct);
/* A push notification (webhook hint or stream event) arrived: any thread. */
void mpd_account_note_push(struct mp_account *acct);

/* ---- store access (store_tls.c) ---- */

/* The store connection of the calling thread (loop or worker), opened on
 * first use. NULL when the database cannot be opened (logged). */
mps_store *mpd_store(mpd *d);
void mpd_store_thread_cleanup(void);

/* ---- store checkpoints (checkpointer.c) ---- */

/* One thread with its own connection runs the store's checkpoints, so that
 * their fsyncs never stall the loop or a sync job. Start before any other
 * connection is adopted; adopt every connection that writes (store_tls.c
 * does); stop once the writers are gone (a last checkpoint runs then); free
 * after the last adopted connection is closed. Without the thread (it could
 * not start: logged) connections keep checkpointing themselves. */
void mpd_checkpointer_start(mpd *d);
void mpd_checkpointer_adopt(mpd *d, mps_store *s);
void mpd_checkpointer_stop(mpd *d);
void mpd_checkpointer_free(mpd *d);

/* ---- jobs (sync_job.c) ---- */
void mpd_run_job(const mpj_job *job, mpj_result *result, void *arg);
void mpd_job_done(const mpj_job *job, const mpj_result *result, void *arg);
mpd_knobs mpd_knobs_get(mpd *d);
void mpd_knobs_from_settings(const mp_settings *s, mpd_knobs *knobs_r);

/* ---- events.c ---- */
void mpd_events_init(mpd *d);
void mpd_events_free(mpd *d);
/* Any thread: events up to `seq` were committed. */
void mpd_events_committed(mpd *d, int64_t seq);

/* ---- status helpers (status.c) ---- */
/* The status (and error) the store could not record for `a`, as copies
 * to free, or 0 when the stored one is current. Any thread. */
int mpd_account_unrecorded(struct mp_account *a, char **status_r, char **error_r);
void mpd_set_account_status(mpd *d, const char *account, const char *status,
                            const char *error);
void mpd_set_push_state(mpd *d, const char *account, const char *state);

/* ---- maintenance.c ---- */
void mpd_maintenance_start(mpd *d);
/* Loop thread, before the scheduler is freed: no new maintenance runs. */
void mpd_maintenance_stop(mpd *d);

/* ---- metrics.c ---- */
char *mpd_metrics_text(mpd *d);

/* ---- host table (core/host) ---- */
const mp_host *mpd_host_table(void);
void mpd_host_set_daemon(mpd *d);
/* Free all timers and watches of an account (account NULL: global ones). */
void mpd_host_release_loop_objs(struct mp_hostobj **list);

#endif

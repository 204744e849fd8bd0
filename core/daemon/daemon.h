/*
 * The daemon's runtime model, shared by the host services (core/host), the
 * sync executor, the API facade and main. Not a public interface.
 *
 * Objects and lifetimes:
 *   mpd          one per process; owns settings, the loop, the scheduler, the
 *                HTTP server, the store's connection pool, the event
 *                stream (core/events) and the registry of driver instances;
 *                it creates the services (webhooks, the NATS bus relay,
 *                HTTP) and hands them what they need.
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
#include "events/events.h"
#include "host/host.h"
#include "host/host_objects.h"
#include "loader/loader.h"
#include "sched/sched.h"
#include "store/pool.h"
#include "store/store.h"

typedef struct mpd mpd;
struct mph_server;
struct mpw_service;
struct mpb_relay;
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

struct mpd {
    mp_settings *settings;    /* loop thread; swapped on reload                */
    pthread_mutex_t knobs_lock;
    mpd_knobs knobs;
    char *config_path;        /* NULL: embedded default                        */
    char *db_path;
    struct event_base *base;
    pthread_t loop_thread;
    mps_pool *pool;           /* the store's connections, opened on the loop thread */
    mps_store *store;         /* the loop thread's connection (= mpd_store(d) there) */
    mpj_sched *sched;
    struct mph_server *http;
    struct mpw_service *webhooks; /* outbound webhook delivery (core/webhook) */
    struct mpb_relay *bus;        /* events to NATS JetStream (core/bus), or NULL */
    struct mpo_service *oauth;    /* OAuth2 tokens for drivers (core/oauth)   */
    char *token;
    int64_t started_ms;

    pthread_rwlock_t registry_lock;
    mp_instance **instances;
    size_t n_instances;
    /* Accounts in the registry not started yet (registry.c): they are
     * opened a slice per loop iteration so the API answers meanwhile.
     * Loop thread only; each queued account holds a reference. */
    struct event *start_ev;
    struct mp_account **start_queue;
    size_t n_start, start_pos;
    unsigned start_index;     /* accounts started so far (first-run stagger) */

    /* The event stream (core/events): the committed-seq wake-up, its
     * watchers, the epoch and the retention horizon. Opened after the loop
     * thread's store, closed once nothing writes events (main.c). */
    struct mpe_events *events;
    struct event *outbox_timer; /* retention runs (maintenance.c)            */
    int outbox_running;         /* a retention run is on a worker           */
    mphost_env host_env;        /* lent to the host layer (host_env.c)   */
    struct mpd_prefetch *prefetch;  /* body-cache warming (prefetch.h)       */
    struct mpd_fetchq *fetchq;      /* fetches on demand per account (fetch.c) */
    struct mpd_cluster *cluster;    /* cluster mode only, else NULL (cluster.h) */
    uint64_t check_seq;             /* last check id given out (check.c, loop thread) */

    struct event *sig_hup, *sig_term, *sig_int;

    /* Counters for /metrics. */
    atomic_ullong m_sync_runs, m_sync_failures, m_backfill_runs, m_changes,
        m_push_accepted, m_push_rejected, m_push_ignored, m_fetch_hits, m_fetch_misses,
        m_fetch_errors, m_folder_resets, m_reconcile_runs, m_push_silences;
};

/* ---- lifecycle (main.c) ---- */
/* SIGHUP: 0 applied, -1 refused (the running configuration is kept), 1
 * postponed: out of descriptors, retried by itself with backoff (main.c). */
int mpd_reload(mpd *d);

/* This node takes (held 1) or loses the outbox role: it starts or stops
 * delivering the outbox (webhooks and the bus relay; outbox_role.c).
 * Alone, main.c takes it at start; in a cluster, the lease thread's
 * rounds decide (cluster.c). Loop thread. */
void mpd_outbox_role(mpd *d, int held);
/* ---- registry.c ---- */

/* Build the registry from plugins_dir (first start) or apply the difference
 * (reload). Errors in files are logged; the daemon keeps running. */
void mpd_registry_apply(mpd *d, mpc_instance_conf **confs, size_t n);
void mpd_registry_clear(mpd *d);
/* Reload: every open account parked by REAUTH or FATAL (`stopped`) is
 * unparked and gets one sync, so replaced credentials take effect; one
 * still failing parks again (its status unchanged, no new event). */
void mpd_registry_resume_stopped(mpd *d);
/* Cluster mode (cluster.h): the lease of account `id` was acquired: start
 * it; or lost: stop it and keep an unstarted object in its place. Loop
 * thread. */
void mpd_registry_account_acquire(mpd *d, const char *id);
void mpd_registry_account_release(mpd *d, const char *id);
/* Cluster mode: webhook accounts another node holds are open here in
 * standby, for push verification only (registry.c). Reload the standby
 * copy of `id` (no-op unless it is one), or every one (returns how many),
 * after the holder changed what verification reads. Count them. Loop
 * thread. */
void mpd_registry_standby_refresh(mpd *d, const char *id);
size_t mpd_registry_standby_refresh_all(mpd *d);
size_t mpd_registry_standby_count(mpd *d);
/* Sync every scheduled account that has stored push hints (at start, and
 * in a cluster after the signal listener reconnects). Loop thread. */
void mpd_registry_sync_pending_hints(mpd *d);
/* The ids of every configured account (allocated, NULL-terminated). */
size_t mpd_registry_account_ids(mpd *d, char ***ids_r);
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

/* ---- store access (core/store/pool.h) ---- */

/* The store connection of the calling thread (loop or worker), opened on
 * first use. NULL when the database cannot be opened (logged). */
static inline mps_store *mpd_store(mpd *d)
{
    return mps_pool_thread(d->pool);
}
/* A thread that leaves before it exits (a write-behind thread) closes its
 * connection and its libcurl handle; at exit that happens by itself. */
static inline void mpd_store_thread_cleanup(mpd *d)
{
    mps_pool_thread_done(d->pool);
}

/* ---- jobs (sync_job.c) ---- */
void mpd_run_job(const mpj_job *job, mpj_result *result, void *arg);
void mpd_job_done(const mpj_job *job, const mpj_result *result, void *arg);
mpd_knobs mpd_knobs_get(mpd *d);
void mpd_knobs_from_settings(const mp_settings *s, mpd_knobs *knobs_r);

/* ---- events (core/events owns them) ---- */
/* Any thread: events up to `seq` were committed. The daemon's writers
 * (status.c, the host services) call this; it forwards to d->events and
 * does nothing before it is opened or after it is closed. */
static inline void mpd_events_committed(mpd *d, int64_t seq)
{
    if (d->events != NULL)
        mpe_committed(d->events, seq);
}

/* ---- status helpers (status.c) ---- */
/* The status (and error) the store could not record for `a`, as copies
 * to free, or 0 when the stored one is current. Any thread. */
int mpd_account_unrecorded(struct mp_account *a, char **status_r, char **error_r);
void mpd_set_account_status(mpd *d, const char *account, const char *status,
                            const char *error);
void mpd_set_push_state(mpd *d, const char *account, const char *state);
/* The account as the list and /metrics show it, from memory (no store
 * read): the status (an unrecorded one first; "pending" before any), its
 * error, the push state text, the last successful sync and the last push
 * (0: never; seeded from the store at the account's first status). Copies
 * to release with mpd_account_view_clear. Any thread. */
typedef struct mpd_account_view_t {
    char *status, *error, *push_state;
    int64_t last_sync_ms, last_push_ms;
} mpd_account_view_t;
void mpd_account_view(struct mp_account *a, mpd_account_view_t *v);
void mpd_account_view_clear(mpd_account_view_t *v);
/* A sync of `a` succeeded at when_ms (recorded in the store too). */
void mpd_account_view_synced(struct mp_account *a, int64_t when_ms);
/* The push state's class, what `push=` filters and counts group by: the
 * length of its leading word ("failed: no NOTIFY" -> "failed"); 0 for
 * NULL (no push state recorded: "none"). */
size_t mpd_push_class(const char *push_state);
/* counts[key's first len bytes (at most 63)] += 1: the tallies by status
 * and push class of the list and /metrics. */
void mpd_count_in(json_t *counts, const char *key, size_t len);
/* The account's status and push class ("none" without a push state),
 * copied into buffers of MPD_CLASS_MAX bytes: what the list and /metrics
 * count for every account, without an allocation each (any thread). */
#define MPD_CLASS_MAX 64
void mpd_account_classes(struct mp_account *a, char *status, char *push);

/* ---- maintenance.c ---- */
void mpd_maintenance_start(mpd *d);
/* Loop thread, before the scheduler is freed: no new maintenance runs. */
void mpd_maintenance_stop(mpd *d);

/* ---- metrics.c ---- */
char *mpd_metrics_text(mpd *d);

/* ---- the host layer's view of the daemon (host_env.c) ---- */
/* Fill d->host_env (after d->base exists); every instance points at it. */
void mpd_host_env_init(mpd *d);
/* Publish the core settings drivers read through core_setting. */
void mpd_host_publish_knobs(const mpd_knobs *k);

#endif

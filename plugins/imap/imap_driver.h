/*
 * Internal contract of imap.so between its parts (not part of the SDK):
 *   imap.c, imap_account.c  descriptor, config keys, account state,
 *                           connecting with the account's settings and
 *                           keeping the capability profile;
 *   imap_sync*.c            list/bootstrap/delta/backfill/fetch/probe
 *                           (worker threads), strategy by profile;
 *   imap_push.c             IDLE / NOTIFY streams on the host's loop;
 *   imap_pool.c             the instance's connect pool and limiter
 *                           (imap_pool.h, imap_limit.h).
 *
 * Descriptors per account in steady state: the push connection (NOTIFY:
 * one; IDLE: one per watched folder, at most max_connections) and nothing
 * else. The worker-side sync and fetch connections are kept between jobs
 * only for the instance's `sync_idle_close` and then closed; the connect
 * pool wakes the loop through one eventfd per instance.
 */
#ifndef MP_IMAP_DRIVER_H
#define MP_IMAP_DRIVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <mailpulse/driver.h>

#include "imap_client.h"

/* The host table saved by init: the driver's only way to the host. */
extern const mp_host *imap_host;

typedef enum imap_push_mode {
    IMAP_PUSH_AUTO = 0,   /* NOTIFY if offered, else IDLE, else poll       */
    IMAP_PUSH_IDLE = 1,
    IMAP_PUSH_NOTIFY = 2,
    IMAP_PUSH_OFF = 3,
} imap_push_mode;

struct imap_push; /* imap_push.c */
struct imap_pool;  /* imap_pool.h */
struct imap_limit; /* imap_limit.h */
struct imap_account;

/* One driver instance (plugins.d file): its settings, its connect pool and
 * limiter, and the accounts it holds (for the idle-connection reaper). */
typedef struct imap_instance {
    mp_instance *inst;
    struct imap_pool *pool;
    struct imap_limit *limit;       /* the pool's: every login of the instance */
    uint32_t sync_idle_ms;          /* `sync_idle_close`; 0: after each job */
    uint32_t idle_max;              /* `sync_idle_max`: connections kept open
                                       between jobs, all accounts together   */
    atomic_uint idle_kept;          /* how many are kept now (imap_sync.c)    */
    struct imap_account *accounts;  /* loop thread only                      */
    mp_timer *t_reap;
} imap_instance;

typedef struct imap_account {
    mp_account *acct;
    const mp_config *cfg;      /* borrowed; valid while the account is open */
    char *id;                  /* for messages                               */

    /* Settings from the account's YAML. */
    char *host;
    uint16_t port;
    imap_tls_mode tls;
    char *ca_file;             /* `ca_file`, NULL: system store              */
    char *username;
    imap_auth_mech auth;
    const char *secret_key;    /* "password_file" or "oauth_token_file"     */
    char **folders;            /* NULL: all                                 */
    size_t n_folders;
    imap_push_mode push_mode;
    uint32_t max_connections;  /* push connections budget, default 3        */
    uint32_t push_check_ms;    /* `push_check_interval`: a push stream ends
                                  IDLE (or sends NOOP) this often, so a link
                                  that silently died is noticed             */
    uint64_t max_message;      /* `max_message_size`: larger bodies are not
                                  fetched (summary only; fetch says why)     */
    uint32_t deadline_ms;      /* `command_timeout`: per IMAP command       */
    size_t max_memory;         /* `max_memory_mb`: budget per connection    */

    /* Capability profile, shared by worker and loop threads. */
    pthread_mutex_t lock;
    imap_caps caps;            /* last seen; bits 0 until the first connect */
    uint32_t enabled;          /* QRESYNC/CONDSTORE confirmed by ENABLED     */
    int have_profile;
    int64_t profiled_ms;

    imap_instance *inst;       /* NULL only in unit tests: no limiter       */
    struct imap_account *inst_next, **inst_pprev; /* inst->accounts, loop  */

    /* Worker-side connections, reused between slot calls (the host never
     * runs two poll slots of one account at once, and fetch uses its own).
     * A slot call owns its connection between imap_sync_begin and
     * imap_sync_end; outside, the loop's reaper may take it (conn_lock
     * guards the pointers against that, the busy flags say who owns). */
    imap_conn *sync_conn;
    imap_conn *fetch_conn;
    pthread_mutex_t conn_lock;
    int sync_busy, fetch_busy;
    int sync_kept, fetch_kept;  /* counted in the instance's idle_kept      */
    int64_t sync_used_ms, fetch_used_ms; /* monotonic, end of the last job  */
    /* Per-folder scan times and EXISTS (imap_sync_mem_get/_set), a few
     * entries; imap_sync.c's lock guards them. */
    struct imap_scan_entry *scan_mem;

    /* Bumped by push when a stream's link died silently (no answer in
     * time): the sync and fetch connections, idle through the same path,
     * are likely dead too and are replaced before their next use instead
     * of waiting out a read timeout. */
    atomic_uint link_epoch;
    unsigned sync_epoch, fetch_epoch; /* link_epoch their connection saw */

    struct imap_push *push;    /* owned by imap_push.c, loop thread only     */
    /* imap_folder_set_sig of the synced folders the last LIST showed
     * (written by workers, read by push on the loop; 0 until a LIST). */
    _Atomic uint64_t listed_sig;
} imap_account;

/* The largest `max_message_size`: the IMAP client refuses literals over
 * 64 MiB (IMAPC_MAX_LITERAL), so no body above it can be read anyway. */
#define IMAP_MAX_MESSAGE_SIZE ((uint64_t)64 * 1024 * 1024)

/* Open a connection with the account's settings (reading the secret file
 * anew each time, so rotated credentials are picked up) and refresh the
 * profile: when the capability list differs from the stored one it is
 * recorded with host->set_profile. Returns MP_OK, MP_REAUTH when the
 * server rejected the credentials, MP_RETRY for network trouble, MP_FATAL
 * for configuration problems (bad certificate name is MP_RETRY: it may be
 * fixed at the server; the text says what). */
mp_status imap_account_connect(imap_account *a, imap_conn **conn_r, mp_error *err);

/* The profile as JSON text for host->set_profile (allocated). */
char *imap_profile_json(const imap_account *a);

/* Is `name` one of the account's synced folders? */
int imap_account_folder_wanted(const imap_account *a, const char *name);

/* A set of folder names as one number, whatever their order: add each
 * name's imap_folder_sig to 0. Push compares the set it watches with the
 * one the last LIST showed, to notice folders created (or removed) since. */
uint64_t imap_folder_sig(const char *name);

/* Slot calls' ownership of the worker-side connections (imap_sync.c).
 * begin/end bracket every poll slot (fetch: `fetch` nonzero) on the worker
 * thread; end closes the connection at once when sync_idle_close is 0 or
 * the instance already keeps sync_idle_max connections.
 * imap_sync_reap (loop thread) closes a connection idle for `idle_ms`. */
void imap_sync_begin(imap_account *a, int fetch);
void imap_sync_end(imap_account *a, int fetch);
void imap_sync_reap(imap_account *a, uint32_t idle_ms);
/* The account goes: its kept connections leave the instance's count. */
void imap_sync_forget_kept(imap_account *a);

/* Push streams (imap_push.c), loop thread. */
mp_status imap_push_start(mp_account *acct, mp_error *err);
void imap_push_stop(mp_account *acct);

#endif

/*
 * Configuration: the daemon's own settings (libconfig, mailpulsed.conf) and
 * driver instances with their accounts (libyaml, one plugins.d/NAME.yaml file
 * per instance) parse into one neutral tree of nodes that remember file and
 * line. Validation against declared keys fills defaults and reports every
 * problem as "file:line: message". The SDK's opaque `mp_config` is a map node
 * of this tree.
 *
 * Nothing here logs: errors are collected in an mpc_errors list and the
 * caller prints them.
 */
#ifndef MP_CONFIG_CONFIG_H
#define MP_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

typedef enum mpc_type {
    MPC_MAP = 1,
    MPC_LIST = 2,
    MPC_STRING = 3,
    MPC_INT = 4,
    MPC_BOOL = 5,
    MPC_FLOAT = 6,
    MPC_NULL = 7, /* YAML "~" / empty value */
} mpc_type;

/* A node. Maps and lists own their children in order. */
struct mp_config {
    mpc_type type;
    char *key;          /* key in the parent map, NULL for list items/root */
    const char *file;   /* points into a string owned by the root          */
    int line;           /* 1-based; 0 for defaults filled by validation    */
    char *str;          /* MPC_STRING (also the text of any scalar)        */
    int64_t i;          /* MPC_INT, MPC_BOOL                               */
    double f;           /* MPC_FLOAT                                       */
    struct mp_config **items; /* MPC_MAP / MPC_LIST children               */
    size_t n_items;
    char *file_owned;   /* root only                                       */
};
typedef struct mp_config mpc_node;

/* Error list: each entry is an allocated "file:line: message".
 * `shortage` is the errno of the first error whose cause was a descriptor
 * shortage (mpu_fd_shortage: EMFILE, ENFILE, ...) rather than the
 * configuration, 0 when there was none: the caller retries later instead
 * of refusing (a reload) or failing (a check). */
typedef struct mpc_errors {
    char **msgs;
    size_t n;
    int shortage;
} mpc_errors;

void mpc_error_add(mpc_errors *errs, const char *file, int line, const char *fmt,
                   ...) MP_PRINTF(4, 5);
/* Record that the error just added came from errno value `err`: sets
 * errs->shortage when err is a descriptor shortage and none was recorded. */
void mpc_error_cause(mpc_errors *errs, int err);
void mpc_errors_free(mpc_errors *errs);

/* Parsing. Return the root map or NULL with errors added. `name` is the file
 * name used in messages for the *_string variants. */
mpc_node *mpc_load_libconfig(const char *path, mpc_errors *errs);
mpc_node *mpc_parse_libconfig_string(const char *text, const char *name,
                                     mpc_errors *errs);
mpc_node *mpc_load_yaml(const char *path, mpc_errors *errs);
mpc_node *mpc_parse_yaml_string(const char *text, size_t len, const char *name,
                                mpc_errors *errs);
void mpc_free(mpc_node **root);

/* Lookup. NULL when absent or not a map. */
const mpc_node *mpc_get(const mpc_node *map, const char *key);

/* Validate `map` against `keys` (an MP_CFG_END-terminated array; may be
 * NULL). Keys named in `also_allowed` (NULL-terminated, may be NULL) are
 * accepted without checks (handled by the caller). Unknown keys, wrong
 * types, missing required keys and *_file naming mistakes become errors;
 * declared defaults are added as nodes with line 0. A string given for an
 * MP_CFG_INT key that parses as an integer is converted. Returns the number
 * of errors added. */
size_t mpc_validate(mpc_node *map, const mp_config_key *keys,
                    const char *const *also_allowed, mpc_errors *errs);

/* Typed access on a validated map (also exposed to drivers through the
 * host table). Absent keys: NULL / 0 / 0 / 0 / NULL. */
const char *mpc_string(const mpc_node *map, const char *key);
int64_t mpc_int(const mpc_node *map, const char *key);
int mpc_bool(const mpc_node *map, const char *key);
size_t mpc_list_len(const mpc_node *map, const char *key);
const char *mpc_list_string(const mpc_node *map, const char *key, size_t index);

/* ---- the daemon's settings (mailpulsed.conf) ---- */

typedef enum mp_backfill_mode {
    MP_BACKFILL_PROGRESSIVE = 0,
    MP_BACKFILL_FULL = 1,
    MP_BACKFILL_FROM_NOW_ON = 2,
} mp_backfill_mode;

/* One outbound webhook endpoint (mailpulsed.conf `webhooks` list). The
 * secret is not read by mp_settings_load (mailpulsectl loads the settings
 * too, often as a user who may not read secrets): key is NULL until
 * mpc_webhooks_read_secrets() fills it. */
typedef struct mp_webhook_conf {
    char *name;            /* default "webhook-N" (N: 1-based position)      */
    char *url;             /* http:// or https://                            */
    char *secret_file;
    char *where;           /* "file:line" of the entry, for messages         */
    uint8_t *key;          /* HMAC key: the file's bytes, or the base64-decoded
                              rest after "whsec_"; one trailing newline dropped */
    size_t key_len;
    char **events;         /* NULL-terminated filters; NULL: everything      */
    char **accounts;
    char **folders;
    uint32_t max_attempts; /* 10: attempts before an event is dead-lettered  */
    uint32_t timeout;      /* 10: seconds per attempt                        */
    uint32_t retry_initial; /* 5: seconds before the first retry (doubling)  */
    uint32_t retry_max;    /* 600: cap of the retry delay in seconds         */
    uint32_t max_in_flight; /* 32: requests in flight at once, each for a
                               different account (order is per account)   */
} mp_webhook_conf;

/* The optional `bus` group: events on NATS JetStream (core/bus). */
typedef struct mp_bus_conf {
    int enabled;                /* the group is present                 */
    char *nats_url;             /* required; comma-separated for several */
    char *stream;               /* "MAILPULSE"                          */
    char *token_file;           /* NULL: no token                       */
    char *creds_file;           /* NULL: no JWT/NKey credentials        */
    char *tls_ca_file;          /* NULL: no TLS unless the URL says tls:// */
    char *where;                /* "file:line" of the group             */
    char *token;                /* NULL until mpc_bus_read_secrets      */
    uint32_t duplicate_window;  /* 120 s: the stream's dedup window     */
    uint32_t max_pending;       /* 256: publishes awaiting their ack    */
    uint32_t ack_timeout;       /* 5 s: wait for one publish's ack      */
    uint32_t retry_max;         /* 30 s: cap of the reconnect backoff   */
} mp_bus_conf;

typedef enum mp_store_backend {
    MP_STORE_SQLITE = 0,     /* <state_dir>/mailpulse.db                  */
    MP_STORE_POSTGRESQL = 1, /* the URL in store.url_file                  */
} mp_store_backend;

/* Upper bound of every schedule setting (schedule.*, poll_interval), in
 * seconds: 30 days. Larger values are configuration errors. */
#define MP_SCHEDULE_MAX_S (30u * 24u * 3600u)

typedef struct mp_settings {
    char *source;      /* file path, or "<embedded default>"               */
    char *state_dir;   /* default "/var/lib/mailpulse"                     */
    char *driver_dir;  /* default: compiled-in MP_DRIVER_DIR                */
    char *plugins_dir; /* default "/etc/mailpulse/plugins.d"               */
    uint32_t workers;  /* default 4 (1..64)                                 */
    uint32_t workers_per_account; /* 0 = workers - 1 (at least 1); 0..64    */
    uint32_t workers_per_kind;    /* 0 = workers - 1 (at least 1); 0..64    */
    char *log_level;   /* default "info"                                    */
    struct {
        char *listen;     /* "127.0.0.1:8025" default; "" disables TCP     */
        char *socket;     /* unix socket path, default "<state_dir>/mailpulsed.sock" */
        char *token_file; /* default NULL: generated "<state_dir>/api.token" */
        uint32_t max_body;  /* request body limit, default 1 MiB           */
        uint32_t max_connections;            /* per listener, default 256   */
        uint32_t max_connections_per_client; /* per TCP address, default 32 */
        uint32_t request_timeout;  /* seconds, first byte to whole request, 20 */
        uint32_t idle_timeout;     /* seconds waiting for a request, 10     */
        int metrics_public;        /* /metrics without token on TCP, false  */
        int metrics_per_account;   /* per-account series in /metrics, false */
        char **allowed_hosts;      /* NULL-terminated extra Host names, or NULL */
    } http;
    struct {
        uint32_t batch_size;        /* 100                                  */
        uint32_t ingest_batch_size; /* 500                                  */
        uint32_t list_page_size;    /* 30                                   */
        int fetch_bodies;           /* false                                */
    } sync;
    struct {
        uint32_t retention_days;    /* 30                                   */
        uint32_t prefetch_count;    /* 30                                   */
        uint32_t prefetch_interval; /* seconds between warming runs, 60     */
        uint32_t prefetch_per_run;  /* bodies per account per run, 20       */
        uint32_t prefetch_queue_max; /* warm queue bound, 10000             */
        uint32_t fetch_queue_max;   /* uncached /raw fetches waiting per account, 16 */
        uint32_t fetch_timeout;     /* seconds a /raw waits for the provider, 30 */
    } cache;
    struct {
        int clock_control;          /* false: POST /v1/debug/clock (tests)  */
    } debug;
    struct {
        uint32_t retention_days;    /* 30: events older are pruned, 0 never */
        uint32_t prune_interval;    /* 3600: seconds between retention runs */
    } outbox;
    struct {
        mp_backfill_mode mode;      /* progressive                          */
        uint32_t bootstrap_max;     /* 1500                                 */
        uint32_t batch_size;        /* 100                                  */
        uint32_t job_budget;        /* seconds, 25                          */
        uint32_t max_per_folder;    /* 20000, 0 = no limit                  */
    } backfill;
    struct {                        /* seconds                              */
        uint32_t bootstrap_interval;   /* 240                               */
        uint32_t backfill_interval;    /* 240                               */
        uint32_t cache_cleanup_interval; /* 86400                           */
        uint32_t push_renew_interval;  /* 3600                              */
        uint32_t reconcile_interval;   /* 900: poll cadence when push is live */
        uint32_t folder_list_interval; /* 3600: re-list folders             */
        uint32_t max_backoff;          /* 1800: cap of failure backoff      */
        uint32_t push_silence_hours;   /* 6: no push for this long on a push
                                          account: flag it, resync (0: off) */
    } schedule;
    struct {                        /* optional group: absent, no listener  */
        int enabled;                /* the group is present                 */
        char *listen;               /* "host:port", required                */
        int tls;                    /* true; false: plaintext for a TLS proxy */
        int plaintext_public;       /* false: tls = false needs a loopback
                                       listen address                       */
        char *tls_cert_file;        /* PEM chain, leaf first; required with tls */
        char *tls_key_file;         /* PEM key, owner-only; required with tls */
        char *where;                /* "file:line" of tls_cert_file (or of the
                                       group), for certificate errors       */
        uint32_t max_body;          /* 262144 bytes                         */
        uint32_t rate;              /* 20 requests/s per client address     */
        uint32_t rate_total;        /* 200 requests/s in total              */
    } push;
    mp_bus_conf bus;                /* optional group: absent, no bus       */
    struct {
        mp_store_backend backend;   /* sqlite                               */
        char *url_file;             /* postgresql: file with the URL        */
    } store;
    struct {                        /* optional group: absent, a single node */
        int enabled;                /* the group is present                 */
        char *node;                 /* name, default the host name          */
        uint32_t lease_ttl;         /* seconds, 30                          */
    } cluster;
    mp_webhook_conf *webhooks;      /* outbound webhooks, in config order   */
    size_t n_webhooks;
} mp_settings;

/* Load settings from `path`, or from the embedded default when path is
 * NULL. On error returns -1 with errors added (nothing allocated). */
int mp_settings_load(const char *path, mp_settings **settings_r, mpc_errors *errs);
void mp_settings_free(mp_settings **settings);
/* The store's location (store.h, mps_open) for these settings: the SQLite
 * file in state_dir, or the PostgreSQL URL read from store.url_file (an
 * owner-only file, one line). -1 with *error_r naming the file, never its
 * contents. The location may hold a password: release it with
 * mpu_secret_free and never log it. */
int mp_store_location(const mp_settings *s, char **location_r, char **error_r);
/* The embedded default configuration text (documented defaults). */
const char *mp_settings_default_text(void);

/* The setting tables, for documentation (mailpulsed --print-keys): table
 * `i` (0, 1, ... until NULL) with its group name in *group_r (NULL: the top
 * level). `webhooks` names the keys of each entry of that list. */
const mp_config_key *mp_settings_keys(size_t i, const char **group_r);
/* The plugins.d keys the core handles itself (NULL-terminated names):
 * `account` 0 for the top level of an instance file, 1 for an account. */
const char *const *mpc_plugins_core_keys(int account);

/* ---- outbound webhooks (webhooks.c) ---- */

/* Event types a webhook `events` filter may name (NULL-terminated). */
extern const char *const mpc_event_types[];
/* Read every endpoint's secret_file (owner-only, mpu_read_file secret=1)
 * into its key. Errors name the entry's file:line, never the secret.
 * Returns the number of errors added. */
size_t mpc_webhooks_read_secrets(mp_settings *s, mpc_errors *errs);
/* The HMAC key of a secret file's content: one trailing "\n" or "\r\n"
 * dropped, then "whsec_<base64>" decodes to the bytes (Standard Webhooks),
 * anything else is used as is. Returns 0, or -1 (empty key, bad base64)
 * with *error_r set. *key_r is allocated. */
int mpc_webhook_key(const char *text, size_t len, uint8_t **key_r, size_t *key_len_r,
                    char **error_r);

/* ---- the event bus (bus.c) ---- */

/* The stream name rule of bus.stream: 1..64 of [A-Za-z0-9_-]. */
int mpc_bus_stream_valid(const char *name);
/* Read bus.token_file (owner-only, mpu_read_file secret=1) into
 * s->bus.token, one trailing newline dropped. Errors name the group's
 * file:line, never the token. Returns the number of errors added (0 when
 * there is no bus or no token file). */
size_t mpc_bus_read_secrets(mp_settings *s, mpc_errors *errs);

/* ---- driver instances (plugins.d/NAME.yaml) ---- */

typedef struct mpc_instance_conf {
    char *name;      /* file name without .yaml/.yml: the instance name    */
    char *file;      /* full path                                          */
    char *driver;    /* `driver:` value                                    */
    int enabled;     /* `enabled:` (default true)                          */
    mpc_node *root;  /* the whole document (owned)                         */
    mpc_node **accounts; /* borrowed from root: each account's map         */
    size_t n_accounts;
} mpc_instance_conf;

/* Read every *.yaml / *.yml file of `dir` (sorted by name) and check the
 * keys the core owns: `driver` (string, required), `enabled` (bool),
 * `poll_interval` (int seconds), `accounts` (list of maps, each with a
 * string `id` matching [A-Za-z0-9._-]{1,64}, optional `enabled`, `folders`
 * (list of strings), `poll_interval` (int)). Account ids must be unique
 * across all files. A file with errors is left out of the result; its
 * errors are added. A missing directory is an error. Returns 0 when no
 * errors were added. */
int mpc_plugins_load(const char *dir, mpc_instance_conf ***list_r, size_t *n_r,
                     mpc_errors *errs);
void mpc_instances_free(mpc_instance_conf ***list, size_t n);

/* Validate a loaded instance against its driver's declared keys (instance
 * level minus the core keys; each account minus the core keys). */
size_t mpc_validate_instance(mpc_instance_conf *inst, const mp_driver *drv,
                             mpc_errors *errs);

#endif

/* The daemon's own settings: mailpulsed.conf (libconfig) -> mp_settings. */
#include "config/config_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/log.h"
#include "util/util.h"

#define EMBEDDED_NAME "<embedded default>"
#define DEFAULT_STATE_DIR "/var/lib/mailpulse"
#define DEFAULT_PLUGINS_DIR MP_SYSCONF_DIR "/plugins.d"

/* Same values as the key tables below; a unit test checks they agree. */
static const char default_text[] =
    "# mailpulsed built-in configuration (used when no -c FILE is given)\n"
    "state_dir = \"" DEFAULT_STATE_DIR "\";\n"
    "driver_dir = \"" MP_DRIVER_DIR "\";\n"
    "plugins_dir = \"" DEFAULT_PLUGINS_DIR "\";\n"
    "workers = 4;\n"
    "workers_per_account = 0;\n"
    "workers_per_kind = 0;\n"
    "log_level = \"info\";\n"
    "http = {\n"
    "  listen = \"127.0.0.1:8025\";\n"
    "  # socket = \"<state_dir>/mailpulsed.sock\";\n"
    "  # token_file = \"<state_dir>/api.token\";  (generated when absent)\n"
    "  max_body = 1048576;\n"
    "  max_connections = 256;\n"
    "  max_connections_per_client = 32;\n"
    "  request_timeout = 20;\n"
    "  idle_timeout = 10;\n"
    "  metrics_public = false;\n"
    "  metrics_per_account = false;\n"
    "  # allowed_hosts = [ \"mail.example.org\" ];\n"
    "};\n"
    "# push = {                   (optional: public listener for provider push)\n"
    "#   listen = \"0.0.0.0:8443\";\n"
    "#   tls = true;\n"
    "#   tls_cert_file = \"/etc/mailpulse/push.pem\";\n"
    "#   tls_key_file = \"/etc/mailpulse/push.key\";\n"
    "#   plaintext_public = false;\n"
    "#   max_body = 262144;\n"
    "#   rate = 20;\n"
    "#   rate_total = 200;\n"
    "# };\n"
    "# bus = {                    (optional: publish events to NATS JetStream)\n"
    "#   nats_url = \"nats://127.0.0.1:4222\";\n"
    "#   stream = \"MAILPULSE\";\n"
    "#   duplicate_window = 120;\n"
    "#   max_pending = 256;\n"
    "#   ack_timeout = 5;\n"
    "#   retry_max = 30;\n"
    "# };\n"
    "# cluster = {                (optional: nodes sharing the PostgreSQL store)\n"
    "#   node = \"<host name>\";\n"
    "#   lease_ttl = 30;\n"
    "# };\n"
    "sync = {\n"
    "  batch_size = 100;\n"
    "  ingest_batch_size = 500;\n"
    "  list_page_size = 30;\n"
    "  fetch_bodies = false;\n"
    "};\n"
    "cache = {\n"
    "  retention_days = 30;\n"
    "  prefetch_count = 30;\n"
    "  prefetch_interval = 60;\n"
    "  prefetch_per_run = 20;\n"
    "  prefetch_queue_max = 10000;\n"
    "  fetch_queue_max = 16;\n"
    "  fetch_timeout = 30;\n"
    "};\n"
    "outbox = {\n"
    "  retention_days = 30;\n"
    "  prune_interval = 3600;\n"
    "};\n"
    "store = {\n"
    "  backend = \"sqlite\";\n"
    "  # url_file = \"/etc/mailpulse/pg.url\";  (backend = \"postgresql\")\n"
    "};\n"
    "debug = {\n"
    "  clock_control = false;\n"
    "};\n"
    "backfill = {\n"
    "  mode = \"progressive\";\n"
    "  bootstrap_max = 1500;\n"
    "  batch_size = 100;\n"
    "  job_budget = 25;\n"
    "  max_per_folder = 20000;\n"
    "};\n"
    "schedule = {\n"
    "  bootstrap_interval = 240;\n"
    "  backfill_interval = 240;\n"
    "  cache_cleanup_interval = 86400;\n"
    "  push_renew_interval = 3600;\n"
    "  reconcile_interval = 900;\n"
    "  folder_list_interval = 3600;\n"
    "  max_backoff = 1800;\n"
    "  push_silence_hours = 6;\n"
    "};\n";

static const mp_config_key top_keys[] = {
    {"state_dir", MP_CFG_STRING, DEFAULT_STATE_DIR, 0, "directory of the store"},
    {"driver_dir", MP_CFG_STRING, MP_DRIVER_DIR, 0, "directory of driver .so files"},
    {"plugins_dir", MP_CFG_STRING, DEFAULT_PLUGINS_DIR, 0, "directory of instance files"},
    {"workers", MP_CFG_INT, "4", 0, "worker threads, 1..64"},
    {"workers_per_account", MP_CFG_INT, "0", 0, "workers one account may hold, 0 = workers - 1"},
    {"workers_per_kind", MP_CFG_INT, "0", 0,
     "workers one kind of job but sync may hold, 0 = workers - 1"},
    {"log_level", MP_CFG_STRING, "info", 0, "error, warning, info or debug"},
    {0},
};

static const mp_config_key http_keys[] = {
    {"listen", MP_CFG_STRING, "127.0.0.1:8025", 0, "\"host:port\", \"\" disables TCP"},
    {"socket", MP_CFG_STRING, NULL, 0, "unix socket path"},
    {"token_file", MP_CFG_STRING, NULL, 0, "file holding the API bearer token"},
    {"max_body", MP_CFG_INT, "1048576", 0, "request body limit in bytes"},
    {"max_connections", MP_CFG_INT, "256", 0, "open connections per listener"},
    {"max_connections_per_client", MP_CFG_INT, "32", 0, "open TCP connections per address"},
    {"request_timeout", MP_CFG_INT, "20", 0, "seconds for a whole request to arrive"},
    {"idle_timeout", MP_CFG_INT, "10", 0, "seconds a connection may wait for a request"},
    {"metrics_public", MP_CFG_BOOL, "false", 0, "serve /metrics on TCP without the token"},
    {"metrics_per_account", MP_CFG_BOOL, "false", 0,
     "/metrics also gives series per account (large with many accounts)"},
    {"allowed_hosts", MP_CFG_STRING_LIST, NULL, 0,
     "Host names accepted on TCP besides IP addresses and localhost"},
    {0},
};

/* The optional push group: validated only when present (its absence
 * means no public listener, so no defaults are filled into the tree). */
static const mp_config_key push_keys[] = {
    {"listen", MP_CFG_STRING, NULL, 1, "\"host:port\" of the public push listener"},
    {"tls", MP_CFG_BOOL, "true", 0, "TLS on the listener; false only behind a TLS proxy"},
    {"plaintext_public", MP_CFG_BOOL, "false", 0,
     "allow tls = false on an address other than loopback"},
    {"tls_cert_file", MP_CFG_STRING, NULL, 0, "PEM certificate chain, leaf first"},
    {"tls_key_file", MP_CFG_STRING, NULL, 0, "PEM private key (owner-only)"},
    {"max_body", MP_CFG_INT, "262144", 0, "push request body limit in bytes"},
    {"rate", MP_CFG_INT, "20", 0, "requests per second per client address"},
    {"rate_total", MP_CFG_INT, "200", 0, "requests per second over all clients"},
    {0},
};

static const mp_config_key sync_keys[] = {
    {"batch_size", MP_CFG_INT, "100", 0, "changes per committed batch"},
    {"ingest_batch_size", MP_CFG_INT, "500", 0, "messages per store transaction"},
    {"list_page_size", MP_CFG_INT, "30", 0, "default page size of message lists"},
    {"fetch_bodies", MP_CFG_BOOL, "false", 0, "download bodies while syncing"},
    {0},
};

static const mp_config_key cache_keys[] = {
    {"retention_days", MP_CFG_INT, "30", 0, "days cached bodies are kept"},
    {"prefetch_count", MP_CFG_INT, "30", 0, "newest bodies prefetched per folder"},
    {"prefetch_interval", MP_CFG_INT, "60", 0, "seconds between cache warming runs"},
    {"prefetch_per_run", MP_CFG_INT, "20", 0, "bodies warmed per account and run"},
    {"prefetch_queue_max", MP_CFG_INT, "10000", 0, "bound of the warm queue"},
    {"fetch_queue_max", MP_CFG_INT, "16", 0, "uncached fetches waiting per account"},
    {"fetch_timeout", MP_CFG_INT, "30", 0, "seconds a fetch on demand may wait"},
    {0},
};

static const mp_config_key outbox_keys[] = {
    {"retention_days", MP_CFG_INT, "30", 0,
     "days events are kept (0 = forever); never before every webhook has them"},
    {"prune_interval", MP_CFG_INT, "3600", 0, "seconds between retention runs"},
    {0},
};

static const mp_config_key store_keys[] = {
    {"backend", MP_CFG_STRING, "sqlite", 0,
     "sqlite (<state_dir>/mailpulse.db) or postgresql (url_file)"},
    {"url_file", MP_CFG_STRING, NULL, 0,
     "file holding the postgresql:// URL (owner-only; may hold a password)"},
    {0},
};

/* The optional cluster group: several nodes sharing the PostgreSQL store
 * (daemon/cluster.h). Absent: this node owns every account. */
static const mp_config_key cluster_keys[] = {
    {"node", MP_CFG_STRING, NULL, 0, "this node's name in the cluster (default: host name)"},
    {"lease_ttl", MP_CFG_INT, "30", 0,
     "seconds an account lease lasts without renewal (renewed every third), 2..3600"},
    {0},
};

static const mp_config_key debug_keys[] = {
    {"clock_control", MP_CFG_BOOL, "false", 0, "allow POST /v1/debug/clock (tests only)"},
    {0},
};

static const mp_config_key backfill_keys[] = {
    {"mode", MP_CFG_STRING, "progressive", 0, "progressive, full or from_now_on"},
    {"bootstrap_max", MP_CFG_INT, "1500", 0, "messages loaded when a folder connects"},
    {"batch_size", MP_CFG_INT, "100", 0, "messages per backfill step"},
    {"job_budget", MP_CFG_INT, "25", 0, "seconds one backfill job may run"},
    {"max_per_folder", MP_CFG_INT, "20000", 0, "history limit per folder, 0 = none"},
    {0},
};

static const mp_config_key schedule_keys[] = {
    {"bootstrap_interval", MP_CFG_INT, "240", 0, "seconds, 1..2592000 (30 days)"},
    {"backfill_interval", MP_CFG_INT, "240", 0, "seconds, 1..2592000"},
    {"cache_cleanup_interval", MP_CFG_INT, "86400", 0, "seconds, 1..2592000"},
    {"push_renew_interval", MP_CFG_INT, "3600", 0, "seconds, 1..2592000"},
    {"reconcile_interval", MP_CFG_INT, "900", 0, "seconds, 1..2592000"},
    {"folder_list_interval", MP_CFG_INT, "3600", 0, "seconds, 1..2592000"},
    {"max_backoff", MP_CFG_INT, "1800", 0, "seconds, 1..2592000"},
    {"push_silence_hours", MP_CFG_INT, "6", 0, "hours without a push before a full resync (0: never), 0..720"},
    {0},
};

static const struct {
    const char *name;
    const mp_config_key *keys;
} groups[] = {
    {"http", http_keys},         {"sync", sync_keys},         {"cache", cache_keys},
    {"backfill", backfill_keys}, {"schedule", schedule_keys},
    {"debug", debug_keys},       {"outbox", outbox_keys},     {"store", store_keys},
};
#define N_GROUPS (sizeof groups / sizeof groups[0])

static const char *const group_names[] = {"http",     "sync",  "cache",    "backfill",
                                          "schedule", "debug", "webhooks", "outbox",
                                          "push",     "bus",   "store",    "cluster",
                                          NULL};

const char *mp_settings_default_text(void)
{
    return default_text;
}

const mp_config_key *mp_settings_keys(size_t i, const char **group_r)
{
    /* The order of mailpulsed.conf(5): top level, the groups, push, bus,
     * cluster, then the webhooks list. */
    if (i == 0) {
        *group_r = NULL;
        return top_keys;
    }
    if (i - 1 < N_GROUPS) {
        *group_r = groups[i - 1].name;
        return groups[i - 1].keys;
    }
    if (i - 1 == N_GROUPS) {
        *group_r = "push";
        return push_keys;
    }
    if (i - 1 == N_GROUPS + 1) {
        *group_r = "bus";
        return mpc__bus_keys();
    }
    if (i - 1 == N_GROUPS + 2) {
        *group_r = "cluster";
        return cluster_keys;
    }
    if (i - 1 == N_GROUPS + 3) {
        *group_r = "webhooks";
        return mpc__webhook_keys();
    }
    *group_r = NULL;
    return NULL;
}

void mp_settings_free(mp_settings **settings)
{
    if (settings == NULL || *settings == NULL)
        return;
    mp_settings *s = *settings;
    free(s->source);
    free(s->state_dir);
    free(s->driver_dir);
    free(s->plugins_dir);
    free(s->log_level);
    free(s->http.listen);
    free(s->http.socket);
    free(s->http.token_file);
    for (char **h = s->http.allowed_hosts; h != NULL && *h != NULL; h++)
        free(*h);
    free(s->http.allowed_hosts);
    free(s->push.listen);
    free(s->push.tls_cert_file);
    free(s->push.tls_key_file);
    free(s->push.where);
    mpc__bus_free(s);
    free(s->store.url_file);
    free(s->cluster.node);
    mpc__webhooks_free(s);
    free(s);
    *settings = NULL;
}

/* Validates the top level and every group, filling defaults; an absent
 * group is added empty so its defaults land in the tree too. */
static size_t validate_tree(mpc_node *root, mpc_errors *errs)
{
    size_t n = mpc_validate(root, top_keys, group_names, errs);
    for (size_t g = 0; g < N_GROUPS; g++) {
        mpc_node *group = (mpc_node *)mpc_get(root, groups[g].name);
        if (group == NULL) {
            group = mpc_node_new(MPC_MAP, root->file, 0);
            group->key = mpu_strdup(groups[g].name);
            mpc_node_append(root, group);
        }
        if (group->type != MPC_MAP) {
            mpc_error_add(errs, group->file, group->line,
                          "\"%s\" must be a group ({ ... }), not %s", groups[g].name,
                          mpc_type_name(group->type));
            n++;
            continue;
        }
        n += mpc_validate(group, groups[g].keys, NULL, errs);
    }
    mpc_node *push = (mpc_node *)mpc_get(root, "push");
    if (push != NULL && push->type != MPC_MAP) {
        mpc_error_add(errs, push->file, push->line,
                      "\"push\" must be a group ({ ... }), not %s",
                      mpc_type_name(push->type));
        n++;
    } else if (push != NULL) {
        n += mpc_validate(push, push_keys, NULL, errs);
    }
    /* bus: optional like push; absent, events stay in the outbox only. */
    mpc_node *bus = (mpc_node *)mpc_get(root, "bus");
    if (bus != NULL && bus->type != MPC_MAP) {
        mpc_error_add(errs, bus->file, bus->line, "\"bus\" must be a group ({ ... }), not %s",
                      mpc_type_name(bus->type));
        n++;
    } else if (bus != NULL) {
        n += mpc_validate(bus, mpc__bus_keys(), NULL, errs);
    }
    mpc_node *cluster = (mpc_node *)mpc_get(root, "cluster");
    if (cluster != NULL && cluster->type != MPC_MAP) {
        mpc_error_add(errs, cluster->file, cluster->line,
                      "\"cluster\" must be a group ({ ... }), not %s",
                      mpc_type_name(cluster->type));
        n++;
    } else if (cluster != NULL) {
        n += mpc_validate(cluster, cluster_keys, NULL, errs);
    }
    return n;
}

/* Reads an integer setting checked to lie in [min, max]. */
static size_t get_u32(const mpc_node *map, const char *group, const char *key,
                      uint32_t min, uint32_t max, uint32_t *value_r, mpc_errors *errs)
{
    const mpc_node *node = mpc_get(map, key);
    int64_t v = node != NULL ? node->i : 0;
    if (node == NULL || v < (int64_t)min || v > (int64_t)max) {
        mpc_error_add(errs, map->file, node != NULL ? node->line : map->line,
                      "\"%s%s%s\" must be between %u and %u", group != NULL ? group : "",
                      group != NULL ? "." : "", key, min, max);
        return 1;
    }
    *value_r = (uint32_t)v;
    return 0;
}

static int is_digits(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* "host:port", "[v6]:port", or "" (TCP off). The host is resolved by the
 * HTTP module; here only the shape and the port range are checked. */
static int listen_valid(const char *s)
{
    if (*s == '\0')
        return 1;
    const char *colon = strrchr(s, ':');
    uint32_t port;
    if (colon == NULL || colon == s || !is_digits(colon + 1) ||
        mpu_parse_u32(colon + 1, &port) < 0 || port > 65535)
        return 0;
    size_t host_len = (size_t)(colon - s);
    if (s[0] == '[')
        return host_len > 2 && s[host_len - 1] == ']';
    return memchr(s, ':', host_len) == NULL;
}

static size_t get_dir(const mpc_node *map, const char *key, char **value_r,
                      mpc_errors *errs)
{
    const mpc_node *node = mpc_get(map, key);
    if (node == NULL || node->str == NULL || node->str[0] == '\0') {
        mpc_error_add(errs, map->file, node != NULL ? node->line : map->line,
                      "\"%s\" must not be empty", key);
        return 1;
    }
    *value_r = mpu_strdup(node->str);
    return 0;
}

static size_t fill_top(const mpc_node *root, mp_settings *s, mpc_errors *errs)
{
    size_t n = 0;
    n += get_dir(root, "state_dir", &s->state_dir, errs);
    n += get_dir(root, "driver_dir", &s->driver_dir, errs);
    n += get_dir(root, "plugins_dir", &s->plugins_dir, errs);
    n += get_u32(root, NULL, "workers", 1, 64, &s->workers, errs);
    n += get_u32(root, NULL, "workers_per_account", 0, 64, &s->workers_per_account, errs);
    n += get_u32(root, NULL, "workers_per_kind", 0, 64, &s->workers_per_kind, errs);
    const mpc_node *level = mpc_get(root, "log_level");
    if (mpu_log_level_parse(level->str) < 0) {
        mpc_error_add(errs, level->file, level->line,
                      "\"log_level\" must be one of error, warning, info, debug, "
                      "not \"%s\"",
                      level->str);
        n++;
    }
    s->log_level = mpu_strdup(level->str);
    return n;
}

/* http.allowed_hosts: host names (no port, no brackets) as a
 * NULL-terminated copy; absent -> NULL. */
static size_t get_hosts(const mpc_node *http, char ***hosts_r, mpc_errors *errs)
{
    const mpc_node *node = mpc_get(http, "allowed_hosts");
    *hosts_r = NULL;
    if (node == NULL)
        return 0;
    size_t n = 0;
    char **hosts = mpu_calloc(node->n_items + 1, sizeof(*hosts));
    for (size_t i = 0; i < node->n_items; i++) {
        const char *h = node->items[i]->str != NULL ? node->items[i]->str : "";
        if (h[0] == '\0' || strlen(h) > 253 || strpbrk(h, ":/[] \t") != NULL) {
            mpc_error_add(errs, node->items[i]->file, node->items[i]->line,
                          "\"http.allowed_hosts\" entries are host names without a "
                          "port, not \"%s\"",
                          h);
            n++;
        }
        hosts[i] = mpu_strdup(h);
    }
    *hosts_r = hosts;
    return n;
}

static size_t fill_http(const mpc_node *http, mp_settings *s, mpc_errors *errs)
{
    size_t n = 0;
    const mpc_node *addr = mpc_get(http, "listen");
    if (!listen_valid(addr->str)) {
        mpc_error_add(errs, addr->file, addr->line,
                      "\"http.listen\" must be \"host:port\" (or \"\" to disable TCP), "
                      "not \"%s\"",
                      addr->str);
        n++;
    }
    s->http.listen = mpu_strdup(addr->str);
    const char *sock = mpc_string(http, "socket");
    if (sock != NULL)
        s->http.socket = mpu_strdup(sock);
    else if (s->state_dir != NULL) {
        size_t len = strlen(s->state_dir);
        int slash = len > 0 && s->state_dir[len - 1] == '/';
        s->http.socket = mpu_asprintf("%s%smailpulsed.sock", s->state_dir, slash ? "" : "/");
    }
    s->http.token_file = mpu_strdup(mpc_string(http, "token_file"));
    if (s->http.token_file != NULL && s->http.token_file[0] == '\0') {
        mpc_error_add(errs, http->file, mpc_get(http, "token_file")->line,
                      "\"http.token_file\" must not be empty");
        n++;
    }
    n += get_u32(http, "http", "max_body", 1, 1u << 30, &s->http.max_body, errs);
    n += get_u32(http, "http", "max_connections", 1, 65536, &s->http.max_connections, errs);
    n += get_u32(http, "http", "max_connections_per_client", 1, 65536,
                 &s->http.max_connections_per_client, errs);
    n += get_u32(http, "http", "request_timeout", 1, 3600, &s->http.request_timeout, errs);
    n += get_u32(http, "http", "idle_timeout", 1, 3600, &s->http.idle_timeout, errs);
    s->http.metrics_public = mpc_bool(http, "metrics_public");
    s->http.metrics_per_account = mpc_bool(http, "metrics_per_account");
    n += get_hosts(http, &s->http.allowed_hosts, errs);
    return n;
}

/* The name part of a listen address is a loopback address or
 * "localhost" (the shape was checked by listen_valid). */
static int listen_is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    size_t len = colon != NULL ? (size_t)(colon - listen) : strlen(listen);
    return (len == 5 && memcmp(listen, "[::1]", 5) == 0) ||
           (len == 9 && strncasecmp(listen, "localhost", 9) == 0) ||
           (len > 4 && memcmp(listen, "127.", 4) == 0 &&
            strspn(listen, "0123456789.") == len);
}

static size_t get_push_file(const mpc_node *push, const char *key, char **value_r,
                            mpc_errors *errs)
{
    const mpc_node *node = mpc_get(push, key);
    if (node == NULL || node->str == NULL || node->str[0] == '\0') {
        mpc_error_add(errs, push->file, node != NULL ? node->line : push->line,
                      "\"push.%s\" is required with push.tls = true (or set "
                      "tls = false behind a TLS-terminating proxy)",
                      key);
        return 1;
    }
    *value_r = mpu_strdup(node->str);
    return 0;
}

/* push { ... }: a public listener. TLS is the default and needs both
 * files; plaintext is meant for a reverse proxy on the same host, so a
 * plaintext listener off loopback needs plaintext_public = true. */
static size_t fill_push(const mpc_node *push, mp_settings *s, mpc_errors *errs)
{
    size_t n = 0;
    s->push.enabled = 1;
    const mpc_node *addr = mpc_get(push, "listen");
    if (addr->str[0] == '\0' || !listen_valid(addr->str)) {
        mpc_error_add(errs, addr->file, addr->line,
                      "\"push.listen\" must be \"host:port\", not \"%s\"", addr->str);
        n++;
    }
    s->push.listen = mpu_strdup(addr->str);
    s->push.tls = mpc_bool(push, "tls");
    s->push.plaintext_public = mpc_bool(push, "plaintext_public");
    const mpc_node *where = mpc_get(push, "tls_cert_file");
    where = where != NULL && where->line > 0 ? where : push;
    s->push.where = mpu_asprintf("%s:%d", where->file, where->line);
    if (s->push.tls) {
        n += get_push_file(push, "tls_cert_file", &s->push.tls_cert_file, errs);
        n += get_push_file(push, "tls_key_file", &s->push.tls_key_file, errs);
    } else if (!s->push.plaintext_public && n == 0 && !listen_is_loopback(addr->str)) {
        const mpc_node *tls = mpc_get(push, "tls");
        mpc_error_add(errs, tls->file, tls->line > 0 ? tls->line : addr->line,
                      "\"push.tls = false\" on \"%s\", which is not a loopback "
                      "address: push notifications would cross the network in clear "
                      "text (listen on 127.0.0.1 behind a TLS proxy, or set "
                      "plaintext_public = true if something else encrypts the path)",
                      addr->str);
        n++;
    }
    n += get_u32(push, "push", "max_body", 1, 1u << 30, &s->push.max_body, errs);
    n += get_u32(push, "push", "rate", 1, 1000000, &s->push.rate, errs);
    n += get_u32(push, "push", "rate_total", 1, 1000000, &s->push.rate_total, errs);
    return n;
}

/* store { backend; url_file; }: the URL itself is read at start
 * (mp_store_location), not here, so a configuration check never opens it. */
static size_t fill_store(const mpc_node *store, mp_settings *s, mpc_errors *errs)
{
    const mpc_node *backend = mpc_get(store, "backend");
    const mpc_node *url = mpc_get(store, "url_file");
    if (strcmp(backend->str, "sqlite") == 0) {
        s->store.backend = MP_STORE_SQLITE;
    } else if (strcmp(backend->str, "postgresql") == 0) {
        s->store.backend = MP_STORE_POSTGRESQL;
    } else {
        mpc_error_add(errs, backend->file, backend->line,
                      "\"store.backend\" must be sqlite or postgresql, not \"%s\"",
                      backend->str);
        return 1;
    }
    if (s->store.backend == MP_STORE_POSTGRESQL &&
        (url == NULL || url->str == NULL || url->str[0] == '\0')) {
        mpc_error_add(errs, store->file, url != NULL ? url->line : backend->line,
                      "\"store.url_file\" is required with store.backend = postgresql");
        return 1;
    }
    if (s->store.backend == MP_STORE_SQLITE && url != NULL) {
        mpc_error_add(errs, url->file, url->line,
                      "\"store.url_file\" is for store.backend = postgresql; the SQLite "
                      "store is <state_dir>/mailpulse.db");
        return 1;
    }
    s->store.url_file = url != NULL ? mpu_strdup(url->str) : NULL;
    return 0;
}

/* cluster { node; lease_ttl; }: needs the shared (PostgreSQL) store,
 * which fill_store has read by now. The default name is the host's. */
static size_t fill_cluster(const mpc_node *cluster, mp_settings *s, mpc_errors *errs)
{
    size_t n = 0;
    s->cluster.enabled = 1;
    if (s->store.backend != MP_STORE_POSTGRESQL) {
        mpc_error_add(errs, cluster->file, cluster->line,
                      "\"cluster\" needs store.backend = postgresql: the nodes share "
                      "their accounts, leases and events through that database");
        n++;
    }
    const mpc_node *node = mpc_get(cluster, "node");
    char host[256] = "";
    const char *name = node != NULL ? node->str : NULL;
    if (name == NULL) {
        if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
            snprintf(host, sizeof host, "node");
        name = host;
    }
    size_t len = strlen(name);
    int ok = len > 0 && len <= 64;
    for (size_t i = 0; ok && i < len; i++)
        ok = name[i] > ' ' && name[i] != 0x7f && name[i] != '#';
    if (!ok) {
        mpc_error_add(errs, cluster->file, node != NULL ? node->line : cluster->line,
                      "\"cluster.node\" must be 1-64 printable characters without "
                      "spaces or '#', not \"%s\"",
                      name);
        n++;
    }
    s->cluster.node = mpu_strdup(name);
    n += get_u32(cluster, "cluster", "lease_ttl", 2, 3600, &s->cluster.lease_ttl, errs);
    return n;
}

static size_t fill_groups(const mpc_node *root, mp_settings *s, mpc_errors *errs)
{
    const mpc_node *sync = mpc_get(root, "sync");
    const mpc_node *cache = mpc_get(root, "cache");
    const mpc_node *bf = mpc_get(root, "backfill");
    const mpc_node *sch = mpc_get(root, "schedule");
    const uint32_t big = UINT32_MAX;
    const uint32_t sched_max = MP_SCHEDULE_MAX_S;
    size_t n = fill_http(mpc_get(root, "http"), s, errs);
    n += fill_store(mpc_get(root, "store"), s, errs);
    if (mpc_get(root, "push") != NULL)
        n += fill_push(mpc_get(root, "push"), s, errs);
    if (mpc_get(root, "bus") != NULL)
        n += mpc__bus_fill(mpc_get(root, "bus"), s, errs);
    if (mpc_get(root, "cluster") != NULL)
        n += fill_cluster(mpc_get(root, "cluster"), s, errs);

    n += get_u32(sync, "sync", "batch_size", 1, 100000, &s->sync.batch_size, errs);
    n += get_u32(sync, "sync", "ingest_batch_size", 1, 100000, &s->sync.ingest_batch_size,
                 errs);
    n += get_u32(sync, "sync", "list_page_size", 1, 10000, &s->sync.list_page_size, errs);
    s->sync.fetch_bodies = mpc_bool(sync, "fetch_bodies");

    n += get_u32(cache, "cache", "retention_days", 0, 36500, &s->cache.retention_days,
                 errs);
    n += get_u32(cache, "cache", "prefetch_count", 0, 100000, &s->cache.prefetch_count,
                 errs);
    n += get_u32(cache, "cache", "prefetch_interval", 1, 86400, &s->cache.prefetch_interval,
                 errs);
    n += get_u32(cache, "cache", "prefetch_per_run", 0, 100000, &s->cache.prefetch_per_run,
                 errs);
    n += get_u32(cache, "cache", "prefetch_queue_max", 1, 10000000,
                 &s->cache.prefetch_queue_max, errs);
    n += get_u32(cache, "cache", "fetch_queue_max", 1, 10000, &s->cache.fetch_queue_max,
                 errs);
    n += get_u32(cache, "cache", "fetch_timeout", 1, 3600, &s->cache.fetch_timeout, errs);
    s->debug.clock_control = mpc_bool(mpc_get(root, "debug"), "clock_control");
    const mpc_node *outbox = mpc_get(root, "outbox");
    n += get_u32(outbox, "outbox", "retention_days", 0, 36500, &s->outbox.retention_days,
                 errs);
    n += get_u32(outbox, "outbox", "prune_interval", 1, 86400 * 7,
                 &s->outbox.prune_interval, errs);

    const mpc_node *mode = mpc_get(bf, "mode");
    if (strcmp(mode->str, "progressive") == 0)
        s->backfill.mode = MP_BACKFILL_PROGRESSIVE;
    else if (strcmp(mode->str, "full") == 0)
        s->backfill.mode = MP_BACKFILL_FULL;
    else if (strcmp(mode->str, "from_now_on") == 0)
        s->backfill.mode = MP_BACKFILL_FROM_NOW_ON;
    else {
        mpc_error_add(errs, mode->file, mode->line,
                      "\"backfill.mode\" must be one of progressive, full, from_now_on, "
                      "not \"%s\"",
                      mode->str);
        n++;
    }
    n += get_u32(bf, "backfill", "bootstrap_max", 0, big, &s->backfill.bootstrap_max, errs);
    n += get_u32(bf, "backfill", "batch_size", 1, 100000, &s->backfill.batch_size, errs);
    n += get_u32(bf, "backfill", "job_budget", 1, 86400, &s->backfill.job_budget, errs);
    n += get_u32(bf, "backfill", "max_per_folder", 0, big, &s->backfill.max_per_folder,
                 errs);

    n += get_u32(sch, "schedule", "bootstrap_interval", 1, sched_max,
                 &s->schedule.bootstrap_interval, errs);
    n += get_u32(sch, "schedule", "backfill_interval", 1, sched_max,
                 &s->schedule.backfill_interval, errs);
    n += get_u32(sch, "schedule", "cache_cleanup_interval", 1, sched_max,
                 &s->schedule.cache_cleanup_interval, errs);
    n += get_u32(sch, "schedule", "push_renew_interval", 1, sched_max,
                 &s->schedule.push_renew_interval, errs);
    n += get_u32(sch, "schedule", "reconcile_interval", 1, sched_max,
                 &s->schedule.reconcile_interval, errs);
    n += get_u32(sch, "schedule", "folder_list_interval", 1, sched_max,
                 &s->schedule.folder_list_interval, errs);
    n += get_u32(sch, "schedule", "max_backoff", 1, sched_max, &s->schedule.max_backoff, errs);
    n += get_u32(sch, "schedule", "push_silence_hours", 0, sched_max / 3600,
                 &s->schedule.push_silence_hours, errs);
    return n;
}

int mp_settings_load(const char *path, mp_settings **settings_r, mpc_errors *errs)
{
    *settings_r = NULL;
    mpc_node *root = path != NULL
                         ? mpc_load_libconfig(path, errs)
                         : mpc_parse_libconfig_string(default_text, EMBEDDED_NAME, errs);
    if (root == NULL)
        return -1;
    if (validate_tree(root, errs) > 0) {
        mpc_free(&root);
        return -1;
    }
    mp_settings *s = mpu_calloc(1, sizeof *s);
    s->source = mpu_strdup(path != NULL ? path : EMBEDDED_NAME);
    size_t n = fill_top(root, s, errs);
    n += fill_groups(root, s, errs);
    n += mpc__webhooks_fill(root, s, errs);
    mpc_free(&root);
    if (n > 0) {
        mp_settings_free(&s);
        return -1;
    }
    *settings_r = s;
    return 0;
}

/* mailpulsed: start-up, configuration check, signals, reload, shutdown.
 * Runs in the foreground (systemd supervises it); logs to stderr. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "daemon/api.h"
#include "daemon/cluster.h"
#include "daemon/daemon.h"
#include "daemon/notify.h"
#include "daemon/print_keys.h"
#include "daemon/prefetch.h"
#include "net/net.h"
#include "http/http.h"
#include "oauth/oauth.h"
#include "util/fdlimit.h"
#include "util/log.h"
#include "util/util.h"
#include "webhook/webhook.h"
#include "bus/bus.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mailpulsed [-c FILE] [--check-config | --print-keys] [--log-level LEVEL]\n"
            "  -c, --config FILE    daemon settings (libconfig); default: embedded defaults\n"
            "      --check-config   validate settings, plugins.d files and drivers, then exit\n"
            "                       (status 1 and one 'file:line: message' per problem)\n"
            "      --print-keys     print every setting and each driver's keys as JSON\n"
            "      --log-level L    error | warning | info | debug (overrides log_level)\n"
            "  -V, --version        print the version and driver ABI\n"
            "  -h, --help           this text\n");
}

static void print_errors(const mpc_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msgs[i]);
}

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Each enabled instance against its driver: the driver must load and the
 * file's keys must be the ones it declares. Shared by --check-config and
 * SIGHUP, so a reload refuses exactly what the check reports. */
static void validate_drivers(const char *driver_dir, mpc_instance_conf **list, size_t n,
                             mpc_errors *errs)
{
    for (size_t i = 0; i < n; i++) {
        if (!list[i]->enabled)
            continue;
        char *error = NULL;
        errno = 0;
        mpl_driver *drv = mpl_load(driver_dir, list[i]->driver, &error);
        if (drv == NULL) {
            int err = errno;
            mpc_error_add(errs, list[i]->file, 1, "driver '%s' refused: %s",
                          list[i]->driver, error);
            mpc_error_cause(errs, err);
            free(error);
            continue;
        }
        mpc_validate_instance(list[i], &drv->desc, errs);
        mpl_unload(&drv);
    }
}

/* The push listener's TLS context as the settings describe it: *ctx_r
 * stays NULL without a push group or with tls = false. Errors name the
 * setting's file:line. Returns the number of errors added. */
static size_t push_tls_load(const mp_settings *s, struct ssl_ctx_st **ctx_r,
                            mpc_errors *errs)
{
    *ctx_r = NULL;
    if (!s->push.enabled || !s->push.tls)
        return 0;
    char *error = NULL;
    errno = 0;
    *ctx_r = mph_tls_load(s->push.tls_cert_file, s->push.tls_key_file, &error);
    if (*ctx_r != NULL)
        return 0;
    int err = errno;
    mpc_error_add(errs, s->push.where, 0, "%s", error);
    mpc_error_cause(errs, err);
    free(error);
    return 1;
}

/* Settings + plugins.d + each enabled driver's declared keys. */
static int check_config(const char *path)
{
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    if (mp_settings_load(path, &s, &errs) < 0) {
        print_errors(&errs);
        mpc_errors_free(&errs);
        return 1;
    }
    mpc_webhooks_read_secrets(s, &errs);
    mpc_bus_read_secrets(s, &errs);
    struct ssl_ctx_st *tls = NULL;
    push_tls_load(s, &tls, &errs);
    mph_tls_free(&tls);
    mpc_instance_conf **list = NULL;
    size_t n = 0, accounts = 0;
    mpc_plugins_load(s->plugins_dir, &list, &n, &errs);
    for (size_t i = 0; i < n; i++)
        accounts += list[i]->n_accounts;
    validate_drivers(s->driver_dir, list, n, &errs);
    int rc = errs.n > 0 ? 1 : 0;
    if (rc)
        print_errors(&errs);
    else
        printf("%s: OK (%zu driver instances, %zu accounts in %s)\n",
               path ? path : "<embedded default>", n, accounts, s->plugins_dir);
    mpc_instances_free(&list, n);
    mpc_errors_free(&errs);
    mp_settings_free(&s);
    return rc;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    if (mpu_strlcpy(buf, path, sizeof buf) < 0)
        return -1;
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* The bearer token for TCP clients: from token_file, else generated once
 * into <state_dir>/api.token (0600) so a fresh install is never open. */
static char *load_token(const mp_settings *s)
{
    char *data = NULL, *error = NULL;
    char *path = s->http.token_file ? mpu_strdup(s->http.token_file)
                                    : mpu_asprintf("%s/api.token", s->state_dir);
    if (s->http.token_file == NULL && access(path, F_OK) != 0) {
        unsigned char raw[32];
        char hex[65];
        if (mpu_random(raw, sizeof raw) < 0) {
            mpu_error("core", "cannot generate an API token");
            free(path);
            return NULL;
        }
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(hex + 2 * i, 3, "%02x", raw[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, hex, 64) != 64 || write(fd, "\n", 1) != 1) {
            mpu_error("core", "cannot write %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            free(path);
            return NULL;
        }
        close(fd);
        mpu_info("core", "generated API token in %s", path);
    }
    if (mpu_read_file(path, 4096, 1, &data, NULL, &error) < 0) {
        mpu_error("core", "API token: %s", error);
        free(error);
        free(path);
        return NULL;
    }
    data[strcspn(data, "\r\n")] = '\0';
    if (strlen(data) < 16) {
        mpu_error("core", "API token in %s is shorter than 16 characters", path);
        mpu_secret_free(&data);
        free(path);
        return NULL;
    }
    free(path);
    return data;
}

static void write_addr_file(const mpd *d, int port)
{
    const char *listen = d->settings->http.listen;
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || port <= 0)
        return;
    char *tmp = mpu_asprintf("%s/http.addr.tmp", d->settings->state_dir);
    char *final = mpu_asprintf("%s/http.addr", d->settings->state_dir);
    char *line = mpu_asprintf("%.*s:%d\n", (int)(colon - listen), listen, port);
    FILE *f = fopen(tmp, "w");
    if (f != NULL) {
        fputs(line, f);
        if (fclose(f) == 0)
            rename(tmp, final);
    }
    free(line);
    free(tmp);
    free(final);
}

static int load_plugins(const mp_settings *s, mpc_instance_conf ***list_r, size_t *n_r,
                        mpc_errors *errs)
{
    *list_r = NULL;
    *n_r = 0;
    if (!dir_exists(s->plugins_dir)) {
        mpu_warn("core", "plugins directory %s does not exist: no driver instances",
                 s->plugins_dir);
        return 0;
    }
    return mpc_plugins_load(s->plugins_dir, list_r, n_r, errs);
}

static void apply_log_level(const mp_settings *s, const char *override)
{
    int level = mpu_log_level_parse(override ? override : s->log_level);
    if (level >= 0)
        mpu_log_set_level((mp_log_level)level);
}

static const char *log_override;
/* systemd's view of the daemon (notify.h); NULL when not under systemd. */
static mpd_notify *notifier;

/* The OAuth2 service keeps a rotated refresh token in the store. Its
 * callbacks run on the thread that asked for a token (a worker), so they
 * go through that thread's own connection. */
static int oauth_persist(void *arg, const char *account, const char *record, char **error_r)
{
    mps_store *s = mpd_store(arg);
    if (s == NULL) {
        *error_r = mpu_strdup("store unavailable");
        return -1;
    }
    return mpo_store_persist(s, account, record, error_r);
}

static int oauth_load(void *arg, const char *account, char **record_r, char **error_r)
{
    mps_store *s = mpd_store(arg);
    if (s == NULL) {
        *error_r = mpu_strdup("store unavailable");
        return -1;
    }
    return mpo_store_load(s, account, record_r, error_r);
}

static int str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* The relay copies its settings at start; a reload only says so. The
 * reloaded settings keep their own copy (the retention run reads
 * bus.enabled, which must stay what the running relay is). */
static int bus_changed(const mp_bus_conf *old, mp_bus_conf *now)
{
    int changed = old->enabled != now->enabled || str_differs(old->nats_url, now->nats_url) ||
                  str_differs(old->stream, now->stream) ||
                  str_differs(old->token_file, now->token_file) ||
                  str_differs(old->creds_file, now->creds_file) ||
                  str_differs(old->tls_ca_file, now->tls_ca_file) ||
                  old->duplicate_window != now->duplicate_window ||
                  old->max_pending != now->max_pending ||
                  old->ack_timeout != now->ack_timeout || old->retry_max != now->retry_max;
    now->enabled = old->enabled;
    return changed;
}

/* Cluster mode: tell the lease thread the configured accounts (after
 * every registry apply). */
static void cluster_accounts(mpd *d)
{
    if (d->cluster == NULL)
        return;
    char **ids = NULL;
    size_t n = mpd_registry_account_ids(d, &ids);
    mpd_cluster_set_accounts(d->cluster, (const char *const *)ids, n);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/*
 * A reload that could not read its files because the process is out of
 * descriptors says nothing about the configuration: it is neither refused
 * nor applied but tried again, 1 s doubling to RELOAD_RETRY_MAX_MS, with
 * the running configuration and every account kept meanwhile. The shortage
 * itself is logged once per episode (mpu_fd_shortage_note) and the
 * postponement once until a reload completes; a new SIGHUP starts over.
 * Loop thread only.
 */
#define RELOAD_RETRY_FIRST_MS 1000
#define RELOAD_RETRY_MAX_MS 60000

static struct event *reload_retry_ev;
static int reload_retry_ms; /* the next delay; 0: no retry pending */

static void on_reload_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    int r = mpd_reload(arg);
    if (r <= 0)
        mpd_notify_reloaded(notifier, r == 0);
}

static void reload_postpone(mpd *d, int err)
{
    mpu_fd_shortage_note("configuration reload", err);
    if (reload_retry_ms == 0) {
        reload_retry_ms = RELOAD_RETRY_FIRST_MS;
        mpu_warn("core", "reload postponed: out of file descriptors while reading the "
                         "configuration (%s); keeping the running configuration and trying "
                         "again with backoff",
                 strerror(err));
    }
    if (reload_retry_ev == NULL)
        reload_retry_ev = evtimer_new(d->base, on_reload_retry, d);
    struct timeval tv = {reload_retry_ms / 1000, (reload_retry_ms % 1000) * 1000};
    if (reload_retry_ev != NULL)
        evtimer_add(reload_retry_ev, &tv);
    reload_retry_ms = reload_retry_ms >= RELOAD_RETRY_MAX_MS / 2 ? RELOAD_RETRY_MAX_MS
                                                                 : reload_retry_ms * 2;
}

static void reload_retry_cancel(void)
{
    if (reload_retry_ev != NULL)
        evtimer_del(reload_retry_ev);
    reload_retry_ms = 0;
}

/* SIGHUP: everything or nothing. A reload with any error keeps the running
 * configuration, so a typo never stops accounts that were working; one
 * that met a descriptor shortage is retried (above). Returns 0 applied,
 * -1 refused, 1 postponed. */
int mpd_reload(mpd *d)
{
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    mpc_instance_conf **list = NULL;
    size_t n = 0;
    struct ssl_ctx_st *tls = NULL;
    mpu_info("core", "reloading configuration");
    /* The certificate is re-read only for a running TLS push listener; a
     * file that does not load refuses the reload like any other error,
     * and the listener keeps its current certificate. */
    bool push_tls = d->settings->push.enabled && d->settings->push.tls;
    if (mp_settings_load(d->config_path, &s, &errs) == 0 &&
        mpc_webhooks_read_secrets(s, &errs) == 0 && mpc_bus_read_secrets(s, &errs) == 0 &&
        (!push_tls || push_tls_load(s, &tls, &errs) == 0) &&
        load_plugins(s, &list, &n, &errs) == 0)
        validate_drivers(d->settings->driver_dir, list, n, &errs); /* driver_dir is kept */
    if ((s == NULL || errs.n > 0) && errs.shortage != 0) {
        reload_postpone(d, errs.shortage);
        mph_tls_free(&tls);
        mpc_instances_free(&list, n);
        mpc_errors_free(&errs);
        mp_settings_free(&s);
        return 1;
    }
    int was_postponed = reload_retry_ms != 0;
    reload_retry_cancel();
    if (s == NULL || errs.n > 0) {
        mph_tls_free(&tls);
        for (size_t i = 0; i < errs.n; i++)
            mpu_error("config", "%s", errs.msgs[i]);
        mpu_error("core", "reload refused (%zu errors); keeping the running configuration",
                  errs.n);
        mpc_instances_free(&list, n);
        mpc_errors_free(&errs);
        mp_settings_free(&s);
        return -1;
    }
    /* Addresses, paths and the worker count are bound at start. */
    mp_settings *old = d->settings;
#define KEEP(field)                                                                      \
    do {                                                                                 \
        if ((old->field == NULL) != (s->field == NULL) ||                                \
            (old->field != NULL && strcmp(old->field, s->field) != 0))                   \
            mpu_warn("core", #field " changed: takes effect after a restart");          \
        char *tmp_ = s->field;                                                           \
        s->field = old->field;                                                           \
        old->field = tmp_;                                                               \
    } while (0)
    KEEP(state_dir);
    KEEP(driver_dir);
    KEEP(plugins_dir);
    KEEP(http.listen);
    KEEP(http.socket);
    KEEP(http.token_file);
    KEEP(push.listen);
    KEEP(store.url_file);
    KEEP(cluster.node);
#undef KEEP
    if (s->cluster.enabled != old->cluster.enabled ||
        s->cluster.lease_ttl != old->cluster.lease_ttl)
        mpu_warn("core", "cluster settings changed: take effect after a restart");
    s->cluster.enabled = old->cluster.enabled;
    s->cluster.lease_ttl = old->cluster.lease_ttl;
    if (s->store.backend != old->store.backend)
        mpu_warn("core", "store.backend changed: takes effect after a restart");
    s->store.backend = old->store.backend;
    if (s->push.enabled != old->push.enabled || s->push.tls != old->push.tls ||
        s->push.max_body != old->push.max_body || s->push.rate != old->push.rate ||
        s->push.rate_total != old->push.rate_total)
        mpu_warn("core", "push listener settings changed: take effect after a restart "
                         "(only its certificate files are re-read now)");
    s->push.enabled = old->push.enabled;
    s->push.tls = old->push.tls;
    s->push.max_body = old->push.max_body;
    s->push.rate = old->push.rate;
    s->push.rate_total = old->push.rate_total;
    if (bus_changed(&old->bus, &s->bus))
        mpu_warn("core", "bus settings changed: take effect after a restart");
    if (tls != NULL) {
        mph_push_set_tls(d->http, tls);
        mph_tls_free(&tls);
        mpu_info("http", "push listener: certificate re-read from %s",
                 s->push.tls_cert_file);
    }
    if (s->workers != old->workers || s->workers_per_account != old->workers_per_account ||
        s->workers_per_kind != old->workers_per_kind) {
        mpu_warn("core", "workers changed: takes effect after a restart");
        s->workers = old->workers;
        s->workers_per_account = old->workers_per_account;
        s->workers_per_kind = old->workers_per_kind;
    }
    d->settings = s;
    mp_settings_free(&old);
    apply_log_level(s, log_override);
    pthread_mutex_lock(&d->knobs_lock);
    mpd_knobs_from_settings(s, &d->knobs);
    mpd_host_publish_knobs(&d->knobs);
    pthread_mutex_unlock(&d->knobs_lock);
    /* Secret files may have been replaced (a fresh authorization): cached
     * tokens and parked failures go, then accounts parked in reauth or
     * fatal get one sync to find out. */
    if (d->oauth != NULL)
        mpo_credentials_changed(d->oauth, NULL);
    mpd_registry_apply(d, list, n);
    free(list);
    cluster_accounts(d);
    mpd_registry_resume_stopped(d);
    if (d->webhooks != NULL)
        mpw_apply(d->webhooks, s);
    mpu_info("core", was_postponed ? "configuration reloaded (after a postponement)"
                                    : "configuration reloaded");
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    mpd *d = arg;
    if (sig == SIGHUP) {
        /* A new signal starts over: the first delay again if it is short. */
        reload_retry_cancel();
        mpd_notify_reloading(notifier);
        /* Postponed counts as done-but-not-applied for systemd, which
         * waits for READY=1; the retry that applies says READY=1 again. */
        mpd_notify_reloaded(notifier, mpd_reload(d) == 0);
        return;
    }
    mpu_info("core", "signal %d: shutting down", (int)sig);
    mpd_notify_stopping(notifier);
    event_base_loopexit(d->base, NULL);
}


static int run(const char *config_path)
{
    mpc_errors errs = {0};
    mp_settings *settings = NULL;
    if (mp_settings_load(config_path, &settings, &errs) < 0 ||
        mpc_webhooks_read_secrets(settings, &errs) > 0 ||
        mpc_bus_read_secrets(settings, &errs) > 0) {
        print_errors(&errs);
        mpc_errors_free(&errs);
        mp_settings_free(&settings);
        return 1;
    }
    apply_log_level(settings, log_override);
    /* Every account holds descriptors (sockets, the store per worker):
     * the default soft limit of 1,024 would cap a daemon near 250. */
    mpu_fd_raise_limit();
    if (mkdir_p(settings->state_dir, 0750) < 0) {
        mpu_error("core", "cannot create state_dir %s: %s", settings->state_dir,
                  strerror(errno));
        mp_settings_free(&settings);
        return 1;
    }

    mpd *d = mpu_calloc(1, sizeof *d);
    d->settings = settings;
    d->config_path = mpu_strdup(config_path);
    d->started_ms = mpu_now_ms();
    d->loop_thread = pthread_self();
    pthread_mutex_init(&d->knobs_lock, NULL);
    pthread_rwlock_init(&d->registry_lock, NULL);
    mpd_knobs_from_settings(settings, &d->knobs);
    mpd_host_publish_knobs(&d->knobs);
    int rc = 1;

    char *error = NULL;
    if (mp_store_location(settings, &d->db_path, &error) < 0) {
        mpu_error("store", "%s", error);
        free(error);
        goto out;
    }
    /* A PostgreSQL URL may hold a password: messages name the backend. */
    const char *store_name =
        settings->store.backend == MP_STORE_POSTGRESQL ? "the PostgreSQL store" : d->db_path;
    if (mps_pool_open(d->db_path, mpn_thread_cleanup, &d->pool, &error) < 0) {
        mpu_error("store", "cannot open %s: %s", store_name, error);
        free(error);
        goto out;
    }
    d->store = mpd_store(d);
    d->token = load_token(settings);
    if (d->token == NULL)
        goto out;

    evthread_use_pthreads();
    d->base = event_base_new();
    mpn_global_init();
    mpd_host_env_init(d);
    d->events = mpe_open(d->base, d->store);
    mpj_config jc = {.workers = settings->workers,
                     .max_backoff_ms = (uint64_t)settings->schedule.max_backoff * 1000u,
                     .run = mpd_run_job,
                     .done = mpd_job_done,
                     .arg = d,
                     .account_max_workers = settings->workers_per_account,
                     .kind_max_workers = settings->workers_per_kind};
    d->sched = mpj_new(d->base, &jc);
    mpd_maintenance_start(d);
    mpd_prefetch_start(d);
    /* Alone, this node delivers the outbox; in a cluster the node holding
     * the outbox role does (cluster.h). */
    if (!settings->cluster.enabled)
        mpd_outbox_role(d, 1);
    mpo_options oauth_opt = {.persist = oauth_persist, .load = oauth_load, .arg = d};
    d->oauth = mpo_service_new(&oauth_opt);
    d->host_env.oauth = d->oauth;

    struct ssl_ctx_st *push_tls = NULL;
    if (push_tls_load(settings, &push_tls, &errs) > 0) {
        print_errors(&errs);
        mpc_errors_free(&errs);
        goto out;
    }
    mph_config hc = {
        .listen = settings->http.listen,
        .socket = settings->http.socket,
        .token = d->token,
        .max_body = settings->http.max_body,
        .sse_heartbeat_ms = 15000,
        .limits = {settings->http.max_connections,
                   settings->http.max_connections_per_client,
                   settings->http.request_timeout * 1000u,
                   settings->http.idle_timeout * 1000u},
        .metrics_public = settings->http.metrics_public != 0,
        .allowed_hosts = (const char *const *)settings->http.allowed_hosts,
        .push = {.listen = settings->push.enabled ? settings->push.listen : NULL,
                 .tls = push_tls,
                 .max_body = settings->push.max_body,
                 .rate = settings->push.rate,
                 .rate_total = settings->push.rate_total},
    };
    d->http = mph_start(d->base, &hc, d, &error);
    mph_tls_free(&push_tls);
    if (d->http == NULL) {
        mpu_error("http", "%s", error);
        free(error);
        goto out;
    }
    if (settings->http.listen != NULL && *settings->http.listen != '\0') {
        write_addr_file(d, mph_port(d->http));
        mpu_info("http", "listening on %s (port %d)", settings->http.listen,
                 mph_port(d->http));
    }
    if (settings->http.socket != NULL && *settings->http.socket != '\0')
        mpu_info("http", "listening on unix socket %s", settings->http.socket);
    if (settings->push.enabled)
        mpu_info("http", "push listener on %s (port %d, %s)", settings->push.listen,
                 mph_push_port(d->http), settings->push.tls ? "TLS" : "plaintext");

    mpc_instance_conf **list = NULL;
    size_t n = 0;
    load_plugins(settings, &list, &n, &errs);
    for (size_t i = 0; i < errs.n; i++)
        mpu_error("config", "%s", errs.msgs[i]);
    mpc_errors_free(&errs);
    /* Cluster mode: the lease thread runs before the registry is built,
     * which then opens only the accounts this node holds (none yet: they
     * come with the first rounds). */
    if (settings->cluster.enabled) {
        d->cluster = mpd_cluster_start(d, d->db_path, settings->cluster.node,
                                       settings->cluster.lease_ttl * 1000u, &error);
        if (d->cluster == NULL) {
            mpu_error("cluster", "%s", error);
            free(error);
            mpc_instances_free(&list, n);
            goto out;
        }
    }
    mpd_registry_apply(d, list, n);
    free(list);
    cluster_accounts(d);

    /* Hints that arrived before a crash are synced first. */
    mpd_registry_sync_pending_hints(d);

    d->sig_hup = evsignal_new(d->base, SIGHUP, on_signal, d);
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    evsignal_add(d->sig_hup, NULL);
    evsignal_add(d->sig_term, NULL);
    evsignal_add(d->sig_int, NULL);
    mpu_info("core", "mailpulsed %s running (state %s, %u workers, driver ABI %d.%d)",
             MP_VERSION, settings->state_dir, settings->workers, MP_ABI_MAJOR, MP_ABI_MINOR);
    /* The store is open, the listeners are bound, the instances are in
     * the registry: a client that systemd lets go now finds the API. */
    notifier = mpd_notify_ready(d);
    event_base_dispatch(d->base);
    rc = 0;

out:
    /* No lease changes from here on; the leases go back once the
     * accounts are closed (mpd_cluster_free below). */
    mpd_cluster_stop(d->cluster);
    mpd_notify_free(&notifier);
    mpd_prefetch_stop(d);
    mph_stop(&d->http);
    mpw_stop(&d->webhooks);
    mpd_maintenance_stop(d);
    mpj_free(&d->sched);
    /* Before the pool closes: the relay thread holds a store connection;
     * what it has not published goes out at the next start. */
    mpb_stop(&d->bus);
    mpd_fetch_free(d);
    mpd_prefetch_free(d);
    if (d->base != NULL) {
        /* Account closes deferred by workers run now, on this thread. */
        event_base_loop(d->base, EVLOOP_NONBLOCK);
        mpd_registry_clear(d);
        event_base_loop(d->base, EVLOOP_NONBLOCK);
        mpd_cluster_free(&d->cluster);
        mphost_release_global_objs();
        mpe_close(&d->events, d->store);
        if (reload_retry_ev != NULL) {
            event_free(reload_retry_ev);
            reload_retry_ev = NULL;
        }
        if (d->sig_hup != NULL) {
            event_free(d->sig_hup);
            event_free(d->sig_term);
            event_free(d->sig_int);
        }
        event_base_free(d->base);
    }
    /* After the workers (mpj_free) and the accounts (registry) are gone. */
    d->host_env.oauth = NULL;
    mpo_service_free(&d->oauth);
    d->store = NULL;
    mps_pool_close(&d->pool);
    mpu_secret_free(&d->token);
    mp_settings_free(&d->settings);
    pthread_rwlock_destroy(&d->registry_lock);
    pthread_mutex_destroy(&d->knobs_lock);
    free(d->config_path);
    mpu_secret_free(&d->db_path);
    free(d);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"print-keys", no_argument, NULL, 'p'},
        {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int check = 0, print_keys = 0, c;
    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'p':
            print_keys = 1;
            break;
        case 'l':
            if (mpu_log_level_parse(optarg) < 0) {
                fprintf(stderr, "mailpulsed: unknown log level '%s'\n", optarg);
                return 2;
            }
            log_override = optarg;
            break;
        case 'V':
            printf("mailpulsed %s (driver ABI %d.%d)\n", MP_VERSION, MP_ABI_MAJOR,
                   MP_ABI_MINOR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (check)
        return check_config(config);
    if (print_keys)
        return mpd_print_keys(config, stdout);
    return run(config);
}

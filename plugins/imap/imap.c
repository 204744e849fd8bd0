/* imap.so's descriptor, configuration keys and account lifecycle. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_driver.h"
#include "imap_pool.h"
#include "imap_strategy.h"
#include "imap_sync.h"

const mp_host *imap_host;

/* Connections kept between jobs and the instance's limits. */
#define IMAP_REAP_MIN_MS 250u
#define IMAP_REAP_MAX_MS 15000u

static void reap_due(void *arg);

static void arm_reaper(imap_instance *in)
{
    uint32_t every = in->sync_idle_ms / 4;
    if (every < IMAP_REAP_MIN_MS)
        every = IMAP_REAP_MIN_MS;
    if (every > IMAP_REAP_MAX_MS)
        every = IMAP_REAP_MAX_MS;
    in->t_reap = imap_host->timer_add(NULL, every, reap_due, in);
}

/* Close the sync and fetch connections idle for sync_idle_close, so an
 * account at rest holds its push connection only. A scan of every account
 * a few times per idle period: a mutex and two comparisons each, on the
 * loop (10,000 accounts: well under a millisecond). */
static void reap_due(void *arg)
{
    imap_instance *in = arg;
    imap_host->timer_cancel(&in->t_reap);
    for (imap_account *a = in->accounts; a != NULL; a = a->inst_next)
        imap_sync_reap(a, in->sync_idle_ms);
    arm_reaper(in);
}

static mp_status imap_init(const mp_host *host, mp_instance *inst, const mp_config *cfg,
                           void **state_r, mp_error *err)
{
    if (host->abi_major != MP_ABI_MAJOR)
        return mp_fail(err, MP_FATAL, "host ABI %u.%u, imap built for %d.%d",
                       (unsigned)host->abi_major, (unsigned)host->abi_minor, MP_ABI_MAJOR,
                       MP_ABI_MINOR);
    /* Every instance gets the same table; writing it only when it differs
     * keeps a second instance's init from racing the first one's workers. */
    if (imap_host != host)
        imap_host = host;
    int64_t rate = host->config_int(cfg, "connect_rate");
    int64_t conc = host->config_int(cfg, "connect_concurrency");
    int64_t idle = host->config_int(cfg, "sync_idle_close");
    int64_t idle_max = host->config_int(cfg, "sync_idle_max");
    if (rate < 0 || rate > 100000)
        return mp_fail(err, MP_FATAL, "connect_rate: %lld is out of range 0..100000",
                       (long long)rate);
    if (conc < 1 || conc > 64)
        return mp_fail(err, MP_FATAL, "connect_concurrency: %lld is out of range 1..64",
                       (long long)conc);
    if (idle < 0 || idle > 86400)
        return mp_fail(err, MP_FATAL, "sync_idle_close: %lld is out of range 0..86400",
                       (long long)idle);
    if (idle_max < 1 || idle_max > 1000000)
        return mp_fail(err, MP_FATAL, "sync_idle_max: %lld is out of range 1..1000000",
                       (long long)idle_max);
    char *error = NULL;
    imap_pool *pool = imap_pool_new((unsigned)conc, (uint32_t)rate, (uint32_t)conc, &error);
    if (pool == NULL) {
        mp_fail(err, MP_RETRY, "imap: %s", error);
        free(error);
        return MP_RETRY;
    }
    imap_instance *in = imap_xcalloc(1, sizeof *in);
    in->inst = inst;
    in->pool = pool;
    in->limit = imap_pool_limit(pool);
    in->sync_idle_ms = (uint32_t)idle * 1000u;
    in->idle_max = (uint32_t)idle_max;
    atomic_init(&in->idle_kept, 0);
    if (in->sync_idle_ms > 0)
        arm_reaper(in);
    *state_r = in;
    return MP_OK;
}

static void imap_deinit(mp_instance *inst, void **state)
{
    (void)inst;
    if (state == NULL || *state == NULL)
        return;
    imap_instance *in = *state;
    imap_host->timer_cancel(&in->t_reap);
    imap_pool_free(&in->pool);
    free(in);
    *state = NULL;
}

static void account_free(imap_account *a)
{
    if (a == NULL)
        return;
    imap_sync_forget(a);
    if (a->inst_pprev != NULL) {
        *a->inst_pprev = a->inst_next;
        if (a->inst_next != NULL)
            a->inst_next->inst_pprev = a->inst_pprev;
    }
    imap_sync_forget_kept(a);
    imap_conn_abort(&a->sync_conn);
    imap_conn_abort(&a->fetch_conn);
    pthread_mutex_destroy(&a->conn_lock);
    for (size_t i = 0; i < a->n_folders; i++)
        free(a->folders[i]);
    free(a->folders);
    free(a->id);
    free(a->host);
    free(a->ca_file);
    free(a->username);
    free(a->caps.raw);
    free(a->caps.auth_mechs);
    free(a->caps.greeting);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static int set_string(const mp_config *cfg, const char *key, char **out_r)
{
    const char *v = imap_host->config_string(cfg, key);
    if (v == NULL || v[0] == '\0')
        return 0;
    *out_r = imap_xstrdup(v);
    return 1;
}

/* One keyword of a closed set; -1 when `v` is none of them. */
static int keyword(const char *v, const char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v, words[i]) == 0)
            return (int)i;
    return -1;
}

/* An integer key bounded to lo..hi; the error names the key and range. */
static mp_status int_in_range(const mp_config *cfg, const char *key, int64_t lo, int64_t hi,
                              int64_t *value_r, mp_error *err)
{
    *value_r = imap_host->config_int(cfg, key);
    if (*value_r < lo || *value_r > hi)
        return mp_fail(err, MP_FATAL, "%s: %lld is out of range %lld..%lld", key,
                       (long long)*value_r, (long long)lo, (long long)hi);
    return MP_OK;
}

static mp_status parse_modes(imap_account *a, const mp_config *cfg, mp_error *err)
{
    const mp_host *h = imap_host;
    static const char *const tls_words[] = {"implicit", "starttls", "none"};
    static const imap_tls_mode tls_modes[] = {IMAP_TLS_IMPLICIT, IMAP_TLS_STARTTLS,
                                              IMAP_TLS_NONE};
    const char *tls = h->config_string(cfg, "tls");
    int k = keyword(tls != NULL ? tls : "implicit", tls_words, 3);
    if (k < 0)
        return mp_fail(err, MP_FATAL, "tls: \"%s\" is not implicit, starttls or none",
                       tls);
    a->tls = tls_modes[k];

    int64_t port = h->config_int(cfg, "port");
    if (port == 0)
        port = a->tls == IMAP_TLS_IMPLICIT ? 993 : 143;
    if (port < 1 || port > 65535)
        return mp_fail(err, MP_FATAL, "port: %lld is out of range 1..65535",
                       (long long)port);
    a->port = (uint16_t)port;

    const char *pw = h->config_string(cfg, "password_file");
    const char *tok = h->config_string(cfg, "oauth_token_file");
    int has_pw = pw != NULL && pw[0] != '\0';
    int has_tok = tok != NULL && tok[0] != '\0';
    if (has_pw && has_tok)
        return mp_fail(err, MP_FATAL,
                       "password_file and oauth_token_file: give only one of them");
    if (!has_pw && !has_tok)
        return mp_fail(err, MP_FATAL, "password_file or oauth_token_file is required");
    a->secret_key = has_pw ? "password_file" : "oauth_token_file";

    static const char *const auth_words[] = {"plain", "login", "xoauth2", "oauthbearer"};
    static const imap_auth_mech auth_mechs[] = {IMAP_AUTH_PLAIN, IMAP_AUTH_LOGIN,
                                                IMAP_AUTH_XOAUTH2, IMAP_AUTH_OAUTHBEARER};
    const char *auth = h->config_string(cfg, "auth");
    if (auth == NULL || auth[0] == '\0')
        auth = has_tok ? "xoauth2" : "plain";
    k = keyword(auth, auth_words, 4);
    if (k < 0)
        return mp_fail(err, MP_FATAL,
                       "auth: \"%s\" is not plain, login, xoauth2 or oauthbearer", auth);
    a->auth = auth_mechs[k];
    int oauth = a->auth == IMAP_AUTH_XOAUTH2 || a->auth == IMAP_AUTH_OAUTHBEARER;
    if (oauth && !has_tok)
        return mp_fail(err, MP_FATAL, "auth: %s needs oauth_token_file", auth_words[k]);
    if (!oauth && !has_pw)
        return mp_fail(err, MP_FATAL, "auth: %s needs password_file", auth_words[k]);

    static const char *const push_words[] = {"auto", "idle", "notify", "off"};
    static const imap_push_mode push_modes[] = {IMAP_PUSH_AUTO, IMAP_PUSH_IDLE,
                                                IMAP_PUSH_NOTIFY, IMAP_PUSH_OFF};
    const char *push = h->config_string(cfg, "push");
    k = keyword(push != NULL && push[0] != '\0' ? push : "auto", push_words, 4);
    if (k < 0)
        return mp_fail(err, MP_FATAL, "push: \"%s\" is not auto, idle, notify or off",
                       push);
    a->push_mode = push_modes[k];

    int64_t maxc, check, maxm, deadline, mem;
    if (int_in_range(cfg, "max_connections", 1, 50, &maxc, err) != MP_OK ||
        int_in_range(cfg, "push_check_interval", 5, 1500, &check, err) != MP_OK ||
        int_in_range(cfg, "max_message_size", 1024, IMAP_MAX_MESSAGE_SIZE, &maxm, err) !=
            MP_OK ||
        int_in_range(cfg, "command_timeout", 5, 3600, &deadline, err) != MP_OK ||
        int_in_range(cfg, "max_memory_mb", 8, 4096, &mem, err) != MP_OK)
        return MP_FATAL;
    a->max_connections = (uint32_t)maxc;
    a->push_check_ms = (uint32_t)check * 1000u;
    a->max_message = (uint64_t)maxm;
    a->deadline_ms = (uint32_t)deadline * 1000u;
    a->max_memory = (size_t)mem << 20;
    return MP_OK;
}

static mp_status imap_account_open(mp_account *acct, const mp_config *cfg, void **state_r,
                                   mp_error *err)
{
    const mp_host *h = imap_host;
    imap_account *a = imap_xcalloc(1, sizeof *a);
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->conn_lock, NULL);
    a->acct = acct;
    a->cfg = cfg;
    a->id = imap_xstrdup(h->account_id(acct));

    mp_status st = MP_OK;
    if (!set_string(cfg, "host", &a->host))
        st = mp_fail(err, MP_FATAL, "host: a server name is required");
    else if (!set_string(cfg, "username", &a->username))
        st = mp_fail(err, MP_FATAL, "username is required");
    else
        st = parse_modes(a, cfg, err);
    if (st == MP_OK)
        (void)set_string(cfg, "ca_file", &a->ca_file);

    size_t n = st == MP_OK ? h->config_list_len(cfg, "folders") : 0;
    if (n > 0) {
        a->folders = imap_xcalloc(n, sizeof *a->folders);
        for (size_t i = 0; i < n; i++) {
            const char *name = h->config_list_string(cfg, "folders", i);
            if (name != NULL && name[0] != '\0')
                a->folders[a->n_folders++] = imap_xstrdup(name);
        }
    }
    if (st != MP_OK) {
        account_free(a);
        return st;
    }
    imap_instance *in = h->instance_state(h->account_instance(acct));
    if (in != NULL) {
        a->inst = in;
        a->inst_next = in->accounts;
        if (a->inst_next != NULL)
            a->inst_next->inst_pprev = &a->inst_next;
        a->inst_pprev = &in->accounts;
        in->accounts = a;
    }
    *state_r = a;
    return MP_OK;
}

static void imap_account_close(mp_account *acct, void **state)
{
    (void)acct;
    if (state == NULL || *state == NULL)
        return;
    account_free(*state);
    *state = NULL;
}

/* ---- poll and fetch slots: each owns its connection while it runs ---- */

static mp_status slot_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    imap_sync_begin(a, 0);
    mp_status st = imap_list_folders(acct, sink, err);
    imap_sync_end(a, 0);
    return st;
}

static mp_status slot_bootstrap(mp_account *acct, const char *folder, uint32_t max,
                                mp_batch *batch, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    imap_sync_begin(a, 0);
    mp_status st = imap_bootstrap(acct, folder, max, batch, err);
    imap_sync_end(a, 0);
    return st;
}

static mp_status slot_delta(mp_account *acct, const char *folder, const char *cursor,
                            mp_batch *batch, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    imap_sync_begin(a, 0);
    mp_status st = imap_delta(acct, folder, cursor, batch, err);
    imap_sync_end(a, 0);
    return st;
}

static mp_status slot_backfill(mp_account *acct, const char *folder, const char *backfill_pos,
                               uint32_t max, mp_batch *batch, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    imap_sync_begin(a, 0);
    mp_status st = imap_backfill(acct, folder, backfill_pos, max, batch, err);
    imap_sync_end(a, 0);
    return st;
}

static mp_status slot_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                            mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    imap_sync_begin(a, 1);
    mp_status st = imap_fetch(acct, msg, raw_r, err);
    imap_sync_end(a, 1);
    return st;
}

static mp_status slot_probe(mp_account *acct, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    imap_sync_begin(a, 0);
    mp_status st = imap_probe(acct, err);
    imap_sync_end(a, 0);
    return st;
}

static const mp_config_key imap_instance_keys[] = {
    {.name = "connect_rate",
     .type = MP_CFG_INT,
     .default_value = "200",
     .help = "logins (push and sync) started per second at most, evenly spaced, for all "
             "accounts of this file; 0: unlimited"},
    {.name = "connect_concurrency",
     .type = MP_CFG_INT,
     .default_value = "8",
     .help = "logins in progress at once for all accounts of this file (1..64); also the "
             "number of push connect threads"},
    /* 30 s: long enough for the burst a new message brings (its push, then
     * the reader's client setting \Seen), short enough that a mass start
     * paced at connect_rate leaves at most rate x 30 idle sync sockets
     * (6,000 at the default): 10,000 accounts stay under 16,000
     * descriptors. */
    {.name = "sync_idle_close",
     .type = MP_CFG_INT,
     .default_value = "30",
     .help = "seconds a sync or fetch connection stays open after its job; then only the "
             "push connection remains (0: closed after each job)"},
    /* 2,000: the bursts it serves are a few hundred accounts at once; a
     * mass start of 10,000 keeps 10,000 push + 2,000 idle sync sockets,
     * well inside a 20,000-descriptor limit. */
    {.name = "sync_idle_max",
     .type = MP_CFG_INT,
     .default_value = "2000",
     .help = "sync and fetch connections kept open between jobs for all accounts of this "
             "file together (1..1000000); past it a connection closes at the end of its job"},
    {0},
};

static const mp_config_key imap_account_keys[] = {
    {.name = "host", .type = MP_CFG_STRING, .required = 1, .help = "IMAP server name"},
    {.name = "port",
     .type = MP_CFG_INT,
     .help = "server port (default 993 with tls: implicit, else 143)"},
    {.name = "tls",
     .type = MP_CFG_STRING,
     .default_value = "implicit",
     .help = "implicit | starttls | none (plaintext, only when asked for)"},
    {.name = "username", .type = MP_CFG_STRING, .required = 1, .help = "login name"},
    {.name = "password_file",
     .type = MP_CFG_SECRET_FILE,
     .help = "file holding the password (plain, login)"},
    {.name = "oauth_token_file",
     .type = MP_CFG_SECRET_FILE,
     .help = "file holding an OAuth access token (xoauth2, oauthbearer)"},
    {.name = "auth",
     .type = MP_CFG_STRING,
     .help = "plain | login | xoauth2 | oauthbearer (default plain, or xoauth2 with "
             "oauth_token_file)"},
    {.name = "ca_file",
     .type = MP_CFG_STRING,
     .help = "extra CA certificates (PEM); verification is never switched off"},
    {.name = "push",
     .type = MP_CFG_STRING,
     .default_value = "auto",
     .help = "auto | idle | notify | off"},
    {.name = "max_connections",
     .type = MP_CFG_INT,
     .default_value = "3",
     .help = "push connections per account (IDLE on several folders)"},
    {.name = "push_check_interval",
     .type = MP_CFG_INT,
     .default_value = "60",
     .help = "seconds between liveness checks of a push connection (IDLE re-issued, or "
             "NOOP); one unanswered for 30 s replaces the connection"},
    {.name = "max_message_size",
     .type = MP_CFG_INT,
     .default_value = "67108864",
     .help = "bytes; larger messages are indexed without their body (at most 64 MiB)"},
    {.name = "command_timeout",
     .type = MP_CFG_INT,
     .default_value = "120",
     .help = "seconds any IMAP command (connect, TLS, login included) may take, however "
             "steadily the server trickles; then the sync is retried"},
    {.name = "max_memory_mb",
     .type = MP_CFG_INT,
     .default_value = "64",
     .help = "memory budget per IMAP connection and command (MiB): a response or result "
             "set beyond it fails the command (retried), never the daemon"},
    {0},
};

MP_DRIVER_EXPORT const mp_driver mailpulse_driver = {
    MP_DRIVER_HEAD("imap"),
    .version = "1.0",
    .description = "IMAP4rev1 with capability autopilot, IDLE and NOTIFY push",
    .instance_keys = imap_instance_keys,
    .account_keys = imap_account_keys,
    .poll_interval_s = 180,
    .push_kind = MP_PUSH_STREAM,
    .init = imap_init,
    .deinit = imap_deinit,
    .account_open = imap_account_open,
    .account_close = imap_account_close,
    .list_folders = slot_list_folders,
    .bootstrap = slot_bootstrap,
    .delta = slot_delta,
    .backfill = slot_backfill,
    .fetch = slot_fetch,
    .push_start = imap_push_start,
    .push_stop = imap_push_stop,
    .probe = slot_probe,
};

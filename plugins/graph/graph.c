/*
 * graph.so: the Microsoft Graph (Outlook, Microsoft 365) driver's
 * descriptor, configuration keys and account lifecycle. The steps live in
 * their own files: list_folders (graph_folders.c), bootstrap, backfill and
 * the coverage walk (graph_bootstrap.c), the per-folder delta
 * (graph_delta.c) with its repair list (graph_repair.c), fetch
 * (graph_fetch.c), over the API calls (graph_api.c) and the HTTP layer
 * (graph_http.c).
 *
 * Credentials are the host's business: the driver describes them with
 * oauth_setup (app: client credentials with the app's application
 * permissions; delegated: a user's refresh token, rotated tokens persisted
 * by the host) and asks oauth_token at each request; it never reads a
 * secret itself. Read-only: Mail.Read is all it needs.
 *
 * Push: change-notification subscriptions, one per synced folder, their
 * renewal and lifecycle events (graph_push.c, graph_subs.c) and the
 * webhook (graph_webhook.c); without public_url the push state says
 * "polling: no public_url".
 */
#include "graph_driver.h"
#include "graph_push.h"

#include <stdlib.h>
#include <string.h>

const mp_host *graph_host;

static char *dup_nonempty(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static void instance_free(graph_instance *gi)
{
    if (gi == NULL)
        return;
    free(gi->tenant);
    free(gi->client_id);
    free(gi->client_secret_file);
    free(gi->public_url);
    free(gi->api_url);
    free(gi->login_url);
    free(gi->token_url);
    graph_push_inst_free(gi->push);
    free(gi);
}

static mp_status url_key(const mp_config *cfg, const char *key, int optional, char **url_r,
                         mp_error *err)
{
    const char *v = graph_host->config_string(cfg, key);
    if (optional && (v == NULL || v[0] == '\0'))
        return MP_OK;
    char why[400];
    if (graph_url_check(v, url_r, why, sizeof why) < 0)
        return mp_fail(err, MP_FATAL, "%s: %s", key, why);
    return MP_OK;
}

static mp_status graph_init(const mp_host *host, mp_instance *inst, const mp_config *cfg,
                            void **state_r, mp_error *err)
{
    if (host->abi_major != MP_ABI_MAJOR)
        return mp_fail(err, MP_FATAL, "host ABI %u.%u, graph built for %d.%d",
                       (unsigned)host->abi_major, (unsigned)host->abi_minor, MP_ABI_MAJOR,
                       MP_ABI_MINOR);
    if (!MP_HOST_HAS(host, oauth_setup) || !MP_HOST_HAS(host, oauth_token) ||
        !MP_HOST_HAS(host, push_status) ||
        !MP_HOST_HAS(host, oauth_reject) || !MP_HOST_HAS(host, http_ex) ||
        !MP_HOST_HAS(host, batch_change_folders) || !MP_HOST_HAS(host, state_get) ||
        !MP_HOST_HAS(host, state_put) || !MP_HOST_HAS(host, batch_state))
        return mp_fail(err, MP_FATAL,
                       "graph needs a host with OAuth2 tokens, driver state and folder"
                       " memberships (ABI 1.1 with oauth_*, state_*, batch_state,"
                       " batch_change_folders); this mailpulsed (ABI %u.%u) lacks them",
                       (unsigned)host->abi_major, (unsigned)host->abi_minor);
    /* Every instance gets the same table; writing it only when it differs
     * keeps a second instance's init from racing the first one's workers. */
    if (graph_host != host)
        graph_host = host;

    graph_instance *gi = calloc(1, sizeof *gi);
    if (gi == NULL)
        abort();
    mp_status st = MP_OK;
    char why[400];
    gi->tenant = dup_nonempty(host->config_string(cfg, "tenant"));
    gi->client_id = dup_nonempty(host->config_string(cfg, "client_id"));
    gi->client_secret_file = dup_nonempty(host->config_string(cfg, "client_secret_file"));
    gi->subscription_minutes = host->config_int(cfg, "subscription_minutes");
    const char *auth = host->config_string(cfg, "auth");
    if (graph_tenant_check(gi->tenant, why, sizeof why) < 0)
        st = mp_fail(err, MP_FATAL, "tenant: %s", why);
    if (st == MP_OK && gi->client_id == NULL)
        st = mp_fail(err, MP_FATAL, "client_id: the app registration's application"
                                    " (client) id is required");
    if (st == MP_OK && graph_auth_parse(auth, &gi->auth) < 0)
        st = mp_fail(err, MP_FATAL, "auth: \"%s\" is not app or delegated", auth);
    if (st == MP_OK && gi->auth == GRAPH_AUTH_APP && gi->client_secret_file == NULL)
        st = mp_fail(err, MP_FATAL, "client_secret_file: required with auth: app (client"
                                    " credentials)");
    int64_t max_folders = host->config_int(cfg, "folder_subscriptions_max");
    if (st == MP_OK && (max_folders < 0 || max_folders > 1000))
        st = mp_fail(err, MP_FATAL, "folder_subscriptions_max: %lld is outside 0..1000",
                     (long long)max_folders);
    if (st == MP_OK && (gi->subscription_minutes < 45 || gi->subscription_minutes > 10080))
        st = mp_fail(err, MP_FATAL, "subscription_minutes: %lld is outside 45..10080",
                     (long long)gi->subscription_minutes);
    if (st == MP_OK)
        st = url_key(cfg, "api_url", 0, &gi->api_url, err);
    if (st == MP_OK)
        st = url_key(cfg, "login_url", 0, &gi->login_url, err);
    if (st == MP_OK)
        st = url_key(cfg, "public_url", 1, &gi->public_url, err);
    /* The notification URL names this instance: /push/<instance>. */
    const char *pname = MP_HOST_HAS(host, instance_name) ? host->instance_name(inst) : NULL;
    if (st == MP_OK && gi->public_url != NULL && (pname == NULL || pname[0] == '\0'))
        st = mp_fail(err, MP_FATAL, "public_url: change notifications need a host that names"
                                    " the instance (ABI 1.2); this mailpulsed is ABI %u.%u",
                     (unsigned)host->abi_major, (unsigned)host->abi_minor);
    if (st != MP_OK) {
        instance_free(gi);
        return st;
    }
    size_t n = strlen(gi->login_url) + strlen(gi->tenant) + 32;
    gi->token_url = malloc(n);
    if (gi->token_url == NULL)
        abort();
    snprintf(gi->token_url, n, "%s/%s/oauth2/v2.0/token", gi->login_url, gi->tenant);
    gi->push = graph_push_inst_new(gi->public_url, pname, gi->subscription_minutes,
                                   (size_t)max_folders);
    *state_r = gi;
    return MP_OK;
}

static void graph_deinit(mp_instance *inst, void **state)
{
    (void)inst;
    instance_free(*state);
    *state = NULL;
}

static void account_free(graph_account *a)
{
    if (a == NULL)
        return;
    graph_push_close(a);
    free(a->user);
    free(a->user_path);
    graph_folders_clear(a);
    for (size_t i = 0; i < GRAPH_N_WELLKNOWN; i++)
        free(a->wellknown_id[i]);
    pthread_cond_destroy(&a->slot_free);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static mp_status graph_account_open(mp_account *acct, const mp_config *cfg, void **state_r,
                                    mp_error *err)
{
    const mp_host *h = graph_host;
    const graph_instance *gi = h->instance_state(h->account_instance(acct));
    if (gi == NULL)
        return mp_fail(err, MP_FATAL, "graph instance not initialised");
    const char *user = h->config_string(cfg, "user");
    const char *rt = h->config_string(cfg, "refresh_token_file");
    int has_rt = rt != NULL && rt[0] != '\0';
    char why[400];
    if (graph_user_check(user, why, sizeof why) < 0)
        return mp_fail(err, MP_FATAL, "user: %s", why);
    if (gi->auth == GRAPH_AUTH_DELEGATED && !has_rt)
        return mp_fail(err, MP_FATAL, "refresh_token_file: required with auth: delegated"
                                      " (the user's refresh token)");
    if (gi->auth == GRAPH_AUTH_APP && has_rt)
        return mp_fail(err, MP_FATAL, "refresh_token_file: not used with auth: app (client"
                                      " credentials); remove it or set auth: delegated");
    mp_oauth_params p = {
        .struct_size = sizeof p,
        .grant = gi->auth == GRAPH_AUTH_APP ? MP_OAUTH_CLIENT_CREDENTIALS
                                            : MP_OAUTH_REFRESH_TOKEN,
        .token_url = gi->token_url,
        .client_id = gi->client_id,
        .client_secret_file = gi->client_secret_file,
        .refresh_token_file = has_rt ? rt : NULL,
        .scope = gi->auth == GRAPH_AUTH_APP ? GRAPH_SCOPE_APP : GRAPH_SCOPE_DELEGATED,
    };
    mp_status st = h->oauth_setup(acct, &p, err);
    if (st != MP_OK)
        return st;
    graph_account *a = calloc(1, sizeof *a);
    if (a == NULL)
        abort();
    a->acct = acct;
    a->inst = gi;
    a->user = dup_nonempty(user);
    a->user_path = graph_escape(user);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->slot_free, NULL);
    graph_budget_init(&a->budget, GRAPH_BUDGET_REQUESTS);
    if (MP_HOST_HAS(h, http_limit))
        h->http_limit(acct, GRAPH_HTTP_LIMIT);
    graph_push_open(a, cfg);
    if (gi->public_url == NULL)
        h->push_status(acct, MP_PUSH_STATE_OFF, "polling: no public_url");
    *state_r = a;
    return MP_OK;
}

static void graph_account_close(mp_account *acct, void **state)
{
    (void)acct;
    if (state == NULL || *state == NULL)
        return;
    account_free(*state);
    *state = NULL;
}

static const mp_config_key graph_instance_keys[] = {
    {.name = "tenant",
     .type = MP_CFG_STRING,
     .required = 1,
     .help = "Entra ID tenant: its id (GUID) or a verified domain (common/organizations for"
             " delegated multi-tenant apps)"},
    {.name = "client_id",
     .type = MP_CFG_STRING,
     .required = 1,
     .help = "the app registration's application (client) id"},
    {.name = "client_secret_file",
     .type = MP_CFG_SECRET_FILE,
     .help = "file holding the app's client secret (required with auth: app; absent: a"
             " public client)"},
    {.name = "auth",
     .type = MP_CFG_STRING,
     .default_value = "app",
     .help = "app (client credentials, Mail.Read application permission with admin"
             " consent) | delegated (a user's refresh token, Mail.Read + offline_access)"},
    {.name = "public_url",
     .type = MP_CFG_STRING,
     .help = "base URL Graph can reach for change notifications (<public_url>/push/"
             "<instance>); absent: polling only"},
    {.name = "subscription_minutes",
     .type = MP_CFG_INT,
     .default_value = "10080",
     .help = "lifetime asked for change-notification subscriptions (45..10080)"},
    {.name = "folder_subscriptions_max",
     .type = MP_CFG_INT,
     .default_value = "200",
     .help = "at most this many folder subscriptions per mailbox (Graph allows 1000 per"
             " mailbox for all apps together); more synced folders: one mailbox-wide"
             " subscription instead (0: always mailbox-wide)"},
    {.name = "api_url",
     .type = MP_CFG_STRING,
     .default_value = "https://graph.microsoft.com/v1.0",
     .help = "Graph API base URL (https, or http to a loopback host)"},
    {.name = "login_url",
     .type = MP_CFG_STRING,
     .default_value = "https://login.microsoftonline.com",
     .help = "Microsoft identity platform base URL (token URL: <login_url>/<tenant>/oauth2/"
             "v2.0/token)"},
    {0},
};

static const mp_config_key graph_account_keys[] = {
    {.name = "user",
     .type = MP_CFG_STRING,
     .required = 1,
     .help = "the mailbox: a UPN (user@domain) or the user's object id"},
    {.name = "refresh_token_file",
     .type = MP_CFG_SECRET_FILE,
     .help = "file holding the user's refresh token (auth: delegated only)"},
    {0},
};

MP_DRIVER_EXPORT const mp_driver mailpulse_driver = {
    MP_DRIVER_HEAD("graph"),
    .version = "1.0",
    .description = "Microsoft Graph (Outlook, Microsoft 365): delta per folder, immutable"
                   " ids, change notifications per folder, read-only",
    .instance_keys = graph_instance_keys,
    .account_keys = graph_account_keys,
    .poll_interval_s = 180,
    /* Change notifications (graph_push.c, graph_webhook.c); an instance
     * without public_url answers push_enroll with MP_SKIP and polls. */
    .push_kind = MP_PUSH_WEBHOOK,
    .init = graph_init,
    .deinit = graph_deinit,
    .account_open = graph_account_open,
    .account_close = graph_account_close,
    .list_folders = graph_list_folders,
    .bootstrap = graph_bootstrap,
    .delta = graph_delta,
    .backfill = graph_backfill,
    .fetch = graph_fetch,
    .push_enroll = graph_push_enroll,
    .push_renew = graph_push_renew,
    .push_cancel = graph_push_cancel,
    .push_verify = graph_push_verify,
    /* The admin's preflight (graph_check.c). */
    .check = graph_check,
};

/*
 * emailengine.so: a bridge to EmailEngine (postalsys/emailengine), which
 * keeps IMAP accounts connected and exposes them over REST and signed
 * webhooks. Organisations that already run EE get mailpulse's event bus,
 * cache, filters and status without moving their accounts: EE is the
 * provider.
 *
 * This file holds the descriptor, the keys and the lifecycle; the steps
 * live in ee_sync.c (folders, bootstrap, backfill), ee_delta.c (the delta
 * without a change feed), ee_api.c (REST and status mapping) and
 * ee_push.c (webhooks). Built out of tree against the installed SDK only
 * (find_package(MailpulseDriver)): it is the worked example that a
 * provider is added without rebuilding the core.
 */
#include "ee_driver.h"

#include <stdlib.h>
#include <string.h>

const mp_host *ee_host;

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static void instance_free(ee_instance *ei)
{
    if (ei == NULL)
        return;
    free(ei->url);
    if (ei->token != NULL)
        ee_host->free_secret(&ei->token);
    if (ei->secret != NULL)
        ee_host->free_secret(&ei->secret);
    ee_dedupe_free(&ei->dedupe);
    free(ei->accts);
    free(ei);
}

static mp_status url_check(const char *v, char **url_r, mp_error *err)
{
    if (v == NULL || (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0))
        return mp_fail(err, MP_FATAL, "url: \"%s\" is not an http:// or https:// URL",
                       v != NULL ? v : "");
    const char *host = strstr(v, "://") + 3;
    if (host[0] == '\0' || host[0] == '/' || strpbrk(v, " \t\r\n?#") != NULL)
        return mp_fail(err, MP_FATAL, "url: \"%s\" needs a host and no query or fragment", v);
    char *u = xstrdup(v);
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        u[--n] = '\0';
    *url_r = u;
    return MP_OK;
}

static mp_status ee_init(const mp_host *host, mp_instance *inst, const mp_config *cfg,
                         void **state_r, mp_error *err)
{
    if (host->abi_major != MP_ABI_MAJOR)
        return mp_fail(err, MP_FATAL, "host ABI %u.%u, emailengine built for %d.%d",
                       (unsigned)host->abi_major, (unsigned)host->abi_minor, MP_ABI_MAJOR,
                       MP_ABI_MINOR);
    if (!MP_HOST_HAS(host, http_ex) || !MP_HOST_HAS(host, sync_hint) ||
        !MP_HOST_HAS(host, push_status))
        return mp_fail(err, MP_FATAL,
                       "emailengine needs a host with http_ex, sync_hint and push_status"
                       " (ABI 1.1); this mailpulsed (ABI %u.%u) lacks them",
                       (unsigned)host->abi_major, (unsigned)host->abi_minor);
    /* Every instance gets the same table; writing it only when it differs
     * keeps a second instance's init from racing the first one's workers. */
    if (ee_host != host)
        ee_host = host;
    ee_instance *ei = calloc(1, sizeof *ei);
    if (ei == NULL)
        abort();
    ei->inst = inst;
    ei->dedupe = ee_dedupe_new();
    if (ei->dedupe == NULL)
        abort();
    mp_status st = url_check(host->config_string(cfg, "url"), &ei->url, err);
    if (st == MP_OK)
        st = host->read_secret(cfg, "token_file", &ei->token, &ei->token_len, err);
    if (st == MP_OK && ei->token_len == 0)
        st = mp_fail(err, MP_FATAL, "token_file: the file is empty");
    if (st == MP_OK && strpbrk(ei->token, "\r\n") != NULL)
        st = mp_fail(err, MP_FATAL, "token_file: the token spans several lines");
    if (st == MP_OK)
        st = host->read_secret(cfg, "service_secret_file", &ei->secret, &ei->secret_len, err);
    if (st == MP_OK && ei->secret_len == 0)
        st = mp_fail(err, MP_FATAL, "service_secret_file: the file is empty");
    if (st != MP_OK) {
        instance_free(ei);
        return st;
    }
    *state_r = ei;
    return MP_OK;
}

static void ee_deinit(mp_instance *inst, void **state)
{
    (void)inst;
    instance_free(*state);
    *state = NULL;
}

static mp_status ee_account_open(mp_account *acct, const mp_config *cfg, void **state_r,
                                 mp_error *err)
{
    const mp_host *h = ee_host;
    ee_instance *ei = h->instance_state(h->account_instance(acct));
    if (ei == NULL)
        return mp_fail(err, MP_FATAL, "emailengine instance not initialised");
    const char *id = h->config_string(cfg, "ee_account");
    if (id == NULL || id[0] == '\0' || strlen(id) > 255)
        return mp_fail(err, MP_FATAL, "ee_account: the account id in EmailEngine is required"
                                      " (at most 255 bytes)");
    for (size_t i = 0; i < ei->n_accts; i++)
        if (strcmp(ei->accts[i]->ee_account, id) == 0)
            return mp_fail(err, MP_FATAL,
                           "ee_account: \"%s\" is already bridged by another account of this"
                           " instance", id);
    ee_account *a = calloc(1, sizeof *a);
    if (a == NULL)
        abort();
    a->acct = acct;
    a->inst = ei;
    a->ee_account = xstrdup(id);
    a->ee_path = ee_escape(id);
    atomic_init(&a->push_seen, 0);
    pthread_mutex_init(&a->lock, NULL);
    if (ei->n_accts == ei->cap_accts) {
        size_t cap = ei->cap_accts ? ei->cap_accts * 2 : 8;
        ee_account **v = realloc(ei->accts, cap * sizeof *v);
        if (v == NULL)
            abort();
        ei->accts = v;
        ei->cap_accts = cap;
    }
    ei->accts[ei->n_accts++] = a;
    /* EE runs one account's calls in turn: more in flight only queue. */
    if (MP_HOST_HAS(h, http_limit))
        h->http_limit(acct, 2);
    h->push_status(acct, MP_PUSH_STATE_STARTING,
                   "waiting for EmailEngine's first signed webhook");
    *state_r = a;
    return MP_OK;
}

static void ee_account_close(mp_account *acct, void **state)
{
    if (state == NULL || *state == NULL)
        return;
    ee_account *a = *state;
    ee_instance *ei = ee_host->instance_state(ee_host->account_instance(acct));
    for (size_t i = 0; ei != NULL && i < ei->n_accts; i++) {
        if (ei->accts[i] == a) {
            memmove(&ei->accts[i], &ei->accts[i + 1],
                    (ei->n_accts - i - 1) * sizeof *ei->accts);
            ei->n_accts--;
            break;
        }
    }
    ee_mailboxes_clear(&a->boxes);
    pthread_mutex_destroy(&a->lock);
    free(a->ee_account);
    free(a->ee_path);
    free(a);
    *state = NULL;
}

static const mp_config_key ee_instance_keys[] = {
    {.name = "url",
     .type = MP_CFG_STRING,
     .required = 1,
     .help = "EmailEngine's base URL, e.g. http://127.0.0.1:3000 (the API is <url>/v1/...)"},
    {.name = "token_file",
     .type = MP_CFG_SECRET_FILE,
     .required = 1,
     .help = "file holding an EmailEngine API access token with the api scope"},
    {.name = "service_secret_file",
     .type = MP_CFG_SECRET_FILE,
     .required = 1,
     .help = "file holding EmailEngine's serviceSecret, the key of X-EE-Wh-Signature"},
    {0},
};

static const mp_config_key ee_account_keys[] = {
    {.name = "ee_account",
     .type = MP_CFG_STRING,
     .required = 1,
     .help = "the account's id in EmailEngine; webhooks for other ids are ignored"},
    {0},
};

MP_DRIVER_EXPORT const mp_driver mailpulse_driver = {
    MP_DRIVER_HEAD("emailengine"),
    .version = "1.0",
    .description = "EmailEngine bridge: IMAP accounts through EmailEngine's REST API and"
                   " signed webhooks, read-only",
    .instance_keys = ee_instance_keys,
    .account_keys = ee_account_keys,
    .poll_interval_s = 180,
    .push_kind = MP_PUSH_WEBHOOK,
    .init = ee_init,
    .deinit = ee_deinit,
    .account_open = ee_account_open,
    .account_close = ee_account_close,
    .list_folders = ee_list_folders,
    .bootstrap = ee_bootstrap,
    .delta = ee_delta,
    .backfill = ee_backfill,
    .fetch = ee_fetch,
    .push_enroll = ee_push_enroll,
    .push_renew = ee_push_renew,
    .push_cancel = ee_push_cancel,
    .push_verify = ee_push_verify,
    .check = ee_check,
};

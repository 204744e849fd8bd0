/*
 * gmail.so: the Gmail API driver's descriptor, configuration keys and
 * account lifecycle. The steps live in their own files: list_folders
 * (gmail_folders.c), bootstrap and backfill (gmail_bootstrap.c), the
 * account-wide history delta (gmail_delta.c), fetch (gmail_fetch.c), the
 * admin's preflight (gmail_check.c), over
 * the API calls (gmail_api.c) and the HTTP layer (gmail_http.c).
 *
 * Credentials are the host's business: the driver describes them with
 * oauth_setup (a user's refresh token, or a Workspace service account
 * impersonating the mailbox) and asks oauth_token for an access token at
 * each request; it never reads a secret itself. Read-only scope.
 */
#include "gmail_driver.h"
#include "gmail_multipart.h"
#include "gmail_push.h"

#include <stdlib.h>
#include <string.h>

const mp_host *gmail_host;

#define GMAIL_SCOPE "https://www.googleapis.com/auth/gmail.readonly"
/* Requests in flight per mailbox: sync, a reader's fetch and a batch. */
#define GMAIL_HTTP_LIMIT 4

static char *dup_nonempty(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static void instance_free(gmail_instance *gi)
{
    if (gi == NULL)
        return;
    free(gi->client_id);
    free(gi->client_secret_file);
    free(gi->api_url);
    free(gi->api_path);
    free(gi->token_url);
    free(gi->pubsub_url);
    free(gi->certs_url);
    free(gi->topic);
    free(gi->subscription);
    free(gi->push_audience);
    free(gi->push_service_account);
    for (size_t i = 0; i < gi->n_watch_labels; i++)
        free(gi->watch_labels[i]);
    free(gi->watch_labels);
    free(gi);
}

/* A URL key: https, or http to loopback; trailing '/' dropped. */
static mp_status url_key(const mp_config *cfg, const char *key, char **url_r, char **path_r,
                         mp_error *err)
{
    const char *v = gmail_host->config_string(cfg, key);
    if (v == NULL || v[0] == '\0')
        return mp_fail(err, MP_FATAL, "%s: must not be empty", key);
    char why[400];
    if (gmail_url_check(v, path_r, why, sizeof why) < 0)
        return mp_fail(err, MP_FATAL, "%s: %s", key, why);
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == '/')
        n--;
    *url_r = strndup(v, n);
    if (*url_r == NULL)
        abort();
    return MP_OK;
}

static mp_status gmail_init(const mp_host *host, mp_instance *inst, const mp_config *cfg,
                            void **state_r, mp_error *err)
{
    (void)inst;
    if (host->abi_major != MP_ABI_MAJOR)
        return mp_fail(err, MP_FATAL, "host ABI %u.%u, gmail built for %d.%d",
                       (unsigned)host->abi_major, (unsigned)host->abi_minor, MP_ABI_MAJOR,
                       MP_ABI_MINOR);
    if (!MP_HOST_HAS(host, oauth_setup) || !MP_HOST_HAS(host, oauth_token) ||
        !MP_HOST_HAS(host, oauth_reject) || !MP_HOST_HAS(host, http_ex) ||
        !MP_HOST_HAS(host, batch_change_folders) || !MP_HOST_HAS(host, account_cursor) ||
        !MP_HOST_HAS(host, batch_account_cursor))
        return mp_fail(err, MP_FATAL,
                       "gmail needs a host with OAuth2 tokens, account cursors and folder"
                       " memberships (ABI 1.1 with oauth_*, account_cursor,"
                       " batch_change_folders); this mailpulsed (ABI %u.%u) lacks them",
                       (unsigned)host->abi_major, (unsigned)host->abi_minor);
    /* Every instance gets the same table; writing it only when it differs
     * keeps a second instance's init from racing the first one's workers. */
    if (gmail_host != host)
        gmail_host = host;

    gmail_instance *gi = calloc(1, sizeof *gi);
    if (gi == NULL)
        abort();
    mp_status st = MP_OK;
    gi->client_id = dup_nonempty(host->config_string(cfg, "client_id"));
    gi->client_secret_file = dup_nonempty(host->config_string(cfg, "client_secret_file"));
    if (st == MP_OK)
        st = url_key(cfg, "api_url", &gi->api_url, &gi->api_path, err);
    if (st == MP_OK)
        st = url_key(cfg, "token_url", &gi->token_url, NULL, err);
    if (st == MP_OK)
        st = url_key(cfg, "pubsub_url", &gi->pubsub_url, NULL, err);
    if (st == MP_OK)
        st = url_key(cfg, "certs_url", &gi->certs_url, NULL, err);
    const char *push = host->config_string(cfg, "push");
    if (st == MP_OK && gmail_push_mode_parse(push, &gi->push) < 0)
        st = mp_fail(err, MP_FATAL, "push: \"%s\" is not pubsub-push, pubsub-pull or off",
                     push);
    gi->topic = dup_nonempty(host->config_string(cfg, "topic"));
    gi->subscription = dup_nonempty(host->config_string(cfg, "subscription"));
    gi->push_audience = dup_nonempty(host->config_string(cfg, "push_audience"));
    gi->push_service_account = dup_nonempty(host->config_string(cfg, "push_service_account"));
    if (st == MP_OK && gi->topic != NULL && gmail_pubsub_name_check(gi->topic, "topics") < 0)
        st = mp_fail(err, MP_FATAL, "topic: \"%s\" is not projects/PROJECT/topics/TOPIC",
                     gi->topic);
    if (st == MP_OK && gi->subscription != NULL &&
        gmail_pubsub_name_check(gi->subscription, "subscriptions") < 0)
        st = mp_fail(err, MP_FATAL,
                     "subscription: \"%s\" is not projects/PROJECT/subscriptions/NAME",
                     gi->subscription);
    if (st == MP_OK && gi->push != GMAIL_PUSH_OFF && gi->topic == NULL)
        st = mp_fail(err, MP_FATAL, "push: %s needs topic", push);
    if (st == MP_OK && gi->push == GMAIL_PUSH_PUBSUB_PULL && gi->subscription == NULL)
        st = mp_fail(err, MP_FATAL, "push: pubsub-pull needs subscription");
    if (st == MP_OK && gi->push == GMAIL_PUSH_PUBSUB_PUSH &&
        (gi->push_audience == NULL || gi->push_service_account == NULL))
        st = mp_fail(err, MP_FATAL,
                     "push: pubsub-push needs push_audience and push_service_account");
    size_t n = host->config_list_len(cfg, "watch_labels");
    gi->watch_labels = calloc(n + 1, sizeof *gi->watch_labels);
    if (gi->watch_labels == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        const char *l = host->config_list_string(cfg, "watch_labels", i);
        if (l != NULL && l[0] != '\0')
            gi->watch_labels[gi->n_watch_labels++] = dup_nonempty(l);
    }
    if (st != MP_OK) {
        instance_free(gi);
        return st;
    }
    if (gi->push != GMAIL_PUSH_OFF) {
        st = gmail_push_start(gi, inst, err);
        if (st != MP_OK) {
            instance_free(gi);
            return st;
        }
    }
    *state_r = gi;
    return MP_OK;
}

static void gmail_deinit(mp_instance *inst, void **state)
{
    (void)inst;
    gmail_push_stop(*state);
    instance_free(*state);
    *state = NULL;
}

static void account_free(gmail_account *a)
{
    if (a == NULL)
        return;
    free(a->email);
    free(a->watch_history);
    gmail_labels_clear(&a->labels);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static mp_status gmail_account_open(mp_account *acct, const mp_config *cfg, void **state_r,
                                    mp_error *err)
{
    const mp_host *h = gmail_host;
    const gmail_instance *gi = h->instance_state(h->account_instance(acct));
    if (gi == NULL)
        return mp_fail(err, MP_FATAL, "gmail instance not initialised");
    const char *email = h->config_string(cfg, "email");
    const char *rt = h->config_string(cfg, "refresh_token_file");
    const char *sa = h->config_string(cfg, "service_account_file");
    int has_rt = rt != NULL && rt[0] != '\0', has_sa = sa != NULL && sa[0] != '\0';
    if (email == NULL || strchr(email, '@') == NULL)
        return mp_fail(err, MP_FATAL, "email: a mailbox address is required");
    if (has_rt == has_sa)
        return mp_fail(err, MP_FATAL,
                       "give exactly one of refresh_token_file (user OAuth) or"
                       " service_account_file (Workspace delegation)");
    if (has_rt && gi->client_id == NULL)
        return mp_fail(err, MP_FATAL, "refresh_token_file needs the instance's client_id");
    mp_oauth_params p = {
        .struct_size = sizeof p,
        .grant = has_rt ? MP_OAUTH_REFRESH_TOKEN : MP_OAUTH_JWT_BEARER,
        .token_url = gi->token_url,
        .client_id = has_rt ? gi->client_id : NULL,
        .client_secret_file = has_rt ? gi->client_secret_file : NULL,
        .refresh_token_file = has_rt ? rt : NULL,
        .key_file = has_sa ? sa : NULL,
        /* Pull mode pulls with the accounts' tokens (gmail_pull.c). */
        .scope = gi->push == GMAIL_PUSH_PUBSUB_PULL ? GMAIL_SCOPE " " GMAIL_PUBSUB_SCOPE
                                                    : GMAIL_SCOPE,
        .subject = has_sa ? email : NULL,
    };
    mp_status st = h->oauth_setup(acct, &p, err);
    if (st != MP_OK)
        return st;
    gmail_account *a = calloc(1, sizeof *a);
    if (a == NULL)
        abort();
    a->acct = acct;
    a->inst = gi;
    a->email = dup_nonempty(email);
    a->service_account = has_sa;
    pthread_mutex_init(&a->lock, NULL);
    gmail_quota_init(&a->quota, GMAIL_QUOTA_PER_MINUTE);
    a->batch_size = GMAIL_BATCH_MAX;
    if (MP_HOST_HAS(h, http_limit))
        h->http_limit(acct, GMAIL_HTTP_LIMIT);
    if (MP_HOST_HAS(h, push_status)) {
        if (gi->push == GMAIL_PUSH_OFF)
            h->push_status(acct, MP_PUSH_STATE_OFF, "push off: history every poll interval");
        else
            h->push_status(acct, MP_PUSH_STATE_STARTING, "watch pending");
    }
    gmail_push_account_add(a);
    *state_r = a;
    return MP_OK;
}

static void gmail_account_close(mp_account *acct, void **state)
{
    (void)acct;
    if (state == NULL || *state == NULL)
        return;
    gmail_push_account_remove(*state);
    account_free(*state);
    *state = NULL;
}

static const mp_config_key gmail_instance_keys[] = {
    {.name = "client_id",
     .type = MP_CFG_STRING,
     .help = "OAuth client id (user accounts with refresh_token_file)"},
    {.name = "client_secret_file",
     .type = MP_CFG_SECRET_FILE,
     .help = "file holding the OAuth client secret (absent: a public client)"},
    {.name = "push",
     .type = MP_CFG_STRING,
     .default_value = "off",
     .help = "pubsub-push (verified POSTs to /push/<instance>) | pubsub-pull (long-poll"
             " subscription) | off (poll only)"},
    {.name = "topic", .type = MP_CFG_STRING, .help = "Pub/Sub topic projects/P/topics/T"},
    {.name = "subscription",
     .type = MP_CFG_STRING,
     .help = "Pub/Sub subscription projects/P/subscriptions/S (pull mode)"},
    {.name = "push_audience",
     .type = MP_CFG_STRING,
     .help = "audience of the push subscription's OIDC token"},
    {.name = "push_service_account",
     .type = MP_CFG_STRING,
     .help = "service account that signs the push subscription's OIDC token"},
    {.name = "watch_labels",
     .type = MP_CFG_STRING_LIST,
     .default_value = "INBOX,SENT",
     .help = "labels whose changes trigger a push (history covers every label)"},
    {.name = "api_url",
     .type = MP_CFG_STRING,
     .default_value = "https://gmail.googleapis.com",
     .help = "Gmail API base URL (https, or http to a loopback host)"},
    {.name = "token_url",
     .type = MP_CFG_STRING,
     .default_value = "https://oauth2.googleapis.com/token",
     .help = "OAuth2 token endpoint"},
    {.name = "pubsub_url",
     .type = MP_CFG_STRING,
     .default_value = "https://pubsub.googleapis.com",
     .help = "Cloud Pub/Sub API base URL"},
    {.name = "certs_url",
     .type = MP_CFG_STRING,
     .default_value = "https://www.googleapis.com/oauth2/v3/certs",
     .help = "JWKS of Google's push OIDC signing keys"},
    {0},
};

static const mp_config_key gmail_account_keys[] = {
    {.name = "email", .type = MP_CFG_STRING, .required = 1, .help = "the mailbox address"},
    {.name = "refresh_token_file",
     .type = MP_CFG_SECRET_FILE,
     .help = "file holding the user's OAuth refresh token"},
    {.name = "service_account_file",
     .type = MP_CFG_SECRET_FILE,
     .help = "Workspace service-account JSON key (domain-wide delegation, impersonates"
             " email)"},
    {0},
};

MP_DRIVER_EXPORT const mp_driver mailpulse_driver = {
    MP_DRIVER_HEAD("gmail"),
    .version = "1.0",
    .description = "Gmail API: labels as folders, one history walk per sync, read-only",
    .instance_keys = gmail_instance_keys,
    .account_keys = gmail_account_keys,
    .poll_interval_s = 120,
    .push_kind = MP_PUSH_WEBHOOK, /* static: push_enroll says "off" per instance */
    .init = gmail_init,
    .deinit = gmail_deinit,
    .account_open = gmail_account_open,
    .account_close = gmail_account_close,
    .list_folders = gmail_list_folders,
    .bootstrap = gmail_bootstrap,
    .delta = gmail_delta,
    .backfill = gmail_backfill,
    .fetch = gmail_fetch,
    .account_delta = gmail_account_delta,
    .push_enroll = gmail_push_enroll,
    .push_renew = gmail_push_renew,
    .push_cancel = gmail_push_cancel,
    .push_verify = gmail_push_verify,
    .check = gmail_check,
};

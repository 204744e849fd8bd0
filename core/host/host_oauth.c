/*
 * OAuth2 access tokens for drivers. Why the host does it and not each
 * driver: the refresh token must survive restarts owner-only (the store),
 * a rotated one must be persisted before it is used, parallel callers of
 * one account must share one refresh, and a refused grant must park the
 * account instead of hammering the provider. core/oauth does all of that;
 * this file only maps the SDK's structures and statuses onto it, in one
 * place, so the daemon and the mock host behave the same.
 */
#include "host/host_oauth.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "host/host_private.h"
#include "util/util.h"

/* A driver built against a later minor may pass a longer struct (its new
 * fields are ignored); one built against this header or an older one
 * passes what it knows, and the rest reads as zero. */
static int params_copy(const mp_oauth_params *in, mp_oauth_params *out, mp_error *err)
{
    memset(out, 0, sizeof *out);
    if (in == NULL) {
        mp_fail(err, MP_FATAL, "oauth_setup: no parameters");
        return -1;
    }
    size_t need = offsetof(mp_oauth_params, grant) + sizeof in->grant;
    if (in->struct_size < need) {
        mp_fail(err, MP_FATAL, "oauth_setup: struct_size %u is too small (set it to "
                               "sizeof(mp_oauth_params))",
                (unsigned)in->struct_size);
        return -1;
    }
    size_t n = in->struct_size < sizeof *out ? in->struct_size : sizeof *out;
    memcpy(out, in, n);
    return 0;
}

mp_status mphost_oauth_setup_run(mpo_service *svc, const char *key,
                                 const mp_oauth_params *params, const char *ca_file,
                                 mp_error *err)
{
    mp_oauth_params p;
    if (params_copy(params, &p, err) < 0)
        return MP_FATAL;
    mpo_credential c = {
        .token_url = p.token_url,
        .client_id = p.client_id,
        .client_secret_file = p.client_secret_file,
        .refresh_token_file = p.refresh_token_file,
        .key_file = p.key_file,
        .scope = p.scope,
        .sub = p.subject,
        .audience = p.audience,
        .ca_file = ca_file,
    };
    switch (p.grant) {
    case MP_OAUTH_REFRESH_TOKEN:
        c.grant = MPO_GRANT_REFRESH_TOKEN;
        break;
    case MP_OAUTH_CLIENT_CREDENTIALS:
        c.grant = MPO_GRANT_CLIENT_CREDENTIALS;
        break;
    case MP_OAUTH_JWT_BEARER:
        c.grant = MPO_GRANT_JWT_BEARER;
        break;
    default:
        return mp_fail(err, MP_FATAL, "oauth_setup: unknown grant %d", (int)p.grant);
    }
    char *error = NULL;
    if (mpo_account_set(svc, key, &c, &error) < 0) {
        mp_fail(err, MP_FATAL, "%s", error);
        free(error);
        return MP_FATAL;
    }
    return MP_OK;
}

mp_status mphost_oauth_token_run(mpo_service *svc, const char *key, char **token_r,
                                 mp_error *err)
{
    char *error = NULL;
    int64_t expires_ms = 0;
    mpo_status st = MPO_CONFIG;
    uint32_t retry_ms = 0;
    *token_r = NULL;
    if (mpo_token(svc, key, token_r, &expires_ms, &st, &retry_ms, &error) == 0)
        return MP_OK;
    /* core/oauth keeps secrets out of its error texts. */
    const char *why = error != NULL ? error : "no reason given";
    mp_status out;
    switch (st) {
    case MPO_RETRY:
        out = mp_fail(err, MP_RETRY, "OAuth2 token: %s", why);
        if (err != NULL)
            err->retry_after_ms = retry_ms;
        break;
    case MPO_REAUTH:
        out = mp_fail(err, MP_REAUTH, "needs re-authorization: %s", why);
        break;
    case MPO_OK: /* not with -1; treated as unusable */
    case MPO_CONFIG:
    default:
        out = mp_fail(err, MP_FATAL, "OAuth2 credentials unusable: %s", why);
        break;
    }
    free(error);
    return out;
}

void mphost_oauth_reject_run(mpo_service *svc, const char *key, const char *token)
{
    mpo_token_reject(svc, key, token);
}

/* ---- the daemon's slots ---- */

mp_status mphost_oauth_setup(mp_account *acct, const mp_oauth_params *params, mp_error *err)
{
    mpo_service *svc = mphost_env_of(acct)->oauth;
    if (svc == NULL)
        return mp_fail(err, MP_FATAL, "OAuth2 service not running");
    return mphost_oauth_setup_run(svc, acct->id, params, NULL, err);
}

mp_status mphost_oauth_token(mp_account *acct, char **token_r, mp_error *err)
{
    *token_r = NULL;
    /* A job still running for an account that a reload removed: its
     * credentials are gone, which is no reason to mark it fatal. One
     * whose subscription is being cancelled keeps them until then. */
    if (acct->removed && !atomic_load(&acct->push_cancel))
        return mp_fail(err, MP_RETRY, "account removed or reconfigured");
    mpo_service *svc = mphost_env_of(acct)->oauth;
    if (svc == NULL)
        return mp_fail(err, MP_FATAL, "OAuth2 service not running");
    return mphost_oauth_token_run(svc, acct->id, token_r, err);
}

void mphost_oauth_reject(mp_account *acct, const char *token)
{
    mpo_service *svc = mphost_env_of(acct)->oauth;
    if (svc != NULL)
        mphost_oauth_reject_run(svc, acct->id, token);
}

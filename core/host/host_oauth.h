/*
 * The OAuth2 host slots (ABI 1.1: oauth_setup, oauth_token, oauth_reject)
 * over core/oauth. The *_run functions take the token service and the
 * account key explicitly, so the test kit's mock host serves the same
 * mapping with a service of its own; the daemon's slots pass its service
 * and the account id. Any thread; oauth_token blocks for at most one
 * token request (worker threads).
 */
#ifndef MP_HOST_OAUTH_H
#define MP_HOST_OAUTH_H

#include <mailpulse/driver.h>

#include "oauth/oauth.h"

/* mp_oauth_params (fields beyond params->struct_size read as zero) mapped
 * to an mpo_credential for `key`; ca_file: NULL for the system store.
 * MP_OK, or MP_FATAL with err set (NULL or short params, unknown grant,
 * description incomplete for its grant). */
mp_status mphost_oauth_setup_run(mpo_service *svc, const char *key,
                                 const mp_oauth_params *params, const char *ca_file,
                                 mp_error *err);
/* mpo_token mapped to a driver status: MPO_OK -> MP_OK with *token_r
 * (release with the free_secret slot: mpu_secret_free); MPO_RETRY ->
 * MP_RETRY with err->retry_after_ms; MPO_REAUTH -> MP_REAUTH ("needs
 * re-authorization: <reason>"); MPO_CONFIG -> MP_FATAL. No secret in err. */
mp_status mphost_oauth_token_run(mpo_service *svc, const char *key, char **token_r,
                                 mp_error *err);
/* mpo_token_reject. Accepts a NULL token. */
void mphost_oauth_reject_run(mpo_service *svc, const char *key, const char *token);

/* The daemon's slots: the daemon's service, keyed by account id. */
mp_status mphost_oauth_setup(mp_account *acct, const mp_oauth_params *params, mp_error *err);
mp_status mphost_oauth_token(mp_account *acct, char **token_r, mp_error *err);
void mphost_oauth_reject(mp_account *acct, const char *token);

#endif

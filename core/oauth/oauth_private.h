/* core/oauth internals shared between its files. */
#ifndef MP_OAUTH_PRIVATE_H
#define MP_OAUTH_PRIVATE_H

#include "oauth/oauth.h"

/* The outcome of one token request. Secrets: mpu_secret_free. */
typedef struct mpo_answer {
    mpo_status status;
    char *access_token;  /* MPO_OK                                   */
    int64_t lifetime_ms; /* MPO_OK: expires_in (0 when absent)      */
    char *refresh_token; /* MPO_OK: a rotated one, NULL when absent */
    uint32_t retry_ms;   /* MPO_RETRY: Retry-After, 0 = use backoff  */
    char *error;         /* otherwise: why (no secret)              */
} mpo_answer;

void mpo_answer_clear(mpo_answer *a);

/* "k1=v1&k2=v2" with form encoding; pairs end at a NULL name; a pair with
 * a NULL value is left out. The result may hold secrets: mpu_secret_free. */
char *mpo_form(const char *const *pairs);

/* POST `form` to `url` and map the answer into *ans (mpo_answer_clear).
 * The n_secrets strings in `secrets` (entries may be NULL) are cut out of
 * any provider text that ends up in ans->error. */
void mpo_grant_post(const char *url, const char *ca_file, uint32_t timeout_ms,
                    const char *form, const char *const *secrets, size_t n_secrets,
                    mpo_answer *ans);

#endif

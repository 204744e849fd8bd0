/*
 * A rotated refresh token kept in the store's per-account driver state
 * (mps_state_*, key MPO_STATE_KEY): the store file is owner-only and the
 * state table is never rendered by the API.
 */
#include "oauth/oauth.h"
#include "store/store.h"

int mpo_store_persist(void *store, const char *account_key, const char *record,
                      char **error_r)
{
    return mps_state_put(store, account_key, MPO_STATE_KEY, record, error_r);
}

int mpo_store_load(void *store, const char *account_key, char **record_r, char **error_r)
{
    return mps_state_get(store, account_key, MPO_STATE_KEY, record_r, error_r);
}

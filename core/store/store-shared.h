/*
 * Private to core/store: what the store's files share whatever the backend,
 * the staged sync batch and the JSON helpers for event data. Nothing
 * outside core/store includes this; store-private.h (the store's files
 * and the backends) includes it.
 */
#ifndef MP_STORE_STORE_SHARED_H
#define MP_STORE_STORE_SHARED_H

#include <jansson.h>

#include "store/store.h"

/* The membership part of a staged change (mps_membership, copied). */
struct mps__mem {
    int has_set;
    char **folders;
    size_t n_folders;
    char **added;
    size_t n_added;
    char **removed;
    size_t n_removed;
};

/* A driver state record staged with a batch; value NULL deletes. */
struct mps__state_rec {
    char *key;
    char *value;
};

/* A sync batch: copies of the staged changes (every string and the raw
 * bytes owned by the batch), their memberships (mems[i] NULL: none given),
 * a pending folder.reset, and the account cursor and driver state records
 * the next commit writes. */
struct mps_batch {
    char *account;
    char *folder;
    mp_change *changes;
    struct mps__mem **mems;
    size_t n, cap;
    int has_account_cursor;
    char *account_cursor;
    struct mps__state_rec *state;
    size_t n_state;
    size_t raw_bytes; /* of the staged changes */
    int reset;
    char *reset_reason;
    mps_new_message_cb on_new; /* kept across commits */
    void *on_new_arg;
};
/* Drop the staged changes, the pending reset, the account cursor and the
 * state records. */
void mps__batch_clear(mps_batch *b);

/* JSON helpers for event data. mps__json_string never fails on bad
 * UTF-8 (non-ASCII bytes become '?') and cuts at `max` bytes on a character
 * boundary (0: no cut). mps__json_take serializes compactly and releases
 * the object; an empty object gives NULL. */
json_t *mps__json_string(const char *s, size_t max);
char *mps__json_take(json_t *obj);

#endif

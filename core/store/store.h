/*
 * The store: accounts, folders, messages, the body cache, push
 * subscriptions and hints, driver state and the event outbox, behind an
 * API that names no database. Its logic is written once (the .c files of
 * core/store) over a small database seam (db.h) with two backends: SQLite
 * (core/store/sqlite/, the only code that includes <sqlite3.h>) and
 * PostgreSQL (core/store/pg/, the only code that includes <libpq-fe.h>).
 * Callers use this header and pool.h only (backend.h says what else a
 * backend provides).
 *
 * INVARIANT: a sync batch's message changes, the outbox events they cause
 * and the folder's cursor/backfill advance are written in ONE transaction
 * (mps_batch_commit). A crash at any instant therefore loses no change,
 * duplicates no event (every event has a deterministic idempotency key with
 * a UNIQUE constraint) and never leaves a cursor ahead of what is stored.
 *
 * Threading: an mps_store is one connection used by one thread at a time.
 * Each thread opens its own (pool.h does that for a process). Writes from
 * several connections serialize in the backend: a writer waits for another
 * one's transaction (up to 10 s) before its call fails.
 *
 * Errors: functions return 0 on success, -1 on failure with an allocated
 * message in *error_r (when error_r is not NULL); "not found" is 1 where
 * documented. Nothing here logs.
 */
#ifndef MP_STORE_STORE_H
#define MP_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

typedef struct mps_store mps_store;

/* Open a connection to the store at `location`, creating the store and
 * applying pending schema migrations (versioned, each in its own
 * transaction) when needed. A location is a postgresql:// or postgres://
 * URL (libpq's connection URI: a PostgreSQL database; it may hold a
 * password, and no message repeats it), or else a file path (an SQLite
 * database). PostgreSQL keeps text as valid UTF-8: an invalid byte in a
 * string written becomes U+FFFD there, where SQLite keeps the bytes. On
 * failure errno is the operating system's cause when there is one
 * (EMFILE: out of descriptors), else 0. */
int mps_open(const char *location, mps_store **store_r, char **error_r);
void mps_close(mps_store **store);
/* Schema version after migrations. */
int mps_schema_version(mps_store *store);

/* ---- accounts ---- */

/* Ensure an account row exists (created_at set once). */
int mps_account_ensure(mps_store *s, const char *account, const char *instance,
                       char **error_r);
/* Set the account's status ("pending" until its first sync, "ok", "error",
 * "reauth", "fatal", "disabled", "driver-refused") and last error (NULL clears). When the status differs
 * from the stored one, an account.status event is appended in the same
 * transaction. *changed_r (may be NULL) tells whether it changed. */
int mps_account_set_status(mps_store *s, const char *account, const char *status,
                           const char *error, int *changed_r, char **error_r);
/* Record the push state string ("off", "watching", "failed: ..."); emits an
 * account.status event when it changes. */
int mps_account_set_push_state(mps_store *s, const char *account,
                               const char *push_state, char **error_r);
int mps_account_set_profile(mps_store *s, const char *account,
                            const char *profile_json, char **error_r);

typedef struct mps_account_row {
    char *id;
    char *instance;
    char *status;
    char *last_error;      /* NULL if none */
    char *push_state;
    char *profile_json;    /* NULL if none */
    int64_t last_sync_ms;  /* last successful delta sync, 0 never */
    int64_t last_push_ms;  /* last push hint received, 0 never */
} mps_account_row;

int mps_account_get(mps_store *s, const char *account, mps_account_row *row_r,
                    char **error_r); /* 1 = not found */
void mps_account_row_clear(mps_account_row *row);
int mps_account_touch_sync(mps_store *s, const char *account, int64_t when_ms,
                           char **error_r);

/* ---- folders ---- */

typedef struct mps_folder {
    char *account;
    char *name;
    int role;              /* mp_folder_role */
    char *cursor;          /* NULL until bootstrapped */
    char *backfill_pos;    /* NULL: none yet */
    int bootstrapped;
    int backfill_done;
    int backfill_requested; /* manual trigger pending */
    int64_t messages;      /* stored, not deleted */
    int64_t bodies;        /* of those, with a cached body */
    int64_t synced_count;  /* loaded by bootstrap/backfill (history depth) */
    int64_t resets;        /* folder.reset count */
    int64_t last_sync_ms;
    char *last_error;      /* NULL if none */
} mps_folder;

/* Ensure a folder row exists; updates its role. */
int mps_folder_ensure(mps_store *s, const char *account, const char *folder,
                      int role, char **error_r);
int mps_folder_get(mps_store *s, const char *account, const char *folder,
                   mps_folder *folder_r, char **error_r); /* 1 = not found */
/* All folders of an account ordered by role (inbox first) then name. */
int mps_folders_list(mps_store *s, const char *account, mps_folder **list_r,
                     size_t *n_r, char **error_r);
void mps_folder_clear(mps_folder *f);
void mps_folders_free(mps_folder **list, size_t n);
int mps_folder_set_error(mps_store *s, const char *account, const char *folder,
                         const char *error, char **error_r);
int mps_folder_request_backfill(mps_store *s, const char *account,
                                const char *folder, char **error_r); /* 1 = no such folder */
/* Drop cursor, bootstrap flag and backfill position (MP_RESYNC). Stored
 * messages stay; the re-bootstrap folds them in without new events. */
int mps_folder_reset(mps_store *s, const char *account, const char *folder,
                     char **error_r);
/* Forget a folder the provider no longer has (a deleted IMAP folder or
 * Gmail label): its row, what memberships are left in it and its pending
 * push hints go, in one transaction. The caller first takes its messages
 * out through a batch (message.updated with folders_removed, or
 * message.deleted for those that were only there), so nothing is left
 * silently. 1 = no such folder. */
int mps_folder_delete(mps_store *s, const char *account, const char *folder,
                      char **error_r);

/* ---- sync batches ---- */

typedef struct mps_batch mps_batch;

/* Start staging changes for one folder. Nothing is written until commit.
 * folder NULL: a batch of no folder (a change log over the whole mailbox):
 * every NEW/SYNCED must name its folders (mps_batch_add_in), and its
 * commits take no folder cursor, backfill position or reset (-1). */
mps_batch *mps_batch_new(const char *account, const char *folder);
/* Copy a change into the batch (all strings and raw bytes copied). */
void mps_batch_add(mps_batch *b, const mp_change *change);
/*
 * Folder memberships (labels, moves). A message is stored once per account
 * (one public id, one cached body) and is in one or more folders while it
 * is live; the last membership removed deletes it. A change staged with
 * mps_batch_add (what ABI 1.0 drivers give) keeps today's one-folder rule:
 * NEW/SYNCED puts the message in exactly the batch's folder (a stored
 * message elsewhere moves there), UPDATED leaves its folders alone, DELETED
 * removes it from all. mps_batch_add_in gives the memberships with the
 * change, for providers whose ids are stable across folders:
 *  - `folders` not NULL: the message is now in exactly these n_folders
 *    folders (Gmail's label list: "X is in {A,B}");
 *  - else NEW/SYNCED add the batch's folder to the stored ones (a message
 *    listed in a second label is not moved out of the first), UPDATED and
 *    DELETED start from the stored ones;
 *  - then `added` are entered and `removed` left ("entered A / left B").
 * mem NULL is mps_batch_add. The folder's UID (change->uid) belongs to the
 * membership in the batch's folder. Unknown ids are ignored by UPDATED as
 * always; a NEW/SYNCED of an unknown id is inserted into its folders.
 * Events (derived from stored state, so replays add nothing):
 *  - leaving the last folder (or DELETED) is one message.deleted;
 *  - entering or leaving folders is one message.updated whose data has
 *    "folders_added", "folders_removed" (arrays, sorted) and "folders"
 *    (all memberships now, primary first) beside "uid" and "flags";
 *  - it is message.new instead when the change is NEW (new mail, never
 *    history) and one of the folders entered has the INBOX role: mail that
 *    arrives in the inbox of a message already stored (Gmail's copy sent
 *    to oneself, first stored under SENT);
 *  - message.new/message.synced of a change given with memberships carry
 *    "folders" too (ABI 1.0 events keep their fields).
 * The event's folder is the message's primary folder: the one it had if it
 * is still there, else the batch's folder if it is in it, else the first
 * by name. Every folder's live_count/body_count counts its memberships.
 */
typedef struct mps_membership {
    const char *const *folders; /* the whole set, or NULL */
    size_t n_folders;
    const char *const *added;
    size_t n_added;
    const char *const *removed;
    size_t n_removed;
} mps_membership;
void mps_batch_add_in(mps_batch *b, const mp_change *change, const mps_membership *mem);
/* A move under an unchanged provider id: leave `from`, enter `to`, in one
 * change (one message.updated; a stored message only). */
void mps_batch_move(mps_batch *b, const char *provider_id, const char *from,
                    const char *to);
/* Account-level cursor (a change log over the whole mailbox: Gmail's
 * historyId) and driver state records written by the next commit of this
 * batch, in its transaction. cursor NULL clears the account cursor; value
 * NULL deletes the record. Bounds: see MPS_STATE_*; a record out of bounds
 * fails the commit. A later call for the same key replaces the staged one. */
void mps_batch_account_cursor(mps_batch *b, const char *cursor);
void mps_batch_state(mps_batch *b, const char *key, const char *value);
/* Move the staged changes and the pending reset into a new batch for the
 * same account and folder with the same on_new callback (a write-behind
 * commit that moves no cursor), leaving the staged account cursor and
 * state records in b for the commit that ends the step. */
mps_batch *mps_batch_split(mps_batch *b);
/* Number of staged changes, and the bytes of raw message they hold. */
size_t mps_batch_pending(const mps_batch *b);
size_t mps_batch_pending_bytes(const mps_batch *b);
/* Mark a folder.reset to be emitted with the next commit. */
void mps_batch_reset(mps_batch *b, const char *reason);
/* Optional: after every successful commit of this batch, cb(account,
 * public id, arg) is called on the committing thread for each message the
 * commit inserted as message.new without a body, in change order (the
 * body-cache warmer queues them). cb NULL: none. */
typedef void (*mps_new_message_cb)(const char *account, const char *id, void *arg);
void mps_batch_on_new(mps_batch *b, mps_new_message_cb cb, void *arg);

typedef struct mps_commit_result {
    size_t applied;        /* changes that altered the store                */
    size_t events;         /* events appended                               */
    int64_t last_seq;      /* highest event seq appended, 0 if none          */
    size_t new_messages;   /* message.new events                            */
} mps_commit_result;

/* In one transaction: apply the staged changes, append their events,
 * set the cursor (NULL: keep), backfill position (NULL: keep),
 * backfill_done (-1: keep, 0/1: set), mark the folder bootstrapped when
 * `cursor` is not NULL, and clear the staged list. Rules:
 *  - NEW/SYNCED of an unknown (or tombstoned) id inserts the message and
 *    appends message.new / message.synced;
 *  - NEW/SYNCED of a stored id updates flags and folders (memberships
 *    above) and appends message.updated only when something changed;
 *  - UPDATED of a stored id changes the given fields and appends
 *    message.updated when something changed; unknown ids are ignored;
 *  - DELETED tombstones a stored message and appends message.deleted;
 *  - old_id re-keys a stored message to id keeping its public id, silently;
 *  - raw bytes are stored in the body cache with expiry
 *    now + retention_ms (retention_ms 0: no expiry);
 *  - the staged account cursor and driver state records are written.
 * Each event's idempotency key is "<account>/<provider id>/<version>"
 * (message events), "<account>/<folder>/reset/<n>" or
 * "<account>/status/<n>", and is UNIQUE. */
int mps_batch_commit(mps_store *s, mps_batch *b, const char *cursor,
                     const char *backfill_pos, int backfill_done,
                     int64_t retention_ms, mps_commit_result *result_r,
                     char **error_r);
void mps_batch_free(mps_batch **b);

/* ---- account cursors and driver state (state.c) ----
 *
 * Per account, beside the folders' cursors: one account-level cursor and
 * small key/value records a driver keeps across restarts (a rotated token,
 * a watch's id). Outside a batch each call is its own transaction; with a
 * batch see mps_batch_account_cursor/mps_batch_state. Values are text. */
#define MPS_STATE_KEY_MAX 128
#define MPS_STATE_VALUE_MAX 65536
int mps_account_cursor_get(mps_store *s, const char *account, char **cursor_r,
                           char **error_r); /* 1 = none */
int mps_account_cursor_set(mps_store *s, const char *account, const char *cursor,
                           char **error_r); /* NULL clears */
int mps_state_get(mps_store *s, const char *account, const char *key, char **value_r,
                  char **error_r); /* 1 = none */
int mps_state_put(mps_store *s, const char *account, const char *key, const char *value,
                  char **error_r); /* NULL deletes */
/* -1 with a reason when a key or value (NULL: a deletion) is out of bounds. */
int mps_state_check(const char *key, const char *value, char **error_r);

/* ---- messages ---- */

typedef struct mps_message {
    char *id;            /* public id: "m" + 24 hex of SHA-256(account NUL provider id) */
    char *account;
    char *folder;        /* primary folder (the first it was stored in) */
    char *provider_id;
    char *ref;           /* NULL: provider_id */
    uint32_t uid;
    char *message_id;
    char *subject;
    char *from;
    char *to;
    int64_t date;
    int64_t size;
    char *thread_id;
    char *flags;
    int deleted;
    int has_body;
    int64_t indexed_ms;
    char **folders;      /* mps_message_get only: all memberships, primary
                            first then by name; NULL elsewhere */
    size_t n_folders;
} mps_message;

int mps_message_get(mps_store *s, const char *id, mps_message *msg_r,
                    char **error_r); /* 1 = not found */
/* Newest first (date desc, then id). `before`: a public id to page from
 * (exclusive), NULL for the first page. Deleted messages are left out.
 * folder NULL: all folders; else the messages that are in `folder`
 * (whatever their primary folder). */
int mps_messages_list(mps_store *s, const char *account, const char *folder,
                      const char *before, size_t limit, mps_message **list_r,
                      size_t *n_r, char **error_r);
/* Call cb for each stored, non-deleted message of a folder in ascending
 * UID order, then provider id; cb returns nonzero to stop. The message is
 * valid during the callback only; its folder and uid are those of its
 * membership in `folder`. */
typedef int (*mps_message_cb)(const mps_message *msg, void *arg);
int mps_messages_each(mps_store *s, const char *account, const char *folder,
                      mps_message_cb cb, void *arg, char **error_r);
void mps_message_clear(mps_message *m);
void mps_messages_free(mps_message **list, size_t n);
/* Public id of a provider id; writes 25 chars + NUL into out (>= 26). */
void mps_message_public_id(const char *account, const char *provider_id,
                           char *out, size_t size);

/* ---- body cache ---- */

int mps_body_get(mps_store *s, const char *id, uint8_t **data_r, size_t *len_r,
                 char **error_r); /* 1 = not cached or expired */
int mps_body_put(mps_store *s, const char *id, const uint8_t *data, size_t len,
                 int64_t expires_ms, char **error_r);
/* Delete bodies expired at now_ms; returns the count in *removed_r. */
int mps_body_cleanup(mps_store *s, int64_t now_ms, int64_t *removed_r,
                     char **error_r);

/* ---- push subscriptions and hints ---- */

typedef struct mps_subscription {
    char *account;
    char *provider_id;
    int64_t expires_at;   /* Unix seconds, 0 never */
    char *cursor_hint;
    int64_t renewed_ms;
    int64_t last_notification_ms;
    /* The verification secret the driver chose (Graph's clientState), or
     * NULL. Never logged, never in an API answer; wiped by _clear. */
    char *secret;
} mps_subscription;

int mps_subscription_get(mps_store *s, const char *account,
                         mps_subscription *sub_r, char **error_r); /* 1 = none */
/* Store the account's subscription (insert or replace). secret NULL keeps
 * the stored one (a renewal that did not rotate it); a new row gets none. */
int mps_subscription_put(mps_store *s, const char *account,
                         const char *provider_id, int64_t expires_at,
                         const char *cursor_hint, const char *secret,
                         char **error_r);
int mps_subscription_delete(mps_store *s, const char *account, char **error_r);
void mps_subscription_clear(mps_subscription *sub);
/* Durably record a push hint (and the account's last_push_ms). Older
 * hints of the same account and folder (NULL: account-wide) are dropped in
 * the same transaction: only the newest counts, so a flood of pushes keeps
 * one row per folder. A run that took one of the dropped rows deletes
 * nothing more by it; the new row waits for the next run. */
int mps_push_hint_add(mps_store *s, const char *account, const char *folder,
                      const char *cursor_hint, int64_t when_ms, char **error_r);

/* The hints a sync run took over: read when it starts, deleted only after
 * it succeeded (mps_push_hints_delete), so a failed or crashed run leaves
 * them for the next one. One entry per folder (the newest hint), in the
 * order received; rowids are every row taken. */
typedef struct mps_push_hint {
    char *folder;      /* NULL: account-wide                                */
    char *cursor_hint; /* or NULL                                           */
    int64_t received_ms;
} mps_push_hint;
typedef struct mps_push_take {
    mps_push_hint *hints;
    size_t n;
    int64_t *rowids;
    size_t n_rows;
    int more; /* rows matching were left because of max_rows             */
} mps_push_take;
/* Read (not delete) at most max_rows hints of `account`, oldest first:
 * those whose folder is one of folders[0..n_folders) when n_folders > 0,
 * plus the account-wide ones when `account_wide`; every hint when
 * n_folders is 0. */
int mps_push_hints_read(mps_store *s, const char *account, const char *const *folders,
                        size_t n_folders, int account_wide, size_t max_rows,
                        mps_push_take *take_r, char **error_r);
/* Delete exactly the rows of `take` (one transaction). */
int mps_push_hints_delete(mps_store *s, const mps_push_take *take, char **error_r);
void mps_push_take_clear(mps_push_take *take);
/* Accounts with pending hints (after a restart, sync them first). The
 * array is NULL-terminated; free each string, then the array. */
int mps_push_hints_accounts(mps_store *s, char ***accounts_r, size_t *n_r,
                            char **error_r);

/* ---- the outbox ---- */

typedef struct mps_event {
    int64_t seq;
    char *type;       /* "message.new", ... */
    char *account;
    char *folder;     /* NULL for account events */
    char *message;    /* public message id, NULL for folder/account events */
    int64_t time_ms;
    char *idem_key;
    char *data_json;  /* small JSON object with extra fields, or NULL */
} mps_event;

/* Events with seq > after, ascending, at most limit. Filters may be NULL:
 * `types` and `accounts` are NULL-terminated lists. */
int mps_events_after(mps_store *s, int64_t after, size_t limit,
                     const char *const *types, const char *const *accounts,
                     mps_event **list_r, size_t *n_r, char **error_r);
void mps_events_free(mps_event **list, size_t n);
int64_t mps_events_last_seq(mps_store *s);
/* Append an event outside a batch (account.status etc.) in its own
 * transaction. */
int mps_event_append(mps_store *s, const char *type, const char *account,
                     const char *folder, const char *message,
                     const char *idem_key, const char *data_json,
                     int64_t *seq_r, char **error_r);

/* ---- store generations (epochs.c) ----
 *
 * A backend may lose the last commits on a power cut (SQLite's WAL with
 * synchronous=NORMAL does: see sqlite/db.c), and the seq values of lost
 * events are then given to new ones. An epoch names
 * one run of seq values that no power loss can have cut short: a clean stop
 * writes a marker durably (mps_epoch_end), the next start clears it durably
 * (mps_epoch_begin); a start that finds no marker cannot know what was lost
 * and begins a new epoch at the next seq. Stream positions are then
 * "<epoch>:<seq>", and a position from an older epoch resumes no later than
 * where the next epoch began (mps_epoch_resume), so a reused seq is sent
 * again, never skipped. A store created or upgraded by this version starts
 * in epoch 1 at seq 1, marked clean. Both calls fsync. */

/* At daemon start, once, before any event is appended. *epoch_r is the
 * current epoch; *unclean_r (may be NULL) is 1 when a new epoch began
 * because the marker was missing. */
int mps_epoch_begin(mps_store *s, int64_t *epoch_r, int *unclean_r, char **error_r);
/* At a clean stop, after the last write of the process. */
int mps_epoch_end(mps_store *s, char **error_r);
/* The current epoch (the highest), 0 on error. */
int64_t mps_epoch_current(mps_store *s);
/* Where to resume a client that last saw (epoch, seq): the seq after which
 * to send events. epoch 0 or the current epoch: seq itself. An older epoch:
 * min(seq, first seq of the next epoch - 1). An unknown newer epoch (a
 * restored backup): min(seq, first seq of the current epoch - 1). */
int mps_epoch_resume(mps_store *s, int64_t epoch, int64_t seq, int64_t *after_r,
                     char **error_r);

/* ---- outbox retention (outbox.c) ----
 *
 * Events are pruned oldest first, by seq, in chunks of their own
 * transaction. An event is pruned only when it and every event before it
 * are older than the cutoff, it is not the newest event (the newest seq
 * must survive for restarts), its seq is at or below the cursor of every
 * listed webhook endpoint that has a cursor (an endpoint without one starts
 * after the newest event), and it is not a dead letter of a listed
 * endpoint (those stay for replay). The horizon is the highest seq pruned:
 * a reader positioned below it has missed events. */

/* Plan one chunk: *upto_r gets the highest seq the chunk may prune
 * (<= the horizon when there is nothing to do) and *more_r 1 when more
 * may follow. Reads only. `endpoints`: NULL-terminated names or NULL. */
int mps_outbox_prune_plan(mps_store *s, int64_t before_ms, const char *const *endpoints,
                          size_t chunk, int64_t *upto_r, int *more_r, char **error_r);
/* Prune the planned chunk (events above the horizon up to `upto`, keeping
 * the dead letters of `endpoints`) and raise the horizon to `upto`, in one
 * transaction. *removed_r (may be NULL) counts the deleted events. */
int mps_outbox_prune_apply(mps_store *s, int64_t upto, const char *const *endpoints,
                           int64_t *removed_r, char **error_r);
/* The horizon: highest seq pruned, 0 when none. */
int mps_outbox_horizon(mps_store *s, int64_t *horizon_r, char **error_r);

/* ---- statistics for /metrics ---- */

typedef struct mps_stats {
    int64_t accounts, folders, messages, bodies, body_bytes, events, last_seq;
    int64_t events_oldest_ms; /* time of the oldest stored event, 0: none */
} mps_stats;
int mps_stats_get(mps_store *s, mps_stats *stats_r, char **error_r);
/* Statements this connection has run (every query and write, counted as
 * it is prepared or taken from the statement cache); 0 for NULL. Read on
 * the connection's own thread. /metrics shows the loop thread's, which is
 * how a test proves a path (GET /v1/accounts) reads nothing per account. */
uint64_t mps_statements(const mps_store *s);

/* ---- outbound webhook delivery (webhooks.c) ---- */

/* An endpoint's cursor: the seq of the last event it handled (delivered,
 * skipped by its filters or dead-lettered). 1 = no cursor yet. */
int mps_webhook_cursor_get(mps_store *s, const char *endpoint, int64_t *cursor_r,
                           char **error_r);
int mps_webhook_cursor_set(mps_store *s, const char *endpoint, int64_t cursor,
                           char **error_r);
/* In one transaction: record (or replace) the dead letter (endpoint, seq)
 * with its attempts and last error, not queued for replay, and set the
 * cursor to `cursor` when it is >= 0. */
int mps_webhook_dead_letter(mps_store *s, const char *endpoint, int64_t seq,
                            uint32_t attempts, const char *last_error,
                            int64_t cursor, char **error_r);
/* Queue the endpoint's dead letters with seq >= from for replay; *count_r
 * (may be NULL) gets how many were queued. */
int mps_webhook_replay(mps_store *s, const char *endpoint, int64_t from,
                       int64_t *count_r, char **error_r);
/* The lowest seq queued for replay. 1 = none. */
int mps_webhook_replay_next(mps_store *s, const char *endpoint, int64_t *seq_r,
                            char **error_r);
/* Forget a dead letter (delivered on replay, or its event is gone). */
int mps_webhook_dead_delete(mps_store *s, const char *endpoint, int64_t seq,
                            char **error_r);
/* Dead letters of the endpoint: all of them, and of those the ones queued
 * for replay. */
int mps_webhook_dead_count(mps_store *s, const char *endpoint, int64_t *dead_r,
                           int64_t *queued_r, char **error_r);

typedef struct mps_dead_letter {
    int64_t seq;
    uint32_t attempts;
    char *last_error;   /* NULL if none */
    int64_t failed_ms;
    int replay;         /* queued for replay */
} mps_dead_letter;

/* The endpoint's dead letters in seq order, at most limit. */
int mps_webhook_dead_list(mps_store *s, const char *endpoint, size_t limit,
                          mps_dead_letter **list_r, size_t *n_r, char **error_r);
void mps_dead_letters_free(mps_dead_letter **list, size_t n);

#endif

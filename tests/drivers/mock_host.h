/*
 * Mock host for driver unit tests (driver test kit), in the spirit of
 * collectd's plugin_mock.c: an in-process `mp_host` table that needs no
 * daemon, store or event loop. Hand mpt_mock_host() to a driver's init,
 * call its slots with the mock's instance, accounts, batches and sinks,
 * then inspect what it emitted.
 *
 *   - config_* serve a key/value table (mpt_mock_config_set), falling back
 *     to the defaults of the driver's declared keys (mpt_mock_declare).
 *   - read_secret serves a table (mpt_mock_secret_set); a key without a
 *     secret fails with MP_FATAL like a missing file.
 *   - batch_change stages, batch_commit commits staged changes and the
 *     cursor, as the host does; both are recorded. cursor_get reads the
 *     committed cursor (mpt_mock_cursor_set presets one).
 *   - log, folder_add, sync_now, push_state, set_profile, push_hint and
 *     push_reply are recorded. request_header reads the mp_push_request's
 *     host_private as a NULL-terminated "Name: value" list (build push
 *     requests that way).
 *   - http goes through the real core client (core/net) with the mock's
 *     CA file (mpt_mock_set_ca_file) and the account id as limit key, so a
 *     driver test against the scripted HTTP server exercises the same TLS,
 *     bounds and Retry-After handling as the daemon.
 *   - now_ms is the real clock unless mpt_mock_set_now moved it.
 *   - timer_add records timers; mpt_mock_run_timers fires the pending ones.
 *     watch_fd is recorded but never fires.
 *   - stored_messages iterates the committed, not deleted changes of a
 *     folder.
 *   - ABI 1.1: state_get/state_put serve a table (mpt_mock_state); batch_state
 *     and batch_account_cursor are staged per batch and land at its
 *     batch_commit; batch_change_folders records the change with its
 *     memberships (mpt_mock_change.folders); http_limit records the limit
 *     and sets it in core/net; http_ex goes through the core client with
 *     the options.
 *   - ABI 1.1 OAuth2: oauth_setup, oauth_token and oauth_reject go through
 *     a real core/oauth service (the daemon's mapping, host_oauth.c) with
 *     the mock's CA file, so a driver test points the token URL at the
 *     scripted HTTP server. A rotated refresh token is kept in the mock's
 *     driver state under MPO_STATE_KEY (mpt_mock_state); mpt_mock_oauth
 *     hands out the service, e.g. for mpo_credentials_changed (SIGHUP).
 *   - ABI 1.2: check_report is the daemon's own collector (host/host.h):
 *     hand the check slot an mphost_check_new() and read the results with
 *     mphost_check_count/mphost_check_at (bounded and sanitized as in the
 *     daemon), then mphost_check_free.
 *
 * One mock serves one driver instance and any number of accounts. Slots
 * are safe from any thread; the mpt_mock_* inspection functions are meant
 * for the test thread, after the driver call returned.
 */
#ifndef MP_TEST_MOCK_HOST_H
#define MP_TEST_MOCK_HOST_H

#include <mailpulse/driver.h>

typedef struct mpt_mock mpt_mock;
struct mpo_service;

/* One recorded change (copies). */
typedef struct mpt_mock_change {
    char *account;
    char *folder;
    mp_change_kind kind;
    char *id;
    char *subject;
    char *flags;
    char *folders;  /* batch_change_folders: "=A =B +C -D" (now_in, added,
                       removed; "=" alone: an empty now_in), else NULL */
    int committed;
} mpt_mock_change;

mpt_mock *mpt_mock_new(void);
void mpt_mock_free(mpt_mock **m);

const mp_host *mpt_mock_host(mpt_mock *m);
mp_instance *mpt_mock_instance(mpt_mock *m);
/* The account `id`, created on first use. */
mp_account *mpt_mock_account(mpt_mock *m, const char *id);
/* The config node handed to init and account_open. */
const mp_config *mpt_mock_config(mpt_mock *m);
/* A batch for a poll slot of `acct` on `folder` (valid until the mock is
 * freed; reuse it for several calls). */
mp_batch *mpt_mock_batch(mpt_mock *m, mp_account *acct, const char *folder);
mp_folder_sink *mpt_mock_folder_sink(mpt_mock *m);

/* ---- inputs ---- */
void mpt_mock_declare(mpt_mock *m, const mp_config_key *keys);
void mpt_mock_config_set(mpt_mock *m, const char *key, const char *value);
/* Append to a string-list key. */
void mpt_mock_config_list_add(mpt_mock *m, const char *key, const char *value);
void mpt_mock_secret_set(mpt_mock *m, const char *key, const char *secret);
void mpt_mock_cursor_set(mpt_mock *m, mp_account *acct, const char *folder, const char *cursor);
void mpt_mock_setting_set(mpt_mock *m, const char *name, int64_t value);
void mpt_mock_set_ca_file(mpt_mock *m, const char *path);
void mpt_mock_set_now(mpt_mock *m, int64_t now_ms); /* 0: real clock */
void mpt_mock_set_instance_state(mpt_mock *m, void *state);
void mpt_mock_set_account_state(mp_account *acct, void *state);

/* ---- outputs ---- */
size_t mpt_mock_change_count(mpt_mock *m);
const mpt_mock_change *mpt_mock_change_at(mpt_mock *m, size_t i);
/* Last committed cursor of acct/folder, or NULL. */
const char *mpt_mock_cursor(mpt_mock *m, mp_account *acct, const char *folder);
size_t mpt_mock_commit_count(mpt_mock *m);
/* ABI 1.1: committed driver state record (NULL: none), preset one (value
 * NULL deletes), committed account cursor (NULL: none), and the last
 * http_limit of the account (0: none set). */
const char *mpt_mock_state(mpt_mock *m, mp_account *acct, const char *key);
void mpt_mock_state_set(mpt_mock *m, mp_account *acct, const char *key, const char *value);
const char *mpt_mock_account_cursor(mpt_mock *m, mp_account *acct);
unsigned mpt_mock_http_limit(mp_account *acct);
/* OAuth2: the mock's token service (core/oauth/oauth.h), and how many
 * oauth_token and oauth_reject calls the driver made. */
struct mpo_service *mpt_mock_oauth(mpt_mock *m);
unsigned mpt_mock_oauth_token_count(mpt_mock *m);
unsigned mpt_mock_oauth_reject_count(mpt_mock *m);
/* Log lines as "<level> <account|->: <text>" (level error/warning/info/debug). */
size_t mpt_mock_log_count(mpt_mock *m);
const char *mpt_mock_log_at(mpt_mock *m, size_t i);
/* Nonzero when some log line contains `needle`. */
int mpt_mock_log_contains(mpt_mock *m, const char *needle);
size_t mpt_mock_folder_count(mpt_mock *m);
const char *mpt_mock_folder_at(mpt_mock *m, size_t i, mp_folder_role *role_r);
unsigned mpt_mock_sync_now_count(mpt_mock *m);
const char *mpt_mock_push_state(mpt_mock *m, mp_account *acct); /* last, or NULL */
const char *mpt_mock_profile(mpt_mock *m, mp_account *acct);    /* last, or NULL */
unsigned mpt_mock_http_count(mpt_mock *m);
const char *mpt_mock_last_hint(mpt_mock *m);       /* cursor_hint, or NULL */
int mpt_mock_reply_status(mpt_mock *m);            /* last push_reply, 0 */
const char *mpt_mock_reply_body(mpt_mock *m);      /* or NULL */
/* The reply object to pass to push_verify. */
mp_push_reply *mpt_mock_push_reply(mpt_mock *m);
/* Fire every pending timer once (in the order added); returns how many. */
size_t mpt_mock_run_timers(mpt_mock *m);

#endif

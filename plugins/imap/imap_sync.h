/*
 * The sync side of imap.so (worker threads): the poll, fetch and probe
 * slots, and the pieces they share: connection reuse, the one function
 * that maps server answers to mp_status, EXAMINE with its response codes,
 * UID listings and pipelined summary fetches.
 *
 * Every function that takes `imap_conn **connp` drops the connection
 * (imap_conn_abort, *connp = NULL) on a network or protocol failure, so the
 * next call reconnects.
 */
#ifndef MP_IMAP_SYNC_H
#define MP_IMAP_SYNC_H

#include "imap_driver.h"
#include "imap_strategy.h"

/* ---- slots (imap_sync_*.c) ---- */

mp_status imap_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err);
mp_status imap_bootstrap(mp_account *acct, const char *folder, uint32_t max,
                         mp_batch *batch, mp_error *err);
mp_status imap_delta(mp_account *acct, const char *folder, const char *cursor,
                     mp_batch *batch, mp_error *err);
mp_status imap_backfill(mp_account *acct, const char *folder, const char *backfill_pos,
                        uint32_t max, mp_batch *batch, mp_error *err);
mp_status imap_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                     mp_error *err);
mp_status imap_probe(mp_account *acct, mp_error *err);

/* Forget the in-memory per-folder scan times of an account (close). */
void imap_sync_forget(imap_account *a);

/* ---- shared (imap_sync.c) ---- */

imap_account *imap_sync_account(mp_account *acct);
void imap_sync_log(const imap_account *a, mp_log_level level, const char *fmt, ...)
    MP_PRINTF(3, 4);

/* The reused connection *connp, or a new one. */
mp_status imap_sync_connect(imap_account *a, imap_conn **connp, mp_error *err);
/* The same through the instance's login limiter, but always a new
 * connection: deferred (imap_account_connect_deferred, for the folder
 * listing) or not (the probe). */
mp_status imap_sync_connect_deferred(imap_account *a, imap_conn **connp, mp_error *err);
mp_status imap_sync_connect_new(imap_account *a, imap_conn **connp, mp_error *err);

/* imap_account_connect whose ID and ENABLE answers are not awaited yet
 * (imap_conn_opts.defer_settle): send the first command, then call
 * imap_account_settle, which waits for them and records the profile
 * (with what ENABLE enabled). Settle failing drops the connection
 * (MP_RETRY). */
mp_status imap_account_connect_deferred(imap_account *a, imap_conn **conn_r, mp_error *err);
mp_status imap_account_settle(imap_account *a, imap_conn **connp, mp_error *err);

/* Map a refused login (LOGIN/AUTHENTICATE answered NO or BAD, or any
 * other failure to open, answer->refused 0) to a status: MP_REAUTH for
 * bad credentials (AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED,
 * CONTACTADMIN, or a NO without a code), MP_RETRY with a 30 s delay for a
 * passing problem (UNAVAILABLE, SERVERBUG, INUSE, LIMIT), else MP_RETRY. */
mp_status imap_sync_login_fail(imap_account *a, const imap_auth_answer *answer,
                               const char *error, mp_error *err);
/* The same decision for push streams: nonzero when the answer means bad
 * credentials. */
int imap_sync_auth_is_reauth(const imap_auth_answer *answer);

/* Map a tagged NO/BAD answer to a status (see imap_sync.c). `what` names
 * the command, `folder` may be NULL. With connp the connection is
 * dropped (commands may still be in flight). */
mp_status imap_sync_answer_fail(imap_account *a, imap_conn **connp, const char *what,
                                const char *folder, imap_status status, const char *text,
                                mp_error *err);
/* Finish a command sent with imap_send (its result in `sent`): wait for
 * its answer, keeping the status text with its response code (imap_run
 * drops it). -1 on a connection failure (*error_r); else 0 with *status_r
 * and *text_r (allocated or NULL). Usage:
 *   rc = imap_sync_finish(conn, imap_send(conn, tag, &error, ...), tag, ...) */
int imap_sync_finish(imap_conn *conn, int sent, const char *tag, imap_untagged_cb cb,
                     void *arg, imap_status *status_r, char **text_r, char **error_r);

/* A failed imap_send/imap_wait: the connection is dropped; MP_RETRY. */
mp_status imap_sync_io_fail(imap_account *a, imap_conn **connp, const char *what,
                            const char *error, mp_error *err);

/* What one command may collect from the server's answers (UID lists,
 * flag changes, VANISHED ranges, folder names), against the account's
 * max_memory_mb: counted in bytes allocated, so a hostile answer
 * ("* ESEARCH ... ALL 1:4000000000") fails the command instead of the
 * process. */
typedef struct imap_budget {
    size_t limit;
    size_t used;
    int over;
} imap_budget;
/* Charge `bytes`; -1 (and over set) when that passes the limit. */
int imap_budget_take(imap_budget *b, size_t bytes);
/* Make room for `need` elements of `size` bytes in *arr (capacity *cap),
 * growing geometrically within the budget. 0 or -1 (over). */
int imap_budget_reserve(imap_budget *b, void **arr, size_t *cap, size_t need, size_t size);
/* The command over its budget: the connection is dropped; MP_RETRY. */
mp_status imap_sync_over_budget(imap_account *a, imap_conn **connp, const char *what,
                                mp_error *err);

/* Cheap per-folder bookkeeping kept in memory (not across restarts): when
 * the last full comparison ran, and EXISTS as of the last delta (-1 when
 * unknown). */
typedef struct imap_folder_mem {
    int64_t scan_ms;
    int64_t exists;
} imap_folder_mem;
imap_folder_mem imap_sync_mem_get(const imap_account *a, const char *folder);
/* scan_ms 0 keeps the stored time. */
void imap_sync_mem_set(imap_account *a, const char *folder, int64_t scan_ms,
                       int64_t exists);

typedef struct imap_flag_change {
    uint32_t uid;
    uint32_t order; /* arrival, so a later answer for a UID wins        */
    char *flags;    /* normalized                                      */
} imap_flag_change;

typedef struct imap_box {
    uint32_t uidvalidity;
    uint32_t uidnext; /* 0: server did not say                       */
    uint32_t exists;
    uint64_t highestmodseq;
    int nomodseq;
    /* QRESYNC: VANISHED (EARLIER) and changed FETCH during the EXAMINE */
    imap_range *vanished;
    size_t n_vanished;
    imap_flag_change *changed;
    size_t n_changed;
} imap_box;

void imap_box_clear(imap_box *box);

typedef enum imap_examine_mode {
    IMAP_EXAMINE_PLAIN = 0,
    IMAP_EXAMINE_CONDSTORE = 1,
    IMAP_EXAMINE_QRESYNC = 2, /* needs `since` */
} imap_examine_mode;

/* EXAMINE (read-only) `folder`. A reused connection that turns out to be
 * dead is replaced once. */
mp_status imap_sync_examine(imap_account *a, imap_conn **connp, const char *folder,
                            imap_examine_mode mode, const imap_cursor *since,
                            imap_box *box_r, mp_error *err);
/* The same, calling `then` right after the EXAMINE is sent (on each
 * attempt) so the caller can pipeline commands behind it; `then` returns
 * 0, or -1 with *error_r set when a send failed. When the EXAMINE fails
 * with commands pipelined, the connection is dropped (their answers are
 * still in flight). */
typedef int (*imap_examine_then_cb)(imap_conn *conn, void *arg, char **error_r);
mp_status imap_sync_examine_then(imap_account *a, imap_conn **connp, const char *folder,
                                 imap_examine_mode mode, const imap_cursor *since,
                                 imap_examine_then_cb then, void *then_arg,
                                 imap_box *box_r, mp_error *err);

/* The MESSAGES count the account's last LIST-STATUS gave for `folder`
 * (imap_sync_folders.c), taken (a second call finds nothing): 1 with
 * *messages_r set, or 0. Only a guess to pipeline on. */
int imap_list_hint_take(const imap_account *a, const char *folder, uint32_t *messages_r);

/* UIDs in [lo, hi] (hi 0: up to '*'), ascending, at most the newest
 * `max_newest` (0: all); *total_r (may be NULL) gets the count before
 * truncation. ESEARCH when offered, else UID SEARCH. */
mp_status imap_sync_uids(imap_account *a, imap_conn **connp, uint32_t lo, uint32_t hi,
                         size_t max_newest, uint32_t **uids_r, size_t *n_r,
                         size_t *total_r, mp_error *err);

/* UIDs in [lo, hi] whose RFC822.SIZE is over `larger` bytes (SEARCH
 * LARGER), ascending. */
mp_status imap_sync_uids_larger(imap_account *a, imap_conn **connp, uint32_t lo,
                                uint32_t hi, uint64_t larger, uint32_t **uids_r,
                                size_t *n_r, mp_error *err);

/* UID and FLAGS of every message with UID in [lo, hi] (CHANGEDSINCE
 * `changedsince` when nonzero); sorted by UID. */
mp_status imap_sync_flags(imap_account *a, imap_conn **connp, uint32_t lo, uint32_t hi,
                          uint64_t changedsince, imap_flag_change **list_r, size_t *n_r,
                          mp_error *err);
void imap_flag_changes_free(imap_flag_change **list, size_t n);

/* Pipelined summary fetch of `uids` (sorted ascending) in batches of at
 * most sync.batch_size, as many in flight as a window of 32 MiB of
 * expected answer allows (imap_sync_summary.c), newest batch first when
 * `descending`. Each FETCH answer is emitted as `kind` with the id
 * "<folder>;<uidvalidity>;<uid>"; UIDs the server no longer has are
 * skipped silently. After each batch completes, `checkpoint` is called with
 * the lowest and highest UID of that batch; it commits and may set *stop_r
 * (no further batches are sent; those in flight still complete). It runs
 * after the window was refilled, so the server is never kept waiting on
 * a commit. */
typedef mp_status (*imap_checkpoint_cb)(void *arg, uint32_t lo, uint32_t hi,
                                        size_t emitted, int *stop_r, mp_error *err);
mp_status imap_sync_summaries(imap_account *a, imap_conn **connp, mp_batch *batch,
                              const char *folder, uint32_t uidvalidity,
                              const uint32_t *uids, size_t n, int descending,
                              mp_change_kind kind, imap_checkpoint_cb checkpoint,
                              void *arg, mp_error *err);
/* The same with the RFC822.SIZE of each message (`sizes`, parallel to
 * `uids`, or NULL) known: no SEARCH LARGER, and the window of answers in
 * flight is sized from them instead of from an estimate. With `deadline`
 * (ms since the epoch, 0: none; the checkpoint stops there) the window is
 * what the rate measured so far delivers until the deadline, so a stop
 * does not leave 32 MiB to read on a slow link. */
mp_status imap_sync_summaries_sized(imap_account *a, imap_conn **connp, mp_batch *batch,
                                    const char *folder, uint32_t uidvalidity,
                                    const uint32_t *uids, const uint32_t *sizes, size_t n,
                                    int descending, mp_change_kind kind, int64_t deadline,
                                    imap_checkpoint_cb checkpoint, void *arg, mp_error *err);

/* The stored messages of a folder (copies). */
typedef struct imap_stored {
    char *id;
    char *message_id;
    uint32_t uid;
    int64_t size;
    int64_t date;
    char *flags;
} imap_stored;
mp_status imap_sync_stored(imap_account *a, const char *folder, imap_stored **list_r,
                           size_t *n_r, mp_error *err);
void imap_stored_free(imap_stored **list, size_t n);

/* UIDVALIDITY changed (imap_sync_remap.c): re-map silently, one reset. */
mp_status imap_sync_remap(imap_account *a, imap_conn **connp, const char *folder,
                          uint32_t old_uidvalidity, const imap_box *box, mp_batch *batch,
                          mp_error *err);

#endif

/*
 * gmail.so push: the instance's push runtime (JWKS cache, messageId dedupe
 * set, the table from mailbox address to account, the JWKS refresher and
 * Pub/Sub pull threads) and the webhook slots. Facts:
 * ../shared/reference/providers.md §2.1-2.3.
 *
 *   gmail_push.c       runtime, account table, push_verify (pubsub-push)
 *   gmail_refresher.c  the JWKS refresher thread
 *   gmail_watch.c      push_enroll / push_renew (users.watch), push_cancel
 *                      (users.stop)
 *   gmail_pull.c       the subscriptions.pull thread (pubsub-pull)
 *
 * Threads: gmail_push_start/stop, account_add/remove and push_verify run on
 * the host's loop thread; the refresher and pull threads are the driver's;
 * the watch slots run on host workers. The runtime's mutex guards the
 * account table, the stop flag and the refetch request; it is never held
 * across network I/O, except that the pull thread holds `use` (a second
 * mutex) while it asks one account for a token or records a hint, so that
 * account cannot be closed under it (account_remove waits for it).
 */
#ifndef GMAIL_PUSH_H
#define GMAIL_PUSH_H

#include <pthread.h>
#include <stdint.h>

#include "gmail_dedupe.h"
#include "gmail_driver.h"
#include "gmail_jwks.h"

/* Scope a pull-mode account asks for beside the Gmail one: the pull
 * thread pulls and acknowledges with an account's token. */
#define GMAIL_PUBSUB_SCOPE "https://www.googleapis.com/auth/pubsub"

typedef struct gmail_push_rt {
    gmail_instance *gi;
    mp_instance *inst;
    gmail_jwks *jwks;
    /* Loop thread only (push_verify). */
    gmail_dedupe *dedupe;
    int64_t unknown_logged_ms; /* last "unknown mailbox" log line */

    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    int refetch;           /* push_verify met an unknown kid or no keys */
    gmail_account **accts; /* open accounts, in opening order */
    size_t n_accts, cap_accts;

    /* Held by the pull thread while it uses an account (token, hint). */
    pthread_mutex_t use;

    pthread_t refresher, puller;
    int refresher_started, puller_started;
} gmail_push_rt;

/* Start the runtime for an instance whose push mode is not off (loop
 * thread, from init): pubsub-push starts the JWKS refresher, pubsub-pull
 * the pull thread. MP_FATAL when a thread cannot be created. */
mp_status gmail_push_start(gmail_instance *gi, mp_instance *inst, mp_error *err);
/* Stop and join the threads, free the runtime (deinit; accepts NULL). */
void gmail_push_stop(gmail_instance *gi);

/* Enter / leave an account in the address table (account_open/close). */
void gmail_push_account_add(gmail_account *a);
void gmail_push_account_remove(gmail_account *a);

/* The mp_account of an open account of this instance whose `email` key
 * equals `email` (ASCII case-insensitive), or NULL. Caller holds rt->lock. */
mp_account *gmail_push_find_locked(gmail_push_rt *rt, const char *email);

/* Thread bodies (gmail_refresher.c, gmail_pull.c). */
void *gmail_refresher_main(void *arg);
void *gmail_pull_main(void *arg);

/* Sleep on rt->wake for up to `ms` or until stopping/refetch changes.
 * Caller holds rt->lock. Returns rt->stopping. */
int gmail_push_wait_locked(gmail_push_rt *rt, int64_t ms);

/* Slots. */
mp_status gmail_push_verify(mp_instance *inst, const mp_push_request *req,
                            mp_push_reply *reply, mp_error *err);
mp_status gmail_push_enroll(mp_account *acct, mp_subscription *sub_r, mp_error *err);
mp_status gmail_push_renew(mp_account *acct, const mp_subscription *current,
                           mp_subscription *sub_r, mp_error *err);
mp_status gmail_push_cancel(mp_account *acct, const mp_subscription *current,
                            mp_error *err);

/* What a watch answered (gmail_watch.c, exposed for unit tests): the
 * expires_at to report to the host for a watch expiring at `expiration_ms`
 * and made at `now_ms` (Unix seconds). The host renews once less than a
 * day remains; reporting at most ~two days ahead makes it renew about
 * daily, always days before Gmail's 7-day expiry. */
int64_t gmail_watch_report_expiry(int64_t expiration_ms, int64_t now_ms);
/* Parse a watch answer {"historyId","expiration"} (strings or numbers).
 * 0, or -1 when either is missing or malformed. *history_r malloc'd. */
int gmail_watch_parse(const char *body, size_t len, char **history_r,
                      int64_t *expiration_ms_r);

#endif /* GMAIL_PUSH_H */

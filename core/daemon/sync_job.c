/* What a scheduled job does for one account, on a worker thread.
 *
 * SYNC (new mail): keep the push subscription alive (webhook drivers),
 * refresh the folder list now and then, bootstrap folders never connected,
 * run a delta sync on the others. BACKFILL (history): walk each folder's
 * history downwards in batches until the job budget is spent.
 *
 * Driver status codes map to scheduler outcomes in one place
 * (outcome_of_status); the store guarantees that whatever a driver
 * committed is consistent, and whatever it staged but did not commit is
 * simply dropped, to be delivered again from the unchanged cursor. */
#include "daemon/daemon.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/util.h"

#define RENEW_BEFORE_MS (24LL * 3600 * 1000)
/* Push hint rows one sync run takes over at most; the rest wait for the
 * next run, which follows at once (MPJ_MORE). */
#define HINTS_PER_RUN 256
#define BACKFILL_FIRST_DELAY_MS 10000u

typedef struct job_state {
    mpd *d;
    struct mp_account *a;
    const mp_driver *desc;
    mps_store *s;
    mpd_knobs k;
    int failed;            /* a RETRY happened                          */
    uint32_t retry_after_ms;
    int stop;              /* REAUTH / FATAL                            */
    char first_error[512];
    int ok_folders;
    int more;              /* work left (hints beyond HINTS_PER_RUN)    */
} job_state;

mpd_knobs mpd_knobs_get(mpd *d)
{
    pthread_mutex_lock(&d->knobs_lock);
    mpd_knobs k = d->knobs;
    pthread_mutex_unlock(&d->knobs_lock);
    return k;
}

void mpd_knobs_from_settings(const mp_settings *s, mpd_knobs *k)
{
    k->sync_batch_size = s->sync.batch_size;
    k->fetch_bodies = s->sync.fetch_bodies;
    k->backfill_mode = s->backfill.mode;
    k->bootstrap_max = s->backfill.bootstrap_max;
    k->backfill_batch_size = s->backfill.batch_size;
    k->job_budget_s = s->backfill.job_budget;
    k->max_per_folder = s->backfill.max_per_folder;
    k->retention_ms = (int64_t)s->cache.retention_days * 86400 * 1000;
    k->folder_list_interval_s = s->schedule.folder_list_interval;
    k->ingest_batch_size = s->sync.ingest_batch_size;
    k->push_silence_hours = s->schedule.push_silence_hours;
    k->prefetch_per_run = s->cache.prefetch_per_run;
    k->prefetch_queue_max = s->cache.prefetch_queue_max;
}

static int folder_allowed(const struct mp_account *a, const char *name)
{
    if (a->folders_allowed == NULL)
        return 1;
    for (size_t i = 0; i < a->n_folders_allowed; i++)
        if (strcmp(a->folders_allowed[i], name) == 0)
            return 1;
    return 0;
}

/* Record a non-OK status. Returns nonzero when the job must stop. */
static int note_status(job_state *j, const char *folder, mp_status st, const mp_error *err)
{
    const char *text = err->text[0] ? err->text : "no reason given";
    char *error = NULL;
    if (st == MP_OK)
        return 0;
    if (folder != NULL && j->s != NULL &&
        mps_folder_set_error(j->s, j->a->id, folder, text, &error) < 0) {
        free(error);
        error = NULL;
    }
    /* The first error is what the account status shows; a long one is cut. */
    if (j->first_error[0] == '\0' &&
        snprintf(j->first_error, sizeof j->first_error, "%s%s%s", folder ? folder : "",
                 folder ? ": " : "", text) >= (int)sizeof j->first_error)
        j->first_error[sizeof j->first_error - 1] = '\0';
    switch (st) {
    case MP_RETRY:
    case MP_RESYNC: /* a resync that failed again: retry later */
        j->failed = 1;
        if (err->retry_after_ms > j->retry_after_ms)
            j->retry_after_ms = err->retry_after_ms;
        mpu_warn(j->a->id, "%s%s%s (will retry)", folder ? folder : "", folder ? ": " : "",
                 text);
        return 0;
    case MP_SKIP:
        mpu_info(j->a->id, "%s: skipped: %s", folder ? folder : "-", text);
        return 0;
    case MP_REAUTH:
        mpd_set_account_status(j->d, j->a->id, "reauth", text);
        j->stop = 1;
        return 1;
    case MP_FATAL:
    default:
        mpd_set_account_status(j->d, j->a->id, "fatal", text);
        j->stop = 1;
        return 1;
    }
}

/* A store call of the job failed: retry the job later, with `what` and
 * the store's reason (freed here) as its error. */
static void note_store_failure(job_state *j, const char *what, char *error)
{
    mp_error err = {0, ""};
    snprintf(err.text, sizeof err.text, "%s: %s", what, error != NULL ? error : "?");
    free(error);
    note_status(j, NULL, MP_RETRY, &err);
}

static mp_batch *batch_begin(job_state *j, const char *folder, int history,
                             int64_t deadline_ms)
{
    mphost_batch_params p = {
        .folder = folder,
        .history = history,
        .deadline_ms = deadline_ms,
        .store = j->s,
        .fetch_bodies = j->k.fetch_bodies,
        .ingest_batch_size = j->k.ingest_batch_size,
        .retention_ms = j->k.retention_ms,
    };
    return mphost_batch_begin(j->a, &p);
}

static mp_status run_bootstrap(job_state *j, const char *folder, const char *reset_reason,
                               mp_error *err)
{
    uint32_t max = j->k.bootstrap_max;
    if (j->k.backfill_mode == MP_BACKFILL_FROM_NOW_ON)
        max = 0;
    if (j->k.max_per_folder > 0 && max > j->k.max_per_folder)
        max = j->k.max_per_folder;
    mp_batch *b = batch_begin(j, folder, 1, 0);
    mphost_batch_stats stats;
    if (reset_reason != NULL)
        mphost_batch_note_reset(b, reset_reason);
    mp_status st = j->desc->bootstrap(j->a, folder, max, b, err);
    st = mphost_batch_end(&b, st, err, &stats);
    if (st == MP_OK && !stats.cursor_committed)
        return mp_fail(err, MP_RETRY, "driver bug: bootstrap of %s committed no cursor",
                       folder);
    if (st == MP_OK)
        mpu_info(j->a->id, "%s: bootstrapped (%zu changes, %zu events)", folder,
                 stats.changes, stats.events);
    return st;
}

static mp_status run_delta(job_state *j, const mps_folder *f, mp_error *err)
{
    mp_batch *b = batch_begin(j, f->name, 0, 0);
    mp_status st = j->desc->delta(j->a, f->name, f->cursor, b, err);
    st = mphost_batch_end(&b, st, err, NULL);
    if (st != MP_RESYNC)
        return st;
    /* The provider no longer knows our cursor: bootstrap the folder again.
     * Stored messages fold in silently; one folder.reset tells consumers. */
    char *error = NULL;
    mpu_warn(j->a->id, "%s: cursor invalid at the provider (%s); resyncing", f->name,
             err->text);
    char reason[600];
    snprintf(reason, sizeof reason, "cursor invalid: %s", err->text);
    if (mps_folder_reset(j->s, j->a->id, f->name, &error) < 0) {
        mp_fail(err, MP_RETRY, "cannot reset folder: %s", error);
        free(error);
        return MP_RETRY;
    }
    memset(err, 0, sizeof *err);
    return run_bootstrap(j, f->name, reason, err);
}

typedef struct id_list {
    char **v;
    size_t n, cap;
} id_list;

static int collect_provider_id(const mps_message *m, void *arg)
{
    id_list *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = mpu_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = mpu_strdup(m->provider_id);
    return 0;
}

static void id_list_free(id_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* A stored folder that a successful listing no longer shows was deleted at
 * the provider (an IMAP folder, a Gmail label). Its messages leave it the
 * way any message leaves a folder: one message.updated with
 * folders_removed for those still in another folder, one message.deleted
 * for those that were only there (stored once, so nothing else moves).
 * Then the folder row goes. A failure leaves the folder for the next
 * listing, which tries again. */
static void drop_vanished_folder(job_state *j, const char *folder)
{
    char *error = NULL;
    id_list ids = {0};
    if (mps_messages_each(j->s, j->a->id, folder, collect_provider_id, &ids, &error) < 0) {
        note_store_failure(j, "cannot list a deleted folder's messages", error);
        id_list_free(&ids);
        return;
    }
    mp_batch *b = batch_begin(j, NULL, 0, 0);
    const mp_host *h = mphost_table();
    const char *gone[1] = {folder};
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = MP_OK;
    for (size_t i = 0; i < ids.n && st == MP_OK; i++) {
        mp_change ch = {.kind = MP_CHANGE_UPDATED, .id = ids.v[i], .size = -1};
        mp_folders f = {.removed = gone, .n_removed = 1};
        st = h->batch_change_folders(b, &ch, &f, &err);
    }
    mphost_batch_stats stats;
    memset(&stats, 0, sizeof stats);
    st = mphost_batch_end(&b, st, &err, &stats);
    id_list_free(&ids);
    if (st != MP_OK) {
        note_status(j, NULL, MP_RETRY, &err);
        return;
    }
    if (mps_folder_delete(j->s, j->a->id, folder, &error) < 0) {
        note_store_failure(j, "cannot delete folder", error);
        return;
    }
    mpu_info(j->a->id, "%s: deleted at the provider; %zu messages left it (%zu events)",
             folder, stats.changes, stats.events);
}

static int sink_has(const mp_folder_sink *sink, const char *name)
{
    for (size_t i = 0; i < mphost_sink_count(sink); i++)
        if (strcmp(mphost_sink_name(sink, i), name) == 0)
            return 1;
    return 0;
}

static void refresh_folders(job_state *j)
{
    int64_t now = mpu_now_ms();
    pthread_mutex_lock(&j->a->lock);
    int64_t last = j->a->last_folder_list_ms;
    pthread_mutex_unlock(&j->a->lock);
    if (last != 0 && now - last < (int64_t)j->k.folder_list_interval_s * 1000)
        return;
    mp_folder_sink *sink = mphost_sink_new();
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = j->desc->list_folders(j->a, sink, &err);
    mphost_call_end();
    if (st == MP_OK) {
        for (size_t i = 0; i < mphost_sink_count(sink); i++) {
            char *error = NULL;
            const char *name = mphost_sink_name(sink, i);
            if (!folder_allowed(j->a, name))
                continue;
            if (mps_folder_ensure(j->s, j->a->id, name, (int)mphost_sink_role(sink, i),
                                  &error) < 0) {
                mpu_error(j->a->id, "cannot record folder: %s", error);
                free(error);
            }
        }
        mps_folder *stored = NULL;
        size_t n = 0;
        char *error = NULL;
        if (mps_folders_list(j->s, j->a->id, &stored, &n, &error) < 0)
            free(error);
        /* An empty listing is a server glitch, not every folder deleted
         * (an IMAP server always has INBOX, Gmail its system labels). */
        if (n > 0 && mphost_sink_count(sink) == 0) {
            mpu_warn(j->a->id, "the provider listed no folders at all; keeping the %zu"
                               " stored ones", n);
            mps_folders_free(&stored, n);
            n = 0;
        }
        for (size_t i = 0; i < n && !j->stop; i++)
            if (!sink_has(sink, stored[i].name))
                drop_vanished_folder(j, stored[i].name);
        mps_folders_free(&stored, n);
        pthread_mutex_lock(&j->a->lock);
        j->a->last_folder_list_ms = now;
        pthread_mutex_unlock(&j->a->lock);
    } else {
        note_status(j, NULL, st, &err);
    }
    mphost_sink_free(&sink);
}

/* The stored subscription as the driver's `current` (push_renew,
 * push_cancel): with the secret it chose at enrolment, which it may have
 * to present to the provider. */
static mp_subscription current_of(const mps_subscription *cur)
{
    mp_subscription c = {cur->provider_id, cur->expires_at, cur->cursor_hint, cur->secret};
    return c;
}

/* A subscription past its expiry is gone at the provider: there is
 * nothing to renew (Graph answers 404). The driver may clean up what it
 * kept (push_cancel; its failure only logged), then the row and its index
 * entry go, so the caller enrols anew. Returns -1 when the row could not
 * be deleted (try again next run). */
static int drop_lapsed(job_state *j, const mps_subscription *cur)
{
    mp_subscription c = current_of(cur);
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = j->desc->push_cancel(j->a, &c, &err);
    mphost_call_end();
    if (st != MP_OK)
        mpu_warn(j->a->id, "lapsed push subscription: cancel failed: %s",
                 err.text[0] ? err.text : "no reason given");
    char *error = NULL;
    if (mps_subscription_delete(j->s, j->a->id, &error) < 0) {
        mpu_error(j->a->id, "cannot delete the lapsed subscription: %s", error);
        free(error);
        return -1;
    }
    mphost_subs_forget(j->a->inst, j->a->id);
    mpu_info(j->a->id, "push subscription lapsed; enrolling again");
    return 0;
}

static void subscription_upkeep(job_state *j)
{
    if (j->desc->push_kind != MP_PUSH_WEBHOOK)
        return;
    mps_subscription cur;
    char *error = NULL;
    int have = mps_subscription_get(j->s, j->a->id, &cur, &error);
    if (have < 0) {
        free(error);
        return;
    }
    int64_t now = mpu_now_ms();
    if (have == 0 && cur.expires_at != 0 && cur.expires_at * 1000 <= now) {
        int rc = drop_lapsed(j, &cur);
        mps_subscription_clear(&cur);
        if (rc < 0)
            return;
        have = 1;
    }
    mp_subscription next;
    memset(&next, 0, sizeof next);
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st;
    const char *what;
    /* A driver that reports its push state while it enrols (Gmail's
     * "watch until ...") keeps it; the host's word is for those that
     * don't. */
    unsigned reports = atomic_load(&j->a->push_reports);
    if (have == 1) {
        what = "enroll";
        st = j->desc->push_enroll(j->a, &next, &err);
    } else if (cur.expires_at != 0 && cur.expires_at * 1000 - now < RENEW_BEFORE_MS) {
        what = "renew";
        /* The driver may hand out a new secret (NULL: keep the stored one). */
        mp_subscription c = current_of(&cur);
        st = j->desc->push_renew(j->a, &c, &next, &err);
    } else {
        mps_subscription_clear(&cur);
        return;
    }
    if (st == MP_OK) {
        if (mps_subscription_put(j->s, j->a->id, next.provider_id, next.expires_at,
                                 next.cursor_hint, next.secret, &error) < 0) {
            mpu_error(j->a->id, "cannot store subscription: %s", error);
            free(error);
        } else {
            /* Stored first, then indexed: push_verify never trusts a
             * subscription a restart would not know. */
            mphost_subs_put(j->a, next.provider_id, next.expires_at, next.cursor_hint,
                            next.secret);
            mpu_info(j->a->id, "push subscription %sed", what);
            if (atomic_load(&j->a->push_reports) == reports) {
                mpd_set_push_state(j->d, j->a->id, "watching");
                mpd_account_set_push_live(j->a, 1);
            }
        }
    } else if (st == MP_SKIP && have == 1) {
        /* The driver has no push for this account (a gmail instance with
         * push: off under a static WEBHOOK kind): it reported its own
         * push state; nothing stored, nothing failed. */
    } else {
        char *state = mpu_asprintf("failed: %s: %s", what, err.text);
        mpd_set_push_state(j->d, j->a->id, state);
        free(state);
        mpd_account_set_push_live(j->a, 0);
        if (st == MP_REAUTH || st == MP_FATAL)
            note_status(j, NULL, st, &err);
    }
    mphost_call_end();
    if (have == 0)
        mps_subscription_clear(&cur);
}

static int wants_backfill(const job_state *j, const mps_folder *f)
{
    if (!f->bootstrapped || f->backfill_done)
        return 0;
    if (j->k.backfill_mode == MP_BACKFILL_FROM_NOW_ON && !f->backfill_requested)
        return 0;
    return 1;
}

/* The safety net under push: a push-live account that has heard nothing
 * for push_silence_hours may have a dead subscription or stream that
 * nobody noticed. Flag it, re-list its folders and delta-sync everything
 * (this run); repeat every silence period while it stays quiet. */
static void check_push_silence(job_state *j)
{
    struct mp_account *a = j->a;
    if (j->k.push_silence_hours == 0 || !a->push_live)
        return;
    int64_t now = mpu_now_ms();
    int64_t last = a->last_push_ms;
    if (a->push_live_since_ms > last)
        last = a->push_live_since_ms;
    if (a->push_silent && a->push_silent_since_ms > last)
        last = a->push_silent_since_ms;
    if (now - last < (int64_t)j->k.push_silence_hours * 3600 * 1000)
        return;
    if (!atomic_exchange(&a->push_silent, 1))
        mpu_warn(a->id, "no push notification for %u hours; full resync",
                 j->k.push_silence_hours);
    a->push_silent_since_ms = now;
    atomic_fetch_add(&j->d->m_push_silences, 1);
    pthread_mutex_lock(&a->lock);
    a->last_folder_list_ms = 0;
    pthread_mutex_unlock(&a->lock);
}

/* Whether a SYNC run is for `folder`: its folder set, or every folder
 * when the set is empty (the timer, a push without folder). */
static int in_job(const mpj_job *job, const char *folder)
{
    if (job->n_folders == 0)
        return 1;
    for (unsigned i = 0; i < job->n_folders; i++)
        if (strcmp(job->folders[i], folder) == 0)
            return 1;
    return 0;
}

/* The provider no longer knows the account cursor: clear it, then reset
 * and bootstrap every folder again (one folder.reset each; stored
 * messages fold in silently, so no message.new flood). */
static void account_resync(job_state *j, const char *why)
{
    char *error = NULL;
    mpu_warn(j->a->id, "account cursor invalid at the provider (%s); resyncing", why);
    if (mps_account_cursor_set(j->s, j->a->id, NULL, &error) < 0) {
        note_store_failure(j, "cannot clear account cursor", error);
        return;
    }
    mps_folder *folders = NULL;
    size_t n = 0;
    if (mps_folders_list(j->s, j->a->id, &folders, &n, &error) < 0) {
        note_store_failure(j, "cannot list folders", error);
        return;
    }
    char reason[600];
    snprintf(reason, sizeof reason, "cursor invalid: %s", why);
    for (size_t i = 0; i < n && !j->stop; i++) {
        mp_error err;
        memset(&err, 0, sizeof err);
        if (!folder_allowed(j->a, folders[i].name))
            continue;
        mp_status st;
        if (mps_folder_reset(j->s, j->a->id, folders[i].name, &error) < 0) {
            st = mp_fail(&err, MP_RETRY, "cannot reset folder: %s", error);
            free(error);
            error = NULL;
        } else {
            st = run_bootstrap(j, folders[i].name, reason, &err);
        }
        if (st != MP_OK)
            note_status(j, folders[i].name, st, &err);
    }
    mps_folders_free(&folders, n);
}

/* One account_delta call: the whole mailbox's changes since the account
 * cursor, in a batch of no folder. */
static void run_account_delta(job_state *j)
{
    char *cursor = NULL, *error = NULL;
    mp_error err;
    memset(&err, 0, sizeof err);
    if (mps_account_cursor_get(j->s, j->a->id, &cursor, &error) < 0) {
        mp_fail(&err, MP_RETRY, "cannot read account cursor: %s", error);
        free(error);
        note_status(j, NULL, MP_RETRY, &err);
        return;
    }
    mp_batch *b = batch_begin(j, NULL, 0, 0);
    mp_status st = j->desc->account_delta(j->a, cursor, b, &err);
    st = mphost_batch_end(&b, st, &err, NULL);
    free(cursor);
    if (st == MP_RESYNC)
        account_resync(j, err.text[0] ? err.text : "no reason given");
    else if (st != MP_OK)
        note_status(j, NULL, st, &err);
}

static void run_sync(job_state *j, const mpj_job *job)
{
    char *error = NULL;
    if (job->reason != NULL && strcmp(job->reason, "schedule") == 0 && j->a->push_live)
        atomic_fetch_add(&j->d->m_reconcile_runs, 1);
    check_push_silence(j);
    if (atomic_exchange(&j->a->probe_wanted, 0) && j->desc->probe != NULL) {
        mp_error err;
        memset(&err, 0, sizeof err);
        mp_status st = j->desc->probe(j->a, &err);
        mphost_call_end();
        if (st != MP_OK && note_status(j, NULL, st, &err))
            return;
    }
    subscription_upkeep(j);
    if (j->stop)
        return;
    refresh_folders(j);
    if (j->stop)
        return;

    mps_folder *folders = NULL;
    size_t n = 0;
    if (mps_folders_list(j->s, j->a->id, &folders, &n, &error) < 0) {
        note_store_failure(j, "cannot list folders", error);
        return;
    }
    int backfill_pending = 0;
    int whole = j->desc->account_delta != NULL;
    for (size_t i = 0; i < n && !j->stop; i++) {
        mps_folder *f = &folders[i];
        if (!folder_allowed(j->a, f->name) || !in_job(job, f->name))
            continue;
        mp_error err;
        memset(&err, 0, sizeof err);
        mp_status st = MP_OK;
        if (!f->bootstrapped)
            st = run_bootstrap(j, f->name, NULL, &err);
        else if (!whole)
            st = run_delta(j, f, &err);
        if (st == MP_OK) {
            j->ok_folders++;
            if (!whole && f->last_error != NULL &&
                mps_folder_set_error(j->s, j->a->id, f->name, NULL, &error) < 0) {
                free(error);
                error = NULL;
            }
            mps_folder now;
            if (mps_folder_get(j->s, j->a->id, f->name, &now, NULL) == 0) {
                backfill_pending |= wants_backfill(j, &now);
                mps_folder_clear(&now);
            }
        } else {
            note_status(j, f->name, st, &err);
        }
    }
    mps_folders_free(&folders, n);
    /* The change log covers every folder: one call, whatever folders the
     * run was for. */
    if (whole && !j->stop)
        run_account_delta(j);
    if (backfill_pending)
        atomic_store(&j->a->backfill_wanted, 1);
}

/* The push hints present when the run starts are lent to the driver
 * (sync_hint) and deleted only after the run succeeded: a failed or
 * crashed run leaves them, and main.c re-triggers accounts with pending
 * hints at start-up. A run for some folders takes those folders' hints
 * (and the account-wide ones when the driver reads the whole mailbox's
 * log); hints of other folders wait for their own run. */
static void run_sync_with_hints(job_state *j, const mpj_job *job)
{
    char *error = NULL;
    mps_push_take take;
    int wide = job->n_folders == 0 || j->desc->account_delta != NULL;
    if (mps_push_hints_read(j->s, j->a->id, (const char *const *)job->folders,
                            job->n_folders, wide, HINTS_PER_RUN, &take, &error) < 0) {
        mpu_warn(j->a->id, "cannot read push hints: %s", error);
        free(error);
        error = NULL;
        memset(&take, 0, sizeof take);
    }
    mphost_hints_lend(j->a, &take);
    run_sync(j, job);
    mphost_hints_return();
    if (!j->failed && !j->stop && mps_push_hints_delete(j->s, &take, &error) < 0) {
        /* Kept: the next run takes them again, harmlessly. */
        mpu_warn(j->a->id, "cannot delete push hints: %s", error);
        free(error);
    }
    if (take.more)
        j->more = 1;
    mps_push_take_clear(&take);
}

static void run_backfill(job_state *j, const mpj_job *job)
{
    char *error = NULL;
    mps_folder *folders = NULL;
    size_t n = 0;
    int64_t deadline = mpu_now_ms() + (int64_t)j->k.job_budget_s * 1000;
    if (mps_folders_list(j->s, j->a->id, &folders, &n, &error) < 0) {
        note_store_failure(j, "cannot list folders", error);
        return;
    }
    for (size_t i = 0; i < n && !j->stop && mpu_now_ms() < deadline; i++) {
        mps_folder *f = &folders[i];
        if (job->folder != NULL && strcmp(job->folder, f->name) != 0)
            continue;
        if (!folder_allowed(j->a, f->name) || !wants_backfill(j, f))
            continue;
        mps_folder cur = *f;
        int own = 0;
        while (!j->stop && mpu_now_ms() < deadline) {
            uint32_t max = j->k.backfill_batch_size;
            int capped = j->k.max_per_folder > 0 && j->k.backfill_mode != MP_BACKFILL_FULL;
            if (capped && cur.messages >= (int64_t)j->k.max_per_folder)
                max = 0;
            else if (capped && (int64_t)max > (int64_t)j->k.max_per_folder - cur.messages)
                max = (uint32_t)(j->k.max_per_folder - cur.messages);
            mp_batch *b = batch_begin(j, f->name, 1, deadline);
            mphost_batch_stats stats;
            mp_error err;
            memset(&err, 0, sizeof err);
            mp_status st;
            if (max == 0 || j->desc->backfill == NULL) {
                /* Nothing more to load: the cap is reached or the driver
                 * loads all history at bootstrap. */
                st = mphost_batch_commit_now(b, cur.backfill_pos ? cur.backfill_pos : "", 1,
                                             &err);
            } else {
                st = j->desc->backfill(j->a, f->name, cur.backfill_pos, max, b, &err);
            }
            st = mphost_batch_end(&b, st, &err, &stats);
            if (st != MP_OK) {
                note_status(j, f->name, st, &err);
                break;
            }
            mps_folder next;
            if (mps_folder_get(j->s, j->a->id, f->name, &next, NULL) != 0)
                break;
            int progressed = stats.changes > 0 ||
                             (next.backfill_pos != NULL) != (cur.backfill_pos != NULL) ||
                             (next.backfill_pos != NULL &&
                              strcmp(next.backfill_pos, cur.backfill_pos) != 0);
            if (own)
                mps_folder_clear(&cur);
            cur = next;
            own = 1;
            if (stats.backfill_done_seen || cur.backfill_done || !progressed)
                break;
        }
        if (own)
            mps_folder_clear(&cur);
    }
    mps_folders_free(&folders, n);
}

/* Is any folder still owed history? Decides whether backfill stays on the
 * schedule or parks until triggered. */
static int backfill_remaining(job_state *j)
{
    mps_folder *folders = NULL;
    size_t n = 0;
    char *error = NULL;
    int remaining = 0;
    if (mps_folders_list(j->s, j->a->id, &folders, &n, &error) < 0) {
        free(error);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (folder_allowed(j->a, folders[i].name) && wants_backfill(j, &folders[i]))
            remaining = 1;
    mps_folders_free(&folders, n);
    return remaining;
}

void mpd_run_job(const mpj_job *job, mpj_result *result, void *arg)
{
    mpd *d = arg;
    result->outcome = MPJ_DONE;
    result->retry_after_ms = 0;
    struct mp_account *a = mpd_account_get(d, job->account);
    if (a == NULL) {
        result->outcome = MPJ_STOP;
        return;
    }
    if (!a->open || a->stopped || a->removed) {
        result->outcome = MPJ_STOP;
        mpd_account_unref(a);
        return;
    }
    job_state j;
    memset(&j, 0, sizeof j);
    j.d = d;
    j.a = a;
    j.desc = a->inst->desc;
    j.s = mpd_store(d);
    j.k = mpd_knobs_get(d);
    if (j.s == NULL) {
        result->outcome = MPJ_FAILED;
        mpd_account_unref(a);
        return;
    }
    int64_t started = mpu_mono_ms();
    if (job->kind == MPJ_SYNC) {
        atomic_fetch_add(&d->m_sync_runs, 1);
        run_sync_with_hints(&j, job);
    } else {
        atomic_fetch_add(&d->m_backfill_runs, 1);
        run_backfill(&j, job);
    }
    if (j.stop) {
        a->stopped = 1;
        result->outcome = MPJ_STOP;
    } else if (j.failed) {
        atomic_fetch_add(&d->m_sync_failures, 1);
        result->outcome = MPJ_FAILED;
        result->retry_after_ms = j.retry_after_ms;
        mpd_set_account_status(d, a->id, "error", j.first_error);
    } else {
        if (job->kind == MPJ_SYNC) {
            char *error = NULL;
            int64_t now = mpu_now_ms();
            if (mps_account_touch_sync(j.s, a->id, now, &error) < 0)
                free(error);
            else
                mpd_account_view_synced(a, now);
        }
        mpd_set_account_status(d, a->id, "ok", NULL);
        if (job->kind == MPJ_BACKFILL && !backfill_remaining(&j))
            result->outcome = MPJ_STOP;
        else if (j.more)
            result->outcome = MPJ_MORE;
    }
    mpu_debug(a->id, "%s run took %lld ms", job->kind == MPJ_SYNC ? "sync" : "backfill",
              (long long)(mpu_mono_ms() - started));
    mpd_account_unref(a);
}

/* Loop thread. A sync that found history owed wakes a parked backfill; a
 * backfill already on the schedule keeps its cadence. */
void mpd_job_done(const mpj_job *job, const mpj_result *result, void *arg)
{
    mpd *d = arg;
    (void)result;
    struct mp_account *a = mpd_account_peek(d, job->account);
    if (a == NULL || !atomic_exchange(&a->backfill_wanted, 0))
        return;
    mpj_kind_info info;
    uint64_t delay = (uint64_t)d->settings->schedule.backfill_interval * 1000u;
    if (delay > BACKFILL_FIRST_DELAY_MS)
        delay = BACKFILL_FIRST_DELAY_MS;
    if (mpj_account_info(d->sched, a->id, MPJ_BACKFILL, &info) == 0 && !info.running &&
        info.next_due_ms == 0)
        mpj_schedule_in(d->sched, a->id, MPJ_BACKFILL, delay);
}

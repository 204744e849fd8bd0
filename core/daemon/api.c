/* The daemon's data API (see api.h): JSON views of the registry, the
 * scheduler and the store, plus the triggers and the webhook entry. */
#include "daemon/api.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/cluster.h"
#include "daemon/daemon.h"
#include "events/events.h"
#include "webhook/webhook.h"
#include "bus/bus.h"
#include "daemon/prefetch.h"
#include "util/log.h"
#include "util/json.h"
#include "util/util.h"

static const char *const role_names[] = {"",     "inbox",   "sent",    "drafts", "junk",
                                         "trash", "archive", "all",     "flagged"};

static void fail(int *status_r, char **error_r, int status, const char *fmt, ...)
    MP_PRINTF(4, 5);
static void fail(int *status_r, char **error_r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (error_r != NULL)
        *error_r = mpu_vasprintf(fmt, ap);
    va_end(ap);
    if (status_r != NULL)
        *status_r = status;
}

/* ---- status ---- */

json_t *mpd_api_health(mpd *d)
{
    return json_pack("{s:s, s:s, s:I}", "status", "ok", "version", MP_VERSION, "uptime_s",
                     (json_int_t)((mpu_now_ms() - d->started_ms) / 1000));
}

static json_t *sched_json(mpd *d, const char *account, mpj_kind kind)
{
    mpj_kind_info info;
    if (mpj_account_info(d->sched, account, kind, &info) < 0)
        return json_null();
    return json_pack("{s:b, s:b, s:I, s:I, s:I, s:o, s:o, s:I}", "running", info.running,
                     "rerun", info.rerun, "runs", (json_int_t)info.runs, "triggers",
                     (json_int_t)info.triggers, "failures", (json_int_t)info.failures,
                     "next_due", mpu_json_time(info.next_due_ms), "last_run",
                     mpu_json_time(info.last_run_ms), "last_duration_ms",
                     (json_int_t)info.last_duration_ms);
}

/* Body cache and warmer: {"queue","dropped","bodies","bytes","hits","misses",
 * "hit_ratio" (null before the first read),"prefetch":{"runs","fetched",
 * "failed","skipped"}}. */
static json_t *cache_json(mpd *d)
{
    mpd_prefetch_stats pf;
    mpd_prefetch_stats_get(d, &pf);
    mps_stats ss;
    char *error = NULL;
    if (mps_stats_get(d->store, &ss, &error) < 0) {
        free(error);
        memset(&ss, 0, sizeof ss);
    }
    unsigned long long hits = atomic_load(&d->m_fetch_hits);
    unsigned long long misses = atomic_load(&d->m_fetch_misses);
    json_t *ratio = hits + misses > 0 ? json_real((double)hits / (double)(hits + misses))
                                      : json_null();
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:{s:I, s:I, s:I, s:I}}", "queue",
                     (json_int_t)pf.queued, "dropped", (json_int_t)pf.dropped, "bodies",
                     (json_int_t)ss.bodies, "bytes", (json_int_t)ss.body_bytes, "hits",
                     (json_int_t)hits, "misses", (json_int_t)misses, "hit_ratio", ratio,
                     "prefetch", "runs", (json_int_t)pf.runs, "fetched",
                     (json_int_t)pf.fetched, "failed", (json_int_t)pf.failed, "skipped",
                     (json_int_t)pf.skipped);
}

json_t *mpd_api_status(mpd *d)
{
    json_t *drivers = json_array();
    size_t accounts = 0;
    for (size_t i = 0; i < d->n_instances; i++) {
        mp_instance *inst = d->instances[i];
        accounts += inst->n_accounts;
        json_t *abi = inst->desc != NULL
                          ? json_sprintf("%u.%u", inst->desc->abi_major, inst->desc->abi_minor)
                          : json_null();
        json_array_append_new(
            drivers, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "name",
                               inst->driver_name, "instance", inst->name, "file", inst->file,
                               "status", inst->status, "error", mpu_json_str(inst->error),
                               "abi", abi, "accounts", (json_int_t)inst->n_accounts));
    }
    mpj_stats st;
    mpj_stats_get(d->sched, &st);
    json_t *sched = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "workers",
                              (json_int_t)st.workers, "busy", (json_int_t)st.busy,
                              "queued_high", (json_int_t)st.queued_high, "queued_low",
                              (json_int_t)st.queued_low, "accounts", (json_int_t)st.accounts,
                              "jobs_run", (json_int_t)st.jobs_run, "jobs_failed",
                              (json_int_t)st.jobs_failed, "triggers_coalesced",
                              (json_int_t)st.triggers_coalesced);
    json_t *o = json_pack(
        "{s:s, s:I, s:s, s:s, s:o, s:I, s:o, s:{s:I}}", "version", MP_VERSION, "uptime_s",
        (json_int_t)((mpu_now_ms() - d->started_ms) / 1000), "state_dir",
        d->settings->state_dir, "config",
        d->config_path ? d->config_path : "<embedded default>", "drivers", drivers,
        "accounts", (json_int_t)accounts, "scheduler", sched, "events", "last_seq",
        (json_int_t)mpd_api_last_seq(d));
    json_t *ev = json_object_get(o, "events");
    json_object_set_new(ev, "epoch", json_integer(mpd_api_epoch(d)));
    json_object_set_new(ev, "retained_after", json_integer(mpd_api_events_horizon(d)));
    json_object_set_new(o, "cache", cache_json(d));
    json_object_set_new(o, "bus", mpb_status_json(d->bus));
    if (d->cluster != NULL) {
        json_t *c = mpd_cluster_status(d->cluster);
        json_object_set_new(c, "standby", json_integer((json_int_t)mpd_registry_standby_count(d)));
        json_object_set_new(o, "cluster", c);
    }
    return o;
}

/* ---- accounts ---- */

/* The list reads memory only (mpd_account_view): the store holds the
 * folders and message counts, which GET /v1/accounts/{id} answers. */

static int by_id(const void *x, const void *y)
{
    const struct mp_account *const *a = x;
    const struct mp_account *const *b = y;
    return strcmp((*a)->id, (*b)->id);
}

static json_t *account_item(struct mp_account *a, const mpd_account_view_t *v,
                            const char *push, size_t push_len)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s%, s:b, s:o, s:o}", "id", a->id,
                     "instance", a->inst->name, "driver", a->inst->driver_name, "status",
                     v->status, "last_error", mpu_json_str(v->error), "push_state",
                     mpu_json_str(v->push_state), "push", push, push_len, "push_live",
                     (int)atomic_load(&a->push_live), "last_sync",
                     mpu_json_time(v->last_sync_ms), "last_push",
                     mpu_json_time(v->last_push_ms));
}

json_t *mpd_api_accounts(mpd *d, const mpd_accounts_query *q)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n_instances; i++)
        n += d->instances[i]->n_accounts;
    struct mp_account **all = mpu_calloc(n + 1, sizeof *all);
    size_t k = 0;
    for (size_t i = 0; i < d->n_instances; i++)
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++)
            all[k++] = d->instances[i]->accounts[j];
    /* Ids are unique: ordered by id, `after` resumes exactly where the
     * last page ended even when accounts come and go between pages. */
    qsort(all, n, sizeof *all, by_id);

    size_t limit = q->limit > 0 ? q->limit : MPD_ACCOUNTS_PAGE;
    json_t *list = json_array();
    json_t *by_status = json_object();
    json_t *by_push = json_object();
    json_int_t total = 0;
    const char *next_after = NULL;
    int more = 0;
    /* Every account is counted (copies into buffers, no allocation);
     * only the page's accounts are read in full. */
    for (size_t i = 0; i < n; i++) {
        struct mp_account *a = all[i];
        char status[MPD_CLASS_MAX], push[MPD_CLASS_MAX];
        mpd_account_classes(a, status, push);
        mpd_count_in(by_status, status, strlen(status));
        mpd_count_in(by_push, push, strlen(push));
        int match = (q->status == NULL || strcmp(q->status, status) == 0) &&
                    (q->push == NULL || strcmp(q->push, push) == 0);
        if (!match)
            continue;
        total++;
        if (q->after != NULL && strcmp(a->id, q->after) <= 0)
            continue;
        if (json_array_size(list) >= limit) {
            more = 1;
            continue;
        }
        mpd_account_view_t v;
        mpd_account_view(a, &v);
        const char *push_text = v.push_state != NULL ? v.push_state : "none";
        size_t push_len = v.push_state != NULL ? mpd_push_class(v.push_state) : 4;
        json_array_append_new(list, account_item(a, &v, push_text, push_len));
        next_after = a->id;
        mpd_account_view_clear(&v);
    }
    json_t *o = json_pack("{s:o, s:I, s:I, s:o, s:{s:I, s:o, s:o}}", "accounts", list, "total",
                          total, "limit", (json_int_t)limit, "next_after",
                          mpu_json_str(more ? next_after : NULL), "counts", "accounts",
                          (json_int_t)n, "status", by_status, "push", by_push);
    free(all);
    return o;
}

/* A status the store could not record replaces the stored one. */
static void status_overlay(struct mp_account *a, mps_account_row *row)
{
    char *status = NULL, *error = NULL;
    if (!mpd_account_unrecorded(a, &status, &error))
        return;
    free(row->status);
    free(row->last_error);
    row->status = status;
    row->last_error = error;
}

static json_t *backfill_json(mpd *d, const mps_folder *f)
{
    const char *status;
    mp_backfill_mode mode = d->settings->backfill.mode;
    uint32_t cap = d->settings->backfill.max_per_folder;
    mpj_kind_info info;
    int running = mpj_account_info(d->sched, f->account, MPJ_BACKFILL, &info) == 0 &&
                  info.running;
    /* "off": from-now-on folders whose history nobody asked for, whether or
     * not the driver marked its empty bootstrap as complete. */
    if (!f->bootstrapped)
        status = "pending";
    else if (mode == MP_BACKFILL_FROM_NOW_ON && !f->backfill_requested &&
             f->synced_count == 0)
        status = "off";
    else if (f->backfill_done)
        status = "done";
    else if (mode == MP_BACKFILL_FROM_NOW_ON && !f->backfill_requested)
        status = "off";
    else
        status = running ? "running" : "pending";
    json_t *target = (mode == MP_BACKFILL_FULL || cap == 0) ? json_null()
                                                            : json_integer((json_int_t)cap);
    return json_pack("{s:s, s:I, s:o, s:o, s:b}", "status", status, "loaded",
                     (json_int_t)f->synced_count, "target", target, "position",
                     mpu_json_str(f->backfill_pos), "requested", f->backfill_requested);
}

json_t *mpd_api_account(mpd *d, const char *id, int *status_r, char **error_r)
{
    struct mp_account *a = mpd_account_peek(d, id);
    if (a == NULL) {
        fail(status_r, error_r, 404, "no account '%s'", id);
        return NULL;
    }
    mps_account_row row;
    memset(&row, 0, sizeof row);
    char *error = NULL;
    if (mps_account_get(d->store, id, &row, &error) != 0)
        free(error);
    status_overlay(a, &row);
    json_t *profile = NULL;
    if (row.profile_json != NULL)
        profile = json_loads(row.profile_json, 0, NULL);
    if (profile == NULL)
        profile = json_null();

    json_t *sub = json_null();
    mps_subscription s;
    error = NULL;
    if (mps_subscription_get(d->store, id, &s, &error) == 0) {
        json_decref(sub);
        sub = json_pack("{s:o, s:I, s:o, s:o, s:o}", "provider_id", mpu_json_str(s.provider_id),
                        "expires_at", (json_int_t)s.expires_at, "cursor_hint",
                        mpu_json_str(s.cursor_hint), "renewed", mpu_json_time(s.renewed_ms),
                        "last_notification", mpu_json_time(s.last_notification_ms));
        /* Whether notifications are checked against a stored secret; the
         * secret itself never leaves the store and the host's index. */
        json_object_set_new(sub, "has_secret", json_boolean(s.secret != NULL));
        mps_subscription_clear(&s);
    } else {
        free(error);
    }

    json_t *folders = json_array();
    mps_folder *list = NULL;
    size_t n = 0;
    error = NULL;
    if (mps_folders_list(d->store, id, &list, &n, &error) == 0) {
        for (size_t i = 0; i < n; i++) {
            mps_folder *f = &list[i];
            int role = f->role >= 0 && f->role <= 8 ? f->role : 0;
            json_array_append_new(
                folders,
                json_pack("{s:s, s:o, s:I, s:I, s:b, s:o, s:o, s:I, s:o, s:o}", "name",
                          f->name, "role", role ? json_string(role_names[role]) : json_null(),
                          "messages", (json_int_t)f->messages, "bodies",
                          (json_int_t)f->bodies, "bootstrapped", f->bootstrapped, "cursor",
                          mpu_json_str(f->cursor), "backfill", backfill_json(d, f), "resets",
                          (json_int_t)f->resets, "last_sync", mpu_json_time(f->last_sync_ms),
                          "last_error", mpu_json_str(f->last_error)));
        }
        mps_folders_free(&list, n);
    } else {
        free(error);
    }
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:b, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
        id, "instance", a->inst->name, "driver", a->inst->driver_name, "status",
        row.status ? row.status : "pending", "last_error", mpu_json_str(row.last_error),
        "push_state", mpu_json_str(row.push_state), "profile", profile, "poll_interval_s",
        (json_int_t)a->poll_interval_s, "push_live", (int)a->push_live, "last_sync",
        mpu_json_time(row.last_sync_ms), "last_push", mpu_json_time(row.last_push_ms), "sync",
        sched_json(d, id, MPJ_SYNC), "backfill", sched_json(d, id, MPJ_BACKFILL),
        "subscription", sub, "folders", folders);
    /* The safety net under push, visible: the effective poll cadence (the
     * reconciliation sweep while push is live) and the silence flag. */
    uint32_t every = a->poll_interval_s;
    if (a->push_live && d->settings->schedule.reconcile_interval > every)
        every = d->settings->schedule.reconcile_interval;
    json_object_set_new(o, "sync_interval_s", json_integer(every));
    json_object_set_new(o, "reconciling", json_boolean(a->push_live));
    json_object_set_new(o, "push_silent", json_boolean(a->push_silent));
    json_object_set_new(o, "push_silent_since",
                        a->push_silent ? mpu_json_time(a->push_silent_since_ms) : json_null());
    mps_account_row_clear(&row);
    return o;
}

/* ---- messages ---- */

static json_t *flags_json(const char *flags)
{
    json_t *arr = json_array();
    if (flags == NULL)
        return arr;
    const char *p = flags;
    while (*p != '\0') {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len > 0)
            json_array_append_new(arr, json_stringn(p, len));
        p += len;
    }
    return arr;
}

static json_t *message_json(const mps_message *m)
{
    json_t *date = m->date > 0 ? mpu_json_time(m->date * 1000) : json_null();
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:b}", "id", m->id,
        "account", m->account, "folder", m->folder ? m->folder : "", "uid",
        m->uid ? json_integer(m->uid) : json_null(), "message_id", mpu_json_str(m->message_id),
        "subject", mpu_json_str(m->subject), "from", mpu_json_str(m->from), "to",
        mpu_json_str(m->to), "date", date, "size", (json_int_t)m->size, "flags",
        flags_json(m->flags), "thread_id", mpu_json_str(m->thread_id), "cached", m->has_body);
    /* A subject that is not valid UTF-8 makes json_pack fail; fall back to
     * the pointer fields rather than dropping the message. */
    if (o == NULL)
        o = json_pack("{s:s, s:s, s:s, s:n, s:b}", "id", m->id, "account", m->account,
                      "folder", m->folder ? m->folder : "", "subject", "cached", m->has_body);
    /* Every folder it is in (labels), primary first; only a single message
     * read carries them. */
    if (o != NULL && m->folders != NULL) {
        json_t *folders = json_array();
        for (size_t i = 0; i < m->n_folders; i++)
            json_array_append_new(folders, mpu_json_str(m->folders[i]));
        json_object_set_new(o, "folders", folders);
    }
    return o;
}

json_t *mpd_api_messages(mpd *d, const char *account, const char *folder,
                         const char *before, size_t limit, int *status_r, char **error_r)
{
    if (mpd_account_peek(d, account) == NULL) {
        fail(status_r, error_r, 404, "no account '%s'", account);
        return NULL;
    }
    if (limit == 0)
        limit = d->settings->sync.list_page_size;
    mps_message *list = NULL;
    size_t n = 0;
    char *error = NULL;
    if (mps_messages_list(d->store, account, folder, before, limit, &list, &n, &error) < 0) {
        fail(status_r, error_r, 400, "%s", error);
        free(error);
        return NULL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, message_json(&list[i]));
    /* What a reader just saw is what they open next: warm it. */
    mpd_prefetch_listed(d, list, n);
    json_t *next = n == limit && n > 0 ? json_string(list[n - 1].id) : json_null();
    mps_messages_free(&list, n);
    return json_pack("{s:o, s:o}", "messages", arr, "next_before", next);
}

json_t *mpd_api_message(mpd *d, const char *id, int *status_r, char **error_r)
{
    mps_message m;
    char *error = NULL;
    int rc = mps_message_get(d->store, id, &m, &error);
    if (rc != 0 || m.deleted) {
        if (rc == 0)
            mps_message_clear(&m);
        fail(status_r, error_r, rc < 0 ? 500 : 404,
             rc < 0 ? "store error: %s" : "no message '%s'", rc < 0 ? error : id);
        free(error);
        return NULL;
    }
    json_t *o = message_json(&m);
    mps_message_clear(&m);
    return o;
}

/* ---- raw messages: cache, else the driver on a worker ---- */

void mpd_api_message_raw(mpd *d, const char *id, mpd_raw_cb cb, void *arg)
{
    mps_message m;
    char *error = NULL;
    int rc = mps_message_get(d->store, id, &m, &error);
    if (rc != 0) {
        cb(rc < 0 ? 500 : 404, NULL, 0, rc < 0 ? error : "no such message", arg);
        free(error);
        return;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    rc = mps_body_get(d->store, id, &data, &len, &error);
    if (rc == 0) {
        atomic_fetch_add(&d->m_fetch_hits, 1);
        cb(200, data, len, NULL, arg);
        free(data);
        mps_message_clear(&m);
        return;
    }
    free(error);
    atomic_fetch_add(&d->m_fetch_misses, 1);
    /* Never a worker of its own: queued behind the account's fetch. */
    mpd_fetch_on_demand(d, &m, cb, arg);
}

/* ---- triggers ---- */

int mpd_api_sync(mpd *d, const char *account, char **error_r)
{
    struct mp_account *a = mpd_account_peek(d, account);
    if (a == NULL) {
        *error_r = mpu_asprintf("no account '%s'", account);
        return 404;
    }
    if (!a->open) {
        *error_r = mpu_asprintf("account '%s' is not active (see its status)", account);
        return 409;
    }
    if (a->stopped) {
        /* An explicit request is how an admin says "try again now". */
        a->stopped = 0;
    }
    mpj_trigger(d->sched, account, MPJ_SYNC, NULL, "api");
    return 202;
}

int mpd_api_backfill(mpd *d, const char *account, const char *folder, char **error_r)
{
    struct mp_account *a = mpd_account_peek(d, account);
    if (a == NULL) {
        *error_r = mpu_asprintf("no account '%s'", account);
        return 404;
    }
    if (!a->open) {
        *error_r = mpu_asprintf("account '%s' is not active (see its status)", account);
        return 409;
    }
    char *error = NULL;
    int rc = mps_folder_request_backfill(d->store, account, folder, &error);
    if (rc != 0) {
        *error_r = rc < 0 ? error : mpu_asprintf("account '%s' has no folder '%s'", account,
                                                 folder);
        if (rc > 0)
            free(error);
        return rc < 0 ? 500 : 404;
    }
    mpj_trigger(d->sched, account, MPJ_BACKFILL, folder, "api");
    return 202;
}

int mpd_api_probe(mpd *d, const char *account, char **error_r)
{
    struct mp_account *a = mpd_account_peek(d, account);
    if (a == NULL) {
        *error_r = mpu_asprintf("no account '%s'", account);
        return 404;
    }
    if (!a->open) {
        *error_r = mpu_asprintf("account '%s' is not active (see its status)", account);
        return 409;
    }
    if (a->inst->desc->probe == NULL) {
        *error_r = mpu_asprintf("driver '%s' has nothing to probe", a->inst->driver_name);
        return 409;
    }
    atomic_store(&a->probe_wanted, 1);
    mpj_trigger(d->sched, account, MPJ_SYNC, NULL, "probe");
    return 202;
}

/* ---- webhooks ---- */

void mpd_api_push(mpd *d, const char *instance, const char *subpath, const char *query,
                  mpd_header_fn header, void *header_ctx, const uint8_t *body, size_t len,
                  int *status_r, char **content_type_r, char **body_r, size_t *body_len_r)
{
    mp_instance *inst = mpd_instance_peek(d, instance);
    if (inst == NULL)
        atomic_fetch_add(&d->m_push_rejected, 1); /* the host counts the rest */
    mphost_push_answer a;
    mphost_push_deliver(inst, subpath, query, header, header_ctx, body, len, &a);
    *status_r = a.status;
    *content_type_r = a.content_type;
    *body_r = a.body;
    *body_len_r = a.len;
}

/* ---- events ---- */

json_t *mpd_api_events(mpd *d, int64_t after, size_t limit, const char *const *types,
                       const char *const *accounts)
{
    mps_event *list = NULL;
    size_t n = 0;
    char *error = NULL;
    json_t *arr = json_array();
    if (mps_events_after(d->store, after, limit, types, accounts, &list, &n, &error) < 0) {
        mpu_error("events", "cannot read the outbox: %s", error);
        free(error);
        json_decref(arr);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, mpe_event_json(&list[i]));
    mps_events_free(&list, n);
    return arr;
}

int64_t mpd_api_last_seq(mpd *d)
{
    return mpe_last_seq(d->events);
}

int64_t mpd_api_epoch(mpd *d)
{
    return mpe_epoch(d->events);
}

int mpd_api_events_resume(mpd *d, int64_t epoch, int64_t seq, int64_t *after_r)
{
    char *error = NULL;
    if (mpe_resume(d->events, d->store, epoch, seq, after_r, &error) < 0) {
        mpu_error("events", "cannot read the epochs: %s", error);
        free(error);
        return -1;
    }
    return 0;
}

int64_t mpd_api_events_horizon(mpd *d)
{
    return mpe_horizon(d->events);
}

/* The API's callback type is the module's: the HTTP layer sees only
 * daemon/api.h. */
void *mpd_events_watch(mpd *d, mpd_events_cb cb, void *arg)
{
    return mpe_watch_add(d->events, cb, arg);
}

void mpd_events_unwatch(mpd *d, void *handle)
{
    mpe_unwatch(d->events, handle);
}

char *mpd_api_metrics(mpd *d)
{
    char *core = mpd_metrics_text(d);
    char *hooks = mpw_metrics_text(d->webhooks);
    char *bus = mpb_metrics_text(d->bus);
    char *text = mpu_asprintf("%s%s%s", core != NULL ? core : "", hooks, bus);
    free(core);
    free(hooks);
    free(bus);
    return text;
}

/* ---- outbound webhooks ---- */

json_t *mpd_api_webhooks(mpd *d)
{
    return mpw_status_json(d->webhooks);
}

json_t *mpd_api_webhook(mpd *d, const char *name, int *status_r, char **error_r)
{
    json_t *o = mpw_endpoint_json(d->webhooks, name);
    if (o == NULL)
        fail(status_r, error_r, 404, "no webhook endpoint '%s'", name);
    return o;
}

json_t *mpd_api_webhook_replay(mpd *d, const char *name, int64_t from, int *status_r,
                               char **error_r)
{
    int64_t count = 0;
    int status = mpw_replay(d->webhooks, name, from, &count, error_r);
    if (status != 202) {
        *status_r = status;
        return NULL;
    }
    return json_pack("{s:s, s:I}", "endpoint", name, "queued", (json_int_t)count);
}

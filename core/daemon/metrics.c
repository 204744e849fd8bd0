/* Prometheus text exposition of the daemon's counters and gauges. */
#include "daemon/daemon.h"
#include "daemon/prefetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "util/fdlimit.h"
#include "util/util.h"

typedef struct textbuf {
    char *data;
    size_t len, cap;
} textbuf;

static void put(textbuf *b, const char *fmt, ...) MP_PRINTF(2, 3);
static void put(textbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = mpu_vasprintf(fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = mpu_realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, line, n + 1);
    b->len += n;
    free(line);
}

static void metric(textbuf *b, const char *name, const char *type, const char *help,
                   unsigned long long value)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, value);
}

/* Label values come from config (account ids are restricted to a safe
 * character set by the config loader), escape anyway. */
static void label_escape(const char *in, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = in; *p != '\0' && o + 3 < size; p++) {
        if (*p == '"' || *p == '\\' || *p == '\n') {
            out[o++] = '\\';
            out[o++] = *p == '\n' ? 'n' : *p;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* The body cache's hit ratio and the warmer's queue and counters. */
static void cache_metrics(textbuf *b, mpd *d)
{
    unsigned long long hits = atomic_load(&d->m_fetch_hits);
    unsigned long long misses = atomic_load(&d->m_fetch_misses);
    put(b, "# HELP mailpulse_body_cache_hit_ratio Raw reads served from cache / all raw "
           "reads (0 before the first).\n# TYPE mailpulse_body_cache_hit_ratio gauge\n"
           "mailpulse_body_cache_hit_ratio %.6f\n",
        hits + misses > 0 ? (double)hits / (double)(hits + misses) : 0.0);
    mpd_prefetch_stats pf;
    mpd_prefetch_stats_get(d, &pf);
    metric(b, "mailpulse_prefetch_queue", "gauge", "Bodies waiting to be warmed.",
           pf.queued);
    metric(b, "mailpulse_prefetch_dropped_total", "counter",
           "Warm queue entries dropped because the queue was full.", pf.dropped);
    metric(b, "mailpulse_prefetch_runs_total", "counter", "Cache warming runs.", pf.runs);
    metric(b, "mailpulse_prefetch_fetched_total", "counter",
           "Bodies fetched into the cache by the warmer.", pf.fetched);
    metric(b, "mailpulse_prefetch_failed_total", "counter",
           "Warming fetches that failed (read on demand instead).", pf.failed);
    metric(b, "mailpulse_prefetch_skipped_total", "counter",
           "Queued bodies not fetched: already cached, deleted or gone.", pf.skipped);
}

static void listener_metric(textbuf *b, const char *name, const char *type,
                            const char *help, unsigned long long tcp,
                            unsigned long long local, unsigned long long push)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s{listener=\"tcp\"} %llu\n"
           "%s{listener=\"unix\"} %llu\n%s{listener=\"push\"} %llu\n",
        name, help, name, type, name, tcp, name, local, name, push);
}

/* The API and push listeners' connection counters (core/http/conn.c),
 * read on the loop thread, which serves /metrics. */
static void http_metrics(textbuf *b, mpd *d)
{
    mph_stats st;
    mph_get_stats(d->http, &st);
    listener_metric(b, "mailpulse_http_connections", "gauge",
                    "HTTP connections open, per listener.", st.tcp.open, st.local.open,
                    st.push.open);
    listener_metric(b, "mailpulse_http_accepted_total", "counter",
                    "HTTP connections accepted.", st.tcp.accepted, st.local.accepted,
                    st.push.accepted);
    listener_metric(b, "mailpulse_http_evicted_total", "counter",
                    "HTTP connections closed to make room (connection caps, descriptors).",
                    st.tcp.evicted, st.local.evicted, st.push.evicted);
    listener_metric(b, "mailpulse_http_timed_out_total", "counter",
                    "HTTP connections closed by the request or idle deadline.",
                    st.tcp.timed_out, st.local.timed_out, st.push.timed_out);
    listener_metric(b, "mailpulse_http_accept_errors_total", "counter",
                    "accept() failures on the HTTP listeners (each pauses accepting).",
                    st.tcp.accept_errors, st.local.accept_errors, st.push.accept_errors);
    metric(b, "mailpulse_push_rate_limited_total", "counter",
           "Requests the push listener answered 429 (rate limit).", st.push.rate_limited);
}

/* Push events a driver counts itself (Graph's lifecycle notifications),
 * published in its account profile as {"push_events": {"<event>": n}}:
 * one counter per account and event. Only integer members count. The
 * profile lives in the store: a read per account, hence only with
 * http.metrics_per_account. */
static void push_event_counts(mpd *d, textbuf *b)
{
    int head = 0;
    char *error = NULL;
    for (size_t i = 0; i < d->n_instances; i++) {
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++) {
            struct mp_account *a = d->instances[i]->accounts[j];
            mps_account_row row;
            if (mps_account_get(d->store, a->id, &row, &error) != 0) {
                free(error);
                error = NULL;
                continue;
            }
            json_t *prof = row.profile_json != NULL ? json_loads(row.profile_json, 0, NULL)
                                                    : NULL;
            mps_account_row_clear(&row);
            json_t *events = json_object_get(prof, "push_events");
            const char *name;
            json_t *v;
            char id[200], ev[200];
            label_escape(a->id, id, sizeof id);
            json_object_foreach(events, name, v) {
                if (!json_is_integer(v))
                    continue;
                if (!head) {
                    put(b, "# HELP mailpulse_account_push_events_total Push events a driver"
                           " counted (e.g. Graph lifecycle notifications).\n"
                           "# TYPE mailpulse_account_push_events_total counter\n");
                    head = 1;
                }
                label_escape(name, ev, sizeof ev);
                put(b, "mailpulse_account_push_events_total{account=\"%s\",event=\"%s\"} %lld\n",
                    id, ev, (long long)json_integer_value(v));
            }
            json_decref(prof);
        }
    }
}

/* One gauge with a label per key of `counts` ({"<value>": N}). */
static void labelled_counts(textbuf *b, const char *name, const char *label,
                            const char *help, json_t *counts)
{
    put(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    const char *key;
    json_t *v;
    char esc[200];
    json_object_foreach(counts, key, v) {
        label_escape(key, esc, sizeof esc);
        put(b, "%s{%s=\"%s\"} %lld\n", name, label, esc, (long long)json_integer_value(v));
    }
}

/* Accounts by status and by push class, from memory (mpd_account_view):
 * the default, whose size does not grow with the number of accounts. */
static void account_totals(textbuf *b, mpd *d)
{
    json_t *by_status = json_object(), *by_push = json_object();
    unsigned long long n = 0, live = 0, silent = 0;
    for (size_t i = 0; i < d->n_instances; i++) {
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++) {
            struct mp_account *a = d->instances[i]->accounts[j];
            char status[MPD_CLASS_MAX], push[MPD_CLASS_MAX];
            mpd_account_classes(a, status, push);
            mpd_count_in(by_status, status, strlen(status));
            mpd_count_in(by_push, push, strlen(push));
            n++;
            if (atomic_load(&a->push_live)) {
                live++;
                silent += atomic_load(&a->push_silent) != 0;
            }
        }
    }
    metric(b, "mailpulse_accounts_total", "gauge", "Configured accounts.", n);
    labelled_counts(b, "mailpulse_accounts", "status", "Accounts by status.", by_status);
    labelled_counts(b, "mailpulse_accounts_push", "push",
                    "Accounts by push state (its leading word; none: not recorded).",
                    by_push);
    metric(b, "mailpulse_accounts_push_live", "gauge",
           "Accounts whose push is live (polling is only the reconciliation sweep).", live);
    metric(b, "mailpulse_accounts_push_silent", "gauge",
           "Push-live accounts silent longer than push_silence_hours (flagged).", silent);
    json_decref(by_status);
    json_decref(by_push);
}

/* The series per account (http.metrics_per_account), from memory. */
static void account_series(textbuf *b, mpd *d)
{
    put(b, "# HELP mailpulse_account_up 1 when the account's last sync succeeded.\n"
           "# TYPE mailpulse_account_up gauge\n");
    for (size_t i = 0; i < d->n_instances; i++) {
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++) {
            struct mp_account *a = d->instances[i]->accounts[j];
            mpd_account_view_t v;
            mpd_account_view(a, &v);
            char id[200];
            label_escape(a->id, id, sizeof id);
            put(b, "mailpulse_account_up{account=\"%s\"} %d\n", id,
                strcmp(v.status, "ok") == 0);
            mpd_account_view_clear(&v);
        }
    }
    put(b, "# HELP mailpulse_account_push State of push per account: 0 off or polling, "
           "1 live (reconciliation sweep), 2 live but silent too long (flagged).\n"
           "# TYPE mailpulse_account_push gauge\n");
    for (size_t i = 0; i < d->n_instances; i++) {
        for (size_t j = 0; j < d->instances[i]->n_accounts; j++) {
            struct mp_account *a = d->instances[i]->accounts[j];
            char id[200];
            label_escape(a->id, id, sizeof id);
            put(b, "mailpulse_account_push{account=\"%s\"} %d\n", id,
                a->push_live ? (a->push_silent ? 2 : 1) : 0);
        }
    }
}

char *mpd_metrics_text(mpd *d)
{
    textbuf b = {0};
    metric(&b, "mailpulse_up", "gauge", "1 while the daemon serves.", 1);
    metric(&b, "mailpulse_uptime_seconds", "gauge", "Seconds since start.",
           (unsigned long long)((mpu_now_ms() - d->started_ms) / 1000));
    metric(&b, "mailpulse_sync_runs_total", "counter", "Incremental sync jobs run.",
           atomic_load(&d->m_sync_runs));
    metric(&b, "mailpulse_sync_failures_total", "counter", "Jobs that ended in a retry.",
           atomic_load(&d->m_sync_failures));
    metric(&b, "mailpulse_backfill_runs_total", "counter", "Backfill jobs run.",
           atomic_load(&d->m_backfill_runs));
    metric(&b, "mailpulse_changes_applied_total", "counter",
           "Message changes that altered the store.", atomic_load(&d->m_changes));
    metric(&b, "mailpulse_folder_resets_total", "counter", "Folders resynced from scratch.",
           atomic_load(&d->m_folder_resets));
    metric(&b, "mailpulse_reconcile_runs_total", "counter",
           "Scheduled syncs of accounts whose push is live (the safety sweep).",
           atomic_load(&d->m_reconcile_runs));
    metric(&b, "mailpulse_push_silence_resyncs_total", "counter",
           "Full resyncs because a push account heard nothing for too long.",
           atomic_load(&d->m_push_silences));
    metric(&b, "mailpulse_push_accepted_total", "counter", "Webhook requests accepted.",
           atomic_load(&d->m_push_accepted));
    metric(&b, "mailpulse_push_rejected_total", "counter", "Webhook requests rejected.",
           atomic_load(&d->m_push_rejected));
    metric(&b, "mailpulse_push_ignored_total", "counter",
           "Webhook requests well-formed but for no account here (answered 2xx).",
           atomic_load(&d->m_push_ignored));
    metric(&b, "mailpulse_body_cache_hits_total", "counter", "Raw reads served from cache.",
           atomic_load(&d->m_fetch_hits));
    metric(&b, "mailpulse_body_cache_misses_total", "counter",
           "Raw reads fetched from the provider.", atomic_load(&d->m_fetch_misses));
    metric(&b, "mailpulse_fetch_errors_total", "counter", "On-demand fetches that failed.",
           atomic_load(&d->m_fetch_errors));
    cache_metrics(&b, d);
    http_metrics(&b, d);
    metric(&b, "mailpulse_fd_exhaustion_total", "counter",
           "Operations that found the process out of file descriptors (each is retried).",
           (unsigned long long)mpu_fd_shortage_total());

    mpj_stats st;
    mpj_stats_get(d->sched, &st);
    metric(&b, "mailpulse_workers", "gauge", "Worker threads.", st.workers);
    metric(&b, "mailpulse_workers_busy", "gauge", "Workers running a job.", st.busy);
    metric(&b, "mailpulse_queue_high", "gauge", "Queued new-mail jobs.", st.queued_high);
    metric(&b, "mailpulse_queue_low", "gauge", "Queued backfill jobs.", st.queued_low);
    metric(&b, "mailpulse_triggers_coalesced_total", "counter",
           "Sync triggers merged into a queued or running job.", st.triggers_coalesced);

    mps_stats ss;
    char *error = NULL;
    if (mps_stats_get(d->store, &ss, &error) == 0) {
        metric(&b, "mailpulse_messages", "gauge", "Messages stored.", (unsigned long long)ss.messages);
        metric(&b, "mailpulse_bodies_cached", "gauge", "Bodies in the cache.",
               (unsigned long long)ss.bodies);
        metric(&b, "mailpulse_body_cache_bytes", "gauge", "Bytes in the body cache.",
               (unsigned long long)ss.body_bytes);
        metric(&b, "mailpulse_events_last_seq", "gauge", "Sequence of the newest event.",
               (unsigned long long)ss.last_seq);
        metric(&b, "mailpulse_outbox_events", "gauge",
               "Events stored in the outbox (see outbox.retention_days).",
               (unsigned long long)ss.events);
        int64_t age_ms = ss.events_oldest_ms > 0 ? mpu_now_ms() - ss.events_oldest_ms : 0;
        metric(&b, "mailpulse_outbox_oldest_age_seconds", "gauge",
               "Age of the oldest event in the outbox (0 when empty).",
               (unsigned long long)(age_ms > 0 ? age_ms / 1000 : 0));
    } else {
        free(error);
    }

    metric(&b, "mailpulse_store_loop_statements_total", "counter",
           "Store statements run on the loop thread (the API's reads among them).",
           (unsigned long long)mps_statements(d->store));
    account_totals(&b, d);
    if (d->settings->http.metrics_per_account) {
        account_series(&b, d);
        push_event_counts(d, &b);
    }
    return b.data;
}

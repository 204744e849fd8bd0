/* The relay thread: outbox -> JetStream (model and guarantees in bus.h).
 *
 * One thread owns the NATS connection, its own store connection and the
 * cursor. It reads a page of at most max_pending events after the cursor,
 * publishes them all with js_PublishMsgAsync (each with its Nats-Msg-Id
 * and a MaxWait of ack_timeout, so every publish ends in an ack or an
 * error), then waits until each one has its outcome. libnats reports the
 * outcomes on its own thread (on_ack): they are written into the page
 * under the relay's lock and the relay thread is signalled. The cursor
 * then moves over the acknowledged prefix of the page only, which is what
 * keeps outbox order and at-least-once across failures.
 *
 * The loop thread only starts and stops the relay, wakes it when events
 * are committed (an mpe watcher) and reads a snapshot of its state for
 * /v1/status and /metrics. */
#include "bus/bus_private.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/json.h"
#include "util/log.h"
#include "util/util.h"

/* Cursor writes are batched: one store write per interval at most while
 * events flow, and one as soon as the relay is idle or stops. */
#define SAVE_INTERVAL_MS 100
/* The relay re-reads the outbox this often even without a wake-up. */
#define IDLE_CHECK_MS 5000
/* While libnats reconnects, the relay looks again this often. */
#define RECONNECT_POLL_MS 1000
#define BACKOFF_FIRST_MS 250

enum { P_UNSENT, P_FLIGHT, P_ACKED, P_FAILED };

typedef struct page_entry {
    int64_t seq;
    char msg_id[MPB_MSG_ID_SIZE];
    int state;
    int duplicate;
    uint64_t stream_seq;
} page_entry;

struct mpb_relay {
    mpb_conf conf;
    mpe_events *events;
    mpb_store_fn store_fn;
    mpb_store_done_fn store_done;
    void *store_arg;
    mpe_watch *watch;
    mpb_nats_hooks hooks;
    pthread_t thread;
    int started;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* ---- under lock ---- */
    int stop, wake;
    page_entry *page;         /* the page in flight, NULL between pages     */
    size_t page_n, page_done;
    size_t page_hint;         /* where the next ack is looked for first     */
    char *page_error;         /* first failed publish of the page           */
    int conn_up;              /* connected (libnats' view)                  */
    int stream_ok;            /* the stream was checked on this connection  */
    const char *state;
    char *last_error;
    int64_t cursor;           /* -1 until loaded                            */
    uint64_t stream_seq;      /* last stream sequence acknowledged          */
    uint64_t published, duplicates, errors, reconnects;
    int64_t last_publish_ms;
    /* ---- relay thread only ---- */
    int64_t saved;            /* the cursor last written to the store       */
    int64_t save_ms;
};

static const char *scope = "bus";

/* ---- small helpers ---- */

static void conf_copy(mpb_conf *c, const mp_settings *s)
{
    c->url = mpu_strdup(s->bus.nats_url);
    c->stream = mpu_strdup(s->bus.stream);
    c->token = mpu_strdup(s->bus.token);
    c->creds_file = mpu_strdup(s->bus.creds_file);
    c->tls_ca_file = mpu_strdup(s->bus.tls_ca_file);
    c->duplicate_window_ns = (int64_t)s->bus.duplicate_window * 1000000000LL;
    c->max_pending = s->bus.max_pending;
    c->ack_timeout_ms = s->bus.ack_timeout * 1000u;
    c->retry_max_ms = s->bus.retry_max * 1000u;
}

static void conf_clear(mpb_conf *c)
{
    free(c->url);
    free(c->stream);
    mpu_secret_free(&c->token);
    free(c->creds_file);
    free(c->tls_ca_file);
    memset(c, 0, sizeof *c);
}

/* The server list without user:password@ parts, for status and logs. */
static char *url_public(const char *url)
{
    size_t len = strlen(url), n = 0;
    char *out = mpu_malloc(len + 1);
    for (const char *p = url; *p != '\0';) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *host = strstr(p, "://");
        host = host != NULL && host < end ? host + 3 : p;
        const char *at = NULL;
        for (const char *q = host; q < end && *q != '/'; q++)
            if (*q == '@')
                at = q;
        memcpy(out + n, p, (size_t)(host - p));
        n += (size_t)(host - p);
        const char *rest = at != NULL ? at + 1 : host;
        memcpy(out + n, rest, (size_t)(end - rest));
        n += (size_t)(end - rest);
        if (*end == ',')
            out[n++] = ',';
        p = *end == ',' ? end + 1 : end;
    }
    out[n] = '\0';
    return out;
}

static int64_t deadline_after(uint32_t ms)
{
    return mpu_mono_ms() + ms;
}

/* Lock held. Waits until the deadline (monotonic ms), a stop, or, with
 * `wakeable`, a wake-up. */
static void wait_locked(mpb_relay *r, int64_t deadline, int wakeable)
{
    while (!r->stop && !(wakeable && r->wake)) {
        int64_t left = deadline - mpu_mono_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    if (wakeable)
        r->wake = 0;
}

static void relay_wait(mpb_relay *r, uint32_t ms, int wakeable)
{
    pthread_mutex_lock(&r->lock);
    wait_locked(r, deadline_after(ms), wakeable);
    pthread_mutex_unlock(&r->lock);
}

static int stopping(mpb_relay *r)
{
    pthread_mutex_lock(&r->lock);
    int stop = r->stop;
    pthread_mutex_unlock(&r->lock);
    return stop;
}

static void set_state(mpb_relay *r, const char *state)
{
    pthread_mutex_lock(&r->lock);
    r->state = state;
    pthread_mutex_unlock(&r->lock);
}

/* A failed step: counted, shown in the status, logged when the reason
 * changed (a NATS outage logs once, not every retry), then a capped
 * exponential backoff with jitter that only a stop interrupts. */
static void failed(mpb_relay *r, const char *state, char *error, uint32_t *failures)
{
    pthread_mutex_lock(&r->lock);
    int changed = r->last_error == NULL || strcmp(r->last_error, error) != 0;
    free(r->last_error);
    r->last_error = error;
    r->state = state;
    r->errors++;
    pthread_mutex_unlock(&r->lock);
    uint32_t backoff = BACKOFF_FIRST_MS;
    for (uint32_t i = 1; i < *failures && backoff < r->conf.retry_max_ms; i++)
        backoff *= 2;
    if (backoff > r->conf.retry_max_ms)
        backoff = r->conf.retry_max_ms;
    uint32_t random = 0;
    mpu_random(&random, sizeof random);
    backoff = (uint32_t)((uint64_t)backoff * (750u + random % 500u) / 1000u);
    (*failures)++;
    if (changed && strcmp(state, "stream_mismatch") == 0)
        mpu_error(scope, "%s", error);
    else if (changed)
        mpu_warn(scope, "%s (retrying, events stay in the outbox)", error);
    else
        mpu_debug(scope, "%s; retry in %u ms", error, backoff);
    relay_wait(r, backoff, 0);
}

/* ---- the cursor ---- */

/* Loads the cursor or, for a bus seen the first time, creates it at the
 * newest event. 0, or -1 with *error_r. */
static int load_cursor(mpb_relay *r, mps_store *st, char **error_r)
{
    int64_t cursor = 0;
    char *error = NULL;
    int rc = st == NULL ? -1 : mps_webhook_cursor_get(st, MPB_CURSOR_NAME, &cursor, &error);
    if (rc == 1) {
        cursor = mpe_last_seq(r->events);
        rc = mps_webhook_cursor_set(st, MPB_CURSOR_NAME, cursor, &error);
        if (rc == 0)
            mpu_info(scope, "first start: publishing events after %lld", (long long)cursor);
    }
    if (rc < 0) {
        *error_r = mpu_asprintf("cannot read the bus cursor: %s",
                                error != NULL ? error : "store unavailable");
        free(error);
        return -1;
    }
    /* A cursor past the newest event (a store restored from a backup)
     * would skip the events that get its seq values next. */
    int64_t last = mpe_last_seq(r->events);
    if (cursor > last) {
        mpu_warn(scope, "the bus cursor %lld is past the newest event %lld (a restored "
                        "store?): publishing from %lld",
                 (long long)cursor, (long long)last, (long long)last);
        cursor = last;
    }
    pthread_mutex_lock(&r->lock);
    r->cursor = cursor;
    pthread_mutex_unlock(&r->lock);
    r->saved = cursor;
    return 0;
}

/* Relay thread. Unsaved, the cursor is only behind: a restart publishes
 * again what JetStream already has, and the duplicate window drops it. */
static void save_cursor(mpb_relay *r, mps_store *st, int force)
{
    pthread_mutex_lock(&r->lock);
    int64_t cursor = r->cursor;
    pthread_mutex_unlock(&r->lock);
    int64_t now = mpu_mono_ms();
    if (st == NULL || cursor <= r->saved || (!force && now - r->save_ms < SAVE_INTERVAL_MS))
        return;
    char *error = NULL;
    if (mps_webhook_cursor_set(st, MPB_CURSOR_NAME, cursor, &error) < 0) {
        mpu_warn(scope, "cannot save the bus cursor: %s", error);
        free(error);
        return;
    }
    r->saved = cursor;
    r->save_ms = now;
}

/* ---- publishing one page ---- */

/* libnats thread: one publish's outcome. Matched by its Nats-Msg-Id
 * (unique in the outbox, so in a page); an outcome of no page in flight
 * (abandoned at a stop) is dropped. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    mpb_relay *r = closure;
    const char *id = NULL;
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK)
        id = NULL;
    pthread_mutex_lock(&r->lock);
    page_entry *e = NULL;
    for (size_t k = 0; id != NULL && r->page != NULL && k < r->page_n && e == NULL; k++) {
        page_entry *c = &r->page[(r->page_hint + k) % r->page_n];
        if (c->state == P_FLIGHT && strcmp(c->msg_id, id) == 0)
            e = c;
    }
    if (e != NULL) {
        r->page_hint = (size_t)(e - r->page + 1) % r->page_n;
        if (pa != NULL) {
            e->state = P_ACKED;
            e->duplicate = pa->Duplicate;
            e->stream_seq = pa->Sequence;
        } else {
            e->state = P_FAILED;
            if (r->page_error == NULL && pae != NULL) {
                const char *text = pae->ErrText != NULL ? pae->ErrText : "";
                r->page_error = mpu_asprintf("publish of event %lld: %s%s%s",
                                             (long long)e->seq, natsStatus_GetText(pae->Err),
                                             *text ? ": " : "", text);
            }
        }
        r->page_done++;
        r->wake = 1;
        pthread_cond_broadcast(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    natsMsg_Destroy(msg);
}

static natsStatus publish_one(mpb_relay *r, jsCtx *js, const mps_event *ev,
                              const char *msg_id)
{
    char *subject = mpb_subject(ev->account, ev->type);
    json_t *o = mpe_event_json(ev);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char event_id[48];
    snprintf(event_id, sizeof event_id, "%lld:%lld", (long long)mpe_epoch(r->events),
             (long long)ev->seq);
    natsMsg *m = NULL;
    natsStatus s = body == NULL ? NATS_NO_MEMORY
                                : natsMsg_Create(&m, subject, NULL, body, (int)strlen(body));
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Mailpulse-Event-Id", event_id);
    if (s == NATS_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msg_id;
        po.MaxWait = r->conf.ack_timeout_ms;
        s = js_PublishMsgAsync(js, &m, &po);
    }
    natsMsg_Destroy(m); /* NULL when libnats took it */
    free(body);
    free(subject);
    return s;
}

/* 0: the page went out and was acknowledged; 1: nothing to publish;
 * -1: a failure (*error_r), the cursor stays before the first event
 * without an ack. */
static int publish_page(mpb_relay *r, mps_store *st, jsCtx *js, char **error_r)
{
    pthread_mutex_lock(&r->lock);
    int64_t cursor = r->cursor;
    pthread_mutex_unlock(&r->lock);
    mps_event *list = NULL;
    size_t n = 0;
    char *error = NULL;
    if (mps_events_after(st, cursor, r->conf.max_pending, NULL, NULL, &list, &n, &error) < 0) {
        *error_r = mpu_asprintf("cannot read the outbox: %s", error);
        free(error);
        return -1;
    }
    if (n == 0)
        return 1;
    if (list[0].seq > cursor + 1 && cursor < mpe_horizon(r->events))
        mpu_warn(scope, "events %lld..%lld were pruned from the outbox before they were "
                        "published (outbox.retention_days while the bus was off)",
                 (long long)cursor + 1, (long long)list[0].seq - 1);

    page_entry *page = mpu_calloc(n, sizeof *page);
    for (size_t i = 0; i < n; i++) {
        page[i].seq = list[i].seq;
        mpb_msg_id(list[i].idem_key, page[i].msg_id, sizeof page[i].msg_id);
    }
    pthread_mutex_lock(&r->lock);
    r->page = page;
    r->page_n = n;
    r->page_done = 0;
    r->page_hint = 0;
    pthread_mutex_unlock(&r->lock);

    size_t sent = 0;
    char *send_error = NULL;
    for (; sent < n && !stopping(r); sent++) {
        /* In flight before the call: the ack may come before it returns. */
        pthread_mutex_lock(&r->lock);
        page[sent].state = P_FLIGHT;
        pthread_mutex_unlock(&r->lock);
        natsStatus s = publish_one(r, js, &list[sent], page[sent].msg_id);
        if (s != NATS_OK) {
            pthread_mutex_lock(&r->lock);
            page[sent].state = P_UNSENT;
            pthread_mutex_unlock(&r->lock);
            send_error = mpb_nats_error("publish", s, 0);
            break;
        }
    }
    mps_events_free(&list, n);

    /* Every publish ends with an ack or its MaxWait; the extra second is
     * only a guard against an outcome libnats never reports. */
    pthread_mutex_lock(&r->lock);
    int64_t deadline = deadline_after(r->conf.ack_timeout_ms + 1000u);
    while (r->page_done < sent && !r->stop && mpu_mono_ms() < deadline) {
        r->wake = 0;
        wait_locked(r, deadline, 1);
    }
    int complete = r->page_done >= sent;
    pthread_mutex_unlock(&r->lock);
    if (!complete) {
        /* A stop (or the guard): take back what is still pending; its
         * events go out again next time. */
        natsMsgList pending;
        if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK)
            natsMsgList_Destroy(&pending);
    }

    pthread_mutex_lock(&r->lock);
    size_t k = 0;
    for (; k < n && page[k].state == P_ACKED; k++) {
        if (page[k].duplicate)
            r->duplicates++;
        else
            r->published++;
        if (page[k].stream_seq > r->stream_seq)
            r->stream_seq = page[k].stream_seq;
    }
    if (k > 0) {
        r->cursor = page[k - 1].seq;
        r->last_publish_ms = mpu_now_ms();
    }
    char *page_error = r->page_error;
    r->page_error = NULL;
    r->page = NULL;
    r->page_n = r->page_done = 0;
    int stop = r->stop;
    pthread_mutex_unlock(&r->lock);
    int64_t first_unacked = k < n ? page[k].seq : 0;
    free(page);
    save_cursor(r, st, k < n);
    if (k == n || stop) {
        free(page_error);
        free(send_error);
        return 0;
    }
    if (send_error != NULL) {
        *error_r = send_error;
        free(page_error);
    } else if (page_error != NULL) {
        *error_r = page_error;
    } else {
        *error_r = mpu_asprintf("no acknowledgment for event %lld within %u s",
                                (long long)first_unacked, r->conf.ack_timeout_ms / 1000u);
    }
    return -1;
}

/* ---- the thread ---- */

static void on_conn_event(void *arg, mpb_conn_event ev)
{
    mpb_relay *r = arg;
    pthread_mutex_lock(&r->lock);
    if (ev == MPB_CONN_RECONNECTED) {
        r->conn_up = 1;
        r->reconnects++;
        /* The server may have lost the stream (a new data directory). */
        r->stream_ok = 0;
    } else {
        r->conn_up = 0;
        r->state = "disconnected";
    }
    r->wake = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void *relay_main(void *arg)
{
    mpb_relay *r = arg;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    uint32_t failures = 1;
    mps_store *st = r->store_fn(r->store_arg);
    char *url = url_public(r->conf.url);
    while (!stopping(r)) {
        char *error = NULL;
        pthread_mutex_lock(&r->lock);
        int have_cursor = r->cursor >= 0;
        pthread_mutex_unlock(&r->lock);
        if (!have_cursor && load_cursor(r, st, &error) < 0) {
            failed(r, "error", error, &failures);
            continue;
        }
        if (nc == NULL) {
            set_state(r, "connecting");
            if (mpb_nats_connect(&r->conf, &r->hooks, &nc, &js, &error) < 0) {
                char *text = mpu_asprintf("%s: %s", url, error);
                free(error);
                failed(r, "disconnected", text, &failures);
                continue;
            }
            pthread_mutex_lock(&r->lock);
            r->conn_up = 1;
            r->stream_ok = 0;
            pthread_mutex_unlock(&r->lock);
            mpu_info(scope, "connected to %s", url);
        }
        pthread_mutex_lock(&r->lock);
        int up = r->conn_up, stream_ok = r->stream_ok;
        pthread_mutex_unlock(&r->lock);
        if (!up) {
            /* libnats reconnects; publishing now would only fill its
             * reconnect buffer. */
            relay_wait(r, RECONNECT_POLL_MS, 1);
            continue;
        }
        if (!stream_ok) {
            int rc = mpb_stream_ensure(js, &r->conf, &error);
            if (rc != 0) {
                failed(r, rc == 1 ? "stream_mismatch" : "error", error, &failures);
                continue;
            }
            pthread_mutex_lock(&r->lock);
            r->stream_ok = 1;
            r->state = "connected";
            int had_error = r->last_error != NULL;
            free(r->last_error);
            r->last_error = NULL;
            pthread_mutex_unlock(&r->lock);
            mpu_info(scope, "stream \"%s\" ready%s", r->conf.stream,
                     had_error ? " again" : "");
        }
        int rc = publish_page(r, st, js, &error);
        if (rc < 0) {
            pthread_mutex_lock(&r->lock);
            r->stream_ok = 0; /* a missing stream shows as no responders */
            pthread_mutex_unlock(&r->lock);
            failed(r, "error", error, &failures);
            continue;
        }
        failures = 1;
        set_state(r, "connected");
        if (rc == 1) {
            save_cursor(r, st, 1);
            relay_wait(r, IDLE_CHECK_MS, 1);
        }
    }
    save_cursor(r, st, 1);
    mpb_nats_close(&nc, &js);
    free(url);
    r->store_done(r->store_arg);
    return NULL;
}

/* Loop thread: new events were committed. */
static void on_events(int64_t last_seq, void *arg)
{
    (void)last_seq;
    mpb_relay *r = arg;
    pthread_mutex_lock(&r->lock);
    r->wake = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

mpb_relay *mpb_start(mpe_events *events, mps_store *loop_store, mpb_store_fn store_fn,
                     mpb_store_done_fn store_done, void *store_arg, const mp_settings *s)
{
    if (!s->bus.enabled)
        return NULL;
    mpb_relay *r = mpu_calloc(1, sizeof *r);
    conf_copy(&r->conf, s);
    r->events = events;
    r->store_fn = store_fn;
    r->store_done = store_done;
    r->store_arg = store_arg;
    r->hooks.conn_event = on_conn_event;
    r->hooks.ack = on_ack;
    r->hooks.arg = r;
    r->state = "connecting";
    r->cursor = -1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    /* Now, on the loop thread, before any account syncs: "after the
     * newest event" means events committed from this moment on. A failure
     * is retried by the thread. */
    char *error = NULL;
    if (load_cursor(r, loop_store, &error) < 0) {
        mpu_error(scope, "%s", error);
        free(error);
    }
    r->watch = mpe_watch_add(events, on_events, r);
    int rc = pthread_create(&r->thread, NULL, relay_main, r);
    if (rc != 0) {
        mpu_error(scope, "cannot start the relay thread: %s", strerror(rc));
        pthread_mutex_lock(&r->lock);
        r->state = "error";
        free(r->last_error);
        r->last_error = mpu_strdup("no relay thread");
        pthread_mutex_unlock(&r->lock);
    } else {
        r->started = 1;
    }
    char *url = url_public(r->conf.url);
    mpu_info(scope, "publishing events to stream \"%s\" on %s", r->conf.stream, url);
    free(url);
    return r;
}

void mpb_stop(mpb_relay **rp)
{
    if (rp == NULL || *rp == NULL)
        return;
    mpb_relay *r = *rp;
    mpe_unwatch(r->events, r->watch);
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (r->started) {
        pthread_join(r->thread, NULL);
        /* libnats' own threads (flusher, timers, callbacks) end here, so
         * none of them can still hold `r` when it is freed. */
        nats_CloseAndWait(2000);
    }
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r->last_error);
    conf_clear(&r->conf);
    free(r);
    *rp = NULL;
}

/* ---- status and metrics ---- */

json_t *mpb_status_json(mpb_relay *r)
{
    if (r == NULL)
        return json_null();
    int64_t last = mpe_last_seq(r->events);
    char *url = url_public(r->conf.url);
    pthread_mutex_lock(&r->lock);
    int64_t cursor = r->cursor < 0 ? 0 : r->cursor;
    int connected = r->conn_up && r->stream_ok;
    json_t *o = json_object();
    json_object_set_new(o, "connected", json_boolean(connected));
    json_object_set_new(o, "state", json_string(r->state));
    json_object_set_new(o, "url", json_string(url));
    json_object_set_new(o, "stream", json_string(r->conf.stream));
    json_object_set_new(o, "cursor", json_integer(cursor));
    json_object_set_new(o, "last_seq", json_integer(last));
    json_object_set_new(o, "lag", json_integer(last > cursor ? last - cursor : 0));
    json_object_set_new(o, "stream_seq", json_integer((json_int_t)r->stream_seq));
    json_object_set_new(o, "published", json_integer((json_int_t)r->published));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)r->duplicates));
    json_object_set_new(o, "errors", json_integer((json_int_t)r->errors));
    json_object_set_new(o, "reconnects", json_integer((json_int_t)r->reconnects));
    json_object_set_new(o, "last_error", mpu_json_str(r->last_error));
    json_object_set_new(o, "last_publish", mpu_json_time(r->last_publish_ms));
    pthread_mutex_unlock(&r->lock);
    free(url);
    return o;
}

char *mpb_metrics_text(mpb_relay *r)
{
    if (r == NULL)
        return mpu_strdup("");
    int64_t last = mpe_last_seq(r->events);
    pthread_mutex_lock(&r->lock);
    int64_t cursor = r->cursor < 0 ? 0 : r->cursor;
    int connected = r->conn_up && r->stream_ok;
    unsigned long long published = r->published, duplicates = r->duplicates,
                       errors = r->errors, reconnects = r->reconnects;
    pthread_mutex_unlock(&r->lock);
    return mpu_asprintf(
        "# HELP mailpulse_bus_connected 1 when connected to NATS with the stream ready.\n"
        "# TYPE mailpulse_bus_connected gauge\n"
        "mailpulse_bus_connected %d\n"
        "# HELP mailpulse_bus_published_total Events JetStream stored.\n"
        "# TYPE mailpulse_bus_published_total counter\n"
        "mailpulse_bus_published_total %llu\n"
        "# HELP mailpulse_bus_duplicates_total Publishes JetStream acknowledged as "
        "duplicates (a replay after a crash or a lost ack).\n"
        "# TYPE mailpulse_bus_duplicates_total counter\n"
        "mailpulse_bus_duplicates_total %llu\n"
        "# HELP mailpulse_bus_errors_total Failed connection attempts, stream checks and "
        "pages of publishes.\n"
        "# TYPE mailpulse_bus_errors_total counter\n"
        "mailpulse_bus_errors_total %llu\n"
        "# HELP mailpulse_bus_reconnects_total Reconnections of the NATS connection.\n"
        "# TYPE mailpulse_bus_reconnects_total counter\n"
        "mailpulse_bus_reconnects_total %llu\n"
        "# HELP mailpulse_bus_lag Events not yet acknowledged by JetStream (last seq - "
        "cursor).\n"
        "# TYPE mailpulse_bus_lag gauge\n"
        "mailpulse_bus_lag %lld\n",
        connected, published, duplicates, errors, reconnects,
        (long long)(last > cursor ? last - cursor : 0));
}

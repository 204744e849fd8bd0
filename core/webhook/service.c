/* The delivery service: one state machine per endpoint on the loop thread
 * (see webhook.h for the model). An endpoint is "idle" (nothing due), has
 * a current event in flight, or waits for its retry timer; every wake-up
 * (new events, the periodic check, a replay request, the retry timer)
 * funnels into pump(). */
#include "webhook/webhook.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "events/events.h"
#include "util/log.h"
#include "util/json.h"
#include "util/util.h"
#include "net/net.h"

#define PAGE 100
#define MAX_PAGES_PER_PUMP 20  /* then yield to the loop and continue   */
#define CHECK_INTERVAL_MS 30000
#define FAILING_STREAK 3
#define DEAD_LIST_MAX 100

typedef struct endpoint {
    struct endpoint *next;
    mpw_service *svc;
    mp_webhook_conf conf;     /* own deep copy                               */
    int64_t cursor;           /* last event handled; -1 until loaded         */
    struct event *timer;      /* the next pump (retry or "now")              */
    /* the current event: seq 0 when none */
    int64_t seq;
    int replaying;            /* it is a dead letter being replayed          */
    char *msg_id;
    char *body;
    size_t body_len;
    uint32_t attempts;        /* failed attempts of the current event        */
    int64_t next_retry_ms;    /* 0 when none is waiting                      */
    mpn_transfer *transfer;
    /* health */
    uint32_t streak;          /* failed attempts since the last success      */
    int dead_since_success;
    char *last_error;
    int64_t last_success_ms;
    uint64_t delivered, failures, dead_lettered;
} endpoint;

struct mpw_service {
    struct event_base *base;  /* borrowed                                    */
    mpe_events *events;       /* borrowed: watched; its last seq            */
    mpw_store_fn store;       /* the calling (loop) thread's connection      */
    void *store_arg;
    mpn_multi *net;
    endpoint *endpoints;
    mpe_watch *watch;
    struct event *check;
};

static const char *scope = "webhooks";

/* ---- configuration copies ---- */

static char **strv_dup(char *const *v)
{
    if (v == NULL)
        return NULL;
    size_t n = 0;
    while (v[n] != NULL)
        n++;
    char **out = mpu_calloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = mpu_strdup(v[i]);
    return out;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static void conf_copy(mp_webhook_conf *dst, const mp_webhook_conf *src)
{
    *dst = *src;
    dst->name = mpu_strdup(src->name);
    dst->url = mpu_strdup(src->url);
    dst->secret_file = mpu_strdup(src->secret_file);
    dst->where = mpu_strdup(src->where);
    dst->key = NULL;
    if (src->key != NULL) {
        dst->key = mpu_malloc(src->key_len);
        memcpy(dst->key, src->key, src->key_len);
    }
    dst->events = strv_dup(src->events);
    dst->accounts = strv_dup(src->accounts);
    dst->folders = strv_dup(src->folders);
}

static void conf_clear(mp_webhook_conf *c)
{
    free(c->name);
    free(c->url);
    free(c->secret_file);
    free(c->where);
    if (c->key != NULL) {
        memset(c->key, 0, c->key_len);
        free(c->key);
    }
    strv_free(c->events);
    strv_free(c->accounts);
    strv_free(c->folders);
    memset(c, 0, sizeof *c);
}

/* ---- the current event ---- */

static void current_clear(endpoint *ep)
{
    mpn_cancel(ep->svc->net, &ep->transfer);
    free(ep->msg_id);
    free(ep->body);
    ep->msg_id = NULL;
    ep->body = NULL;
    ep->body_len = 0;
    ep->seq = 0;
    ep->replaying = 0;
    ep->attempts = 0;
    ep->next_retry_ms = 0;
}

static void current_set(endpoint *ep, const mps_event *e, int replaying)
{
    json_t *o = mpe_event_json(e);
    char id[256];
    mpw_message_id(e->idem_key, e->seq, id, sizeof id);
    ep->seq = e->seq;
    ep->replaying = replaying;
    ep->msg_id = mpu_strdup(id);
    ep->body = json_dumps(o, JSON_COMPACT);
    ep->body_len = ep->body != NULL ? strlen(ep->body) : 0;
    ep->attempts = 0;
    json_decref(o);
}

static void set_error(endpoint *ep, const char *error)
{
    free(ep->last_error);
    ep->last_error = mpu_strdup(error);
}

static void schedule(endpoint *ep, uint32_t delay_ms)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(ep->timer, &tv);
}

/* ---- store ---- */

/* Asked each time, never kept: the connection belongs to its owner. */
static mps_store *store(endpoint *ep)
{
    return ep->svc->store(ep->svc->store_arg);
}

static int load_cursor(endpoint *ep)
{
    char *error = NULL;
    int64_t cursor = 0;
    int rc = mps_webhook_cursor_get(store(ep), ep->conf.name, &cursor, &error);
    if (rc == 1) {
        /* A new endpoint gets what happens from now on, not the history. */
        cursor = mpe_last_seq(ep->svc->events);
        rc = mps_webhook_cursor_set(store(ep), ep->conf.name, cursor, &error);
        if (rc == 0)
            mpu_info(scope, "endpoint \"%s\" starts after event %lld", ep->conf.name,
                     (long long)cursor);
    }
    if (rc < 0) {
        mpu_error(scope, "endpoint \"%s\": cannot read its cursor: %s", ep->conf.name,
                  error);
        free(error);
        return -1;
    }
    ep->cursor = cursor;
    return 0;
}

static void save_cursor(endpoint *ep, int64_t cursor)
{
    char *error = NULL;
    ep->cursor = cursor;
    /* Unsaved, the cursor is only behind: a restart sends again what was
     * already delivered, which at-least-once allows. */
    if (mps_webhook_cursor_set(store(ep), ep->conf.name, cursor, &error) < 0) {
        mpu_warn(scope, "endpoint \"%s\": cannot save its cursor: %s", ep->conf.name,
                 error);
        free(error);
    }
}

/* The next dead letter queued for replay. 1: none, -1: store error. */
static int next_replay(endpoint *ep)
{
    for (;;) {
        int64_t seq = 0;
        char *error = NULL;
        int rc = mps_webhook_replay_next(store(ep), ep->conf.name, &seq, &error);
        if (rc != 0) {
            if (rc < 0) {
                mpu_error(scope, "endpoint \"%s\": %s", ep->conf.name, error);
                free(error);
            }
            return rc;
        }
        mps_event *list = NULL;
        size_t n = 0;
        if (mps_events_after(store(ep), seq - 1, 1, NULL, NULL, &list, &n, &error) < 0) {
            mpu_error(scope, "endpoint \"%s\": %s", ep->conf.name, error);
            free(error);
            return -1;
        }
        if (n == 1 && list[0].seq == seq) {
            current_set(ep, &list[0], 1);
            mps_events_free(&list, n);
            return 0;
        }
        mps_events_free(&list, n);
        mpu_warn(scope, "endpoint \"%s\": dead letter %lld is no longer in the outbox",
                 ep->conf.name, (long long)seq);
        if (mps_webhook_dead_delete(store(ep), ep->conf.name, seq, &error) < 0) {
            mpu_error(scope, "endpoint \"%s\": %s", ep->conf.name, error);
            free(error);
            return -1;
        }
    }
}

/* The next new event passing the filters. 0: found, 1: none yet, 2: more
 * pages to scan later, -1: store error. */
static int next_new(endpoint *ep)
{
    for (int page = 0; page < MAX_PAGES_PER_PUMP; page++) {
        /* Every event up to `known` is committed, so a short page below
         * proves there is nothing else up to it. */
        int64_t known = mpe_last_seq(ep->svc->events);
        mps_event *list = NULL;
        size_t n = 0;
        char *error = NULL;
        if (mps_events_after(store(ep), ep->cursor, PAGE,
                             (const char *const *)ep->conf.events,
                             (const char *const *)ep->conf.accounts, &list, &n,
                             &error) < 0) {
            mpu_error(scope, "endpoint \"%s\": cannot read the outbox: %s", ep->conf.name,
                      error);
            free(error);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (mpw_filter_match(&ep->conf, list[i].type, list[i].account,
                                 list[i].folder)) {
                /* Skipped events before it are handled: no need to save. */
                current_set(ep, &list[i], 0);
                mps_events_free(&list, n);
                return 0;
            }
        }
        int64_t last = n > 0 ? list[n - 1].seq : ep->cursor;
        mps_events_free(&list, n);
        if (n == PAGE) {
            save_cursor(ep, last);
            continue;
        }
        int64_t upto = known > last ? known : last;
        if (upto > ep->cursor)
            save_cursor(ep, upto);
        return 1;
    }
    return 2;
}

/* ---- delivery ---- */

static void on_done(void *arg, const mpn_result *res);

enum { N_HEADERS = 6 };

/* Fills lines[0..N_HEADERS-1] (allocated) and a NULL terminator. */
static void headers_for(endpoint *ep, int64_t now_s, const char *signature,
                        char *lines[N_HEADERS + 1])
{
    lines[0] = mpu_asprintf("webhook-id: %s", ep->msg_id);
    lines[1] = mpu_asprintf("webhook-timestamp: %lld", (long long)now_s);
    lines[2] = mpu_asprintf("webhook-signature: %s", signature);
    lines[3] = mpu_strdup("content-type: application/json");
    lines[4] = mpu_strdup("user-agent: mailpulse/" MP_VERSION);
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    lines[5] = mpu_strdup("Expect:");
    lines[N_HEADERS] = NULL;
}

static void attempt_failed(endpoint *ep, const char *error, uint32_t retry_after_s);

static void send_current(endpoint *ep)
{
    char signature[MPW_SIGNATURE_SIZE];
    int64_t now_s = mpu_now_ms() / 1000;
    char *error = NULL;
    if (ep->body == NULL || ep->conf.key == NULL ||
        mpw_sign(ep->conf.key, ep->conf.key_len, ep->msg_id, now_s, ep->body, ep->body_len,
                 signature, sizeof signature) < 0) {
        attempt_failed(ep, "cannot sign the request", 0);
        return;
    }
    ep->next_retry_ms = 0;
    char *lines[N_HEADERS + 1];
    headers_for(ep, now_s, signature, lines);
    /* The receiver's answer body is never read: no bound needed, and a
     * redirect (resending a signed body elsewhere) is never followed. */
    mpn_request req = {
        .method = "POST",
        .url = ep->conf.url,
        .headers = (const char *const *)lines,
        .body = ep->body,
        .body_len = ep->body_len,
        .timeout_ms = ep->conf.timeout * 1000u,
        .discard_body = 1,
    };
    ep->transfer = mpn_start(ep->svc->net, &req, on_done, ep, &error);
    for (size_t i = 0; i < N_HEADERS; i++)
        free(lines[i]);
    if (ep->transfer == NULL) {
        attempt_failed(ep, error, 0);
        free(error);
    }
}

static void dead_letter(endpoint *ep)
{
    char *error = NULL;
    int64_t cursor = ep->replaying ? -1 : ep->seq;
    if (mps_webhook_dead_letter(store(ep), ep->conf.name, ep->seq, ep->attempts,
                                ep->last_error, cursor, &error) < 0) {
        /* Nothing moved: keep retrying this event rather than lose it. */
        mpu_error(scope, "endpoint \"%s\": cannot record dead letter %lld: %s",
                  ep->conf.name, (long long)ep->seq, error);
        free(error);
        ep->next_retry_ms = mpu_now_ms() + ep->conf.retry_max * 1000LL;
        schedule(ep, ep->conf.retry_max * 1000u);
        return;
    }
    mpu_warn(scope, "endpoint \"%s\": event %lld dead-lettered after %u attempts (%s)",
             ep->conf.name, (long long)ep->seq, ep->attempts,
             ep->last_error ? ep->last_error : "?");
    if (!ep->replaying)
        ep->cursor = ep->seq;
    ep->dead_lettered++;
    ep->dead_since_success = 1;
    current_clear(ep);
    schedule(ep, 0);
}

static void attempt_failed(endpoint *ep, const char *error, uint32_t retry_after_s)
{
    ep->attempts++;
    ep->streak++;
    ep->failures++;
    set_error(ep, error);
    if (ep->attempts >= ep->conf.max_attempts) {
        dead_letter(ep);
        return;
    }
    uint32_t random = 0;
    mpu_random(&random, sizeof random);
    uint32_t delay = mpw_backoff_ms(&ep->conf, ep->attempts, retry_after_s, random);
    mpu_info(scope, "endpoint \"%s\": event %lld attempt %u failed (%s); retry in %u ms",
             ep->conf.name, (long long)ep->seq, ep->attempts, error, delay);
    ep->next_retry_ms = mpu_now_ms() + delay;
    schedule(ep, delay);
}

static void delivered(endpoint *ep)
{
    char *error = NULL;
    if (ep->replaying) {
        if (mps_webhook_dead_delete(store(ep), ep->conf.name, ep->seq, &error) < 0) {
            mpu_warn(scope, "endpoint \"%s\": cannot clear dead letter %lld: %s",
                     ep->conf.name, (long long)ep->seq, error);
            free(error);
        }
    } else {
        save_cursor(ep, ep->seq);
    }
    mpu_debug(scope, "endpoint \"%s\": delivered event %lld", ep->conf.name,
              (long long)ep->seq);
    ep->delivered++;
    ep->streak = 0;
    ep->dead_since_success = 0;
    ep->last_success_ms = mpu_now_ms();
    current_clear(ep);
    schedule(ep, 0);
}

static void on_done(void *arg, const mpn_result *res)
{
    endpoint *ep = arg;
    ep->transfer = NULL;
    if (res->kind == MPN_OK && res->status >= 200 && res->status <= 299) {
        delivered(ep);
        return;
    }
    char *why = res->kind == MPN_OK ? mpu_asprintf("HTTP %ld", res->status)
                                    : mpu_strdup(res->error);
    attempt_failed(ep, why, (res->retry_after_ms + 999u) / 1000u);
    free(why);
}

static void pump(endpoint *ep)
{
    if (ep->transfer != NULL || evtimer_pending(ep->timer, NULL))
        return;
    if (ep->cursor < 0 && load_cursor(ep) < 0) {
        schedule(ep, CHECK_INTERVAL_MS);
        return;
    }
    if (ep->seq == 0) {
        int rc = next_replay(ep);
        if (rc == 1)
            rc = next_new(ep);
        if (rc == 2) {
            schedule(ep, 0);
            return;
        }
        if (rc != 0)
            return; /* nothing to do, or a store error: the periodic check retries */
    }
    send_current(ep);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

static void kick_idle(mpw_service *w)
{
    for (endpoint *ep = w->endpoints; ep != NULL; ep = ep->next)
        if (ep->seq == 0 && ep->transfer == NULL && !evtimer_pending(ep->timer, NULL))
            schedule(ep, 0);
}

static void on_events(int64_t last_seq, void *arg)
{
    (void)last_seq;
    kick_idle(arg);
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kick_idle(arg);
}

/* ---- endpoints ---- */

static endpoint *endpoint_new(mpw_service *w, const mp_webhook_conf *conf)
{
    endpoint *ep = mpu_calloc(1, sizeof *ep);
    ep->svc = w;
    conf_copy(&ep->conf, conf);
    ep->cursor = -1;
    ep->timer = evtimer_new(w->base, on_timer, ep);
    /* Now, not at the first pump: "from now on" means from this moment,
     * before any account starts syncing. A failure is retried by pump. */
    load_cursor(ep);
    schedule(ep, 0);
    return ep;
}

static void endpoint_free(endpoint *ep)
{
    current_clear(ep);
    event_free(ep->timer);
    conf_clear(&ep->conf);
    free(ep->last_error);
    free(ep);
}

static endpoint *find(mpw_service *w, const char *name)
{
    for (endpoint *ep = w->endpoints; ep != NULL; ep = ep->next)
        if (strcmp(ep->conf.name, name) == 0)
            return ep;
    return NULL;
}

mpw_service *mpw_start(struct event_base *base, mpe_events *events, mpw_store_fn store_fn,
                       void *store_arg, const mp_settings *s)
{
    mpw_service *w = mpu_calloc(1, sizeof *w);
    w->base = base;
    w->events = events;
    w->store = store_fn;
    w->store_arg = store_arg;
    w->net = mpn_multi_new(base);
    w->watch = mpe_watch_add(events, on_events, w);
    w->check = event_new(base, -1, EV_PERSIST, on_check, w);
    struct timeval tv = {CHECK_INTERVAL_MS / 1000, 0};
    event_add(w->check, &tv);
    mpw_apply(w, s);
    return w;
}

void mpw_apply(mpw_service *w, const mp_settings *s)
{
    /* Drop the endpoints that are gone. */
    for (endpoint **p = &w->endpoints; *p != NULL;) {
        endpoint *ep = *p;
        int keep = 0;
        for (size_t i = 0; i < s->n_webhooks && !keep; i++)
            keep = strcmp(s->webhooks[i].name, ep->conf.name) == 0;
        if (keep) {
            p = &ep->next;
            continue;
        }
        mpu_info(scope, "endpoint \"%s\" removed", ep->conf.name);
        *p = ep->next;
        endpoint_free(ep);
    }
    /* Update or add the others, in configuration order. */
    endpoint **tail = &w->endpoints;
    endpoint *kept = w->endpoints;
    w->endpoints = NULL;
    for (size_t i = 0; i < s->n_webhooks; i++) {
        const mp_webhook_conf *c = &s->webhooks[i];
        endpoint *ep = NULL;
        for (endpoint **p = &kept; *p != NULL; p = &(*p)->next) {
            if (strcmp((*p)->conf.name, c->name) == 0) {
                ep = *p;
                *p = ep->next;
                break;
            }
        }
        if (ep != NULL) {
            conf_clear(&ep->conf);
            conf_copy(&ep->conf, c);
        } else {
            ep = endpoint_new(w, c);
            mpu_info(scope, "endpoint \"%s\" added", c->name);
        }
        ep->next = NULL;
        *tail = ep;
        tail = &ep->next;
    }
    kick_idle(w);
}

void mpw_stop(mpw_service **wp)
{
    if (wp == NULL || *wp == NULL)
        return;
    mpw_service *w = *wp;
    while (w->endpoints != NULL) {
        endpoint *ep = w->endpoints;
        w->endpoints = ep->next;
        endpoint_free(ep);
    }
    mpn_multi_free(&w->net);
    mpe_unwatch(w->events, w->watch);
    event_free(w->check);
    free(w);
    *wp = NULL;
}

/* ---- status, replay, metrics ---- */

static json_t *strv_json(char *const *v)
{
    if (v == NULL)
        return json_null();
    json_t *arr = json_array();
    for (size_t i = 0; v[i] != NULL; i++)
        json_array_append_new(arr, json_string(v[i]));
    return arr;
}

/* Credentials and tokens in the URL (userinfo, query) stay out of status
 * output, as they stay out of errors. */
static json_t *url_public(const char *url)
{
    char *shown = mpn_url_redact(url);
    json_t *j = json_string(shown);
    free(shown);
    return j;
}

static const char *state_name(const endpoint *ep)
{
    if (ep->streak == 0 && !ep->dead_since_success)
        return "ok";
    if (ep->streak >= FAILING_STREAK || ep->dead_since_success)
        return "failing";
    return "retrying";
}

static json_t *endpoint_json(endpoint *ep)
{
    int64_t dead = 0, queued = 0;
    char *error = NULL;
    if (mps_webhook_dead_count(store(ep), ep->conf.name, &dead, &queued, &error) < 0)
        free(error);
    int64_t last = mpe_last_seq(ep->svc->events);
    int64_t cursor = ep->cursor < 0 ? 0 : ep->cursor;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(ep->conf.name));
    json_object_set_new(o, "url", url_public(ep->conf.url));
    json_object_set_new(o, "events", strv_json(ep->conf.events));
    json_object_set_new(o, "accounts", strv_json(ep->conf.accounts));
    json_object_set_new(o, "folders", strv_json(ep->conf.folders));
    json_object_set_new(o, "max_attempts", json_integer(ep->conf.max_attempts));
    json_object_set_new(o, "cursor", json_integer(cursor));
    json_object_set_new(o, "last_seq", json_integer(last));
    json_object_set_new(o, "lag", json_integer(last > cursor ? last - cursor : 0));
    json_object_set_new(o, "state", json_string(state_name(ep)));
    json_object_set_new(o, "pending_seq", ep->seq > 0 ? json_integer(ep->seq) : json_null());
    json_object_set_new(o, "replaying", json_boolean(ep->replaying));
    json_object_set_new(o, "attempts", json_integer(ep->attempts));
    json_object_set_new(o, "next_retry", mpu_json_time(ep->next_retry_ms));
    json_object_set_new(o, "last_error", mpu_json_str(ep->last_error));
    json_object_set_new(o, "last_success", mpu_json_time(ep->last_success_ms));
    json_object_set_new(o, "delivered", json_integer((json_int_t)ep->delivered));
    json_object_set_new(o, "failures", json_integer((json_int_t)ep->failures));
    json_object_set_new(o, "dead_letters", json_integer(dead));
    json_object_set_new(o, "replay_queued", json_integer(queued));
    return o;
}

json_t *mpw_status_json(mpw_service *w)
{
    json_t *arr = json_array();
    for (endpoint *ep = w != NULL ? w->endpoints : NULL; ep != NULL; ep = ep->next)
        json_array_append_new(arr, endpoint_json(ep));
    return json_pack("{s:o}", "webhooks", arr);
}

json_t *mpw_endpoint_json(mpw_service *w, const char *name)
{
    endpoint *ep = w != NULL ? find(w, name) : NULL;
    if (ep == NULL)
        return NULL;
    json_t *o = endpoint_json(ep);
    json_t *dead = json_array();
    mps_dead_letter *list = NULL;
    size_t n = 0;
    char *error = NULL;
    if (mps_webhook_dead_list(store(ep), name, DEAD_LIST_MAX, &list, &n, &error) == 0) {
        for (size_t i = 0; i < n; i++)
            json_array_append_new(
                dead, json_pack("{s:I, s:I, s:o, s:o, s:b}", "seq", (json_int_t)list[i].seq,
                                "attempts", (json_int_t)list[i].attempts, "last_error",
                                mpu_json_str(list[i].last_error), "failed",
                                mpu_json_time(list[i].failed_ms), "replay", list[i].replay));
        mps_dead_letters_free(&list, n);
    } else {
        free(error);
    }
    json_object_set_new(o, "dead", dead);
    return o;
}

int mpw_replay(mpw_service *w, const char *name, int64_t from, int64_t *count_r,
               char **error_r)
{
    endpoint *ep = w != NULL ? find(w, name) : NULL;
    if (ep == NULL) {
        *error_r = mpu_asprintf("no webhook endpoint '%s'", name);
        return 404;
    }
    char *error = NULL;
    if (mps_webhook_replay(store(ep), name, from, count_r, &error) < 0) {
        *error_r = error;
        return 500;
    }
    mpu_info(scope, "endpoint \"%s\": %lld dead letters queued for replay", name,
             (long long)*count_r);
    kick_idle(w);
    return 202;
}

/* Endpoint names are restricted to [A-Za-z0-9._-]: safe as label values. */
char *mpw_metrics_text(mpw_service *w)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"mailpulse_webhook_deliveries_total", "counter", "Events delivered (2xx)."},
        {"mailpulse_webhook_failures_total", "counter", "Delivery attempts that failed."},
        {"mailpulse_webhook_dead_lettered_total", "counter",
         "Events given up on after max_attempts."},
        {"mailpulse_webhook_dead_letters", "gauge", "Dead letters stored."},
        {"mailpulse_webhook_lag", "gauge", "Events not yet handled (last seq - cursor)."},
    };
    char *text = mpu_strdup("");
    if (w == NULL || w->endpoints == NULL)
        return text;
    int64_t last = mpe_last_seq(w->events);
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        char *next = mpu_asprintf("%s# HELP %s %s\n# TYPE %s %s\n", text, fam[f].name,
                                  fam[f].help, fam[f].name, fam[f].type);
        free(text);
        text = next;
        for (endpoint *ep = w->endpoints; ep != NULL; ep = ep->next) {
            long long v = 0;
            int64_t dead = 0, queued = 0;
            char *error = NULL;
            switch (f) {
            case 0:
                v = (long long)ep->delivered;
                break;
            case 1:
                v = (long long)ep->failures;
                break;
            case 2:
                v = (long long)ep->dead_lettered;
                break;
            case 3:
                if (mps_webhook_dead_count(store(ep), ep->conf.name, &dead, &queued,
                                           &error) < 0)
                    free(error);
                v = dead;
                break;
            default:
                v = ep->cursor >= 0 && last > ep->cursor ? last - ep->cursor : 0;
                break;
            }
            next = mpu_asprintf("%s%s{endpoint=\"%s\"} %lld\n", text, fam[f].name,
                                ep->conf.name, v);
            free(text);
            text = next;
        }
    }
    return text;
}

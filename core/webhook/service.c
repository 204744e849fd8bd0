/* The delivery service: per endpoint, a window of outbox events on the
 * loop thread (see webhook.h for the model).
 *
 * The window holds, in seq order, every event passing the filters that was
 * read after the durable cursor and is not yet handled at the window's
 * head. Each event also sits in its account's FIFO: only an account's
 * first event may be in flight, so one account's events go out one at a
 * time in seq order while up to max_in_flight accounts are served at once.
 * Accounts whose first event may go now wait in a ready heap, oldest event
 * first. The cursor is the low-water
 * mark: the seq before the oldest unhandled event of the window (or the
 * last seq read when the window is empty); it is written to the store at
 * most every SAVE_INTERVAL_MS, so a crash resends what was delivered
 * above the saved cursor (at-least-once, same webhook-id), never skips.
 * Every wake-up (new events, the periodic check, a replay request, a
 * finished transfer, a retry timer) funnels into pump(). */
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
#define MAX_PAGES_PER_PUMP 20   /* then yield to the loop and continue      */
#define CHECK_INTERVAL_MS 30000
#define FAILING_STREAK 3
#define DEAD_LIST_MAX 100
/* Events held per endpoint (read, not yet handled at the head). It bounds
 * the memory (bodies are kept until delivered) and the duplicates after a
 * crash; an account whose first event keeps failing holds the cursor, and
 * once the window is full other accounts wait for it too. */
#define WINDOW_MAX 10000
/* Cursor writes are batched: one store write per interval at most. */
#define SAVE_INTERVAL_MS 100
#define ACCOUNT_BUCKETS 4096

typedef struct endpoint endpoint;
typedef struct account account;

enum { E_WAITING, E_FLIGHT, E_DONE };

/* One event to deliver. */
typedef struct entry {
    endpoint *ep;
    account *acct;            /* NULL once handled                           */
    struct entry *acct_next;  /* the account's next event                    */
    int64_t seq;
    int state;
    char *msg_id;
    char *body;
    size_t body_len;
    uint32_t attempts;        /* failed attempts                             */
    int64_t next_retry_ms;    /* 0 when no retry is waiting                  */
    mpn_transfer *transfer;
} entry;

/* An account's queue of events in the window. The replay queue (dead
 * letters sent again) is one more such queue, served first. */
struct account {
    endpoint *ep;
    account *hnext;           /* hash chain                                  */
    char *name;
    entry *head, *tail;
    struct event *timer;      /* the retry of the head; created on need      */
    int ready;                /* in the ready heap                           */
    int is_replay;
};

struct endpoint {
    endpoint *next;
    mpw_service *svc;
    mp_webhook_conf conf;     /* own deep copy                               */
    int64_t cursor;           /* low-water mark; -1 until loaded             */
    int64_t saved;            /* the cursor last written to the store        */
    int64_t read_to;          /* the outbox is read up to here               */
    struct event *timer;      /* the next pump                               */
    struct event *save_timer; /* the next cursor write                       */
    entry **win;              /* ring of WINDOW_MAX                          */
    size_t win_head, win_n;
    account *buckets[ACCOUNT_BUCKETS];
    account **ready;          /* min-heap on the first event's seq           */
    size_t ready_n, ready_cap;
    account replay;           /* dead letters queued for replay              */
    int replay_check;         /* the store may hold queued dead letters      */
    uint32_t in_flight;
    /* health */
    uint32_t streak;          /* failed attempts since the last success      */
    int dead_since_success;
    char *last_error;
    int64_t last_success_ms;
    uint64_t delivered, failures, dead_lettered;
};

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

/* ---- entries and accounts ---- */

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

/* A pump as soon as the loop is free, unless one is already due. */
static void kick(endpoint *ep)
{
    if (!evtimer_pending(ep->timer, NULL))
        schedule(ep, 0);
}

static entry *entry_new(endpoint *ep, const mps_event *e)
{
    entry *en = mpu_calloc(1, sizeof *en);
    json_t *o = mpe_event_json(e);
    char id[256];
    mpw_message_id(e->idem_key, e->seq, id, sizeof id);
    en->ep = ep;
    en->seq = e->seq;
    en->state = E_WAITING;
    en->msg_id = mpu_strdup(id);
    en->body = json_dumps(o, JSON_COMPACT);
    en->body_len = en->body != NULL ? strlen(en->body) : 0;
    json_decref(o);
    return en;
}

static void entry_release(entry *en)
{
    mpn_cancel(en->ep->svc->net, &en->transfer);
    free(en->msg_id);
    free(en->body);
    en->msg_id = NULL;
    en->body = NULL;
    en->body_len = 0;
}

static uint32_t hash(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h % ACCOUNT_BUCKETS;
}

static account *account_get(endpoint *ep, const char *name)
{
    if (name == NULL)
        name = "";
    account **slot = &ep->buckets[hash(name)];
    for (account *a = *slot; a != NULL; a = a->hnext)
        if (strcmp(a->name, name) == 0)
            return a;
    account *a = mpu_calloc(1, sizeof *a);
    a->ep = ep;
    a->name = mpu_strdup(name);
    a->hnext = *slot;
    *slot = a;
    return a;
}

static void account_free(account *a)
{
    if (a->timer != NULL)
        event_free(a->timer);
    free(a->name);
    free(a);
}

/* An account with nothing left in the window is forgotten: memory stays
 * proportional to the window, not to every account ever seen. */
static void account_drop_if_empty(account *a)
{
    if (a->head != NULL || a->ready || a->is_replay ||
        (a->timer != NULL && evtimer_pending(a->timer, NULL)))
        return;
    endpoint *ep = a->ep;
    for (account **p = &ep->buckets[hash(a->name)]; *p != NULL; p = &(*p)->hnext) {
        if (*p == a) {
            *p = a->hnext;
            account_free(a);
            return;
        }
    }
}

/* The ready accounts form a min-heap on the seq of their first event, so
 * the oldest event that may go is always sent first (with max_in_flight 1
 * that is exactly the outbox order); the replay queue sorts before all. A
 * ready account's first event does not change until it is sent. */
static int64_t ready_key(const account *a)
{
    return a->is_replay ? -1 : a->head->seq;
}

static void ready_swap(endpoint *ep, size_t i, size_t j)
{
    account *t = ep->ready[i];
    ep->ready[i] = ep->ready[j];
    ep->ready[j] = t;
}

static void ready_push(account *a)
{
    endpoint *ep = a->ep;
    if (a->ready || a->head == NULL || a->head->state != E_WAITING)
        return;
    if (ep->ready_n == ep->ready_cap) {
        ep->ready_cap = ep->ready_cap ? ep->ready_cap * 2 : 64;
        ep->ready = mpu_realloc(ep->ready, ep->ready_cap * sizeof *ep->ready);
    }
    a->ready = 1;
    size_t i = ep->ready_n++;
    ep->ready[i] = a;
    while (i > 0 && ready_key(ep->ready[(i - 1) / 2]) > ready_key(ep->ready[i])) {
        ready_swap(ep, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static account *ready_pop(endpoint *ep)
{
    if (ep->ready_n == 0)
        return NULL;
    account *a = ep->ready[0];
    ep->ready[0] = ep->ready[--ep->ready_n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < ep->ready_n && ready_key(ep->ready[l]) < ready_key(ep->ready[m]))
            m = l;
        if (r < ep->ready_n && ready_key(ep->ready[r]) < ready_key(ep->ready[m]))
            m = r;
        if (m == i)
            break;
        ready_swap(ep, i, m);
        i = m;
    }
    a->ready = 0;
    return a;
}

static void account_append(account *a, entry *en)
{
    en->acct = a;
    if (a->tail != NULL)
        a->tail->acct_next = en;
    else
        a->head = en;
    a->tail = en;
    if (a->head == en && (a->timer == NULL || !evtimer_pending(a->timer, NULL)))
        ready_push(a);
}

/* The account's head is handled: the next event of the account may go. */
static void account_pop(account *a)
{
    entry *en = a->head;
    a->head = en->acct_next;
    if (a->head == NULL)
        a->tail = NULL;
    en->acct_next = NULL;
    en->acct = NULL;
    ready_push(a);
}

static void on_account_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    account *a = arg;
    ready_push(a);
    kick(a->ep);
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
    ep->cursor = ep->saved = ep->read_to = cursor;
    return 0;
}

static void save_cursor(endpoint *ep)
{
    char *error = NULL;
    if (ep->cursor <= ep->saved)
        return;
    /* Unsaved, the cursor is only behind: a restart sends again what was
     * already delivered, which at-least-once allows. */
    if (mps_webhook_cursor_set(store(ep), ep->conf.name, ep->cursor, &error) < 0) {
        mpu_warn(scope, "endpoint \"%s\": cannot save its cursor: %s", ep->conf.name,
                 error);
        free(error);
        return;
    }
    ep->saved = ep->cursor;
}

static void on_save_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    save_cursor(arg);
}

/* Pops the handled events at the window's head and moves the cursor to
 * just before the oldest unhandled one; the write follows within
 * SAVE_INTERVAL_MS. */
static void advance(endpoint *ep)
{
    while (ep->win_n > 0 && ep->win[ep->win_head]->state == E_DONE) {
        free(ep->win[ep->win_head]);
        ep->win_head = (ep->win_head + 1) % WINDOW_MAX;
        ep->win_n--;
    }
    int64_t low = ep->win_n > 0 ? ep->win[ep->win_head]->seq - 1 : ep->read_to;
    if (low > ep->cursor)
        ep->cursor = low;
    if (ep->cursor > ep->saved && !evtimer_pending(ep->save_timer, NULL)) {
        struct timeval tv = {0, SAVE_INTERVAL_MS * 1000};
        evtimer_add(ep->save_timer, &tv);
    }
}

/* The next dead letter queued for replay into the replay queue.
 * 0: queued, 1: none, -1: store error. */
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
            account_append(&ep->replay, entry_new(ep, &list[0]));
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

/* Reads new events passing the filters into the window. 0: the outbox is
 * read up to its last committed event or the window is full, 2: more pages
 * to read later, -1: store error. */
static int fill(endpoint *ep)
{
    for (int page = 0; page < MAX_PAGES_PER_PUMP; page++) {
        /* Every event up to `known` is committed, so a short page below
         * proves there is nothing else up to it. */
        int64_t known = mpe_last_seq(ep->svc->events);
        if (ep->read_to >= known || ep->win_n >= WINDOW_MAX)
            return 0;
        size_t room = WINDOW_MAX - ep->win_n;
        size_t limit = room < PAGE ? room : PAGE;
        mps_event *list = NULL;
        size_t n = 0;
        char *error = NULL;
        if (mps_events_after(store(ep), ep->read_to, limit,
                             (const char *const *)ep->conf.events,
                             (const char *const *)ep->conf.accounts, &list, &n,
                             &error) < 0) {
            mpu_error(scope, "endpoint \"%s\": cannot read the outbox: %s", ep->conf.name,
                      error);
            free(error);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            /* Events the filters skip are handled by being read. */
            if (!mpw_filter_match(&ep->conf, list[i].type, list[i].account,
                                  list[i].folder))
                continue;
            entry *en = entry_new(ep, &list[i]);
            ep->win[(ep->win_head + ep->win_n) % WINDOW_MAX] = en;
            ep->win_n++;
            account_append(account_get(ep, list[i].account), en);
        }
        int64_t last = n > 0 ? list[n - 1].seq : ep->read_to;
        mps_events_free(&list, n);
        if (n == limit) {
            ep->read_to = last;
            continue;
        }
        ep->read_to = known > last ? known : last;
        return 0;
    }
    return 2;
}

/* ---- delivery ---- */

static void on_done(void *arg, const mpn_result *res);

enum { N_HEADERS = 6 };

/* Fills lines[0..N_HEADERS-1] (allocated) and a NULL terminator. */
static void headers_for(const entry *en, int64_t now_s, const char *signature,
                        char *lines[N_HEADERS + 1])
{
    lines[0] = mpu_asprintf("webhook-id: %s", en->msg_id);
    lines[1] = mpu_asprintf("webhook-timestamp: %lld", (long long)now_s);
    lines[2] = mpu_asprintf("webhook-signature: %s", signature);
    lines[3] = mpu_strdup("content-type: application/json");
    lines[4] = mpu_strdup("user-agent: mailpulse/" MP_VERSION);
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    lines[5] = mpu_strdup("Expect:");
    lines[N_HEADERS] = NULL;
}

static void attempt_failed(entry *en, const char *error, uint32_t retry_after_s);

static void send_entry(entry *en)
{
    endpoint *ep = en->ep;
    char signature[MPW_SIGNATURE_SIZE];
    int64_t now_s = mpu_now_ms() / 1000;
    char *error = NULL;
    en->state = E_FLIGHT;
    ep->in_flight++;
    if (en->body == NULL || ep->conf.key == NULL ||
        mpw_sign(ep->conf.key, ep->conf.key_len, en->msg_id, now_s, en->body, en->body_len,
                 signature, sizeof signature) < 0) {
        attempt_failed(en, "cannot sign the request", 0);
        return;
    }
    en->next_retry_ms = 0;
    char *lines[N_HEADERS + 1];
    headers_for(en, now_s, signature, lines);
    /* The receiver's answer body is never read: no bound needed, and a
     * redirect (resending a signed body elsewhere) is never followed. The
     * multi handle keeps connections open between requests (keep-alive). */
    mpn_request req = {
        .method = "POST",
        .url = ep->conf.url,
        .headers = (const char *const *)lines,
        .body = en->body,
        .body_len = en->body_len,
        .timeout_ms = ep->conf.timeout * 1000u,
        .discard_body = 1,
    };
    en->transfer = mpn_start(ep->svc->net, &req, on_done, en, &error);
    for (size_t i = 0; i < N_HEADERS; i++)
        free(lines[i]);
    if (en->transfer == NULL) {
        attempt_failed(en, error, 0);
        free(error);
    }
}

/* The event is handled (delivered or dead-lettered): its account moves on
 * and the cursor may advance. */
static void handled(entry *en)
{
    endpoint *ep = en->ep;
    account *a = en->acct;
    en->state = E_DONE;
    entry_release(en);
    account_pop(a);
    if (a->is_replay) {
        free(en);
        if (a->head == NULL)
            ep->replay_check = 1;
    } else {
        account_drop_if_empty(a);
        advance(ep);
    }
    kick(ep);
}

static void retry_later(entry *en, uint32_t delay_ms)
{
    account *a = en->acct;
    en->state = E_WAITING;
    en->next_retry_ms = mpu_now_ms() + delay_ms;
    if (a->timer == NULL)
        a->timer = evtimer_new(en->ep->svc->base, on_account_timer, a);
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(a->timer, &tv);
    kick(en->ep); /* a slot is free for another account */
}

static void dead_letter(entry *en)
{
    endpoint *ep = en->ep;
    char *error = NULL;
    /* The cursor is not moved here: it follows the window's low-water
     * mark like every other handled event. */
    if (mps_webhook_dead_letter(store(ep), ep->conf.name, en->seq, en->attempts,
                                ep->last_error, -1, &error) < 0) {
        /* Nothing moved: keep retrying this event rather than lose it. */
        mpu_error(scope, "endpoint \"%s\": cannot record dead letter %lld: %s",
                  ep->conf.name, (long long)en->seq, error);
        free(error);
        retry_later(en, ep->conf.retry_max * 1000u);
        return;
    }
    mpu_warn(scope, "endpoint \"%s\": event %lld dead-lettered after %u attempts (%s)",
             ep->conf.name, (long long)en->seq, en->attempts,
             ep->last_error ? ep->last_error : "?");
    ep->dead_lettered++;
    ep->dead_since_success = 1;
    handled(en);
}

static void attempt_failed(entry *en, const char *error, uint32_t retry_after_s)
{
    endpoint *ep = en->ep;
    ep->in_flight--;
    en->attempts++;
    ep->streak++;
    ep->failures++;
    set_error(ep, error);
    if (en->attempts >= ep->conf.max_attempts) {
        dead_letter(en);
        return;
    }
    uint32_t random = 0;
    mpu_random(&random, sizeof random);
    uint32_t delay = mpw_backoff_ms(&ep->conf, en->attempts, retry_after_s, random);
    mpu_info(scope, "endpoint \"%s\": event %lld attempt %u failed (%s); retry in %u ms",
             ep->conf.name, (long long)en->seq, en->attempts, error, delay);
    retry_later(en, delay);
}

static void delivered(entry *en)
{
    endpoint *ep = en->ep;
    char *error = NULL;
    ep->in_flight--;
    if (en->acct->is_replay &&
        mps_webhook_dead_delete(store(ep), ep->conf.name, en->seq, &error) < 0) {
        mpu_warn(scope, "endpoint \"%s\": cannot clear dead letter %lld: %s", ep->conf.name,
                 (long long)en->seq, error);
        free(error);
    }
    mpu_debug(scope, "endpoint \"%s\": delivered event %lld", ep->conf.name,
              (long long)en->seq);
    ep->delivered++;
    ep->streak = 0;
    ep->dead_since_success = 0;
    ep->last_success_ms = mpu_now_ms();
    handled(en);
}

static void on_done(void *arg, const mpn_result *res)
{
    entry *en = arg;
    en->transfer = NULL;
    if (res->kind == MPN_OK && res->status >= 200 && res->status <= 299) {
        delivered(en);
        return;
    }
    char *why = res->kind == MPN_OK ? mpu_asprintf("HTTP %ld", res->status)
                                    : mpu_strdup(res->error);
    attempt_failed(en, why, (res->retry_after_ms + 999u) / 1000u);
    free(why);
}

static void pump(endpoint *ep)
{
    if (ep->cursor < 0 && load_cursor(ep) < 0) {
        schedule(ep, CHECK_INTERVAL_MS);
        return;
    }
    if (ep->replay_check && ep->replay.head == NULL) {
        int rc = next_replay(ep);
        if (rc != 0)
            ep->replay_check = 0; /* none, or a store error: the check retries */
    }
    int rc = fill(ep);
    /* The window's head may be handled already (filters, an empty page). */
    advance(ep);
    uint32_t limit = ep->conf.max_in_flight > 0 ? ep->conf.max_in_flight : 1;
    while (ep->in_flight < limit) {
        account *a = ready_pop(ep);
        if (a == NULL)
            break;
        send_entry(a->head);
    }
    if (rc == 2)
        kick(ep);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

static void kick_all(mpw_service *w, int replay)
{
    for (endpoint *ep = w->endpoints; ep != NULL; ep = ep->next) {
        if (replay)
            ep->replay_check = 1;
        kick(ep);
    }
}

static void on_events(int64_t last_seq, void *arg)
{
    (void)last_seq;
    kick_all(arg, 0);
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kick_all(arg, 1);
}

/* ---- endpoints ---- */

static endpoint *endpoint_new(mpw_service *w, const mp_webhook_conf *conf)
{
    endpoint *ep = mpu_calloc(1, sizeof *ep);
    ep->svc = w;
    conf_copy(&ep->conf, conf);
    ep->cursor = ep->saved = ep->read_to = -1;
    ep->timer = evtimer_new(w->base, on_timer, ep);
    ep->save_timer = evtimer_new(w->base, on_save_timer, ep);
    ep->win = mpu_calloc(WINDOW_MAX, sizeof *ep->win);
    ep->replay.ep = ep;
    ep->replay.is_replay = 1;
    ep->replay.name = mpu_strdup("");
    ep->replay_check = 1;
    /* Now, not at the first pump: "from now on" means from this moment,
     * before any account starts syncing. A failure is retried by pump. */
    load_cursor(ep);
    schedule(ep, 0);
    return ep;
}

static void endpoint_free(endpoint *ep)
{
    /* What was delivered is recorded before the endpoint goes (a stop or
     * a reload), so only a crash resends it. */
    if (ep->cursor >= 0)
        save_cursor(ep);
    for (size_t i = 0; i < ep->win_n; i++) {
        entry *en = ep->win[(ep->win_head + i) % WINDOW_MAX];
        entry_release(en);
        free(en);
    }
    free(ep->win);
    free(ep->ready);
    for (size_t b = 0; b < ACCOUNT_BUCKETS; b++) {
        while (ep->buckets[b] != NULL) {
            account *a = ep->buckets[b];
            ep->buckets[b] = a->hnext;
            account_free(a);
        }
    }
    for (entry *en = ep->replay.head; en != NULL;) {
        entry *next = en->acct_next;
        entry_release(en);
        free(en);
        en = next;
    }
    if (ep->replay.timer != NULL)
        event_free(ep->replay.timer);
    free(ep->replay.name);
    event_free(ep->timer);
    event_free(ep->save_timer);
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
    kick_all(w, 0);
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

/* The event that holds things up: the replay in progress, else the
 * unhandled event with the most failed attempts (the oldest among equals),
 * else the oldest unhandled one. NULL when nothing is pending. */
static const entry *pending_entry(const endpoint *ep)
{
    if (ep->replay.head != NULL)
        return ep->replay.head;
    const entry *best = NULL;
    for (size_t i = 0; i < ep->win_n; i++) {
        const entry *en = ep->win[(ep->win_head + i) % WINDOW_MAX];
        if (en->state != E_DONE && (best == NULL || en->attempts > best->attempts))
            best = en;
    }
    return best;
}

static const char *state_name(const endpoint *ep, const entry *pending)
{
    uint32_t attempts = pending != NULL ? pending->attempts : 0;
    if (ep->streak == 0 && attempts == 0 && !ep->dead_since_success)
        return "ok";
    if (ep->streak >= FAILING_STREAK || attempts >= FAILING_STREAK || ep->dead_since_success)
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
    const entry *pending = pending_entry(ep);
    json_object_set_new(o, "state", json_string(state_name(ep, pending)));
    json_object_set_new(o, "pending_seq",
                        pending != NULL ? json_integer(pending->seq) : json_null());
    json_object_set_new(o, "replaying", json_boolean(ep->replay.head != NULL));
    json_object_set_new(o, "attempts", json_integer(pending != NULL ? pending->attempts : 0));
    json_object_set_new(o, "next_retry",
                        mpu_json_time(pending != NULL ? pending->next_retry_ms : 0));
    json_object_set_new(o, "in_flight", json_integer(ep->in_flight));
    json_object_set_new(o, "max_in_flight", json_integer(ep->conf.max_in_flight));
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
    ep->replay_check = 1;
    kick(ep);
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

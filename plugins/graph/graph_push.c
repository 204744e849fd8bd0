/*
 * graph.so push, worker side: the folder subscriptions' lifecycle at Graph
 * (providers.md §3 "Create subscription", "Renew", "Lifecycle
 * notifications") and the account's push state.
 *
 * One subscription per synced folder (resource
 * /users/{u}/mailFolders('{id}')/messages), so a notification names its
 * folder through its subscriptionId and push_verify can hint exactly that
 * folder without a Graph round trip on the loop thread. Graph allows 1000
 * subscriptions per mailbox for all apps together; past
 * folder_subscriptions_max (200) synced folders one mailbox-wide
 * subscription (/users/{u}/messages, hints for every folder) replaces
 * them.
 *
 * Each create makes Graph run the validation handshake against both URLs
 * before it answers; that arrives on the loop thread (graph_webhook.c)
 * while this worker waits, so nothing here holds the instance lock across
 * a request.
 */
#include "graph_driver.h"
#include "graph_push.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#define DAY_S (24 * 3600)

static graph_push_inst *inst_of(const graph_account *a)
{
    return a->inst->push;
}

static graph_push_acct *acct_of(const graph_account *a)
{
    return a->push;
}

static char *xstrdup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s == NULL)
        abort();
    snprintf(s, n, "%s%s", a, b);
    return s;
}

graph_push_inst *graph_push_inst_new(const char *public_url, const char *instance,
                                     int64_t minutes, size_t max_folders)
{
    graph_push_inst *pi = calloc(1, sizeof *pi);
    if (pi == NULL)
        abort();
    pthread_mutex_init(&pi->lock, NULL);
    pi->minutes = minutes;
    pi->max_folders = max_folders;
    atomic_init(&pi->validations, 0);
    if (public_url != NULL && instance != NULL) {
        char *name = graph_escape(instance);
        char *base = join(public_url, "/push/");
        pi->notify_url = join(base, name);
        pi->lifecycle_url = join(pi->notify_url, "/lifecycle");
        free(base);
        free(name);
    }
    return pi;
}

void graph_push_inst_free(graph_push_inst *pi)
{
    if (pi == NULL)
        return;
    free(pi->accounts);
    free(pi->notify_url);
    free(pi->lifecycle_url);
    pthread_mutex_destroy(&pi->lock);
    free(pi);
}

void graph_push_open(graph_account *a, const mp_config *cfg)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = calloc(1, sizeof *p);
    if (p == NULL)
        abort();
    /* The host syncs only the folders of the account's `folders` list
     * (when given): subscribe to those only. */
    size_t n = graph_host->config_list_len(cfg, "folders");
    if (n > 0) {
        p->allowed = calloc(n, sizeof *p->allowed);
        if (p->allowed == NULL)
            abort();
        for (size_t i = 0; i < n; i++)
            p->allowed[p->n_allowed++] =
                xstrdup_or_null(graph_host->config_list_string(cfg, "folders", i));
    }
    /* The set survives restarts in driver state, so notifications that
     * arrive before the first sync run are verified (one small store read
     * per account at open). */
    char *text = NULL;
    mp_error err;
    memset(&err, 0, sizeof err);
    if (pi->notify_url != NULL &&
        graph_host->state_get(a->acct, GRAPH_SUBS_KEY, &text, &err) == MP_OK) {
        if (graph_subs_parse(text, p) < 0)
            graph_log(a, MP_LOG_WARNING,
                      "push: the stored subscription set is unreadable;"
                      " subscribing again");
        p->enrolled = p->n > 0;
        OPENSSL_cleanse(text, strlen(text)); /* it holds the clientStates */
        graph_host->free(text);
    }
    pthread_mutex_lock(&pi->lock);
    a->push = p;
    if (pi->n == pi->cap) {
        pi->cap = pi->cap ? pi->cap * 2 : 16;
        pi->accounts = realloc(pi->accounts, pi->cap * sizeof *pi->accounts);
        if (pi->accounts == NULL)
            abort();
    }
    pi->accounts[pi->n++] = a;
    pthread_mutex_unlock(&pi->lock);
}

void graph_push_close(graph_account *a)
{
    graph_push_inst *pi = inst_of(a);
    if (pi == NULL || a->push == NULL)
        return;
    pthread_mutex_lock(&pi->lock);
    for (size_t i = 0; i < pi->n; i++)
        if (pi->accounts[i] == a) {
            pi->accounts[i] = pi->accounts[--pi->n];
            break;
        }
    graph_push_acct *p = a->push;
    a->push = NULL;
    pthread_mutex_unlock(&pi->lock);
    graph_subs_free(p);
    free(p);
}

/* ---- requests ---- */

static void iso_in(int64_t minutes, char *buf, size_t cap)
{
    graph_time_format(graph_host->now_ms() / 1000 + minutes * 60, buf, cap);
}

/* A rejected lifetime: Graph's 400 says "Subscription expiration can only
 * be N minutes in the future" (ExtensionError; providers.md §3). Its "must
 * be in the future" (a clock behind Graph's) is not one. */
static int lifetime_refused(mp_status st, const mp_error *err)
{
    return st == MP_FATAL && strstr(err->text, "xpiration can only be") != NULL;
}

/* Read id and expirationDateTime from a subscription object. */
static mp_status read_sub(const mp_http_response *resp, char **id_r, int64_t *exp_r,
                          const char *what, mp_error *err)
{
    json_t *o = json_loadb((const char *)resp->body, resp->body_len, 0, NULL);
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *exp = json_string_value(json_object_get(o, "expirationDateTime"));
    int64_t t = 0;
    if ((id_r != NULL &&
         (id == NULL || id[0] == '\0' || strlen(id) > GRAPH_NOTIFY_MAX_ID)) ||
        exp == NULL || graph_time_parse(exp, &t) < 0) {
        json_decref(o);
        return mp_fail(err, MP_RETRY, "%s: Graph's answer lacks id or expirationDateTime",
                       what);
    }
    if (id_r != NULL)
        *id_r = xstrdup_or_null(id);
    *exp_r = t;
    json_decref(o);
    return MP_OK;
}

static mp_status sub_delete(graph_account *a, const char *id, mp_error *err);

/* POST /subscriptions for `folder_id` (NULL: the whole mailbox). Fills
 * *out (owned by the caller). */
static mp_status sub_create(graph_account *a, const char *folder_id, const char *folder,
                            graph_sub *out, mp_error *err)
{
    graph_push_inst *pi = inst_of(a);
    memset(out, 0, sizeof *out);
    /* The resource is an OData path inside JSON, as Graph's examples write
     * it: the user (graph_user_check allows no '/', '?', '#', space) and
     * the folder id as they are; an id with anything that would end the
     * quoted literal or the segment is percent-escaped instead. */
    const char *user = a->user != NULL ? a->user : "";
    char *fid = folder_id == NULL                      ? NULL
                : strpbrk(folder_id, "'/?#% ") != NULL ? graph_escape(folder_id)
                                                       : strdup(folder_id);
    size_t n = strlen(user) + (fid != NULL ? strlen(fid) : 0) + 48;
    char *resource = malloc(n);
    if (resource == NULL || (folder_id != NULL && fid == NULL))
        abort();
    if (fid != NULL)
        snprintf(resource, n, "/users/%s/mailFolders('%s')/messages", user, fid);
    else
        snprintf(resource, n, "/users/%s/messages", user);
    free(fid);
    char *secret = graph_client_state();
    if (secret == NULL) {
        free(resource);
        return mp_fail(err, MP_RETRY, "push: the random generator failed");
    }
    char *url = join(a->inst->api_url, "/subscriptions");
    mp_status st = MP_OK;
    unsigned long seen = atomic_load(&pi->validations);
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&pi->lock);
        int64_t minutes = pi->minutes;
        pthread_mutex_unlock(&pi->lock);
        char when[40];
        iso_in(minutes, when, sizeof when);
        json_t *body =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "changeType",
                      "created,updated,deleted", "notificationUrl", pi->notify_url,
                      "lifecycleNotificationUrl", pi->lifecycle_url, "resource", resource,
                      "expirationDateTime", when, "clientState", secret);
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (text == NULL)
            abort();
        graph_call c = {.method = "POST",
                        .url = url,
                        .content_type = "application/json",
                        .body = (const uint8_t *)text,
                        .body_len = strlen(text)};
        mp_http_response resp;
        st = graph_http_call(a, &c, "create subscription", &resp, err);
        OPENSSL_cleanse(text, strlen(text)); /* it holds the clientState */
        free(text);
        if (st == MP_OK) {
            st = read_sub(&resp, &out->id, &out->expires_at, "create subscription", err);
            graph_host->http_free(&resp);
            break;
        }
        if (attempt == 0 && minutes > GRAPH_SUB_FALLBACK_MINUTES &&
            lifetime_refused(st, err)) {
            graph_log(a, MP_LOG_WARNING,
                      "push: Graph refused a %lld-minute subscription; using %d minutes",
                      (long long)minutes, GRAPH_SUB_FALLBACK_MINUTES);
            pthread_mutex_lock(&pi->lock);
            pi->minutes = GRAPH_SUB_FALLBACK_MINUTES;
            pthread_mutex_unlock(&pi->lock);
            memset(err, 0, sizeof *err);
            continue;
        }
        break;
    }
    free(url);
    free(resource);
    if (st == MP_OK && atomic_load(&pi->validations) == seen) {
        /* Graph validated the URL before it answered, but not here: the
         * URL leads to another receiver (another instance, another
         * daemon). Its notifications would never be ours. */
        mp_error derr;
        memset(&derr, 0, sizeof derr);
        (void)sub_delete(a, out->id, &derr);
        free(out->id);
        out->id = NULL;
        st = mp_fail(
            err, MP_FATAL,
            "create subscription: Graph validated %s but this instance received"
            " no validation request: public_url leads elsewhere (another instance or"
            " receiver)",
            pi->notify_url);
    }
    if (st != MP_OK) {
        free(secret);
        return st;
    }
    out->folder_id = xstrdup_or_null(folder_id);
    out->folder = xstrdup_or_null(folder);
    out->secret = secret;
    graph_log(a, MP_LOG_INFO, "push: subscribed %s (subscription %s)",
              folder != NULL ? folder : "the whole mailbox", out->id);
    return MP_OK;
}

static char *sub_url(const graph_account *a, const char *id, const char *tail)
{
    char *eid = graph_escape(id);
    size_t n = strlen(a->inst->api_url) + strlen(eid) + strlen(tail) + 32;
    char *u = malloc(n);
    if (u == NULL)
        abort();
    snprintf(u, n, "%s/subscriptions/%s%s", a->inst->api_url, eid, tail);
    free(eid);
    return u;
}

/* PATCH the expiry (which also reauthorizes). MP_SKIP: Graph no longer
 * knows the subscription. */
static mp_status sub_renew(graph_account *a, const char *id, int64_t *exp_r,
                           mp_error *err)
{
    graph_push_inst *pi = inst_of(a);
    char *url = sub_url(a, id, "");
    mp_status st = MP_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&pi->lock);
        int64_t minutes = pi->minutes;
        pthread_mutex_unlock(&pi->lock);
        char when[40], text[96];
        iso_in(minutes, when, sizeof when);
        snprintf(text, sizeof text, "{\"expirationDateTime\":\"%s\"}", when);
        graph_call c = {.method = "PATCH",
                        .url = url,
                        .content_type = "application/json",
                        .body = (const uint8_t *)text,
                        .body_len = strlen(text)};
        mp_http_response resp;
        st = graph_http_call(a, &c, "renew subscription", &resp, err);
        if (st == MP_OK) {
            st = read_sub(&resp, NULL, exp_r, "renew subscription", err);
            graph_host->http_free(&resp);
            break;
        }
        if (attempt == 0 && minutes > GRAPH_SUB_FALLBACK_MINUTES &&
            lifetime_refused(st, err)) {
            pthread_mutex_lock(&pi->lock);
            pi->minutes = GRAPH_SUB_FALLBACK_MINUTES;
            pthread_mutex_unlock(&pi->lock);
            memset(err, 0, sizeof *err);
            continue;
        }
        break;
    }
    free(url);
    return st;
}

/* DELETE; a subscription Graph does not know is already gone. */
static mp_status sub_delete(graph_account *a, const char *id, mp_error *err)
{
    char *url = sub_url(a, id, "");
    graph_call c = {.method = "DELETE", .url = url};
    mp_http_response resp;
    mp_status st = graph_http_call(a, &c, "delete subscription", &resp, err);
    free(url);
    if (st == MP_OK)
        graph_host->http_free(&resp);
    if (st == MP_SKIP) {
        memset(err, 0, sizeof *err);
        st = MP_OK;
    }
    return st;
}

static mp_status sub_reauthorize(graph_account *a, const char *id, mp_error *err)
{
    char *url = sub_url(a, id, "/reauthorize");
    graph_call c = {.method = "POST", .url = url};
    mp_http_response resp;
    mp_status st = graph_http_call(a, &c, "reauthorize subscription", &resp, err);
    free(url);
    if (st == MP_OK)
        graph_host->http_free(&resp);
    return st;
}

/* ---- the set ---- */

static void persist(graph_account *a)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    pthread_mutex_lock(&pi->lock);
    char *text = p->n > 0 ? graph_subs_dump(p) : NULL;
    pthread_mutex_unlock(&pi->lock);
    mp_error err;
    memset(&err, 0, sizeof err);
    if (graph_host->state_put(a->acct, GRAPH_SUBS_KEY, text, &err) != MP_OK)
        graph_log(a, MP_LOG_WARNING, "push: cannot store the subscription set: %s",
                  err.text);
    if (text != NULL)
        OPENSSL_cleanse(text, strlen(text)); /* it holds the clientStates */
    free(text);
}

/* The account's status: the push state text and the profile listing each
 * subscription and the lifecycle counters (never a clientState). */
static void publish(graph_account *a, int live)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    json_t *subs = json_array();
    pthread_mutex_lock(&pi->lock);
    int64_t first = 0;
    size_t n = p->n;
    for (size_t i = 0; i < p->n; i++) {
        const graph_sub *s = &p->subs[i];
        char when[40];
        graph_time_format(s->expires_at, when, sizeof when);
        json_array_append_new(subs, json_pack("{s:s, s:s, s:s}", "folder",
                                              s->folder != NULL ? s->folder : "*", "id",
                                              s->id, "expires", when));
        if (first == 0 || s->expires_at < first)
            first = s->expires_at;
    }
    uint64_t ev[GRAPH_NOTE_LIFECYCLE_N];
    memcpy(ev, p->events, sizeof ev);
    p->profile_dirty = 0;
    pthread_mutex_unlock(&pi->lock);
    json_t *events = json_object();
    for (int k = 0; k < GRAPH_NOTE_LIFECYCLE_N; k++)
        json_object_set_new(events, graph_note_event_name((graph_note_kind)(k + 1)),
                            json_integer((json_int_t)ev[k]));
    json_t *prof = graph_profile_base(a); /* the setup parameters (graph_profile.c) */
    json_object_set_new(prof, "subscriptions", subs);
    json_object_set_new(prof, "push_events", events);
    char *text = json_dumps(prof, JSON_COMPACT);
    json_decref(prof);
    if (text != NULL)
        graph_host->set_profile(a->acct, text);
    free(text);
    if (!live)
        return;
    char when[40], line[400];
    graph_time_format(first, when, sizeof when);
    snprintf(line, sizeof line,
             "%zu subscription%s, earliest expiry %s; lifecycle events:"
             " reauthorizationRequired %llu, subscriptionRemoved %llu, missed %llu",
             n, n == 1 ? "" : "s", when, (unsigned long long)ev[0],
             (unsigned long long)ev[1], (unsigned long long)ev[2]);
    graph_host->push_status(a->acct, MP_PUSH_STATE_LIVE, line);
}

void graph_push_profile(graph_account *a)
{
    publish(a, 0);
}

static int allowed(const graph_push_acct *p, const char *name)
{
    if (p->allowed == NULL)
        return 1;
    for (size_t i = 0; i < p->n_allowed; i++)
        if (p->allowed[i] != NULL && strcmp(p->allowed[i], name) == 0)
            return 1;
    return 0;
}

/* Index in the set of the subscription for folder_id (NULL: mailbox-wide),
 * or -1. Caller holds the lock. */
static long find_folder(const graph_push_acct *p, const char *folder_id)
{
    for (size_t i = 0; i < p->n; i++) {
        const char *f = p->subs[i].folder_id;
        if ((f == NULL && folder_id == NULL) ||
            (f != NULL && folder_id != NULL && strcmp(f, folder_id) == 0))
            return (long)i;
    }
    return -1;
}

static long find_id(const graph_push_acct *p, const char *id)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->subs[i].id, id) == 0)
            return (long)i;
    return -1;
}

/* Put `s` in the set in place of the subscription `old_id` (NULL: added). */
static void set_replace(graph_account *a, const char *old_id, const graph_sub *s)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    pthread_mutex_lock(&pi->lock);
    long i = old_id != NULL ? find_id(p, old_id) : -1;
    if (i >= 0)
        graph_subs_remove(p, (size_t)i);
    if (s != NULL)
        graph_subs_add(p, s);
    pthread_mutex_unlock(&pi->lock);
}

/* Make the set cover exactly the synced folders: new ones subscribed, gone
 * ones deleted at Graph, renamed ones renamed. The first failed create
 * ends the pass and is returned; what succeeded is kept. */
static mp_status reconcile(graph_account *a, mp_error *err)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    if (!a->folders_loaded) {
        mp_status st = graph_folders_load(a, err);
        if (st != MP_OK)
            return st;
    }
    size_t nw = 0;
    for (size_t i = 0; i < a->n_folders; i++)
        if (allowed(p, a->folders[i].path))
            nw++;
    int wide = nw > pi->max_folders;
    /* Deletions first: the slots they free count against Graph's limit. */
    for (;;) {
        char *gone = NULL;
        pthread_mutex_lock(&pi->lock);
        for (size_t i = 0; i < p->n && gone == NULL; i++) {
            graph_sub *s = &p->subs[i];
            const graph_folder *f =
                s->folder_id != NULL ? graph_folder_by_id(a, s->folder_id) : NULL;
            int keep = wide ? s->folder_id == NULL : f != NULL && allowed(p, f->path);
            if (keep && f != NULL && strcmp(f->path, s->folder) != 0) {
                free(s->folder);
                s->folder = xstrdup_or_null(f->path);
            }
            if (!keep)
                gone = xstrdup_or_null(s->id);
        }
        pthread_mutex_unlock(&pi->lock);
        if (gone == NULL)
            break;
        mp_error derr;
        memset(&derr, 0, sizeof derr);
        if (sub_delete(a, gone, &derr) != MP_OK)
            graph_log(a, MP_LOG_WARNING, "push: %s (dropped from the set anyway)",
                      derr.text);
        else
            graph_log(a, MP_LOG_INFO, "push: subscription %s deleted (folder gone)",
                      gone);
        set_replace(a, gone, NULL);
        free(gone);
    }
    mp_status first = MP_OK;
    for (size_t i = 0; i < (wide ? 1 : a->n_folders); i++) {
        const graph_folder *f = wide ? NULL : &a->folders[i];
        if (f != NULL && !allowed(p, f->path))
            continue;
        pthread_mutex_lock(&pi->lock);
        long have = find_folder(p, f != NULL ? f->id : NULL);
        pthread_mutex_unlock(&pi->lock);
        if (have >= 0)
            continue;
        graph_sub s;
        mp_error cerr;
        memset(&cerr, 0, sizeof cerr);
        mp_status st = sub_create(a, f != NULL ? f->id : NULL, f != NULL ? f->path : NULL,
                                  &s, &cerr);
        if (st == MP_OK) {
            set_replace(a, NULL, &s);
            graph_sub_clear(&s);
        } else {
            /* The others would fail alike (a validation timeout, a missing
             * permission): stop here; the next push renewal continues. */
            first = st;
            *err = cerr;
            break;
        }
    }
    persist(a);
    return first;
}

/* Renew what is due: a subscription within a day of its expiry (or half
 * its lifetime, for short ones) gets a PATCH; one Graph no longer knows
 * (404) is created again for its folder. */
static mp_status renew_due(graph_account *a, int force, mp_error *err)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    int64_t now = graph_host->now_ms() / 1000;
    pthread_mutex_lock(&pi->lock);
    int64_t window = pi->minutes * 60 / 2;
    pthread_mutex_unlock(&pi->lock);
    if (window > DAY_S)
        window = DAY_S;
    mp_status first = MP_OK;
    for (size_t k = 0;; k++) {
        char *id = NULL, *fid = NULL, *folder = NULL;
        pthread_mutex_lock(&pi->lock);
        if (k < p->n && (force || p->subs[k].expires_at - now < window)) {
            id = xstrdup_or_null(p->subs[k].id);
            fid = xstrdup_or_null(p->subs[k].folder_id);
            folder = xstrdup_or_null(p->subs[k].folder);
        }
        int more = k < p->n;
        pthread_mutex_unlock(&pi->lock);
        if (!more)
            break;
        if (id == NULL)
            continue;
        int64_t exp = 0;
        mp_error rerr;
        memset(&rerr, 0, sizeof rerr);
        mp_status st = sub_renew(a, id, &exp, &rerr);
        if (st == MP_OK) {
            pthread_mutex_lock(&pi->lock);
            long i = find_id(p, id);
            if (i >= 0)
                p->subs[i].expires_at = exp;
            pthread_mutex_unlock(&pi->lock);
        } else if (st == MP_SKIP) {
            graph_log(a, MP_LOG_INFO,
                      "push: Graph no longer knows subscription %s; creating"
                      " it again",
                      id);
            graph_sub s;
            st = sub_create(a, fid, folder, &s, &rerr);
            if (st == MP_OK) {
                /* In place, so the walk over the set stays in order. */
                pthread_mutex_lock(&pi->lock);
                long i = find_id(p, id);
                if (i >= 0) {
                    graph_sub_clear(&p->subs[i]);
                    p->subs[i] = s;
                } else {
                    graph_sub_clear(&s);
                }
                pthread_mutex_unlock(&pi->lock);
                /* Whatever changed while it was unknown. */
                graph_host->sync_now(a->acct, folder, "subscription recreated");
            }
        }
        if (st != MP_OK && first == MP_OK) {
            first = st;
            *err = rerr;
        }
        free(id);
        free(fid);
        free(folder);
    }
    persist(a);
    return first;
}

/* While a pass failed, the account is not reported live, so the host
 * keeps polling; the next successful pass clears it. */
static void set_failing(graph_account *a, int failing)
{
    graph_push_inst *pi = inst_of(a);
    pthread_mutex_lock(&pi->lock);
    acct_of(a)->failing = failing;
    pthread_mutex_unlock(&pi->lock);
}

/* The host's record of the set (push.h): the inbox subscription's id and
 * secret (else the first one's) and the earliest expiry. */
static mp_status host_record(graph_account *a, mp_subscription *sub_r, mp_error *err)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    static _Thread_local char id[GRAPH_NOTIFY_MAX_ID + 1];
    static _Thread_local char secret[GRAPH_NOTIFY_MAX_STATE + 1];
    const char *inbox = a->wellknown_loaded ? a->wellknown_id[0] : NULL;
    pthread_mutex_lock(&pi->lock);
    if (p->n == 0) {
        pthread_mutex_unlock(&pi->lock);
        return mp_fail(err, MP_RETRY, "push: no subscription could be created");
    }
    size_t pick = 0;
    int64_t first = p->subs[0].expires_at;
    for (size_t i = 0; i < p->n; i++) {
        if (inbox != NULL && p->subs[i].folder_id != NULL &&
            strcmp(p->subs[i].folder_id, inbox) == 0)
            pick = i;
        if (p->subs[i].expires_at < first)
            first = p->subs[i].expires_at;
    }
    snprintf(id, sizeof id, "%s", p->subs[pick].id);
    snprintf(secret, sizeof secret, "%s", p->subs[pick].secret);
    p->enrolled = 1;
    p->failing = 0;
    pthread_mutex_unlock(&pi->lock);
    sub_r->provider_id = id;
    sub_r->expires_at = first;
    sub_r->cursor_hint = NULL;
    sub_r->secret = secret;
    return MP_OK;
}

/* Push trouble never parks the account: the host shows "failed: ..." and
 * keeps polling, and the next renewal tries again. Only a refused grant
 * (MP_REAUTH) is the account's business. */
static mp_status push_failure(mp_status st)
{
    return st == MP_FATAL ? MP_RETRY : st;
}

static mp_status no_push(graph_account *a, mp_error *err)
{
    graph_host->push_status(a->acct, MP_PUSH_STATE_OFF, "polling: no public_url");
    return mp_fail(err, MP_SKIP, "push: no public_url; polling");
}

mp_status graph_push_enroll(mp_account *acct, mp_subscription *sub_r, mp_error *err)
{
    graph_account *a = graph_host->account_state(acct);
    if (inst_of(a)->notify_url == NULL)
        return no_push(a, err);
    graph_host->push_status(acct, MP_PUSH_STATE_STARTING, "subscribing the folders");
    /* A set restored from driver state is renewed rather than recreated. */
    mp_status st = renew_due(a, 1, err);
    if (st == MP_OK || st == MP_RETRY)
        st = reconcile(a, err);
    if (st != MP_OK) {
        set_failing(a, 1);
        publish(a, 0);
        return push_failure(st);
    }
    st = host_record(a, sub_r, err);
    publish(a, st == MP_OK);
    return st;
}

mp_status graph_push_renew(mp_account *acct, const mp_subscription *current,
                           mp_subscription *sub_r, mp_error *err)
{
    (void)current; /* the set in driver state is the truth */
    graph_account *a = graph_host->account_state(acct);
    if (inst_of(a)->notify_url == NULL)
        return no_push(a, err);
    mp_status st = renew_due(a, 0, err);
    mp_error rerr;
    memset(&rerr, 0, sizeof rerr);
    mp_status rst = reconcile(a, &rerr);
    if (st == MP_OK && rst != MP_OK) {
        st = rst;
        *err = rerr;
    }
    if (st != MP_OK) {
        set_failing(a, 1);
        publish(a, 0);
        return push_failure(st);
    }
    st = host_record(a, sub_r, err);
    publish(a, st == MP_OK);
    return st;
}

mp_status graph_push_cancel(mp_account *acct, const mp_subscription *current,
                            mp_error *err)
{
    (void)current;
    graph_account *a = graph_host->account_state(acct);
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    mp_status first = MP_OK;
    for (;;) {
        pthread_mutex_lock(&pi->lock);
        char *id = p->n > 0 ? xstrdup_or_null(p->subs[p->n - 1].id) : NULL;
        pthread_mutex_unlock(&pi->lock);
        if (id == NULL)
            break;
        mp_error derr;
        memset(&derr, 0, sizeof derr);
        mp_status st = sub_delete(a, id, &derr);
        if (st != MP_OK && first == MP_OK) {
            first = st;
            *err = derr;
        }
        if (st == MP_OK)
            graph_log(a, MP_LOG_INFO, "push: subscription %s deleted", id);
        set_replace(a, id, NULL);
        free(id);
    }
    pthread_mutex_lock(&pi->lock);
    p->enrolled = 0;
    pthread_mutex_unlock(&pi->lock);
    persist(a);
    return first;
}

/* Take a queued list out under the lock. */
static char **take(graph_push_inst *pi, char ***v, size_t *n, size_t *n_r)
{
    pthread_mutex_lock(&pi->lock);
    char **out = *v;
    *n_r = *n;
    *v = NULL;
    *n = 0;
    pthread_mutex_unlock(&pi->lock);
    return out;
}

/* Subscription `id` again for its folder; the folder is synced after. */
static mp_status recreate(graph_account *a, const char *id, mp_error *err)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    pthread_mutex_lock(&pi->lock);
    long i = find_id(p, id);
    char *fid = i >= 0 ? xstrdup_or_null(p->subs[i].folder_id) : NULL;
    char *folder = i >= 0 ? xstrdup_or_null(p->subs[i].folder) : NULL;
    pthread_mutex_unlock(&pi->lock);
    if (i < 0)
        return MP_OK; /* already replaced or deleted */
    graph_sub s;
    mp_status st = sub_create(a, fid, folder, &s, err);
    if (st == MP_OK) {
        set_replace(a, id, &s);
        graph_sub_clear(&s);
        persist(a);
        graph_host->sync_now(a->acct, folder, "subscription recreated");
    }
    free(fid);
    free(folder);
    return st;
}

void graph_push_queue_once(char ***v, size_t *n, const char *id)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], id) == 0)
            return;
    *v = realloc(*v, (*n + 1) * sizeof **v);
    if (*v == NULL)
        abort();
    (*v)[(*n)++] = xstrdup_or_null(id);
}

/* A lifecycle notification verified by another node (a cluster: the POST
 * landed on a node that keeps this account in standby) reaches the holder
 * only as the stored hint of the sync run it started, the event's name
 * (graph_webhook.c). Queue its action here as push_verify would have:
 * reauthorize or recreate the subscription of `folder` (NULL: the
 * mailbox-wide one). On the node that verified it, the action is queued
 * already and graph_push_queue_once keeps it single. */
static void queue_from_hint(graph_account *a, const char *folder)
{
    const char *hint = MP_HOST_HAS(graph_host, sync_hint)
                           ? graph_host->sync_hint(a->acct, folder)
                           : NULL;
    if (hint == NULL)
        return;
    int reauth = strcmp(hint, graph_note_event_name(GRAPH_NOTE_REAUTH)) == 0;
    if (!reauth && strcmp(hint, graph_note_event_name(GRAPH_NOTE_REMOVED)) != 0)
        return;
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    pthread_mutex_lock(&pi->lock);
    for (size_t i = 0; i < p->n; i++) {
        const char *f = p->subs[i].folder;
        if ((f == NULL) != (folder == NULL) || (f != NULL && strcmp(f, folder) != 0))
            continue;
        if (reauth)
            graph_push_queue_once(&p->reauth, &p->n_reauth, p->subs[i].id);
        else
            graph_push_queue_once(&p->recreate, &p->n_recreate, p->subs[i].id);
    }
    pthread_mutex_unlock(&pi->lock);
}

void graph_push_service(graph_account *a, const char *folder)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    if (pi == NULL || p == NULL || pi->notify_url == NULL)
        return;
    if (folder != NULL)
        queue_from_hint(a, folder);
    queue_from_hint(a, NULL);
    size_t nr = 0, nc = 0;
    char **re = take(pi, &p->reauth, &p->n_reauth, &nr);
    char **rc = take(pi, &p->recreate, &p->n_recreate, &nc);
    int changed = nr > 0 || nc > 0;
    for (size_t i = 0; i < nr; i++) {
        mp_error err;
        memset(&err, 0, sizeof err);
        mp_status st = sub_reauthorize(a, re[i], &err);
        if (st == MP_SKIP) {
            memset(&err, 0, sizeof err);
            st = recreate(a, re[i], &err);
        }
        if (st == MP_OK)
            graph_log(a, MP_LOG_INFO, "push: subscription %s reauthorized", re[i]);
        else
            graph_log(a, MP_LOG_WARNING,
                      "push: reauthorization failed: %s (the renewal"
                      " PATCH reauthorizes as well)",
                      err.text);
        free(re[i]);
    }
    for (size_t i = 0; i < nc; i++) {
        mp_error err;
        memset(&err, 0, sizeof err);
        if (recreate(a, rc[i], &err) != MP_OK)
            graph_log(a, MP_LOG_WARNING,
                      "push: cannot recreate a removed subscription: %s"
                      " (the next push renewal tries again)",
                      err.text);
        free(rc[i]);
    }
    free(re);
    free(rc);
    pthread_mutex_lock(&pi->lock);
    int dirty = p->profile_dirty;
    int live = p->enrolled && !p->failing;
    pthread_mutex_unlock(&pi->lock);
    if (changed || dirty)
        publish(a, live);
}

void graph_push_folders_changed(graph_account *a)
{
    graph_push_inst *pi = inst_of(a);
    graph_push_acct *p = acct_of(a);
    if (pi == NULL || p == NULL || pi->notify_url == NULL)
        return;
    pthread_mutex_lock(&pi->lock);
    int enrolled = p->enrolled;
    pthread_mutex_unlock(&pi->lock);
    if (!enrolled)
        return; /* push_enroll subscribes when the host asks */
    mp_error err;
    memset(&err, 0, sizeof err);
    if (reconcile(a, &err) != MP_OK) {
        /* A folder without its subscription: not live (the host polls)
         * until the next folder refresh or renewal subscribes it. */
        graph_log(a, MP_LOG_WARNING, "push: %s (tried again at the next folder refresh)",
                  err.text);
        set_failing(a, 1);
        publish(a, 0);
        char text[sizeof err.text + 64];
        snprintf(text, sizeof text, "a folder could not be subscribed (%s); polling",
                 err.text);
        graph_host->push_status(a->acct, MP_PUSH_STATE_RECONNECTING, text);
        return;
    }
    pthread_mutex_lock(&pi->lock);
    int live = p->n > 0;
    p->failing = 0;
    pthread_mutex_unlock(&pi->lock);
    publish(a, live);
}

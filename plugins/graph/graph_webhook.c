/*
 * graph.so's webhook, /push/<instance> (loop thread; answers in
 * microseconds: no network, one store write per folder hinted).
 *
 * Two URLs, told apart by the subpath the host hands over: "" for change
 * notifications (notificationUrl) and "/lifecycle" for lifecycle
 * notifications (lifecycleNotificationUrl).
 *
 * - Validation handshake (providers.md §3): a POST with ?validationToken=
 *   on either URL is answered 200 text/plain with the token URL-decoded
 *   (libevent's decoder, '+' as space as .NET encodes it), byte for byte.
 *   The token travels only in the body; the content type is our constant,
 *   and the host adds X-Content-Type-Options: nosniff, so it is never
 *   rendered as HTML and cannot reach a header.
 * - Notifications: the whole body is parsed (graph_notify.c) and EVERY
 *   item verified (its subscription known to this instance, its clientState
 *   equal to that subscription's secret in constant time) before anything
 *   is recorded; one bad item refuses the POST with nothing recorded:
 *     413 body over the bound        400 not Graph's shape (malformed)
 *     404 unknown subscriptionId     403 wrong clientState (forged)
 *     400 a lifecycle item on the notification URL or the reverse
 *   404 and 403 differ on purpose: 404 is what a subscription we deleted
 *   moments ago earns (Graph stops retrying it after its window), 403 is a
 *   sender that knows an id but not its secret.
 * - Then each distinct (account, folder) of a change gets one push_hint
 *   (durable, and it starts the folder's delta sync); a lifecycle event
 *   is counted, queued for the next worker slot (reauthorize, recreate)
 *   and hints its folder too. Answer: 202, empty.
 * Duplicates need no memory here: a hint only starts the folder's delta,
 * which is idempotent, so a repeated notification adds no event.
 */
#include "graph_driver.h"
#include "graph_push.h"

#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <jansson.h>

/* Graph's tokens are ~120 bytes; a bound keeps a reflected answer small. */
#define TOKEN_MAX 4096

/* A refusal: our status, the reason as {"error": ...} (never a secret). */
static void refuse(mp_push_reply *reply, int status, const char *why)
{
    json_t *o = json_pack("{s:s}", "error", why != NULL ? why : "refused");
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    graph_host->push_reply(reply, status, "application/json", text,
                           text != NULL ? strlen(text) : 0);
    free(text);
}

/* The raw value of `name` in a query string, or NULL; *len_r its length. */
static const char *query_param(const char *query, const char *name, size_t *len_r)
{
    size_t nl = strlen(name);
    const char *p = query;
    while (p != NULL && *p != '\0') {
        size_t seg = strcspn(p, "&");
        if (seg > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            *len_r = seg - nl - 1;
            return p + nl + 1;
        }
        p += seg;
        if (*p == '&')
            p++;
    }
    return NULL;
}

static mp_status validation(const char *raw, size_t raw_len, mp_push_reply *reply,
                            mp_error *err)
{
    if (raw_len > 3 * TOKEN_MAX) {
        refuse(reply, 400, "validationToken too long");
        return mp_fail(err, MP_FATAL, "validationToken too long");
    }
    char *copy = malloc(raw_len + 1);
    if (copy == NULL)
        abort();
    memcpy(copy, raw, raw_len);
    copy[raw_len] = '\0';
    size_t len = 0;
    char *token = evhttp_uridecode(copy, 1, &len);
    free(copy);
    if (token == NULL || len > TOKEN_MAX) {
        free(token);
        refuse(reply, 400, "validationToken is not decodable");
        return mp_fail(err, MP_FATAL, "validationToken is not decodable");
    }
    graph_host->push_reply(reply, 200, "text/plain; charset=utf-8", token, len);
    free(token);
    return MP_OK;
}

typedef struct target {
    graph_account *a;
    char *folder; /* NULL: all folders (mailbox-wide subscription) */
    char *sid;
    graph_note_kind kind;
} target;

static void targets_free(target *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].folder);
        free(t[i].sid);
    }
    free(t);
}

static char *dup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

/* Verify every note; fill targets. Returns the HTTP status of a refusal,
 * or 0. Caller holds pi->lock. */
static int verify_all(graph_push_inst *pi, const graph_note *notes, size_t n,
                      int lifecycle, target *t, const char **why_r)
{
    for (size_t i = 0; i < n; i++) {
        const graph_note *nt = &notes[i];
        if ((nt->kind != GRAPH_NOTE_CHANGE) != lifecycle) {
            *why_r = lifecycle ? "a change notification on the lifecycle URL"
                               : "a lifecycle notification on the notification URL";
            return 400;
        }
        const graph_sub *found = NULL;
        graph_account *owner = NULL;
        for (size_t k = 0; k < pi->n && found == NULL; k++) {
            graph_push_acct *p = pi->accounts[k]->push;
            for (size_t j = 0; p != NULL && j < p->n; j++)
                if (strcmp(p->subs[j].id, nt->subscription_id) == 0) {
                    found = &p->subs[j];
                    owner = pi->accounts[k];
                    break;
                }
        }
        if (found == NULL) {
            *why_r = "notification for an unknown subscription";
            return 404;
        }
        if (!graph_client_state_ok(found->secret, nt->client_state,
                                   nt->client_state_len)) {
            *why_r = "notification with a wrong clientState";
            return 403;
        }
        t[i].a = owner;
        t[i].folder = dup_or_null(found->folder);
        t[i].sid = dup_or_null(found->id);
        t[i].kind = nt->kind;
    }
    return 0;
}

static int seen_before(const target *t, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (t[k].a == t[i].a && ((t[k].folder == NULL && t[i].folder == NULL) ||
                                 (t[k].folder != NULL && t[i].folder != NULL &&
                                  strcmp(t[k].folder, t[i].folder) == 0)))
            return 1;
    return 0;
}

mp_status graph_push_verify(mp_instance *inst, const mp_push_request *req,
                            mp_push_reply *reply, mp_error *err)
{
    graph_instance *gi = graph_host->instance_state(inst);
    graph_push_inst *pi = gi != NULL ? gi->push : NULL;
    int lifecycle;
    if (req->path[0] == '\0' || strcmp(req->path, "/") == 0)
        lifecycle = 0;
    else if (strcmp(req->path, "/lifecycle") == 0)
        lifecycle = 1;
    else {
        refuse(reply, 404, "no such push URL");
        return mp_fail(err, MP_FATAL, "no such push URL (only \"\" and /lifecycle)");
    }
    size_t raw_len = 0;
    const char *raw = query_param(req->query, "validationToken", &raw_len);
    if (raw != NULL) {
        if (pi != NULL)
            atomic_fetch_add(&pi->validations, 1);
        return validation(raw, raw_len, reply, err);
    }
    if (pi == NULL) {
        refuse(reply, 404, "not initialised");
        return mp_fail(err, MP_FATAL, "graph instance not initialised");
    }

    graph_note *notes = NULL;
    size_t n = 0;
    int status = 0;
    char why[160];
    if (graph_notes_parse(req->body, req->body_len, &notes, &n, &status, why,
                          sizeof why) < 0) {
        refuse(reply, status, why);
        return mp_fail(err, MP_FATAL, "%s", why);
    }
    target *t = calloc(n, sizeof *t);
    if (t == NULL)
        abort();
    const char *bad = NULL;
    pthread_mutex_lock(&pi->lock);
    status = verify_all(pi, notes, n, lifecycle, t, &bad);
    if (status == 0) {
        /* Verified: count and queue the lifecycle events. */
        for (size_t i = 0; i < n; i++) {
            graph_push_acct *p = t[i].a->push;
            if (t[i].kind == GRAPH_NOTE_CHANGE)
                continue;
            p->events[t[i].kind - 1]++;
            p->profile_dirty = 1;
            if (t[i].kind == GRAPH_NOTE_REAUTH)
                graph_push_queue_once(&p->reauth, &p->n_reauth, t[i].sid);
            else if (t[i].kind == GRAPH_NOTE_REMOVED)
                graph_push_queue_once(&p->recreate, &p->n_recreate, t[i].sid);
        }
    }
    pthread_mutex_unlock(&pi->lock);
    free(notes);
    if (status != 0) {
        targets_free(t, n);
        refuse(reply, status, bad);
        return mp_fail(err, MP_FATAL, "%s", bad);
    }
    mp_status st = MP_OK;
    for (size_t i = 0; i < n && st == MP_OK; i++) {
        if (seen_before(t, i))
            continue;
        st = graph_host->push_hint(
            t[i].a->acct, t[i].folder,
            t[i].kind == GRAPH_NOTE_CHANGE ? NULL : graph_note_event_name(t[i].kind),
            err);
    }
    targets_free(t, n);
    if (st != MP_OK) {
        /* The hint could not be stored: ask Graph to deliver again. */
        refuse(reply, 503, "cannot record the notification now");
        return MP_RETRY;
    }
    graph_host->push_reply(reply, 202, NULL, NULL, 0);
    return MP_OK;
}

/*
 * gmail.so push runtime and the pubsub-push verifier (gmail_push.h).
 *
 * push_verify runs on the host's loop thread and never blocks: the token
 * is checked against the JWKS cache the refresher thread keeps filled, the
 * hint goes to the store through host->push_hint (one short transaction),
 * and everything else is memory. Order matters (issue 10 §3): the token is
 * verified BEFORE the body is parsed, so a forger learns nothing about our
 * parser and nothing is recorded for a refused request.
 */
#include "gmail_push.h"

#include "gmail_envelope.h"
#include "gmail_oidc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* "unknown mailbox" is logged at most this often (a misrouted topic
 * would otherwise log every notification). */
#define UNKNOWN_LOG_INTERVAL_MS (60 * 1000)

static void reply_json(mp_push_reply *reply, int status, const char *error)
{
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", error);
    gmail_host->push_reply(reply, status, "application/json", body, (size_t)n);
}

mp_account *gmail_push_find_locked(gmail_push_rt *rt, const char *email)
{
    for (size_t i = 0; i < rt->n_accts; i++)
        if (rt->accts[i]->email != NULL && strcasecmp(rt->accts[i]->email, email) == 0)
            return rt->accts[i]->acct;
    return NULL;
}

int gmail_push_wait_locked(gmail_push_rt *rt, int64_t ms)
{
    if (rt->stopping)
        return 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&rt->wake, &rt->lock, &ts);
    return rt->stopping;
}

static void wake_refresher(gmail_push_rt *rt)
{
    pthread_mutex_lock(&rt->lock);
    rt->refetch = 1;
    pthread_cond_broadcast(&rt->wake);
    pthread_mutex_unlock(&rt->lock);
}

mp_status gmail_push_start(gmail_instance *gi, mp_instance *inst, mp_error *err)
{
    gmail_push_rt *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        abort();
    rt->gi = gi;
    rt->inst = inst;
    rt->jwks = gmail_jwks_new();
    rt->dedupe = gmail_dedupe_new(0);
    if (rt->jwks == NULL || rt->dedupe == NULL)
        abort();
    pthread_mutex_init(&rt->lock, NULL);
    pthread_mutex_init(&rt->use, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->wake, &ca);
    pthread_condattr_destroy(&ca);
    gi->rt = rt;
    int rc = 0;
    if (gi->push == GMAIL_PUSH_PUBSUB_PUSH) {
        rc = pthread_create(&rt->refresher, NULL, gmail_refresher_main, rt);
        rt->refresher_started = rc == 0;
    } else if (gi->push == GMAIL_PUSH_PUBSUB_PULL) {
        rc = pthread_create(&rt->puller, NULL, gmail_pull_main, rt);
        rt->puller_started = rc == 0;
    }
    if (rc != 0) {
        gmail_push_stop(gi);
        return mp_fail(err, MP_FATAL, "push: cannot start its thread: %s", strerror(rc));
    }
    return MP_OK;
}

void gmail_push_stop(gmail_instance *gi)
{
    if (gi == NULL || gi->rt == NULL)
        return;
    gmail_push_rt *rt = gi->rt;
    pthread_mutex_lock(&rt->lock);
    rt->stopping = 1;
    pthread_cond_broadcast(&rt->wake);
    pthread_mutex_unlock(&rt->lock);
    if (rt->refresher_started)
        pthread_join(rt->refresher, NULL);
    if (rt->puller_started)
        pthread_join(rt->puller, NULL);
    gmail_jwks_free(&rt->jwks);
    gmail_dedupe_free(&rt->dedupe);
    free(rt->accts);
    pthread_cond_destroy(&rt->wake);
    pthread_mutex_destroy(&rt->use);
    pthread_mutex_destroy(&rt->lock);
    free(rt);
    gi->rt = NULL;
}

void gmail_push_account_add(gmail_account *a)
{
    gmail_push_rt *rt = a->inst->rt;
    if (rt == NULL)
        return;
    pthread_mutex_lock(&rt->lock);
    if (rt->n_accts == rt->cap_accts) {
        size_t cap = rt->cap_accts ? rt->cap_accts * 2 : 8;
        gmail_account **n = realloc(rt->accts, cap * sizeof *n);
        if (n == NULL)
            abort();
        rt->accts = n;
        rt->cap_accts = cap;
    }
    rt->accts[rt->n_accts++] = a;
    pthread_mutex_unlock(&rt->lock);
}

void gmail_push_account_remove(gmail_account *a)
{
    gmail_push_rt *rt = a->inst->rt;
    if (rt == NULL)
        return;
    /* `use` first: the pull thread may be asking this account for a token
     * or recording its hint; once we hold it, the account is out of reach. */
    pthread_mutex_lock(&rt->use);
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->n_accts; i++) {
        if (rt->accts[i] == a) {
            memmove(&rt->accts[i], &rt->accts[i + 1],
                    (rt->n_accts - i - 1) * sizeof *rt->accts);
            rt->n_accts--;
            break;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    pthread_mutex_unlock(&rt->use);
}

mp_status gmail_push_verify(mp_instance *inst, const mp_push_request *req,
                            mp_push_reply *reply, mp_error *err)
{
    const mp_host *h = gmail_host;
    const gmail_instance *gi = h->instance_state(inst);
    if (gi == NULL || gi->push != GMAIL_PUSH_PUBSUB_PUSH || gi->rt == NULL) {
        reply_json(reply, 404, "this instance does not take Pub/Sub pushes");
        return mp_fail(err, MP_FATAL, "push: instance is not in pubsub-push mode");
    }
    gmail_push_rt *rt = gi->rt;

    /* 1. The token, before anything in the body is looked at. */
    const char *token = gmail_oidc_bearer(h->request_header(req, "Authorization"));
    char why[200] = "";
    bool refetch = false;
    int64_t now = h->now_ms() / 1000;
    gmail_oidc_status os =
        gmail_oidc_verify(rt->jwks, token, gi->push_audience, gi->push_service_account,
                          now, GMAIL_OIDC_DEFAULT_SKEW, NULL, &refetch, why, sizeof why);
    if (os != GMAIL_OIDC_OK) {
        int status = gmail_oidc_http_status(os);
        /* An unknown kid may be a key Google rotated in after our copy:
         * answer 503 so Pub/Sub redelivers once the refresher has the new
         * set (the cache allows one refetch a minute, so a forger cannot
         * make us hammer certs_url). No keys at all: the same. */
        if (os == GMAIL_OIDC_UNKNOWN_KID || os == GMAIL_OIDC_NO_KEYS) {
            status = 503;
            if (refetch || os == GMAIL_OIDC_NO_KEYS)
                wake_refresher(rt);
        }
        reply_json(reply, status, gmail_oidc_status_name(os));
        return mp_fail(err, status == 503 ? MP_RETRY : MP_FATAL,
                       "push token refused: %s (%s)", gmail_oidc_status_name(os), why);
    }

    /* 2. The envelope. */
    gmail_envelope env;
    if (gmail_envelope_parse((const char *)req->body, req->body_len, &env, why,
                             sizeof why) < 0) {
        reply_json(reply, 400, "malformed Pub/Sub envelope");
        return mp_fail(err, MP_FATAL, "push envelope refused: %s", why);
    }

    /* 3. A redelivery of a notification already recorded: acknowledge. */
    if (gmail_dedupe_contains(rt->dedupe, env.message_id))
        return MP_SKIP;

    /* 4. The mailbox. An unknown one is acknowledged (2xx) so Pub/Sub does
     * not redeliver it forever; the host counts it as a skipped push. */
    pthread_mutex_lock(&rt->lock);
    mp_account *acct = gmail_push_find_locked(rt, env.email);
    pthread_mutex_unlock(&rt->lock);
    if (acct == NULL) {
        int64_t ms = h->now_ms();
        if (ms - rt->unknown_logged_ms >= UNKNOWN_LOG_INTERVAL_MS) {
            rt->unknown_logged_ms = ms;
            h->log(inst, NULL, MP_LOG_WARNING,
                   "push for a mailbox no account of this instance has (acknowledged;"
                   " logged once a minute)");
        }
        mp_fail(err, MP_SKIP, "push for an unknown mailbox");
        return MP_SKIP;
    }

    /* 5. The hint, durable before we answer; only then the id is "seen",
     * so a push whose hint failed is not taken for a duplicate later. */
    mp_status st = h->push_hint(acct, NULL, env.history_id, err);
    if (st != MP_OK) {
        reply_json(reply, 503, "hint not recorded");
        return MP_RETRY;
    }
    gmail_dedupe_add(rt->dedupe, env.message_id);
    return MP_OK;
}

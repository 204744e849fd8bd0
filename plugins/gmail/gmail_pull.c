/*
 * pubsub-pull (gmail_push.h): for deployments without a public HTTPS
 * address, a driver thread long-polls `{pubsub_url}/v1/{subscription}:pull`
 * and turns each Gmail notification into a push hint.
 *
 * Acknowledgement follows the hint (providers.md §6: ack after persisting
 * the hint, not after processing): only the ackIds whose hint the host
 * stored are acknowledged. A notification whose hint failed is left
 * unacknowledged and Pub/Sub redelivers it after the ack deadline; one we
 * cannot read (bad data, a mailbox none of our accounts has) is
 * acknowledged, since redelivering it would never help.
 *
 * Credentials: pulling needs the Pub/Sub scope. The thread uses the OAuth
 * credentials of the instance's accounts (in pull mode each account asks
 * for gmail.readonly plus pubsub, see gmail.c), trying them in opening
 * order until one gets a token: no extra secret to configure, and the
 * subscription's IAM grant (roles/pubsub.subscriber) names that user or
 * service account. The token is asked under rt->use, so the account cannot
 * be closed meanwhile; the pull itself runs without any lock.
 */
#include "gmail_push.h"

#include "gmail_envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

/* Messages per pull: Gmail notifications are tiny, and a bounded batch
 * keeps one pull's hints (one store transaction each) short. */
#define PULL_MAX_MESSAGES 50
/* The long poll's HTTP timeout; also bounds how long deinit waits. */
#define PULL_TIMEOUT_MS 10000
#define PULL_MAX_RESPONSE (4u << 20)
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS (60 * 1000)

/* A bearer token from the first account that gives one ("Authorization:
 * Bearer ..." header, malloc'd), or NULL. */
static char *auth_header(gmail_push_rt *rt, char *why, size_t why_len)
{
    const mp_host *h = gmail_host;
    char *header = NULL;
    pthread_mutex_lock(&rt->use);
    pthread_mutex_lock(&rt->lock);
    size_t n = rt->n_accts;
    pthread_mutex_unlock(&rt->lock);
    snprintf(why, why_len, "no account is open");
    for (size_t i = 0; i < n && header == NULL; i++) {
        pthread_mutex_lock(&rt->lock);
        mp_account *acct = i < rt->n_accts ? rt->accts[i]->acct : NULL;
        pthread_mutex_unlock(&rt->lock);
        if (acct == NULL)
            break;
        char *token = NULL;
        mp_error err = {0, ""};
        if (h->oauth_token(acct, &token, &err) != MP_OK) {
            snprintf(why, why_len, "%s", err.text);
            continue;
        }
        size_t len = strlen(token) + 32;
        header = malloc(len);
        if (header == NULL)
            abort();
        snprintf(header, len, "Authorization: Bearer %s", token);
        OPENSSL_cleanse(token, strlen(token));
        h->free_secret(&token);
    }
    pthread_mutex_unlock(&rt->use);
    return header;
}

static mp_status post(gmail_push_rt *rt, const char *auth, const char *verb, json_t *doc,
                      uint32_t timeout_ms, mp_http_response *resp, char *why,
                      size_t why_len)
{
    const mp_host *h = gmail_host;
    char url[1600];
    snprintf(url, sizeof url, "%s/v1/%s:%s", rt->gi->pubsub_url, rt->gi->subscription,
             verb);
    char *body = json_dumps(doc, JSON_COMPACT);
    if (body == NULL)
        abort();
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    mp_http_request req = {.method = "POST",
                           .url = url,
                           .headers = headers,
                           .body = (const uint8_t *)body,
                           .body_len = strlen(body),
                           .timeout_ms = timeout_ms};
    mp_http_options opt = {.struct_size = sizeof opt, .max_response = PULL_MAX_RESPONSE};
    mp_error err = {0, ""};
    mp_status st = h->http_ex(NULL, &req, &opt, resp, &err);
    free(body);
    if (st != MP_OK) {
        snprintf(why, why_len, "%s: %s", verb, err.text);
        return st;
    }
    if (resp->status != 200) {
        long status = resp->status;
        snprintf(why, why_len, "%s: HTTP %ld", verb, status);
        h->http_free(resp);
        return status == 401 || status == 403 ? MP_REAUTH : MP_RETRY;
    }
    return MP_OK;
}

/* Record one received message's hint. 1: acknowledge it (hint stored, or
 * unreadable / not ours); 0: leave it for redelivery. */
static int take(gmail_push_rt *rt, json_t *message)
{
    const mp_host *h = gmail_host;
    /* The push envelope's shape, so one parser serves both modes. */
    json_t *wrap = json_pack("{s:O}", "message", message);
    char *text = wrap != NULL ? json_dumps(wrap, JSON_COMPACT) : NULL;
    json_decref(wrap);
    if (text == NULL)
        return 1;
    gmail_envelope env;
    char why[200] = "";
    int rc = gmail_envelope_parse(text, strlen(text), &env, why, sizeof why);
    free(text);
    if (rc < 0) {
        h->log(rt->inst, NULL, MP_LOG_WARNING,
               "pull: unreadable notification dropped: %s", why);
        return 1;
    }
    int ack = 1;
    pthread_mutex_lock(&rt->use);
    pthread_mutex_lock(&rt->lock);
    mp_account *acct = gmail_push_find_locked(rt, env.email);
    pthread_mutex_unlock(&rt->lock);
    if (acct == NULL) {
        h->log(rt->inst, NULL, MP_LOG_INFO,
               "pull: notification for a mailbox no account has (acknowledged)");
    } else {
        mp_error err = {0, ""};
        if (h->push_hint(acct, NULL, env.history_id, &err) != MP_OK) {
            h->log(rt->inst, acct, MP_LOG_WARNING,
                   "pull: hint not recorded (left for redelivery): %s", err.text);
            ack = 0;
        }
    }
    pthread_mutex_unlock(&rt->use);
    return ack;
}

/* One pull and its acknowledgements. MP_OK, or why the loop should wait. */
static mp_status pull_once(gmail_push_rt *rt, const char *auth, char *why, size_t why_len)
{
    const mp_host *h = gmail_host;
    json_t *doc = json_pack("{s:i}", "maxMessages", PULL_MAX_MESSAGES);
    mp_http_response resp;
    mp_status st = post(rt, auth, "pull", doc, PULL_TIMEOUT_MS, &resp, why, why_len);
    json_decref(doc);
    if (st != MP_OK)
        return st;
    json_t *root = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
    h->http_free(&resp);
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(why, why_len, "pull: answer is not a JSON object");
        return MP_RETRY;
    }
    json_t *acks = json_array();
    json_t *received = json_object_get(root, "receivedMessages");
    size_t i;
    json_t *item;
    json_array_foreach(received, i, item)
    {
        json_t *ack = json_object_get(item, "ackId");
        json_t *message = json_object_get(item, "message");
        if (!json_is_string(ack))
            continue;
        if (!json_is_object(message) || take(rt, message))
            json_array_append(acks, ack);
    }
    json_decref(root);
    st = MP_OK;
    if (json_array_size(acks) > 0) {
        json_t *ackdoc = json_pack("{s:O}", "ackIds", acks);
        st = post(rt, auth, "acknowledge", ackdoc, 0, &resp, why, why_len);
        json_decref(ackdoc);
        if (st == MP_OK)
            h->http_free(&resp);
        /* A lost acknowledgement means a redelivery: one more hint for the
         * same historyId, which the next sync absorbs. */
    }
    json_decref(acks);
    return st;
}

void *gmail_pull_main(void *arg)
{
    gmail_push_rt *rt = arg;
    const mp_host *h = gmail_host;
    int64_t backoff = 0;
    unsigned fails = 0;
    char last_why[300] = "";
    pthread_mutex_lock(&rt->lock);
    while (!rt->stopping) {
        pthread_mutex_unlock(&rt->lock);
        char why[300] = "";
        mp_status st = MP_RETRY;
        /* A token per round: the host caches it until shortly before it
         * expires, so this costs no request, and an account closed since
         * the last round is never asked. */
        char *auth = auth_header(rt, why, sizeof why);
        if (auth != NULL) {
            st = pull_once(rt, auth, why, sizeof why);
            OPENSSL_cleanse(auth, strlen(auth));
            free(auth);
        }
        pthread_mutex_lock(&rt->lock);
        if (st == MP_OK) {
            backoff = 0;
            fails = 0;
            last_why[0] = '\0';
            continue;
        }
        /* A long poll that times out, or the instance starting before its
         * accounts are open, is ordinary once: log a failure that repeats
         * (three rounds in a row), once per distinct reason. */
        if (++fails >= 3 && strcmp(why, last_why) != 0) {
            h->log(rt->inst, NULL, MP_LOG_WARNING, "pull: %s (retrying)", why);
            snprintf(last_why, sizeof last_why, "%s", why);
        }
        backoff = backoff == 0 ? BACKOFF_MIN_MS : backoff * 2;
        if (backoff > BACKOFF_MAX_MS)
            backoff = BACKOFF_MAX_MS;
        gmail_push_wait_locked(rt, backoff);
    }
    pthread_mutex_unlock(&rt->lock);
    return NULL;
}

/*
 * users.watch and users.stop for push (gmail_push.h), the push_enroll /
 * push_renew / push_cancel slots. Both push modes need a watch: it is what
 * makes Gmail publish to the topic; pull or push only decides how the
 * notifications reach us.
 *
 * Renewal: Gmail's watch lasts 7 days and Google asks for a re-watch every
 * day (providers.md §2, §6). The host renews a subscription when less than
 * 24 h remain, so we report an expiry at most ~two days ahead: the host
 * then renews about daily and always ~6 days before the real expiry. The
 * real expiry is kept in driver state ("watch_expiration") and shown in
 * the push status text.
 */
#include "gmail_push.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* What the quota table charges for watch and stop (providers.md §2). */
#define UNITS_WATCH 100u
#define UNITS_STOP 50u
/* Reported lifetime: the host renews inside its last day, so this gives
 * a renewal about 23 h after each watch. */
#define REPORT_AHEAD_S (47 * 3600)

int64_t gmail_watch_report_expiry(int64_t expiration_ms, int64_t now_ms)
{
    int64_t real = expiration_ms / 1000;
    int64_t cap = now_ms / 1000 + REPORT_AHEAD_S;
    return real < cap ? real : cap;
}

static int int_of(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return *out > 0 ? 0 : -1;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    if (*s == '\0' || strlen(s) > 19)
        return -1;
    int64_t n = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
    }
    *out = n;
    return n > 0 ? 0 : -1;
}

int gmail_watch_parse(const char *body, size_t len, char **history_r,
                      int64_t *expiration_ms_r)
{
    *history_r = NULL;
    json_t *root = json_loadb(body, len, 0, NULL);
    int64_t hid = 0, exp = 0;
    int rc = -1;
    if (json_is_object(root) && int_of(json_object_get(root, "historyId"), &hid) == 0 &&
        int_of(json_object_get(root, "expiration"), &exp) == 0) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, hid);
        *history_r = strdup(buf);
        if (*history_r == NULL)
            abort();
        *expiration_ms_r = exp;
        rc = 0;
    }
    json_decref(root);
    return rc;
}

/* "2026-12-14 02:50:00 UTC" */
static void utc_text(int64_t unix_s, char *buf, size_t len)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static mp_status watch(mp_account *acct, mp_subscription *sub_r, mp_error *err)
{
    const mp_host *h = gmail_host;
    gmail_account *a = h->account_state(acct);
    const gmail_instance *gi = a->inst;
    if (gi->push == GMAIL_PUSH_OFF) {
        /* The descriptor's push kind is static (WEBHOOK for every gmail
         * instance); an instance with push off says so and stores nothing. */
        if (MP_HOST_HAS(h, push_status))
            h->push_status(acct, MP_PUSH_STATE_OFF,
                           "push off: history every poll interval");
        return mp_fail(err, MP_SKIP, "push is off for this instance");
    }
    /* watch_labels are label names (INBOX, SENT, user labels): Gmail wants
     * ids, which only user labels differ in. */
    mp_status st = gmail_labels_ready(a, 0, err);
    if (st != MP_OK)
        return st;
    json_t *ids = json_array();
    for (size_t i = 0; i < gi->n_watch_labels; i++) {
        const char *id = gmail_folder_label(a, gi->watch_labels[i]);
        json_array_append_new(ids, json_string(id != NULL ? id : gi->watch_labels[i]));
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "topicName", json_string(gi->topic));
    json_object_set_new(doc, "labelIds", ids);
    json_object_set_new(doc, "labelFilterBehavior", json_string("INCLUDE"));
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (body == NULL)
        abort();
    char *url = gmail_api_url(a, "watch");
    gmail_call c = {.method = "POST",
                    .url = url,
                    .content_type = "application/json",
                    .body = (const uint8_t *)body,
                    .body_len = strlen(body),
                    .units = UNITS_WATCH};
    mp_http_response resp;
    st = gmail_http_call(a, &c, "watch", &resp, err);
    free(url);
    free(body);
    if (st == MP_SKIP)
        st = mp_fail(err, MP_RETRY, "watch: topic %s not found (404)", gi->topic);
    if (st != MP_OK) {
        if (MP_HOST_HAS(h, push_status))
            h->push_status(acct, MP_PUSH_STATE_FAILED, err->text);
        return st;
    }
    char *history = NULL;
    int64_t exp_ms = 0;
    int prc =
        gmail_watch_parse((const char *)resp.body, resp.body_len, &history, &exp_ms);
    h->http_free(&resp);
    if (prc < 0)
        return mp_fail(err, MP_RETRY,
                       "watch: Gmail's answer has no historyId/expiration");
    char exp_text[32];
    snprintf(exp_text, sizeof exp_text, "%" PRId64, exp_ms);
    mp_error serr = {0, ""};
    if (MP_HOST_HAS(h, state_put) &&
        h->state_put(acct, "watch_expiration", exp_text, &serr) != MP_OK)
        h->log(h->account_instance(acct), acct, MP_LOG_WARNING,
               "watch: cannot keep its expiry: %s", serr.text);
    char when[48], status[128];
    utc_text(exp_ms / 1000, when, sizeof when);
    snprintf(status, sizeof status, "watch until %s (%s)", when,
             gi->push == GMAIL_PUSH_PUBSUB_PUSH ? "pubsub-push" : "pubsub-pull");
    if (MP_HOST_HAS(h, push_status))
        h->push_status(acct, MP_PUSH_STATE_LIVE, status);
    h->log(h->account_instance(acct), acct, MP_LOG_INFO, "%s", status);

    /* The strings must outlive this call only until the host copied them:
     * kept in the account (freed on the next watch or close). */
    pthread_mutex_lock(&a->lock);
    free(a->watch_history);
    a->watch_history = history;
    a->watch_expiration_ms = exp_ms;
    pthread_mutex_unlock(&a->lock);
    sub_r->provider_id = gi->topic;
    sub_r->expires_at = gmail_watch_report_expiry(exp_ms, h->now_ms());
    sub_r->cursor_hint = a->watch_history;
    sub_r->secret = NULL;
    return MP_OK;
}

mp_status gmail_push_enroll(mp_account *acct, mp_subscription *sub_r, mp_error *err)
{
    return watch(acct, sub_r, err);
}

mp_status gmail_push_renew(mp_account *acct, const mp_subscription *current,
                           mp_subscription *sub_r, mp_error *err)
{
    (void)current; /* a watch replaces the previous one */
    return watch(acct, sub_r, err);
}

mp_status gmail_push_cancel(mp_account *acct, const mp_subscription *current,
                            mp_error *err)
{
    (void)current;
    const mp_host *h = gmail_host;
    gmail_account *a = h->account_state(acct);
    char *url = gmail_api_url(a, "stop");
    gmail_call c = {.method = "POST", .url = url, .units = UNITS_STOP};
    mp_http_response resp;
    mp_status st = gmail_http_call(a, &c, "stop", &resp, err);
    free(url);
    if (st == MP_OK)
        h->http_free(&resp);
    if (st == MP_SKIP) /* no watch to stop */
        st = MP_OK;
    if (st == MP_OK) {
        if (MP_HOST_HAS(h, state_put))
            h->state_put(acct, "watch_expiration", NULL, err);
        if (MP_HOST_HAS(h, push_status))
            h->push_status(acct, MP_PUSH_STATE_OFF, "watch stopped");
    }
    return st;
}

/*
 * EmailEngine webhooks at /push/<instance> (providers.md §5).
 *
 * push_verify runs on the host's loop thread and never blocks. Order
 * matters: the signature is checked on the raw bytes BEFORE the body is
 * parsed, so a forger learns nothing about our parser and nothing is
 * recorded for a refused request (unsigned: 401, forged: 403). Then the
 * event id is looked up (EE retries with the same X-EE-Wh-Event-Id), the
 * account is routed among the configured ones (another account is
 * acknowledged and ignored: EE must not retry it, and an empty list
 * accepts nothing), and a hint for the folder is recorded with push_hint,
 * durable before the 2xx. The id counts as seen only once the hint is
 * stored, so a delivery whose hint failed (503) is not taken for a
 * duplicate when EE retries it.
 *
 * EE sends webhooks without enrollment (its webhook URL is set in EE), so
 * push_enroll stores nothing: it reports the push state, "live" once a
 * signed webhook for the account arrived since the daemon started, else
 * waiting for one, and returns MP_SKIP (no subscription).
 */
#include "ee_driver.h"

#include <stdio.h>
#include <string.h>

#include "ee_sig.h"
#include "ee_webhook.h"

#define UNKNOWN_LOG_INTERVAL_MS (60 * 1000)

static void reply_json(mp_push_reply *reply, int status, const char *error)
{
    char body[200];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", error);
    ee_host->push_reply(reply, status, "application/json", body, (size_t)n);
}

static ee_account *find_account(ee_instance *ei, const char *id)
{
    for (size_t i = 0; i < ei->n_accts; i++)
        if (strcmp(ei->accts[i]->ee_account, id) == 0)
            return ei->accts[i];
    return NULL;
}

mp_status ee_push_verify(mp_instance *inst, const mp_push_request *req, mp_push_reply *reply,
                         mp_error *err)
{
    const mp_host *h = ee_host;
    ee_instance *ei = h->instance_state(inst);
    if (ei == NULL) {
        reply_json(reply, 503, "instance not ready");
        return mp_fail(err, MP_RETRY, "push: emailengine instance not initialised");
    }
    /* 1. The signature, before anything in the body is looked at. */
    const char *sig = h->request_header(req, "X-EE-Wh-Signature");
    ee_sig_result sr = ee_sig_verify((const uint8_t *)ei->secret, ei->secret_len, req->body,
                                     req->body_len, sig);
    if (sr != EE_SIG_OK) {
        int unsigned_ = sr == EE_SIG_MISSING;
        reply_json(reply, unsigned_ ? 401 : 403,
                   unsigned_ ? "missing X-EE-Wh-Signature" : "bad signature");
        return mp_fail(err, MP_FATAL, "push refused: %s",
                       unsigned_ ? "no X-EE-Wh-Signature header"
                                 : "X-EE-Wh-Signature does not match the body (check"
                                   " service_secret_file against EmailEngine's serviceSecret)");
    }
    /* 2. A retry of a delivery already recorded. */
    const char *event_id = h->request_header(req, "X-EE-Wh-Event-Id");
    if (event_id != NULL && ee_dedupe_contains(ei->dedupe, event_id))
        return mp_fail(err, MP_SKIP, "push: event already recorded (a retry)");
    /* 3. The payload's routing fields. */
    ee_webhook w;
    char why[200];
    if (ee_webhook_parse((const char *)req->body, req->body_len, &w, why, sizeof why) < 0) {
        reply_json(reply, 400, "malformed webhook payload");
        return mp_fail(err, MP_FATAL, "push refused: %s", why);
    }
    ee_account *a = find_account(ei, w.account);
    if (a == NULL) {
        int64_t ms = h->now_ms();
        if (ms - ei->unknown_logged_ms >= UNKNOWN_LOG_INTERVAL_MS) {
            ei->unknown_logged_ms = ms;
            h->log(inst, NULL, MP_LOG_INFO,
                   "webhook for an EmailEngine account no account of this instance names"
                   " (acknowledged and ignored; logged once a minute)");
        }
        return mp_fail(err, MP_SKIP, "push for an unconfigured EmailEngine account");
    }
    if (!atomic_exchange(&a->push_seen, 1) && MP_HOST_HAS(h, push_status))
        h->push_status(a->acct, MP_PUSH_STATE_LIVE, "EmailEngine webhooks");
    /* Any other event shows EE working for the account again. */
    if (w.kind != EE_EV_AUTH_ERROR && w.kind != EE_EV_CONNECT_ERROR)
        ee_ungate(a);
    if (w.kind == EE_EV_OTHER)
        return mp_fail(err, MP_SKIP, "push: event the bridge does not act on");
    /* 4. The hint: the folder for message events and mailboxReset, the
     * whole account for folder-list and account-state events. */
    const char *folder = ee_event_is_folder(w.kind) && w.path[0] ? w.path : NULL;
    mp_status st = h->push_hint(a->acct, folder, w.event, err);
    if (st != MP_OK) {
        reply_json(reply, 503, "hint not recorded");
        return MP_RETRY;
    }
    if (event_id != NULL)
        ee_dedupe_add(ei->dedupe, event_id);
    return MP_OK;
}

mp_status ee_push_enroll(mp_account *acct, mp_subscription *sub_r, mp_error *err)
{
    (void)sub_r;
    ee_account *a = ee_host->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "emailengine account not open");
    if (MP_HOST_HAS(ee_host, push_status)) {
        if (atomic_load(&a->push_seen))
            ee_host->push_status(acct, MP_PUSH_STATE_LIVE, "EmailEngine webhooks");
        else
            ee_host->push_status(acct, MP_PUSH_STATE_STARTING,
                                 "waiting for EmailEngine's first signed webhook (point its"
                                 " webhooks at /push/<instance>)");
    }
    return mp_fail(err, MP_SKIP, "EmailEngine sends webhooks without a subscription");
}

mp_status ee_check(mp_account *acct, unsigned flags, mp_check *chk, mp_error *err)
{
    ee_account *a = ee_host->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "emailengine account not open");
    mp_error e;
    memset(&e, 0, sizeof e);
    mp_status st = ee_account_check(a, &e);
    char detail[700];
    if (st == MP_OK) {
        snprintf(detail, sizeof detail, "EmailEngine accepts the token and account \"%s\" is"
                 " connected", a->ee_account);
        ee_host->check_report(chk, "account", MP_CHECK_OK, detail);
        ee_mailboxes boxes;
        memset(&e, 0, sizeof e);
        st = ee_mailboxes_fetch(a, &boxes, &e);
        if (st == MP_OK) {
            snprintf(detail, sizeof detail, "%zu mailboxes listed", boxes.n);
            ee_mailboxes_clear(&boxes);
            ee_host->check_report(chk, "mailboxes", MP_CHECK_OK, detail);
        } else {
            ee_host->check_report(chk, "mailboxes", MP_CHECK_FAIL, e.text);
        }
    } else {
        ee_host->check_report(chk, "account", MP_CHECK_FAIL, e.text);
    }
    ee_host->check_report(chk, "webhooks",
                          atomic_load(&a->push_seen) ? MP_CHECK_OK : MP_CHECK_WARN,
                          atomic_load(&a->push_seen)
                              ? "a signed webhook for this account arrived"
                              : "no signed webhook for this account since the daemon started:"
                                " set EmailEngine's webhook URL to <public>/push/<instance>"
                                " and its serviceSecret to service_secret_file's content");
    if (flags & MP_CHECK_LIVE)
        ee_host->check_report(chk, "live_test", MP_CHECK_SKIP,
                              "the bridge is read-only: send a message to the account by hand");
    return MP_OK;
}

/* Never reached in practice (push_enroll stores no subscription); for a
 * subscription left by an older build: nothing to renew or remove at EE,
 * whose webhook URL belongs to its admin. */
mp_status ee_push_renew(mp_account *acct, const mp_subscription *current,
                        mp_subscription *sub_r, mp_error *err)
{
    (void)current;
    return ee_push_enroll(acct, sub_r, err);
}

mp_status ee_push_cancel(mp_account *acct, const mp_subscription *current, mp_error *err)
{
    (void)acct;
    (void)current;
    (void)err;
    return MP_OK;
}

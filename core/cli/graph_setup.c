/*
 * mailpulsectl graph-setup ACCOUNT [--no-live] [--timeout SECONDS]: the
 * guided Outlook (Microsoft Graph) push setup (issue 11 item 3). Its
 * steps, each printed:
 *
 *  1. preflight: the account is a graph account and the daemon runs the
 *     driver's check without a live test (check.h, graph_check.c); the
 *     results are printed as `mailpulsectl check` prints them. The check
 *     republishes the driver's setup parameters in the account's profile
 *     (tenant, client_id, auth, user, public_url, notification_url).
 *  2. the public URL: without public_url the account polls (push WARN;
 *     "ready, polling only", exit 0, as gmail-setup says for push: off).
 *     Otherwise the CLI itself does Graph's validation round trip against
 *     both URLs Graph will call, <public_url>/push/<instance> and its
 *     /lifecycle: a POST with ?validationToken=<random token with odd
 *     characters, percent-encoded> must be answered 200, text/plain, with
 *     exactly the decoded token, within Graph's 10 s. This is what Graph
 *     does before it creates a subscription, so a proxy that drops the
 *     query, rewrites the body or answers HTML is found here, with the
 *     reason, rather than as a failed subscription later.
 *  3. the subscriptions: wait (up to --timeout) until the account's push
 *     is live, then print each subscription (folder, id, expiry) from the
 *     profile graph.so publishes.
 *  4. when something failed: the app registration steps an admin takes in
 *     the Entra admin center (when the credentials or mailbox failed), and
 *     "run graph-setup again", exit 1. Otherwise the live test (unless
 *     --no-live): the event position, a check with the live flag (the
 *     driver creates a test message in the inbox when the app may, else
 *     the admin is asked to send one), the account's message.new events
 *     followed until that message's, its latency from the create, and
 *     whether a change notification came (the account's last push).
 *
 * The round trip is the one request that does not go to the daemon:
 * libcurl directly, no redirects (Graph follows none), TLS verified.
 * Exit: 0 ready, 1 setup incomplete, 2 error (daemon unreachable, not a
 * graph account, a check that could not run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "check.h"
#include "commands.h"
#include "setup.h"
#include "util/util.h"

#define GRAPH_DRIVER "graph"
#define LIVE_TIMEOUT_S 120
/* Graph waits 10 s for the validation answer. */
#define VALIDATION_TIMEOUT_S 10
#define PUSH_POLL_MS 500
#define BODY_MAX 4096

typedef struct setup {
    const mpctl_args *args;
    const mpctl_conn *conn;
    const char *account;
    char *instance;
    json_t *acct;   /* the last GET /v1/accounts/{id}                   */
    int failed;     /* something failed: setup incomplete               */
    int app_failed; /* credentials / mailbox / permissions failed       */
    int64_t timeout_s;
} setup;

static const char *prof(const setup *s, const char *key)
{
    return json_string_value(json_object_get(json_object_get(s->acct, "profile"), key));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && !mpctl_interrupted)
        ;
}

/* ---- the account ---- */

static int load_account(setup *s)
{
    char *id = mpctl_path_escape(s->account);
    char *path = mpu_asprintf("/v1/accounts/%s", id);
    mpctl_args quiet = *s->args;
    quiet.json = 0;
    json_t *a;
    int rc = mpctl_fetch_json(&quiet, s->conn, "GET", path, &a);
    free(path);
    free(id);
    if (rc != MPCTL_EXIT_OK)
        return MPCTL_SETUP_ERROR;
    const char *driver = json_string_value(json_object_get(a, "driver"));
    const char *inst = json_string_value(json_object_get(a, "instance"));
    if (driver == NULL || strcmp(driver, GRAPH_DRIVER) != 0 || inst == NULL) {
        char *acct = mpctl_sanitize(s->account);
        char *drv = mpctl_sanitize(driver);
        fprintf(stderr,
                "mailpulsectl: account '%s' uses driver '%s', not graph; graph-setup is "
                "for Microsoft Graph (Outlook) accounts\n",
                acct, drv);
        free(drv);
        free(acct);
        json_decref(a);
        return MPCTL_SETUP_ERROR;
    }
    free(s->instance);
    s->instance = mpu_strdup(inst);
    json_decref(s->acct);
    s->acct = a;
    return MPCTL_SETUP_READY;
}

/* ---- 1. preflight ---- */

/* The checks that the app registration steps fix. */
static const char *const app_checks[] = {"credentials", "mailbox", "permissions", NULL};

static int preflight(setup *s)
{
    int rc = mpctl_setup_preflight(s->conn, s->account, app_checks, &s->failed,
                                   &s->app_failed);
    if (rc != MPCTL_SETUP_READY)
        return rc;
    rc = load_account(s);
    if (rc == MPCTL_SETUP_READY && prof(s, "tenant") == NULL) {
        fprintf(stderr,
                "mailpulsectl: the daemon shows no setup parameters for '%s' after its "
                "check (a graph.so without them?)\n",
                s->account);
        rc = MPCTL_SETUP_ERROR;
    }
    return rc;
}

/* ---- 2. the validation round trip ---- */

typedef struct body_buf {
    char data[BODY_MAX + 1];
    size_t len;
    int over;
} body_buf;

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    body_buf *b = userdata;
    size_t n = size * nmemb;
    size_t room = BODY_MAX - b->len;
    size_t take = n < room ? n : room;
    memcpy(b->data + b->len, ptr, take);
    b->len += take;
    b->data[b->len] = '\0';
    if (take < n)
        b->over = 1;
    return n;
}

/* A token like Graph's ("Validation: ... Request-Id: <guid>") with the
 * characters a sloppy echo gets wrong: spaces, '+', '&', '=', '%', '/',
 * '?', '#', markup, quotes and a non-ASCII letter. */
static char *make_token(void)
{
    unsigned char rnd[12];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return NULL;
    char hex[2 * sizeof rnd + 1];
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    return mpu_asprintf("Validation: mailpulse graph-setup Request-Id: %s "
                        "a+b&c=d%%25/e?f#g <b>\"x'</b> \xc3\xa9",
                        hex);
}

/* One validation request to `url`. 0 when the answer was exact, else -1
 * with the reason printed as a FAIL verdict. */
static int round_trip(const char *name, const char *url)
{
    char *token = make_token();
    CURL *curl = curl_easy_init();
    if (token == NULL || curl == NULL) {
        mpctl_setup_verdict("FAIL", name, "cannot set up the request (RNG or libcurl)");
        free(token);
        if (curl != NULL)
            curl_easy_cleanup(curl);
        return -1;
    }
    char *escaped = curl_easy_escape(curl, token, 0);
    char *full = mpu_asprintf("%s%svalidationToken=%s", url, strchr(url, '?') ? "&" : "?",
                              escaped);
    curl_free(escaped);
    body_buf body;
    memset(&body, 0, sizeof body);
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: text/plain");
    curl_easy_setopt(curl, CURLOPT_URL, full);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "mailpulsectl-graph-setup");
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)VALIDATION_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)VALIDATION_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    int64_t t0 = mpu_mono_ms();
    CURLcode rc = curl_easy_perform(curl);
    int64_t took = mpu_mono_ms() - t0;
    long status = 0;
    char *ctype = NULL;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        char *ct = NULL;
        curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
        ctype = ct != NULL ? mpu_strdup(ct) : NULL;
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    int ok = -1;
    if (rc != CURLE_OK)
        mpctl_setup_verdict("FAIL", name, "cannot reach %s: %s (Graph must reach it)",
                            url, errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
    else if (status == 404)
        mpctl_setup_verdict("FAIL", name,
                            "%s answered 404: no push listener for this instance there "
                            "(check the instance name and that the proxy forwards /push/ "
                            "to mailpulsed)",
                            url);
    else if (status != 200)
        mpctl_setup_verdict("FAIL", name,
                            "%s answered %ld to the validation request; Graph needs 200",
                            url, status);
    else if (ctype == NULL || strncasecmp(ctype, "text/plain", 10) != 0)
        mpctl_setup_verdict(
            "FAIL", name,
            "%s answered 200 with Content-Type %s; Graph needs text/plain: "
            "something other than mailpulsed answers there",
            url, ctype != NULL ? ctype : "(none)");
    else if (body.over || body.len != strlen(token) || memcmp(body.data, token, body.len))
        mpctl_setup_verdict("FAIL", name,
                            "%s answered 200 text/plain but not with the decoded token "
                            "(%zu bytes back for %zu sent): something between Graph and "
                            "mailpulsed rewrites the query or the body",
                            url, body.len, strlen(token));
    else if (took > VALIDATION_TIMEOUT_S * 1000 / 2)
        mpctl_setup_verdict("WARN", name,
                            "%s echoed the token, but took %lld ms (Graph waits 10 s)",
                            url, (long long)took);
    else
        mpctl_setup_verdict("OK", name, "%s echoed the validation token (%lld ms)", url,
                            (long long)took);
    if (rc == CURLE_OK && status == 200 && ctype != NULL &&
        strncasecmp(ctype, "text/plain", 10) == 0 && !body.over &&
        body.len == strlen(token) && memcmp(body.data, token, body.len) == 0)
        ok = 0;
    free(ctype);
    free(full);
    free(token);
    return ok;
}

/* 1 when push is configured and both URLs answer, 0 when no public_url,
 * -1 when it failed (printed). */
static int check_public_url(setup *s)
{
    const char *public_url = prof(s, "public_url");
    const char *notify = prof(s, "notification_url");
    printf("\n");
    mpctl_setup_say("== public URL ==");
    if (public_url == NULL) {
        mpctl_setup_verdict("WARN", "push",
                            "no public_url: polling only; set public_url (the base URL "
                            "Graph can reach) in %s's plugins.d file, reload, run "
                            "graph-setup again",
                            s->instance);
        return 0;
    }
    char *expected = mpu_asprintf("/push/%s", s->instance);
    size_t n = notify != NULL ? strlen(notify) : 0, m = strlen(expected);
    int named = n >= m && strcmp(notify + n - m, expected) == 0;
    free(expected);
    if (!named) {
        mpctl_setup_verdict("FAIL", "notification_url",
                            "Graph is told to notify %s, but this account's instance is "
                            "'%s' (a daemon older than ABI 1.2 or a proxy rewriting "
                            "public_url)",
                            notify != NULL ? notify : "(none)", s->instance);
        return -1;
    }
    mpctl_setup_verdict("OK", "public_url", "%s (notifications: %s)", public_url, notify);
    char *lifecycle = mpu_asprintf("%s/lifecycle", notify);
    int rc = round_trip("validation", notify);
    if (round_trip("validation", lifecycle) < 0)
        rc = -1;
    free(lifecycle);
    if (rc == 0 && strncasecmp(notify, "https://", 8) != 0)
        mpctl_setup_verdict("WARN", "public_url",
                            "%s is not https: Graph delivers notifications only to https "
                            "(fine for a local stand-in)",
                            notify);
    return rc == 0 ? 1 : -1;
}

/* ---- 3. the subscriptions ---- */

static int wait_push_live(setup *s)
{
    printf("\n");
    mpctl_setup_say("== subscriptions ==");
    int64_t deadline = mpu_mono_ms() + s->timeout_s * 1000;
    for (;;) {
        if (load_account(s) != MPCTL_SETUP_READY)
            return MPCTL_SETUP_ERROR;
        if (json_is_true(json_object_get(s->acct, "push_live")))
            break;
        if (mpctl_interrupted) {
            fprintf(stderr, "mailpulsectl: interrupted\n");
            return MPCTL_SETUP_ERROR;
        }
        if (mpu_mono_ms() >= deadline) {
            const char *state = json_string_value(json_object_get(s->acct, "push_state"));
            const char *error = json_string_value(json_object_get(s->acct, "last_error"));
            mpctl_setup_verdict("FAIL", "subscriptions",
                                "push is not live after %llds: push state \"%s\"%s%s",
                                (long long)s->timeout_s, state != NULL ? state : "-",
                                error != NULL ? "; last error: " : "",
                                error != NULL ? error : "");
            s->failed = 1;
            return MPCTL_SETUP_INCOMPLETE;
        }
        sleep_ms(PUSH_POLL_MS);
    }
    const json_t *subs =
        json_object_get(json_object_get(s->acct, "profile"), "subscriptions");
    size_t i;
    const json_t *sub;
    json_array_foreach(subs, i, sub)
    {
        const char *folder = json_string_value(json_object_get(sub, "folder"));
        mpctl_setup_verdict("OK", "subscription", "%s  %s  expires %s",
                            folder == NULL             ? "-"
                            : strcmp(folder, "*") == 0 ? "(mailbox-wide)"
                                                       : folder,
                            json_string_value(json_object_get(sub, "id")),
                            json_string_value(json_object_get(sub, "expires")));
    }
    if (json_array_size(subs) == 0) {
        mpctl_setup_verdict("FAIL", "subscriptions",
                            "push is live but the profile lists no subscription");
        s->failed = 1;
        return MPCTL_SETUP_INCOMPLETE;
    }
    return MPCTL_SETUP_READY;
}

/* ---- 4. the app registration, the live test ---- */

static void print_registration(const setup *s)
{
    const char *auth = prof(s, "auth");
    const char *tenant = prof(s, "tenant");
    const char *client = prof(s, "client_id");
    printf("\n");
    mpctl_setup_say("== app registration (Microsoft Entra admin center, "
                    "https://entra.microsoft.com) ==");
    if (auth != NULL && strcmp(auth, "delegated") == 0) {
        mpctl_setup_say(
            "1. Identity > Applications > App registrations: open app %s (or New "
            "registration); its Application (client) ID is client_id, its Directory "
            "(tenant) ID is tenant (%s).",
            client != NULL ? client : "-", tenant != NULL ? tenant : "-");
        mpctl_setup_say(
            "2. API permissions > Add a permission > Microsoft Graph > Delegated "
            "permissions: Mail.Read and offline_access.");
        mpctl_setup_say(
            "3. Sign in as %s with the authorization-code flow asking for "
            "\"offline_access https://graph.microsoft.com/Mail.Read\"; write the "
            "refresh token to refresh_token_file (mode 0600).",
            prof(s, "user") != NULL ? prof(s, "user") : "the user");
        mpctl_setup_say("4. Confidential client: Certificates & secrets > New client "
                        "secret, its Value in client_secret_file.");
    } else {
        mpctl_setup_say(
            "1. Identity > Applications > App registrations: open app %s (or New "
            "registration, single tenant); its Application (client) ID is client_id, its "
            "Directory (tenant) ID is tenant (%s).",
            client != NULL ? client : "-", tenant != NULL ? tenant : "-");
        mpctl_setup_say(
            "2. API permissions > Add a permission > Microsoft Graph > "
            "Application permissions: Mail.Read; then \"Grant admin consent\" "
            "(a Global or Privileged Role Administrator). Mail.ReadWrite is "
            "only for graph-setup's test message and may be left out.");
        mpctl_setup_say("3. Certificates & secrets > New client secret: write its Value "
                        "(not its Secret ID) to client_secret_file (mode 0600); note its "
                        "expiry.");
        mpctl_setup_say("4. Optional: limit the app to some mailboxes with an Exchange "
                        "Online application access policy (it must include %s).",
                        prof(s, "user") != NULL ? prof(s, "user") : "the mailbox");
    }
    mpctl_setup_say("Then reload mailpulsed (SIGHUP) and run graph-setup again.");
}

static int live_test(setup *s, int push)
{
    printf("\n");
    mpctl_setup_say("== live test ==");
    int64_t seq = 0;
    if (mpctl_setup_event_position(s->args, s->conn, &seq) < 0)
        return MPCTL_SETUP_ERROR;
    int64_t id = 0;
    json_t *result = NULL;
    int rc = mpctl_check_start(s->conn, s->account, 1, &id);
    if (rc == MPCTL_CHECK_PASSED)
        rc = mpctl_check_wait(s->conn, s->account, id, 0, &result);
    if (rc != MPCTL_CHECK_PASSED)
        return MPCTL_SETUP_ERROR;
    const json_t *live = mpctl_check_result(result, "live_test");
    const char *outcome = json_string_value(json_object_get(live, "outcome"));
    const char *detail = json_string_value(json_object_get(live, "detail"));
    mpctl_live_wait w = {.account = s->account};
    char *msg_id = NULL, *subject = NULL;
    int64_t create_ms = mpu_now_ms();
    const char *from = "request";
    if (outcome != NULL && strcmp(outcome, "ok") == 0 && detail != NULL) {
        /* "<id> created in the inbox of <user> at <time>" */
        msg_id = mpu_strndup(detail, strcspn(detail, " "));
        w.provider_id = msg_id;
        const char *stamp = strrchr(detail, ' ');
        int64_t t = stamp != NULL ? mpctl_time_ms(stamp + 1) : -1;
        if (t > 0) {
            create_ms = t;
            subject = mpu_asprintf("mailpulse live test %s", stamp + 1);
            w.subject = subject;
            from = "create";
        }
        mpctl_setup_verdict(
            "OK", "live_test",
            "test message %s created in the inbox; waiting up to %llds for "
            "its message.new",
            msg_id, (long long)s->timeout_s);
    } else if (outcome != NULL && strcmp(outcome, "skip") == 0) {
        mpctl_setup_verdict("SKIP", "live_test", "%s",
                            detail != NULL ? detail : "no create");
        mpctl_setup_say(
            "Send a message to %s now; waiting up to %llds for its message.new.",
            prof(s, "user") != NULL ? prof(s, "user") : "the mailbox",
            (long long)s->timeout_s);
    } else {
        mpctl_setup_verdict("FAIL", "live_test", "%s",
                            detail != NULL ? detail : "the driver ran no live test");
        json_decref(result);
        return MPCTL_SETUP_INCOMPLETE;
    }
    fflush(stdout);
    json_decref(result);
    int found = mpctl_setup_follow(s->conn, seq, &w, s->timeout_s);
    free(msg_id);
    free(subject);
    if (found < 0)
        return MPCTL_SETUP_ERROR;
    if (found > 0) {
        mpctl_setup_verdict(
            "FAIL", "message.new",
            "none for %s within %llds: see `mailpulsectl account %s` (push "
            "state, last error)",
            s->account, (long long)s->timeout_s, s->account);
        return MPCTL_SETUP_INCOMPLETE;
    }
    int64_t latency = w.time_ms > 0 ? w.time_ms - create_ms : -1;
    mpctl_setup_verdict("OK", "message.new", "%s \"%s\"", w.message, w.subject_seen);
    mpctl_setup_verdict("OK", "latency", "%lld ms from the %s to its message.new",
                        (long long)latency, from);
    if (!push)
        return MPCTL_SETUP_READY;
    /* Whether a change notification came: the account's last push since
     * the create (a second of slack for the two clocks' rounding). */
    if (load_account(s) != MPCTL_SETUP_READY)
        return MPCTL_SETUP_ERROR;
    int64_t push_ms =
        mpctl_time_ms(json_string_value(json_object_get(s->acct, "last_push")));
    if (push_ms >= create_ms - 1000) {
        mpctl_setup_verdict(
            "OK", "notification",
            "a change notification arrived %lld ms after the %s: push works",
            (long long)(push_ms - create_ms), from);
        return MPCTL_SETUP_READY;
    }
    mpctl_setup_verdict(
        "FAIL", "notification",
        "no change notification since the %s: the message came by polling; "
        "see `mailpulsectl account %s`",
        from, s->account);
    return MPCTL_SETUP_INCOMPLETE;
}

int mpctl_cmd_graph_setup(const mpctl_args *args, const mpctl_conn *conn)
{
    setup s = {.args = args,
               .conn = conn,
               .account = args->pos[0],
               .timeout_s = args->timeout_s > 0 ? args->timeout_s : LIVE_TIMEOUT_S};
    int rc = load_account(&s);
    if (rc == MPCTL_SETUP_READY)
        rc = preflight(&s);
    int push = 0;
    if (rc == MPCTL_SETUP_READY) {
        push = check_public_url(&s);
        if (push < 0)
            s.failed = 1;
        if (push > 0 && !s.failed)
            rc = wait_push_live(&s);
    }
    if (rc == MPCTL_SETUP_READY || rc == MPCTL_SETUP_INCOMPLETE) {
        if (s.app_failed)
            print_registration(&s);
        if (s.failed) {
            printf("\nSetup incomplete: fix what failed above, then run graph-setup "
                   "again.\n");
            rc = MPCTL_SETUP_INCOMPLETE;
        } else if (args->no_live) {
            printf("\nReady as far as checked%s; live test skipped (--no-live).\n",
                   push > 0 ? "" : " (polling only: no public_url)");
        } else if (push == 0) {
            printf("\nReady: the account syncs by polling (no public_url, no live "
                   "test).\n");
        } else {
            rc = live_test(&s, push > 0);
            if (rc == MPCTL_SETUP_READY)
                printf("\nReady: Outlook change notifications reach mailpulse.\n");
        }
    }
    free(s.instance);
    json_decref(s.acct);
    return rc;
}

/*
 * mailpulsectl gmail-setup ACCOUNT [--public-url URL] [--no-live]
 * [--timeout SECONDS]: the guided Gmail push setup (issue 10 item 4, the
 * seed's "Configure Gmail Realtime" as a command). Its steps, each printed:
 *
 *  1. preflight: the account is a Gmail account (gmail_status.c) and the
 *     daemon runs the driver's check without a live test (check.h); the
 *     results are printed as `mailpulsectl check` prints them;
 *  2. push mode: the public URL (--public-url, else the push
 *     subscription's endpoint the check found, else an https
 *     push_audience) and one unsigned Pub/Sub envelope POSTed to
 *     <url>/push/<instance>: 401/403 means "reachable, refuses unsigned
 *     pushes"; any other answer or a connection error fails;
 *  3. the gcloud script of the configured mode, from the setup parameters
 *     the driver publishes in the account's profile (gmail_check.c);
 *  4. when something failed: "run the script above, then run gmail-setup
 *     again", exit 1. Otherwise the live test (unless --no-live): the
 *     event position, a check with the live flag (the driver inserts a
 *     test message when its scopes allow, else the admin is asked to send
 *     one), the account's message.new events followed until that
 *     message's, its latency from the insert, and whether a push came.
 *
 * The probe of the public URL is the one request that does not go to the
 * daemon: libcurl directly (already linked for the daemon client), TLS
 * verified, no redirects, nothing sent but the unsigned envelope.
 * Verdict lines, times and the wait for message.new are shared with
 * graph-setup (setup.c).
 * Exit: 0 ready, 1 setup incomplete, 2 error (daemon unreachable, refused,
 * a check that could not run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "check.h"
#include "commands.h"
#include "setup.h"
#include "util/util.h"

#define GMAIL_PUSH_ACCOUNT "gmail-api-push@system.gserviceaccount.com"
#define LIVE_TIMEOUT_S 120
#define PROBE_TIMEOUT_S 15
#define LIVE_SUBJECT "mailpulse live test "

typedef struct setup {
    const mpctl_args *args;
    const mpctl_conn *conn;
    const char *account;
    char *instance;
    json_t *profile;  /* the driver's setup parameters                   */
    char *public_url; /* scheme://host[/prefix], no trailing '/'; or NULL */
    int failed;       /* a check failed                                  */
    int push_failed;  /* a Pub/Sub or push endpoint check failed         */
} setup;

static const char *prof(const setup *s, const char *key)
{
    return json_string_value(json_object_get(s->profile, key));
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ---- the account and its profile ---- */

static int load_account(setup *s)
{
    json_t *a;
    int rc = mpctl_gmail_account_get(s->args, s->conn, "gmail-setup", &a);
    if (rc != MPCTL_EXIT_OK)
        return MPCTL_SETUP_ERROR;
    const char *inst = json_string_value(json_object_get(a, "instance"));
    json_t *profile = json_object_get(a, "profile");
    if (inst == NULL) {
        fprintf(stderr, "mailpulsectl: the daemon names no instance for '%s'\n",
                s->account);
        json_decref(a);
        return MPCTL_SETUP_ERROR;
    }
    free(s->instance);
    s->instance = mpu_strdup(inst);
    json_decref(s->profile);
    s->profile = json_incref(profile);
    json_decref(a);
    return MPCTL_SETUP_READY;
}

/* ---- 1. preflight ---- */

/* The checks that the gcloud script below fixes. */
static const char *const push_checks[] = {"topic", "publisher", "push_subscription",
                                          "pull_subscription", NULL};

static int preflight(setup *s)
{
    int rc = mpctl_setup_preflight(s->conn, s->account, push_checks, &s->failed,
                                   &s->push_failed);
    if (rc != MPCTL_SETUP_READY)
        return rc;
    /* The driver's check published the setup parameters (and the push
     * subscription's endpoint when it found one). */
    rc = load_account(s);
    if (rc == MPCTL_SETUP_READY && prof(s, "email") == NULL) {
        fprintf(stderr,
                "mailpulsectl: the daemon shows no setup parameters for '%s' "
                "after its check (a gmail.so without them?)\n",
                s->account);
        rc = MPCTL_SETUP_ERROR;
    }
    return rc;
}

/* ---- 2. the public URL ---- */

/* `url` up to (not including) "/push/<instance>", or NULL. */
static char *strip_push_path(const char *url, const char *instance)
{
    char *suffix = mpu_asprintf("/push/%s", instance);
    char *out = NULL;
    if (ends_with(url, suffix))
        out = mpu_strndup(url, strlen(url) - strlen(suffix));
    free(suffix);
    return out;
}

/* "scheme://host[:port]" of an http(s) URL, or NULL. */
static char *origin_of(const char *url)
{
    const char *p = strstr(url, "://");
    if (p == NULL ||
        (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0))
        return NULL;
    size_t n = strcspn(p + 3, "/?#");
    return n == 0 ? NULL : mpu_strndup(url, (size_t)(p + 3 - url) + n);
}

static void find_public_url(setup *s)
{
    const char *given = s->args->public_url;
    const char *endpoint = prof(s, "push_endpoint");
    const char *audience = prof(s, "push_audience");
    if (given != NULL) {
        size_t n = strlen(given);
        while (n > 0 && given[n - 1] == '/')
            n--;
        char *url = mpu_strndup(given, n);
        char *stripped = strip_push_path(url, s->instance);
        s->public_url = stripped != NULL ? stripped : mpu_strdup(url);
        free(url);
        mpctl_setup_verdict("OK", "public_url", "%s (--public-url)", s->public_url);
    } else if (endpoint != NULL) {
        s->public_url = strip_push_path(endpoint, s->instance);
        if (s->public_url != NULL) {
            mpctl_setup_verdict("OK", "public_url",
                                "%s (from the push subscription's endpoint)",
                                s->public_url);
        } else {
            const char *at = strstr(endpoint, "/push/");
            if (at != NULL)
                s->public_url = mpu_strndup(endpoint, (size_t)(at - endpoint));
            s->push_failed = s->failed = 1;
            mpctl_setup_verdict(
                "FAIL", "push_endpoint",
                "the push subscription pushes to %s, but this account's instance is "
                "'%s': its endpoint must end with /push/%s",
                endpoint, s->instance, s->instance);
        }
    } else if (audience != NULL && strncasecmp(audience, "https://", 8) == 0) {
        s->public_url = strip_push_path(audience, s->instance);
        if (s->public_url == NULL)
            s->public_url = origin_of(audience);
        if (s->public_url != NULL)
            mpctl_setup_verdict("OK", "public_url", "%s (from push_audience)",
                                s->public_url);
    }
    if (s->public_url == NULL) {
        s->push_failed = s->failed = 1;
        mpctl_setup_verdict(
            "FAIL", "public_url",
            "unknown: no push subscription endpoint and push_audience is not an https "
            "URL; pass --public-url https://HOST (where /push/%s reaches mailpulsed)",
            s->instance);
    }
}

/* RFC 4648 base64 through OpenSSL; malloc'd. */
static char *base64(const char *data)
{
    size_t len = strlen(data);
    char *out = mpu_malloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)len);
    return out;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

/* POST an unsigned Pub/Sub push envelope to `url`. The HTTP status, or 0
 * with `why` on a connection failure. */
static long post_unsigned(const char *url, const char *email, char *why, size_t why_len)
{
    json_t *payload = json_pack("{s:s,s:s}", "emailAddress", email, "historyId", "1");
    char *note = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    if (note == NULL) {
        snprintf(why, why_len, "cannot build the envelope");
        return 0;
    }
    char *data = base64(note);
    char now[40];
    mpu_time_rfc3339(mpu_now_ms(), now, sizeof now);
    json_t *doc = json_pack("{s:{s:s,s:s,s:s},s:s}", "message", "data", data, "messageId",
                            "mailpulse-setup-probe", "publishTime", now, "subscription",
                            "projects/mailpulse-setup/subscriptions/unsigned-probe");
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    free(data);
    free(note);
    CURL *curl = curl_easy_init();
    long status = 0;
    if (curl == NULL || body == NULL) {
        snprintf(why, why_len, "cannot set up libcurl");
        free(body);
        return 0;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers =
        curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "mailpulsectl-gmail-setup");
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)PROBE_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(why, why_len, "%s", errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    free(body);
    return status;
}

static void probe_public_url(setup *s)
{
    char *url = mpu_asprintf("%s/push/%s", s->public_url, s->instance);
    char why[CURL_ERROR_SIZE + 64] = "";
    long status = post_unsigned(url, prof(s, "email"), why, sizeof why);
    if (status == 401 || status == 403) {
        mpctl_setup_verdict("OK", "push_endpoint",
                            "%s is reachable and refuses unsigned pushes (%ld)", url,
                            status);
        if (strncasecmp(url, "https://", 8) != 0)
            mpctl_setup_verdict(
                "WARN", "push_endpoint",
                "%s is not https: Pub/Sub pushes only to https with a CA-signed "
                "certificate",
                url);
    } else {
        s->push_failed = s->failed = 1;
        if (status == 0)
            mpctl_setup_verdict("FAIL", "push_endpoint", "cannot reach %s: %s", url, why);
        else if (status >= 200 && status <= 299)
            mpctl_setup_verdict(
                "FAIL", "push_endpoint",
                "%s accepted an unsigned push (%ld): whatever answers there does not "
                "verify Pub/Sub's token; route it to mailpulsed's push listener",
                url, status);
        else if (status == 404)
            mpctl_setup_verdict(
                "FAIL", "push_endpoint",
                "%s answered 404: no push listener for instance '%s' there (check "
                "that the proxy forwards /push/ to mailpulsed)",
                url, s->instance);
        else
            mpctl_setup_verdict(
                "FAIL", "push_endpoint",
                "%s answered %ld, not the 401/403 of mailpulsed's push listener", url,
                status);
    }
    free(url);
}

/* ---- 3. the gcloud script ---- */

/* `v` as one shell word (single-quoted unless plainly safe); malloc'd. */
static char *shq(const char *v)
{
    if (v[0] != '\0' && strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789_@%+=:,./-") == strlen(v))
        return mpu_strdup(v);
    size_t n = 2;
    for (const char *p = v; *p != '\0'; p++)
        n += *p == '\'' ? 4 : 1;
    char *out = mpu_malloc(n + 1), *o = out;
    *o++ = '\'';
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *p;
        }
    }
    *o++ = '\'';
    *o = '\0';
    return out;
}

/* The project of "projects/P/topics/T". */
static char *project_of(const char *topic)
{
    if (strncmp(topic, "projects/", 9) != 0)
        return mpu_strdup("PROJECT");
    const char *end = strchr(topic + 9, '/');
    return end != NULL ? mpu_strndup(topic + 9, (size_t)(end - topic - 9))
                       : mpu_strdup("PROJECT");
}

/* Print one line with its values shell-quoted: each %s of `fmt` takes the
 * next value. */
static void script_line(const char *fmt, const char *const *values, size_t n)
{
    size_t k = 0;
    for (const char *p = fmt; *p != '\0'; p++) {
        if (p[0] == '%' && p[1] == 's' && k < n) {
            char *q = shq(values[k++]);
            char *clean = mpctl_sanitize(q);
            fputs(clean, stdout);
            free(clean);
            free(q);
            p++;
        } else {
            fputc(*p, stdout);
        }
    }
    fputc('\n', stdout);
}

static void print_script(setup *s)
{
    const char *mode = prof(s, "push");
    const char *topic = prof(s, "topic");
    if (mode == NULL || strcmp(mode, "off") == 0 || topic == NULL) {
        mpctl_setup_say(
            "push is off for instance '%s': nothing to set up in Google Cloud. For "
            "realtime, set push: pubsub-push or pubsub-pull in its plugins.d file.",
            s->instance);
        return;
    }
    char *project = project_of(topic);
    const char *member = "serviceAccount:" GMAIL_PUSH_ACCOUNT;
    printf("\n");
    mpctl_setup_say("== gcloud script (%s) ==", mode);
    mpctl_setup_say(
        "# As a Pub/Sub admin of project %s; a step whose resource exists already may "
        "fail harmlessly.",
        project);
    const char *v1[] = {topic};
    script_line("gcloud pubsub topics create %s", v1, 1);
    const char *v2[] = {topic, member};
    script_line("gcloud pubsub topics add-iam-policy-binding %s \\\n"
                "    --member=%s --role=roles/pubsub.publisher",
                v2, 2);
    if (strcmp(mode, "pubsub-push") == 0) {
        char *sub =
            mpu_asprintf("projects/%s/subscriptions/mailpulse-%s", project, s->instance);
        char *endpoint = mpu_asprintf(
            "%s/push/%s", s->public_url != NULL ? s->public_url : "https://PUBLIC-HOST",
            s->instance);
        const char *sa = prof(s, "push_service_account");
        const char *aud = prof(s, "push_audience");
        mpctl_setup_say("# %s signs the pushes: it must exist in %s, and you need "
                        "iam.serviceAccounts.actAs on it.",
                        sa != NULL ? sa : "push_service_account", project);
        if (s->public_url == NULL)
            printf("# Replace PUBLIC-HOST (or run gmail-setup with --public-url).\n");
        const char *v3[] = {sub, topic, endpoint, sa != NULL ? sa : "SERVICE_ACCOUNT",
                            aud != NULL ? aud : "AUDIENCE"};
        script_line("gcloud pubsub subscriptions create %s \\\n"
                    "    --topic=%s \\\n"
                    "    --push-endpoint=%s \\\n"
                    "    --push-auth-service-account=%s \\\n"
                    "    --push-auth-token-audience=%s",
                    v3, 5);
        free(endpoint);
        free(sub);
    } else {
        const char *sub = prof(s, "subscription");
        const char *email = prof(s, "email");
        char *who = mpu_asprintf("user:%s", email != NULL ? email : "EMAIL");
        const char *v3[] = {sub != NULL ? sub : "SUBSCRIPTION", topic};
        script_line("gcloud pubsub subscriptions create %s --topic=%s", v3, 2);
        printf("# The daemon pulls with this account's token (its credentials must carry "
               "the https://www.googleapis.com/auth/pubsub scope).\n");
        const char *v4[] = {sub != NULL ? sub : "SUBSCRIPTION", who};
        script_line("gcloud pubsub subscriptions add-iam-policy-binding %s \\\n"
                    "    --member=%s --role=roles/pubsub.subscriber",
                    v4, 2);
        free(who);
    }
    printf("\n");
    free(project);
}

/* ---- 4. the live test ---- */

static int live_test(setup *s)
{
    int64_t timeout_s = s->args->timeout_s > 0 ? s->args->timeout_s : LIVE_TIMEOUT_S;
    const char *email = prof(s, "email");
    printf("== live test ==\n");
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
    char subject[160] = "";
    int64_t insert_ms = mpu_now_ms();
    if (outcome != NULL && strcmp(outcome, "ok") == 0 && detail != NULL) {
        /* "<id> inserted into INBOX of <email> at <time>" */
        const char *stamp = strrchr(detail, ' ');
        int64_t t = stamp != NULL ? mpctl_time_ms(stamp + 1) : -1;
        if (t > 0) {
            insert_ms = t;
            snprintf(subject, sizeof subject, LIVE_SUBJECT "%s", stamp + 1);
            w.subject = subject;
        }
        char *msg_id = mpu_strndup(detail, strcspn(detail, " "));
        mpctl_setup_verdict("OK", "live_test",
                            "test message %s inserted; waiting up to %llds for its "
                            "message.new",
                            msg_id, (long long)timeout_s);
        free(msg_id);
    } else if (outcome != NULL && strcmp(outcome, "skip") == 0) {
        mpctl_setup_verdict("SKIP", "live_test", "%s",
                            detail != NULL ? detail : "no insert");
        mpctl_setup_say(
            "Send a message to %s now; waiting up to %llds for its message.new.",
            email != NULL ? email : "the mailbox", (long long)timeout_s);
        fflush(stdout);
    } else {
        mpctl_setup_verdict("FAIL", "live_test", "%s",
                            detail != NULL ? detail
                                           : "the driver ran no "
                                             "live test");
        json_decref(result);
        return MPCTL_SETUP_INCOMPLETE;
    }
    fflush(stdout);
    int found = mpctl_setup_follow(s->conn, seq, &w, timeout_s);
    json_decref(result);
    if (found < 0)
        return MPCTL_SETUP_ERROR; /* said by mpctl_setup_follow */
    if (found > 0) {
        mpctl_setup_verdict(
            "FAIL", "message.new",
            "none for %s within %llds: see `mailpulsectl gmail-status %s` (watch, last "
            "push, last error)",
            s->account, (long long)timeout_s, s->account);
        return MPCTL_SETUP_INCOMPLETE;
    }
    int64_t latency = w.time_ms > 0 ? w.time_ms - insert_ms : -1;
    mpctl_setup_verdict("OK", "message.new", "%s \"%s\" %lld ms after the %s", w.message,
                        w.subject_seen, (long long)latency,
                        w.subject != NULL ? "insert" : "request");

    /* Whether it came by push: the account's last push since the insert. */
    json_t *a;
    if (mpctl_gmail_account_get(s->args, s->conn, "gmail-setup", &a) != MPCTL_EXIT_OK)
        return MPCTL_SETUP_ERROR;
    int64_t push_ms = mpctl_time_ms(json_string_value(json_object_get(a, "last_push")));
    json_decref(a);
    if (push_ms >= insert_ms - 1000) {
        mpctl_setup_verdict("OK", "push",
                            "a push arrived %lld ms after the insert: realtime works",
                            (long long)(push_ms - insert_ms));
        return MPCTL_SETUP_READY;
    }
    mpctl_setup_verdict(
        "FAIL", "push",
        "no push arrived since the insert: the message came by polling; check the "
        "subscription and `mailpulsectl gmail-status %s`",
        s->account);
    return MPCTL_SETUP_INCOMPLETE;
}

int mpctl_cmd_gmail_setup(const mpctl_args *args, const mpctl_conn *conn)
{
    setup s = {.args = args, .conn = conn, .account = args->pos[0]};
    int rc = load_account(&s);
    if (rc == MPCTL_SETUP_READY)
        rc = preflight(&s);
    if (rc == MPCTL_SETUP_READY) {
        const char *mode = prof(&s, "push");
        int push = mode != NULL && strcmp(mode, "pubsub-push") == 0;
        int off = mode == NULL || strcmp(mode, "off") == 0;
        if (push) {
            printf("\n== push endpoint ==\n");
            find_public_url(&s);
            if (s.public_url != NULL)
                probe_public_url(&s);
        } else if (args->public_url != NULL) {
            mpctl_setup_say(
                "(--public-url is only used in pubsub-push mode; this instance is %s)",
                mode != NULL ? mode : "off");
        }
        print_script(&s);
        if (s.failed) {
            printf("%s\n", s.push_failed
                               ? "Setup incomplete: run the script above, then run "
                                 "gmail-setup again."
                               : "Setup incomplete: fix what failed above, then run "
                                 "gmail-setup again.");
            rc = MPCTL_SETUP_INCOMPLETE;
        } else if (off) {
            printf("Ready: the account syncs by polling.\n");
        } else if (args->no_live) {
            printf("Ready as far as checked; live test skipped (--no-live).\n");
        } else {
            rc = live_test(&s);
            if (rc == MPCTL_SETUP_READY)
                printf("Ready: Gmail push reaches mailpulse.\n");
        }
    }
    free(s.instance);
    free(s.public_url);
    json_decref(s.profile);
    return rc;
}

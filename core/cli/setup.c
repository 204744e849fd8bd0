/*
 * The pieces of a guided setup command that do not depend on the
 * provider (setup.h): verdict lines, times, and the live test's wait for
 * message.new on the daemon's event stream (GET /v1/events, SSE).
 *
 * The wait is bounded with alarm(): the stream blocks in libcurl, and
 * SIGALRM sets mpctl_interrupted, which the transfer checks, so the
 * timeout needs no second thread. A dropped stream is resumed from its
 * last event id, so nothing between two connections is missed.
 */
#include "setup.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "commands.h"

void mpctl_setup_verdict(const char *outcome, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = mpu_vasprintf(fmt, ap);
    va_end(ap);
    char *clean = mpctl_sanitize(text);
    printf("%-7s  %-17s  %s\n", outcome, name, clean);
    free(clean);
    free(text);
}

void mpctl_setup_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = mpu_vasprintf(fmt, ap);
    va_end(ap);
    char *clean = mpctl_sanitize(text);
    puts(clean);
    free(clean);
    free(text);
}

int64_t mpctl_time_ms(const char *t)
{
    if (t == NULL)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0, used = 0;
    if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
        return -1;
    const char *p = t + used;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (*p != 'Z' || p[1] != '\0')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t secs = timegm(&tm);
    return secs == (time_t)-1 ? -1 : (int64_t)secs * 1000 + ms;
}

const json_t *mpctl_check_result(const json_t *result, const char *name)
{
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(result, "results"), i, r)
    {
        const char *n = json_string_value(json_object_get(r, "name"));
        if (n != NULL && strcmp(n, name) == 0)
            return r;
    }
    return NULL;
}

static int in_group(const char *const *group, const char *name)
{
    for (const char *const *n = group; n != NULL && *n != NULL; n++)
        if (name != NULL && strcmp(name, *n) == 0)
            return 1;
    return 0;
}

int mpctl_setup_preflight(const mpctl_conn *conn, const char *account,
                          const char *const *group, int *failed_r, int *group_failed_r)
{
    mpctl_setup_say("== preflight of %s ==", account);
    json_t *result = NULL;
    int rc = mpctl_check_run(conn, account, 0, 0, 0, &result);
    if (rc != MPCTL_CHECK_PASSED && rc != MPCTL_CHECK_FAILED) {
        json_decref(result);
        return MPCTL_SETUP_ERROR;
    }
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(result, "results"), i, r)
    {
        const char *outcome = json_string_value(json_object_get(r, "outcome"));
        if (outcome == NULL || strcmp(outcome, "fail") != 0)
            continue;
        *failed_r = 1;
        if (in_group(group, json_string_value(json_object_get(r, "name"))))
            *group_failed_r = 1;
    }
    json_decref(result);
    return MPCTL_SETUP_READY;
}

int mpctl_setup_event_position(const mpctl_args *args, const mpctl_conn *conn,
                               int64_t *seq_r)
{
    mpctl_args quiet = *args;
    quiet.json = 0;
    json_t *st;
    if (mpctl_fetch_json(&quiet, conn, "GET", "/v1/status", &st) != MPCTL_EXIT_OK)
        return -1;
    json_t *seq = json_object_get(json_object_get(st, "events"), "last_seq");
    *seq_r = json_is_integer(seq) ? (int64_t)json_integer_value(seq) : 0;
    json_decref(st);
    return 0;
}

/* ---- the wait ---- */

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    mpctl_interrupted = 1;
}

static void on_interrupt(int sig)
{
    (void)sig;
    mpctl_interrupted = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
}

/* Whether the idempotency key "<account>/<provider id>/<version>" names
 * `provider_id` of `account`. */
static int key_names(const char *key, const char *account, const char *provider_id)
{
    size_t na = strlen(account), np = strlen(provider_id);
    return key != NULL && strncmp(key, account, na) == 0 && key[na] == '/' &&
           strncmp(key + na + 1, provider_id, np) == 0 && key[na + 1 + np] == '/';
}

static int on_event(const mpctl_sse_event *ev, void *arg)
{
    mpctl_live_wait *w = arg;
    json_t *data = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *type = json_string_value(json_object_get(data, "type"));
    const char *account = json_string_value(json_object_get(data, "account"));
    const char *subject = json_string_value(json_object_get(data, "subject"));
    const char *key = json_string_value(json_object_get(data, "idempotency_key"));
    int mine = type != NULL && strcmp(type, "message.new") == 0 && account != NULL &&
               strcmp(account, w->account) == 0;
    if (mine && (w->provider_id != NULL || w->subject != NULL))
        mine =
            (w->provider_id != NULL && key_names(key, w->account, w->provider_id)) ||
            (w->subject != NULL && subject != NULL && strcmp(subject, w->subject) == 0);
    if (mine) {
        const char *msg = json_string_value(json_object_get(data, "message"));
        w->found = 1;
        snprintf(w->message, sizeof w->message, "%s", msg != NULL ? msg : "-");
        snprintf(w->subject_seen, sizeof w->subject_seen, "%s",
                 subject != NULL ? subject : "");
        w->time_ms = mpctl_time_ms(json_string_value(json_object_get(data, "time")));
    }
    json_decref(data);
    return w->found;
}

int mpctl_setup_follow(const mpctl_conn *conn, int64_t seq, mpctl_live_wait *w,
                       int64_t timeout_s)
{
    char after[32];
    snprintf(after, sizeof after, "%lld", (long long)seq);
    const mpctl_param params[] = {
        {"after", after}, {"types", "message.new"}, {"accounts", w->account}};
    char *query = mpctl_query_build(params, 3);
    char *path = mpu_asprintf("/v1/events%s", query);
    free(query);
    mpctl_sse *parser = mpctl_sse_new(on_event, w);
    timed_out = 0;
    install_signals();
    alarm((unsigned)(timeout_s > 0 ? timeout_s : 1));
    int rc = 1;
    while (!w->found && !mpctl_interrupted) {
        const char *last = mpctl_sse_last_id(parser);
        char *resume = last != NULL && last[0] != '\0' ? mpu_strdup(last) : NULL;
        mpctl_response resp;
        char *error = NULL;
        mpctl_sse_reset(parser);
        int res = mpctl_stream(conn, path, resume, parser, &resp, &error);
        free(resume);
        if (!w->found && !mpctl_interrupted && res == 0 && resp.status != 200) {
            mpctl_report_http_error(&resp);
            rc = -1;
            free(error);
            mpctl_response_clear(&resp);
            break;
        }
        free(error);
        mpctl_response_clear(&resp);
        if (!w->found && !mpctl_interrupted)
            sleep(1); /* lost: reconnect from the last id (SIGALRM cuts it short) */
    }
    alarm(0);
    if (w->found)
        rc = 0;
    else if (mpctl_interrupted && !timed_out)
        rc = -1;
    if (rc == -1 && mpctl_interrupted && !timed_out)
        fprintf(stderr, "mailpulsectl: interrupted\n");
    if (timed_out)
        mpctl_interrupted = 0;
    mpctl_sse_free(&parser);
    free(path);
    return rc;
}

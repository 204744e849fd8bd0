/*
 * `events`: read the daemon's Server-Sent Events stream. With --follow a
 * lost connection is resumed from the last sequence number seen
 * (Last-Event-ID), so no event is lost or printed twice.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "commands.h"
#include "util/util.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
/* A connection that stayed up this long was healthy: restart the backoff. */
#define HEALTHY_MS 30000

struct events_ctx {
    const mpctl_args *args;
    int64_t last_seq; /* -1: none seen */
    size_t received;  /* events on the current connection */
    int write_failed;
};

static void on_signal(int sig)
{
    mpctl_interrupted = 1;
}

static void print_field(const json_t *data, const char *key, const char *fallback)
{
    const json_t *v = json_object_get(data, key);
    char *text = NULL;
    if (json_is_string(v))
        text = mpctl_sanitize(json_string_value(v));
    else if (json_is_integer(v))
        text = mpu_asprintf("%lld", (long long)json_integer_value(v));
    else
        text = mpctl_sanitize(fallback != NULL && fallback[0] != '\0' ? fallback : "-");
    /* An empty field would shift the columns after it. */
    fputs(text[0] != '\0' ? text : "-", stdout);
    free(text);
}

static void print_event_line(const mpctl_sse_event *ev, const json_t *data)
{
    print_field(data, "seq", ev->id);
    fputc(' ', stdout);
    print_field(data, "time", NULL);
    fputc(' ', stdout);
    print_field(data, "type", ev->type);
    fputc(' ', stdout);
    print_field(data, "account", NULL);
    fputc(' ', stdout);
    print_field(data, "folder", NULL);
    fputc(' ', stdout);
    print_field(data, "message", NULL);
    const char *subject = json_string_value(json_object_get(data, "subject"));
    if (subject != NULL) {
        char *clean = mpctl_sanitize(subject);
        printf(" %s", clean);
        free(clean);
    }
    fputc('\n', stdout);
}

static int on_event(const mpctl_sse_event *ev, void *userdata)
{
    struct events_ctx *ctx = userdata;
    json_t *data = json_loadb(ev->data, ev->data_len, 0, NULL);
    int64_t seq = -1;
    if (mpu_parse_i64(ev->id, &seq) < 0 && json_is_integer(json_object_get(data, "seq")))
        seq = json_integer_value(json_object_get(data, "seq"));
    /* A server replaying from an older point must not make us print an
     * event twice. */
    if (seq >= 0 && ctx->last_seq >= 0 && seq <= ctx->last_seq) {
        json_decref(data);
        return 0;
    }
    if (seq >= 0)
        ctx->last_seq = seq;
    ctx->received++;
    if (ctx->args->json && data != NULL) {
        json_dumpf(data, stdout, JSON_COMPACT | JSON_ENCODE_ANY);
        fputc('\n', stdout);
    } else if (ctx->args->json) {
        char *raw = mpu_strndup(ev->data, ev->data_len);
        char *clean = mpctl_sanitize(raw);
        printf("%s\n", clean);
        free(clean);
        free(raw);
    } else {
        print_event_line(ev, data);
    }
    json_decref(data);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctx->write_failed = 1;
        return 1;
    }
    return 0;
}

static char *events_path(const mpctl_args *args, int64_t last_seq)
{
    char after[32];
    snprintf(after, sizeof(after), "%lld", (long long)args->after);
    const mpctl_param params[] = {
        {"once", args->follow ? NULL : "1"},
        {"after", args->after >= 0 && last_seq < 0 ? after : NULL},
        {"types", args->types},
        {"accounts", args->accounts},
    };
    char *query = mpctl_query_build(params, 4);
    char *path = mpu_asprintf("/v1/events%s", query);
    free(query);
    return path;
}

static void sleep_ms(int64_t ms)
{
    int64_t end = mpu_mono_ms() + ms;
    while (!mpctl_interrupted) {
        int64_t left = end - mpu_mono_ms();
        if (left <= 0)
            break;
        if (left > 100)
            left = 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a pending sleep or poll returns at once. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int is_event_stream(const mpctl_response *resp)
{
    return resp->content_type != NULL &&
           strncasecmp(resp->content_type, "text/event-stream", 17) == 0;
}

int mpctl_cmd_events(const mpctl_args *args, const mpctl_conn *conn)
{
    struct events_ctx ctx = {.args = args, .last_seq = -1};
    mpctl_sse *parser = mpctl_sse_new(on_event, &ctx);
    int64_t backoff = BACKOFF_MIN_MS;
    int connected_once = 0, rc = MPCTL_EXIT_OK;
    install_signals();

    while (!mpctl_interrupted) {
        char *path = events_path(args, ctx.last_seq);
        char last_id[32];
        snprintf(last_id, sizeof(last_id), "%lld", (long long)ctx.last_seq);
        mpctl_response resp;
        char *error = NULL;
        ctx.received = 0;
        mpctl_sse_reset(parser);
        int64_t started = mpu_mono_ms();
        int res = mpctl_stream(conn, path, ctx.last_seq >= 0 ? last_id : NULL, parser,
                               &resp, &error);
        free(path);
        int streaming = resp.status == 200 && is_event_stream(&resp);
        if (mpctl_interrupted || ctx.write_failed) {
            free(error);
            mpctl_response_clear(&resp);
            rc = ctx.write_failed ? MPCTL_EXIT_ERROR : MPCTL_EXIT_OK;
            break;
        }
        if (res == 0 && resp.status != 0 && !streaming &&
            (resp.status < 500 || !connected_once || !args->follow)) {
            if (resp.status >= 200 && resp.status <= 299) {
                fprintf(stderr, "mailpulsectl: %ld: not an event stream\n", resp.status);
                rc = MPCTL_EXIT_ERROR;
            } else {
                rc = mpctl_report_http_error(&resp);
            }
            mpctl_response_clear(&resp);
            break;
        }
        if (streaming)
            connected_once = 1;
        if (!args->follow || !connected_once) {
            if (res < 0)
                rc = mpctl_report_connect_error(conn, error);
            free(error);
            mpctl_response_clear(&resp);
            break;
        }
        if (ctx.received > 0 || mpu_mono_ms() - started >= HEALTHY_MS)
            backoff = BACKOFF_MIN_MS;
        char *why = res < 0              ? mpctl_sanitize(error)
                    : resp.status == 200 ? mpu_strdup("closed by the daemon")
                                         : mpu_asprintf("HTTP %ld", resp.status);
        fprintf(stderr, "mailpulsectl: event stream lost (%s), reconnecting in %llds\n",
                why, (long long)(backoff / 1000));
        free(why);
        free(error);
        mpctl_response_clear(&resp);
        sleep_ms(backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    mpctl_sse_free(&parser);
    return rc;
}

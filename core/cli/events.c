/*
 * `events`: read the daemon's Server-Sent Events stream. With --follow a
 * lost connection is resumed from the last event id seen (Last-Event-ID),
 * so no event is lost or printed twice. Ids are "<epoch>:<seq>" (plain
 * "<seq>" from older daemons): after an unclean stop the daemon begins a
 * new epoch and may send seqs again that an older epoch used; those are
 * new events and are printed. "gap" (events pruned by retention) and
 * "error" (the daemon could not read its store, it retries) are reported
 * on stderr.
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
    int64_t last_epoch; /* 0: plain ids */
    int64_t last_seq;   /* -1: none seen */
    char last_id[64];   /* sent back as Last-Event-ID */
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

/* "<epoch>:<seq>" or "<seq>" (epoch 0). -1 when neither. */
static int parse_id(const char *id, int64_t *epoch_r, int64_t *seq_r)
{
    const char *colon = strchr(id, ':');
    *epoch_r = 0;
    if (colon == NULL)
        return mpu_parse_i64(id, seq_r);
    char *head = mpu_strndup(id, (size_t)(colon - id));
    int rc = mpu_parse_i64(head, epoch_r);
    free(head);
    return rc < 0 ? -1 : mpu_parse_i64(colon + 1, seq_r);
}

static void remember_id(struct events_ctx *ctx, const char *id, int64_t epoch, int64_t seq)
{
    if (strlen(id) >= sizeof(ctx->last_id))
        return;
    mpu_strlcpy(ctx->last_id, id, sizeof(ctx->last_id));
    ctx->last_epoch = epoch;
    ctx->last_seq = seq;
}

/* The daemon's notes about the stream itself, not events. */
static int on_notice(const mpctl_sse_event *ev, const json_t *data, struct events_ctx *ctx)
{
    if (strcmp(ev->type, "gap") == 0) {
        fprintf(stderr,
                "mailpulsectl: events after %lld up to %lld are no longer stored "
                "(outbox retention)\n",
                (long long)json_integer_value(json_object_get(data, "after")),
                (long long)json_integer_value(json_object_get(data, "resumed_from")));
        int64_t epoch, seq;
        if (ev->id[0] != '\0' && parse_id(ev->id, &epoch, &seq) == 0)
            remember_id(ctx, ev->id, epoch, seq);
    } else {
        const char *why = json_string_value(json_object_get(data, "error"));
        char *clean = mpctl_sanitize(why != NULL ? why : "unknown error");
        fprintf(stderr, "mailpulsectl: the daemon reports: %s (it retries)\n", clean);
        free(clean);
    }
    return 0;
}

static int on_event(const mpctl_sse_event *ev, void *userdata)
{
    struct events_ctx *ctx = userdata;
    json_t *data = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (strcmp(ev->type, "gap") == 0 || strcmp(ev->type, "error") == 0) {
        int rc = on_notice(ev, data, ctx);
        json_decref(data);
        return rc;
    }
    int64_t seq = -1, epoch = 0;
    int has_id = parse_id(ev->id, &epoch, &seq) == 0;
    if (!has_id && json_is_integer(json_object_get(data, "seq")))
        seq = json_integer_value(json_object_get(data, "seq"));
    /* A server replaying from an older point must not make us print an
     * event twice; a newer epoch's seqs are new events even when lower. */
    if (seq >= 0 && ctx->last_seq >= 0 &&
        (epoch < ctx->last_epoch || (epoch == ctx->last_epoch && seq <= ctx->last_seq))) {
        json_decref(data);
        return 0;
    }
    if (has_id)
        remember_id(ctx, ev->id, epoch, seq);
    else if (seq >= 0)
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
    char after[64];
    if (args->after_id != NULL)
        mpu_strlcpy(after, args->after_id, sizeof(after));
    else
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
        char last_id[64];
        if (ctx.last_id[0] != '\0')
            mpu_strlcpy(last_id, ctx.last_id, sizeof(last_id));
        else
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

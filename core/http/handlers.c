/*
 * The request/response endpoints: each one validates transport-level input
 * (query values), calls the daemon's data API and serializes its answer.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "daemon/api.h"
#include "http/http_private.h"
#include "util/util.h"

#define MPH_MAX_LIMIT 1000

static void reply_result(struct evhttp_request *req, json_t *result, int status,
                         char **error)
{
    if (result != NULL)
        mph_reply_json(req, 200, result);
    else
        mph_reply_api_error(req, status, error);
}

void mph_h_health(mph_request *r)
{
    /* The internet learns only that we answer, not the version. */
    if (r->listener->is_push)
        mph_reply_json(r->req, 200, json_pack("{s:s}", "status", "ok"));
    else
        mph_reply_json(r->req, 200, mpd_api_health(r->server->d));
}

void mph_h_metrics(mph_request *r)
{
    char *text = mpd_api_metrics(r->server->d);
    if (text == NULL) {
        mph_reply_error(r->req, 500, "metrics unavailable");
        return;
    }
    mph_reply_bytes(r->req, 200, "text/plain; version=0.0.4; charset=utf-8", text,
                    strlen(text));
    free(text);
}

void mph_h_status(mph_request *r)
{
    mph_reply_json(r->req, 200, mpd_api_status(r->server->d));
}

void mph_h_accounts(mph_request *r)
{
    mpd_accounts_query q = {0};
    int64_t limit = 0;
    const char *text = mph_arg(r, "limit");
    if (text != NULL && (mph_parse_count(text, &limit) < 0 || limit < 1 ||
                         limit > MPD_ACCOUNTS_PAGE_MAX)) {
        mph_reply_error(r->req, 400, "limit must be an integer from 1 to 1000");
        return;
    }
    q.limit = (size_t)limit;
    /* An empty value means the same as no value (forms send "status="). */
    q.after = mph_arg(r, "after");
    q.status = mph_arg(r, "status");
    q.push = mph_arg(r, "push");
    if (q.after != NULL && q.after[0] == '\0')
        q.after = NULL;
    if (q.status != NULL && q.status[0] == '\0')
        q.status = NULL;
    if (q.push != NULL && q.push[0] == '\0')
        q.push = NULL;
    mph_reply_json(r->req, 200, mpd_api_accounts(r->server->d, &q));
}

void mph_h_account(mph_request *r)
{
    int status = 500;
    char *error = NULL;
    json_t *result = mpd_api_account(r->server->d, r->params[0], &status, &error);
    reply_result(r->req, result, status, &error);
}

void mph_h_messages(mph_request *r)
{
    int64_t limit = 0;
    const char *text = mph_arg(r, "limit");
    if (text != NULL &&
        (mph_parse_count(text, &limit) < 0 || limit < 1 || limit > MPH_MAX_LIMIT)) {
        mph_reply_error(r->req, 400, "limit must be an integer from 1 to 1000");
        return;
    }
    /* An empty value means the same as no value (forms send "folder="). */
    const char *folder = mph_arg(r, "folder");
    const char *before = mph_arg(r, "before");
    if (folder != NULL && folder[0] == '\0')
        folder = NULL;
    if (before != NULL && before[0] == '\0')
        before = NULL;
    int status = 500;
    char *error = NULL;
    json_t *result = mpd_api_messages(r->server->d, r->params[0], folder, before,
                                      (size_t)limit, &status, &error);
    reply_result(r->req, result, status, &error);
}

void mph_h_message(mph_request *r)
{
    int status = 500;
    char *error = NULL;
    json_t *result = mpd_api_message(r->server->d, r->params[0], &status, &error);
    reply_result(r->req, result, status, &error);
}

static void reply_trigger(struct evhttp_request *req, int status, char **error)
{
    if (status == 202) {
        free(*error);
        *error = NULL;
        mph_reply_json(req, 202, json_pack("{s:b}", "queued", 1));
    } else {
        mph_reply_api_error(req, status, error);
    }
}

void mph_h_sync(mph_request *r)
{
    char *error = NULL;
    int status = mpd_api_sync(r->server->d, r->params[0], &error);
    reply_trigger(r->req, status, &error);
}

void mph_h_backfill(mph_request *r)
{
    char *error = NULL;
    int status = mpd_api_backfill(r->server->d, r->params[0], r->params[1], &error);
    reply_trigger(r->req, status, &error);
}

void mph_h_probe(mph_request *r)
{
    char *error = NULL;
    int status = mpd_api_probe(r->server->d, r->params[0], &error);
    reply_trigger(r->req, status, &error);
}

void mph_h_check_start(mph_request *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    const uint8_t *body = len > 0 ? evbuffer_pullup(in, -1) : NULL;
    int status = 500;
    char *error = NULL;
    json_t *result =
        mpd_api_check_start(r->server->d, r->params[0], body, len, &status, &error);
    if (result != NULL)
        mph_reply_json(r->req, status, result);
    else
        mph_reply_api_error(r->req, status, &error);
}

void mph_h_check_get(mph_request *r)
{
    int status = 500;
    char *error = NULL;
    json_t *result = mpd_api_check_get(r->server->d, r->params[0], &status, &error);
    reply_result(r->req, result, status, &error);
}

static const char *push_header(void *ctx, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(ctx), name);
}

void mph_h_push(mph_request *r)
{
    /* The verifier signs over the exact bytes received, so the body is
     * handed over untouched (pullup makes it contiguous, no copy). */
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    const uint8_t *body = len > 0 ? evbuffer_pullup(in, -1) : NULL;
    int status = 0;
    char *content_type = NULL, *out = NULL;
    size_t out_len = 0;
    mpd_api_push(r->server->d, r->params[0], r->rest, r->query, push_header, r->req, body,
                 len, &status, &content_type, &out, &out_len);
    /* A verifier may echo sender data (Graph's validationToken) as
     * text/plain: no browser may sniff it into HTML. */
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "X-Content-Type-Options",
                      "nosniff");
    if (status < 100 || status > 599) {
        mph_reply_error(r->req, 500, "push handler failed");
    } else if (status >= 400 && out == NULL) {
        mph_reply_error(r->req, status, "push rejected");
    } else {
        mph_reply_bytes(r->req, status, content_type, out, out != NULL ? out_len : 0);
    }
    free(content_type);
    free(out);
}

void mph_h_debug_clock(mph_request *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    const uint8_t *body = len > 0 ? evbuffer_pullup(in, -1) : NULL;
    int status = 500;
    char *error = NULL;
    json_t *result = mpd_api_debug_clock(r->server->d, body, len, &status, &error);
    reply_result(r->req, result, status, &error);
}

void mph_h_webhooks(mph_request *r)
{
    mph_reply_json(r->req, 200, mpd_api_webhooks(r->server->d));
}

void mph_h_webhook(mph_request *r)
{
    int status = 500;
    char *error = NULL;
    json_t *result = mpd_api_webhook(r->server->d, r->params[0], &status, &error);
    reply_result(r->req, result, status, &error);
}

void mph_h_webhook_replay(mph_request *r)
{
    int64_t from = 0;
    const char *text = mph_arg(r, "from");
    if (text != NULL && mph_parse_count(text, &from) < 0) {
        mph_reply_error(r->req, 400, "from must be an event sequence number");
        return;
    }
    int status = 500;
    char *error = NULL;
    json_t *result =
        mpd_api_webhook_replay(r->server->d, r->params[0], from, &status, &error);
    if (result != NULL)
        mph_reply_json(r->req, 202, result);
    else
        mph_reply_api_error(r->req, status, &error);
}

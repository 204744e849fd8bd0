/* Reply helpers: every JSON answer and error of the API goes through here. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "http/http_private.h"
#include "util/util.h"

void mph_reply_bytes(struct evhttp_request *req, int status, const char *content_type,
                     const void *data, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (len > 0)
        evbuffer_add(buf, data, len);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_remove_header(out, "Content-Type");
    if (content_type != NULL)
        evhttp_add_header(out, "Content-Type", content_type);
    evhttp_send_reply(req, status, NULL, buf);
    evbuffer_free(buf);
}

void mph_reply_json(struct evhttp_request *req, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        static const char internal[] = "{\"error\":\"internal error\"}";
        mph_reply_bytes(req, 500, "application/json", internal, sizeof(internal) - 1);
        return;
    }
    mph_reply_bytes(req, status, "application/json", text, strlen(text));
    free(text);
}

void mph_reply_error(struct evhttp_request *req, int status, const char *message)
{
    mph_reply_json(req, status, json_pack("{s:s}", "error", message));
}

void mph_reply_api_error(struct evhttp_request *req, int status, char **error)
{
    if (status < 400 || status > 599)
        status = 500;
    const char *message = *error != NULL  ? *error
                          : status == 404 ? "not found"
                                          : "request failed";
    mph_reply_error(req, status, message);
    mpu_freep(error);
}

const char *mph_arg(const mph_request *r, const char *name)
{
    return evhttp_find_header(r->args, name);
}

int mph_parse_count(const char *s, int64_t *value_r)
{
    /* strtoll alone would accept " 5", "+5" and "-0": a count is digits. */
    if (s == NULL || *s == '\0' || strlen(s) > 18 || strspn(s, "0123456789") != strlen(s))
        return -1;
    return mpu_parse_i64(s, value_r);
}

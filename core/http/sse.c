/*
 * GET /v1/events: Server-Sent Events.
 *
 * Resume point, first present wins: the Last-Event-ID header, ?after=,
 * else the current last seq (a plain connect sees only new events);
 * ?after=0 replays everything still stored. Event ids are "<epoch>:<seq>"
 * (a new epoch begins after an unclean stop, see core/store/store.h); a
 * position may be given as such an id or as a plain seq of the current
 * epoch. A position of an older epoch resumes no later than where the next
 * epoch began, so events that a power loss replaced are sent again.
 *
 * Two things the stream says instead of hiding: a position older than the
 * retained outbox gets an "event: gap" ({"after","resumed_from","reason"},
 * with the id to resume from) before the events that remain; a failed
 * outbox read gets an "event: error" ({"error","retry_ms"}, no id: the
 * position is kept) and is retried after MPH_SSE_RETRY_MS. A ?once=1 stream
 * ends after such an error, unfinished.
 *
 * Each client keeps a cursor: every event at or below it was sent or
 * filtered out. Sending always continues from the cursor, a page at a
 * time, so a client that backs up (output over MPH_SSE_HIGH_WATER) is
 * paused until its buffer drains and then resumes where it stopped: events
 * are never skipped. One watch on the event stream serves all clients.
 *
 * The stream state (last seq, epoch, horizon, the watch) and each event's
 * JSON belong to core/events; this file reaches them only through the
 * daemon's API facade (daemon/api.h), like everything else in core/http.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "daemon/api.h"
#include "http/http_private.h"
#include "util/util.h"

#define MPH_SSE_PAGE 500
#define MPH_SSE_HIGH_WATER (4u << 20)
/* After a failed outbox read. */
#define MPH_SSE_RETRY_MS 1000
/* A stream never reads, so only a stalled writer can time out. */
#define MPH_SSE_WRITE_TIMEOUT_S 60

struct mph_sse_client {
    mph_sse_client *prev, *next;
    mph_server *server;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    int64_t cursor;
    char **types;    /* NULL-terminated filter, or NULL for all */
    char **accounts; /* same */
    bool once;
    bool paused;  /* waiting for the output buffer to drain */
    bool failing; /* the last outbox read failed (error reported) */
    struct event *retry; /* after a failed read; NULL until needed */
};

static void sse_pump(mph_sse_client *c);

/* "a,b,,c" -> {"a","b","c",NULL}; NULL when nothing is left. */
static char **split_list(const char *text)
{
    if (text == NULL)
        return NULL;
    size_t max = 2;
    for (const char *p = text; *p != '\0'; p++)
        max += *p == ',';
    char **list = mpu_calloc(max, sizeof(*list));
    size_t n = 0;
    for (const char *p = text; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (len > 0)
            list[n++] = mpu_strndup(p, len);
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        free(list);
        return NULL;
    }
    return list;
}

static void free_list(char ***list)
{
    if (*list == NULL)
        return;
    for (char **p = *list; *p != NULL; p++)
        free(*p);
    free(*list);
    *list = NULL;
}

static void client_free(mph_sse_client *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->server->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free_list(&c->types);
    free_list(&c->accounts);
    if (c->retry != NULL)
        event_free(c->retry);
    free(c);
}

/* Ends the reply; the request is freed by evhttp once written. */
static void client_finish(mph_sse_client *c)
{
    mph_conn_set_closecb(c->evcon, NULL, NULL);
    evhttp_send_reply_end(c->req);
    client_free(c);
}

static void sse_closed(struct evhttp_connection *evcon, void *arg)
{
    mph_sse_client *c = arg;
    /* On a peer close evhttp detaches our unfinished request and leaves it
     * to us; when the server itself frees the connection it still owns it. */
    if (evhttp_request_get_connection(c->req) == NULL)
        evhttp_request_free(c->req);
    client_free(c);
}

static void sse_drained(struct evhttp_connection *evcon, void *arg)
{
    mph_sse_client *c = arg;
    if (c->paused) {
        c->paused = false;
        sse_pump(c);
    }
}

static void sse_send(mph_sse_client *c, struct evbuffer *buf)
{
    if (evbuffer_get_length(buf) == 0)
        return;
    /* Every chunk carries the drain callback: each send replaces it. */
    evhttp_send_reply_chunk_with_cb(c->req, buf, sse_drained, c);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    if (evbuffer_get_length(bufferevent_get_output(bev)) > MPH_SSE_HIGH_WATER)
        c->paused = true;
}

static void frame_event(struct evbuffer *buf, json_t *event, int64_t epoch, int64_t seq)
{
    const char *type = json_string_value(json_object_get(event, "type"));
    /* A line break would end the field early and corrupt the stream. */
    if (type == NULL || type[0] == '\0' || strpbrk(type, "\r\n") != NULL)
        type = "message";
    char *data = json_dumps(event, JSON_COMPACT);
    if (data == NULL)
        return;
    evbuffer_add_printf(buf, "id: %" PRId64 ":%" PRId64 "\nevent: %s\ndata: %s\n\n", epoch,
                        seq, type, data);
    free(data);
}

/* Events from the client's position up to `horizon` were pruned. */
static void frame_gap(struct evbuffer *buf, int64_t epoch, int64_t after, int64_t horizon)
{
    evbuffer_add_printf(buf,
                        "id: %" PRId64 ":%" PRId64 "\nevent: gap\ndata: {\"after\":%" PRId64
                        ",\"resumed_from\":%" PRId64 ",\"reason\":\"retention\"}\n\n",
                        epoch, horizon, after, horizon);
}

static void sse_retry(evutil_socket_t fd, short what, void *arg)
{
    mph_sse_client *c = arg;
    if (!c->paused)
        sse_pump(c);
}

/* The outbox could not be read: say so once per failing streak, keep the
 * position and try again later. Returns true when c was finished. */
static bool sse_read_failed(mph_sse_client *c)
{
    if (!c->failing) {
        c->failing = true;
        struct evbuffer *buf = evbuffer_new();
        evbuffer_add_printf(buf,
                            "event: error\ndata: {\"error\":\"the event store could not be "
                            "read\",\"retry_ms\":%d}\n\n",
                            MPH_SSE_RETRY_MS);
        sse_send(c, buf);
        evbuffer_free(buf);
    }
    if (c->once) {
        client_finish(c);
        return true;
    }
    if (c->retry == NULL)
        c->retry = evtimer_new(c->server->base, sse_retry, c);
    struct timeval tv = {.tv_sec = MPH_SSE_RETRY_MS / 1000,
                         .tv_usec = (MPH_SSE_RETRY_MS % 1000) * 1000};
    evtimer_add(c->retry, &tv);
    return false;
}

/* Sends what the client has not seen yet until it is caught up or paused;
 * a ?once=1 stream that caught up is finished (and c freed). */
static void sse_pump(mph_sse_client *c)
{
    mpd *d = c->server->d;
    int64_t epoch = mpd_api_epoch(d);
    while (!c->paused) {
        /* Sampled before the query: a short page covers everything up to it. */
        int64_t head = mpd_api_last_seq(d);
        if (head <= c->cursor)
            break;
        json_t *events =
            mpd_api_events(d, c->cursor, MPH_SSE_PAGE, (const char *const *)c->types,
                           (const char *const *)c->accounts);
        if (events == NULL) {
            if (sse_read_failed(c))
                return;
            break;
        }
        c->failing = false;
        /* Read after the page: events pruned before it was read are at or
         * below this. */
        int64_t horizon = mpd_api_events_horizon(d);
        size_t n = json_array_size(events);
        struct evbuffer *buf = evbuffer_new();
        if (c->cursor < horizon) {
            frame_gap(buf, epoch, c->cursor, horizon);
            c->cursor = horizon;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *event = json_array_get(events, i);
            int64_t seq = json_integer_value(json_object_get(event, "seq"));
            if (seq <= c->cursor)
                continue;
            frame_event(buf, event, epoch, seq);
            c->cursor = seq;
        }
        json_decref(events);
        /* Filtered-out events below head are not asked for again. */
        if (n < MPH_SSE_PAGE && head > c->cursor)
            c->cursor = head;
        sse_send(c, buf);
        evbuffer_free(buf);
        if (n < MPH_SSE_PAGE)
            break;
    }
    if (c->once && !c->paused)
        client_finish(c);
}

static void sse_notify(int64_t last_seq, void *arg)
{
    mph_server *server = arg;
    mph_sse_client *next;
    for (mph_sse_client *c = server->clients; c != NULL; c = next) {
        next = c->next;
        if (!c->paused && c->cursor < last_seq)
            sse_pump(c);
    }
}

static void sse_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    mph_server *server = arg;
    struct evbuffer *buf = evbuffer_new();
    for (mph_sse_client *c = server->clients; c != NULL; c = c->next) {
        if (c->paused)
            continue; /* its buffer is not empty: the peer has data to read */
        evbuffer_add(buf, ": ping\n\n", 8);
        sse_send(c, buf);
        evbuffer_drain(buf, evbuffer_get_length(buf));
    }
    evbuffer_free(buf);
}

/* The watch and the heartbeat timer start with the first stream and stay
 * until mph_stop. */
static void streaming_start(mph_server *server)
{
    if (server->watch == NULL)
        server->watch = mpd_events_watch(server->d, sse_notify, server);
    if (server->heartbeat == NULL) {
        uint32_t ms = server->heartbeat_ms > 0 ? server->heartbeat_ms : 15000;
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        server->heartbeat =
            event_new(server->base, -1, EV_PERSIST, sse_heartbeat, server);
        event_add(server->heartbeat, &tv);
    }
}

/* "<epoch>:<seq>" or "<seq>" (epoch 0: the current one). */
static int parse_position(const char *text, int64_t *epoch_r, int64_t *seq_r)
{
    const char *colon = strchr(text, ':');
    *epoch_r = 0;
    if (colon == NULL)
        return mph_parse_count(text, seq_r);
    char *head = mpu_strndup(text, (size_t)(colon - text));
    int rc = mph_parse_count(head, epoch_r);
    free(head);
    if (rc < 0 || *epoch_r == 0)
        return -1;
    return mph_parse_count(colon + 1, seq_r);
}

static int parse_once(const char *text, bool *once_r)
{
    if (text == NULL || strcmp(text, "0") == 0 || strcmp(text, "false") == 0)
        *once_r = false;
    else if (strcmp(text, "1") == 0 || strcmp(text, "true") == 0)
        *once_r = true;
    else
        return -1;
    return 0;
}

void mph_h_events(mph_request *r)
{
    mph_server *server = r->server;
    const char *last_id =
        evhttp_find_header(evhttp_request_get_input_headers(r->req), "Last-Event-ID");
    const char *after_text = mph_arg(r, "after");
    int64_t after = 0, epoch = 0;
    bool once = false;
    if (last_id != NULL) {
        if (parse_position(last_id, &epoch, &after) < 0) {
            mph_reply_error(r->req, 400,
                            "Last-Event-ID must be an event id (<epoch>:<seq>) or a seq");
            return;
        }
    } else if (after_text != NULL) {
        if (parse_position(after_text, &epoch, &after) < 0) {
            mph_reply_error(r->req, 400,
                            "after must be an event id (<epoch>:<seq>) or a non-negative "
                            "integer");
            return;
        }
    } else {
        after = mpd_api_last_seq(server->d);
    }
    if (mpd_api_events_resume(server->d, epoch, after, &after) < 0) {
        mph_reply_error(r->req, 503, "the event store could not be read");
        return;
    }
    if (parse_once(mph_arg(r, "once"), &once) < 0) {
        mph_reply_error(r->req, 400, "once must be 0 or 1");
        return;
    }

    mph_sse_client *c = mpu_calloc(1, sizeof(*c));
    c->server = server;
    c->req = r->req;
    c->evcon = evhttp_request_get_connection(r->req);
    c->cursor = after;
    c->once = once;
    c->types = split_list(mph_arg(r, "types"));
    c->accounts = split_list(mph_arg(r, "accounts"));
    c->next = server->clients;
    if (c->next != NULL)
        c->next->prev = c;
    server->clients = c;

    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(out, "Content-Type", "text/event-stream");
    evhttp_add_header(out, "Cache-Control", "no-cache");
    evhttp_add_header(out, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(r->req, 200, NULL);
    mph_conn_set_closecb(c->evcon, sse_closed, c);
    struct timeval write_tv = {.tv_sec = MPH_SSE_WRITE_TIMEOUT_S};
    bufferevent_set_timeouts(evhttp_connection_get_bufferevent(c->evcon), NULL,
                             &write_tv);

    streaming_start(server);
    sse_pump(c);
}

void mph_sse_stop_all(mph_server *server)
{
    while (server->clients != NULL)
        client_finish(server->clients);
    if (server->watch != NULL) {
        mpd_events_unwatch(server->d, server->watch);
        server->watch = NULL;
    }
    if (server->heartbeat != NULL) {
        event_free(server->heartbeat);
        server->heartbeat = NULL;
    }
}

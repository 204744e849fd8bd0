/*
 * Parser of Graph's notification POSTs (graph_notify.h). jansson reads the
 * JSON with JSON_REJECT_DUPLICATES (a second "clientState" key could
 * otherwise smuggle a value past a reader that takes the first one).
 */
#include "graph_notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const struct {
    const char *name;
    graph_note_kind kind;
} events[] = {
    {"reauthorizationRequired", GRAPH_NOTE_REAUTH},
    {"subscriptionRemoved", GRAPH_NOTE_REMOVED},
    {"missed", GRAPH_NOTE_MISSED},
};

const char *graph_note_event_name(graph_note_kind kind)
{
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (events[i].kind == kind)
            return events[i].name;
    return "";
}

/* The reason names the item (index < 0: the whole body), never its data. */
static int fail(int status, int *status_r, char *why, size_t why_len, const char *msg,
                long index)
{
    *status_r = status;
    if (index < 0)
        snprintf(why, why_len, "%s", msg);
    else
        snprintf(why, why_len, "%s (item %ld)", msg, index);
    return -1;
}

/* A string member of 1..max bytes without NUL into `out`; its length. */
static int take_string(json_t *item, const char *key, char *out, size_t max,
                       size_t *len_r)
{
    json_t *v = json_object_get(item, key);
    if (!json_is_string(v))
        return -1;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > max || memchr(s, '\0', n) != NULL)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    if (len_r != NULL)
        *len_r = n;
    return 0;
}

int graph_notes_parse(const uint8_t *body, size_t len, graph_note **notes_r, size_t *n_r,
                      int *status_r, char *why, size_t why_len)
{
    *notes_r = NULL;
    *n_r = 0;
    if (len > GRAPH_NOTIFY_MAX_BODY)
        return fail(413, status_r, why, why_len, "notification body over 256 KiB", -1);
    if (body == NULL || len == 0)
        return fail(400, status_r, why, why_len, "empty notification body", -1);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return fail(400, status_r, why, why_len, "notification body is not JSON", -1);
    json_t *value = json_object_get(root, "value");
    size_t n = json_is_array(value) ? json_array_size(value) : 0;
    if (!json_is_object(root) || !json_is_array(value) || n == 0 ||
        n > GRAPH_NOTIFY_MAX_ITEMS) {
        json_decref(root);
        return fail(400, status_r, why, why_len,
                    "notification body is not {\"value\":[1..1000 items]}", -1);
    }
    graph_note *notes = calloc(n, sizeof *notes);
    if (notes == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(value, i);
        graph_note *nt = &notes[i];
        const char *bad = NULL;
        if (!json_is_object(item))
            bad = "notification item is not an object";
        else if (take_string(item, "subscriptionId", nt->subscription_id,
                             GRAPH_NOTIFY_MAX_ID, NULL) < 0)
            bad = "notification item lacks a valid subscriptionId";
        else if (take_string(item, "clientState", nt->client_state,
                             GRAPH_NOTIFY_MAX_STATE, &nt->client_state_len) < 0)
            bad = "notification item lacks a valid clientState";
        if (bad == NULL) {
            json_t *ev = json_object_get(item, "lifecycleEvent");
            if (ev != NULL) {
                const char *name = json_string_value(ev);
                size_t k = 0;
                while (name != NULL && k < sizeof events / sizeof events[0] &&
                       strcmp(events[k].name, name) != 0)
                    k++;
                if (name == NULL || k == sizeof events / sizeof events[0])
                    bad = "notification item has an unknown lifecycleEvent";
                else
                    nt->kind = events[k].kind;
            } else {
                nt->kind = GRAPH_NOTE_CHANGE;
                const char *ct = json_string_value(json_object_get(item, "changeType"));
                if (ct == NULL ||
                    (strcmp(ct, "created") != 0 && strcmp(ct, "updated") != 0 &&
                     strcmp(ct, "deleted") != 0))
                    bad = "notification item has no changeType created/updated/deleted";
            }
        }
        if (bad != NULL) {
            free(notes);
            json_decref(root);
            return fail(400, status_r, why, why_len, bad, (long)i);
        }
    }
    json_decref(root);
    *notes_r = notes;
    *n_r = n;
    return 0;
}

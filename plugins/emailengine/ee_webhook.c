/*
 * Webhook payload routing fields (ee_webhook.h). jansson parses; the
 * bounds are ours: a payload bigger than any folder name or account id we
 * could have configured is refused rather than cut, so a cut name can
 * never hint the wrong folder.
 */
#include "ee_webhook.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

static const struct {
    const char *name;
    ee_event_kind kind;
} kinds[] = {
    {"messageNew", EE_EV_MESSAGE_NEW},
    {"messageDeleted", EE_EV_MESSAGE_DELETED},
    {"messageUpdated", EE_EV_MESSAGE_UPDATED},
    {"mailboxReset", EE_EV_MAILBOX_RESET},
    {"mailboxNew", EE_EV_MAILBOX_NEW},
    {"mailboxDeleted", EE_EV_MAILBOX_DELETED},
    {"authenticationError", EE_EV_AUTH_ERROR},
    {"connectError", EE_EV_CONNECT_ERROR},
};

ee_event_kind ee_event_kind_of(const char *event)
{
    if (event == NULL)
        return EE_EV_OTHER;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].name, event) == 0)
            return kinds[i].kind;
    return EE_EV_OTHER;
}

int ee_event_is_folder(ee_event_kind kind)
{
    return kind == EE_EV_MESSAGE_NEW || kind == EE_EV_MESSAGE_DELETED ||
           kind == EE_EV_MESSAGE_UPDATED || kind == EE_EV_MAILBOX_RESET;
}

/* Copy string member `key` of `obj` into out[cap]; 0 absent or null, 1
 * copied, -1 not a string, with a NUL inside, or longer than cap - 1. */
static int copy_string(json_t *obj, const char *key, char *out, size_t cap)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    size_t n = json_string_length(v);
    if (n >= cap || memchr(json_string_value(v), '\0', n) != NULL)
        return -1;
    memcpy(out, json_string_value(v), n + 1);
    return 1;
}

int ee_webhook_parse(const char *body, size_t len, ee_webhook *w, char *why, size_t why_len)
{
    memset(w, 0, sizeof *w);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(why, why_len, "not JSON: %s (line %d)", jerr.text, jerr.line);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        snprintf(why, why_len, "not a JSON object");
        goto out;
    }
    int a = copy_string(root, "account", w->account, sizeof w->account);
    if (a <= 0 || w->account[0] == '\0') {
        snprintf(why, why_len, "\"account\" %s", a < 0 ? "is not a string of at most 255"
                                                           " bytes" : "is missing");
        goto out;
    }
    int e = copy_string(root, "event", w->event, sizeof w->event);
    if (e <= 0 || w->event[0] == '\0') {
        snprintf(why, why_len, "\"event\" %s", e < 0 ? "is not a short string" : "is missing");
        goto out;
    }
    w->kind = ee_event_kind_of(w->event);
    int p = copy_string(root, "path", w->path, sizeof w->path);
    json_t *data = json_object_get(root, "data");
    if (p == 0 && json_is_object(data))
        p = copy_string(data, "path", w->path, sizeof w->path);
    if (p < 0) {
        snprintf(why, why_len, "\"path\" is not a string of at most %d bytes", EE_PATH_MAX);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

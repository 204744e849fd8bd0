/*
 * EmailEngine's webhook payload (providers.md §5, emailengine-api.md §7):
 * {serviceUrl, account, date, path?, specialUse?, event, data, ...}. Only
 * what routes a hint is read: the account, the event and the folder. The
 * payload is never the record: a hint makes the driver ask EE's API.
 *
 * Call only on a body whose signature was verified (ee_sig.h). No state;
 * any thread.
 */
#ifndef EE_WEBHOOK_H
#define EE_WEBHOOK_H

#include <stddef.h>

#define EE_ACCOUNT_MAX 255
#define EE_PATH_MAX 1023
#define EE_EVENT_MAX 63

typedef enum ee_event_kind {
    EE_EV_OTHER = 0, /* an event the bridge does not act on (2xx, ignored) */
    EE_EV_MESSAGE_NEW,
    EE_EV_MESSAGE_DELETED,
    EE_EV_MESSAGE_UPDATED,
    EE_EV_MAILBOX_RESET,
    EE_EV_MAILBOX_NEW,
    EE_EV_MAILBOX_DELETED,
    EE_EV_AUTH_ERROR,
    EE_EV_CONNECT_ERROR,
} ee_event_kind;

typedef struct ee_webhook {
    char account[EE_ACCOUNT_MAX + 1];
    char event[EE_EVENT_MAX + 1];
    ee_event_kind kind;
    /* The folder: the top-level path, else data.path; "" when none. */
    char path[EE_PATH_MAX + 1];
} ee_webhook;

/* Parse a webhook body. Returns 0, or -1 with `why` set (malformed JSON,
 * not an object, account or event missing, not strings, or too long). */
int ee_webhook_parse(const char *body, size_t len, ee_webhook *w, char *why, size_t why_len);

/* The kind of an event name (EE_EV_OTHER for unknown names). */
ee_event_kind ee_event_kind_of(const char *event);

/* Whether the event's hint concerns one folder (message and mailboxReset
 * events) rather than the account's folder list or state. */
int ee_event_is_folder(ee_event_kind kind);

#endif

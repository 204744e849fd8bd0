/*
 * graph_notify: the parser of what Graph POSTs to /push/<instance> (change
 * notifications and lifecycle notifications share the shape
 * {"value":[{...}, ...]}; providers.md §3 "Notification payload",
 * "Lifecycle notifications"). Pure: no host, no network, so unit tests and
 * the fuzz target reach it.
 *
 * All or nothing: a body that is not exactly this shape, or one item that
 * lacks what verification needs (subscriptionId, clientState) or names an
 * unknown lifecycle event, fails the whole POST, so nothing of a malformed
 * or forged body is ever recorded. The parser only reads; verification of
 * clientState against the stored secret is the caller's (graph_webhook.c).
 */
#ifndef GRAPH_NOTIFY_H
#define GRAPH_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

/* Bounds of one POST: Graph batches changes (at most a few hundred per
 * POST in practice); anything bigger is not Graph. The push listener has
 * its own body limit (push.max_body) before this one. */
#define GRAPH_NOTIFY_MAX_BODY (256u * 1024u)
#define GRAPH_NOTIFY_MAX_ITEMS 1000u
/* Graph's subscription ids are GUIDs; clientState is at most 128 chars. */
#define GRAPH_NOTIFY_MAX_ID 128u
#define GRAPH_NOTIFY_MAX_STATE 128u

typedef enum graph_note_kind {
    GRAPH_NOTE_CHANGE = 0,  /* created / updated / deleted                  */
    GRAPH_NOTE_REAUTH = 1,  /* lifecycleEvent reauthorizationRequired        */
    GRAPH_NOTE_REMOVED = 2, /* lifecycleEvent subscriptionRemoved            */
    GRAPH_NOTE_MISSED = 3,  /* lifecycleEvent missed                         */
} graph_note_kind;
#define GRAPH_NOTE_LIFECYCLE_N 3 /* REAUTH, REMOVED, MISSED */

typedef struct graph_note {
    graph_note_kind kind;
    char subscription_id[GRAPH_NOTIFY_MAX_ID + 1];
    char client_state[GRAPH_NOTIFY_MAX_STATE + 1];
    size_t client_state_len;
} graph_note;

/* Parse `body`. Returns 0 with *notes_r (malloc'd, free()) and *n_r >= 1,
 * or -1 with *status_r the HTTP status the POST deserves (413 too big,
 * 400 malformed) and a reason in `why` (never the body's secrets). */
int graph_notes_parse(const uint8_t *body, size_t len, graph_note **notes_r, size_t *n_r,
                      int *status_r, char *why, size_t why_len);

/* The lifecycle event's name as Graph spells it ("" for a change). */
const char *graph_note_event_name(graph_note_kind kind);

#endif /* GRAPH_NOTIFY_H */

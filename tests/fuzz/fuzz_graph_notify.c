/* libFuzzer target: graph.so's parser of what arrives on /push/<instance>
 * (Graph's change and lifecycle notifications, or anything posing as them),
 * the code that runs on the loop thread before any verification. Properties
 * checked: a refusal carries a 4xx status and a reason; an accepted body has
 * 1..GRAPH_NOTIFY_MAX_ITEMS items, each with a non-empty subscriptionId and
 * clientState within their bounds (their stated length), and a change item
 * is never a lifecycle event. Also the clientState comparison against a
 * fixed secret never accepts a different string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "graph_notify.h"
#include "graph_push.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    graph_note *notes = NULL;
    size_t n = 0;
    int status = 0;
    char why[160];
    why[0] = '\0';
    if (graph_notes_parse(data, size, &notes, &n, &status, why, sizeof why) < 0) {
        FUZZ_ASSERT(status == 400 || status == 413);
        FUZZ_ASSERT(why[0] != '\0');
        FUZZ_ASSERT(notes == NULL && n == 0);
        return 0;
    }
    FUZZ_ASSERT(n >= 1 && n <= GRAPH_NOTIFY_MAX_ITEMS && notes != NULL);
    static const char secret[] = "0123456789abcdef0123456789abcdef0123456789a";
    for (size_t i = 0; i < n; i++) {
        const graph_note *nt = &notes[i];
        size_t idl = strlen(nt->subscription_id);
        FUZZ_ASSERT(idl >= 1 && idl <= GRAPH_NOTIFY_MAX_ID);
        FUZZ_ASSERT(nt->client_state_len >= 1 &&
                    nt->client_state_len <= GRAPH_NOTIFY_MAX_STATE &&
                    strlen(nt->client_state) == nt->client_state_len);
        FUZZ_ASSERT(nt->kind <= GRAPH_NOTE_MISSED);
        FUZZ_ASSERT((nt->kind == GRAPH_NOTE_CHANGE) ==
                    (graph_note_event_name(nt->kind)[0] == '\0'));
        int same = strcmp(nt->client_state, secret) == 0;
        FUZZ_ASSERT(graph_client_state_ok(secret, nt->client_state,
                                          nt->client_state_len) == same);
    }
    free(notes);
    return 0;
}

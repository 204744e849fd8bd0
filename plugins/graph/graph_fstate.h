/*
 * graph_fstate: what graph.so keeps per folder beside the host's cursor, as
 * one durable driver-state record (state_get / batch_state, so it commits
 * with the changes and the cursor it belongs to). Pure: no host.
 *
 *  - since_ms: where new mail starts: the newest receivedDateTime the
 *    bootstrap loaded (Exchange's clock). A message the delta brings that
 *    was received before it is history (SYNCED), not new mail: a flag
 *    changed on old mail never becomes message.new.
 *  - the coverage walk (see graph_bootstrap.c): the bootstrap's delta is
 *    filtered to receivedDateTime >= the oldest message loaded, so changes
 *    to older (backfilled) mail need a delta over the whole folder. Its
 *    initial round (ids only) is walked a few pages per backfill call:
 *    `walk` is its next URL while it runs, `full` its deltaLink once done,
 *    until the delta slot switches the folder's cursor over to it.
 *  - the check after the switch: `check` is the last stored id verified
 *    (graph_verify.c), `checked` set once every stored message was.
 *  - the repair list: messages stored with an incomplete summary, re-read
 *    at a slower cadence (15 min, doubling, at most GRAPH_REPAIR_TRIES
 *    reads) until complete. Bounded by GRAPH_REPAIR_MAX.
 *
 * Serialized as JSON:
 *   {"since":ms,"walk":"url","full":"url","cover":n,"check":"id","checked":true,
 *    "repair":[{"id":"...","n":tries,"at":ms}]}
 */
#ifndef GRAPH_FSTATE_H
#define GRAPH_FSTATE_H

#include <stddef.h>
#include <stdint.h>

#define GRAPH_REPAIR_MAX 200
#define GRAPH_REPAIR_TRIES 8
#define GRAPH_REPAIR_FIRST_MS (15 * 60 * 1000)
#define GRAPH_REPAIR_MAX_WAIT_MS (12 * 3600 * 1000)

/* How far the folder's delta covers its mail. */
typedef enum graph_cover {
    GRAPH_COVER_RECENT = 0,  /* filtered delta; the walk not started       */
    GRAPH_COVER_WALKING = 1, /* the walk runs (walk = its next URL)         */
    GRAPH_COVER_WALKED = 2,  /* the walk reached `full`; switch pending     */
    GRAPH_COVER_ALL = 3,     /* the cursor is an unfiltered deltaLink       */
    GRAPH_COVER_ENOUGH = 4,  /* nothing older than the filter is ever stored
                                (from-now-on mode): no walk                 */
} graph_cover;

typedef struct graph_repair_item {
    char *id;
    unsigned tries;
    int64_t at_ms; /* next read no earlier than this */
} graph_repair_item;

typedef struct graph_fstate {
    int64_t since_ms;
    graph_cover cover;
    char *walk;
    char *full;
    char *check;
    int checked;
    graph_repair_item *repair;
    size_t n_repair;
} graph_fstate;

/* The record's key for folder `name`: "folder:" and 32 hex digits of its
 * SHA-256 (names can be longer than a state key may be). cap >= 40. */
void graph_fstate_key(const char *name, char *key, size_t cap);

/* Parse a record (NULL or "": a fresh state). -1 with *error_r on junk. */
int graph_fstate_parse(const char *text, graph_fstate *f, char **error_r);
/* The record as text (malloc'd). */
char *graph_fstate_dump(const graph_fstate *f);
void graph_fstate_clear(graph_fstate *f);

/* Queue `id` for a re-read at now + GRAPH_REPAIR_FIRST_MS. Already queued:
 * left as it is. 0, or -1 when the list is full (not queued). */
int graph_repair_add(graph_fstate *f, const char *id, int64_t now_ms);
/* The queued ids due at `now` (at most max), as indexes into f->repair. */
size_t graph_repair_due(const graph_fstate *f, int64_t now_ms, size_t *idx, size_t max);
/* Drop `id` from the list (complete, or gone). */
void graph_repair_drop(graph_fstate *f, const char *id);
/* Still incomplete after a read: wait twice as long. Returns 1 when it
 * had its last try and was dropped, else 0. */
int graph_repair_again(graph_fstate *f, const char *id, int64_t now_ms);

#endif /* GRAPH_FSTATE_H */

/*
 * Events: the one owner of the process's event stream state.
 *
 * The outbox (core/store) stores events; this module owns everything about
 * them above the store:
 *   - the committed-seq notification: any thread that committed events
 *     calls mpe_committed(); the loop thread then wakes its watchers once,
 *     however many commits happened meanwhile;
 *   - the watcher list (the SSE fan-out, webhook delivery), loop thread
 *     only;
 *   - the bookkeeping of positions: the highest committed seq, the store
 *     generation ("epoch", see core/store/store.h, "store generations")
 *     begun at open and ended (clean-stop marker) at close, and the outbox
 *     retention horizon;
 *   - the JSON shape of an event (mpe_event_json), the single function that
 *     makes the body of an SSE event, of a GET /v1/events item and of a
 *     webhook request.
 *
 * Who holds what: the daemon (core/daemon/main.c) opens one mpe_events per
 * process after the event base and the loop thread's store connection
 * exist, hands it to the services that need it (core/webhook gets it in
 * mpw_start; the HTTP layer reaches it through the API facade,
 * core/daemon/api.h), and closes it after every service, worker and
 * account stopped. The module borrows the event base and never keeps a
 * store connection: the loop thread's connection is passed to the calls
 * that read or write the store.
 *
 * Threads: mpe_open, mpe_close, mpe_watch, mpe_unwatch and mpe_resume run
 * on the loop thread; watcher callbacks run there too. mpe_committed,
 * mpe_last_seq, mpe_epoch, the horizon functions and mpe_event_json may be
 * called from any thread.
 */
#ifndef MP_EVENTS_EVENTS_H
#define MP_EVENTS_EVENTS_H

#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

struct event_base;
typedef struct mpe_events mpe_events;
typedef struct mpe_watch mpe_watch;

/* Loop thread. Reads the highest stored seq and the retention horizon and
 * begins a new epoch when the last stop was not clean (logged). Store
 * errors are logged; the stream still works from what could be read.
 * `base` must outlive the result. */
mpe_events *mpe_open(struct event_base *base, mps_store *s);
/* Loop thread, once nothing writes events any more: writes the clean-stop
 * marker through `s` (skipped when NULL), drops the watchers and frees.
 * Accepts NULL, clears *e. */
void mpe_close(mpe_events **e, mps_store *s);

/* Any thread: events up to `seq` were committed. Raises the last seq
 * (never lowers it) and wakes the watchers once on the loop thread. */
void mpe_committed(mpe_events *e, int64_t seq);

/* Called on the loop thread after events were committed, with the
 * highest seq known then. A callback may unwatch itself. */
typedef void (*mpe_watch_cb)(int64_t last_seq, void *arg);
/* Loop thread. The handle stays valid until mpe_unwatch or mpe_close. */
mpe_watch *mpe_watch_add(mpe_events *e, mpe_watch_cb cb, void *arg);
/* Loop thread. Accepts NULL and handles already gone. */
void mpe_unwatch(mpe_events *e, mpe_watch *w);

/* Any thread: the highest committed seq known (0: none). */
int64_t mpe_last_seq(mpe_events *e);
/* Any thread: the current epoch; event ids are "<epoch>:<seq>". */
int64_t mpe_epoch(mpe_events *e);
/* Loop thread: where a client that last saw (epoch, seq) resumes; *after_r
 * is the seq after which to send. epoch 0 or the current one: seq itself;
 * an older epoch resumes no later than where the next one began (read
 * through `s`). -1 on a store error, with *error_r set (allocated). */
int mpe_resume(mpe_events *e, mps_store *s, int64_t epoch, int64_t seq,
               int64_t *after_r, char **error_r);

/* Outbox retention: events up to the horizon may be gone (0: none pruned).
 * Any thread. A reader reads it after reading events: a position below it
 * missed events. Retention raises it (never lowers) before its delete
 * commits, and sets it back to the stored value when the delete failed. */
int64_t mpe_horizon(mpe_events *e);
void mpe_horizon_raise(mpe_events *e, int64_t upto);
void mpe_horizon_set(mpe_events *e, int64_t horizon);

/* One outbox event as JSON (a new reference), any thread: the event's data
 * fields, then "seq", "type", "account", "folder" (null when none),
 * "message" (null when none), "time" (RFC 3339, ms) and "idempotency_key",
 * which replace data fields of the same name. Data that is not a JSON
 * object is dropped. The compact dump of this object is the webhook body
 * that gets signed, so its shape and order are part of the wire format. */
json_t *mpe_event_json(const mps_event *ev);

#endif

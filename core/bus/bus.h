/*
 * Events on NATS JetStream: a relay publishes every event committed in the
 * outbox to the stream `bus.stream`, on the subject
 * "mailpulse.<account>.<type>" (each part one subject token, mpb_token),
 * with the header Nats-Msg-Id = the event's idempotency key (mpb_msg_id),
 * so JetStream's duplicate window drops a replay.
 *
 * Delivery model:
 *   - the position is a cursor in the store under the reserved name
 *     MPB_CURSOR_NAME (the webhook cursor table: outbox retention never
 *     prunes an event above it, see mps_outbox_prune_plan): every event up
 *     to it was acknowledged by JetStream. A restart resumes after it. A
 *     bus seen for the first time starts after the newest event (no
 *     history), like a new webhook endpoint.
 *   - order: pages of up to max_pending events are published pipelined on
 *     one connection, which JetStream stores in publish order; the cursor
 *     moves to the last event before the first one not acknowledged, and
 *     the next attempt starts there. Only a publish refused while a later
 *     one of the same page was stored can put that later one first
 *     (max_pending = 1 rules it out).
 *   - at least once: a crash or a lost ack publishes again what came after
 *     the saved cursor, with the same Nats-Msg-Id; inside the stream's
 *     duplicate window JetStream stores it once (the ack says duplicate).
 *   - NATS unreachable, at start or later: the daemon runs on, events stay
 *     in the outbox, the relay retries with a capped exponential backoff
 *     (retry_max) and resumes from its cursor.
 *   - the stream is created when missing (subjects "mailpulse.>", file
 *     storage, the configured duplicate window). An existing stream whose
 *     subjects, storage or duplicate window differ is reported (log,
 *     status) and left alone; the relay waits and checks again.
 *
 * Threading: the relay runs on a thread of its own with its own store
 * connection (asked through store_fn on that thread); it never touches the
 * event loop. libnats runs its callbacks on its own threads; they only
 * update counters under the relay's lock. mpb_start, mpb_stop and the
 * status functions are called on the loop thread; the status functions
 * read a snapshot under the lock.
 *
 * Ownership: the daemon passes what the relay uses (the event stream of
 * core/events, a store accessor, the settings); this module includes
 * nothing of core/daemon. The settings are copied at start (a reload does
 * not change a running relay).
 */
#ifndef MP_BUS_BUS_H
#define MP_BUS_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "events/events.h"
#include "store/store.h"

typedef struct mpb_relay mpb_relay;

/* The relay's cursor in the webhook cursor table. Webhook endpoint names
 * are [A-Za-z0-9._-], so no endpoint can take it. */
#define MPB_CURSOR_NAME "@bus"

/* ---- subjects and message ids (subject.c), pure, any thread ---- */

/* The subject prefix and the filter of the stream. */
#define MPB_SUBJECT_PREFIX "mailpulse"
#define MPB_STREAM_SUBJECTS "mailpulse.>"

/* One subject token from `value` (NULL is ""): the bytes A-Z a-z 0-9 '-'
 * '_' stay, every other byte becomes '%' and two uppercase hex digits
 * ("alice.b" -> "alice%2Eb", "message.new" -> "message%2Enew"); the empty
 * value becomes "%". The mapping is injective and never yields '.', '*',
 * '>' or whitespace. Writes at most size bytes with the NUL; returns the
 * length the whole token needs (without the NUL), as snprintf does. */
size_t mpb_token(const char *value, char *out, size_t size);
/* "mailpulse.<token(account)>.<token(type)>", allocated. */
char *mpb_subject(const char *account, const char *type);
/* The Nats-Msg-Id of an event: its idempotency key when that is 1..256
 * printable ASCII characters without spaces, else "sha256:" and the hex
 * SHA-256 of the key (stable across restarts, unlike a seq). out needs
 * MPB_MSG_ID_SIZE bytes. */
#define MPB_MSG_ID_SIZE 258
void mpb_msg_id(const char *idem_key, char *out, size_t size);

/* ---- the relay (relay.c, nats.c) ---- */

/* The calling thread's store connection; the relay calls it on its own
 * thread only. `done` releases that thread's connection before the thread
 * exits. */
typedef mps_store *(*mpb_store_fn)(void *arg);
typedef void (*mpb_store_done_fn)(void *arg);

/* Loop thread. Start relaying per s->bus (enabled, its token read). The
 * cursor is read (or created at the newest event) through `loop_store`,
 * the loop thread's connection, before this returns, so events committed
 * after the start are published even when the bus was never seen before.
 * `events` must outlive the relay. Never fails for NATS reasons (the relay
 * retries); NULL only when the bus is not enabled. */
mpb_relay *mpb_start(mpe_events *events, mps_store *loop_store, mpb_store_fn store_fn,
                     mpb_store_done_fn store_done, void *store_arg, const mp_settings *s);
/* Loop thread. Stop the relay: publishes awaiting an ack are abandoned
 * (their events are published again at the next start), the cursor is
 * saved, the thread joined, the connection closed. Waits at most about a
 * second plus one connection attempt. Accepts NULL, clears *r. */
void mpb_stop(mpb_relay **r);

/* {"connected","state","url","stream","cursor","last_seq","lag",
 *  "stream_seq","published","duplicates","errors","reconnects",
 *  "last_error","last_publish"}. url without credentials. state: one of
 *  "connecting", "connected", "disconnected", "stream_mismatch", "error".
 *  NULL relay: JSON null. */
json_t *mpb_status_json(mpb_relay *r);
/* Prometheus lines (allocated; "" for NULL). */
char *mpb_metrics_text(mpb_relay *r);

#endif

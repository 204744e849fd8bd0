/*
 * What the guided setup commands (gmail-setup, graph-setup) share: the verdict lines in
 * the check table's words, the RFC 3339 times the daemon and the drivers write, and the
 * live test's wait for the test message's message.new on the event stream.
 *
 * Everything printed goes through mpctl_sanitize: the values come from the
 * daemon, the provider and the network.
 */
#ifndef MP_CLI_SETUP_H
#define MP_CLI_SETUP_H

#include <stdint.h>

#include <jansson.h>

#include "client.h"
#include "util/util.h"

/* Exit codes of a setup command. */
enum { MPCTL_SETUP_READY = 0, MPCTL_SETUP_INCOMPLETE = 1, MPCTL_SETUP_ERROR = 2 };

/* One line "OUTCOME  NAME  detail", aligned like the check table. */
void mpctl_setup_verdict(const char *outcome, const char *name, const char *fmt, ...)
    MP_PRINTF(3, 4);
/* One line of text. */
void mpctl_setup_say(const char *fmt, ...) MP_PRINTF(1, 2);

/* "2026-12-07T04:40:00.123Z" (fraction optional, 'Z' required) to Unix
 * ms; -1 when it is not one. */
int64_t mpctl_time_ms(const char *t);

/* The result named `name` of a finished check's answer, or NULL. */
const json_t *mpctl_check_result(const json_t *result, const char *name);

/* The preflight step: run the daemon's check of `account` (no live test),
 * print its table, and tell which results failed: *failed_r = 1 when any
 * did, *group_failed_r = 1 when one named in `group` (NULL-terminated)
 * did. MPCTL_SETUP_READY when the check ran (whatever it found), else
 * MPCTL_SETUP_ERROR (printed). */
int mpctl_setup_preflight(const mpctl_conn *conn, const char *account,
                          const char *const *group, int *failed_r, int *group_failed_r);

/* The daemon's newest event seq (GET /v1/status), the position to follow
 * the stream from before a live test. 0, or -1 (printed). */
int mpctl_setup_event_position(const mpctl_args *args, const mpctl_conn *conn,
                               int64_t *seq_r);

/* What the live test waits for: the first message.new of `account` whose
 * provider id is `provider_id` (from the event's idempotency key) or whose
 * subject is `subject`; both NULL: the first message.new of the account. */
typedef struct mpctl_live_wait {
    const char *account;
    const char *provider_id;
    const char *subject;
    int found;
    char message[128]; /* the daemon's message id                   */
    char subject_seen[256];
    int64_t time_ms; /* the event's time                          */
} mpctl_live_wait;

/* Follow the account's message.new events after `seq`, reconnecting from
 * the last id when the stream drops, until `w` matched or `timeout_s`
 * passed (SIGINT/SIGTERM stop it). 0 found, 1 timeout, -1 error or
 * interrupt (printed). */
int mpctl_setup_follow(const mpctl_conn *conn, int64_t seq, mpctl_live_wait *w,
                       int64_t timeout_s);

#endif

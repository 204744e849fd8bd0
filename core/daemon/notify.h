/*
 * mailpulsed and its service manager: systemd's notification protocol
 * (sd_notify(3)) and watchdog, for a Type=notify unit. Everything here runs
 * on the loop thread. Without $NOTIFY_SOCKET, or in a build without
 * libsystemd (MP_SYSTEMD off), every call does nothing.
 *
 *   READY=1       mpd_notify_ready: the store is open, the API listeners
 *                 are bound and the instances registered (with STATUS=).
 *   RELOADING=1   mpd_notify_reloading, when SIGHUP arrives;
 *   READY=1       mpd_notify_reloaded, once the reload was applied or
 *                 refused (the running configuration stays either way).
 *   STOPPING=1    mpd_notify_stopping, when a stop begins.
 *   STATUS=...    accounts and push health, checked every few seconds and
 *                 sent only when the line changed:
 *                   "accounts: 3 (open 2, parked 1, not open 0, disabled 0);
 *                    push: live 2, silent 0"
 *                 parked = stopped by REAUTH/FATAL; not open = refused driver
 *                 or account_open failed; silent = live push flagged by
 *                 schedule.push_silence_hours. "; last reload refused, see
 *                 the journal" is appended after a refused reload.
 *   WATCHDOG=1    when $WATCHDOG_USEC is set (sd_watchdog_enabled), every
 *                 half period from a persistent timer of the event loop, so
 *                 a hung loop stops the pings and systemd restarts the
 *                 daemon. No thread pings on the loop's behalf.
 */
#ifndef MP_DAEMON_NOTIFY_H
#define MP_DAEMON_NOTIFY_H

#include "daemon/daemon.h"

typedef struct mpd_notify mpd_notify;

/* READY=1 and the timers. Returns NULL when there is no one to tell (no
 * socket, or no libsystemd); every other function accepts NULL. `d` must
 * outlive the handle. */
mpd_notify *mpd_notify_ready(mpd *d);
void mpd_notify_reloading(mpd_notify *n);
/* `applied`: 0 when the reload was refused (said in STATUS=). */
void mpd_notify_reloaded(mpd_notify *n, int applied);
void mpd_notify_stopping(mpd_notify *n);
/* Stops the timers (before the event base is freed); clears *n. */
void mpd_notify_free(mpd_notify **n);

#endif

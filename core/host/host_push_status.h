/*
 * The ABI 1.1 push_status slot's mapping to the push state text the daemon
 * stores and shows (the ABI 1.0 push_state form), shared by the daemon's
 * host table and the test kit's mock host. Any thread.
 */
#ifndef MP_HOST_PUSH_STATUS_H
#define MP_HOST_PUSH_STATUS_H

#include <mailpulse/driver.h>

/* "live", "starting", "reconnecting", "off" or "failed", followed by
 * ": <text>" when text is not NULL or empty; an unknown status is
 * "unknown". Newly allocated; free() it. *live_r is nonzero for
 * MP_PUSH_STATE_LIVE only. */
char *mphost_push_status_text(mp_push_state status, const char *text, int *live_r);

#endif

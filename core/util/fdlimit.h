/*
 * Descriptor shortage: raising the soft RLIMIT_NOFILE at start, telling a
 * shortage from other errors, and counting and logging it.
 *
 * A shortage (EMFILE, ENFILE; ENOMEM/ENOBUFS where a descriptor-creating
 * call means the kernel had no room for one) is a local, transient
 * condition: whoever meets it retries with backoff and never turns it
 * into a configuration error. mpu_fd_shortage_note() counts every
 * occurrence (the /metrics counter mailpulse_fd_exhaustion_total) and
 * logs one warning per episode: the first shortage after
 * MPU_FD_EPISODE_QUIET_MS without one opens a new episode; what follows
 * inside it is only counted. Thread-safe.
 */
#ifndef MP_UTIL_FDLIMIT_H
#define MP_UTIL_FDLIMIT_H

#include <stdint.h>

/* An episode ends after this long without a shortage. */
#define MPU_FD_EPISODE_QUIET_MS 60000

/* Raise the soft RLIMIT_NOFILE to the hard limit and log both values once
 * (info). A failure is logged (warning) and the daemon runs on with the
 * soft limit it has. */
void mpu_fd_raise_limit(void);

/* Nonzero when errno value `err` means "no descriptor (or no kernel room
 * for one) right now". */
int mpu_fd_shortage(int err);

/* Record a shortage met at `where` ("store", "secret", "http accept",
 * ...). Logs a warning only when it opens an episode. */
void mpu_fd_shortage_note(const char *where, int err);

/* Shortages recorded since start. */
uint64_t mpu_fd_shortage_total(void);

#endif

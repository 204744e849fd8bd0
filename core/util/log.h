/*
 * Daemon logging: one line per message on stderr (journald adds its own
 * timestamps; we add level and scope). Thread-safe. Code that parses or
 * stores returns errors to its caller, which logs once.
 */
#ifndef MP_UTIL_LOG_H
#define MP_UTIL_LOG_H

#include <stdarg.h>
#include <stdint.h>

#include <mailpulse/driver.h> /* mp_log_level */

/* Messages above this level are dropped. Default MP_LOG_INFO. */
void mpu_log_set_level(mp_log_level level);
mp_log_level mpu_log_get_level(void);
/* Parse "error|warning|info|debug"; returns -1 when unknown. */
int mpu_log_level_parse(const char *name);

/* scope: "core", "store", "imap[work]/alice", ... (may be NULL). */
void mpu_log(mp_log_level level, const char *scope, const char *fmt, ...)
    MP_PRINTF(3, 4);
void mpu_logv(mp_log_level level, const char *scope, const char *fmt, va_list ap)
    MP_PRINTF(3, 0);

/* A rate limit for one repeated message (one per call site, usually a
 * static): at most `burst` lines per `interval_ms`; lines over the limit
 * are counted, and the next line logged after the interval is preceded by
 * "suppressed K similar messages". Thread-safe. */
typedef struct mpu_log_limit {
    unsigned burst;
    unsigned interval_ms;
    /* private */
    int64_t window_ms;
    unsigned logged;
    unsigned long long suppressed;
} mpu_log_limit;
#define MPU_LOG_LIMIT_INIT(burst, interval_ms) {(burst), (interval_ms), 0, 0, 0}

/* Logs like mpu_log() unless `limit` says the message is over its rate. */
void mpu_log_limited(mpu_log_limit *limit, mp_log_level level, const char *scope,
                     const char *fmt, ...) MP_PRINTF(4, 5);
/* Logs the pending "suppressed" summary now, if any (e.g. when the
 * condition behind the repeated message has ended). */
void mpu_log_limit_flush(mpu_log_limit *limit, mp_log_level level, const char *scope);

#define mpu_error(scope, ...) mpu_log(MP_LOG_ERROR, scope, __VA_ARGS__)
#define mpu_warn(scope, ...) mpu_log(MP_LOG_WARNING, scope, __VA_ARGS__)
#define mpu_info(scope, ...) mpu_log(MP_LOG_INFO, scope, __VA_ARGS__)
#define mpu_debug(scope, ...) mpu_log(MP_LOG_DEBUG, scope, __VA_ARGS__)

#endif

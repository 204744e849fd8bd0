/* Logging to stderr, one line per message. systemd's journal adds the
 * timestamp; we add the level as a syslog priority prefix "<N>" when stderr
 * is the journal, so `journalctl -p` filters work, and a readable level
 * word otherwise. */
#include "util/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Set on the loop thread (start, reload), read by every thread. */
static atomic_int log_level = MP_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_journal = -1;

static const char *const level_names[] = {"error", "warning", "info", "debug"};
static const int level_syslog[] = {3, 4, 6, 7};

void mpu_log_set_level(mp_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

mp_log_level mpu_log_get_level(void)
{
    return (mp_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int mpu_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name != NULL && strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void mpu_logv(mp_log_level level, const char *scope, const char *fmt, va_list ap)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    if ((int)level < 0 || level > MP_LOG_DEBUG)
        level = MP_LOG_ERROR;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One write per line: never let a message inject extra log lines. */
    for (char *p = msg; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';

    pthread_mutex_lock(&log_lock);
    if (log_journal < 0)
        log_journal = getenv("JOURNAL_STREAM") != NULL;
    if (log_journal) {
        fprintf(stderr, "<%d>%s%s%s\n", level_syslog[level], scope ? scope : "",
                scope ? ": " : "", msg);
    } else {
        struct timespec ts;
        struct tm tm;
        char stamp[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ld %-7s %s%s%s\n", stamp, ts.tv_nsec / 1000000L,
                level_names[level], scope ? scope : "", scope ? ": " : "", msg);
    }
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

void mpu_log(mp_log_level level, const char *scope, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mpu_logv(level, scope, fmt, ap);
    va_end(ap);
}

/* Rate limiting keeps a repeating failure (an accept loop out of
 * descriptors, a peer failing every second) from flooding the journal
 * while still saying how much was dropped. The window state has its own
 * lock: the decision and the counters change together. */
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Returns true when a line may be logged now; *summary_r gets the count
 * suppressed in the window that just ended (to be reported first). */
static bool limit_admit(mpu_log_limit *limit, int64_t now, unsigned long long *summary_r)
{
    bool admit;
    pthread_mutex_lock(&limit_lock);
    *summary_r = 0;
    if (limit->logged == 0 || now - limit->window_ms >= (int64_t)limit->interval_ms) {
        *summary_r = limit->suppressed;
        limit->suppressed = 0;
        limit->window_ms = now;
        limit->logged = 0;
    }
    admit = limit->logged < limit->burst;
    if (admit)
        limit->logged++;
    else
        limit->suppressed++;
    pthread_mutex_unlock(&limit_lock);
    return admit;
}

void mpu_log_limited(mpu_log_limit *limit, mp_log_level level, const char *scope,
                     const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    unsigned long long summary = 0;
    bool admit = limit_admit(limit, monotonic_ms(), &summary);
    if (summary > 0)
        mpu_log(level, scope, "suppressed %llu similar messages", summary);
    if (!admit)
        return;
    va_list ap;
    va_start(ap, fmt);
    mpu_logv(level, scope, fmt, ap);
    va_end(ap);
}

void mpu_log_limit_flush(mpu_log_limit *limit, mp_log_level level, const char *scope)
{
    pthread_mutex_lock(&limit_lock);
    unsigned long long summary = limit->suppressed;
    limit->suppressed = 0;
    pthread_mutex_unlock(&limit_lock);
    if (summary > 0)
        mpu_log(level, scope, "suppressed %llu similar messages", summary);
}

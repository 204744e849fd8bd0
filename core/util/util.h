/*
 * Small helpers every core module uses: time, bounded strings, allocation
 * that aborts on exhaustion (a daemon that cannot allocate 100 bytes cannot
 * report anything useful either), and safe file reading.
 */
#ifndef MP_UTIL_UTIL_H
#define MP_UTIL_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

/* Wall clock in ms since the epoch. Every core module and the host's
 * now_ms use this one function, so tests can move time in one place:
 * mpu_clock_set_offset_ms() shifts it (used by the debug API). */
int64_t mpu_now_ms(void);
void mpu_clock_set_offset_ms(int64_t offset_ms);
int64_t mpu_clock_offset_ms(void);
/* Monotonic clock in ms, for deadlines and latency. */
int64_t mpu_mono_ms(void);

/* RFC 3339 UTC with milliseconds: "2026-11-22T10:14:04.123Z". buf >= 32. */
void mpu_time_rfc3339(int64_t ms, char *buf, size_t size);

void *mpu_malloc(size_t size);
void *mpu_calloc(size_t n, size_t size);
void *mpu_realloc(void *ptr, size_t size);
char *mpu_strdup(const char *s);          /* NULL -> NULL */
char *mpu_strndup(const char *s, size_t n);
char *mpu_asprintf(const char *fmt, ...) MP_PRINTF(1, 2);
char *mpu_vasprintf(const char *fmt, va_list ap) MP_PRINTF(1, 0);
/* free(*p) and set *p = NULL. */
void mpu_freep(void *pp);

/* Bounded copy: always NUL-terminates; returns 0, or -1 when truncated. */
int mpu_strlcpy(char *dst, const char *src, size_t size);
/* Append n bytes to a growing buffer (*data, *len used, *cap allocated),
 * keeping a NUL after them. Returns -1, appending nothing, when *len + n + 1
 * would exceed max. */
int mpu_grow_append(char **data, size_t *len, size_t *cap, const void *p, size_t n,
                    size_t max);
/* Checked integer parse of the whole string; returns 0 or -1. */
int mpu_parse_i64(const char *s, int64_t *value_r);
int mpu_parse_u32(const char *s, uint32_t *value_r);

/* Constant-time comparison of two byte strings (lengths compared too,
 * without early exit on content). Returns 1 when equal. */
int mpu_secure_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Read a whole file (at most max bytes). *data_r is NUL-terminated.
 * With `secret` nonzero the file must be a regular file not readable or
 * writable by group/others and owned by the process's effective user or
 * root; the bytes are never left behind in freed memory while reading, and
 * *data_r must be released with mpu_secret_free. On failure returns -1 and
 * sets *error_r to an allocated message naming the file, with errno the
 * cause when open() failed (EMFILE: out of descriptors) and 0 otherwise. */
int mpu_read_file(const char *path, size_t max, int secret, char **data_r,
                  size_t *len_r, char **error_r);
/* Wipe the whole allocated block (malloc_usable_size, not the string's
 * length) and free it; *data becomes NULL. NULL-safe. */
void mpu_secret_free(char **data);

/* Lowercase hex of the first `bytes` bytes of SHA-256(data). out needs
 * 2*bytes+1. */
void mpu_sha256_hex(const void *data, size_t len, size_t bytes, char *out);

/* Random bytes from the OS (OpenSSL RAND_bytes); returns 0 or -1. */
int mpu_random(void *buf, size_t len);

#endif

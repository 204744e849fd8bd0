/* Helpers shared by every core module; see util.h for the contracts. */
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static _Atomic int64_t clock_offset_ms;

int64_t mpu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&clock_offset_ms);
}

void mpu_clock_set_offset_ms(int64_t offset_ms)
{
    atomic_store(&clock_offset_ms, offset_ms);
}

int64_t mpu_clock_offset_ms(void)
{
    return atomic_load(&clock_offset_ms);
}

int64_t mpu_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mpu_time_rfc3339(int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000 < 0 ? 0 : ms % 1000));
}

static void out_of_memory(void)
{
    static const char msg[] = "mailpulse: out of memory\n";
    (void)!write(2, msg, sizeof msg - 1);
    abort();
}

void *mpu_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        out_of_memory();
    return p;
}

void *mpu_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        out_of_memory();
    return p;
}

void *mpu_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        out_of_memory();
    return p;
}

char *mpu_strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    return mpu_strndup(s, strlen(s));
}

char *mpu_strndup(const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    size_t len = strnlen(s, n);
    char *p = mpu_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *mpu_vasprintf(const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        n = 0;
    char *p = mpu_malloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *mpu_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = mpu_vasprintf(fmt, ap);
    va_end(ap);
    return p;
}

void mpu_freep(void *pp)
{
    void **p = pp;
    free(*p);
    *p = NULL;
}

int mpu_grow_append(char **data, size_t *len, size_t *cap, const void *p, size_t n,
                    size_t max)
{
    if (n > max || *len + n + 1 > max)
        return -1;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n + 1)
            c *= 2;
        *data = mpu_realloc(*data, c);
        *cap = c;
    }
    memcpy(*data + *len, p, n);
    *len += n;
    (*data)[*len] = '\0';
    return 0;
}

int mpu_strlcpy(char *dst, const char *src, size_t size)
{
    if (size == 0)
        return -1;
    size_t len = strlen(src);
    if (len >= size) {
        memcpy(dst, src, size - 1);
        dst[size - 1] = '\0';
        return -1;
    }
    memcpy(dst, src, len + 1);
    return 0;
}

int mpu_parse_i64(const char *s, int64_t *value_r)
{
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *value_r = v;
    return 0;
}

int mpu_parse_u32(const char *s, uint32_t *value_r)
{
    int64_t v;
    if (mpu_parse_i64(s, &v) < 0 || v < 0 || v > UINT32_MAX)
        return -1;
    *value_r = (uint32_t)v;
    return 0;
}

int mpu_secure_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    /* Compare over the expected length; a length mismatch still costs a
     * full comparison so timing says nothing about the content. */
    if (alen != blen) {
        (void)CRYPTO_memcmp(a, a, alen);
        return 0;
    }
    return CRYPTO_memcmp(a, b, alen) == 0;
}

int mpu_read_file(const char *path, size_t max, int secret, char **data_r,
                  size_t *len_r, char **error_r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        *error_r = mpu_asprintf("%s: %s", path, strerror(e));
        errno = e; /* callers tell a descriptor shortage from a bad path */
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        *error_r = mpu_asprintf("%s: not a regular file", path);
        close(fd);
        errno = 0;
        return -1;
    }
    if (secret && (st.st_mode & 077) != 0) {
        *error_r = mpu_asprintf("%s: secret file is accessible by group or others "
                                "(mode %03o); chmod 600 it",
                                path, (unsigned)(st.st_mode & 0777));
        close(fd);
        errno = 0;
        return -1;
    }
    /* Whoever owns the file can change its mode, or the secret: only the
     * daemon's own user and root may. */
    if (secret && st.st_uid != geteuid() && st.st_uid != 0) {
        *error_r = mpu_asprintf("%s: secret file is owned by uid %u, not by this "
                                "process's user (uid %u) or root; chown it",
                                path, (unsigned)st.st_uid, (unsigned)geteuid());
        close(fd);
        errno = 0;
        return -1;
    }
    if ((size_t)st.st_size > max) {
        *error_r = mpu_asprintf("%s: larger than %zu bytes", path, max);
        close(fd);
        errno = 0;
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = mpu_malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max + 1)
                break;
            cap *= 2;
            if (secret) {
                /* realloc may leave the old bytes behind in freed memory. */
                char *bigger = mpu_malloc(cap);
                memcpy(bigger, buf, len);
                mpu_secret_free(&buf);
                buf = bigger;
            } else {
                buf = mpu_realloc(buf, cap);
            }
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *error_r = mpu_asprintf("%s: %s", path, strerror(errno));
            if (secret)
                mpu_secret_free(&buf);
            free(buf);
            close(fd);
            errno = 0;
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len > max) {
        *error_r = mpu_asprintf("%s: larger than %zu bytes", path, max);
        if (secret)
            mpu_secret_free(&buf);
        free(buf);
        errno = 0;
        return -1;
    }
    buf[len] = '\0';
    *data_r = buf;
    if (len_r != NULL)
        *len_r = len;
    return 0;
}

/* Fetched once: EVP_sha256() makes OpenSSL 3 look the algorithm up in its
 * providers on every digest (locks and string compares), which cost more
 * than hashing the short ids that every stored message needs. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void mpu_sha256_hex(const void *data, size_t len, size_t bytes, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    pthread_once(&sha256_once, fetch_sha256);
    EVP_Digest(data, len, md, &mdlen, sha256_md != NULL ? sha256_md : EVP_sha256(), NULL);
    if (bytes > mdlen)
        bytes = mdlen;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < bytes; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * bytes] = '\0';
}

int mpu_random(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

void mpu_secret_free(char **data)
{
    if (data == NULL || *data == NULL)
        return;
    /* The whole block, not strlen: a trimmed newline or an embedded NUL
     * would otherwise leave the tail of the secret in freed memory. */
    OPENSSL_cleanse(*data, malloc_usable_size(*data));
    free(*data);
    *data = NULL;
}

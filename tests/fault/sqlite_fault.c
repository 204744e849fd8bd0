/*
 * An LD_PRELOAD shim for fault tests (built only for tests, never
 * installed): fails writes and syncs of the store's files on command, so a
 * test can show what the daemon does when SQLite gets EIO or ENOSPC.
 *
 * SQLite's unix VFS calls pwrite64/write/fdatasync/fsync/ftruncate64
 * through libc, so interposing them catches every store write. Only
 * descriptors whose path contains $MP_FAULT_MATCH (default
 * "/mailpulse.db": the database and its -wal) are touched; everything
 * else passes through.
 *
 * Control: $MP_FAULT_CONTROL names a file the test rewrites at will. Its
 * first line is "<what> <percent> [<errno>]":
 *   what     off | write | sync | all     (all = write + sync)
 *   percent  1..100: share of matching calls that fail (pseudo-random)
 *   errno    EIO (default) or ENOSPC
 * A missing or unreadable file means off. The file is re-read at most
 * every 20 ms. Each injected failure increments a counter written to
 * "<control file>.count" when the control file is re-read.
 *
 * The -shm file is never failed: SQLite maps it into memory and rebuilds
 * it from the WAL, so a failure there says nothing about the store's
 * durability.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { F_WRITE = 1, F_SYNC = 2 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int mode;      /* F_WRITE | F_SYNC */
static atomic_int percent;   /* 0..100 */
static atomic_int fail_errno = EIO;
static atomic_llong next_check_ns;
static atomic_llong injected, reported;
static atomic_uint rng = 2463534242u;

static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_ftruncate64)(int, off_t);

static void resolve(void)
{
    if (real_write != NULL)
        return;
    real_pwrite64 = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_ftruncate64 = (int (*)(int, off_t))dlsym(RTLD_NEXT, "ftruncate64");
    real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Re-reads the control file (at most every 20 ms). */
static void refresh(void)
{
    long long now = now_ns();
    if (now < atomic_load(&next_check_ns))
        return;
    if (pthread_mutex_trylock(&lock) != 0)
        return;
    atomic_store(&next_check_ns, now + 20000000LL);
    const char *path = getenv("MP_FAULT_CONTROL");
    int m = 0, pct = 0, err = EIO;
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    if (f != NULL) {
        char what[16] = "", errname[16] = "";
        if (fscanf(f, "%15s %d %15s", what, &pct, errname) >= 2) {
            if (strcmp(what, "write") == 0)
                m = F_WRITE;
            else if (strcmp(what, "sync") == 0)
                m = F_SYNC;
            else if (strcmp(what, "all") == 0)
                m = F_WRITE | F_SYNC;
            if (strcmp(errname, "ENOSPC") == 0)
                err = ENOSPC;
        }
        fclose(f);
    }
    atomic_store(&mode, m);
    atomic_store(&percent, pct < 0 ? 0 : pct > 100 ? 100 : pct);
    atomic_store(&fail_errno, err);
    long long n = atomic_load(&injected);
    if (path != NULL && n != atomic_load(&reported)) {
        char count_path[4096], text[32];
        snprintf(count_path, sizeof count_path, "%s.count", path);
        int fd = open(count_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            int len = snprintf(text, sizeof text, "%lld\n", n);
            resolve();
            if (real_write(fd, text, (size_t)len) == len)
                atomic_store(&reported, n);
            close(fd);
        }
    }
    pthread_mutex_unlock(&lock);
}

static int is_store(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    const char *match = getenv("MP_FAULT_MATCH");
    if (match == NULL || *match == '\0')
        match = "/mailpulse.db";
    size_t len = (size_t)n;
    if (len > 4 && strcmp(path + len - 4, "-shm") == 0)
        return 0;
    return strstr(path, match) != NULL;
}

/* Whether this call fails (errno set). */
static int inject(int fd, int kind)
{
    refresh();
    if ((atomic_load(&mode) & kind) == 0)
        return 0;
    /* xorshift: cheap, and thread-safe enough for a test's coin flips */
    unsigned x = atomic_load(&rng);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    atomic_store(&rng, x);
    if ((int)(x % 100u) >= atomic_load(&percent))
        return 0;
    if (!is_store(fd))
        return 0;
    atomic_fetch_add(&injected, 1);
    errno = atomic_load(&fail_errno);
    return 1;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    resolve();
    if (inject(fd, F_WRITE))
        return -1;
    return real_pwrite64(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite64(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    resolve();
    /* Logs and sockets are never the store: skip the check for them. */
    if (fd > 2 && inject(fd, F_WRITE))
        return -1;
    return real_write(fd, buf, n);
}

int fdatasync(int fd)
{
    resolve();
    if (inject(fd, F_SYNC))
        return -1;
    return real_fdatasync(fd);
}

int fsync(int fd)
{
    resolve();
    if (inject(fd, F_SYNC))
        return -1;
    return real_fsync(fd);
}

int ftruncate64(int fd, off_t len)
{
    resolve();
    if (inject(fd, F_WRITE))
        return -1;
    return real_ftruncate64(fd, len);
}

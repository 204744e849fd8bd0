/*
 * File safety before dlopen: loading a shared object runs its code with the
 * daemon's privileges, so anyone who can replace the file (or rename one
 * into its directory) owns the daemon. The directory matters as much as the
 * file: a directory writable by others lets them swap a safe file for theirs.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/loader.h"
#include "util/util.h"

/* Packaging tools symlink files (alternatives); longer chains are suspect. */
#define MAX_SYMLINK_HOPS 8

/* `shown` is the path the caller asked for; `dir` is NULL for the file
 * itself, else the directory being judged. */
static int check_stat(const char *shown, const char *dir, const struct stat *st,
                      char **error_r)
{
    unsigned mode = (unsigned)(st->st_mode & 07777);
    unsigned uid = (unsigned)st->st_uid, euid = (unsigned)geteuid();

    if ((st->st_mode & 022) != 0) {
        if (dir == NULL)
            *error_r = mpu_asprintf("%s: writable by group or others (mode %04o); "
                                    "refusing to load",
                                    shown, mode);
        else
            *error_r = mpu_asprintf("%s: directory %s is writable by group or others "
                                    "(mode %04o); refusing to load",
                                    shown, dir, mode);
        return -1;
    }
    if (uid != 0 && uid != euid) {
        if (dir == NULL)
            *error_r = mpu_asprintf("%s: owned by uid %u, not by root or the daemon's "
                                    "user (uid %u); refusing to load",
                                    shown, uid, euid);
        else
            *error_r = mpu_asprintf("%s: directory %s is owned by uid %u, not by root "
                                    "or the daemon's user (uid %u); refusing to load",
                                    shown, dir, uid, euid);
        return -1;
    }
    return 0;
}

static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return mpu_strdup(".");
    if (slash == path)
        return mpu_strdup("/");
    return mpu_strndup(path, (size_t)(slash - path));
}

/* stat (not lstat) on purpose: what counts is the directory the name
 * finally resolves to. */
static int check_dir_of(const char *shown, const char *path, char **error_r)
{
    struct stat st;
    char *dir = parent_dir(path);
    int ret;

    if (stat(dir, &st) < 0) {
        *error_r = mpu_asprintf("%s: directory %s: %s", shown, dir, strerror(errno));
        ret = -1;
    } else {
        ret = check_stat(shown, dir, &st, error_r);
    }
    free(dir);
    return ret;
}

/* `path` with its directory part resolved, so messages name the real
 * directory ("a/../b/x.so" becomes "/abs/b/x.so"). The last component stays
 * as it is: it may be another link, judged on the next hop. */
static char *tidy(char *path)
{
    char *dir = parent_dir(path), *real = realpath(dir, NULL), *out;
    const char *slash = strrchr(path, '/');

    free(dir);
    if (real == NULL)
        return path; /* judged, and reported, on the next lstat */
    out = mpu_asprintf("%s/%s", strcmp(real, "/") == 0 ? "" : real,
                       slash != NULL ? slash + 1 : path);
    free(real);
    free(path);
    return out;
}

/* The target of symlink `link`, relative targets resolved against the
 * link's directory. NULL with *error_r set on failure. */
static char *follow(const char *shown, const char *link, char **error_r)
{
    char buf[PATH_MAX];
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    char *dir, *target;

    if (n < 0) {
        *error_r =
            mpu_asprintf("%s: cannot read symlink %s: %s", shown, link, strerror(errno));
        return NULL;
    }
    buf[n] = '\0';
    if (buf[0] == '/') {
        target = mpu_strdup(buf);
    } else {
        dir = parent_dir(link);
        target = mpu_asprintf("%s/%s", dir, buf);
        free(dir);
    }
    return tidy(target);
}

int mpl_check_file(const char *path, char **error_r)
{
    char *cur = mpu_strdup(path);
    int ret = -1;

    /* Every link on the way and the final file are judged together with the
     * directory holding them: replacing any of them redirects the load. */
    for (int hop = 0; hop <= MAX_SYMLINK_HOPS; hop++) {
        struct stat st;
        char *next;

        if (lstat(cur, &st) < 0) {
            if (hop == 0)
                *error_r = mpu_asprintf("%s: %s", path, strerror(errno));
            else
                *error_r =
                    mpu_asprintf("%s: symlink target %s: %s", path, cur, strerror(errno));
            goto out;
        }
        if (check_dir_of(path, cur, error_r) < 0)
            goto out;
        if (!S_ISLNK(st.st_mode)) {
            if (!S_ISREG(st.st_mode)) {
                *error_r = mpu_asprintf("%s: not a regular file; refusing to load", path);
                goto out;
            }
            if (hop > 0 && (st.st_mode & 022) != 0) {
                *error_r = mpu_asprintf("%s: symlink target %s is writable by group "
                                        "or others (mode %04o); refusing to load",
                                        path, cur, (unsigned)(st.st_mode & 07777));
                goto out;
            }
            ret = check_stat(path, NULL, &st, error_r);
            goto out;
        }
        next = follow(path, cur, error_r);
        if (next == NULL)
            goto out;
        free(cur);
        cur = next;
    }
    *error_r = mpu_asprintf("%s: more than %d symlinks; refusing to load", path,
                            MAX_SYMLINK_HOPS);
out:
    free(cur);
    return ret;
}

/*
 * Driver loader: dlopen(RTLD_NOW | RTLD_LOCAL) of "<driver_dir>/<name>.so",
 * lookup of the one symbol MP_DRIVER_SYMBOL, and the checks that decide
 * whether the host may call it. A refusal is a value, not a crash: the
 * message names the file and, for version problems, both ABI versions, e.g.
 *   "/usr/lib/mailpulse/drivers/imap.so: driver ABI 2.0, host ABI 1.0:
 *    major version differs"
 * Refused when: the file or its directory is writable by group/others, or
 * not owned by root or the daemon's user; dlopen fails; the symbol is
 * missing; ABI major differs; ABI minor is newer than the host's;
 * struct_size is smaller than the ABI 1.0 descriptor; name differs from
 * the file name; a mandatory slot (init, account_open, account_close,
 * list_folders, bootstrap, delta, fetch) is NULL; push_kind WEBHOOK without
 * push_verify/enroll/renew/cancel, or STREAM without push_start/push_stop.
 */
#ifndef MP_LOADER_LOADER_H
#define MP_LOADER_LOADER_H

#include <stddef.h>

#include <mailpulse/driver.h>

typedef struct mpl_driver {
    char *name;
    char *path;
    void *handle;             /* dlopen handle                              */
    /* A host-owned copy of the descriptor, zero-extended to the host's
     * sizeof(mp_driver) so slots beyond the driver's struct_size read NULL. */
    mp_driver desc;
} mpl_driver;

/* Name must match [a-z0-9_-]{1,32}. On refusal returns NULL and sets
 * *error_r to an allocated message as described above. */
mpl_driver *mpl_load(const char *driver_dir, const char *name, char **error_r);
/* dlclose and free; accepts NULL, clears *drv. */
void mpl_unload(mpl_driver **drv);

/* The checks alone, on a descriptor already in memory (used by mpl_load
 * and by unit tests). `file` is used in messages only. Returns 0 or -1
 * with *error_r set. */
int mpl_check_descriptor(const mp_driver *desc, const char *file,
                         const char *expected_name, char **error_r);
/* File safety check alone. */
int mpl_check_file(const char *path, char **error_r);

#endif

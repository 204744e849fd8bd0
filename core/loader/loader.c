/*
 * dlopen, symbol lookup and descriptor checks. The descriptor lives in
 * memory the driver controls and may come from an older or newer SDK, so it
 * is read in two steps: the fixed head first (versions, size, name), and
 * only once those agree the rest, bounded by both the driver's struct_size
 * and the host's sizeof(mp_driver).
 */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

#include "loader/loader.h"
#include "util/util.h"

/* Size of the ABI 1.0 descriptor: everything up to and including its last
 * slot, push_stop. Slots appended in later minors lie beyond it, so this
 * value stays fixed forever; a 1.0 driver is never refused for being short.
 * Computed from the last slot rather than sizeof so trailing padding of a
 * grown struct cannot change it. */
#define MPL_ABI_1_0_SIZE (offsetof(mp_driver, push_stop) + sizeof(void (*)(void)))
/* The head every descriptor of every ABI starts with. */
#define MPL_HEAD_SIZE (offsetof(mp_driver, name) + sizeof(const char *))

_Static_assert(MPL_ABI_1_0_SIZE <= sizeof(mp_driver), "the descriptor only grows");
_Static_assert(MPL_HEAD_SIZE == offsetof(mp_driver, version),
               "the head has no padding before the first slot");

#define MPL_NAME_MAX 32

static int check_head(const mp_driver *desc, const char *file, char **error_r)
{
    if (desc->abi_major != MP_ABI_MAJOR) {
        *error_r = mpu_asprintf("%s: driver ABI %u.%u, host ABI %d.%d: "
                                "major version differs",
                                file, desc->abi_major, desc->abi_minor, MP_ABI_MAJOR,
                                MP_ABI_MINOR);
        return -1;
    }
    if (desc->abi_minor > MP_ABI_MINOR) {
        *error_r =
            mpu_asprintf("%s: driver ABI %u.%u is newer than host ABI %d.%d", file,
                         desc->abi_major, desc->abi_minor, MP_ABI_MAJOR, MP_ABI_MINOR);
        return -1;
    }
    if (desc->struct_size < MPL_ABI_1_0_SIZE) {
        *error_r =
            mpu_asprintf("%s: descriptor is %u bytes, ABI 1.0 needs at "
                         "least %zu (driver ABI %u.%u, host ABI %d.%d)",
                         file, desc->struct_size, MPL_ABI_1_0_SIZE, desc->abi_major,
                         desc->abi_minor, MP_ABI_MAJOR, MP_ABI_MINOR);
        return -1;
    }
    return 0;
}

/* push_kind NULL: a mandatory slot; else the push kind that needs it. */
static int refuse_slot(const mp_driver *desc, const char *file, const char *push_kind,
                       const char *slot, char **error_r)
{
    if (push_kind == NULL)
        *error_r = mpu_asprintf("%s: mandatory slot '%s' is missing (driver ABI "
                                "%u.%u, host ABI %d.%d)",
                                file, slot, desc->abi_major, desc->abi_minor,
                                MP_ABI_MAJOR, MP_ABI_MINOR);
    else
        *error_r = mpu_asprintf("%s: push_kind %s needs slot '%s', which is missing "
                                "(driver ABI %u.%u, host ABI %d.%d)",
                                file, push_kind, slot, desc->abi_major, desc->abi_minor,
                                MP_ABI_MAJOR, MP_ABI_MINOR);
    return -1;
}

int mpl_check_descriptor(const mp_driver *desc, const char *file,
                         const char *expected_name, char **error_r)
{
    typedef struct {
        const char *name;
        int present;
    } slot;
    const slot mandatory[] = {
        {"init", desc->init != NULL},
        {"account_open", desc->account_open != NULL},
        {"account_close", desc->account_close != NULL},
        {"list_folders", desc->list_folders != NULL},
        {"bootstrap", desc->bootstrap != NULL},
        {"delta", desc->delta != NULL},
        {"fetch", desc->fetch != NULL},
    };
    const slot webhook[] = {
        {"push_verify", desc->push_verify != NULL},
        {"push_enroll", desc->push_enroll != NULL},
        {"push_renew", desc->push_renew != NULL},
        {"push_cancel", desc->push_cancel != NULL},
    };
    const slot stream[] = {
        {"push_start", desc->push_start != NULL},
        {"push_stop", desc->push_stop != NULL},
    };

    if (check_head(desc, file, error_r) < 0)
        return -1;

    if (desc->name == NULL) {
        *error_r = mpu_asprintf("%s: descriptor has no name; it must be \"%s\"", file,
                                expected_name);
        return -1;
    }
    if (strcmp(desc->name, expected_name) != 0) {
        /* The name is the driver's text: bound it in case it is garbage. */
        *error_r = mpu_asprintf("%s: driver calls itself \"%.64s\" but the file is "
                                "named \"%s.so\"",
                                file, desc->name, expected_name);
        return -1;
    }

    for (size_t i = 0; i < sizeof mandatory / sizeof mandatory[0]; i++) {
        if (!mandatory[i].present)
            return refuse_slot(desc, file, NULL, mandatory[i].name, error_r);
    }
    switch (desc->push_kind) {
    case MP_PUSH_NONE:
        break;
    case MP_PUSH_WEBHOOK:
        for (size_t i = 0; i < sizeof webhook / sizeof webhook[0]; i++) {
            if (!webhook[i].present)
                return refuse_slot(desc, file, "WEBHOOK", webhook[i].name, error_r);
        }
        break;
    case MP_PUSH_STREAM:
        for (size_t i = 0; i < sizeof stream / sizeof stream[0]; i++) {
            if (!stream[i].present)
                return refuse_slot(desc, file, "STREAM", stream[i].name, error_r);
        }
        break;
    default:
        /* A kind this host does not know cannot be served; a newer minor
         * would have been refused above already, so this is a broken driver. */
        *error_r = mpu_asprintf("%s: unknown push_kind %d (driver ABI %u.%u, host "
                                "ABI %d.%d)",
                                file, (int)desc->push_kind, desc->abi_major,
                                desc->abi_minor, MP_ABI_MAJOR, MP_ABI_MINOR);
        return -1;
    }
    return 0;
}

static int name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > MPL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* dlsym gives an address, not a size. The ELF symbol table knows how big
 * the exported object is; refuse to read past it (a driver that exports a
 * function, or a small variable under our name). Returns the size, or 0
 * when the dynamic linker cannot tell. */
static size_t symbol_size(const void *sym, int *is_object_r)
{
    Dl_info info;
    const ElfW(Sym) *entry = NULL;

    *is_object_r = 1;
    if (dladdr1(sym, &info, (void **)&entry, RTLD_DL_SYMENT) == 0 || entry == NULL)
        return 0;
    /* ELF32_ST_TYPE and ELF64_ST_TYPE are the same low nibble. */
    *is_object_r = ELF64_ST_TYPE(entry->st_info) == STT_OBJECT;
    return (size_t)entry->st_size;
}

/* Copies the descriptor exported by `handle` into *desc_r, zero-extended. */
static int read_descriptor(void *handle, const char *path, const char *name,
                           mp_driver *desc_r, char **error_r)
{
    const void *sym;
    size_t sym_size, copy;
    int is_object;

    dlerror();
    sym = dlsym(handle, MP_DRIVER_SYMBOL);
    if (sym == NULL) {
        *error_r = mpu_asprintf("%s: no symbol %s (is this a mailpulse driver?)", path,
                                MP_DRIVER_SYMBOL);
        return -1;
    }
    sym_size = symbol_size(sym, &is_object);
    if (!is_object) {
        *error_r = mpu_asprintf("%s: symbol %s is not a data object (is this a "
                                "mailpulse driver?)",
                                path, MP_DRIVER_SYMBOL);
        return -1;
    }
    if (sym_size != 0 && sym_size < MPL_HEAD_SIZE) {
        *error_r = mpu_asprintf("%s: symbol %s is %zu bytes, too small for a "
                                "descriptor head (%zu)",
                                path, MP_DRIVER_SYMBOL, sym_size, (size_t)MPL_HEAD_SIZE);
        return -1;
    }

    memset(desc_r, 0, sizeof *desc_r);
    memcpy(desc_r, sym, MPL_HEAD_SIZE);
    if (check_head(desc_r, path, error_r) < 0)
        return -1;

    copy = desc_r->struct_size < sizeof *desc_r ? desc_r->struct_size : sizeof *desc_r;
    if (sym_size != 0 && sym_size < copy) {
        *error_r = mpu_asprintf("%s: descriptor claims %u bytes but symbol %s is %zu "
                                "(driver ABI %u.%u, host ABI %d.%d)",
                                path, desc_r->struct_size, MP_DRIVER_SYMBOL, sym_size,
                                desc_r->abi_major, desc_r->abi_minor, MP_ABI_MAJOR,
                                MP_ABI_MINOR);
        return -1;
    }
    memcpy(desc_r, sym, copy);
    return mpl_check_descriptor(desc_r, path, name, error_r);
}

mpl_driver *mpl_load(const char *driver_dir, const char *name, char **error_r)
{
    mpl_driver *drv;
    size_t dir_len = strlen(driver_dir);
    char *path;
    void *handle;

    if (!name_valid(name)) {
        *error_r = mpu_asprintf("invalid driver name \"%.64s\": use 1 to %d "
                                "characters from a-z, 0-9, '_' and '-'",
                                name, MPL_NAME_MAX);
        return NULL;
    }
    while (dir_len > 1 && driver_dir[dir_len - 1] == '/')
        dir_len--;
    path = mpu_asprintf("%.*s/%s.so", (int)dir_len, driver_dir, name);

    if (mpl_check_file(path, error_r) < 0) {
        free(path);
        return NULL;
    }
    /* RTLD_NOW: an unresolved symbol refuses the driver here, not in the
     * middle of a sync. RTLD_LOCAL: drivers cannot see each other. */
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        *error_r = mpu_asprintf("%s: cannot load: %s", path,
                                why != NULL ? why : "unknown dlopen error");
        free(path);
        return NULL;
    }

    drv = mpu_calloc(1, sizeof *drv);
    if (read_descriptor(handle, path, name, &drv->desc, error_r) < 0) {
        dlclose(handle);
        free(path);
        free(drv);
        return NULL;
    }
    drv->name = mpu_strdup(name);
    drv->path = path;
    drv->handle = handle;
    return drv;
}

void mpl_unload(mpl_driver **drv)
{
    if (drv == NULL || *drv == NULL)
        return;
    if ((*drv)->handle != NULL)
        dlclose((*drv)->handle);
    free((*drv)->name);
    free((*drv)->path);
    free(*drv);
    *drv = NULL;
}

/*
 * Deliberately wrong drivers for the loader tests. One source, one variant
 * per build: each is a complete, valid driver except for the single fault
 * its REFUSED_* macro selects, so the loader must refuse it for exactly
 * that reason and no other. REFUSED_NAME is the file name without ".so".
 */
#include <mailpulse/driver.h>

#ifndef REFUSED_NAME
#error "REFUSED_NAME must name the file the driver is built into"
#endif

static mp_status refused_init(const mp_host *host, mp_instance *inst,
                              const mp_config *cfg, void **state_r, mp_error *err)
{
    *state_r = NULL;
    return MP_OK;
}

static mp_status refused_account_open(mp_account *acct, const mp_config *cfg,
                                      void **state_r, mp_error *err)
{
    *state_r = NULL;
    return MP_OK;
}

static void refused_account_close(mp_account *acct, void **state)
{
    *state = NULL;
}

static mp_status refused_list_folders(mp_account *acct, mp_folder_sink *sink,
                                      mp_error *err)
{
    return MP_OK;
}

static mp_status refused_bootstrap(mp_account *acct, const char *folder, uint32_t max,
                                   mp_batch *batch, mp_error *err)
{
    return mp_fail(err, MP_FATAL, "fixture driver");
}

static mp_status refused_delta(mp_account *acct, const char *folder, const char *cursor,
                               mp_batch *batch, mp_error *err)
{
    return mp_fail(err, MP_FATAL, "fixture driver");
}

#ifndef REFUSED_MISSING_SLOT
static mp_status refused_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                               mp_error *err)
{
    return MP_SKIP;
}
#endif

#if defined(REFUSED_ABI_MAJOR)
#define REFUSED_HEAD                                                                     \
    .abi_major = MP_ABI_MAJOR + 1, .abi_minor = MP_ABI_MINOR,                            \
    .struct_size = (uint32_t)sizeof(mp_driver), .name = REFUSED_NAME
#elif defined(REFUSED_ABI_MINOR)
#define REFUSED_HEAD                                                                     \
    .abi_major = MP_ABI_MAJOR, .abi_minor = MP_ABI_MINOR + 1,                            \
    .struct_size = (uint32_t)sizeof(mp_driver), .name = REFUSED_NAME
#elif defined(REFUSED_SHORT_STRUCT)
/* Claims to be only the head plus nothing; the object itself is complete,
 * so nothing but the size check can object. */
#define REFUSED_HEAD                                                                     \
    .abi_major = MP_ABI_MAJOR, .abi_minor = MP_ABI_MINOR, .struct_size = 16,             \
    .name = REFUSED_NAME
#elif defined(REFUSED_WRONG_NAME)
#define REFUSED_HEAD MP_DRIVER_HEAD("other")
#else
#define REFUSED_HEAD MP_DRIVER_HEAD(REFUSED_NAME)
#endif

#if defined(REFUSED_NO_SYMBOL)
/* A valid descriptor under another name: exported, but not what the loader
 * looks up. */
#define REFUSED_SYMBOL mailpulse_driver_v0
#else
#define REFUSED_SYMBOL mailpulse_driver
#endif

MP_DRIVER_EXPORT const mp_driver REFUSED_SYMBOL = {
    REFUSED_HEAD,
    .version = "0",
    .description = "loader test fixture",
    .init = refused_init,
    .account_open = refused_account_open,
    .account_close = refused_account_close,
    .list_folders = refused_list_folders,
    .bootstrap = refused_bootstrap,
    .delta = refused_delta,
#ifndef REFUSED_MISSING_SLOT
    .fetch = refused_fetch,
#endif
};

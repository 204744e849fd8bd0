/*
 * Loader tests: the deliberately wrong drivers of tests/drivers/refused,
 * the SDK's hello example as the good driver, file safety on copies in a
 * private temporary directory (so the build tree's umask does not matter),
 * and the descriptor checks on in-memory descriptors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader/loader.h"
#include "util/util.h"

#define REFUSED_DIR MP_TEST_BUILD_DIR "/tests/refused-drivers"
#define GOOD_DIR REFUSED_DIR "/good"

/* Pinned here on purpose: the 1.0 minimum must never move. */
#define ABI_1_0_SIZE (offsetof(mp_driver, push_stop) + sizeof(void (*)(void)))

static char *tmp_root; /* private copies of every fixture driver, 0755 */

static void copy_file(const char *src, const char *dst, mode_t mode)
{
    char *data = NULL, *error = NULL;
    size_t len = 0;
    int fd;

    if (mpu_read_file(src, 64u << 20, 0, &data, &len, &error) < 0)
        fail_msg("%s (build all targets first: cmake --build)", error);
    fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    /* fchmod, not the open mode: the umask must not decide the test. */
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
    free(data);
}

static char *make_dir(const char *name, mode_t mode)
{
    char *dir = mpu_asprintf("%s/%s", tmp_root, name);

    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(chmod(dir, mode), 0);
    return dir;
}

static char *copy_hello(const char *dir, mode_t mode)
{
    char *dst = mpu_asprintf("%s/hello.so", dir);

    copy_file(GOOD_DIR "/hello.so", dst, mode);
    return dst;
}

static int setup_group(void **state)
{
    static const char *const fixtures[] = {"abi_major",    "abi_minor",  "short_struct",
                                           "missing_slot", "wrong_name", "no_symbol"};
    char tmpl[] = "/tmp/mp-test-loader-XXXXXX";

    if (mkdtemp(tmpl) == NULL)
        return -1;
    tmp_root = mpu_strdup(tmpl);
    chmod(tmp_root, 0755);
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char *src = mpu_asprintf("%s/%s.so", REFUSED_DIR, fixtures[i]);
        char *dst = mpu_asprintf("%s/%s.so", tmp_root, fixtures[i]);
        copy_file(src, dst, 0755);
        free(src);
        free(dst);
    }
    free(copy_hello(tmp_root, 0755));
    {
        char *src = mpu_asprintf("%s/fixture10.so", MP_TEST_DRIVER_DIR);
        char *dst = mpu_asprintf("%s/fixture10.so", tmp_root);
        copy_file(src, dst, 0755);
        free(src);
        free(dst);
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    return remove(path);
}

static int teardown_group(void **state)
{
    if (tmp_root != NULL)
        nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    mpu_freep(&tmp_root);
    return 0;
}

static void assert_contains(const char *text, const char *fragment)
{
    if (text == NULL || strstr(text, fragment) == NULL)
        fail_msg("message \"%s\"\n  lacks \"%s\"", text != NULL ? text : "(null)",
                 fragment);
}

/* Loads dir/name.so, expects a refusal whose message contains `expected`. */
static void expect_refused(const char *dir, const char *name, const char *expected)
{
    char *error = NULL;
    mpl_driver *drv = mpl_load(dir, name, &error);

    if (drv != NULL)
        fail_msg("%s/%s.so was loaded, expected \"%s\"", dir, name, expected);
    assert_contains(error, expected);
    free(error);
}

static void test_refuses_other_major(void **state)
{
    char *want = mpu_asprintf("%s/abi_major.so: driver ABI %d.%d, host ABI %d.%d: "
                              "major version differs",
                              tmp_root, MP_ABI_MAJOR + 1, MP_ABI_MINOR, MP_ABI_MAJOR,
                              MP_ABI_MINOR);
    expect_refused(tmp_root, "abi_major", want);
    free(want);
}

static void test_refuses_newer_minor(void **state)
{
    char *want = mpu_asprintf("%s/abi_minor.so: driver ABI %d.%d is newer than "
                              "host ABI %d.%d",
                              tmp_root, MP_ABI_MAJOR, MP_ABI_MINOR + 1, MP_ABI_MAJOR,
                              MP_ABI_MINOR);
    expect_refused(tmp_root, "abi_minor", want);
    free(want);
}

static void test_refuses_short_struct(void **state)
{
    char *want = mpu_asprintf("%s/short_struct.so: descriptor is 16 bytes, ABI 1.0 "
                              "needs at least %zu",
                              tmp_root, ABI_1_0_SIZE);
    expect_refused(tmp_root, "short_struct", want);
    free(want);
}

static void test_refuses_missing_slot(void **state)
{
    char *want =
        mpu_asprintf("%s/missing_slot.so: mandatory slot 'fetch' is missing "
                     "(driver ABI %d.%d, host ABI %d.%d)",
                     tmp_root, MP_ABI_MAJOR, MP_ABI_MINOR, MP_ABI_MAJOR, MP_ABI_MINOR);
    expect_refused(tmp_root, "missing_slot", want);
    free(want);
}

static void test_refuses_wrong_name(void **state)
{
    char *want = mpu_asprintf("%s/wrong_name.so: driver calls itself \"other\" but "
                              "the file is named \"wrong_name.so\"",
                              tmp_root);
    expect_refused(tmp_root, "wrong_name", want);
    free(want);
}

static void test_refuses_no_symbol(void **state)
{
    char *want = mpu_asprintf("%s/no_symbol.so: no symbol mailpulse_driver "
                              "(is this a mailpulse driver?)",
                              tmp_root);
    expect_refused(tmp_root, "no_symbol", want);
    free(want);
}

static void test_loads_good_driver(void **state)
{
    char *error = NULL, *dir_slash = mpu_asprintf("%s//", tmp_root);
    char *path = mpu_asprintf("%s/hello.so", tmp_root);
    mpl_driver *drv = mpl_load(dir_slash, "hello", &error);
    const void *sym;

    if (drv == NULL)
        fail_msg("hello refused: %s", error);
    assert_null(error);
    assert_string_equal(drv->name, "hello");
    assert_string_equal(drv->path, path); /* trailing slashes dropped */
    assert_non_null(drv->handle);
    assert_int_equal(drv->desc.abi_major, MP_ABI_MAJOR);
    assert_int_equal(drv->desc.abi_minor, MP_ABI_MINOR);
    assert_string_equal(drv->desc.name, "hello");
    assert_non_null(drv->desc.fetch);
    assert_null(drv->desc.backfill);
    assert_null(drv->desc.push_verify);
    assert_non_null(drv->desc.account_keys);
    assert_string_equal(drv->desc.account_keys[0].name, "greeting");

    /* A host-owned copy, equal to what the driver exports. */
    sym = dlsym(drv->handle, MP_DRIVER_SYMBOL);
    assert_non_null(sym);
    assert_ptr_not_equal(sym, &drv->desc);
    assert_memory_equal(sym, &drv->desc, sizeof drv->desc);

    mpl_unload(&drv);
    assert_null(drv);
    mpl_unload(&drv);
    mpl_unload(NULL);
    free(path);
    free(dir_slash);
}

static void test_refuses_writable_file(void **state)
{
    char *dir = make_dir("mode", 0755);
    char *file = copy_hello(dir, 0666);
    char *want = mpu_asprintf("%s: writable by group or others (mode 0666); "
                              "refusing to load",
                              file);
    char *error = NULL;
    mpl_driver *drv;

    expect_refused(dir, "hello", want);
    free(want);

    assert_int_equal(chmod(file, 0775), 0);
    want = mpu_asprintf("%s: writable by group or others (mode 0775)", file);
    expect_refused(dir, "hello", want);
    free(want);

    /* The same file, made safe, loads: only the mode was in the way. */
    assert_int_equal(chmod(file, 0644), 0);
    assert_int_equal(mpl_check_file(file, &error), 0);
    drv = mpl_load(dir, "hello", &error);
    if (drv == NULL)
        fail_msg("%s", error);
    mpl_unload(&drv);
    free(file);
    free(dir);
}

static void test_refuses_writable_dir(void **state)
{
    char *dir = make_dir("open-dir", 0755);
    char *file = copy_hello(dir, 0755);
    char *want;

    assert_int_equal(chmod(dir, 0777), 0);
    want = mpu_asprintf("%s: directory %s is writable by group or others "
                        "(mode 0777); refusing to load",
                        file, dir);
    expect_refused(dir, "hello", want);
    free(want);

    /* Sticky does not help: others can still drop in files. */
    assert_int_equal(chmod(dir, 01777), 0);
    want = mpu_asprintf("%s: directory %s is writable by group or others "
                        "(mode 1777)",
                        file, dir);
    expect_refused(dir, "hello", want);
    free(want);
    free(file);
    free(dir);
}

static void test_symlinks(void **state)
{
    char *safe = make_dir("links", 0755);
    char *unsafe = make_dir("links-open", 0755);
    char *target = copy_hello(unsafe, 0755);
    char *link = mpu_asprintf("%s/hello.so", safe);
    char *want, *error = NULL;
    mpl_driver *drv;

    /* A relative link to a safe file in a safe directory is fine. */
    assert_int_equal(symlink("../links-open/hello.so", link), 0);
    drv = mpl_load(safe, "hello", &error);
    if (drv == NULL)
        fail_msg("%s", error);
    mpl_unload(&drv);

    /* The file it points to sits in a directory others may write. */
    assert_int_equal(chmod(unsafe, 0777), 0);
    want = mpu_asprintf("%s: directory %s is writable by group or others", link, unsafe);
    expect_refused(safe, "hello", want);
    free(want);

    /* The target itself is writable by others. */
    assert_int_equal(chmod(unsafe, 0755), 0);
    assert_int_equal(chmod(target, 0666), 0);
    want = mpu_asprintf("%s: symlink target %s is writable by group or others "
                        "(mode 0666)",
                        link, target);
    expect_refused(safe, "hello", want);
    free(want);

    /* A dangling link. */
    assert_int_equal(unlink(target), 0);
    want = mpu_asprintf("%s: symlink target", link);
    expect_refused(safe, "hello", want);
    free(want);

    free(link);
    free(target);
    free(unsafe);
    free(safe);
}

static void test_refuses_foreign_owner(void **state)
{
    char *dir, *file, *want;

    if (geteuid() != 0)
        skip(); /* only root can give a file away */
    dir = make_dir("owner", 0755);
    file = copy_hello(dir, 0755);
    assert_int_equal(chown(file, 4242, 4242), 0);
    want = mpu_asprintf("%s: owned by uid 4242, not by root or the daemon's user "
                        "(uid 0); refusing to load",
                        file);
    expect_refused(dir, "hello", want);
    free(want);

    assert_int_equal(chown(file, 0, 0), 0);
    assert_int_equal(chown(dir, 4242, 4242), 0);
    want = mpu_asprintf("%s: directory %s is owned by uid 4242", file, dir);
    expect_refused(dir, "hello", want);
    free(want);
    free(file);
    free(dir);
}

static void test_refuses_odd_files(void **state)
{
    char *dir = make_dir("odd", 0755);
    char *path = mpu_asprintf("%s/notelf.so", dir);
    char *want;
    FILE *f;

    want = mpu_asprintf("%s/absent.so: No such file or directory", dir);
    expect_refused(dir, "absent", want);
    free(want);

    want = mpu_asprintf("%s/sub.so", dir);
    assert_int_equal(mkdir(want, 0755), 0);
    free(want);
    want = mpu_asprintf("%s/sub.so: not a regular file; refusing to load", dir);
    expect_refused(dir, "sub", want);
    free(want);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a shared object\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0644), 0);
    want = mpu_asprintf("%s: cannot load: ", path);
    expect_refused(dir, "notelf", want);
    free(want);
    free(path);
    free(dir);
}

static void test_refuses_bad_names(void **state)
{
    static const char *const bad[] = {
        "",      "Hello",    "../hello",
        "a/b",   "hello.so", "x y",
        "héllo", "hello\n",  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    char *want;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(tmp_root, bad[i], "invalid driver name");

    /* 32 characters from the allowed set pass the name check and reach the
     * file system. */
    want = mpu_asprintf("%s/a-b_c-0123456789abcdefghijklmnop.so: No such file", tmp_root);
    expect_refused(tmp_root, "a-b_c-0123456789abcdefghijklmnop", want);
    free(want);
}

/* ---- in-memory descriptors ---- */

static mp_status mem_init(const mp_host *host, mp_instance *inst, const mp_config *cfg,
                          void **state_r, mp_error *err)
{
    return MP_OK;
}

static mp_status mem_open(mp_account *acct, const mp_config *cfg, void **state_r,
                          mp_error *err)
{
    return MP_OK;
}

static void mem_close(mp_account *acct, void **state)
{
}

static mp_status mem_list(mp_account *acct, mp_folder_sink *sink, mp_error *err)
{
    return MP_OK;
}

static mp_status mem_bootstrap(mp_account *acct, const char *folder, uint32_t max,
                               mp_batch *batch, mp_error *err)
{
    return MP_OK;
}

static mp_status mem_delta(mp_account *acct, const char *folder, const char *cursor,
                           mp_batch *batch, mp_error *err)
{
    return MP_OK;
}

static mp_status mem_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                           mp_error *err)
{
    return MP_SKIP;
}

static mp_status mem_enroll(mp_account *acct, mp_subscription *sub_r, mp_error *err)
{
    return MP_OK;
}

static mp_status mem_renew(mp_account *acct, const mp_subscription *current,
                           mp_subscription *sub_r, mp_error *err)
{
    return MP_OK;
}

static mp_status mem_cancel(mp_account *acct, const mp_subscription *current,
                            mp_error *err)
{
    return MP_OK;
}

static mp_status mem_verify(mp_instance *inst, const mp_push_request *req,
                            mp_push_reply *reply, mp_error *err)
{
    return MP_OK;
}

static mp_status mem_start(mp_account *acct, mp_error *err)
{
    return MP_OK;
}

static void mem_stop(mp_account *acct)
{
}

static const mp_driver mem_good = {
    MP_DRIVER_HEAD("mem"),      .init = mem_init,         .account_open = mem_open,
    .account_close = mem_close, .list_folders = mem_list, .bootstrap = mem_bootstrap,
    .delta = mem_delta,         .fetch = mem_fetch,
};

static void expect_desc_ok(const mp_driver *desc)
{
    char *error = NULL;

    if (mpl_check_descriptor(desc, "mem.so", "mem", &error) != 0)
        fail_msg("refused: %s", error);
    assert_null(error);
}

static void expect_desc_refused(const mp_driver *desc, const char *expected)
{
    char *error = NULL;

    assert_int_equal(mpl_check_descriptor(desc, "mem.so", "mem", &error), -1);
    assert_contains(error, expected);
    free(error);
}

static void test_descriptor_size(void **state)
{
    mp_driver d = mem_good;
    char *want;

    expect_desc_ok(&d);

    d.struct_size = 16;
    want = mpu_asprintf("mem.so: descriptor is 16 bytes, ABI 1.0 needs at least %zu",
                        ABI_1_0_SIZE);
    expect_desc_refused(&d, want);
    free(want);

    d.struct_size = (uint32_t)ABI_1_0_SIZE - 1;
    want = mpu_asprintf("mem.so: descriptor is %zu bytes", ABI_1_0_SIZE - 1);
    expect_desc_refused(&d, want);
    free(want);

    d.struct_size = (uint32_t)ABI_1_0_SIZE;
    expect_desc_ok(&d);
    /* A larger descriptor from a same-minor driver is fine too. */
    d.struct_size = (uint32_t)sizeof(mp_driver) + 64;
    expect_desc_ok(&d);
}

static void test_descriptor_versions(void **state)
{
    mp_driver d = mem_good;
    char *want;

    d.abi_major = MP_ABI_MAJOR + 1;
    want = mpu_asprintf("mem.so: driver ABI %d.%d, host ABI %d.%d: major version differs",
                        MP_ABI_MAJOR + 1, MP_ABI_MINOR, MP_ABI_MAJOR, MP_ABI_MINOR);
    expect_desc_refused(&d, want);
    free(want);

    d.abi_major = MP_ABI_MAJOR - 1;
    want = mpu_asprintf("mem.so: driver ABI %d.%d, host ABI %d.%d: major version differs",
                        MP_ABI_MAJOR - 1, MP_ABI_MINOR, MP_ABI_MAJOR, MP_ABI_MINOR);
    expect_desc_refused(&d, want);
    free(want);

    d.abi_major = MP_ABI_MAJOR;
    d.abi_minor = MP_ABI_MINOR + 7;
    want = mpu_asprintf("mem.so: driver ABI %d.%d is newer than host ABI %d.%d",
                        MP_ABI_MAJOR, MP_ABI_MINOR + 7, MP_ABI_MAJOR, MP_ABI_MINOR);
    expect_desc_refused(&d, want);
    free(want);

#if MP_ABI_MINOR > 0
    d.abi_minor = MP_ABI_MINOR - 1;
    expect_desc_ok(&d);
#endif
}

static void test_descriptor_name(void **state)
{
    mp_driver d = mem_good;

    d.name = "other";
    expect_desc_refused(&d, "mem.so: driver calls itself \"other\" but the file is "
                            "named \"mem.so\"");
    d.name = "me";
    expect_desc_refused(&d, "driver calls itself \"me\"");
    d.name = "memory";
    expect_desc_refused(&d, "driver calls itself \"memory\"");
    d.name = NULL;
    expect_desc_refused(&d, "mem.so: descriptor has no name");
}

static void test_descriptor_mandatory_slots(void **state)
{
    static const struct {
        const char *name;
        size_t offset;
    } slots[] = {
        {"init", offsetof(mp_driver, init)},
        {"account_open", offsetof(mp_driver, account_open)},
        {"account_close", offsetof(mp_driver, account_close)},
        {"list_folders", offsetof(mp_driver, list_folders)},
        {"bootstrap", offsetof(mp_driver, bootstrap)},
        {"delta", offsetof(mp_driver, delta)},
        {"fetch", offsetof(mp_driver, fetch)},
    };
    mp_driver d = mem_good;

    /* Optional slots may stay NULL. */
    expect_desc_ok(&d);
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        char *want = mpu_asprintf("mem.so: mandatory slot '%s' is missing (driver "
                                  "ABI %d.%d, host ABI %d.%d)",
                                  slots[i].name, MP_ABI_MAJOR, MP_ABI_MINOR, MP_ABI_MAJOR,
                                  MP_ABI_MINOR);
        d = mem_good;
        memset((char *)&d + slots[i].offset, 0, sizeof(void (*)(void)));
        expect_desc_refused(&d, want);
        free(want);
    }
}

static void test_descriptor_push_slots(void **state)
{
    mp_driver d = mem_good;

    d.push_kind = MP_PUSH_WEBHOOK;
    expect_desc_refused(&d, "mem.so: push_kind WEBHOOK needs slot 'push_verify', "
                            "which is missing");
    d.push_verify = mem_verify;
    expect_desc_refused(&d, "push_kind WEBHOOK needs slot 'push_enroll'");
    d.push_enroll = mem_enroll;
    expect_desc_refused(&d, "push_kind WEBHOOK needs slot 'push_renew'");
    d.push_renew = mem_renew;
    expect_desc_refused(&d, "push_kind WEBHOOK needs slot 'push_cancel'");
    d.push_cancel = mem_cancel;
    expect_desc_ok(&d);

    d = mem_good;
    d.push_kind = MP_PUSH_STREAM;
    expect_desc_refused(&d, "push_kind STREAM needs slot 'push_start'");
    d.push_start = mem_start;
    expect_desc_refused(&d, "push_kind STREAM needs slot 'push_stop'");
    d.push_stop = mem_stop;
    expect_desc_ok(&d);

    d.push_kind = (mp_push_kind)7;
    expect_desc_refused(&d, "mem.so: unknown push_kind 7");
}

/* A driver built against the frozen ABI 1.0 header (tests/drivers/abi10)
 * loads on this 1.1 host: its descriptor is the 1.0 size, and the slots it
 * does not know read as zero. */
static void test_loads_abi10_driver(void **state)
{
    char *error = NULL;
    mpl_driver *drv = mpl_load(tmp_root, "fixture10", &error);

    if (drv == NULL)
        fail_msg("fixture10 refused: %s", error);
    assert_int_equal(drv->desc.abi_major, 1);
    assert_int_equal(drv->desc.abi_minor, 0);
    assert_true(MP_ABI_MINOR >= 1);
    assert_true(drv->desc.struct_size >= ABI_1_0_SIZE);
    assert_true(drv->desc.struct_size <= sizeof(mp_driver));
    assert_string_equal(drv->desc.name, "fixture10");
    assert_non_null(drv->desc.push_verify);
    mpl_unload(&drv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refuses_other_major),
        cmocka_unit_test(test_refuses_newer_minor),
        cmocka_unit_test(test_refuses_short_struct),
        cmocka_unit_test(test_refuses_missing_slot),
        cmocka_unit_test(test_refuses_wrong_name),
        cmocka_unit_test(test_refuses_no_symbol),
        cmocka_unit_test(test_loads_good_driver),
        cmocka_unit_test(test_loads_abi10_driver),
        cmocka_unit_test(test_refuses_writable_file),
        cmocka_unit_test(test_refuses_writable_dir),
        cmocka_unit_test(test_symlinks),
        cmocka_unit_test(test_refuses_foreign_owner),
        cmocka_unit_test(test_refuses_odd_files),
        cmocka_unit_test(test_refuses_bad_names),
        cmocka_unit_test(test_descriptor_size),
        cmocka_unit_test(test_descriptor_versions),
        cmocka_unit_test(test_descriptor_name),
        cmocka_unit_test(test_descriptor_mandatory_slots),
        cmocka_unit_test(test_descriptor_push_slots),
    };

    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}

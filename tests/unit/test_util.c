/* Unit tests of core/util: the helpers every module relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/util.h"

static void test_secure_equal(void **state)
{
    (void)state;
    assert_int_equal(mpu_secure_equal("token-1", 7, "token-1", 7), 1);
    assert_int_equal(mpu_secure_equal("token-1", 7, "token-2", 7), 0);
    assert_int_equal(mpu_secure_equal("token", 5, "token-1", 7), 0);
    assert_int_equal(mpu_secure_equal("", 0, "", 0), 1);
}

static void test_parse(void **state)
{
    (void)state;
    int64_t v;
    uint32_t u;
    assert_int_equal(mpu_parse_i64("-42", &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(mpu_parse_i64("42x", &v), -1);
    assert_int_equal(mpu_parse_i64("", &v), -1);
    assert_int_equal(mpu_parse_i64("99999999999999999999", &v), -1);
    assert_int_equal(mpu_parse_u32("4294967295", &u), 0);
    assert_int_equal(u, 4294967295u);
    assert_int_equal(mpu_parse_u32("4294967296", &u), -1);
    assert_int_equal(mpu_parse_u32("-1", &u), -1);
}

static void test_strlcpy(void **state)
{
    (void)state;
    char buf[6];
    assert_int_equal(mpu_strlcpy(buf, "hello", sizeof buf), 0);
    assert_string_equal(buf, "hello");
    assert_int_equal(mpu_strlcpy(buf, "hello world", sizeof buf), -1);
    assert_string_equal(buf, "hello");
}

static void test_rfc3339(void **state)
{
    (void)state;
    char buf[40];
    mpu_time_rfc3339(1795000000123LL, buf, sizeof buf);
    assert_string_equal(buf, "2026-11-18T11:06:40.123Z");
    mpu_time_rfc3339(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
}

static void test_clock_offset(void **state)
{
    (void)state;
    int64_t before = mpu_now_ms();
    mpu_clock_set_offset_ms(86400000LL * 40);
    int64_t moved = mpu_now_ms();
    mpu_clock_set_offset_ms(0);
    assert_true(moved - before >= 86400000LL * 40);
    assert_true(mpu_now_ms() - before < 86400000LL);
}

static void test_sha256_hex(void **state)
{
    (void)state;
    char out[65];
    mpu_sha256_hex("abc", 3, 32, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    mpu_sha256_hex("abc", 3, 4, out);
    assert_string_equal(out, "ba7816bf");
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_read_file_secret_permissions(void **state)
{
    (void)state;
    char dir[] = "/tmp/mp-util-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = mpu_asprintf("%s/secret", dir);
    char *data = NULL, *error = NULL;
    size_t len = 0;

    write_file(path, "s3cret\n", 0644);
    assert_int_equal(mpu_read_file(path, 1024, 1, &data, &len, &error), -1);
    assert_non_null(strstr(error, "group or others"));
    assert_non_null(strstr(error, path));
    assert_null(strstr(error, "s3cret")); /* the content is never echoed */
    free(error);
    error = NULL;

    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(mpu_read_file(path, 1024, 1, &data, &len, &error), 0);
    assert_string_equal(data, "s3cret\n");
    assert_int_equal(len, 7);
    mpu_secret_free(&data);
    assert_null(data);

    /* Owned by someone else (nobody): whoever owns it can swap the secret
     * or open the mode, so it is refused, naming the file and the owner.
     * Root only: an ordinary user cannot give a file away. */
    if (geteuid() == 0) {
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_int_equal(mpu_read_file(path, 1024, 1, &data, &len, &error), -1);
        assert_non_null(strstr(error, path));
        assert_non_null(strstr(error, "owned by uid 65534"));
        free(error);
        error = NULL;
        /* Not a secret: anyone's file is fine. */
        assert_int_equal(mpu_read_file(path, 1024, 0, &data, &len, &error), 0);
        free(data);
        /* Root's own file is accepted too. */
        assert_int_equal(chown(path, 0, 0), 0);
        assert_int_equal(mpu_read_file(path, 1024, 1, &data, &len, &error), 0);
        mpu_secret_free(&data);
    }

    assert_int_equal(mpu_read_file(path, 3, 1, &data, &len, &error), -1);
    assert_non_null(strstr(error, "larger than"));
    free(error);
    error = NULL;

    char *missing = mpu_asprintf("%s/missing", dir);
    assert_int_equal(mpu_read_file(missing, 1024, 0, &data, &len, &error), -1);
    assert_non_null(strstr(error, missing));
    free(error);
    unlink(path);
    rmdir(dir);
    free(path);
    free(missing);
}

static void test_asprintf_and_freep(void **state)
{
    (void)state;
    char *s = mpu_asprintf("%s-%d", "a", 7);
    assert_string_equal(s, "a-7");
    mpu_freep(&s);
    assert_null(s);
    assert_null(mpu_strdup(NULL));
    char *n = mpu_strndup("abcdef", 3);
    assert_string_equal(n, "abc");
    free(n);
}

/* Workers read the level on every log call while a reload sets it on the
 * loop thread: under ThreadSanitizer (run-all.sh) a plain int is a data
 * race; the level is atomic. Messages are below the level: nothing prints. */
static atomic_int level_reader_stop;

static void *level_reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&level_reader_stop)) {
        mpu_log(MP_LOG_DEBUG, "test", "never shown");
        (void)mpu_log_get_level();
    }
    return NULL;
}

static void test_log_level_threads(void **state)
{
    (void)state;
    pthread_t th;
    atomic_store(&level_reader_stop, 0);
    assert_int_equal(pthread_create(&th, NULL, level_reader, NULL), 0);
    for (int i = 0; i < 20000; i++)
        mpu_log_set_level(i % 2 ? MP_LOG_ERROR : MP_LOG_WARNING);
    atomic_store(&level_reader_stop, 1);
    pthread_join(th, NULL);
    assert_true(mpu_log_get_level() == MP_LOG_ERROR || mpu_log_get_level() == MP_LOG_WARNING);
    mpu_log_set_level(MP_LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secure_equal),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_strlcpy),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_clock_offset),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_read_file_secret_permissions),
        cmocka_unit_test(test_asprintf_and_freep),
        cmocka_unit_test(test_log_level_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

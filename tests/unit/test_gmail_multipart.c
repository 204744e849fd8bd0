/* gmail.so: the batch endpoint's multipart wire format (gmail_multipart.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gmail_multipart.h"

static void test_build(void **state)
{
    (void)state;
    const char *targets[] = {"/gmail/v1/users/me/messages/a?format=metadata",
                             "/gmail/v1/users/me/messages/b?format=metadata"};
    size_t len = 0;
    char *body = gmail_multipart_build("B0", targets, 2, &len);
    assert_int_equal(len, strlen(body));
    assert_string_equal(body,
                        "--B0\r\nContent-Type: application/http\r\nContent-ID: <item-0>\r\n\r\n"
                        "GET /gmail/v1/users/me/messages/a?format=metadata\r\n\r\n"
                        "--B0\r\nContent-Type: application/http\r\nContent-ID: <item-1>\r\n\r\n"
                        "GET /gmail/v1/users/me/messages/b?format=metadata\r\n\r\n"
                        "--B0--\r\n");
    free(body);
}

/* Google's answer shape: parts in any order, each its own HTTP response. */
static const char answer[] =
    "--batch_xyz\r\n"
    "Content-Type: application/http\r\n"
    "Content-ID: <response-item-2>\r\n"
    "\r\n"
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Retry-After: 7\r\n"
    "Content-Type: application/json; charset=UTF-8\r\n"
    "\r\n"
    "{\"error\":{\"code\":429}}\r\n"
    "--batch_xyz\r\n"
    "Content-Type: application/http\r\n"
    "Content-ID: <response-item-0>\r\n"
    "\r\n"
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json; charset=UTF-8\r\n"
    "Content-Length: 11\r\n"
    "\r\n"
    "{\"id\":\"a\"}\n\r\n"
    "--batch_xyz\r\n"
    "Content-Type: application/http\r\n"
    "Content-ID: <response-item-1>\r\n"
    "\r\n"
    "HTTP/1.1 404 Not Found\r\n"
    "\r\n"
    "{}\r\n"
    "--batch_xyz\r\n"
    "Content-Type: application/http\r\n"
    "Content-ID: <response-item-9>\r\n"
    "\r\n"
    "HTTP/1.1 200 OK\r\n"
    "\r\n"
    "{}\r\n"
    "--batch_xyz--\r\n";

static void test_parse(void **state)
{
    (void)state;
    gmail_part parts[4];
    char *error = NULL;
    assert_int_equal(gmail_multipart_parse("multipart/mixed; boundary=batch_xyz", answer,
                                           strlen(answer), parts, 4, &error),
                     0);
    assert_true(parts[0].present);
    assert_int_equal(parts[0].status, 200);
    assert_int_equal(parts[0].body_len, 11);
    assert_memory_equal(parts[0].body, "{\"id\":\"a\"}\n", 11);
    assert_true(parts[1].present);
    assert_int_equal(parts[1].status, 404);
    assert_int_equal(parts[1].body_len, 2);
    assert_true(parts[2].present);
    assert_int_equal(parts[2].status, 429);
    assert_int_equal(parts[2].retry_after_ms, 7000);
    assert_memory_equal(parts[2].body, "{\"error\":{\"code\":429}}", parts[2].body_len);
    /* item 3 had no part; item 9 is beyond the batch and ignored */
    assert_false(parts[3].present);

    /* Quoted boundary, LF line ends. */
    static const char lf[] = "--q\nContent-ID: <response-item-0>\n\nHTTP/1.1 200 OK\n\n{}\n--q--\n";
    assert_int_equal(gmail_multipart_parse("multipart/mixed; boundary=\"q\"", lf, strlen(lf),
                                           parts, 1, NULL),
                     0);
    assert_true(parts[0].present);
    assert_int_equal(parts[0].status, 200);
    assert_int_equal(parts[0].body_len, 2);
}

static void test_parse_errors(void **state)
{
    (void)state;
    gmail_part parts[1];
    static const char *const types[] = {"application/json", "multipart/mixed",
                                        "multipart/mixed; boundary=", NULL};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char *error = NULL;
        assert_int_equal(gmail_multipart_parse(types[i], answer, strlen(answer), parts, 1,
                                               &error),
                         -1);
        assert_non_null(error);
        free(error);
    }
    /* A boundary that never occurs: no parts, an error. */
    char *error = NULL;
    assert_int_equal(gmail_multipart_parse("multipart/mixed; boundary=zz", answer,
                                           strlen(answer), parts, 1, &error),
                     -1);
    free(error);
    /* A truncated answer gives what it has, never reads past the end. */
    size_t cut = strlen(answer) / 2;
    char *half = malloc(cut);
    memcpy(half, answer, cut);
    gmail_part two[3];
    assert_int_equal(gmail_multipart_parse("multipart/mixed; boundary=batch_xyz", half, cut,
                                           two, 3, NULL),
                     0);
    assert_true(two[2].present);
    free(half);
}

static void test_header_value(void **state)
{
    (void)state;
    static const char block[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                                "content-type:  multipart/mixed; boundary=a \r\n"
                                "X-Other: 1\r\nContent-Type: multipart/mixed; boundary=b\r\n";
    char out[64];
    assert_int_equal(gmail_header_value(block, strlen(block), "Content-Type", out, sizeof out), 0);
    assert_string_equal(out, "multipart/mixed; boundary=b"); /* the last one */
    assert_int_equal(gmail_header_value(block, strlen(block), "Retry-After", out, sizeof out), -1);
    char small[5];
    assert_int_equal(gmail_header_value(block, strlen(block), "X-Other", small, sizeof small), 0);
    assert_string_equal(small, "1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_header_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

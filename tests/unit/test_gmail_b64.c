/* Unit tests of the base64 decoder of the Gmail push library
 * (plugins/gmail/gmail_b64): both alphabets and what each mode accepts,
 * refused shapes, the capacity bound, and a long random round trip across
 * the decoder's internal block boundary against OpenSSL's encoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "gmail_b64.h"

typedef struct {
    const char *in;
    gmail_b64_alphabet alphabet;
    const char *want; /* NULL: refused */
} b64_case;

static const b64_case cases[] = {
    {"YQ", GMAIL_B64_URL, "a"},
    {"YWI", GMAIL_B64_URL, "ab"},
    {"YWJj", GMAIL_B64_URL, "abc"},
    {"YQ==", GMAIL_B64_URL, NULL}, /* JWS parts carry no padding */
    {"YQ==", GMAIL_B64_EITHER, "a"},
    {"YQ", GMAIL_B64_EITHER, "a"},
    {"YQ=", GMAIL_B64_EITHER, NULL}, /* padding that does not complete a quantum */
    {"YWJj====", GMAIL_B64_EITHER, NULL},
    {"Y", GMAIL_B64_EITHER, NULL}, /* len % 4 == 1: no encoder writes that */
    {"", GMAIL_B64_EITHER, NULL},
    {"P_8-", GMAIL_B64_URL, "?\xff>"},
    {"P/8+", GMAIL_B64_URL, NULL}, /* standard alphabet in a JWS part */
    {"P/8+", GMAIL_B64_EITHER, "?\xff>"},
    {"P/8-", GMAIL_B64_EITHER, NULL},  /* mixed alphabets */
    {"YW Jj", GMAIL_B64_EITHER, NULL}, /* whitespace */
    {"YWJj\n", GMAIL_B64_EITHER, NULL},
    {"YW=j", GMAIL_B64_EITHER, NULL}, /* padding inside */
    {"YWJ!", GMAIL_B64_EITHER, NULL},
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char out[16];
        size_t n = 99;
        bool ok = gmail_b64_decode(cases[i].in, strlen(cases[i].in), cases[i].alphabet,
                                   out, sizeof(out), &n);
        if (ok != (cases[i].want != NULL))
            fail_msg("\"%s\" (mode %d): %s", cases[i].in, (int)cases[i].alphabet,
                     ok ? "accepted" : "refused");
        if (ok) {
            assert_int_equal(n, strlen(cases[i].want));
            assert_memory_equal(out, cases[i].want, n);
        } else {
            assert_int_equal(n, 0);
        }
    }
    /* Exactly enough room is enough; one byte less is refused. */
    unsigned char out[3];
    size_t n = 0;
    assert_true(gmail_b64_decode("YWJj", 4, GMAIL_B64_URL, out, 3, &n));
    assert_false(gmail_b64_decode("YWJj", 4, GMAIL_B64_URL, out, 2, &n));
    assert_false(gmail_b64_decode(NULL, 0, GMAIL_B64_URL, out, 3, &n));
}

/* Random data of lengths around the 4096-character block, encoded by
 * OpenSSL, decodes back in both alphabets with and without padding. */
static void test_round_trip(void **state)
{
    (void)state;
    static const size_t lens[] = {1, 2, 3, 3071, 3072, 3073, 3074, 6144, 100000};
    for (size_t t = 0; t < sizeof(lens) / sizeof(lens[0]); t++) {
        size_t len = lens[t];
        unsigned char *data = malloc(len);
        assert_int_equal(RAND_bytes(data, (int)len), 1);
        char *enc = malloc(4 * ((len + 2) / 3) + 1);
        int elen = EVP_EncodeBlock((unsigned char *)enc, data, (int)len);
        unsigned char *out = malloc(GMAIL_B64_DECODED_MAX((size_t)elen));
        size_t n = 0;
        assert_true(gmail_b64_decode(enc, (size_t)elen, GMAIL_B64_EITHER, out,
                                     GMAIL_B64_DECODED_MAX((size_t)elen), &n));
        assert_int_equal(n, len);
        assert_memory_equal(out, data, len);
        /* URL-safe, unpadded. */
        size_t ulen = (size_t)elen;
        while (ulen > 0 && enc[ulen - 1] == '=')
            ulen--;
        for (size_t i = 0; i < ulen; i++)
            enc[i] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i];
        assert_true(gmail_b64_decode(enc, ulen, GMAIL_B64_URL, out, len, &n));
        assert_int_equal(n, len);
        assert_memory_equal(out, data, len);
        free(out);
        free(enc);
        free(data);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * EmailEngine's webhook signature (providers.md §5): X-EE-Wh-Signature is
 * base64url, unpadded, of HMAC-SHA256(key = serviceSecret, msg = the raw
 * body bytes). Checked on the exact bytes received, before any parsing.
 *
 * No state, no allocation; safe on any thread.
 */
#ifndef EE_SIG_H
#define EE_SIG_H

#include <stddef.h>
#include <stdint.h>

/* base64url of a 32-byte MAC, unpadded. */
#define EE_SIG_LEN 43

typedef enum ee_sig_result {
    EE_SIG_OK = 0,
    EE_SIG_MISSING = 1, /* no header, or an empty one: unsigned            */
    EE_SIG_BAD = 2,     /* present but not the MAC of this body: forged    */
} ee_sig_result;

/* Compute the signature of `body` into out[EE_SIG_LEN + 1] (NUL-ended).
 * Returns 0, or -1 if OpenSSL fails (out is then empty). */
int ee_sig_compute(const uint8_t *key, size_t key_len, const uint8_t *body, size_t body_len,
                   char out[EE_SIG_LEN + 1]);

/* Verify `header` (NULL: missing) against the body. The comparison takes
 * the same time wherever the strings differ (CRYPTO_memcmp); only the
 * header's length, which is public, decides early. */
ee_sig_result ee_sig_verify(const uint8_t *key, size_t key_len, const uint8_t *body,
                            size_t body_len, const char *header);

#endif

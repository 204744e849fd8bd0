/*
 * Base64 decoding for the Gmail push path (JWT parts, JWKS key numbers,
 * the Pub/Sub envelope's data), on top of OpenSSL's EVP_DecodeBlock.
 *
 * Contract: pure functions, no allocation, no global state; safe from any
 * thread. Input of any length, need not be NUL-terminated.
 */
#ifndef GMAIL_B64_H
#define GMAIL_B64_H

#include <stdbool.h>
#include <stddef.h>

/* Which alphabets a decode accepts. */
typedef enum {
    /* RFC 4648 §5 ("-_"), no padding: JWS compact parts (RFC 7515 §2). */
    GMAIL_B64_URL,
    /* "+/" or "-_" (not mixed), padding optional: Pub/Sub bytes fields. */
    GMAIL_B64_EITHER
} gmail_b64_alphabet;

/* Largest output gmail_b64_decode can produce for `len` input bytes. */
#define GMAIL_B64_DECODED_MAX(len) (3 * (((len) + 3) / 4))

/*
 * Decode `in[0..len)` into `out` (capacity `cap`). Returns true and sets
 * *out_len_r; false if the text is empty, holds a byte outside the chosen
 * alphabet (whitespace included), has a length no encoding produces
 * (len % 4 == 1), misplaced padding, or would not fit in `cap`.
 */
bool gmail_b64_decode(const char *in, size_t len, gmail_b64_alphabet alphabet,
                      unsigned char *out, size_t cap, size_t *out_len_r);

#endif

/*
 * Base64 without hand-written decoding: the text is checked against the
 * alphabet, mapped to the standard one and re-padded, then OpenSSL's
 * EVP_DecodeBlock does the work. EVP_DecodeBlock neither accepts the URL
 * alphabet nor strips what the padding stands for, hence the mapping and
 * the length correction here.
 *
 * JWS parts are base64url without padding (RFC 7515 §2); Pub/Sub's JSON
 * "data" is a proto3 bytes field, which Google writes in standard base64
 * with padding but documents both alphabets as accepted
 * (../shared/reference/providers.md §2.1 calls it base64url), so the
 * envelope accepts either.
 */
#include "gmail_b64.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Large enough for any input this library decodes: tokens are capped at
 * 8 KiB and envelope data at 8 KiB by their callers. */
#define B64_STACK_MAX 16384

static int classify(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 0; /* shared by both alphabets */
    if (c == '+' || c == '/')
        return 1; /* standard only */
    if (c == '-' || c == '_')
        return 2; /* URL-safe only */
    return -1;
}

bool gmail_b64_decode(const char *in, size_t len, gmail_b64_alphabet alphabet,
                      unsigned char *out, size_t cap, size_t *out_len_r)
{
    *out_len_r = 0;
    size_t body = len;
    if (alphabet == GMAIL_B64_EITHER) {
        /* Padding only at the end and only as much as completes a quantum. */
        while (body > 0 && in[body - 1] == '=' && len - body < 2)
            body--;
        if (body != len && len % 4 != 0)
            return false;
    }
    if (body == 0 || body % 4 == 1 || body + 3 > B64_STACK_MAX)
        return false;
    int seen = 0;
    for (size_t i = 0; i < body; i++) {
        int k = classify((unsigned char)in[i]);
        if (k < 0 || (k == 1 && alphabet == GMAIL_B64_URL))
            return false;
        if (k > 0) {
            if (seen != 0 && seen != k)
                return false; /* mixed alphabets: not something an encoder writes */
            seen = k;
        }
    }
    size_t pad = (4 - body % 4) % 4;
    size_t decoded = 3 * ((body + pad) / 4) - pad;
    if (decoded > cap)
        return false;

    unsigned char text[B64_STACK_MAX];
    for (size_t i = 0; i < body; i++) {
        char c = in[i];
        text[i] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
    }
    memset(text + body, '=', pad);
    unsigned char buf[GMAIL_B64_DECODED_MAX(B64_STACK_MAX)];
    int n = EVP_DecodeBlock(buf, text, (int)(body + pad));
    if (n < 0 || (size_t)n != decoded + pad)
        return false;
    memcpy(out, buf, decoded);
    *out_len_r = decoded;
    return true;
}

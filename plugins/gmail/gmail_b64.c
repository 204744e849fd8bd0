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

#include <string.h>

#include <openssl/evp.h>

/* Input is decoded in blocks of this many characters (a multiple of 4),
 * so any length works with small stack buffers: the driver can use the
 * same function for format=raw messages of many megabytes. */
#define BLOCK 4096

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
    if (!in)
        return false;
    size_t body = len;
    if (alphabet == GMAIL_B64_EITHER) {
        /* Padding only at the end and only as much as completes a quantum. */
        while (body > 0 && in[body - 1] == '=' && len - body < 2)
            body--;
        if (body != len && len % 4 != 0)
            return false;
    }
    if (body == 0 || body % 4 == 1)
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

    unsigned char text[BLOCK];
    unsigned char bin[3 * BLOCK / 4];
    size_t done_in = 0, done_out = 0;
    while (done_in < body) {
        size_t chunk = body - done_in < BLOCK ? body - done_in : BLOCK;
        bool last = done_in + chunk == body;
        for (size_t i = 0; i < chunk; i++) {
            char c = in[done_in + i];
            text[i] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
        }
        size_t text_len = chunk;
        if (last) {
            /* chunk + pad <= BLOCK: a full block is a multiple of 4 (no pad). */
            memset(text + chunk, '=', pad);
            text_len += pad;
        }
        int n = EVP_DecodeBlock(bin, text, (int)text_len);
        if (n < 0 || (size_t)n != 3 * text_len / 4)
            return false;
        /* EVP_DecodeBlock counts the zero bytes the padding stands for. */
        size_t useful = (size_t)n - (last ? pad : 0);
        memcpy(out + done_out, bin, useful);
        done_out += useful;
        done_in += chunk;
    }
    *out_len_r = done_out;
    return true;
}

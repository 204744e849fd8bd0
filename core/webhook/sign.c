/* Standard Webhooks signing: HMAC-SHA256 over "<id>.<timestamp>.<body>",
 * base64-encoded behind the "v1," version tag. */
#include "webhook/webhook.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#define MAX_ID 200

int mpw_sign(const uint8_t *key, size_t key_len, const char *id, int64_t timestamp,
             const char *body, size_t body_len, char *out, size_t size)
{
    char ts[24];
    int ts_len = snprintf(ts, sizeof ts, "%lld", (long long)timestamp);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    int ok = 0;
    if (size < MPW_SIGNATURE_SIZE || key_len == 0)
        return -1;
    /* Streaming the three parts avoids copying the body once more. */
    EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = alg != NULL ? EVP_MAC_CTX_new(alg) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (ctx != NULL && EVP_MAC_init(ctx, key, key_len, params) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)ts_len) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)body, body_len) == 1 &&
        EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) == 1 && mac_len == 32)
        ok = 1;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(alg);
    if (!ok)
        return -1;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mac_len);
    return 0;
}

void mpw_message_id(const char *idem_key, int64_t seq, char *out, size_t size)
{
    size_t n = idem_key != NULL ? strlen(idem_key) : 0;
    int plain = n > 0 && n <= MAX_ID && n < size;
    for (size_t i = 0; plain && i < n; i++)
        if ((unsigned char)idem_key[i] <= 0x20 || (unsigned char)idem_key[i] >= 0x7f)
            plain = 0;
    /* Header values must stay plain; the seq is unique just the same. */
    if (plain)
        memcpy(out, idem_key, n + 1);
    else
        snprintf(out, size, "evt_%lld", (long long)seq);
}

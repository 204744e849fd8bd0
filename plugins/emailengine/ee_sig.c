/*
 * The webhook signature check (ee_sig.h). OpenSSL does the MAC (EVP_Q_mac)
 * and the base64 (EVP_EncodeBlock); base64url is then two substitutions
 * and no padding, as Node's digest('base64url') writes it.
 */
#include "ee_sig.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

int ee_sig_compute(const uint8_t *key, size_t key_len, const uint8_t *body, size_t body_len,
                   char out[EE_SIG_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    out[0] = '\0';
    /* A zero-length key is legal HMAC but EVP wants a non-NULL pointer. */
    static const uint8_t empty[1] = {0};
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key_len ? key : empty, key_len,
                  body_len ? body : empty, body_len, mac, sizeof mac, &mac_len) == NULL ||
        mac_len != 32)
        return -1;
    unsigned char b64[48];
    int n = EVP_EncodeBlock(b64, mac, (int)mac_len); /* 44 chars, one '=' */
    OPENSSL_cleanse(mac, sizeof mac);
    if (n != 44)
        return -1;
    for (int i = 0; i < EE_SIG_LEN; i++) {
        char c = (char)b64[i];
        out[i] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[EE_SIG_LEN] = '\0';
    return 0;
}

ee_sig_result ee_sig_verify(const uint8_t *key, size_t key_len, const uint8_t *body,
                            size_t body_len, const char *header)
{
    if (header == NULL || header[0] == '\0')
        return EE_SIG_MISSING;
    if (strlen(header) != EE_SIG_LEN)
        return EE_SIG_BAD;
    char want[EE_SIG_LEN + 1];
    if (ee_sig_compute(key, key_len, body, body_len, want) < 0)
        return EE_SIG_BAD;
    int diff = CRYPTO_memcmp(want, header, EE_SIG_LEN);
    OPENSSL_cleanse(want, sizeof want);
    return diff == 0 ? EE_SIG_OK : EE_SIG_BAD;
}

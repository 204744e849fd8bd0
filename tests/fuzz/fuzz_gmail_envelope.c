/* libFuzzer target: the Gmail Pub/Sub push envelope parser and the
 * messageId dedupe set. An accepted envelope must satisfy what the header
 * promises (non-empty bounded id, canonical decimal historyId matching its
 * number, an address with "@"); an id just added must then be found. The
 * input is parsed as given and, from its second byte on, also with its
 * base64 "data" rebuilt from the raw bytes, so the inner JSON is reached
 * without the fuzzer having to discover base64 first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "fuzz_target.h"
#include "gmail_dedupe.h"
#include "gmail_envelope.h"

static gmail_dedupe *seen;

static void check(const char *body, size_t len)
{
    gmail_envelope env;
    char err[256];
    if (gmail_envelope_parse(body, len, &env, err, sizeof(err)) != 0) {
        FUZZ_ASSERT(strncmp(err, "push envelope: ", 15) == 0);
        FUZZ_ASSERT(env.message_id[0] == '\0' && env.email[0] == '\0');
        return;
    }
    size_t id_len = strlen(env.message_id);
    FUZZ_ASSERT(id_len > 0 && id_len <= GMAIL_ENV_ID_MAX);
    FUZZ_ASSERT(strchr(env.email, '@') != NULL);
    char canon[32];
    snprintf(canon, sizeof(canon), "%llu", (unsigned long long)env.history_id_num);
    FUZZ_ASSERT(strcmp(canon, env.history_id) == 0);
    if (gmail_dedupe_add(seen, env.message_id) >= 0)
        FUZZ_ASSERT(gmail_dedupe_contains(seen, env.message_id));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!seen)
        seen = gmail_dedupe_new(64);
    if (size > 70000)
        return 0;
    check((const char *)data, size);
    if (size < 2 || size > 4000)
        return 0;
    /* The bytes after the first as message.data's decoded JSON; the first
     * byte picks the envelope's spelling. */
    char b64[5400 + 4];
    int n = EVP_EncodeBlock((unsigned char *)b64, data + 1, (int)(size - 1));
    char body[5600];
    int blen;
    if (data[0] & 1)
        blen = snprintf(body, sizeof(body),
                        "{\"message\":{\"data\":\"%.*s\",\"message_id\":\"%u\"}}", n, b64,
                        (unsigned)data[0]);
    else
        blen = snprintf(body, sizeof(body),
                        "{\"message\":{\"data\":\"%.*s\",\"messageId\":\"%u\","
                        "\"publishTime\":\"t\"},\"subscription\":\"s\"}",
                        n, b64, (unsigned)data[0]);
    if (blen > 0 && (size_t)blen < sizeof(body))
        check(body, (size_t)blen);
    return 0;
}

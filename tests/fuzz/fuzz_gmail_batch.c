/* libFuzzer target: the parser of Gmail batch answers (multipart/mixed
 * from the batch endpoint, untrusted bytes from the network). The input is
 * the body; the boundary is fixed, as a Content-Type header would give it.
 * The buffer is copied into an allocation of exactly its size (not NUL-
 * terminated, as a response body is), so any read past the end is caught.
 * Properties: a failure says why; every part found points inside the
 * body and its status has at most three digits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "../../plugins/gmail/gmail_multipart.c"

#define ITEMS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size > 0 ? size : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data, size);
    gmail_part parts[ITEMS];
    char *error = NULL;
    int rc = gmail_multipart_parse("multipart/mixed; boundary=batch_b", body, size, parts,
                                   ITEMS, &error);
    FUZZ_ASSERT(rc == 0 || (rc == -1 && error != NULL));
    for (size_t i = 0; i < ITEMS; i++) {
        if (!parts[i].present)
            continue;
        FUZZ_ASSERT(parts[i].status >= 0 && parts[i].status <= 999);
        FUZZ_ASSERT(parts[i].body >= body && parts[i].body <= body + size);
        FUZZ_ASSERT(parts[i].body_len <= (size_t)(body + size - parts[i].body));
    }
    free(error);
    free(body);
    return 0;
}

/* libFuzzer target: the SSE stream parser of mailpulsectl, fed the input
 * in two chunks split at a position taken from the first byte, so chunk
 * boundaries inside fields, line ends and multi-byte sequences are explored
 * as well as the content. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fuzz_target.h"

static int on_event(const mpctl_sse_event *ev, void *ctx)
{
    size_t *count = ctx;
    (*count)++;
    /* Documented: id is "" when none was seen, type defaults to "message". */
    FUZZ_ASSERT(ev->id != NULL && ev->type != NULL && ev->type[0] != '\0');
    /* Touch every field so a dangling pointer shows up under ASan. */
    if (ev->id != NULL)
        (void)strlen(ev->id);
    if (ev->type != NULL)
        (void)strlen(ev->type);
    if (ev->data != NULL && ev->data_len > 0)
        (void)ev->data[ev->data_len - 1];
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = data[0] % size;
    size_t count = 0;
    mpctl_sse *p = mpctl_sse_new(on_event, &count);
    mpctl_sse_feed(p, (const char *)data + 1, split > 0 ? split - 1 : 0);
    mpctl_sse_feed(p, (const char *)data + (split > 0 ? split : 1),
                   size - (split > 0 ? split : 1));
    (void)mpctl_sse_last_id(p);
    mpctl_sse_reset(p);
    mpctl_sse_free(&p);
    return 0;
}

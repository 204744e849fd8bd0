/* libFuzzer target: summary fields read from a raw message header
 * (imap_header_envelope), the path every message takes when bodies are
 * fetched during sync. The input is a whole message as a server would send
 * it in BODY[]; the header parse must stay within it, and what it returns
 * must hold the properties consumers rely on. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_client.h"
#include "fuzz_target.h"

/* Folded lines are joined and bare CRs and LFs dropped before anything is
 * decoded, so fields that are never decoded are single lines. */
static void single_line(const char *s)
{
    if (s != NULL)
        FUZZ_ASSERT(strpbrk(s, "\r\n") == NULL);
}

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    char *raw = malloc(size > 0 ? size : 1);
    if (size > 0)
        memcpy(raw, data, size);
    imap_arena *a = imap_arena_new();
    imap_envelope e, again;
    FUZZ_ASSERT(imap_header_envelope(raw, size, a, &e) == 0);
    single_line(e.date);
    single_line(e.message_id);
    single_line(e.in_reply_to);
    if (e.date != NULL)
        (void)imap_parse_rfc5322_date(e.date);
    /* Deterministic: the same bytes give the same summary. */
    FUZZ_ASSERT(imap_header_envelope(raw, size, a, &again) == 0);
    FUZZ_ASSERT(same(e.subject, again.subject) && same(e.from, again.from) &&
                same(e.to, again.to) && same(e.message_id, again.message_id) &&
                same(e.date, again.date) && same(e.in_reply_to, again.in_reply_to));
    imap_arena_free(&a);
    free(raw);
    return 0;
}

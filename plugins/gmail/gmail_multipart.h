/*
 * gmail_multipart: the wire format of Gmail's batch endpoint
 * (POST {api_url}/batch/gmail/v1, providers.md §2 "Batch").
 *
 * The request is multipart/mixed, one application/http part per call,
 * each with a Content-ID; the answer is multipart/mixed again, one part per
 * call with Content-ID "<response-ID>" and its own HTTP status line,
 * headers and body, in any order. Pure: no host, no network.
 */
#ifndef GMAIL_MULTIPART_H
#define GMAIL_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

/* Google's documented ceiling is 100; more than 50 is "not recommended". */
#define GMAIL_BATCH_MAX 50

/* The body of a batch of `n` GET requests to `targets` (origin-form,
 * "/gmail/v1/users/me/messages/ID?format=metadata"), parts named
 * "<item-0>" .. "<item-n-1>", delimited by `boundary` (1..70 characters of
 * [A-Za-z0-9_]). malloc'd, length in *len_r. */
char *gmail_multipart_build(const char *boundary, const char *const *targets, size_t n,
                            size_t *len_r);

/* One call's answer inside a batch answer. `body` points into the parsed
 * buffer (not NUL-terminated). */
typedef struct gmail_part {
    int present;             /* an answer for this item was found          */
    long status;             /* its HTTP status                            */
    uint32_t retry_after_ms; /* its Retry-After (seconds form), 0 if none  */
    const char *body;
    size_t body_len;
} gmail_part;

/* Parse a batch answer of Content-Type `content_type` into parts[0..n-1]
 * (zeroed first) by their Content-ID. Returns 0, or -1 with *error_r
 * (malloc'd) when the answer is not a multipart/mixed with a boundary. Parts
 * for unknown ids are ignored; items without a part stay !present. */
int gmail_multipart_parse(const char *content_type, const char *body, size_t len,
                          gmail_part *parts, size_t n, char **error_r);

/* The value of header `name` in a raw header block ("Name: value\r\n"...),
 * the last occurrence (after redirects or 100-continue), trimmed, copied to
 * out (cap bytes). Returns 0, or -1 when absent. */
int gmail_header_value(const char *block, size_t len, const char *name, char *out,
                       size_t cap);

#endif /* GMAIL_MULTIPART_H */

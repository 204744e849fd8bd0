/*
 * The JSON body Pub/Sub POSTs to a push endpoint, reduced to what the
 * Gmail driver needs (../shared/reference/providers.md §2.1):
 *
 *   {"message": {"data": base64({"emailAddress": .., "historyId": ..}),
 *                "messageId" | "message_id": ..,
 *                "publishTime" | "publish_time": ..,
 *                "attributes": {..}},
 *    "subscription": ..}
 *
 * Call it only after gmail_oidc_verify() accepted the request's token.
 *
 * Accepted: both spellings of messageId and publishTime (push deliveries
 * carry both; if both are present they must agree), data in standard or
 * URL-safe base64 with or without padding, historyId as a JSON string of
 * digits or a JSON integer. Refused (the driver answers 400): a body over
 * GMAIL_ENV_BODY_MAX, anything that is not that shape, a field of the
 * wrong type, a value over its bound, a historyId that is negative, not an
 * integer, longer than 20 digits or above 2^64-1.
 *
 * Threads: reentrant, no I/O, no global state. Ownership: everything is
 * copied into the caller's gmail_envelope; nothing to free.
 */
#ifndef GMAIL_ENVELOPE_H
#define GMAIL_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

/* Bounds: a Gmail notification is a few hundred bytes. */
#define GMAIL_ENV_BODY_MAX (64 * 1024)
#define GMAIL_ENV_DATA_MAX 8192     /* base64 text of message.data */
#define GMAIL_ENV_ID_MAX 128        /* Pub/Sub messageId (decimal, ~16 digits today) */
#define GMAIL_ENV_EMAIL_MAX 320     /* RFC 5321 §4.5.3.1 */
#define GMAIL_ENV_HISTORY_ID_MAX 20 /* digits in 2^64-1 */

typedef struct {
    /* Pub/Sub messageId, non-empty; use it only for dedupe. */
    char message_id[GMAIL_ENV_ID_MAX + 1];
    /* publishTime as sent (RFC 3339), "" if absent. */
    char publish_time[64];
    /* "projects/P/subscriptions/S", "" if absent. */
    char subscription[512];
    /* data.emailAddress, non-empty, as sent. */
    char email[GMAIL_ENV_EMAIL_MAX + 1];
    /* data.historyId in canonical decimal (no sign, no leading zeros)... */
    char history_id[GMAIL_ENV_HISTORY_ID_MAX + 1];
    /* ...and the same value for numeric comparison. */
    uint64_t history_id_num;
} gmail_envelope;

/*
 * Parse `len` bytes of `body` (need not be NUL-terminated) into *env_r.
 * Returns 0, or -1 with one line in err (may be NULL) saying what is wrong;
 * *env_r is zeroed on failure. The text never quotes the body.
 */
int gmail_envelope_parse(const char *body, size_t len, gmail_envelope *env_r, char *err,
                         size_t err_len);

#endif

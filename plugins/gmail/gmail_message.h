/*
 * gmail_message: a Gmail Message resource (format=metadata or minimal) as
 * the summary fields of a change. Pure: no host.
 */
#ifndef GMAIL_MESSAGE_H
#define GMAIL_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

/* The headers asked for with format=metadata. */
#define GMAIL_METADATA_HEADERS                                                 \
    "metadataHeaders=Subject&metadataHeaders=From&metadataHeaders=To"          \
    "&metadataHeaders=Date&metadataHeaders=Message-ID"

typedef struct gmail_msg {
    char *id;
    char *thread_id;
    char *message_id; /* without < >, NULL if absent                     */
    char *subject;    /* decoded UTF-8 (RFC 2047 words decoded)         */
    char *from;
    char *to;
    int64_t date;     /* internalDate in Unix seconds, 0 if absent       */
    int64_t size;     /* sizeEstimate, -1 if absent                      */
    char **label_ids;
    size_t n_labels;
    uint8_t *raw;     /* the message itself (sync.fetch_bodies), malloc'd */
    size_t raw_len;
} gmail_msg;

/* Parse a Message resource. Returns 0, or -1 with *error_r (malloc'd). */
int gmail_msg_parse(gmail_msg *m, const char *json, size_t len, char **error_r);
void gmail_msg_clear(gmail_msg *m);

/* RFC 2047 encoded-words in `s` decoded to UTF-8 (malloc'd); text that is
 * not a valid encoded-word stays as it is. */
char *gmail_decode_words(const char *s);

#endif /* GMAIL_MESSAGE_H */

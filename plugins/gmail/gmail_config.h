/*
 * gmail_config: checks of gmail.so's configuration values that need no
 * host (URL policy, push mode, Pub/Sub resource names). Each returns 0 or
 * -1 with a reason in `why` (no secrets: only the key's own value).
 */
#ifndef GMAIL_CONFIG_H
#define GMAIL_CONFIG_H

#include <stddef.h>

typedef enum gmail_push_mode {
    GMAIL_PUSH_OFF = 0,
    GMAIL_PUSH_PUBSUB_PUSH = 1,
    GMAIL_PUSH_PUBSUB_PULL = 2,
} gmail_push_mode;

/* `url` must be https://, or http:// to a loopback host (127.0.0.1, ::1,
 * localhost) for tests and local stand-ins; no userinfo, no query or
 * fragment. On success *path_r (may be NULL) receives the malloc'd path
 * part without trailing '/' ("" for none). */
int gmail_url_check(const char *url, char **path_r, char *why, size_t why_len);

/* "pubsub-push" | "pubsub-pull" | "off". */
int gmail_push_mode_parse(const char *s, gmail_push_mode *mode_r);

/* "projects/P/topics/T" (kind "topics") or "projects/P/subscriptions/S". */
int gmail_pubsub_name_check(const char *name, const char *kind);

#endif /* GMAIL_CONFIG_H */

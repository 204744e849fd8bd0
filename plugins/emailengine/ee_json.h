/*
 * EmailEngine's REST answers as plain structs (emailengine-api.md §1-4):
 * the mailbox list, one page of a message listing, an account's state and
 * the Boom error body. Parsers take the raw body and never trust a field's
 * type: a wrong type is an error, an optional field absent is a default.
 *
 * Ownership: the structs own their strings; free with the matching _clear.
 * No state; any thread.
 */
#ifndef EE_JSON_H
#define EE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

typedef struct ee_mailbox {
    char *path;
    mp_folder_role role;
    int64_t messages; /* -1: EE sent false (unknown)                      */
    int64_t uid_next; /* -1: unknown                                      */
} ee_mailbox;

typedef struct ee_mailboxes {
    ee_mailbox *v;
    size_t n;
} ee_mailboxes;

typedef struct ee_msg {
    char *id;         /* EE's 11-char id                                  */
    uint32_t uid;
    char *flags;      /* normalized: sorted, space-separated, "" for none */
    char *message_id; /* without < >                                      */
    char *subject;
    char *from;       /* "Name <addr>" or addr                             */
    char *to;         /* comma-separated addresses                        */
    char *thread_id;
    int64_t date;     /* Unix seconds, 0 unknown                           */
    int64_t size;     /* -1 unknown                                        */
} ee_msg;

typedef struct ee_page {
    ee_msg *v;
    size_t n;
    int64_t total;    /* EXISTS when the page was served                   */
    int64_t page;
    int64_t pages;
} ee_page;

/* GET /v1/account/{a}/mailboxes. -1 with why on a malformed answer. */
int ee_mailboxes_parse(const char *body, size_t len, ee_mailboxes *out, char *why,
                       size_t why_len);
void ee_mailboxes_clear(ee_mailboxes *m);
/* The entry for `path`, or NULL. */
const ee_mailbox *ee_mailboxes_find(const ee_mailboxes *m, const char *path);

/* GET /v1/account/{a}/messages. Entries EE marks failed ({uid, status:
 * "failed"}) and entries without an id or uid are left out. */
int ee_page_parse(const char *body, size_t len, ee_page *out, char *why, size_t why_len);
void ee_page_clear(ee_page *p);

/* GET /v1/account/{a}: the `state` (copied into state[cap]) and the
 * lastError's `response` text, if any (into detail[dcap], "" if none). */
int ee_account_parse(const char *body, size_t len, char *state, size_t cap, char *detail,
                     size_t dcap, char *why, size_t why_len);

/* Boom error body: `code` and `state` (each "" when absent) and the
 * message text. Never fails: a body that is not Boom leaves all "". */
void ee_error_parse(const char *body, size_t len, char *code, size_t ccap, char *state,
                    size_t scap, char *msg, size_t mcap);

/* The 32-bit mailbox registry number in an IMAP message id (the first
 * four of the eight bytes its unpadded base64url holds): it changes with
 * the folder's UIDVALIDITY. -1 when `id` is not such an id (Gmail API or
 * Graph accounts). */
int64_t ee_id_registry(const char *id);

/* ISO 8601 ("2024-01-02T03:04:05.000Z", or with an offset) to Unix
 * seconds; 0 when unparsable. */
int64_t ee_parse_date(const char *s);

/* The special-use attribute ("\\Inbox", "\\Sent"...) as a role. */
mp_folder_role ee_role_of(const char *special_use);

#endif

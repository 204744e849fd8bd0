/*
 * graph_json: Microsoft Graph answers as C values. Pure (jansson, no host):
 * message summaries, delta and list pages, mail folder pages, JSON $batch
 * answers, OData error bodies and the DateTimeOffset text Graph uses.
 *
 * Wire formats (providers.md §3, learn.microsoft.com/graph):
 *  - a page: {"value":[...], "@odata.nextLink":"...", "@odata.deltaLink":"..."}
 *  - a removed delta item: {"id":"...", "@removed":{"reason":"deleted"}}
 *  - a message (summary fields asked for with GRAPH_SELECT): receivedDateTime
 *    "2026-12-07T01:00:00Z", from/toRecipients {"emailAddress":{"name",
 *    "address"}}, flag {"flagStatus":"flagged"|"notFlagged"|"complete"}
 *  - $batch answer: {"responses":[{"id":"0","status":200,"headers":{...},
 *    "body":{...}}]}, in any order
 *  - error: {"error":{"code":"SyncStateNotFound","message":"..."}} or
 *    OAuth's {"error":"invalid_grant","error_description":"..."}
 *
 * Every parser returns 0, or -1 with a malloc'd reason in *error_r that
 * quotes nothing from the input but its shape.
 */
#ifndef GRAPH_JSON_H
#define GRAPH_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The summary fields asked for on every message read ($select). */
#define GRAPH_SELECT                                                           \
    "id,subject,from,toRecipients,receivedDateTime,isRead,isDraft,flag,"       \
    "hasAttachments,internetMessageId,parentFolderId,conversationId"

/* Summary fields a message came back without (the key absent, which is not
 * the same as null: a draft's null `from` is complete). */
#define GRAPH_MISSING_RECEIVED 0x1u
#define GRAPH_MISSING_SUBJECT 0x2u
#define GRAPH_MISSING_FROM 0x4u
#define GRAPH_MISSING_READ 0x8u
#define GRAPH_MISSING_FOLDER 0x10u

typedef struct graph_msg {
    char *id;
    char *subject;    /* NULL when null or absent                        */
    char *from;       /* "Name <addr>" or "addr", NULL when none         */
    char *to;         /* comma-separated, NULL when none                 */
    char *message_id; /* internetMessageId without < >                   */
    char *thread_id;  /* conversationId                                  */
    char *parent_id;  /* parentFolderId                                  */
    int64_t received; /* Unix seconds, 0 when unknown                    */
    int is_read;      /* 0/1, -1 unknown                                 */
    int flagged;      /* 0/1                                             */
    int draft;        /* 0/1                                             */
    int removed;      /* a delta item with "@removed"                    */
    unsigned missing; /* GRAPH_MISSING_* of the selected fields          */
} graph_msg;

/* A page of messages (list or delta). */
typedef struct graph_page {
    graph_msg *v;
    size_t n;
    char *next_link;  /* @odata.nextLink or NULL                         */
    char *delta_link; /* @odata.deltaLink or NULL                        */
} graph_page;

/* A mailFolder as listed. */
typedef struct graph_folder_item {
    char *id;
    char *name;          /* displayName                                  */
    int64_t child_count; /* childFolderCount (-1 absent: ask anyway)     */
} graph_folder_item;

typedef struct graph_folder_page {
    graph_folder_item *v;
    size_t n;
    char *next_link;
} graph_folder_page;

/* One answer of a $batch; body is owned (json_decref), NULL when none. */
typedef struct graph_part {
    int present;
    long status;
    uint32_t retry_after_ms; /* the part's Retry-After header (seconds)   */
    json_t *body;
} graph_part;

/* A message object (a value item, a $batch body). Items without an id are
 * refused. */
int graph_msg_from_json(json_t *obj, graph_msg *m, char **error_r);
void graph_msg_clear(graph_msg *m);
/* "\\Seen \\Flagged \\Draft" as they apply (malloc'd); NULL when isRead
 * is unknown, so a sparse read never clears flags. */
char *graph_msg_flags(const graph_msg *m);

int graph_page_parse(const char *body, size_t len, graph_page *p, char **error_r);
void graph_page_clear(graph_page *p);

int graph_folder_page_parse(const char *body, size_t len, graph_folder_page *p,
                            char **error_r);
void graph_folder_page_clear(graph_folder_page *p);

/* `parts` has n entries, answer "i" lands in parts[i]; ids out of range or
 * repeated are refused. */
int graph_batch_parse(const char *body, size_t len, graph_part *parts, size_t n,
                      char **error_r);
void graph_parts_clear(graph_part *parts, size_t n);

/* The error answer's code and message (either shape; "" when absent). */
void graph_error_parse(const char *body, size_t len, char *code, size_t code_cap, char *msg,
                       size_t msg_cap);
/* Whether `code` says the delta state is gone (a resync). */
int graph_sync_state_gone(const char *code);

/* "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" to Unix seconds;
 * 0 and -1 when it is not one. */
int graph_time_parse(const char *s, int64_t *t_r);
/* Unix seconds as "YYYY-MM-DDTHH:MM:SSZ" (cap >= 21). */
void graph_time_format(int64_t t, char *buf, size_t cap);

#endif /* GRAPH_JSON_H */

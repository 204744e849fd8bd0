/*
 * The IMAP client used by imap.so: a response parser that never over-reads
 * on hostile input, and a connection (implicit TLS, STARTTLS or plain) that
 * authenticates with SASL and runs pipelined commands.
 *
 * Two ways to drive a connection:
 *   - blocking (worker threads: sync, fetch): imap_conn_open(), then
 *     imap_send() several commands and imap_wait() for each tag, untagged
 *     responses going to a callback;
 *   - non-blocking (push streams on the host's event loop): after opening,
 *     imap_conn_set_nonblocking(); then imap_conn_pump() whenever the fd is
 *     readable (or imap_conn_want_write() says a TLS write is pending).
 *
 * Memory: a response handed to a callback is valid during the callback
 * only (it lives in the connection's arena). Strings passed in are
 * borrowed. Errors: -1 and an allocated message in *error_r; nothing here
 * logs.
 */
#ifndef MP_IMAP_CLIENT_H
#define MP_IMAP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* ---- parsed responses ---- */

typedef enum imap_token_type {
    IMAP_T_ATOM = 1,   /* also numbers (check imap_token_u64) and flags    */
    IMAP_T_STRING = 2, /* quoted or literal; may contain NUL (use len)    */
    IMAP_T_NIL = 3,
    IMAP_T_LIST = 4,   /* ( ... )                                          */
    IMAP_T_SECTION = 5, /* BODY[...]<...>: str holds "BODY[...]" text      */
} imap_token_type;

typedef struct imap_token {
    imap_token_type type;
    const char *str;   /* NUL-terminated copy; for STRING also see len     */
    size_t len;
    struct imap_token *items; /* LIST children                             */
    size_t n_items;
} imap_token;

typedef enum imap_status {
    IMAP_NONE = 0, /* untagged data (EXISTS, FETCH, LIST, ...)           */
    IMAP_OK = 1,
    IMAP_NO = 2,
    IMAP_BAD = 3,
    IMAP_BYE = 4,
    IMAP_PREAUTH = 5,
} imap_status;

typedef enum imap_response_kind {
    IMAP_R_UNTAGGED = 1,
    IMAP_R_TAGGED = 2,
    IMAP_R_CONTINUATION = 3,
} imap_response_kind;

typedef struct imap_response {
    imap_response_kind kind;
    const char *tag;          /* TAGGED only                               */
    imap_status status;       /* OK/NO/BAD/BYE/PREAUTH, else IMAP_NONE      */
    /* "* 23 EXISTS" -> number 23, has_number 1, keyword "EXISTS". For
     * "* LIST (...)" keyword "LIST". For status responses the keyword is
     * the status word. Keywords are upper-cased. */
    int has_number;
    uint32_t number;
    const char *keyword;
    /* Response code "[UIDVALIDITY 3]": code "UIDVALIDITY", code_args. */
    const char *code;
    imap_token *code_args;
    size_t n_code_args;
    /* Everything after the keyword (untagged data) as tokens. */
    imap_token *args;
    size_t n_args;
    /* Human-readable text of status responses and continuations. */
    const char *text;
} imap_response;

typedef struct imap_arena imap_arena;
imap_arena *imap_arena_new(void);
void imap_arena_reset(imap_arena *a);
void imap_arena_free(imap_arena **a);

/* Parse one complete response (the line, with literal bodies inline
 * exactly as received, including the final CRLF) into *resp_r using
 * memory from `arena`. Never reads past buf+len; bounded nesting depth.
 * Returns 0, or -1 with *error_r set (allocated) on malformed input. */
int imap_parse_response(const char *buf, size_t len, imap_arena *arena,
                        imap_response *resp_r, char **error_r);

/* Given the bytes received so far, the length of the first complete
 * response (line plus any literals it announces), 0 if more bytes are
 * needed, or -1 when the input can never form a valid response (or a
 * line/literal exceeds `max`). */
long imap_response_length(const char *buf, size_t len, size_t max);

/* Token helpers. */
int imap_token_u64(const imap_token *t, uint64_t *value_r); /* 0 or -1 */
int imap_token_is(const imap_token *t, const char *atom);   /* case-insens. */
/* In a FETCH response's list "(UID 5 FLAGS (\Seen) ...)", the value token
 * following the item name (case-insensitive; "BODY[]" matches a SECTION),
 * or NULL. */
const imap_token *imap_fetch_item(const imap_response *r, const char *name);

/* ENVELOPE decoded (strings allocated in the arena; NULL when NIL). Header
 * words (RFC 2047) are decoded to UTF-8. */
typedef struct imap_envelope {
    const char *date;       /* Date header as given                        */
    const char *subject;
    const char *from;       /* "Name <addr>"                                */
    const char *to;         /* comma-separated                              */
    const char *message_id; /* without < >                                  */
    const char *in_reply_to;
} imap_envelope;
int imap_envelope_parse(const imap_token *env, imap_arena *arena, imap_envelope *env_r);
/* The same fields read from a raw RFC 5322 message (its header: up to the
 * first empty line, or `len`), decoded and formatted by the same rules, so
 * a fetch that carries BODY[] need not ask for ENVELOPE too. Every field
 * may be NULL; the last of a repeated field counts. 0, or -1 for NULL. */
int imap_header_envelope(const char *raw, size_t len, imap_arena *arena, imap_envelope *env_r);

/* Date strings to Unix seconds: INTERNALDATE ("17-Jul-1996 02:44:25 -0700")
 * and RFC 5322 Date headers. -1 when unparseable. */
int64_t imap_parse_internaldate(const char *s);
int64_t imap_parse_rfc5322_date(const char *s);

/* Mailbox names: modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8. Allocated.
 * NULL on invalid input. Decoding is strict, so distinct names never
 * decode alike: it refuses NUL and control characters (C0, DEL, C1),
 * printable ASCII in base64, non-zero or partial leftover bits, adjacent
 * runs and unpaired surrogates; imap_mutf7_decode_why also says which
 * (*why_r static text, NULL on success). */
char *imap_mutf7_encode(const char *utf8);
char *imap_mutf7_decode(const char *mutf7);
char *imap_mutf7_decode_why(const char *mutf7, const char **why_r);

/* UID sets: "1:5,7,9:12" <-> sorted arrays. Allocated. */
int imap_uidset_parse(const char *s, uint32_t **uids_r, size_t *n_r);
char *imap_uidset_format(const uint32_t *uids, size_t n); /* sorted input */

/* ---- connections ---- */

typedef enum imap_tls_mode {
    IMAP_TLS_IMPLICIT = 0, /* port 993                                      */
    IMAP_TLS_STARTTLS = 1,
    IMAP_TLS_NONE = 2,     /* only when an account says tls: none           */
} imap_tls_mode;

typedef enum imap_auth_mech {
    IMAP_AUTH_PLAIN = 0,
    IMAP_AUTH_LOGIN = 1,
    IMAP_AUTH_XOAUTH2 = 2,
    IMAP_AUTH_OAUTHBEARER = 3,
} imap_auth_mech;

/* Capability bits (the raw list is kept too). */
enum {
    IMAP_CAP_IDLE = 1u << 0,
    IMAP_CAP_CONDSTORE = 1u << 1,
    IMAP_CAP_QRESYNC = 1u << 2,
    IMAP_CAP_ENABLE = 1u << 3,
    IMAP_CAP_UIDPLUS = 1u << 4,
    IMAP_CAP_MOVE = 1u << 5,
    IMAP_CAP_ESEARCH = 1u << 6,
    IMAP_CAP_SPECIAL_USE = 1u << 7,
    IMAP_CAP_LITERAL_PLUS = 1u << 8,
    IMAP_CAP_LITERAL_MINUS = 1u << 9,
    IMAP_CAP_NOTIFY = 1u << 10,
    IMAP_CAP_ID = 1u << 11,
    IMAP_CAP_XGMEXT1 = 1u << 12,
    IMAP_CAP_STARTTLS = 1u << 13,
    IMAP_CAP_LOGINDISABLED = 1u << 14,
    IMAP_CAP_NAMESPACE = 1u << 15,
    IMAP_CAP_UTF8_ACCEPT = 1u << 16,
    IMAP_CAP_COMPRESS_DEFLATE = 1u << 17,
    IMAP_CAP_OBJECTID = 1u << 18,
};

typedef struct imap_caps {
    uint32_t bits;
    char *raw;             /* the CAPABILITY list as received (allocated)   */
    char *auth_mechs;      /* "PLAIN LOGIN XOAUTH2" offered before login    */
    char *greeting;        /* server greeting text                          */
} imap_caps;

typedef struct imap_conn_opts {
    const char *host;
    uint16_t port;          /* 0: 993 implicit, 143 otherwise               */
    imap_tls_mode tls;
    const char *ca_file;    /* extra CA bundle (tests); NULL: system store  */
    const char *username;
    const char *secret;     /* password or OAuth access token               */
    imap_auth_mech auth;
    uint32_t timeout_ms;    /* per blocking read/write, 0: 60000            */
    int enable;             /* send ENABLE QRESYNC / CONDSTORE when offered */
    const char *client_id;  /* sent with ID when offered, e.g. "mailpulse"  */
    /* Deadline of each step: connect, TLS handshake, greeting, login and
     * every command from its send (or wait) to its tagged answer, however
     * steadily the server trickles bytes; 0: 120000. A received body
     * extends it by 1 ms per 256 bytes. */
    uint32_t deadline_ms;
    /* Memory budget of the connection, 0: 64 MiB. A response whose text
     * outside literals exceeds a quarter of it, whose parsed form (tokens
     * and strings, literals included) exceeds it, or responses held while
     * waiting for a continuation that exceed it fail the wait: -1, the
     * connection closed, the error says "server response exceeds N MiB". */
    size_t max_memory;
    /* Nonzero: ID and ENABLE are sent but their answers not awaited, so
     * the caller's first command shares their round trip; it must call
     * imap_conn_settle before relying on imap_conn_enabled. */
    int defer_settle;
} imap_conn_opts;

/* How the server answered the authentication (LOGIN or AUTHENTICATE) when
 * it refused it; whether that means bad credentials or a passing problem
 * is the caller's mapping to make (RFC 5530 codes). */
typedef struct imap_auth_answer {
    int refused;         /* 1: a tagged NO or BAD to the authentication     */
    imap_status status;  /* IMAP_NO or IMAP_BAD                              */
    char code[32];       /* its response code ("UNAVAILABLE"), "" without   */
} imap_auth_answer;

typedef struct imap_conn imap_conn;

/* Connect, verify the certificate (chain and host name; always on), read
 * the greeting, STARTTLS when asked, authenticate, refresh capabilities,
 * send ID and ENABLE as configured. Blocking. On failure *error_r says
 * what failed; *auth_r (may be NULL; always cleared first) tells how the
 * server answered the authentication when it refused it. */
int imap_conn_open(const imap_conn_opts *opts, imap_conn **conn_r, imap_auth_answer *auth_r,
                   char **error_r);
/* LOGOUT (best effort, bounded wait) and free. Accepts NULL; clears. */
void imap_conn_close(imap_conn **conn);
/* Free without LOGOUT (dead connection). Accepts NULL; clears. */
void imap_conn_abort(imap_conn **conn);

const imap_caps *imap_conn_caps(const imap_conn *conn);
int imap_conn_fd(const imap_conn *conn);
/* Which of QRESYNC/CONDSTORE the server confirmed with ENABLED. */
uint32_t imap_conn_enabled(const imap_conn *conn);
/* Wait for the answers to the ID and ENABLE that imap_conn_open sent
 * with opts.defer_settle (none pending: returns at once). Their refusal is
 * not an error; 0, or -1 on a connection failure (*error_r). */
int imap_conn_settle(imap_conn *conn, char **error_r);
/* Nonzero once a wait on the connection ended by the idle timeout or the
 * command deadline (a slow server, not a stale connection). */
int imap_conn_timed_out(const imap_conn *conn);

/* Untagged responses seen while waiting; return nonzero to fail the wait. */
typedef int (*imap_untagged_cb)(const imap_response *resp, void *arg);

/* Build and send one command. The format understands:
 *   %a  an atom, sent as is (caller guarantees atom syntax)
 *   %s  an astring: sent as atom, quoted string or literal as needed
 *       (LITERAL+ when offered, else a synchronizing literal, waiting
 *       for the continuation)
 *   %m  a mailbox name in UTF-8: encoded to modified UTF-7, then %s
 *   %u  uint32_t, %U uint64_t, %%  a percent sign
 * The tag ("A12") is written to tag_r (>= 16 bytes). Blocking mode only.
 * Several commands may be sent before waiting (pipelining). */
int imap_send(imap_conn *conn, char *tag_r, char **error_r, const char *fmt, ...);
/* Read responses until the tagged response for `tag`; untagged ones go to
 * cb (may be NULL). *status_r gets OK/NO/BAD; *text_r (may be NULL) the
 * allocated text with its response code. Returns -1 only for connection
 * or protocol failures (timeouts, BYE, parse errors). */
int imap_wait(imap_conn *conn, const char *tag, imap_untagged_cb cb, void *arg,
              imap_status *status_r, char **text_r, char **error_r);
/* imap_send + imap_wait; a NO/BAD answer becomes -1 with its text in
 * *error_r unless status_r is not NULL. */
int imap_run(imap_conn *conn, imap_untagged_cb cb, void *arg, imap_status *status_r,
             char **error_r, const char *fmt, ...);

/* ---- non-blocking use (push streams on the event loop) ---- */

int imap_conn_set_nonblocking(imap_conn *conn);
/* Write raw bytes (a complete command line such as "A5 IDLE\r\n" or
 * "DONE\r\n"); queued if the socket is not writable. 0 or -1. */
int imap_conn_write(imap_conn *conn, const char *data, size_t len, char **error_r);
/* Nonzero when queued output or a TLS handshake step waits for the socket
 * to become writable. */
int imap_conn_want_write(const imap_conn *conn);
/* Read what is available, hand each complete response (untagged, tagged
 * or continuation) to cb. Returns 1
 * when it would block (wait for the fd), 0 when the peer closed, -1 on
 * error (*error_r set). */
int imap_conn_pump(imap_conn *conn, imap_untagged_cb cb, void *arg, char **error_r);

#endif

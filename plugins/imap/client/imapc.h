/*
 * Internals shared by the files of the IMAP client: allocation that aborts
 * on exhaustion (the driver cannot report anything useful without memory
 * either), the arena, base64 through OpenSSL, and the connection struct.
 */
#ifndef MP_IMAPC_H
#define MP_IMAPC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "imap_client.h"

/* Bounds against hostile servers. */
#define IMAPC_MAX_DEPTH 64
#define IMAPC_MAX_LITERAL ((size_t)64 * 1024 * 1024)
/* Largest complete response a connection buffers (literal plus its line). */
#define IMAPC_MAX_RESPONSE (IMAPC_MAX_LITERAL + (size_t)1024 * 1024)
/* Longest astring sent quoted; longer ones go as literals. */
#define IMAPC_MAX_QUOTED 1024
/* LITERAL- allows non-synchronizing literals up to this size. */
#define IMAPC_LITERAL_MINUS_MAX 4096
/* Upper bound on the number of UIDs a set may expand to. */
#define IMAPC_UIDSET_MAX ((size_t)4 * 1024 * 1024)
#define IMAPC_DEFAULT_TIMEOUT_MS 60000u
/* Defaults of the per-connection limits (imap_conn_opts). */
#define IMAPC_DEFAULT_DEADLINE_MS 120000u
#define IMAPC_DEFAULT_MAX_MEMORY ((size_t)64 * 1024 * 1024)
/* A command's deadline moves on by 1 ms for every this many bytes
 * received, so a large body on a slow but honest link completes
 * (64 MiB buys 256 s), while a trickle buys nothing. */
#define IMAPC_DEADLINE_BYTES_PER_MS 256u
#define IMAPC_MAX_PENDING_TAGS 64
/* Text kept of a completion read before its wait. */
#define IMAPC_MAX_DONE_TEXT 4096
/* Capability list kept (atoms beyond it still set capability bits). */
#define IMAPC_MAX_CAPS_TEXT ((size_t)16 * 1024)

void *imapc_malloc(size_t size);
void *imapc_calloc(size_t n, size_t size);
void *imapc_realloc(void *p, size_t size);
char *imapc_strdup(const char *s);
char *imapc_strndup(const char *s, size_t n);
char *imapc_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *imapc_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/* Sets *error_r (when error_r is not NULL) and returns -1. */
int imapc_fail(char **error_r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void *imapc_arena_alloc(imap_arena *a, size_t size);
char *imapc_arena_strndup(imap_arena *a, const char *s, size_t n);

/* Base64 (standard alphabet) through OpenSSL. Encode returns a
 * NUL-terminated string; decode accepts missing padding, returns NULL on
 * invalid input, and NUL-terminates the (binary) result. */
char *imapc_b64_encode(const void *data, size_t len);
unsigned char *imapc_b64_decode(const char *s, size_t len, size_t *len_r);

/* Growable byte buffer. Consuming all of it frees the storage: a
 * connection waiting for data holds no buffer. */
typedef struct imapc_buf {
    char *data;
    size_t len;
    size_t cap;
} imapc_buf;
void imapc_buf_append(imapc_buf *b, const void *data, size_t len);
void imapc_buf_consume(imapc_buf *b, size_t n);
void imapc_buf_free(imapc_buf *b);

typedef struct imapc_done_tag {
    char tag[16];
    imap_status status;
    char *text;
} imapc_done_tag;

struct imap_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char *host;
    uint16_t port;
    uint32_t timeout_ms;  /* idle: longest wait for any byte                 */
    uint32_t deadline_ms; /* longest a command (or a step of opening) takes  */
    int64_t deadline_at;  /* CLOCK_MONOTONIC ms when the current one ends;
                             0: none armed                                   */
    size_t max_memory;    /* budget: a response's text (max_memory / 4), its
                             parse, the held buffer                          */
    int nonblocking;
    int ssl_want_write; /* a TLS read/handshake step waits for POLLOUT      */
    int closed;         /* peer closed or BYE seen                          */
    int timed_out;      /* a wait ended by the idle timeout or the deadline */
    char *bye;          /* text of a BYE received                           */
    imap_caps caps;
    int have_caps;
    uint32_t enabled;
    uint32_t next_tag;
    imapc_buf rbuf;     /* bytes received, not yet handed out               */
    imapc_buf held;     /* complete responses read ahead while waiting for
                           a continuation, replayed by the next wait        */
    imapc_buf wbuf;     /* non-blocking mode: output not yet written        */
    size_t pend_rbuf;   /* bytes of the last response handed out, consumed  */
    size_t pend_held;   /* lazily so its raw bytes stay valid until the next
                           read                                             */
    imap_arena *arena;
    /* Completions read before their wait, up to IMAPC_MAX_PENDING_TAGS:
     * allocated when the first arrives and freed when the last is taken
     * (64 inline entries were 2 KiB on every idle push connection). */
    imapc_done_tag *done;
    size_t n_done;
    char settle_tags[2][16]; /* ID, ENABLE sent by imap_conn_open and not
                                yet awaited ("" when none)                */
};

/* io.c: the command deadline. Arming starts a new deadline_ms window
 * (what = the step, for the error); imapc_deadline_left is the ms left
 * (0 when passed), or -1 without a deadline armed. */
void imapc_deadline_arm(imap_conn *c);
int64_t imapc_deadline_left(const imap_conn *c);
int64_t imapc_now_ms(void);
/* The error for a response over the budget (detail says which bound);
 * closes the connection, returns -1. */
int imapc_fail_budget(imap_conn *c, const char *detail, char **error_r);
/* poll() for events within the idle timeout and the deadline. */
int imapc_wait_fd(imap_conn *c, short events, const char *what, char **error_r);

/* parse.c: imap_parse_response with its arena use (including token
 * vectors) bounded by max_memory; over it, -1 and *over_r set. */
int imapc_parse_limited(const char *buf, size_t len, imap_arena *arena, size_t max_memory,
                        int *over_r, imap_response *resp_r, char **error_r);
/* imap_response_length with the text outside literals bounded by
 * max_text and the whole response by max_total. */
long imapc_response_length(const char *buf, size_t len, size_t max_text, size_t max_total);

/* arena.c: bytes the arena holds; release frees every chunk (what was
 * allocated from it is gone, as after a reset). */
size_t imapc_arena_size(const imap_arena *a);
void imapc_arena_release(imap_arena *a);

/* io.c: blocking I/O on the (always O_NONBLOCK) socket, bounded by
 * timeout_ms per wait. `what` names the awaited thing in errors. */
int imapc_write_all(imap_conn *c, const void *data, size_t len, const char *what,
                    char **error_r);
/* Next complete response (from `held` first, then the socket) parsed into
 * *resp_r (arena reset first); *raw_r and *raw_len_r the raw bytes (valid
 * until the next read). */
int imapc_read_response(imap_conn *c, const char *what, int skip_held, imap_response *resp_r,
                        char **raw_r, size_t *raw_len_r, char **error_r);
/* Next complete response already buffered: 1 (filled), 0 (none), -1. */
int imapc_next_buffered(imap_conn *c, int skip_held, imap_response *resp_r, char **raw_r,
                        size_t *raw_len_r, char **error_r);
/* Reads up to one chunk from the socket into rbuf without waiting.
 * Returns >0 bytes read, 0 on EOF, -2 when it would block, -1 on error. */
long imapc_read_some(imap_conn *c, char **error_r);

/* envelope.c: the summary rules shared by ENVELOPE and raw headers
 * (header.c), so both sources give the same strings. */
/* RFC 2047 encoded-words in `s` decoded to UTF-8 (white space between two
 * of them dropped); unknown charsets and malformed words stay as they are.
 * NULL for NULL. */
const char *imapc_decode_words(imap_arena *a, const char *s);
/* One address appended to a list as "Name <mbox@host>" or "mbox@host",
 * after ", " when the list is not empty; the name's words decoded. */
void imapc_address_append(imapc_buf *out, imap_arena *a, const char *name, const char *mbox,
                          const char *host);
/* The buffer's bytes copied into the arena and the buffer freed; NULL when
 * nothing was ever appended. */
const char *imapc_buf_to_arena(imapc_buf *b, imap_arena *a);
/* "<id@host>" -> "id@host" (the first id when there are several). */
const char *imapc_strip_msgid(imap_arena *a, const char *s);

/* conn.c */
int imapc_has_cap(const imap_conn *c, const char *name);
void imapc_caps_set(imap_conn *c, const imap_token *atoms, size_t n);
/* Connection-level bookkeeping every received response goes through
 * (CAPABILITY, ENABLED, BYE). */
void imapc_observe(imap_conn *c, const imap_response *r);
/* The resp-text after the status word of a raw response line, allocated. */
char *imapc_resp_text(const char *raw, size_t len);

/* tls.c */
int imapc_tls_start(imap_conn *c, const char *ca_file, char **error_r);

/* send.c */
int imapc_wait_continuation(imap_conn *c, const char *tag, int *got_cont_r, imap_response *resp_r,
                            char **error_r);
int imapc_vsend(imap_conn *c, char *tag_r, char **error_r, const char *fmt, va_list ap);
void imapc_done_add(imap_conn *c, const char *tag, imap_status st, const char *text);

/* auth.c */
int imapc_authenticate(imap_conn *c, const imap_conn_opts *opts, imap_auth_answer *auth_r,
                       char **error_r);

#endif

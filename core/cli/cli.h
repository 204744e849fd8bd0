/*
 * mailpulsectl building blocks that do no I/O: argument parsing, UTF-8
 * display width and truncation, table layout, the Server-Sent Events
 * parser and query-string building. They are compiled into mpcore so the
 * unit tests reach them; the executable adds the HTTP client and commands.
 *
 * Ownership: every returned `char *` is allocated and freed by the caller
 * with free(). Strings passed in are borrowed and copied when kept.
 */
#ifndef MP_CLI_CLI_H
#define MP_CLI_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes of mailpulsectl. */
enum {
    MPCTL_EXIT_OK = 0,
    MPCTL_EXIT_ERROR = 1,   /* the daemon answered an error                */
    MPCTL_EXIT_USAGE = 2,   /* bad command line (or unreadable config)     */
    MPCTL_EXIT_CONNECT = 3, /* cannot reach the daemon                     */
};

/* ---- arguments (args.c) ---- */

typedef enum mpctl_command {
    MPCTL_CMD_NONE = 0,
    MPCTL_CMD_HELP,
    MPCTL_CMD_STATUS,
    MPCTL_CMD_ACCOUNTS,
    MPCTL_CMD_ACCOUNT,
    MPCTL_CMD_MESSAGES,
    MPCTL_CMD_SHOW,
    MPCTL_CMD_SYNC,
    MPCTL_CMD_BACKFILL,
    MPCTL_CMD_EVENTS,
    MPCTL_CMD_CHECK_CONFIG,
    MPCTL_CMD_PROBE,
    MPCTL_CMD_WEBHOOKS,
    MPCTL_CMD_GMAIL_STATUS,
    MPCTL_CMD_CHECK,
    MPCTL_CMD_GRAPH_SETUP,
    MPCTL_CMD_GMAIL_SETUP,
} mpctl_command;

/* The parsed command line. Strings point into argv (borrowed). */
typedef struct mpctl_args {
    const char *config;     /* -c, --config                                */
    const char *socket;     /* -s, --socket                                */
    const char *url;        /* -u, --url                                   */
    const char *token_file; /* -t, --token-file                            */
    int json;               /* --json, before or after the command         */
    mpctl_command command;
    const char *command_name;
    const char *pos[2]; /* positional arguments of the command         */
    int n_pos;
    /* messages */
    const char *folder;
    int64_t limit; /* -1 when not given                           */
    const char *before;
    /* accounts (--limit is the page size there) */
    const char *status; /* --status                                    */
    const char *push;   /* --push                                      */
    /* events */
    int follow;
    int64_t after; /* -1 when not given                           */
    const char *after_id; /* --after <epoch>:<seq> (then after is 0) */
    const char *types;
    const char *accounts;
    /* webhooks replay */
    int64_t from; /* -1 when not given                           */
    /* check */
    int live;          /* --live                                        */
    int64_t timeout_s; /* --timeout; -1 when not given                  */
    /* gmail-setup, graph-setup */
    const char *public_url; /* --public-url                             */
    int no_live;            /* --no-live                                */
} mpctl_args;

/* Parse argv (argv[0] is the program name). `-h`, `--help` and `help`
 * yield MPCTL_CMD_HELP. Returns 0, or -1 with *error_r set to a one-line
 * message for a usage error (unknown command or option, missing or extra
 * argument, bad number). Uses getopt_long and resets its state, so it may
 * be called repeatedly; not thread-safe. */
int mpctl_args_parse(int argc, char **argv, mpctl_args *args_r, char **error_r);

/* The usage text (static, ends with a newline). */
const char *mpctl_usage(void);

/* ---- UTF-8 and text (format.c) ---- */

/* Copy of `s` that is safe to print in a terminal and a table cell:
 * invalid UTF-8 bytes become U+FFFD, tabs/newlines/CR become a space,
 * other C0/C1 controls and DEL become '?'. NULL -> "-". */
char *mpctl_sanitize(const char *s);

/* Display columns of valid UTF-8 `s` (wide East Asian characters and
 * emoji count 2, combining marks 0). Invalid bytes count 1 each. */
size_t mpctl_utf8_width(const char *s);

/* Byte length of the longest prefix of `s` that fits in `max_cols`
 * columns; never ends inside a multibyte sequence and keeps combining
 * marks with their base character. *cols_r (may be NULL) gets its width. */
size_t mpctl_utf8_prefix(const char *s, size_t max_cols, size_t *cols_r);

/* `s` itself when it fits in `max_cols` columns, else its longest prefix
 * fitting `max_cols - 1` columns followed by "…" (U+2026). */
char *mpctl_utf8_truncate(const char *s, size_t max_cols);

/* "3d 4h 5m", "2h 0m 7s", "42s": compact uptime. */
char *mpctl_format_duration(int64_t seconds);

/* ---- tables (format.c) ---- */

typedef struct mpctl_table mpctl_table;

/* A table with `n_cols` columns and their headers (copied). */
mpctl_table *mpctl_table_new(size_t n_cols, const char *const *headers);
/* Cap column `col` at `max_cols` display columns (0 = no cap); longer
 * cells are truncated with mpctl_utf8_truncate(). */
void mpctl_table_set_max(mpctl_table *t, size_t col, size_t max_cols);
/* Right-align column `col` (numbers). */
void mpctl_table_set_right(mpctl_table *t, size_t col);
/* Append a row of n_cols cells (copied, sanitized; NULL shows "-"). */
void mpctl_table_add_row(mpctl_table *t, const char *const *cells);
size_t mpctl_table_rows(const mpctl_table *t);
/* Render: header row then one line per row; columns padded to their
 * widest cell (in display columns) and separated by two spaces; no
 * trailing spaces. Each line ends with "\n". */
char *mpctl_table_render(const mpctl_table *t);
void mpctl_table_free(mpctl_table **t);

/* ---- Server-Sent Events parser (sse_parse.c) ---- */

/* One dispatched event; pointers valid only during the callback. `id` is
 * the last event ID seen on the stream ("" when none), `type` defaults to
 * "message", multi-line data is joined with "\n". */
typedef struct mpctl_sse_event {
    const char *id;
    const char *type;
    const char *data;
    size_t data_len;
} mpctl_sse_event;

/* Return nonzero to stop parsing (mpctl_sse_feed() then returns -1). */
typedef int mpctl_sse_cb(const mpctl_sse_event *ev, void *ctx);

typedef struct mpctl_sse mpctl_sse;

/* Incremental parser of a text/event-stream body (WHATWG rules: lines end
 * in LF, CRLF or CR, split anywhere across chunks; ":" comment lines are
 * ignored; an event is dispatched at a blank line when it has data). */
mpctl_sse *mpctl_sse_new(mpctl_sse_cb *cb, void *ctx);
/* Feed the next chunk. Returns 0, or -1 when the callback asked to stop
 * or a line/event grew beyond the size limit (the parser is then reset). */
int mpctl_sse_feed(mpctl_sse *p, const char *buf, size_t len);
/* Forget a partially received line/event (on reconnect); the last event
 * ID is kept. */
void mpctl_sse_reset(mpctl_sse *p);
const char *mpctl_sse_last_id(const mpctl_sse *p);
void mpctl_sse_free(mpctl_sse **p);

/* ---- URLs (query.c) ---- */

typedef struct mpctl_param {
    const char *key;
    const char *value; /* NULL: parameter left out */
} mpctl_param;

/* "" or "?k=v&k2=v2" with keys and values percent-encoded (RFC 3986
 * unreserved characters kept). */
char *mpctl_query_build(const mpctl_param *params, size_t n);
/* Percent-encode one path segment ("/" too). */
char *mpctl_path_escape(const char *segment);

#endif

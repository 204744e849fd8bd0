/*
 * hello: the smallest complete mailpulse driver, kept as a reference for
 * driver authors. Every account has one folder, INBOX, holding `messages`
 * synthetic messages numbered 1..N whose subject starts with `greeting`.
 * Nothing ever changes, so the delta cursor is simply N.
 *
 * What it shows:
 *   - the descriptor with MP_DRIVER_HEAD and designated initializers, the
 *     only symbol the file exports (everything else is static and the SDK
 *     builds with hidden visibility);
 *   - declared account keys: the core validates them and fills defaults
 *     before account_open runs, so the driver only reads typed values;
 *   - per-account state owned by the driver, freed by account_close;
 *   - a poll cycle: list_folders, bootstrap (SYNCED changes + commit of
 *     cursor and backfill state), delta (commit of the unchanged cursor);
 *   - fetch returning memory from host->alloc, which the host then owns;
 *   - status codes: MP_FATAL for bad configuration, MP_RESYNC for a cursor
 *     the driver no longer understands, MP_SKIP for a message that is gone;
 *   - an admin's preflight (check, ABI 1.2): one result per thing verified,
 *     and a live test it cannot do reported as SKIP with what to do.
 *
 * It uses only <mailpulse/driver.h> and libc, as every driver must.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup, gmtime_r */
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mailpulse/driver.h>

#define HELLO_FOLDER "INBOX"
#define HELLO_MAX_MESSAGES 10000
#define HELLO_MAX_GREETING 200
/* 2026-01-01T00:00:00Z; message i is dated i minutes later, so the same
 * message always renders to the same bytes. */
#define HELLO_EPOCH INT64_C(1767225600)

/* The host table handed to init. It stays valid until deinit, and every
 * instance of a driver gets the same table, so one pointer is enough. */
static const mp_host *hello_host;

/* Per-account state. Written once by account_open on the loop thread and
 * only read afterwards, so worker threads share it without a lock. */
typedef struct hello_account {
    char *account_id;
    char *greeting;
    uint32_t messages;
} hello_account;

/* Keys accepted under each account in plugins.d/<instance>.yaml. */
static const mp_config_key hello_account_keys[] = {
    {.name = "greeting",
     .type = MP_CFG_STRING,
     .default_value = "Hello from mailpulse",
     .help = "subject prefix of the synthetic messages"},
    {.name = "messages",
     .type = MP_CFG_INT,
     .default_value = "3",
     .help = "how many messages INBOX holds (0-10000)"},
    {.name = NULL}, /* end */
};

static mp_status hello_init(const mp_host *host, mp_instance *inst, const mp_config *cfg,
                            void **state_r, mp_error *err)
{
    (void)inst;
    (void)cfg;
    (void)err;
    hello_host = host;
    *state_r = NULL; /* no instance-wide state */
    return MP_OK;
}

static void hello_account_free(hello_account *ha)
{
    if (ha == NULL)
        return;
    free(ha->account_id);
    free(ha->greeting);
    free(ha);
}

static mp_status hello_account_open(mp_account *acct, const mp_config *cfg,
                                    void **state_r, mp_error *err)
{
    const char *greeting = hello_host->config_string(cfg, "greeting");
    int64_t messages = hello_host->config_int(cfg, "messages");
    hello_account *ha;

    /* The core checked the types; the ranges are ours to check. MP_FATAL
     * parks the account until the configuration changes. */
    if (messages < 0 || messages > HELLO_MAX_MESSAGES)
        return mp_fail(err, MP_FATAL, "messages must be 0-%d, not %" PRId64,
                       HELLO_MAX_MESSAGES, messages);
    if (greeting == NULL || strlen(greeting) > HELLO_MAX_GREETING ||
        strpbrk(greeting, "\r\n") != NULL)
        /* It becomes a header line: no line breaks, bounded length. */
        return mp_fail(err, MP_FATAL, "greeting must be one line of at most %d bytes",
                       HELLO_MAX_GREETING);

    ha = calloc(1, sizeof *ha);
    if (ha == NULL)
        return mp_fail(err, MP_RETRY, "out of memory");
    ha->account_id = strdup(hello_host->account_id(acct));
    ha->greeting = strdup(greeting);
    ha->messages = (uint32_t)messages;
    if (ha->account_id == NULL || ha->greeting == NULL) {
        hello_account_free(ha);
        return mp_fail(err, MP_RETRY, "out of memory");
    }
    *state_r = ha;
    return MP_OK;
}

/* Close slots receive `void **`, accept NULL state and clear it. */
static void hello_account_close(mp_account *acct, void **state)
{
    (void)acct;
    hello_account_free(*state);
    *state = NULL;
}

static mp_status hello_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err)
{
    (void)acct;
    (void)err;
    hello_host->folder_add(sink, HELLO_FOLDER, MP_ROLE_INBOX);
    return MP_OK;
}

/* The header fields of message `i`, shared by the summary and the body so
 * both always agree. */
typedef struct hello_message {
    char id[32];
    char message_id[128];
    char subject[HELLO_MAX_GREETING + 32];
    char to[128];
    int64_t date;
} hello_message;

static const char hello_from[] = "Hello Driver <hello@example.invalid>";

static void hello_describe(const hello_account *ha, uint32_t i, hello_message *m)
{
    snprintf(m->id, sizeof m->id, "hello-%" PRIu32, i);
    snprintf(m->message_id, sizeof m->message_id,
             "hello-%" PRIu32 "@%.64s.example.invalid", i, ha->account_id);
    snprintf(m->subject, sizeof m->subject, "%s #%" PRIu32, ha->greeting, i);
    snprintf(m->to, sizeof m->to, "%.64s@example.invalid", ha->account_id);
    m->date = HELLO_EPOCH + (int64_t)i * 60;
}

/* Renders message `i` as RFC 822 text (CRLF line ends) into buf; returns
 * its length, or 0 if it does not fit (it always does: every field is
 * bounded, the greeting by account_open). */
static size_t hello_render(const hello_account *ha, uint32_t i, char *buf, size_t size)
{
    hello_message m;
    char date[64];
    struct tm tm;
    time_t t;
    int n;

    hello_describe(ha, i, &m);
    t = (time_t)m.date;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    n = snprintf(buf, size,
                 "Message-ID: <%s>\r\n"
                 "Date: %s\r\n"
                 "From: %s\r\n"
                 "To: %s\r\n"
                 "Subject: %s\r\n"
                 "MIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "\r\n"
                 "Message %" PRIu32 " of %" PRIu32 ", made up by the hello driver.\r\n",
                 m.message_id, date, hello_from, m.to, m.subject, i, ha->messages);
    return (n < 0 || (size_t)n >= size) ? 0 : (size_t)n;
}

static mp_status hello_bootstrap(mp_account *acct, const char *folder, uint32_t max,
                                 mp_batch *batch, mp_error *err)
{
    const hello_account *ha = hello_host->account_state(acct);
    char cursor[16], text[1024];
    mp_status st;

    if (strcmp(folder, HELLO_FOLDER) != 0)
        return mp_fail(err, MP_FATAL, "no folder \"%s\"", folder);

    /* max == 0 is "from now on": connect the folder, load no history.
     * hello has no backfill slot, so otherwise it loads all its history,
     * whatever max says (that is the contract for drivers without one). */
    for (uint32_t i = 1; max > 0 && i <= ha->messages; i++) {
        hello_message m;
        mp_change change = {
            .kind = MP_CHANGE_SYNCED,
            .uid = i,
            .from = hello_from,
            .flags = (i % 2) ? "\\Seen" : "",
        };

        hello_describe(ha, i, &m);
        change.id = m.id;
        change.message_id = m.message_id;
        change.subject = m.subject;
        change.to = m.to;
        change.date = m.date;
        change.size = (int64_t)hello_render(ha, i, text, sizeof text);
        if (change.size == 0)
            change.size = -1; /* unknown */
        /* The host copies the change before batch_change returns, so stack
         * buffers are fine. Nothing is visible before batch_commit. */
        st = hello_host->batch_change(batch, &change, err);
        if (st != MP_OK)
            return st;
    }

    /* The cursor is what delta gets back: everything up to message N is
     * known. backfill_done: there is no older history to load. */
    snprintf(cursor, sizeof cursor, "%" PRIu32, ha->messages);
    return hello_host->batch_commit(batch, cursor, NULL, 1, err);
}

static mp_status hello_delta(mp_account *acct, const char *folder, const char *cursor,
                             mp_batch *batch, mp_error *err)
{
    const hello_account *ha = hello_host->account_state(acct);
    char expected[16];

    if (strcmp(folder, HELLO_FOLDER) != 0)
        return mp_fail(err, MP_FATAL, "no folder \"%s\"", folder);

    /* A cursor we did not write (or one from before `messages` changed)
     * cannot be continued: MP_RESYNC makes the host bootstrap again. */
    snprintf(expected, sizeof expected, "%" PRIu32, ha->messages);
    if (cursor == NULL || strcmp(cursor, expected) != 0)
        return mp_fail(err, MP_RESYNC, "cursor \"%s\" does not match %s messages",
                       cursor != NULL ? cursor : "(none)", expected);

    /* No changes: commit the same cursor so the host records a good sync. */
    return hello_host->batch_commit(batch, cursor, NULL, 0, err);
}

static mp_status hello_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                             mp_error *err)
{
    const hello_account *ha = hello_host->account_state(acct);
    char text[1024], tail;
    unsigned long i;
    size_t len;

    if (sscanf(msg->id, "hello-%lu%c", &i, &tail) != 1 || i == 0 || i > ha->messages)
        return mp_fail(err, MP_SKIP, "no message \"%s\"", msg->id);

    len = hello_render(ha, (uint32_t)i, text, sizeof text);
    if (len == 0)
        return mp_fail(err, MP_FATAL, "message \"%s\" does not fit", msg->id);
    /* The host owns raw_r->data and frees it with its own allocator. */
    raw_r->data = hello_host->alloc(len);
    if (raw_r->data == NULL)
        return mp_fail(err, MP_RETRY, "out of memory");
    memcpy(raw_r->data, text, len);
    raw_r->len = len;
    return MP_OK;
}

/* `mailpulsectl check ACCOUNT`: report what was verified, one result per
 * name. A real driver asks its provider here (token, scopes, push
 * resources); hello has nothing to ask, so it reports its configuration.
 * It cannot create a message anywhere, so a live test is a SKIP that says
 * what the admin can do instead. MP_OK: the checks ran. */
static mp_status hello_check(mp_account *acct, unsigned flags, mp_check *chk,
                             mp_error *err)
{
    const hello_account *ha = hello_host->account_state(acct);
    char detail[128];
    (void)err;
    snprintf(detail, sizeof detail, "%s holds %" PRIu32 " synthetic messages",
             HELLO_FOLDER, ha->messages);
    hello_host->check_report(chk, "mailbox", MP_CHECK_OK, detail);
    if (flags & MP_CHECK_LIVE)
        hello_host->check_report(
            chk, "live_test", MP_CHECK_SKIP,
            "hello has no provider to send to; its messages are fixed "
            "(change `messages` and reload to see new mail)");
    return MP_OK;
}

/* The one exported symbol. Slots left out read as NULL: no deinit (no
 * instance state), no backfill, no push. */
MP_DRIVER_EXPORT const mp_driver mailpulse_driver = {
    MP_DRIVER_HEAD("hello"),
    .version = "1.0.0",
    .description = "synthetic INBOX for trying mailpulse and its SDK",
    .account_keys = hello_account_keys,
    .poll_interval_s = 300,
    .push_kind = MP_PUSH_NONE,
    .init = hello_init,
    .account_open = hello_account_open,
    .account_close = hello_account_close,
    .list_folders = hello_list_folders,
    .bootstrap = hello_bootstrap,
    .delta = hello_delta,
    .fetch = hello_fetch,
    .check = hello_check,
};

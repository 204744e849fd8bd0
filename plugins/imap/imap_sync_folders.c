/* Folder discovery with LIST (SPECIAL-USE roles) and the probe slot.
 *
 * Round trips: on a new connection the LIST goes out with the login's ID
 * and ENABLE (imap_account_connect_deferred), and on servers with
 * LIST-STATUS (RFC 5819) it also returns each folder's MESSAGES. Those
 * are kept as hints until the folder's bootstrap takes them: knowing
 * about how many messages there are, it pipelines its FETCH of the
 * newest UIDs behind the EXAMINE instead of waiting for EXISTS. Folders
 * past their bootstrap (a delta ran) get no hint; a delta drops one, the
 * account's next LIST replaces them, and any walk of the table drops
 * those older than IMAP_HINT_TTL_MS, so the table holds only what a
 * bootstrap is about to take. */
#include "imap_sync.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- LIST-STATUS hints ---- */

/* A hint unclaimed for this long (its folder already bootstrapped, its
 * account gone) is dropped by the next walk of the table. */
#define IMAP_HINT_TTL_MS (10 * 60 * 1000)

typedef struct list_hint {
    struct list_hint *next;
    const imap_account *a;
    char *folder;
    uint32_t messages;
    int64_t at_ms;
} list_hint;

static pthread_mutex_t hint_lock = PTHREAD_MUTEX_INITIALIZER;
static list_hint *hints;

/* Under hint_lock: drop the account's hints (all when a is NULL) and the
 * expired ones. */
static void hints_prune(const imap_account *a, int64_t now)
{
    list_hint **pp = &hints;
    while (*pp != NULL) {
        list_hint *h = *pp;
        if (h->a == a || now - h->at_ms > IMAP_HINT_TTL_MS) {
            *pp = h->next;
            free(h->folder);
            free(h);
        } else {
            pp = &h->next;
        }
    }
}

static void hint_add(const imap_account *a, const char *folder, uint32_t messages)
{
    list_hint *h = imap_xcalloc(1, sizeof *h);
    h->a = a;
    h->folder = imap_xstrdup(folder);
    h->messages = messages;
    h->at_ms = imap_host->now_ms();
    pthread_mutex_lock(&hint_lock);
    h->next = hints;
    hints = h;
    pthread_mutex_unlock(&hint_lock);
}

int imap_list_hint_take(const imap_account *a, const char *folder, uint32_t *messages_r)
{
    int found = 0;
    int64_t now = imap_host->now_ms();
    pthread_mutex_lock(&hint_lock);
    for (list_hint **pp = &hints; *pp != NULL; pp = &(*pp)->next) {
        list_hint *h = *pp;
        if (h->a == a && strcmp(h->folder, folder) == 0) {
            found = now - h->at_ms <= IMAP_HINT_TTL_MS;
            *messages_r = h->messages;
            *pp = h->next;
            free(h->folder);
            free(h);
            break;
        }
    }
    pthread_mutex_unlock(&hint_lock);
    return found;
}

/* ---- LIST ---- */

typedef struct list_ctx {
    imap_account *a;
    mp_folder_sink *sink;
    size_t found;
    size_t skipped;
    size_t hinted;
    uint64_t sig; /* of the synced folders listed (imap_folder_sig) */
    imap_budget budget; /* what the host's folder list will hold */
} list_ctx;

/* "* LIST (\HasNoChildren \Sent) "/" Sent": attributes, delimiter, name. */
/* "* STATUS name (MESSAGES 20)" of LIST-STATUS: a hint for a folder this
 * account syncs. Anything malformed is ignored: the hint is an
 * optimisation, EXAMINE has the truth. */
static int status_untagged(list_ctx *cx, const imap_response *r)
{
    if (r->n_args < 2 || r->args[1].type != IMAP_T_LIST ||
        (r->args[0].type != IMAP_T_ATOM && r->args[0].type != IMAP_T_STRING) ||
        r->args[0].str == NULL || strlen(r->args[0].str) != r->args[0].len)
        return 0;
    const imap_token *items = &r->args[1];
    uint64_t messages = 0;
    int have = 0;
    for (size_t i = 0; i + 1 < items->n_items; i += 2)
        if (imap_token_is(&items->items[i], "MESSAGES") &&
            imap_token_u64(&items->items[i + 1], &messages) == 0 &&
            messages <= UINT32_MAX)
            have = 1;
    if (!have)
        return 0;
    const char *name = r->args[0].str;
    char *decoded =
        strcasecmp(name, "INBOX") == 0 ? imap_xstrdup("INBOX") : imap_mutf7_decode(name);
    /* Only for folders still to bootstrap: one that had a delta in this
     * process is past that (its hint would only wait for the TTL). */
    if (decoded == NULL || !imap_account_folder_wanted(cx->a, decoded) ||
        imap_sync_mem_get(cx->a, decoded).exists >= 0) {
        free(decoded);
        return 0;
    }
    if (imap_budget_take(&cx->budget, strlen(decoded) + 64) < 0) {
        free(decoded);
        return 1;
    }
    hint_add(cx->a, decoded, (uint32_t)messages);
    cx->hinted++;
    free(decoded);
    return 0;
}

static int list_untagged(const imap_response *r, void *arg)
{
    list_ctx *cx = arg;
    if (r->kind == IMAP_R_UNTAGGED && r->keyword != NULL &&
        strcasecmp(r->keyword, "STATUS") == 0)
        return status_untagged(cx, r);
    if (r->kind != IMAP_R_UNTAGGED || r->keyword == NULL ||
        strcasecmp(r->keyword, "LIST") != 0 || r->n_args < 3 ||
        r->args[0].type != IMAP_T_LIST)
        return 0;
    const imap_token *attrs = &r->args[0];
    const imap_token *name = &r->args[2];
    if ((name->type != IMAP_T_ATOM && name->type != IMAP_T_STRING) || name->str == NULL ||
        name->str[0] == '\0' || strlen(name->str) != name->len)
        return 0;
    size_t len = 1;
    for (size_t i = 0; i < attrs->n_items; i++)
        if (attrs->items[i].type == IMAP_T_ATOM && attrs->items[i].str != NULL)
            len += strlen(attrs->items[i].str) + 1;
    char *text = imap_xcalloc(1, len);
    size_t off = 0;
    for (size_t i = 0; i < attrs->n_items; i++) {
        if (attrs->items[i].type != IMAP_T_ATOM || attrs->items[i].str == NULL)
            continue;
        size_t l = strlen(attrs->items[i].str);
        if (off > 0)
            text[off++] = ' ';
        memcpy(text + off, attrs->items[i].str, l);
        off += l;
    }
    text[off] = '\0';
    if (!imap_folder_selectable(text)) {
        free(text);
        return 0;
    }
    /* INBOX is case-insensitive and never encoded. */
    const char *why = NULL;
    char *decoded = strcasecmp(name->str, "INBOX") == 0
                        ? imap_xstrdup("INBOX")
                        : imap_mutf7_decode_why(name->str, &why);
    if (decoded == NULL) {
        /* The name as printable ASCII only, so it cannot forge log lines. */
        char shown[201];
        size_t k = 0;
        for (; k + 1 < sizeof shown && name->str[k] != '\0'; k++) {
            unsigned char ch = (unsigned char)name->str[k];
            shown[k] = ch >= 0x20 && ch < 0x7f && ch != '"' ? (char)ch : '?';
        }
        shown[k] = '\0';
        cx->skipped++;
        imap_sync_log(cx->a, MP_LOG_WARNING,
                      "LIST: skipping folder \"%s\": its modified UTF-7 name holds %s", shown,
                      why != NULL ? why : "an invalid sequence");
    } else if (imap_budget_take(&cx->budget, strlen(decoded) + 64) < 0) {
        free(decoded);
        free(text);
        return 1;
    } else {
        imap_host->folder_add(cx->sink, decoded, imap_folder_role(text, decoded));
        cx->found++;
        if (imap_account_folder_wanted(cx->a, decoded))
            cx->sig += imap_folder_sig(decoded);
    }
    free(decoded);
    free(text);
    return 0;
}

/* Whether the server lists `name` among its capabilities. */
static int has_cap(imap_conn *conn, const char *name)
{
    const char *p = imap_conn_caps(conn)->raw;
    size_t n = strlen(name);
    while (p != NULL && *p != '\0') {
        size_t len = strcspn(p, " ");
        if (len == n && strncasecmp(p, name, n) == 0)
            return 1;
        p += len;
        p += *p == ' ';
    }
    return 0;
}

static int send_list(imap_conn *conn, char *tag, char **error_r)
{
    /* RETURN (SPECIAL-USE) marks \Sent, \Junk ... on servers that have the
     * extension; others may still send the attributes with a plain LIST.
     * STATUS (MESSAGES) with LIST-STATUS: the bootstrap's hints. */
    int special = (imap_conn_caps(conn)->bits & IMAP_CAP_SPECIAL_USE) != 0;
    int status = has_cap(conn, "LIST-STATUS");
    const char *ret = special && status ? " RETURN (SPECIAL-USE STATUS (MESSAGES))"
                      : special         ? " RETURN (SPECIAL-USE)"
                      : status          ? " RETURN (STATUS (MESSAGES))"
                                        : "";
    return imap_send(conn, tag, error_r, "LIST \"\" \"*\"%a", ret);
}

mp_status imap_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    int reused = a->sync_conn != NULL;
    pthread_mutex_lock(&hint_lock);
    hints_prune(a, imap_host->now_ms());
    pthread_mutex_unlock(&hint_lock);
    for (int attempt = 0;; attempt++) {
        /* A new connection's LIST shares the round trip of its ID and
         * ENABLE: settled once the LIST is sent. */
        int fresh = a->sync_conn == NULL;
        mp_status st =
            fresh ? imap_sync_connect_deferred(a, &a->sync_conn, err) : MP_OK;
        if (st != MP_OK)
            return st;
        list_ctx cx = {.a = a, .sink = sink, .budget = {.limit = a->max_memory}};
        imap_status status = IMAP_NONE;
        char *error = NULL;
        char *text = NULL;
        char tag[16];
        int sent = send_list(a->sync_conn, tag, &error);
        if (fresh) {
            st = imap_account_settle(a, &a->sync_conn, err);
            if (st != MP_OK) {
                free(error);
                return st;
            }
        }
        if (imap_sync_finish(a->sync_conn, sent, tag, list_untagged, &cx, &status, &text,
                             &error) < 0) {
            free(text);
            if (cx.budget.over) {
                free(error);
                return imap_sync_over_budget(a, &a->sync_conn, "LIST", err);
            }
            if (reused && attempt == 0 && cx.found == 0 &&
                !imap_conn_timed_out(a->sync_conn)) {
                imap_conn_abort(&a->sync_conn);
                free(error);
                continue;
            }
            st = imap_sync_io_fail(a, &a->sync_conn, "LIST", error, err);
            free(error);
            return st;
        }
        if (status != IMAP_OK) {
            st = imap_sync_answer_fail(a, NULL, "LIST", NULL, status, text, err);
            free(text);
            free(error);
            return st;
        }
        free(text);
        free(error);
        /* Push on the loop notices a changed set and watches it anew. */
        atomic_store(&a->listed_sig, cx.sig);
        return MP_OK;
    }
}

mp_status imap_probe(mp_account *acct, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    imap_conn_close(&a->sync_conn);
    /* Without a stored profile the next connect records one even when
     * nothing changed, which is what an admin asking for a probe expects. */
    pthread_mutex_lock(&a->lock);
    a->have_profile = 0;
    pthread_mutex_unlock(&a->lock);
    mp_status st = imap_sync_connect_new(a, &a->sync_conn, err);
    if (st == MP_OK) {
        const imap_caps *caps = imap_conn_caps(a->sync_conn);
        imap_sync_log(a, MP_LOG_INFO, "probe: strategy %s, capabilities %s",
                      imap_strategy_name(imap_strategy_choose(
                          caps->bits, imap_conn_enabled(a->sync_conn))),
                      caps->raw != NULL ? caps->raw : "(none)");
    }
    return st;
}

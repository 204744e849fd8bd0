/* Folder discovery with LIST (SPECIAL-USE roles) and the probe slot. */
#include "imap_sync.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct list_ctx {
    imap_account *a;
    mp_folder_sink *sink;
    size_t found;
    size_t skipped;
    uint64_t sig; /* of the synced folders listed (imap_folder_sig) */
    imap_budget budget; /* what the host's folder list will hold */
} list_ctx;

/* "* LIST (\HasNoChildren \Sent) "/" Sent": attributes, delimiter, name. */
static int list_untagged(const imap_response *r, void *arg)
{
    list_ctx *cx = arg;
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

static int run_list(imap_conn *conn, list_ctx *cx, imap_status *status_r, char **text_r,
                    char **error_r)
{
    char tag[16];
    /* RETURN (SPECIAL-USE) marks \Sent, \Junk ... on servers that have the
     * extension; others may still send the attributes with a plain LIST. */
    int sent = (imap_conn_caps(conn)->bits & IMAP_CAP_SPECIAL_USE)
                   ? imap_send(conn, tag, error_r, "LIST \"\" \"*\" RETURN (SPECIAL-USE)")
                   : imap_send(conn, tag, error_r, "LIST \"\" \"*\"");
    return imap_sync_finish(conn, sent, tag, list_untagged, cx, status_r, text_r,
                            error_r);
}

mp_status imap_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    int reused = a->sync_conn != NULL;
    for (int attempt = 0;; attempt++) {
        mp_status st = imap_sync_connect(a, &a->sync_conn, err);
        if (st != MP_OK)
            return st;
        list_ctx cx = {.a = a, .sink = sink, .budget = {.limit = a->max_memory}};
        imap_status status = IMAP_NONE;
        char *error = NULL;
        char *text = NULL;
        if (run_list(a->sync_conn, &cx, &status, &text, &error) < 0) {
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
    mp_status st = imap_account_connect(a, &a->sync_conn, err);
    if (st == MP_OK) {
        const imap_caps *caps = imap_conn_caps(a->sync_conn);
        imap_sync_log(a, MP_LOG_INFO, "probe: strategy %s, capabilities %s",
                      imap_strategy_name(imap_strategy_choose(
                          caps->bits, imap_conn_enabled(a->sync_conn))),
                      caps->raw != NULL ? caps->raw : "(none)");
    }
    return st;
}

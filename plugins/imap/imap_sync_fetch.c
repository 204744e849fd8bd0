/* The fetch slot: one message's raw bytes on the account's own fetch
 * connection (it may run while a sync holds the other one). */
#include "imap_sync.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct fetch_ctx {
    uint32_t uid;
    mp_raw *raw;
    int found;
    int oom;
    int64_t size; /* RFC822.SIZE, -1 until seen */
} fetch_ctx;

static int size_untagged(const imap_response *r, void *arg)
{
    fetch_ctx *cx = arg;
    if (r->kind != IMAP_R_UNTAGGED || r->keyword == NULL ||
        strcasecmp(r->keyword, "FETCH") != 0)
        return 0;
    const imap_token *u = imap_fetch_item(r, "UID");
    const imap_token *sz = imap_fetch_item(r, "RFC822.SIZE");
    uint64_t uid = 0, size = 0;
    if (u != NULL && imap_token_u64(u, &uid) == 0 && uid == cx->uid && sz != NULL &&
        imap_token_u64(sz, &size) == 0 && size <= INT64_MAX)
        cx->size = (int64_t)size;
    return 0;
}

static int fetch_untagged(const imap_response *r, void *arg)
{
    fetch_ctx *cx = arg;
    if (cx->found || r->kind != IMAP_R_UNTAGGED || r->keyword == NULL ||
        strcasecmp(r->keyword, "FETCH") != 0)
        return 0;
    const imap_token *u = imap_fetch_item(r, "UID");
    const imap_token *body = imap_fetch_item(r, "BODY[]");
    uint64_t uid = 0;
    if (u == NULL || imap_token_u64(u, &uid) < 0 || uid != cx->uid || body == NULL ||
        body->type != IMAP_T_STRING || body->str == NULL)
        return 0;
    cx->raw->data = imap_host->alloc(body->len ? body->len : 1);
    if (cx->raw->data == NULL) {
        cx->oom = 1;
        return 0;
    }
    memcpy(cx->raw->data, body->str, body->len);
    cx->raw->len = body->len;
    cx->found = 1;
    return 0;
}

mp_status imap_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                     mp_error *err)
{
    imap_account *a = imap_sync_account(acct);
    char *folder = NULL;
    uint32_t uidvalidity = 0, uid = 0;
    if (imap_id_parse(msg->id, &folder, &uidvalidity, &uid) < 0)
        return mp_fail(err, MP_SKIP, "message id \"%s\" is not an imap id",
                       msg->id != NULL ? msg->id : "(none)");
    const char *box_name =
        msg->folder != NULL && msg->folder[0] != '\0' ? msg->folder : folder;
    imap_box box;
    mp_status st = imap_sync_examine(a, &a->fetch_conn, box_name, IMAP_EXAMINE_PLAIN,
                                     NULL, &box, err);
    if (st != MP_OK) {
        free(folder);
        return st;
    }
    uint32_t current = box.uidvalidity;
    imap_box_clear(&box);
    if (current != uidvalidity) {
        st = mp_fail(err, MP_SKIP, "message \"%s\": folder UIDVALIDITY is now %u",
                     msg->id, (unsigned)current);
        free(folder);
        return st;
    }
    fetch_ctx cx = {.uid = uid, .raw = raw_r, .size = -1};
    imap_status status = IMAP_NONE;
    char *error = NULL;
    char tag[16];
    char *text = NULL;
    /* The size first: a body over max_message_size is refused with a
     * reason instead of failing on the client's literal bound. */
    int rc = imap_sync_finish(
        a->fetch_conn,
        imap_send(a->fetch_conn, tag, &error, "UID FETCH %u (UID RFC822.SIZE)", uid), tag,
        size_untagged, &cx, &status, &text, &error);
    if (rc == 0 && status == IMAP_OK && cx.size > 0 &&
        (uint64_t)cx.size > a->max_message) {
        st = mp_fail(err, MP_SKIP,
                     "message \"%s\" is %lld bytes, over this account's max_message_size "
                     "of %llu bytes: its body is not fetched",
                     msg->id, (long long)cx.size, (unsigned long long)a->max_message);
        free(text);
        free(error);
        free(folder);
        return st;
    }
    if (rc == 0 && status == IMAP_OK) {
        free(text);
        text = NULL;
        /* BODY.PEEK: reading must never set \Seen at the server. */
        rc = imap_sync_finish(
            a->fetch_conn,
            imap_send(a->fetch_conn, tag, &error, "UID FETCH %u (UID BODY.PEEK[])", uid),
            tag, fetch_untagged, &cx, &status, &text, &error);
    }
    if (rc < 0)
        st = imap_sync_io_fail(a, &a->fetch_conn, "UID FETCH", error, err);
    else if (status != IMAP_OK)
        st = imap_sync_answer_fail(a, NULL, "UID FETCH", box_name, status, text, err);
    else if (cx.oom)
        st = mp_fail(err, MP_RETRY, "out of memory for message \"%s\"", msg->id);
    else if (!cx.found)
        st = mp_fail(err, MP_SKIP, "message \"%s\" no longer exists", msg->id);
    free(text);
    free(error);
    free(folder);
    if (st != MP_OK && cx.found) {
        imap_host->free(raw_r->data);
        raw_r->data = NULL;
        raw_r->len = 0;
    }
    return st;
}

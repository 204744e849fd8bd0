/* Message summaries: public ids, lookup and newest-first listing. */
#include "store/store-private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

void mps_message_public_id(const char *account, const char *provider_id, char *out,
                           size_t size)
{
    /* The NUL separator keeps ("ab","c") and ("a","bc") apart. */
    size_t alen = strlen(account), plen = strlen(provider_id);
    char *buf = mpu_malloc(alen + 1 + plen);
    memcpy(buf, account, alen);
    buf[alen] = '\0';
    memcpy(buf + alen + 1, provider_id, plen);
    char id[26];
    id[0] = 'm';
    mpu_sha256_hex(buf, alen + 1 + plen, 12, id + 1);
    free(buf);
    mpu_strlcpy(out, id, size);
}

void mps__message_read(mps__stmt *st, mps_message *m)
{
    m->id = mps__col_text(st, 0);
    m->account = mps__col_text(st, 1);
    m->folder = mps__col_text(st, 2);
    m->provider_id = mps__col_text(st, 3);
    m->ref = mps__col_text(st, 4);
    m->uid = (uint32_t)mps__col_int64(st, 5);
    m->message_id = mps__col_text(st, 6);
    m->subject = mps__col_text(st, 7);
    m->from = mps__col_text(st, 8);
    m->to = mps__col_text(st, 9);
    m->date = mps__col_int64(st, 10);
    m->size = mps__col_int64(st, 11);
    m->thread_id = mps__col_text(st, 12);
    m->flags = mps__col_text(st, 13);
    m->deleted = mps__col_int(st, 14);
    m->has_body = mps__col_int(st, 15);
    m->indexed_ms = mps__col_int64(st, 16);
    m->folders = NULL;
    m->n_folders = 0;
}

/* All memberships of a message, primary first, then by name. */
static int read_folders(mps_store *s, mps_message *m, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT folder FROM memberships WHERE message = :id"
                     " ORDER BY folder IS DISTINCT FROM :primary, folder",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", m->id);
    mps__bind_text(st, ":primary", m->folder);
    size_t cap = 0;
    int rc;
    while ((rc = mps__step(st)) == MPS__ROW) {
        if (m->n_folders == cap) {
            cap = cap ? cap * 2 : 4;
            m->folders = mpu_realloc(m->folders, cap * sizeof *m->folders);
        }
        m->folders[m->n_folders++] = mps__col_text(st, 0);
    }
    mps__finish(s, st);
    if (rc != MPS__DONE)
        return mps__fail(s, error_r, "store: read memberships");
    return 0;
}

int mps_message_get(mps_store *s, const char *id, mps_message *msg_r, char **error_r)
{
    memset(msg_r, 0, sizeof *msg_r);
    mps__stmt *st;
    if (mps__prepare(s, "SELECT " MPS__MESSAGE_COLS " FROM messages m WHERE m.id = :id",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", id);
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc = mps__step_row(s, st, error_r, "store: read message");
    if (rc == 0) {
        mps__message_read(st, msg_r);
    }
    mps__finish(s, st);
    if (rc == 0 && read_folders(s, msg_r, error_r) < 0) {
        mps_message_clear(msg_r);
        return -1;
    }
    return rc;
}

/* The (date, id) position of `before` within the account. */
static int page_anchor(mps_store *s, const char *account, const char *before,
                       int64_t *date_r, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s, "SELECT date FROM messages WHERE id = :id AND account = :account",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":id", before);
    mps__bind_text(st, ":account", account);
    int rc = mps__step(st);
    if (rc == MPS__ROW) {
        *date_r = mps__col_int64(st, 0);
        rc = 0;
    } else if (rc == MPS__DONE) {
        rc = mps__error(error_r, "unknown message id in before");
    } else {
        rc = mps__fail(s, error_r, "store: read message");
    }
    mps__finish(s, st);
    return rc;
}

int mps_messages_list(mps_store *s, const char *account, const char *folder,
                      const char *before, size_t limit, mps_message **list_r, size_t *n_r,
                      char **error_r)
{
    *list_r = NULL;
    *n_r = 0;
    int64_t before_date = 0;
    if (before != NULL && page_anchor(s, account, before, &before_date, error_r) < 0)
        return -1;
    /* A folder is listed through its memberships' (date, id) index, which
     * holds only live messages. */
    char *sql =
        folder != NULL
            ? mpu_asprintf(
                  "SELECT " MPS__MESSAGE_COLS " FROM memberships ms"
                  " JOIN messages m ON m.id = ms.message"
                  " WHERE ms.account = :account AND ms.folder = :folder%s"
                  " ORDER BY ms.date DESC, ms.message DESC LIMIT :limit",
                  before != NULL ? " AND (ms.date < :bdate OR (ms.date = :bdate AND"
                                   " ms.message < :bid))"
                                 : "")
            : mpu_asprintf(
                  "SELECT " MPS__MESSAGE_COLS " FROM messages m"
                  " WHERE m.account = :account AND m.deleted = 0%s"
                  " ORDER BY m.date DESC, m.id DESC LIMIT :limit",
                  before != NULL
                      ? " AND (m.date < :bdate OR (m.date = :bdate AND m.id < :bid))"
                      : "");
    mps__stmt *st;
    int rc = mps__prepare(s, sql, &st, error_r);
    free(sql);
    if (rc < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    mps__bind_text(st, ":folder", folder);
    mps__bind_int(st, ":bdate", before_date);
    mps__bind_text(st, ":bid", before);
    mps__bind_int(st, ":now", mpu_now_ms());
    mps__bind_int(st, ":limit", limit > INT64_MAX ? INT64_MAX : (int64_t)limit);

    mps_message *list = NULL;
    size_t n = 0, cap = 0;
    while ((rc = mps__step(st)) == MPS__ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            list = mpu_realloc(list, cap * sizeof *list);
        }
        mps__message_read(st, &list[n++]);
    }
    if (rc != MPS__DONE) {
        mps__fail(s, error_r, "store: list messages");
        mps__finish(s, st);
        mps_messages_free(&list, n);
        return -1;
    }
    mps__finish(s, st);
    *list_r = list;
    *n_r = n;
    return 0;
}

int mps_messages_each(mps_store *s, const char *account, const char *folder,
                      mps_message_cb cb, void *arg, char **error_r)
{
    mps__stmt *st;
    if (mps__prepare(s,
                     "SELECT " MPS__MESSAGE_COLS ", ms.uid FROM memberships ms"
                     " JOIN messages m ON m.id = ms.message"
                     " WHERE ms.account = :account AND ms.folder = :folder"
                     " ORDER BY ms.uid, m.provider_id",
                     &st, error_r) < 0)
        return -1;
    mps__bind_text(st, ":account", account);
    mps__bind_text(st, ":folder", folder);
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc;
    while ((rc = mps__step(st)) == MPS__ROW) {
        mps_message m;
        mps__message_read(st, &m);
        /* Its folder and UID here, not those of its primary folder. */
        m.uid = (uint32_t)mps__col_int64(st, MPS__MESSAGE_NCOLS);
        free(m.folder);
        m.folder = mpu_strdup(folder);
        int stop = cb(&m, arg);
        mps_message_clear(&m);
        if (stop) {
            rc = MPS__DONE;
            break;
        }
    }
    if (rc != MPS__DONE) {
        mps__fail(s, error_r, "store: iterate messages");
        mps__finish(s, st);
        return -1;
    }
    mps__finish(s, st);
    return 0;
}

void mps_message_clear(mps_message *m)
{
    if (m == NULL)
        return;
    free(m->id);
    free(m->account);
    free(m->folder);
    free(m->provider_id);
    free(m->ref);
    free(m->message_id);
    free(m->subject);
    free(m->from);
    free(m->to);
    free(m->thread_id);
    free(m->flags);
    for (size_t i = 0; i < m->n_folders; i++)
        free(m->folders[i]);
    free(m->folders);
    memset(m, 0, sizeof *m);
}

void mps_messages_free(mps_message **list, size_t n)
{
    if (list == NULL || *list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        mps_message_clear(&(*list)[i]);
    free(*list);
    *list = NULL;
}

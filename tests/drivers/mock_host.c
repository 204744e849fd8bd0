/* Mock host for driver unit tests: records instead of storing, tables
 * instead of files, the real core client for HTTP. */
#include "mock_host.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "host/host.h"
#include "host/host_http.h"
#include "host/host_oauth.h"
#include "host/host_push_status.h"
#include "util/util.h"

typedef struct kv {
    struct kv *next;
    char *key, *value;
    int is_list;
} kv;

typedef struct line {
    struct line *next;
    char *text;
} line;

typedef struct mock_timer {
    struct mock_timer *next;
    mp_timer_cb cb;
    void *arg;
    int fired;
} mock_timer;

struct mp_instance {
    mpt_mock *m;
};

struct mp_config {
    mpt_mock *m;
};

struct mp_account {
    struct mp_account *next;
    mpt_mock *m;
    char *id;
    void *state;
    char *push_state;
    char *profile;
    unsigned http_limit;
};

struct mp_batch {
    struct mp_batch *next;
    struct mp_account *acct;
    char *folder;
    kv *staged_state;  /* value NULL: a deletion                          */
    int acursor_staged;
    char *acursor;     /* staged account cursor (NULL: clear)            */
};

struct mp_folder_sink {
    mpt_mock *m;
};

struct mp_push_reply {
    int status;
    char *body;
};

struct mp_timer {
    mock_timer t;
};

struct mp_watch {
    int fd;
};

struct mpt_mock {
    pthread_mutex_t lock;
    struct mp_instance inst;
    struct mp_config cfg;
    struct mp_folder_sink sink;
    struct mp_push_reply reply;
    void *inst_state;
    const mp_config_key *declared[8];
    size_t n_declared;
    kv *config, *secrets, *cursors, *settings;
    kv *state;    /* "<account>\n<key>" -> committed driver state         */
    kv *acursors; /* account id -> committed account cursor             */
    struct mp_account *accounts;
    struct mp_batch *batches;
    mpt_mock_change *changes;
    size_t n_changes;
    size_t commits;
    line *logs, **logs_tail;
    size_t n_logs;
    char **folders;
    mp_folder_role *roles;
    size_t n_folders;
    unsigned sync_nows, http_calls;
    char *last_hint;
    char *ca_file;
    int64_t now_ms;
    struct mp_timer **timers;
    size_t n_timers;
    mpo_service *oauth; /* the real token service; rotations go to `state` */
    unsigned oauth_tokens, oauth_rejects;
};

/* One mock per process at a time carries the slots that get no context
 * (now_ms, core_setting, alloc). */
static mpt_mock *current;

static kv *kv_find(kv *list, const char *key)
{
    for (; list != NULL; list = list->next)
        if (strcmp(list->key, key) == 0)
            return list;
    return NULL;
}

static void kv_put(kv **list, const char *key, const char *value, int append)
{
    kv *e = append ? NULL : kv_find(*list, key);
    if (e != NULL) {
        free(e->value);
        e->value = mpu_strdup(value);
        return;
    }
    e = mpu_calloc(1, sizeof *e);
    e->key = mpu_strdup(key);
    e->value = mpu_strdup(value);
    e->is_list = append;
    /* Appended at the tail so list entries keep their order. */
    kv **p = list;
    while (*p != NULL)
        p = &(*p)->next;
    *p = e;
}

static void kv_free(kv **list)
{
    while (*list != NULL) {
        kv *e = *list;
        *list = e->next;
        free(e->key);
        free(e->value);
        free(e);
    }
}

static char *cursor_key(const struct mp_account *a, const char *folder)
{
    return mpu_asprintf("%s\n%s", a->id, folder != NULL ? folder : "");
}

static void state_set_in(kv **list, const char *key, const char *value);
static void state_set_locked(mpt_mock *m, const char *key, const char *value);

/* ---- slots ---- */

static const char *level_names[] = {"error", "warning", "info", "debug"};

static void m_log(mp_instance *inst, mp_account *acct, mp_log_level level, const char *fmt,
                  ...) MP_PRINTF(4, 5);

static void m_log(mp_instance *inst, mp_account *acct, mp_log_level level, const char *fmt,
                  ...)
{
    mpt_mock *m = inst != NULL ? inst->m : acct != NULL ? acct->m : current;
    va_list ap;
    va_start(ap, fmt);
    char *text = mpu_vasprintf(fmt, ap);
    va_end(ap);
    line *l = mpu_calloc(1, sizeof *l);
    l->text = mpu_asprintf("%s %s: %s", level <= MP_LOG_DEBUG ? level_names[level] : "?",
                           acct != NULL ? acct->id : "-", text);
    free(text);
    pthread_mutex_lock(&m->lock);
    *m->logs_tail = l;
    m->logs_tail = &l->next;
    m->n_logs++;
    pthread_mutex_unlock(&m->lock);
}

static void *m_alloc(size_t size)
{
    return mpu_malloc(size);
}

static void m_free(void *p)
{
    free(p);
}

static const char *declared_default(mpt_mock *m, const char *key)
{
    for (size_t i = 0; i < m->n_declared; i++)
        for (const mp_config_key *k = m->declared[i]; k->name != NULL; k++)
            if (strcmp(k->name, key) == 0)
                return k->default_value;
    return NULL;
}

static const char *m_config_string(const mp_config *cfg, const char *key)
{
    kv *e = kv_find(cfg->m->config, key);
    return e != NULL ? e->value : declared_default(cfg->m, key);
}

static int64_t m_config_int(const mp_config *cfg, const char *key)
{
    const char *v = m_config_string(cfg, key);
    int64_t n = 0;
    if (v != NULL && mpu_parse_i64(v, &n) < 0)
        n = 0;
    return n;
}

static int m_config_bool(const mp_config *cfg, const char *key)
{
    const char *v = m_config_string(cfg, key);
    return v != NULL && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
                         strcasecmp(v, "yes") == 0);
}

static size_t m_config_list_len(const mp_config *cfg, const char *key)
{
    size_t n = 0;
    for (kv *e = cfg->m->config; e != NULL; e = e->next)
        n += e->is_list && strcmp(e->key, key) == 0;
    return n;
}

static const char *m_config_list_string(const mp_config *cfg, const char *key, size_t index)
{
    for (kv *e = cfg->m->config; e != NULL; e = e->next)
        if (e->is_list && strcmp(e->key, key) == 0 && index-- == 0)
            return e->value;
    return NULL;
}

static mp_status m_read_secret(const mp_config *cfg, const char *key, char **secret_r,
                               size_t *len_r, mp_error *err)
{
    kv *e = kv_find(cfg->m->secrets, key);
    *secret_r = NULL;
    if (len_r != NULL)
        *len_r = 0;
    if (e == NULL)
        return mp_fail(err, MP_FATAL, "%s: no secret (mock host)", key);
    *secret_r = mpu_strdup(e->value);
    if (len_r != NULL)
        *len_r = strlen(e->value);
    return MP_OK;
}

static void m_free_secret(char **secret)
{
    mpu_secret_free(secret);
}

static const char *m_account_id(mp_account *acct)
{
    return acct->id;
}

static mp_instance *m_account_instance(mp_account *acct)
{
    return &acct->m->inst;
}

static void *m_account_state(mp_account *acct)
{
    return acct->state;
}

static void *m_instance_state(mp_instance *inst)
{
    return inst->m->inst_state;
}

static mp_account *m_account_find(mp_instance *inst, const char *id)
{
    for (struct mp_account *a = inst->m->accounts; a != NULL; a = a->next)
        if (strcmp(a->id, id) == 0)
            return a;
    return NULL;
}

static const char *m_cursor_get(mp_account *acct, const char *folder)
{
    return mpt_mock_cursor(acct->m, acct, folder);
}

static mp_status m_batch_change_folders_impl(mp_batch *batch, const mp_change *c,
                                             const mp_folders *folders, mp_error *err);

static char *folders_text(const mp_folders *f)
{
    char *out = mpu_strdup("");
    const struct {
        const char *tag;
        const char *const *names;
        size_t n;
    } parts[] = {{"=", f->now_in, f->n_now_in}, {"+", f->added, f->n_added},
                 {"-", f->removed, f->n_removed}};
    for (size_t p = 0; p < 3; p++) {
        if (parts[p].names == NULL || (p > 0 && parts[p].n == 0))
            continue;
        for (size_t i = 0; i == 0 || i < parts[p].n; i++) {
            const char *name = i < parts[p].n ? parts[p].names[i] : "";
            char *next = mpu_asprintf("%s%s%s%s", out, *out != '\0' ? " " : "",
                                      parts[p].tag, name);
            free(out);
            out = next;
        }
    }
    return out;
}

static mp_status m_batch_change(mp_batch *batch, const mp_change *c, mp_error *err)
{
    return m_batch_change_folders_impl(batch, c, NULL, err);
}

static mp_status m_batch_change_folders_impl(mp_batch *batch, const mp_change *c,
                                             const mp_folders *folders, mp_error *err)
{
    mpt_mock *m = batch->acct->m;
    if (c == NULL || c->id == NULL)
        return mp_fail(err, MP_FATAL, "change without id");
    pthread_mutex_lock(&m->lock);
    m->changes = mpu_realloc(m->changes, (m->n_changes + 1) * sizeof *m->changes);
    mpt_mock_change *r = &m->changes[m->n_changes++];
    memset(r, 0, sizeof *r);
    r->account = mpu_strdup(batch->acct->id);
    r->folder = mpu_strdup(batch->folder);
    r->kind = c->kind;
    r->id = mpu_strdup(c->id);
    r->subject = mpu_strdup(c->subject);
    r->flags = mpu_strdup(c->flags);
    r->folders = folders != NULL ? folders_text(folders) : NULL;
    pthread_mutex_unlock(&m->lock);
    return MP_OK;
}

static mp_status m_batch_change_folders(mp_batch *batch, const mp_change *c,
                                        const mp_folders *folders, mp_error *err)
{
    return m_batch_change_folders_impl(batch, c, folders, err);
}

static mp_status m_batch_commit(mp_batch *batch, const char *cursor, const char *backfill_pos,
                                int backfill_done, mp_error *err)
{
    (void)backfill_pos;
    (void)backfill_done;
    (void)err;
    mpt_mock *m = batch->acct->m;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n_changes; i++)
        if (strcmp(m->changes[i].account, batch->acct->id) == 0 &&
            strcmp(m->changes[i].folder, batch->folder) == 0)
            m->changes[i].committed = 1;
    m->commits++;
    /* Staged account cursor and state records land with the commit. */
    while (batch->staged_state != NULL) {
        kv *e = batch->staged_state;
        batch->staged_state = e->next;
        char *k = mpu_asprintf("%s\n%s", batch->acct->id, e->key);
        state_set_locked(m, k, e->value);
        free(k);
        free(e->key);
        free(e->value);
        free(e);
    }
    if (batch->acursor_staged) {
        state_set_in(&m->acursors, batch->acct->id, batch->acursor);
        free(batch->acursor);
        batch->acursor = NULL;
        batch->acursor_staged = 0;
    }
    pthread_mutex_unlock(&m->lock);
    if (cursor != NULL)
        mpt_mock_cursor_set(m, batch->acct, batch->folder, cursor);
    return MP_OK;
}

/* ---- ABI 1.1 slots ---- */

/* Put (value not NULL) or remove a key of `list`. */
static void state_set_in(kv **list, const char *key, const char *value)
{
    if (value != NULL) {
        kv_put(list, key, value, 0);
        return;
    }
    for (kv **p = list; *p != NULL; p = &(*p)->next) {
        if (strcmp((*p)->key, key) == 0) {
            kv *e = *p;
            *p = e->next;
            free(e->key);
            free(e->value);
            free(e);
            return;
        }
    }
}

static void state_set_locked(mpt_mock *m, const char *key, const char *value)
{
    state_set_in(&m->state, key, value);
}

/* The daemon's bounds (core/store/store.h MPS_STATE_*). */
static int state_bad(const char *key, const char *value, mp_error *err)
{
    if (key == NULL || *key == '\0' || strlen(key) > 128) {
        mp_fail(err, MP_FATAL, "driver state key must be 1 to 128 bytes");
        return 1;
    }
    if (value != NULL && strlen(value) > 65536) {
        mp_fail(err, MP_FATAL, "driver state value over 65536 bytes");
        return 1;
    }
    return 0;
}

static mp_status m_state_get(mp_account *acct, const char *key, char **value_r, mp_error *err)
{
    *value_r = NULL;
    if (state_bad(key, NULL, err))
        return MP_FATAL;
    const char *v = mpt_mock_state(acct->m, acct, key);
    if (v == NULL)
        return MP_SKIP;
    *value_r = mpu_strdup(v);
    return MP_OK;
}

static mp_status m_state_put(mp_account *acct, const char *key, const char *value,
                             mp_error *err)
{
    if (state_bad(key, value, err))
        return MP_FATAL;
    mpt_mock_state_set(acct->m, acct, key, value);
    return MP_OK;
}

static mp_status m_batch_state(mp_batch *batch, const char *key, const char *value,
                               mp_error *err)
{
    mpt_mock *m = batch->acct->m;
    if (state_bad(key, value, err))
        return MP_FATAL;
    pthread_mutex_lock(&m->lock);
    kv *e = kv_find(batch->staged_state, key);
    if (e == NULL) {
        e = mpu_calloc(1, sizeof *e);
        e->key = mpu_strdup(key);
        e->next = batch->staged_state;
        batch->staged_state = e;
    }
    free(e->value);
    e->value = mpu_strdup(value);
    pthread_mutex_unlock(&m->lock);
    return MP_OK;
}

static const char *m_account_cursor(mp_account *acct)
{
    return mpt_mock_account_cursor(acct->m, acct);
}

static void m_batch_account_cursor(mp_batch *batch, const char *cursor)
{
    mpt_mock *m = batch->acct->m;
    pthread_mutex_lock(&m->lock);
    free(batch->acursor);
    batch->acursor = mpu_strdup(cursor);
    batch->acursor_staged = 1;
    pthread_mutex_unlock(&m->lock);
}

static void m_http_limit(mp_account *acct, unsigned max)
{
    mpt_mock *m = acct->m;
    pthread_mutex_lock(&m->lock);
    acct->http_limit = max;
    pthread_mutex_unlock(&m->lock);
    mphost_http_limit_run(acct->id, max);
}

static mp_status m_http_ex(mp_account *acct, const mp_http_request *req,
                           const mp_http_options *opt, mp_http_response *resp_r,
                           mp_error *err)
{
    mpt_mock *m = acct != NULL ? acct->m : current;
    pthread_mutex_lock(&m->lock);
    m->http_calls++;
    pthread_mutex_unlock(&m->lock);
    return mphost_http_run_ex(acct != NULL ? acct->id : NULL, m->ca_file, req, opt, resp_r,
                              err);
}

/* OAuth2: the real service and the daemon's mapping (host_oauth.c); a
 * rotated refresh token lands in the mock's driver state under
 * MPO_STATE_KEY, as the daemon keeps it in the store's. */
static int m_oauth_persist(void *arg, const char *account, const char *record,
                           char **error_r)
{
    (void)error_r;
    mpt_mock *m = arg;
    char *k = mpu_asprintf("%s\n%s", account, MPO_STATE_KEY);
    pthread_mutex_lock(&m->lock);
    state_set_locked(m, k, record);
    pthread_mutex_unlock(&m->lock);
    free(k);
    return 0;
}

static int m_oauth_load(void *arg, const char *account, char **record_r, char **error_r)
{
    (void)error_r;
    mpt_mock *m = arg;
    char *k = mpu_asprintf("%s\n%s", account, MPO_STATE_KEY);
    pthread_mutex_lock(&m->lock);
    kv *e = kv_find(m->state, k);
    *record_r = e != NULL ? mpu_strdup(e->value) : NULL;
    pthread_mutex_unlock(&m->lock);
    free(k);
    return *record_r != NULL ? 0 : 1;
}

static mp_status m_oauth_setup(mp_account *acct, const mp_oauth_params *params,
                               mp_error *err)
{
    return mphost_oauth_setup_run(acct->m->oauth, acct->id, params, acct->m->ca_file, err);
}

static mp_status m_oauth_token(mp_account *acct, char **token_r, mp_error *err)
{
    mpt_mock *m = acct->m;
    pthread_mutex_lock(&m->lock);
    m->oauth_tokens++;
    pthread_mutex_unlock(&m->lock);
    return mphost_oauth_token_run(m->oauth, acct->id, token_r, err);
}

static void m_oauth_reject(mp_account *acct, const char *token)
{
    mpt_mock *m = acct->m;
    pthread_mutex_lock(&m->lock);
    m->oauth_rejects++;
    pthread_mutex_unlock(&m->lock);
    mphost_oauth_reject_run(m->oauth, acct->id, token);
}

static void m_batch_reset(mp_batch *batch, const char *reason)
{
    m_log(NULL, batch->acct, MP_LOG_INFO, "folder reset: %s", reason);
}

static int64_t m_batch_deadline_ms(mp_batch *batch)
{
    (void)batch;
    return 0;
}

static void m_folder_add(mp_folder_sink *sink, const char *name, mp_folder_role role)
{
    mpt_mock *m = sink->m;
    pthread_mutex_lock(&m->lock);
    m->folders = mpu_realloc(m->folders, (m->n_folders + 1) * sizeof *m->folders);
    m->roles = mpu_realloc(m->roles, (m->n_folders + 1) * sizeof *m->roles);
    m->folders[m->n_folders] = mpu_strdup(name);
    m->roles[m->n_folders++] = role;
    pthread_mutex_unlock(&m->lock);
}

static void m_sync_now(mp_account *acct, const char *folder, const char *reason)
{
    (void)folder;
    (void)reason;
    pthread_mutex_lock(&acct->m->lock);
    acct->m->sync_nows++;
    pthread_mutex_unlock(&acct->m->lock);
}

static void replace(mpt_mock *m, char **slot, const char *value)
{
    pthread_mutex_lock(&m->lock);
    free(*slot);
    *slot = mpu_strdup(value);
    pthread_mutex_unlock(&m->lock);
}

static void m_push_state(mp_account *acct, const char *state)
{
    replace(acct->m, &acct->push_state, state);
}

static void m_push_status(mp_account *acct, mp_push_state state, const char *text)
{
    int live = 0;
    char *t = mphost_push_status_text(state, text, &live);
    m_push_state(acct, t);
    free(t);
}

static void m_set_profile(mp_account *acct, const char *json)
{
    replace(acct->m, &acct->profile, json);
}

static const char *m_request_header(const mp_push_request *req, const char *name)
{
    const char *const *h = req->host_private;
    size_t n = strlen(name);
    for (; h != NULL && *h != NULL; h++) {
        if (strncasecmp(*h, name, n) == 0 && (*h)[n] == ':') {
            const char *v = *h + n + 1;
            while (*v == ' ')
                v++;
            return v;
        }
    }
    return NULL;
}

static mp_status m_push_hint(mp_account *acct, const char *folder, const char *cursor_hint,
                             mp_error *err)
{
    (void)err;
    replace(acct->m, &acct->m->last_hint, cursor_hint);
    m_sync_now(acct, folder, "push hint");
    return MP_OK;
}

static void m_push_reply(mp_push_reply *reply, int status, const char *content_type,
                         const char *body, size_t len)
{
    (void)content_type;
    reply->status = status;
    free(reply->body);
    reply->body = body != NULL ? mpu_strndup(body, len) : NULL;
}

static mp_status m_http(mp_account *acct, const mp_http_request *req, mp_http_response *resp_r,
                        mp_error *err)
{
    mpt_mock *m = acct != NULL ? acct->m : current;
    pthread_mutex_lock(&m->lock);
    m->http_calls++;
    pthread_mutex_unlock(&m->lock);
    return mphost_http_run(acct != NULL ? acct->id : NULL, m->ca_file, req, resp_r, err);
}

static mp_timer *m_timer_add(mp_account *acct, uint32_t after_ms, mp_timer_cb cb, void *arg)
{
    (void)after_ms;
    mpt_mock *m = acct != NULL ? acct->m : current;
    struct mp_timer *t = mpu_calloc(1, sizeof *t);
    t->t.cb = cb;
    t->t.arg = arg;
    m->timers = mpu_realloc(m->timers, (m->n_timers + 1) * sizeof *m->timers);
    m->timers[m->n_timers++] = t;
    return t;
}

static void m_timer_cancel(mp_timer **timer)
{
    if (timer == NULL || *timer == NULL)
        return;
    mpt_mock *m = current;
    for (size_t i = 0; i < m->n_timers; i++) {
        if (m->timers[i] == *timer) {
            memmove(&m->timers[i], &m->timers[i + 1],
                    (m->n_timers - i - 1) * sizeof *m->timers);
            m->n_timers--;
            break;
        }
    }
    free(*timer);
    *timer = NULL;
}

static mp_watch *m_watch_fd(mp_account *acct, int fd, unsigned events, mp_watch_cb cb,
                            void *arg)
{
    (void)acct;
    (void)events;
    (void)cb;
    (void)arg;
    struct mp_watch *w = mpu_calloc(1, sizeof *w);
    w->fd = fd;
    return w;
}

static void m_watch_update(mp_watch *watch, unsigned events)
{
    (void)watch;
    (void)events;
}

static void m_watch_cancel(mp_watch **watch)
{
    if (watch == NULL)
        return;
    free(*watch);
    *watch = NULL;
}

static int64_t m_now_ms(void)
{
    return current != NULL && current->now_ms != 0 ? current->now_ms : mpu_now_ms();
}

static mp_status m_stored_messages(mp_account *acct, const char *folder, mp_stored_cb cb,
                                   void *arg, mp_error *err)
{
    (void)err;
    mpt_mock *m = acct->m;
    for (size_t i = 0; i < m->n_changes; i++) {
        const mpt_mock_change *c = &m->changes[i];
        if (!c->committed || c->kind == MP_CHANGE_DELETED || strcmp(c->account, acct->id) ||
            strcmp(c->folder, folder))
            continue;
        int deleted = 0;
        for (size_t j = i + 1; j < m->n_changes && !deleted; j++)
            deleted = m->changes[j].committed && m->changes[j].kind == MP_CHANGE_DELETED &&
                      strcmp(m->changes[j].id, c->id) == 0 &&
                      strcmp(m->changes[j].folder, folder) == 0;
        if (deleted || c->kind == MP_CHANGE_UPDATED)
            continue;
        mp_stored_message sm = {c->id, NULL, 0, NULL, 0, -1, c->flags};
        if (cb(&sm, arg))
            break;
    }
    return MP_OK;
}

static int64_t m_core_setting(const char *name)
{
    kv *e = current != NULL ? kv_find(current->settings, name) : NULL;
    int64_t v = -1;
    if (e != NULL && mpu_parse_i64(e->value, &v) < 0)
        v = -1;
    return v;
}

static const mp_host mock_table = {
    .abi_major = MP_ABI_MAJOR,
    .abi_minor = MP_ABI_MINOR,
    .struct_size = sizeof(mp_host),
    .log = m_log,
    .alloc = m_alloc,
    .free = m_free,
    .config_string = m_config_string,
    .config_int = m_config_int,
    .config_bool = m_config_bool,
    .config_list_len = m_config_list_len,
    .config_list_string = m_config_list_string,
    .read_secret = m_read_secret,
    .free_secret = m_free_secret,
    .account_id = m_account_id,
    .account_instance = m_account_instance,
    .account_state = m_account_state,
    .instance_state = m_instance_state,
    .account_find = m_account_find,
    .cursor_get = m_cursor_get,
    .batch_change = m_batch_change,
    .batch_commit = m_batch_commit,
    .batch_reset = m_batch_reset,
    .batch_deadline_ms = m_batch_deadline_ms,
    .folder_add = m_folder_add,
    .sync_now = m_sync_now,
    .push_state = m_push_state,
    .set_profile = m_set_profile,
    .request_header = m_request_header,
    .push_hint = m_push_hint,
    .push_reply = m_push_reply,
    .http = m_http,
    .http_free = mphost_http_free,
    .timer_add = m_timer_add,
    .timer_cancel = m_timer_cancel,
    .watch_fd = m_watch_fd,
    .watch_update = m_watch_update,
    .watch_cancel = m_watch_cancel,
    .now_ms = m_now_ms,
    .stored_messages = m_stored_messages,
    .core_setting = m_core_setting,
    /* added in ABI 1.1 */
    .state_get = m_state_get,
    .state_put = m_state_put,
    .batch_state = m_batch_state,
    .account_cursor = m_account_cursor,
    .batch_account_cursor = m_batch_account_cursor,
    .batch_change_folders = m_batch_change_folders,
    .http_limit = m_http_limit,
    .http_ex = m_http_ex,
    .push_status = m_push_status,
    .oauth_setup = m_oauth_setup,
    .oauth_token = m_oauth_token,
    .oauth_reject = m_oauth_reject,
    /* added in ABI 1.2: the host's own collector */
    .check_report = mphost_check_report,
};

/* ---- the mock itself ---- */

mpt_mock *mpt_mock_new(void)
{
    mpt_mock *m = mpu_calloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->inst.m = m;
    m->cfg.m = m;
    m->sink.m = m;
    m->logs_tail = &m->logs;
    mpo_options opt = {.persist = m_oauth_persist, .load = m_oauth_load, .arg = m};
    m->oauth = mpo_service_new(&opt);
    current = m;
    return m;
}

void mpt_mock_free(mpt_mock **mp)
{
    if (mp == NULL || *mp == NULL)
        return;
    mpt_mock *m = *mp;
    mpo_service_free(&m->oauth);
    kv_free(&m->config);
    kv_free(&m->secrets);
    kv_free(&m->cursors);
    kv_free(&m->settings);
    kv_free(&m->state);
    kv_free(&m->acursors);
    while (m->accounts != NULL) {
        struct mp_account *a = m->accounts;
        m->accounts = a->next;
        free(a->id);
        free(a->push_state);
        free(a->profile);
        free(a);
    }
    while (m->batches != NULL) {
        struct mp_batch *b = m->batches;
        m->batches = b->next;
        free(b->folder);
        kv_free(&b->staged_state);
        free(b->acursor);
        free(b);
    }
    for (size_t i = 0; i < m->n_changes; i++) {
        mpt_mock_change *c = &m->changes[i];
        free(c->account);
        free(c->folder);
        free(c->id);
        free(c->subject);
        free(c->flags);
        free(c->folders);
    }
    free(m->changes);
    while (m->logs != NULL) {
        line *l = m->logs;
        m->logs = l->next;
        free(l->text);
        free(l);
    }
    for (size_t i = 0; i < m->n_folders; i++)
        free(m->folders[i]);
    free(m->folders);
    free(m->roles);
    for (size_t i = 0; i < m->n_timers; i++)
        free(m->timers[i]);
    free(m->timers);
    free(m->last_hint);
    free(m->ca_file);
    free(m->reply.body);
    pthread_mutex_destroy(&m->lock);
    if (current == m)
        current = NULL;
    free(m);
    *mp = NULL;
}

const mp_host *mpt_mock_host(mpt_mock *m)
{
    (void)m;
    return &mock_table;
}

mp_instance *mpt_mock_instance(mpt_mock *m)
{
    return &m->inst;
}

mp_account *mpt_mock_account(mpt_mock *m, const char *id)
{
    mp_account *a = m_account_find(&m->inst, id);
    if (a != NULL)
        return a;
    a = mpu_calloc(1, sizeof *a);
    a->m = m;
    a->id = mpu_strdup(id);
    a->next = m->accounts;
    m->accounts = a;
    return a;
}

const mp_config *mpt_mock_config(mpt_mock *m)
{
    return &m->cfg;
}

mp_batch *mpt_mock_batch(mpt_mock *m, mp_account *acct, const char *folder)
{
    struct mp_batch *b = mpu_calloc(1, sizeof *b);
    b->acct = acct;
    b->folder = mpu_strdup(folder);
    b->next = m->batches;
    m->batches = b;
    return b;
}

mp_folder_sink *mpt_mock_folder_sink(mpt_mock *m)
{
    return &m->sink;
}

mp_push_reply *mpt_mock_push_reply(mpt_mock *m)
{
    return &m->reply;
}

void mpt_mock_declare(mpt_mock *m, const mp_config_key *keys)
{
    if (keys != NULL && m->n_declared < sizeof m->declared / sizeof m->declared[0])
        m->declared[m->n_declared++] = keys;
}

void mpt_mock_config_set(mpt_mock *m, const char *key, const char *value)
{
    kv_put(&m->config, key, value, 0);
}

void mpt_mock_config_list_add(mpt_mock *m, const char *key, const char *value)
{
    kv_put(&m->config, key, value, 1);
}

void mpt_mock_secret_set(mpt_mock *m, const char *key, const char *secret)
{
    kv_put(&m->secrets, key, secret, 0);
}

void mpt_mock_cursor_set(mpt_mock *m, mp_account *acct, const char *folder, const char *cursor)
{
    char *k = cursor_key(acct, folder);
    pthread_mutex_lock(&m->lock);
    kv_put(&m->cursors, k, cursor, 0);
    pthread_mutex_unlock(&m->lock);
    free(k);
}

void mpt_mock_setting_set(mpt_mock *m, const char *name, int64_t value)
{
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)value);
    kv_put(&m->settings, name, v, 0);
}

void mpt_mock_set_ca_file(mpt_mock *m, const char *path)
{
    free(m->ca_file);
    m->ca_file = mpu_strdup(path);
}

void mpt_mock_set_now(mpt_mock *m, int64_t now_ms)
{
    m->now_ms = now_ms;
}

void mpt_mock_set_instance_state(mpt_mock *m, void *state)
{
    m->inst_state = state;
}

void mpt_mock_set_account_state(mp_account *acct, void *state)
{
    acct->state = state;
}

size_t mpt_mock_change_count(mpt_mock *m)
{
    return m->n_changes;
}

const mpt_mock_change *mpt_mock_change_at(mpt_mock *m, size_t i)
{
    return i < m->n_changes ? &m->changes[i] : NULL;
}

const char *mpt_mock_cursor(mpt_mock *m, mp_account *acct, const char *folder)
{
    char *k = cursor_key(acct, folder);
    pthread_mutex_lock(&m->lock);
    kv *e = kv_find(m->cursors, k);
    pthread_mutex_unlock(&m->lock);
    free(k);
    return e != NULL ? e->value : NULL;
}

const char *mpt_mock_state(mpt_mock *m, mp_account *acct, const char *key)
{
    char *k = mpu_asprintf("%s\n%s", acct->id, key);
    pthread_mutex_lock(&m->lock);
    kv *e = kv_find(m->state, k);
    pthread_mutex_unlock(&m->lock);
    free(k);
    return e != NULL ? e->value : NULL;
}

void mpt_mock_state_set(mpt_mock *m, mp_account *acct, const char *key, const char *value)
{
    char *k = mpu_asprintf("%s\n%s", acct->id, key);
    pthread_mutex_lock(&m->lock);
    state_set_locked(m, k, value);
    pthread_mutex_unlock(&m->lock);
    free(k);
}

const char *mpt_mock_account_cursor(mpt_mock *m, mp_account *acct)
{
    pthread_mutex_lock(&m->lock);
    kv *e = kv_find(m->acursors, acct->id);
    pthread_mutex_unlock(&m->lock);
    return e != NULL ? e->value : NULL;
}

unsigned mpt_mock_http_limit(mp_account *acct)
{
    return acct->http_limit;
}

size_t mpt_mock_commit_count(mpt_mock *m)
{
    return m->commits;
}

size_t mpt_mock_log_count(mpt_mock *m)
{
    return m->n_logs;
}

const char *mpt_mock_log_at(mpt_mock *m, size_t i)
{
    line *l = m->logs;
    while (l != NULL && i-- > 0)
        l = l->next;
    return l != NULL ? l->text : NULL;
}

int mpt_mock_log_contains(mpt_mock *m, const char *needle)
{
    for (line *l = m->logs; l != NULL; l = l->next)
        if (strstr(l->text, needle) != NULL)
            return 1;
    return 0;
}

size_t mpt_mock_folder_count(mpt_mock *m)
{
    return m->n_folders;
}

const char *mpt_mock_folder_at(mpt_mock *m, size_t i, mp_folder_role *role_r)
{
    if (i >= m->n_folders)
        return NULL;
    if (role_r != NULL)
        *role_r = m->roles[i];
    return m->folders[i];
}

unsigned mpt_mock_sync_now_count(mpt_mock *m)
{
    return m->sync_nows;
}

const char *mpt_mock_push_state(mpt_mock *m, mp_account *acct)
{
    (void)m;
    return acct->push_state;
}

const char *mpt_mock_profile(mpt_mock *m, mp_account *acct)
{
    (void)m;
    return acct->profile;
}

unsigned mpt_mock_http_count(mpt_mock *m)
{
    return m->http_calls;
}

struct mpo_service *mpt_mock_oauth(mpt_mock *m)
{
    return m->oauth;
}

unsigned mpt_mock_oauth_token_count(mpt_mock *m)
{
    pthread_mutex_lock(&m->lock);
    unsigned n = m->oauth_tokens;
    pthread_mutex_unlock(&m->lock);
    return n;
}

unsigned mpt_mock_oauth_reject_count(mpt_mock *m)
{
    pthread_mutex_lock(&m->lock);
    unsigned n = m->oauth_rejects;
    pthread_mutex_unlock(&m->lock);
    return n;
}

const char *mpt_mock_last_hint(mpt_mock *m)
{
    return m->last_hint;
}

int mpt_mock_reply_status(mpt_mock *m)
{
    return m->reply.status;
}

const char *mpt_mock_reply_body(mpt_mock *m)
{
    return m->reply.body;
}

size_t mpt_mock_run_timers(mpt_mock *m)
{
    size_t fired = 0;
    for (size_t i = 0; i < m->n_timers; i++) {
        struct mp_timer *t = m->timers[i];
        if (t->t.fired)
            continue;
        t->t.fired = 1;
        t->t.cb(t->t.arg);
        fired++;
    }
    return fired;
}

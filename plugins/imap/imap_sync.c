/* What the sync slots share: connections, the mapping of server answers to
 * statuses (in one place, like isync's transform_box_response), EXAMINE,
 * UID listings and the stored-message snapshot. */
#include "imap_sync.h"
#include "imap_strategy.h"
#include "imap_limit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

imap_account *imap_sync_account(mp_account *acct)
{
    return imap_host->account_state(acct);
}

void imap_sync_log(const imap_account *a, mp_log_level level, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    imap_host->log(imap_host->account_instance(a->acct), a->acct, level, "%s", text);
}

/* Logins of the whole instance share one limiter with push; a worker
 * waiting here goes before the connect pool's push logins, so a sync never
 * starves behind a restart's queue of push streams. Every worker-side
 * login goes through here: sync, fetch, the folder listing's deferred
 * one and the admin's probe. */
static mp_status limited_connect(imap_account *a, imap_conn **connp, int deferred,
                                 mp_error *err)
{
    imap_limit *limit = a->inst != NULL ? a->inst->limit : NULL;
    if (limit != NULL)
        imap_limit_acquire(limit, 1);
    mp_status st = deferred ? imap_account_connect_deferred(a, connp, err)
                            : imap_account_connect(a, connp, err);
    if (limit != NULL)
        imap_limit_release(limit);
    return st;
}

mp_status imap_sync_connect(imap_account *a, imap_conn **connp, mp_error *err)
{
    if (*connp != NULL)
        return MP_OK;
    return limited_connect(a, connp, 0, err);
}

mp_status imap_sync_connect_deferred(imap_account *a, imap_conn **connp, mp_error *err)
{
    return limited_connect(a, connp, 1, err);
}

mp_status imap_sync_connect_new(imap_account *a, imap_conn **connp, mp_error *err)
{
    return limited_connect(a, connp, 0, err);
}

/* ---- connection lifetime between slot calls ---- */

static int64_t conn_clock_ms(void)
{
    return imap_limit_now_us() / 1000;
}

/* A connection kept open between jobs is counted in its instance's
 * idle_kept from the end of a job until the next job takes it, the reaper
 * closes it or the account goes (imap_sync_forget_kept): at most idle_max
 * for all accounts of the file, so a mass start (every account's first
 * sync within the idle period) cannot fill the descriptor table beside
 * the push connections. Under a->conn_lock. */
static void kept_drop(imap_account *a, int *kept)
{
    if (*kept && a->inst != NULL)
        atomic_fetch_sub(&a->inst->idle_kept, 1);
    *kept = 0;
}

void imap_sync_begin(imap_account *a, int fetch)
{
    pthread_mutex_lock(&a->conn_lock);
    *(fetch ? &a->fetch_busy : &a->sync_busy) = 1;
    kept_drop(a, fetch ? &a->fetch_kept : &a->sync_kept);
    pthread_mutex_unlock(&a->conn_lock);
}

void imap_sync_end(imap_account *a, int fetch)
{
    imap_conn *done = NULL;
    pthread_mutex_lock(&a->conn_lock);
    *(fetch ? &a->fetch_busy : &a->sync_busy) = 0;
    *(fetch ? &a->fetch_used_ms : &a->sync_used_ms) = conn_clock_ms();
    imap_conn **connp = fetch ? &a->fetch_conn : &a->sync_conn;
    int keep = a->inst == NULL || a->inst->sync_idle_ms > 0;
    if (keep && *connp != NULL && a->inst != NULL) {
        /* Over the instance's budget: close now, as with idle time 0. */
        if (atomic_fetch_add(&a->inst->idle_kept, 1) >= a->inst->idle_max) {
            atomic_fetch_sub(&a->inst->idle_kept, 1);
            keep = 0;
        } else {
            *(fetch ? &a->fetch_kept : &a->sync_kept) = 1;
        }
    }
    if (!keep) {
        done = *connp;
        *connp = NULL;
    }
    pthread_mutex_unlock(&a->conn_lock);
    /* A worker may block: say LOGOUT politely. */
    imap_conn_close(&done);
}

void imap_sync_forget_kept(imap_account *a)
{
    pthread_mutex_lock(&a->conn_lock);
    kept_drop(a, &a->sync_kept);
    kept_drop(a, &a->fetch_kept);
    pthread_mutex_unlock(&a->conn_lock);
}

void imap_sync_reap(imap_account *a, uint32_t idle_ms)
{
    int64_t now = conn_clock_ms();
    imap_conn *idle[2] = {NULL, NULL};
    pthread_mutex_lock(&a->conn_lock);
    if (!a->sync_busy && a->sync_conn != NULL && now - a->sync_used_ms >= (int64_t)idle_ms) {
        idle[0] = a->sync_conn;
        a->sync_conn = NULL;
        kept_drop(a, &a->sync_kept);
    }
    if (!a->fetch_busy && a->fetch_conn != NULL &&
        now - a->fetch_used_ms >= (int64_t)idle_ms) {
        idle[1] = a->fetch_conn;
        a->fetch_conn = NULL;
        kept_drop(a, &a->fetch_kept);
    }
    pthread_mutex_unlock(&a->conn_lock);
    /* The loop must not wait for a LOGOUT answer: just close (the server
     * sees an orderly TCP close). */
    imap_conn_abort(&idle[0]);
    imap_conn_abort(&idle[1]);
}

/* ---- answers to statuses ---- */

/* The response code at the start of a status text: "[TRYCREATE] ..." ->
 * "TRYCREATE". */
static void response_code(const char *text, char *code, size_t size)
{
    code[0] = '\0';
    if (text == NULL || text[0] != '[' || size == 0)
        return;
    size_t i = 0;
    for (const char *p = text + 1; *p != '\0' && *p != ']' && *p != ' ' && i + 1 < size;
         p++)
        code[i++] = *p;
    code[i] = '\0';
}

/* What an RFC 5530 response code asks of us, whatever the command. */
typedef enum code_class {
    CODE_OTHER = 0,
    CODE_CREDENTIALS, /* AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED,
                         CONTACTADMIN: a person has to act                */
    CODE_BUSY,        /* UNAVAILABLE, SERVERBUG, INUSE, LIMIT: passing     */
    CODE_NO_FOLDER,   /* TRYCREATE, NONEXISTENT                             */
} code_class;

static code_class classify(const char *code)
{
    static const struct {
        const char *code;
        code_class cls;
    } codes[] = {
        {"AUTHENTICATIONFAILED", CODE_CREDENTIALS},
        {"AUTHORIZATIONFAILED", CODE_CREDENTIALS},
        {"EXPIRED", CODE_CREDENTIALS},
        {"CONTACTADMIN", CODE_CREDENTIALS},
        {"UNAVAILABLE", CODE_BUSY},
        {"SERVERBUG", CODE_BUSY},
        {"INUSE", CODE_BUSY},
        {"LIMIT", CODE_BUSY},
        {"TRYCREATE", CODE_NO_FOLDER},
        {"NONEXISTENT", CODE_NO_FOLDER},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcasecmp(code, codes[i].code) == 0)
            return codes[i].cls;
    return CODE_OTHER;
}

int imap_sync_auth_is_reauth(const imap_auth_answer *answer)
{
    /* A bare NO (no code, or one of no meaning here) to LOGIN or
     * AUTHENTICATE is what RFC 3501 servers without RFC 5530 say for wrong
     * credentials, so it stays a credentials failure; a BAD is a protocol
     * problem, retried. Only the codes of a passing problem (Dovecot's
     * "NO [UNAVAILABLE] Temporary authentication failure" when its passdb
     * cannot be read) keep the account retrying. */
    if (answer == NULL || !answer->refused || answer->status != IMAP_NO)
        return 0;
    return classify(answer->code) != CODE_BUSY;
}

mp_status imap_sync_login_fail(imap_account *a, const imap_auth_answer *answer,
                               const char *error, mp_error *err)
{
    const char *why = error != NULL ? error : "unknown error";
    if (imap_sync_auth_is_reauth(answer))
        return mp_fail(err, MP_REAUTH, "%s@%s: credentials rejected: %s", a->username,
                       a->host, why);
    if (answer != NULL && answer->refused && classify(answer->code) == CODE_BUSY) {
        mp_status st = mp_fail(err, MP_RETRY, "%s@%s: login refused for now, will retry: %s",
                               a->username, a->host, why);
        err->retry_after_ms = 30000;
        return st;
    }
    return mp_fail(err, MP_RETRY, "%s:%u: %s", a->host, (unsigned)a->port, why);
}

mp_status imap_sync_answer_fail(imap_account *a, imap_conn **connp, const char *what,
                                const char *folder, imap_status status, const char *text,
                                mp_error *err)
{
    char code[32];
    const char *t = text != NULL ? text : "";
    response_code(t, code, sizeof code);
    const char *f = folder != NULL ? folder : "";
    const char *sep = folder != NULL ? " " : "";
    code_class cls = classify(code);
    mp_status st;
    if (status == IMAP_BAD) {
        /* The server says our command is malformed: a bug on one side that
         * retrying will not fix. */
        st = mp_fail(err, MP_FATAL, "%s%s\"%s\": server rejected the command (BAD): %s",
                     what, sep, f, t);
    } else if (cls == CODE_NO_FOLDER) {
        st = mp_fail(err, MP_SKIP, "%s%s\"%s\": no such folder: %s", what, sep, f, t);
    } else if (cls == CODE_CREDENTIALS) {
        st = mp_fail(err, MP_REAUTH, "%s: %s", what, t);
    } else if (cls == CODE_BUSY) {
        st = mp_fail(err, MP_RETRY, "%s%s\"%s\": server busy: %s", what, sep, f, t);
        err->retry_after_ms = 30000;
    } else {
        st = mp_fail(err, MP_RETRY, "%s%s\"%s\" failed: %s", what, sep, f, t);
    }
    if (connp != NULL)
        imap_conn_abort(connp);
    (void)a;
    return st;
}

mp_status imap_sync_io_fail(imap_account *a, imap_conn **connp, const char *what,
                            const char *error, mp_error *err)
{
    const char *e = error != NULL ? error : "connection failed";
    mp_status st = mp_fail(err, MP_RETRY, "%s: %s", what, e);
    /* A BYE is the server shedding load or shutting down: give it time. */
    if (strstr(e, "BYE") != NULL || strcasestr(e, "shutting down") != NULL)
        err->retry_after_ms = 30000;
    imap_conn_abort(connp);
    (void)a;
    return st;
}

int imap_budget_take(imap_budget *b, size_t bytes)
{
    if (b->over || bytes > b->limit - b->used) {
        b->over = 1;
        return -1;
    }
    b->used += bytes;
    return 0;
}

int imap_budget_reserve(imap_budget *b, void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    if (b->over)
        return -1;
    size_t room = (b->limit - b->used) / size; /* more elements we can pay for */
    size_t want = *cap != 0 ? *cap * 2 : 256;
    if (want < need)
        want = need;
    if (want - *cap > room)
        want = *cap + room;
    if (want < need) {
        b->over = 1;
        return -1;
    }
    b->used += (want - *cap) * size;
    *arr = imap_xrealloc(*arr, want, size);
    *cap = want;
    return 0;
}

mp_status imap_sync_over_budget(imap_account *a, imap_conn **connp, const char *what,
                                mp_error *err)
{
    imap_conn_abort(connp);
    return mp_fail(err, MP_RETRY,
                   "%s: server response exceeds %zu MiB (the connection's memory budget, "
                   "max_memory_mb): too many results; retrying later",
                   what, a->max_memory >> 20);
}

int imap_sync_finish(imap_conn *conn, int sent, const char *tag, imap_untagged_cb cb,
                     void *arg, imap_status *status_r, char **text_r, char **error_r)
{
    *status_r = IMAP_NONE;
    *text_r = NULL;
    if (sent < 0)
        return -1;
    return imap_wait(conn, tag, cb, arg, status_r, text_r, error_r);
}

/* ---- per-folder scan times ---- */

/* Kept on each account (one list of its folders): a single list for the
 * whole process made every lookup a walk over every folder of every
 * account, which at 10,000 accounts was half of the daemon's CPU. */
typedef struct imap_scan_entry {
    struct imap_scan_entry *next;
    char *folder;
    imap_folder_mem mem;
} scan_entry;

static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;

imap_folder_mem imap_sync_mem_get(const imap_account *a, const char *folder)
{
    imap_folder_mem m = {0, -1};
    pthread_mutex_lock(&scan_lock);
    for (const scan_entry *e = a->scan_mem; e != NULL; e = e->next)
        if (strcmp(e->folder, folder) == 0) {
            m = e->mem;
            break;
        }
    pthread_mutex_unlock(&scan_lock);
    return m;
}

void imap_sync_mem_set(imap_account *a, const char *folder, int64_t scan_ms, int64_t exists)
{
    pthread_mutex_lock(&scan_lock);
    scan_entry *e = a->scan_mem;
    while (e != NULL && strcmp(e->folder, folder) != 0)
        e = e->next;
    if (e == NULL) {
        e = imap_xcalloc(1, sizeof *e);
        e->folder = imap_xstrdup(folder);
        e->mem.exists = -1;
        e->next = a->scan_mem;
        a->scan_mem = e;
    }
    if (scan_ms != 0)
        e->mem.scan_ms = scan_ms;
    e->mem.exists = exists;
    pthread_mutex_unlock(&scan_lock);
}

void imap_sync_forget(imap_account *a)
{
    pthread_mutex_lock(&scan_lock);
    scan_entry *e = a->scan_mem;
    a->scan_mem = NULL;
    pthread_mutex_unlock(&scan_lock);
    while (e != NULL) {
        scan_entry *next = e->next;
        free(e->folder);
        free(e);
        e = next;
    }
}

/* ---- FETCH helpers ---- */

/* UID and normalized FLAGS of a FETCH response; 0, or -1 without UID. */
static int fetch_uid_flags(const imap_response *r, uint32_t *uid_r, char **flags_r)
{
    const imap_token *u = imap_fetch_item(r, "UID");
    uint64_t uid = 0;
    if (u == NULL || imap_token_u64(u, &uid) < 0 || uid == 0 || uid > UINT32_MAX)
        return -1;
    *uid_r = (uint32_t)uid;
    if (flags_r != NULL) {
        const imap_token *f = imap_fetch_item(r, "FLAGS");
        *flags_r = NULL;
        if (f != NULL && f->type == IMAP_T_LIST) {
            const char **words = imap_xcalloc(f->n_items, sizeof *words);
            size_t n = 0;
            for (size_t i = 0; i < f->n_items; i++)
                if (f->items[i].type == IMAP_T_ATOM && f->items[i].str != NULL)
                    words[n++] = f->items[i].str;
            *flags_r = imap_flags_join(words, n);
            free(words);
        }
    }
    return 0;
}

static int is_fetch(const imap_response *r)
{
    return r->kind == IMAP_R_UNTAGGED && r->keyword != NULL &&
           strcasecmp(r->keyword, "FETCH") == 0 && r->n_args > 0;
}

void imap_flag_changes_free(imap_flag_change **list, size_t n)
{
    if (list == NULL || *list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free((*list)[i].flags);
    free(*list);
    *list = NULL;
}

/* 0, or -1 over the budget (flags freed). */
static int flag_change_add(imap_budget *b, imap_flag_change **list, size_t *n, size_t *cap,
                           uint32_t uid, char *flags)
{
    if (imap_budget_reserve(b, (void **)list, cap, *n + 1, sizeof **list) < 0 ||
        imap_budget_take(b, strlen(flags) + 1) < 0) {
        free(flags);
        return -1;
    }
    (*list)[*n].uid = uid;
    (*list)[*n].order = (uint32_t)*n;
    (*list)[*n].flags = flags;
    (*n)++;
    return 0;
}

static int cmp_flag_change(const void *a, const void *b)
{
    const imap_flag_change *x = a, *y = b;
    if (x->uid != y->uid)
        return x->uid < y->uid ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Sort by UID; the last answer for a UID wins. */
static size_t flag_changes_sort(imap_flag_change *list, size_t n)
{
    if (n == 0)
        return 0;
    qsort(list, n, sizeof *list, cmp_flag_change);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && list[m - 1].uid == list[i].uid) {
            free(list[m - 1].flags);
            list[m - 1] = list[i];
            continue;
        }
        list[m++] = list[i];
    }
    return m;
}

/* ---- EXAMINE ---- */

typedef struct examine_ctx {
    imap_box *box;
    size_t cap_changed;
    imap_budget budget;
} examine_ctx;

static int code_u64(const imap_response *r, uint64_t *v_r)
{
    return r->n_code_args > 0 ? imap_token_u64(&r->code_args[0], v_r) : -1;
}

static int vanished_add(examine_ctx *cx, const char *set)
{
    imap_range *r = NULL;
    size_t n = 0;
    if (imap_ranges_parse(set, UINT32_MAX, &r, &n) < 0)
        return 0;
    if (imap_budget_take(&cx->budget, n * sizeof *r) < 0) {
        free(r);
        return -1;
    }
    imap_box *b = cx->box;
    b->vanished = imap_xrealloc(b->vanished, b->n_vanished + n, sizeof *b->vanished);
    memcpy(b->vanished + b->n_vanished, r, n * sizeof *r);
    b->n_vanished += n;
    free(r);
    return 0;
}

static int examine_untagged(const imap_response *r, void *arg)
{
    examine_ctx *cx = arg;
    imap_box *b = cx->box;
    uint64_t v = 0;
    if (r->kind != IMAP_R_UNTAGGED)
        return 0;
    if (r->status == IMAP_OK && r->code != NULL) {
        if (strcasecmp(r->code, "UIDVALIDITY") == 0 && code_u64(r, &v) == 0 &&
            v <= UINT32_MAX)
            b->uidvalidity = (uint32_t)v;
        else if (strcasecmp(r->code, "UIDNEXT") == 0 && code_u64(r, &v) == 0 &&
                 v <= UINT32_MAX)
            b->uidnext = (uint32_t)v;
        else if (strcasecmp(r->code, "HIGHESTMODSEQ") == 0 && code_u64(r, &v) == 0)
            b->highestmodseq = v;
        else if (strcasecmp(r->code, "NOMODSEQ") == 0)
            b->nomodseq = 1;
        return 0;
    }
    if (r->keyword == NULL)
        return 0;
    if (strcasecmp(r->keyword, "EXISTS") == 0 && r->has_number) {
        b->exists = r->number;
    } else if (strcasecmp(r->keyword, "VANISHED") == 0) {
        for (size_t i = 0; i < r->n_args; i++)
            if (r->args[i].type == IMAP_T_ATOM && r->args[i].str != NULL &&
                vanished_add(cx, r->args[i].str) < 0)
                return 1;
    } else if (is_fetch(r)) {
        uint32_t uid = 0;
        char *flags = NULL;
        if (fetch_uid_flags(r, &uid, &flags) == 0 && flags != NULL)
            return flag_change_add(&cx->budget, &b->changed, &b->n_changed,
                                   &cx->cap_changed, uid, flags) < 0;
        free(flags);
    }
    return 0;
}

void imap_box_clear(imap_box *box)
{
    if (box == NULL)
        return;
    free(box->vanished);
    imap_flag_changes_free(&box->changed, box->n_changed);
    memset(box, 0, sizeof *box);
}

static int run_examine(imap_conn *conn, const char *folder, imap_examine_mode mode,
                       const imap_cursor *since, imap_examine_then_cb then, void *then_arg,
                       examine_ctx *cx, imap_status *status_r, char **text_r,
                       char **error_r)
{
    char tag[16];
    int rc;
    if (mode == IMAP_EXAMINE_QRESYNC && since != NULL && since->uidnext > 1) {
        /* Known UIDs bound the VANISHED answer to what we can have stored. */
        char known[32];
        snprintf(known, sizeof known, "1:%u", (unsigned)(since->uidnext - 1));
        rc = imap_send(conn, tag, error_r, "EXAMINE %m (QRESYNC (%u %U %a))", folder,
                       since->uidvalidity, since->modseq, known);
    } else if (mode == IMAP_EXAMINE_QRESYNC && since != NULL) {
        rc = imap_send(conn, tag, error_r, "EXAMINE %m (QRESYNC (%u %U))", folder,
                       since->uidvalidity, since->modseq);
    } else if (mode != IMAP_EXAMINE_PLAIN) {
        rc = imap_send(conn, tag, error_r, "EXAMINE %m (CONDSTORE)", folder);
    } else {
        rc = imap_send(conn, tag, error_r, "EXAMINE %m", folder);
    }
    if (rc < 0 || (then != NULL && then(conn, then_arg, error_r) < 0))
        return -1;
    return imap_wait(conn, tag, examine_untagged, cx, status_r, text_r, error_r);
}

/* Whether `conn` offers what EXAMINE `mode` asks for. */
static int mode_offered(const imap_conn *conn, imap_examine_mode mode)
{
    imap_strategy have =
        imap_strategy_choose(imap_conn_caps(conn)->bits, imap_conn_enabled(conn));
    if (mode == IMAP_EXAMINE_QRESYNC)
        return have == IMAP_STRATEGY_QRESYNC;
    if (mode == IMAP_EXAMINE_CONDSTORE)
        return have != IMAP_STRATEGY_PLAIN;
    return 1;
}

mp_status imap_sync_examine(imap_account *a, imap_conn **connp, const char *folder,
                            imap_examine_mode mode, const imap_cursor *since,
                            imap_box *box_r, mp_error *err)
{
    return imap_sync_examine_then(a, connp, folder, mode, since, NULL, NULL, box_r, err);
}

mp_status imap_sync_examine_then(imap_account *a, imap_conn **connp, const char *folder,
                                 imap_examine_mode mode, const imap_cursor *since,
                                 imap_examine_then_cb then, void *then_arg,
                                 imap_box *box_r, mp_error *err)
{
    memset(box_r, 0, sizeof *box_r);
    /* Push saw a link die silently since this connection was last used:
     * replace it rather than wait out a read timeout on it. Only here,
     * before a folder is selected, never in the middle of a step. */
    unsigned epoch = atomic_load(&a->link_epoch);
    unsigned *seen = connp == &a->fetch_conn ? &a->fetch_epoch : &a->sync_epoch;
    if (*connp != NULL && *seen != epoch)
        imap_conn_abort(connp);
    *seen = epoch;
    int reused = *connp != NULL;
    for (int attempt = 0;; attempt++) {
        mp_status st = imap_sync_connect(a, connp, err);
        if (st != MP_OK)
            return st;
        /* The caller chose `mode` from the connection it had. A server
         * restarted in between may offer less now (an admin turned
         * QRESYNC off): asking for it would be refused as a protocol
         * error. Sync again soon, choosing from what this server offers. */
        if (attempt > 0 && !mode_offered(*connp, mode))
            return mp_fail(err, MP_RETRY, "\"%s\": server capabilities changed on reconnect; "
                           "syncing again", folder);
        examine_ctx cx = {.box = box_r, .budget = {.limit = a->max_memory}};
        imap_status status = IMAP_NONE;
        char *text = NULL;
        char *error = NULL;
        if (run_examine(*connp, folder, mode, since, then, then_arg, &cx, &status, &text,
                        &error) < 0) {
            imap_box_clear(box_r);
            free(text);
            if (cx.budget.over) {
                free(error);
                return imap_sync_over_budget(a, connp, "EXAMINE", err);
            }
            /* The server may have dropped a connection kept since the last
             * sync (idle timeout): one fresh attempt before giving up. Not
             * after a timeout: a server that stalls would hold the worker
             * for a second deadline. */
            if (reused && attempt == 0 && !imap_conn_timed_out(*connp)) {
                imap_conn_abort(connp);
                free(error);
                continue;
            }
            st = imap_sync_io_fail(a, connp, "EXAMINE", error, err);
            free(error);
            return st;
        }
        free(error);
        if (status != IMAP_OK) {
            imap_box_clear(box_r);
            st = imap_sync_answer_fail(a, then != NULL ? connp : NULL, "EXAMINE", folder,
                                       status, text, err);
            free(text);
            return st;
        }
        free(text);
        if (box_r->uidvalidity == 0) {
            imap_box_clear(box_r);
            if (then != NULL)
                imap_conn_abort(connp);
            return mp_fail(err, MP_RETRY, "EXAMINE \"%s\": server sent no UIDVALIDITY",
                           folder);
        }
        if (box_r->nomodseq)
            box_r->highestmodseq = 0;
        box_r->n_vanished = imap_ranges_normalize(box_r->vanished, box_r->n_vanished);
        box_r->n_changed = flag_changes_sort(box_r->changed, box_r->n_changed);
        return MP_OK;
    }
}

/* ---- UID listings ---- */

typedef struct uids_ctx {
    uint32_t *uids;
    size_t n, cap;
    uint32_t lo, hi;
    int bad;
    imap_budget budget;
} uids_ctx;

/* 0, or -1 over the budget. */
static int uids_add(uids_ctx *cx, uint32_t uid)
{
    if (uid < cx->lo || (cx->hi != 0 && uid > cx->hi))
        return 0;
    if (imap_budget_reserve(&cx->budget, (void **)&cx->uids, &cx->cap, cx->n + 1,
                            sizeof *cx->uids) < 0)
        return -1;
    cx->uids[cx->n++] = uid;
    return 0;
}

/* The UIDs of ranges (sorted, merged) within [lo, hi]: sized and paid
 * for before a single one is expanded, so "1:4000000000" costs nothing
 * beyond a refusal. 0, or -1 over the budget. */
static int uids_add_ranges(uids_ctx *cx, const imap_range *rg, size_t n)
{
    uint64_t count = 0;
    uint32_t top = cx->hi != 0 ? cx->hi : UINT32_MAX;
    for (size_t k = 0; k < n; k++) {
        uint32_t lo = rg[k].lo > cx->lo ? rg[k].lo : cx->lo;
        uint32_t hi = rg[k].hi < top ? rg[k].hi : top;
        if (lo <= hi)
            count += (uint64_t)(hi - lo) + 1;
    }
    if (count > SIZE_MAX / sizeof *cx->uids ||
        imap_budget_reserve(&cx->budget, (void **)&cx->uids, &cx->cap, cx->n + (size_t)count,
                            sizeof *cx->uids) < 0) {
        cx->budget.over = 1;
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        uint32_t lo = rg[k].lo > cx->lo ? rg[k].lo : cx->lo;
        uint32_t hi = rg[k].hi < top ? rg[k].hi : top;
        for (uint64_t u = lo; lo <= hi && u <= hi; u++)
            cx->uids[cx->n++] = (uint32_t)u;
    }
    return 0;
}

static int uids_untagged(const imap_response *r, void *arg)
{
    uids_ctx *cx = arg;
    if (r->kind != IMAP_R_UNTAGGED || r->keyword == NULL)
        return 0;
    if (strcasecmp(r->keyword, "SEARCH") == 0) {
        for (size_t i = 0; i < r->n_args; i++) {
            uint64_t v = 0;
            if (imap_token_u64(&r->args[i], &v) == 0 && v > 0 && v <= UINT32_MAX &&
                uids_add(cx, (uint32_t)v) < 0)
                return 1;
        }
    } else if (strcasecmp(r->keyword, "ESEARCH") == 0) {
        for (size_t i = 0; i + 1 < r->n_args; i++) {
            if (!imap_token_is(&r->args[i], "ALL") || r->args[i + 1].type != IMAP_T_ATOM)
                continue;
            imap_range *rg = NULL;
            size_t n = 0;
            if (imap_ranges_parse(r->args[i + 1].str, UINT32_MAX, &rg, &n) < 0) {
                cx->bad = 1;
                continue;
            }
            int over = uids_add_ranges(cx, rg, n) < 0;
            free(rg);
            if (over)
                return 1;
        }
    } else if (is_fetch(r)) {
        uint32_t uid = 0;
        if (fetch_uid_flags(r, &uid, NULL) == 0 && uids_add(cx, uid) < 0)
            return 1;
    }
    return 0;
}

/* The UID range lo..hi as a command argument ("5:9", or "5:*" for hi 0;
 * lo 0 means 1). -1 when the range is empty. */
static int uid_range(uint32_t *lo, uint32_t hi, char *buf, size_t size)
{
    if (*lo == 0)
        *lo = 1;
    if (hi != 0 && hi < *lo)
        return -1;
    if (hi != 0)
        snprintf(buf, size, "%u:%u", (unsigned)*lo, (unsigned)hi);
    else
        snprintf(buf, size, "%u:*", (unsigned)*lo);
    return 0;
}

/* imap_sync_uids and imap_sync_uids_larger: `larger` 0 adds no LARGER
 * criterion. */
static mp_status search_uids(imap_account *a, imap_conn **connp, uint32_t lo, uint32_t hi,
                             uint64_t larger, size_t max_newest, uint32_t **uids_r,
                             size_t *n_r, size_t *total_r, mp_error *err)
{
    *uids_r = NULL;
    *n_r = 0;
    if (total_r != NULL)
        *total_r = 0;
    mp_status st = imap_sync_connect(a, connp, err);
    if (st != MP_OK)
        return st;
    char range[32];
    if (uid_range(&lo, hi, range, sizeof range) < 0)
        return MP_OK;
    uids_ctx cx = {.lo = lo, .hi = hi, .budget = {.limit = a->max_memory}};
    imap_status status = IMAP_NONE;
    char *error = NULL;
    int esearch = (imap_conn_caps(*connp)->bits & IMAP_CAP_ESEARCH) != 0;
    char tag[16];
    char *text = NULL;
    int sent;
    if (larger > 0)
        sent = esearch
                   ? imap_send(*connp, tag, &error,
                               "UID SEARCH RETURN (ALL) UID %a LARGER %U", range, larger)
                   : imap_send(*connp, tag, &error, "UID SEARCH UID %a LARGER %U", range,
                               larger);
    else
        sent = esearch ? imap_send(*connp, tag, &error, "UID SEARCH RETURN (ALL) UID %a",
                                   range)
                       : imap_send(*connp, tag, &error, "UID SEARCH UID %a", range);
    int rc =
        imap_sync_finish(*connp, sent, tag, uids_untagged, &cx, &status, &text, &error);
    if (rc < 0) {
        free(cx.uids);
        st = cx.budget.over ? imap_sync_over_budget(a, connp, "UID SEARCH", err)
                            : imap_sync_io_fail(a, connp, "UID SEARCH", error, err);
        free(error);
        return st;
    }
    if (status != IMAP_OK) {
        free(cx.uids);
        st = imap_sync_answer_fail(a, NULL, "UID SEARCH", NULL, status, text, err);
        free(text);
        free(error);
        return st;
    }
    free(text);
    free(error);
    if (cx.bad) {
        free(cx.uids);
        return mp_fail(err, MP_RETRY, "UID SEARCH: malformed or oversized answer");
    }
    size_t n = imap_uids_sort_unique(cx.uids, cx.n);
    if (total_r != NULL)
        *total_r = n;
    if (max_newest > 0 && n > max_newest) {
        memmove(cx.uids, cx.uids + (n - max_newest), max_newest * sizeof *cx.uids);
        n = max_newest;
    }
    *uids_r = cx.uids;
    *n_r = n;
    return MP_OK;
}

mp_status imap_sync_uids(imap_account *a, imap_conn **connp, uint32_t lo, uint32_t hi,
                         size_t max_newest, uint32_t **uids_r, size_t *n_r,
                         size_t *total_r, mp_error *err)
{
    return search_uids(a, connp, lo, hi, 0, max_newest, uids_r, n_r, total_r, err);
}

mp_status imap_sync_uids_larger(imap_account *a, imap_conn **connp, uint32_t lo,
                                uint32_t hi, uint64_t larger, uint32_t **uids_r,
                                size_t *n_r, mp_error *err)
{
    return search_uids(a, connp, lo, hi, larger, 0, uids_r, n_r, NULL, err);
}

/* ---- flag listings ---- */

typedef struct flags_ctx {
    imap_flag_change *list;
    size_t n, cap;
    uint32_t lo, hi;
    imap_budget budget;
} flags_ctx;

static int flags_untagged(const imap_response *r, void *arg)
{
    flags_ctx *cx = arg;
    if (!is_fetch(r))
        return 0;
    uint32_t uid = 0;
    char *flags = NULL;
    if (fetch_uid_flags(r, &uid, &flags) < 0 || flags == NULL || uid < cx->lo ||
        (cx->hi != 0 && uid > cx->hi)) {
        free(flags);
        return 0;
    }
    return flag_change_add(&cx->budget, &cx->list, &cx->n, &cx->cap, uid, flags) < 0;
}

mp_status imap_sync_flags(imap_account *a, imap_conn **connp, uint32_t lo, uint32_t hi,
                          uint64_t changedsince, imap_flag_change **list_r, size_t *n_r,
                          mp_error *err)
{
    *list_r = NULL;
    *n_r = 0;
    mp_status st = imap_sync_connect(a, connp, err);
    if (st != MP_OK)
        return st;
    char range[32];
    if (uid_range(&lo, hi, range, sizeof range) < 0)
        return MP_OK;
    flags_ctx cx = {.lo = lo, .hi = hi, .budget = {.limit = a->max_memory}};
    imap_status status = IMAP_NONE;
    char *error = NULL;
    char tag[16];
    char *text = NULL;
    int sent =
        changedsince > 0
            ? imap_send(*connp, tag, &error, "UID FETCH %a (UID FLAGS) (CHANGEDSINCE %U)",
                        range, changedsince)
            : imap_send(*connp, tag, &error, "UID FETCH %a (UID FLAGS)", range);
    int rc =
        imap_sync_finish(*connp, sent, tag, flags_untagged, &cx, &status, &text, &error);
    if (rc < 0 || status != IMAP_OK) {
        imap_flag_changes_free(&cx.list, cx.n);
        st = cx.budget.over ? imap_sync_over_budget(a, connp, "UID FETCH FLAGS", err)
             : rc < 0       ? imap_sync_io_fail(a, connp, "UID FETCH FLAGS", error, err)
                    : imap_sync_answer_fail(a, NULL, "UID FETCH FLAGS", NULL, status,
                                            text, err);
        free(text);
        free(error);
        return st;
    }
    free(text);
    free(error);
    *n_r = flag_changes_sort(cx.list, cx.n);
    *list_r = cx.list;
    return MP_OK;
}

/* ---- stored messages ---- */

typedef struct stored_ctx {
    imap_stored *list;
    size_t n, cap;
} stored_ctx;

static int stored_one(const mp_stored_message *m, void *arg)
{
    stored_ctx *cx = arg;
    if (cx->n == cx->cap) {
        cx->cap = cx->cap ? cx->cap * 2 : 256;
        cx->list = imap_xrealloc(cx->list, cx->cap, sizeof *cx->list);
    }
    imap_stored *s = &cx->list[cx->n++];
    s->id = imap_xstrdup(m->id);
    s->message_id = imap_xstrdup(m->message_id);
    s->uid = m->uid;
    s->size = m->size;
    s->date = m->date;
    s->flags = imap_xstrdup(m->flags);
    return 0;
}

mp_status imap_sync_stored(imap_account *a, const char *folder, imap_stored **list_r,
                           size_t *n_r, mp_error *err)
{
    stored_ctx cx = {0};
    mp_status st = imap_host->stored_messages(a->acct, folder, stored_one, &cx, err);
    if (st != MP_OK) {
        imap_stored_free(&cx.list, cx.n);
        return st;
    }
    *list_r = cx.list;
    *n_r = cx.n;
    return MP_OK;
}

void imap_stored_free(imap_stored **list, size_t n)
{
    if (list == NULL || *list == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free((*list)[i].id);
        free((*list)[i].message_id);
        free((*list)[i].flags);
    }
    free(*list);
    *list = NULL;
}

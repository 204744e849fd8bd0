/*
 * Push streams on the host's event loop: NOTIFY (RFC 5465, one connection
 * watching every synced folder) or IDLE (RFC 2177, one connection per
 * folder: INBOX, Sent, Junk, then the rest by name, within the account's
 * connection budget; the other folders stay with the poller).
 *
 * Establishing a connection blocks (DNS, TCP, TLS, authentication, then
 * EXAMINE or NOTIFY SET), which the loop must never do. Each attempt is a
 * task for the instance's connect pool (imap_pool.h: a few threads, one
 * queue, the connect rate and concurrency limits, one eventfd back to the
 * loop for the whole instance): no thread and no descriptor is held per
 * account besides the stream's own socket. Once back on the loop a stream
 * is only a non-blocking socket, an fd watch and timers.
 *
 * The pool threads never touch the imap_account, its mp_config or
 * mp_account: push_stop (and account_close right after it) may free them
 * while a connect is still in DNS or TLS, and nothing on the loop may wait
 * for it. So the loop hands each task a snapshot of the settings and the
 * secret; the task works on that snapshot plus a refcounted shared struct
 * ("cancelled" flag, the way back to the push struct) that the last of the
 * loop and the tasks frees. A task cancelled while queued is dropped
 * without a login; one cancelled while running is discarded when it ends.
 * This is also why a task opens the connection with imap_conn_open
 * directly rather than through imap_account_connect, and why the
 * capability profile stays the business of the sync side.
 */
#include "imap_driver.h"
#include "imap_strategy.h"
#include "imap_pool.h"
#include "imap_sync.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Overridable at build time only so a test build can exercise renewal and
 * the liveness check quickly. */
#ifndef PUSH_RENEW_MS
#define PUSH_RENEW_MS (25u * 60u * 1000u) /* RFC 2177: re-issue before 29 min */
#endif
#ifndef PUSH_ANSWER_MS
#define PUSH_ANSWER_MS 30000u /* DONE/NOOP answer or the link is dead */
#endif
#define PUSH_BACKOFF_MIN_MS 1000u
#define PUSH_BACKOFF_MAX_MS (5u * 60u * 1000u)
#define PUSH_PARK_MS (10u * 60u * 1000u) /* refused by a connection limit */
#ifndef PUSH_CONNECT_TIMEOUT_MS
#define PUSH_CONNECT_TIMEOUT_MS 30000u
#endif
#define PUSH_STATE_NAMES 4 /* folder names shown in push_state */
/* How often IDLE mode compares the folders it watches with the last LIST
 * of the sync side (no I/O: two numbers). */
#define PUSH_FOLDERS_CHECK_MS 5000u

#define NOTIFY_EVENTS "(MessageNew MessageExpunge FlagChange)"

/* ---- small helpers ---- */

static int contains_ci(const char *hay, const char *needle)
{
    return hay != NULL && strcasestr(hay, needle) != NULL;
}

/* Does an error text say the server refuses more connections? Dovecot:
 * "Maximum number of connections from user+IP exceeded"; RFC 5530: [LIMIT];
 * Gmail and others: "Too many simultaneous connections". */
static int is_limit_text(const char *text)
{
    return contains_ci(text, "[LIMIT]") || contains_ci(text, "too many") ||
           contains_ci(text, "maximum number of connections") ||
           contains_ci(text, "connection limit");
}

/* ---- work handed to a connect thread ---- */

typedef enum job_action {
    JOB_NONE = 0,    /* connect (and LIST) only: folder discovery */
    JOB_EXAMINE = 1, /* IDLE stream: EXAMINE the folder */
    JOB_NOTIFY = 2,  /* NOTIFY stream: NOTIFY SET */
} job_action;

typedef struct push_shared push_shared;

typedef struct push_job {
    imap_task task; /* first: the pool hands back this pointer */
    push_shared *sh;
    unsigned epoch; /* streams generation it was started for */
    int stream;     /* index in imap_push.streams, -1: discovery */

    /* Input: a snapshot owned by the job. */
    char *host;
    uint16_t port;
    imap_tls_mode tls;
    char *ca_file;
    char *username;
    char *secret; /* wiped as soon as the connection is open */
    size_t secret_len;
    imap_auth_mech auth;
    uint32_t deadline_ms;
    size_t max_memory;
    int do_list;
    job_action action;
    char *folder;      /* JOB_EXAMINE */
    char *notify_spec; /* JOB_NOTIFY: the NOTIFY SET arguments */

    /* In (a connection to reuse) and out. */
    imap_conn *conn;

    /* Out. */
    int failed;
    int auth_failed;
    int refused;     /* the server's connection limit */
    int cmd_refused; /* EXAMINE / NOTIFY SET answered NO or BAD */
    char *error;
    char **names; /* LIST: UTF-8 names of selectable mailboxes */
    mp_folder_role *roles;
    size_t n_names, cap_names;
    size_t names_bytes;
} push_job;

struct imap_push;

struct push_shared {
    pthread_mutex_t lock;
    unsigned refs;        /* the push struct's, plus one per job        */
    int cancelled;        /* push stopped: jobs are dropped or discarded */
    struct imap_push *p;  /* loop thread only; NULL once cancelled       */
};

static void job_free(push_job **jp)
{
    push_job *j = *jp;
    if (j == NULL)
        return;
    imap_conn_abort(&j->conn);
    if (j->secret != NULL) {
        explicit_bzero(j->secret, j->secret_len);
        free(j->secret);
    }
    free(j->host);
    free(j->ca_file);
    free(j->username);
    free(j->folder);
    free(j->notify_spec);
    free(j->error);
    for (size_t i = 0; i < j->n_names; i++)
        free(j->names[i]);
    free(j->names);
    free(j->roles);
    free(j);
    *jp = NULL;
}

static push_shared *shared_new(void)
{
    push_shared *sh = imap_xcalloc(1, sizeof *sh);
    pthread_mutex_init(&sh->lock, NULL);
    sh->refs = 1;
    return sh;
}

static void shared_ref(push_shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    sh->refs++;
    pthread_mutex_unlock(&sh->lock);
}

/* Whoever drops the last reference (the loop in push_stop, or the last
 * job, wherever it ends) frees it. */
static void shared_unref(push_shared **shp)
{
    push_shared *sh = *shp;
    if (sh == NULL)
        return;
    *shp = NULL;
    pthread_mutex_lock(&sh->lock);
    unsigned left = --sh->refs;
    pthread_mutex_unlock(&sh->lock);
    if (left > 0)
        return;
    pthread_mutex_destroy(&sh->lock);
    free(sh);
}

/* ---- the connect thread ---- */

static void job_add_name(push_job *j, const char *name, mp_folder_role role)
{
    if (j->n_names == j->cap_names) {
        j->cap_names = j->cap_names ? 2 * j->cap_names : 16;
        j->names = realloc(j->names, j->cap_names * sizeof *j->names);
        j->roles = realloc(j->roles, j->cap_names * sizeof *j->roles);
        if (j->names == NULL || j->roles == NULL)
            abort();
    }
    j->names[j->n_names] = imap_xstrdup(name);
    j->roles[j->n_names] = role;
    j->n_names++;
}

static int list_cb(const imap_response *r, void *arg)
{
    push_job *j = arg;
    if (r->keyword == NULL || strcmp(r->keyword, "LIST") != 0 || r->n_args < 3)
        return 0;
    const imap_token *attrs = &r->args[0];
    const imap_token *name = &r->args[2];
    if (attrs->type != IMAP_T_LIST ||
        (name->type != IMAP_T_ATOM && name->type != IMAP_T_STRING) || name->str == NULL)
        return 0;
    mp_folder_role role = MP_ROLE_NONE;
    for (size_t i = 0; i < attrs->n_items; i++) {
        const imap_token *t = &attrs->items[i];
        if (imap_token_is(t, "\\Noselect") || imap_token_is(t, "\\NonExistent"))
            return 0;
        if (imap_token_is(t, "\\Sent"))
            role = MP_ROLE_SENT;
        else if (imap_token_is(t, "\\Junk"))
            role = MP_ROLE_JUNK;
    }
    /* Names the sync side refuses (imap_mutf7_decode) are not watched
     * either; what a LIST may make us hold is bounded like the sync's. */
    char *utf8 = imap_mutf7_decode(name->str);
    if (utf8 == NULL)
        return 0;
    j->names_bytes += strlen(utf8) + 64;
    if (j->names_bytes > j->max_memory) {
        free(utf8);
        return 1;
    }
    job_add_name(j, utf8, role);
    free(utf8);
    return 0;
}

/* Send one command and wait for its answer. -1: the connection failed
 * (*error_r set); 0 with *status_r and *text_r (allocated) otherwise. */
static int job_command(push_job *j, imap_untagged_cb cb, imap_status *status_r,
                       char **text_r, const char *fmt, const char *arg1, const char *arg2)
{
    char tag[16];
    char *error = NULL;
    if (imap_send(j->conn, tag, &error, fmt, arg1, arg2) < 0 ||
        imap_wait(j->conn, tag, cb, j, status_r, text_r, &error) < 0) {
        j->error = error != NULL ? error : imap_xstrdup("connection failed");
        return -1;
    }
    return 0;
}

static void job_run(push_job *j)
{
    char *error = NULL;
    if (j->conn == NULL) {
        imap_conn_opts o = {
            .host = j->host,
            .port = j->port,
            .tls = j->tls,
            .ca_file = j->ca_file,
            .username = j->username,
            .secret = j->secret,
            .auth = j->auth,
            .timeout_ms = PUSH_CONNECT_TIMEOUT_MS,
            /* With CONDSTORE enabled, NOTIFY reports flag changes of
             * unselected mailboxes too (STATUS HIGHESTMODSEQ); IDLE is
             * unaffected but for VANISHED replacing EXPUNGE. */
            .enable = 1,
            .client_id = "mailpulse",
            .deadline_ms = j->deadline_ms,
            .max_memory = j->max_memory,
        };
        imap_auth_answer answer;
        int rc = imap_conn_open(&o, &j->conn, &answer, &error);
        explicit_bzero(j->secret, j->secret_len);
        if (rc < 0) {
            j->failed = 1;
            /* Dovecot answers LOGIN with NO [LIMIT] over its limit: not
             * a credentials problem. */
            j->refused = is_limit_text(error);
            j->auth_failed = imap_sync_auth_is_reauth(&answer) && !j->refused;
            j->error = error != NULL ? error : imap_xstrdup("cannot connect");
            imap_conn_abort(&j->conn);
            return;
        }
    }
    const imap_caps *caps = imap_conn_caps(j->conn);
    uint32_t bits = caps != NULL ? caps->bits : 0;
    imap_status st = IMAP_NONE;
    char *text = NULL;

    if (j->do_list) {
        const char *ret = (bits & IMAP_CAP_SPECIAL_USE) ? " RETURN (SPECIAL-USE)" : "";
        if (job_command(j, list_cb, &st, &text, "LIST \"\" \"*\"%a", ret, NULL) < 0)
            goto failed;
        if (st != IMAP_OK) {
            j->error = imap_xasprintf("LIST failed: %s", text != NULL ? text : "");
            free(text);
            goto failed;
        }
        free(text);
        text = NULL;
    }
    if (j->action == JOB_EXAMINE) {
        const char *cs = (bits & IMAP_CAP_CONDSTORE) ? " (CONDSTORE)" : "";
        if (job_command(j, NULL, &st, &text, "EXAMINE %m%a", j->folder, cs) < 0)
            goto failed;
    } else if (j->action == JOB_NOTIFY) {
        if (job_command(j, NULL, &st, &text, "NOTIFY SET %a", j->notify_spec, NULL) < 0)
            goto failed;
    } else {
        return;
    }
    if (st != IMAP_OK) {
        j->failed = 1;
        j->cmd_refused = 1;
        j->refused = is_limit_text(text);
        j->error = imap_xasprintf("%s refused: %s",
                               j->action == JOB_EXAMINE ? "EXAMINE" : "NOTIFY SET",
                               text != NULL ? text : "");
        /* The connection is still good: a refused NOTIFY falls back to
         * IDLE on it. */
        if (j->action == JOB_EXAMINE)
            imap_conn_abort(&j->conn);
    }
    free(text);
    return;

failed:
    j->failed = 1;
    j->refused = is_limit_text(j->error);
    imap_conn_abort(&j->conn);
}

/* ---- the job as a task of the connect pool ---- */

static struct imap_push *job_push(push_shared *sh);
static void job_done(struct imap_push *p, push_job *j);

static void task_run(imap_task *t)
{
    job_run((push_job *)t);
}

static int task_cancelled(imap_task *t)
{
    push_shared *sh = ((push_job *)t)->sh;
    pthread_mutex_lock(&sh->lock);
    int c = sh->cancelled;
    pthread_mutex_unlock(&sh->lock);
    return c;
}

static void task_discard(imap_task *t)
{
    push_job *j = (push_job *)t;
    push_shared *sh = j->sh;
    j->sh = NULL;
    job_free(&j);
    shared_unref(&sh);
}

/* Loop thread: push_stop runs here too, so the push struct found through
 * the shared part is alive exactly while it is not cancelled. */
static void task_deliver(imap_task *t)
{
    push_job *j = (push_job *)t;
    struct imap_push *p = job_push(j->sh);
    if (p != NULL)
        job_done(p, j);
    task_discard(t);
}

static int job_spawn(imap_pool *pool, push_shared *sh, push_job *j, char **error_r)
{
    shared_ref(sh);
    j->sh = sh;
    j->task.login = j->conn == NULL;
    j->task.run = task_run;
    j->task.cancelled = task_cancelled;
    j->task.deliver = task_deliver;
    j->task.discard = task_discard;
    if (imap_pool_submit(pool, &j->task, error_r) < 0) {
        j->sh = NULL;
        shared_unref(&sh);
        return -1;
    }
    return 0;
}

/* ---- loop side ---- */

typedef enum push_run_mode {
    RUN_UNDECIDED = 0,
    RUN_IDLE = 1,
    RUN_NOTIFY = 2,
    RUN_OFF = 3,
} push_run_mode;

typedef enum stream_phase {
    PH_DOWN = 0,       /* waiting for the retry timer */
    PH_CONNECTING = 1, /* a thread is on it */
    PH_STARTING = 2,   /* "IDLE" sent, waiting for the continuation */
    PH_LIVE = 3,       /* idling / notifications flowing */
    PH_ENDING = 4,     /* "DONE" or "NOOP" sent, waiting for the tagged OK */
} stream_phase;

typedef struct push_stream {
    struct imap_push *p;
    size_t index;
    char *folder; /* IDLE: the folder; NOTIFY: NULL */
    imap_conn *conn;
    mp_watch *watch;
    unsigned watch_events;
    mp_timer *t_renew;  /* re-issue IDLE / NOOP */
    mp_timer *t_answer; /* liveness deadline */
    mp_timer *t_retry;  /* backoff or parking */
    stream_phase phase;
    char tag[16];
    int up; /* live since the last (re)connect */
    int ever_up;
    int parked;        /* refused by the server's limit */
    unsigned failures; /* consecutive, for the backoff */
    char *reason;      /* last failure */
    int hard_failure;  /* credentials / configuration: "failed: " */

    /* Set by the response callback, acted on after the pump returns. */
    int ev_cont, ev_tagged, ev_bye, ev_change;
    imap_status ev_status;
    char *ev_text;
} push_stream;

struct imap_push {
    imap_account *a;
    mp_account *acct;
    push_shared *sh;
    imap_pool *pool; /* the instance's */
    push_run_mode mode;
    unsigned epoch;
    int notify_refused;

    int discovering;
    mp_timer *t_discover;
    unsigned discover_failures;
    char *discover_reason;
    int discover_hard;

    char **folders; /* the synced folders, in IDLE priority order */
    size_t n_folders;
    int all_folders;     /* the account syncs every folder */
    uint64_t folders_sig; /* of `folders` (imap_folder_sig) */
    uint64_t seen_sig;    /* the listed_sig last acted on */
    mp_timer *t_folders;  /* IDLE mode: the folder set check */

    push_stream *streams;
    size_t n_streams;

    char *off_text; /* "off: ..." / "failed: ..." when push is off */
    char *last_state;
    uint32_t tag_seq;
    uint64_t rng;
};

static const char *mode_name(const struct imap_push *p)
{
    return p->mode == RUN_NOTIFY ? "notify" : "idle";
}

static uint32_t backoff_ms(struct imap_push *p, unsigned failures)
{
    uint32_t base = PUSH_BACKOFF_MIN_MS;
    for (unsigned i = 1; i < failures && base < PUSH_BACKOFF_MAX_MS; i++)
        base *= 2;
    if (base > PUSH_BACKOFF_MAX_MS)
        base = PUSH_BACKOFF_MAX_MS;
    /* +-25% so a server restart is not met by every account at once. */
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    uint32_t spread = base / 2;
    return base - base / 4 + (uint32_t)(p->rng % (spread + 1));
}

/* ---- push_state ---- */

static void report(struct imap_push *p, const char *state)
{
    if (p->last_state != NULL && strcmp(p->last_state, state) == 0)
        return;
    free(p->last_state);
    p->last_state = imap_xstrdup(state);
    imap_host->push_state(p->acct, state);
}

static void append(char *buf, size_t size, const char *s)
{
    size_t used = strlen(buf);
    if (used < size)
        snprintf(buf + used, size - used, "%s", s);
}

static void update_state(struct imap_push *p)
{
    if (p->off_text != NULL) {
        report(p, p->off_text);
        return;
    }
    char state[512];
    if (p->mode == RUN_UNDECIDED) {
        if (p->discover_reason == NULL)
            report(p, "starting");
        else {
            snprintf(state, sizeof state, "%s: %s",
                     p->discover_hard ? "failed" : "reconnecting", p->discover_reason);
            report(p, state);
        }
        return;
    }
    size_t n_up = 0, n_active = 0;
    const push_stream *down = NULL;
    for (size_t i = 0; i < p->n_streams; i++) {
        const push_stream *s = &p->streams[i];
        if (s->parked && !s->up)
            continue;
        n_active++;
        if (s->up)
            n_up++;
        else if (down == NULL || (s->reason != NULL && down->reason == NULL))
            down = s;
    }
    if (down != NULL) {
        if (down->reason == NULL)
            report(p, "starting");
        else {
            snprintf(state, sizeof state, "%s: %s%s%s",
                     down->hard_failure ? "failed" : "reconnecting",
                     down->folder != NULL ? down->folder : "",
                     down->folder != NULL ? ": " : "", down->reason);
            report(p, state);
        }
        return;
    }
    if (n_active == 0) {
        report(p, "reconnecting: the server refuses more connections; folders polled");
        return;
    }
    if (p->mode == RUN_NOTIFY) {
        if (p->all_folders)
            snprintf(state, sizeof state, "live: notify all folders");
        else
            snprintf(state, sizeof state, "live: notify %zu folder%s", p->n_folders,
                     p->n_folders == 1 ? "" : "s");
        report(p, state);
        return;
    }
    /* "idle: 3 of 7 folders (INBOX, Sent, Junk); others polled" */
    snprintf(state, sizeof state, "idle: %zu of %zu folder%s (", n_up, p->n_folders,
             p->n_folders == 1 ? "" : "s");
    size_t shown = 0;
    for (size_t i = 0; i < p->n_streams; i++) {
        const push_stream *s = &p->streams[i];
        if (!s->up)
            continue;
        if (shown == PUSH_STATE_NAMES) {
            append(state, sizeof state, ", ...");
            break;
        }
        if (shown++ > 0)
            append(state, sizeof state, ", ");
        append(state, sizeof state, s->folder);
    }
    append(state, sizeof state, ")");
    if (n_up < p->n_folders)
        append(state, sizeof state, "; others polled");
    report(p, state);
}

/* ---- building connect jobs ---- */

/* NULL when the secret cannot be read: *hard_r says whether that is the
 * configuration's fault (1) or a passing one such as the process being out
 * of descriptors (0, MP_RETRY from read_secret). */
static push_job *job_new(struct imap_push *p, int stream, imap_conn *conn, mp_error *err,
                         int *hard_r)
{
    *hard_r = 0;
    imap_account *a = p->a;
    push_job *j = imap_xcalloc(1, sizeof *j);
    j->epoch = p->epoch;
    j->stream = stream;
    j->conn = conn;
    if (conn != NULL)
        return j;
    char *secret = NULL;
    size_t len = 0;
    mp_status st = imap_host->read_secret(a->cfg, a->secret_key, &secret, &len, err);
    if (st != MP_OK) {
        *hard_r = st != MP_RETRY;
        free(j);
        return NULL;
    }
    j->secret = imap_xcalloc(1, len + 1);
    memcpy(j->secret, secret, len);
    j->secret_len = len;
    imap_host->free_secret(&secret);
    j->host = imap_xstrdup(a->host);
    j->port = a->port;
    j->tls = a->tls;
    j->ca_file = imap_xstrdup(a->ca_file);
    j->username = imap_xstrdup(a->username);
    j->auth = a->auth;
    j->deadline_ms = a->deadline_ms;
    j->max_memory = a->max_memory;
    return j;
}

/* A mailbox name as an IMAP quoted string (modified UTF-7 is 7-bit, so a
 * quoted string always does unless the name holds CR or LF). */
static char *quote_mailbox(const char *utf8)
{
    char *m = imap_mutf7_encode(utf8);
    if (m == NULL)
        return NULL;
    size_t n = strlen(m);
    char *q = imap_xcalloc(1, 2 * n + 3);
    size_t k = 0;
    q[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (m[i] == '\r' || m[i] == '\n') {
            free(m);
            free(q);
            return NULL;
        }
        if (m[i] == '"' || m[i] == '\\')
            q[k++] = '\\';
        q[k++] = m[i];
    }
    q[k++] = '"';
    q[k] = '\0';
    free(m);
    return q;
}

static char *notify_spec(const struct imap_push *p)
{
    if (p->all_folders)
        return imap_xstrdup("(selected " NOTIFY_EVENTS ") (personal " NOTIFY_EVENTS ")");
    size_t cap = 128, len = 0;
    char *list = imap_xcalloc(1, cap);
    for (size_t i = 0; i < p->n_folders; i++) {
        char *q = quote_mailbox(p->folders[i]);
        if (q == NULL)
            continue;
        size_t need = len + strlen(q) + 2;
        if (need >= cap) {
            cap = 2 * need;
            list = realloc(list, cap);
            if (list == NULL)
                abort();
        }
        len += (size_t)snprintf(list + len, cap - len, "%s%s", len ? " " : "", q);
        free(q);
    }
    char *spec = imap_xasprintf(
        "(selected " NOTIFY_EVENTS ") (mailboxes (%s) " NOTIFY_EVENTS ")", list);
    free(list);
    return spec;
}

/* ---- streams ---- */

static void stream_schedule_retry(push_stream *s, uint32_t after_ms);
static void stream_io(push_stream *s);

static void stream_close(push_stream *s)
{
    imap_host->timer_cancel(&s->t_renew);
    imap_host->timer_cancel(&s->t_answer);
    imap_host->timer_cancel(&s->t_retry);
    imap_host->watch_cancel(&s->watch);
    s->watch_events = 0;
    imap_conn_abort(&s->conn);
    s->up = 0;
    s->phase = PH_DOWN;
    free(s->ev_text);
    s->ev_text = NULL;
}

static void stream_set_reason(push_stream *s, const char *reason, int hard)
{
    free(s->reason);
    s->reason = imap_xstrdup(reason);
    s->hard_failure = hard;
}

/* The connection is gone or unusable: drop it and try again later. */
static void stream_fail(push_stream *s, const char *reason)
{
    struct imap_push *p = s->p;
    int was_up = s->up;
    stream_close(s);
    stream_set_reason(s, reason, 0);
    s->failures++;
    uint32_t delay = backoff_ms(p, s->failures);
    imap_host->log(NULL, p->acct, was_up ? MP_LOG_INFO : MP_LOG_DEBUG,
                   "%s stream%s%s%s lost: %s; reconnecting in %u ms", mode_name(p),
                   s->folder != NULL ? " \"" : "", s->folder != NULL ? s->folder : "",
                   s->folder != NULL ? "\"" : "", reason, delay);
    stream_schedule_retry(s, delay);
    update_state(p);
}

static void answer_timeout(void *arg)
{
    push_stream *s = arg;
    imap_host->timer_cancel(&s->t_answer);
    char reason[64];
    snprintf(reason, sizeof reason, "no answer from the server within %u s",
             PUSH_ANSWER_MS / 1000u);
    atomic_fetch_add(&s->p->a->link_epoch, 1u);
    stream_fail(s, reason);
}

static void arm_answer(push_stream *s)
{
    imap_host->timer_cancel(&s->t_answer);
    s->t_answer = imap_host->timer_add(s->p->acct, PUSH_ANSWER_MS, answer_timeout, s);
}

static void next_tag(push_stream *s)
{
    snprintf(s->tag, sizeof s->tag, "P%u", ++s->p->tag_seq);
}

static void update_watch(push_stream *s)
{
    if (s->conn == NULL)
        return;
    unsigned want = MP_FD_READ | (imap_conn_want_write(s->conn) ? MP_FD_WRITE : 0u);
    if (want != s->watch_events && s->watch != NULL) {
        imap_host->watch_update(s->watch, want);
        s->watch_events = want;
    }
}

static int stream_write(push_stream *s, const char *line)
{
    char *error = NULL;
    if (imap_conn_write(s->conn, line, strlen(line), &error) < 0) {
        char *reason = imap_xasprintf("write failed: %s", error != NULL ? error : "?");
        free(error);
        stream_fail(s, reason);
        free(reason);
        return -1;
    }
    update_watch(s);
    return 0;
}

static int send_idle(push_stream *s)
{
    char line[32];
    next_tag(s);
    snprintf(line, sizeof line, "%s IDLE\r\n", s->tag);
    if (stream_write(s, line) < 0)
        return -1;
    s->phase = PH_STARTING;
    arm_answer(s);
    return 0;
}

static void renew_due(void *arg)
{
    push_stream *s = arg;
    imap_host->timer_cancel(&s->t_renew);
    if (s->conn == NULL || s->phase != PH_LIVE)
        return;
    imap_host->log(NULL, s->p->acct, MP_LOG_DEBUG, "%s stream%s%s: renewing",
                   mode_name(s->p), s->folder != NULL ? " " : "",
                   s->folder != NULL ? s->folder : "");
    if (s->p->mode == RUN_IDLE) {
        if (stream_write(s, "DONE\r\n") < 0)
            return;
    } else {
        char line[32];
        next_tag(s);
        snprintf(line, sizeof line, "%s NOOP\r\n", s->tag);
        if (stream_write(s, line) < 0)
            return;
    }
    s->phase = PH_ENDING;
    arm_answer(s);
}

static void stream_live(push_stream *s)
{
    struct imap_push *p = s->p;
    imap_host->timer_cancel(&s->t_answer);
    imap_host->timer_cancel(&s->t_renew);
    /* A link that died without a FIN or RST (a NAT or firewall dropping
     * its state, a proxy that stopped forwarding) stays silent, and TCP
     * keepalive may be answered by a middlebox: only an answer from the
     * server proves it alive. So IDLE is re-issued (NOTIFY: NOOP) every
     * push_check_interval, well before RFC 2177's 29 minutes. */
    uint32_t every = PUSH_RENEW_MS;
    if (p->a->push_check_ms > 0 && p->a->push_check_ms < every)
        every = p->a->push_check_ms;
    s->t_renew = imap_host->timer_add(p->acct, every, renew_due, s);
    s->phase = PH_LIVE;
    if (s->up)
        return;
    s->up = 1;
    s->ever_up = 1;
    s->parked = 0;
    free(s->reason);
    s->reason = NULL;
    /* Whatever changed while the stream was down (or between the last
     * sync and EXAMINE) is picked up by one delta sync; coalesced. */
    imap_host->sync_now(p->acct, s->folder, p->mode == RUN_IDLE ? "idle" : "notify");
    update_state(p);
}

static int response_cb(const imap_response *r, void *arg)
{
    push_stream *s = arg;
    struct imap_push *p = s->p;
    switch (r->kind) {
    case IMAP_R_CONTINUATION:
        s->ev_cont = 1;
        break;
    case IMAP_R_TAGGED:
        if (r->tag != NULL && strcmp(r->tag, s->tag) == 0) {
            s->ev_tagged = 1;
            s->ev_status = r->status;
            free(s->ev_text);
            s->ev_text = imap_xstrdup(r->text != NULL ? r->text : "");
        }
        break;
    case IMAP_R_UNTAGGED:
        if (r->status == IMAP_BYE) {
            s->ev_bye = 1;
            free(s->ev_text);
            s->ev_text = imap_xstrdup(r->text != NULL ? r->text : "");
            break;
        }
        /* "* OK Still here" and other status lines change nothing. */
        if (r->status != IMAP_NONE || r->keyword == NULL)
            break;
        if (strcmp(r->keyword, "EXISTS") == 0 || strcmp(r->keyword, "EXPUNGE") == 0 ||
            strcmp(r->keyword, "FETCH") == 0 || strcmp(r->keyword, "VANISHED") == 0) {
            s->ev_change = 1;
        } else if (p->mode == RUN_NOTIFY && strcmp(r->keyword, "STATUS") == 0 &&
                   r->n_args >= 1 && r->args[0].str != NULL &&
                   (r->args[0].type == IMAP_T_ATOM || r->args[0].type == IMAP_T_STRING)) {
            char *folder = imap_mutf7_decode(r->args[0].str);
            imap_host->sync_now(p->acct, folder != NULL ? folder : r->args[0].str,
                                "notify");
            free(folder);
        }
        break;
    }
    return 0;
}

/* Read what the server sent and move the stream along. */
static void stream_io(push_stream *s)
{
    struct imap_push *p = s->p;
    if (s->conn == NULL)
        return;
    s->ev_cont = s->ev_tagged = s->ev_bye = s->ev_change = 0;
    char *error = NULL;
    int rc = imap_conn_pump(s->conn, response_cb, s, &error);
    if (s->ev_change)
        imap_host->sync_now(p->acct, s->folder, p->mode == RUN_IDLE ? "idle" : "notify");
    if (s->ev_bye || rc <= 0) {
        char *reason;
        if (s->ev_bye)
            reason =
                imap_xasprintf("server said BYE: %s", s->ev_text != NULL ? s->ev_text : "");
        else if (rc == 0)
            reason = imap_xstrdup("connection closed by the server");
        else
            reason = imap_xasprintf("%s", error != NULL ? error : "read failed");
        free(error);
        stream_fail(s, reason);
        free(reason);
        return;
    }
    if (s->ev_cont && s->phase == PH_STARTING)
        stream_live(s);
    if (s->ev_tagged) {
        if (s->ev_status != IMAP_OK) {
            char *reason =
                imap_xasprintf("%s refused: %s", p->mode == RUN_IDLE ? "IDLE" : "NOOP",
                            s->ev_text != NULL ? s->ev_text : "");
            stream_fail(s, reason);
            free(reason);
            return;
        }
        if (s->phase == PH_STARTING) {
            /* IDLE ended before it began: do not spin on such a server. */
            stream_fail(s, "the server ended IDLE at once");
            return;
        }
        if (s->phase == PH_ENDING)
            s->failures = 0; /* survived a whole renewal period */
        if (p->mode == RUN_IDLE) {
            /* DONE answered, or the server ended IDLE itself: idle again. */
            if (send_idle(s) < 0)
                return;
        } else {
            stream_live(s);
        }
    }
    update_watch(s);
}

static void stream_ready_cb(int fd, unsigned events, void *arg)
{
    (void)fd;
    (void)events;
    stream_io(arg);
}

static void set_keepalive(int fd)
{
    /* A peer that vanished without a FIN is noticed within minutes even
     * between renewals. Best effort. */
    int on = 1, idle = 120, intvl = 30, cnt = 4;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

/* A connection came back from its thread ready (EXAMINE or NOTIFY SET done). */
static void stream_attach(push_stream *s, imap_conn *conn)
{
    struct imap_push *p = s->p;
    s->conn = conn;
    if (imap_conn_set_nonblocking(conn) < 0) {
        stream_fail(s, "cannot switch the connection to non-blocking mode");
        return;
    }
    int fd = imap_conn_fd(conn);
    set_keepalive(fd);
    s->watch_events = MP_FD_READ;
    s->watch = imap_host->watch_fd(p->acct, fd, MP_FD_READ, stream_ready_cb, s);
    if (p->mode == RUN_IDLE) {
        if (send_idle(s) < 0)
            return;
    } else {
        next_tag(s); /* nothing in flight: no tag may match */
        stream_live(s);
    }
    /* The client may hold bytes read ahead during EXAMINE. */
    stream_io(s);
}

static void stream_connect(push_stream *s, imap_conn *conn)
{
    struct imap_push *p = s->p;
    mp_error err;
    memset(&err, 0, sizeof err);
    int hard = 0;
    push_job *j = job_new(p, (int)s->index, conn, &err, &hard);
    if (j == NULL) {
        imap_conn_abort(&conn);
        if (!hard) {
            stream_fail(s, err.text); /* backoff, shown as reconnecting */
            return;
        }
        stream_set_reason(s, err.text, 1);
        s->failures++;
        stream_schedule_retry(s, PUSH_BACKOFF_MAX_MS);
        update_state(p);
        return;
    }
    if (p->mode == RUN_IDLE) {
        j->action = JOB_EXAMINE;
        j->folder = imap_xstrdup(s->folder);
    } else {
        j->action = JOB_NOTIFY;
        j->notify_spec = notify_spec(p);
    }
    char *error = NULL;
    if (job_spawn(p->pool, p->sh, j, &error) < 0) {
        job_free(&j);
        stream_fail(s, error);
        free(error);
        return;
    }
    s->phase = PH_CONNECTING;
}

static void retry_due(void *arg)
{
    push_stream *s = arg;
    imap_host->timer_cancel(&s->t_retry);
    if (s->phase == PH_DOWN)
        stream_connect(s, NULL);
}

static void stream_schedule_retry(push_stream *s, uint32_t after_ms)
{
    imap_host->timer_cancel(&s->t_retry);
    s->phase = PH_DOWN;
    s->t_retry = imap_host->timer_add(s->p->acct, after_ms, retry_due, s);
}

static void streams_free(struct imap_push *p)
{
    for (size_t i = 0; i < p->n_streams; i++) {
        stream_close(&p->streams[i]);
        free(p->streams[i].folder);
        free(p->streams[i].reason);
    }
    free(p->streams);
    p->streams = NULL;
    p->n_streams = 0;
    p->epoch++; /* results of jobs still running are stale now */
}

/* Create the streams for the decided mode; the first one takes `conn`. */
static void streams_build(struct imap_push *p, imap_conn *conn)
{
    streams_free(p);
    size_t n = 1;
    if (p->mode == RUN_IDLE) {
        n = p->a->max_connections;
        if (n > p->n_folders)
            n = p->n_folders;
    }
    p->streams = imap_xcalloc(n, sizeof *p->streams);
    p->n_streams = n;
    for (size_t i = 0; i < n; i++) {
        push_stream *s = &p->streams[i];
        s->p = p;
        s->index = i;
        if (p->mode == RUN_IDLE)
            s->folder = imap_xstrdup(p->folders[i]);
    }
    update_state(p);
    for (size_t i = 0; i < n; i++)
        stream_connect(&p->streams[i], i == 0 ? conn : NULL);
}

/* ---- discovery: the first connection learns capabilities and folders ---- */

static void discover_start(struct imap_push *p);
static void arm_folders_check(struct imap_push *p);

static void discover_due(void *arg)
{
    struct imap_push *p = arg;
    imap_host->timer_cancel(&p->t_discover);
    discover_start(p);
}

static void discover_retry(struct imap_push *p, const char *reason, int hard)
{
    free(p->discover_reason);
    p->discover_reason = imap_xstrdup(reason);
    p->discover_hard = hard;
    p->discover_failures++;
    uint32_t delay = hard ? PUSH_BACKOFF_MAX_MS : backoff_ms(p, p->discover_failures);
    imap_host->timer_cancel(&p->t_discover);
    p->t_discover = imap_host->timer_add(p->acct, delay, discover_due, p);
    update_state(p);
}

static void discover_start(struct imap_push *p)
{
    mp_error err;
    memset(&err, 0, sizeof err);
    int hard = 0;
    push_job *j = job_new(p, -1, NULL, &err, &hard);
    if (j == NULL) {
        discover_retry(p, err.text, hard);
        return;
    }
    j->do_list = 1;
    char *error = NULL;
    if (job_spawn(p->pool, p->sh, j, &error) < 0) {
        job_free(&j);
        discover_retry(p, error, 0);
        free(error);
        return;
    }
    p->discovering = 1;
}

/* IDLE priority: INBOX, Sent, Junk, then by name. */
static int folder_rank(const char *name, mp_folder_role role)
{
    if (strcasecmp(name, "INBOX") == 0)
        return 0;
    if (role == MP_ROLE_SENT)
        return 1;
    if (role == MP_ROLE_JUNK)
        return 2;
    /* Servers without SPECIAL-USE: the usual names. */
    if (strcasecmp(name, "Sent") == 0 || strcasecmp(name, "Sent Items") == 0 ||
        strcasecmp(name, "Sent Messages") == 0)
        return 1;
    if (strcasecmp(name, "Junk") == 0 || strcasecmp(name, "Spam") == 0 ||
        strcasecmp(name, "Junk E-mail") == 0)
        return 2;
    return 3;
}

typedef struct ranked_folder {
    const char *name;
    int rank;
} ranked_folder;

static int ranked_cmp(const void *x, const void *y)
{
    const ranked_folder *a = x, *b = y;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    return strcmp(a->name, b->name);
}

static void set_folders(struct imap_push *p, const push_job *j)
{
    for (size_t i = 0; i < p->n_folders; i++)
        free(p->folders[i]);
    free(p->folders);
    ranked_folder *r = imap_xcalloc(j->n_names, sizeof *r);
    size_t n = 0;
    for (size_t i = 0; i < j->n_names; i++) {
        if (!imap_account_folder_wanted(p->a, j->names[i]))
            continue;
        r[n].name = j->names[i];
        r[n].rank = folder_rank(j->names[i], j->roles[i]);
        n++;
    }
    qsort(r, n, sizeof *r, ranked_cmp);
    p->folders = imap_xcalloc(n, sizeof *p->folders);
    p->folders_sig = 0;
    for (size_t i = 0; i < n; i++) {
        p->folders[i] = imap_xstrdup(r[i].name);
        p->folders_sig += imap_folder_sig(r[i].name);
    }
    p->n_folders = n;
    free(r);
}

static void set_off(struct imap_push *p, const char *text)
{
    free(p->off_text);
    p->off_text = imap_xstrdup(text);
    p->mode = RUN_OFF;
    streams_free(p);
    update_state(p);
}

/* IDLE streams already follow the folders the new ranking puts first. */
static int same_streams(const struct imap_push *p)
{
    if (p->mode != RUN_IDLE || p->n_streams == 0)
        return 0;
    size_t n = p->a->max_connections < p->n_folders ? p->a->max_connections : p->n_folders;
    if (n != p->n_streams)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p->streams[i].folder == NULL || strcmp(p->streams[i].folder, p->folders[i]) != 0)
            return 0;
    return 1;
}

/* IDLE watches the folders that existed when push started. When a LIST of
 * the sync side shows another set (a folder created, say Sent after
 * INBOX), push lists again on a connection of its own and re-plans; the
 * streams are rebuilt only when the folders they should follow changed.
 * NOTIFY needs none of this: it follows the mailboxes, not a list. */
static void folders_check(void *arg)
{
    struct imap_push *p = arg;
    imap_host->timer_cancel(&p->t_folders);
    uint64_t listed = atomic_load(&p->a->listed_sig);
    if (p->mode == RUN_IDLE && !p->discovering && listed != 0 && listed != p->seen_sig &&
        listed != p->folders_sig) {
        p->seen_sig = listed;
        imap_host->log(NULL, p->acct, MP_LOG_INFO,
                       "push: the synced folders changed; listing them again");
        discover_start(p);
    }
    if (p->mode == RUN_IDLE)
        arm_folders_check(p);
}

static void arm_folders_check(struct imap_push *p)
{
    if (p->t_folders == NULL)
        p->t_folders =
            imap_host->timer_add(p->acct, PUSH_FOLDERS_CHECK_MS, folders_check, p);
}

static void discover_done(struct imap_push *p, push_job *j)
{
    p->discovering = 0;
    if (j->failed) {
        discover_retry(p, j->error != NULL ? j->error : "cannot connect", j->auth_failed);
        return;
    }
    p->discover_failures = 0;
    free(p->discover_reason);
    p->discover_reason = NULL;
    set_folders(p, j);

    const imap_caps *caps = imap_conn_caps(j->conn);
    uint32_t bits = caps != NULL ? caps->bits : 0;
    imap_push_mode want = p->a->push_mode;
    if (want == IMAP_PUSH_NOTIFY && !(bits & IMAP_CAP_NOTIFY)) {
        set_off(
            p, "failed: push: notify is configured but the server does not offer NOTIFY");
        return;
    }
    if (want == IMAP_PUSH_IDLE && !(bits & IMAP_CAP_IDLE)) {
        set_off(p, "failed: push: idle is configured but the server does not offer IDLE");
        return;
    }
    if (want == IMAP_PUSH_NOTIFY ||
        (want == IMAP_PUSH_AUTO && (bits & IMAP_CAP_NOTIFY) && !p->notify_refused))
        p->mode = RUN_NOTIFY;
    else if (bits & IMAP_CAP_IDLE)
        p->mode = RUN_IDLE;
    else {
        set_off(p, "off: server offers neither IDLE nor NOTIFY");
        return;
    }
    if (p->n_folders == 0 && !(p->mode == RUN_NOTIFY && p->all_folders)) {
        /* Folders may be created later: look again after a while. */
        p->mode = RUN_UNDECIDED;
        free(p->discover_reason);
        p->discover_reason =
            imap_xstrdup("none of the synced folders exists on the server");
        imap_host->timer_cancel(&p->t_discover);
        p->t_discover = imap_host->timer_add(p->acct, PUSH_PARK_MS, discover_due, p);
        update_state(p);
        return;
    }
    if (p->mode == RUN_IDLE && p->a->max_connections == 0) {
        set_off(p, "off: max_connections is 0; folders polled");
        return;
    }
    if (p->mode == RUN_IDLE)
        arm_folders_check(p);
    if (same_streams(p)) {
        update_state(p); /* a look after a LIST: nothing to change */
        return;
    }
    imap_host->log(NULL, p->acct, MP_LOG_INFO, "push: %s on %zu folder(s)",
                   p->mode == RUN_NOTIFY ? "NOTIFY" : "IDLE", p->n_folders);
    imap_conn *conn = j->conn;
    j->conn = NULL;
    streams_build(p, conn);
}

static int others_up(const struct imap_push *p, const push_stream *self)
{
    for (size_t i = 0; i < p->n_streams; i++)
        if (&p->streams[i] != self && p->streams[i].up)
            return 1;
    return 0;
}

static void stream_done(struct imap_push *p, push_job *j)
{
    push_stream *s = &p->streams[j->stream];
    if (!j->failed) {
        imap_conn *conn = j->conn;
        j->conn = NULL;
        stream_attach(s, conn);
        return;
    }
    const char *error = j->error != NULL ? j->error : "cannot connect";
    if (p->mode == RUN_NOTIFY && j->cmd_refused && p->a->push_mode == IMAP_PUSH_AUTO) {
        /* The server lists NOTIFY but refuses our filter: IDLE instead. */
        imap_host->log(NULL, p->acct, MP_LOG_WARNING, "push: %s; falling back to IDLE",
                       error);
        p->notify_refused = 1;
        const imap_caps *caps = j->conn != NULL ? imap_conn_caps(j->conn) : NULL;
        if (caps == NULL || !(caps->bits & IMAP_CAP_IDLE)) {
            set_off(p, "off: NOTIFY refused and the server does not offer IDLE");
            return;
        }
        p->mode = RUN_IDLE;
        imap_conn *conn = j->conn;
        j->conn = NULL;
        streams_build(p, conn);
        return;
    }
    if (j->refused ||
        (!j->auth_failed && !j->cmd_refused && !s->ever_up && others_up(p, s))) {
        /* Over the server's connection limit: this folder is polled, and
         * asked for again at most once per PUSH_PARK_MS. */
        s->parked = 1;
        stream_set_reason(s, error, 0);
        imap_host->log(NULL, p->acct, MP_LOG_INFO,
                       "push: no IDLE connection for \"%s\" (%s); polled, retry in %u s",
                       s->folder != NULL ? s->folder : "", error, PUSH_PARK_MS / 1000);
        stream_schedule_retry(s, PUSH_PARK_MS);
        update_state(p);
        return;
    }
    if (j->auth_failed) {
        stream_set_reason(s, error, 1);
        s->failures++;
        stream_schedule_retry(s, PUSH_BACKOFF_MAX_MS);
        update_state(p);
        return;
    }
    stream_fail(s, error);
}

static void job_done(struct imap_push *p, push_job *j)
{
    if (j->stream < 0) {
        if (p->discovering)
            discover_done(p, j);
        return;
    }
    if (j->epoch != p->epoch || (size_t)j->stream >= p->n_streams)
        return; /* the streams were rebuilt meanwhile */
    if (p->streams[j->stream].phase != PH_CONNECTING)
        return;
    stream_done(p, j);
}

static struct imap_push *job_push(push_shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    struct imap_push *p = sh->cancelled ? NULL : sh->p;
    pthread_mutex_unlock(&sh->lock);
    return p;
}

/* ---- the driver slots ---- */

mp_status imap_push_start(mp_account *acct, mp_error *err)
{
    imap_account *a = imap_host->account_state(acct);
    if (a == NULL)
        return mp_fail(err, MP_FATAL, "push: account not open");
    imap_push_stop(acct);
    if (a->push_mode == IMAP_PUSH_OFF) {
        imap_host->push_state(acct, "off: push disabled (push: off); folders polled");
        return MP_OK;
    }
    if (a->inst == NULL || a->inst->pool == NULL)
        return mp_fail(err, MP_FATAL, "push: the driver instance has no connect pool");
    push_shared *sh = shared_new();
    struct imap_push *p = imap_xcalloc(1, sizeof *p);
    p->a = a;
    p->acct = acct;
    p->sh = sh;
    p->pool = a->inst->pool;
    sh->p = p;
    p->all_folders = a->folders == NULL;
    p->rng = (uint64_t)imap_host->now_ms() ^ ((uint64_t)(uintptr_t)p << 16) ^
             0x9e3779b97f4a7c15ull;
    a->push = p;
    update_state(p);
    discover_start(p);
    return MP_OK;
}

void imap_push_stop(mp_account *acct)
{
    imap_account *a = imap_host->account_state(acct);
    if (a == NULL || a->push == NULL)
        return;
    struct imap_push *p = a->push;
    a->push = NULL;
    streams_free(p);
    imap_host->timer_cancel(&p->t_discover);
    imap_host->timer_cancel(&p->t_folders);
    /* Jobs still queued are dropped without a login, running ones discard
     * their result; the last of them frees the shared part. */
    pthread_mutex_lock(&p->sh->lock);
    p->sh->cancelled = 1;
    p->sh->p = NULL;
    pthread_mutex_unlock(&p->sh->lock);
    shared_unref(&p->sh);
    for (size_t i = 0; i < p->n_folders; i++)
        free(p->folders[i]);
    free(p->folders);
    free(p->discover_reason);
    free(p->off_text);
    free(p->last_state);
    free(p);
}

/*
 * Request/response commands: fetch JSON, then print tables (or the JSON
 * itself with --json). Everything the daemon sends is sanitized before it
 * reaches the terminal (a subject may carry escape sequences).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "util/util.h"

/* Column caps keep rows readable on an 80-160 column terminal. */
#define W_FROM 28
#define W_SUBJECT 60
#define W_ERROR 60

int mpctl_report_connect_error(const mpctl_conn *conn, const char *error)
{
    char *where = mpctl_conn_describe(conn);
    const char *target = conn->socket_path != NULL ? conn->socket_path : conn->base_url;
    char *safe_error = mpctl_sanitize(error);
    fprintf(stderr, "mailpulsectl: cannot connect to %s: %s\n", target, safe_error);
    fprintf(stderr, "mailpulsectl: is mailpulsed running? (%s)\n", where);
    free(safe_error);
    free(where);
    return MPCTL_EXIT_CONNECT;
}

int mpctl_report_http_error(const mpctl_response *resp)
{
    char *message = NULL;
    json_t *root = json_loadb(resp->body, resp->len, JSON_DECODE_ANY, NULL);
    const char *error = json_string_value(json_object_get(root, "error"));
    if (error != NULL) {
        message = mpctl_sanitize(error);
    } else if (resp->len > 0) {
        char *first = mpu_strndup(resp->body, strcspn(resp->body, "\r\n"));
        char *clean = mpctl_sanitize(first);
        message = mpctl_utf8_truncate(clean, 200);
        free(clean);
        free(first);
    } else {
        message = mpu_strdup("no error message");
    }
    fprintf(stderr, "mailpulsectl: %ld: %s\n", resp->status, message);
    free(message);
    json_decref(root);
    return MPCTL_EXIT_ERROR;
}

void mpctl_print_json_pretty(const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (root == NULL) {
        fwrite(body, 1, len, stdout);
        return;
    }
    json_dumpf(root, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fputc('\n', stdout);
    json_decref(root);
}

int mpctl_fetch_json(const mpctl_args *args, const mpctl_conn *conn, const char *method,
                      const char *path, json_t **root_r)
{
    mpctl_response resp;
    char *error = NULL;
    *root_r = NULL;
    if (mpctl_request(conn, method, path, NULL, &resp, &error) < 0) {
        int rc = mpctl_report_connect_error(conn, error);
        free(error);
        mpctl_response_clear(&resp);
        return rc;
    }
    if (resp.status < 200 || resp.status > 299) {
        int rc = mpctl_report_http_error(&resp);
        mpctl_response_clear(&resp);
        return rc;
    }
    json_error_t jerr;
    json_t *root = json_loadb(resp.body, resp.len, JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        fprintf(stderr, "mailpulsectl: %ld: invalid JSON from the daemon: %s\n",
                resp.status, jerr.text);
        mpctl_response_clear(&resp);
        return MPCTL_EXIT_ERROR;
    }
    if (args->json) {
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
        fputc('\n', stdout);
    }
    mpctl_response_clear(&resp);
    *root_r = root;
    return MPCTL_EXIT_OK;
}

/* Display text of a JSON value; NULL for null/absent (shown as "-"). */
static char *value_text(const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return mpu_strdup(json_string_value(v));
    if (json_is_integer(v))
        return mpu_asprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return mpu_asprintf("%g", json_real_value(v));
    if (json_is_boolean(v))
        return mpu_strdup(json_is_true(v) ? "yes" : "no");
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static char *field(const json_t *obj, const char *key)
{
    return value_text(json_object_get(obj, key));
}

static void free_cells(char **cells, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cells[i]);
}

static void print_table(const mpctl_table *t)
{
    char *text = mpctl_table_render(t);
    fputs(text, stdout);
    free(text);
}

static void print_kv(const char *label, const char *value)
{
    char *clean = mpctl_sanitize(value);
    printf("%-14s %s\n", label, clean);
    free(clean);
}

static void print_kv_owned(const char *label, char *value)
{
    print_kv(label, value);
    free(value);
}

static int any_nonempty(const json_t *list, const char *key)
{
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *s = json_string_value(json_object_get(item, key));
        if (s != NULL && s[0] != '\0')
            return 1;
    }
    return 0;
}

static void print_accounts(const json_t *accounts)
{
    if (json_array_size(accounts) == 0) {
        printf("no accounts\n");
        return;
    }
    /* The list has no folder or message counts (they live in the store;
     * `mailpulsectl account ID` shows them). */
    static const char *const headers[] = {"ID",   "INSTANCE",  "DRIVER",
                                          "STATUS", "PUSH", "LAST-SYNC", "LAST-ERROR"};
    static const char *const keys[] = {"id",         "instance",  "driver",    "status",
                                       "push_state", "last_sync", "last_error"};
    size_t n = any_nonempty(accounts, "last_error") ? 7 : 6;
    mpctl_table *t = mpctl_table_new(n, headers);
    if (n == 7)
        mpctl_table_set_max(t, 6, W_ERROR);
    size_t i;
    const json_t *a;
    json_array_foreach(accounts, i, a)
    {
        char *cells[7];
        for (size_t c = 0; c < n; c++)
            cells[c] = field(a, keys[c]);
        mpctl_table_add_row(t, (const char *const *)cells);
        free_cells(cells, n);
    }
    print_table(t);
    mpctl_table_free(&t);
}

static void print_drivers(const json_t *drivers)
{
    if (json_array_size(drivers) == 0) {
        printf("no driver instances\n");
        return;
    }
    static const char *const headers[] = {"INSTANCE", "DRIVER", "STATUS", "ERROR"};
    static const char *const keys[] = {"instance", "name", "status", "error"};
    mpctl_table *t = mpctl_table_new(4, headers);
    mpctl_table_set_max(t, 3, W_ERROR);
    size_t i;
    const json_t *d;
    json_array_foreach(drivers, i, d)
    {
        char *cells[4];
        for (size_t c = 0; c < 4; c++)
            cells[c] = field(d, keys[c]);
        mpctl_table_add_row(t, (const char *const *)cells);
        free_cells(cells, 4);
    }
    print_table(t);
    mpctl_table_free(&t);
}

/* "bus:" line of the status: the relay's state, stream and lag, and the
 * last error while it is not connected. Nothing without a bus. */
static void print_bus(const json_t *bus)
{
    if (!json_is_object(bus))
        return;
    char *state = field(bus, "state"), *stream = field(bus, "stream");
    char *line = mpu_asprintf(
        "%s, stream %s, lag %lld (published %lld, duplicates %lld, errors %lld)", state,
        stream, (long long)json_integer_value(json_object_get(bus, "lag")),
        (long long)json_integer_value(json_object_get(bus, "published")),
        (long long)json_integer_value(json_object_get(bus, "duplicates")),
        (long long)json_integer_value(json_object_get(bus, "errors")));
    print_kv_owned("bus:", line);
    const char *error = json_string_value(json_object_get(bus, "last_error"));
    if (error != NULL && !json_is_true(json_object_get(bus, "connected")))
        print_kv("bus error:", error);
    free(state);
    free(stream);
}

static int cmd_status(const mpctl_args *args, const mpctl_conn *conn)
{
    json_t *st;
    int rc = mpctl_fetch_json(args, conn, "GET", "/v1/status", &st);
    if (rc != MPCTL_EXIT_OK || args->json) {
        json_decref(st);
        return rc;
    }
    char *version = field(st, "version");
    char *uptime = mpctl_format_duration(
        (int64_t)json_number_value(json_object_get(st, "uptime_s")));
    char *clean = mpctl_sanitize(version);
    printf("mailpulsed %s, up %s\n", clean, uptime);
    free(clean);
    free(uptime);
    free(version);
    print_kv_owned("state dir:", field(st, "state_dir"));
    print_kv_owned("accounts:", field(st, "accounts"));
    print_kv_owned("last event:", field(json_object_get(st, "events"), "last_seq"));
    print_bus(json_object_get(st, "bus"));
    printf("\n");
    print_drivers(json_object_get(st, "drivers"));
    json_decref(st);

    json_t *list;
    rc = mpctl_fetch_json(args, conn, "GET", "/v1/accounts", &list);
    if (rc == MPCTL_EXIT_OK) {
        printf("\n");
        print_accounts(json_object_get(list, "accounts"));
    }
    json_decref(list);
    return rc;
}

/* "12 accounts (status: ok 10, error 2; push: live 9, off 3)" from the
 * daemon-wide counts of a GET /v1/accounts answer. */
static void print_summary(const json_t *page, size_t listed)
{
    const json_t *counts = json_object_get(page, "counts");
    json_int_t all = json_integer_value(json_object_get(counts, "accounts"));
    json_int_t total = json_integer_value(json_object_get(page, "total"));
    printf("%lld accounts", (long long)all);
    if (total != all || (json_int_t)listed != total)
        printf(", %lld matching, %zu listed", (long long)total, listed);
    static const char *const groups[] = {"status", "push"};
    for (size_t g = 0; g < 2; g++) {
        printf("%s%s:", g == 0 ? " (" : "; ", groups[g]);
        const char *key;
        const json_t *v;
        int first = 1;
        json_object_foreach((json_t *)json_object_get(counts, groups[g]), key, v) {
            char *clean = mpctl_sanitize(key);
            printf("%s %s %lld", first ? "" : ",", clean, (long long)json_integer_value(v));
            free(clean);
            first = 0;
        }
    }
    printf(")\n");
}

/* Every page of GET /v1/accounts (following next_after), printed as one
 * table and a summary line; --json prints the same as one object:
 * {"accounts":[all pages],"total","counts"} (of the last page). */
static int cmd_accounts(const mpctl_args *args, const mpctl_conn *conn)
{
    mpctl_args quiet = *args;
    quiet.json = 0;
    char limit[32];
    snprintf(limit, sizeof(limit), "%lld", (long long)args->limit);
    json_t *all = json_array();
    json_t *last = NULL;
    char *after = NULL;
    int rc;
    for (;;) {
        const mpctl_param params[] = {
            {"limit", args->limit >= 0 ? limit : NULL},
            {"status", args->status},
            {"push", args->push},
            {"after", after},
        };
        char *query = mpctl_query_build(params, 4);
        char *path = mpu_asprintf("/v1/accounts%s", query);
        json_t *page = NULL;
        rc = mpctl_fetch_json(&quiet, conn, "GET", path, &page);
        free(path);
        free(query);
        if (rc != MPCTL_EXIT_OK)
            break;
        json_array_extend(all, json_object_get(page, "accounts"));
        const char *next = json_string_value(json_object_get(page, "next_after"));
        /* A next_after that does not move on would loop forever. */
        int done = next == NULL || (after != NULL && strcmp(next, after) <= 0);
        free(after);
        after = done ? NULL : mpu_strdup(next);
        json_decref(last);
        last = page;
        if (done)
            break;
    }
    free(after);
    if (rc == MPCTL_EXIT_OK) {
        if (args->json) {
            json_t *out = json_pack("{s:O, s:O, s:O}", "accounts", all, "total",
                                    json_object_get(last, "total"), "counts",
                                    json_object_get(last, "counts"));
            json_dumpf(out, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
            json_decref(out);
        } else {
            print_accounts(all);
            print_summary(last, json_array_size(all));
        }
    }
    json_decref(all);
    json_decref(last);
    return rc;
}

/* "idle, 3 runs, 0 failures, next due 2026-..." for a sync/backfill job. */
static char *job_text(const json_t *job)
{
    if (!json_is_object(job))
        return NULL;
    char *due = field(job, "next_due");
    char *text =
        mpu_asprintf("%s, %lld runs, %lld failures, next due %s",
                     json_is_true(json_object_get(job, "running")) ? "running" : "idle",
                     (long long)json_integer_value(json_object_get(job, "runs")),
                     (long long)json_integer_value(json_object_get(job, "failures")),
                     due != NULL ? due : "-");
    free(due);
    return text;
}

/* "running 120/1500" (target omitted when unknown). */
static char *backfill_text(const json_t *bf)
{
    if (!json_is_object(bf))
        return NULL;
    char *status = field(bf, "status");
    char *loaded = field(bf, "loaded");
    char *target = field(bf, "target");
    char *text;
    if (target != NULL)
        text = mpu_asprintf("%s %s/%s", status ? status : "-", loaded ? loaded : "0",
                            target);
    else
        text = mpu_asprintf("%s %s", status ? status : "-", loaded ? loaded : "0");
    free(status);
    free(loaded);
    free(target);
    return text;
}

static void print_folders(const json_t *folders)
{
    if (json_array_size(folders) == 0) {
        printf("no folders\n");
        return;
    }
    static const char *const headers[] = {"NAME",     "ROLE",      "MESSAGES",  "BODIES",
                                          "BACKFILL", "LAST-SYNC", "LAST-ERROR"};
    size_t n = any_nonempty(folders, "last_error") ? 7 : 6;
    mpctl_table *t = mpctl_table_new(n, headers);
    mpctl_table_set_right(t, 2);
    mpctl_table_set_right(t, 3);
    if (n == 7)
        mpctl_table_set_max(t, 6, W_ERROR);
    size_t i;
    const json_t *f;
    json_array_foreach(folders, i, f)
    {
        char *cells[7] = {
            field(f, "name"),
            field(f, "role"),
            field(f, "messages"),
            field(f, "bodies"),
            backfill_text(json_object_get(f, "backfill")),
            field(f, "last_sync"),
            field(f, "last_error"),
        };
        mpctl_table_add_row(t, (const char *const *)cells);
        free_cells(cells, 7);
    }
    print_table(t);
    mpctl_table_free(&t);
}

/* A driver with several push subscriptions per account (graph.so: one per
 * folder) lists them in its profile as {folder, id, expires}: one line
 * each, so an admin sees every expiry without reading the JSON. */
static void print_push_subscriptions(const json_t *subs)
{
    size_t i;
    const json_t *sub;
    json_array_foreach(subs, i, sub)
    {
        const char *folder = json_string_value(json_object_get(sub, "folder"));
        const char *id = json_string_value(json_object_get(sub, "id"));
        const char *expires = json_string_value(json_object_get(sub, "expires"));
        if (id == NULL)
            continue;
        print_kv_owned("subscribed:",
                       mpu_asprintf("%s  %s  expires %s",
                                    folder == NULL            ? "-"
                                    : strcmp(folder, "*") == 0 ? "(mailbox-wide)"
                                                               : folder,
                                    id, expires != NULL ? expires : "-"));
    }
}

static int cmd_account(const mpctl_args *args, const mpctl_conn *conn)
{
    char *id = mpctl_path_escape(args->pos[0]);
    char *path = mpu_asprintf("/v1/accounts/%s", id);
    json_t *a;
    int rc = mpctl_fetch_json(args, conn, "GET", path, &a);
    free(path);
    free(id);
    if (rc != MPCTL_EXIT_OK || args->json) {
        json_decref(a);
        return rc;
    }
    print_kv_owned("account:", field(a, "id"));
    print_kv_owned("instance:", field(a, "instance"));
    print_kv_owned("driver:", field(a, "driver"));
    print_kv_owned("status:", field(a, "status"));
    print_kv_owned("last error:", field(a, "last_error"));
    print_kv_owned("push:", field(a, "push_state"));
    char *poll = field(a, "poll_interval_s");
    print_kv_owned("poll interval:", poll != NULL ? mpu_asprintf("%ss", poll) : NULL);
    free(poll);
    print_kv_owned("sync:", job_text(json_object_get(a, "sync")));
    print_kv_owned("backfill:", job_text(json_object_get(a, "backfill")));
    print_kv_owned("profile:", field(a, "profile"));
    print_kv_owned("subscription:", field(a, "subscription"));
    print_push_subscriptions(json_object_get(json_object_get(a, "profile"), "subscriptions"));
    printf("\n");
    print_folders(json_object_get(a, "folders"));
    json_decref(a);
    return rc;
}

/* "Name <addr>" from a string, an {name, address|email} object or a list
 * of those (first one, "+N" for the rest). */
static char *address_text(const json_t *v)
{
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if (n == 0)
            return NULL;
        char *first = address_text(json_array_get(v, 0));
        if (n == 1)
            return first;
        char *text = mpu_asprintf("%s +%zu", first ? first : "?", n - 1);
        free(first);
        return text;
    }
    if (json_is_object(v)) {
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *addr = json_string_value(json_object_get(v, "address"));
        if (addr == NULL)
            addr = json_string_value(json_object_get(v, "email"));
        if (name != NULL && name[0] != '\0' && addr != NULL)
            return mpu_asprintf("%s <%s>", name, addr);
        return mpu_strdup(addr != NULL ? addr : name);
    }
    return value_text(v);
}

static char *flags_text(const json_t *v)
{
    if (!json_is_array(v))
        return value_text(v);
    char *text = mpu_strdup("");
    size_t i;
    const json_t *flag;
    json_array_foreach(v, i, flag)
    {
        char *one = value_text(flag);
        char *next = mpu_asprintf("%s%s%s", text, i > 0 ? "," : "", one ? one : "?");
        free(one);
        free(text);
        text = next;
    }
    return text;
}

static int cmd_messages(const mpctl_args *args, const mpctl_conn *conn)
{
    char limit[32];
    snprintf(limit, sizeof(limit), "%lld", (long long)args->limit);
    const mpctl_param params[] = {
        {"folder", args->folder},
        {"limit", args->limit >= 0 ? limit : NULL},
        {"before", args->before},
    };
    char *query = mpctl_query_build(params, 3);
    char *id = mpctl_path_escape(args->pos[0]);
    char *path = mpu_asprintf("/v1/accounts/%s/messages%s", id, query);
    json_t *root;
    int rc = mpctl_fetch_json(args, conn, "GET", path, &root);
    free(path);
    free(id);
    free(query);
    if (rc != MPCTL_EXIT_OK || args->json) {
        json_decref(root);
        return rc;
    }
    const json_t *list = json_object_get(root, "messages");
    if (json_array_size(list) == 0) {
        printf("no messages\n");
    } else {
        static const char *const headers[] = {"ID", "DATE", "FROM", "SUBJECT", "FLAGS"};
        mpctl_table *t = mpctl_table_new(5, headers);
        mpctl_table_set_max(t, 2, W_FROM);
        mpctl_table_set_max(t, 3, W_SUBJECT);
        size_t i;
        const json_t *m;
        json_array_foreach(list, i, m)
        {
            char *cells[5] = {
                field(m, "id"),
                field(m, "date"),
                address_text(json_object_get(m, "from")),
                field(m, "subject"),
                flags_text(json_object_get(m, "flags")),
            };
            mpctl_table_add_row(t, (const char *const *)cells);
            free_cells(cells, 5);
        }
        print_table(t);
        mpctl_table_free(&t);
    }
    char *next = field(root, "next_before");
    if (next != NULL) {
        char *clean = mpctl_sanitize(next);
        fprintf(stderr, "(more: --before %s)\n", clean);
        free(clean);
        free(next);
    }
    json_decref(root);
    return rc;
}

static int cmd_show(const mpctl_args *args, const mpctl_conn *conn)
{
    char *id = mpctl_path_escape(args->pos[0]);
    if (args->json) {
        char *path = mpu_asprintf("/v1/messages/%s", id);
        json_t *root;
        int rc = mpctl_fetch_json(args, conn, "GET", path, &root);
        json_decref(root);
        free(path);
        free(id);
        return rc;
    }
    char *path = mpu_asprintf("/v1/messages/%s/raw", id);
    free(id);
    mpctl_response resp;
    char *error = NULL;
    int rc = MPCTL_EXIT_OK;
    if (mpctl_request(conn, "GET", path, stdout, &resp, &error) < 0) {
        rc = mpctl_report_connect_error(conn, error);
        free(error);
    } else if (resp.status < 200 || resp.status > 299) {
        rc = mpctl_report_http_error(&resp);
    } else if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "mailpulsectl: cannot write the message\n");
        rc = MPCTL_EXIT_ERROR;
    }
    mpctl_response_clear(&resp);
    free(path);
    return rc;
}

static int cmd_post(const mpctl_args *args, const mpctl_conn *conn, const char *path,
                    const char *done)
{
    json_t *root;
    int rc = mpctl_fetch_json(args, conn, "POST", path, &root);
    if (rc == MPCTL_EXIT_OK && !args->json) {
        char *clean = mpctl_sanitize(done);
        printf("%s\n", clean);
        free(clean);
    }
    json_decref(root);
    return rc;
}

static int cmd_sync(const mpctl_args *args, const mpctl_conn *conn)
{
    char *id = mpctl_path_escape(args->pos[0]);
    char *path = mpu_asprintf("/v1/accounts/%s/sync", id);
    char *done = mpu_asprintf("sync queued for %s", args->pos[0]);
    int rc = cmd_post(args, conn, path, done);
    free(done);
    free(path);
    free(id);
    return rc;
}

static int cmd_probe(const mpctl_args *args, const mpctl_conn *conn)
{
    char *id = mpctl_path_escape(args->pos[0]);
    char *path = mpu_asprintf("/v1/accounts/%s/probe", id);
    char *done = mpu_asprintf("probe queued for %s (see: mailpulsectl account %s)",
                              args->pos[0], args->pos[0]);
    int rc = cmd_post(args, conn, path, done);
    free(done);
    free(path);
    free(id);
    return rc;
}

static int cmd_backfill(const mpctl_args *args, const mpctl_conn *conn)
{
    char *id = mpctl_path_escape(args->pos[0]);
    char *folder = mpctl_path_escape(args->pos[1]);
    char *path = mpu_asprintf("/v1/accounts/%s/folders/%s/backfill", id, folder);
    char *done =
        mpu_asprintf("backfill queued for %s folder %s", args->pos[0], args->pos[1]);
    int rc = cmd_post(args, conn, path, done);
    free(done);
    free(path);
    free(folder);
    free(id);
    return rc;
}

int mpctl_cmd_run(const mpctl_args *args, const mpctl_conn *conn)
{
    switch (args->command) {
    case MPCTL_CMD_STATUS:
        return cmd_status(args, conn);
    case MPCTL_CMD_ACCOUNTS:
        return cmd_accounts(args, conn);
    case MPCTL_CMD_ACCOUNT:
        return cmd_account(args, conn);
    case MPCTL_CMD_MESSAGES:
        return cmd_messages(args, conn);
    case MPCTL_CMD_SHOW:
        return cmd_show(args, conn);
    case MPCTL_CMD_SYNC:
        return cmd_sync(args, conn);
    case MPCTL_CMD_BACKFILL:
        return cmd_backfill(args, conn);
    case MPCTL_CMD_PROBE:
        return cmd_probe(args, conn);
    case MPCTL_CMD_EVENTS:
        return mpctl_cmd_events(args, conn);
    case MPCTL_CMD_WEBHOOKS:
        return mpctl_cmd_webhooks(args, conn);
    case MPCTL_CMD_GMAIL_STATUS:
        return mpctl_cmd_gmail_status(args, conn);
    case MPCTL_CMD_CHECK:
        return mpctl_cmd_check(args, conn);
    case MPCTL_CMD_GRAPH_SETUP:
        return mpctl_cmd_graph_setup(args, conn);
    case MPCTL_CMD_GMAIL_SETUP:
        return mpctl_cmd_gmail_setup(args, conn);
    default:
        fputs(mpctl_usage(), stderr);
        return MPCTL_EXIT_USAGE;
    }
}

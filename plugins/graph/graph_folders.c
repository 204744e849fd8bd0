/*
 * list_folders and the folder table: mailFolders with their child folders
 * (recursive, paged), named by display path "Parent/Child", and the roles
 * of the well-known folders, whose ids are resolved once with
 * GET /mailFolders/{wellknownname} and cached in driver state ("wellknown").
 */
#include "graph_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FOLDERS_MAX 5000
#define DEPTH_MAX 16
#define FOLDER_PAGE 100
#define WELLKNOWN_KEY "wellknown"

const graph_wellknown graph_wellknown_folders[GRAPH_N_WELLKNOWN] = {
    {"inbox", MP_ROLE_INBOX},        {"sentitems", MP_ROLE_SENT},
    {"drafts", MP_ROLE_DRAFTS},      {"deleteditems", MP_ROLE_TRASH},
    {"junkemail", MP_ROLE_JUNK},     {"archive", MP_ROLE_ARCHIVE},
};

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

void graph_folders_clear(graph_account *a)
{
    for (size_t i = 0; i < a->n_folders; i++) {
        free(a->folders[i].id);
        free(a->folders[i].path);
    }
    free(a->folders);
    a->folders = NULL;
    a->n_folders = 0;
    a->folders_loaded = 0;
}

/* The well-known ids: from driver state, else asked of Graph and kept. */
static mp_status wellknown_load(graph_account *a, mp_error *err)
{
    if (a->wellknown_loaded)
        return MP_OK;
    char *text = NULL;
    mp_status st = graph_host->state_get(a->acct, WELLKNOWN_KEY, &text, err);
    if (st == MP_OK) {
        json_error_t jerr;
        json_t *root = json_loads(text, 0, &jerr);
        graph_host->free(text);
        if (json_is_object(root)) {
            for (size_t i = 0; i < GRAPH_N_WELLKNOWN; i++) {
                const char *id =
                    json_string_value(json_object_get(root, graph_wellknown_folders[i].name));
                free(a->wellknown_id[i]);
                a->wellknown_id[i] = xstrdup(id != NULL ? id : "");
            }
            json_decref(root);
            a->wellknown_loaded = 1;
            return MP_OK;
        }
        json_decref(root);
    } else if (st != MP_SKIP) {
        return st;
    }
    memset(err, 0, sizeof *err);
    json_t *record = json_object();
    for (size_t i = 0; i < GRAPH_N_WELLKNOWN; i++) {
        char rest[64];
        snprintf(rest, sizeof rest, "mailFolders/%s?$select=id", graph_wellknown_folders[i].name);
        char *url = graph_user_url(a, rest);
        graph_call c = {.method = "GET", .url = url, .max_response = 1u << 20};
        mp_http_response resp;
        st = graph_http_call(a, &c, "GET well-known mailFolder", &resp, err);
        free(url);
        const char *id = NULL;
        json_t *root = NULL;
        if (st == MP_OK) {
            json_error_t jerr;
            root = json_loadb((const char *)resp.body, resp.body_len, 0, &jerr);
            graph_host->http_free(&resp);
            id = json_string_value(json_object_get(root, "id"));
            if (id == NULL) {
                json_decref(root);
                json_decref(record);
                return mp_fail(err, MP_RETRY, "GET mailFolders/%s: no id in the answer",
                               graph_wellknown_folders[i].name);
            }
        } else if (st == MP_SKIP) {
            memset(err, 0, sizeof *err); /* no such folder in this mailbox */
        } else {
            json_decref(record);
            return st;
        }
        free(a->wellknown_id[i]);
        a->wellknown_id[i] = xstrdup(id != NULL ? id : "");
        json_object_set_new(record, graph_wellknown_folders[i].name,
                            json_string(a->wellknown_id[i]));
        json_decref(root);
    }
    char *dump = json_dumps(record, JSON_COMPACT);
    json_decref(record);
    if (dump == NULL)
        abort();
    st = graph_host->state_put(a->acct, WELLKNOWN_KEY, dump, err);
    free(dump);
    if (st != MP_OK)
        return st;
    a->wellknown_loaded = 1;
    return MP_OK;
}

static mp_folder_role role_of(const graph_account *a, const char *id)
{
    for (size_t i = 0; i < GRAPH_N_WELLKNOWN; i++)
        if (a->wellknown_id[i] != NULL && a->wellknown_id[i][0] != '\0' &&
            strcmp(a->wellknown_id[i], id) == 0)
            return graph_wellknown_folders[i].role;
    return MP_ROLE_NONE;
}

typedef struct table {
    graph_folder *v;
    size_t n;
} table;

/* List `first_url` (a folder collection) and recurse into children. */
static mp_status list_level(graph_account *a, table *t, const char *first_url,
                            const char *prefix, unsigned depth, mp_error *err)
{
    char *url = xstrdup(first_url);
    mp_status st = MP_OK;
    while (url != NULL && st == MP_OK) {
        graph_call c = {.method = "GET", .url = url, .max_response = 8u << 20};
        mp_http_response resp;
        st = graph_http_call(a, &c, "GET mailFolders", &resp, err);
        free(url);
        url = NULL;
        if (st == MP_SKIP)
            st = mp_fail(err, MP_RETRY, "GET mailFolders: a folder vanished while listed");
        if (st != MP_OK)
            break;
        graph_folder_page p;
        char *error = NULL;
        int r = graph_folder_page_parse((const char *)resp.body, resp.body_len, &p, &error);
        graph_host->http_free(&resp);
        if (r < 0) {
            st = mp_fail(err, MP_RETRY, "GET mailFolders: %s", error);
            free(error);
            break;
        }
        if (p.next_link != NULL && graph_link_ok(a, p.next_link))
            url = xstrdup(p.next_link);
        for (size_t i = 0; i < p.n && st == MP_OK; i++) {
            if (t->n >= FOLDERS_MAX) {
                st = mp_fail(err, MP_FATAL, "the mailbox has more than %d folders",
                             FOLDERS_MAX);
                break;
            }
            size_t pl = strlen(prefix) + strlen(p.v[i].name) + 2;
            char *path = malloc(pl);
            if (path == NULL)
                abort();
            snprintf(path, pl, "%s%s%s", prefix, prefix[0] ? "/" : "", p.v[i].name);
            graph_folder *grown = realloc(t->v, (t->n + 1) * sizeof *grown);
            if (grown == NULL)
                abort();
            t->v = grown;
            t->v[t->n].id = xstrdup(p.v[i].id);
            t->v[t->n].path = path;
            t->v[t->n].role = role_of(a, p.v[i].id);
            t->n++;
            if (p.v[i].child_count != 0 && depth + 1 < DEPTH_MAX) {
                char *eid = graph_escape(p.v[i].id);
                size_t rl = strlen(eid) + 64;
                char *rest = malloc(rl);
                if (rest == NULL)
                    abort();
                snprintf(rest, rl, "mailFolders/%s/childFolders?$top=%d", eid, FOLDER_PAGE);
                free(eid);
                char *child_url = graph_user_url(a, rest);
                free(rest);
                st = list_level(a, t, child_url, path, depth + 1, err);
                free(child_url);
            }
        }
        graph_folder_page_clear(&p);
    }
    free(url);
    return st;
}

mp_status graph_folders_load(graph_account *a, mp_error *err)
{
    mp_status st = wellknown_load(a, err);
    if (st != MP_OK)
        return st;
    table t = {0};
    char rest[64];
    snprintf(rest, sizeof rest, "mailFolders?$top=%d", FOLDER_PAGE);
    char *url = graph_user_url(a, rest);
    st = list_level(a, &t, url, "", 0, err);
    free(url);
    if (st != MP_OK) {
        for (size_t i = 0; i < t.n; i++) {
            free(t.v[i].id);
            free(t.v[i].path);
        }
        free(t.v);
        return st;
    }
    graph_folders_clear(a);
    a->folders = t.v;
    a->n_folders = t.n;
    a->folders_loaded = 1;
    return MP_OK;
}

static const graph_folder *by_name(const graph_account *a, const char *name)
{
    for (size_t i = 0; i < a->n_folders; i++)
        if (strcmp(a->folders[i].path, name) == 0)
            return &a->folders[i];
    return NULL;
}

const graph_folder *graph_folder_by_id(const graph_account *a, const char *id)
{
    if (id == NULL)
        return NULL;
    for (size_t i = 0; i < a->n_folders; i++)
        if (strcmp(a->folders[i].id, id) == 0)
            return &a->folders[i];
    return NULL;
}

mp_status graph_folder_named(graph_account *a, const char *name, const graph_folder **f_r,
                             mp_error *err)
{
    *f_r = a->folders_loaded ? by_name(a, name) : NULL;
    if (*f_r != NULL)
        return MP_OK;
    mp_status st = graph_folders_load(a, err);
    if (st != MP_OK)
        return st;
    *f_r = by_name(a, name);
    if (*f_r == NULL)
        return mp_fail(err, MP_RETRY, "folder \"%s\": no such mail folder any more", name);
    return MP_OK;
}

mp_status graph_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err)
{
    graph_account *a = graph_host->account_state(acct);
    /* Always a fresh listing: folders are created, renamed and moved. */
    mp_status st = graph_folders_load(a, err);
    if (st != MP_OK)
        return st;
    for (size_t i = 0; i < a->n_folders; i++)
        graph_host->folder_add(sink, a->folders[i].path, a->folders[i].role);
    if (a->inst->public_url == NULL && MP_HOST_HAS(graph_host, push_status))
        graph_host->push_status(acct, MP_PUSH_STATE_OFF, "polling: no public_url");
    /* Subscriptions follow the folders (new ones, gone ones). */
    graph_push_folders_changed(a);
    return MP_OK;
}

/* Per-folder driver state (see graph_fstate.h). */
#include "graph_fstate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

void graph_fstate_key(const char *name, char *key, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(name, strlen(name), md, &len, EVP_sha256(), NULL) != 1)
        len = 0;
    int n = snprintf(key, cap, "folder:");
    for (unsigned i = 0; i < 16 && i < len && n > 0 && (size_t)n + 2 < cap; i++)
        n += snprintf(key + n, cap - (size_t)n, "%02x", md[i]);
}

void graph_fstate_clear(graph_fstate *f)
{
    if (f == NULL)
        return;
    free(f->walk);
    free(f->full);
    free(f->check);
    for (size_t i = 0; i < f->n_repair; i++)
        free(f->repair[i].id);
    free(f->repair);
    memset(f, 0, sizeof *f);
}

int graph_fstate_parse(const char *text, graph_fstate *f, char **error_r)
{
    memset(f, 0, sizeof *f);
    if (text == NULL || text[0] == '\0')
        return 0;
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        *error_r = xstrdup("folder state: not a JSON object");
        return -1;
    }
    f->since_ms = json_integer_value(json_object_get(root, "since"));
    json_int_t cover = json_integer_value(json_object_get(root, "cover"));
    f->cover = cover >= GRAPH_COVER_RECENT && cover <= GRAPH_COVER_ENOUGH ? (graph_cover)cover
                                                                       : GRAPH_COVER_RECENT;
    const char *s = json_string_value(json_object_get(root, "walk"));
    f->walk = s != NULL ? xstrdup(s) : NULL;
    s = json_string_value(json_object_get(root, "full"));
    f->full = s != NULL ? xstrdup(s) : NULL;
    s = json_string_value(json_object_get(root, "check"));
    f->check = s != NULL ? xstrdup(s) : NULL;
    f->checked = json_is_true(json_object_get(root, "checked"));
    json_t *rep = json_object_get(root, "repair");
    size_t n = json_array_size(rep);
    if (n > GRAPH_REPAIR_MAX)
        n = GRAPH_REPAIR_MAX;
    f->repair = calloc(n + 1, sizeof *f->repair);
    if (f->repair == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(rep, i);
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id == NULL || id[0] == '\0')
            continue;
        graph_repair_item *it = &f->repair[f->n_repair++];
        it->id = xstrdup(id);
        it->tries = (unsigned)json_integer_value(json_object_get(e, "n"));
        it->at_ms = json_integer_value(json_object_get(e, "at"));
    }
    json_decref(root);
    return 0;
}

char *graph_fstate_dump(const graph_fstate *f)
{
    json_t *root = json_object();
    json_object_set_new(root, "since", json_integer(f->since_ms));
    json_object_set_new(root, "cover", json_integer((json_int_t)f->cover));
    if (f->walk != NULL)
        json_object_set_new(root, "walk", json_string(f->walk));
    if (f->full != NULL)
        json_object_set_new(root, "full", json_string(f->full));
    if (f->check != NULL)
        json_object_set_new(root, "check", json_string(f->check));
    if (f->checked)
        json_object_set_new(root, "checked", json_true());
    if (f->n_repair > 0) {
        json_t *rep = json_array();
        for (size_t i = 0; i < f->n_repair; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "id", json_string(f->repair[i].id));
            json_object_set_new(e, "n", json_integer(f->repair[i].tries));
            json_object_set_new(e, "at", json_integer(f->repair[i].at_ms));
            json_array_append_new(rep, e);
        }
        json_object_set_new(root, "repair", rep);
    }
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (out == NULL)
        abort();
    return out;
}

static graph_repair_item *find(const graph_fstate *f, const char *id)
{
    for (size_t i = 0; i < f->n_repair; i++)
        if (strcmp(f->repair[i].id, id) == 0)
            return &f->repair[i];
    return NULL;
}

int graph_repair_add(graph_fstate *f, const char *id, int64_t now_ms)
{
    if (find(f, id) != NULL)
        return 0;
    if (f->n_repair >= GRAPH_REPAIR_MAX)
        return -1;
    graph_repair_item *grown = realloc(f->repair, (f->n_repair + 1) * sizeof *grown);
    if (grown == NULL)
        abort();
    f->repair = grown;
    graph_repair_item *it = &f->repair[f->n_repair++];
    it->id = xstrdup(id);
    it->tries = 0;
    it->at_ms = now_ms + GRAPH_REPAIR_FIRST_MS;
    return 0;
}

size_t graph_repair_due(const graph_fstate *f, int64_t now_ms, size_t *idx, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n_repair && n < max; i++)
        if (f->repair[i].at_ms <= now_ms)
            idx[n++] = i;
    return n;
}

void graph_repair_drop(graph_fstate *f, const char *id)
{
    graph_repair_item *it = find(f, id);
    if (it == NULL)
        return;
    free(it->id);
    size_t i = (size_t)(it - f->repair);
    memmove(&f->repair[i], &f->repair[i + 1], (f->n_repair - i - 1) * sizeof *it);
    f->n_repair--;
}

int graph_repair_again(graph_fstate *f, const char *id, int64_t now_ms)
{
    graph_repair_item *it = find(f, id);
    if (it == NULL)
        return 0;
    it->tries++;
    if (it->tries >= GRAPH_REPAIR_TRIES) {
        graph_repair_drop(f, id);
        return 1;
    }
    int64_t wait = GRAPH_REPAIR_FIRST_MS;
    for (unsigned i = 0; i < it->tries && wait < GRAPH_REPAIR_MAX_WAIT_MS; i++)
        wait *= 2;
    if (wait > GRAPH_REPAIR_MAX_WAIT_MS)
        wait = GRAPH_REPAIR_MAX_WAIT_MS;
    it->at_ms = now_ms + wait;
    return 0;
}

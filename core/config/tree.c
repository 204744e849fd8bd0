/* The neutral configuration tree: nodes, lookup, typed access, errors. */
#include "config/config_private.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util/fdlimit.h"
#include "util/util.h"

void mpc_error_addv(mpc_errors *errs, const char *file, int line,
                    const char *fmt, va_list ap)
{
    if (errs == NULL)
        return;
    char *msg = mpu_vasprintf(fmt, ap);
    char *full;
    if (file == NULL)
        full = msg;
    else {
        if (line > 0)
            full = mpu_asprintf("%s:%d: %s", file, line, msg);
        else
            full = mpu_asprintf("%s: %s", file, msg);
        free(msg);
    }
    errs->msgs = mpu_realloc(errs->msgs, (errs->n + 1) * sizeof *errs->msgs);
    errs->msgs[errs->n++] = full;
}

void mpc_error_add(mpc_errors *errs, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mpc_error_addv(errs, file, line, fmt, ap);
    va_end(ap);
}

void mpc_error_cause(mpc_errors *errs, int err)
{
    if (errs != NULL && errs->shortage == 0 && mpu_fd_shortage(err))
        errs->shortage = err;
}

void mpc_errors_free(mpc_errors *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
    errs->shortage = 0;
}

mpc_node *mpc_node_new(mpc_type type, const char *file, int line)
{
    mpc_node *node = mpu_calloc(1, sizeof *node);
    node->type = type;
    node->file = file;
    node->line = line;
    return node;
}

mpc_node *mpc_root_new(const char *file, int line)
{
    char *owned = mpu_strdup(file != NULL ? file : "<config>");
    mpc_node *root = mpc_node_new(MPC_MAP, owned, line);
    root->file_owned = owned;
    return root;
}

void mpc_node_append(mpc_node *parent, mpc_node *child)
{
    parent->items = mpu_realloc(parent->items,
                                (parent->n_items + 1) * sizeof *parent->items);
    parent->items[parent->n_items++] = child;
}

void mpc_node_free(mpc_node *node)
{
    if (node == NULL)
        return;
    for (size_t i = 0; i < node->n_items; i++)
        mpc_node_free(node->items[i]);
    free(node->items);
    free(node->key);
    free(node->str);
    free(node->file_owned);
    free(node);
}

void mpc_free(mpc_node **root)
{
    if (root == NULL)
        return;
    mpc_node_free(*root);
    *root = NULL;
}

const char *mpc_type_name(mpc_type type)
{
    switch (type) {
    case MPC_MAP:
        return "a map";
    case MPC_LIST:
        return "a list";
    case MPC_STRING:
        return "a string";
    case MPC_INT:
        return "an integer";
    case MPC_BOOL:
        return "a boolean";
    case MPC_FLOAT:
        return "a number";
    case MPC_NULL:
        return "empty";
    }
    return "unknown";
}

int mpc_name_in(const char *name, const char *const *list)
{
    if (list == NULL || name == NULL)
        return 0;
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

const mpc_node *mpc_get(const mpc_node *map, const char *key)
{
    if (map == NULL || map->type != MPC_MAP || key == NULL)
        return NULL;
    for (size_t i = 0; i < map->n_items; i++) {
        const mpc_node *child = map->items[i];
        if (child->key != NULL && strcmp(child->key, key) == 0)
            return child;
    }
    return NULL;
}

const char *mpc_string(const mpc_node *map, const char *key)
{
    const mpc_node *node = mpc_get(map, key);
    return node != NULL && node->type == MPC_STRING ? node->str : NULL;
}

int64_t mpc_int(const mpc_node *map, const char *key)
{
    const mpc_node *node = mpc_get(map, key);
    return node != NULL && node->type == MPC_INT ? node->i : 0;
}

int mpc_bool(const mpc_node *map, const char *key)
{
    const mpc_node *node = mpc_get(map, key);
    return node != NULL && node->type == MPC_BOOL && node->i != 0;
}

size_t mpc_list_len(const mpc_node *map, const char *key)
{
    const mpc_node *node = mpc_get(map, key);
    return node != NULL && node->type == MPC_LIST ? node->n_items : 0;
}

const char *mpc_list_string(const mpc_node *map, const char *key, size_t index)
{
    const mpc_node *node = mpc_get(map, key);
    if (node == NULL || node->type != MPC_LIST || index >= node->n_items)
        return NULL;
    const mpc_node *item = node->items[index];
    return item->type == MPC_STRING ? item->str : NULL;
}

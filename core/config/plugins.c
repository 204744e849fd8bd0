/* plugins.d: one YAML file per driver instance; the keys the core owns. */
#include "config/config_private.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static const char *const core_instance_keys[] = {"driver", "enabled", "poll_interval",
                                                 "accounts", NULL};
static const char *const core_account_keys[] = {"id", "enabled", "folders",
                                                "poll_interval", NULL};

const char *const *mpc_plugins_core_keys(int account)
{
    return account ? core_account_keys : core_instance_keys;
}

/* An account id seen in an accepted file (or earlier in the current one). */
typedef struct seen_id {
    char *id;
    char *file;
    int line;
} seen_id;

typedef struct id_table {
    seen_id *v;
    size_t n;
} id_table;

static void ids_add(id_table *t, const char *id, const char *file, int line)
{
    t->v = mpu_realloc(t->v, (t->n + 1) * sizeof *t->v);
    t->v[t->n++] = (seen_id){mpu_strdup(id), mpu_strdup(file), line};
}

static const seen_id *ids_find(const id_table *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].id, id) == 0)
            return &t->v[i];
    return NULL;
}

static void ids_clear(id_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].id);
        free(t->v[i].file);
    }
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

/* 1 to 64 of [A-Za-z0-9_-] (and '.' when allow_dot), never "." or "..":
 * ids, instance and driver names end up in URLs and file names. */
static int name_valid(const char *s, int allow_dot)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                 (c >= '0' && c <= '9') || c == '_' || c == '-' || (allow_dot && c == '.');
        if (!ok)
            return 0;
    }
    return n >= 1 && n <= 64 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static size_t wrong_type(const mpc_node *node, const char *what, mpc_errors *errs)
{
    mpc_error_add(errs, node->file, node->line, "\"%s\" must be %s, not %s", node->key,
                  what, mpc_type_name(node->type));
    return 1;
}

/* Unquoted numbers are text too where a string is expected (id: 42). */
static int as_string(mpc_node *node)
{
    if ((node->type == MPC_INT || node->type == MPC_FLOAT) && node->str != NULL)
        node->type = MPC_STRING;
    return node->type == MPC_STRING;
}

static size_t check_enabled(mpc_node *map, mpc_errors *errs)
{
    const mpc_node *node = mpc_get(map, "enabled");
    if (node == NULL) {
        mpc_node *def = mpc_node_new(MPC_BOOL, map->file, 0);
        def->key = mpu_strdup("enabled");
        def->str = mpu_strdup("true");
        def->i = 1;
        mpc_node_append(map, def);
        return 0;
    }
    return node->type == MPC_BOOL ? 0 : wrong_type(node, "a boolean (true or false)", errs);
}

static size_t check_poll_interval(mpc_node *map, mpc_errors *errs)
{
    mpc_node *node = (mpc_node *)mpc_get(map, "poll_interval");
    if (node == NULL)
        return 0;
    int64_t v;
    if (node->type == MPC_STRING && mpu_parse_i64(node->str, &v) == 0) {
        node->type = MPC_INT;
        node->i = v;
    }
    if (node->type != MPC_INT || node->i <= 0 || node->i > MP_SCHEDULE_MAX_S) {
        mpc_error_add(errs, node->file, node->line,
                      "\"poll_interval\" must be between 1 and %u seconds",
                      MP_SCHEDULE_MAX_S);
        return 1;
    }
    return 0;
}

static size_t check_folders(mpc_node *acct, mpc_errors *errs)
{
    mpc_node *node = (mpc_node *)mpc_get(acct, "folders");
    if (node == NULL)
        return 0;
    if (node->type != MPC_LIST)
        return wrong_type(node, "a list of folder names", errs);
    for (size_t i = 0; i < node->n_items; i++) {
        mpc_node *item = node->items[i];
        if (!as_string(item) || item->str[0] == '\0') {
            mpc_error_add(errs, item->file, item->line,
                          "\"folders\" must contain folder names, not %s",
                          item->str != NULL && item->type == MPC_STRING
                              ? "an empty string"
                              : mpc_type_name(item->type));
            return 1;
        }
    }
    return 0;
}

static size_t check_account(mpc_node *acct, const id_table *seen, id_table *local,
                            mpc_errors *errs)
{
    if (acct->type != MPC_MAP) {
        mpc_error_add(errs, acct->file, acct->line,
                      "each account must be a map (\"id: ...\" entries), not %s",
                      mpc_type_name(acct->type));
        return 1;
    }
    size_t n = 0;
    mpc_node *id = (mpc_node *)mpc_get(acct, "id");
    if (id == NULL) {
        mpc_error_add(errs, acct->file, acct->line, "missing required key \"id\"");
        n++;
    } else if (!as_string(id)) {
        n += wrong_type(id, "a string", errs);
    } else if (!name_valid(id->str, 1)) {
        mpc_error_add(errs, id->file, id->line,
                      "account id \"%s\" is invalid (1 to 64 of A-Z a-z 0-9 . _ -)",
                      id->str);
        n++;
    } else {
        const seen_id *first = ids_find(seen, id->str);
        if (first == NULL)
            first = ids_find(local, id->str);
        if (first != NULL) {
            mpc_error_add(errs, id->file, id->line,
                          "duplicate account id \"%s\" (first defined at %s:%d)", id->str,
                          first->file, first->line);
            n++;
        } else {
            ids_add(local, id->str, id->file, id->line);
        }
    }
    n += check_enabled(acct, errs);
    n += check_folders(acct, errs);
    n += check_poll_interval(acct, errs);
    return n;
}

static size_t check_instance(mpc_node *root, const id_table *seen, id_table *local,
                             mpc_errors *errs)
{
    size_t n = 0;
    const mpc_node *driver = mpc_get(root, "driver");
    if (driver == NULL) {
        mpc_error_add(errs, root->file, root->line, "missing required key \"driver\"");
        n++;
    } else if (driver->type != MPC_STRING) {
        n += wrong_type(driver, "a string (the driver name)", errs);
    } else if (!name_valid(driver->str, 0)) {
        /* The name becomes part of a path: <driver_dir>/<driver>.so. */
        mpc_error_add(errs, driver->file, driver->line,
                      "driver name \"%s\" is invalid (1 to 64 of A-Z a-z 0-9 _ -)",
                      driver->str);
        n++;
    }
    n += check_enabled(root, errs);
    n += check_poll_interval(root, errs);
    mpc_node *accounts = (mpc_node *)mpc_get(root, "accounts");
    if (accounts == NULL || accounts->type == MPC_NULL)
        return n;
    if (accounts->type != MPC_LIST)
        return n + wrong_type(accounts, "a list of accounts", errs);
    for (size_t i = 0; i < accounts->n_items; i++)
        n += check_account(accounts->items[i], seen, local, errs);
    return n;
}

static int yaml_name(const char *name, size_t *stem_len_r)
{
    size_t len = strlen(name);
    if (name[0] == '.')
        return 0;
    if (len > 5 && strcmp(name + len - 5, ".yaml") == 0)
        *stem_len_r = len - 5;
    else if (len > 4 && strcmp(name + len - 4, ".yml") == 0)
        *stem_len_r = len - 4;
    else
        return 0;
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted *.yaml / *.yml names of `dir`, or -1 with an error added. */
static int list_dir(const char *dir, char ***names_r, size_t *n_r, mpc_errors *errs)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        int err = errno;
        mpc_error_add(errs, dir, 0, "cannot open the plugins directory: %s", strerror(err));
        mpc_error_cause(errs, err);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, stem;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!yaml_name(de->d_name, &stem))
            continue;
        names = mpu_realloc(names, (n + 1) * sizeof *names);
        names[n++] = mpu_strdup(de->d_name);
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, cmp_names);
    *names_r = names;
    *n_r = n;
    return 0;
}

static mpc_instance_conf *instance_new(mpc_node *root, const char *name, size_t stem,
                                       const char *path)
{
    mpc_instance_conf *inst = mpu_calloc(1, sizeof *inst);
    inst->name = mpu_strndup(name, stem);
    inst->file = mpu_strdup(path);
    inst->driver = mpu_strdup(mpc_string(root, "driver"));
    inst->enabled = mpc_bool(root, "enabled");
    inst->root = root;
    const mpc_node *accounts = mpc_get(root, "accounts");
    if (accounts != NULL && accounts->type == MPC_LIST && accounts->n_items > 0) {
        inst->accounts = mpu_calloc(accounts->n_items, sizeof *inst->accounts);
        for (size_t i = 0; i < accounts->n_items; i++)
            inst->accounts[i] = accounts->items[i];
        inst->n_accounts = accounts->n_items;
    }
    return inst;
}

static int instance_name_taken(mpc_instance_conf **list, size_t n, const char *name,
                               size_t stem)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]->name) == stem && strncmp(list[i]->name, name, stem) == 0)
            return 1;
    return 0;
}

int mpc_plugins_load(const char *dir, mpc_instance_conf ***list_r, size_t *n_r,
                     mpc_errors *errs)
{
    size_t errors_at_start = errs->n;
    *list_r = NULL;
    *n_r = 0;
    char **names;
    size_t n_names;
    if (list_dir(dir, &names, &n_names, errs) < 0)
        return -1;

    mpc_instance_conf **list = NULL;
    size_t n = 0;
    id_table seen = {0};
    for (size_t f = 0; f < n_names; f++) {
        const char *name = names[f];
        size_t stem = 0;
        yaml_name(name, &stem);
        char *path = mpu_asprintf("%s/%s", dir, name);
        char *inst_name = mpu_strndup(name, stem);
        int name_ok = name_valid(inst_name, 1);
        free(inst_name);
        if (!name_ok) {
            mpc_error_add(errs, path, 0,
                          "the instance name (file name without .yaml) must be 1 to 64 "
                          "of A-Z a-z 0-9 . _ -");
            free(path);
            continue;
        }
        if (instance_name_taken(list, n, name, stem)) {
            mpc_error_add(errs, path, 0, "another file already defines instance \"%.*s\"",
                          (int)stem, name);
            free(path);
            continue;
        }
        mpc_node *root = mpc_load_yaml(path, errs);
        id_table local = {0};
        if (root != NULL && check_instance(root, &seen, &local, errs) == 0) {
            for (size_t i = 0; i < local.n; i++)
                ids_add(&seen, local.v[i].id, local.v[i].file, local.v[i].line);
            list = mpu_realloc(list, (n + 1) * sizeof *list);
            list[n++] = instance_new(root, name, stem, path);
        } else {
            mpc_free(&root);
        }
        ids_clear(&local);
        free(path);
    }
    ids_clear(&seen);
    for (size_t f = 0; f < n_names; f++)
        free(names[f]);
    free(names);
    *list_r = list;
    *n_r = n;
    return errs->n == errors_at_start ? 0 : -1;
}

void mpc_instances_free(mpc_instance_conf ***list, size_t n)
{
    if (list == NULL || *list == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        mpc_instance_conf *inst = (*list)[i];
        if (inst == NULL)
            continue;
        free(inst->name);
        free(inst->file);
        free(inst->driver);
        free(inst->accounts);
        mpc_free(&inst->root);
        free(inst);
    }
    free(*list);
    *list = NULL;
}

size_t mpc_validate_instance(mpc_instance_conf *inst, const mp_driver *drv,
                             mpc_errors *errs)
{
    if (inst == NULL || drv == NULL)
        return 0;
    size_t n = mpc_validate(inst->root, drv->instance_keys, core_instance_keys, errs);
    for (size_t i = 0; i < inst->n_accounts; i++)
        n += mpc_validate(inst->accounts[i], drv->account_keys, core_account_keys, errs);
    return n;
}

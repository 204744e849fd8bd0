/* Validation of a map against declared keys (mp_config_key tables). */
#include "config/config_private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static const char *expected_name(mp_config_type type)
{
    switch (type) {
    case MP_CFG_STRING:
        return "a string";
    case MP_CFG_INT:
        return "an integer";
    case MP_CFG_BOOL:
        return "a boolean (true or false)";
    case MP_CFG_STRING_LIST:
        return "a list of strings";
    case MP_CFG_SECRET_FILE:
        return "a file path (string)";
    case MP_CFG_END:
        break;
    }
    return "?";
}

static const mp_config_key *find_key(const mp_config_key *keys, const char *name)
{
    for (size_t i = 0; keys != NULL && keys[i].type != MP_CFG_END; i++)
        if (keys[i].name != NULL && name != NULL && strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Numbers written without quotes are still text a string key can take
 * (`user: 12345`); booleans and null are not, they are likely mistakes. */
static int as_string(mpc_node *node)
{
    if (node->type == MPC_STRING)
        return 1;
    if ((node->type == MPC_INT || node->type == MPC_FLOAT) && node->str != NULL) {
        node->type = MPC_STRING;
        return 1;
    }
    return 0;
}

static void wrong_type(const mpc_node *node, const mp_config_key *key, mpc_errors *errs)
{
    if (key->help != NULL)
        mpc_error_add(errs, node->file, node->line, "\"%s\" must be %s, not %s (%s)",
                      key->name, expected_name(key->type), mpc_type_name(node->type),
                      key->help);
    else
        mpc_error_add(errs, node->file, node->line, "\"%s\" must be %s, not %s",
                      key->name, expected_name(key->type), mpc_type_name(node->type));
}

static size_t check_value(mpc_node *node, const mp_config_key *key, mpc_errors *errs)
{
    int64_t v;
    switch (key->type) {
    case MP_CFG_STRING:
    case MP_CFG_SECRET_FILE:
        if (as_string(node))
            return 0;
        break;
    case MP_CFG_INT:
        if (node->type == MPC_INT)
            return 0;
        if (node->type == MPC_STRING && mpu_parse_i64(node->str, &v) == 0) {
            node->type = MPC_INT;
            node->i = v;
            return 0;
        }
        break;
    case MP_CFG_BOOL:
        if (node->type == MPC_BOOL)
            return 0;
        break;
    case MP_CFG_STRING_LIST:
        if (node->type != MPC_LIST)
            break;
        for (size_t i = 0; i < node->n_items; i++) {
            if (!as_string(node->items[i])) {
                mpc_error_add(errs, node->items[i]->file, node->items[i]->line,
                              "\"%s\" must be %s, not a list containing %s", key->name,
                              expected_name(key->type),
                              mpc_type_name(node->items[i]->type));
                return 1;
            }
        }
        return 0;
    case MP_CFG_END:
        break;
    }
    wrong_type(node, key, errs);
    return 1;
}

static int parse_bool_text(const char *s, int *value_r)
{
    static const char *const yes[] = {"true", "yes", "on", "1", NULL};
    static const char *const no[] = {"false", "no", "off", "0", NULL};
    if (mpc_name_in(s, yes))
        *value_r = 1;
    else if (mpc_name_in(s, no))
        *value_r = 0;
    else
        return -1;
    return 0;
}

/* A declared default becomes a node with line 0. A default that does not
 * parse is the declaring code's bug, reported like a config error. */
static size_t add_default(mpc_node *map, const mp_config_key *key, mpc_errors *errs)
{
    const char *text = key->default_value;
    mpc_node *node = mpc_node_new(MPC_STRING, map->file, 0);
    node->key = mpu_strdup(key->name);
    node->str = mpu_strdup(text);
    int b;
    switch (key->type) {
    case MP_CFG_INT:
        node->type = MPC_INT;
        if (mpu_parse_i64(text, &node->i) < 0)
            goto bad;
        break;
    case MP_CFG_BOOL:
        node->type = MPC_BOOL;
        if (parse_bool_text(text, &b) < 0)
            goto bad;
        node->i = b;
        break;
    case MP_CFG_STRING_LIST: {
        /* "a,b,c": comma-separated items; "" is an empty list. */
        node->type = MPC_LIST;
        const char *p = text;
        while (*p != '\0') {
            const char *comma = strchr(p, ',');
            size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
            mpc_node *item = mpc_node_new(MPC_STRING, map->file, 0);
            item->str = mpu_strndup(p, n);
            mpc_node_append(node, item);
            p += n;
            if (*p == ',')
                p++;
        }
        break;
    }
    default:
        break;
    }
    mpc_node_append(map, node);
    return 0;
bad:
    mpc_error_add(errs, map->file, map->line,
                  "the default of \"%s\" is not %s (bug in its declaration)", key->name,
                  expected_name(key->type));
    mpc_node_free(node);
    return 1;
}

size_t mpc_validate(mpc_node *map, const mp_config_key *keys,
                    const char *const *also_allowed, mpc_errors *errs)
{
    if (map == NULL)
        return 0;
    if (map->type != MPC_MAP) {
        mpc_error_add(errs, map->file, map->line, "expected a map, not %s",
                      mpc_type_name(map->type));
        return 1;
    }
    size_t n_errors = 0;
    /* Declarations first: a secret key whose name does not say "_file"
     * would invite users to paste the secret itself into the file. */
    for (size_t k = 0; keys != NULL && keys[k].type != MP_CFG_END; k++) {
        if (keys[k].name == NULL)
            continue;
        if (keys[k].type == MP_CFG_SECRET_FILE && !ends_with(keys[k].name, "_file")) {
            mpc_error_add(errs, map->file, map->line,
                          "secret key \"%s\" must have a name ending in \"_file\" "
                          "(bug in the driver's key declaration)",
                          keys[k].name);
            n_errors++;
        }
    }
    size_t n_present = map->n_items;
    for (size_t i = 0; i < n_present; i++) {
        mpc_node *node = map->items[i];
        if (node->key == NULL || mpc_name_in(node->key, also_allowed))
            continue;
        const mp_config_key *key = find_key(keys, node->key);
        if (key == NULL) {
            mpc_error_add(errs, node->file, node->line, "unknown key \"%s\"", node->key);
            n_errors++;
            continue;
        }
        n_errors += check_value(node, key, errs);
    }
    for (size_t k = 0; keys != NULL && keys[k].type != MP_CFG_END; k++) {
        const mp_config_key *key = &keys[k];
        if (key->name == NULL || mpc_name_in(key->name, also_allowed) ||
            mpc_get(map, key->name) != NULL)
            continue;
        if (key->required) {
            if (key->help != NULL)
                mpc_error_add(errs, map->file, map->line,
                              "missing required key \"%s\" (%s)", key->name, key->help);
            else
                mpc_error_add(errs, map->file, map->line, "missing required key \"%s\"",
                              key->name);
            n_errors++;
        } else if (key->default_value != NULL) {
            n_errors += add_default(map, key, errs);
        }
    }
    return n_errors;
}

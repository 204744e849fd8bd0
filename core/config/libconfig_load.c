/* libconfig text (mailpulsed.conf) -> configuration tree. */
#include "config/config_private.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "util/util.h"

/*
 * libconfig 1.5 opens @include files itself (absolute paths too) and has no
 * hook to refuse them; nodes also carry a single file name per tree. So an
 * @include line, matched the way libconfig's scanner matches it (first
 * token of a line), is refused before parsing.
 */
static int find_include(const char *text)
{
    int line = 1;
    const char *p = text;
    while (*p != '\0') {
        const char *q = p;
        while (*q == ' ' || *q == '\t')
            q++;
        if (strncmp(q, "@include", 8) == 0)
            return line;
        const char *nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        p = nl + 1;
        line++;
    }
    return 0;
}

static int convert(const config_setting_t *set, mpc_node *node, int depth,
                   mpc_errors *errs)
{
    char buf[64];
    switch (config_setting_type(set)) {
    case CONFIG_TYPE_GROUP:
        node->type = MPC_MAP;
        break;
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST:
        node->type = MPC_LIST;
        break;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        node->type = MPC_INT;
        node->i = config_setting_get_int64(set);
        snprintf(buf, sizeof buf, "%lld", (long long)node->i);
        node->str = mpu_strdup(buf);
        return 0;
    case CONFIG_TYPE_FLOAT:
        node->type = MPC_FLOAT;
        node->f = config_setting_get_float(set);
        snprintf(buf, sizeof buf, "%.17g", node->f);
        node->str = mpu_strdup(buf);
        return 0;
    case CONFIG_TYPE_STRING:
        node->type = MPC_STRING;
        node->str = mpu_strdup(config_setting_get_string(set));
        return 0;
    case CONFIG_TYPE_BOOL:
        node->type = MPC_BOOL;
        node->i = config_setting_get_bool(set) ? 1 : 0;
        node->str = mpu_strdup(node->i ? "true" : "false");
        return 0;
    default:
        node->type = MPC_NULL;
        return 0;
    }
    if (depth >= MPC_MAX_DEPTH) {
        mpc_error_add(errs, node->file, node->line, "nesting deeper than %d levels",
                      MPC_MAX_DEPTH);
        return -1;
    }
    int n = config_setting_length(set);
    for (int i = 0; i < n; i++) {
        const config_setting_t *sub = config_setting_get_elem(set, (unsigned)i);
        unsigned line = config_setting_source_line(sub);
        mpc_node *child = mpc_node_new(MPC_NULL, node->file,
                                       line > INT_MAX ? INT_MAX : (int)line);
        child->key = mpu_strdup(config_setting_name(sub));
        mpc_node_append(node, child);
        if (convert(sub, child, depth + 1, errs) < 0)
            return -1;
    }
    return 0;
}

mpc_node *mpc_parse_libconfig_string(const char *text, const char *name,
                                     mpc_errors *errs)
{
    if (name == NULL)
        name = "<config>";
    int include_line = find_include(text);
    if (include_line > 0) {
        mpc_error_add(errs, name, include_line, "@include is not supported");
        return NULL;
    }
    config_t cfg;
    config_init(&cfg);
    /* Values keep the type they were written with; validation converts. */
    config_set_auto_convert(&cfg, 0);
    if (config_read_string(&cfg, text) != CONFIG_TRUE) {
        const char *msg = config_error_text(&cfg);
        mpc_error_add(errs, name, config_error_line(&cfg), "%s",
                      msg != NULL ? msg : "syntax error");
        config_destroy(&cfg);
        return NULL;
    }
    mpc_node *root = mpc_root_new(name, 1);
    int rc = convert(config_root_setting(&cfg), root, 0, errs);
    config_destroy(&cfg);
    if (rc < 0)
        mpc_free(&root);
    return root;
}

mpc_node *mpc_load_libconfig(const char *path, mpc_errors *errs)
{
    char *text = NULL, *error = NULL;
    if (mpu_read_file(path, MPC_MAX_FILE_SIZE, 0, &text, NULL, &error) < 0) {
        int err = errno;
        mpc_error_add(errs, NULL, 0, "%s", error);
        mpc_error_cause(errs, err);
        free(error);
        return NULL;
    }
    mpc_node *root = mpc_parse_libconfig_string(text, path, errs);
    free(text);
    return root;
}

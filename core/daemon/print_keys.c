/* mailpulsed --print-keys (contract in print_keys.h). It reads tables, it
 * never starts anything: no store, no listeners; drivers are loaded to
 * read their descriptors and unloaded without init. */
#include "daemon/print_keys.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "loader/loader.h"
#include "util/util.h"

static const char *type_name(mp_config_type type)
{
    switch (type) {
    case MP_CFG_STRING:
        return "string";
    case MP_CFG_INT:
        return "integer";
    case MP_CFG_BOOL:
        return "boolean";
    case MP_CFG_STRING_LIST:
        return "string list";
    case MP_CFG_SECRET_FILE:
        return "secret file";
    case MP_CFG_END:
        break;
    }
    return "unknown";
}

static json_t *key_json(const mp_config_key *k)
{
    return json_pack("{s:s, s:s, s:s?, s:b, s:s?}", "name", k->name, "type",
                     type_name(k->type), "default", k->default_value, "required",
                     k->required != 0, "help", k->help);
}

static json_t *keys_json(const mp_config_key *keys)
{
    json_t *arr = json_array();
    for (size_t i = 0; keys != NULL && keys[i].name != NULL; i++)
        json_array_append_new(arr, key_json(&keys[i]));
    return arr;
}

static json_t *settings_json(void)
{
    json_t *arr = json_array();
    const char *group;
    const mp_config_key *keys;
    for (size_t t = 0; (keys = mp_settings_keys(t, &group)) != NULL; t++) {
        for (size_t i = 0; keys[i].name != NULL; i++) {
            json_t *o = key_json(&keys[i]);
            char *name = group != NULL ? mpu_asprintf("%s.%s", group, keys[i].name)
                                       : mpu_strdup(keys[i].name);
            json_object_set_new(o, "key", json_string(keys[i].name));
            json_object_set_new(o, "name", json_string(name));
            json_object_set_new(o, "group", group != NULL ? json_string(group) : json_null());
            json_array_append_new(arr, o);
            free(name);
        }
    }
    return arr;
}

static json_t *names_json(const char *const *names)
{
    json_t *arr = json_array();
    for (size_t i = 0; names[i] != NULL; i++)
        json_array_append_new(arr, json_string(names[i]));
    return arr;
}

static int is_driver_file(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return e->d_name[0] != '.' && n > 3 && strcmp(e->d_name + n - 3, ".so") == 0;
}

/* Every <name>.so of `dir` through the real loader, so what is printed is
 * what the daemon would accept. */
static void drivers_json(const char *dir, json_t *drivers, json_t *refused)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, is_driver_file, alphasort);
    for (int i = 0; i < n; i++) {
        char *name = mpu_strndup(ents[i]->d_name, strlen(ents[i]->d_name) - 3);
        char *error = NULL;
        mpl_driver *drv = mpl_load(dir, name, &error);
        if (drv == NULL) {
            json_array_append_new(refused, json_pack("{s:s, s:s}", "file", ents[i]->d_name,
                                                     "error", error));
            free(error);
        } else {
            const mp_driver *d = &drv->desc;
            json_array_append_new(
                drivers, json_pack("{s:s, s:s?, s:s?, s:I, s:o, s:o}", "name", d->name,
                                   "version", d->version, "description", d->description,
                                   "poll_interval",
                                   (json_int_t)(d->poll_interval_s ? d->poll_interval_s : 180),
                                   "instance_keys", keys_json(d->instance_keys),
                                   "account_keys", keys_json(d->account_keys)));
            mpl_unload(&drv);
        }
        free(name);
        free(ents[i]);
    }
    free(ents);
}

int mpd_print_keys(const char *config_path, FILE *out)
{
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    if (mp_settings_load(config_path, &s, &errs) < 0) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        mpc_errors_free(&errs);
        return 1;
    }
    json_t *drivers = json_array(), *refused = json_array();
    drivers_json(s->driver_dir, drivers, refused);
    char abi[32];
    snprintf(abi, sizeof abi, "%d.%d", MP_ABI_MAJOR, MP_ABI_MINOR);
    json_t *root = json_pack(
        "{s:s, s:s, s:s, s:o, s:{s:o, s:o}, s:o, s:o}", "version", MP_VERSION, "abi", abi,
        "driver_dir", s->driver_dir, "settings", settings_json(), "plugins", "instance",
        names_json(mpc_plugins_core_keys(0)), "account", names_json(mpc_plugins_core_keys(1)),
        "drivers", drivers, "refused", refused);
    int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? 0 : 1;
    fputc('\n', out);
    json_decref(root);
    mp_settings_free(&s);
    return rc;
}

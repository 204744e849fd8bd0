/* Unit tests of core/config: parsing, validation, settings, plugins.d. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "util/util.h"

/* ---- helpers ---- */

static char *make_dir(void)
{
    char tmpl[] = "/tmp/mp-test-config-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return mpu_strdup(dir);
}

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path = mpu_asprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void remove_dir(char **dir)
{
    char *cmd = mpu_asprintf("rm -rf '%s'", *dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    mpu_freep(dir);
}

/* Exactly one error, equal to the formatted text. */
static void assert_one_error(const mpc_errors *errs, const char *fmt, ...) MP_PRINTF(2, 3);
static void assert_one_error(const mpc_errors *errs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *want = mpu_vasprintf(fmt, ap);
    va_end(ap);
    if (errs->n != 1) {
        for (size_t i = 0; i < errs->n; i++)
            print_error("error %zu: %s\n", i, errs->msgs[i]);
    }
    assert_int_equal(errs->n, 1);
    assert_string_equal(errs->msgs[0], want);
    free(want);
}

/* Loads settings from `text` written to a temporary file; returns the
 * result of mp_settings_load. The path is returned for messages. */
static int load_settings_text(const char *text, char **dir_r, char **path_r,
                              mp_settings **settings_r, mpc_errors *errs)
{
    *dir_r = make_dir();
    *path_r = write_file(*dir_r, "mailpulsed.conf", text);
    return mp_settings_load(*path_r, settings_r, errs);
}

static void check_documented_defaults(const mp_settings *s)
{
    assert_string_equal(s->state_dir, "/var/lib/mailpulse");
    assert_string_equal(s->driver_dir, MP_DRIVER_DIR);
    assert_string_equal(s->plugins_dir, MP_SYSCONF_DIR "/plugins.d");
    assert_int_equal(s->workers, 4);
    assert_string_equal(s->log_level, "info");
    assert_string_equal(s->http.listen, "127.0.0.1:8025");
    assert_string_equal(s->http.socket, "/var/lib/mailpulse/mailpulsed.sock");
    assert_null(s->http.token_file);
    assert_int_equal(s->http.max_body, 1048576);
    assert_int_equal(s->sync.batch_size, 100);
    assert_int_equal(s->sync.ingest_batch_size, 500);
    assert_int_equal(s->sync.list_page_size, 30);
    assert_int_equal(s->sync.fetch_bodies, 0);
    assert_int_equal(s->cache.retention_days, 30);
    assert_int_equal(s->cache.prefetch_count, 30);
    assert_int_equal(s->cache.prefetch_interval, 60);
    assert_int_equal(s->cache.prefetch_per_run, 20);
    assert_int_equal(s->cache.prefetch_queue_max, 10000);
    assert_int_equal(s->debug.clock_control, 0);
    assert_int_equal(s->backfill.mode, MP_BACKFILL_PROGRESSIVE);
    assert_int_equal(s->backfill.bootstrap_max, 1500);
    assert_int_equal(s->backfill.batch_size, 100);
    assert_int_equal(s->backfill.job_budget, 25);
    assert_int_equal(s->backfill.max_per_folder, 20000);
    assert_int_equal(s->schedule.bootstrap_interval, 240);
    assert_int_equal(s->schedule.backfill_interval, 240);
    assert_int_equal(s->schedule.cache_cleanup_interval, 86400);
    assert_int_equal(s->schedule.push_renew_interval, 3600);
    assert_int_equal(s->schedule.reconcile_interval, 900);
    assert_int_equal(s->schedule.folder_list_interval, 3600);
    assert_int_equal(s->schedule.max_backoff, 1800);
    assert_int_equal(s->workers_per_account, 0);
    assert_int_equal(s->workers_per_kind, 0);
    assert_int_equal(s->cache.fetch_queue_max, 16);
    assert_int_equal(s->cache.fetch_timeout, 30);
}

/* ---- YAML parsing ---- */

static void test_yaml_types_and_lines(void **state)
{
    (void)state;
    static const char text[] = "# comment\n"
                               "name: box\n"
                               "count: 42\n"
                               "neg: -7\n"
                               "ratio: 1.5\n"
                               "on1: true\n"
                               "on2: yes\n"
                               "off: no\n"
                               "quoted: \"42\"\n"
                               "single: 'true'\n"
                               "nothing: ~\n"
                               "empty:\n"
                               "flow: {a: 1, b: [x, 2]}\n"
                               "block:\n"
                               "  - one\n"
                               "  - two\n";
    mpc_errors errs = {0};
    mpc_node *root = mpc_parse_yaml_string(text, strlen(text), "t.yaml", &errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(root);
    assert_int_equal(root->type, MPC_MAP);
    assert_string_equal(root->file, "t.yaml");
    assert_int_equal(root->line, 2);

    const mpc_node *n = mpc_get(root, "name");
    assert_int_equal(n->type, MPC_STRING);
    assert_string_equal(n->str, "box");
    assert_int_equal(n->line, 2);
    n = mpc_get(root, "count");
    assert_int_equal(n->type, MPC_INT);
    assert_int_equal(n->i, 42);
    assert_int_equal(n->line, 3);
    assert_int_equal(mpc_int(root, "neg"), -7);
    n = mpc_get(root, "ratio");
    assert_int_equal(n->type, MPC_FLOAT);
    assert_true(n->f > 1.49 && n->f < 1.51);
    assert_int_equal(mpc_get(root, "on1")->type, MPC_BOOL);
    assert_true(mpc_bool(root, "on1"));
    assert_true(mpc_bool(root, "on2"));
    assert_int_equal(mpc_get(root, "off")->type, MPC_BOOL);
    assert_false(mpc_bool(root, "off"));
    assert_int_equal(mpc_get(root, "quoted")->type, MPC_STRING);
    assert_string_equal(mpc_string(root, "quoted"), "42");
    assert_int_equal(mpc_get(root, "single")->type, MPC_STRING);
    assert_int_equal(mpc_get(root, "nothing")->type, MPC_NULL);
    assert_int_equal(mpc_get(root, "empty")->type, MPC_NULL);

    const mpc_node *flow = mpc_get(root, "flow");
    assert_int_equal(flow->type, MPC_MAP);
    assert_int_equal(flow->line, 13);
    assert_int_equal(mpc_int(flow, "a"), 1);
    const mpc_node *b = mpc_get(flow, "b");
    assert_int_equal(b->type, MPC_LIST);
    assert_int_equal(b->n_items, 2);
    assert_null(b->items[0]->key);
    assert_int_equal(b->items[1]->type, MPC_INT);

    assert_int_equal(mpc_list_len(root, "block"), 2);
    assert_string_equal(mpc_list_string(root, "block", 1), "two");
    assert_null(mpc_list_string(root, "block", 2));
    assert_int_equal(mpc_get(root, "block")->items[1]->line, 16);
    mpc_free(&root);
    assert_null(root);
    mpc_free(&root);
    mpc_errors_free(&errs);
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    static const char text[] = "driver: x\n"
                               "accounts:\n"
                               "  - id: a\n"
                               "   bad: [1, 2\n";
    mpc_errors errs = {0};
    mpc_node *root = mpc_parse_yaml_string(text, strlen(text), "s.yaml", &errs);
    assert_null(root);
    /* The message text comes from libyaml; the location is ours. */
    assert_one_error(&errs, "s.yaml:4: YAML syntax error: did not find expected '-' "
                            "indicator (while parsing a block collection)");
    mpc_errors_free(&errs);
    assert_int_equal(errs.n, 0);

    static const char text2[] = "a: 1\nb: [unclosed\n";
    root = mpc_parse_yaml_string(text2, strlen(text2), "u.yaml", &errs);
    assert_null(root);
    assert_one_error(&errs, "u.yaml:3: YAML syntax error: did not find expected ',' or "
                            "']' (while parsing a flow sequence)");
    mpc_errors_free(&errs);
}

static void test_yaml_rejections(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *error;
    } cases[] = {
        {"a: 1\nb: 2\na: 3\n", "r.yaml:3: duplicate key \"a\" (first at line 1)"},
        {"a: &x 1\nb: 2\n", "r.yaml:1: YAML anchors are not supported"},
        {"a: 1\nb: *x\n", NULL}, /* undefined alias: libyaml accepts; we refuse */
        {"- a\n- b\n", "r.yaml:1: the document must be a map of \"key: value\" entries"},
        {"just text\n", "r.yaml:1: the document must be a map of \"key: value\" entries"},
        {"a: 1\n---\nb: 2\n", "r.yaml:2: only one YAML document per file is allowed"},
        {"a: !!int 1\n", "r.yaml:1: YAML tags are not supported"},
        {"? [a, b]\n: 1\n", "r.yaml:1: a map key must be a plain string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpc_errors errs = {0};
        mpc_node *root =
            mpc_parse_yaml_string(cases[i].text, strlen(cases[i].text), "r.yaml", &errs);
        assert_null(root);
        if (cases[i].error != NULL)
            assert_one_error(&errs, "%s", cases[i].error);
        else
            assert_one_error(&errs, "r.yaml:2: YAML aliases are not supported");
        mpc_errors_free(&errs);
    }
}

static void test_yaml_empty_and_deep(void **state)
{
    (void)state;
    mpc_errors errs = {0};
    mpc_node *root = mpc_parse_yaml_string("# only a comment\n", 17, "e.yaml", &errs);
    assert_non_null(root);
    assert_int_equal(root->type, MPC_MAP);
    assert_int_equal(root->n_items, 0);
    mpc_free(&root);

    char deep[400];
    memset(deep, '[', 200);
    deep[0] = 'a';
    deep[1] = ':';
    deep[2] = ' ';
    memset(deep + 200, ']', 199);
    deep[399] = '\0';
    root = mpc_parse_yaml_string(deep, strlen(deep), "d.yaml", &errs);
    assert_null(root);
    assert_one_error(&errs, "d.yaml:1: nesting deeper than 64 levels");
    mpc_errors_free(&errs);
}

/* ---- libconfig parsing ---- */

static void test_libconfig_parse(void **state)
{
    (void)state;
    static const char text[] = "a = 1;\n"
                               "b: \"text\";\n"
                               "big = 9000000000L;\n"
                               "f = 2.5;\n"
                               "yes = true;\n"
                               "grp = {\n"
                               "  inner = [1, 2, 3];\n"
                               "  lst = (\"x\", { k = 1; });\n"
                               "};\n";
    mpc_errors errs = {0};
    mpc_node *root = mpc_parse_libconfig_string(text, "c.conf", &errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(root);
    assert_string_equal(root->file, "c.conf");
    assert_int_equal(mpc_int(root, "a"), 1);
    assert_int_equal(mpc_get(root, "a")->line, 1);
    assert_string_equal(mpc_string(root, "b"), "text");
    assert_int_equal(mpc_get(root, "b")->line, 2);
    assert_true(mpc_int(root, "big") == INT64_C(9000000000));
    assert_int_equal(mpc_get(root, "f")->type, MPC_FLOAT);
    assert_true(mpc_bool(root, "yes"));
    const mpc_node *grp = mpc_get(root, "grp");
    assert_int_equal(grp->type, MPC_MAP);
    assert_int_equal(grp->line, 6);
    assert_int_equal(mpc_list_len(grp, "inner"), 3);
    const mpc_node *lst = mpc_get(grp, "lst");
    assert_int_equal(lst->type, MPC_LIST);
    assert_int_equal(lst->line, 8);
    assert_int_equal(lst->items[1]->type, MPC_MAP);
    assert_int_equal(mpc_int(lst->items[1], "k"), 1);
    mpc_free(&root);
    mpc_errors_free(&errs);
}

static void test_libconfig_syntax_error(void **state)
{
    (void)state;
    mpc_errors errs = {0};
    mpc_node *root =
        mpc_parse_libconfig_string("a = 1;\nb = 2;\nc = = 3;\n", "x.conf", &errs);
    assert_null(root);
    assert_one_error(&errs, "x.conf:3: syntax error");
    mpc_errors_free(&errs);

    root = mpc_parse_libconfig_string("a = 1;\n  @include \"/etc/passwd\"\n", "i.conf",
                                      &errs);
    assert_null(root);
    assert_one_error(&errs, "i.conf:2: @include is not supported");
    mpc_errors_free(&errs);
}

static void test_missing_file(void **state)
{
    (void)state;
    mpc_errors errs = {0};
    assert_null(mpc_load_yaml("/nonexistent/mp/x.yaml", &errs));
    assert_one_error(&errs, "/nonexistent/mp/x.yaml: No such file or directory");
    mpc_errors_free(&errs);
    assert_null(mpc_load_libconfig("/nonexistent/mp/x.conf", &errs));
    assert_one_error(&errs, "/nonexistent/mp/x.conf: No such file or directory");
    mpc_errors_free(&errs);
}

/* ---- mpc_validate ---- */

static const mp_config_key demo_keys[] = {
    {"host", MP_CFG_STRING, NULL, 1, "server host name"},
    {"port", MP_CFG_INT, "993", 0, "server port"},
    {"tls", MP_CFG_BOOL, "true", 0, NULL},
    {"user", MP_CFG_STRING, NULL, 0, NULL},
    {"labels", MP_CFG_STRING_LIST, "INBOX,Sent", 0, NULL},
    {"password_file", MP_CFG_SECRET_FILE, NULL, 0, NULL},
    {0},
};

static mpc_node *yaml(const char *text, mpc_errors *errs)
{
    mpc_node *root = mpc_parse_yaml_string(text, strlen(text), "v.yaml", errs);
    assert_non_null(root);
    return root;
}

static void test_validate_defaults_and_conversion(void **state)
{
    (void)state;
    mpc_errors errs = {0};
    mpc_node *root = yaml("host: mail.example.org\nuser: 12345\nport: \"1143\"\n"
                          "password_file: /run/secret\n",
                          &errs);
    assert_int_equal(mpc_validate(root, demo_keys, NULL, &errs), 0);
    assert_int_equal(errs.n, 0);
    assert_string_equal(mpc_string(root, "host"), "mail.example.org");
    /* an unquoted number is accepted as a string */
    assert_string_equal(mpc_string(root, "user"), "12345");
    /* a quoted integer is converted for an int key */
    assert_int_equal(mpc_get(root, "port")->type, MPC_INT);
    assert_int_equal(mpc_int(root, "port"), 1143);
    assert_string_equal(mpc_string(root, "password_file"), "/run/secret");
    /* defaults were added with line 0 */
    const mpc_node *tls = mpc_get(root, "tls");
    assert_non_null(tls);
    assert_int_equal(tls->line, 0);
    assert_string_equal(tls->file, "v.yaml");
    assert_true(mpc_bool(root, "tls"));
    assert_int_equal(mpc_list_len(root, "labels"), 2);
    assert_string_equal(mpc_list_string(root, "labels", 0), "INBOX");
    assert_string_equal(mpc_list_string(root, "labels", 1), "Sent");
    mpc_free(&root);

    root = yaml("host: h\n", &errs);
    assert_int_equal(mpc_validate(root, demo_keys, NULL, &errs), 0);
    assert_int_equal(mpc_int(root, "port"), 993);
    assert_int_equal(mpc_get(root, "port")->line, 0);
    assert_null(mpc_get(root, "user"));
    mpc_free(&root);
    mpc_errors_free(&errs);
}

static void test_validate_errors(void **state)
{
    (void)state;
    mpc_errors errs = {0};
    mpc_node *root = yaml("host: h\nbogus: 1\n", &errs);
    assert_int_equal(mpc_validate(root, demo_keys, NULL, &errs), 1);
    assert_one_error(&errs, "v.yaml:2: unknown key \"bogus\"");
    mpc_errors_free(&errs);
    mpc_free(&root);

    root = yaml("host: h\nport: many\n", &errs);
    assert_int_equal(mpc_validate(root, demo_keys, NULL, &errs), 1);
    assert_one_error(&errs, "v.yaml:2: \"port\" must be an integer, not a string "
                            "(server port)");
    mpc_errors_free(&errs);
    mpc_free(&root);

    root = yaml("host: h\ntls: maybe\n", &errs);
    assert_int_equal(mpc_validate(root, demo_keys, NULL, &errs), 1);
    assert_one_error(&errs,
                     "v.yaml:2: \"tls\" must be a boolean (true or false), not a string");
    mpc_errors_free(&errs);
    mpc_free(&root);

    root = yaml("host: h\nlabels:\n  - a\n  - [b]\n", &errs);
    assert_int_equal(mpc_validate(root, demo_keys, NULL, &errs), 1);
    assert_one_error(&errs, "v.yaml:4: \"labels\" must be a list of strings, not a list "
                            "containing a list");
    mpc_errors_free(&errs);
    mpc_free(&root);

    root = yaml("\n\nport: 1\n", &errs);
    assert_int_equal(mpc_validate(root, demo_keys, NULL, &errs), 1);
    assert_one_error(&errs, "v.yaml:3: missing required key \"host\" (server host name)");
    mpc_errors_free(&errs);
    mpc_free(&root);

    root = yaml("host: h\npassword_file: [a]\n", &errs);
    assert_int_equal(mpc_validate(root, demo_keys, NULL, &errs), 1);
    assert_one_error(&errs,
                     "v.yaml:2: \"password_file\" must be a file path (string), not a list");
    mpc_errors_free(&errs);
    mpc_free(&root);

    /* also_allowed keys are neither checked nor required */
    static const char *const also[] = {"host", "extra", NULL};
    root = yaml("extra: [1, 2]\n", &errs);
    assert_int_equal(mpc_validate(root, demo_keys, also, &errs), 0);
    assert_int_equal(errs.n, 0);
    mpc_free(&root);
    mpc_errors_free(&errs);
}

static void test_validate_secret_name(void **state)
{
    (void)state;
    static const mp_config_key bad_keys[] = {
        {"password", MP_CFG_SECRET_FILE, NULL, 0, NULL},
        {0},
    };
    mpc_errors errs = {0};
    mpc_node *root = yaml("\npassword: /run/pw\n", &errs);
    assert_int_equal(mpc_validate(root, bad_keys, NULL, &errs), 1);
    assert_one_error(&errs, "v.yaml:2: secret key \"password\" must have a name ending in "
                            "\"_file\" (bug in the driver's key declaration)");
    /* the secret value itself never appears in a message */
    assert_null(strstr(errs.msgs[0], "/run/pw"));
    mpc_errors_free(&errs);
    mpc_free(&root);
}

static void test_typed_access_null(void **state)
{
    (void)state;
    assert_null(mpc_get(NULL, "x"));
    assert_null(mpc_string(NULL, "x"));
    assert_int_equal(mpc_int(NULL, "x"), 0);
    assert_int_equal(mpc_bool(NULL, "x"), 0);
    assert_int_equal(mpc_list_len(NULL, "x"), 0);
    assert_null(mpc_list_string(NULL, "x", 0));
    mpc_errors errs = {0};
    mpc_node *root = yaml("s: text\n", &errs);
    /* wrong type reads as absent */
    assert_int_equal(mpc_int(root, "s"), 0);
    assert_int_equal(mpc_list_len(root, "s"), 0);
    assert_null(mpc_string(root, "missing"));
    mpc_free(&root);
    mpc_errors_free(&errs);
    mpc_errors_free(NULL);
    mpc_free(NULL);
}

/* ---- settings ---- */

static void test_settings_embedded_default(void **state)
{
    (void)state;
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    assert_int_equal(mp_settings_load(NULL, &s, &errs), 0);
    assert_int_equal(errs.n, 0);
    assert_non_null(s);
    assert_string_equal(s->source, "<embedded default>");
    check_documented_defaults(s);
    mp_settings_free(&s);
    assert_null(s);
    mp_settings_free(&s);

    /* the text itself is a valid libconfig document */
    mpc_node *root = mpc_parse_libconfig_string(mp_settings_default_text(), "d", &errs);
    assert_non_null(root);
    assert_string_equal(mpc_string(root, "state_dir"), "/var/lib/mailpulse");
    mpc_free(&root);
}

static void test_settings_defaults_filled(void **state)
{
    (void)state;
    char *dir, *path;
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    assert_int_equal(load_settings_text("# nothing set\n", &dir, &path, &s, &errs), 0);
    assert_int_equal(errs.n, 0);
    assert_string_equal(s->source, path);
    check_documented_defaults(s);
    mp_settings_free(&s);
    free(path);
    remove_dir(&dir);

    assert_int_equal(load_settings_text("state_dir = \"/srv/mp/\";\n"
                                        "http: { listen = \"\"; max_body = \"4096\"; };\n"
                                        "backfill = { mode = \"from_now_on\"; };\n",
                                        &dir, &path, &s, &errs),
                     0);
    assert_int_equal(errs.n, 0);
    assert_string_equal(s->state_dir, "/srv/mp/");
    assert_string_equal(s->http.socket, "/srv/mp/mailpulsed.sock");
    assert_string_equal(s->http.listen, "");
    assert_int_equal(s->http.max_body, 4096);
    assert_int_equal(s->backfill.mode, MP_BACKFILL_FROM_NOW_ON);
    assert_int_equal(s->backfill.batch_size, 100);
    mp_settings_free(&s);
    free(path);
    remove_dir(&dir);
}

static void test_settings_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *error; /* after "<path>:" */
    } cases[] = {
        {"workers = 4;\n\nbogus = 1;\n", "3: unknown key \"bogus\""},
        {"http = {\n  listen = \"127.0.0.1:1\";\n  colour = \"red\";\n};\n",
         "3: unknown key \"colour\""},
        {"workers = \"many\";\n",
         "1: \"workers\" must be an integer, not a string (worker threads, 1..64)"},
        {"\nworkers = 65;\n", "2: \"workers\" must be between 1 and 64"},
        {"workers = 0;\n", "1: \"workers\" must be between 1 and 64"},
        {"backfill = {\n  mode = \"fast\";\n};\n",
         "2: \"backfill.mode\" must be one of progressive, full, from_now_on, not \"fast\""},
        {"sync = { batch_size = 0; };\n", "1: \"sync.batch_size\" must be between 1 and 100000"},
        {"http = { listen = \"localhost\"; };\n",
         "1: \"http.listen\" must be \"host:port\" (or \"\" to disable TCP), not \"localhost\""},
        {"http = { listen = \"h:99999\"; };\n",
         "1: \"http.listen\" must be \"host:port\" (or \"\" to disable TCP), not \"h:99999\""},
        {"log_level = \"loud\";\n",
         "1: \"log_level\" must be one of error, warning, info, debug, not \"loud\""},
        {"sync = 5;\n", "1: \"sync\" must be a group ({ ... }), not an integer"},
        {"a = 1;\nb = ;\n", "2: syntax error"},
        /* Schedule settings are bounded (30 days): beyond that they used to
         * wrap in 32-bit milliseconds (4294968 s became a 704 ms backoff). */
        {"schedule = {\n  max_backoff = 4294968;\n};\n",
         "2: \"schedule.max_backoff\" must be between 1 and 2592000"},
        {"schedule = {\n\n  reconcile_interval = 2592001;\n};\n",
         "3: \"schedule.reconcile_interval\" must be between 1 and 2592000"},
        {"schedule = { bootstrap_interval = 5000000; };\n",
         "1: \"schedule.bootstrap_interval\" must be between 1 and 2592000"},
        {"schedule = { push_silence_hours = 721; };\n",
         "1: \"schedule.push_silence_hours\" must be between 0 and 720"},
        {"workers_per_account = 65;\n", "1: \"workers_per_account\" must be between 0 and 64"},
        {"workers_per_kind = -1;\n", "1: \"workers_per_kind\" must be between 0 and 64"},
        {"cache = { fetch_timeout = 0; };\n",
         "1: \"cache.fetch_timeout\" must be between 1 and 3600"},
        {"cache = { fetch_queue_max = 0; };\n",
         "1: \"cache.fetch_queue_max\" must be between 1 and 10000"},
        {"push = 5;\n", "1: \"push\" must be a group ({ ... }), not an integer"},
        {"push = {\n  listen = \"0.0.0.0:8443\";\n  tls = false;\n};\n",
         "3: \"push.tls = false\" on \"0.0.0.0:8443\", which is not a loopback address: "
         "push notifications would cross the network in clear text (listen on 127.0.0.1 "
         "behind a TLS proxy, or set plaintext_public = true if something else encrypts "
         "the path)"},
        {"push = {\n  listen = \"127.0.0.1:8443\";\n  tls_key_file = \"/k\";\n};\n",
         "1: \"push.tls_cert_file\" is required with push.tls = true (or set tls = false "
         "behind a TLS-terminating proxy)"},
        {"push = { listen = \"x\"; tls = false; };\n",
         "1: \"push.listen\" must be \"host:port\", not \"x\""},
        {"push = { listen = \"127.0.0.1:1\"; tls = false; rate = 0; };\n",
         "1: \"push.rate\" must be between 1 and 1000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir, *path;
        mpc_errors errs = {0};
        mp_settings *s = (mp_settings *)&errs; /* must be reset to NULL */
        assert_int_equal(load_settings_text(cases[i].text, &dir, &path, &s, &errs), -1);
        assert_null(s);
        assert_one_error(&errs, "%s:%s", path, cases[i].error);
        mpc_errors_free(&errs);
        free(path);
        remove_dir(&dir);
    }
}

/* push: absent means no listener; present, TLS by default with both
 * files, and the documented limits; plaintext allowed on loopback. */
static void test_settings_push(void **state)
{
    (void)state;
    char *dir, *path;
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    assert_int_equal(load_settings_text("workers = 2;\n", &dir, &path, &s, &errs), 0);
    assert_false(s->push.enabled);
    assert_null(s->push.listen);
    mp_settings_free(&s);
    free(path);
    remove_dir(&dir);

    assert_int_equal(load_settings_text("push = {\n  listen = \"0.0.0.0:8443\";\n"
                                        "  tls_cert_file = \"/c.pem\";\n"
                                        "  tls_key_file = \"/k.pem\";\n};\n",
                                        &dir, &path, &s, &errs),
                     0);
    assert_true(s->push.enabled);
    assert_true(s->push.tls);
    assert_string_equal(s->push.listen, "0.0.0.0:8443");
    assert_string_equal(s->push.tls_cert_file, "/c.pem");
    assert_string_equal(s->push.tls_key_file, "/k.pem");
    assert_int_equal(s->push.max_body, 262144);
    assert_int_equal(s->push.rate, 20);
    assert_int_equal(s->push.rate_total, 200);
    char *where = mpu_asprintf("%s:3", path);
    assert_string_equal(s->push.where, where);
    free(where);
    mp_settings_free(&s);
    free(path);
    remove_dir(&dir);

    static const char *const plain_ok[] = {
        "push = { listen = \"127.0.0.1:8026\"; tls = false; };\n",
        "push = { listen = \"127.1.2.3:8026\"; tls = false; };\n",
        "push = { listen = \"[::1]:8026\"; tls = false; };\n",
        "push = { listen = \"localhost:8026\"; tls = false; };\n",
        "push = { listen = \"0.0.0.0:8026\"; tls = false; plaintext_public = true; };\n",
    };
    for (size_t i = 0; i < sizeof plain_ok / sizeof plain_ok[0]; i++) {
        assert_int_equal(load_settings_text(plain_ok[i], &dir, &path, &s, &errs), 0);
        assert_false(s->push.tls);
        assert_null(s->push.tls_cert_file);
        mp_settings_free(&s);
        free(path);
        remove_dir(&dir);
    }
    assert_int_equal(load_settings_text(
                         "push = { listen = \"127.0.0.1.evil:8026\"; tls = false; };\n",
                         &dir, &path, &s, &errs),
                     -1);
    mpc_errors_free(&errs);
    free(path);
    remove_dir(&dir);
}

/* store { backend; url_file; }: the choice, its errors, and the URL read
 * from an owner-only file (its text is never in a message). */
static void test_settings_store(void **state)
{
    (void)state;
    char *dir, *path;
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    assert_int_equal(load_settings_text("workers = 2;\n", &dir, &path, &s, &errs), 0);
    assert_int_equal(s->store.backend, MP_STORE_SQLITE);
    assert_null(s->store.url_file);
    char *loc = NULL, *err = NULL;
    assert_int_equal(mp_store_location(s, &loc, &err), 0);
    char *want = mpu_asprintf("%s/mailpulse.db", s->state_dir);
    assert_string_equal(loc, want);
    free(want);
    mpu_secret_free(&loc);
    mp_settings_free(&s);
    free(path);
    remove_dir(&dir);

    static const struct {
        const char *conf;
        const char *error; /* after "<file>:<line>: " */
    } bad[] = {
        {"store = { backend = \"mysql\"; };\n",
         "\"store.backend\" must be sqlite or postgresql, not \"mysql\""},
        {"store = { backend = \"postgresql\"; };\n",
         "\"store.url_file\" is required with store.backend = postgresql"},
        {"store = { url_file = \"/etc/pg.url\"; };\n",
         "\"store.url_file\" is for store.backend = postgresql; the SQLite store is "
         "<state_dir>/mailpulse.db"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(load_settings_text(bad[i].conf, &dir, &path, &s, &errs), -1);
        assert_int_equal(errs.n, 1);
        assert_non_null(strstr(errs.msgs[0], bad[i].error));
        mpc_errors_free(&errs);
        free(path);
        remove_dir(&dir);
    }

    static const struct {
        const char *text;
        const char *url; /* NULL: refused */
    } files[] = {
        {"postgresql://mp:pw@db/mail\n", "postgresql://mp:pw@db/mail"},
        {"  postgres:///mail?host=/run/postgresql \n\n", "postgres:///mail?host=/run/postgresql"},
        {"host=db dbname=mail password=pw\n", NULL},
        {"postgresql://a\npostgresql://b\n", NULL},
        {"\n", NULL},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *d = make_dir();
        char *url_file = write_file(d, "pg.url", files[i].text);
        assert_int_equal(chmod(url_file, 0600), 0);
        char *conf = mpu_asprintf("store = { backend = \"postgresql\"; url_file = \"%s\"; };\n",
                                  url_file);
        assert_int_equal(load_settings_text(conf, &dir, &path, &s, &errs), 0);
        assert_int_equal(s->store.backend, MP_STORE_POSTGRESQL);
        int rc = mp_store_location(s, &loc, &err);
        if (files[i].url != NULL) {
            assert_int_equal(rc, 0);
            assert_string_equal(loc, files[i].url);
            mpu_secret_free(&loc);
        } else {
            assert_int_equal(rc, -1);
            assert_null(loc);
            assert_non_null(strstr(err, "must hold one postgresql:// URL"));
            assert_null(strstr(err, "pw"));
            free(err);
        }
        /* Readable by others: refused like every secret file. */
        assert_int_equal(chmod(url_file, 0644), 0);
        assert_int_equal(mp_store_location(s, &loc, &err), -1);
        assert_non_null(strstr(err, "store.url_file"));
        free(err);
        mp_settings_free(&s);
        free(conf);
        free(url_file);
        free(path);
        remove_dir(&dir);
        remove_dir(&d);
    }
}

static void test_settings_ipv6_listen(void **state)
{
    (void)state;
    char *dir, *path;
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    assert_int_equal(load_settings_text("http = { listen = \"[::1]:0\"; };\n", &dir, &path,
                                        &s, &errs),
                     0);
    assert_string_equal(s->http.listen, "[::1]:0");
    mp_settings_free(&s);
    free(path);
    remove_dir(&dir);
}

static void test_example_config(void **state)
{
    (void)state;
    /* The shipped example documents every setting with its default. */
    mpc_errors errs = {0};
    mp_settings *s = NULL;
    int rc = mp_settings_load(MP_TEST_SOURCE_DIR "/config/mailpulsed.conf", &s, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.msgs[i]);
    assert_int_equal(rc, 0);
    assert_string_equal(s->state_dir, "/var/lib/mailpulse");
    assert_string_equal(s->driver_dir, "/usr/lib/x86_64-linux-gnu/mailpulse/drivers");
    assert_string_equal(s->plugins_dir, "/etc/mailpulse/plugins.d");
    assert_int_equal(s->workers, 4);
    assert_int_equal(s->schedule.max_backoff, 1800);
    assert_int_equal(s->backfill.max_per_folder, 20000);
    assert_int_equal(s->http.max_body, 1048576);
    assert_null(s->http.token_file);
    mp_settings_free(&s);
    mpc_errors_free(&errs);
}

/* ---- plugins.d ---- */

static void test_plugins_two_files_sorted(void **state)
{
    (void)state;
    char *dir = make_dir();
    free(write_file(dir, "zeta.yaml", "driver: fixture\nenabled: false\n"));
    free(write_file(dir, "alpha.yml",
                    "driver: fixture\n"
                    "poll_interval: 120\n"
                    "host: imap.example.org\n"
                    "accounts:\n"
                    "  - id: alice\n"
                    "    folders: [INBOX, Sent, 2024]\n"
                    "  - id: bob.b\n"
                    "    enabled: false\n"
                    "    poll_interval: 60\n"));
    free(write_file(dir, "notes.txt", "not yaml: [\n"));
    free(write_file(dir, ".hidden.yaml", "not yaml: [\n"));

    mpc_errors errs = {0};
    mpc_instance_conf **list = NULL;
    size_t n = 0;
    assert_int_equal(mpc_plugins_load(dir, &list, &n, &errs), 0);
    assert_int_equal(errs.n, 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0]->name, "alpha");
    assert_string_equal(list[1]->name, "zeta");
    char *alpha = mpu_asprintf("%s/alpha.yml", dir);
    assert_string_equal(list[0]->file, alpha);
    free(alpha);
    assert_string_equal(list[0]->driver, "fixture");
    assert_int_equal(list[0]->enabled, 1);
    assert_int_equal(list[1]->enabled, 0);
    assert_int_equal(mpc_int(list[0]->root, "poll_interval"), 120);
    assert_int_equal(list[0]->n_accounts, 2);
    assert_int_equal(list[1]->n_accounts, 0);

    const mpc_node *a = list[0]->accounts[0];
    assert_string_equal(mpc_string(a, "id"), "alice");
    assert_true(mpc_bool(a, "enabled")); /* default filled */
    assert_int_equal(mpc_list_len(a, "folders"), 3);
    assert_string_equal(mpc_list_string(a, "folders", 2), "2024");
    const mpc_node *b = list[0]->accounts[1];
    assert_false(mpc_bool(b, "enabled"));
    assert_int_equal(mpc_int(b, "poll_interval"), 60);

    /* driver keys are validated later, against the driver's declaration */
    static const mp_config_key inst_keys[] = {
        {"host", MP_CFG_STRING, NULL, 1, NULL},
        {"port", MP_CFG_INT, "993", 0, NULL},
        {"poll_interval", MP_CFG_INT, NULL, 0, "documented by the driver"},
        {0},
    };
    static const mp_config_key acct_keys[] = {
        {"user", MP_CFG_STRING, "me", 0, NULL},
        {0},
    };
    mp_driver drv = {.name = "fixture", .instance_keys = inst_keys, .account_keys = acct_keys};
    assert_int_equal(mpc_validate_instance(list[0], &drv, &errs), 0);
    assert_int_equal(errs.n, 0);
    assert_int_equal(mpc_int(list[0]->root, "port"), 993);
    assert_string_equal(mpc_string(list[0]->accounts[1], "user"), "me");
    /* zeta lacks the required host */
    assert_int_equal(mpc_validate_instance(list[1], &drv, &errs), 1);
    char *zeta = mpu_asprintf("%s/zeta.yaml", dir);
    assert_one_error(&errs, "%s:1: missing required key \"host\"", zeta);
    mpc_errors_free(&errs);
    free(zeta);

    mpc_instances_free(&list, n);
    assert_null(list);
    mpc_instances_free(&list, 0);
    remove_dir(&dir);
}

static void test_plugins_duplicate_account(void **state)
{
    (void)state;
    char *dir = make_dir();
    char *a = write_file(dir, "a.yaml",
                         "driver: fixture\naccounts:\n  - id: carol\n  - id: alice\n");
    char *b = write_file(dir, "b.yaml",
                         "driver: fixture\n"
                         "accounts:\n"
                         "  - id: dave\n"
                         "  - id: alice\n");
    mpc_errors errs = {0};
    mpc_instance_conf **list = NULL;
    size_t n = 0;
    assert_int_equal(mpc_plugins_load(dir, &list, &n, &errs), -1);
    assert_one_error(&errs, "%s:4: duplicate account id \"alice\" (first defined at %s:4)", b,
                     a);
    /* the file with the error is left out; the other one stays */
    assert_int_equal(n, 1);
    assert_string_equal(list[0]->name, "a");
    mpc_instances_free(&list, n);
    mpc_errors_free(&errs);
    free(a);
    free(b);
    remove_dir(&dir);
}

static void test_plugins_core_key_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *error; /* after "<path>:" */
    } cases[] = {
        {"\nenabled: true\n", "2: missing required key \"driver\""},
        {"driver: [x]\n", "1: \"driver\" must be a string (the driver name), not a list"},
        {"driver: ../evil\n",
         "1: driver name \"../evil\" is invalid (1 to 64 of A-Z a-z 0-9 _ -)"},
        {"driver: x\nenabled: maybe\n",
         "2: \"enabled\" must be a boolean (true or false), not a string"},
        {"driver: x\npoll_interval: 0\n",
         "2: \"poll_interval\" must be between 1 and 2592000 seconds"},
        {"driver: x\npoll_interval: 4294968\n",
         "2: \"poll_interval\" must be between 1 and 2592000 seconds"},
        {"driver: x\naccounts: alice\n",
         "2: \"accounts\" must be a list of accounts, not a string"},
        {"driver: x\naccounts:\n  - alice\n",
         "3: each account must be a map (\"id: ...\" entries), not a string"},
        {"driver: x\naccounts:\n  - enabled: true\n", "3: missing required key \"id\""},
        {"driver: x\naccounts:\n  - id: \"a b\"\n",
         "3: account id \"a b\" is invalid (1 to 64 of A-Z a-z 0-9 . _ -)"},
        {"driver: x\naccounts:\n  - id: a\n    folders: INBOX\n",
         "4: \"folders\" must be a list of folder names, not a string"},
        {"driver: x\naccounts:\n  - id: a\n    folders: [INBOX, {x: 1}]\n",
         "4: \"folders\" must contain folder names, not a map"},
        {"driver: x\naccounts:\n  - id: a\n  - id: a\n",
         "4: duplicate account id \"a\" (first defined at %s:3)"},
        {"driver: x\nbad: [\n",
         "3: YAML syntax error: did not find expected node content (while parsing a "
         "flow node)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = make_dir();
        char *path = write_file(dir, "inst.yaml", cases[i].text);
        mpc_errors errs = {0};
        mpc_instance_conf **list = NULL;
        size_t n = 0;
        assert_int_equal(mpc_plugins_load(dir, &list, &n, &errs), -1);
        assert_int_equal(n, 0);
        assert_int_equal(errs.n, 1);
        char *want;
        if (strstr(cases[i].error, "%s") != NULL) {
            char *tail = mpu_asprintf("%s:%s", path, cases[i].error);
            /* the only placeholder is the same file */
            char *p = strstr(tail, "%s");
            *p = '\0';
            want = mpu_asprintf("%s%s%s", tail, path, p + 2);
            free(tail);
        } else {
            want = mpu_asprintf("%s:%s", path, cases[i].error);
        }
        assert_string_equal(errs.msgs[0], want);
        free(want);
        mpc_instances_free(&list, n);
        mpc_errors_free(&errs);
        free(path);
        remove_dir(&dir);
    }
}

static void test_plugins_empty_and_missing_dir(void **state)
{
    (void)state;
    char *dir = make_dir();
    mpc_errors errs = {0};
    mpc_instance_conf **list = NULL;
    size_t n = 7;
    assert_int_equal(mpc_plugins_load(dir, &list, &n, &errs), 0);
    assert_int_equal(n, 0);
    assert_int_equal(errs.n, 0);
    mpc_instances_free(&list, n);

    char *missing = mpu_asprintf("%s/nope", dir);
    assert_int_equal(mpc_plugins_load(missing, &list, &n, &errs), -1);
    assert_null(list);
    assert_int_equal(n, 0);
    assert_one_error(&errs,
                     "%s: cannot open the plugins directory: No such file or directory",
                     missing);
    mpc_errors_free(&errs);
    free(missing);
    remove_dir(&dir);
}

static void test_plugins_shipped_readme_dir(void **state)
{
    (void)state;
    /* config/plugins.d holds only the README: no instances, no errors. */
    mpc_errors errs = {0};
    mpc_instance_conf **list = NULL;
    size_t n = 0;
    assert_int_equal(mpc_plugins_load(MP_TEST_SOURCE_DIR "/config/plugins.d", &list, &n,
                                      &errs),
                     0);
    assert_int_equal(n, 0);
    mpc_instances_free(&list, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_types_and_lines),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_yaml_rejections),
        cmocka_unit_test(test_yaml_empty_and_deep),
        cmocka_unit_test(test_libconfig_parse),
        cmocka_unit_test(test_libconfig_syntax_error),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_validate_defaults_and_conversion),
        cmocka_unit_test(test_validate_errors),
        cmocka_unit_test(test_validate_secret_name),
        cmocka_unit_test(test_typed_access_null),
        cmocka_unit_test(test_settings_embedded_default),
        cmocka_unit_test(test_settings_defaults_filled),
        cmocka_unit_test(test_settings_errors),
        cmocka_unit_test(test_settings_ipv6_listen),
        cmocka_unit_test(test_settings_push),
        cmocka_unit_test(test_settings_store),
        cmocka_unit_test(test_example_config),
        cmocka_unit_test(test_plugins_two_files_sorted),
        cmocka_unit_test(test_plugins_duplicate_account),
        cmocka_unit_test(test_plugins_core_key_errors),
        cmocka_unit_test(test_plugins_empty_and_missing_dir),
        cmocka_unit_test(test_plugins_shipped_readme_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* YAML text (plugins.d files) -> configuration tree, through libyaml's event
 * API so every node keeps its line. */
#include "config/config_private.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "util/util.h"

#define TAG_STR "tag:yaml.org,2002:str"
#define TAG_MAP "tag:yaml.org,2002:map"
#define TAG_SEQ "tag:yaml.org,2002:seq"

typedef struct yaml_ctx {
    yaml_parser_t parser;
    const char *text;
    size_t len;
    const char *file; /* owned by the root */
    mpc_errors *errs;
} yaml_ctx;

static int mark_line(const yaml_mark_t *mark)
{
    return mark->line >= (size_t)INT_MAX ? INT_MAX : (int)mark->line + 1;
}

static int offset_line(const yaml_ctx *ctx, size_t offset)
{
    int line = 1;
    for (size_t i = 0; i < offset && i < ctx->len && line < INT_MAX; i++)
        if (ctx->text[i] == '\n')
            line++;
    return line;
}

static void syntax_error(yaml_ctx *ctx)
{
    const yaml_parser_t *p = &ctx->parser;
    int line = p->error == YAML_READER_ERROR ? offset_line(ctx, p->problem_offset)
                                             : mark_line(&p->problem_mark);
    const char *problem = p->problem != NULL ? p->problem : "invalid input";
    if (p->context != NULL)
        mpc_error_add(ctx->errs, ctx->file, line, "YAML syntax error: %s (%s)",
                      problem, p->context);
    else
        mpc_error_add(ctx->errs, ctx->file, line, "YAML syntax error: %s", problem);
}

/* Next event, or -1 with a syntax error added (event left empty). */
static int next_event(yaml_ctx *ctx, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&ctx->parser, ev)) {
        syntax_error(ctx);
        memset(ev, 0, sizeof *ev);
        return -1;
    }
    return 0;
}

static int is_plain_null(const char *s)
{
    return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int plain_bool(const char *s, int *value_r)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", NULL};
    if (mpc_name_in(s, yes))
        *value_r = 1;
    else if (mpc_name_in(s, no))
        *value_r = 0;
    else
        return 0;
    return 1;
}

static int plain_int(const char *s, int64_t *value_r)
{
    const char *d = (*s == '-' || *s == '+') ? s + 1 : s;
    if (!isdigit((unsigned char)*d))
        return 0;
    for (const char *q = d; *q != '\0'; q++)
        if (!isdigit((unsigned char)*q))
            return 0;
    return mpu_parse_i64(s, value_r) == 0;
}

static int plain_float(const char *s, double *value_r)
{
    const char *d = (*s == '-' || *s == '+') ? s + 1 : s;
    if (!isdigit((unsigned char)*d) && *d != '.')
        return 0;
    if (strpbrk(s, ".eE") == NULL || strpbrk(s, "xX") != NULL)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0')
        return 0;
    *value_r = v;
    return 1;
}

/* Types a scalar the YAML 1.1 way, restricted to what a config needs:
 * only unquoted, untagged text is ever anything but a string. */
static void set_scalar(mpc_node *node, const yaml_event_t *ev)
{
    node->str = mpu_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    node->type = MPC_STRING;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || ev->data.scalar.tag != NULL)
        return;
    int b;
    if (is_plain_null(node->str))
        node->type = MPC_NULL;
    else if (plain_bool(node->str, &b)) {
        node->type = MPC_BOOL;
        node->i = b;
    } else if (plain_int(node->str, &node->i))
        node->type = MPC_INT;
    else if (plain_float(node->str, &node->f))
        node->type = MPC_FLOAT;
}

/* Anchors, aliases and tags other than the standard ones are refused: a
 * config file gains nothing from them and aliases allow "billion laughs"
 * style expansion. */
static int check_node_event(yaml_ctx *ctx, const yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    const char *allowed = NULL;
    int line = mark_line(&ev->start_mark);
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        mpc_error_add(ctx->errs, ctx->file, line, "YAML aliases are not supported");
        return -1;
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        allowed = TAG_STR;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        allowed = TAG_SEQ;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        allowed = TAG_MAP;
        break;
    default:
        mpc_error_add(ctx->errs, ctx->file, line, "unexpected YAML structure");
        return -1;
    }
    if (anchor != NULL) {
        mpc_error_add(ctx->errs, ctx->file, line, "YAML anchors are not supported");
        return -1;
    }
    if (tag != NULL && strcmp((const char *)tag, allowed) != 0) {
        mpc_error_add(ctx->errs, ctx->file, line, "YAML tags are not supported");
        return -1;
    }
    return 0;
}

static int parse_children(yaml_ctx *ctx, mpc_node *node, int depth);

/* Fills `node` from the node event `ev` (and, for collections, the events
 * up to its end). `ev` stays owned by the caller. */
static int parse_node(yaml_ctx *ctx, const yaml_event_t *ev, mpc_node *node, int depth)
{
    if (check_node_event(ctx, ev) < 0)
        return -1;
    if (ev->type == YAML_SCALAR_EVENT) {
        set_scalar(node, ev);
        return 0;
    }
    node->type = ev->type == YAML_MAPPING_START_EVENT ? MPC_MAP : MPC_LIST;
    if (depth >= MPC_MAX_DEPTH) {
        mpc_error_add(ctx->errs, ctx->file, mark_line(&ev->start_mark),
                      "nesting deeper than %d levels", MPC_MAX_DEPTH);
        return -1;
    }
    return parse_children(ctx, node, depth + 1);
}

static int parse_map_entry(yaml_ctx *ctx, const yaml_event_t *key_ev, mpc_node *map,
                           int depth)
{
    int line = mark_line(&key_ev->start_mark);
    if (key_ev->type != YAML_SCALAR_EVENT) {
        mpc_error_add(ctx->errs, ctx->file, line, "a map key must be a plain string");
        return -1;
    }
    if (check_node_event(ctx, key_ev) < 0)
        return -1;
    char *key = mpu_strndup((const char *)key_ev->data.scalar.value,
                            key_ev->data.scalar.length);
    const mpc_node *prev = mpc_get(map, key);
    if (prev != NULL) {
        mpc_error_add(ctx->errs, ctx->file, line,
                      "duplicate key \"%s\" (first at line %d)", key, prev->line);
        free(key);
        return -1;
    }
    mpc_node *child = mpc_node_new(MPC_NULL, ctx->file, line);
    child->key = key;
    mpc_node_append(map, child);

    yaml_event_t ev;
    if (next_event(ctx, &ev) < 0)
        return -1;
    int rc = parse_node(ctx, &ev, child, depth);
    yaml_event_delete(&ev);
    return rc;
}

static int parse_children(yaml_ctx *ctx, mpc_node *node, int depth)
{
    yaml_event_type_t end =
        node->type == MPC_MAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    for (;;) {
        yaml_event_t ev;
        if (next_event(ctx, &ev) < 0)
            return -1;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        int rc;
        if (node->type == MPC_MAP)
            rc = parse_map_entry(ctx, &ev, node, depth);
        else {
            mpc_node *item = mpc_node_new(MPC_NULL, ctx->file, mark_line(&ev.start_mark));
            mpc_node_append(node, item);
            rc = parse_node(ctx, &ev, item, depth);
        }
        yaml_event_delete(&ev);
        if (rc < 0)
            return -1;
    }
}

/* Expects an event of `type`; anything else is an error at its line. */
static int expect(yaml_ctx *ctx, yaml_event_type_t type, const char *what)
{
    yaml_event_t ev;
    if (next_event(ctx, &ev) < 0)
        return -1;
    int ok = ev.type == type;
    if (!ok)
        mpc_error_add(ctx->errs, ctx->file, mark_line(&ev.start_mark), "%s", what);
    yaml_event_delete(&ev);
    return ok ? 0 : -1;
}

static int parse_document(yaml_ctx *ctx, mpc_node *root)
{
    yaml_event_t ev;
    if (expect(ctx, YAML_STREAM_START_EVENT, "expected a YAML stream") < 0)
        return -1;
    if (next_event(ctx, &ev) < 0)
        return -1;
    if (ev.type == YAML_STREAM_END_EVENT) {
        /* Nothing but comments: an empty map. */
        yaml_event_delete(&ev);
        return 0;
    }
    yaml_event_delete(&ev);

    if (next_event(ctx, &ev) < 0)
        return -1;
    root->line = mark_line(&ev.start_mark);
    int rc;
    if (ev.type == YAML_SCALAR_EVENT && ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        ev.data.scalar.tag == NULL && ev.data.scalar.anchor == NULL &&
        is_plain_null((const char *)ev.data.scalar.value))
        rc = 0; /* "---" alone: an empty map */
    else if (ev.type != YAML_MAPPING_START_EVENT) {
        mpc_error_add(ctx->errs, ctx->file, root->line,
                      "the document must be a map of \"key: value\" entries");
        rc = -1;
    } else
        rc = parse_node(ctx, &ev, root, 0);
    yaml_event_delete(&ev);
    if (rc < 0)
        return -1;

    if (expect(ctx, YAML_DOCUMENT_END_EVENT, "expected the end of the document") < 0)
        return -1;
    if (next_event(ctx, &ev) < 0)
        return -1;
    rc = 0;
    if (ev.type != YAML_STREAM_END_EVENT) {
        mpc_error_add(ctx->errs, ctx->file, mark_line(&ev.start_mark),
                      "only one YAML document per file is allowed");
        rc = -1;
    }
    yaml_event_delete(&ev);
    return rc;
}

mpc_node *mpc_parse_yaml_string(const char *text, size_t len, const char *name,
                                mpc_errors *errs)
{
    mpc_node *root = mpc_root_new(name, 1);
    yaml_ctx ctx = {.text = text, .len = len, .file = root->file, .errs = errs};
    if (!yaml_parser_initialize(&ctx.parser)) {
        mpc_error_add(errs, root->file, 0, "cannot initialize the YAML parser");
        mpc_free(&root);
        return NULL;
    }
    yaml_parser_set_input_string(&ctx.parser, (const unsigned char *)text, len);
    int rc = parse_document(&ctx, root);
    yaml_parser_delete(&ctx.parser);
    if (rc < 0)
        mpc_free(&root);
    return root;
}

mpc_node *mpc_load_yaml(const char *path, mpc_errors *errs)
{
    char *text = NULL, *error = NULL;
    size_t len = 0;
    if (mpu_read_file(path, MPC_MAX_FILE_SIZE, 0, &text, &len, &error) < 0) {
        int err = errno;
        mpc_error_add(errs, NULL, 0, "%s", error);
        mpc_error_cause(errs, err);
        free(error);
        return NULL;
    }
    mpc_node *root = mpc_parse_yaml_string(text, len, path, errs);
    free(text);
    return root;
}

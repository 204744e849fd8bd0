/*
 * mailpulsectl webhooks: one row per outbound endpoint (GET /v1/webhooks);
 * `webhooks replay NAME [--from SEQ]` queues its dead letters again
 * (POST /v1/webhooks/NAME/replay).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "util/util.h"

#define W_URL 40
#define W_ERROR 50

static char *text_of(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return mpu_strdup(json_string_value(v));
    if (json_is_integer(v))
        return mpu_asprintf("%lld", (long long)json_integer_value(v));
    return NULL;
}

static void print_endpoints(const json_t *list)
{
    if (json_array_size(list) == 0) {
        printf("no webhook endpoints configured\n");
        return;
    }
    static const char *const headers[] = {"NAME",     "STATE",     "CURSOR",
                                          "LAG",      "DELIVERED", "FAILURES",
                                          "DEAD",     "NEXT-RETRY", "URL",
                                          "LAST-ERROR"};
    static const char *const keys[] = {"name",      "state",        "cursor",
                                       "lag",       "delivered",    "failures",
                                       "dead_letters", "next_retry", "url",
                                       "last_error"};
    const size_t n = sizeof keys / sizeof keys[0];
    mpctl_table *t = mpctl_table_new(n, headers);
    for (size_t c = 2; c <= 6; c++)
        mpctl_table_set_right(t, c);
    mpctl_table_set_max(t, 8, W_URL);
    mpctl_table_set_max(t, 9, W_ERROR);
    size_t i;
    const json_t *ep;
    json_array_foreach(list, i, ep)
    {
        char *cells[sizeof keys / sizeof keys[0]];
        for (size_t c = 0; c < n; c++)
            cells[c] = text_of(ep, keys[c]);
        mpctl_table_add_row(t, (const char *const *)cells);
        for (size_t c = 0; c < n; c++)
            free(cells[c]);
    }
    char *text = mpctl_table_render(t);
    fputs(text, stdout);
    free(text);
    mpctl_table_free(&t);
}

static int cmd_replay(const mpctl_args *args, const mpctl_conn *conn)
{
    char *name = mpctl_path_escape(args->pos[1]);
    char *from = args->from >= 0 ? mpu_asprintf("%lld", (long long)args->from) : NULL;
    mpctl_param params[] = {{"from", from}};
    char *query = mpctl_query_build(params, 1);
    char *path = mpu_asprintf("/v1/webhooks/%s/replay%s", name, query);
    json_t *root;
    int rc = mpctl_fetch_json(args, conn, "POST", path, &root);
    if (rc == MPCTL_EXIT_OK && !args->json) {
        char *clean = mpctl_sanitize(args->pos[1]);
        printf("%lld dead letters of %s queued for delivery\n",
               (long long)json_integer_value(json_object_get(root, "queued")), clean);
        free(clean);
    }
    json_decref(root);
    free(path);
    free(query);
    free(from);
    free(name);
    return rc;
}

int mpctl_cmd_webhooks(const mpctl_args *args, const mpctl_conn *conn)
{
    if (args->n_pos == 2)
        return cmd_replay(args, conn);
    json_t *root;
    int rc = mpctl_fetch_json(args, conn, "GET", "/v1/webhooks", &root);
    if (rc == MPCTL_EXIT_OK && !args->json)
        print_endpoints(json_object_get(root, "webhooks"));
    json_decref(root);
    return rc;
}

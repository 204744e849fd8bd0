/* The `webhooks` list of mailpulsed.conf -> mp_webhook_conf entries, and
 * the endpoints' secrets (read separately, by the daemon only). */
#include "config/config_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "util/util.h"

#define MAX_SECRET_FILE 65536
#define MAX_NAME 64

const char *const mpc_event_types[] = {
    "message.new",     "message.synced", "message.updated", "message.deleted",
    "folder.reset",    "account.status", NULL,
};

static const mp_config_key webhook_keys[] = {
    {"name", MP_CFG_STRING, NULL, 0, "[A-Za-z0-9._-], default \"webhook-N\""},
    {"url", MP_CFG_STRING, NULL, 1, "http:// or https:// address receiving POSTs"},
    {"secret_file", MP_CFG_SECRET_FILE, NULL, 1, "file holding the signing secret"},
    {"events", MP_CFG_STRING_LIST, NULL, 0, "event types to deliver; absent: all"},
    {"accounts", MP_CFG_STRING_LIST, NULL, 0, "accounts to deliver; absent: all"},
    {"folders", MP_CFG_STRING_LIST, NULL, 0, "folders to deliver; absent: all"},
    {"max_attempts", MP_CFG_INT, "10", 0, "attempts before dead-lettering, 1..1000"},
    {"timeout", MP_CFG_INT, "10", 0, "seconds per attempt, 1..3600"},
    {"retry_initial", MP_CFG_INT, "5", 0, "seconds before the first retry, 1..86400"},
    {"retry_max", MP_CFG_INT, "600", 0, "cap of the retry delay in seconds"},
    {"max_in_flight", MP_CFG_INT, "32", 0, "requests in flight at once (distinct accounts), 1..1000"},
    {0},
};

const mp_config_key *mpc__webhook_keys(void)
{
    return webhook_keys;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static void conf_clear(mp_webhook_conf *w)
{
    free(w->name);
    free(w->url);
    free(w->secret_file);
    free(w->where);
    char *key = (char *)w->key;
    mpu_secret_free(&key);
    strv_free(w->events);
    strv_free(w->accounts);
    strv_free(w->folders);
    memset(w, 0, sizeof *w);
}

void mpc__webhooks_free(mp_settings *s)
{
    for (size_t i = 0; i < s->n_webhooks; i++)
        conf_clear(&s->webhooks[i]);
    free(s->webhooks);
    s->webhooks = NULL;
    s->n_webhooks = 0;
}

static int name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* libcurl parses the URL the way it will later use it. */
static int url_valid(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int ok = u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
             host[0] != '\0';
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

/* A validated string list as a NULL-terminated copy; absent -> NULL. */
static size_t get_list(const mpc_node *map, const char *key, const char *name,
                       char ***list_r, mpc_errors *errs)
{
    const mpc_node *node = mpc_get(map, key);
    *list_r = NULL;
    if (node == NULL)
        return 0;
    if (node->n_items == 0) {
        mpc_error_add(errs, node->file, node->line,
                      "webhook \"%s\": \"%s\" must not be empty (leave it out for all)",
                      name, key);
        return 1;
    }
    size_t n = 0;
    char **list = mpu_calloc(node->n_items + 1, sizeof *list);
    for (size_t i = 0; i < node->n_items; i++) {
        const mpc_node *item = node->items[i];
        if (item->str == NULL || item->str[0] == '\0') {
            mpc_error_add(errs, item->file, item->line,
                          "webhook \"%s\": \"%s\" has an empty entry", name, key);
            n++;
        } else if (strcmp(key, "events") == 0 && !mpc_name_in(item->str, mpc_event_types)) {
            mpc_error_add(errs, item->file, item->line,
                          "webhook \"%s\": unknown event type \"%s\" (known: message.new, "
                          "message.synced, message.updated, message.deleted, folder.reset, "
                          "account.status)",
                          name, item->str);
            n++;
        }
        list[i] = mpu_strdup(item->str != NULL ? item->str : "");
    }
    *list_r = list;
    return n;
}

static size_t get_range(const mpc_node *map, const char *key, const char *name,
                        uint32_t min, uint32_t max, uint32_t *value_r, mpc_errors *errs)
{
    const mpc_node *node = mpc_get(map, key);
    int64_t v = node != NULL ? node->i : 0;
    if (node == NULL || v < (int64_t)min || v > (int64_t)max) {
        mpc_error_add(errs, map->file, node != NULL && node->line > 0 ? node->line : map->line,
                      "webhook \"%s\": \"%s\" must be between %u and %u", name, key, min,
                      max);
        return 1;
    }
    *value_r = (uint32_t)v;
    return 0;
}

static size_t fill_one(mpc_node *map, size_t index, mp_webhook_conf *w, mpc_errors *errs)
{
    size_t n = mpc_validate(map, webhook_keys, NULL, errs);
    if (n > 0)
        return n;
    const char *name = mpc_string(map, "name");
    w->name = name != NULL ? mpu_strdup(name) : mpu_asprintf("webhook-%zu", index + 1);
    w->where = mpu_asprintf("%s:%d", map->file, map->line);
    if (!name_valid(w->name)) {
        mpc_error_add(errs, map->file, mpc_get(map, "name")->line,
                      "webhook name \"%s\" must be 1-%d characters of A-Z a-z 0-9 . _ -",
                      w->name, MAX_NAME);
        n++;
    }
    const mpc_node *url = mpc_get(map, "url");
    w->url = mpu_strdup(url->str);
    if (!url_valid(url->str)) {
        mpc_error_add(errs, url->file, url->line,
                      "webhook \"%s\": \"url\" must be an http:// or https:// URL, not \"%s\"",
                      w->name, url->str);
        n++;
    }
    const mpc_node *secret = mpc_get(map, "secret_file");
    w->secret_file = mpu_strdup(secret->str);
    if (secret->str[0] == '\0') {
        mpc_error_add(errs, secret->file, secret->line,
                      "webhook \"%s\": \"secret_file\" must not be empty", w->name);
        n++;
    }
    n += get_list(map, "events", w->name, &w->events, errs);
    n += get_list(map, "accounts", w->name, &w->accounts, errs);
    n += get_list(map, "folders", w->name, &w->folders, errs);
    n += get_range(map, "max_attempts", w->name, 1, 1000, &w->max_attempts, errs);
    n += get_range(map, "timeout", w->name, 1, 3600, &w->timeout, errs);
    n += get_range(map, "retry_initial", w->name, 1, 86400, &w->retry_initial, errs);
    n += get_range(map, "retry_max", w->name, 1, 86400, &w->retry_max, errs);
    n += get_range(map, "max_in_flight", w->name, 1, 1000, &w->max_in_flight, errs);
    if (w->retry_max < w->retry_initial) {
        mpc_error_add(errs, map->file, map->line,
                      "webhook \"%s\": \"retry_max\" must not be below \"retry_initial\"",
                      w->name);
        n++;
    }
    return n;
}

size_t mpc__webhooks_fill(const mpc_node *root, mp_settings *s, mpc_errors *errs)
{
    const mpc_node *list = mpc_get(root, "webhooks");
    if (list == NULL)
        return 0;
    if (list->type != MPC_LIST) {
        mpc_error_add(errs, list->file, list->line,
                      "\"webhooks\" must be a list of groups: ( { url = ...; }, ... )");
        return 1;
    }
    size_t n = 0;
    s->webhooks = mpu_calloc(list->n_items + 1, sizeof *s->webhooks);
    s->n_webhooks = list->n_items;
    for (size_t i = 0; i < list->n_items; i++) {
        mpc_node *item = list->items[i];
        if (item->type != MPC_MAP) {
            mpc_error_add(errs, item->file, item->line,
                          "each entry of \"webhooks\" must be a group ({ ... }), not %s",
                          mpc_type_name(item->type));
            n++;
            continue;
        }
        n += fill_one(item, i, &s->webhooks[i], errs);
        for (size_t j = 0; j < i; j++) {
            if (s->webhooks[i].name != NULL && s->webhooks[j].name != NULL &&
                strcmp(s->webhooks[i].name, s->webhooks[j].name) == 0) {
                mpc_error_add(errs, item->file, item->line,
                              "webhook name \"%s\" is used twice (its delivery cursor is "
                              "kept by name)",
                              s->webhooks[i].name);
                n++;
                break;
            }
        }
    }
    return n;
}

int mpc_webhook_key(const char *text, size_t len, uint8_t **key_r, size_t *key_len_r,
                    char **error_r)
{
    *key_r = NULL;
    *key_len_r = 0;
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len > 0 && text[len - 1] == '\r')
        len--;
    if (len == 0) {
        *error_r = mpu_strdup("the secret is empty");
        return -1;
    }
    static const char prefix[] = "whsec_";
    const size_t plen = sizeof prefix - 1;
    if (len < plen || memcmp(text, prefix, plen) != 0) {
        *key_r = mpu_malloc(len);
        memcpy(*key_r, text, len);
        *key_len_r = len;
        return 0;
    }
    const char *b64 = text + plen;
    size_t blen = len - plen;
    if (blen == 0 || blen % 4 != 0) {
        *error_r = mpu_strdup("the secret after \"whsec_\" is not base64");
        return -1;
    }
    uint8_t *key = mpu_malloc(blen / 4 * 3 + 1);
    int n = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)blen);
    if (n < 0) {
        free(key);
        *error_r = mpu_strdup("the secret after \"whsec_\" is not base64");
        return -1;
    }
    /* EVP_DecodeBlock counts the bytes the '=' padding stands for. */
    size_t out = (size_t)n;
    if (b64[blen - 1] == '=')
        out--;
    if (b64[blen - 2] == '=')
        out--;
    if (out == 0) {
        free(key);
        *error_r = mpu_strdup("the secret is empty");
        return -1;
    }
    *key_r = key;
    *key_len_r = out;
    return 0;
}

size_t mpc_webhooks_read_secrets(mp_settings *s, mpc_errors *errs)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_webhooks; i++) {
        mp_webhook_conf *w = &s->webhooks[i];
        char *data = NULL, *error = NULL;
        size_t len = 0;
        if (w->key != NULL)
            continue;
        int read_err = 0;
        if (mpu_read_file(w->secret_file, MAX_SECRET_FILE, 1, &data, &len, &error) < 0)
            read_err = errno == 0 ? -1 : errno;
        if (read_err != 0 || mpc_webhook_key(data, len, &w->key, &w->key_len, &error) < 0) {
            mpc_error_add(errs, NULL, 0, "%s: webhook \"%s\": %s", w->where, w->name, error);
            mpc_error_cause(errs, read_err);
            n++;
        }
        mpu_secret_free(&data);
        free(error);
    }
    return n;
}

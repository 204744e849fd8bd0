/*
 * The subscription set of an account (graph_push.h): its clientStates and
 * its driver-state record. The record holds the secrets; the host keeps
 * driver state owner-only and never shows it, and nothing here logs it.
 */
#include "graph_push.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define STATE_BYTES 32

char *graph_client_state(void)
{
    unsigned char raw[STATE_BYTES];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return NULL;
    /* EVP_EncodeBlock writes standard base64 with padding: 44 chars + NUL. */
    unsigned char b64[4 * ((STATE_BYTES + 2) / 3) + 1];
    int n = EVP_EncodeBlock(b64, raw, sizeof raw);
    OPENSSL_cleanse(raw, sizeof raw);
    if (n <= 0)
        return NULL;
    /* base64url (RFC 4648 §5): '+' '/' become '-' '_', no padding, so the
     * value needs no escaping in JSON, URLs or logs of shape. */
    while (n > 0 && b64[n - 1] == '=')
        n--;
    char *out = malloc((size_t)n + 1);
    if (out == NULL)
        abort();
    for (int i = 0; i < n; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    out[n] = '\0';
    OPENSSL_cleanse(b64, sizeof b64);
    return out;
}

int graph_client_state_ok(const char *stored, const char *given, size_t given_len)
{
    if (stored == NULL || given == NULL)
        return 0;
    /* The length of our states is public (43); the content is compared in
     * constant time. */
    size_t n = strlen(stored);
    if (n != given_len)
        return 0;
    return CRYPTO_memcmp(stored, given, n) == 0;
}

static char *dup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static void secret_free(char **s)
{
    if (*s != NULL) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void graph_sub_clear(graph_sub *s)
{
    free(s->id);
    free(s->folder_id);
    free(s->folder);
    secret_free(&s->secret);
    memset(s, 0, sizeof *s);
}

void graph_subs_add(graph_push_acct *p, const graph_sub *s)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->subs = realloc(p->subs, p->cap * sizeof *p->subs);
        if (p->subs == NULL)
            abort();
    }
    graph_sub *d = &p->subs[p->n++];
    d->id = dup_or_null(s->id);
    d->folder_id = dup_or_null(s->folder_id);
    d->folder = dup_or_null(s->folder);
    d->secret = dup_or_null(s->secret);
    d->expires_at = s->expires_at;
}

void graph_subs_remove(graph_push_acct *p, size_t i)
{
    if (i >= p->n)
        return;
    graph_sub_clear(&p->subs[i]);
    p->subs[i] = p->subs[--p->n];
}

static void strv_free(char ***v, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*v)[i]);
    free(*v);
    *v = NULL;
    *n = 0;
}

void graph_subs_free(graph_push_acct *p)
{
    for (size_t i = 0; i < p->n; i++)
        graph_sub_clear(&p->subs[i]);
    free(p->subs);
    p->subs = NULL;
    p->n = p->cap = 0;
    strv_free(&p->reauth, &p->n_reauth);
    strv_free(&p->recreate, &p->n_recreate);
    strv_free(&p->allowed, &p->n_allowed);
}

char *graph_subs_dump(const graph_push_acct *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < p->n; i++) {
        const graph_sub *s = &p->subs[i];
        json_t *o = json_pack("{s:s, s:s, s:I}", "id", s->id, "secret", s->secret,
                              "expires_at", (json_int_t)s->expires_at);
        if (o == NULL)
            continue;
        if (s->folder_id != NULL) {
            json_object_set_new(o, "folder_id", json_string(s->folder_id));
            json_object_set_new(o, "folder", json_string(s->folder));
        }
        json_array_append_new(arr, o);
    }
    json_t *root = json_pack("{s:i, s:o}", "v", 1, "subs", arr);
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL)
        abort();
    return text;
}

int graph_subs_parse(const char *text, graph_push_acct *p)
{
    json_t *root = json_loads(text, 0, NULL);
    json_t *arr = json_object_get(root, "subs");
    if (!json_is_array(arr)) {
        json_decref(root);
        return -1;
    }
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        graph_sub s = {
            .id = (char *)json_string_value(json_object_get(o, "id")),
            .secret = (char *)json_string_value(json_object_get(o, "secret")),
            .folder_id = (char *)json_string_value(json_object_get(o, "folder_id")),
            .folder = (char *)json_string_value(json_object_get(o, "folder")),
            .expires_at = json_integer_value(json_object_get(o, "expires_at")),
        };
        if (s.id == NULL || s.secret == NULL ||
            (s.folder_id == NULL) != (s.folder == NULL))
            continue;
        graph_subs_add(p, &s);
    }
    json_decref(root);
    return 0;
}

/* Accessors for parsed tokens. */
#include <string.h>
#include <strings.h>

#include "imapc.h"

int imap_token_u64(const imap_token *t, uint64_t *value_r)
{
    if (t == NULL || t->type != IMAP_T_ATOM || t->len == 0 || t->len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < t->len; i++) {
        char c = t->str[i];
        if (c < '0' || c > '9')
            return -1;
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *value_r = v;
    return 0;
}

int imap_token_is(const imap_token *t, const char *atom)
{
    return t != NULL && t->type == IMAP_T_ATOM && strcasecmp(t->str, atom) == 0;
}

/* "BODY[]" matches "BODY[]" and "BODY[]<0>"; a name with its own origin
 * must match exactly. */
static int section_matches(const imap_token *t, const char *name)
{
    size_t n = strlen(name);
    if (t->len < n || strncasecmp(t->str, name, n) != 0)
        return 0;
    return t->len == n || (t->str[n] == '<' && strchr(name, '<') == NULL);
}

const imap_token *imap_fetch_item(const imap_response *r, const char *name)
{
    if (r == NULL || name == NULL || r->n_args == 0 || r->args[0].type != IMAP_T_LIST)
        return NULL;
    const imap_token *l = &r->args[0];
    for (size_t i = 0; i + 1 < l->n_items; i += 2) {
        const imap_token *k = &l->items[i];
        if (k->type == IMAP_T_ATOM && strcasecmp(k->str, name) == 0)
            return &l->items[i + 1];
        if (k->type == IMAP_T_SECTION && section_matches(k, name))
            return &l->items[i + 1];
    }
    return NULL;
}

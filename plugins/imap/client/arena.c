/* Bump allocator for parsed responses: one reset per response instead of a
 * free per token. Sized to need: the first chunk after a release is small
 * (most responses on a push connection are a line or two), the next ones
 * regular; the connection releases everything while it waits for data
 * (io.c), so an idle connection holds no chunk at all. */
#include <stdlib.h>
#include <string.h>

#include "imapc.h"

#define ARENA_FIRST ((size_t)2 * 1024)
#define ARENA_CHUNK ((size_t)16 * 1024)

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    size_t used;
    max_align_t data[];
} arena_chunk;

struct imap_arena {
    arena_chunk *chunks; /* newest first */
    size_t bytes;        /* chunk payload bytes held, for the budget */
};

size_t imapc_arena_size(const imap_arena *a)
{
    return a != NULL ? a->bytes : 0;
}

imap_arena *imap_arena_new(void)
{
    return imapc_calloc(1, sizeof(imap_arena));
}

void imap_arena_reset(imap_arena *a)
{
    if (a == NULL)
        return;
    /* Keep the first (newest) chunk unless it is an oversized one, so
     * steady traffic does not allocate at all. */
    arena_chunk *keep = NULL;
    arena_chunk *ch = a->chunks;
    while (ch != NULL) {
        arena_chunk *next = ch->next;
        if (keep == NULL && ch->size <= ARENA_CHUNK) {
            keep = ch;
            keep->used = 0;
            keep->next = NULL;
        } else {
            free(ch);
        }
        ch = next;
    }
    a->chunks = keep;
    a->bytes = keep != NULL ? keep->size : 0;
}

void imapc_arena_release(imap_arena *a)
{
    if (a == NULL)
        return;
    arena_chunk *ch = a->chunks;
    while (ch != NULL) {
        arena_chunk *next = ch->next;
        free(ch);
        ch = next;
    }
    a->chunks = NULL;
    a->bytes = 0;
}

void imap_arena_free(imap_arena **a)
{
    if (a == NULL || *a == NULL)
        return;
    arena_chunk *ch = (*a)->chunks;
    while (ch != NULL) {
        arena_chunk *next = ch->next;
        free(ch);
        ch = next;
    }
    free(*a);
    *a = NULL;
}

void *imapc_arena_alloc(imap_arena *a, size_t size)
{
    size_t align = sizeof(max_align_t);
    size = (size + align - 1) / align * align;
    if (size == 0)
        size = align;
    arena_chunk *ch = a->chunks;
    if (ch == NULL || ch->size - ch->used < size) {
        size_t regular = ch == NULL ? ARENA_FIRST : ARENA_CHUNK;
        size_t csize = size > regular ? size : regular;
        arena_chunk *n = imapc_malloc(sizeof(arena_chunk) + csize);
        n->size = csize;
        n->used = 0;
        a->bytes += csize;
        if (ch != NULL && csize > regular) {
            /* Oversized chunk goes behind the current one so the current
             * chunk's free space stays usable. */
            n->next = ch->next;
            ch->next = n;
            n->used = size;
            return n->data;
        }
        n->next = ch;
        a->chunks = n;
        ch = n;
    }
    void *p = (char *)ch->data + ch->used;
    ch->used += size;
    return p;
}

char *imapc_arena_strndup(imap_arena *a, const char *s, size_t n)
{
    char *p = imapc_arena_alloc(a, n + 1);
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

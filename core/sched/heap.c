/* Due-time min-heap; see heap.h. */
#include "sched/heap.h"

#include "util/util.h"

static int node_less(const mpj_heap_node *a, const mpj_heap_node *b)
{
    if (a->due_ms != b->due_ms)
        return a->due_ms < b->due_ms;
    return a->seq < b->seq;
}

static void place(mpj_heap *h, size_t i, mpj_heap_node *node)
{
    h->nodes[i] = node;
    node->index = i;
}

static void sift_up(mpj_heap *h, size_t i)
{
    mpj_heap_node *node = h->nodes[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!node_less(node, h->nodes[parent]))
            break;
        place(h, i, h->nodes[parent]);
        i = parent;
    }
    place(h, i, node);
}

static void sift_down(mpj_heap *h, size_t i)
{
    mpj_heap_node *node = h->nodes[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && node_less(h->nodes[child + 1], h->nodes[child]))
            child++;
        if (!node_less(h->nodes[child], node))
            break;
        place(h, i, h->nodes[child]);
        i = child;
    }
    place(h, i, node);
}

/* After a node changed its key (or a new one was put at i), only one of
 * the two directions can move it. */
static void restore(mpj_heap *h, size_t i)
{
    if (i > 0 && node_less(h->nodes[i], h->nodes[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

void mpj_heap_init(mpj_heap *h)
{
    h->nodes = NULL;
    h->len = h->cap = 0;
    h->next_seq = 0;
}

void mpj_heap_clear(mpj_heap *h)
{
    mpu_freep(&h->nodes);
    h->len = h->cap = 0;
}

void mpj_heap_node_init(mpj_heap_node *node)
{
    node->due_ms = 0;
    node->seq = 0;
    node->index = MPJ_HEAP_NONE;
}

int mpj_heap_contains(const mpj_heap_node *node)
{
    return node->index != MPJ_HEAP_NONE;
}

void mpj_heap_set(mpj_heap *h, mpj_heap_node *node, int64_t due_ms)
{
    node->due_ms = due_ms;
    node->seq = h->next_seq++;
    if (mpj_heap_contains(node)) {
        restore(h, node->index);
        return;
    }
    if (h->len == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->nodes = mpu_realloc(h->nodes, h->cap * sizeof *h->nodes);
    }
    place(h, h->len++, node);
    sift_up(h, node->index);
}

void mpj_heap_remove(mpj_heap *h, mpj_heap_node *node)
{
    if (!mpj_heap_contains(node))
        return;
    size_t i = node->index;
    node->index = MPJ_HEAP_NONE;
    h->len--;
    if (i == h->len)
        return;
    place(h, i, h->nodes[h->len]);
    restore(h, i);
}

mpj_heap_node *mpj_heap_peek(const mpj_heap *h)
{
    return h->len ? h->nodes[0] : NULL;
}

mpj_heap_node *mpj_heap_pop(mpj_heap *h)
{
    mpj_heap_node *top = mpj_heap_peek(h);
    if (top)
        mpj_heap_remove(h, top);
    return top;
}

size_t mpj_heap_size(const mpj_heap *h)
{
    return h->len;
}

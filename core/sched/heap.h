/*
 * Binary min-heap of due times with index tracking, so a node can be
 * re-keyed or removed in O(log n) without a search. Nodes are embedded in
 * the caller's structures; the heap only stores pointers and never owns
 * them. Equal due times come out in insertion (or last re-key) order.
 * Not thread-safe: the scheduler uses it on the loop thread only.
 */
#ifndef MP_SCHED_HEAP_H
#define MP_SCHED_HEAP_H

#include <stddef.h>
#include <stdint.h>

#define MPJ_HEAP_NONE ((size_t)-1)

typedef struct mpj_heap_node {
    int64_t due_ms;
    uint64_t seq;
    size_t index; /* position in the heap, MPJ_HEAP_NONE when outside */
} mpj_heap_node;

typedef struct mpj_heap {
    mpj_heap_node **nodes;
    size_t len, cap;
    uint64_t next_seq;
} mpj_heap;

void mpj_heap_init(mpj_heap *h);
/* Frees the array; the nodes are left alone (their index is not reset). */
void mpj_heap_clear(mpj_heap *h);

void mpj_heap_node_init(mpj_heap_node *node);
int mpj_heap_contains(const mpj_heap_node *node);

/* Insert the node with this due time, or move it there when already in. */
void mpj_heap_set(mpj_heap *h, mpj_heap_node *node, int64_t due_ms);
/* No-op when the node is not in the heap. */
void mpj_heap_remove(mpj_heap *h, mpj_heap_node *node);
/* The earliest node, or NULL when empty. */
mpj_heap_node *mpj_heap_peek(const mpj_heap *h);
mpj_heap_node *mpj_heap_pop(mpj_heap *h);
size_t mpj_heap_size(const mpj_heap *h);

#endif

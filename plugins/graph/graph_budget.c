/* The per-mailbox request budget (see graph_budget.h). */
#include "graph_budget.h"

#include <string.h>

void graph_budget_init(graph_budget *b, uint32_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit != 0 ? limit : GRAPH_BUDGET_REQUESTS;
}

/* A bucket counts until its last instant plus the window and the grace. */
static int64_t free_at(const graph_budget *b, size_t i)
{
    return b->start[i] + GRAPH_BUDGET_BUCKET_MS + GRAPH_BUDGET_WINDOW_MS + GRAPH_BUDGET_GRACE_MS;
}

uint32_t graph_budget_used(const graph_budget *b, int64_t now)
{
    uint32_t used = 0;
    for (size_t i = 0; i < GRAPH_BUDGET_BUCKETS; i++)
        if (b->start[i] != 0 && free_at(b, i) > now)
            used += b->count[i];
    return used;
}

int64_t graph_budget_take(graph_budget *b, int64_t now, uint32_t n)
{
    if (now < b->closed_until)
        return b->closed_until - now;
    for (size_t i = 0; i < GRAPH_BUDGET_BUCKETS; i++)
        if (b->start[i] != 0 && free_at(b, i) <= now) {
            b->start[i] = 0;
            b->count[i] = 0;
        }
    uint32_t used = graph_budget_used(b, now);
    if (used > 0 && used + n > b->limit) {
        /* Free buckets oldest first until the request fits. */
        int64_t at = now;
        uint32_t left = used;
        for (;;) {
            size_t oldest = GRAPH_BUDGET_BUCKETS;
            for (size_t i = 0; i < GRAPH_BUDGET_BUCKETS; i++)
                if (b->start[i] != 0 && free_at(b, i) > at &&
                    (oldest == GRAPH_BUDGET_BUCKETS || b->start[i] < b->start[oldest]))
                    oldest = i;
            if (oldest == GRAPH_BUDGET_BUCKETS)
                break;
            at = free_at(b, oldest);
            left -= b->count[oldest];
            if (left == 0 || left + n <= b->limit)
                break;
        }
        return at > now ? at - now : 1;
    }
    int64_t start = now - now % GRAPH_BUDGET_BUCKET_MS;
    if (start == 0)
        start = GRAPH_BUDGET_BUCKET_MS; /* 0 marks an empty bucket */
    size_t slot = (size_t)((start / GRAPH_BUDGET_BUCKET_MS) % GRAPH_BUDGET_BUCKETS);
    if (b->start[slot] != start) {
        b->start[slot] = start;
        b->count[slot] = 0;
    }
    b->count[slot] += n;
    return 0;
}

void graph_budget_close(graph_budget *b, int64_t until)
{
    if (until > b->closed_until)
        b->closed_until = until;
}

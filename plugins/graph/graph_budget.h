/*
 * graph_budget: the per-mailbox request budget, so the driver stays under
 * Outlook's limit by itself instead of learning it from 429s.
 *
 * Outlook allows 10,000 requests per app and mailbox in 10 minutes
 * (providers.md §3 "Throttling"; each part of a JSON $batch counts). The
 * budget keeps the requests admitted in the last window in one-second
 * buckets; a request is admitted when it fits, else the caller is told how
 * long until it does. A Retry-After (429/503) closes the budget until then
 * for every caller of the mailbox (sync and a reader's fetch alike).
 *
 * Pure and single-threaded: the caller serializes access (graph_http.c
 * holds the account's lock). Times are ms since the epoch.
 */
#ifndef GRAPH_BUDGET_H
#define GRAPH_BUDGET_H

#include <stdint.h>

#define GRAPH_BUDGET_REQUESTS 10000u
#define GRAPH_BUDGET_WINDOW_MS 600000
#define GRAPH_BUDGET_BUCKET_MS 1000
/* Graph counts a request when it arrives, a little after we admit it. */
#define GRAPH_BUDGET_GRACE_MS 1000
#define GRAPH_BUDGET_BUCKETS                                                   \
    ((GRAPH_BUDGET_WINDOW_MS + GRAPH_BUDGET_GRACE_MS) / GRAPH_BUDGET_BUCKET_MS + 2)

typedef struct graph_budget {
    uint32_t limit;
    int64_t start[GRAPH_BUDGET_BUCKETS]; /* bucket start, 0 = empty        */
    uint32_t count[GRAPH_BUDGET_BUCKETS];
    int64_t closed_until;                /* Retry-After from Graph         */
} graph_budget;

/* An empty budget of `limit` requests per window (0: the default). */
void graph_budget_init(graph_budget *b, uint32_t limit);
/* Admit `n` requests at `now`: 0 (charged), or the ms until they fit
 * (nothing charged). More than the whole limit fits an empty window only. */
int64_t graph_budget_take(graph_budget *b, int64_t now, uint32_t n);
/* Requests charged in the window ending at `now`. */
uint32_t graph_budget_used(const graph_budget *b, int64_t now);
/* Graph said wait: nothing is admitted before `until`. */
void graph_budget_close(graph_budget *b, int64_t until);

#endif /* GRAPH_BUDGET_H */

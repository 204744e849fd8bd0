/* The per-user quota budget (see gmail_quota.h). */
#include "gmail_quota.h"

#include <string.h>

void gmail_quota_init(gmail_quota *q, uint32_t limit)
{
    memset(q, 0, sizeof *q);
    q->limit = limit != 0 ? limit : GMAIL_QUOTA_PER_MINUTE;
}

/* A bucket still counts until its last instant plus the window and grace. */
static int64_t bucket_free_at(const gmail_quota *q, size_t i)
{
    return q->start[i] + GMAIL_QUOTA_BUCKET_MS + GMAIL_QUOTA_WINDOW_MS + GMAIL_QUOTA_GRACE_MS;
}

static void expire(gmail_quota *q, int64_t now)
{
    for (size_t i = 0; i < GMAIL_QUOTA_BUCKETS; i++)
        if (q->start[i] != 0 && bucket_free_at(q, i) <= now) {
            q->start[i] = 0;
            q->units[i] = 0;
        }
}

uint32_t gmail_quota_used(const gmail_quota *q, int64_t now)
{
    uint32_t used = 0;
    for (size_t i = 0; i < GMAIL_QUOTA_BUCKETS; i++)
        if (q->start[i] != 0 && bucket_free_at(q, i) > now)
            used += q->units[i];
    return used;
}

int64_t gmail_quota_take(gmail_quota *q, int64_t now, uint32_t units)
{
    if (now < q->closed_until)
        return q->closed_until - now;
    expire(q, now);
    uint32_t used = gmail_quota_used(q, now);
    if (used + units > q->limit && used > 0) {
        /* Free buckets oldest first until the call fits. */
        int64_t at = now;
        uint32_t left = used;
        for (;;) {
            size_t oldest = GMAIL_QUOTA_BUCKETS;
            for (size_t i = 0; i < GMAIL_QUOTA_BUCKETS; i++)
                if (q->start[i] != 0 && bucket_free_at(q, i) > at &&
                    (oldest == GMAIL_QUOTA_BUCKETS || q->start[i] < q->start[oldest]))
                    oldest = i;
            if (oldest == GMAIL_QUOTA_BUCKETS)
                break;
            at = bucket_free_at(q, oldest);
            left -= q->units[oldest];
            if (left + units <= q->limit || left == 0)
                break;
        }
        return at > now ? at - now : 1;
    }
    int64_t start = now - now % GMAIL_QUOTA_BUCKET_MS;
    if (start == 0)
        start = GMAIL_QUOTA_BUCKET_MS; /* 0 marks an empty bucket */
    size_t slot = (size_t)((start / GMAIL_QUOTA_BUCKET_MS) % GMAIL_QUOTA_BUCKETS);
    if (q->start[slot] != start) {
        /* The slot's previous bucket is older than the window by now. */
        q->start[slot] = start;
        q->units[slot] = 0;
    }
    q->units[slot] += units;
    return 0;
}

void gmail_quota_close(gmail_quota *q, int64_t until)
{
    if (until > q->closed_until)
        q->closed_until = until;
}

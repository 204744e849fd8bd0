/* Store-wide counters for /metrics. */
#include "store/store-private.h"

#include <string.h>

#include "util/util.h"

int mps_stats_get(mps_store *s, mps_stats *stats_r, char **error_r)
{
    memset(stats_r, 0, sizeof *stats_r);
    mps__stmt *st;
    /* One statement reads one snapshot, so the numbers agree. */
    if (mps__prepare(s,
                     "SELECT (SELECT COUNT(*) FROM accounts),"
                     " (SELECT COUNT(*) FROM folders),"
                     " (SELECT COUNT(*) FROM messages WHERE deleted = 0),"
                     " (SELECT COUNT(*) FROM bodies"
                     "   WHERE expires_ms = 0 OR expires_ms > :now),"
                     " (SELECT COALESCE(SUM(size), 0) FROM bodies INDEXED BY bodies_meta"
                     "   WHERE expires_ms = 0 OR expires_ms > :now),"
                     " (SELECT COUNT(*) FROM events),"
                     " (SELECT COALESCE(MAX(seq), 0) FROM events),"
                     " (SELECT COALESCE((SELECT time_ms FROM events ORDER BY seq"
                     "   LIMIT 1), 0))",
                     &st, error_r) < 0)
        return -1;
    mps__bind_int(st, ":now", mpu_now_ms());
    int rc = mps__step(st);
    if (rc != MPS__ROW) {
        mps__fail(s, error_r, "store: read statistics");
        mps__finish(s, st);
        return -1;
    }
    stats_r->accounts = mps__col_int64(st, 0);
    stats_r->folders = mps__col_int64(st, 1);
    stats_r->messages = mps__col_int64(st, 2);
    stats_r->bodies = mps__col_int64(st, 3);
    stats_r->body_bytes = mps__col_int64(st, 4);
    stats_r->events = mps__col_int64(st, 5);
    stats_r->last_seq = mps__col_int64(st, 6);
    stats_r->events_oldest_ms = mps__col_int64(st, 7);
    mps__finish(s, st);
    return 0;
}

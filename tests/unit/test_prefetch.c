/* The warm queue of the body-cache warmer: deduplication, priority
 * upgrade, the bound and what it drops, and the order a run takes entries
 * in (priority, FIFO, per-account throttle, round-robin). Also the
 * store's new-mail callback that feeds it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/prefetch.h"
#include "store/store.h"
#include "util/util.h"

#define BIG 1000

static void push_ok(mpd_pfq *q, const char *acct, const char *id, mpd_pf_prio prio,
                    size_t max, int expect)
{
    assert_int_equal(mpd_pfq_push(q, acct, id, prio, max, 1), expect);
}

/* Takes and returns "acct:id acct:id ..." for compact assertions. */
static char *take_str(mpd_pfq *q, size_t per_account)
{
    mpd_pf_item *items = NULL;
    size_t n = mpd_pfq_take(q, per_account, &items);
    char *out = mpu_strdup("");
    for (size_t i = 0; i < n; i++) {
        char *next = mpu_asprintf("%s%s%s:%s", out, i ? " " : "", items[i].account,
                                  items[i].id);
        free(out);
        out = next;
    }
    free(items);
    return out;
}

static void assert_take(mpd_pfq *q, size_t per_account, const char *expect)
{
    char *got = take_str(q, per_account);
    assert_string_equal(got, expect);
    free(got);
}

static void test_fifo_and_priority(void **state)
{
    (void)state;
    mpd_pfq *q = mpd_pfq_new();
    push_ok(q, "a", "n1", MPD_PF_NORMAL, BIG, 1);
    push_ok(q, "a", "n2", MPD_PF_NORMAL, BIG, 1);
    push_ok(q, "a", "h1", MPD_PF_HIGH, BIG, 1);
    push_ok(q, "a", "h2", MPD_PF_HIGH, BIG, 1);
    assert_int_equal(mpd_pfq_len(q), 4);
    /* high first, FIFO within a priority, then normal */
    assert_take(q, 3, "a:h1 a:h2 a:n1");
    assert_int_equal(mpd_pfq_len(q), 1);
    assert_take(q, 3, "a:n2");
    assert_take(q, 3, "");
    assert_int_equal(mpd_pfq_len(q), 0);
    mpd_pfq_free(&q);
    assert_null(q);
    mpd_pfq_free(&q);
    mpd_pfq_free(NULL);
}

static void test_dedup_and_upgrade(void **state)
{
    (void)state;
    mpd_pfq *q = mpd_pfq_new();
    push_ok(q, "a", "x", MPD_PF_NORMAL, BIG, 1);
    push_ok(q, "a", "y", MPD_PF_NORMAL, BIG, 1);
    push_ok(q, "a", "x", MPD_PF_NORMAL, BIG, 0);
    push_ok(q, "a", "h", MPD_PF_HIGH, BIG, 1);
    /* normal -> high upgrades and goes behind the high entries */
    push_ok(q, "a", "y", MPD_PF_HIGH, BIG, 2);
    /* high stays high */
    push_ok(q, "a", "y", MPD_PF_NORMAL, BIG, 0);
    push_ok(q, "a", "h", MPD_PF_HIGH, BIG, 0);
    assert_int_equal(mpd_pfq_len(q), 3);
    assert_take(q, 10, "a:h a:y a:x");
    /* once taken, an id may be queued again */
    push_ok(q, "a", "x", MPD_PF_NORMAL, BIG, 1);
    assert_take(q, 10, "a:x");
    mpd_pfq_free(&q);
}

static void test_invalid(void **state)
{
    (void)state;
    mpd_pfq *q = mpd_pfq_new();
    char long_acct[80];
    memset(long_acct, 'a', sizeof long_acct - 1);
    long_acct[sizeof long_acct - 1] = '\0';
    push_ok(q, long_acct, "x", MPD_PF_HIGH, BIG, -1);
    push_ok(q, "a", "m0123456789abcdef01234567X", MPD_PF_HIGH, BIG, -1);
    push_ok(q, "a", "", MPD_PF_HIGH, BIG, -1);
    push_ok(q, "a", "x", MPD_PF_HIGH, 0, -1);
    push_ok(q, "a", "m0123456789abcdef01234567", MPD_PF_HIGH, BIG, 1);
    assert_int_equal(mpd_pfq_len(q), 1);
    mpd_pfq_free(&q);
}

static void test_bound_drops_oldest_normal_first(void **state)
{
    (void)state;
    mpd_pfq *q = mpd_pfq_new();
    push_ok(q, "a", "h1", MPD_PF_HIGH, 3, 1);
    push_ok(q, "b", "n1", MPD_PF_NORMAL, 3, 1);
    push_ok(q, "a", "n2", MPD_PF_NORMAL, 3, 1);
    push_ok(q, "a", "h2", MPD_PF_HIGH, 3, 1); /* drops b:n1, the oldest normal */
    assert_int_equal(mpd_pfq_len(q), 3);
    assert_int_equal(mpd_pfq_dropped(q), 1);
    push_ok(q, "b", "h3", MPD_PF_HIGH, 3, 1); /* drops a:n2 */
    push_ok(q, "b", "h4", MPD_PF_HIGH, 3, 1); /* no normal left: drops a:h1 */
    assert_int_equal(mpd_pfq_dropped(q), 3);
    assert_int_equal(mpd_pfq_len(q), 3);
    /* a new normal entry over the bound drops itself, the oldest normal */
    push_ok(q, "a", "n5", MPD_PF_NORMAL, 3, 1);
    assert_int_equal(mpd_pfq_dropped(q), 4);
    char *got = take_str(q, 10);
    /* whichever account goes first, exactly these three remain */
    assert_true(strcmp(got, "a:h2 b:h3 b:h4") == 0 || strcmp(got, "b:h3 a:h2 b:h4") == 0);
    free(got);
    mpd_pfq_free(&q);
}

static void test_throttle_and_round_robin(void **state)
{
    (void)state;
    mpd_pfq *q = mpd_pfq_new();
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "a%d", i);
        push_ok(q, "big", id, MPD_PF_HIGH, BIG, 1);
    }
    push_ok(q, "small", "s0", MPD_PF_NORMAL, BIG, 1);
    push_ok(q, "small", "s1", MPD_PF_NORMAL, BIG, 1);
    push_ok(q, "other", "o0", MPD_PF_HIGH, BIG, 1);
    /* at most 3 per account, interleaved: the big account never starves
     * the others, and the first account served rotates */
    assert_take(q, 3, "big:a0 small:s0 other:o0 big:a1 small:s1 big:a2");
    assert_int_equal(mpd_pfq_len(q), 7);
    push_ok(q, "small", "s2", MPD_PF_NORMAL, BIG, 1);
    assert_take(q, 3, "small:s2 big:a3 big:a4 big:a5");
    assert_take(q, 3, "big:a6 big:a7 big:a8");
    assert_take(q, 3, "big:a9");
    assert_take(q, 0, "");
    mpd_pfq_free(&q);
}

static void test_many_entries(void **state)
{
    (void)state;
    mpd_pfq *q = mpd_pfq_new();
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "m%d", i);
        push_ok(q, i % 2 ? "a" : "b", id, MPD_PF_NORMAL, 4000, 1);
    }
    assert_int_equal(mpd_pfq_len(q), 4000);
    assert_int_equal(mpd_pfq_dropped(q), 1000);
    /* the oldest were dropped; every survivor is still found by id */
    for (int i = 1000; i < 5000; i++) {
        snprintf(id, sizeof id, "m%d", i);
        push_ok(q, i % 2 ? "a" : "b", id, MPD_PF_NORMAL, 4000, 0);
    }
    snprintf(id, sizeof id, "m%d", 10);
    push_ok(q, "b", id, MPD_PF_HIGH, 4000, 1); /* was dropped: queued anew */
    mpd_pf_item *items = NULL;
    assert_int_equal(mpd_pfq_take(q, 1, &items), 2);
    assert_string_equal(items[0].id, "m10");
    free(items);
    mpd_pfq_free(&q);
}

/* ---- the store's new-mail callback ---- */

typedef struct seen {
    char ids[8][32];
    char accounts[8][32];
    size_t n;
} seen;

static void on_new(const char *account, const char *id, void *arg)
{
    seen *s = arg;
    if (s->n < 8) {
        mpu_strlcpy(s->ids[s->n], id, sizeof s->ids[0]);
        mpu_strlcpy(s->accounts[s->n], account, sizeof s->accounts[0]);
        s->n++;
    }
}

static mp_change change(mp_change_kind kind, const char *id)
{
    mp_change c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.id = id;
    c.subject = "s";
    c.date = 1800000000;
    return c;
}

static void test_store_new_callback(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_prefetch_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = mpu_asprintf("%s/db", dir);
    mps_store *s = NULL;
    char *error = NULL;
    assert_int_equal(mps_open(path, &s, &error), 0);
    assert_int_equal(mps_account_ensure(s, "alice", "fix", &error), 0);

    seen got;
    memset(&got, 0, sizeof got);
    mps_batch *b = mps_batch_new("alice", "INBOX");
    mps_batch_on_new(b, on_new, &got);
    mp_change c1 = change(MP_CHANGE_NEW, "p1");
    mp_change c2 = change(MP_CHANGE_SYNCED, "p2");  /* history: not new mail */
    mp_change c3 = change(MP_CHANGE_NEW, "p3");
    c3.raw = (const uint8_t *)"raw";                /* body came with it */
    c3.raw_len = 3;
    mp_change c4 = change(MP_CHANGE_NEW, "p4");
    mps_batch_add(b, &c1);
    mps_batch_add(b, &c2);
    mps_batch_add(b, &c3);
    mps_batch_add(b, &c4);
    mps_commit_result res;
    int rc = mps_batch_commit(s, b, "c1", NULL, -1, 0, &res, &error);
    if (rc != 0)
        print_error("commit: %s\n", error);
    assert_int_equal(rc, 0);
    assert_int_equal(got.n, 2);
    char id[26];
    mps_message_public_id("alice", "p1", id, sizeof id);
    assert_string_equal(got.ids[0], id);
    assert_string_equal(got.accounts[0], "alice");
    mps_message_public_id("alice", "p4", id, sizeof id);
    assert_string_equal(got.ids[1], id);

    /* a replayed NEW of a stored message is not new again; the callback
     * stays set across commits */
    mps_batch_add(b, &c1);
    mp_change c5 = change(MP_CHANGE_NEW, "p5");
    mps_batch_add(b, &c5);
    assert_int_equal(mps_batch_commit(s, b, "c2", NULL, -1, 0, &res, &error), 0);
    assert_int_equal(got.n, 3);
    mps_message_public_id("alice", "p5", id, sizeof id);
    assert_string_equal(got.ids[2], id);

    /* without a callback nothing is reported */
    mps_batch_on_new(b, NULL, NULL);
    mp_change c6 = change(MP_CHANGE_NEW, "p6");
    mps_batch_add(b, &c6);
    assert_int_equal(mps_batch_commit(s, b, "c3", NULL, -1, 0, &res, &error), 0);
    assert_int_equal(got.n, 3);

    mps_batch_free(&b);
    mps_close(&s);
    char *cmd = mpu_asprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_priority),
        cmocka_unit_test(test_dedup_and_upgrade),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_bound_drops_oldest_normal_first),
        cmocka_unit_test(test_throttle_and_round_robin),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_store_new_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

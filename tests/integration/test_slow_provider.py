"""One slow provider must not stall every account (issue 8, finding 3).

Two workers; account "slow" answers every body fetch after 40 s (the
fixture's fetch_delay_ms). Several uncached GET /raw for it at once used to
take both workers (one fetching, one waiting on the account's fetch lock),
and a sync of account "fast" started some 40-80 s late. Now the fetches of
an account wait in its own queue without a worker, one at a time, within
cache.fetch_queue_max (503 beyond) and cache.fetch_timeout (504), and the
scheduler keeps a worker for syncs: the other account's sync starts within a
few seconds."""

import json
import threading
import time
import unittest

import mptest

SLOW, FAST = "slow", "fast"
FETCH_DELAY_MS = 40000


class SlowProvider(unittest.TestCase):
    def test_slow_fetches_leave_a_worker_for_other_syncs(self):
        d = mptest.Daemon(name="slow-provider", workers=2,
                          settings={"cache": {"fetch_queue_max": 2, "fetch_timeout": 6,
                                              "prefetch_per_run": 0}})
        d.add_instance("fix", [
            {"id": SLOW, "generate": 8, "poll_interval": 3600,
             "fetch_delay_ms": FETCH_DELAY_MS},
            {"id": FAST, "generate": 3, "poll_interval": 3600},
        ])
        d.start()
        d.wait_bootstrapped(SLOW, ["INBOX", "Archive"])
        d.wait_bootstrapped(FAST, ["INBOX", "Archive"])
        mptest.wait_until(lambda: not d.account(FAST)["sync"]["running"], 30,
                          message="first syncs done")

        ids = sorted(d.mailbox(SLOW).state())[:6]
        results = {}

        def fetch(i, pid):
            started = time.monotonic()
            status, _, body = d.request("GET", "/v1/messages/%s/raw"
                                        % mptest.public_id(SLOW, pid), timeout=120)
            results[i] = (status, body, time.monotonic() - started)

        # Five different messages and one of them twice.
        wanted = ids[:5] + [ids[0]]
        threads = [threading.Thread(target=fetch, args=(i, pid))
                   for i, pid in enumerate(wanted)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        time.sleep(1.0)

        before = d.account(FAST)["sync"]["runs"]
        asked = time.monotonic()
        d.sync(FAST)
        d.wait_sync_runs(FAST, before, timeout=60)
        waited = time.monotonic() - asked
        print("fast account's sync finished %.2f s after it was asked for" % waited)
        self.assertLess(waited, 5.0, "a sync waited behind the slow provider's fetches")

        for t in threads:
            t.join(60)
        self.assertEqual(len(results), 6, results)
        statuses = sorted(r[0] for r in results.values())
        # One fetch runs (the first message, asked twice: both wait on it),
        # two more wait in the queue, two are refused at once.
        self.assertEqual(statuses, [503, 503, 504, 504, 504, 504], results)
        for status, body, took in results.values():
            error = json.loads(body)["error"]
            if status == 503:
                self.assertIn("cache.fetch_queue_max", error)
                self.assertLess(took, 3.0)
            else:
                self.assertIn("did not deliver", error)
                self.assertTrue(5.0 < took < 15.0, took)

        # The fetch that ran goes on and caches its body: a later request
        # is a hit. The queued ones nobody waits for were dropped.
        mptest.wait_until(lambda: d.get("/v1/messages/"
                                        + mptest.public_id(SLOW, ids[0]))["cached"],
                          FETCH_DELAY_MS / 1000 + 30, message="first body cached")
        status, _, body = d.request("GET", "/v1/messages/%s/raw"
                                    % mptest.public_id(SLOW, ids[0]))
        self.assertEqual(status, 200)
        self.assertIn(("Fixture message %s." % ids[0]).encode(), body)
        for pid in ids[1:5]:
            self.assertFalse(d.get("/v1/messages/" + mptest.public_id(SLOW, pid))["cached"])
        # Nothing runs any more: a clean stop (leak checks see every path).
        self.assertEqual(d.stop(), 0)

    def test_slow_warming_leaves_other_accounts_alone(self):
        # Three workers: warming may hold two, one account one.
        d = mptest.Daemon(name="slow-warming", workers=3,
                          settings={"cache": {"prefetch_interval": 3600,
                                              "prefetch_per_run": 20}})
        d.add_instance("fix", [
            {"id": SLOW, "generate": 2, "poll_interval": 3600,
             "fetch_delay_ms": FETCH_DELAY_MS},
            {"id": FAST, "generate": 2, "poll_interval": 3600},
        ])
        d.start()
        d.wait_bootstrapped(SLOW, ["INBOX", "Archive"])
        d.wait_bootstrapped(FAST, ["INBOX", "Archive"])
        base = mptest.OpLog.BASE_DATE + 1000
        fresh = {}
        for acct in (SLOW, FAST):
            items = [("INBOX", "%s-new-%d" % (acct, i), base + i, "New %d" % i, "")
                     for i in range(3)]
            d.mailbox(acct).add_many(items)
            fresh[acct] = [i[1] for i in items]
        d.sync_and_wait(SLOW)
        asked = time.monotonic()
        d.sync_and_wait(FAST)

        def fast_warmed():
            return all(d.get("/v1/messages/" + mptest.public_id(FAST, pid))["cached"]
                       for pid in fresh[FAST])
        mptest.wait_until(fast_warmed, 30, message="the fast account's new mail warmed")
        took = time.monotonic() - asked
        print("fast account's new mail warmed %.2f s after its sync" % took)
        self.assertLess(took, 10.0)
        # The slow account's bodies are still on their way (one at a time).
        self.assertFalse(all(d.get("/v1/messages/" + mptest.public_id(SLOW, pid))["cached"]
                             for pid in fresh[SLOW]))
        d.kill()


if __name__ == "__main__":
    mptest.main()

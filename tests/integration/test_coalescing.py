"""A burst of sync requests and webhook pushes for a slow account is
coalesced into a few runs, and sync calls of one account never overlap."""

import json
import threading
import unittest

import mptest

ACCOUNT = "slow"
SECRET = b"coalescing-secret"
BURST = 50
PUSHES = 10


def check_trace(testcase, path, account):
    """Every start is followed by its end before the next start, in file
    order and in monotonic time. Returns the number of calls per slot."""
    with open(path) as f:
        lines = [l.split() for l in f if l.strip()]
    mine = [l for l in lines if len(l) == 4 and l[1] == account]
    testcase.assertTrue(mine, "trace has calls of %s" % account)
    open_call = None
    last_end = 0
    calls = {}
    for what, _, slot, ns in mine:
        ns = int(ns)
        if what == "start":
            testcase.assertIsNone(open_call, "%s started while %s was running"
                                  % (slot, open_call))
            testcase.assertGreaterEqual(ns, last_end, "start before previous end")
            open_call = (slot, ns)
        else:
            testcase.assertEqual(what, "end")
            testcase.assertIsNotNone(open_call, "end without start")
            testcase.assertEqual(open_call[0], slot)
            testcase.assertGreaterEqual(ns, open_call[1])
            last_end = ns
            open_call = None
            calls[slot] = calls.get(slot, 0) + 1
    testcase.assertIsNone(open_call, "a call never ended")
    return calls


class Coalescing(unittest.TestCase):
    def test_burst(self):
        d = mptest.Daemon(name="coalesce", workers=4, settings={
            "backfill": {"mode": "full", "bootstrap_max": 1500},
        })
        secret_file = d.write_secret("hook.secret", SECRET)
        trace = d.path("data", "trace.log")
        d.add_instance("hooks", [{"id": ACCOUNT, "generate": 20, "batch_delay_ms": 300,
                                  "trace_file": trace, "poll_interval": 3600}],
                       webhook_secret_file=secret_file)
        d.start()
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"], timeout=60)
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="initial sync to finish")
        runs_before = d.account(ACCOUNT)["sync"]["runs"]
        seq0 = d.last_seq()

        d.mailbox(ACCOUNT).add("INBOX", "burst-1", mptest.OpLog.BASE_DATE, "During the burst")
        results = []
        lock = threading.Lock()

        def post_sync():
            try:
                status, _, _ = d.request("POST", "/v1/accounts/%s/sync" % ACCOUNT)
            except OSError as exc:
                status = repr(exc)
            with lock:
                results.append(("sync", status))

        def push():
            body = json.dumps({"account": ACCOUNT, "folder": "INBOX"}).encode()
            try:
                status, _, _ = d.request("POST", "/push/hooks", body=body, auth=False,
                                         headers={"X-Fixture-Signature": mptest.sign(SECRET, body),
                                                  "Content-Type": "application/json"})
            except OSError as exc:
                status = repr(exc)
            with lock:
                results.append(("push", status))

        threads = [threading.Thread(target=post_sync) for _ in range(BURST)]
        threads += [threading.Thread(target=push) for _ in range(PUSHES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(sorted(set(results)), [("push", 202), ("sync", 202)], results)
        self.assertEqual(len(results), BURST + PUSHES)

        mptest.wait_until(
            lambda: d.events(after=seq0, types=["message.new"], accounts=[ACCOUNT]),
            60, message="the burst's message to arrive")

        def settled():
            sync = d.account(ACCOUNT)["sync"]
            return not sync["running"] and not sync.get("rerun") and sync
        sync = mptest.wait_until(settled, 60, message="sync to settle")
        runs = sync["runs"] - runs_before
        print("burst of %d triggers -> %d sync runs" % (BURST + PUSHES, runs))
        self.assertGreaterEqual(runs, 1)
        self.assertLessEqual(runs, 3, "burst of %d triggers caused %d runs"
                             % (BURST + PUSHES, runs))

        new = d.events(after=seq0, types=["message.new"], accounts=[ACCOUNT])
        self.assertEqual([e["json"]["message"] for e in new],
                         [mptest.public_id(ACCOUNT, "burst-1")])
        calls = check_trace(self, trace, ACCOUNT)
        print("traced calls: %r" % calls)
        self.assertGreaterEqual(calls.get("delta", 0), 2, calls)


if __name__ == "__main__":
    mptest.main()

"""SIGKILL the daemon at random moments during a long bootstrap and a long
delta; after restarts the store holds exactly the provider's messages and
the outbox has no gap, no duplicate and one new-or-synced event per message.
Set MP_CRASH_SEED to replay a run."""

import collections
import os
import random
import time
import unittest

import mptest

ACCOUNT = "crash"
GENERATED = 6000
BOOTSTRAP_MAX = 5000
DELTA_ADDS = 3000
DELTA_DELETES = 50
DELTA_FLAGS = 50
KILLS = 3


class CrashConsistency(unittest.TestCase):
    def setUp(self):
        seed = int(os.environ.get("MP_CRASH_SEED", str(int(time.time()))))
        print("MP_CRASH_SEED=%d" % seed)
        self.rng = random.Random(seed)
        self.d = mptest.Daemon(name="crash", workers=2, settings={
            "backfill": {"mode": "progressive", "bootstrap_max": BOOTSTRAP_MAX,
                         "batch_size": 500},
            "schedule": {"backfill_interval": 1},
        })
        self.d.add_instance("fix", [{"id": ACCOUNT, "generate": GENERATED,
                                     "folders_available": ["INBOX"],
                                     "batch_delay_ms": 20, "poll_interval": 3600}])
        self.log = self.d.mailbox(ACCOUNT)

    def stored(self):
        try:
            f = self.d.folder(ACCOUNT, "INBOX")
        except (OSError, mptest.ApiError):
            return 0
        return f["messages"] if f else 0

    def kill_after_progress(self, what, complete):
        """Wait until the store grew past what it held at restart, then
        SIGKILL at a random moment shortly after. Nothing to interrupt
        once complete() says the phase is over."""
        base = self.stored()
        if complete():
            print("no kill during %s: already complete" % what)
            return False
        mptest.wait_until(lambda: self.stored() > base, 60,
                          message="progress (%s) beyond %d messages" % (what, base))
        time.sleep(self.rng.uniform(0.0, 0.6))
        self.d.kill()
        print("killed during %s (had %d stored at restart)" % (what, base))
        return True

    def test_crash_consistency(self):
        d, log = self.d, self.log
        d.start()
        for _ in range(KILLS):
            if self.kill_after_progress("bootstrap", lambda: self.stored() >= GENERATED):
                d.start()

        d.wait_bootstrapped(ACCOUNT, ["INBOX"], timeout=120)
        mptest.wait_until(lambda: d.folder(ACCOUNT, "INBOX")["backfill"]["status"] == "done",
                          120, message="backfill to finish")
        self.assertEqual(d.folder(ACCOUNT, "INBOX")["messages"], GENERATED)

        # A large delta: adds plus some deletes and flag changes of history.
        base = mptest.OpLog.BASE_DATE
        adds = [("INBOX", "delta-%05d" % i, base + i, "Delta %d" % i, "")
                for i in range(DELTA_ADDS)]
        log.add_many(adds)
        for i in range(DELTA_DELETES):
            log.delete("gen-%07d" % (i * 7))
        for i in range(DELTA_FLAGS):
            log.flag("gen-%07d" % (i * 11 + 1), "\\Seen \\Answered")
        last_line = str(len(log.lines()))

        def delta_done():
            return (self.stored() >= GENERATED + DELTA_ADDS or
                    d.folder(ACCOUNT, "INBOX")["cursor"] == last_line)
        d.sync(ACCOUNT)
        for _ in range(KILLS):
            if not self.kill_after_progress("delta", delta_done):
                break
            d.start()
            d.sync(ACCOUNT)

        expected = log.state()
        expected_ids = {mptest.public_id(ACCOUNT, pid) for pid in expected}
        self.assertEqual(len(expected), GENERATED + DELTA_ADDS - DELTA_DELETES)
        d.sync(ACCOUNT)
        mptest.wait_until(lambda: self.stored() == len(expected), 120,
                          message="store to hold %d messages" % len(expected))
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync to finish")

        listed = d.all_messages(ACCOUNT, limit=500)
        listed_ids = [m["id"] for m in listed]
        self.assertEqual(len(listed_ids), len(set(listed_ids)), "listing has duplicates")
        self.assertEqual(set(listed_ids), expected_ids)

        events = d.events()
        seqs = [e["seq"] for e in events]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "seqs contiguous 1..N")
        keys = collections.Counter(e["json"]["idempotency_key"] for e in events)
        dup_keys = [k for k, c in keys.items() if c > 1]
        self.assertEqual(dup_keys, [], "duplicate idempotency keys")

        per_type = collections.Counter((e["type"], e["json"].get("message")) for e in events
                                       if e["type"] in ("message.new", "message.synced"))
        dups = [k for k, c in per_type.items() if c > 1]
        self.assertEqual(dups, [], "duplicate message pointer per (type, message)")

        arrivals = collections.Counter(e["json"]["message"] for e in events
                                       if e["type"] in ("message.new", "message.synced"))
        for mid in listed_ids:
            self.assertEqual(arrivals.get(mid, 0), 1,
                             "message %s has %d new/synced events" % (mid, arrivals.get(mid, 0)))

        # what the delta brought is new mail, history is synced
        kinds = {e["json"]["message"]: e["type"] for e in events
                 if e["type"] in ("message.new", "message.synced")}
        for _, pid, _, _, _ in adds:
            self.assertEqual(kinds.get(mptest.public_id(ACCOUNT, pid)), "message.new", pid)
        for pid in expected:
            if pid.startswith("gen-"):
                self.assertEqual(kinds.get(mptest.public_id(ACCOUNT, pid)), "message.synced",
                                 pid)

        deleted = {e["json"]["message"] for e in events if e["type"] == "message.deleted"}
        self.assertEqual(deleted, {mptest.public_id(ACCOUNT, "gen-%07d" % (i * 7))
                                   for i in range(DELTA_DELETES)})
        flagged = mptest.public_id(ACCOUNT, "gen-0000001")
        self.assertEqual(sorted(d.get("/v1/messages/" + flagged)["flags"]),
                         ["\\Answered", "\\Seen"])


if __name__ == "__main__":
    mptest.main()

"""A power cut after events were streamed (WAL, synchronous=NORMAL): the
store comes back without its last commits and their seq values are handed
out again to other events. Simulated with a crash image: a consistent copy
of the running daemon's database taken before the last commits, put in
place after a SIGKILL. The daemon must notice the unclean stop, begin a new
epoch, and a client resuming with the id it last saw must get the events
that now carry the reused seqs."""

import json
import os
import sqlite3
import unittest

import mptest

ACCOUNT = "pl"


def crash_image(db_path, image_path):
    """What the disk holds if nothing after this point was synced."""
    src = sqlite3.connect(db_path)
    dst = sqlite3.connect(image_path)
    src.backup(dst)
    dst.close()
    src.close()


class PowerLoss(unittest.TestCase):
    def setUp(self):
        self.d = mptest.Daemon(name="powerloss", settings={"backfill": {"mode": "full"}})
        self.d.add_instance("fix", [{"id": ACCOUNT, "generate": 10, "poll_interval": 3600}])
        self.log = self.d.mailbox(ACCOUNT)

    def tearDown(self):
        self.d.kill()

    def read_until(self, stream, seq, epoch=None, timeout=30):
        got = []
        while True:
            ev = stream.next_event(timeout=timeout)
            self.assertIsNotNone(ev, "no event within %d s (have %r)" % (timeout, got))
            e, s = mptest.split_event_id(ev["id"])
            got.append((ev["id"], ev["event"], json.loads(ev["data"])))
            if s >= seq and (epoch is None or e == epoch):
                return got

    def add(self, ids):
        self.log.add_many([("INBOX", pid, mptest.OpLog.BASE_DATE + i, "PL " + pid, "")
                           for i, pid in enumerate(ids)])

    def test_power_loss(self):
        d = self.d
        db = os.path.join(d.state_dir, "mailpulse.db")
        image = os.path.join(d.tmp, "image.db")
        d.start()
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        mptest.wait_until(lambda: len(d.events(types=["message.synced"])) == 10, 60,
                          message="10 synced events")
        durable = d.last_seq()
        crash_image(db, image)

        # Five new messages: committed, streamed, then lost with the power.
        self.add(["lost-%d" % i for i in range(5)])
        d.sync(ACCOUNT)
        mptest.wait_until(lambda: len(d.events(types=["message.new"])) == 5, 60,
                          message="5 new events")
        head = d.last_seq()
        stream = d.sse("/v1/events?after=0")
        seen = self.read_until(stream, head)
        stream.close()
        last_id = seen[-1][0]
        epoch, seq = mptest.split_event_id(last_id)
        self.assertEqual((epoch, seq), (1, head))

        # The power cut: the disk holds the image. Meanwhile the provider
        # changed: one of the five is gone and a newer message arrived.
        d.kill()
        for suffix in ("-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
        os.replace(image, db)
        self.log.delete("lost-0")
        self.add(["after-cut"])

        d.start()
        self.assertIn("the last stop was not clean", d.log_text())
        d.sync(ACCOUNT)
        newest = mptest.public_id(ACCOUNT, "after-cut")
        mptest.wait_until(
            lambda: newest in [e["json"]["message"] for e in d.events(types=["message.new"])],
            60, message="the new message's event")
        events = d.events(after=durable)
        self.assertEqual(events[0]["seq"], durable + 1)
        self.assertTrue(all(e["epoch"] == 2 for e in events), events)
        # Seqs the client saw now name other events.
        before = {mptest.split_event_id(i)[1]: data["idempotency_key"]
                  for i, _, data in seen}
        changed = [e["seq"] for e in events
                   if e["seq"] <= head and before[e["seq"]] != e["json"]["idempotency_key"]]
        self.assertTrue(changed, "no seq was reused with another event")

        # The client resumes with the id it last saw: it gets every event
        # of the new epoch from the first reused seq on.
        stream = d.sse("/v1/events", headers={"Last-Event-ID": last_id})
        got = self.read_until(stream, events[-1]["seq"], epoch=2)
        stream.close()
        self.assertEqual([mptest.split_event_id(i) for i, _, _ in got],
                         [(2, e["seq"]) for e in events])
        self.assertIn(newest, [data.get("message") for _, _, data in got])
        self.assertEqual(d.get("/v1/status")["events"]["epoch"], 2)
        # mailpulsectl reads the epoch ids.
        # A later sync run may have added events since `events` was read:
        # each answer must hold all of those and go on without a gap.
        expected = [e["seq"] for e in events]

        def covers(seqs, first):
            self.assertEqual(seqs[:len(first)], first)
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))) if seqs else [])

        r = d.ctl("events", "--after", last_id, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        covers([json.loads(line)["seq"] for line in r.stdout.splitlines()], expected)
        # A plain seq is the current epoch (compatible with old clients).
        covers([e["seq"] for e in d.events(after=head)], [q for q in expected if q > head])

        # A clean restart keeps the epoch; the marker makes it durable.
        d.stop()
        d.start()
        self.assertEqual(d.events(after=0)[-1]["epoch"], 2)
        self.assertEqual(d.events(after="2:%d" % head),
                         d.events(after=head))
        d.stop()
        conn = sqlite3.connect(db)
        self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        self.assertEqual(conn.execute("SELECT epoch, first_seq FROM epochs ORDER BY epoch")
                         .fetchall(), [(1, 1), (2, durable + 1)])
        conn.close()


if __name__ == "__main__":
    mptest.main()

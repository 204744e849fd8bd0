"""Outbox retention (outbox.retention_days) with the debug clock: old events
are pruned only once every configured webhook endpoint has them, the newest
event stays, /metrics shows the outbox's size and age, and a stream resuming
from before what is kept gets an "event: gap" instead of a silent jump."""

import re
import time
import unittest

import mptest
from test_webhooks import Receiver, WebhookDaemon

ACCOUNT = "ret"
DAY_MS = 24 * 3600 * 1000


class LenientReceiver(Receiver):
    """The daemon signs with its shifted clock: skip the timestamp check."""

    def verify(self, path, headers, body):
        return None


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class OutboxRetention(unittest.TestCase):
    def setUp(self):
        self.rx = LenientReceiver()
        self.rx.keys["/hook"] = b"secret"
        self.rx.always_fail.add("/hook")
        d = self.d = WebhookDaemon(name="retention", settings={
            "outbox": {"retention_days": 1, "prune_interval": 1},
            "debug": {"clock_control": True},
        })
        secret = d.write_secret("hook.secret", b"secret")
        d.webhooks = (dict(name="hook", url=self.rx.url("/hook"), secret_file=secret,
                           retry_initial=1, retry_max=1, max_attempts=1000),)
        d.write_conf()
        d.add_instance("fix", [{"id": ACCOUNT, "generate": 20, "poll_interval": 3600}])

    def tearDown(self):
        self.d.kill()
        self.rx.close()

    def metrics(self):
        status, _, body = self.d.request("GET", "/metrics")
        self.assertEqual(status, 200)
        return body.decode()

    def test_retention(self):
        d = self.d
        d.start()
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        mptest.wait_until(lambda: len(d.events(types=["message.synced"])) == 20, 60,
                          message="20 synced events")
        events = d.events()
        last = events[-1]["seq"]
        self.assertEqual([e["seq"] for e in events], list(range(1, last + 1)))

        # Two days later. The endpoint has not received event 1 yet: nothing
        # may go, however old.
        d.post("/v1/debug/clock", {"offset_ms": 2 * DAY_MS}, expect=(200,))
        mptest.wait_until(lambda: (metric(self.metrics(),
                                          "mailpulse_outbox_oldest_age_seconds") or 0)
                          >= 2 * 86400 - 60, 30, message="the outbox's age in /metrics")
        time.sleep(3)  # several retention runs
        self.assertEqual([e["seq"] for e in d.events()], list(range(1, last + 1)))
        self.assertEqual(metric(self.metrics(), "mailpulse_outbox_events"), last)
        self.assertNotIn("retention removed", d.log_text())

        # The endpoint catches up: the old events go, the newest stays.
        self.rx.always_fail.discard("/hook")
        mptest.wait_until(lambda: len(self.rx.got("/hook")) >= last, 60,
                          message="the endpoint to receive %d events" % last)
        self.assertEqual(sorted({b["seq"] for _, b in self.rx.got("/hook")}),
                         list(range(1, last + 1)))
        mptest.wait_until(lambda: [e["seq"] for e in d.events()] == [last], 30,
                          message="retention to keep only the newest event")
        self.assertEqual(metric(self.metrics(), "mailpulse_outbox_events"), 1)

        # Resuming from before what is kept: a gap notice first, with the id
        # to resume from; no notice from a position still covered.
        listed = d.events(after=5, notices=True)
        self.assertEqual(listed[0]["type"], "gap")
        self.assertEqual(listed[0]["json"], {"after": 5, "resumed_from": last - 1,
                                             "reason": "retention"})
        self.assertEqual(listed[0]["seq"], last - 1)
        self.assertEqual([e["seq"] for e in listed[1:]], [last])
        self.assertEqual(d.events(after=last - 1, notices=True)[0]["seq"], last)

        # New events (young on the shifted clock) are kept, and delivered.
        d.mailbox(ACCOUNT).add("INBOX", "fresh-1", mptest.OpLog.BASE_DATE + 1)
        d.sync(ACCOUNT)
        mptest.wait_until(lambda: len(d.events(types=["message.new"])) == 1, 60,
                          message="the new message's event")
        time.sleep(2)
        # Event `last` is no longer the newest: old, delivered, it goes too.
        kept = d.events()
        self.assertTrue(kept and all(e["seq"] > last for e in kept), kept)
        self.assertIn("message.new", [e["type"] for e in kept])

        # A restart keeps the horizon: the gap is still announced.
        d.stop()
        d.start()
        self.assertEqual(d.events(after=0, notices=True)[0]["type"], "gap")
        r = d.ctl("events", "--after", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no longer stored", r.stderr)


if __name__ == "__main__":
    mptest.main()

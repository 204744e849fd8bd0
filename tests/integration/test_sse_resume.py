"""The event stream resumes exactly where a client left off, with the
Last-Event-ID header and with ?after=."""

import json
import unittest

import mptest

ACCOUNT = "sse"


class SSEResume(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = mptest.Daemon(name="sse", settings={"backfill": {"mode": "full"}})
        cls.d.add_instance("fix", [{"id": ACCOUNT, "generate": 40, "poll_interval": 3600}])
        cls.log = cls.d.mailbox(ACCOUNT)
        cls.d.start()
        cls.d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        mptest.wait_until(lambda: cls.d.last_seq() >= 40, 60, message="40 events")
        cls.counter = 0

    def more_events(self, n):
        """Append n messages, sync, and wait until their events exist.
        Returns the last seq."""
        d = self.d
        seq0 = d.last_seq()
        items = []
        for _ in range(n):
            type(self).counter += 1
            c = type(self).counter
            items.append(("INBOX", "sse-%d" % c, mptest.OpLog.BASE_DATE + c, "SSE %d" % c, ""))
        self.log.add_many(items)
        d.sync(ACCOUNT)
        mptest.wait_until(
            lambda: len(d.events(after=seq0, types=["message.new"])) >= n, 60,
            message="%d new events" % n)
        return d.last_seq()

    def read(self, stream, count=None, until_seq=None, timeout=30):
        got = []
        while (count is None or len(got) < count):
            ev = stream.next_event(timeout=timeout)
            self.assertIsNotNone(ev, "no event within %d s (have %d)" % (timeout, len(got)))
            _, seq = mptest.split_event_id(ev["id"])
            data = json.loads(ev["data"])
            self.assertEqual(data["seq"], seq)
            self.assertEqual(data["type"], ev["event"])
            got.append(seq)
            if until_seq is not None and seq >= until_seq:
                break
        return got

    def resume(self, reconnect):
        d = self.d
        self.more_events(3)
        first = d.sse("/v1/events?after=0")
        self.assertEqual(first.status, 200)
        self.assertIn("text/event-stream", first.content_type)
        got = self.read(first, count=10)
        first.close()
        self.assertEqual(got, list(range(1, 11)))

        last = self.more_events(5)  # produced while disconnected
        second = reconnect(got[-1])
        self.assertEqual(second.status, 200)
        got += self.read(second, until_seq=last)

        # and live events keep flowing on the resumed stream
        live_last = self.more_events(2)
        got += self.read(second, until_seq=live_last)
        second.close()

        self.assertEqual(len(got), len(set(got)), "duplicates: %r" % got)
        self.assertEqual(got, list(range(1, live_last + 1)), "gap or disorder")

    def test_last_event_id(self):
        self.resume(lambda last: self.d.sse("/v1/events",
                                            headers={"Last-Event-ID": str(last)}))

    def test_after_parameter(self):
        self.resume(lambda last: self.d.sse("/v1/events?after=%d" % last))

    def test_filters_and_once(self):
        d = self.d
        self.more_events(1)
        all_events = d.events()
        self.assertEqual([e["seq"] for e in all_events],
                         list(range(1, len(all_events) + 1)))
        new = d.events(types=["message.new"])
        self.assertTrue(new)
        self.assertTrue(all(e["type"] == "message.new" for e in new))
        self.assertEqual([e["seq"] for e in new],
                         [e["seq"] for e in all_events if e["type"] == "message.new"])
        self.assertEqual(d.events(accounts=["nobody"]), [])
        tail = d.events(after=all_events[-2]["seq"])
        self.assertEqual([e["seq"] for e in tail], [all_events[-1]["seq"]])

    def test_requires_token(self):
        status, _, _ = self.d.request("GET", "/v1/events?once=1", auth=False)
        self.assertEqual(status, 401)


if __name__ == "__main__":
    mptest.main()

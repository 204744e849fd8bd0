"""Outbound webhooks across many accounts: one endpoint delivers several
accounts at once (max_in_flight) while each account's events arrive in
outbox order, complete and signed; a failing account holds back only its
own events; a SIGKILL in the middle of concurrent delivery loses nothing
and resends only what the saved cursor did not cover yet."""

import collections
import random
import threading
import time
import unittest

import mptest
from test_webhooks import WHSEC, Receiver, WebhookDaemon, add_mail

ACCOUNTS = ["u%02d" % i for i in range(10)]
SLOW = set(ACCOUNTS[::3])          # the receiver delays these at random


class CountingReceiver(Receiver):
    """Receiver that delays the SLOW accounts' deliveries at random, can
    refuse every delivery of some accounts, and records the most requests
    it held at once."""

    def __init__(self):
        super().__init__()
        self.refuse = {}                                # path -> accounts refused
        self.in_flight = 0
        self.max_in_flight = 0
        self.rng = random.Random(12)
        base = self.handle

        def handle(path, headers, body):
            account = _account_of(body)
            with self.lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                delay = self.rng.uniform(0.005, 0.04) if account in SLOW else 0.002
                refuse = account in self.refuse.get(path, ())
            try:
                time.sleep(delay)
                if refuse:
                    return 500
                return base(path, headers, body)
            finally:
                with self.lock:
                    self.in_flight -= 1
        self.handle = handle


def _account_of(body):
    import json
    try:
        return json.loads(body).get("account")
    except ValueError:
        return None


def per_account(bodies):
    out = collections.defaultdict(list)
    for b in bodies:
        out[b["account"]].append(b["seq"])
    return dict(out)


class Concurrency(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rx = rx = CountingReceiver()
        rx.keys["/order"] = Receiver.key_of(WHSEC.encode())
        rx.keys["/block"] = Receiver.key_of(WHSEC.encode())
        rx.refuse = {"/block": {"u01"}}
        cls.d = d = WebhookDaemon(name="webhook-conc")
        secret = d.write_secret("hooks.secret", WHSEC.encode())
        d.webhooks = (
            dict(name="order", url=rx.url("/order"), secret_file=secret, max_in_flight=8),
            # /block refuses every delivery of u01 until the test lets it pass
            dict(name="block", url=rx.url("/block"), secret_file=secret, max_in_flight=4,
                 retry_initial=1, retry_max=1, max_attempts=1000),
        )
        d.write_conf()
        d.add_instance("fix", [{"id": a, "generate": 12, "poll_interval": 3600}
                               for a in ACCOUNTS])
        d.start()
        for a in ACCOUNTS:
            d.wait_bootstrapped(a, ["INBOX", "Archive"])
        for a in ACCOUNTS:
            add_mail(d, a, [("INBOX", "%s-n%d" % (a, i)) for i in range(4)])
        cls.total = mptest.wait_until(
            lambda: (lambda n: n >= len(ACCOUNTS) * 4 and n)(
                len(d.events(types=["message.new"]))), 60, message="message.new events")

    @classmethod
    def tearDownClass(cls):
        cls.d.kill()
        cls.rx.close()

    def expected(self):
        return [e["json"] for e in self.d.events(after=0)]

    def test_1_order_per_account_complete_and_concurrent(self):
        want = per_account(self.expected())
        self.assertEqual(set(want), set(ACCOUNTS))
        mptest.wait_until(lambda: per_account(b for _, b in self.rx.got("/order")) == want,
                          90, message="every account's events at /order in outbox order")
        for account, seqs in per_account(b for _, b in self.rx.got("/order")).items():
            self.assertEqual(seqs, sorted(set(seqs)), account)
        self.assertEqual(self.rx.rejected, [], "every signature verifies")
        for msg_id, body in self.rx.got("/order"):
            self.assertEqual(msg_id, body["idempotency_key"])
        # More than one request was held by the receiver at a time.
        self.assertGreater(self.rx.max_in_flight, 1)
        self.assertLessEqual(self.rx.max_in_flight, 8 + 4)  # both endpoints together

    def test_2_failing_account_blocks_only_itself(self):
        d, rx = self.d, self.rx
        all_want = per_account(self.expected())
        want = {a: s for a, s in all_want.items() if a != "u01"}
        mptest.wait_until(
            lambda: {a: s for a, s in per_account(b for _, b in rx.got("/block")).items()}
            == want, 90, message="other accounts delivered while u01 fails")
        ep = {e["name"]: e for e in d.get("/v1/webhooks")["webhooks"]}["block"]
        self.assertIn(ep["state"], ("retrying", "failing"))
        self.assertEqual(ep["pending_seq"], all_want["u01"][0])
        self.assertLess(ep["cursor"], all_want["u01"][0])
        # u01 recovers: its events follow, in order, and the cursor catches up.
        with rx.lock:
            rx.refuse = {}
        mptest.wait_until(lambda: per_account(b for _, b in rx.got("/block")) == all_want,
                          90, message="u01 delivered after recovery")
        mptest.wait_until(lambda: {e["name"]: e for e in d.get("/v1/webhooks")["webhooks"]}
                          ["block"]["lag"] == 0, 30, message="block caught up")


class CrashDuringConcurrentDelivery(unittest.TestCase):
    def test_sigkill_loses_nothing(self):
        rx = CountingReceiver()
        rx.keys["/slow"] = Receiver.key_of(WHSEC.encode())
        d = WebhookDaemon(name="webhook-conc-crash")
        secret = d.write_secret("hooks.secret", WHSEC.encode())
        d.webhooks = (dict(name="slow", url=rx.url("/slow"), secret_file=secret,
                           events=["message.new"], max_in_flight=4),)
        d.write_conf()
        accounts = ACCOUNTS[:6]
        d.add_instance("fix", [{"id": a, "generate": 1, "poll_interval": 3600}
                               for a in accounts])
        inner = rx.handle

        def slow(path, headers, body):
            time.sleep(0.03)
            return inner(path, headers, body)
        rx.handle = slow
        try:
            d.start()
            for a in accounts:
                d.wait_bootstrapped(a, ["INBOX"])
            per = 25
            for a in accounts:
                add_mail(d, a, [("INBOX", "%s-c%03d" % (a, i)) for i in range(per)])
            total = per * len(accounts)
            mptest.wait_until(lambda: len(rx.got("/slow")) >= total // 4, 60,
                              message="a quarter delivered before the crash")
            d.kill()
            before = len(rx.got("/slow"))
            d.start()
            for a in accounts:
                d.sync(a)
            mptest.wait_until(lambda: len(d.events(types=["message.new"])) == total, 60,
                              message="all %d message.new events" % total)
            expected = [e["json"] for e in d.events(types=["message.new"])]
            want = {e["idempotency_key"] for e in expected}
            mptest.wait_until(lambda: want <= {i for i, _ in rx.got("/slow")}, 120,
                              message="every event delivered after the restart")
            got = rx.got("/slow")
            self.assertLess(before, total, "the crash happened mid-delivery")
            self.assertEqual({i for i, _ in got}, want, "no gap, nothing foreign")
            # Duplicates are events that were delivered before the crash
            # (at-least-once from the saved cursor), never more than the window.
            first = {i for i, _ in got[:before]}
            dups = [i for i, _ in got[before:] if i in first]
            self.assertEqual(len(dups), len(set(dups)), "each resent at most once")
            self.assertLessEqual(len(got) - len(want), before)
            # Per account, first arrivals follow outbox order.
            seen, order = set(), collections.defaultdict(list)
            for i, body in got:
                if i not in seen:
                    seen.add(i)
                    order[body["account"]].append(body["seq"])
            for account, seqs in order.items():
                self.assertEqual(seqs, sorted(seqs), account)
            self.assertEqual(rx.rejected, [])
        finally:
            d.kill()
            rx.close()


if __name__ == "__main__":
    mptest.main()

"""Webhook notifications checked against the stored subscription (Graph's
subscriptionId + clientState): the fixture in webhook_verify=client_state
mode hands out an id and a random secret at enrolment; the daemon stores
both, and push_verify finds the account with subscription_lookup and
compares the secret before reading the body. Correct secret: accepted and
synced; forged secret, unknown or other instance's subscription: 403 and
nothing recorded. The secret is never answered or logged, and survives a
renewal (which leaves it unchanged) and a restart."""

import json
import os
import re
import unittest

import mptest

INSTANCE = "graphy"
OTHER_INSTANCE = "graphy2"
ACCOUNT = "subbed"
NEIGHBOUR = "neighbour"


def metric(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})? (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else 0


class PushSubscription(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="pushsub", settings={
            "backfill": {"mode": "full"},
            "debug": {"clock_control": True},
        })
        cls.sub_file = d.path("data", ACCOUNT + ".sub")
        cls.neighbour_file = d.path("data", NEIGHBOUR + ".sub")
        cls.trace = d.path("data", ACCOUNT + ".trace")
        # A subscription of an hour is renewed (a day before it ends) by
        # every sync run.
        d.add_instance(INSTANCE, [{"id": ACCOUNT, "generate": 3, "poll_interval": 3600,
                                   "subscription_seconds": 3600,
                                   "subscription_file": cls.sub_file,
                                   "trace_file": cls.trace}],
                       webhook_verify="client_state", poll_interval=3600)
        d.add_instance(OTHER_INSTANCE, [{"id": NEIGHBOUR, "generate": 1,
                                         "poll_interval": 3600,
                                         "subscription_file": cls.neighbour_file}],
                       webhook_verify="client_state", poll_interval=3600)
        cls.log = d.mailbox(ACCOUNT)
        d.start()
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        d.wait_bootstrapped(NEIGHBOUR, ["INBOX", "Archive"])
        cls.sub_id, cls.secret = cls.issued(cls.sub_file)
        cls.neighbour_id, cls.neighbour_secret = cls.issued(cls.neighbour_file)

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    @staticmethod
    def issued(path):
        """What the simulated provider handed out at enrolment."""
        def read():
            try:
                with open(path) as f:
                    return f.read().strip().split("\t")
            except FileNotFoundError:
                return None
        sub_id, secret = mptest.wait_until(read, 60, message="enrolled at " + path)
        assert len(secret) == 64, secret
        return sub_id, secret

    def push(self, sub_id, secret, body=None, instance=INSTANCE):
        headers = {"Content-Type": "application/json"}
        if sub_id is not None:
            headers["X-Fixture-Subscription"] = sub_id
        if secret is not None:
            headers["X-Fixture-Client-State"] = secret
        if body is None:
            body = {"folder": "INBOX"}
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        status, _, data = self.d.request("POST", "/push/" + instance, body=body,
                                         headers=headers, auth=False)
        return status, data

    def idle(self):
        mptest.wait_until(lambda: not self.d.account(ACCOUNT)["sync"]["running"], 60,
                          message="account idle")

    def snapshot(self):
        d = self.d
        acct = d.account(ACCOUNT)
        _, _, metrics = d.request("GET", "/metrics")
        text = metrics.decode()
        return {"last_seq": d.last_seq(),
                "triggers": acct["sync"].get("triggers"),
                "runs": acct["sync"]["runs"],
                "last_push": acct["last_push"],
                "last_notification": acct["subscription"]["last_notification"],
                "accepted": metric(text, "mailpulse_push_accepted_total"),
                "rejected": metric(text, "mailpulse_push_rejected_total")}

    def assert_accepted_and_synced(self, msg_id, date_offset):
        d = self.d
        self.idle()
        seq0 = d.last_seq()
        self.log.add("INBOX", msg_id, mptest.OpLog.BASE_DATE + date_offset, "Pushed")
        status, body = self.push(self.sub_id, self.secret)
        self.assertEqual(status, 202, body)
        events = mptest.wait_until(
            lambda: d.events(after=seq0, types=["message.new"], accounts=[ACCOUNT]), 60,
            message="message.new after a verified push (poll_interval 3600)")
        self.assertEqual([e["json"]["message"] for e in events],
                         [mptest.public_id(ACCOUNT, msg_id)])
        self.assertIsNotNone(d.account(ACCOUNT)["subscription"]["last_notification"])

    def assert_refused(self, status, data, before, snapshot_after=True):
        self.assertEqual(status, 403, data)
        self.assertIn("error", json.loads(data))
        after = self.snapshot()
        self.assertEqual(after["last_seq"], before["last_seq"], "events changed")
        self.assertEqual(after["triggers"], before["triggers"], "a sync was triggered")
        self.assertEqual(after["runs"], before["runs"], "a sync ran")
        self.assertEqual(after["last_push"], before["last_push"], "push recorded")
        self.assertEqual(after["last_notification"], before["last_notification"],
                         "notification recorded")
        self.assertEqual(after["accepted"], before["accepted"], "hint counted")
        self.assertGreater(after["rejected"], before["rejected"])

    def test_1_enrolment_stored(self):
        sub = self.d.account(ACCOUNT)["subscription"]
        self.assertEqual(sub["provider_id"], self.sub_id)
        self.assertTrue(sub["has_secret"])
        self.assertNotIn("secret", sub)

    def test_2_correct_secret_syncs(self):
        self.assert_accepted_and_synced("verified-1", 1)

    def test_3_forged_or_unknown_refused(self):
        self.idle()
        self.log.add("INBOX", "forged-1", mptest.OpLog.BASE_DATE + 2, "Should wait")
        before = self.snapshot()
        flipped = ("0" if self.secret[0] != "0" else "1") + self.secret[1:]
        cases = [
            (self.sub_id, flipped),                    # wrong secret, same length
            (self.sub_id, self.secret[:-1]),           # truncated
            (self.sub_id, self.secret + "0"),          # longer
            (self.sub_id, None),                       # no secret
            (self.sub_id, ""),                         # empty secret
            ("fixture-sub-nobody", self.secret),       # unknown subscription
            (None, self.secret),                       # no subscription
            (self.sub_id.upper(), self.secret),        # ids are exact
            # another instance's subscription with its own, right secret
            (self.neighbour_id, self.neighbour_secret),
            # the right secret of another subscription
            (self.sub_id, self.neighbour_secret),
        ]
        for sub_id, secret in cases:
            status, data = self.push(sub_id, secret)
            self.assert_refused(status, data, before)
        # Checked before the body: a malformed body with a wrong secret is
        # refused for the secret, not parsed.
        status, data = self.push(self.sub_id, flipped, body=b"{not json")
        self.assert_refused(status, data, before)
        # The neighbour's subscription works at its own instance.
        status, data = self.push(self.neighbour_id, self.neighbour_secret,
                                 instance=OTHER_INSTANCE)
        self.assertEqual(status, 202, data)
        # Nothing of forged-1 was synced meanwhile.
        self.assertFalse(any(e["json"]["message"] == mptest.public_id(ACCOUNT, "forged-1")
                             for e in self.d.events(types=["message.new"])))

    def test_4_malformed_body_after_good_secret(self):
        self.idle()
        before = self.snapshot()
        status, data = self.push(self.sub_id, self.secret, body=b"[]")
        self.assertEqual(status, 400, data)
        after = self.snapshot()
        self.assertEqual(after["triggers"], before["triggers"])
        self.assertEqual(after["last_push"], before["last_push"])

    def test_5_secret_never_shown(self):
        d = self.d
        for path in ("/v1/accounts/" + ACCOUNT, "/v1/accounts", "/v1/status",
                     "/v1/events?once=1&after=0", "/metrics"):
            status, _, data = d.request("GET", path)
            self.assertEqual(status, 200, path)
            self.assertNotIn(self.secret, data.decode(), path)
            self.assertNotIn(self.neighbour_secret, data.decode(), path)
        self.assertNotIn(self.secret, d.log_text())
        self.assertNotIn(self.neighbour_secret, d.log_text())
        out = d.ctl("account", ACCOUNT)
        self.assertNotIn(self.secret, out.stdout + out.stderr)

    def test_6_renewal_keeps_secret_across_restart(self):
        d = self.d
        # Every sync renews the hour-long subscription: the fixture refuses
        # a renewal without the stored secret (the account would turn
        # fatal), and leaves the secret unchanged.
        d.sync_and_wait(ACCOUNT)
        with open(self.trace) as f:
            self.assertIn("push_renew", f.read())
        acct = d.account(ACCOUNT)
        self.assertNotEqual(acct["status"], "fatal", acct["last_error"])
        self.assertEqual(acct["push_state"], "watching")
        self.assertEqual(acct["subscription"]["provider_id"], self.sub_id)
        self.assertTrue(acct["subscription"]["has_secret"])
        self.assert_accepted_and_synced("after-renew-1", 3)

        d.restart()
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        # Not re-enrolled: the provider issued nothing new.
        self.assertEqual(self.issued(self.sub_file), (self.sub_id, self.secret))
        # The neighbour's week-long subscription is neither renewed nor
        # re-enrolled by this daemon: only the index loaded from the store
        # at start can verify its notification.
        status, data = self.push(self.neighbour_id, self.neighbour_secret,
                                 instance=OTHER_INSTANCE)
        self.assertEqual(status, 202, data)
        self.assert_accepted_and_synced("after-restart-1", 4)
        self.idle()
        before = self.snapshot()
        status, data = self.push(self.sub_id, self.neighbour_secret)
        self.assert_refused(status, data, before)
        d.sync_and_wait(ACCOUNT)
        self.assert_accepted_and_synced("after-restart-renew-1", 5)
        self.assertNotIn(self.secret, d.log_text())

    def test_7_lapsed_subscription_enrolled_again(self):
        d = self.d
        self.idle()
        # Two hours on, the hour-long subscription has lapsed: cancelled
        # (with its secret: the fixture refuses a cancel without it),
        # forgotten, and enrolled anew with a new id and secret.
        d.post("/v1/debug/clock", {"offset_ms": 2 * 3600 * 1000}, expect=(200,))
        try:
            d.sync_and_wait(ACCOUNT)
            new_id, new_secret = mptest.wait_until(
                lambda: (lambda s: s if s[0] != self.sub_id else None)(
                    self.issued(self.sub_file)), 60, message="enrolled again")
            with open(self.trace) as f:
                trace = f.read()
            self.assertIn("push_cancel", trace)
            self.assertNotIn("cancel failed", d.log_text())
            self.assertIn("lapsed", d.log_text())
            acct = d.account(ACCOUNT)
            self.assertEqual(acct["subscription"]["provider_id"], new_id)
            self.assertEqual(acct["push_state"], "watching")
            self.idle()
            before = self.snapshot()
            # The old subscription is forgotten, its secret with it.
            status, data = self.push(self.sub_id, self.secret)
            self.assert_refused(status, data, before)
            status, data = self.push(new_id, self.secret)
            self.assert_refused(status, data, before)
            type(self).sub_id, type(self).secret = new_id, new_secret
            self.assert_accepted_and_synced("after-lapse-1", 6)
            self.assertNotIn(new_secret, d.log_text())
        finally:
            d.post("/v1/debug/clock", {"offset_ms": 0}, expect=(200,))


if __name__ == "__main__":
    mptest.main()

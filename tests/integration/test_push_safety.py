"""Safety nets under push: while push is live the poller keeps running as the
reconciliation sweep, and an account that hears no push for
schedule.push_silence_hours is flagged and fully resynced until a push
arrives again. Time is moved with the debug clock."""

import json
import re
import time
import unittest

import mptest

ACCOUNT = "quiet"
INSTANCE = "pushy"
SECRET = b"push-safety-secret-31c9"
HOUR_MS = 3600 * 1000


def wall_ms():
    return int(time.time() * 1000)


def metrics(d):
    _, _, data = d.request("GET", "/metrics")
    out = {}
    for line in data.decode().splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\d+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = int(m.group(3))
    return out


class PushSafety(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="pushsafety", settings={
            "schedule": {"reconcile_interval": 2, "push_silence_hours": 1,
                         "push_renew_interval": 1},
            "debug": {"clock_control": True},
            "http": {"metrics_per_account": True},
        })
        secret_file = d.write_secret("push.secret", SECRET)
        d.add_instance(INSTANCE, [{"id": ACCOUNT, "generate": 4, "poll_interval": 1}],
                       webhook_secret_file=secret_file)
        d.start()
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def push(self):
        body = json.dumps({"account": ACCOUNT, "folder": "INBOX"}).encode()
        status, _, _ = self.d.request(
            "POST", "/push/" + INSTANCE, body=body, auth=False,
            headers={"Content-Type": "application/json",
                     "X-Fixture-Signature": mptest.sign(SECRET, body)})
        self.assertEqual(status, 202)

    def test_reconciliation_and_silence(self):
        d = self.d
        # Push is live once the subscription is enrolled: the poller is
        # demoted to the reconciliation sweep, but keeps running.
        acct = mptest.wait_until(lambda: (lambda a: a if a["push_live"] else None)(
            d.account(ACCOUNT)), 30, message="push live")
        self.assertTrue(acct["reconciling"])
        self.assertEqual(acct["sync_interval_s"], 2)
        self.assertFalse(acct["push_silent"])
        runs = acct["sync"]["runs"]
        mptest.wait_until(lambda: d.account(ACCOUNT)["sync"]["runs"] >= runs + 2, 30,
                          message="reconciliation sweeps keep running")
        self.assertGreaterEqual(metrics(d).get("mailpulse_reconcile_runs_total", 0), 1)
        gauge = 'mailpulse_account_push{account="%s"}' % ACCOUNT
        self.assertEqual(metrics(d)[gauge], 1)
        self.assertEqual(metrics(d)["mailpulse_accounts_push_live"], 1)

        # Mail that arrives without any push is still found by the sweep.
        log = d.mailbox(ACCOUNT)
        log.add("INBOX", "silent-1", mptest.OpLog.BASE_DATE + 10_000, "No push for me")
        mptest.wait_until(
            lambda: any(e["json"]["message"] == mptest.public_id(ACCOUNT, "silent-1")
                        for e in d.events(types=["message.new"])), 30,
            message="sweep found unannounced mail")

        # Two hours of silence: flagged, counted, and the flag is visible.
        before = metrics(d).get("mailpulse_push_silence_resyncs_total", 0)
        d.post("/v1/debug/clock", {"offset_ms": 2 * HOUR_MS}, expect=(200,))
        acct = mptest.wait_until(lambda: (lambda a: a if a["push_silent"] else None)(
            d.account(ACCOUNT)), 30, message="silent account flagged")
        self.assertIsNotNone(acct["push_silent_since"])
        self.assertGreater(metrics(d)["mailpulse_push_silence_resyncs_total"], before)
        self.assertEqual(metrics(d)[gauge], 2)
        self.assertEqual(metrics(d)["mailpulse_accounts_push_silent"], 1)
        self.assertIn("no push notification", d.log_text())

        # A push clears the flag.
        self.push()
        mptest.wait_until(lambda: not d.account(ACCOUNT)["push_silent"], 30,
                          message="flag cleared by a push")
        self.assertEqual(metrics(d)[gauge], 1)
        d.post("/v1/debug/clock", {"offset_ms": 0}, expect=(200,))

    def test_subscription_renewed_before_it_lapses(self):
        d = self.d
        sub = mptest.wait_until(lambda: d.account(ACCOUNT)["subscription"], 30,
                                message="subscription enrolled")
        first_expiry = sub["expires_at"]
        first_renewed = sub["renewed"]
        # Still six days away: the hourly check (every second here) leaves it.
        d.post("/v1/debug/clock", {"offset_ms": 24 * HOUR_MS}, expect=(200,))
        runs = d.account(ACCOUNT)["sync"]["runs"]
        mptest.wait_until(lambda: d.account(ACCOUNT)["sync"]["runs"] > runs + 1, 30)
        self.assertEqual(d.account(ACCOUNT)["subscription"]["expires_at"], first_expiry)
        # Less than a day left: renewed, with a later expiry.
        offset_ms = (first_expiry * 1000 - wall_ms()) - 12 * HOUR_MS
        d.post("/v1/debug/clock", {"offset_ms": offset_ms}, expect=(200,))
        sub = mptest.wait_until(
            lambda: (lambda s: s if s["expires_at"] > first_expiry else None)(
                d.account(ACCOUNT)["subscription"]), 30, message="subscription renewed")
        self.assertNotEqual(sub["renewed"], first_renewed)
        self.assertEqual(d.account(ACCOUNT)["push_state"], "watching")
        d.post("/v1/debug/clock", {"offset_ms": 0}, expect=(200,))


if __name__ == "__main__":
    mptest.main()

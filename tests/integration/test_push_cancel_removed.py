"""A reload that removes an account from the configuration ends its webhook
subscription at the provider: push_cancel runs once, with the stored
provider id and secret (the fixture in webhook_verify=client_state mode
refuses a cancel without them and records what it was named), and the
stored subscription is deleted. The account left in the same (changed)
file is re-created under its id and keeps its subscription; a plain
restart cancels nothing."""

import os
import sqlite3
import unittest

import mptest

INSTANCE = "graphy"
GONE = "leaving"
KEPT = "staying"


class PushCancelRemoved(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="pushcancel", settings={"backfill": {"mode": "full"}})
        cls.db = os.path.join(d.state_dir, "mailpulse.db")
        cls.files = {a: d.path("data", a + ".sub") for a in (GONE, KEPT)}
        cls.traces = {a: d.path("data", a + ".trace") for a in (GONE, KEPT)}
        cls.write_config([GONE, KEPT])
        d.start()
        for a in (GONE, KEPT):
            d.wait_bootstrapped(a, ["INBOX", "Archive"])
        cls.issued_at_start = {a: cls.issued(cls.files[a]) for a in (GONE, KEPT)}

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    @classmethod
    def write_config(cls, accounts):
        cls.d.add_instance(INSTANCE, [{"id": a, "generate": 2, "poll_interval": 3600,
                                       "subscription_file": cls.files[a],
                                       "trace_file": cls.traces[a]} for a in accounts],
                           webhook_verify="client_state", poll_interval=3600)

    @staticmethod
    def issued(path):
        def read():
            try:
                with open(path) as f:
                    return tuple(f.read().strip().split("\t"))
            except FileNotFoundError:
                return None
        return mptest.wait_until(read, 60, message="enrolled at " + path)

    def cancelled(self, account):
        try:
            with open(self.files[account] + ".cancelled") as f:
                return [tuple(line.split("\t")) for line in f.read().splitlines()]
        except FileNotFoundError:
            return []

    def traced_cancels(self, account):
        try:
            with open(self.traces[account]) as f:
                return [l for l in f.read().splitlines() if l.startswith("start ")
                        and " push_cancel " in l]
        except FileNotFoundError:
            return []

    def stored(self, account):
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            row = conn.execute("SELECT provider_id FROM subscriptions WHERE account = ?",
                               (account,)).fetchone()
        finally:
            conn.close()
        return row[0] if row else None

    def test_0_ctl_gmail_status_refuses_other_drivers(self):
        for args in (("gmail-status", KEPT), ("--json", "gmail-status", KEPT)):
            out = self.d.ctl(*args)
            self.assertEqual(out.returncode, 1, out.stdout)
            self.assertEqual(out.stdout, "")
            self.assertIn("uses driver 'fixture', not gmail", out.stderr)

    def test_1_restart_cancels_nothing(self):
        d = self.d
        d.restart()
        for a in (GONE, KEPT):
            d.wait_bootstrapped(a, ["INBOX", "Archive"])
            self.assertEqual(self.cancelled(a), [], a)
            self.assertEqual(self.traced_cancels(a), [], a)
            # Not enrolled again either: the stored subscription carried on.
            self.assertEqual(self.issued(self.files[a]), self.issued_at_start[a])
            self.assertEqual(d.account(a)["subscription"]["provider_id"],
                             self.issued_at_start[a][0])

    def test_2_removed_account_cancelled(self):
        d = self.d
        gone_id, gone_secret = self.issued_at_start[GONE]
        self.assertEqual(self.stored(GONE), gone_id)
        self.write_config([KEPT])
        d.reload()
        calls = mptest.wait_until(lambda: self.cancelled(GONE), 60,
                                  message="push_cancel of the removed account")
        self.assertEqual(calls, [(gone_id, gone_secret)])
        mptest.wait_until(lambda: self.stored(GONE) is None, 60,
                          message="the removed account's subscription deleted")
        self.assertNotIn("cancel failed", d.log_text())
        self.assertNotIn(gone_secret, d.log_text())
        # The account that stays (re-created with its changed file) keeps
        # its subscription, uncancelled.
        d.wait_bootstrapped(KEPT, ["INBOX", "Archive"])
        self.assertEqual(d.account(KEPT)["subscription"]["provider_id"],
                         self.issued_at_start[KEPT][0])
        self.assertEqual(self.stored(KEPT), self.issued_at_start[KEPT][0])
        self.assertEqual(self.cancelled(KEPT), [])
        # Once, and not again at a later reload or shutdown.
        d.reload()
        d.restart()
        d.wait_bootstrapped(KEPT, ["INBOX", "Archive"])
        self.assertEqual(self.cancelled(GONE), [(gone_id, gone_secret)])
        self.assertEqual(len(self.traced_cancels(GONE)), 1)
        self.assertEqual(self.cancelled(KEPT), [])


if __name__ == "__main__":
    unittest.main()

"""History policies against a real Dovecot mailbox of a few thousand messages:
what each backfill mode loads, in what order (newest first, bootstrap before
backfill), in what steps and within what budget."""

import unittest

import dovecot
import mptest

ACCOUNT = "alice"
TOTAL = 2500


class ImapPolicies(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(profile="full", name="dovecot-policies")
        cls.server.generate("INBOX", TOTAL, body_size=200)
        cls.uidvalidity = cls.server.uidvalidity("INBOX")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def start(self, name, backfill, job_budget=25, batch_size=100):
        # What the server holds now (another test may have appended).
        self.uids = sorted(self.server.uids("INBOX"))
        self.total = len(self.uids)
        self.assertGreaterEqual(self.total, TOTAL)
        backfill = dict({"job_budget": job_budget, "batch_size": batch_size}, **backfill)
        d = mptest.Daemon(name=name, driver_dir=dovecot.imap_driver_dir(),
                          settings={"backfill": backfill,
                                    "schedule": {"backfill_interval": 1}})
        acct = dovecot.imap_account(d, self.server, ACCOUNT, folders=["INBOX"],
                                    poll_interval=3600)
        dovecot.add_imap_instance(d, "mail", [acct])
        d.start()
        self.addCleanup(d.cleanup)
        self.d = d
        return d

    def inbox(self):
        return self.d.folder(ACCOUNT, "INBOX")

    def wait_done(self, count, timeout=180):
        self.d.wait_bootstrapped(ACCOUNT, ["INBOX"])
        return mptest.wait_until(
            lambda: (lambda f: f if f["messages"] == count and
                     f["backfill"]["status"] in ("done", "off") else None)(self.inbox()),
            timeout, message="INBOX holds %d" % count)

    def synced_uids(self):
        events = self.d.events(types=["message.synced"], accounts=[ACCOUNT])
        return [e["json"]["uid"] for e in events]

    def assert_newest_first(self, uids, batch):
        """History arrives newest first, a batch at a time (UIDs may ascend
        inside one batch): after k events, every UID seen is among the
        newest k + batch."""
        ranked = sorted(self.uids, reverse=True)
        lowest = None
        for k, uid in enumerate(uids):
            lowest = uid if lowest is None else min(lowest, uid)
            bound = ranked[min(k + batch, len(ranked) - 1)]
            self.assertGreaterEqual(lowest, bound, "event %d (uid %d) came too early" % (k, uid))

    def stop(self):
        self.assertEqual(self.d.stop(), 0, "clean exit")

    def test_progressive_with_cap(self):
        self.start("pol-progressive", {"mode": "progressive", "bootstrap_max": 500,
                                       "max_per_folder": 2000}, batch_size=400)
        f = self.wait_done(2000)
        self.assertEqual(f["backfill"]["target"], 2000)
        uids = self.synced_uids()
        self.assertEqual(len(uids), 2000)
        # The newest 500 arrive at once, then older history in order: the
        # stored messages are exactly the newest 2000, loaded newest first.
        self.assertEqual(sorted(uids[:500]), self.uids[-500:])
        self.assertEqual(sorted(uids), self.uids[-2000:])
        self.assert_newest_first(uids, 400)
        self.assertEqual(self.d.events(types=["message.new"], accounts=[ACCOUNT]), [])
        self.stop()

    def test_full_ignores_cap(self):
        self.start("pol-full", {"mode": "full", "bootstrap_max": 500,
                                "max_per_folder": 2000}, batch_size=1000)
        f = self.wait_done(self.total)
        self.assertIsNone(f["backfill"]["target"])
        self.assertEqual(sorted(self.synced_uids()), self.uids)
        self.stop()

    def test_from_now_on(self):
        d = self.start("pol-fromnow", {"mode": "from_now_on", "bootstrap_max": 500})
        d.wait_bootstrapped(ACCOUNT, ["INBOX"])
        f = self.inbox()
        self.assertEqual(f["messages"], 0)
        self.assertEqual(f["backfill"]["status"], "off")
        msg = dovecot.make_message(90001, 1800000000, tag="fromnow", subject="After connect")
        self.server.append("INBOX", msg)
        mptest.wait_until(lambda: len(d.events(types=["message.new"], accounts=[ACCOUNT])) == 1,
                          60, message="new mail arrives by push")
        self.assertEqual(self.inbox()["messages"], 1)
        self.assertEqual(self.synced_uids(), [])
        self.stop()

    def test_budget_bounds_each_run(self):
        # Tiny steps make the whole backfill longer than one run's budget.
        d = self.start("pol-budget", {"mode": "progressive", "bootstrap_max": 100,
                                      "max_per_folder": 0}, job_budget=1, batch_size=5)
        self.wait_done(self.total, timeout=300)
        acct = d.account(ACCOUNT)
        self.assertGreaterEqual(acct["backfill"]["runs"], 2,
                                "the history took more than one budgeted run")
        uids = self.synced_uids()
        self.assert_newest_first(uids, 100)
        self.assertEqual(sorted(uids), self.uids)
        self.stop()


if __name__ == "__main__":
    mptest.main()

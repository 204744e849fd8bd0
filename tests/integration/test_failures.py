"""Driver statuses reach the scheduler and the account status: retry backs
off and recovers on its own, reauth and fatal stop the account with the
driver's reason, resync re-bootstraps one folder with a single
folder.reset and no duplicate message events."""

import collections
import re
import unittest

import mptest

ACCOUNTS = ["f-retry", "f-reauth", "f-fatal", "f-resync"]


def metric(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})? (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else 0


class Failures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="failures", settings={"backfill": {"mode": "full"}})
        d.add_instance("fix", [{"id": a, "generate": 8, "poll_interval": 3600}
                               for a in ACCOUNTS])
        d.start()
        for a in ACCOUNTS:
            d.wait_bootstrapped(a, ["INBOX", "Archive"])
            mptest.wait_until(lambda: not d.account(a)["sync"]["running"], 60,
                              message="%s idle" % a)

    def metrics(self):
        return self.d.request("GET", "/metrics")[2].decode()

    def test_retry_recovers(self):
        d, acct = self.d, "f-retry"
        log = d.mailbox(acct)
        failures0 = metric(self.metrics(), "mailpulse_sync_failures_total")
        seq0 = d.last_seq()
        log.fail("retry", 1)
        log.add("INBOX", "after-retry", mptest.OpLog.BASE_DATE, "After retry")
        d.sync(acct)
        # one trigger only: the retry (retry_after_ms 500) must come by itself
        events = mptest.wait_until(
            lambda: d.events(after=seq0, types=["message.new"], accounts=[acct]), 60,
            message="message.new after the retried sync")
        self.assertEqual([e["json"]["message"] for e in events],
                         [mptest.public_id(acct, "after-retry")])
        self.assertGreater(metric(self.metrics(), "mailpulse_sync_failures_total"), failures0)
        a = mptest.wait_until(lambda: d.account(acct)["status"] == "ok" and d.account(acct),
                              30, message="status ok again")
        self.assertEqual(a["sync"]["failures"], 0)

    def test_reauth_stops_account(self):
        d, acct = self.d, "f-reauth"
        d.mailbox(acct).fail("reauth", 1)
        d.sync(acct)
        a = mptest.wait_until(lambda: d.account(acct)["status"] == "reauth" and d.account(acct),
                              30, message="status reauth")
        self.assertIn("injected failure", a["last_error"] or "")
        self.assertEqual(d.accounts()[acct]["status"], "reauth")
        status_events = d.events(types=["account.status"], accounts=[acct])
        self.assertEqual(status_events[-1]["json"]["status"], "reauth")

    def test_fatal_stops_account(self):
        d, acct = self.d, "f-fatal"
        d.mailbox(acct).fail("fatal", 1)
        d.sync(acct)
        a = mptest.wait_until(lambda: d.account(acct)["status"] == "fatal" and d.account(acct),
                              30, message="status fatal")
        self.assertIn("injected failure", a["last_error"] or "")
        # the other accounts are not affected
        self.assertEqual(d.account("f-resync")["status"], "ok")

    def test_resync_rebootstraps_folder(self):
        d, acct = self.d, "f-resync"
        log = d.mailbox(acct)
        stored_before = {m["id"] for m in d.all_messages(acct)}
        self.assertEqual(len(stored_before), 8)
        seq0 = d.last_seq()
        log.fail("resync", 1)
        log.add("INBOX", "after-resync", mptest.OpLog.BASE_DATE, "After resync")
        d.sync(acct)
        mid = mptest.public_id(acct, "after-resync")
        mptest.wait_until(lambda: mid in {m["id"] for m in d.all_messages(acct)}, 60,
                          message="the message added with the resync to be stored")
        mptest.wait_until(lambda: d.events(after=seq0, types=["folder.reset"], accounts=[acct]),
                          30, message="folder.reset event")
        mptest.wait_until(lambda: not d.account(acct)["sync"]["running"], 60,
                          message="sync to finish")

        after = d.events(after=seq0, accounts=[acct])
        resets = [e for e in after if e["type"] == "folder.reset"]
        self.assertEqual(len(resets), 1, resets)
        reset_folder = resets[0]["json"]["folder"]
        self.assertIn(reset_folder, ("INBOX", "Archive"))
        folders = {f["name"]: f for f in d.account(acct)["folders"]}
        self.assertEqual(folders[reset_folder]["resets"], 1)
        self.assertTrue(folders[reset_folder]["bootstrapped"])

        # re-bootstrapping folds the stored messages in silently
        arrivals = [e["json"]["message"] for e in after
                    if e["type"] in ("message.new", "message.synced")]
        self.assertEqual(arrivals, [mid])
        every = collections.Counter(e["json"]["message"] for e in d.events(accounts=[acct])
                                    if e["type"] in ("message.new", "message.synced"))
        self.assertTrue(all(c == 1 for c in every.values()), every)
        self.assertEqual(set(every), stored_before | {mid})
        self.assertEqual(d.account(acct)["status"], "ok")


if __name__ == "__main__":
    mptest.main()

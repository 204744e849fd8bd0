"""A push names a folder and carries a cursor hint: the sync it starts runs
delta on that folder only, the driver reads the hint through sync_hint, a
failed run keeps the hint for the next one, and a hint accepted before a
SIGKILL is synced after the restart."""

import json
import os
import unittest

import mptest

INSTANCE = "pushfolders"
SECRET = b"push-folder-secret-5c1d"
FOLDERS = ["INBOX", "Archive", "Work"]


class PushFolder(unittest.TestCase):
    def start_daemon(self, name, account, **extra):
        d = mptest.Daemon(name=name, settings={"backfill": {"mode": "full"}})
        self.addCleanup(d.cleanup)
        secret_file = d.write_secret("push.secret", SECRET)
        acct = {"id": account, "generate": 3, "poll_interval": 3600,
                "folders_available": FOLDERS,
                "trace_file": d.path("data", account + ".trace")}
        acct.update(extra)
        d.add_instance(INSTANCE, [acct], webhook_secret_file=secret_file,
                       poll_interval=3600)
        d.start()
        d.wait_bootstrapped(account, FOLDERS, timeout=120)
        mptest.wait_until(lambda: not d.account(account)["sync"]["running"], 60,
                          message="first sync finished")
        return d

    def push(self, d, account, folder, cursor):
        body = json.dumps({"account": account, "folder": folder, "cursor": cursor}).encode()
        headers = {"Content-Type": "application/json",
                   "X-Fixture-Signature": mptest.sign(SECRET, body)}
        status, _, data = d.request("POST", "/push/" + INSTANCE, body=body,
                                    headers=headers, auth=False)
        self.assertEqual(status, 202, data)

    def sync_lines(self, d, account):
        path = d.path("data", account + ".trace.sync")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.split() for line in f.read().splitlines()]

    def test_push_syncs_its_folder_with_its_hint(self):
        acct = "pf"
        d = self.start_daemon("push_folder", acct)
        log = d.mailbox(acct)
        seen = len(self.sync_lines(d, acct))
        runs = d.account(acct)["sync"]["runs"]
        log.add("Work", "work-1", mptest.OpLog.BASE_DATE + 1, "Work mail")
        self.push(d, acct, "Work", "hist-41")
        mptest.wait_until(lambda: any(e["type"] == "message.new"
                                      for e in d.events(accounts=[acct])),
                          60, message="message.new from the pushed folder")
        d.wait_sync_runs(acct, runs)
        calls = self.sync_lines(d, acct)[seen:]
        self.assertEqual(calls, [["delta", "Work", "hist-41"]])

        # The hint is gone once the run succeeded; an all-folder sync sees
        # no hint and runs delta everywhere.
        seen = len(self.sync_lines(d, acct))
        d.sync_and_wait(acct)
        calls = self.sync_lines(d, acct)[seen:]
        self.assertEqual(sorted(c[1] for c in calls if c[0] == "delta"), sorted(FOLDERS))
        self.assertTrue(all(c[2] == "-" for c in calls), calls)

    def test_failed_run_keeps_the_hint(self):
        acct = "pk"
        d = self.start_daemon("push_keep", acct)
        log = d.mailbox(acct)
        seen = len(self.sync_lines(d, acct))
        log.fail("retry", 1)
        log.add("Work", "work-2", mptest.OpLog.BASE_DATE + 2, "After a failure")
        self.push(d, acct, "Work", "hist-77")
        mptest.wait_until(lambda: any(e["type"] == "message.new"
                                      for e in d.events(accounts=[acct])),
                          60, message="message.new after the retry")
        mptest.wait_until(lambda: not d.account(acct)["sync"]["running"], 60,
                          message="idle")
        work = [c for c in self.sync_lines(d, acct)[seen:] if c[1] == "Work"]
        # The failing run and the retry both saw the hint.
        self.assertGreaterEqual(len(work), 2, work)
        self.assertEqual(work[0], ["delta", "Work", "hist-77"])
        self.assertEqual(work[-1], ["delta", "Work", "hist-77"])

    def test_hint_survives_sigkill(self):
        acct = "pc"
        # Every commit waits, so the run the push starts is still going
        # when the daemon is killed.
        d = self.start_daemon("push_crash", acct, batch_delay_ms=1500)
        log = d.mailbox(acct)
        log.add("Work", "work-3", mptest.OpLog.BASE_DATE + 3, "Before the crash")
        self.push(d, acct, "Work", "hist-99")
        d.kill()
        seen = len(self.sync_lines(d, acct))
        d.start()
        mptest.wait_until(lambda: any(e["type"] == "message.new"
                                      for e in d.events(accounts=[acct])),
                          120, message="message.new after the restart")
        mptest.wait_until(lambda: ["delta", "Work", "hist-99"] in self.sync_lines(d, acct)[seen:],
                          60, message="the hint reached the driver after the restart")


if __name__ == "__main__":
    mptest.main()

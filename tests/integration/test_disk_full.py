"""Disk full (issue 8, fault suite): the state directory is a small tmpfs
that fills in the middle of a 10,000-message bootstrap from Dovecot. While
it is full the daemon keeps running (same pid), answers /healthz and the
API, and says why in its log and in the account's status; the store is not
corrupted (PRAGMA integrity_check). Once the tmpfs is grown (mount -o
remount,size=...) the sync completes by itself: every message stored once,
one event per message, idempotency keys unique.

Needs root (mount); skipped with a loud message when mounting is denied."""

import collections
import os
import sqlite3
import subprocess
import sys
import time
import unittest

import dovecot
import mptest

ACCOUNT = "alice"
COUNT = 10000
FULL_SIZE = "6m"    # the store of 10,000 summaries takes about 13 MB with its WAL
ROOMY_SIZE = "128m"
FULL_MARKERS = ("disk is full", "disk full", "No space left")


def mount_tmpfs(path, size):
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs",
                        path], capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip()


class DiskFull(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mounted = False
        s = cls.server = dovecot.Dovecot(name="dovecot-diskfull")
        t = time.monotonic()
        s.generate("INBOX", COUNT, body_size=200)
        s.index("INBOX")
        cls.seed_s = time.monotonic() - t
        cls.d = mptest.Daemon(name="disk-full", driver_dir=dovecot.imap_driver_dir(),
                              settings={"backfill": {"mode": "progressive",
                                                     "bootstrap_max": COUNT},
                                        "schedule": {"reconcile_interval": 3600,
                                                     "bootstrap_interval": 1,
                                                     "max_backoff": 2}})
        ok, why = mount_tmpfs(cls.d.state_dir, FULL_SIZE)
        if not ok:
            sys.stderr.write("\n" + "!" * 72 + "\n!! test_disk_full SKIPPED: cannot mount "
                             "a tmpfs (%s)\n" % why + "!" * 72 + "\n")
            raise unittest.SkipTest("mount -t tmpfs denied: %s" % why)
        cls.mounted = True
        acct = dovecot.imap_account(cls.d, s, ACCOUNT, poll_interval=3600, folders=["INBOX"])
        dovecot.add_imap_instance(cls.d, "mail", [acct])

    @classmethod
    def tearDownClass(cls):
        if cls.d.running():
            cls.d.stop()
        if cls.mounted:
            subprocess.run(["umount", cls.d.state_dir], capture_output=True)

    def full_in_log(self):
        return any(m in self.d.log_text() for m in FULL_MARKERS)

    def test_disk_full_mid_sync(self):
        d, server = self.d, self.server
        t0 = time.monotonic()
        d.start()
        pid = d.pid
        mptest.wait_until(self.full_in_log, 60, interval=0.2,
                          message="the store to run out of space")
        t_full = time.monotonic() - t0
        # a while full: retries meet the same wall, nothing crashes
        time.sleep(5)
        self.assertTrue(d.running(), "mailpulsed exited on a full disk")
        self.assertEqual(d.pid, pid)
        status, _, _ = d.request("GET", "/healthz", auth=False, timeout=5)
        self.assertEqual(status, 200)
        acct = d.account(ACCOUNT)
        stored_while_full = (d.folder(ACCOUNT, "INBOX") or {}).get("messages", 0)
        self.assertLess(stored_while_full, COUNT, "the tmpfs filled before the end")
        shown = " ".join(str(acct.get(k) or "") for k in ("status", "error", "last_error"))
        shown += " " + str(acct.get("sync") or "")
        self.assertTrue(any(m in shown for m in FULL_MARKERS),
                        "the account shows why while full: %r" % acct)

        subprocess.run(["mount", "-o", "remount,size=%s" % ROOMY_SIZE, d.state_dir],
                       check=True)
        t1 = time.monotonic()
        mptest.wait_until(lambda: d.folder(ACCOUNT, "INBOX")["messages"] == COUNT and
                          d.folder(ACCOUNT, "INBOX")["bootstrapped"], 120, interval=0.5,
                          message="sync to complete once space returned")
        t_done = time.monotonic() - t1
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")
        # still working afterwards
        seq = d.last_seq()
        late = dovecot.make_message(COUNT + 1, int(time.time()), tag="after-full")
        uid = server.append("INBOX", late)
        v = server.uidvalidity("INBOX")
        late_id = dovecot.public_id(ACCOUNT, "INBOX", v, uid)
        mptest.wait_until(lambda: late_id in {e["json"]["message"] for e in d.events(
            after=seq, types=["message.new"], accounts=[ACCOUNT])}, 60,
            message="new mail after the disk-full episode")
        self.assertEqual(d.pid, pid)
        self.assertEqual(d.account(ACCOUNT)["status"], "ok")

        expected = {dovecot.public_id(ACCOUNT, "INBOX", v, u) for u in server.uids("INBOX")}
        stored = [m["id"] for m in d.all_messages(ACCOUNT, limit=1000)]
        self.assertEqual(len(stored), len(set(stored)))
        self.assertEqual(set(stored), expected)
        events = d.events(after=0, accounts=[ACCOUNT])
        keys = collections.Counter(e["json"]["idempotency_key"] for e in events)
        self.assertEqual([k for k, c in keys.items() if c > 1], [], "duplicate keys")
        arrivals = collections.Counter(e["json"]["message"] for e in events
                                       if e["type"] in ("message.new", "message.synced"))
        self.assertEqual([m for m, c in arrivals.items() if c > 1], [], "reported twice")
        self.assertEqual(set(arrivals), expected)

        d.stop()
        db = sqlite3.connect(os.path.join(d.state_dir, "mailpulse.db"), timeout=10)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
        finally:
            db.close()
        print("\n  seeded %d in %.1f s; full after %.1f s with %d stored; complete %.1f s "
              "after the remount" % (COUNT, self.seed_s, t_full, stored_while_full, t_done))


if __name__ == "__main__":
    dovecot.main()

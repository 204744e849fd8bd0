"""SQLite I/O errors injected under the running daemon (tests/fault's
LD_PRELOAD shim fails writes and syncs of the store's files on command)
during a large delta sync: the batch fails and is retried, the folder's
cursor never runs ahead of the messages stored, the daemon stays up; once
the errors stop everything syncs, nothing is duplicated and
integrity_check is ok."""

import collections
import os
import sqlite3
import time
import unittest

import mptest

ACCOUNT = "io"
DELTA = 2000


class SqliteFaults(unittest.TestCase):
    def setUp(self):
        shim = os.path.join(mptest.env("MP_BUILD_DIR"), "tests", "fault", "sqlite_fault.so")
        self.assertTrue(os.path.exists(shim), shim)
        self.d = mptest.Daemon(name="iofault", settings={
            "schedule": {"max_backoff": 1},
        })
        self.control = self.d.path("fault.ctl")
        env = dict(os.environ)
        env["LD_PRELOAD"] = shim
        env["MP_FAULT_CONTROL"] = self.control
        # A sanitized daemon: its runtime need not come first.
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                               ":verify_asan_link_order=0").lstrip(":")
        self.d.env = env
        self.d.add_instance("fix", [{"id": ACCOUNT, "generate": 20, "poll_interval": 3600,
                                     "folders_available": ["INBOX"],
                                     "batch_delay_ms": 20}])
        self.log = self.d.mailbox(ACCOUNT)
        self.db = os.path.join(self.d.state_dir, "mailpulse.db")
        self.checks = 0

    def tearDown(self):
        self.fault("off")
        self.d.kill()

    def fault(self, text):
        with open(self.control + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(self.control + ".tmp", self.control)

    def injected(self):
        try:
            with open(self.control + ".count") as f:
                return int(f.read().strip() or "0")
        except (OSError, ValueError):
            return 0

    def check_cursor(self):
        """In one read snapshot: every message the op log added to INBOX up
        to the folder's cursor line is stored."""
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            conn.execute("BEGIN")
            row = conn.execute("SELECT cursor FROM folders WHERE account = ? AND name = ?",
                               (ACCOUNT, "INBOX")).fetchone()
            stored = {r[0] for r in conn.execute(
                "SELECT provider_id FROM messages WHERE account = ? AND folder = ?"
                " AND deleted = 0", (ACCOUNT, "INBOX"))}
            conn.execute("COMMIT")
        finally:
            conn.close()
        if row is None or row[0] is None:
            return
        lines = self.log.lines()
        upto = int(row[0])
        expected = {line.split("\t")[2] for line in lines[:upto]
                    if line.startswith("add\tINBOX\t")}
        missing = expected - stored
        self.assertEqual(missing, set(), "cursor %d ahead of the data: %d missing"
                         % (upto, len(missing)))
        self.checks += 1

    def more_mail(self, n):
        base = mptest.OpLog.BASE_DATE
        first = self.added
        self.added += n
        self.log.add_many([("INBOX", "io-%05d" % i, base + i, "IO %d" % i, "")
                           for i in range(first, self.added)])

    def phase(self, text, seconds):
        """Faults on for `seconds` while mail keeps arriving and syncs keep
        being asked for; the invariant is checked all along."""
        self.fault(text)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.assertTrue(self.d.running(), "daemon died under '%s'" % text)
            self.check_cursor()
            self.more_mail(50)
            try:
                self.d.sync(ACCOUNT)
            except (OSError, mptest.ApiError):
                pass
            time.sleep(0.3)
        self.fault("off")

    def test_io_errors(self):
        d = self.d
        self.fault("off")
        d.start()
        d.wait_bootstrapped(ACCOUNT, ["INBOX"])
        self.added = 0
        self.more_mail(DELTA)
        d.sync(ACCOUNT)
        mptest.wait_until(lambda: d.folder(ACCOUNT, "INBOX")["messages"] > 20, 60,
                          message="the delta to start")
        self.phase("write 20", 4)
        self.phase("all 30 ENOSPC", 3)
        self.phase("sync 100", 2)
        self.phase("write 100", 2)
        # The shim reports its count when it is next called.
        self.more_mail(1)
        d.sync(ACCOUNT)
        mptest.wait_until(lambda: self.injected() > 0, 30, message="faults injected")
        self.assertGreater(self.checks, 10)
        self.assertIn("I/O error", d.log_text())

        # Errors over: the sync completes.
        lines = len(self.log.lines())
        d.sync(ACCOUNT)
        mptest.wait_until(
            lambda: d.folder(ACCOUNT, "INBOX")["cursor"] == str(lines), 120,
            message="the delta to finish")
        self.check_cursor()
        mptest.wait_until(lambda: d.account(ACCOUNT)["status"] == "ok", 60,
                          message="the account back to ok")
        expected = set(self.log.state())
        listed = [m["id"] for m in d.all_messages(ACCOUNT, limit=500)]
        self.assertEqual(len(listed), len(set(listed)), "listing has duplicates")
        self.assertEqual(set(listed), {mptest.public_id(ACCOUNT, p) for p in expected})

        events = d.events()
        keys = collections.Counter(e["json"]["idempotency_key"] for e in events)
        self.assertEqual([k for k, c in keys.items() if c > 1], [], "duplicate keys")
        arrivals = collections.Counter(e["json"]["message"] for e in events
                                       if e["type"] in ("message.new", "message.synced"))
        self.assertEqual(set(arrivals.values()), {1})
        self.assertEqual(len(arrivals), len(expected))
        d.stop()
        conn = sqlite3.connect(self.db)
        self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        conn.close()
        print("faults injected: %d, cursor checks: %d" % (self.injected(), self.checks))


if __name__ == "__main__":
    mptest.main()

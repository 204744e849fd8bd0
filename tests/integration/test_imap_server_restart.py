"""Dovecot restarted cleanly, then killed with SIGKILL (master and every
session process), each time in the middle of a large bootstrap (issue 8,
fault suite), through a slow TCP proxy so the bootstrap lasts long enough
for both. Mail keeps being delivered around the faults. Once the
server is back the sync resumes on its own: every message on the server is
in the store exactly once, every message has exactly one new-or-synced
event, idempotency keys are unique, and nothing is stored that the server
does not hold."""

import collections
import os
import signal
import time
import unittest

import dovecot
import mptest
import tcpproxy

ACCOUNT = "alice"
BIG = 6000
FOLDERS = ["INBOX", "Archive"]


def kill_server(server):
    """SIGKILL the master and everything below it: no process gets to
    clean up, as after a crash of the whole service."""
    procs = server._descendants(server.proc.pid)
    server.proc.send_signal(signal.SIGKILL)
    for pid, _ in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
            dovecot._proc_start(p) == st for p, st in procs):
        time.sleep(0.05)


class ServerRestart(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        s = cls.server = dovecot.Dovecot(name="dovecot-restart")
        s.generate("INBOX", BIG, body_size=1200)
        s.generate("Archive", 500)
        s.index("INBOX")
        s.index("Archive")
        cls.d = mptest.Daemon(name="imap-restart", driver_dir=dovecot.imap_driver_dir(),
                              settings={"backfill": {"mode": "progressive",
                                                     "bootstrap_max": BIG},
                                        "sync": {"batch_size": 50, "ingest_batch_size": 20},
                                        "schedule": {"reconcile_interval": 3600,
                                                     "bootstrap_interval": 1,
                                                     "max_backoff": 2}})
        # a slow link (about 10 s for the bootstrap) so both faults land in it
        cls.proxy = tcpproxy.Proxy(s.imaps_port, rate=200000)
        acct = dovecot.imap_account(cls.d, s, ACCOUNT, poll_interval=5, folders=FOLDERS,
                                    port=cls.proxy.port)
        dovecot.add_imap_instance(cls.d, "mail", [acct])

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()

    def stored_count(self):
        f = self.d.folder(ACCOUNT, "INBOX")
        return f["messages"] if f else 0

    def wait_progress(self, more_than, what):
        return mptest.wait_until(lambda: (lambda n: n > more_than and n < BIG and n)(
            self.stored_count()), 90, interval=0.02, message=what)

    def test_restart_and_kill_mid_sync(self):
        d, server = self.d, self.server
        t0 = time.monotonic()
        d.start()
        pid = d.pid
        added = 0

        n = self.wait_progress(0, "bootstrap under way")
        server.restart()
        restarted_at = n
        for i in range(5):
            server.append("INBOX", dovecot.make_message(50000 + i, int(time.time()),
                                                        tag="after-restart"))
            added += 1

        n = self.wait_progress(n + 1000, "bootstrap resumed after the restart")
        kill_server(server)
        killed_at = n
        time.sleep(2.0)  # the daemon meets a dead server for a while
        server.start()
        for i in range(5):
            server.append("Archive", dovecot.make_message(51000 + i, int(time.time()),
                                                          tag="after-kill"))
            added += 1

        mptest.wait_until(lambda: self.stored_count() == BIG + 5 and
                          d.folder(ACCOUNT, "INBOX")["bootstrapped"], 180, interval=0.5,
                          message="INBOX complete after the restart and the kill")
        mptest.wait_until(lambda: d.folder(ACCOUNT, "Archive")["messages"] == 505, 120,
                          interval=0.5, message="Archive complete")
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")
        self.assertEqual(d.pid, pid)
        self.assertTrue(d.running())

        expected = set()
        for folder in FOLDERS:
            v = server.uidvalidity(folder)
            expected |= {dovecot.public_id(ACCOUNT, folder, v, u) for u in server.uids(folder)}
        self.assertEqual(len(expected), BIG + 500 + added)
        stored = [m["id"] for m in d.all_messages(ACCOUNT, limit=500)]
        self.assertEqual(len(stored), len(set(stored)), "a message stored twice")
        self.assertEqual(set(stored) - expected, set(), "stored but not on the server")
        self.assertEqual(expected - set(stored), set(), "lost")
        events = d.events(after=0, accounts=[ACCOUNT])
        keys = collections.Counter(e["json"]["idempotency_key"] for e in events)
        self.assertEqual([k for k, c in keys.items() if c > 1], [], "duplicate keys")
        arrivals = collections.Counter(e["json"]["message"] for e in events
                                       if e["type"] in ("message.new", "message.synced"))
        self.assertEqual([m for m, c in arrivals.items() if c > 1], [], "reported twice")
        self.assertEqual(set(arrivals), expected, "a message without its event")
        print("\n  restarted at %d, killed at %d of %d; all in after %.1f s"
              % (restarted_at, killed_at, BIG, time.monotonic() - t0))


if __name__ == "__main__":
    dovecot.main()

"""Fault suite: a hostile IMAP server (hostile_imap.py) attacks one account
of the real daemon while a second account syncs from a real Dovecot.

The hostile account meets every case of the cycle in turn (huge ESEARCH
ranges, an 8 MB capability line, an endless line, huge and stalled
literals, garbage after a tagged OK, stalls mid-response and mid-handshake,
BYE mid-FETCH). Asserted: the daemon survives every one; its peak RSS
stays under RSS_BOUND_MB (three times that under ASan); the hostile
account retries with a clear last_error (the log shows the budget and the
deadline refusals); the Dovecot account keeps syncing: mail appended
during the attack arrives. Bounded: about a minute, 3 at most."""

import os
import time
import unittest

import dovecot
import hostile_imap
import mptest

RSS_BOUND_MB = 150
COMMAND_TIMEOUT_S = 5
CYCLE_TIMEOUT_S = 150


def proc_status(pid, key):
    """A "kB" field of /proc/<pid>/status, in MiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return 0


def sanitized(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


class HostileImap(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hostile = hostile_imap.HostileServer()
        cls.flaky = hostile_imap.HostileServer(cases=("auth_unavailable", "normal"),
                                               repeat_last=True)
        cls.server = dovecot.Dovecot(profile="full", name="dovecot-hostile")
        cls.server.generate("INBOX", 10)
        cls.d = d = mptest.Daemon(name="imap-hostile", driver_dir=dovecot.imap_driver_dir(),
                                  settings={"schedule": {"max_backoff": 2,
                                                         "backfill_interval": 1,
                                                         "bootstrap_interval": 1}})
        secret = d.write_secret("hostile.password", b"whatever")
        bad = {"id": "hostile", "host": "127.0.0.1", "port": cls.hostile.port, "tls": "none",
               "username": "mallory", "password_file": secret, "push": "off",
               "command_timeout": COMMAND_TIMEOUT_S, "poll_interval": 5}
        flaky = dict(bad, id="flaky", port=cls.flaky.port)
        good = dovecot.imap_account(d, cls.server, "dove")
        dovecot.add_imap_instance(d, "mail", [bad, flaky, good])
        cls.server.uidvalidity("INBOX")  # index before the daemon's first EXAMINE
        d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.hostile.stop()
        cls.flaky.stop()
        cls.server.stop()

    def test_temporary_auth_failure_retries(self):
        """Dovecot's answer when its passdb cannot be read must never park
        the account in reauth: it retries (after 30 s) and recovers."""
        d = self.d
        mptest.wait_until(lambda: d.account("flaky")["status"] == "ok", 90,
                          message="flaky account recovers")
        statuses = [e["json"]["status"]
                    for e in d.events(types=["account.status"], accounts=["flaky"])]
        self.assertIn("error", statuses)
        self.assertNotIn("reauth", statuses)
        self.assertEqual(statuses[-1], "ok")
        self.assertIn("login refused for now, will retry: authentication failed: "
                      "NO [UNAVAILABLE] Temporary authentication failure", d.log_text())
        self.assertEqual([r.case for r in self.flaky.seen[:2]], ["auth_unavailable", "normal"])

    def test_attack(self):
        d, srv = self.d, self.hostile
        d.wait_bootstrapped("dove", ["INBOX"], timeout=60)
        uidvalidity = self.server.uidvalidity("INBOX")
        start = time.monotonic()
        appended = []
        n = 0
        # Mail keeps arriving at the good account while the cycle runs.
        while len(srv.seen) <= len(hostile_imap.CASES):
            self.assertTrue(d.running(), "daemon died during %s" % srv.seen[-1:])
            self.assertLess(time.monotonic() - start, CYCLE_TIMEOUT_S,
                            "the cycle did not complete: %s" % srv.seen)
            n += 1
            msg = dovecot.make_message(5000 + n, int(time.time()), tag="attack")
            appended.append(self.server.append("INBOX", msg))
            time.sleep(3)
        self.assertTrue(d.running())
        # Every case was met, and the daemon hung up on each attack in time:
        # the stalls at the deadline, the rest at once.
        for case in hostile_imap.CASES:
            recs = [r for r in srv.seen if r.case == case and r.struck is not None]
            self.assertTrue(recs, "case %s never struck: %s" % (case, srv.seen))
            mptest.wait_until(lambda: all(r.ended for r in recs), 3 * COMMAND_TIMEOUT_S,
                              message="daemon hangs up on %s" % case)
            for r in recs:
                limit = 2 * COMMAND_TIMEOUT_S + 2 if "stall" in case else COMMAND_TIMEOUT_S
                self.assertLess(r.ended - r.struck, limit, r)
                if case != "bye_mid_fetch":
                    self.assertEqual(r.ended_by, "client", r)
        endless = [r for r in srv.seen if r.case == "endless_line" and r.struck is not None]
        self.assertTrue(all(r.sent < (40 << 20) for r in endless), endless)

        # The good account got every message appended meanwhile.
        want = {dovecot.public_id("dove", "INBOX", uidvalidity, uid) for uid in appended}

        def arrived():
            have = {m["id"] for m in d.all_messages("dove", "INBOX")}
            return want <= have
        mptest.wait_until(arrived, 60, message="mail appended during the attack")

        # Bounded memory the whole time.
        pid = d.pid
        bound = RSS_BOUND_MB * (3 if sanitized(pid) else 1)
        peak = proc_status(pid, "VmHWM")
        print("hostile cycle: %d connections in %.0f s, peak RSS %d MiB (bound %d): %s"
              % (len(srv.seen), time.monotonic() - start, peak, bound, srv.seen))
        self.assertLess(peak, bound)

        # The hostile account retries, saying why; the other one is fine.
        a = d.account("hostile")
        self.assertEqual(a["status"], "error", a)
        self.assertTrue(a["last_error"], a)
        self.assertGreater(a["sync"]["failures"], 0, a)
        self.assertEqual(d.account("dove")["status"], "ok")
        log = d.log_text()
        # (A failed EXAMINE on a fresh connection is retried once on another
        # without a log line, so not every case leaves its own.)
        for words in ("UID SEARCH: server response exceeds 64 MiB",
                      "deadline waiting for the server greeting",
                      "BYE going away"):
            self.assertIn(words, log)
        self.assertNotIn("hostile: credentials", log)


if __name__ == "__main__":
    dovecot.main()

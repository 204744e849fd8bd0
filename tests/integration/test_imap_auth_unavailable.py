"""RFC 5530 codes steer login failures (issue 8, finding 7). A real
Dovecot whose password database is unavailable answers every login with
"NO [UNAVAILABLE] Temporary authentication failure"; before, that parked
the account in reauth until its configuration changed. Now the account
retries (after 30 s) and, once the passdb is back, recovers by itself:
its status goes error -> ok, never reauth, and its mail arrives."""

import unittest

import dovecot
import mptest


class AuthUnavailable(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(profile="full", name="dovecot-authgate", auth_gate=True)
        cls.server.generate("INBOX", 5)
        cls.server.uidvalidity("INBOX")  # index before the daemon's first EXAMINE
        cls.server.set_auth_unavailable(True)
        cls.d = d = mptest.Daemon(name="imap-authgate", driver_dir=dovecot.imap_driver_dir())
        dovecot.add_imap_instance(d, "mail", [dovecot.imap_account(d, cls.server, "alice")])
        d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.server.stop()

    def test_recovers_without_reauth(self):
        d = self.d
        a = mptest.wait_until(lambda: d.account("alice")["status"] != "pending" and
                              d.account("alice"), 30, message="the first login")
        self.assertEqual(a["status"], "error", a)
        self.assertIn("[UNAVAILABLE] Temporary authentication failure", a["last_error"])
        self.assertIn("will retry", a["last_error"])
        self.server.set_auth_unavailable(False)
        d.wait_bootstrapped("alice", ["INBOX"], timeout=90)
        mptest.wait_until(lambda: d.account("alice")["status"] == "ok", 30,
                          message="status ok")
        statuses = [e["json"]["status"]
                    for e in d.events(types=["account.status"], accounts=["alice"])]
        self.assertNotIn("reauth", statuses)
        self.assertEqual(len(d.all_messages("alice", "INBOX")), 5)


if __name__ == "__main__":
    dovecot.main()

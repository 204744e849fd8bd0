"""The capability profile: /v1/accounts/{id} shows what the server offers
(IDLE, CONDSTORE, QRESYNC on the full profile; none of them on the poll
profile), and `mailpulsectl probe <account>` re-detects it after the
server's capability list changed."""

import unittest

import dovecot
import mptest

PUSHY = ("IDLE", "CONDSTORE", "QRESYNC")


class Probe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.full = dovecot.Dovecot(name="dovecot-probe-full", profile="full")
        cls.poll = dovecot.Dovecot(name="dovecot-probe-poll", profile="poll")
        for s in (cls.full, cls.poll):
            s.generate("INBOX", 3)
        d = cls.d = mptest.Daemon(name="imap-probe", driver_dir=dovecot.imap_driver_dir())
        dovecot.add_imap_instance(d, "mail", [
            dovecot.imap_account(d, cls.full, "full", poll_interval=3600, folders=["INBOX"]),
            dovecot.imap_account(d, cls.poll, "poll", poll_interval=3600, folders=["INBOX"]),
        ])
        d.start()

    def caps(self, acct):
        profile = self.d.account(acct)["profile"]
        return dovecot.profile_caps(profile) if profile else set()

    def wait_profile(self, acct):
        return mptest.wait_until(lambda: self.caps(acct), 60, message="%s profile" % acct)

    def test_1_profiles_follow_the_server(self):
        full = self.wait_profile("full")
        for c in PUSHY + ("UIDPLUS", "SPECIAL-USE"):
            self.assertIn(c, full)
        poll = self.wait_profile("poll")
        for c in dovecot.PUSH_CAPS:
            self.assertNotIn(c, poll)
        self.assertIn("UIDPLUS", poll)
        out = self.d.ctl("account", "full")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("IDLE", out.stdout.upper())

    def test_2_probe_redetects(self):
        d, server = self.d, self.full
        self.wait_profile("full")
        d.wait_bootstrapped("full", ["INBOX"])
        # the server loses its push extensions
        server.profile = "poll"
        server._write_conf()
        server.restart()
        self.assertNotIn("IDLE", server.capabilities())
        r = d.ctl("probe", "full")
        self.assertEqual(r.returncode, 0, r.stderr)
        mptest.wait_until(lambda: not (set(PUSHY) & self.caps("full")), 60,
                          message="profile without IDLE/CONDSTORE/QRESYNC after probe")
        # and back
        server.profile = "full"
        server._write_conf()
        server.restart()
        r = d.ctl("probe", "full")
        self.assertEqual(r.returncode, 0, r.stderr)
        mptest.wait_until(lambda: set(PUSHY) <= self.caps("full"), 60,
                          message="profile with IDLE/CONDSTORE/QRESYNC after probe")

    def test_3_probe_unknown_account(self):
        r = self.d.ctl("probe", "nobody-here")
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    dovecot.main()

"""TLS verification is always on: with the test CA as ca_file the account
connects (implicit TLS and STARTTLS); a server certificate for the wrong
host name is refused, and so is a certificate from a CA the account does
not trust (the system store, or another CA as ca_file). A refused account
shows an error status naming the certificate problem, stores nothing, and
never gets as far as logging in (the password is never sent)."""

import re
import unittest

import dovecot
import mptest

CERT_WORDS = re.compile(r"certificat|verif|host ?name|x509|tls|ssl", re.I)


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.good = dovecot.Dovecot(name="dovecot-tls-good")
        cls.wrong = dovecot.Dovecot(name="dovecot-tls-wrong", cert_host="wrong.example")
        cls.other_ca = dovecot.TestCA(name="unrelated test CA")
        for server in (cls.good, cls.wrong):
            server.generate("INBOX", 5)
        d = cls.d = mptest.Daemon(name="imap-tls", driver_dir=dovecot.imap_driver_dir(),
                                  settings={"schedule": {"max_backoff": 5}})
        accounts = [
            dovecot.imap_account(d, cls.good, "good", poll_interval=3600, folders=["INBOX"]),
            dovecot.imap_account(d, cls.good, "starttls", tls="starttls", poll_interval=3600,
                                 folders=["INBOX"]),
            dovecot.imap_account(d, cls.wrong, "wrongname", poll_interval=3600,
                                 folders=["INBOX"]),
            dovecot.imap_account(d, cls.good, "systemstore", ca_file=False, poll_interval=3600,
                                 folders=["INBOX"]),
            dovecot.imap_account(d, cls.good, "otherca", ca_file=cls.other_ca.pem,
                                 poll_interval=3600, folders=["INBOX"]),
        ]
        dovecot.add_imap_instance(d, "mail", accounts)
        d.start()

    @classmethod
    def tearDownClass(cls):
        cls.other_ca.cleanup()

    def test_trusted_ca_connects(self):
        for acct in ("good", "starttls"):
            self.d.wait_bootstrapped(acct, ["INBOX"], timeout=60)
            mptest.wait_until(lambda: self.d.folder(acct, "INBOX")["messages"] == 5, 60,
                              message="%s loaded" % acct)
            a = self.d.account(acct)
            self.assertEqual(a["status"], "ok", a)

    def refused(self, acct):
        a = mptest.wait_until(
            lambda: (self.d.account(acct)["status"] not in ("ok", "new", "pending", None) and
                     self.d.account(acct)["last_error"] and self.d.account(acct)), 60,
            message="%s refused" % acct)
        self.assertNotEqual(a["status"], "ok", a)
        self.assertRegex(a["last_error"], CERT_WORDS)
        folders = a.get("folders") or []
        self.assertEqual(sum(f["messages"] for f in folders), 0, folders)
        listed = self.d.accounts()[acct]
        self.assertEqual(listed["status"], a["status"], listed)
        return a

    def test_wrong_hostname_refused(self):
        self.refused("wrongname")
        self.assertNotIn("Login: user=<alice>", self.wrong.log_text(),
                         "the password went to a server with the wrong name")

    def test_unknown_ca_refused(self):
        self.refused("systemstore")
        self.refused("otherca")

    def test_secret_never_logged(self):
        self.d.wait_bootstrapped("good", ["INBOX"], timeout=60)
        self.assertNotIn(self.good.users["alice"], self.d.log_text())


if __name__ == "__main__":
    dovecot.main()

"""`mailpulsectl gmail-setup` end to end: the real daemon, the real
mailpulsectl and the fake Gmail/Pub/Sub (fake_gmail.py), one gmail instance
per situation an admin meets:

- gpush: a complete pubsub-push setup passes, the unsigned probe of the
  public URL is refused by the push listener (reachable; a --public-url
  where nothing listens, or where another server answers, fails), the driver
  inserts a test message, the push reaches the daemon and the live test
  reports the latency from insert to message.new (exit 0);
- gnogrant: the topic does not let gmail-api-push@ publish: the publisher
  check fails naming the grant, the gcloud script is printed, exit 1;
- gaud: the push subscription signs for another audience: fails, exit 1;
- gpull: pubsub-pull passes end to end (the pull thread carries the push);
- gnoins: credentials without an insert scope: the live test asks for a
  message, and succeeds once the test delivers one to the fake;
- goff: a revoked refresh token (invalid_grant): credentials fail with
  "re-authorize", exit 1.
"""

import os
import re
import subprocess
import sys
import threading
import unittest

import mptest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_gmail  # noqa: E402

CLIENT, SECRET = "cid.apps.googleusercontent.com", "client-secret"
PROJECT = "projects/fake-project"
FULL = (fake_gmail.SCOPE_READONLY, fake_gmail.SCOPE_INSERT, fake_gmail.SCOPE_PUBSUB)
NO_INSERT = (fake_gmail.SCOPE_READONLY, fake_gmail.SCOPE_PUBSUB)
GRANT = "gmail-api-push@system.gserviceaccount.com"


def topic(name):
    return "%s/topics/%s" % (PROJECT, name)


def sub(name):
    return "%s/subscriptions/%s" % (PROJECT, name)


def audience(instance):
    return "https://mailpulse.example/push/" + instance


def raw(subject, to):
    return (b"From: Ann <ann@example.org>\r\nTo: %s\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody\r\n" % (to.encode(), subject.encode(), subject.encode()))


# instance -> (account id, email, scopes, push mode)
ACCOUNTS = {
    "gpush": ("ok", "ok@example.com", FULL, "pubsub-push"),
    "gnogrant": ("ng", "ng@example.com", FULL, "pubsub-push"),
    "gaud": ("au", "au@example.com", FULL, "pubsub-push"),
    "gpull": ("pl", "pl@example.com", FULL, "pubsub-pull"),
    "gnoins": ("ni", "ni@example.com", NO_INSERT, "pubsub-push"),
    "goff": ("bad", "bad@example.com", FULL, "off"),
}


class GmailSetup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="gmail_setup",
                                  driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"))
        cls.fake = fake = fake_gmail.FakeGmail(pull_max_wait=1.0)
        fake.start()
        fake.add_client(CLIENT, SECRET)
        secret = d.write_secret("client_secret", SECRET.encode() + b"\n")
        cls.tokens = {}
        for inst, (acct, email, scopes, mode) in ACCOUNTS.items():
            fake.add_user(email)
            fake.add_message(email, raw("before setup", email), ["INBOX"])
            token = fake.add_refresh_token(CLIENT, email, scopes)
            cls.tokens[inst] = token
            rt = d.write_secret(acct + ".rt", token.encode() + b"\n")
            keys = dict(client_id=CLIENT, client_secret_file=secret, api_url=fake.url,
                        token_url=fake.token_url, pubsub_url=fake.url,
                        certs_url=fake.certs_url, push=mode)
            if mode != "off":
                keys["topic"] = topic(inst)
                fake.create_topic(topic(inst), gmail_can_publish=inst != "gnogrant")
            if mode == "pubsub-push":
                keys["push_audience"] = audience(inst)
                keys["push_service_account"] = fake.push_service_account
            if mode == "pubsub-pull":
                keys["subscription"] = sub(inst)
                fake.create_subscription(sub(inst), topic(inst), ack_deadline=600)
            d.write_instance(inst, mptest.render_instance(
                "gmail", [{"id": acct, "email": email, "refresh_token_file": rt,
                           "poll_interval": 3600}], **keys))
        fake.revoke_refresh_token(cls.tokens["goff"])
        d.start()
        # Pub/Sub pushes to the daemon's listener (plain http on loopback:
        # the fake does not check that an endpoint is https).
        for inst in ("gpush", "gnogrant", "gnoins"):
            fake.create_subscription(sub(inst), topic(inst), push_endpoint=cls.endpoint(inst),
                                     audience=audience(inst))
        fake.create_subscription(sub("gaud"), topic("gaud"), push_endpoint=cls.endpoint("gaud"),
                                 audience="https://elsewhere.example/push/gaud")
        for inst in ("gpush", "gaud", "gpull", "gnoins"):
            acct, email = ACCOUNTS[inst][:2]
            d.wait_bootstrapped(acct, ["INBOX"])
            mptest.wait_until(lambda e=email: fake.watch_state(e) is not None, 60,
                              message="watch of %s" % email)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()

    @classmethod
    def endpoint(cls, inst):
        return "http://%s:%d/push/%s" % (cls.d.host, cls.d.port, inst)

    def setup_run(self, acct, *extra, timeout=150):
        return self.d.ctl("gmail-setup", acct, "--timeout", "60", *extra, timeout=timeout)

    def line(self, out, outcome, name):
        """The verdict line `name` with `outcome` (check table or gmail-setup's
        own lines), or fail."""
        for l in out.stdout.splitlines():
            if re.match(r"^%s\s+%s\s" % (outcome, re.escape(name)), l):
                return l
        self.fail("no %s %s line in:\n%s\n%s" % (outcome, name, out.stdout, out.stderr))

    def assert_script(self, out, inst):
        self.assertIn("gcloud pubsub topics create %s" % topic(inst), out.stdout)
        self.assertIn("gcloud pubsub topics add-iam-policy-binding %s" % topic(inst),
                      out.stdout)
        self.assertIn("--member=serviceAccount:%s --role=roles/pubsub.publisher" % GRANT,
                      out.stdout)

    def test_complete_push_setup(self):
        before = set(self.fake.users["ok@example.com"].messages)
        out = self.setup_run("ok")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        for name in ("credentials", "profile", "scopes", "topic", "publisher",
                     "push_subscription", "watch"):
            self.line(out, "OK", name)
        self.assertIn("can insert", self.line(out, "OK", "scopes"))
        self.assertIn(self.endpoint("gpush"), self.line(out, "OK", "push_subscription"))
        # The public URL came from the subscription; the unsigned probe was
        # refused by the push listener.
        self.assertIn("http://%s:%d (from the push subscription" % (self.d.host, self.d.port),
                      self.line(out, "OK", "public_url"))
        self.assertIn("refuses unsigned pushes (401)", self.line(out, "OK", "push_endpoint"))
        # The script for push mode, with the configured names.
        self.assert_script(out, "gpush")
        self.assertIn("--push-endpoint=%s" % self.endpoint("gpush"), out.stdout)
        self.assertIn("--push-auth-service-account=%s" % self.fake.push_service_account,
                      out.stdout)
        self.assertIn("--push-auth-token-audience=%s" % audience("gpush"), out.stdout)
        # The live test: one message inserted, seen as message.new, latency.
        inserted = set(self.fake.users["ok@example.com"].messages) - before
        self.assertEqual(len(inserted), 1)
        msg = self.fake.users["ok@example.com"].messages[inserted.pop()]
        self.assertEqual(msg.labels, ["INBOX", "UNREAD"])
        self.assertTrue(msg.header("Subject").startswith("mailpulse live test "))
        self.assertIn(msg.id, self.line(out, "OK", "live_test"))
        new = self.line(out, "OK", "message.new")
        self.assertRegex(new, r"\d+ ms after the insert")
        self.assertIn(msg.header("Subject"), new)
        self.assertIn("a push arrived", self.line(out, "OK", "push"))
        self.assertIn("Ready", out.stdout)
        # The profile keeps the setup parameters and the endpoint found.
        profile = self.d.account("ok")["profile"]
        self.assertEqual(profile["push_endpoint"], self.endpoint("gpush"))
        self.assertEqual(profile["topic"], topic("gpush"))

    def test_public_url_that_is_not_mailpulse(self):
        # Nothing listens: a connection error, with the reason.
        out = self.setup_run("ok", "--public-url", "http://127.0.0.1:1/", "--no-live")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("http://127.0.0.1:1 (--public-url)", self.line(out, "OK", "public_url"))
        self.assertIn("cannot reach http://127.0.0.1:1/push/gpush",
                      self.line(out, "FAIL", "push_endpoint"))
        self.assertIn("--push-endpoint=http://127.0.0.1:1/push/gpush", out.stdout)
        self.assertIn("run the script above, then run gmail-setup again", out.stdout)
        # Another HTTP server there (the fake answers 404 for /push/...).
        out = self.setup_run("ok", "--public-url", self.fake.url + "/push/gpush", "--no-live")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("answered 404: no push listener for instance 'gpush'",
                      self.line(out, "FAIL", "push_endpoint"))

    def test_missing_publisher_grant(self):
        out = self.setup_run("ng")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        fail = self.line(out, "FAIL", "publisher")
        self.assertIn("roles/pubsub.publisher", fail)
        self.assertIn("serviceAccount:" + GRANT, fail)
        self.assert_script(out, "gnogrant")
        self.assertIn("run the script above, then run gmail-setup again", out.stdout)
        self.assertNotIn("== live test ==", out.stdout)
        # Once the grant is given the publisher check passes.
        self.fake.set_topic_iam(topic("gnogrant"), [
            {"role": "roles/pubsub.publisher", "members": ["serviceAccount:" + GRANT]}])
        out = self.setup_run("ng", "--no-live")
        self.line(out, "OK", "publisher")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("live test skipped", out.stdout)

    def test_wrong_audience(self):
        out = self.setup_run("au")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        fail = self.line(out, "FAIL", "push_subscription")
        self.assertIn("https://elsewhere.example/push/gaud", fail)
        self.assertIn(audience("gaud"), fail)
        self.assertIn("modify-push-config", fail)
        self.assertIn("run the script above, then run gmail-setup again", out.stdout)

    def test_pull_mode(self):
        out = self.setup_run("pl")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(sub("gpull"), self.line(out, "OK", "pull_subscription"))
        self.assertIn("gcloud pubsub subscriptions create %s --topic=%s"
                      % (sub("gpull"), topic("gpull")), out.stdout)
        self.assertIn("--member=user:pl@example.com --role=roles/pubsub.subscriber",
                      out.stdout)
        self.assertNotIn("push_endpoint", out.stdout)
        self.assertRegex(self.line(out, "OK", "message.new"), r"\d+ ms after the insert")
        self.line(out, "OK", "push")

    def test_no_insert_scope_asks_for_a_message(self):
        ctl = mptest.env("MAILPULSECTL")
        sock = os.path.join(self.d.state_dir, "mailpulsed.sock")
        proc = subprocess.Popen([ctl, "-s", sock, "gmail-setup", "ni", "--timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        asked = threading.Event()

        def read():
            for l in proc.stdout:
                lines.append(l)
                if l.startswith("Send a message to ni@example.com now"):
                    asked.set()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if not asked.wait(90):
            proc.kill()
            self.fail("gmail-setup never asked for a message:\n" + "".join(lines))
        self.fake.add_message("ni@example.com", raw("sent by hand", "ni@example.com"),
                              ["INBOX", "UNREAD"])
        try:
            rc = proc.wait(90)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(10)
        text = "".join(lines)
        errors = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        self.assertEqual(rc, 0, text + errors)
        self.assertIn("no insert scope", text)
        self.assertRegex(text, r"SKIP\s+live_test\s+the credentials cannot insert")
        self.assertRegex(text, r"OK\s+message.new\s+\S+ \"sent by hand\" \d+ ms after the "
                               r"request")
        self.assertRegex(text, r"OK\s+push\s+a push arrived")

    def test_invalid_grant(self):
        out = self.setup_run("bad")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        fail = self.line(out, "FAIL", "credentials")
        self.assertIn("re-authorize", fail)
        self.assertIn("invalid_grant", fail)
        self.line(out, "SKIP", "profile")
        self.assertIn("fix what failed above, then run gmail-setup again", out.stdout)

    def test_not_a_gmail_account_and_usage(self):
        out = self.d.ctl("gmail-setup", "nobody")
        self.assertEqual(out.returncode, 2, out.stderr)
        out = self.d.ctl("gmail-setup")
        self.assertEqual(out.returncode, 2)
        self.assertIn("missing argument", out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)

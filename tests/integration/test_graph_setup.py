"""`mailpulsectl graph-setup` and graph.so's preflight `check` end to end:
the real daemon, the real mailpulsectl and the local fake Graph
(fake_graph.py), one graph instance per situation an admin meets:

- olok: a complete setup: the check's credentials/mailbox/permissions/push
  pass, the CLI's own validation round trip on both URLs echoes an odd
  token, the subscriptions are printed with their expiry, the driver
  creates a test message in the inbox (createMessage), its message.new is
  matched, the latency is printed and a change notification came (exit
  0); with createMessage refused (403) the live test is SKIP and a message
  sent by hand completes it; a 403 on the inbox read fails the mailbox
  check naming Mail.Read and prints the app registration steps (exit 1);
- olpoll: no public_url: push WARN "polling only", exit 0 ("ready,
  polling");
- oldead: public_url where nothing listens: the round trip fails with the
  reason, exit 1;
- olother: public_url is another HTTP server (the fake itself): the round
  trip fails (not the push listener), exit 1;
- olecho: public_url is a server that answers the validation request
  sloppily (the token still percent-encoded; the decoded token as
  text/html): both fail, naming what is wrong;
- olsecret: a wrong client secret (invalid_client): credentials fail
  saying to create a new client secret, exit 1.
"""

import http.server
import os
import re
import socket
import sys
import threading
import time
import unittest
import urllib.parse

import mptest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_graph  # noqa: E402

CLIENT, SECRET = "11111111-2222-3333-4444-555555555555", "app-secret"


def raw(subject, to):
    return (b"From: Ann <ann@example.org>\r\nTo: %s\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody\r\n" % (to.encode(), subject.encode(),
                               subject.replace(" ", ".").encode()))


# instance -> (account id, user, public_url kind, secret)
ACCOUNTS = {
    "olok": ("ok", "ok@contoso.example", "daemon", SECRET),
    "olpoll": ("poll", "poll@contoso.example", None, SECRET),
    "oldead": ("dead", "dead@contoso.example", "dead", SECRET),
    "olother": ("other", "other@contoso.example", "fake", SECRET),
    "olecho": ("echo", "echo@contoso.example", "echo", SECRET),
    "olsecret": ("sec", "sec@contoso.example", None, "not-the-secret"),
}


class SloppyEcho(http.server.BaseHTTPRequestHandler):
    """Answers Graph's validation request the ways a wrong endpoint does:
    the token as it came in the URL (still encoded) on the notification URL,
    the decoded token as HTML on the lifecycle URL."""

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        raw_token = url.query.partition("validationToken=")[2].encode()
        decoded = urllib.parse.parse_qs(url.query).get("validationToken", [""])[0].encode()
        lifecycle = url.path.endswith("/lifecycle")
        body = decoded if lifecycle else raw_token
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if lifecycle else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class GraphSetup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The daemon's port is chosen first: public_url points at it.
        cls.port = port = free_port()
        cls.d = d = mptest.Daemon(name="graph_setup",
                                  driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
                                  settings={"http": {"listen": "127.0.0.1:%d" % port}})
        cls.fake = fake = fake_graph.FakeGraph()
        fake.start()
        # The app may read and write (the live test creates its message).
        fake.add_client(CLIENT, SECRET, roles=("Mail.Read", "Mail.ReadWrite"))
        cls.echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SloppyEcho)
        threading.Thread(target=cls.echo.serve_forever, daemon=True).start()
        publics = {"daemon": "http://127.0.0.1:%d" % port, "dead": "http://127.0.0.1:1",
                   "fake": fake.url, "echo": "http://127.0.0.1:%d" % cls.echo.server_port}
        for inst, (acct, user, public, secret) in ACCOUNTS.items():
            fake.add_user(user)
            fake.add_message(user, raw("before setup", user), folder="inbox")
            keys = {"tenant": fake.tenant_id, "client_id": CLIENT,
                    "api_url": fake.api_url, "login_url": fake.login_url,
                    "client_secret_file": d.write_secret(inst + ".secret",
                                                         secret.encode() + b"\n")}
            if public is not None:
                keys["public_url"] = publics[public]
            d.write_instance(inst, mptest.render_instance(
                "graph", [{"id": acct, "user": user, "poll_interval": 3600}], **keys))
        d.start()
        for inst in ("olok", "olpoll", "oldead", "olother"):
            d.wait_bootstrapped(ACCOUNTS[inst][0], ["Inbox"])
        mptest.wait_until(lambda: d.account("ok")["push_live"], 60, message="push live")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()
        cls.echo.shutdown()

    def setup_run(self, acct, *extra, timeout=150):
        return self.d.ctl("graph-setup", acct, "--timeout", "60", *extra, timeout=timeout)

    def line(self, out, outcome, name):
        """The verdict line `name` with `outcome` (check table or
        graph-setup's own lines), or fail."""
        for l in out.stdout.splitlines():
            if re.match(r"^%s\s+%s\s" % (outcome, re.escape(name)), l):
                return l
        self.fail("no %s %s line in:\n%s\n%s" % (outcome, name, out.stdout, out.stderr))

    def test_complete_setup(self):
        user = "ok@contoso.example"
        creates = self.fake.calls("messages.create", user)
        out = self.setup_run("ok")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("client credentials", self.line(out, "OK", "credentials"))
        self.assertIn("inbox of %s is readable" % user, self.line(out, "OK", "mailbox"))
        self.assertIn("Mail.Read (application permission) verified",
                      self.line(out, "OK", "permissions"))
        base = "http://127.0.0.1:%d/push/olok" % self.port
        self.assertIn("all known to Graph", self.line(out, "OK", "push"))
        # The CLI's own round trip, on both URLs Graph calls.
        lines = [l for l in out.stdout.splitlines() if l.startswith("OK ")
                 and "echoed the validation token" in l]
        self.assertEqual(len(lines), 2, out.stdout)
        self.assertIn(base + " echoed", lines[0])
        self.assertIn(base + "/lifecycle echoed", lines[1])
        # Each subscription with its expiry, as the fake holds them.
        subs = self.fake.subscriptions_of(user)
        self.assertTrue(subs)
        printed = [l for l in out.stdout.splitlines() if re.match(r"^OK\s+subscription\s", l)]
        self.assertEqual(len(printed), len(subs), out.stdout)
        for s in subs:
            self.assertTrue(any(s["id"] in l and "expires 20" in l for l in printed),
                            (s, printed))
        # The live test: one message created in the inbox through Graph,
        # its id in the detail, its message.new and the latency.
        self.assertEqual(self.fake.calls("messages.create", user), creates + 1)
        live = self.line(out, "OK", "live_test")
        mid = re.search(r"test message (\S+) created", live).group(1)
        self.assertEqual(self.fake.message(user, mid)["folder_id"],
                         self.fake.folder_id(user, "inbox"))
        new = self.line(out, "OK", "message.new")
        self.assertIn("mailpulse live test 20", new)
        self.assertRegex(self.line(out, "OK", "latency"), r"-?\d+ ms from the create")
        self.assertIn("a change notification arrived", self.line(out, "OK", "notification"))
        self.assertIn("Ready: Outlook change notifications reach mailpulse", out.stdout)
        # The profile carries the setup parameters, never the secret.
        profile = self.d.account("ok")["profile"]
        self.assertEqual(profile["user"], user)
        self.assertEqual(profile["auth"], "app")
        self.assertEqual(profile["notification_url"], base)
        self.assertNotIn(SECRET, str(self.d.account("ok")))
        # `mailpulsectl account` lists each subscription and its expiry.
        acct = self.d.ctl("account", "ok")
        self.assertEqual(acct.returncode, 0, acct.stderr)
        for s in subs:
            self.assertRegex(acct.stdout, r"subscribed:\s+.*%s  expires 20" % re.escape(s["id"]))

    def test_live_test_skipped_when_create_refused(self):
        user = "ok@contoso.example"
        creates = self.fake.calls("messages.create", user)
        self.fake.fail_next("messages.create", 403, user=user, code="ErrorAccessDenied")

        def deliver():
            # Once the driver's create was refused, "send" a message by hand.
            mptest.wait_until(lambda: self.fake.calls("messages.create", user) > creates,
                              60, message="the refused create")
            time.sleep(0.5)
            self.fake.add_message(user, raw("sent by hand", user), folder="inbox")
        t = threading.Thread(target=deliver)
        t.start()
        out = self.setup_run("ok")
        t.join()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        skip = self.line(out, "SKIP", "live_test")
        self.assertIn("Mail.ReadWrite", skip)
        self.assertIn("Send a message to %s now" % user, out.stdout)
        self.assertIn("sent by hand", self.line(out, "OK", "message.new"))
        self.assertRegex(self.line(out, "OK", "latency"), r"ms from the request")

    def test_mailbox_403_names_the_permission(self):
        user = "ok@contoso.example"
        self.fake.fail_next("mailFolders.get", 403, user=user, code="ErrorAccessDenied")
        out = self.setup_run("ok")
        self.fake.clear_failures()
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        fail = self.line(out, "FAIL", "mailbox")
        self.assertIn("the app lacks Mail.Read (application permission + admin consent)", fail)
        self.line(out, "SKIP", "permissions")
        self.assertIn("== app registration", out.stdout)
        self.assertIn("Application permissions: Mail.Read", out.stdout)
        self.assertIn("Setup incomplete", out.stdout)
        self.assertNotIn("== live test ==", out.stdout)

    def test_no_public_url_polls(self):
        out = self.setup_run("poll")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("no public_url: polling only", self.line(out, "WARN", "push"))
        self.assertIn("Ready: the account syncs by polling", out.stdout)
        # `check` says the same with its own exit code (a WARN is no failure).
        chk = self.d.ctl("check", "poll", timeout=90)
        self.assertEqual(chk.returncode, 0, chk.stdout + chk.stderr)
        self.assertIn("polling only", self.line(chk, "WARN", "push"))

    def test_public_url_where_nothing_listens(self):
        out = self.setup_run("dead")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        fail = self.line(out, "FAIL", "validation")
        self.assertIn("cannot reach http://127.0.0.1:1/push/oldead", fail)
        self.assertIn("no subscription is stored yet", self.line(out, "WARN", "push"))
        self.assertIn("Setup incomplete", out.stdout)

    def test_public_url_that_is_not_the_push_listener(self):
        out = self.setup_run("other")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        fail = self.line(out, "FAIL", "validation")
        self.assertIn("%s/push/olother" % self.fake.url, fail)
        self.assertNotIn("echoed the validation token", out.stdout)

    def test_sloppy_echo_fails(self):
        out = self.setup_run("echo")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        fails = [l for l in out.stdout.splitlines() if re.match(r"^FAIL\s+validation\s", l)]
        self.assertEqual(len(fails), 2, out.stdout)
        self.assertIn("/push/olecho answered 200 text/plain but not with the decoded token",
                      fails[0])
        self.assertIn("/push/olecho/lifecycle answered 200 with Content-Type text/html",
                      fails[1])

    def test_invalid_client(self):
        out = self.setup_run("sec")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        fail = self.line(out, "FAIL", "credentials")
        self.assertIn("invalid_client", fail)
        self.assertIn("create a new client secret", fail)
        self.assertNotIn(SECRET, out.stdout + out.stderr)
        self.line(out, "SKIP", "mailbox")
        self.assertIn("Certificates & secrets > New client secret", out.stdout)

    def test_not_a_graph_account(self):
        out = self.d.ctl("graph-setup", "nosuch")
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main()

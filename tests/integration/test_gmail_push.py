"""gmail.so push in pubsub-push mode, through the real daemon and the fake
Gmail/Pub/Sub (fake_gmail.py): a watch on INBOX and SENT is enrolled; a
push signed like Pub/Sub's is verified against the fake's JWKS, its hint
stored and a sync run (message.new on /v1/events); every forged token is
refused with 401/403 (an unknown kid with 503, so Pub/Sub redelivers once
the keys are refetched) with no hint and no sync; a malformed envelope is
400; a mailbox no account has is acknowledged (2xx) without a sync; a
duplicate Pub/Sub messageId gives one sync and one event; pushes arriving
while a sync runs never start a second walk of the account's history at
the same time; a push that outran history is walked again until history
has the message; the watch is
renewed about daily, and a lapsed one is stopped (users.stop) and made
again (debug clock)."""

import json
import os
import re
import sqlite3
import sys
import threading
import unittest

import mptest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_gmail  # noqa: E402

CLIENT, SECRET = "cid.apps.googleusercontent.com", "client-secret"
TOPIC = "projects/fake-project/topics/gmail"
AUDIENCE = "https://mailpulse.example/push/gmail"
INSTANCE = "gmail"
HOUR_MS = 3600 * 1000
FORGERIES = {"alg_none": 401, "hs256": 401, "no_kid": 401, "bad_signature": 401,
             "wrong_iss": 401, "expired": 401, "future_iat": 401, "no_auth": 401,
             "wrong_aud": 403, "wrong_email": 403, "unverified_email": 403}


def raw(subject):
    return (b"From: Ann <ann@example.org>\r\nTo: me@example.com\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody of %s\r\n" % (subject.encode(), subject.encode(), subject.encode()))


def metrics(d):
    _, _, data = d.request("GET", "/metrics")
    out = {}
    for line in data.decode().splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\d+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = int(m.group(3))
    return out


class GmailPubsubPush(unittest.TestCase):
    A = "gm"
    EMAIL = "me@example.com"

    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(
            name="gmail_push", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
            settings={"schedule": {"push_renew_interval": 1},
                      "debug": {"clock_control": True}})
        cls.fake = fake = fake_gmail.FakeGmail()
        fake.start()
        fake.add_client(CLIENT, SECRET)
        fake.create_topic(TOPIC)
        fake.add_user(cls.EMAIL)
        token = fake.add_refresh_token(CLIENT, cls.EMAIL)
        rt = d.write_secret("gm.rt", token.encode() + b"\n")
        secret = d.write_secret("gmail.client_secret", SECRET.encode() + b"\n")
        cls.old = fake.add_message(cls.EMAIL, raw("old"), ["INBOX"])
        d.write_instance(INSTANCE, mptest.render_instance(
            "gmail", [{"id": cls.A, "email": cls.EMAIL, "refresh_token_file": rt,
                       "poll_interval": 3600}],
            client_id=CLIENT, client_secret_file=secret, api_url=fake.url,
            token_url=fake.token_url, pubsub_url=fake.url, certs_url=fake.certs_url,
            push="pubsub-push", topic=TOPIC, push_audience=AUDIENCE,
            push_service_account=fake.push_service_account))
        d.start()
        d.wait_bootstrapped(cls.A, ["INBOX", "SENT"])
        mptest.wait_until(lambda: fake.watch_state(cls.EMAIL) is not None, 60,
                          message="watch enrolled")
        mptest.wait_until(lambda: not d.account(cls.A)["sync"]["running"], 60,
                          message="first sync finished")
        cls.url = "http://%s:%d/push/%s" % (d.host, d.port, INSTANCE)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()

    def push(self, **kw):
        kw.setdefault("email_addr", self.EMAIL)
        kw.setdefault("audience", AUDIENCE)
        status, body, _ = self.fake.push(self.url, **kw)
        return status, body

    def idle(self):
        mptest.wait_until(lambda: not self.d.account(self.A)["sync"]["running"], 60,
                          message="sync idle")

    def new_events(self, seq, mid):
        pid = mptest.public_id(self.A, mid)
        return [e for e in self.d.events(accounts=[self.A], types=["message.new"], after=seq)
                if e["json"]["message"] == pid]

    def test_1_watch_enrolled_on_inbox_and_sent(self):
        w = self.fake.watch_state(self.EMAIL)
        self.assertEqual(w["topic"], TOPIC)
        self.assertEqual(sorted(w["labels"]), ["INBOX", "SENT"])
        self.assertEqual(w["behavior"], "include")
        acct = self.d.account(self.A)
        self.assertTrue(acct["push_live"], acct.get("push_state"))

    def test_1b_ctl_gmail_status(self):
        # The "Manage" view: the watch the host stores, in words.
        acct = self.d.account(self.A)
        out = self.d.ctl("gmail-status", self.A)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = dict((l.split(":", 1)[0], l.split(":", 1)[1].strip())
                     for l in out.stdout.splitlines() if ":" in l)
        self.assertEqual(lines["account"], self.A)
        self.assertEqual(lines["topic"], TOPIC)
        self.assertTrue(lines["mode"].startswith(acct["push_state"]), lines["mode"])
        self.assertIn("push delivering", lines["mode"])
        # expires_at (Unix seconds) as a date, not a number.
        self.assertRegex(lines["watch expires"], r"^\d{4}-\d\d-\d\dT")
        for key in ("last push", "last notification", "last error", "watch renewed"):
            self.assertIn(key, lines)
        # --json: the account object itself.
        out = self.d.ctl("--json", "gmail-status", self.A)
        self.assertEqual(out.returncode, 0, out.stderr)
        obj = json.loads(out.stdout)
        self.assertEqual(obj["id"], self.A)
        self.assertEqual(obj["driver"], "gmail")
        self.assertEqual(obj["subscription"]["provider_id"], TOPIC)
        # An unknown account is the daemon's 404.
        out = self.d.ctl("gmail-status", "nobody")
        self.assertEqual(out.returncode, 1)
        self.assertIn("404", out.stderr)

    def test_2_signed_push_syncs(self):
        self.idle()
        seq = self.d.last_seq()
        mid = self.fake.add_message(self.EMAIL, raw("pushed"), ["INBOX", "UNREAD"])
        status, _ = self.push()
        self.assertEqual(status, 204)
        mptest.wait_until(lambda: self.new_events(seq, mid), 30,
                          message="message.new after the push")
        # The key set was fetched from certs_url (at start, and cached).
        self.assertGreaterEqual(self.fake.calls("certs"), 1)

    def test_3_forgeries_refused_nothing_recorded(self):
        self.idle()
        history = self.fake.calls("history.list")
        runs = self.d.account(self.A)["sync"]["runs"]
        rejected = metrics(self.d).get("mailpulse_push_rejected_total", 0)
        mid = self.fake.add_message(self.EMAIL, raw("forged"), ["INBOX"])
        seq = self.d.last_seq()
        for forge, expected in FORGERIES.items():
            status, body = self.push(forge=forge)
            self.assertEqual(status, expected, "%s answered %d %r" % (forge, status, body))
        status, _ = self.push(forge="unknown_kid")
        self.assertEqual(status, 503, "unknown kid: redeliver after the refetch")
        self.assertEqual(metrics(self.d)["mailpulse_push_rejected_total"],
                         rejected + len(FORGERIES) + 1)
        # No forged push ran a sync nor stored a hint: the account's runs and
        # history calls did not move, and the new message is not known yet.
        self.assertEqual(self.d.account(self.A)["sync"]["runs"], runs)
        self.assertEqual(self.fake.calls("history.list"), history)
        self.assertEqual(self.new_events(seq, mid), [])
        # A real push afterwards finds it (the forged ones changed nothing).
        self.assertEqual(self.push()[0], 204)
        mptest.wait_until(lambda: self.new_events(seq, mid), 30, message="real push synced")

    def test_4_malformed_envelope_is_400(self):
        self.idle()
        runs = self.d.account(self.A)["sync"]["runs"]
        for body in (b"not json", b'{"message": {}}', b'{"message": {"data": "!!",'
                     b' "messageId": "1"}}'):
            status, _ = self.push(body=body)
            self.assertEqual(status, 400, body)
        self.assertEqual(self.d.account(self.A)["sync"]["runs"], runs)

    def test_5_unknown_mailbox_is_acknowledged(self):
        self.idle()
        runs = self.d.account(self.A)["sync"]["runs"]
        history = self.fake.calls("history.list")
        before = metrics(self.d)
        status, _ = self.push(email_addr="stranger@example.com", history_id=99)
        self.assertIn(status, (200, 204))
        self.assertEqual(self.d.account(self.A)["sync"]["runs"], runs)
        self.assertEqual(self.fake.calls("history.list"), history)
        # Answered like an accepted push, counted apart from both.
        after = metrics(self.d)
        self.assertEqual(after["mailpulse_push_ignored_total"],
                         before.get("mailpulse_push_ignored_total", 0) + 1)
        for name in ("mailpulse_push_accepted_total", "mailpulse_push_rejected_total"):
            self.assertEqual(after.get(name, 0), before.get(name, 0), name)

    def test_6_duplicate_message_id_one_sync_one_event(self):
        self.idle()
        seq = self.d.last_seq()
        history = self.fake.calls("history.list")
        mid = self.fake.add_message(self.EMAIL, raw("dup"), ["INBOX"])
        answers = []

        def send():
            answers.append(self.push(message_id="9000000000001")[0])
        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(answers), [204, 204])
        self.assertEqual(self.push(message_id="9000000000001")[0], 204)  # a redelivery
        mptest.wait_until(lambda: self.new_events(seq, mid), 30, message="event")
        self.idle()
        self.assertEqual(len(self.new_events(seq, mid)), 1)
        self.assertEqual(self.fake.calls("history.list") - history, 1,
                         "one sync for one notification delivered three times")

    def test_7_rotated_key_fetched_on_unknown_kid(self):
        self.idle()
        # The set loaded at start is younger than the one-a-minute refetch
        # limit; two minutes later (daemon clock) a new kid may refetch.
        self.d.post("/v1/debug/clock", {"offset_ms": 120000}, expect=(200,))
        certs = self.fake.calls("certs")
        self.fake.rotate_signing_key()
        seq = self.d.last_seq()
        mid = self.fake.add_message(self.EMAIL, raw("rotated"), ["INBOX"])
        status, _ = self.push(message_id="9000000000077")
        self.assertEqual(status, 503, "a kid we do not have yet: Pub/Sub redelivers")
        mptest.wait_until(lambda: self.fake.calls("certs") > certs, 30,
                          message="JWKS refetched after an unknown kid")
        # Pub/Sub's redelivery (same messageId) is now accepted: a 503 did
        # not mark the id as seen.
        mptest.wait_until(lambda: self.push(message_id="9000000000077")[0] == 204, 30,
                          message="redelivery accepted with the new key")
        mptest.wait_until(lambda: self.new_events(seq, mid), 30, message="synced")
        # A forger's unknown kids cannot make us refetch again within a minute.
        certs = self.fake.calls("certs")
        for _ in range(5):
            self.assertEqual(self.push(forge="unknown_kid")[0], 503)
        self.idle()
        self.assertEqual(self.fake.calls("certs"), certs)

    def test_8_watch_renewed_daily(self):
        self.idle()
        watches = self.fake.calls("watch")
        # A day later (daemon clock), the host finds the reported expiry
        # inside its renewal window although Gmail's watch has 6 days left.
        self.d.post("/v1/debug/clock", {"offset_ms": 24 * HOUR_MS + 60000}, expect=(200,))
        mptest.wait_until(lambda: self.fake.calls("watch") > watches, 60,
                          message="watch renewed after a day")
        self.assertTrue(self.d.account(self.A)["push_live"])

    def test_9_lapsed_watch_stopped_and_made_again(self):
        self.idle()
        watches, stops = self.fake.calls("watch"), self.fake.calls("stop")
        # Past the reported expiry of the renewed watch (~47 h after it): the
        # host drops the lapsed subscription through push_cancel (users.stop)
        # and enrols again (users.watch).
        self.d.post("/v1/debug/clock", {"offset_ms": 72 * HOUR_MS}, expect=(200,))
        mptest.wait_until(lambda: self.fake.calls("stop") > stops and
                          self.fake.calls("watch") > watches, 60,
                          message="lapsed watch stopped and made again")
        self.assertIsNotNone(self.fake.watch_state(self.EMAIL))

    def test_6b_concurrent_pushes_never_two_syncs_at_once(self):
        # Pushes that arrive while a sync of the account is running (held
        # in history.list) coalesce into one more run: never two walks of
        # one account's history at the same time, one event per message.
        self.idle()
        seq = self.d.last_seq()
        mid = self.fake.add_message(self.EMAIL, raw("busy"), ["INBOX"])
        self.fake.pause("history.list")
        try:
            self.assertEqual(self.push()[0], 204)
            mptest.wait_until(lambda: self.fake.in_flight("history.list", self.EMAIL) == 1,
                              30, message="a sync walking history")
            answers = []

            def send():
                answers.append(self.push()[0])
            threads = [threading.Thread(target=send) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(answers, [204] * 6)
        finally:
            self.fake.resume("history.list")
        mptest.wait_until(lambda: self.new_events(seq, mid), 30, message="event")
        self.idle()
        self.assertEqual(len(self.new_events(seq, mid)), 1)
        self.assertEqual(self.fake.max_concurrent("history.list", self.EMAIL), 1)

    def test_6c_push_outran_history(self):
        # The push names a historyId that history.list does not return yet:
        # the run walks history again a few times instead of settling for
        # nothing, and the message arrives once history has it.
        self.idle()
        seq = self.d.last_seq()
        walks = self.fake.calls("history.list")
        self.fake.hold_history(self.EMAIL)
        mid = self.fake.add_message(self.EMAIL, raw("early push"), ["INBOX"])
        release = threading.Timer(1.5, self.fake.hold_history, (self.EMAIL, False))
        release.start()
        try:
            self.assertEqual(self.push()[0], 204)
            mptest.wait_until(lambda: self.new_events(seq, mid), 60,
                              message="message.new once history caught up")
        finally:
            release.cancel()
            self.fake.hold_history(self.EMAIL, False)
        self.idle()
        self.assertEqual(len(self.new_events(seq, mid)), 1)
        self.assertGreaterEqual(self.fake.calls("history.list") - walks, 2,
                                "history walked again after the push outran it")

    def test_z_removed_account_watch_stopped(self):
        # Last: the configuration loses the instance and its account. The
        # watch is stopped at Gmail (users.stop, with the account's OAuth
        # token, kept for it), once, and the stored subscription deleted.
        self.idle()
        stops = self.fake.calls("stop")
        self.assertIsNotNone(self.fake.watch_state(self.EMAIL))
        self.d.remove_instance(INSTANCE)
        self.d.reload()
        mptest.wait_until(lambda: self.fake.watch_state(self.EMAIL) is None, 60,
                          message="watch stopped for the removed account")
        self.assertEqual(self.fake.calls("stop"), stops + 1)
        db = os.path.join(self.d.state_dir, "mailpulse.db")

        def stored():
            conn = sqlite3.connect(db, timeout=30)
            try:
                return conn.execute("SELECT COUNT(*) FROM subscriptions WHERE account = ?",
                                    (self.A,)).fetchone()[0]
            finally:
                conn.close()
        mptest.wait_until(lambda: stored() == 0, 60, message="subscription row deleted")
        self.assertNotIn("cancel failed", self.d.log_text())


if __name__ == "__main__":
    unittest.main()

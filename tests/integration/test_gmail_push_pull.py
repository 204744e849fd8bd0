"""gmail.so in pubsub-pull mode, through the real daemon and the fake
Gmail/Pub/Sub: a watch publishes to the topic, the driver's pull thread
long-polls the subscription with the account's token (gmail.readonly +
pubsub scope), stores the hint and the sync emits message.new; the
message is acknowledged (nothing left outstanding or redelivered), a
notification for a mailbox no account has is acknowledged too, and one
whose hint could not be stored (store writes failed by tests/fault's
LD_PRELOAD shim) is not acknowledged, is redelivered after its ack
deadline and then synced and acknowledged."""

import base64
import os
import sys
import unittest

import mptest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_gmail  # noqa: E402

CLIENT, SECRET = "cid.apps.googleusercontent.com", "client-secret"
TOPIC = "projects/fake-project/topics/gmail"
SUB = "projects/fake-project/subscriptions/gmail-pull"


def raw(subject):
    return (b"From: Ann <ann@example.org>\r\nTo: me@example.com\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody of %s\r\n" % (subject.encode(), subject.encode(), subject.encode()))


class GmailPubsubPull(unittest.TestCase):
    A = "gp"
    EMAIL = "pull@example.com"
    OFF = "go"
    OFF_EMAIL = "off@example.com"

    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="gmail_pull",
                                  driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
                                  settings={"schedule": {"max_backoff": 1}})
        shim = os.path.join(mptest.env("MP_BUILD_DIR"), "tests", "fault", "sqlite_fault.so")
        cls.control = d.path("fault.ctl")
        env = dict(os.environ)
        env["LD_PRELOAD"] = shim
        env["MP_FAULT_CONTROL"] = cls.control
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                               ":verify_asan_link_order=0").lstrip(":")
        d.env = env
        cls.fault("off")
        cls.fake = fake = fake_gmail.FakeGmail(pull_max_wait=1.0)
        fake.start()
        fake.add_client(CLIENT, SECRET)
        fake.create_topic(TOPIC)
        fake.create_subscription(SUB, TOPIC, ack_deadline=600)
        fake.add_user(cls.EMAIL)
        token = fake.add_refresh_token(CLIENT, cls.EMAIL, scopes=(
            fake_gmail.SCOPE_READONLY, fake_gmail.SCOPE_PUBSUB))
        rt = d.write_secret("gp.rt", token.encode() + b"\n")
        secret = d.write_secret("gmail.client_secret", SECRET.encode() + b"\n")
        d.write_instance("gmailpull", mptest.render_instance(
            "gmail", [{"id": cls.A, "email": cls.EMAIL, "refresh_token_file": rt,
                       "poll_interval": 3600}],
            client_id=CLIENT, client_secret_file=secret, api_url=fake.url,
            token_url=fake.token_url, pubsub_url=fake.url, certs_url=fake.certs_url,
            push="pubsub-pull", topic=TOPIC, subscription=SUB))
        # A second instance with push off: polls, never watches.
        fake.add_user(cls.OFF_EMAIL)
        token = fake.add_refresh_token(CLIENT, cls.OFF_EMAIL)
        rt = d.write_secret("go.rt", token.encode() + b"\n")
        d.write_instance("gmailoff", mptest.render_instance(
            "gmail", [{"id": cls.OFF, "email": cls.OFF_EMAIL, "refresh_token_file": rt,
                       "poll_interval": 3600}],
            client_id=CLIENT, client_secret_file=secret, api_url=fake.url,
            token_url=fake.token_url, pubsub_url=fake.url, certs_url=fake.certs_url))
        d.start()
        d.wait_bootstrapped(cls.A, ["INBOX", "SENT"])
        mptest.wait_until(lambda: fake.watch_state(cls.EMAIL) is not None, 60,
                          message="watch enrolled")
        mptest.wait_until(lambda: not d.account(cls.A)["sync"]["running"], 60,
                          message="first sync finished")

    @classmethod
    def fault(cls, text):
        with open(cls.control + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(cls.control + ".tmp", cls.control)

    @classmethod
    def tearDownClass(cls):
        cls.fault("off")
        cls.d.stop()
        cls.fake.stop()

    def new_events(self, seq, mid):
        pid = mptest.public_id(self.A, mid)
        return [e for e in self.d.events(accounts=[self.A], types=["message.new"], after=seq)
                if e["json"]["message"] == pid]

    def test_1_pull_hint_sync_ack(self):
        fake = self.fake
        self.assertEqual(sorted(fake.watch_state(self.EMAIL)["labels"]), ["INBOX", "SENT"])
        seq = self.d.last_seq()
        pulls = fake.calls("pubsub.pull")
        mid = fake.add_message(self.EMAIL, raw("pulled"), ["INBOX", "UNREAD"])
        # The watch published one notification; the pull thread takes it.
        mptest.wait_until(lambda: self.new_events(seq, mid), 30,
                          message="message.new from a pulled notification")
        self.assertGreater(fake.calls("pubsub.pull"), pulls)
        # Acknowledged: nothing waits in the backlog or for an ack.
        mptest.wait_until(lambda: fake.pending(SUB) == (0, 0), 30, message="acked")
        self.assertGreaterEqual(fake.calls("pubsub.acknowledge"), 1)
        # Acknowledged only after the hint: every ack follows the pull that
        # received it, and the hint's sync found the message.
        log = [e["endpoint"] for e in fake.call_log()
               if e["endpoint"] in ("pubsub.pull", "pubsub.acknowledge")]
        self.assertEqual(log[0], "pubsub.pull")
        self.assertEqual(len(self.new_events(seq, mid)), 1)

    def test_2_unknown_mailbox_acknowledged(self):
        fake = self.fake
        runs = self.d.account(self.A)["sync"]["runs"]
        fake.publish(TOPIC, {"emailAddress": "stranger@example.com", "historyId": "77"})
        mptest.wait_until(lambda: fake.pending(SUB) == (0, 0), 30, message="acked")
        self.assertEqual(self.d.account(self.A)["sync"]["runs"], runs)

    def test_3_unreadable_data_acknowledged(self):
        fake = self.fake
        with fake.lock:
            sub = fake.subscriptions[SUB]
            sub.backlog.append([{"data": base64.b64encode(b"not json").decode(),
                                 "messageId": "123", "publishTime": "2026-12-07T00:00:00Z"},
                                0])
            fake.cond.notify_all()
        mptest.wait_until(lambda: fake.pending(SUB) == (0, 0), 30, message="dropped")

    def test_5_pull_instance_takes_no_webhook(self):
        status, _, _ = self.d.request("POST", "/push/gmailpull", body=b"{}", auth=False,
                                      headers={"Content-Type": "application/json"})
        self.assertEqual(status, 404)

    def test_6_push_off_polls_without_watch(self):
        d = self.d
        d.wait_bootstrapped(self.OFF, ["INBOX", "SENT"])
        mptest.wait_until(lambda: d.account(self.OFF)["push_state"].startswith("off"), 60,
                          message="push state off")
        acct = d.account(self.OFF)
        self.assertFalse(acct["push_live"])
        self.assertIsNone(self.fake.watch_state(self.OFF_EMAIL))
        self.assertEqual(self.fake.calls("watch", user=self.OFF_EMAIL), 0)

    def test_4_no_ack_until_the_hint_is_stored(self):
        fake = self.fake
        mptest.wait_until(lambda: not self.d.account(self.A)["sync"]["running"], 60,
                          message="idle")
        seq = self.d.last_seq()
        acks = fake.calls("pubsub.acknowledge")
        self.fault("write 100")
        try:
            mid = fake.add_message(self.EMAIL, raw("while-failing"), ["INBOX"])
            mptest.wait_until(lambda: fake.pending(SUB) == (0, 1), 30, message="pulled")
            # The pull after the one that delivered it: its hint was tried.
            pulls = fake.calls("pubsub.pull")
            mptest.wait_until(lambda: fake.calls("pubsub.pull") > pulls + 1, 30,
                              message="next pull")
            self.assertEqual(fake.pending(SUB), (0, 1), "acked without a stored hint")
            self.assertEqual(fake.calls("pubsub.acknowledge"), acks)
        finally:
            self.fault("off")
        # Past the ack deadline Pub/Sub redelivers; now the hint is stored,
        # acknowledged, and the sync finds the message.
        fake.advance(601)
        mptest.wait_until(lambda: fake.pending(SUB) == (0, 0), 30, message="redelivered, acked")
        mptest.wait_until(lambda: self.new_events(seq, mid), 60, message="synced")


if __name__ == "__main__":
    unittest.main()

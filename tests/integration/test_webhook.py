"""POST /push/<instance>: a signed notification triggers a sync; bad
signatures, bodies, accounts, instances and sizes are refused without any
state change."""

import json
import re
import unittest

import mptest

ACCOUNT = "hooked"
INSTANCE = "hooks"
SECRET = b"webhook-test-secret-8a7f6e"
MAX_BODY = 4096


def metric(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})? (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class Webhook(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="webhook", settings={
            "http": {"listen": "127.0.0.1:0", "max_body": MAX_BODY},
            "backfill": {"mode": "full"},
        })
        secret_file = d.write_secret("hook.secret", SECRET)
        d.add_instance(INSTANCE, [{"id": ACCOUNT, "generate": 6, "poll_interval": 3600},
                                  {"id": "other", "generate": 2, "poll_interval": 3600}],
                       webhook_secret_file=secret_file, poll_interval=3600)
        cls.log = d.mailbox(ACCOUNT)
        d.start()
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        d.wait_bootstrapped("other", ["INBOX", "Archive"])

    def push(self, body, signature=True, instance=INSTANCE, extra_path=""):
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if signature is True:
            headers["X-Fixture-Signature"] = mptest.sign(SECRET, body)
        elif signature:
            headers["X-Fixture-Signature"] = signature
        status, _, data = self.d.request("POST", "/push/" + instance + extra_path,
                                         body=body, headers=headers, auth=False)
        return status, data

    def snapshot(self):
        d = self.d
        acct = d.account(ACCOUNT)
        _, _, metrics = d.request("GET", "/metrics")
        text = metrics.decode()
        return {"last_seq": d.last_seq(),
                "triggers": acct["sync"].get("triggers"),
                "runs": acct["sync"]["runs"],
                "accepted": metric(text, "mailpulse_push_accepted_total")}

    def idle(self):
        mptest.wait_until(lambda: not self.d.account(ACCOUNT)["sync"]["running"], 60,
                          message="account idle")

    def test_1_signed_push_syncs(self):
        d = self.d
        self.idle()
        seq0 = d.last_seq()
        self.log.add("INBOX", "pushed-1", mptest.OpLog.BASE_DATE + 1, "Pushed")
        status, body = self.push({"account": ACCOUNT, "folder": "INBOX"})
        self.assertEqual(status, 202, body)
        events = mptest.wait_until(
            lambda: d.events(after=seq0, types=["message.new"], accounts=[ACCOUNT]), 60,
            message="message.new after push (no /sync call, poll_interval 3600)")
        self.assertEqual([e["json"]["message"] for e in events],
                         [mptest.public_id(ACCOUNT, "pushed-1")])
        self.assertEqual(events[0]["json"]["folder"], "INBOX")

        # folder null and a cursor are accepted too
        seq1 = d.last_seq()
        self.log.add("Archive", "pushed-2", mptest.OpLog.BASE_DATE + 2, "Pushed 2")
        status, body = self.push({"account": ACCOUNT, "folder": None, "cursor": "42"})
        self.assertEqual(status, 202, body)
        mptest.wait_until(
            lambda: d.events(after=seq1, types=["message.new"], accounts=[ACCOUNT]), 60,
            message="message.new after a folder-less push")

    def assert_refused(self, expected_status, status, body, before):
        self.assertEqual(status, expected_status, body)
        if body:
            self.assertIn("error", json.loads(body))
        after = self.snapshot()
        self.assertEqual(after["last_seq"], before["last_seq"], "events changed")
        self.assertEqual(after["triggers"], before["triggers"], "a sync was triggered")
        self.assertEqual(after["accepted"], before["accepted"], "hint counted")

    def test_2_bad_signature(self):
        self.idle()
        self.log.add("INBOX", "unsigned-1", mptest.OpLog.BASE_DATE + 3, "Should wait")
        body = json.dumps({"account": ACCOUNT, "folder": "INBOX"}).encode()
        before = self.snapshot()
        wrong = mptest.sign(b"not-the-secret", body)
        status, data = self.push(body, signature=wrong)
        self.assert_refused(401, status, data, before)
        status, data = self.push(body, signature=False)
        self.assert_refused(401, status, data, before)
        status, data = self.push(body, signature=mptest.sign(SECRET, body).upper()[:-2])
        self.assert_refused(401, status, data, before)
        # signature of a different body
        status, data = self.push(body + b" ", signature=mptest.sign(SECRET, body))
        self.assert_refused(401, status, data, before)

    def test_3_malformed_body(self):
        self.idle()
        before = self.snapshot()
        for body in (b"{not json", b"[]", b'{"folder":"INBOX"}', b'{"account":7}', b""):
            status, data = self.push(body)
            self.assert_refused(400, status, data, before)

    def test_4_unknown_account(self):
        self.idle()
        before = self.snapshot()
        status, data = self.push({"account": "nobody", "folder": "INBOX"})
        self.assert_refused(404, status, data, before)

    def test_5_unknown_instance(self):
        self.idle()
        before = self.snapshot()
        status, data = self.push({"account": ACCOUNT}, instance="nosuchinstance")
        self.assertEqual(status, 404, data)
        after = self.snapshot()
        self.assertEqual(after["last_seq"], before["last_seq"])
        self.assertEqual(after["triggers"], before["triggers"])

    def test_6_body_too_large(self):
        self.idle()
        before = self.snapshot()
        body = json.dumps({"account": ACCOUNT, "pad": "x" * (MAX_BODY + 100)}).encode()
        head = ("POST /push/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nX-Fixture-Signature: %s\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (INSTANCE, mptest.sign(SECRET, body), len(body))).encode()
        status, _ = self.d.raw_request(head + body)
        self.assertEqual(status, 413)
        after = self.snapshot()
        self.assertEqual(after["last_seq"], before["last_seq"])
        self.assertEqual(after["triggers"], before["triggers"])

    def test_7_secret_not_logged(self):
        self.assertNotIn(SECRET.decode(), self.d.log_text())
        status, _, data = self.d.request("GET", "/v1/status")
        self.assertNotIn(SECRET.decode(), data.decode())

    def test_8_other_account_unaffected(self):
        d = self.d
        self.idle()
        seq0 = d.last_seq()
        d.mailbox("other").add("INBOX", "other-1", mptest.OpLog.BASE_DATE + 5, "Other")
        status, body = self.push({"account": "other", "folder": "INBOX"})
        self.assertEqual(status, 202, body)
        events = mptest.wait_until(
            lambda: d.events(after=seq0, types=["message.new"]), 60,
            message="message.new for the other account")
        self.assertEqual({e["json"]["account"] for e in events}, {"other"})


if __name__ == "__main__":
    mptest.main()

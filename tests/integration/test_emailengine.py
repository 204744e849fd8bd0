"""emailengine.so against the fake EmailEngine (fake_emailengine.py), through
the real daemon: folders with special-use roles; bootstrap of the newest
messages and backfill of the older ones; the delta without a change feed
(new mail, a flag change and a delete) found by a sync no webhook announced,
and again through signed webhooks alone; unsigned and forged webhooks
refused (401/403) with nothing recorded; a retried delivery gives one event;
webhooks for an EmailEngine account no account names are acknowledged and
ignored; authenticationError parks the account in reauth with EE's reason
and no retry storm; a UIDVALIDITY change resyncs the one folder with one
folder.reset and no message event; SIGKILL in the middle of a sync loses
and duplicates nothing; the message source is the raw message."""

import os
import sys
import time
import unittest

import mptest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_emailengine  # noqa: E402

SECRET = "7f3c9a1e5b2d4c6e8f0a1b2c3d4e5f60"
INSTANCE = "ee"


def raw(subject):
    return (b"From: Ann <ann@example.org>\r\nTo: me@example.org\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody of %s\r\n" % (subject.encode(), subject.encode(), subject.encode()))


def of_type(events, kind):
    return [e for e in events if e["type"] == kind]


class EmailEngineBridge(unittest.TestCase):
    A, B = "support", "sales"            # mailpulse account ids
    EA, EB = "support-imap", "sales-imap"  # their ids in EmailEngine

    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(
            name="emailengine", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
            settings={"backfill": {"mode": "progressive", "bootstrap_max": 3,
                                   "batch_size": 2},
                      "schedule": {"backfill_interval": 1}})
        cls.fake = fake = fake_emailengine.FakeEmailEngine(service_secret=SECRET).start()
        for acc in (cls.EA, cls.EB, "stranger"):
            fake.add_account(acc, state="connected")
            fake.add_mailbox(acc, "INBOX", special_use="\\Inbox")
            fake.add_mailbox(acc, "Sent", special_use="\\Sent")
            fake.add_mailbox(acc, "Archive", special_use="\\Archive")
            fake.add_mailbox(acc, "Projects")
        cls.ids = {}
        for i in range(6):
            cls.ids["in%d" % i] = fake.add_message(cls.EA, "INBOX", raw("in%d" % i),
                                                   flags=["\\Seen"] if i % 2 else [])
        for i in range(4):
            cls.ids["ar%d" % i] = fake.add_message(cls.EA, "Archive", raw("ar%d" % i))
        cls.ids["sent"] = fake.add_message(cls.EA, "Sent", raw("sent"), flags=["\\Seen"])
        fake.add_message(cls.EB, "INBOX", raw("b0"))
        fake.add_message("stranger", "INBOX", raw("s0"))
        # Webhooks stay off until test_3: the first tests prove the delta
        # finds everything without them.
        fake.auto_webhooks = False
        cls.push_url = None
        token = d.write_secret("ee.token", fake.token.encode() + b"\n")
        secret = d.write_secret("ee.secret", SECRET.encode() + b"\n")
        d.write_instance(INSTANCE, mptest.render_instance(
            "emailengine",
            [{"id": cls.A, "ee_account": cls.EA, "poll_interval": 3600},
             {"id": cls.B, "ee_account": cls.EB, "poll_interval": 3600}],
            url=fake.url, token_file=token, service_secret_file=secret))
        d.start()
        cls.push_url = "http://%s:%d/push/%s" % (d.host, d.port, INSTANCE)
        fake.configure_webhooks(cls.push_url)
        d.wait_bootstrapped(cls.A, ["INBOX", "Sent", "Archive", "Projects"])
        d.wait_bootstrapped(cls.B, ["INBOX"])
        mptest.wait_until(lambda: d.folder(cls.A, "INBOX")["messages"] == 6, 60,
                          message="INBOX backfilled to 6")
        mptest.wait_until(lambda: not d.account(cls.A)["sync"]["running"], 60,
                          message="first sync finished")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()

    def pid(self, key):
        return mptest.public_id(self.A, self.ids.get(key, key))

    def message(self, key, expect=(200,)):
        return self.d.get("/v1/messages/" + self.pid(key), expect=expect)

    def sync(self, account=None):
        seq = self.d.last_seq()
        self.d.sync_and_wait(account or self.A)
        return self.d.events(accounts=[account or self.A], after=seq)

    def runs(self, account=None):
        return self.d.account(account or self.A)["sync"]["runs"]

    def settled_runs(self, account=None):
        """The run count once no run is going or queued (an event shows at
        its commit, the count moves when the run ends)."""
        def idle():
            sync = self.d.account(account or self.A)["sync"]
            return not sync["running"] and not sync["rerun"] and sync
        return mptest.wait_until(idle, 30, message="no sync running")["runs"]

    def test_1_folders_bootstrap_backfill(self):
        acct = self.d.account(self.A)
        roles = {f["name"]: f["role"] for f in acct["folders"]}
        self.assertEqual(roles, {"INBOX": "inbox", "Sent": "sent", "Archive": "archive",
                                 "Projects": None}, roles)
        # Newest three at bootstrap, the other three by backfill, each once.
        listed = sorted(m["id"] for m in self.d.all_messages(self.A, folder="INBOX"))
        self.assertEqual(listed, sorted(self.pid("in%d" % i) for i in range(6)))
        self.assertEqual(self.d.folder(self.A, "INBOX")["backfill"]["status"], "done")
        self.assertIn("\\Seen", self.message("in1")["flags"])
        self.assertNotIn("\\Seen", self.message("in0")["flags"])
        self.assertEqual(self.message("in4")["subject"], "in4")
        # The other account sees only its own mail.
        self.assertEqual(len(self.d.all_messages(self.B)), 1)
        # No webhook yet: push waits, the account polls.
        self.assertFalse(acct["push_live"])
        self.assertIn("waiting", acct["push_state"])

    def test_1b_preflight_check(self):
        d = self.d
        started = d.post("/v1/accounts/%s/check" % self.A, body={"live": True}, expect=(202,))

        def finished():
            c = d.get("/v1/accounts/%s/check" % self.A)
            return c["id"] == started["id"] and c["state"] in ("done", "error") and c
        c = mptest.wait_until(finished, 60, message="check finished")
        self.assertEqual(c["state"], "done", c)
        r = {x["name"]: x for x in c["results"]}
        self.assertEqual(r["account"]["outcome"], "ok", r)
        self.assertEqual(r["mailboxes"]["outcome"], "ok", r)
        self.assertIn("4 mailboxes", r["mailboxes"]["detail"])
        # No webhook arrived yet: a warning saying what to set in EE.
        self.assertEqual(r["webhooks"]["outcome"], "warn", r)
        self.assertIn("serviceSecret", r["webhooks"]["detail"])
        self.assertEqual(r["live_test"]["outcome"], "skip", r)

    def test_2_delta_without_webhooks(self):
        fake = self.fake
        self.assertFalse(fake.auto_webhooks)
        hooks = len(fake.webhook_log())
        new = fake.add_message(self.EA, "INBOX", raw("quiet-new"))
        fake.set_flags(self.EA, self.ids["in5"], ["\\Seen", "\\Flagged"])
        fake.delete_message(self.EA, self.ids["in3"])
        events = self.sync()
        self.assertEqual(len(fake.webhook_log()), hooks, "no webhook was sent")
        news = of_type(events, "message.new")
        self.assertEqual([e["json"]["message"] for e in news],
                         [mptest.public_id(self.A, new)], events)
        updated = [e["json"]["message"] for e in of_type(events, "message.updated")]
        self.assertEqual(updated, [self.pid("in5")], events)
        deleted = [e["json"]["message"] for e in of_type(events, "message.deleted")]
        self.assertEqual(deleted, [self.pid("in3")], events)
        self.assertIn("\\Flagged", self.message("in5")["flags"])
        # A second sync finds nothing more.
        again = [e for e in self.sync() if e["type"].startswith("message.")]
        self.assertEqual(again, [])
        # A flag change on recent mail alone (counters unchanged) is found
        # by the newest-page comparison.
        fake.set_flags(self.EA, new, ["\\Seen"])
        events = self.sync()
        self.assertEqual([e["json"]["message"] for e in of_type(events, "message.updated")],
                         [mptest.public_id(self.A, new)], events)

    def test_3_delta_through_webhooks(self):
        d, fake = self.d, self.fake
        fake.auto_webhooks = True
        try:
            seq = d.last_seq()
            new = fake.add_message(self.EA, "INBOX", raw("pushed"))
            fake.wait_webhooks(1, event="messageNew")
            mptest.wait_until(
                lambda: of_type(d.events(accounts=[self.A], after=seq), "message.new"), 30,
                message="message.new after the webhook")
            self.assertEqual(fake.webhook_log(event="messageNew")[-1]["status"], 204)
            acct = d.account(self.A)
            self.assertTrue(acct["push_live"], acct["push_state"])
            fake.set_flags(self.EA, new, ["\\Seen", "\\Answered"])
            mptest.wait_until(
                lambda: of_type(d.events(accounts=[self.A], after=seq), "message.updated"),
                30, message="message.updated after messageUpdated")
            fake.delete_message(self.EA, new)
            mptest.wait_until(
                lambda: of_type(d.events(accounts=[self.A], after=seq), "message.deleted"),
                30, message="message.deleted after messageDeleted")
            fake.flush_webhooks()
            events = [e for e in d.events(accounts=[self.A], after=seq)
                      if e["type"].startswith("message.")]
            pid = mptest.public_id(self.A, new)
            self.assertEqual([(e["type"], e["json"]["message"]) for e in events],
                             [("message.new", pid), ("message.updated", pid),
                              ("message.deleted", pid)])
            self.assertTrue(all(h["status"] == 204 for h in fake.webhook_log()))
        finally:
            fake.auto_webhooks = False

    def test_4_forged_and_unsigned_refused(self):
        d, fake = self.d, self.fake
        # A real message the forged hints would announce.
        mid = fake.add_message(self.EA, "Projects", raw("forged-hint"))
        seq, runs = d.last_seq(), self.settled_runs()
        expect = {"no_signature": 401, "bad_signature": 403, "wrong_secret": 403,
                  "padded_signature": 403, "tampered_body": 403}
        for forge, status in expect.items():
            got, _, _ = fake.send_webhook("messageNew", self.EA, {"id": mid, "uid": 1},
                                          path="Projects", forge=forge)
            self.assertEqual(got, status, forge)
        # Nothing recorded: no run, no event, the message is unknown.
        self.assertEqual(self.runs(), runs)
        self.assertEqual(d.events(accounts=[self.A], after=seq), [])
        self.message(mid, expect=(404,))
        # A signed one afterwards is taken.
        got, _, _ = fake.send_webhook("messageNew", self.EA, {"id": mid, "uid": 1},
                                      path="Projects")
        self.assertEqual(got, 204)
        mptest.wait_until(lambda: of_type(d.events(accounts=[self.A], after=seq),
                                          "message.new"), 30, message="signed hint synced")

    def test_5_retried_delivery_gives_one_event(self):
        d, fake = self.d, self.fake
        fake.auto_webhooks = True
        try:
            seq = d.last_seq()
            fake.forge_next_webhooks("duplicate")
            mid = fake.add_message(self.EA, "INBOX", raw("twice"))
            fake.flush_webhooks()
            hooks = fake.webhook_log(event="messageNew")
            self.assertEqual(hooks[-1]["event_id"], hooks[-2]["event_id"])
            mptest.wait_until(lambda: of_type(d.events(accounts=[self.A], after=seq),
                                              "message.new"), 30, message="message.new")
            runs = self.settled_runs()
            # A later retry of the same event id: acknowledged, no sync.
            self.assertEqual(fake.redeliver(hooks[-1]["event_id"]), 204)
            self.d.sync_and_wait(self.B)  # a barrier: the daemon handled it
            self.assertEqual(self.runs(), runs)
            news = of_type(d.events(accounts=[self.A], after=seq), "message.new")
            self.assertEqual([e["json"]["message"] for e in news],
                             [mptest.public_id(self.A, mid)])
        finally:
            fake.auto_webhooks = False

    def test_6_unconfigured_account_ignored(self):
        d, fake = self.d, self.fake
        seq = d.last_seq()
        runs = {a: self.settled_runs(a) for a in (self.A, self.B)}
        mid = fake.add_message("stranger", "INBOX", raw("not-ours"))
        got, _, _ = fake.send_webhook("messageNew", "stranger", {"id": mid, "uid": 2},
                                      path="INBOX")
        self.assertEqual(got, 204)  # acknowledged, so EE does not retry
        got, _, _ = fake.send_webhook("authenticationError", "stranger",
                                      {"response": "NO [AUTHENTICATIONFAILED]"})
        self.assertEqual(got, 204)
        self.assertEqual({a: self.runs(a) for a in runs}, runs)
        self.assertEqual(d.events(after=seq), [])
        for a in (self.A, self.B):
            self.assertEqual(d.account(a)["status"], "ok")

    def test_7_authentication_error_parks_account(self):
        d, fake = self.d, self.fake
        fake.auto_webhooks = True
        try:
            fake.set_account_state(self.EB, "authenticationError",
                                   error={"response": "Invalid credentials (Failure)",
                                          "serverResponseCode": "AUTHENTICATIONFAILED"})
            mptest.wait_until(lambda: d.account(self.B)["status"] == "reauth", 30,
                              message="reauth after authenticationError")
            acct = d.account(self.B)
            self.assertIn("authenticationError", acct["last_error"])
            self.assertIn("Invalid credentials", acct["last_error"])
            # Parked: another webhook for it costs EE no request.
            calls = fake.calls(account=self.EB)
            got, _, _ = fake.send_webhook("connectError", self.EB,
                                          {"response": "ECONNREFUSED"})
            self.assertEqual(got, 204)
            d.sync_and_wait(self.A)  # a barrier
            self.assertEqual(fake.calls(account=self.EB), calls)
            self.assertEqual(d.account(self.A)["status"], "ok")
            # Fixed in EmailEngine, an API sync brings it back.
            fake.set_account_state(self.EB, "connected")

            def recovered():
                if d.account(self.B)["status"] == "ok":
                    return True
                d.sync_and_wait(self.B)
                return False
            mptest.wait_until(recovered, 60, interval=0.5,
                              message="ok after the credentials were fixed")
        finally:
            fake.auto_webhooks = False

    def test_7b_connect_error_retried_without_storm(self):
        d, fake = self.d, self.fake
        fake.auto_webhooks = True
        try:
            before = fake.calls(account=self.EB)
            listings = fake.calls("messages", account=self.EB)
            fake.set_account_state(self.EB, "connectError",
                                   error={"response": "connect ECONNREFUSED 10.0.0.9:993",
                                          "serverResponseCode": "ECONNREFUSED"})
            mptest.wait_until(lambda: d.account(self.B)["status"] == "error", 30,
                              message="error after connectError")
            acct = d.account(self.B)
            self.assertIn("state connectError", acct["last_error"])
            self.assertIn("ECONNREFUSED", acct["last_error"])
            # One question to EE for the whole run over four folders.
            self.assertEqual(fake.calls(account=self.EB) - before, 1)
            self.assertEqual(fake.calls("messages", account=self.EB), listings)
            fake.set_account_state(self.EB, "connected")

            def recovered():
                if d.account(self.B)["status"] == "ok":
                    return True
                d.sync_and_wait(self.B)
                return False
            mptest.wait_until(recovered, 60, interval=0.5, message="ok once reconnected")
        finally:
            fake.auto_webhooks = False

    def test_7c_http_errors(self):
        d, fake = self.d, self.fake
        self.settled_runs(self.A)
        # A 5xx: the run fails with EE's answer, the next one is clean.
        fake.fail_next("messages", 500, count=1, account=self.EA)
        d.sync_and_wait(self.A)
        acct = d.account(self.A)
        self.assertEqual(acct["status"], "error")
        self.assertIn("EmailEngine answered 500", acct["last_error"])
        d.sync_and_wait(self.A)
        self.assertEqual(d.account(self.A)["status"], "ok")
        # The token refused: reauth naming token_file, no secret in it.
        self.settled_runs(self.B)
        fake.fail_next("account", 401, count=1, account=self.EB)
        fake.fail_next("mailboxes", 401, count=1, account=self.EB)
        fake.fail_next("messages", 401, count=1, account=self.EB)
        d.sync_and_wait(self.B)
        acct = d.account(self.B)
        self.assertEqual(acct["status"], "reauth")
        self.assertIn("token_file", acct["last_error"])
        self.assertNotIn(fake.token, acct["last_error"])
        self.assertNotIn(fake.token, d.log_text())
        fake.clear_failures()

        def recovered():
            if d.account(self.B)["status"] == "ok":
                return True
            d.sync_and_wait(self.B)
            return False
        mptest.wait_until(recovered, 60, interval=0.5, message="ok with the token accepted")

    def test_8_uidvalidity_change_resets_one_folder(self):
        d, fake = self.d, self.fake
        before = {m["subject"]: m for m in d.all_messages(self.A, folder="Archive")}
        self.assertEqual(len(before), 4)
        fake.auto_webhooks = True
        try:
            seq = d.last_seq()
            fake.reset_uidvalidity(self.EA, "Archive")
            fake.wait_webhooks(1, event="mailboxReset")
            mptest.wait_until(lambda: of_type(d.events(accounts=[self.A], after=seq),
                                              "folder.reset"), 30, message="folder.reset")
            mptest.wait_until(lambda: not d.account(self.A)["sync"]["running"], 30)
            d.sync_and_wait(self.A)
            events = d.events(accounts=[self.A], after=seq)
            resets = of_type(events, "folder.reset")
            self.assertEqual(len(resets), 1, events)
            self.assertEqual([e for e in events if e["type"].startswith("message.")], [])
            after = {m["subject"]: m for m in d.all_messages(self.A, folder="Archive")}
            # Re-keyed silently: the same messages under the same public ids.
            self.assertEqual({k: m["id"] for k, m in after.items()},
                             {k: m["id"] for k, m in before.items()})
            # ...and fetched by EE's new ids (a stale id could hit another
            # message: emailengine-api.md §4).
            status, _, body = d.request("GET", "/v1/messages/%s/raw" % after["ar2"]["id"])
            self.assertEqual(status, 200, body[:200])
            self.assertIn(b"Subject: ar2", body)
            self.assertEqual(d.folder(self.A, "Archive")["resets"], 1)
            self.assertEqual(d.folder(self.A, "INBOX")["resets"], 0)
        finally:
            fake.auto_webhooks = False

    def test_9_sigkill_during_sync(self):
        d, fake = self.d, self.fake
        seq = d.last_seq()
        new = [fake.add_message(self.EA, "Projects", raw("k%d" % i)) for i in range(5)]
        fake.delete_message(self.EA, self.ids["in0"])
        fake.pause("messages")
        try:
            d.sync(self.A)
            mptest.wait_until(lambda: fake.in_flight("messages") > 0, 30,
                              message="a listing in flight")
            d.kill()
        finally:
            fake.resume("messages")
        d.start()
        d.sync_and_wait(self.A)
        events = d.events(accounts=[self.A], after=seq)
        news = sorted(e["json"]["message"] for e in of_type(events, "message.new"))
        self.assertEqual(news, sorted(mptest.public_id(self.A, m) for m in new))
        deleted = [e["json"]["message"] for e in of_type(events, "message.deleted")]
        self.assertEqual(deleted, [self.pid("in0")])
        self.assertEqual(len(d.all_messages(self.A, folder="Projects")), 6)


class EmailEngineBigFolder(unittest.TestCase):
    """More than one listing page (EE's pageSize is at most 1000): the
    backfill finds the next older UIDs by a binary search over the pages
    and the full comparison reads every page."""
    N = 2300

    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(
            name="emailengine_big", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
            settings={"backfill": {"mode": "progressive", "bootstrap_max": 5,
                                   "batch_size": 900},
                      "schedule": {"backfill_interval": 1}})
        cls.fake = fake = fake_emailengine.FakeEmailEngine(service_secret=SECRET).start()
        fake.add_account("big", state="connected")
        fake.add_mailbox("big", "INBOX", special_use="\\Inbox")
        cls.ids = [fake.add_message("big", "INBOX", raw("m%d" % i)) for i in range(cls.N)]
        fake.auto_webhooks = False
        token = d.write_secret("ee.token", fake.token.encode())
        secret = d.write_secret("ee.secret", SECRET.encode())
        d.write_instance(INSTANCE, mptest.render_instance(
            "emailengine", [{"id": "big", "ee_account": "big", "poll_interval": 3600}],
            url=fake.url, token_file=token, service_secret_file=secret))
        d.start()
        d.wait_bootstrapped("big", ["INBOX"])

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()

    def test_backfill_and_full_listing_over_pages(self):
        d, fake = self.d, self.fake
        mptest.wait_until(
            lambda: d.folder("big", "INBOX")["backfill"]["status"] == "done", 120,
            message="backfill done")
        stored = d.all_messages("big", folder="INBOX", limit=1000)
        self.assertEqual(len(stored), self.N)
        synced = [e["json"]["message"] for e in of_type(d.events(accounts=["big"]),
                                                        "message.synced")]
        self.assertEqual(len(synced), len(set(synced)), "a message synced twice")
        self.assertEqual(sorted(set(synced)),
                         sorted(mptest.public_id("big", m) for m in self.ids))
        # An old message (on the last page) goes: the full listing finds it.
        seq = d.last_seq()
        fake.delete_message("big", self.ids[3])
        d.sync_and_wait("big")
        deleted = [e["json"]["message"] for e in of_type(d.events(accounts=["big"], after=seq),
                                                         "message.deleted")]
        self.assertEqual(deleted, [mptest.public_id("big", self.ids[3])])


if __name__ == "__main__":
    mptest.main()

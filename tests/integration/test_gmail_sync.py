"""gmail.so against the local fake Gmail (fake_gmail.py), through the real
daemon: labels as folders (a message in two labels stored once, with one
body), bootstrap and progressive backfill, ONE history.list per sync with
new mail, label changes, moves (message.updated with folders_added /
folders_removed, never a delete plus a new) and deletes; an expired
historyId resets each folder once without a message.new flood; a deleted
label leaves as a folder with its memberships; with sync.fetch_bodies the
bodies are cached with the metadata;
invalid_grant parks the account after one token request; a 429 storm gets
no request inside Retry-After."""

import json
import os
import sys
import time
import unittest

import mptest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_gmail  # noqa: E402

CLIENT, SECRET = "cid.apps.googleusercontent.com", "client-secret"
FOLDERS = ["INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "Work"]


def raw(subject, n=0):
    return (b"From: Ann <ann@example.org>\r\nTo: me@example.com\r\nSubject: %s\r\n"
            b"Message-ID: <%s.%d@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody of %s\r\n" % (subject.encode(), subject.encode(), n, subject.encode()))


def gmail_instance(d, name, fake, accounts):
    """plugins.d/<name>.yaml for the gmail driver against `fake`."""
    secret = d.write_secret(name + ".client_secret", SECRET.encode() + b"\n")
    return d.write_instance(name, mptest.render_instance(
        "gmail", accounts, client_id=CLIENT, client_secret_file=secret, api_url=fake.url,
        token_url=fake.token_url, pubsub_url=fake.url, certs_url=fake.certs_url))


def user_account(d, fake, acct_id, email, revoked=False):
    fake.add_user(email)
    token = fake.add_refresh_token(CLIENT, email)
    if revoked:
        fake.revoke_refresh_token(token)
    rt = d.write_secret(acct_id + ".rt", token.encode() + b"\n")
    return {"id": acct_id, "email": email, "refresh_token_file": rt, "poll_interval": 3600}


def new_fake():
    fake = fake_gmail.FakeGmail()
    fake.start()
    fake.add_client(CLIENT, SECRET)
    return fake


def data(ev):
    j = ev["json"]
    return j.get("data") or j


class GmailSync(unittest.TestCase):
    A = "gm"
    EMAIL = "me@example.com"

    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(
            name="gmail_sync", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
            settings={"backfill": {"mode": "progressive", "bootstrap_max": 3,
                                   "batch_size": 2},
                      # every sync lists the labels (test_7: a deleted label)
                      "schedule": {"folder_list_interval": 1}})
        cls.fake = fake = new_fake()
        acct = user_account(d, fake, cls.A, cls.EMAIL)
        cls.work = fake.add_label(cls.EMAIL, "Work")
        base = int(time.time() * 1000) - 86400000
        ids = {}
        # Six INBOX messages (three loaded at bootstrap, three by backfill),
        # one also labelled Work, one sent, one only in Work.
        for i in range(6):
            labels = ["INBOX"] + (["UNREAD"] if i % 2 == 0 else [])
            if i == 5:
                labels.append(cls.work)
            ids["in%d" % i] = fake.add_message(cls.EMAIL, raw("in%d" % i), labels,
                                               internal_date_ms=base + i * 1000)
        ids["sent"] = fake.add_message(cls.EMAIL, raw("sent"), ["SENT"],
                                       internal_date_ms=base + 10000)
        ids["work"] = fake.add_message(cls.EMAIL, raw("work"), [cls.work, "STARRED"],
                                       internal_date_ms=base + 20000)
        cls.ids = ids
        gmail_instance(d, "gmail", fake, [acct])
        d.start()
        d.wait_bootstrapped(cls.A, FOLDERS)
        mptest.wait_until(lambda: not d.account(cls.A)["sync"]["running"], 60,
                          message="first sync finished")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()

    def pid(self, key):
        return mptest.public_id(self.A, self.ids[key] if key in self.ids else key)

    def message(self, key):
        return self.d.get("/v1/messages/" + self.pid(key))

    def sync(self):
        seq = self.d.last_seq()
        before = self.fake.calls("history.list")
        self.d.sync_and_wait(self.A)
        return (self.d.events(accounts=[self.A], after=seq),
                self.fake.calls("history.list") - before)

    def test_1_labels_are_folders(self):
        acct = self.d.account(self.A)
        roles = {f["name"]: f["role"] for f in acct["folders"]}
        self.assertEqual(sorted(roles), sorted(FOLDERS))
        self.assertEqual(roles["INBOX"], "inbox")
        self.assertEqual(roles["SENT"], "sent")
        self.assertEqual(roles["DRAFT"], "drafts")
        self.assertEqual(roles["SPAM"], "junk")
        self.assertEqual(roles["TRASH"], "trash")
        # in5 is in INBOX and Work: one message, two folders.
        m = self.message("in5")
        self.assertEqual(sorted(m["folders"]), ["INBOX", "Work"])
        self.assertEqual(m["subject"], "in5")
        self.assertEqual(m["thread_id"], self.ids["in5"])
        w = self.message("work")
        self.assertEqual(w["folders"], ["Work"])
        self.assertIn("\\Flagged", w["flags"])
        self.assertIn("\\Seen", w["flags"])
        self.assertNotIn("\\Seen", self.message("in4")["flags"] or "")
        synced = [e for e in self.d.events(accounts=[self.A], types=["message.synced"])]
        ids = [e["json"]["message"] for e in synced]
        self.assertEqual(len(ids), len(set(ids)), "a message synced twice")
        self.assertEqual(self.d.folder(self.A, "Work")["messages"], 2)

    def test_2_backfill_loads_older(self):
        d = self.d
        mptest.wait_until(lambda: d.folder(self.A, "INBOX")["messages"] == 6, 60,
                          message="INBOX backfilled to 6")
        listed = [m["id"] for m in d.all_messages(self.A, folder="INBOX")]
        self.assertEqual(sorted(listed), sorted(self.pid("in%d" % i) for i in range(6)))
        self.assertEqual(self.message("in0")["subject"], "in0")

    def test_3_one_body_for_two_labels(self):
        status, _, body = self.d.request("GET", "/v1/messages/%s/raw" % self.pid("in5"))
        self.assertEqual(status, 200)
        self.assertEqual(body, raw("in5"))
        acct = self.d.account(self.A)
        bodies = {f["name"]: f["bodies"] for f in acct["folders"]}
        self.assertEqual(bodies["INBOX"], bodies["Work"])
        raw_gets = [e for e in self.fake.call_log("messages.get")]
        again_status, _, again = self.d.request("GET", "/v1/messages/%s/raw" % self.pid("in5"))
        self.assertEqual((again_status, again), (200, raw("in5")))
        # Served from the one stored body: Gmail is not asked again.
        self.assertEqual(len(self.fake.call_log("messages.get")), len(raw_gets))

    def test_4_delta_new_labels_moves_deletes(self):
        fake, E = self.fake, self.EMAIL
        new = fake.add_message(E, raw("fresh"), ["INBOX", "UNREAD"])
        self.ids["fresh"] = new
        fake.modify_labels(E, self.ids["in3"], add=[self.work], remove=["INBOX"])  # a move
        fake.modify_labels(E, self.ids["in4"], remove=["UNREAD"])                   # read
        fake.modify_labels(E, self.ids["work"], add=["INBOX"])                      # label added
        fake.delete_message(E, self.ids["sent"])
        events, history_calls = self.sync()
        self.assertEqual(history_calls, 1, "one history.list per sync")
        by_msg = {}
        for e in events:
            if e["type"].startswith("message."):
                by_msg.setdefault(e["json"]["message"], []).append(e)
        kinds = {k: [e["type"] for e in v] for k, v in by_msg.items()}
        self.assertEqual(kinds.get(self.pid("fresh")), ["message.new"], events)
        self.assertEqual(kinds.get(self.pid("in3")), ["message.updated"], events)
        moved = data(by_msg[self.pid("in3")][0])
        self.assertEqual(moved.get("folders_added"), ["Work"])
        self.assertEqual(moved.get("folders_removed"), ["INBOX"])
        self.assertEqual(kinds.get(self.pid("in4")), ["message.updated"])
        self.assertIn("\\Seen", self.message("in4")["flags"])
        self.assertEqual(kinds.get(self.pid("work")), ["message.updated"])
        self.assertEqual(data(by_msg[self.pid("work")][0]).get("folders_added"), ["INBOX"])
        self.assertEqual(kinds.get(self.pid("sent")), ["message.deleted"])
        self.assertEqual(sorted(self.message("work")["folders"]), ["INBOX", "Work"])
        self.assertEqual(self.d.folder(self.A, "SENT")["messages"], 0)
        self.assertEqual(self.d.folder(self.A, "Work")["messages"], 3)
        # Nothing new: nothing, still one history.list.
        events, history_calls = self.sync()
        self.assertEqual([e for e in events if e["type"].startswith("message.")], [])
        self.assertEqual(history_calls, 1)

    def test_4b_archive_and_back(self):
        fake, E = self.fake, self.EMAIL
        fake.modify_labels(E, self.ids["in2"], remove=["INBOX"])  # archived
        events, _ = self.sync()
        self.assertEqual([(e["type"], e["json"]["message"]) for e in events
                          if e["type"].startswith("message.")],
                         [("message.deleted", self.pid("in2"))])
        fake.modify_labels(E, self.ids["in2"], add=["INBOX"])     # back in the inbox
        events, _ = self.sync()
        self.assertEqual([(e["type"], e["json"]["message"]) for e in events
                          if e["type"].startswith("message.")],
                         [("message.synced", self.pid("in2"))])
        self.assertEqual(self.message("in2")["folders"], ["INBOX"])

    def test_5_history_404_resets_each_folder_once(self):
        fake, E = self.fake, self.EMAIL
        quiet = fake.add_message(E, raw("during-gap"), ["INBOX"])
        self.ids["gap"] = quiet
        fake.expire_history(E)
        events, _ = self.sync()
        resets = sorted(e["json"]["folder"] for e in events if e["type"] == "folder.reset")
        self.assertEqual(resets, sorted(FOLDERS))
        self.assertEqual([e for e in events if e["type"] == "message.new"], [],
                         "no message.new flood after a resync")
        self.assertEqual(self.message("gap")["subject"], "during-gap")
        # The new cursor works: a later change is a plain delta again.
        fake.modify_labels(E, self.ids["in4"], add=["STARRED"])
        events, history_calls = self.sync()
        self.assertEqual([e["type"] for e in events if e["type"].startswith("message.")],
                         ["message.updated"])
        self.assertEqual(history_calls, 1)
        self.assertEqual([e for e in events if e["type"] == "folder.reset"], [])

    def test_6_never_writes(self):
        writes = [e for e in self.fake.call_log()
                  if e["endpoint"] in ("messages.insert", "watch", "stop")]
        self.assertEqual(writes, [])


    def test_7_deleted_label_leaves_as_a_folder(self):
        """labels.delete: the label's folder goes with its memberships; a
        message also in another label stays (one message.updated leaving the
        folder), one only in that label is deleted, whether or not Gmail's
        history records the removal."""
        fake, E, d = self.fake, self.EMAIL, self.d
        quiet = fake.add_label(E, "Temp")       # deleted without history records
        noisy = fake.add_label(E, "Temp/Old")   # deleted with labelRemoved records
        for key, labels in (("both", ["INBOX", quiet]), ("only", [quiet]),
                            ("both2", ["INBOX", noisy]), ("only2", [noisy])):
            self.ids[key] = fake.add_message(E, raw(key), labels)

        def count(name):
            return (d.folder(self.A, name) or {}).get("messages")

        # A listing is due once a second: sync until it ran.
        mptest.wait_until(lambda: self.sync() and count("Temp") == 2 and
                          count("Temp/Old") == 2, 60,
                          message="the two labels loaded as folders")
        self.assertEqual(sorted(self.message("both")["folders"]), ["INBOX", "Temp"])
        inbox = count("INBOX")
        seq = d.last_seq()
        fake.delete_label(E, quiet)
        fake.delete_label(E, noisy, history=True)
        mptest.wait_until(lambda: self.sync() and count("Temp") is None and
                          count("Temp/Old") is None, 60, message="the labels' folders gone")
        events = d.events(accounts=[self.A], after=seq)
        folders = [f["name"] for f in d.account(self.A)["folders"]]
        self.assertNotIn("Temp", folders)
        self.assertNotIn("Temp/Old", folders)
        self.assertEqual(sorted(folders), sorted(FOLDERS))
        kinds = {}
        for e in events:
            if e["type"].startswith("message."):
                kinds.setdefault(e["json"]["message"], []).append(e)
        touched = {self.pid(k) for k in ("both", "only", "both2", "only2")}
        self.assertEqual(set(kinds), touched, events)
        for key, label in (("both", "Temp"), ("both2", "Temp/Old")):
            evs = kinds[self.pid(key)]
            self.assertEqual([e["type"] for e in evs], ["message.updated"], evs)
            self.assertEqual(data(evs[0]).get("folders_removed"), [label])
            self.assertEqual(data(evs[0]).get("folders"), ["INBOX"])
            self.assertEqual(self.message(key)["folders"], ["INBOX"])
        for key in ("only", "only2"):
            self.assertEqual([e["type"] for e in kinds[self.pid(key)]], ["message.deleted"])
        # Stored once: the INBOX copies are the same messages, untouched.
        self.assertEqual(d.folder(self.A, "INBOX")["messages"], inbox)
        # Nothing left to do: the next sync is quiet.
        events, _ = self.sync()
        self.assertEqual([e for e in events if e["type"].startswith("message.")], [])


class GmailFetchBodies(unittest.TestCase):
    """sync.fetch_bodies: the raw message comes with the metadata (a
    format=raw batch, charged as messages.get), at bootstrap and for new
    mail, so the cache has the body before any reader asks."""
    A = "gb"
    EMAIL = "bodies@example.com"

    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="gmail_bodies",
                                  driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
                                  settings={"sync": {"fetch_bodies": True}})
        cls.fake = fake = new_fake()
        acct = user_account(d, fake, cls.A, cls.EMAIL)
        cls.old = fake.add_message(cls.EMAIL, raw("old-with-body"), ["INBOX"])
        gmail_instance(d, "gmail", fake, [acct])
        d.start()
        d.wait_bootstrapped(cls.A, ["INBOX"])
        mptest.wait_until(lambda: not d.account(cls.A)["sync"]["running"], 60,
                          message="first sync finished")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()

    def raw_gets(self):
        return [e for e in self.fake.call_log("messages.get") if e.get("format") == "raw"]

    def test_bodies_cached_with_the_metadata(self):
        d, fake = self.d, self.fake
        inbox = d.folder(self.A, "INBOX")
        self.assertEqual((inbox["messages"], inbox["bodies"]), (1, 1))
        self.assertEqual(len(self.raw_gets()), 1, "the bootstrap fetched the one body")
        seq = d.last_seq()
        new = fake.add_message(self.EMAIL, raw("new-with-body"), ["INBOX", "UNREAD"])
        d.sync_and_wait(self.A)
        pid = mptest.public_id(self.A, new)
        self.assertEqual([e["json"]["message"] for e in
                          d.events(accounts=[self.A], types=["message.new"], after=seq)], [pid])
        inbox = d.folder(self.A, "INBOX")
        self.assertEqual((inbox["messages"], inbox["bodies"]), (2, 2))
        self.assertEqual(len(self.raw_gets()), 2, "new mail came with its body")
        # A relabel is not new mail: no body fetched for it.
        fake.modify_labels(self.EMAIL, new, remove=["UNREAD"])
        d.sync_and_wait(self.A)
        self.assertEqual(len(self.raw_gets()), 2)
        # The reader gets the cached bytes: Gmail is not asked again.
        gets = len(fake.call_log("messages.get"))
        for mid, subject in ((new, "new-with-body"), (self.old, "old-with-body")):
            status, _, body = d.request("GET", "/v1/messages/%s/raw"
                                        % mptest.public_id(self.A, mid))
            self.assertEqual((status, body), (200, raw(subject)))
        self.assertEqual(len(fake.call_log("messages.get")), gets)


class GmailFailures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = mptest.Daemon(name="gmail_fail", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_invalid_grant_reauth_after_one_token_request(self):
        d = self.d
        fake = new_fake()
        self.addCleanup(fake.stop)
        acct = user_account(d, fake, "revoked", "gone@example.com", revoked=True)
        gmail_instance(d, "gm_revoked", fake, [acct])
        if d.proc is None:
            d.start()
        else:
            d.reload()
        a = mptest.wait_until(lambda: d.account("revoked")["status"] == "reauth" and
                              d.account("revoked"), 30, message="status reauth")
        self.assertIn("re-authorization", a["last_error"])
        self.assertEqual(fake.calls("token"), 1)
        d.sync_and_wait("revoked")
        self.assertEqual(d.account("revoked")["status"], "reauth")
        self.assertEqual(fake.calls("token"), 1)
        self.assertEqual(fake.calls() - fake.calls("token"), 0, "no API call without a token")

    def test_rate_limit_storm_waits_for_retry_after(self):
        d = self.d
        fake = new_fake()
        self.addCleanup(fake.stop)
        email = "busy@example.com"
        acct = user_account(d, fake, "busy", email)
        fake.add_message(email, raw("one"), ["INBOX"])
        gmail_instance(d, "gm_busy", fake, [acct])
        if d.proc is None:
            d.start()
        else:
            d.reload()
        d.wait_bootstrapped("busy", ["INBOX"])
        mptest.wait_until(lambda: not d.account("busy")["sync"]["running"], 60,
                          message="first sync finished")
        fake.add_message(email, raw("two"), ["INBOX"])
        fake.reset_counts()
        retry_after = 3
        fake.fail_next("*", 429, count=None, retry_after=retry_after,
                       reason="rateLimitExceeded", user=email)
        for _ in range(3):
            d.sync("busy")
            time.sleep(0.5)
        mptest.wait_until(lambda: len(fake.call_log(user=email)) >= 2, 60,
                          message="a retry after the first 429")
        fake.clear_failures()
        mptest.wait_until(lambda: d.folder("busy", "INBOX")["messages"] == 2, 60,
                          message="synced after the storm")
        log = [e for e in fake.call_log(user=email) if e["endpoint"] != "token"]
        limited = [e for e in log if e["status"] == 429]
        self.assertTrue(limited)
        for hit in limited:
            inside = [e for e in log if hit["t"] < e["t"] < hit["t"] + retry_after - 0.05]
            self.assertEqual(inside, [], "request inside Retry-After of a 429: %r" % inside)


    def test_service_account_impersonates_the_mailbox(self):
        d = self.d
        fake = new_fake()
        self.addCleanup(fake.stop)
        email = "worker@corp.example"
        fake.add_user(email)
        key = fake.add_service_account("sync@fake-project.iam.gserviceaccount.com")
        key_file = d.write_secret("sa.json", json.dumps(key).encode())
        fake.add_message(email, raw("delegated"), ["INBOX"])
        gmail_instance(d, "gm_sa", fake, [{"id": "sa", "email": email,
                                            "service_account_file": key_file,
                                            "poll_interval": 3600}])
        if d.proc is None:
            d.start()
        else:
            d.reload()
        d.wait_bootstrapped("sa", ["INBOX"])
        listed = d.all_messages("sa", folder="INBOX")
        self.assertEqual([m["subject"] for m in listed], ["delegated"])
        mptest.wait_until(lambda: d.account("sa")["status"] == "ok", 30, message="sa ok")
        # One JWT-bearer grant for the mailbox, no user refresh token.
        self.assertGreaterEqual(fake.calls("token"), 1)
        self.assertEqual(fake.calls("token", user=email), fake.calls("token"))


class GmailCrash(unittest.TestCase):
    def test_sigkill_during_sync_loses_and_duplicates_nothing(self):
        d = mptest.Daemon(name="gmail_kill", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"))
        fake = new_fake()
        self.addCleanup(fake.stop)
        email = "crash@example.com"
        acct = user_account(d, fake, "crash", email)
        for i in range(5):
            fake.add_message(email, raw("old%d" % i, i), ["INBOX"])
        gmail_instance(d, "gm_crash", fake, [acct])
        d.start()
        d.wait_bootstrapped("crash", ["INBOX"])
        mptest.wait_until(lambda: not d.account("crash")["sync"]["running"], 60,
                          message="first sync finished")
        seq = d.last_seq()
        fresh = [fake.add_message(email, raw("new%d" % i, i), ["INBOX", "UNREAD"])
                 for i in range(60)]
        # Hold the metadata batch in flight (its parts are messages.get),
        # kill the daemon there.
        fake.pause("messages.get")
        d.sync("crash")
        mptest.wait_until(lambda: fake.in_flight("messages.get") > 0, 30,
                          message="a metadata batch in flight")
        d.kill()
        fake.resume("messages.get")
        d.start()
        mptest.wait_until(lambda: d.folder("crash", "INBOX")["messages"] == 65, 60,
                          message="every message after the restart")
        d.sync_and_wait("crash")
        events = d.events(accounts=["crash"], after=seq, types=["message.new"])
        got = sorted(e["json"]["message"] for e in events)
        self.assertEqual(got, sorted(mptest.public_id("crash", m) for m in fresh))
        d.stop()


if __name__ == "__main__":
    mptest.main()

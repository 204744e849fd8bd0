"""graph.so against the local fake Graph (fake_graph.py), through the real
daemon: folders with child folders and well-known roles, bootstrap of the
newest messages and progressive backfill, delta per folder with new mail,
flag changes, moves (message.updated with folders_added / folders_removed
under the same id, never a delete plus a new) and deletes; changes to old,
backfilled mail once the coverage walk switched the folder to the
unfiltered delta; sparse summaries completed later; a 410 resets the one
folder once without a message.new flood; invalid_grant parks the account
after one token request; a 429 storm gets no request inside Retry-After;
never more than 4 requests in flight for the mailbox; SIGKILL during a
sync loses and duplicates nothing."""

import os
import sys
import time
import unittest

import mptest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_graph  # noqa: E402

CLIENT, SECRET = "11111111-2222-3333-4444-555555555555", "app-secret"
ROLES = {"Inbox": "inbox", "Sent Items": "sent", "Drafts": "drafts",
         "Deleted Items": "trash", "Junk Email": "junk", "Archive": "archive"}


def raw(subject, n=0):
    return (b"From: Ann <ann@example.org>\r\nTo: me@contoso.example\r\nSubject: %s\r\n"
            b"Message-ID: <%s.%d@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody of %s\r\n" % (subject.encode(), subject.encode(), n, subject.encode()))


def new_fake():
    fake = fake_graph.FakeGraph()
    fake.start()
    fake.add_client(CLIENT, SECRET, roles=("Mail.Read",))
    return fake


def graph_instance(d, name, fake, accounts, auth="app"):
    """plugins.d/<name>.yaml for the graph driver against `fake`."""
    keys = {"tenant": fake.tenant_id, "client_id": CLIENT, "auth": auth,
            "api_url": fake.api_url, "login_url": fake.login_url}
    # A confidential client in both modes (delegated may also be public).
    keys["client_secret_file"] = d.write_secret(name + ".client_secret",
                                                SECRET.encode() + b"\n")
    return d.write_instance(name, mptest.render_instance("graph", accounts, **keys))


def data(ev):
    j = ev["json"]
    return j.get("data") or j


def message_events(events):
    by_msg = {}
    for e in events:
        if e["type"].startswith("message."):
            by_msg.setdefault(e["json"]["message"], []).append(e)
    return by_msg


class GraphSync(unittest.TestCase):
    A = "ol"
    USER = "ann@contoso.example"

    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(
            name="graph_sync", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
            settings={"backfill": {"mode": "progressive", "bootstrap_max": 3,
                                   "batch_size": 2},
                      "schedule": {"backfill_interval": 1},
                      "debug": {"clock_control": True}})
        cls.fake = fake = new_fake()
        fake.add_user(cls.USER)
        cls.projects = fake.add_folder(cls.USER, "Projects", parent="inbox")
        now = time.time()
        ids = {}
        # Six inbox messages a day old and more (three loaded at bootstrap,
        # three by backfill), one in Inbox/Projects, one sent.
        for i in range(6):
            ids["in%d" % i] = fake.add_message(cls.USER, raw("in%d" % i), folder="inbox",
                                               received=now - 86400 - (5 - i) * 3600,
                                               is_read=i % 2 == 1)
        ids["proj"] = fake.add_message(cls.USER, raw("proj"), folder=cls.projects,
                                       received=now - 7200)
        ids["sent"] = fake.add_message(cls.USER, raw("sent"), folder="sentitems",
                                       received=now - 3600, is_read=True)
        cls.ids = ids
        graph_instance(d, "graph", fake, [{"id": cls.A, "user": cls.USER,
                                           "poll_interval": 3600}])
        d.start()
        d.wait_bootstrapped(cls.A, ["Inbox", "Inbox/Projects", "Sent Items", "Archive"])
        mptest.wait_until(lambda: not d.account(cls.A)["sync"]["running"], 60,
                          message="first sync finished")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()

    def pid(self, key):
        return mptest.public_id(self.A, self.ids.get(key, key))

    def message(self, key):
        return self.d.get("/v1/messages/" + self.pid(key))

    def sync(self):
        seq = self.d.last_seq()
        self.d.sync_and_wait(self.A)
        return self.d.events(accounts=[self.A], after=seq)

    def wait_backfilled(self, folder):
        mptest.wait_until(
            lambda: self.d.folder(self.A, folder)["backfill"]["status"] == "done", 90,
            message="%s backfill done (listing and coverage walk)" % folder)

    def test_1_folders_children_and_roles(self):
        acct = self.d.account(self.A)
        roles = {f["name"]: f["role"] for f in acct["folders"]}
        for name, role in ROLES.items():
            self.assertEqual(roles.get(name), role, roles)
        self.assertIn("Inbox/Projects", roles)
        self.assertEqual(self.message("proj")["folders"], ["Inbox/Projects"])
        self.assertEqual(self.message("sent")["folders"], ["Sent Items"])
        self.assertIn("\\Seen", self.message("sent")["flags"])
        # No public_url: polling, and the status says why.
        self.assertIn("no public_url", acct["push_state"])
        # Stored under the immutable id (the fake answers REST ids to a
        # client that does not ask for immutable ones).
        self.assertEqual(self.message("in5")["subject"], "in5")

    def test_2_bootstrap_newest_then_backfill(self):
        d = self.d
        mptest.wait_until(lambda: d.folder(self.A, "Inbox")["messages"] == 6, 60,
                          message="Inbox backfilled to 6")
        listed = sorted(m["id"] for m in d.all_messages(self.A, folder="Inbox"))
        self.assertEqual(listed, sorted(self.pid("in%d" % i) for i in range(6)))
        synced = [e["json"]["message"] for e in
                  d.events(accounts=[self.A], types=["message.synced"])]
        self.assertEqual(len(synced), len(set(synced)), "a message synced twice")
        self.assertEqual(d.events(accounts=[self.A], types=["message.new"]), [],
                         "history is never message.new")
        # The bootstrap listed the newest page only: no enumeration of the
        # folder, and the delta baseline was filtered to recent mail.
        lists = [e for e in self.fake.call_log("messages.list")]
        self.assertTrue(lists)

    def test_3_raw_fetch(self):
        status, _, body = self.d.request("GET", "/v1/messages/%s/raw" % self.pid("in4"))
        self.assertEqual(status, 200)
        self.assertEqual(body, raw("in4"))

    def test_4_delta_new_flags_moves_deletes(self):
        fake, U = self.fake, self.USER
        self.ids["fresh"] = fake.add_message(U, raw("fresh"), folder="inbox")
        fake.update_message(U, self.ids["in5"], is_read=True, flag="flagged")
        fake.move_message(U, self.ids["in4"], "archive")
        fake.delete_message(U, self.ids["sent"])
        fake.add_message(U, raw("proj2"), folder=self.projects)
        events = self.sync()
        kinds = {k: [e["type"] for e in v] for k, v in message_events(events).items()}
        self.assertEqual(kinds.get(self.pid("fresh")), ["message.new"], events)
        self.assertEqual(kinds.get(self.pid("in5")), ["message.updated"], events)
        self.assertIn("\\Flagged", self.message("in5")["flags"])
        self.assertIn("\\Seen", self.message("in5")["flags"])
        # The move: one update under the same id, whatever folder ran first.
        self.assertEqual(kinds.get(self.pid("in4")), ["message.updated"], events)
        moved = data(message_events(events)[self.pid("in4")][0])
        self.assertEqual(moved.get("folders_added"), ["Archive"])
        self.assertEqual(moved.get("folders_removed"), ["Inbox"])
        self.assertEqual(self.message("in4")["folders"], ["Archive"])
        self.assertEqual(kinds.get(self.pid("sent")), ["message.deleted"], events)
        self.assertEqual(self.d.folder(self.A, "Sent Items")["messages"], 0)
        news = [e for e in events if e["type"] == "message.new"]
        self.assertEqual(len(news), 2, news)  # fresh and proj2 (child folder)
        # The moved message's body is the same message.
        status, _, body = self.d.request("GET", "/v1/messages/%s/raw" % self.pid("in4"))
        self.assertEqual((status, body), (200, raw("in4")))
        # Nothing changed: nothing emitted.
        events = self.sync()
        self.assertEqual([e for e in events if e["type"].startswith("message.")], [])

    def test_5_old_mail_changes_after_coverage(self):
        """in0 is older than anything the bootstrap's filtered delta covers:
        its flag change and a delete of old mail arrive once the coverage
        walk has switched Inbox to the unfiltered delta."""
        self.wait_backfilled("Inbox")
        self.sync()  # the switch happens in a delta run
        fake, U = self.fake, self.USER
        fake.update_message(U, self.ids["in0"], flag="flagged")
        fake.delete_message(U, self.ids["in1"])
        events = self.sync()
        kinds = {k: [e["type"] for e in v] for k, v in message_events(events).items()}
        self.assertEqual(kinds.get(self.pid("in0")), ["message.updated"], events)
        self.assertIn("\\Flagged", self.message("in0")["flags"])
        self.assertEqual(kinds.get(self.pid("in1")), ["message.deleted"], events)

    def test_6_sparse_summary_is_repaired(self):
        fake, U = self.fake, self.USER
        self.ids["thin"] = fake.add_message(U, raw("thin"), folder="inbox",
                                            sparse=("subject", "from", "receivedDateTime"))
        events = self.sync()
        self.assertEqual([e["type"] for e in message_events(events).get(self.pid("thin"), [])],
                         ["message.new"], events)
        self.assertFalse(self.message("thin").get("subject"))
        fake.complete_sparse(U, self.ids["thin"])
        # The repair re-reads at its slower cadence (15 min): move the
        # daemon's clock past it.
        self.d.post("/v1/debug/clock", {"offset_ms": 16 * 60 * 1000}, expect=(200,))
        self.sync()
        self.assertEqual(self.message("thin")["subject"], "thin")

    def test_7_410_resets_one_folder_once(self):
        fake, U = self.fake, self.USER
        self.ids["gap"] = fake.add_message(U, raw("during-gap"), folder="inbox")
        fake.expire_delta(U, folder="inbox")
        events = self.sync()
        resets = [e["json"]["folder"] for e in events if e["type"] == "folder.reset"]
        self.assertEqual(resets, ["Inbox"])
        self.assertEqual([e for e in events if e["type"] == "message.new"], [],
                         "no message.new flood after a resync")
        self.assertEqual(self.message("gap")["subject"], "during-gap")
        # Bootstrapped again: old mail is covered once the walk is done.
        self.wait_backfilled("Inbox")
        self.sync()
        fake.update_message(U, self.ids["in5"], flag="notFlagged")
        events = self.sync()
        self.assertEqual([e["type"] for e in events if e["type"].startswith("message.")],
                         ["message.updated"])
        self.assertEqual([e for e in events if e["type"] == "folder.reset"], [])

    def test_8_never_writes_and_stays_under_limits(self):
        writes = [e for e in self.fake.call_log()
                  if e["endpoint"] in ("messages.create", "messages.move", "messages.update",
                                       "messages.delete", "subscriptions.create")]
        self.assertEqual(writes, [])
        self.assertLessEqual(self.fake.max_concurrent(self.USER), 4)
        self.assertEqual(self.fake.throttled(self.USER), 0)


class GraphFailures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = mptest.Daemon(name="graph_fail", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def start_or_reload(self):
        if self.d.proc is None:
            self.d.start()
        else:
            self.d.reload()

    def test_invalid_grant_reauth_after_one_token_request(self):
        d = self.d
        fake = new_fake()
        self.addCleanup(fake.stop)
        user = "gone@contoso.example"
        fake.add_user(user)
        token = fake.add_refresh_token(CLIENT, user)
        fake.revoke_refresh_token(token)
        rt = d.write_secret("gone.rt", token.encode() + b"\n")
        graph_instance(d, "gr_revoked", fake,
                       [{"id": "revoked", "user": user, "refresh_token_file": rt,
                         "poll_interval": 3600}], auth="delegated")
        self.start_or_reload()
        a = mptest.wait_until(lambda: d.account("revoked")["status"] == "reauth" and
                              d.account("revoked"), 30, message="status reauth")
        self.assertIn("re-authorization", a["last_error"])
        self.assertEqual(fake.calls("token"), 1)
        d.sync_and_wait("revoked")
        self.assertEqual(d.account("revoked")["status"], "reauth")
        self.assertEqual(fake.calls("token"), 1)
        self.assertEqual(fake.calls() - fake.calls("token"), 0, "no API call without a token")

    def test_delegated_refresh_token_syncs(self):
        d = self.d
        fake = new_fake()
        self.addCleanup(fake.stop)
        user = "bob@contoso.example"
        fake.add_user(user)
        fake.add_message(user, raw("delegated"), folder="inbox")
        rt = d.write_secret("bob.rt", fake.add_refresh_token(CLIENT, user).encode() + b"\n")
        graph_instance(d, "gr_deleg", fake,
                       [{"id": "bob", "user": user, "refresh_token_file": rt,
                         "poll_interval": 3600}], auth="delegated")
        self.start_or_reload()
        d.wait_bootstrapped("bob", ["Inbox"])
        self.assertEqual([m["subject"] for m in d.all_messages("bob", folder="Inbox")],
                         ["delegated"])

    def test_rate_limit_storm_waits_for_retry_after(self):
        d = self.d
        fake = new_fake()
        self.addCleanup(fake.stop)
        user = "busy@contoso.example"
        fake.add_user(user)
        fake.add_message(user, raw("one"), folder="inbox")
        graph_instance(d, "gr_busy", fake, [{"id": "busy", "user": user,
                                             "poll_interval": 3600}])
        self.start_or_reload()
        d.wait_bootstrapped("busy", ["Inbox"])
        mptest.wait_until(lambda: not d.account("busy")["sync"]["running"], 60,
                          message="first sync finished")
        fake.add_message(user, raw("two"), folder="inbox")
        fake.reset_counts()
        retry_after = 3
        fake.fail_next("*", 429, count=None, retry_after=retry_after, user=user)
        for _ in range(3):
            d.sync("busy")
            time.sleep(0.5)
        mptest.wait_until(lambda: len([e for e in fake.call_log(user=user)
                                       if e["endpoint"] != "token"]) >= 2, 60,
                          message="a retry after the first 429")
        fake.clear_failures()
        mptest.wait_until(lambda: d.folder("busy", "Inbox")["messages"] == 2, 60,
                          message="synced after the storm")
        log = [e for e in fake.call_log(user=user) if e["endpoint"] != "token"]
        limited = [e for e in log if e["status"] == 429]
        self.assertTrue(limited)
        for hit in limited:
            inside = [e for e in log if hit["t"] < e["t"] < hit["t"] + retry_after - 0.05]
            self.assertEqual(inside, [], "request inside Retry-After of a 429: %r" % inside)
        self.assertLessEqual(fake.max_concurrent(user), 4)



class GraphCrash(unittest.TestCase):
    def test_sigkill_during_sync_loses_and_duplicates_nothing(self):
        d = mptest.Daemon(name="graph_kill", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"))
        fake = new_fake()
        self.addCleanup(fake.stop)
        user = "crash@contoso.example"
        fake.add_user(user)
        for i in range(5):
            fake.add_message(user, raw("old%d" % i, i), folder="inbox",
                             received=time.time() - 86400 - i)
        graph_instance(d, "gr_crash", fake, [{"id": "crash", "user": user,
                                              "poll_interval": 3600}])
        d.start()
        d.wait_bootstrapped("crash", ["Inbox"])
        mptest.wait_until(lambda: not d.account("crash")["sync"]["running"], 60,
                          message="first sync finished")
        seq = d.last_seq()
        fresh = [fake.add_message(user, raw("new%d" % i, i), folder="inbox")
                 for i in range(60)]
        # Hold the $batch that reads the delta's ids in flight (its parts
        # are messages.get); kill the daemon there.
        fake.pause("messages.get")
        d.sync("crash")
        mptest.wait_until(lambda: fake.in_flight(endpoint="messages.get") > 0, 30,
                          message="a $batch in flight")
        d.kill()
        fake.resume("messages.get")
        d.start()
        mptest.wait_until(lambda: d.folder("crash", "Inbox")["messages"] == 65, 60,
                          message="every message after the restart")
        d.sync_and_wait("crash")
        events = d.events(accounts=["crash"], after=seq, types=["message.new"])
        got = sorted(e["json"]["message"] for e in events)
        self.assertEqual(got, sorted(mptest.public_id("crash", m) for m in fresh))
        d.stop()


if __name__ == "__main__":
    mptest.main()

"""graph.so change notifications against the local fake Graph
(fake_graph.py), through the real daemon: one subscription per synced
folder with its own clientState and both URLs; the validation handshake
answered exactly (encoded tokens, odd characters, both URLs, text/plain,
nosniff); a notification for one folder syncs that folder only; forged
notifications (wrong clientState, unknown subscription, malformed JSON,
oversized body, a forged item in a genuine batch, an item on the wrong URL)
refused with nothing recorded; duplicates give one event; a batched POST
for several subscriptions; the three lifecycle events (reauthorize,
recreate + delta sync, delta sync), counted in status and /metrics; renewal
by PATCH with the debug clock, recreate on 404, the 4230-minute fallback;
subscriptions deleted when the account is removed; and a validation
timeout leaves the account polling with a push state that says why."""

import http.client
import json
import os
import re
import socket
import sys
import time
import unittest
import urllib.parse

import mptest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_graph  # noqa: E402

CLIENT, SECRET = "11111111-2222-3333-4444-555555555555", "app-secret"
INSTANCE = "ol"
DAY = 24 * 3600


def raw(subject):
    return (b"From: Ann <ann@example.org>\r\nTo: me@contoso.example\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody of %s\r\n" % (subject.encode(), subject.encode(), subject.encode()))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(d):
    _, _, data = d.request("GET", "/metrics")
    out = {}
    for line in data.decode().splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\d+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = int(m.group(3))
    return out


def http_post(url, body=b"", ctype="text/plain"):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    path = u.path + ("?" + u.query if u.query else "")
    conn.request("POST", path, body=body, headers={"Content-Type": ctype})
    resp = conn.getresponse()
    data = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, headers, data


def graph_instance(d, fake, port, accounts, **extra):
    keys = {"tenant": fake.tenant_id, "client_id": CLIENT, "api_url": fake.api_url,
            "login_url": fake.login_url, "public_url": "http://127.0.0.1:%d" % port}
    keys.update(extra)
    keys["client_secret_file"] = d.write_secret(INSTANCE + ".client_secret",
                                                SECRET.encode() + b"\n")
    return d.write_instance(INSTANCE, mptest.render_instance("graph", accounts, **keys))


class GraphPush(unittest.TestCase):
    A = "ol"
    USER = "ann@contoso.example"
    A2 = "ol2"
    USER2 = "bo@contoso.example"

    @classmethod
    def setUpClass(cls):
        cls.port = port = free_port()
        cls.d = d = mptest.Daemon(
            name="graph_push", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
            settings={"http": {"listen": "127.0.0.1:%d" % port,
                               "metrics_per_account": True},
                      "schedule": {"push_renew_interval": 1},
                      "debug": {"clock_control": True}})
        cls.fake = fake = fake_graph.FakeGraph()
        fake.start()
        fake.add_client(CLIENT, SECRET, roles=("Mail.Read",))
        fake.add_user(cls.USER)
        cls.projects = fake.add_folder(cls.USER, "Projects", parent="inbox")
        fake.add_message(cls.USER, raw("old"), folder="inbox")
        cls.base = "http://127.0.0.1:%d/push/%s" % (port, INSTANCE)
        # A second mailbox in the same instance (one POST may carry both).
        fake.add_user(cls.USER2)
        # Syncs come from push only (poll hourly).
        graph_instance(d, fake, port, [{"id": cls.A, "user": cls.USER, "poll_interval": 3600},
                                       {"id": cls.A2, "user": cls.USER2,
                                        "poll_interval": 3600, "folders": ["Inbox"]}])
        d.start()
        cls.folders = [f["name"] for f in d.wait_bootstrapped(cls.A, ["Inbox"])["folders"]]
        d.wait_bootstrapped(cls.A2, ["Inbox"])
        for a in (cls.A, cls.A2):
            mptest.wait_until(lambda: d.account(a)["push_live"], 60, message="push live")
        cls.idle_wait()
        cls.idle_wait(cls.A2)
        cls.clock = 0

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.fake.stop()

    @classmethod
    def idle_wait(cls, account=None):
        def idle():
            s = cls.d.account(account or cls.A)["sync"]
            return not s["running"] and not s["rerun"]
        mptest.wait_until(idle, 60, message="sync idle")

    def subs(self):
        """folder -> subscription id, from the account's profile."""
        prof = self.d.account(self.A)["profile"]
        return {s["folder"]: s["id"] for s in prof["subscriptions"]}

    def new_events(self, seq, mid):
        pid = mptest.public_id(self.A, mid)
        return [e for e in self.d.events(accounts=[self.A], types=["message.new"], after=seq)
                if e["json"]["message"] == pid]

    def wait_new(self, seq, mid):
        return mptest.wait_until(lambda: self.new_events(seq, mid), 30,
                                 message="message.new for %s" % mid)

    def folder_syncs(self):
        return {f["name"]: f["last_sync"] for f in self.d.account(self.A)["folders"]}

    def move_clock(self, seconds):
        GraphPush.clock += seconds
        self.fake.advance(seconds)
        self.d.post("/v1/debug/clock", {"offset_ms": int(GraphPush.clock * 1000)},
                    expect=(200,))

    # ---- subscriptions ----

    def test_1_one_subscription_per_folder(self):
        acct = self.d.account(self.A)
        fsubs = self.fake.subscriptions_of(self.USER)
        self.assertEqual(sorted(self.subs()), sorted(self.folders))
        self.assertEqual(len(fsubs), len(self.folders))
        by_id = {s["id"]: s for s in fsubs}
        self.assertEqual(sorted(by_id), sorted(self.subs().values()))
        folder_ids = set()
        for s in fsubs:
            self.assertEqual(s["change_types"], ["created", "updated", "deleted"])
            self.assertEqual(s["url"], self.base)
            self.assertEqual(s["lifecycle_url"], self.base + "/lifecycle")
            self.assertIsNotNone(s["folder_id"])
            self.assertEqual(s["resource"], "/users/%s/mailFolders('%s')/messages"
                             % (self.USER, s["folder_id"]))
            self.assertTrue(s["immutable"])
            self.assertGreaterEqual(len(s["client_state"]), 43)
            folder_ids.add(s["folder_id"])
        self.assertEqual(folder_ids, {self.projects} | {
            self.fake.folder_id(self.USER, f) for f in ("inbox", "sentitems", "drafts",
                                                         "deleteditems", "junkemail",
                                                         "archive", "outbox",
                                                         "conversationhistory")})
        states = [s["client_state"] for s in fsubs]
        self.assertEqual(len(set(states)), len(states), "one clientState per subscription")
        # Never a secret in the API or the CLI.
        text = json.dumps(acct)
        out = self.d.ctl("account", self.A)
        self.assertEqual(out.returncode, 0, out.stderr)
        log = self.d.log_text()  # at log_level debug
        for st in states:
            self.assertNotIn(st, text)
            self.assertNotIn(st, out.stdout)
            self.assertNotIn(st, log)
        self.assertTrue(acct["push_live"], acct["push_state"])
        self.assertIn("%d subscriptions" % len(self.folders), acct["push_state"])
        # mailpulsectl account: each subscription with its expiry.
        for sid in by_id:
            self.assertIn(sid, out.stdout)
        self.assertRegex(out.stdout, r'"expires":"\d{4}-\d\d-\d\dT')
        # The second account syncs only its Inbox (folders:), so only that
        # is subscribed.
        subs2 = self.fake.subscriptions_of(self.USER2)
        self.assertEqual([x["folder_id"] for x in subs2],
                         [self.fake.folder_id(self.USER2, "inbox")])
        self.assertEqual([p["folder"] for p in
                          self.d.account(self.A2)["profile"]["subscriptions"]], ["Inbox"])

    def test_2_validation_handshake_exact(self):
        tokens = ["Validation: Testing client application reachability for subscription "
                  "Request-Id: 0f6b3a7e-9a55-4ad4-a9b8-8d1b4e7c1a2f",
                  "a+b c&d=e%f/g?h#i", "<script>alert(1)</script>", "line\r\nX-Injected: yes",
                  "üñí©ødé ✓", "validationToken=inner&validationToken=twice", "'\"`;--"]
        for url in (self.base, self.base + "/lifecycle"):
            for tok in tokens:
                self.assertIsNone(self.fake.check_validation(url, tok), (url, tok))
        # The answer as bytes: text/plain, nosniff, nothing reaches a header.
        q = urllib.parse.quote("<b>x</b>\r\nX-Injected: yes", safe="")
        for url in (self.base, self.base + "/lifecycle"):
            status, headers, body = http_post(url + "?validationToken=" + q)
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
            self.assertEqual(headers.get("x-content-type-options"), "nosniff")
            self.assertNotIn("x-injected", headers)
            self.assertEqual(body, b"<b>x</b>\r\nX-Injected: yes")

    # ---- notifications ----

    def test_3_notification_syncs_its_folder_only(self):
        before = self.folder_syncs()
        seq = self.d.last_seq()
        time.sleep(0.01)
        mid = self.fake.add_message(self.USER, raw("projects-1"), folder=self.projects)
        self.wait_new(seq, mid)
        self.idle_wait()
        after = self.folder_syncs()
        self.assertNotEqual(after["Inbox/Projects"], before["Inbox/Projects"])
        for name in self.folders:
            if name != "Inbox/Projects":
                self.assertEqual(after[name], before[name], name)
        acks = [p for p in self.fake.push_log if p["kind"] == "change"]
        self.assertEqual(acks[-1]["status"], 202)

    def test_4_forged_notifications_refused_nothing_recorded(self):
        self.idle_wait()
        sid = self.subs()["Inbox/Projects"]
        self.fake.auto_notify = False
        try:
            mid = self.fake.add_message(self.USER, raw("forged-target"), folder=self.projects)
            seq = self.d.last_seq()
            syncs = self.folder_syncs()
            deltas = self.fake.calls("messages.delta")
            runs = self.d.account(self.A)["sync"]["runs"]
            rejected = metrics(self.d).get("mailpulse_push_rejected_total", 0)
            good = self.fake.change_item(sid, mid)
            cases = [
                # wrong clientState (same length, then another length)
                (403, [dict(good, clientState="A" * 43)]),
                (403, [dict(good, clientState="short")]),
                # unknown subscription
                (404, [dict(good, subscriptionId="00000000-0000-0000-0000-000000000000")]),
                # a genuine item with a forged one: the whole POST refused
                (403, [good, dict(good, clientState="B" * 43)]),
                # a lifecycle item on the notification URL
                (400, [self.fake.lifecycle_item(sid, "missed")]),
                # no clientState at all
                (400, [{k: v for k, v in good.items() if k != "clientState"}]),
            ]
            for want, items in cases:
                (status, _, _), = self.fake.send_notifications(self.base, items)
                self.assertEqual(status, want, items)
            # a change item on the lifecycle URL
            (status, _, _), = self.fake.send_notifications(self.base + "/lifecycle", [good])
            self.assertEqual(status, 400)
            status, _, _ = self.fake.post_raw(self.base, b'{"value":[{"subscriptionId":')
            self.assertEqual(status, 400)
            status, _, _ = self.fake.post_raw(self.base, b"\xff\xfe not json")
            self.assertEqual(status, 400)
            big = b'{"value":[' + b" " * (300 * 1024) + b"]}"
            status, _, _ = self.fake.post_raw(self.base, big)
            self.assertEqual(status, 413)
            time.sleep(1.0)
            self.assertEqual(self.new_events(seq, mid), [])
            self.assertEqual(self.folder_syncs(), syncs)
            self.assertEqual(self.fake.calls("messages.delta"), deltas)
            self.assertEqual(self.d.account(self.A)["sync"]["runs"], runs)
            self.assertGreaterEqual(
                metrics(self.d).get("mailpulse_push_rejected_total", 0) - rejected, 9)
            # The genuine notification afterwards is taken.
            (status, _, _), = self.fake.send_notifications(self.base, [good])
            self.assertEqual(status, 202)
            self.wait_new(seq, mid)
        finally:
            self.fake.auto_notify = True
        self.idle_wait()

    def test_5_duplicates_one_event(self):
        sid = self.subs()["Inbox"]
        self.fake.auto_notify = False
        try:
            seq = self.d.last_seq()
            mid = self.fake.add_message(self.USER, raw("dup"), folder="inbox")
            for status, _, _ in self.fake.notify_change(sid, mid, copies=4):
                self.assertEqual(status, 202)
            self.wait_new(seq, mid)
            self.idle_wait()
            # and once more after the sync ran
            self.fake.notify_change(sid, mid, copies=2)
            self.idle_wait()
            self.d.sync_and_wait(self.A)
            self.assertEqual(len(self.new_events(seq, mid)), 1)
        finally:
            self.fake.auto_notify = True

    def test_6_batched_post_for_several_subscriptions(self):
        seq = self.d.last_seq()
        n_log = len(self.fake.push_log)
        self.fake.hold_notifications()
        try:
            m1 = self.fake.add_message(self.USER, raw("batch-inbox"), folder="inbox")
            m2 = self.fake.add_message(self.USER, raw("batch-projects"), folder=self.projects)
            m3 = self.fake.add_message(self.USER2, raw("batch-other-mailbox"), folder="inbox")
        finally:
            self.fake.release_notifications()
        self.fake.wait_notifications_idle()
        posts = [p for p in self.fake.push_log[n_log:] if p["kind"] == "change"]
        self.assertEqual(len(posts), 1, posts)
        self.assertEqual(len(posts[0]["subscriptions"]), 3)
        self.assertEqual(posts[0]["status"], 202)
        self.wait_new(seq, m1)
        self.wait_new(seq, m2)
        pid = mptest.public_id(self.A2, m3)
        mptest.wait_until(lambda: [e for e in self.d.events(accounts=[self.A2],
                                                            types=["message.new"], after=seq)
                                   if e["json"]["message"] == pid], 30,
                          message="message.new in the other mailbox")
        self.idle_wait()
        self.idle_wait(self.A2)

    # ---- lifecycle ----

    def events_count(self, name):
        return self.d.account(self.A)["profile"]["push_events"][name]

    def metric_event(self, name):
        return metrics(self.d).get(
            'mailpulse_account_push_events_total{account="%s",event="%s"}' % (self.A, name))

    def test_7_reauthorization_required(self):
        sid = self.subs()["Inbox"]
        before = self.fake.subscription(sid)["reauthorized"]
        self.fake.require_reauthorization(sid)
        mptest.wait_until(lambda: self.fake.subscription(sid)["reauthorized"] > before, 30,
                          message="reauthorized")
        self.assertFalse(self.fake.subscription(sid)["paused"])
        self.assertEqual(self.subs()["Inbox"], sid)
        mptest.wait_until(lambda: self.events_count("reauthorizationRequired") == 1, 30,
                          message="counted")
        self.assertEqual(self.metric_event("reauthorizationRequired"), 1)
        self.assertIn("reauthorizationRequired 1", self.d.account(self.A)["push_state"])
        # Delivering again.
        seq = self.d.last_seq()
        mid = self.fake.add_message(self.USER, raw("after-reauth"), folder="inbox")
        self.wait_new(seq, mid)
        self.idle_wait()

    def test_8_subscription_removed_recreated_and_synced(self):
        sid = self.subs()["Inbox/Projects"]
        seq = self.d.last_seq()
        self.fake.auto_notify = False
        try:
            # A change Graph never notified: only the delta sync finds it.
            mid = self.fake.add_message(self.USER, raw("while-removed"), folder=self.projects)
        finally:
            self.fake.auto_notify = True
        (status, _, _), = self.fake.remove_subscription(sid)
        self.assertEqual(status, 202)
        self.wait_new(seq, mid)
        mptest.wait_until(lambda: self.subs()["Inbox/Projects"] != sid, 30,
                          message="recreated")
        new = self.subs()["Inbox/Projects"]
        live = self.fake.subscription(new)
        self.assertIsNotNone(live)
        self.assertEqual(live["folder_id"], self.projects)
        self.assertIsNone(self.fake.subscription(sid))
        self.assertEqual(self.events_count("subscriptionRemoved"), 1)
        self.assertEqual(self.metric_event("subscriptionRemoved"), 1)
        self.idle_wait()
        # The new one delivers.
        seq = self.d.last_seq()
        mid = self.fake.add_message(self.USER, raw("after-recreate"), folder=self.projects)
        self.wait_new(seq, mid)
        self.idle_wait()

    def test_9_missed_syncs_the_folder(self):
        sid = self.subs()["Sent Items"]
        seq = self.d.last_seq()
        self.fake.auto_notify = False
        try:
            mid = self.fake.add_message(self.USER, raw("missed"), folder="sentitems")
        finally:
            self.fake.auto_notify = True
        (status, _, _), = self.fake.send_lifecycle(sid, "missed")
        self.assertEqual(status, 202)
        self.wait_new(seq, mid)
        mptest.wait_until(lambda: self.events_count("missed") == 1, 30, message="counted")
        self.assertEqual(self.metric_event("missed"), 1)
        self.assertIn("missed 1", self.d.account(self.A)["push_state"])
        self.idle_wait()

    def test_9b_restart_keeps_the_set(self):
        # The set comes back from driver state: no subscription is created
        # again, and a notification right after the start is verified.
        subs = self.subs()
        creates = self.fake.calls("subscriptions.create")
        self.d.restart()
        self.fake.auto_notify = False
        try:
            seq = self.d.last_seq()
            mid = self.fake.add_message(self.USER, raw("after-restart"), folder="inbox")
            (status, _, _), = self.fake.notify_change(subs["Inbox"], mid)
            self.assertEqual(status, 202)
            self.wait_new(seq, mid)
        finally:
            self.fake.auto_notify = True
        self.idle_wait()
        self.assertEqual(self.subs(), subs)
        self.assertEqual(self.fake.calls("subscriptions.create"), creates)
        self.assertTrue(self.d.account(self.A)["push_live"])

    # ---- renewal (debug clock) ----

    def test_a_renewal_recreate_and_fallback(self):
        self.idle_wait()
        subs = self.subs()
        old = {sid: self.fake.subscription(sid)["expires"] for sid in subs.values()}
        patches = self.fake.calls("subscriptions.update")
        # 6.5 days on: within a day of the 7-day expiry, every one is renewed
        # by PATCH under the same id.
        self.move_clock(6.5 * DAY)

        def renewed():
            for sid in subs.values():
                s = self.fake.subscription(sid)
                if s is None or s["expires"] < old[sid] + 6 * DAY:
                    return False
            return True
        mptest.wait_until(renewed, 60, message="renewed by PATCH")
        self.assertGreaterEqual(self.fake.calls("subscriptions.update") - patches, len(subs))
        self.assertEqual(self.subs(), subs)
        # Graph forgets Drafts' subscription (404 on PATCH) and lowers the
        # lifetime to 4230 minutes: Drafts is created again, the rest renew
        # for 4230 minutes.
        drafts = subs["Drafts"]
        self.fake.remove_subscription(drafts, notify=False)
        self.fake.max_subscription_minutes = 4230
        self.move_clock(6.5 * DAY)

        def recreated():
            cur = self.subs()
            return cur.get("Drafts") not in (None, drafts) and cur
        cur = mptest.wait_until(recreated, 60, message="Drafts recreated")
        self.assertIsNotNone(self.fake.subscription(cur["Drafts"]))
        now = self.fake.now()

        def all_4230():
            for sid in self.subs().values():
                s = self.fake.subscription(sid)
                if s is None or s["expires"] < now + 4000 * 60:
                    return False
            return True
        mptest.wait_until(all_4230, 60, message="renewed for 4230 minutes")
        for name, sid in self.subs().items():
            if name != "Drafts":
                self.assertEqual(sid, subs[name])
            self.assertLessEqual(self.fake.subscription(sid)["expires"], now + 4230 * 60 + 120)
        self.assertEqual(len(self.fake.subscriptions_of(self.USER)), len(self.folders))
        self.idle_wait()

    def test_b_folder_added_and_removed(self):
        self.idle_wait()
        temp = self.fake.add_folder(self.USER, "Temp")
        # The folder list is refreshed hourly (folder_list_interval). The
        # first attempt to subscribe the new folder fails its validation:
        # the account is not live (it polls) until the next refresh.
        self.fake.inject_validation_timeout(1)
        self.move_clock(3700)
        self.d.sync(self.A)
        acct = mptest.wait_until(
            lambda: (lambda a: a["push_state"].startswith("reconnecting") and a)(
                self.d.account(self.A)), 60, message="not live while Temp is unsubscribed")
        self.assertIn("timed out", acct["push_state"])
        self.assertFalse(acct["push_live"])
        self.assertNotIn("Temp", self.subs())
        self.idle_wait()
        self.move_clock(3700)
        self.d.sync(self.A)
        mptest.wait_until(lambda: "Temp" in self.subs(), 60, message="Temp subscribed")
        mptest.wait_until(lambda: self.d.account(self.A)["push_live"], 60, message="live again")
        sid = self.subs()["Temp"]
        self.assertEqual(self.fake.subscription(sid)["folder_id"], temp)
        self.idle_wait()
        # Gone from the mailbox: its subscription is deleted at Graph.
        with self.fake.lock:
            del self.fake._box(self.USER).folders[temp]
        self.move_clock(3700)
        self.d.sync(self.A)
        mptest.wait_until(lambda: "Temp" not in self.subs(), 60, message="Temp unsubscribed")
        self.assertIsNone(self.fake.subscription(sid))
        self.assertEqual(len(self.fake.subscriptions_of(self.USER)), len(self.folders))
        self.idle_wait()

    # ---- removal ----

    def test_z_account_removal_deletes_subscriptions(self):
        self.assertEqual(len(self.fake.subscriptions_of(self.USER)), len(self.folders))
        deletes = self.fake.calls("subscriptions.delete")
        graph_instance(self.d, self.fake, self.port, [])
        self.d.reload()
        mptest.wait_until(lambda: self.fake.subscriptions_of(self.USER) == [] and
                          self.fake.subscriptions_of(self.USER2) == [], 60,
                          message="subscriptions deleted")
        self.assertGreaterEqual(self.fake.calls("subscriptions.delete") - deletes,
                                len(self.folders) + 1)


class GraphPushMailboxWide(unittest.TestCase):
    """More synced folders than folder_subscriptions_max: one mailbox-wide
    subscription; its notifications sync every folder."""
    A = "mw"
    USER = "cy@contoso.example"

    def test_mailbox_wide(self):
        port = free_port()
        d = mptest.Daemon(name="graph_push_mw", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
                          settings={"http": {"listen": "127.0.0.1:%d" % port}})
        fake = fake_graph.FakeGraph()
        fake.start()
        try:
            fake.add_client(CLIENT, SECRET, roles=("Mail.Read",))
            fake.add_user(self.USER)
            projects = fake.add_folder(self.USER, "Projects", parent="inbox")
            graph_instance(d, fake, port, [{"id": self.A, "user": self.USER,
                                            "poll_interval": 3600}],
                           folder_subscriptions_max=2)
            d.start()
            d.wait_bootstrapped(self.A, ["Inbox", "Inbox/Projects"])
            mptest.wait_until(lambda: d.account(self.A)["push_live"], 60, message="live")
            subs = fake.subscriptions_of(self.USER)
            self.assertEqual(len(subs), 1)
            self.assertIsNone(subs[0]["folder_id"])
            self.assertTrue(subs[0]["resource"].endswith("/messages"))
            self.assertNotIn("mailFolders", subs[0]["resource"])
            prof = d.account(self.A)["profile"]["subscriptions"]
            self.assertEqual([(p["folder"], p["id"]) for p in prof], [("*", subs[0]["id"])])
            seq = d.last_seq()
            mid = fake.add_message(self.USER, raw("wide"), folder=projects)
            pid = mptest.public_id(self.A, mid)
            mptest.wait_until(lambda: [e for e in d.events(accounts=[self.A],
                                                           types=["message.new"], after=seq)
                                       if e["json"]["message"] == pid], 60,
                              message="message.new through the mailbox-wide subscription")
        finally:
            d.stop()
            fake.stop()


class EchoValidation:
    """A receiver that is not mailpulse but answers every validation
    request correctly (what a misrouted proxy could lead to)."""

    def __init__(self):
        import http.server
        import threading
        import urllib.parse
        outer = self
        self.validations = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                token = query.get("validationToken", [None])[0]
                body = (token or "").encode()
                if token is not None:
                    outer.validations += 1
                self.send_response(200 if token is not None else 202)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/elsewhere" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class GraphPushWrongInstance(unittest.TestCase):
    """public_url leads to another receiver that answers Graph's
    validation (a proxy routing to something else that echoes tokens):
    Graph validates, this instance never saw the request; the driver
    notices, deletes the subscription and says what to fix."""
    A = "wi"
    USER = "dee@contoso.example"

    def test_public_url_leading_elsewhere(self):
        port = free_port()
        d = mptest.Daemon(name="graph_push_wi", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
                          settings={"http": {"listen": "127.0.0.1:%d" % port}})
        fake = fake_graph.FakeGraph()
        fake.start()
        echo = EchoValidation()
        try:
            fake.add_client(CLIENT, SECRET, roles=("Mail.Read",))
            fake.add_user(self.USER)
            graph_instance(d, fake, port, [{"id": self.A, "user": self.USER,
                                            "poll_interval": 3600, "folders": ["Inbox"]}],
                           public_url=echo.url)
            d.start()
            d.wait_bootstrapped(self.A, ["Inbox"])
            acct = mptest.wait_until(
                lambda: (lambda a: "leads elsewhere" in (a["push_state"] or "") and a)(
                    d.account(self.A)), 60, message="push state names the wrong URL")
            self.assertIn("public_url", acct["push_state"])
            self.assertFalse(acct["push_live"])
            self.assertGreaterEqual(echo.validations, 1)
            self.assertGreaterEqual(fake.calls("subscriptions.create"), 1)
            self.assertEqual(fake.subscriptions_of(self.USER), [])
            self.assertGreaterEqual(fake.calls("subscriptions.delete"), 1)
        finally:
            d.stop()
            fake.stop()
            echo.stop()


class GraphPushValidationTimeout(unittest.TestCase):
    """Graph cannot validate the URL: no subscription, the push state says
    why, and the account polls."""
    A = "vt"
    USER = "bo@contoso.example"

    def test_validation_timeout_polls(self):
        port = free_port()
        d = mptest.Daemon(name="graph_push_vt", driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
                          settings={"http": {"listen": "127.0.0.1:%d" % port}})
        fake = fake_graph.FakeGraph()
        fake.start()
        try:
            fake.add_client(CLIENT, SECRET, roles=("Mail.Read",))
            fake.add_user(self.USER)
            fake.inject_validation_timeout(100000)
            graph_instance(d, fake, port, [{"id": self.A, "user": self.USER,
                                            "poll_interval": 2}])
            d.start()
            d.wait_bootstrapped(self.A, ["Inbox"])
            acct = mptest.wait_until(
                lambda: (lambda a: a["push_state"] and "timed out" in a["push_state"] and a)(
                    d.account(self.A)), 60, message="push state names the timeout")
            self.assertFalse(acct["push_live"])
            self.assertTrue(acct["push_state"].startswith("failed"), acct["push_state"])
            self.assertEqual(fake.subscriptions_of(self.USER), [])
            seq = d.last_seq()
            mid = fake.add_message(self.USER, raw("polled"), folder="inbox")
            pid = mptest.public_id(self.A, mid)
            mptest.wait_until(lambda: [e for e in d.events(accounts=[self.A],
                                                           types=["message.new"], after=seq)
                                       if e["json"]["message"] == pid], 60,
                              message="polled message.new")
            self.assertEqual([p for p in fake.push_log if p["kind"] == "change"], [])
        finally:
            d.stop()
            fake.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)

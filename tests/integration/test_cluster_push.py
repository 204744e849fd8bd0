"""Webhook pushes on any node of a cluster (issue 15 item 3): two
mailpulsed nodes (n1, n2) on one private PostgreSQL, a Graph instance
(fake_graph.py, 4 mailboxes, Inbox only) and a Gmail instance
(fake_gmail.py, pubsub-push, 2 mailboxes). Polls are hourly, so only a
push explains a sync. Graph reaches the nodes through a round-robin TCP
balancer (its validation handshakes land on either node); the tests post
straight to one node's push listener to choose who receives:

- every account is held by exactly one node, and the load spreads;
- a correct Graph change notification posted to the node that does not
  hold the account is answered 2xx there, and the holder syncs the
  message (one message.new, in its API and in the store) while the
  receiving node runs no sync;
- a forged one (right subscription, wrong clientState) to the non-holder
  is 403, an unknown subscription 404: no push hint stored, no event;
- the holder recreates a removed subscription (lifecycle
  subscriptionRemoved): the non-holder takes a notification of the new
  subscription id, and the holder syncs; the same lifecycle notification
  posted to the non-holder makes the holder recreate it too;
- a signed Pub/Sub push for a Gmail account posted to the non-holder
  makes the holder sync; forged tokens are 401/403 with nothing stored;
- a message.new written by one node is served by the other's
  /v1/events too (NOTIFY mailpulse_events wakes its SSE);
- SIGKILL the holder of a Graph account: once the survivor holds it, a
  notification posted to the survivor brings the message.

Skipped (77) only without the PostgreSQL binaries; MP_REQUIRE_PG=1 (CI)
fails then."""

import os
import sys
import time
import unittest

import mptest
import pgserver
import tcpproxy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_gmail  # noqa: E402
import fake_graph  # noqa: E402
import test_gmail_push  # noqa: E402
import test_graph_push  # noqa: E402

NODES = ("n1", "n2")
TTL = 3  # seconds: the lease TTL of every node
GRAPH = "ol"  # instance names: the push paths are /push/<instance>
GMAIL = "gmail"
GRAPH_CLIENT, GRAPH_SECRET = test_graph_push.CLIENT, test_graph_push.SECRET
GMAIL_CLIENT, GMAIL_SECRET = test_gmail_push.CLIENT, test_gmail_push.SECRET
TOPIC, AUDIENCE = test_gmail_push.TOPIC, test_gmail_push.AUDIENCE
GRAPH_USERS = {"g%d" % i: "user%d@contoso.example" % i for i in range(4)}
GMAIL_USERS = {"gm%d" % i: "box%d@example.com" % i for i in range(2)}
ALL = sorted(GRAPH_USERS) + sorted(GMAIL_USERS)
POLL = 3600  # hourly: a fast sync can only come from a push
WAIT = 45    # seconds: generous bound on anything asynchronous


class RoundRobin(tcpproxy.Proxy):
    """A load balancer in front of the nodes' push listeners: each
    connection goes to the next port of `ports` (take a dead node out with
    drop(), as a health check would)."""

    def __init__(self, ports):
        self.ports = list(ports)
        self.turn = 0
        super().__init__(self.ports[0])

    def _accept(self):
        with self.lock:
            self.target = ("127.0.0.1", self.ports[self.turn % len(self.ports)])
            self.turn += 1
        super()._accept()

    def drop(self, port):
        with self.lock:
            self.ports.remove(port)


class ClusterPush(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            cls.pg = pgserver.PgServer(durable=True)
        except FileNotFoundError as exc:
            if os.environ.get("MP_REQUIRE_PG") == "1":
                raise
            print("SKIP: %s" % exc)
            sys.exit(pgserver.SKIP)
        cls.pg.start()
        # Class cleanups run also when setUpClass fails half-way (last
        # registered first: the nodes stop before their servers).
        cls.addClassCleanup(cls.pg.stop)
        cls.db = cls.pg.create_db("clpush")
        cls.graph = fake_graph.FakeGraph()
        cls.graph.start()
        cls.addClassCleanup(cls.graph.stop)
        # Notifications are posted by the tests, to the node they choose.
        cls.graph.auto_notify = False
        cls.graph.add_client(GRAPH_CLIENT, GRAPH_SECRET, roles=("Mail.Read",))
        for user in GRAPH_USERS.values():
            cls.graph.add_user(user)
            cls.graph.add_message(user, test_graph_push.raw("old " + user), folder="inbox")
        cls.gmail = fake_gmail.FakeGmail()
        cls.gmail.start()
        cls.addClassCleanup(cls.gmail.stop)
        cls.gmail.add_client(GMAIL_CLIENT, GMAIL_SECRET)
        cls.gmail.create_topic(TOPIC)
        cls.refresh = {}
        for acct, email in GMAIL_USERS.items():
            cls.gmail.add_user(email)
            cls.refresh[acct] = cls.gmail.add_refresh_token(GMAIL_CLIENT, email)
            cls.gmail.add_message(email, test_gmail_push.raw("old " + email), ["INBOX"])
        cls.push_port = {n: test_graph_push.free_port() for n in NODES}
        cls.lb = RoundRobin([cls.push_port[n] for n in NODES])
        cls.addClassCleanup(cls.lb.close)
        cls.nodes = {n: cls.make_node(n) for n in NODES}
        cls.addClassCleanup(cls.stop_nodes)
        for d in cls.nodes.values():
            d.start()

    @classmethod
    def make_node(cls, name):
        d = mptest.Daemon(name="clpush-" + name, driver_dir=mptest.env("MP_BUILD_DRIVER_DIR"),
                          settings={"push": {"listen": "127.0.0.1:%d" % cls.push_port[name],
                                             "tls": False}})
        url_file = d.path("pg.url")
        with open(url_file, "w") as f:
            f.write(cls.pg.url(cls.db) + "\n")
        os.chmod(url_file, 0o600)
        d.settings["store"] = {"backend": "postgresql", "url_file": url_file}
        d.settings["cluster"] = {"node": name, "lease_ttl": TTL}
        d.write_conf()
        # The same instances on every node (secrets at node-local paths).
        test_graph_push.graph_instance(
            d, cls.graph, cls.lb.port,
            [{"id": a, "user": u, "poll_interval": POLL, "folders": ["Inbox"]}
             for a, u in sorted(GRAPH_USERS.items())])
        secret = d.write_secret("gmail.client_secret", GMAIL_SECRET.encode() + b"\n")
        accounts = [{"id": a, "email": e, "poll_interval": POLL,
                     "refresh_token_file": d.write_secret(a + ".rt",
                                                          cls.refresh[a].encode() + b"\n")}
                    for a, e in sorted(GMAIL_USERS.items())]
        d.write_instance(GMAIL, mptest.render_instance(
            "gmail", accounts, client_id=GMAIL_CLIENT, client_secret_file=secret,
            api_url=cls.gmail.url, token_url=cls.gmail.token_url, pubsub_url=cls.gmail.url,
            certs_url=cls.gmail.certs_url, push="pubsub-push", topic=TOPIC,
            push_audience=AUDIENCE, push_service_account=cls.gmail.push_service_account))
        return d

    @classmethod
    def stop_nodes(cls):
        for d in cls.nodes.values():
            try:
                d.stop()
            except Exception:
                pass

    # ---- the database's view ----

    def sql(self, query):
        return self.pg.rows(query, db=self.db)

    def owners(self):
        return self.pg.lease_owners(self.db)

    def hints(self, account=None):
        """Rows of push_hints (of one account)."""
        where = " WHERE account = '%s'" % account if account else ""
        return int(self.sql("SELECT count(*) FROM push_hints" + where)[0][0])

    def new_rows(self, pid):
        """message.new events of message `pid` in the shared store."""
        return int(self.sql("SELECT count(*) FROM events WHERE type = 'message.new' "
                            "AND message = '%s'" % pid)[0][0])

    def max_seq(self):
        return int(self.sql("SELECT coalesce(max(seq), 0) FROM events")[0][0])

    # ---- the nodes' view ----

    def other(self, name):
        return [n for n in NODES if n != name][0]

    def live(self):
        return [n for n in NODES if self.nodes[n].running()]

    def push_url(self, node, instance):
        return "http://127.0.0.1:%d/push/%s" % (self.push_port[node], instance)

    def wait_settled(self, live=NODES):
        """Every account held by a live node (spread evenly over them),
        push-live and idle on its holder; returns the owners."""
        share = -(-len(ALL) // len(live))

        def spread():
            o = self.owners()
            if set(o) != set(ALL) or not set(o.values()) <= set(live):
                return None
            counts = [list(o.values()).count(n) for n in live]
            return o if max(counts) <= share else None
        owners = mptest.wait_until(spread, WAIT, message="every account held, spread over %s"
                                   % (live,))

        def ready():
            for acct, node in self.owners().items():
                a = self.nodes[node].account(acct)
                if not a["push_live"] or a["sync"]["running"] or a["sync"]["rerun"]:
                    return None
            return True
        mptest.wait_until(ready, WAIT, message="every account push-live and idle on its "
                          "holder")
        mptest.wait_until(lambda: self.owners() == owners, WAIT,
                          message="the leases unchanged")
        return owners

    def subscription(self, node, acct):
        """The Inbox subscription id of a Graph account, as its holder has it
        (None while it has none)."""
        prof = self.nodes[node].account(acct).get("profile") or {}
        return {s["folder"]: s["id"] for s in prof.get("subscriptions") or []}.get("Inbox")

    def pick(self, owners, accounts, holder="n1"):
        """An account of `accounts` held by `holder` if there is one, else by
        the other node: (account, holder, other)."""
        held = sorted(a for a in accounts if owners[a] == holder)
        acct = held[0] if held else sorted(accounts)[0]
        return acct, owners[acct], self.other(owners[acct])

    def runs(self, node, acct):
        """Sync runs of the account on `node` (a node that does not hold it
        shows no sync; a standby copy runs none)."""
        return (self.nodes[node].account(acct).get("sync") or {}).get("runs", 0)

    def new_events(self, node, acct, seq, mid):
        pid = mptest.public_id(acct, mid)
        return [e for e in self.nodes[node].events(accounts=[acct], types=["message.new"],
                                                   after=seq)
                if e["json"]["message"] == pid]

    def wait_synced_once(self, holder, acct, seq, mid):
        """The holder records the message (its HTTP API), then exactly one
        message.new exists for it (the holder's API and the shared store;
        test_7 checks that the other node serves the same events)."""
        mptest.wait_until(lambda: self.new_events(holder, acct, seq, mid), WAIT,
                          message="message.new of %s on the holder %s" % (mid, holder))
        mptest.wait_until(lambda: not self.nodes[holder].account(acct)["sync"]["running"],
                          WAIT, message="sync idle")
        self.assertEqual(len(self.new_events(holder, acct, seq, mid)), 1)
        self.assertEqual(self.new_rows(mptest.public_id(acct, mid)), 1)
        mptest.wait_until(lambda: self.hints(acct) == 0, WAIT, message="hints consumed")

    def graph_post(self, url, items):
        (status, body, _), = self.graph.send_notifications(url, items)
        return status, body

    def assert_nothing_recorded(self, acct, seq, mid):
        """No hint stored and no event for the message, a while after a
        refused push."""
        time.sleep(1.5)
        self.assertEqual(self.hints(acct), 0, "a push hint stored for a refused push")
        self.assertEqual(self.new_rows(mptest.public_id(acct, mid)), 0)
        for node in self.live():
            self.assertEqual(self.new_events(node, acct, seq, mid), [], node)

    # ---- the scenarios, in order (they share the cluster) ----

    def test_1_every_account_held_once(self):
        owners = self.wait_settled()
        self.assertEqual(sorted(owners), ALL)
        self.assertEqual(sorted(list(owners.values()).count(n) for n in NODES), [3, 3])
        epochs = set()
        for name, d in self.nodes.items():
            status = d.get("/v1/status")
            st = status["cluster"]
            self.assertEqual(st["node"], name)
            self.assertEqual(st["held"], list(owners.values()).count(name))
            self.assertEqual(len([m for m in st["members"] if m["live"]]), 2)
            self.assertTrue(st["signals"]["connected"], name)
            self.assertEqual(st["standby"], 6 - st["held"], name)
            epochs.add(status["events"]["epoch"])
        # PostgreSQL flushing every commit (durable=True): the node that
        # started beside a running one began no event epoch of its own, so
        # SSE ids mean the same on both nodes.
        self.assertEqual(len(epochs), 1, epochs)
        # One Inbox subscription per Graph mailbox; both nodes answered the
        # validation handshakes through the balancer.
        for acct, user in GRAPH_USERS.items():
            sid = self.subscription(owners[acct], acct)
            live = self.graph.subscription(sid)
            self.assertIsNotNone(live, acct)
            self.assertEqual(live["url"], "http://127.0.0.1:%d/push/%s" % (self.lb.port, GRAPH))
        for n in NODES:
            self.assertIsNone(self.graph.check_validation(self.push_url(n, GRAPH)), n)
        for email in GMAIL_USERS.values():
            self.assertIsNotNone(self.gmail.watch_state(email), email)

    def test_2_graph_notification_on_the_non_holder(self):
        owners = self.wait_settled()
        acct, holder, other = self.pick(owners, GRAPH_USERS)
        sid = self.subscription(holder, acct)
        runs = self.runs(other, acct)
        seq = self.max_seq()
        mid = self.graph.add_message(GRAPH_USERS[acct], test_graph_push.raw("via-" + other),
                                     folder="inbox")
        status, body = self.graph_post(self.push_url(other, GRAPH),
                                       [self.graph.change_item(sid, mid)])
        self.assertTrue(200 <= status < 300, "the non-holder %s answered %s %r"
                        % (other, status, body))
        self.wait_synced_once(holder, acct, seq, mid)
        self.assertEqual(self.runs(other, acct), runs, "the non-holder synced")

    def test_3_forged_notification_on_the_non_holder(self):
        owners = self.wait_settled()
        acct, holder, other = self.pick(owners, GRAPH_USERS)
        sid = self.subscription(holder, acct)
        mptest.wait_until(lambda: self.hints() == 0, WAIT, message="no pending hint")
        seq = self.max_seq()
        mid = self.graph.add_message(GRAPH_USERS[acct], test_graph_push.raw("forged"),
                                     folder="inbox")
        good = self.graph.change_item(sid, mid)
        answers = [self.graph_post(self.push_url(other, GRAPH), [dict(good, clientState=st)])
                   for st in ("A" * len(good["clientState"]), "short")]
        self.assert_nothing_recorded(acct, seq, mid)
        # The genuine notification (to the holder) still takes it.
        status, _ = self.graph_post(self.push_url(holder, GRAPH), [good])
        self.assertTrue(200 <= status < 300, status)
        self.wait_synced_once(holder, acct, seq, mid)
        # Refused as forged, not as unknown: the non-holder verified it.
        self.assertEqual([a[0] for a in answers], [403, 403], answers)

    def test_4_unknown_subscription_on_the_non_holder(self):
        owners = self.wait_settled()
        acct, holder, other = self.pick(owners, GRAPH_USERS)
        sid = self.subscription(holder, acct)
        mptest.wait_until(lambda: self.hints() == 0, WAIT, message="no pending hint")
        seq = self.max_seq()
        mid = self.graph.add_message(GRAPH_USERS[acct], test_graph_push.raw("unknown-sub"),
                                     folder="inbox")
        item = dict(self.graph.change_item(sid, mid),
                    subscriptionId="00000000-0000-0000-0000-000000000000")
        status, body = self.graph_post(self.push_url(other, GRAPH), [item])
        self.assertEqual(status, 404, body)
        self.assert_nothing_recorded(acct, seq, mid)
        self.assertEqual(self.hints(), 0)
        self.assertEqual(self.max_seq(), seq, "an event after a refused push")
        # Leave nothing unsynced behind for the next scenarios.
        status, _ = self.graph_post(self.push_url(holder, GRAPH),
                                    [self.graph.change_item(sid, mid)])
        self.assertTrue(200 <= status < 300, status)
        self.wait_synced_once(holder, acct, seq, mid)

    def test_5_recreated_subscription_seen_by_the_non_holder(self):
        owners = self.wait_settled()
        acct, holder, other = self.pick(owners, GRAPH_USERS, holder="n2")
        old = self.subscription(holder, acct)
        user = GRAPH_USERS[acct]
        seq = self.max_seq()
        # Graph drops the subscription and says so to the holder.
        mid = self.graph.add_message(user, test_graph_push.raw("while-removed"),
                                     folder="inbox")
        removed = self.graph.lifecycle_item(old, "subscriptionRemoved")
        self.graph.remove_subscription(old, notify=False)
        status, body = self.graph_post(self.push_url(holder, GRAPH) + "/lifecycle", [removed])
        self.assertTrue(200 <= status < 300, "lifecycle: %s %r" % (status, body))
        new = mptest.wait_until(lambda: self.subscription(holder, acct) != old and
                                self.subscription(holder, acct), WAIT,
                                message="the subscription recreated by %s" % holder)
        self.assertIsNotNone(self.graph.subscription(new))
        self.wait_synced_once(holder, acct, seq, mid)  # the recreation's delta sync
        # The non-holder reloads what it verifies against: the new id is
        # taken there (Graph retries a non-2xx answer, so may this test
        # while the reload is under way).
        seq = self.max_seq()
        mid = self.graph.add_message(user, test_graph_push.raw("after-recreate"),
                                     folder="inbox")
        item = self.graph.change_item(new, mid)
        answers = []

        def accepted():
            status, _ = self.graph_post(self.push_url(other, GRAPH), [item])
            answers.append(status)
            return status is not None and 200 <= status < 300
        try:
            mptest.wait_until(accepted, 20, interval=0.5,
                              message="the non-holder %s accepting the new subscription"
                              % other)
        except AssertionError:
            self.fail("the non-holder %s never accepted the recreated subscription "
                      "(answers %s)" % (other, sorted(set(answers), key=str)))
        self.wait_synced_once(holder, acct, seq, mid)

    def test_5b_lifecycle_on_the_non_holder(self):
        # A lifecycle notification verified by the non-holder reaches the
        # holder as its stored hint: the holder recreates the subscription.
        owners = self.wait_settled()
        acct, holder, other = self.pick(owners, GRAPH_USERS, holder="n1")
        old = self.subscription(holder, acct)
        user = GRAPH_USERS[acct]
        seq = self.max_seq()
        mid = self.graph.add_message(user, test_graph_push.raw("removed-elsewhere"),
                                     folder="inbox")
        removed = self.graph.lifecycle_item(old, "subscriptionRemoved")
        self.graph.remove_subscription(old, notify=False)
        status, body = self.graph_post(self.push_url(other, GRAPH) + "/lifecycle", [removed])
        self.assertTrue(200 <= status < 300, "lifecycle on %s: %s %r" % (other, status, body))
        new = mptest.wait_until(lambda: self.subscription(holder, acct) != old and
                                self.subscription(holder, acct), WAIT,
                                message="the subscription recreated by %s" % holder)
        self.assertIsNotNone(self.graph.subscription(new))
        self.wait_synced_once(holder, acct, seq, mid)

    def test_6_gmail_push_on_the_non_holder(self):
        owners = self.wait_settled()
        acct, holder, other = self.pick(owners, GMAIL_USERS)
        email = GMAIL_USERS[acct]
        mptest.wait_until(lambda: self.hints() == 0, WAIT, message="no pending hint")
        seq = self.max_seq()
        mid = self.gmail.add_message(email, test_gmail_push.raw("forged-gmail"),
                                     ["INBOX", "UNREAD"])
        url = self.push_url(other, GMAIL)
        for forge, expected in (("bad_signature", 401), ("no_auth", 401), ("expired", 401),
                                ("wrong_aud", 403), ("wrong_email", 403)):
            status, body, _ = self.gmail.push(url, email_addr=email, audience=AUDIENCE,
                                              forge=forge)
            self.assertEqual(status, expected, "%s: %r" % (forge, body))
        self.assert_nothing_recorded(acct, seq, mid)
        # The signed push, to the node that does not hold the account.
        runs = self.runs(other, acct)
        status, body, _ = self.gmail.push(url, email_addr=email, audience=AUDIENCE)
        self.assertTrue(200 <= status < 300, "the non-holder %s answered %s %r"
                        % (other, status, body))
        self.wait_synced_once(holder, acct, seq, mid)
        self.assertEqual(self.runs(other, acct), runs, "the non-holder synced")

    def test_7_events_read_on_either_node(self):
        # A message.new one node writes is served by the other node's
        # /v1/events too (both read the shared store), also when that node
        # wrote nothing since.
        owners = self.wait_settled()
        for writer in NODES:
            reader = self.other(writer)
            acct, holder, _ = self.pick(owners, GRAPH_USERS, holder=writer)
            self.assertEqual(holder, writer)
            seq = self.max_seq()
            mid = self.graph.add_message(GRAPH_USERS[acct],
                                         test_graph_push.raw("read-on-" + reader),
                                         folder="inbox")
            status, _ = self.graph_post(self.push_url(writer, GRAPH),
                                        [self.graph.change_item(self.subscription(writer,
                                                                                  acct), mid)])
            self.assertTrue(200 <= status < 300, status)
            self.wait_synced_once(writer, acct, seq, mid)
            try:
                mptest.wait_until(lambda: self.new_events(reader, acct, seq, mid), 15,
                                  interval=0.5, message="the event on %s" % reader)
            except AssertionError:
                self.fail("%s's /v1/events does not serve the message.new %s wrote "
                          "(its last_seq %s, the store's %d)"
                          % (reader, writer, self.nodes[reader].last_seq(), self.max_seq()))
            self.assertEqual(len(self.new_events(reader, acct, seq, mid)), 1)

    def test_8_killed_holder_survivor_takes_pushes(self):
        owners = self.wait_settled()
        acct, victim, survivor = self.pick(owners, GRAPH_USERS, holder="n2")
        self.lb.drop(self.push_port[victim])
        self.nodes[victim].kill()
        owners = self.wait_settled(live=(survivor,))
        self.assertEqual(set(owners.values()), {survivor})
        st = self.nodes[survivor].get("/v1/status")["cluster"]
        self.assertEqual(st["held"], len(ALL))
        sid = self.subscription(survivor, acct)
        seq = self.max_seq()
        mid = self.graph.add_message(GRAPH_USERS[acct], test_graph_push.raw("after-kill"),
                                     folder="inbox")
        status, body = self.graph_post(self.push_url(survivor, GRAPH),
                                       [self.graph.change_item(sid, mid)])
        self.assertTrue(200 <= status < 300, "the survivor %s answered %s %r"
                        % (survivor, status, body))
        self.wait_synced_once(survivor, acct, seq, mid)


if __name__ == "__main__":
    mptest.main()

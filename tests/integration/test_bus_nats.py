"""Events on NATS JetStream, end to end against a private nats-server -js:
the events of a sync appear on the stream under mailpulse.<account>.<type>
with Nats-Msg-Id = the idempotency key, in outbox order (read back through
a durable pull consumer spoken in the NATS text protocol, natsjs.py); a
SIGKILL of the daemon mid-publish and a restart of nats-server while events
are produced lose nothing and store nothing twice; NATS down at the
daemon's start only delays publishing; a stream with another configuration
is reported and left unchanged."""

import socket
import subprocess
import threading
import time
import unittest

import mptest
import natsjs

STREAM = "MAILPULSE"
ACCOUNTS = ["alice", "bob.smith"]   # '.' must not split the subject


def subject_of(account, type_):
    return "mailpulse.%s.%s" % (token(account), token(type_))


def token(value):
    keep = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if value == "":
        return "%"
    return "".join(chr(b) if chr(b) in keep else "%%%02X" % b for b in value.encode())


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def all_events(d, timeout=30):
    """Every outbox event up to the last committed seq (the JSON bodies),
    paged: a ?once=1 stream ends early on a store error notice."""
    target = d.get("/v1/status")["events"]["last_seq"]
    out, notices = [], []
    deadline = time.monotonic() + timeout
    while not out or out[-1]["seq"] < target:
        if time.monotonic() > deadline:
            raise AssertionError("outbox read stalls at %r of %d; notices %r"
                                 % (out[-1]["seq"] if out else None, target, notices[-3:]))
        page = d.events(after=out[-1]["seq"] if out else 0, notices=True)
        notices.extend(e for e in page if e["type"] in mptest.NOTICE_TYPES)
        got = [e["json"] for e in page if e["type"] not in mptest.NOTICE_TYPES]
        if not got:
            time.sleep(0.2)
        out.extend(got)
    return out


def bus_status(d):
    return d.get("/v1/status")["bus"]


def caught_up(d):
    b = bus_status(d)
    return b if b["connected"] and b["lag"] == 0 and b["cursor"] == b["last_seq"] else None


def settled(d, quiet=1.5):
    """Caught up, and no new event for `quiet` seconds (a sync cut short by
    a SIGKILL is redone after the restart and commits more events)."""
    b = caught_up(d)
    if not b:
        return None
    time.sleep(quiet)
    b2 = caught_up(d)
    return b2 if b2 and b2["last_seq"] == b["last_seq"] else None


def new_mail(d, account, prefix, n):
    base = mptest.OpLog.BASE_DATE + 10000
    d.mailbox(account).add_many([("INBOX", "%s-%d" % (prefix, i), base + i,
                                  "Subject %s %d" % (prefix, i), "") for i in range(n)])
    d.sync(account)


class BusNats(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nats = natsjs.NatsServer().start()
        cls.d = mptest.Daemon(name="bus", settings={
            "bus": {"nats_url": cls.nats.url, "stream": STREAM, "duplicate_window": 120,
                    "max_pending": 16, "ack_timeout": 2, "retry_max": 1},
        })
        cls.d.add_instance("fix", [{"id": a, "generate": 30, "poll_interval": 3600}
                                   for a in ACCOUNTS])
        cls.d.start()
        cls.client = natsjs.Client(cls.nats.port)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.d.stop()
        cls.nats.stop()

    def reconnect_client(self):
        try:
            self.client.close()
        except OSError:
            pass
        type(self).client = mptest.wait_until(
            lambda: natsjs.Client(self.nats.port), message="NATS client connects")

    def check_stream(self, durable):
        """Every outbox event exactly once on the stream, in outbox order,
        under its subject with its Nats-Msg-Id; returns the events."""
        d = self.d
        mptest.wait_until(lambda: settled(d), 90, message="bus caught up, outbox settled")
        events = all_events(d)
        self.client.add_durable(STREAM, durable)
        msgs = self.client.fetch_all(STREAM, durable)
        ids = [m.headers.get("Nats-Msg-Id") for m in msgs]
        self.assertEqual(len(ids), len(set(ids)), "a Msg-Id stored twice")
        info = self.client.stream_info(STREAM)
        self.assertEqual(info["state"]["messages"], len(msgs))
        self.assertEqual([m.json()["seq"] for m in msgs], [e["seq"] for e in events],
                         "stream order is not outbox order, or events are missing")
        for m, e in zip(msgs, events):
            body = m.json()
            self.assertEqual(m.subject, subject_of(e["account"], e["type"]))
            self.assertEqual(m.headers["Nats-Msg-Id"], e["idempotency_key"])
            self.assertEqual(body["idempotency_key"], e["idempotency_key"])
            self.assertEqual(body["type"], e["type"])
            self.assertTrue(m.headers["Mailpulse-Event-Id"].endswith(":%d" % e["seq"]))
        seqs = [natsjs.stream_seq(m) for m in msgs]
        self.assertEqual(seqs, sorted(seqs))
        return events

    def test_1_sync_events_on_the_stream(self):
        d = self.d
        for a in ACCOUNTS:
            d.wait_bootstrapped(a, ["INBOX"])
        new_mail(d, "bob.smith", "first", 5)
        events = self.check_stream("t1")
        self.assertGreater(len(events), 60)
        self.assertIn("bob.smith", {e["account"] for e in events})
        self.assertIn("mailpulse.bob%2Esmith.message%2Enew",
                      {subject_of(e["account"], e["type"]) for e in events})
        info = self.client.stream_info(STREAM)
        cfg = info["config"]
        self.assertEqual(cfg["subjects"], ["mailpulse.>"])
        self.assertEqual(cfg["storage"], "file")
        self.assertEqual(cfg["duplicate_window"], 120 * 10**9)
        b = bus_status(d)
        self.assertEqual(b["state"], "connected")
        self.assertEqual(b["stream"], STREAM)
        self.assertEqual(b["published"], len(events))
        self.assertEqual(b["stream_seq"], len(events))
        metrics = d.request("GET", "/metrics")[2].decode()
        self.assertIn("mailpulse_bus_published_total %d" % len(events), metrics)
        self.assertIn("mailpulse_bus_connected 1", metrics)
        self.assertIn("mailpulse_bus_lag 0", metrics)
        out = d.ctl("status")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("bus:           connected, stream MAILPULSE, lag 0 (published %d,"
                      % len(events), out.stdout)
        # A consumer filtering on one account's subjects sees only those.
        self.client.add_durable(STREAM, "bob_only", "mailpulse.bob%2Esmith.>")
        bob = self.client.fetch_all(STREAM, "bob_only")
        self.assertEqual(len(bob), len([e for e in events if e["account"] == "bob.smith"]))

    def test_2_sigkill_mid_publish(self):
        d = self.d
        before = bus_status(d)
        new_mail(d, "alice", "burst", 1500)
        # Kill once publishing has started but before it is done (it may
        # also finish first on a fast machine: then the restart must add
        # nothing).
        at_kill = mptest.wait_until(
            lambda: (lambda b: b if b["published"] > before["published"] else None)(
                bus_status(d)), 60, interval=0.005, message="publishing started")
        d.kill()
        # The kill came while events were still waiting to be published.
        self.assertGreater(at_kill["lag"], 0)
        d.start()
        events = self.check_stream("t2")
        self.assertGreaterEqual(len(events), 1500)
        self.assertIn("==== start 2 ====", d.log_text())

    def test_3_nats_restart_while_producing(self):
        d = self.d
        stop = threading.Event()
        errors = []

        def produce():
            n = 0
            try:
                while not stop.is_set():
                    new_mail(d, ACCOUNTS[n % 2], "during-%d" % n, 20)
                    n += 1
                    time.sleep(0.05)
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        t = threading.Thread(target=produce)
        t.start()
        try:
            time.sleep(1.0)
            self.nats.stop()
            mptest.wait_until(lambda: not bus_status(d)["connected"], 20,
                              message="relay sees NATS gone")
            time.sleep(1.5)   # events pile up in the outbox meanwhile
            lag = bus_status(d)["lag"]
            self.nats.start()
            time.sleep(1.0)
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.assertGreater(lag, 0, "no event was produced while NATS was down")
        self.reconnect_client()
        self.check_stream("t3")
        b = bus_status(d)
        self.assertGreaterEqual(b["errors"] + b["reconnects"], 1)

    def test_3b_clean_restart_republishes_nothing(self):
        """SIGTERM saves the cursor: a restart publishes only new events."""
        d = self.d
        mptest.wait_until(lambda: settled(d), 90, message="settled")
        d.stop()
        d.start()
        b = mptest.wait_until(lambda: settled(d), 90, message="settled after restart")
        self.assertEqual(b["duplicates"], 0)
        self.assertEqual(b["errors"], 0)
        self.check_stream("t3b")

    def test_4_nats_down_at_start(self):
        port = free_port()
        d2 = mptest.Daemon(name="bus-down", settings={
            "bus": {"nats_url": "nats://127.0.0.1:%d" % port, "retry_max": 1,
                    "ack_timeout": 2},
        })
        d2.add_instance("fix", [{"id": "carol", "generate": 5, "poll_interval": 3600}])
        d2.start()
        try:
            d2.wait_bootstrapped("carol", ["INBOX"])
            b = mptest.wait_until(lambda: (lambda s: s if s["lag"] > 0 else None)(
                bus_status(d2)), message="events waiting")
            self.assertFalse(b["connected"])
            self.assertEqual(b["state"], "disconnected")
            self.assertIn("cannot connect", b["last_error"])
            srv = natsjs.NatsServer(name="nats-late")
            srv.port = port
            srv.start()
            mptest.wait_until(lambda: caught_up(d2), 30, message="late NATS caught up")
            c = natsjs.Client(srv.port)
            c.add_durable(STREAM, "late")
            msgs = c.fetch_all(STREAM, "late")
            self.assertEqual([m.json()["seq"] for m in msgs],
                             [e["seq"] for e in all_events(d2)])
            c.close()
            srv.stop()
        finally:
            d2.stop()

    def test_5_wrong_stream_config_is_reported(self):
        self.client.add_stream({"name": "OTHER", "subjects": ["other.>"],
                                "storage": "memory", "duplicate_window": 10**9,
                                "retention": "limits", "discard": "old",
                                "num_replicas": 1})
        d3 = mptest.Daemon(name="bus-wrong", settings={
            "bus": {"nats_url": self.nats.url, "stream": "OTHER", "retry_max": 1},
        })
        d3.add_instance("fix", [{"id": "dave", "generate": 3, "poll_interval": 3600}])
        d3.start()
        try:
            b = mptest.wait_until(
                lambda: (lambda s: s if s["state"] == "stream_mismatch" else None)(
                    bus_status(d3)), message="mismatch reported")
            self.assertFalse(b["connected"])
            for part in ("exists with another configuration", "mailpulse.>",
                         "storage is memory", "duplicate window is 1000 ms"):
                self.assertIn(part, b["last_error"])
            self.assertIn("exists with another configuration", d3.log_text())
            out = d3.ctl("status")
            self.assertIn("bus:           stream_mismatch, stream OTHER", out.stdout)
            self.assertIn("bus error:     stream \"OTHER\" exists with another", out.stdout)
            d3.wait_bootstrapped("dave", ["INBOX"])
            self.assertGreater(bus_status(d3)["lag"], 0)
            cfg = self.client.stream_info("OTHER")["config"]
            self.assertEqual(cfg["subjects"], ["other.>"])
            self.assertEqual(cfg["storage"], "memory")
            self.assertEqual(cfg["duplicate_window"], 10**9)
        finally:
            d3.stop()
            self.client.delete_stream("OTHER")

    def test_6_retention_keeps_unpublished_events(self):
        """outbox.retention_days never prunes what the bus has not
        published: the relay's cursor counts like a webhook endpoint's."""
        port = free_port()
        d5 = mptest.Daemon(name="bus-retention", settings={
            "bus": {"nats_url": "nats://127.0.0.1:%d" % port, "retry_max": 1},
            "outbox": {"retention_days": 1, "prune_interval": 1},
            "debug": {"clock_control": True},
        })
        d5.add_instance("fix", [{"id": "erin", "generate": 10, "poll_interval": 3600}])
        d5.start()
        srv = None
        try:
            d5.wait_bootstrapped("erin", ["INBOX"])
            # The account's status event may commit just after its folder
            # is bootstrapped (seen under ThreadSanitizer): wait until the
            # outbox holds still before taking its end.
            seen = []

            def settled():
                seen.append([e["seq"] for e in all_events(d5)])
                return len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]
            mptest.wait_until(settled, 30, interval=0.5, message="the outbox settled")
            last = seen[-1][-1]
            d5.post("/v1/debug/clock", {"offset_ms": 2 * 86400 * 1000}, expect=(200,))
            time.sleep(3)   # several retention runs
            self.assertEqual([e["seq"] for e in all_events(d5)], list(range(1, last + 1)))
            self.assertNotIn("retention removed", d5.log_text())
            self.assertEqual(bus_status(d5)["lag"], last)
            srv = natsjs.NatsServer(name="nats-retention")
            srv.port = port
            srv.start()
            mptest.wait_until(lambda: caught_up(d5), 30, message="published")
            mptest.wait_until(lambda: [e["seq"] for e in d5.events()] == [last], 30,
                              message="old events pruned once published")
        finally:
            d5.stop()
            if srv is not None:
                srv.stop()

    def test_7_config_errors(self):
        d4 = mptest.Daemon(name="bus-conf", settings={
            "bus": {"nats_url": "http://127.0.0.1:4222", "stream": "bad.name"}})
        r = subprocess.run([d4.binary, "-c", d4.conf_path, "--check-config"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn('"bus.nats_url" must be nats://host:port', r.stderr)
        self.assertIn('"bus.stream" must be 1..64 characters', r.stderr)


if __name__ == "__main__":
    mptest.main()

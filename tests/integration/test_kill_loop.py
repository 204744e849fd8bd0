"""SIGKILL loop: the daemon is killed at random points, again and again,
while it syncs (bootstrap, backfill, deltas with adds, flag changes and
deletes), takes push notifications, and delivers events to a webhook
receiver. Every restart is checked (it answers; every few kills the outbox
has no gap or duplicate; every ten the store's integrity). At the end:
every provider message stored exactly once, one arrival event per message,
no duplicate idempotency key, contiguous seqs, the receiver has every event
at least once, PRAGMA integrity_check ok.

MP_KILLS (or --kills N when run directly) sets the number of kills
(default 60 in CI: about 30 s on 2 cores);
tests/fault/kill_loop_1000.sh runs 1,000. MP_KILL_SEED replays a run."""

import collections
import json
import os
import random
import sqlite3
import sys
import threading
import time
import unittest

import mptest
from test_webhooks import WHSEC, Receiver, WebhookDaemon

SYNC, PUSH = "k-sync", "k-push"
SECRET = b"kill-loop-push-secret"
INSTANCE = "fix"


def kills_wanted():
    return int(os.environ.get("MP_KILLS", "60"))


class SlowReceiver(Receiver):
    """Holds some deliveries a little, so kills land while one is in flight;
    counts requests so the test can kill right after one started."""

    def __init__(self, rng):
        super().__init__()
        self.rng = rng
        self.requests = 0
        # A daemon killed mid-request resets the connection: expected here.
        self.server.handle_error = lambda request, address: None

    def handle(self, path, headers, body):
        with self.lock:
            self.requests += 1
            delay = self.rng.uniform(0.0, 0.03) if self.rng.random() < 0.05 else 0.0
        time.sleep(delay)
        return super().handle(path, headers, body)


class KillLoop(unittest.TestCase):
    def setUp(self):
        seed = int(os.environ.get("MP_KILL_SEED", str(int(time.time()))))
        print("MP_KILL_SEED=%d MP_KILLS=%d" % (seed, kills_wanted()))
        self.rng = random.Random(seed)
        self.rx = SlowReceiver(random.Random(seed + 1))
        self.rx.keys["/all"] = Receiver.key_of(WHSEC.encode())
        d = self.d = WebhookDaemon(name="killloop", workers=2, settings={
            "log_level": "info",
            "backfill": {"mode": "progressive", "bootstrap_max": 400, "batch_size": 200},
            "schedule": {"backfill_interval": 1, "max_backoff": 1},
        })
        whsec = d.write_secret("hooks.secret", WHSEC.encode() + b"\n")
        d.webhooks = (dict(name="all", url=self.rx.url("/all"), secret_file=whsec,
                           retry_initial=1, retry_max=1, max_attempts=1000),)
        d.write_conf()
        push_secret = d.write_secret("push.secret", SECRET)
        d.add_instance(INSTANCE, [
            {"id": SYNC, "generate": 1200, "folders_available": ["INBOX", "Archive"],
             "batch_delay_ms": 10, "poll_interval": 3600},
            {"id": PUSH, "generate": 30, "poll_interval": 3600},
        ], webhook_secret_file=push_secret)
        self.logs = {SYNC: d.mailbox(SYNC), PUSH: d.mailbox(PUSH)}
        self.counter = 0
        self.delta_ids = []
        self.kills = collections.Counter()
        self.db = os.path.join(d.state_dir, "mailpulse.db")

    def tearDown(self):
        self.d.kill()
        self.rx.close()

    # ---- activity ----

    def new_mail(self, account, n):
        folder = self.rng.choice(["INBOX", "Archive"]) if account == SYNC else "INBOX"
        items = []
        for _ in range(n):
            self.counter += 1
            pid = "kl-%s-%06d" % (account, self.counter)
            items.append((folder, pid, mptest.OpLog.BASE_DATE + self.counter, "KL " + pid, ""))
            if account == SYNC:
                self.delta_ids.append(pid)
        self.logs[account].add_many(items)

    def churn(self):
        """Flag changes and deletes of earlier delta mail."""
        log = self.logs[SYNC]
        if len(self.delta_ids) > 20:
            for _ in range(3):
                log.flag(self.rng.choice(self.delta_ids), self.rng.choice(
                    ["\\Seen", "\\Seen \\Flagged", ""]))
            victim = self.delta_ids.pop(self.rng.randrange(len(self.delta_ids)))
            log.delete(victim)

    def push(self):
        body = json.dumps({"account": PUSH, "folder": "INBOX"}).encode()
        try:
            self.d.request("POST", "/push/" + INSTANCE, body=body, auth=False, timeout=5,
                           headers={"Content-Type": "application/json",
                                    "X-Fixture-Signature": mptest.sign(SECRET, body)})
        except (OSError, mptest.ApiError):
            pass

    def quiet_sync(self, account):
        try:
            self.d.sync(account)
        except (OSError, mptest.ApiError):
            pass

    # ---- checks ----

    def check_outbox(self):
        events = self.d.events()
        seqs = [e["seq"] for e in events]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "gap or disorder")
        keys = collections.Counter(e["json"]["idempotency_key"] for e in events)
        self.assertEqual([k for k, c in keys.items() if c > 1], [], "duplicate keys")
        return events

    def check_integrity(self):
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        finally:
            conn.close()

    def restart(self, n):
        self.d.start()
        self.assertEqual(self.d.get("/healthz")["status"], "ok")
        if n % 5 == 0:
            self.check_outbox()

    def one_kill(self, n):
        d = self.d
        what = self.rng.choice(["sync", "sync", "push", "webhook", "any"])
        if what == "sync":
            self.new_mail(SYNC, self.rng.randint(20, 120))
            self.churn()
            self.quiet_sync(SYNC)
            time.sleep(self.rng.uniform(0.0, 0.6))
        elif what == "push":
            self.new_mail(PUSH, self.rng.randint(1, 10))
            self.push()
            time.sleep(self.rng.uniform(0.0, 0.3))
        elif what == "webhook":
            self.new_mail(PUSH, 3)
            self.push()
            start = self.rx.requests
            deadline = time.monotonic() + 2
            while self.rx.requests == start and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(self.rng.uniform(0.0, 0.02))
        else:
            time.sleep(self.rng.uniform(0.0, 1.0))
        d.kill()
        self.kills[what] += 1
        if n % 10 == 0:
            self.check_integrity()

    # ---- the loop ----

    def test_kill_loop(self):
        d = self.d
        started = time.monotonic()
        total = kills_wanted()
        d.start()
        # The provider's mailboxes exist (generated) before mail is added.
        d.wait_bootstrapped(SYNC, ["INBOX", "Archive"], timeout=120)
        d.wait_bootstrapped(PUSH, ["INBOX", "Archive"], timeout=120)
        for n in range(1, total + 1):
            self.one_kill(n)
            self.restart(n)
            if n % 50 == 0:
                print("%d kills in %.0f s (%s)" % (n, time.monotonic() - started,
                                                    dict(self.kills)))
        print("kills: %s, %.0f s" % (dict(self.kills), time.monotonic() - started))

        # Quiet: everything converges.
        self.push()
        for account in (SYNC, PUSH):
            self.quiet_sync(account)

        def converged():
            for account, log in self.logs.items():
                lines = str(len(log.lines()))
                for f in d.account(account)["folders"]:
                    if f["cursor"] != lines or f["backfill"]["status"] not in ("done", "off"):
                        return False
            return True
        mptest.wait_until(converged, 180, interval=0.5, message="every folder synced")

        for account, log in self.logs.items():
            expected = {mptest.public_id(account, pid) for pid in log.state()}
            listed = [m["id"] for m in d.all_messages(account, limit=500)]
            self.assertEqual(len(listed), len(set(listed)), "%s: duplicates" % account)
            self.assertEqual(set(listed) ^ expected, set(), "%s: lost or extra" % account)

        events = self.check_outbox()
        arrivals = collections.Counter(e["json"]["message"] for e in events
                                       if e["type"] in ("message.new", "message.synced"))
        self.assertEqual([m for m, c in arrivals.items() if c > 1], [], "double arrivals")
        for account, log in self.logs.items():
            for pid in log.state():
                self.assertEqual(arrivals.get(mptest.public_id(account, pid)), 1, pid)

        # The receiver has every event at least once (the endpoint started
        # with an empty outbox, so everything is owed to it).
        want = {e["json"]["idempotency_key"] for e in events}
        mptest.wait_until(lambda: want <= {b["idempotency_key"] for _, b in self.rx.got("/all")},
                          120, interval=0.5, message="the receiver to have every event")
        self.assertEqual(self.rx.rejected, [])
        d.stop()
        self.check_integrity()
        print("%d kills, %d events, %d deliveries, %.0f s"
              % (total, len(events), len(self.rx.got("/all")), time.monotonic() - started))


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--kills" in args:
        i = args.index("--kills")
        os.environ["MP_KILLS"] = args[i + 1]
        del sys.argv[i + 1:i + 3]
    mptest.main()

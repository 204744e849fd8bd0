#!/usr/bin/env python3
"""Benchmark of gmail.so's Pub/Sub push path against the fake Gmail (prints
figures; not a test, not run by ctest).

Setup: the fake Gmail + Pub/Sub + OIDC signer (tests/integration/fake_gmail.py)
in a child process of its own, so that its Python threads never hold this
process's interpreter lock while a latency is being taken; the real
mailpulsed with one gmail.so instance in `push: pubsub-push` mode and N
accounts, each a small mailbox (one message in INBOX), polling once an
hour. The benchmark waits until every account is bootstrapped, its watch
enrolled at the fake and its push live, then opens one SSE stream
(`/v1/events?types=message.new`).

Each sample: a message is added to the INBOX of one account chosen at
random (in the fake; no automatic Pub/Sub delivery: the benchmark is the
Pub/Sub push sender), an OIDC token is signed for it (not timed), a TCP
connection to the daemon is opened (not timed), then the push envelope is
POSTed to /push/<instance>. Measured from just before the request is
written:
  (a) ack:   until the HTTP answer (204) is read;
  (b) event: until the `message.new` of that message is read on the SSE
      stream.
After the event, the floor: the fake's own response time for the calls the
driver makes for such a push, of the same shape, on a kept-alive
connection: `history.list` from the account's previous historyId (the four
history types, maxResults=500) plus a batch of one `messages.get
format=metadata` with the driver's metadataHeaders. It prints p50/p99/max
of each, event minus floor, and the slowest samples, with the goals of issue 10 (ack p99 <= 10
ms; event p99 <= floor p99 + 25 ms) as PASS/MISS words, not assertions.

Usage: tests/bench/bench_gmail_push.py [--build build] [--accounts 1]
       [--samples 200] [--quick] [--workers 4] [--folders INBOX,SENT|all]
       [--gap-ms 20] [--seed N] [--fake-nagle] [--show-slowest 3] [--keep]
--quick is 10 accounts and 40 samples (about 5 s).
Needs: a built tree (mailpulsed, mailpulsectl, drivers/gmail.so) and
python3-cryptography (for the fake's RS256 keys).
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

CLIENT, SECRET = "bench.apps.googleusercontent.com", "bench-client-secret"
TOPIC = "projects/bench-project/topics/gmail"
SUBSCRIPTION = "projects/bench-project/subscriptions/gmail-push"
AUDIENCE = "https://mailpulse.example/push/gmail"
INSTANCE = "gmail"
METADATA_HEADERS = ("metadataHeaders=Subject&metadataHeaders=From&metadataHeaders=To"
                    "&metadataHeaders=Date&metadataHeaders=Message-ID")   # gmail_message.h
HISTORY_QUERY = ("startHistoryId=%s&maxResults=500&historyTypes=messageAdded"
                 "&historyTypes=messageDeleted&historyTypes=labelAdded"
                 "&historyTypes=labelRemoved")                            # gmail_delta.c


def setup_env(build):
    build = os.path.abspath(build)
    paths = {"MAILPULSED": os.path.join(build, "core", "daemon", "mailpulsed"),
             "MAILPULSECTL": os.path.join(build, "core", "cli", "mailpulsectl"),
             "MP_BUILD_DRIVER_DIR": os.path.join(build, "drivers"),
             "MP_TEST_DRIVER_DIR": os.path.join(build, "tests", "drivers")}
    for key, value in paths.items():
        os.environ.setdefault(key, value)
    if not os.access(os.environ["MAILPULSED"], os.X_OK):
        sys.exit("%s not found: build the tree first (cmake --build %s)"
                 % (os.environ["MAILPULSED"], build))
    if not os.path.exists(os.path.join(os.environ["MP_BUILD_DRIVER_DIR"], "gmail.so")):
        sys.exit("gmail.so not found in %s" % os.environ["MP_BUILD_DRIVER_DIR"])


def pct(values, p):
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def log(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def raw_message(subject, to):
    return (b"From: Bench <bench@example.org>\r\nTo: %s\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
            b"\r\nbody of %s\r\n" % (to.encode(), subject.encode(),
                                     subject.replace(" ", ".").encode(), subject.encode()))


# --------------------------------------------------------------------------
# The fake in its own process, driven over a pipe.

def _fake_main(conn, nodelay):
    """Child process: owns a FakeGmail; answers (name, args) requests with
    ("ok", value) or ("error", text)."""
    import fake_gmail
    # The fake turns Nagle off (see its _Handler); --fake-nagle turns it
    # back on to show what it costs.
    fake_gmail._Handler.disable_nagle_algorithm = nodelay
    fake = fake_gmail.FakeGmail(history_step=3).start()

    def setup(n):
        fake.add_client(CLIENT, SECRET)
        fake.create_topic(TOPIC)
        out = []
        for i in range(n):
            email = "user%04d@example.com" % i
            fake.add_user(email)
            token = fake.add_refresh_token(CLIENT, email)
            fake.add_message(email, raw_message("welcome %d" % i, email), ["INBOX"])
            out.append((email, token))
        return {"url": fake.url, "token_url": fake.token_url, "certs_url": fake.certs_url,
                "push_service_account": fake.push_service_account, "accounts": out}

    def watched(emails):
        return [e for e in emails if fake.watch_state(e) is not None]

    def add(email, subject):
        before = fake.history_id(email)
        mid = fake.add_message(email, raw_message(subject, email), ["INBOX", "UNREAD"])
        return mid, before, fake.history_id(email)

    def envelope(email, history_id, message_id):
        """A push request like fake.push() builds it, without sending it."""
        import base64
        data = base64.b64encode(json.dumps({"emailAddress": email,
                                            "historyId": str(history_id)}).encode()).decode()
        published = fake_gmail._rfc3339(fake.now())
        body = json.dumps({"message": {"data": data, "attributes": {},
                                       "messageId": message_id, "message_id": message_id,
                                       "publishTime": published, "publish_time": published},
                           "subscription": SUBSCRIPTION}).encode()
        return body, fake.make_push_token(AUDIENCE)

    calls = {"setup": setup, "watched": watched, "add": add, "envelope": envelope,
             "token": lambda email: fake.issue_access_token(email),
             "calls": lambda endpoint=None: fake.calls(endpoint)}
    try:
        while True:
            try:
                req = conn.recv()
            except EOFError:
                break
            if req is None:
                break
            name, args = req
            try:
                conn.send(("ok", calls[name](*args)))
            except Exception:  # report to the parent, keep serving
                conn.send(("error", traceback.format_exc()))
    finally:
        fake.stop()


class FakeProcess:
    def __init__(self, nodelay=True):
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_fake_main, args=(child, nodelay), daemon=True)
        self.proc.start()
        child.close()
        self.lock = threading.Lock()

    def call(self, name, *args):
        with self.lock:
            self.conn.send((name, args))
            kind, value = self.conn.recv()
        if kind != "ok":
            raise RuntimeError("fake_gmail %s failed:\n%s" % (name, value))
        return value

    def stop(self):
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --------------------------------------------------------------------------
# SSE reader: arrival time of each message.new, by public message id.

class SSEReader(threading.Thread):
    def __init__(self, daemon):
        super().__init__(daemon=True)
        self.arrivals = {}
        self.cond = threading.Condition()
        self.stream = daemon.sse("/v1/events?types=message.new&after=%d" % daemon.last_seq(),
                                 timeout=30)
        if self.stream.status != 200:
            raise RuntimeError("GET /v1/events: %d" % self.stream.status)
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                # never time out: http.client cannot read again after a
                # timeout; the stream is closed at the end instead
                ev = self.stream.next_event(timeout=86400)
            except (EOFError, OSError, AttributeError, ValueError,
                    http.client.HTTPException):
                return
            if ev is None or ev["event"] != "message.new":
                continue
            now = time.monotonic()
            data = json.loads(ev["data"])
            with self.cond:
                self.arrivals[data.get("message")] = now
                self.cond.notify_all()

    def wait(self, public_id, timeout):
        with self.cond:
            self.cond.wait_for(lambda: public_id in self.arrivals, timeout)
            return self.arrivals.get(public_id)


# --------------------------------------------------------------------------
# The floor: the fake's response time for the calls a push costs the driver.

class FloorClient:
    def __init__(self, fake, url):
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.fake = fake
        self.tokens = {}

    def _call(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError("floor %s %s: %d %r" % (method, path, resp.status, data[:200]))
        return data

    def measure(self, email, start_history_id, mid):
        """Seconds for history.list + batch metadata, as the driver asks."""
        token = self.tokens.get(email)
        if token is None:
            token = self.tokens[email] = self.fake.call("token", email)
        auth = {"Authorization": "Bearer " + token}
        boundary = "mailpulse_%024x" % random.getrandbits(96)
        batch = ("--%s\r\nContent-Type: application/http\r\nContent-ID: <item-0>\r\n\r\n"
                 "GET /gmail/v1/users/me/messages/%s?format=metadata&%s\r\n\r\n--%s--\r\n"
                 % (boundary, mid, METADATA_HEADERS, boundary)).encode()
        t0 = time.monotonic()
        hist = self._call("GET", "/gmail/v1/users/me/history?" +
                          HISTORY_QUERY % start_history_id, headers=auth)
        self._call("POST", "/batch/gmail/v1", body=batch,
                   headers=dict(auth, **{"Content-Type": "multipart/mixed; boundary=" +
                                         boundary}))
        elapsed = time.monotonic() - t0
        if mid.encode() not in hist:
            raise RuntimeError("floor: history.list from %s does not name %s"
                               % (start_history_id, mid))
        return elapsed

    def close(self):
        self.conn.close()


# --------------------------------------------------------------------------

def wait_ready(d, fake, emails, ids, timeout):
    """Every account bootstrapped (INBOX), watched at the fake, push live
    and no sync running. The listing is a summary (no folders, no
    push_live): it only says which accounts synced once; those are then
    asked one by one until each is ready (and not asked again)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last_report = t0
    email_of = dict(zip(ids, emails))
    pending = set(ids)
    while True:
        listed = d.accounts()
        synced = [i for i in sorted(pending) if (listed.get(i) or {}).get("last_sync")]
        watched = set(fake.call("watched", [email_of[i] for i in synced]))
        for acct_id in synced:
            if email_of[acct_id] not in watched:
                continue
            a = d.account(acct_id)
            folders = {f["name"]: f for f in a.get("folders") or []}
            if (folders.get("INBOX", {}).get("bootstrapped") and a.get("push_live")
                    and not (a.get("sync") or {}).get("running")):
                pending.discard(acct_id)
        now = time.monotonic()
        if not pending:
            return now - t0
        if now > deadline:
            raise RuntimeError("after %.0f s: %d/%d accounts not ready (e.g. %s: %r)"
                               % (now - t0, len(pending), len(ids), min(pending),
                                  d.account(min(pending))))
        if now - last_report >= 10:
            log("    ... %.0f s: %d/%d accounts ready" % (now - t0, len(ids) - len(pending),
                                                         len(ids)))
            last_report = now
        time.sleep(0.3 if len(ids) < 50 else 2.0)


def send_push(host, port, body, token):
    """POST one push on a connection opened beforehand; returns (status,
    seconds from writing the request to the end of the answer)."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.connect()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token,
               "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/"
                             "APIs-Google.html)"}
    try:
        t0 = time.monotonic()
        conn.request("POST", "/push/" + INSTANCE, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        t1 = time.monotonic()
        return resp.status, t0, t1 - t0
    finally:
        conn.close()


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def line(name, values):
    if not values:
        return "    %-28s no samples" % name
    return ("    %-28s p50 %7.2f ms   p99 %7.2f ms   max %7.2f ms   (n=%d)"
            % (name, pct(values, 50), pct(values, 99), max(values), len(values)))


def run(args):
    import mptest
    fake = FakeProcess(nodelay=not args.fake_nagle)
    d = None
    try:
        log("gmail.so push latency: %d account%s, %d samples (%d CPUs)"
            % (args.accounts, "" if args.accounts == 1 else "s", args.samples,
               os.cpu_count() or 0))
        t0 = time.monotonic()
        info = fake.call("setup", args.accounts)
        emails = [e for e, _ in info["accounts"]]
        ids = ["a%04d" % i for i in range(args.accounts)]
        d = mptest.Daemon(name="bench-gmail-push", workers=args.workers,
                          driver_dir=os.environ["MP_BUILD_DRIVER_DIR"],
                          settings={"log_level": "info",
                                    "backfill": {"bootstrap_max": 50},
                                    "schedule": {"reconcile_interval": 3600}})
        secret = d.write_secret("gmail.client_secret", SECRET.encode() + b"\n")
        accounts = []
        for acct_id, (email, token) in zip(ids, info["accounts"]):
            rt = d.write_secret(acct_id + ".rt", token.encode() + b"\n")
            acct = {"id": acct_id, "email": email, "refresh_token_file": rt,
                    "poll_interval": 3600}
            if args.folders:
                acct["folders"] = args.folders
            accounts.append(acct)
        d.write_instance(INSTANCE, mptest.render_instance(
            "gmail", accounts, client_id=CLIENT, client_secret_file=secret,
            api_url=info["url"], token_url=info["token_url"], pubsub_url=info["url"],
            certs_url=info["certs_url"], push="pubsub-push", topic=TOPIC,
            push_audience=AUDIENCE, push_service_account=info["push_service_account"]))
        log("    fake ready with %d mailbox(es) in %.1f s"
            % (args.accounts, time.monotonic() - t0))
        t0 = time.monotonic()
        d.start(timeout=120)
        wait_ready(d, fake, emails, ids, args.setup_timeout)
        log("    all %d account(s) bootstrapped, watched and push live %.1f s after the"
            " daemon's start" % (args.accounts, time.monotonic() - t0))
        log("    (fake calls during setup: %s)" % ", ".join(
            "%s %d" % (k, fake.call("calls", k)) for k in
            ("token", "profile", "labels.list", "messages.list", "batch", "watch")))
        time.sleep(1.0)

        sse = SSEReader(d)
        sse.start()
        floor_client = FloorClient(fake, info["url"])
        log("    sampling; load average %s" % loadavg())
        rng = random.Random(args.seed)
        acks, events, floors, diffs = [], [], [], []
        rows = []   # (ack ms, event ms or None, floor ms, wall time, sample, account)
        statuses, lost = {}, 0
        next_pubsub = 5070443601311540
        for i in range(args.samples):
            k = rng.randrange(args.accounts)
            email, acct_id = emails[k], ids[k]
            mid, before, hid = fake.call("add", email, "bench %d %d" % (os.getpid(), i))
            next_pubsub += 1 + rng.randrange(1000)
            body, token = fake.call("envelope", email, hid, str(next_pubsub))
            public = mptest.public_id(acct_id, mid)
            wall = time.time()
            status, t_sent, ack = send_push(d.host, d.port, body, token)
            statuses[status] = statuses.get(status, 0) + 1
            acks.append(ack * 1000)
            t_event = sse.wait(public, args.event_timeout)
            if t_event is None:
                lost += 1
            else:
                events.append((t_event - t_sent) * 1000)
            floor = floor_client.measure(email, before, mid) * 1000
            floors.append(floor)
            if t_event is not None:
                diffs.append(events[-1] - floor)
            rows.append((ack * 1000, events[-1] if t_event is not None else None, floor, wall,
                         i, acct_id))
            if (i + 1) % 50 == 0 or i + 1 == args.samples:
                log("    %d/%d" % (i + 1, args.samples))
            time.sleep(args.gap_ms / 1000.0)
        sse.stop = True
        # Wake the reader (blocked in a read that holds the response's
        # lock until the next heartbeat) before closing the stream.
        try:
            sse.stream.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sse.join(5)
        sse.stream.close()
        floor_client.close()

        log("    load average at the end %s" % loadavg())
        log("    answers: %s" % ", ".join("%d x%d" % kv for kv in sorted(statuses.items())))
        log(line("(a) push -> ack", acks))
        log(line("(b) push -> message.new", events))
        log(line("floor (fake history+batch)", floors))
        log(line("(b) minus floor (per sample)", diffs))
        if lost:
            log("    %d message.new events did not arrive within %.0f s"
                % (lost, args.event_timeout))
        # The slowest samples, with their time of day (UTC, as in the
        # daemon's log: --keep keeps it) to look for what was going on.
        worst = sorted(rows, key=lambda r: max(r[0], r[1] if r[1] is not None else 1e9),
                       reverse=True)[:args.show_slowest]
        for ack_ms, ev_ms, fl_ms, wall, i, acct_id in worst:
            log("    slow: #%d %s at %s.%03d  ack %.2f ms  event %s  floor %.2f ms"
                % (i, acct_id, time.strftime("%H:%M:%S", time.gmtime(wall)),
                   int(wall * 1000) % 1000, ack_ms,
                   "lost" if ev_ms is None else "%.2f ms" % ev_ms, fl_ms))
        ack99 = pct(acks, 99)
        log("    goal ack p99 <= 10 ms: %.2f ms  %s"
            % (ack99, "PASS" if ack99 <= 10 and statuses.get(204) == args.samples else "MISS"))
        if events and floors:
            over = pct(events, 99) - pct(floors, 99)
            log("    goal event p99 <= floor p99 + 25 ms: %.2f - %.2f = %+.2f ms  %s"
                % (pct(events, 99), pct(floors, 99), over,
                   "PASS" if over <= 25 and not lost else "MISS"))
    finally:
        if d is not None:
            d.stop()
            if args.keep:
                log("    daemon directory kept: %s" % d.tmp)
            else:
                d.cleanup()
        fake.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(TOP, "build"))
    p.add_argument("--accounts", type=int, default=1)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--quick", action="store_true",
                   help="10 accounts, 40 samples (well under a minute)")
    p.add_argument("--workers", type=int, default=4, help="the daemon's workers (default 4, "
                   "the daemon's own default)")
    p.add_argument("--gap-ms", type=float, default=20,
                   help="pause between samples, after each one's event and floor")
    p.add_argument("--folders", default="INBOX,SENT",
                   help="the accounts' `folders` (default INBOX,SENT: the watched labels;"
                        " each folder's bootstrap is a store commit); 'all' for every label")
    p.add_argument("--fake-nagle", action="store_true",
                   help="leave Nagle on in the fake (its answers then stall ~40 ms on"
                        " delayed ACKs, for the driver and the floor alike)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--event-timeout", type=float, default=10.0)
    p.add_argument("--setup-timeout", type=float, default=1800.0)
    p.add_argument("--show-slowest", type=int, default=3,
                   help="print the N slowest samples with their time of day")
    p.add_argument("--keep", action="store_true", help="keep the daemon's directory (log)")
    args = p.parse_args()
    if args.quick:
        args.accounts, args.samples = 10, 40
    args.folders = None if args.folders == "all" else args.folders.split(",")
    if args.accounts < 1 or args.samples < 1:
        p.error("--accounts and --samples must be at least 1")
    if args.samples < 100:
        log("note: with fewer than 100 samples p99 is about the maximum")
    setup_env(args.build)
    run(args)


if __name__ == "__main__":
    main()

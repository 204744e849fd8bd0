"""Harness for mailpulse integration tests (python3 standard library only).

A `Daemon` owns a temporary directory with state/, plugins.d/ and a
mailpulsed.conf, starts the real `mailpulsed` (path in $MAILPULSED) against
the fixture driver ($MP_TEST_DRIVER_DIR) and talks to it over HTTP with the
bearer token. The fixture driver simulates a provider whose mailbox is an
append-only operation log (see tests/drivers/fixture/fixture.h); `OpLog`
writes it.

Each test file is a standalone unittest script; run it through `main()` so
a failing test prints the daemons' logs and exits non-zero.
"""

import atexit
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

DEFAULT_TIMEOUT = 30.0
# Lines that mean an ASan/UBSan/LSan build of the daemon or a driver
# found a bug: any of them fails the test even if every assertion held.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")

_daemons = []


def env(name, required=True):
    value = os.environ.get(name)
    if required and not value:
        raise RuntimeError("environment variable %s is not set (run through ctest)" % name)
    return value


def wait_until(predicate, timeout=DEFAULT_TIMEOUT, interval=0.1, message="condition"):
    """Poll predicate() until it returns a truthy value (returned) or the
    timeout passes (AssertionError naming `message` and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except (OSError, http.client.HTTPException, ApiError) as exc:
            last = exc
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
            continue
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s (last: %r)"
                         % (timeout, message, last))


class ApiError(Exception):
    def __init__(self, method, path, status, body):
        super().__init__("%s %s -> %d %r" % (method, path, status, body[:500]))
        self.status = status
        self.body = body


# --------------------------------------------------------------------------
# Config rendering.

def _libconfig_value(value, indent):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_libconfig_value(v, indent) for v in value) + "]"
    if isinstance(value, dict):
        pad = "  " * (indent + 1)
        inner = "".join("%s%s = %s;\n" % (pad, k, _libconfig_value(v, indent + 1))
                        for k, v in value.items())
        return "{\n" + inner + "  " * indent + "}"
    raise TypeError("cannot render %r" % (value,))


def render_libconfig(settings):
    return "".join("%s = %s;\n" % (k, _libconfig_value(v, 0)) for k, v in settings.items())


def _yaml_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    raise TypeError("cannot render %r" % (value,))


def render_instance(driver, accounts, **instance_keys):
    """plugins.d YAML for one instance: accounts is a list of dicts."""
    lines = ["driver: %s" % _yaml_scalar(driver)]
    for key, value in instance_keys.items():
        lines.append("%s: %s" % (key, _yaml_scalar(value)))
    lines.append("accounts:")
    for acct in accounts:
        first = True
        for key, value in acct.items():
            lines.append("%s%s: %s" % ("  - " if first else "    ", key, _yaml_scalar(value)))
            first = False
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# The fixture provider's op log.

class OpLog:
    """Writer for a fixture mailbox (one op per line, TAB-separated). Every
    op is one write() of a whole line, so the driver never sees half."""

    BASE_DATE = 1800000000

    def __init__(self, path):
        self.path = path

    def _append(self, lines):
        data = "".join(lines).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def add(self, folder, msg_id, date, subject="Subject", flags=""):
        self.add_many([(folder, msg_id, date, subject, flags)])

    def add_many(self, items):
        """items: (folder, id, date, subject, flags) tuples; one write."""
        lines = []
        for folder, msg_id, date, subject, flags in items:
            lines.append("add\t%s\t%s\t%d\t%s\t%s\n" % (folder, msg_id, date, flags, subject))
        self._append(lines)

    def flag(self, msg_id, flags):
        self._append(["flag\t%s\t%s\n" % (msg_id, flags)])

    def delete(self, msg_id):
        self._append(["del\t%s\n" % msg_id])

    def fail(self, status, count=1):
        self._append(["fail\t%s\t%d\n" % (status, count)])

    def raw_line(self, text):
        self._append([text if text.endswith("\n") else text + "\n"])

    def exists(self):
        return os.path.exists(self.path)

    def lines(self):
        with open(self.path, "r", encoding="utf-8") as f:
            data = f.read()
        if not data.endswith("\n"):
            data = data[:data.rfind("\n") + 1]
        return data.splitlines()

    def state(self):
        """Replay the log like the driver: {id: {folder, date, subject,
        flags, line}} of live messages."""
        msgs = {}
        for number, line in enumerate(self.lines(), 1):
            f = line.split("\t")
            if f[0] == "add" and len(f) == 6:
                if f[2] in msgs:
                    continue
                try:
                    date = int(f[3])
                except ValueError:
                    continue
                msgs[f[2]] = {"folder": f[1], "date": date, "flags": f[4],
                              "subject": f[5], "line": number}
            elif f[0] == "flag" and len(f) == 3 and f[1] in msgs:
                msgs[f[1]]["flags"] = f[2]
            elif f[0] == "del" and len(f) == 2:
                msgs.pop(f[1], None)
        return msgs


def public_id(account, provider_id):
    """The store's public message id: "m" + 24 hex of SHA-256(account NUL id)."""
    digest = hashlib.sha256(account.encode() + b"\0" + provider_id.encode()).hexdigest()
    return "m" + digest[:24]


def sign(secret, body):
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------
# Server-Sent Events.

class SSEClient:
    """Incremental SSE reader over http.client. next_event() returns
    {"id","event","data"} or None on timeout; raises EOFError when the
    server closed the stream."""

    def __init__(self, host, port, path, headers, timeout=10.0):
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("Content-Type", "")
        self.buf = b""
        self.comments = 0
        self.closed = False

    def _frame(self):
        while True:
            for sep in (b"\r\n\r\n", b"\n\n"):
                pos = self.buf.find(sep)
                if pos >= 0:
                    break
            else:
                return None
            raw, self.buf = self.buf[:pos], self.buf[pos + len(sep):]
            event = {"id": None, "event": "message", "data": None}
            data = []
            for line in raw.decode("utf-8").replace("\r\n", "\n").split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if name == "id":
                    event["id"] = value
                elif name == "event":
                    event["event"] = value
                elif name == "data":
                    data.append(value)
            if event["id"] is None and not data:
                continue  # comment-only frame (heartbeat)
            event["data"] = "\n".join(data)
            return event

    def next_event(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if self.closed:
                raise EOFError("event stream closed")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.conn.sock.settimeout(left)
            try:
                chunk = self.resp.read1(65536)
            except (socket.timeout, TimeoutError):
                return None
            if not chunk:
                self.closed = True
            self.buf += chunk

    def close(self):
        try:
            self.conn.close()
        except OSError:
            pass


def split_event_id(value):
    """An SSE id "<epoch>:<seq>" (or a plain "<seq>") as (epoch, seq);
    epoch 0 for a plain seq."""
    epoch, _, seq = value.rpartition(":")
    return (int(epoch) if epoch else 0), int(seq)


NOTICE_TYPES = ("gap", "error")


def parse_sse(raw, notices=False):
    """Parse a complete SSE body into a list of event dicts with "id",
    "epoch", "seq", "type" and the decoded JSON "json". The stream's own
    notices ("gap", "error") are left out unless `notices`."""
    out = []
    text = raw.decode("utf-8").replace("\r\n", "\n")
    for frame in text.split("\n\n"):
        ev = {"id": None, "event": None, "data": []}
        for line in frame.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "id":
                ev["id"] = value
            elif name == "event":
                ev["event"] = value
            elif name == "data":
                ev["data"].append(value)
        if ev["id"] is None and not ev["data"]:
            continue
        if ev["event"] in NOTICE_TYPES and not notices:
            continue
        epoch, seq = split_event_id(ev["id"]) if ev["id"] is not None else (None, None)
        out.append({"id": ev["id"], "epoch": epoch, "seq": seq, "type": ev["event"],
                    "json": json.loads("\n".join(ev["data"]))})
    return out


# --------------------------------------------------------------------------
# The daemon.

class Daemon:
    def __init__(self, workers=2, settings=None, driver_dir=None, name="mptest"):
        self.binary = env("MAILPULSED")
        self.tmp = tempfile.mkdtemp(prefix=name + "-")
        os.chmod(self.tmp, 0o755)
        self.state_dir = os.path.join(self.tmp, "state")
        self.plugins_dir = os.path.join(self.tmp, "plugins.d")
        self.data_dir = os.path.join(self.tmp, "data")
        for d in (self.state_dir, self.plugins_dir, self.data_dir):
            os.makedirs(d, mode=0o755)
        self.conf_path = os.path.join(self.tmp, "mailpulsed.conf")
        self.log_path = os.path.join(self.tmp, "mailpulsed.log")
        self.driver_dir = driver_dir or env("MP_TEST_DRIVER_DIR")
        self.settings = {
            "state_dir": self.state_dir,
            "driver_dir": self.driver_dir,
            "plugins_dir": self.plugins_dir,
            "workers": workers,
            "log_level": "debug",
            "http": {"listen": "127.0.0.1:0"},
            "backfill": {"mode": "progressive", "bootstrap_max": 1500},
        }
        for key, value in (settings or {}).items():
            if isinstance(value, dict) and isinstance(self.settings.get(key), dict):
                self.settings[key].update(value)
            else:
                self.settings[key] = value
        # Under tests/integration/pgserver.py --run (ctest's *.pg tests):
        # each daemon gets its own database on that server.
        pg_url = os.environ.get("MP_TEST_PG_URL")
        if pg_url and "store" not in self.settings:
            import pgserver
            url_file = os.path.join(self.tmp, "pg.url")
            with open(url_file, "w") as f:
                f.write(pgserver.create_database(pg_url, name) + "\n")
            os.chmod(url_file, 0o600)
            self.settings["store"] = {"backend": "postgresql", "url_file": url_file}
        self.write_conf()
        self.proc = None
        self.env = None  # the daemon's environment; None: this process's
        self.preexec_fn = None  # run in the child before exec (e.g. setrlimit)
        self.host = None
        self.port = None
        self.token = None
        self.starts = 0
        _daemons.append(self)

    # ---- files ----

    def write_conf(self):
        with open(self.conf_path, "w") as f:
            f.write(render_libconfig(self.settings))

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def mailbox(self, name):
        return OpLog(os.path.join(self.data_dir, name + ".log"))

    def write_instance(self, name, text):
        path = os.path.join(self.plugins_dir, name + ".yaml")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)
        return path

    def add_instance(self, name, accounts, driver="fixture", **instance_keys):
        """accounts: list of dicts (id + fixture keys); `mailbox` defaults to
        data/<id>.log."""
        full = []
        for acct in accounts:
            acct = dict(acct)
            acct.setdefault("mailbox", os.path.join(self.data_dir, acct["id"] + ".log"))
            full.append(acct)
        return self.write_instance(name, render_instance(driver, full, **instance_keys))

    def remove_instance(self, name):
        os.unlink(os.path.join(self.plugins_dir, name + ".yaml"))

    def write_secret(self, name, secret):
        path = os.path.join(self.data_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        return path

    # ---- process ----

    def start(self, wait=True, timeout=DEFAULT_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        addr_file = os.path.join(self.state_dir, "http.addr")
        if os.path.exists(addr_file):
            os.unlink(addr_file)
        log = open(self.log_path, "ab")
        log.write(b"\n==== start %d ====\n" % (self.starts + 1))
        log.flush()
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env=self.env, preexec_fn=self.preexec_fn)
        log.close()
        self.starts += 1
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=DEFAULT_TIMEOUT):
        addr_file = os.path.join(self.state_dir, "http.addr")

        def addr_written():
            if self.proc.poll() is not None:
                raise AssertionError("mailpulsed exited with status %s during startup"
                                     % self.proc.returncode)
            if not os.path.exists(addr_file):
                return None
            with open(addr_file) as f:
                text = f.read().strip()
            return text if ":" in text else None

        addr = wait_until(addr_written, timeout, message="%s" % addr_file)
        host, _, port = addr.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        with open(os.path.join(self.state_dir, "api.token")) as f:
            self.token = f.read().strip()
        wait_until(lambda: self.request("GET", "/healthz", auth=False)[0] == 200,
                   timeout, message="/healthz")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: the crash case."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=DEFAULT_TIMEOUT)

    def stop(self, timeout=DEFAULT_TIMEOUT):
        """SIGTERM and wait; returns the exit status."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("mailpulsed did not stop on SIGTERM")
        return self.proc.returncode if self.proc else None

    def restart(self, hard=False):
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- HTTP ----

    def request(self, method, path, body=None, headers=None, auth=True, timeout=DEFAULT_TIMEOUT):
        """Returns (status, headers dict, body bytes)."""
        hdrs = dict(headers or {})
        if auth and self.token:
            hdrs.setdefault("Authorization", "Bearer " + self.token)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, expect=(200,), **kw):
        status, _, data = self.request(method, path, body=body, **kw)
        if status not in expect:
            raise ApiError(method, path, status, data.decode("utf-8", "replace"))
        return json.loads(data) if data else None

    def get(self, path, **kw):
        return self.json("GET", path, **kw)

    def post(self, path, body=None, expect=(200, 202), **kw):
        return self.json("POST", path, body=body, expect=expect, **kw)

    def raw_request(self, data, timeout=10.0):
        """Send raw bytes on a fresh TCP connection; return (status, body)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            chunks = []
            while True:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
                head = b"".join(chunks)
                if b"\r\n\r\n" in head and b"content-length:" in head.lower():
                    hdr, _, rest = head.partition(b"\r\n\r\n")
                    for line in hdr.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            if len(rest) >= int(line.split(b":", 1)[1]):
                                return self._parse_raw(head)
            return self._parse_raw(b"".join(chunks))

    @staticmethod
    def _parse_raw(data):
        if not data:
            return 0, b""
        status_line = data.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) > 1 else 0
        return status, data.partition(b"\r\n\r\n")[2]

    # ---- API shortcuts ----

    def account(self, account_id):
        return self.get("/v1/accounts/" + urllib.parse.quote(account_id, safe=""))

    def accounts(self, **query):
        """Every account listed (all pages of GET /v1/accounts), by id."""
        out = {}
        after = None
        while True:
            q = dict(query)
            if after:
                q["after"] = after
            path = "/v1/accounts" + ("?" + urllib.parse.urlencode(q) if q else "")
            body = self.get(path)
            listed = body.get("accounts") if isinstance(body, dict) else None
            if not isinstance(listed, list):
                raise AssertionError('GET /v1/accounts: expected {"accounts":[...]}, got '
                                     '%.300r' % (body,))
            out.update((a["id"], a) for a in listed)
            after = body.get("next_after")
            if not after:
                return out

    def folder(self, account_id, name):
        for f in self.account(account_id)["folders"]:
            if f["name"] == name:
                return f
        return None

    def sync(self, account_id):
        return self.post("/v1/accounts/%s/sync" % urllib.parse.quote(account_id, safe=""),
                         expect=(202,))

    def messages(self, account_id, folder=None, limit=None, before=None):
        q = {}
        if folder is not None:
            q["folder"] = folder
        if limit is not None:
            q["limit"] = str(limit)
        if before is not None:
            q["before"] = before
        path = "/v1/accounts/%s/messages" % urllib.parse.quote(account_id, safe="")
        if q:
            path += "?" + urllib.parse.urlencode(q)
        return self.get(path)

    def all_messages(self, account_id, folder=None, limit=200):
        """Page through the listing with before= until next_before is null."""
        out, before, pages = [], None, 0
        while True:
            page = self.messages(account_id, folder=folder, limit=limit, before=before)
            out.extend(page["messages"])
            before = page.get("next_before")
            pages += 1
            if not before or not page["messages"]:
                return out
            if pages > 100000:
                raise AssertionError("listing does not terminate")

    def events(self, after=0, types=None, accounts=None, headers=None, notices=False):
        """The backlog after `after` (a seq or an event id) through ?once=1,
        as parsed dicts (see parse_sse)."""
        q = {"once": "1", "after": str(after)}
        if types:
            q["types"] = ",".join(types)
        if accounts:
            q["accounts"] = ",".join(accounts)
        status, hdrs, data = self.request("GET", "/v1/events?" + urllib.parse.urlencode(q),
                                          headers=headers, timeout=120)
        if status != 200:
            raise ApiError("GET", "/v1/events", status, data.decode("utf-8", "replace"))
        return parse_sse(data, notices=notices)

    def last_seq(self):
        return self.get("/v1/status")["events"]["last_seq"]

    def sse(self, path="/v1/events", headers=None, timeout=10.0):
        hdrs = {"Accept": "text/event-stream", "Authorization": "Bearer " + self.token}
        hdrs.update(headers or {})
        return SSEClient(self.host, self.port, path, hdrs, timeout=timeout)

    def ctl(self, *args, timeout=30):
        """Run mailpulsectl against the unix socket; returns CompletedProcess."""
        ctl = env("MAILPULSECTL")
        sock = os.path.join(self.state_dir, "mailpulsed.sock")
        return subprocess.run([ctl, "-s", sock] + list(args), capture_output=True,
                              text=True, timeout=timeout)

    # ---- waits ----

    def wait_bootstrapped(self, account_id, folders, timeout=60):
        def done():
            acct = self.account(account_id)
            by_name = {f["name"]: f for f in acct.get("folders") or []}
            return all(by_name.get(n, {}).get("bootstrapped") for n in folders) and acct
        return wait_until(done, timeout, message="%s bootstrapped %s" % (account_id, folders))

    def wait_sync_runs(self, account_id, more_than, timeout=60):
        def ran():
            sync = self.account(account_id)["sync"]
            return sync["runs"] > more_than and not sync["running"] and sync
        return wait_until(ran, timeout, message="%s sync run > %d" % (account_id, more_than))

    def sync_and_wait(self, account_id, timeout=60):
        """Trigger a sync and wait until another run finished and none is
        running. Tests assert on effects (events), not on this alone."""
        before = self.account(account_id)["sync"]["runs"]
        self.sync(account_id)
        return self.wait_sync_runs(account_id, before, timeout)


def main():
    """unittest main that shows the daemon logs when something failed and
    always cleans up."""
    prog = unittest.main(exit=False, verbosity=2)
    ok = prog.result.wasSuccessful()
    for d in _daemons:
        if d.running():
            d.kill()
        reports = [line for line in d.log_text().splitlines()
                   if any(marker in line for marker in SANITIZER_MARKERS)]
        if reports:
            sys.stderr.write("sanitizer report in %s:\n  %s\n"
                             % (d.log_path, "\n  ".join(reports[:20])))
            ok = False
    if not ok:
        for d in _daemons:
            sys.stderr.write("\n===== mailpulsed log (%s) =====\n" % d.log_path)
            sys.stderr.write(d.log_text()[-20000:])
            sys.stderr.write("\n===== end of log =====\n")
    for d in _daemons:
        d.cleanup()
    sys.exit(0 if ok else 1)


@atexit.register
def _cleanup_all():
    for d in _daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()

"""A private nats-server with JetStream and a small NATS client for tests
(python3 standard library only).

`NatsServer` runs `nats-server -js` in a temporary directory on random
ports (kept across restarts, so a client's URL stays valid) and stops it
at exit. `Client` speaks the NATS text protocol over a socket: request/
reply, HMSG with headers, and the JetStream API calls the tests need
(stream info and creation, a durable pull consumer, fetching and acking):
the way a consumer of mailpulse's events reads them, written independently
of the daemon.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

_servers = []


def nats_server_binary():
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/usr/bin"]:
        p = os.path.join(d, "nats-server")
        if os.access(p, os.X_OK):
            return p
    return None


class NatsServer:
    def __init__(self, name="nats"):
        self.binary = nats_server_binary()
        if self.binary is None:
            raise RuntimeError("nats-server is not installed (packaging/deps.sh test)")
        self.tmp = tempfile.mkdtemp(prefix=name + "-")
        self.port = -1
        self.http_port = -1
        self.proc = None
        self.log_path = os.path.join(self.tmp, "nats-server.log")
        _servers.append(self)

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def start(self, timeout=20):
        assert self.proc is None
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-js", "-sd", os.path.join(self.tmp, "js"), "-a", "127.0.0.1",
             "-p", str(self.port), "-m", str(self.http_port), "--ports_file_dir", self.tmp],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        ports = os.path.join(self.tmp, "nats-server_%d.ports" % self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("nats-server exited: %s" % self.log_text())
            if os.path.exists(ports):
                try:
                    with open(ports) as f:
                        info = json.load(f)
                    self.port = int(info["nats"][0].rsplit(":", 1)[1])
                    self.http_port = int(info["monitoring"][0].rsplit(":", 1)[1])
                    if self.healthy():
                        return self
                except (ValueError, KeyError, IndexError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server not ready: %s" % self.log_text())
            time.sleep(0.05)

    def healthy(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz?js-enabled-only=true"
                                        % self.http_port, timeout=2) as r:
                return json.load(r).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def cleanup(self):
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


@atexit.register
def _cleanup_all():
    for s in _servers:
        s.cleanup()


class Msg:
    def __init__(self, subject, reply, headers, status, data):
        self.subject = subject
        self.reply = reply
        self.headers = headers
        self.status = status
        self.data = data

    def json(self):
        return json.loads(self.data)


def _parse_headers(block):
    lines = block.decode("utf-8", "replace").split("\r\n")
    status = None
    first = lines[0].split(" ", 2)
    if len(first) >= 2 and first[1].isdigit():
        status = int(first[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip()] = v.strip()
    return headers, status


class Client:
    """One connection; not thread-safe. Every call has a timeout."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.sid = 0
        self.inbox_n = 0
        line = self._line()
        if not line.startswith(b"INFO "):
            raise RuntimeError("not a NATS server: %r" % line)
        connect = {"verbose": False, "pedantic": False, "headers": True,
                   "no_responders": True, "protocol": 1, "name": "mptest"}
        self.sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        while True:
            line = self._line()
            if line == b"PONG":
                break
            if line.startswith(b"-ERR"):
                raise RuntimeError(line.decode())

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("NATS connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def next_msg(self, deadline):
        """The next MSG/HMSG (PINGs answered), or None at the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0 and b"\r\n" not in self.buf:
                return None
            self.sock.settimeout(max(left, 0.01))
            try:
                line = self._line()
            except socket.timeout:
                return None
            parts = line.decode().split(" ")
            if parts[0] == "PING":
                self.sock.sendall(b"PONG\r\n")
            elif parts[0] == "MSG":
                reply = parts[3] if len(parts) == 5 else None
                data = self._bytes(int(parts[-1]))
                return Msg(parts[1], reply, {}, None, data)
            elif parts[0] == "HMSG":
                reply = parts[3] if len(parts) == 6 else None
                hlen, total = int(parts[-2]), int(parts[-1])
                raw = self._bytes(total)
                headers, status = _parse_headers(raw[:hlen])
                return Msg(parts[1], reply, headers, status, raw[hlen:])
            elif parts[0] == "-ERR":
                raise RuntimeError(line.decode())

    def publish(self, subject, data=b"", reply=None):
        head = "PUB %s %s%d\r\n" % (subject, reply + " " if reply else "", len(data))
        self.sock.sendall(head.encode() + data + b"\r\n")

    def subscribe(self, subject):
        self.sid += 1
        self.sock.sendall(("SUB %s %d\r\n" % (subject, self.sid)).encode())
        return self.sid

    def unsubscribe(self, sid):
        self.sock.sendall(("UNSUB %d\r\n" % sid).encode())

    def inbox(self):
        self.inbox_n += 1
        return "_INBOX.mptest.%d.%d" % (os.getpid(), self.inbox_n)

    def request(self, subject, payload, timeout=5.0):
        inbox = self.inbox()
        sid = self.subscribe(inbox)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.publish(subject, data, reply=inbox)
        msg = self.next_msg(time.monotonic() + timeout)
        self.unsubscribe(sid)
        if msg is None:
            raise TimeoutError("no reply to %s" % subject)
        return msg

    # ---- JetStream API ----

    def js(self, api, payload=b"", timeout=5.0):
        msg = self.request("$JS.API." + api, payload, timeout)
        if msg.status == 503:
            raise RuntimeError("JetStream: no responders for %s" % api)
        return msg.json()

    def stream_info(self, stream):
        """The stream's info, or None when it does not exist."""
        info = self.js("STREAM.INFO." + stream)
        if "error" in info:
            if info["error"].get("err_code") == 10059:
                return None
            raise RuntimeError(info["error"])
        return info

    def add_stream(self, config):
        info = self.js("STREAM.CREATE." + config["name"], config)
        if "error" in info:
            raise RuntimeError(info["error"])
        return info

    def delete_stream(self, stream):
        return self.js("STREAM.DELETE." + stream)

    def add_durable(self, stream, durable, filter_subject=None):
        config = {"durable_name": durable, "ack_policy": "explicit",
                  "deliver_policy": "all", "max_ack_pending": 10000}
        if filter_subject:
            config["filter_subject"] = filter_subject
        info = self.js("CONSUMER.DURABLE.CREATE.%s.%s" % (stream, durable),
                       {"stream_name": stream, "config": config})
        if "error" in info:
            raise RuntimeError(info["error"])
        return info

    def fetch(self, stream, durable, batch=256, timeout=2.0, ack=True):
        """Up to `batch` messages of a durable pull consumer (acked unless
        ack=False), waiting at most `timeout` seconds."""
        inbox = self.inbox()
        sid = self.subscribe(inbox)
        req = {"batch": batch, "expires": int(timeout * 1e9)}
        self.publish("$JS.API.CONSUMER.MSG.NEXT.%s.%s" % (stream, durable),
                     json.dumps(req).encode(), reply=inbox)
        out = []
        deadline = time.monotonic() + timeout + 1
        while len(out) < batch:
            msg = self.next_msg(deadline)
            if msg is None or msg.status is not None:   # 404/408: nothing more
                break
            out.append(msg)
            if ack and msg.reply:
                self.publish(msg.reply, b"+ACK")
        self.unsubscribe(sid)
        # A round trip: the acks above reached the server.
        self.sock.sendall(b"PING\r\n")
        while True:
            self.sock.settimeout(5)
            line = self._line()
            if line == b"PONG":
                break
            if line.startswith(b"MSG") or line.startswith(b"HMSG"):
                # A late delivery to the dropped inbox: consume its payload.
                parts = line.decode().split(" ")
                self._bytes(int(parts[-1]))
        return out

    def fetch_all(self, stream, durable, idle=1.0, limit=100000):
        out = []
        while len(out) < limit:
            got = self.fetch(stream, durable, timeout=idle)
            if not got:
                break
            out.extend(got)
        return out


def stream_seq(msg):
    """The stream sequence of a consumer delivery, from its ack subject
    $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>..."""
    parts = msg.reply.split(".")
    return int(parts[5])


def token_decode(token):
    """The inverse of the daemon's subject token mapping (README)."""
    if token == "%":
        return ""
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            out.append(int(token[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(token[i]))
            i += 1
    return out.decode("utf-8")

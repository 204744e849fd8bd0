"""A small TCP proxy for fault tests (python3 standard library, loopback
only): forwards 127.0.0.1:<port> to a target port, and can make the
connections it holds die silently -- `blackhole()` keeps their sockets
open but drops every byte in both directions, as a NAT or firewall that
lost its state does. Connections accepted afterwards forward normally.
With `rate` (bytes per second, all connections together) it is also a slow
link, to stretch a sync out so that faults land in its middle."""

import selectors
import socket
import threading
import time

import dovecot


class Proxy:
    def __init__(self, target_port, target_host="127.0.0.1", rate=None):
        self.target = (target_host, target_port)
        self.rate = rate
        self.port = dovecot.free_port()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.lock = threading.Lock()
        self.pairs = {}      # socket -> (peer socket, pair record)
        self.accepted = 0    # connections accepted so far
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _accept(self):
        client, _ = self.listener.accept()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        rec = {"dead": False, "sockets": (client, upstream)}
        with self.lock:
            self.accepted += 1
            self.pairs[client] = (upstream, rec)
            self.pairs[upstream] = (client, rec)
        self.sel.register(client, selectors.EVENT_READ, None)
        self.sel.register(upstream, selectors.EVENT_READ, None)

    def _close(self, sock):
        with self.lock:
            entry = self.pairs.pop(sock, None)
            if entry is None:
                return
            peer, _ = entry
            self.pairs.pop(peer, None)
        for s in (sock, peer):
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(timeout=0.2):
                sock = key.fileobj
                if sock is self.listener:
                    self._accept()
                    continue
                with self.lock:
                    entry = self.pairs.get(sock)
                if entry is None:
                    continue
                peer, rec = entry
                try:
                    data = sock.recv(16384 if self.rate else 65536)
                except OSError:
                    data = b""
                if not data:
                    self._close(sock)
                    continue
                if rec["dead"]:
                    continue  # swallowed: the other side never hears of it
                try:
                    peer.sendall(data)
                except OSError:
                    self._close(sock)
                rate = self.rate
                if rate:
                    time.sleep(len(data) / rate)

    def blackhole(self):
        """Every connection open now stops forwarding (sockets stay open).
        Returns how many were affected."""
        with self.lock:
            recs = {id(rec): rec for _, rec in self.pairs.values()}
            for rec in recs.values():
                rec["dead"] = True
            return len(recs)

    def live_connections(self):
        with self.lock:
            return len({id(rec) for _, rec in self.pairs.values() if not rec["dead"]})

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        with self.lock:
            socks = list(self.pairs)
        for s in socks:
            self._close(s)
        self.listener.close()


class DelayProxy:
    """A link with latency: every chunk read from either side is written
    to the other `delay_ms` milliseconds later (so the round trip is twice
    that), in order, with no bandwidth cap. Loopback only, python3
    standard library: each connection gets one reader and one writer
    thread per direction, the writer sleeping until a chunk is due.

    Per connection it counts what the client makes the link do:
      turns  client chunks that follow a server chunk (the conversation
             turned round: a request sent after reading an answer);
      waits  turns that found nothing in flight either way, i.e. the
             client waited for a full answer before it sent again: each
             one costs a whole round trip, which is what pipelining saves.
    The first client chunk counts as a turn and a wait (the client spoke
    first, after the TCP handshake); a server greeting before it does not."""

    def __init__(self, target_port, delay_ms, target_host="127.0.0.1", trace=False):
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000.0
        self.trace = trace   # keep (seconds since open, "up"/"down", bytes, wait?)
        self.port = dovecot.free_port()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.lock = threading.Lock()
        self.conns = []      # one stats dict per accepted connection
        self.sockets = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        self.listener.settimeout(0.2)
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            st = {"opened": time.monotonic(), "up_bytes": 0, "down_bytes": 0,
                  "up_chunks": 0, "down_chunks": 0, "turns": 0, "waits": 0,
                  "last": None, "in_flight": 0, "closed": None, "events": []}
            cond = threading.Condition()
            with self.lock:
                self.conns.append(st)
                self.sockets += [client, upstream]
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                queue = []
                threading.Thread(target=self._reader, args=(src, queue, cond, st, up),
                                 daemon=True).start()
                threading.Thread(target=self._writer, args=(dst, queue, cond, st),
                                 daemon=True).start()

    def _reader(self, src, queue, cond, st, up):
        while True:
            try:
                data = src.recv(262144)
            except OSError:
                data = b""
            now = time.monotonic()
            with cond:
                if data:
                    waited = False
                    if up:
                        if st["last"] != "up":
                            st["turns"] += 1
                            if st["in_flight"] == 0:
                                st["waits"] += 1
                                waited = True
                        st["up_bytes"] += len(data)
                        st["up_chunks"] += 1
                    else:
                        st["down_bytes"] += len(data)
                        st["down_chunks"] += 1
                    st["last"] = "up" if up else "down"
                    st["in_flight"] += 1
                    if self.trace:
                        st["events"].append((round(now - st["opened"], 4),
                                             "up" if up else "down", len(data), waited))
                queue.append((now + self.delay, data))
                cond.notify_all()
            if not data:
                return

    def _writer(self, dst, queue, cond, st):
        while True:
            with cond:
                while not queue:
                    cond.wait()
                due, data = queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with cond:
                queue.pop(0)
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                st["closed"] = time.monotonic()
                return
            try:
                dst.sendall(data)
            except OSError:
                pass
            with cond:
                st["in_flight"] -= 1

    def stats(self):
        """Copies of the per-connection counters, in accept order."""
        with self.lock:
            return [dict(s, events=list(s["events"])) for s in self.conns]

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        with self.lock:
            socks = list(self.sockets)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.listener.close()

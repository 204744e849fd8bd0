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

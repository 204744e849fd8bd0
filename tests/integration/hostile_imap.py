"""A scripted hostile IMAP server for the fault suite: plain TCP on
127.0.0.1, one thread per connection. Each connection plays the next case
of a cycle; a case behaves like a small, empty but well-formed server until
the command it attacks, then turns hostile:

  esearch_huge       UID SEARCH answered with many "* ESEARCH ... UID ALL
                     1:10000000" lines (45 bytes each, 78 MB each once
                     expanded before the fix)
  capability_huge    an 8 MB CAPABILITY line of a million atoms (before
                     login: the greeting carries no capabilities)
  endless_line       a response line that never ends (no CRLF, ever)
  literal_huge       a literal announced at 4 GB
  literal_stall      a 50 MB literal announced, 1 KB sent, then a byte a
                     second
  garbage_after_ok   binary garbage right after a tagged OK
  stall_mid_response half a response, then a byte a second, forever
  stall_handshake    the greeting trickled a byte a second, never complete
  bye_mid_fetch      "* BYE" in the middle of a FETCH answer, then close

Three more, outside the cycle: "auth_unavailable" answers the login with
Dovecot's "NO [UNAVAILABLE] Temporary authentication failure" (its passdb
could not be read), "normal" never strikes (an empty INBOX), "status_lies"
offers LIST-STATUS and claims 4294967295 messages in INBOX, which holds 3
(the client's hint for pipelining its first FETCH must not be trusted).

Usage from a test:
    srv = hostile_imap.HostileServer(cases=hostile_imap.CASES)
    ... srv.port, srv.seen (a Record per connection, in order) ...
    srv.stop()
Run alone (python3 hostile_imap.py [port]) it serves the cycle forever."""

import socket
import sys
import threading
import time

CASES = (
    "esearch_huge",
    "capability_huge",
    "endless_line",
    "literal_huge",
    "literal_stall",
    "garbage_after_ok",
    "stall_mid_response",
    "stall_handshake",
    "bye_mid_fetch",
)

# Cases that strike at the first command touching a mailbox, whichever it
# is (a sync may skip LIST when the folder list is fresh).
FIRST_DATA_COMMAND = {"endless_line", "literal_huge", "literal_stall", "garbage_after_ok",
                      "stall_mid_response"}
DATA_COMMANDS = {"LIST", "EXAMINE", "SELECT", "UID", "FETCH", "STATUS", "SEARCH"}

CAPS = "IMAP4rev1 AUTH=PLAIN SASL-IR ESEARCH ID"


class _Closed(Exception):
    pass


class Record:
    """What happened on one connection: its case, when it started, when the
    attack was sent, when and by whom it ended, bytes sent."""

    def __init__(self, case):
        self.case = case
        self.started = time.monotonic()
        self.struck = None
        self.ended = None
        self.ended_by = None  # "client" (it gave up or closed), "server"
        self.sent = 0

    def duration(self):
        return (self.ended or time.monotonic()) - self.started

    def __repr__(self):
        return "<%s %s after %.1f s, %d bytes>" % (self.case, self.ended_by or "open",
                                                   self.duration(), self.sent)


class _Session:
    def __init__(self, server, sock, record):
        self.server = server
        self.sock = sock
        self.case = record.case
        self.record = record
        self.buf = b""
        self.sock.settimeout(1.0)

    # ---- I/O ----

    def alive(self):
        return not self.server.stopping.is_set()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        view = memoryview(data)
        while view:
            if not self.alive():
                raise _Closed()
            try:
                n = self.sock.send(view)
            except socket.timeout:
                continue
            except OSError:
                raise _Closed()
            view = view[n:]
            self.record.sent += n

    def line(self):
        while b"\n" not in self.buf:
            if not self.alive():
                raise _Closed()
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                raise _Closed()
            if not chunk:
                raise _Closed()
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("latin-1")

    def trickle(self, data=b" ", every=1.0):
        """One byte every `every` seconds until the peer gives up."""
        while self.alive():
            self.send(data[:1])
            deadline = time.monotonic() + every
            while time.monotonic() < deadline:
                if not self.alive():
                    raise _Closed()
                try:
                    if self.sock.recv(65536) == b"":
                        raise _Closed()
                except socket.timeout:
                    pass
                except OSError:
                    raise _Closed()

    # ---- the attacks ----

    def strike(self, tag):
        self.record.struck = time.monotonic()
        c = self.case
        if c == "endless_line":
            self.send('* LIST () "/" ')
            chunk = b"a" * 65536
            sent = 0
            while sent < (256 << 20):  # the client must give up long before
                self.send(chunk)
                sent += len(chunk)
            self.record.ended_by = "server"
            raise _Closed()
        if c == "literal_huge":
            self.send('* LIST () "/" {4294967296}\r\n' + "x" * 1024)
            self.trickle(b"x")
        if c == "literal_stall":
            self.send('* LIST () "/" {50000000}\r\n' + "x" * 1024)
            self.trickle(b"x")
        if c == "garbage_after_ok":
            self.send("%s OK done\r\n" % tag)
            self.send(b"\x00\xff\xfe garbage ))) (((( {12\r\n\x01\x02\r\n")
            return
        if c == "stall_mid_response":
            self.send('* LIST (\\HasNoChildren) "/" IN')
            self.trickle(b"B")

    def session(self):
        if self.case == "stall_handshake":
            self.record.struck = time.monotonic()
            self.send("*")
            self.trickle(b" ")
        caps = CAPS + " LIST-STATUS" if self.case == "status_lies" else CAPS
        if self.case == "capability_huge":
            self.send("* OK hostile ready\r\n")
        else:
            self.send("* OK [CAPABILITY %s] hostile ready\r\n" % caps)
        struck = False
        while True:
            text = self.line()
            parts = text.split(" ")
            tag = parts[0]
            cmd = parts[1].upper() if len(parts) > 1 else ""
            sub = parts[2].upper() if len(parts) > 2 else ""
            if cmd in DATA_COMMANDS and self.case in FIRST_DATA_COMMAND and not struck:
                struck = True
                self.strike(tag)
                continue
            if cmd == "CAPABILITY":
                if self.case == "capability_huge":
                    self.record.struck = time.monotonic()
                    atoms = self.server.capability_atoms()
                    self.send("* CAPABILITY %s %s\r\n" % (CAPS, atoms))
                else:
                    self.send("* CAPABILITY %s\r\n" % CAPS)
                self.send("%s OK done\r\n" % tag)
            elif cmd in ("AUTHENTICATE", "LOGIN") and self.case == "auth_unavailable":
                self.record.struck = time.monotonic()
                self.send("%s NO [UNAVAILABLE] Temporary authentication failure. "
                          "[hostile:2026-12-06 23:00:00]\r\n" % tag)
            elif cmd in ("AUTHENTICATE", "LOGIN"):
                self.send("%s OK [CAPABILITY %s] logged in\r\n" % (tag, caps))
            elif cmd in ("ID", "ENABLE", "NOOP", "CHECK"):
                self.send("%s OK done\r\n" % tag)
            elif cmd == "LOGOUT":
                self.send("* BYE logging out\r\n%s OK done\r\n" % tag)
                raise _Closed()
            elif cmd == "LIST":
                self.send('* LIST (\\HasNoChildren) "/" INBOX\r\n')
                if self.case == "status_lies":
                    self.record.struck = time.monotonic()
                    self.send("* STATUS INBOX (MESSAGES 4294967295)\r\n")
                self.send("%s OK done\r\n" % tag)
            elif cmd in ("EXAMINE", "SELECT"):
                if self.case in ("bye_mid_fetch", "status_lies"):
                    self.send("* 3 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n"
                              "* OK [UIDNEXT 4] n\r\n")
                else:
                    # No UIDNEXT: the bootstrap lists the UIDs (UID SEARCH).
                    self.send("* 0 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n")
                self.send("%s OK [READ-ONLY] done\r\n" % tag)
            elif cmd == "UID" and sub == "SEARCH":
                if self.case == "esearch_huge":
                    self.record.struck = time.monotonic()
                    line = '* ESEARCH (TAG "%s") UID ALL 1:10000000\r\n' % tag
                    self.send(line * self.server.esearch_lines)
                else:
                    self.send('* ESEARCH (TAG "%s") UID\r\n' % tag)
                self.send("%s OK done\r\n" % tag)
            elif cmd == "FETCH" and self.case == "status_lies":
                # by sequence number: the UIDs of what is asked for that exists
                lo, _, hi = parts[2].partition(":")
                first = min(int(lo), 3) if hi == "*" else int(lo)
                last = 3 if hi in ("*", "") else min(int(hi), 3)
                for seq in range(first, last + 1):
                    self.send("* %d FETCH (UID %d RFC822.SIZE 100)\r\n" % (seq, seq))
                self.send("%s OK done\r\n" % tag)
            elif cmd == "FETCH" or (cmd == "UID" and sub == "FETCH"):
                if self.case == "bye_mid_fetch":
                    self.record.struck = time.monotonic()
                    self.send("* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n"
                              "* BYE going away in the middle of it\r\n")
                    self.record.ended_by = "server"
                    raise _Closed()
                self.send("%s OK done\r\n" % tag)
            else:
                self.send("%s BAD unknown command\r\n" % tag)


class HostileServer:
    def __init__(self, cases=CASES, port=0, esearch_lines=150, dense_capability=False,
                 repeat_last=False):
        """cases are played in turn, from the start again after the last
        one, or (repeat_last) the last one for every later connection."""
        self.cases = tuple(cases)
        self.repeat_last = repeat_last
        self.esearch_lines = esearch_lines
        self.dense_capability = dense_capability
        self.seen = []     # Records, in order of connection
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.listener.settimeout(0.5)
        self.port = self.listener.getsockname()[1]
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def capability_atoms(self):
        """8 MB of atoms: a million distinct 7-byte ones, or (dense) four
        million "A"s."""
        if self.dense_capability:
            return " ".join(["A"] * 4000000)
        return " ".join("X%06d" % i for i in range(1000000))

    def _accept(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                k = len(self.seen)
                if self.repeat_last:
                    k = min(k, len(self.cases) - 1)
                rec = Record(self.cases[k % len(self.cases)])
                self.seen.append(rec)
            t = threading.Thread(target=self._serve, args=(sock, rec), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, sock, rec):
        try:
            _Session(self, sock, rec).session()
        except (_Closed, OSError):
            pass
        finally:
            rec.ended = time.monotonic()
            if rec.ended_by is None:
                rec.ended_by = "server" if self.stopping.is_set() else "client"
            try:
                sock.close()
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)


if __name__ == "__main__":
    srv = HostileServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print("hostile IMAP server on 127.0.0.1:%d" % srv.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()

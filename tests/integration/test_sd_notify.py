"""mailpulsed under systemd's notification protocol (sd_notify(3)): the test
owns the NOTIFY_SOCKET (a unix datagram socket, sender credentials on, as
systemd does for NotifyAccess=main) and sets WATCHDOG_USEC, then checks
READY=1 once the API answers, STATUS= with accounts and push health (sent
again when it changes), WATCHDOG=1 pings from the loop, RELOADING=1/READY=1
around SIGHUP (applied or refused), and STOPPING=1 on SIGTERM.

Skipped (exit 77) in a build without libsystemd (MP_SYSTEMD off)."""

import array
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import unittest

import mptest

SECRET = b"notify-push-secret-77ab"


class NotifySocket:
    """The service manager's end: every datagram is kept as a dict of its
    KEY=VALUE lines plus the sender's pid."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mpn-", dir="/tmp")  # sun_path is short
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.seen = []

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _, _ = struct.unpack("iII", payload[:12])
        fields = {}
        for line in data.decode().split("\n"):
            if "=" in line:
                key, _, value = line.partition("=")
                fields[key] = value
        msg = {"fields": fields, "pid": pid, "raw": data.decode()}
        self.seen.append(msg)
        return msg

    def wait_for(self, predicate, what, timeout=30.0):
        """The next datagram for which predicate(fields) holds; others are
        kept in self.seen and skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %.0f s; got %r"
                                     % (what, timeout, [m["raw"] for m in self.seen[-10:]]))
            try:
                msg = self._recv(left)
            except socket.timeout:
                continue
            if predicate(msg["fields"]):
                return msg

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class SdNotify(unittest.TestCase):
    def setUp(self):
        self.n = NotifySocket()
        self.d = d = mptest.Daemon(name="notify")
        self.secret = d.write_secret("push.secret", SECRET)
        d.add_instance("pushy", [{"id": "alice", "generate": 3}],
                       webhook_secret_file=self.secret)
        d.env = dict(os.environ, NOTIFY_SOCKET=self.n.path, WATCHDOG_USEC="1000000")

    def tearDown(self):
        self.d.cleanup()
        self.n.close()

    def from_daemon(self, msg):
        self.assertEqual(msg["pid"], self.d.pid, "notification not sent by the main pid")
        return msg["fields"]

    def test_lifecycle(self):
        d, n = self.d, self.n
        d.start(wait=False)

        # READY=1 comes once the store is open and the listeners are bound:
        # the API answers at once, without any retry.
        ready = self.from_daemon(n.wait_for(lambda f: f.get("READY") == "1", "READY=1"))
        with open(os.path.join(d.state_dir, "http.addr")) as f:
            host, _, port = f.read().strip().rpartition(":")
        d.host, d.port = host.strip("[]"), int(port)
        status, _, _ = d.request("GET", "/healthz", auth=False)
        self.assertEqual(status, 200, "API not answering when READY=1 was sent")
        # Accounts start behind the API (a slice per loop turn): at READY
        # the account may not be open yet.
        self.assertRegex(ready.get("STATUS", ""),
                         r"^accounts: 1 \(open (1, parked 0, not open 0|0, parked 0, not open 1), "
                         r"disabled 0\); push: live \d+, silent 0$")
        d.wait_ready()
        self.assertIn("systemd watchdog: 1000 ms, pinged every 500 ms", d.log_text())

        # The watchdog (WATCHDOG_USEC=1 s): pings from the loop, repeatedly.
        for i in range(3):
            self.from_daemon(n.wait_for(lambda f: f.get("WATCHDOG") == "1",
                                        "WATCHDOG=1 #%d" % (i + 1), timeout=10))

        # Push goes live once the fixture's subscription is enrolled; the
        # STATUS line follows the change without being asked.
        live = n.wait_for(lambda f: "push: live 1" in f.get("STATUS", ""),
                          "STATUS= with push live")
        self.assertNotIn("READY", live["fields"], "a status change is not a READY")
        self.assertIn("accounts: 1 (open 1, parked 0, not open 0, disabled 0)",
                      live["fields"]["STATUS"])

        # SIGHUP with a new account: RELOADING=1, then READY=1 with the new
        # status.
        d.add_instance("second", [{"id": "bob", "generate": 1}])
        d.reload()
        self.from_daemon(n.wait_for(lambda f: f.get("RELOADING") == "1", "RELOADING=1"))
        after = self.from_daemon(n.wait_for(lambda f: f.get("READY") == "1",
                                            "READY=1 after the reload"))
        self.assertRegex(after.get("STATUS", ""), r"^accounts: 2 \(")
        self.assertNotIn("refused", after["STATUS"])

        # A refused reload still ends with READY=1 (the old configuration
        # runs on), and STATUS says it was refused until a good reload.
        d.write_instance("broken", "driver: fixture\nno_such_key: 1\naccounts: []\n")
        d.reload()
        n.wait_for(lambda f: f.get("RELOADING") == "1", "RELOADING=1 (bad config)")
        refused = n.wait_for(lambda f: f.get("READY") == "1", "READY=1 (bad config)")
        self.assertIn("last reload refused", refused["fields"].get("STATUS", ""))
        self.assertRegex(refused["fields"]["STATUS"], r"^accounts: 2 \(")
        d.remove_instance("broken")
        d.reload()
        n.wait_for(lambda f: f.get("RELOADING") == "1", "RELOADING=1 (fixed)")
        fixed = n.wait_for(lambda f: f.get("READY") == "1", "READY=1 (fixed)")
        self.assertNotIn("refused", fixed["fields"].get("STATUS", ""))

        # SIGTERM: STOPPING=1, then a clean exit.
        d.proc.send_signal(signal.SIGTERM)
        self.from_daemon(n.wait_for(lambda f: f.get("STOPPING") == "1", "STOPPING=1"))
        self.assertEqual(d.proc.wait(timeout=30), 0)

    def test_no_watchdog_without_watchdog_usec(self):
        d, n = self.d, self.n
        d.env.pop("WATCHDOG_USEC")
        d.start(wait=False)
        n.wait_for(lambda f: f.get("READY") == "1", "READY=1")
        d.wait_ready()
        # Push going live takes an enrollment and a status check (seconds);
        # with a watchdog, pings would have come meanwhile.
        n.wait_for(lambda f: "push: live 1" in f.get("STATUS", ""), "STATUS= with push live")
        self.assertFalse([m for m in n.seen if "WATCHDOG" in m["fields"]],
                         "WATCHDOG=1 sent although WATCHDOG_USEC is not set")
        self.assertNotIn("systemd watchdog:", d.log_text())

if __name__ == "__main__":
    if os.environ.get("MP_HAVE_SYSTEMD") != "1":
        print("SKIP: mailpulsed was built without libsystemd (MP_SYSTEMD); "
              "sd_notify not tested")
        sys.exit(77)
    mptest.main()

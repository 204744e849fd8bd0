"""A dead IDLE connection (issue 8, fault suite): mailpulsed reaches Dovecot
through a TCP proxy (tcpproxy.py) that is told to stop forwarding on every
connection it holds while keeping the sockets open -- no FIN, no RST, and
TCP keepalive answered by the proxy's kernel. With the default settings
the driver notices (IDLE re-issued every push_check_interval, 60 s, and no
answer within 30 s) and replaces the connection within 2 minutes; mail
appended during the dead period arrives within the same 2 minutes (the
sync connection, dead as well, is replaced on push's word rather than after
its own 60 s read timeout), each message exactly once, with the account's
poll an hour away."""

import collections
import re
import time
import unittest

import dovecot
import mptest
import tcpproxy

ACCOUNT = "alice"
DETECT_LIMIT = 120.0


class DeadIdle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(name="dovecot-dead-idle")
        cls.server.generate("INBOX", 20)
        cls.server.index("INBOX")
        cls.proxy = tcpproxy.Proxy(cls.server.imaps_port)
        cls.d = mptest.Daemon(name="imap-dead-idle", driver_dir=dovecot.imap_driver_dir(),
                              settings={"schedule": {"reconcile_interval": 3600,
                                                     "max_backoff": 5}})
        acct = dovecot.imap_account(cls.d, cls.server, ACCOUNT, port=cls.proxy.port,
                                    push="idle", poll_interval=3600, folders=["INBOX"])
        dovecot.add_imap_instance(cls.d, "mail", [acct])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()

    def idle_up(self):
        state = self.d.account(ACCOUNT).get("push_state") or ""
        return re.match(r"idle: 1 of 1 folder", state) is not None

    def new_events(self, after):
        return [e for e in self.d.events(after=after, types=["message.new"],
                                         accounts=[ACCOUNT])]

    def append(self, n, tag):
        msg = dovecot.make_message(n, int(time.time()), tag=tag)
        uid = self.server.append("INBOX", msg)
        return dovecot.public_id(ACCOUNT, "INBOX", self.server.uidvalidity("INBOX"), uid)

    def test_dead_idle_replaced(self):
        d = self.d
        d.wait_bootstrapped(ACCOUNT, ["INBOX"], timeout=60)
        mptest.wait_until(self.idle_up, 60, message="IDLE up")
        seq0 = d.last_seq()
        first = self.append(1000, "before")
        mptest.wait_until(lambda: first in {e["json"]["message"]
                                            for e in self.new_events(seq0)},
                          30, message="push works before the fault")
        time.sleep(1.0)

        accepted = self.proxy.accepted
        dead = self.proxy.blackhole()
        t0 = time.monotonic()
        self.assertGreaterEqual(dead, 1, "the IDLE connection goes through the proxy")
        during = [self.append(1001 + i, "during") for i in range(3)]

        def replaced():
            return (self.proxy.accepted > accepted and "within 30 s" in d.log_text()
                    and self.idle_up())
        mptest.wait_until(replaced, DETECT_LIMIT + 30, interval=0.5,
                          message="the dead IDLE connection replaced")
        detect = time.monotonic() - t0
        self.assertLess(detect, DETECT_LIMIT, "detected and replaced after %.0f s" % detect)

        mptest.wait_until(lambda: set(during) <= {e["json"]["message"]
                                                  for e in self.new_events(seq0)},
                          180, interval=0.5, message="mail appended while the link was dead")
        arrive = time.monotonic() - t0
        # the sync connection went through the dead path too: it is replaced
        # on push's word, not after its own read timeout
        self.assertLess(arrive, DETECT_LIMIT, "mail of the dead period after %.0f s" % arrive)
        # push works on the new connection
        late = self.append(1010, "after")
        t1 = time.monotonic()
        mptest.wait_until(lambda: late in {e["json"]["message"]
                                           for e in self.new_events(seq0)},
                          30, message="push after the replacement")
        push_after = time.monotonic() - t1
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")

        # nothing lost, nothing twice
        v = self.server.uidvalidity("INBOX")
        expected = {dovecot.public_id(ACCOUNT, "INBOX", v, u) for u in self.server.uids("INBOX")}
        stored = {m["id"] for m in d.all_messages(ACCOUNT)}
        self.assertEqual(stored, expected)
        events = d.events(after=0, accounts=[ACCOUNT])
        keys = collections.Counter(e["json"]["idempotency_key"] for e in events)
        self.assertEqual([k for k, n in keys.items() if n > 1], [])
        arrivals = collections.Counter(e["json"]["message"] for e in events
                                       if e["type"] in ("message.new", "message.synced"))
        self.assertEqual([m for m, n in arrivals.items() if n > 1], [])
        self.assertEqual(set(arrivals), expected)
        print("\n  dead link replaced after %.1f s; mail from the dead period after %.1f s; "
              "push afterwards %.2f s" % (detect, arrive, push_after))


if __name__ == "__main__":
    dovecot.main()

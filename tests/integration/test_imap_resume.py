"""The IMAP connection killed (doveadm kick + SIGTERM to the server's imap
processes) in the middle of a bootstrap of a large folder and in the middle
of IDLE: the driver resumes with nothing lost and nothing duplicated (the
stored set equals the server's, one event per message, unique idempotency
keys, no history reported as new)."""

import collections
import time
import unittest

import dovecot
import mptest

ACCOUNT = "alice"
BIG = 4000


class Resume(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(name="dovecot-resume")
        cls.big = cls.server.generate("INBOX", BIG, body_size=1500)
        cls.junk = cls.server.generate("Junk", 10)
        cls.server.index("INBOX")
        cls.d = mptest.Daemon(name="imap-resume", driver_dir=dovecot.imap_driver_dir(),
                              settings={"backfill": {"mode": "progressive",
                                                     "bootstrap_max": BIG},
                                        "sync": {"batch_size": 50, "ingest_batch_size": 20},
                                        "schedule": {"reconcile_interval": 3600,
                                                     "bootstrap_interval": 1,
                                                     "max_backoff": 2}})
        acct = dovecot.imap_account(cls.d, cls.server, ACCOUNT, poll_interval=3600,
                                    folders=["INBOX", "Junk"])
        dovecot.add_imap_instance(cls.d, "mail", [acct])

    def check_consistent(self, seq_from=0):
        """Store == server, per folder; every message has exactly one
        new-or-synced event; idempotency keys unique."""
        d, server = self.d, self.server
        expected = set()
        for folder in ("INBOX", "Junk"):
            v = server.uidvalidity(folder)
            expected |= {dovecot.public_id(ACCOUNT, folder, v, u) for u in server.uids(folder)}
        stored = {m["id"] for m in d.all_messages(ACCOUNT, limit=500)}
        self.assertEqual(len(stored - expected), 0, "stored but not on the server")
        self.assertEqual(len(expected - stored), 0, "lost: %d" % len(expected - stored))
        events = d.events(after=seq_from, accounts=[ACCOUNT])
        keys = [e["json"]["idempotency_key"] for e in events]
        dup = [k for k, n in collections.Counter(keys).items() if n > 1]
        self.assertEqual(dup, [], "duplicate idempotency keys")
        arrivals = collections.Counter(e["json"]["message"] for e in events
                                       if e["type"] in ("message.new", "message.synced"))
        self.assertEqual([m for m, n in arrivals.items() if n > 1], [],
                         "a message reported twice")
        return events

    def test_1_kick_during_bootstrap(self):
        d, server = self.d, self.server
        d.start()
        kicked = []

        def mid_bootstrap():
            f = d.folder(ACCOUNT, "INBOX")
            n = f["messages"] if f else 0
            return 0 < n < BIG and n

        # kick as soon as part of the folder is in the store, three times
        for _ in range(3):
            try:
                n = mptest.wait_until(mid_bootstrap, 60, interval=0.02,
                                      message="bootstrap under way")
            except AssertionError:
                break
            kicked.append((n, server.kick("alice")))
            time.sleep(0.3)
        self.assertTrue(kicked, "the bootstrap was never caught in progress")
        self.assertTrue(any(sessions for _, sessions in kicked), kicked)

        mptest.wait_until(lambda: d.folder(ACCOUNT, "INBOX")["messages"] == BIG and
                          d.folder(ACCOUNT, "INBOX")["bootstrapped"], 180, interval=0.5,
                          message="bootstrap to complete after %d kicks" % len(kicked))
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Junk"])
        mptest.wait_until(lambda: d.folder(ACCOUNT, "Junk")["messages"] == 10, 60,
                          message="Junk loaded")
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")
        events = self.check_consistent()
        self.assertEqual([e for e in events if e["type"] == "message.new"], [],
                         "bootstrap history reported as message.new")
        self.assertEqual(len([e for e in events if e["type"] == "message.synced"]), BIG + 10)

    def test_2_kick_during_idle(self):
        d, server = self.d, self.server
        if not d.running():
            d.start()
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Junk"], timeout=120)
        mptest.wait_until(lambda: d.folder(ACCOUNT, "INBOX")["messages"] == BIG, 180,
                          message="INBOX loaded")
        # push streams are up when the driver holds sessions besides sync
        mptest.wait_until(lambda: server.sessions("alice") >= 1, 60,
                          message="driver connected (IDLE)")
        seq0 = d.last_seq()
        # a first message proves push works before the kick
        first = dovecot.make_message(20000, int(time.time()), tag="before-kick")
        uid = server.append("INBOX", first)
        v = server.uidvalidity("INBOX")
        mptest.wait_until(
            lambda: [e for e in d.events(after=seq0, types=["message.new"], accounts=[ACCOUNT])
                     if e["json"]["message"] == dovecot.public_id(ACCOUNT, "INBOX", v, uid)],
            60, message="message.new through IDLE before the kick")

        # kill every connection, and change things while the driver is away
        added = []
        for round_ in range(2):
            server.kick("alice")
            for i in range(3):
                msg = dovecot.make_message(20100 + round_ * 10 + i, int(time.time()),
                                           tag="during-kick")
                folder = "INBOX" if i < 2 else "Junk"
                added.append((folder, server.append(folder, msg)))
            time.sleep(0.5)
        victim = sorted(server.uids("Junk"))[0]
        server.expunge("Junk", [victim])
        jv = server.uidvalidity("Junk")

        # after the reconnect, everything arrives through push + the resync
        # a reconnect must do (no /sync call, no poll: poll_interval is 1 h)
        want = {dovecot.public_id(ACCOUNT, f, server.uidvalidity(f), u) for f, u in added}

        def arrived():
            got = {e["json"]["message"] for e in d.events(after=seq0, types=["message.new"],
                                                          accounts=[ACCOUNT])}
            return want <= got
        mptest.wait_until(arrived, 90, message="mail added while disconnected")
        gone = dovecot.public_id(ACCOUNT, "Junk", jv, victim)
        mptest.wait_until(
            lambda: [e for e in d.events(after=seq0, types=["message.deleted"],
                                         accounts=[ACCOUNT]) if e["json"]["message"] == gone],
            90, message="expunge made while disconnected")
        mptest.wait_until(lambda: server.sessions("alice") >= 1, 60,
                          message="driver reconnected")
        # and push still works afterwards
        seq1 = d.last_seq()
        late = dovecot.make_message(20999, int(time.time()), tag="after-kick")
        uid = server.append("Junk", late)
        mid = dovecot.public_id(ACCOUNT, "Junk", jv, uid)
        mptest.wait_until(
            lambda: [e for e in d.events(after=seq1, types=["message.new"], accounts=[ACCOUNT])
                     if e["json"]["message"] == mid], 60, message="push after reconnect")
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")
        events = self.check_consistent()
        new = [e["json"]["message"] for e in events if e["type"] == "message.new"]
        self.assertEqual(sorted(new), sorted(want | {mid, dovecot.public_id(
            ACCOUNT, "INBOX", v, self._first_uid(first))}))

    def _first_uid(self, msg):
        for uid, entry in self.server.listing("INBOX").items():
            if entry["message_id"] == msg.message_id:
                return uid
        raise AssertionError("message %s not on the server" % msg.message_id)


if __name__ == "__main__":
    dovecot.main()

"""imap.so against a real Dovecot, on two server profiles:

- "full": IDLE, CONDSTORE, QRESYNC, NOTIFY. The account's poll_interval and
  the reconciliation sweep are an hour, and the test never calls /sync:
  new mail, flag changes and expunges in INBOX and in other folders (Junk,
  Archive) can only arrive through push.
- "poll": imap_capability without IDLE, CONDSTORE, QRESYNC, NOTIFY; the
  account polls every 2 s (the poll-only path: UIDNEXT and UID/flag scans).

Both: bootstrap counts and header summaries against the generated mail,
progressive backfill of the rest, history as message.synced only, raw
bodies byte-equal to Dovecot's and fetched without setting \\Seen."""

import calendar
import time
import unittest

import dovecot
import mptest

ACCOUNT = "alice"
GENERATED = {"INBOX": 120, "Sent": 30, "Archive": 60, "Junk": 10}
BOOTSTRAP_MAX = 40


def rfc3339_to_unix(text):
    base = text.split(".")[0].rstrip("Z")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))


def real_flags(flags):
    return set(flags) - {"\\Recent"}


class SyncSuite:
    PROFILE = None
    POLL_INTERVAL = None
    PUSH_ONLY = False

    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(profile=cls.PROFILE, name="dovecot-" + cls.PROFILE)
        cls.generated = {}
        start = 1700000000
        for i, (folder, count) in enumerate(GENERATED.items()):
            cls.generated[folder] = cls.server.generate(folder, count,
                                                        start_date=start + i * 100000)
        schedule = {"backfill_interval": 1, "bootstrap_interval": 1}
        if cls.PUSH_ONLY:
            schedule["reconcile_interval"] = 3600
        cls.d = mptest.Daemon(name="imap-" + cls.PROFILE, driver_dir=dovecot.imap_driver_dir(),
                              settings={"backfill": {"mode": "progressive",
                                                     "bootstrap_max": BOOTSTRAP_MAX,
                                                     "batch_size": 20},
                                        "schedule": schedule})
        acct = dovecot.imap_account(cls.d, cls.server, ACCOUNT,
                                    poll_interval=cls.POLL_INTERVAL)
        dovecot.add_imap_instance(cls.d, "mail", [acct])
        # Index the generated maildirs (UIDVALIDITY assigned) before the
        # daemon's first EXAMINE: two first-time indexers racing on a fresh
        # maildir can leave the test holding a UIDVALIDITY the folder lost.
        cls.uidvalidity = {f: cls.server.uidvalidity(f) for f in GENERATED}
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.server.stop()

    # ---- helpers ----

    def events(self, after=0, types=None):
        return self.d.events(after=after, types=types, accounts=[ACCOUNT])

    def wait_event(self, after, etype, message_id, timeout=60, nudge=False):
        """The first `etype` event about store id `message_id` after seq
        `after`. With nudge (poll profile only) a POST /sync every 10 s."""
        last_nudge = [time.monotonic()]

        def found():
            if nudge and time.monotonic() - last_nudge[0] > 10:
                last_nudge[0] = time.monotonic()
                self.d.sync(ACCOUNT)
            return [e for e in self.events(after=after, types=[etype])
                    if e["json"]["message"] == message_id]
        return mptest.wait_until(found, timeout, interval=0.2,
                                 message="%s for %s" % (etype, message_id))

    def mid(self, folder, uid):
        return dovecot.public_id(ACCOUNT, folder, self.uidvalidity[folder], uid)

    def server_map(self, folder):
        """{Message-ID: uid} on the server."""
        return {v["message_id"]: uid for uid, v in self.server.listing(folder).items()}

    def wait_bootstrap_and_backfill(self, exact=True):
        """Every folder fully loaded: (exact) as many messages stored as the
        server holds now (earlier tests add and expunge)."""
        def complete():
            folders = {f["name"]: f for f in self.d.account(ACCOUNT)["folders"]}
            ok = all(n in folders and folders[n]["bootstrapped"] and
                     (not exact or
                      folders[n]["messages"] == self.server.status(n)["MESSAGES"]) and
                     folders[n]["backfill"]["status"] in ("done", "off")
                     for n in GENERATED)
            return ok and folders
        return mptest.wait_until(complete, 120, message="bootstrap + backfill of every folder")

    # ---- tests ----

    def test_1_bootstrap_summaries_and_backfill(self):
        d = self.d
        acct = d.wait_bootstrapped(ACCOUNT, list(GENERATED), timeout=60)
        by_name = {f["name"]: f for f in acct["folders"]}
        for name, count in GENERATED.items():
            # bootstrap loads the newest BOOTSTRAP_MAX; backfill may have added more
            self.assertGreaterEqual(by_name[name]["messages"], min(count, BOOTSTRAP_MAX),
                                    by_name[name])
            self.assertTrue(by_name[name]["cursor"], by_name[name])
        roles = {n: (by_name[n].get("role") or "") for n in GENERATED}
        for name in ("Sent", "Junk", "Archive"):
            self.assertIn(name.lower(), roles[name].lower(), "SPECIAL-USE role of %s" % name)

        folders = self.wait_bootstrap_and_backfill()
        for name, count in GENERATED.items():
            self.assertEqual(folders[name]["messages"], count, folders[name])

        events = self.events(types=["message.synced", "message.new"])
        self.assertEqual([e for e in events if e["type"] == "message.new"], [],
                         "history must arrive as message.synced")
        keys = [e["json"]["idempotency_key"] for e in events]
        self.assertEqual(len(keys), len(set(keys)), "duplicate idempotency keys")
        synced = {e["json"]["message"]: e["json"] for e in events}
        self.assertEqual(len(synced), len(events), "one synced event per message")

        expected = {}
        for folder, msgs in self.generated.items():
            uids = self.server_map(folder)
            for m in msgs:
                expected[self.mid(folder, uids[m.message_id])] = (folder, uids[m.message_id], m)
        self.assertEqual(set(synced), set(expected))
        for mid, ev in synced.items():
            self.assertEqual(ev["folder"], expected[mid][0], ev)

        listed = {m["id"]: m for m in d.all_messages(ACCOUNT, limit=100)}
        self.assertEqual(set(listed), set(expected))
        checked = 0
        for mid, (folder, uid, m) in sorted(expected.items()):
            msg = d.get("/v1/messages/" + mid) if checked < 40 else listed[mid]
            checked += 1
            self.assertEqual(msg["folder"], folder)
            self.assertEqual(msg["uid"], uid)
            self.assertEqual(msg["subject"], m.subject)
            self.assertEqual((msg["message_id"] or "").strip("<>"), m.message_id)
            self.assertEqual(msg["from"], m.from_)
            self.assertIn(m.to, msg["to"] or "")
            self.assertEqual(msg["size"], m.size)
            self.assertEqual(rfc3339_to_unix(msg["date"]), m.date)
            self.assertEqual(real_flags(msg["flags"]), set(m.flags), msg)

    def test_2_new_mail(self):
        d, server = self.d, self.server
        self.wait_bootstrap_and_backfill()
        seq0 = d.last_seq()
        now = int(time.time())
        added = []
        for i, folder in enumerate(("INBOX", "Junk", "Archive")):
            msg = dovecot.make_message(5000 + i, now - 10 + i, tag="new-" + self.PROFILE,
                                       subject="New in %s" % folder)
            uid = server.append(folder, msg)
            added.append((folder, uid, msg))
        for folder, uid, msg in added:
            mid = self.mid(folder, uid)
            evs = self.wait_event(seq0, "message.new", mid, nudge=not self.PUSH_ONLY)
            self.assertEqual(len(evs), 1, evs)
            self.assertEqual(evs[0]["json"]["folder"], folder)
            stored = d.get("/v1/messages/" + mid)
            self.assertEqual(stored["subject"], msg.subject)
            self.assertEqual(stored["size"], msg.size)
            self.assertEqual(stored["uid"], uid)
            self.assertEqual((stored["message_id"] or "").strip("<>"), msg.message_id)
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync to finish")
        new = self.events(after=seq0, types=["message.new", "message.synced"])
        self.assertEqual(sorted(e["json"]["message"] for e in new),
                         sorted(self.mid(f, u) for f, u, _ in added),
                         "exactly the appended messages are new")
        self.assertTrue(all(e["type"] == "message.new" for e in new), new)

    def test_3_flag_changes(self):
        d, server = self.d, self.server
        self.wait_bootstrap_and_backfill()
        uids = self.server_map("INBOX")
        target = self.generated["INBOX"][-2]   # not \Seen, not \Flagged
        self.assertEqual(target.flags, ())
        uid = uids[target.message_id]
        mid = self.mid("INBOX", uid)
        seq0 = d.last_seq()
        server.store_flags("INBOX", [uid], ["\\Seen", "\\Flagged"])
        self.wait_event(seq0, "message.updated", mid, nudge=not self.PUSH_ONLY, timeout=90)
        mptest.wait_until(lambda: real_flags(d.get("/v1/messages/" + mid)["flags"]) ==
                          {"\\Seen", "\\Flagged"}, 30, message="flags in the store")
        seq1 = d.last_seq()
        server.store_flags("INBOX", [uid], ["\\Flagged"], mode="-")
        self.wait_event(seq1, "message.updated", mid, nudge=not self.PUSH_ONLY, timeout=90)
        mptest.wait_until(lambda: real_flags(d.get("/v1/messages/" + mid)["flags"]) ==
                          {"\\Seen"}, 30, message="flag removal in the store")
        others = [e for e in self.events(after=seq0, types=["message.new", "message.deleted",
                                                            "message.synced"])]
        self.assertEqual(others, [], "a flag change is only message.updated")

    def test_4_expunge(self):
        d, server = self.d, self.server
        self.wait_bootstrap_and_backfill()
        gone = {}
        for folder in ("INBOX", "Sent"):
            uids = self.server_map(folder)
            msg = self.generated[folder][3]
            gone[folder] = uids[msg.message_id]
        seq0 = d.last_seq()
        for folder, uid in gone.items():
            server.expunge(folder, [uid])
        for folder, uid in gone.items():
            mid = self.mid(folder, uid)
            evs = self.wait_event(seq0, "message.deleted", mid, nudge=not self.PUSH_ONLY,
                                  timeout=90)
            self.assertEqual(len(evs), 1)
            self.assertEqual(d.request("GET", "/v1/messages/" + mid)[0], 404)
        mptest.wait_until(
            lambda: {f["name"]: f["messages"] for f in d.account(ACCOUNT)["folders"]}["Sent"]
            == len(server.uids("Sent")), 30, message="Sent count after expunge")

    def test_5_raw_equals_server_and_keeps_unseen(self):
        d, server = self.d, self.server
        self.wait_bootstrap_and_backfill(exact=False)
        uids = self.server_map("Archive")
        unseen = [m for m in self.generated["Archive"] if "\\Seen" not in m.flags][:3]
        self.assertTrue(unseen)
        for m in unseen:
            uid = uids[m.message_id]
            mid = self.mid("Archive", uid)
            status, headers, body = d.request("GET", "/v1/messages/%s/raw" % mid)
            self.assertEqual(status, 200, body[:300])
            self.assertEqual(body, server.raw("Archive", uid))
            self.assertEqual(body, m.raw)
            self.assertNotIn("\\Seen", server.flags("Archive", uid),
                             "fetching a body must not set \\Seen")
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 30,
                          message="sync idle")
        for m in unseen:
            mid = self.mid("Archive", uids[m.message_id])
            self.assertNotIn("\\Seen", d.get("/v1/messages/" + mid)["flags"])

    def test_6_vanished_message_fetch(self):
        """A message expunged on the server after it was stored: raw fetch
        answers an error (not a hang, not a crash) and the account keeps
        working."""
        d, server = self.d, self.server
        self.wait_bootstrap_and_backfill(exact=False)
        uids = self.server_map("Junk")
        msg = self.generated["Junk"][0]
        uid = uids[msg.message_id]
        mid = self.mid("Junk", uid)
        # delete it behind the driver's back, straight from the maildir
        cur = server.folder_dir("alice", "Junk") + "/cur"
        import os
        for name in os.listdir(cur):
            with open(os.path.join(cur, name), "rb") as f:
                if ("<%s>" % msg.message_id).encode() in f.read(2000):
                    os.unlink(os.path.join(cur, name))
        status, _, body = d.request("GET", "/v1/messages/%s/raw" % mid, timeout=60)
        if status == 200:
            # served from a body cache filled before the expunge
            self.assertEqual(body, msg.raw)
        else:
            self.assertIn(status // 100, (4, 5), body)
        seq0 = d.last_seq()
        new = dovecot.make_message(7000, int(time.time()), tag="after-vanish-" + self.PROFILE)
        new_uid = server.append("INBOX", new)
        self.wait_event(seq0, "message.new", self.mid("INBOX", new_uid),
                        nudge=not self.PUSH_ONLY)


class FullProfile(SyncSuite, unittest.TestCase):
    """Push only: nothing but IDLE/NOTIFY can deliver changes in time."""
    PROFILE = "full"
    POLL_INTERVAL = 3600
    PUSH_ONLY = True

    def test_0_profile_advertises_push(self):
        caps = self.server.capabilities()
        for c in ("IDLE", "CONDSTORE", "QRESYNC"):
            self.assertIn(c, caps)


class PollProfile(SyncSuite, unittest.TestCase):
    PROFILE = "poll"
    POLL_INTERVAL = 2

    def test_0_profile_has_no_push(self):
        caps = self.server.capabilities()
        for c in dovecot.PUSH_CAPS:
            self.assertNotIn(c, caps)


if __name__ == "__main__":
    dovecot.main()

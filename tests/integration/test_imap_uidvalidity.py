"""A UIDVALIDITY change on the server (Dovecot's uid list and indexes
rebuilt, every message renumbered in reverse order): the driver re-maps the
stored messages by Message-ID (plus size and date) silently. Exactly one
folder.reset event, no message.new flood, the public ids of re-mapped
messages unchanged (their uid field follows the server), a message that
disappeared meanwhile is message.deleted, one that appeared meanwhile is
message.synced (history, not new), and later mail is message.new again."""

import os
import time
import unittest

import dovecot
import mptest

ACCOUNT = "alice"
COUNT = 40


class UidValidityReset(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(name="dovecot-uidv")
        cls.msgs = cls.server.generate("INBOX", COUNT)
        cls.sent = cls.server.generate("Sent", 5)
        cls.d = mptest.Daemon(name="imap-uidv", driver_dir=dovecot.imap_driver_dir(),
                              settings={"backfill": {"mode": "progressive",
                                                     "bootstrap_max": 1500}})
        acct = dovecot.imap_account(cls.d, cls.server, ACCOUNT, poll_interval=3600,
                                    folders=["INBOX", "Sent"])
        dovecot.add_imap_instance(cls.d, "mail", [acct])
        cls.d.start()

    def test_reset_remaps_silently(self):
        d, server = self.d, self.server
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Sent"], timeout=60)
        mptest.wait_until(lambda: d.folder(ACCOUNT, "INBOX")["messages"] == COUNT, 60,
                          message="INBOX fully loaded")
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")
        old_v = server.uidvalidity("INBOX")
        old_uids = {v["message_id"]: uid for uid, v in server.listing("INBOX").items()}
        before = {m["message_id"].strip("<>"): m for m in d.all_messages(ACCOUNT, "INBOX")}
        self.assertEqual(set(before), set(old_uids))
        for msgid, m in before.items():
            self.assertEqual(m["id"], dovecot.public_id(ACCOUNT, "INBOX", old_v, old_uids[msgid]))
        sent_before = {m["id"] for m in d.all_messages(ACCOUNT, "Sent")}

        seq0 = d.last_seq()
        # while the server is down: one message disappears, one appears
        removed = self.msgs[7]
        appeared = dovecot.make_message(9000, 1700000000 + 50 * 60 + 30, tag="during-reset")
        inbox = server.folder_dir("alice", "INBOX")

        def mutate():
            for name in os.listdir(os.path.join(inbox, "cur")):
                path = os.path.join(inbox, "cur", name)
                with open(path, "rb") as f:
                    if ("<%s>" % removed.message_id).encode() in f.read(2000):
                        os.unlink(path)
            path = os.path.join(inbox, "cur", "1700003030.Mnew.mptest:2,")
            with open(path, "wb") as f:
                f.write(appeared.raw)
            os.utime(path, (appeared.date, appeared.date))
            server._own(path)
        old, new_v = server.reset_uidvalidity("INBOX", before_start=mutate)
        self.assertEqual(old, old_v)
        new_uids = {v["message_id"]: uid for uid, v in server.listing("INBOX").items()}
        self.assertNotIn(removed.message_id, new_uids)
        self.assertIn(appeared.message_id, new_uids)
        moved = sum(1 for k, u in new_uids.items() if old_uids.get(k) not in (None, u))
        self.assertGreater(moved, COUNT // 2, "the reset renumbers the messages")

        d.sync(ACCOUNT)

        def reset_seen():
            return self.d.events(after=seq0, types=["folder.reset"], accounts=[ACCOUNT])
        mptest.wait_until(reset_seen, 90, message="folder.reset")
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync idle")
        time.sleep(1)
        d.sync_and_wait(ACCOUNT)
        events = d.events(after=seq0, accounts=[ACCOUNT])
        by_type = {}
        for e in events:
            by_type.setdefault(e["type"], []).append(e["json"])
        resets = by_type.get("folder.reset", [])
        self.assertEqual(len(resets), 1, resets)
        self.assertEqual(resets[0]["folder"], "INBOX")
        self.assertEqual(by_type.get("message.new", []), [], "no message.new flood")
        deleted = [e["message"] for e in by_type.get("message.deleted", [])]
        self.assertEqual(deleted, [before[removed.message_id]["id"]])
        synced = [e["message"] for e in by_type.get("message.synced", [])]
        self.assertEqual(synced, [dovecot.public_id(ACCOUNT, "INBOX", new_v,
                                                    new_uids[appeared.message_id])])
        # re-keying is silent: no message.updated for the re-mapped messages
        updated = by_type.get("message.updated", [])
        self.assertEqual(updated, [], "re-mapping must not emit message.updated")

        after = {m["message_id"].strip("<>"): m for m in d.all_messages(ACCOUNT, "INBOX")}
        self.assertEqual(set(after), set(new_uids))
        for msgid, m in after.items():
            if msgid == appeared.message_id:
                continue
            self.assertEqual(m["id"], before[msgid]["id"], "public id of %s changed" % msgid)
            stored = d.get("/v1/messages/" + m["id"])
            self.assertEqual(stored["uid"], new_uids[msgid], "uid follows the server")
        # other folders untouched
        self.assertEqual({m["id"] for m in d.all_messages(ACCOUNT, "Sent")}, sent_before)
        f = d.folder(ACCOUNT, "INBOX")
        self.assertEqual(f["messages"], COUNT)
        self.assertGreaterEqual(f["resets"], 1)

        # a raw fetch goes to the new uid
        some = self.msgs[20]
        status, _, body = d.request("GET", "/v1/messages/%s/raw" % before[some.message_id]["id"])
        self.assertEqual(status, 200)
        self.assertEqual(body, some.raw)

        # and new mail after the reset is message.new with the new UIDVALIDITY
        seq1 = d.last_seq()
        late = dovecot.make_message(9001, int(time.time()), tag="after-reset")
        uid = server.append("INBOX", late)
        mid = dovecot.public_id(ACCOUNT, "INBOX", new_v, uid)
        mptest.wait_until(
            lambda: [e for e in d.events(after=seq1, types=["message.new"], accounts=[ACCOUNT])
                     if e["json"]["message"] == mid], 60, message="message.new after reset")


if __name__ == "__main__":
    dovecot.main()

"""A driver with account_delta (fixturelog: a change log over the whole
mailbox, scripted in <mailbox>.alog): bootstrap per folder, then ONE
account_delta per sync, never delta; labels and moves are message.updated
with folders_added/folders_removed and right folder counts (never a delete
plus a new); a deletion leaves every folder; an expired account cursor
resets each folder once without a message.new flood; a push for one
folder still runs account_delta once, and an account-wide hint reaches
it through sync_hint."""

import json
import os
import unittest

import mptest

ACCOUNT = "gm"
INSTANCE = "gmailish"
SECRET = b"account-delta-secret-0b9e"
FOLDERS = ["INBOX", "Work", "Archive"]
BASE = mptest.OpLog.BASE_DATE


class AccountDelta(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="account_delta",
                                  settings={"backfill": {"mode": "full"}})
        secret_file = d.write_secret("hook.secret", SECRET)
        cls.trace = d.path("data", ACCOUNT + ".trace")
        d.add_instance(INSTANCE, [{"id": ACCOUNT, "poll_interval": 3600,
                                   "folders_available": FOLDERS, "trace_file": cls.trace}],
                       driver="fixturelog", webhook_secret_file=secret_file,
                       poll_interval=3600)
        cls.log = d.mailbox(ACCOUNT)
        cls.log.add_many([("INBOX", "m1", BASE + 1, "one", ""),
                          ("INBOX", "m2", BASE + 2, "two", ""),
                          ("Work", "m3", BASE + 3, "three", "")])
        d.start()
        d.wait_bootstrapped(ACCOUNT, FOLDERS)
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="first sync finished")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def alog(self, *lines):
        fd = os.open(self.log.path + ".alog", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(line + "\n" for line in lines).encode())
        finally:
            os.close(fd)

    def calls(self):
        path = self.trace + ".sync"
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.split() for line in f.read().splitlines()]

    def counts(self):
        return {name: self.d.folder(ACCOUNT, name)["messages"] for name in FOLDERS}

    def sync(self):
        seq = self.d.last_seq()
        seen = len(self.calls())
        self.d.sync_and_wait(ACCOUNT)
        return self.d.events(accounts=[ACCOUNT], after=seq), self.calls()[seen:]

    def data(self, ev):
        j = ev["json"]
        return j.get("data") or j

    def test_1_labels_and_moves(self):
        self.assertEqual(self.counts(), {"INBOX": 2, "Work": 1, "Archive": 0})
        self.assertNotIn("delta", [c[0] for c in self.calls()])
        self.alog("label\tm1\t+Work", "move\tm3\tWork\tArchive", "label\tm1\t-INBOX")
        events, calls = self.sync()
        self.assertEqual(calls, [["account_delta", "-", "-"]])
        self.assertEqual([e["type"] for e in events], ["message.updated"] * 3, events)
        changes = [(e["json"]["message"], self.data(e).get("folders_added"),
                    self.data(e).get("folders_removed")) for e in events]
        m1, m3 = mptest.public_id(ACCOUNT, "m1"), mptest.public_id(ACCOUNT, "m3")
        self.assertEqual(changes, [(m1, ["Work"], []), (m3, ["Archive"], ["Work"]),
                                   (m1, [], ["INBOX"])])
        self.assertEqual(self.counts(), {"INBOX": 1, "Work": 1, "Archive": 1})
        # Replayed from nothing new: nothing.
        events, calls = self.sync()
        self.assertEqual(events, [])
        self.assertEqual(calls, [["account_delta", "-", "-"]])

    def test_2_delete_leaves_every_folder(self):
        self.alog("label\tm2\t+Archive", "del\tm2")
        events, _ = self.sync()
        self.assertEqual([e["type"] for e in events], ["message.updated", "message.deleted"])
        self.assertEqual(self.counts(), {"INBOX": 0, "Work": 1, "Archive": 1})

    def test_3_resync_resets_each_folder_once(self):
        self.alog("resync")
        events, calls = self.sync()
        resets = sorted(e["json"]["folder"] for e in events if e["type"] == "folder.reset")
        self.assertEqual(resets, sorted(FOLDERS))
        self.assertEqual([e for e in events if e["type"] != "folder.reset"], [], events)
        self.assertEqual(sorted(c[1] for c in calls if c[0] == "bootstrap"), sorted(FOLDERS))
        self.assertEqual(self.counts(), {"INBOX": 0, "Work": 1, "Archive": 1})
        # The cursor is past the expired point now.
        events, calls = self.sync()
        self.assertEqual(events, [])
        self.assertEqual(calls, [["account_delta", "-", "-"]])

    def push(self, folder, cursor):
        body = json.dumps({"account": ACCOUNT, "folder": folder, "cursor": cursor}).encode()
        headers = {"Content-Type": "application/json",
                   "X-Fixture-Signature": mptest.sign(SECRET, body)}
        status, _, data = self.d.request("POST", "/push/" + INSTANCE, body=body,
                                         headers=headers, auth=False)
        self.assertEqual(status, 202, data)

    def test_4_push_runs_account_delta_once(self):
        d = self.d
        for folder, cursor, seen_hint in (("Work", "w-1", "-"), (None, "hist-5", "hist-5")):
            runs = d.account(ACCOUNT)["sync"]["runs"]
            seen = len(self.calls())
            self.alog("label\tm3\t+INBOX")
            self.alog("label\tm3\t-INBOX")
            self.push(folder, cursor)
            d.wait_sync_runs(ACCOUNT, runs)
            self.assertEqual(self.calls()[seen:], [["account_delta", "-", seen_hint]])


if __name__ == "__main__":
    mptest.main()

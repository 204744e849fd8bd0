"""An IMAP folder deleted on the server leaves mailpulse at the next folder
listing: each of its messages gets exactly one message.deleted (IMAP stores
a message in one folder), the folder disappears from the account, and the
other folders are untouched. The host's rule is shared with Gmail labels
(test_gmail_sync test_7); this checks it against a real Dovecot."""

import unittest

import dovecot
import mptest

ACCOUNT = "fd"


class ImapFolderDeleted(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(name="dovecot-folder-deleted",
                                     folders=("INBOX", "Sent", "Projects"))
        cls.server.generate("INBOX", 5, start_date=1700000000)
        cls.server.generate("Projects", 7, start_date=1700100000, seed=2)
        cls.d = mptest.Daemon(name="imap-folder-deleted", driver_dir=dovecot.imap_driver_dir(),
                              settings={"schedule": {"folder_list_interval": 1,
                                                     "bootstrap_interval": 1}})
        acct = dovecot.imap_account(cls.d, cls.server, ACCOUNT)
        dovecot.add_imap_instance(cls.d, "mail", [acct])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.server.stop()

    def folders(self):
        return {f["name"]: f for f in self.d.account(ACCOUNT)["folders"]}

    def test_deleted_folder_leaves_with_its_messages(self):
        d = self.d
        mptest.wait_until(lambda: self.folders().get("Projects", {}).get("messages") == 7 and
                          self.folders().get("INBOX", {}).get("messages") == 5, 60,
                          message="bootstrap of INBOX and Projects")
        stored = [m["id"] for m in d.all_messages(ACCOUNT, folder="Projects")]
        self.assertEqual(len(stored), 7)
        seq0 = d.last_seq()

        conn = self.server.connect()
        try:
            typ, data = conn.delete("Projects")
            self.assertEqual(typ, "OK", data)
        finally:
            conn.logout()

        def gone():
            d.sync(ACCOUNT)
            return "Projects" not in self.folders()
        mptest.wait_until(gone, 60, interval=1, message="Projects removed from the account")

        events = d.events(after=seq0, accounts=[ACCOUNT])
        deleted = [e["json"]["message"] for e in events if e["type"] == "message.deleted"]
        self.assertEqual(sorted(deleted), sorted(stored), "one message.deleted per message")
        self.assertFalse([e for e in events if e["type"] == "message.new"],
                         "a deleted folder creates no new mail")
        for mid in stored:
            self.assertEqual(d.request("GET", "/v1/messages/" + mid)[0], 404)
        self.assertEqual(self.folders()["INBOX"]["messages"], 5)

        # The next listings find nothing more to do: no event repeats.
        seq1 = d.last_seq()
        d.sync_and_wait(ACCOUNT)
        d.sync_and_wait(ACCOUNT)
        self.assertFalse([e for e in d.events(after=seq1, accounts=[ACCOUNT])
                          if e["type"].startswith("message.")])


if __name__ == "__main__":
    unittest.main()

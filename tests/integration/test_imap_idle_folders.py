"""IDLE push follows folders created after it started.

With `push: idle` every synced folder gets its own IDLE connection (the
budget here is larger than the folder count). A folder created on the
server later is seen by the sync side's LIST; push then lists again and
adds an IDLE stream for it, so mail delivered there arrives through push,
with the account's poll and the reconciliation sweep an hour away."""

import re
import time
import unittest

import dovecot
import mptest

ACCOUNT = "alice"
NEW_FOLDER = "Projects"


class IdleNewFolder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(name="dovecot-idle-folders")
        cls.server.generate("INBOX", 5)
        cls.server.uidvalidity("INBOX")
        cls.d = mptest.Daemon(name="imap-idle-folders", driver_dir=dovecot.imap_driver_dir(),
                              settings={"schedule": {"folder_list_interval": 1,
                                                     "reconcile_interval": 3600}})
        acct = dovecot.imap_account(cls.d, cls.server, ACCOUNT, push="idle",
                                    max_connections=12, poll_interval=3600)
        dovecot.add_imap_instance(cls.d, "mail", [acct])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.server.stop()

    def idle_counts(self):
        """(folders with an IDLE up, folders synced) from push_state."""
        state = self.d.account(ACCOUNT).get("push_state") or ""
        m = re.match(r"idle: (\d+) of (\d+) folders?", state)
        return (int(m.group(1)), int(m.group(2))) if m else None

    def test_new_folder_gets_an_idle_stream(self):
        d = self.d
        d.wait_bootstrapped(ACCOUNT, ["INBOX"], timeout=60)
        up, total = mptest.wait_until(
            lambda: (lambda c: c if c and c[0] == c[1] else None)(self.idle_counts()),
            60, message="an IDLE stream on every folder")

        conn = self.server.connect(ACCOUNT, tls=True)
        try:
            typ, data = conn.create(NEW_FOLDER)
            self.assertEqual(typ, "OK", data)
        finally:
            conn.logout()
        # A sync run lists folders at most once a second here
        # (folder_list_interval): ask until the store knows the folder.
        def listed():
            if d.folder(ACCOUNT, NEW_FOLDER):
                return True
            d.sync(ACCOUNT)
            time.sleep(1.2)
            return False
        mptest.wait_until(listed, 60, message="%s in the store" % NEW_FOLDER)
        mptest.wait_until(lambda: self.idle_counts() == (total + 1, total + 1), 30,
                          message="IDLE on %d folders after the new one" % (total + 1))
        d.wait_bootstrapped(ACCOUNT, [NEW_FOLDER], timeout=60)
        self.assertIn("the synced folders changed", d.log_text())

        # No poll is due for an hour: only the new stream can report this.
        time.sleep(1.0)
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="no sync running")
        inbox_synced = d.folder(ACCOUNT, "INBOX")["last_sync"]
        after = d.last_seq()
        msg = dovecot.make_message(900, int(time.time()), tag="idle-new",
                                   subject="Mail in a folder created later")
        self.server.append(NEW_FOLDER, msg)

        def arrived():
            return [e for e in d.events(after=after, types=["message.new"],
                                        accounts=[ACCOUNT])
                    if e["json"].get("folder") == NEW_FOLDER]
        events = mptest.wait_until(arrived, 30, message="message.new in %s" % NEW_FOLDER)
        self.assertEqual(len(events), 1, events)
        self.assertEqual(events[0]["json"].get("subject"), msg.subject)
        # The push named its folder: the sync it started ran there only.
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="the pushed sync finished")
        self.assertEqual(d.folder(ACCOUNT, "INBOX")["last_sync"], inbox_synced)


if __name__ == "__main__":
    unittest.main()

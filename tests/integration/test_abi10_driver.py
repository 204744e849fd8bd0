"""A driver built against the frozen ABI 1.0 header (fixture10.so, from
tests/drivers/abi10) still loads on the current (1.x) host and syncs: bootstrap,
then a delta with a new, an updated and a deleted message."""

import time
import unittest

import mptest

ACCOUNT = "old"


class Abi10Driver(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = mptest.Daemon(name="abi10")
        cls.d.add_instance("fix10", [{"id": ACCOUNT, "generate": 20,
                                      "poll_interval": 3600}], driver="fixture10")
        cls.log = cls.d.mailbox(ACCOUNT)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_sync(self):
        d = self.d
        acct = d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        total = sum(f["messages"] for f in acct["folders"])
        self.assertEqual(total, 20, acct)
        steps = [
            (lambda: self.log.add("INBOX", "abi10-new", int(time.time()),
                                  subject="after 1.1"), "message.new"),
            (lambda: self.log.flag("abi10-new", "\\Seen \\Flagged"), "message.updated"),
            (lambda: self.log.delete("abi10-new"), "message.deleted"),
        ]
        mid = mptest.public_id(ACCOUNT, "abi10-new")
        for op, kind in steps:
            seq = d.last_seq()
            op()
            d.sync(ACCOUNT)
            got = mptest.wait_until(
                lambda: [e for e in d.events(accounts=[ACCOUNT], after=seq, types=[kind])
                         if e["json"]["message"] == mid], 60,
                message="%s from the 1.0 driver" % kind)
            self.assertEqual(len(got), 1, got)


if __name__ == "__main__":
    unittest.main()

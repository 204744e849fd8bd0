"""Messages over the IMAP account's max_message_size with sync.fetch_bodies
(issue 8, finding 5): the sizes are known before any body is fetched, a
message over the limit is indexed from its ENVELOPE without its body (a
warning names it), the folder keeps syncing (its cursor advances and later
mail arrives), and GET /v1/messages/{id}/raw answers a JSON error naming
the size and the limit. One account has the limit lowered to 1 MiB (a
1.5 MiB message); the other keeps the default 64 MiB and gets an honest
65 MiB message, which before the fix failed every bootstrap with "line or
literal too long"."""

import json
import time
import unittest
import urllib.parse

import dovecot
import mptest

LOW = "low"        # max_message_size 1 MiB, folder INBOX
DEFAULT = "dflt"   # default limit (64 MiB), folder Archive
LIMIT = 1024 * 1024
DEFAULT_LIMIT = 64 * 1024 * 1024


class Oversize(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        s = cls.server = dovecot.Dovecot(name="dovecot-oversize")
        cls.inbox = (s.generate("INBOX", 5, start_date=1700000000, tag="small-a")
                     + s.generate("INBOX", 1, start_date=1700100000, tag="big",
                                  body_size=LIMIT + LIMIT // 2)
                     + s.generate("INBOX", 5, start_date=1700200000, tag="small-b"))
        cls.archive = (s.generate("Archive", 2, start_date=1700000000, tag="arch-a")
                       + s.generate("Archive", 1, start_date=1700100000, tag="huge",
                                    body_size=DEFAULT_LIMIT + 1024 * 1024)
                       + s.generate("Archive", 2, start_date=1700200000, tag="arch-b"))
        s.index("INBOX")
        s.index("Archive")
        cls.d = mptest.Daemon(name="imap-oversize", driver_dir=dovecot.imap_driver_dir(),
                              settings={"sync": {"fetch_bodies": True},
                                        "schedule": {"bootstrap_interval": 1,
                                                     "max_backoff": 2}})
        low = dovecot.imap_account(cls.d, s, LOW, poll_interval=3600, folders=["INBOX"],
                                   max_message_size=LIMIT)
        dflt = dovecot.imap_account(cls.d, s, DEFAULT, poll_interval=3600,
                                    folders=["Archive"])
        # two instances: each account stands or falls on its own
        dovecot.add_imap_instance(cls.d, "low", [low])
        dovecot.add_imap_instance(cls.d, "dflt", [dflt])
        cls.d.start()

    def by_msgid(self, account, folder):
        v = self.server.uidvalidity(folder)
        out = {}
        for uid, entry in self.server.listing(folder).items():
            out[entry["message_id"]] = dovecot.public_id(account, folder, v, uid)
        return out

    def raw(self, mid):
        return self.d.request("GET", "/v1/messages/%s/raw" % urllib.parse.quote(mid, safe=""),
                              timeout=120)

    def check_account(self, account, folder, msgs, big_tag, limit):
        d = self.d
        t0 = time.monotonic()
        mptest.wait_until(lambda: (d.folder(account, folder) or {}).get("bootstrapped"), 120,
                          interval=0.2, message="%s bootstrapped past the big message"
                          % account)
        mptest.wait_until(lambda: d.folder(account, folder)["messages"] == len(msgs), 60,
                          message="%s: every message indexed" % account)
        elapsed = time.monotonic() - t0
        ids = self.by_msgid(account, folder)
        big = [m for m in msgs if m.message_id.startswith(big_tag + "-")][0]
        big_id = ids[big.message_id]
        meta = d.get("/v1/messages/" + urllib.parse.quote(big_id, safe=""))
        self.assertEqual(meta["subject"], big.subject, "summary from the ENVELOPE")
        self.assertFalse(meta["cached"], "the big body was not fetched")
        status, _, body = self.raw(big_id)
        self.assertTrue(400 <= status <= 599, status)
        err = json.loads(body)["error"]
        self.assertIn(str(big.size), err, "the error names the size")
        self.assertIn(str(limit), err, "the error names the limit")
        self.assertIn("max_message_size", err)
        for m in msgs:
            if m is big:
                continue
            mid = ids[m.message_id]
            self.assertTrue(d.get("/v1/messages/" + urllib.parse.quote(mid, safe=""))["cached"],
                            "small bodies come with the metadata")
            status, _, body = self.raw(mid)
            self.assertEqual(status, 200)
            self.assertEqual(body, m.raw)
        self.assertIn('over max_message_size (%d)' % limit, d.log_text())

        # the cursor moved past the big message: later mail arrives
        seq = d.last_seq()
        late = dovecot.make_message(777, int(time.time()), tag="late-" + account)
        self.server.append(folder, late)
        d.sync(account)
        mptest.wait_until(lambda: [e for e in d.events(after=seq, types=["message.new"],
                                                       accounts=[account])], 60,
                          message="%s: mail after the big one" % account)
        status, _, body = self.raw(self.by_msgid(account, folder)[late.message_id])
        self.assertEqual((status, body), (200, late.raw))
        return elapsed

    def test_low_limit(self):
        t = self.check_account(LOW, "INBOX", self.inbox, "big", LIMIT)
        print("\n  1 MiB limit: INBOX bootstrapped in %.1f s" % t)

    def test_default_limit_honest(self):
        t = self.check_account(DEFAULT, "Archive", self.archive, "huge", DEFAULT_LIMIT)
        print("\n  default limit, 65 MiB message: Archive bootstrapped in %.1f s" % t)


if __name__ == "__main__":
    dovecot.main()

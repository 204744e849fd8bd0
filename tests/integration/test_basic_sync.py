"""Bootstrap, progressive backfill, delta (new/updated/deleted), the
message API, paging, the event sequence and mailpulsectl, end to end."""

import calendar
import time
import unittest

import mptest

ACCOUNT = "alice"
TOTAL = 250          # generated over INBOX and Archive: 125 each
PER_FOLDER = 125
BOOTSTRAP_MAX = 100


def expected_raw(account, msg_id, date, subject):
    """The fixture's synthetic message (tests/drivers/fixture/fixture_state.c)."""
    date_text = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(date))
    return ("Message-ID: <%s@fixture.test>\r\n"
            "Date: %s\r\n"
            "From: Fixture <fixture@fixture.test>\r\n"
            "To: %s@fixture.test\r\n"
            "Subject: %s\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "\r\n"
            "Fixture message %s.\r\n" % (msg_id, date_text, account, subject, msg_id)).encode()


def rfc3339_to_unix(text):
    base = text.split(".")[0].rstrip("Z")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))


class BasicSync(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = mptest.Daemon(name="basic", settings={
            "backfill": {"mode": "progressive", "bootstrap_max": BOOTSTRAP_MAX,
                         "batch_size": 10},
            "schedule": {"backfill_interval": 1},
        })
        cls.d.add_instance("fix", [{"id": ACCOUNT, "generate": TOTAL,
                                    "poll_interval": 3600}])
        cls.log = cls.d.mailbox(ACCOUNT)
        cls.d.start()

    def events(self, **kw):
        return self.d.events(accounts=[ACCOUNT], **kw)

    def wait_events(self, predicate, message, timeout=60):
        return mptest.wait_until(lambda: predicate(self.events()), timeout, message=message)

    def test_1_bootstrap_and_backfill(self):
        d = self.d
        acct = d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        for f in acct["folders"]:
            if f["name"] in ("INBOX", "Archive"):
                # bootstrap loaded the newest 100; backfill may already add more
                self.assertGreaterEqual(f["messages"], BOOTSTRAP_MAX, f)
                self.assertLessEqual(f["messages"], PER_FOLDER, f)
                self.assertTrue(f["cursor"], f)

        def backfilled():
            folders = {f["name"]: f for f in d.account(ACCOUNT)["folders"]}
            return all(folders[n]["messages"] == PER_FOLDER and
                       folders[n]["backfill"]["status"] == "done"
                       for n in ("INBOX", "Archive"))
        mptest.wait_until(backfilled, 60, message="progressive backfill to finish")

        state = self.log.state()
        self.assertEqual(len(state), TOTAL)
        events = self.events(types=["message.synced", "message.new"])
        self.assertEqual([e for e in events if e["type"] == "message.new"], [],
                         "history must arrive as message.synced")
        synced = {e["json"]["message"]: e["json"] for e in events}
        self.assertEqual(len(synced), len(events), "one synced event per message")
        expected = {mptest.public_id(ACCOUNT, pid): m for pid, m in state.items()}
        self.assertEqual(set(synced), set(expected))
        for mid, ev in synced.items():
            self.assertEqual(ev["folder"], expected[mid]["folder"])
            self.assertEqual(ev["account"], ACCOUNT)

        listed = d.all_messages(ACCOUNT, limit=50)
        self.assertEqual({m["id"] for m in listed}, set(expected))

    def test_2_delta_new_updated_deleted(self):
        d, log = self.d, self.log
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        seq0 = d.last_seq()
        base = mptest.OpLog.BASE_DATE
        adds = [("INBOX", "new-1", base + 10, "First new", ""),
                ("Archive", "new-2", base + 20, "Second new", "\\Seen"),
                ("INBOX", "new-3", base + 30, "Third new", "")]
        log.add_many(adds)
        lines = log.lines()
        d.sync(ACCOUNT)
        def three_new():
            evs = self.events(after=seq0, types=["message.new"])
            return evs if len(evs) >= 3 else None
        new_events = mptest.wait_until(three_new, 60, message="3 message.new events")
        mptest.wait_until(lambda: not d.account(ACCOUNT)["sync"]["running"], 60,
                          message="sync to finish")
        new_events = self.events(after=seq0, types=["message.new"])
        self.assertEqual(len(new_events), 3, new_events)
        by_msg = {e["json"]["message"]: e for e in new_events}
        for folder, pid, date, subject, flags in adds:
            mid = mptest.public_id(ACCOUNT, pid)
            self.assertIn(mid, by_msg)
            ev = by_msg[mid]["json"]
            self.assertEqual(ev["folder"], folder)
            self.assertEqual(ev["account"], ACCOUNT)
            self.assertEqual(ev["type"], "message.new")
            self.assertEqual(ev["seq"], by_msg[mid]["seq"])

            msg = d.get("/v1/messages/" + mid)
            self.assertEqual(msg["id"], mid)
            self.assertEqual(msg["account"], ACCOUNT)
            self.assertEqual(msg["folder"], folder)
            self.assertEqual(msg["folders"], [folder])
            self.assertEqual(msg["subject"], subject)
            self.assertEqual(msg["message_id"].strip("<>"), pid + "@fixture.test")
            self.assertEqual(msg["from"], "Fixture <fixture@fixture.test>")
            self.assertIn(ACCOUNT + "@fixture.test", msg["to"])
            self.assertEqual(rfc3339_to_unix(msg["date"]), date)
            self.assertEqual(msg["uid"], lines.index(
                "add\t%s\t%s\t%d\t%s\t%s" % (folder, pid, date, flags, subject)) + 1)
            self.assertEqual(msg["flags"], flags.split())
            raw = expected_raw(ACCOUNT, pid, date, subject)
            self.assertEqual(msg["size"], len(raw))
            status, headers, body = d.request("GET", "/v1/messages/%s/raw" % mid)
            self.assertEqual(status, 200)
            self.assertEqual(body, raw)
            self.assertTrue(d.get("/v1/messages/" + mid)["cached"])
        # nothing else became new
        self.assertEqual({e["json"]["message"] for e in new_events},
                         {mptest.public_id(ACCOUNT, a[1]) for a in adds})

        # flag -> message.updated
        seq1 = d.last_seq()
        log.flag("new-1", "\\Seen \\Flagged")
        d.sync(ACCOUNT)
        mid1 = mptest.public_id(ACCOUNT, "new-1")
        upd = mptest.wait_until(
            lambda: [e for e in self.events(after=seq1, types=["message.updated"])
                     if e["json"]["message"] == mid1], 60, message="message.updated")
        self.assertEqual(len(upd), 1)
        self.assertEqual(upd[0]["json"]["folder"], "INBOX")
        self.assertEqual(sorted(d.get("/v1/messages/" + mid1)["flags"]),
                         ["\\Flagged", "\\Seen"])

        # del -> message.deleted and gone from the listing
        seq2 = d.last_seq()
        log.delete("new-3")
        d.sync(ACCOUNT)
        mid3 = mptest.public_id(ACCOUNT, "new-3")
        dels = mptest.wait_until(
            lambda: [e for e in self.events(after=seq2, types=["message.deleted"])
                     if e["json"]["message"] == mid3], 60, message="message.deleted")
        self.assertEqual(len(dels), 1)
        self.assertEqual(dels[0]["json"]["folder"], "INBOX")
        listed = {m["id"] for m in d.all_messages(ACCOUNT, folder="INBOX", limit=100)}
        self.assertNotIn(mid3, listed)
        self.assertIn(mid1, listed)
        # no other message events came with these syncs
        others = [e for e in self.events(after=seq1)
                  if e["type"].startswith("message.") and
                  e["json"]["message"] not in (mid1, mid3)]
        self.assertEqual(others, [])

    def test_3_paging(self):
        d = self.d
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        mptest.wait_until(lambda: d.folder(ACCOUNT, "INBOX")["backfill"]["status"] == "done",
                          60, message="INBOX backfill done")
        full = d.messages(ACCOUNT, folder="INBOX", limit=1000)["messages"]
        paged, before, pages = [], None, 0
        while True:
            page = d.messages(ACCOUNT, folder="INBOX", limit=7, before=before)
            self.assertLessEqual(len(page["messages"]), 7)
            paged.extend(page["messages"])
            pages += 1
            before = page["next_before"]
            if before is None:
                break
            self.assertEqual(before, page["messages"][-1]["id"])
            self.assertLess(pages, 1000)
        self.assertEqual([m["id"] for m in paged], [m["id"] for m in full])
        self.assertEqual(len({m["id"] for m in paged}), len(paged), "no duplicates")
        dates = [rfc3339_to_unix(m["date"]) for m in paged]
        self.assertEqual(dates, sorted(dates, reverse=True), "newest first")
        self.assertTrue(all(m["folder"] == "INBOX" for m in paged))
        # default page size is sync.list_page_size (30)
        self.assertEqual(len(d.messages(ACCOUNT, folder="INBOX")["messages"]), 30)

    def test_4_event_sequence(self):
        d = self.d
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        events = d.events()
        seqs = [e["seq"] for e in events]
        self.assertTrue(seqs, "events exist")
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "ids strictly increasing, no gaps")
        for e in events:
            self.assertEqual(e["json"]["seq"], e["seq"])
            self.assertEqual(e["json"]["type"], e["type"])
            self.assertTrue(e["json"]["idempotency_key"])
        keys = [e["json"]["idempotency_key"] for e in events]
        self.assertEqual(len(set(keys)), len(keys))
        self.assertEqual(d.last_seq(), seqs[-1])

    def test_5_mailpulsectl(self):
        d = self.d
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
        r = d.ctl("accounts")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(ACCOUNT, r.stdout)

        top = d.messages(ACCOUNT, limit=1)["messages"][0]
        r = d.ctl("messages", ACCOUNT, "--limit", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(top["subject"], r.stdout)

        msg = d.get("/v1/messages/" + top["id"])
        pid = msg["message_id"].strip("<>").split("@")[0]
        state = self.log.state()[pid]
        r = d.ctl("show", top["id"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.replace("\r\n", "\n"),
                         expected_raw(ACCOUNT, pid, state["date"], state["subject"])
                         .decode().replace("\r\n", "\n"))

        r = d.ctl("events", "--after", "0", "--types", "message.synced")
        self.assertEqual(r.returncode, 0, r.stderr)
        synced = self.events(types=["message.synced"])
        lines = [l for l in r.stdout.splitlines() if "message.synced" in l]
        self.assertEqual(len(lines), len(synced), r.stdout[-2000:])
        self.assertIn(synced[0]["json"]["message"], r.stdout)

        r = d.ctl("show", "m000000000000000000000000")
        self.assertEqual(r.returncode, 1, "unknown message is an error from the daemon")

        # The fixture driver has no probe slot: the daemon says so (409).
        r = d.ctl("probe", ACCOUNT)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("nothing to probe", r.stderr)
        r = d.ctl("sync", ACCOUNT)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = d.ctl("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("fixture", r.stdout)


if __name__ == "__main__":
    mptest.main()

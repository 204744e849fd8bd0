"""The account list and /metrics at scale, with a few hundred fixture
accounts: GET /v1/accounts pages by id (limit, after, next_after), filters
by status and push state, counts the whole daemon, reads no store per
account; /metrics gives totals by default and the series per account only
with http.metrics_per_account; mailpulsectl accounts pages and summarises."""

import json
import re
import unittest

import mptest

BASE = 260        # acct-000 .. acct-259, enabled
DISABLED = 15     # off-000 .. off-014, enabled: false
LATE = 20         # instance "late": acct-0005, acct-0135, ... (between the base ids)


def metrics(d):
    _, _, data = d.request("GET", "/metrics")
    out = {}
    for line in data.decode().splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\d+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = int(m.group(3))
    return out


def push_class(state):
    return "none" if state is None else state.split(":", 1)[0]


class AccountsAtScale(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="accounts_scale")
        accounts = [{"id": "acct-%03d" % i, "generate": 1, "poll_interval": 3600}
                    for i in range(BASE)]
        accounts += [{"id": "off-%03d" % i, "generate": 1, "enabled": False}
                     for i in range(DISABLED)]
        d.add_instance("fix", accounts)
        d.add_instance("late", cls.late_accounts("5"))
        d.start()
        cls.all = BASE + DISABLED + LATE
        mptest.wait_until(lambda: d.get("/v1/accounts?limit=1")["counts"]["accounts"]
                          == cls.all, 60, message="every account listed")
        # Settled: every enabled account synced once (status ok).
        mptest.wait_until(
            lambda: d.get("/v1/accounts?limit=1")["counts"]["status"].get("ok") ==
            BASE + LATE, 120, message="every enabled account synced")

    @staticmethod
    def late_accounts(digit):
        return [{"id": "acct-%03d%s" % (i * 13, digit), "generate": 1, "poll_interval": 3600}
                for i in range(LATE)]

    def pages(self, limit, **query):
        """Every page at `limit`; returns (items in order, pages)."""
        items, pages, after = [], [], None
        while True:
            q = dict(query, limit=limit)
            if after:
                q["after"] = after
            page = self.d.get("/v1/accounts?" + "&".join("%s=%s" % kv for kv in q.items()))
            self.assertLessEqual(len(page["accounts"]), limit)
            pages.append(page)
            items.extend(page["accounts"])
            after = page["next_after"]
            if after is None:
                return items, pages
            self.assertEqual(after, page["accounts"][-1]["id"])

    def test_1_pages_are_complete_ordered_and_counted(self):
        d = self.d
        first = d.get("/v1/accounts")
        self.assertEqual(first["limit"], 100)
        self.assertEqual(len(first["accounts"]), 100, "an unpaginated client gets page one")
        self.assertEqual(first["next_after"], first["accounts"][-1]["id"])
        self.assertEqual(first["total"], self.all)

        items, pages = self.pages(37)
        ids = [a["id"] for a in items]
        self.assertEqual(len(pages), -(-self.all // 37))
        self.assertEqual(ids, sorted(ids), "ordered by id")
        self.assertEqual(len(set(ids)), self.all, "complete, no duplicates")
        for p in pages:
            self.assertEqual(p["total"], self.all)
        counts = pages[-1]["counts"]
        self.assertEqual(counts["accounts"], self.all)
        tally_status, tally_push = {}, {}
        for a in items:
            tally_status[a["status"]] = tally_status.get(a["status"], 0) + 1
            self.assertEqual(a["push"], push_class(a["push_state"]), a)
            tally_push[a["push"]] = tally_push.get(a["push"], 0) + 1
            for key in ("instance", "driver", "last_error", "push_live", "last_sync",
                        "last_push"):
                self.assertIn(key, a)
        self.assertEqual(counts["status"], tally_status)
        self.assertEqual(counts["push"], tally_push)
        self.assertEqual(tally_status.get("disabled"), DISABLED)
        # What the list shows from memory is what the store recorded.
        for a in items[::29]:
            one = d.account(a["id"])
            self.assertEqual((a["status"], a["push_state"]), (one["status"], one["push_state"]))
            self.assertEqual(a["last_sync"], one["last_sync"], a["id"])
        synced = [a for a in items if a["status"] == "ok"]
        self.assertTrue(all(a["last_sync"] for a in synced), "synced accounts show last_sync")

    def test_2_filters(self):
        d = self.d
        items, pages = self.pages(6, status="disabled")
        self.assertEqual(len(items), DISABLED)
        self.assertEqual(pages[0]["total"], DISABLED)
        self.assertTrue(all(a["status"] == "disabled" for a in items))
        self.assertEqual(pages[0]["counts"]["accounts"], self.all, "counts stay daemon-wide")

        counts = pages[0]["counts"]["push"]
        for cls, n in counts.items():
            items, pages = self.pages(1000, push=cls)
            self.assertEqual(len(items), n, cls)
            self.assertEqual(pages[0]["total"], n)
            self.assertTrue(all(a["push"] == cls for a in items), cls)
        self.assertEqual(counts.get("off"), DISABLED, "disabled accounts: push off")

        both = d.get("/v1/accounts?status=ok&push=off")
        self.assertEqual(both["total"], 0)
        self.assertEqual(both["accounts"], [])
        self.assertIsNone(both["next_after"])
        self.assertEqual(d.get("/v1/accounts?status=nonesuch")["total"], 0)
        for bad in ("limit=0", "limit=1001", "limit=ten"):
            status, _, _ = d.request("GET", "/v1/accounts?" + bad)
            self.assertEqual(status, 400, bad)

    def test_3_no_store_read_per_account(self):
        # The loop thread's store statements: ten lists of every account
        # (with two reads per account that would be 5,900 and more) cost
        # nothing beyond the /metrics reads around them and background noise.
        d = self.d
        before = metrics(d)["mailpulse_store_loop_statements_total"]
        for _ in range(10):
            self.assertEqual(len(d.get("/v1/accounts?limit=1000")["accounts"]), self.all)
        after = metrics(d)["mailpulse_store_loop_statements_total"]
        self.assertGreater(after, before, "the counter counts (the /metrics reads)")
        self.assertLess(after - before, 100, "the list read the store per account")

    def test_4_metrics_aggregated_by_default(self):
        m = metrics(self.d)
        self.assertEqual(m["mailpulse_accounts_total"], self.all)
        self.assertEqual(m['mailpulse_accounts{status="disabled"}'], DISABLED)
        self.assertEqual(m['mailpulse_accounts{status="ok"}'], BASE + LATE)
        self.assertEqual(m['mailpulse_accounts_push{push="off"}'], DISABLED)
        self.assertEqual(sum(v for k, v in m.items() if k.startswith("mailpulse_accounts_push{")),
                         self.all)
        self.assertIn("mailpulse_accounts_push_live", m)
        self.assertFalse([k for k in m if k.startswith("mailpulse_account_")],
                         "no series per account by default")

    def test_5_mailpulsectl_accounts(self):
        d = self.d
        r = d.ctl("accounts", "--limit", "40")
        self.assertEqual(r.returncode, 0, r.stderr)
        for i in (0, 137, BASE - 1):
            self.assertIn("acct-%03d " % i, r.stdout)
        self.assertIn("off-014", r.stdout)
        summary = r.stdout.strip().splitlines()[-1]
        self.assertTrue(summary.startswith("%d accounts (status:" % self.all), summary)
        self.assertIn("disabled %d" % DISABLED, summary)
        self.assertIn("ok %d" % (BASE + LATE), summary)
        self.assertIn("push:", summary)

        r = d.ctl("accounts", "--status", "disabled", "--limit", "4")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("acct-000", r.stdout)
        self.assertEqual(len(re.findall(r"^off-\d{3} ", r.stdout, re.M)), DISABLED, r.stdout)
        self.assertIn("%d matching, %d listed" % (DISABLED, DISABLED), r.stdout)

        r = d.ctl("accounts", "--json", "--limit", "50")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(len(out["accounts"]), self.all)
        self.assertEqual(out["total"], self.all)

        r = d.ctl("accounts", "--limit", "1001")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_6_pages_while_accounts_change(self):
        # Between two pages a reload removes the "late" accounts and adds
        # others whose ids fall between the base ones: the pages still hold
        # every base account once, in order, and no id twice.
        d = self.d
        first = d.get("/v1/accounts?limit=50")
        d.remove_instance("late")
        d.add_instance("later", self.late_accounts("7"))
        d.reload()
        new = {a["id"] for a in self.late_accounts("7")}
        mptest.wait_until(lambda: new <= set(d.accounts()) and
                          len(d.accounts()) == self.all, 60, message="reload applied")
        items = list(first["accounts"])
        after = first["next_after"]
        while after:
            page = d.get("/v1/accounts?limit=50&after=" + after)
            items.extend(page["accounts"])
            after = page["next_after"]
        ids = [a["id"] for a in items]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(ids), len(set(ids)), "no duplicates across pages")
        base = {"acct-%03d" % i for i in range(BASE)} | {"off-%03d" % i for i in range(DISABLED)}
        self.assertTrue(base <= set(ids), sorted(base - set(ids))[:5])
        allowed = base | {a["id"] for a in self.late_accounts("5") + self.late_accounts("7")}
        self.assertTrue(set(ids) <= allowed)
        # Pages after the reload show the new accounts, not the removed ones.
        later = [i for i in ids if i > first["next_after"] and i[-1] in "57" and len(i) == 9]
        self.assertTrue(later and all(i.endswith("7") for i in later), later)


class PerAccountMetrics(unittest.TestCase):
    def test_series_per_account_behind_the_setting(self):
        d = mptest.Daemon(name="accounts_scale_pa",
                          settings={"http": {"metrics_per_account": True}})
        d.add_instance("fix", [{"id": "pa-%d" % i, "generate": 1} for i in range(3)])
        d.start()
        mptest.wait_until(lambda: metrics(d).get('mailpulse_accounts{status="ok"}') == 3, 60,
                          message="three accounts ok")
        m = metrics(d)
        for i in range(3):
            self.assertEqual(m['mailpulse_account_up{account="pa-%d"}' % i], 1)
            self.assertIn('mailpulse_account_push{account="pa-%d"}' % i, m)
        self.assertEqual(m["mailpulse_accounts_total"], 3)


if __name__ == "__main__":
    mptest.main()

"""History policies (backfill.* settings) against the fixture provider: what
each mode loads, in what order, in what steps, within what budget, up to
what cap; on-demand backfill; and a mode change on reload."""

import os
import unittest

import mptest

TOTAL = 170


def account_conf(d, account_id, **extra):
    conf = {"id": account_id, "generate": TOTAL, "folders_available": ["INBOX"],
            "trace_file": d.path("data", account_id + ".trace")}
    conf.update(extra)
    return conf


def inbox(d, account_id):
    return d.folder(account_id, "INBOX")


def trace_calls(d, account_id, slot):
    path = d.path("data", account_id + ".trace")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.split()[:3] == ["end", account_id, slot])


def start(name, backfill, schedule=None, accounts=("hist",), **extra):
    settings = {"backfill": backfill,
                "schedule": dict({"backfill_interval": 1}, **(schedule or {}))}
    d = mptest.Daemon(name=name, settings=settings)
    d.add_instance("hist", [account_conf(d, a, **extra) for a in accounts])
    d.start()
    return d


class Policies(unittest.TestCase):
    def tearDown(self):
        rc = self.d.stop()
        self.d.cleanup()
        self.assertEqual(rc, 0, "clean exit (and no sanitizer report)")

    def wait_loaded(self, account_id, count, timeout=60):
        self.d.wait_bootstrapped(account_id, ["INBOX"])
        return mptest.wait_until(
            lambda: (lambda f: f if f["messages"] == count and
                     f["backfill"]["status"] in ("done", "off") else None)(
                inbox(self.d, account_id)), timeout,
            message="%s loaded %d" % (account_id, count))

    def test_progressive(self):
        self.d = d = start("progressive", {"mode": "progressive", "bootstrap_max": 50,
                                           "batch_size": 20, "max_per_folder": 0})
        d.wait_bootstrapped("hist", ["INBOX"])
        f = self.wait_loaded("hist", TOTAL)
        self.assertEqual(f["backfill"]["status"], "done")
        self.assertEqual(f["backfill"]["loaded"], TOTAL)
        self.assertIsNone(f["backfill"]["target"])
        # One bootstrap of the newest 50, then steps of batch_size 20 for the
        # remaining 120: six steps that load, maybe one more that finds none.
        self.assertEqual(trace_calls(d, "hist", "bootstrap"), 1)
        self.assertIn(trace_calls(d, "hist", "backfill"), (6, 7))
        events = d.events(types=["message.synced", "message.new"])
        self.assertEqual(len(events), TOTAL)
        self.assertTrue(all(e["json"]["type"] == "message.synced" for e in events),
                        "history is never reported as new mail")
        # Newest first: bootstrap then backfill walk backwards in time.
        dates = [d.get("/v1/messages/" + e["json"]["message"])["date"] for e in events]
        self.assertEqual(dates, sorted(dates, reverse=True))

    def test_cap_per_folder(self):
        self.d = d = start("capped", {"mode": "progressive", "bootstrap_max": 50,
                                      "batch_size": 20, "max_per_folder": 100})
        f = self.wait_loaded("hist", 100)
        self.assertEqual(f["backfill"]["target"], 100)
        self.assertEqual(f["backfill"]["status"], "done")

    def test_full_ignores_cap(self):
        self.d = d = start("full", {"mode": "full", "bootstrap_max": 50, "batch_size": 40,
                                    "max_per_folder": 100})
        f = self.wait_loaded("hist", TOTAL)
        self.assertIsNone(f["backfill"]["target"])

    def test_from_now_on_and_on_demand(self):
        self.d = d = start("fromnow", {"mode": "from_now_on", "bootstrap_max": 50})
        d.wait_bootstrapped("hist", ["INBOX"])
        f = inbox(d, "hist")
        self.assertEqual(f["messages"], 0)
        self.assertEqual(f["backfill"]["status"], "off")
        self.assertEqual(trace_calls(d, "hist", "backfill"), 0)

        d.mailbox("hist").add("INBOX", "fresh-1", mptest.OpLog.BASE_DATE + 10**7, "Fresh")
        d.sync("hist")
        mptest.wait_until(lambda: inbox(d, "hist")["messages"] == 1, 30,
                          message="new mail arrives")
        self.assertEqual(len(d.events(types=["message.new"])), 1)

        # History on demand, whatever the mode.
        r = d.ctl("backfill", "hist", "INBOX")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.wait_loaded("hist", TOTAL + 1)
        self.assertEqual(len(d.events(types=["message.new"])), 1)
        self.assertEqual(len(d.events(types=["message.synced"])), TOTAL)

    def test_job_budget(self):
        # Each backfill step sleeps 400 ms at the provider; a 1 s budget
        # stops a run after a few steps; the next run resumes.
        self.d = d = start("budget", {"mode": "progressive", "bootstrap_max": 20,
                                      "batch_size": 10, "job_budget": 1,
                                      "max_per_folder": 0},
                           schedule={"backfill_interval": 2}, batch_delay_ms=400)
        d.wait_bootstrapped("hist", ["INBOX"])
        acct = mptest.wait_until(
            lambda: (lambda a: a if a["backfill"]["runs"] >= 1 and
                     not a["backfill"]["running"] else None)(d.account("hist")),
            60, message="first backfill run over")
        loaded = [f for f in acct["folders"] if f["name"] == "INBOX"][0]["messages"]
        self.assertGreater(loaded, 20, "the run loaded something")
        self.assertLess(loaded, 20 + 60, "the run stopped at its budget")
        f = self.wait_loaded("hist", TOTAL, timeout=120)
        self.assertGreaterEqual(d.account("hist")["backfill"]["runs"], 3)
        self.assertEqual(f["backfill"]["status"], "done")

    def test_mode_change_on_reload(self):
        self.d = d = start("reload", {"mode": "progressive", "bootstrap_max": 20,
                                      "batch_size": 10, "job_budget": 1,
                                      "max_per_folder": 0},
                           schedule={"backfill_interval": 1}, batch_delay_ms=300)
        d.wait_bootstrapped("hist", ["INBOX"])
        mptest.wait_until(lambda: inbox(d, "hist")["messages"] > 20, 60,
                          message="backfill under way")
        # Switch to from_now_on and connect a second account.
        d.settings["backfill"]["mode"] = "from_now_on"
        d.write_conf()
        d.add_instance("later", [account_conf(d, "later")])
        d.reload()
        d.wait_bootstrapped("later", ["INBOX"])
        self.assertEqual(inbox(d, "later")["messages"], 0, "new folders follow the new mode")
        # The first account keeps what it has and loads no more history. A
        # backfill run already under way finishes with the settings it started
        # with (changes apply from the next run); wait for it.
        mptest.wait_until(lambda: inbox(d, "hist")["backfill"]["status"] == "off" and
                          not d.account("hist")["backfill"]["running"], 30,
                          message="backfill off after the change")
        kept = inbox(d, "hist")["messages"]
        runs_before = d.account("hist")["backfill"]["runs"]
        self.assertLess(kept, TOTAL)
        runs = d.account("hist")["sync"]["runs"]
        d.sync("hist")
        mptest.wait_until(lambda: d.account("hist")["sync"]["runs"] > runs, 30)
        self.assertEqual(inbox(d, "hist")["messages"], kept)
        # At most the one run that found nothing to do under the new mode.
        self.assertLessEqual(d.account("hist")["backfill"]["runs"], runs_before + 1)
        self.assertEqual(inbox(d, "hist")["messages"], kept)


if __name__ == "__main__":
    mptest.main()

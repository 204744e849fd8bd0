"""An admin's preflight (ABI 1.2 `check` slot) through the real daemon and
the real mailpulsectl, with the fixture driver's scripted check
(tests/drivers/fixture/fixture_check.c):

- POST /v1/accounts/{id}/check -> 202 {"id"}, GET shows pending/running,
  then done with the results; "none" before the first request;
- a name reported twice keeps one result (the last), an unknown outcome
  becomes fail, control characters in provider text are replaced;
- `mailpulsectl check`: exit 0 (no failure), 1 (a check failed), 2 (the
  check could not run, a driver without check, a timeout), --json;
- --live: the fixture creates a message in its fake mailbox, the next sync
  delivers it;
- a check whose slot returns REAUTH goes to state error: the account's
  status and syncs are untouched;
- the account parked in reauth (syncs stopped) is checked without being
  un-parked;
- a check never runs at the same time as a sync of the account (the
  fixture traces both);
- a POST while one is pending/running answers the same id;
- 404 unknown account, 400 bad body, 409 for a driver without check
  (fixture10, built for ABI 1.0) and for an account that is not active,
  401 without the token, 404 on the public push listener."""

import http.client
import json
import re
import unittest
import urllib.parse

import mptest

FX = "fx"


def q(account):
    return urllib.parse.quote(account, safe="")


class AccountCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = mptest.Daemon(name="acctcheck", workers=3, settings={
            "push": {"listen": "127.0.0.1:0", "tls": False},
        })
        cls.trace = d.path("slow.trace")
        parked = d.mailbox("parked")
        parked.fail("reauth", 1)
        d.add_instance(FX, [
            {"id": "clean", "generate": 3, "poll_interval": 3600,
             "check_results": ["skip push no push configured for this account"]},
            {"id": "failing", "generate": 3, "poll_interval": 3600,
             "check_results": ["warn scopes gmail.modify is missing: add it to the grant",
                               "ok topic projects/p/topics/t exists",
                               "fail topic projects/p/topics/t is gone: create it",
                               "unknown odd provider said something",
                               "ok escape red\u001b[31m text\nnext line"]},
            {"id": "broken", "generate": 3, "poll_interval": 3600,
             "check_status": "reauth",
             "check_results": ["ok first this one was reported before the failure"]},
            {"id": "live", "generate": 2, "poll_interval": 3600},
            {"id": "fresh", "generate": 1, "poll_interval": 3600},
            # account_open refuses it: the account exists but is not active.
            {"id": "unopened", "poll_interval": 3600, "check_status": "bogus"},
            {"id": "sleepy", "generate": 2, "poll_interval": 3600, "check_delay_ms": 4000},
            {"id": "parked", "poll_interval": 3600},
            {"id": "slow", "generate": 400, "poll_interval": 3600, "batch_delay_ms": 150,
             "check_delay_ms": 300, "trace_file": cls.trace},
        ])
        d.add_instance("old", [{"id": "ancient", "generate": 2, "poll_interval": 3600}],
                       driver="fixture10")
        d.start()
        m = mptest.wait_until(
            lambda: re.search(r"push listener on \S+ \(port (\d+)", d.log_text()),
            30, message="push listener port in the log")
        cls.push_port = int(m.group(1))
        for acct in ("clean", "failing", "broken", "live"):
            d.wait_bootstrapped(acct, ["INBOX", "Archive"])

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        cls.d.cleanup()
        if rc != 0:
            raise AssertionError("mailpulsed exited with status %s" % rc)

    # ---- helpers ----

    def start(self, account, body=None, expect=(202,)):
        return self.d.post("/v1/accounts/%s/check" % q(account), body=body, expect=expect)

    def get(self, account):
        return self.d.get("/v1/accounts/%s/check" % q(account))

    def wait_finished(self, account, check_id):
        def finished():
            c = self.get(account)
            return c["id"] == check_id and c["state"] in ("done", "error") and c
        return mptest.wait_until(finished, 60, message="check %d of %s" % (check_id, account))

    def by_name(self, check):
        return {r["name"]: r for r in check["results"]}

    # ---- API ----

    def test_none_before_the_first_request(self):
        c = self.get("fresh")  # no test asks for a check of it
        self.assertEqual(c["state"], "none")
        self.assertIsNone(c["id"])
        self.assertEqual(c["results"], [])
        for key in ("requested_at", "started_at", "finished_at", "error"):
            self.assertIsNone(c[key])
        self.assertFalse(c["live"])

    def test_results_and_replace_by_name(self):
        started = self.start("failing")
        self.assertIsInstance(started["id"], int)
        c = self.wait_finished("failing", started["id"])
        self.assertEqual(c["state"], "done")
        self.assertIsNone(c["error"])
        self.assertFalse(c["live"])
        for key in ("requested_at", "started_at", "finished_at"):
            self.assertRegex(c[key], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        names = [r["name"] for r in c["results"]]
        # "topic" came twice: one result, the last word, in the first place.
        self.assertEqual(names, ["credentials", "scopes", "topic", "odd", "escape"])
        r = self.by_name(c)
        self.assertEqual(r["credentials"]["outcome"], "ok")
        self.assertEqual(r["scopes"]["outcome"], "warn")
        self.assertEqual(r["topic"]["outcome"], "fail")
        self.assertEqual(r["topic"]["detail"], "projects/p/topics/t is gone: create it")
        self.assertEqual(r["odd"]["outcome"], "fail")
        self.assertIn("unknown outcome 9", r["odd"]["detail"])
        self.assertEqual(r["escape"]["detail"], "red?[31m text next line")
        # The account itself is not touched by what the check found.
        self.assertEqual(self.d.account("failing")["status"], "ok")

    def test_error_leaves_the_account_alone(self):
        runs = self.d.account("broken")["sync"]["runs"]
        c = self.wait_finished("broken", self.start("broken")["id"])
        self.assertEqual(c["state"], "error")
        self.assertIn("check_status says reauth", c["error"])
        # What was reported before the slot failed is kept.
        self.assertIn("first", self.by_name(c))
        acct = self.d.account("broken")
        self.assertEqual(acct["status"], "ok")
        self.d.sync_and_wait("broken")
        acct = self.d.account("broken")
        self.assertEqual(acct["status"], "ok")
        self.assertGreater(acct["sync"]["runs"], runs)

    def test_same_id_while_running(self):
        first = self.start("sleepy")
        second = self.start("sleepy", body={"live": True})
        self.assertEqual(second["id"], first["id"])
        self.assertIn(second["state"], ("pending", "running"))
        c = self.get("sleepy")
        self.assertIn(c["state"], ("pending", "running"))
        self.assertFalse(c["live"])  # the one under way, as asked first
        c = self.wait_finished("sleepy", first["id"])
        self.assertEqual(c["state"], "done")
        # Finished: the next request is a new check.
        third = self.start("sleepy")
        self.assertGreater(third["id"], first["id"])
        self.wait_finished("sleepy", third["id"])

    def test_refusals(self):
        self.start("nobody", expect=(404,))
        status, _, data = self.d.request("GET", "/v1/accounts/nobody/check")
        self.assertEqual(status, 404)
        for body in ({"live": "yes"}, {"lvie": True}, "[true]", "{not json"):
            with self.subTest(body=body):
                status, _, data = self.d.request("POST", "/v1/accounts/clean/check",
                                                 body=body)
                self.assertEqual(status, 400, data)
        status, _, data = self.d.request("POST", "/v1/accounts/unopened/check")
        self.assertEqual(status, 409, data)
        self.assertIn("not active", json.loads(data)["error"])
        status, _, data = self.d.request("POST", "/v1/accounts/ancient/check")
        self.assertEqual(status, 409)
        self.assertIn("fixture10", json.loads(data)["error"])
        self.assertIn("no preflight check", json.loads(data)["error"])
        status, _, _ = self.d.request("POST", "/v1/accounts/clean/check", auth=False)
        self.assertEqual(status, 401)
        status, _, _ = self.d.request("GET", "/v1/accounts/clean/check", auth=False)
        self.assertEqual(status, 401)

    def test_not_on_the_push_listener(self):
        before = self.get("clean")["id"]
        for method in ("POST", "GET"):
            conn = http.client.HTTPConnection("127.0.0.1", self.push_port, timeout=10)
            try:
                conn.request(method, "/v1/accounts/clean/check",
                             body=b"" if method == "POST" else None,
                             headers={"Authorization": "Bearer " + self.d.token})
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.assertEqual(resp.status, 404, data)
        self.assertEqual(self.get("clean")["id"], before)

    # ---- parked and concurrent syncs ----

    def test_parked_account_is_checked_and_stays_parked(self):
        d = self.d
        mptest.wait_until(lambda: d.account("parked")["status"] == "reauth", 60,
                          message="parked in reauth")
        before = d.account("parked")["sync"]
        self.assertIsNone(before["next_due"])
        c = self.wait_finished("parked", self.start("parked")["id"])
        self.assertEqual(c["state"], "done")
        self.assertEqual(self.by_name(c)["credentials"]["outcome"], "ok")
        after = d.account("parked")
        self.assertEqual(after["status"], "reauth")
        self.assertEqual(after["sync"]["runs"], before["runs"])
        self.assertIsNone(after["sync"]["next_due"])

    def test_never_alongside_a_sync(self):
        d = self.d
        ids = []
        for _ in range(4):
            # A sync, then at once a check: it must wait for the sync.
            d.sync("slow")
            ids.append(self.start("slow")["id"])
            self.wait_finished("slow", ids[-1])
        mptest.wait_until(lambda: not d.account("slow")["sync"]["running"], 60,
                          message="slow sync idle")
        spans = {}
        open_at = {}
        with open(self.trace) as f:
            for line in f:
                what, acct, slot, ns = line.split()
                if acct != "slow":
                    continue
                if what == "start":
                    open_at[slot] = int(ns)
                else:
                    spans.setdefault(slot, []).append((open_at.pop(slot), int(ns)))
        checks = spans.pop("check", [])
        self.assertEqual(len(checks), 4)
        syncs = [s for slot, lst in spans.items() if slot != "fetch" for s in lst]
        self.assertTrue(syncs)
        for c0, c1 in checks:
            for s0, s1 in syncs:
                self.assertFalse(c0 < s1 and s0 < c1,
                                 "check %r overlaps a sync slot %r" % ((c0, c1), (s0, s1)))

    # ---- mailpulsectl ----

    def test_ctl_exit_codes(self):
        d = self.d
        r = d.ctl("check", "clean")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"OK\s+credentials")
        self.assertRegex(r.stdout, r"SKIP\s+push\s+no push configured")
        self.assertIn("1 ok, 0 warnings, 0 failed, 1 skipped", r.stdout)

        r = d.ctl("check", "failing")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stdout, r"FAIL\s+topic\s+projects/p/topics/t is gone")
        self.assertRegex(r.stdout, r"WARN\s+scopes")
        self.assertNotIn("\x1b", r.stdout)

        r = d.ctl("check", "broken")
        self.assertEqual(r.returncode, 2)
        self.assertIn("could not run", r.stderr)
        self.assertIn("check_status says reauth", r.stderr)

        r = d.ctl("check", "ancient")
        self.assertEqual(r.returncode, 2)
        self.assertIn("fixture10", r.stderr)

        r = d.ctl("check", "nobody")
        self.assertEqual(r.returncode, 2)
        self.assertIn("404", r.stderr)

        r = d.ctl("check", "--json", "clean")
        self.assertEqual(r.returncode, 0, r.stderr)
        body = json.loads(r.stdout)
        self.assertEqual(body["state"], "done")
        self.assertEqual([x["name"] for x in body["results"]], ["credentials", "push"])

        r = d.ctl("check", "clean", "--timeout", "0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--timeout", r.stderr)

    def test_ctl_timeout(self):
        # The check sleeps 4 s inside the slot; the client gives up after 1.
        r = self.d.ctl("check", "sleepy", "--timeout", "1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("has not finished", r.stderr)
        c = self.get("sleepy")
        self.wait_finished("sleepy", c["id"])

    def test_ctl_live(self):
        d = self.d
        r = d.ctl("check", "live", "--live")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"OK\s+live_test\s+(live-\d+) created in INBOX", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        provider_id = m.group(1)
        c = self.get("live")
        self.assertTrue(c["live"])
        d.sync_and_wait("live")
        listed = [x["id"] for x in d.all_messages("live", folder="INBOX")]
        self.assertIn(mptest.public_id("live", provider_id), listed)


if __name__ == "__main__":
    mptest.main()

"""SIGHUP reloads plugins.d: an added account appears and syncs, a removed
one disappears, the daemon keeps its pid and keeps serving."""

import unittest

import mptest


class Reload(unittest.TestCase):
    def test_sighup_adds_and_removes_accounts(self):
        d = mptest.Daemon(name="reload")
        d.add_instance("first", [{"id": "alpha", "generate": 5}])
        d.add_instance("second", [{"id": "beta", "generate": 7}])
        d.start()
        d.wait_bootstrapped("alpha", ["INBOX", "Archive"])
        d.wait_bootstrapped("beta", ["INBOX", "Archive"])
        pid = d.pid
        self.assertEqual(set(d.accounts()), {"alpha", "beta"})
        alpha_before = d.account("alpha")

        d.add_instance("third", [{"id": "gamma", "generate": 9}])
        d.remove_instance("second")
        d.reload()

        mptest.wait_until(lambda: set(d.accounts()) == {"alpha", "gamma"}, 30,
                          message="accounts to become alpha and gamma")
        d.wait_bootstrapped("gamma", ["INBOX", "Archive"])
        mptest.wait_until(lambda: len(d.all_messages("gamma")) == 9, 60,
                          message="gamma's 9 messages")
        status, _, _ = d.request("GET", "/v1/accounts/beta")
        self.assertEqual(status, 404)

        self.assertTrue(d.running())
        self.assertEqual(d.pid, pid)
        instances = {drv["instance"] for drv in d.get("/v1/status")["drivers"]}
        self.assertEqual(instances, {"first", "third"})

        # the untouched account kept its state and still syncs
        alpha = d.account("alpha")
        self.assertEqual(alpha["status"], "ok")
        self.assertEqual(sum(f["messages"] for f in alpha["folders"]),
                         sum(f["messages"] for f in alpha_before["folders"]))
        seq0 = d.last_seq()
        d.mailbox("alpha").add("INBOX", "after-reload", mptest.OpLog.BASE_DATE, "After reload")
        d.sync("alpha")
        events = mptest.wait_until(
            lambda: d.events(after=seq0, types=["message.new"], accounts=["alpha"]), 60,
            message="alpha's new message after reload")
        self.assertEqual([e["json"]["message"] for e in events],
                         [mptest.public_id("alpha", "after-reload")])

        # a gamma message event was emitted as history, beta emits nothing now
        gamma = d.events(accounts=["gamma"], types=["message.synced"])
        self.assertEqual(len(gamma), 9)
        seq1 = d.last_seq()
        d.mailbox("beta").add("INBOX", "beta-late", mptest.OpLog.BASE_DATE, "Nobody reads")
        status, _, _ = d.request("POST", "/v1/accounts/beta/sync")
        self.assertEqual(status, 404)
        self.assertEqual(d.events(after=seq1, accounts=["beta"]), [])

        self.assertEqual(d.stop(), 0)

    def test_sighup_with_an_error_keeps_everything(self):
        d = mptest.Daemon(name="reload-bad")
        d.add_instance("first", [{"id": "alpha", "generate": 5}])
        d.start()
        d.wait_bootstrapped("alpha", ["INBOX", "Archive"])
        # One good change and one broken file: the reload is refused whole.
        d.add_instance("second", [{"id": "beta", "generate": 3}])
        d.write_instance("broken", "driver: fixture\naccounts:\n  - id: gamma\n    bogus_key: 1\n")
        d.reload()
        mptest.wait_until(lambda: "reload refused" in d.log_text(), 30,
                          message="refusal logged")
        self.assertIn("bogus_key", d.log_text())
        self.assertEqual(set(d.accounts()), {"alpha"})
        self.assertEqual(d.account("alpha")["status"], "ok")
        self.assertTrue(d.running())
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    mptest.main()

"""The body cache and its warmer, end to end with the fixture driver: new
mail is warmed and then served as a cache hit; a listing warms the newest
cache.prefetch_count of its page and nothing else; a run fetches at most
cache.prefetch_per_run bodies per account; new mail goes before listings;
bodies expire after cache.retention_days (moved with the debug clock), the
cleanup deletes them from the database, and /raw still works on demand."""

import os
import sqlite3
import time
import unittest
import urllib.parse

import mptest

ACCOUNT = "alice"
DAY_MS = 86400 * 1000


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


def metrics(d):
    status, _, body = d.request("GET", "/metrics")
    assert status == 200, status
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def cached(d, pid):
    return d.get("/v1/messages/" + mptest.public_id(ACCOUNT, pid))["cached"]


def fetch_trace(path):
    """Provider ids the fixture fetched, in order (<trace_file>.fetch)."""
    try:
        with open(path + ".fetch") as f:
            return [line.split()[2] for line in f if line.startswith("fetch ")]
    except FileNotFoundError:
        return []


def body_rows(d):
    """Rows in the store's body table, expired or not: what the disk holds."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "mailpulse.db"),
                         uri=True, timeout=10)
    try:
        return db.execute("SELECT COUNT(*) FROM bodies").fetchone()[0]
    finally:
        db.close()


def new_mail(log, count, prefix, base=None):
    base = base or mptest.OpLog.BASE_DATE
    items = [("INBOX", "%s-%02d" % (prefix, i), base + i, "New %s %d" % (prefix, i), "")
             for i in range(count)]
    log.add_many(items)
    return items


def daemon(name, cache, generate, trace=False, **settings):
    all_settings = {"cache": cache}
    all_settings.update(settings)
    d = mptest.Daemon(name=name, settings=all_settings)
    acct = {"id": ACCOUNT, "generate": generate, "poll_interval": 3600}
    if trace:
        acct["trace_file"] = d.path("data", "trace.log")
    d.add_instance("fix", [acct])
    d.start()
    d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])
    return d


class Cache(unittest.TestCase):
    def test_new_mail_is_warmed_and_read_from_cache(self):
        d = daemon("cache-new", {"prefetch_interval": 1, "prefetch_per_run": 20}, 10,
                   trace=True)
        trace = d.path("data", "trace.log")
        history = sorted(d.mailbox(ACCOUNT).state())
        # History from bootstrap is not new mail: nothing is warmed.
        self.assertFalse(any(cached(d, pid) for pid in history))

        items = new_mail(d.mailbox(ACCOUNT), 3, "new")
        d.sync_and_wait(ACCOUNT)
        for _, pid, _, _, _ in items:
            mptest.wait_until(lambda pid=pid: cached(d, pid), 30,
                              message="%s warmed into the cache" % pid)
        self.assertEqual(sorted(fetch_trace(trace)), sorted(i[1] for i in items))
        m = metrics(d)
        self.assertEqual(m["mailpulse_prefetch_fetched_total"], 3)
        self.assertEqual(m["mailpulse_prefetch_queue"], 0)
        self.assertFalse(any(cached(d, pid) for pid in history))

        # Reading a warmed body is a hit and no provider fetch.
        folder, pid, date, subject, _ = items[1]
        status, hdrs, body = d.request("GET", "/v1/messages/%s/raw"
                                       % mptest.public_id(ACCOUNT, pid))
        self.assertEqual(status, 200)
        self.assertEqual(body, expected_raw(ACCOUNT, pid, date, subject))
        after = metrics(d)
        self.assertEqual(after["mailpulse_body_cache_hits_total"],
                         m["mailpulse_body_cache_hits_total"] + 1)
        self.assertEqual(after["mailpulse_body_cache_misses_total"],
                         m["mailpulse_body_cache_misses_total"])
        self.assertEqual(len(fetch_trace(trace)), 3)

        # A body not warmed is fetched on demand: a miss, then cached.
        status, _, body = d.request("GET", "/v1/messages/%s/raw"
                                    % mptest.public_id(ACCOUNT, history[0]))
        self.assertEqual(status, 200)
        self.assertIn(b"Fixture message %s." % history[0].encode(), body)
        final = metrics(d)
        self.assertEqual(final["mailpulse_body_cache_misses_total"],
                         m["mailpulse_body_cache_misses_total"] + 1)
        self.assertTrue(cached(d, history[0]))
        self.assertAlmostEqual(final["mailpulse_body_cache_hit_ratio"], 0.5, places=3)

        cache = d.get("/v1/status")["cache"]
        self.assertEqual(cache["queue"], 0)
        self.assertEqual(cache["bodies"], 4)
        self.assertEqual(cache["bytes"], final["mailpulse_body_cache_bytes"])
        self.assertGreater(cache["bytes"], 0)
        self.assertAlmostEqual(cache["hit_ratio"], 0.5, places=3)
        self.assertEqual(cache["prefetch"]["fetched"], 3)

        # The debug clock is off unless configured.
        status, _, _ = d.request("POST", "/v1/debug/clock", body={"offset_ms": DAY_MS})
        self.assertEqual(status, 404)
        d.stop()

    def test_listing_warms_newest_of_page(self):
        d = daemon("cache-list", {"prefetch_interval": 1, "prefetch_count": 5}, 40)
        page = d.messages(ACCOUNT, folder="INBOX", limit=12)["messages"]
        self.assertEqual(len(page), 12)
        ids = [m["id"] for m in page]
        self.assertFalse(any(m["cached"] for m in page))

        def warmed():
            return all(d.get("/v1/messages/" + i)["cached"] for i in ids[:5])
        mptest.wait_until(warmed, 30, message="newest 5 of the page warmed")
        mptest.wait_until(lambda: d.get("/v1/status")["cache"]["queue"] == 0, 30,
                          message="warm queue drained")
        self.assertEqual(metrics(d)["mailpulse_prefetch_fetched_total"], 5)
        for i in ids[5:]:
            self.assertFalse(d.get("/v1/messages/" + i)["cached"], i)
        # The other folder was never listed: nothing of it was warmed.
        archive = d.messages(ACCOUNT, folder="Archive", limit=5)["messages"]
        self.assertFalse(any(m["cached"] for m in archive))
        d.stop()

    def test_throttle_per_account_and_run(self):
        # No periodic run during the test: only the run new mail starts.
        d = daemon("cache-throttle", {"prefetch_interval": 3600, "prefetch_per_run": 3},
                   6, trace=True)
        trace = d.path("data", "trace.log")
        items = new_mail(d.mailbox(ACCOUNT), 20, "burst")
        d.sync_and_wait(ACCOUNT)
        mptest.wait_until(lambda: metrics(d)["mailpulse_prefetch_runs_total"] >= 1, 30,
                          message="a warming run after new mail")
        m = metrics(d)
        self.assertEqual(m["mailpulse_prefetch_runs_total"], 1)
        self.assertEqual(m["mailpulse_prefetch_fetched_total"], 3)
        self.assertEqual(m["mailpulse_prefetch_queue"], 17)
        fetched = fetch_trace(trace)
        self.assertEqual(len(fetched), 3)
        new_ids = [i[1] for i in items]
        self.assertTrue(set(fetched) <= set(new_ids), fetched)
        self.assertEqual(sum(1 for pid in new_ids if cached(d, pid)), 3)

        # The next run takes the next three, never more.
        more = new_mail(d.mailbox(ACCOUNT), 1, "more", base=mptest.OpLog.BASE_DATE + 100)
        d.sync_and_wait(ACCOUNT)
        mptest.wait_until(lambda: metrics(d)["mailpulse_prefetch_runs_total"] >= 2, 30,
                          message="a second warming run")
        m = metrics(d)
        self.assertEqual(m["mailpulse_prefetch_fetched_total"], 6)
        self.assertEqual(m["mailpulse_prefetch_queue"], 15)
        self.assertEqual(len(fetch_trace(trace)), 6)
        self.assertEqual(sum(1 for pid in new_ids + [more[0][1]] if cached(d, pid)), 6)
        d.stop()

    def test_new_mail_before_listing(self):
        d = daemon("cache-prio", {"prefetch_interval": 3600, "prefetch_per_run": 4,
                                  "prefetch_count": 3}, 10, trace=True)
        trace = d.path("data", "trace.log")
        listed = d.messages(ACCOUNT, folder="INBOX", limit=10)["messages"]
        self.assertEqual(d.get("/v1/status")["cache"]["queue"], 3)
        items = new_mail(d.mailbox(ACCOUNT), 2, "prio")
        d.sync_and_wait(ACCOUNT)
        mptest.wait_until(lambda: metrics(d)["mailpulse_prefetch_runs_total"] >= 1, 30,
                          message="a warming run after new mail")
        fetched = fetch_trace(trace)
        # Listed first, yet new mail is fetched first; then the listing's
        # newest, newest first, up to the run's limit of 4.
        by_public = {mptest.public_id(ACCOUNT, pid): pid for pid in d.mailbox(ACCOUNT).state()}
        expect_listed = [by_public[m["id"]] for m in listed[:2]]
        self.assertEqual(sorted(fetched[:2]), sorted(i[1] for i in items))
        self.assertEqual(fetched[2:], expect_listed)
        self.assertEqual(metrics(d)["mailpulse_prefetch_queue"], 1)
        d.stop()

    def test_queue_bound(self):
        d = daemon("cache-bound", {"prefetch_interval": 3600, "prefetch_count": 10,
                                   "prefetch_queue_max": 4}, 20)
        page = d.messages(ACCOUNT, folder="INBOX", limit=10)["messages"]
        self.assertEqual(len(page), 10)
        cache = d.get("/v1/status")["cache"]
        self.assertEqual(cache["queue"], 4)
        self.assertEqual(cache["dropped"], 6)
        self.assertEqual(metrics(d)["mailpulse_prefetch_dropped_total"], 6)
        d.stop()

    def test_expiry_cleanup_and_on_demand(self):
        d = daemon("cache-expiry", {"prefetch_interval": 1, "retention_days": 1}, 6,
                   debug={"clock_control": True},
                   schedule={"cache_cleanup_interval": 1})
        items = new_mail(d.mailbox(ACCOUNT), 3, "exp")
        d.sync_and_wait(ACCOUNT)
        for _, pid, _, _, _ in items:
            mptest.wait_until(lambda pid=pid: cached(d, pid), 30,
                              message="%s warmed" % pid)
        self.assertEqual(body_rows(d), 3)
        inbox = d.folder(ACCOUNT, "INBOX")
        self.assertEqual(inbox["bodies"], 3)

        # Within retention nothing is removed.
        d.post("/v1/debug/clock", {"offset_ms": DAY_MS // 2}, expect=(200,))
        misses = metrics(d)["mailpulse_body_cache_misses_total"]
        status, _, _ = d.request("GET", "/v1/messages/%s/raw"
                                 % mptest.public_id(ACCOUNT, items[0][1]))
        self.assertEqual(status, 200)
        self.assertEqual(metrics(d)["mailpulse_body_cache_misses_total"], misses)

        # Past retention the cleanup deletes the rows (database growth is
        # bounded), the folder shows no bodies, and /raw fetches on demand.
        answer = d.post("/v1/debug/clock", {"offset_ms": 2 * DAY_MS}, expect=(200,))
        self.assertEqual(answer["offset_ms"], 2 * DAY_MS)
        mptest.wait_until(lambda: body_rows(d) == 0, 30,
                          message="expired bodies deleted by the cleanup")
        self.assertEqual(d.folder(ACCOUNT, "INBOX")["bodies"], 0)
        self.assertFalse(any(cached(d, i[1]) for i in items))
        misses = metrics(d)["mailpulse_body_cache_misses_total"]
        _, pid, date, subject, _ = items[2]
        status, _, body = d.request("GET", "/v1/messages/%s/raw"
                                    % mptest.public_id(ACCOUNT, pid))
        self.assertEqual(status, 200)
        self.assertEqual(body, expected_raw(ACCOUNT, pid, date, subject))
        self.assertEqual(metrics(d)["mailpulse_body_cache_misses_total"], misses + 1)
        self.assertTrue(cached(d, pid))
        self.assertEqual(body_rows(d), 1)

        status, _, _ = d.request("POST", "/v1/debug/clock", body={"offset": 1})
        self.assertEqual(status, 400)
        d.post("/v1/debug/clock", {"offset_ms": 0}, expect=(200,))
        d.stop()


if __name__ == "__main__":
    mptest.main()

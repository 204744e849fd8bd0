"""OAuth2 as a host service, end to end: the real daemon, the fixture
driver in OAuth mode (it asks the host for an access token at every poll
slot call) and a token endpoint run by this test.

- a token is obtained once and served from the cache for several syncs;
- a rotated refresh token is persisted (driver_state) and used after a
  restart, the file's old one never again;
- neither refresh nor access tokens show up in the log, /v1 answers or the
  outbox;
- invalid_grant parks the account in reauth after ONE token request, with
  one account.status event, and nothing more is asked; a new refresh
  token file plus SIGHUP brings it back to ok;
- 429 with Retry-After: 30 keeps the token URL quiet inside the window,
  however often a sync is triggered.
"""

import hashlib
import http.server
import json
import os
import sqlite3
import threading
import time
import unittest
import urllib.parse

import mptest

CLIENT_ID = "fixture-client"
CLIENT_SECRET = "cs-7f3a9c1e5d2b4a60"


class TokenServer:
    """A provider's token endpoint (POST /token, refresh_token grant).
    Each refresh token in `valid` gets an access token; with `rotate` the
    answer carries a new refresh token and the used one stops working
    (as Microsoft and others do). `behaviour[rt]` overrides the answer:
    "invalid_grant" or "429". Every request is recorded."""

    def __init__(self):
        self.lock = threading.Lock()
        self.valid = set()
        self.rotate = set()
        self.behaviour = {}
        self.requests = []   # parsed forms
        self.issued = []     # every access and refresh token handed out
        self.counter = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                status, headers, body = server.answer(self.path, form)
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d/token" % self.httpd.server_address[1]

    def answer(self, path, form):
        with self.lock:
            self.requests.append(form)
            rt = form.get("refresh_token")
            if path != "/token" or form.get("grant_type") != "refresh_token":
                return 400, {}, {"error": "unsupported_grant_type"}
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return 401, {}, {"error": "invalid_client"}
            what = self.behaviour.get(rt)
            if what == "429":
                return 429, {"Retry-After": "30"}, {"error": "temporarily_unavailable"}
            if what == "invalid_grant" or rt not in self.valid:
                return 400, {}, {"error": "invalid_grant",
                                 "error_description": "Token has been expired or revoked."}
            self.counter += 1
            access = "at-%d-%s" % (self.counter, os.urandom(8).hex())
            body = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
            self.issued.append(access)
            if rt in self.rotate:
                new_rt = "%s.r%d-%s" % (rt.split(".")[0], self.counter, os.urandom(6).hex())
                self.valid.discard(rt)
                self.rotate.discard(rt)
                self.valid.add(new_rt)
                self.rotate.add(new_rt)
                self.issued.append(new_rt)
                body["refresh_token"] = new_rt
            return 200, {}, body

    def used(self):
        """Refresh tokens of the requests so far, in order."""
        with self.lock:
            return [r.get("refresh_token") for r in self.requests]

    def count(self, rt_prefix=None):
        return len([rt for rt in self.used() if rt_prefix is None or
                    (rt or "").startswith(rt_prefix)])

    def last_access(self):
        with self.lock:
            return [t for t in self.issued if t.startswith("at-")][-1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def sha16(token):
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class OAuthHost(unittest.TestCase):
    def setUp(self):
        self.tokens = TokenServer()

    def tearDown(self):
        self.tokens.close()

    def daemon(self, name, accounts):
        """A daemon with one fixture instance in OAuth mode; accounts:
        {id: refresh token} (each gets its own refresh token file)."""
        d = mptest.Daemon(name=name)
        secret = d.write_secret("client_secret", (CLIENT_SECRET + "\n").encode())
        rows = []
        for acct, rt in accounts.items():
            rows.append({"id": acct, "generate": 4, "poll_interval": 1,
                         "refresh_token_file": d.write_secret(acct + ".rt", rt.encode())})
        d.add_instance("oauth", rows, token_url=self.tokens.url, client_id=CLIENT_ID,
                       client_secret_file=secret)
        return d

    def oauth_profile(self, d, acct):
        return (d.account(acct).get("profile") or {}).get("oauth") or {}

    def status_events(self, d, acct):
        return [e["json"] for e in d.events(types=["account.status"], accounts=[acct])]

    def assert_no_secret_exposed(self, d, secrets):
        """No token in the log, in what the API shows, or in the outbox."""
        secrets = [s for s in secrets if s]
        self.assertTrue(secrets)
        views = {"log": d.log_text()}
        paths = ["/v1/status", "/v1/accounts", "/v1/webhooks"]
        for acct in d.accounts():
            q = urllib.parse.quote(acct, safe="")
            paths += ["/v1/accounts/" + q, "/v1/accounts/%s/messages" % q]
        for path in paths:
            views[path] = d.request("GET", path)[2].decode("utf-8", "replace")
        views["/v1/events"] = d.request("GET", "/v1/events?once=1&after=0")[2].decode()
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "mailpulse.db"),
                             uri=True)
        try:
            views["outbox"] = "\n".join(repr(row) for row in
                                        db.execute("SELECT * FROM events"))
        finally:
            db.close()
        for where, text in views.items():
            for s in secrets:
                self.assertNotIn(s, text, "a token appears in %s" % where)

    # ------------------------------------------------------------------

    def test_cached_rotated_persisted(self):
        t = self.tokens
        t.valid.add("rt-rot")
        t.rotate.add("rt-rot")
        d = self.daemon("oauth-rot", {"o-rot": "rt-rot\n"})
        d.start()
        d.wait_bootstrapped("o-rot", ["INBOX", "Archive"])
        for _ in range(3):
            d.sync_and_wait("o-rot")
        # Several syncs, every poll call asked the host for a token: one
        # request, and the driver got the token the endpoint issued.
        self.assertEqual(len(t.used()), 1)
        prof = self.oauth_profile(d, "o-rot")
        self.assertGreater(prof.get("tokens", 0), 3)
        self.assertEqual(prof.get("token_sha256"), sha16(t.last_access()))
        self.assertEqual(d.account("o-rot")["status"], "ok")
        rotated = [x for x in t.issued if x.startswith("rt-rot.")]
        self.assertEqual(len(rotated), 1)

        # The rotated token lives in the store's driver state ...
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "mailpulse.db"),
                             uri=True)
        try:
            rows = db.execute("SELECT value FROM driver_state WHERE account = ? AND key = ?",
                              ("o-rot", "oauth.refresh_token")).fetchall()
        finally:
            db.close()
        self.assertEqual(len(rows), 1)
        self.assertTrue(rows[0][0].endswith(" " + rotated[0]))

        # ... and is the one used after a restart; the file's is not.
        d.restart()
        mptest.wait_until(lambda: len(t.used()) == 2, 30, message="a token request after restart")
        self.assertEqual(t.used(), ["rt-rot", rotated[0]])
        mptest.wait_until(lambda: self.oauth_profile(d, "o-rot").get("token_sha256") ==
                          sha16(t.last_access()), 30, message="the new token in use")
        d.sync_and_wait("o-rot")
        self.assertEqual(len(t.used()), 2)
        self.assertEqual(d.account("o-rot")["status"], "ok")
        self.assert_no_secret_exposed(d, t.issued + ["rt-rot", CLIENT_SECRET])
        self.assertEqual(d.stop(), 0)

    def test_invalid_grant_reauth_then_sighup(self):
        t = self.tokens
        d = self.daemon("oauth-reauth", {"o-reauth": "rt-revoked\n"})
        d.start()
        a = mptest.wait_until(lambda: d.account("o-reauth")["status"] == "reauth" and
                              d.account("o-reauth"), 30, message="status reauth")
        self.assertIn("needs re-authorization", a["last_error"])
        self.assertIn("invalid_grant", a["last_error"])
        self.assertIn("expired or revoked", a["last_error"])
        self.assertEqual(t.used(), ["rt-revoked"])
        reauth = [e for e in self.status_events(d, "o-reauth") if e.get("status") == "reauth"]
        self.assertEqual(len(reauth), 1)

        # Several poll intervals (1 s) go by: parked, nothing asked.
        time.sleep(3.5)
        self.assertEqual(t.used(), ["rt-revoked"])
        # An admin's sync runs, but the token service keeps its answer
        # until the credentials change: still no request, no new event.
        d.sync_and_wait("o-reauth")
        self.assertEqual(t.used(), ["rt-revoked"])
        self.assertEqual(d.account("o-reauth")["status"], "reauth")
        self.assertEqual(len([e for e in self.status_events(d, "o-reauth")
                              if e.get("status") == "reauth"]), 1)

        # A fresh authorization: a new file, then SIGHUP.
        t.valid.add("rt-fresh")
        seq = d.last_seq()
        d.write_secret("o-reauth.rt", b"rt-fresh\n")
        d.reload()
        mptest.wait_until(lambda: d.account("o-reauth")["status"] == "ok", 30,
                          message="status ok after SIGHUP")
        self.assertEqual(t.used(), ["rt-revoked", "rt-fresh"])
        after = [e["json"] for e in d.events(after=seq, types=["account.status"],
                                             accounts=["o-reauth"])]
        self.assertIn("ok", [e.get("status") for e in after])
        self.assertEqual(self.oauth_profile(d, "o-reauth").get("token_sha256"),
                         sha16(t.last_access()))
        self.assert_no_secret_exposed(d, t.issued + ["rt-revoked", "rt-fresh", CLIENT_SECRET])
        self.assertEqual(d.stop(), 0)

    def test_retry_after_window(self):
        t = self.tokens
        t.behaviour["rt-busy"] = "429"
        d = self.daemon("oauth-429", {"o-busy": "rt-busy\n"})
        d.start()
        a = mptest.wait_until(lambda: d.account("o-busy")["status"] == "error" and
                              d.account("o-busy"), 30, message="status error")
        self.assertIn("429", a["last_error"])
        self.assertEqual(t.used(), ["rt-busy"])
        # Inside the 30 s window syncs run but the token URL hears nothing.
        for _ in range(3):
            d.sync_and_wait("o-busy")
        time.sleep(1.5)
        self.assertEqual(t.used(), ["rt-busy"])
        self.assertEqual(d.account("o-busy")["status"], "error")
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    mptest.main()

"""The public push listener (settings group `push`): TLS with a test CA,
only POST /push/* and GET /healthz served (every /v1 path and /metrics
answer 404, with or without the token), the driver's verifier behind it,
its own body limit, the per-client rate limit (429 + Retry-After), the
certificate re-read on SIGHUP (and a broken one refused), a plaintext
client on the TLS port, and the configuration refusals.

Each test talks from its own source address in 127.0.0.0/8 so the
per-client rate limit of one test does not spill into another."""

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import dovecot
import mptest

INSTANCE = "pushy"
ACCOUNT = "pushed"
SECRET = b"push-listener-secret-77a1"
MAX_BODY = 4096
RATE = 8


def der_of(pem_path):
    with open(pem_path) as f:
        text = f.read()
    first = text[:text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


def install(src_cert, src_key, cert, key):
    """Replace the listener's files the way an ACME client does: new files
    renamed over the old ones; the key stays owner-only."""
    shutil.copyfile(src_cert, cert + ".new")
    shutil.copyfile(src_key, key + ".new")
    os.chmod(key + ".new", 0o600)
    os.rename(cert + ".new", cert)
    os.rename(key + ".new", key)


class PushListener(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="pushcerts-")
        cls.ca = dovecot.TestCA(os.path.join(cls.certs, "ca"))
        c1, k1 = cls.ca.issue("localhost", cls.certs)
        cls.first_der = der_of(c1)
        cls.cert = os.path.join(cls.certs, "push.pem")
        cls.key = os.path.join(cls.certs, "push.key")
        install(c1, k1, cls.cert, cls.key)
        cls.d = d = mptest.Daemon(name="pushlistener", settings={
            "push": {"listen": "127.0.0.1:0", "tls_cert_file": cls.cert,
                     "tls_key_file": cls.key, "max_body": MAX_BODY, "rate": RATE,
                     "rate_total": 10000},
        })
        secret_file = d.write_secret("push.secret", SECRET)
        d.add_instance(INSTANCE, [{"id": ACCOUNT, "generate": 2, "poll_interval": 3600}],
                       webhook_secret_file=secret_file)
        d.start()
        m = mptest.wait_until(
            lambda: re.search(r"push listener on \S+ \(port (\d+), TLS\)", d.log_text()),
            30, message="push listener port in the log")
        cls.port = int(m.group(1))
        d.wait_bootstrapped(ACCOUNT, ["INBOX", "Archive"])

    @classmethod
    def tearDownClass(cls):
        # A clean stop, so a sanitizer build checks the TLS contexts and
        # connections for leaks on the way out.
        rc = cls.d.stop()
        cls.d.cleanup()
        cls.ca.cleanup()
        shutil.rmtree(cls.certs, ignore_errors=True)
        if rc != 0:
            raise AssertionError("mailpulsed exited with status %s" % rc)

    # ---- clients ----

    def tls_context(self):
        ctx = ssl.create_default_context(cafile=self.ca.pem)
        ctx.check_hostname = False  # the chain is verified; the name is not under test
        return ctx

    def push_request(self, src, method, path, body=None, headers=None):
        """One request over TLS from source address src: (status, headers, body)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                           context=self.tls_context(),
                                           source_address=(src, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def peer_der(self, src):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                      source_address=(src, 0)) as raw:
            with self.tls_context().wrap_socket(raw, server_hostname="localhost") as s:
                return s.getpeercert(binary_form=True)

    def signed(self, body):
        return {"Content-Type": "application/json",
                "X-Fixture-Signature": mptest.sign(SECRET, body)}

    # ---- tests ----

    def test_healthz_over_tls(self):
        status, _, data = self.push_request("127.0.1.1", "GET", "/healthz")
        self.assertEqual(status, 200)
        # Nothing about the daemon for the internet: no version, no uptime.
        self.assertEqual(json.loads(data), {"status": "ok"})
        self.assertEqual(self.peer_der("127.0.1.1"), self.first_der)

    def test_api_is_not_there(self):
        src = "127.0.1.2"
        token = {"Authorization": "Bearer " + self.d.token}
        cases = [("GET", "/v1/status", {}), ("GET", "/v1/status", token),
                 ("POST", "/v1/status", token), ("GET", "/v1/accounts", token),
                 ("POST", "/v1/accounts/%s/sync" % ACCOUNT, token), ("GET", "/metrics", token),
                 ("GET", "/metrics", {})]
        for method, path, headers in cases:
            with self.subTest(method=method, path=path, token=bool(headers)):
                status, _, data = self.push_request(src, method, path, body=b"" if
                                                    method == "POST" else None,
                                                    headers=headers)
                self.assertEqual(status, 404, data)
                self.assertNotIn(b"accounts", data)
                time.sleep(1.0 / RATE)
        # The same token on the API listener works: the 404s are the listener's.
        self.assertEqual(self.d.request("GET", "/v1/status")[0], 200)

    def test_push_reaches_the_verifier(self):
        src = "127.0.1.3"
        d = self.d
        log = d.mailbox(ACCOUNT)
        log.add("INBOX", "via-push-1", mptest.OpLog.BASE_DATE + 50_000, "Pushed in")
        wanted = mptest.public_id(ACCOUNT, "via-push-1")
        runs = d.account(ACCOUNT)["sync"]["runs"]
        body = json.dumps({"account": ACCOUNT, "folder": "INBOX"}).encode()

        # Forged: a wrong signature is refused by the driver and changes nothing.
        forged = dict(self.signed(body), **{"X-Fixture-Signature": "0" * 64})
        status, _, _ = self.push_request(src, "POST", "/push/" + INSTANCE, body, forged)
        self.assertEqual(status, 401)
        status, _, _ = self.push_request(src, "POST", "/push/" + INSTANCE, body,
                                         {"Content-Type": "application/json"})
        self.assertEqual(status, 401)
        time.sleep(2)
        self.assertEqual(d.account(ACCOUNT)["sync"]["runs"], runs)
        self.assertFalse(any(e["json"]["message"] == wanted
                             for e in d.events(types=["message.new"])))

        # Signed: accepted, and the notification makes the account sync.
        status, _, data = self.push_request(src, "POST", "/push/" + INSTANCE, body,
                                            self.signed(body))
        self.assertEqual(status, 202, data)
        mptest.wait_until(lambda: any(e["json"]["message"] == wanted
                                      for e in d.events(types=["message.new"])), 30,
                          message="the pushed message synced")
        # An unknown instance is the host's 404, not the API's.
        status, _, _ = self.push_request(src, "POST", "/push/nobody", body, self.signed(body))
        self.assertEqual(status, 404)

    def test_body_limit(self):
        src = "127.0.1.4"
        body = json.dumps({"account": ACCOUNT, "pad": "x" * (2 * MAX_BODY)}).encode()
        status, _, _ = self.push_request(src, "POST", "/push/" + INSTANCE, body,
                                         self.signed(body))
        self.assertEqual(status, 413)
        # Just under the limit is read and handed to the verifier (401: unsigned).
        small = b"{" + b" " * (MAX_BODY - 200) + b"}"
        status, _, _ = self.push_request(src, "POST", "/push/" + INSTANCE, small,
                                         {"Content-Type": "application/json"})
        self.assertEqual(status, 401)

    def test_rate_limit(self):
        src = "127.0.1.5"
        statuses, retry = [], None
        # One kept-alive connection: requests come much faster than the
        # bucket refills, even on a slow (sanitizer) build.
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                           context=self.tls_context(),
                                           source_address=(src, 0))
        try:
            for _ in range(3 * RATE):
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
                if resp.status == 429 and retry is None:
                    retry = resp.getheader("Retry-After")
        finally:
            conn.close()
        self.assertEqual(statuses[:RATE], [200] * RATE)  # the burst
        self.assertIn(429, statuses)
        self.assertIsNotNone(retry)
        self.assertGreaterEqual(int(retry), 1)
        # Another client is not affected, and the bucket refills.
        self.assertEqual(self.push_request("127.0.1.6", "GET", "/healthz")[0], 200)
        time.sleep(int(retry) + 0.2)
        self.assertEqual(self.push_request(src, "GET", "/healthz")[0], 200)
        _, _, text = self.d.request("GET", "/metrics")
        m = re.search(rb"^mailpulse_push_rate_limited_total (\d+)$", text, re.M)
        self.assertIsNotNone(m)
        self.assertEqual(int(m.group(1)), statuses.count(429))

    def test_plaintext_client_on_tls_port(self):
        src = "127.0.1.7"
        with socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                      source_address=(src, 0)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            got = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        self.assertNotIn(b"HTTP/1.1", got)
        self.assertNotIn(b"status", got)
        # The daemon keeps serving on both listeners.
        self.assertEqual(self.push_request(src, "GET", "/healthz")[0], 200)
        self.assertEqual(self.d.request("GET", "/healthz", auth=False)[0], 200)

    def test_z_certificate_reload(self):
        src = "127.0.1.8"
        d = self.d
        self.assertEqual(self.peer_der(src), self.first_der)
        c2, k2 = self.ca.issue("localhost", os.path.join(self.certs, "ca"))
        second = der_of(c2)
        self.assertNotEqual(second, self.first_der)
        install(c2, k2, self.cert, self.key)
        d.reload()
        mptest.wait_until(lambda: "certificate re-read" in d.log_text(), 30,
                          message="certificate re-read")
        self.assertEqual(self.peer_der(src), second)

        # A broken certificate: the reload is refused with file:line, and
        # new clients keep getting the current certificate.
        with open(self.cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n"
                    "-----END CERTIFICATE-----\n")
        d.reload()
        mptest.wait_until(lambda: re.search(r"mailpulsed\.conf:\d+: push\.tls_cert_file",
                                            d.log_text()), 30,
                          message="reload refused naming the setting")
        self.assertIn("reload refused", d.log_text())
        self.assertEqual(self.peer_der(src), second)
        # A key readable by others is refused too.
        install(c2, k2, self.cert, self.key)
        os.chmod(self.key, 0o644)
        refusals = d.log_text().count("reload refused")
        d.reload()
        mptest.wait_until(lambda: d.log_text().count("reload refused") > refusals, 30,
                          message="group-readable key refused")
        self.assertEqual(self.peer_der(src), second)
        os.chmod(self.key, 0o600)


class PushConfig(unittest.TestCase):
    """Refusals at configuration time, each naming file:line."""

    def check(self, push):
        d = mptest.Daemon(name="pushconf", settings={"push": push})
        try:
            r = subprocess.run([d.binary, "-c", d.conf_path, "--check-config"],
                               capture_output=True, text=True, timeout=60)
            return r.returncode, r.stdout + r.stderr
        finally:
            d.cleanup()

    def test_refusals(self):
        cases = [
            ({"listen": "0.0.0.0:8443", "tls": False}, r"mailpulsed\.conf:\d+: .*loopback"),
            ({"listen": "127.0.0.1:8443"}, r"mailpulsed\.conf:\d+: .*tls_cert_file.* required"),
            ({"listen": "nonsense", "tls": False}, r"mailpulsed\.conf:\d+: .*push\.listen"),
            ({"listen": "127.0.0.1:8443", "tls": False, "rate": 0},
             r"mailpulsed\.conf:\d+: .*push\.rate"),
            ({"tls": False}, r"mailpulsed\.conf:\d+: .*listen"),
        ]
        for push, pattern in cases:
            with self.subTest(push=push):
                rc, out = self.check(push)
                self.assertEqual(rc, 1, out)
                self.assertRegex(out, pattern)

    def test_accepted(self):
        for push in ({"listen": "127.0.0.1:8443", "tls": False},
                     {"listen": "[::1]:8443", "tls": False},
                     {"listen": "0.0.0.0:8443", "tls": False, "plaintext_public": True}):
            with self.subTest(push=push):
                rc, out = self.check(push)
                self.assertEqual(rc, 0, out)

    def test_key_must_be_owner_only(self):
        certs = tempfile.mkdtemp(prefix="pushcerts-")
        ca = dovecot.TestCA(os.path.join(certs, "ca"))
        try:
            cert, key = ca.issue("localhost", certs)  # key left 0644
            rc, out = self.check({"listen": "127.0.0.1:8443", "tls_cert_file": cert,
                                  "tls_key_file": key})
            self.assertEqual(rc, 1, out)
            self.assertRegex(out, r"mailpulsed\.conf:\d+: push\.tls_key_file")
            os.chmod(key, 0o600)
            rc, out = self.check({"listen": "127.0.0.1:8443", "tls_cert_file": cert,
                                  "tls_key_file": key})
            self.assertEqual(rc, 0, out)
        finally:
            ca.cleanup()
            shutil.rmtree(certs, ignore_errors=True)


if __name__ == "__main__":
    mptest.main()

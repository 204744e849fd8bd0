"""The fake Gmail / Pub/Sub / OAuth service speaks the documented formats.

No daemon: every endpoint of tests/integration/fake_gmail.py is called with
urllib, the way the gmail.so driver will call Google, and the answers are
checked against the shapes in ../shared/reference/providers.md §2. The JWTs
are checked by a verifier written here from the documented rules (P§2.2),
independent of the fake's own signing code.
"""

import base64
import email
import email.policy
import http.server
import json
import os
import shutil
import sys
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_gmail  # noqa: E402
from fake_gmail import FakeGmail  # noqa: E402

from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

USER = "alice@example.com"
CLIENT, SECRET = "cid.apps.googleusercontent.com", "s3cret"
SA = "sync@proj.iam.gserviceaccount.com"
SCOPES = (fake_gmail.SCOPE_READONLY, fake_gmail.SCOPE_INSERT, fake_gmail.SCOPE_PUBSUB)
TOPIC = "projects/proj/topics/gmail"
PULL_SUB = "projects/proj/subscriptions/gmail-pull"


def raw_message(n, subject=None, sender="bob@example.org"):
    return ("From: Bob <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <m%d@example.org>\r\n"
            "Date: Mon, 07 Dec 2026 01:00:00 +0000\r\n\r\nBody number %d.\r\n"
            % (sender, USER, subject or "msg %d" % n, n, n)).encode()


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def call(url, method="GET", body=None, headers=None, token=None, form=None):
    """(status, headers, parsed JSON or bytes)."""
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = "Bearer " + token
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, hdrs, data = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, hdrs, data = exc.code, exc.headers, exc.read()
    if hdrs.get("Content-Type", "").startswith("application/json"):
        data = json.loads(data)
    return status, hdrs, data


def wait_for(predicate, timeout=30.0):
    """Poll until predicate() is true (no timing is asserted: the bound
    only keeps a broken fake from hanging the suite)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in %.0f s" % timeout)
        time.sleep(0.02)


def verify_push_jwt(token, jwks, audience, service_account):
    """What the driver must do (P§2.2); raises ValueError on refusal."""
    head_b64, claims_b64, sig_b64 = token.split(".")
    header = json.loads(b64d(head_b64))
    claims = json.loads(b64d(claims_b64))
    if header.get("alg") != "RS256":
        raise ValueError("alg")
    keys = {k["kid"]: k for k in jwks["keys"]}
    if header.get("kid") not in keys:
        raise ValueError("kid")
    jwk = keys[header["kid"]]
    pub = rsa.RSAPublicNumbers(int.from_bytes(b64d(jwk["e"]), "big"),
                               int.from_bytes(b64d(jwk["n"]), "big")).public_key()
    try:
        pub.verify(b64d(sig_b64), (head_b64 + "." + claims_b64).encode(),
                   padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ValueError("signature") from None
    now = time.time()
    if claims["iss"] not in ("https://accounts.google.com", "accounts.google.com"):
        raise ValueError("iss")
    if claims["aud"] != audience:
        raise ValueError("aud")
    if not claims["iat"] - 60 <= now <= claims["exp"] + 60:
        raise ValueError("time")
    if claims["email"] != service_account or claims["email_verified"] is not True:
        raise ValueError("email")
    return claims


class Receiver:
    """A push endpoint that records each POST and answers 204."""

    def __init__(self):
        self.requests = []
        self.event = threading.Event()
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append((dict(self.headers.items()), body))
                owner.event.set()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/push/gmail" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


SIGNING_KEY = fake_gmail.RsaKey()   # one key generation for the whole file


class FakeGmailTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeGmail(pull_max_wait=0.5, signing_key=SIGNING_KEY).start()
        self.fake.add_client(CLIENT, SECRET)
        self.fake.add_user(USER)
        self.refresh = self.fake.add_refresh_token(CLIENT, USER, SCOPES)
        self.token = self.fake.issue_access_token(USER, SCOPES)
        self.api = self.fake.url + "/gmail/v1/users/me"

    def tearDown(self):
        self.fake.stop()

    def get(self, path, method="GET", **kw):
        return call(self.api + path, method, token=kw.pop("token", self.token), **kw)

    def assert_google_error(self, status, data, code, reason):
        self.assertEqual(status, code)
        self.assertEqual(data["error"]["code"], code)
        self.assertEqual(data["error"]["errors"][0]["reason"], reason)
        self.assertIsInstance(data["error"]["message"], str)
        self.assertIn(data["error"]["status"], fake_gmail.STATUS_NAMES.values())

    # ---- OAuth
    def test_refresh_grant_and_errors(self):
        form = {"grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET,
                "refresh_token": self.refresh}
        status, _, data = call(self.fake.token_url, "POST", form=form)
        self.assertEqual(status, 200)
        self.assertEqual(data["token_type"], "Bearer")
        self.assertIsInstance(data["expires_in"], int)
        self.assertNotIn("refresh_token", data)
        status, _, prof = self.get("/profile", token=data["access_token"])
        self.assertEqual((status, prof["emailAddress"]), (200, USER))

        basic = base64.b64encode(("%s:%s" % (CLIENT, SECRET)).encode()).decode()
        status, _, data = call(self.fake.token_url, "POST", headers={
            "Authorization": "Basic " + basic}, form={"grant_type": "refresh_token",
                                                      "refresh_token": self.refresh})
        self.assertEqual(status, 200)

        status, _, data = call(self.fake.token_url, "POST", form=dict(form, client_secret="x"))
        self.assertEqual((status, data["error"]), (401, "invalid_client"))
        status, _, data = call(self.fake.token_url, "POST", form=dict(form, client_id="nope"))
        self.assertEqual((status, data["error"]), (401, "invalid_client"))
        status, _, data = call(self.fake.token_url, "POST", form=dict(form, grant_type="foo"))
        self.assertEqual((status, data["error"]), (400, "unsupported_grant_type"))

        self.fake.rotate_refresh_tokens = True
        status, _, data = call(self.fake.token_url, "POST", form=form)
        self.assertEqual(status, 200)
        new = data["refresh_token"]
        self.assertNotEqual(new, self.refresh)
        status, _, data = call(self.fake.token_url, "POST", form=form)
        self.assertEqual((status, data["error"]), (400, "invalid_grant"))
        self.assertIn("error_description", data)
        status, _, _ = call(self.fake.token_url, "POST", form=dict(form, refresh_token=new))
        self.assertEqual(status, 200)
        self.fake.revoke_refresh_token(self.refresh)

    def jwt_assertion(self, keyfile, **over):
        key = serialization.load_pem_private_key(keyfile["private_key"].encode(), None)
        now = int(time.time())
        claims = {"iss": keyfile["client_email"], "scope": fake_gmail.SCOPE_READONLY,
                  "aud": keyfile["token_uri"], "iat": now, "exp": now + 3600, "sub": USER}
        claims.update(over)
        claims = {k: v for k, v in claims.items() if v is not None}
        header = {"alg": "RS256", "typ": "JWT", "kid": keyfile["private_key_id"]}
        signing = (b64e(json.dumps(header).encode()) + "." +
                   b64e(json.dumps(claims).encode()))
        sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + b64e(sig)

    def test_service_account_jwt_bearer(self):
        keyfile = self.fake.add_service_account(SA, (fake_gmail.SCOPE_READONLY,))
        self.assertEqual(keyfile["type"], "service_account")

        def grant(assertion):
            return call(self.fake.token_url, "POST", form={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion})
        status, _, data = grant(self.jwt_assertion(keyfile))
        self.assertEqual(status, 200, data)
        status, _, prof = self.get("/profile", token=data["access_token"])
        self.assertEqual((status, prof["emailAddress"]), (200, USER))
        # Google's own audience is accepted as well.
        status, _, _ = grant(self.jwt_assertion(keyfile, aud=fake_gmail.GOOGLE_TOKEN_URL))
        self.assertEqual(status, 200)

        now = int(time.time())
        for over, code, err in (({"aud": "https://example.com/token"}, 400, "invalid_grant"),
                                ({"iat": now - 7200, "exp": now - 3600}, 400, "invalid_grant"),
                                ({"exp": now + 7200}, 400, "invalid_grant"),
                                ({"sub": "nobody@example.com"}, 400, "invalid_grant"),
                                ({"scope": fake_gmail.SCOPE_FULL}, 401, "unauthorized_client"),
                                ({"scope": None}, 400, "invalid_scope")):
            status, _, data = grant(self.jwt_assertion(keyfile, **over))
            self.assertEqual((status, data["error"]), (code, err), over)
        other = self.fake.add_service_account("other@proj.iam.gserviceaccount.com")
        forged = self.jwt_assertion(dict(other, client_email=SA, private_key_id="x"))
        status, _, data = grant(forged)
        self.assertEqual((status, data["error"]), (400, "invalid_grant"))
        self.assertIn("Signature", data["error_description"])

    def test_api_auth_errors(self):
        status, hdrs, data = self.get("/profile", token=None)
        self.assert_google_error(status, data, 401, "required")
        self.assertEqual(data["error"]["status"], "UNAUTHENTICATED")
        self.assertIn("invalid_token", hdrs["WWW-Authenticate"])
        status, _, data = self.get("/profile", token="ya29.unknown")
        self.assert_google_error(status, data, 401, "authError")
        short = self.fake.issue_access_token(USER, SCOPES, lifetime=60)
        self.assertEqual(self.get("/profile", token=short)[0], 200)
        self.fake.advance(61)
        status, _, data = self.get("/profile", token=short)
        self.assert_google_error(status, data, 401, "authError")
        readonly = self.fake.issue_access_token(USER, (fake_gmail.SCOPE_READONLY,))
        status, _, data = self.get("/messages", "POST", token=readonly,
                                   body={"raw": b64e(raw_message(1))})
        self.assert_google_error(status, data, 403, "insufficientPermissions")
        meta = self.fake.issue_access_token(USER, (fake_gmail.SCOPE_METADATA,))
        mid = self.fake.add_message(USER, raw_message(1))
        self.assertEqual(self.get("/messages/%s?format=raw" % mid, token=meta)[0], 403)
        self.assertEqual(self.get("/messages/%s?format=metadata" % mid, token=meta)[0], 200)
        status, _, data = call(self.fake.url + "/gmail/v1/users/someone%40else.com/profile",
                               token=self.token)
        self.assertEqual(status, 403)

    # ---- Gmail resources
    def test_profile_and_labels(self):
        lid = self.fake.add_label(USER, "Projects/X")
        self.fake.add_message(USER, raw_message(1), ["INBOX", lid])
        status, _, prof = self.get("/profile")
        self.assertEqual(status, 200)
        self.assertEqual(prof["emailAddress"], USER)
        self.assertEqual((prof["messagesTotal"], prof["threadsTotal"]), (1, 1))
        self.assertIsInstance(prof["historyId"], str)
        self.assertEqual(int(prof["historyId"]), self.fake.history_id(USER))
        status, _, data = self.get("/labels")
        by_id = {lab["id"]: lab for lab in data["labels"]}
        self.assertEqual(by_id["INBOX"]["type"], "system")
        self.assertEqual(by_id["CATEGORY_SOCIAL"]["type"], "system")
        self.assertEqual((by_id[lid]["name"], by_id[lid]["type"]), ("Projects/X", "user"))

    def test_messages_list_paging_and_filters(self):
        ids = [self.fake.add_message(USER, raw_message(i), ["INBOX"],
                                     internal_date_ms=1700000000000 + i * 1000)
               for i in range(7)]
        spam = self.fake.add_message(USER, raw_message(99, sender="spam@x.org"), ["SPAM"])
        sent = self.fake.add_message(USER, raw_message(50), ["SENT", "INBOX"],
                                     internal_date_ms=1600000000000)
        seen, token, pages = [], None, 0
        while True:
            q = "?labelIds=INBOX&maxResults=3" + ("&pageToken=" + token if token else "")
            status, _, data = self.get("/messages" + q)
            self.assertEqual(status, 200)
            self.assertEqual(data["resultSizeEstimate"], 8)
            for m in data["messages"]:
                self.assertEqual(set(m), {"id", "threadId"})
            seen += [m["id"] for m in data["messages"]]
            pages += 1
            token = data.get("nextPageToken")
            if not token:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(seen, list(reversed(ids)) + [sent])   # newest first
        _, _, data = self.get("/messages?labelIds=INBOX&labelIds=SENT")
        self.assertEqual([m["id"] for m in data["messages"]], [sent])
        _, _, data = self.get("/messages")
        self.assertNotIn(spam, [m["id"] for m in data["messages"]])
        _, _, data = self.get("/messages?includeSpamTrash=true")
        self.assertIn(spam, [m["id"] for m in data["messages"]])
        _, _, data = self.get("/messages?" + urllib.parse.urlencode(
            {"q": "from:spam@x.org in:spam"}))
        self.assertEqual([m["id"] for m in data["messages"]], [spam])
        _, _, data = self.get("/messages?labelIds=TRASH")
        self.assertEqual(data, {"resultSizeEstimate": 0})
        # A message arriving between pages does not shift the next page.
        _, _, first = self.get("/messages?labelIds=INBOX&maxResults=3")
        self.fake.add_message(USER, raw_message(77), ["INBOX"])
        _, _, second = self.get("/messages?labelIds=INBOX&maxResults=3&pageToken="
                                + first["nextPageToken"])
        self.assertEqual([m["id"] for m in second["messages"]], list(reversed(ids))[3:6])
        status, _, data = self.get("/messages?pageToken=garbage")
        self.assert_google_error(status, data, 400, "invalidArgument")

    def test_messages_get_formats(self):
        raw = raw_message(3, subject="Héllo".encode("utf-8").decode("latin-1"))
        mid = self.fake.add_message(USER, raw, ["INBOX", "UNREAD"],
                                    internal_date_ms=1765000000123)
        _, _, m = self.get("/messages/%s?format=minimal" % mid)
        self.assertEqual(m["id"], mid)
        self.assertEqual(m["labelIds"], ["INBOX", "UNREAD"])
        self.assertEqual(m["internalDate"], "1765000000123")
        self.assertIsInstance(m["historyId"], str)
        self.assertEqual(m["sizeEstimate"], len(raw))
        self.assertNotIn("payload", m)
        self.assertNotIn("raw", m)
        _, _, m = self.get("/messages/%s?format=metadata&metadataHeaders=Subject"
                           "&metadataHeaders=message-id" % mid)
        names = [h["name"] for h in m["payload"]["headers"]]
        self.assertEqual(names, ["Subject", "Message-ID"])
        _, _, m = self.get("/messages/%s?format=raw" % mid)
        self.assertEqual(base64.urlsafe_b64decode(m["raw"]), raw)
        self.assertEqual(m["snippet"], "Body number 3.")
        _, _, m = self.get("/messages/%s" % mid)
        self.assertEqual(b64d(m["payload"]["body"]["data"]), b"Body number 3.\r\n")
        status, _, data = self.get("/messages/ffff0000?format=raw")
        self.assert_google_error(status, data, 404, "notFound")
        status, _, data = self.get("/messages/%s?format=bogus" % mid)
        self.assertEqual(status, 400)

    def test_insert_json_and_media(self):
        status, _, m = self.get("/messages", "POST",
                                body={"raw": b64e(raw_message(1)), "labelIds": ["INBOX"]})
        self.assertEqual(status, 200)
        self.assertEqual(m["labelIds"], ["INBOX"])
        status, _, m2 = call(self.fake.url + "/upload/gmail/v1/users/me/messages"
                             "?uploadType=media", "POST", body=raw_message(2),
                             headers={"Content-Type": "message/rfc822"}, token=self.token)
        self.assertEqual(status, 200)
        _, _, got = self.get("/messages/%s?format=raw" % m2["id"])
        self.assertEqual(b64d(got["raw"]), raw_message(2))
        self.assertEqual(self.fake.calls("messages.insert", USER), 2)

    # ---- history
    def test_history_records_paging_and_404(self):
        start = self.fake.history_id(USER)
        lid = self.fake.add_label(USER, "Work")
        a = self.fake.add_message(USER, raw_message(1), ["INBOX"])
        b = self.fake.add_message(USER, raw_message(2), ["INBOX", "UNREAD"])
        self.fake.modify_labels(USER, a, add=[lid], remove=["INBOX"])
        self.fake.delete_message(USER, b)
        _, _, data = self.get("/history?startHistoryId=%d" % start)
        self.assertEqual(data["historyId"], str(self.fake.history_id(USER)))
        recs = data["history"]
        kinds = [k for r in recs for k in r if k not in ("id", "messages")]
        self.assertEqual(kinds, ["messagesAdded", "messagesAdded", "labelsAdded",
                                 "labelsRemoved", "messagesDeleted"])
        ids = [int(r["id"]) for r in recs]
        self.assertEqual(ids, sorted(ids))
        self.assertTrue(all(isinstance(r["id"], str) for r in recs))
        self.assertEqual(recs[2]["labelsAdded"][0]["labelIds"], [lid])
        self.assertEqual(recs[2]["labelsAdded"][0]["message"]["id"], a)
        self.assertEqual(recs[4]["messagesDeleted"][0]["message"]["id"], b)
        self.assertEqual(recs[0]["messages"], [{"id": a, "threadId": a}])

        _, _, data = self.get("/history?startHistoryId=%d&historyTypes=messageDeleted"
                              "&historyTypes=labelRemoved" % start)
        self.assertEqual([k for r in data["history"] for k in r if k not in ("id", "messages")],
                         ["labelsRemoved", "messagesDeleted"])
        _, _, data = self.get("/history?startHistoryId=%d&labelId=%s" % (start, lid))
        self.assertEqual(len(data["history"]), 2)   # added Work, removed INBOX (has Work)

        got, token = [], ""
        while True:
            _, _, data = self.get("/history?startHistoryId=%d&maxResults=2%s"
                                  % (start, "&pageToken=" + token if token else ""))
            got += [r["id"] for r in data["history"]]
            token = data.get("nextPageToken")
            if not token:
                break
        self.assertEqual(got, [str(i) for i in ids])

        last = self.fake.history_id(USER)
        _, _, data = self.get("/history?startHistoryId=%d" % last)
        self.assertEqual(data, {"historyId": str(last)})
        self.fake.expire_history(USER)
        status, _, data = self.get("/history?startHistoryId=%d" % start)
        self.assert_google_error(status, data, 404, "notFound")
        self.assertEqual(self.get("/history?startHistoryId=%d" % last)[0], 200)
        status, _, data = self.get("/history")
        self.assertEqual(status, 400)

    def test_push_outran_history(self):
        start = self.fake.history_id(USER)
        self.fake.hold_history(USER)
        self.fake.add_message(USER, raw_message(1))
        _, _, prof = self.get("/profile")
        self.assertGreater(int(prof["historyId"]), start)
        _, _, data = self.get("/history?startHistoryId=%d" % start)
        self.assertEqual(data, {"historyId": str(start)})
        self.fake.hold_history(USER, False)
        _, _, data = self.get("/history?startHistoryId=%d" % start)
        self.assertEqual(len(data["history"]), 1)
        self.assertEqual(data["historyId"], prof["historyId"])

    # ---- batch
    def test_batch_round_trip(self):
        ids = [self.fake.add_message(USER, raw_message(i)) for i in range(2)]
        boundary = "batch_foobarbaz"
        parts = []
        for n, target in enumerate(["/gmail/v1/users/me/messages/%s?format=metadata" % ids[0],
                                    "/gmail/v1/users/me/messages/%s?format=minimal" % ids[1],
                                    "/gmail/v1/users/me/messages/0000dead?format=minimal"]):
            parts.append("--%s\r\nContent-Type: application/http\r\nContent-ID: <item%d>\r\n"
                         "\r\nGET %s HTTP/1.1\r\n\r\n" % (boundary, n, target))
        body = ("".join(parts) + "--%s--\r\n" % boundary).encode()
        status, hdrs, data = call(self.fake.url + "/batch/gmail/v1", "POST", body=body,
                                  token=self.token, headers={
                                      "Content-Type": "multipart/mixed; boundary=" + boundary})
        self.assertEqual(status, 200)
        ctype = hdrs["Content-Type"]
        self.assertTrue(ctype.startswith("multipart/mixed; boundary="))
        msg = email.message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + data,
                                       policy=email.policy.HTTP)
        answers = list(msg.iter_parts())
        self.assertEqual([p["Content-ID"] for p in answers],
                         ["<response-item0>", "<response-item1>", "<response-item2>"])
        statuses, bodies = [], []
        for part in answers:
            self.assertEqual(part.get_content_type(), "application/http")
            inner = part.get_payload(decode=True)
            head, _, payload = inner.partition(b"\r\n\r\n")
            statuses.append(int(head.split()[1]))
            bodies.append(json.loads(payload))
        self.assertEqual(statuses, [200, 200, 404])
        self.assertEqual(bodies[0]["id"], ids[0])
        self.assertIn("headers", bodies[0]["payload"])
        self.assertEqual(bodies[2]["error"]["code"], 404)
        self.assertEqual(self.fake.calls("messages.get", USER), 3)

        too_many = "".join("--b\r\nContent-Type: application/http\r\n\r\nGET /gmail/v1/users/me/"
                           "profile HTTP/1.1\r\n\r\n" for _ in range(101)) + "--b--\r\n"
        status, _, data = call(self.fake.url + "/batch/gmail/v1", "POST",
                               body=too_many.encode(), token=self.token,
                               headers={"Content-Type": "multipart/mixed; boundary=b"})
        self.assertEqual(status, 400)
        self.assertEqual(self.fake.calls("profile"), 0)

    # ---- watch, Pub/Sub pull/ack
    def test_watch_pull_ack_redelivery(self):
        self.fake.create_topic(TOPIC)
        self.fake.create_subscription(PULL_SUB, TOPIC, ack_deadline=10, dead_letter=True)
        status, _, data = self.get("/watch", "POST", body={"topicName": "bad"})
        self.assert_google_error(status, data, 400, "invalidArgument")
        status, _, data = self.get("/watch", "POST", body={"topicName": "projects/p/topics/x"})
        self.assertEqual(status, 404)
        before = int(time.time() * 1000)
        status, _, w = self.get("/watch", "POST", body={
            "topicName": TOPIC, "labelIds": ["INBOX"], "labelFilterBehavior": "INCLUDE"})
        self.assertEqual(status, 200)
        self.assertEqual(w["historyId"], str(self.fake.history_id(USER)))
        self.assertIsInstance(w["expiration"], str)
        self.assertGreaterEqual(int(w["expiration"]) - before, 7 * 86400 * 1000 - 5000)

        pull = self.fake.url + "/v1/" + PULL_SUB + ":pull"
        ack = self.fake.url + "/v1/" + PULL_SUB + ":acknowledge"
        self.fake.add_message(USER, raw_message(1), ["SENT"])   # not watched
        status, _, data = call(pull, "POST", token=self.token,
                               body={"returnImmediately": True, "maxMessages": 10})
        self.assertEqual((status, data), (200, {}))
        self.fake.add_message(USER, raw_message(2), ["INBOX"])
        status, _, data = call(pull, "POST", token=self.token, body={"maxMessages": 10})
        self.assertEqual(len(data["receivedMessages"]), 1)
        got = data["receivedMessages"][0]
        note = json.loads(base64.b64decode(got["message"]["data"]))
        self.assertEqual(note, {"emailAddress": USER,
                                "historyId": str(self.fake.history_id(USER))})
        self.assertNotIn("attributes", got["message"])   # empty map left out
        self.assertIsInstance(got["message"]["messageId"], str)
        self.assertTrue(got["message"]["publishTime"].endswith("Z"))
        # Not acked: after the ack deadline it comes again, with a new ackId.
        status, _, data = call(pull, "POST", token=self.token,
                               body={"returnImmediately": True, "maxMessages": 10})
        self.assertEqual(data, {})
        self.fake.advance(11)
        _, _, data = call(pull, "POST", token=self.token,
                          body={"returnImmediately": True, "maxMessages": 10})
        again = data["receivedMessages"][0]
        self.assertEqual(again["message"]["messageId"], got["message"]["messageId"])
        self.assertNotEqual(again["ackId"], got["ackId"])
        self.assertEqual(again["deliveryAttempt"], 2)
        status, _, data = call(ack, "POST", token=self.token,
                               body={"ackIds": [again["ackId"], got["ackId"]]})
        self.assertEqual((status, data), (200, {}))
        self.fake.advance(11)
        self.assertEqual(self.fake.pending(PULL_SUB), (0, 0))
        status, _, data = call(ack, "POST", token=self.token, body={"ackIds": []})
        self.assertEqual(status, 400)
        status, _, data = call(ack, "POST", token=self.token, body={"ackIds": ["forged"]})
        self.assertEqual(status, 400)
        # Numeric historyId in the notification, when asked for.
        self.fake.numeric_history_id = True
        self.fake.add_message(USER, raw_message(9), ["INBOX"])
        _, _, data = call(pull, "POST", token=self.token,
                          body={"returnImmediately": True, "maxMessages": 10})
        note = json.loads(base64.b64decode(data["receivedMessages"][0]["message"]["data"]))
        self.assertEqual(note["historyId"], self.fake.history_id(USER))
        call(ack, "POST", token=self.token,
             body={"ackIds": [data["receivedMessages"][0]["ackId"]]})
        nopubsub = self.fake.issue_access_token(USER, (fake_gmail.SCOPE_READONLY,))
        status, _, data = call(pull, "POST", token=nopubsub, body={"maxMessages": 1})
        self.assert_google_error(status, data, 403, "insufficientPermissions")

        status, _, data = self.get("/stop", "POST", body=b"")
        self.assertEqual(status, 204)
        self.assertIsNone(self.fake.watch_state(USER))
        self.fake.add_message(USER, raw_message(3), ["INBOX"])
        self.assertEqual(self.fake.pending(PULL_SUB), (0, 0))
        self.assertEqual(self.fake.calls("watch", USER), 3)
        self.assertEqual(self.fake.calls("stop", USER), 1)

    # ---- JWKS and push
    def test_jwks_and_signed_push(self):
        recv = Receiver()
        self.addCleanup(recv.close)
        status, hdrs, jwks = call(self.fake.certs_url)
        self.assertEqual(status, 200)
        self.assertIn("max-age=", hdrs["Cache-Control"])
        self.assertEqual({k["kty"] for k in jwks["keys"]}, {"RSA"})
        self.fake.add_message(USER, raw_message(1))
        status, _, mid = self.fake.push(recv.url, USER)
        self.assertEqual(status, 204)
        headers, body = recv.requests[-1]
        envelope = json.loads(body)
        m = envelope["message"]
        self.assertEqual(m["messageId"], mid)
        self.assertEqual(m["message_id"], mid)
        self.assertEqual(m["publishTime"], m["publish_time"])
        self.assertEqual(m["attributes"], {})
        self.assertEqual(envelope["subscription"],
                         "projects/fake-project/subscriptions/gmail-push")
        self.assertEqual(json.loads(base64.b64decode(m["data"])),
                         {"emailAddress": USER, "historyId": str(self.fake.history_id(USER))})
        token = headers["Authorization"][len("Bearer "):]
        claims = verify_push_jwt(token, jwks, recv.url, self.fake.push_service_account)
        self.assertEqual(set(claims), {"aud", "azp", "email", "email_verified", "exp", "iat",
                                       "iss", "sub"})

        forged = {"alg_none": "alg", "hs256": "alg", "no_kid": "kid", "unknown_kid": "kid",
                  "bad_signature": "signature", "wrong_aud": "aud", "wrong_iss": "iss",
                  "wrong_email": "email", "unverified_email": "email", "expired": "time",
                  "future_iat": "time"}
        for forge, why in forged.items():
            self.fake.push(recv.url, USER, forge=forge)
            token = recv.requests[-1][0]["Authorization"][len("Bearer "):]
            with self.assertRaises(ValueError, msg=forge) as ctx:
                verify_push_jwt(token, jwks, recv.url, self.fake.push_service_account)
            self.assertEqual(str(ctx.exception), why, forge)
        self.fake.push(recv.url, USER, forge="no_auth")
        self.assertNotIn("Authorization", recv.requests[-1][0])

        # Number-typed historyId, a duplicate delivery, snake_case only.
        self.fake.push(recv.url, USER, history_id=42, numeric_history_id=True,
                       message_id="777", camel_case=False)
        self.fake.push(recv.url, USER, history_id=42, message_id="777")
        first, dup = (json.loads(b)["message"] for _, b in recv.requests[-2:])
        self.assertNotIn("messageId", first)
        self.assertEqual(json.loads(base64.b64decode(first["data"]))["historyId"], 42)
        self.assertEqual(dup["messageId"], first["message_id"])

        old_kid = self.fake.jwks()["keys"][0]["kid"]
        new_kid = self.fake.rotate_signing_key()
        _, _, jwks2 = call(self.fake.certs_url)
        self.assertEqual([k["kid"] for k in jwks2["keys"]], [new_kid, old_kid])
        self.fake.push(recv.url, USER)
        token = recv.requests[-1][0]["Authorization"][len("Bearer "):]
        with self.assertRaises(ValueError):
            verify_push_jwt(token, jwks, recv.url, self.fake.push_service_account)  # stale
        verify_push_jwt(token, jwks2, recv.url, self.fake.push_service_account)
        self.fake.rotate_signing_key(keep_old=False)
        self.assertEqual(len(self.fake.jwks()["keys"]), 1)
        self.assertEqual(self.fake.calls("certs"), 2)

    def test_push_subscription_delivers_on_change(self):
        recv = Receiver()
        self.addCleanup(recv.close)
        self.fake.create_topic(TOPIC)
        self.fake.create_subscription("projects/proj/subscriptions/push", TOPIC,
                                      push_endpoint=recv.url, audience="my-audience")
        self.assertEqual(self.get("/watch", "POST", body={"topicName": TOPIC})[0], 200)
        self.fake.add_message(USER, raw_message(1), ["INBOX"])
        self.assertTrue(recv.event.wait(10))
        headers, body = recv.requests[0]
        wait_for(lambda: self.fake.push_log)   # logged once the answer is read
        self.assertEqual([e["status"] for e in self.fake.push_log], [204])
        self.assertEqual(json.loads(body)["subscription"], "projects/proj/subscriptions/push")
        verify_push_jwt(headers["Authorization"][7:], self.fake.jwks(), "my-audience",
                        self.fake.push_service_account)

    def test_insert_into_watched_inbox_publishes(self):
        """messages.insert is a change like a delivery: the watch publishes
        to its topic, which pushes to the subscription's endpoint."""
        recv = Receiver()
        self.addCleanup(recv.close)
        self.fake.create_topic(TOPIC)
        self.fake.create_subscription("projects/proj/subscriptions/push", TOPIC,
                                      push_endpoint=recv.url)
        self.assertEqual(self.get("/watch", "POST", body={"topicName": TOPIC,
                                                          "labelIds": ["INBOX"]})[0], 200)
        status, _, m = self.get("/messages?internalDateSource=receivedTime", "POST",
                                body={"raw": b64e(raw_message(1)),
                                      "labelIds": ["INBOX", "UNREAD"]})
        self.assertEqual(status, 200)
        self.assertEqual(m["labelIds"], ["INBOX", "UNREAD"])
        self.assertTrue(recv.event.wait(10))
        note = json.loads(b64d(json.loads(recv.requests[0][1])["message"]["data"]))
        self.assertEqual(note, {"emailAddress": USER,
                                "historyId": str(self.fake.history_id(USER))})
        # Once the grant is gone Gmail cannot publish: no second push.
        recv.event.clear()
        self.fake.set_topic_iam(TOPIC, [])
        self.get("/messages", "POST", body={"raw": b64e(raw_message(2)),
                                            "labelIds": ["INBOX"]})
        self.assertFalse(recv.event.wait(1))
        self.assertEqual(len(recv.requests), 1)

    def test_tokeninfo(self):
        token = self.fake.issue_access_token(USER, SCOPES, client=CLIENT)
        status, _, info = call(self.fake.url + "/tokeninfo?access_token=" + token)
        self.assertEqual(status, 200)
        self.assertEqual(set(info["scope"].split()), set(SCOPES))
        self.assertEqual((info["aud"], info["azp"]), (CLIENT, CLIENT))
        self.assertIsInstance(info["expires_in"], str)
        self.assertTrue(0 < int(info["expires_in"]) <= 3599)
        self.assertGreater(int(info["exp"]), time.time())
        self.assertNotIn("email", info)   # Google adds it only with the email scope
        with_email = self.fake.issue_access_token(USER, SCOPES + ("email",), client=CLIENT)
        status, _, info = call(self.fake.url + "/tokeninfo", "POST",
                               form={"access_token": with_email})
        self.assertEqual((status, info["email"], info["email_verified"]),
                         (200, USER, "true"))
        # A token from the refresh grant names its client.
        _, _, grant = call(self.fake.token_url, "POST", form={
            "grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET,
            "refresh_token": self.refresh})
        _, _, info = call(self.fake.url + "/tokeninfo?access_token=" + grant["access_token"])
        self.assertEqual(info["azp"], CLIENT)
        for bad in ("nope", token):
            if bad == token:
                self.fake.expire_access_tokens()
            status, _, err = call(self.fake.url + "/tokeninfo?access_token=" + bad)
            self.assertEqual((status, err), (400, {"error": "invalid_token",
                                                  "error_description": "Invalid Value"}))
        self.assertEqual(self.fake.calls("tokeninfo"), 5)

    def test_pubsub_admin_reads(self):
        base = self.fake.url + "/v1/"
        self.fake.create_topic(TOPIC)
        self.fake.create_topic("projects/proj/topics/other", gmail_can_publish=False)
        status, _, t = call(base + TOPIC, token=self.token)
        self.assertEqual((status, t), (200, {"name": TOPIC}))
        _, _, policy = call(base + TOPIC + ":getIamPolicy", token=self.token)
        self.assertEqual(policy["bindings"], [{
            "role": "roles/pubsub.publisher",
            "members": ["serviceAccount:gmail-api-push@system.gserviceaccount.com"]}])
        self.assertIn("etag", policy)
        _, _, empty = call(base + "projects/proj/topics/other:getIamPolicy",
                           token=self.token)
        self.assertEqual(empty, {"etag": "ACAB"})
        # Gmail's watch refuses a topic it cannot publish to; a grant fixes it.
        status, _, _ = self.get("/watch", "POST",
                                body={"topicName": "projects/proj/topics/other"})
        self.assertEqual(status, 403)
        self.fake.set_topic_iam("projects/proj/topics/other", [
            {"role": "roles/pubsub.editor",
             "members": ["user:x@example.com", "serviceAccount:" + fake_gmail.GMAIL_PUSH_SA]}])
        status, _, _ = self.get("/watch", "POST",
                                body={"topicName": "projects/proj/topics/other"})
        self.assertEqual(status, 200)
        self.assertEqual(self.fake.topic_iam("projects/proj/topics/other")[0]["role"],
                         "roles/pubsub.editor")

        push = "projects/proj/subscriptions/push"
        self.fake.create_subscription(push, TOPIC, push_endpoint="https://mp.example/push/g",
                                      audience="aud-1", service_account="sa@p.iam")
        self.fake.create_subscription(PULL_SUB, TOPIC, ack_deadline=30)
        self.fake.create_subscription("projects/proj/subscriptions/elsewhere",
                                      "projects/proj/topics/other")
        _, _, page1 = call(base + TOPIC + "/subscriptions?pageSize=1", token=self.token)
        self.assertEqual(page1["subscriptions"], [PULL_SUB])
        _, _, page2 = call(base + TOPIC + "/subscriptions?pageSize=1&pageToken=" +
                           page1["nextPageToken"], token=self.token)
        self.assertEqual(page2, {"subscriptions": [push]})
        _, _, sub = call(base + push, token=self.token)
        self.assertEqual(sub["pushConfig"], {
            "pushEndpoint": "https://mp.example/push/g",
            "oidcToken": {"serviceAccountEmail": "sa@p.iam", "audience": "aud-1"}})
        self.assertEqual((sub["name"], sub["topic"], sub["ackDeadlineSeconds"]),
                         (push, TOPIC, 10))
        _, _, pull = call(base + PULL_SUB, token=self.token)
        self.assertEqual((pull["pushConfig"], pull["ackDeadlineSeconds"]), ({}, 30))
        # modifyPushConfig: default audience (left out of the resource), no
        # OIDC, back to pull.
        self.fake.set_push_config(push, "https://mp.example/push/g")
        _, _, sub = call(base + push, token=self.token)
        self.assertEqual(sub["pushConfig"]["oidcToken"],
                         {"serviceAccountEmail": self.fake.push_service_account})
        self.fake.set_push_config(push, "https://mp.example/push/g", oidc=False)
        self.assertNotIn("oidcToken", call(base + push, token=self.token)[2]["pushConfig"])
        self.fake.set_push_config(push)
        self.assertEqual(call(base + push, token=self.token)[2]["pushConfig"], {})
        # Unknown resources, and credentials without a Pub/Sub scope.
        status, _, err = call(base + "projects/proj/subscriptions/none", token=self.token)
        self.assert_google_error(status, err, 404, "notFound")
        status, _, err = call(base + "projects/proj/topics/none:getIamPolicy",
                              token=self.token)
        self.assertEqual(status, 404)
        gmail_only = self.fake.issue_access_token(USER, (fake_gmail.SCOPE_READONLY,))
        status, _, err = call(base + TOPIC, token=gmail_only)
        self.assert_google_error(status, err, 403, "insufficientPermissions")
        self.assertEqual(self.fake.calls("pubsub.subscriptions.get"), 6)

    def test_push_without_oidc(self):
        recv = Receiver()
        self.addCleanup(recv.close)
        self.fake.create_topic(TOPIC)
        self.fake.create_subscription("projects/proj/subscriptions/push", TOPIC,
                                      push_endpoint=recv.url, oidc=False)
        self.fake.publish(TOPIC, {"emailAddress": USER, "historyId": "1"})
        self.assertTrue(recv.event.wait(10))
        self.assertNotIn("Authorization", recv.requests[0][0])

    def test_concurrency_is_observable(self):
        self.fake.pause("history.list")
        url = self.api + "/history?startHistoryId=%d" % self.fake.history_id(USER)
        threads = [threading.Thread(target=call, args=(url,), kwargs={"token": self.token})
                   for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: self.fake.in_flight("history.list", USER) == 3)
        self.assertEqual(self.fake.calls("history.list"), 0)   # counted when answered
        self.fake.resume("history.list")
        for t in threads:
            t.join()
        self.assertEqual(self.fake.calls("history.list", USER), 3)
        self.assertEqual(self.fake.max_concurrent("history.list", USER), 3)
        self.assertEqual(self.fake.in_flight("history.list"), 0)
        self.assertEqual(self.fake.max_concurrent("profile", USER), 0)
        self.fake.set_delay("profile", 0.01)
        self.assertEqual(self.get("/profile")[0], 200)
        with self.assertRaises(ValueError):
            self.fake.fail_next("history.lst", 500)

    def test_chunked_request_body(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.fake.port, timeout=10)
        body = json.dumps({"raw": b64e(raw_message(5))}).encode()
        conn.request("POST", "/gmail/v1/users/me/messages", body=iter([body[:10], body[10:]]),
                     headers={"Authorization": "Bearer " + self.token,
                              "Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertIn(json.loads(resp.read())["id"], [m["id"] for m in self.get(
            "/messages")[2]["messages"]])
        conn.close()

    def test_push_subscription_redelivers_nack(self):
        self.fake.push_attempts, self.fake.push_retry_delay = 3, 0.05
        self.fake.create_topic(TOPIC)
        self.fake.create_subscription("projects/proj/subscriptions/push", TOPIC,
                                      push_endpoint=self.fake.url + "/nowhere")
        self.fake.publish(TOPIC, {"emailAddress": USER, "historyId": "1"})
        wait_for(lambda: len(self.fake.push_log) >= 3)
        self.assertEqual([e["status"] for e in self.fake.push_log], [404, 404, 404])
        self.assertEqual(len({e["message_id"] for e in self.fake.push_log}), 1)

    def test_demo_process(self):
        """`python3 fake_gmail.py` serves real credentials it wrote itself."""
        import subprocess
        import tempfile
        tmp = tempfile.mkdtemp(prefix="fake-gmail-demo-")
        self.addCleanup(shutil.rmtree, tmp, True)
        proc = subprocess.Popen([sys.executable, fake_gmail.__file__, "--dir", tmp, "--pull"],
                                stdout=subprocess.PIPE, text=True)
        self.addCleanup(proc.wait, 30)
        self.addCleanup(proc.terminate)
        info = json.loads(proc.stdout.readline())
        self.assertEqual(info["note"], "LOCAL FAKE, not Google")
        self.assertEqual(os.stat(info["refresh_token_file"]).st_mode & 0o777, 0o600)
        with open(info["refresh_token_file"]) as f:
            refresh = f.read().strip()
        with open(info["client_secret_file"]) as f:
            secret = f.read().strip()
        status, _, tok = call(info["token_url"], "POST", form={
            "grant_type": "refresh_token", "client_id": info["client_id"],
            "client_secret": secret, "refresh_token": refresh})
        self.assertEqual(status, 200)
        status, _, prof = call(info["api_url"] + "/gmail/v1/users/me/profile",
                               token=tok["access_token"])
        self.assertEqual((status, prof["messagesTotal"]), (200, 3))
        with open(info["service_account_file"]) as f:
            self.assertEqual(json.load(f)["type"], "service_account")
        proc.terminate()
        self.assertEqual(proc.wait(30), 0)
        proc.stdout.close()

    # ---- quota, error injection, counters
    def test_quota_budget(self):
        self.fake.quota_per_minute = 10
        for _ in range(10):
            self.assertEqual(self.get("/profile")[0], 200)
        status, hdrs, data = self.get("/profile")
        self.assert_google_error(status, data, 429, "rateLimitExceeded")
        self.assertGreater(int(hdrs["Retry-After"]), 0)
        self.assertEqual(self.get("/history?startHistoryId=1")[0], 429)
        self.fake.advance(61)
        self.assertEqual(self.get("/profile")[0], 200)
        self.assertEqual([e["status"] for e in self.fake.call_log("profile", USER)],
                         [200] * 10 + [429, 200])

    def test_error_injection_and_counts(self):
        self.fake.fail_next("history.list", 429, retry_after=7)
        status, hdrs, data = self.get("/history?startHistoryId=1")
        self.assert_google_error(status, data, 429, "rateLimitExceeded")
        self.assertEqual(hdrs["Retry-After"], "7")
        entry, = self.fake.call_log("history.list", USER)
        self.assertEqual((entry["status"], entry["user"]), (429, USER))
        self.assertIsInstance(entry["t"], float)
        self.assertEqual(self.get("/history?startHistoryId=%d"
                                  % self.fake.history_id(USER))[0], 200)
        self.fake.fail_next("profile", 503, count=2)
        self.assertEqual(self.get("/profile")[0], 503)
        status, _, data = self.get("/profile")
        self.assert_google_error(status, data, 503, "backendError")
        self.assertEqual(self.get("/profile")[0], 200)
        self.fake.fail_next("token", 400, oauth_error="invalid_grant")
        status, _, data = call(self.fake.token_url, "POST", form={
            "grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET,
            "refresh_token": self.refresh})
        self.assertEqual((status, data["error"]), (400, "invalid_grant"))
        self.fake.fail_next("token", 429, retry_after=30)
        status, hdrs, _ = call(self.fake.token_url, "POST", form={
            "grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET,
            "refresh_token": self.refresh})
        self.assertEqual((status, hdrs["Retry-After"]), (429, "30"))
        self.fake.fail_next("*", 500, user="bob@example.com")
        self.assertEqual(self.get("/profile")[0], 200)   # only bob's calls fail
        self.assertEqual(self.fake.calls("history.list", USER), 2)
        self.assertEqual(self.fake.calls("profile", USER), 4)
        self.assertEqual(self.fake.calls("token", USER), 2)
        self.fake.reset_counts()
        self.assertEqual(self.fake.calls(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)

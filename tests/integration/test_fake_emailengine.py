"""The fake EmailEngine speaks EmailEngine's documented formats.

No daemon: every endpoint of tests/integration/fake_emailengine.py is called
with urllib, the way the emailengine.so driver calls EmailEngine, and the
answers are checked against the shapes in
../shared/reference/emailengine-api.md (E§n) and providers.md §5. Webhook
signatures are checked by a verifier written here from P§5, independent of
the fake's own signing code.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_emailengine import FakeEmailEngine  # noqa: E402

ACC = "acc1"
SECRET = "0123456789abcdef0123456789abcdef"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")


def raw_message(n, subject=None, sender="Bob <bob@example.org>", date=None, extra=""):
    return ("From: %s\r\nTo: Alice <alice@example.com>, carol@example.com\r\n"
            "Subject: %s\r\nMessage-ID: <m%d@example.org>\r\n%s"
            "Date: %s\r\n\r\nBody number %d.\r\n"
            % (sender, subject or "msg %d" % n, n, extra,
               date or "Mon, 07 Dec 2026 01:%02d:00 +0000" % (n % 60), n)).encode()


def unpack_id(mid):
    """(registry number, uid) of an EmailEngine IMAP id (E§4)."""
    raw = base64.urlsafe_b64decode(mid + "=" * (-len(mid) % 4))
    return int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:8], "big")


def call(url, method="GET", body=None, headers=None, token=None):
    """(status, headers, parsed JSON or bytes)."""
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = "Bearer " + token
    if isinstance(body, (dict, list)):
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


def verify_signature(secret, body, header):
    """P§5: base64url(HMAC-SHA256(serviceSecret, raw body)) without padding,
    compared in constant time."""
    if not header or "=" in header:
        return False
    want = base64.urlsafe_b64encode(
        hmac.new(secret.encode(), body, hashlib.sha256).digest()).rstrip(b"=").decode()
    return hmac.compare_digest(want, header)


class Receiver:
    """A webhook endpoint: records (headers, raw body) and answers `status`."""

    def __init__(self, status=200):
        self.status = status
        self.got = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.got.append((dict(self.headers.items()), body))
                answer = b"ok"
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/push/ee" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeEmailEngineTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeEmailEngine(service_secret=SECRET).start()
        self.addCleanup(self.fake.stop)
        self.fake.add_account(ACC, email_addr="alice@example.com", name="Alice")
        self.fake.add_mailbox(ACC, "INBOX")
        self.fake.add_mailbox(ACC, "Archive/2026", special_use="\\Archive")
        self.fake.add_mailbox(ACC, "Sent", special_use="\\Sent")
        self.fake.add_mailbox(ACC, "Zeta")
        self.fake.add_mailbox(ACC, "Trash", special_use="\\Trash")

    def get(self, path, token=None, **kw):
        return call(self.fake.url + path, token=token or self.fake.token, **kw)

    def assert_boom(self, status, data, want_status, message=None, code=None):
        self.assertEqual(status, want_status, data)
        self.assertEqual(data["statusCode"], want_status)
        self.assertIsInstance(data["error"], str)
        if message is not None:
            self.assertEqual(data["message"], message)
        if code is None:
            self.assertNotIn("code", data)
        else:
            self.assertEqual(data["code"], code)

    # ---- (a) REST
    def test_auth(self):
        url = "/v1/account/%s" % ACC
        status, hdrs, data = call(self.fake.url + url)
        self.assert_boom(status, data, 401, "Missing authentication")
        self.assertEqual(data["error"], "Unauthorized")
        self.assertEqual(hdrs["WWW-Authenticate"], "Bearer")
        self.assertTrue(hdrs["Content-Type"].startswith("application/json"))
        status, hdrs, data = call(self.fake.url + url, headers={"Authorization": "Basic eDp5"})
        self.assert_boom(status, data, 401, "Missing authentication")
        status, hdrs, data = self.get(url, token="f" * 64)
        self.assert_boom(status, data, 401, "Bad token")
        self.assertEqual(hdrs["WWW-Authenticate"], 'Bearer error="Bad token"')
        self.assertTrue(re.fullmatch(r"[0-9a-f]{64}", self.fake.token))
        self.assertEqual(self.get(url)[0], 200)
        # ?access_token= works; the header wins over it.
        self.assertEqual(call(self.fake.url + url + "?access_token=" + self.fake.token)[0], 200)
        status, _, _ = call(self.fake.url + url + "?access_token=" + self.fake.token,
                            token="0" * 64)
        self.assertEqual(status, 401)
        smtp_only = self.fake.add_token(scopes=("smtp",))
        status, _, data = self.get(url, token=smtp_only)
        self.assert_boom(status, data, 403, "Unauthorized scope")
        self.assertEqual(data["requestedScope"], "api")
        bound = self.fake.add_token(account="other")
        status, _, data = self.get(url, token=bound)
        self.assert_boom(status, data, 403, "Unauthorized account")
        self.assertEqual(self.get("/v1/accounts", token=bound)[0], 403)
        self.fake.revoke_token(smtp_only)
        self.assertEqual(self.get(url, token=smtp_only)[0], 401)
        status, _, data = self.get("/v1/nothing/here")
        self.assert_boom(status, data, 404)

    def test_accounts_list_and_get(self):
        self.fake.add_account("acc0", state="authenticationError")
        self.fake.add_account("bob", state="disconnected", email_addr="bob@example.net")
        status, _, data = self.get("/v1/accounts")
        self.assertEqual(status, 200)
        self.assertEqual((data["total"], data["page"], data["pages"], data["query"],
                          data["state"]), (3, 0, 1, False, "*"))
        self.assertEqual([a["account"] for a in data["accounts"]], ["acc0", ACC, "bob"])
        first = data["accounts"][0]
        self.assertEqual((first["state"], first["type"]), ("authenticationError", "imap"))
        self.assertEqual(first["lastError"], {"response": "Authentication failed",
                                              "serverResponseCode": "AUTHENTICATIONFAILED"})
        self.assertIsNone(data["accounts"][1]["lastError"])
        status, _, data = self.get("/v1/accounts?pageSize=2&page=1")
        self.assertEqual((data["total"], data["pages"], len(data["accounts"])), (3, 2, 1))
        status, _, data = self.get("/v1/accounts?state=connected")
        self.assertEqual([a["account"] for a in data["accounts"]], [ACC])
        self.assertEqual(data["state"], "connected")
        status, _, data = self.get("/v1/accounts?query=EXAMPLE.NET")
        self.assertEqual(([a["account"] for a in data["accounts"]], data["query"]),
                         (["bob"], "EXAMPLE.NET"))
        status, _, data = self.get("/v1/accounts?state=nothing")
        self.assertEqual((status, data["message"]), (400, "Invalid input"))
        status, _, data = self.get("/v1/accounts?pageSize=1001")
        self.assertEqual(data["fields"], [{"message": '"pageSize" must be less than or '
                                                      'equal to 1000', "key": "pageSize"}])
        status, _, data = self.get("/v1/accounts?query=nobody")
        self.assertEqual((data["total"], data["pages"], data["accounts"]), (0, 0, []))

        status, _, data = self.get("/v1/account/%s" % ACC)
        self.assertEqual(status, 200)
        for key, value in (("account", ACC), ("name", "Alice"), ("email", "alice@example.com"),
                           ("state", "connected"), ("type", "imap"), ("imapIndexer", "full"),
                           ("lastError", None), ("notifyFrom", None), ("syncFrom", None),
                           ("smtpStatus", None)):
            self.assertEqual(data[key], value, key)
        self.assertEqual(data["imap"]["auth"]["pass"], "******")
        self.assertRegex(data["syncTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        status, _, data = self.get("/v1/account/bob")
        self.assertEqual(data["state"], "disconnected")
        self.assertNotIn("lastError", data)   # not connected and no stored error
        status, _, data = self.get("/v1/account/nobody")
        self.assert_boom(status, data, 404, "Account record was not found for requested ID")

    def test_account_states(self):
        self.fake.set_account_state(ACC, "connectError",
                                    {"response": "TLS failed", "serverResponseCode": "ETLS"})
        _, _, data = self.get("/v1/account/%s" % ACC)
        self.assertEqual((data["state"], data["lastError"]),
                         ("connectError", {"response": "TLS failed",
                                           "serverResponseCode": "ETLS"}))
        for state, code in (("init", "NotYetConnected"),
                            ("authenticationError", "AuthenticationFails"),
                            ("connectError", "ConnectionError"), ("unset", "NotSyncing"),
                            ("disconnected", "NoAvailable"), ("paused", "NoAvailable")):
            self.fake.set_account_state(ACC, state)
            self.assertEqual(self.fake.account_state(ACC), state)
            status, _, data = self.get("/v1/account/%s/messages?path=INBOX" % ACC)
            self.assert_boom(status, data, 503, code=code)
            self.assertEqual(data["state"], state)
        for state in ("connecting", "syncing", "connected"):
            self.fake.set_account_state(ACC, state)
            self.assertEqual(self.get("/v1/account/%s/messages?path=INBOX" % ACC)[0], 200)
        with self.assertRaises(ValueError):
            self.fake.set_account_state(ACC, "sleeping")

    def test_mailboxes(self):
        self.fake.add_message(ACC, "INBOX", raw_message(1))
        self.fake.add_message(ACC, "INBOX", raw_message(2), flags=["\\Seen"])
        status, _, data = self.get("/v1/account/%s/mailboxes" % ACC)
        self.assertEqual(status, 200)
        boxes = data["mailboxes"]
        self.assertEqual([b["path"] for b in boxes],
                         ["INBOX", "Sent", "Archive/2026", "Trash", "Zeta"])
        inbox = boxes[0]
        self.assertEqual((inbox["specialUse"], inbox["specialUseSource"], inbox["name"],
                          inbox["delimiter"], inbox["messages"], inbox["uidNext"],
                          inbox["listed"], inbox["subscribed"]),
                         ("\\Inbox", "name", "INBOX", "/", 2, 3, True, True))
        self.assertNotIn("parentPath", inbox)
        self.assertNotIn("status", inbox)
        for box in boxes:
            self.assertNotIn("uidValidity", box)
            self.assertNotIn("highestModseq", box)
        archive = boxes[2]
        self.assertEqual((archive["name"], archive["parentPath"], archive["specialUse"]),
                         ("2026", "Archive", "\\Archive"))
        self.assertNotIn("specialUse", boxes[4])
        _, _, data = self.get("/v1/account/%s/mailboxes?counters=Y" % ACC)
        self.assertEqual(data["mailboxes"][0]["status"], {"messages": 2, "unseen": 1})
        self.assertEqual(self.get("/v1/account/%s/mailboxes?counters=maybe" % ACC)[0], 400)

        # Not connected: the listing stored at the last sync, counts frozen.
        self.fake.set_account_state(ACC, "authenticationError")
        self.fake.add_message(ACC, "INBOX", raw_message(3))
        status, _, data = self.get("/v1/account/%s/mailboxes" % ACC)
        self.assertEqual((status, data["mailboxes"][0]["messages"]), (200, 2))
        status, _, data = self.get("/v1/account/%s/mailboxes?counters=true" % ACC)
        self.assert_boom(status, data, 503, code="WorkerNotAvailable")
        self.fake.set_account_state(ACC, "connected")
        _, _, data = self.get("/v1/account/%s/mailboxes" % ACC)
        self.assertEqual(data["mailboxes"][0]["messages"], 3)
        # Never connected: nothing stored, 503 NotYetConnected with the state.
        self.fake.add_account("new", state="authenticationError")
        status, _, data = self.get("/v1/account/new/mailboxes")
        self.assert_boom(status, data, 503, code="NotYetConnected")
        self.assertEqual(data["state"], "authenticationError")
        self.fake.set_account_state(ACC, "unset")
        status, _, data = self.get("/v1/account/%s/mailboxes" % ACC)
        self.assert_boom(status, data, 503, code="NotSyncing")
        self.fake.add_account("fresh", state="init")
        self.assertEqual(self.get("/v1/account/fresh/mailboxes")[2]["code"], "NotYetConnected")
        self.assertEqual(self.get("/v1/account/nobody/mailboxes")[0], 404)

    def test_message_listing(self):
        ids = [self.fake.add_message(ACC, "INBOX", raw_message(n),
                                     flags=["\\Seen"] if n % 2 else [])
               for n in range(1, 8)]
        for mid in ids:
            self.assertRegex(mid, ID_RE)
        self.assertEqual(len({unpack_id(m)[0] for m in ids}), 1)
        self.assertEqual([unpack_id(m)[1] for m in ids], list(range(1, 8)))
        status, _, data = self.get("/v1/account/%s/messages?path=INBOX&pageSize=3" % ACC)
        self.assertEqual(status, 200)
        self.assertEqual((data["total"], data["page"], data["pages"]), (7, 0, 3))
        self.assertIsNone(data["prevPageCursor"])
        self.assertEqual([m["uid"] for m in data["messages"]], [7, 6, 5])
        self.assertEqual([m["id"] for m in data["messages"]], ids[::-1][:3])
        m = data["messages"][0]
        self.assertEqual(m["date"], "2026-12-07T01:07:00.000Z")
        self.assertEqual(m["subject"], "msg 7")
        self.assertEqual(m["from"], {"name": "Bob", "address": "bob@example.org"})
        self.assertEqual(m["to"], [{"name": "Alice", "address": "alice@example.com"},
                                   {"name": "", "address": "carol@example.com"}])
        self.assertEqual(m["messageId"], "<m7@example.org>")
        self.assertEqual(m["flags"], ["\\Seen"])
        self.assertNotIn("unseen", m)
        self.assertEqual(m["size"], len(raw_message(7)))
        self.assertIsInstance(m["emailId"], str)
        self.assertIsInstance(m["threadId"], str)
        self.assertEqual(m["text"]["encodedSize"], {"plain": len(b"Body number 7.\r\n")})
        unseen = data["messages"][1]
        self.assertEqual((unseen["flags"], unseen["unseen"]), ([], True))
        seen = data["messages"][0]
        for key in ("unseen", "flagged", "answered", "draft", "cc", "attachments",
                    "inReplyTo", "labels", "path", "headers"):
            self.assertNotIn(key, seen)
        for value in seen.values():
            self.assertIsNotNone(value)
        # Page 2 by cursor, page 2 by number, then past the end.
        nxt = data["nextPageCursor"]
        self.assertTrue(nxt.startswith("imap_"))
        self.assertEqual(json.loads(base64.urlsafe_b64decode(nxt[5:] + "=" * (-len(nxt[5:]) % 4))),
                         {"page": 1})
        _, _, p1 = self.get("/v1/account/%s/messages?path=INBOX&pageSize=3&cursor=%s"
                            % (ACC, nxt))
        self.assertEqual([m["uid"] for m in p1["messages"]], [4, 3, 2])
        _, _, p2 = self.get("/v1/account/%s/messages?path=INBOX&pageSize=3&page=2" % ACC)
        self.assertEqual([m["uid"] for m in p2["messages"]], [1])
        self.assertIsNone(p2["nextPageCursor"])
        self.assertIsNotNone(p2["prevPageCursor"])
        _, _, p9 = self.get("/v1/account/%s/messages?path=INBOX&pageSize=3&page=9" % ACC)
        self.assertEqual((p9["messages"], p9["page"], p9["pages"]), ([], 9, 3))
        # Empty folder, alias path, errors.
        _, _, empty = self.get("/v1/account/%s/messages?path=Zeta" % ACC)
        self.assertEqual(empty, {"total": 0, "page": 0, "pages": 1, "nextPageCursor": None,
                                 "prevPageCursor": None, "messages": []})
        self.fake.add_message(ACC, "Sent", raw_message(50))
        _, _, sent = self.get("/v1/account/%s/messages?path=%s" % (ACC, urllib.parse.quote("\\Sent")))
        self.assertEqual(sent["total"], 1)
        status, _, data = self.get("/v1/account/%s/messages?path=Nope" % ACC)
        self.assert_boom(status, data, 404, "Requested mailbox folder was not found",
                         "FolderNotFound")
        status, _, data = self.get("/v1/account/%s/messages" % ACC)
        self.assertEqual((status, data["fields"][0]["key"]), (400, "path"))
        status, _, data = self.get("/v1/account/%s/messages?path=INBOX&pageSize=1001" % ACC)
        self.assertEqual((status, data["fields"][0]["key"]), (400, "pageSize"))
        status, _, data = self.get("/v1/account/%s/messages?path=INBOX&cursor=imap_%%25%%25"
                                   % ACC)
        self.assert_boom(status, data, 400, code="InvalidCursorValue")
        self.assertEqual(self.get("/v1/account/nobody/messages?path=INBOX")[0], 404)
        # The listing is live and never sets \Seen.
        self.fake.delete_message(ACC, ids[6])
        _, _, data = self.get("/v1/account/%s/messages?path=INBOX&pageSize=3" % ACC)
        self.assertEqual([m["uid"] for m in data["messages"]], [6, 5, 4])
        self.assertEqual(data["total"], 6)
        self.assertTrue(data["messages"][0]["unseen"])     # uid 6 is still unread

    def test_entry_details(self):
        mime = (b"From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.de>\r\nTo: x@example.com\r\n"
                b"Cc: y@example.com\r\nReply-To: r@example.com\r\n"
                b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nIn-Reply-To: <parent@example.org>\r\n"
                b"Date: not a date\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
                b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                b"--XX\r\nContent-Type: application/pdf; name=a.pdf\r\n"
                b"Content-Disposition: attachment; filename=a.pdf\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--XX--\r\n")
        mid = self.fake.add_message(ACC, "INBOX", mime, flags=["\\Flagged", "\\Answered",
                                                               "\\Draft", "\\Recent"],
                                    date=1796000000)
        _, _, data = self.get("/v1/account/%s/messages?path=INBOX" % ACC)
        m = data["messages"][0]
        self.assertEqual(m["from"], {"name": "J\u00fcrgen", "address": "j@example.de"})
        self.assertEqual(m["subject"], "Gr\u00fc\u00dfe")
        self.assertEqual(m["date"], "2026-11-30T00:53:20.000Z")   # INTERNALDATE fallback
        self.assertEqual(m["flags"], ["\\Flagged", "\\Answered", "\\Draft"])
        self.assertTrue(m["flagged"] and m["answered"] and m["draft"] and m["unseen"])
        self.assertEqual(m["cc"], [{"name": "", "address": "y@example.com"}])
        self.assertEqual(m["replyTo"], [{"name": "", "address": "r@example.com"}])
        self.assertEqual(m["inReplyTo"], "<parent@example.org>")
        self.assertNotIn("messageId", m)
        att = m["attachments"][0]
        self.assertEqual((att["contentType"], att["filename"], att["embedded"], att["inline"]),
                         ("application/pdf", "a.pdf", False, False))
        att_raw = base64.urlsafe_b64decode(att["id"] + "=" * (-len(att["id"]) % 4))
        self.assertEqual((att_raw[:8], att_raw[8:]),
                         (base64.urlsafe_b64decode(mid + "="), b"2"))
        # RFC 2046: the CRLF before a boundary belongs to the boundary.
        self.assertEqual(m["text"]["encodedSize"], {"plain": len(b"hello")})
        # No OBJECTID on the server: no emailId / threadId.
        self.fake.add_account("plain", object_id=False)
        self.fake.add_mailbox("plain", "INBOX")
        self.fake.add_message("plain", "INBOX", raw_message(1))
        _, _, data = self.get("/v1/account/plain/messages?path=INBOX")
        self.assertNotIn("emailId", data["messages"][0])
        self.assertNotIn("threadId", data["messages"][0])

    def test_message_and_source(self):
        raw = raw_message(1)
        mid = self.fake.add_message(ACC, "INBOX", raw, email_id="E1", thread_id="T1")
        status, hdrs, data = self.get("/v1/account/%s/message/%s/source" % (ACC, mid))
        self.assertEqual((status, data), (200, raw))
        self.assertEqual(hdrs["Content-Type"], "message/rfc822")
        self.assertEqual(hdrs["Content-Disposition"], "attachment; filename=message.eml")
        status, _, data = self.get("/v1/account/%s/message/%s" % (ACC, mid))
        self.assertEqual(status, 200)
        self.assertEqual((data["id"], data["path"], data["emailId"], data["threadId"]),
                         (mid, "INBOX", "E1", "T1"))
        self.assertEqual(data["headers"]["subject"], ["msg 1"])
        self.assertEqual(data["to"][0]["address"], "alice@example.com")
        self.assertNotIn("plain", data["text"])
        # No read stores \Seen ...
        self.assertTrue(data["unseen"])
        self.assertEqual(self.get("/v1/account/%s/messages?path=INBOX" % ACC)[2]
                         ["messages"][0]["flags"], [])
        _, _, data = self.get("/v1/account/%s/message/%s?textType=*" % (ACC, mid))
        self.assertEqual((data["text"]["plain"], data["text"]["hasMore"]),
                         ("Body number 1.\r\n", False))
        _, _, data = self.get("/v1/account/%s/message/%s?textType=plain&maxBytes=4" % (ACC, mid))
        self.assertEqual((data["text"]["plain"], data["text"]["hasMore"]), ("Body", True))
        # ... except markAsSeen=true.
        _, _, data = self.get("/v1/account/%s/message/%s?markAsSeen=true" % (ACC, mid))
        self.assertEqual(data["flags"], ["\\Seen"])
        self.assertNotIn("unseen", data)
        # Deleted: 404 with a code for the message, without one for /source.
        self.fake.delete_message(ACC, mid)
        status, _, data = self.get("/v1/account/%s/message/%s" % (ACC, mid))
        self.assert_boom(status, data, 404, "Requested message was not found",
                         "MessageNotFound")
        status, _, data = self.get("/v1/account/%s/message/%s/source" % (ACC, mid))
        self.assert_boom(status, data, 404, "Requested file not found")
        self.assertEqual(self.get("/v1/account/%s/message/%s/source" % (ACC, "AAAAZAAAAAE"))[0],
                         404)
        self.assertEqual(self.get("/v1/account/%s/message/bad%%21id" % ACC)[0], 400)
        self.fake.set_account_state(ACC, "authenticationError")
        status, _, data = self.get("/v1/account/%s/message/%s/source" % (ACC, mid))
        self.assert_boom(status, data, 503, code="AuthenticationFails")

    def test_uidvalidity_changes_ids(self):
        """E§4: the registry number is per (UIDVALIDITY, path); a reset
        changes every id, a stale id resolves by UID without a check."""
        ids = [self.fake.add_message(ACC, "INBOX", raw_message(n)) for n in range(1, 4)]
        self.fake.delete_message(ACC, ids[0])             # UIDs now 2, 3
        old_uv = self.fake.uid_validity(ACC, "INBOX")
        new_uv = self.fake.reset_uidvalidity(ACC, "INBOX")
        self.assertNotEqual(old_uv, new_uv)
        new_ids = self.fake.message_ids(ACC, "INBOX")
        self.assertEqual([unpack_id(m)[1] for m in new_ids], [2, 1])   # renumbered
        self.assertNotEqual(unpack_id(new_ids[0])[0], unpack_id(ids[1])[0])
        self.assertFalse(set(new_ids) & set(ids))
        _, _, data = self.get("/v1/account/%s/messages?path=INBOX" % ACC)
        self.assertEqual([m["id"] for m in data["messages"]], new_ids)
        self.assertEqual([m["subject"] for m in data["messages"]], ["msg 3", "msg 2"])
        # The stale id of "msg 2" (UID 2) now hits "msg 3", which has UID 2.
        _, _, src = self.get("/v1/account/%s/message/%s/source" % (ACC, ids[1]))
        self.assertIn(b"Subject: msg 3", src)
        # Rename: same UIDs, new ids.
        self.fake.rename_mailbox(ACC, "Zeta", "Omega")
        zid = self.fake.add_message(ACC, "Omega", raw_message(9))
        self.fake.rename_mailbox(ACC, "Omega", "Zeta")
        renamed = self.fake.find_message(ACC, "Zeta", 1)
        self.assertNotEqual(renamed, zid)
        self.assertEqual(unpack_id(renamed)[1], unpack_id(zid)[1])
        self.assertEqual(self.fake.message_uid(ACC, renamed), 1)
        self.assertEqual(self.get("/v1/account/%s/messages?path=Omega" % ACC)[0], 404)

    def test_search(self):
        ids = [self.fake.add_message(ACC, "INBOX", raw_message(n, subject="S%d" % n),
                                     flags=["\\Seen"] if n <= 3 else [])
               for n in range(1, 7)]
        self.fake.delete_message(ACC, ids[1])

        def search(criteria, extra=""):
            return self.get("/v1/account/%s/search?path=INBOX%s" % (ACC, extra), method="POST",
                            body={"search": criteria})
        status, _, data = search({"uid": "1:*"})
        self.assertEqual(status, 200)
        self.assertEqual([m["uid"] for m in data["messages"]], [6, 5, 4, 3, 1])
        self.assertEqual((data["total"], data["pages"]), (5, 1))
        _, _, data = search({"uid": "1:*"}, "&pageSize=2&page=1")
        self.assertEqual([m["uid"] for m in data["messages"]], [4, 3])
        _, _, data = search({"seen": False})
        self.assertEqual([m["uid"] for m in data["messages"]], [6, 5, 4])
        _, _, data = search({"uid": "3:4,6", "seen": True})
        self.assertEqual([m["uid"] for m in data["messages"]], [3])
        _, _, data = search({"subject": "s5"})
        self.assertEqual([m["id"] for m in data["messages"]], [ids[4]])
        _, _, data = search({"header": {"message-id": "m6@"}})
        self.assertEqual([m["uid"] for m in data["messages"]], [6])
        _, _, data = search({"seq": "1"})
        self.assertEqual([m["uid"] for m in data["messages"]], [1])
        self.assertEqual(search({"uid": "x:y"})[0], 400)
        self.assertEqual(search({"gmailRaw": "x"})[0], 400)
        self.assertEqual(self.get("/v1/account/%s/search?path=INBOX" % ACC, method="POST",
                                  body={})[0], 400)

    def test_counters_delay_pause(self):
        self.assertEqual(self.fake.calls(), 0)
        self.get("/v1/account/%s" % ACC)
        self.get("/v1/account/%s/mailboxes" % ACC)
        self.get("/v1/account/%s/messages?path=INBOX&pageSize=5" % ACC)
        self.assertEqual(self.fake.calls("messages", ACC), 1)
        entry = self.fake.call_log("messages")[0]
        self.assertEqual((entry["status"], entry["query"]), (200, {"path": "INBOX",
                                                                   "pageSize": "5"}))
        self.fake.pause("mailboxes")
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            self.get("/v1/account/%s/mailboxes" % ACC)[0])) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while self.fake.in_flight("mailboxes", ACC) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.fake.in_flight("mailboxes"), 2)
        self.fake.resume("mailboxes")
        for t in threads:
            t.join()
        self.assertEqual(results, [200, 200])
        self.assertEqual(self.fake.max_concurrent("mailboxes", ACC), 2)
        self.fake.set_delay("account", 0.05)
        self.assertEqual(self.get("/v1/account/%s" % ACC)[0], 200)
        self.fake.reset_counts()
        self.assertEqual((self.fake.calls(), self.fake.call_log()), (0, []))


    # ---- (b) webhooks
    def receiver(self, status=200):
        rx = Receiver(status)
        self.addCleanup(rx.close)
        return rx

    def check_delivery(self, headers, body):
        """Every header P§5 lists, and a signature that verifies."""
        h = {k.lower(): v for k, v in headers.items()}
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(h["user-agent"], "emailengine-app/2.79.2 (+https://emailengine.app/)")
        self.assertRegex(h["x-ee-wh-id"], r"^\d+$")
        self.assertRegex(h["x-ee-wh-attempts-made"], r"^\d+$")
        self.assertRegex(h["x-ee-wh-queued-time"], r"^\d+s$")
        self.assertRegex(h["x-ee-wh-event-id"],
                         r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(int(h["content-length"]), len(body))
        self.assertTrue(verify_signature(SECRET, body, h["x-ee-wh-signature"]))
        payload = json.loads(body)
        self.assertNotIn("eventId", payload)
        self.assertEqual(list(payload)[:3], ["serviceUrl", "account", "date"])
        self.assertRegex(payload["date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        return h, payload

    def test_webhooks_follow_changes(self):
        rx = self.receiver()
        self.fake.configure_webhooks(rx.url)
        mid = self.fake.add_message(ACC, "INBOX", raw_message(1))
        self.fake.set_flags(ACC, mid, ["\\Seen", "\\Flagged"])
        self.fake.set_flags(ACC, mid, ["\\Flagged"])
        self.fake.delete_message(ACC, mid)
        self.fake.add_mailbox(ACC, "Projects/New", special_use="\\Junk")
        self.fake.delete_mailbox(ACC, "Projects/New")
        self.fake.add_message(ACC, "Sent", raw_message(2))
        old_uv = self.fake.uid_validity(ACC, "Sent")
        new_uv = self.fake.reset_uidvalidity(ACC, "Sent")
        self.fake.flush_webhooks()
        events = [json.loads(b)["event"] for _, b in rx.got]
        self.assertEqual(events, ["messageNew", "messageUpdated", "messageUpdated",
                                  "messageDeleted", "mailboxNew", "mailboxDeleted",
                                  "messageNew", "mailboxReset"])
        payloads = [self.check_delivery(h, b)[1] for h, b in rx.got]
        new = payloads[0]
        self.assertEqual((new["account"], new["path"], new["specialUse"], new["serviceUrl"]),
                         (ACC, "INBOX", "\\Inbox", self.fake.url))
        self.assertEqual((new["data"]["id"], new["data"]["uid"], new["data"]["path"],
                          new["data"]["subject"], new["data"]["messageSpecialUse"]),
                         (mid, 1, "INBOX", "msg 1", "\\Inbox"))
        self.assertIs(new["data"]["unseen"], True)
        self.assertEqual(payloads[1]["data"], {"id": mid, "uid": 1, "changes": {"flags": {
            "added": ["\\Seen", "\\Flagged"], "value": ["\\Seen", "\\Flagged"]}}})
        self.assertEqual(payloads[2]["data"]["changes"]["flags"],
                         {"deleted": ["\\Seen"], "value": ["\\Flagged"]})
        self.assertEqual(payloads[3]["data"], {"id": mid, "uid": 1})
        self.assertEqual(payloads[4]["data"]["path"], "Projects/New")
        self.assertEqual(payloads[4]["data"]["name"], "New")
        self.assertEqual(payloads[4]["data"]["specialUse"], "\\Junk")
        self.assertIsInstance(payloads[4]["data"]["uidValidity"], str)
        self.assertEqual(payloads[5]["data"], {"path": "Projects/New", "name": "New",
                                               "specialUse": "\\Junk"})
        self.assertEqual(payloads[6]["specialUse"], "\\Sent")
        self.assertEqual(payloads[7]["data"], {
            "path": "Sent", "name": "Sent", "specialUse": "\\Sent",
            "uidValidity": str(new_uv), "reason": "uidValidityChange",
            "prevUidValidity": str(old_uv)})
        # A folder without special use: no top-level specialUse.
        self.fake.add_message(ACC, "Zeta", raw_message(3))
        self.fake.flush_webhooks()
        last = json.loads(rx.got[-1][1])
        self.assertEqual(last["path"], "Zeta")
        self.assertNotIn("specialUse", last)
        self.assertNotIn("messageSpecialUse", last["data"])
        # The log: answers, latencies, the signed bytes.
        log = self.fake.webhook_log()
        self.assertEqual(len(log), 9)
        self.assertEqual({(e["status"], e["answer"], e["attempt"]) for e in log},
                         {(200, b"ok", 0)})
        for entry, (headers, body) in zip(log, rx.got):
            self.assertEqual(entry["body"], body)
            self.assertEqual(entry["event_id"], headers["X-EE-Wh-Event-Id"])
            self.assertGreaterEqual(entry["latency"], 0)
        self.assertEqual(len({e["event_id"] for e in log}), 9)
        self.assertEqual([e["job_id"] for e in log], sorted(e["job_id"] for e in log))
        self.assertEqual(len(self.fake.webhook_log("messageNew", ACC)), 3)

    def test_webhook_settings(self):
        rx = self.receiver()
        self.fake.configure_webhooks(rx.url, events=None)      # unset allowlist: nothing
        self.fake.add_message(ACC, "INBOX", raw_message(1))
        self.assertEqual(self.fake.pending_webhooks(), [])
        self.fake.configure_webhooks(rx.url, events=["messageDeleted"])
        mid = self.fake.add_message(ACC, "INBOX", raw_message(2))
        self.fake.delete_message(ACC, mid)
        self.fake.configure_webhooks(rx.url, enabled=False)
        self.fake.add_message(ACC, "INBOX", raw_message(3))
        self.fake.flush_webhooks()
        self.assertEqual([json.loads(b)["event"] for _, b in rx.got], ["messageDeleted"])
        # auto_webhooks off: the sync still runs, nothing is queued or replayed.
        self.fake.configure_webhooks(rx.url)
        self.fake.auto_webhooks = False
        quiet = self.fake.add_message(ACC, "INBOX", raw_message(4))
        self.fake.auto_webhooks = True
        self.fake.set_flags(ACC, quiet, ["\\Seen"])
        self.fake.flush_webhooks()
        self.assertEqual([json.loads(b)["event"] for _, b in rx.got][1:], ["messageUpdated"])
        # POST /v1/settings, custom headers, Basic auth from the URL.
        other = self.receiver()
        parts = urllib.parse.urlsplit(other.url)
        url = "http://us%%40er:p%%3Ass@%s%s" % (parts.netloc, parts.path)
        status, _, data = self.get("/v1/settings", method="POST", body={
            "webhooks": url, "webhookEvents": ["*"], "webhooksEnabled": True,
            "webhooksCustomHeaders": [{"key": "X-Tenant", "value": "t1"}],
            "serviceSecret": "new-secret"})
        self.assertEqual((status, data["updated"]),
                         (200, ["webhooks", "webhookEvents", "webhooksEnabled",
                                "webhooksCustomHeaders", "serviceSecret"]))
        self.assertEqual(self.fake.service_secret, "new-secret")
        self.assertEqual(self.get("/v1/settings", method="POST", body={"bogus": 1})[0], 400)
        self.fake.add_message(ACC, "INBOX", raw_message(5))
        self.fake.flush_webhooks()
        headers, body = other.got[-1]
        self.assertEqual(headers["X-Tenant"], "t1")
        self.assertEqual(base64.b64decode(headers["Authorization"].split()[1]), b"us@er:p:ss")
        self.assertTrue(verify_signature("new-secret", body, headers["X-EE-Wh-Signature"]))
        self.assertFalse(verify_signature(SECRET, body, headers["X-EE-Wh-Signature"]))
        # An account's own URL replaces the global one, its headers come last.
        own = self.receiver()
        self.fake.add_account("acc2", webhooks=own.url, custom_headers={"X-Tenant": "t2"})
        self.fake.add_mailbox("acc2", "INBOX")
        self.fake.add_message("acc2", "INBOX", raw_message(6))
        self.fake.flush_webhooks()
        self.assertEqual([json.loads(b)["event"] for _, b in own.got],
                         ["accountInitialized", "mailboxNew", "messageNew"])
        self.assertEqual(own.got[0][0]["X-Tenant"], "t2")
        self.assertEqual(json.loads(own.got[0][1])["data"], {"initialized": True})
        self.assertEqual(len(other.got), 1)

    def test_account_state_webhooks(self):
        rx = self.receiver()
        self.fake.configure_webhooks(rx.url)
        self.fake.set_account_state(ACC, "authenticationError")
        self.fake.set_account_state(ACC, "authenticationError")      # same error: once
        self.fake.set_account_state(ACC, "authenticationError",
                                    {"response": "Token revoked",
                                     "serverResponseCode": "OAUTH"})
        self.fake.set_account_state(ACC, "connectError")
        # Changes while not connected are found by the reconnect sync.
        mid = self.fake.add_message(ACC, "INBOX", raw_message(1))
        self.fake.flush_webhooks()
        self.assertEqual([json.loads(b)["event"] for _, b in rx.got],
                         ["authenticationError", "authenticationError", "connectError"])
        first = json.loads(rx.got[0][1])
        self.assertEqual(first["data"], {"response": "Authentication failed",
                                         "serverResponseCode": "AUTHENTICATIONFAILED"})
        self.assertNotIn("path", first)
        self.fake.set_account_state(ACC, "connected")
        self.fake.flush_webhooks()
        self.assertEqual(json.loads(rx.got[-1][1])["event"], "messageNew")
        self.assertEqual(json.loads(rx.got[-1][1])["data"]["id"], mid)
        self.fake.set_account_state(ACC, "authenticationError")       # cleared on connect
        self.fake.flush_webhooks()
        self.assertEqual(json.loads(rx.got[-1][1])["event"], "authenticationError")

    def test_webhook_retries(self):
        rx = self.receiver(status=503)
        self.fake.configure_webhooks(rx.url)
        self.fake.webhook_attempts = 3
        self.fake.webhook_retry_delay = 0.01
        self.fake.add_message(ACC, "INBOX", raw_message(1))
        self.fake.flush_webhooks()
        self.assertEqual(len(rx.got), 3)
        self.assertEqual({h["X-EE-Wh-Event-Id"] for h, _ in rx.got}, {rx.got[0][0]["X-EE-Wh-Event-Id"]})
        self.assertEqual({h["X-EE-Wh-Id"] for h, _ in rx.got}, {rx.got[0][0]["X-EE-Wh-Id"]})
        self.assertEqual([h["X-EE-Wh-Attempts-Made"] for h, _ in rx.got], ["0", "1", "2"])
        self.assertEqual([e["status"] for e in self.fake.webhook_log()], [503] * 3)
        rx.status = 302                                # a 3xx is final
        self.fake.add_message(ACC, "INBOX", raw_message(2))
        self.fake.flush_webhooks()
        self.assertEqual(len(rx.got), 4)
        rx.close()                                     # nobody listening: logged errors
        self.fake.add_message(ACC, "INBOX", raw_message(3))
        self.fake.flush_webhooks()
        last = self.fake.webhook_log()[-1]
        self.assertIsNone(last["status"])
        self.assertTrue(last["error"])


    # ---- (c) error injection
    def test_forged_webhooks(self):
        rx = self.receiver()
        self.fake.configure_webhooks(rx.url)
        for kind in ("bad_signature", "wrong_secret", "no_signature", "padded_signature",
                     "tampered_body", "no_event_id"):
            self.fake.forge_next_webhooks(kind)
            self.fake.add_message(ACC, "INBOX", raw_message(len(rx.got) + 1))
            self.fake.flush_webhooks()
            headers, body = rx.got[-1]
            sig = headers.get("X-EE-Wh-Signature")
            if kind == "no_event_id":
                self.assertNotIn("X-EE-Wh-Event-Id", headers)
                self.assertTrue(verify_signature(SECRET, body, sig))
            else:
                self.assertTrue(headers["X-EE-Wh-Event-Id"])
                self.assertFalse(verify_signature(SECRET, body, sig), kind)
            if kind == "no_signature":
                self.assertIsNone(sig)
            if kind == "padded_signature":
                self.assertTrue(sig.endswith("="))
                self.assertEqual(sig.rstrip("="), self.fake.webhook_log()[-1]["headers"][
                    "X-EE-Wh-Signature"].rstrip("="))
            self.assertEqual(self.fake.webhook_log()[-1]["forge"], kind)
        # The next delivery is genuine again.
        self.fake.add_message(ACC, "INBOX", raw_message(99))
        self.fake.flush_webhooks()
        self.assertTrue(verify_signature(SECRET, rx.got[-1][1],
                                         rx.got[-1][0]["X-EE-Wh-Signature"]))
        self.assertEqual(self.fake.sign(rx.got[-1][1]), rx.got[-1][0]["X-EE-Wh-Signature"])
        with self.assertRaises(ValueError):
            self.fake.forge_next_webhooks("nonsense")

    def test_duplicates_and_direct_sends(self):
        rx = self.receiver()
        self.fake.configure_webhooks(rx.url)
        self.fake.forge_next_webhooks("duplicate")
        self.fake.add_message(ACC, "INBOX", raw_message(1))
        self.fake.flush_webhooks()
        self.assertEqual(len(rx.got), 2)
        self.assertEqual(rx.got[0], rx.got[1])        # same bytes, same event id
        event_id = rx.got[0][0]["X-EE-Wh-Event-Id"]
        self.assertEqual(self.fake.redeliver(event_id), 200)
        headers, body = rx.got[2]
        self.assertEqual((headers["X-EE-Wh-Event-Id"], body), (event_id, rx.got[0][1]))
        self.assertEqual(headers["X-EE-Wh-Attempts-Made"], "1")
        # A webhook for an account the receiver was not configured for, and
        # one the fake does not even know.
        status, answer, eid = self.fake.send_webhook(
            "messageNew", "stranger", {"id": "AAAAAQAAAAE", "uid": 1}, path="INBOX",
            special_use="\\Inbox")
        self.assertEqual((status, answer), (200, b"ok"))
        payload = json.loads(rx.got[-1][1])
        self.assertEqual((payload["account"], payload["event"], payload["path"],
                          payload["specialUse"]), ("stranger", "messageNew", "INBOX", "\\Inbox"))
        self.assertEqual(rx.got[-1][0]["X-EE-Wh-Event-Id"], eid)
        self.assertTrue(verify_signature(SECRET, rx.got[-1][1],
                                         rx.got[-1][0]["X-EE-Wh-Signature"]))
        # A chosen event id twice, and a forged direct send.
        self.fake.send_webhook("messageDeleted", ACC, {"id": "x", "uid": 1}, event_id="e-1")
        self.fake.send_webhook("messageDeleted", ACC, {"id": "x", "uid": 1}, event_id="e-1")
        self.assertEqual([h["X-EE-Wh-Event-Id"] for h, _ in rx.got[-2:]], ["e-1", "e-1"])
        other = self.receiver(status=401)
        status, _, _ = self.fake.send_webhook("connectError", ACC, {"response": "x"},
                                              url=other.url, forge="bad_signature")
        self.assertEqual(status, 401)
        self.assertFalse(verify_signature(SECRET, other.got[0][1],
                                          other.got[0][0]["X-EE-Wh-Signature"]))
        self.assertEqual(self.fake.webhook_log()[-1]["status"], 401)

    def test_rest_injection(self):
        url = "/v1/account/%s/messages?path=INBOX" % ACC
        self.fake.fail_next("messages", 401)
        status, hdrs, data = self.get(url)
        self.assert_boom(status, data, 401, "Bad token")
        self.assertEqual(hdrs["WWW-Authenticate"], 'Bearer error="Bad token"')
        self.fake.fail_next("messages", 500, count=2, message="boom")
        self.assert_boom(*self.get(url)[::2], 500, "boom")
        self.assertEqual(self.get(url)[0], 500)
        self.assertEqual(self.get(url)[0], 200)
        self.fake.fail_next("*", 503, account=ACC, state="connecting")
        status, _, data = self.get("/v1/account/%s/mailboxes" % ACC)
        self.assert_boom(status, data, 503, code="WorkerNotAvailable")
        self.assertEqual(data["state"], "connecting")
        self.fake.fail_next("source", 504)
        mid = self.fake.add_message(ACC, "INBOX", raw_message(1))
        status, _, data = self.get("/v1/account/%s/message/%s/source" % (ACC, mid))
        self.assert_boom(status, data, 504, code="Timeout")
        self.fake.fail_next("messages", 429, ttl=7)
        status, hdrs, data = self.get(url)
        self.assert_boom(status, data, 429, "Rate limit exceeded")
        self.assertEqual((data["ttl"], hdrs["X-RateLimit-Reset"]), (7, "7"))
        self.fake.fail_next("account", 503, count=None, account="other")
        self.assertEqual(self.get("/v1/account/%s" % ACC)[0], 200)   # only "other" fails
        self.fake.clear_failures()
        self.assertEqual([e["status"] for e in self.fake.call_log("messages")],
                         [401, 500, 500, 200, 429])
        with self.assertRaises(ValueError):
            self.fake.fail_next("nonsense", 500)

    def test_token_rate_limit(self):
        token = self.fake.add_token(rate_limit=(2, 3600))
        url = "/v1/account/%s" % ACC
        status, hdrs, _ = self.get(url, token=token)
        self.assertEqual((status, hdrs["X-RateLimit-Limit"], hdrs["X-RateLimit-Remaining"]),
                         (200, "2", "1"))
        self.assertEqual(self.get(url, token=token)[1]["X-RateLimit-Remaining"], "0")
        status, hdrs, data = self.get(url, token=token)
        self.assert_boom(status, data, 429, "Rate limit exceeded")
        self.assertGreater(data["ttl"], 0)
        self.assertEqual(hdrs["X-RateLimit-Limit"], "2")
        self.assertEqual(hdrs["X-RateLimit-Reset"], str(data["ttl"]))
        self.assertEqual(self.get(url)[0], 200)        # other tokens are not limited
        self.assertNotIn("X-RateLimit-Limit", self.get(url)[1])

    def test_standalone_cli(self):
        workdir = tempfile.mkdtemp(prefix="fake-ee-")
        self.addCleanup(shutil.rmtree, workdir, True)
        rx = self.receiver()
        proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "fake_emailengine.py"), "--dir", workdir,
            "--webhook-url", rx.url, "--every", "0.2"], stdout=subprocess.PIPE, text=True)
        self.addCleanup(proc.wait, 10)
        self.addCleanup(proc.terminate)
        self.addCleanup(proc.stdout.close)
        info = json.loads(proc.stdout.readline())
        with open(info["token_file"], encoding="utf-8") as f:
            token = f.read().strip()
        with open(info["service_secret_file"], encoding="utf-8") as f:
            secret = f.read().strip()
        self.assertEqual(os.stat(info["token_file"]).st_mode & 0o777, 0o600)
        status, _, data = call("%s/v1/account/%s/messages?path=INBOX" % (
            info["url"], info["ee_account"]), token=token)
        self.assertEqual(status, 200)
        self.assertGreaterEqual(data["total"], 3)
        deadline = time.monotonic() + 30
        while not any(json.loads(b)["event"] == "messageNew" for _, b in rx.got):
            self.assertLess(time.monotonic(), deadline, "no messageNew from --every")
            time.sleep(0.05)
        headers, body = next((h, b) for h, b in rx.got if json.loads(b)["event"] == "messageNew")
        self.assertTrue(verify_signature(secret, body, headers["X-EE-Wh-Signature"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)

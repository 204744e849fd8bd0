"""The fake Microsoft Graph / identity platform speaks the documented formats.

No daemon: every endpoint of tests/integration/fake_graph.py is called with
urllib, the way the graph.so driver will call Graph, and the answers are
checked against the shapes in ../shared/reference/providers.md §3. The push
side is checked with a small receiver written here that answers the
validation handshake the way the docs require.
"""

import base64
import http.server
import json
import os
import sys
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_graph  # noqa: E402
from fake_graph import FakeGraph  # noqa: E402

USER = "alice@contoso.onmicrosoft.com"
OTHER = "bob@contoso.onmicrosoft.com"
CLIENT, SECRET = "11111111-2222-3333-4444-555555555555", "s3cret~value"
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def raw_message(n, subject=None, sender="Bob Example <bob@example.org>", extra=""):
    return ("From: %s\r\nTo: Alice <%s>\r\nCc: carol@example.org\r\nSubject: %s\r\n"
            "Message-ID: <m%d@example.org>\r\nDate: Mon, 07 Dec 2026 01:00:%02d +0000\r\n"
            "%sMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Body number %d.\r\n" % (sender, USER, subject or "msg %d" % n, n, n % 60, extra,
                                     n)).encode()


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
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, hdrs, data = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, hdrs, data = exc.code, exc.headers, exc.read()
    if hdrs.get("Content-Type", "").startswith("application/json") and data:
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


class Receiver:
    """A notification endpoint: answers the validation handshake as the
    docs require (200, text/plain, the decoded token) unless `validation`
    says otherwise, records every notification POST and answers `status`."""

    def __init__(self):
        self.validations = []      # (path with query, headers, decoded token)
        self.posts = []            # (path, headers, parsed JSON)
        self.malformed = []        # bodies that were not JSON
        self.validation = "ok"     # ok | encoded | html | error | slow
        self.status = 202
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parsed = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parsed.query)
                if "validationToken" in query:
                    token = query["validationToken"][0]
                    owner.validations.append((self.path, dict(self.headers.items()), token,
                                              body))
                    mode = owner.validation
                    if mode == "slow":
                        time.sleep(2)
                    answer = token.encode()
                    ctype = "text/plain; charset=utf-8"
                    status = 200
                    if mode == "encoded":
                        answer = parsed.query.split("validationToken=", 1)[1].encode()
                    elif mode == "html":
                        ctype = "text/html"
                    elif mode == "error":
                        status = 500
                    self.reply(status, answer, ctype)
                    return
                try:
                    parsed_body = json.loads(body)
                except ValueError:
                    owner.malformed.append(body)
                    self.reply(400, b"", "text/plain")
                    return
                owner.posts.append((self.path, dict(self.headers.items()), parsed_body))
                self.reply(owner.status, b"", "text/plain")

            def reply(self, status, body, ctype):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass    # the fake gave up waiting (validation timeout)

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def items(self, path_prefix=""):
        return [i for p, _, body in self.posts if p.startswith(path_prefix)
                for i in body["value"]]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class GraphTestBase(unittest.TestCase):
    def setUp(self):
        self.fake = FakeGraph().start()
        self.fake.add_client(CLIENT, SECRET, roles=("Mail.Read", "Mail.ReadWrite"))
        self.fake.add_user(USER)
        self.fake.add_user(OTHER)
        self.token = self.fake.issue_access_token(CLIENT)
        self.api = self.fake.api_url + "/users/" + USER

    def tearDown(self):
        self.fake.stop()

    def get(self, path, method="GET", **kw):
        url = path if path.startswith("http") else self.api + path
        return call(url, method, token=kw.pop("token", self.token), **kw)

    def assert_graph_error(self, status, data, code, want_code):
        self.assertEqual(status, want_code)
        self.assertEqual(data["error"]["code"], code)
        self.assertIsInstance(data["error"]["message"], str)
        inner = data["error"]["innerError"]
        self.assertIn("request-id", inner)
        self.assertIn("date", inner)

    def delta_all(self, url, headers=None):
        """Follow nextLinks to the deltaLink: (items, deltaLink, pages)."""
        items, pages = [], 0
        while True:
            status, _, data = self.get(url, headers=headers)
            self.assertEqual(status, 200, data)
            pages += 1
            items.extend(data["value"])
            if "@odata.deltaLink" in data:
                self.assertNotIn("@odata.nextLink", data)
                return items, data["@odata.deltaLink"], pages
            url = data["@odata.nextLink"]


class TokenTest(GraphTestBase):
    def token_call(self, form, tenant=None, headers=None):
        return call(self.fake.token_url(tenant), "POST", form=form, headers=headers)

    def assert_aad_error(self, status, data, want_status, error, number):
        self.assertEqual((status, data["error"]), (want_status, error))
        self.assertEqual(data["error_codes"], [number])
        self.assertTrue(data["error_description"].startswith("AADSTS%d: " % number))
        for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
            self.assertIn(key, data)
        self.assertIn("\r\nTrace ID: ", data["error_description"])

    def test_client_credentials(self):
        form = {"grant_type": "client_credentials", "client_id": CLIENT,
                "client_secret": SECRET, "scope": fake_graph.DEFAULT_SCOPE}
        status, hdrs, data = self.token_call(form)
        self.assertEqual(status, 200)
        self.assertEqual(data["token_type"], "Bearer")
        self.assertIsInstance(data["expires_in"], int)
        self.assertIsInstance(data["ext_expires_in"], int)
        self.assertNotIn("refresh_token", data)
        self.assertEqual(self.get("/mailFolders", token=data["access_token"])[0], 200)
        # The tenant by domain name, and the secret by HTTP Basic.
        basic = base64.b64encode(("%s:%s" % (CLIENT, SECRET)).encode()).decode()
        status, _, data = self.token_call(
            {"grant_type": "client_credentials", "scope": fake_graph.DEFAULT_SCOPE},
            tenant="contoso.onmicrosoft.com", headers={"Authorization": "Basic " + basic})
        self.assertEqual(status, 200)

        status, _, data = self.token_call(dict(form, client_secret="wrong"))
        self.assert_aad_error(status, data, 401, "invalid_client", 7000215)
        status, _, data = self.token_call(dict(form, client_id="nope"))
        self.assert_aad_error(status, data, 400, "unauthorized_client", 700016)
        status, _, data = self.token_call(dict(form, scope=fake_graph.GRAPH + "/Mail.Read"))
        self.assert_aad_error(status, data, 400, "invalid_scope", 1002012)
        status, _, data = self.token_call(form, tenant="common")
        self.assert_aad_error(status, data, 400, "invalid_request", 50194)
        status, _, data = self.token_call(form, tenant="unknown.example")
        self.assert_aad_error(status, data, 400, "invalid_request", 90002)
        status, _, data = self.token_call(dict(form, grant_type="password"))
        self.assert_aad_error(status, data, 400, "unsupported_grant_type", 70003)

    def test_refresh_rotation_and_errors(self):
        rt = self.fake.add_refresh_token(CLIENT, USER, ("Mail.Read", "offline_access"))
        form = {"grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET,
                "refresh_token": rt,
                "scope": fake_graph.GRAPH + "/Mail.Read offline_access"}
        status, _, data = self.token_call(form, tenant="organizations")
        self.assertEqual(status, 200)
        self.assertEqual(data["scope"], fake_graph.GRAPH + "/Mail.Read")
        new = data["refresh_token"]
        self.assertNotEqual(new, rt)
        delegated = data["access_token"]
        # Delegated: /me is its own mailbox; another mailbox is refused.
        status, _, me = self.get(self.fake.api_url + "/me/mailFolders/inbox", token=delegated)
        self.assertEqual(status, 200)
        self.assertEqual(me["id"], self.fake.folder_id(USER, "inbox"))
        status, _, data = self.get(self.fake.api_url + "/users/%s/mailFolders" % OTHER,
                                   token=delegated)
        self.assert_graph_error(status, data, "ErrorAccessDenied", 403)
        # Rotation: the old token still works (AAD) until strict_rotation.
        self.assertEqual(self.token_call(form)[0], 200)
        self.fake.strict_rotation = True
        status, _, data = self.token_call(dict(form, refresh_token=new))
        self.assertEqual(status, 200)
        status, _, data = self.token_call(dict(form, refresh_token=new))
        self.assert_aad_error(status, data, 400, "invalid_grant", 50173)
        status, _, data = self.token_call(dict(form, refresh_token="0.Aunknown"))
        self.assert_aad_error(status, data, 400, "invalid_grant", 70008)
        status, _, data = self.token_call(dict(form, scope=fake_graph.GRAPH + "/Mail.Send"))
        self.assert_aad_error(status, data, 400, "invalid_grant", 65001)
        self.fake.revoke_refresh_token(rt)
        status, _, data = self.token_call(form)
        self.assert_aad_error(status, data, 400, "invalid_grant", 50173)

    def test_bearer_checks(self):
        status, hdrs, data = self.get("/mailFolders", token=None)
        self.assert_graph_error(status, data, "InvalidAuthenticationToken", 401)
        self.assertIn("Bearer", hdrs["WWW-Authenticate"])
        status, _, data = self.get("/mailFolders", token="garbage")
        self.assert_graph_error(status, data, "InvalidAuthenticationToken", 401)
        self.fake.advance(3600)   # the debug clock expires the token
        status, _, data = self.get("/mailFolders")
        self.assert_graph_error(status, data, "InvalidAuthenticationToken", 401)
        self.assertEqual(data["error"]["message"],
                         "Access token has expired or is not yet valid.")
        token = self.fake.issue_access_token(CLIENT)
        self.assertEqual(self.get("/mailFolders", token=token)[0], 200)
        self.fake.expire_access_tokens()
        self.assertEqual(self.get("/mailFolders", token=token)[0], 401)
        token = self.fake.issue_access_token(CLIENT)
        status, _, data = self.get(self.fake.api_url + "/me/mailFolders", token=token)
        self.assert_graph_error(status, data, "BadRequest", 400)
        status, _, data = self.get(self.fake.api_url + "/users/nobody@x.org/mailFolders",
                                   token=token)
        self.assert_graph_error(status, data, "ErrorInvalidUser", 404)
        # Permissions: no Mail.ReadWrite, no move.
        self.fake.add_client("ro", "s", roles=("Mail.ReadBasic.All",))
        ro = self.fake.issue_access_token("ro")
        self.assertEqual(self.get("/mailFolders", token=ro)[0], 200)
        iid = self.fake.add_message(USER, raw_message(1))
        status, _, data = self.get("/messages/%s/$value" % iid, token=ro)
        self.assert_graph_error(status, data, "ErrorAccessDenied", 403)
        status, _, data = self.get("/messages/%s/move" % iid, "POST", token=ro,
                                   body={"destinationId": "archive"})
        self.assert_graph_error(status, data, "ErrorAccessDenied", 403)


class FolderTest(GraphTestBase):
    def test_folders_children_paging_well_known(self):
        projects = self.fake.add_folder(USER, "Projects", parent="inbox")
        sub = self.fake.add_folder(USER, "2026", parent=projects)
        self.fake.add_folder(USER, "Top A")
        self.fake.add_folder(USER, "Top B")
        self.fake.add_folder(USER, "top c")
        self.fake.add_folder(USER, "Secret", hidden=True)
        self.fake.add_message(USER, raw_message(1), folder=sub)
        status, _, data = self.get("/mailFolders")
        self.assertEqual(status, 200)
        self.assertEqual(len(data["value"]), 10)      # default page
        names = [f["displayName"] for f in data["value"]]
        status, _, more = self.get(data["@odata.nextLink"])
        self.assertEqual(status, 200)
        self.assertNotIn("@odata.nextLink", more)
        names += [f["displayName"] for f in more["value"]]
        self.assertEqual(sorted(names, key=str.lower), names)
        self.assertEqual(len(names), 11)  # 8 default + Top A, Top B, top c
        self.assertNotIn("Secret", names)
        status, _, data = self.get("/mailFolders?includeHiddenFolders=true&$top=50")
        self.assertIn("Secret", [f["displayName"] for f in data["value"]])
        for folder in data["value"]:
            self.assertEqual(set(folder), set(fake_graph.FOLDER_PROPS))
            self.assertNotIn("wellKnownName", folder)   # beta only
        inbox = [f for f in data["value"] if f["displayName"] == "Inbox"][0]
        self.assertEqual(inbox["childFolderCount"], 1)
        # Well-known names address the folders and give their ids.
        for wk, name in fake_graph.DEFAULT_FOLDERS:
            status, _, one = self.get("/mailFolders/" + wk)
            self.assertEqual((status, one["displayName"]), (200, name))
            self.assertEqual(one["id"], self.fake.folder_id(USER, wk))
        status, _, one = self.get("/mailFolders('Inbox')")   # names are case-insensitive
        self.assertEqual(one["id"], inbox["id"])
        status, _, kids = self.get("/mailFolders/%s/childFolders" % inbox["id"])
        self.assertEqual([k["displayName"] for k in kids["value"]], ["Projects"])
        self.assertEqual(kids["value"][0]["parentFolderId"], inbox["id"])
        self.assertEqual(kids["value"][0]["childFolderCount"], 1)
        status, _, kids = self.get("/mailFolders/%s/childFolders?$select=displayName"
                                   % urllib.parse.quote(projects, safe=""))
        self.assertEqual(kids["value"], [{"id": sub, "displayName": "2026"}])
        status, _, one = self.get("/mailFolders/" + sub)
        self.assertEqual((one["totalItemCount"], one["unreadItemCount"]), (1, 1))
        status, _, data = self.get("/mailFolders/AAMkADdoesnotexistdoesnotexistAAA=")
        self.assert_graph_error(status, data, "ErrorItemNotFound", 404)
        status, _, data = self.get("/mailFolders?$select=bogus")
        self.assertEqual(status, 400)
        status, _, user = self.get("")
        self.assertEqual((status, user["userPrincipalName"]), (200, USER))


class MessageTest(GraphTestBase):
    def test_list_order_top_select_filter(self):
        base = fake_graph.parse_datetime("2026-12-01T00:00:00Z")
        ids = [self.fake.add_message(USER, raw_message(i), received=base + i * 3600)
               for i in range(25)]
        self.fake.add_message(USER, raw_message(99), folder="archive", received=base)
        status, _, data = self.get("/mailFolders/inbox/messages?$top=10&"
                                   "$orderby=receivedDateTime%20desc&"
                                   "$select=subject,receivedDateTime,from", headers=IMMUTABLE)
        self.assertEqual(status, 200)
        self.assertEqual([m["id"] for m in data["value"]], ids[::-1][:10])
        for msg in data["value"]:
            self.assertEqual(set(msg), {"@odata.etag", "id", "subject", "receivedDateTime",
                                        "from"})
        self.assertIn("$skip=10", data["@odata.nextLink"])
        got = [m["id"] for m in data["value"]]
        url = data["@odata.nextLink"]
        while url:
            status, _, page = self.get(url, headers=IMMUTABLE)
            got += [m["id"] for m in page["value"]]
            url = page.get("@odata.nextLink")
        self.assertEqual(got, ids[::-1])
        # The default order is receivedDateTime desc; asc on request.
        status, _, data = self.get("/mailFolders/inbox/messages?$top=3", headers=IMMUTABLE)
        self.assertEqual([m["id"] for m in data["value"]], ids[::-1][:3])
        status, _, data = self.get("/mailFolders/inbox/messages?$top=3&"
                                   "$orderby=receivedDateTime%20asc", headers=IMMUTABLE)
        self.assertEqual([m["id"] for m in data["value"]], ids[:3])
        # $filter on receivedDateTime (backfill older than a point).
        status, _, data = self.get(
            "/mailFolders/inbox/messages?$filter=" + urllib.parse.quote(
                "receivedDateTime lt 2026-12-01T05:00:00Z") + "&$top=100", headers=IMMUTABLE)
        self.assertEqual([m["id"] for m in data["value"]], ids[:5][::-1])
        status, _, data = self.get(
            "/mailFolders/inbox/messages?$filter=" + urllib.parse.quote(
                "receivedDateTime ge 2026-12-01T20:00:00Z and receivedDateTime lt "
                "2026-12-01T22:00:00Z"), headers=IMMUTABLE)
        self.assertEqual([m["id"] for m in data["value"]], [ids[21], ids[20]])
        status, _, data = self.get("/mailFolders/inbox/messages?$filter=" +
                                   urllib.parse.quote("subject eq 'x'"))
        self.assertEqual(status, 400)
        status, _, data = self.get("/messages?$top=100")
        self.assertEqual(len(data["value"]), 26)    # the whole mailbox

    def test_get_fields_and_value(self):
        raw = ("From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: a@x.org, B <b@x.org>\r\n"
               "Reply-To: r@x.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
               "Message-ID: <abc@example.org>\r\nDate: Sun, 06 Dec 2026 23:00:00 +0100\r\n"
               "Importance: High\r\nMIME-Version: 1.0\r\n"
               "Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
               "Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>there</b></p>\r\n"
               "--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
               "filename=a.pdf\r\n\r\nPDF\r\n--XX--\r\n").encode()
        iid = self.fake.add_message(USER, raw, received=fake_graph.parse_datetime(
            "2026-12-07T00:00:05Z"))
        rest = self.fake.message_id(USER, iid)
        status, _, msg = self.get("/messages/" + urllib.parse.quote(rest, safe=""))
        self.assertEqual(status, 200)
        self.assertEqual(msg["id"], rest)
        self.assertEqual(msg["subject"], "Grüße")
        self.assertEqual(msg["from"], {"emailAddress": {"name": "Jürgen",
                                                        "address": "j@example.org"}})
        self.assertEqual(msg["sender"], msg["from"])
        self.assertEqual(msg["toRecipients"], [
            {"emailAddress": {"name": "a@x.org", "address": "a@x.org"}},
            {"emailAddress": {"name": "B", "address": "b@x.org"}}])
        self.assertEqual(msg["replyTo"][0]["emailAddress"]["address"], "r@x.org")
        self.assertEqual(msg["receivedDateTime"], "2026-12-07T00:00:05Z")
        self.assertEqual(msg["sentDateTime"], "2026-12-06T22:00:00Z")
        self.assertEqual(msg["internetMessageId"], "<abc@example.org>")
        self.assertEqual((msg["hasAttachments"], msg["importance"]), (True, "high"))
        self.assertEqual(msg["bodyPreview"], "Hello there")
        self.assertEqual(msg["body"]["contentType"], "html")
        self.assertEqual(msg["parentFolderId"], self.fake.folder_id(USER, "inbox"))
        self.assertEqual((msg["isRead"], msg["isDraft"], msg["flag"]),
                         (False, False, {"flagStatus": "notFlagged"}))
        self.assertEqual(msg["@odata.etag"], 'W/"%s"' % msg["changeKey"])
        self.assertNotIn("internetMessageHeaders", msg)
        status, hdrs, msg = self.get("/messages/%s?$select=internetMessageHeaders,body" % rest,
                                     headers={"Prefer": 'outlook.body-content-type="text"'})
        self.assertIn({"name": "Importance", "value": "High"}, msg["internetMessageHeaders"])
        self.assertEqual(msg["body"]["contentType"], "text")
        self.assertIn("outlook.body-content-type", hdrs["Preference-Applied"])
        status, hdrs, body = self.get("/messages/%s/$value" % rest)
        self.assertEqual((status, body), (200, raw))
        self.assertTrue(hdrs["Content-Type"].startswith("text/plain"))
        self.assertFalse(self.fake.message(USER, iid)["is_read"])   # $value keeps unread
        status, _, body = self.get("/mailFolders/inbox/messages/%s/$value" % iid)
        self.assertEqual((status, body), (200, raw))
        status, _, data = self.get("/mailFolders/archive/messages/" + rest)
        self.assert_graph_error(status, data, "ErrorItemNotFound", 404)
        status, _, data = self.get("/messages/AAMkADnope=")
        self.assert_graph_error(status, data, "ErrorItemNotFound", 404)

    def test_sparse_summaries(self):
        iid = self.fake.add_message(USER, raw_message(1), sparse=("from", "subject"),
                                    sparse_reads=2)
        status, _, data = self.get("/mailFolders/inbox/messages?$select=subject,from,isRead",
                                   headers=IMMUTABLE)
        self.assertEqual(set(data["value"][0]), {"@odata.etag", "id", "isRead"})
        items, _, _ = self.delta_all("/mailFolders/inbox/messages/delta?$select=subject,from")
        self.assertNotIn("subject", items[0])
        status, _, msg = self.get("/messages/" + iid)           # repair read 1
        self.assertNotIn("from", msg)
        status, _, msg = self.get("/messages/" + iid)           # repair read 2
        self.assertNotIn("from", msg)
        status, _, msg = self.get("/messages/" + iid)           # complete now
        self.assertEqual(msg["subject"], "msg 1")
        self.assertEqual(msg["from"]["emailAddress"]["address"], "bob@example.org")
        other = self.fake.add_message(USER, raw_message(2), sparse=("subject",))
        self.fake.sparse_style = "null"
        status, _, msg = self.get("/messages/" + other)
        self.assertIsNone(msg["subject"])
        self.fake.complete_sparse(USER, other)
        status, _, msg = self.get("/messages/" + other)
        self.assertEqual(msg["subject"], "msg 2")


class DeltaTest(GraphTestBase):
    def test_rounds_next_and_delta_links(self):
        ids = [self.fake.add_message(USER, raw_message(i)) for i in range(5)]
        self.fake.add_message(USER, raw_message(9), folder="archive")
        url = "/mailFolders/inbox/messages/delta?$select=subject,isRead,from"
        status, hdrs, page = self.get(url, headers=dict(IMMUTABLE, Prefer=(
            'odata.maxpagesize=2, IdType="ImmutableId"')))
        self.assertEqual(status, 200)
        self.assertIn("odata.maxpagesize=2", hdrs["Preference-Applied"])
        self.assertIn('IdType="ImmutableId"', hdrs["Preference-Applied"])
        self.assertEqual(len(page["value"]), 2)
        self.assertTrue(page["@odata.nextLink"].startswith(self.fake.api_url + "/users/"))
        self.assertIn("$skiptoken=", page["@odata.nextLink"])
        for item in page["value"]:
            self.assertEqual(item["@odata.type"], "#microsoft.graph.message")
            self.assertEqual(set(item), {"@odata.type", "@odata.etag", "id", "subject",
                                         "isRead", "from"})
        pref = {"Prefer": 'odata.maxpagesize=2, IdType="ImmutableId"'}
        items, link, pages = self.delta_all(page["@odata.nextLink"], pref)
        items = page["value"] + items
        self.assertEqual(pages, 2)
        self.assertEqual(sorted(i["id"] for i in items), sorted(ids))
        self.assertIn("/mailFolders('%s')/messages/delta?$deltatoken="
                      % self.fake.folder_id(USER, "inbox"), link)
        # The two preferences may come as two Prefer headers.
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.fake.port, timeout=30)
        conn.putrequest("GET", urllib.parse.urlsplit(link).path + "?" +
                        urllib.parse.urlsplit(link).query)
        conn.putheader("Authorization", "Bearer " + self.token)
        conn.putheader("Prefer", "odata.maxpagesize=2")
        conn.putheader("Prefer", 'IdType="ImmutableId"')
        conn.endheaders()
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertIn('IdType="ImmutableId"', resp.headers["Preference-Applied"])
        self.assertIn("odata.maxpagesize=2", resp.headers["Preference-Applied"])
        resp.read()
        conn.close()
        # Nothing changed: an empty round, a deltaLink again.
        items, link, _ = self.delta_all(link, pref)
        self.assertEqual(items, [])
        # Changes: one new, one read, one deleted (+ noise elsewhere).
        new = self.fake.add_message(USER, raw_message(5))
        self.fake.update_message(USER, ids[1], is_read=True)
        self.fake.delete_message(USER, ids[2])
        self.fake.add_message(USER, raw_message(10), folder="archive")
        items, link2, _ = self.delta_all(link, pref)
        by_id = {i["id"]: i for i in items}
        self.assertEqual(set(by_id), {new, ids[1], ids[2]})
        self.assertEqual(by_id[ids[1]]["isRead"], True)
        # $select is carried by the token.
        self.assertEqual(set(by_id[new]), {"@odata.type", "@odata.etag", "id", "subject",
                                           "isRead", "from"})
        self.assertEqual(by_id[ids[2]], {"@odata.type": "#microsoft.graph.message",
                                         "id": ids[2], "@removed": {"reason": "deleted"}})
        # A deltaLink can be replayed (same changes again).
        items, _, _ = self.delta_all(link, pref)
        self.assertEqual({i["id"] for i in items}, {new, ids[1], ids[2]})
        # changeType=created only reports creations.
        status, _, page = self.get("/mailFolders/inbox/messages/delta?changeType=created",
                                   headers=IMMUTABLE)
        _, created_link, _ = self.delta_all(
            page.get("@odata.nextLink") or page["@odata.deltaLink"], IMMUTABLE)
        self.fake.update_message(USER, ids[0], flag="flagged")
        newer = self.fake.add_message(USER, raw_message(6))
        items, _, _ = self.delta_all(created_link, IMMUTABLE)
        self.assertEqual([i["id"] for i in items], [newer])
        status, _, data = self.get("/mailFolders/inbox/messages/delta?changeType=bogus")
        self.assertEqual(status, 400)
        status, _, data = self.get("/messages/delta")
        self.assert_graph_error(status, data, "BadRequest", 400)

    def test_orderby_filter_and_top(self):
        base = fake_graph.parse_datetime("2026-11-01T00:00:00Z")
        ids = [self.fake.add_message(USER, raw_message(i), received=base + i * 86400)
               for i in range(6)]
        items, _, pages = self.delta_all(
            "/mailFolders/inbox/messages/delta?$orderby=receivedDateTime%20desc&$top=4&"
            "$filter=" + urllib.parse.quote("receivedDateTime ge 2026-11-03T00:00:00Z"),
            IMMUTABLE)
        self.assertEqual([i["id"] for i in items], ids[2:][::-1])
        self.assertEqual(pages, 1)
        status, _, data = self.get("/mailFolders/inbox/messages/delta?$filter=" +
                                   urllib.parse.quote("receivedDateTime lt 2026-11-03"))
        self.assertEqual(status, 400)

    def test_expired_tokens(self):
        self.fake.add_message(USER, raw_message(1))
        _, link, _ = self.delta_all("/mailFolders/inbox/messages/delta")
        for code in ("SyncStateNotFound", "resyncRequired", "InvalidSyncStateData",
                     "SyncStateInvalid"):
            self.fake.expire_delta(USER, "inbox", code=code)
            status, _, data = self.get(link)
            self.assert_graph_error(status, data, code, 410)
            _, link, _ = self.delta_all("/mailFolders/inbox/messages/delta")
        # Other folders' tokens survive a folder-scoped expiry.
        _, archive_link, _ = self.delta_all("/mailFolders/archive/messages/delta")
        self.fake.expire_delta(USER, "inbox")
        self.assertEqual(self.get(archive_link)[0], 200)
        self.assertEqual(self.get(link)[0], 410)
        bogus = link.split("$deltatoken=")[0] + "$deltatoken=AAAAbogus"
        status, _, data = self.get(bogus)
        self.assert_graph_error(status, data, "SyncStateNotFound", 410)
        # A round begun without immutable ids cannot go on with them.
        _, link, _ = self.delta_all("/mailFolders/inbox/messages/delta")
        status, _, data = self.get(link, headers=IMMUTABLE)
        self.assert_graph_error(status, data, "SyncStateInvalid", 400)

    def test_moves_and_immutable_ids(self):
        iid = self.fake.add_message(USER, raw_message(1))
        rest = self.fake.message_id(USER, iid)
        _, inbox_link, _ = self.delta_all("/mailFolders/inbox/messages/delta", IMMUTABLE)
        _, arch_link, _ = self.delta_all("/mailFolders/archive/messages/delta", IMMUTABLE)
        _, rest_link, _ = self.delta_all("/mailFolders/inbox/messages/delta")
        new_rest = self.fake.move_message(USER, iid, "archive")
        self.assertNotEqual(new_rest, rest)
        # Without the header the id changed and the old one is gone.
        status, _, data = self.get("/messages/" + rest)
        self.assert_graph_error(status, data, "ErrorItemNotFound", 404)
        status, _, msg = self.get("/messages/" + new_rest)
        self.assertEqual(msg["parentFolderId"], self.fake.folder_id(USER, "archive"))
        # With it, the id is the same before and after.
        status, hdrs, msg = self.get("/messages/" + iid, headers=IMMUTABLE)
        self.assertEqual((status, msg["id"]), (200, iid))
        self.assertEqual(hdrs["Preference-Applied"], 'IdType="ImmutableId"')
        items, _, _ = self.delta_all(inbox_link, IMMUTABLE)
        self.assertEqual(items, [{"@odata.type": "#microsoft.graph.message", "id": iid,
                                  "@removed": {"reason": "deleted"}}])
        items, _, _ = self.delta_all(arch_link, IMMUTABLE)
        self.assertEqual([i["id"] for i in items], [iid])
        self.assertNotIn("@removed", items[0])
        items, rest_link, _ = self.delta_all(rest_link)
        self.assertEqual([(i["id"], "@removed" in i) for i in items], [(rest, True)])
        # Moved out and back between rounds: REST ids see remove + create.
        self.fake.move_message(USER, iid, "junkemail")
        back = self.fake.move_message(USER, iid, "inbox")
        items, _, _ = self.delta_all(rest_link)
        self.assertEqual([(i["id"], "@removed" in i) for i in items], [(back, False)])
        _, rest_link, _ = self.delta_all("/mailFolders/inbox/messages/delta")
        self.fake.move_message(USER, iid, "junkemail")
        again = self.fake.move_message(USER, iid, "inbox")
        items, _, _ = self.delta_all(rest_link)
        self.assertEqual([(i["id"], "@removed" in i) for i in items],
                         [(back, True), (again, False)])


class WriteTest(GraphTestBase):
    def test_create_move_update_delete(self):
        # createMessage in a folder (graph-setup's live test) from JSON.
        status, hdrs, msg = self.get("/mailFolders/inbox/messages", "POST", body={
            "subject": "Grüße live", "body": {"contentType": "html", "content": "<p>hi</p>"},
            "toRecipients": [{"emailAddress": {"name": "Alice", "address": USER}}],
            "from": {"emailAddress": {"address": "probe@contoso.onmicrosoft.com"}}},
            headers=IMMUTABLE)
        self.assertEqual(status, 201)
        self.assertEqual(hdrs["Preference-Applied"], 'IdType="ImmutableId"')
        self.assertEqual((msg["subject"], msg["isDraft"]), ("Grüße live", True))
        self.assertEqual(msg["parentFolderId"], self.fake.folder_id(USER, "inbox"))
        self.assertEqual(msg["toRecipients"][0]["emailAddress"]["address"], USER)
        self.assertEqual(msg["from"]["emailAddress"]["address"],
                         "probe@contoso.onmicrosoft.com")
        status, _, raw = self.get("/messages/%s/$value" % msg["id"])
        self.assertIn(b"Subject: =?utf-8?", raw)
        self.assertIn(b"Message-ID: <", raw)
        # From MIME (base64, text/plain) into Drafts.
        mime = base64.b64encode(raw_message(7))
        status, _, draft = self.get("/messages", "POST", body=mime,
                                    headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 201)
        self.assertEqual(draft["parentFolderId"], self.fake.folder_id(USER, "drafts"))
        self.assertEqual(draft["subject"], "msg 7")
        status, _, data = self.get("/messages", "POST", body=base64.b64encode(b"no headers"),
                                   headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 400)
        # move: 201 with the message; the REST id changes, the immutable not.
        iid = self.fake.add_message(USER, raw_message(1))
        rest = self.fake.message_id(USER, iid)
        status, _, moved = self.get("/messages/%s/move" % rest, "POST",
                                    body={"destinationId": "archive"})
        self.assertEqual(status, 201)
        self.assertNotEqual(moved["id"], rest)
        self.assertEqual(moved["parentFolderId"], self.fake.folder_id(USER, "archive"))
        self.assertEqual(self.get("/messages/" + rest)[0], 404)
        junk = self.fake.folder_id(USER, "junkemail")
        status, _, moved = self.get("/mailFolders/archive/messages/%s/move" % iid, "POST",
                                    body={"destinationId": junk}, headers=IMMUTABLE)
        self.assertEqual((status, moved["id"], moved["parentFolderId"]), (201, iid, junk))
        status, _, data = self.get("/messages/%s/move" % iid, "POST", body={})
        self.assertEqual(status, 400)
        status, _, data = self.get("/messages/%s/move" % iid, "POST",
                                   body={"destinationId": "AAMkADnosuchfolder000000000AAA="})
        self.assert_graph_error(status, data, "ErrorItemNotFound", 404)
        # PATCH isRead / flag / categories.
        status, _, upd = self.get("/messages/" + iid, "PATCH", body={
            "isRead": True, "flag": {"flagStatus": "flagged"}, "categories": ["Red"]},
            headers=IMMUTABLE)
        self.assertEqual(status, 200)
        self.assertEqual((upd["isRead"], upd["flag"]["flagStatus"], upd["categories"]),
                         (True, "flagged", ["Red"]))
        self.assertNotEqual(upd["changeKey"], moved["changeKey"])
        self.assertEqual(self.get("/messages/" + iid, "PATCH", body={"subject": "x"})[0], 400)
        self.assertEqual(self.get("/messages/" + iid, "PATCH",
                                  body={"flag": {"flagStatus": "bogus"}})[0], 400)
        # DELETE.
        self.assertEqual(self.get("/messages/" + iid, "DELETE")[0], 204)
        status, _, data = self.get("/messages/" + iid)
        self.assert_graph_error(status, data, "ErrorItemNotFound", 404)
        self.assertEqual(self.fake.calls("messages.create", USER), 3)
        self.assertEqual(self.fake.calls("messages.move", USER), 4)
        # Unknown routes and verbs.
        self.assertEqual(self.get("/calendar")[0], 400)
        self.assertEqual(self.get("/mailFolders", "DELETE")[0], 405)


class BatchTest(GraphTestBase):
    def test_batch(self):
        iids = [self.fake.add_message(USER, raw_message(i)) for i in range(3)]
        reqs = [{"id": str(n), "method": "GET",
                 "url": "/users/%s/messages/%s?$select=subject" % (USER, iid),
                 "headers": IMMUTABLE} for n, iid in enumerate(iids)]
        reqs.append({"id": "v", "method": "GET",
                     "url": "users/%s/messages/%s/$value" % (USER, iids[0])})
        reqs.append({"id": "x", "method": "GET", "url": "/users/%s/messages/AAMkADnope=" % USER})
        status, _, data = call(self.fake.api_url + "/$batch", "POST", body={"requests": reqs},
                               token=self.token)
        self.assertEqual(status, 200)
        by_id = {r["id"]: r for r in data["responses"]}
        for n, iid in enumerate(iids):
            self.assertEqual(by_id[str(n)]["status"], 200)
            self.assertEqual(by_id[str(n)]["body"]["id"], iid)
            self.assertEqual(by_id[str(n)]["body"]["subject"], "msg %d" % n)
            self.assertIn("Content-Type", by_id[str(n)]["headers"])
        self.assertEqual(base64.b64decode(by_id["v"]["body"]), raw_message(0))
        self.assertEqual(by_id["x"]["status"], 404)
        self.assertEqual(by_id["x"]["body"]["error"]["code"], "ErrorItemNotFound")
        self.assertEqual(self.fake.calls("messages.get", USER), 4)
        self.assertEqual(self.fake.calls("batch"), 1)
        self.assertTrue(all(e["in_batch"] for e in self.fake.call_log("messages.get")))
        # Limits and shape errors are 400 for the whole batch.
        many = [{"id": str(n), "method": "GET", "url": "/users/%s" % USER} for n in range(21)]
        status, _, data = call(self.fake.api_url + "/$batch", "POST",
                               body={"requests": many}, token=self.token)
        self.assert_graph_error(status, data, "BadRequest", 400)
        status, _, data = call(self.fake.api_url + "/$batch", "POST",
                               body={"requests": many[:20]}, token=self.token)
        self.assertEqual([r["status"] for r in data["responses"]], [200] * 20)
        status, _, data = call(self.fake.api_url + "/$batch", "POST",
                               body={"requests": [many[0], many[0]]}, token=self.token)
        self.assertEqual(status, 400)
        status, _, data = call(self.fake.api_url + "/$batch", "POST", body={"requests": [
            {"id": "1", "method": "PATCH", "url": "/users/%s/messages/%s" % (USER, iids[0]),
             "body": {"isRead": True}}]}, token=self.token)
        self.assertEqual(status, 400)     # a body needs Content-Type
        status, _, data = call(self.fake.api_url + "/$batch", "POST", body={"requests": [
            {"id": "1", "method": "PATCH", "url": "/users/%s/messages/%s" % (USER, iids[0]),
             "body": {"isRead": True}, "headers": {"Content-Type": "application/json"}}]},
            token=self.token)
        self.assertEqual(data["responses"][0]["status"], 200)
        self.assertTrue(self.fake.message(USER, iids[0])["is_read"])
        status, _, data = call(self.fake.api_url + "/$batch", "POST", body={"requests": []},
                               token=None)
        self.assertEqual(status, 401)
        # Injected throttling hits parts: per-part 429 with Retry-After.
        self.fake.fail_next("messages.get", 429, retry_after=5)
        status, _, data = call(self.fake.api_url + "/$batch", "POST",
                               body={"requests": reqs[:2]}, token=self.token)
        self.assertEqual(status, 200)
        self.assertEqual(sorted(r["status"] for r in data["responses"]), [200, 429])
        throttled = [r for r in data["responses"] if r["status"] == 429][0]
        self.assertEqual(throttled["headers"]["Retry-After"], "5")
        self.assertEqual(throttled["body"]["error"]["code"], "ApplicationThrottled")
        self.fake.batch_shuffle = True
        status, _, data = call(self.fake.api_url + "/$batch", "POST",
                               body={"requests": many[:20]}, token=self.token)
        self.assertEqual(sorted(r["id"] for r in data["responses"]),
                         sorted(str(n) for n in range(20)))

    def test_batch_parts_count_against_the_mailbox_limit(self):
        iids = [self.fake.add_message(USER, raw_message(i)) for i in range(6)]
        reqs = [{"id": str(n), "method": "GET", "url": "/users/%s/messages/%s" % (USER, iid)}
                for n, iid in enumerate(iids)]
        self.fake.pause("messages.get")
        out = []
        t = threading.Thread(target=lambda: out.append(call(
            self.fake.api_url + "/$batch", "POST", body={"requests": reqs}, token=self.token)))
        t.start()
        wait_for(lambda: self.fake.in_flight(USER) == 4)    # 4 parts at once, like Graph
        status, _, data = self.get("/mailFolders/inbox")     # a 5th request for alice
        self.assert_graph_error(status, data, "ApplicationThrottled", 429)
        self.fake.resume("messages.get")
        t.join()
        status, _, data = out[0]
        self.assertEqual([r["id"] for r in data["responses"]], [str(n) for n in range(6)])
        self.assertEqual([r["status"] for r in data["responses"]], [200] * 6)
        self.assertEqual(self.fake.max_concurrent(USER, "messages.get"), 4)


class ThrottleTest(GraphTestBase):
    def test_fail_next(self):
        self.fake.add_message(USER, raw_message(1))
        self.fake.fail_next("messages.list", 429, retry_after=7)
        status, hdrs, data = self.get("/mailFolders/inbox/messages")
        self.assert_graph_error(status, data, "ApplicationThrottled", 429)
        self.assertEqual(hdrs["Retry-After"], "7")
        self.assertEqual(self.get("/mailFolders/inbox/messages")[0], 200)
        self.fake.fail_next("messages.delta", 503, retry_after=3, count=2)
        for _ in range(2):
            status, hdrs, data = self.get("/mailFolders/inbox/messages/delta")
            self.assert_graph_error(status, data, "ServiceUnavailable", 503)
            self.assertEqual(hdrs["Retry-After"], "3")
        self.assertEqual(self.get("/mailFolders/inbox/messages/delta")[0], 200)
        self.fake.fail_next("messages.delta", 410, code="resyncRequired")
        status, _, data = self.get("/mailFolders/inbox/messages/delta")
        self.assert_graph_error(status, data, "resyncRequired", 410)
        self.fake.fail_next("*", 401, user=OTHER)
        self.assertEqual(self.get("/mailFolders")[0], 200)     # only bob's calls fail
        status, _, data = self.get(self.fake.api_url + "/users/%s/mailFolders" % OTHER)
        self.assert_graph_error(status, data, "InvalidAuthenticationToken", 401)
        self.fake.fail_next("token", 400, aad_error="invalid_grant")
        status, _, data = call(self.fake.token_url(), "POST", form={
            "grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
            "scope": fake_graph.DEFAULT_SCOPE})
        self.assertEqual((status, data["error"]), (400, "invalid_grant"))
        self.fake.fail_next("messages.get", 500, count=None)
        iid = self.fake.message_id(USER, self.fake.add_message(USER, raw_message(2)))
        self.assertEqual(self.get("/messages/" + iid)[0], 500)
        self.assertEqual(self.get("/messages/" + iid)[0], 500)
        self.fake.clear_failures()
        self.assertEqual(self.get("/messages/" + iid)[0], 200)
        log = self.fake.call_log("messages.get", USER)
        self.assertEqual([e["status"] for e in log], [500, 500, 200])
        self.assertIsInstance(log[0]["t"], float)
        self.assertEqual(self.fake.calls("messages.delta", USER), 4)
        self.fake.reset_counts()
        self.assertEqual(self.fake.calls(), 0)
        with self.assertRaises(ValueError):
            self.fake.fail_next("nope", 500)

    def test_mailbox_concurrency_limit(self):
        self.fake.pause("mailFolders.list")
        results = []

        def one():
            results.append(self.get("/mailFolders"))
        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        wait_for(lambda: self.fake.in_flight(USER) == 4 and len(results) == 2)
        for status, hdrs, data in results:
            self.assert_graph_error(status, data, "ApplicationThrottled", 429)
            self.assertEqual(data["error"]["message"],
                             "Application is over its MailboxConcurrency limit.")
            self.assertIn("Retry-After", hdrs)
        # Another mailbox is not limited by alice's requests.
        self.assertEqual(self.get(self.fake.api_url + "/users/%s/mailFolders/inbox"
                                  % OTHER)[0], 200)
        self.fake.resume("mailFolders.list")
        for t in threads:
            t.join()
        self.assertEqual(sorted(r[0] for r in results), [200] * 4 + [429] * 2)
        self.assertEqual(self.fake.max_concurrent(USER), 5)   # 4 served + 1 refused arrival
        self.assertEqual(self.fake.max_concurrent(USER, "mailFolders.list"), 5)
        self.assertEqual(self.fake.throttled(USER), 2)
        self.assertEqual(self.fake.in_flight(USER), 0)

    def test_mailbox_budget(self):
        self.fake.mailbox_budget = 3
        for _ in range(3):
            self.assertEqual(self.get("/mailFolders")[0], 200)
        status, hdrs, data = self.get("/mailFolders")
        self.assert_graph_error(status, data, "ApplicationThrottled", 429)
        self.assertGreaterEqual(int(hdrs["Retry-After"]), 1)
        self.fake.advance(601)
        self.assertEqual(self.get("/mailFolders")[0], 200)

    def test_set_delay_and_pause(self):
        self.fake.set_delay("messages.list", 0.05)
        self.assertEqual(self.get("/mailFolders/inbox/messages")[0], 200)
        self.fake.set_delay("messages.list", 0)
        self.fake.pause("messages.list")
        threads = [threading.Thread(target=self.get, args=("/mailFolders/inbox/messages",))
                   for _ in range(2)]
        for t in threads:
            t.start()
        wait_for(lambda: self.fake.in_flight(USER, "messages.list") == 2)
        self.fake.resume("messages.list")
        for t in threads:
            t.join()
        self.assertEqual(self.fake.max_concurrent(USER, "messages.list"), 2)
        self.assertEqual(self.fake.in_flight(USER), 0)
        # Endpoints outside a mailbox can be held too (a slow login).
        self.fake.pause("token")
        t = threading.Thread(target=call, args=(self.fake.token_url(), "POST"), kwargs={
            "form": {"grant_type": "client_credentials", "client_id": CLIENT,
                     "client_secret": SECRET, "scope": fake_graph.DEFAULT_SCOPE}})
        t.start()
        wait_for(lambda: self.fake.in_flight(endpoint="token") == 1)
        self.fake.resume("token")
        t.join()
        self.assertEqual(self.fake.call_log("token")[-1]["status"], 200)

class SubscriptionTest(GraphTestBase):
    def setUp(self):
        super().setUp()
        self.rx = Receiver()
        self.addCleanup(self.rx.close)
        self.fake.batch_window = 0.01

    def expiry(self, minutes):
        return fake_graph._iso7(self.fake.now() + minutes * 60)

    def create(self, resource=None, change="created,updated,deleted", minutes=4000,
               headers=None, path="/push/graph?account=a1", lifecycle="/push/graph/lc",
               **extra):
        spec = {"changeType": change, "notificationUrl": self.rx.base + path,
                "resource": resource or "/users/%s/mailFolders('inbox')/messages" % USER,
                "expirationDateTime": self.expiry(minutes),
                "clientState": "s" * 40}
        if lifecycle:
            spec["lifecycleNotificationUrl"] = self.rx.base + lifecycle
        spec.update(extra)
        return call(self.fake.api_url + "/subscriptions", "POST", body=spec,
                    token=self.token, headers=headers)

    def sub_call(self, sid, method="GET", body=None):
        return call(self.fake.api_url + "/subscriptions/" + sid, method, body=body,
                    token=self.token)

    def test_create_validates_both_urls(self):
        status, hdrs, sub = self.create(headers=IMMUTABLE)
        self.assertEqual(status, 201, sub)
        for key in ("id", "resource", "changeType", "clientState", "notificationUrl",
                    "lifecycleNotificationUrl", "expirationDateTime", "applicationId"):
            self.assertIn(key, sub)
        self.assertEqual(sub["changeType"], "created,updated,deleted")
        self.assertEqual(sub["applicationId"], CLIENT)
        self.assertEqual(sub["notificationUrl"], self.rx.base + "/push/graph?account=a1")
        self.assertRegex(sub["expirationDateTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")
        self.assertEqual(len(self.rx.validations), 2)
        (p1, h1, t1, b1), (p2, _, t2, _) = self.rx.validations
        self.assertTrue(p1.startswith("/push/graph?account=a1&validationToken="))
        self.assertTrue(p2.startswith("/push/graph/lc?validationToken="))
        self.assertTrue(h1["Content-Type"].startswith("text/plain"))
        self.assertEqual(b1, b"")
        self.assertTrue(t1.startswith("Validation: Testing client application reachability"))
        self.assertIn("%3a+Testing+client", p1)      # form-encoded, lowercase hex
        self.assertNotEqual(t1, t2)
        views = self.fake.subscriptions_of(USER)
        self.assertEqual(len(views), 1)
        self.assertTrue(views[0]["immutable"])
        self.assertEqual(views[0]["folder_id"], self.fake.folder_id(USER, "inbox"))
        log = [e for e in self.fake.push_log if e["kind"] == "validation"]
        self.assertEqual([(e["status"], e["ok"]) for e in log], [(200, True), (200, True)])
        self.assertIsInstance(log[0]["latency"], float)
        status, _, got = self.sub_call(sub["id"])
        self.assertEqual((status, got["id"]), (200, sub["id"]))
        status, _, listed = call(self.fake.api_url + "/subscriptions", token=self.token)
        self.assertEqual([s["id"] for s in listed["value"]], [sub["id"]])
        # Whole-mailbox and me-style resources are accepted too.
        self.assertEqual(self.create(resource="users/%s/messages" % USER)[0], 201)
        folder = self.fake.add_folder(USER, "Sub", parent="inbox")
        status, _, sub = self.create(resource="/users/%s/mailFolders/%s/messages"
                                     % (USER, folder))
        self.assertEqual(self.fake.subscription(sub["id"])["folder_id"], folder)

    def test_validation_failures(self):
        for mode, text in (("encoded", "exactly match"), ("html", "text/plain"),
                           ("error", "200 OK")):
            self.rx.validation = mode
            self.fake.validation_token = "odd & chars=%<b>é"
            status, _, data = self.create()
            self.assert_graph_error(status, data, "InvalidRequest", 400)
            self.assertIn(text, data["error"]["message"])
        self.rx.validation = "ok"
        status, _, sub = self.create()      # the odd token echoed decoded is fine
        self.assertEqual(status, 201)
        self.assertEqual(self.rx.validations[-1][2], "odd & chars=%<b>é")
        self.assertIsNone(self.fake.check_validation(self.rx.base + "/push/graph",
                                                     token="a+b c%2F\u2603"))
        self.assertEqual(self.rx.validations[-1][2], "a+b c%2F\u2603")
        self.rx.validation = "encoded"
        self.assertIn("exactly match", self.fake.check_validation(self.rx.base + "/x",
                                                                  token="a b"))
        self.rx.validation = "ok"
        # A new notificationUrl given by PATCH is validated again.
        self.rx.validation = "error"
        status, _, data = self.sub_call(sub["id"], "PATCH", {
            "expirationDateTime": self.expiry(100), "notificationUrl": self.rx.base + "/new"})
        self.assert_graph_error(status, data, "InvalidRequest", 400)
        self.rx.validation = "ok"
        status, _, data = self.sub_call(sub["id"], "PATCH", {
            "expirationDateTime": self.expiry(100), "notificationUrl": self.rx.base + "/new"})
        self.assertEqual((status, data["notificationUrl"]), (200, self.rx.base + "/new"))
        self.fake.validation_token = None
        self.fake.inject_validation_timeout()
        status, _, data = self.create()
        self.assert_graph_error(status, data, "InvalidRequest", 400)
        self.assertEqual(data["error"]["message"], "Subscription validation request timed out.")
        self.rx.validation = "slow"
        self.fake.validation_timeout = 0.3
        status, _, data = self.create()
        self.assertEqual(data["error"]["message"], "Subscription validation request timed out.")
        self.rx.validation = "ok"
        # A lifecycle URL that does not answer fails the creation too.
        status, _, data = self.create(lifecycle=None,
                                      lifecycleNotificationUrl="http://127.0.0.1:9/x")
        self.assert_graph_error(status, data, "InvalidRequest", 400)
        self.assertEqual(len(self.fake.subscriptions_of(USER)), 1)

    def test_create_refusals_and_expiry_limits(self):
        status, _, data = self.create(minutes=10081)
        self.assert_graph_error(status, data, "ExtensionError", 400)
        self.assertEqual(data["error"]["message"],
                         "Subscription expiration can only be 10080 minutes in the future.")
        status, _, sub = self.create(minutes=10079)
        self.assertEqual(status, 201)
        self.fake.max_subscription_minutes = 4230        # the pre-2024 limit
        status, _, data = self.create(minutes=10079)
        self.assertIn("4230 minutes", data["error"]["message"])
        self.fake.max_subscription_minutes = 10080
        status, _, sub = self.create(minutes=5)          # raised to 45 minutes
        got = fake_graph.parse_datetime(sub["expirationDateTime"])
        self.assertGreaterEqual(got, self.fake.now() + 44 * 60)
        self.assertEqual(self.create(minutes=-5)[0], 400)
        self.assertEqual(self.create(change="created,moved")[0], 400)
        self.assertEqual(self.create(clientState="x" * 129)[0], 400)
        self.assertEqual(self.create(resource="/users/%s/events" % USER)[0], 400)
        self.assertEqual(self.create(resource="/users/%s/mailFolders/nope1234567890123456789"
                                     "/messages" % USER)[0], 404)
        status, _, data = call(self.fake.api_url + "/subscriptions", "POST", token=self.token,
                               body={"changeType": "created"})
        self.assert_graph_error(status, data, "InvalidRequest", 400)
        self.fake.max_subscriptions_per_mailbox = 2
        status, _, data = self.create()
        self.assert_graph_error(status, data, "ExtensionError", 403)
        self.assertEqual(self.create(resource="/users/%s/messages" % OTHER)[0], 201)
        self.fake.add_client("none", "s", roles=())
        status, _, data = call(self.fake.api_url + "/subscriptions", "POST", body={},
                               token=self.fake.issue_access_token("none"))
        self.assert_graph_error(status, data, "ErrorAccessDenied", 403)

    def test_renew_delete_reauthorize(self):
        status, _, sub = self.create(minutes=60)
        sid = sub["id"]
        status, _, renewed = self.sub_call(sid, "PATCH",
                                           {"expirationDateTime": self.expiry(10000)})
        self.assertEqual(status, 200)
        self.assertGreater(fake_graph.parse_datetime(renewed["expirationDateTime"]),
                           fake_graph.parse_datetime(sub["expirationDateTime"]))
        status, _, data = self.sub_call(sid, "PATCH",
                                        {"expirationDateTime": self.expiry(20000)})
        self.assert_graph_error(status, data, "ExtensionError", 400)
        status, _, data = self.sub_call(sid, "PATCH", {"expirationDateTime": self.expiry(100),
                                                       "lifecycleNotificationUrl": "http://x/"})
        self.assert_graph_error(status, data, "InvalidRequest", 400)
        status, _, data = self.sub_call("00000000-0000-0000-0000-000000000000", "PATCH",
                                        {"expirationDateTime": self.expiry(100)})
        self.assert_graph_error(status, data, "ResourceNotFound", 404)
        self.assertEqual(data["error"]["message"], "The object was not found.")
        status, _, data = self.sub_call(sid, "PATCH", {})
        self.assert_graph_error(status, data, "InvalidRequest", 400)
        self.fake.fail_next("subscriptions.update", 404, code="ResourceNotFound")
        status, _, data = self.sub_call(sid, "PATCH", {"expirationDateTime": self.expiry(100)})
        self.assertEqual(status, 404)
        status, _, _ = call(self.fake.api_url + "/subscriptions/%s/reauthorize" % sid, "POST",
                            token=self.token)
        self.assertEqual(status, 204)
        self.assertEqual(self.fake.subscription(sid)["reauthorized"], 1)
        self.assertEqual(self.sub_call(sid, "DELETE")[0], 204)
        self.assertEqual(self.sub_call(sid, "DELETE")[0], 404)
        status, _, data = call(self.fake.api_url + "/subscriptions/%s/reauthorize" % sid,
                               "POST", token=self.token)
        self.assertEqual(status, 404)
        # The debug clock expires subscriptions: Graph then forgets them.
        status, _, sub = self.create(minutes=60)
        self.fake.advance(3601)
        self.token = self.fake.issue_access_token(CLIENT)
        status, _, data = self.sub_call(sub["id"], "PATCH",
                                        {"expirationDateTime": self.expiry(100)})
        self.assertEqual(status, 404)
        self.assertIsNone(self.fake.subscription(sub["id"]))
        # Another app does not see these subscriptions.
        self.fake.add_client("other", "s", roles=("Mail.Read",))
        status, _, sub = self.create()
        status, _, _ = call(self.fake.api_url + "/subscriptions/" + sub["id"],
                            token=self.fake.issue_access_token("other"))
        self.assertEqual(status, 404)

    def test_automatic_notifications_batched(self):
        _, _, inbox_sub = self.create(headers=IMMUTABLE)
        _, _, arch_sub = self.create(resource="/users/%s/mailFolders('archive')/messages"
                                     % USER, headers=IMMUTABLE)
        _, _, rest_sub = self.create(resource="/users/%s/messages" % USER, change="updated",
                                     path="/push/graph/rest")
        self.fake.hold_notifications()
        a = self.fake.add_message(USER, raw_message(1))
        b = self.fake.add_message(USER, raw_message(2), folder="archive")
        self.fake.update_message(USER, a, is_read=True)
        self.fake.add_message(OTHER, raw_message(3))     # nobody subscribed to bob
        self.fake.release_notifications()
        self.fake.wait_notifications_idle()
        main = [p for p in self.rx.posts if p[0].startswith("/push/graph?account=a1")]
        self.assertEqual(len(main), 1)                # one POST, two subscriptions
        items = main[0][2]["value"]
        self.assertEqual([(i["subscriptionId"], i["changeType"], i["resourceData"]["id"])
                          for i in items],
                         [(inbox_sub["id"], "created", a), (arch_sub["id"], "created", b),
                          (inbox_sub["id"], "updated", a)])
        obj = self.fake.users[USER.lower()].object_id
        for item in items:
            self.assertEqual(item["clientState"], "s" * 40)
            self.assertEqual(item["tenantId"], self.fake.tenant_id)
            self.assertEqual(item["resource"], "Users/%s/Messages/%s"
                             % (obj, item["resourceData"]["id"]))
            self.assertEqual(item["resourceData"]["@odata.type"], "#Microsoft.Graph.Message")
            self.assertIn("subscriptionExpirationDateTime", item)
            self.assertIn("id", item)
        self.assertEqual(main[0][1]["Content-Type"], "application/json; charset=utf-8")
        # The mailbox-wide subscription without the immutable header gets
        # REST ids, and only updates.
        rest_items = self.rx.items("/push/graph/rest")
        self.assertEqual([(i["changeType"], i["resourceData"]["id"]) for i in rest_items],
                         [("updated", self.fake.message_id(USER, a))])
        log = [e for e in self.fake.push_log if e["kind"] == "change"]
        self.assertEqual(sorted(e["status"] for e in log), [202, 202])
        self.assertTrue(all(isinstance(e["latency"], float) for e in log))
        entry = [e for e in log if e["url"].endswith("account=a1")][0]
        self.assertEqual((entry["count"], entry["messages"]), (3, [a, b, a]))
        self.assertEqual(entry["subscriptions"], sorted([inbox_sub["id"], arch_sub["id"]]))
        self.assertEqual(entry["events"], ["created", "updated"])
        # A move: deleted in the source folder, created in the destination,
        # updated for the whole mailbox (with the new REST id).
        self.rx.posts.clear()
        new_rest = self.fake.move_message(USER, a, "archive")
        self.fake.wait_notifications_idle()
        got = sorted((i["subscriptionId"], i["changeType"], i["resourceData"]["id"])
                     for i in self.rx.items())
        self.assertEqual(got, sorted([(inbox_sub["id"], "deleted", a),
                                      (arch_sub["id"], "created", a),
                                      (rest_sub["id"], "updated", new_rest)]))
        # Off switch, duplicates, retries.
        self.rx.posts.clear()
        self.fake.auto_notify = False
        self.fake.add_message(USER, raw_message(4))
        self.fake.wait_notifications_idle()
        self.assertEqual(self.rx.posts, [])
        self.fake.auto_notify = True
        self.fake.duplicate_notifications = 1
        self.fake.add_message(USER, raw_message(5))
        self.fake.wait_notifications_idle()
        self.assertEqual(len(self.rx.posts), 2)
        self.assertEqual(self.rx.posts[0][2], self.rx.posts[1][2])
        self.fake.duplicate_notifications = 0
        self.rx.posts.clear()
        self.rx.status = 500
        self.fake.notification_retries = 2
        self.fake.notification_retry_delay = 0.01
        self.fake.add_message(USER, raw_message(6))
        self.fake.wait_notifications_idle()
        self.assertEqual(len(self.rx.posts), 3)
        self.assertEqual([e["status"] for e in self.fake.push_log[-3:]], [500, 500, 500])

    def test_lifecycle_events(self):
        _, _, s1 = self.create()
        _, _, s2 = self.create(resource="/users/%s/mailFolders('archive')/messages" % USER)
        _, _, s3 = self.create(lifecycle=None, path="/push/graph/nolc")
        self.rx.posts.clear()
        self.fake.send_lifecycle([s1["id"], s2["id"], s3["id"]], "missed")
        lc = [p for p in self.rx.posts if p[0] == "/push/graph/lc"]
        self.assertEqual(len(lc), 1)            # batched; s3 has no lifecycle URL
        self.assertEqual([i["subscriptionId"] for i in lc[0][2]["value"]],
                         [s1["id"], s2["id"]])
        item = lc[0][2]["value"][0]
        self.assertEqual(set(item), {"subscriptionId", "subscriptionExpirationDateTime",
                                     "tenantId", "clientState", "lifecycleEvent"})
        self.assertEqual(item["lifecycleEvent"], "missed")
        # reauthorizationRequired pauses delivery until reauthorize.
        self.rx.posts.clear()
        self.fake.require_reauthorization(s1["id"])
        self.assertEqual(self.rx.items("/push/graph/lc")[0]["lifecycleEvent"],
                         "reauthorizationRequired")
        self.fake.add_message(USER, raw_message(1))
        self.fake.wait_notifications_idle()
        self.assertEqual(self.rx.items("/push/graph?"), [])
        self.assertEqual(self.fake.subscription(s1["id"])["dropped"], 1)
        call(self.fake.api_url + "/subscriptions/%s/reauthorize" % s1["id"], "POST",
             token=self.token)
        self.fake.add_message(USER, raw_message(2))
        self.fake.wait_notifications_idle()
        self.assertEqual(len(self.rx.items("/push/graph?")), 1)
        # A renewal also reauthorizes.
        self.fake.require_reauthorization(s1["id"])
        self.sub_call(s1["id"], "PATCH", {"expirationDateTime": self.expiry(500)})
        self.assertFalse(self.fake.subscription(s1["id"])["paused"])
        # subscriptionRemoved: gone for good.
        self.rx.posts.clear()
        self.fake.remove_subscription(s2["id"])
        self.assertEqual(self.rx.items("/push/graph/lc")[0]["lifecycleEvent"],
                         "subscriptionRemoved")
        status, _, data = self.sub_call(s2["id"], "PATCH",
                                        {"expirationDateTime": self.expiry(100)})
        self.assertEqual(status, 404)

    def test_manual_and_forged_notifications(self):
        _, _, sub = self.create()
        iid = self.fake.add_message(USER, raw_message(1))
        self.fake.wait_notifications_idle()
        self.rx.posts.clear()
        rest = self.fake.message_id(USER, iid)
        results = self.fake.notify_change(sub["id"], rest, "updated", copies=2)
        self.assertEqual([r[0] for r in results], [202, 202])
        self.assertEqual(self.rx.posts[0][2], self.rx.posts[1][2])
        item = self.rx.posts[0][2]["value"][0]
        self.assertEqual(item["resourceData"]["@odata.etag"],
                         'W/"%s"' % self.fake.message(USER, iid)["change_key"])
        forged = self.fake.change_item(sub["id"], rest, clientState="wrong")
        self.assertEqual(forged["clientState"], "wrong")
        self.fake.send_notifications(sub["notificationUrl"], [
            forged, self.fake.change_item(sub["id"], rest, subscriptionId=fake_graph._guid())])
        self.assertEqual(len(self.rx.posts[-1][2]["value"]), 2)
        self.rx.posts.clear()
        status, _, _ = self.fake.post_raw(sub["notificationUrl"], b'{"value": [')
        self.assertEqual((status, self.rx.malformed), (400, [b'{"value": [']))
        self.assertEqual(self.fake.push_log[-1]["kind"], "raw")
        self.assertEqual(self.fake.lifecycle_item(sub["id"], "missed")["lifecycleEvent"],
                         "missed")
        # The API drives notifications too: a message created with Graph.
        self.rx.posts.clear()
        status, _, msg = self.get("/mailFolders/inbox/messages", "POST", body={
            "subject": "live test", "body": {"contentType": "text", "content": "hello"},
            "toRecipients": [{"emailAddress": {"address": USER}}]}, headers=IMMUTABLE)
        self.assertEqual(status, 201)
        self.fake.wait_notifications_idle()
        self.assertEqual([(i["changeType"], i["resourceData"]["id"])
                          for i in self.rx.items("/push/graph?")],
                         [("created", self.fake.message_id(USER, msg["id"]))])


class DemoTest(unittest.TestCase):
    def test_standalone_process(self):
        import subprocess
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.Popen([sys.executable, fake_graph.__file__, "--dir", tmp],
                                    stdout=subprocess.PIPE, text=True)
            try:
                info = json.loads(proc.stdout.readline())
                self.assertEqual(info["note"], "LOCAL FAKE, not Microsoft")
                self.assertEqual(os.stat(info["client_secret_file"]).st_mode & 0o777, 0o600)
                with open(info["client_secret_file"]) as f:
                    secret = f.read().strip()
                status, _, tok = call("%s/%s/oauth2/v2.0/token" % (info["login_url"],
                                                                  info["tenant"]), "POST",
                                      form={"grant_type": "client_credentials",
                                            "client_id": info["client_id"],
                                            "client_secret": secret,
                                            "scope": fake_graph.DEFAULT_SCOPE})
                self.assertEqual(status, 200)
                status, _, data = call("%s/users/%s/mailFolders/inbox/messages"
                                       % (info["api_url"], info["user"]),
                                       token=tok["access_token"])
                self.assertEqual((status, len(data["value"])), (200, 3))
                with open(info["refresh_token_file"]) as f:
                    refresh = f.read().strip()
                status, _, tok = call("%s/common/oauth2/v2.0/token" % info["login_url"],
                                      "POST", form={"grant_type": "refresh_token",
                                                    "client_id": info["client_id"],
                                                    "client_secret": secret,
                                                    "refresh_token": refresh})
                self.assertEqual(status, 200)
                status, _, kids = call(info["api_url"] + "/me/mailFolders/inbox/childFolders",
                                       token=tok["access_token"])
                self.assertEqual([k["displayName"] for k in kids["value"]], ["Projects"])
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                proc.stdout.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)

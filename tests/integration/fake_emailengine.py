"""A local stand-in for EmailEngine (REST API + signed webhooks), for tests.

The emailengine.so driver must not know it talks to a fake, so every answer
uses EmailEngine's wire format. Sources: ../shared/reference/emailengine-api.md
(cited "E§n") and ../shared/reference/providers.md §5 ("P§5"), both read
against postalsys/emailengine at aea45350 (v2.79.2); file names below are in
that repository.

What it serves (all on one 127.0.0.1 port; point the driver's `url` at
`fake.url`):

- Authentication (E§1): `Authorization: Bearer <token>` or
  `?access_token=<token>` (the header wins). Tokens are 64 hex chars with
  scopes (default `["api"]`), optionally bound to one account and rate
  limited. Missing or malformed: 401 `"Missing authentication"` with
  `WWW-Authenticate: Bearer`; unknown: 401 `"Bad token"` with
  `WWW-Authenticate: Bearer error="Bad token"` (workers/api.js:3143-3149,
  hapi-auth-bearer-token). Wrong scope: 403 `"Unauthorized scope"` +
  `requestedScope`; another account with an account-bound token: 403
  `"Unauthorized account"`. Over a token's `rateLimit {maxRequests,
  timeWindow}`: 429 `"Rate limit exceeded"` + `ttl` and
  `X-RateLimit-Limit`/`X-RateLimit-Reset` (answers under a limit carry
  `X-RateLimit-Limit`/`-Reset`/`-Remaining`), fixed window as in
  workers/api.js:1187-1205.
- Errors (E§1, E§8.1): the Boom body `{"statusCode","error","message"}` plus
  `code` (and `state` for 503) where EmailEngine adds them; validation
  failures are 400 `"Invalid input"` with `fields:[{message,key}]` worded as
  Joi words them. JSON is `application/json; charset=utf-8`.
- `GET /v1/accounts` (E§2; endpoint name "accounts"): page (0-based),
  pageSize (1-1000, default 20), state, query (substring of id, name,
  email); `{total,page,pages,query|false,state:"*",accounts:[{account,name,
  email,type,state,webhooks?,syncTime?,lastError}]}`, sorted by id,
  `pages = ceil(total/pageSize)` (0 when empty); account-bound token: 403.
- `GET /v1/account/{account}` ("account", E§2): account, name, email,
  state, type "imap", imapIndexer "full", imap (password "******"), logs,
  notifyFrom/syncFrom/smtpStatus null, webhooks, syncTime, lastError (null
  when connected, the stored `{response, serverResponseCode}` otherwise,
  omitted when there is none, as account-routes.js:906-1060 does). Unknown
  account: 404 "Account record was not found for requested ID", no code.
  Answers in every state.
- `GET /v1/account/{account}/mailboxes[?counters=true]` ("mailboxes", E§3):
  `{"mailboxes":[{path, delimiter, parentPath?, name, listed, subscribed,
  specialUse?, specialUseSource?, messages, uidNext, status?}]}`; messages
  and uidNext come from the last sync (number or false), `status{messages,
  unseen}` only with counters=true; no uidValidity. Order: special-use in
  FLAG_SORT_ORDER, then path. Not connected: the stored listing, or 503
  NotYetConnected (state init, or never connected), 503 NotSyncing (unset);
  with counters=true 503 WorkerNotAvailable (see UNCONFIRMED below).
- `GET /v1/account/{account}/messages?path=&page=&pageSize=&cursor=`
  ("messages", E§4): live, paged by sequence number newest first, each
  page sorted by uid descending; `{total,page,pages,nextPageCursor,
  prevPageCursor,messages}`, `pages = max(1, ceil(total/pageSize))`,
  cursors `"imap_" + base64url({"page":n})`, a garbled cursor 400
  InvalidCursorValue, past the end an empty page. Entry fields as
  mailbox.js:1902-1954: id, uid, emailId?, threadId?, date (Date header,
  else INTERNALDATE, ISO with ms), flags (no \\Recent), unseen/flagged/
  answered/draft only when true, size, subject?, from?, replyTo?, to?,
  cc?, attachments?, messageId?, inReplyTo?, text{id,encodedSize}. Path
  aliases `\\Inbox`, `\\Sent`, ... resolve. Unknown folder: 404
  FolderNotFound. Account not in connected/connecting/syncing: 503 with
  code (NotYetConnected, AuthenticationFails, ConnectionError, NotSyncing,
  NoAvailable) and state (lib/account/account-state.js).
- `POST /v1/account/{account}/search?path=&page=&pageSize=` ("search",
  E§6) with `{"search":{...}}`: same paging and shape, UIDs newest first.
  Criteria modelled: uid and seq (IMAP range strings), seen, answered,
  flagged, draft, deleted (booleans), emailId, threadId, subject, from,
  to (case-insensitive substring), header {name: substring|true}; any
  other criterion is a 400 naming it (the fake's limit, not EmailEngine's).
- `GET /v1/account/{account}/message/{id}` ("message", E§5): the listing
  entry plus path, sender?, bcc?, headers {lowercase: [values]};
  `textType=plain|html|*` adds text.plain/text.html/text.hasMore (maxBytes
  truncates); `markAsSeen=true` is the only way a read stores \\Seen.
  Unknown or deleted: 404 MessageNotFound.
- `GET /v1/account/{account}/message/{id}/source` ("source", E§5): the raw
  bytes, `Content-Type: message/rfc822`, `Content-Disposition: attachment;
  filename=message.eml`; deleted: 404 "Requested file not found" with no
  code. Neither route stores \\Seen.
- `POST /v1/settings` ("settings", E§7): webhooksEnabled, webhooks,
  webhookEvents, webhooksCustomHeaders, serviceSecret, serviceUrl, notify*
  are stored; answers `{"updated":[keys]}`; an unknown key is a 400.
- Anything else: 404 `{"statusCode":404,"error":"Not Found",...}`.

Message ids (E§4 "Message id"): unpadded base64url of a uint32 BE mailbox
registry number and the uint32 BE UID (always 11 chars). The registry number
is allocated per (UIDVALIDITY, path) from a per-account counter, so
`reset_uidvalidity()` and `rename_mailbox()` change every id of the folder,
and a stale id is resolved like EmailEngine resolves it: registry number ->
path -> the message with that UID *now*, without checking UIDVALIDITY (a
stale id can hit another message; imap-client.js:560-604).

Webhooks (E§7, P§5). Configure with `configure_webhooks(url, events=("*",))`
or `POST /v1/settings` (an account's own `webhooks` URL replaces the global
one). Delivery is a single worker in queue order (EENGINE_NOTIFY_QC=1):
`POST` of `JSON.stringify(payload)` (compact, UTF-8) with Content-Type,
User-Agent `emailengine-app/2.79.2 (+https://emailengine.app/)`,
X-EE-Wh-Id (job id), X-EE-Wh-Attempts-Made, X-EE-Wh-Queued-Time (`"Ns"`),
X-EE-Wh-Event-Id (a UUID, stable across retries, not in the body),
Content-Length, X-EE-Wh-Signature (base64url without padding of
HMAC-SHA256(serviceSecret, body)), custom headers (global, then account),
Authorization Basic when the URL has user:pass. Payload
`{serviceUrl, account, date, path?, specialUse?, event, data}`. Any 2xx is
success, a 3xx is final (not followed), other answers are retried up to
`webhook_attempts` times.
Events are produced as EmailEngine's sync would: while an account is
`connected`, every change made through the helpers is synced at once
(messageNew, messageDeleted, messageUpdated with changes.flags {deleted?,
added?, value}, mailboxNew, mailboxDeleted, mailboxReset with reason
uidValidityChange and no per-message events, E§7 "mailboxReset is
silent"); changes made while it is not connected are found by the sync
that runs when it becomes connected again (EmailEngine's reconnect sync);
authenticationError/connectError fire on entering the state only when the
error differs from the stored one (base-client.js:493-530);
accountInitialized on the first connection. `auto_webhooks = False` keeps
the sync but queues nothing (so a test can prove a reconciliation sweep
finds what no webhook announced).

Control surface (thread-safe; endpoint names are in ENDPOINTS):
- accounts: add_account(account, state="connected", email_addr=, name=,
  webhooks= (the account's own URL), object_id= (False: a server without
  OBJECTID, so no emailId/threadId), error=, custom_headers={name: value}),
  set_account_state(account, state, error={response, serverResponseCode}),
  account_state;
- mailboxes: add_mailbox(account, path, special_use=, delimiter="/",
  subscribed=, uid_validity=), delete_mailbox, rename_mailbox(account, path,
  new_path), reset_uidvalidity(account, path) -> new UIDVALIDITY (UIDs
  renumbered from 1, as a server that recreated the folder), uid_validity;
- messages: add_message(account, path, raw, flags=(), date=, email_id=,
  thread_id=) -> EmailEngine id, set_flags(account, id, flags),
  delete_message(account, id), message_ids(account, path) (newest first),
  find_message(account, path, uid) -> id, message_uid(account, id);
- tokens: `fake.token` (made at start), add_token(scopes=, account=,
  rate_limit=(maxRequests, timeWindow)), revoke_token;
- webhooks: configure_webhooks, webhook_log, wait_webhooks(n), flush_webhooks,
  send_webhook(...) (one synchronous, possibly forged delivery: any event,
  any account, a chosen event id), redeliver(event_id) (the same event
  again: what a retry after a lost answer looks like), forge_next_webhooks
  (bad_signature, wrong_secret, no_signature, padded_signature,
  tampered_body, no_event_id, duplicate), sign(body) (the signature the
  fake would send), pending_webhooks, webhook_attempts /
  webhook_retry_delay / webhook_timeout, auto_webhooks;
- failures: fail_next(endpoint, status, count=, code=, message=, account=,
  state=, ttl=, headers=), clear_failures; set_delay (slow EmailEngine),
  pause/resume (hold calls in flight);
- counters: calls, call_log (t, endpoint, account, status, query), in_flight,
  max_concurrent, reset_counts.

What it does not do (known gaps): TLS; the admin UI, OAuth2 apps, Gmail
API / Graph accounts (no `labels`, ids are always IMAP-style), SMTP and
sending, attachments and text endpoints, message update/move/delete
through the API, creating accounts or mailboxes through the API, `GET
/v1/changes` (SSE), `documentStore`, `?quota=true`, webhook routes
(`X-EE-Wh-Custom-Route`), the 3-day auth-failure disable, bounces,
`calendarEvents`, `notifyText`/`notifyHeaders` content in messageNew (the
data never carries text or headers), the Joi validation of every parameter
(only the ones listed above are checked), the real 10-attempt exponential
webhook backoff (fixed `webhook_retry_delay` here), per-account serialised
calls (E§8.8 is UNCONFIRMED; the fake serves calls concurrently and
`max_concurrent` shows overlap), X-EE-Timeout (use fail_next(..., 504)).
Body-structure sizes (`size`, `encodedSize`, `text.encodedSize`) are
computed from the raw bytes the way a server would count them, but a real
server's BODYSTRUCTURE may differ by line-ending normalisation.
UNCONFIRMED in EmailEngine's source and chosen here: 401 texts come from
the bearer library; whether /source is chunked (here: Content-Length); the
404 for an unknown route (EmailEngine renders an HTML page; here JSON);
`mailboxes?counters=true` on an account that is not connected (here 503
WorkerNotAvailable); that a folder created while connected is indexed
without messageNew for the messages it already holds.

Library use:

    fake = FakeEmailEngine(service_secret="s3cret").start()
    fake.add_account("acc1", state="connected")
    fake.add_mailbox("acc1", "INBOX")
    mid = fake.add_message("acc1", "INBOX", raw_bytes, flags=["\\\\Seen"])
    fake.configure_webhooks("http://127.0.0.1:8080/push/ee")
    ...
    fake.stop()

`python3 fake_emailengine.py --dir DIR [--webhook-url URL] [--every N]`
runs a demo instance and prints one JSON line with the driver's config
values (see `main`). Standard library only.
"""

import argparse
import base64
import collections
import datetime
import email
import email.errors
import email.header
import email.policy
import email.utils
import hashlib
import hmac
import http.client
import http.server
import json
import math
import os
import re
import secrets
import signal
import socketserver
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

EE_VERSION = "2.79.2"
USER_AGENT = "emailengine-app/%s (+https://emailengine.app/)" % EE_VERSION
JSON_TYPE = "application/json; charset=utf-8"
STATES = ("init", "connecting", "syncing", "connected", "disconnected", "paused",
          "authenticationError", "connectError", "unset")
VALID_STATES = ("connected", "connecting", "syncing")   # account-state.js:18
FLAG_SORT_ORDER = ("\\Inbox", "\\Flagged", "\\Sent", "\\Drafts", "\\All", "\\Archive",
                   "\\Junk", "\\Trash")                  # workers/api.js:133
SPECIAL_USES = set(FLAG_SORT_ORDER)
WEBHOOK_EVENTS = ("messageNew", "messageDeleted", "messageUpdated", "mailboxNew",
                  "mailboxDeleted", "mailboxReset", "authenticationError", "connectError",
                  "accountInitialized")
FORGES = ("bad_signature", "wrong_secret", "no_signature", "padded_signature",
          "tampered_body", "no_event_id", "duplicate")
ENDPOINTS = ("accounts", "account", "mailboxes", "messages", "search", "message",
             "source", "settings")
SETTINGS_KEYS = ("webhooksEnabled", "webhooks", "webhookEvents", "webhooksCustomHeaders",
                 "serviceSecret", "serviceUrl", "notifyHeaders", "notifyText",
                 "notifyTextSize", "notifyAttachments", "inboxNewOnly")

# Texts of account-state.js:52-93 (503 for an account that cannot serve).
STATE_ERRORS = {
    "init": ("NotYetConnected", "Requested account is not yet initialized"),
    "authenticationError": ("AuthenticationFails", "Requested account can not be authenticated"),
    "connectError": ("ConnectionError",
                     "Can not establish server connection for requested account"),
    "unset": ("NotSyncing", "Syncing is disabled for the requested account"),
}
DEFAULT_ERRORS = {
    "authenticationError": {"response": "Authentication failed",
                            "serverResponseCode": "AUTHENTICATIONFAILED"},
    "connectError": {"response": "connect ECONNREFUSED 127.0.0.1:993",
                     "serverResponseCode": "ECONNREFUSED"},
}


def b64url(data):
    """base64url without padding (ids, cursors, signatures)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def sign(secret, body):
    """X-EE-Wh-Signature: base64url(HMAC-SHA256(serviceSecret, raw body)), no
    padding (P§5; `digest('base64url')`)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return b64url(hmac.new(secret, body, hashlib.sha256).digest())


def iso_ms(ts):
    """JavaScript Date.prototype.toISOString of a Unix time."""
    ms = int(round(ts * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def _reason(status):
    return http.server.BaseHTTPRequestHandler.responses.get(status, ("Unknown",))[0]


class EEError(Exception):
    """An error answer in the Boom shape (E§1)."""

    def __init__(self, status, message=None, code=None, headers=None, **extra):
        super().__init__("%d %s" % (status, message or ""))
        self.status = status
        self.message = message if message is not None else _reason(status)
        self.code = code
        self.headers = dict(headers or {})
        self.extra = extra

    def json(self):
        out = {"statusCode": self.status, "error": _reason(self.status),
               "message": self.message}
        if self.code is not None:
            out["code"] = self.code
        out.update(self.extra)
        return out


def _invalid(fields):
    """400 of lib/tools.js failAction: Joi details as {message, key}."""
    return EEError(400, "Invalid input",
                   fields=[{"message": m, "key": k} for k, m in fields])


def _not_found_account():
    return EEError(404, "Account record was not found for requested ID")


# --------------------------------------------------------------------------
# Tiny msgpack encoder for text ids (mailbox.js getAttachmentList packs the
# text part numbers as msgpack [[plain], [html], [other]]).

def _msgpack(value):
    if isinstance(value, list):
        n = len(value)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
        return head + b"".join(_msgpack(v) for v in value)
    data = value.encode("utf-8")
    n = len(data)
    if n < 32:
        return bytes([0xa0 | n]) + data
    return b"\xd9" + bytes([n]) + data


# --------------------------------------------------------------------------
# Message parsing: the parts of ENVELOPE and BODYSTRUCTURE a listing shows.

def _decode_words(text):
    """libmime.decodeWords: RFC 2047 words decoded, the rest kept."""
    if text is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(text))))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return str(text)


def _addresses(values):
    """imapflow envelope addresses: [{name, address}] with '' for a missing
    name; entries with neither are dropped; None when the header is absent."""
    if not values:
        return None
    out = []
    for name, addr in email.utils.getaddresses([str(v) for v in values]):
        name = _decode_words(name)
        if len(name) > 2 and name[0] == '"' and name[-1] == '"':
            name = name[1:-1]
        if name or addr:
            out.append({"name": name, "address": addr})
    return out or None


def _split_raw(raw):
    m = re.search(rb"\r?\n\r?\n", raw)
    return (raw[:m.start()], raw[m.end():]) if m else (raw, b"")


class Message:
    def __init__(self, uid, raw, flags, internal_date, email_id, thread_id):
        self.uid = uid
        self.raw = bytes(raw)
        self.flags = list(dict.fromkeys(f for f in flags if f != "\\Recent"))
        self.internal_date = internal_date
        self.email_id = email_id
        self.thread_id = thread_id
        self.parsed = email.message_from_bytes(self.raw, policy=email.policy.compat32)

    def header_values(self, name):
        return self.parsed.get_all(name) or []

    def header_dict(self):
        """headers {lowercase key: [values]} (decode-headers.js), unfolded."""
        head = _split_raw(self.raw)[0].decode("utf-8", "replace")
        out = collections.OrderedDict()
        for line in re.split(r"\r?\n(?![ \t])", head):
            if ":" not in line:
                continue
            key, value = line.split(":", 1)
            out.setdefault(key.strip().lower(), []).append(
                re.sub(r"\r?\n[ \t]", " ", value).strip())
        return out

    def envelope_date(self):
        value = self.parsed.get("Date")
        if value:
            try:
                parsed = email.utils.parsedate_to_datetime(str(value))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=datetime.timezone.utc)
                return parsed.timestamp()
            except (TypeError, ValueError, IndexError):
                pass
        return self.internal_date

    def body_structure(self):
        """[(part number, content type, disposition, size, filename,
        content-id, method, related, enclosed)] of the leaves, numbered as
        IMAP numbers them."""
        leaves = []

        def body_size(part):
            payload = part.get_payload()
            if isinstance(payload, str):
                return len(payload.encode("utf-8", "surrogateescape"))
            return 0

        def walk(part, number, related, enclosed):
            ctype = part.get_content_type()
            if ctype == "multipart/related":
                related = True
            if part.is_multipart() and ctype.startswith("multipart/"):
                for i, sub in enumerate(part.get_payload(), 1):
                    walk(sub, "%s.%d" % (number, i) if number else str(i), related, enclosed)
                return
            if part.is_multipart():   # message/rfc822: one leaf, not descended
                size = sum(len(bytes(p)) for p in part.get_payload())
            else:
                size = body_size(part)
            disp = (part.get("Content-Disposition") or "").split(";")[0].strip().lower() or None
            leaves.append((number or "1", ctype, disp, size, part.get_filename(),
                           part.get("Content-ID"), part.get_param("method"), related,
                           enclosed))

        walk(self.parsed, "", False, False)
        return leaves


def _entry(msg, mid, path=None, extended=False, emailid=True):
    """A listing entry (mailbox.js:1902-1954); undefined keys are omitted."""
    id_buf = b64url_decode(mid)
    attachments, text_parts, text_size = [], [[], [], []], {}
    for number, ctype, disp, size, filename, cid, method, related, enclosed in \
            msg.body_structure():
        if disp == "attachment" or not re.match(r"text/(plain|html)", ctype):
            att = {"id": b64url(id_buf + number.encode()), "contentType": ctype,
                   "encodedSize": size, "embedded": related,
                   "inline": disp == "inline" or (not disp and related),
                   "encodedInMessage": enclosed}
            if filename:
                att["filename"] = filename
            if cid:
                att["contentId"] = cid
            if isinstance(method, str):
                att["method"] = method
            attachments.append(att)
        elif disp in (None, "inline"):
            kind = ctype[5:]
            text_size[kind] = text_size.get(kind, 0) + size
            text_parts[0 if kind == "plain" else 1].append(number)
    flags = msg.flags
    out = collections.OrderedDict()
    out["id"] = mid
    out["uid"] = msg.uid
    if extended and path:
        out["path"] = path
    if emailid and msg.email_id:
        out["emailId"] = msg.email_id
    if emailid and msg.thread_id:
        out["threadId"] = msg.thread_id
    out["date"] = iso_ms(msg.envelope_date())
    out["flags"] = list(flags)
    if "\\Seen" not in flags:
        out["unseen"] = True
    if "\\Flagged" in flags:
        out["flagged"] = True
    if "\\Answered" in flags:
        out["answered"] = True
    if "\\Draft" in flags:
        out["draft"] = True
    if msg.raw:
        out["size"] = len(msg.raw)
    subject = msg.parsed.get("Subject")
    if subject:
        out["subject"] = _decode_words(subject)
    sender = _addresses(msg.header_values("From"))
    if sender:
        out["from"] = sender[0]
    reply_to = _addresses(msg.header_values("Reply-To"))
    if reply_to:
        out["replyTo"] = reply_to
    if extended:
        real_sender = _addresses(msg.header_values("Sender"))
        if real_sender:
            out["sender"] = real_sender[0]
    for key, header in (("to", "To"), ("cc", "Cc")) + ((("bcc", "Bcc"),) if extended else ()):
        value = _addresses(msg.header_values(header))
        if value:
            out[key] = value
    if attachments:
        out["attachments"] = attachments
    message_id = (msg.parsed.get("Message-ID") or "").strip()
    if message_id:
        out["messageId"] = message_id
    in_reply_to = (msg.parsed.get("In-Reply-To") or "").strip()
    if in_reply_to:
        out["inReplyTo"] = in_reply_to
    if extended:
        out["headers"] = msg.header_dict()
    out["text"] = {"id": b64url(id_buf + _msgpack(text_parts)), "encodedSize": text_size}
    return out


def _text_contents(msg, text_type, max_bytes):
    """text.plain / text.html of GET message with textType."""
    found = {"plain": [], "html": []}
    for part in msg.parsed.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disp = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        if ctype in ("text/plain", "text/html") and disp != "attachment":
            data = part.get_payload(decode=True) or b""
            try:
                text = data.decode(part.get_content_charset() or "utf-8", "replace")
            except LookupError:
                text = data.decode("utf-8", "replace")
            found[ctype[5:]].append(text)
    out, more = {}, False
    for kind in ("plain", "html"):
        if text_type not in (kind, "*") or not found[kind]:
            continue
        text = "\n".join(found[kind])
        if max_bytes and len(text.encode()) > max_bytes:
            text = text.encode()[:max_bytes].decode("utf-8", "ignore")
            more = True
        out[kind] = text
    out["hasMore"] = more
    return out


# --------------------------------------------------------------------------
# Model.

class Mailbox:
    def __init__(self, path, delimiter, special_use, special_use_source, subscribed,
                 uid_validity):
        self.path = path
        self.delimiter = delimiter
        self.special_use = special_use
        self.special_use_source = special_use_source
        self.subscribed = subscribed
        self.uid_validity = uid_validity
        self.uid_next = 1
        self.messages = collections.OrderedDict()   # uid -> Message, ascending

    @property
    def name(self):
        return self.path.split(self.delimiter)[-1] if self.delimiter else self.path


class Account:
    def __init__(self, account, name, email_addr, state, webhooks, object_id,
                 custom_headers):
        self.account = account
        self.custom_headers = custom_headers   # [{key, value}] after the global ones
        self.name = name
        self.email = email_addr
        self.state = state
        self.last_error = None
        self.webhooks = webhooks
        self.object_id = object_id
        self.mailboxes = collections.OrderedDict()   # path -> Mailbox
        self.registry = {}        # (uid_validity, path) -> number
        self.registry_paths = {}  # number -> (uid_validity, path)
        self.next_registry = 1
        self.has_listing = False  # EmailEngine has stored a LIST (connected once)
        self.initialized = False  # accountInitialized was sent
        self.sync_time = None
        # What EmailEngine's index knows, as of its last sync:
        # path -> {"uid_validity", "flags": {uid: tuple}, "messages", "uid_next",
        #          "special_use", "name"}
        self.known = collections.OrderedDict()


def _uid_set(spec, values, star):
    """Members of `values` inside an IMAP sequence-set string."""
    wanted = []
    for item in str(spec).split(","):
        item = item.strip()
        if not item:
            raise ValueError(spec)
        lo, _, hi = item.partition(":")
        lo = star if lo == "*" else int(lo)
        hi = lo if not hi else (star if hi == "*" else int(hi))
        wanted.append((min(lo, hi), max(lo, hi)))
    return [v for v in values if any(a <= v <= b for a, b in wanted)]


def _bool_param(query, name, default=False):
    """Joi boolean with truthy Y/true/1 and falsy N/false/0 (E§8.6)."""
    raw = query.get(name)
    if raw is None:
        return default
    value = raw[-1]
    if value.lower() in ("true", "1", "y"):
        return True
    if value.lower() in ("false", "0", "n"):
        return False
    raise _invalid([(name, '"%s" must be a boolean' % name)])


def _int_param(query, name, default, low, high):
    raw = query.get(name)
    if raw is None or raw[-1] == "":
        return default
    value = raw[-1].strip()
    if not re.fullmatch(r"-?\d+", value):
        raise _invalid([(name, '"%s" must be a number' % name)])
    value = int(value)
    if value < low:
        raise _invalid([(name, '"%s" must be greater than or equal to %d' % (name, low))])
    if value > high:
        raise _invalid([(name, '"%s" must be less than or equal to %d' % (name, high))])
    return value


def _cursor(page):
    return "imap_" + b64url(json.dumps({"page": page}, separators=(",", ":")).encode())


def _decode_cursor(text):
    """mailbox.js decodeCursorStr: a page number, or 400 InvalidCursorValue."""
    kind, sep, rest = text.partition("_")
    if sep and kind != "imap":
        raise EEError(400, "Invalid cursor", "InvalidCursorType")
    body = rest if sep else text
    try:
        page = json.loads(b64url_decode(body)).get("page")
    except (ValueError, AttributeError, UnicodeDecodeError, TypeError):
        raise EEError(400, "Invalid paging cursor", "InvalidCursorValue") from None
    return page if isinstance(page, int) and page >= 0 else None


# --------------------------------------------------------------------------
# The fake.

class FakeEmailEngine:
    """The fake service. All public methods are thread-safe."""

    def __init__(self, host="127.0.0.1", port=0, service_secret=None, service_url=None):
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.accounts = {}
        self.tokens = {}          # token -> {"scopes", "account", "rate_limit"}
        self.rate = {}            # token -> [window start, count]
        self.settings = {"webhooksEnabled": False, "webhooks": "", "webhookEvents": None,
                         "webhooksCustomHeaders": [],
                         "serviceSecret": service_secret or secrets.token_hex(16),
                         "serviceUrl": service_url}
        self.auto_webhooks = True
        self.webhook_attempts = 1
        self.webhook_retry_delay = 0.5
        self.webhook_timeout = 10.0
        self.failures = []
        self.delays = {}
        self.paused = set()
        self.inflight = collections.Counter()
        self.max_inflight = collections.Counter()
        self.counts = collections.Counter()
        self.log = []
        self.hooks = []           # webhook delivery log
        self.queue = collections.deque()
        self.forges = []          # pending forge kinds for queued deliveries
        self.sent_jobs = {}       # event id -> job (for redeliver)
        self.delivering = False
        self._next_job = 1
        self._server = None
        self._thread = None
        self._worker = None
        self.token = self.add_token()

    # ---- lifecycle
    def start(self):
        fake = self

        class Handler(_Handler):
            owner = fake
        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-emailengine")
        self._thread.start()
        self._worker = threading.Thread(target=self._deliver_loop, daemon=True,
                                        name="fake-emailengine-webhooks")
        self._worker.start()
        return self

    def stop(self):
        server = self._server
        with self.cond:
            self._server = None
            self.cond.notify_all()
        if server:
            server.shutdown()
            server.server_close()
        if self._worker:
            self._worker.join(timeout=self.webhook_timeout + 5)

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    @property
    def service_secret(self):
        with self.lock:
            return self.settings["serviceSecret"]

    # ---- tokens
    def add_token(self, token=None, scopes=("api",), account=None, rate_limit=None):
        """A 64-hex access token (lib/tokens.js) with scopes, optionally bound
        to one account and limited to rate_limit=(maxRequests, timeWindow s)."""
        token = token or secrets.token_hex(32)
        with self.lock:
            self.tokens[token] = {"scopes": list(scopes), "account": account,
                                  "rate_limit": rate_limit}
        return token

    def revoke_token(self, token):
        with self.lock:
            self.tokens.pop(token, None)

    # ---- accounts
    def add_account(self, account, state="connected", email_addr=None, name=None,
                    webhooks=None, object_id=True, error=None, custom_headers=None):
        """Register an IMAP account. object_id=False models a server without
        OBJECTID (no emailId/threadId). An account added in an error state
        has no stored listing (mailboxes then answer 503 NotYetConnected)."""
        if state not in STATES:
            raise ValueError("unknown state %r (one of %s)" % (state, STATES))
        with self.lock:
            if account in self.accounts:
                raise ValueError("account %r exists" % account)
            acc = Account(account, name or account, email_addr or "%s@example.com" % account,
                          "init", webhooks, object_id,
                          [{"key": k, "value": v} for k, v in (custom_headers or {}).items()])
            self.accounts[account] = acc
        self.set_account_state(account, state, error)
        return account

    def set_account_state(self, account, state, error=None):
        """Move an account to `state`. authenticationError/connectError store
        `error` ({response, serverResponseCode}; a default otherwise) and queue
        their webhook when the error differs from the stored one; connected
        clears it, runs the sync (events for changes made meanwhile) and sends
        accountInitialized the first time."""
        if state not in STATES:
            raise ValueError("unknown state %r (one of %s)" % (state, STATES))
        with self.cond:
            acc = self.accounts[account]
            acc.state = state
            if state in DEFAULT_ERRORS:
                data = dict(error or DEFAULT_ERRORS[state])
                prev = acc.last_error
                repeat = prev is not None and (
                    (data.get("serverResponseCode") and
                     data.get("serverResponseCode") == prev.get("serverResponseCode"))
                    or data == prev)
                acc.last_error = data
                if not repeat:
                    self._queue(acc, None, state, data)
            elif state == "connected":
                acc.last_error = None
                acc.has_listing = True
                if not acc.initialized:
                    acc.initialized = True
                    self._queue(acc, None, "accountInitialized", {"initialized": True})
                self._sync(acc)
            elif error is not None:
                acc.last_error = dict(error)

    def account_state(self, account):
        with self.lock:
            return self.accounts[account].state

    # ---- mailboxes
    def add_mailbox(self, account, path, special_use=None, delimiter="/", subscribed=True,
                    uid_validity=None, special_use_source=None):
        """A folder. INBOX gets \\Inbox (source "name") unless told otherwise."""
        if special_use is not None and special_use not in SPECIAL_USES:
            raise ValueError("special_use %r is not one of %s" % (special_use, FLAG_SORT_ORDER))
        if path.upper() == "INBOX":
            path = "INBOX"
            if special_use is None:
                special_use, special_use_source = "\\Inbox", special_use_source or "name"
        with self.cond:
            acc = self.accounts[account]
            if path in acc.mailboxes:
                raise ValueError("mailbox %r exists" % path)
            box = Mailbox(path, delimiter, special_use,
                          special_use_source or ("extension" if special_use else None),
                          subscribed, uid_validity or self._new_uid_validity())
            acc.mailboxes[path] = box
            self._sync(acc)
            return path

    def delete_mailbox(self, account, path):
        with self.cond:
            acc = self.accounts[account]
            del acc.mailboxes[self._box(acc, path).path]
            self._sync(acc)

    def rename_mailbox(self, account, path, new_path):
        """A rename: the folder keeps its messages and UIDs but every id
        changes (the registry number is per path). EmailEngine sees a LIST
        with one folder gone and one new: mailboxDeleted + mailboxNew."""
        with self.cond:
            acc = self.accounts[account]
            box = acc.mailboxes.pop(self._box(acc, path).path)
            box.path = new_path
            acc.mailboxes[new_path] = box
            self._sync(acc)

    def reset_uidvalidity(self, account, path, uid_validity=None):
        """The server changed the folder's UIDVALIDITY (E§4, E§7): the same
        messages get new UIDs from 1 and, as the registry number is per
        (UIDVALIDITY, path), new ids; the sync sends one mailboxReset and no
        per-message events. Returns the new UIDVALIDITY."""
        with self.cond:
            acc = self.accounts[account]
            box = self._box(acc, path)
            old = box.uid_validity
            box.uid_validity = uid_validity or self._new_uid_validity()
            if box.uid_validity == old:
                raise ValueError("the new UIDVALIDITY equals the old one")
            renumbered = collections.OrderedDict()
            for i, msg in enumerate(box.messages.values(), 1):
                msg.uid = i
                renumbered[i] = msg
            box.messages = renumbered
            box.uid_next = len(renumbered) + 1
            self._sync(acc)
            return box.uid_validity

    def uid_validity(self, account, path):
        with self.lock:
            return self._box(self.accounts[account], path).uid_validity

    # ---- messages
    def add_message(self, account, path, raw, flags=(), date=None, email_id=None,
                    thread_id=None):
        """Deliver `raw` (RFC 822 bytes) to the folder with `flags`; `date`
        is the INTERNALDATE (Unix time; the listing's `date` is the Date
        header when it parses). Returns the EmailEngine id."""
        with self.cond:
            acc = self.accounts[account]
            box = self._box(acc, path)
            uid = box.uid_next
            box.uid_next += 1
            msg = Message(uid, raw, flags, time.time() if date is None else float(date),
                          email_id or "%016x" % secrets.randbits(64),
                          thread_id or "%016x" % secrets.randbits(64))
            box.messages[uid] = msg
            self._sync(acc)
            return self._pack(acc, box, uid)

    def set_flags(self, account, message_id, flags):
        """Replace a message's flags (a STORE by another client)."""
        with self.cond:
            acc = self.accounts[account]
            box, msg = self._resolve(acc, message_id)
            if msg is None:
                raise KeyError("no message %r" % message_id)
            msg.flags = list(dict.fromkeys(f for f in flags if f != "\\Recent"))
            self._sync(acc)

    def delete_message(self, account, message_id):
        """Expunge a message."""
        with self.cond:
            acc = self.accounts[account]
            box, msg = self._resolve(acc, message_id)
            if msg is None:
                raise KeyError("no message %r" % message_id)
            del box.messages[msg.uid]
            self._sync(acc)

    def message_ids(self, account, path):
        """Current ids of the folder, newest (highest UID) first."""
        with self.lock:
            acc = self.accounts[account]
            box = self._box(acc, path)
            return [self._pack(acc, box, uid) for uid in reversed(box.messages)]

    def find_message(self, account, path, uid):
        with self.lock:
            acc = self.accounts[account]
            box = self._box(acc, path)
            return self._pack(acc, box, uid) if uid in box.messages else None

    def message_uid(self, account, message_id):
        with self.lock:
            return self._resolve(self.accounts[account], message_id)[1].uid

    # ---- internals of the model
    def _new_uid_validity(self):
        return 1000000000 + secrets.randbelow(2000000000)

    def _box(self, acc, path):
        if path.upper() == "INBOX":
            path = "INBOX"
        if path.startswith("\\"):
            for box in acc.mailboxes.values():
                if box.special_use and box.special_use.lower() == path.lower():
                    return box
        box = acc.mailboxes.get(path)
        if box is None:
            raise KeyError("no mailbox %r in %r" % (path, acc.account))
        return box

    def _pack(self, acc, box, uid):
        """The 11-char id: registry number of (UIDVALIDITY, path) + UID."""
        key = (box.uid_validity, box.path)
        number = acc.registry.get(key)
        if number is None:
            number = acc.next_registry
            acc.next_registry += 1
            acc.registry[key] = number
            acc.registry_paths[number] = key
        return b64url(number.to_bytes(4, "big") + uid.to_bytes(4, "big"))

    def _resolve(self, acc, message_id):
        """(mailbox, message) of an id as EmailEngine resolves it: registry
        number -> path, then the UID in that folder now; UIDVALIDITY is not
        checked (imap-client.js unpackUid). (None, None) when nothing."""
        try:
            packed = b64url_decode(message_id)
        except (ValueError, UnicodeEncodeError):
            return None, None
        if len(packed) < 8:
            return None, None
        number = int.from_bytes(packed[:4], "big")
        uid = int.from_bytes(packed[4:8], "big")
        key = acc.registry_paths.get(number)
        if key is None:
            return None, None
        box = acc.mailboxes.get(key[1])
        if box is None:
            return None, None
        return box, box.messages.get(uid)

    def _sync(self, acc):
        """What EmailEngine's sync of a connected account does: compare the
        server with its index, queue the events, remember the new state."""
        if acc.state != "connected":
            return
        acc.sync_time = time.time()
        known = acc.known
        for path in list(known):
            if path not in acc.mailboxes:
                old = known.pop(path)
                self._queue(acc, {"path": path, "special_use": old["special_use"]},
                            "mailboxDeleted",
                            {"path": path, "name": old["name"],
                             "specialUse": old["special_use"] or False})
        for path, box in acc.mailboxes.items():
            where = {"path": path, "special_use": box.special_use}
            state = known.get(path)
            if state is None:
                state = known[path] = {"uid_validity": box.uid_validity, "flags": {},
                                       "special_use": box.special_use, "name": box.name}
                self._queue(acc, where, "mailboxNew",
                            {"path": path, "name": box.name,
                             "specialUse": box.special_use or False,
                             "uidValidity": str(box.uid_validity)})
                # A new folder is indexed without messageNew for what it holds.
                state["flags"] = {uid: tuple(m.flags) for uid, m in box.messages.items()}
            elif state["uid_validity"] != box.uid_validity:
                prev = state["uid_validity"]
                state["uid_validity"] = box.uid_validity
                state["flags"] = {uid: tuple(m.flags) for uid, m in box.messages.items()}
                self._queue(acc, where, "mailboxReset",
                            {"path": path, "name": box.name,
                             "specialUse": box.special_use or False,
                             "uidValidity": str(box.uid_validity),
                             "reason": "uidValidityChange",
                             "prevUidValidity": str(prev)})
            flags = state["flags"]
            for uid in sorted(set(flags) - set(box.messages)):
                del flags[uid]
                self._queue(acc, where, "messageDeleted",
                            {"id": self._pack(acc, box, uid), "uid": uid})
            for uid, msg in box.messages.items():
                before = flags.get(uid)
                now = tuple(msg.flags)
                if before is None:
                    data = _entry(msg, self._pack(acc, box, uid), path, extended=True,
                                  emailid=acc.object_id)
                    data.pop("headers", None)   # notifyHeaders is empty by default
                    data["seemsLikeNew"] = box.special_use != "\\Sent"
                    if box.special_use in ("\\Junk", "\\Sent", "\\Trash", "\\Inbox",
                                           "\\Drafts"):
                        data["messageSpecialUse"] = box.special_use
                    self._queue(acc, where, "messageNew", data)
                elif before != now:
                    changes = {}
                    deleted = [f for f in before if f not in now]
                    added = [f for f in now if f not in before]
                    if deleted:
                        changes["deleted"] = deleted
                    if added:
                        changes["added"] = added
                    changes["value"] = list(now)
                    self._queue(acc, where, "messageUpdated",
                                {"id": self._pack(acc, box, uid), "uid": uid,
                                 "changes": {"flags": changes}})
                flags[uid] = now
            state["messages"] = len(box.messages)
            state["uid_next"] = box.uid_next
            state["name"] = box.name
            state["special_use"] = box.special_use

    # ---- webhooks: configuration and queue
    def configure_webhooks(self, url, events=("*",), enabled=True, custom_headers=None,
                           service_secret=None):
        """The settings of E§7: webhooks URL, webhookEvents allowlist (None:
        unset, delivers nothing), webhooksEnabled, webhooksCustomHeaders
        ({name: value} or [{key, value}])."""
        with self.cond:
            self.settings["webhooks"] = url or ""
            self.settings["webhookEvents"] = list(events) if events is not None else None
            self.settings["webhooksEnabled"] = enabled
            if custom_headers is not None:
                if isinstance(custom_headers, dict):
                    custom_headers = [{"key": k, "value": v} for k, v in custom_headers.items()]
                self.settings["webhooksCustomHeaders"] = list(custom_headers)
            if service_secret is not None:
                self.settings["serviceSecret"] = service_secret

    def sign(self, body):
        """The X-EE-Wh-Signature the fake sends for `body` (bytes)."""
        return sign(self.service_secret, body)

    def forge_next_webhooks(self, kind, count=1):
        """The next `count` queued deliveries are forged: bad_signature (a
        signature of other bytes), wrong_secret, no_signature,
        padded_signature (base64url with '=' padding), tampered_body (the
        body changed after signing), no_event_id, duplicate (delivered twice,
        same event id and job id)."""
        if kind not in FORGES:
            raise ValueError("unknown forge %r (one of %s)" % (kind, FORGES))
        with self.cond:
            self.forges.extend([kind] * count)

    def _payload(self, acc_id, where, event, data):
        payload = collections.OrderedDict()
        payload["serviceUrl"] = self.settings["serviceUrl"] or self.url
        payload["account"] = acc_id
        payload["date"] = iso_ms(time.time())
        path = (where or {}).get("path") or (data or {}).get("path")
        if path:
            payload["path"] = path
        if where and where.get("special_use"):
            payload["specialUse"] = where["special_use"]
        payload["event"] = event
        payload["data"] = data
        return payload

    def _queue(self, acc, where, event, data):
        """Queue a webhook as EmailEngine's notify() would (caller holds the
        lock). Dropped when webhooks are off, the event is not allowlisted,
        there is no URL, or auto_webhooks is False."""
        if not self.auto_webhooks or not self.settings["webhooksEnabled"]:
            return
        allow = self.settings["webhookEvents"]
        if not allow or ("*" not in allow and event not in allow):
            return
        url = acc.webhooks or self.settings["webhooks"]
        if not url:
            return
        job = {"id": self._next_job, "event": event, "account": acc.account,
               "payload": self._payload(acc.account, where, event, data),
               "event_id": str(uuid.uuid4()), "url": url, "queued": time.time(),
               "headers": list(self.settings["webhooksCustomHeaders"] or []),
               "forge": self.forges.pop(0) if self.forges else None, "attempts": 0}
        self._next_job += 1
        self.queue.append(job)
        self.cond.notify_all()

    def _deliver_loop(self):
        while True:
            with self.cond:
                while not self.queue and self._server is not None:
                    self.cond.wait(0.5)
                if self._server is None:
                    return
                job = self.queue.popleft()
                self.delivering = True
            try:
                self._deliver_job(job)
            finally:
                with self.cond:
                    self.delivering = False
                    self.cond.notify_all()

    def _deliver_job(self, job):
        for attempt in range(max(1, self.webhook_attempts)):
            if attempt:
                time.sleep(self.webhook_retry_delay)
            job["attempts"] = attempt
            status = self._post(job)[0]
            if job["forge"] == "duplicate" and status is not None and 200 <= status < 300:
                status = self._post(job)[0]
            if status is not None and 200 <= status < 400:
                return      # 2xx success; a 3xx is final (lib/webhook-request.js)

    def _post(self, job, forge=None):
        """One POST of a job; returns (status, answer): (None, b"") on a
        transport error."""
        forge = forge or job["forge"]
        with self.lock:
            secret = self.settings["serviceSecret"]
            self.sent_jobs[job["event_id"]] = job
        body = json.dumps(job["payload"], separators=(",", ":"), ensure_ascii=False).encode()
        parsed = urllib.parse.urlsplit(job["url"])
        headers = collections.OrderedDict()
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        headers["X-EE-Wh-Id"] = str(job["id"])
        headers["X-EE-Wh-Attempts-Made"] = str(job["attempts"])
        headers["X-EE-Wh-Queued-Time"] = "%ds" % round(max(0.0, time.time() - job["queued"]))
        if parsed.username or parsed.password:
            cred = "%s:%s" % (urllib.parse.unquote(parsed.username or ""),
                              urllib.parse.unquote(parsed.password or ""))
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        for item in job["headers"]:
            headers[item["key"]] = item["value"]
        with self.lock:
            acc = self.accounts.get(job["account"])
            account_headers = list(acc.custom_headers) if acc is not None else []
        for item in account_headers:
            headers[item["key"]] = item["value"]
        if forge != "no_event_id":
            headers["X-EE-Wh-Event-Id"] = job["event_id"]
        signature = sign(secret, body)
        if forge == "bad_signature":
            signature = sign(secret, body + b" ")
        elif forge == "wrong_secret":
            signature = sign(secret + "-not", body)
        elif forge == "padded_signature":
            signature = base64.urlsafe_b64encode(
                hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        elif forge == "tampered_body":
            body = body.replace(b'"event":"', b'"event":"x', 1) if b'"event":"' in body \
                else body + b" "
        headers["Content-Length"] = str(len(body))
        if forge != "no_signature":
            headers["X-EE-Wh-Signature"] = signature
        target = parsed.path or "/"
        if parsed.query:
            target += "?" + parsed.query
        conn_cls = http.client.HTTPSConnection if parsed.scheme == "https" \
            else http.client.HTTPConnection
        start = time.monotonic()
        status, answer, error = None, b"", None
        try:
            conn = conn_cls(parsed.hostname, parsed.port, timeout=self.webhook_timeout)
            try:
                conn.request("POST", target, body=body, headers=headers)
                resp = conn.getresponse()
                status, answer = resp.status, resp.read()[:4096]
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            error = str(exc)
        latency = time.monotonic() - start
        with self.cond:
            self.hooks.append({"t": time.time(), "job_id": job["id"],
                               "event_id": job["event_id"], "event": job["event"],
                               "account": job["account"],
                               "path": job["payload"].get("path"), "url": job["url"],
                               "attempt": job["attempts"], "status": status,
                               "latency": latency, "answer": answer, "error": error,
                               "forge": forge, "body": body, "headers": dict(headers)})
            self.cond.notify_all()
        return status, answer

    def send_webhook(self, event, account, data, url=None, path=None, special_use=None,
                     event_id=None, forge=None, custom_headers=None):
        """Deliver one webhook now, synchronously, bypassing the settings
        (any event, any account, even one the fake does not know): the way
        to test a forged, replayed or unconfigured-account webhook. Returns
        (status, answer bytes, event id)."""
        with self.lock:
            acc = self.accounts.get(account)
            url = url or (acc.webhooks if acc else None) or self.settings["webhooks"]
            if not url:
                raise ValueError("no webhook URL (configure_webhooks or url=)")
            job = {"id": self._next_job, "event": event, "account": account,
                   "payload": self._payload(account, {"path": path,
                                                      "special_use": special_use},
                                            event, data),
                   "event_id": event_id or str(uuid.uuid4()), "url": url,
                   "queued": time.time(), "forge": forge, "attempts": 0,
                   "headers": [{"key": k, "value": v}
                               for k, v in (custom_headers or {}).items()]}
            self._next_job += 1
        if forge is not None and forge not in FORGES:
            raise ValueError("unknown forge %r (one of %s)" % (forge, FORGES))
        status, answer = self._post(job)
        if forge == "duplicate":
            status, answer = self._post(job)
        return status, answer, job["event_id"]

    def redeliver(self, event_id, forge=None):
        """Send an already delivered event again: same body, same event id
        and job id, X-EE-Wh-Attempts-Made one higher (a retry after a lost
        answer). Returns the status."""
        with self.lock:
            job = self.sent_jobs[event_id]
            job["attempts"] += 1
        return self._post(job, forge=forge)[0]

    def webhook_log(self, event=None, account=None):
        """Deliveries so far: dicts with t, job_id, event_id, event, account,
        path, url, attempt, status, latency (s), answer, error, forge, body
        (the signed bytes), headers."""
        with self.lock:
            return [dict(h) for h in self.hooks
                    if (event is None or h["event"] == event) and
                    (account is None or h["account"] == account)]

    def wait_webhooks(self, count, event=None, timeout=30.0):
        """Block until `count` deliveries (of `event`) are logged; returns
        the log. The bound only keeps a broken test from hanging."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.webhook_log(event)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("%d of %d webhooks delivered" %
                                       (len(self.webhook_log(event)), count))
                self.cond.wait(min(left, 0.5))
            return self.webhook_log(event)

    def flush_webhooks(self, timeout=30.0):
        """Block until the queue is empty and nothing is being delivered."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.queue or self.delivering:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("webhook queue did not drain")
                self.cond.wait(min(left, 0.5))

    def pending_webhooks(self):
        with self.lock:
            return [job["event"] for job in self.queue]

    # ---- error injection, delays, counters
    def fail_next(self, endpoint, status, count=1, code=None, message=None, account=None,
                  state=None, ttl=None, headers=None):
        """The next `count` calls (None: until clear_failures) of `endpoint`
        (ENDPOINTS or "*") for `account` (None: any) answer `status` in the
        Boom shape. Defaults: 401 "Bad token" + WWW-Authenticate; 429 "Rate
        limit exceeded" + ttl + X-RateLimit headers; 503 code
        WorkerNotAvailable; 504 code Timeout; `state` adds the 503 field."""
        if endpoint not in ENDPOINTS and endpoint != "*":
            raise ValueError("unknown endpoint %r (one of %s)" % (endpoint, ENDPOINTS))
        with self.lock:
            self.failures.append({"endpoint": endpoint, "status": status, "count": count,
                                  "code": code, "message": message, "account": account,
                                  "state": state, "ttl": ttl, "headers": headers})

    def clear_failures(self):
        with self.lock:
            self.failures = []

    def _injected(self, endpoint, account):
        with self.lock:
            for fail in self.failures:
                if fail["endpoint"] not in (endpoint, "*"):
                    continue
                if fail["account"] is not None and fail["account"] != account:
                    continue
                if fail["count"] is not None:
                    fail["count"] -= 1
                    if fail["count"] <= 0:
                        self.failures.remove(fail)
                status, extra, headers = fail["status"], {}, dict(fail["headers"] or {})
                message, code = fail["message"], fail["code"]
                if status == 401:
                    message = message or "Bad token"
                    headers.setdefault("WWW-Authenticate", 'Bearer error="%s"' % message)
                elif status == 429:
                    ttl = fail["ttl"] if fail["ttl"] is not None else 60
                    message = message or "Rate limit exceeded"
                    extra["ttl"] = ttl
                    headers.setdefault("X-RateLimit-Limit", "1")
                    headers.setdefault("X-RateLimit-Reset", str(ttl))
                elif status == 503:
                    code = code or "WorkerNotAvailable"
                    message = message or ("No active handler for requested account. "
                                          "Try again later.")
                elif status == 504:
                    code = code or "Timeout"
                    message = message or "Timeout waiting for command response [T2]"
                if fail["state"] is not None:
                    extra["state"] = fail["state"]
                return EEError(status, message, code, headers, **extra)
        return None

    def set_delay(self, endpoint, seconds):
        """Answer `endpoint` only after `seconds` (0 removes)."""
        with self.lock:
            self.delays[endpoint] = seconds

    def pause(self, endpoint):
        """Calls of `endpoint` wait (in flight) until resume()."""
        with self.cond:
            self.paused.add(endpoint)

    def resume(self, endpoint):
        with self.cond:
            self.paused.discard(endpoint)
            self.cond.notify_all()

    def in_flight(self, endpoint, account=None):
        with self.lock:
            return sum(n for (ep, a), n in self.inflight.items()
                       if ep == endpoint and (account is None or a == account))

    def max_concurrent(self, endpoint, account=None):
        with self.lock:
            return max([n for (ep, a), n in self.max_inflight.items()
                        if ep == endpoint and (account is None or a == account)] or [0])

    def calls(self, endpoint=None, account=None):
        with self.lock:
            return sum(n for (ep, a), n in self.counts.items()
                       if (endpoint is None or ep == endpoint) and
                       (account is None or a == account))

    def call_log(self, endpoint=None, account=None):
        with self.lock:
            return [dict(e) for e in self.log
                    if (endpoint is None or e["endpoint"] == endpoint) and
                    (account is None or e["account"] == account)]

    def reset_counts(self):
        with self.lock:
            self.counts.clear()
            self.log = []
            self.max_inflight.clear()

    def _count(self, endpoint, account, status, arrived, query):
        with self.lock:
            self.counts[(endpoint, account)] += 1
            self.log.append({"t": arrived, "endpoint": endpoint, "account": account,
                             "status": status, "query": query})

    # ---- request dispatch
    def handle(self, method, target, headers, body):
        """Serve one request; returns (status, headers dict, body bytes)."""
        parsed = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(parsed.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        endpoint, params = _classify(method, parsed.path)
        account = params.get("account")
        arrived = time.time()
        extra_headers = {}
        flat_query = {k: v[-1] for k, v in query.items() if k != "access_token"}
        try:
            if endpoint is None:
                raise EEError(404, "Not Found")
            extra_headers = self._authenticate(headers, query, account, endpoint, path)
            injected = self._injected(endpoint, account)
            if injected:
                raise injected
            result = self._serve(endpoint, params, query, body)
        except EEError as err:
            self._count(endpoint or "unknown", account, err.status, arrived, flat_query)
            hdrs = {"Content-Type": JSON_TYPE}
            hdrs.update(extra_headers)
            hdrs.update(err.headers)
            return err.status, hdrs, json.dumps(err.json()).encode()
        self._count(endpoint, account, 200, arrived, flat_query)
        if isinstance(result, tuple):     # (content type, bytes, more headers)
            ctype, data, more = result
            hdrs = {"Content-Type": ctype}
            hdrs.update(more)
            hdrs.update(extra_headers)
            return 200, hdrs, data
        hdrs = {"Content-Type": JSON_TYPE}
        hdrs.update(extra_headers)
        return 200, hdrs, json.dumps(result, ensure_ascii=False).encode()

    def _authenticate(self, headers, query, account, endpoint, path):
        """hapi-auth-bearer-token + EmailEngine's validate(): returns the
        rate-limit headers of a successful call."""
        auth = _header(headers, "Authorization")
        if not auth and query.get("access_token"):
            auth = "Bearer " + query["access_token"][-1]
        parts = auth.split()
        if not parts or parts[0].lower() != "bearer" or len(parts) < 2:
            raise EEError(401, "Missing authentication",
                          headers={"WWW-Authenticate": "Bearer"})
        token = parts[1]
        with self.lock:
            info = None
            for known, data in self.tokens.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    info = data
            if info is None:
                raise EEError(401, "Bad token",
                              headers={"WWW-Authenticate": 'Bearer error="Bad token"'})
            if not ("api" in info["scopes"] or "*" in info["scopes"]):
                raise EEError(403, "Unauthorized scope", requestedScope="api")
            if info["account"] is not None:
                if endpoint in ("accounts", "settings") or account != info["account"]:
                    raise EEError(403, "Unauthorized account")
            if not info["rate_limit"]:
                return {}
            limit, window = info["rate_limit"]
            now = time.monotonic()
            slot = self.rate.get(token)
            if slot is None or now >= slot[0] + window:
                slot = self.rate[token] = [now, 0]
            slot[1] += 1
            ttl = max(1, math.ceil(slot[0] + window - now))
            if slot[1] > limit:
                raise EEError(429, "Rate limit exceeded", ttl=ttl,
                              headers={"X-RateLimit-Limit": str(limit),
                                       "X-RateLimit-Reset": str(ttl)})
            return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Reset": str(ttl),
                    "X-RateLimit-Remaining": str(limit - slot[1])}

    def _serve(self, endpoint, params, query, body):
        key = (endpoint, params.get("account"))
        with self.cond:
            self.inflight[key] += 1
            self.max_inflight[key] = max(self.max_inflight[key], self.inflight[key])
            delay = self.delays.get(endpoint, 0)
            while endpoint in self.paused and self._server is not None:
                self.cond.wait(0.5)
        try:
            if delay:
                time.sleep(delay)
            with self.cond:
                return getattr(self, "_ep_" + endpoint)(params, query, body)
        finally:
            with self.lock:
                self.inflight[key] -= 1

    def _account(self, params):
        acc = self.accounts.get(params["account"])
        if acc is None:
            raise _not_found_account()
        return acc

    @staticmethod
    def _require_valid(acc):
        """validateAccountState: 503 with code and state."""
        if acc.state in VALID_STATES:
            return
        code, message = STATE_ERRORS.get(acc.state, ("NoAvailable",
                                                     "Requested account currently not "
                                                     "available"))
        raise EEError(503, message, code, state=acc.state)

    # ---- endpoints
    def _ep_accounts(self, params, query, body):
        page = _int_param(query, "page", 0, 0, 1024 * 1024)
        size = _int_param(query, "pageSize", 20, 1, 1000)
        state = query.get("state", [None])[-1] or None
        if state is not None and state not in STATES + ("errors",):
            raise _invalid([("state", '"state" must be one of [%s]' % ", ".join(STATES))])
        needle = query.get("query", [""])[-1]
        states = ("authenticationError", "connectError") if state == "errors" else (state,)
        rows = []
        for acc_id in sorted(self.accounts):
            acc = self.accounts[acc_id]
            if state and acc.state not in states:
                continue
            if needle and not any(needle.lower() in (v or "").lower()
                                  for v in (acc.account, acc.name, acc.email)):
                continue
            rows.append(acc)
        out = []
        for acc in rows[page * size:(page + 1) * size]:
            item = collections.OrderedDict(
                [("account", acc.account), ("name", acc.name), ("email", acc.email),
                 ("type", "imap"), ("state", acc.state)])
            if acc.webhooks:
                item["webhooks"] = acc.webhooks
            if acc.sync_time:
                item["syncTime"] = iso_ms(acc.sync_time)
            item["lastError"] = None if acc.state == "connected" else acc.last_error
            out.append(item)
        return {"total": len(rows), "pages": math.ceil(len(rows) / size), "page": page,
                "query": needle or False, "state": state or "*", "accounts": out}

    def _ep_account(self, params, query, body):
        acc = self._account(params)
        out = collections.OrderedDict()
        out["account"] = acc.account
        out["name"] = acc.name
        out["email"] = acc.email
        if acc.webhooks:
            out["webhooks"] = acc.webhooks
        out["imapIndexer"] = "full"
        out["imap"] = {"host": "imap.example.com", "port": 993, "secure": True,
                       "auth": {"user": acc.email, "pass": "******"}}
        out["state"] = acc.state
        out["logs"] = False
        out["notifyFrom"] = None
        out["syncFrom"] = None
        out["smtpStatus"] = None
        out["type"] = "imap"
        if acc.sync_time:
            out["syncTime"] = iso_ms(acc.sync_time)
        if acc.state == "connected":
            out["lastError"] = None
        elif acc.last_error is not None:
            out["lastError"] = acc.last_error
        else:
            out.pop("lastError", None)
        return out

    def _ep_mailboxes(self, params, query, body):
        acc = self._account(params)
        counters = _bool_param(query, "counters")
        if acc.state != "connected" and counters:
            # EmailEngine asks the IMAP worker for a live LIST + STATUS here
            # (account.js getMailboxListing); with no connection that call
            # fails. The exact answer is UNCONFIRMED: the worker's "no active
            # handler" 503 is used.
            raise EEError(503, "No active handler for requested account. Try again later.",
                          "WorkerNotAvailable")
        if acc.state != "connected":
            if acc.state == "unset":
                raise EEError(503, STATE_ERRORS["unset"][1], "NotSyncing", state=acc.state)
            if acc.state == "init" or not acc.has_listing:
                raise EEError(503, STATE_ERRORS["init"][1], "NotYetConnected",
                              state=acc.state)
        # The listing is what EmailEngine stored at its last sync (acc.known);
        # counters=true adds a live STATUS.
        boxes = []
        paths = list(acc.mailboxes) if acc.state == "connected" else list(acc.known)
        for path in paths:
            box = acc.mailboxes.get(path)
            known = acc.known.get(path)
            if box is None and known is None:
                continue
            delimiter = box.delimiter if box else "/"
            entry = collections.OrderedDict()
            entry["path"] = path
            entry["delimiter"] = delimiter
            if delimiter and delimiter in path:
                entry["parentPath"] = path[:path.rindex(delimiter)]
            entry["listed"] = True
            entry["name"] = path.split(delimiter)[-1] if delimiter else path
            entry["subscribed"] = box.subscribed if box else True
            special = box.special_use if box else (known or {}).get("special_use")
            if special:
                entry["specialUse"] = special
                entry["specialUseSource"] = box.special_use_source if box else "extension"
            entry["messages"] = known["messages"] if known and "messages" in known else False
            entry["uidNext"] = known["uid_next"] if known and "uid_next" in known else False
            if counters and box is not None:
                entry["status"] = {"messages": len(box.messages),
                                   "unseen": sum(1 for m in box.messages.values()
                                                 if "\\Seen" not in m.flags)}
            boxes.append(entry)

        def order(entry):
            special = entry.get("specialUse")
            if special:
                return (0, FLAG_SORT_ORDER.index(special) if special in FLAG_SORT_ORDER
                        else -1, "")
            return (1, 0, entry["path"].lower())
        boxes.sort(key=order)
        return {"mailboxes": boxes}

    def _folder(self, acc, query):
        if "path" not in query:
            raise _invalid([("path", '"path" is required')])
        path = query["path"][-1]
        if not path:
            raise _invalid([("path", '"path" is not allowed to be empty')])
        try:
            return self._box(acc, path)
        except KeyError:
            raise EEError(404, "Requested mailbox folder was not found",
                          "FolderNotFound") from None

    def _page(self, acc, box, query, uids):
        """The paging of mailbox.js listMessages over `uids` (ascending;
        None: the whole folder by sequence number)."""
        page = _int_param(query, "page", 0, 0, 1024 * 1024)
        size = _int_param(query, "pageSize", 20, 1, 1000)
        cursor = (query.get("cursor", [""])[-1] or "").strip()
        if cursor:
            cursor_page = _decode_cursor(cursor)
            if cursor_page is not None:
                page = cursor_page
        every = list(box.messages)
        chosen = every if uids is None else uids
        total = len(chosen)
        pages = math.ceil(total / size) or 1
        out = {"total": total, "page": page, "pages": pages,
               "nextPageCursor": _cursor(page + 1) if page < pages - 1 else None,
               "prevPageCursor": _cursor(min(page - 1, pages - 1)) if page > 0 else None,
               "messages": []}
        if not total or page >= pages:
            return out
        if uids is None:
            seq_max = total - page * size
            seq_min = max(1, seq_max - size + 1)
            picked = every[seq_min - 1:seq_max]
        else:
            newest_first = sorted(uids, reverse=True)
            picked = newest_first[page * size:(page + 1) * size]
        entries = [_entry(box.messages[uid], self._pack(acc, box, uid),
                          emailid=acc.object_id) for uid in picked]
        out["messages"] = sorted(entries, key=lambda e: -e["uid"])
        return out

    def _ep_messages(self, params, query, body):
        acc = self._account(params)
        self._require_valid(acc)
        box = self._folder(acc, query)
        return self._page(acc, box, query, None)

    def _ep_search(self, params, query, body):
        acc = self._account(params)
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise EEError(400, "Invalid request payload JSON format") from None
        criteria = doc.get("search") if isinstance(doc, dict) else None
        if not isinstance(criteria, dict):
            raise _invalid([("search", '"search" is required')])
        self._require_valid(acc)
        box = self._folder(acc, query)
        uids = list(box.messages)
        seqs = {uid: i for i, uid in enumerate(uids, 1)}
        flag_names = {"seen": "\\Seen", "answered": "\\Answered", "flagged": "\\Flagged",
                      "draft": "\\Draft", "deleted": "\\Deleted"}
        for key, value in criteria.items():
            try:
                if key == "uid":
                    uids = _uid_set(value, uids, box.uid_next - 1 if box.messages else 0)
                elif key == "seq":
                    keep = _uid_set(value, [seqs[u] for u in uids], len(seqs))
                    uids = [u for u in uids if seqs[u] in keep]
                elif key in flag_names:
                    uids = [u for u in uids
                            if (flag_names[key] in box.messages[u].flags) == bool(value)]
                elif key in ("emailId", "threadId"):
                    attr = "email_id" if key == "emailId" else "thread_id"
                    uids = [u for u in uids if getattr(box.messages[u], attr) == value]
                elif key in ("subject", "from", "to"):
                    uids = [u for u in uids if str(value).lower() in " ".join(
                        str(v) for v in box.messages[u].header_values(key)).lower()]
                elif key == "header" and isinstance(value, dict):
                    for name, want in value.items():
                        uids = [u for u in uids if box.messages[u].header_values(name) and (
                            want is True or str(want).lower() in " ".join(
                                str(v) for v in box.messages[u].header_values(name)).lower())]
                else:
                    raise EEError(400, "fake_emailengine does not implement the search "
                                       "criterion %r" % key)
            except (ValueError, TypeError):
                raise _invalid([(key, '"%s" is not a valid range' % key)]) from None
        return self._page(acc, box, query, uids)

    def _message(self, acc, params):
        box, msg = self._resolve(acc, params["message"])
        if msg is None:
            raise EEError(404, "Requested message was not found", "MessageNotFound")
        return box, msg

    def _ep_message(self, params, query, body):
        acc = self._account(params)
        self._require_valid(acc)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", params["message"]):
            raise _invalid([("message", '"message" must be a valid base64 string')])
        box, msg = self._message(acc, params)
        text_type = query.get("textType", [None])[-1]
        if text_type not in (None, "plain", "html", "*"):
            raise _invalid([("textType", '"textType" must be one of [html, plain, *]')])
        max_bytes = _int_param(query, "maxBytes", 5 * 1024 * 1024, 0, 1024 * 1024 * 1024)
        if _bool_param(query, "markAsSeen") and "\\Seen" not in msg.flags:
            msg.flags.append("\\Seen")
            self._sync(acc)
        out = _entry(msg, self._pack(acc, box, msg.uid), box.path, extended=True,
                     emailid=acc.object_id)
        if text_type:
            out["text"].update(_text_contents(msg, text_type, max_bytes))
        return out

    def _ep_source(self, params, query, body):
        acc = self._account(params)
        self._require_valid(acc)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", params["message"]):
            raise _invalid([("message", '"message" must be a valid base64 string')])
        box, msg = self._resolve(acc, params["message"])
        if msg is None:
            raise EEError(404, "Requested file not found")
        return ("message/rfc822", msg.raw,
                {"Content-Disposition": "attachment; filename=message.eml"})

    def _ep_settings(self, params, query, body):
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise EEError(400, "Invalid request payload JSON format") from None
        if not isinstance(doc, dict):
            raise _invalid([("value", '"value" must be of type object')])
        unknown = [k for k in doc if k not in SETTINGS_KEYS]
        if unknown:
            raise _invalid([(k, '"%s" is not allowed' % k) for k in unknown])
        for key, value in doc.items():
            if key == "webhooksCustomHeaders" and not (
                    isinstance(value, list) and all(isinstance(v, dict) and "key" in v
                                                    and "value" in v for v in value)):
                raise _invalid([(key, '"%s" must be an array of {key, value}' % key)])
            self.settings[key] = value
        return {"updated": list(doc)}


def _header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _classify(method, path):
    """(endpoint name, path params) of a request, or (None, {})."""
    seg = r"([^/]+)"
    table = [("GET", r"/v1/accounts", "accounts", ()),
             ("GET", r"/v1/account/%s" % seg, "account", ("account",)),
             ("GET", r"/v1/account/%s/mailboxes" % seg, "mailboxes", ("account",)),
             ("GET", r"/v1/account/%s/messages" % seg, "messages", ("account",)),
             ("POST", r"/v1/account/%s/search" % seg, "search", ("account",)),
             ("GET", r"/v1/account/%s/message/%s" % (seg, seg), "message",
              ("account", "message")),
             ("GET", r"/v1/account/%s/message/%s/source" % (seg, seg), "source",
              ("account", "message")),
             ("POST", r"/v1/settings", "settings", ())]
    for verb, pattern, name, names in table:
        m = re.fullmatch(pattern, path)
        if m and method == verb:
            return name, {k: urllib.parse.unquote(v) for k, v in zip(names, m.groups())}
    return None, {}


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(http.server.BaseHTTPRequestHandler):
    owner = None
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # see fake_gmail.py: no 40 ms delayed-ACK stalls

    def log_message(self, fmt, *args):  # quiet; the owner keeps a call log
        pass

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, headers, payload = self.owner.handle(self.command, self.path,
                                                         dict(self.headers.items()), body)
        except Exception as exc:  # a bug in the fake: say so, as a 500
            traceback.print_exc()
            status, headers = 500, {"Content-Type": JSON_TYPE}
            payload = json.dumps(EEError(500, "fake_emailengine bug: %r" % exc).json()).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


# --------------------------------------------------------------------------
# Demo process.

DEMO_MESSAGE = (b"From: Alice <alice@example.org>\r\nTo: demo@example.com\r\n"
                b"Subject: %s\r\nMessage-ID: <%s@example.org>\r\n"
                b"Date: Mon, 07 Dec 2026 01:00:00 +0000\r\n\r\nHello from the fake EmailEngine.\r\n")


def write_secret(path, text):
    """Write a credential file the way the driver expects them: mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def main(argv=None):
    """Run a demo instance: one connected account with INBOX, Sent and
    Trash and a few messages; the access token and the service secret are
    written to --dir; with --webhook-url webhooks go there; with --every N
    a new INBOX message arrives every N seconds. Prints one JSON line."""
    ap = argparse.ArgumentParser(description="Local stand-in for EmailEngine "
                                 "(not EmailEngine; for tests and demos)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True, help="where credential files are written")
    ap.add_argument("--account", default="demo")
    ap.add_argument("--webhook-url", help="where webhooks are POSTed (e.g. .../push/ee)")
    ap.add_argument("--every", type=float, default=0, help="deliver a message every N s")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    fake = FakeEmailEngine(port=args.port).start()
    if args.webhook_url:
        fake.configure_webhooks(args.webhook_url)
    fake.add_account(args.account, email_addr="demo@example.com")
    fake.add_mailbox(args.account, "INBOX")
    fake.add_mailbox(args.account, "Sent", special_use="\\Sent")
    fake.add_mailbox(args.account, "Trash", special_use="\\Trash")
    for i in range(3):
        fake.add_message(args.account, "INBOX", DEMO_MESSAGE % (b"demo %d" % i, b"demo%d" % i))
    os.makedirs(args.dir, exist_ok=True)
    info = {"note": "LOCAL FAKE, not EmailEngine", "url": fake.url,
            "ee_account": args.account,
            "token_file": write_secret(os.path.join(args.dir, "ee_token"), fake.token + "\n"),
            "service_secret_file": write_secret(os.path.join(args.dir, "ee_service_secret"),
                                                fake.service_secret + "\n")}
    print(json.dumps(info), flush=True)
    n = 3
    try:
        while True:
            time.sleep(args.every or 3600)
            if args.every:
                fake.add_message(args.account, "INBOX",
                                 DEMO_MESSAGE % (b"demo %d" % n, b"demo%d" % n))
                n += 1
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

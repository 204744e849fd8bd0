"""A local stand-in for Gmail API + Cloud Pub/Sub + Google OAuth, for tests.

The gmail.so driver must not know it talks to a fake, so every answer uses
the wire format of the real service. Sources are the sections of
../shared/reference/providers.md (cited "P§n") and the Google reference
pages named there.

What it serves (all on one 127.0.0.1 port; point the driver's `api_url`,
`token_url`, `pubsub_url` and `certs_url` at `fake.url`, `fake.token_url`,
`fake.url` and `fake.certs_url`):

- OAuth token endpoint `POST /token` (form encoded):
  * `grant_type=refresh_token`: client_id/client_secret in the form or HTTP
    Basic; optional rotation of the refresh token (`rotate_refresh_tokens`).
  * `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`: the RS256
    assertion is verified against the registered service-account public key;
    iss = service account, aud = the token URL (the fake's or Google's),
    scope, iat/exp (at most one hour, not expired), sub = a known user.
  * errors in Google's OAuth shape `{"error":..,"error_description":..}`:
    invalid_grant, invalid_client, unauthorized_client, unsupported_grant_type,
    and injected 429 (Retry-After) / 5xx.
  Access tokens expire after `access_token_lifetime` s; an unknown or expired
  bearer on the API gives 401 with the Gmail error JSON.
- Token info `GET /tokeninfo?access_token=..` or `POST /tokeninfo` (form
  `access_token`), as Google's oauth2.googleapis.com/tokeninfo answers it:
  `azp`, `aud` (the client), `sub`, `scope` (space-separated), `exp` and
  `expires_in` as strings, `access_type`; `email` and `email_verified`
  ("true") only when the token carries the `email` (userinfo.email) scope.
  An unknown or expired token: 400 `{"error":"invalid_token",
  "error_description":"Invalid Value"}`.
- Gmail API under `/gmail/v1/users/{userId}/` (P§2): `profile`, `labels`,
  `messages` (list: labelIds AND, q subset, maxResults, pageToken,
  includeSpamTrash, resultSizeEstimate; insert: JSON `{"raw":..}` or
  `/upload/...?uploadType=media`), `messages/{id}` (format minimal |
  metadata with repeated metadataHeaders | raw | full), `history`
  (startHistoryId, repeated historyTypes, labelId, pageToken, maxResults,
  404 for an id older than the retained history), `watch`, `stop`.
  Numbers are typed as Google types them: historyId, internalDate,
  expiration and history record ids are strings; sizeEstimate,
  resultSizeEstimate, messagesTotal, threadsTotal are numbers.
  Errors: `{"error":{"code","message","errors":[{"message","domain",
  "reason"}],"status"}}`.
- Batch `POST /batch/gmail/v1` (P§2 "Batch"): multipart/mixed of
  application/http parts in, multipart/mixed out with
  `Content-ID: <response-ID>` and a per-part status; more than 100 parts is a
  400 for the whole batch; each part counts as one call against quota.
- Per-user quota (P§2 "Quota"): units per method from the table, 15,000 per
  sliding minute; over it, 429 `rateLimitExceeded` with Retry-After.
- Pub/Sub (P§2.1, P§2.3): `POST /v1/projects/P/subscriptions/S:pull`
  (returnImmediately, maxMessages, long poll bounded by `pull_max_wait`) and
  `:acknowledge` (ackIds); a message not acked within the subscription's ack
  deadline is delivered again with a new ackId. A watched mailbox publishes
  `base64({"emailAddress":..,"historyId":".."})` to the watch's topic on every
  change matching the watch's labels (messages.insert included, as at
  Google), as long as the topic's IAM policy lets Gmail's push account
  publish.
- Pub/Sub admin reads (what `gmail-setup` verifies): `GET /v1/{topic}`
  (`{"name"}`), `GET /v1/{topic}:getIamPolicy` (Policy `{"version":1,
  "etag","bindings":[{"role","members"}]}`; `{"etag":"ACAB"}` when empty),
  `GET /v1/{topic}/subscriptions` (`{"subscriptions":[names],
  "nextPageToken"}`, pageSize/pageToken), `GET /v1/{subscription}` (the
  Subscription resource: name, topic, pushConfig `{pushEndpoint,
  oidcToken{serviceAccountEmail, audience}}` (`{}` for pull), ackDeadlineSeconds,
  messageRetentionDuration, expirationPolicy, state). 404 NOT_FOUND for an
  unknown resource; all need a Pub/Sub scope.
- JWKS `GET /oauth2/v3/certs` (P§2.2) with `Cache-Control: max-age`, the
  push signer's keys with `kid`; `rotate_signing_key()` on demand.
- Push sender `push(url, ...)` (P§2.1, P§2.2): the exact envelope (both
  camelCase and snake_case id/time fields) with `Authorization: Bearer` an
  RS256 OIDC JWT (iss, aud, azp, email, email_verified, sub, iat, exp), and
  `forge=` knobs: alg none, HS256, missing/unknown kid, bad signature, wrong
  aud/iss/email, unverified email, expired, iat in the future, no
  Authorization. Duplicates and
  out-of-order pushes are just repeated/reordered calls; `hold_history()`
  makes a change visible in profile/push before `history.list` returns it
  ("push outran history", P§1 item 8). A push subscription registered with
  `create_subscription(..., push_endpoint=URL)` is delivered automatically.
- Every request is counted per endpoint and per user, with a timestamped
  log (`calls()`, `call_log()`; a messages.get entry names its `format`),
  so tests can assert "no request inside the
  Retry-After window" or "one history.list per sync"; `max_concurrent()`
  and `in_flight()` show whether two syncs of one account overlapped.

Control surface (all thread-safe; endpoint names are in ENDPOINTS):
- mailbox: add_user, add_label, delete_label, add_message, modify_labels,
  delete_message, hold_history (push outran history), expire_history
  (history 404), history_id, watch_state; FakeGmail(history_step=) sets
  how far apart history ids are (they are not contiguous at Google);
- credentials: add_client, add_refresh_token, revoke_refresh_token
  (-> invalid_grant), rotate_refresh_tokens, add_service_account (returns
  the JSON key file), issue_access_token, expire_access_tokens;
- failures: fail_next(endpoint, status, count, retry_after, reason, user,
  oauth_error), clear_failures; quota_per_minute, quota_status,
  quota_reason; set_delay (slow Google), pause/resume (hold calls in
  flight);
- clock: now(), advance(seconds) moves access-token expiry, watch
  expiration, ack deadlines, internalDate/publishTime and the quota window;
  JWT iat/exp (push tokens signed here, service-account assertions checked
  here) stay on the real clock because the other side checks them with its
  own;
- Pub/Sub: create_topic(gmail_can_publish=, bindings=), set_topic_iam
  (a topic's IAM bindings; Gmail may publish when one grants publisher,
  editor or admin to serviceAccount:gmail-api-push@system.gserviceaccount.com),
  topic_iam, create_subscription(push_endpoint=, audience=,
  service_account=, oidc=, ack_deadline=, dead_letter=), set_push_config
  (modifyPushConfig: endpoint, OIDC service account and audience; no
  endpoint: pull), publish, pending, push_attempts/push_retry_delay,
  numeric_history_id (the notification's historyId as a JSON number instead
  of the guide's string);
- push: push(url, email, history_id, forge=, message_id=,
  numeric_history_id=, snake_case=, camel_case=, body=), make_push_token,
  rotate_signing_key, jwks, push_log;
- counters: calls, call_log, max_concurrent, in_flight, reset_counts.

Scopes are enforced as Google does: reading needs a gmail scope,
`format=raw|full` and `q` are refused with only gmail.metadata, insert needs
gmail.insert/modify/mail.google.com, Pub/Sub needs pubsub or cloud-platform.
Where sources disagree the fake has a knob: `raw_padding` (base64url `raw`
with or without `=`), `numeric_history_id`, the envelope's spellings.

What it does not do: TLS (plain http on 127.0.0.1; the driver's URL keys
must accept http for tests), threads.*, drafts, attachments,
messages.modify/send/import (the driver is read-only), the full Gmail
search grammar (q knows in:/label:, is:unread/starred/important, from:,
to:, subject:, after:, before:, rfc822msgid:, and refuses other terms with
400), gzip, ETags, Pub/Sub ordering keys, exactly-once delivery,
dead-letter topics (only deliveryAttempt), modifyAckDeadline, real push
backoff (`push_attempts` retries at a fixed `push_retry_delay`), the
per-project quota, and the 1 notification/s per-user push rate. The
`format=full` payload is a plain MIME walk without attachment ids.

Library use:

    fake = FakeGmail(); fake.start()
    fake.add_client("cid", "secret")
    fake.add_user("a@example.com")
    rt = fake.add_refresh_token("cid", "a@example.com")
    mid = fake.add_message("a@example.com", raw_bytes, ["INBOX", "UNREAD"])
    ...
    fake.stop()

`python3 fake_gmail.py --dir DIR [--push-url URL] [--pull] [--every N]`
runs a demo instance and prints one JSON line with the driver's config
values and credential files (see `main`).
Only the standard library plus python3-cryptography (Debian) is used.
"""

import argparse
import base64
import collections
import email
import email.policy
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import signal
import socketserver
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GMAIL_PUSH_SA = "gmail-api-push@system.gserviceaccount.com"
SCOPE_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
SCOPE_METADATA = "https://www.googleapis.com/auth/gmail.metadata"
SCOPE_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
SCOPE_INSERT = "https://www.googleapis.com/auth/gmail.insert"
SCOPE_FULL = "https://mail.google.com/"
SCOPE_PUBSUB = "https://www.googleapis.com/auth/pubsub"
SCOPE_CLOUD = "https://www.googleapis.com/auth/cloud-platform"
READ_SCOPES = {SCOPE_READONLY, SCOPE_METADATA, SCOPE_MODIFY, SCOPE_FULL}
INSERT_SCOPES = {SCOPE_INSERT, SCOPE_MODIFY, SCOPE_FULL}
PUBSUB_SCOPES = {SCOPE_PUBSUB, SCOPE_CLOUD}
SCOPE_EMAIL = "https://www.googleapis.com/auth/userinfo.email"
EMAIL_SCOPES = {"email", SCOPE_EMAIL}
PUBLISHER_ROLE = "roles/pubsub.publisher"
# Roles that include pubsub.topics.publish.
PUBLISH_ROLES = {PUBLISHER_ROLE, "roles/pubsub.editor", "roles/pubsub.admin"}

# Units per method, P§2 "Quota" (watch/stop are marked UNCONFIRMED there;
# messages.insert, not in P§2, is 25 in Google's usage-limits table).
QUOTA_UNITS = {"messages.get": 5, "messages.list": 5, "messages.insert": 25,
               "history.list": 2, "labels.list": 1, "profile": 1,
               "watch": 100, "stop": 50}
QUOTA_PER_MINUTE = 15000

SYSTEM_LABELS = ["INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED",
                 "IMPORTANT", "CHAT", "CATEGORY_PERSONAL", "CATEGORY_SOCIAL",
                 "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS"]
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")

# Google's canonical status names for the codes the fake produces.
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
                500: "INTERNAL", 502: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
REASONS = {400: "invalidArgument", 401: "authError", 403: "forbidden", 404: "notFound",
           429: "rateLimitExceeded", 500: "backendError", 502: "backendError",
           503: "backendError", 504: "backendError"}
MESSAGES = {400: "Invalid argument.", 401: "Request had invalid authentication credentials. "
            "Expected OAuth 2 access token, login cookie or other valid authentication "
            "credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            403: "The caller does not have permission", 404: "Requested entity was not found.",
            429: "User-rate limit exceeded.", 500: "Backend Error",
            502: "Bad Gateway", 503: "The service is currently unavailable.",
            504: "Deadline exceeded."}


# --------------------------------------------------------------------------
# Encoding helpers and RS256 JWTs.

def b64url(data):
    """base64url without padding (JWT, JWK)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def _int_b64(value):
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class RsaKey:
    """An RSA key pair with a kid, for RS256 JWTs."""

    def __init__(self, kid=None, private_key=None):
        self.private = private_key or rsa.generate_private_key(public_exponent=65537,
                                                               key_size=2048)
        self.public = self.private.public_key()
        self.kid = kid or secrets.token_hex(20)

    def jwk(self):
        nums = self.public.public_numbers()
        return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                "n": _int_b64(nums.n), "e": _int_b64(nums.e)}

    def private_pem(self):
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode("ascii")

    def sign(self, data):
        return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, signature, data):
        try:
            self.public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            return False


def jwt_encode(header, claims, key=None, hs_secret=None, signature=None):
    """Serialise a JWT: RS256 with `key`, HS256 with `hs_secret`, or the
    given raw `signature` bytes (b"" for alg none)."""
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    if signature is None:
        if hs_secret is not None:
            signature = hmac.new(hs_secret, signing_input.encode(), hashlib.sha256).digest()
        else:
            signature = key.sign(signing_input.encode())
    return signing_input + "." + b64url(signature)


def jwt_verify_rs256(token, keys):
    """Verify an RS256 JWT against {kid: RsaKey} (or a single RsaKey).
    Returns (header, claims) or raises ValueError with the reason."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed JWT: %s" % exc) from None
    if header.get("alg") != "RS256":
        raise ValueError("alg %r is not RS256" % header.get("alg"))
    if isinstance(keys, RsaKey):
        key = keys
    else:
        key = keys.get(header.get("kid"))
        if key is None:
            raise ValueError("unknown kid")
    if not key.verify(signature, (parts[0] + "." + parts[1]).encode()):
        raise ValueError("bad signature")
    return header, claims


def _rfc3339(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % int((ts % 1) * 1000)


class ApiError(Exception):
    """An error answer: the Google JSON error (or an OAuth error for the
    token endpoint), with extra headers."""

    def __init__(self, code, message=None, reason=None, headers=None, body=None):
        super().__init__("%d %s" % (code, message or ""))
        self.code = code
        self.message = message or MESSAGES.get(code, "Error")
        self.reason = reason or REASONS.get(code, "backendError")
        self.headers = headers or {}
        self.body = body

    def json(self):
        if self.body is not None:
            return self.body
        return {"error": {"code": self.code, "message": self.message,
                          "errors": [{"message": self.message, "domain": "global",
                                      "reason": self.reason}],
                          "status": STATUS_NAMES.get(self.code, "UNKNOWN")}}


class OAuthError(ApiError):
    def __init__(self, code, error, description, headers=None):
        super().__init__(code, description, headers=headers,
                         body={"error": error, "error_description": description})


# --------------------------------------------------------------------------
# Mailbox model.

class Message:
    def __init__(self, mid, thread_id, raw, labels, internal_date_ms, history_id):
        self.id = mid
        self.thread_id = thread_id
        self.raw = raw
        self.labels = list(dict.fromkeys(labels))
        self.internal_date = internal_date_ms
        self.history_id = history_id
        self.parsed = email.message_from_bytes(raw, policy=email.policy.compat32)

    def ref(self, with_labels=False):
        out = {"id": self.id, "threadId": self.thread_id}
        if with_labels:
            out["labelIds"] = list(self.labels)
        return out

    def header(self, name):
        for key, value in self.headers():
            if key.lower() == name.lower():
                return value
        return ""

    def headers(self):
        """(name, value) in order, unfolded, as text: Gmail shows header
        bytes as UTF-8 and leaves RFC 2047 words encoded."""
        head = re.split(rb"\r?\n\r?\n", self.raw, maxsplit=1)[0]
        out = []
        for line in re.split(rb"\r?\n", head):
            if line[:1] in (b" ", b"\t") and out:
                out[-1][1] += " " + line.strip().decode("utf-8", "replace")
            elif b":" in line:
                key, value = line.split(b":", 1)
                out.append([key.decode("utf-8", "replace"),
                            value.strip().decode("utf-8", "replace")])
        return [tuple(kv) for kv in out]

    def snippet(self):
        part = self.parsed
        if part.is_multipart():
            for sub in part.walk():
                if sub.get_content_type() == "text/plain":
                    part = sub
                    break
            else:
                return ""
        try:
            text = part.get_payload(decode=True) or b""
            text = text.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:
            return ""
        return " ".join(text.split())[:200]


class Mailbox:
    def __init__(self, email_addr, history_id, history_step):
        self.email = email_addr
        self.messages = collections.OrderedDict()
        self.labels = collections.OrderedDict(
            (name, {"id": name, "name": name, "type": "system"}) for name in SYSTEM_LABELS)
        self.history = []          # visible records, ascending id
        self.held = []             # records not yet visible to history.list
        self.hold = False
        self.hold_at = history_id  # history.list's historyId while held
        self.history_id = history_id
        self.history_step = history_step
        self.min_history_id = history_id   # older start ids give 404
        self.watch = None          # {"topic", "labels", "behavior", "expiration"}
        self.next_label = 1

    def next_history_id(self):
        self.history_id += self.history_step
        return self.history_id


class Subscription:
    def __init__(self, name, topic, ack_deadline, push_endpoint, audience, service_account,
                 dead_letter):
        self.name = name
        self.dead_letter = dead_letter      # deliveryAttempt is only set with a policy
        self.topic = topic
        self.ack_deadline = ack_deadline
        self.push_endpoint = push_endpoint
        self.oidc_audience = audience       # as configured: None = the endpoint URL
        self.service_account = service_account   # None: pushes carry no OIDC token
        self.backlog = collections.deque()  # [message dict, attempts]
        self.outstanding = {}               # ackId -> (message, attempts, deadline)

    @property
    def audience(self):
        """The `aud` Pub/Sub signs: the configured audience or the endpoint."""
        return self.oidc_audience or self.push_endpoint

    def resource(self):
        """The Subscription resource as subscriptions.get answers it."""
        push = {}
        if self.push_endpoint:
            push["pushEndpoint"] = self.push_endpoint
            if self.service_account:
                oidc = {"serviceAccountEmail": self.service_account}
                if self.oidc_audience:
                    oidc["audience"] = self.oidc_audience
                push["oidcToken"] = oidc
        return {"name": self.name, "topic": self.topic, "pushConfig": push,
                "ackDeadlineSeconds": self.ack_deadline,
                "messageRetentionDuration": "604800s",
                "expirationPolicy": {"ttl": "2678400s"}, "state": "ACTIVE"}


# --------------------------------------------------------------------------
# The fake.

class FakeGmail:
    """The fake service. All public methods are thread-safe."""

    def __init__(self, host="127.0.0.1", port=0, history_step=3, access_token_lifetime=3599,
                 jwks_max_age=21600, pull_max_wait=5.0, quota_per_minute=QUOTA_PER_MINUTE,
                 signing_key=None):
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.history_step = history_step
        self.access_token_lifetime = access_token_lifetime
        self.jwks_max_age = jwks_max_age
        self.pull_max_wait = pull_max_wait
        self.quota_per_minute = quota_per_minute
        self.rotate_refresh_tokens = False
        self.raw_padding = True
        # Gmail's push guide sample decodes to a string historyId; many
        # integrations see a number (P§2.1): both can be produced.
        self.numeric_history_id = False
        # Per-user quota answer (P§2 "Quota" names userRateLimitExceeded for
        # the per-user limit; 429 rateLimitExceeded is what clients report).
        self.quota_status = 429
        self.quota_reason = "rateLimitExceeded"
        self.delays = {}             # endpoint -> seconds to sleep before answering
        self.push_attempts = 1       # deliveries of one message to a push endpoint
        self.push_retry_delay = 1.0
        self.paused = set()          # endpoints whose calls wait for resume()
        self.inflight = collections.Counter()      # (endpoint, user) -> now
        self.max_inflight = collections.Counter()  # (endpoint, user) -> highest seen
        self.clock_offset = 0.0
        self.clients = {}            # client_id -> secret
        self.refresh_tokens = {}     # token -> {"client", "email", "scopes"}
        self.service_accounts = {}   # email -> {"key": RsaKey, "scopes": set}
        self.access_tokens = {}      # token -> {"email", "scopes", "expires"}
        self.users = {}              # email -> Mailbox
        self.topics = {}             # name -> {"gmail_can_publish": bool, "bindings"}
        self.subscriptions = {}      # name -> Subscription
        self.signing_keys = [signing_key or RsaKey()]   # [0] signs pushes; all published
        self.push_service_account = "push@fake-project.iam.gserviceaccount.com"
        self.failures = []           # injected: dict(endpoint, user, status, ...)
        self.quota_log = collections.defaultdict(collections.deque)  # email -> (t, units)
        self.counts = collections.Counter()   # (endpoint, user) -> n
        self.log = []                # dicts: t (arrival, time.time()), endpoint, user, status
        self.push_log = []           # dicts: url, status, message_id, forge
        self._forger = None
        self._server = None
        self._thread = None
        self._next_msg = 0x18c0000000000000 + secrets.randbelow(1 << 40)
        self._next_pubsub = 2070443601311540

    # ---- lifecycle
    def start(self):
        fake = self

        class Handler(_Handler):
            owner = fake
        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-gmail")
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.cond:
            self.cond.notify_all()

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    @property
    def token_url(self):
        return self.url + "/token"

    @property
    def certs_url(self):
        return self.url + "/oauth2/v3/certs"

    # ---- clock (tests may move it forward: token expiry, watch, ack deadlines)
    def now(self):
        return time.time() + self.clock_offset

    def advance(self, seconds):
        with self.cond:
            self.clock_offset += seconds
            self.cond.notify_all()

    # ---- credentials
    def add_client(self, client_id, client_secret):
        with self.lock:
            self.clients[client_id] = client_secret

    def add_refresh_token(self, client_id, email_addr, scopes=(SCOPE_READONLY,), token=None):
        token = token or "1//" + secrets.token_urlsafe(48)
        with self.lock:
            self.refresh_tokens[token] = {"client": client_id, "email": email_addr,
                                          "scopes": set(scopes)}
        return token

    def revoke_refresh_token(self, token):
        with self.lock:
            self.refresh_tokens.pop(token, None)

    def add_service_account(self, sa_email, scopes=(SCOPE_READONLY,), key=None):
        """Register a domain-wide-delegation service account; returns the
        key file dict Google hands out (type service_account)."""
        key = key or RsaKey()
        with self.lock:
            self.service_accounts[sa_email] = {"key": key, "scopes": set(scopes)}
        return {"type": "service_account", "project_id": "fake-project",
                "private_key_id": key.kid, "private_key": key.private_pem(),
                "client_email": sa_email, "client_id": str(100000000000000000000 +
                                                           secrets.randbelow(10 ** 20)),
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": self.token_url}

    def issue_access_token(self, email_addr, scopes=(SCOPE_READONLY,), lifetime=None,
                           client=None):
        token = "ya29." + secrets.token_urlsafe(60)
        with self.lock:
            self.access_tokens[token] = {
                "email": email_addr, "scopes": set(scopes), "client": client or "",
                "expires": self.now() + (lifetime or self.access_token_lifetime)}
        return token

    def expire_access_tokens(self):
        with self.lock:
            for info in self.access_tokens.values():
                info["expires"] = 0

    # ---- mailbox control
    def add_user(self, email_addr, history_id=None):
        with self.lock:
            if email_addr not in self.users:
                self.users[email_addr] = Mailbox(
                    email_addr, history_id or 1000 + secrets.randbelow(100000),
                    self.history_step)
            return self.users[email_addr]

    def add_label(self, email_addr, name):
        with self.lock:
            box = self.users[email_addr]
            lid = "Label_%d" % box.next_label
            box.next_label += 1
            box.labels[lid] = {"id": lid, "name": name, "type": "user",
                               "messageListVisibility": "show",
                               "labelListVisibility": "labelShow"}
            return lid

    def add_message(self, email_addr, raw, labels=("INBOX", "UNREAD"), thread_id=None,
                    internal_date_ms=None):
        """Add a message (bytes of RFC 822) as if delivered; records a
        messageAdded history entry and publishes to a matching watch."""
        with self.cond:
            box = self.users[email_addr]
            self._check_labels(box, labels)
            mid = "%016x" % self._next_msg
            self._next_msg += 1 + secrets.randbelow(4096)
            hid = box.next_history_id()
            msg = Message(mid, thread_id or mid, bytes(raw), labels,
                          internal_date_ms or int(self.now() * 1000), hid)
            box.messages[mid] = msg
            self._record(box, "messageAdded", msg, msg.labels)
            return mid

    def modify_labels(self, email_addr, mid, add=(), remove=()):
        with self.cond:
            box = self.users[email_addr]
            msg = box.messages[mid]
            self._check_labels(box, add)
            added = [lab for lab in add if lab not in msg.labels]
            removed = [lab for lab in remove if lab in msg.labels]
            if added:
                msg.labels.extend(added)
                msg.history_id = box.next_history_id()
                self._record(box, "labelAdded", msg, added)
            if removed:
                msg.labels = [lab for lab in msg.labels if lab not in removed]
                msg.history_id = box.next_history_id()
                self._record(box, "labelRemoved", msg, removed)

    def delete_message(self, email_addr, mid):
        with self.cond:
            box = self.users[email_addr]
            msg = box.messages.pop(mid)
            box.next_history_id()
            self._record(box, "messageDeleted", msg, msg.labels)

    def delete_label(self, email_addr, label_id, history=False):
        """users.labels.delete: the user label goes and is removed from
        every message that had it (Google: "removes it from any messages and
        threads that it is applied to"). Google documents no history record
        for that, so by default there is none (the mailbox's historyId
        moves); history=True records one labelRemoved per message instead,
        for a driver that must cope with either."""
        with self.cond:
            box = self.users[email_addr]
            if box.labels.get(label_id, {}).get("type") != "user":
                raise KeyError("no user label %r" % label_id)
            del box.labels[label_id]
            box.next_history_id()
            for msg in box.messages.values():
                if label_id in msg.labels:
                    msg.labels = [lab for lab in msg.labels if lab != label_id]
                    if history:
                        msg.history_id = box.next_history_id()
                        self._record(box, "labelRemoved", msg, [label_id])

    def hold_history(self, email_addr, hold=True):
        """While held, changes move the mailbox historyId (profile, watch,
        notifications) but history.list does not return them yet."""
        with self.cond:
            box = self.users[email_addr]
            if hold and not box.hold:
                box.hold_at = box.history_id
            box.hold = hold
            if not hold:
                box.history.extend(box.held)
                box.held = []

    def expire_history(self, email_addr, before=None):
        """Forget history records with id < before (default: all); a later
        history.list with an older startHistoryId answers 404."""
        with self.lock:
            box = self.users[email_addr]
            cut = box.history_id if before is None else before
            box.history = [rec for rec in box.history if int(rec["id"]) >= cut]
            box.min_history_id = cut

    def history_id(self, email_addr):
        with self.lock:
            return self.users[email_addr].history_id

    def watch_state(self, email_addr):
        with self.lock:
            watch = self.users[email_addr].watch
            return dict(watch) if watch else None

    def _check_labels(self, box, labels):
        for lab in labels:
            if lab not in box.labels:
                raise KeyError("unknown label %r (add_label first)" % lab)

    def _record(self, box, kind, msg, label_ids):
        ref = msg.ref()
        entry = {"message": msg.ref(with_labels=True)}
        rec = {"id": str(box.history_id), "messages": [ref]}
        if kind == "messageAdded":
            rec["messagesAdded"] = [entry]
        elif kind == "messageDeleted":
            rec["messagesDeleted"] = [entry]
        elif kind == "labelAdded":
            entry["labelIds"] = list(label_ids)
            rec["labelsAdded"] = [entry]
        else:
            entry["labelIds"] = list(label_ids)
            rec["labelsRemoved"] = [entry]
        rec["_labels"] = set(msg.labels) | set(label_ids)  # for the labelId filter
        (box.held if box.hold else box.history).append(rec)
        watch = box.watch
        if watch and watch["expiration"] > self.now() * 1000:
            touched = rec["_labels"]
            watched = set(watch["labels"])
            if not watched:
                match = True
            elif watch["behavior"] == "exclude":
                match = not touched <= watched
            else:
                match = bool(touched & watched)
            info = self.topics.get(watch["topic"])
            if match and info and info["gmail_can_publish"]:
                hid = box.history_id
                self.publish(watch["topic"], {
                    "emailAddress": box.email,
                    "historyId": hid if self.numeric_history_id else str(hid)})

    # ---- Pub/Sub control
    def create_topic(self, name, gmail_can_publish=True, bindings=None):
        """A topic; by default its IAM policy grants Gmail's push account
        roles/pubsub.publisher (gmail_can_publish=False: no binding), or
        exactly `bindings` ([{"role", "members"}]) when given."""
        if bindings is None:
            bindings = [{"role": PUBLISHER_ROLE, "members": ["serviceAccount:" + GMAIL_PUSH_SA]}
                        ] if gmail_can_publish else []
        with self.lock:
            self.topics[name] = {}
            self.set_topic_iam(name, bindings)

    def set_topic_iam(self, name, bindings):
        """Replace the topic's IAM bindings (setIamPolicy); Gmail may publish
        when a binding gives its push account a role with publish."""
        with self.lock:
            topic = self.topics[name]
            topic["bindings"] = [{"role": b["role"], "members": list(b["members"])}
                                 for b in bindings]
            topic["gmail_can_publish"] = any(
                b["role"] in PUBLISH_ROLES and "serviceAccount:" + GMAIL_PUSH_SA in b["members"]
                for b in bindings)

    def topic_iam(self, name):
        with self.lock:
            return json.loads(json.dumps(self.topics[name]["bindings"]))

    def create_subscription(self, name, topic, ack_deadline=10, push_endpoint=None,
                            audience=None, service_account=None, dead_letter=False,
                            oidc=True):
        """A pull subscription, or a push one when push_endpoint is set
        (audience defaults to the endpoint URL, as in PushConfig.OidcToken;
        service_account to the fake's push signer; oidc=False: pushes carry
        no Authorization). With dead_letter, pulled messages carry
        deliveryAttempt (Pub/Sub sets it only when the subscription has a
        dead-letter policy)."""
        with self.lock:
            if topic not in self.topics:
                self.create_topic(topic)
            self.subscriptions[name] = Subscription(
                name, topic, ack_deadline, push_endpoint, audience,
                (service_account or self.push_service_account) if oidc else None,
                dead_letter)

    def set_push_config(self, name, push_endpoint=None, audience=None, service_account=None,
                        oidc=True):
        """modifyPushConfig: push to `push_endpoint` with the OIDC service
        account (default: the fake's signer) and audience (default: the
        endpoint), or without a token (oidc=False); no endpoint: pull."""
        with self.lock:
            sub = self.subscriptions[name]
            sub.push_endpoint = push_endpoint
            sub.oidc_audience = audience if push_endpoint else None
            sub.service_account = (service_account or self.push_service_account) \
                if push_endpoint and oidc else None

    def publish(self, topic, payload, attributes=None):
        """Publish a message (payload dict is JSON-encoded then base64) to
        every subscription of `topic`; returns the messageId."""
        with self.cond:
            self._next_pubsub += 1 + secrets.randbelow(1000)
            msg = {"data": base64.b64encode(json.dumps(payload).encode()).decode(),
                   "messageId": str(self._next_pubsub), "publishTime": _rfc3339(self.now()),
                   "attributes": dict(attributes or {})}
            pushes = []
            for sub in self.subscriptions.values():
                if sub.topic != topic:
                    continue
                if sub.push_endpoint:
                    pushes.append(sub)
                else:
                    sub.backlog.append([msg, 0])
            self.cond.notify_all()
        for sub in pushes:
            threading.Thread(target=self._auto_push, args=(sub, msg), daemon=True).start()
        return msg["messageId"]

    def _auto_push(self, sub, msg):
        """Deliver like a push subscription: a non-ack answer (anything but
        102/200/201/202/204, P§2.3) or a connection failure is retried up to
        push_attempts times, push_retry_delay s apart (real Pub/Sub backs
        off from 10 s; the default here is one attempt, no redelivery)."""
        for attempt in range(max(1, self.push_attempts)):
            if attempt:
                time.sleep(self.push_retry_delay)
            try:
                status, _, _ = self.push(sub.push_endpoint, message=msg,
                                         subscription=sub.name, audience=sub.audience,
                                         service_account=sub.service_account,
                                         forge=None if sub.service_account else "no_auth")
            except OSError as exc:
                with self.lock:
                    self.push_log.append({"url": sub.push_endpoint, "status": None,
                                          "forge": None, "message_id": msg["messageId"],
                                          "t": time.time(), "error": str(exc)})
                continue
            if status in (102, 200, 201, 202, 204):
                return

    def pending(self, subscription):
        """(backlog, outstanding) counts of a pull subscription."""
        with self.lock:
            sub = self.subscriptions[subscription]
            return len(sub.backlog), len(sub.outstanding)

    # ---- JWKS and push
    def rotate_signing_key(self, keep_old=True):
        """A new key signs pushes from now on; the old stays published
        unless keep_old is False. Returns the new kid."""
        with self.lock:
            key = RsaKey()
            self.signing_keys = [key] + (self.signing_keys if keep_old else [])
            return key.kid

    def jwks(self):
        with self.lock:
            return {"keys": [k.jwk() for k in self.signing_keys]}

    def make_push_token(self, audience, service_account=None, forge=None):
        """The OIDC JWT Pub/Sub puts in Authorization (P§2.2), or a forged
        one: forge is one of alg_none, hs256, no_kid, unknown_kid,
        bad_signature, wrong_aud, wrong_iss, wrong_email, unverified_email,
        expired, future_iat."""
        key = self.signing_keys[0]
        now = int(time.time())  # checked by the driver against its real clock
        sa = service_account or self.push_service_account
        claims = {"aud": audience, "azp": "1" + "0" * 20, "email": sa,
                  "email_verified": True, "exp": now + 3600, "iat": now,
                  "iss": "https://accounts.google.com", "sub": "1" + "2" * 20}
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        if forge == "wrong_aud":
            claims["aud"] = audience + "/other"
        elif forge == "wrong_iss":
            claims["iss"] = "https://evil.example.com"
        elif forge == "wrong_email":
            claims["email"] = "attacker@evil-project.iam.gserviceaccount.com"
        elif forge == "unverified_email":
            claims["email_verified"] = False
        elif forge == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif forge == "future_iat":
            claims["iat"], claims["exp"] = now + 3600, now + 7200
        elif forge == "no_kid":
            del header["kid"]
        elif forge == "unknown_kid":
            header["kid"] = secrets.token_hex(20)
        elif forge == "alg_none":
            header = {"alg": "none", "kid": key.kid, "typ": "JWT"}
            return jwt_encode(header, claims, signature=b"")
        elif forge == "hs256":
            # The classic confusion attack: HMAC keyed with the public JWK.
            header["alg"] = "HS256"
            return jwt_encode(header, claims, hs_secret=json.dumps(key.jwk()).encode())
        elif forge == "bad_signature":
            # Signed by a key nobody published, under the real kid.
            if self._forger is None:
                self._forger = RsaKey()
            return jwt_encode(header, claims, key=RsaKey(key.kid, self._forger.private))
        elif forge not in (None, "no_auth"):
            raise ValueError("unknown forge %r" % forge)
        return jwt_encode(header, claims, key=key)

    def push(self, url, email_addr=None, history_id=None, message=None,
             subscription="projects/fake-project/subscriptions/gmail-push", audience=None,
             service_account=None, forge=None, message_id=None, numeric_history_id=False,
             snake_case=True, camel_case=True, body=None, timeout=10.0):
        """POST one Pub/Sub push to `url` as Pub/Sub does (P§2.1). Pass
        `message` (a published message) or email_addr + history_id. The
        same message_id twice is a duplicate delivery. Returns (status,
        body bytes, messageId)."""
        if message is None:
            with self.lock:
                if history_id is None:
                    history_id = self.users[email_addr].history_id
                if message_id is None:
                    self._next_pubsub += 1 + secrets.randbelow(1000)
                    message_id = str(self._next_pubsub)
            hid = history_id if numeric_history_id else str(history_id)
            message = {"data": base64.b64encode(json.dumps(
                {"emailAddress": email_addr, "historyId": hid}).encode()).decode(),
                       "messageId": message_id, "publishTime": _rfc3339(self.now()),
                       "attributes": {}}
        msg = {"data": message["data"], "attributes": message.get("attributes", {})}
        if camel_case:
            msg["messageId"] = message["messageId"]
            msg["publishTime"] = message["publishTime"]
        if snake_case:
            msg["message_id"] = message["messageId"]
            msg["publish_time"] = message["publishTime"]
        if body is None:
            body = json.dumps({"message": msg, "subscription": subscription}).encode()
        headers = {"Content-Type": "application/json",
                   "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/"
                                 "APIs-Google.html)"}
        if forge != "no_auth":
            headers["Authorization"] = "Bearer " + self.make_push_token(
                audience or url, service_account, forge)
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, answer = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read()
        with self.lock:
            self.push_log.append({"url": url, "status": status, "forge": forge,
                                  "message_id": message["messageId"], "t": time.time()})
        return status, answer, message["messageId"]

    # ---- error injection, counters, quota
    def fail_next(self, endpoint, status, count=1, retry_after=None, reason=None,
                  message=None, user=None, oauth_error=None):
        """The next `count` calls (None: all until clear_failures) of
        `endpoint` (see ENDPOINTS; "*" for any) by `user` (None: any) answer
        `status`. On "token", oauth_error names the OAuth error code."""
        if endpoint not in ENDPOINTS and endpoint != "*":
            raise ValueError("unknown endpoint %r (one of %s)" % (endpoint, ENDPOINTS))
        with self.lock:
            self.failures.append({"endpoint": endpoint, "status": status, "count": count,
                                  "retry_after": retry_after, "reason": reason,
                                  "message": message, "user": user,
                                  "oauth_error": oauth_error})

    def clear_failures(self):
        with self.lock:
            self.failures = []

    def calls(self, endpoint=None, user=None):
        with self.lock:
            return sum(n for (ep, u), n in self.counts.items()
                       if (endpoint is None or ep == endpoint) and (user is None or u == user))

    def call_log(self, endpoint=None, user=None):
        with self.lock:
            return [dict(e) for e in self.log
                    if (endpoint is None or e["endpoint"] == endpoint) and
                    (user is None or e["user"] == user)]

    def set_delay(self, endpoint, seconds):
        """Answer the Gmail `endpoint` only after `seconds` (0 removes): makes
        concurrent calls observable and models a slow Google."""
        with self.lock:
            self.delays[endpoint] = seconds

    def pause(self, endpoint):
        """Calls of the Gmail `endpoint` wait (in flight) until resume()."""
        with self.cond:
            self.paused.add(endpoint)

    def resume(self, endpoint):
        with self.cond:
            self.paused.discard(endpoint)
            self.cond.notify_all()

    def in_flight(self, endpoint, user=None):
        """Calls of `endpoint` (by `user`) being served right now."""
        with self.lock:
            return sum(n for (ep, u), n in self.inflight.items()
                       if ep == endpoint and (user is None or u == user))

    def max_concurrent(self, endpoint, user=None):
        """The most calls of `endpoint` (by `user`) ever served at once."""
        with self.lock:
            return max([n for (ep, u), n in self.max_inflight.items()
                        if ep == endpoint and (user is None or u == user)] or [0])

    def reset_counts(self):
        with self.lock:
            self.counts.clear()
            self.log = []

    def _count(self, endpoint, user, status, arrived, fmt=None):
        with self.lock:
            self.counts[(endpoint, user)] += 1
            entry = {"t": arrived, "endpoint": endpoint, "user": user, "status": status}
            if fmt is not None:
                entry["format"] = fmt   # messages.get: minimal | metadata | raw | full
            self.log.append(entry)

    def _injected(self, endpoint, user):
        with self.lock:
            for fail in self.failures:
                if fail["endpoint"] not in (endpoint, "*"):
                    continue
                if fail["user"] is not None and fail["user"] != user:
                    continue
                if fail["count"] is not None:
                    fail["count"] -= 1
                    if fail["count"] <= 0:
                        self.failures.remove(fail)
                headers = {}
                if fail["retry_after"] is not None:
                    headers["Retry-After"] = str(fail["retry_after"])
                if endpoint == "token":
                    err = fail["oauth_error"] or {400: "invalid_grant", 401: "invalid_client",
                                                  429: "rate_limit_exceeded"}.get(
                                                      fail["status"], "internal_failure")
                    return OAuthError(fail["status"], err, fail["message"] or
                                      "Injected failure.", headers)
                return ApiError(fail["status"], fail["message"], fail["reason"], headers)
        return None

    def _charge(self, email_addr, method):
        units = QUOTA_UNITS.get(method, 0)
        if not units:
            return
        with self.lock:
            now = self.now()
            log = self.quota_log[email_addr]
            while log and log[0][0] <= now - 60:
                log.popleft()
            used = sum(u for _, u in log)
            if used + units > self.quota_per_minute:
                wait = max(1, int(log[0][0] + 60 - now) + 1)
                raise ApiError(self.quota_status, "User-rate limit exceeded.  Retry after %s"
                               % _rfc3339(now + wait), self.quota_reason,
                               {"Retry-After": str(wait)})
            log.append((now, units))

    # ---- request dispatch (used by the HTTP handler and by batch parts)
    def handle(self, method, target, headers, body):
        """Serve one request; returns (status, headers dict, body bytes)."""
        parsed = urllib.parse.urlsplit(target)
        path = parsed.path
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        endpoint, user = _classify(method, path), None
        arrived = time.time()   # the log keeps arrival times (Retry-After checks)
        try:
            if endpoint is None:
                raise ApiError(404, "Not Found", "notFound")
            if endpoint == "token":
                user = self._token_user(body)
            elif endpoint in ("certs", "tokeninfo"):
                user = None
            else:
                user = self._authenticate(headers, endpoint)
            injected = self._injected(endpoint, user)
            if injected:
                raise injected
            if endpoint == "token":
                result = self._token(headers, body)
            elif endpoint == "tokeninfo":
                result = self._tokeninfo(query, headers, body)
            elif endpoint == "certs":
                self._count(endpoint, user, 200, arrived)
                return 200, {"Content-Type": "application/json; charset=UTF-8",
                             "Cache-Control": "public, max-age=%d, must-revalidate, "
                                              "no-transform" % self.jwks_max_age}, \
                    json.dumps(self.jwks()).encode()
            elif endpoint == "batch":
                answer = self._batch(headers, body)
                self._count(endpoint, user, answer[0], arrived)
                return answer
            elif endpoint in ("pubsub.pull", "pubsub.acknowledge"):
                result = self._pubsub(endpoint, path, body)
            elif endpoint.startswith("pubsub."):
                result = self._pubsub_admin(endpoint, path, query)
            else:
                result = self._serve_gmail(endpoint, user, method, path, query, headers, body)
        except ApiError as err:
            self._count(endpoint or "unknown", user, err.code, arrived)
            hdrs = {"Content-Type": "application/json; charset=UTF-8"}
            hdrs.update(err.headers)
            if err.code == 401 and not isinstance(err, OAuthError):
                hdrs["WWW-Authenticate"] = ('Bearer realm="https://accounts.google.com/", '
                                            'error="invalid_token"')
            return err.code, hdrs, json.dumps(err.json(), indent=2).encode()
        self._count(endpoint, user, 204 if result is None else 200, arrived,
                    query.get("format", ["full"])[0] if endpoint == "messages.get" else None)
        if result is None:
            return 204, {}, b""
        return 200, {"Content-Type": "application/json; charset=UTF-8"}, \
            json.dumps(result, indent=2).encode()

    def _serve_gmail(self, endpoint, user, method, path, query, headers, body):
        """A Gmail call, tracked for concurrency and optionally delayed."""
        key = (endpoint, user)
        with self.cond:
            self.inflight[key] += 1
            self.max_inflight[key] = max(self.max_inflight[key], self.inflight[key])
            delay = self.delays.get(endpoint, 0)
            while endpoint in self.paused and self._server is not None:
                self.cond.wait(0.5)
        try:
            if delay:
                time.sleep(delay)
            return self._gmail(endpoint, user, method, path, query, headers, body)
        finally:
            with self.lock:
                self.inflight[key] -= 1

    def _authenticate(self, headers, endpoint):
        auth = _header(headers, "Authorization")
        if not auth.startswith("Bearer "):
            raise ApiError(401, reason="required" if not auth else "authError")
        with self.lock:
            info = self.access_tokens.get(auth[7:].strip())
            if info is None or info["expires"] <= self.now():
                raise ApiError(401, reason="authError")
            if endpoint == "batch":
                return info["email"]
            if endpoint.startswith("pubsub."):
                if not info["scopes"] & PUBSUB_SCOPES:
                    raise _insufficient()
                return info["email"]
            if not info["scopes"] & (READ_SCOPES | INSERT_SCOPES):
                raise _insufficient()
            return info["email"]

    def _token_user(self, body):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        with self.lock:
            info = self.refresh_tokens.get(form.get("refresh_token", [""])[0])
            if info:
                return info["email"]
        if form.get("assertion"):
            try:
                claims = json.loads(b64url_decode(form["assertion"][0].split(".")[1]))
                return claims.get("sub") or claims.get("iss")
            except (ValueError, IndexError, UnicodeDecodeError):
                return None
        return None

    # ---- OAuth
    def _token(self, headers, body):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(
            body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            return self._refresh_grant(headers, form)
        if grant == JWT_BEARER:
            return self._jwt_grant(form)
        if not grant:
            raise OAuthError(400, "invalid_request", "Missing required parameter: grant_type")
        raise OAuthError(400, "unsupported_grant_type", "Invalid grant_type: %s" % grant)

    def _refresh_grant(self, headers, form):
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = _header(headers, "Authorization")
        if auth.startswith("Basic "):
            try:
                client_id, secret = base64.b64decode(auth[6:]).decode().split(":", 1)
                client_id = urllib.parse.unquote_plus(client_id)
                secret = urllib.parse.unquote_plus(secret)
            except (ValueError, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", "Unauthorized") from None
        with self.lock:
            known = self.clients.get(client_id or "")
            if known is None:
                raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
            if not hmac.compare_digest(known.encode(), (secret or "").encode()):
                raise OAuthError(401, "invalid_client", "Unauthorized")
            token = form.get("refresh_token", "")
            info = self.refresh_tokens.get(token)
            if info is None or info["client"] != client_id:
                raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
            if form.get("scope"):
                asked = set(form["scope"].split())
                if not asked <= info["scopes"]:
                    raise OAuthError(400, "invalid_scope",
                                     "Some requested scopes were invalid.")
            answer = self._grant(info["email"], info["scopes"], client_id)
            if self.rotate_refresh_tokens:
                new = "1//" + secrets.token_urlsafe(48)
                self.refresh_tokens[new] = self.refresh_tokens.pop(token)
                answer["refresh_token"] = new
            return answer

    def _jwt_grant(self, form):
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError(400, "invalid_request", "Missing required parameter: assertion")
        try:
            unverified = json.loads(b64url_decode(assertion.split(".")[1]))
        except (ValueError, IndexError, UnicodeDecodeError):
            raise OAuthError(400, "invalid_grant", "Invalid JWT: malformed") from None
        with self.lock:
            sa = self.service_accounts.get(unverified.get("iss"))
            if sa is None:
                raise OAuthError(400, "invalid_grant", "Invalid grant: account not found")
            try:
                header, claims = jwt_verify_rs256(assertion, sa["key"])
            except ValueError:
                raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.") from None
            if header.get("kid") not in (None, sa["key"].kid):
                raise OAuthError(400, "invalid_grant", "Invalid JWT Signature.")
            if claims.get("aud") not in (self.token_url, GOOGLE_TOKEN_URL):
                raise OAuthError(400, "invalid_grant",
                                 "Invalid JWT: Failed audience check. The right audience is "
                                 + GOOGLE_TOKEN_URL)
            now = time.time()  # signed by the driver with its real clock
            iat, exp = claims.get("iat"), claims.get("exp")
            if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600 \
                    or exp <= now or iat > now + 300:
                raise OAuthError(400, "invalid_grant",
                                 "Invalid JWT: Token must be a short-lived token (60 minutes)"
                                 " and in a reasonable timeframe. Check your iat and exp "
                                 "values in the JWT claim.")
            scopes = set((claims.get("scope") or "").split())
            if not scopes:
                raise OAuthError(400, "invalid_scope",
                                 "Invalid OAuth scope or ID token audience provided.")
            if not scopes <= sa["scopes"]:
                raise OAuthError(401, "unauthorized_client",
                                 "Client is unauthorized to retrieve access tokens using this "
                                 "method, or client not authorized for any of the scopes "
                                 "requested.")
            sub = claims.get("sub")
            if sub is None:
                user = claims["iss"]
            elif sub not in self.users:
                raise OAuthError(400, "invalid_grant", "Invalid email or User ID")
            else:
                user = sub
            return self._grant(user, scopes, unverified.get("iss"))

    def _grant(self, email_addr, scopes, client):
        token = self.issue_access_token(email_addr, scopes, client=client)
        return {"access_token": token, "expires_in": self.access_token_lifetime,
                "scope": " ".join(sorted(scopes)), "token_type": "Bearer"}

    def _tokeninfo(self, query, headers, body):
        token = query.get("access_token", [""])[0]
        if not token and body:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            token = form.get("access_token", [""])[0]
        with self.lock:
            info = self.access_tokens.get(token)
            now = self.now()
            if info is None or info["expires"] <= now:
                raise OAuthError(400, "invalid_token", "Invalid Value")
            sub = str(100000000000000000000 + int(hashlib.sha256(
                info["email"].encode()).hexdigest()[:15], 16))
            out = {"azp": info["client"], "aud": info["client"], "sub": sub,
                   "scope": " ".join(sorted(info["scopes"])),
                   "exp": str(int(info["expires"])),
                   "expires_in": str(max(0, int(info["expires"] - now))),
                   "access_type": "offline"}
            if info["scopes"] & EMAIL_SCOPES:
                out["email"] = info["email"]
                out["email_verified"] = "true"
            return out

    # ---- Gmail
    def _gmail(self, endpoint, user, method, path, query, headers, body):
        parts = path.split("/")
        upload = parts[1] == "upload"
        base = 3 if not upload else 4        # index of "users"
        uid = urllib.parse.unquote(parts[base + 1])
        if uid not in ("me", user):
            raise ApiError(403, "Delegation denied for %s" % user, "forbidden")
        with self.cond:
            box = self.users.get(user)
            if box is None:
                # What Gmail answers a service account used without `sub`.
                raise ApiError(400, "Precondition check failed.", "failedPrecondition")
            scopes = self._token_scopes(headers)
            self._charge(user, endpoint)
            if endpoint == "profile":
                return {"emailAddress": box.email, "messagesTotal": len(box.messages),
                        "threadsTotal": len({m.thread_id for m in box.messages.values()}),
                        "historyId": str(box.history_id)}
            if endpoint == "labels.list":
                return {"labels": [dict(v) for v in box.labels.values()]}
            if endpoint == "messages.list":
                return self._messages_list(box, query, scopes)
            if endpoint == "messages.get":
                return self._messages_get(box, parts[base + 3], query, scopes)
            if endpoint == "messages.insert":
                return self._messages_insert(box, upload, query, headers, body, scopes)
            if endpoint == "history.list":
                return self._history_list(box, query)
            if endpoint == "watch":
                return self._watch(box, body)
            if endpoint == "stop":
                box.watch = None
                return None
        raise ApiError(404)

    def _token_scopes(self, headers):
        info = self.access_tokens.get(_header(headers, "Authorization")[7:].strip())
        return info["scopes"] if info else set()

    def _messages_list(self, box, query, scopes):
        labels = query.get("labelIds", [])
        q = query.get("q", [""])[0]
        if q and scopes <= {SCOPE_METADATA}:
            raise ApiError(403, "Metadata scope does not support 'q' parameter",
                           "forbidden")
        include_st = query.get("includeSpamTrash", ["false"])[0] == "true"
        max_results = _int_param(query, "maxResults", 100, 1, 500)
        msgs = sorted(box.messages.values(), key=lambda m: (m.internal_date, m.id),
                      reverse=True)
        out = []
        for m in msgs:
            if not all(lab in m.labels for lab in labels):
                continue
            if not include_st and not set(labels) & {"SPAM", "TRASH"} \
                    and not re.search(r"\b(in|label):(spam|trash)\b", q, re.I) \
                    and set(m.labels) & {"SPAM", "TRASH"}:
                continue
            if q and not _query_match(box, m, q):
                continue
            out.append(m)
        # The token is a cursor (the last key served), so messages that
        # arrive while a client pages do not shift the pages.
        cursor = _page_cursor(query)
        rest = [m for m in out if cursor is None or [m.internal_date, m.id] < cursor]
        page = rest[:max_results]
        answer = {}
        if page:
            answer["messages"] = [m.ref() for m in page]
        if len(rest) > max_results:
            answer["nextPageToken"] = _page_token([page[-1].internal_date, page[-1].id])
        answer["resultSizeEstimate"] = len(out)
        return answer

    def _messages_get(self, box, mid, query, scopes):
        fmt = query.get("format", ["full"])[0]
        if fmt not in ("minimal", "metadata", "raw", "full"):
            raise ApiError(400, "Invalid value at 'format' (%s)" % fmt, "invalidArgument")
        if fmt in ("raw", "full") and scopes <= {SCOPE_METADATA}:
            raise ApiError(403, "Metadata scope doesn't allow format %s" % fmt.upper(),
                           "forbidden")
        msg = box.messages.get(mid)
        if msg is None:
            raise ApiError(404, "Requested entity was not found.", "notFound")
        return message_resource(msg, fmt, query.get("metadataHeaders", []), self.raw_padding)

    def _messages_insert(self, box, upload, query, headers, body, scopes):
        if not scopes & INSERT_SCOPES:
            raise _insufficient()
        if upload:
            if query.get("uploadType", [""])[0] != "media":
                raise ApiError(400, "Only uploadType=media is supported by the fake",
                               "invalidArgument")
            raw, labels = body, ["INBOX", "UNREAD"]
            # The Message resource's labelIds are not part of a media upload.
        else:
            try:
                doc = json.loads(body or b"{}")
                raw = b64url_decode(doc["raw"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "'raw' RFC822 payload message string or uploading "
                               "message via /upload/* URL required", "invalidArgument") \
                    from None
            labels = doc.get("labelIds") or []
        for lab in labels:
            if lab not in box.labels:
                raise ApiError(400, "Invalid label: %s" % lab, "invalidArgument")
        mid = self.add_message(box.email, raw, labels,
                               thread_id=None)
        msg = box.messages[mid]
        return {"id": msg.id, "threadId": msg.thread_id, "labelIds": list(msg.labels)}

    def _history_list(self, box, query):
        start_s = query.get("startHistoryId", [""])[0]
        if not start_s.isdigit():
            raise ApiError(400, "Missing/invalid parameter: startHistoryId",
                           "invalidArgument")
        start = int(start_s)
        if start < box.min_history_id:
            raise ApiError(404, "Requested entity was not found.", "notFound")
        types = query.get("historyTypes", [])
        for t in types:
            if t not in HISTORY_TYPES:
                raise ApiError(400, "Invalid value at 'history_types' (%s)" % t,
                               "invalidArgument")
        label = query.get("labelId", [None])[0]
        max_results = _int_param(query, "maxResults", 100, 1, 500)
        recs = []
        for rec in box.history:
            if int(rec["id"]) <= start:
                continue
            if label and label not in rec["_labels"]:
                continue
            kept = {k: v for k, v in rec.items() if k in ("id", "messages")}
            for t, field in zip(HISTORY_TYPES, ("messagesAdded", "messagesDeleted",
                                                "labelsAdded", "labelsRemoved")):
                if field in rec and (not types or t in types):
                    kept[field] = json.loads(json.dumps(rec[field]))
            if len(kept) > 2:
                recs.append(kept)
        cursor = _page_cursor(query)
        rest = [r for r in recs if cursor is None or int(r["id"]) > cursor[0]]
        page = rest[:max_results]
        answer = {}
        if page:
            answer["history"] = page
        if len(rest) > max_results:
            answer["nextPageToken"] = _page_token([int(page[-1]["id"])])
        # While history is held the visible id lags behind the mailbox's.
        answer["historyId"] = str(box.hold_at if box.hold else box.history_id)
        return answer

    def _watch(self, box, body):
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "Invalid JSON payload received.", "invalidArgument") from None
        topic = doc.get("topicName") or ""
        if not re.fullmatch(r"projects/[^/]+/topics/[^/]+", topic):
            raise ApiError(400, "Invalid topicName does not match projects/SOME_PROJECT/"
                           "topics/SOME_TOPIC", "invalidArgument")
        info = self.topics.get(topic)
        if info is None:
            raise ApiError(404, "Resource not found (resource=%s)." % topic.split("/")[-1],
                           "notFound")
        if not info["gmail_can_publish"]:
            raise ApiError(403, "Error sending test message to Cloud PubSub %s : User not "
                           "authorized to perform this action." % topic, "forbidden")
        behavior = (doc.get("labelFilterBehavior") or doc.get("labelFilterAction")
                    or "include").lower()
        if behavior not in ("include", "exclude"):
            raise ApiError(400, "Invalid labelFilterBehavior", "invalidArgument")
        labels = doc.get("labelIds") or []
        for lab in labels:
            if lab not in box.labels:
                raise ApiError(400, "Invalid label: %s" % lab, "invalidArgument")
        expiration = int(self.now() * 1000) + 7 * 86400 * 1000
        box.watch = {"topic": topic, "labels": list(labels), "behavior": behavior,
                     "expiration": expiration}
        return {"historyId": str(box.history_id), "expiration": str(expiration)}

    # ---- batch
    def _batch(self, headers, body):
        ctype = _header(headers, "Content-Type")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/mixed") or not m:
            err = ApiError(400, "Invalid multipart request with 0 mime parts.", "badRequest")
            return 400, {"Content-Type": "application/json; charset=UTF-8"}, \
                json.dumps(err.json()).encode()
        parts = _split_multipart(body, m.group(1).encode())
        if len(parts) > 100:
            err = ApiError(400, "A batch request cannot contain more than 100 requests.",
                           "badRequest").json()
            return 400, {"Content-Type": "application/json; charset=UTF-8"}, \
                json.dumps(err).encode()
        outer_auth = _header(headers, "Authorization")
        boundary = "batch_" + secrets.token_urlsafe(18)
        out = []
        for part in parts:
            part_headers, inner = _split_head(part)
            content_id = _header(part_headers, "Content-ID").strip()
            req_line, inner_headers, inner_body = _parse_http(inner)
            if not _header(inner_headers, "Authorization") and outer_auth:
                inner_headers["Authorization"] = outer_auth
            try:
                method, target = req_line.split()[:2]
                status, rh, rb = self.handle(method, target, inner_headers, inner_body)
            except ValueError:
                status, rh, rb = 400, {"Content-Type": "application/json; charset=UTF-8"}, \
                    json.dumps(ApiError(400, "Bad request line").json()).encode()
            cid = content_id[1:-1] if content_id.startswith("<") else content_id
            lines = ["--" + boundary, "Content-Type: application/http"]
            if content_id:
                lines.append("Content-ID: <response-%s>" % cid)
            lines += ["", "HTTP/1.1 %d %s" % (status, _reason_phrase(status))]
            lines += ["%s: %s" % kv for kv in rh.items()]
            lines += ["Content-Length: %d" % len(rb), "", ""]
            out.append("\r\n".join(lines).encode() + rb + b"\r\n")
        payload = b"".join(out) + ("--%s--\r\n" % boundary).encode()
        return 200, {"Content-Type": "multipart/mixed; boundary=" + boundary}, payload

    # ---- Pub/Sub pull and acknowledge
    def _pubsub(self, endpoint, path, body):
        name = urllib.parse.unquote(path[len("/v1/"):].rsplit(":", 1)[0])
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "Invalid JSON payload received.", "badRequest") from None
        with self.cond:
            sub = self.subscriptions.get(name)
            if sub is None:
                raise ApiError(404, "Resource not found (resource=%s)." % name.split("/")[-1],
                               "notFound")
            if endpoint == "pubsub.acknowledge":
                ids = doc.get("ackIds")
                if not isinstance(ids, list) or not ids:
                    raise ApiError(400, "No ack ids specified.", "badRequest")
                for ack in ids:
                    if not isinstance(ack, str) or not ack.startswith("ack-"):
                        raise ApiError(400, "You have passed an invalid ack ID to the service "
                                       "(ack_id=%s)." % ack, "badRequest")
                for ack in ids:
                    sub.outstanding.pop(ack, None)  # expired ids are ignored, as Pub/Sub does
                return {}
            max_msgs = doc.get("maxMessages")
            if isinstance(max_msgs, str) and max_msgs.isdigit():
                max_msgs = int(max_msgs)   # proto3 JSON accepts int32 as a string too
            if not isinstance(max_msgs, int) or max_msgs <= 0:
                raise ApiError(400, "maxMessages must be positive.", "badRequest")
            deadline = time.monotonic() + (0 if doc.get("returnImmediately")
                                           else self.pull_max_wait)
            while True:
                self._redeliver(sub)
                if sub.backlog or time.monotonic() >= deadline or self._server is None:
                    break
                self.cond.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            received = []
            while sub.backlog and len(received) < max_msgs:
                msg, attempts = sub.backlog.popleft()
                ack = "ack-" + secrets.token_urlsafe(24)
                sub.outstanding[ack] = (msg, attempts + 1, self.now() + sub.ack_deadline)
                # proto3 JSON: an empty map is left out.
                shown = {k: v for k, v in msg.items() if k != "attributes" or v}
                item = {"ackId": ack, "message": shown}
                if sub.dead_letter:
                    item["deliveryAttempt"] = attempts + 1
                received.append(item)
            return {"receivedMessages": received} if received else {}

    def _pubsub_admin(self, endpoint, path, query):
        """topics.get, topics.getIamPolicy, topics.subscriptions.list and
        subscriptions.get."""
        name = urllib.parse.unquote(path[len("/v1/"):])
        if endpoint == "pubsub.topics.getIamPolicy":
            name = name.rsplit(":", 1)[0]
        elif endpoint == "pubsub.topics.subscriptions.list":
            name = name[:-len("/subscriptions")]
        with self.lock:
            if endpoint == "pubsub.subscriptions.get":
                sub = self.subscriptions.get(name)
                if sub is None:
                    raise ApiError(404, "Resource not found (resource=%s)."
                                   % name.split("/")[-1], "notFound")
                return sub.resource()
            topic = self.topics.get(name)
            if topic is None:
                raise ApiError(404, "Resource not found (resource=%s)." % name.split("/")[-1],
                               "notFound")
            if endpoint == "pubsub.topics.get":
                return {"name": name}
            if endpoint == "pubsub.topics.getIamPolicy":
                if not topic["bindings"]:
                    return {"etag": "ACAB"}
                etag = base64.b64encode(hashlib.sha256(json.dumps(
                    topic["bindings"], sort_keys=True).encode()).digest()[:8]).decode()
                return {"version": 1, "etag": etag,
                        "bindings": json.loads(json.dumps(topic["bindings"]))}
            names = sorted(s.name for s in self.subscriptions.values() if s.topic == name)
            size = _int_param(query, "pageSize", 100, 1, 1000)
            start = 0
            token = query.get("pageToken", [""])[0]
            if token:
                cursor = _page_cursor(query)
                start = cursor[0]
            page = names[start:start + size]
            answer = {}
            if page:
                answer["subscriptions"] = page
            if start + size < len(names):
                answer["nextPageToken"] = _page_token([start + size])
            return answer

    def _redeliver(self, sub):
        now = self.now()
        for ack, (msg, attempts, deadline) in list(sub.outstanding.items()):
            if deadline <= now:
                del sub.outstanding[ack]
                sub.backlog.append([msg, attempts])


# --------------------------------------------------------------------------
# Small pure helpers.

def _insufficient():
    return ApiError(403, "Request had insufficient authentication scopes.",
                    "insufficientPermissions")


def _header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _int_param(query, name, default, low, high):
    value = query.get(name, [str(default)])[0]
    if not value.isdigit():
        raise ApiError(400, "Invalid value at '%s' (TYPE_UINT32), \"%s\"" % (name, value),
                       "invalidArgument")
    return max(low, min(high, int(value)))


def _page_token(key):
    return b64url(json.dumps(key).encode())


def _page_cursor(query):
    token = query.get("pageToken", [""])[0]
    if not token:
        return None
    try:
        key = json.loads(b64url_decode(token))
    except (ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or not key or not isinstance(key[0], int):
        raise ApiError(400, "Invalid pageToken", "invalidArgument")
    return key


def _query_match(box, msg, q):
    for term in q.split():
        neg = term.startswith("-")
        term = term.lstrip("-")
        key, _, val = term.partition(":")
        key, val = key.lower(), val.strip('"')
        if key in ("in", "label"):
            wanted = {lid for lid, lab in box.labels.items()
                      if lab["name"].lower() == val.lower() or lid.lower() == val.lower()}
            ok = bool(wanted & set(msg.labels))
        elif key == "is":
            ok = {"unread": "UNREAD", "starred": "STARRED",
                  "important": "IMPORTANT"}.get(val.lower(), "") in msg.labels
        elif key in ("from", "to", "subject"):
            ok = val.lower() in msg.header(key).lower()
        elif key == "rfc822msgid":
            ok = msg.header("Message-ID").strip("<>") == val.strip("<>")
        elif key in ("after", "before"):
            if val.isdigit():
                ts = int(val)
            else:
                try:
                    ts = int(time.mktime(time.strptime(val, "%Y/%m/%d")))
                except ValueError:
                    raise ApiError(400, "Invalid query: %s" % term, "invalidArgument") \
                        from None
            sec = msg.internal_date // 1000
            ok = sec > ts if key == "after" else sec < ts
        else:
            raise ApiError(400, "The fake does not implement the query term %r" % term,
                           "invalidArgument")
        if ok == neg:
            return False
    return True


def message_resource(msg, fmt, metadata_headers=(), raw_padding=True):
    """The Gmail Message resource of `msg` in format minimal, metadata, raw
    or full (P§2 "messages.get formats")."""
    out = {"id": msg.id, "threadId": msg.thread_id, "labelIds": list(msg.labels),
           "snippet": msg.snippet(), "sizeEstimate": len(msg.raw),
           "historyId": str(msg.history_id), "internalDate": str(msg.internal_date)}
    if fmt == "raw":
        raw = base64.urlsafe_b64encode(msg.raw).decode("ascii")
        out["raw"] = raw if raw_padding else raw.rstrip("=")
    elif fmt == "metadata":
        wanted = {h.lower() for h in metadata_headers}
        hdrs = [{"name": k, "value": v} for k, v in msg.headers()
                if not wanted or k.lower() in wanted]
        # Only what every capture shows; a driver must not need more.
        out["payload"] = {"mimeType": msg.parsed.get_content_type(), "headers": hdrs}
    elif fmt == "full":
        out["payload"] = _mime_part(msg.parsed, "")
    return out


def _mime_part(part, part_id):
    out = {"partId": part_id, "mimeType": part.get_content_type(),
           "filename": part.get_filename() or "",
           "headers": [{"name": k, "value": str(v)} for k, v in part.items()]}
    if part.is_multipart():
        out["body"] = {"size": 0}
        out["parts"] = [_mime_part(sub, ("%s.%d" % (part_id, i)) if part_id else str(i))
                        for i, sub in enumerate(part.get_payload())]
    else:
        data = part.get_payload(decode=True) or b""
        out["body"] = {"size": len(data)}
        if data:
            out["body"]["data"] = base64.urlsafe_b64encode(data).decode("ascii")
    return out


def _classify(method, path):
    """Endpoint name of a request, or None."""
    if method == "POST" and path == "/token":
        return "token"
    if method == "GET" and path == "/oauth2/v3/certs":
        return "certs"
    if method == "POST" and path == "/batch/gmail/v1":
        return "batch"
    if path == "/tokeninfo" and method in ("GET", "POST"):
        return "tokeninfo"
    m = re.fullmatch(r"/v1/projects/[^/]+/subscriptions/[^/:]+:(pull|acknowledge)", path)
    if m and method == "POST":
        return "pubsub." + m.group(1)
    if method == "GET":
        for pattern, name in ((r"/v1/projects/[^/]+/topics/[^/:]+", "pubsub.topics.get"),
                              (r"/v1/projects/[^/]+/topics/[^/:]+:getIamPolicy",
                               "pubsub.topics.getIamPolicy"),
                              (r"/v1/projects/[^/]+/topics/[^/:]+/subscriptions",
                               "pubsub.topics.subscriptions.list"),
                              (r"/v1/projects/[^/]+/subscriptions/[^/:]+",
                               "pubsub.subscriptions.get")):
            if re.fullmatch(pattern, path):
                return name
    m = re.fullmatch(r"(/upload)?/gmail/v1/users/[^/]+(/.*)?", path)
    if not m:
        return None
    rest = m.group(2) or ""
    if m.group(1):
        return "messages.insert" if method == "POST" and rest == "/messages" else None
    table = [("GET", r"/profile", "profile"), ("GET", r"/labels", "labels.list"),
             ("GET", r"/messages", "messages.list"), ("POST", r"/messages", "messages.insert"),
             ("GET", r"/messages/[^/]+", "messages.get"), ("GET", r"/history", "history.list"),
             ("POST", r"/watch", "watch"), ("POST", r"/stop", "stop")]
    for verb, pattern, name in table:
        if method == verb and re.fullmatch(pattern, rest):
            return name
    return None


ENDPOINTS = ("token", "tokeninfo", "certs", "batch", "profile", "labels.list",
             "messages.list", "messages.get", "messages.insert", "history.list", "watch",
             "stop", "pubsub.pull", "pubsub.acknowledge", "pubsub.topics.get",
             "pubsub.topics.getIamPolicy", "pubsub.topics.subscriptions.list",
             "pubsub.subscriptions.get")


def _split_multipart(body, boundary):
    delim = b"--" + boundary
    chunks = body.split(delim)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.strip(b"\r\n") if chunk.strip() else b"")
    return [p for p in parts if p]


def _split_head(blob):
    """Split a MIME header block from its body; returns (headers, body)."""
    sep = re.search(rb"\r?\n\r?\n", blob)
    head, rest = (blob[:sep.start()], blob[sep.end():]) if sep else (blob, b"")
    headers = {}
    for line in head.decode("latin-1").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip()] = v.strip()
    return headers, rest


def _parse_http(blob):
    """Parse an application/http request part: (request line, headers, body)."""
    blob = blob.lstrip(b"\r\n")
    first, _, rest = blob.partition(b"\n")
    if not rest.strip(b"\r\n"):
        return first.decode("latin-1").strip(), {}, b""
    if rest.startswith(b"\r\n") or rest.startswith(b"\n"):
        return first.decode("latin-1").strip(), {}, rest.split(b"\n", 1)[1]
    headers, body = _split_head(rest)
    return first.decode("latin-1").strip(), headers, body


def _reason_phrase(status):
    return http.server.BaseHTTPRequestHandler.responses.get(status, ("Unknown",))[0]


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(http.server.BaseHTTPRequestHandler):
    owner = None
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two send()s: with Nagle on, the body waits
    # for the client's delayed ACK (up to 40 ms on Linux) on every answer,
    # a stall of the fake, not of Gmail nor of the driver.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # quiet; the owner keeps a call log
        pass

    def _serve(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        try:
            status, headers, payload = self.owner.handle(self.command, self.path,
                                                         dict(self.headers.items()), body)
        except Exception as exc:  # a bug in the fake: say so, as a 500
            traceback.print_exc()
            status, headers = 500, {"Content-Type": "application/json; charset=UTF-8"}
            payload = json.dumps(ApiError(500, "fake_gmail bug: %r" % exc).json()).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_chunked(self):
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


# --------------------------------------------------------------------------
# Demo process.

DEMO_MESSAGE = (b"From: Alice <alice@example.org>\r\nTo: demo@example.com\r\n"
                b"Subject: %s\r\nMessage-ID: <%s@example.org>\r\n"
                b"Date: Mon, 07 Dec 2026 01:00:00 +0000\r\n\r\nHello from the fake Gmail.\r\n")


def write_secret(path, text):
    """Write a credential file the way the driver expects them: mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def main(argv=None):
    """Run a demo instance: one user with a few messages, a user OAuth client
    and a domain-wide-delegation service account whose credential files are
    written to --dir, a Gmail topic, optionally a push subscription to
    --push-url and a pull subscription; with --every N a new INBOX message
    arrives every N seconds. Prints one JSON line with the config values."""
    ap = argparse.ArgumentParser(description="Local stand-in for Gmail API + Pub/Sub "
                                 "(not Google; for tests and demos)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True, help="where credential files are written")
    ap.add_argument("--email", default="demo@example.com")
    ap.add_argument("--push-url", help="Pub/Sub push endpoint (e.g. .../push/gmail)")
    ap.add_argument("--push-audience", help="OIDC audience (default: the push URL)")
    ap.add_argument("--pull", action="store_true", help="create a pull subscription")
    ap.add_argument("--every", type=float, default=0, help="deliver a message every N s")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    client_id, secret = "demo-client.apps.googleusercontent.com", "demo-secret"
    scopes = (SCOPE_READONLY, SCOPE_INSERT, SCOPE_PUBSUB)
    fake = FakeGmail(port=args.port).start()
    fake.add_client(client_id, secret)
    fake.add_user(args.email)
    token = fake.add_refresh_token(client_id, args.email, scopes)
    sa_key = fake.add_service_account("sync@fake-project.iam.gserviceaccount.com", scopes)
    topic = "projects/fake-project/topics/gmail"
    fake.create_topic(topic)
    info = {"note": "LOCAL FAKE, not Google", "api_url": fake.url,
            "token_url": fake.token_url, "pubsub_url": fake.url,
            "certs_url": fake.certs_url, "email": args.email, "client_id": client_id,
            "topic": topic, "push_service_account": fake.push_service_account}
    if args.push_url:
        info["push_subscription"] = "projects/fake-project/subscriptions/gmail-push"
        info["push_audience"] = args.push_audience or args.push_url
        fake.create_subscription(info["push_subscription"], topic,
                                 push_endpoint=args.push_url, audience=info["push_audience"])
    if args.pull:
        info["subscription"] = "projects/fake-project/subscriptions/gmail-pull"
        fake.create_subscription(info["subscription"], topic)
    for i in range(3):
        fake.add_message(args.email, DEMO_MESSAGE % (b"demo %d" % i, b"demo%d" % i))
    os.makedirs(args.dir, exist_ok=True)
    info["refresh_token_file"] = write_secret(os.path.join(args.dir, "refresh_token"),
                                              token + "\n")
    info["client_secret_file"] = write_secret(os.path.join(args.dir, "client_secret"),
                                              secret + "\n")
    info["service_account_file"] = write_secret(
        os.path.join(args.dir, "service_account.json"), json.dumps(sa_key, indent=2))
    print(json.dumps(info), flush=True)
    n = 3
    try:
        while True:
            time.sleep(args.every or 3600)
            if args.every:
                fake.add_message(args.email, DEMO_MESSAGE % (b"demo %d" % n, b"demo%d" % n))
                n += 1
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

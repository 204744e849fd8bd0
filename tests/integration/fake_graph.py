"""A local stand-in for Microsoft Graph (Outlook mail) + the Microsoft
identity platform token endpoint, for tests.

The graph.so driver must not know it talks to a fake, so every answer uses
the wire format of the real service. Sources are the sections of
../shared/reference/providers.md (cited "P§n") and the Microsoft Learn pages
named there (delta-query-messages, message-delta, json-batching,
change-notifications-delivery-webhooks, change-notifications-lifecycle-events,
outlook-immutable-id, throttling-limits); where a detail comes only from
captures in public issues it is marked (capture), and where no source was
found the fake's choice is marked (UNCONFIRMED).

Everything is on one 127.0.0.1 port: set the driver's `login_url` to
`fake.login_url` and `api_url` to `fake.api_url` (= fake.url + "/v1.0").
Links the fake hands out (@odata.nextLink, @odata.deltaLink) are absolute
URLs on that port.

Endpoints (endpoint names, used by fail_next/set_delay/calls, in brackets):

- [token] `POST /{tenant}/oauth2/v2.0/token` (P§3 "OAuth refresh"), form
  encoded; {tenant} is the tenant id, one of its domains, or `common` /
  `organizations` (delegated only). Client authentication by client_secret in
  the form or HTTP Basic.
  * `grant_type=client_credentials`, `scope=https://graph.microsoft.com/.default`
    (anything else: 400 invalid_scope AADSTS1002012) -> token_type, expires_in,
    ext_expires_in, access_token; the token carries the client's application
    permissions (roles).
  * `grant_type=refresh_token` (+ optional `scope`): a new access token AND a
    new refresh_token on every call (rotation); the old refresh token stays
    valid like AAD's unless `strict_rotation` is set, then it answers
    invalid_grant.
  * errors in the AAD shape `{"error","error_description":"AADSTSnnn: ...
    \\r\\nTrace ID: ..\\r\\nCorrelation ID: ..\\r\\nTimestamp: ..","error_codes":[n],
    "timestamp","trace_id","correlation_id","error_uri"}` (capture:
    learn.microsoft.com Q&A 1291600, previous-versions dn645548):
    invalid_client 401 (AADSTS7000215 bad secret), unauthorized_client 400
    (AADSTS700016 unknown app), invalid_grant 400 (AADSTS70008 expired,
    AADSTS50173 revoked, AADSTS65001 scope not consented), invalid_scope 400,
    unsupported_grant_type 400 (AADSTS70003), invalid_request 400 (AADSTS90002
    unknown tenant, AADSTS900144 missing parameter).
- Graph API under `/v1.0`, for `/users/{id|userPrincipalName}/...` and
  `/me/...` (delegated tokens only; with an app token `/me` is 400 "/me
  request is only valid with delegated authentication flow."). Path segment
  names are case-insensitive, `mailFolders('{id}')` and `mailFolders/{id}`
  are the same, ids are case-sensitive and may be percent-encoded.
  * [users.get] `GET /users/{u}`: id, userPrincipalName, mail, displayName.
  * [mailFolders.list] `GET /users/{u}/mailFolders` (top level = children of
    msgfolderroot, sorted by displayName), [mailFolders.childFolders]
    `GET .../mailFolders/{id}/childFolders`: `$top` (default 10, max 1000),
    `$skip`, `$select`, `includeHiddenFolders=true`; `@odata.nextLink` with
    `$skip` while more remain. mailFolder v1.0 fields: id, displayName,
    parentFolderId, childFolderCount, unreadItemCount, totalItemCount,
    isHidden. There is NO `wellKnownName` in v1.0 (it is beta only): a client
    learns a role by reading `/mailFolders/{wellKnownName}` and comparing ids.
  * [mailFolders.get] `GET .../mailFolders/{id|wellKnownName}` for inbox,
    sentitems, drafts, deleteditems, junkemail, archive, outbox,
    conversationhistory, msgfolderroot (P§3; mailFolder resource page).
  * [messages.list] `GET .../mailFolders/{id}/messages` and
    `GET /users/{u}/messages` (whole mailbox): `$top` (default 10, max
    1000), `$skip`, `$select`, `$orderby=receivedDateTime desc|asc` (the
    default order is receivedDateTime desc), `$filter` on receivedDateTime
    with lt|le|gt|ge|eq joined by `and` (other filters are refused with 400),
    `@odata.nextLink` carrying `$skip`.
  * [messages.delta] `GET .../mailFolders/{id}/messages/delta` (P§3 "Message
    delta"): per folder only (`/messages/delta` is 400); `$select`, `$top`,
    `$orderby=receivedDateTime desc`, `$filter=receivedDateTime ge|gt {v}`
    (then at most 5,000 messages), `changeType=created|updated|deleted`,
    `Prefer: odata.maxpagesize=N` (answered with Preference-Applied; default
    page 10). Pages follow `@odata.nextLink` (`$skiptoken`) until an
    `@odata.deltaLink` (`$deltatoken`); both are absolute URLs of the form
    `.../users/{u}/mailFolders('{id}')/messages/delta?$deltatoken=..`, the
    token opaque and carrying the original query options. Items carry
    `@odata.type` and `@odata.etag`; removals are
    `{"@odata.type","id","@removed":{"reason":"deleted"}}` (a message moved
    out of the folder is removed there and created in the other folder).
    An expired token (`expire_delta`) answers 410 Gone with the Graph error
    code given (SyncStateNotFound, resyncRequired, InvalidSyncStateData,
    SyncStateInvalid; P§3 and capture microsoft-graph-docs#2350); an unknown
    token is 410 SyncStateNotFound. A round started with
    `Prefer: IdType="ImmutableId"` continued without it (or the reverse) is
    400 SyncStateInvalid (capture: alcionai/corso#3176; status
    UNCONFIRMED).
  * [messages.get] `GET .../messages/{id}` (also folder-scoped): the message
    resource; `$select`. [messages.value] `GET .../messages/{id}/$value`:
    the raw RFC 822 bytes (`Content-Type: text/plain`, capture:
    msgraph-sdk-php#187, msgraph-sdk-java#499); reading
    does not mark it read (P§3 "MIME").
  * [messages.create] `POST .../mailFolders/{id}/messages` and
    `POST /users/{u}/messages` (drafts): JSON message (subject, body,
    toRecipients, ccRecipients, from, ...) or base64 MIME with
    `Content-Type: text/plain`; 201 with the message, isDraft true.
  * [messages.move] `POST .../messages/{id}/move` `{"destinationId":..}`:
    201 with the moved message. [messages.update] `PATCH .../messages/{id}`
    (isRead, flag, categories). [messages.delete] `DELETE .../messages/{id}`
    -> 204.
  * Ids: message ids change on a move unless the request says
    `Prefer: IdType="ImmutableId"` (outlook-immutable-id): every message has
    a REST id (replaced on each move; the old one is then 404
    ErrorItemNotFound) and an immutable id (kept for its life); both are
    accepted in paths, the header picks which one answers carry, and
    answers with it say `Preference-Applied: IdType="ImmutableId"`.
  * Message fields derived from the MIME: subject (RFC 2047 decoded), from,
    sender, toRecipients, ccRecipients, bccRecipients, replyTo
    ({"emailAddress":{"name","address"}}), sentDateTime (Date:),
    internetMessageId, hasAttachments, importance, bodyPreview (255 chars),
    body (html unless `Prefer: outlook.body-content-type="text"`),
    internetMessageHeaders (only when $select-ed); state: receivedDateTime,
    createdDateTime, lastModifiedDateTime, changeKey / @odata.etag (new on
    every change), isRead, isDraft, flag.flagStatus, categories,
    parentFolderId, conversationId, conversationIndex, webLink,
    inferenceClassification. Date-times are `YYYY-MM-DDTHH:MM:SSZ`.
- [batch] `POST /v1.0/$batch` (json-batching): `{"requests":[{"id","method",
  "url","headers","body"}]}` -> 200 `{"responses":[{"id","status","headers",
  "body"}]}`; more than 20 requests, a missing or duplicate id, or a body
  without Content-Type is 400 for the whole batch (messages UNCONFIRMED);
  parts inherit the batch's Authorization; a non-JSON part body ($value) is
  answered as a base64 JSON string (capture: io-msgraph notes); up to
  `batch_parallelism` (4) parts run at once, as Graph hands at most 4 parts
  in parallel to Outlook (P§3), each counting as one call of its own
  endpoint and against its mailbox's concurrency limit while it runs (so
  a batch next to other requests for the mailbox gets 429 parts, capture:
  microsoft-graph-docs#2886); `dependsOn` is ignored; answers are in
  request order, or random with `batch_shuffle` (Graph promises none).
- Subscriptions (P§3 "Create subscription", "Validation handshake",
  "Renew", "Lifecycle notifications"):
  * [subscriptions.create] `POST /v1.0/subscriptions`: changeType
    (created,updated,deleted), notificationUrl, lifecycleNotificationUrl,
    resource (`/users/{u}/mailFolders('{id}')/messages`, `me/mailfolders/
    {id}/messages`, `/users/{u}/messages`, ...), expirationDateTime,
    clientState (at most 128 chars). Before answering, the fake POSTs
    `{url}?validationToken={token}` (text/plain, empty body, the token
    `Validation: Testing client application reachability for subscription
    Request-Id: {guid}` form-encoded with lowercase hex, capture) to the
    notificationUrl AND the lifecycleNotificationUrl, and requires 200,
    text/plain and a body equal to the decoded token within
    `validation_timeout` (10 s); otherwise 400 InvalidRequest "Subscription
    validation request failed. ..." / "Subscription validation request timed
    out." Expiry beyond `max_subscription_minutes` (10080; set 4230 for the
    old limit) is 400 ExtensionError "Subscription expiration can only be
    10080 minutes in the future." (capture microsoft-graph-docs#2988); under
    45 minutes it is raised to 45. Over `max_subscriptions_per_mailbox`
    (1000) is 403 ExtensionError (message UNCONFIRMED). Created with
    `Prefer: IdType="ImmutableId"`, its notifications carry immutable ids.
    201 with the subscription object.
  * [subscriptions.list] `GET /subscriptions`, [subscriptions.get]
    `GET /subscriptions/{id}`, [subscriptions.update] `PATCH
    /subscriptions/{id}` (expirationDateTime, notificationUrl - validated
    again; also reauthorizes; adding a lifecycleNotificationUrl is 400) ->
    200, [subscriptions.delete] `DELETE` -> 204,
    [subscriptions.reauthorize] `POST /subscriptions/{id}/reauthorize` ->
    204. An unknown or expired id is 404 ResourceNotFound "The object was
    not found." (capture: msgraph-sdk-php#221). An app sees only the
    subscriptions it created.
- Notification sender (P§3 "Notification payload", "Lifecycle
  notifications"): change notifications are POSTed to notificationUrl (with
  its query string) as `{"value":[{"id","subscriptionId",
  "subscriptionExpirationDateTime","clientState","changeType","resource":
  "Users/{userObjectId}/Messages/{id}","tenantId","resourceData":{
  "@odata.type":"#Microsoft.Graph.Message","@odata.id","@odata.etag","id"}}]}`;
  changes within `batch_window` seconds going to one URL share one POST,
  whatever their subscription. Every change of a message (add, update,
  move, delete, by helper or by API) notifies the live subscriptions whose
  resource covers it while `auto_notify` is on; a move is deleted in the
  source folder's subscriptions, created in the destination's, updated in
  mailbox-wide ones. Lifecycle notifications `{"value":[{"subscriptionId",
  "subscriptionExpirationDateTime","tenantId","clientState",
  "lifecycleEvent"}]}` go to lifecycleNotificationUrl. Every POST (and
  validation request) is logged with its answer status and latency
  (`push_log` dicts: t = send time (time.time()), url, kind = change |
  lifecycle | validation | raw, status (None: no answer), latency (s),
  count, subscriptions, events, messages (resourceData ids), error).
  Graph's retries (4 h) are `notification_retries` attempts
  `notification_retry_delay` s apart (default: none).
- Throttling (P§3 "Throttling"): at most `mailbox_concurrency` (4) requests
  per mailbox in flight, beyond that 429 `ApplicationThrottled` "Application
  is over its MailboxConcurrency limit." (capture: magodo/terraform-provider-
  outlook#21) with Retry-After `concurrency_retry_after`; `mailbox_budget`
  requests per 10 minutes per mailbox (10,000), beyond that 429
  ApplicationThrottled "Application is over its MailboxRate limit."
  (message UNCONFIRMED) with Retry-After. max_concurrent() counts every
  arrival, refused or not.
- Errors: `{"error":{"code","message","innerError":{"date","request-id",
  "client-request-id"}}}` with `request-id` / `client-request-id` headers;
  401 is `InvalidAuthenticationToken` ("Access token has expired or is not
  yet valid." / "Access token is empty.") with a WWW-Authenticate header
  (capture: besscroft/diyfile#1, microsofthackathons/tdi#24), 403
  ErrorAccessDenied (missing permission, or a delegated token on another
  mailbox), 404 ErrorItemNotFound / ErrorInvalidUser.

Control surface (thread-safe):
- directory: add_client(client_id, secret, roles=("Mail.Read",)),
  add_refresh_token(client_id, user, scopes), revoke_refresh_token,
  strict_rotation, issue_access_token, expire_access_tokens, tenant_id,
  tenant_domains;
- mailbox: add_user (default folders created), add_folder (child folders,
  hidden), folder_id(user, wellKnownName or displayName), add_message(user,
  raw MIME, folder="inbox", received=, is_read=, sparse=, sparse_reads=) ->
  immutable id, message_id(user, id, immutable=False) (its current REST
  id, or its immutable id), message(user, id) (a dict view), move_message
  (returns the new REST id), update_message
  (is_read, flag, categories), delete_message, complete_sparse, expire_delta
  (user, folder=None, code=);
- sparse summaries ("sparse metadata repair"): a message added with
  `sparse=("from","subject",...)` lacks those fields (omitted, or null with
  `sparse_style="null"`) in every rendering until it has been read
  `sparse_reads` times by messages.get, or until complete_sparse();
- subscriptions: subscriptions_of(user=None), subscription(id) (dict views),
  require_reauthorization(id, pause=True) (sends reauthorizationRequired;
  paused subscriptions drop changes until reauthorize/PATCH),
  remove_subscription(id) (sends subscriptionRemoved and deletes it),
  send_lifecycle(ids, event), notify_change(id, message id, changeType,
  copies=), send_notifications(url, items, copies=), post_raw(url, body,
  content_type) (forged/malformed bodies), change_item / lifecycle_item
  (build items, with overrides), auto_notify, batch_window,
  hold_notifications / release_notifications (what piles up meanwhile
  leaves in one POST per URL: deterministic batching for tests),
  duplicate_notifications (extra copies of every automatic POST),
  inject_validation_timeout(count), validation_token (fixed token for the
  next validations), check_validation(url, token) (one handshake, e.g. to
  test the daemon's echo of odd tokens), wait_notifications_idle();
- failures: fail_next(endpoint, status, count=1, retry_after=, code=,
  message=, user=, aad_error=), clear_failures, set_delay, pause/resume
  (any endpoint; a held call stays in flight);
- knobs (attributes): mailbox_concurrency (4), concurrency_retry_after,
  mailbox_budget (10000) / budget_window (600 s), max_subscription_minutes
  (10080), min_subscription_minutes (45), max_subscriptions_per_mailbox
  (1000), max_client_state (128), validation_timeout (10 s),
  batch_parallelism (4), batch_shuffle, sparse_style, strict_rotation,
  access_token_lifetime (constructor), notification_timeout;
- clock: now(), advance(seconds) moves access-token expiry, subscription
  expiry, receivedDateTime of new messages and the budget window;
- counters: calls(endpoint, user), call_log, in_flight, max_concurrent,
  throttled, reset_counts, push_log.

What it does not model: TLS (plain http; the driver's URL keys must accept
http for tests), OData beyond the subset above ($expand, $search, $count,
other $filter terms, $orderby on other fields), attachments as resources,
sending mail, calendar/contacts, mailFolder delta, folder create/rename/
delete through the API (tests use add_folder), search folders, archive
mailboxes, rich notifications (includeResourceData / encryption), Event Hubs
delivery, notificationQueryOptions, automatic reauthorizationRequired timing
(tests send it), the notification endpoint throttling (slow/drop) rules,
per-app global limits, upload size limits, national clouds, JWT access
tokens (they are opaque strings here), public clients (no secret),
certificate credentials, real AAD consent and conditional access,
`dependsOn` in batches, and Recoverable Items (the fake's DELETE removes a
message for good, which is what a client syncing the visible folders sees).

Library use:

    fake = FakeGraph(); fake.start()
    fake.add_client("cid", "secret", roles=("Mail.Read",))
    fake.add_user("alice@contoso.com")
    iid = fake.add_message("alice@contoso.com", raw_bytes, folder="inbox")
    ...
    fake.stop()

`python3 fake_graph.py --dir DIR [--user U] [--every N]` runs a demo
instance and prints one JSON line with the driver's config values and
credential files (see `main`). Standard library only.
"""

import argparse
import base64
import calendar
import collections
import email
import email.errors
import email.header
import email.policy
import email.utils
import hmac
import html
import http.server
import json
import os
import random
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
import uuid

GRAPH = "https://graph.microsoft.com"
DEFAULT_SCOPE = GRAPH + "/.default"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

# (wellKnownName, displayName) of the folders Exchange creates under
# msgfolderroot (mailFolder resource, "Well-known folder names").
DEFAULT_FOLDERS = (("inbox", "Inbox"), ("sentitems", "Sent Items"), ("drafts", "Drafts"),
                   ("deleteditems", "Deleted Items"), ("junkemail", "Junk Email"),
                   ("archive", "Archive"), ("outbox", "Outbox"),
                   ("conversationhistory", "Conversation History"))

# v1.0 message properties; the default set (no $select) leaves out the two
# that must be asked for.
MESSAGE_PROPS = ("id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories",
                 "receivedDateTime", "sentDateTime", "hasAttachments", "internetMessageId",
                 "subject", "bodyPreview", "importance", "parentFolderId", "conversationId",
                 "conversationIndex", "isDeliveryReceiptRequested", "isReadReceiptRequested",
                 "isRead", "isDraft", "webLink", "inferenceClassification", "body", "sender",
                 "from", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "flag",
                 "internetMessageHeaders", "uniqueBody")
DEFAULT_MESSAGE_PROPS = tuple(p for p in MESSAGE_PROPS
                              if p not in ("internetMessageHeaders", "uniqueBody"))
FOLDER_PROPS = ("id", "displayName", "parentFolderId", "childFolderCount", "unreadItemCount",
                "totalItemCount", "isHidden")

READ_PERMS = {"Mail.ReadBasic", "Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite"}
FULL_READ_PERMS = {"Mail.Read", "Mail.ReadWrite"}
WRITE_PERMS = {"Mail.ReadWrite"}

DEFAULT_CODES = {400: "BadRequest", 401: "InvalidAuthenticationToken",
                 403: "ErrorAccessDenied", 404: "ErrorItemNotFound", 405: "MethodNotAllowed",
                 409: "ErrorIrresolvableConflict",
                 410: "SyncStateNotFound", 429: "ApplicationThrottled",
                 500: "UnknownError", 502: "BadGateway", 503: "ServiceUnavailable",
                 504: "GatewayTimeout"}
DEFAULT_MESSAGES = {
    400: "Invalid request.", 401: "Access token has expired or is not yet valid.",
    403: "Access is denied. Check credentials and try again.",
    404: "The specified object was not found in the store.",
    405: "The HTTP method is not allowed for the resource.",
    409: "The change key passed in the request does not match the current change key for "
         "the item.",
    410: "The sync state generation is not found.",
    429: "Application is over its MailboxConcurrency limit.",
    500: "An internal server error occurred. The operation failed.",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
SYNC_STATE_MESSAGES = {
    "SyncStateNotFound": "The sync state generation is not found; generation=149;"
                         "[highest=157][157][155][156].",
    "resyncRequired": "Resync required. Replace any local items with the server's version "
                      "(including deletes) if you're sure that the service was up to date "
                      "with your local changes when you last sync'd. Upload any local "
                      "changes that the server doesn't know about.",
    "InvalidSyncStateData": "The sync state data is invalid or corrupted.",
    "SyncStateInvalid": "Sync state is invalid. Restart the synchronization.",
}

# AAD errors: error -> (HTTP status, AADSTS number, description).
AAD_ERRORS = {
    "invalid_client": (401, 7000215, "Invalid client secret provided. Ensure the secret being "
                       "sent in the request is the client secret value, not the client secret "
                       "ID, for a secret added to app '{client}'."),
    "unauthorized_client": (400, 700016, "Application with identifier '{client}' was not found "
                            "in the directory '{tenant}'. This can happen if the application "
                            "has not been installed by the administrator of the tenant or "
                            "consented to by any user in the tenant."),
    "invalid_grant": (400, 70008, "The provided authorization code or refresh token has "
                      "expired due to inactivity. Send a new interactive authorization request "
                      "for this user and resource."),
    "invalid_grant_revoked": (400, 50173, "The provided grant has expired due to it being "
                              "revoked, a fresh auth token is needed. The user might have "
                              "changed or reset their password."),
    "consent_required": (400, 65001, "The user or administrator has not consented to use the "
                         "application with ID '{client}'. Send an interactive authorization "
                         "request for this user and resource."),
    "invalid_scope": (400, 1002012, "The provided value for scope {scope} is not valid. Client "
                      "credential flows must have a scope value with /.default suffixed to "
                      "the resource identifier (application ID URI)."),
    "unsupported_grant_type": (400, 70003, "The app requested an unsupported grant type "
                               "'{grant}'."),
    "invalid_request": (400, 900144, "The request body must contain the following parameter: "
                        "'{param}'."),
    "tenant_not_found": (400, 90002, "Tenant '{tenant}' not found. Check to make sure you have "
                         "the correct tenant ID and are signing into the correct cloud."),
    "not_multi_tenant": (400, 50194, "Application '{client}' is not configured as a "
                         "multi-tenant application. Usage of the /common endpoint is not "
                         "supported for such applications created after '10/15/2018'. Use a "
                         "tenant-specific endpoint or configure the application to be "
                         "multi-tenant."),
    "temporarily_unavailable": (503, 90033, "A transient error has occurred. Please try "
                                "again."),
}

ENDPOINTS = ("token", "batch", "users.get", "mailFolders.list", "mailFolders.get",
             "mailFolders.childFolders", "messages.list", "messages.delta", "messages.get",
             "messages.value", "messages.create", "messages.move", "messages.update",
             "messages.delete", "subscriptions.create", "subscriptions.list",
             "subscriptions.get", "subscriptions.update", "subscriptions.delete",
             "subscriptions.reauthorize")
# Endpoints that act on one mailbox: they count against its concurrency
# limit and request budget.
MAILBOX_ENDPOINTS = {e for e in ENDPOINTS if e.startswith(("users.", "mailFolders.",
                                                           "messages."))}


# --------------------------------------------------------------------------
# Small helpers.

def _iso(ts):
    """Message date-times: second precision, Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _iso7(ts):
    """Subscription date-times: seven fraction digits, Z (as Graph echoes)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%07dZ" % int((ts % 1) * 1e7)


_ISO_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(\.\d+)?)?)?"
                     r"\s*(Z|[+-]\d\d:?\d\d)?$", re.I)


def parse_datetime(text):
    """An ISO 8601 date-time (as OData and Graph write them) -> epoch
    seconds; raises ValueError."""
    m = _ISO_RE.match((text or "").strip())
    if not m:
        raise ValueError("not a date-time: %r" % text)
    y, mo, d, h, mi, s, frac, zone = m.groups()
    ts = calendar.timegm((int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0)))
    ts += float(frac) if frac else 0.0
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        ts -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return ts


def _b64id(prefix, nbytes=96):
    """The body of an Exchange-looking id (base64url); callers end it with
    '=' or 'AAA=' as Exchange ids do, so clients must encode it in URLs."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode().rstrip("=")


def _guid():
    return str(uuid.uuid4())


def _dotnet_urlencode(text):
    """Form-encode like .NET's HttpUtility.UrlEncode: '+' for space and
    lowercase hex escapes (what Graph's validation URLs show)."""
    out = []
    for ch in text.encode("utf-8"):
        c = chr(ch)
        if c.isalnum() and ch < 128 or c in "-_.!*()":
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append("%%%02x" % ch)
    return "".join(out)


def _header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _prefer(headers):
    """Parsed Prefer header(s): {lowercased name: value}."""
    out = {}
    for item in re.split(r",", _header(headers, "Prefer")):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        out[key.strip().lower()] = value.strip().strip('"')
    return out


def _decode_words(text):
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
        return text


def _recipient(name, addr):
    name = _decode_words(name) if name else ""
    return {"emailAddress": {"name": name or addr, "address": addr}}


def _recipients(values):
    return [_recipient(n, a) for n, a in email.utils.getaddresses(values) if a]


def _strip_html(text):
    text = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


# --------------------------------------------------------------------------
# Errors.

class GraphError(Exception):
    """A Graph error answer with extra headers."""

    def __init__(self, status, code=None, message=None, headers=None):
        super().__init__("%d %s" % (status, code))
        self.status = status
        self.code = code or DEFAULT_CODES.get(status, "UnknownError")
        self.message = message if message is not None else DEFAULT_MESSAGES.get(status, "Error")
        self.headers = dict(headers or {})

    def body(self, request_id, now):
        return {"error": {"code": self.code, "message": self.message,
                          "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                               time.gmtime(now)),
                                         "request-id": request_id,
                                         "client-request-id": request_id}}}


class AadError(Exception):
    """An error of the token endpoint (AAD JSON shape)."""

    def __init__(self, kind, headers=None, status=None, **fmt):
        status_default, number, text = AAD_ERRORS[kind]
        super().__init__(kind)
        self.error = {"invalid_grant_revoked": "invalid_grant",
                      "consent_required": "invalid_grant",
                      "tenant_not_found": "invalid_request",
                      "not_multi_tenant": "invalid_request"}.get(kind, kind)
        self.status = status or status_default
        self.number = number
        self.text = text.format(**collections.defaultdict(str, fmt))
        self.headers = dict(headers or {})

    def body(self, now):
        trace, corr = _guid(), _guid()
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))
        return {"error": self.error,
                "error_description": "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\n"
                                     "Timestamp: %s" % (self.number, self.text, trace, corr,
                                                        stamp),
                "error_codes": [self.number], "timestamp": stamp, "trace_id": trace,
                "correlation_id": corr,
                "error_uri": "https://login.microsoftonline.com/error?code=%d" % self.number}


# --------------------------------------------------------------------------
# Mailbox model.

class Folder:
    def __init__(self, fid, name, parent_id, well_known=None, hidden=False):
        self.id = fid
        self.display_name = name
        self.parent_id = parent_id
        self.well_known = well_known
        self.hidden = hidden


class Message:
    def __init__(self, key, raw, folder_id, received, is_read, is_draft):
        self.key = key
        self.immutable_id = _b64id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", 60) + "AAA="
        self.rest_id = _b64id("AAMkAD", 96) + "AAA="
        self.raw = raw
        self.folder_id = folder_id
        self.received = received
        self.created = received
        self.modified = received
        self.change_key = _b64id("CQAAABYAAAA", 12) + "AAA"
        self.is_read = is_read
        self.is_draft = is_draft
        self.flag = "notFlagged"
        self.categories = []
        self.sparse = set()
        self.sparse_reads = None
        self._parsed = None
        self.conversation_id = _b64id("AAQkAD", 30) + "AAA="
        self.conversation_index = base64.b64encode(secrets.token_bytes(22)).decode()

    @property
    def parsed(self):
        """The MIME tree, parsed on first use (big test mailboxes stay
        cheap to fill)."""
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self.raw, policy=email.policy.compat32)
        return self._parsed

    def touch(self, now):
        self.modified = max(now, self.modified)
        self.change_key = _b64id("CQAAABYAAAA", 12) + "AAA"

    def etag(self):
        return 'W/"%s"' % self.change_key

    def header(self, name):
        value = self.parsed.get(name)
        return _decode_words(str(value)) if value is not None else ""

    def texts(self):
        """(plain text, html) of the first text/plain and text/html parts."""
        plain = htm = None
        for part in self.parsed.walk():
            if part.is_multipart() or part.get_filename():
                continue
            ctype = part.get_content_type()
            if ctype not in ("text/plain", "text/html"):
                continue
            try:
                data = part.get_payload(decode=True) or b""
                text = data.decode(part.get_content_charset() or "utf-8", "replace")
            except LookupError:
                text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
            if ctype == "text/plain" and plain is None:
                plain = text
            elif ctype == "text/html" and htm is None:
                htm = text
        return plain, htm

    def has_attachments(self):
        for part in self.parsed.walk():
            disp = (part.get("Content-Disposition") or "").lower()
            if part.get_filename() or disp.startswith("attachment"):
                return True
        return False

    def importance(self):
        value = (self.header("Importance") or self.header("X-Priority")).lower()
        if value.startswith(("high", "1", "2")):
            return "high"
        if value.startswith(("low", "4", "5")):
            return "low"
        return "normal"


class Mailbox:
    def __init__(self, upn, object_id, display_name):
        self.upn = upn
        self.object_id = object_id
        self.display_name = display_name
        self.folders = collections.OrderedDict()   # id -> Folder
        self.well_known = {}                       # name -> id
        self.messages = collections.OrderedDict()  # key -> Message
        self.ids = {}                              # current REST or immutable id -> key
        self.changes = []                          # (seq, folder, key, kind, rest, immutable)
        self.seq = 0
        self.budget_log = collections.deque()      # request times (budget window)

    def folder(self, ref):
        """A Folder by id or well-known name (case-insensitive), or None."""
        if ref in self.folders:
            return self.folders[ref]
        fid = self.well_known.get(ref.lower())
        return self.folders.get(fid) if fid else None

    def record(self, folder_id, msg, kind):
        self.seq += 1
        self.changes.append((self.seq, folder_id, msg.key, kind, msg.rest_id, msg.immutable_id))


class Subscription:
    def __init__(self, sid, box, folder_id, resource, change_types, url, lifecycle_url,
                 expires, client_state, immutable, client_id, creator):
        self.id = sid
        self.box = box
        self.folder_id = folder_id        # None: the whole mailbox
        self.resource = resource
        self.change_types = change_types
        self.url = url
        self.lifecycle_url = lifecycle_url
        self.expires = expires
        self.client_state = client_state
        self.immutable = immutable
        self.client_id = client_id
        self.creator = creator
        self.paused = False               # reauthorizationRequired not answered yet
        self.dropped = 0                  # changes lost while paused
        self.reauthorized = 0

    def json(self, tenant_id):
        return {"@odata.context": GRAPH + "/v1.0/$metadata#subscriptions/$entity",
                "id": self.id, "resource": self.resource, "applicationId": self.client_id,
                "changeType": ",".join(self.change_types), "clientState": self.client_state,
                "notificationUrl": self.url, "notificationQueryOptions": None,
                "lifecycleNotificationUrl": self.lifecycle_url,
                "expirationDateTime": _iso7(self.expires), "creatorId": self.creator,
                "includeResourceData": None, "latestSupportedTlsVersion": "v1_2",
                "encryptionCertificate": None, "encryptionCertificateId": None,
                "notificationUrlAppId": None}


class Request:
    """One API call as the dispatcher sees it."""

    def __init__(self, method, target, headers, body):
        self.method = method.upper()
        parsed = urllib.parse.urlsplit(target)
        self.path = parsed.path
        self.raw_query = parsed.query
        self.query = {}
        for key, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
            self.query[key.lower()] = value
        self.headers = headers
        self.body = body
        self.prefer = _prefer(headers)
        self.immutable = self.prefer.get("idtype", "").lower() == "immutableid"
        self.auth = None      # the token's info once authenticated
        self.box = None       # the mailbox of a mailbox endpoint
        self.user_ref = None  # the user segment as written ("me" or id/upn)
        self.applied = []     # Preference-Applied values

    def q(self, name, default=None):
        return self.query.get(name.lower(), default)


# --------------------------------------------------------------------------
# The fake.

class FakeGraph:
    """The fake service. All public methods are thread-safe."""

    def __init__(self, host="127.0.0.1", port=0, tenant_id=None, access_token_lifetime=3599,
                 tenant_domains=("contoso.onmicrosoft.com",)):
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.tenant_id = tenant_id or _guid()
        self.tenant_domains = [d.lower() for d in tenant_domains]
        self.access_token_lifetime = access_token_lifetime
        self.strict_rotation = False
        self.clients = {}            # client_id -> {"secret", "roles"}
        self.refresh_tokens = {}     # token -> {"client", "user", "scopes"}
        self.access_tokens = {}      # token -> {"client", "user", "perms", "expires", "app"}
        self.users = {}              # upn (lower) -> Mailbox
        self.users_by_id = {}        # object id -> Mailbox
        self.delta_states = {}       # token -> state dict
        self.subscriptions = collections.OrderedDict()   # id -> Subscription
        self._next_key = 1
        # Limits and knobs (P§3).
        self.mailbox_concurrency = 4
        self.concurrency_retry_after = 1
        self.mailbox_budget = 10000
        self.budget_window = 600.0
        self.max_subscription_minutes = 10080
        self.min_subscription_minutes = 45
        self.max_subscriptions_per_mailbox = 1000
        self.max_client_state = 128
        self.validation_timeout = 10.0
        self.validation_token = None          # fixed token for validations (tests)
        self._validation_timeouts = 0
        self.batch_shuffle = False
        self.batch_parallelism = 4
        self.sparse_style = "omit"
        self.auto_notify = True
        self.batch_window = 0.02
        self.max_notifications_per_post = 100
        self.duplicate_notifications = 0
        self.notification_retries = 0
        self.notification_retry_delay = 1.0
        self.notification_timeout = 15.0
        # Counters and injection.
        self.failures = []
        self.delays = {}
        self.paused = set()
        self.counts = collections.Counter()     # (endpoint, user) -> n
        self.log = []
        self.inflight = collections.Counter()   # mailbox upn -> now
        self.peak = collections.Counter()       # mailbox upn -> highest arrivals in flight
        self.ep_inflight = collections.Counter()  # (endpoint, upn) -> now
        self.ep_peak = collections.Counter()
        self.throttled_count = collections.Counter()   # upn -> 429s from the limits
        self.push_log = []
        self._outbox = collections.OrderedDict()  # url -> [items]
        self._flush_timer = None
        self._held = False
        self._sending = 0
        self.clock_offset = 0.0
        self._server = None
        self._thread = None

    # ---- lifecycle
    def start(self):
        fake = self

        class Handler(_Handler):
            owner = fake
        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-graph")
        self._thread.start()
        return self

    def stop(self):
        with self.cond:
            if self._flush_timer:
                self._flush_timer.cancel()
                self._flush_timer = None
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
    def api_url(self):
        return self.url + "/v1.0"

    @property
    def login_url(self):
        return self.url

    def token_url(self, tenant=None):
        return "%s/%s/oauth2/v2.0/token" % (self.url, tenant or self.tenant_id)

    # ---- clock
    def now(self):
        return time.time() + self.clock_offset

    def advance(self, seconds):
        with self.cond:
            self.clock_offset += seconds
            self.cond.notify_all()

    # ---- directory and credentials
    def add_client(self, client_id, secret, roles=("Mail.Read",)):
        """An app registration with a client secret and the application
        permissions (roles) an admin consented to."""
        with self.lock:
            self.clients[client_id] = {"secret": secret, "roles": set(roles)}

    def add_refresh_token(self, client_id, user, scopes=("Mail.Read", "offline_access"),
                          token=None):
        token = token or "0.A" + secrets.token_urlsafe(96)
        with self.lock:
            self.refresh_tokens[token] = {"client": client_id, "user": self._box(user).upn,
                                          "scopes": set(scopes)}
        return token

    def revoke_refresh_token(self, token):
        with self.lock:
            info = self.refresh_tokens.get(token)
            if info:
                info["revoked"] = True

    def issue_access_token(self, client_id, user=None, perms=None, lifetime=None):
        """An access token: app-only when user is None (perms default to the
        client's roles), else delegated for `user`."""
        with self.lock:
            if perms is None:
                perms = self.clients[client_id]["roles"] if user is None else {"Mail.Read"}
            return self._mint(client_id, self._box(user).upn if user else None, perms,
                              lifetime)

    def _mint(self, client_id, user, perms, lifetime=None):
        token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + secrets.token_urlsafe(90)
        self.access_tokens[token] = {"client": client_id, "user": user, "perms": set(perms),
                                     "expires": self.now() + (lifetime or
                                                              self.access_token_lifetime),
                                     "app": user is None}
        return token

    def expire_access_tokens(self):
        with self.lock:
            for info in self.access_tokens.values():
                info["expires"] = 0

    # ---- mailbox control
    def add_user(self, upn, display_name=None, object_id=None):
        """A mailbox with Exchange's default folders; returns its object id."""
        with self.lock:
            if upn.lower() in self.users:
                return self.users[upn.lower()].object_id
            box = Mailbox(upn, object_id or _guid(), display_name or upn.split("@")[0])
            root = Folder(_b64id("AQMkAD", 40) + "AAA=", "Top of Information Store",
                          _b64id("AQMkAD", 40) + "AAA=", "msgfolderroot")
            box.folders[root.id] = root
            box.well_known["msgfolderroot"] = root.id
            for wk, name in DEFAULT_FOLDERS:
                folder = Folder(_b64id("AQMkAD", 40) + "AAA=", name, root.id, wk)
                box.folders[folder.id] = folder
                box.well_known[wk] = folder.id
            self.users[upn.lower()] = box
            self.users_by_id[box.object_id] = box
            return box.object_id

    def add_folder(self, user, display_name, parent="msgfolderroot", hidden=False):
        """A user folder (a child folder when parent is another folder);
        returns its id."""
        with self.lock:
            box = self._box(user)
            par = box.folder(parent)
            if par is None:
                raise KeyError("unknown parent folder %r" % parent)
            folder = Folder(_b64id("AAMkAD", 40) + "AAA=", display_name, par.id, hidden=hidden)
            box.folders[folder.id] = folder
            return folder.id

    def folder_id(self, user, ref):
        """The id of a folder given by id, well-known name or display name."""
        with self.lock:
            box = self._box(user)
            folder = box.folder(ref)
            if folder is None:
                for f in box.folders.values():
                    if f.display_name == ref:
                        return f.id
                raise KeyError("unknown folder %r" % ref)
            return folder.id

    def add_message(self, user, raw, folder="inbox", received=None, is_read=False,
                    is_draft=False, sparse=(), sparse_reads=None):
        """Deliver `raw` (RFC 822 bytes) into `folder`; returns the message's
        immutable id (message_id() gives its current REST id). `sparse`
        names fields left out of its summaries until it has been read
        `sparse_reads` times with messages.get (None: until
        complete_sparse)."""
        with self.cond:
            box = self._box(user)
            fold = box.folder(folder)
            if fold is None:
                raise KeyError("unknown folder %r" % folder)
            msg = Message(self._next_key, bytes(raw), fold.id,
                          self.now() if received is None else received, is_read, is_draft)
            self._next_key += 1
            for name in sparse:
                if name not in MESSAGE_PROPS:
                    raise ValueError("unknown message property %r" % name)
            msg.sparse = set(sparse)
            msg.sparse_reads = sparse_reads
            box.messages[msg.key] = msg
            box.ids[msg.rest_id] = msg.key
            box.ids[msg.immutable_id] = msg.key
            box.record(fold.id, msg, "added")
            self._notify_change(box, msg, "created", fold.id)
            return msg.immutable_id

    def message_id(self, user, mid, immutable=False):
        """The current REST id (or the immutable id) of a message given by
        either id."""
        with self.lock:
            msg = self._msg(self._box(user), mid)
            return msg.immutable_id if immutable else msg.rest_id

    def message(self, user, mid):
        """A dict view of a message's state (for assertions)."""
        with self.lock:
            box = self._box(user)
            msg = self._msg(box, mid)
            return {"id": msg.rest_id, "immutable_id": msg.immutable_id,
                    "folder_id": msg.folder_id, "is_read": msg.is_read, "flag": msg.flag,
                    "categories": list(msg.categories), "sparse": sorted(msg.sparse),
                    "received": msg.received, "change_key": msg.change_key}

    def move_message(self, user, mid, folder):
        """Move like Outlook does: the REST id changes, the immutable id
        stays; returns the new REST id."""
        with self.cond:
            box = self._box(user)
            return self._move(box, self._msg(box, mid), folder).rest_id

    def update_message(self, user, mid, is_read=None, flag=None, categories=None):
        """Change isRead, flag ("notFlagged", "flagged", "complete") or
        categories: one update (delta, notifications)."""
        with self.cond:
            box = self._box(user)
            self._update(box, self._msg(box, mid), is_read, flag, categories)

    def delete_message(self, user, mid):
        """Remove a message for good (Graph's DELETE; a move to Deleted
        Items is move_message)."""
        with self.cond:
            box = self._box(user)
            self._delete(box, self._msg(box, mid))

    def complete_sparse(self, user, mid, notify=False):
        """The missing summary fields of a sparse message appear (with
        notify, as an update seen by delta and notifications)."""
        with self.cond:
            box = self._box(user)
            msg = self._msg(box, mid)
            msg.sparse = set()
            msg.sparse_reads = None
            if notify:
                msg.touch(self.now())
                box.record(msg.folder_id, msg, "updated")
                self._notify_change(box, msg, "updated", msg.folder_id)

    def expire_delta(self, user, folder=None, code="SyncStateNotFound"):
        """Every delta/skip token of `user` (of one folder if given) now
        answers 410 Gone with `code` (SyncStateNotFound, resyncRequired,
        InvalidSyncStateData, SyncStateInvalid); tokens handed out later are
        fine."""
        if code not in SYNC_STATE_MESSAGES:
            raise ValueError("unknown sync state code %r" % code)
        with self.lock:
            box = self._box(user)
            fid = None
            if folder is not None:
                if box.folder(folder) is None:
                    raise KeyError("unknown folder %r" % folder)
                fid = box.folder(folder).id
            for state in self.delta_states.values():
                if state["user"] == box.upn and (fid is None or state["folder"] == fid):
                    state["gone"] = code

    def _box(self, user):
        box = self.users.get((user or "").lower()) or self.users_by_id.get(user)
        if box is None:
            raise KeyError("unknown user %r (add_user first)" % user)
        return box

    def _msg(self, box, mid):
        key = box.ids.get(mid)
        if key is None or key not in box.messages:
            raise KeyError("unknown message %r" % mid)
        return box.messages[key]

    def _move(self, box, msg, folder):
        dest = box.folder(folder) if isinstance(folder, str) else folder
        if dest is None:
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        src = msg.folder_id
        if dest.id == src:
            return msg
        old_rest = msg.rest_id
        box.record(src, msg, "removed")
        old = (msg.rest_id, msg.immutable_id)
        del box.ids[msg.rest_id]
        msg.rest_id = _b64id("AAMkAD", 96) + "AAA="
        box.ids[msg.rest_id] = msg.key
        msg.folder_id = dest.id
        msg.touch(self.now())
        box.record(dest.id, msg, "added")
        self._notify_change(box, msg, "deleted", src, ids=old, scope="folder")
        self._notify_change(box, msg, "created", dest.id, scope="folder")
        self._notify_change(box, msg, "updated", dest.id, scope="mailbox")
        assert old_rest != msg.rest_id
        return msg

    def _update(self, box, msg, is_read=None, flag=None, categories=None):
        if flag is not None and flag not in ("notFlagged", "flagged", "complete"):
            raise GraphError(400, "ErrorInvalidProperty",
                             "The value of property 'flagStatus' is invalid.")
        if is_read is not None:
            msg.is_read = bool(is_read)
        if flag is not None:
            msg.flag = flag
        if categories is not None:
            msg.categories = list(categories)
        msg.touch(self.now())
        box.record(msg.folder_id, msg, "updated")
        self._notify_change(box, msg, "updated", msg.folder_id)

    def _delete(self, box, msg):
        box.record(msg.folder_id, msg, "removed")
        del box.messages[msg.key]
        box.ids.pop(msg.rest_id, None)
        box.ids.pop(msg.immutable_id, None)
        self._notify_change(box, msg, "deleted", msg.folder_id)

    # ---- error injection, delays, counters
    def fail_next(self, endpoint, status, count=1, retry_after=None, code=None, message=None,
                  user=None, aad_error=None):
        """The next `count` calls (None: all until clear_failures) of
        `endpoint` (see ENDPOINTS; "*" for any) for mailbox `user` (None:
        any) answer `status`. Graph errors take `code`/`message` (defaults
        by status; 410 gives SyncStateNotFound); on "token", aad_error is
        the AAD error kind (invalid_grant, invalid_client, ...)."""
        if endpoint not in ENDPOINTS and endpoint != "*":
            raise ValueError("unknown endpoint %r (one of %s)" % (endpoint, ENDPOINTS))
        with self.lock:
            self.failures.append({"endpoint": endpoint, "status": status, "count": count,
                                  "retry_after": retry_after, "code": code,
                                  "message": message, "user": user.lower() if user else None,
                                  "aad_error": aad_error})

    def clear_failures(self):
        with self.lock:
            self.failures = []

    def set_delay(self, endpoint, seconds):
        """Answer `endpoint` (any of ENDPOINTS) only after `seconds` (0
        removes); a delayed mailbox call holds its concurrency slot."""
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

    def calls(self, endpoint=None, user=None):
        with self.lock:
            user = user.lower() if user else None
            return sum(n for (ep, u), n in self.counts.items()
                       if (endpoint is None or ep == endpoint) and (user is None or u == user))

    def call_log(self, endpoint=None, user=None):
        """Dicts: t (arrival, time.time()), endpoint, user, status,
        in_batch."""
        with self.lock:
            user = user.lower() if user else None
            return [dict(e) for e in self.log
                    if (endpoint is None or e["endpoint"] == endpoint) and
                    (user is None or e["user"] == user)]

    def in_flight(self, user=None, endpoint=None):
        """Requests for mailbox `user` (of `endpoint`; endpoints that are
        not about one mailbox, like token or subscriptions.*, with
        user=None) being served right now."""
        with self.lock:
            if endpoint is None:
                return sum(n for u, n in self.inflight.items()
                           if user is None or u == user.lower())
            return sum(n for (ep, u), n in self.ep_inflight.items()
                       if ep == endpoint and (user is None or u == user.lower()))

    def max_concurrent(self, user=None, endpoint=None):
        """The most requests for mailbox `user` (of `endpoint`) that were
        in flight at once, counting arrivals the limit refused."""
        with self.lock:
            if endpoint is None:
                return max([n for u, n in self.peak.items()
                            if user is None or u == user.lower()] or [0])
            return max([n for (ep, u), n in self.ep_peak.items()
                        if ep == endpoint and (user is None or u == user.lower())] or [0])

    def throttled(self, user=None):
        """429s the concurrency limit and the request budget gave."""
        with self.lock:
            return sum(n for u, n in self.throttled_count.items()
                       if user is None or u == user.lower())

    def reset_counts(self):
        with self.lock:
            self.counts.clear()
            self.log = []
            self.peak.clear()
            self.ep_peak.clear()
            self.throttled_count.clear()
            self.push_log = []

    def _count(self, endpoint, user, status, arrived, in_batch):
        with self.lock:
            self.counts[(endpoint, user)] += 1
            self.log.append({"t": arrived, "endpoint": endpoint, "user": user,
                             "status": status, "in_batch": in_batch})

    def _injected(self, endpoint, user):
        with self.lock:
            for fail in list(self.failures):
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
                    kind = fail["aad_error"] or {400: "invalid_grant", 401: "invalid_client",
                                                 503: "temporarily_unavailable"}.get(
                                                     fail["status"], "temporarily_unavailable")
                    return AadError(kind, headers, status=fail["status"], client="injected",
                                    tenant=self.tenant_id, scope="", grant="", param="")
                code = fail["code"]
                message = fail["message"]
                if fail["status"] == 410 and code is None:
                    code = "SyncStateNotFound"
                if code in SYNC_STATE_MESSAGES and message is None:
                    message = SYNC_STATE_MESSAGES[code]
                return GraphError(fail["status"], code, message, headers)
        return None

    # ---- request dispatch
    def handle(self, method, target, headers, body, in_batch=False):
        """Serve one request; returns (status, headers dict, body bytes)."""
        req = Request(method, target, headers, body)
        arrived = time.time()
        request_id = _guid()
        base = {"request-id": request_id, "client-request-id":
                _header(headers, "client-request-id") or request_id}
        endpoint, user = None, None
        try:
            endpoint, route = self._route(req)
            if endpoint == "token":
                user = self._token_user(req)
                injected = self._injected(endpoint, user)
                if injected:
                    raise injected
                self._enter(None, endpoint)
                try:
                    result = self._token(req, route)
                finally:
                    self._leave(None, endpoint)
                self._count(endpoint, user, 200, arrived, in_batch)
                hdrs = dict(base, **{"Content-Type": "application/json; charset=utf-8",
                                     "Cache-Control": "no-store, no-cache"})
                return 200, hdrs, json.dumps(result).encode()
            self._authenticate(req)
            if endpoint == "batch":
                self._enter(None, endpoint)
                try:
                    status, hdrs, payload = self._batch(req)
                finally:
                    self._leave(None, endpoint)
                self._count(endpoint, None, status, arrived, in_batch)
                hdrs.update(base)
                return status, hdrs, payload
            if endpoint in MAILBOX_ENDPOINTS:
                self._resolve_user(req, route)
                user = req.box.upn.lower()
            elif endpoint.startswith("subscriptions."):
                user = None
            injected = self._injected(endpoint, user)
            if injected:
                raise injected
            self._enter(req.box, endpoint)
            try:
                status, hdrs, payload = self._serve(endpoint, route, req)
            finally:
                self._leave(req.box, endpoint)
        except AadError as err:
            self._count(endpoint or "unknown", user, err.status, arrived, in_batch)
            hdrs = dict(base, **{"Content-Type": "application/json; charset=utf-8"})
            hdrs.update(err.headers)
            return err.status, hdrs, json.dumps(err.body(self.now())).encode()
        except GraphError as err:
            self._count(endpoint or "unknown", user, err.status, arrived, in_batch)
            hdrs = dict(base, **{"Content-Type": "application/json"})
            hdrs.update(err.headers)
            if err.status == 401:
                hdrs["WWW-Authenticate"] = (
                    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                    'common/oauth2/authorize", client_id="%s"' % GRAPH_APP_ID)
            return err.status, hdrs, json.dumps(err.body(request_id, self.now())).encode()
        self._count(endpoint, user, status, arrived, in_batch)
        hdrs = dict(hdrs)
        hdrs.update(base)
        if req.applied:
            hdrs["Preference-Applied"] = ", ".join(req.applied)
        return status, hdrs, payload

    def _enter(self, box, endpoint):
        """Count a call in flight; for a mailbox (box not None) apply its
        concurrency limit and request budget (P§3 "Throttling"); then
        apply set_delay and pause."""
        key = box.upn.lower() if box else None
        with self.cond:
            self.ep_inflight[(endpoint, key)] += 1
            self.ep_peak[(endpoint, key)] = max(self.ep_peak[(endpoint, key)],
                                                self.ep_inflight[(endpoint, key)])
            if box is not None:
                self.inflight[key] += 1
                self.peak[key] = max(self.peak[key], self.inflight[key])
                refused = self._limit(box, key)
                if refused:
                    self.throttled_count[key] += 1
                    self.inflight[key] -= 1
                    self.ep_inflight[(endpoint, key)] -= 1
                    raise refused
            delay = self.delays.get(endpoint, 0)
            while endpoint in self.paused and self._server is not None:
                self.cond.wait(0.5)
        if delay:
            time.sleep(delay)

    def _limit(self, box, key):
        """The 429 this arrival gets from the mailbox's limits, or None."""
        if self.inflight[key] > self.mailbox_concurrency:
            return GraphError(429, "ApplicationThrottled",
                              "Application is over its MailboxConcurrency limit.",
                              {"Retry-After": str(self.concurrency_retry_after)})
        now = self.now()
        log = box.budget_log
        while log and log[0] <= now - self.budget_window:
            log.popleft()
        if len(log) >= self.mailbox_budget:
            wait = max(1, int(log[0] + self.budget_window - now) + 1)
            return GraphError(429, "ApplicationThrottled",
                              "Application is over its MailboxRate limit.",
                              {"Retry-After": str(wait)})
        log.append(now)
        return None

    def _leave(self, box, endpoint):
        key = box.upn.lower() if box else None
        with self.cond:
            self.ep_inflight[(endpoint, key)] -= 1
            if box is not None:
                self.inflight[key] -= 1

    def _route(self, req):
        """(endpoint name, route dict) of a request; GraphError otherwise."""
        path = req.path
        m = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path)
        if m:
            if req.method != "POST":
                raise GraphError(405)
            return "token", {"tenant": urllib.parse.unquote(m.group(1))}
        if not path.startswith("/v1.0/"):
            raise GraphError(400, "BadRequest", "Invalid version: %s" % path.split("/")[1:2])
        segs = []
        for raw in path[len("/v1.0/"):].split("/"):
            if raw == "":
                continue
            seg = urllib.parse.unquote(raw)
            m = re.fullmatch(r"([A-Za-z.]+)\('(.*)'\)", seg)
            if m:
                segs.extend([m.group(1), m.group(2)])
            else:
                segs.append(seg)
        low = [s.lower() for s in segs]
        meth = req.method
        if low == ["$batch"]:
            return self._verb(meth, {"POST": "batch"}), {}
        if low and low[0] == "subscriptions":
            if len(segs) == 1:
                return self._verb(meth, {"GET": "subscriptions.list",
                                         "POST": "subscriptions.create"}), {}
            if len(segs) == 2:
                return self._verb(meth, {"GET": "subscriptions.get",
                                         "PATCH": "subscriptions.update",
                                         "DELETE": "subscriptions.delete"}), {"sid": segs[1]}
            if len(segs) == 3 and low[2] in ("reauthorize", "microsoft.graph.reauthorize"):
                return self._verb(meth, {"POST": "subscriptions.reauthorize"}), \
                    {"sid": segs[1]}
            raise _no_segment(segs[-1])
        if low[:1] == ["me"]:
            route, rest, lrest = {"user": "me"}, segs[1:], low[1:]
        elif low[:1] == ["users"] and len(segs) >= 2:
            route, rest, lrest = {"user": segs[1]}, segs[2:], low[2:]
        else:
            raise _no_segment(segs[0] if segs else "")
        if not rest:
            return self._verb(meth, {"GET": "users.get"}), route
        if lrest[0] == "mailfolders":
            if len(rest) == 1:
                return self._verb(meth, {"GET": "mailFolders.list"}), route
            route["folder"] = rest[1]
            if len(rest) == 2:
                return self._verb(meth, {"GET": "mailFolders.get"}), route
            if len(rest) == 3 and lrest[2] == "childfolders":
                return self._verb(meth, {"GET": "mailFolders.childFolders"}), route
            if lrest[2] != "messages":
                raise _no_segment(rest[2])
            rest, lrest = rest[2:], lrest[2:]
        if lrest[0] != "messages":
            raise _no_segment(rest[0])
        if len(rest) == 1:
            return self._verb(meth, {"GET": "messages.list", "POST": "messages.create"}), route
        if lrest[1] in ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()"):
            if "folder" not in route:
                raise GraphError(400, "BadRequest", "Change tracking is not supported against "
                                 "'microsoft.graph.message'.")
            if len(rest) != 2:
                raise _no_segment(rest[2])
            return self._verb(meth, {"GET": "messages.delta"}), route
        route["message"] = rest[1]
        if len(rest) == 2:
            return self._verb(meth, {"GET": "messages.get", "PATCH": "messages.update",
                                     "DELETE": "messages.delete"}), route
        if len(rest) == 3 and lrest[2] == "$value":
            return self._verb(meth, {"GET": "messages.value"}), route
        if len(rest) == 3 and lrest[2] in ("move", "microsoft.graph.move"):
            return self._verb(meth, {"POST": "messages.move"}), route
        raise _no_segment(rest[2])

    @staticmethod
    def _verb(method, table):
        if method not in table:
            raise GraphError(405, "MethodNotAllowed",
                             "The HTTP method '%s' is not allowed for the resource." % method)
        return table[method]

    def _authenticate(self, req):
        auth = _header(req.headers, "Authorization")
        if not auth:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if not auth.startswith("Bearer "):
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Access token validation failure.")
        with self.lock:
            info = self.access_tokens.get(auth[7:].strip())
            if info is None:
                raise GraphError(401, "InvalidAuthenticationToken",
                                 "CompactToken parsing failed with error code: 80049217")
            if info["expires"] <= self.now():
                raise GraphError(401, "InvalidAuthenticationToken",
                                 "Access token has expired or is not yet valid.")
            req.auth = info

    def _resolve_user(self, req, route):
        ref = route["user"]
        with self.lock:
            if ref.lower() == "me":
                if req.auth["app"]:
                    raise GraphError(400, "BadRequest",
                                     "/me request is only valid with delegated authentication "
                                     "flow.")
                box = self.users[req.auth["user"].lower()]
            else:
                box = self.users.get(ref.lower()) or self.users_by_id.get(ref)
                if box is None:
                    raise GraphError(404, "ErrorInvalidUser",
                                     "The requested user '%s' is invalid." % ref)
            if not req.auth["app"] and req.auth["user"].lower() != box.upn.lower():
                raise GraphError(403, "ErrorAccessDenied",
                                 "Access is denied. Check credentials and try again.")
            req.box = box
            req.user_ref = ref

    def _need(self, req, perms):
        if not req.auth["perms"] & perms:
            raise GraphError(403, "ErrorAccessDenied",
                             "Access is denied. Check credentials and try again.")

    def _serve(self, endpoint, route, req):
        if endpoint.startswith("subscriptions."):
            return self._subscriptions(endpoint, route, req)
        if endpoint == "users.get":
            box = req.box
            return self._json(200, {
                "@odata.context": GRAPH + "/v1.0/$metadata#users/$entity",
                "id": box.object_id, "userPrincipalName": box.upn, "mail": box.upn,
                "displayName": box.display_name})
        if endpoint.startswith("messages.") and endpoint not in ("messages.list",
                                                                 "messages.create"):
            need = WRITE_PERMS if endpoint in ("messages.move", "messages.update",
                                               "messages.delete") else READ_PERMS
            if endpoint == "messages.value":
                need = FULL_READ_PERMS
            self._need(req, need)
        elif endpoint == "messages.create":
            self._need(req, WRITE_PERMS)
        else:
            self._need(req, READ_PERMS)
        handler = {"mailFolders.list": self._folders_list,
                   "mailFolders.childFolders": self._folders_list,
                   "mailFolders.get": self._folder_get,
                   "messages.list": self._messages_list,
                   "messages.delta": self._messages_delta,
                   "messages.get": self._message_get,
                   "messages.value": self._message_value,
                   "messages.create": self._message_create,
                   "messages.move": self._message_move,
                   "messages.update": self._message_update,
                   "messages.delete": self._message_delete}[endpoint]
        with self.cond:
            return handler(route, req)

    @staticmethod
    def _json(status, obj, extra=None):
        hdrs = {"Content-Type": "application/json;odata.metadata=minimal;"
                                "odata.streaming=true;IEEE754Compatible=false;charset=utf-8"}
        if extra:
            hdrs.update(extra)
        return status, hdrs, json.dumps(obj).encode()

    # ---- folders
    def _folder_json(self, box, folder, select=None):
        msgs = [m for m in box.messages.values() if m.folder_id == folder.id]
        full = {"id": folder.id, "displayName": folder.display_name,
                "parentFolderId": folder.parent_id,
                "childFolderCount": sum(1 for f in box.folders.values()
                                        if f.parent_id == folder.id),
                "unreadItemCount": sum(1 for m in msgs if not m.is_read),
                "totalItemCount": len(msgs), "isHidden": folder.hidden}
        if select is None:
            return full
        return {k: v for k, v in full.items() if k in select or k == "id"}

    def _select(self, req, props):
        text = req.q("$select")
        if text is None:
            return None
        canon = {p.lower(): p for p in props}
        out = []
        for name in text.split(","):
            name = name.strip()
            if not name:
                continue
            if name.lower() not in canon:
                raise GraphError(400, "RequestBroker--ParseUri",
                                 "Could not find a property named '%s' on type "
                                 "'microsoft.graph.%s'." % (name, "mailFolder"
                                                            if props is FOLDER_PROPS
                                                            else "message"))
            out.append(canon[name.lower()])
        return out

    def _box_folder(self, req, ref):
        folder = req.box.folder(ref)
        if folder is None:
            if not re.fullmatch(r"[A-Za-z0-9_\-=+/]{20,}", ref):
                raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
            raise GraphError(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
        return folder

    def _paging(self, req, default=10, cap=1000):
        top = req.q("$top")
        skip = req.q("$skip", "0")
        try:
            top = default if top is None else int(top)
            skip = int(skip)
        except ValueError:
            raise GraphError(400, "BadRequest", "Invalid $top or $skip value.") from None
        if top < 0 or skip < 0:
            raise GraphError(400, "BadRequest", "Invalid $top or $skip value.")
        return min(top, cap), skip

    def _next_link(self, req, skip):
        pairs = [(k, v) for k, v in urllib.parse.parse_qsl(req.raw_query,
                                                          keep_blank_values=True)
                 if k.lower() != "$skip"]
        pairs.append(("$skip", str(skip)))
        return self.url + req.path + "?" + "&".join(
            "%s=%s" % (k, urllib.parse.quote(v, safe="$,()':")) for k, v in pairs)

    def _context(self, req, tail):
        return "%s/v1.0/$metadata#users('%s')/%s" % (
            self.url, urllib.parse.quote(req.user_ref, safe="@"), tail)

    def _folders_list(self, route, req):
        box = req.box
        if "folder" in route:
            parent = self._box_folder(req, route["folder"])
        else:
            parent = box.folders[box.well_known["msgfolderroot"]]
        hidden = (req.q("includeHiddenFolders", "false").lower() == "true")
        kids = sorted((f for f in box.folders.values()
                       if f.parent_id == parent.id and (hidden or not f.hidden)),
                      key=lambda f: f.display_name.lower())
        select = self._select(req, FOLDER_PROPS)
        top, skip = self._paging(req)
        page = kids[skip:skip + top]
        out = {"@odata.context": self._context(req, "mailFolders"),
               "value": [self._folder_json(box, f, select) for f in page]}
        if skip + top < len(kids) and top > 0:
            out["@odata.nextLink"] = self._next_link(req, skip + top)
        return self._json(200, out)

    def _folder_get(self, route, req):
        folder = self._box_folder(req, route["folder"])
        out = {"@odata.context": self._context(req, "mailFolders/$entity")}
        out.update(self._folder_json(req.box, folder, self._select(req, FOLDER_PROPS)))
        return self._json(200, out)

    # ---- messages
    def _render(self, req, msg, select=None, delta=False):
        """The message resource (P§3; message resource page), with $select."""
        props = select if select is not None else DEFAULT_MESSAGE_PROPS
        text_pref = req.prefer.get("outlook.body-content-type", "").lower() == "text"
        if text_pref:
            req.applied.append('outlook.body-content-type="text"')
        out = {}
        if delta:
            out["@odata.type"] = "#microsoft.graph.message"
        out["@odata.etag"] = msg.etag()
        mid = msg.immutable_id if req.immutable else msg.rest_id
        plain, htm = msg.texts()
        for prop in props:
            if prop in msg.sparse and prop != "id":
                if self.sparse_style == "null":
                    out[prop] = None
                continue
            if prop == "id":
                value = mid
            elif prop == "createdDateTime":
                value = _iso(msg.created)
            elif prop == "lastModifiedDateTime":
                value = _iso(msg.modified)
            elif prop == "changeKey":
                value = msg.change_key
            elif prop == "categories":
                value = list(msg.categories)
            elif prop == "receivedDateTime":
                value = _iso(msg.received)
            elif prop == "sentDateTime":
                date = msg.parsed.get("Date")
                parsed = email.utils.parsedate_tz(date) if date else None
                value = _iso(email.utils.mktime_tz(parsed)) if parsed else _iso(msg.received)
            elif prop == "hasAttachments":
                value = msg.has_attachments()
            elif prop == "internetMessageId":
                value = msg.header("Message-ID") or None
            elif prop == "subject":
                value = msg.header("Subject")
            elif prop == "bodyPreview":
                text = plain if plain is not None else _strip_html(htm or "")
                value = " ".join(text.split())[:255]
            elif prop == "importance":
                value = msg.importance()
            elif prop == "parentFolderId":
                value = msg.folder_id
            elif prop == "conversationId":
                value = msg.conversation_id
            elif prop == "conversationIndex":
                value = msg.conversation_index
            elif prop in ("isDeliveryReceiptRequested", "isReadReceiptRequested"):
                value = False
            elif prop == "isRead":
                value = msg.is_read
            elif prop == "isDraft":
                value = msg.is_draft
            elif prop == "webLink":
                value = ("https://outlook.office365.com/owa/?ItemID=%s&exvsurl=1"
                         "&viewmodel=ReadMessageItem" % urllib.parse.quote(mid, safe=""))
            elif prop == "inferenceClassification":
                value = "focused"
            elif prop in ("body", "uniqueBody"):
                if text_pref:
                    value = {"contentType": "text",
                             "content": plain if plain is not None else _strip_html(htm or "")}
                else:
                    value = {"contentType": "html",
                             "content": htm if htm is not None else
                             "<html><body><div>%s</div></body></html>" % html.escape(
                                 plain or "")}
            elif prop in ("from", "sender"):
                src = msg.parsed.get("Sender") if prop == "sender" else None
                src = src or msg.parsed.get("From")
                found = _recipients([str(src)]) if src else []
                value = found[0] if found else None
            elif prop in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
                name = {"toRecipients": "To", "ccRecipients": "Cc", "bccRecipients": "Bcc",
                        "replyTo": "Reply-To"}[prop]
                value = _recipients([str(v) for v in msg.parsed.get_all(name, [])])
            elif prop == "flag":
                value = {"flagStatus": msg.flag}
            elif prop == "internetMessageHeaders":
                value = [{"name": k, "value": _decode_words(str(v))}
                         for k, v in msg.parsed.items()]
            else:
                continue
            out[prop] = value
        if "id" not in out:
            out["id"] = mid
        return out

    def _filter(self, text, delta=False):
        """Parse `receivedDateTime op value [and ...]` -> [(op, ts)]."""
        terms = []
        for part in re.split(r"\s+and\s+", text.strip(), flags=re.I):
            m = re.fullmatch(r"\(?\s*receivedDateTime\s+(lt|le|gt|ge|eq)\s+'?([^')\s]+)'?\s*\)?",
                             part.strip(), re.I)
            if not m:
                raise GraphError(400, "ErrorInvalidUrlQueryFilter",
                                 "The query filter contains one or more invalid nodes "
                                 "(the fake supports receivedDateTime lt|le|gt|ge|eq only).")
            op = m.group(1).lower()
            if delta and op not in ("ge", "gt"):
                raise GraphError(400, "ErrorInvalidUrlQueryFilter",
                                 "Delta query supports only receivedDateTime ge|gt filters.")
            try:
                ts = parse_datetime(m.group(2))
            except ValueError:
                raise GraphError(400, "BadRequest", "The DateTimeOffset text '%s' should be in "
                                 "format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field "
                                 "value is within valid range." % m.group(2)) from None
            terms.append((op, ts))
        return terms

    @staticmethod
    def _matches(msg, terms):
        # Graph compares at second precision (what receivedDateTime shows).
        r = int(msg.received)
        for op, ts in terms:
            ok = {"lt": r < ts, "le": r <= ts, "gt": r > ts, "ge": r >= ts,
                  "eq": r == int(ts)}[op]
            if not ok:
                return False
        return True

    def _order(self, req, msgs, delta=False):
        text = req.q("$orderby")
        if text is None:
            if delta:
                return msgs
            return sorted(msgs, key=lambda m: (m.received, m.key), reverse=True)
        m = re.fullmatch(r"\s*receivedDateTime(?:\s+(asc|desc))?\s*", text, re.I)
        if not m or (delta and (m.group(1) or "asc").lower() != "desc"):
            raise GraphError(400, "BadRequest", "The $orderby expression is not supported "
                             "(the fake supports receivedDateTime desc%s)."
                             % ("" if delta else "|asc"))
        desc = (m.group(1) or "asc").lower() == "desc"
        return sorted(msgs, key=lambda x: (x.received, x.key), reverse=desc)

    def _messages_list(self, route, req):
        box = req.box
        if "folder" in route:
            folder = self._box_folder(req, route["folder"])
            msgs = [m for m in box.messages.values() if m.folder_id == folder.id]
            tail = "mailFolders('%s')/messages" % folder.id
        else:
            msgs = list(box.messages.values())
            tail = "messages"
        select = self._select(req, MESSAGE_PROPS)
        if req.q("$filter"):
            terms = self._filter(req.q("$filter"))
            msgs = [m for m in msgs if self._matches(m, terms)]
        if req.q("$search"):
            raise GraphError(400, "BadRequest", "The fake does not implement $search.")
        msgs = self._order(req, msgs)
        top, skip = self._paging(req)
        page = msgs[skip:skip + top]
        if req.immutable:
            req.applied.append('IdType="ImmutableId"')
        if select:
            tail += "(%s)" % ",".join(select)
        out = {"@odata.context": self._context(req, tail),
               "value": [self._render(req, m, select) for m in page]}
        if skip + top < len(msgs) and top > 0:
            out["@odata.nextLink"] = self._next_link(req, skip + top)
        return self._json(200, out)

    def _find(self, req, route):
        box = req.box
        key = box.ids.get(route["message"])
        msg = box.messages.get(key) if key is not None else None
        if msg is None:
            raise GraphError(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
        if "folder" in route:
            folder = self._box_folder(req, route["folder"])
            if msg.folder_id != folder.id:
                raise GraphError(404, "ErrorItemNotFound",
                                 "The specified object was not found in the store.")
        return msg

    def _message_get(self, route, req):
        msg = self._find(req, route)
        select = self._select(req, MESSAGE_PROPS)
        if req.immutable:
            req.applied.append('IdType="ImmutableId"')
        out = {"@odata.context": self._context(req, "messages/$entity")}
        out.update(self._render(req, msg, select))
        if msg.sparse and msg.sparse_reads is not None:
            msg.sparse_reads -= 1
            if msg.sparse_reads <= 0:
                msg.sparse = set()
                msg.sparse_reads = None
        return self._json(200, out)

    def _message_value(self, route, req):
        msg = self._find(req, route)
        return 200, {"Content-Type": "text/plain"}, msg.raw

    def _message_create(self, route, req):
        box = req.box
        folder = self._box_folder(req, route["folder"]) if "folder" in route else \
            box.folders[box.well_known["drafts"]]
        ctype = _header(req.headers, "Content-Type").lower()
        if ctype.startswith("text/plain"):
            try:
                raw = base64.b64decode(req.body, validate=False)
            except ValueError:
                raise GraphError(400, "ErrorMimeContentInvalidBase64String",
                                 "Invalid base64 string for MIME content.") from None
            if not re.search(rb"^[\x21-\x39\x3b-\x7e]+:", raw, re.M):
                raise GraphError(400, "ErrorMimeContentInvalid", "The MIME content is invalid.")
        elif ctype.startswith("application/json"):
            try:
                spec = json.loads(req.body or b"{}")
            except ValueError:
                raise GraphError(400, "BadRequest", "Unable to read JSON request payload. "
                                 "Please ensure Content-Type header is set and payload is of "
                                 "valid JSON format.") from None
            if not isinstance(spec, dict):
                raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
            raw = self._mime_from_json(box, spec)
        else:
            raise GraphError(415, "UnsupportedMediaType",
                             "Content-Type must be application/json or text/plain (MIME).")
        msg = Message(self._next_key, raw, folder.id, self.now(), True, True)
        self._next_key += 1
        box.messages[msg.key] = msg
        box.ids[msg.rest_id] = msg.key
        box.ids[msg.immutable_id] = msg.key
        box.record(folder.id, msg, "added")
        self._notify_change(box, msg, "created", folder.id)
        if req.immutable:
            req.applied.append('IdType="ImmutableId"')
        out = {"@odata.context": self._context(req, "messages/$entity")}
        out.update(self._render(req, msg))
        return self._json(201, out)

    def _mime_from_json(self, box, spec):
        def addr(rec):
            ea = (rec or {}).get("emailAddress") or {}
            if not ea.get("address"):
                return None
            return email.utils.formataddr((ea.get("name") or "", ea["address"]))
        lines = []
        sender = addr(spec.get("from")) or email.utils.formataddr((box.display_name, box.upn))
        lines.append("From: " + sender)
        for key, name in (("toRecipients", "To"), ("ccRecipients", "Cc"),
                          ("bccRecipients", "Bcc"), ("replyTo", "Reply-To")):
            addrs = [a for a in (addr(r) for r in spec.get(key) or []) if a]
            if addrs:
                lines.append("%s: %s" % (name, ", ".join(addrs)))
        subject = spec.get("subject") or ""
        lines.append("Subject: " + str(email.header.Header(subject, "utf-8").encode()
                                       if any(ord(c) > 127 for c in subject) else subject))
        lines.append("Date: " + email.utils.formatdate(self.now()))
        lines.append("Message-ID: <%s@%s>" % (secrets.token_hex(12),
                                              box.upn.split("@")[-1]))
        lines.append("MIME-Version: 1.0")
        body = spec.get("body") or {}
        content = str(body.get("content") or "")
        sub = "html" if str(body.get("contentType", "text")).lower() == "html" else "plain"
        lines.append('Content-Type: text/%s; charset="utf-8"' % sub)
        lines.append("Content-Transfer-Encoding: base64")
        raw = "\r\n".join(lines).encode() + b"\r\n\r\n"
        return raw + base64.encodebytes(content.encode("utf-8")).replace(b"\n", b"\r\n")

    def _message_move(self, route, req):
        msg = self._find(req, route)
        try:
            spec = json.loads(req.body or b"{}")
            dest_ref = spec["destinationId"]
        except (ValueError, KeyError, TypeError):
            raise GraphError(400, "ErrorInvalidParameter",
                             "The value of the parameter 'DestinationId' is empty.") from None
        dest = self._box_folder(req, str(dest_ref))
        self._move(req.box, msg, dest)
        if req.immutable:
            req.applied.append('IdType="ImmutableId"')
        out = {"@odata.context": self._context(req, "messages/$entity")}
        out.update(self._render(req, msg))
        return self._json(201, out)

    def _message_update(self, route, req):
        msg = self._find(req, route)
        try:
            spec = json.loads(req.body or b"{}")
            if not isinstance(spec, dict):
                raise ValueError
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") \
                from None
        allowed = {"isRead", "flag", "categories"}
        unknown = set(spec) - allowed
        if unknown:
            raise GraphError(400, "BadRequest", "The fake updates only isRead, flag and "
                             "categories (got %s)." % ", ".join(sorted(unknown)))
        flag = spec.get("flag")
        self._update(req.box, msg, spec.get("isRead"),
                     flag.get("flagStatus") if isinstance(flag, dict) else None,
                     spec.get("categories"))
        if req.immutable:
            req.applied.append('IdType="ImmutableId"')
        out = {"@odata.context": self._context(req, "messages/$entity")}
        out.update(self._render(req, msg))
        return self._json(200, out)

    def _message_delete(self, route, req):
        msg = self._find(req, route)
        self._delete(req.box, msg)
        return 204, {}, b""

    # ---- delta (P§3 "Message delta")
    def _messages_delta(self, route, req):
        box = req.box
        folder = self._box_folder(req, route["folder"])
        token = req.q("$deltatoken") or req.q("$skiptoken")
        if token is not None:
            state = self.delta_states.get(token)
            if state is None or state["user"] != box.upn or state["folder"] != folder.id:
                raise GraphError(410, "SyncStateNotFound",
                                 SYNC_STATE_MESSAGES["SyncStateNotFound"])
            if state.get("gone"):
                raise GraphError(410, state["gone"], SYNC_STATE_MESSAGES[state["gone"]])
            if state["immutable"] != req.immutable:
                raise GraphError(400, "SyncStateInvalid", SYNC_STATE_MESSAGES["SyncStateInvalid"])
            opts = state["opts"]
            if state["kind"] == "delta":
                items = self._delta_changes(box, folder.id, state["seq"], opts, req.immutable)
                base = box.seq
                pos = 0
            else:
                items, base, pos = state["items"], state["base"], state["pos"]
        else:
            opts = {"select": self._select(req, MESSAGE_PROPS), "change": None, "filter": None,
                    "top": None}
            change = req.q("changeType")
            if change is not None:
                if change not in ("created", "updated", "deleted"):
                    raise GraphError(400, "BadRequest", "Invalid changeType '%s'." % change)
                opts["change"] = change
            if req.q("$filter"):
                opts["filter"] = self._filter(req.q("$filter"), delta=True)
            if req.q("$search"):
                raise GraphError(400, "BadRequest", "$search is not supported with delta.")
            if req.q("$top"):
                try:
                    opts["top"] = max(1, int(req.q("$top")))
                except ValueError:
                    raise GraphError(400, "BadRequest", "Invalid $top value.") from None
            msgs = [m for m in box.messages.values() if m.folder_id == folder.id]
            if opts["filter"]:
                msgs = [m for m in msgs if self._matches(m, opts["filter"])][:5000]
            msgs = self._order(req, msgs, delta=True)
            items = [(m.key, "created", m.rest_id, m.immutable_id) for m in msgs]
            if opts["change"] not in (None, "created"):
                items = []
            base = box.seq
            pos = 0
        size = opts["top"] or 10
        if "odata.maxpagesize" in req.prefer:
            try:
                size = max(1, int(req.prefer["odata.maxpagesize"]))
            except ValueError:
                raise GraphError(400, "BadRequest", "Invalid odata.maxpagesize.") from None
            req.applied.append("odata.maxpagesize=%d" % size)
        if req.immutable:
            req.applied.append('IdType="ImmutableId"')
        page = items[pos:pos + size]
        values = []
        for key, kind, rest_id, imm_id in page:
            msg = box.messages.get(key)
            if kind != "deleted" and msg is not None and msg.folder_id == folder.id:
                values.append(self._render(req, msg, opts["select"], delta=True))
            else:
                # Deleted, or moved out of the folder since the round began.
                values.append({"@odata.type": "#microsoft.graph.message",
                               "id": imm_id if req.immutable else rest_id,
                               "@removed": {"reason": "deleted"}})
        link_base = "%s/v1.0/%s/mailFolders('%s')/messages/delta" % (
            self.url, "me" if req.user_ref.lower() == "me" else
            "users/" + urllib.parse.quote(req.user_ref, safe="@"), folder.id)
        out = {"@odata.context": "%s/v1.0/$metadata#Collection(message)" % self.url,
               "value": values}
        new = secrets.token_urlsafe(48)
        common = {"user": box.upn, "folder": folder.id, "opts": opts,
                  "immutable": req.immutable}
        if pos + size < len(items):
            self.delta_states[new] = dict(common, kind="skip", items=items, base=base,
                                          pos=pos + size)
            out["@odata.nextLink"] = link_base + "?$skiptoken=" + new
        else:
            self.delta_states[new] = dict(common, kind="delta", seq=base)
            out["@odata.deltaLink"] = link_base + "?$deltatoken=" + new
        return self._json(200, out)

    def _delta_changes(self, box, fid, since, opts, immutable):
        """Net changes to folder `fid` after change `since`: (key, kind,
        rest id, immutable id) with kind created|updated|deleted."""
        first = collections.OrderedDict()
        # Change seq n is box.changes[n - 1]: start right after `since`.
        for seq, folder, key, kind, rest, imm in box.changes[since:]:
            if folder != fid:
                continue
            first.setdefault(key, (kind, rest, imm))
            first.move_to_end(key)
        items = []
        for key, (first_kind, old_rest, imm) in first.items():
            msg = box.messages.get(key)
            now_in = msg is not None and msg.folder_id == fid
            was_in = first_kind != "added"
            if now_in and was_in and old_rest != msg.rest_id and not immutable:
                # Moved out and back: the REST id the client knows is gone.
                found = [(key, "deleted", old_rest, imm),
                         (key, "created", msg.rest_id, msg.immutable_id)]
            elif now_in:
                found = [(key, "updated" if was_in else "created", msg.rest_id,
                          msg.immutable_id)]
            elif was_in:
                found = [(key, "deleted", old_rest, imm)]
            else:
                continue
            for item in found:
                if opts["change"] and item[1] != opts["change"]:
                    continue
                if item[1] != "deleted" and opts["filter"] and \
                        not self._matches(msg, opts["filter"]):
                    continue
                items.append(item)
        return items

    # ---- $batch (json-batching)
    def _batch(self, req):
        try:
            spec = json.loads(req.body or b"")
            requests = spec["requests"]
            if not isinstance(requests, list):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise GraphError(400, "BadRequest", "Invalid batch payload format.") from None
        if len(requests) > 20:
            raise GraphError(400, "BadRequest", "The number of batch requests exceeds the "
                             "limit of 20.")
        ids = set()
        for part in requests:
            if not isinstance(part, dict) or not part.get("id") or not part.get("method") \
                    or not isinstance(part.get("url"), str):
                raise GraphError(400, "BadRequest", "Batch request is missing id, method or "
                                 "url.")
            if str(part["id"]) in ids:
                raise GraphError(400, "BadRequest", "Batch request ids must be unique.")
            ids.add(str(part["id"]))
            if "body" in part and not any(k.lower() == "content-type"
                                          for k in (part.get("headers") or {})):
                raise GraphError(400, "BadRequest", "Content-Type header must be specified "
                                 "for a request with a body.")
        for part in requests:
            if part["url"].startswith(("http://", "https://")):
                raise GraphError(400, "BadRequest", "Batch request url must be relative.")
        auth = _header(req.headers, "Authorization")
        responses = [None] * len(requests)
        order = iter(range(len(requests)))
        take = threading.Lock()

        def worker():
            while True:
                with take:
                    i = next(order, None)
                if i is None:
                    return
                responses[i] = self._batch_part(requests[i], auth)
        # Graph hands at most 4 parts at once to Outlook (P§3): each is a
        # request in flight for its mailbox, so a batch running next to
        # other requests for the same mailbox can get 429 parts.
        workers = [threading.Thread(target=worker, daemon=True)
                   for _ in range(max(1, min(self.batch_parallelism, len(requests))))]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        if self.batch_shuffle:
            random.shuffle(responses)
        return self._json(200, {"responses": responses})

    def _batch_part(self, part, auth):
        """One part of a batch -> its entry in "responses"."""
        url = part["url"]
        target = "/v1.0/" + url.lstrip("/")
        headers = {str(k): str(v) for k, v in (part.get("headers") or {}).items()}
        headers["Authorization"] = auth
        body = part.get("body")
        if body is None:
            data = b""
        elif isinstance(body, str) and _header(headers, "Content-Type").lower().startswith(
                "text/plain"):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        status, hdrs, payload = self.handle(part["method"], target, headers, data,
                                            in_batch=True)
        out_headers = {k: v for k, v in hdrs.items()
                       if k.lower() not in ("request-id", "client-request-id")}
        entry = {"id": str(part["id"]), "status": status, "headers": out_headers}
        if payload:
            if out_headers.get("Content-Type", "").startswith("application/json"):
                entry["body"] = json.loads(payload)
            else:
                entry["body"] = base64.b64encode(payload).decode()
        return entry

    # ---- token endpoint (P§3 "OAuth refresh")
    def _token_user(self, req):
        form = dict(urllib.parse.parse_qsl(req.body.decode("utf-8", "replace")))
        with self.lock:
            info = self.refresh_tokens.get(form.get("refresh_token", ""))
            return info["user"].lower() if info else None

    def _token(self, req, route):
        tenant = route["tenant"].lower()
        ctype = _header(req.headers, "Content-Type").lower()
        if not ctype.startswith("application/x-www-form-urlencoded"):
            raise AadError("invalid_request", param="grant_type")
        form = dict(urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"),
                                           keep_blank_values=True))
        grant = form.get("grant_type")
        if tenant not in (self.tenant_id.lower(), "common", "organizations") and \
                tenant not in self.tenant_domains:
            raise AadError("tenant_not_found", tenant=route["tenant"])
        if not grant:
            raise AadError("invalid_request", param="grant_type")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = _header(req.headers, "Authorization")
        if auth.startswith("Basic "):
            try:
                client_id, secret = base64.b64decode(auth[6:]).decode().split(":", 1)
                client_id = urllib.parse.unquote_plus(client_id)
                secret = urllib.parse.unquote_plus(secret)
            except (ValueError, UnicodeDecodeError):
                raise AadError("invalid_client", client="") from None
        if not client_id:
            raise AadError("invalid_request", param="client_id")
        with self.lock:
            client = self.clients.get(client_id)
            if client is None:
                raise AadError("unauthorized_client", client=client_id, tenant=self.tenant_id)
            if not secret:
                raise AadError("invalid_client", status=401, client=client_id)
            if not hmac.compare_digest(client["secret"].encode(), secret.encode()):
                raise AadError("invalid_client", client=client_id)
            if grant == "client_credentials":
                if tenant in ("common", "organizations"):
                    raise AadError("not_multi_tenant", client=client_id)
                scope = form.get("scope", "")
                if scope.split() != [DEFAULT_SCOPE]:
                    if not scope:
                        raise AadError("invalid_request", param="scope")
                    raise AadError("invalid_scope", scope=scope)
                token = self._mint(client_id, None, client["roles"])
                return {"token_type": "Bearer", "expires_in": self.access_token_lifetime,
                        "ext_expires_in": self.access_token_lifetime, "access_token": token}
            if grant == "refresh_token":
                old = form.get("refresh_token")
                if not old:
                    raise AadError("invalid_request", param="refresh_token")
                info = self.refresh_tokens.get(old)
                if info is None or info["client"] != client_id:
                    raise AadError("invalid_grant")
                if info.get("revoked"):
                    raise AadError("invalid_grant_revoked")
                granted = set(info["scopes"])
                asked = set()
                for s in form.get("scope", "").split():
                    short = s[len(GRAPH) + 1:] if s.startswith(GRAPH + "/") else s
                    if short in ("openid", "profile", "email", "offline_access", ".default"):
                        continue
                    asked.add(short)
                if not asked <= granted:
                    raise AadError("consent_required", client=client_id)
                perms = {p for p in granted if p != "offline_access"}
                token = self._mint(client_id, info["user"], perms)
                new = "0.A" + secrets.token_urlsafe(96)
                self.refresh_tokens[new] = dict(info)
                if self.strict_rotation:
                    info["revoked"] = True
                return {"token_type": "Bearer",
                        "scope": " ".join(sorted(GRAPH + "/" + p for p in perms)),
                        "expires_in": self.access_token_lifetime,
                        "ext_expires_in": self.access_token_lifetime,
                        "access_token": token, "refresh_token": new}
            raise AadError("unsupported_grant_type", grant=grant)

    # ---- subscriptions (P§3 "Create subscription", "Renew")
    def _subscriptions(self, endpoint, route, req):
        self._need(req, READ_PERMS)
        if endpoint == "subscriptions.create":
            return self._sub_create(req)
        if endpoint == "subscriptions.list":
            with self.lock:
                subs = [s.json(self.tenant_id) for s in list(self.subscriptions.values())
                        if self._visible(req, s) and self._live(s.id)]
            for sub in subs:
                del sub["@odata.context"]
            return self._json(200, {"@odata.context": GRAPH + "/v1.0/$metadata#subscriptions",
                                    "value": subs})
        spec = self._json_body(req) if endpoint == "subscriptions.update" else {}
        if isinstance(spec.get("notificationUrl"), str):
            # A new notificationUrl is validated like at creation.
            with self.lock:
                sub = self._live(route["sid"])
                known = sub is not None and self._visible(req, sub)
            if known:
                problem = self._validate(self._check_url(spec["notificationUrl"],
                                                         "notificationUrl"))
                if problem:
                    raise GraphError(400, "InvalidRequest", problem)
        with self.lock:
            sub = self._live(route["sid"])
            if sub is None or not self._visible(req, sub):
                raise GraphError(404, "ResourceNotFound", "The object was not found.")
            if endpoint == "subscriptions.get":
                return self._json(200, sub.json(self.tenant_id))
            if endpoint == "subscriptions.delete":
                del self.subscriptions[sub.id]
                return 204, {}, b""
            if endpoint == "subscriptions.reauthorize":
                sub.paused = False
                sub.reauthorized += 1
                return 204, {}, b""
            if "lifecycleNotificationUrl" in spec:
                raise GraphError(400, "InvalidRequest", "lifecycleNotificationUrl cannot be "
                                 "added or changed by an update; delete and recreate the "
                                 "subscription.")
            unknown = set(spec) - {"expirationDateTime", "notificationUrl"}
            if unknown:
                raise GraphError(400, "InvalidRequest", "Only expirationDateTime and "
                                 "notificationUrl can be updated (got %s)."
                                 % ", ".join(sorted(unknown)))
            if not spec.get("expirationDateTime") and not spec.get("notificationUrl"):
                raise GraphError(400, "InvalidRequest", "Subscription must contain either "
                                 "the 'expirationDateTime' or 'notificationUrl' property and "
                                 "its value.")
            if spec.get("expirationDateTime"):
                sub.expires = self._expiry(spec["expirationDateTime"])
            if "notificationUrl" in spec:
                sub.url = self._check_url(spec["notificationUrl"], "notificationUrl")
            sub.paused = False   # renewing also reauthorizes
            return self._json(200, sub.json(self.tenant_id))

    def _visible(self, req, sub):
        if sub.client_id != req.auth["client"]:
            return False
        return req.auth["app"] or sub.box.upn.lower() == req.auth["user"].lower()

    def _live(self, sid):
        """The subscription, or None when unknown or expired (Graph deletes
        expired subscriptions)."""
        sub = self.subscriptions.get(sid)
        if sub is not None and sub.expires <= self.now():
            del self.subscriptions[sid]
            return None
        return sub

    @staticmethod
    def _json_body(req):
        try:
            spec = json.loads(req.body or b"")
        except ValueError:
            spec = None
        if not isinstance(spec, dict):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please "
                             "ensure Content-Type header is set and payload is of valid JSON "
                             "format.")
        return spec

    def _expiry(self, text):
        try:
            when = parse_datetime(str(text))
        except ValueError:
            raise GraphError(400, "InvalidRequest", "expirationDateTime '%s' is not a valid "
                             "date-time." % text) from None
        now = self.now()
        if when <= now:
            raise GraphError(400, "ExtensionError", "Subscription expiration must be in the "
                             "future.")
        if when > now + self.max_subscription_minutes * 60:
            raise GraphError(400, "ExtensionError", "Subscription expiration can only be %d "
                             "minutes in the future." % self.max_subscription_minutes)
        return max(when, now + self.min_subscription_minutes * 60)

    @staticmethod
    def _check_url(url, name):
        if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
            raise GraphError(400, "InvalidRequest", "%s must be an absolute http(s) URL."
                             % name)
        return url

    def _parse_resource(self, req, resource):
        m = re.fullmatch(r"/?(?:(me)|users(?:\('([^']+)'\)|/([^/]+)))"
                         r"(?:/mailfolders(?:\('([^']+)'\)|/([^/]+)))?/messages/?",
                         resource or "", re.I)
        if not m:
            raise GraphError(400, "InvalidRequest", "Resource '%s' is not supported by the "
                             "fake (mail messages of a user or of one of its folders)."
                             % resource)
        user_ref = "me" if m.group(1) else urllib.parse.unquote(m.group(2) or m.group(3))
        self._resolve_user(req, {"user": user_ref})
        folder_ref = m.group(4) or m.group(5)
        folder = None
        if folder_ref:
            folder = req.box.folder(urllib.parse.unquote(folder_ref))
            if folder is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not "
                                 "found in the store.")
        return req.box, folder.id if folder else None

    def _sub_create(self, req):
        spec = self._json_body(req)
        for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not spec.get(key):
                raise GraphError(400, "InvalidRequest", "%s is a required property for "
                                 "subscription creation." % key)
        kinds = [k.strip() for k in str(spec["changeType"]).split(",") if k.strip()]
        if not kinds or any(k not in ("created", "updated", "deleted") for k in kinds):
            raise GraphError(400, "InvalidRequest", "Invalid changeType '%s'."
                             % spec["changeType"])
        url = self._check_url(spec["notificationUrl"], "notificationUrl")
        lifecycle = spec.get("lifecycleNotificationUrl")
        if lifecycle is not None:
            lifecycle = self._check_url(lifecycle, "lifecycleNotificationUrl")
        state = spec.get("clientState")
        if state is not None and (not isinstance(state, str) or
                                  len(state) > self.max_client_state):
            raise GraphError(400, "InvalidRequest", "clientState must be a string of at most "
                             "%d characters." % self.max_client_state)
        with self.lock:
            box, folder_id = self._parse_resource(req, str(spec["resource"]))
            expires = self._expiry(spec["expirationDateTime"])
            live = [s for s in list(self.subscriptions.values())
                    if s.box is box and self._live(s.id)]
            if len(live) >= self.max_subscriptions_per_mailbox:
                raise GraphError(403, "ExtensionError", "The mailbox has reached its limit "
                                 "of %d subscriptions." % self.max_subscriptions_per_mailbox)
        # The validation handshake, outside the lock: the endpoint may be
        # slow, and nothing else waits for it.
        for target in [url] + ([lifecycle] if lifecycle else []):
            problem = self._validate(target)
            if problem:
                raise GraphError(400, "InvalidRequest", problem)
        with self.lock:
            sub = Subscription(_guid(), box, folder_id, str(spec["resource"]), kinds, url,
                               lifecycle, expires, state, req.immutable, req.auth["client"],
                               req.auth["user"] and self.users[req.auth["user"].lower()]
                               .object_id or _guid())
            self.subscriptions[sub.id] = sub
            if req.immutable:
                req.applied.append('IdType="ImmutableId"')
            return self._json(201, sub.json(self.tenant_id))

    def check_validation(self, url, token=None):
        """Send one validation request to `url` as subscriptions.create does
        (`token`, else validation_token, else Graph's form); returns None
        when the answer is right, else the error message Graph would give.
        Logged in push_log like the others."""
        return self._validate(url, token)

    def _validate(self, url, token=None):
        """POST the validation request (P§3 "Validation handshake"); returns
        None when the answer is right, else Graph's error message."""
        with self.lock:
            token = token or self.validation_token or (
                "Validation: Testing client application reachability for subscription "
                "Request-Id: " + _guid())
            injected = self._validation_timeouts > 0
            if injected:
                self._validation_timeouts -= 1
        target = url + ("&" if "?" in url else "?") + "validationToken=" + \
            _dotnet_urlencode(token)
        sent = time.time()
        status, body, latency, error, ctype = self._post(
            target, b"", "text/plain; charset=utf-8", self.validation_timeout)
        problem = None
        if injected or (error and "timed out" in error):
            problem = "Subscription validation request timed out."
        elif status != 200:
            problem = ("Subscription validation request failed. Notification endpoint must "
                       "respond with 200 OK to validation request.")
        elif not ctype.lower().startswith("text/plain"):
            problem = ("Subscription validation request failed. Response must be of type "
                       "text/plain.")
        elif body != token.encode("utf-8"):
            problem = ("Subscription validation request failed. Response must exactly match "
                       "validationToken query parameter.")
        self._log_push(url, "validation", status, latency, 1, [], error, sent=sent,
                       ok=problem is None, token=token)
        return problem

    def inject_validation_timeout(self, count=1):
        """The next `count` validation requests are sent but treated as if
        their answer came after the 10 s deadline."""
        with self.lock:
            self._validation_timeouts += count

    # ---- notification sender (P§3 "Notification payload", "Lifecycle")
    def _post(self, url, body, content_type, timeout):
        """POST and read the answer: (status, body, latency s, error,
        content type)."""
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
        start = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                answer = resp.read()
                return resp.status, answer, time.monotonic() - start, None, \
                    resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            answer = exc.read()
            return exc.code, answer, time.monotonic() - start, None, \
                exc.headers.get("Content-Type", "")
        except (OSError, ValueError) as exc:
            text = str(exc)
            if "timed out" in text.lower() or isinstance(exc, TimeoutError):
                text = "timed out: " + text
            return None, b"", time.monotonic() - start, text, ""

    def _log_push(self, url, kind, status, latency, count, sub_ids, error, sent=None,
                  **extra):
        with self.lock:
            entry = {"t": sent or time.time(), "url": url, "kind": kind, "status": status,
                     "latency": latency, "count": count, "subscriptions": sub_ids,
                     "error": error}
            entry.update(extra)
            self.push_log.append(entry)

    def _sub_or_raise(self, sid):
        sub = self.subscriptions.get(sid)
        if sub is None:
            raise KeyError("unknown subscription %r" % sid)
        return sub

    def change_item(self, sid, message_id, change_type="created", **overrides):
        """One change notification of subscription `sid` about `message_id`
        (a message id as the subscriber sees it); overrides replace fields
        (clientState=..., subscriptionId=... for forgeries)."""
        with self.lock:
            sub = self._sub_or_raise(sid)
            etag = None
            key = sub.box.ids.get(message_id)
            if key is not None and key in sub.box.messages:
                etag = sub.box.messages[key].etag()
            return self._change_item(sub, message_id, change_type, etag, overrides)

    def _change_item(self, sub, mid, change_type, etag, overrides=None):
        path = "Users/%s/Messages/%s" % (sub.box.object_id, mid)
        item = {"id": base64.b64encode(secrets.token_bytes(9)).decode().rstrip("="),
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": _iso7(sub.expires)[:23] + "Z",
                "changeType": change_type, "resource": path, "tenantId": self.tenant_id,
                "resourceData": {"@odata.type": "#Microsoft.Graph.Message",
                                 "@odata.id": path,
                                 "@odata.etag": etag or 'W/"%s"' % _b64id("CQAAABYAAAA", 12),
                                 "id": mid}}
        if sub.client_state is not None:
            item["clientState"] = sub.client_state
        item.update(overrides or {})
        return item

    def lifecycle_item(self, sid, event, **overrides):
        """One lifecycle notification (reauthorizationRequired,
        subscriptionRemoved, missed) of subscription `sid`."""
        with self.lock:
            return self._lifecycle_item(self._sub_or_raise(sid), event, overrides)

    def _lifecycle_item(self, sub, event, overrides=None):
        item = {"subscriptionId": sub.id,
                "subscriptionExpirationDateTime": _iso7(sub.expires),
                "tenantId": self.tenant_id, "lifecycleEvent": event}
        if sub.client_state is not None:
            item["clientState"] = sub.client_state
        item.update(overrides or {})
        return item

    def send_notifications(self, url, items, copies=1, kind="change"):
        """POST `{"value": items}` to `url` `copies` times, now; returns the
        (status, body, latency) of each POST."""
        body = json.dumps({"value": items}).encode()
        out = []
        for _ in range(copies):
            out.append(self._send_logged(url, body, kind, items))
        return out

    def _send_logged(self, url, body, kind, items):
        sent = time.time()
        status, answer, latency, error, _ = self._post(
            url, body, "application/json; charset=utf-8", self.notification_timeout)
        items = [i for i in items if isinstance(i, dict)]
        events = sorted({i.get("changeType") or i.get("lifecycleEvent") or "?" for i in items})
        messages = [(i.get("resourceData") or {}).get("id") for i in items
                    if isinstance(i.get("resourceData"), dict)]
        self._log_push(url, kind, status, latency, len(items),
                       sorted({i.get("subscriptionId") for i in items
                               if i.get("subscriptionId")}),
                       error, sent=sent, events=events, messages=messages)
        return status, answer, latency

    def post_raw(self, url, body, content_type="application/json; charset=utf-8"):
        """POST arbitrary bytes (malformed JSON, oversized bodies, forged
        notifications); returns (status, body, latency)."""
        sent = time.time()
        status, answer, latency, error, _ = self._post(url, body, content_type,
                                                       self.notification_timeout)
        self._log_push(url, "raw", status, latency, 0, [], error, sent=sent)
        return status, answer, latency

    def notify_change(self, sid, message_id, change_type="created", copies=1, **overrides):
        """Send one change notification of `sid` now (copies > 1: the same
        notification again, as Graph's retries do)."""
        item = self.change_item(sid, message_id, change_type, **overrides)
        with self.lock:
            url = self._sub_or_raise(sid).url
        return self.send_notifications(url, [item], copies)

    def send_lifecycle(self, sids, event, copies=1):
        """Send lifecycle event `event` for subscriptions `sids` (one id or
        a list), one POST per lifecycleNotificationUrl carrying all of its
        items; subscriptions without that URL get nothing (as in Graph)."""
        if isinstance(sids, str):
            sids = [sids]
        groups = collections.OrderedDict()
        with self.lock:
            for sid in sids:
                sub = self._sub_or_raise(sid)
                if sub.lifecycle_url:
                    groups.setdefault(sub.lifecycle_url, []).append(
                        self._lifecycle_item(sub, event))
        out = []
        for url, items in groups.items():
            out.extend(self.send_notifications(url, items, copies, kind="lifecycle"))
        return out

    def require_reauthorization(self, sid, pause=True):
        """Send reauthorizationRequired; with pause, changes to the
        subscription are dropped (not delivered, counted) until the client
        reauthorizes or renews it."""
        with self.lock:
            self._sub_or_raise(sid).paused = pause
        return self.send_lifecycle(sid, "reauthorizationRequired")

    def remove_subscription(self, sid, notify=True):
        """Graph drops the subscription (and says subscriptionRemoved)."""
        with self.lock:
            sub = self._sub_or_raise(sid)
            item = self._lifecycle_item(sub, "subscriptionRemoved")
            del self.subscriptions[sid]
        if notify and sub.lifecycle_url:
            return self.send_notifications(sub.lifecycle_url, [item], kind="lifecycle")
        return []

    def subscriptions_of(self, user=None):
        """Dict views of the live subscriptions (of one mailbox)."""
        with self.lock:
            box = self._box(user) if user else None
            return [self._sub_view(s) for s in list(self.subscriptions.values())
                    if (box is None or s.box is box) and self._live(s.id)]

    def subscription(self, sid):
        with self.lock:
            sub = self._live(sid)
            return self._sub_view(sub) if sub else None

    @staticmethod
    def _sub_view(sub):
        return {"id": sub.id, "user": sub.box.upn, "folder_id": sub.folder_id,
                "resource": sub.resource, "change_types": list(sub.change_types),
                "url": sub.url, "lifecycle_url": sub.lifecycle_url, "expires": sub.expires,
                "client_state": sub.client_state, "immutable": sub.immutable,
                "paused": sub.paused, "dropped": sub.dropped,
                "reauthorized": sub.reauthorized}

    def hold_notifications(self):
        """Queue automatic notifications until release_notifications():
        what piles up meanwhile leaves batched, one POST per URL."""
        with self.lock:
            self._held = True

    def release_notifications(self):
        with self.lock:
            self._held = False
        self._flush()

    def wait_notifications_idle(self, timeout=30.0):
        """Block until queued automatic notifications have been delivered."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self._outbox and not self._held or self._flush_timer or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("notifications still pending")
                self.cond.wait(min(left, 0.1))

    def _notify_change(self, box, msg, change_type, folder_id, ids=None, scope="both"):
        """Queue change notifications for the live subscriptions covering
        this change (called with the lock held)."""
        if not self.auto_notify:
            return
        rest, imm = ids or (msg.rest_id, msg.immutable_id)
        queued = False
        for sub in list(self.subscriptions.values()):
            if sub.box is not box or self._live(sub.id) is None:
                continue
            if sub.folder_id is None and scope == "folder":
                continue
            if sub.folder_id is not None and (scope == "mailbox" or
                                              sub.folder_id != folder_id):
                continue
            if change_type not in sub.change_types:
                continue
            if sub.paused:
                sub.dropped += 1
                continue
            item = self._change_item(sub, imm if sub.immutable else rest, change_type,
                                     msg.etag())
            self._outbox.setdefault(sub.url, []).append(item)
            queued = True
        if queued and not self._held and self._flush_timer is None:
            self._flush_timer = threading.Timer(self.batch_window, self._flush)
            self._flush_timer.daemon = True
            self._flush_timer.start()

    def _flush(self):
        with self.cond:
            self._flush_timer = None
            if self._held or self._server is None:
                self.cond.notify_all()
                return
            batches = []
            for url, items in self._outbox.items():
                step = max(1, self.max_notifications_per_post)
                for i in range(0, len(items), step):
                    batches.append((url, items[i:i + step]))
            self._outbox = collections.OrderedDict()
            self._sending += len(batches)
        for url, items in batches:
            threading.Thread(target=self._deliver, args=(url, items), daemon=True,
                             name="fake-graph-notify").start()

    def _deliver(self, url, items):
        """Deliver one batch like Graph: duplicates on demand, retries of a
        non-2xx answer or a failed connection."""
        try:
            body = json.dumps({"value": items}).encode()
            for _ in range(1 + max(0, self.duplicate_notifications)):
                for attempt in range(1 + max(0, self.notification_retries)):
                    if attempt:
                        time.sleep(self.notification_retry_delay)
                    status, _, _ = self._send_logged(url, body, "change", items)
                    if status is not None and 200 <= status < 300:
                        break
        finally:
            with self.cond:
                self._sending -= 1
                self.cond.notify_all()


def _no_segment(seg):
    return GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % seg)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _Handler(http.server.BaseHTTPRequestHandler):
    owner = None
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two send()s: with Nagle on, the body waits
    # for the client's delayed ACK (up to 40 ms) on every answer.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # quiet; the owner keeps a call log
        pass

    def _serve(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        # Repeated headers are one list (RFC 9110 5.3): a client may send
        # `Prefer: odata.maxpagesize=N` and `Prefer: IdType=..` apart.
        merged, names = {}, {}
        for key, value in self.headers.items():
            name = names.setdefault(key.lower(), key)
            merged[name] = merged[name] + ", " + value if name in merged else value
        try:
            status, headers, payload = self.owner.handle(self.command, self.path, merged, body)
        except Exception as exc:  # a bug in the fake: say so, as a 500
            traceback.print_exc()
            status, headers = 500, {"Content-Type": "application/json"}
            payload = json.dumps(GraphError(500, "UnknownError", "fake_graph bug: %r" % exc)
                                 .body(_guid(), time.time())).encode()
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

DEMO_MESSAGE = (b"From: Alice <alice@example.org>\r\nTo: %s\r\n"
                b"Subject: %s\r\nMessage-ID: <%s@example.org>\r\n"
                b"Date: Mon, 07 Dec 2026 01:00:00 +0000\r\n\r\nHello from the fake Graph.\r\n")


def write_secret(path, text):
    """Write a credential file the way the driver expects them: mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def main(argv=None):
    """Run a demo instance: one tenant, one app registration (application
    permission Mail.Read and Mail.ReadWrite) and one mailbox with a few
    messages and a child folder; the client secret and a delegated refresh
    token are written to --dir; with --every N a new Inbox message arrives
    every N seconds. Prints one JSON line with the config values."""
    ap = argparse.ArgumentParser(description="Local stand-in for Microsoft Graph mail "
                                 "(not Microsoft; for tests and demos)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True, help="where credential files are written")
    ap.add_argument("--user", default="demo@contoso.onmicrosoft.com")
    ap.add_argument("--every", type=float, default=0, help="deliver a message every N s")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    client_id, secret = _guid(), "demo~" + secrets.token_urlsafe(24)
    fake = FakeGraph(port=args.port).start()
    fake.add_client(client_id, secret, roles=("Mail.Read", "Mail.ReadWrite"))
    fake.add_user(args.user)
    fake.add_folder(args.user, "Projects", parent="inbox")
    token = fake.add_refresh_token(client_id, args.user,
                                   ("Mail.Read", "Mail.ReadWrite", "offline_access"))
    for i in range(3):
        fake.add_message(args.user, DEMO_MESSAGE % (args.user.encode(), b"demo %d" % i,
                                                    b"demo%d" % i))
    os.makedirs(args.dir, exist_ok=True)
    info = {"note": "LOCAL FAKE, not Microsoft", "tenant": fake.tenant_id,
            "client_id": client_id, "api_url": fake.api_url, "login_url": fake.login_url,
            "user": args.user,
            "client_secret_file": write_secret(os.path.join(args.dir, "client_secret"),
                                               secret + "\n"),
            "refresh_token_file": write_secret(os.path.join(args.dir, "refresh_token"),
                                               token + "\n")}
    print(json.dumps(info), flush=True)
    n = 3
    try:
        while True:
            time.sleep(args.every or 3600)
            if args.every:
                fake.add_message(args.user, DEMO_MESSAGE % (args.user.encode(), b"demo %d" % n,
                                                            b"demo%d" % n))
                n += 1
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

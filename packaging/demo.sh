#!/bin/sh
# The quick-start demo: installs build dependencies (Dovecot and openssl
# included), builds, starts a private Dovecot on 127.0.0.1 seeded with ~500
# sample messages (INBOX, Sent, Archive; its own test CA, nothing of the
# system's Dovecot is touched), and runs mailpulsed with the IMAP driver
# against it, with a private state directory (./mailpulse-demo). It shows
# the bootstrap and backfill progress, then the live event stream while a
# new message is APPENDed to the INBOX every few seconds and pushed back
# (IMAP IDLE/NOTIFY) as message.new.
#
# In the same daemon, gmail.so runs against a LOCAL STAND-IN for Google
# (tests/integration/fake_gmail.py on 127.0.0.1: Gmail API, OAuth, JWKS and
# Pub/Sub; no Google account, nothing leaves the machine): a watch, a Pub/Sub
# push subscription POSTing OIDC-signed notifications to the daemon's push
# listener on loopback (plaintext there), and a new Gmail message every few
# seconds that arrives as message.new. Its credentials are files under
# ./mailpulse-demo/gmail (mode 0600).
#
# And graph.so (Outlook, Microsoft 365) runs against a LOCAL STAND-IN for
# Microsoft Graph (tests/integration/fake_graph.py on 127.0.0.1: Graph mail
# API and the identity platform's token endpoint; no Microsoft account):
# `mailpulsectl graph-setup` checks it (token, mailbox, the validation
# round trip to the push listener, the change-notification subscriptions,
# a live test message), then the stand-in adds an Outlook message every few
# seconds and POSTs a change notification for it to the daemon's push
# listener, which syncs it as message.new. Its credentials are files under
# ./mailpulse-demo/outlook (mode 0600).
#
# Usage: packaging/demo.sh                    (Ctrl-C stops it)
#        DEMO_SECONDS=30 packaging/demo.sh    (stops by itself)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh packaging/deps.sh build
jobs=$(nproc 2>/dev/null || echo 2)
echo "building (build/) ..."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs" --target mailpulsed mailpulsectl imap gmail graph >/dev/null

demo=${MAILPULSE_DEMO_DIR:-$top/mailpulse-demo}
rm -rf "$demo"
mkdir -p "$demo/state" "$demo/plugins.d"
chmod 700 "$demo"
# Dovecot's mail belongs to an unprivileged user when we run as root, so it
# lives where that user can reach it (not under a possibly private $HOME).
dv=$(mktemp -d /tmp/mailpulse-demo-dovecot.XXXXXX)
export PYTHONPATH="$top/tests/integration${PYTHONPATH:+:$PYTHONPATH}"
export DEMO_DV="$dv"

dovecot_pid=""
daemon_pid=""
follow_pid=""
fake_pid=""
graph_pid=""
cleanup() {
  trap - EXIT INT TERM
  [ -n "$follow_pid" ] && kill "$follow_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && wait "$daemon_pid" 2>/dev/null || true
  if [ -n "$fake_pid" ]; then
    kill "$fake_pid" 2>/dev/null || true
    wait "$fake_pid" 2>/dev/null || true
    echo "Local Gmail stand-in stopped."
  fi
  if [ -n "$graph_pid" ]; then
    kill "$graph_pid" 2>/dev/null || true
    wait "$graph_pid" 2>/dev/null || true
    echo "Local Microsoft Graph stand-in stopped."
  fi
  if [ -n "$dovecot_pid" ]; then
    kill "$dovecot_pid" 2>/dev/null || true
    wait "$dovecot_pid" 2>/dev/null || true
    echo "Dovecot stopped."
  fi
  rm -rf "$dv"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== seeding a private Dovecot with sample mail"
python3 - <<'PY'
import json, os, time
import dovecot
dv = os.environ["DEMO_DV"]
ca = dovecot.TestCA(directory=os.path.join(dv, "ca"), name="mailpulse demo CA")
server = dovecot.Dovecot(directory=dv, ca=ca, users={"alice": "demo-password"},
                         folders=("INBOX", "Sent", "Archive"), start=False)
now = int(time.time())
counts = {"INBOX": 300, "Sent": 120, "Archive": 80}
for i, (folder, n) in enumerate(counts.items()):
    # spread over the last two months, newest in INBOX
    server.generate(folder, n, start_date=now - 60 * 86400 + i * 3600, step=(58 * 86400) // n,
                    body_size=800, seed=i + 1)
with open(os.path.join(dv, "demo.json"), "w") as f:
    json.dump({"conf": server.conf, "imap_port": server.imap_port,
               "imaps_port": server.imaps_port, "ca": ca.pem, "log": server.log_path}, f)
print("   %d messages in %s" % (sum(counts.values()),
                               ", ".join("%s %d" % kv for kv in counts.items())))
PY
info() { python3 -c "import json,sys; print(json.load(open('$dv/demo.json'))[sys.argv[1]])" "$1"; }
imaps_port=$(info imaps_port)
imap_port=$(info imap_port)
/usr/sbin/dovecot -F -c "$(info conf)" >"$dv/dovecot.stderr" 2>&1 &
dovecot_pid=$!
i=0
until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$imaps_port" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 "$dovecot_pid" 2>/dev/null; then
    echo "Dovecot did not start:" >&2
    cat "$dv/dovecot.stderr" "$(info log)" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done
echo "   Dovecot (pid $dovecot_pid) on localhost:$imaps_port (IMAPS, test CA $(info ca))"
echo

# Gmail: the stand-in needs the push URL before it starts (its Pub/Sub push
# subscription), so the push listener's loopback port is chosen first.
echo "== starting a LOCAL STAND-IN for Google (NOT Google: fake Gmail API, OAuth, JWKS, Pub/Sub)"
push_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
push_url="http://127.0.0.1:$push_port/push/gmail"
mkdir -p "$demo/gmail"
chmod 700 "$demo/gmail"
python3 "$top/tests/integration/fake_gmail.py" --dir "$demo/gmail" --push-url "$push_url" \
  --every 5 >"$dv/fake_gmail.json" 2>"$dv/fake_gmail.stderr" &
fake_pid=$!
i=0
until [ -s "$dv/fake_gmail.json" ]; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 "$fake_pid" 2>/dev/null; then
    echo "the local Gmail stand-in did not start:" >&2
    cat "$dv/fake_gmail.stderr" >&2
    exit 1
  fi
  sleep 0.1
done
# One python3 run turns the stand-in's JSON line into the instance file
# (JSON strings are YAML scalars): every URL points at it instead of Google.
python3 - "$dv/fake_gmail.json" "$demo/plugins.d/gmail.yaml" <<'PY'
import json, sys
info = json.loads(open(sys.argv[1]).readline())
q = json.dumps
instance = ["driver: gmail"]
for key in ("client_id", "client_secret_file", "topic", "push_audience",
            "push_service_account", "api_url", "token_url", "pubsub_url", "certs_url"):
    instance.append("%s: %s" % (key, q(info[key])))
instance += ["push: pubsub-push", "accounts:", "  - id: gmail-demo",
             "    email: %s" % q(info["email"]),
             "    refresh_token_file: %s" % q(info["refresh_token_file"])]
with open(sys.argv[2], "w") as f:
    f.write("# gmail.so against the LOCAL STAND-IN for Google (fake_gmail.py)\n")
    f.write("\n".join(instance) + "\n")
print("   fake_gmail.py on %s (%s): 3 messages in %s's INBOX, one more every 5 s;"
      % (info["api_url"], info["note"], info["email"]))
PY
echo "   Pub/Sub pushes to $push_url with an OIDC token it signs"
echo "   credentials (mode 0600): $demo/gmail/"
echo

# Outlook: graph.so against the Graph stand-in; its change notifications go
# to the same push listener, path /push/outlook (the instance's name).
echo "== starting a LOCAL STAND-IN for Microsoft Graph (NOT Microsoft: fake Graph mail API, identity platform)"
mkdir -p "$demo/outlook"
chmod 700 "$demo/outlook"
python3 "$top/tests/integration/fake_graph.py" --dir "$demo/outlook" --every 6 \
  >"$dv/fake_graph.json" 2>"$dv/fake_graph.stderr" &
graph_pid=$!
i=0
until [ -s "$dv/fake_graph.json" ]; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 "$graph_pid" 2>/dev/null; then
    echo "the local Microsoft Graph stand-in did not start:" >&2
    cat "$dv/fake_graph.stderr" >&2
    exit 1
  fi
  sleep 0.1
done
python3 - "$dv/fake_graph.json" "$demo/plugins.d/outlook.yaml" "http://127.0.0.1:$push_port" <<'PY'
import json, sys
info = json.loads(open(sys.argv[1]).readline())
q = json.dumps
instance = ["driver: graph", "auth: app"]
for key in ("tenant", "client_id", "client_secret_file", "api_url", "login_url"):
    instance.append("%s: %s" % (key, q(info[key])))
instance += ["public_url: %s" % q(sys.argv[3]),
             "accounts:", "  - id: outlook-demo", "    user: %s" % q(info["user"])]
with open(sys.argv[2], "w") as f:
    f.write("# graph.so against the LOCAL STAND-IN for Microsoft Graph (fake_graph.py)\n")
    f.write("\n".join(instance) + "\n")
print("   fake_graph.py on %s (%s): 3 messages in %s's Inbox, one more every 6 s"
      % (info["api_url"], info["note"], info["user"]))
PY
echo "   change notifications to http://127.0.0.1:$push_port/push/outlook (validation handshake first)"
echo "   credentials (mode 0600): $demo/outlook/"
echo

(umask 077 && printf 'demo-password' >"$demo/alice.password")
cat >"$demo/mailpulsed.conf" <<CONF
state_dir = "$demo/state";
driver_dir = "$top/build/drivers";
plugins_dir = "$demo/plugins.d";
http = { listen = "127.0.0.1:0"; };
# Gmail's Pub/Sub pushes and Graph's change notifications (from the local
# stand-ins): plaintext on loopback.
push = { listen = "127.0.0.1:$push_port"; tls = false; };
backfill = { bootstrap_max = 100; batch_size = 50; };
schedule = { backfill_interval = 4; };
CONF
cat >"$demo/plugins.d/demo.yaml" <<YAML
driver: imap
accounts:
  - id: demo
    host: localhost
    port: $imaps_port
    tls: implicit
    ca_file: $(info ca)
    username: alice
    password_file: $demo/alice.password
    folders: [INBOX, Sent, Archive]
YAML

daemon=$top/build/core/daemon/mailpulsed
ctl="$top/build/core/cli/mailpulsectl -s $demo/state/mailpulsed.sock"
"$daemon" -c "$demo/mailpulsed.conf" 2>"$demo/mailpulsed.log" &
daemon_pid=$!
i=0
until [ -S "$demo/state/mailpulsed.sock" ] && [ -f "$demo/state/http.addr" ]; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "mailpulsed did not start; its log:" >&2
    cat "$demo/mailpulsed.log" >&2
    exit 1
  fi
  sleep 0.1
done
addr=$(cat "$demo/state/http.addr")
echo "mailpulsed is running: http://$addr (token in $demo/state/api.token), socket $demo/state/mailpulsed.sock"
echo "log: $demo/mailpulsed.log"
echo

# The folder table of `mailpulsectl account` (the full view once).
folders() { $ctl account demo | awk '/^NAME/ { p = 1 } p' || true; }
# The Gmail account in two lines: what the bootstrap loaded and what push
# brought since (events), messages per folder now, push state and the watch
# (mailpulsectl gmail-status: the real expiry at Gmail is in its mode text,
# the host's renewal date is "watch expires").
gmail_summary() {
  loaded=$($ctl events --after 0 --types message.synced --accounts gmail-demo 2>/dev/null | wc -l)
  pushed=$($ctl events --after 0 --types message.new --accounts gmail-demo 2>/dev/null | wc -l)
  counts=$($ctl account gmail-demo 2>/dev/null |
    awk '/^NAME/ { p = 1; next } p && NF >= 3 { printf "%s%s %s", s, $1, $3; s = ", " }')
  st=$($ctl gmail-status gmail-demo 2>/dev/null || true)
  mode=$(printf '%s\n' "$st" | sed -n 's/^mode: *//p')
  renew=$(printf '%s\n' "$st" | sed -n 's/^watch expires: *//p')
  watch_end=$(printf '%s\n' "$mode" | sed -n 's/.*watch until \(.*UTC\).*/\1/p')
  case "$mode" in
    *"push delivering"*) live="push LIVE (pubsub-push, OIDC-verified)" ;;
    *) live="push not live: $mode" ;;
  esac
  echo "   gmail-demo [local stand-in, not Google]: bootstrap loaded $loaded, $pushed new since by push;" \
    "stored: ${counts:-no folders yet}"
  echo "   $live; watch until ${watch_end:--} at Gmail, re-watched before ${renew:--}"
}

# The Outlook account in two lines: bootstrap and push counts, folders, and
# the subscriptions (mailpulsectl account lists each with its expiry).
outlook_summary() {
  loaded=$($ctl events --after 0 --types message.synced --accounts outlook-demo 2>/dev/null | wc -l)
  pushed=$($ctl events --after 0 --types message.new --accounts outlook-demo 2>/dev/null | wc -l)
  acct=$($ctl account outlook-demo 2>/dev/null || true)
  inbox=$(printf '%s\n' "$acct" | awk '/^NAME/ { p = 1; next } p && $1 == "Inbox" { print $3 }')
  push=$(printf '%s\n' "$acct" | sed -n 's/^push: *//p')
  echo "   outlook-demo [local stand-in, not Microsoft]: bootstrap loaded $loaded, $pushed new since;" \
    "Inbox holds ${inbox:-0}"
  echo "   push ${push:--}"
}

echo "== bootstrap: the newest 100 messages of each folder at once, history in the background"
sleep 2
$ctl account demo || true
for round in 1 2 3; do
  sleep 4
  echo
  echo "-- $(date +%H:%M:%S) backfill progress"
  folders
done
echo
echo "== Gmail against the local stand-in: bootstrap, watch, Pub/Sub push"
gmail_summary
echo

echo "== Outlook against the local stand-in for Microsoft Graph: mailpulsectl graph-setup outlook-demo"
$ctl graph-setup outlook-demo --timeout 30 || true
outlook_summary
echo

echo "== live events (new mail is APPENDed over IMAP; IDLE/NOTIFY pushes it to mailpulsed;"
echo "   the Gmail stand-in adds a message every 5 s and Pub/Sub-pushes it: account gmail-demo;"
echo "   the Graph stand-in adds one every 6 s and notifies /push/outlook: account outlook-demo)"
$ctl events --follow --types message.new,message.updated,message.deleted,folder.reset,account.status &
follow_pid=$!

n=0
start=$(date +%s)
while :; do
  sleep 4
  n=$((n + 1))
  python3 - "$imap_port" "$n" <<'PY'
import imaplib, sys, time
import dovecot
port, n = int(sys.argv[1]), int(sys.argv[2])
msg = dovecot.make_message(1000 + n, int(time.time()), tag="demo-live",
                           subject="Live message %d" % n, sender="Grace Hopper")
conn = imaplib.IMAP4("127.0.0.1", port, timeout=10)
conn.login("alice", "demo-password")
uid = dovecot.Dovecot.append_on(conn, "INBOX", msg)
conn.logout()
print("%s  APPEND 'Live message %d' -> INBOX uid %s" % (time.strftime("%H:%M:%S"), n, uid),
      flush=True)
PY
  now=$(date +%s)
  if [ -n "${DEMO_SECONDS:-}" ] && [ $((now - start)) -ge "$DEMO_SECONDS" ]; then
    sleep 2
    # The live view ends here, so the final state is not interleaved with it.
    kill "$follow_pid" 2>/dev/null || true
    wait "$follow_pid" 2>/dev/null || true
    follow_pid=""
    echo
    echo "-- $(date +%H:%M:%S) final state"
    folders
    gmail_summary
    outlook_summary
    break
  fi
done

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
# Usage: packaging/demo.sh                    (Ctrl-C stops it)
#        DEMO_SECONDS=30 packaging/demo.sh    (stops by itself)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh packaging/deps.sh build
jobs=$(nproc 2>/dev/null || echo 2)
echo "building (build/) ..."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs" --target mailpulsed mailpulsectl imap >/dev/null

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
cleanup() {
  trap - EXIT INT TERM
  [ -n "$follow_pid" ] && kill "$follow_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && wait "$daemon_pid" 2>/dev/null || true
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

(umask 077 && printf 'demo-password' >"$demo/alice.password")
cat >"$demo/mailpulsed.conf" <<CONF
state_dir = "$demo/state";
driver_dir = "$top/build/drivers";
plugins_dir = "$demo/plugins.d";
http = { listen = "127.0.0.1:0"; };
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

echo "== live events (new mail is APPENDed over IMAP; IDLE/NOTIFY pushes it to mailpulsed)"
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
    echo
    echo "-- $(date +%H:%M:%S) final state"
    folders
    break
  fi
done

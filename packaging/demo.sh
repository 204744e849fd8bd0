#!/bin/sh
# The quick-start demo: installs build dependencies, builds, and runs
# mailpulsed on the embedded defaults with a private state directory and a
# simulated mailbox (the fixture driver: a provider whose mail is an
# operation log), so it needs no account of your own. It shows the
# bootstrap and backfill progress, then the live event stream while new
# mail "arrives" through a signed webhook push every few seconds.
#
# Usage: packaging/demo.sh            (Ctrl-C stops it)
#        DEMO_SECONDS=30 packaging/demo.sh   (stops by itself)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh packaging/deps.sh build
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs" --target mailpulsed mailpulsectl fixture >/dev/null

demo=${MAILPULSE_DEMO_DIR:-$top/mailpulse-demo}
rm -rf "$demo"
mkdir -p "$demo/state" "$demo/plugins.d"
chmod 700 "$demo"
secret="$demo/webhook.secret"
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret")

# Only what differs from the embedded defaults: private paths and a free port.
cat >"$demo/mailpulsed.conf" <<CONF
state_dir = "$demo/state";
driver_dir = "$top/build/tests/drivers";
plugins_dir = "$demo/plugins.d";
http = { listen = "127.0.0.1:0"; };
backfill = { bootstrap_max = 300; batch_size = 200; };
schedule = { backfill_interval = 5; };
CONF
cat >"$demo/plugins.d/demo.yaml" <<YAML
driver: fixture
webhook_secret_file: $secret
accounts:
  - id: demo
    mailbox: $demo/mailbox.log
    generate: 1500
    folders: [INBOX, Archive]
YAML

daemon=$top/build/core/daemon/mailpulsed
ctl="$top/build/core/cli/mailpulsectl -s $demo/state/mailpulsed.sock"
"$daemon" -c "$demo/mailpulsed.conf" 2>"$demo/mailpulsed.log" &
daemon_pid=$!
follow_pid=""
cleanup() {
  [ -n "$follow_pid" ] && kill "$follow_pid" 2>/dev/null || true
  kill "$daemon_pid" 2>/dev/null || true
  wait "$daemon_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

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

echo "== bootstrap: the newest 300 messages of each folder at once, history in the background"
for round in 1 2 3; do
  sleep 2
  $ctl account demo || true
  echo
done

echo "== live events (message.new arrives through a signed webhook push)"
$ctl events --follow --types message.new,message.updated,message.deleted,folder.reset,account.status &
follow_pid=$!

# New mail "arrives" at the simulated provider, which then pushes a signed
# notification to /push/demo: the push is only a hint that triggers the same
# delta sync the poller runs.
n=0
start=$(date +%s)
while :; do
  sleep 3
  n=$((n + 1))
  now=$(date +%s)
  printf 'add\tINBOX\tdemo-live-%d\t%d\t\tLive message %d\n' "$n" "$now" "$n" >>"$demo/mailbox.log"
  python3 - "$addr" "$secret" <<'PY'
import hashlib, hmac, sys, urllib.request
addr, secret_file = sys.argv[1], sys.argv[2]
secret = open(secret_file, "rb").read().strip()
body = b'{"account":"demo","folder":"INBOX"}'
sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
req = urllib.request.Request("http://%s/push/demo" % addr, data=body, method="POST",
                             headers={"Content-Type": "application/json",
                                      "X-Fixture-Signature": sig})
urllib.request.urlopen(req, timeout=5).read()
PY
  if [ -n "${DEMO_SECONDS:-}" ] && [ $((now - start)) -ge "$DEMO_SECONDS" ]; then
    sleep 2
    echo
    $ctl account demo
    break
  fi
done

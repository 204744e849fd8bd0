#!/bin/sh
# Install the Debian 12 packages mailpulse needs to build, test and demo.
# Idempotent: installs only what is missing. Needs root (or sudo).
# Usage: packaging/deps.sh [build|test]
#   build: compilers and libraries (libsystemd-dev: sd_notify and the
#          watchdog; scdoc: the man pages), plus what the demo's local
#          servers need: Dovecot and openssl (private IMAP server),
#          python3-cryptography (RS256 keys of tests/integration/fake_gmail.py,
#          the stand-in for Google), libpq-dev (the PostgreSQL store),
#          libnats-dev (the NATS C client of the event bus) and
#          nats-server (the bus's private test server and the demo's);
#          test adds isync (mbsync), clang, sqlite3 and postgresql-15 (the
#          private server of the PostgreSQL store's tests)
set -eu
build_pkgs="build-essential cmake pkg-config libevent-dev libcurl4-openssl-dev
  libssl-dev libconfig-dev libyaml-dev libsqlite3-dev libpq-dev libjansson-dev
  libcmocka-dev libsystemd-dev scdoc python3 ca-certificates dovecot-imapd openssl
  python3-cryptography libnats-dev nats-server"
test_pkgs="$build_pkgs clang libclang-rt-14-dev llvm binutils isync sqlite3
  postgresql-15"
case "${1:-build}" in
  build) want=$build_pkgs ;;
  test) want=$test_pkgs ;;
  *) echo "usage: $0 [build|test]" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps.sh: need root to install:$missing" >&2; exit 1; }
  SUDO=sudo
fi
echo "installing:$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The packaged Dovecot service is not ours: tests start private instances.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q dovecot 2>/dev/null; then
  $SUDO systemctl disable --now dovecot >/dev/null 2>&1 || true
fi

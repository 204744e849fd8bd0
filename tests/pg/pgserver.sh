#!/bin/sh
# A private PostgreSQL for tests: start DIR | stop DIR | url DIR.
# The server listens on a Unix socket in DIR only (no TCP, so parallel runs
# never collide on a port), trusts local connections, skips fsync (tests
# only: a crash of the machine may corrupt it), and runs as an unprivileged
# user: initdb refuses root, so as root it runs as "postgres" (the Debian
# package's user) or "nobody". `url` prints the libpq connection string.
set -eu
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|url DIR" >&2; exit 2; }
bin=${MP_PG_BINDIR:-}
if [ -z "$bin" ]; then
  for v in 17 16 15; do
    [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && { bin=/usr/lib/postgresql/$v/bin; break; }
  done
fi
[ -n "$bin" ] || { echo "pgserver: no PostgreSQL server binaries (apt-get install postgresql-15)" >&2; exit 1; }
port=5432
as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    u=postgres
    id "$u" >/dev/null 2>&1 || u=nobody
    chown -R "$u" "$dir"
    runuser -u "$u" -- "$@"
  else
    "$@"
  fi
}
case "$cmd" in
  start)
    [ -f "$dir/data/postmaster.pid" ] && as_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 755 "$dir"
    as_user "$bin/initdb" -D "$dir/data" -A trust -U mp --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -o \
      "-k $dir -p $port -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null || { cat "$dir/log" >&2; exit 1; }
    as_user "$bin/createdb" -h "$dir" -p "$port" -U mp mp
    echo "pgserver: running in $dir"
    ;;
  stop)
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  url)
    echo "host=$dir port=$port user=mp dbname=mp"
    ;;
  *) echo "usage: $0 start|stop|url DIR" >&2; exit 2 ;;
esac

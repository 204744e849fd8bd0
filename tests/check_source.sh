#!/bin/sh
# Source rules no compiler flag enforces (see ../shared/STYLE.md): banned
# unbounded or unchecked libc calls, C++ comments, drivers that reach
# into core headers, and core/webhook or core/bus reaching into core/daemon. Prints offending lines; exits 1 if any.
set -u
top=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 2
status=0
files=$(find core plugins sdk tests/drivers tests/unit tests/fuzz tests/sdk -name '*.[ch]' 2>/dev/null)
banned='\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll|strtok|tmpnam|mktemp)[[:space:]]*\('
if out=$(grep -nE "$banned" $files | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/\*|\*)'); then
  echo "banned functions (use snprintf, mpu_strlcpy, mpu_parse_i64, strtok_r, mkstemp):"
  echo "$out"; status=1
fi
if out=$(grep -nE '^[[:space:]]*//|[;{)][[:space:]]*//' $files | grep -v 'http://\|https://'); then
  echo "C++ comments (use /* */):"; echo "$out"; status=1
fi
if out=$(grep -rnE '#include[[:space:]]*[<"](\.\./)*(core/|config/|store/|daemon/|host/|sched/|http/|loader/|util/)' plugins sdk 2>/dev/null); then
  echo "drivers and the SDK may include only <mailpulse/*.h>:"; echo "$out"; status=1
fi
# Outbound webhooks get what they use passed in by the daemon (mpw_start);
# the daemon depends on them, never the other way round.
if out=$(grep -rnE '#include[[:space:]]*[<"](\.\./)*(core/)?daemon/' core/webhook 2>/dev/null); then
  echo "core/webhook may not include core/daemon headers (pass what it needs to mpw_start):"
  echo "$out"; status=1
fi
# The bus relay likewise gets what it uses from mpb_start, and libnats
# stays behind it (core/bus is the one module that names NATS).
if out=$(grep -rnE '#include[[:space:]]*[<"](\.\./)*(core/)?daemon/' core/bus 2>/dev/null); then
  echo "core/bus may not include core/daemon headers (pass what it needs to mpb_start):"
  echo "$out"; status=1
fi
if out=$(grep -rnE '#include[[:space:]]*<nats/' core plugins sdk 2>/dev/null | grep -v '^core/bus/'); then
  echo "only core/bus includes <nats/*.h>:"; echo "$out"; status=1
fi
# The API's connection tracker needs evhttp's single close-callback slot;
# everything else shares it through mph_conn_set_closecb().
if out=$(grep -nE '\bevhttp_connection_set_closecb[[:space:]]*\(' $files | grep -v '^core/http/conn\.c:'); then
  echo "use mph_conn_set_closecb (core/http/conn.c owns evhttp's close callback):"; echo "$out"; status=1
fi
# core/host is a layer the daemon calls through host/host.h: its internals
# stay inside it, and it includes nothing from the daemon above it.
if out=$(grep -nE '#include[[:space:]]*"host/host_private\.h"' $files | grep -vE '^(core/host/|tests/unit/)'); then
  echo "host/host_private.h is internal to core/host (use host/host.h):"; echo "$out"; status=1
fi
if out=$(grep -nE '#include[[:space:]]*"daemon/' core/host/*.[ch] 2>/dev/null); then
  echo "core/host must not include daemon headers (it gets an mphost_env):"; echo "$out"; status=1
fi
# The store's API (store.h, pool.h) names no database: SQLite is the
# backend in core/store/sqlite/ and nothing else in the daemon, its tools or
# the drivers reaches it (tests and the fault-injection shim may).
if out=$(grep -rnE '#include[[:space:]]*[<"]sqlite3\.h[>"]' core plugins sdk 2>/dev/null | grep -v '^core/store/sqlite/'); then
  echo "only core/store/sqlite/ includes <sqlite3.h> (use store/store.h, store/pool.h):"; echo "$out"; status=1
fi
if out=$(grep -rnE '#include[[:space:]]*"store/(sqlite/|store-shared\.h|backend\.h)' core plugins sdk 2>/dev/null | grep -v '^core/store/'); then
  echo "the store's private headers are for core/store only:"; echo "$out"; status=1
fi
[ $status -eq 0 ] && echo "source check: 1 passed, 0 failed" || echo "source check: 0 passed, 1 failed"
exit $status

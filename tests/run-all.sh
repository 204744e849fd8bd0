#!/bin/sh
# The whole test suite, as CI runs it: installs what it needs (apt-get),
# then four passes over every test:
#   1. build/        -Werror release build, all ctest labels
#   2. build-asan/   AddressSanitizer + UBSan build, all tests, any report fails
#   3. build-tsan/   ThreadSanitizer build: unit tests and the integration
#                    tests that exercise threads; any report fails
#   4. build-fuzz/   clang libFuzzer targets, each run for a bounded time
#   5. build-debs/   Debian packages from a clean export, lintian, then (as
#                    root) installed, run, built against and purged
#                    (tests/packaging/pass.sh; skipped without dpkg/apt-get)
# Usage: tests/run-all.sh [--quick | --packages]
#   --quick: pass 1 only; --packages: pass 5 only
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh packaging/deps.sh test
# deps.sh installed PostgreSQL: its tests (unit.test_store.pg,
# integration.test_pg_store) must run, not skip.
export MP_REQUIRE_PG=1
if [ "${1:-}" = "--packages" ]; then
  echo "== pass 5: Debian packages"
  exec sh tests/packaging/pass.sh "$top/build-debs"
fi
jobs=$(nproc 2>/dev/null || echo 2)
export CTEST_OUTPUT_ON_FAILURE=1

echo "== pass 1: release build, all tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMP_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build -j "$jobs" --timeout 600 -LE fuzz

[ "${1:-}" = "--quick" ] && exit 0

echo "== pass 2: ASan + UBSan build, all tests"
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1"
# Debian 12's libconfig 1.5 leaks a buffer on some syntax errors (fixed in
# 1.7.3); nothing else is suppressed.
export LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMP_SANITIZE=ON -DMP_WERROR=ON >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan -j "$jobs" --timeout 900 -LE fuzz
unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS

echo "== pass 3: ThreadSanitizer build, unit tests and threaded integration tests"
# halt_on_error: the first report ends the process (a test binary fails; the
# daemon dies and mptest reports "WARNING: ThreadSanitizer" from its log).
# libevent, SQLite, libcurl and OpenSSL are not instrumented: their own
# locking is seen through the intercepted pthread calls; tsan.supp holds
# only third-party internals, each with its reason.
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$top/tests/tsan.supp"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DMP_TSAN=ON -DMP_WERROR=ON >/dev/null
cmake --build build-tsan -j "$jobs"
# Integration tests with worker threads, the checkpointer, write-behind
# ingest, push connect threads (IMAP IDLE against Dovecot), webhook
# delivery, the NATS bus relay, SIGKILL recovery and the per-account fetch queue: about 3
# minutes of tests on 2 cores (test_imap_resume, 90 s alone, is left out).
ctest --test-dir build-tsan -j "$jobs" --timeout 900 -L unit
ctest --test-dir build-tsan -j "$jobs" --timeout 900 -R \
  'integration\.test_(basic_sync|coalescing|slow_provider|cache|reload|failures|crash_consistency|imap_sync|imap_idle_folders|push_safety|sse_resume|webhooks|bus_nats)$'
unset TSAN_OPTIONS

echo "== pass 4: fuzz targets (bounded time each)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DMP_FUZZ=ON -DMP_WERROR=ON >/dev/null
cmake --build build-fuzz -j "$jobs"
ctest --test-dir build-fuzz -L fuzz --timeout 300

echo "== pass 5: Debian packages (build, lintian, install, run, purge)"
sh tests/packaging/pass.sh "$top/build-debs"
echo "== all passes green"

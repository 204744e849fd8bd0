#!/bin/sh
# The packaging pass of tests/run-all.sh: build the Debian packages from a
# clean export and lint them (packaging/build-debs.sh), then, as root,
# install them, run and use the installed daemon, driver, client and SDK,
# and purge them (tests/packaging/installed.py).
#
# Skipped, with a message, where Debian packages cannot be built at all (no
# dpkg/apt-get). Without root the packages are built and linted (given the
# build dependencies), and only the install test is skipped: it installs
# and purges packages system-wide.
# Usage: tests/packaging/pass.sh [DEBS_DIR]   (default ./build-debs)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$top/build-debs}

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "== packaging pass SKIPPED: not a Debian system (no dpkg or apt-get)"
    exit 0
fi
start=$(date +%s)
sh "$top/packaging/build-debs.sh" "$out"
if [ "$(id -u)" -ne 0 ]; then
    echo "== packaging install test SKIPPED: needs root (installs and purges packages)"
    exit 0
fi
echo "== install, run, build a driver against, purge"
python3 "$top/tests/packaging/installed.py" "$out"
echo "== packaging pass took $(( $(date +%s) - start )) s"

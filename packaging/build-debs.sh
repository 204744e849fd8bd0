#!/bin/sh
# Build mailpulse's Debian packages and check them with lintian.
#
# The build runs on a clean export of the source tree: the files git tracks,
# as they are in the working tree (uncommitted edits included, build
# directories and other untracked files never), copied to a scratch
# directory with packaging/debian as its debian/. Then
# `dpkg-buildpackage -us -uc -b` (binary packages only, unsigned) and
# `lintian` on the result: any error or warning fails the script; the
# overrides in packaging/debian/*.lintian-overrides each carry their reason.
#
# Run as root, it first installs the build dependencies that are missing
# (apt-get build-dep on the exported tree's debian/control) and lintian.
#
# Usage: packaging/build-debs.sh [OUTDIR]
#   OUTDIR (default ./build-debs) receives the .deb files, the .buildinfo,
#   the .changes, build.log and lintian.txt. Earlier packages there are
#   removed first.
# Environment: MP_JOBS (default: nproc) parallel build jobs.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build-debs}
jobs=${MP_JOBS:-$(nproc 2>/dev/null || echo 2)}

die() {
    echo "build-debs: $*" >&2
    exit 1
}

command -v dpkg-buildpackage >/dev/null 2>&1 || [ "$(id -u)" -eq 0 ] ||
    die "dpkg-buildpackage not found (apt-get install dpkg-dev debhelper lintian)"

work=$(mktemp -d "${TMPDIR:-/tmp}/mailpulse-debs.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/mailpulse

echo "== export the tracked files of $top"
mkdir "$src"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked paths deleted in the working tree are skipped (their deletion
    # is part of the tree being built).
    (cd "$top" && git ls-files -z --cached) |
        (cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
        >"$work/files"
    tar -C "$top" -c -f "$work/src.tar" --no-recursion --null -T "$work/files"
else
    # A release tarball: everything but build directories.
    tar -C "$top" -c -f "$work/src.tar" --exclude='./build*' --exclude='./_build*' \
        --exclude=./.git .
fi
tar -C "$src" -x -f "$work/src.tar"
[ -f "$src/packaging/debian/control" ] || die "packaging/debian/control is not in the export"
# dpkg-buildpackage wants debian/ at the top; a copy, never a link into the
# worktree.
cp -a "$src/packaging/debian" "$src/debian"

if [ "$(id -u)" -eq 0 ]; then
    echo "== build dependencies (apt-get build-dep)"
    export DEBIAN_FRONTEND=noninteractive
    if ! (cd "$src" && dpkg-checkbuilddeps) >/dev/null 2>&1 ||
       ! command -v lintian >/dev/null 2>&1; then
        apt-get update -qq
        apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends dpkg-dev lintian >/dev/null
        apt-get build-dep -y -qq -o DPkg::Lock::Timeout=300 "$src" >/dev/null
    fi
fi

echo "== dpkg-buildpackage -us -uc -b (log: $out/build.log)"
mkdir -p "$out"
rm -f "$out"/*.deb "$out"/*.buildinfo "$out"/*.changes "$out"/build.log "$out"/lintian.txt
start=$(date +%s)
if ! (cd "$src" && dpkg-buildpackage -us -uc -b -J"$jobs") >"$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log" >&2
    die "dpkg-buildpackage failed (full log: $out/build.log)"
fi
echo "   built in $(( $(date +%s) - start )) s"
mv "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$out"/
changes=$(ls "$out"/*.changes)

echo "== lintian $(basename "$changes")"
# --fail-on error,warning: any error or warning fails; info and pedantic
# tags are shown too, and overridden tags with their reasons (the comment
# above each override).
# As root, lintian runs as nobody (it warns about root privileges) when
# nobody can read the packages (not so under a 0700 home directory).
as_user=""
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1 &&
   runuser -u nobody -- sh -c 'for f; do [ -r "$f" ] || exit 1; done' sh "$out"/*.deb "$changes"; then
    as_user="runuser -u nobody --"
fi
status=0
$as_user env HOME=/tmp lintian --fail-on error,warning --display-info --pedantic --show-overrides \
    --tag-display-limit 0 "$changes" >"$out/lintian.txt" 2>&1 || status=$?
cat "$out/lintian.txt"
count() { grep -c "^$1: " "$out/lintian.txt" || true; }
echo "   lintian: $(count E) errors, $(count W) warnings, $(count I) info, $(count P) pedantic, $(count O) overridden"
[ "$status" -eq 0 ] || die "lintian found errors or warnings (exit status $status)"
echo "== packages in $out:"
(cd "$out" && ls -1 ./*.deb)

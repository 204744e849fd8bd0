#!/bin/sh
# The version is kept in one place, project(... VERSION) in CMakeLists.txt;
# packaging/debian/changelog must name the same version in its newest
# entry (a native package: no Debian revision), or the packages would carry
# another version than `mailpulsed --version` prints.
# Usage: check_changelog_version.sh CHANGELOG PROJECT_VERSION
set -eu
changelog=$1
want=$2

# The newest entry's header: "mailpulse (VERSION) DIST; urgency=U".
head=$(sed -n '1p' "$changelog")
got=$(printf '%s\n' "$head" | sed -n 's/^mailpulse (\([^)]*\)) [^;]*; urgency=[a-z]*$/\1/p')
[ -n "$got" ] || { echo "FAIL: $changelog: first line is not an entry header: $head" >&2; exit 1; }
if command -v dpkg-parsechangelog >/dev/null 2>&1; then
    # dpkg's own parser, where it exists, must agree (it also checks the
    # trailer line and the date).
    parsed=$(dpkg-parsechangelog -l"$changelog" -SVersion)
    [ "$parsed" = "$got" ] ||
        { echo "FAIL: $changelog: dpkg-parsechangelog reads $parsed, not $got" >&2; exit 1; }
fi
[ "$got" = "$want" ] || {
    echo "FAIL: $changelog says $got, CMakeLists.txt project(VERSION) says $want:" >&2
    echo "      add a changelog entry (dch -v $want) or fix the project version" >&2
    exit 1
}
echo "ok: $changelog and CMakeLists.txt both say $want"

#!/bin/sh
# The package build's test (debian/rules, dh_auto_test), well under a
# second: the built daemon reports the package's upstream version, and
# accepts the shipped mailpulsed.conf and each shipped instance example
# (enabled) with the drivers just built, which loads each one through the
# real loader. The full test suite runs in CI (tests/run-all.sh), and the
# installed packages are tested there too.
# Usage: sh debian/smoke-test.sh BUILD_DIR UPSTREAM_VERSION
set -eu
build=$1
version=$2
daemon=$build/core/daemon/mailpulsed

out=$("$daemon" --version)
case $out in
  "mailpulsed $version "*) ;;
  *) echo "smoke-test: '$daemon --version' says '$out', the package is $version" >&2
     exit 1 ;;
esac

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/state" "$scratch/plugins.d" "$scratch/secrets"
conf=$scratch/mailpulsed.conf
drivers=$(cd "$build/drivers" && pwd)
sed -e "s|^state_dir = .*|state_dir = \"$scratch/state\";|" \
    -e "s|^driver_dir = .*|driver_dir = \"$drivers\";|" \
    -e "s|^plugins_dir = .*|plugins_dir = \"$scratch/plugins.d\";|" \
    config/mailpulsed.conf >"$conf"
for line in "state_dir = \"$scratch/state\";" "driver_dir = \"$drivers\";" \
            "plugins_dir = \"$scratch/plugins.d\";"; do
  grep -qxF "$line" "$conf" ||
    { echo "smoke-test: config/mailpulsed.conf has no line '${line%% *} = ...'" >&2; exit 1; }
done
"$daemon" -c "$conf" --check-config

# Each example alone (they may use the same account ids). They name secret
# files under /etc/mailpulse/secrets: point those at owner-only files in
# the scratch directory.
for example in config/plugins.d/*.yaml.example; do
  name=$(basename "$example" .yaml.example)
  rm -f "$scratch"/plugins.d/*
  sed -e 's/^enabled: false/enabled: true/' \
      -e "s|/etc/mailpulse/secrets/|$scratch/secrets/|" \
      "$example" >"$scratch/plugins.d/$name.yaml"
  for secret in $(sed -n "s|^[^#]*\($scratch/secrets/[^ ]*\).*|\1|p" "$scratch/plugins.d/$name.yaml"); do
    echo '{"type": "service_account"}' >"$secret"
    chmod 600 "$secret"
  done
  "$daemon" -c "$conf" --check-config
done
echo "smoke-test: mailpulsed $version accepts its shipped configuration and examples"

#!/bin/sh
# The SDK as a third party gets it: install only the "sdk" component of this
# build into a private prefix, build sdk/examples/hello against it the CMake
# way and the pkg-config way, then check each hello.so exports exactly one
# symbol and that the daemon's loader (mp_check_driver) accepts it.
#
# Environment (set by tests/sdk/CMakeLists.txt): CMAKE, CC, NM, PKG_CONFIG,
# MP_BUILD_DIR, MP_SOURCE_DIR, MP_CHECK_DRIVER, MP_WORK_DIR, MP_DRIVER_DIR,
# MP_ABI_MAJOR, MP_ABI_MINOR.
set -eu

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

work=$MP_WORK_DIR
example=$MP_SOURCE_DIR/sdk/examples/hello
prefix=$work/prefix
rm -rf "$work"
mkdir -p "$work"

echo "== install the SDK component into $prefix"
"$CMAKE" --install "$MP_BUILD_DIR" --prefix "$prefix" --component sdk
[ -f "$prefix/include/mailpulse/driver.h" ] || fail "driver.h not installed"
pc=$(find "$prefix" -name mailpulse-driver.pc)
[ -n "$pc" ] || fail "mailpulse-driver.pc not installed"
config=$(find "$prefix" -name MailpulseDriverConfig.cmake)
[ -n "$config" ] || fail "MailpulseDriverConfig.cmake not installed"
# Nothing but the SDK: a -dev package must not drag the daemon along.
others=$(find "$prefix" -type f ! -path "$prefix/include/mailpulse/*" \
    ! -name mailpulse-driver.pc ! -name 'MailpulseDriverConfig*.cmake')
[ -z "$others" ] || fail "component sdk installs more than the SDK: $others"

echo "== CMake: find_package(MailpulseDriver) + mailpulse_add_driver"
"$CMAKE" -S "$example" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Release
"$CMAKE" --build "$work/cmake-build"
[ -f "$work/cmake-build/hello.so" ] || fail "CMake build did not produce hello.so"
grep -q "^MAILPULSE_DRIVER_INSTALL_DIR:PATH=$MP_DRIVER_DIR\$" \
    "$work/cmake-build/CMakeCache.txt" ||
    fail "MAILPULSE_DRIVER_INSTALL_DIR does not default to $MP_DRIVER_DIR"
DESTDIR=$work/stage "$CMAKE" --install "$work/cmake-build"
[ -f "$work/stage$MP_DRIVER_DIR/hello.so" ] ||
    fail "hello.so not installed to the driver directory"

echo "== CMake: the package version is the ABI; another major is refused"
mkdir -p "$work/next-major"
cat >"$work/next-major/CMakeLists.txt" <<EOT
cmake_minimum_required(VERSION 3.16)
project(next_major LANGUAGES C)
find_package(MailpulseDriver $((MP_ABI_MAJOR + 1)).0 REQUIRED)
EOT
if "$CMAKE" -S "$work/next-major" -B "$work/next-major/build" \
    -DCMAKE_PREFIX_PATH="$prefix" >"$work/next-major.log" 2>&1; then
    fail "find_package(MailpulseDriver $((MP_ABI_MAJOR + 1)).0) succeeded"
fi

echo "== pkg-config"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
[ "$("$PKG_CONFIG" --modversion mailpulse-driver)" = "$MP_ABI_MAJOR.$MP_ABI_MINOR" ] ||
    fail "pkg-config version is not the ABI $MP_ABI_MAJOR.$MP_ABI_MINOR"
[ "$("$PKG_CONFIG" --variable=driverdir mailpulse-driver)" = "$MP_DRIVER_DIR" ] ||
    fail "pkg-config driverdir is not $MP_DRIVER_DIR"
[ "$("$PKG_CONFIG" --variable=abi_major mailpulse-driver)" = "$MP_ABI_MAJOR" ] ||
    fail "pkg-config abi_major"
[ "$("$PKG_CONFIG" --variable=abi_minor mailpulse-driver)" = "$MP_ABI_MINOR" ] ||
    fail "pkg-config abi_minor"
cflags=$("$PKG_CONFIG" --cflags mailpulse-driver)
mkdir -p "$work/pc-build"
# shellcheck disable=SC2086 # cflags is a list of options
"$CC" $cflags -std=c17 -Wall -Wextra -Werror -fPIC -fvisibility=hidden -shared \
    -Wl,-z,defs -o "$work/pc-build/hello.so" "$example/hello.c"

for dir in "$work/cmake-build" "$work/pc-build"; do
    echo "== $dir/hello.so"
    NM=$NM sh "$MP_SOURCE_DIR/tests/sdk/check_exports.sh" "$dir/hello.so" ||
        fail "$dir/hello.so exports more than mailpulse_driver"
    # The loader refuses files others may write; the umask of whoever runs
    # the tests must not decide this.
    chmod go-w "$dir" "$dir/hello.so"
    "$MP_CHECK_DRIVER" "$dir" hello || fail "the loader refuses $dir/hello.so"
done
echo "ok"

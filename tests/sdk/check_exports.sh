#!/bin/sh
# check_exports.sh PATH...: every driver (*.so under each directory PATH, or
# the file PATH) must export exactly one symbol, mailpulse_driver, as data.
# Directories that do not exist are skipped; finding no driver at all fails,
# since then nothing was checked.
#
# What `nm -D --defined-only` may list, decided once:
#   mailpulse_driver             type D or R (the const descriptor; D when it
#                                holds pointers that need relocation). Exactly
#                                one. A T would mean a function by that name.
#   __odr_asan.mailpulse_driver  ASan's one-definition-rule indicator that
#                                gcc -fsanitize=address emits next to every
#                                exported global; only in sanitizer builds.
#   _edata _end __bss_start      address markers older binutils put in the
#                                dynamic table of every shared object; no
#                                code, not callable. (binutils 2.40 omits them)
#   _init _fini (type T)         crti.o entry stubs some toolchains export
#                                regardless of visibility.
# Anything else is a symbol hidden visibility should have kept inside.
set -uf
NM=${NM:-nm}

failed=0
checked=0

check_one() {
    so=$1
    checked=$((checked + 1))
    out=$("$NM" -D --defined-only "$so" 2>&1) || {
        echo "$so: nm failed: $out"
        failed=1
        return
    }
    count=0
    extra=""
    # Lines look like "0000000000003d40 D mailpulse_driver"; absolute
    # symbols may lack the address.
    while read -r line; do
        [ -n "$line" ] || continue
        set -- $line
        if [ $# -ge 2 ]; then
            eval "type=\${$(($# - 1))}"
            eval "name=\${$#}"
        else
            type="?"
            name=$1
        fi
        case "$name:$type" in
        mailpulse_driver:D | mailpulse_driver:R) count=$((count + 1)) ;;
        __odr_asan.mailpulse_driver:*) ;;
        _edata:* | _end:* | __bss_start:*) ;;
        _init:T | _fini:T) ;;
        *) extra="$extra $name($type)" ;;
        esac
    done <<EOT
$out
EOT
    if [ -n "$extra" ]; then
        echo "$so: exports symbols other than mailpulse_driver:$extra"
        failed=1
    elif [ "$count" -ne 1 ]; then
        echo "$so: does not export mailpulse_driver as data"
        failed=1
    else
        echo "$so: ok"
    fi
}

for arg in "$@"; do
    if [ -f "$arg" ]; then
        check_one "$arg"
    elif [ -d "$arg" ]; then
        found=$(find "$arg" -name '*.so' -type f | sort)
        old_ifs=$IFS
        IFS='
'
        for so in $found; do
            IFS=$old_ifs
            check_one "$so"
        done
        IFS=$old_ifs
    fi
done

if [ "$checked" -eq 0 ]; then
    echo "no driver found in: $*"
    exit 1
fi
exit "$failed"

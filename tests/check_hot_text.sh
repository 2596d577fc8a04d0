#!/usr/bin/env bash
# Checks the hot text (CMakeLists.txt, KIN_HOT_TEXT; docs/performance.md
# §15): every function cmake/hot_text.txt names is still defined in
# libkin's sources (a renamed or removed one would silently fall out of
# the section), and the shared library has the section with kin_init and
# the broker's loop in it. Usage: check_hot_text.sh LIBKIN_SO SRC_DIR
# Exit status: 0 ok, 1 a check failed (said which), 2 bad invocation.
set -euo pipefail

if [ $# -ne 2 ] || [ ! -f "$1" ] || [ ! -f "$2/cmake/hot_text.txt" ]; then
    echo "usage: $0 LIBKIN_SO SRC_DIR" >&2
    exit 2
fi
lib=$1
src=$2
fail=0

# Definitions start their line (clang-format breaks after the return type
# of every top-level definition); msgpack_* are msgpack-c's inline
# functions, compiled into libkin's objects from its headers.
while read -r name; do
    case $name in '' | '#'* | msgpack_*) continue ;; esac
    if ! grep -rqE "^$name\(" --include='*.c' --include='*.h' \
        "$src"/core "$src"/broker "$src"/router "$src"/logs \
        "$src"/process "$src"/monitor "$src"/context; then
        echo "check_hot_text: cmake/hot_text.txt names $name, which no" \
            "source defines (scripts/hot_text.sh regenerates the list)" >&2
        fail=1
    fi
done <"$src/cmake/hot_text.txt"

read -r start size < <(readelf -SW "$lib" |
    awk '$2 == ".text.kin_hot" {print $4, $6} $3 == ".text.kin_hot" {print $5, $7}') ||
    true
if [ -z "${start:-}" ] || [ $((16#$size)) -lt 16384 ]; then
    echo "check_hot_text: $lib has no .text.kin_hot of 16 KiB or more" >&2
    exit 1
fi
for fn in kin_init kin__broker_loop; do
    addr=$(nm --defined-only "$lib" | awk -v f="$fn" '$3 == f {print $1}')
    if [ -z "$addr" ] || [ $((16#$addr)) -lt $((16#$start)) ] ||
        [ $((16#$addr)) -ge $((16#$start + 16#$size)) ]; then
        echo "check_hot_text: $fn is not in $lib's .text.kin_hot" >&2
        fail=1
    fi
done
exit $fail

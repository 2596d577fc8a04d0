#!/usr/bin/env bash
# Checks the layer order with the compiler's own dependency output (cc -MM):
#   core <- broker <- router <- logs <- process <- monitor <- context
# A source file may include its own folder's headers, the public headers
# (include/kin/) and the headers of lower layers -- but never another
# folder's private headers (*_impl.h), and never an upper layer's. The kin
# command (cli/) uses the public API plus one documented internal interface,
# context/tool.h. Headers count whether included directly or through
# another header.
#
# tests/layers.waive lists the known violations still being removed, one
# "FILE HEADER" per line; the check fails on any violation not listed there,
# and on a listed one that no longer happens (so the list only shrinks).
#   check_layers.sh [SOURCE_DIR]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

rank() {
    case $1 in
    core) echo 0 ;; broker) echo 1 ;; router) echo 2 ;; logs) echo 3 ;;
    process) echo 4 ;; monitor) echo 5 ;; context) echo 6 ;;
    *) echo -1 ;;
    esac
}

cflags=(-I. -Iinclude -D_GNU_SOURCE -DKIN_BUILDING
        $(pkg-config --cflags-only-I msgpack libzmq libuv 2>/dev/null))
found=$(mktemp)
trap 'rm -f "$found"' EXIT

for src in $(git ls-files 'core/*.c' 'broker/*.c' 'router/*.c' 'logs/*.c' \
                           'process/*.c' 'monitor/*.c' 'context/*.c' 'cli/*.c'); do
    dir=${src%%/*}
    mine=$(rank "$dir")
    deps=$(cc -MM -MG "${cflags[@]}" "$src" | tr -d '\\' | tr ' ' '\n' |
           grep '\.h$' | sed 's#^\./##' | sort -u)
    for h in $deps; do
        case $h in include/kin/*) continue ;; esac
        hdir=${h%%/*}
        [ "$hdir" = "$dir" ] && continue
        why=""
        if [ "$dir" = cli ]; then
            [ "$h" = context/tool.h ] && continue
            why="the kin command uses the public API and context/tool.h only"
        elif [ "$(rank "$hdir")" -lt 0 ]; then
            continue
        elif [ "$(rank "$hdir")" -gt "$mine" ]; then
            why="$hdir is above $dir"
        elif [[ $h == *_impl.h ]]; then
            why="private to $hdir/"
        fi
        [ -n "$why" ] && echo "$src $h $why" >>"$found"
    done
done

waived=$({ grep -v "^#" tests/layers.waive 2>/dev/null || true; } | awk 'NF {print $1" "$2}' | sort -u)
now=$(awk '{print $1" "$2}' "$found" | sort -u)
new=$(comm -13 <(echo "$waived") <(echo "$now") | sed '/^$/d')
gone=$(comm -23 <(echo "$waived") <(echo "$now") | sed '/^$/d')
status=0
if [ -n "$new" ]; then
    echo "check_layers: includes against the layer order:"
    while read -r f h; do grep -F "$f $h " "$found" | sed 's/^/  /'; done <<<"$new"
    status=1
fi
if [ -n "$gone" ]; then
    echo "check_layers: fixed, remove from tests/layers.waive:"
    echo "$gone" | sed 's/^/  /'
    status=1
fi
[ $status -eq 0 ] && echo "check_layers: $(echo "$now" | sed '/^$/d' | wc -l) waived, no new violations"
exit $status

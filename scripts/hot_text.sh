#!/bin/sh
# Regenerates cmake/hot_text.txt: the libkin functions an idle exec'd child
# has run by the time kin-bench reads its memory, then those an idle child
# forked from the zygote ran besides (docs/performance.md §15).
# Builds kin-bench with -finstrument-functions and scripts/hot_text_hook.c
# in BUILD_DIR (default build-hot), runs `kin-bench --only spawn --quick
# --smaps`, and keeps, in the order first run, the functions the idle
# children entered before the read, less kin-bench's own.
# Usage: scripts/hot_text.sh [BUILD_DIR]
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-hot}
work=$(mktemp -d /tmp/kin-hot-XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -O2 -fPIC -c "$src/scripts/hot_text_hook.c" -o "$work/hook.o"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKIN_TESTS=ON \
    -DKIN_HOT_TEXT=OFF -DCMAKE_C_FLAGS=-finstrument-functions \
    -DCMAKE_EXE_LINKER_FLAGS="$work/hook.o -ldl" >/dev/null
cmake --build "$build" -j2 --target kin-bench >/dev/null
bench=$build/tests/bench/kin-bench
mkdir -p "$work/trace" "$work/maps" "$work/rt"
chmod 700 "$work/rt"
XDG_RUNTIME_DIR=$work/rt KIN_HOT_TRACE_DIR=$work/trace \
    "$bench" --only spawn --quick --no-zmq --smaps "$work/maps" >/dev/null
sleep 0.1 # the last dump of each process
# kin-bench's own functions (its objects, not libkin's) are left out.
nm --defined-only "$build"/tests/bench/CMakeFiles/kin-bench.dir/*.o \
    >"$work/own"
nm --defined-only "$bench" >"$work/syms"
out=$src/cmake/hot_text.txt
sed -n '/^#/p' "$out" >"$work/head"
python3 - "$work" >"$work/names" <<'PY'
import sys
work = sys.argv[1]
def text_syms(path):
    for line in open(path):
        f = line.split()
        if len(f) == 3 and f[1] in "tT":
            yield int(f[0], 16), f[2]
own = {name for _, name in text_syms(work + "/own")}
sym = dict(text_syms(work + "/syms"))
seen = []
# The exec'd child's functions first, then those only the forked one ran.
for who in ("child", "fork_child"):
    pid, when = open("%s/maps/%s.when" % (work, who)).read().split()
    trace = open("%s/trace/%s" % (work, pid)).read().splitlines()
    for line in sorted(trace, key=lambda l: int(l.split()[1])):
        off, ns = line.split()
        name = sym.get(int(off, 16))
        if int(ns) <= int(when) and name and name not in own and name not in seen:
            seen.append(name)
print("\n".join(seen))
PY
cat "$work/head" "$work/names" >"$out"
echo "$(wc -l <"$work/names") functions in $out"

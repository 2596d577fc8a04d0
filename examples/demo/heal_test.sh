#!/usr/bin/env bash
# The lingering demo heals: SIGKILL a leaf, the hub, a worker, one at a
# time, and each time the tree regains its full size (the same six
# contexts, the killed one replaced, no process too many); prints how long
# each heal took, and that no socket file of a killed process is left. Then
# SIGKILL of the master leaves no process of the tree.
# Usage: heal_test.sh KIN_DEMO KIN
set -u
demo=$1
kin=$2
. "$(dirname "$0")/demo_lib.sh"

out=$rt/demo.out
master=
cleanup() {
    local rc=$?
    [ "$rc" = 0 ] && [ -z "${KIN_SHOW_OUT:-}" ] || { echo "--- the demo's output:"; cat "$out"; }
    kill_tree
    exit "$rc"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    exit 1
}

names="master worker-1 worker-2 hub leaf-1 leaf-2"

# "name pid" for each context `kin tree --json` lists.
tree() {
    "$kin" tree "$master" --json 2>/dev/null | awk '
        /"name":/ { n = $2; gsub(/[",]/, "", n) }
        /"pid":/  { p = $2; gsub(/,/, "", p) }
        /^    }/  { print n, p; n = p = "" }'
}

pid_of() { tree | awk -v n="$1" '$1 == n { print $2 }'; }

# Whether the tree has its full size again: every name once, none of the
# pids in $gone, and no more processes than contexts.
full() {
    local t n procs
    t=$(tree)
    procs=$(tree_procs)
    for n in $names; do
        [ "$(echo "$t" | awk -v n="$n" '$1 == n' | wc -l)" = 1 ] || return 1
    done
    # A killed process may stay a zombie until init reaps it: dead is
    # enough (a zombie has no executable, so tree_procs leaves it out).
    for n in $gone; do
        echo "$t" | awk '{ print $2 }' | grep -qx "$n" && return 1
        echo "$procs" | grep -qx "$n" && return 1
    done
    [ "$(echo "$procs" | wc -l)" = 6 ]
}

# Whether the runtime directory holds no socket file of any pid given.
no_files_of() {
    local p
    for p in "$@"; do
        ls "$rt/kin" | grep -q "^$p-" && return 1
    done
    return 0
}

"$demo" --linger --jobs 6 --limit 60000 --no-color >"$out" 2>&1 &
master=$!
wait_for 120000 grep -q "Still running" "$out" ||
    fail "the demo did not reach its lingering state in 120 s"

# The first tree it drew: siblings in start order, ├── for all but the last.
drawn=$(sed -n '/^Starting the tree/,/^$/s/^  \(.*[^ ]\) *context .*/\1/p' "$out" |
    paste -sd '|')
want="master|├── worker-1|├── worker-2|└── hub|    ├── leaf-1|    └── leaf-2"
[ "$drawn" = "$want" ] || fail "the tree is drawn as \"$drawn\", not \"$want\""
# The kin command it suggests works when pasted (here, in its directory).
cmd=$(grep -m1 -E "^  [^ ]+ tree $master\$" "$out") ||
    fail "no '... tree $master' command in the demo's output"
eval "$cmd" | grep -q "master" || fail "\"$cmd\" does not work here"
echo "suggested and working:$cmd"

gone=
wait_for 60000 full || fail "the tree is not full: $(tree | tr '\n' ' ')"
echo "tree: $(tree | tr '\n' ' ')"

for victim in leaf-1 hub worker-1; do
    pid=$(pid_of "$victim")
    [ -n "$pid" ] || fail "no $victim in the tree"
    gone=$pid
    # Killing the hub takes its leaves along: the new hub grows new ones.
    [ "$victim" = hub ] && gone="$pid $(pid_of leaf-1) $(pid_of leaf-2)"
    t0=$(now_ms)
    kill -KILL "$pid"
    wait_for 60000 full ||
        fail "after SIGKILL of $victim (pid $pid) the tree did not heal" \
            "in 60 s: $(tree | tr '\n' ' '); processes: $(tree_procs | wc -l)"
    echo "SIGKILL $victim (pid $pid): healed in $(($(now_ms) - t0)) ms," \
        "now pid $(pid_of "$victim")"
    # The killed ones could not remove their socket files: the tree does
    # (docs/supervision.md, "Socket files of killed contexts").
    wait_for 15000 no_files_of $gone ||
        fail "after SIGKILL of $victim, files of dead pids are left:" \
            "$(ls "$rt/kin" | tr '\n' ' ')"
done

pids=$(tree_procs | tr '\n' ' ')
kill -KILL "$master"
wait "$master" 2>/dev/null
master_gone() { [ -z "$(tree_procs)" ]; }
wait_for 30000 master_gone ||
    fail "30 s after SIGKILL of the master, still running: $(tree_procs)"
echo "SIGKILL master: none of $pids is left"
echo "PASS"

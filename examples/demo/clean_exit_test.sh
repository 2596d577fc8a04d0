#!/usr/bin/env bash
# After the demo exits cleanly (at the end of its run, and lingering, on
# SIGTERM), no process of its tree runs and its runtime directory holds
# nothing of it: no socket of the master or of any worker.
# Usage: clean_exit_test.sh KIN_DEMO
set -u
demo=$1
. "$(dirname "$0")/demo_lib.sh"
trap kill_tree EXIT

failed=0
# left WHAT: checks nothing of the tree remains.
left() {
    local files
    files=$(ls -A "$rt/kin" 2>/dev/null | tr '\n' ' ')
    if [ -n "$files" ]; then
        echo "FAIL ($1): left in the runtime directory: $files"
        failed=1
    fi
    no_procs() { [ -z "$(tree_procs)" ]; }
    if ! wait_for 30000 no_procs; then
        echo "FAIL ($1): still running: $(tree_procs | tr '\n' ' ')"
        failed=1
    fi
}

"$demo" --jobs 6 --limit 60000 --no-color >"$rt/out" 2>&1
rc=$?
[ "$rc" = 0 ] || { echo "FAIL: the demo exited $rc:"; cat "$rt/out"; exit 1; }
left "run to the end"
rm -f "$rt"/kin/* # what the first run left is not the second's

"$demo" --linger --jobs 6 --limit 60000 --no-color >"$rt/out" 2>&1 &
master=$!
wait_for 120000 grep -q "Still running" "$rt/out" ||
    { echo "FAIL: the demo did not linger:"; cat "$rt/out"; exit 1; }
kill -TERM "$master"
wait "$master"
rc=$?
[ "$rc" = 0 ] || { echo "FAIL: on SIGTERM the demo exited $rc"; failed=1; }
left "lingering, then SIGTERM"

[ "$failed" = 0 ] && echo PASS
exit "$failed"

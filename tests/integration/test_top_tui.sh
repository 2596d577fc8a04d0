#!/usr/bin/env bash
# kin top in a real terminal: tmux runs it against a small target tree and
# reads the screen back: every context, live updates (a context spawned
# later appears), warnings (a task waiting, a pool exhausted), sort keys,
# the task view and q; then --batch through a pipe, and bad usage.
# Usage: test_top_tui.sh KIN MONITOR_TARGET   (exit 77: skipped)
set -u

kin=$1
target=$2
tui_name=kin-top-test
# shellcheck source=tests/integration/tui_lib.sh
. "$(dirname "$0")/tui_lib.sh"

# --- the target: a master, a child blocked in t.block, custom "hello" ---

start_target

# --- live, in tmux ---------------------------------------------------------

cat >"$tmp/tmux.conf" <<'EOF2'
set -g remain-on-exit on
set -g status off
EOF2
unset TMUX
# The exit status goes to a file (see test_monitor_tui.sh).
cmd=$(printf '%q top %q --interval 200 --wait-warn 1; echo $? >%q' \
    "$kin" "$pid" "$tmp/status")
tm new-session -d -s "$session" -x 160 -y 40 "$cmd" ||
    fail "tmux new-session failed"
pane_pid=$(tm display-message -p -t "$session" '#{pane_pid}')

wait_screen "the master's row" '^ +0 master +[^ ]+ +[0-9]+ ' 1 "$start_ms"
wait_screen "the worker's row (1/1 workers busy)" '^ +1 worker +[^ ]+ +[0-9]+ .* 1/1 '
wait_screen "the header" '^ +CTX NAME +HOST +PID +CPU% +RSS MiB +TASKS +BUSY +QUEUE +CALLS/S +P99 +RESTARTS +DROPS'
# It refreshes by itself: the sample number climbs.
wait_screen "refreshes" ' #([5-9]|[1-9][0-9]+)$'
# The blocked call has waited more than --wait-warn 1 s.
wait_screen "the waiting task's warning" '^! task 1:[0-9]+ t\.block waiting on receiver for [0-9.]+ s$'
wait_screen "no pool warning yet" '^WARNINGS \(1\)$'

# A context spawned now appears without a key pressed.
echo spawn >&7
wait_screen "the late context" '^ +2 late +'
# A second call queues behind the blocked one: the pool is exhausted.
echo queue >&7
wait_screen "the pool warning" '^! pool of 1 \(worker\) exhausted: 1/1 workers busy, 1 queued$'
wait_screen "the queue column" '^ +1 worker .* 1/1 +1 '
# The screen as it stands, kept for docs/observe.md (KIN_ARTIFACTS: the
# build's artifacts directory).
if [ -n "${KIN_ARTIFACTS:-}" ]; then
    mkdir -p "$KIN_ARTIFACTS" && screen >"$KIN_ARTIFACTS/kin-top.txt"
fi

# Sort keys.
tm send-keys -t "$session" m
wait_screen "sort by rss" '^contexts, sort: rss '
tm send-keys -t "$session" t
wait_screen "sort by tasks" '^contexts, sort: tasks '
# The worker (2 tasks) comes first.
end=$(($(now_ms) + timeout_ms))
until screen | grep -A1 -E '^ +CTX NAME' | tail -1 | grep -qE '^ +1 worker '; do
    [ "$(now_ms)" -gt "$end" ] && fail "sorted by tasks, the worker is not first"
    sleep 0.05
done

# The task view: both calls in context 1, the blocked one first (sorted
# by wait), and a task of the master.
tm send-keys -t "$session" Tab
wait_screen "the task view" '^tasks, sort: wait '
wait_screen "the task header" '^CTX:TASK +NAME +FUNCTION +STATE +WAITING +WAIT s +AGE s'
wait_screen "the blocked task" '^1:[0-9]+ +t\.block +t\.block +waiting +receiver +[0-9.]+ +[0-9.]+$'
wait_screen "the queued task" '^1:[0-9]+ +t\.block +t\.block +pending +- +[0-9.]+$'
tm send-keys -t "$session" Tab
wait_screen "back to contexts" '^contexts, sort: tasks '

tm send-keys -t "$session" q
end=$(($(now_ms) + timeout_ms))
until [ -s "$tmp/status" ]; do
    [ "$(now_ms)" -gt "$end" ] && fail "q did not leave"
    sleep 0.05
done
status=$(cat "$tmp/status")
[ "$status" = 0 ] || fail "kin top exited with $status"

# --- batch and usage -------------------------------------------------------

out=$("$kin" top "$pid" --batch 2 --interval 100 2>&1)
rc=$?
[ "$rc" = 0 ] || fail "kin top --batch exited $rc: $out"
[ "$(echo "$out" | grep -cE '^ +2 late ')" = 2 ] || fail "--batch 2: $out"
echo "$out" | grep -q '^! pool of 1 (worker) exhausted' || fail "--batch warnings: $out"
out=$("$kin" top "$pid" </dev/null 2>&1)
rc=$?
[ "$rc" = 2 ] || fail "kin top without a terminal exited $rc: $out"
echo "$out" | grep -q 'needs a terminal' || fail "no terminal, no message: $out"
out=$("$kin" top "$pid" --interval 10 2>&1)
[ $? = 2 ] || fail "--interval 10 accepted: $out"

# --- the target exits cleanly once its stdin closes ------------------------

exec 7>&-
end=$(($(now_ms) + 10000))
while kill -0 "$tpid" 2>/dev/null; do
    [ "$(now_ms)" -gt "$end" ] && fail "the target did not exit on EOF"
    sleep 0.05
done
wait "$tpid"
rc=$?
t=$tpid
tpid=
[ "$rc" = 0 ] || fail "the target ($t) exited with $rc"
echo "PASS"

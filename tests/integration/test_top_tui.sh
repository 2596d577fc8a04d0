#!/usr/bin/env bash
# kin top in a real terminal: tmux runs it against a small target tree and
# reads the screen back: every context, live updates (a context spawned
# later appears), warnings (a task waiting, a pool exhausted), sort keys,
# the task view and q; then --batch through a pipe, and bad usage.
# Usage: test_top_tui.sh KIN MONITOR_TARGET   (exit 77: skipped)
set -u

kin=$1
target=$2
timeout_ms=${KIN_TUI_TIMEOUT_MS:-5000}

if ! command -v tmux >/dev/null 2>&1; then
    echo "SKIP: tmux is not installed (scripts/setup.sh installs it)"
    exit 77
fi

tmp=$(mktemp -d)
sock=kin-top-test-$$
session=kin-top-test-$$
tpid=
pane_pid=

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Our own tmux server (-L), so a user's tmux is never touched. fd 7 (the
# target's stdin) is closed for it, or the server would keep it open.
tm() { tmux -L "$sock" -f "$tmp/tmux.conf" "$@" 7>&-; }

cleanup() {
    local rc=$?
    # The pane's process group (kin monitor, and an ASan leak checker's
    # tracer) goes with it, even if it hangs on its way out.
    if [ -n "$pane_pid" ] &&
        [ "$(tm display-message -p -t "$session" '#{pane_dead}' 2>/dev/null)" = 0 ]; then
        kill -KILL -- "-$pane_pid" 2>/dev/null
    fi
    tmux -L "$sock" kill-server >/dev/null 2>&1
    exec 7>&- # EOF on the target's stdin: it exits on its own
    if [ -n "$tpid" ]; then
        local end=$(($(now_ms) + 5000))
        while kill -0 "$tpid" 2>/dev/null && [ "$(now_ms)" -lt "$end" ]; do
            sleep 0.05
        done
        kill -KILL "$tpid" 2>/dev/null
        wait "$tpid" 2>/dev/null
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT

# -J joins wrapped lines but keeps trailing blanks: strip them.
screen() { tm capture-pane -p -J -S - -t "$session" 2>/dev/null | sed 's/ *$//'; }


fail() {
    echo "FAIL: $*"
    echo "--- screen:"
    screen
    echo "--- target stderr:"
    cat "$tmp/target.err" 2>/dev/null
    exit 1
}

# wait_screen WHAT REGEX [COUNT]: until COUNT screen lines match.
wait_screen() {
    local what=$1 re=$2 count=${3:-1} end=$(($(now_ms) + timeout_ms)) n
    while :; do
        n=$(screen | grep -cE -- "$re")
        [ "$n" -ge "$count" ] && return 0
        [ "$(now_ms)" -gt "$end" ] && fail "$what: want $count line(s) matching '$re', got $n"
        sleep 0.05
    done
}


# --- the target: a master, a child blocked in t.block, custom "hello" ---

mkfifo "$tmp/in"
"$target" <"$tmp/in" >"$tmp/target.out" 2>"$tmp/target.err" &
tpid=$!
exec 7>"$tmp/in"
end=$(($(now_ms) + 30000))
pid=
while [ -z "$pid" ]; do
    read -r pid <"$tmp/target.out" 2>/dev/null
    if ! kill -0 "$tpid" 2>/dev/null; then
        fail "the target exited before printing its pid"
    fi
    [ "$(now_ms)" -gt "$end" ] && fail "the target did not start"
    [ -z "$pid" ] && sleep 0.05
done
[ "$pid" = "$tpid" ] || fail "the target printed pid '$pid', started $tpid"

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

wait_screen "the master's row" '^ +0 master +[^ ]+ +[0-9]+ '
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

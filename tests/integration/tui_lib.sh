# Sourced by the tests that drive a kin command in a real terminal
# (test_monitor_tui.sh, test_top_tui.sh): their own tmux server, a target
# process fed through fd 7, screen reads with deadlines, and a cleanup that
# reaps everything. The caller sets kin, target and tui_name first.
# shellcheck shell=bash

timeout_ms=${KIN_TUI_TIMEOUT_MS:-5000}
# The first screen of a command: its start attaches to the target (up to
# 10 s before it gives up with a message), so its deadline is longer than a
# keystroke's, long enough to show that message.
start_ms=$((timeout_ms > 20000 ? timeout_ms : 20000))

if ! command -v tmux >/dev/null 2>&1; then
    echo "SKIP: tmux is not installed (scripts/setup.sh installs it)"
    exit 77
fi

tmp=$(mktemp -d)
sock=$tui_name-$$
session=$tui_name-$$
tpid=
pane_pid=

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Our own tmux server (-L), so a user's tmux is never touched. fd 7 (the
# target's stdin) is closed for it, or the server would keep it open.
tm() { tmux -L "$sock" -f "$tmp/tmux.conf" "$@" 7>&-; }

tui_cleanup() {
    local rc=$?
    # The pane's process group (the kin command, and an ASan leak checker's
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
trap tui_cleanup EXIT

# -J joins wrapped lines but keeps trailing blanks: strip them.
screen() { tm capture-pane -p -J -S - -t "$session" 2>/dev/null | sed 's/ *$//'; }

# Where every thread of the processes under test waits: the command in the
# pane (its process group), the target and its children. A failure that
# shows only a blank screen says nothing of which side was stuck.
stacks() {
    local p pids
    pids="$( ([ -n "$pane_pid" ] && pgrep -g "$pane_pid") 2>/dev/null) $tpid"
    [ -n "$tpid" ] && pids="$pids $(pgrep -P "$tpid" 2>/dev/null)"
    for p in $pids; do
        [ -r "/proc/$p/cmdline" ] || continue
        echo "--- process $p: $(tr '\0' ' ' <"/proc/$p/cmdline")"
        grep -E '^(State|Threads):' "/proc/$p/status" 2>/dev/null
        command -v gdb >/dev/null 2>&1 &&
            timeout 30 gdb -p "$p" -batch -nx -ex 'thread apply all bt' \
                </dev/null 2>&1 | grep -E '^(Thread |#)'
    done
}

fail() {
    echo "FAIL: $*"
    echo "--- screen:"
    screen
    echo "--- target stderr:"
    cat "$tmp/target.err" 2>/dev/null
    stacks
    exit 1
}

# wait_screen WHAT REGEX [COUNT [MS]]: until COUNT screen lines match.
wait_screen() {
    local what=$1 re=$2 count=${3:-1} end=$(($(now_ms) + ${4:-$timeout_ms})) n
    while :; do
        n=$(screen | grep -cE -- "$re")
        [ "$n" -ge "$count" ] && return 0
        [ "$(now_ms)" -gt "$end" ] && fail "$what: want $count line(s) matching '$re', got $n"
        sleep 0.05
    done
}

# start_target: runs $target with its stdin on fd 7 and waits (30 s at most)
# for the pid it prints first; sets tpid and pid.
start_target() {
    mkfifo "$tmp/in"
    "$target" <"$tmp/in" >"$tmp/target.out" 2>"$tmp/target.err" &
    tpid=$!
    exec 7>"$tmp/in"
    local end=$(($(now_ms) + 30000))
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
}

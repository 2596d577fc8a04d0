#!/usr/bin/env bash
# kin monitor in a real terminal: tmux types at it (completion of commands
# and task ids, a custom command, Enter repeating, quit) and reads the
# screen back; then the same monitor scripted through a pipe.
# Usage: test_monitor_tui.sh KIN MONITOR_TARGET   (exit 77: skipped)
set -u

kin=$1
target=$2
tui_name=kin-test
# shellcheck source=tests/integration/tui_lib.sh
. "$(dirname "$0")/tui_lib.sh"

# The line the cursor is on: what is being typed.
prompt_line() {
    local y
    y=$(tm display-message -p -t "$session" '#{cursor_y}' 2>/dev/null) || return
    tm capture-pane -p -J -S "$y" -E "$y" -t "$session" 2>/dev/null |
        sed 's/ *$//'
}

# wait_prompt WHAT REGEX [MS]: until the line being typed matches.
wait_prompt() {
    local what=$1 re=$2 end=$(($(now_ms) + ${3:-$timeout_ms}))
    until prompt_line | grep -qE -- "$re"; do
        [ "$(now_ms)" -gt "$end" ] && fail "$what: the input line is '$(prompt_line)', want '$re'"
        sleep 0.05
    done
}

# --- the target: a master, a child blocked in t.block, custom "hello" ---

start_target

# --- interactive, in tmux --------------------------------------------------

cat >"$tmp/tmux.conf" <<'EOF'
set -g remain-on-exit on
set -g status off
set -g history-limit 10000
EOF
unset TMUX
mkdir -p "$tmp/state"
# The exit status goes to a file: tmux (3.3a) may leave the pane's process
# unreaped for a long while, so #{pane_dead_status} is not dependable.
cmd=$(printf 'env XDG_STATE_HOME=%q %q monitor %q; echo $? >%q' \
    "$tmp/state" "$kin" "$pid" "$tmp/status")
tm new-session -d -s "$session" -x 200 -y 50 "$cmd" ||
    fail "tmux new-session failed"
pane_pid=$(tm display-message -p -t "$session" '#{pane_pid}')
wait_prompt "the prompt" "^kin $pid>\$" "$start_ms"

# Tab completes a command name: "he" is ambiguous (help, hello: the
# target's custom command), so the common part, then both are offered.
tm send-keys -t "$session" 'he' Tab
wait_prompt "he+Tab" "^kin $pid> hel\$"
tm send-keys -t "$session" Tab
wait_screen "he+Tab+Tab offers both" '^hello +help$'
tm send-keys -t "$session" 'p' Enter
wait_screen "help lists built-ins" '^  where-terminated CTX:TASK +how a'
wait_screen "help lists the custom command" '^  hello +says hello$'

# A unique prefix completes; the custom command runs in the target.
tm send-keys -t "$session" 'hell' Tab
wait_prompt "hell+Tab" "^kin $pid> hello\$"
tm send-keys -t "$session" Enter
wait_screen "hello's output" '^hello from the target$'

# ps shows the blocked task; an empty line repeats ps.
tm send-keys -t "$session" 'ps' Enter
task_re='^1:[0-9]+ +worker +t\.block +t\.block +waiting '
wait_screen "ps shows the blocked task" "$task_re"
wait_prompt "the prompt after ps" "^kin $pid>\$"
tm send-keys -t "$session" Enter
wait_screen "Enter repeats ps" "$task_re" 2
wait_screen "Enter repeats ps (header)" '^TASK +CONTEXT +NAME' 2

# Tab completes a task id from a live ps (context 1 has one task).
tm send-keys -t "$session" 'where 1' Tab
wait_prompt "where 1+Tab" "^kin $pid> where 1:[0-9]+\$"
task=$(prompt_line | grep -oE '1:[0-9]+$')
tm send-keys -t "$session" Enter
wait_screen "where shows the task" "^task $task t\\.block \\(waiting\\)"
wait_screen "where shows its stack" 'kin_latch_get'

# Signal names complete too; a bad command says so and the prompt stays.
tm send-keys -t "$session" 'signal 1 US' Tab
wait_prompt "signal+Tab" "^kin $pid> signal 1 USR\$"
tm send-keys -t "$session" C-u 'frobnicate' Enter
wait_screen "an unknown command" "unknown command 'frobnicate'"
wait_prompt "the prompt after an error" "^kin $pid>\$"

tm send-keys -t "$session" 'quit' Enter
end=$(($(now_ms) + timeout_ms))
until [ -s "$tmp/status" ]; do
    [ "$(now_ms)" -gt "$end" ] && fail "quit did not leave"
    sleep 0.05
done
status=$(cat "$tmp/status")
[ "$status" = 0 ] || fail "kin monitor exited with $status"

# The history was saved, without the empty line.
hist="$tmp/state/kin/history"
[ -f "$hist" ] || fail "no history file $hist"
grep -qx 'hello' "$hist" || fail "history lacks 'hello': $(cat "$hist")"
# (libedit's format: blanks as \040)
grep -qE '^where( |\\040)1:[0-9]+$' "$hist" || fail "history lacks 'where': $(cat "$hist")"
grep -qx '' "$hist" && fail "history has an empty line: $(cat "$hist")"

# --- scripted: stdin not a terminal ----------------------------------------

out=$(printf 'ps\n\nhello\n' | "$kin" monitor "$pid" 2>&1)
rc=$?
[ "$rc" = 0 ] || fail "scripted monitor exited $rc: $out"
echo "$out" | grep -qE "$task_re" || fail "scripted ps: $out"
echo "$out" | grep -qx 'hello from the target' || fail "scripted hello: $out"
[ "$(echo "$out" | grep -cE '^TASK +CONTEXT')" = 1 ] ||
    fail "a blank scripted line must not repeat: $out"
echo "$out" | grep -q "kin $pid>" && fail "a prompt when scripted: $out"
out=$(printf 'nonsense\n' | "$kin" monitor "$pid" 2>&1)
rc=$?
[ "$rc" = 2 ] || fail "a bad scripted command exited $rc: $out"
echo "$out" | grep -q "unknown command 'nonsense'" || fail "no message: $out"

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

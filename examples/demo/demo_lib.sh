# Shared by the demo's shell tests (sourced, not run): a private runtime
# directory, the processes of one demo tree found by their executable and
# that directory, and waiting with a deadline.
# The caller sets demo (the kin-demo executable) before sourcing.

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# A runtime directory of our own: nothing shared with other tests, and
# every process of our tree carries it in its environment.
rt=$(mktemp -d /tmp/kin-demo-test.XXXXXX)
chmod 700 "$rt"
export XDG_RUNTIME_DIR=$rt
demo_exe=$(readlink -f "$demo")

# Pids of the live processes of our demo tree: the demo's executable, with
# our runtime directory in their environment (children inherit it), so a
# recycled pid or another test's demo never counts.
tree_procs() {
    local p
    for p in /proc/[0-9]*; do
        [ "$p/exe" -ef "$demo_exe" ] 2>/dev/null || continue
        tr '\0' '\n' <"$p/environ" 2>/dev/null |
            grep -qx "XDG_RUNTIME_DIR=$rt" && echo "${p#/proc/}"
    done
}

# Kills whatever is left of our tree and removes the runtime directory.
kill_tree() {
    local p
    for p in $(tree_procs); do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$rt"
}

# wait_for MS COMMAND...: runs COMMAND until it succeeds or MS pass.
wait_for() {
    local end=$(($(now_ms) + $1))
    shift
    until "$@"; do
        [ "$(now_ms)" -lt "$end" ] || return 1
        sleep 0.05
    done
}

#!/usr/bin/env bash
# A runtime directory kin must refuse (open to others, another user's, not a
# directory) stops the demo with a message that names the directory, says
# what is wrong and how to fix it; no process of the demo is left.
# Usage: refusal_test.sh KIN_DEMO
set -u
demo=$1
. "$(dirname "$0")/demo_lib.sh"
trap kill_tree EXIT

failed=0
# check WHAT PATTERN...: runs the demo on $rt/kin as it is now and checks it
# fails (exit 1) with every PATTERN (fixed strings) in its error output.
check() {
    local what=$1 err rc p
    shift
    err=$("$demo" --no-color 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" != 1 ]; then
        echo "FAIL ($what): exit $rc, expected 1; it said: $err"
        failed=1
    fi
    for p in "$rt/kin" "$@" "XDG_RUNTIME_DIR"; do
        if ! grep -qF -- "$p" <<<"$err"; then
            echo "FAIL ($what): no \"$p\" in: $err"
            failed=1
        fi
    done
    [ -z "$(tree_procs)" ] || { echo "FAIL ($what): processes left"; failed=1; }
    echo "$what: $err"
}

mkdir -m 0755 "$rt/kin"
chmod 0755 "$rt/kin" # whatever the umask
check "mode 0755" "mode 0755" "rm -r $rt/kin"

chmod 0700 "$rt/kin"
if [ "$(id -u)" = 0 ]; then
    chown nobody "$rt/kin"
    check "owned by nobody" "belongs to uid $(id -u nobody)" "rm -r $rt/kin"
else
    echo "(another owner: not checked, it needs root to chown)"
fi

rmdir "$rt/kin"
ln -s "$rt" "$rt/kin"
check "a symbolic link" "not a directory" "rm $rt/kin"
rm "$rt/kin"

[ "$failed" = 0 ] && echo PASS
exit "$failed"

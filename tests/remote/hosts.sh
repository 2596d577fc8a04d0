#!/usr/bin/env bash
# shellcheck disable=SC1091 # DIR/env is generated at run time
# Throw-away test "hosts" for the ssh spawner's integration tests: three
# network namespaces on this machine, wired A <-> B <-> C with veth pairs, and
# a real OpenSSH server in B and C. A has no route to C, so A reaches C only
# through processes on B (which is what a jump/relay test needs).
#
#   hosts.sh check        exit 0 if this machine can do it, else 77 (skip)
#   hosts.sh up DIR       build the hosts; keys, configs, logs and DIR/env go in DIR
#   hosts.sh down DIR     tear everything down; idempotent, fine after a failed up
#   hosts.sh cut DIR      take A's end of the A<->B link down ...
#   hosts.sh mend DIR     ... and back up
#
# After `up`, `. DIR/env` gives NS_A NS_B NS_C, IP_AB_A IP_AB_B IP_BC_B IP_BC_C,
# VETH_A, SSH_CONFIG and SSH_PORT, and this works:
#   ip netns exec "$NS_A" ssh -F "$SSH_CONFIG" "$IP_AB_B" cmd
# Extra sshd_config lines (e.g. "ClientAliveInterval 1") may be passed in
# KIN_SSHD_EXTRA; by default sshd runs with stock settings apart from the
# ones below, so tests see what a real host does.
set -eu

SSHD=/usr/sbin/sshd # sshd refuses to start unless run by absolute path
SSH_PORT=2222       # one sshd per namespace, so a fixed port cannot collide

die() { echo "hosts.sh: $*" >&2; exit 1; }
skip() { echo "hosts.sh: skipped: $*"; exit 77; }

check() {
    [ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, sshd)"
    [ -x "$SSHD" ] || skip "$SSHD missing (apt-get install openssh-server)"
    for t in ip ssh ssh-keygen; do
        command -v "$t" >/dev/null || skip "$t missing"
    done
    # sshd with UsePAM no refuses accounts whose password starts with "!".
    case "$(getent shadow root | cut -d: -f2)" in
    '!'*) skip "root account is locked ('!' in /etc/shadow); sshd refuses it" ;;
    esac
    ns="kin-check-$$"
    ip netns add "$ns" 2>/dev/null || skip "'ip netns add' not permitted here"
    ip netns del "$ns"
}

load() {
    [ -f "$1/env" ] || die "$1/env not found (was 'up' run with this DIR?)"
    . "$1/env"
}

# Succeeds once something accepts TCP connections on $2:$3 inside netns $1.
tcp_open() {
    ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}

# Start sshd in namespace $1 (short name $2), listening on the addresses $3...
start_sshd() {
    local ns=$1 name=$2 ip
    shift 2
    {
        for ip in "$@"; do echo "ListenAddress $ip:$SSH_PORT"; done
        cat <<EOF
HostKey "$DIR/ssh_host_ed25519_key"
AuthorizedKeysFile "$DIR/authorized_keys"
PidFile "$DIR/sshd-$name.pid"
# DIR is usually under /tmp, and StrictModes rejects world-writable parents.
StrictModes no
# We run as root; key-only login keeps that acceptable.
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The spawner forwards its unix sockets back over the connection.
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
${KIN_SSHD_EXTRA:-}
EOF
    } >"$DIR/sshd_config-$name"
    # -E sends even startup errors to the log, so repeat them here.
    # Its own UTS namespace too, so sessions there see a host name of their
    # own (host-b, host-c) as on a real host.
    ip netns exec "$ns" unshare --uts sh -c 'hostname "$1" && shift && exec "$@"' \
        sh "host-$name" "$SSHD" -f "$DIR/sshd_config-$name" -E "$DIR/sshd-$name.log" ||
        die "sshd in $ns did not start: $(tail -n 2 "$DIR/sshd-$name.log")"

    # Poll, with a deadline, until it accepts (each probe shows up in the log
    # as "kex_exchange_identification: Connection closed"); then prove a
    # login works, so a broken setup fails here, not later in a test.
    local deadline=$((SECONDS + 10))
    until tcp_open "$ns" "$1" "$SSH_PORT"; do
        [ $SECONDS -lt $deadline ] ||
            die "sshd in $ns not listening after 10s; see $DIR/sshd-$name.log"
        sleep 0.05
    done
    ip netns exec "$ns" ssh -F "$DIR/ssh_config" "$1" true ||
        die "ssh login to $ns failed; see $DIR/sshd-$name.log"
}

up() {
    DIR=$1
    mkdir -p "$DIR"
    chmod 0700 "$DIR"
    DIR=$(cd "$DIR" && pwd) # sshd and ssh configs need absolute paths
    [ ! -e "$DIR/env" ] || die "$DIR/env exists; run 'down $DIR' first"

    # Names unique to this run, so parallel runs do not collide. Addresses
    # live only inside the namespaces and could not clash anyway; varying
    # them per run keeps per-host client state (ControlPath %h, logs) apart.
    local id=$$ net=$(($$ % 254 + 1)) ns
    # A live run cannot share our pid; these could only be left over from a
    # dead run, and must not be adopted (our cleanup would delete them).
    for ns in a b c; do
        [ ! -e "/run/netns/kin-$ns-$id" ] ||
            die "namespace kin-$ns-$id exists (left over?); 'ip netns del' it"
    done
    cat >"$DIR/env" <<EOF
NS_A='kin-a-$id'
NS_B='kin-b-$id'
NS_C='kin-c-$id'
IP_AB_A='10.$net.1.1'
IP_AB_B='10.$net.1.2'
IP_BC_B='10.$net.2.1'
IP_BC_C='10.$net.2.2'
VETH_A='to-b'
SSH_CONFIG='$DIR/ssh_config'
SSH_PORT='$SSH_PORT'
EOF
    . "$DIR/env" # env is written first so that down can undo a partial up
    trap 'echo "hosts.sh: up failed; cleaning up" >&2; down "$DIR"' EXIT

    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    # Each veth end is created directly inside its namespace, so no names
    # ever appear in the root namespace.
    ip link add "$VETH_A" netns "$NS_A" type veth peer name to-a netns "$NS_B"
    ip link add to-c netns "$NS_B" type veth peer name to-b netns "$NS_C"
    ip -n "$NS_A" addr add "$IP_AB_A/24" dev "$VETH_A"
    ip -n "$NS_B" addr add "$IP_AB_B/24" dev to-a
    ip -n "$NS_B" addr add "$IP_BC_B/24" dev to-c
    ip -n "$NS_C" addr add "$IP_BC_C/24" dev to-b
    ip -n "$NS_A" link set "$VETH_A" up
    ip -n "$NS_B" link set to-a up
    ip -n "$NS_B" link set to-c up
    ip -n "$NS_C" link set to-b up
    # B does not forward (net.ipv4.ip_forward is per namespace and 0), and
    # A and C have no route to each other's subnet.

    rm -f "$DIR"/ssh_host_ed25519_key* "$DIR"/id_ed25519* # keygen would prompt
    ssh-keygen -q -t ed25519 -N '' -C kin-test-host -f "$DIR/ssh_host_ed25519_key"
    ssh-keygen -q -t ed25519 -N '' -C kin-test-user -f "$DIR/id_ed25519"
    cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
    # Non-22 ports must be written as [addr]:port or ssh will not match them.
    local hostkey
    hostkey=$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")
    for ip in "$IP_AB_B" "$IP_BC_B" "$IP_BC_C"; do
        echo "[$ip]:$SSH_PORT $hostkey"
    done >"$DIR/known_hosts"
    cat >"$DIR/ssh_config" <<EOF
# -F bypasses ~/.ssh/config and /etc/ssh/ssh_config entirely.
Host *
    User $(id -un)
    Port $SSH_PORT
    IdentityFile "$DIR/id_ed25519"
    IdentitiesOnly yes
    UserKnownHostsFile "$DIR/known_hosts"
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    CheckHostIP no
    BatchMode yes
    ConnectTimeout 5
    LogLevel ERROR
EOF

    # sshd's privilege separation dir; normally made by the service unit.
    [ -d /run/sshd ] || mkdir -m 0755 /run/sshd
    start_sshd "$NS_B" b "$IP_AB_B" "$IP_BC_B"
    start_sshd "$NS_C" c "$IP_BC_C"
    trap - EXIT
}

down() {
    local dir=$1 ns f sig pids
    [ -f "$dir/env" ] || return 0 # nothing was ever created
    . "$dir/env"
    for f in "$dir"/sshd-*.pid; do
        if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
        rm -f "$f"
    done
    # Killing the listener leaves per-connection sshd children and anything
    # a test started behind; the namespace lives on while they do, so end
    # every process still inside it.
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        [ -e "/run/netns/$ns" ] || continue
        for sig in TERM KILL; do
            pids=$(ip netns pids "$ns")
            [ -n "$pids" ] || break
            # shellcheck disable=SC2086 # one pid per word
            kill -s "$sig" $pids 2>/dev/null || true
            for _ in $(seq 20); do
                [ -z "$(ip netns pids "$ns")" ] && break
                sleep 0.05
            done
        done
        ip netns del "$ns" # also removes the veths
    done
    rm -f "$dir/env"
}

link() {
    load "$1"
    ip -n "$NS_A" link set "$VETH_A" "$2"
}

case "${1:-} $#" in
"check 1") check ;;
"up 2") up "$2" ;;
"down 2") down "$2" ;;
"cut 2") link "$2" down ;;
"mend 2") link "$2" up ;;
*) die "usage: hosts.sh check | up DIR | down DIR | cut DIR | mend DIR" ;;
esac

#!/usr/bin/env bash
# Network-namespace lab for Tandem's hot-standby pair: a switch (bridge),
# the SIP trunk, the two Tandem nodes a and b, two media servers, and a
# direct "pair link" between a and b. See README.md next to this script.
#
# Every lab lives in its own namespaces (NAME-sw, NAME-trunk, NAME-a,
# NAME-b, NAME-ms1, NAME-ms2), so parallel labs reuse the same addresses.
# Nothing is created in the root namespace: each veth pair is created
# inside one lab namespace with its peer placed in another.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=(trunk a b ms1 ms2)
declare -A ADDR=([trunk]=10.77.0.10 [a]=10.77.0.2 [b]=10.77.0.3 [ms1]=10.77.0.21 [ms2]=10.77.0.22)
PREFIX=24
PAIR_A=10.77.1.1/30
PAIR_B=10.77.1.2/30
# ha.secret_file of tandem-a/b.toml.
SECRET_FILE=/run/tandem-testbed/pair.secret

usage() {
    cat >&2 <<'USAGE'
usage: testbed.sh up NAME             build lab NAME ([a-z0-9]{1,8})
       testbed.sh down NAME           kill its processes, delete it (idempotent)
       testbed.sh cut NAME LINK       LINK: pair | a | b | trunk | ms1 | ms2
       testbed.sh heal NAME LINK      undo cut
       testbed.sh kill NAME NODE      kill -9 every process in NAME-NODE
       testbed.sh exec NAME NODE CMD… run CMD in NAME-NODE
       testbed.sh start NAME [DIR]    in lab NAME: SIPp media servers (RTP echo) on
                                      ms1/ms2, Tandem a then b (tandem-a/b.toml here);
                                      logs in DIR (default /tmp/tandem-lab-NAME)
       testbed.sh list                lab names present
USAGE
    exit 2
}

check_node() {
    case ${1-} in
    sw | trunk | a | b | ms1 | ms2) ;;
    *) die "unknown node '${1-}' (sw, trunk, a, b, ms1, ms2)" ;;
    esac
}

# The pair's shared secret: made once per machine, random, readable by
# root only (Tandem refuses a secret file others can read).
make_secret() {
    [[ -s $SECRET_FILE ]] && return 0
    mkdir -p -m 700 "$(dirname "$SECRET_FILE")"
    local tmp
    tmp=$(mktemp "$SECRET_FILE.XXXXXX") # mode 0600
    head -c 32 /dev/urandom | base64 >"$tmp"
    # Atomic: labs built in parallel never read half a file.
    mv -f "$tmp" "$SECRET_FILE"
}

# The MAC address for a host's eth0: 02:77:00:00:00:<last octet>, so
# captures are readable. Parallel labs are separate broadcast domains.
mac_of() {
    printf '02:77:00:00:00:%02x' "${ADDR[$1]##*.}"
}

up() {
    local name=$1 node ns
    check_name "$name"
    for ns in "$name-sw" "${NODES[@]/#/$name-}"; do
        ns_exists "$ns" && die "namespace $ns exists: run 'testbed.sh down $name' first"
    done
    make_secret
    # Whatever fails from here on, leave nothing half built.
    trap 'rc=$?; down "$name" >/dev/null 2>&1 || true; exit $rc' ERR

    ip netns add "$name-sw"
    ip -n "$name-sw" link set lo up
    ip -n "$name-sw" link add br0 type bridge stp_state 0
    ip -n "$name-sw" link set br0 up

    for node in "${NODES[@]}"; do
        ns=$name-$node
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # eth0 in the host, its peer "p-NODE" a port of the bridge.
        ip -n "$ns" link add eth0 address "$(mac_of "$node")" type veth peer name "p-$node" netns "$name-sw"
        ip -n "$name-sw" link set "p-$node" master br0 up
        ip -n "$ns" addr add "${ADDR[$node]}/$PREFIX" dev eth0
        ip -n "$ns" link set eth0 up
    done

    # The pair link: a direct cable between the two Tandem nodes.
    ip -n "$name-a" link add pair0 type veth peer name pair0 netns "$name-b"
    ip -n "$name-a" addr add "$PAIR_A" dev pair0
    ip -n "$name-b" addr add "$PAIR_B" dev pair0
    ip -n "$name-a" link set pair0 up
    ip -n "$name-b" link set pair0 up
    trap - ERR
}

down() {
    local name=$1 ns
    check_name "$name"
    for ns in "${NODES[@]/#/$name-}" "$name-sw"; do
        ns_exists "$ns" || continue
        kill_ns "$ns"
        ip netns del "$ns" 2>/dev/null || true
    done
}

# Interfaces (namespace:device) making up LINK.
link_ends() {
    local name=$1 link=$2
    case $link in
    pair) echo "$name-a:pair0 $name-b:pair0" ;;
    a | b) echo "$name-$link:eth0 $name-$link:pair0" ;;
    trunk | ms1 | ms2) echo "$name-$link:eth0" ;;
    *) die "unknown link '$link' (pair, a, b, trunk, ms1, ms2)" ;;
    esac
}

set_link() {
    local name=$1 link=$2 state=$3 end
    check_name "$name"
    ns_exists "$name-sw" || die "no lab '$name'"
    for end in $(link_ends "$name" "$link"); do
        ip -n "${end%%:*}" link set "${end#*:}" "$state"
    done
}

# The whole lab running: media servers, then node a (it finds no peer and
# becomes active on the floating address), then node b (its standby).
start() {
    local name=$1 dir=$2 here bin
    check_name "$name"
    ns_exists "$name-sw" || die "no lab '$name' (testbed.sh up $name first)"
    make_secret
    command -v sipp >/dev/null || die "sipp not found (apt-get install sip-tester)"
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    bin=$here/../../target/release/tandem
    [[ -x $bin ]] || bin=$here/../../target/debug/tandem
    [[ -x $bin ]] || die "build tandem first (cargo build --release --bin tandem)"
    mkdir -p "$dir"
    # The admin token both nodes' configs name (admin.token_file, beside
    # them): `tandem switchover --config …` reads it. Random, private,
    # never committed (.gitignore).
    if [[ ! -s $here/admin.token ]]; then
        (umask 077 && head -c 24 /dev/urandom | base64 >"$here/admin.token")
    fi
    for ms in ms1 ms2; do
        ip netns exec "$name-$ms" sipp -sn uas -i "${ADDR[$ms]}" -p 5060 -mi "${ADDR[$ms]}" \
            -rtp_echo -aa -nostdin -buff_size 4194304 >"$dir/$ms.log" 2>&1 &
    done
    for node in a b; do
        RUST_LOG=${RUST_LOG:-info} ip netns exec "$name-$node" "$bin" run \
            --config "$here/tandem-$node.toml" >"$dir/$node.log" 2>&1 &
        local want=active
        [[ $node == b ]] && want=standby
        for _ in $(seq 100); do
            ip netns exec "$name-$node" "$bin" status --json --admin 127.0.0.1:9090 2>/dev/null \
                | grep -q "\"role\":\"$want\"" && break
            sleep 0.1
        done
        ip netns exec "$name-$node" "$bin" status --json --admin 127.0.0.1:9090 2>/dev/null \
            | grep -q "\"role\":\"$want\"" || die "node $node did not become $want (log: $dir/$node.log)"
        echo "testbed.sh: node $node is $want"
    done
    echo "testbed.sh: lab $name running; logs in $dir; calls go to 10.77.0.100:5060 from NAME-trunk"
}

cmd=${1-}
shift || true
case $cmd in
up)
    (($# == 1)) || usage
    up "$1"
    ;;
down)
    (($# == 1)) || usage
    down "$1"
    ;;
cut | heal)
    (($# == 2)) || usage
    set_link "$1" "$2" "$([[ $cmd == cut ]] && echo down || echo up)"
    ;;
kill)
    (($# == 2)) || usage
    check_name "$1"
    check_node "$2"
    ns_exists "$1-$2" || die "no namespace $1-$2"
    kill_ns "$1-$2"
    ;;
exec)
    (($# >= 3)) || usage
    exec_in "$@"
    ;;
start)
    (($# == 1 || $# == 2)) || usage
    start "$1" "${2:-/tmp/tandem-lab-$1}"
    ;;
list)
    (($# == 0)) || usage
    ip netns list | sed -n 's/^\([a-z0-9]\{1,8\}\)-sw\( .*\)\{0,1\}$/\1/p' | sort
    ;;
*) usage ;;
esac

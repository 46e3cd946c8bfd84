#!/usr/bin/env bash
# Network-namespace lab for a branch office and its WAN (issue 13): the
# branch LAN with phones and a local gateway, the branch's Tandem, a WAN
# router that can cut the WAN or make it lossy and slow, and the central
# site with a PBX and a registrar. See README.md next to this script.
#
# Every lab lives in its own namespaces (NAME-br, NAME-node, NAME-wan,
# NAME-dc), so parallel labs reuse the same addresses. Nothing is created
# in the root namespace: each veth pair is created inside one lab
# namespace with its peer placed in another.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=(br node wan dc)
# Users of the branch's registrar (realm branch.test): 1001 and 1002 are
# the SIPp phones, 1003 the baresip phone; password pwUSER.
USERS=(1001 1002 1003)
DOMAIN=branch.test
# The central registrar's domain and digest realm (dual registration).
CENTRE_DOMAIN=centre.test
STATE_DIR=/run/tandem-testbed
# registrar.credentials_file of tandem-branch.toml and tandem-central.toml.
CREDENTIALS=$STATE_DIR/branch.credentials
# The router's TUN device and routing table for the delay.
DELAY_DEV=dly0
DELAY_TABLE=100

usage() {
    cat >&2 <<'USAGE'
usage: branch.sh up NAME [DIR]      build lab NAME ([a-z0-9]{1,8}) and start it: the central
                                    PBX and registrar, the gateway, Tandem, the phones
                                    (logs in DIR, default /tmp/tandem-branch-NAME)
       branch.sh down NAME          kill its processes, delete it (idempotent)
       branch.sh cut NAME           the WAN drops everything (both ways)
       branch.sh heal NAME          undo cut
       branch.sh loss NAME PERCENT  drop PERCENT % of the WAN's packets each way (0: none)
       branch.sh delay NAME MS      delay the WAN's packets MS ms each way (0: none)
       branch.sh exec NAME NODE CMD…  run CMD in NAME-NODE (br, node, wan, dc)
       branch.sh status NAME        the WAN's state and the registrations, from Tandem
       branch.sh list               lab names present
USAGE
    exit 2
}

check_node() {
    case ${1-} in
    br | node | wan | dc) ;;
    *) die "unknown node '${1-}' (br, node, wan, dc)" ;;
    esac
}

need_lab() {
    check_name "$1"
    ns_exists "$1-node" || die "no lab '$1' (branch.sh up $1 first)"
}

here() {
    cd "$(dirname "${BASH_SOURCE[0]}")" && pwd
}

tandem_bin() {
    local root bin
    root=$(here)/../..
    bin=$root/target/release/tandem
    [[ -x $bin ]] || bin=$root/target/debug/tandem
    [[ -x $bin ]] || die "build tandem first (cargo build --release --bin tandem)"
    echo "$bin"
}

network() {
    local name=$1 br=$1-br node=$1-node wan=$1-wan dc=$1-dc ns
    for ns in "${NODES[@]/#/$name-}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    # The branch LAN: Tandem's lan0 and the LAN's eth0 (one segment;
    # the gateway and the phones are addresses on it).
    ip -n "$node" link add lan0 type veth peer name eth0 netns "$br"
    # The WAN access: Tandem's wan0 to the router's wan0.
    ip -n "$node" link add wan0 type veth peer name wan0 netns "$wan"
    # The centre's side of the router.
    ip -n "$wan" link add dc0 type veth peer name eth0 netns "$dc"
    ip -n "$node" addr add 10.79.0.1/24 dev lan0
    ip -n "$node" addr add 10.80.0.1/24 dev wan0
    ip -n "$br" addr add 10.79.0.10/24 dev eth0  # the local gateway
    ip -n "$br" addr add 10.79.0.20/24 dev eth0  # SIPp phones 1001, 1002
    ip -n "$br" addr add 10.79.0.21/24 dev eth0  # baresip phone 1003
    ip -n "$wan" addr add 10.80.0.2/24 dev wan0
    ip -n "$wan" addr add 10.81.0.2/24 dev dc0
    ip -n "$dc" addr add 10.81.0.10/24 dev eth0  # the PBX
    ip -n "$dc" addr add 10.81.0.11/24 dev eth0  # the registrar
    ip -n "$node" link set lan0 up
    ip -n "$node" link set wan0 up
    ip -n "$br" link set eth0 up
    ip -n "$wan" link set wan0 up
    ip -n "$wan" link set dc0 up
    ip -n "$dc" link set eth0 up
    # The branch LAN has no way out but Tandem (no default route). Its
    # preferred source is baresip's address: baresip's RTP sockets are
    # not bound to one, SIPp's are.
    ip -n "$br" route replace 10.79.0.0/24 dev eth0 src 10.79.0.21
    ip -n "$node" route add 10.81.0.0/24 via 10.80.0.2
    ip -n "$wan" route add 10.79.0.0/24 via 10.80.0.1
    ip -n "$dc" route add default via 10.81.0.2
    # The delayer's device, unused until `delay`: packets it writes back
    # come in on it from addresses routed elsewhere, so reverse path
    # filtering must not drop them.
    ip -n "$wan" tuntap add dev "$DELAY_DEV" mode tun
    # A burst must not overflow the queue toward the delayer (default 500).
    ip -n "$wan" link set "$DELAY_DEV" txqueuelen 10000
    ip -n "$wan" link set "$DELAY_DEV" up
    ip -n "$wan" route add default dev "$DELAY_DEV" table "$DELAY_TABLE"
    ip netns exec "$wan" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
        "net.ipv4.conf.$DELAY_DEV.rp_filter=0"
    ip netns exec "$wan" nft -f "$(here)/wan.nft"
}

# The users' HA1 hashes for the branch and the central registrar (one
# line per user and realm), once per machine (mode 0600: Tandem refuses a credentials file others read).
make_credentials() {
    local bin=$1 user tmp
    grep -qs ":$CENTRE_DOMAIN:" "$CREDENTIALS" && return 0
    mkdir -p -m 700 "$STATE_DIR"
    tmp=$(mktemp "$CREDENTIALS.XXXXXX")
    # The branch's realm (the phones) and the centre's (the branch's
    # Tandem registers the phones' AORs there with them).
    for user in "${USERS[@]}"; do
        for realm in "$DOMAIN" "$CENTRE_DOMAIN"; do
            echo "pw$user" | "$bin" passwd --file "$tmp" --realm "$realm" --user "$user" >/dev/null
        done
    done
    chmod 600 "$tmp"
    mv -f "$tmp" "$CREDENTIALS"
}

# Waits (10 s at most) until `tandem status` in namespace $1 answers on
# admin port $2.
wait_tandem() {
    local ns=$1 port=$2 bin=$3 i
    for ((i = 0; i < 100; i++)); do
        ip netns exec "$ns" "$bin" status --admin "127.0.0.1:$port" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# baresip's configuration for phone 1003 (auto answer, a 440 Hz tone as
# its microphone, no audio device) in directory $1.
baresip_config() {
    local dir=$1
    mkdir -p "$dir"
    printf '%s\n' "poll_method	epoll" "sip_listen	10.79.0.21:5060" "net_interface	10.79.0.21" \
        "audio_source	ausine,440" "audio_player	aubridge,sink-1003" "audio_alert	aubridge,sink-1003" \
        "ausrc_srate	48000" "ausrc_channels	2" "auplay_srate	48000" "auplay_channels	2" \
        "rtp_ports	40000-40063" "rtp_stats	yes" "module_path	/usr/lib/baresip/modules" \
        "module	g711.so" "module	ausine.so" "module	aubridge.so" "module_app	account.so" \
        "module_app	menu.so" >"$dir/config"
    echo "<sip:1003@$DOMAIN;transport=udp>;auth_pass=pw1003;outbound=\"sip:10.79.0.1:5060;transport=udp\";regint=600;answermode=auto;audio_codecs=PCMU" >"$dir/accounts"
}

up() {
    local name=$1 dir=$2 root bin ns
    check_name "$name"
    for ns in "${NODES[@]/#/$name-}"; do
        ns_exists "$ns" && die "namespace $ns exists: run 'branch.sh down $name' first"
    done
    command -v sipp >/dev/null || die "sipp not found (apt-get install sip-tester)"
    command -v nft >/dev/null || die "nft not found (apt-get install nftables)"
    bin=$(tandem_bin)
    root=$(here)/../..
    make_credentials "$bin"
    # The admin token tandem-branch.toml names: `tandem wan --config …`
    # reads it. Random, private, never committed (.gitignore).
    if [[ ! -s $(here)/admin.token ]]; then
        (umask 077 && head -c 24 /dev/urandom | base64 >"$(here)/admin.token")
    fi
    mkdir -p "$dir"
    # Whatever fails from here on, leave nothing half built.
    trap 'rc=$?; down "$name" >/dev/null 2>&1 || true; exit $rc' ERR
    network "$name"

    # The centre: the PBX (answers, echoes RTP) and the registrar.
    ip netns exec "$name-dc" sipp -sn uas -i 10.81.0.10 -p 5060 -mi 10.81.0.10 -rtp_echo -aa \
        -nostdin >"$dir/pbx.log" 2>&1 &
    RUST_LOG=${RUST_LOG:-info} ip netns exec "$name-dc" "$bin" run \
        --config "$(here)/tandem-central.toml" >"$dir/central.log" 2>&1 &
    wait_tandem "$name-dc" 9091 "$bin" || die "the central registrar did not start (log: $dir/central.log)"
    # The branch: the local gateway (answers, echoes RTP), then Tandem.
    ip netns exec "$name-br" sipp -sn uas -i 10.79.0.10 -p 5060 -mi 10.79.0.10 -rtp_echo -aa \
        -nostdin >"$dir/gateway.log" 2>&1 &
    RUST_LOG=${RUST_LOG:-info} ip netns exec "$name-node" "$bin" run \
        --config "$(here)/tandem-branch.toml" >"$dir/tandem.log" 2>&1 &
    wait_tandem "$name-node" 9090 "$bin" || die "the branch's Tandem did not start (log: $dir/tandem.log)"
    # The phones: 1001 and 1002 registered by one SIPp that answers their
    # calls (RTP echoed) for a day, 1003 a baresip answering by itself.
    printf '%s\n' SEQUENTIAL "1001;pw1001;[authentication username=1001 password=pw1001]" \
        "1002;pw1002;[authentication username=1002 password=pw1002]" >"$dir/phones.csv"
    ip netns exec "$name-br" sipp -sf "$root/deploy/sipp/register_digest.xml" -inf "$dir/phones.csv" \
        -key domain "$DOMAIN" -key expires 3600 -i 10.79.0.20 -p 5060 -mi 10.79.0.20 \
        -d 86400000 -m 2 -oocsn uas -rtp_echo -nostdin 10.79.0.1:5060 >"$dir/phones.log" 2>&1 &
    if command -v baresip >/dev/null; then
        baresip_config "$dir/baresip"
        ip netns exec "$name-br" baresip -f "$dir/baresip" >"$dir/baresip.log" 2>&1 &
    else
        echo "branch.sh: baresip not found (apt-get install baresip-core): phone 1003 not started" >&2
    fi
    trap - ERR
    echo "branch.sh: lab $name running; logs in $dir"
    echo "  branch Tandem 10.79.0.1:5060 (admin: branch.sh exec $name node $bin status --admin 127.0.0.1:9090)"
    echo "  gateway 10.79.0.10, phones 1001/1002 on 10.79.0.20, 1003 (baresip) on 10.79.0.21"
    echo "  centre: PBX 10.81.0.10:5060, registrar 10.81.0.11:5060; WAN router $name-wan"
}

down() {
    local name=$1 ns
    check_name "$name"
    for ns in "${NODES[@]/#/$name-}"; do
        ns_exists "$ns" || continue
        kill_ns "$ns"
        ip netns del "$ns" 2>/dev/null || true
    done
}

# Replaces the router's chain $2 by rule $3 (none when empty), in one
# nftables transaction.
set_chain() {
    local name=$1 chain=$2 rule=${3-}
    need_lab "$name"
    {
        echo "flush chain inet wan $chain"
        [[ -n $rule ]] && echo "add rule inet wan $chain $rule"
        true
    } | ip netns exec "$name-wan" nft -f -
}

loss() {
    local name=$1 percent=$2
    [[ $percent =~ ^[0-9]+$ ]] && ((percent <= 100)) || die "loss: PERCENT 0-100, got '$percent'"
    if ((percent == 0)); then
        set_chain "$name" loss
    else
        set_chain "$name" loss "numgen random mod 100 < $percent counter drop"
    fi
}

# The delayer runs in the router; its pid is kept in the router's
# namespace directory of this machine's state.
delay() {
    local name=$1 ms=$2 wan=$1-wan pidfile dev i
    need_lab "$name"
    [[ $ms =~ ^[0-9]+$ ]] && ((ms <= 10000)) || die "delay: MS 0-10000, got '$ms'"
    pidfile=$STATE_DIR/$name-delay.pid
    for dev in wan0 dc0; do
        ip -n "$wan" rule del iif "$dev" lookup "$DELAY_TABLE" 2>/dev/null || true
    done
    if [[ -s $pidfile ]]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
    ((ms == 0)) && return 0
    mkdir -p -m 700 "$STATE_DIR"
    ip netns exec "$wan" python3 "$(here)/wan-delay.py" "$DELAY_DEV" "$ms" </dev/null >/dev/null 2>&1 &
    echo $! >"$pidfile"
    # A TUN device has a carrier only while a process holds it; until
    # then the kernel would drop what is routed there.
    for ((i = 0; i < 100; i++)); do
        ip -n "$wan" link show dev "$DELAY_DEV" | grep -q NO-CARRIER || break
        sleep 0.05
    done
    ip -n "$wan" link show dev "$DELAY_DEV" | grep -q NO-CARRIER && die "the delayer did not attach"
    for dev in wan0 dc0; do
        ip -n "$wan" rule add iif "$dev" lookup "$DELAY_TABLE"
    done
}

status() {
    local name=$1 bin
    need_lab "$name"
    bin=$(tandem_bin)
    ip netns exec "$name-node" curl -sf http://127.0.0.1:9090/metrics |
        grep -E '^tandem_(wan_state|wan_transitions_total|registrations_active|calls_total)' || true
    ip netns exec "$name-node" "$bin" registrations --admin 127.0.0.1:9090 2>/dev/null |
        grep -E '"(aor|contact)"' || true
}

cmd=${1-}
shift || true
case $cmd in
up)
    (($# == 1 || $# == 2)) || usage
    up "$1" "${2:-/tmp/tandem-branch-$1}"
    ;;
down)
    (($# == 1)) || usage
    down "$1"
    rm -f "$STATE_DIR/$1-delay.pid"
    ;;
cut)
    (($# == 1)) || usage
    set_chain "$1" cut "counter drop"
    ;;
heal)
    (($# == 1)) || usage
    set_chain "$1" cut
    ;;
loss)
    (($# == 2)) || usage
    loss "$1" "$2"
    ;;
delay)
    (($# == 2)) || usage
    delay "$1" "$2"
    ;;
exec)
    (($# >= 3)) || usage
    exec_in "$@"
    ;;
status)
    (($# == 1)) || usage
    status "$1"
    ;;
list)
    (($# == 0)) || usage
    ip netns list | sed -n 's/^\([a-z0-9]\{1,8\}\)-node\( .*\)\{0,1\}$/\1/p' | sort
    ;;
*) usage ;;
esac

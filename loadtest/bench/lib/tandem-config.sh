# What the single-binary benches (b2bua-cpu.sh, heap-per-call.sh,
# b2bua-instructions.sh) share. Sourced, not run:
#
#   . "$(dirname "$0")/lib/tandem-config.sh"
#   tandem_bin                   TANDEM_BIN, built (release) when not given
#   bench_dir PREFIX             $dir, a fresh /tmp/PREFIX.XXXXXX; every pid
#                                added to $pids is killed on exit
#   sipp_stat CSV COLUMN         the last value of COLUMN in a SIPp -trace_stat CSV
#
# And Tandem's config for them: one trunk for all of loopback, one media server (the
# SIPp UAS), one relay worker, no media timeout (SIPp's built-in scenarios
# send no RTP), a large UDP receive buffer:
#
#   write_tandem_config FILE SIP_PORT MEDIA_SERVER_PORT ADMIN_PORT [EXTRA_SIP_LINE] [LIMITS_LINES]
#
# EXTRA_SIP_LINE goes into [sip] as is (e.g. "shards = 2"), empty for none;
# LIMITS_LINES into [limits] (e.g. "max_transactions = 20000").
write_tandem_config() {
    local file=$1 sip=$2 media_server=$3 admin=$4 extra_sip=${5:-} limits=${6:-}
    cat >"$file" <<TOML
[sip]
listen = ["127.0.0.1:$sip"]
udp_recv_buffer = 8388608
$extra_sip
[admin]
listen = "127.0.0.1:$admin"
[media]
ip = "127.0.0.1"
port_min = 30000
port_max = 59999
workers = 1
[calls]
media_timeout_s = 0
[[trunk]]
name = "bench"
networks = ["127.0.0.0/8"]
[pool]
strategy = "round-robin"
[[pool.member]]
name = "uas"
address = "127.0.0.1:$media_server"
[limits]
$limits
TOML
}

tandem_bin() {
    TANDEM_BIN=${TANDEM_BIN:-}
    if [ -z "$TANDEM_BIN" ]; then
        cargo build --release --bin tandem >/dev/null 2>&1
        TANDEM_BIN=./target/release/tandem
    fi
}

bench_dir() {
    dir=$(mktemp -d "/tmp/$1.XXXXXX")
    pids=()
    trap bench_cleanup EXIT INT TERM
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

sipp_stat() {
    awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i; next} NF{v=$c} END{print v+0}' "$1"
}

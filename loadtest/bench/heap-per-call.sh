#!/bin/bash
# Where Tandem's heap goes per held call: the release binary runs under
# heaptrack with the config of b2bua-cpu.sh, SIPp places N calls (200 cps)
# and holds them; 35 s after the last one is up (their set-up transactions
# have ended) Tandem gets SIGTERM, and the heap at its peak is split by
# the deepest frame of Tandem's own crates in each allocation's stack.
#
#   flock /tmp/tandem-bench.lock loadtest/bench/heap-per-call.sh 2000
#   TANDEM_BIN=/tmp/tandem-base loadtest/bench/heap-per-call.sh 2000
#
# Needs heaptrack (apt-get install heaptrack) and a binary with debug info
# (the release profile has it).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}
command -v heaptrack >/dev/null || { echo "needs heaptrack (apt-get install heaptrack)"; exit 2; }
TANDEM_BIN=${TANDEM_BIN:-}
if [ -z "$TANDEM_BIN" ]; then
    cargo build --release --bin tandem >/dev/null 2>&1
    TANDEM_BIN=./target/release/tandem
fi
dir=$(mktemp -d /tmp/tandem-heap.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

SIP=26060 MS=26070 ADMIN=29190
cat >"$dir/tandem.toml" <<TOML
[sip]
listen = ["127.0.0.1:$SIP"]
udp_recv_buffer = 8388608
[admin]
listen = "127.0.0.1:$ADMIN"
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
address = "127.0.0.1:$MS"
TOML

sipp -sn uas -i 127.0.0.1 -p $MS -aa -nostdin -buff_size 8388608 >"$dir/uas.log" 2>&1 &
pids+=($!)
# heaptrack runs Tandem as its child with the allocation tracker preloaded.
heaptrack -o "$dir/heaptrack.tandem" "$TANDEM_BIN" run --config "$dir/tandem.toml" >"$dir/tandem.log" 2>&1 &
pids+=($!)
tpid=""
for _ in $(seq 100); do
    tpid=$(pgrep -n -f "^$TANDEM_BIN run --config $dir/tandem.toml" || true)
    [ -n "$tpid" ] && curl -sf "http://127.0.0.1:$ADMIN/metrics" >/dev/null && break
    sleep 0.1
done
[ -n "$tpid" ] || { echo "tandem did not start; see $dir/tandem.log"; exit 1; }
pids+=("$tpid")
sipp -sn uac 127.0.0.1:$SIP -i 127.0.0.1 -p 26091 -m "$N" -r 200 -l "$N" -d $(( (N / 200 + 60) * 1000 )) \
    -nostdin -buff_size 8388608 >"$dir/uac.log" 2>&1 &
pids+=($!)
active=0
for _ in $(seq $((N / 200 + 15))); do
    sleep 1
    active=$(curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^tandem_calls_active/{print $2}')
    [ "${active%.*}" -ge "$N" ] && break
done
sleep 35
kill -TERM "$tpid"
for _ in $(seq 300); do kill -0 "$tpid" 2>/dev/null || break; sleep 0.1; done
for _ in $(seq 100); do ls "$dir"/heaptrack.tandem.* >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
heaptrack_print -f "$dir"/heaptrack.tandem.* --print-peaks 0 --print-allocators 0 \
    --print-temporary 0 --print-leaks 0 -F "$dir/stacks.txt" --flamegraph-cost-type peak >/dev/null 2>&1
python3 - "$dir/stacks.txt" "${active%.*}" <<'PY'
import collections, re, sys
path, calls = sys.argv[1], max(int(sys.argv[2]), 1)
own = re.compile(r"(tandem|media_relay|sipcore|state_sync)::")
total, by = 0, collections.Counter()
for line in open(path):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n)
    total += n
    frames = stack.split(";")
    pick = next((f for f in reversed(frames) if own.search(f)), frames[-1])
    by[re.sub(r"::h[0-9a-f]{16}", "", pick)[:110]] += n
print(f"heap at its peak: {total} bytes with {calls} calls held; per call, by the deepest own frame:")
for k, v in by.most_common(20):
    print(f"{v / calls:9.0f}  {k}")
PY
echo "logs: $dir"

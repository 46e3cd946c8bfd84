#!/bin/bash
# The media relay alone at one load: `forwarder/ tandem-relay` with N
# sessions (2 streams x 50 pps each, so N x 100 pps) on core 0, driven by
# `forwarder/ rtpgen` on core 1 for 12 s after a 2 s warm-up. Prints the
# generator's loss, p50/p99 latency and the relay's packets per CPU-second.
#
#   loadtest/bench/relay-cpu.sh 1000
#   RELAY_BIN=/tmp/base-tandem-relay loadtest/bench/relay-cpu.sh 1000   (another build)
#   PERF=1 loadtest/bench/relay-cpu.sh 1000    (also perf record -g of the relay for 8 s)
#
# Run it under the shared lock (fixed addresses and ports, and figures
# need a quiet core 0):  flock /tmp/tandem-bench.lock loadtest/bench/relay-cpu.sh 1000
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
PERF=${PERF:-0}
FWD=loadtest/bench/forwarder/target/release
if [ -z "${RELAY_BIN:-}" ]; then
    cargo build --release --manifest-path loadtest/bench/forwarder/Cargo.toml >/dev/null 2>&1
    RELAY_BIN=$FWD/tandem-relay
fi
dir=$(mktemp -d /tmp/tandem-relay-cpu.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

taskset -c 0 "$RELAY_BIN" --ip 127.0.61.1 --ga 127.0.61.2:40000 --gb 127.0.61.3:40002 \
    --sessions "$N" --dests-out "$dir/dests.txt" --port-min 20000 --port-max 39999 \
    --workers 1 >"$dir/relay.log" 2>&1 &
rpid=$!
pids+=($rpid)
for _ in $(seq 100); do [ -s "$dir/dests.txt" ] && break; sleep 0.1; done
sleep 1
"$FWD/rtpgen" --ga 127.0.61.2:40000 --gb 127.0.61.3:40002 --dests "$dir/dests.txt" \
    --secs 12 --warmup-secs 2 --core 1 --relay-pid "$rpid" --late-ms 100 >"$dir/gen.out" 2>&1 &
gpid=$!
pids+=($gpid)
if [ "$PERF" = 1 ]; then
    sleep 4
    perf record -F 999 -g -p "$rpid" -o "$dir/perf.data" -- sleep 8 >/dev/null 2>&1 || true
fi
wait "$gpid"
grep '^RESULT ' "$dir/gen.out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read().split("RESULT ", 1)[1])
print("%d pps: loss %.4f %%, p50 %s us, p99 %s us, relay %.2f CPU-s in %d s = %.0f pkts/CPU-s" % (
    r["target_pps"], r["loss_pct"], r["lat_p50_us"], r["lat_p99_us"],
    r["relay_cpu_s"] or 0, r["secs"], r["pkts_per_cpu_s"] or 0))'
if [ "$PERF" = 1 ] && [ -s "$dir/perf.data" ]; then
    perf report -i "$dir/perf.data" --no-children --fields overhead,dso --stdio -g none 2>/dev/null \
        | grep '%' | head -5
    perf report -i "$dir/perf.data" --no-children --fields overhead,sym --stdio -g none 2>/dev/null \
        | grep '%' | head -25
fi
echo "logs: $dir"

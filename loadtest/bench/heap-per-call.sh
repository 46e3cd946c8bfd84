#!/bin/bash
# What a held call costs in Tandem's heap, and where it goes.
#
#   flock /tmp/tandem-bench.lock loadtest/bench/heap-per-call.sh [N1] [N2]   (defaults 1000 4000)
#   TANDEM_BIN=/tmp/tandem-base loadtest/bench/heap-per-call.sh 1000 4000
#
# Two runs, one holding N1 calls and one N2, each with the release binary
# under heaptrack and the config of b2bua-cpu.sh (loadtest/bench/lib/):
# SIPp places the calls (200 cps) and holds them; HOLD_SETTLE_S (35 s)
# after the last one is up, when every set-up transaction has left its
# 32 s wait state, Tandem gets SIGKILL. Nothing is freed then, so
# heaptrack's "leaked" bytes are exactly the heap live at that moment:
# the steady state of N calls held, not the set-up's peak. A held call's
# cost is the marginal (live(N2) - live(N1)) / (N2 - N1): fixed buffers
# (receive buffers, the port pool, tables sized at start) cancel out.
# It is split by the deepest frame of Tandem's own crates in each
# allocation's stack. heaptrack counts the bytes asked for, not malloc's
# chunk headers (8 bytes each) or free lists; the RSS difference of the
# same two runs is printed beside it for that (it also holds heaptrack's
# own tables, so read it as context only).
#
# Second output: the N2 run's heap at its peak (set-up included) per call,
# by the same frames, the figure this script gave before.
#
# Needs heaptrack (apt-get install heaptrack) and a binary with debug info
# (the release profile has it).
set -euo pipefail
cd "$(dirname "$0")/../.."
. loadtest/bench/lib/tandem-config.sh
N1=${1:-1000}
N2=${2:-4000}
HOLD_SETTLE_S=${HOLD_SETTLE_S:-35}
RATE=200
[ "$N2" -gt "$N1" ] || { echo "N2 ($N2) must be more than N1 ($N1)"; exit 2; }
command -v heaptrack >/dev/null || { echo "needs heaptrack (apt-get install heaptrack)"; exit 2; }
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)"; exit 2; }
tandem_bin
bench_dir tandem-heap

SIP=26060 MS=26070 ADMIN=29190
write_tandem_config "$dir/tandem.toml" $SIP $MS $ADMIN

# hold_calls N: one run holding N calls; leaves $dir/N/{live,peak}.txt
# (heaptrack stacks with their bytes), $dir/N/active and $dir/N/rss_kib.
hold_calls() {
    local n=$1 out="$dir/$1" tpid="" active=0
    mkdir -p "$out"
    pids=()
    sipp -sn uas -i 127.0.0.1 -p $MS -aa -nostdin -buff_size 8388608 >"$out/uas.log" 2>&1 &
    pids+=($!)
    # heaptrack runs Tandem as its child with the allocation tracker preloaded.
    heaptrack -o "$out/heaptrack.tandem" "$TANDEM_BIN" run --config "$dir/tandem.toml" >"$out/tandem.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        tpid=$(pgrep -n -f "^$TANDEM_BIN run --config $dir/tandem.toml" || true)
        [ -n "$tpid" ] && curl -sf "http://127.0.0.1:$ADMIN/metrics" >/dev/null && break
        sleep 0.1
    done
    [ -n "$tpid" ] || { echo "tandem did not start; see $out/tandem.log"; exit 1; }
    pids+=("$tpid")
    sipp -sn uac 127.0.0.1:$SIP -i 127.0.0.1 -p 26091 -m "$n" -r $RATE -l "$n" \
        -d $(( (n / RATE + HOLD_SETTLE_S + 60) * 1000 )) -nostdin -buff_size 8388608 >"$out/uac.log" 2>&1 &
    pids+=($!)
    for _ in $(seq $((n / RATE + 15))); do
        sleep 1
        active=$(curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^tandem_calls_active/{print $2}')
        [ "${active%.*}" -ge "$n" ] && break
    done
    sleep "$HOLD_SETTLE_S"
    active=$(curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^tandem_calls_active/{print $2}')
    echo "${active%.*}" >"$out/active"
    awk '/VmRSS/{print $2}' "/proc/$tpid/status" >"$out/rss_kib"
    kill -KILL "$tpid"
    # heaptrack's interpreter writes the file once its child is gone.
    for _ in $(seq 600); do kill -0 "${pids[1]}" 2>/dev/null || break; sleep 0.1; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    local data
    data=$(ls "$out"/heaptrack.tandem.* | head -1)
    for cost in leaked peak; do
        heaptrack_print -f "$data" --print-peaks 0 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
            -F "$out/$cost.stacks" --flamegraph-cost-type "$cost" >/dev/null 2>&1
    done
    mv "$out/leaked.stacks" "$out/live.txt"
    mv "$out/peak.stacks" "$out/peak.txt"
}

hold_calls "$N1"
hold_calls "$N2"

python3 - "$dir" "$N1" "$N2" <<'PY'
import collections, re, sys
d, n1, n2 = sys.argv[1], sys.argv[2], sys.argv[3]
own = re.compile(r"(tandem|media_relay|sipcore|state_sync)::")

def split(path):
    total, by = 0, collections.Counter()
    for line in open(path):
        stack, _, n = line.rstrip().rpartition(" ")
        if not n.isdigit():
            continue
        n = int(n)
        total += n
        frames = stack.split(";")
        pick = next((f for f in reversed(frames) if own.search(f)), frames[-1])
        by[re.sub(r"::h[0-9a-f]{16}", "", pick)[:110]] += n
    return total, by

def read(n, name):
    return open(f"{d}/{n}/{name}").read().strip()

a1, a2 = int(read(n1, "active")), int(read(n2, "active"))
if a2 <= a1:
    sys.exit(f"calls held: {a1} and {a2}; the second run must hold more")
t1, by1 = split(f"{d}/{n1}/live.txt")
t2, by2 = split(f"{d}/{n2}/live.txt")
calls = a2 - a1
r1, r2 = int(read(n1, "rss_kib")), int(read(n2, "rss_kib"))
print(f"live heap: {t1} bytes with {a1} calls held, {t2} with {a2}: "
      f"{(t2 - t1) / calls:.0f} bytes per held call (marginal)")
print(f"RSS (context, heaptrack's tables included): {r1} KiB, {r2} KiB: "
      f"{(r2 - r1) * 1024 / calls:.0f} bytes per held call")
print("per held call, by the deepest own frame:")
diff = collections.Counter({k: by2[k] - by1[k] for k in set(by1) | set(by2)})
for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:20]:
    print(f"{v / calls:9.0f}  {k}")
pt, pby = split(f"{d}/{n2}/peak.txt")
print(f"\nheap at its peak (set-up included): {pt} bytes with {a2} calls held; per call, by the deepest own frame:")
for k, v in pby.most_common(20):
    print(f"{v / a2:9.0f}  {k}")
PY
echo "logs: $dir"

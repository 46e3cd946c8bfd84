#!/usr/bin/env bash
# Tandem's CPU time per call as a B2BUA (INVITE/100/180/200/ACK/BYE/200 on
# both legs, no media), at a sustained rate, and its memory per held call.
#
#   loadtest/bench/b2bua-cpu.sh [RATE] [SECONDS]        (defaults 400 cps, 30 s)
#   HOLD_CALLS=4000 loadtest/bench/b2bua-cpu.sh          (also: memory per held call)
#   PERF=1 loadtest/bench/b2bua-cpu.sh 1000 20           (also: a perf profile of
#                                                          the window, top symbols)
#   CENSUS=1 loadtest/bench/b2bua-cpu.sh 1000 20         (also: Tandem's system calls per
#                                                          call over the window, perf stat)
#   TANDEM_BIN=/tmp/tandem-base loadtest/bench/b2bua-cpu.sh 1000 20
#                                                         (another build, e.g. the commit
#                                                          before a change, for a ratio)
#   SHARDS=2 loadtest/bench/b2bua-cpu.sh 1000 20          (`sip.shards = 2`: tandem pinned
#                                                          to cores 0-1, SIPp still on 1)
#   SHARDS=2 TANDEM_CPUS=0 loadtest/bench/b2bua-cpu.sh 1000 20
#                                                         (both shards on core 0, SIPp alone
#                                                          on core 1)
#   LIMITS='max_transactions = 20000' loadtest/bench/b2bua-cpu.sh 500 40
#                                                         (`[limits]` lines for Tandem's config,
#                                                          e.g. a cap scaled down to a rate the
#                                                          machine sustains)
#
# Tandem's overload counters and transaction gauges are printed after the
# window (a 503 it sent is a failed call).
#
# The held calls' RSS is read once their set-up transactions have ended
# (HOLD_SETTLE_S after the last call is up, default 35 s: 64*T1 = 32 s),
# so it is what a call costs while it lasts; the kernel's UDP socket
# memory (/proc/net/sockstat, not in RSS) is printed beside it.
#
# tandem is pinned to core 0 (cores 0-1 with SHARDS=2 or more), SIPp (UAC
# and UAS) to core 1. CPU time is
# read from /proc/<pid>/stat (utime+stime) around the measured window; a
# run counts only with zero failed calls, zero retransmissions and no new
# UDP receive-buffer errors in /proc/net/snmp.
set -euo pipefail
cd "$(dirname "$0")/../.."
. loadtest/bench/lib/tandem-config.sh
RATE=${1:-400}
SECS=${2:-30}
HOLD_CALLS=${HOLD_CALLS:-0}
HOLD_SETTLE_S=${HOLD_SETTLE_S:-35}
PERF=${PERF:-0}
CENSUS=${CENSUS:-0}
TANDEM_BIN=${TANDEM_BIN:-}
SHARDS=${SHARDS:-1}
LIMITS=${LIMITS:-}
# One shard: today's layout (core 0). More: the shards' threads may use
# both cores, SIPp's core included (this machine has two).
shards_line=""
if [ "$SHARDS" -gt 1 ]; then
    shards_line="shards = $SHARDS"
fi
# TANDEM_CPUS=0 with SHARDS=2 puts both shards on core 0, away from SIPp:
# what sharding itself costs, without a shard sharing SIPp's core.
TANDEM_CPUS=${TANDEM_CPUS:-$([ "$SHARDS" -gt 1 ] && echo 0-1 || echo 0)}
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)"; exit 2; }
tandem_bin
bench_dir tandem-bench

SIP=25060 MS=25070 ADMIN=29090
write_tandem_config "$dir/tandem.toml" $SIP $MS $ADMIN "$shards_line" "$LIMITS"

taskset -c 1 sipp -sn uas -i 127.0.0.1 -p $MS -aa -nostdin -buff_size 8388608 >"$dir/uas.log" 2>&1 &
pids+=($!)
taskset -c "$TANDEM_CPUS" "$TANDEM_BIN" run --config "$dir/tandem.toml" >"$dir/tandem.log" 2>&1 &
tpid=$!
pids+=($tpid)
sleep 1.5

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rcvbuf_errors() { awk '/^Udp:/{if(!h){split($0,n);h=1}else{split($0,v);for(i in n) if(n[i]=="RcvbufErrors") print v[i]}}' /proc/net/snmp; }
hz=$(getconf CLK_TCK)

calls=$((RATE * SECS))
err0=$(rcvbuf_errors)
c0=$(cpu_ticks $tpid)
t0=$(date +%s.%N)
if [ "$PERF" = 1 ]; then
    # Sampled on Tandem's pid for the measured window only (perf runs on
    # core 1 with SIPp: it samples core 0's Tandem, it does not share it).
    taskset -c 1 perf record -F 999 -p "$tpid" -o "$dir/perf.data" >"$dir/perf-record.log" 2>&1 &
    perf_pid=$!
    pids+=($perf_pid)
fi
if [ "$CENSUS" = 1 ]; then
    # Every syscall tracepoint, on Tandem's threads, for the window.
    taskset -c 1 perf stat -x, -e 'syscalls:sys_enter_*' -p "$tpid" -o "$dir/census.csv" >/dev/null 2>&1 &
    census_pid=$!
    pids+=($census_pid)
fi
taskset -c 1 sipp -sn uac 127.0.0.1:$SIP -i 127.0.0.1 -p 25090 -m $calls -r $RATE -d 0 -l $((RATE * 4)) \
    -nostdin -buff_size 8388608 -trace_stat -stf "$dir/uac.csv" -fd 1 -timeout $((SECS * 3))s >"$dir/uac.log" 2>&1 || true
c1=$(cpu_ticks $tpid)
t1=$(date +%s.%N)
err1=$(rcvbuf_errors)
if [ "$PERF" = 1 ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
fi
if [ "$CENSUS" = 1 ]; then
    kill -INT "$census_pid" 2>/dev/null || true
    wait "$census_pid" 2>/dev/null || true
fi
col() { sipp_stat "$dir/uac.csv" "$1"; }
ok=$(col 'SuccessfulCall(C)'); failed=$(col 'FailedCall(C)'); retrans=$(col 'Retransmissions(C)')
cpu_s=$(echo "($c1 - $c0) / $hz" | bc -l)
wall=$(echo "$t1 - $t0" | bc -l)
us_per_call=$(echo "$cpu_s * 1000000 / $ok" | bc -l)
printf 'shards %d, ' "$SHARDS"
printf 'rate %d cps for %d s: %d calls ok, %d failed, %d retransmissions, %d new UDP rcvbuf errors\n' \
    "$RATE" "$SECS" "$ok" "$failed" "$retrans" "$((err1 - err0))"
printf 'tandem CPU: %.2f s over %.1f s wall = %.1f us per call (%.0f%% of one core)\n' \
    "$cpu_s" "$wall" "$us_per_call" "$(echo "$cpu_s * 100 / $wall" | bc -l)"

if [ "$CENSUS" = 1 ] && [ -s "$dir/census.csv" ]; then
    echo "system calls per call over the window ($dir/census.csv):"
    awk -F, -v calls="$ok" '$1 ~ /^[0-9]+$/ && $1 > 0 && calls > 0 {
        sub("syscalls:sys_enter_", "", $3); printf "  %-20s %6.2f\n", $3, $1 / calls }' \
        "$dir/census.csv" | sort -k2 -nr | head -14
fi

if [ "$HOLD_CALLS" -gt 0 ]; then
    rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
    udp_pages() { awk '/^UDP:/{for(i=1;i<=NF;i++) if($i=="mem") print $(i+1)}' /proc/net/sockstat; }
    page=$(getconf PAGESIZE)
    r0=$(rss $tpid)
    u0=$(udp_pages)
    hold_rate=500
    taskset -c 1 sipp -sn uac 127.0.0.1:$SIP -i 127.0.0.1 -p 25091 -m $HOLD_CALLS -r $hold_rate \
        -l $HOLD_CALLS -d $(( (HOLD_CALLS / hold_rate + HOLD_SETTLE_S + 20) * 1000 )) -nostdin -buff_size 8388608 \
        -trace_stat -stf "$dir/hold.csv" -fd 1 >"$dir/hold.log" 2>&1 &
    hpid=$!
    pids+=($hpid)
    active=0
    for _ in $(seq $((HOLD_CALLS / hold_rate + 15))); do
        sleep 1
        active=$(curl -sf http://127.0.0.1:$ADMIN/metrics | awk '/^tandem_calls_active/{print $2}')
        [ "${active%.*}" -ge "$HOLD_CALLS" ] && break
    done
    sleep "$HOLD_SETTLE_S"
    r1=$(rss $tpid)
    u1=$(udp_pages)
    printf 'memory: RSS %d KiB idle, %d KiB with %s calls held %d s = %.0f bytes per call (both legs + media session)\n' \
        "$r0" "$r1" "${active%.*}" "$HOLD_SETTLE_S" "$(echo "($r1 - $r0) * 1024 / ${active%.*}" | bc -l)"
    printf 'kernel UDP socket memory (not in RSS): %d pages more = %.0f bytes per call\n' \
        "$((u1 - u0))" "$(echo "($u1 - $u0) * $page / ${active%.*}" | bc -l)"
    kill $hpid 2>/dev/null || true
fi
if [ "$PERF" = 1 ] && [ -s "$dir/perf.data" ]; then
    perf report -i "$dir/perf.data" --no-children --fields overhead,dso,sym --stdio >"$dir/perf-report.txt" 2>/dev/null || true
    perf report -i "$dir/perf.data" --no-children --fields overhead,dso --stdio >"$dir/perf-dso.txt" 2>/dev/null || true
    { grep -v -e '^#' -e '^$' "$dir/perf-dso.txt" | sed 's/ *$//' | head -6
      echo "  --"
      grep -v -e '^#' -e '^$' "$dir/perf-report.txt" | sed 's/ *$//' | head -25; } >"$dir/perf-top.txt" || true
    echo "perf profile of the window, by object then top symbols ($dir/perf-top.txt):"
    sed 's/^/  /' "$dir/perf-top.txt"
fi
curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" \
    | grep -E '^tandem_sip_(overload_total|server_transactions)' || true
echo "logs: $dir"

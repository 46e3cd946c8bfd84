#!/usr/bin/env bash
# User-space instructions per call of Tandem as a B2BUA, or of Kamailio (the calls of
# b2bua-cpu.sh: INVITE/100/180/200/ACK/BYE/200 on both legs, no media),
# counted by valgrind's callgrind, with the functions that spend them.
#
#   loadtest/bench/b2bua-instructions.sh [CALLS] [RATE]     (defaults 1000 calls at 20 cps)
#   TANDEM_BIN=/tmp/tandem-base loadtest/bench/b2bua-instructions.sh
#   SYSTEM=kamailio-dialog loadtest/bench/b2bua-instructions.sh   (the comparator of
#       `run signalling`, kamailio-dialog.cfg, every process of it counted)
#
# Why beside b2bua-cpu.sh: CPU seconds per call scatter by ±12 % on this
# shared 2-core box, more than most single changes to the signalling path
# move them. Instructions counted by callgrind are the same for the same
# binary and load whatever else the machine does, so a change's effect on
# Tandem's own code is read off one run each. What they do not count: the
# kernel's side (system calls, loopback delivery, wake-ups; `CENSUS=1
# b2bua-cpu.sh` counts the system calls) and cache or branch effects.
#
# Under callgrind Tandem runs ~50x slower, so the rate stays low (20 cps
# uses about a quarter of a core); the counts are per call and do not
# depend on the rate except through how many messages share a wake-up.
# A warm-up of WARMUP calls (default 200) runs first, then the counters
# are zeroed (callgrind_control --zero), the measured calls run, and the
# window is dumped (callgrind_control --dump). A run counts only with zero
# failed calls and zero retransmissions.
set -euo pipefail
cd "$(dirname "$0")/../.."
. loadtest/bench/lib/tandem-config.sh
CALLS=${1:-1000}
RATE=${2:-20}
WARMUP=${WARMUP:-200}
TANDEM_BIN=${TANDEM_BIN:-}
SYSTEM=${SYSTEM:-tandem}
case "$SYSTEM" in tandem|kamailio-tm|kamailio-dialog) ;; *) echo "SYSTEM: tandem, kamailio-tm or kamailio-dialog"; exit 2;; esac
for tool in sipp valgrind callgrind_control callgrind_annotate; do
    command -v $tool >/dev/null || { echo "needs $tool (apt-get install sip-tester valgrind)"; exit 2; }
done
[ "$SYSTEM" = tandem ] && tandem_bin
bench_dir tandem-instr

SIP=25160 MS=25170 ADMIN=29190
write_tandem_config "$dir/tandem.toml" $SIP $MS $ADMIN
# The kernel fast path is off: valgrind does not know the bpf system call.
sed -i 's/^\[media\]$/[media]\nfast_path = "off"/' "$dir/tandem.toml"

sipp -sn uas -i 127.0.0.1 -p $MS -aa -nostdin -buff_size 8388608 >"$dir/uas.log" 2>&1 &
pids+=($!)
if [ "$SYSTEM" = tandem ]; then
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out.%p" \
        "$TANDEM_BIN" run --config "$dir/tandem.toml" >"$dir/system.log" 2>&1 &
else
    # Kamailio forks its workers: every process is followed and counted.
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$dir/callgrind.out.%p" \
        kamailio -DD -E -f "loadtest/bench/$SYSTEM.cfg" -l udp:127.0.0.1:$SIP -m 2048 -M 32 \
        -x fm -X fm -Y "$dir" -w "$dir" -A "UAS_URI=\"sip:127.0.0.1:$MS\"" >"$dir/system.log" 2>&1 &
fi
vpid=$!
pids+=($vpid)
up=0
for _ in $(seq 120); do
    if ss -Hlun "sport = :$SIP" | grep -q .; then up=1; break; fi
    sleep 0.5
done
[ "$up" = 1 ] || { echo "$SYSTEM under valgrind not up within 60 s ($dir/system.log)"; exit 1; }
# Every process of the system: valgrind's pid and, for Kamailio, its children.
system_pids() { echo "$vpid"; pgrep -P "$vpid" || true; }

# One SIPp UAC run: CALLS calls at RATE, its CSV in $dir/$name.csv.
uac() {
    local name=$1 calls=$2 port=$3
    sipp -sn uac 127.0.0.1:$SIP -i 127.0.0.1 -p "$port" -m "$calls" -r "$RATE" -d 0 -l $((RATE * 4)) \
        -nostdin -buff_size 8388608 -trace_stat -stf "$dir/$name.csv" -fd 1 \
        -timeout $((calls / RATE * 3 + 30))s >"$dir/$name.log" 2>&1 || true
}
col() { sipp_stat "$dir/$1.csv" "$2"; }

uac warmup "$WARMUP" 25190
for p in $(system_pids); do callgrind_control --zero "$p" >/dev/null 2>&1; done
uac window "$CALLS" 25191
for p in $(system_pids); do callgrind_control --dump=window "$p" >/dev/null 2>&1; done
ok=$(col window 'SuccessfulCall(C)'); failed=$(col window 'FailedCall(C)'); retrans=$(col window 'Retransmissions(C)')
dumps=$(ls "$dir"/callgrind.out.*.1 2>/dev/null | paste -sd, -)
[ -n "$dumps" ] || { echo "no callgrind dump ($dir)"; exit 1; }
out=$(ls -S "$dir"/callgrind.out.*.1 | head -1)   # the busiest process
callgrind_annotate --inclusive=yes "$out" >"$dir/inclusive.txt" 2>/dev/null || true
callgrind_annotate --tree=caller --inclusive=yes --threshold=100 "$out" >"$dir/callers.txt" 2>/dev/null || true
printf 'rate %d cps, %d calls: %d ok, %d failed, %d retransmissions\n' "$RATE" "$CALLS" "$ok" "$failed" "$retrans"
[ "$ok" -gt 0 ] || exit 1
echo "$SYSTEM: user-space instructions per call, and the top functions by their own:"
python3 loadtest/bench/lib/callgrind-self.py "$dumps" "$ok" "${TOP:-25}" | sed 's/^total own instructions/  all/'
echo "logs: $dir (inclusive.txt, callers.txt: who calls what, of the busiest process $out)"

//! The RTP generator shared by every relay under test.
//!
//! Two sockets play the two ends of every call: GA is leg A (the caller),
//! GB leg B (the callee). The destinations file has one line per session,
//! `A_DEST B_DEST`: GA sends that session's leg-A stream to A_DEST and the
//! relay must deliver it to GB; GB sends the leg-B stream to B_DEST and the
//! relay must deliver it to GA. Every stream runs at `--stream-pps` (50 =
//! 20 ms G.711 packets, 172 bytes each); the rate ramps up from 10 % to
//! 100 % during `--warmup-secs` (rtpengine gives up on a socket that stays
//! backlogged, so the load must not arrive as a wall), then holds for
//! `--secs`, the measured window.
//!
//! Each packet carries its send time (ns since the epoch) in the first 8
//! payload bytes and its stream number as SSRC. Latency is the kernel's
//! receive timestamp (SO_TIMESTAMPNS) on GA/GB minus the send time: the path
//! through the relay, not the generator's own receive backlog (it still
//! includes up to one generator batch of send time, the same for every
//! relay). Loss counts packets sent in the window that never came back
//! (500 ms drain at the end); `late` counts those that came back later than
//! `--late-ms` (100): a jitter buffer would have dropped them, and a queue
//! that deep means the relay is falling behind.
//!
//! With `--relay-pid`, the relay process's CPU time (every thread, from
//! /proc/<pid>/stat) is read at the start and end of the window, giving
//! packets relayed per CPU-second. The generator reports whether it kept to
//! its schedule (`gen_behind`): one core sends and receives about 180,000
//! packets per second on the reference machine, so above that the
//! generator, not the relay, is the limit.
//!
//! Prints a human summary on stderr and one `RESULT {json}` line on stdout.
//!
//! ```text
//! rtpgen --ga 127.0.61.2:40000 --gb 127.0.61.3:40002 --dests FILE
//!        [--stream-pps 50] [--secs 30] [--warmup-secs 5] [--core 1]
//!        [--relay-pid PID] [--gen-batch 16] [--gen-sleep-us 100] [--late-ms 100]
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use media_relay::sys::{pin_current_thread, set_rx_timestamps, RecvBatch, SendBatch};
use socket2::{SockAddr, SockRef};
use tandem_bench_media::{
    core_irq_secs, die, process_cpu_secs, thread_cpu_secs, thread_run_delay_secs, Opts,
};

const PKT_LEN: usize = 12 + 160;
/// Latency histogram: 1 us buckets up to 1 s, then one overflow bucket.
const HIST_US: usize = 1_000_000;

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn gen_socket(addr: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap_or_else(|e| die(&format!("bind {addr}: {e}")));
    s.set_nonblocking(true).unwrap();
    let r = SockRef::from(&s);
    // Capped by net.core.rmem_max / wmem_max (the kernel doubles it).
    r.set_recv_buffer_size(8 << 20).unwrap();
    r.set_send_buffer_size(8 << 20).unwrap();
    set_rx_timestamps(s.as_fd(), true).unwrap();
    s
}

fn read_dests(path: &str) -> Vec<SockAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    let mut dests = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        for _ in 0..2 {
            let a: SocketAddr = f
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| die(&format!("{path}:{}: want `A_DEST B_DEST`", n + 1)));
            dests.push(SockAddr::from(a));
        }
    }
    if dests.is_empty() {
        die(&format!("{path}: no sessions"));
    }
    dests
}

struct Sink {
    recv: RecvBatch,
    hist: Vec<u32>,
    received: u64,
    per_stream: Vec<u64>,
    measure_from_ns: u64,
    measure_to_ns: u64,
}

impl Sink {
    fn drain(&mut self, sock: &UdpSocket) {
        while let Ok(n) = self.recv.recv(sock.as_fd()) {
            let now = unix_ns();
            for k in 0..n {
                let p = self.recv.packet(k);
                if p.len() < 20 || p[0] >> 6 != 2 {
                    continue;
                }
                let sent_ns = u64::from_be_bytes(p[12..20].try_into().unwrap());
                let ssrc = u32::from_be_bytes(p[8..12].try_into().unwrap()) as usize;
                if let Some(c) = self.per_stream.get_mut(ssrc) {
                    *c += 1;
                }
                if sent_ns >= self.measure_from_ns && sent_ns < self.measure_to_ns {
                    self.received += 1;
                    let arrived = self.recv.timestamp(k).map_or(now, |t| t.as_nanos() as u64);
                    let us = (arrived.saturating_sub(sent_ns) / 1000) as usize;
                    self.hist[us.min(HIST_US)] += 1;
                }
            }
            if n < self.recv.capacity() {
                return;
            }
        }
    }

    fn percentile(&self, p: f64) -> u64 {
        let total: u64 = self.hist.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64 - 1.0) * p) as u64 + 1;
        let mut seen = 0u64;
        for (us, &c) in self.hist.iter().enumerate() {
            seen += u64::from(c);
            if seen >= want {
                return us as u64;
            }
        }
        HIST_US as u64
    }
}

/// Packets due by `t` seconds: a linear ramp from 10 % to 100 % of `rate`
/// over `warmup` seconds, then the full rate.
fn due(rate: f64, warmup: f64, t: f64) -> u64 {
    let n = if warmup <= 0.0 {
        rate * t
    } else if t < warmup {
        rate * (0.1 * t + 0.45 * t * t / warmup)
    } else {
        rate * (0.55 * warmup + (t - warmup))
    };
    n as u64
}

fn main() {
    let o = Opts::parse(&[
        "--ga",
        "--gb",
        "--dests",
        "--stream-pps",
        "--secs",
        "--warmup-secs",
        "--core",
        "--relay-pid",
        "--gen-batch",
        "--gen-sleep-us",
        "--late-ms",
        "--irq-core",
    ]);
    let ga_addr: SocketAddr = o.req("--ga");
    let gb_addr: SocketAddr = o.req("--gb");
    let dests = read_dests(&o.req::<String>("--dests"));
    let stream_pps: f64 = o.get("--stream-pps", 50.0);
    let secs: f64 = o.get("--secs", 30.0);
    let warmup: f64 = o.get("--warmup-secs", 5.0);
    let core: Option<usize> = o.opt("--core");
    let relay_pid: Option<u32> = o.opt("--relay-pid");
    // The core whose interrupt/softirq time counts as the relay's too (a
    // kernel fast path runs there, in no process).
    let irq_core: Option<usize> = o.opt("--irq-core");
    let mut irq0 = 0.0;
    let irq_s: Option<f64>;
    let gen_batch: usize = o.get("--gen-batch", 16);
    let sleep_us: u64 = o.get("--gen-sleep-us", 100);
    let late_us: usize = o.get::<usize>("--late-ms", 100) * 1000;

    if let Some(c) = core {
        pin_current_thread(c).unwrap_or_else(|e| die(&format!("pin to core {c}: {e}")));
    }
    let ga = gen_socket(ga_addr);
    let gb = gen_socket(gb_addr);
    let streams = dests.len();
    let rate = stream_pps * streams as f64;
    eprintln!(
        "rtpgen: {} sessions, {streams} streams x {stream_pps} pps = {rate:.0} pps, \
         ramp {warmup} s, measure {secs} s, core {core:?}, relay pid {relay_pid:?}",
        streams / 2
    );

    let start = Instant::now();
    let start_ns = unix_ns();
    let measure_from_ns = start_ns + (warmup * 1e9) as u64;
    let measure_to_ns = start_ns + ((warmup + secs) * 1e9) as u64;
    let mut sink = Sink {
        recv: RecvBatch::new(64).with_timestamps(),
        hist: vec![0; HIST_US + 1],
        received: 0,
        per_stream: vec![0; streams],
        measure_from_ns,
        measure_to_ns,
    };
    let mut seq = vec![0u16; streams];
    let mut send = SendBatch::new();
    let mut batch_a: Vec<[u8; PKT_LEN]> = Vec::with_capacity(gen_batch);
    let mut dest_a: Vec<usize> = Vec::with_capacity(gen_batch);
    let mut batch_b: Vec<[u8; PKT_LEN]> = Vec::with_capacity(gen_batch);
    let mut dest_b: Vec<usize> = Vec::with_capacity(gen_batch);
    let mut next_stream = 0usize;
    let mut sent_total = 0u64;
    let mut sent = 0u64; // in the window
    let mut send_failed = 0u64; // in the window
    let mut send_error: Option<String> = None;
    let mut max_lag = 0u64;
    let mut in_window = false;
    let mut relay_cpu0 = 0.0;
    let mut gen_cpu0 = 0.0;
    let relay_cpu: Option<f64>;
    let gen_cpu: f64;
    let mut gen_wait0 = 0.0;
    let gen_wait: f64;
    let window_start = Duration::from_secs_f64(warmup);
    let window_end = Duration::from_secs_f64(warmup + secs);

    loop {
        let elapsed = start.elapsed();
        if !in_window && elapsed >= window_start {
            in_window = true;
            relay_cpu0 = relay_pid.and_then(process_cpu_secs).unwrap_or(0.0);
            irq0 = irq_core.and_then(core_irq_secs).unwrap_or(0.0);
            gen_cpu0 = thread_cpu_secs();
            gen_wait0 = thread_run_delay_secs();
        }
        if elapsed >= window_end {
            relay_cpu = relay_pid.and_then(process_cpu_secs).map(|c| c - relay_cpu0);
            irq_s = irq_core.and_then(core_irq_secs).map(|c| c - irq0);
            gen_cpu = thread_cpu_secs() - gen_cpu0;
            gen_wait = thread_run_delay_secs() - gen_wait0;
            break;
        }
        let due_now = due(rate, warmup, elapsed.as_secs_f64());
        if in_window {
            max_lag = max_lag.max(due_now.saturating_sub(sent_total));
        }
        while sent_total < due_now && batch_a.len() + batch_b.len() < gen_batch {
            let s = next_stream;
            next_stream = (next_stream + 1) % streams;
            let sq = seq[s];
            seq[s] = sq.wrapping_add(1);
            let now_ns = unix_ns();
            let mut p = [0xd5u8; PKT_LEN];
            p[0] = 0x80;
            p[1] = 0; // PCMU
            p[2..4].copy_from_slice(&sq.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(sq) * 160).to_be_bytes());
            p[8..12].copy_from_slice(&(s as u32).to_be_bytes());
            p[12..20].copy_from_slice(&now_ns.to_be_bytes());
            if s.is_multiple_of(2) {
                batch_a.push(p);
                dest_a.push(s);
            } else {
                batch_b.push(p);
                dest_b.push(s);
            }
            sent_total += 1;
            if in_window {
                sent += 1;
            }
        }
        for (sock, batch, dest) in [
            (&ga, &mut batch_a, &mut dest_a),
            (&gb, &mut batch_b, &mut dest_b),
        ] {
            if !batch.is_empty() {
                let out = send.send(
                    sock.as_fd(),
                    batch
                        .iter()
                        .zip(dest.iter())
                        .map(|(p, s)| (&p[..], Some(&dests[*s]))),
                );
                if out.failed > 0 || out.sent < batch.len() {
                    if in_window {
                        send_failed += (batch.len() - out.sent) as u64;
                    }
                    if let Some(e) = out.last_error {
                        send_error = Some(e.to_string());
                    }
                }
                batch.clear();
                dest.clear();
            }
        }
        sink.drain(&ga);
        sink.drain(&gb);
        if sent_total >= due_now {
            // Ahead of schedule: leave the core to the kernel's softirq work.
            std::thread::sleep(Duration::from_micros(sleep_us));
        }
    }
    let window = secs;
    let drain_end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < drain_end {
        sink.drain(&ga);
        sink.drain(&gb);
        std::thread::sleep(Duration::from_millis(1));
    }

    let delivered_sent = sent.saturating_sub(send_failed);
    let lost = delivered_sent.saturating_sub(sink.received);
    let loss_pct = 100.0 * lost as f64 / delivered_sent.max(1) as f64;
    let send_pps = delivered_sent as f64 / window;
    let fwd_pps = sink.received as f64 / window;
    let silent = sink.per_stream.iter().filter(|&&c| c == 0).count();
    // Behind: below 99 % of the planned rate, or refused sends.
    let behind = send_pps < 0.99 * rate || send_failed > 0;
    let (p50, p90, p99, p999) = (
        sink.percentile(0.5),
        sink.percentile(0.9),
        sink.percentile(0.99),
        sink.percentile(0.999),
    );
    let pkts_per_cpu_s = relay_cpu.map(|c| sink.received as f64 / c.max(0.01));
    let pkts_per_cpu_irq_s = relay_cpu
        .zip(irq_s)
        .map(|(c, i)| sink.received as f64 / (c + i).max(0.01));
    let late: u64 = sink.hist[late_us.min(HIST_US)..]
        .iter()
        .map(|&c| u64::from(c))
        .sum();
    let late_pct = 100.0 * late as f64 / delivered_sent.max(1) as f64;
    eprintln!(
        "sent {delivered_sent} pkts in {window} s ({send_pps:.0} pps of {rate:.0} planned{}), \
         received {} ({fwd_pps:.0} pps), loss {lost} = {loss_pct:.4} %",
        if behind { ", GENERATOR BEHIND" } else { "" },
        sink.received
    );
    eprintln!(
        "latency (us): p50 {p50}  p90 {p90}  p99 {p99}  p99.9 {p999}; \
         {late} pkts ({late_pct:.4} %) later than {} ms",
        late_us / 1000
    );
    if let (Some(c), Some(ppc)) = (relay_cpu, pkts_per_cpu_s) {
        eprintln!(
            "relay CPU {c:.2} s in {window} s ({:.0} % of a core): {ppc:.0} packets per CPU-second",
            100.0 * c / window
        );
    }
    eprintln!(
        "generator CPU {gen_cpu:.2} s ({:.0} % of its core), waited {:.0} ms for its core, max lag {:.1} ms, {silent} silent streams{}",
        100.0 * gen_cpu / window,
        1000.0 * gen_wait,
        1000.0 * max_lag as f64 / rate,
        send_error.as_deref().map(|e| format!(", send error: {e}")).unwrap_or_default()
    );
    let num = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
    println!(
        "RESULT {{\"sessions\":{},\"streams\":{streams},\"target_pps\":{rate:.1},\
         \"secs\":{window},\"sent\":{delivered_sent},\"received\":{},\"lost\":{lost},\
         \"loss_pct\":{loss_pct:.5},\"send_pps\":{send_pps:.1},\"fwd_pps\":{fwd_pps:.1},\
         \"lat_p50_us\":{p50},\"lat_p90_us\":{p90},\"lat_p99_us\":{p99},\"lat_p999_us\":{p999},\"late\":{late},\"late_pct\":{late_pct:.5},\
         \"relay_cpu_s\":{},\"pkts_per_cpu_s\":{},\"gen_cpu_s\":{gen_cpu:.3},\"gen_wait_ms\":{:.1},\
         \"gen_behind\":{behind},\"gen_send_failed\":{send_failed},\"gen_max_lag_ms\":{:.2},\
         \"silent_streams\":{silent},\"irq_s\":{},\"pkts_per_cpu_irq_s\":{}}}",
        streams / 2,
        sink.received,
        num(relay_cpu),
        num(pkts_per_cpu_s),
        1000.0 * gen_wait,
        1000.0 * max_lag as f64 / rate,
        num(irq_s),
        num(pkts_per_cpu_irq_s),
    );
}

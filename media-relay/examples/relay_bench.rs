//! Forwarding benchmark on loopback.
//!
//! Starts a relay (one worker pinned to a core by default), creates N
//! sessions, and drives both directions of every session from a generator
//! thread pinned to another core: generator socket GA plays leg A of every
//! session, GB plays leg B. Each RTP packet carries its send time; the
//! generator receives what the relay forwards and reports throughput, loss,
//! the relay worker's CPU per packet, and latency: from the send time to
//! the kernel's receive timestamp (SO_TIMESTAMPNS) on the generator socket,
//! i.e. the path through the relay, without the generator's own receive
//! backlog (it still includes up to one generator batch of send time).
//!
//! On a 2-core machine the generator does the same kernel work per packet
//! as the relay (one send, one receive), so both saturate at about the same
//! rate; the CPU-per-packet line is the relay's capacity measure.
//!
//! ```text
//! cargo run --release -p media-relay --example relay_bench -- \
//!     [--sessions 1500] [--pps 150000] [--secs 5] [--workers 1] \
//!     [--relay-core 0] [--gen-core 1] [--batch 32] [--warmup-secs 1] \
//!     [--busy-poll-us 0] [--connect-latched true] [--gen-batch 16] \
//!     [--gen-sleep-us 100]
//! ```
//!
//! Defaults: 1500 sessions x 2 directions x 50 packets/s = 150,000 pps of
//! 172-byte G.711 packets. Uses 127.0.50.0/24 and ports 10000-29999.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use media_relay::rtp::{self, build_rtp};
use media_relay::sys::{
    pin_current_thread, raise_fd_limit, set_rx_timestamps, RecvBatch, SendBatch,
};
use media_relay::{MediaRelay, RelayConfig, SessionId, SessionParams};
use socket2::{SockAddr, SockRef};

struct Args {
    sessions: usize,
    pps: f64,
    secs: f64,
    warmup_secs: f64,
    workers: usize,
    relay_core: Option<usize>,
    gen_core: Option<usize>,
    batch: usize,
    busy_poll_us: u64,
    connect_latched: bool,
    gen_batch: usize,
    gen_sleep_us: u64,
}

fn args() -> Args {
    let mut a = Args {
        sessions: 1500,
        pps: 150_000.0,
        secs: 5.0,
        warmup_secs: 1.0,
        workers: 1,
        relay_core: Some(0),
        gen_core: Some(1),
        batch: 32,
        busy_poll_us: 0,
        connect_latched: true,
        gen_batch: 16,
        gen_sleep_us: 100,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        let core = |v: &str| (v != "none").then(|| v.parse().expect("core number or none"));
        match k.as_str() {
            "--sessions" => a.sessions = v.parse().expect("--sessions"),
            "--pps" => a.pps = v.parse().expect("--pps"),
            "--secs" => a.secs = v.parse().expect("--secs"),
            "--warmup-secs" => a.warmup_secs = v.parse().expect("--warmup-secs"),
            "--workers" => a.workers = v.parse().expect("--workers"),
            "--relay-core" => a.relay_core = core(v),
            "--gen-core" => a.gen_core = core(v),
            "--batch" => a.batch = v.parse().expect("--batch"),
            "--gen-sleep-us" => a.gen_sleep_us = v.parse().expect("--gen-sleep-us"),
            "--gen-batch" => a.gen_batch = v.parse().expect("--gen-batch"),
            "--busy-poll-us" => a.busy_poll_us = v.parse().expect("--busy-poll-us"),
            "--connect-latched" => a.connect_latched = v.parse().expect("--connect-latched"),
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

fn ip(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 50, host))
}

fn gen_socket(host: u8) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip(host), 0)).unwrap();
    s.set_nonblocking(true).unwrap();
    let r = SockRef::from(&s);
    r.set_recv_buffer_size(4 << 20).unwrap();
    r.set_send_buffer_size(4 << 20).unwrap();
    set_rx_timestamps(s.as_fd(), true).unwrap();
    s
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn main() {
    let a = args();
    let fds = raise_fd_limit().expect("raise open file limit");
    assert!(
        fds as usize > a.sessions * 4 + 64,
        "open file limit {fds} too low for {} sessions",
        a.sessions
    );
    let relay = MediaRelay::new(RelayConfig {
        local_ip: ip(1),
        port_min: 10000,
        port_max: 29999,
        workers: a.workers,
        cpu_affinity: a.relay_core.into_iter().collect(),
        recv_buffer_bytes: 256 << 10,
        batch_size: a.batch,
        busy_poll_us: a.busy_poll_us,
        connect_latched: a.connect_latched,
        ..RelayConfig::default()
    })
    .expect("relay");

    let ga = gen_socket(2);
    let gb = gen_socket(3);
    // Stream 2i: leg A of session i (GA -> side A, arrives at GB);
    // stream 2i+1: leg B (GB -> side B, arrives at GA).
    let mut dests = Vec::with_capacity(2 * a.sessions);
    for i in 0..a.sessions {
        let info = relay
            .create_session(
                SessionId(i as u64),
                SessionParams {
                    remote_a: Some(ga.local_addr().unwrap()),
                    remote_b: Some(gb.local_addr().unwrap()),
                    options: None,
                    rtcp_mux: false,
                },
            )
            .expect("session");
        dests.push(SockAddr::from(info.side_a.rtp_addr()));
        dests.push(SockAddr::from(info.side_b.rtp_addr()));
    }
    let streams = dests.len();
    println!(
        "relay_bench: {} sessions, {} streams, target {:.0} pps ({:.1} pps/stream), \
         {} worker(s) on core {:?}, generator on core {:?}, batch {}, busy poll {} us, \
         connected sockets {}",
        a.sessions,
        streams,
        a.pps,
        a.pps / streams as f64,
        a.workers,
        a.relay_core,
        a.gen_core,
        a.batch,
        a.busy_poll_us,
        a.connect_latched
    );

    let cpu_before = worker_cpu_ticks();
    let wait_before = worker_run_delay_ns();
    let wall_before = Instant::now();
    let gen = std::thread::spawn(move || {
        if let Some(c) = a.gen_core {
            pin_current_thread(c).expect("pin generator");
        }
        run_generator(&a, &ga, &gb, &dests)
    });
    let r = gen.join().expect("generator");
    let cpu = (worker_cpu_ticks() - cpu_before) as f64 / 100.0;
    let waited_ms = (worker_run_delay_ns() - wait_before) as f64 / 1e6;
    let wall = wall_before.elapsed().as_secs_f64();
    let c = relay.counters();
    let total_secs = r.secs;
    println!(
        "sent {} pkts ({:.0} pps), received {} ({:.0} pps forwarded)",
        r.sent,
        r.sent as f64 / total_secs,
        r.received,
        r.received as f64 / total_secs
    );
    let lost = r.sent.saturating_sub(r.received);
    println!(
        "loss {} pkts = {:.4} %  (relay drops: wrong source {}, malformed {}, \
         no destination {}, send errors {})",
        lost,
        100.0 * lost as f64 / r.sent.max(1) as f64,
        c.dropped_wrong_source,
        c.dropped_malformed,
        c.dropped_no_destination,
        c.dropped_send_error
    );
    let mut lat = r.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "latency (us): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or(0)
    );
    println!(
        "relay counters: {} packets relayed, {} bytes",
        c.packets_relayed, c.bytes_relayed
    );
    println!(
        "relay workers used {:.2} CPU-s in {:.2} s ({:.0} % of one core): \
         {:.0} packets per CPU-second, {:.2} us per packet",
        cpu,
        wall,
        100.0 * cpu / wall,
        c.packets_relayed as f64 / cpu.max(0.01),
        1e6 * cpu / c.packets_relayed.max(1) as f64
    );
    println!(
        "relay workers waited {waited_ms:.1} ms in total for a CPU (run queue delay: \
         other load on their core shows here, and in the latency)"
    );
}

/// Time the relay's worker threads spent runnable but not running (ns),
/// from /proc/self/task/*/schedstat.
fn worker_run_delay_ns() -> u64 {
    let mut ns = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("media-relay-") {
            let s = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += s
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns
}

/// utime + stime (clock ticks, 100 Hz) of the relay's worker threads.
fn worker_cpu_ticks() -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("media-relay-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the command name: utime is the
        // 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks
}

struct Report {
    sent: u64,
    received: u64,
    secs: f64,
    latencies_us: Vec<u32>,
}

/// Receives what the relay forwards and records loss and latency.
struct Sink {
    recv: RecvBatch,
    latencies_us: Vec<u32>,
    received: u64,
    per_stream: Vec<u64>,
    measure_from_ns: u64,
}

impl Sink {
    fn drain(&mut self, sock: &UdpSocket) {
        while let Ok(n) = self.recv.recv(sock.as_fd()) {
            let now = unix_ns();
            for k in 0..n {
                let p = self.recv.packet(k);
                if rtp::classify(p) != rtp::Kind::Rtp || p.len() < 20 {
                    continue;
                }
                let sent_ns = u64::from_be_bytes(p[12..20].try_into().unwrap());
                if let Some(c) = self.per_stream.get_mut(rtp::ssrc(p) as usize) {
                    *c += 1;
                }
                if sent_ns >= self.measure_from_ns {
                    self.received += 1;
                    let arrived = self.recv.timestamp(k).map_or(now, |t| t.as_nanos() as u64);
                    self.latencies_us
                        .push((arrived.saturating_sub(sent_ns) / 1000) as u32);
                }
            }
            if n < self.recv.capacity() {
                return;
            }
        }
    }
}

fn run_generator(a: &Args, ga: &UdpSocket, gb: &UdpSocket, dests: &[SockAddr]) -> Report {
    let streams = dests.len();
    let warmup = Duration::from_secs_f64(a.warmup_secs);
    let run = warmup + Duration::from_secs_f64(a.secs);
    let start = Instant::now();
    // Packets sent from here on are measured.
    let measure_from_ns = unix_ns() + warmup.as_nanos() as u64;
    let mut sink = Sink {
        recv: RecvBatch::new(64).with_timestamps(),
        latencies_us: Vec::with_capacity((a.pps * (a.secs + 1.0)) as usize),
        received: 0,
        per_stream: vec![0; streams],
        measure_from_ns,
    };
    let mut seq = vec![0u16; streams];
    let mut send = SendBatch::new();
    let mut batch_a: Vec<(Vec<u8>, usize)> = Vec::with_capacity(a.gen_batch);
    let mut batch_b: Vec<(Vec<u8>, usize)> = Vec::with_capacity(a.gen_batch);
    let mut next_stream = 0usize;
    let mut sent = 0u64;
    let mut sent_total = 0u64;

    loop {
        let elapsed = start.elapsed();
        if elapsed >= run {
            break;
        }
        let due = (a.pps * elapsed.as_secs_f64()) as u64;
        while sent_total < due && batch_a.len() + batch_b.len() < a.gen_batch {
            let s = next_stream;
            next_stream = (next_stream + 1) % streams;
            let sq = seq[s];
            seq[s] = sq.wrapping_add(1);
            let now_ns = unix_ns();
            let mut payload = [0xd5u8; 160];
            payload[..8].copy_from_slice(&now_ns.to_be_bytes());
            let p = build_rtp(0, sq, u32::from(sq) * 160, s as u32, &payload);
            if s.is_multiple_of(2) {
                batch_a.push((p, s));
            } else {
                batch_b.push((p, s));
            }
            sent_total += 1;
            if now_ns >= measure_from_ns {
                sent += 1;
            }
        }
        for (sock, batch) in [(ga, &mut batch_a), (gb, &mut batch_b)] {
            if !batch.is_empty() {
                let out = send.send(
                    sock.as_fd(),
                    batch.iter().map(|(p, s)| (p.as_slice(), Some(&dests[*s]))),
                );
                if out.failed > 0 {
                    eprintln!("generator send failed: {:?}", out.last_error);
                }
                batch.clear();
            }
        }
        sink.drain(ga);
        sink.drain(gb);
        if sent_total >= due {
            // Ahead of schedule: give the core to the kernel's softirq
            // thread, which delivers this generator's packets on loopback.
            std::thread::sleep(Duration::from_micros(a.gen_sleep_us));
        }
    }
    let secs = (start.elapsed().saturating_sub(warmup)).as_secs_f64();
    // Let the last packets come in.
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        sink.drain(ga);
        sink.drain(gb);
        std::thread::sleep(Duration::from_millis(1));
    }
    let silent = sink.per_stream.iter().filter(|&&c| c == 0).count();
    if silent > 0 {
        eprintln!("warning: {silent} streams received nothing");
    }
    Report {
        sent,
        received: sink.received,
        secs,
        latencies_us: sink.latencies_us,
    }
}

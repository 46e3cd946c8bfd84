//! What the silence checks cost the kernel fast path: `--sessions N`
//! calls with both streams latched and forwarded in the kernel, then
//! `--checks C` rounds 50 ms apart of what the proxy's silence checks ask
//! (`idle_time` of both sides of every call). Run under perf to count the
//! `bpf` system calls they make:
//!
//! ```text
//! cargo build -p media-relay --example silence_check_bench
//! perf stat -e 'syscalls:sys_enter_bpf' \
//!     target/debug/examples/silence_check_bench --sessions 1000 --checks 20
//! ```
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN). Uses 127.0.52.1, ports
//! 40000-49999.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use media_relay::{FastPathMode, MediaRelay, RelayConfig, SessionId, SessionParams, Side};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// A minimal RTP packet (version 2, PT 0) of `ssrc`.
fn rtp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 160];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0; 160]);
    p
}

fn main() {
    let sessions = arg("--sessions", 1000);
    let checks = arg("--checks", 20);
    let ip = Ipv4Addr::new(127, 0, 52, 1);
    let relay = MediaRelay::new(RelayConfig {
        local_ip: IpAddr::V4(ip),
        port_min: 40000,
        port_max: 49999,
        workers: 1,
        fast_path: FastPathMode::On,
        ..RelayConfig::default()
    })
    .expect("a relay with the fast path (needs root)");
    // One trunk and one server socket for every call: the calls' entries
    // differ by the relay's ports.
    let trunk = UdpSocket::bind((Ipv4Addr::new(127, 0, 52, 2), 0)).unwrap();
    let server = UdpSocket::bind((Ipv4Addr::new(127, 0, 52, 3), 0)).unwrap();
    let mut sides = Vec::new();
    for i in 0..sessions {
        let id = SessionId(i + 1);
        let info = relay
            .create_session(
                id,
                SessionParams {
                    remote_a: Some(trunk.local_addr().unwrap()),
                    remote_b: Some(server.local_addr().unwrap()),
                    options: None,
                    rtcp_mux: false,
                },
            )
            .expect("session");
        sides.push((id, info.side_a.rtp_addr(), info.side_b.rtp_addr()));
    }
    // Each side latches on its first packet; the next go through the
    // kernel. Answers are read and dropped.
    let _ = trunk.set_read_timeout(Some(Duration::from_millis(1)));
    let _ = server.set_read_timeout(Some(Duration::from_millis(1)));
    let drain = |s: &UdpSocket| {
        let mut buf = [0u8; 2048];
        while s.recv(&mut buf).is_ok() {}
    };
    for round in 0..3 {
        for (i, &(_, a, b)) in sides.iter().enumerate() {
            let ssrc = i as u32;
            trunk.send_to(&rtp(ssrc), a).unwrap();
            server.send_to(&rtp(ssrc | 1 << 31), b).unwrap();
            if i % 64 == 0 {
                drain(&trunk);
                drain(&server);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        drain(&trunk);
        drain(&server);
        eprintln!(
            "round {round}: {} packets in the kernel",
            relay.counters().fast_path_packets
        );
    }
    let start = Instant::now();
    let mut silent = 0;
    for _ in 0..checks {
        for &(id, _, _) in &sides {
            for side in [Side::A, Side::B] {
                if relay
                    .idle_time(id, side)
                    .unwrap()
                    .is_none_or(|d| d > Duration::from_secs(5))
                {
                    silent += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{checks} silence checks of {sessions} calls in {:?}; {silent} silent streams seen",
        start.elapsed()
    );
}

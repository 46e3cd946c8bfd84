//! "RTP bleed" end to end (issue 11, item 4): the real `tandem` binary
//! between a SIPp trunk playing RTP (`uac_pcap`) and a SIPp media server
//! echoing it, while a stranger on another loopback address sprays every
//! port of the relay's range from before the first call to after the
//! last, and counts what the relay sends it.
//!
//! With the default `media.latching = "signalled-ip"` the stranger gets
//! nothing, every call's echo comes back to the trunk, and the relay
//! counts the stranger's packets as rejected. With `"any"` (first packet
//! wins, the old behaviour) the stranger gets media: the same test, shown
//! to fail. Every wait has a deadline; the spray has a packet budget and a
//! time limit; every process is killed by its handle.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use testkit::{Sipp, SippProcess, Tandem, TandemConfig};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const CALLS: u64 = 20;
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// One pass over the range every this long.
const SPRAY_EVERY: Duration = Duration::from_millis(20);
/// The spray stops by itself after this long or this many packets.
const SPRAY_LIMIT: Duration = Duration::from_secs(120);
const SPRAY_BUDGET: u64 = 2_000_000;

/// What the stranger sent and got.
#[derive(Debug, Default, Clone, Copy)]
struct Spray {
    sent: u64,
    received: u64,
}

/// Sprays RTP at every port of `range` on 127.0.0.1 until `stop`, the
/// time limit or the packet budget, counting every datagram it receives.
async fn spray(range: RangeInclusive<u16>, stop: Arc<AtomicBool>) -> Spray {
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(STRANGER), 0))
        .await
        .expect("stranger's socket");
    let mut packet: Vec<u8> = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0xad];
    packet.extend_from_slice(&[0x55; 160]);
    let mut out = Spray::default();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + SPRAY_LIMIT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end && out.sent < SPRAY_BUDGET {
        for port in range.clone() {
            packet[3] = packet[3].wrapping_add(1);
            // Unbound ports answer with ICMP; nothing to do about it.
            if sock
                .try_send_to(&packet, (Ipv4Addr::LOCALHOST, port).into())
                .is_ok()
            {
                out.sent += 1;
            }
        }
        let pass_end = Instant::now() + SPRAY_EVERY;
        while let Ok(Ok(_)) = tokio::time::timeout_at(pass_end, sock.recv_from(&mut buf)).await {
            out.received += 1;
        }
    }
    out
}

/// 20 SIPp calls with RTP through Tandem (`latching` = its
/// `[media] latching`, None: the default) under the spray. Returns the
/// spray's figures, the relay's rejected-packet counter, and per call the
/// caller's packets and the echo's packets the relay took (CDR).
async fn calls_under_spray(latching: Option<&str>) -> (Spray, f64, Vec<(u64, u64)>) {
    let mut ms: SippProcess = Sipp::builtin("uas", None)
        .arg("-aa")
        .arg("-rtp_echo")
        .spawn();
    ms.wait_ready(Duration::from_secs(5)).await;
    let mut config = TandemConfig::new([("ms", ms.addr())]).media_ports(256);
    if let Some(mode) = latching {
        config = config.media_latching(mode);
    }
    let tandem = Tandem::start(TANDEM, config).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sprayer = tokio::spawn(spray(tandem.media_ports(), stop.clone()));
    // The spray is on before the first INVITE.
    tokio::time::sleep(SPRAY_EVERY * 3).await;
    let out = Sipp::builtin("uac_pcap", Some(tandem.sip_addr()))
        .with_pcaps()
        .args(["-m", &CALLS.to_string(), "-r", "5"])
        .run(Duration::from_secs(90))
        .await;
    let cdrs = tandem
        .wait_cdrs(CALLS as usize, Duration::from_secs(20))
        .await;
    // Whatever the relay forwarded to the stranger is on its way by now.
    tokio::time::sleep(SPRAY_EVERY * 5).await;
    stop.store(true, Ordering::Relaxed);
    let spray = sprayer.await.expect("sprayer");
    assert_eq!(
        out.exit_code,
        Some(0),
        "{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
    let rejected = tandem
        .metrics()
        .await
        .get("tandem_relay_rejected_packets_total", &[]);
    let packets = cdrs
        .iter()
        .map(|c| (c.num("a_packets"), c.num("b_packets")))
        .collect();
    (spray, rejected, packets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_spraying_the_relay_range_gets_nothing_by_default() {
    let (spray, rejected, packets) = calls_under_spray(None).await;
    eprintln!(
        "signalled-ip: {spray:?}, relay rejected {rejected}, calls (a, b packets) {packets:?}"
    );
    assert!(spray.sent > 10_000, "the spray ran: {spray:?}");
    assert_eq!(spray.received, 0, "the stranger got media: {spray:?}");
    assert!(rejected > 0.0, "the stranger's packets are counted");
    // Every call kept its real peers: the caller's audio reached the
    // relay and the media server's echo of it came back.
    for (a, b) in packets {
        assert!(a > 100, "caller audio: {a}");
        assert!(b * 10 >= a * 9, "the echo came back: {a} sent, {b} echoed");
    }
}

/// The old behaviour: the first packet from anyone latches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_any_latching_the_same_spray_takes_media() {
    let (spray, rejected, packets) = calls_under_spray(Some("any")).await;
    eprintln!("any: {spray:?}, relay rejected {rejected}, calls (a, b packets) {packets:?}");
    assert!(spray.received > 0, "the stranger got nothing: {spray:?}");
}

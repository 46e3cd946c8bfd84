//! A flood from a stranger does not starve a trunk: junk INVITEs from
//! 127.0.0.2 at about 50,000 packets a second while the trunk
//! (127.0.0.1, SIPp) places 100 calls to a SIPp media server. All 100
//! complete, the stranger is banned and its packets are dropped unparsed,
//! and Tandem's memory stays bounded.
//!
//! The flood is a plain thread with a pre-built packet (only its branch
//! and Call-ID digits change, so that each would be a new transaction),
//! bounded by a packet count and by time, paced to its rate by the clock.
//! Nothing here asserts a speed: the rate reached is printed.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::{Sipp, Tandem, TandemConfig};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The flood's rate (`TANDEM_FLOOD_RATE` overrides it, to measure other
/// rates by hand), its packet budget and its time limit.
const FLOOD_RATE: u64 = 50_000;
const FLOOD_MAX_PACKETS: u64 = 3_000_000;
const FLOOD_MAX_TIME: Duration = Duration::from_secs(60);
/// Tandem's resident memory must stay below this through the flood.
const RSS_LIMIT_KIB: u64 = 200 * 1024;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/sipp")
        .join(name)
}

/// A junk INVITE whose branch and Call-ID end in the same 10 digits, and
/// where those digits are.
fn junk_invite(to: SocketAddr, from: SocketAddr) -> (Vec<u8>, Vec<usize>) {
    let digits = "0000000000";
    let text = format!(
        "INVITE sip:1000@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bKflood{digits}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:flood@{from}>;tag=flood\r\n\
         To: <sip:1000@{to}>\r\n\
         Call-ID: flood{digits}@{from}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:flood@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let slots = text
        .match_indices(&format!("flood{digits}"))
        .map(|(i, _)| i + "flood".len())
        .collect();
    (text.into_bytes(), slots)
}

/// What the flood did.
#[derive(Debug)]
struct Flooded {
    packets: u64,
    elapsed: Duration,
}

/// Sends junk INVITEs from `source` to `to` at about the rate until
/// `stop`, `FLOOD_MAX_PACKETS` or `FLOOD_MAX_TIME`.
fn flood(source: &str, to: SocketAddr, stop: Arc<AtomicBool>) -> Flooded {
    let rate = std::env::var("TANDEM_FLOOD_RATE")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|r| *r > 0)
        .unwrap_or(FLOOD_RATE);
    let sock = UdpSocket::bind((source, 0)).expect("bind the flood's socket");
    let (mut packet, slots) = junk_invite(to, sock.local_addr().unwrap());
    let start = Instant::now();
    let mut packets = 0u64;
    while packets < FLOOD_MAX_PACKETS
        && !stop.load(Ordering::Relaxed)
        && start.elapsed() < FLOOD_MAX_TIME
    {
        // Bursts of 500, then wait for the schedule to catch up.
        for _ in 0..500 {
            let digits = format!("{packets:010}");
            for &at in &slots {
                packet[at..at + 10].copy_from_slice(digits.as_bytes());
            }
            // A full socket buffer (ENOBUFS) is a packet lost, as on a wire.
            let _ = sock.send_to(&packet, to);
            packets += 1;
        }
        let due = Duration::from_micros(packets * 1_000_000 / rate);
        if let Some(ahead) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    Flooded {
        packets,
        elapsed: start.elapsed(),
    }
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_completes_every_call_through_a_flood_from_a_stranger() {
    testkit::require_sipp();
    let mut ms = Sipp::builtin("uas", None).arg("-aa").spawn();
    ms.wait_ready(SECS(5)).await;
    // Only 127.0.0.1 is a trunk: 127.0.0.2 is a stranger.
    let tandem = Tandem::start(
        TANDEM,
        // No OPTIONS probes: a member marked down by one lost probe is a
        // different test. The member's answer may take a few
        // retransmissions on a loaded machine.
        TandemConfig::new([("ms1", ms.addr())])
            .trunk_networks(["127.0.0.1/32"])
            .without_health()
            .member_answer_timeout_ms(10_000)
            .media_ports(128),
    )
    .await;
    let pid = tandem.pid().expect("tandem's pid");
    let rss_before = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (to, stop) = (tandem.sip_addr(), stop.clone());
        std::thread::spawn(move || flood("127.0.0.2", to, stop))
    };
    // The flood is under way before the first call.
    tokio::time::sleep(SECS(1)).await;

    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = sampler_stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            let until = tokio::time::Instant::now() + FLOOD_MAX_TIME + SECS(30);
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < until {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            peak
        })
    };
    let calls = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "100", "-r", "20", "-d", "200"])
        .run(SECS(50))
        .await;
    let rss_during = rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    let flooded = tokio::task::spawn_blocking(move || flooder.join().expect("flood thread"))
        .await
        .unwrap();
    sampler_stop.store(true, Ordering::Relaxed);
    let rss_peak = sampler.await.unwrap().max(rss_during);
    let rate = flooded.packets as f64 / flooded.elapsed.as_secs_f64();
    let metrics = tandem.metrics().await;
    let dropped = |reason: &str| metrics.get("tandem_sip_dropped_total", &[("reason", reason)]);
    eprintln!(
        "flood: {} packets in {:.1} s ({rate:.0}/s); calls: {} ok, {} failed; \
         tandem RSS {rss_before} KiB before, {rss_peak} KiB at most; \
         dropped unparsed: banned {}, rate {}, backlog {}",
        flooded.packets,
        flooded.elapsed.as_secs_f64(),
        calls.successful,
        calls.failed,
        dropped("banned"),
        dropped("rate"),
        dropped("backlog"),
    );
    assert_eq!(
        (calls.exit_code, calls.successful, calls.failed),
        (Some(0), 100, 0),
        "every trunk call completes through the flood\n{}\n{}",
        calls.log,
        tandem.log_tail(30)
    );
    assert!(
        rss_peak < RSS_LIMIT_KIB,
        "tandem's RSS reached {rss_peak} KiB (limit {RSS_LIMIT_KIB} KiB)"
    );
    // The stranger was banned, and its packets were dropped before
    // parsing from then on.
    assert_eq!(dropped("rate"), 1.0, "one ban for the one stranger");
    assert!(dropped("banned") > 0.0);
}

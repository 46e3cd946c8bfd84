//! Hostile clients against the running binary: the RFC 4475 torture
//! messages over UDP and TCP (from a trunk, whose messages are parsed and
//! acted on, and from a stranger), every prefix of a valid INVITE, messages
//! over the size limit, random junk and mutated requests. Afterwards the
//! process is alive, answers OPTIONS, its memory stayed bounded and a trunk
//! call placed by SIPp completes.
//!
//! Everything sent is counted and every wait has a deadline; floods,
//! slowloris peers and random method names have their own tests.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use testkit::{Sipp, Tandem, TandemConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// Largest UDP payload over IPv4: under sipcore's 64 KiB message limit, so
/// over UDP "oversized" means the biggest datagram there can be.
const MAX_UDP: usize = 65_507;
/// Memory Tandem may gain over the whole test; a leak per bad message or a
/// buffer sized from a stranger's claim would show far above it.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;
/// Random junk datagrams and mutated requests sent (each).
const JUNK_DATAGRAMS: usize = 10_000;
const MUTATED_REQUESTS: usize = 2_500;

/// The RFC 4475 messages of `sipcore/tests/torture.rs`, as the fuzz seeds
/// hold them (`fuzz/seeds/parse_message/torture-*`).
fn torture_set() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/parse_message");
    let mut set: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("torture-"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    set.sort();
    assert!(
        set.len() >= 40,
        "torture set incomplete: {} messages",
        set.len()
    );
    set
}

/// A valid request from `me` (with an SDP body); `extra` are header lines.
fn request(method: &str, me: SocketAddr, to: SocketAddr, id: &str, extra: &str) -> String {
    let sdp = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    format!(
        "{method} sip:1000@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:hostile@{me}>;tag=f{id}\r\n\
         To: <sip:1000@{to}>\r\n\
         Call-ID: {id}@hostile\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:hostile@{me}>\r\n\
         {extra}\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Sends `datagrams` from `sock`, a short pause every 10 so that Tandem
/// reads them rather than the kernel dropping them (floods have their own
/// test). Returns how many were sent.
async fn send_all(sock: &UdpSocket, to: SocketAddr, datagrams: &[Vec<u8>]) -> usize {
    for (i, d) in datagrams.iter().enumerate() {
        sock.send_to(d, to).await.unwrap();
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    datagrams.len()
}

/// How a TCP exchange ended, seen from the client.
#[derive(Debug, PartialEq, Eq)]
enum TcpEnd {
    /// Tandem closed (EOF or reset) within the deadline.
    Closed,
    /// Still open at the deadline.
    Open,
}

/// Connects from 127.0.0.1, writes `bytes` (Tandem may close while we
/// write: that is an answer too), optionally half-closes, and waits at
/// most `deadline` for Tandem to close.
async fn tcp_send(sip: SocketAddr, bytes: Vec<u8>, half_close: bool, deadline: Duration) -> TcpEnd {
    let sock = TcpSocket::new_v4().unwrap();
    let mut stream = timeout(Duration::from_secs(5), sock.connect(sip))
        .await
        .expect("TCP connect deadline")
        .expect("TCP connect");
    if stream.write_all(&bytes).await.is_err() {
        return TcpEnd::Closed;
    }
    if half_close {
        let _ = stream.shutdown().await;
    }
    let until = Instant::now() + deadline;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return TcpEnd::Open,
            Ok(Ok(0)) | Ok(Err(_)) => return TcpEnd::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

/// Runs the exchanges of `inputs` on their own connections, at most
/// `parallel` at a time; returns how each ended, in order.
async fn tcp_each(
    sip: SocketAddr,
    inputs: Vec<Vec<u8>>,
    half_close: bool,
    deadline: Duration,
) -> Vec<TcpEnd> {
    let parallel = 32;
    let mut ends = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(parallel) {
        let mut set = JoinSet::new();
        for (i, input) in chunk.iter().cloned().enumerate() {
            set.spawn(async move { (i, tcp_send(sip, input, half_close, deadline).await) });
        }
        let mut got: Vec<(usize, TcpEnd)> = set.join_all().await;
        got.sort_by_key(|(i, _)| *i);
        ends.extend(got.into_iter().map(|(_, end)| end));
    }
    ends
}

/// Sends OPTIONS from `sock` until a 200 comes back (deadline 10 s).
async fn answers_options(sock: &UdpSocket, sip: SocketAddr, tandem: &Tandem) {
    let me = sock.local_addr().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    for attempt in 0.. {
        let id = format!("alive{attempt}");
        let options = request("OPTIONS", me, sip, &id, "");
        sock.send_to(options.as_bytes(), sip).await.unwrap();
        let retry = Instant::now() + Duration::from_millis(500);
        while let Ok(got) =
            tokio::time::timeout_at(retry.min(until), sock.recv_from(&mut buf)).await
        {
            let (n, _) = got.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with("SIP/2.0 200") && text.contains(&format!("Call-ID: {id}@hostile")) {
                return;
            }
        }
        assert!(
            Instant::now() < until,
            "no 200 to OPTIONS after the hostile input:\n{}",
            tandem.log_tail(30)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_leaves_tandem_serving() {
    let mut ms = Sipp::builtin("uas", None).arg("-aa").spawn();
    ms.wait_ready(Duration::from_secs(5)).await;
    // Only 127.0.0.1 is a trunk; 127.0.0.2 (also loopback) is a stranger.
    let mut tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())]).trunk_networks(["127.0.0.1/32"]),
    )
    .await;
    let sip = tandem.sip_addr();
    let rss_before = tandem.rss_kib().expect("Tandem's RSS");
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let mut rng = StdRng::seed_from_u64(4475);
    let mut sent = 0;

    // RFC 4475 over UDP, from the trunk and from a stranger.
    let torture: Vec<Vec<u8>> = torture_set().into_iter().map(|(_, m)| m).collect();
    sent += send_all(&trunk, sip, &torture).await;
    sent += send_all(&stranger, sip, &torture).await;

    // RFC 4475 over TCP: each message on its own connection, and all of
    // them back to back on one.
    tcp_each(sip, torture.clone(), true, Duration::from_secs(3)).await;
    tcp_send(sip, torture.concat(), true, Duration::from_secs(3)).await;

    // Every proper prefix of a valid INVITE, over UDP and over TCP (the
    // complete INVITE would be a real call).
    let me = trunk.local_addr().unwrap();
    let invite = request("INVITE", me, sip, "trunc", "").into_bytes();
    let prefixes: Vec<Vec<u8>> = (1..invite.len()).map(|n| invite[..n].to_vec()).collect();
    sent += send_all(&trunk, sip, &prefixes).await;
    tcp_each(sip, prefixes, true, Duration::from_secs(3)).await;

    // Over the limit. UDP: the largest datagram there is, as a request
    // (Max-Forwards: 0, so it is parsed and answered without a call) and
    // as junk; a Content-Length far beyond the datagram.
    let padding = |len: usize| format!("X-Pad: {}\r\n", "a".repeat(len));
    let big = request("INVITE", me, sip, "big", &padding(MAX_UDP))
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .into_bytes();
    let cut = big.len() - MAX_UDP;
    let big = request("INVITE", me, sip, "big", &padding(MAX_UDP - cut))
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .into_bytes();
    assert_eq!(big.len(), MAX_UDP);
    let junk_big: Vec<u8> = (0..MAX_UDP).map(|_| rng.gen()).collect();
    let lying_length = request("INVITE", me, sip, "cl", "")
        .replace("Content-Length: ", "Content-Length: 1000000")
        .into_bytes();
    sent += send_all(&trunk, sip, &[big, junk_big, lying_length.clone()]).await;
    // TCP: a header block that never ends, a message over 64 KiB, a
    // Content-Length over the limit. Each must get the connection closed
    // (without our half-close: the size alone must do it).
    let endless_headers = {
        let mut m = request("OPTIONS", me, sip, "endless", "").into_bytes();
        m.truncate(m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2);
        for i in 0..2_000 {
            m.extend_from_slice(format!("X-Hdr-{i}: {}\r\n", "b".repeat(60)).as_bytes());
        }
        m
    };
    let over_limit = request("OPTIONS", me, sip, "over", &padding(70_000)).into_bytes();
    let ends = tcp_each(
        sip,
        vec![endless_headers, over_limit, lying_length],
        false,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        ends,
        [TcpEnd::Closed, TcpEnd::Closed, TcpEnd::Closed],
        "oversized TCP input closes the connection: {}",
        tandem.log_tail(20)
    );

    // Random junk datagrams from a stranger and from the trunk, and
    // requests with random bytes changed (an INVITE that would have no
    // hops left, so that none becomes a call, and an OPTIONS).
    let junk: Vec<Vec<u8>> = (0..JUNK_DATAGRAMS)
        .map(|_| {
            let len = rng.gen_range(1..=1400);
            (0..len).map(|_| rng.gen()).collect()
        })
        .collect();
    sent += send_all(&stranger, sip, &junk[..JUNK_DATAGRAMS / 2]).await;
    sent += send_all(&trunk, sip, &junk[JUNK_DATAGRAMS / 2..]).await;
    let bases = [
        request("INVITE", me, sip, "mut", "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
        request("OPTIONS", me, sip, "mut", ""),
    ];
    let mutated: Vec<Vec<u8>> = (0..MUTATED_REQUESTS)
        .flat_map(|_| bases.iter())
        .map(|base| {
            let mut m = base.clone().into_bytes();
            for _ in 0..rng.gen_range(1..=8) {
                let at = rng.gen_range(0..m.len());
                m[at] = rng.gen();
            }
            m
        })
        .collect();
    sent += send_all(&trunk, sip, &mutated).await;
    // Junk on TCP, each on its own connection.
    let tcp_junk: Vec<Vec<u8>> = (0..16)
        .map(|_| (0..4096).map(|_| rng.gen()).collect())
        .collect();
    tcp_each(sip, tcp_junk, true, Duration::from_secs(3)).await;

    // Afterwards: alive, answering, memory bounded, and a trunk call
    // completes.
    assert!(
        tandem.is_running(),
        "Tandem died (pid {:?}):\n{}",
        tandem.pid(),
        tandem.log_tail(40)
    );
    answers_options(&trunk, sip, &tandem).await;
    // The datagrams reached Tandem (as messages or as counted garbage);
    // the kernel may drop some on a busy machine, not most.
    let m = tandem.metrics().await;
    let seen = m.get(
        "tandem_sip_messages_received_total",
        &[("transport", "udp")],
    ) + m.get("tandem_sip_garbage_dropped_total", &[]);
    eprintln!("{sent} datagrams sent, {seen} seen by Tandem");
    assert!(
        seen >= sent as f64 / 4.0,
        "{sent} datagrams sent, {seen} seen:\n{}",
        m.text()
    );
    let rss_after = tandem.rss_kib().expect("Tandem's RSS");
    eprintln!("Tandem RSS: {rss_before} KiB before, {rss_after} KiB after the hostile input");
    assert!(
        rss_after <= rss_before + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    let uac = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/sipp/uac.xml");
    let calls = Sipp::scenario_file(&uac, Some(sip))
        .args(["-m", "2", "-r", "10", "-d", "200"])
        .run(Duration::from_secs(20))
        .await;
    let completed = (calls.exit_code, calls.successful, calls.failed) == (Some(0), 2, 0);
    let tail = tandem.log_tail(20);
    assert!(completed, "trunk calls after it:\n{}\n{tail}", calls.log);
    assert!(tandem.is_running(), "Tandem died:\n{}", tandem.log_tail(40));
    assert!(
        !tandem.log().contains("panicked"),
        "a panic was logged:\n{}",
        tandem.log_tail(40)
    );
}

/// A panic outside the call engine (here a planted one, debug builds only)
/// must stop the node with a non-zero status: a node whose receive loop or
/// relay worker died looks alive but serves nothing, and its standby would
/// never take over.
#[tokio::test]
async fn a_panic_in_any_task_stops_the_node() {
    let member = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let config = TandemConfig::new([("ms1", member)])
        .without_health()
        .env("TANDEM_TEST_PANIC_MS", "1000");
    let mut tandem = Tandem::start(TANDEM, config).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = tandem.exit_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 15 s after a task panicked:\n{}",
            tandem.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "exit status {status}");
    let log = tandem.log();
    assert!(log.contains("a planted panic outside the engine"), "{log}");
    assert!(log.contains("a task of this node panicked"), "{log}");
}

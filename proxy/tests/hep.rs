//! HEP3 export end to end: the real `tandem` binary with `[hep]` pointing
//! at a UDP socket the test owns, a SIPp call through it (trunk → Tandem →
//! media server). The test writes the HEP packets it received into a pcap
//! file (Ethernet/IPv4/UDP around each, to the collector's port), has a
//! third party decode them — sngrep's HEP parser (`-E`; Debian's tshark
//! 4.0 has no HEP dissector), which writes the SIP inside as packets with
//! the addresses, ports and times the HEP chunks carry — and tshark
//! dissect those, and checks that INVITE, 200, ACK, BYE, 200 of both legs
//! are there, each with its leg's Call-ID and addresses.
//!
//! A second test sends an OPTIONS over TLS: the export carries the
//! decrypted SIP with the connection's two ends and says TCP.
//!
//! A third test fills the export's queue (one place) with bursts of
//! OPTIONS and a collector that never reads: messages are dropped and
//! counted there, every message is either sent or counted, and every
//! OPTIONS is still answered.
//!
//! Every process is killed when its handle drops; every wait has a
//! deadline.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::{wait_for, Sipp, SippProcess, Tandem, TandemConfig};
use tokio::net::UdpSocket;

mod common;
use common::{run_to_end, scenario, SECS, TANDEM};

/// Fails with a clear message when a tool is missing (scripts/test
/// installs it), rather than skipping.
fn require(tool: &str, arg: &str) {
    let ran = std::process::Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ran,
        "{tool} not found: run ./scripts/test, which installs it"
    );
}

/// One HEP packet as the collector got it.
#[derive(Clone)]
struct Received {
    at: SystemTime,
    from: SocketAddr,
    packet: Vec<u8>,
}

/// Reads every packet sent to `socket` into the returned list until the
/// task is aborted.
fn collect(socket: UdpSocket) -> (Arc<Mutex<Vec<Received>>>, tokio::task::JoinHandle<()>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            sink.lock().unwrap().push(Received {
                at: SystemTime::now(),
                from,
                packet: buf[..n].to_vec(),
            });
        }
    });
    (got, task)
}

fn ipv4_octets(addr: SocketAddr) -> [u8; 4] {
    match addr {
        SocketAddr::V4(a) => a.ip().octets(),
        SocketAddr::V6(_) => panic!("{addr}: the test runs on IPv4 loopback"),
    }
}

/// The IPv4 header checksum (RFC 791): one's complement of the one's
/// complement sum of the header's 16-bit words.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A classic pcap file (little-endian, microseconds, Ethernet) of the HEP
/// packets as UDP datagrams from Tandem's HEP socket to `collector`.
fn write_pcap(path: &Path, packets: &[Received], collector: SocketAddr) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // GMT
    out.extend_from_slice(&0u32.to_le_bytes()); // accuracy
    out.extend_from_slice(&262_144u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for p in packets {
        let udp_len = 8 + p.packet.len();
        let mut frame = Vec::with_capacity(14 + 20 + udp_len);
        frame.extend_from_slice(&[0; 12]); // MAC addresses
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = Vec::with_capacity(20);
        ip.extend_from_slice(&[0x45, 0]);
        ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0]); // id, don't fragment
        ip.extend_from_slice(&[64, 17, 0, 0]); // TTL, UDP, checksum
        ip.extend_from_slice(&ipv4_octets(p.from));
        ip.extend_from_slice(&ipv4_octets(collector));
        let checksum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&p.from.port().to_be_bytes());
        frame.extend_from_slice(&collector.port().to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&0u16.to_be_bytes()); // no UDP checksum
        frame.extend_from_slice(&p.packet);
        let t = p.at.duration_since(UNIX_EPOCH).unwrap();
        out.extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&t.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).expect("write the pcap");
}

/// Runs a tool to its end within 30 s; its stdout.
async fn run(tool: &str, args: &[&str]) -> String {
    let out = run_to_end(tool, args, SECS(30)).await;
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One SIP message as tshark saw it inside the decoded HEP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    source: SocketAddr,
    destination: SocketAddr,
    /// The method of a request, the status code of a response.
    what: String,
    cseq_method: String,
    call_id: String,
    epoch_s: u64,
}

fn parse_tshark(text: &str) -> BTreeSet<Seen> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            assert_eq!(f.len(), 9, "tshark line {line:?}");
            let addr = |ip: &str, port: &str| format!("{ip}:{port}").parse().unwrap();
            let what = if f[5].is_empty() { f[6] } else { f[5] };
            let epoch: f64 = f[8].parse().unwrap();
            Seen {
                source: addr(f[0], f[1]),
                destination: addr(f[2], f[3]),
                what: what.to_owned(),
                cseq_method: f[4].to_owned(),
                call_id: f[7].to_owned(),
                epoch_s: epoch as u64,
            }
        })
        .collect()
}

/// The Call-ID of the first INVITE in a SIPp message trace.
fn invite_call_id(messages: &str) -> String {
    let invite = messages
        .find("INVITE sip:")
        .unwrap_or_else(|| panic!("no INVITE in the trace:\n{messages}"));
    messages[invite..]
        .lines()
        .find_map(|l| {
            let (name, value) = l.trim().split_once(':')?;
            name.eq_ignore_ascii_case("call-id")
                .then(|| value.trim().to_owned())
        })
        .expect("a Call-ID after the INVITE")
}

/// Where the test leaves its pcap files (HEP as received, and the SIP
/// sngrep decoded from it), for a look after a failure.
fn capture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hep")
}

/// Waits until the collector holds every packet Tandem counted as sent
/// (the export is behind the SIP path, and the counters tick each second:
/// counted after `quiet_since`, when the SIP exchange was over), then
/// writes them to `NAME-hep.pcap`, has sngrep decode the HEP3 (`-E`) into
/// `NAME-sip.pcap` — the SIP as packets with the addresses, ports and
/// times of the HEP chunks — and tshark dissect the SIP there. Returns the
/// packets and what tshark saw.
async fn decoded(
    tandem: &Tandem,
    packets: Arc<Mutex<Vec<Received>>>,
    reader: tokio::task::JoinHandle<()>,
    collector: SocketAddr,
    quiet_since: std::time::Instant,
    name: &str,
) -> (Vec<Received>, BTreeSet<Seen>) {
    wait_for("every HEP packet sent to arrive", SECS(10), || async {
        let sent = tandem
            .try_metrics()
            .await?
            .get("tandem_hep_sent_total", &[]);
        let got = packets.lock().unwrap().len() as f64;
        let settled = quiet_since.elapsed() > Duration::from_millis(1500);
        if settled && sent > 0.0 && got >= sent {
            Ok(())
        } else {
            Err(format!("{got} received, {sent} sent"))
        }
    })
    .await;
    reader.abort();
    let packets = packets.lock().unwrap().clone();
    let dir = capture_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let hep_pcap = dir.join(format!("{name}-hep.pcap"));
    let sip_pcap = dir.join(format!("{name}-sip.pcap"));
    let _ = std::fs::remove_file(&sip_pcap);
    write_pcap(&hep_pcap, &packets, collector);
    // -N -q: no screen.
    let (hep_s, sip_s) = (hep_pcap.to_str().unwrap(), sip_pcap.to_str().unwrap());
    run("sngrep", &["-N", "-q", "-E", "-I", hep_s, "-O", sip_s]).await;
    let fields = [
        "ip.src",
        "udp.srcport",
        "ip.dst",
        "udp.dstport",
        "sip.CSeq.method",
        "sip.Method",
        "sip.Status-Code",
        "sip.Call-ID",
        "frame.time_epoch",
    ];
    // SIP on any port: an ephemeral port that is another protocol's
    // registered one (34980 is EtherCAT's) would be dissected as that.
    let ports: BTreeSet<String> = run(
        "tshark",
        &[
            "-r",
            sip_s,
            "-T",
            "fields",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
        ],
    )
    .await
    .split_whitespace()
    .map(|p| format!("udp.port=={p},sip"))
    .collect();
    let mut args = vec!["-r", sip_s];
    for p in &ports {
        args.extend(["-d", p.as_str()]);
    }
    args.extend(["-Y", "sip", "-T", "fields", "-E", "separator=|"]);
    for f in &fields {
        args.extend(["-e", f]);
    }
    let seen = parse_tshark(&run("tshark", &args).await);
    (packets, seen)
}

async fn start(sipp: Sipp) -> SippProcess {
    let mut p = sipp.spawn();
    p.wait_ready(SECS(5)).await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_tandem_is_exported_as_hep_and_decoded_to_both_legs() {
    require("sngrep", "-V");
    require("tshark", "-v");
    let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector.local_addr().unwrap();
    let (packets, reader) = collect(collector);

    let ms = start(Sipp::builtin("uas", None).arg("-aa").trace_messages()).await;
    let config = TandemConfig::new([("ms1", ms.addr())]).extra_toml(&format!(
        "[hep]\ncollector = \"{collector_addr}\"\nagent_id = 2001\npassword = \"hep-test\"\n"
    ));
    let tandem = Tandem::start(TANDEM, config).await;
    let started = SystemTime::now();
    let uac = Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "1", "-d", "200"])
        .trace_messages();
    let uac_addr = uac.addr();
    let out = uac.run(SECS(30)).await;
    assert_eq!(
        (out.exit_code, out.successful, out.failed),
        (Some(0), 1, 0),
        "{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
    tandem
        .wait_metric("tandem_calls_active", &[], 0.0, SECS(10))
        .await;
    let call_over = std::time::Instant::now();
    let leg_a = invite_call_id(&out.messages);
    let leg_b = invite_call_id(&ms.outcome().messages);
    assert_ne!(leg_a, leg_b, "a B2BUA's legs have their own Call-IDs");

    let (packets, seen) =
        decoded(&tandem, packets, reader, collector_addr, call_over, "call").await;
    // The HEP times are the capture times: within the test's run.
    let (from_s, to_s) = (
        started.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    for s in &seen {
        assert!(
            (from_s.saturating_sub(1)..=to_s).contains(&s.epoch_s),
            "{s:?}: HEP time outside the test's run {from_s}..={to_s}"
        );
    }
    let find = |source: SocketAddr, destination: SocketAddr, what: &str, cseq: &str| {
        seen.iter().find(|s| {
            (s.source, s.destination) == (source, destination)
                && s.what == what
                && s.cseq_method == cseq
        })
    };
    let tandem_addr = tandem.sip_addr();
    let expected = [
        // Leg A: the trunk (SIPp) and Tandem.
        (uac_addr, tandem_addr, "INVITE", "INVITE", &leg_a),
        (tandem_addr, uac_addr, "200", "INVITE", &leg_a),
        (uac_addr, tandem_addr, "ACK", "ACK", &leg_a),
        (uac_addr, tandem_addr, "BYE", "BYE", &leg_a),
        (tandem_addr, uac_addr, "200", "BYE", &leg_a),
        // Leg B: Tandem and the media server.
        (tandem_addr, ms.addr(), "INVITE", "INVITE", &leg_b),
        (ms.addr(), tandem_addr, "200", "INVITE", &leg_b),
        (tandem_addr, ms.addr(), "ACK", "ACK", &leg_b),
        (tandem_addr, ms.addr(), "BYE", "BYE", &leg_b),
        (ms.addr(), tandem_addr, "200", "BYE", &leg_b),
    ];
    let listing = || {
        seen.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (source, destination, what, cseq, call_id) in expected {
        let s = find(source, destination, what, cseq).unwrap_or_else(|| {
            panic!(
                "no {what} ({cseq}) {source} -> {destination} in the decoded HEP \
                 ({} packets, pcap {}):\n{}",
                packets.len(),
                capture_dir().join("call-hep.pcap").display(),
                listing()
            )
        });
        assert_eq!(&s.call_id, call_id, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_export_queue_drops_and_counts_and_sip_goes_on() {
    // A collector that never reads: the kernel drops what does not fit
    // its buffer, so only the queue can hold the export back.
    let deaf = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let member = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = TandemConfig::new([("ms1", member.local_addr().unwrap())])
        .without_health()
        .extra_toml(&format!(
            "[hep]\ncollector = \"{}\"\nqueue_limit = 1\n",
            deaf.local_addr().unwrap()
        ));
    let tandem = Tandem::start(TANDEM, config).await;
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = trunk.local_addr().unwrap().port();
    let dropped =
        |m: &testkit::Metrics| m.get("tandem_hep_dropped_total", &[("reason", "queue_full")]);
    const BURST: usize = 200;
    let mut answered = 0;
    // Bursts until the queue overflowed: with room for one message, the
    // first burst almost always does; 10 bursts bound the test.
    for burst in 0..10 {
        for n in 0..BURST {
            let branch = format!("z9hG4bK-hep-{burst}-{n}");
            let options = format!(
                "OPTIONS sip:{addr} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n\
                 From: <sip:trunk@127.0.0.1>;tag={branch}\r\n\
                 To: <sip:{addr}>\r\n\
                 Call-ID: {branch}@127.0.0.1\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Max-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n",
                addr = tandem.sip_addr()
            );
            trunk
                .send_to(options.as_bytes(), tandem.sip_addr())
                .await
                .unwrap();
        }
        // Every OPTIONS is answered, the export's queue full or not.
        let mut buf = vec![0u8; 65536];
        for _ in 0..BURST {
            let n = tokio::time::timeout(SECS(10), trunk.recv(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{answered} OPTIONS answered, then none for 10 s\n{}",
                        tandem.log_tail(20)
                    )
                })
                .unwrap();
            assert!(buf[..n].starts_with(b"SIP/2.0 200 "), "{:?}", &buf[..n]);
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        if dropped(&tandem.metrics().await) > 0.0 {
            break;
        }
    }
    // Each OPTIONS in and each 200 out was either sent or counted.
    let want = (2 * answered) as f64;
    let (sent, lost) = wait_for("every message sent or counted", SECS(10), || async {
        let m = tandem.try_metrics().await?;
        let sent = m.get("tandem_hep_sent_total", &[]);
        let lost = dropped(&m);
        let others = m.get("tandem_hep_dropped_total", &[("reason", "too_large")])
            + m.get("tandem_hep_dropped_total", &[("reason", "send_error")]);
        if sent + lost + others == want {
            Ok((sent, lost))
        } else {
            Err(format!("sent {sent} + dropped {lost} + {others} != {want}"))
        }
    })
    .await;
    assert!(lost > 0.0, "the queue of 1 never overflowed ({sent} sent)");
    assert!(sent > 0.0, "nothing exported");
}

/// A TLS client trusting `ca` only (Tandem's crypto provider).
fn tls_connector(ca: &testkit::certs::TestCa) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.der().to_vec()))
        .unwrap();
    // Deprecated only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_over_tls_is_exported_decrypted_with_the_connections_addresses() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    require("sngrep", "-V");
    require("tshark", "-v");
    let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector.local_addr().unwrap();
    let (packets, reader) = collect(collector);
    let ca = testkit::certs::TestCa::new("HEP test CA");
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    ca.issue(&["127.0.0.1"], &cert, &key);
    let tls_port = testkit::free_port();
    let member = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = TandemConfig::new([("ms1", member.local_addr().unwrap())])
        .without_health()
        .extra_toml(&format!(
            "[sip.tls]\nport = {tls_port}\ncert_file = {cert:?}\nkey_file = {key:?}\n\n\
             [hep]\ncollector = \"{collector_addr}\"\n"
        ));
    let tandem = Tandem::start(TANDEM, config).await;
    let to = SocketAddr::new(tandem.sip_addr().ip(), tls_port);

    let call_id = "hep-over-tls@test";
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(to).await.unwrap();
        let from = tcp.local_addr().unwrap();
        let name = rustls::pki_types::ServerName::from(to.ip());
        let mut tls = tls_connector(&ca).connect(name, tcp).await.unwrap();
        let options = format!(
            "OPTIONS sips:{to} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {from};branch=z9hG4bK-hep-tls\r\n\
             Max-Forwards: 70\r\n\
             From: <sips:probe@{from}>;tag=t1\r\n\
             To: <sips:{to}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        tls.write_all(options.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer");
            got.extend_from_slice(&buf[..n]);
        }
        (from, String::from_utf8_lossy(&got).into_owned())
    };
    let (from, answer) = tokio::time::timeout(SECS(10), exchange)
        .await
        .expect("an answer over TLS within 10 s");
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    let quiet = std::time::Instant::now();
    let (packets, seen) = decoded(&tandem, packets, reader, collector_addr, quiet, "tls").await;

    // The decrypted SIP, between the connection's two ends.
    for (source, destination, what) in [(from, to, "OPTIONS"), (to, from, "200")] {
        let found = seen.iter().find(|s| {
            (s.source, s.destination, s.what.as_str(), s.call_id.as_str())
                == (source, destination, what, call_id)
        });
        assert!(
            found.is_some(),
            "no {what} {source} -> {destination} with Call-ID {call_id} in the decoded HEP:\n{seen:?}"
        );
    }
    // sngrep writes every decoded message as UDP, so the HEP IP protocol
    // chunk (type 2: TCP for TLS) is looked for in the packets themselves.
    let tcp_chunk: &[u8] = &[0, 0, 0, 2, 0, 7, 6];
    let ours: Vec<&Received> = packets
        .iter()
        .filter(|p| {
            p.packet
                .windows(call_id.len())
                .any(|w| w == call_id.as_bytes())
        })
        .collect();
    assert_eq!(ours.len(), 2, "the OPTIONS and its 200");
    for p in ours {
        assert!(
            p.packet.windows(tcp_chunk.len()).any(|w| w == tcp_chunk),
            "no IP protocol chunk saying TCP"
        );
    }
}

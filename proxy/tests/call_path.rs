//! The call path end to end: the real `tandem` binary between real SIPp
//! peers on 127.0.0.1 — a SIPp "trunk" placing calls, SIPp "media servers"
//! answering them — plus a small Rust UAC that checks RTP really goes
//! through the relay and comes back.
//!
//! Every test starts its own Tandem on fresh ports (SIP, admin, relay
//! range), so the tests run in parallel; every process is killed when its
//! handle drops, also when an assertion fails; every wait has a deadline.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use sipcore::dialog::Dialog;
use sipcore::endpoint::{Endpoint, EndpointConfig};
use sipcore::message::{Message, Method};
use sipcore::sdp::Sdp;
use sipcore::transaction::TuEvent;
use sipcore::transport::{Target, TransportKind};
use testkit::{wait_for, Sipp, SippOutcome, SippProcess, Tandem, TandemConfig};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/sipp")
        .join(name)
}

/// A SIPp media server: `-aa` answers Tandem's OPTIONS keepalives.
fn media_server(scenario_file: Option<&str>) -> Sipp {
    match scenario_file {
        None => Sipp::builtin("uas", None),
        Some(f) => Sipp::scenario_file(&scenario(f), None),
    }
    .arg("-aa")
}

/// A trunk placing calls: INVITE, ACK, pause of `-d`, BYE (deploy/sipp/uac.xml).
fn uac(tandem: &Tandem) -> Sipp {
    Sipp::scenario_file(&scenario("uac.xml"), Some(tandem.sip_addr()))
}

async fn start(sipp: Sipp) -> SippProcess {
    let mut p = sipp.spawn();
    p.wait_ready(SECS(5)).await;
    p
}

fn assert_all_succeeded(out: &SippOutcome, calls: u64, tandem: &Tandem) {
    assert_eq!(
        (out.exit_code, out.successful, out.failed),
        (Some(0), calls, 0),
        "expected {calls} successful calls\n{}\n{}",
        out.log,
        tandem.log_tail(30)
    );
}

/// Waits until the media servers together counted `total` for `column`
/// (a statistic such as `SuccessfulCall(C)`, or a message counter such
/// as `_INVITE_Recv`); returns each one's count.
async fn per_server(servers: &[&SippProcess], column: &str, total: u64) -> Vec<u64> {
    let get = |out: SippOutcome| {
        if column.starts_with('_') {
            out.count(column)
        } else {
            out.stat(column)
        }
    };
    wait_for(
        &format!("{total} x {column} over the media servers"),
        SECS(15),
        || async {
            let outs: Vec<SippOutcome> = servers.iter().map(|s| s.outcome()).collect();
            let counts: Vec<u64> = outs.iter().cloned().map(get).collect();
            if counts.iter().sum::<u64>() >= total {
                Ok(counts)
            } else {
                let logs: Vec<String> = outs
                    .iter()
                    .map(|o| {
                        let mut c: Vec<_> = o.counts.iter().filter(|(_, v)| *v != "0").collect();
                        c.sort();
                        format!("{c:?}\n{}", o.log)
                    })
                    .collect();
                Err(format!("{counts:?}\n{}", logs.join("\n")))
            }
        },
    )
    .await
}

/// Waits until the media server finished `n` calls of its scenario
/// (successfully or not). Its `-m` cannot be used: SIPp counts the OPTIONS
/// it answers with `-aa` as calls.
async fn server_calls(ms: &SippProcess, n: u64) -> SippOutcome {
    wait_for(
        &format!("{n} finished calls on the media server"),
        SECS(15),
        || async {
            let out = ms.outcome();
            if out.successful + out.failed >= n {
                Ok(out)
            } else {
                Err(out.log)
            }
        },
    )
    .await
}

async fn wait_no_calls(tandem: &Tandem) {
    tandem
        .wait_metric("tandem_calls_active", &[], 0.0, SECS(10))
        .await;
}

/// SDP `m=audio` ports (and `c=` addresses) of the messages SIPp received,
/// from its `-trace_msg` log.
fn received_sdp(messages: &str) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for block in messages.split("-----------------------------------------------") {
        let mut lines = block.lines().skip(1);
        let Some(kind) = lines.next() else { continue };
        if !kind.contains("message received") {
            continue;
        }
        let text: Vec<&str> = lines.map(str::trim).collect();
        let first = text
            .iter()
            .find(|l| !l.is_empty())
            .map(|l| l.to_string())
            .unwrap_or_default();
        let port = text
            .iter()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok());
        let conn = text
            .iter()
            .find_map(|l| l.strip_prefix("c=IN IP4 "))
            .unwrap_or("")
            .to_owned();
        if let Some(port) = port {
            out.push((first, port, conn));
        }
    }
    out
}

fn assert_relay_sdp(
    side: &str,
    seen: &[(String, u16, String)],
    relay: &RangeInclusive<u16>,
    other_side_port: u16,
) {
    for (first_line, port, conn) in seen {
        assert!(
            relay.contains(port) && *port != other_side_port,
            "{side} got SDP m=audio {port} in `{first_line}`: not a relay port {relay:?} \
             (the other side's media port is {other_side_port})"
        );
        assert_eq!(conn, "127.0.0.1", "{side}: c= of `{first_line}`");
    }
}

// ---- 1. calls with audio, relayed both ways, round-robin ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcap_calls_relay_rtp_both_ways_round_robin() {
    let ms1 = start(media_server(None).arg("-rtp_echo")).await;
    let ms2 = start(media_server(None).arg("-rtp_echo")).await;
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms1.addr()), ("ms2", ms2.addr())]),
    )
    .await;

    let out = Sipp::builtin("uac_pcap", Some(tandem.sip_addr()))
        .with_pcaps()
        .args(["-m", "4", "-r", "4"])
        .run(SECS(60))
        .await;
    assert_all_succeeded(&out, 4, &tandem);

    // Round-robin: two calls each, and each media server saw its calls
    // through to the BYE.
    let servers = [&ms1, &ms2];
    let done = per_server(&servers, "SuccessfulCall(C)", 4).await;
    assert_eq!(done, vec![2, 2], "calls per media server (SIPp stats)");
    let incoming: Vec<u64> = servers
        .iter()
        .map(|s| s.outcome().count("_INVITE_Recv"))
        .collect();
    assert_eq!(incoming, vec![2, 2], "INVITEs per media server");

    // Each call's RTP crossed the relay both ways: side A received the
    // caller's audio, side B the media server's echo of it.
    let cdrs = tandem.wait_cdrs(4, SECS(10)).await;
    let mut on = HashMap::new();
    let (mut a_total, mut b_total) = (0, 0);
    for cdr in &cdrs {
        assert_eq!(cdr.get("reason"), "bye_caller", "{}", cdr.line);
        assert!(cdr.num("a_packets") > 100, "caller audio: {}", cdr.line);
        assert!(
            cdr.num("b_packets") * 10 >= cdr.num("a_packets") * 9,
            "the echo came back through the relay: {}",
            cdr.line
        );
        a_total += cdr.num("a_packets");
        b_total += cdr.num("b_packets");
        *on.entry(cdr.servers().join(",")).or_insert(0) += 1;
    }
    assert_eq!(on.get("ms1"), Some(&2), "CDR servers: {on:?}");
    assert_eq!(on.get("ms2"), Some(&2), "CDR servers: {on:?}");
    // The relay forwarded what both sides sent (the counter also holds
    // RTCP, so it is at least the RTP both sides sent).
    wait_for("relayed RTP counter", SECS(5), || async {
        let m = tandem.try_metrics().await?;
        let relayed = m.get("tandem_rtp_packets_relayed_total", &[]);
        if relayed >= (a_total + b_total) as f64 {
            Ok(())
        } else {
            Err(format!("relayed {relayed} < {a_total} + {b_total}"))
        }
    })
    .await;
    wait_no_calls(&tandem).await;
}

// ---- 1b. a Rust UAC checks that its RTP comes back through the relay ----

const PROBE_PACKETS: u16 = 50;

/// A call placed by the Rust UAC through Tandem, answered and ACKed.
struct ProbeCall {
    ep: Endpoint,
    events: sipcore::transaction::TuReceiver,
    /// The UAC's RTP socket (the address its offer names).
    rtp: UdpSocket,
    me: SocketAddr,
    target: Target,
    dialog: Dialog,
    /// The relay's RTP address from the answer.
    relay: SocketAddr,
}

/// Places a call from the Rust UAC offering PCMA plus `attributes`
/// (SDP lines, each ending in CRLF), and ACKs its 200.
async fn place_probe_call(tandem: &Tandem, ms: &SippProcess, attributes: &str) -> ProbeCall {
    let (ep, mut events) =
        Endpoint::bind("127.0.0.1:0".parse().unwrap(), &EndpointConfig::default()).unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = ep.local_addr();
    let target = Target {
        transport: TransportKind::Udp,
        addr: tandem.sip_addr(),
        connection: None,
    };
    let sdp = format!(
        "v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n{attributes}",
        rtp.local_addr().unwrap().port()
    );
    let (invite, contact) = common::uac_invite(
        me,
        tandem.sip_addr(),
        "probe",
        "rtp-probe@127.0.0.1",
        "z9hG4bKprobe1",
        sdp,
    );
    ep.layer().send_request(invite.clone(), target).unwrap();
    let ok = next_final(&mut events, SECS(5), tandem).await;
    assert_eq!(ok.status(), Some(200), "{}", tandem.log_tail(20));

    // The answer points at the relay, never at the media server.
    let answer = Sdp::parse(ok.body()).expect("SDP in the 200");
    let m = &answer.media()[0];
    let relay = SocketAddr::new(m.connection().expect("c= line"), m.port());
    assert!(
        tandem.media_ports().contains(&relay.port()) && relay.port() != ms.media_port(),
        "answer's RTP address {relay} is not on the relay {:?}",
        tandem.media_ports()
    );

    let dialog = Dialog::from_uac_response(&invite, &ok, &contact).unwrap();
    let ack = dialog
        .ack(1, &format!("SIP/2.0/UDP {me};branch=z9hG4bKprobe2"))
        .build();
    ep.send_raw(target, ack).unwrap();
    ProbeCall {
        ep,
        events,
        rtp,
        me,
        target,
        dialog,
        relay,
    }
}

impl ProbeCall {
    /// Sends the BYE and waits for its 200.
    async fn hang_up(mut self, tandem: &Tandem) {
        let bye = self
            .dialog
            .request(
                &Method::Bye,
                &format!("SIP/2.0/UDP {};branch=z9hG4bKprobe3", self.me),
            )
            .build();
        self.ep
            .layer()
            .send_request(Message::parse(bye).unwrap(), self.target)
            .unwrap();
        let bye_ok = next_final(&mut self.events, SECS(5), tandem).await;
        assert_eq!(bye_ok.status(), Some(200));
        self.ep.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_probe_is_echoed_through_the_relay() {
    let ms = start(media_server(None).arg("-rtp_echo")).await;
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms.addr())])).await;
    let call = place_probe_call(&tandem, &ms, "").await;
    let (rtp, relay) = (&call.rtp, call.relay);

    // Send 50 packets, 20 ms apart, each with a distinct payload; every one
    // must come back, from the relay's address (symmetric RTP).
    let sender = async {
        for seq in 0..PROBE_PACKETS {
            rtp.send_to(&rtp_packet(seq), relay).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let receiver = async {
        let mut echoed = vec![false; PROBE_PACKETS as usize];
        let mut buf = [0u8; 2048];
        let until = Instant::now() + SECS(10);
        while echoed.iter().any(|e| !e) {
            let Ok(got) = tokio::time::timeout_at(until, rtp.recv_from(&mut buf)).await else {
                break;
            };
            let (n, from) = got.unwrap();
            assert_eq!(from, relay, "echo must come from the relay's port");
            let seq = u16::from_be_bytes([buf[2], buf[3]]);
            assert!(
                seq < PROBE_PACKETS,
                "echo with a sequence number not sent: {seq}"
            );
            assert_eq!(
                &buf[12..n],
                &rtp_packet(seq)[12..],
                "payload of echoed packet {seq}"
            );
            echoed[seq as usize] = true;
        }
        echoed.iter().filter(|e| **e).count()
    };
    let ((), echoed) = tokio::join!(sender, receiver);
    assert_eq!(
        echoed,
        PROBE_PACKETS as usize,
        "echoed packets\n{}",
        tandem.log_tail(20)
    );

    call.hang_up(&tandem).await;

    let cdr = &tandem.wait_cdrs(1, SECS(5)).await[0];
    assert_eq!(
        cdr.num("a_packets"),
        u64::from(PROBE_PACKETS),
        "{}",
        cdr.line
    );
    assert_eq!(
        cdr.num("b_packets"),
        u64::from(PROBE_PACKETS),
        "{}",
        cdr.line
    );
    tandem
        .wait_metric("tandem_media_sessions_active", &[], 0.0, SECS(5))
        .await;
    let m = tandem.metrics().await;
    assert!(
        m.get("tandem_rtp_packets_relayed_total", &[]) >= f64::from(2 * PROBE_PACKETS),
        "{}",
        m.text()
    );
    wait_no_calls(&tandem).await;
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..160u32).map(|i| (i as u16 ^ seq.wrapping_mul(7)) as u8));
    p
}

/// UDP sockets bound to the ports of Tandem's relay range (each test's
/// Tandem has a range of its own). Counted from the kernel's table rather
/// than the process's descriptors, which also come and go with admin HTTP
/// connections.
fn relay_sockets(tandem: &Tandem) -> usize {
    let ports = tandem.media_ports();
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    // "sl local_address:port rem_address:port ...", hex.
                    let local = line.split_whitespace().nth(1)?;
                    u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
                })
                .collect::<Vec<_>>()
        })
        .filter(|port| ports.contains(port))
        .count()
}

/// RTCP RR without report blocks.
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// The next datagram on `sock` (payload, source), within 5 s.
async fn next_datagram(sock: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(SECS(5), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => (buf[..n].to_vec(), from),
        other => panic!("no {what} within 5 s: {other:?}"),
    }
}

/// RFC 5761 on both legs: the relay binds only its two RTP ports for the
/// call (no RTCP sockets), and RTCP multiplexed on them crosses it both
/// ways (the media server echoes RTP and RTCP alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_legs_both_use_rtcp_mux_holds_two_relay_sockets() {
    let ms = start(media_server(Some("rtcp_mux_uas.xml")).arg("-rtp_echo")).await;
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms.addr())])).await;
    let before = relay_sockets(&tandem);
    let call = place_probe_call(&tandem, &ms, "a=rtcp-mux\r\n").await;
    // Counted before any media: a latched port adds a connected socket
    // (`connect_latched`).
    assert_eq!(
        relay_sockets(&tandem) - before,
        2,
        "relay sockets of a call whose legs both multiplex RTCP"
    );
    call.rtp.send_to(&rtp_packet(1), call.relay).await.unwrap();
    let (got, from) = next_datagram(&call.rtp, "RTP echo").await;
    assert_eq!((got, from), (rtp_packet(1), call.relay));
    call.rtp
        .send_to(&rtcp_rr(0x1234), call.relay)
        .await
        .unwrap();
    let (got, from) = next_datagram(&call.rtp, "RTCP echo").await;
    assert_eq!((got, from), (rtcp_rr(0x1234), call.relay));
    call.hang_up(&tandem).await;
    wait_no_calls(&tandem).await;
}

/// Without rtcp-mux the relay binds RTP and RTCP ports on both sides, and
/// RTCP sent to its RTCP port is relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_rtcp_mux_holds_four_relay_sockets_and_relays_rtcp() {
    let ms = start(media_server(None).arg("-rtp_echo")).await;
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms.addr())])).await;
    let before = relay_sockets(&tandem);
    let call = place_probe_call(&tandem, &ms, "").await;
    assert_eq!(
        relay_sockets(&tandem) - before,
        4,
        "relay sockets of a call without rtcp-mux"
    );
    let relayed = |m: &testkit::Metrics| m.get("tandem_rtp_packets_relayed_total", &[]);
    let start_count = relayed(&tandem.metrics().await);
    let rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut relay_rtcp = call.relay;
    relay_rtcp.set_port(call.relay.port() + 1);
    for n in 0..5 {
        rtcp.send_to(&rtcp_rr(n), relay_rtcp).await.unwrap();
    }
    wait_for("RTCP relayed", SECS(5), || async {
        let now = relayed(&tandem.try_metrics().await?);
        if now >= start_count + 5.0 {
            Ok(())
        } else {
            Err(format!(
                "relayed {now}, {start_count} before 5 RTCP packets"
            ))
        }
    })
    .await;
    call.hang_up(&tandem).await;
    wait_no_calls(&tandem).await;
}

/// The next final response (provisional ones skipped).
async fn next_final(
    events: &mut sipcore::transaction::TuReceiver,
    deadline: Duration,
    tandem: &Tandem,
) -> Message {
    let until = Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(TuEvent::Response { response, .. })) if response.status() >= Some(200) => {
                return response
            }
            Ok(Some(TuEvent::Timeout { .. })) => {
                panic!("request timed out\n{}", tandem.log_tail(20))
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("endpoint closed"),
            Err(_) => panic!(
                "no final response within {deadline:?}\n{}",
                tandem.log_tail(20)
            ),
        }
    }
}

// ---- 2. CANCEL before the answer ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_answer_reaches_the_media_server() {
    let ms = start(media_server(Some("ring_uas.xml"))).await;
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms.addr())])).await;
    let out = Sipp::scenario_file(&scenario("cancel_uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "1"])
        .run(SECS(20))
        .await;
    assert_all_succeeded(&out, 1, &tandem);
    // The media server got the CANCEL, answered 487 and got its ACK.
    let server = server_calls(&ms, 1).await;
    assert_eq!(
        (server.successful, server.failed),
        (1, 0),
        "{}\n{}",
        server.log,
        tandem.log_tail(20)
    );
    wait_no_calls(&tandem).await;
    let cdr = &tandem.wait_cdrs(1, SECS(5)).await[0];
    assert_eq!(cdr.get("reason"), "cancelled", "{}", cdr.line);
    tandem
        .wait_metric("tandem_media_sessions_active", &[], 0.0, SECS(5))
        .await;
}

// ---- 3. BYE from the media server ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_from_the_media_server_ends_the_call() {
    let ms = start(media_server(Some("bye_uas.xml"))).await;
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms.addr())])).await;
    let out = Sipp::scenario_file(&scenario("bye_uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "1"])
        .run(SECS(20))
        .await;
    assert_all_succeeded(&out, 1, &tandem);
    let server = server_calls(&ms, 1).await;
    assert_eq!((server.successful, server.failed), (1, 0), "{}", server.log);
    let cdr = &tandem.wait_cdrs(1, SECS(5)).await[0];
    assert_eq!(cdr.get("reason"), "bye_server", "{}", cdr.line);
    wait_no_calls(&tandem).await;
}

// ---- 3b. a 2xx retransmitted after the hang-up gets an ACK, not a BYE ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_2xx_retransmission_is_acked_without_a_second_bye() {
    let ms = start(media_server(Some("late_2xx_uas.xml"))).await;
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms.addr())])).await;
    let out = uac(&tandem)
        .args(["-m", "1", "-d", "200"])
        .run(SECS(20))
        .await;
    assert_all_succeeded(&out, 1, &tandem);
    // The scenario fails on a missing ACK or on a second BYE.
    let server = server_calls(&ms, 1).await;
    assert_eq!(
        (server.successful, server.failed),
        (1, 0),
        "{}\n{}",
        server.log,
        tandem.log_tail(20)
    );
    let byes = server.count("_BYE_Recv") + server.count("_BYE_Unexp");
    assert_eq!(byes, 1, "one BYE for one dialog");
}

// ---- 4. hold and unhold by re-INVITE from the trunk ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_hold_unhold_from_the_trunk() {
    let ms = start(media_server(Some("reinvite_uas.xml")).trace_messages()).await;
    let ms_media = ms.media_port();
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms.addr())])).await;
    let uac = Sipp::scenario_file(&scenario("reinvite_uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "1"])
        .trace_messages();
    let uac_media = uac.media_port();
    let out = uac.run(SECS(20)).await;
    assert_all_succeeded(&out, 1, &tandem);
    // The scenario checks each offer's direction (a=sendonly on hold,
    // a=sendrecv after): a mismatch fails the media server's call.
    let server = server_calls(&ms, 1).await;
    assert_eq!(
        (server.successful, server.failed),
        (1, 0),
        "{}\n{}",
        server.log,
        tandem.log_tail(20)
    );

    // Each side only ever saw the relay's address in SDP.
    let relay = tandem.media_ports();
    let caller_saw = received_sdp(&out.messages);
    assert_eq!(
        caller_saw.len(),
        3,
        "caller: one answer per (re-)INVITE: {caller_saw:?}"
    );
    assert_relay_sdp("caller", &caller_saw, &relay, ms_media);
    let server_saw = received_sdp(&server.messages);
    assert_eq!(
        server_saw.len(),
        3,
        "media server: three offers: {server_saw:?}"
    );
    assert_relay_sdp("media server", &server_saw, &relay, uac_media);
    assert!(
        server.messages.contains("a=sendonly"),
        "the hold offer reached the media server"
    );
    let cdr = &tandem.wait_cdrs(1, SECS(5)).await[0];
    assert_eq!(cdr.get("reason"), "bye_caller", "{}", cdr.line);
    wait_no_calls(&tandem).await;
}

// ---- 5. 486 from the media server reaches the caller ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_here_is_forwarded_to_the_caller() {
    let ms = start(media_server(Some("busy_uas.xml"))).await;
    // A second member proves 486 is final: it must not be tried.
    let other = start(media_server(None)).await;
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr()), ("ms2", other.addr())]).strategy("sequential"),
    )
    .await;
    let out = Sipp::scenario_file(&scenario("busy_uac.xml"), Some(tandem.sip_addr()))
        .args(["-m", "1"])
        .run(SECS(20))
        .await;
    assert_all_succeeded(&out, 1, &tandem);
    let server = server_calls(&ms, 1).await;
    assert_eq!((server.successful, server.failed), (1, 0), "{}", server.log);
    assert_eq!(
        other.outcome().count("_INVITE_Recv"),
        0,
        "486 is not a reason to try another member"
    );
    let cdr = &tandem.wait_cdrs(1, SECS(5)).await[0];
    assert_eq!(cdr.get("reason"), "rejected", "{}", cdr.line);
    assert_eq!(cdr.servers(), vec!["ms1"], "{}", cdr.line);
    wait_no_calls(&tandem).await;
}

// ---- 6. the first member does not answer: the second one does ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_member_is_skipped_within_the_answer_timeout() {
    let silent = start(media_server(Some("silent_uas.xml"))).await;
    let ms2 = start(media_server(None)).await;
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", silent.addr()), ("ms2", ms2.addr())])
            .strategy("sequential")
            .member_answer_timeout_ms(1000),
    )
    .await;
    let out = uac(&tandem)
        .args(["-m", "1", "-d", "500"])
        .run(SECS(20))
        .await;
    assert_all_succeeded(&out, 1, &tandem);
    // ms1 was tried first (and kept silent), ms2 took the call.
    let tried = silent.wait_count("_INVITE_Recv", 1, SECS(5)).await;
    assert_eq!(tried.count("_INVITE_Recv"), 1);
    let answered = ms2.wait_stat("SuccessfulCall(C)", 1, SECS(10)).await;
    assert_eq!(answered.count("_INVITE_Recv"), 1);
    let cdr = &tandem.wait_cdrs(1, SECS(5)).await[0];
    assert_eq!(cdr.servers(), vec!["ms1", "ms2"], "{}", cdr.line);
    assert_eq!(cdr.get("reason"), "bye_caller", "{}", cdr.line);
    wait_no_calls(&tandem).await;
}

// ---- 7. a member marked down by OPTIONS gets no calls until it is back ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_down_by_options_gets_no_calls_until_it_answers_again() {
    let mut ms1 = start(media_server(None)).await;
    let ms1_port = ms1.addr().port();
    let ms2 = start(media_server(None)).await;
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms1.addr()), ("ms2", ms2.addr())]).health(300, 250, 2, 2),
    )
    .await;
    let up = |m: &'static str| [("member", m)];

    ms1.kill().await;
    tandem
        .wait_metric("tandem_media_server_up", &up("ms1"), 0.0, SECS(10))
        .await;
    let out = uac(&tandem)
        .args(["-m", "4", "-r", "10", "-d", "300"])
        .run(SECS(30))
        .await;
    assert_all_succeeded(&out, 4, &tandem);
    let on_ms2 = ms2.wait_count("_INVITE_Recv", 4, SECS(5)).await;
    assert_eq!(on_ms2.count("_INVITE_Recv"), 4, "all calls on ms2");

    // ms1 comes back on the same address.
    let ms1 = start(media_server(None).with_port(ms1_port)).await;
    tandem
        .wait_metric("tandem_media_server_up", &up("ms1"), 1.0, SECS(10))
        .await;
    let out = uac(&tandem)
        .args(["-m", "4", "-r", "10", "-d", "300"])
        .run(SECS(30))
        .await;
    assert_all_succeeded(&out, 4, &tandem);
    let counts = per_server(&[&ms1, &ms2], "_INVITE_Recv", 8).await;
    assert_eq!(counts, vec![2, 6], "calls spread again once ms1 is up");
    wait_no_calls(&tandem).await;
}

// ---- 8. packet loss on both sides ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_on_both_sides_still_completes_every_call() {
    let ms1 = start(media_server(None).args(["-lost", "5"])).await;
    let ms2 = start(media_server(None).args(["-lost", "5"])).await;
    // Health probes are not under test here: with loss, two lost OPTIONS
    // in a row would take a member out.
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms1.addr()), ("ms2", ms2.addr())]).without_health(),
    )
    .await;
    let out = uac(&tandem)
        .args(["-m", "20", "-r", "20", "-d", "300", "-lost", "5"])
        .run(SECS(60))
        .await;
    assert_all_succeeded(&out, 20, &tandem);
    let servers = [&ms1, &ms2];
    let done = per_server(&servers, "SuccessfulCall(C)", 20).await;
    assert_eq!(done.iter().sum::<u64>(), 20, "{done:?}");
    // SIPp counts the messages it dropped (sent or received) per message.
    let dropped = |o: &SippOutcome| -> u64 {
        o.counts
            .iter()
            .filter(|(c, _)| c.ends_with("_Lost"))
            .filter_map(|(_, v)| v.parse::<u64>().ok())
            .sum()
    };
    let lost = dropped(&out) + servers.iter().map(|s| dropped(&s.outcome())).sum::<u64>();
    assert!(lost > 0, "-lost 5 must have dropped messages");
    let cdrs = tandem.wait_cdrs(20, SECS(10)).await;
    assert!(
        cdrs.iter().all(|c| c.get("reason") == "bye_caller"),
        "{:#?}",
        cdrs.iter().map(|c| &c.line).collect::<Vec<_>>()
    );
    wait_no_calls(&tandem).await;
}

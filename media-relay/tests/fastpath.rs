//! The RTP kernel fast path with real UDP sockets on 127.0.0.0/8: the BPF
//! program attached at `lo` ingress forwards latched streams. Skipped, with
//! the reason printed, where BPF is refused (not root, no CAP_BPF, no BPF
//! syscall); as root on a BPF-capable kernel they run. Every receive has a
//! deadline.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{addr, eventually, ip, peer, recv, rr_with_block, rtp_pkt, DEADLINE};
use media_relay::rtp;
use media_relay::{Error, FastPathMode, MediaRelay, RelayConfig, SessionId};

/// A relay with the fast path on, or None (printed why) where this host
/// refuses BPF.
fn fast_relay(net: u8, port_min: u16, port_max: u16) -> Option<MediaRelay> {
    fast_relay_with(net, port_min, port_max, |_| {})
}

fn fast_relay_with(
    net: u8,
    port_min: u16,
    port_max: u16,
    edit: impl FnOnce(&mut RelayConfig),
) -> Option<MediaRelay> {
    let mut config = RelayConfig {
        local_ip: ip(net, 1),
        port_min,
        port_max,
        workers: 1,
        fast_path: FastPathMode::On,
        ..RelayConfig::default()
    };
    edit(&mut config);
    match MediaRelay::new(config) {
        Ok(r) => {
            assert!(r.fast_path_active());
            Some(r)
        }
        Err(Error::FastPathUnavailable(reason))
            if [
                "Operation not permitted",
                "Permission denied",
                "Function not implemented",
            ]
            .iter()
            .any(|s| reason.to_string().contains(s)) =>
        {
            eprintln!("SKIPPED: BPF is refused here: {reason}");
            None
        }
        Err(e) => panic!("relay with the fast path: {e}"),
    }
}

fn session(
    r: &MediaRelay,
    id: SessionId,
    trunk: &UdpSocket,
    server: &UdpSocket,
) -> (SocketAddr, SocketAddr) {
    let info = common::session(r, id, trunk, server, false);
    (info.side_a.rtp_addr(), info.side_b.rtp_addr())
}

#[tokio::test]
async fn latched_rtp_is_forwarded_and_counted_by_the_kernel() {
    let net = 140;
    let Some(r) = fast_relay(net, 22000, 22099) else {
        return;
    };
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    let id = SessionId(1);
    let (a, b) = session(&r, id, &trunk, &server);

    const N: u16 = 1000;
    for seq in 0..N {
        let ts = u32::from(seq) * 160;
        trunk.send_to(&rtp_pkt(seq, ts, 0xa), a).unwrap();
        let (got, from) = recv(&server);
        assert_eq!(from, b, "leg B sees the relay's side-B socket");
        assert_eq!(got, rtp_pkt(seq, ts, 0xa), "packet {seq} intact");
        server.send_to(&rtp_pkt(seq, ts, 0xb), b).unwrap();
        let (got, from) = recv(&trunk);
        assert_eq!(from, a, "leg A sees the relay's side-A socket");
        assert_eq!(got, rtp_pkt(seq, ts, 0xb), "packet {seq} intact");
    }
    // Multiplexed RTCP on the RTP port is user space's (it maps SSRCs).
    // With a report block: as long as an RTP header with a CSRC, so the
    // program's RTCP test, not its length check, passes it up.
    for _ in 0..3 {
        trunk.send_to(&rr_with_block(0xa, 0xb), a).unwrap();
        assert_eq!(recv(&server).0, rr_with_block(0xa, 0xb));
    }

    let st = r.stats(id).unwrap();
    for (side, s) in [("A", &st.side_a), ("B", &st.side_b)] {
        assert_eq!(s.packets, u64::from(N), "side {side}: every packet counted");
        assert_eq!(s.bytes, u64::from(N) * 172, "side {side}: bytes");
        assert!(
            s.kernel_packets * 100 >= s.packets * 99,
            "side {side}: {} of {} packets forwarded by the kernel",
            s.kernel_packets,
            s.packets
        );
        assert!(s.since_last_packet.unwrap() < DEADLINE);
    }
    assert_eq!(st.side_a.rtcp_packets, 3);
    let user = r.counters().packets_relayed;
    assert!(
        user <= 3 + 10,
        "the user-space relay forwarded only the first packets and RTCP: {user}"
    );
    let c = r.counters();
    assert_eq!(
        c.fast_path_packets,
        st.side_a.kernel_packets + st.side_b.kernel_packets
    );
    let last = r.remove_session(id).await.unwrap();
    assert_eq!(
        last.side_b.kernel_packets, st.side_b.kernel_packets,
        "final stats keep them"
    );
    assert_eq!(
        r.counters().fast_path_packets,
        c.fast_path_packets,
        "and so does the total"
    );
}

#[tokio::test]
async fn a_media_server_move_keeps_one_continuous_stream_with_the_fast_path() {
    let net = 141;
    let Some(r) = fast_relay(net, 22100, 22199) else {
        return;
    };
    let trunk = peer(net, 2);
    let server1 = peer(net, 3);
    let server2 = peer(net, 4);
    let id = SessionId(2);
    let (a, b) = session(&r, id, &trunk, &server1);
    trunk.send_to(&rtp_pkt(1, 0, 0xa), a).unwrap();
    recv(&server1);

    // Server 1 plays 300 packets (all but the first in the kernel), its
    // sequence numbers wrapping on the way.
    let mut seen = Vec::new();
    for k in 0..300u32 {
        let seq = 65400u16.wrapping_add(k as u16);
        server1
            .send_to(&rtp_pkt(seq, 8000 + 160 * k, 0x1111), b)
            .unwrap();
        seen.push(recv(&trunk).0);
    }
    let before = r.stats(id).unwrap().side_b.kernel_packets;
    // A snapshot (what a standby gets) continues from what the kernel
    // sent, not from the first packet user space saw.
    let snap = r.session_snapshot(id).unwrap();
    let last = snap
        .continuity_toward_a
        .last_sent
        .expect("a packet was sent");
    assert_eq!(
        (last.ssrc, last.seq),
        (0x1111, rtp::seq(seen.last().unwrap()))
    );
    assert!(
        before >= 290,
        "server 1's stream went through the kernel: {before}"
    );

    // Server 1 dies; the call moves to server 2, which starts its own
    // stream (other SSRC, sequence and timestamps).
    r.switch_upstream(id, addr(&server2), None).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    for k in 0..300u32 {
        let seq = 30000u16.wrapping_add(k as u16);
        server2
            .send_to(&rtp_pkt(seq, 123_456 + 160 * k, 0x2222), b)
            .unwrap();
        seen.push(recv(&trunk).0);
    }
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(rtp::ssrc(p), 0x1111, "packet {i}: one SSRC throughout");
        assert_eq!(
            rtp::seq(p),
            65400u16.wrapping_add(i as u16),
            "packet {i}: seq +1"
        );
        assert_eq!(
            rtp::marker(p),
            i == 300,
            "packet {i}: marker only on the first moved"
        );
        if i > 0 {
            let step = rtp::timestamp(p).wrapping_sub(rtp::timestamp(&seen[i - 1]));
            if i == 300 {
                // The wall-clock time since server 1's last packet (about
                // 20 ms, a few hundred at most here).
                assert!(
                    (1..8000 * 5).contains(&step),
                    "timestamp jump at the move: {step}"
                );
            } else {
                assert_eq!(step, 160, "packet {i}: the sender's spacing");
            }
        }
    }
    let st = r.stats(id).unwrap();
    assert!(
        st.side_b.kernel_packets - before >= 290,
        "server 2's stream, rewritten, went through the kernel: {}",
        st.side_b.kernel_packets - before
    );
    // Leg A's media goes to server 2 (the kernel entry followed the move).
    trunk.send_to(&rtp_pkt(2, 160, 0xa), a).unwrap();
    let (got, from) = recv(&server2);
    assert_eq!((rtp::seq(&got), from), (2, b));
    r.remove_session(id).await.unwrap();
}

#[tokio::test]
async fn entries_go_when_the_session_ends() {
    let net = 142;
    let Some(r) = fast_relay(net, 22200, 22299) else {
        return;
    };
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    let id = SessionId(3);
    let (a, b) = session(&r, id, &trunk, &server);
    trunk.send_to(&rtp_pkt(1, 0, 0xa), a).unwrap();
    recv(&server);
    server.send_to(&rtp_pkt(1, 0, 0xb), b).unwrap();
    recv(&trunk);
    r.remove_session(id).await.unwrap();
    // Nothing is forwarded for an ended session: not by the kernel either.
    trunk.send_to(&rtp_pkt(2, 160, 0xa), a).unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(server.recv_from(&mut buf).is_err(), "nothing after removal");
    eventually("the counters to be read", || r.stats(id).is_err());
}

#[tokio::test]
async fn an_ssrc_change_the_kernel_forwarded_is_the_one_a_new_source_is_compared_with() {
    let net = 143;
    let Some(r) = fast_relay_with(net, 22300, 22399, |c| {
        c.session_defaults.relatch_on_ssrc_change = true;
    }) else {
        return;
    };
    let trunk = peer(net, 2);
    let server = peer(net, 3);
    let id = SessionId(1);
    let (a, _) = session(&r, id, &trunk, &server);
    // The trunk's stream, then the same peer's new SSRC: after the first
    // packet both go by the kernel, which user space does not see.
    for (seq, ssrc) in (0..40u16).map(|s| (s, if s < 20 { 0xa } else { 0xc })) {
        trunk
            .send_to(&rtp_pkt(seq, u32::from(seq) * 160, ssrc), a)
            .unwrap();
        assert_eq!(recv(&server).0, rtp_pkt(seq, u32::from(seq) * 160, ssrc));
    }
    assert!(r.stats(id).unwrap().side_a.kernel_packets > 0);
    // Another source with the SSRC already flowing is not a new stream:
    // dropped, the trunk stays latched.
    let other = peer(net, 2);
    other.send_to(&rtp_pkt(999, 0, 0xc), a).unwrap();
    eventually("the other source to be dropped", || {
        r.stats(id).unwrap().side_a.dropped_wrong_source == 1
    });
    trunk.send_to(&rtp_pkt(40, 40 * 160, 0xc), a).unwrap();
    assert_eq!(recv(&server).0, rtp_pkt(40, 40 * 160, 0xc));
    r.remove_session(id).await.unwrap();
}

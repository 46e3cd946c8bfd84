use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::time::Instant;

use super::*;
use crate::rtp::build_rtp;

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port)
}

/// Leg A: SDP 127.0.0.10:5000, SIP from 127.0.0.11 (behind NAT, its
/// public address). Leg B: SDP 127.0.0.20:6000, SIP from the same IP.
fn session(options: SessionOptions) -> SessionState {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut s = SessionState::new(
        SessionId(1),
        options,
        SideState::new(LocalPorts::new(ip, 20000), Some(addr(10, 5000)), false),
        SideState::new(LocalPorts::new(ip, 20002), Some(addr(20, 6000)), false),
    );
    s.set_signalling_ip(Side::A, Some(addr(11, 0).ip()));
    s.set_signalling_ip(Side::B, Some(addr(20, 0).ip()));
    s
}

fn with_latching(latching: Latching) -> SessionOptions {
    SessionOptions {
        latching,
        ..SessionOptions::default()
    }
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    build_rtp(0, seq, u32::from(seq) * 160, ssrc, &[0; 160])
}

fn send(s: &mut SessionState, side: Side, port: Port, p: &mut [u8], src: SocketAddr) -> Verdict {
    s.on_packet(side, port, p, src, Instant::now(), 1_000_000)
}

const FWD: Verdict = Verdict::Forward;
const WRONG: Verdict = Verdict::Drop(DropReason::WrongSource);
const BAD: Verdict = Verdict::Drop(DropReason::Malformed);
const REJECTED: Verdict = Verdict::Drop(DropReason::RejectedSource);

#[test]
fn first_packet_latches_and_becomes_the_destination() {
    let mut s = session(SessionOptions::default());
    assert_eq!(s.destination(Side::B, Port::Rtp), Some(addr(10, 5000)));
    assert_eq!(s.destination(Side::B, Port::Rtcp), Some(addr(10, 5001)));
    // Leg A is behind NAT: its RTP comes from elsewhere than its SDP says.
    let nat = addr(11, 40000);
    assert_eq!(send(&mut s, Side::A, Port::Rtp, &mut rtp(1, 7), nat), FWD);
    assert_eq!(s.sides[0].latched_rtp, Some(nat));
    assert_eq!(s.sides[0].latched_ssrc, Some(7));
    assert_eq!(s.destination(Side::B, Port::Rtp), Some(nat));
    assert_eq!(s.destination(Side::B, Port::Rtcp), Some(addr(11, 40001)));
    // The SDP address itself is now foreign.
    assert_eq!(
        send(&mut s, Side::A, Port::Rtp, &mut rtp(2, 7), addr(10, 5000)),
        WRONG
    );
    assert_eq!(send(&mut s, Side::A, Port::Rtp, &mut rtp(3, 7), nat), FWD);
    let st = s.stats(Instant::now());
    assert_eq!(st.side_a.packets, 2);
    assert_eq!(st.side_a.dropped_wrong_source, 1);
    assert_eq!(st.side_b.packets, 0);
}

#[test]
fn rtcp_latches_separately() {
    let mut s = session(SessionOptions::default());
    let rr = |ssrc: u32| {
        let mut p = vec![0x80, 201, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    };
    let src = addr(10, 7777);
    assert_eq!(send(&mut s, Side::A, Port::Rtcp, &mut rr(1), src), FWD);
    assert_eq!(s.sides[0].latched_rtcp, Some(src));
    assert_eq!(s.sides[0].latched_rtp, None);
    assert_eq!(s.destination(Side::B, Port::Rtcp), Some(src));
    assert_eq!(
        send(&mut s, Side::A, Port::Rtcp, &mut rr(1), addr(10, 7778)),
        WRONG
    );
    // RTP on the RTCP port is malformed there.
    assert_eq!(send(&mut s, Side::A, Port::Rtcp, &mut rtp(1, 1), src), BAD);
    let st = s.stats(Instant::now()).side_a;
    assert_eq!(
        (st.rtcp_packets, st.packets, st.dropped_malformed),
        (1, 0, 1)
    );
}

#[test]
fn rtcp_mux_passes_on_the_rtp_port() {
    let mut s = session(SessionOptions::default());
    let src = addr(20, 6000);
    assert_eq!(send(&mut s, Side::B, Port::Rtp, &mut rtp(1, 5), src), FWD);
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&5u32.to_be_bytes());
    sr.extend_from_slice(&[0; 20]);
    let before = sr.clone();
    assert_eq!(send(&mut s, Side::B, Port::Rtp, &mut sr, src), FWD);
    assert_eq!(sr, before);
    let st = s.stats(Instant::now()).side_b;
    assert_eq!((st.packets, st.rtcp_packets), (1, 1));
}

#[test]
fn malformed_packets_are_dropped_before_latching() {
    let mut s = session(SessionOptions::default());
    assert_eq!(
        send(&mut s, Side::A, Port::Rtp, &mut [0x80, 0, 1], addr(9, 1)),
        BAD
    );
    assert_eq!(s.sides[0].latched_rtp, None);
}

#[test]
fn relatch_on_ssrc_change_is_optional() {
    // Both on the SDP's IP: either may latch.
    let (first, second) = (addr(10, 5000), addr(10, 5002));
    let mut strict = session(SessionOptions::default());
    send(&mut strict, Side::A, Port::Rtp, &mut rtp(1, 1), first);
    assert_eq!(
        send(&mut strict, Side::A, Port::Rtp, &mut rtp(1, 2), second),
        WRONG
    );
    assert_eq!(strict.sides[0].latched_rtp, Some(first));

    let mut loose = session(SessionOptions {
        relatch_on_ssrc_change: true,
        ..SessionOptions::default()
    });
    send(&mut loose, Side::A, Port::Rtp, &mut rtp(1, 1), first);
    // Same SSRC from elsewhere: still foreign.
    assert_eq!(
        send(&mut loose, Side::A, Port::Rtp, &mut rtp(2, 1), second),
        WRONG
    );
    // New SSRC from elsewhere: re-latch.
    assert_eq!(
        send(&mut loose, Side::A, Port::Rtp, &mut rtp(1, 2), second),
        FWD
    );
    assert_eq!(loose.sides[0].latched_rtp, Some(second));
    // The latched SSRC from another address is foreign again.
    assert_eq!(
        send(&mut loose, Side::A, Port::Rtp, &mut rtp(2, 2), first),
        WRONG
    );
    // A new SSRC from a source that may not latch moves nothing.
    assert_eq!(
        send(
            &mut loose,
            Side::A,
            Port::Rtp,
            &mut rtp(1, 3),
            addr(99, 5000)
        ),
        REJECTED
    );
    assert_eq!(loose.sides[0].latched_rtp, Some(second));
}

#[test]
fn set_remote_rearms_latching_only_when_it_changes() {
    let mut s = session(SessionOptions::default());
    let nat = addr(11, 40000);
    send(&mut s, Side::A, Port::Rtp, &mut rtp(1, 7), nat);
    s.set_remote(Side::A, addr(10, 5000));
    assert_eq!(s.sides[0].latched_rtp, Some(nat));
    s.set_remote(Side::A, addr(10, 5002));
    assert_eq!(s.sides[0].latched_rtp, None);
    assert_eq!(s.destination(Side::B, Port::Rtp), Some(addr(10, 5002)));
    s.set_remote_rtcp(Side::A, addr(10, 9999));
    assert_eq!(s.destination(Side::B, Port::Rtcp), Some(addr(10, 9999)));
}

#[test]
fn switch_upstream_refuses_the_old_server_and_continues_the_stream() {
    let mut s = session(SessionOptions::default());
    let (old, new) = (addr(20, 6000), addr(21, 8000));
    for seq in 1..=3 {
        assert_eq!(
            send(&mut s, Side::B, Port::Rtp, &mut rtp(seq, 0xaaaa), old),
            FWD
        );
    }
    s.switch_upstream(new, None);
    assert_eq!(s.upstream_switches, 1);
    assert_eq!(s.destination(Side::A, Port::Rtp), Some(new));
    assert_eq!(s.destination(Side::A, Port::Rtcp), Some(addr(21, 8001)));
    assert!(s.sides[1].refused_sources.contains(&old));
    assert!(s.sides[1].refused_sources.contains(&addr(20, 6001)));
    // A late packet of the old server cannot latch.
    assert_eq!(
        send(&mut s, Side::B, Port::Rtp, &mut rtp(4, 0xaaaa), old),
        REJECTED
    );
    let mut p = rtp(900, 0xbbbb);
    assert_eq!(send(&mut s, Side::B, Port::Rtp, &mut p, new), FWD);
    assert_eq!((rtp::ssrc(&p), rtp::seq(&p)), (0xaaaa, 4));
    assert!(rtp::marker(&p));
    assert_eq!(s.sides[1].latched_rtp, Some(new));

    // Switching back to the first server un-refuses it.
    s.switch_upstream(old, None);
    assert!(!s.sides[1].refused_sources.contains(&old));
    assert!(s.sides[1].refused_sources.contains(&new));
    let mut p = rtp(50, 0xcccc);
    assert_eq!(send(&mut s, Side::B, Port::Rtp, &mut p, old), FWD);
    assert_eq!((rtp::ssrc(&p), rtp::seq(&p)), (0xaaaa, 5));
}

#[test]
fn switch_without_continuity_passes_the_new_stream_through() {
    let mut s = session(SessionOptions {
        continuity: false,
        ..SessionOptions::default()
    });
    send(
        &mut s,
        Side::B,
        Port::Rtp,
        &mut rtp(1, 0xaaaa),
        addr(20, 6000),
    );
    s.switch_upstream(addr(21, 8000), None);
    let mut p = rtp(900, 0xbbbb);
    assert_eq!(
        send(&mut s, Side::B, Port::Rtp, &mut p, addr(21, 8000)),
        FWD
    );
    assert_eq!((rtp::ssrc(&p), rtp::seq(&p)), (0xbbbb, 900));
}

#[test]
fn refused_list_is_bounded() {
    let mut s = session(SessionOptions::default());
    for i in 0..20u16 {
        s.switch_upstream(addr(30, 10000 + 2 * i), None);
    }
    assert!(s.sides[1].refused_sources.len() <= MAX_REFUSED);
}

#[test]
fn snapshot_round_trip_keeps_addresses_and_continuity() {
    let mut s = session(SessionOptions::default());
    send(&mut s, Side::A, Port::Rtp, &mut rtp(1, 1), addr(11, 40000));
    send(&mut s, Side::B, Port::Rtp, &mut rtp(1, 2), addr(20, 6000));
    s.switch_upstream(addr(21, 8000), Some(addr(21, 0).ip()));
    send(&mut s, Side::B, Port::Rtp, &mut rtp(77, 3), addr(21, 8000));
    let snap = s.snapshot();
    assert_eq!(snap.upstream, Some(addr(21, 8000)));
    assert!(snap.continuity_toward_a.rewrite.is_some());
    let json = serde_json::to_string(&snap).unwrap();
    let back: SessionSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    let restored = SessionState::from_snapshot(&back);
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(restored.info(), s.info());
}

/// The latching decision, per mode, for leg A of `session`: SDP
/// 127.0.0.10:5000, SIP from 127.0.0.11.
#[test]
fn may_latch_follows_the_mode() {
    let side = session(SessionOptions::default()).sides[0].clone();
    let (sdp, sdp_other_port, nat, stranger) = (
        addr(10, 5000),
        addr(10, 5002),
        addr(11, 40000),
        addr(99, 5000),
    );
    let may = |mode, port, src| side.may_latch(mode, port, src);
    use Latching::*;
    // strict: exactly the SDP's RTP address; RTCP: its RTCP address.
    assert!(may(Strict, Port::Rtp, sdp));
    assert!(!may(Strict, Port::Rtp, sdp_other_port));
    assert!(!may(Strict, Port::Rtp, nat));
    assert!(!may(Strict, Port::Rtp, stranger));
    assert!(may(Strict, Port::Rtcp, addr(10, 5001)));
    assert!(!may(Strict, Port::Rtcp, sdp));
    // signalled-ip: any port on the SDP's IP or on the SIP source IP.
    for port in [Port::Rtp, Port::Rtcp] {
        assert!(may(SignalledIp, port, sdp));
        assert!(may(SignalledIp, port, sdp_other_port));
        assert!(may(SignalledIp, port, nat));
        assert!(!may(SignalledIp, port, stranger));
    }
    // any: everyone.
    assert!(may(Any, Port::Rtp, stranger));
    assert!(may(Any, Port::Rtcp, stranger));

    // a=rtcp elsewhere: strict follows it; its IP counts as signalled.
    let mut rtcp_elsewhere = side.clone();
    rtcp_elsewhere.remote_rtcp = addr(12, 7000).into();
    assert!(rtcp_elsewhere.may_latch(Strict, Port::Rtcp, addr(12, 7000)));
    assert!(!rtcp_elsewhere.may_latch(Strict, Port::Rtcp, addr(10, 5001)));
    assert!(rtcp_elsewhere.may_latch(SignalledIp, Port::Rtp, addr(12, 1)));

    // Nothing signalled yet: only `any` lets anyone latch.
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let unknown = LiveSide::from(&SideState::new(LocalPorts::new(ip, 20000), None, false));
    assert!(!unknown.may_latch(Strict, Port::Rtp, sdp));
    assert!(!unknown.may_latch(SignalledIp, Port::Rtp, sdp));
    assert!(unknown.may_latch(Any, Port::Rtp, sdp));

    // A refused source (a server the call moved away from) never latches.
    let mut refused = side.clone();
    refused.refused_sources = [sdp].into();
    for mode in [Strict, SignalledIp, Any] {
        assert!(!refused.may_latch(mode, Port::Rtp, sdp), "{mode:?}");
    }
    assert!(refused.may_latch(SignalledIp, Port::Rtp, sdp_other_port));

    // IPv4-mapped IPv6 sources are the same address.
    let mapped = SocketAddr::new("::ffff:127.0.0.10".parse().unwrap(), 5000);
    assert!(may(Strict, Port::Rtp, mapped));
    assert!(may(SignalledIp, Port::Rtp, mapped));
}

#[test]
fn a_stranger_first_cannot_latch_and_the_real_peer_still_can() {
    let stranger = addr(99, 5000);
    for mode in [Latching::Strict, Latching::SignalledIp] {
        let mut s = session(with_latching(mode));
        for seq in 0..5 {
            let mut p = rtp(seq, 0xbad);
            assert_eq!(send(&mut s, Side::A, Port::Rtp, &mut p, stranger), REJECTED);
            assert_eq!(send(&mut s, Side::B, Port::Rtp, &mut p, stranger), REJECTED);
        }
        assert_eq!(
            (s.sides[0].latched_rtp.get(), s.sides[1].latched_rtp.get()),
            (None, None)
        );
        // Media toward the sides still goes to the SDP addresses.
        assert_eq!(s.destination(Side::B, Port::Rtp), Some(addr(10, 5000)));
        assert_eq!(s.destination(Side::A, Port::Rtp), Some(addr(20, 6000)));
        assert_eq!(
            send(&mut s, Side::A, Port::Rtp, &mut rtp(1, 7), addr(10, 5000)),
            FWD
        );
        assert_eq!(s.sides[0].latched_rtp, Some(addr(10, 5000)));
        // Once latched, the stranger is still rejected (not "wrong").
        assert_eq!(
            send(&mut s, Side::A, Port::Rtp, &mut rtp(2, 0xbad), stranger),
            REJECTED
        );
        let st = s.stats(Instant::now());
        assert_eq!(st.side_a.dropped_rejected_source, 6, "{mode:?}");
        assert_eq!(st.side_b.dropped_rejected_source, 5, "{mode:?}");
        assert_eq!(st.side_a.packets, 1);
    }
    // The old behaviour, kept as `any`: the stranger takes the stream.
    let mut s = session(with_latching(Latching::Any));
    assert_eq!(
        send(&mut s, Side::A, Port::Rtp, &mut rtp(0, 0xbad), stranger),
        FWD
    );
    assert_eq!(s.destination(Side::B, Port::Rtp), Some(stranger));
    assert_eq!(
        send(&mut s, Side::A, Port::Rtp, &mut rtp(1, 7), addr(10, 5000)),
        WRONG
    );
}

#[test]
fn strict_latching_refuses_the_nat_address_that_signalled_ip_accepts() {
    let nat = addr(11, 40000);
    let mut strict = session(with_latching(Latching::Strict));
    assert_eq!(
        send(&mut strict, Side::A, Port::Rtp, &mut rtp(1, 7), nat),
        REJECTED
    );
    let mut signalled = session(with_latching(Latching::SignalledIp));
    assert_eq!(
        send(&mut signalled, Side::A, Port::Rtp, &mut rtp(1, 7), nat),
        FWD
    );
    assert_eq!(signalled.destination(Side::B, Port::Rtp), Some(nat));
}

#[test]
fn after_a_move_only_the_new_servers_addresses_may_latch() {
    let mut s = session(SessionOptions::default());
    let (old, new_sdp, new_sip) = (addr(20, 6000), addr(21, 8000), addr(22, 0).ip());
    send(&mut s, Side::B, Port::Rtp, &mut rtp(1, 0xaaaa), old);
    s.switch_upstream(new_sdp, Some(new_sip));
    // Latching is open again, but not to strangers...
    assert_eq!(
        send(
            &mut s,
            Side::B,
            Port::Rtp,
            &mut rtp(2, 0xbad),
            addr(99, 8000)
        ),
        REJECTED
    );
    // ...nor to the old server, on any port of its IP (its SIP IP is no
    // longer the peer's).
    assert_eq!(
        send(
            &mut s,
            Side::B,
            Port::Rtp,
            &mut rtp(2, 0xaaaa),
            addr(20, 6100)
        ),
        REJECTED
    );
    assert_eq!(s.sides[1].latched_rtp, None);
    // The new server, sending from its SIP address (not its SDP's): ok.
    let from = SocketAddr::new(new_sip, 9000);
    assert_eq!(
        send(&mut s, Side::B, Port::Rtp, &mut rtp(3, 0xcccc), from),
        FWD
    );
    assert_eq!(s.sides[1].latched_rtp, Some(from));
    assert_eq!(s.sides[1].signalling_ip, Some(new_sip));
}

#[test]
fn snapshots_from_before_latching_modes_still_decode() {
    let snap = session(SessionOptions::default()).snapshot();
    let mut json: serde_json::Value = serde_json::to_value(&snap).unwrap();
    // What an older node sends: no latching mode, no SIP source IPs.
    json["options"].as_object_mut().unwrap().remove("latching");
    for side in ["side_a", "side_b"] {
        json[side].as_object_mut().unwrap().remove("signalling_ip");
    }
    let old: SessionSnapshot = serde_json::from_value(json).unwrap();
    assert_eq!(old.options.latching, Latching::SignalledIp);
    assert_eq!(old.side_a.signalling_ip, None);
    assert_eq!(old.side_a.remote_rtp, snap.side_a.remote_rtp);
}

/// rtcp-mux on one side only (RFC 5761): RTCP crosses between the
/// multiplexing side's RTP port and the other side's RTCP port, whichever
/// port it came in on; RTP always takes the RTP ports; with both sides
/// alike (either way) a packet leaves by the port it came in on.
#[test]
fn rtcp_crosses_between_a_multiplexing_side_and_one_that_is_not() {
    let mut s = session(SessionOptions::default());
    let a_rtp = addr(10, 5000);
    let (b_rtp, b_rtcp) = (addr(20, 6000), addr(20, 6001));
    // Neither multiplexes: as before, RTCP on an RTP port goes the RTP way.
    assert_eq!(
        s.route(Side::A, Port::Rtp, Port::Rtcp),
        (Port::Rtp, Some(b_rtp))
    );
    assert_eq!(
        s.route(Side::A, Port::Rtcp, Port::Rtcp),
        (Port::Rtcp, Some(b_rtcp))
    );

    // Leg A multiplexes, leg B does not.
    s.set_rtcp_mux(Side::A, true);
    assert_eq!(
        s.route(Side::A, Port::Rtp, Port::Rtp),
        (Port::Rtp, Some(b_rtp))
    );
    assert_eq!(
        s.route(Side::A, Port::Rtp, Port::Rtcp),
        (Port::Rtcp, Some(b_rtcp))
    );
    assert_eq!(
        s.route(Side::B, Port::Rtcp, Port::Rtcp),
        (Port::Rtp, Some(a_rtp))
    );
    assert_eq!(
        s.route(Side::B, Port::Rtp, Port::Rtp),
        (Port::Rtp, Some(a_rtp))
    );
    assert_eq!(s.sides[0].rtcp_destination(), Some(a_rtp));

    // Both multiplex: everything takes the RTP ports.
    s.set_rtcp_mux(Side::B, true);
    assert_eq!(
        s.route(Side::A, Port::Rtp, Port::Rtcp),
        (Port::Rtp, Some(b_rtp))
    );
    assert_eq!(
        s.route(Side::B, Port::Rtp, Port::Rtcp),
        (Port::Rtp, Some(a_rtp))
    );
}

/// A relay session lives as long as its call, so these sizes are a part
/// of what each held call costs (issue 15: 4 KiB a call in all). Were 968
/// and 552 bytes: drop and refusal counts, and the peers a connected
/// socket failed for, are made at the first one; the four local addresses
/// are kept as two IPs and four ports. Then 856 and 344: each side's
/// addresses are kept in their compact form ([`LiveSide`], 128 bytes a
/// side where the snapshot's `SideState` takes 200), a connected socket's
/// peer too, and the worker reads the local addresses from the state
/// instead of keeping a copy.
#[cfg(target_pointer_width = "64")]
#[test]
fn a_session_keeps_what_only_mishaps_need_out_of_line() {
    let state = std::mem::size_of::<SessionState>();
    let worker = std::mem::size_of::<crate::worker::WorkerSession>();
    assert!(state <= 712, "a SessionState is {state} bytes");
    assert!(worker <= 232, "a WorkerSession is {worker} bytes");
}

/// A live side keeps a peer address in 16 bytes (`Option<SocketAddr>`:
/// 32) and its refused sources without spare room.
#[cfg(target_pointer_width = "64")]
#[test]
fn a_live_side_is_compact() {
    assert_eq!(std::mem::size_of::<Peer>(), 16);
    let side = std::mem::size_of::<LiveSide>();
    assert!(side <= 128, "a LiveSide is {side} bytes");
}

/// The snapshot form is what is replicated and re-created elsewhere: a
/// side goes into its live form and back unchanged, IPv6 addresses with
/// their flow label and scope, refused sources in order.
#[test]
fn a_side_goes_live_and_back_unchanged() {
    let v6 = |port, scope| {
        SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            port,
            0x12345,
            scope,
        ))
    };
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut side = SideState::new(LocalPorts::new(ip, 20000), Some(addr(10, 5000)), true);
    side.remote_rtcp = Some(v6(5001, 3));
    side.latched_rtp = Some(v6(40000, 7));
    side.latched_rtcp = Some(addr(11, 40001));
    side.latched_ssrc = Some(0xfeed);
    side.refused_sources = vec![addr(20, 6000), v6(6001, 0)];
    side.signalling_ip = Some(addr(11, 0).ip());
    assert_eq!(SideState::from(&LiveSide::from(&side)), side);
    let bare = SideState::new(LocalPorts::new(ip, 20002), None, false);
    assert_eq!(SideState::from(&LiveSide::from(&bare)), bare);

    // A session's snapshot gives back the sides it was made from.
    let mut s = session(SessionOptions::default());
    s.sides[0] = LiveSide::from(&side);
    let snap = s.snapshot();
    assert_eq!(snap.side_a, side);
    assert_eq!(snap.upstream, Some(addr(20, 6000)));
    assert_eq!(SessionState::from_snapshot(&snap).snapshot(), snap);
}

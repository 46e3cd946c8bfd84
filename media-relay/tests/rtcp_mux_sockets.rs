//! A call whose legs both multiplex RTCP on the RTP port (RFC 5761) holds
//! two relay sockets, not four; a side whose peer turns out not to
//! multiplex gets its RTCP socket late, and RTCP then crosses between the
//! multiplexing side's RTP port and the other side's RTCP port; a snapshot
//! restores only the sockets its sides need.
//! Its own test binary: it counts the process's open file descriptors, so
//! no other test may open sockets meanwhile.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use media_relay::rtp::{self, build_rtp};
use media_relay::{MediaRelay, RelayConfig, SessionId, Side};

mod common;

use common::{addr, peer_on, recv, rr, session};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn ip(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 121, host))
}

fn relay(host: u8, port_min: u16) -> MediaRelay {
    MediaRelay::new(RelayConfig {
        local_ip: ip(host),
        port_min,
        port_max: port_min + 99,
        workers: 1,
        // Only the sockets a session needs: no second socket per latched
        // peer, which `connect_latched` adds for speed.
        connect_latched: false,
        ..RelayConfig::default()
    })
    .expect("relay starts")
}

fn peer(host: u8) -> UdpSocket {
    peer_on(ip(host))
}

#[tokio::test]
async fn a_call_whose_legs_both_multiplex_rtcp_holds_two_sockets() {
    let r = relay(1, 24000);
    let (trunk, server, server_rtcp) = (peer(2), peer(3), peer(3));
    let before = open_fds();
    let id = SessionId(1);
    let info = session(&r, id, &trunk, &server, true);
    assert_eq!(open_fds(), before + 2, "sockets of a multiplexing call");

    // RTP and multiplexed RTCP both ways, all through the RTP ports.
    let (a, b) = (info.side_a.rtp_addr(), info.side_b.rtp_addr());
    trunk
        .send_to(&build_rtp(0, 1, 0, 0xa, &[0xd5; 160]), a)
        .unwrap();
    let (got, from) = recv(&server);
    assert_eq!((rtp::seq(&got), from), (1, b));
    server
        .send_to(&build_rtp(0, 9, 0, 0xb, &[0xd5; 160]), b)
        .unwrap();
    let (got, from) = recv(&trunk);
    assert_eq!((rtp::seq(&got), from), (9, a));
    trunk.send_to(&rr(0xa), a).unwrap();
    assert_eq!(recv(&server), (rr(0xa), b));
    server.send_to(&rr(0xb), b).unwrap();
    assert_eq!(recv(&trunk), (rr(0xb), a));
    assert_eq!(open_fds(), before + 2, "sockets after media flowed");

    // The media server does not multiplex after all: side B gets its RTCP
    // socket, side A keeps multiplexing.
    r.set_remote_rtcp(id, Side::B, addr(&server_rtcp)).unwrap();
    r.set_rtcp_mux(id, Side::B, false).unwrap();
    assert_eq!(open_fds(), before + 3, "side B's late RTCP socket");
    let b_rtcp = info.side_b.rtcp_addr();
    trunk.send_to(&rr(0xa1), a).unwrap();
    assert_eq!(recv(&server_rtcp), (rr(0xa1), b_rtcp));
    server_rtcp.send_to(&rr(0xb1), b_rtcp).unwrap();
    assert_eq!(recv(&trunk), (rr(0xb1), a));
    // RTP still takes the RTP ports.
    server
        .send_to(&build_rtp(0, 10, 160, 0xb, &[0xd5; 160]), b)
        .unwrap();
    let (got, from) = recv(&trunk);
    assert_eq!((rtp::seq(&got), from), (10, a));

    // A standby restores the session with the sockets it needs: side A's
    // RTP socket, side B's RTP and RTCP sockets.
    let mut snap = r.session_snapshot(id).unwrap();
    assert!(snap.side_a.rtcp_mux && !snap.side_b.rtcp_mux);
    let standby = relay(4, 24000);
    snap.side_a.local.ip = ip(4);
    snap.side_b.local.ip = ip(4);
    let before_restore = open_fds();
    standby.restore_session(&snap).unwrap();
    assert_eq!(
        open_fds(),
        before_restore + 3,
        "sockets of the restored call"
    );
    let restored_a = snap.side_a.local.rtp_addr();
    server_rtcp
        .send_to(&rr(0xb2), snap.side_b.local.rtcp_addr())
        .unwrap();
    assert_eq!(recv(&trunk), (rr(0xb2), restored_a));
}

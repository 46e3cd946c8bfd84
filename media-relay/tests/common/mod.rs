//! Helpers shared by the relay's integration tests: peers on
//! 127.0.net.host, receives with a deadline, RTP/RTCP packets.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media_relay::rtp::build_rtp;
use media_relay::{MediaRelay, SessionId, SessionInfo, SessionParams};

pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn ip(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net, host))
}

/// A peer socket on `127.0.net.host`, ephemeral port.
pub fn peer(net: u8, host: u8) -> UdpSocket {
    peer_on(ip(net, host))
}

/// A peer socket on `ip`, ephemeral port, receives bounded by `DEADLINE`.
pub fn peer_on(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

pub fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

pub fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => (buf[..n].to_vec(), from),
        Err(e) => panic!("nothing received on {} within {DEADLINE:?}: {e}", addr(s)),
    }
}

pub fn rtp_pkt(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    build_rtp(0, seq, ts, ssrc, &[0xd5; 160])
}

/// RTCP RR without report blocks.
pub fn rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// A receiver report of `ssrc` with one report block about `about`
/// (32 bytes: long enough to pass for an RTP header with a CSRC).
pub fn rr_with_block(ssrc: u32, about: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&about.to_be_bytes());
    // Fraction and cumulative lost, highest sequence, jitter, LSR, DLSR.
    p.extend_from_slice(&[
        0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    p
}

/// Polls `f` until it holds or the deadline passes.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A session whose sides' SDP name `trunk` and `server`, with RTCP
/// multiplexed on both sides or on its own ports.
pub fn session(
    r: &MediaRelay,
    id: SessionId,
    trunk: &UdpSocket,
    server: &UdpSocket,
    rtcp_mux: bool,
) -> SessionInfo {
    let params = SessionParams {
        remote_a: Some(addr(trunk)),
        remote_b: Some(addr(server)),
        options: None,
        rtcp_mux,
    };
    r.create_session(id, params).unwrap()
}

//! Helpers shared by the integration test binaries: peers on loopback
//! addresses, receives with a deadline, small RTCP packets.
#![allow(dead_code)] // each binary uses its own part

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use media_relay::{MediaRelay, SessionId, SessionInfo, SessionParams};

/// How long any receive waits.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A peer socket on `ip`, ephemeral port, receives bounded by `DEADLINE`.
pub fn peer_on(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

pub fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

/// What `s` receives next (payload, source), within the deadline.
pub fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => (buf[..n].to_vec(), from),
        Err(e) => panic!("nothing received on {} within {DEADLINE:?}: {e}", addr(s)),
    }
}

/// RTCP RR without report blocks.
pub fn rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
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

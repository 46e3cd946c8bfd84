//! Glue between SIP bodies and the media relay: every SDP that crosses
//! Tandem tells the relay where its sender wants to receive, and is
//! rewritten so that the other leg sends to the relay instead.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use media_relay::{MediaRelay, SessionId, SessionInfo, Side};
use sipcore::sdp::{Rewrite, Sdp, StreamChange, VersionChange};

use crate::error::Error;

/// Whether a body is SDP, by Content-Type (RFC 3264).
pub fn is_sdp(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/sdp")
    })
}

/// Learns the sender's RTP address from an SDP that came from leg `from`
/// and returns the SDP to forward to the other leg, pointing at the relay
/// side that faces it. Only the first stream is anchored; further streams
/// (video, a second audio) are refused with port 0 so that no media ever
/// bypasses the relay.
pub fn relay_sdp(
    relay: &MediaRelay,
    session: SessionId,
    info: &SessionInfo,
    from: Side,
    body: &[u8],
) -> Result<Bytes, Error> {
    let bad = |e: sipcore::ParseError| {
        Error::downstream(488, "Not Acceptable Here", format!("bad SDP: {e}"))
    };
    let sdp = Sdp::parse(body).map_err(bad)?;
    let media = sdp.media();
    let first = media
        .first()
        .ok_or_else(|| Error::downstream(488, "Not Acceptable Here", "SDP has no media stream"))?;
    if !first.is_rejected() {
        if let Some(ip) = first.connection().filter(|ip| !ip.is_unspecified()) {
            let addr = SocketAddr::new(ip, first.port());
            relay
                .set_remote(session, from, addr)
                .map_err(|e| Error::internal(500, "Server Internal Error", e.to_string()))?;
        }
    }
    let toward = from.other();
    let local = match toward {
        Side::A => info.side_a,
        Side::B => info.side_b,
    };
    let relay_ip: IpAddr = local.ip;
    let streams: Vec<StreamChange> = media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == 0 {
                if m.is_rejected() {
                    StreamChange::default()
                } else {
                    StreamChange {
                        address: Some(relay_ip),
                        port: Some(local.rtp_port),
                        rtcp_port: Some(if m.rtcp_mux() {
                            local.rtp_port
                        } else {
                            local.rtcp_port
                        }),
                        direction: None,
                    }
                }
            } else {
                StreamChange {
                    address: Some(relay_ip),
                    port: Some(0),
                    rtcp_port: None,
                    direction: None,
                }
            }
        })
        .collect();
    let rewrite = Rewrite {
        connection: Some(relay_ip),
        origin_address: Some(relay_ip),
        version: VersionChange::Bump,
        streams: &streams,
    };
    Ok(Bytes::from(sdp.rewrite(&rewrite)))
}

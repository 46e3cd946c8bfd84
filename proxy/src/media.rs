//! Glue between SIP bodies and the media relay: every SDP that crosses
//! Tandem tells the relay where its sender wants to receive, and is
//! rewritten so that the other leg sends to the relay instead.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use media_relay::{SessionInfo, Side};
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

/// What [`rewrite_sdp`] makes of an SDP from one leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayedSdp {
    /// The SDP for the other leg, pointing at the relay.
    pub body: Bytes,
    /// The RTP address the sender wants to receive on (None when the
    /// stream is rejected or on hold with a null address).
    pub remote: Option<SocketAddr>,
    /// The first stream carries `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
}

/// The SDP that came from leg `from`, rewritten for the other leg so that
/// it points at the relay side facing that leg, and the RTP address the
/// sender wants to receive on (for the relay to learn; None when the
/// stream is rejected or on hold with a null address). Only the first
/// stream is anchored; further streams (video, a second audio) are refused
/// with port 0 so that no media ever bypasses the relay. Pure: the caller
/// tells the relay.
pub fn rewrite_sdp(info: &SessionInfo, from: Side, body: &[u8]) -> Result<RelayedSdp, Error> {
    let bad = |e: sipcore::ParseError| {
        Error::downstream(488, "Not Acceptable Here", format!("bad SDP: {e}"))
    };
    let sdp = Sdp::parse(body).map_err(bad)?;
    let media = sdp.media();
    let first = media
        .first()
        .ok_or_else(|| Error::downstream(488, "Not Acceptable Here", "SDP has no media stream"))?;
    let rtcp_mux = first.rtcp_mux();
    let remote = if first.is_rejected() {
        None
    } else {
        first
            .connection()
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| SocketAddr::new(ip, first.port()))
    };
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
    // Boxed to its length: a call keeps the SDP it sent to leg B (for a
    // resume) as long as it lasts, and `rewrite` leaves room to grow.
    Ok(RelayedSdp {
        body: Bytes::from(sdp.rewrite(&rewrite).into_boxed_slice()),
        remote,
        rtcp_mux,
    })
}

/// The offer for a new media server when a call resumes: `offer` (what
/// leg B was offered first, with the relay's address) restricted to the
/// codec `answer` chose, plus telephone-event when the answer kept it, so
/// that the new server answers with what leg A already uses and leg A
/// needs no re-INVITE. Only the first stream is narrowed; every other
/// line passes unchanged.
pub fn narrow_offer(offer: &[u8], answer: &[u8]) -> Result<Bytes, Error> {
    let internal = |what: &str| Error::internal(500, "Server Internal Error", what.to_owned());
    let answer = Sdp::parse(answer).map_err(|e| internal(&format!("stored answer: {e}")))?;
    let offer_sdp = Sdp::parse(offer).map_err(|e| internal(&format!("stored offer: {e}")))?;
    let (Some(a), Some(o)) = (answer.media().first(), offer_sdp.media().first()) else {
        return Err(internal("no media stream to narrow"));
    };
    let codec = a.codec().ok_or_else(|| internal("answer has no codec"))?;
    // Map the answer's choices onto the offer's payload types by name and
    // clock rate (an answerer may renumber dynamic types).
    let same = |x: &sipcore::sdp::RtpMap<'_>, y: &sipcore::sdp::RtpMap<'_>| {
        x.encoding.eq_ignore_ascii_case(y.encoding) && x.clock_rate == y.clock_rate
    };
    let offer_pt_for = |wanted: &sipcore::sdp::RtpMap<'_>| -> Option<String> {
        o.formats()
            .find(|f| {
                f.parse::<u8>()
                    .ok()
                    .and_then(|pt| o.rtpmap(pt))
                    .is_some_and(|m| same(&m, wanted))
            })
            .map(str::to_owned)
    };
    let mut keep: Vec<String> = Vec::new();
    match codec.rtpmap {
        Some(m) => keep.push(offer_pt_for(&m).unwrap_or_else(|| codec.format.to_owned())),
        None => keep.push(codec.format.to_owned()),
    }
    if let Some(te) = a
        .rtpmaps()
        .find(|m| m.encoding.eq_ignore_ascii_case("telephone-event"))
    {
        if let Some(pt) = offer_pt_for(&te) {
            keep.push(pt);
        }
    }

    // Rewrite the first m= section line by line.
    let text = std::str::from_utf8(offer).map_err(|_| internal("offer is not UTF-8"))?;
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len());
    let mut section = 0usize;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\r', '\n']);
        if content.starts_with("m=") {
            section += 1;
            if section == 1 {
                let mut parts = content.splitn(4, ' ');
                let (kind, port, proto) = (parts.next(), parts.next(), parts.next());
                if let (Some(kind), Some(port), Some(proto)) = (kind, port, proto) {
                    out.push_str(&format!("{kind} {port} {proto} {}{eol}", keep.join(" ")));
                    continue;
                }
            }
        } else if section == 1 {
            let pt_attr = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                .iter()
                .find_map(|p| content.strip_prefix(p))
                .map(|rest| rest.split([' ', '\t']).next().unwrap_or(""));
            if let Some(pt) = pt_attr {
                if pt != "*" && !keep.iter().any(|k| k == pt) {
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests;

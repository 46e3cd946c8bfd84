//! Minimal RTP/RTCP header access (RFC 3550), RTP/RTCP demultiplexing on one
//! port (RFC 5761 §4) and the SSRC mapping applied to RTCP after an upstream
//! switch. Only fixed header fields are read or written; payloads are opaque.

use crate::continuity::Rewrite;

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;
/// Length of the fixed RTCP header plus sender SSRC.
pub const RTCP_MIN_LEN: usize = 8;

const RTCP_SR: u8 = 200;
const RTCP_RR: u8 = 201;
const RTCP_SDES: u8 = 202;
const RTCP_BYE: u8 = 203;
const RTCP_RTPFB: u8 = 205;
const RTCP_PSFB: u8 = 206;

/// What a datagram looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A well-formed RTP packet.
    Rtp,
    /// A well-formed RTCP (compound) packet.
    Rtcp,
    /// Neither (too short, wrong version, truncated CSRC list or extension).
    Malformed,
}

/// Classifies a datagram. A second byte in 192..=223 means RTCP (RFC 5761
/// §4: those are RTCP packet types; RTP sessions that multiplex RTCP on the
/// RTP port must not use payload types 64..=95, which would look the same
/// with the marker bit set).
pub fn classify(p: &[u8]) -> Kind {
    if p.len() < 2 || p[0] >> 6 != 2 {
        return Kind::Malformed;
    }
    if (192..=223).contains(&p[1]) {
        return if p.len() >= RTCP_MIN_LEN {
            Kind::Rtcp
        } else {
            Kind::Malformed
        };
    }
    if rtp_header_len(p).is_some() {
        Kind::Rtp
    } else {
        Kind::Malformed
    }
}

/// Header length of an RTP packet (fixed part, CSRCs and extension), if the
/// packet is long enough to hold it.
pub fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < RTP_HEADER_LEN {
        return None;
    }
    let mut len = RTP_HEADER_LEN + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let words = usize::from(u16::from_be_bytes([*p.get(len + 2)?, *p.get(len + 3)?]));
        len += 4 + 4 * words;
    }
    (len <= p.len()).then_some(len)
}

fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

fn put16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put32(p: &mut [u8], at: usize, v: u32) {
    p[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// RTP sequence number. The caller has checked [`Kind::Rtp`].
pub fn seq(p: &[u8]) -> u16 {
    be16(p, 2)
}
/// RTP timestamp.
pub fn timestamp(p: &[u8]) -> u32 {
    be32(p, 4)
}
/// RTP SSRC.
pub fn ssrc(p: &[u8]) -> u32 {
    be32(p, 8)
}
/// RTP marker bit.
pub fn marker(p: &[u8]) -> bool {
    p[1] & 0x80 != 0
}
/// RTP payload type.
pub fn payload_type(p: &[u8]) -> u8 {
    p[1] & 0x7f
}
/// Sets the RTP sequence number.
pub fn set_seq(p: &mut [u8], v: u16) {
    put16(p, 2, v)
}
/// Sets the RTP timestamp.
pub fn set_timestamp(p: &mut [u8], v: u32) {
    put32(p, 4, v)
}
/// Sets the RTP SSRC.
pub fn set_ssrc(p: &mut [u8], v: u32) {
    put32(p, 8, v)
}
/// Sets the RTP marker bit.
pub fn set_marker(p: &mut [u8]) {
    p[1] |= 0x80
}

/// Builds an RTP packet (used by tests and the benchmark).
pub fn build_rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
    p.extend_from_slice(&[0x80, pt & 0x7f]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The sub-packet of a compound RTCP packet that starts at `at`: `(packet
/// type, count field, length in bytes)`, or `None` at the end or at the first
/// malformed one.
fn rtcp_part(p: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    if at + 4 > p.len() || p[at] >> 6 != 2 {
        return None;
    }
    let len = 4 * (usize::from(be16(p, at + 2)) + 1);
    (at + len <= p.len()).then_some((p[at + 1], usize::from(p[at] & 0x1f), len))
}

/// RTCP coming from the new upstream: its own SSRC (sender of SR/RR, first
/// SDES chunk, BYE list, feedback sender) becomes the SSRC leg A has been
/// seeing, and the SR's RTP timestamp is shifted like the RTP stream.
pub fn rtcp_map_from_upstream(p: &mut [u8], rw: &Rewrite) {
    let mut at = 0;
    while let Some((pt, count, len)) = rtcp_part(p, at) {
        let map = |p: &mut [u8], off: usize| {
            if off + 4 <= at + len && be32(p, off) == rw.in_ssrc {
                put32(p, off, rw.out_ssrc);
                true
            } else {
                false
            }
        };
        match pt {
            RTCP_SR => {
                let mapped = map(p, at + 4);
                if mapped && len >= 20 {
                    let ts = be32(p, at + 16).wrapping_add(rw.ts_delta);
                    put32(p, at + 16, ts);
                }
            }
            RTCP_RR | RTCP_SDES | RTCP_RTPFB | RTCP_PSFB => {
                map(p, at + 4);
            }
            RTCP_BYE => {
                for k in 0..count {
                    map(p, at + 4 + 4 * k);
                }
            }
            _ => {}
        }
        at += len;
    }
}

/// RTCP going toward the new upstream: report blocks and feedback about the
/// stream leg A sees (rewritten SSRC) are mapped back to the upstream's own
/// SSRC and sequence numbers, so that the upstream recognises them.
pub fn rtcp_map_toward_upstream(p: &mut [u8], rw: &Rewrite) {
    let mut at = 0;
    while let Some((pt, count, len)) = rtcp_part(p, at) {
        let end = at + len;
        at = end;
        let start = end - len;
        let blocks = match pt {
            RTCP_SR => start + 28,
            RTCP_RR => start + 8,
            RTCP_RTPFB | RTCP_PSFB => {
                if start + 12 <= end && be32(p, start + 8) == rw.out_ssrc {
                    put32(p, start + 8, rw.in_ssrc);
                }
                continue;
            }
            _ => continue,
        };
        for k in 0..count {
            let b = blocks + 24 * k;
            if b + 24 > end {
                break;
            }
            if be32(p, b) == rw.out_ssrc {
                put32(p, b, rw.in_ssrc);
                // Extended highest sequence number: map the low 16 bits.
                let low = be16(p, b + 10).wrapping_sub(rw.seq_delta);
                put16(p, b + 10, low);
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! Stream continuity across an upstream switch.
//!
//! One [`ContinuityState`] exists per direction (the stream sent toward side
//! A, the stream sent toward side B). It always remembers the SSRC, sequence
//! number and timestamp of the newest packet sent in that direction. When
//! [`ContinuityState::arm`] is called (by an upstream switch), the next
//! packet from the new upstream gets a [`Rewrite`]: the SSRC of the stream
//! the receiver already knows, the sequence number following the last one
//! sent, and the last timestamp plus the wall-clock time elapsed since then
//! in clock units. Later packets of that upstream are shifted by the same
//! deltas, so the receiver sees one continuous stream; the first rewritten
//! packet carries the marker bit so that jitter buffers resynchronise. If
//! the new upstream itself changes SSRC later, a fresh mapping is computed
//! the same way. Everything here is plain data so that it can be replicated
//! to a standby.

use serde::{Deserialize, Serialize};

use crate::rtp;

/// The newest packet sent in a direction (after any rewrite).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentPoint {
    /// SSRC as sent.
    pub ssrc: u32,
    /// Sequence number as sent.
    pub seq: u16,
    /// RTP timestamp as sent.
    pub timestamp: u32,
    /// Wall-clock time it was sent, microseconds since the UNIX epoch.
    pub at_unix_us: u64,
}

/// The mapping applied to packets of one upstream SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrite {
    /// SSRC of the upstream's packets this mapping applies to.
    pub in_ssrc: u32,
    /// SSRC written instead (the one the receiver already knows).
    pub out_ssrc: u32,
    /// Added (wrapping) to the sequence number.
    pub seq_delta: u16,
    /// Added (wrapping) to the timestamp.
    pub ts_delta: u32,
}

/// Rewrite state of one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuityState {
    /// Newest packet sent in this direction.
    pub last_sent: Option<SentPoint>,
    /// Mapping in force, if the stream has been switched.
    pub rewrite: Option<Rewrite>,
    /// An upstream switch happened; the next RTP packet starts a new mapping.
    pub remap_pending: bool,
}

impl ContinuityState {
    /// Called on an upstream switch: the next packet sent in this direction
    /// continues the current stream.
    pub fn arm(&mut self) {
        self.remap_pending = true;
    }

    /// Applies the mapping to an outgoing RTP packet (already checked to be
    /// well-formed) and records it as sent. Returns whether it was rewritten.
    pub fn on_rtp(&mut self, p: &mut [u8], now_unix_us: u64, clock_rate: u32) -> bool {
        let in_ssrc = rtp::ssrc(p);
        let new_source = match self.rewrite {
            Some(rw) => rw.in_ssrc != in_ssrc,
            None => false,
        };
        if self.remap_pending || new_source {
            self.remap_pending = false;
            self.rewrite = self.last_sent.map(|last| {
                let elapsed_us = now_unix_us.saturating_sub(last.at_unix_us);
                let elapsed = (u128::from(elapsed_us) * u128::from(clock_rate) / 1_000_000) as u32;
                Rewrite {
                    in_ssrc,
                    out_ssrc: last.ssrc,
                    seq_delta: last.seq.wrapping_add(1).wrapping_sub(rtp::seq(p)),
                    ts_delta: last
                        .timestamp
                        .wrapping_add(elapsed.max(1))
                        .wrapping_sub(rtp::timestamp(p)),
                }
            });
            // The marker tells the receiver's jitter buffer that the stream
            // jumped. Not for payload types 64..=95: with the marker set
            // their second byte is an RTCP packet type (RFC 5761 §4), and
            // the packet would reach the receiver as RTCP.
            if self.rewrite.is_some() && !(64..=95).contains(&rtp::payload_type(p)) {
                rtp::set_marker(p);
            }
        }
        let rewritten = match self.rewrite {
            Some(rw) if rw.in_ssrc == in_ssrc => {
                rtp::set_ssrc(p, rw.out_ssrc);
                rtp::set_seq(p, rtp::seq(p).wrapping_add(rw.seq_delta));
                rtp::set_timestamp(p, rtp::timestamp(p).wrapping_add(rw.ts_delta));
                true
            }
            _ => false,
        };
        let (ssrc, seq) = (rtp::ssrc(p), rtp::seq(p));
        let newer = match self.last_sent {
            // A late (reordered) or duplicate packet must not move the
            // continuation point backwards.
            Some(last) if last.ssrc == ssrc => (seq.wrapping_sub(last.seq) as i16) > 0,
            _ => true,
        };
        if newer {
            self.last_sent = Some(SentPoint {
                ssrc,
                seq,
                timestamp: rtp::timestamp(p),
                at_unix_us: now_unix_us,
            });
        }
        rewritten
    }
}

#[cfg(test)]
mod tests;

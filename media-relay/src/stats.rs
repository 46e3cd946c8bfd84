//! Per-stream receive statistics: packet/byte counts, loss (RFC 3550 A.1 and
//! A.3: 16-bit sequence wrap, reorder and duplicate tolerance, resync after a
//! large jump), interarrival jitter (A.8), longest gap between packets, time
//! of the last packet, SSRC changes and drops by reason.
//!
//! A [`StreamRecorder`] is updated by the worker that owns the session (one
//! lock per received batch); [`StreamRecorder::snapshot`] turns it into a
//! plain [`StreamStats`] for the proxy.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

const SEQ_MOD: u32 = 1 << 16;
/// RFC 3550 A.1: a forward jump of less than this is in-order (with loss).
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a backward jump of at most this is a reordered packet.
const MAX_MISORDER: u16 = 100;

/// Why a received datagram was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// It came from another address than the latched one (one that may
    /// latch, by the latching mode).
    WrongSource,
    /// Too short, wrong version, truncated, or not RTCP on an RTCP port.
    Malformed,
    /// The other side has no address yet (no SDP, nothing latched).
    NoDestination,
    /// The kernel refused to send it.
    SendError,
    /// Its source may not latch the side (the latching mode, or a media
    /// server the call moved away from): a stranger's packet.
    RejectedSource,
}

impl DropReason {
    /// Number of reasons (the size of per-reason counter arrays).
    pub const COUNT: usize = 5;
}

/// Statistics of the stream received on one side of a session (and
/// forwarded to the other side). Plain data, cheap to copy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStats {
    /// RTP packets accepted (forwarded or attempted).
    pub packets: u64,
    /// RTP bytes accepted (UDP payload).
    pub bytes: u64,
    /// RTCP packets accepted (on the RTCP port, or multiplexed).
    pub rtcp_packets: u64,
    /// RTCP bytes accepted.
    pub rtcp_bytes: u64,
    /// Current SSRC.
    pub ssrc: Option<u32>,
    /// Times the SSRC changed.
    pub ssrc_changes: u64,
    /// Packets expected from the sequence numbers (RFC 3550 A.3), summed
    /// over SSRCs and resyncs.
    pub expected: u64,
    /// Cumulative packets lost (expected - received; negative with
    /// duplicates).
    pub lost: i64,
    /// Interarrival jitter in timestamp units (RFC 3550 A.8).
    pub jitter: f64,
    /// Interarrival jitter in milliseconds.
    pub jitter_ms: f64,
    /// Longest interval between two consecutive RTP packets.
    pub max_gap: Duration,
    /// Time since the last RTP packet (None: none yet). For inactivity
    /// detection.
    pub since_last_packet: Option<Duration>,
    /// Dropped: came from an unexpected source after latching.
    pub dropped_wrong_source: u64,
    /// Dropped: came from a source that may not latch (see `Latching`).
    #[serde(default)]
    pub dropped_rejected_source: u64,
    /// Dropped: malformed or too short.
    pub dropped_malformed: u64,
    /// Dropped: the other side had no address yet.
    pub dropped_no_destination: u64,
    /// Dropped: sending failed.
    pub send_errors: u64,
    /// ICMP port-unreachable errors for packets sent to this stream's
    /// peer: it is gone or not listening any more.
    pub peer_refused: u64,
    /// Of `packets`, those the kernel fast path forwarded (the user-space
    /// relay never saw them: loss, jitter and gaps are of the others).
    #[serde(default)]
    pub kernel_packets: u64,
    /// Of `bytes`, those of `kernel_packets`.
    #[serde(default)]
    pub kernel_bytes: u64,
}

/// Running state behind [`StreamStats`].
#[derive(Clone, Debug)]
pub struct StreamRecorder {
    clock_rate: u32,
    packets: u64,
    bytes: u64,
    rtcp_packets: u64,
    rtcp_bytes: u64,
    ssrc: Option<u32>,
    ssrc_changes: u64,
    // RFC 3550 A.1 state of the current SSRC / sequence epoch.
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    bad_seq: u32,
    received: u64,
    // Folded from earlier SSRCs and resyncs.
    prior_expected: u64,
    prior_received: u64,
    // A.8 jitter.
    jitter: f64,
    last_transit: Option<u32>,
    epoch: Option<Instant>,
    last_arrival: Option<Instant>,
    max_gap: Duration,
    /// Drops and refusals, made at the first one: most streams have none,
    /// and inline they took 64 bytes of each (two per relay session).
    mishaps: Option<Box<Mishaps>>,
}

/// The counts of what went wrong with a stream.
#[derive(Clone, Debug, Default)]
struct Mishaps {
    refused: u64,
    last_refused: Option<Instant>,
    drops: [u64; DropReason::COUNT],
}

impl StreamRecorder {
    /// A recorder for a stream with the given RTP clock rate.
    pub fn new(clock_rate: u32) -> StreamRecorder {
        StreamRecorder {
            clock_rate: clock_rate.max(1),
            packets: 0,
            bytes: 0,
            rtcp_packets: 0,
            rtcp_bytes: 0,
            ssrc: None,
            ssrc_changes: 0,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            bad_seq: SEQ_MOD + 1,
            received: 0,
            prior_expected: 0,
            prior_received: 0,
            jitter: 0.0,
            last_transit: None,
            epoch: None,
            last_arrival: None,
            max_gap: Duration::ZERO,
            mishaps: None,
        }
    }

    /// Records an accepted RTP packet of `len` bytes arriving at `arrival`.
    pub fn on_rtp(&mut self, seq: u16, timestamp: u32, ssrc: u32, len: usize, arrival: Instant) {
        self.packets += 1;
        self.bytes += len as u64;
        if let Some(last) = self.last_arrival {
            self.max_gap = self.max_gap.max(arrival.saturating_duration_since(last));
        }
        self.last_arrival = Some(arrival);
        let epoch = *self.epoch.get_or_insert(arrival);

        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.ssrc_changes += 1;
                self.fold_epoch();
            }
            self.ssrc = Some(ssrc);
            self.init_seq(seq);
            self.last_transit = None;
        }
        if !self.update_seq(seq) {
            return;
        }

        // A.8: transit = arrival (in timestamp units) - RTP timestamp; both
        // wrap modulo 2^32, so the difference of two transits is taken as a
        // signed 32-bit value.
        let arrival_units = self.units(arrival.saturating_duration_since(epoch));
        let transit = arrival_units.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Records an accepted RTCP packet.
    pub fn on_rtcp(&mut self, len: usize) {
        self.rtcp_packets += 1;
        self.rtcp_bytes += len as u64;
    }

    /// Counts `n` dropped packets.
    pub fn on_drop(&mut self, reason: DropReason, n: u64) {
        self.mishaps.get_or_insert_with(Default::default).drops[reason as usize] += n;
    }

    /// The peer refused `n` packets (ICMP port unreachable).
    pub fn on_refused(&mut self, n: u64, now: Instant) {
        let m = self.mishaps.get_or_insert_with(Default::default);
        m.refused += n;
        m.last_refused = Some(now);
    }

    /// The peer changed: its predecessor's refusals say nothing of it
    /// (the count stays, for the session's totals).
    pub fn forget_refused(&mut self) {
        if let Some(m) = self.mishaps.as_mut() {
            m.last_refused = None;
        }
    }

    /// When the peer last refused a packet.
    pub fn last_refused(&self) -> Option<Instant> {
        self.mishaps.as_ref().and_then(|m| m.last_refused)
    }

    /// Time of the last RTP packet.
    pub fn last_packet(&self) -> Option<Instant> {
        self.last_arrival
    }

    fn units(&self, d: Duration) -> u32 {
        let rate = u64::from(self.clock_rate);
        let whole = d.as_secs().wrapping_mul(rate);
        let frac = u64::from(d.subsec_nanos()) * rate / 1_000_000_000;
        whole.wrapping_add(frac) as u32
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = seq;
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
    }

    fn epoch_expected(&self) -> u64 {
        if self.received == 0 {
            return 0;
        }
        let extended_max = u64::from(self.cycles) + u64::from(self.max_seq);
        extended_max + 1 - u64::from(self.base_seq)
    }

    fn fold_epoch(&mut self) {
        self.prior_expected += self.epoch_expected();
        self.prior_received += self.received;
    }

    /// RFC 3550 A.1 `update_seq` without probation. Returns false for a
    /// packet that does not count (a large jump not yet confirmed).
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump.
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets: the source restarted.
                self.fold_epoch();
                self.init_seq(seq);
                self.last_transit = None;
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return false;
            }
        } else {
            // Duplicate or reordered packet.
        }
        self.received += 1;
        true
    }

    /// Plain-data view; `now` gives `since_last_packet`.
    pub fn snapshot(&self, now: Instant) -> StreamStats {
        let expected = self.prior_expected + self.epoch_expected();
        let none = Mishaps::default();
        let mishaps = self.mishaps.as_deref().unwrap_or(&none);
        let received = self.prior_received + self.received;
        StreamStats {
            packets: self.packets,
            bytes: self.bytes,
            rtcp_packets: self.rtcp_packets,
            rtcp_bytes: self.rtcp_bytes,
            ssrc: self.ssrc,
            ssrc_changes: self.ssrc_changes,
            expected,
            lost: expected as i64 - received as i64,
            jitter: self.jitter,
            jitter_ms: self.jitter * 1000.0 / f64::from(self.clock_rate),
            max_gap: self.max_gap,
            since_last_packet: self.last_arrival.map(|t| now.saturating_duration_since(t)),
            dropped_wrong_source: mishaps.drops[DropReason::WrongSource as usize],
            dropped_rejected_source: mishaps.drops[DropReason::RejectedSource as usize],
            dropped_malformed: mishaps.drops[DropReason::Malformed as usize],
            dropped_no_destination: mishaps.drops[DropReason::NoDestination as usize],
            send_errors: mishaps.drops[DropReason::SendError as usize],
            peer_refused: mishaps.refused,
            kernel_packets: 0,
            kernel_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests;

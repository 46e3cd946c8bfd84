//! RTP as tandem-load speaks it: G.711 A-law (PCMA, payload type 8),
//! 160 samples (20 ms) per packet, and the receiver statistics of RFC 3550
//! appendix A.
//!
//! * [`RtpHeader`] parses and writes the fixed 12-byte header (§5.1).
//! * [`RtpGenerator`] produces one stream: random SSRC, random initial
//!   sequence number and timestamp (§5.1), sequence +1 and timestamp +160
//!   per packet, marker bit on the first packet (RFC 3551 §4.1: start of a
//!   talkspurt).
//! * [`RtpReceiver`] tracks one received stream: extended sequence numbers
//!   and loss (A.1, A.3), interarrival jitter (A.8), duplicates and
//!   reordering, SSRC changes, and the longest time without a packet — the
//!   "audio gap" the survival benchmarks measure.
//!
//! Arrival times are [`Duration`]s since a reference instant chosen by the
//! caller, so the statistics are plain arithmetic and tests can feed
//! hand-made arrival times.

use std::time::Duration;

use serde::Serialize;

/// Payload type of PCMA (RFC 3551 table 4).
pub const PT_PCMA: u8 = 8;
/// Sampling clock of PCMA.
pub const CLOCK_RATE: u32 = 8000;
/// Samples (and payload bytes: one byte per sample) per 20 ms packet.
pub const SAMPLES_PER_PACKET: u32 = 160;
/// Packetisation interval.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Size of the fixed RTP header.
pub const HEADER_LEN: usize = 12;
/// Size of a whole PCMA packet.
pub const PACKET_LEN: usize = HEADER_LEN + SAMPLES_PER_PACKET as usize;
/// A-law silence.
const PCMA_SILENCE: u8 = 0xD5;

/// RFC 3550 A.1: a sequence number may jump ahead by less than this and
/// still be taken as in order (packets lost in between).
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a packet at most this far behind the highest sequence
/// number is a late (reordered) or duplicate packet.
const MAX_MISORDER: u16 = 100;
/// Bits of the duplicate window; must cover `MAX_MISORDER`.
const WINDOW: u64 = 128;

/// The fixed part of an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Parses the header of an RTP packet. `None` for anything that is not
    /// RTP version 2 with a complete header, and for RTCP multiplexed on
    /// the same port (RFC 5761 §4: packet types 200–204 in the second
    /// byte).
    pub fn parse(buf: &[u8]) -> Option<RtpHeader> {
        if buf.len() < HEADER_LEN || buf[0] >> 6 != 2 {
            return None;
        }
        if (200..=204).contains(&buf[1]) {
            return None;
        }
        let csrc = usize::from(buf[0] & 0x0f);
        if buf.len() < HEADER_LEN + 4 * csrc {
            return None;
        }
        Some(RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        })
    }

    /// Writes the header (no padding, extension or CSRCs) into `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = 0x80;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// One outgoing PCMA stream.
#[derive(Debug, Clone)]
pub struct RtpGenerator {
    next: RtpHeader,
    packet: [u8; PACKET_LEN],
    sent: u64,
}

impl RtpGenerator {
    /// A stream with the given SSRC, first sequence number and first
    /// timestamp.
    pub fn new(ssrc: u32, seq: u16, timestamp: u32) -> RtpGenerator {
        RtpGenerator {
            next: RtpHeader {
                marker: true,
                payload_type: PT_PCMA,
                seq,
                timestamp,
                ssrc,
            },
            packet: [PCMA_SILENCE; PACKET_LEN],
            sent: 0,
        }
    }

    /// A stream with random SSRC, sequence number and timestamp (RFC 3550
    /// §5.1 wants the initial values random).
    pub fn random() -> RtpGenerator {
        RtpGenerator::new(rand::random(), rand::random(), rand::random())
    }

    pub fn ssrc(&self) -> u32 {
        self.next.ssrc
    }

    /// Packets produced so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The next packet: header of this packet written, then sequence +1,
    /// timestamp +160, marker cleared for the following ones.
    pub fn next_packet(&mut self) -> &[u8] {
        self.next.write(&mut self.packet[..HEADER_LEN]);
        self.next.marker = false;
        self.next.seq = self.next.seq.wrapping_add(1);
        self.next.timestamp = self.next.timestamp.wrapping_add(SAMPLES_PER_PACKET);
        self.sent += 1;
        &self.packet
    }
}

/// Per-call receive statistics, as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RtpStats {
    /// RTP packets received (including duplicates and packets of a
    /// sequence the receiver was not yet synchronised to).
    pub packets: u64,
    /// Packets expected from the extended sequence numbers (RFC 3550 A.3),
    /// summed over every sequence (SSRC or resynchronisation).
    pub expected: u64,
    /// Expected minus distinct packets received, never below 0.
    pub lost: u64,
    /// `lost / expected` in percent (0 when nothing was expected).
    pub loss_pct: f64,
    /// Packets whose sequence number had been received already.
    pub duplicates: u64,
    /// Packets that arrived after a packet with a higher sequence number.
    pub reordered: u64,
    /// Packets dropped by the RFC 3550 A.1 sequence check (a jump too large
    /// to be loss, not confirmed by the next packet).
    pub discarded: u64,
    /// Times the SSRC changed (a new media source took over).
    pub ssrc_changes: u64,
    /// Sequence number restarts within one SSRC (A.1 resynchronisation).
    pub seq_restarts: u64,
    /// RFC 3550 A.8 interarrival jitter at the end, in milliseconds.
    pub jitter_ms: f64,
    /// The longest time without a received packet while the media was up:
    /// between two packets, from the media start to the first packet, or
    /// from the last packet to the end. In milliseconds.
    pub max_gap_ms: f64,
    /// When that longest gap began, seconds since the reference instant.
    pub max_gap_at_s: f64,
    /// From the media start to the first packet, in milliseconds (`None`
    /// if no packet arrived).
    pub first_packet_ms: Option<f64>,
}

/// Sequence state of the current source (RFC 3550 A.1 `source`).
#[derive(Debug, Clone, Copy)]
struct Sequence {
    ssrc: u32,
    /// Highest sequence number seen, and its extended form.
    max_seq: u16,
    max_ext: u64,
    base_ext: u64,
    /// Packets counted into this sequence (duplicates included).
    received: u64,
    duplicates: u64,
    /// Bit `i` set: extended sequence number `max_ext - i` was received.
    window: u128,
    /// The sequence number after a suspected restart (A.1 `bad_seq`).
    bad_seq: Option<u16>,
}

impl Sequence {
    /// A.1 `init_seq` at `seq`. The extended numbers start at 2^16 so that
    /// packets from just before the first one (reordered) stay positive.
    fn new(ssrc: u32, seq: u16) -> Sequence {
        let ext = (1 << 16) + u64::from(seq);
        Sequence {
            ssrc,
            max_seq: seq,
            max_ext: ext,
            base_ext: ext,
            received: 1,
            duplicates: 0,
            window: 1,
            bad_seq: None,
        }
    }

    fn expected(&self) -> u64 {
        self.max_ext - self.base_ext + 1
    }

    fn distinct(&self) -> u64 {
        self.received - self.duplicates
    }
}

/// What the sequence check made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqVerdict {
    InOrder,
    Late,
    Duplicate,
    /// First packet after a large jump: not counted (yet).
    Discarded,
    /// Second packet after a large jump: the sequence restarts.
    Restart,
}

/// Receive statistics of one stream (which may change SSRC).
#[derive(Debug, Clone)]
pub struct RtpReceiver {
    start: Duration,
    seq: Option<Sequence>,
    /// Expected and distinct packets of sequences that ended (SSRC change,
    /// restart).
    done_expected: u64,
    done_distinct: u64,
    packets: u64,
    duplicates: u64,
    reordered: u64,
    discarded: u64,
    ssrc_changes: u64,
    seq_restarts: u64,
    /// RFC 3550 A.8 jitter, in timestamp units, and the previous packet's
    /// arrival (in timestamp units) and RTP timestamp.
    jitter: f64,
    last_transit: Option<(Duration, u32)>,
    first_arrival: Option<Duration>,
    last_arrival: Option<Duration>,
    max_gap: Duration,
    max_gap_at: Duration,
}

impl RtpReceiver {
    /// A receiver whose media started at `start` (since the reference
    /// instant): the gap before the first packet counts from there.
    pub fn new(start: Duration) -> RtpReceiver {
        RtpReceiver {
            start,
            seq: None,
            done_expected: 0,
            done_distinct: 0,
            packets: 0,
            duplicates: 0,
            reordered: 0,
            discarded: 0,
            ssrc_changes: 0,
            seq_restarts: 0,
            jitter: 0.0,
            last_transit: None,
            first_arrival: None,
            last_arrival: None,
            max_gap: Duration::ZERO,
            max_gap_at: start,
        }
    }

    /// Parses `packet` and accounts for it; `false` if it is not RTP.
    pub fn on_datagram(&mut self, packet: &[u8], arrival: Duration) -> bool {
        match RtpHeader::parse(packet) {
            Some(h) => {
                self.on_packet(&h, arrival);
                true
            }
            None => false,
        }
    }

    /// Accounts for one RTP packet that arrived at `arrival`.
    pub fn on_packet(&mut self, h: &RtpHeader, arrival: Duration) {
        self.packets += 1;
        self.note_arrival(arrival);
        let verdict = match &mut self.seq {
            None => {
                self.seq = Some(Sequence::new(h.ssrc, h.seq));
                SeqVerdict::InOrder
            }
            Some(s) if s.ssrc != h.ssrc => {
                self.ssrc_changes += 1;
                self.done_expected += s.expected();
                self.done_distinct += s.distinct();
                self.seq = Some(Sequence::new(h.ssrc, h.seq));
                self.last_transit = None;
                SeqVerdict::InOrder
            }
            Some(s) => update_seq(s, h.seq),
        };
        match verdict {
            SeqVerdict::InOrder => {}
            SeqVerdict::Late => self.reordered += 1,
            SeqVerdict::Duplicate => self.duplicates += 1,
            SeqVerdict::Discarded => {
                self.discarded += 1;
                return;
            }
            SeqVerdict::Restart => {
                // The sequence (same SSRC) restarts at the packet before
                // this one, which was discarded: it now counts.
                let s = self.seq.as_mut().expect("restart of a known sequence");
                self.seq_restarts += 1;
                self.discarded -= 1;
                self.done_expected += s.expected();
                self.done_distinct += s.distinct();
                let mut fresh = Sequence::new(s.ssrc, h.seq.wrapping_sub(1));
                update_seq(&mut fresh, h.seq);
                *s = fresh;
                self.last_transit = None;
            }
        }
        self.update_jitter(h.timestamp, arrival);
    }

    fn note_arrival(&mut self, arrival: Duration) {
        let previous = self.last_arrival.unwrap_or(self.start);
        if self.first_arrival.is_none() {
            self.first_arrival = Some(arrival);
        }
        let gap = arrival.saturating_sub(previous);
        if gap > self.max_gap {
            self.max_gap = gap;
            self.max_gap_at = previous;
        }
        self.last_arrival = Some(arrival.max(previous));
    }

    /// RFC 3550 A.8: D(i,j) = (Rj - Ri) - (Sj - Si) in timestamp units,
    /// J += (|D| - J) / 16.
    fn update_jitter(&mut self, timestamp: u32, arrival: Duration) {
        if let Some((prev_arrival, prev_ts)) = self.last_transit {
            // Arrival difference in whole nanoseconds first, so that a
            // perfectly periodic stream gives exactly 0.
            let arrived_ns = arrival.as_nanos() as i128 - prev_arrival.as_nanos() as i128;
            let arrived = arrived_ns as f64 * f64::from(CLOCK_RATE) / 1e9;
            let sent = f64::from(timestamp.wrapping_sub(prev_ts) as i32);
            let d = arrived - sent;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last_transit = Some((arrival, timestamp));
    }

    /// Packets received so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The statistics as of `end` (the end of the media, since the
    /// reference instant): the time from the last packet to `end` counts
    /// as a gap too.
    pub fn stats(&self, end: Duration) -> RtpStats {
        let (mut expected, mut distinct) = (self.done_expected, self.done_distinct);
        if let Some(s) = &self.seq {
            expected += s.expected();
            distinct += s.distinct();
        }
        let lost = expected.saturating_sub(distinct);
        let last = self.last_arrival.unwrap_or(self.start);
        let trailing = end.saturating_sub(last);
        let (max_gap, max_gap_at) = if trailing > self.max_gap {
            (trailing, last)
        } else {
            (self.max_gap, self.max_gap_at)
        };
        RtpStats {
            packets: self.packets,
            expected,
            lost,
            loss_pct: if expected == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / expected as f64
            },
            duplicates: self.duplicates,
            reordered: self.reordered,
            discarded: self.discarded,
            ssrc_changes: self.ssrc_changes,
            seq_restarts: self.seq_restarts,
            jitter_ms: self.jitter * 1000.0 / f64::from(CLOCK_RATE),
            max_gap_ms: max_gap.as_secs_f64() * 1000.0,
            max_gap_at_s: max_gap_at.as_secs_f64(),
            first_packet_ms: self
                .first_arrival
                .map(|a| a.saturating_sub(self.start).as_secs_f64() * 1000.0),
        }
    }
}

/// RFC 3550 A.1 `update_seq` (without the probation of a new source: the
/// first packet of a call is trusted), plus duplicate detection over the
/// last [`WINDOW`] sequence numbers.
fn update_seq(s: &mut Sequence, seq: u16) -> SeqVerdict {
    let udelta = seq.wrapping_sub(s.max_seq);
    if udelta == 0 {
        s.received += 1;
        s.duplicates += 1;
        return SeqVerdict::Duplicate;
    }
    if udelta < MAX_DROPOUT {
        // In order, with a permissible gap; wraps are absorbed by the
        // extended number.
        let step = u64::from(udelta);
        s.window = if step >= WINDOW { 0 } else { s.window << step };
        s.window |= 1;
        s.max_seq = seq;
        s.max_ext += step;
        s.received += 1;
        s.bad_seq = None;
        return SeqVerdict::InOrder;
    }
    if u32::from(udelta) <= (1 << 16) - u32::from(MAX_MISORDER) {
        // A very large jump: restart only if the next packet follows it.
        if s.bad_seq == Some(seq) {
            return SeqVerdict::Restart;
        }
        s.bad_seq = Some(seq.wrapping_add(1));
        return SeqVerdict::Discarded;
    }
    // Behind the highest number by at most MAX_MISORDER: late or
    // duplicate.
    let behind = u64::from(s.max_seq.wrapping_sub(seq));
    s.received += 1;
    let bit = 1u128 << behind;
    if s.window & bit != 0 {
        s.duplicates += 1;
        SeqVerdict::Duplicate
    } else {
        s.window |= bit;
        // A packet from before the first one of the sequence extends it
        // backwards (A.3 would count it as received but not expected).
        s.base_ext = s.base_ext.min(s.max_ext - behind);
        SeqVerdict::Late
    }
}

#[cfg(test)]
mod tests;

//! Entry point of the `rtp_packet` fuzz target (`fuzz/fuzz_targets/`),
//! kept here so that the committed corpus replays through exactly the same
//! code as an ordinary `cargo test` (`tests/fuzz_corpus.rs`). Not an API:
//! it panics when a property the relay relies on does not hold.

use std::time::Instant;

use crate::continuity::{ContinuityState, Rewrite, SentPoint};
use crate::rtp::{self, Kind};
use crate::stats::StreamRecorder;

/// One datagram as a relay session handles it (`session.rs`): classify,
/// then for RTP the stats and the continuity rewrite after an upstream
/// switch, for RTCP the SSRC mappings of both directions. Nothing may
/// panic, rewriting never changes a packet's length or kind, and a mapping
/// that maps nothing leaves the bytes alone.
pub fn rtp_packet(data: &[u8]) {
    let mut p = data.to_vec();
    let kind = rtp::classify(&p);
    match kind {
        Kind::Malformed => {}
        Kind::Rtp => {
            let header = rtp::rtp_header_len(&p).expect("RTP has a header length");
            assert!(header <= p.len());
            let (seq, ts, ssrc) = (rtp::seq(&p), rtp::timestamp(&p), rtp::ssrc(&p));
            let _ = (rtp::marker(&p), rtp::payload_type(&p));
            let mut recorder = StreamRecorder::new(8000);
            let now = Instant::now();
            recorder.on_rtp(seq, ts, ssrc, p.len(), now);
            recorder.on_rtp(
                seq.wrapping_add(1),
                ts.wrapping_add(160),
                ssrc,
                p.len(),
                now,
            );

            // An upstream switch: this packet continues another stream.
            let last = SentPoint {
                ssrc: !ssrc,
                seq: seq ^ 0x5555,
                timestamp: ts ^ 0x5555_5555,
                at_unix_us: 1_000_000,
            };
            let mut state = ContinuityState {
                last_sent: Some(last),
                ..ContinuityState::default()
            };
            state.arm();
            assert!(
                state.on_rtp(&mut p, 1_020_000, 8000),
                "armed state rewrites"
            );
            assert_eq!(p.len(), data.len());
            assert_eq!(
                rtp::classify(&p),
                Kind::Rtp,
                "a rewrite never makes RTP look like RTCP"
            );
            assert_eq!(rtp::rtp_header_len(&p), Some(header));
            assert_eq!(rtp::ssrc(&p), last.ssrc);
            assert_eq!(rtp::seq(&p), last.seq.wrapping_add(1));
            // The jump is marked, unless the marker would make it RTCP.
            let pt = rtp::payload_type(data);
            assert_eq!(rtp::marker(&p), !(64..=95).contains(&pt));
            assert_eq!(rtp::payload_type(&p), pt);
            assert_eq!(p[header..], data[header..], "payload is opaque");
        }
        Kind::Rtcp => {
            let sender = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let rw = Rewrite {
                in_ssrc: sender,
                out_ssrc: !sender,
                seq_delta: 0x1234,
                ts_delta: 0x1234_5678,
            };
            rtp::rtcp_map_from_upstream(&mut p, &rw);
            assert_eq!(p.len(), data.len());
            assert_eq!(rtp::classify(&p), Kind::Rtcp);
            let back = Rewrite {
                in_ssrc: sender,
                out_ssrc: sender,
                ..rw
            };
            rtp::rtcp_map_toward_upstream(&mut p, &back);
            assert_eq!(p.len(), data.len());

            // SSRCs mapped to themselves with no shift: nothing changes.
            let identity = Rewrite {
                in_ssrc: sender,
                out_ssrc: sender,
                seq_delta: 0,
                ts_delta: 0,
            };
            let mut q = data.to_vec();
            rtp::rtcp_map_from_upstream(&mut q, &identity);
            rtp::rtcp_map_toward_upstream(&mut q, &identity);
            assert_eq!(q, data);
        }
    }
}

//! tandem-load: a SIP call generator (`call`) and answerer (`answer`)
//! with real RTP, for load and call-survival benchmarks of Tandem.
//!
//! It speaks SIP and RTP only (on `sipcore`), never Tandem's internals, so
//! it measures what a trunk or a media server would see: calls per second,
//! setup latency, failures by reason, and per call the RTP loss, jitter and
//! the longest audio gap — the figure that says whether a call survived a
//! failure unnoticed.
//!
//! * [`rtp`]: packets and the RFC 3550 receiver statistics;
//! * [`media`]: the RTP sockets of all calls (one 20 ms ticker for
//!   sending, one small task per socket for receiving);
//! * [`sip`]: SDP, Via, targets and the 2xx retransmission shared by both
//!   roles;
//! * [`call`] and [`answer`]: the two roles;
//! * [`stats`], [`report`], [`plot`]: distributions, JSON and SVG output.
#![forbid(unsafe_code)]

pub mod answer;
pub mod call;
pub mod cli;
pub mod error;
pub mod fail;
pub mod media;
pub mod plot;
pub mod progress;
pub mod report;
pub mod rtp;
pub mod sip;
pub mod stats;

pub use error::{Error, Result};

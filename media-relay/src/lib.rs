//! RTP/RTCP media relay for Tandem.
//!
//! Every call's media is anchored here: side A faces leg A (the trunk),
//! side B faces leg B (the media server, the "upstream"). What arrives on
//! side A's RTP/RTCP port leaves through side B's, toward leg B, and vice
//! versa. See `README.md` for the design: worker threads with epoll and
//! batched `recvmmsg`/`sendmmsg`, latching (symmetric RTP), upstream switch
//! with SSRC/sequence/timestamp continuity, stats, snapshots.
//!
//! The crate knows nothing about SIP.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
pub mod continuity;
mod error;
mod fastpath;
#[doc(hidden)]
pub mod fuzzing;
mod pool;
mod relay;
pub mod rtp;
mod session;
pub mod stats;
pub mod sys;
mod worker;

pub use config::{Latching, RelayConfig, SessionOptions, MAX_BATCH};
pub use continuity::{ContinuityState, Rewrite, SentPoint};
pub use error::{Error, Result};
pub use fastpath::FastPathMode;
pub use relay::{MediaRelay, RelayCounters};
pub use session::{
    LocalPorts, RelaySnapshot, SessionId, SessionInfo, SessionParams, SessionSnapshot,
    SessionStats, Side, SideState,
};
pub use stats::{StreamRecorder, StreamStats};

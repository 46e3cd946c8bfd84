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

/// The session table's map (looked up by every call's relay operations
/// and state reads): std's `HashMap` with foldhash's hasher. Cost: foldhash
/// is several times cheaper than std's SipHash-1-3 on short keys; measured
/// with sipcore's and the call store's maps switched too
/// (loadtest/bench/b2bua-instructions.sh 600 20: 704,632 instructions per
/// call with SipHash-1-3, of them ~42,400 in its hashing functions; 658,733
/// with foldhash, ~4,300 left in hashing, mostly maps not switched).
/// DoS: never a fixed state; `quality::RandomState` is seeded per process
/// and per map (session ids are Tandem's own call ids, so this table is
/// not the exposed one). Make one with `Map::default()`.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;

//! Batched UDP receive: one `recvmmsg(2)` fills many reusable buffers with
//! datagrams, their sources, whether they were cut, and (optionally) the
//! kernel's receive time.
//!
//! Shared by the media relay and the SIP stack, which both receive UDP in
//! batches, so that the crate that owns this `unsafe` code is one small
//! crate with no knowledge of either protocol. Its only `unsafe` code is in
//! `sys`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod sys;

pub use sys::{set_rx_timestamps, RecvBatch};

/// Datagram size of [`RecvBatch::new`]: RTP and RTCP fit (the media
/// relay's choice); longer datagrams are cut and reported truncated.
pub const MAX_DATAGRAM: usize = 2048;

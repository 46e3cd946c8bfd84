//! sipcore: the SIP layer of Tandem.
//!
//! * [`message`] — zero-copy parse and print of SIP requests and responses
//!   (RFC 3261 §7, §20, §25). A [`message::Message`] owns one reference
//!   counted buffer ([`bytes::Bytes`]); every header value is a range into
//!   it, typed views are built on demand.
//! * [`sdp`] — a line-based SDP rewriter for media anchoring.
//! * [`transport`] — UDP and TCP transports with stream framing (§18).
//! * [`transaction`] — client and server transactions (§17, RFC 6026) as
//!   plain-data state machines plus a tokio driver.
//! * [`dialog`] — dialog state (§12) and in-dialog request building.
//! * [`digest`] — digest authentication (RFC 7616/8760), stateless nonces.
//! * [`gate`] — trusted sources and per-source rate limits, checked before
//!   a message is parsed.
//! * [`tap`] — an optional observer of every message an endpoint receives
//!   and sends (capture export).
//!
//! Why an own parser and not `rsip` or `ezk-sip-types`: `rsip` keeps only
//! the first value of `Via: a, b` and treats compact header names as
//! unknown, which breaks response routing. `ezk-sip-types` handles both, but
//! parses every header it knows eagerly into owned structures and its API
//! is built for a UA, not a proxy that mostly forwards bytes. A proxy needs
//! three things above all: find a handful of headers fast, keep everything
//! else byte for byte, and say precisely why a message is bad. An index of
//! header ranges over one shared buffer gives all three and holds the
//! parse budget (see `benches/parse.rs` and the crate README for figures).
// `unsafe` only in `sys` (the `recvmmsg(2)` wrapper), which allows it.
#![deny(unsafe_code)]

pub mod dialog;
pub mod digest;
pub mod endpoint;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod message;
pub mod sdp;
mod sys;
pub mod tap;
pub mod transaction;
pub mod transport;

pub use error::{Error, ParseError, Result};

pub mod hash;

pub(crate) use hash::{Hasher, Map, Set};

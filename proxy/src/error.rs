//! The proxy's one error type. Like pingora's, it records which side
//! failed and whether trying again (another media server) makes sense:
//! exactly the two questions a B2BUA asks when something goes wrong.

use std::fmt;

/// Which side of the B2BUA failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Leg A: the trunk, SBC or phone that sent the call.
    Downstream,
    /// Leg B: the media server.
    Upstream,
    /// Tandem itself (ports exhausted, a bug, shutting down).
    Internal,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        })
    }
}

/// An error of call handling, with the SIP answer it calls for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{side} error: {status} {reason}: {detail}")]
pub struct Error {
    pub side: Side,
    /// Another media server may succeed where this one failed.
    pub retry: bool,
    /// The status code leg A gets if this ends the call attempt.
    pub status: u16,
    pub reason: &'static str,
    /// Said in a `Warning` header: what exactly was wrong.
    pub detail: String,
}

impl Error {
    pub fn downstream(status: u16, reason: &'static str, detail: impl Into<String>) -> Error {
        Error {
            side: Side::Downstream,
            retry: false,
            status,
            reason,
            detail: detail.into(),
        }
    }

    pub fn upstream(status: u16, reason: &'static str, detail: impl Into<String>) -> Error {
        Error {
            side: Side::Upstream,
            retry: true,
            status,
            reason,
            detail: detail.into(),
        }
    }

    pub fn internal(status: u16, reason: &'static str, detail: impl Into<String>) -> Error {
        Error {
            side: Side::Internal,
            retry: false,
            status,
            reason,
            detail: detail.into(),
        }
    }

    /// The `Warning` header value (RFC 3261 §20.43, code 399: miscellaneous).
    pub fn warning(&self) -> String {
        format!(
            "399 tandem \"{}\"",
            self.detail.replace(['"', '\r', '\n'], " ")
        )
    }
}

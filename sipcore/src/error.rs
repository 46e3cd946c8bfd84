//! The one error type of sipcore.

use std::net::SocketAddr;

/// Why a message could not be parsed or was rejected.
///
/// `reason` is short human text that can go into a `Warning` header or a
/// 400 reason phrase; `header` names the header at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}{}", header.map(|h| format!(" (header {h})")).unwrap_or_default())]
pub struct ParseError {
    pub reason: &'static str,
    pub header: Option<&'static str>,
}

impl ParseError {
    pub const fn new(reason: &'static str) -> Self {
        ParseError {
            reason,
            header: None,
        }
    }
    pub const fn in_header(reason: &'static str, header: &'static str) -> Self {
        ParseError {
            reason,
            header: Some(header),
        }
    }
}

/// Errors of sipcore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed SIP message: {0}")]
    Parse(#[from] ParseError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no connection to {0}")]
    NoConnection(SocketAddr),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

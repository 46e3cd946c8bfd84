//! The one error type of tandem-load: what stops a run before or after the
//! calls (bad input, a socket that cannot be bound, an output file that
//! cannot be written). Failed calls are results, not errors.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line value that cannot be used; names the option.
    #[error("bad {option}: {reason}")]
    Config {
        option: &'static str,
        reason: String,
    },
    /// The SIP endpoint (UDP and TCP) could not be bound.
    #[error("cannot bind SIP on {addr}: {source}")]
    BindSip {
        addr: SocketAddr,
        #[source]
        source: sipcore::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {file}: {reason}")]
    Plot { file: PathBuf, reason: String },
}

impl Error {
    pub fn config(option: &'static str, reason: impl Into<String>) -> Error {
        Error::Config {
            option,
            reason: reason.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

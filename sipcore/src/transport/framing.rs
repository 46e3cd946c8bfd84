//! Message framing on a byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1).
//!
//! A stream transport (TCP now, TLS later) delivers bytes, not messages.
//! [`Framer::decode`] works like mini-redis' `Frame::check` + `parse`: it
//! first *checks* whether the buffer holds one complete unit — a message or
//! a keep-alive — and only then *splits* it off the front of the
//! [`BytesMut`] (no copy: the returned [`Bytes`] shares the allocation).
//! `Ok(None)` means "incomplete, read more".
//!
//! Only a light scan is done here: find the end of the header block and the
//! `Content-Length`. Full parsing is the job of `sipcore::message`.
//!
//! Keep-alives: any CRLF before a start line is skipped (RFC 3261 §7.5). A
//! double CRLF is a "ping" (RFC 5626 §3.5.1) and is reported as
//! [`Frame::Ping`]; the connection must answer it with [`PONG`].

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, ParseError, Result};

/// Largest message accepted on any transport, header block and body
/// together. UDP uses the same limit for datagrams.
pub const MAX_MESSAGE_SIZE: usize = 65536;

/// The CRLF "pong" that answers a [`Frame::Ping`] (RFC 5626 §3.5.1).
pub const PONG: &[u8] = b"\r\n";

const PING: &[u8] = b"\r\n\r\n";
const CONTENT_LENGTH: &str = "Content-Length";

/// One unit read off a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The exact bytes of one SIP message: start line, headers, empty line
    /// and `Content-Length` bytes of body.
    Message(Bytes),
    /// A double-CRLF keep-alive ping; answer with [`PONG`].
    Ping,
}

/// What [`Framer::check`] found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Stray CR/LF bytes to drop (keep-alive pong or separators).
    Skip(usize),
    /// A ping of this many bytes.
    Ping(usize),
    /// A complete message of this many bytes.
    Message(usize),
}

/// Incremental stream framer. One per connection.
///
/// It remembers how far the header block has been searched and, once the
/// header block is complete, how long the whole message is, so that a
/// message trickling in byte by byte is not rescanned from the start on
/// every read.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    /// Bytes at the front of the buffer already searched for the end of the
    /// header block without success.
    scanned: usize,
    /// Total length of the message at the front, once its header block is
    /// complete.
    total: Option<usize>,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Split the next frame off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete frame yet (the
    /// bytes stay in `buf`). An error means the stream cannot be framed any
    /// more (missing or bad `Content-Length`, message over
    /// [`MAX_MESSAGE_SIZE`], not SIP): the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        loop {
            match self.check(buf)? {
                None => return Ok(None),
                Some(Check::Skip(n)) => buf.advance(n),
                Some(Check::Ping(n)) => {
                    buf.advance(n);
                    return Ok(Some(Frame::Ping));
                }
                Some(Check::Message(n)) => {
                    self.scanned = 0;
                    self.total = None;
                    return Ok(Some(Frame::Message(buf.split_to(n).freeze())));
                }
            }
        }
    }

    /// Look at the front of `buf` without consuming anything.
    fn check(&mut self, buf: &[u8]) -> Result<Option<Check>> {
        if let Some(total) = self.total {
            return Ok((buf.len() >= total).then_some(Check::Message(total)));
        }
        if self.scanned == 0 {
            if let Some(keepalive) = check_keepalive(buf) {
                return Ok(keepalive);
            }
            if let Some(&first) = buf.first() {
                if !is_token_char(first) {
                    return Err(
                        ParseError::new("stream does not start with a SIP start line").into(),
                    );
                }
            }
        }
        let from = self.scanned.saturating_sub(2);
        let Some(head_len) = find_header_end(buf, from) else {
            if buf.len() > MAX_MESSAGE_SIZE {
                return Err(Error::TooLarge {
                    size: buf.len(),
                    limit: MAX_MESSAGE_SIZE,
                });
            }
            self.scanned = buf.len();
            return Ok(None);
        };
        if head_len > MAX_MESSAGE_SIZE {
            return Err(Error::TooLarge {
                size: head_len,
                limit: MAX_MESSAGE_SIZE,
            });
        }
        let body_len = content_length(&buf[..head_len])?.ok_or(ParseError::in_header(
            "Content-Length is mandatory on a stream transport",
            CONTENT_LENGTH,
        ))?;
        let total = head_len.saturating_add(body_len);
        if total > MAX_MESSAGE_SIZE {
            return Err(Error::TooLarge {
                size: total,
                limit: MAX_MESSAGE_SIZE,
            });
        }
        self.total = Some(total);
        Ok((buf.len() >= total).then_some(Check::Message(total)))
    }
}

/// Keep-alive handling at a message boundary. `None`: no CR/LF in front.
/// `Some(None)`: undecided yet (could still become a ping).
fn check_keepalive(buf: &[u8]) -> Option<Option<Check>> {
    match buf {
        [] => Some(None),
        [b'\r' | b'\n', ..] if buf.starts_with(PING) => Some(Some(Check::Ping(PING.len()))),
        // A prefix of a ping: wait for more (a lone CRLF pong also waits
        // here until the next message pushes it out; that is harmless).
        _ if PING.starts_with(buf) => Some(None),
        [b'\r', b'\n', ..] => Some(Some(Check::Skip(2))),
        [b'\r' | b'\n', ..] => Some(Some(Check::Skip(1))),
        _ => None,
    }
}

/// RFC 3261 §25.1 `token` characters: a method name or `SIP/2.0` starts
/// with one. Anything else at a message boundary (TLS handshake, STUN,
/// binary noise) is not SIP.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Length of the header block including the empty line, if it is complete.
/// Accepts `\r\n\r\n` and the tolerant `\n\n` / `\n\r\n`. `from` is where to
/// resume searching.
fn find_header_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(i) = memchr::memchr(b'\n', buf.get(at..)?) {
        let nl = at + i;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => at = nl + 1,
        }
    }
    None
}

/// The `Content-Length` (or compact `l`) of a complete header block.
/// Several equal values are accepted, different ones are an error (they
/// would let two hops frame the same stream differently).
fn content_length(head: &[u8]) -> Result<Option<usize>> {
    let mut found: Option<usize> = None;
    // The first line is the start line.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            continue; // continuation of a folded header
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue; // left for the parser to reject
        };
        let name = trim(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = parse_length(trim(&line[colon + 1..]))?;
        match found {
            Some(previous) if previous != value => {
                return Err(ParseError::in_header(
                    "conflicting Content-Length values",
                    CONTENT_LENGTH,
                )
                .into());
            }
            _ => found = Some(value),
        }
    }
    Ok(found)
}

/// Decimal digits, leading zeros allowed. Values over
/// [`MAX_MESSAGE_SIZE`] are reported as too large, not as overflow.
fn parse_length(value: &[u8]) -> Result<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::in_header(
            "Content-Length is not a decimal number",
            CONTENT_LENGTH,
        )
        .into());
    }
    let mut n: usize = 0;
    for &d in value {
        n = n * 10 + usize::from(d - b'0');
        if n > MAX_MESSAGE_SIZE {
            return Err(Error::TooLarge {
                size: n,
                limit: MAX_MESSAGE_SIZE,
            });
        }
    }
    Ok(n)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// True if a datagram holds nothing but CR/LF: a keep-alive, not a message.
pub(crate) fn is_crlf_only(data: &[u8]) -> bool {
    !data.is_empty() && data.iter().all(|&b| b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod tests;

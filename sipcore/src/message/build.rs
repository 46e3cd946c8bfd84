//! Building new requests and responses (what a UA or B2BUA originates, as
//! opposed to [`super::Editor`], which re-prints a received message).
//!
//! A builder records where each header it prints lands, so that
//! `build_message` hands out the parsed form of what it built without
//! parsing it again: printing a message and then running the parser over
//! it cost a B2BUA a second parse of every response and request it sent.
//! The index is checked for what the rest of Tandem relies on (mandatory
//! headers once each, CSeq, Call-ID, Max-Forwards, Content-Length, the
//! start line); the grammar of Via, From, To, Contact and Route values is
//! not checked again: a builder is given them by Tandem itself, made from
//! values it parsed or from its validated configuration. Anything the
//! parser would read differently from how it was written (a line break or
//! surrounding white space in a value, a header name that is no token, an
//! odd status) makes `build_message` fall back to [`Message::parse`], so
//! the result is always what the parser would have made of the bytes.

use std::fmt::Write;

use bytes::{BufMut, Bytes, BytesMut};

use super::edit::{put_content_length, put_header};
use super::values::{is_token, parse_u32, split_list, trim_lws};
use super::{
    parse_cseq, CSeq, HeaderEntry, HeaderName, HeaderSpan, Message, Method, NameAddr, Span,
    StartLine, Via, MANDATORY_CALL_ID, MANDATORY_CSEQ, MANDATORY_FROM, MANDATORY_MAX_FORWARDS,
    MANDATORY_TO, MANDATORY_VIA, MAX_MESSAGE_SIZE,
};
use crate::ParseError;

/// A new request. Headers are printed in the order given; Max-Forwards 70
/// is added unless set, Content-Length is always added last.
pub struct RequestBuilder {
    head: Head,
    /// Span of the Request-URI.
    uri: Span,
    method: Method,
    has_max_forwards: bool,
    body: Option<(String, Bytes)>,
}

impl RequestBuilder {
    pub fn new(method: &Method, request_uri: &str) -> Self {
        let mut out = BytesMut::with_capacity(1024);
        out.put_slice(method.as_str().as_bytes());
        out.put_u8(b' ');
        let uri = Span::new(out.len(), out.len() + request_uri.len());
        out.put_slice(request_uri.as_bytes());
        out.put_slice(b" SIP/2.0\r\n");
        // The parser rejects LWS, `<…>` and headers in the Request-URI:
        // such a request is left to it (and to its error).
        let exact = is_token(method.as_str())
            && super::Uri::parse_request_uri(request_uri).is_ok()
            && plain(request_uri);
        RequestBuilder {
            head: Head::new(out, exact),
            uri,
            method: Method::from_token(method.as_str()),
            has_max_forwards: false,
            body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        let kind = HeaderName::classify(name);
        if kind == HeaderName::MaxForwards {
            self.has_max_forwards = true;
        }
        self.head.put(kind, name, value);
        self
    }

    /// Adds `name: value` for each value, one line each.
    pub fn headers<'v>(mut self, name: &str, values: impl IntoIterator<Item = &'v str>) -> Self {
        for v in values {
            self = self.header(name, v);
        }
        self
    }

    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    pub fn build(self) -> Bytes {
        self.finish().out.freeze()
    }

    /// The request as a parsed [`Message`], without parsing it (see the
    /// module documentation); the error is the parser's.
    pub fn build_message(self) -> Result<Message, ParseError> {
        let uri = self.uri;
        // "<uri> SIP/2.0" after the URI.
        let version = Span::new(uri.end as usize + 1, uri.end as usize + 8);
        let start = StartLine::Request {
            method: self.method.clone(),
            uri,
        };
        self.finish().into_message(start, version)
    }

    fn finish(mut self) -> Head {
        if !self.has_max_forwards {
            self.head.put(HeaderName::MaxForwards, "Max-Forwards", "70");
        }
        self.head.finish(self.body);
        self.head
    }
}

/// A response to a received request (RFC 3261 §8.2.6): Via lines, From,
/// To, Call-ID and CSeq copied from the request; a To tag added when
/// given and the request had none; Record-Route copied for responses that
/// can create a dialog (§12.1.1).
pub struct ResponseBuilder {
    head: Head,
    status: u16,
    /// Span of the reason phrase.
    reason: Span,
    body: Option<(String, Bytes)>,
}

impl ResponseBuilder {
    pub fn new(request: &Message, status: u16, reason: &str) -> Self {
        Self::with_to_tag(request, status, reason, None)
    }

    pub fn with_to_tag(request: &Message, status: u16, reason: &str, to_tag: Option<&str>) -> Self {
        let mut out = BytesMut::with_capacity(512 + request.headers.len() * 48);
        out.put_slice(b"SIP/2.0 ");
        // Writing into a BytesMut cannot fail.
        let _ = write!(out, "{status} ");
        let reason_span = Span::new(out.len(), out.len() + reason.len());
        out.put_slice(reason.as_bytes());
        out.put_slice(b"\r\n");
        // "SIP/2.0 " is 8 bytes, a three-digit code and SP 4 more: the
        // spans above hold only for a status the parser takes.
        let exact = (100..=699).contains(&status) && no_line_break(reason);
        let mut head = Head::new(out, exact);
        let dialog_creating = (101..300).contains(&status)
            && matches!(
                request.method(),
                Some(Method::Invite | Method::Subscribe | Method::Refer)
            );
        for h in &request.headers {
            let copy = match h.kind {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => true,
                HeaderName::RecordRoute => dialog_creating,
                HeaderName::To => match to_tag {
                    Some(tag) if request.to_tag().is_none() && status != 100 => {
                        head.put_to_with_tag(request.text(h.value), tag);
                        false
                    }
                    _ => true,
                },
                _ => false,
            };
            if copy {
                head.copy(request, h);
            }
        }
        ResponseBuilder {
            head,
            status,
            reason: reason_span,
            body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.head.put(HeaderName::classify(name), name, value);
        self
    }

    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_owned(), body));
        self
    }

    pub fn build(mut self) -> Bytes {
        self.head.finish(self.body);
        self.head.out.freeze()
    }

    /// The response as a parsed [`Message`], without parsing it (see the
    /// module documentation); the error is the parser's.
    pub fn build_message(mut self) -> Result<Message, ParseError> {
        self.head.finish(self.body);
        let start = StartLine::Response {
            status: self.status,
            reason: self.reason,
        };
        self.head.into_message(start, Span::new(0, 7))
    }
}

impl Message {
    /// This message without its body: the same start line and header
    /// lines, Content-Type dropped and `Content-Length: 0`, in a buffer of
    /// its own sized to fit (a kept INVITE holds no spare room). Made from
    /// the index, not parsed again (see the module documentation): what
    /// a B2BUA keeps of an INVITE once its SDP is relayed.
    pub fn without_body(&self) -> Message {
        self.copy_head(|_| true).unwrap_or_else(|_| self.compact())
    }

    /// The start line and the header lines whose kind `keep` takes, in
    /// their order, without a body (`Content-Length: 0`; Content-Type is
    /// dropped), in a buffer sized to fit; made from the index like
    /// [`Message::without_body`]. The mandatory headers must be kept for
    /// the result to be a message: if not, this message without its body
    /// comes out instead.
    pub fn with_headers_only(&self, keep: impl Fn(HeaderName) -> bool) -> Message {
        self.copy_head(keep).unwrap_or_else(|_| self.without_body())
    }

    fn copy_head(&self, keep: impl Fn(HeaderName) -> bool) -> Result<Message, ParseError> {
        let kept = |h: &&HeaderEntry| {
            !matches!(h.kind, HeaderName::ContentLength | HeaderName::ContentType) && keep(h.kind)
        };
        let line = self.start_line.range();
        let size = line.len()
            + 2
            + self
                .headers
                .iter()
                .filter(kept)
                .map(|h| usize::from(h.value.end - h.name.start) + 2)
                .sum::<usize>()
            + "Content-Length: 0\r\n\r\n".len();
        let mut out = BytesMut::with_capacity(size);
        out.put_slice(&self.buf[line.clone()]);
        out.put_slice(b"\r\n");
        // Leading CRLFs the parser skipped are not copied: the start
        // line's spans move with it.
        let shift = |s: Span| Span::new(s.start as usize - line.start, s.end as usize - line.start);
        let start = match &self.start {
            StartLine::Request { method, uri } => StartLine::Request {
                method: method.clone(),
                uri: shift(*uri),
            },
            StartLine::Response { status, reason } => StartLine::Response {
                status: *status,
                reason: shift(*reason),
            },
        };
        let mut head = Head::new(out, true);
        // Content-Length comes last.
        head.headers = Vec::with_capacity(self.headers.iter().filter(kept).count() + 1);
        for h in self.headers.iter().filter(kept) {
            head.copy(self, h);
        }
        head.finish(None);
        head.into_message(start, shift(self.version))
    }
}

/// What a builder has printed, with the index of its header lines.
struct Head {
    out: BytesMut,
    headers: Vec<HeaderEntry>,
    /// Where the line end of the last header line is (set by `finish`).
    headers_end: usize,
    body: Span,
    /// False once something was printed that the parser would read
    /// differently from how it was written: `into_message` then parses.
    exact: bool,
    /// Bit i: header line i was copied from a parsed message (or made of
    /// a parsed value and a token), so its grammar was checked already
    /// and `into_message` does not check it again. Lines past the 64th
    /// are always checked.
    copied: u64,
}

impl Head {
    fn new(out: BytesMut, exact: bool) -> Head {
        Head {
            out,
            headers: Vec::with_capacity(16),
            headers_end: 0,
            body: Span::new(0, 0),
            exact,
            copied: 0,
        }
    }

    /// Marks the next header line pushed as already checked.
    fn mark_copied(&mut self) {
        if let Some(bit) = 1u64.checked_shl(self.headers.len() as u32) {
            self.copied |= bit;
        }
    }

    fn push(&mut self, kind: HeaderName, name: Span, value: Span) {
        let short = |s: Span| HeaderSpan::new(s.start as usize, s.end as usize);
        match short(name).zip(short(value)) {
            Some((name, value)) => self.headers.push(HeaderEntry { kind, name, value }),
            // Past 64 KiB: `into_message` leaves it to the parser, which
            // refuses it.
            None => self.exact = false,
        }
    }

    /// Prints `name: value` and records it.
    fn put(&mut self, kind: HeaderName, name: &str, value: &str) {
        let at = self.out.len();
        put_header(&mut self.out, name, value);
        self.exact &= is_token(name) && plain(value);
        let value_at = at + name.len() + 2;
        self.push(
            kind,
            Span::new(at, at + name.len()),
            Span::new(value_at, value_at + value.len()),
        );
    }

    /// Prints `To: value;tag=tag`.
    fn put_to_with_tag(&mut self, value: &str, tag: &str) {
        let at = self.out.len();
        self.out.put_slice(b"To: ");
        self.out.put_slice(value.as_bytes());
        self.out.put_slice(b";tag=");
        self.out.put_slice(tag.as_bytes());
        let end = self.out.len();
        self.out.put_slice(b"\r\n");
        self.exact &= plain(tag) && !tag.is_empty();
        // A parsed To with a token for a tag parses as the To did.
        if is_token(tag) {
            self.mark_copied();
        }
        self.push(
            HeaderName::To,
            Span::new(at, at + 2),
            Span::new(at + 4, end),
        );
    }

    /// Copies the header line `h` of `from` as it was received (its index
    /// moves with it: it was made by the parser).
    fn copy(&mut self, from: &Message, h: &HeaderEntry) {
        let at = self.out.len();
        let line = h.name.start as usize..h.value.end as usize;
        self.out.put_slice(&from.buf[line]);
        self.out.put_slice(b"\r\n");
        let shift = |s: u16| at + usize::from(s - h.name.start);
        self.mark_copied();
        self.push(
            h.kind,
            Span::new(at, shift(h.name.end)),
            Span::new(shift(h.value.start), shift(h.value.end)),
        );
    }

    /// Prints Content-Type and Content-Length (always, last), the empty
    /// line and the body.
    fn finish(&mut self, body: Option<(String, Bytes)>) {
        let body = match body {
            Some((ct, b)) if !b.is_empty() => {
                self.put(HeaderName::ContentType, "Content-Type", &ct);
                b
            }
            _ => Bytes::new(),
        };
        let at = self.out.len();
        put_content_length(&mut self.out, body.len());
        // "Content-Length: " before the value, CRLF CRLF after it.
        let end = self.out.len() - 4;
        self.push(
            HeaderName::ContentLength,
            Span::new(at, at + 14),
            Span::new(at + 16, end),
        );
        self.headers_end = end;
        let body_at = self.out.len();
        self.out.put_slice(&body);
        self.body = Span::new(body_at, self.out.len());
    }

    /// The parsed form, checked as the parser checks what Tandem relies
    /// on; anything unusual is left to the parser.
    fn into_message(self, start: StartLine, version: Span) -> Result<Message, ParseError> {
        let buf = self.out.freeze();
        if !self.exact || buf.len() > MAX_MESSAGE_SIZE || self.headers.len() >= u16::MAX as usize {
            return Message::parse(buf);
        }
        let Some(index) = Index::of(&buf, &self.headers, self.copied, &start) else {
            return Message::parse(buf);
        };
        let line_end = match &start {
            StartLine::Request { .. } => version.end,
            StartLine::Response { reason, .. } => reason.end,
        };
        Ok(Message {
            start_line: Span::new(0, line_end as usize),
            version,
            start,
            headers: self.headers,
            headers_end: self.headers_end as u32,
            body: self.body,
            cseq: index.cseq,
            call_id: index.call_id,
            from: index.from,
            to: index.to,
            buf,
        })
    }
}

/// Where the mandatory headers are, and the CSeq.
struct Index {
    cseq: CSeq,
    call_id: u16,
    from: u16,
    to: u16,
}

impl Index {
    /// `None` when the parser would reject the headers or read them
    /// differently (it then says why).
    fn of(buf: &[u8], headers: &[HeaderEntry], copied: u64, start: &StartLine) -> Option<Index> {
        let text = |s: HeaderSpan| std::str::from_utf8(&buf[Span::from(s).range()]).ok();
        let mut seen = 0u8;
        let once = |seen: &mut u8, bit: u8| {
            let first = *seen & bit == 0;
            *seen |= bit;
            first
        };
        let (mut call_id, mut from, mut to) = (0u16, 0u16, 0u16);
        let mut cseq = None;
        let mut content_length = None;
        for (i, h) in headers.iter().enumerate() {
            let idx = i as u16;
            // The same checks as the parser's: a From, To or Contact value is
            // often made of parts of a stranger's message (leg A's URI user),
            // so the built message must be one the parser would accept. A
            // line copied from a parsed message passed them there.
            let checked = copied.checked_shr(i as u32).is_some_and(|c| c & 1 == 1);
            let ok = match h.kind {
                HeaderName::Via => {
                    seen |= MANDATORY_VIA;
                    checked || {
                        let mut vias = split_list(text(h.value)?).peekable();
                        vias.peek().is_some() && vias.all(|v| Via::parse(v).is_ok())
                    }
                }
                HeaderName::From => {
                    from = idx;
                    once(&mut seen, MANDATORY_FROM)
                        && (checked || NameAddr::parse(text(h.value)?, "From").is_ok())
                }
                HeaderName::To => {
                    to = idx;
                    once(&mut seen, MANDATORY_TO)
                        && (checked || NameAddr::parse(text(h.value)?, "To").is_ok())
                }
                HeaderName::Contact | HeaderName::Route => {
                    checked
                        || split_list(text(h.value)?).all(|v| NameAddr::parse(v, "Contact").is_ok())
                }
                HeaderName::CallId => {
                    call_id = idx;
                    once(&mut seen, MANDATORY_CALL_ID)
                        && (checked || {
                            let v = text(h.value)?;
                            !v.is_empty() && !v.bytes().any(|c| c <= b' ' || c == 0x7f)
                        })
                }
                HeaderName::CSeq => {
                    cseq = Some(parse_cseq(text(h.value)?).ok()?);
                    once(&mut seen, MANDATORY_CSEQ)
                }
                HeaderName::MaxForwards => {
                    once(&mut seen, MANDATORY_MAX_FORWARDS)
                        && parse_u32(text(h.value)?).is_some_and(|v| v <= 255)
                }
                HeaderName::ContentLength => {
                    let cl = parse_u32(text(h.value)?)?;
                    content_length.replace(cl).is_none_or(|old| old == cl)
                }
                _ => true,
            };
            if !ok {
                return None;
            }
        }
        let required = match start {
            StartLine::Request { .. } => 0x3f,
            StartLine::Response { .. } => 0x1f,
        };
        let cseq = cseq.filter(|_| seen & required == required)?;
        if let StartLine::Request { method, .. } = start {
            if *method != cseq.method {
                return None;
            }
        }
        Some(Index {
            cseq,
            call_id,
            from,
            to,
        })
    }
}

/// Printed as is, read back the same: no line break, no white space at
/// either end (the parser trims it off a value).
fn plain(value: &str) -> bool {
    no_line_break(value) && trim_lws(value).len() == value.len()
}

fn no_line_break(s: &str) -> bool {
    memchr::memchr2(b'\r', b'\n', s.as_bytes()).is_none()
}

#[cfg(test)]
mod tests;

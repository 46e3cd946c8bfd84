//! SIP messages (RFC 3261 §7): zero-copy parse, typed views, printing
//! with edits.
//!
//! A [`Message`] owns one [`Bytes`] buffer and an index of spans into it:
//! parsing is one pass over the header block that records where each
//! header's name and value are, classifies the name (compact forms equal
//! long ones) and validates what a proxy relies on (Via, From, To,
//! Call-ID, CSeq, Max-Forwards, Content-Length). Everything else is looked
//! at only when asked. Cloning a message is cheap (the buffer is reference
//! counted) and forwarding an unchanged message sends the received bytes.
//!
//! Folded header lines (RFC 3261 §7.3.1) are the one case that copies: the
//! line break of each fold is overwritten with spaces, which keeps every
//! offset valid and turns the fold into the single LWS it means.

mod build;
mod edit;
mod header;
mod method;
mod name_addr;
mod uri;
mod values;
mod via;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use build::{RequestBuilder, ResponseBuilder};
pub use edit::Editor;
pub use header::HeaderName;
pub use method::Method;
pub use name_addr::NameAddr;
pub use uri::Uri;
pub use values::{find_param, split_list};
pub use via::Via;

use crate::ParseError;
use values::{parse_u32, trim_lws};

/// The largest message Tandem accepts, on any transport. RFC 3261 sets no
/// limit; 64 KiB is the UDP datagram limit and more than any sane INVITE.
pub const MAX_MESSAGE_SIZE: usize = 65536;

/// A byte range of the message buffer. `u32` keeps the index small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span { start: start as u32, end: end as u32 }
    }
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Debug, Clone)]
enum StartLine {
    Request { method: Method, uri: Span },
    Response { status: u16, reason: Span },
}

#[derive(Debug, Clone, Copy)]
struct HeaderEntry {
    kind: HeaderName,
    name: Span,
    value: Span,
}

/// CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// A parsed SIP request or response.
#[derive(Debug, Clone)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    /// The start line without its line end.
    start_line: Span,
    version: Span,
    headers: Vec<HeaderEntry>,
    /// Where the empty line that ends the headers starts.
    headers_end: u32,
    body: Span,
    cseq: CSeq,
    /// Index into `headers` of each mandatory header, found during parse.
    call_id: u16,
    from: u16,
    to: u16,
}

const MANDATORY_VIA: u8 = 1;
const MANDATORY_FROM: u8 = 2;
const MANDATORY_TO: u8 = 4;
const MANDATORY_CALL_ID: u8 = 8;
const MANDATORY_CSEQ: u8 = 16;
const MANDATORY_MAX_FORWARDS: u8 = 32;

impl Message {
    /// Parses one message from a datagram or a frame split off a stream.
    ///
    /// Leading CRLFs are skipped (§7.5). When Content-Length is present it
    /// must not exceed the bytes received; bytes beyond it are ignored
    /// (§18.3). Without it the body is the rest of the buffer.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        if buf.len() > MAX_MESSAGE_SIZE {
            return Err(ParseError::new("message larger than 64 KiB"));
        }
        let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        let (hdr_end, body_start) = find_header_end(&buf[skip..])
            .map(|(h, b)| (h + skip, b + skip))
            .ok_or(ParseError::new("no empty line after the headers"))?;
        if std::str::from_utf8(&buf[skip..hdr_end]).is_err() {
            return Err(ParseError::new("header section is not valid UTF-8"));
        }
        let buf = if has_folding(&buf[skip..hdr_end]) { unfold(&buf, skip, hdr_end) } else { buf };
        Parser { buf: &buf, pos: skip, hdr_end }.run(body_start).map(|mut m| {
            m.buf = buf.clone();
            m
        })
    }

    fn text(&self, span: Span) -> &str {
        // Spans always start and end at ASCII delimiters of a header block
        // validated as UTF-8 in parse, so this cannot fail.
        std::str::from_utf8(&self.buf[span.range()]).unwrap_or("")
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    pub fn reason_phrase(&self) -> Option<&str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI as text.
    pub fn request_uri_str(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI, validated during parse.
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        self.request_uri_str().and_then(|u| Uri::parse(u).ok())
    }

    /// `SIP/2.0` normally. Parse accepts any `SIP/x.y` so that a server can
    /// answer 505 rather than 400 (RFC 4475 §3.3.14).
    pub fn version(&self) -> &str {
        self.text(self.version)
    }

    /// The method a response answers, or the request's own method.
    pub fn cseq(&self) -> &CSeq {
        &self.cseq
    }

    pub fn call_id(&self) -> &str {
        self.text(self.headers[self.call_id as usize].value)
    }

    pub fn from_header(&self) -> NameAddr<'_> {
        self.name_addr(self.from, "From")
    }

    pub fn to_header(&self) -> NameAddr<'_> {
        self.name_addr(self.to, "To")
    }

    fn name_addr(&self, idx: u16, name: &'static str) -> NameAddr<'_> {
        let raw = self.text(self.headers[idx as usize].value);
        NameAddr::parse(raw, name).unwrap_or(NameAddr { raw, display: None, uri: raw, params: "" })
    }

    pub fn from_tag(&self) -> Option<&str> {
        self.from_header().tag()
    }

    pub fn to_tag(&self) -> Option<&str> {
        self.to_header().tag()
    }

    /// All Via values in order, whether comma-joined on one line or on
    /// separate lines. Validated during parse.
    pub fn vias(&self) -> impl Iterator<Item = Via<'_>> + '_ {
        self.values(HeaderName::Via).filter_map(|v| Via::parse(v).ok())
    }

    /// The first Via value; every message has one (checked by parse).
    pub fn top_via(&self) -> Via<'_> {
        self.vias().next().unwrap_or(Via {
            raw: "",
            transport: "",
            host: "",
            port: None,
            params: "",
        })
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.typed_header(HeaderName::MaxForwards).and_then(parse_u32)
    }

    pub fn content_length(&self) -> Option<u32> {
        self.typed_header(HeaderName::ContentLength).and_then(parse_u32)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.typed_header(HeaderName::ContentType)
    }

    pub fn expires(&self) -> Option<u32> {
        self.typed_header(HeaderName::Expires).and_then(parse_u32)
    }

    /// Contact values; `*` (REGISTER) is returned as an address with URI `*`.
    pub fn contacts(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.values(HeaderName::Contact).map(|v| NameAddr::parse(v, "Contact"))
    }

    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.values(HeaderName::Route).map(|v| NameAddr::parse(v, "Route"))
    }

    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.values(HeaderName::RecordRoute).map(|v| NameAddr::parse(v, "Record-Route"))
    }

    /// Option tags of Require.
    pub fn require(&self) -> impl Iterator<Item = &str> + '_ {
        self.values(HeaderName::Require)
    }

    /// Option tags of Supported.
    pub fn supported(&self) -> impl Iterator<Item = &str> + '_ {
        self.values(HeaderName::Supported)
    }

    /// Whether option tag `tag` appears in Require or Supported.
    pub fn supports(&self, tag: &str) -> bool {
        self.supported().chain(self.require()).any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// The first value of a header by name (long or compact, any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let kind = HeaderName::classify(name);
        self.headers
            .iter()
            .find(|h| self.is_named(h, kind, name))
            .map(|h| self.text(h.value))
    }

    fn is_named(&self, h: &HeaderEntry, kind: HeaderName, name: &str) -> bool {
        h.kind == kind && (kind != HeaderName::Other || self.text(h.name).eq_ignore_ascii_case(name))
    }

    /// Every line of a header by name, in order, each as one raw value.
    pub fn headers<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        let kind = HeaderName::classify(name);
        self.headers
            .iter()
            .filter(move |h| self.is_named(h, kind, name))
            .map(|h| self.text(h.value))
    }

    /// Every comma-separated value of a header over all its lines. Only
    /// meaningful for list headers (Via, Route, Contact, Supported, …).
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers(name).flat_map(split_list)
    }

    fn typed_header(&self, kind: HeaderName) -> Option<&str> {
        self.headers.iter().find(|h| h.kind == kind).map(|h| self.text(h.value))
    }

    fn values(&self, kind: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.kind == kind)
            .flat_map(move |h| split_list(self.text(h.value)))
    }

    /// All headers as `(name as received, value)`, in order.
    pub fn iter_headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers.iter().map(|h| (self.text(h.name), self.text(h.value)))
    }

    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.range()]
    }

    /// The body as a zero-copy slice of the buffer.
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body.range())
    }

    /// The message as received (after unfolding, if it had folded lines).
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// A zero-copy `Bytes` of a `&str` borrowed from this message.
    pub fn slice_of(&self, part: &str) -> Bytes {
        self.buf.slice_ref(part.as_bytes())
    }

    /// Starts an edit; see [`Editor`].
    pub fn edit(&self) -> Editor<'_> {
        Editor::new(self)
    }
}

/// Finds the end of the header block: returns (offset of the line end that
/// ends the last header, offset of the body). Accepts bare LF line ends.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let nl = from + i;
        let next = nl + 1;
        if next < buf.len() && buf[next] == b'\n' {
            let hdr_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
            return Some((hdr_end, next + 1));
        }
        if next + 1 < buf.len() && buf[next] == b'\r' && buf[next + 1] == b'\n' {
            let hdr_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
            return Some((hdr_end, next + 2));
        }
        if next >= buf.len() {
            // The last line ends the buffer without an empty line: accept
            // it as a message without body only if it is a full line.
            return None;
        }
        from = next;
    }
    None
}

fn has_folding(block: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', block)
        .any(|i| matches!(block.get(i + 1), Some(b' ') | Some(b'\t')))
}

/// Replaces the line break of every folded line with spaces. Lengths are
/// unchanged so the parser's offsets stay those of the original message.
fn unfold(buf: &Bytes, start: usize, end: usize) -> Bytes {
    let mut copy = BytesMut::from(&buf[..]);
    let mut i = start;
    while i < end {
        if copy[i] == b'\n' && matches!(copy.get(i + 1), Some(b' ') | Some(b'\t')) {
            copy[i] = b' ';
            if i > 0 && copy[i - 1] == b'\r' {
                copy[i - 1] = b' ';
            }
        }
        i += 1;
    }
    copy.freeze()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
        })
}

struct Parser<'b> {
    buf: &'b Bytes,
    pos: usize,
    hdr_end: usize,
}

impl Parser<'_> {
    /// Next line of the header block: (start, end without line end).
    fn next_line(&mut self) -> Option<(usize, usize)> {
        if self.pos >= self.hdr_end {
            return None;
        }
        let start = self.pos;
        let (end, next) = match memchr::memchr(b'\n', &self.buf[start..self.hdr_end]) {
            Some(i) => (start + i, start + i + 1),
            None => (self.hdr_end, self.hdr_end),
        };
        let end_trim = if end > start && self.buf[end - 1] == b'\r' { end - 1 } else { end };
        self.pos = next;
        Some((start, end_trim))
    }

    fn str_at(&self, a: usize, b: usize) -> &str {
        std::str::from_utf8(&self.buf[a..b]).unwrap_or("")
    }

    fn run(mut self, body_start: usize) -> Result<Message, ParseError> {
        let (ls, le) = self.next_line().ok_or(ParseError::new("empty message"))?;
        let first_line = (ls, le);
        let line = self.str_at(ls, le);
        let (start, version) = if let Some(rest) = line.strip_prefix("SIP/") {
            // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
            let sp = rest.find(' ').ok_or(ParseError::new("malformed status line"))?;
            let version = Span::new(ls, ls + 4 + sp);
            let after = &rest[sp + 1..];
            let code = after.get(..3).ok_or(ParseError::new("malformed status code"))?;
            let status: u16 = code
                .parse()
                .ok()
                .filter(|s| (100..=699).contains(s) && code.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(ParseError::new("malformed status code"))?;
            let reason_off = ls + 4 + sp + 1 + 3;
            if after.len() > 3 && !after[3..].starts_with(' ') {
                return Err(ParseError::new("malformed status code"));
            }
            let reason = Span::new((reason_off + 1).min(le), le);
            (StartLine::Response { status, reason }, version)
        } else {
            // Request-Line = Method SP Request-URI SP SIP-Version; exactly
            // single spaces (RFC 4475 §3.1.2.7: LWS there is an error).
            let sp1 = line.find(' ').ok_or(ParseError::new("malformed request line"))?;
            let sp2 = line.rfind(' ').ok_or(ParseError::new("malformed request line"))?;
            if sp1 == sp2 {
                return Err(ParseError::new("malformed request line"));
            }
            let method_s = &line[..sp1];
            let uri_s = &line[sp1 + 1..sp2];
            let ver_s = &line[sp2 + 1..];
            if !is_token(method_s) {
                return Err(ParseError::new("malformed method"));
            }
            if uri_s.is_empty() || uri_s.contains([' ', '\t', '<', '>']) {
                return Err(ParseError::new("malformed Request-URI"));
            }
            Uri::parse(uri_s).map_err(|_| ParseError::new("malformed Request-URI"))?;
            if !valid_version(ver_s) {
                return Err(ParseError::new("malformed SIP version"));
            }
            let method = Method::from_token(method_s);
            (
                StartLine::Request { method, uri: Span::new(ls + sp1 + 1, ls + sp2) },
                Span::new(ls + sp2 + 1, le),
            )
        };
        if let StartLine::Response { .. } = start {
            if !valid_version(self.str_at(version.start as usize, version.end as usize)) {
                return Err(ParseError::new("malformed SIP version"));
            }
        }

        let mut headers = Vec::with_capacity(24);
        let mut seen = 0u8;
        let (mut call_id, mut from, mut to) = (0u16, 0u16, 0u16);
        let mut cseq = None;
        let mut content_length: Option<u32> = None;
        while let Some((ls, le)) = self.next_line() {
            if ls == le {
                continue;
            }
            let line = self.str_at(ls, le);
            let colon = line.find(':').ok_or(ParseError::new("header line without colon"))?;
            let name = line[..colon].trim_end_matches([' ', '\t']);
            if !is_token(name) {
                return Err(ParseError::new("malformed header name"));
            }
            let raw_value = &line[colon + 1..];
            let lead = raw_value.len() - raw_value.trim_start_matches([' ', '\t']).len();
            let value = trim_lws(raw_value);
            let vstart = ls + colon + 1 + lead;
            let kind = HeaderName::classify(name);
            if headers.len() >= u16::MAX as usize {
                return Err(ParseError::new("too many headers"));
            }
            let idx = headers.len() as u16;
            match kind {
                HeaderName::Via => {
                    let mut any = false;
                    for v in split_list(value) {
                        Via::parse(v)?;
                        any = true;
                    }
                    if !any {
                        return Err(ParseError::in_header("empty Via", "Via"));
                    }
                    seen |= MANDATORY_VIA;
                }
                HeaderName::From | HeaderName::To => {
                    let (bit, hname) = if kind == HeaderName::From {
                        (MANDATORY_FROM, "From")
                    } else {
                        (MANDATORY_TO, "To")
                    };
                    if seen & bit != 0 {
                        return Err(ParseError::in_header("header appears twice", hname));
                    }
                    NameAddr::parse(value, hname)?;
                    if kind == HeaderName::From {
                        from = idx;
                    } else {
                        to = idx;
                    }
                    seen |= bit;
                }
                HeaderName::CallId => {
                    if seen & MANDATORY_CALL_ID != 0 {
                        return Err(ParseError::in_header("header appears twice", "Call-ID"));
                    }
                    if value.is_empty() || value.contains([' ', '\t']) {
                        return Err(ParseError::in_header("malformed Call-ID", "Call-ID"));
                    }
                    call_id = idx;
                    seen |= MANDATORY_CALL_ID;
                }
                HeaderName::CSeq => {
                    if seen & MANDATORY_CSEQ != 0 {
                        return Err(ParseError::in_header("header appears twice", "CSeq"));
                    }
                    cseq = Some(parse_cseq(value)?);
                    seen |= MANDATORY_CSEQ;
                }
                HeaderName::MaxForwards => {
                    parse_u32(value)
                        .filter(|&v| v <= 255)
                        .ok_or(ParseError::in_header("malformed Max-Forwards", "Max-Forwards"))?;
                    seen |= MANDATORY_MAX_FORWARDS;
                }
                HeaderName::ContentLength => {
                    let cl = parse_u32(value).ok_or(ParseError::in_header(
                        "malformed Content-Length",
                        "Content-Length",
                    ))?;
                    if content_length.is_some_and(|old| old != cl) {
                        return Err(ParseError::in_header(
                            "conflicting Content-Length values",
                            "Content-Length",
                        ));
                    }
                    content_length = Some(cl);
                }
                _ => {}
            }
            headers.push(HeaderEntry {
                kind,
                name: Span::new(ls, ls + name.len()),
                value: Span::new(vstart, vstart + value.len()),
            });
        }

        let is_request = matches!(start, StartLine::Request { .. });
        for (bit, name) in [
            (MANDATORY_VIA, "Via"),
            (MANDATORY_FROM, "From"),
            (MANDATORY_TO, "To"),
            (MANDATORY_CALL_ID, "Call-ID"),
            (MANDATORY_CSEQ, "CSeq"),
            (MANDATORY_MAX_FORWARDS, "Max-Forwards"),
        ] {
            if seen & bit == 0 && (is_request || bit != MANDATORY_MAX_FORWARDS) {
                return Err(ParseError::in_header("missing mandatory header", name));
            }
        }
        let cseq = cseq.ok_or(ParseError::in_header("missing mandatory header", "CSeq"))?;
        if let StartLine::Request { method, .. } = &start {
            if *method != cseq.method {
                return Err(ParseError::in_header("CSeq method does not match the request", "CSeq"));
            }
        }

        let available = self.buf.len().saturating_sub(body_start);
        let body_len = match content_length {
            Some(cl) if cl as usize > available => {
                return Err(ParseError::in_header(
                    "Content-Length larger than the body",
                    "Content-Length",
                ))
            }
            Some(cl) => cl as usize,
            None => available,
        };
        Ok(Message {
            buf: Bytes::new(),
            start,
            start_line: Span::new(first_line.0, first_line.1),
            version,
            headers,
            headers_end: self.hdr_end as u32,
            body: Span::new(body_start, body_start + body_len),
            cseq,
            call_id,
            from,
            to,
        })
    }
}

fn valid_version(v: &str) -> bool {
    // SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT (case-insensitive "SIP").
    let Some(num) = v.get(..4).filter(|p| p.eq_ignore_ascii_case("SIP/")).map(|_| &v[4..]) else {
        return false;
    };
    match num.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

fn parse_cseq(value: &str) -> Result<CSeq, ParseError> {
    const BAD: ParseError = ParseError::in_header("malformed CSeq", "CSeq");
    let value = trim_lws(value);
    let sp = value.find([' ', '\t']).ok_or(BAD)?;
    let seq = parse_u32(&value[..sp]).filter(|&s| s < (1 << 31)).ok_or(BAD)?;
    let method = trim_lws(&value[sp..]);
    if !is_token(method) {
        return Err(BAD);
    }
    Ok(CSeq { seq, method: Method::from_token(method) })
}

//! SIP messages (RFC 3261 §7): zero-copy parse, typed views, printing
//! with edits.
//!
//! A [`Message`] owns one [`Bytes`] buffer and an index of spans into it:
//! parsing is one pass over the header block that records where each
//! header's name and value are, classifies the name (compact forms equal
//! long ones) and validates what a proxy relies on: the start line, Via,
//! From, To, Call-ID, CSeq (and that its method is the request's),
//! Max-Forwards, Content-Length, Contact and Route. Everything else is
//! looked at only when asked (Record-Route when read). Cloning a message is
//! cheap (the buffer is reference counted) and forwarding an unchanged
//! message sends the received bytes.
//!
//! What is rejected follows RFC 4475 §3.1.2 (see `tests/torture.rs`):
//! extra SP in the request line, `<>`, LWS or headers in the Request-URI,
//! unterminated quotes and non-token characters in display names, LWS
//! inside `<…>`, an addr-spec that needs `<…>`, scalar overflows,
//! Content-Length beyond the body or disagreeing with itself, mandatory
//! headers missing or repeated. Unknown SIP versions, URI schemes and
//! methods parse, so that a server can answer 505, 416 or 501/405.
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
mod wire;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use build::{RequestBuilder, ResponseBuilder};
pub use edit::Editor;
pub use header::HeaderName;
pub use method::Method;
pub use name_addr::NameAddr;
pub use uri::Uri;
pub use values::{find_param, params_without_tag, split_list};
pub use via::Via;

use crate::ParseError;
use memchr::memchr;
use values::{is_lws_byte, is_token, is_token_byte, parse_u32, trim_lws};

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
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A byte range of a header line's name or value. A message is at most
/// [`MAX_MESSAGE_SIZE`] bytes and its header lines end before the empty
/// line, so every header offset fits `u16`: the index of a message is
/// half the size with it (10 bytes a header, was 20). Kept messages (the
/// INVITEs of every held call) carry their index for the call's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeaderSpan {
    start: u16,
    end: u16,
}

impl HeaderSpan {
    /// `None` when an end lies beyond `u16` (a message over 64 KiB).
    fn new(start: usize, end: usize) -> Option<HeaderSpan> {
        Some(HeaderSpan {
            start: u16::try_from(start).ok()?,
            end: u16::try_from(end).ok()?,
        })
    }
}

impl From<HeaderSpan> for Span {
    fn from(s: HeaderSpan) -> Span {
        Span {
            start: u32::from(s.start),
            end: u32::from(s.end),
        }
    }
}

// How many times `Message::parse` ran on this thread: the builder tests
// check that building a message does not parse it.
#[cfg(test)]
thread_local! {
    static PARSES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[derive(Debug, Clone)]
enum StartLine {
    Request { method: Method, uri: Span },
    Response { status: u16, reason: Span },
}

#[derive(Debug, Clone, Copy)]
struct HeaderEntry {
    kind: HeaderName,
    name: HeaderSpan,
    value: HeaderSpan,
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
        #[cfg(test)]
        PARSES.with(|p| p.set(p.get() + 1));
        if buf.len() > MAX_MESSAGE_SIZE {
            return Err(ParseError::new("message larger than 64 KiB"));
        }
        let skip = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let end = find_header_end(&buf, skip).ok_or(NO_HEADER_END)?;
        match parse_head(&buf, skip, end)? {
            Some(msg) => Ok(Message { buf, ..msg }),
            None => {
                // Folded lines: unfold a copy and parse that, which has
                // no folds left in its header block.
                let unfolded = unfold(&buf, skip, end.headers);
                let msg = parse_head(&unfolded, skip, end)?
                    .ok_or(ParseError::new("malformed folded header line"))?;
                Ok(Message {
                    buf: unfolded,
                    ..msg
                })
            }
        }
    }

    fn text(&self, span: impl Into<Span>) -> &str {
        // Spans always start and end at ASCII delimiters of a header block
        // validated as UTF-8 in parse, so this cannot fail.
        std::str::from_utf8(&self.buf[span.into().range()]).unwrap_or("")
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
        self.name_addr(self.from)
    }

    pub fn to_header(&self) -> NameAddr<'_> {
        self.name_addr(self.to)
    }

    fn name_addr(&self, idx: u16) -> NameAddr<'_> {
        // Validated during parse: only split here.
        let raw = self.text(self.headers[idx as usize].value);
        NameAddr::split(raw).unwrap_or(NameAddr {
            raw,
            display: None,
            uri: raw,
            params: "",
        })
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
        self.values(HeaderName::Via)
            .filter_map(|v| Via::parse(v).ok())
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
        self.typed_header(HeaderName::MaxForwards)
            .and_then(parse_u32)
    }

    pub fn content_length(&self) -> Option<u32> {
        self.typed_header(HeaderName::ContentLength)
            .and_then(parse_u32)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.typed_header(HeaderName::ContentType)
    }

    pub fn expires(&self) -> Option<u32> {
        self.typed_header(HeaderName::Expires).and_then(parse_u32)
    }

    /// Contact values; `*` (REGISTER) is returned as an address with URI
    /// `*`. Contact and Route are validated during parse, so their
    /// iterators yield only `Ok` for a parsed message.
    pub fn contacts(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.values(HeaderName::Contact).map(|v| {
            NameAddr::split(v).ok_or(ParseError::in_header("malformed address", "Contact"))
        })
    }

    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.values(HeaderName::Route)
            .map(|v| NameAddr::split(v).ok_or(ParseError::in_header("malformed address", "Route")))
    }

    /// Record-Route values, validated here (parse only finds them: a proxy
    /// forwards them untouched).
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.values(HeaderName::RecordRoute)
            .map(|v| NameAddr::parse(v, "Record-Route"))
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
        self.supported()
            .chain(self.require())
            .any(|t| t.eq_ignore_ascii_case(tag))
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
        h.kind == kind
            && (kind != HeaderName::Other || self.text(h.name).eq_ignore_ascii_case(name))
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
        self.headers
            .iter()
            .find(|h| h.kind == kind)
            .map(|h| self.text(h.value))
    }

    fn values(&self, kind: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.kind == kind)
            .flat_map(move |h| split_list(self.text(h.value)))
    }

    /// All headers as `(name as received, value)`, in order.
    pub fn iter_headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers
            .iter()
            .map(|h| (self.text(h.name), self.text(h.value)))
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
    /// A copy for keeping: its bytes exactly as long as the message and
    /// its header index no larger than the headers (a parsed message keeps
    /// room for 24 headers and shares a buffer that may be larger). For
    /// messages held for a long time, such as a call's INVITE.
    pub fn compact(&self) -> Message {
        let mut m = self.clone();
        m.buf = Bytes::copy_from_slice(&self.buf);
        m.headers.shrink_to_fit();
        m
    }

    pub fn edit(&self) -> Editor<'_> {
        Editor::new(self)
    }
}

const NO_HEADER_END: ParseError = ParseError::new("no empty line after the headers");
const NOT_UTF8: ParseError = ParseError::new("header section is not valid UTF-8");

/// Where the header block of a message ends.
#[derive(Clone, Copy)]
struct HeaderEnd {
    /// Offset of the line end of the last header line.
    headers: usize,
    /// Offset of the body.
    body: usize,
}

/// Finds the first empty line at or after `from` (bare LF line ends
/// accepted) with two SIMD substring searches.
fn find_header_end(buf: &[u8], from: usize) -> Option<HeaderEnd> {
    use memchr::memmem::Finder;
    use std::sync::OnceLock;
    // Building a searcher costs more than searching a typical message.
    static EMPTY_LINE_CRLF: OnceLock<Finder<'static>> = OnceLock::new();
    static EMPTY_LINE_LF: OnceLock<Finder<'static>> = OnceLock::new();
    let hay = &buf[from..];
    // "\n\r\n" also finds the usual CRLF CRLF.
    let crlf = EMPTY_LINE_CRLF
        .get_or_init(|| Finder::new(b"\n\r\n"))
        .find(hay);
    let limit = crlf.map_or(hay.len(), |p| p + 1);
    let lf = EMPTY_LINE_LF
        .get_or_init(|| Finder::new(b"\n\n"))
        .find(&hay[..limit]);
    let (nl, body) = match lf {
        Some(p) => (p, p + 2),
        None => crlf.map(|p| (p, p + 3))?,
    };
    let headers = if nl > 0 && hay[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some(HeaderEnd {
        headers: from + headers,
        body: from + body,
    })
}

/// Replaces the line break of every folded line with spaces. Lengths are
/// unchanged so the parser's offsets stay those of the original message.
fn unfold(buf: &Bytes, start: usize, end: usize) -> Bytes {
    let mut copy = BytesMut::from(&buf[..]);
    for i in memchr::memchr_iter(b'\n', &buf[start..end]).map(|i| start + i) {
        if matches!(copy.get(i + 1), Some(b' ' | b'\t')) {
            copy[i] = b' ';
            if i > 0 && copy[i - 1] == b'\r' {
                copy[i - 1] = b' ';
            }
        }
    }
    copy.freeze()
}

/// One line of the header block, as offsets into the message buffer.
struct Line<'h> {
    /// The line without its line end.
    text: &'h str,
    start: usize,
    end: usize,
    /// Whether the next line continues this one (starts with SP or HT).
    folded: bool,
}

/// The lines of the header block `head` from offset `pos` on. One
/// `memchr` iterator for the whole block: cheaper than a search per line.
struct Lines<'h> {
    head: &'h str,
    base: usize,
    pos: usize,
    line_ends: memchr::Memchr<'h>,
}

impl<'h> Lines<'h> {
    fn new(head: &'h str, pos: usize) -> Self {
        Lines {
            head,
            base: pos,
            pos,
            line_ends: memchr::memchr_iter(b'\n', &head.as_bytes()[pos..]),
        }
    }
}

impl<'h> Iterator for Lines<'h> {
    type Item = Line<'h>;

    #[inline]
    fn next(&mut self) -> Option<Line<'h>> {
        let b = self.head.as_bytes();
        let start = self.pos;
        if start >= b.len() {
            return None;
        }
        let nl = self.line_ends.next().map_or(b.len(), |i| self.base + i);
        let end = if nl > start && b[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        self.pos = nl + 1;
        Some(Line {
            text: &self.head[start..end],
            start,
            end,
            folded: matches!(b.get(nl + 1), Some(b' ' | b'\t')),
        })
    }
}

/// Parses start line and headers of the message in `buf`, whose start
/// line begins at `pos` and whose header block ends at `end`. Spans are
/// offsets into `buf`. Returns `None` when a line is folded: the caller
/// unfolds a copy and parses that.
fn parse_head(buf: &[u8], pos: usize, end: HeaderEnd) -> Result<Option<Message>, ParseError> {
    // One UTF-8 check for the whole block; from here on the parser slices
    // `&str`s at ASCII delimiters.
    let head = std::str::from_utf8(&buf[..end.headers]).map_err(|_| NOT_UTF8)?;
    let mut lines = Lines::new(head, pos);
    let first = lines.next().ok_or(ParseError::new("empty message"))?;
    if first.folded {
        return Ok(None);
    }
    let (start, version) = parse_start_line(first.text, first.start)?;

    let mut headers = Vec::with_capacity(24);
    let mut seen = 0u8;
    let (mut call_id, mut from, mut to) = (0u16, 0u16, 0u16);
    let mut cseq = None;
    let mut content_length: Option<u32> = None;
    for line in lines {
        if line.folded {
            return Ok(None);
        }
        let (name, value, value_at) = split_header_line(line.text)?;
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
            HeaderName::From => {
                once(&mut seen, MANDATORY_FROM, "From")?;
                NameAddr::parse(value, "From")?;
                from = idx;
            }
            HeaderName::To => {
                once(&mut seen, MANDATORY_TO, "To")?;
                NameAddr::parse(value, "To")?;
                to = idx;
            }
            HeaderName::CallId => {
                once(&mut seen, MANDATORY_CALL_ID, "Call-ID")?;
                if value.is_empty() || value.bytes().any(|c| c <= b' ' || c == 0x7f) {
                    return Err(ParseError::in_header("malformed Call-ID", "Call-ID"));
                }
                call_id = idx;
            }
            HeaderName::CSeq => {
                once(&mut seen, MANDATORY_CSEQ, "CSeq")?;
                cseq = Some(parse_cseq(value)?);
            }
            HeaderName::MaxForwards => {
                once(&mut seen, MANDATORY_MAX_FORWARDS, "Max-Forwards")?;
                parse_u32(value)
                    .filter(|&v| v <= 255)
                    .ok_or(ParseError::in_header(
                        "malformed Max-Forwards",
                        "Max-Forwards",
                    ))?;
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
            // What routing and registration rely on is checked up front.
            // Record-Route is only forwarded by a proxy: it is checked
            // when read (`record_routes`).
            HeaderName::Contact | HeaderName::Route => {
                let hname = if kind == HeaderName::Contact {
                    "Contact"
                } else {
                    "Route"
                };
                for v in split_list(value) {
                    NameAddr::parse(v, hname)?;
                }
            }
            _ => {}
        }
        let vs = line.start + value_at;
        let spans = HeaderSpan::new(line.start, line.start + name.len())
            .zip(HeaderSpan::new(vs, vs + value.len()));
        // Cannot happen (the message is at most 64 KiB), but an answer is
        // cheaper than a wrong index.
        let (name, value) = spans.ok_or(ParseError::new("header beyond 64 KiB"))?;
        headers.push(HeaderEntry { kind, name, value });
    }

    let is_request = matches!(start, StartLine::Request { .. });
    let required = if is_request { 0x3f } else { 0x1f };
    if seen & required != required {
        let missing = [
            (MANDATORY_VIA, "Via"),
            (MANDATORY_FROM, "From"),
            (MANDATORY_TO, "To"),
            (MANDATORY_CALL_ID, "Call-ID"),
            (MANDATORY_CSEQ, "CSeq"),
            (MANDATORY_MAX_FORWARDS, "Max-Forwards"),
        ]
        .into_iter()
        .find(|&(bit, _)| required & bit != 0 && seen & bit == 0)
        .map_or("Via", |(_, name)| name);
        return Err(ParseError::in_header("missing mandatory header", missing));
    }
    let cseq = cseq.ok_or(ParseError::in_header("missing mandatory header", "CSeq"))?;
    if let StartLine::Request { method, .. } = &start {
        if *method != cseq.method {
            return Err(ParseError::in_header(
                "CSeq method does not match the request",
                "CSeq",
            ));
        }
    }

    let body_start = end.body;
    let available = buf.len() - body_start;
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
    Ok(Some(Message {
        buf: Bytes::new(),
        start,
        start_line: Span::new(first.start, first.end),
        version,
        headers,
        headers_end: end.headers as u32,
        body: Span::new(body_start, body_start + body_len),
        cseq,
        call_id,
        from,
        to,
    }))
}

/// Splits `name SWS ":" SWS value SWS` (§7.3.1): returns the name, the
/// value without surrounding white space, and where the value starts in
/// the line.
#[inline]
fn split_header_line(line: &str) -> Result<(&str, &str, usize), ParseError> {
    let lb = line.as_bytes();
    let name_end = lb
        .iter()
        .position(|&c| !is_token_byte(c))
        .unwrap_or(lb.len());
    let mut i = name_end;
    while i < lb.len() && matches!(lb[i], b' ' | b'\t') {
        i += 1;
    }
    if i == lb.len() || lb[i] != b':' || name_end == 0 {
        return Err(if memchr(b':', lb).is_some() {
            ParseError::new("malformed header name")
        } else {
            ParseError::new("header line without colon")
        });
    }
    i += 1;
    while i < lb.len() && is_lws_byte(lb[i]) {
        i += 1;
    }
    let mut end = lb.len();
    while end > i && is_lws_byte(lb[end - 1]) {
        end -= 1;
    }
    Ok((&line[..name_end], &line[i..end], i))
}

/// Parses the start line `line`, which starts at offset `at` of the
/// message: returns it and the span of its SIP-Version.
fn parse_start_line(line: &str, at: usize) -> Result<(StartLine, Span), ParseError> {
    let lb = line.as_bytes();
    let le = at + lb.len();
    if lb.len() >= 4 && lb[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        const BAD_CODE: ParseError = ParseError::new("malformed status code");
        let sp = memchr(b' ', lb).ok_or(ParseError::new("malformed status line"))?;
        if !valid_version(&line[..sp]) {
            return Err(ParseError::new("malformed SIP version"));
        }
        let code = lb.get(sp + 1..sp + 4).ok_or(BAD_CODE)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(BAD_CODE);
        }
        let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return Err(BAD_CODE);
        }
        // The SP before an empty reason phrase is often left out.
        let reason = match lb.get(sp + 4) {
            None => le,
            Some(b' ') => at + sp + 5,
            Some(_) => return Err(BAD_CODE),
        };
        let start = StartLine::Response {
            status,
            reason: Span::new(reason, le),
        };
        Ok((start, Span::new(at, at + sp)))
    } else {
        // Request-Line = Method SP Request-URI SP SIP-Version; exactly
        // single spaces (RFC 4475 §3.1.2.9 and §3.1.2.10: extra SP
        // there is an error).
        const BAD_LINE: ParseError = ParseError::new("malformed request line");
        let sp1 = memchr(b' ', lb).ok_or(BAD_LINE)?;
        let sp2 = memchr::memrchr(b' ', lb).ok_or(BAD_LINE)?;
        if sp1 == sp2 || sp2 == sp1 + 1 || memchr(b' ', &lb[sp1 + 1..sp2]).is_some() {
            return Err(BAD_LINE);
        }
        let (method_s, uri_s, ver_s) = (&line[..sp1], &line[sp1 + 1..sp2], &line[sp2 + 1..]);
        if !is_token(method_s) {
            return Err(ParseError::new("malformed method"));
        }
        // Rejects LWS (lwsruri, lwsstart), `<…>` (ltgtruri) and headers
        // (escruri) in the Request-URI.
        Uri::parse_request_uri(uri_s).map_err(|_| ParseError::new("malformed Request-URI"))?;
        if !valid_version(ver_s) {
            return Err(ParseError::new("malformed SIP version"));
        }
        let start = StartLine::Request {
            method: Method::from_token(method_s),
            uri: Span::new(at + sp1 + 1, at + sp2),
        };
        Ok((start, Span::new(at + sp2 + 1, le)))
    }
}

/// SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT, "SIP" in any case.
fn valid_version(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 7 || !b[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    match v[4..].split_once('.') {
        Some((major, minor)) => {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|c| c.is_ascii_digit())
                && minor.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// CSeq = 1*DIGIT LWS Method, the number below 2**31 (§8.1.1.5).
fn parse_cseq(value: &str) -> Result<CSeq, ParseError> {
    const BAD: ParseError = ParseError::in_header("malformed CSeq", "CSeq");
    let sp = memchr::memchr2(b' ', b'\t', value.as_bytes()).ok_or(BAD)?;
    let seq = parse_u32(&value[..sp])
        .filter(|&s| s < (1 << 31))
        .ok_or(BAD)?;
    let method = trim_lws(&value[sp..]);
    if !is_token(method) {
        return Err(BAD);
    }
    Ok(CSeq {
        seq,
        method: Method::from_token(method),
    })
}

/// Marks a header that may appear only once as seen.
fn once(seen: &mut u8, bit: u8, name: &'static str) -> Result<(), ParseError> {
    if *seen & bit != 0 {
        return Err(ParseError::in_header("header appears twice", name));
    }
    *seen |= bit;
    Ok(())
}

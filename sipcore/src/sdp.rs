//! SDP view and line-based rewriter for media anchoring (RFC 4566, RFC 3264).
//!
//! Tandem anchors RTP: every SDP that crosses it gets the relay's address and
//! ports instead of the peer's. That touches a handful of fields (`c=`, the
//! `m=` port, `a=rtcp:`, `o=` version, sometimes the direction attribute) and
//! nothing else.
//!
//! Why line-based and byte for byte, instead of parsing into a model and
//! printing it again: a print of a model contains only what the model knows.
//! General SDP crates drop or reorder what they do not understand (the
//! `a=T38…` attributes of a fax re-INVITE, `m=image … udptl t38`, vendor
//! attributes, odd spacing, attribute order), and endpoints fail in subtle
//! ways when their SDP comes back altered — a fax that trains but never
//! transmits is the classic. So [`Sdp::parse`] only *locates* the fields we
//! read or change (every location is a byte range into the input; nothing is
//! copied), and [`Sdp::rewrite`] copies the input through, splicing new text
//! into exactly those ranges. Each line keeps its own line ending; lines we
//! insert use the ending of the first line ([`Sdp::line_ending`]).
//!
//! Determinism matters too: the same input and the same [`Rewrite`] give the
//! same output, and the default version policy maps sess-version `n` to
//! `n + 1`. An unchanged SDP in a re-INVITE (same version, RFC 3264 §8)
//! therefore stays unchanged, version included, on the other leg.
//!
//! The parser validates every field it interprets and reports a
//! [`ParseError`] naming the line; lines it does not interpret may contain
//! any bytes (e.g. a non-UTF-8 `s=` line). It never panics on any input.

use std::io::Write as _;
use std::net::IpAddr;

use crate::ParseError;

#[cfg(test)]
mod tests;

/// The line terminator used by an SDP body.
///
/// RFC 4566 says CRLF, but bare LF is common (and allowed by §5 for
/// receivers), so both are accepted and each line keeps its own on output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    CrLf,
    Lf,
}

impl LineEnding {
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
        }
    }
}

/// Address type of an `o=`, `c=` or `a=rtcp` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrType {
    Ip4,
    Ip6,
}

impl AddrType {
    /// The address type an IP address is written with.
    pub const fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
        }
    }

    fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"IP4" => Some(AddrType::Ip4),
            b"IP6" => Some(AddrType::Ip6),
            _ => None,
        }
    }
}

/// Media direction attribute (RFC 3264 §5.1). Absent means `sendrecv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The attribute name, as written after `a=`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parse an attribute name (`sendonly`, …); `None` for other attributes.
    pub fn from_attribute(name: &[u8]) -> Option<Self> {
        match name {
            b"sendrecv" => Some(Direction::SendRecv),
            b"sendonly" => Some(Direction::SendOnly),
            b"recvonly" => Some(Direction::RecvOnly),
            b"inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction seen from the other side: what an answerer puts in
    /// its answer to an offer with this direction (RFC 3264 §6.1), e.g. a
    /// `sendonly` hold offer is answered `recvonly`.
    pub const fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// Whether this direction, in an offer, means "I put you on hold"
    /// (RFC 3264 §8.4: `sendonly`, or `inactive` when already held).
    pub const fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// Media type of an `m=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind<'a> {
    Audio,
    Video,
    Text,
    Application,
    Message,
    /// `m=image`, used by T.38 fax (`m=image 4000 udptl t38`).
    Image,
    Other(&'a str),
}

impl<'a> MediaKind<'a> {
    fn parse(s: &'a str) -> Self {
        match s {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            "text" => MediaKind::Text,
            "application" => MediaKind::Application,
            "message" => MediaKind::Message,
            "image" => MediaKind::Image,
            other => MediaKind::Other(other),
        }
    }

    pub const fn as_str(&self) -> &'a str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Text => "text",
            MediaKind::Application => "application",
            MediaKind::Message => "message",
            MediaKind::Image => "image",
            MediaKind::Other(s) => s,
        }
    }
}

/// Fields of the `o=` line.
///
/// `sess_id` and `sess_version` are kept as the digit strings they are on
/// the wire: the grammar (`1*DIGIT`) sets no upper bound, and the rewriter
/// increments the version as a decimal string so that no value, not even
/// `u64::MAX`, can overflow or make the version go backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub username: &'a str,
    pub sess_id: &'a str,
    /// Decimal digits, validated.
    pub sess_version: &'a str,
    pub nettype: &'a str,
    pub addrtype: AddrType,
    /// Unicast address or FQDN, as written.
    pub address: &'a str,
}

impl Origin<'_> {
    /// The sess-version as a number, `None` if it does not fit in a `u64`.
    pub fn sess_version_u64(&self) -> Option<u64> {
        parse_digits(self.sess_version.as_bytes())
    }
}

/// An `a=rtcp:` attribute (RFC 3605): the RTCP port and optional address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp {
    pub port: u16,
    /// Absent when RTCP goes to the stream's connection address.
    pub address: Option<IpAddr>,
}

/// An `a=rtpmap:` attribute, or a static payload type of RFC 3551.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMap<'a> {
    pub payload_type: u8,
    pub encoding: &'a str,
    pub clock_rate: u32,
    /// Encoding parameters: the channel count for audio; `None` means 1.
    pub channels: Option<u16>,
}

impl RtpMap<'static> {
    /// The static payload types of RFC 3551 table 4/5. Static types may be
    /// offered without an `a=rtpmap` line (`m=audio 4000 RTP/AVP 0 8`), so
    /// whoever needs the codec name of a stream must fall back to this.
    pub const fn static_payload(pt: u8) -> Option<RtpMap<'static>> {
        let (encoding, clock_rate, channels) = match pt {
            0 => ("PCMU", 8000, None),
            3 => ("GSM", 8000, None),
            4 => ("G723", 8000, None),
            5 => ("DVI4", 8000, None),
            6 => ("DVI4", 16000, None),
            7 => ("LPC", 8000, None),
            8 => ("PCMA", 8000, None),
            9 => ("G722", 8000, None),
            10 => ("L16", 44100, Some(2)),
            11 => ("L16", 44100, None),
            12 => ("QCELP", 8000, None),
            13 => ("CN", 8000, None),
            14 => ("MPA", 90000, None),
            15 => ("G728", 8000, None),
            16 => ("DVI4", 11025, None),
            17 => ("DVI4", 22050, None),
            18 => ("G729", 8000, None),
            25 => ("CelB", 90000, None),
            26 => ("JPEG", 90000, None),
            28 => ("nv", 90000, None),
            31 => ("H261", 90000, None),
            32 => ("MPV", 90000, None),
            33 => ("MP2T", 90000, None),
            34 => ("H263", 90000, None),
            _ => return None,
        };
        Some(RtpMap {
            payload_type: pt,
            encoding,
            clock_rate,
            channels,
        })
    }
}

/// The codec in use on a stream: the first format of an answer
/// (RFC 3264 §6.1), with its rtpmap and the stream's ptime. Call survival
/// offers exactly this to a new media server so that leg A needs no
/// re-INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec<'a> {
    /// The format token: a payload type for RTP, `t38` for udptl.
    pub format: &'a str,
    /// Explicit `a=rtpmap`, else the static payload type; `None` for
    /// non-RTP formats and unknown dynamic types.
    pub rtpmap: Option<RtpMap<'a>>,
    /// `a=ptime` in milliseconds.
    pub ptime: Option<u32>,
}

/// One media description: an `m=` line and the lines up to the next one.
#[derive(Debug, Clone)]
pub struct Media<'a> {
    index: usize,
    kind: MediaKind<'a>,
    port: u16,
    port_count: Option<u16>,
    proto: &'a str,
    formats: &'a str,
    own_connection: Option<IpAddr>,
    connection: Option<IpAddr>,
    rtcp: Option<Rtcp>,
    rtcp_mux: bool,
    own_direction: Option<Direction>,
    direction: Direction,
    ptime: Option<u32>,
    section: &'a [u8],
}

impl<'a> Media<'a> {
    /// Position among the `m=` lines, from 0 (the index [`Rewrite::streams`]
    /// and RFC 3264 use).
    pub fn index(&self) -> usize {
        self.index
    }
    pub fn kind(&self) -> MediaKind<'a> {
        self.kind
    }
    /// Port of the `m=` line; 0 means the stream is rejected or disabled.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The `/2` of `m=audio 49170/2 RTP/AVP 0`.
    pub fn port_count(&self) -> Option<u16> {
        self.port_count
    }
    /// Transport protocol: `RTP/AVP`, `RTP/SAVP`, `udptl`, …
    pub fn proto(&self) -> &'a str {
        self.proto
    }
    /// The format list of the `m=` line (payload types for RTP).
    pub fn formats(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.formats.split_ascii_whitespace()
    }
    /// Whether the stream is rejected or disabled (port 0, RFC 3264 §6).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }
    /// Effective connection address: the media-level `c=`, else the
    /// session-level one.
    pub fn connection(&self) -> Option<IpAddr> {
        self.connection
    }
    /// The media-level `c=` only.
    pub fn own_connection(&self) -> Option<IpAddr> {
        self.own_connection
    }
    /// The first `a=rtcp:` attribute.
    pub fn rtcp(&self) -> Option<Rtcp> {
        self.rtcp
    }
    /// `a=rtcp-mux` present (RFC 5761): RTCP shares the RTP port.
    pub fn rtcp_mux(&self) -> bool {
        self.rtcp_mux
    }
    /// Effective direction: media level overrides session level; default
    /// `sendrecv`.
    pub fn direction(&self) -> Direction {
        self.direction
    }
    /// The media-level direction attribute only.
    pub fn own_direction(&self) -> Option<Direction> {
        self.own_direction
    }
    /// `a=ptime` in milliseconds (a fractional value is truncated).
    pub fn ptime(&self) -> Option<u32> {
        self.ptime
    }

    /// Whether the peer put this stream on hold: direction `sendonly` or
    /// `inactive`, or the legacy RFC 2543 form, connection address
    /// `0.0.0.0` (`::` is treated alike).
    pub fn is_on_hold(&self) -> bool {
        self.direction.is_hold() || self.connection.is_some_and(|ip| ip.is_unspecified())
    }

    /// The `a=rtpmap` attributes of this stream, in order. Parsed on each
    /// call (they were validated by [`Sdp::parse`]); nothing is allocated.
    pub fn rtpmaps(&self) -> impl Iterator<Item = RtpMap<'a>> + 'a {
        self.attributes().filter_map(|(name, value)| {
            if name != b"rtpmap" {
                return None;
            }
            let value = std::str::from_utf8(value?).ok()?;
            parse_rtpmap(value).ok()
        })
    }

    /// The mapping of payload type `pt`: its `a=rtpmap`, else the static
    /// type of RFC 3551.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap<'a>> {
        self.rtpmaps()
            .find(|m| m.payload_type == pt)
            .or_else(|| RtpMap::static_payload(pt))
    }

    /// The codec of this stream as negotiated when this SDP is an answer:
    /// its first format. `None` when the format list is empty.
    pub fn codec(&self) -> Option<Codec<'a>> {
        let format = self.formats().next()?;
        let rtpmap = parse_digits(format.as_bytes())
            .and_then(|pt| u8::try_from(pt).ok())
            .filter(|pt| *pt <= 127)
            .and_then(|pt| self.rtpmap(pt));
        Some(Codec {
            format,
            rtpmap,
            ptime: self.ptime,
        })
    }

    /// All `a=` attributes of this stream as `(name, value)` byte slices,
    /// `value` being what follows the first `:`, if any. Bytes, because
    /// attributes we do not interpret need not be UTF-8.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        Lines::new(self.section).filter_map(|line| {
            let c = line.content;
            let v = c.strip_prefix(b"a=")?;
            Some(match memchr::memchr(b':', v) {
                Some(i) => (&v[..i], Some(&v[i + 1..])),
                None => (v, None),
            })
        })
    }

    /// The bytes of this media description, from `m=` to the end of its
    /// last line.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.section
    }
}

/// Zero-copy, validated view of an SDP body.
///
/// Build it with [`Sdp::parse`]; read it through the accessors; produce a
/// changed copy with [`Sdp::rewrite`].
#[derive(Debug, Clone)]
pub struct Sdp<'a> {
    buf: &'a [u8],
    line_ending: LineEnding,
    origin: Origin<'a>,
    connection: Option<IpAddr>,
    direction: Option<Direction>,
    media: Vec<Media<'a>>,
    /// Every place the rewriter may splice into, in document order.
    edits: Vec<Edit>,
}

/// Changes to one media stream, see [`Rewrite::streams`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamChange {
    /// New connection address of this stream; overrides
    /// [`Rewrite::connection`]. When the stream has no media-level `c=` and
    /// the address differs from the (new) session-level one, a media-level
    /// `c=` line is inserted after the `m=` line (and its `i=` lines).
    pub address: Option<IpAddr>,
    /// New `m=` port; a `/count` suffix is kept. Without it the port is
    /// kept, so a rejected stream (port 0) stays rejected.
    pub port: Option<u16>,
    /// New `a=rtcp:` port (only written if the stream has `a=rtcp:`; none
    /// is added). When `None` and `port` changes, the `a=rtcp:` port
    /// follows it: equal to the new port if it equalled the old one
    /// (rtcp-mux style), else new port + 1 (RFC 3550 §11). Leaving the
    /// peer's RTCP port next to the relay's address would be wrong either
    /// way.
    pub rtcp_port: Option<u16>,
    /// Set the media-level direction: the first direction attribute of the
    /// stream is replaced, further ones are removed, and if there is none
    /// `a=<direction>` is appended to the stream's lines.
    pub direction: Option<Direction>,
}

/// What happens to the `o=` sess-version on rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VersionChange {
    /// Increase by one (decimal, never overflows). Deterministic, so an
    /// unchanged SDP keeps an unchanged version across the B2BUA.
    #[default]
    Bump,
    /// Keep as is.
    Keep,
    /// Write this value, for a leg whose version counter the caller owns.
    Set(u64),
}

/// A set of changes for [`Sdp::rewrite`]. `Default` changes nothing but
/// the version.
///
/// Addresses: for each stream the new address is, in this order,
/// [`StreamChange::address`], else [`Rewrite::connection`] unless the
/// stream's current address is `0.0.0.0`/`::` (legacy hold: replacing it
/// would silently take the call off hold), else unchanged. A session-level
/// `c=` becomes `connection` (unless it is `0.0.0.0`/`::`); media-level
/// `c=` lines become their stream's address, and so does the address of
/// `a=rtcp:` when the stream's address changes. The address type follows
/// the address (`IP4`/`IP6`); a multicast `/ttl` suffix is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rewrite<'c> {
    /// New address for every `c=` line (session and media level).
    pub connection: Option<IpAddr>,
    /// New `o=` address (and address type).
    pub origin_address: Option<IpAddr>,
    pub version: VersionChange,
    /// Per-stream changes, indexed like [`Sdp::media`]; streams beyond the
    /// slice are unchanged, entries beyond the streams are ignored.
    pub streams: &'c [StreamChange],
}

#[derive(Debug, Clone, Copy)]
struct Edit {
    /// Byte range replaced (empty for insertions).
    start: usize,
    end: usize,
    kind: EditKind,
}

#[derive(Debug, Clone, Copy)]
enum EditKind {
    OriginVersion,
    /// `addrtype SP address` of `o=`.
    OriginAddr,
    /// `addrtype SP address` of a session-level `c=`.
    SessionConn(IpAddr),
    MediaPort(usize),
    /// `addrtype SP address` of a media-level `c=`.
    MediaConn(usize, IpAddr),
    /// Where a media-level `c=` would go.
    ConnInsert {
        media: usize,
        eol_before: bool,
    },
    RtcpPort {
        media: usize,
        port: u16,
    },
    RtcpAddr(usize, IpAddr),
    /// The attribute name of a media-level direction attribute; the whole
    /// line (with its ending) is `line_start..line_end`.
    Direction {
        media: usize,
        line_start: usize,
        line_end: usize,
    },
    /// End of a media description (after its last non-empty line).
    MediaEnd {
        media: usize,
        eol_before: bool,
    },
}

impl<'a> Sdp<'a> {
    /// Parse and validate an SDP body.
    ///
    /// Checks: `v=0` first, exactly one `o=` before the first `m=`, and the
    /// syntax of every `o=`, `c=`, `m=`, and media-level `a=rtcp`,
    /// `a=rtpmap`, `a=ptime` line. Blank lines and trailing spaces are
    /// tolerated. Other lines only need to look like `x=…`.
    pub fn parse(buf: &'a [u8]) -> Result<Sdp<'a>, ParseError> {
        let mut line_ending = None;
        let mut seen_v = false;
        let mut origin = None;
        let mut connection = None;
        let mut direction = None;
        let mut media: Vec<Media<'a>> = Vec::new();
        let mut edits = Vec::with_capacity(16);
        // State of the current media description.
        let mut m_start = 0;
        let mut conn_insert_done = false;
        // End (after the terminator) of the last non-empty line.
        let mut last_end = 0;
        let mut last_had_eol = true;

        for line in Lines::new(buf) {
            if line_ending.is_none() {
                line_ending = line.ending;
            }
            let c = line.content;
            if c.is_empty() {
                continue;
            }
            if !seen_v {
                if !c.starts_with(b"v=") {
                    return Err(ParseError::new("SDP does not start with v="));
                }
                if &c[2..] != b"0" {
                    return Err(ParseError::new("SDP v= is not 0"));
                }
                seen_v = true;
                last_end = line.end;
                last_had_eol = line.ending.is_some();
                continue;
            }
            if c.len() < 2 || c[1] != b'=' {
                return Err(ParseError::new("SDP line is not of the form x=value"));
            }
            let start = line.start;
            let in_media = !media.is_empty();
            if c[0] == b'm' {
                if let Some(m) = media.last_mut() {
                    finish_media(
                        m,
                        buf,
                        m_start,
                        last_end,
                        last_had_eol,
                        conn_insert_done,
                        &mut edits,
                    );
                }
                let m = parse_m(buf, start, c, media.len(), &mut edits)?;
                media.push(m);
                m_start = start;
                conn_insert_done = false;
            } else {
                if in_media && !conn_insert_done && c[0] != b'i' {
                    edits.push(Edit {
                        start,
                        end: start,
                        kind: EditKind::ConnInsert {
                            media: media.len() - 1,
                            eol_before: false,
                        },
                    });
                    conn_insert_done = true;
                }
                match c[0] {
                    b'o' => {
                        if in_media {
                            return Err(ParseError::new(
                                "SDP o= line is inside a media description",
                            ));
                        }
                        if origin.is_some() {
                            return Err(ParseError::new("SDP has more than one o= line"));
                        }
                        origin = Some(parse_o(start, c, &mut edits)?);
                    }
                    b'c' => {
                        let (ip, range) = parse_conn(start + 2, &c[2..], &C_ERRORS)?;
                        if let Some(m) = media.last_mut() {
                            m.own_connection.get_or_insert(ip);
                            edits.push(Edit {
                                start: range.0,
                                end: range.1,
                                kind: EditKind::MediaConn(m.index, ip),
                            });
                        } else {
                            connection.get_or_insert(ip);
                            edits.push(Edit {
                                start: range.0,
                                end: range.1,
                                kind: EditKind::SessionConn(ip),
                            });
                        }
                    }
                    b'a' => parse_a(line, media.last_mut(), &mut direction, &mut edits)?,
                    _ => {}
                }
            }
            last_end = line.end;
            last_had_eol = line.ending.is_some();
        }
        if !seen_v {
            return Err(ParseError::new("SDP does not start with v="));
        }
        let origin = origin.ok_or(ParseError::new("SDP has no o= line"))?;
        if let Some(m) = media.last_mut() {
            finish_media(
                m,
                buf,
                m_start,
                last_end,
                last_had_eol,
                conn_insert_done,
                &mut edits,
            );
        }
        for m in &mut media {
            m.connection = m.own_connection.or(connection);
            m.direction = m.own_direction.or(direction).unwrap_or_default();
        }
        Ok(Sdp {
            buf,
            line_ending: line_ending.unwrap_or(LineEnding::CrLf),
            origin,
            connection,
            direction,
            media,
            edits,
        })
    }

    /// The body this view was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// Ending of the first line; used for lines the rewriter inserts.
    pub fn line_ending(&self) -> LineEnding {
        self.line_ending
    }
    pub fn origin(&self) -> &Origin<'a> {
        &self.origin
    }
    /// The session-level `c=` address (the first, if several).
    pub fn connection(&self) -> Option<IpAddr> {
        self.connection
    }
    /// The session-level direction attribute.
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }
    /// The media descriptions, in `m=` order.
    pub fn media(&self) -> &[Media<'a>] {
        &self.media
    }

    /// New SDP bytes with the changes of `rw` applied; every byte not
    /// named by `rw` is copied unchanged.
    pub fn rewrite(&self, rw: &Rewrite<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 64);
        self.rewrite_into(rw, &mut out);
        out
    }

    /// Like [`Sdp::rewrite`], appending to `out` (to reuse a buffer).
    pub fn rewrite_into(&self, rw: &Rewrite<'_>, out: &mut Vec<u8>) {
        let buf = self.buf;
        let eol = self.line_ending.as_bytes();
        out.reserve(buf.len() + 64);
        let new_session = match (self.connection, rw.connection) {
            (Some(cur), Some(new)) if !cur.is_unspecified() => Some(new),
            (cur, _) => cur,
        };
        let mut pos = 0;
        // The media whose direction attribute has been written already.
        let mut dir_written: Option<usize> = None;
        for e in &self.edits {
            match e.kind {
                EditKind::OriginVersion => {
                    let digits = &buf[e.start..e.end];
                    match rw.version {
                        VersionChange::Keep => {}
                        VersionChange::Bump => {
                            splice(out, buf, &mut pos, e);
                            bump_decimal(out, digits);
                        }
                        VersionChange::Set(v) => {
                            splice(out, buf, &mut pos, e);
                            let _ = write!(out, "{v}");
                        }
                    }
                }
                EditKind::OriginAddr => {
                    if let Some(ip) = rw.origin_address {
                        splice(out, buf, &mut pos, e);
                        write_addr(out, ip);
                    }
                }
                EditKind::SessionConn(cur) => {
                    let new = rw
                        .connection
                        .filter(|ip| *ip != cur && !cur.is_unspecified());
                    if let Some(ip) = new {
                        splice(out, buf, &mut pos, e);
                        write_addr(out, ip);
                    }
                }
                EditKind::MediaPort(i) => {
                    let cur = self.media[i].port;
                    if let Some(p) = change(rw, i).port.filter(|p| *p != cur) {
                        splice(out, buf, &mut pos, e);
                        let _ = write!(out, "{p}");
                    }
                }
                EditKind::MediaConn(i, cur) => {
                    let target = self.target(rw, i);
                    if target != self.media[i].connection {
                        if let Some(ip) = target.filter(|ip| *ip != cur) {
                            splice(out, buf, &mut pos, e);
                            write_addr(out, ip);
                        }
                    }
                }
                EditKind::ConnInsert { media, eol_before } => {
                    let m = &self.media[media];
                    if m.own_connection.is_some() {
                        continue;
                    }
                    if let Some(ip) = self.target(rw, media).filter(|ip| Some(*ip) != new_session) {
                        splice(out, buf, &mut pos, e);
                        if eol_before {
                            out.extend_from_slice(eol);
                        }
                        out.extend_from_slice(b"c=IN ");
                        write_addr(out, ip);
                        if !eol_before {
                            out.extend_from_slice(eol);
                        }
                    }
                }
                EditKind::RtcpPort { media, port } => {
                    let ch = change(rw, media);
                    let old_rtp = self.media[media].port;
                    let new = ch.rtcp_port.or_else(|| match ch.port {
                        Some(p) if p != old_rtp && p != 0 => {
                            if port == old_rtp {
                                Some(p)
                            } else {
                                p.checked_add(1)
                            }
                        }
                        _ => None,
                    });
                    if let Some(p) = new.filter(|p| *p != port) {
                        splice(out, buf, &mut pos, e);
                        let _ = write!(out, "{p}");
                    }
                }
                EditKind::RtcpAddr(i, cur) => {
                    let target = self.target(rw, i);
                    if target != self.media[i].connection {
                        if let Some(ip) = target.filter(|ip| *ip != cur) {
                            splice(out, buf, &mut pos, e);
                            write_addr(out, ip);
                        }
                    }
                }
                EditKind::Direction {
                    media,
                    line_start,
                    line_end,
                } => {
                    if let Some(d) = change(rw, media).direction {
                        if dir_written == Some(media) {
                            // A second direction attribute: drop the line.
                            out.extend_from_slice(&buf[pos..line_start]);
                            pos = line_end;
                        } else {
                            splice(out, buf, &mut pos, e);
                            out.extend_from_slice(d.as_str().as_bytes());
                            dir_written = Some(media);
                        }
                    }
                }
                EditKind::MediaEnd { media, eol_before } => {
                    if let Some(d) = change(rw, media).direction {
                        if dir_written != Some(media) {
                            splice(out, buf, &mut pos, e);
                            if eol_before {
                                out.extend_from_slice(eol);
                            }
                            out.extend_from_slice(b"a=");
                            out.extend_from_slice(d.as_str().as_bytes());
                            if !eol_before {
                                out.extend_from_slice(eol);
                            }
                            dir_written = Some(media);
                        }
                    }
                }
            }
        }
        out.extend_from_slice(&buf[pos..]);
    }

    /// Copy of this SDP with the direction of stream `media` set (replacing
    /// its direction attribute, or adding one) and the version bumped; for
    /// putting a leg on hold or taking it off. An out-of-range index changes
    /// only the version.
    pub fn set_direction(&self, media: usize, direction: Direction) -> Vec<u8> {
        let mut streams =
            vec![StreamChange::default(); media.saturating_add(1).min(self.media.len())];
        if let Some(s) = streams.get_mut(media) {
            s.direction = Some(direction);
        }
        self.rewrite(&Rewrite {
            streams: &streams,
            ..Rewrite::default()
        })
    }

    /// The address stream `i` ends up with (see [`Rewrite`]).
    fn target(&self, rw: &Rewrite<'_>, i: usize) -> Option<IpAddr> {
        if let Some(ip) = change(rw, i).address {
            return Some(ip);
        }
        match (self.media[i].connection, rw.connection) {
            (Some(cur), _) if cur.is_unspecified() => Some(cur),
            (_, Some(new)) => Some(new),
            (cur, None) => cur,
        }
    }
}

fn change(rw: &Rewrite<'_>, i: usize) -> StreamChange {
    rw.streams.get(i).copied().unwrap_or_default()
}

/// Copy the untouched bytes up to `e` and skip the bytes `e` replaces.
fn splice(out: &mut Vec<u8>, buf: &[u8], pos: &mut usize, e: &Edit) {
    out.extend_from_slice(&buf[*pos..e.start]);
    *pos = e.end;
}

fn write_addr(out: &mut Vec<u8>, ip: IpAddr) {
    out.extend_from_slice(AddrType::of(ip).as_str().as_bytes());
    out.push(b' ');
    let _ = write!(out, "{ip}");
}

/// Append `digits + 1`, computed on the decimal string.
fn bump_decimal(out: &mut Vec<u8>, digits: &[u8]) {
    let start = out.len();
    out.extend_from_slice(digits);
    for i in (start..out.len()).rev() {
        if out[i] == b'9' {
            out[i] = b'0';
        } else {
            out[i] += 1;
            return;
        }
    }
    out.insert(start, b'1');
}

fn finish_media<'a>(
    m: &mut Media<'a>,
    buf: &'a [u8],
    m_start: usize,
    last_end: usize,
    last_had_eol: bool,
    conn_insert_done: bool,
    edits: &mut Vec<Edit>,
) {
    m.section = &buf[m_start..last_end];
    if !conn_insert_done {
        edits.push(Edit {
            start: last_end,
            end: last_end,
            kind: EditKind::ConnInsert {
                media: m.index,
                eol_before: !last_had_eol,
            },
        });
    }
    edits.push(Edit {
        start: last_end,
        end: last_end,
        kind: EditKind::MediaEnd {
            media: m.index,
            eol_before: !last_had_eol,
        },
    });
}

#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// Offset of the line in the buffer.
    start: usize,
    /// The line without its ending and trailing blanks.
    content: &'a [u8],
    /// Offset after the line ending.
    end: usize,
    ending: Option<LineEnding>,
}

struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Lines { buf, pos: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;
    fn next(&mut self) -> Option<Line<'a>> {
        let start = self.pos;
        let rest = self.buf.get(start..).filter(|r| !r.is_empty())?;
        let (mut content, end, ending) = match memchr::memchr(b'\n', rest) {
            Some(i) => match rest[..i].strip_suffix(b"\r") {
                Some(c) => (c, start + i + 1, Some(LineEnding::CrLf)),
                None => (&rest[..i], start + i + 1, Some(LineEnding::Lf)),
            },
            None => (rest, self.buf.len(), None),
        };
        while let [head @ .., b' ' | b'\t' | b'\r'] = content {
            content = head;
        }
        self.pos = end;
        Some(Line {
            start,
            content,
            end,
            ending,
        })
    }
}

/// Blank-separated tokens of `s` as `(start, end)` offsets into `s`.
fn tokens(s: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < s.len() && matches!(s[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= s.len() {
            return None;
        }
        let start = i;
        while i < s.len() && !matches!(s[i], b' ' | b'\t') {
            i += 1;
        }
        Some((start, i))
    })
}

/// A non-empty string of ASCII digits as a number (no sign, unlike
/// `str::parse`); `None` on overflow.
fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn parse_u16(s: &[u8]) -> Option<u16> {
    parse_digits(s).and_then(|v| u16::try_from(v).ok())
}

fn utf8<'a>(s: &'a [u8], err: &'static str) -> Result<&'a str, ParseError> {
    std::str::from_utf8(s).map_err(|_| ParseError::new(err))
}

fn parse_o<'a>(
    start: usize,
    line: &'a [u8],
    edits: &mut Vec<Edit>,
) -> Result<Origin<'a>, ParseError> {
    let v = utf8(&line[2..], "SDP o= line is not UTF-8")?;
    let mut t = [(0, 0); 6];
    let mut n = 0;
    for tok in tokens(v.as_bytes()) {
        if n == 6 {
            n += 1;
            break;
        }
        t[n] = tok;
        n += 1;
    }
    if n != 6 {
        return Err(ParseError::new("SDP o= line does not have 6 fields"));
    }
    let f = |k: usize| &v[t[k].0..t[k].1];
    if !is_digits(f(2).as_bytes()) {
        return Err(ParseError::new("SDP o= sess-version is not a number"));
    }
    let addrtype = AddrType::parse(f(4).as_bytes())
        .ok_or(ParseError::new("SDP o= address type is not IP4 or IP6"))?;
    let base = start + 2;
    edits.push(Edit {
        start: base + t[2].0,
        end: base + t[2].1,
        kind: EditKind::OriginVersion,
    });
    edits.push(Edit {
        start: base + t[4].0,
        end: base + t[5].1,
        kind: EditKind::OriginAddr,
    });
    Ok(Origin {
        username: f(0),
        sess_id: f(1),
        sess_version: f(2),
        nettype: f(3),
        addrtype,
        address: f(5),
    })
}

/// Whether `s` is a non-empty string of ASCII digits, of any length.
fn is_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn parse_m<'a>(
    buf: &'a [u8],
    start: usize,
    line: &'a [u8],
    index: usize,
    edits: &mut Vec<Edit>,
) -> Result<Media<'a>, ParseError> {
    let v = utf8(&line[2..], "SDP m= line is not UTF-8")?;
    let mut toks = tokens(v.as_bytes());
    let (ks, ke) = toks
        .next()
        .ok_or(ParseError::new("SDP m= line has no media type"))?;
    let (ps, pe) = toks
        .next()
        .ok_or(ParseError::new("SDP m= line has no port"))?;
    let (rs, re) = toks
        .next()
        .ok_or(ParseError::new("SDP m= line has no transport protocol"))?;
    let formats = match toks.next() {
        Some((fs, _)) => &v[fs..],
        None => "",
    };
    let port_field = &v.as_bytes()[ps..pe];
    let (port_digits, port_count) = match memchr::memchr(b'/', port_field) {
        Some(i) => {
            let count = parse_u16(&port_field[i + 1..])
                .ok_or(ParseError::new("SDP m= port count is not a number"))?;
            (&port_field[..i], Some(count))
        }
        None => (port_field, None),
    };
    let port = parse_u16(port_digits).ok_or(ParseError::new("SDP m= port is not a number"))?;
    let base = start + 2;
    edits.push(Edit {
        start: base + ps,
        end: base + ps + port_digits.len(),
        kind: EditKind::MediaPort(index),
    });
    Ok(Media {
        index,
        kind: MediaKind::parse(&v[ks..ke]),
        port,
        port_count,
        proto: &v[rs..re],
        formats,
        own_connection: None,
        connection: None,
        rtcp: None,
        rtcp_mux: false,
        own_direction: None,
        direction: Direction::SendRecv,
        ptime: None,
        section: &buf[start..start],
    })
}

/// Error texts of [`parse_conn`] for one kind of line.
struct ConnErrors {
    fields: &'static str,
    nettype: &'static str,
    addrtype: &'static str,
    address: &'static str,
    mismatch: &'static str,
}

const C_ERRORS: ConnErrors = ConnErrors {
    fields: "SDP c= line does not have 3 fields",
    nettype: "SDP c= network type is not IN",
    addrtype: "SDP c= address type is not IP4 or IP6",
    address: "SDP c= address is not an IP address",
    mismatch: "SDP c= address does not match its address type",
};

const RTCP_ERRORS: ConnErrors = ConnErrors {
    fields: "SDP a=rtcp address does not have 3 fields",
    nettype: "SDP a=rtcp network type is not IN",
    addrtype: "SDP a=rtcp address type is not IP4 or IP6",
    address: "SDP a=rtcp address is not an IP address",
    mismatch: "SDP a=rtcp address does not match its address type",
};

/// Parse `IN IP4 addr[/ttl…]` at buffer offset `base`. Returns the address
/// and the buffer range of `addrtype SP address`, the part a rewrite
/// replaces.
///
/// Only IP literals are accepted, not FQDNs: the relay needs an address,
/// and resolving names in the media path is not something to do silently.
fn parse_conn(
    base: usize,
    v: &[u8],
    err: &ConnErrors,
) -> Result<(IpAddr, (usize, usize)), ParseError> {
    let mut t = [(0, 0); 3];
    let mut n = 0;
    for tok in tokens(v) {
        if n == 3 {
            return Err(ParseError::new(err.fields));
        }
        t[n] = tok;
        n += 1;
    }
    if n != 3 {
        return Err(ParseError::new(err.fields));
    }
    if &v[t[0].0..t[0].1] != b"IN" {
        return Err(ParseError::new(err.nettype));
    }
    let addrtype = AddrType::parse(&v[t[1].0..t[1].1]).ok_or(ParseError::new(err.addrtype))?;
    let addr = &v[t[2].0..t[2].1];
    let addr = match memchr::memchr(b'/', addr) {
        Some(i) => &addr[..i],
        None => addr,
    };
    let ip: IpAddr = std::str::from_utf8(addr)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ParseError::new(err.address))?;
    if AddrType::of(ip) != addrtype {
        return Err(ParseError::new(err.mismatch));
    }
    Ok((ip, (base + t[1].0, base + t[2].1)))
}

fn parse_a<'a>(
    line: Line<'a>,
    media: Option<&mut Media<'a>>,
    session_direction: &mut Option<Direction>,
    edits: &mut Vec<Edit>,
) -> Result<(), ParseError> {
    let c = line.content;
    let attr = &c[2..];
    let (name, value) = match memchr::memchr(b':', attr) {
        Some(i) => (&attr[..i], Some(&attr[i + 1..])),
        None => (attr, None),
    };
    let value_base = line.start + 2 + name.len() + 1;
    if let Some(d) = Direction::from_attribute(name) {
        match media {
            Some(m) => {
                m.own_direction.get_or_insert(d);
                edits.push(Edit {
                    start: line.start + 2,
                    end: line.start + 2 + name.len(),
                    kind: EditKind::Direction {
                        media: m.index,
                        line_start: line.start,
                        line_end: line.end,
                    },
                });
            }
            None => {
                session_direction.get_or_insert(d);
            }
        }
        return Ok(());
    }
    // The remaining attributes are media-level; at session level they are
    // passed through uninterpreted.
    let Some(m) = media else { return Ok(()) };
    match name {
        b"rtcp-mux" => m.rtcp_mux = true,
        b"rtcp" => {
            let v = value.unwrap_or_default();
            let mut toks = tokens(v);
            let (ps, pe) = toks
                .next()
                .ok_or(ParseError::new("SDP a=rtcp has no port"))?;
            let port =
                parse_u16(&v[ps..pe]).ok_or(ParseError::new("SDP a=rtcp port is not a number"))?;
            edits.push(Edit {
                start: value_base + ps,
                end: value_base + pe,
                kind: EditKind::RtcpPort {
                    media: m.index,
                    port,
                },
            });
            let address = match toks.next() {
                None => None,
                Some((s, _)) => {
                    let (ip, range) = parse_conn(value_base + s, &v[s..], &RTCP_ERRORS)?;
                    edits.push(Edit {
                        start: range.0,
                        end: range.1,
                        kind: EditKind::RtcpAddr(m.index, ip),
                    });
                    Some(ip)
                }
            };
            m.rtcp.get_or_insert(Rtcp { port, address });
        }
        b"rtpmap" => {
            let v = utf8(value.unwrap_or_default(), "SDP a=rtpmap is not UTF-8")?;
            parse_rtpmap(v)?;
        }
        b"ptime" => {
            let v = value.unwrap_or_default();
            let int = match memchr::memchr(b'.', v) {
                Some(i) if is_digits(&v[i + 1..]) => &v[..i],
                Some(_) => b"-",
                None => v,
            };
            let ms = parse_digits(int)
                .and_then(|ms| u32::try_from(ms).ok())
                .ok_or(ParseError::new("SDP a=ptime is not a number"))?;
            m.ptime.get_or_insert(ms);
        }
        _ => {}
    }
    Ok(())
}

/// `<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`
fn parse_rtpmap(v: &str) -> Result<RtpMap<'_>, ParseError> {
    let mut toks = tokens(v.as_bytes());
    let (ps, pe) = toks
        .next()
        .ok_or(ParseError::new("SDP a=rtpmap has no payload type"))?;
    let payload_type = parse_digits(&v.as_bytes()[ps..pe])
        .and_then(|pt| u8::try_from(pt).ok())
        .filter(|pt| *pt <= 127)
        .ok_or(ParseError::new(
            "SDP a=rtpmap payload type is not a number below 128",
        ))?;
    let (es, ee) = toks
        .next()
        .ok_or(ParseError::new("SDP a=rtpmap has no encoding"))?;
    let mut parts = v[es..ee].split('/');
    let encoding = parts.next().unwrap_or_default();
    if encoding.is_empty() {
        return Err(ParseError::new("SDP a=rtpmap has no encoding name"));
    }
    let clock_rate = parts
        .next()
        .and_then(|r| parse_digits(r.as_bytes()))
        .and_then(|r| u32::try_from(r).ok())
        .ok_or(ParseError::new("SDP a=rtpmap clock rate is not a number"))?;
    let channels = match parts.next() {
        None => None,
        Some(p) => Some(parse_u16(p.as_bytes()).ok_or(ParseError::new(
            "SDP a=rtpmap channel count is not a number",
        ))?),
    };
    if parts.next().is_some() {
        return Err(ParseError::new("SDP a=rtpmap has too many / fields"));
    }
    Ok(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        channels,
    })
}

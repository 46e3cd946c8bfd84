//! Small text helpers shared by the typed header views: character classes,
//! splitting list headers at top-level commas and looking up `;name=value`
//! parameters.
//!
//! Everything here works on bytes with `memchr` jumps to the next
//! interesting delimiter: these helpers run for every Via, From, To,
//! Contact and Route of every message.

use memchr::{memchr, memchr2, memchr3};

const TOKEN: u8 = 1;
const HOST: u8 = 2;
const LWS: u8 = 4;
/// Never part of a URI: controls, SP, DEL, `"`, `<`, `>`.
const URI_BAD: u8 = 8;
/// Delimiters of a SIP URI: `@`, `?`, `;`, `:`.
const URI_DELIM: u8 = 16;

/// Character classes of RFC 3261 §25.1 that the parser tests per byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() {
            t[c] |= TOKEN | HOST;
        }
        c += 1;
    }
    // token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
    let extra = b"-.!%*_+`'~";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] |= TOKEN;
        i += 1;
    }
    // hostname characters; '_' is not in RFC 1123 but common in the wild.
    t[b'-' as usize] |= HOST;
    t[b'.' as usize] |= HOST;
    t[b'_' as usize] |= HOST;
    let mut c = 0;
    while c <= 0x20 {
        t[c] |= URI_BAD;
        c += 1;
    }
    t[0x7f] |= URI_BAD;
    t[b'"' as usize] |= URI_BAD;
    t[b'<' as usize] |= URI_BAD;
    t[b'>' as usize] |= URI_BAD;
    t[b'@' as usize] |= URI_DELIM;
    t[b'?' as usize] |= URI_DELIM;
    t[b';' as usize] |= URI_DELIM;
    t[b':' as usize] |= URI_DELIM;
    t[b' ' as usize] |= LWS;
    t[b'\t' as usize] |= LWS;
    t[b'\r' as usize] |= LWS;
    t[b'\n' as usize] |= LWS;
    t
};

#[inline]
pub(crate) fn is_token_byte(b: u8) -> bool {
    CLASS[b as usize] & TOKEN != 0
}

#[inline]
pub(crate) fn is_lws_byte(b: u8) -> bool {
    CLASS[b as usize] & LWS != 0
}

/// `URI_BAD | URI_DELIM` bits of `b`: 0 for the common URI characters.
#[inline]
pub(crate) fn uri_class(b: u8) -> u8 {
    CLASS[b as usize] & (URI_BAD | URI_DELIM)
}

/// Whether a [`uri_class`] value means "not allowed in a URI".
#[inline]
pub(crate) fn is_uri_bad(class: u8) -> bool {
    class & URI_BAD != 0
}

/// `token` of RFC 3261 §25.1: non-empty, token characters only.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Splits a header value at commas that are not inside a quoted string or
/// `<...>` (RFC 3261 §7.3.1). Empty elements are skipped, elements are
/// trimmed of linear white space.
pub fn split_list(value: &str) -> ListIter<'_> {
    ListIter { rest: value }
}

pub struct ListIter<'a> {
    rest: &'a str,
}

/// Index of the first top-level `,` of `b`, or `b.len()`.
fn list_item_end(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(j) = memchr3(b',', b'"', b'<', &b[i..]) {
        i += j;
        match b[i] {
            b',' => return i,
            b'"' => i = quoted_end(b, i),
            // No quotes or commas are allowed unescaped inside <...>.
            _ => match memchr(b'>', &b[i..]) {
                Some(k) => i += k + 1,
                None => return b.len(),
            },
        }
    }
    b.len()
}

/// Given `b[open] == b'"'`, the index just past the closing quote, or
/// `b.len()` when the string is unterminated. Honours `\` quoted-pairs.
pub(crate) fn quoted_end(b: &[u8], open: usize) -> usize {
    quoted_close(b, open).unwrap_or(b.len())
}

/// Given `b[open] == b'"'`, the index just past the closing quote, `None`
/// when the quoted string is not terminated.
pub(crate) fn quoted_close(b: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < b.len() {
        i += memchr2(b'"', b'\\', &b[i..])?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
    None
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while !self.rest.is_empty() {
            let end = list_item_end(self.rest.as_bytes());
            let item = trim_lws(&self.rest[..end]);
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            if !item.is_empty() {
                return Some(item);
            }
        }
        None
    }
}

/// Trims spaces, tabs and line ends (unfolded LWS) from both ends.
#[inline]
pub fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let mut start = 0;
    while start < b.len() && is_lws_byte(b[start]) {
        start += 1;
    }
    let mut end = b.len();
    while end > start && is_lws_byte(b[end - 1]) {
        end -= 1;
    }
    // Both ends sit next to ASCII bytes (or the string's ends).
    &s[start..end]
}

/// Finds parameter `name` in a `;a=b;c;d=e` string (the leading `;` is
/// optional). Returns `Some("")` for a flag parameter without value.
/// Parameter names compare case-insensitively (RFC 3261 §7.3.1).
pub fn find_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params_iter(params)
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.unwrap_or(""))
}

/// Iterates `(name, value)` pairs of a `;a=b;c` parameter string. Names
/// and values are trimmed of LWS; quoted values are returned with their
/// quotes (a `;` inside quotes does not end the value).
pub fn params_iter(params: &str) -> ParamIter<'_> {
    ParamIter { s: params, i: 0 }
}

pub struct ParamIter<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.s.as_bytes();
        let mut i = self.i;
        while i < b.len() && (b[i] == b';' || is_lws_byte(b[i])) {
            i += 1;
        }
        if i >= b.len() {
            self.i = i;
            return None;
        }
        let name_start = i;
        while i < b.len() && !matches!(b[i], b'=' | b';') {
            i += 1;
        }
        let name = trim_lws(&self.s[name_start..i]);
        if i == b.len() || b[i] == b';' {
            self.i = i;
            return Some((name, None));
        }
        let value_start = skip_lws(b, i + 1);
        i = value_start;
        let end = loop {
            match b[i..].iter().position(|&c| c == b';' || c == b'"') {
                None => break b.len(),
                Some(j) if b[i + j] == b';' => break i + j,
                Some(j) => i = quoted_end(b, i + j),
            }
        };
        self.i = end;
        Some((name, Some(trim_lws(&self.s[value_start..end]))))
    }
}

/// Parses a decimal integer, accepting leading zeros (RFC 4475 §3.1.1.1)
/// and surrounding LWS, rejecting signs and overflow.
pub fn parse_u32(s: &str) -> Option<u32> {
    let s = trim_lws(s);
    if s.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(v)
}

/// The index of the first byte at or after `i` that is not LWS.
#[inline]
pub(crate) fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_lws_byte(b[i]) {
        i += 1;
    }
    i
}

/// The end of the token starting at `b[i]` (`i` when there is none).
#[inline]
pub(crate) fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_token_byte(b[i]) {
        i += 1;
    }
    i
}

/// The end of the host (hostname, IPv4 address or IPv6 reference in
/// brackets, RFC 3261 §25.1) that starts at `s[i]`, `None` when there is
/// no valid host there.
pub(crate) fn host_end(s: &str, i: usize) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(i) == Some(&b'[') {
        let close = i + b[i..].iter().position(|&c| c == b']')?;
        s[i + 1..close].parse::<std::net::Ipv6Addr>().ok()?;
        return Some(close + 1);
    }
    let mut j = i;
    while j < b.len() && CLASS[b[j] as usize] & HOST != 0 {
        j += 1;
    }
    (j > i).then_some(j)
}

/// The decimal port that starts at `b[i]` and where it ends.
pub(crate) fn port_at(b: &[u8], i: usize) -> Option<(u16, usize)> {
    let mut j = i;
    let mut port = 0u32;
    while j < b.len() && b[j].is_ascii_digit() {
        port = port * 10 + u32::from(b[j] - b'0');
        if port > u32::from(u16::MAX) {
            return None;
        }
        j += 1;
    }
    (j > i).then_some((port as u16, j))
}

/// The parameter string with any `tag` parameter removed, each kept
/// parameter printed as `;name[=value]`.
pub fn params_without_tag(params: &str) -> String {
    let mut out = String::with_capacity(params.len());
    for (k, v) in params_iter(params) {
        if k.eq_ignore_ascii_case("tag") {
            continue;
        }
        out.push(';');
        out.push_str(k);
        if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

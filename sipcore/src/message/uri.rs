//! SIP and SIPS URIs (RFC 3261 §19.1), as a borrowed view.

use memchr::memchr;

use super::values::{find_param, host_end, is_uri_bad, port_at, uri_class};
use crate::ParseError;

/// A URI split into its parts, borrowing from the message. Escaped
/// characters are kept escaped: a proxy compares and forwards them as
/// received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The whole URI text.
    pub raw: &'a str,
    pub scheme: &'a str,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    /// Host, with brackets for IPv6 references. Empty for non-SIP schemes.
    pub host: &'a str,
    pub port: Option<u16>,
    /// `;a=b;c` URI parameters, including the leading `;`, or empty.
    pub params: &'a str,
    /// `?h=v&...` headers, without the `?`, or empty.
    pub headers: &'a str,
}

const BAD: ParseError = ParseError::new("malformed URI");

impl<'a> Uri<'a> {
    /// Parses a URI. `sip:` and `sips:` are split into parts; any other
    /// syntactically valid scheme (`tel:`, `urn:`, …) is accepted with the
    /// rest as an opaque `user` so that a proxy can answer 416 for it
    /// instead of 400 (RFC 4475 §3.3.2).
    ///
    /// Escapes are not decoded (`%00` stays three characters, RFC 4475
    /// §3.1.1.4). White space, controls, `"`, `<` and `>` are never part
    /// of a URI.
    pub fn parse(raw: &'a str) -> Result<Uri<'a>, ParseError> {
        let b = raw.as_bytes();
        let colon = b
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.'))
            .filter(|&i| i > 0 && b[i] == b':' && b[0].is_ascii_alphabetic())
            .ok_or(BAD)?;
        let scheme = &raw[..colon];
        let rest = &raw[colon + 1..];
        let rb = rest.as_bytes();
        if rb.is_empty() {
            return Err(BAD);
        }
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            uri_chars(rb, 0)?;
            return Ok(Uri {
                raw,
                scheme,
                user: Some(rest),
                password: None,
                host: "",
                port: None,
                params: "",
                headers: "",
            });
        }
        // A SIP URI has at most one unescaped '@' (user, password, params
        // and headers may not contain one), while '?', ';' and ':' may
        // appear in the user part: split at '@' first. Each byte is then
        // looked at by one scan only.
        let (user, password, host_start) = match memchr(b'@', rb) {
            Some(0) => return Err(BAD),
            Some(at) => match uri_chars(&rb[..at], b':')? {
                Some(c) => (Some(&rest[..c]), Some(&rest[c + 1..at]), at + 1),
                None => (Some(&rest[..at]), None, at + 1),
            },
            None => (None, None, 0),
        };
        let host_stop = host_end(rest, host_start).ok_or(BAD)?;
        let host = &rest[host_start..host_stop];
        let (port, tail) = match rb.get(host_stop) {
            Some(b':') => {
                let (port, end) = port_at(rb, host_stop + 1).ok_or(BAD)?;
                (Some(port), &rest[end..])
            }
            _ => (None, &rest[host_stop..]),
        };
        if !matches!(tail.as_bytes().first(), None | Some(b';' | b'?')) {
            return Err(BAD);
        }
        let (params, headers) = match uri_chars(tail.as_bytes(), b'?')? {
            Some(q) => (&tail[..q], &tail[q + 1..]),
            None => (tail, ""),
        };
        Ok(Uri {
            raw,
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// Parses a Request-URI (RFC 3261 §19.1.1): as [`Uri::parse`], and a
    /// SIP or SIPS Request-URI must not carry headers (RFC 4475
    /// §3.1.2.11).
    pub fn parse_request_uri(raw: &'a str) -> Result<Uri<'a>, ParseError> {
        let uri = Uri::parse(raw)?;
        if uri.is_sip() {
            let b = raw.as_bytes();
            let after_at = memchr(b'@', b).map_or(b, |at| &b[at + 1..]);
            if memchr(b'?', after_at).is_some() {
                return Err(BAD);
            }
        }
        Ok(uri)
    }

    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        find_param(self.params, name)
    }

    /// `;transport=` of the URI, lower-cased comparison left to the caller.
    pub fn transport(&self) -> Option<&'a str> {
        self.param("transport")
    }

    /// Loose routing flag (RFC 3261 §16.12).
    pub fn has_lr(&self) -> bool {
        self.param("lr").is_some()
    }
}

/// Checks that `b` holds only URI characters (no controls, SP, DEL, `"`,
/// `<`, `>`) and returns the index of the first `stop` byte in it.
#[inline]
fn uri_chars(b: &[u8], stop: u8) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    let mut i = 0;
    while let Some(skip) = b[i..].iter().position(|&c| uri_class(c) != 0) {
        i += skip;
        if is_uri_bad(uri_class(b[i])) {
            return Err(BAD);
        }
        if b[i] == stop && found.is_none() {
            found = Some(i);
        }
        i += 1;
    }
    Ok(found)
}

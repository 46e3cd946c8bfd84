//! SIP and SIPS URIs (RFC 3261 §19.1), as a borrowed view.

use super::values::{find_param, split_host_port};
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

impl<'a> Uri<'a> {
    /// Parses a URI. `sip:` and `sips:` are split into parts; any other
    /// syntactically valid scheme (`tel:`, `urn:`, …) is accepted with the
    /// rest as an opaque `user` so that a proxy can answer 416 for it
    /// instead of 400.
    pub fn parse(raw: &'a str) -> Result<Uri<'a>, ParseError> {
        const BAD: ParseError = ParseError::new("malformed URI");
        let colon = raw.find(':').ok_or(BAD)?;
        let scheme = &raw[..colon];
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        {
            return Err(BAD);
        }
        let rest = &raw[colon + 1..];
        if rest.is_empty() || rest.bytes().any(|b| b <= b' ') {
            return Err(BAD);
        }
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
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
        // appear in the user part: split at '@' first.
        let (userinfo, after_at) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostpart, headers) = match after_at.find('?') {
            Some(q) => (&after_at[..q], &after_at[q + 1..]),
            None => (after_at, ""),
        };
        let (user, password) = match userinfo {
            Some(ui) => {
                if ui.is_empty() {
                    return Err(BAD);
                }
                match ui.find(':') {
                    Some(c) => (Some(&ui[..c]), Some(&ui[c + 1..])),
                    None => (Some(ui), None),
                }
            }
            None => (None, None),
        };
        let (hostport, params) = match hostpart.find(';') {
            Some(s) => (&hostpart[..s], &hostpart[s..]),
            None => (hostpart, ""),
        };
        let (host, port) = split_host_port(hostport).ok_or(BAD)?;
        if !valid_host(host) {
            return Err(BAD);
        }
        Ok(Uri { raw, scheme, user, password, host, port, params, headers })
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

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

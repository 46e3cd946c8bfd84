//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route
//! (RFC 3261 §20.10, §20.20, §20.39, §25.1).

use memchr::{memchr, memchr2, memchr3};

use super::uri::Uri;
use super::values::{find_param, is_lws_byte, is_token_byte, quoted_close, trim_lws};
use crate::ParseError;

/// `"Display" <uri>;params` or `uri;params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub raw: &'a str,
    /// The display name, with quotes if it was quoted.
    pub display: Option<&'a str>,
    /// The URI text (without angle brackets).
    pub uri: &'a str,
    /// Header parameters after the URI, including the leading `;`.
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses and validates one address. `header` names the header in the
    /// error. Rejected (RFC 3261 §20.10, §25.1; RFC 4475 §3.1.2):
    ///
    /// * an unterminated quoted display name (quotbal),
    /// * an unquoted display name with characters other than tokens and
    ///   white space, e.g. `Bell, Alexander <sip:…>` (baddn); UTF-8
    ///   letters are let through, as many UAs send them unquoted,
    /// * white space inside `<…>` (badaspec),
    /// * an addr-spec (no `<…>`) whose URI contains `?` or `,`, which
    ///   need angle brackets (regbadct),
    /// * `*` anywhere but as a whole Contact value.
    pub fn parse(raw: &'a str, header: &'static str) -> Result<NameAddr<'a>, ParseError> {
        let bad = || ParseError::in_header("malformed address", header);
        let (na, bracketed) = NameAddr::split_form(raw).ok_or_else(bad)?;
        if na.uri == "*" {
            return if header == "Contact" && na.raw == "*" {
                Ok(na)
            } else {
                Err(bad())
            };
        }
        if let Some(d) = na.display {
            if !d.starts_with('"')
                && !d
                    .bytes()
                    .all(|b| is_token_byte(b) || is_lws_byte(b) || b >= 0x80)
            {
                return Err(bad());
            }
        }
        if !bracketed && memchr2(b'?', b',', na.uri.as_bytes()).is_some() {
            return Err(bad());
        }
        Uri::parse(na.uri).map_err(|_| bad())?;
        Ok(na)
    }

    /// Splits an address into its parts without validating the URI or the
    /// display name; `None` when it cannot be split at all.
    pub(crate) fn split(raw: &'a str) -> Option<NameAddr<'a>> {
        NameAddr::split_form(raw).map(|(na, _)| na)
    }

    /// As [`NameAddr::split`], also telling whether the URI was in `<…>`.
    fn split_form(raw: &'a str) -> Option<(NameAddr<'a>, bool)> {
        let raw = trim_lws(raw);
        let b = raw.as_bytes();
        let lt = match b.first()? {
            b'"' => {
                let close = quoted_close(b, 0)?;
                let gap = trim_lws(&raw[close..]);
                if !gap.starts_with('<') {
                    return None;
                }
                raw.len() - gap.len()
            }
            // A ';' or '"' before any '<' means an addr-spec whose header
            // parameters may hold a quoted '<'.
            _ => match memchr3(b'<', b';', b'"', b) {
                Some(lt) if b[lt] == b'<' => lt,
                _ => {
                    // addr-spec: a ';' after the URI starts header
                    // parameters (RFC 3261 §20.10), so the URI itself has
                    // none here.
                    let (uri, params) = match memchr(b';', b) {
                        Some(s) => (trim_lws(&raw[..s]), &raw[s..]),
                        None => (raw, ""),
                    };
                    let na = NameAddr {
                        raw,
                        display: None,
                        uri,
                        params,
                    };
                    return Some((na, false));
                }
            },
        };
        let gt = lt + memchr(b'>', &b[lt..])?;
        let display = trim_lws(&raw[..lt]);
        let params = trim_lws(&raw[gt + 1..]);
        if !params.is_empty() && !params.starts_with(';') {
            return None;
        }
        let na = NameAddr {
            raw,
            display: (!display.is_empty()).then_some(display),
            // No LWS inside the brackets (RFC 4475 §3.1.2.14): not trimmed,
            // so that parse rejects it.
            uri: &raw[lt + 1..gt],
            params,
        };
        Some((na, true))
    }

    pub fn uri(&self) -> Uri<'a> {
        // Validated in parse; a failure here would mean a bug, so fall back
        // to an opaque URI instead of panicking.
        Uri::parse(self.uri).unwrap_or(Uri {
            raw: self.uri,
            scheme: "",
            user: None,
            password: None,
            host: "",
            port: None,
            params: "",
            headers: "",
        })
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        find_param(self.params, name)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").filter(|t| !t.is_empty())
    }
}

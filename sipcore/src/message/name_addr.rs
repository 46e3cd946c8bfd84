//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route
//! (RFC 3261 §20.10, §20.20, §20.39, §25.1).

use super::uri::Uri;
use super::values::{find_param, trim_lws};
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
    pub fn parse(raw: &'a str, header: &'static str) -> Result<NameAddr<'a>, ParseError> {
        let bad = ParseError::in_header("malformed address", header);
        let raw = trim_lws(raw);
        if raw.is_empty() {
            return Err(bad);
        }
        // Find a '<' outside a quoted display name.
        let bytes = raw.as_bytes();
        let mut in_quotes = false;
        let mut lt = None;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b'<' if !in_quotes => {
                    lt = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        if in_quotes {
            return Err(bad);
        }
        let na = match lt {
            Some(lt) => {
                let gt = raw[lt..].find('>').ok_or(bad.clone())? + lt;
                let display = trim_lws(&raw[..lt]);
                let params = trim_lws(&raw[gt + 1..]);
                if !params.is_empty() && !params.starts_with(';') {
                    return Err(bad);
                }
                NameAddr {
                    raw,
                    display: (!display.is_empty()).then_some(display),
                    uri: trim_lws(&raw[lt + 1..gt]),
                    params,
                }
            }
            None => {
                // addr-spec: a ';' after the URI starts header parameters
                // (RFC 3261 §20.10), so the URI itself has none here.
                let (uri, params) = match raw.find(';') {
                    Some(s) => (trim_lws(&raw[..s]), &raw[s..]),
                    None => (raw, ""),
                };
                NameAddr { raw, display: None, uri, params }
            }
        };
        if na.uri != "*" {
            Uri::parse(na.uri).map_err(|_| bad)?;
        }
        Ok(na)
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

//! The Via header (RFC 3261 §20.42, §18.2.1 for received/rport).

use super::values::{find_param, split_host_port, trim_lws};
use crate::ParseError;

/// One Via value. `Via: a, b` on one line and two Via lines give the same
/// sequence of these, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The whole value as received.
    pub raw: &'a str,
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, … as received.
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    /// `;branch=…;received=…` including the leading `;`, or empty.
    pub params: &'a str,
}

const BAD_VIA: ParseError = ParseError::in_header("malformed Via", "Via");

impl<'a> Via<'a> {
    pub fn parse(raw: &'a str) -> Result<Via<'a>, ParseError> {
        let raw = trim_lws(raw);
        // sent-protocol allows LWS around each slash (RFC 4475 §3.1.1.1).
        let mut rest = raw;
        let mut parts = [""; 3];
        for (i, part) in parts.iter_mut().enumerate() {
            rest = trim_lws(rest);
            let end = rest
                .find(|c: char| c == '/' || c == ' ' || c == '\t' || c == '\r' || c == '\n')
                .unwrap_or(rest.len());
            *part = &rest[..end];
            rest = trim_lws(&rest[end..]);
            if i < 2 {
                rest = rest.strip_prefix('/').ok_or(BAD_VIA)?;
            }
        }
        if !parts[0].eq_ignore_ascii_case("SIP") || parts[1] != "2.0" || parts[2].is_empty() {
            return Err(BAD_VIA);
        }
        let transport = parts[2];
        let (sent_by, params) = match rest.find(';') {
            Some(s) => (&rest[..s], &rest[s..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(sent_by).ok_or(BAD_VIA)?;
        Ok(Via { raw, transport, host, port, params: trim_lws(params) })
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        find_param(self.params, name)
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch")
    }

    pub fn received(&self) -> Option<&'a str> {
        self.param("received")
    }

    /// `None`: no rport; `Some(None)`: rport requested (RFC 3581);
    /// `Some(Some(p))`: rport filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.parse().ok())
    }

    /// A branch with the RFC 3261 magic cookie identifies the transaction
    /// on its own (§17.2.3); older branches need the RFC 2543 rules.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }

    /// `host:port` as received, the port defaulting to 5060 (5061 for TLS).
    pub fn sent_by_port(&self) -> u16 {
        self.port.unwrap_or(if self.transport.eq_ignore_ascii_case("TLS") { 5061 } else { 5060 })
    }
}

//! The Via header (RFC 3261 §20.42, §18.2.1 for received/rport).

use super::values::{find_param, host_end, port_at, skip_lws, token_end, trim_lws};
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
    /// Parses one via-parm: `sent-protocol LWS sent-by *(;via-params)`.
    /// LWS is allowed around each `/` of sent-protocol (RFC 4475
    /// §3.1.1.1). Any protocol version is accepted so that a server can
    /// answer 505 to `SIP/7.0` rather than 400 (RFC 4475 §3.1.2.16).
    pub fn parse(raw: &'a str) -> Result<Via<'a>, ParseError> {
        let raw = trim_lws(raw);
        let b = raw.as_bytes();
        // sent-protocol = protocol-name SLASH protocol-version SLASH
        // transport, where SLASH = SWS "/" SWS.
        let name_end = token_end(b, 0);
        let mut i = skip_lws(b, name_end);
        if name_end == 0 || b.get(i) != Some(&b'/') {
            return Err(BAD_VIA);
        }
        let version_start = skip_lws(b, i + 1);
        let version_end = token_end(b, version_start);
        i = skip_lws(b, version_end);
        if version_end == version_start || b.get(i) != Some(&b'/') {
            return Err(BAD_VIA);
        }
        let transport_start = skip_lws(b, i + 1);
        let transport_end = token_end(b, transport_start);
        // LWS sent-by, sent-by = host [ COLON port ], COLON = SWS ":" SWS
        let host_start = skip_lws(b, transport_end);
        if transport_end == transport_start || host_start == transport_end {
            return Err(BAD_VIA);
        }
        let host_stop = host_end(raw, host_start).ok_or(BAD_VIA)?;
        i = skip_lws(b, host_stop);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let (p, end) = port_at(b, skip_lws(b, i + 1)).ok_or(BAD_VIA)?;
            port = Some(p);
            i = skip_lws(b, end);
        }
        if i < b.len() && b[i] != b';' {
            return Err(BAD_VIA);
        }
        Ok(Via {
            raw,
            transport: &raw[transport_start..transport_end],
            host: &raw[host_start..host_stop],
            port,
            params: &raw[i..],
        })
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
        self.port
            .unwrap_or(if self.transport.eq_ignore_ascii_case("TLS") {
                5061
            } else {
                5060
            })
    }
}

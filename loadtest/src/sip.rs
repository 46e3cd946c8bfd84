//! SIP pieces shared by the caller and the answerer: Via and branch, SDP
//! offer/answer of one PCMA stream, where in-dialog requests go, responses,
//! and the UA core's 2xx retransmission until the ACK (RFC 3261
//! §13.3.1.4), which the transaction layer leaves to the TU.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use sipcore::endpoint::{Endpoint, EndpointConfig};
use sipcore::message::{Message, ResponseBuilder, Uri};
use sipcore::sdp::{MediaKind, Sdp};
use sipcore::transaction::{ServerKey, TransactionLayer, TuReceiver};
use sipcore::transport::{Target, TransportKind};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// The product token in User-Agent and Server headers.
pub const AGENT: &str = concat!("tandem-load/", env!("CARGO_PKG_VERSION"));

/// Methods we answer, for Allow headers.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";

/// A random lower-case hex token of 16 digits.
pub fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `host:port` with brackets around an IPv6 address.
pub fn host_port(addr: SocketAddr) -> String {
    addr.to_string()
}

/// `ip` as written in a URI host (brackets for IPv6).
pub fn uri_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A Via value for a request we send from `local`.
pub fn via(transport: TransportKind, local: SocketAddr, branch: &str) -> String {
    format!(
        "SIP/2.0/{} {};branch={branch};rport",
        transport.as_str(),
        host_port(local)
    )
}

/// Our Contact URI (without angle brackets).
pub fn contact_uri(transport: TransportKind, local: SocketAddr) -> String {
    match transport {
        TransportKind::Udp => format!("sip:tandem-load@{}", host_port(local)),
        TransportKind::Tcp => format!("sip:tandem-load@{};transport=tcp", host_port(local)),
        // RFC 5630 (the tool has no TLS option today).
        TransportKind::Tls => format!("sips:tandem-load@{}", host_port(local)),
    }
}

/// An SDP with one PCMA audio stream on `media` (`port` 0 and `inactive`
/// when there is no media).
pub fn sdp(media: SocketAddr, session_id: u64, version: u64, active: bool) -> Bytes {
    let ip = media.ip();
    let addr_type = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "v=0\r\no=tandem-load {session_id} {version} IN {addr_type} {ip}\r\ns=tandem-load\r\n\
         c=IN {addr_type} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
         a=ptime:20\r\n{}\r\n",
        media.port(),
        if active { "a=sendrecv" } else { "a=inactive" }
    );
    Bytes::from(s)
}

/// Where the peer wants our RTP: the address and port of the first audio
/// stream of an SDP body. `None` without an SDP, without a usable audio
/// stream, or when the stream is on hold by address (`0.0.0.0`).
pub fn remote_media(body: &[u8]) -> Option<SocketAddr> {
    if body.is_empty() {
        return None;
    }
    let sdp = Sdp::parse(body).ok()?;
    let m = sdp
        .media()
        .iter()
        .find(|m| m.kind() == MediaKind::Audio && !m.is_rejected())?;
    let ip = m.connection()?;
    if ip.is_unspecified() {
        return None;
    }
    Some(SocketAddr::new(ip, m.port()))
}

/// Where a request to `uri` (a Contact or Route URI) goes. Hostnames are
/// not resolved: they go to `fallback` (the configured target), as do
/// unparseable URIs.
pub fn uri_target(uri: &str, transport: TransportKind, fallback: SocketAddr) -> Target {
    let addr = Uri::parse(uri)
        .ok()
        .and_then(|u| {
            let host = u.host.trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = host.parse().ok()?;
            let default_port = if u.scheme.eq_ignore_ascii_case("sips") {
                5061
            } else {
                5060
            };
            Some(SocketAddr::new(ip, u.port.unwrap_or(default_port)))
        })
        .unwrap_or(fallback);
    Target {
        transport,
        addr,
        connection: None,
    }
}

/// A response to `request`, parsed (the layer takes a [`Message`]).
pub fn response(
    request: &Message,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> Message {
    let mut b =
        ResponseBuilder::with_to_tag(request, status, reason, to_tag).header("Server", AGENT);
    for (name, value) in headers {
        b = b.header(name, value);
    }
    if let Some(body) = body {
        b = b.body("application/sdp", body);
    }
    Message::parse(b.build()).expect("a response we built parses")
}

/// Sends `status` without body on the server transaction `key`.
pub fn reply(layer: &TransactionLayer, key: &ServerKey, request: &Message, status: u16) {
    let msg = response(request, status, reason(status), None, &[], None);
    if let Err(e) = layer.send_response(key, msg) {
        tracing::debug!(error = %e, status, "could not send a response");
    }
}

/// Binds the SIP endpoint of either role on `sip`, and finds out before
/// the first call whether RTP sockets can be bound on `media_ip` (a bad
/// `--media-ip` is a configuration error, not a run of failed calls).
pub fn bind(sip: SocketAddr, media_ip: IpAddr) -> Result<(Endpoint, TuReceiver)> {
    let bound = Endpoint::bind(sip, &EndpointConfig::default())
        .map_err(|source| Error::BindSip { addr: sip, source })?;
    std::net::UdpSocket::bind(SocketAddr::new(media_ip, 0)).map_err(|e| {
        Error::config(
            "--media-ip",
            format!("cannot bind an RTP socket on {media_ip}: {e}"),
        )
    })?;
    Ok(bound)
}

/// `200 OK` to an OPTIONS (a proxy's health check) with what we accept.
pub fn reply_options(layer: &TransactionLayer, key: &ServerKey, request: &Message) {
    let ok = response(
        request,
        200,
        "OK",
        None,
        &[("Allow", ALLOW), ("Accept", "application/sdp")],
        None,
    );
    if let Err(e) = layer.send_response(key, ok) {
        tracing::debug!(error = %e, "could not answer an OPTIONS");
    }
}

/// The usual reason phrase of the status codes we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        180 => "Ringing",
        200 => "OK",
        481 => "Call/Transaction Does Not Exist",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A 2xx to an INVITE that the UA core sends again until the ACK comes:
/// after T1, doubling up to T2, for at most 64*T1.
#[derive(Debug)]
struct Pending {
    key: ServerKey,
    ok: Message,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// The 2xx responses waiting for their ACK, by Call-ID and CSeq number.
#[derive(Debug, Default)]
pub struct Unacked {
    pending: HashMap<(String, u32), Pending>,
    /// 2xx sent again so far.
    pub retransmitted: u64,
}

impl Unacked {
    /// Remembers the 2xx `ok` sent on `key` for the INVITE `invite`.
    pub fn insert(
        &mut self,
        layer: &TransactionLayer,
        key: ServerKey,
        invite: &Message,
        ok: Message,
    ) {
        let t1 = layer.config().t1;
        let now = Instant::now();
        self.pending.insert(
            (invite.call_id().to_owned(), invite.cseq().seq),
            Pending {
                key,
                ok,
                next: now + t1,
                interval: t1,
                give_up: now + 64 * t1,
            },
        );
    }

    /// An ACK arrived; `true` if it acknowledged a pending 2xx.
    pub fn ack(&mut self, ack: &Message) -> bool {
        self.pending
            .remove(&(ack.call_id().to_owned(), ack.cseq().seq))
            .is_some()
    }

    /// Forgets every pending 2xx of a call (it ended).
    pub fn forget_call(&mut self, call_id: &str) {
        self.pending.retain(|(c, _), _| c != call_id);
    }

    /// Sends the 2xx that are due again; returns the Call-IDs whose ACK
    /// never came (64*T1 passed), which the caller should end (§13.3.1.4).
    pub fn retransmit_due(&mut self, layer: &TransactionLayer) -> Vec<String> {
        let now = Instant::now();
        let t2 = layer.config().t2;
        let mut expired = Vec::new();
        let mut resent = 0;
        self.pending.retain(|(call_id, _), p| {
            if now >= p.give_up {
                expired.push(call_id.clone());
                return false;
            }
            if now >= p.next {
                let _ = layer.send_response(&p.key, p.ok.clone());
                resent += 1;
                p.interval = (p.interval * 2).min(t2);
                p.next = now + p.interval;
            }
            true
        });
        self.retransmitted += resent;
        expired
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests;

//! HEP3 export of SIP messages (Homer Encapsulation Protocol version 3,
//! the capture protocol of Homer, heplify-server, sngrep and others).
//!
//! With `[hep]` configured, the endpoint's tap ([`sipcore::tap`]) hands
//! every SIP message Tandem receives and sends to [`HepTap`], which only
//! puts the message (a reference-counted buffer, no copy) into a bounded
//! queue: `try_send`, and a full queue drops the message and counts it
//! (`tandem_hep_dropped_total{reason="queue_full"}`). The SIP path never
//! waits for the collector. One task ([`export`]) takes messages off the
//! queue, encodes each as one HEP3 packet and sends it over UDP to the
//! collector (`tandem_hep_sent_total`). UDP because a collector that is slow
//! or gone must cost Tandem nothing: no connection to hold, no backpressure.
//!
//! No crate fits: `hep` on crates.io decodes only, and the format is a
//! dozen type-length-value chunks. The packet (all integers big-endian):
//!
//! ```text
//! "HEP3" | total length u16 | chunk* where chunk = vendor u16 (0: generic)
//!                                                 | type u16 | length u16
//!                                                   (header included) | value
//! ```
//!
//! Chunks written, in this order: 1 IP family (2 = IPv4, 10 = IPv6), 2 IP
//! protocol (17 UDP, 6 TCP; TLS is TCP — HEP has no code for it and the
//! payload is the decrypted SIP), 3/4 IPv4 or 5/6 IPv6 source and
//! destination, 7/8 ports, 9/10 time (seconds, microseconds), 11 protocol
//! type (1 = SIP), 12 capture agent id, 14 authentication key (when a
//! password is set; sent in clear, as HEP defines it), 17 correlation id
//! (the Call-ID, so that Homer can join the two legs' messages with RTCP
//! and logs), 15 the message.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use sipcore::tap::{MessageTap, ObservedMessage};
use sipcore::transport::TransportKind;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The generic chunk types of HEP3 that Tandem writes (vendor 0).
pub mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTOCOL: u16 = 0x0002;
    pub const IPV4_SOURCE: u16 = 0x0003;
    pub const IPV4_DESTINATION: u16 = 0x0004;
    pub const IPV6_SOURCE: u16 = 0x0005;
    pub const IPV6_DESTINATION: u16 = 0x0006;
    pub const SOURCE_PORT: u16 = 0x0007;
    pub const DESTINATION_PORT: u16 = 0x0008;
    pub const TIME_SECONDS: u16 = 0x0009;
    pub const TIME_MICROSECONDS: u16 = 0x000a;
    pub const PROTOCOL_TYPE: u16 = 0x000b;
    pub const CAPTURE_AGENT_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// `AF_INET` / `AF_INET6` as HEP writes them.
pub const FAMILY_IPV4: u8 = 2;
pub const FAMILY_IPV6: u8 = 10;
pub const PROTOCOL_UDP: u8 = 17;
pub const PROTOCOL_TCP: u8 = 6;
/// HEP protocol type of a SIP payload.
pub const PROTOCOL_TYPE_SIP: u8 = 1;
/// The largest packet sent: what one UDP datagram over IPv4 carries (the
/// HEP length field would allow 65535). A larger SIP message is dropped
/// and counted, not truncated: half a message misleads more than none.
pub const MAX_PACKET: usize = 65_507;
/// Bytes of SIP messages waiting in the queue, at most: `queue_limit`
/// bounds the messages, this their size, so that a queue full of 64 KiB
/// messages (a stranger's, past the gate) cannot hold 256 MiB.
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
const HEADER_LEN: usize = 6;
const CHUNK_HEADER_LEN: usize = 6;

/// Who captured: the capture agent id and the collector's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: u32,
    pub password: Option<String>,
}

/// What the export needs from the configuration (`[hep]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepSettings {
    pub collector: SocketAddr,
    pub agent: Agent,
    /// Messages waiting to be encoded and sent, at most.
    pub queue_limit: usize,
}

/// Encodes `message` as one HEP3 packet into `out` (cleared first).
/// Returns false, with `out` empty, when the packet would be larger than
/// [`MAX_PACKET`].
pub fn encode(message: &ObservedMessage, agent: &Agent, out: &mut Vec<u8>) -> bool {
    out.clear();
    let (source, destination) = same_family(message.source.ip(), message.destination.ip());
    let call_id = call_id(&message.data);
    let len = HEADER_LEN
        + chunks_len(&source, &destination, agent, call_id)
        + CHUNK_HEADER_LEN
        + message.data.len();
    if len > MAX_PACKET {
        return false;
    }
    out.reserve(len);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&(len as u16).to_be_bytes());
    let family = if source.is_ipv4() {
        FAMILY_IPV4
    } else {
        FAMILY_IPV6
    };
    put(out, chunk::IP_FAMILY, &[family]);
    let protocol = match message.transport {
        TransportKind::Udp => PROTOCOL_UDP,
        TransportKind::Tcp | TransportKind::Tls => PROTOCOL_TCP,
    };
    put(out, chunk::IP_PROTOCOL, &[protocol]);
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(out, chunk::IPV4_SOURCE, &s.octets());
            put(out, chunk::IPV4_DESTINATION, &d.octets());
        }
        (s, d) => {
            put(out, chunk::IPV6_SOURCE, &v6(s).octets());
            put(out, chunk::IPV6_DESTINATION, &v6(d).octets());
        }
    }
    put(
        out,
        chunk::SOURCE_PORT,
        &message.source.port().to_be_bytes(),
    );
    put(
        out,
        chunk::DESTINATION_PORT,
        &message.destination.port().to_be_bytes(),
    );
    // A clock before 1970 is written as 1970; after 2106 seconds wrap, as
    // HEP's 32 bits do for every agent.
    let since_epoch = message
        .at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    put(
        out,
        chunk::TIME_SECONDS,
        &(since_epoch.as_secs() as u32).to_be_bytes(),
    );
    put(
        out,
        chunk::TIME_MICROSECONDS,
        &since_epoch.subsec_micros().to_be_bytes(),
    );
    put(out, chunk::PROTOCOL_TYPE, &[PROTOCOL_TYPE_SIP]);
    put(out, chunk::CAPTURE_AGENT_ID, &agent.id.to_be_bytes());
    if let Some(password) = &agent.password {
        put(out, chunk::AUTH_KEY, password.as_bytes());
    }
    if let Some(id) = call_id {
        put(out, chunk::CORRELATION_ID, id);
    }
    put(out, chunk::PAYLOAD, &message.data);
    debug_assert_eq!(out.len(), len);
    true
}

/// The length of every chunk but the payload.
fn chunks_len(
    source: &IpAddr,
    destination: &IpAddr,
    agent: &Agent,
    call_id: Option<&[u8]>,
) -> usize {
    let address = if source.is_ipv4() && destination.is_ipv4() {
        4
    } else {
        16
    };
    let values = [
        1,       // family
        1,       // protocol
        address, // source
        address, // destination
        2,       // source port
        2,       // destination port
        4,       // seconds
        4,       // microseconds
        1,       // protocol type
        4,       // agent id
    ];
    let optional = [
        agent.password.as_ref().map(String::len),
        call_id.map(<[u8]>::len),
    ];
    values.iter().map(|v| v + CHUNK_HEADER_LEN).sum::<usize>()
        + optional
            .iter()
            .flatten()
            .map(|v| v + CHUNK_HEADER_LEN)
            .sum::<usize>()
}

fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((CHUNK_HEADER_LEN + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Both addresses in one family, as HEP has one family chunk: IPv4-mapped
/// IPv6 addresses as IPv4, and an IPv4 address beside an IPv6 one as
/// IPv4-mapped IPv6.
fn same_family(source: IpAddr, destination: IpAddr) -> (IpAddr, IpAddr) {
    let (s, d) = (source.to_canonical(), destination.to_canonical());
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (IpAddr::V6(v6(s)), IpAddr::V6(v6(d)))
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The Call-ID of a SIP message, found in its raw header lines (long or
/// compact name `i`): the export runs beside the SIP path and must not
/// parse a message a second time, nor fail on one that did not parse.
pub fn call_id(data: &[u8]) -> Option<&[u8]> {
    let headers_end = find(data, b"\r\n\r\n").unwrap_or(data.len());
    let mut lines = data[..headers_end].split(|&b| b == b'\n').skip(1);
    lines.find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii();
        let is_call_id = name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
        let value = line[colon + 1..].trim_ascii();
        (is_call_id && !value.is_empty()).then_some(value)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The export's counters, shared by the tap, the sender task and the
/// metrics task, and the bytes queued now.
#[derive(Debug, Default)]
pub struct HepCounters {
    queued_bytes: AtomicUsize,
    sent: AtomicU64,
    queue_full: AtomicU64,
    too_large: AtomicU64,
    send_errors: AtomicU64,
}

/// A copy of [`HepCounters`]; every field is a total since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HepStats {
    /// Packets sent to the collector.
    pub sent: u64,
    /// Messages dropped because the queue was full, in messages or in
    /// bytes (the sender task is behind, or was stopped).
    pub queue_full: u64,
    /// Messages too large for one HEP packet in a UDP datagram.
    pub too_large: u64,
    /// Packets the socket refused (`send_to` failed).
    pub send_errors: u64,
}

impl HepCounters {
    pub fn snapshot(&self) -> HepStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HepStats {
            sent: get(&self.sent),
            queue_full: get(&self.queue_full),
            too_large: get(&self.too_large),
            send_errors: get(&self.send_errors),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The endpoint's tap: queues messages for [`export`], never waits.
#[derive(Debug)]
pub struct HepTap {
    queue: mpsc::Sender<ObservedMessage>,
    counters: Arc<HepCounters>,
    /// The bytes of the messages queued, at most.
    max_bytes: usize,
}

impl HepTap {
    pub fn new(
        queue: mpsc::Sender<ObservedMessage>,
        counters: Arc<HepCounters>,
        max_bytes: usize,
    ) -> Self {
        HepTap {
            queue,
            counters,
            max_bytes,
        }
    }
}

impl MessageTap for HepTap {
    fn observe(&self, mut message: ObservedMessage) {
        // A message over TCP is a slice of its connection's read buffer:
        // queued as it is, it would keep that whole buffer alive while
        // the byte cap counts only the message. A copy is exactly its
        // size (about a kilobyte, and only with `[hep]` on).
        message.data = bytes::Bytes::copy_from_slice(&message.data);
        let len = message.data.len();
        let queued = &self.counters.queued_bytes;
        // Taken before the send and given back by the sender task (or
        // here, when the message is not queued after all).
        if queued.fetch_add(len, Ordering::Relaxed) + len > self.max_bytes
            || self.queue.try_send(message).is_err()
        {
            queued.fetch_sub(len, Ordering::Relaxed);
            bump(&self.counters.queue_full);
        }
    }
}

/// The running export: the tap to give the endpoint and the counters.
pub struct HepExport {
    pub tap: Arc<HepTap>,
    pub counters: Arc<HepCounters>,
}

/// Binds the sending socket (any port, the collector's family) and starts
/// the sender task on the current runtime.
pub fn start(settings: &HepSettings) -> std::io::Result<HepExport> {
    let any: SocketAddr = match settings.collector {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(socket)?;
    let (tx, rx) = mpsc::channel(settings.queue_limit.max(1));
    let counters = Arc::new(HepCounters::default());
    tokio::spawn(export(
        socket,
        settings.collector,
        settings.agent.clone(),
        rx,
        counters.clone(),
    ));
    tracing::info!(collector = %settings.collector, agent_id = settings.agent.id, "HEP export on");
    Ok(HepExport {
        tap: Arc::new(HepTap::new(tx, counters.clone(), MAX_QUEUED_BYTES)),
        counters,
    })
}

/// Send failures are logged at most this often (the counter has them all).
const SEND_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The sender task: encodes and sends until every tap is gone.
pub async fn export(
    socket: UdpSocket,
    collector: SocketAddr,
    agent: Agent,
    mut queue: mpsc::Receiver<ObservedMessage>,
    counters: Arc<HepCounters>,
) {
    let mut packet = Vec::with_capacity(4096);
    let mut last_error_log: Option<tokio::time::Instant> = None;
    while let Some(message) = queue.recv().await {
        counters
            .queued_bytes
            .fetch_sub(message.data.len(), Ordering::Relaxed);
        if !encode(&message, &agent, &mut packet) {
            bump(&counters.too_large);
            continue;
        }
        match socket.send_to(&packet, collector).await {
            Ok(_) => bump(&counters.sent),
            Err(e) => {
                bump(&counters.send_errors);
                let now = tokio::time::Instant::now();
                if last_error_log.is_none_or(|t| now.duration_since(t) >= SEND_ERROR_LOG_INTERVAL) {
                    last_error_log = Some(now);
                    tracing::warn!(%collector, error = %e, "HEP packet not sent (counted in tandem_hep_dropped_total)");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

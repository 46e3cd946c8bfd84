//! A SIP endpoint: transports, the transaction layer and the receive loop
//! joined into the one object a UA, proxy or B2BUA builds on.
//!
//! The receive loop parses every message once. What fails to parse gets a
//! verdict (RFC 3261 §8.2, §16.3): a request that can be answered gets a
//! `400 Bad Request` whose reason phrase and `Warning` say what was wrong;
//! a request with another SIP version gets `505`; anything else (garbage,
//! a broken response, a broken ACK, which may not be answered) is dropped
//! and counted. Nothing reaches the TU unparsed.
//!
//! Before parsing, the [`gate`](crate::gate) looks at the source: a
//! banned or over-rate stranger's message is dropped there, at the cost of
//! a table lookup. The rest are handled trusted first: the loop drains
//! the transports' channel in batches (which is cheap, so the channel and
//! the UDP socket buffer behind it never fill up with strangers' messages
//! that trusted ones then wait behind), handles the trusted messages of
//! each batch at once and puts the strangers' in a bounded backlog that
//! is parsed a slice at a time in between. The transaction layer then
//! keeps room in the TU queue and among its server transactions that
//! only trusted sources can use.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

use crate::gate::{
    Bans, DropReason, Gate, RateLimit, RefusalTally, SourceClass, TrustedSources, Verdict,
};
use crate::message::{Message, Method, ResponseBuilder, MAX_MESSAGE_SIZE};
use crate::sys::SendBatch;
use crate::tap::{Direction, MessageTap, ObservedMessage};
use crate::transaction::{
    Outgoing, OverloadStats, ServerTransactionStats, TimerConfig, TransactionError, TransactionKey,
    TransactionLayer, Transmit, TuQueueConfig, TuReceiver,
};
use crate::transport::{Incoming, Target, TransportConfig, TransportStats, Transports};
use crate::{Error, ParseError};

#[derive(Debug, Clone, Default)]
pub struct EndpointConfig {
    pub transport: TransportConfig,
    pub timers: TimerConfig,
    /// The bound on new work waiting for the TU.
    pub tu_queue: TuQueueConfig,
    pub gate: GateConfig,
    /// Sees every message received (past the gate) and sent; none: no
    /// capture, one branch per message.
    pub tap: Option<Arc<dyn MessageTap>>,
}

/// The gate in front of the parser (see [`crate::gate`]).
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Sources never limited until [`Endpoint::set_trusted`] says
    /// otherwise (default: everyone, no gate).
    pub trusted: TrustedSources,
    /// How much a stranger may send.
    pub limit: RateLimit,
    /// Strangers' messages waiting to be parsed, at most; more are
    /// dropped (counted as `backlog`).
    pub stranger_backlog: usize,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            trusted: TrustedSources::everyone(),
            limit: RateLimit::default(),
            stranger_backlog: 1024,
        }
    }
}

/// Messages taken off the transports' channel at a time.
const BATCH: usize = 256;
/// Strangers' messages parsed between two batches: a trusted message
/// waits behind at most this many.
const STRANGER_SLICE: usize = 32;
/// Lines about refused messages: one per this interval at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counters of the receive loop (the transports count bytes and frames).
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    rejected_400: AtomicU64,
    rejected_505: AtomicU64,
    dropped: AtomicU64,
    /// Dropped before parsing, by [`DropReason`].
    gate_dropped: [AtomicU64; 3],
    /// Strangers' messages let through the gate.
    strangers: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Messages parsed and handed to the transaction layer.
    pub received: u64,
    /// Requests answered 400 because they did not parse.
    pub rejected_400: u64,
    /// Requests answered 505 (unsupported SIP version).
    pub rejected_505: u64,
    /// Unparseable messages that could not be answered.
    pub dropped: u64,
    /// What the full TU queue turned away.
    pub overload: OverloadStats,
    /// Server transactions live and waiting, wait states evicted.
    pub transactions: ServerTransactionStats,
    pub transport: TransportStats,
    /// Strangers' messages let through the gate.
    pub strangers: u64,
    /// Messages the gate dropped before parsing, by reason.
    pub gate_dropped: GateDropped,
}

/// Messages dropped before parsing, by [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateDropped {
    pub banned: u64,
    /// Each also started a ban.
    pub rate: u64,
    pub backlog: u64,
}

impl EndpointStats {
    /// Adds `other`'s figures to these: the node's, summed over the
    /// endpoints of its shards. Every field is summed, the gauges
    /// (transactions now) too: each shard's transactions are the node's.
    /// Destructured without `..` so that a new field fails to build here
    /// rather than go missing from the sum.
    pub fn add(&mut self, other: &EndpointStats) {
        let EndpointStats {
            received,
            rejected_400,
            rejected_505,
            dropped,
            overload,
            transactions,
            transport,
            strangers,
            gate_dropped,
        } = other;
        self.received = self.received.saturating_add(*received);
        self.rejected_400 = self.rejected_400.saturating_add(*rejected_400);
        self.rejected_505 = self.rejected_505.saturating_add(*rejected_505);
        self.dropped = self.dropped.saturating_add(*dropped);
        self.overload.add(overload);
        self.transactions.add(transactions);
        self.transport.add(transport);
        self.strangers = self.strangers.saturating_add(*strangers);
        self.gate_dropped.add(gate_dropped);
    }
}

impl GateDropped {
    /// See [`EndpointStats::add`].
    pub fn add(&mut self, other: &GateDropped) {
        let GateDropped {
            banned,
            rate,
            backlog,
        } = other;
        self.banned = self.banned.saturating_add(*banned);
        self.rate = self.rate.saturating_add(*rate);
        self.backlog = self.backlog.saturating_add(*backlog);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Banned => self.banned,
            DropReason::Rate => self.rate,
            DropReason::Backlog => self.backlog,
        }
    }
}

enum Out {
    Transaction(Outgoing),
    Raw(Target, Bytes),
}

struct Sender(mpsc::UnboundedSender<Out>);

impl Transmit for Sender {
    fn send(&self, out: Outgoing) -> crate::Result<()> {
        let addr = out.target.addr;
        self.0.send(Out::Transaction(out)).map_err(|_| closed(addr))
    }
}

fn closed(addr: SocketAddr) -> Error {
    Error::io(
        format!("sending to {addr}"),
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, "endpoint is shut down"),
    )
}

/// UDP + TCP on one local address with a transaction layer on top.
#[derive(Clone)]
pub struct Endpoint {
    transports: Arc<Transports>,
    layer: TransactionLayer,
    out: mpsc::UnboundedSender<Out>,
    counters: Arc<Counters>,
    /// The trusted set the receive loop's gate uses.
    trusted: Arc<watch::Sender<Arc<TrustedSources>>>,
    /// Sources banned now (their datagrams are dropped by the transport).
    bans: Arc<Bans>,
    tap: Option<Arc<dyn MessageTap>>,
}

impl Endpoint {
    /// Binds UDP and TCP on `local` and starts the receive and send tasks
    /// on the current tokio runtime. TU events arrive on the receiver.
    pub fn bind(
        local: SocketAddr,
        config: &EndpointConfig,
    ) -> crate::Result<(Endpoint, TuReceiver)> {
        let bans = Arc::new(Bans::default());
        let transport = TransportConfig {
            bans: Some(bans.clone()),
            ..config.transport.clone()
        };
        let (transports, incoming) = Transports::bind(local, &transport)?;
        let transports = Arc::new(transports);
        let (out, out_rx) = mpsc::unbounded_channel();
        let (layer, events) = TransactionLayer::with_queue(
            config.timers,
            Arc::new(Sender(out.clone())),
            config.tu_queue,
        )
        .map_err(|e: TransactionError| {
            Error::io(
                "transaction layer",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            )
        })?;
        let counters = Arc::new(Counters::default());
        let (trusted, trusted_rx) = watch::channel(Arc::new(config.gate.trusted.clone()));
        let endpoint = Endpoint {
            transports,
            layer,
            out,
            counters,
            trusted: Arc::new(trusted),
            bans: bans.clone(),
            tap: config.tap.clone(),
        };
        let sending = Sending {
            transports: endpoint.transports.clone(),
            layer: endpoint.layer.clone(),
            tap: config.tap.clone(),
        };
        tokio::spawn(send_loop(sending, out_rx));
        let gate = Gate::new(trusted_rx.borrow().clone(), config.gate.limit, bans.clone());
        let receiver = Receiver {
            gate,
            trusted: trusted_rx,
            backlog: VecDeque::new(),
            backlog_limit: config.gate.stranger_backlog,
            tally: RefusalTally::new(REFUSAL_LOG_INTERVAL),
        };
        tokio::spawn(receive_loop(endpoint.clone(), incoming, receiver));
        Ok((endpoint, events))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.transports.local_addr()
    }

    pub fn layer(&self) -> &TransactionLayer {
        &self.layer
    }

    /// Replaces the sources the gate trusts (cheap: the receive loop picks
    /// the new set up with its next batch).
    pub fn set_trusted(&self, trusted: TrustedSources) {
        // At once: the transports (and the kernel) drop a banned source's
        // datagrams before the receive loop would see the new set.
        self.bans.lift_trusted(&trusted);
        self.refresh_filter(Instant::now());
        self.trusted.send_replace(Arc::new(trusted));
    }

    /// Makes the UDP socket's kernel filter of the IPv4 sources banned at
    /// `now`, so that a flood from them costs the kernel a comparison per
    /// packet and Tandem nothing (those packets are not counted: the
    /// kernel's per-socket drop count has them). Returns when the first of
    /// those bans ends, when the filter must be made again.
    fn refresh_filter(&self, now: Instant) -> Option<Instant> {
        if !self.local_addr().is_ipv4() {
            return None;
        }
        let (banned, next) = self.bans.ipv4_now(now);
        let program = if banned.is_empty() {
            Vec::new()
        } else {
            crate::gate::drop_filter(&banned)
        };
        if let Err(e) = self.transports.udp().set_filter(&program) {
            tracing::warn!(error = %e, "UDP socket filter of banned sources not set");
        }
        next
    }

    /// Sends bytes outside any transaction: the ACK for a 2xx, a 2xx
    /// retransmission by the TU, stateless responses. Never blocks.
    pub fn send_raw(&self, target: Target, bytes: Bytes) -> crate::Result<()> {
        let addr = target.addr;
        self.out
            .send(Out::Raw(target, bytes))
            .map_err(|_| closed(addr))
    }

    pub fn stats(&self) -> EndpointStats {
        let c = &self.counters;
        EndpointStats {
            received: c.received.load(Ordering::Relaxed),
            rejected_400: c.rejected_400.load(Ordering::Relaxed),
            rejected_505: c.rejected_505.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            overload: self.layer.overload_stats(),
            transactions: self.layer.server_stats(),
            transport: self.transports.stats(),
            strangers: c.strangers.load(Ordering::Relaxed),
            gate_dropped: GateDropped {
                banned: c.gate_dropped[0].load(Ordering::Relaxed) + self.bans.dropped(),
                rate: c.gate_dropped[1].load(Ordering::Relaxed),
                backlog: c.gate_dropped[2].load(Ordering::Relaxed),
            },
        }
    }

    /// Stops the transports; the TU event channel ends once the last
    /// clone of the endpoint is dropped.
    pub async fn shutdown(&self) {
        self.transports.shutdown().await;
    }

    fn on_incoming(&self, incoming: Incoming, class: SourceClass) {
        if let Some(tap) = &self.tap {
            tap.observe(ObservedMessage {
                direction: Direction::Received,
                transport: incoming.transport,
                source: incoming.source,
                destination: incoming.local,
                at: std::time::SystemTime::now(),
                data: incoming.data.clone(),
            });
        }
        let source = incoming.reply_target();
        match Message::parse(incoming.data.clone()) {
            Ok(msg) => {
                if msg.is_request() && !msg.version().eq_ignore_ascii_case("SIP/2.0") {
                    if msg.method() != Some(&Method::Ack) {
                        let resp = ResponseBuilder::new(&msg, 505, "Version Not Supported").build();
                        let _ = self.send_raw(source, resp);
                        self.counters.rejected_505.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                self.layer.on_message_from(msg, source, class);
            }
            Err(err) => match bad_request_response(&incoming.data, &err) {
                Some(resp) => {
                    tracing::debug!(peer = %incoming.source, %err, "rejected a malformed request");
                    self.counters.rejected_400.fetch_add(1, Ordering::Relaxed);
                    let _ = self.send_raw(source, resp);
                }
                None => {
                    tracing::debug!(peer = %incoming.source, %err, "dropped an unparseable message");
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
    }
}

/// The receive loop's own state: the gate and the strangers' backlog.
struct Receiver {
    gate: Gate,
    trusted: watch::Receiver<Arc<TrustedSources>>,
    backlog: VecDeque<Incoming>,
    backlog_limit: usize,
    tally: RefusalTally,
}

impl Receiver {
    /// One message off the channel: handled now (trusted), queued
    /// (stranger), or dropped unparsed.
    fn admit(&mut self, endpoint: &Endpoint, incoming: Incoming, now: Instant) {
        let ip = incoming.source.ip();
        let verdict = match self.gate.check(ip, now) {
            Verdict::Stranger if self.backlog.len() >= self.backlog_limit => {
                Verdict::Drop(DropReason::Backlog)
            }
            v => v,
        };
        match verdict {
            Verdict::Trusted => endpoint.on_incoming(incoming, SourceClass::Trusted),
            Verdict::Stranger => self.backlog.push_back(incoming),
            Verdict::Drop(reason) => {
                let c = &endpoint.counters;
                c.gate_dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
                if let Some(s) = self.tally.note(reason, ip, now) {
                    tracing::warn!(
                        banned = s.banned,
                        rate = s.rate,
                        backlog = s.backlog,
                        last_source = ?s.last_source,
                        "messages dropped before parsing (counts since the last such line)"
                    );
                }
            }
        }
    }

    /// Parses up to a slice of the strangers' backlog.
    fn serve_strangers(&mut self, endpoint: &Endpoint) {
        for _ in 0..STRANGER_SLICE {
            let Some(incoming) = self.backlog.pop_front() else {
                return;
            };
            endpoint.counters.strangers.fetch_add(1, Ordering::Relaxed);
            endpoint.on_incoming(incoming, SourceClass::Stranger);
        }
    }
}

async fn receive_loop(
    endpoint: Endpoint,
    mut incoming: mpsc::Receiver<Incoming>,
    mut rx: Receiver,
) {
    let mut batch = Vec::with_capacity(BATCH);
    // The kernel filter: made of the bans of this generation, to be made
    // again at this time (the first of its bans ends).
    let mut filtered = endpoint.bans.generation();
    let mut refilter: Option<tokio::time::Instant> = None;
    loop {
        if rx.backlog.is_empty() {
            let expiry = async {
                match refilter {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                n = incoming.recv_many(&mut batch, BATCH) => if n == 0 {
                    return;
                },
                () = expiry => {}
            }
        } else {
            // Strangers are waiting: take only what has arrived.
            while batch.len() < BATCH {
                match incoming.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
        }
        if rx.trusted.has_changed().unwrap_or(false) {
            let trusted = rx.trusted.borrow_and_update().clone();
            rx.gate.set_trusted(trusted);
        }
        let now = Instant::now();
        for m in batch.drain(..) {
            rx.admit(&endpoint, m, now);
        }
        rx.serve_strangers(&endpoint);
        let generation = endpoint.bans.generation();
        if generation != filtered || refilter.is_some_and(|at| at.into_std() <= now) {
            filtered = generation;
            refilter = endpoint
                .refresh_filter(Instant::now())
                .map(tokio::time::Instant::from_std);
        }
        if !rx.backlog.is_empty() {
            // Let the transports' tasks fill the channel meanwhile.
            tokio::task::yield_now().await;
        }
    }
}

/// What the send tasks need: where to write, whom to tell of a failed
/// write, and the tap that sees each message written.
#[derive(Clone)]
struct Sending {
    transports: Arc<Transports>,
    layer: TransactionLayer,
    tap: Option<Arc<dyn MessageTap>>,
}

/// Messages the send task takes off its queue at once.
const SEND_BATCH: usize = 64;

async fn send_loop(sending: Sending, mut rx: mpsc::UnboundedReceiver<Out>) {
    // A TCP connect can take seconds, so stream sends run in one task per
    // destination: they never hold up other destinations, and messages to
    // one destination keep their order (a 180 must not overtake its 200).
    let mut streams: HashMap<Target, mpsc::UnboundedSender<Queued>> = HashMap::new();
    // The engine runs on the same thread: by the time this task runs, the
    // queue holds every message of the engine's pass (of every event it
    // took since), and the UDP ones go out with one `sendmmsg`, in order.
    let mut queue = Vec::with_capacity(SEND_BATCH);
    let mut datagrams: Vec<(Bytes, SocketAddr)> = Vec::with_capacity(SEND_BATCH);
    let mut keys: Vec<Option<TransactionKey>> = Vec::with_capacity(SEND_BATCH);
    let mut batch = SendBatch::default();
    while rx.recv_many(&mut queue, SEND_BATCH).await > 0 {
        for out in queue.drain(..) {
            let (target, bytes, key) = match out {
                Out::Transaction(o) => (o.target, o.bytes, Some(o.key)),
                Out::Raw(t, b) => (t, b, None),
            };
            if !target.transport.is_stream() {
                datagrams.push((bytes, target.addr));
                keys.push(key);
                continue;
            }
            queue_on_stream(&sending, &mut streams, target, (bytes, key));
        }
        sending
            .send_datagrams(&mut batch, &datagrams, &mut keys)
            .await;
        datagrams.clear();
        keys.clear();
        if streams.len() > 1024 {
            streams.retain(|_, q| !q.is_closed());
        }
    }
}

/// Hands a message to the send task of its stream destination (started if
/// there is none, or if it ended after being idle).
fn queue_on_stream(
    sending: &Sending,
    streams: &mut HashMap<Target, mpsc::UnboundedSender<Queued>>,
    target: Target,
    mut item: Queued,
) {
    loop {
        let queue = streams.entry(target).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(stream_sender(sending.clone(), target, rx));
            tx
        });
        match queue.send(item) {
            Ok(()) => return,
            // The sender task ended after being idle: start a new one.
            Err(mpsc::error::SendError(back)) => {
                item = back;
                streams.remove(&target);
            }
        }
    }
}

type Queued = (Bytes, Option<TransactionKey>);

async fn stream_sender(sending: Sending, target: Target, mut rx: mpsc::UnboundedReceiver<Queued>) {
    const IDLE: Duration = Duration::from_secs(30);
    while let Ok(Some((bytes, key))) = tokio::time::timeout(IDLE, rx.recv()).await {
        sending.send_one(target, bytes, key).await;
    }
}

impl Sending {
    async fn send_one(&self, target: Target, bytes: Bytes, key: Option<TransactionKey>) {
        // Without a tap the bytes are not kept past the write.
        let tapped = self.tap.as_ref().map(|_| bytes.clone());
        let sent = self.transports.send_from(&target, bytes).await;
        self.sent(target, key, tapped, sent);
    }

    /// UDP datagrams, each with the key of its transaction, in as few
    /// system calls as the kernel allows.
    async fn send_datagrams(
        &self,
        batch: &mut SendBatch,
        datagrams: &[(Bytes, SocketAddr)],
        keys: &mut [Option<TransactionKey>],
    ) {
        let udp = self.transports.udp();
        let local = udp.local_addr();
        udp.send_many(batch, datagrams, |i, sent| {
            let (bytes, addr) = &datagrams[i];
            let target = Target::udp(*addr);
            let tapped = self.tap.as_ref().map(|_| bytes.clone());
            self.sent(target, keys[i].take(), tapped, sent.map(|()| local));
        })
        .await;
    }

    /// After one write: the tap sees the message sent, or the transaction
    /// layer hears of the failure.
    fn sent(
        &self,
        target: Target,
        key: Option<TransactionKey>,
        tapped: Option<Bytes>,
        sent: crate::Result<SocketAddr>,
    ) {
        match sent {
            Ok(local) => {
                if let (Some(tap), Some(data)) = (&self.tap, tapped) {
                    tap.observe(ObservedMessage {
                        direction: Direction::Sent,
                        transport: target.transport,
                        source: local,
                        destination: target.addr,
                        at: std::time::SystemTime::now(),
                        data,
                    });
                }
            }
            Err(e) => {
                tracing::debug!(%target, error = %e, "send failed");
                if let Some(key) = key {
                    self.layer.transport_error(&key);
                }
            }
        }
    }
}

/// Builds the 400 for a request that did not parse, from whatever header
/// lines can be found raw (§8.2: the response needs Via, From, To,
/// Call-ID, CSeq). Returns `None` for responses, ACKs, non-SIP data and
/// requests too broken to be answered.
pub fn bad_request_response(data: &[u8], err: &ParseError) -> Option<Bytes> {
    if data.len() > MAX_MESSAGE_SIZE {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let text = text.trim_start_matches(['\r', '\n']);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next()?;
    let (method, rest) = first.split_once(' ')?;
    if method == "ACK" || method.starts_with("SIP/") || !rest.contains(" SIP/") {
        return None;
    }
    let wanted = |name: &str| -> Option<&'static str> {
        let n = name.trim();
        for (long, short) in [
            ("Via", "v"),
            ("From", "f"),
            ("To", "t"),
            ("Call-ID", "i"),
            ("CSeq", ""),
        ] {
            if n.eq_ignore_ascii_case(long) || (!short.is_empty() && n.eq_ignore_ascii_case(short))
            {
                return Some(long);
            }
        }
        None
    };
    let mut copied: Vec<(&'static str, &str)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if let Some(long) = wanted(name) {
                copied.push((long, value.trim()));
            }
        }
    }
    for needed in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if !copied.iter().any(|(n, _)| *n == needed) {
            return None;
        }
    }
    let reason = err.to_string().replace(['\r', '\n', '"'], " ");
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(format!("SIP/2.0 400 Bad Request ({reason})\r\n").as_bytes());
    for (name, value) in copied {
        out.put_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.put_slice(
        format!("Warning: 399 tandem \"{reason}\"\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    );
    Some(out.freeze())
}

#[cfg(test)]
mod tests;

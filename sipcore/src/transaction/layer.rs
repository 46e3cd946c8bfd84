//! The transaction layer: the tokio driver of the four state machines.
//!
//! [`TransactionLayer`] keeps every live transaction in one map, keyed per
//! RFC 3261 §17.1.3 (client: top Via branch + CSeq method, [`ClientKey`])
//! and §17.2.3 (server: branch + sent-by + method, ACK counted as INVITE,
//! [`ServerKey`]). It stores the messages the machines refer to (the
//! request, the last response, the ACK for a non-2xx), carries out their
//! [`Action`]s and runs all their timers from one tokio task: a queue of
//! deadlines per timer duration (see [`super::deadlines`]) and
//! `sleep_until` on the earliest.
//!
//! Input comes from two sides, both synchronous calls:
//! * the transport hands every message to [`TransactionLayer::on_incoming`]
//!   (or, parsed, to [`TransactionLayer::on_message`]), and reports late
//!   send failures to [`TransactionLayer::transport_error`];
//! * the TU (proxy or UA) calls [`TransactionLayer::send_request`] and
//!   [`TransactionLayer::send_response`].
//!
//! Output goes to the network through a [`Transmit`] (an
//! `mpsc::UnboundedSender<Outgoing>` is one) and to the TU as [`TuEvent`]s
//! through a [`TuReceiver`]: two queues. Events of transactions that exist
//! (responses to our requests, timeouts, terminations, the ACK of a
//! non-2xx) are bounded by the work already admitted and are never
//! dropped. What strangers can send at will (new requests, stray
//! responses, ACKs of 2xx) goes through a bounded queue: when it is full a
//! new request other than ACK is not admitted — an initial INVITE gets a
//! stateless 503 with Retry-After, anything else is dropped for its
//! sender to retransmit — and each is counted ([`OverloadStats`]).
//!
//! Retransmitted requests are absorbed here (the stored response is sent
//! again), responses that match no client transaction and ACKs that match
//! no INVITE server transaction (the ACK of a 2xx, which is its own
//! transaction) are handed to the TU as stray messages to deal with —
//! stray responses only when their branch is one we made
//! ([`TransactionLayer::set_branch_key`]), the rest are counted and
//! dropped. A request the TU will not serve is ended with
//! [`TransactionLayer::forget`]: answered once or not at all, nothing kept
//! that would retransmit to a spoofed source.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::deadlines::Deadlines;
use super::{
    Action, BranchKey, ClientEvent, ClientInvite, ClientInviteState, ClientNonInvite,
    ClientNonInviteState, ServerEvent, ServerInvite, ServerInviteState, ServerNonInvite,
    ServerNonInviteState, Timer, TimerConfig,
};
use crate::gate::SourceClass;
use crate::message::{Message, Method, RequestBuilder, ResponseBuilder};
use crate::transport::{Incoming, Target};
use crate::{Map, ParseError};

/// One message for the transport, with the transaction that sends it so
/// that a failure detected later can be reported back with
/// [`TransactionLayer::transport_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub key: TransactionKey,
    pub target: Target,
    pub bytes: Bytes,
}

/// How the layer sends. `send` is called with the layer's lock held: it
/// must not block (queue the bytes) and must not call back into the layer.
/// An `Err` is a transport error (§17.1.4, §17.2.4) for the transaction
/// that sent; a failure found after `send` returned goes to
/// [`TransactionLayer::transport_error`].
pub trait Transmit: Send + Sync + 'static {
    fn send(&self, out: Outgoing) -> crate::Result<()>;
}

/// Queues into a channel, e.g. for a task that awaits
/// [`crate::transport::Transports::send`].
impl Transmit for mpsc::UnboundedSender<Outgoing> {
    fn send(&self, out: Outgoing) -> crate::Result<()> {
        let addr = out.target.addr;
        mpsc::UnboundedSender::send(self, out).map_err(|_| {
            crate::Error::io(
                format!("sending to {addr}"),
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "transport channel closed"),
            )
        })
    }
}

/// The magic cookie of an RFC 3261 branch (§8.1.1.7).
pub(crate) const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identifies a client transaction (§17.1.3): the branch of the top Via and
/// the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientKey {
    pub branch: String,
    pub method: Method,
}

impl ClientKey {
    /// The key of a request sent or of a response received; `None` when the
    /// top Via has no branch.
    pub fn from_message(msg: &Message) -> Option<ClientKey> {
        let branch = msg.top_via().branch()?;
        Some(ClientKey {
            branch: branch.to_owned(),
            method: msg.cseq().method.clone(),
        })
    }
}

/// Identifies a server transaction (§17.2.3): branch, sent-by and method of
/// the request, where an ACK counts as INVITE so that it matches the INVITE
/// transaction it acknowledges. A CANCEL has its own transaction; see
/// [`TransactionLayer::find_invite_for_cancel`].
///
/// A request whose branch lacks the RFC 3261 magic cookie (an RFC 2543
/// element) gets a `branch` built from Call-ID, From tag, CSeq number and
/// the whole top Via, which also matches its ACK for a non-2xx.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerKey {
    pub branch: String,
    /// `host:port` of the top Via, host in lower case, default port filled
    /// in.
    pub sent_by: String,
    pub method: Method,
}

impl ServerKey {
    /// The key of a received request; `None` for a response.
    pub fn from_request(msg: &Message) -> Option<ServerKey> {
        let method = match msg.method()? {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let via = msg.top_via();
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => b.to_owned(),
            _ => format!(
                "rfc2543;{};{};{};{}",
                msg.call_id(),
                msg.from_tag().unwrap_or(""),
                msg.cseq().seq,
                via.raw
            ),
        };
        let sent_by = format!("{}:{}", via.host.to_ascii_lowercase(), via.sent_by_port());
        Some(ServerKey {
            branch,
            sent_by,
            method,
        })
    }
}

/// Either kind of key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionKey {
    Client(ClientKey),
    Server(ServerKey),
}

/// The state of a transaction, for inspection (tests, status page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransactionState {
    ClientInvite(ClientInviteState),
    ClientNonInvite(ClientNonInviteState),
    ServerInvite(ServerInviteState),
    ServerNonInvite(ServerNonInviteState),
}

/// What the layer tells the TU.
#[derive(Debug, Clone)]
pub enum TuEvent {
    /// A new request (not ACK) created a server transaction. Answer it with
    /// [`TransactionLayer::send_response`] and `key`.
    Request {
        key: ServerKey,
        request: Message,
        source: Target,
    },
    /// A response of a client transaction: provisional, final, or (RFC 6026)
    /// a retransmitted or forked 2xx to an INVITE, which the TU ACKs.
    Response { key: ClientKey, response: Message },
    /// An ACK. `key` is the INVITE server transaction it matched (in state
    /// Accepted, i.e. an ACK for a 2xx sharing the INVITE's branch), or
    /// `None` when it matched no transaction (an ACK for a 2xx, §17).
    Ack {
        key: Option<ServerKey>,
        ack: Message,
        source: Target,
    },
    /// A response that matched no client transaction (§18.1.2); a proxy
    /// forwards it statelessly (§16.7).
    StrayResponse { response: Message, source: Target },
    /// Timer B or F fired without a final response (treat as 408), or
    /// Timer H fired without an ACK.
    Timeout { key: TransactionKey, timer: Timer },
    /// The transport failed to send for this transaction.
    TransportError { key: TransactionKey },
    /// The transaction is gone; later messages with its key start anew
    /// (requests) or are stray (responses).
    Terminated { key: TransactionKey },
}

/// Misuse of the layer by the TU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("invalid timer configuration: {0}")]
    Config(&'static str),
    #[error("expected a request")]
    NotARequest,
    #[error("expected a response")]
    NotAResponse,
    #[error("ACK is not sent through a client transaction")]
    Ack,
    #[error("the top Via of the request has no branch")]
    NoBranch,
    #[error("a transaction with this key exists already: {0:?}")]
    Exists(TransactionKey),
    #[error("no such transaction: {0:?}")]
    NoSuchTransaction(TransactionKey),
    #[error("the transaction does not take a {status} response in state {state:?}")]
    ResponseRefused {
        status: u16,
        state: TransactionState,
    },
}

/// A response [`TransactionLayer::try_send_response`] did not send, and
/// why.
#[derive(Debug)]
pub struct Unsent {
    pub error: TransactionError,
    pub response: Message,
}

/// The ACK for a non-2xx final response (§17.1.1.3): Request-URI, Call-ID,
/// From and CSeq number of the request, method ACK, To of the response, the
/// single top Via of the request and the request's Route headers.
pub fn build_ack(request: &Message, response: &Message) -> Bytes {
    RequestBuilder::new(&Method::Ack, request.request_uri_str().unwrap_or_default())
        .header("Via", request.top_via().raw)
        .headers("Route", request.headers("Route"))
        .header("From", request.header("From").unwrap_or_default())
        .header("To", response.header("To").unwrap_or_default())
        .header("Call-ID", request.call_id())
        .header("CSeq", &format!("{} ACK", request.cseq().seq))
        .build()
}

/// Where responses to `request` received from `source` go (§18.2.2): back
/// on the connection for reliable transports; for UDP to the source address
/// with the source port if the Via asks for `rport` (RFC 3581), else the
/// sent-by port.
pub fn response_target(request: &Message, source: Target) -> Target {
    if source.transport.is_stream() {
        return source;
    }
    let via = request.top_via();
    if via.rport().is_some() {
        return source;
    }
    Target {
        addr: SocketAddr::new(source.addr.ip(), via.sent_by_port()),
        ..source
    }
}

/// The machine of a transaction, by the usual abbreviations: INVITE client
/// (ICT), non-INVITE client (NICT), INVITE server (IST), non-INVITE server
/// (NIST).
#[derive(Debug, Clone)]
enum Machine {
    Ict(ClientInvite),
    Nict(ClientNonInvite),
    Ist(ServerInvite),
    Nist(ServerNonInvite),
}

impl Machine {
    fn client(&mut self, event: ClientEvent) -> Vec<Action> {
        match self {
            Machine::Ict(m) => m.handle(event),
            Machine::Nict(m) => m.handle(event),
            _ => vec![],
        }
    }

    fn server(&mut self, event: ServerEvent) -> Vec<Action> {
        match self {
            Machine::Ist(m) => m.handle(event),
            Machine::Nist(m) => m.handle(event),
            _ => vec![],
        }
    }

    fn timer(&mut self, timer: Timer) -> Vec<Action> {
        match self {
            Machine::Ict(m) => m.handle(ClientEvent::TimerFired(timer)),
            Machine::Nict(m) => m.handle(ClientEvent::TimerFired(timer)),
            Machine::Ist(m) => m.handle(ServerEvent::TimerFired(timer)),
            Machine::Nist(m) => m.handle(ServerEvent::TimerFired(timer)),
        }
    }

    fn transport_error(&mut self) -> Vec<Action> {
        match self {
            Machine::Ict(m) => m.handle(ClientEvent::TransportError),
            Machine::Nict(m) => m.handle(ClientEvent::TransportError),
            Machine::Ist(m) => m.handle(ServerEvent::TransportError),
            Machine::Nist(m) => m.handle(ServerEvent::TransportError),
        }
    }

    fn state(&self) -> TransactionState {
        match self {
            Machine::Ict(m) => TransactionState::ClientInvite(m.state()),
            Machine::Nict(m) => TransactionState::ClientNonInvite(m.state()),
            Machine::Ist(m) => TransactionState::ServerInvite(m.state()),
            Machine::Nist(m) => TransactionState::ServerNonInvite(m.state()),
        }
    }
}

/// One live transaction with the messages its machine refers to.
struct Entry {
    key: TransactionKey,
    machine: Machine,
    /// A server transaction opened for a stranger (counted apart).
    stranger: bool,
    /// The request sent (client) or received (server); dropped once the
    /// machine can no longer need it (see [`Entry::shed`]).
    request: Option<Message>,
    /// Client: where the request goes. Server: where responses go.
    target: Target,
    last_response: Option<Bytes>,
    ack: Option<Bytes>,
    /// Running timers and the sequence number of their heap entry; heap
    /// entries whose number is not here any more are stale.
    timers: Vec<(Timer, u64)>,
    /// A server transaction counted among the waiting ones (see
    /// [`Entry::is_waiting`]) rather than the live ones.
    waiting: bool,
}

impl Entry {
    /// Whether this is a server transaction in a pure wait state: it can
    /// no longer make the TU work, it only absorbs retransmissions (a
    /// retransmitted request gets the stored final response or nothing)
    /// and, after a 2xx (RFC 6026 Accepted), passes ACKs on, which the TU
    /// also takes when no transaction matches them. These states last up
    /// to 64*T1 (32 s) after a call's work is done, so they are counted
    /// and bounded apart from the live ones ([`TuQueueConfig`]): at a
    /// sustained rate they would otherwise fill the live cap and refuse
    /// new calls while the TU idles. A non-2xx final waiting for its ACK
    /// (Completed) stays live: it retransmits, and Timer H tells the TU.
    fn is_waiting(&self) -> bool {
        use ServerInviteState as Ist;
        use ServerNonInviteState as Nist;
        matches!(
            self.machine.state(),
            TransactionState::ServerInvite(Ist::Accepted | Ist::Confirmed)
                | TransactionState::ServerNonInvite(Nist::Completed)
        )
    }

    /// Drops the messages the machine's state can no longer use. The wait
    /// states last up to 64*T1 (32 s) and only absorb retransmissions, so
    /// at a few thousand calls a second they would otherwise hold a
    /// hundred thousand copies of requests and responses nobody reads.
    fn shed(&mut self) {
        use ClientInviteState as Ict;
        use ClientNonInviteState as Nict;
        use ServerInviteState as Ist;
        use ServerNonInviteState as Nist;
        let (request, response) = match self.machine.state() {
            // The ACK for a non-2xx is built (Completed); a 2xx goes to
            // the TU (Accepted): no retransmission of the request.
            TransactionState::ClientInvite(Ict::Completed | Ict::Accepted | Ict::Terminated) => {
                (false, false)
            }
            TransactionState::ClientNonInvite(Nict::Completed | Nict::Terminated) => (false, false),
            // Completed resends the final response to a retransmission.
            TransactionState::ServerInvite(Ist::Completed) => (false, true),
            TransactionState::ServerInvite(Ist::Confirmed | Ist::Accepted | Ist::Terminated) => {
                (false, false)
            }
            TransactionState::ServerNonInvite(Nist::Completed) => (false, true),
            TransactionState::ServerNonInvite(Nist::Terminated) => (false, false),
            _ => (true, true),
        };
        if !request {
            self.request = None;
        }
        if !response {
            self.last_response = None;
        }
    }
}

/// What triggered a batch of actions.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    None,
    Received(&'a Message, &'a Target),
    Sending(&'a Message),
}

#[derive(Default)]
struct Inner {
    entries: Map<u64, Entry>,
    index: Map<TransactionKey, u64>,
    /// (deadline, sequence, entry id, timer), earliest first.
    heap: Deadlines,
    next_id: u64,
    next_seq: u64,
    /// The key of our branches: with one, a response that matches no
    /// transaction reaches the TU only when its branch is ours.
    branch_key: Option<BranchKey>,
    /// Server transactions, and those of them opened for strangers
    /// (waiting ones included).
    servers: usize,
    stranger_servers: usize,
    /// Server transactions in a wait state, in the order they entered it
    /// (oldest first, the first to evict), trusted sources' and
    /// strangers' apart so that strangers only ever evict their own. Ids
    /// of entries that ended since stay until they reach the front: a
    /// wait lasts at most 64*T1, so these queues hold at most the
    /// transactions of that long.
    waiting: WaitingSet,
    stranger_waiting: WaitingSet,
    /// How often the timer task woke (the tests count wake-ups).
    #[cfg(test)]
    timer_wakes: u64,
}

/// The wait-state server transactions of one class of source.
#[derive(Default)]
struct WaitingSet {
    /// Entries counted here now.
    len: usize,
    /// Their ids, oldest first, with ids of entries gone since.
    order: VecDeque<u64>,
}

struct Shared {
    inner: Mutex<Inner>,
    config: TimerConfig,
    transmit: Arc<dyn Transmit>,
    /// Events of existing transactions.
    tu: mpsc::UnboundedSender<TuEvent>,
    /// New requests and stray messages (bounded). Sent to only with
    /// `inner` locked, so a capacity seen there is still free at the send.
    tu_new: mpsc::Sender<TuEvent>,
    queue: TuQueueConfig,
    overload_rejected: AtomicU64,
    overload_dropped: AtomicU64,
    /// Stray responses whose branch we did not make, dropped.
    unverified_dropped: AtomicU64,
    /// Wait-state server transactions ended early to stay under
    /// `queue.max_waiting_transactions`.
    evicted: AtomicU64,
    /// Wakes the timer task when an earlier deadline is added or the layer
    /// is dropped.
    notify: Arc<Notify>,
}

impl Shared {
    /// Queues new work for the TU, or counts it dropped when the queue is
    /// full (only stray messages can find it full: new requests were
    /// checked before their transaction was made). A stranger's stray
    /// message may only take the strangers' share of the queue.
    fn new_work(&self, event: TuEvent, class: SourceClass) {
        if class == SourceClass::Stranger && self.queued() >= self.queue.stranger_capacity {
            self.overload_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(e) = self.tu_new.try_send(event) {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                self.overload_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// New work waiting for the TU now.
    fn queued(&self) -> usize {
        self.tu_new.max_capacity() - self.tu_new.capacity()
    }

    /// Whether a new server transaction may be opened for a request from
    /// a source of `class`: room in the TU queue and under the caps on
    /// server transactions. Strangers get their share only, so that the
    /// rest is always there for trusted sources however many strangers
    /// send.
    fn has_room(&self, inner: &Inner, class: SourceClass) -> bool {
        let q = &self.queue;
        let queued = self.queued();
        let room = queued < q.capacity && inner.live_servers() < q.max_server_transactions;
        match class {
            SourceClass::Trusted => room,
            SourceClass::Stranger => {
                room && queued < q.stranger_capacity
                    && inner.live_stranger_servers() < q.max_stranger_transactions
            }
        }
    }

    /// A new request while the TU queue is full or a cap is reached: an
    /// initial INVITE from a trusted source gets a stateless 503 with
    /// Retry-After (the caller may try elsewhere now), anything else is
    /// dropped (in-dialog requests are retransmitted; a stranger, whose
    /// address may be forged, gets nothing back).
    fn turn_away(&self, request: &Message, source: Target, class: SourceClass) {
        let initial_invite = class == SourceClass::Trusted
            && request.method() == Some(&Method::Invite)
            && request.to_tag().is_none();
        let Some(key) = ServerKey::from_request(request).filter(|_| initial_invite) else {
            self.overload_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let bytes = ResponseBuilder::new(request, 503, "Service Unavailable")
            .header("Retry-After", &self.queue.retry_after_s.to_string())
            .header("Warning", "399 tandem \"overloaded\"")
            .build();
        let out = Outgoing {
            key: TransactionKey::Server(key),
            target: response_target(request, source),
            bytes,
        };
        let _ = self.transmit.send(out);
        self.overload_rejected.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.notify.notify_one();
    }
}

/// The bounded queue of new work toward the TU, and the caps on server
/// transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TuQueueConfig {
    /// New requests and stray messages waiting for the TU, at most.
    pub capacity: usize,
    /// The Retry-After (seconds) of the 503 an INVITE gets when full.
    pub retry_after_s: u32,
    /// Of `capacity`, what strangers' messages may fill (the rest is kept
    /// for trusted sources).
    pub stranger_capacity: usize,
    /// Live server transactions at most (those that can still make the TU
    /// work): a new request beyond it is turned away as when the queue is
    /// full.
    pub max_server_transactions: usize,
    /// Of those, strangers' at most.
    pub max_stranger_transactions: usize,
    /// Server transactions in a wait state (after their final response:
    /// Timer J, I, L) at most, apart from the live ones: they never refuse
    /// new work; beyond it the oldest is ended early and counted
    /// ([`ServerTransactionStats::evicted`]).
    pub max_waiting_transactions: usize,
    /// Of those, strangers' at most: a stranger's wait state only ever
    /// evicts a stranger's.
    pub max_stranger_waiting_transactions: usize,
}

impl Default for TuQueueConfig {
    fn default() -> Self {
        TuQueueConfig {
            capacity: 2048,
            retry_after_s: 5,
            stranger_capacity: 2048,
            max_server_transactions: 100_000,
            max_stranger_transactions: 100_000,
            // 10,000 calls a second, each leaving two server transactions
            // (its INVITE and one BYE) waiting 32 s.
            max_waiting_transactions: 640_000,
            max_stranger_waiting_transactions: 640_000,
        }
    }
}

/// What the full TU queue turned away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverloadStats {
    /// Initial INVITEs answered with a stateless 503.
    pub rejected: u64,
    /// Other requests and stray messages dropped (their senders
    /// retransmit).
    pub dropped: u64,
}

/// The server transactions now, by kind, and the wait states ended early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerTransactionStats {
    /// Those that can still make the TU work (under
    /// [`TuQueueConfig::max_server_transactions`]).
    pub live: usize,
    /// Those in a wait state, only absorbing retransmissions (under
    /// [`TuQueueConfig::max_waiting_transactions`]).
    pub waiting: usize,
    /// Wait states ended early since the start, to stay under their cap:
    /// a retransmission that comes later starts a new transaction.
    pub evicted: u64,
}

impl OverloadStats {
    /// Sums another layer's figures into these (a sharded node's
    /// endpoints). Destructured without `..`: a new field must be summed.
    pub fn add(&mut self, other: &OverloadStats) {
        let OverloadStats { rejected, dropped } = other;
        self.rejected = self.rejected.saturating_add(*rejected);
        self.dropped = self.dropped.saturating_add(*dropped);
    }
}

impl ServerTransactionStats {
    /// Sums another layer's figures into these, the gauges too (a
    /// sharded node's transactions are all its shards'). Destructured
    /// without `..`: a new field must be summed.
    pub fn add(&mut self, other: &ServerTransactionStats) {
        let ServerTransactionStats {
            live,
            waiting,
            evicted,
        } = other;
        self.live = self.live.saturating_add(*live);
        self.waiting = self.waiting.saturating_add(*waiting);
        self.evicted = self.evicted.saturating_add(*evicted);
    }
}

/// The TU's side of the layer: events of existing transactions first,
/// then new work.
#[derive(Debug)]
pub struct TuReceiver {
    known: mpsc::UnboundedReceiver<TuEvent>,
    new_work: mpsc::Receiver<TuEvent>,
}

impl TuReceiver {
    /// The next event; None once the layer is gone and both queues are
    /// empty.
    pub async fn recv(&mut self) -> Option<TuEvent> {
        tokio::select! {
            biased;
            Some(e) = self.known.recv() => Some(e),
            Some(e) = self.new_work.recv() => Some(e),
            else => None,
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<TuEvent> {
        self.known
            .try_recv()
            .ok()
            .or_else(|| self.new_work.try_recv().ok())
    }
}

/// The transaction layer; cheap to clone (all clones share one state and
/// one timer task, which ends when the last clone is dropped).
#[derive(Clone)]
pub struct TransactionLayer {
    shared: Arc<Shared>,
}

impl TransactionLayer {
    /// Creates the layer and spawns its timer task on the current tokio
    /// runtime (panics outside one). Returns the receiver of the TU events.
    pub fn new(
        config: TimerConfig,
        transmit: Arc<dyn Transmit>,
    ) -> Result<(TransactionLayer, TuReceiver), TransactionError> {
        Self::with_queue(config, transmit, TuQueueConfig::default())
    }

    /// [`new`](Self::new) with the TU queue's bound given.
    pub fn with_queue(
        config: TimerConfig,
        transmit: Arc<dyn Transmit>,
        queue: TuQueueConfig,
    ) -> Result<(TransactionLayer, TuReceiver), TransactionError> {
        config.validate().map_err(TransactionError::Config)?;
        let (tu, known) = mpsc::unbounded_channel();
        let (tu_new, new_work) = mpsc::channel(queue.capacity.max(1));
        let notify = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            config,
            transmit,
            tu,
            tu_new,
            queue,
            overload_rejected: AtomicU64::new(0),
            overload_dropped: AtomicU64::new(0),
            unverified_dropped: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            notify: notify.clone(),
        });
        tokio::spawn(timer_task(Arc::downgrade(&shared), notify));
        Ok((TransactionLayer { shared }, TuReceiver { known, new_work }))
    }

    /// What the full TU queue turned away so far.
    pub fn overload_stats(&self) -> OverloadStats {
        OverloadStats {
            rejected: self.shared.overload_rejected.load(Ordering::Relaxed),
            dropped: self.shared.overload_dropped.load(Ordering::Relaxed),
        }
    }

    pub fn config(&self) -> TimerConfig {
        self.shared.config
    }

    /// The server transactions now, live and waiting, and the waiting ones
    /// evicted so far.
    pub fn server_stats(&self) -> ServerTransactionStats {
        let inner = self.lock();
        ServerTransactionStats {
            live: inner.live_servers(),
            waiting: inner.waiting.len + inner.stranger_waiting.len,
            evicted: self.shared.evicted.load(Ordering::Relaxed),
        }
    }

    /// From now on a response that matches no client transaction is
    /// passed to the TU only when its top Via branch was made with `key`
    /// ([`BranchKey::branch`]); the others are dropped and counted
    /// ([`Self::unverified_responses`]). Without a key every stray
    /// response is passed (a stateless proxy forwards them, §16.7).
    pub fn set_branch_key(&self, key: BranchKey) {
        self.lock().branch_key = Some(key);
    }

    /// Stray responses dropped because their branch is not ours.
    pub fn unverified_responses(&self) -> u64 {
        self.shared.unverified_dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; go on.
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Input from the transport: a message received from a trusted
    /// `source`.
    pub fn on_message(&self, msg: Message, source: Target) {
        self.on_message_from(msg, source, SourceClass::Trusted)
    }

    /// [`on_message`](Self::on_message) from a source of `class`.
    pub fn on_message_from(&self, msg: Message, source: Target, class: SourceClass) {
        let shared = &*self.shared;
        let mut inner = self.lock();
        if let Some(status) = msg.status() {
            let id = ClientKey::from_message(&msg)
                .and_then(|k| inner.index.get(&TransactionKey::Client(k)).copied());
            match id {
                Some(id) => {
                    let actions = inner.machine(id).client(ClientEvent::Response(status));
                    inner.apply(shared, id, actions, Ctx::Received(&msg, &source));
                }
                // A response to nothing of ours (a forged 2xx naming a
                // victim in Contact, say): a silent counted drop, before
                // it costs a place in the TU queue.
                None if !inner.branch_is_ours(&msg) => {
                    shared.unverified_dropped.fetch_add(1, Ordering::Relaxed);
                }
                None => shared.new_work(
                    TuEvent::StrayResponse {
                        response: msg,
                        source,
                    },
                    class,
                ),
            }
            return;
        }
        let Some(key) = ServerKey::from_request(&msg) else {
            return;
        };
        let is_ack = msg.method() == Some(&Method::Ack);
        let tkey = TransactionKey::Server(key);
        if let Some(&id) = inner.index.get(&tkey) {
            let event = if is_ack {
                ServerEvent::Ack
            } else {
                ServerEvent::Retransmission
            };
            let actions = inner.machine(id).server(event);
            inner.apply(shared, id, actions, Ctx::Received(&msg, &source));
        } else if is_ack {
            shared.new_work(
                TuEvent::Ack {
                    key: None,
                    ack: msg,
                    source,
                },
                class,
            );
        } else if !shared.has_room(&inner, class) {
            // The TU is behind: no transaction, so the sender's
            // retransmission (or a later INVITE) tries again.
            shared.turn_away(&msg, source, class);
        } else {
            let reliable = source.transport.is_stream();
            let (machine, actions) = if msg.method() == Some(&Method::Invite) {
                let (m, a) = ServerInvite::new(shared.config, reliable);
                (Machine::Ist(m), a)
            } else {
                let (m, a) = ServerNonInvite::new(shared.config, reliable);
                (Machine::Nist(m), a)
            };
            let target = response_target(&msg, source);
            let id = inner.insert(tkey, machine, msg.clone(), target);
            inner.count_server(id, class);
            inner.apply(shared, id, actions, Ctx::Received(&msg, &source));
        }
    }

    /// Input from [`crate::transport`]: parses the message and hands it to
    /// [`Self::on_message`] with the connection-aware source. A parse error
    /// is returned for the caller to answer (400) or drop.
    pub fn on_incoming(&self, incoming: Incoming) -> Result<(), ParseError> {
        let msg = Message::parse(incoming.data.clone())?;
        self.on_message(msg, incoming.reply_target());
        Ok(())
    }

    /// A send of transaction `key` failed after [`Transmit::send`] had
    /// accepted it (e.g. a TCP connect that failed later).
    pub fn transport_error(&self, key: &TransactionKey) {
        let shared = &*self.shared;
        let mut inner = self.lock();
        if let Some(&id) = inner.index.get(key) {
            let actions = inner.machine(id).transport_error();
            inner.apply(shared, id, actions, Ctx::None);
        }
    }

    /// Sends `request` to `target` as a new client transaction. The top Via
    /// must carry a branch unique to this request (the key).
    pub fn send_request(
        &self,
        request: Message,
        target: Target,
    ) -> Result<ClientKey, TransactionError> {
        let method = request.method().ok_or(TransactionError::NotARequest)?;
        if *method == Method::Ack {
            return Err(TransactionError::Ack);
        }
        let key = ClientKey::from_message(&request).ok_or(TransactionError::NoBranch)?;
        let tkey = TransactionKey::Client(key.clone());
        let shared = &*self.shared;
        let mut inner = self.lock();
        if inner.index.contains_key(&tkey) {
            return Err(TransactionError::Exists(tkey));
        }
        let reliable = target.transport.is_stream();
        let (machine, actions) = if *method == Method::Invite {
            let (m, a) = ClientInvite::new(shared.config, reliable);
            (Machine::Ict(m), a)
        } else {
            let (m, a) = ClientNonInvite::new(shared.config, reliable);
            (Machine::Nict(m), a)
        };
        let id = inner.insert(tkey, machine, request, target);
        inner.apply(shared, id, actions, Ctx::None);
        Ok(key)
    }

    /// Sends `response` on the server transaction `key`. An INVITE
    /// transaction in state Accepted takes the TU's 2xx retransmissions.
    pub fn send_response(
        &self,
        key: &ServerKey,
        response: Message,
    ) -> Result<(), TransactionError> {
        self.try_send_response(key, response)
            .map_err(|unsent| unsent.error)
    }

    /// [`TransactionLayer::send_response`], handing a response it did not
    /// send back with the reason: a TU that can still send it another way
    /// (a 2xx whose transaction this layer has ended early) needs no copy
    /// of every response it sends.
    pub fn try_send_response(&self, key: &ServerKey, response: Message) -> Result<(), Box<Unsent>> {
        let unsent = |error, response| Box::new(Unsent { error, response });
        let Some(status) = response.status() else {
            return Err(unsent(TransactionError::NotAResponse, response));
        };
        let tkey = TransactionKey::Server(key.clone());
        let shared = &*self.shared;
        let mut inner = self.lock();
        let Some(&id) = inner.index.get(&tkey) else {
            return Err(unsent(TransactionError::NoSuchTransaction(tkey), response));
        };
        let machine = inner.machine(id);
        let state = machine.state();
        let actions = machine.server(ServerEvent::TuResponse(status));
        if !actions.contains(&Action::SendResponse) {
            return Err(unsent(
                TransactionError::ResponseRefused { status, state },
                response,
            ));
        }
        inner.apply(shared, id, actions, Ctx::Sending(&response));
        Ok(())
    }

    /// Ends the server transaction `key` at once, after sending `answer`
    /// (if any) exactly once: no retransmission, no 100 Trying, no wait
    /// state. For a request the TU will not serve (from a source it does
    /// not know, which may be spoofed): a retransmission of it starts
    /// anew, so each request received gets at most one answer and a
    /// stranger never makes Tandem send more than it sent.
    pub fn forget(&self, key: &ServerKey, answer: Option<Message>) {
        let tkey = TransactionKey::Server(key.clone());
        let mut inner = self.lock();
        let Some(id) = inner.index.get(&tkey).copied() else {
            return;
        };
        let Some(entry) = inner.remove(id) else {
            return;
        };
        if let Some(answer) = answer.filter(|m| m.is_response()) {
            let _ = self.shared.transmit.send(Outgoing {
                key: tkey,
                target: entry.target,
                bytes: answer.as_bytes().clone(),
            });
        }
    }

    /// The INVITE server transaction that the CANCEL transaction `cancel`
    /// cancels (§9.2: same branch and sent-by), if it is still there.
    pub fn find_invite_for_cancel(&self, cancel: &ServerKey) -> Option<ServerKey> {
        if cancel.method != Method::Cancel {
            return None;
        }
        let invite = ServerKey {
            method: Method::Invite,
            ..cancel.clone()
        };
        let found = self
            .lock()
            .index
            .contains_key(&TransactionKey::Server(invite.clone()));
        found.then_some(invite)
    }

    /// The state of the transaction `key`, if it exists.
    pub fn state(&self, key: &TransactionKey) -> Option<TransactionState> {
        let inner = self.lock();
        let id = inner.index.get(key)?;
        inner.entries.get(id).map(|e| e.machine.state())
    }

    /// Whether the transaction `key` still holds its request and its last
    /// response (what [`Entry::shed`] left).
    #[cfg(test)]
    fn holds(&self, key: &TransactionKey) -> Option<(bool, bool)> {
        let inner = self.lock();
        let e = inner.entries.get(inner.index.get(key)?)?;
        Some((e.request.is_some(), e.last_response.is_some()))
    }

    /// The number of live transactions.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How often the timer task woke so far.
    #[cfg(test)]
    fn timer_wakes(&self) -> u64 {
        self.lock().timer_wakes
    }
}

impl Inner {
    /// Whether a response's top Via branch is one of ours (always, when
    /// no key is set).
    fn branch_is_ours(&self, response: &Message) -> bool {
        match &self.branch_key {
            None => true,
            Some(key) => response.top_via().branch().is_some_and(|b| key.verify(b)),
        }
    }

    fn insert(
        &mut self,
        key: TransactionKey,
        machine: Machine,
        request: Message,
        target: Target,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.index.insert(key.clone(), id);
        let entry = Entry {
            key,
            machine,
            stranger: false,
            request: Some(request),
            target,
            last_response: None,
            ack: None,
            timers: Vec::new(),
            waiting: false,
        };
        self.entries.insert(id, entry);
        id
    }

    /// Counts the new server transaction `id` against the caps.
    fn count_server(&mut self, id: u64, class: SourceClass) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.stranger = class == SourceClass::Stranger;
            self.servers += 1;
            self.stranger_servers += usize::from(entry.stranger);
        }
    }

    /// Server transactions that can still make the TU work.
    fn live_servers(&self) -> usize {
        self.servers - self.waiting.len - self.stranger_waiting.len
    }

    fn live_stranger_servers(&self) -> usize {
        self.stranger_servers - self.stranger_waiting.len
    }

    /// Removes entry `id` with its index and counts. Its timers stay in the
    /// heap and are skipped when they fire.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.index.remove(&entry.key);
        if matches!(entry.key, TransactionKey::Server(_)) {
            self.servers -= 1;
            self.stranger_servers -= usize::from(entry.stranger);
        }
        if entry.waiting {
            self.waiting_set(entry.stranger).len -= 1;
        }
        Some(entry)
    }

    fn waiting_set(&mut self, stranger: bool) -> &mut WaitingSet {
        if stranger {
            &mut self.stranger_waiting
        } else {
            &mut self.waiting
        }
    }

    /// Moves server entry `id` from the live count to the waiting one if
    /// its machine has just entered a wait state, and keeps the waiting
    /// ones of its class under their caps by ending the oldest early. A
    /// stranger's ends a stranger's only: its own, if no other stranger's
    /// is waiting.
    fn note_waiting(&mut self, shared: &Shared, id: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.waiting || !entry.is_waiting() {
            return;
        }
        entry.waiting = true;
        let stranger = entry.stranger;
        let q = &shared.queue;
        let total = self.waiting.len + self.stranger_waiting.len;
        let over = if stranger {
            self.stranger_waiting.len >= q.max_stranger_waiting_transactions
                || total >= q.max_waiting_transactions
        } else {
            total >= q.max_waiting_transactions
        };
        let set = self.waiting_set(stranger);
        set.len += 1;
        set.order.push_back(id);
        if over {
            self.evict_oldest(shared, stranger);
        }
        // Drop ids of entries gone since (ended by their timer) from the
        // front, so the queue follows the set.
        let Inner {
            entries,
            waiting,
            stranger_waiting,
            ..
        } = self;
        let set = if stranger { stranger_waiting } else { waiting };
        while set
            .order
            .front()
            .is_some_and(|id| !entries.contains_key(id))
        {
            set.order.pop_front();
        }
    }

    /// Ends the oldest waiting server transaction of `stranger`'s class.
    fn evict_oldest(&mut self, shared: &Shared, stranger: bool) {
        while let Some(id) = self.waiting_set(stranger).order.pop_front() {
            if let Some(entry) = self.remove(id) {
                shared.evicted.fetch_add(1, Ordering::Relaxed);
                let _ = shared.tu.send(TuEvent::Terminated { key: entry.key });
                return;
            }
        }
    }

    /// The machine of a live entry (callers got `id` from the index).
    fn machine(&mut self, id: u64) -> &mut Machine {
        &mut self
            .entries
            .get_mut(&id)
            .expect("indexed transaction exists")
            .machine
    }

    /// Carries out `actions` of entry `id`. A failed send is fed back to
    /// the machine as a transport error once the batch is done.
    fn apply(&mut self, shared: &Shared, id: u64, actions: Vec<Action>, ctx: Ctx<'_>) {
        let mut send_failed = false;
        for action in actions {
            let Inner {
                entries,
                heap,
                next_seq,
                ..
            } = self;
            let Some(entry) = entries.get_mut(&id) else {
                return;
            };
            let mut send = |bytes: Bytes| {
                let out = Outgoing {
                    key: entry.key.clone(),
                    target: entry.target,
                    bytes,
                };
                if let Err(e) = shared.transmit.send(out) {
                    tracing::debug!(target = %entry.target, error = %e, "transaction send failed");
                    send_failed = true;
                }
            };
            match action {
                Action::SendRequest => {
                    if let Some(request) = &entry.request {
                        send(request.as_bytes().clone());
                    }
                }
                Action::SendAck => {
                    if entry.ack.is_none() {
                        if let (Ctx::Received(response, _), Some(request)) = (ctx, &entry.request) {
                            entry.ack = Some(build_ack(request, response));
                        }
                    }
                    if let Some(ack) = entry.ack.clone() {
                        send(ack);
                    }
                }
                Action::SendResponse => {
                    if let Ctx::Sending(response) = ctx {
                        let bytes = response.as_bytes().clone();
                        entry.last_response = Some(bytes.clone());
                        send(bytes);
                    }
                }
                Action::ResendResponse => {
                    if let Some(bytes) = entry.last_response.clone() {
                        send(bytes);
                    }
                }
                Action::SendTrying => {
                    if let Some(request) = &entry.request {
                        let bytes = ResponseBuilder::new(request, 100, "Trying").build();
                        entry.last_response = Some(bytes.clone());
                        send(bytes);
                    }
                }
                Action::StartTimer { timer, after } => {
                    *next_seq += 1;
                    let seq = *next_seq;
                    match entry.timers.iter_mut().find(|(t, _)| *t == timer) {
                        Some(slot) => slot.1 = seq,
                        None => entry.timers.push((timer, seq)),
                    }
                    let at = Instant::now() + after;
                    let wake = super::timers::wake_time(timer, at, after);
                    let earliest = heap.wake_at().is_none_or(|first| wake < first);
                    heap.push(after, (at, seq, id, timer));
                    if earliest {
                        shared.notify.notify_one();
                    }
                }
                Action::CancelTimer(timer) => entry.timers.retain(|(t, _)| *t != timer),
                Action::PassToTu => {
                    if let Ctx::Received(msg, source) = ctx {
                        let event = match (&entry.key, msg.method()) {
                            (TransactionKey::Client(key), _) => TuEvent::Response {
                                key: key.clone(),
                                response: msg.clone(),
                            },
                            (TransactionKey::Server(key), Some(Method::Ack)) => TuEvent::Ack {
                                key: Some(key.clone()),
                                ack: msg.clone(),
                                source: *source,
                            },
                            (TransactionKey::Server(key), _) => {
                                // Admitted with room checked for it.
                                shared.new_work(
                                    TuEvent::Request {
                                        key: key.clone(),
                                        request: msg.clone(),
                                        source: *source,
                                    },
                                    SourceClass::Trusted,
                                );
                                continue;
                            }
                        };
                        let _ = shared.tu.send(event);
                    }
                }
                Action::Timeout(timer) => {
                    let _ = shared.tu.send(TuEvent::Timeout {
                        key: entry.key.clone(),
                        timer,
                    });
                }
                Action::TransportError => {
                    let _ = shared.tu.send(TuEvent::TransportError {
                        key: entry.key.clone(),
                    });
                }
                Action::Terminated => {
                    if let Some(entry) = self.remove(id) {
                        let _ = shared.tu.send(TuEvent::Terminated { key: entry.key });
                    }
                    return;
                }
            }
        }
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.shed();
        }
        self.note_waiting(shared, id);
        if send_failed {
            if let Some(entry) = self.entries.get_mut(&id) {
                let actions = entry.machine.transport_error();
                self.apply(shared, id, actions, Ctx::None);
            }
        }
    }

    /// Fires every timer due at `now`, earliest first.
    /// Gives back the room a past peak of transactions left in the tables
    /// (hash maps and heaps never shrink by themselves): after a burst of
    /// set-ups, every held call would otherwise keep its share of it.
    /// Only when a table is four times larger than needed, so a steady
    /// load never pays for it twice.
    fn shrink_after_peak(&mut self) {
        let sparse = |len: usize, cap: usize| cap > 4 * len + 1024;
        if sparse(self.entries.len(), self.entries.capacity()) {
            self.entries.shrink_to(2 * self.entries.len());
        }
        if sparse(self.index.len(), self.index.capacity()) {
            self.index.shrink_to(2 * self.index.len());
        }
        self.heap.shrink_if_sparse(sparse);
        for set in [&mut self.waiting, &mut self.stranger_waiting] {
            if sparse(set.order.len(), set.order.capacity()) {
                set.order.shrink_to(2 * set.order.len());
            }
        }
    }

    fn fire_due(&mut self, shared: &Shared, now: Instant) {
        while let Some((at, seq, id, timer)) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            let Some(pos) = entry
                .timers
                .iter()
                .position(|&(t, s)| t == timer && s == seq)
            else {
                continue;
            };
            entry.timers.swap_remove(pos);
            let actions = entry.machine.timer(timer);
            self.apply(shared, id, actions, Ctx::None);
        }
    }

    /// When the timer task wakes next: lax timers with their slack, so
    /// that their firings share wake-ups. Cancelled timers at the queues'
    /// fronts are dropped first: most timers are cancelled (Trying by the
    /// first answer, A and E by a response, B and F by the final one), and
    /// each would otherwise still wake the task at its time, one wake-up a
    /// call or more at low rates (issue 15). One cancelled after the task
    /// went to sleep still wakes it once.
    fn next_deadline(&mut self) -> Option<Instant> {
        let entries = &self.entries;
        self.heap.drop_stale_fronts(|&(_, seq, id, timer)| {
            entries
                .get(&id)
                .is_none_or(|e| !e.timers.contains(&(timer, seq)))
        });
        self.heap.wake_at()
    }
}

/// The one timer task of a layer. Holds only a weak reference so that
/// dropping the layer ends it.
async fn timer_task(shared: Weak<Shared>, notify: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
            #[cfg(test)]
            {
                inner.timer_wakes += 1;
            }
            inner.fire_due(&shared, Instant::now());
            inner.shrink_after_peak();
            inner.next_deadline()
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = notify.notified() => {}
                }
            }
            None => notify.notified().await,
        }
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;

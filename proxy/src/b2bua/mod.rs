//! The B2BUA's call machine: every call as plain data, and what happens to
//! it as `event in → actions out`.
//!
//! [`Machine::on`] takes one [`Event`] (a message or failure from the
//! transaction layer, a due timer, a tick, the relay's answer to a session
//! request) with the time it happened, and returns the [`Action`]s to carry
//! out, in order: messages to send, relay operations, CDR lines. Nothing in
//! this module does I/O or reads a clock: the driver (`crate::driver`)
//! owns the sockets, the relay and the tokio runtime, feeds events and
//! carries out actions. So every flow here can be tested by feeding events
//! and comparing the exact actions (see `tests`), under any time.
//!
//! Two narrow traits let the machine see what it does not own: the relay's
//! per-stream idle times ([`MediaView`], for media-silence and media
//! timeout checks) and the metrics ([`Observer`]).
//!
//! Files follow the SIP flows: [`invite`] (a new call and leg B's
//! answers, failover between media servers), [`in_dialog`] (ACK, BYE,
//! CANCEL, re-INVITE/UPDATE/INFO/OPTIONS forwarding), [`housekeeping`]
//! (timers, OPTIONS probes, session hygiene, the end of a call),
//! [`survival`] (resuming calls of a failed media server), [`takeover`]
//! (calls adopted from, or left to, the hot-standby peer).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod call;
mod caps;
mod housekeeping;
mod in_dialog;
mod invite;
pub mod journal;
mod location;
mod maintenance;
mod outbox;
pub mod overview;
mod policy;
mod register;
mod reload;
pub mod settings;
mod store;
mod survival;
mod takeover;
mod upstream;
mod wan;

use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::media::is_sdp;
use bytes::Bytes;
use media_relay::{SessionId, SessionInfo, Side};
use sipcore::message::{Message, Method};
use sipcore::transaction::{BranchKey, ClientKey, ServerKey, TransactionKey, TuEvent};
use sipcore::transport::{Target, TransportKind};
use sipcore::ParseError;

#[cfg(test)]
pub use call::HISTORY_MAX;
pub use call::{Call, CallHistory, Leg, MemberUse, ResumeMark, TakeoverMark, UnixMillis};
pub use maintenance::MoveReport;
use outbox::Outbox;
pub use outbox::{Action, CallEnd, RtcpMuxChange};
pub use policy::{Policy, Route};
pub use settings::{Settings, UnknownSource};
use store::{CallStore, ClientRole};

use crate::config::MemberTransport;
use crate::pool::Destinations;

/// What the machine reacts to. (A transaction-layer event is large, but
/// each event is moved once, from the driver into `on`: not worth a box.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A message, failure or end of a transaction.
    Tu(TuEvent),
    /// The relay's answer to [`Action::CreateMedia`].
    MediaCreated {
        call: u64,
        result: Result<SessionInfo, String>,
    },
    /// The earliest deadline ([`Machine::next_deadline`]) has passed.
    Timers,
    /// Every half second: session hygiene (ring limit, max duration,
    /// session timers, media timeout).
    Housekeeping,
    /// Every health interval: OPTIONS keepalives to the members.
    Probes,
    /// Every [`SURVIVAL_TICK`] (every [`IDLE_SURVIVAL_TICK`] while
    /// [`Machine::needs_fast_ticks`] is false and no pair replicates):
    /// resumes are paced; every 50 ms media silence is looked for.
    SurvivalTick,
    /// A response could not be handed to its server transaction: the
    /// transaction layer has ended it already (its cap on waiting
    /// transactions ends the oldest early). A 2xx to an INVITE still
    /// awaiting its ACK then goes on statelessly.
    ResponseUnsent { key: ServerKey, response: Message },
    /// Shutdown: new calls are refused from now on.
    Drain,
    /// Shutdown, the drain's deadline: every call still up is ended (BYE
    /// on both legs, reason `shutdown`), every call still ringing is
    /// refused with 503.
    DrainDeadline,
}

/// How long a stream of a session has been silent, as the relay sees it.
pub trait MediaView {
    /// Since the last packet received on `side` (None: nothing received
    /// yet); Err when the session does not exist.
    fn idle(&self, session: SessionId, side: Side) -> Result<Option<Duration>, ()>;
    /// Since the last ICMP port unreachable for what the relay sent to
    /// `side`'s peer, if any.
    fn refused_since(&self, session: SessionId, side: Side) -> Option<Duration>;
}

/// What the machine reports for metrics (default: nothing).
pub trait Observer {
    fn call_rejected(&mut self, _status: u16) {}
    fn call_answered(&mut self) {}
    fn call_ended(&mut self, _reason: &str, _answered: bool) {}
    fn calls_active(&mut self, _n: usize) {}
    fn setup_latency(&mut self, _d: Duration) {}
    fn member_health(&mut self, _member: &str, _up: bool) {}
    /// Member `member` is (`true`) or is no longer (`false`, after a
    /// reload) in group `group`.
    fn member_group(&mut self, _member: &str, _group: &str, _in_group: bool) {}
    fn member_state(&mut self, _member: &str, _state: &str) {}
    fn call_resumed(&mut self, _from: &str, _to: &str, _outcome: &str) {}
    fn resume_latency(&mut self, _d: Duration) {}
    /// One attempt of a move the operator asked for (`tandem move`) ended:
    /// outcomes as for [`Observer::call_resumed`].
    fn call_moved(&mut self, _from: &str, _to: &str, _outcome: &str) {}
    /// A member is draining (`tandem drain member`) or not.
    fn member_draining(&mut self, _member: &str, _draining: bool) {}
    fn route_matched(&mut self, _rule: &str) {}
    /// A message from the network refused or dropped for who sent it
    /// (see [`Refusal`]).
    fn refused(&mut self, _why: Refusal) {}
    /// A REGISTER's outcome: `ok`, `challenged`, `auth_failed`,
    /// `ignored`, `refused` (a §10.3 rule), `forbidden` (domain or AOR).
    fn register_result(&mut self, _result: &str) {}
    /// `n` failed digest authentications (REGISTER or INVITE: wrong
    /// credentials, forged nonces, replays, locked-out pairs).
    fn auth_failed(&mut self, _n: u64) {}
    /// Bindings held now.
    fn registrations_active(&mut self, _n: usize) {}
    /// A WAN's state (down or up) now.
    fn wan_state(&mut self, _wan: &str, _down: bool) {}
    /// A WAN changed state (its state is `down` now).
    fn wan_transition(&mut self, wan: &str, down: bool) {
        self.wan_state(wan, down);
    }
    /// A WAN's total time down (in fallback) so far.
    fn wan_fallback_time(&mut self, _wan: &str, _total: Duration) {}
    /// Upstream registrations per state now, in
    /// `crate::upstream::STATE_LABELS` order.
    fn upstream_states(&mut self, _counts: [usize; 5]) {}
    /// An answer to an upstream REGISTER (or its timeout).
    fn upstream_register(&mut self, _result: &str) {}
}

/// Why a message was refused or dropped before any work was done for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A request from a source that is neither a trunk nor a member nor
    /// the pair's peer, dropped (`sip.unknown_source = "drop"`)...
    UnknownSourceDropped,
    /// ...or answered once with a stateless 403 (`"403"`).
    UnknownSourceForbidden,
    /// An in-dialog request (or ACK, CANCEL) from outside the networks of
    /// the leg it names: 403 (an ACK is dropped).
    WrongDialogSource,
    /// A 2xx that matched no transaction and no leg-B dialog of ours, or
    /// whose branch we did not make: dropped.
    Stray2xx,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownSourceDropped => "unknown_source_dropped",
            Refusal::UnknownSourceForbidden => "unknown_source_403",
            Refusal::WrongDialogSource => "wrong_dialog_source",
            Refusal::Stray2xx => "stray_2xx",
        }
    }
}

/// An [`Observer`] that records nothing.
#[cfg(test)]
pub struct NoObserver;
#[cfg(test)]
impl Observer for NoObserver {}

#[derive(Debug, Clone)]
enum TimerEvent {
    /// The member did not answer leg B's INVITE at all in time.
    MemberAnswer {
        call: u64,
        key: ClientKey,
    },
    /// Retransmit a 2xx on leg `leg` until its ACK (RFC 3261 §13.3.1.4).
    Retransmit2xx {
        call: u64,
        leg: Leg,
        key: ServerKey,
        response: Box<Message>,
        interval: Duration,
        give_up: Instant,
    },
    ProbeTimeout {
        member: usize,
        key: ClientKey,
    },
    /// A member of a `probe = "off"` group rested long enough after real
    /// requests failed: it gets calls again.
    MemberRetry {
        member: usize,
    },
    /// `on_no_server = hold`: try to resume the call again.
    ResumeRetry {
        call: u64,
    },
    /// Sequential forking: a contact rang for its time.
    ForkTimeout {
        call: u64,
        key: ClientKey,
    },
}

/// Deadlines of the machine; stale events are recognised when they fire.
///
/// Two kinds a later event of the call makes moot are cancelled by it:
/// leg B's answer timeout (by the answer) and a 2xx's retransmissions (by
/// the ACK). Otherwise each would still wake the engine at its time, a
/// wake-up or two for every call at low rates (issue 15).
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    events: HashMap<u64, TimerEvent>,
    seq: u64,
    /// The running cancellable timer of each call and slot. An entry
    /// lives from a call's INVITE to its answer or ACK: held calls have
    /// none.
    cancellable: HashMap<(u64, CallTimer), u64>,
}

/// A call's cancellable timer (see [`Timers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CallTimer {
    MemberAnswer,
    Retransmit2xx(Leg),
}

impl TimerEvent {
    fn call_timer(&self) -> Option<(u64, CallTimer)> {
        match self {
            TimerEvent::MemberAnswer { call, .. } => Some((*call, CallTimer::MemberAnswer)),
            TimerEvent::Retransmit2xx { call, leg, .. } => {
                Some((*call, CallTimer::Retransmit2xx(*leg)))
            }
            _ => None,
        }
    }
}

impl Timers {
    fn at(&mut self, when: Instant, event: TimerEvent) {
        self.seq += 1;
        if let Some(slot) = event.call_timer() {
            // The newest of the kind is the one to cancel. An older one (a
            // member tried before, an earlier 2xx on the leg) stays and
            // finds itself moot when it fires, dropping what it must (a
            // 2xx's stateless route); that is rare.
            self.cancellable.insert(slot, self.seq);
        }
        self.heap.push(std::cmp::Reverse((when, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Cancels a call's timer of kind `which`, if running: its event.
    fn cancel(&mut self, call: u64, which: CallTimer) -> Option<TimerEvent> {
        let seq = self.cancellable.remove(&(call, which))?;
        self.events.remove(&seq)
    }

    /// The earliest live deadline; cancelled ones on top are dropped first.
    fn next(&mut self) -> Option<Instant> {
        while let Some(std::cmp::Reverse((_, seq))) = self.heap.peek() {
            if self.events.contains_key(seq) {
                break;
            }
            self.heap.pop();
        }
        self.heap.peek().map(|r| r.0 .0)
    }

    /// Gives back the room a past burst of timers left (see the same in
    /// sipcore's transaction layer).
    fn shrink_after_peak(&mut self) {
        if self.events.capacity() > 4 * self.events.len() + 1024 {
            self.events.shrink_to(2 * self.events.len());
        }
        if self.cancellable.capacity() > 4 * self.cancellable.len() + 1024 {
            self.cancellable.shrink_to(2 * self.cancellable.len());
        }
        if self.heap.capacity() > 4 * self.heap.len() + 1024 {
            self.heap.shrink_to(2 * self.heap.len());
        }
    }

    /// The earliest due timer and when it was due (timers a reload
    /// dropped are skipped).
    fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerEvent)> {
        loop {
            let std::cmp::Reverse((when, seq)) = *self.heap.peek()?;
            if when > now {
                return None;
            }
            self.heap.pop();
            if let Some(event) = self.events.remove(&seq) {
                if let Some(slot) = event.call_timer() {
                    if self.cancellable.get(&slot) == Some(&seq) {
                        self.cancellable.remove(&slot);
                    }
                }
                return Some((when, event));
            }
        }
    }
}

/// Tags, branches and Call-IDs: xorshift64* from a seed the driver draws
/// from the OS (tests fix it, so their action sequences are exact).
/// Branches carry the tag of the node's [`BranchKey`] as well, so a
/// response can prove it answers something we sent.
struct Tokens {
    state: u64,
    branches: BranchKey,
    /// With `sip.shards` > 1: the Call-IDs made here must hash to this
    /// shard, so that the answers to them reach it.
    steering: Option<crate::shard::steer::CallIdSteering>,
    /// The last sent-by written into a Via, and its text: the address is
    /// the same for nearly every request, and printing a `SocketAddr`
    /// costs more than the rest of the Via.
    sent_by: Option<(SocketAddr, String)>,
}

impl Tokens {
    /// A fresh Call-ID that the kernel steers back to this shard (about
    /// `shards` draws on average).
    fn call_id(&mut self) -> String {
        loop {
            let call_id = format!("{}@tandem", self.token(20));
            match &self.steering {
                Some(steering) if !steering.owns(&call_id) => continue,
                _ => return call_id,
            }
        }
    }

    fn token(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| {
                let mut x = self.state;
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                self.state = x;
                let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
                CHARS
                    .get((r % CHARS.len() as u64) as usize)
                    .map_or('x', |&c| c as char)
            })
            .collect()
    }
}

pub struct Machine {
    settings: Settings,
    /// This node's Contact per transport (UDP, TCP, TLS) and its advertised
    /// address as text, printed once: every call's INVITE, 2xx and
    /// dialogs use them, and printing a `SocketAddr` cost about 1,700
    /// instructions each time (issue 15).
    contacts: Contacts,
    advertised: String,
    /// Every destination group and its members, with their health.
    dests: Destinations,
    policy: Box<dyn Policy>,
    /// Every call and every index onto the calls.
    store: CallStore,
    /// What the current event asks the driver to do.
    out: Outbox,
    media: Box<dyn MediaView + Send>,
    obs: Box<dyn Observer + Send>,
    /// The outstanding probe of each member, and when it was sent.
    probes: Vec<Option<ClientKey>>,
    probed_at: Vec<Option<Instant>>,
    /// Per member: it answered one of a WAN's own probes since its last
    /// keepalive outcome (a keepalive lost on a lossy WAN is then no
    /// failure: the member answered in that interval all the same).
    wan_answered: Vec<bool>,
    /// Leg-B Call-IDs Tandem has already hung up (BYE sent, or the media
    /// server's own BYE taken), with when. A 2xx retransmitted for one of
    /// them (our ACK was lost) is ACKed again but gets no second BYE: a
    /// second BYE with a new CSeq is a new request for a dialog the server
    /// has already closed, which SIPp, for one, treats as a protocol error.
    hung_up_b: HashMap<String, Instant>,
    timers: Timers,
    survival: survival::Survival,
    tokens: Tokens,
    draining: bool,
    /// When this node began to serve (its last takeover; 0 without a
    /// pair): media silence of adopted calls counts from then.
    serving_since: UnixMillis,
    /// The time of the event being handled (monotonic, and wall clock).
    now: Instant,
    wall: UnixMillis,
    /// The budget of log lines about refused INVITEs.
    refusals: caps::RefusalLog,
    survival_ticks: u64,
    /// When media silence was last looked for (see `Event::SurvivalTick`).
    silence_checked_at: Option<Instant>,
    /// The registrar and location service (`[registrar]`), if on.
    registrar: Option<crate::registrar::Registrar>,
    /// The WANs to central sites (`[[wan]]`).
    wans: Vec<crate::wan::Wan>,
    /// A WAN's state changed since the driver last looked.
    wan_changed: bool,
    /// Dual registration (`[registrar.upstream]`), if on.
    upstream: Option<upstream::UpstreamLink>,
    /// A start record (`Action::CallStarted`) is asked for at each answer.
    start_records: bool,
    /// The recent past, for the status page (`overview`).
    journal: journal::Journal,
}

impl Machine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        dests: Destinations,
        policy: Box<dyn Policy>,
        media: Box<dyn MediaView + Send>,
        mut obs: Box<dyn Observer + Send>,
        track_changes: bool,
        seed: u64,
        now: Instant,
    ) -> Machine {
        let members = dests.len();
        for (i, m) in dests.members() {
            obs.member_health(&m.name, true);
            if let Some(group) = dests.group_name_of(i) {
                obs.member_group(&m.name, group, true);
            }
            obs.member_draining(&m.name, false);
        }
        // The gauge exists from the start, not from the first call.
        obs.calls_active(0);
        let wans: Vec<crate::wan::Wan> = settings
            .wans
            .iter()
            .cloned()
            .map(|s| {
                let targets = wan_probe_targets(&dests, &s);
                let mut w = crate::wan::Wan::new(s);
                w.set_probe_targets(targets);
                w
            })
            .collect();
        for w in &wans {
            obs.wan_state(w.name(), false);
        }
        Machine {
            contacts: Contacts::new(&settings),
            advertised: settings.advertised.to_string(),
            settings,
            dests,
            policy,
            store: CallStore::new(track_changes),
            out: Outbox::default(),
            media,
            obs,
            probes: vec![None; members],
            probed_at: vec![None; members],
            wan_answered: vec![false; members],
            hung_up_b: HashMap::new(),
            timers: Timers::default(),
            survival: survival::Survival::default(),
            tokens: Tokens {
                state: seed | 1,
                // Tests' branches are as reproducible as their tags; the
                // driver sets the real key (`set_branch_key`).
                branches: BranchKey::from_secret(&seed.to_le_bytes()),
                steering: None,
                sent_by: None,
            },
            draining: false,
            start_records: false,
            serving_since: 0,
            now,
            wall: 0,
            refusals: caps::RefusalLog::default(),
            survival_ticks: 0,
            silence_checked_at: None,
            registrar: None,
            wans,
            wan_changed: false,
            upstream: None,
            journal: journal::Journal::default(),
        }
    }

    /// Gives back an action list that [`Machine::on`] returned, emptied,
    /// for the next event's actions (no allocation per event).
    pub fn recycle(&mut self, actions: Vec<Action>) {
        self.out.recycle(actions);
    }

    /// Handles one event that happened at `now` (`wall`: the same moment
    /// as milliseconds since the Unix epoch) and returns what to do.
    pub fn on(&mut self, event: Event, now: Instant, wall: UnixMillis) -> Vec<Action> {
        self.now = now;
        self.wall = wall;
        match event {
            Event::Tu(ev) => self.on_tu(ev),
            Event::MediaCreated { call, result } => self.on_media_created(call, result),
            Event::Timers => self.fire_timers(),
            Event::Housekeeping => self.housekeeping(),
            Event::Probes => {
                if self.settings.probing {
                    self.send_probes();
                }
                self.wan_rounds();
            }
            Event::SurvivalTick => {
                self.survival_ticks += 1;
                // Silence is looked for every 50 ms: a tenth of the
                // default threshold, and a few lookups per call. Every
                // 5th tick of 10 ms, or on the first tick 50 ms after the
                // last look when the driver ticks slowly
                // (`IDLE_SURVIVAL_TICK`: nothing to pace, no pair).
                let every = (SILENCE_CHECK.as_millis() / SURVIVAL_TICK.as_millis()) as u64;
                let by_time = match self.silence_checked_at {
                    Some(at) => self.now.saturating_duration_since(at) >= SILENCE_CHECK,
                    None => {
                        self.silence_checked_at = Some(self.now);
                        false
                    }
                };
                if self.survival_ticks.is_multiple_of(every) || by_time {
                    self.silence_checked_at = Some(self.now);
                    self.check_media_silence();
                }
                self.drain_resumes();
            }
            Event::Drain => {
                tracing::info!(calls = self.store.len(), "draining: new calls are refused");
                self.draining = true;
            }
            Event::DrainDeadline => {
                self.draining = true;
                self.end_calls_for_shutdown();
            }
            Event::ResponseUnsent { key, response } => self.on_response_unsent(key, response),
        }
        self.upstream_step();
        self.out.take()
    }

    /// The key of the branches this node makes and accepts answers to
    /// (the pair's, or one of this process).
    pub fn set_branch_key(&mut self, key: BranchKey) {
        self.tokens.branches = key;
    }

    /// Make only Call-IDs that this shard receives the answers to.
    pub fn set_call_id_steering(&mut self, steering: crate::shard::steer::CallIdSteering) {
        self.tokens.steering = Some(steering);
        // The shards share the relay, whose sessions are named by call id.
        self.store
            .set_id_space(u64::from(steering.shard) + 1, u64::from(steering.shards));
    }

    /// Counts calls against the caps with the other shards' (see
    /// [`CallTally`](crate::shard::tally::CallTally)).
    pub fn set_call_tally(&mut self, tally: std::sync::Arc<crate::shard::tally::CallTally>) {
        self.store.set_tally(tally);
    }

    /// Cancels a call's timer: leg B's answer timeout, or a 2xx's
    /// retransmissions, with the stateless route their firing would have
    /// dropped (`fire_timers`).
    fn cancel_timer(&mut self, call: u64, which: CallTimer) {
        if let Some(TimerEvent::Retransmit2xx { key, .. }) = self.timers.cancel(call, which) {
            self.out.adopted.remove(&key);
        }
    }

    /// Cancels every cancellable timer of an ended call.
    fn cancel_call_timers(&mut self, call: u64) {
        for which in [
            CallTimer::MemberAnswer,
            CallTimer::Retransmit2xx(Leg::A),
            CallTimer::Retransmit2xx(Leg::B),
        ] {
            self.cancel_timer(call, which);
        }
    }

    /// The earliest timer deadline, for the driver to sleep until.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.timers.next()
    }

    /// Whether the survival tick must come every [`SURVIVAL_TICK`]: resumes
    /// (or moves) are waiting to be paced out. Otherwise every
    /// [`IDLE_SURVIVAL_TICK`] is enough.
    pub fn needs_fast_ticks(&self) -> bool {
        self.survival.has_queued()
    }

    /// Calls in progress.
    pub fn calls(&self) -> usize {
        self.store.len()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn on_tu(&mut self, event: TuEvent) {
        match event {
            TuEvent::Request {
                key,
                request,
                source,
            } => self.on_request(key, request, source),
            TuEvent::Response { key, response } => self.on_response(key, response),
            TuEvent::Ack { ack, source, .. } => self.on_ack(ack, source),
            TuEvent::StrayResponse { response, .. } => self.on_stray_response(response),
            TuEvent::Timeout {
                key: TransactionKey::Client(key),
                ..
            }
            | TuEvent::TransportError {
                key: TransactionKey::Client(key),
            } => self.on_client_failure(key),
            // A probe's outcome is decided by its own timeout; any other
            // role has seen its final response or failure by now.
            TuEvent::Terminated {
                key: TransactionKey::Client(key),
            } if !matches!(self.store.client(&key), Some(ClientRole::Probe { .. })) => {
                self.store.unbind_client(&key);
            }
            _ => {}
        }
    }

    fn on_request(&mut self, key: ServerKey, request: Message, source: Target) {
        let method = request.method().cloned().unwrap_or(Method::Ack);
        if !self.knows_source(&request, source) {
            return self.refuse_unknown_source(key, request);
        }
        if method == Method::Cancel {
            return self.on_cancel(key, request, source);
        }
        if request.to_tag().is_some() {
            return self.on_in_dialog_request(key, request, source);
        }
        match method {
            Method::Invite => self.on_new_invite(key, request, source),
            Method::Register => self.on_register(key, request, source),
            Method::Options => {
                // Out-of-dialog OPTIONS: trunks and SBCs ping us like we
                // ping our media servers.
                self.out.respond(
                    &key,
                    &request,
                    200,
                    "OK",
                    &[("Allow", ALLOW), ("Accept", "application/sdp")],
                );
            }
            _ => self.out.respond(
                &key,
                &request,
                405,
                "Method Not Allowed",
                &[("Allow", ALLOW)],
            ),
        }
    }

    fn on_response(&mut self, key: ClientKey, response: Message) {
        let Some(role) = self.store.client(&key).cloned() else {
            // It matched a live transaction of ours (its branch is one we
            // sent), whose role is over: a 2xx retransmission (RFC 6026).
            return self.on_2xx_retransmission(response);
        };
        let status = response.status().unwrap_or(0);
        if status >= 200 && !matches!(role, ClientRole::Probe { .. }) {
            self.store.unbind_client(&key);
        }
        match role {
            ClientRole::LegBInvite { call } => self.on_leg_b_invite_response(call, key, response),
            ClientRole::Fork { call, target } => self.on_fork_response(call, key, target, response),
            ClientRole::Forwarded {
                call,
                to,
                origin,
                request,
            } => self.on_forwarded_response(call, to, origin, request, response),
            ClientRole::Own | ClientRole::Orphaned { .. } => {}
            ClientRole::WanProbe { wan, target } => {
                self.wan_probe_answered(wan, target, status >= 200)
            }
            ClientRole::Upstream { aor } => self.on_upstream_response(aor, response),
            ClientRole::Probe { member } => {
                if let Some(p) = self
                    .probes
                    .get_mut(member)
                    .filter(|p| p.as_ref() == Some(&key))
                {
                    *p = None;
                    self.store.unbind_client(&key);
                    let name = self.member_name(member);
                    self.journal.probe_answered(&name, self.now);
                    self.probe_outcome(member, true);
                }
            }
            ClientRole::Reoffer { call } => self.on_reoffer_response(call, response),
        }
    }

    /// Leg A's answer to a re-INVITE Tandem sent on its own (after a
    /// resume changed the codec): ACK a 2xx; the call goes on either way.
    fn on_reoffer_response(&mut self, id: u64, response: Message) {
        let status = response.status().unwrap_or(0);
        if status < 200 {
            return;
        }
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        call.offer_pending = false;
        if let Some(d) = call.a.dialog.as_mut() {
            d.on_response(&response);
        }
        if (200..300).contains(&status) {
            // Leg A's answer settles leg A's RTCP mux (and its RTP address).
            if !response.body().is_empty() && is_sdp(response.content_type()) {
                if let Err(e) =
                    self.relay_sdp(id, Side::A, response.body(), SdpRole::AnswerToOwnOffer)
                {
                    tracing::warn!(call = id, error = %e, "leg A's answer not usable");
                }
            }
            let Some(call) = self.store.get(id) else {
                return;
            };
            let via = self.tokens.via(&self.settings, call.a.transport);
            if let (Some(d), Some(target)) = (call.a.dialog.as_ref(), self.leg_target(call, Leg::A))
            {
                let ack = d.ack(response.cseq().seq, &via).build();
                self.out.send_raw(target, ack);
            }
        } else {
            tracing::warn!(call = id, status, "leg A refused the new codec");
        }
    }

    fn on_client_failure(&mut self, key: ClientKey) {
        let Some(role) = self.store.unbind_client(&key) else {
            return;
        };
        match role {
            ClientRole::LegBInvite { call } => {
                self.leg_b_failed(call, &key, "no answer from media server")
            }
            ClientRole::Fork { call, .. } => self.on_fork_failure(call, &key),
            ClientRole::Forwarded {
                call,
                to,
                origin,
                request,
            } => {
                if let Some(c) = self.store.get_mut(call) {
                    if matches!(request.method(), Some(Method::Invite | Method::Update)) {
                        c.offer_pending = false;
                    }
                }
                tracing::warn!(call, leg = ?to, "in-dialog request got no answer");
                if to == Leg::B && self.resumes_on_in_dialog_failure() {
                    // The caller must not hear 408 (it would end the
                    // dialog, RFC 3261 §14.1): the call is moving.
                    self.out.respond_call_moving(&origin, &request);
                    self.leg_b_in_dialog_failure(call, "in_dialog_timeout");
                } else {
                    // The other side gets a clear 408 for its request.
                    self.out
                        .respond(&origin, &request, 408, "Request Timeout", &[]);
                }
            }
            ClientRole::Orphaned { origin, request } => {
                // Its call ended meanwhile; the asker still gets an answer.
                self.out
                    .respond(&origin, &request, 408, "Request Timeout", &[]);
            }
            ClientRole::Reoffer { call } => {
                if let Some(c) = self.store.get_mut(call) {
                    c.offer_pending = false;
                }
            }
            ClientRole::Own => {}
            ClientRole::WanProbe { wan, target } => self.wan_probe_failed(wan, target),
            ClientRole::Upstream { aor } => self.on_upstream_failure(aor),
            ClientRole::Probe { member } => {
                if let Some(p) = self
                    .probes
                    .get_mut(member)
                    .filter(|p| p.as_ref() == Some(&key))
                {
                    *p = None;
                    self.probe_outcome(member, false);
                }
            }
        }
    }

    // ---- helpers shared by the flows ----

    fn resumes_on_in_dialog_failure(&self) -> bool {
        self.settings.survival.enabled && self.settings.survival.in_dialog_failure
    }

    /// Sends a request (made by a builder's `build_message`) as a client
    /// transaction with the given role; its key (from the Via branch we
    /// made) is returned at once.
    fn send_request(
        &mut self,
        built: Result<Message, ParseError>,
        target: Target,
        role: ClientRole,
    ) -> Option<ClientKey> {
        let request = match built {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "built an unparseable request");
                return None;
            }
        };
        let key = ClientKey::from_message(&request)?;
        self.store.bind_client(key.clone(), role);
        self.out.push(Action::SendRequest {
            key: key.clone(),
            request,
            target,
        });
        Some(key)
    }

    fn contact(&self, transport: TransportKind) -> String {
        let c = &self.contacts;
        match transport {
            TransportKind::Udp => c.udp.clone(),
            TransportKind::Tcp => c.tcp.clone(),
            TransportKind::Tls => c.tls.clone(),
        }
    }

    /// Where leg `leg` of a call is reached; None for a leg B that has no
    /// member yet.
    fn leg_target(&self, call: &Call, leg: Leg) -> Option<Target> {
        match leg {
            Leg::A if call.a.source_name == PHONE_SOURCE => {
                // A phone is reached over the flow its INVITE came on (it
                // may be behind NAT: its Contact can be a private address).
                Some(Target {
                    transport: call.a.transport,
                    addr: call.a.source,
                    connection: None,
                })
            }
            Leg::A => {
                // The trunk's Contact if it is an IP literal, else where the
                // INVITE came from (DNS is not used on the call path).
                let addr = call
                    .a
                    .dialog
                    .as_ref()
                    .and_then(|d| uri_socket_addr(&d.remote_target))
                    .unwrap_or(call.a.source);
                Some(Target {
                    transport: call.a.transport,
                    addr,
                    connection: None,
                })
            }
            Leg::B => {
                if let Some(phone) = &call.b.phone {
                    return Some(phone.target());
                }
                let m = self.member(call.b.member)?;
                Some(Target {
                    transport: member_transport(m.transport),
                    addr: m.address,
                    connection: None,
                })
            }
        }
    }

    /// The transport of leg `leg` (leg B: its member's; UDP before one is
    /// chosen).
    fn leg_transport(&self, call: &Call, leg: Leg) -> TransportKind {
        match leg {
            Leg::A => call.a.transport,
            Leg::B => match &call.b.phone {
                Some(phone) => phone.flow.transport,
                None => self
                    .member(call.b.member)
                    .map_or(TransportKind::Udp, |m| member_transport(m.transport)),
            },
        }
    }

    /// Member `i`, if there is one.
    fn member(&self, i: usize) -> Option<&crate::pool::Member> {
        self.dests.member(i)
    }

    /// Pool member `i`'s name, or "" (for logs, metrics and CDRs).
    fn member_name(&self, i: usize) -> String {
        self.member(i).map(|m| m.name.clone()).unwrap_or_default()
    }

    /// An SDP from leg `from` of call `id`, rewritten to the relay for the
    /// other leg; the relay is told where the sender wants RTP and, by
    /// `role`, what the SDP does to RTCP multiplexing.
    fn relay_sdp(
        &mut self,
        id: u64,
        from: Side,
        body: &[u8],
        role: SdpRole,
    ) -> Result<Bytes, crate::error::Error> {
        let no_media =
            || crate::error::Error::internal(500, "Server Internal Error", "no media session");
        let call = self.store.get(id).ok_or_else(no_media)?;
        let info = call.media_info.ok_or_else(no_media)?;
        let session = SessionId(call.media);
        // Where that leg's SIP comes from: the trunk's source address, the
        // media server's (member) address.
        let sip_source = match from {
            Side::A => Some(call.a.source.ip()),
            Side::B => match &call.b.phone {
                Some(phone) => Some(phone.flow.source.ip()),
                None => self.member(call.b.member).map(|m| m.address.ip()),
            },
        };
        let relayed = crate::media::rewrite_sdp(&info, from, body)?;
        if let Some(addr) = relayed.remote {
            self.out.push(Action::SetRemote {
                session,
                side: from,
                addr,
                sip_source,
            });
        }
        let mux = relayed.rtcp_mux;
        let change = match role {
            SdpRole::Offer if mux => None,
            SdpRole::Offer => Some(RtcpMuxChange::BindSockets),
            SdpRole::Answer => Some(RtcpMuxChange::Agreed { side: None, mux }),
            SdpRole::AnswerToOwnOffer => Some(RtcpMuxChange::Agreed {
                side: Some(from),
                mux,
            }),
        };
        if let Some(change) = change {
            self.out.push(Action::RtcpMux { session, change });
        }
        Ok(relayed.body)
    }

    /// What an SDP in leg B's provisional response is: the answer to leg
    /// A's offer, or (late offer: leg A's INVITE had no SDP) an offer.
    fn role_of_leg_b_sdp(&self, id: u64) -> SdpRole {
        match self.store.get(id) {
            Some(call) if !call.a.had_offer => SdpRole::Offer,
            _ => SdpRole::Answer,
        }
    }

    fn call_of(&self, call_id: &str) -> Option<(u64, Leg)> {
        self.store.find(call_id)
    }

    /// Whether a request comes from someone Tandem serves: a trunk, a
    /// destination member, the pair's peer, or (the standby's probe of
    /// the floating address, sent from wherever its routing puts it) an
    /// OPTIONS whose branch our pair made.
    fn knows_source(&self, request: &Message, source: Target) -> bool {
        let ip = source.addr.ip();
        self.policy.source(ip).is_some()
            // With a registrar, phones anywhere may speak: REGISTER and
            // INVITE are authenticated, in-dialog requests checked
            // against their call's peer.
            || self.registrar.is_some()
            || self.dests.members().any(|(_, m)| m.address.ip() == ip)
            || self.settings.pair_peers.contains(&ip)
            || (request.method() == Some(&Method::Options) && self.tokens.made(request))
    }

    /// A request from a stranger (maybe spoofed, to aim our answers at a
    /// victim): no call state, no transaction that would retransmit;
    /// dropped, or answered once, as configured.
    fn refuse_unknown_source(&mut self, key: ServerKey, request: Message) {
        tracing::debug!(
            call_id = request.call_id(),
            method = %request.method().map(Method::as_str).unwrap_or(""),
            "request from an unknown source refused"
        );
        match self.settings.unknown_source {
            UnknownSource::Drop => {
                self.obs.refused(Refusal::UnknownSourceDropped);
                self.out.forget(key, None);
            }
            UnknownSource::Forbid => {
                self.obs.refused(Refusal::UnknownSourceForbidden);
                self.out.forget_answered(
                    key,
                    &request,
                    403,
                    "Forbidden",
                    "399 tandem \"not a configured trunk\"",
                );
            }
        }
    }

    /// Whether `ip` may speak for leg `leg` of call `call`: for leg A any
    /// address of the trunk the call came from (a carrier's SBC cluster
    /// may send the BYE from another node), for leg B the member's
    /// address or another member of its group.
    fn leg_source_ok(&self, call: &Call, leg: Leg, ip: std::net::IpAddr) -> bool {
        match leg {
            Leg::A if call.a.source_name == PHONE_SOURCE => call.a.source.ip() == ip,
            Leg::A => self.policy.source(ip) == Some(call.a.source_name.as_str()),
            Leg::B if call.b.phone.is_some() => call
                .b
                .phone
                .as_ref()
                .is_some_and(|p| p.flow.source.ip() == ip),
            Leg::B => {
                self.member(call.b.member)
                    .is_some_and(|m| m.address.ip() == ip)
                    || self
                        .dests
                        .group(call.b.group)
                        .is_some_and(|g| g.members.iter().any(|m| m.address.ip() == ip))
            }
        }
    }
}

/// The source name of calls from registered phones (what routing rules
/// match with `source = "phone"`; trunks cannot take this name).
pub const PHONE_SOURCE: &str = "phone";

/// Every survival tick resumes are paced.
pub const SURVIVAL_TICK: Duration = Duration::from_millis(10);
/// The survival tick while nothing needs the fast one ([`Machine::needs_fast_ticks`]
/// is false): media silence is still looked for every 50 ms, and the
/// engine wakes 20 times a second rather than 100 when idle (issue 15:
/// the idle node's wake-ups were most of its CPU at low call rates, and
/// each shard pays them).
pub const IDLE_SURVIVAL_TICK: Duration = Duration::from_millis(50);
const SILENCE_CHECK: Duration = Duration::from_millis(50);

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO";

/// Where a WAN's own probes go: its probe hosts and the members of its
/// groups (their answers also count for the members' own keepalives).
fn wan_probe_targets(dests: &Destinations, wan: &crate::wan::WanSettings) -> Vec<Target> {
    let members = dests
        .members()
        .filter(|(i, _)| {
            dests
                .group_name_of(*i)
                .is_some_and(|g| wan.groups.iter().any(|w| w == g))
        })
        .map(|(_, m)| Target {
            transport: member_transport(m.transport),
            addr: m.address,
            connection: None,
        });
    let mut targets: Vec<Target> = wan.probe_hosts.iter().map(|h| Target::udp(*h)).collect();
    for t in members {
        if !targets.iter().any(|o| o.addr == t.addr) {
            targets.push(t);
        }
    }
    targets
}

pub(crate) fn member_transport(t: MemberTransport) -> TransportKind {
    match t {
        MemberTransport::Udp => TransportKind::Udp,
        MemberTransport::Tcp => TransportKind::Tcp,
        MemberTransport::Tls => TransportKind::Tls,
    }
}

impl Tokens {
    /// A Via value for a new request of ours sent over `transport`, with a
    /// fresh branch. The sent-by is where that transport listens: a peer
    /// that lost the connection answers per Via (RFC 3261 §18.2.2), so a
    /// TLS leg must name the TLS port, not the UDP/TCP one.
    fn via(&mut self, settings: &Settings, transport: TransportKind) -> String {
        let nonce = self.token(12);
        let addr = settings.sent_by(transport);
        let sent_by = match &self.sent_by {
            Some((cached, text)) if *cached == addr => text,
            _ => &self.sent_by.insert((addr, addr.to_string())).1,
        };
        let branch = self.branches.branch(&nonce);
        let mut via = String::with_capacity(32 + sent_by.len() + branch.len());
        via.push_str("SIP/2.0/");
        via.push_str(transport.as_str());
        via.push(' ');
        via.push_str(sent_by);
        via.push_str(";branch=");
        via.push_str(&branch);
        via.push_str(";rport");
        via
    }

    /// Whether the top Via branch of `msg` is one this node (or its pair)
    /// made.
    fn made(&self, msg: &Message) -> bool {
        msg.top_via()
            .branch()
            .is_some_and(|b| self.branches.verify(b))
    }
}

/// This node's Contact on each transport.
struct Contacts {
    udp: String,
    tcp: String,
    tls: String,
}

impl Contacts {
    fn new(settings: &Settings) -> Contacts {
        let advertised = settings.advertised;
        Contacts {
            udp: format!("<sip:tandem@{advertised}>"),
            tcp: format!("<sip:tandem@{advertised};transport=tcp>"),
            // RFC 5630: a sips: Contact over TLS, at the TLS listener (a
            // leg is TLS only when the listener or a TLS member is
            // configured, and both need [sip.tls]).
            tls: format!("<sips:tandem@{}>", settings.sent_by(TransportKind::Tls)),
        }
    }
}

/// What a call keeps of the INVITE it sent on a leg B: what that leg's
/// CANCEL ([`in_dialog::cancel_for`]), its dialog
/// (`Dialog::from_uac_response`) and the CSeq of its ACK are made of —
/// the Request-URI, Via (Tandem's one), Route (a phone's Path, which the
/// CANCEL repeats), From, To, Call-ID and CSeq, with Max-Forwards that a
/// request needs — and nothing else. A held call keeps it for its whole
/// life; the rest of the INVITE (Contact, carried headers, Supported, …)
/// was about half of it. Copied line by line with the index, not built
/// and checked again.
fn kept_leg_b_invite(invite: &Message) -> Message {
    use sipcore::message::HeaderName as H;
    invite.with_headers_only(|kind| {
        matches!(
            kind,
            H::Via | H::MaxForwards | H::Route | H::From | H::To | H::CallId | H::CSeq
        )
    })
}

/// What an answered call keeps of leg A's INVITE: what can still read it
/// once leg A's 2xx is sent and its dialog made. That is a new leg B
/// (`send_leg_b_invite`, after a move or a resume: From, To, Max-Forwards,
/// Supported/Require, Session-Expires, Min-SE, the carried headers and a
/// body that is not SDP), the hash strategies and the CDR (From, To,
/// Call-ID) and its CSeq. Its Vias below the top one, Contact and
/// Record-Route (read only by leg A's responses and dialog, both made by
/// then), and the headers nobody reads again, go: a held call keeps this
/// for its whole life. A message the builder refuses is kept whole.
fn kept_answered_leg_a_invite(invite: &Message, policy: &dyn Policy) -> Message {
    use sipcore::message::HeaderName as H;
    let uri = invite.request_uri_str().unwrap_or_default();
    // A request is not a message without a Via: the top one stays.
    let mut req = sipcore::message::RequestBuilder::new(&Method::Invite, uri)
        .header("Via", invite.top_via().raw);
    for (name, value) in invite.iter_headers() {
        let read_later = matches!(
            H::classify(name),
            H::From
                | H::To
                | H::CallId
                | H::CSeq
                | H::MaxForwards
                | H::Supported
                | H::Require
                | H::SessionExpires
                | H::MinSe
        );
        if read_later || policy.carried(name) {
            req = req.header(name, value);
        }
    }
    if !invite.body().is_empty() {
        req = req.body(
            invite.content_type().unwrap_or("application/octet-stream"),
            invite.body_bytes(),
        );
    }
    req.build_message()
        .map(|m| m.compact())
        .unwrap_or_else(|_| invite.clone())
}

/// `sip:user@1.2.3.4:5070;params` → 1.2.3.4:5070 when the host is an IP.
fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let u = sipcore::message::Uri::parse(uri).ok()?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

/// What an SDP passing through [`Machine::relay_sdp`] is in its
/// offer/answer exchange (RFC 3264), which decides RTCP multiplexing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SdpRole {
    /// An offer relayed to the other leg.
    Offer,
    /// An answer relayed to the other leg: it settles both legs.
    Answer,
    /// A leg's answer to an offer Tandem made on its own (the re-offer to
    /// leg A after a move): it settles that leg only.
    AnswerToOwnOffer,
}

#[cfg(test)]
mod tests;

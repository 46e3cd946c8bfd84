//! The B2BUA: one engine task owns every call and reacts to events from
//! the transaction layer, its own timers and the health probes.
//!
//! One task, no locks: the call table is plain data touched only here, so
//! every state change is one step that can later be shipped to a standby
//! as it is. The work per event is small (a few parses and prints); the
//! RTP, which is where the volume is, never passes through this task.
//!
//! Files follow the SIP flows: [`invite`] (a new call and leg B's
//! answers, failover between media servers), [`in_dialog`] (ACK, BYE,
//! CANCEL, re-INVITE/UPDATE/INFO/OPTIONS forwarding), [`housekeeping`]
//! (timers, OPTIONS probes, session hygiene, the end of a call).

mod call;
mod housekeeping;
mod in_dialog;
mod invite;
mod replication;
mod store;
mod survival;

use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use media_relay::MediaRelay;
use rand::Rng;
use sipcore::endpoint::Endpoint;
use sipcore::message::{Message, Method, ResponseBuilder};
use sipcore::transaction::{ClientKey, ServerKey, TransactionKey, TuEvent};
use sipcore::transport::{Target, TransportKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use call::{Call, Leg};
pub use replication::{Replication, RECORD_SCHEMA};
use store::{CallStore, ClientRole};

use crate::config::{Config, MemberTransport};
use crate::metrics;
use crate::pool::Pool;

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
    /// `on_no_server = hold`: try to resume the call again.
    ResumeRetry {
        call: u64,
    },
}

/// What the process around the engine (its admin API) may ask of it. The
/// engine defines it, so the core does not depend on its shell.
#[derive(Debug)]
pub enum EngineCommand {
    /// Hand the calls to the standby and step down. `force`: also to a
    /// standby in the upgrade state (its record schema is incompatible:
    /// the calls up here are lost).
    Switchover {
        force: bool,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// How many commands may wait for the engine.
pub const COMMAND_QUEUE: usize = 16;

/// Deadlines of the engine; stale events are recognised when they fire.
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    events: HashMap<u64, TimerEvent>,
    seq: u64,
}

impl Timers {
    fn at(&mut self, when: Instant, event: TimerEvent) {
        self.seq += 1;
        self.heap.push(std::cmp::Reverse((when, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0 .0)
    }

    fn pop_due(&mut self, now: Instant) -> Option<TimerEvent> {
        let std::cmp::Reverse((when, seq)) = *self.heap.peek()?;
        if when > now {
            return None;
        }
        self.heap.pop();
        self.events.remove(&seq)
    }
}

pub struct Engine {
    config: Arc<Config>,
    ep: Endpoint,
    relay: Arc<MediaRelay>,
    pool: Pool,
    /// Every call and every index onto the calls.
    store: CallStore,
    /// The outstanding probe of each member.
    probes: Vec<Option<ClientKey>>,
    /// Leg-B Call-IDs Tandem has already hung up (BYE sent, or the media
    /// server's own BYE taken), with when. A 2xx retransmitted for one of
    /// them (our ACK was lost) is ACKed again but gets no second BYE: a
    /// second BYE with a new CSeq is a new request for a dialog the server
    /// has already closed, which SIPp, for one, treats as a protocol error.
    hung_up_b: HashMap<String, Instant>,
    timers: Timers,
    survival: survival::Survival,
    /// `sip:host:port` of Tandem, for Via, Contact and loop detection.
    advertised: SocketAddr,
    draining: bool,
    /// The hot-standby pair, if configured.
    replication: Option<Replication>,
    /// A controlled switchover is under way.
    handing_over: bool,
    /// When this node began to serve (its last takeover; 0 without a
    /// pair): media silence of adopted calls counts from then.
    serving_since: call::UnixMillis,
    /// Server transactions of calls adopted at a takeover: they exist
    /// only on the node we took over from, so their responses go out
    /// statelessly, to where §18.2.2 sends them.
    adopted: HashMap<ServerKey, Target>,
}

impl Engine {
    pub fn new(
        config: Arc<Config>,
        ep: Endpoint,
        relay: Arc<MediaRelay>,
        replication: Option<Replication>,
    ) -> Engine {
        let pool = Pool::new(&config.pool);
        let members = pool.members.len();
        let advertised = config.advertised();
        for m in &pool.members {
            metrics::member_health(&m.name, true);
        }
        Engine {
            config,
            ep,
            relay,
            pool,
            store: CallStore::new(replication.is_some()),
            probes: vec![None; members],
            hung_up_b: HashMap::new(),
            timers: Timers::default(),
            survival: survival::Survival::default(),
            advertised,
            draining: false,
            replication,
            handing_over: false,
            serving_since: 0,
            adopted: Default::default(),
        }
    }

    /// Runs until the TU channel closes, or until `shutdown` turns true
    /// and every call has ended (new calls are refused meanwhile).
    pub async fn run(
        mut self,
        mut events: sipcore::transaction::TuReceiver,
        mut shutdown: watch::Receiver<bool>,
        mut node_events: Option<mpsc::UnboundedReceiver<state_sync::NodeEvent>>,
        mut admin: mpsc::Receiver<EngineCommand>,
    ) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
        let probe_every = Duration::from_millis(self.config.pool.health.interval_ms);
        let mut probes = tokio::time::interval(probe_every);
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let probing = self.config.pool.health.enabled;
        // Resumes are paced and media silence is checked on this tick.
        let mut survival = tokio::time::interval(Duration::from_millis(SURVIVAL_TICK_MS));
        survival.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            let next = self.timers.next();
            tokio::select! {
                ev = events.recv() => match ev {
                    // While handing over, requests are left to the peers'
                    // retransmissions, which reach the new active node.
                    Some(ev) if self.serving() && !self.handing_over => self.on_event(ev),
                    Some(_) => {}
                    None => break,
                },
                Some(ev) = next_node_event(&mut node_events) => self.on_node_event(ev).await,
                Some(cmd) = admin.recv() => self.on_admin(cmd, &done_tx),
                Some((result, reply)) = done_rx.recv() => {
                    if result.is_err() {
                        self.handing_over = false;
                    }
                    let _ = reply.send(result);
                }
                _ = sleep_until(next), if next.is_some() => self.fire_timers(),
                _ = housekeeping.tick(), if self.serving() => self.housekeeping(),
                _ = probes.tick(), if probing && self.serving() => self.send_probes(),
                _ = survival.tick() => {
                    self.replicate();
                    if !self.serving() {
                        continue;
                    }
                    ticks += 1;
                    if self.replication.is_some() && ticks.is_multiple_of(REFRESH_MOVED_MS / SURVIVAL_TICK_MS) {
                        self.refresh_moved_calls();
                    }
                    // Silence is looked for every 50 ms: a tenth of the
                    // default threshold, and a few lookups per call.
                    if ticks.is_multiple_of(SILENCE_CHECK_MS / SURVIVAL_TICK_MS) {
                        self.check_media_silence();
                    }
                    self.drain_resumes();
                }
                changed = shutdown.changed(), if !self.draining => {
                    if changed.is_err() || *shutdown.borrow() {
                        tracing::info!(calls = self.store.len(), "draining: new calls are refused");
                        self.draining = true;
                    }
                }
            }
            if self.draining && self.store.is_empty() {
                break;
            }
        }
        tracing::info!("engine stopped");
    }

    fn on_event(&mut self, event: TuEvent) {
        match event {
            TuEvent::Request {
                key,
                request,
                source,
            } => self.on_request(key, request, source),
            TuEvent::Response { key, response } => self.on_response(key, response),
            TuEvent::Ack { ack, .. } => self.on_ack(ack),
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
        metrics::sip_in_request(request.method());
        let method = request.method().cloned().unwrap_or(Method::Ack);
        if method == Method::Cancel {
            return self.on_cancel(key, request);
        }
        if request.to_tag().is_some() {
            return self.on_in_dialog_request(key, request);
        }
        match method {
            Method::Invite => self.on_new_invite(key, request, source),
            Method::Options => {
                // Out-of-dialog OPTIONS: trunks and SBCs ping us like we
                // ping our media servers.
                self.respond(
                    &key,
                    &request,
                    200,
                    "OK",
                    &[("Allow", ALLOW), ("Accept", "application/sdp")],
                );
            }
            _ => self.respond(
                &key,
                &request,
                405,
                "Method Not Allowed",
                &[("Allow", ALLOW)],
            ),
        }
    }

    fn on_response(&mut self, key: ClientKey, response: Message) {
        metrics::sip_in_response(response.status().unwrap_or(0));
        let Some(role) = self.store.client(&key).cloned() else {
            return self.on_stray_response(response);
        };
        let status = response.status().unwrap_or(0);
        if status >= 200 && !matches!(role, ClientRole::Probe { .. }) {
            self.store.unbind_client(&key);
        }
        match role {
            ClientRole::LegBInvite { call } => self.on_leg_b_invite_response(call, key, response),
            ClientRole::Forwarded {
                call,
                to,
                origin,
                request,
            } => self.on_forwarded_response(call, to, origin, request, response),
            ClientRole::Own | ClientRole::Orphaned { .. } => {}
            ClientRole::Probe { member } => {
                if let Some(p) = self
                    .probes
                    .get_mut(member)
                    .filter(|p| p.as_ref() == Some(&key))
                {
                    *p = None;
                    self.store.unbind_client(&key);
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
            let Some(call) = self.store.get(id) else {
                return;
            };
            let via = self.new_via(call.a.transport);
            if let (Some(d), Some(target)) = (call.a.dialog.as_ref(), self.leg_target(call, Leg::A))
            {
                let ack = d.ack(response.cseq().seq, &via).build();
                let _ = self.ep.send_raw(target, ack);
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
                    self.respond_call_moving(&origin, &request);
                    self.leg_b_in_dialog_failure(call, "in_dialog_timeout");
                } else {
                    // The other side gets a clear 408 for its request.
                    self.respond(&origin, &request, 408, "Request Timeout", &[]);
                }
            }
            ClientRole::Orphaned { origin, request } => {
                // Its call ended meanwhile; the asker still gets an answer.
                self.respond(&origin, &request, 408, "Request Timeout", &[]);
            }
            ClientRole::Reoffer { call } => {
                if let Some(c) = self.store.get_mut(call) {
                    c.offer_pending = false;
                }
            }
            ClientRole::Own => {}
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
        self.config.survival.enabled && self.config.survival.in_dialog_failure
    }

    /// The answer to leg A's in-dialog request while its call is moving to
    /// another media server: 491 for an offer (the caller retries it a
    /// moment later, RFC 3261 §14.1), 503 with Retry-After for the rest
    /// (RFC 5057: neither ends the dialog).
    fn respond_call_moving(&self, key: &ServerKey, request: &Message) {
        let warning = ("Warning", "399 tandem \"media server failed, call moving\"");
        if matches!(request.method(), Some(Method::Invite | Method::Update)) {
            self.respond(
                key,
                request,
                491,
                "Request Pending",
                &[warning, ("Retry-After", "1")],
            );
        } else {
            self.respond(
                key,
                request,
                503,
                "Service Unavailable",
                &[warning, ("Retry-After", "1")],
            );
        }
    }

    /// Sends a response on a server transaction, built from its request.
    fn respond(
        &self,
        key: &ServerKey,
        request: &Message,
        status: u16,
        reason: &str,
        headers: &[(&str, &str)],
    ) {
        let mut b = ResponseBuilder::new(request, status, reason);
        for (n, v) in headers {
            b = b.header(n, v);
        }
        self.send_response(key, b.build());
    }

    fn send_response(&self, key: &ServerKey, bytes: Bytes) {
        match Message::parse(bytes) {
            Ok(msg) => {
                metrics::sip_out_response(msg.status().unwrap_or(0));
                self.deliver_response(key, msg);
            }
            Err(e) => tracing::error!(error = %e, "built an unparseable response"),
        }
    }

    /// Hands a response to its server transaction, or, for one adopted
    /// at a takeover (it lives on the old node), sends it statelessly.
    fn deliver_response(&self, key: &ServerKey, msg: Message) {
        let sent = match self.adopted.get(key) {
            Some(target) => self
                .ep
                .send_raw(*target, msg.as_bytes().clone())
                .map_err(|e| e.to_string()),
            None => self
                .ep
                .layer()
                .send_response(key, msg)
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "response not sent");
        }
    }

    /// Sends a request as a client transaction with the given role.
    fn send_request(
        &mut self,
        bytes: Bytes,
        target: Target,
        role: ClientRole,
    ) -> Option<ClientKey> {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "built an unparseable request");
                return None;
            }
        };
        metrics::sip_out_request(msg.method());
        match self.ep.layer().send_request(msg, target) {
            Ok(key) => {
                self.store.bind_client(key.clone(), role);
                Some(key)
            }
            Err(e) => {
                tracing::warn!(error = %e, %target, "request not sent");
                None
            }
        }
    }

    /// A Via value for a new request of ours, with a fresh branch.
    fn new_via(&self, transport: TransportKind) -> String {
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK{};rport",
            transport.as_str(),
            self.advertised,
            token(16)
        )
    }

    fn contact(&self, transport: TransportKind) -> String {
        match transport {
            TransportKind::Udp => format!("<sip:tandem@{}>", self.advertised),
            TransportKind::Tcp => format!("<sip:tandem@{};transport=tcp>", self.advertised),
        }
    }

    /// Where leg `leg` of a call is reached; None for a leg B that has no
    /// member yet.
    fn leg_target(&self, call: &Call, leg: Leg) -> Option<Target> {
        match leg {
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
            Leg::B => self
                .member(call.b.member)
                .map_or(TransportKind::Udp, |m| member_transport(m.transport)),
        }
    }

    /// Pool member `i`, if there is one.
    fn member(&self, i: usize) -> Option<&crate::pool::Member> {
        self.pool.members.get(i)
    }

    /// Pool member `i`'s name, or "" (for logs, metrics and CDRs).
    fn member_name(&self, i: usize) -> String {
        self.member(i).map(|m| m.name.clone()).unwrap_or_default()
    }

    fn call_of(&self, call_id: &str) -> Option<(u64, Leg)> {
        self.store.find(call_id)
    }
}

const SURVIVAL_TICK_MS: u64 = 10;
/// How often calls that moved to another media server are re-sent to the
/// standby: their relay's continuity state settles with the first packets
/// from the new server, after the call event that moved them.
const REFRESH_MOVED_MS: u64 = 1000;

async fn next_node_event(
    rx: &mut Option<mpsc::UnboundedReceiver<state_sync::NodeEvent>>,
) -> Option<state_sync::NodeEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
const SILENCE_CHECK_MS: u64 = 50;

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO";

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn member_transport(t: MemberTransport) -> TransportKind {
    match t {
        MemberTransport::Udp => TransportKind::Udp,
        MemberTransport::Tcp => TransportKind::Tcp,
    }
}

/// A random token for tags, branches and Call-IDs.
pub(crate) fn token(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// `sip:user@1.2.3.4:5070;params` → 1.2.3.4:5070 when the host is an IP.
fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let u = sipcore::message::Uri::parse(uri).ok()?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

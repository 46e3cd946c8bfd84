//! The driver of one node: heartbeats on every link, the replication
//! stream (serving it when active, following it otherwise), the role
//! machine, the fencing checks and the floating address.
//!
//! It runs on its own thread with its own runtime, so that heartbeats go
//! out on time even when the owner's threads are saturated (a standby that
//! flaps because the active node was busy is worse than a slow one).
//! Everything it knows is in one loop's locals; the owner talks to it
//! through [`SyncHandle`] and hears from it through [`NodeEvent`]s, which
//! arrive in order: every change of the copy before the `Activate` that
//! makes it live.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::SyncConfig;
use crate::frame::{self, Envelope, Frame, FrameError, FrameKey, Seal};
use crate::handshake::{self, SessionKeys};
use crate::journal::{CatchUp, Journal};
use crate::link::{self, Connection, LinkEvent, Refusal, RefusalCounters, RefusalCounts};
use crate::netcheck;
use crate::record::{Change, Record};
use crate::replay::SessionGuard;
use crate::replica::Replica;
use crate::role::{self, Action, CheckResult, PeerHeartbeat, Role, RoleMachine, Timing};
use crate::vip::FloatingIp;

/// The owner's probe of the floating address: does anything serve there?
/// (Tandem sends a SIP OPTIONS from its own address.) Called only by a
/// node that does not hold the address.
pub type VipProbe =
    Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What the node tells its owner.
#[derive(Debug)]
pub enum NodeEvent {
    /// Follower: one change of the copy, in order (pre-bind its media).
    Applied(Change),
    /// Follower: a snapshot replaced the copy; these are all its records.
    Resynced(Vec<Record>),
    /// Serve now, as `epoch`: the copy given so far is the live state.
    Activate { epoch: u64, reason: &'static str },
    /// Active no more (a higher epoch was heard, or the switchover was
    /// handed over): drop live state without signalling anybody — the
    /// other node serves those calls — and wait for a resync.
    StepDown { epoch: u64 },
}

/// The node as metrics and the admin API show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub node: String,
    pub role: Role,
    pub epoch: u64,
    pub peer_role: Option<Role>,
    pub peer_epoch: Option<u64>,
    /// Latest sequence number (journal when active, copy otherwise).
    pub seq: u64,
    /// Active: a standby is connected and has been sent its catch-up.
    pub standby_connected: bool,
    /// Active: changes the standby has not acknowledged yet, and the age
    /// of the oldest of them.
    pub lag_records: u64,
    pub lag_ms: u64,
    /// Records held (journal or copy), by kind.
    pub records: BTreeMap<String, usize>,
    /// Order-independent digest of the records held (names and versions):
    /// equal on both nodes when the standby has exactly the active set.
    pub digest: u64,
    pub takeovers: u64,
    /// Peer lost (or handover) → serving, of the latest takeover.
    pub last_takeover_ms: Option<u64>,
    /// Active: standby connections accepted (after the handshake) since
    /// start; a number that keeps rising is a flapping pair link.
    pub standby_connects: u64,
    /// Connections and heartbeats turned away, by reason.
    pub refused: RefusalCounts,
}

impl Status {
    /// A node that has just started: no peer, no records.
    pub fn starting(node: String, epoch: u64) -> Status {
        Status {
            node,
            role: Role::Starting,
            epoch,
            peer_role: None,
            peer_epoch: None,
            seq: 0,
            standby_connected: false,
            lag_records: 0,
            lag_ms: 0,
            records: BTreeMap::new(),
            digest: 0,
            takeovers: 0,
            last_takeover_ms: None,
            standby_connects: 0,
            refused: RefusalCounts::default(),
        }
    }
}

enum Command {
    Publish(Change),
    External(bool),
    Switchover {
        force: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Stop(oneshot::Sender<()>),
}

/// The owner's side of a running node.
#[derive(Clone)]
pub struct SyncHandle {
    cmd: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
}

impl SyncHandle {
    /// Journals a change (ignored unless the node is active).
    pub fn publish(&self, change: Change) {
        let _ = self.cmd.send(Command::Publish(change));
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// With `external_role`: the external program made this node master
    /// (`true`) or backup/fault (`false`).
    pub fn notify(&self, master: bool) {
        let _ = self.cmd.send(Command::External(master));
    }

    /// Stops the node: an active node releases the floating address; the
    /// link sockets are closed when this returns.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// A controlled switchover: every change published before this call
    /// reaches the standby, then it is told to take over and this node
    /// lets go of the floating address and steps down.
    ///
    /// A standby whose record schema is incompatible (the upgrade state)
    /// has no copy; only `force` hands over to it, and the calls up on this
    /// node are lost — the step of a rolling upgrade across such versions.
    pub async fn switchover(&self, force: bool) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Switchover { force, reply: tx })
            .map_err(|_| "the replication node has stopped".to_string())?;
        rx.await
            .map_err(|_| "the replication node has stopped".to_string())?
    }
}

pub struct SyncNode;

impl SyncNode {
    /// Binds the link sockets (errors name the address), then runs the
    /// node on a thread of its own. `schema` is the owner's record schema
    /// (`major << 16 | minor`); `epoch` the last one this node knew.
    pub fn start(
        config: SyncConfig,
        schema: u32,
        epoch: u64,
        probe: VipProbe,
    ) -> Result<(SyncHandle, mpsc::UnboundedReceiver<NodeEvent>), String> {
        config.validate()?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let status = Status::starting(config.node.clone(), epoch);
        let (status_tx, status_rx) = watch::channel(status);
        std::thread::Builder::new()
            .name("state-sync".into())
            .spawn(move || {
                if config.realtime_priority > 0 {
                    // Before the runtime: its blocking threads (ICMP
                    // probes) inherit the policy.
                    if let Err(e) = crate::sys::set_realtime(i32::from(config.realtime_priority)) {
                        tracing::warn!(error = %e, "heartbeat thread stays at normal priority");
                    }
                }
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("runtime: {e}")));
                        return;
                    }
                };
                let stopped = rt.block_on(async move {
                    let node =
                        match Driver::bind(config, schema, epoch, probe, ev_tx, status_tx).await {
                            Ok(n) => {
                                let _ = ready_tx.send(Ok(()));
                                n
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return None;
                            }
                        };
                    node.run(cmd_rx).await
                });
                // Every socket is closed once the runtime is gone.
                drop(rt);
                if let Some(done) = stopped {
                    let _ = done.send(());
                }
            })
            .map_err(|e| format!("cannot start the state-sync thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "the state-sync thread ended during start".to_string())??;
        Ok((
            SyncHandle {
                cmd: cmd_tx,
                status: status_rx,
            },
            ev_rx,
        ))
    }
}

/// Internal inputs of the loop besides the owner's commands.
enum Input {
    Link(LinkEvent),
    /// The standby's connect and handshake.
    Dialed(Result<(tokio::net::TcpStream, SessionKeys), String>),
    /// The handshake of a connection the active node accepted.
    Accepted {
        from: SocketAddr,
        result: Result<(tokio::net::TcpStream, SessionKeys), FrameError>,
    },
    Checks(CheckResult),
}

struct Peer {
    conn: Connection,
    /// Active: the standby said Hello and was sent its catch-up.
    level: bool,
    /// Active: the standby speaks an incompatible record schema; the
    /// connection stays open (no records) for a forced switchover.
    incompatible: bool,
    /// Active: the standby's acknowledged sequence number.
    acked: u64,
}

impl Peer {
    fn new(conn: Connection) -> Peer {
        Peer {
            conn,
            level: false,
            incompatible: false,
            acked: 0,
        }
    }
}

struct Driver {
    config: SyncConfig,
    /// The pair's secret (from `secret_file`): handshakes and heartbeat
    /// keys are derived from it.
    secret: Arc<[u8]>,
    /// This boot's heartbeat session, its key and the last counter sent.
    heartbeat_session: u64,
    heartbeat_key: FrameKey,
    heartbeat_counter: u64,
    /// Accepted connections still in their handshake.
    handshaking: usize,
    standby_connects: u64,
    refused: Arc<RefusalCounters>,
    schema: u32,
    machine: RoleMachine,
    journal: Journal,
    replica: Replica,
    /// Heartbeat sockets and where the peer listens on each link.
    heartbeats: Vec<(Arc<UdpSocket>, SocketAddr, &'static str)>,
    listener: TcpListener,
    vip: Option<FloatingIp>,
    probe: VipProbe,
    events: mpsc::UnboundedSender<NodeEvent>,
    status: watch::Sender<Status>,
    inputs_tx: mpsc::UnboundedSender<Input>,
    inputs: mpsc::UnboundedReceiver<Input>,
    peer: Option<Peer>,
    next_conn: u64,
    dialing: bool,
    dial_failures: u32,
    next_dial: Instant,
    /// Active: when each unacknowledged change was journalled.
    unacked: VecDeque<(u64, Instant)>,
    takeovers: u64,
    last_takeover_ms: Option<u64>,
    last_heard: Option<Instant>,
    /// A switchover waiting for the standby to take over.
    switchover: Option<(oneshot::Sender<Result<(), String>>, Instant)>,
}

/// How long a switchover waits for the standby to announce itself active.
const SWITCHOVER_DEADLINE: Duration = Duration::from_secs(3);

/// A connection that has not completed the handshake by then is closed:
/// a silent connect holds nothing for long. Far above a real pair
/// link's round trips (the handshake is two of them).
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);

/// Accepted connections in their handshake at once, at most; more are
/// closed at once (and counted). The one real peer needs one.
pub const MAX_HANDSHAKING: usize = 4;

impl Driver {
    async fn bind(
        config: SyncConfig,
        schema: u32,
        epoch: u64,
        probe: VipProbe,
        events: mpsc::UnboundedSender<NodeEvent>,
        status: watch::Sender<Status>,
    ) -> Result<Driver, String> {
        let secret: Arc<[u8]> = Arc::from(config.load_secret()?);
        let heartbeat_session = handshake::session_id();
        let heartbeat_key = handshake::heartbeat_key(&secret, heartbeat_session);
        let listener = TcpListener::bind(config.link.listen)
            .await
            .map_err(|e| format!("link.listen {}: {e}", config.link.listen))?;
        let mut heartbeats = Vec::new();
        for (link, name) in [(Some(config.link), "main"), (config.aux, "aux")] {
            let Some(link) = link else { continue };
            let sock = UdpSocket::bind(link.listen)
                .await
                .map_err(|e| format!("{name} link listen {}: {e}", link.listen))?;
            heartbeats.push((Arc::new(sock), link.peer, name));
        }
        let vip = match &config.vip {
            Some(v) => Some(
                FloatingIp::new(v.clone())
                    .await
                    .map_err(|e| format!("vip: {e}"))?,
            ),
            None => None,
        };
        if let Some(v) = &vip {
            // A node starts without the address: if a previous run of
            // ours left it behind, it must not answer for it.
            if let Err(e) = v.release().await {
                tracing::warn!(error = %e, "could not release the floating address at start");
            }
        }
        let h = config.heartbeat;
        let timing = Timing {
            dead_after: h.dead_after(),
            retry_delay: Duration::from_millis(h.retry_delay_ms),
            start_wait: Duration::from_millis(h.start_wait_ms),
        };
        let mut machine = RoleMachine::new(
            &config.node,
            config.priority,
            schema,
            epoch,
            timing,
            Instant::now(),
        );
        machine.set_external(config.external_role);
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        Ok(Driver {
            secret,
            heartbeat_session,
            heartbeat_key,
            heartbeat_counter: 0,
            handshaking: 0,
            standby_connects: 0,
            refused: Arc::new(RefusalCounters::default()),
            journal: Journal::new(config.journal_capacity),
            config,
            schema,
            machine,
            replica: Replica::new(),
            heartbeats,
            listener,
            vip,
            probe,
            events,
            status,
            inputs_tx,
            inputs,
            peer: None,
            next_conn: 1,
            dialing: false,
            dial_failures: 0,
            next_dial: Instant::now(),
            unacked: VecDeque::new(),
            takeovers: 0,
            last_takeover_ms: None,
            last_heard: None,
            switchover: None,
        })
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Option<oneshot::Sender<()>> {
        let interval = self.config.heartbeat.interval();
        let mut beat = tokio::time::interval(interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The role machine looks at the clock more often than heartbeats
        // go out, so that a loss is acted on within a few milliseconds.
        let mut tick = tokio::time::interval(Duration::from_millis(5).max(interval / 10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = tokio::time::interval(Duration::from_millis(200));
        let sockets: Vec<_> = self.heartbeats.iter().map(|h| h.0.clone()).collect();
        let (hb_tx, mut hb_rx) = mpsc::unbounded_channel();
        for (i, s) in sockets.into_iter().enumerate() {
            let (_, peer, name) = self.heartbeats[i];
            tokio::spawn(receive_heartbeats(
                HeartbeatLink {
                    index: i,
                    name,
                    peer,
                    secret: self.secret.clone(),
                    refused: self.refused.clone(),
                },
                s,
                hb_tx.clone(),
            ));
        }
        register_takeover_counters();
        tracing::info!(node = %self.config.node, link = %self.config.link.listen, "state-sync started");
        let stopped = loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop(done)) => break Some(done),
                    Some(c) => self.on_command(c).await,
                    None => break None,
                },
                Some((link, env)) = hb_rx.recv() => self.on_heartbeat(link, env).await,
                Some(input) = self.inputs.recv() => self.on_input(input).await,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, from)) => self.on_accept(stream, from),
                    Err(e) => tracing::warn!(error = %e, "replication accept failed"),
                },
                _ = beat.tick() => self.send_heartbeats().await,
                _ = tick.tick() => {
                    self.switchover_deadline();
                    let was = self.machine.role();
                    let actions = self.machine.tick(Instant::now());
                    if was == Role::Standby && self.machine.role() != Role::Standby {
                        // The peer went silent: its stream is not trusted
                        // any more, even if TCP would carry on after the
                        // outage. Dial again and resume from our last
                        // sequence number.
                        if let Some(p) = self.peer.take() {
                            tracing::info!(peer = %p.conn.peer, "replication stream dropped: peer silent");
                        }
                    }
                    self.act(actions).await;
                    self.maybe_dial();
                }
                _ = report.tick() => self.publish_status(),
            }
        };
        if self.machine.role() == Role::Active {
            if let Some(v) = &self.vip {
                let _ = v.release().await;
            }
        }
        tracing::info!("state-sync stopped");
        stopped
    }

    // ---- owner commands ----

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(change) => {
                if self.machine.role() != Role::Active {
                    return;
                }
                let seq = match &change {
                    Change::Upsert(r) => self.journal.upsert(r.clone()),
                    Change::Delete(id) => self.journal.delete(id),
                };
                let Some(seq) = seq else { return };
                if let Some(p) = self.peer.as_ref().filter(|p| p.level) {
                    if p.conn
                        .send(self.machine.epoch(), Frame::Delta { seq, change })
                    {
                        self.unacked.push_back((seq, Instant::now()));
                    }
                }
            }
            Command::Switchover { force, reply } => self.switchover(force, reply),
            Command::External(master) => {
                if !self.config.external_role {
                    tracing::warn!(master, "role notification ignored: external_role is off");
                    return;
                }
                tracing::info!(master, "role notified by the external owner of the address");
                let actions = self.machine.external(master);
                self.act(actions).await;
            }
            Command::Stop(_) => unreachable!("handled by the loop"),
        }
    }

    /// Make before break: the standby is told to take over after the last
    /// change; this node keeps the address (and forwards the RTP that
    /// still reaches it) until it hears the standby active with the next
    /// epoch, then steps down as for any higher epoch. A handover that
    /// gets lost leaves this node active, and the switchover fails.
    fn switchover(&mut self, force: bool, reply: oneshot::Sender<Result<(), String>>) {
        match self.send_handover(force) {
            Ok(seq) => {
                tracing::info!(
                    seq,
                    "switchover: handover sent, waiting for the standby to take over"
                );
                self.switchover = Some((reply, Instant::now() + SWITCHOVER_DEADLINE));
            }
            Err(why) => {
                let _ = reply.send(Err(why));
            }
        }
    }

    fn send_handover(&self, force: bool) -> Result<u64, String> {
        if self.machine.role() != Role::Active {
            return Err(format!(
                "this node is {}, not active",
                self.machine.role().name()
            ));
        }
        if self.switchover.is_some() {
            return Err("a switchover is already under way".into());
        }
        let Some(p) = self.peer.as_ref().filter(|p| p.level || p.incompatible) else {
            return Err("no standby is connected and in sync".into());
        };
        if p.incompatible && !force {
            return Err(format!(
                "the standby runs an incompatible record schema (upgrade state) and has none of the \
                 {} records; a forced switchover hands over anyway and the calls up here are lost",
                self.journal.len()
            ));
        }
        let seq = self.journal.seq();
        if !p.conn.send(self.machine.epoch(), Frame::Handover { seq }) {
            return Err("the replication connection has just closed".into());
        }
        Ok(seq)
    }

    fn switchover_deadline(&mut self) {
        if self
            .switchover
            .as_ref()
            .is_some_and(|(_, d)| Instant::now() >= *d)
        {
            if let Some((reply, _)) = self.switchover.take() {
                tracing::warn!("switchover: the standby did not take over; staying active");
                let _ = reply.send(Err(format!(
                    "the standby did not take over within {} s; this node stays active",
                    SWITCHOVER_DEADLINE.as_secs()
                )));
            }
        }
    }

    // ---- heartbeats ----

    async fn send_heartbeats(&mut self) {
        let seq = self.current_seq();
        // One counter for every link: the receiver checks each link on
        // its own, so the same datagram may travel both.
        self.heartbeat_counter += 1;
        let bytes = frame::encode(
            &self.heartbeat_key,
            Seal {
                session: self.heartbeat_session,
                counter: self.heartbeat_counter,
            },
            self.machine.epoch(),
            &Frame::Heartbeat {
                node: self.config.node.clone(),
                role: self.machine.role().code(),
                priority: self.config.priority,
                schema: self.schema,
                seq,
            },
        );
        for (sock, peer, name) in &self.heartbeats {
            if let Err(e) = sock.send_to(&bytes, peer).await {
                tracing::trace!(link = name, error = %e, "heartbeat not sent");
            }
        }
    }

    /// An authentic, fresh heartbeat of the peer (the link task checked).
    async fn on_heartbeat(&mut self, _link: usize, env: Envelope) {
        let Frame::Heartbeat {
            node,
            role,
            priority,
            schema,
            ..
        } = env.frame
        else {
            return;
        };
        let Some(role) = Role::from_code(role) else {
            return;
        };
        let now = Instant::now();
        self.last_heard = Some(now);
        let was = self.machine.role();
        let actions = self.machine.heartbeat(
            now,
            PeerHeartbeat {
                node,
                role,
                priority,
                epoch: env.epoch,
                schema,
            },
        );
        if was != self.machine.role() {
            tracing::info!(
                from = was.name(),
                to = self.machine.role().name(),
                peer = role.name(),
                "role changed"
            );
        }
        self.act(actions).await;
        self.maybe_dial();
    }

    fn current_seq(&self) -> u64 {
        if self.machine.role() == Role::Active {
            self.journal.seq()
        } else {
            self.replica.last_seq().unwrap_or(0)
        }
    }

    // ---- role actions ----

    async fn act(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::RunChecks => self.run_checks(),
                Action::BecomeActive { epoch, reason } => self.become_active(epoch, reason).await,
                Action::StepDown { epoch } => {
                    tracing::warn!(epoch, "an active peer with a higher epoch: stepping down");
                    self.step_down().await;
                    if let Some((reply, _)) = self.switchover.take() {
                        tracing::info!(epoch, "switchover done");
                        let _ = reply.send(Ok(()));
                    }
                }
                Action::Announce => {
                    if let Some(v) = &self.vip {
                        if let Err(e) = v.announce().await {
                            tracing::warn!(error = %e, "announcing the floating address failed");
                        }
                    }
                }
            }
        }
    }

    fn run_checks(&self) {
        let hosts = self.config.fencing.probe_hosts.clone();
        let timeout = Duration::from_millis(self.config.fencing.timeout_ms);
        let probe = self.probe.clone();
        let tx = self.inputs_tx.clone();
        tokio::spawn(async move {
            let (probes_ok, vip_answered) = tokio::join!(
                netcheck::any_reachable(&hosts, timeout),
                tokio::time::timeout(timeout * 2, probe(timeout)),
            );
            let result = CheckResult {
                probes_ok,
                vip_answered: vip_answered.unwrap_or(false),
            };
            let _ = tx.send(Input::Checks(result));
        });
    }

    async fn become_active(&mut self, epoch: u64, reason: &'static str) {
        let started = Instant::now();
        // The copy becomes the journal: a standby that connects later gets
        // every call, as a snapshot (a new epoch is a new history).
        let mut journal = Journal::new(self.config.journal_capacity);
        for r in self.replica.records() {
            journal.upsert(r.clone());
        }
        self.journal = journal;
        self.replica = Replica::new();
        self.peer = None;
        self.unacked.clear();
        let _ = self.events.send(NodeEvent::Activate { epoch, reason });
        if let Some(v) = &self.vip {
            if let Err(e) = v.acquire().await {
                tracing::error!(error = %e, "could not take the floating address");
            }
        }
        // Tell the peer at once rather than at the next interval.
        self.send_heartbeats().await;
        // Peer lost: from when it was last heard; otherwise from the decision.
        let since = match reason {
            "peer_lost" => self.last_heard.unwrap_or(started),
            _ => started,
        };
        let ms = since.elapsed().as_millis() as u64;
        self.takeovers += 1;
        self.last_takeover_ms = Some(ms);
        metrics::counter!("tandem_ha_takeovers_total", "reason" => reason).increment(1);
        metrics::gauge!("tandem_ha_last_takeover_seconds").set(ms as f64 / 1000.0);
        tracing::warn!(
            epoch,
            reason,
            records = self.journal.len(),
            takeover_ms = ms,
            "active now"
        );
        self.publish_status();
    }

    async fn step_down(&mut self) {
        if let Some(v) = &self.vip {
            if let Err(e) = v.release().await {
                tracing::error!(error = %e, "could not release the floating address");
            }
        }
        self.peer = None;
        self.unacked.clear();
        self.journal = Journal::new(self.config.journal_capacity);
        self.replica = Replica::new();
        let _ = self.events.send(NodeEvent::StepDown {
            epoch: self.machine.epoch(),
        });
        self.send_heartbeats().await;
        self.publish_status();
    }

    // ---- the replication stream ----

    /// A follower with an active peer and no stream dials it.
    fn maybe_dial(&mut self) {
        let following = self.machine.role().is_follower()
            && matches!(self.machine.peer(Instant::now()), Some((Role::Active, _)));
        if !following || self.peer.is_some() || self.dialing || Instant::now() < self.next_dial {
            return;
        }
        self.dialing = true;
        let (local, peer) = (self.config.link.listen, self.config.link.peer);
        let tx = self.inputs_tx.clone();
        let secret = self.secret.clone();
        let deadline = Duration::from_secs(2);
        tokio::spawn(async move {
            let r = match tokio::time::timeout(deadline, link::dial(local, peer)).await {
                Ok(Ok(mut stream)) => link::initiate(&mut stream, &secret, HANDSHAKE_DEADLINE)
                    .await
                    .map(|keys| (stream, keys))
                    .map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect timed out".to_string()),
            };
            let _ = tx.send(Input::Dialed(r));
        });
    }

    fn new_connection(
        &mut self,
        stream: tokio::net::TcpStream,
        keys: SessionKeys,
    ) -> Option<Connection> {
        let id = self.next_conn;
        self.next_conn += 1;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let inputs = self.inputs_tx.clone();
        // Link events go through the loop's single input queue.
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if inputs.send(Input::Link(ev)).is_err() {
                    return;
                }
            }
        });
        match Connection::spawn(id, stream, keys, self.refused.clone(), tx) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "replication connection unusable");
                None
            }
        }
    }

    /// A connect to the replication port: from the peer's address only,
    /// a few at a time, and nothing happens to the current standby until
    /// the handshake proves the secret ([`Input::Accepted`]).
    fn on_accept(&mut self, mut stream: tokio::net::TcpStream, from: SocketAddr) {
        if self.machine.role() != Role::Active {
            // Only the active node serves the stream; the peer retries.
            return;
        }
        if !same_host(from, self.config.link.peer) {
            self.refused.count(Refusal::Source, "stream");
            tracing::warn!(%from, peer = %self.config.link.peer, "replication connect from a stranger dropped");
            return;
        }
        if self.handshaking >= MAX_HANDSHAKING {
            self.refused.count(Refusal::Busy, "stream");
            tracing::warn!(%from, "replication connect dropped: too many handshakes under way");
            return;
        }
        self.handshaking += 1;
        let secret = self.secret.clone();
        let tx = self.inputs_tx.clone();
        tokio::spawn(async move {
            let result = link::respond(&mut stream, &secret, HANDSHAKE_DEADLINE)
                .await
                .map(|keys| (stream, keys));
            let _ = tx.send(Input::Accepted { from, result });
        });
    }

    /// An accepted connection's handshake ended.
    fn on_accepted(
        &mut self,
        from: SocketAddr,
        result: Result<(tokio::net::TcpStream, SessionKeys), FrameError>,
    ) {
        self.handshaking -= 1;
        let (stream, keys) = match result {
            Ok(x) => x,
            Err(e) => {
                self.refused.count(Refusal::Handshake, "stream");
                tracing::warn!(%from, error = %e, "replication connect refused");
                return;
            }
        };
        if self.machine.role() != Role::Active {
            return;
        }
        let Some(conn) = self.new_connection(stream, keys) else {
            return;
        };
        tracing::info!(%from, "standby connected");
        self.standby_connects += 1;
        // A newer proven connection replaces an older one (the standby
        // restarted).
        self.peer = Some(Peer::new(conn));
        self.unacked.clear();
    }

    async fn on_input(&mut self, input: Input) {
        match input {
            Input::Checks(result) => {
                let actions = self.machine.checks_done(Instant::now(), result);
                if actions.is_empty() {
                    tracing::info!(
                        probes_ok = result.probes_ok,
                        vip_answered = result.vip_answered,
                        role = self.machine.role().name(),
                        "fencing checks: no takeover"
                    );
                }
                self.act(actions).await;
            }
            Input::Accepted { from, result } => self.on_accepted(from, result),
            Input::Dialed(r) => {
                self.dialing = false;
                let h = self.config.heartbeat;
                match r {
                    Ok((stream, keys)) if self.machine.role().is_follower() => {
                        self.dial_failures = 0;
                        let Some(conn) = self.new_connection(stream, keys) else {
                            return;
                        };
                        let hello = Frame::Hello {
                            node: self.config.node.clone(),
                            schema: self.schema,
                            history: self.replica.history(),
                            last_seq: self.replica.last_seq(),
                        };
                        conn.send(self.machine.epoch(), hello);
                        self.peer = Some(Peer::new(conn));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if e.contains("handshake") {
                            self.refused.count(Refusal::Handshake, "stream");
                            tracing::warn!(peer = %self.config.link.peer, error = %e, "replication handshake failed");
                        }
                        self.dial_failures += 1;
                        let wait = if self.dial_failures >= h.reconnect_attempts {
                            if self.dial_failures == h.reconnect_attempts {
                                tracing::error!(peer = %self.config.link.peer, error = %e, attempts = self.dial_failures, "replication link: peer unreachable; retrying more slowly");
                            }
                            h.retry_delay_ms
                        } else {
                            h.reconnect_interval_ms
                        };
                        self.next_dial = Instant::now() + Duration::from_millis(wait);
                    }
                }
            }
            Input::Link(LinkEvent::Closed { conn, why }) => {
                if self.peer.as_ref().is_some_and(|p| p.conn.id == conn) {
                    let peer = self.peer.take().map(|p| p.conn.peer);
                    if why.contains("authentication") || why.contains("magic") {
                        // Counted by the reader task.
                        tracing::warn!(?peer, %why, "replication peer refused");
                    } else {
                        tracing::info!(?peer, %why, "replication stream closed");
                    }
                    self.machine.set_replicating(false);
                    self.unacked.clear();
                    self.next_dial = Instant::now()
                        + Duration::from_millis(self.config.heartbeat.reconnect_interval_ms);
                }
            }
            Input::Link(LinkEvent::Frame { conn, envelope }) => {
                if self.peer.as_ref().is_none_or(|p| p.conn.id != conn) {
                    return;
                }
                if self.machine.role() == Role::Active {
                    self.on_standby_frame(envelope);
                } else {
                    self.on_active_frame(envelope).await;
                }
            }
        }
    }

    /// Active: a frame from the standby.
    fn on_standby_frame(&mut self, env: Envelope) {
        let epoch = self.machine.epoch();
        match env.frame {
            Frame::Hello {
                node,
                schema,
                history,
                last_seq,
            } => {
                let Some(p) = self.peer.as_mut() else { return };
                if !role::schema_compatible(schema, self.schema) {
                    let reason = format!(
                        "record schema {}.{} is incompatible with {}.{}",
                        schema >> 16,
                        schema & 0xffff,
                        self.schema >> 16,
                        self.schema & 0xffff
                    );
                    tracing::warn!(standby = %node, %reason, "standby refused: upgrade state");
                    p.incompatible = true;
                    p.conn.send(epoch, Frame::Refused { reason });
                    return;
                }
                let from = if history == epoch { last_seq } else { None };
                let mut out = Vec::new();
                match self.journal.catch_up(from) {
                    CatchUp::Changes(changes) => {
                        for (seq, change) in changes {
                            out.push(Frame::Delta { seq, change });
                        }
                    }
                    CatchUp::Snapshot { seq, records } => {
                        out.push(Frame::SnapshotBegin {
                            seq,
                            records: records.len() as u64,
                        });
                        out.extend(records.into_iter().map(Frame::SnapshotRecord));
                        out.push(Frame::SnapshotEnd { seq });
                    }
                }
                let level = self.journal.seq();
                // "You are level at `level`": the standby counts as in
                // sync from here.
                out.push(Frame::Ack { seq: level });
                tracing::info!(standby = %node, frames = out.len(), resumed = from.is_some(), seq = level, "standby catching up");
                for f in out {
                    p.conn.send(epoch, f);
                }
                p.level = true;
                p.acked = from.unwrap_or(0);
                self.unacked.clear();
                if p.acked < level {
                    self.unacked.push_back((level, Instant::now()));
                }
            }
            Frame::Ack { seq } => {
                let now = Instant::now();
                if let Some(p) = self.peer.as_mut() {
                    p.acked = p.acked.max(seq);
                }
                while let Some(&(s, at)) = self.unacked.front() {
                    if s > seq {
                        break;
                    }
                    metrics::histogram!("tandem_replication_ack_seconds")
                        .record(now.duration_since(at).as_secs_f64());
                    self.unacked.pop_front();
                }
            }
            _ => {}
        }
    }

    /// Follower: a frame from the active node.
    async fn on_active_frame(&mut self, env: Envelope) {
        match env.frame {
            Frame::Refused { reason } => {
                // The connection stays open: no records come, but a forced
                // switchover (the rolling upgrade) can.
                tracing::error!(%reason, "the active node refused replication (upgrade state)");
            }
            Frame::Ack { seq } => {
                // Level with the active node.
                self.machine.set_replicating(true);
                tracing::info!(seq, records = self.replica.len(), "standby in sync");
                self.ack(seq);
            }
            Frame::Handover { seq } => {
                tracing::info!(seq, applied = ?self.replica.last_seq(), "handover received");
                let actions = self.machine.handover();
                self.act(actions).await;
            }
            frame @ (Frame::SnapshotBegin { .. }
            | Frame::SnapshotRecord(_)
            | Frame::SnapshotEnd { .. }
            | Frame::Delta { .. }) => {
                let change = match &frame {
                    Frame::Delta { change, .. } => Some(change.clone()),
                    _ => None,
                };
                let end = matches!(frame, Frame::SnapshotEnd { .. });
                match self.replica.apply_from(env.epoch, frame) {
                    Ok(Some(seq)) => {
                        if end {
                            let all = self.replica.records().cloned().collect();
                            let _ = self.events.send(NodeEvent::Resynced(all));
                        } else if let Some(c) = change {
                            let _ = self.events.send(NodeEvent::Applied(c));
                        }
                        self.ack(seq);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "replication out of step: reconnecting");
                        self.peer = None;
                        self.machine.set_replicating(false);
                    }
                }
            }
            _ => {}
        }
    }

    fn ack(&self, seq: u64) {
        if let Some(p) = &self.peer {
            p.conn.send(self.machine.epoch(), Frame::Ack { seq });
        }
    }

    fn publish_status(&mut self) {
        let now = Instant::now();
        let role = self.machine.role();
        let active = role == Role::Active;
        let mut records = BTreeMap::new();
        let recs: Box<dyn Iterator<Item = &Record>> = if active {
            Box::new(self.journal.records())
        } else {
            Box::new(self.replica.records())
        };
        let mut digest = 0u64;
        for r in recs {
            *records.entry(r.kind.clone()).or_insert(0) += 1;
            digest = digest.wrapping_add(record_hash(r));
        }
        let (standby_connected, lag_records) =
            match self.peer.as_ref().filter(|p| active && p.level) {
                Some(p) => (true, self.journal.seq().saturating_sub(p.acked)),
                None => (false, 0),
            };
        let lag_ms = self
            .unacked
            .front()
            .map_or(0, |(_, at)| now.duration_since(*at).as_millis() as u64);
        let peer = self.machine.peer(now);
        let status = Status {
            node: self.config.node.clone(),
            role,
            epoch: self.machine.epoch(),
            peer_role: peer.map(|p| p.0),
            peer_epoch: peer.map(|p| p.1),
            seq: self.current_seq(),
            standby_connected,
            lag_records,
            lag_ms,
            records,
            digest,
            takeovers: self.takeovers,
            last_takeover_ms: self.last_takeover_ms,
            standby_connects: self.standby_connects,
            refused: self.refused.snapshot(),
        };
        status_metrics(&status);
        self.status.send_replace(status);
    }
}

/// The node's status as gauges (every 200 ms and at each role change).
fn status_metrics(status: &Status) {
    for r in Role::ALL {
        metrics::gauge!("tandem_ha_role", "role" => r.name()).set(if r == status.role {
            1.0
        } else {
            0.0
        });
    }
    metrics::gauge!("tandem_ha_epoch").set(status.epoch as f64);
    metrics::gauge!("tandem_replication_lag_records").set(status.lag_records as f64);
    metrics::gauge!("tandem_replication_lag_seconds").set(status.lag_ms as f64 / 1000.0);
    // Alerting needs these two as numbers of their own: "the active node has
    // no standby" (no copy of the calls: the next failure loses them) and
    // "this node does not hear its peer" cannot be told from the role and
    // the lag, which read the same for a lone node and a level pair.
    metrics::gauge!("tandem_ha_standby_connected").set(if status.standby_connected {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("tandem_ha_peer_up").set(if status.peer_role.is_some() { 1.0 } else { 0.0 });
    for (kind, n) in &status.records {
        metrics::gauge!("tandem_replication_records", "kind" => kind.clone()).set(*n as f64);
    }
}

/// Every takeover reason as a counter from the start, at 0: a counter that
/// first appears at 1 is no increase to Prometheus (`increase()` needs an
/// earlier sample), and the takeover alert would miss the first takeover.
fn register_takeover_counters() {
    for reason in role::TAKEOVER_REASONS {
        metrics::counter!("tandem_ha_takeovers_total", "reason" => reason).increment(0);
    }
}

/// FNV-1a of a record's kind, key and version: the same on every node.
fn record_hash(r: &Record) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let parts: [&[u8]; 4] = [
        r.kind.as_bytes(),
        b"\0",
        r.key.as_bytes(),
        &r.version.to_be_bytes(),
    ];
    for b in parts.into_iter().flatten() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whether `from` is the peer's address (its port is ephemeral on a
/// stream; an IPv4 peer may show as IPv4-mapped on a dual-stack socket).
fn same_host(from: SocketAddr, peer: SocketAddr) -> bool {
    from.ip().to_canonical() == peer.ip().to_canonical()
}

/// What the heartbeat task of one link needs to know.
struct HeartbeatLink {
    index: usize,
    name: &'static str,
    /// Where the peer's heartbeats on this link come from.
    peer: SocketAddr,
    secret: Arc<[u8]>,
    refused: Arc<RefusalCounters>,
}

/// Receives heartbeat datagrams on one link and passes on only those
/// from the peer's address that open under the key of their session and
/// are fresh ([`SessionGuard`]); everything else is dropped and counted.
async fn receive_heartbeats(
    link: HeartbeatLink,
    sock: Arc<UdpSocket>,
    tx: mpsc::UnboundedSender<(usize, Envelope)>,
) {
    let mut buf = vec![0u8; 2048];
    let mut guard = SessionGuard::default();
    // The key of the session last heard (deriving one costs an HKDF).
    let mut key: Option<(u64, FrameKey)> = None;
    let mut last_warning: Option<Instant> = None;
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat receive");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let refusal = if !same_host(from, link.peer) {
            Err((Refusal::Source, "not from the peer's address".to_string()))
        } else {
            open_heartbeat(&link.secret, &mut key, &mut guard, &buf[..n])
        };
        match refusal {
            Ok(env) => {
                if tx.send((link.index, env)).is_err() {
                    return;
                }
            }
            Err((why, error)) => {
                link.refused.count(why, link.name);
                // One warning a second at most: a flood must not flood
                // the log too.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(link = link.name, %from, reason = why.name(), %error, "heartbeat refused");
                }
            }
        }
    }
}

/// Opens one heartbeat datagram and checks it is fresh.
fn open_heartbeat(
    secret: &[u8],
    key: &mut Option<(u64, FrameKey)>,
    guard: &mut SessionGuard,
    datagram: &[u8],
) -> Result<Envelope, (Refusal, String)> {
    let auth = |e: FrameError| (Refusal::Auth, e.to_string());
    let session = frame::session(datagram).map_err(auth)?;
    let k = match key {
        Some((s, k)) if *s == session => k,
        _ => {
            &key.insert((session, handshake::heartbeat_key(secret, session)))
                .1
        }
    };
    let (seal, env, used) = frame::decode(k, datagram).map_err(auth)?;
    if used != datagram.len() {
        return Err(auth(FrameError::Malformed("trailing bytes")));
    }
    guard
        .accept(seal)
        .map_err(|e| (Refusal::Replayed, e.to_string()))?;
    Ok(env)
}

#[cfg(test)]
mod tests;

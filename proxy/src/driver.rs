//! The driver of the call machine: one tokio task that owns the SIP
//! endpoint, the media relay and the hot-standby link, feeds the machine
//! its events (transaction-layer events, timers, ticks) and carries out
//! the actions it returns.
//!
//! One task, no locks: the machine is plain data touched only here. The
//! work per event is small (a few parses and prints); the RTP, which is
//! where the volume is, never passes through this task.

mod dns;
mod engine_timer;
mod maintenance;
mod registrations;
mod replication;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use media_relay::{MediaRelay, SessionId, SessionParams, Side};
use sipcore::endpoint::Endpoint;
use sipcore::transaction::{TransactionError, TransactionKey, TuEvent, TuReceiver, Unsent};
use tokio::sync::{mpsc, oneshot, watch};

pub use replication::{Replication, RECORD_SCHEMA};

use crate::b2bua::journal::EventKind;
use crate::b2bua::{
    Action, CallEnd, Event, Machine, MediaView, Observer, Refusal, RtcpMuxChange, UnixMillis,
    IDLE_SURVIVAL_TICK, SURVIVAL_TICK,
};
use crate::config::Config;
use crate::metrics;
use crate::pool::Destinations;
use crate::routing::{Router, RulesPolicy};

/// What the process around the driver (its admin API) may ask of it.
#[derive(Debug)]
pub enum Command {
    /// Hand the calls to the standby and step down. `force`: also to a
    /// standby in the upgrade state (its record schema is incompatible:
    /// the calls up here are lost).
    Switchover {
        force: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Force a WAN's state (`down`, `up`) or give it back to the evidence
    /// (`auto`); the WAN's state afterwards (down?), or why not.
    ForceWan {
        wan: String,
        mode: crate::wan::Forced,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Every WAN's state as JSON.
    Wans { reply: oneshot::Sender<String> },
    /// The registrar's bindings as JSON: of one AOR, or the first `limit`
    /// AORs in order; None without a registrar.
    Registrations {
        aor: Option<String>,
        limit: usize,
        reply: oneshot::Sender<Option<String>>,
    },
    /// The calls in progress as JSON, oldest first: on one member only if
    /// given, at most `limit`; Err names an unknown member.
    Calls {
        member: Option<String>,
        limit: usize,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Every destination member as JSON: group, address, state, draining,
    /// calls.
    Members { reply: oneshot::Sender<String> },
    /// Drain a member (`on`: no new calls go to it) or undrain it; whether
    /// that changed its state, or why not.
    DrainMember {
        member: String,
        on: bool,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Move the answered calls off a member (to `to` first), at most
    /// `max`: what was scheduled, or why not.
    MoveCalls {
        from: String,
        to: Option<String>,
        max: Option<usize>,
        reply: oneshot::Sender<Result<crate::b2bua::MoveReport, String>>,
    },
    /// The status page's view of the engine as JSON
    /// (`b2bua::overview`), with whether this node serves calls.
    Overview { reply: oneshot::Sender<String> },
}

/// What the process asks of the engine about stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Serve.
    Run,
    /// Refuse new calls; the calls up may end for `shutdown.drain_s`, then
    /// the rest are ended with a BYE; stop when none is left.
    Drain,
    /// Stop at once, without a word to anybody: the calls were handed to
    /// the standby (or this node was a standby and had none).
    Now,
}

/// Proof of the engine's life for the systemd watchdog, and what
/// `STATUS=` shows: written by the engine, read by the notifier's thread.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// Bumped on every housekeeping tick the engine loop gets to: a
    /// counter that stops is a stuck engine.
    pub ticks: AtomicU64,
    /// Calls in progress.
    pub calls: AtomicUsize,
}

/// After the drain's deadline, how long the engine still runs for the
/// BYEs it sent to be answered (and retransmitted over UDP) before the
/// process exits.
const BYE_LINGER: Duration = Duration::from_secs(2);

/// How many commands may wait for the driver.
pub const COMMAND_QUEUE: usize = 16;

/// Transaction-layer events fed in one pass of the engine loop, at most.
const TU_BATCH: usize = 64;

/// How often calls that moved to another media server are re-sent to the
/// standby: their relay's continuity state settles with the first packets
/// from the new server, after the call event that moved them.
const REFRESH_MOVED: Duration = Duration::from_millis(1000);

pub struct Driver {
    machine: Machine,
    ep: Endpoint,
    relay: Arc<MediaRelay>,
    /// The hot-standby pair, if configured.
    replication: Option<Replication>,
    /// A controlled switchover is under way.
    handing_over: bool,
    /// The configuration in force (SIGHUP reads its file again).
    config: Config,
    /// Group members named by DNS, kept resolved.
    dns: dns::DnsMembers,
    /// The TLS listener's certificate, swapped on SIGHUP.
    tls_identity: Option<sipcore::transport::ServerIdentity>,
    /// The registrar's snapshot file.
    snapshots: registrations::Snapshots,
    /// Ticks and calls, for the systemd notifier.
    heartbeat: Arc<Heartbeat>,
    /// The CDR file's writer (`[cdr]`), if configured.
    cdr: Option<crate::cdr::CdrSink>,
    /// With shards: whether this shard probes the members and publishes
    /// their health, or follows shard 0's.
    health_share: Option<crate::shard::health::HealthShare>,
}

/// The relay's per-stream idle times, as the machine sees them.
struct RelayView(Arc<MediaRelay>);

impl MediaView for RelayView {
    fn idle(&self, session: SessionId, side: Side) -> Result<Option<Duration>, ()> {
        self.0.idle_time(session, side).map_err(|_| ())
    }

    fn refused_since(&self, session: SessionId, side: Side) -> Option<Duration> {
        self.0.refused_since(session, side).ok().flatten()
    }
}

/// The machine's reports, as Prometheus metrics.
struct Prometheus;

impl Observer for Prometheus {
    fn call_rejected(&mut self, status: u16) {
        metrics::call_rejected(status);
    }
    fn call_answered(&mut self) {
        metrics::call_answered();
    }
    fn call_ended(&mut self, reason: &str, answered: bool) {
        metrics::call_ended(reason, answered);
    }
    fn calls_active(&mut self, n: usize) {
        metrics::calls_active(n);
    }
    fn setup_latency(&mut self, d: Duration) {
        metrics::setup_latency(d);
    }
    fn member_health(&mut self, member: &str, up: bool) {
        metrics::member_health(member, up);
    }
    fn member_state(&mut self, member: &str, state: &str) {
        metrics::member_state(member, state);
    }
    fn member_group(&mut self, member: &str, group: &str, in_group: bool) {
        metrics::member_group(member, group, in_group);
    }
    fn call_resumed(&mut self, from: &str, to: &str, outcome: &str) {
        metrics::call_resumed(from, to, outcome);
    }
    fn resume_latency(&mut self, d: Duration) {
        metrics::resume_latency(d);
    }
    fn call_moved(&mut self, from: &str, to: &str, outcome: &str) {
        metrics::call_moved(from, to, outcome);
    }
    fn member_draining(&mut self, member: &str, draining: bool) {
        metrics::member_draining(member, draining);
    }
    fn route_matched(&mut self, rule: &str) {
        metrics::route_matched(rule);
    }
    fn refused(&mut self, why: Refusal) {
        metrics::sip_refused(why.as_str());
    }
    fn register_result(&mut self, result: &str) {
        metrics::register_result(result);
    }
    fn auth_failed(&mut self, n: u64) {
        metrics::auth_failed(n);
    }
    fn registrations_active(&mut self, n: usize) {
        metrics::registrations_active(n);
    }
    fn wan_state(&mut self, wan: &str, down: bool) {
        metrics::wan_state(wan, down);
    }
    fn wan_transition(&mut self, wan: &str, down: bool) {
        metrics::wan_transition(wan, down);
    }
    fn wan_fallback_time(&mut self, wan: &str, total: Duration) {
        metrics::wan_fallback_time(wan, total);
    }

    fn upstream_states(&mut self, counts: [usize; 5]) {
        metrics::upstream_states(counts);
    }
    fn upstream_register(&mut self, result: &str) {
        metrics::upstream_register(result);
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Driver {
    pub fn new(
        config: &Config,
        router: Router,
        ep: Endpoint,
        relay: Arc<MediaRelay>,
        replication: Option<Replication>,
        branch_key: sipcore::transaction::BranchKey,
    ) -> Driver {
        let mut machine = Machine::new(
            config.machine_settings(),
            Destinations::from_config(config),
            Box::new(RulesPolicy::new(config, router)),
            Box::new(RelayView(relay.clone())),
            Box::new(Prometheus),
            replication.is_some(),
            rand::random(),
            std::time::Instant::now(),
        );
        // One key for the layer (which drops stray responses to nothing
        // of ours) and the machine (which makes the branches).
        ep.layer().set_branch_key(branch_key.clone());
        machine.set_branch_key(branch_key);
        Driver {
            machine,
            ep,
            relay,
            replication,
            handing_over: false,
            config: config.clone(),
            dns: dns::DnsMembers::new(config),
            tls_identity: None,
            snapshots: registrations::Snapshots::default(),
            heartbeat: Arc::default(),
            cdr: None,
            health_share: None,
        }
    }

    /// One shard of several (`sip.shards`): the Call-IDs it makes come
    /// back to it.
    pub fn with_call_id_steering(
        mut self,
        steering: crate::shard::steer::CallIdSteering,
    ) -> Driver {
        self.machine.set_call_id_steering(steering);
        self
    }

    /// One shard of several: it probes the members and publishes their
    /// health, or follows the shard that does.
    pub fn with_health_share(mut self, share: crate::shard::health::HealthShare) -> Driver {
        self.health_share = Some(share);
        self
    }

    /// Shard 0 publishes the members' health when it changed; another
    /// shard takes it (a member found down has its calls resumed: the
    /// actions come out with the machine's next event).
    fn share_member_health(&mut self) {
        let Some(share) = self.health_share.as_mut() else {
            return;
        };
        if share.probes() {
            let now: Vec<(&str, bool)> = self
                .machine
                .member_health()
                .map(|(name, up, _)| (name, up))
                .collect();
            share.publish(&now);
        } else if let Some(found) = share.changed() {
            for (name, up) in found {
                self.machine.follow_member_health(&name, up);
            }
        }
    }

    /// Counts this shard's calls with the other shards' for the caps.
    pub fn with_call_tally(mut self, tally: Arc<crate::shard::tally::CallTally>) -> Driver {
        self.machine.set_call_tally(tally);
        self
    }

    /// Where the engine proves its progress (the systemd watchdog).
    pub fn with_heartbeat(mut self, heartbeat: Arc<Heartbeat>) -> Driver {
        self.heartbeat = heartbeat;
        self
    }

    /// The TLS listener's certificate, to reload on SIGHUP.
    pub fn with_tls_identity(
        mut self,
        identity: Option<sipcore::transport::ServerIdentity>,
    ) -> Driver {
        self.tls_identity = identity;
        self
    }

    /// The registrar (from `[registrar]`), if on.
    /// Sends CDRs to the file's writer too (`[cdr]`), with start records
    /// if asked for.
    pub fn set_cdr(&mut self, sink: crate::cdr::CdrSink, start_records: bool) {
        self.machine.set_start_records(start_records);
        self.cdr = Some(sink);
    }

    pub fn set_registrar(&mut self, registrar: Option<crate::registrar::Registrar>) {
        self.machine.set_registrar(registrar);
        // Dual registration: the bindings loaded from the snapshot are
        // registered upstream, paced.
        if let Some(settings) = self.config.upstream_settings() {
            let users = self
                .machine
                .registrar()
                .map_or(0, |r| r.auth.credentials().users_in(&settings.realm));
            if users == 0 {
                tracing::warn!(realm = %settings.realm, "dual registration: the credentials file has no user in the central realm: every upstream REGISTER will fail");
            }
            tracing::info!(registrar = %settings.registrar, realm = %settings.realm, users, "dual registration on");
            let upstream = crate::upstream::Upstream::new(settings, format!("{}-up", token(16)));
            self.machine
                .set_upstream(Some(upstream), std::time::Instant::now(), now_millis());
        }
        // Phones loaded from the snapshot are trusted from the start.
        self.snapshots.trust_dirty = true;
        self.trust_phones(true);
    }

    /// SIGHUP: the credentials file is read again; a registrar turned on
    /// or off needs a restart.
    fn reload_registrar(&mut self) {
        let rc = self.config.registrar.as_ref().filter(|r| r.enabled());
        match (self.machine.registrar_mut(), rc) {
            (Some(reg), Some(_)) => match reg.reload(&self.config) {
                Ok(users) => tracing::info!(users, "registrar credentials reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "registrar credentials not reloaded; the old ones stay")
                }
            },
            (None, None) => {}
            _ => tracing::warn!("[registrar] turned on or off: that takes a restart"),
        }
        match self.config.upstream_settings() {
            Some(settings) if self.machine.upstream().is_some() => {
                self.machine.set_upstream_settings(settings)
            }
            None if self.machine.upstream().is_none() => {}
            _ => tracing::warn!("[registrar.upstream] turned on or off: that takes a restart"),
        }
    }

    /// SIGHUP: new TLS handshakes use the certificate files as they are
    /// now (renewed certificates); connections up keep theirs.
    fn reload_tls(&self) {
        let (Some(identity), Some(tls)) = (&self.tls_identity, &self.config.sip.tls) else {
            if self.config.sip.tls.is_some() {
                tracing::warn!("sip.tls added: a TLS listener starts only with the process");
            }
            return;
        };
        match tls.server_configs(&self.config.trunks) {
            Ok(server) => {
                identity.replace(server);
                tracing::info!(cert = %tls.cert_file.display(), "TLS certificate reloaded");
            }
            Err((key, e)) => tracing::error!(%key, error = %e, "TLS certificate not reloaded"),
        }
    }

    /// The destination groups of the configuration in force, with the
    /// members DNS resolved so far, and its routing policy.
    fn apply_config(&mut self) {
        let effective = self.dns.with_resolved(&self.config);
        // The members just resolved or reloaded are trusted from now on,
        // those gone are not.
        self.ep
            .set_trusted(effective.trusted_sources_with(self.phone_sources()));
        match Router::compile(&effective) {
            Ok(router) => self.machine.reload(
                Destinations::from_config(&effective),
                Box::new(RulesPolicy::new(&effective, router)),
            ),
            Err(e) => tracing::error!(error = %e, "routing not updated"),
        }
    }

    /// SIGHUP: the routing rules, groups and trunks of the configuration
    /// file are read again. New calls follow them at once; calls in
    /// progress keep their media server. A configuration that does not
    /// load is refused with the reason, and the old one stays.
    fn reload(&mut self) {
        let loaded = Config::load(&self.config.file).and_then(|c| {
            let _ = Router::compile(&c)?;
            Ok(c)
        });
        match loaded {
            Ok(config) => {
                self.dns = std::mem::take(&mut self.dns).reconfigured(&config);
                self.config = config;
                self.apply_config();
                self.reload_tls();
                self.reload_registrar();
                metrics::config_reloaded(true);
                self.machine.note(
                    now_millis(),
                    EventKind::ConfigReloaded,
                    "node",
                    "new calls follow its rules and groups",
                );
                let config = &self.config;
                tracing::info!(
                    file = %config.file.display(),
                    rules = config.rules.len(),
                    groups = config.groups.len() + 1,
                    "configuration reloaded: new calls follow its rules and groups"
                );
            }
            Err(e) => {
                metrics::config_reloaded(false);
                self.machine.note(
                    now_millis(),
                    EventKind::ConfigRefused,
                    "node",
                    &format!("{e:#}"),
                );
                tracing::error!(error = %e, "configuration not reloaded; the one in force stays");
            }
        }
    }

    /// Runs until the TU channel closes, until `shutdown` says
    /// [`Stop::Now`], or after [`Stop::Drain`] once every call has ended
    /// (new calls are refused meanwhile; at the drain's deadline the
    /// calls still up are ended).
    pub async fn run(
        mut self,
        mut events: TuReceiver,
        mut shutdown: watch::Receiver<Stop>,
        mut node_events: Option<mpsc::UnboundedReceiver<state_sync::NodeEvent>>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let (done_tx, mut done_rx) = mpsc::channel(COMMAND_QUEUE);
        let settings = self.machine.settings().clone();
        // The loop's deadlines (the machine's next timer, housekeeping,
        // probes, the survival tick, the DNS refresh, the drain) share one
        // tokio timer armed for the earliest: a `select!` pass polls one
        // timer rather than six, and no pass makes a new one (issue 15:
        // every message is a pass, and at low rates a wake-up of its own).
        let mut wake = engine_timer::EngineTimer::new();
        let start = std::time::Instant::now();
        // Housekeeping and probes start at once, as intervals did.
        let mut housekeeping_at = start;
        let mut probes_at = start;
        // With shards only shard 0 probes (the others follow its findings).
        let probing_here = settings.probing
            && self
                .health_share
                .as_ref()
                .is_none_or(crate::shard::health::HealthShare::probes);
        // Resumes are paced and media silence is checked on the survival
        // tick: every 10 ms while a pair replicates or resumes are paced,
        // else every 50 ms (`IDLE_SURVIVAL_TICK`).
        let mut survival_at = start;
        let refresh_every = (REFRESH_MOVED.as_millis() / SURVIVAL_TICK.as_millis()) as u64;
        let mut ticks: u64 = 0;
        let mut draining = false;
        // Draining: when the calls still up are ended; then how long the
        // engine lingers for the answers to its BYEs.
        let mut drain_deadline: Option<std::time::Instant> = None;
        let mut linger_until: Option<std::time::Instant> = None;
        #[cfg(debug_assertions)]
        let stall_at = test_stall_at();
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let (dns_tx, mut dns_rx) = mpsc::channel(1);
        loop {
            let survival_period = if self.replication.is_some() || self.machine.needs_fast_ticks() {
                SURVIVAL_TICK
            } else {
                IDLE_SURVIVAL_TICK
            };
            // WAN rounds ride on the probes' tick too, also when no group
            // is probed.
            let probing = (probing_here || !settings.wans.is_empty()) && self.serving();
            let dns_at = if self.dns.idle() {
                self.dns.next_refresh()
            } else {
                None
            };
            let deadlines = Deadlines {
                engine: self.machine.next_deadline(),
                housekeeping: housekeeping_at,
                probes: probing.then_some(probes_at),
                survival: survival_at + survival_period,
                dns: dns_at,
                drain: drain_deadline,
            };
            wake.set(Some(deadlines.earliest()));
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => {
                        self.on_tu(ev);
                        // What else the layer queued meanwhile (a receive
                        // batch) is fed now, not one pass of this loop
                        // each: a pass polls every branch and re-arms the
                        // timer (issue 15). Bounded, so that timers and
                        // commands still come in between.
                        for _ in 1..TU_BATCH {
                            match events.try_recv() {
                                Some(ev) => self.on_tu(ev),
                                None => break,
                            }
                        }
                    }
                    None => break,
                },
                Some(ev) = next_node_event(&mut node_events) => self.on_node_event(ev).await,
                Some(cmd) = commands.recv() => self.on_command(cmd, &done_tx),
                Some(()) = next_hangup(&mut hangup) => self.reload(),
                Some(results) = dns_rx.recv() => {
                    if self.dns.take(results) {
                        self.apply_config();
                    }
                }
                Some((result, reply)) = done_rx.recv() => {
                    let detail = match &result {
                        Ok(()) => "calls handed to the standby".to_owned(),
                        Err(why) => format!("refused: {why}"),
                    };
                    self.machine.note(now_millis(), EventKind::Switchover, "node", &detail);
                    if result.is_err() {
                        self.handing_over = false;
                    }
                    let _ = reply.send(result);
                }
                _ = wake.fired() => {
                    let now = std::time::Instant::now();
                    if deadlines.engine.is_some_and(|t| t <= now) {
                        self.feed(Event::Timers);
                    }
                    if deadlines.housekeeping <= now {
                        housekeeping_at = now + HOUSEKEEPING;
                        #[cfg(debug_assertions)]
                        if stall_at.is_some_and(|t| now >= t) {
                            tracing::warn!("TANDEM_TEST_STALL_ENGINE_MS: the engine stalls for good");
                            std::future::pending::<()>().await;
                        }
                        self.housekeeping_tick();
                    }
                    if deadlines.probes.is_some_and(|t| t <= now) {
                        probes_at = now + settings.probe_interval;
                        self.feed(Event::Probes);
                    }
                    if deadlines.survival <= now {
                        survival_at = now;
                        if self.survival_tick() {
                            ticks += 1;
                            if self.replication.is_some() && ticks.is_multiple_of(refresh_every) {
                                self.machine.refresh_moved_calls();
                            }
                            self.feed(Event::SurvivalTick);
                        }
                    }
                    if deadlines.dns.is_some_and(|t| t <= now) && self.dns.idle() {
                        self.dns.resolve(&self.config, dns_tx.clone());
                    }
                    if deadlines.drain.is_some_and(|t| t <= now) {
                        drain_deadline = None;
                        linger_until = Some(now + BYE_LINGER);
                        self.feed(Event::DrainDeadline);
                    }
                }
                changed = shutdown.changed() => {
                    let stop = if changed.is_err() { Stop::Now } else { *shutdown.borrow() };
                    match stop {
                        Stop::Run => {}
                        Stop::Now => break,
                        Stop::Drain if !draining => {
                            draining = true;
                            let drain = Duration::from_secs(self.config.shutdown.drain_s);
                            tracing::info!(calls = self.machine.calls(), drain_s = drain.as_secs(), "shutdown: new calls are refused; the calls up may end until the deadline");
                            drain_deadline = Some(std::time::Instant::now() + drain);
                            self.feed(Event::Drain);
                        }
                        Stop::Drain => {}
                    }
                }
            }
            if draining
                && self.machine.calls() == 0
                && linger_until.is_none_or(|t| std::time::Instant::now() >= t)
            {
                break;
            }
        }
        self.sync_bindings();
        self.write_snapshot(true);
        tracing::info!("call engine stopped");
    }

    /// One event of the transaction layer. While handing over, requests
    /// are left to the peers' retransmissions, which reach the new active
    /// node.
    fn on_tu(&mut self, ev: TuEvent) {
        if self.serving() && !self.handing_over {
            count_received(&ev);
            self.feed(Event::Tu(ev));
        }
    }

    /// Every half second: the heartbeat, snapshots, trusted phones, and
    /// the machine's session hygiene.
    fn housekeeping_tick(&mut self) {
        self.heartbeat.ticks.fetch_add(1, Ordering::Relaxed);
        self.heartbeat
            .calls
            .store(self.machine.calls(), Ordering::Relaxed);
        self.write_snapshot(false);
        self.trust_phones(false);
        if self.serving() {
            self.feed(Event::Housekeeping);
            metrics::relay(&self.relay.counters());
        }
    }

    /// The survival tick's replication and sharing; whether the machine
    /// gets the tick (only while serving).
    fn survival_tick(&mut self) -> bool {
        self.replicate();
        self.sync_bindings();
        self.sync_wans();
        self.sync_upstream();
        self.share_member_health();
        self.serving()
    }

    /// One event into the machine, and everything that follows from it:
    /// the actions are carried out in order, and what they report back
    /// (the relay's answer, a request that could not be sent) is fed in
    /// turn.
    fn feed(&mut self, event: Event) {
        // Most events produce no follow-up: the queue is only allocated
        // for one that does (a queue per event was a malloc and free for
        // every message and tick).
        let mut next = Some(event);
        let mut pending = VecDeque::new();
        while let Some(event) = next.take().or_else(|| pending.pop_front()) {
            let now = std::time::Instant::now();
            let mut actions = self.machine.on(event, now, now_millis());
            if self.cdr.is_some() {
                // CDRs first (the rest keeps its order, and a record still
                // comes before its call's RemoveMedia): by the time a party
                // has the answer to its BYE, its call's record is in the
                // writer's queue, so a crash right after loses no more than
                // the writer's wake-up.
                actions.sort_by_key(|a| !matches!(a, Action::CallEnded(_)));
            }
            for action in actions.drain(..) {
                if let Some(follow) = self.carry_out(action) {
                    pending.push_back(follow);
                }
            }
            self.machine.recycle(actions);
        }
    }

    /// Carries out one action; returns the event it produces, if any.
    fn carry_out(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::SendRequest {
                key,
                request,
                target,
            } => {
                metrics::sip_out_request(request.method());
                if let Err(e) = self.ep.layer().send_request(request, target) {
                    tracing::warn!(error = %e, %target, "request not sent");
                    return Some(Event::Tu(TuEvent::TransportError {
                        key: TransactionKey::Client(key),
                    }));
                }
            }
            Action::Respond { key, response } => {
                metrics::sip_out_response(response.status().unwrap_or(0));
                if let Err(unsent) = self.ep.layer().try_send_response(&key, response) {
                    match *unsent {
                        // Its transaction has ended already (the layer's
                        // cap on waiting ones): the machine decides
                        // whether it goes on statelessly.
                        Unsent {
                            error: TransactionError::NoSuchTransaction(_),
                            response,
                        } => return Some(Event::ResponseUnsent { key, response }),
                        Unsent { error, .. } => {
                            tracing::debug!(error = %error, "response not sent")
                        }
                    }
                }
            }
            Action::Forget { key, answer } => {
                if let Some(answer) = &answer {
                    metrics::sip_out_response(answer.status().unwrap_or(0));
                }
                self.ep.layer().forget(&key, answer);
            }
            Action::SendRaw { target, bytes } => {
                if let Err(e) = self.ep.send_raw(target, bytes) {
                    tracing::debug!(error = %e, %target, "message not sent");
                }
            }
            Action::CreateMedia {
                call,
                session,
                rtcp_mux,
            } => {
                // The latching mode of the configuration in force (a SIGHUP
                // reload changes it for new calls).
                let options = media_relay::SessionOptions {
                    latching: self.config.media.latching,
                    ..self.relay.config().session_defaults
                };
                // Sockets for RTP only when leg A's offer multiplexes RTCP
                // (two per call, not four, when both legs do; an answer
                // without it binds the rest). An offer without rtcp-mux
                // gets all four at once: most trunks do not multiplex, and
                // a parked pair is then reused whole instead of its RTCP
                // sockets being closed and bound again for every call.
                let params = SessionParams {
                    options: Some(options),
                    rtcp_mux,
                    ..SessionParams::default()
                };
                let result = self
                    .relay
                    .create_session(session, params)
                    .map_err(|e| e.to_string());
                return Some(Event::MediaCreated { call, result });
            }
            Action::SetRemote {
                session,
                side,
                addr,
                sip_source,
            } => {
                // The SIP source first: from then on the new SDP address
                // and the NATed source may both latch.
                let told = self
                    .relay
                    .set_signalling_ip(session, side, sip_source)
                    .and_then(|()| self.relay.set_remote(session, side, addr));
                if let Err(e) = told {
                    tracing::warn!(%session, error = %e, "relay not told the peer's address");
                }
            }
            Action::RtcpMux { session, change } => self.change_rtcp_mux(session, change),
            Action::SwitchUpstream {
                session,
                addr,
                sip_source,
                rtcp_mux,
            } => {
                let switched = self
                    .relay
                    .set_rtcp_mux(session, Side::B, rtcp_mux)
                    .and_then(|()| self.relay.switch_upstream(session, addr, sip_source));
                if let Err(e) = switched {
                    tracing::warn!(%session, error = %e, "relay not switched to the new server");
                }
            }
            Action::RemoveMedia { session } => self.remove_media(session),
            Action::CallEnded(end) => self.write_cdr(&end),
            Action::CallStarted(start) => {
                if let Some(sink) = &self.cdr {
                    sink.submit(crate::cdr::start_line(&start));
                }
            }
        }
        None
    }

    /// Carries out an SDP's RTCP mux change (see [`RtcpMuxChange`]). Each
    /// side on its own: a socket that cannot be bound on one side must
    /// not leave the other side's routing or socket undone.
    fn change_rtcp_mux(&self, session: SessionId, change: RtcpMuxChange) {
        let (sides, mux): (&[Side], Option<bool>) = match change {
            RtcpMuxChange::BindSockets => (&[Side::A, Side::B], None),
            RtcpMuxChange::Agreed { side: None, mux } => (&[Side::A, Side::B], Some(mux)),
            RtcpMuxChange::Agreed {
                side: Some(side),
                mux,
            } => (
                if side == Side::A {
                    &[Side::A]
                } else {
                    &[Side::B]
                },
                Some(mux),
            ),
        };
        // Each side's flag, then its socket if it does not multiplex.
        for &side in sides {
            let done = match mux {
                Some(mux) => self.relay.set_rtcp_mux(session, side, mux),
                None => self.relay.open_rtcp(session, side),
            };
            match done {
                Ok(()) => {}
                Err(e @ media_relay::Error::Bind { .. }) => {
                    tracing::warn!(%session, %side, error = %e, "RTCP socket not bound")
                }
                Err(e) => {
                    tracing::warn!(%session, %side, error = %e, "relay not told the RTCP mux")
                }
            }
        }
    }

    fn remove_media(&self, session: SessionId) {
        // Inline: removing never waits (see `remove_session_now`); its
        // stats went into the CDR line just before.
        let _ = self.relay.remove_session_now(session);
    }

    /// One CDR line per call: the machine's record and the relay's stream
    /// statistics.
    fn write_cdr(&self, end: &CallEnd) {
        let stats = self.relay.stats(end.session).ok();
        if let Some(sink) = &self.cdr {
            sink.submit(crate::cdr::end_line(end, stats.as_ref()));
        }
        let (a_rx, b_rx) = match &stats {
            Some(s) => (s.side(Side::A).clone(), s.side(Side::B).clone()),
            None => Default::default(),
        };
        tracing::info!(
            target: "cdr",
            call = end.call,
            a_call_id = %end.a_call_id,
            b_call_id = %end.b_call_id,
            source = %end.source,
            rule = %end.rule,
            group = %end.group,
            caller = %end.caller,
            callee = %end.callee,
            servers = %end.servers.join(","),
            resumes = end.resumes,
            setup_ms = end.setup_ms,
            answer_ms = end.answer_ms,
            end_ms = end.end_ms,
            reason = %end.reason,
            a_packets = a_rx.packets,
            a_lost = a_rx.lost,
            a_jitter_ms = a_rx.jitter_ms,
            a_max_gap_ms = a_rx.max_gap.as_millis() as u64,
            b_packets = b_rx.packets,
            b_lost = b_rx.lost,
            b_jitter_ms = b_rx.jitter_ms,
            b_max_gap_ms = b_rx.max_gap.as_millis() as u64,
            "call ended"
        );
    }
}

/// Debug builds only: `TANDEM_TEST_STALL_ENGINE_MS=N` makes the engine
/// loop stop making progress N ms after start (it waits on nothing, for
/// good), so that a test can check that the watchdog pings stop.
#[cfg(debug_assertions)]
fn test_stall_at() -> Option<std::time::Instant> {
    let ms: u64 = std::env::var("TANDEM_TEST_STALL_ENGINE_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(std::time::Instant::now() + Duration::from_millis(ms))
}

/// Incoming SIP, for the metrics.
fn count_received(ev: &TuEvent) {
    match ev {
        TuEvent::Request { request, .. } => metrics::sip_in_request(request.method()),
        TuEvent::Response { response, .. } => {
            metrics::sip_in_response(response.status().unwrap_or(0))
        }
        _ => {}
    }
}

async fn next_node_event(
    rx: &mut Option<mpsc::UnboundedReceiver<state_sync::NodeEvent>>,
) -> Option<state_sync::NodeEvent> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_hangup(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The engine loop's deadlines in one pass (see `Driver::run`).
#[derive(Clone, Copy)]
struct Deadlines {
    /// The machine's next timer.
    engine: Option<std::time::Instant>,
    housekeeping: std::time::Instant,
    /// None while nothing is probed here.
    probes: Option<std::time::Instant>,
    survival: std::time::Instant,
    /// The next DNS refresh, while none runs.
    dns: Option<std::time::Instant>,
    drain: Option<std::time::Instant>,
}

impl Deadlines {
    fn earliest(&self) -> std::time::Instant {
        [self.engine, self.probes, self.dns, self.drain]
            .into_iter()
            .flatten()
            .fold(self.housekeeping.min(self.survival), std::cmp::min)
    }
}

/// How often housekeeping runs.
const HOUSEKEEPING: Duration = Duration::from_millis(500);

/// A random token for tags, branches and Call-IDs outside the machine.
pub(crate) fn token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

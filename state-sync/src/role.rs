//! Which node is active: an explicit state machine over plain data.
//!
//! Inputs are what the node saw (a heartbeat, the passing of time, the
//! outcome of the fencing checks, a handover); outputs are [`Action`]s
//! the driver carries out (take the floating address, drop it, run the
//! checks). Time is passed in, so every rule is tested without sleeping.
//!
//! The rules, for an operator who has been burnt by split brain:
//! * A follower takes over only when the peer has been silent on every
//!   link for `dead_after`, *and* the checks say it is not itself the one
//!   cut off (a probe host answers) *and* nobody answers on the floating
//!   address (else only the pair link is down).
//! * Every takeover raises the epoch; an active node that hears an active
//!   peer with a higher epoch steps down at once. There is no automatic
//!   fail-back.
//! * A node that starts and hears no peer becomes active only if its own
//!   checks pass (fail-safe start).
//! * Peers whose record schemas are incompatible are in `Upgrade`: no
//!   automatic takeover, only a manual switchover.

use std::time::{Duration, Instant};

/// The role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Just started: listening for the peer.
    Starting,
    /// Holds the floating address and serves.
    Active,
    /// Follows the active node with a level copy of its records.
    Standby,
    /// Follows, but the copy is not being fed (link down or resyncing).
    Reconnecting,
    /// Follows a peer whose record schema is incompatible: no automatic
    /// takeover. `peer_newer` says which side runs the newer version.
    Upgrade { peer_newer: bool },
    /// Its own checks failed (it is probably the one cut off): it serves
    /// nothing and retries.
    Failed,
}

/// Why a node took over (the `reason` of `BecomeActive` and of the
/// `tandem_ha_takeovers_total` counter): no peer at start, the active peer
/// lost, a controlled switchover, or an external owner of the address.
pub const TAKEOVER_REASONS: [&str; 4] = ["start", "peer_lost", "switchover", "external"];

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Starting,
        Role::Active,
        Role::Standby,
        Role::Reconnecting,
        Role::Upgrade { peer_newer: true },
        Role::Upgrade { peer_newer: false },
        Role::Failed,
    ];

    /// On the wire (heartbeats) and in metrics.
    pub fn code(self) -> u8 {
        match self {
            Role::Starting => 0,
            Role::Active => 1,
            Role::Standby => 2,
            Role::Reconnecting => 3,
            Role::Upgrade { peer_newer: true } => 4,
            Role::Upgrade { peer_newer: false } => 5,
            Role::Failed => 6,
        }
    }

    pub fn from_code(code: u8) -> Option<Role> {
        Some(match code {
            0 => Role::Starting,
            1 => Role::Active,
            2 => Role::Standby,
            3 => Role::Reconnecting,
            4 => Role::Upgrade { peer_newer: true },
            5 => Role::Upgrade { peer_newer: false },
            6 => Role::Failed,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Active => "active",
            Role::Standby => "standby",
            Role::Reconnecting => "reconnecting",
            Role::Upgrade { peer_newer: true } => "upgrade_peer_newer",
            Role::Upgrade { peer_newer: false } => "upgrade_peer_older",
            Role::Failed => "failed",
        }
    }

    /// Following an active peer (or waiting to).
    pub fn is_follower(self) -> bool {
        matches!(
            self,
            Role::Standby | Role::Reconnecting | Role::Upgrade { .. }
        )
    }
}

/// Record schemas are `major << 16 | minor`; the same major replicates.
pub fn schema_compatible(a: u32, b: u32) -> bool {
    a >> 16 == b >> 16
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the fencing checks and report with [`RoleMachine::checks_done`].
    RunChecks,
    /// Take the floating address and serve, as `epoch`.
    BecomeActive { epoch: u64, reason: &'static str },
    /// Drop the floating address and live state at once; follow the peer.
    StepDown { epoch: u64 },
    /// Announce the address again (gratuitous ARP, unsolicited NA): an
    /// old active node came back, the network must point at us.
    Announce,
}

/// A heartbeat as the machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHeartbeat {
    pub node: String,
    pub role: Role,
    pub priority: u8,
    pub epoch: u64,
    pub schema: u32,
}

/// Outcome of one round of fencing checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckResult {
    /// A probe host answered (or none is configured).
    pub probes_ok: bool,
    /// Something answered on the floating address.
    pub vip_answered: bool,
}

/// Timing of the rules, from the config.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub dead_after: Duration,
    pub retry_delay: Duration,
    pub start_wait: Duration,
}

#[derive(Debug, Clone)]
struct Peer {
    node: String,
    role: Role,
    priority: u8,
    epoch: u64,
    schema: u32,
    last_heard: Instant,
}

#[derive(Debug)]
pub struct RoleMachine {
    role: Role,
    epoch: u64,
    node: String,
    priority: u8,
    schema: u32,
    timing: Timing,
    started: Instant,
    peer: Option<Peer>,
    /// Checks asked for and not reported yet.
    checking: bool,
    next_check: Option<Instant>,
    /// The replication stream is level (set by the driver).
    replicating: bool,
    /// Roles are decided outside (see `set_external`).
    external: bool,
}

impl RoleMachine {
    pub fn new(
        node: &str,
        priority: u8,
        schema: u32,
        epoch: u64,
        timing: Timing,
        now: Instant,
    ) -> RoleMachine {
        RoleMachine {
            role: Role::Starting,
            epoch,
            node: node.to_string(),
            priority,
            schema,
            timing,
            started: now,
            peer: None,
            checking: false,
            next_check: None,
            replicating: false,
            external: false,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The peer's role and epoch as last heard, if it was heard within
    /// `dead_after`.
    pub fn peer(&self, now: Instant) -> Option<(Role, u64)> {
        self.peer
            .as_ref()
            .filter(|p| now.duration_since(p.last_heard) <= self.timing.dead_after)
            .map(|p| (p.role, p.epoch))
    }

    pub fn peer_schema(&self) -> Option<u32> {
        self.peer.as_ref().map(|p| p.schema)
    }

    /// Roles come only from [`RoleMachine::external`] (an external program
    /// owns the floating address): no takeover of the machine's own.
    pub fn set_external(&mut self, external: bool) {
        self.external = external;
    }

    /// The external program's verdict: master (serve) or not (backup,
    /// fault: follow).
    pub fn external(&mut self, master: bool) -> Vec<Action> {
        match (master, self.role == Role::Active) {
            (true, false) => self.take_over("external"),
            (false, true) => {
                self.role = Role::Reconnecting;
                self.replicating = false;
                vec![Action::StepDown { epoch: self.epoch }]
            }
            _ => Vec::new(),
        }
    }

    /// The driver's replication stream became level (true) or broke.
    pub fn set_replicating(&mut self, level: bool) {
        self.replicating = level;
        if self.role == Role::Standby && !level {
            self.role = Role::Reconnecting;
        } else if self.role == Role::Reconnecting && level {
            self.role = Role::Standby;
        }
    }

    /// An active peer heard within `dead_after`.
    fn active_alive(&self, now: Instant) -> bool {
        matches!(self.peer(now), Some((Role::Active, _)))
    }

    /// Whether we, not the peer, should become active when neither is.
    /// A node that follows (it has a copy of the calls) goes before one
    /// that is just starting (it has none); then priority, then the lower
    /// name.
    fn wins_tie(&self, peer: &Peer) -> bool {
        let rank = |r: Role| u8::from(r != Role::Starting);
        (
            rank(self.role),
            self.priority,
            std::cmp::Reverse(self.node.as_str()),
        ) > (
            rank(peer.role),
            peer.priority,
            std::cmp::Reverse(peer.node.as_str()),
        )
    }

    pub fn heartbeat(&mut self, now: Instant, hb: PeerHeartbeat) -> Vec<Action> {
        if hb.node == self.node {
            // Our own heartbeat looped back, or a misconfigured peer.
            return Vec::new();
        }
        let peer = Peer {
            node: hb.node,
            role: hb.role,
            priority: hb.priority,
            epoch: hb.epoch,
            schema: hb.schema,
            last_heard: now,
        };
        let mut actions = Vec::new();
        if hb.role == Role::Active {
            if self.role == Role::Active {
                // Two actives: the higher epoch stays (equal: the tie rule).
                if hb.epoch > self.epoch || (hb.epoch == self.epoch && !self.wins_tie(&peer)) {
                    self.epoch = hb.epoch;
                    self.follow(hb.schema);
                    actions.push(Action::StepDown { epoch: hb.epoch });
                } else {
                    // An older active came back: keep the network on us.
                    actions.push(Action::Announce);
                }
            } else {
                self.epoch = self.epoch.max(hb.epoch);
                self.follow(hb.schema);
            }
        }
        self.peer = Some(peer);
        actions
    }

    fn follow(&mut self, peer_schema: u32) {
        self.role = if !schema_compatible(self.schema, peer_schema) {
            Role::Upgrade {
                peer_newer: peer_schema > self.schema,
            }
        } else if self.replicating {
            Role::Standby
        } else {
            Role::Reconnecting
        };
    }

    fn start_checks(&mut self, now: Instant) -> Vec<Action> {
        if self.checking || self.next_check.is_some_and(|t| now < t) {
            return Vec::new();
        }
        self.checking = true;
        vec![Action::RunChecks]
    }

    /// The passing of time: a lost peer, the end of the start wait.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        if self.external {
            return Vec::new();
        }
        if matches!(self.role, Role::Active | Role::Upgrade { .. }) || self.active_alive(now) {
            return Vec::new();
        }
        if self.role == Role::Starting && now.duration_since(self.started) < self.timing.start_wait
        {
            return Vec::new();
        }
        if self.role == Role::Standby {
            // The stream from a silent peer is not trusted to be level.
            self.role = Role::Reconnecting;
            self.replicating = false;
        }
        // No active node. If the peer is alive it is waiting too: only
        // one of us may try.
        let now_alive = self.peer(now).is_some();
        match &self.peer {
            Some(p) if now_alive && !self.wins_tie(p) => Vec::new(),
            _ => self.start_checks(now),
        }
    }

    /// The outcome of the checks asked for by [`Action::RunChecks`].
    pub fn checks_done(&mut self, now: Instant, result: CheckResult) -> Vec<Action> {
        self.checking = false;
        self.next_check = Some(now + self.timing.retry_delay);
        if matches!(self.role, Role::Active | Role::Upgrade { .. }) {
            return Vec::new();
        }
        if self.active_alive(now) {
            // The peer spoke up meanwhile.
            return Vec::new();
        }
        if !result.probes_ok {
            self.role = Role::Failed;
            return Vec::new();
        }
        if result.vip_answered {
            // Somebody serves on the floating address: only the pair link
            // is down. Never a second active.
            if self.role == Role::Failed {
                self.role = Role::Reconnecting;
            }
            return Vec::new();
        }
        let reason = if self.role == Role::Starting || self.peer.is_none() {
            "start"
        } else {
            "peer_lost"
        };
        self.take_over(reason)
    }

    /// A handover from the active node (controlled switchover): take over
    /// without checks — the active node asked and has let go.
    pub fn handover(&mut self) -> Vec<Action> {
        if !self.role.is_follower() {
            return Vec::new();
        }
        self.take_over("switchover")
    }

    fn take_over(&mut self, reason: &'static str) -> Vec<Action> {
        debug_assert!(TAKEOVER_REASONS.contains(&reason), "{reason}");
        let peer_epoch = self.peer.as_ref().map_or(0, |p| p.epoch);
        self.epoch = self.epoch.max(peer_epoch) + 1;
        self.role = Role::Active;
        self.replicating = false;
        vec![Action::BecomeActive {
            epoch: self.epoch,
            reason,
        }]
    }
}

#[cfg(test)]
mod tests;

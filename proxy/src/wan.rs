//! The WAN to the central site as plain data: its state (`up`/`down`)
//! judged from evidence with hysteresis, and an operator's override.
//!
//! Evidence comes in rounds (one per health interval): a round is alive
//! when any path across the WAN answered in it — a member of one of the
//! WAN's central destination groups (its OPTIONS keepalive, or any answer
//! to a real request), or one of the WAN's probe hosts (a SIP OPTIONS of
//! its own). `failures_to_down` dead rounds in a row make the WAN `down`;
//! `successes_to_up` live rounds in a row, and at least `hold_down` since
//! it went down, make it `up` again — a lossy link that answers now and
//! then does not flap. An operator may force either state for planned work
//! (`auto` gives the decision back to the evidence).
//!
//! Nothing here reads a clock or a socket: the call machine feeds rounds
//! and acts on the transitions (routing rules with `wan = "down"`, calls
//! across the WAN ended).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What the configuration says about one WAN (`[[wan]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanSettings {
    pub name: String,
    /// Destination groups reached across this WAN (the central PBX,
    /// media servers, registrar).
    pub groups: Vec<String>,
    /// SIP hosts across the WAN probed with OPTIONS of their own.
    pub probe_hosts: Vec<std::net::SocketAddr>,
    pub failures_to_down: u32,
    pub successes_to_up: u32,
    pub hold_down: Duration,
}

/// The operator's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forced {
    Auto,
    Up,
    Down,
}

impl Forced {
    pub fn parse(s: &str) -> Option<Forced> {
        match s {
            "auto" => Some(Forced::Auto),
            "up" => Some(Forced::Up),
            "down" => Some(Forced::Down),
            _ => None,
        }
    }
}

/// A change of a WAN's effective state, with what caused it (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub down: bool,
    pub why: String,
}

/// One WAN's state machine.
#[derive(Debug, Clone)]
pub struct Wan {
    pub settings: WanSettings,
    /// What the evidence says.
    judged_down: bool,
    forced: Forced,
    dead_rounds: u32,
    live_rounds: u32,
    down_since: Option<Instant>,
    /// Something across the WAN answered since the last round.
    answered: bool,
    /// How long a round lasts: the slowest health interval of the WAN's
    /// groups (a round must span a probe of each), set by the machine;
    /// zero: every call of `end_round` ends one.
    pub round: Duration,
    last_round: Option<Instant>,
}

impl Wan {
    pub fn new(settings: WanSettings) -> Wan {
        Wan {
            settings,
            judged_down: false,
            forced: Forced::Auto,
            dead_rounds: 0,
            live_rounds: 0,
            down_since: None,
            answered: false,
            round: Duration::ZERO,
            last_round: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Whether the WAN is down (the override, else the evidence).
    pub fn is_down(&self) -> bool {
        match self.forced {
            Forced::Auto => self.judged_down,
            Forced::Up => false,
            Forced::Down => true,
        }
    }

    /// Something across the WAN answered (a probe, a member, a request).
    pub fn evidence_alive(&mut self) {
        self.answered = true;
    }

    /// Ends a round at `now`: judges it by whether anything answered
    /// since the last one. Some(transition) when the effective state
    /// changed.
    pub fn end_round(&mut self, now: Instant) -> Option<Transition> {
        // A tick a little early is on time (the caller ticks at the
        // shortest health interval of all groups).
        let slack = self.round / 10;
        if self
            .last_round
            .is_some_and(|t| now.saturating_duration_since(t) + slack < self.round)
        {
            return None;
        }
        self.last_round = Some(now);
        let alive = std::mem::take(&mut self.answered);
        let before = self.is_down();
        if alive {
            self.dead_rounds = 0;
            self.live_rounds = self.live_rounds.saturating_add(1);
            let held = self
                .down_since
                .is_none_or(|t| now.saturating_duration_since(t) >= self.settings.hold_down);
            if self.judged_down && self.live_rounds >= self.settings.successes_to_up && held {
                self.judged_down = false;
                self.down_since = None;
            }
        } else {
            self.live_rounds = 0;
            self.dead_rounds = self.dead_rounds.saturating_add(1);
            if !self.judged_down && self.dead_rounds >= self.settings.failures_to_down {
                self.judged_down = true;
                self.down_since = Some(now);
            }
        }
        let after = self.is_down();
        (before != after).then(|| Transition {
            down: after,
            why: if after {
                format!(
                    "no answer across the WAN for {} rounds (groups {:?}, {} probe hosts)",
                    self.dead_rounds,
                    self.settings.groups,
                    self.settings.probe_hosts.len()
                )
            } else {
                format!(
                    "answers across the WAN for {} rounds in a row, held down {:?}",
                    self.live_rounds, self.settings.hold_down
                )
            },
        })
    }

    /// The operator's override; Some(transition) when the effective state
    /// changed.
    pub fn force(&mut self, forced: Forced) -> Option<Transition> {
        let before = self.is_down();
        self.forced = forced;
        let after = self.is_down();
        (before != after).then(|| Transition {
            down: after,
            why: format!("forced {forced:?} by the operator"),
        })
    }

    /// A replicated state (follower): the override and the judgement.
    pub fn restore(&mut self, record: &WanRecord, now: Instant) {
        self.forced = record.forced;
        self.judged_down = record.judged_down;
        self.down_since = record.judged_down.then_some(now);
        self.dead_rounds = 0;
        self.live_rounds = 0;
    }

    /// The replicated form.
    pub fn record(&self) -> WanRecord {
        WanRecord {
            judged_down: self.judged_down,
            forced: self.forced,
        }
    }
}

/// A WAN's state as a replication record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WanRecord {
    pub judged_down: bool,
    pub forced: Forced,
}

#[cfg(test)]
mod tests;

//! The WAN to the central site as plain data: its state (`up`/`down`)
//! judged from evidence with hysteresis, and an operator's override.
//!
//! Evidence comes in rounds (`round`, 1 s by default): a round is alive
//! when anything across the WAN answered in it — a probe of the WAN's own,
//! a member of one of the WAN's central destination groups (its OPTIONS
//! keepalive, or any answer to a real request).
//!
//! The WAN's own probes are what makes a slow, lossy link count as alive:
//! a SIP OPTIONS to each probe target (the `probe_hosts` and the members
//! of its groups) every `probe_interval` (250 ms), each
//! a transaction of its own, retransmitted by Timer E and counted whenever
//! its answer comes — not judged by a timeout shorter than the link's round
//! trip. Four fresh tries a round make a dead round on a link losing 20 %
//! each way about 0.36⁴ ≈ 2 % likely, three in a row (the default
//! `failures_to_down`) about 1 in 100,000 rounds (the unit tests simulate
//! such a link for an hour: no transition). At most
//! [`MAX_OUTSTANDING`] probes per target wait for an answer, so a dead WAN
//! gets a trickle of retransmissions, not a growing pile of transactions.
//!
//! `failures_to_down` dead rounds in a row make the WAN `down`;
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
use sipcore::transport::Target;

/// Unanswered probes per target: a new one is sent only below this. On a
/// slow link two or three are always in flight, and a lost one stays
/// unanswered while it retransmits; eight keep fresh tries going out there
/// (at 30 % loss four let the simulated WAN flap 64 times an hour, eight
/// twice). On a dead link they keep retransmitting (Timer E, at most every
/// 4 s: two packets a second) until Timer F ends them; the first answer
/// after a heal frees a slot at once.
pub const MAX_OUTSTANDING: u32 = 8;

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
    /// How long a round lasts.
    pub round: Duration,
    /// How often each probe target gets an OPTIONS of the WAN's own.
    pub probe_interval: Duration,
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
    /// Something across the WAN answered since the last round...
    answered: bool,
    /// ...last at this time.
    last_answer: Option<Instant>,
    last_round: Option<Instant>,
    /// Where the WAN's own probes go (set by the machine: the probe hosts,
    /// or the members of the WAN's groups), and how many of each are
    /// unanswered.
    targets: Vec<(Target, u32)>,
    last_probe: Option<Instant>,
    /// Since when the effective state is what it is (None: since start).
    since: Option<Instant>,
    /// Time spent down (in fallback) before `since`.
    fallback_before: Duration,
    /// Why the last transition happened (admin status).
    last_why: Option<String>,
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
            last_answer: None,
            last_round: None,
            targets: Vec::new(),
            last_probe: None,
            since: None,
            fallback_before: Duration::ZERO,
            last_why: None,
        }
    }

    /// Time spent down, in fallback, up to `now`.
    pub fn time_in_fallback(&self, now: Instant) -> Duration {
        let current = match (self.is_down(), self.since) {
            (true, Some(t)) => now.saturating_duration_since(t),
            _ => Duration::ZERO,
        };
        self.fallback_before + current
    }

    /// How long the WAN has been in its state (None: since start), and
    /// why it changed last.
    pub fn last_change(&self, now: Instant) -> (Option<Duration>, Option<&str>) {
        (
            self.since.map(|t| now.saturating_duration_since(t)),
            self.last_why.as_deref(),
        )
    }

    /// After a change of the judgement or override at `now`: the
    /// transition, if the effective state changed (`before` → now), with
    /// the time in fallback accounted.
    fn settle(
        &mut self,
        before: bool,
        now: Instant,
        why: impl FnOnce(&Wan) -> String,
    ) -> Option<Transition> {
        let after = self.is_down();
        if before == after {
            return None;
        }
        if before {
            // Down until now: that period joins the total.
            let period = self
                .since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            self.fallback_before += period;
        }
        self.since = Some(now);
        let why = why(self);
        self.last_why = Some(why.clone());
        Some(Transition { down: after, why })
    }

    /// Sets where the WAN's own probes go (again after a reload: a target
    /// kept keeps its count of unanswered probes, as near as it gets —
    /// an old probe's answer may land on another index, and the count
    /// saturates at zero).
    pub fn set_probe_targets(&mut self, targets: Vec<Target>) {
        let old = std::mem::take(&mut self.targets);
        self.targets = targets
            .into_iter()
            .map(|t| {
                let outstanding = old.iter().find(|(o, _)| *o == t).map_or(0, |(_, n)| *n);
                (t, outstanding)
            })
            .collect();
    }

    /// The probe targets due a probe at `now` (by index; empty between
    /// intervals): every target below [`MAX_OUTSTANDING`], each counted
    /// as sent.
    pub fn probes_due(&mut self, now: Instant) -> Vec<(usize, Target)> {
        if !due(self.last_probe, now, self.settings.probe_interval) {
            return Vec::new();
        }
        self.last_probe = Some(now);
        self.targets
            .iter_mut()
            .enumerate()
            .filter(|(_, (_, outstanding))| *outstanding < MAX_OUTSTANDING)
            .map(|(i, (target, outstanding))| {
                *outstanding += 1;
                (i, *target)
            })
            .collect()
    }

    /// A probe to target `i` is over at `now`: answered (evidence) or
    /// given up.
    pub fn probe_done(&mut self, i: usize, answered: bool, now: Instant) {
        if let Some((_, outstanding)) = self.targets.get_mut(i) {
            *outstanding = outstanding.saturating_sub(1);
        }
        if answered {
            self.answered_at(now);
        }
    }

    /// Probe target `i`.
    pub fn target(&self, i: usize) -> Option<Target> {
        self.targets.get(i).map(|(t, _)| *t)
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

    /// Something across the WAN answered at `now` (a probe, a member, a
    /// request).
    pub fn answered_at(&mut self, now: Instant) {
        self.answered = true;
        self.last_answer = Some(now);
    }

    /// Whether nothing across the WAN has answered since `since`, or the
    /// evidence has judged it down: a member's silence then is the WAN's,
    /// and the WAN judges it (its calls end as `wan_down`, its routes
    /// fall back), not the member's own health.
    pub fn quiet_since(&self, since: Instant) -> bool {
        self.judged_down || self.last_answer.is_none_or(|t| t < since)
    }

    /// Ends a round at `now`: judges it by whether anything answered
    /// since the last one. Some(transition) when the effective state
    /// changed.
    pub fn end_round(&mut self, now: Instant) -> Option<Transition> {
        let round = self.settings.round;
        if !due(self.last_round, now, round) {
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
        self.settle(before, now, |w| {
            if w.is_down() {
                format!(
                    "no answer across the WAN for {} rounds of {:?} (groups {:?}, {} probe targets, {} probes unanswered)",
                    w.dead_rounds,
                    round,
                    w.settings.groups,
                    w.targets.len(),
                    w.targets.iter().map(|(_, n)| n).sum::<u32>()
                )
            } else {
                format!(
                    "answers across the WAN for {} rounds in a row, held down {:?}",
                    w.live_rounds, w.settings.hold_down
                )
            }
        })
    }

    /// The operator's override; Some(transition) when the effective state
    /// changed.
    pub fn force(&mut self, forced: Forced, now: Instant) -> Option<Transition> {
        let before = self.is_down();
        self.forced = forced;
        self.settle(before, now, |_| {
            format!("forced {forced:?} by the operator")
        })
    }

    /// A replicated state (follower): the override and the judgement.
    /// Some(transition) when the effective state changed.
    pub fn restore(&mut self, record: &WanRecord, now: Instant) -> Option<Transition> {
        let before = self.is_down();
        if !(self.judged_down && record.judged_down) {
            self.down_since = record.judged_down.then_some(now);
        }
        self.forced = record.forced;
        self.judged_down = record.judged_down;
        self.dead_rounds = 0;
        self.live_rounds = 0;
        self.settle(before, now, |_| "replicated from the active node".into())
    }

    /// What the admin API shows.
    pub fn status(&self, now: Instant) -> WanStatus {
        let (in_state, why) = self.last_change(now);
        WanStatus {
            wan: self.name().to_owned(),
            state: if self.is_down() { "down" } else { "up" },
            judged: if self.judged_down { "down" } else { "up" },
            forced: self.forced,
            in_state_s: in_state.map(|d| d.as_secs()),
            fallback_total_s: self.time_in_fallback(now).as_secs(),
            last_change: why.map(str::to_owned),
            probe_targets: self.targets.len(),
            probes_unanswered: self.targets.iter().map(|(_, n)| n).sum(),
        }
    }

    /// The replicated form.
    pub fn record(&self) -> WanRecord {
        WanRecord {
            judged_down: self.judged_down,
            forced: self.forced,
        }
    }
}

/// Whether something done `every` and last done at `last` is due at
/// `now`. A tick a little early is on time: the caller ticks at the
/// shortest interval of everything it probes, and a due thing must not
/// wait a whole tick more.
fn due(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) + every / 10 >= every)
}

/// A WAN as the admin API shows it (`GET /wan`, `GET /status`).
#[derive(Debug, Clone, Serialize)]
pub struct WanStatus {
    pub wan: String,
    /// In force: the override, else the evidence.
    pub state: &'static str,
    /// What the evidence says.
    pub judged: &'static str,
    pub forced: Forced,
    /// Seconds since the last change (None: none since start).
    pub in_state_s: Option<u64>,
    /// Seconds spent down, in fallback, since start.
    pub fallback_total_s: u64,
    /// Why it changed last (the evidence, or the operator).
    pub last_change: Option<String>,
    pub probe_targets: usize,
    pub probes_unanswered: u32,
}

/// A WAN's state as a replication record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WanRecord {
    pub judged_down: bool,
    pub forced: Forced,
}

#[cfg(test)]
mod tests;

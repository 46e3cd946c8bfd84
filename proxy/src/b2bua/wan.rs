//! The WANs to central sites, as the call machine sees them
//! (`crate::wan` judges each one): evidence from the WAN's own OPTIONS
//! probes and from the central groups' members, a round every `round`,
//! and what a transition does — the routing policy learns it
//! (rules with `wan = "down"` take over), and calls up across a WAN that
//! went down are ended cleanly (their media cannot cross it any more):
//! BYE with a Reason to both legs, CDR reason `wan_down`.

use std::time::Instant;

use super::call::CallState;
use super::{ClientRole, Machine};
use crate::wan::{Forced, Transition, Wan, WanRecord};

impl Machine {
    /// A member answered: evidence for the WANs its group lies across.
    pub(super) fn wan_member_alive(&mut self, member: usize) {
        if self.wans.is_empty() {
            return;
        }
        let Some(group) = self.dests.group_name_of(member).map(str::to_owned) else {
            return;
        };
        let now = self.now;
        for wan in &mut self.wans {
            if wan.settings.groups.contains(&group) {
                wan.answered_at(now);
            }
        }
    }

    /// Whether a member's keepalive that went unanswered, sent at `sent`,
    /// is the WAN's silence rather than the member's: its group lies
    /// across a WAN from which nothing at all has answered since (or which
    /// is judged down). The WAN judges that (within its detection time:
    /// routes fall back, calls across it end as `wan_down`); counted
    /// against the member, it would take it down first and end its calls
    /// as a media server failure.
    pub(super) fn wan_silent_for(&self, member: usize, sent: Instant) -> bool {
        let Some(group) = self.dests.group_name_of(member) else {
            return false;
        };
        self.wans
            .iter()
            .any(|w| w.settings.groups.iter().any(|g| g == group) && w.quiet_since(sent))
    }

    /// Whether `member` answered a WAN probe since its last keepalive
    /// outcome (and starts the next interval afresh).
    pub(super) fn take_wan_answered(&mut self, member: usize) -> bool {
        self.wan_answered
            .get_mut(member)
            .is_some_and(std::mem::take)
    }

    /// Every probe tick: each WAN's round ends when its time has come
    /// (judged by what answered since the last one), and its probe targets
    /// get their OPTIONS when theirs has.
    pub(super) fn wan_rounds(&mut self) {
        let now = self.now;
        self.report_fallback_time();
        for i in 0..self.wans.len() {
            let Some(transition) = self.wans.get_mut(i).and_then(|w| w.end_round(now)) else {
                continue;
            };
            self.wan_transition(i, transition);
        }
        for i in 0..self.wans.len() {
            let due = self
                .wans
                .get_mut(i)
                .map(|w| w.probes_due(now))
                .unwrap_or_default();
            for (target_index, target) in due {
                let bytes = self.options_to(target.addr, target.transport);
                let role = ClientRole::WanProbe {
                    wan: i,
                    target: target_index,
                };
                if self.send_request(bytes, target, role).is_none() {
                    self.wan_probe_failed(i, target_index);
                }
            }
        }
    }

    /// A WAN probe got an answer (anything, even an error: the path is
    /// alive); a final one ends the probe.
    pub(super) fn wan_probe_answered(&mut self, wan: usize, target: usize, is_final: bool) {
        let now = self.now;
        let Some(w) = self.wans.get_mut(wan) else {
            return;
        };
        if is_final {
            w.probe_done(target, true, now);
        } else {
            w.answered_at(now);
        }
        // A member at that address answered: evidence for its keepalive.
        if let Some(addr) = w.target(target).map(|t| t.addr) {
            for (i, answered) in self.wan_answered.iter_mut().enumerate() {
                if self.dests.member(i).is_some_and(|m| m.address == addr) {
                    *answered = true;
                }
            }
        }
    }

    /// A WAN probe got no answer at all (Timer F) or could not be sent.
    pub(super) fn wan_probe_failed(&mut self, wan: usize, target: usize) {
        let now = self.now;
        if let Some(w) = self.wans.get_mut(wan) {
            w.probe_done(target, false, now);
        }
    }

    fn wan_transition(&mut self, i: usize, transition: Transition) {
        let Some(name) = self.wans.get(i).map(|w| w.name().to_owned()) else {
            return;
        };
        self.wan_changed = true;
        self.policy.wan_changed(&name, transition.down);
        self.obs.wan_transition(&name, transition.down);
        self.journal.note(
            self.wall,
            wan_event(transition.down),
            &name,
            &transition.why,
        );
        if !transition.down {
            tracing::warn!(wan = %name, why = %transition.why, "WAN up: new calls take the central routes again");
            return;
        }
        // Calls up across this WAN have lost their media: ended now, not
        // left as dead air until a timer.
        let groups: Vec<usize> = self
            .wans
            .get(i)
            .map(|w| {
                w.settings
                    .groups
                    .iter()
                    .filter_map(|g| self.dests.group_named(g))
                    .collect()
            })
            .unwrap_or_default();
        let across: Vec<u64> = self
            .store
            .values()
            .filter(|c| matches!(c.state, CallState::Answered | CallState::Confirmed))
            .filter(|c| {
                self.dests
                    .group_of(c.b.member)
                    .is_some_and(|g| groups.contains(&g))
            })
            .map(|c| c.id)
            .collect();
        tracing::warn!(
            wan = %name,
            why = %transition.why,
            calls_ended = across.len(),
            "WAN down: fallback rules apply; calls across it are ended"
        );
        for id in across {
            self.end_call(id, "wan_down", true, true);
        }
    }

    /// The operator's override (`POST /wan/NAME/MODE`); Err for an
    /// unknown WAN.
    pub fn force_wan(&mut self, name: &str, forced: Forced) -> Result<bool, String> {
        let Some(i) = self.wans.iter().position(|w| w.name() == name) else {
            return Err(format!("no [[wan]] named {name:?}"));
        };
        self.wan_changed = true;
        let now = self.now;
        if let Some(t) = self.wans.get_mut(i).and_then(|w| w.force(forced, now)) {
            self.wan_transition(i, t);
        }
        Ok(self.wans.get(i).is_some_and(Wan::is_down))
    }

    /// Every WAN: name, down, override (replication).
    pub fn wan_states(&self) -> Vec<(String, bool, WanRecord)> {
        self.wans
            .iter()
            .map(|w| (w.name().to_owned(), w.is_down(), w.record()))
            .collect()
    }

    /// Every WAN as the admin API shows it.
    pub fn wan_statuses(&self, now: std::time::Instant) -> Vec<crate::wan::WanStatus> {
        self.wans.iter().map(|w| w.status(now)).collect()
    }

    /// Whether a WAN changed since the last call (replication).
    pub fn take_wan_changed(&mut self) -> bool {
        std::mem::take(&mut self.wan_changed)
    }

    /// A replicated WAN state (follower), applied like a transition
    /// without ending calls (the follower has none of its own).
    pub fn restore_wan(&mut self, name: &str, record: &WanRecord) {
        let now = self.now;
        let Some(w) = self.wans.iter_mut().find(|w| w.name() == name) else {
            return;
        };
        if let Some(t) = w.restore(record, now) {
            self.policy.wan_changed(name, t.down);
            self.obs.wan_transition(name, t.down);
            self.journal
                .note(self.wall, wan_event(t.down), name, "from the active node");
        }
    }

    /// Time in fallback per WAN, for the counter (every probe tick).
    fn report_fallback_time(&mut self) {
        let now = self.now;
        for w in &self.wans {
            self.obs
                .wan_fallback_time(w.name(), w.time_in_fallback(now));
        }
    }
}

fn wan_event(down: bool) -> super::journal::EventKind {
    if down {
        super::journal::EventKind::WanDown
    } else {
        super::journal::EventKind::WanUp
    }
}

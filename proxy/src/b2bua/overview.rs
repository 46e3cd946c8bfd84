//! The machine's side of the status page: one JSON document with every
//! destination group and member (state, last change, probe round trips),
//! the calls (in all, per group, per trunk), the last hour's resumes and
//! takeovers, the registrations, the WANs and the last notable events
//! (`journal`). The admin API adds the pair's state (`GET /overview`,
//! `GET /events`).
//!
//! Built on request (about once a second while someone watches: the
//! admin API shares one copy between its viewers); the cost is one pass
//! over the calls and the members.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};

use super::call::UnixMillis;
use super::journal::{EventKind, MemberTrack};
use super::Machine;
use crate::pool::{Health, Member};

/// A member's state as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Up,
    /// Up, but its last probe (or request) failed, or its media went
    /// silent and a confirming probe is out: it may be going down.
    Suspect,
    Down,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}

/// One member as JSON: the one place that shape is made.
pub fn member_json(
    member: &Member,
    state: MemberState,
    probed: bool,
    track: Option<&MemberTrack>,
) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
    json!({
        "name": member.name,
        "address": member.address.to_string(),
        "transport": member.transport,
        "state": state.as_str(),
        "probed": probed,
        // The operator's drain (`tandem drain member`): no new calls.
        "draining": member.draining,
        // Consecutive probe (or request) outcomes against the state:
        // failures while up, answers while down.
        "streak": member.streak(),
        "since_ms": track.and_then(|t| t.changed_at),
        "calls": member.active_calls,
        "rtt_ms": track.and_then(MemberTrack::last_rtt_us).map(ms),
        "rtt_history_ms": track.map_or(Vec::new(), |t| t.rtts_us.iter().map(|&u| ms(u)).collect()),
    })
}

impl Machine {
    /// Member `i`'s state for the page.
    pub fn member_state(&self, i: usize) -> Option<MemberState> {
        let m = self.dests.member(i)?;
        Some(match m.health {
            Health::Down => MemberState::Down,
            Health::Up if m.streak() > 0 || self.survival.is_suspect(i) => MemberState::Suspect,
            Health::Up => MemberState::Up,
        })
    }

    /// The status page's view of the machine at `now` (`wall`: the same
    /// moment in ms since the Unix epoch).
    pub fn overview(&self, now: Instant, wall: UnixMillis) -> Value {
        let pools: Vec<&crate::pool::Pool> = (0..).map_while(|g| self.dests.group(g)).collect();
        let mut per_group = vec![0u64; pools.len()];
        let mut per_trunk: BTreeMap<&str, u64> = BTreeMap::new();
        for call in self.store.values() {
            if let Some(n) = per_group.get_mut(call.b.group) {
                *n += 1;
            }
            *per_trunk.entry(call.a.source_name.as_str()).or_default() += 1;
        }
        let mut members: Vec<Vec<Value>> = vec![Vec::new(); pools.len()];
        for (i, m) in self.dests.members() {
            let (Some(g), Some(state)) = (self.dests.group_of(i), self.member_state(i)) else {
                continue;
            };
            if let Some(list) = members.get_mut(g) {
                list.push(member_json(
                    m,
                    state,
                    self.dests.probed(i),
                    self.journal.member(&m.name),
                ));
            }
        }
        let groups: Vec<Value> = pools
            .iter()
            .zip(members)
            .zip(&per_group)
            .map(|((p, members), calls)| {
                json!({
                    "name": p.name,
                    "strategy": p.strategy(),
                    "probe": p.probe,
                    "calls": calls,
                    "members": members,
                })
            })
            .collect();
        let events: Vec<Value> = self
            .journal
            .events()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            .collect();
        json!({
            "at_ms": wall,
            "draining": self.draining,
            "calls": {
                "active": self.store.len(),
                "per_group": pools.iter().zip(&per_group)
                    .map(|(p, n)| (p.name.as_str(), *n))
                    .collect::<BTreeMap<&str, u64>>(),
                "per_trunk": per_trunk,
            },
            "groups": groups,
            "last_hour": {
                "resumed": self.journal.resumed.total(wall),
                "resume_failures": self.journal.resume_failures.total(wall),
                "takeovers": self.journal.takeovers.total(wall),
            },
            "registrations": self.registrar.as_ref().map(|r| r.bindings.len()),
            "wan": self.wan_statuses(now),
            "events": events,
        })
    }

    /// Records an event the driver sees (a takeover, a switchover, a
    /// configuration reload) at `wall`.
    pub fn note(&mut self, wall: UnixMillis, kind: EventKind, subject: &str, detail: &str) {
        self.journal.note(wall, kind, subject, detail);
    }

    /// An outcome that may have begun or ended a suspicion (a missed
    /// keepalive, then an answer) without changing the member's health:
    /// no event (a lossy link would flood the list), but the member's
    /// "since" follows the state the page shows.
    pub(super) fn journal_state_since(&mut self, member: usize, before: Option<MemberState>) {
        if self.member_state(member) != before {
            let name = self.member_name(member);
            self.journal.state_changed(&name, self.wall);
        }
    }

    /// A member's health changed: the journal's event, at the event's time.
    pub(super) fn journal_member(&mut self, member: usize, kind: EventKind, why: &str) {
        let name = self.member_name(member);
        self.journal.member_changed(self.wall, &name, kind, why);
    }
}

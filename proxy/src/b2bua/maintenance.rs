//! Planned work on media servers, the machine's side of `tandem drain`,
//! `tandem move`, `tandem calls` and `tandem members`.
//!
//! * Draining a member: no new call and no resume goes to it (selection
//!   skips it as it skips a down member), but it keeps its calls, its
//!   probes and its health. Undraining gives it calls again.
//! * Moving a member's calls: each answered call on it is resumed on
//!   another member of its group by the survival machinery, exactly as
//!   if the member had failed (new leg B with `X-Tandem-Resumed`, the
//!   relay switches upstream, the caller stays on the line, paced by
//!   `survival.resume_rate`), except that the old leg's BYE says the
//!   operator moved it, the CDR counts a move, and the attempts are
//!   counted as moves rather than resumes. Calls not answered yet are
//!   left to finish where they are.
//!
//! The views are plain data the admin API serialises. The tests drive
//! the whole machine (`b2bua/tests/maintenance.rs`).

use serde::Serialize;

use super::call::CallState;
use super::Machine;
use crate::pool::Health;

/// One call, as `tandem calls` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallView {
    pub id: u64,
    /// Leg A's Call-ID (the trunk's).
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    /// The source (trunk) the call came from.
    pub trunk: String,
    pub group: String,
    /// Its media server ("" while none is chosen, or a phone's AOR).
    pub member: String,
    /// `calling`, `early`, `answered`, `confirmed`, `cancelling`, or
    /// `moving` while a resume or move is under way.
    pub state: &'static str,
    /// Seconds since the INVITE arrived.
    pub age_s: u64,
    pub resumes: u32,
    pub moves: u32,
}

/// One destination member, as `tandem members` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberView {
    pub group: String,
    pub member: String,
    pub address: String,
    /// `up`, `suspect` or `down`, as the status page says (`overview`).
    pub state: &'static str,
    pub draining: bool,
    /// Calls anchored on it now.
    pub calls: u64,
}

/// The answer to a move.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MoveReport {
    /// Answered calls queued for their move (paced).
    pub scheduled: usize,
    /// Calls still being set up on the member: left to finish there.
    pub not_answered: usize,
    /// Calls already moving (a failure or an earlier move).
    pub moving: usize,
    /// Whether the member is draining (if not, new calls still go to it).
    pub draining: bool,
}

impl Machine {
    /// Drains member `name` (`on`) or gives it calls again; whether that
    /// changed its state.
    pub fn drain_member(&mut self, name: &str, on: bool) -> Result<bool, String> {
        let member = self
            .dests
            .find(name)
            .ok_or_else(|| format!("no member named {name:?}"))?;
        let changed = self.dests.set_draining(member, on);
        if changed {
            tracing::warn!(
                member = name,
                draining = on,
                calls = self.dests.member(member).map_or(0, |m| m.active_calls),
                "{}",
                if on {
                    "member drained by the operator: no new calls go to it"
                } else {
                    "member undrained by the operator: it gets new calls again"
                }
            );
            self.obs.member_draining(name, on);
            let (kind, calls) = (
                if on {
                    super::journal::EventKind::MemberDrained
                } else {
                    super::journal::EventKind::MemberUndrained
                },
                self.dests.member(member).map_or(0, |m| m.active_calls),
            );
            self.journal.note(
                self.wall,
                kind,
                name,
                &format!("by the operator ({calls} calls on it)"),
            );
        }
        Ok(changed)
    }

    /// A member's draining state as the active node last published it.
    pub fn set_member_draining(&mut self, name: &str, on: bool) {
        if let Some(member) = self.dests.find(name) {
            if self.dests.set_draining(member, on) {
                self.obs.member_draining(name, on);
            }
        }
    }

    /// Moves the answered calls on member `from` (at most `max`, oldest
    /// first) to other members of their group, `to` first if given, at
    /// `now` (`wall`): what was scheduled (or why nothing), and the
    /// actions to carry out now (the old legs' BYEs; the resume INVITEs
    /// follow on the survival tick, paced). Refused when no other member
    /// of the group could take the calls.
    pub fn move_calls(
        &mut self,
        from: &str,
        to: Option<&str>,
        max: Option<usize>,
        now: std::time::Instant,
        wall: super::UnixMillis,
    ) -> (Result<MoveReport, String>, Vec<super::Action>) {
        self.now = now;
        self.wall = wall;
        let report = self.plan_moves(from, to, max);
        (report, self.out.take())
    }

    fn plan_moves(
        &mut self,
        from: &str,
        to: Option<&str>,
        max: Option<usize>,
    ) -> Result<MoveReport, String> {
        let member = self
            .dests
            .find(from)
            .ok_or_else(|| format!("no member named {from:?}"))?;
        let group = self.dests.group_of(member);
        let to = match to {
            None => None,
            Some(name) => {
                let m = self
                    .dests
                    .find(name)
                    .ok_or_else(|| format!("no member named {name:?}"))?;
                if m == member {
                    return Err(format!("{name:?} is the member the calls leave"));
                }
                if self.dests.group_of(m) != group {
                    return Err(format!("{name:?} is not in {from:?}'s group"));
                }
                Some(m)
            }
        };
        if !self.dests.resumes(member) {
            return Err(format!(
                "{from:?}'s group does not resume calls (resume = false): its calls cannot move"
            ));
        }
        // The old leg is hung up before the new one answers: with no
        // member to go to, the callers would be left in silence.
        let takers = self
            .dests
            .members()
            .filter(|&(i, m)| {
                i != member
                    && self.dests.group_of(i) == group
                    && m.health == Health::Up
                    && !m.draining
            })
            .count();
        if takers == 0 {
            return Err(format!(
                "no other member of {from:?}'s group is up and not draining: nowhere to move its calls"
            ));
        }
        let mut ids: Vec<u64> = Vec::new();
        let mut report = MoveReport {
            scheduled: 0,
            not_answered: 0,
            moving: 0,
            draining: self.dests.member(member).is_some_and(|m| m.draining),
        };
        for call in self.store.values().filter(|c| c.b.member == member) {
            if call.b.phone.is_some() {
                continue;
            }
            if call.resuming.is_some() {
                report.moving += 1;
            } else if matches!(call.state, CallState::Answered | CallState::Confirmed) {
                ids.push(call.id);
            } else {
                report.not_answered += 1;
            }
        }
        ids.sort_unstable();
        ids.truncate(max.unwrap_or(usize::MAX));
        for id in ids {
            if self.plan_move(id, to) {
                report.scheduled += 1;
            }
        }
        tracing::warn!(
            member = from,
            to = to.map(|m| self.member_name(m)).unwrap_or_default(),
            scheduled = report.scheduled,
            not_answered = report.not_answered,
            "moving calls off the member, as the operator asked"
        );
        Ok(report)
    }

    /// The calls in progress, oldest first: on member `member` only if
    /// given, at most `limit`; ages as of `wall`.
    pub fn calls_view(
        &self,
        member: Option<&str>,
        limit: usize,
        wall: super::UnixMillis,
    ) -> Result<Vec<CallView>, String> {
        let member = match member {
            None => None,
            Some(name) => Some(
                self.dests
                    .find(name)
                    .ok_or_else(|| format!("no member named {name:?}"))?,
            ),
        };
        let mut calls: Vec<&super::Call> = self
            .store
            .values()
            .filter(|c| member.is_none_or(|m| c.b.phone.is_none() && c.b.member == m))
            .collect();
        calls.sort_unstable_by_key(|c| c.id);
        calls.truncate(limit);
        Ok(calls
            .into_iter()
            .map(|c| CallView {
                id: c.id,
                call_id: c.a.call_id.clone(),
                caller: c.a.invite.from_header().uri.to_string(),
                callee: c.a.invite.to_header().uri.to_string(),
                trunk: c.a.source_name.clone(),
                group: self
                    .dests
                    .group(c.b.group)
                    .map(|g| g.name.clone())
                    .unwrap_or_default(),
                member: match &c.b.phone {
                    Some(phone) => phone.aor.clone(),
                    None if c.b.invite_key.is_some() || c.b.dialog.is_some() => {
                        self.member_name(c.b.member)
                    }
                    None => String::new(),
                },
                state: match (c.resuming.is_some(), c.state) {
                    (true, _) => "moving",
                    (false, CallState::Calling) => "calling",
                    (false, CallState::Early) => "early",
                    (false, CallState::Answered) => "answered",
                    (false, CallState::Confirmed) => "confirmed",
                    (false, CallState::Cancelling) => "cancelling",
                },
                age_s: wall.saturating_sub(c.created_at) / 1000,
                resumes: c.resumes,
                moves: c.moves,
            })
            .collect())
    }

    /// Every destination member, in the machine's order (groups in
    /// configuration order).
    pub fn members_view(&self) -> Vec<MemberView> {
        self.dests
            .members()
            .map(|(i, m)| MemberView {
                group: self.dests.group_name_of(i).unwrap_or_default().to_owned(),
                member: m.name.clone(),
                address: m.address.to_string(),
                // The status page's states, so that the CLI and the page
                // never disagree.
                state: self.member_state(i).map_or("down", |s| s.as_str()),
                draining: m.draining,
                calls: m.active_calls,
            })
            .collect()
    }
}

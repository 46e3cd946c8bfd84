//! The node's recent past, for the operator's status page: the last
//! notable events (a member down or up, a resume, a takeover, a WAN
//! change, a switchover, a configuration reload) with their times, each
//! member's last change and recent probe round-trip times, and how many
//! calls were resumed and how many takeovers happened in the last hour.
//!
//! Plain data, fed where those things happen (the machine, and the driver
//! for what only it sees) and read by [`Machine::overview`]. Everything
//! here is bounded: [`EVENTS`] events, [`RTT_HISTORY`] round trips per
//! configured member, one bucket per minute for an hour. Only configured
//! names (members, WANs) ever become keys, never anything from the wire.
//!
//! [`Machine::overview`]: super::Machine::overview

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::call::UnixMillis;

#[cfg(test)]
mod tests;

/// Notable events kept (the page shows them all, newest first).
pub const EVENTS: usize = 50;
/// Probe round trips kept per member.
pub const RTT_HISTORY: usize = 20;
/// Repeats of one event (same kind, same subject) this close together are
/// counted on one line: a member failing with 500 calls on it is one
/// "resumed ×500", not 500 lines that push the "member down" off the list.
pub const COALESCE_MS: UnixMillis = 10_000;
const MINUTE_MS: UnixMillis = 60_000;
/// The window of the "last hour" counts, in minutes.
const HOUR_MINUTES: u64 = 60;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    MemberDown,
    MemberUp,
    /// Media silence or refused RTP: the member is probed at once.
    MemberSuspect,
    /// A suspect member answered and its media lives.
    MemberCleared,
    /// Calls of a failed member resumed on another.
    ResumeOk,
    /// A resume attempt failed, or no member was left for the call.
    ResumeFailed,
    WanDown,
    WanUp,
    /// The operator drained a member (`tandem drain member`), or gave it
    /// calls again.
    MemberDrained,
    MemberUndrained,
    /// Calls moved off a member by the operator (`tandem move`): not
    /// counted as resumes, which are about failures.
    CallMoved,
    /// A move's attempt on one member failed (the next is tried).
    MoveFailed,
    /// This node became the active one at start (no peer serving).
    Active,
    /// This node took the calls over from its peer (peer lost, a
    /// switchover, the external role owner's word).
    Takeover,
    /// This node handed its calls over, or stepped down.
    StepDown,
    Switchover,
    ConfigReloaded,
    ConfigRefused,
}

impl EventKind {
    /// Whether the event is bad news (the page marks it so, with a
    /// symbol as well as a colour).
    pub fn is_alarm(self) -> bool {
        matches!(
            self,
            EventKind::MemberDown
                | EventKind::MemberSuspect
                | EventKind::ResumeFailed
                | EventKind::WanDown
                | EventKind::Takeover
                | EventKind::ConfigRefused
        )
    }
}

/// One line of the event list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notable {
    /// When it (first) happened, ms since the Unix epoch.
    pub at: UnixMillis,
    pub kind: EventKind,
    /// What it happened to: a member, a WAN, the node.
    pub subject: String,
    /// A short explanation (of the latest repeat).
    pub detail: String,
    /// How many times within [`COALESCE_MS`] of each other.
    pub count: u64,
    /// When it happened last.
    pub last_at: UnixMillis,
    pub alarm: bool,
}

/// Counts per minute over the last hour (at most 60 buckets).
#[derive(Debug, Default, Clone)]
pub struct LastHour {
    /// (minute since the epoch, count), oldest first.
    buckets: VecDeque<(u64, u64)>,
}

impl LastHour {
    pub fn add(&mut self, at: UnixMillis) {
        let minute = at / MINUTE_MS;
        match self.buckets.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            // A clock stepped back lands in the newest bucket.
            Some((m, n)) if *m > minute => *n += 1,
            _ => self.buckets.push_back((minute, 1)),
        }
        self.forget_before(minute);
    }

    /// The count in the hour before `now`.
    pub fn total(&self, now: UnixMillis) -> u64 {
        let oldest = (now / MINUTE_MS).saturating_sub(HOUR_MINUTES - 1);
        self.buckets
            .iter()
            .filter(|(m, _)| *m >= oldest)
            .map(|(_, n)| n)
            .sum()
    }

    fn forget_before(&mut self, minute: u64) {
        let oldest = minute.saturating_sub(HOUR_MINUTES - 1);
        while self.buckets.front().is_some_and(|(m, _)| *m < oldest) {
            self.buckets.pop_front();
        }
    }
}

/// What the journal knows of one member.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemberTrack {
    /// The last change of its state (None: none since start).
    pub changed_at: Option<UnixMillis>,
    /// Round trips of its last answered probes, in µs, oldest first.
    pub rtts_us: VecDeque<u64>,
    /// When its outstanding probe was sent.
    probe_sent: Option<Instant>,
}

impl MemberTrack {
    pub fn last_rtt_us(&self) -> Option<u64> {
        self.rtts_us.back().copied()
    }
}

#[derive(Debug, Default)]
pub struct Journal {
    events: VecDeque<Notable>,
    /// By member name (configured names only).
    members: HashMap<String, MemberTrack>,
    pub resumed: LastHour,
    pub resume_failures: LastHour,
    pub takeovers: LastHour,
}

impl Journal {
    /// Records an event at `at`; a repeat of the newest event (same kind
    /// and subject, within [`COALESCE_MS`]) only counts.
    pub fn note(&mut self, at: UnixMillis, kind: EventKind, subject: &str, detail: &str) {
        match kind {
            EventKind::ResumeOk => self.resumed.add(at),
            EventKind::ResumeFailed => self.resume_failures.add(at),
            EventKind::Takeover => self.takeovers.add(at),
            _ => {}
        }
        if let Some(last) = self.events.back_mut().filter(|e| {
            e.kind == kind && e.subject == subject && at.saturating_sub(e.last_at) <= COALESCE_MS
        }) {
            last.count += 1;
            last.last_at = at;
            detail.clone_into(&mut last.detail);
            return;
        }
        if self.events.len() >= EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Notable {
            at,
            kind,
            subject: subject.to_owned(),
            detail: detail.to_owned(),
            count: 1,
            last_at: at,
            alarm: kind.is_alarm(),
        });
    }

    /// A member's state changed, with an event.
    pub fn member_changed(&mut self, at: UnixMillis, member: &str, kind: EventKind, why: &str) {
        self.state_changed(member, at);
        self.note(at, kind, member, why);
    }

    /// A member's state changed at `at` (no event).
    pub fn state_changed(&mut self, member: &str, at: UnixMillis) {
        self.track(member).changed_at = Some(at);
    }

    /// A probe of `member` went out at `at` (it replaces an outstanding
    /// one, whose answer no longer counts).
    pub fn probe_sent(&mut self, member: &str, at: Instant) {
        self.track(member).probe_sent = Some(at);
    }

    /// The outstanding probe of `member` was answered at `at`.
    pub fn probe_answered(&mut self, member: &str, at: Instant) {
        if let Some(sent) = self.track(member).probe_sent.take() {
            self.probe_rtt(member, at.saturating_duration_since(sent));
        }
    }

    /// A probe of `member` answered after `rtt`.
    pub fn probe_rtt(&mut self, member: &str, rtt: Duration) {
        let track = self.track(member);
        if track.rtts_us.len() >= RTT_HISTORY {
            track.rtts_us.pop_front();
        }
        track
            .rtts_us
            .push_back(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn member(&self, name: &str) -> Option<&MemberTrack> {
        self.members.get(name)
    }

    /// Only the members of the configuration in force are kept (a reload
    /// that removes members forgets them).
    pub fn retain_members(&mut self, keep: impl Fn(&str) -> bool) {
        self.members.retain(|name, _| keep(name));
    }

    /// The events, newest first.
    pub fn events(&self) -> impl Iterator<Item = &Notable> {
        self.events.iter().rev()
    }

    fn track(&mut self, member: &str) -> &mut MemberTrack {
        self.members.entry(member.to_owned()).or_default()
    }
}

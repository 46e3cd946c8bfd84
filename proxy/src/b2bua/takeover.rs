//! Hot standby, the machine's side: the calls a standby adopts when it
//! takes over, the calls an active node leaves when it steps down, and
//! what the driver reads to replicate (the driver owns the records, the
//! relay sessions and the pair link).
//!
//! * Takeover: the copies become live calls. CSeq numbers we send go on
//!   from the replicated value plus [`CSEQ_HEADROOM`], above anything the
//!   old node could have sent after its last record; a call still ringing
//!   gets its leg-B INVITE back as a client role, so the media server's
//!   answer (retransmitted until ACKed) is taken as if nothing happened,
//!   and responses to leg A without a server transaction here go out
//!   statelessly along the INVITE's Via.
//! * Step-down: the live calls are dropped without a word to anybody — the
//!   other node serves them now.

use std::time::Instant;

use sipcore::transaction::{response_target, ClientKey};
use sipcore::transport::Target;

use super::call::{Call, UnixMillis};
use super::{ClientRole, Machine, TimerEvent, Timers};
use crate::pool::Health;

/// Added to every replicated local CSeq at takeover.
pub const CSEQ_HEADROOM: u32 = 1000;

impl Machine {
    /// Takeover: the replicated calls become live ones. Media silence of
    /// adopted calls counts from `serving_since`; `now` is the same moment.
    pub fn adopt(&mut self, copy: Vec<Call>, serving_since: UnixMillis, now: Instant) {
        self.serving_since = serving_since;
        self.now = now;
        for mut call in copy {
            for d in [call.a.dialog.as_mut(), call.b.dialog.as_mut()]
                .into_iter()
                .flatten()
            {
                d.local_seq = d.local_seq.saturating_add(CSEQ_HEADROOM);
            }
            let id = call.id;
            if call.b.invite_key.is_some() || call.b.dialog.is_some() {
                if let Some(m) = self.dests.member_mut(call.b.member) {
                    m.active_calls += 1;
                }
            }
            // A call being resumed (a failure, or the operator's move) is
            // answered but has no leg B yet: its resume INVITE, if out, is
            // taken up as a ringing call's is; if not yet sent, the call
            // waits in this node's resume queue (the old node's was lost
            // with it).
            let resuming = call.resuming.is_some();
            let ringing = call
                .b
                .invite_key
                .clone()
                .filter(|_| call.answered_at.is_none() || resuming);
            if let Some(key) = call.a.invite_key.clone() {
                let source = Target {
                    transport: call.a.transport,
                    addr: call.a.source,
                    connection: None,
                };
                self.out
                    .adopted
                    .insert(*key, response_target(&call.a.invite, source));
            }
            // Not marked changed: the node's journal starts from this same
            // copy, and re-sending 500 calls at the moment of a takeover
            // would cost CPU just when the RTP has to start flowing. The
            // CSeq headroom reaches the standby with the call's next change
            // (a copy without it gets the headroom again at its takeover).
            if let Err(e) = self.store.insert_unchanged(call) {
                tracing::error!(call = id, conflict = ?e, "adopted call not stored");
                continue;
            }
            match ringing {
                Some(key) => {
                    if resuming {
                        // Its caller hears silence meanwhile: no answer in
                        // time tries the next member, as on the old node.
                        let due = now + self.settings.member_answer_timeout;
                        self.timers.at(
                            due,
                            TimerEvent::MemberAnswer {
                                call: id,
                                key: key.clone(),
                            },
                        );
                    }
                    self.store
                        .bind_client(key, ClientRole::LegBInvite { call: id });
                }
                None if resuming => self.survival.queue_resume(id),
                None => {}
            }
        }
        self.obs.calls_active(self.store.len());
    }

    /// Active no more: every call, transaction role, timer and probe is
    /// forgotten without signalling. Returns the calls (the driver frees
    /// their relay sessions).
    pub fn step_down(&mut self) -> Vec<Call> {
        let calls = self.store.clear_silently();
        self.hung_up_b.clear();
        self.out = Default::default();
        self.timers = Timers::default();
        self.survival = Default::default();
        for p in self.probes.iter_mut() {
            *p = None;
        }
        for m in self.dests.members_mut() {
            m.active_calls = 0;
        }
        self.obs.calls_active(0);
        calls
    }

    /// A media server's health as the active node last published it.
    pub fn set_member_health(&mut self, name: &str, up: bool) {
        self.take_member_health(name, up, "as the active node saw it");
    }

    /// A media server's health as shard 0's probes found it (with shards
    /// one shard probes for the node). This shard serves calls, unlike a
    /// standby: a member found down has its calls here resumed, as if
    /// this shard's own probes had found it down.
    pub fn follow_member_health(&mut self, name: &str, up: bool) {
        let Some(member) = self.dests.find(name) else {
            return;
        };
        let was_up = self
            .dests
            .member(member)
            .is_some_and(|m| m.health == Health::Up);
        self.take_member_health(name, up, "as shard 0's probes found it");
        if was_up && !up {
            self.member_failed(member, "keepalive");
        }
    }

    fn take_member_health(&mut self, name: &str, up: bool, why: &str) {
        if let Some(member) = self.dests.find(name).and_then(|i| self.dests.member_mut(i)) {
            let before = member.health;
            member.health = if up { Health::Up } else { Health::Down };
            self.obs.member_health(name, up);
            if before != member.health {
                let kind = if up {
                    super::journal::EventKind::MemberUp
                } else {
                    super::journal::EventKind::MemberDown
                };
                let wall = self.wall;
                self.journal.member_changed(wall, name, kind, why);
            }
        }
    }

    /// Each member's name, whether it is up, and whether it is draining.
    pub fn member_health(&self) -> impl Iterator<Item = (&str, bool, bool)> {
        self.dests
            .members()
            .map(|(_, m)| (m.name.as_str(), m.health == Health::Up, m.draining))
    }

    /// The calls changed since the last time (present or removed), for
    /// replication.
    pub fn take_changed(&mut self) -> Vec<u64> {
        self.store.take_changed()
    }

    pub fn call(&self, id: u64) -> Option<&Call> {
        self.store.get(id)
    }

    /// Marks the calls that moved to another media server as changed, so
    /// the standby gets their relay's settled continuity state (it settles
    /// with the first packets from the new server, after the change that
    /// moved them).
    pub fn refresh_moved_calls(&mut self) {
        let moved: Vec<u64> = self
            .store
            .iter()
            .filter(|(_, c)| c.resumes > 0)
            .map(|(id, _)| *id)
            .collect();
        for id in moved {
            self.store.touch(id);
        }
    }

    /// A response for one of our client transactions that the transaction
    /// layer does not know: one begun by the node we took over from.
    pub(super) fn adopted_client(&self, key: &ClientKey) -> bool {
        matches!(self.store.client(key), Some(ClientRole::LegBInvite { .. }))
    }
}

//! Hot standby, the engine's side: every call (both legs' dialogs, the
//! INVITEs, SDP, its relay session) and every media server's health is a
//! record that `state-sync` ships to the standby.
//!
//! * Active: the call table notes which calls changed; every survival
//!   tick (10 ms) those are encoded and published — a call set up within
//!   one tick is one record, not one per message.
//! * Follower: records arrive in order. Each call's relay session is
//!   restored at once, its sockets bound (IP_FREEBIND) on the floating
//!   address the node does not hold yet, so that RTP flows the moment the
//!   address arrives. The calls wait as plain data.
//! * Takeover: the copies become live calls. CSeq numbers we send go on
//!   from the replicated value plus [`CSEQ_HEADROOM`], above anything the
//!   old node could have sent after its last record; a call still ringing
//!   gets its leg-B INVITE back as a client role, so the media server's
//!   answer (retransmitted until ACKed) is taken as if nothing happened,
//!   and responses to leg A without a server transaction here go out
//!   statelessly along the INVITE's Via.
//! * Step-down: the live calls are dropped without a word to anybody — the
//!   other node serves them now.

use std::collections::HashMap;

use bytes::Bytes;
use media_relay::{SessionId, SessionSnapshot};
use serde::{Deserialize, Serialize};
use sipcore::transaction::{response_target, ClientKey};
use sipcore::transport::Target;
use state_sync::{Change, NodeEvent, Record, RecordId, SyncHandle};
use tokio::sync::{mpsc, oneshot};

use super::call::Call;
use super::{ClientRole, Engine};
use crate::metrics;
use crate::pool::Health;

/// Schema of the records (`major << 16 | minor`): a change of major is
/// an incompatible change (the pair goes to the upgrade state).
pub const RECORD_SCHEMA: u32 = 1 << 16;

/// Added to every replicated local CSeq at takeover.
pub const CSEQ_HEADROOM: u32 = 1000;

const KIND_CALL: &str = "call";
const KIND_MEMBER: &str = "member";

#[derive(Serialize, Deserialize)]
struct CallRecord {
    call: Call,
    media: Option<SessionSnapshot>,
}

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    up: bool,
}

/// A finished switchover and whom to tell.
pub type SwitchoverDone = (Result<(), String>, oneshot::Sender<Result<(), String>>);

/// The engine's link to its `state-sync` node.
pub struct Replication {
    pub handle: SyncHandle,
    /// Active (serving) or following.
    pub serving: bool,
    /// Follower: the replicated calls, by id.
    copy: HashMap<u64, Call>,
    /// Versions of our records: one counter, so a later change always
    /// has a higher version.
    version: u64,
    /// The health of each member as last published.
    members_sent: Vec<Option<bool>>,
}

impl Replication {
    pub fn new(handle: SyncHandle) -> Replication {
        Replication {
            handle,
            serving: false,
            copy: HashMap::new(),
            version: 0,
            members_sent: Vec::new(),
        }
    }
}

impl Engine {
    /// Whether this node serves calls (always, without a standby pair).
    pub(super) fn serving(&self) -> bool {
        self.replication.as_ref().is_none_or(|r| r.serving)
    }

    /// Active: publishes the calls changed since the last time, and the
    /// members whose health changed.
    pub(super) fn replicate(&mut self) {
        let Some(rep) = self.replication.as_mut().filter(|r| r.serving) else {
            return;
        };
        let changed = self.store.take_changed();
        for id in changed {
            let key = id.to_string();
            let Some(call) = self.store.get(id) else {
                rep.handle.publish(Change::Delete(RecordId {
                    kind: KIND_CALL.into(),
                    key,
                }));
                continue;
            };
            let record = CallRecord {
                call: call.clone(),
                media: self.relay.session_snapshot(SessionId(call.media)).ok(),
            };
            match serde_json::to_vec(&record) {
                Ok(data) => {
                    rep.version += 1;
                    rep.handle.publish(Change::Upsert(Record {
                        kind: KIND_CALL.into(),
                        key,
                        version: rep.version,
                        data: Bytes::from(data),
                    }));
                }
                Err(e) => tracing::error!(call = id, error = %e, "call not replicated"),
            }
        }
        rep.members_sent.resize(self.pool.members.len(), None);
        for (m, sent) in self.pool.members.iter().zip(rep.members_sent.iter_mut()) {
            let up = m.health == Health::Up;
            if *sent == Some(up) {
                continue;
            }
            *sent = Some(up);
            rep.version += 1;
            let data = serde_json::to_vec(&MemberRecord { up }).unwrap_or_default();
            rep.handle.publish(Change::Upsert(Record {
                kind: KIND_MEMBER.into(),
                key: m.name.clone(),
                version: rep.version,
                data: Bytes::from(data),
            }));
        }
    }

    /// Events of the node, in order. Relay sessions being dropped are
    /// gone before the next event is looked at: a resync right after a
    /// step-down restores the same sessions on the same ports.
    pub(super) async fn on_node_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Applied(change) => self.apply_change(change),
            NodeEvent::Resynced(records) => {
                let stale: Vec<u64> = self
                    .replication
                    .as_mut()
                    .map(|r| r.copy.drain().map(|(_, c)| c.media).collect())
                    .unwrap_or_default();
                for media in stale {
                    let _ = self.relay.remove_session(SessionId(media)).await;
                }
                let n = records.len();
                for r in records {
                    self.apply_change(Change::Upsert(r));
                }
                tracing::info!(records = n, "standby copy resynced");
            }
            NodeEvent::Activate { epoch, reason } => self.activate(epoch, reason),
            NodeEvent::StepDown { epoch } => self.step_down(epoch).await,
        }
    }

    /// Follower: one replicated change.
    fn apply_change(&mut self, change: Change) {
        if self.serving() {
            return;
        }
        match change {
            Change::Upsert(r) if r.kind == KIND_CALL => {
                let rec: CallRecord = match serde_json::from_slice(&r.data) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(key = %r.key, error = %e, "replicated call unreadable");
                        return;
                    }
                };
                if let Some(snap) = &rec.media {
                    // Pre-bind the relay ports now: RTP flows the moment
                    // the floating address arrives.
                    if let Err(e) = self.relay.update_session(snap) {
                        tracing::warn!(call = rec.call.id, error = %e, "relay session not pre-bound");
                    }
                }
                if let Some(rep) = self.replication.as_mut() {
                    rep.copy.insert(rec.call.id, rec.call);
                }
            }
            Change::Upsert(r) if r.kind == KIND_MEMBER => {
                if let Ok(m) = serde_json::from_slice::<MemberRecord>(&r.data) {
                    if let Some(member) = self.pool.members.iter_mut().find(|x| x.name == r.key) {
                        member.health = if m.up { Health::Up } else { Health::Down };
                        metrics::member_health(&member.name, m.up);
                    }
                }
            }
            Change::Delete(id) if id.kind == KIND_CALL => {
                let removed = id
                    .key
                    .parse::<u64>()
                    .ok()
                    .and_then(|k| self.replication.as_mut()?.copy.remove(&k));
                if let Some(call) = removed {
                    self.drop_session(SessionId(call.media));
                }
            }
            _ => {}
        }
    }

    /// Takeover: the copy becomes the live call table.
    fn activate(&mut self, epoch: u64, reason: &str) {
        let Some(rep) = self.replication.as_mut() else {
            return;
        };
        rep.serving = true;
        rep.members_sent.clear();
        self.serving_since = super::call::now_millis();
        let copy: Vec<Call> = rep.copy.drain().map(|(_, c)| c).collect();
        let n = copy.len();
        for mut call in copy {
            for d in [call.a.dialog.as_mut(), call.b.dialog.as_mut()]
                .into_iter()
                .flatten()
            {
                d.local_seq = d.local_seq.saturating_add(CSEQ_HEADROOM);
            }
            let id = call.id;
            if call.b.invite_key.is_some() || call.b.dialog.is_some() {
                if let Some(m) = self.pool.members.get_mut(call.b.member) {
                    m.active_calls += 1;
                }
            }
            let ringing = call
                .b
                .invite_key
                .clone()
                .filter(|_| call.answered_at.is_none());
            if let Some(key) = call.a.invite_key.clone() {
                let source = Target {
                    transport: call.a.transport,
                    addr: call.a.source,
                    connection: None,
                };
                self.adopted
                    .insert(key, response_target(&call.a.invite, source));
            }
            if self.relay.session_info(SessionId(call.media)).is_err() {
                tracing::warn!(call = id, "no relay session for an adopted call");
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
            if let Some(key) = ringing {
                self.store
                    .bind_client(key, ClientRole::LegBInvite { call: id });
            }
        }
        metrics::calls_active(self.store.len());
        tracing::warn!(
            epoch,
            reason,
            calls = n,
            "serving: calls adopted from the copy"
        );
    }

    /// Active no more: forget every call without signalling (the other
    /// node serves them), free their relay sessions, follow.
    async fn step_down(&mut self, epoch: u64) {
        let was_serving = self.serving();
        if let Some(rep) = self.replication.as_mut() {
            rep.serving = false;
            rep.copy.clear();
        }
        if !was_serving {
            return;
        }
        let calls = self.store.clear_silently();
        for call in &calls {
            let _ = self.relay.remove_session(SessionId(call.media)).await;
        }
        self.hung_up_b.clear();
        self.adopted.clear();
        self.timers = Default::default();
        self.survival = Default::default();
        for p in self.probes.iter_mut() {
            *p = None;
        }
        for m in self.pool.members.iter_mut() {
            m.active_calls = 0;
        }
        self.handing_over = false;
        metrics::calls_active(0);
        tracing::warn!(
            epoch,
            calls = calls.len(),
            "stepped down: calls left to the active node"
        );
    }

    /// `POST /switchover`: every change so far goes out, new requests
    /// wait for their retransmission (to the new active node), and the
    /// node hands over.
    pub(super) fn on_admin(
        &mut self,
        cmd: super::EngineCommand,
        done: &mpsc::UnboundedSender<SwitchoverDone>,
    ) {
        let super::EngineCommand::Switchover { force, reply } = cmd;
        let Some(rep) = self.replication.as_ref() else {
            let _ = reply.send(Err("no standby pair is configured".into()));
            return;
        };
        if !rep.serving || self.handing_over {
            let _ = reply.send(Err("this node is not the active one".into()));
            return;
        }
        self.replicate();
        self.handing_over = true;
        let handle = self.replication.as_ref().map(|r| r.handle.clone());
        let done = done.clone();
        tokio::spawn(async move {
            let result = match handle {
                Some(h) => h.switchover(force).await,
                None => Err("no standby pair".into()),
            };
            let _ = done.send((result, reply));
        });
    }

    /// Marks the calls that moved to another media server as changed, so
    /// the standby gets their relay's settled continuity state.
    pub(super) fn refresh_moved_calls(&mut self) {
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

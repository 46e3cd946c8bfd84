//! Hot standby, the driver's side: every call (both legs' dialogs, the
//! INVITEs, SDP, its relay session) and every media server's health is a
//! record that `state-sync` ships to the standby. What the calls become at
//! a takeover or a step-down is the machine's (`b2bua::takeover`).
//!
//! * Active: the call table notes which calls changed; every survival
//!   tick (10 ms) those are encoded and published — a call set up within
//!   one tick is one record, not one per message.
//! * Follower: records arrive in order. Each call's relay session is
//!   restored at once, its sockets bound (IP_FREEBIND) on the floating
//!   address the node does not hold yet, so that RTP flows the moment the
//!   address arrives. The calls wait as plain data.
//! * Takeover: the copies are handed to the machine, which adopts them.
//! * Step-down: the live calls are dropped without a word to anybody — the
//!   other node serves them now.

use std::collections::HashMap;

use bytes::Bytes;
use media_relay::{SessionId, SessionSnapshot};
use serde::{Deserialize, Serialize};
use state_sync::{Change, NodeEvent, Record, RecordId, SyncHandle};
use tokio::sync::{mpsc, oneshot};

use super::{now_millis, Command, Driver};
use crate::b2bua::Call;

/// Schema of the records (`major << 16 | minor`): a change of major is
/// an incompatible change (the pair goes to the upgrade state).
pub const RECORD_SCHEMA: u32 = 1 << 16;

const KIND_CALL: &str = "call";
const KIND_MEMBER: &str = "member";
const KIND_WAN: &str = "wan";

#[derive(Serialize, Deserialize)]
struct CallRecord {
    call: Call,
    media: Option<SessionSnapshot>,
}

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    up: bool,
    /// The operator's drain (`tandem drain member`): a takeover during
    /// maintenance keeps it. Absent from an older node's records.
    #[serde(default)]
    draining: bool,
}

/// A finished switchover and whom to tell.
pub type SwitchoverDone = (Result<(), String>, oneshot::Sender<Result<(), String>>);

/// The driver's link to its `state-sync` node.
pub struct Replication {
    pub handle: SyncHandle,
    /// Active (serving) or following.
    pub serving: bool,
    /// Follower: the replicated calls, by id.
    copy: HashMap<u64, Call>,
    /// Versions of our records: one counter, so a later change always
    /// has a higher version.
    pub(super) version: u64,
    /// The health and draining state of each member as last published.
    members_sent: Vec<Option<(bool, bool)>>,
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

impl Driver {
    /// Active: every WAN's state when one changed (a takeover during an
    /// outage keeps the branch in fallback).
    pub(super) fn sync_wans(&mut self) {
        let Some(rep) = self.replication.as_mut().filter(|r| r.serving) else {
            return;
        };
        if !self.machine.take_wan_changed() {
            return;
        }
        for (name, _, record) in self.machine.wan_states() {
            let data = serde_json::to_vec(&record).unwrap_or_default();
            rep.version += 1;
            rep.handle.publish(Change::Upsert(Record {
                kind: KIND_WAN.into(),
                key: name,
                version: rep.version,
                data: Bytes::from(data),
            }));
        }
    }

    /// `GET /wan`: every WAN, its state and the operator's override.
    pub(super) fn wans_json(&self) -> String {
        let wans = self.machine.wan_statuses(std::time::Instant::now());
        serde_json::to_string_pretty(&wans).unwrap_or_default() + "\n"
    }

    /// `GET /overview`: the engine's part of the status page.
    pub(super) fn overview_json(&self) -> String {
        let mut overview = self
            .machine
            .overview(std::time::Instant::now(), now_millis());
        if let Some(map) = overview.as_object_mut() {
            map.insert("serving".into(), self.serving().into());
            map.insert("handing_over".into(), self.handing_over.into());
        }
        overview.to_string()
    }

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
        let changed = self.machine.take_changed();
        for id in changed {
            let key = id.to_string();
            let Some(call) = self.machine.call(id) else {
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
                Ok(data) => super::registrations::publish(rep, KIND_CALL, key, Some(data)),
                Err(e) => tracing::error!(call = id, error = %e, "call not replicated"),
            }
        }
        let members: Vec<(String, bool, bool)> = self
            .machine
            .member_health()
            .map(|(name, up, draining)| (name.to_owned(), up, draining))
            .collect();
        rep.members_sent.resize(members.len(), None);
        for ((name, up, draining), sent) in members.into_iter().zip(rep.members_sent.iter_mut()) {
            if *sent == Some((up, draining)) {
                continue;
            }
            *sent = Some((up, draining));
            rep.version += 1;
            let data = serde_json::to_vec(&MemberRecord { up, draining }).unwrap_or_default();
            rep.handle.publish(Change::Upsert(Record {
                kind: KIND_MEMBER.into(),
                key: name,
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
                self.clear_bindings();
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
            Change::Upsert(r) if r.kind == super::registrations::KIND_BINDING => {
                self.apply_binding(&r.key, Some(&r.data));
            }
            Change::Delete(id) if id.kind == super::registrations::KIND_BINDING => {
                self.apply_binding(&id.key, None);
            }
            Change::Upsert(r) if r.kind == super::registrations::KIND_UPSTREAM => {
                self.apply_upstream(&r.key, Some(&r.data));
            }
            Change::Delete(id) if id.kind == super::registrations::KIND_UPSTREAM => {
                self.apply_upstream(&id.key, None);
            }
            Change::Upsert(r) if r.kind == KIND_WAN => {
                match serde_json::from_slice::<crate::wan::WanRecord>(&r.data) {
                    Ok(rec) => self.machine.restore_wan(&r.key, &rec),
                    Err(e) => {
                        tracing::error!(wan = %r.key, error = %e, "replicated WAN unreadable")
                    }
                }
            }
            Change::Upsert(r) if r.kind == KIND_MEMBER => {
                if let Ok(m) = serde_json::from_slice::<MemberRecord>(&r.data) {
                    self.machine.set_member_health(&r.key, m.up);
                    self.machine.set_member_draining(&r.key, m.draining);
                }
            }
            Change::Delete(id) if id.kind == KIND_CALL => {
                let removed = id
                    .key
                    .parse::<u64>()
                    .ok()
                    .and_then(|k| self.replication.as_mut()?.copy.remove(&k));
                if let Some(call) = removed {
                    self.remove_media(SessionId(call.media));
                }
            }
            _ => {}
        }
    }

    /// Takeover: the copy becomes the machine's calls.
    fn activate(&mut self, epoch: u64, reason: &str) {
        let Some(rep) = self.replication.as_mut() else {
            return;
        };
        rep.serving = true;
        rep.members_sent.clear();
        let mut copy: Vec<Call> = rep.copy.drain().map(|(_, c)| c).collect();
        let n = copy.len();
        let now = now_millis();
        for call in &mut copy {
            // For the CDR: this call changed nodes here.
            call.history
                .taken_over(crate::b2bua::TakeoverMark { at: now, epoch });
            match self.relay.session_info(SessionId(call.media)) {
                // A record of an older node has no ports: the pre-bound
                // session has them.
                Ok(info) => {
                    call.media_info.get_or_insert(info);
                }
                Err(_) => tracing::warn!(call = call.id, "no relay session for an adopted call"),
            }
        }
        self.machine.adopt(copy, now, std::time::Instant::now());
        // Becoming active at start (no peer serving), or the pair's first
        // epoch (nobody served before), is no takeover.
        let kind = if reason == "start" || epoch <= 1 {
            crate::b2bua::journal::EventKind::Active
        } else {
            crate::b2bua::journal::EventKind::Takeover
        };
        self.machine.note(
            now_millis(),
            kind,
            "node",
            &format!("{reason} (epoch {epoch}): {n} calls adopted"),
        );
        // Upstream registrations the old active made are refreshed with
        // their Call-IDs; what is due is renewed paced, not all at once.
        self.machine
            .upstream_reconcile(std::time::Instant::now(), now_millis());
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
        let calls = self.machine.step_down();
        self.machine.note(
            now_millis(),
            crate::b2bua::journal::EventKind::StepDown,
            "node",
            &format!(
                "epoch {epoch}: {} calls left to the active node",
                calls.len()
            ),
        );
        for call in &calls {
            let _ = self.relay.remove_session(SessionId(call.media)).await;
        }
        self.handing_over = false;
        tracing::warn!(
            epoch,
            calls = calls.len(),
            "stepped down: calls left to the active node"
        );
    }

    /// `POST /switchover`: every change so far goes out, new requests
    /// wait for their retransmission (to the new active node), and the
    /// node hands over.
    pub(super) fn on_command(&mut self, cmd: Command, done: &mpsc::Sender<SwitchoverDone>) {
        let (force, reply) = match cmd {
            Command::Switchover { force, reply } => (force, reply),
            Command::Registrations { aor, limit, reply } => {
                let _ = reply.send(self.registrations_json(aor.as_deref(), limit));
                return;
            }
            Command::ForceWan { wan, mode, reply } => {
                let result = self.machine.force_wan(&wan, mode);
                if result.is_ok() {
                    tracing::warn!(wan, ?mode, "WAN state set by the operator");
                }
                let _ = reply.send(result);
                self.sync_wans();
                return;
            }
            Command::Wans { reply } => {
                let _ = reply.send(self.wans_json());
                return;
            }
            cmd @ (Command::Calls { .. }
            | Command::Members { .. }
            | Command::DrainMember { .. }
            | Command::MoveCalls { .. }) => {
                self.on_maintenance_command(cmd);
                return;
            }
            Command::Overview { reply } => {
                let _ = reply.send(self.overview_json());
                return;
            }
        };
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
            let _ = done.send((result, reply)).await;
        });
    }
}

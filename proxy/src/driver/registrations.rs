//! Bindings as state, the driver's side: every AOR whose bindings changed
//! is a `binding` record for the standby (so a phone stays reachable after
//! a takeover without re-registering), and the whole set goes to the
//! snapshot file (so it survives a restart of a lone node).
//!
//! * Active: every survival tick the AORs changed since the last one are
//!   published, one record per AOR (its bindings, or a deletion).
//! * Follower: records are applied to the machine's registrar at once; a
//!   resync replaces the whole set.
//! * Both: at most every [`SNAPSHOT_EVERY`], a changed set is written to
//!   `registrar.snapshot_file` (atomically).

use std::time::{Duration, Instant};

use bytes::Bytes;
use state_sync::{Change, Record, RecordId};

use super::Driver;

pub(super) const KIND_BINDING: &str = "binding";
/// An AOR's upstream registration (dual registration): a standby that
/// takes over refreshes with the same Call-ID, paced.
pub(super) const KIND_UPSTREAM: &str = "upstream";

/// How often at most the snapshot file is rewritten.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

/// How often at most the gate's trusted set is rebuilt for new phones.
pub const TRUST_EVERY: Duration = Duration::from_secs(2);

/// The snapshot file's bookkeeping, and the gate's.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// Bindings changed since the last write.
    pub dirty: bool,
    pub written_at: Option<Instant>,
    /// Bindings changed since the gate last learnt the phones' addresses.
    pub trust_dirty: bool,
    pub trusted_at: Option<Instant>,
}

impl Driver {
    /// Active: publishes the AORs changed since the last tick; notes the
    /// snapshot as out of date.
    pub(super) fn sync_bindings(&mut self) {
        // A pair node that does not serve (yet) keeps its changes — the
        // bindings it loaded at start — for when it does; a follower's
        // copies are not changes of its own.
        if self.replication.as_ref().is_some_and(|r| !r.serving) {
            return;
        }
        let Some(reg) = self.machine.registrar_mut() else {
            return;
        };
        let changed = reg.bindings.take_changed();
        if changed.is_empty() {
            return;
        }
        self.snapshots.dirty = true;
        self.snapshots.trust_dirty = true;
        let Some(rep) = self.replication.as_mut().filter(|r| r.serving) else {
            return;
        };
        let Some(reg) = self.machine.registrar() else {
            return;
        };
        for aor in changed {
            let data = reg.bindings.record(&aor);
            publish(rep, KIND_BINDING, aor, data);
        }
    }

    /// Active: the upstream registrations changed since the last tick.
    pub(super) fn sync_upstream(&mut self) {
        let Some(rep) = self.replication.as_mut().filter(|r| r.serving) else {
            return;
        };
        let changes = self
            .machine
            .take_upstream_changes(Instant::now(), super::now_millis());
        for (aor, record) in changes {
            // Serialising a plain struct cannot fail.
            let data = record.map(|r| serde_json::to_vec(&r).unwrap_or_default());
            publish(rep, KIND_UPSTREAM, aor, data);
        }
    }

    /// Follower: a replicated upstream registration or deletion.
    pub(super) fn apply_upstream(&mut self, aor: &str, data: Option<&[u8]>) {
        let record = match data.map(serde_json::from_slice::<crate::upstream::UpstreamRecord>) {
            Some(Ok(rec)) => Some(rec),
            Some(Err(e)) => {
                tracing::error!(aor, error = %e, "replicated upstream registration unreadable");
                return;
            }
            None => None,
        };
        self.machine.apply_upstream_record(
            aor,
            record.as_ref(),
            Instant::now(),
            super::now_millis(),
        );
    }

    /// Follower: a replicated binding record or deletion.
    pub(super) fn apply_binding(&mut self, aor: &str, data: Option<&[u8]>) {
        self.machine.apply_binding_record(aor, data);
        self.snapshots.dirty = true;
        self.snapshots.trust_dirty = true;
    }

    /// Follower, before a resync's records are applied: the old copy goes.
    pub(super) fn clear_bindings(&mut self) {
        let Some(reg) = self.machine.registrar() else {
            return;
        };
        let aors: Vec<String> = reg.bindings.iter().map(|(a, _)| a.to_owned()).collect();
        for aor in aors {
            self.machine.apply_binding_record(&aor, None);
        }
        let upstream: Vec<String> = self
            .machine
            .upstream()
            .map(|u| u.aors().map(str::to_owned).collect())
            .unwrap_or_default();
        for aor in upstream {
            self.apply_upstream(&aor, None);
        }
    }

    /// Writes the snapshot file when the bindings changed and the last
    /// write is old enough (`force`: at shutdown, whatever the time).
    pub(super) fn write_snapshot(&mut self, force: bool) {
        if !self.snapshots.dirty {
            return;
        }
        if !force
            && self
                .snapshots
                .written_at
                .is_some_and(|t| t.elapsed() < SNAPSHOT_EVERY)
        {
            return;
        }
        let Some(path) = self.config.registrar_snapshot_file() else {
            return;
        };
        let Some(reg) = self.machine.registrar() else {
            return;
        };
        let started = Instant::now();
        match crate::registrar::snapshot::save(&reg.bindings, &path) {
            Ok(()) => {
                self.snapshots.dirty = false;
                tracing::debug!(
                    file = %path.display(),
                    bindings = reg.bindings.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "bindings snapshot written"
                );
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "bindings snapshot not written")
            }
        }
        self.snapshots.written_at = Some(Instant::now());
    }
}

/// One record of `kind` for the standby: its data, or its deletion.
pub(super) fn publish(
    rep: &mut super::Replication,
    kind: &str,
    key: String,
    data: Option<Vec<u8>>,
) {
    match data {
        Some(data) => {
            rep.version += 1;
            rep.handle.publish(Change::Upsert(Record {
                kind: kind.into(),
                key,
                version: rep.version,
                data: Bytes::from(data),
            }));
        }
        None => rep.handle.publish(Change::Delete(RecordId {
            kind: kind.into(),
            key,
        })),
    }
}

impl Driver {
    /// The source addresses of the registered phones (a NAT router's
    /// address once for all the phones behind it).
    pub(super) fn phone_sources(&self) -> impl Iterator<Item = std::net::IpAddr> {
        let mut ips: Vec<std::net::IpAddr> = self
            .machine
            .registrar()
            .map(|r| {
                r.bindings
                    .iter()
                    .flat_map(|(_, bs)| bs.iter().map(|b| b.flow.source.ip()))
                    .collect()
            })
            .unwrap_or_default();
        ips.sort_unstable();
        ips.dedup();
        ips.into_iter()
    }

    /// Registered phones are trusted by the gate in front of the parser
    /// like trunks: a phone authenticated its REGISTER, so the
    /// per-stranger rate limit (and a ban) must not cut off an office
    /// whose phones all come from one NAT address, e.g. when they boot
    /// together. Rebuilt at most every [`TRUST_EVERY`] when bindings
    /// changed (a pass over every binding: a few ms at 100,000).
    pub(super) fn trust_phones(&mut self, force: bool) {
        if !self.snapshots.trust_dirty
            || (!force
                && self
                    .snapshots
                    .trusted_at
                    .is_some_and(|t| t.elapsed() < TRUST_EVERY))
        {
            return;
        }
        self.snapshots.trust_dirty = false;
        self.snapshots.trusted_at = Some(Instant::now());
        let effective = self.dns.with_resolved(&self.config);
        self.ep
            .set_trusted(effective.trusted_sources_with(self.phone_sources()));
    }

    /// `GET /registrations`: every binding with what an operator asks
    /// about it (remaining seconds, the flow, the phone's User-Agent).
    pub(super) fn registrations_json(&self, aor: Option<&str>, limit: usize) -> Option<String> {
        let reg = self.machine.registrar()?;
        let wall = super::now_millis();
        let aors: Vec<serde_json::Value> = reg
            .bindings
            .iter()
            .filter(|(a, _)| aor.is_none_or(|want| want == *a))
            .take(limit)
            .map(|(a, bindings)| {
                let contacts: Vec<serde_json::Value> = bindings
                    .iter()
                    .filter(|b| b.expires_at > wall)
                    .map(|b| {
                        serde_json::json!({
                            "contact": b.contact,
                            "expires_in_s": b.expires_at.saturating_sub(wall).div_ceil(1000),
                            "q": f64::from(b.q) / 1000.0,
                            "transport": b.flow.transport.as_str(),
                            "source": b.flow.source.to_string(),
                            "instance": b.instance,
                            "reg_id": b.reg_id,
                            "path": b.path,
                            "user_agent": b.user_agent,
                        })
                    })
                    .collect();
                let upstream = self.machine.upstream().and_then(|u| u.get(a)).map(|r| {
                    let expires_in_s = match r.state {
                        crate::upstream::UpState::Registered { until } => {
                            Some(until.saturating_duration_since(Instant::now()).as_secs())
                        }
                        _ => None,
                    };
                    let status = match r.state {
                        crate::upstream::UpState::Failed { status, .. } => Some(status),
                        _ => None,
                    };
                    serde_json::json!({
                        "state": r.state.label(),
                        "expires_in_s": expires_in_s,
                        "status": status,
                        "call_id": r.call_id,
                        "cseq": r.cseq,
                    })
                });
                serde_json::json!({ "aor": a, "contacts": contacts, "upstream": upstream })
            })
            .collect();
        let upstream = self.machine.upstream().map(|u| {
            let counts: serde_json::Map<String, serde_json::Value> = crate::upstream::STATE_LABELS
                .iter()
                .zip(u.counts())
                .map(|(s, n)| ((*s).to_owned(), n.into()))
                .collect();
            serde_json::json!({
                "registrar": u.settings().registrar.to_string(),
                "wan_down": u.wan_down(),
                "aors": u.len(),
                "states": counts,
            })
        });
        let doc = serde_json::json!({
            "upstream": upstream,
            "bindings": reg.bindings.len(),
            "aor_count": reg.bindings.aor_count(),
            "aors": aors,
        });
        serde_json::to_string_pretty(&doc).ok()
    }
}

//! A new routing configuration while calls are up (SIGHUP): new calls
//! follow the new rules and groups at once; calls in progress keep their
//! media server, even one the new configuration no longer lists.
//!
//! Members are known by name across configurations. A member in both
//! keeps its health and call count; a member only in the old one that
//! still carries calls is kept in a hidden group no rule names, so its
//! calls' requests still reach it and their failure still resumes them,
//! but no new call goes there. Everything that holds a member index (the
//! calls, their resume state, the timers, the survival state) is moved to
//! the new numbering. A member the operator drained stays drained if
//! the new configuration has a member of that name.

use super::{ClientRole, Machine, Policy, TimerEvent};
use crate::pool::{Destinations, Pool};

/// The group that keeps members removed by a reload while calls use them.
pub const RETIRED: &str = "(retired)";

impl Machine {
    /// Switches to new destination groups and a new routing policy.
    pub fn reload(&mut self, dests: Destinations, policy: Box<dyn Policy>) {
        let mut groups: Vec<Pool> = (0..).map_while(|g| dests.group(g).cloned()).collect();
        // A member is the same one if its name, address and transport are;
        // an old member that is not, and still carries calls, is retired
        // (renamed if its name now belongs to a new member).
        let same = |old: &crate::pool::Member| {
            dests
                .find(&old.name)
                .and_then(|j| dests.member(j))
                .is_some_and(|m| m.address == old.address && m.transport == old.transport)
        };
        let mut retired: Vec<crate::pool::Member> = Vec::new();
        let mut retired_name: Vec<Option<String>> = vec![None; self.dests.len()];
        for (i, m) in self.dests.members() {
            let in_use = self.store.values().any(|c| c.b.member == i);
            if !same(m) && in_use {
                let mut kept = m.clone();
                if dests.find(&m.name).is_some() {
                    kept.name = format!("{}{RETIRED}", m.name);
                }
                if let Some(slot) = retired_name.get_mut(i) {
                    *slot = Some(kept.name.clone());
                }
                retired.push(kept);
            }
        }
        if !retired.is_empty() {
            groups.push(Pool::holding(RETIRED, retired));
        }
        let mut new = Destinations::new(groups);
        // Old index → new index; health and counts carried over.
        let map: Vec<Option<usize>> = (0..self.dests.len())
            .map(|i| {
                let old = self.dests.member(i)?;
                if let Some(name) = retired_name.get(i).cloned().flatten() {
                    return new.find(&name);
                }
                if !same(old) {
                    return None;
                }
                let j = new.find(&old.name)?;
                if let Some(m) = new.member_mut(j) {
                    m.health = old.health;
                    m.active_calls = old.active_calls;
                }
                Some(j)
            })
            .collect();
        let group_map: Vec<Option<usize>> = (0..)
            .map_while(|g| self.dests.group(g))
            .map(|p| new.group_named(&p.name))
            .collect();
        let to_new = |i: usize| map.get(i).copied().flatten().unwrap_or(usize::MAX);
        let ids: Vec<u64> = self.store.iter().map(|(id, _)| *id).collect();
        for id in ids {
            let Some(call) = self.store.get_mut(id) else {
                continue;
            };
            let member = to_new(call.b.member);
            call.b.group = match new.group_of(member) {
                Some(g) => g,
                None => group_map.get(call.b.group).copied().flatten().unwrap_or(0),
            };
            call.b.member = member;
            call.b.tried = call.b.tried.iter().map(|&i| to_new(i)).collect();
            if let Some(r) = call.resuming.as_mut() {
                r.from = to_new(r.from);
                r.tried = r.tried.iter().map(|&i| to_new(i)).collect();
                r.to = r.to.and_then(|i| map.get(i).copied().flatten());
            }
        }
        self.timers.remap_members(|i| map.get(i).copied().flatten());
        // Outstanding probes are forgotten (their answers arrive as
        // strays); the next round probes the new members.
        let probes: Vec<_> = self.probes.iter().flatten().cloned().collect();
        for key in probes {
            if matches!(self.store.client(&key), Some(ClientRole::Probe { .. })) {
                self.store.unbind_client(&key);
            }
        }
        let n = new.len();
        self.probes = vec![None; n];
        self.probed_at = vec![None; n];
        self.wan_answered = vec![false; n];
        self.survival
            .remap_members(n, |i| map.get(i).copied().flatten());
        // The operator's drain is kept by name: a member drained for
        // maintenance stays drained whatever else the reload changes
        // (its address, its group).
        let drained: Vec<String> = self
            .dests
            .members()
            .filter(|(_, m)| m.draining)
            .map(|(_, m)| m.name.clone())
            .collect();
        for name in drained {
            if let Some(j) = new.find(&name) {
                new.set_draining(j, true);
            }
        }
        for (i, m) in self.dests.members() {
            if let Some(group) = self.dests.group_name_of(i) {
                self.obs.member_group(&m.name, group, false);
            }
        }
        for (i, m) in new.members() {
            self.obs
                .member_health(&m.name, m.health == crate::pool::Health::Up);
            self.obs.member_draining(&m.name, m.draining);
            if let Some(group) = new.group_name_of(i) {
                self.obs.member_group(&m.name, group, true);
            }
        }
        self.dests = new;
        self.policy = policy;
        let dests = &self.dests;
        self.journal
            .retain_members(|name| dests.find(name).is_some());
        // The new rules start from the WANs' states as they are; a WAN
        // probing its groups' members probes the new ones.
        for w in &mut self.wans {
            if w.is_down() {
                self.policy.wan_changed(w.name(), true);
            }
            w.set_probe_targets(super::wan_probe_targets(&self.dests, &w.settings));
        }
    }
}

impl super::Timers {
    /// Moves member indexes to a new numbering; a timer of a member that
    /// is gone is dropped.
    pub(super) fn remap_members(&mut self, map: impl Fn(usize) -> Option<usize>) {
        self.events.retain(|_, ev| match ev {
            TimerEvent::ProbeTimeout { member, .. } | TimerEvent::MemberRetry { member } => {
                match map(*member) {
                    Some(m) => {
                        *member = m;
                        true
                    }
                    None => false,
                }
            }
            _ => true,
        });
    }
}

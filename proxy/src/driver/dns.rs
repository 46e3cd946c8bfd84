//! Destination-group members named by DNS (`[[group.dns]]`, RFC 3263),
//! kept resolved for the call machine: resolved at start, again when the
//! shortest TTL of a group's records runs out, each round in a task of its
//! own (a slow DNS server never holds up a SIP message). A group whose
//! refresh fails keeps the members it had and is tried again after
//! `[dns] min_ttl_s`. The machine gets the resolved members as ordinary
//! members of their group (SRV priority as the member's priority, so a
//! `sequential` group uses the lowest priority first), through the same
//! reload that SIGHUP uses: calls in progress keep their member.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::config::{Config, GroupConfig, MemberConfig};
use crate::routing::dns::{resolve_group, DnsError, Resolved, Resolver};

/// One round of resolutions: each DNS group's result, by group name.
pub type Round = Vec<(String, Result<Resolved, DnsError>)>;

#[derive(Default)]
pub struct DnsMembers {
    /// None when no group names members by DNS (or the resolver could not
    /// be set up: logged).
    resolver: Option<Arc<Resolver>>,
    /// The members each group resolved to last.
    resolved: HashMap<String, Vec<MemberConfig>>,
    /// When the next round is due (None: never).
    next: Option<Instant>,
    in_flight: bool,
}

impl DnsMembers {
    pub fn new(config: &Config) -> DnsMembers {
        let wanted = config.groups.iter().any(|g| !g.dns_members.is_empty());
        let resolver = if wanted {
            match Resolver::new(&config.dns) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    tracing::error!(error = %e, "DNS members cannot be resolved");
                    None
                }
            }
        } else {
            None
        };
        DnsMembers {
            next: resolver.is_some().then(Instant::now),
            resolver,
            resolved: HashMap::new(),
            in_flight: false,
        }
    }

    /// For a reloaded configuration: a new resolver (its `[dns]` may have
    /// changed) and a round at once, but the members resolved so far stay
    /// for the groups that still name members by DNS, so that new calls to
    /// such a group do not find it empty while the round runs.
    pub fn reconfigured(self, config: &Config) -> DnsMembers {
        let mut next = DnsMembers::new(config);
        next.resolved = self
            .resolved
            .into_iter()
            .filter(|(group, _)| {
                config
                    .groups
                    .iter()
                    .any(|g| &g.name == group && !g.dns_members.is_empty())
            })
            .collect();
        next
    }

    /// When the next round is due.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a round may start (none is under way, one is due some time).
    pub fn idle(&self) -> bool {
        self.resolver.is_some() && !self.in_flight && self.next.is_some()
    }

    /// Starts a round in a task; its results come back on `done`.
    pub fn resolve(&mut self, config: &Config, done: mpsc::Sender<Round>) {
        let Some(resolver) = self.resolver.clone() else {
            return;
        };
        self.in_flight = true;
        let groups: Vec<GroupConfig> = config
            .groups
            .iter()
            .filter(|g| !g.dns_members.is_empty())
            .cloned()
            .collect();
        tokio::spawn(async move {
            let mut round = Vec::with_capacity(groups.len());
            for g in &groups {
                round.push((g.name.clone(), resolve_group(&resolver, g).await));
            }
            let _ = done.send(round).await;
        });
    }

    /// Takes a round's results; true when some group's members changed.
    pub fn take(&mut self, round: Round) -> bool {
        self.in_flight = false;
        let now = Instant::now();
        let retry = self
            .resolver
            .as_ref()
            .map_or(std::time::Duration::from_secs(10), |r| r.retry_after());
        let mut next: Option<Instant> = None;
        let mut changed = false;
        for (group, result) in round {
            let due = match result {
                Ok(resolved) => {
                    let members: Vec<MemberConfig> = resolved
                        .members
                        .iter()
                        .map(|m| m.to_member_config())
                        .collect();
                    let key = |ms: &[MemberConfig]| -> Vec<String> {
                        ms.iter()
                            .map(|m| {
                                format!(
                                    "{} {} {:?} {} {}",
                                    m.name, m.address, m.transport, m.priority, m.weight
                                )
                            })
                            .collect()
                    };
                    if self.resolved.get(&group).map(|old| key(old)) != Some(key(&members)) {
                        tracing::info!(
                            group,
                            members = %key(&members).join(", "),
                            valid_s = resolved.valid_for.as_secs(),
                            "group members resolved"
                        );
                        self.resolved.insert(group, members);
                        changed = true;
                    }
                    resolved.refresh_at(now)
                }
                Err(e) => {
                    tracing::warn!(group, error = %e, "DNS refresh failed: the members resolved before stay");
                    now + retry
                }
            };
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        self.next = Some(next.unwrap_or(now + retry));
        changed
    }

    /// `config` with each group's resolved members added to its static
    /// ones.
    pub fn with_resolved(&self, config: &Config) -> Config {
        let mut c = config.clone();
        for g in &mut c.groups {
            if let Some(members) = self.resolved.get(&g.name) {
                g.members.extend(members.iter().cloned());
            }
        }
        c
    }
}

#[cfg(test)]
mod tests;

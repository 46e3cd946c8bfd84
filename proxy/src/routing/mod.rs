//! The routing policy: which destination a new call goes to.
//!
//! Why a module of its own, as pure code: routing is policy (DESIGN.md,
//! "mechanism, policy, driver"). It decides from a few strings of the
//! request and the time of day, passed in, and never reads a clock, a
//! socket or the pool's health, so every decision can be unit-tested and
//! replayed, and `tandem route` can show an operator exactly what the
//! engine would do without sending anything.
//!
//! Why compiled: rules are evaluated first match wins, once per INVITE. A
//! list of 50 rules where only the 50th matches must not cost 50 regex
//! runs. [`Router::compile`] therefore indexes the expensive conditions:
//! every `ruri_user_prefix` goes into one byte trie (one walk along the
//! user finds all prefix rules that match), every `ruri_user_regex` into
//! one `regex::RegexSet` (one pass over the user tells which of them
//! match), and header regexes into one set per header name. A request
//! then costs one trie walk, at most one set pass per subject, and a scan
//! of the rules in file order checking plain string equalities and bits,
//! which keeps first-match order exact.
//!
//! Why the `regex` crate: its `RegexSet` is the one widely used matcher
//! that answers "which of these N patterns match" in a single pass, and
//! its automata run in time linear in the input (no backtracking), so a
//! rule written carelessly cannot be made to take seconds by a caller's
//! crafted Request-URI. It was already in the lock file (criterion, for
//! the benchmarks, uses it), so the binary gains a well-known crate and
//! no new supplier.
//!
//! Redirect targets (the `Contact`s of a 302) are computed here too, from
//! a group's pool, so that the q-values follow the same priorities the
//! `sequential` strategy uses.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod dns;
mod dry_run;
mod policy;
mod rules;

pub use dry_run::{dry_run, DryRun};
pub use policy::RulesPolicy;
#[allow(unused_imports)]
pub use rules::{Action, Decision, RequestView, Router, Shadowed, NO_ROUTE};

use crate::config::MemberTransport;
use crate::pool::{Health, Pool};

/// One `Contact` of a redirect: a member as a SIP URI, with its q-value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectContact {
    /// The member's index in the pool.
    pub member: usize,
    /// `sip:user@host:port`, with `;transport=tcp` for TCP members.
    pub uri: String,
    /// The q-value in thousandths (1000 = `q=1.0`): the best priority
    /// gets 1.0, the worst 0.1, equal priorities equal q.
    pub q_milli: u16,
}

impl RedirectContact {
    /// The header value: `<sip:…>;q=0.550`.
    pub fn header_value(&self) -> String {
        format!(
            "<{}>;q={}.{:03}",
            self.uri,
            self.q_milli / 1000,
            self.q_milli % 1000
        )
    }
}

/// The `Contact`s of a 302 to `pool`'s members that are up, best first
/// (lowest `priority`, ties in file order), with `ruri_user` as their
/// user (empty: no user part).
pub fn redirect_contacts(pool: &Pool, ruri_user: &str) -> Vec<RedirectContact> {
    let mut up: Vec<(usize, u32)> = pool
        .members
        .iter()
        .enumerate()
        // A drained member (`tandem drain member`) is offered no new call.
        .filter(|(_, m)| m.health == Health::Up && !m.draining)
        .map(|(i, m)| (i, m.priority))
        .collect();
    up.sort_by_key(|&(i, priority)| (priority, i));
    let mut levels: Vec<u32> = up.iter().map(|&(_, p)| p).collect();
    levels.dedup();
    let steps = levels.len().saturating_sub(1).max(1) as u64;
    up.iter()
        .filter_map(|&(i, priority)| {
            let m = pool.members.get(i)?;
            let level = levels.iter().position(|&p| p == priority)? as u64;
            // From 1.000 down to 0.100 in even steps: 0 would mean "do
            // not use" to some user agents.
            let q_milli = (1000 - level * 900 / steps) as u16;
            let user = if ruri_user.is_empty() {
                String::new()
            } else {
                format!("{ruri_user}@")
            };
            let transport = match m.transport {
                MemberTransport::Udp => "",
                MemberTransport::Tcp => ";transport=tcp",
                MemberTransport::Tls => ";transport=tls",
            };
            Some(RedirectContact {
                member: i,
                uri: format!("sip:{user}{}{transport}", m.address),
                q_milli,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;

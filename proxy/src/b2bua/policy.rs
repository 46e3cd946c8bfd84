//! Policy, apart from the mechanism: who may send calls, where a call
//! goes, which of its headers travel on. The machine asks; an
//! implementation decides (as pingora's hook traits do). Routing rules
//! (`crate::routing`) are one; the registrar and WAN fallback plug in
//! here later.

use std::net::IpAddr;

use sipcore::message::Message;

pub use crate::config::ForkMode;

/// Where a new call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To a member of group `group`, with `ruri_user` as leg B's
    /// Request-URI user.
    Group {
        rule: String,
        group: String,
        ruri_user: String,
        /// Tried once when no member of `group` is left.
        fallback: Option<String>,
    },
    /// Answer 302 with the group's members as Contacts.
    Redirect {
        rule: String,
        group: String,
        ruri_user: String,
    },
    /// Answer with this final status.
    Reject {
        rule: String,
        code: u16,
        reason: String,
    },
    /// To the registered contacts of the AOR `user@host` (`host`: the
    /// Request-URI's, lower-case; the machine puts a registrar domain in
    /// when it is not one); without any, to group `fallback` or 404.
    Location {
        rule: String,
        user: String,
        host: String,
        fork: ForkMode,
        fork_timeout_s: u32,
        fallback: Option<String>,
    },
    /// No rule matches.
    Unmatched,
}

/// The decisions the call machine leaves to policy.
pub trait Policy: Send {
    /// The name of the source (trunk) an INVITE from `ip` comes from;
    /// None: a stranger, refused.
    fn source(&self, ip: IpAddr) -> Option<&str>;

    /// Where a new call from `source` goes; `minute_of_day` is the time in
    /// UTC, in minutes since midnight.
    fn route(&self, invite: &Message, source: &str, minute_of_day: u16) -> Route;

    /// Calls from `source` at once, at most (503 with Retry-After
    /// beyond); None: no cap of its own.
    fn max_calls(&self, _source: &str) -> Option<usize> {
        None
    }

    /// A `[[wan]]` went down (or up): rules with `wan = "down"` follow.
    fn wan_changed(&mut self, _wan: &str, _down: bool) {}

    /// Whether a header of leg A's requests is copied to leg B's.
    fn carried(&self, name: &str) -> bool;

    /// A new call's group has no member left to try (all down or all
    /// failed): the group to try instead, once, or None for 503. Where
    /// WAN fallback plugs in (the central servers' group falls back to
    /// the local gateway).
    fn fallback(&self, _group: &str) -> Option<String> {
        None
    }
}

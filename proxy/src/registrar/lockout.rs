//! Failed authentications per (source address, user): after
//! `max_failures` in `window`, that pair is ignored for `ban` — other users
//! behind the same NAT address are not. A table of fixed size (LRU), so a
//! scanner cycling user names cannot grow it.
//!
//! A scanner cycling user names from one address is never banned by this
//! table (each pair fails once or twice); what stops a flood is the gate's
//! per-source rate limit in front of the parser, and each failure costs
//! one hash. This table is for the guesser that hammers one account. When
//! the table is full, the pair seen least recently is forgotten first: a
//! flood of new pairs can end an older ban early, never grow memory.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// User names longer than this are cut for the key: one entry costs a
/// bounded amount of memory whatever a stranger sends as user name.
const MAX_KEY_USER_LEN: usize = 64;

/// One (source, user) pair's recent failures.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// When the current window of failures began.
    window_start: Instant,
    /// Failures since `window_start`.
    failures: u32,
    /// Ignored until then.
    banned_until: Option<Instant>,
}

pub struct AuthFailures {
    max_failures: u32,
    window: Duration,
    ban: Duration,
    pairs: lru::LruCache<(IpAddr, String), Record>,
}

impl AuthFailures {
    pub fn new(max_failures: u32, window: Duration, ban: Duration, capacity: usize) -> Self {
        AuthFailures {
            // A ban after zero failures would ban everyone: one is the floor.
            max_failures: max_failures.max(1),
            window,
            ban,
            pairs: lru::LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// New limits (a reload); failures and bans so far are kept.
    pub fn set_limits(&mut self, max_failures: u32, window: Duration, ban: Duration) {
        self.max_failures = max_failures.max(1);
        self.window = window;
        self.ban = ban;
    }

    /// Whether (ip, user) is being ignored at `now`.
    pub fn banned(&mut self, ip: IpAddr, user: &str, now: Instant) -> bool {
        // `peek`: asking does not make a pair recent; only failing does.
        self.pairs
            .peek(&key(ip, user))
            .and_then(|r| r.banned_until)
            .is_some_and(|until| now < until)
    }

    /// Notes a failure; true when it starts a ban.
    pub fn failed(&mut self, ip: IpAddr, user: &str, now: Instant) -> bool {
        let record = self.pairs.get_or_insert_mut(key(ip, user), || Record {
            window_start: now,
            failures: 0,
            banned_until: None,
        });
        if record.banned_until.is_some_and(|until| now < until) {
            // Already banned (callers drop those before checking): no
            // new ban, and the ban is not lengthened by the scanner.
            return false;
        }
        if record.banned_until.is_some()
            || now.saturating_duration_since(record.window_start) > self.window
        {
            *record = Record {
                window_start: now,
                failures: 0,
                banned_until: None,
            };
        }
        record.failures += 1;
        if record.failures < self.max_failures {
            return false;
        }
        record.banned_until = Some(now + self.ban);
        true
    }

    /// A success clears the pair's failures.
    pub fn succeeded(&mut self, ip: IpAddr, user: &str) {
        self.pairs.pop(&key(ip, user));
    }

    /// Pairs remembered (failing or banned).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pairs.len()
    }
}

/// The table key: the address and the user name cut to a bounded length
/// (on a character boundary).
fn key(ip: IpAddr, user: &str) -> (IpAddr, String) {
    let mut end = user.len().min(MAX_KEY_USER_LEN);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    (ip, user[..end].to_owned())
}

#[cfg(test)]
mod tests;

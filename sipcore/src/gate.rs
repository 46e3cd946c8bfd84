//! The gate in front of the parser: which sources are trusted, and how
//! much every other source may send before it is banned for a while (as
//! Kamailio's `pike` does).
//!
//! Parsing a SIP message and opening a transaction for it costs
//! microseconds; looking its source address up costs tens of
//! nanoseconds. So the endpoint asks the gate about every message
//! *before* parsing it: a trusted source (a trunk, a destination-group
//! member, the HA peer: whatever the TU says) is never limited; a
//! stranger spends a token of its own bucket, and one that runs out is
//! banned for [`RateLimit::ban`], its messages dropped unparsed and
//! counted. The buckets live in a table of fixed size that forgets the
//! least recently seen source first, so no number of strangers (spoofed
//! UDP sources cost an attacker nothing) grows it.
//!
//! Everything here is plain data with the time passed in: the endpoint's
//! receive loop owns it and is the only one to touch it.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use lru::LruCache;

use crate::{Hasher, Map, Set};

/// The sources that are never limited: replaced whole when the TU's view
/// changes (a reload, a DNS refresh, a registration), read on every
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSources {
    /// Every source is trusted: no gate (what an endpoint starts with, so
    /// that a UA or a load generator built on sipcore is never limited).
    everyone: bool,
    networks: Vec<IpNet>,
    hosts: Set<IpAddr>,
}

impl Default for TrustedSources {
    fn default() -> Self {
        TrustedSources::everyone()
    }
}

impl TrustedSources {
    /// No gate: every source is trusted.
    pub fn everyone() -> TrustedSources {
        TrustedSources {
            everyone: true,
            networks: Vec::new(),
            hosts: Set::default(),
        }
    }

    /// Exactly these networks and hosts are trusted.
    pub fn new(
        networks: impl IntoIterator<Item = IpNet>,
        hosts: impl IntoIterator<Item = IpAddr>,
    ) -> TrustedSources {
        TrustedSources {
            everyone: false,
            networks: networks.into_iter().map(|n| n.trunc()).collect(),
            hosts: hosts.into_iter().collect(),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.everyone || self.hosts.contains(&ip) || self.networks.iter().any(|n| n.contains(&ip))
    }
}

/// How much a stranger may send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Messages per second a source's bucket refills with; 0: strangers
    /// are not limited.
    pub rate_per_s: u32,
    /// The bucket's size: what a source may send at once.
    pub burst: u32,
    /// How long a source that ran out stays banned.
    pub ban: Duration,
    /// Sources with a bucket at most (the least recently seen is
    /// forgotten first).
    pub table_size: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            rate_per_s: 0,
            burst: 40,
            ban: Duration::from_secs(60),
            table_size: 65536,
        }
    }
}

/// Where a message comes from, as far as limits go: the transaction
/// layer keeps room for trusted sources that strangers cannot take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SourceClass {
    #[default]
    Trusted,
    Stranger,
}

/// The gate's answer for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A trusted source: handle it now.
    Trusted,
    /// A stranger within its rate: handle it after the trusted work.
    Stranger,
    /// Dropped unparsed.
    Drop(DropReason),
}

/// Why a message was dropped before parsing. Few and fixed: they are
/// metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Its source is banned.
    Banned,
    /// Its source ran out of tokens with it (and is banned from now on).
    Rate,
    /// Too many strangers' messages were already waiting to be parsed.
    Backlog,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [DropReason::Banned, DropReason::Rate, DropReason::Backlog];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Banned => "banned",
            DropReason::Rate => "rate",
            DropReason::Backlog => "backlog",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            DropReason::Banned => 0,
            DropReason::Rate => 1,
            DropReason::Backlog => 2,
        }
    }
}

/// The key of a source's bucket: its address; for IPv6 its /64, which
/// one subscriber gets whole (per address, one host could mint 2^64
/// fresh buckets).
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    banned_until: Option<Instant>,
}

/// Per-source token buckets with bans, in a table of fixed size.
#[derive(Debug)]
pub struct SourceLimiter {
    limit: RateLimit,
    table: LruCache<IpAddr, Bucket, Hasher>,
}

impl SourceLimiter {
    pub fn new(limit: RateLimit) -> SourceLimiter {
        let size = NonZeroUsize::new(limit.table_size).unwrap_or(NonZeroUsize::MIN);
        SourceLimiter {
            limit,
            table: LruCache::with_hasher(size, Hasher::default()),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// One message from the stranger `ip` at `now`: Ok, or why it is
    /// dropped.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), DropReason> {
        let limit = self.limit;
        if limit.rate_per_s == 0 {
            return Ok(());
        }
        let key = bucket_key(ip);
        let burst = f64::from(limit.burst.max(1));
        // A new source takes the place of the least recently seen one
        // when the table is full.
        let bucket = self.table.get_or_insert_mut(key, || Bucket {
            tokens: burst,
            refilled: now,
            banned_until: None,
        });
        if let Some(until) = bucket.banned_until {
            if now < until {
                return Err(DropReason::Banned);
            }
            // The ban is over: a fresh start.
            bucket.banned_until = None;
            bucket.tokens = burst;
            bucket.refilled = now;
        }
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(limit.rate_per_s)).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            bucket.banned_until = Some(now + limit.ban);
            Err(DropReason::Rate)
        }
    }

    /// Whether `ip` is banned at `now` (for tests and the status page).
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.table
            .peek(&bucket_key(ip))
            .and_then(|b| b.banned_until)
            .is_some_and(|until| now < until)
    }

    /// Sources with a bucket now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }
}

/// The sources banned now, shared by the gate (which bans them) with the
/// transports' receive tasks, which drop their datagrams the moment they
/// are read: no copy, no channel, no parse. A flood from one source costs
/// a system call and a lookup per packet, which is what lets the receive
/// task keep the socket buffer empty for everyone else.
#[derive(Debug, Default)]
pub struct Bans {
    until: RwLock<Map<IpAddr, Instant>>,
    /// Datagrams dropped here.
    dropped: AtomicU64,
    /// Bumped on every change, so that the kernel filter made of the
    /// bans is made again only when they changed.
    generation: AtomicU64,
}

/// IPv4 bans in one kernel socket filter at most (two instructions each;
/// the kernel takes 4096). The rest are dropped in user space.
const FILTERED_BANS: usize = 1024;

/// A classic BPF program for an IPv4 UDP socket that drops datagrams
/// from `sources` and accepts the rest: the source address is loaded from
/// the IP header (`SKF_NET_OFF`), compared with each banned address.
pub fn drop_filter(sources: &[std::net::Ipv4Addr]) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K (0)
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // The IPv4 source address: 12 bytes into the IP header.
    let mut prog = vec![op(LD_W_ABS, 0, 0, (libc::SKF_NET_OFF + 12) as u32)];
    for ip in sources.iter().take(FILTERED_BANS) {
        // Equal: fall through to "drop"; else skip it.
        prog.push(op(JEQ_K, 0, 1, u32::from(*ip)));
        prog.push(op(RET_K, 0, 0, 0));
    }
    prog.push(op(RET_K, 0, 0, u32::MAX));
    prog
}

impl Bans {
    /// Whether a datagram from `ip` is dropped now (counted if so).
    pub fn drops(&self, ip: IpAddr) -> bool {
        let until = self.until.read().unwrap_or_else(|e| e.into_inner());
        if until.is_empty() {
            return false;
        }
        match until.get(&bucket_key(ip)) {
            Some(&t) if Instant::now() < t => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The change count (see [`Bans::ipv4_now`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The IPv4 sources banned at `now`, and when the first of those bans
    /// ends: what the kernel filter holds until then.
    pub fn ipv4_now(&self, now: Instant) -> (Vec<std::net::Ipv4Addr>, Option<Instant>) {
        let bans = self.until.read().unwrap_or_else(|e| e.into_inner());
        let mut next: Option<Instant> = None;
        let mut ips = Vec::new();
        for (ip, &until) in bans.iter() {
            if let (IpAddr::V4(v4), true) = (ip, now < until) {
                if ips.len() < FILTERED_BANS {
                    ips.push(*v4);
                    next = Some(next.map_or(until, |n| n.min(until)));
                }
            }
        }
        (ips, next)
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bans `key` until `until`, forgetting the bans that are over. At
    /// most `limit` bans are held (beyond, the gate still drops those
    /// sources' messages, a step later).
    fn ban(&self, key: IpAddr, until: Instant, now: Instant, limit: usize) {
        let mut bans = self.until.write().unwrap_or_else(|e| e.into_inner());
        if bans.len() >= limit {
            bans.retain(|_, t| now < *t);
        }
        if bans.len() < limit {
            bans.insert(key, until);
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lifts the bans of sources `trusted` trusts.
    pub(crate) fn lift_trusted(&self, trusted: &TrustedSources) {
        self.until
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|ip, _| !trusted.contains(*ip));
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Bans held now (over or not).
    pub fn len(&self) -> usize {
        self.until.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The gate: the trusted set and the strangers' buckets.
#[derive(Debug)]
pub struct Gate {
    trusted: Arc<TrustedSources>,
    limiter: SourceLimiter,
    bans: Arc<Bans>,
}

impl Gate {
    pub fn new(trusted: Arc<TrustedSources>, limit: RateLimit, bans: Arc<Bans>) -> Gate {
        Gate {
            trusted,
            limiter: SourceLimiter::new(limit),
            bans,
        }
    }

    /// A new trusted set; bans of sources it trusts are lifted.
    pub fn set_trusted(&mut self, trusted: Arc<TrustedSources>) {
        self.bans.lift_trusted(&trusted);
        self.trusted = trusted;
    }

    /// The verdict on one message from `ip` at `now`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.trusted.contains(ip) {
            return Verdict::Trusted;
        }
        match self.limiter.check(ip, now) {
            Ok(()) => Verdict::Stranger,
            Err(DropReason::Rate) => {
                let limit = self.limiter.limit;
                self.bans
                    .ban(bucket_key(ip), now + limit.ban, now, limit.table_size);
                Verdict::Drop(DropReason::Rate)
            }
            Err(reason) => Verdict::Drop(reason),
        }
    }

    pub fn limiter(&self) -> &SourceLimiter {
        &self.limiter
    }
}

/// Refusals tallied for the log: at most one line per interval, with the
/// counts since the last line, however many messages are refused.
#[derive(Debug)]
pub struct RefusalTally {
    interval: Duration,
    counts: [u64; 3],
    /// When the last line was written (None: never).
    logged: Option<Instant>,
    /// The last source refused (one example for the line).
    last_source: Option<IpAddr>,
}

/// One log line's worth of refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSummary {
    pub banned: u64,
    pub rate: u64,
    pub backlog: u64,
    pub last_source: Option<IpAddr>,
}

impl RefusalTally {
    pub fn new(interval: Duration) -> RefusalTally {
        RefusalTally {
            interval,
            counts: [0; 3],
            logged: None,
            last_source: None,
        }
    }

    /// Notes one refusal; returns what to log when a line is due (the
    /// first refusal, then one line per interval at most).
    pub fn note(
        &mut self,
        reason: DropReason,
        source: IpAddr,
        now: Instant,
    ) -> Option<RefusalSummary> {
        self.counts[reason.index()] += 1;
        self.last_source = Some(source);
        if self
            .logged
            .is_some_and(|at| now.saturating_duration_since(at) < self.interval)
        {
            return None;
        }
        self.logged = Some(now);
        let [banned, rate, backlog] = std::mem::take(&mut self.counts);
        Some(RefusalSummary {
            banned,
            rate,
            backlog,
            last_source: self.last_source.take(),
        })
    }
}

#[cfg(test)]
mod tests;

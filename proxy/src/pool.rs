//! The media-server pool: member selection and health state.
//!
//! Pure data and decisions; the engine sends the OPTIONS probes and feeds
//! their outcome in. Health is a small hysteresis machine per member:
//! `failures_to_down` consecutive failed probes take an up member down,
//! `successes_to_up` consecutive answers bring a down member back. Any
//! response counts as alive (a 404 or 405 to OPTIONS still proves the
//! server's SIP stack is running).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[cfg(test)]
use crate::config::PoolConfig;
use crate::config::{GroupConfig, HealthConfig, MemberTransport, Probe, Strategy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Up,
    Down,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub address: SocketAddr,
    pub transport: MemberTransport,
    pub weight: u32,
    pub priority: u32,
    pub health: Health,
    /// Consecutive probe outcomes against the current state.
    streak: u32,
    /// Calls currently anchored on this member.
    pub active_calls: u64,
    /// Set by the operator (`tandem drain member`): no new call and no
    /// resume goes to the member, but it keeps its calls and its probes.
    /// Kept by name across reloads, and replicated to the standby.
    #[serde(default)]
    pub draining: bool,
}

/// A change of a member's health, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub member: usize,
    pub now: Health,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    strategy: Strategy,
    failures_to_down: u32,
    successes_to_up: u32,
    pub members: Vec<Member>,
    /// Round-robin position: the member after the last one picked.
    cursor: usize,
    /// Deterministic pseudo-random state for `random` and `weighted`, so a
    /// pool snapshot replays the same choices.
    rng: u64,
    /// How members are found down (the engine acts on it).
    #[serde(default)]
    pub probe: Probe,
    /// Whether answered calls of a failed member are resumed elsewhere.
    #[serde(default = "resume_default")]
    pub resume: bool,
    /// How often each member is probed (or, with `probe = "off"`, how
    /// long a member that failed rests before it gets calls again), and
    /// how long a probe may take.
    #[serde(default)]
    pub interval: std::time::Duration,
    #[serde(default)]
    pub timeout: std::time::Duration,
}

fn resume_default() -> bool {
    true
}

impl Member {
    /// Consecutive probe (or request) outcomes against its state: failures
    /// while up (it may be going down), answers while down.
    pub fn streak(&self) -> u32 {
        self.streak
    }
}

impl Pool {
    /// The pool of `[pool]` alone.
    #[cfg(test)]
    pub fn new(config: &PoolConfig) -> Pool {
        Pool::from_group(&config.as_group(true))
    }

    /// The pool of a destination group.
    pub fn from_group(config: &GroupConfig) -> Pool {
        let HealthConfig {
            failures_to_down,
            successes_to_up,
            ..
        } = config.health;
        Pool {
            name: config.name.clone(),
            strategy: config.strategy,
            failures_to_down,
            successes_to_up,
            members: config
                .members
                .iter()
                .map(|m| Member {
                    name: m.name.clone(),
                    address: m.address,
                    transport: m.transport,
                    weight: m.weight,
                    priority: m.priority,
                    // Members start up: a freshly started Tandem takes
                    // calls at once, and the first probes correct it.
                    health: Health::Up,
                    streak: 0,
                    active_calls: 0,
                    draining: false,
                })
                .collect(),
            cursor: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            probe: config.probe,
            resume: config.resume,
            interval: std::time::Duration::from_millis(config.health.interval_ms),
            timeout: std::time::Duration::from_millis(config.health.timeout_ms),
        }
    }

    /// A group no rule names, keeping members a reload removed while
    /// calls still use them: not probed (its members may be gone), their
    /// calls resumed elsewhere if they fail.
    pub fn holding(name: &str, members: Vec<Member>) -> Pool {
        Pool {
            name: name.to_owned(),
            strategy: Strategy::Sequential,
            failures_to_down: 1,
            successes_to_up: 1,
            members,
            cursor: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            probe: Probe::Off,
            resume: true,
            interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_millis(500),
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Picks a healthy member not in `exclude` by the pool's strategy.
    /// The hash strategies hash the empty key here (always the same
    /// member while it is up): call [`Pool::select_for`] with the key.
    #[cfg(test)]
    pub fn select(&mut self, exclude: &[usize]) -> Option<usize> {
        self.select_for(exclude, "")
    }

    /// Picks a healthy member not in `exclude` by the pool's strategy;
    /// `key` is what the hash strategies hash (the Call-ID for
    /// `hash-call-id`, the From user for `hash-from-user`, see
    /// [`Pool::hash_key`]), and the other strategies ignore it.
    ///
    /// Hashing is rendezvous hashing (highest score of key and member
    /// name wins): a member going down or being excluded moves only its
    /// own keys, every other key stays where it was, and the choice is
    /// the same on every node and across restarts (FNV-1a, no seeds).
    pub fn select_for(&mut self, exclude: &[usize], key: &str) -> Option<usize> {
        let n = self.members.len();
        // A draining member is skipped as a down one is.
        let eligible =
            |i: usize, m: &Member| m.health == Health::Up && !m.draining && !exclude.contains(&i);
        match self.strategy {
            Strategy::HashCallId | Strategy::HashFromUser => {
                let key_hash = fnv1a(key.as_bytes());
                self.members
                    .iter()
                    .enumerate()
                    .filter(|(i, m)| eligible(*i, m))
                    .max_by_key(|(i, m)| (mix(key_hash ^ fnv1a(m.name.as_bytes())), *i))
                    .map(|(i, _)| i)
            }
            Strategy::RoundRobin => {
                let pick = (0..n)
                    .map(|k| (self.cursor + k) % n)
                    .find(|&i| eligible(i, &self.members[i]))?;
                self.cursor = (pick + 1) % n;
                Some(pick)
            }
            Strategy::Sequential => self
                .members
                .iter()
                .enumerate()
                .filter(|(i, m)| eligible(*i, m))
                .min_by_key(|(i, m)| (m.priority, *i))
                .map(|(i, _)| i),
            Strategy::Random | Strategy::Weighted => {
                let weights: Vec<(usize, u64)> = self
                    .members
                    .iter()
                    .enumerate()
                    .filter(|(i, m)| eligible(*i, m))
                    .map(|(i, m)| {
                        (
                            i,
                            if self.strategy == Strategy::Weighted {
                                m.weight as u64
                            } else {
                                1
                            },
                        )
                    })
                    .collect();
                let total: u64 = weights.iter().map(|(_, w)| w).sum();
                if total == 0 {
                    return None;
                }
                let mut r = self.next_random() % total;
                for (i, w) in weights {
                    if r < w {
                        return Some(i);
                    }
                    r -= w;
                }
                None
            }
        }
    }

    /// The key [`Pool::select_for`] needs for this pool's strategy.
    pub fn hash_key<'a>(&self, call_id: &'a str, from_user: &'a str) -> &'a str {
        match self.strategy {
            Strategy::HashFromUser => from_user,
            _ => call_id,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: plenty for spreading calls.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Feeds one probe outcome; returns the change of state, if any.
    pub fn probe_result(&mut self, member: usize, alive: bool) -> Option<HealthChange> {
        let (to_down, to_up) = (self.failures_to_down, self.successes_to_up);
        let m = self.members.get_mut(member)?;
        match (m.health, alive) {
            (Health::Up, true) | (Health::Down, false) => {
                m.streak = 0;
                None
            }
            (Health::Up, false) => {
                m.streak += 1;
                (m.streak >= to_down).then(|| {
                    m.health = Health::Down;
                    m.streak = 0;
                    HealthChange {
                        member,
                        now: Health::Down,
                    }
                })
            }
            (Health::Down, true) => {
                m.streak += 1;
                (m.streak >= to_up).then(|| {
                    m.health = Health::Up;
                    m.streak = 0;
                    HealthChange {
                        member,
                        now: Health::Up,
                    }
                })
            }
        }
    }

    /// Takes a member down at once (its failure was confirmed otherwise,
    /// e.g. media silence and an unanswered probe). Returns the change.
    pub fn force_down(&mut self, member: usize) -> Option<HealthChange> {
        let m = self.members.get_mut(member)?;
        m.streak = 0;
        (m.health == Health::Up).then(|| {
            m.health = Health::Down;
            HealthChange {
                member,
                now: Health::Down,
            }
        })
    }

    /// A transport error or timeout of a call attempt is evidence too, but
    /// only the probes decide: one lost INVITE must not take a server out.
    #[cfg(test)]
    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's
/// `DefaultHasher`, whose algorithm may change.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads the combined hash over all bits, so
/// that similar keys do not favour one member.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;

/// Every destination group, with one numbering of all their members: the
/// machine's member index. A call's member, the probes, the health
/// records and the survival state all use it, whichever group a member
/// is in. Member names are unique across groups (the configuration
/// checks it), so a name also finds a member.
#[derive(Debug, Clone)]
pub struct Destinations {
    groups: Vec<Pool>,
    /// (group, index in group) of each member index.
    index: Vec<(usize, usize)>,
}

impl Destinations {
    pub fn new(groups: Vec<Pool>) -> Destinations {
        let index = groups
            .iter()
            .enumerate()
            .flat_map(|(g, p)| (0..p.members.len()).map(move |i| (g, i)))
            .collect();
        Destinations { groups, index }
    }

    /// The groups of a configuration: `[pool]` first (group 0), then each
    /// `[[group]]` in file order.
    pub fn from_config(config: &crate::config::Config) -> Destinations {
        Destinations::new(
            config
                .destination_groups()
                .iter()
                .map(Pool::from_group)
                .collect(),
        )
    }

    /// How many members there are, over all groups.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn member(&self, i: usize) -> Option<&Member> {
        let &(g, k) = self.index.get(i)?;
        self.groups.get(g)?.members.get(k)
    }

    pub fn member_mut(&mut self, i: usize) -> Option<&mut Member> {
        let &(g, k) = self.index.get(i)?;
        self.groups.get_mut(g)?.members.get_mut(k)
    }

    /// Every member with its index.
    pub fn members(&self) -> impl Iterator<Item = (usize, &Member)> {
        (0..self.len()).filter_map(|i| self.member(i).map(|m| (i, m)))
    }

    pub fn members_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        self.groups.iter_mut().flat_map(|p| p.members.iter_mut())
    }

    /// The member called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.members().find(|(_, m)| m.name == name).map(|(i, _)| i)
    }

    /// The group of member `i`.
    pub fn group_of(&self, i: usize) -> Option<usize> {
        self.index.get(i).map(|&(g, _)| g)
    }

    pub fn group(&self, g: usize) -> Option<&Pool> {
        self.groups.get(g)
    }

    /// The name of member `i`'s group.
    pub fn group_name_of(&self, i: usize) -> Option<&str> {
        self.group(self.group_of(i)?).map(|p| p.name.as_str())
    }

    /// The group called `name`.
    pub fn group_named(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|p| p.name == name)
    }

    /// Member `i`'s group's health settings: probe interval (or rest after
    /// failures) and probe timeout.
    pub fn timing(&self, i: usize) -> Option<(std::time::Duration, std::time::Duration)> {
        let p = self.groups.get(self.group_of(i)?)?;
        Some((p.interval, p.timeout))
    }

    /// Whether member `i`'s group is watched with OPTIONS.
    pub fn probed(&self, i: usize) -> bool {
        self.group_of(i)
            .and_then(|g| self.groups.get(g))
            .is_some_and(|p| p.probe == Probe::Options)
    }

    /// Whether answered calls on member `i` are resumed elsewhere when it
    /// fails.
    pub fn resumes(&self, i: usize) -> bool {
        self.group_of(i)
            .and_then(|g| self.groups.get(g))
            .is_some_and(|p| p.resume)
    }

    /// A healthy member of group `g`, none of `exclude` (member indexes),
    /// by the group's strategy; `call_id` and `from_user` feed the hash
    /// strategies.
    pub fn select(
        &mut self,
        g: usize,
        exclude: &[usize],
        call_id: &str,
        from_user: &str,
    ) -> Option<usize> {
        let local: Vec<usize> = exclude
            .iter()
            .filter_map(|&i| match self.index.get(i) {
                Some(&(eg, k)) if eg == g => Some(k),
                _ => None,
            })
            .collect();
        let pool = self.groups.get_mut(g)?;
        let key = pool.hash_key(call_id, from_user);
        let k = pool.select_for(&local, key)?;
        self.index.iter().position(|&x| x == (g, k))
    }

    /// Feeds one outcome (probe, or a real request for `probe = "off"`
    /// groups) for member `i`; the change of its health, if any.
    pub fn outcome(&mut self, i: usize, alive: bool) -> Option<HealthChange> {
        let &(g, k) = self.index.get(i)?;
        let mut change = self.groups.get_mut(g)?.probe_result(k, alive)?;
        change.member = i;
        Some(change)
    }

    /// Takes member `i` down at once.
    pub fn force_down(&mut self, i: usize) -> Option<HealthChange> {
        let &(g, k) = self.index.get(i)?;
        let mut change = self.groups.get_mut(g)?.force_down(k)?;
        change.member = i;
        Some(change)
    }

    /// Drains member `i` (`on`) or gives it calls again; whether that
    /// changed anything.
    pub fn set_draining(&mut self, i: usize, on: bool) -> bool {
        self.member_mut(i)
            .is_some_and(|m| std::mem::replace(&mut m.draining, on) != on)
    }

    /// Puts member `i` back up at once (a `probe = "off"` member whose
    /// rest is over gets real requests again).
    pub fn force_up(&mut self, i: usize) -> Option<HealthChange> {
        let m = self.member_mut(i)?;
        m.streak = 0;
        (m.health == Health::Down).then(|| {
            m.health = Health::Up;
            HealthChange {
                member: i,
                now: Health::Up,
            }
        })
    }
}

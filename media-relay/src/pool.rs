//! Port pool: even RTP port + the next odd port for RTCP, taken from a
//! configured range.
//!
//! Free pairs wait in release order: a freed pair goes to the back, so it
//! is handed out again only after at least half of the pairs freed before
//! it, which keeps stray packets of the last call away from the next one.
//! Which pair of the older half of a queue is handed out is random (a
//! CSPRNG seeded from the OS): nobody can predict the ports of the next
//! call from the last ones (a stranger who guesses them can aim packets at
//! a call as it is set up). Taking entry `i` of the older half swaps the
//! front entry into its place, so the order moves by one step only and
//! stays O(1).
//!
//! A free pair may carry a parked payload `P` (the relay parks the pair's
//! two bound sockets there, registered with one worker, its *home*); it is
//! handed out with the pair. Free pairs therefore sit in one FIFO queue per
//! home, plus one for pairs without payload. [`PortPool::take`] for a
//! worker hands out the oldest pair parked at that worker if it was
//! released at least `reuse_after` ago (its sockets are ready: no
//! `socket`/`bind`/`close` for this session), else the oldest pair of that
//! worker's queue or of the queue without payload as long as that pair is
//! in the older half of all free pairs (by release order), else the oldest
//! free pair of all. So a pair is reused only after it rested
//! `reuse_after` or after at least half of the pairs freed before it, and
//! usually without moving its sockets to another worker.
//!
//! Allocation, release and reservation of a given pair are O(1)
//! (amortised): queue entries carry a generation, and an entry whose
//! generation is stale, or whose pair was reserved directly, is skipped
//! when it reaches the front.
//!
//! A pair whose session has ended but whose sockets the worker still holds
//! is *releasing*: not free yet, not in use by a session either.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Free,
    InUse,
    Releasing,
}

#[derive(Debug)]
struct Pair<P> {
    state: State,
    generation: u32,
    parked: Option<P>,
}

/// A queue entry: pair index, its generation when queued, release stamp.
#[derive(Clone, Copy, Debug)]
struct Queued {
    pair: u32,
    generation: u32,
    stamp: u64,
    released: Instant,
}

/// Why a given pair cannot be reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Not a pair of the range, or held by a session.
    Refused(&'static str),
    /// Its session ended, but the worker has not let go of it yet.
    Releasing,
}

/// The pool. Not thread-safe by itself; the relay wraps it in a mutex.
#[derive(Debug)]
pub(crate) struct PortPool<P = ()> {
    first: u32,
    pairs: Vec<Pair<P>>,
    /// One queue per home, then the queue of pairs without payload.
    queues: Vec<VecDeque<Queued>>,
    /// Next release stamp.
    stamp: u64,
    free: usize,
    releasing: usize,
    parked: usize,
    max_parked: usize,
    /// A pair parked at a worker is handed to that worker again once it
    /// rested this long (see the module docs).
    reuse_after: Duration,
    /// Threads waiting for a releasing pair (maintained by the relay).
    pub(crate) waiters: usize,
    /// Picks the pair within the older half of a queue; None: always the
    /// oldest (plain FIFO, for tests of the queue order).
    rng: Option<StdRng>,
}

impl PortPool {
    /// Number of even/odd pairs in `min..=max`.
    pub(crate) fn pair_count(min: u16, max: u16) -> usize {
        let first = u32::from(min) + u32::from(min) % 2;
        let max = u32::from(max);
        if first + 1 > max {
            0
        } else {
            ((max - 1 - first) / 2 + 1) as usize
        }
    }
}

impl<P> PortPool<P> {
    /// A pool that parks nothing.
    #[cfg(test)]
    pub(crate) fn new(min: u16, max: u16) -> PortPool<P> {
        Self::with_parking(min, max, 0, 0, Duration::MAX)
    }

    /// The same pool handing out the oldest pair of a queue every time
    /// instead of a random one of its older half (tests of the order).
    #[cfg(test)]
    pub(crate) fn in_fifo_order(mut self) -> PortPool<P> {
        self.rng = None;
        self
    }

    /// A pool that keeps the payload of at most `max_parked` free pairs,
    /// whose homes are `0..homes`, and hands a parked pair to its home
    /// again after `reuse_after`.
    pub(crate) fn with_parking(
        min: u16,
        max: u16,
        max_parked: usize,
        homes: usize,
        reuse_after: Duration,
    ) -> PortPool<P> {
        let count = PortPool::pair_count(min, max);
        let mut queues = vec![VecDeque::new(); homes + 1];
        let now = Instant::now();
        queues[homes] = (0..count as u32)
            .map(|i| Queued {
                pair: i,
                generation: 0,
                stamp: u64::from(i),
                released: now,
            })
            .collect();
        PortPool {
            first: u32::from(min) + u32::from(min) % 2,
            pairs: (0..count)
                .map(|_| Pair {
                    state: State::Free,
                    generation: 0,
                    parked: None,
                })
                .collect(),
            queues,
            stamp: count as u64,
            free: count,
            releasing: 0,
            parked: 0,
            max_parked,
            reuse_after,
            waiters: 0,
            rng: Some(StdRng::from_entropy()),
        }
    }

    /// Index of the pair whose RTP port is `rtp_port` (0 = lowest).
    pub(crate) fn index(&self, rtp_port: u16) -> Option<usize> {
        let port = u32::from(rtp_port);
        if port < self.first || !(port - self.first).is_multiple_of(2) {
            return None;
        }
        let i = ((port - self.first) / 2) as usize;
        (i < self.pairs.len()).then_some(i)
    }

    fn port(&self, index: u32) -> u16 {
        (self.first + 2 * index) as u16
    }

    /// Whether a queue entry still stands for a free pair.
    fn valid(&self, e: Queued) -> bool {
        let pair = &self.pairs[e.pair as usize];
        pair.state == State::Free && pair.generation == e.generation
    }

    /// The valid front entry of queue `q` (stale entries are dropped).
    fn front(&mut self, q: usize) -> Option<Queued> {
        while let Some(&e) = self.queues[q].front() {
            if self.valid(e) {
                return Some(e);
            }
            self.queues[q].pop_front();
        }
        None
    }

    /// Removes and returns an entry of the older half of queue `q`, whose
    /// front is valid (checked by [`front`](Self::front)): a random one,
    /// or the front when the random one is stale or, with `rested`, has
    /// not rested `reuse_after` yet (the front has). None only if the
    /// queue is empty, which the caller has ruled out: no pair then rather
    /// than a panic on the call path.
    fn pick(&mut self, q: usize, rested: bool) -> Option<Queued> {
        if let Some(rng) = &mut self.rng {
            let older_half = (self.queues[q].len() / 2).max(1);
            let i = rng.gen_range(0..older_half);
            let e = self.queues[q][i];
            if self.valid(e) && (!rested || e.released.elapsed() >= self.reuse_after) {
                return self.queues[q].swap_remove_front(i);
            }
        }
        self.queues[q].pop_front()
    }

    /// Takes a free pair for a session of worker `home` (see the module
    /// docs), with its parked payload; returns its RTP (even) port. Without
    /// `home`, or with an unknown one: a random one of the older half of
    /// the queue that holds the oldest free pair.
    pub(crate) fn take(&mut self, home: Option<usize>) -> Option<(u16, Option<P>)> {
        let unbound = self.queues.len() - 1;
        let mut oldest: Option<(usize, u64)> = None;
        for q in 0..self.queues.len() {
            if let Some(e) = self.front(q) {
                if oldest.is_none_or(|(_, s)| e.stamp < s) {
                    oldest = Some((q, e.stamp));
                }
            }
        }
        let (mut q, oldest_stamp) = oldest?;
        let reuse_after = self.reuse_after;
        let rested_home = home.filter(|&h| h < unbound).filter(|&h| {
            self.front(h)
                .is_some_and(|e| e.released.elapsed() >= reuse_after)
        });
        let rested = rested_home.is_some();
        if let Some(h) = rested_home {
            q = h;
        } else if let Some(h) = home.filter(|&h| h < unbound) {
            let own = [h, unbound]
                .into_iter()
                .filter_map(|q| self.front(q).map(|e| (q, e.stamp)))
                .min_by_key(|&(_, s)| s);
            if let Some((own_q, s)) = own {
                // In the older half of the free pairs (by release order).
                if s - oldest_stamp <= (self.stamp - oldest_stamp) / 2 {
                    q = own_q;
                }
            }
        }
        let e = self.pick(q, rested)?;
        let pair = &mut self.pairs[e.pair as usize];
        pair.state = State::InUse;
        let parked = pair.parked.take();
        self.parked -= usize::from(parked.is_some());
        self.free -= 1;
        Some((self.port(e.pair), parked))
    }

    /// Takes a given pair (restoring a snapshot) with its parked payload.
    pub(crate) fn take_port(&mut self, rtp_port: u16) -> Result<Option<P>, Unavailable> {
        let i = self.index(rtp_port).ok_or(Unavailable::Refused(
            "not an RTP (even) port of the configured range",
        ))?;
        let pair = &mut self.pairs[i];
        match pair.state {
            State::InUse => Err(Unavailable::Refused("already in use by another session")),
            State::Releasing => Err(Unavailable::Releasing),
            State::Free => {
                pair.state = State::InUse;
                let parked = pair.parked.take();
                self.parked -= usize::from(parked.is_some());
                self.free -= 1;
                Ok(parked)
            }
        }
    }

    /// Marks a pair in use as releasing: its session is gone, its sockets
    /// are not closed or parked yet. Other states are left alone.
    pub(crate) fn mark_releasing(&mut self, rtp_port: u16) {
        if let Some(i) = self.index(rtp_port) {
            let pair = &mut self.pairs[i];
            if pair.state == State::InUse {
                pair.state = State::Releasing;
                self.releasing += 1;
            }
        }
    }

    /// Whether one more pair may keep its payload when given back.
    pub(crate) fn parking_room(&self) -> bool {
        self.parked < self.max_parked
    }

    /// Gives a pair back; it goes to the back of the queue of `home` with
    /// `parked` (check [`parking_room`](Self::parking_room) first), or to
    /// the back of the queue without payload. Unknown or free ports are
    /// ignored, and their payload with them.
    pub(crate) fn give_back(&mut self, rtp_port: u16, parked: Option<P>, home: usize) {
        let Some(i) = self.index(rtp_port) else {
            return;
        };
        let unbound = self.queues.len() - 1;
        let pair = &mut self.pairs[i];
        match pair.state {
            State::Free => return,
            State::Releasing => self.releasing -= 1,
            State::InUse => {}
        }
        pair.state = State::Free;
        pair.generation = pair.generation.wrapping_add(1);
        let q = if parked.is_some() {
            pair.parked = parked;
            self.parked += 1;
            home.min(unbound)
        } else {
            unbound
        };
        self.queues[q].push_back(Queued {
            pair: i as u32,
            generation: pair.generation,
            stamp: self.stamp,
            released: Instant::now(),
        });
        self.stamp += 1;
        self.free += 1;
    }

    /// Takes the payload of up to `n` parked free pairs (the pairs stay
    /// free, now without payload). The relay drops what it gets to close
    /// parked sockets when the process runs out of file descriptors:
    /// parked sockets are a cache and must never starve a live session.
    pub(crate) fn unpark(&mut self, n: usize) -> Vec<P> {
        let mut out = Vec::new();
        if self.parked == 0 {
            return out;
        }
        for pair in &mut self.pairs {
            if out.len() == n {
                break;
            }
            if pair.state == State::Free {
                if let Some(p) = pair.parked.take() {
                    out.push(p);
                }
            }
        }
        self.parked -= out.len();
        out
    }

    /// Pairs ready to be handed out.
    pub(crate) fn free_pairs(&self) -> usize {
        self.free
    }

    /// Pairs whose session ended but whose sockets are still held.
    pub(crate) fn releasing_pairs(&self) -> usize {
        self.releasing
    }

    /// Free pairs with parked sockets.
    pub(crate) fn parked_pairs(&self) -> usize {
        self.parked
    }

    /// All pairs of the range.
    pub(crate) fn total_pairs(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
impl PortPool<()> {
    /// Takes the least recently freed pair.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        self.take(None).map(|(port, _)| port)
    }

    /// Takes a given pair.
    pub(crate) fn reserve(&mut self, rtp_port: u16) -> Result<(), &'static str> {
        self.take_port(rtp_port).map(drop).map_err(|e| match e {
            Unavailable::Refused(reason) => reason,
            Unavailable::Releasing => "releasing",
        })
    }

    /// Gives a pair back.
    pub(crate) fn release(&mut self, rtp_port: u16) {
        self.give_back(rtp_port, None, 0)
    }
}

#[cfg(test)]
mod tests;

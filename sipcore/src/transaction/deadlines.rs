//! The layer's running timers, earliest first, without a heap.
//!
//! Every transaction timer is started with one of a few durations (T1 and
//! its doublings up to T2, T4, 64*T1, Timer D), and deadlines are taken
//! from a clock that never goes back: timers started with the same
//! duration expire in the order they were started. So each duration (and
//! laxness, see [`Timer::is_lax`]) gets a FIFO queue, already sorted;
//! starting a timer is a push at the back, and the next one due is the
//! earliest of a handful of queue fronts.
//! A binary heap (what this replaces) paid a sift through a table of
//! hundreds of thousands of entries (the 32 s timers of every transaction
//! of the last 32 s) for each timer started and fired, with a cache miss
//! per level. Durations beyond [`MAX_QUEUES`] distinct ones (configured
//! timers could make more) share a heap, so the order stays exact.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::timers::wake_time;
use super::Timer;

/// One running timer: when, its sequence number (start order, which also
/// breaks ties), its entry and which timer of it.
pub(super) type Deadline = (Instant, u64, u64, Timer);

/// Distinct durations with a queue of their own.
const MAX_QUEUES: usize = 16;

#[derive(Default)]
pub(super) struct Deadlines {
    /// By duration and whether the timers are lax (a queue holds only
    /// one kind, so its front says when it needs a wake-up).
    queues: Vec<(Duration, bool, VecDeque<Deadline>)>,
    /// Durations without a queue, and a deadline earlier than the back
    /// of its queue (a clock that went back).
    overflow: BinaryHeap<Reverse<Deadline>>,
}

impl Deadlines {
    /// Adds a timer that was started `after` before `deadline.0`.
    pub(super) fn push(&mut self, after: Duration, deadline: Deadline) {
        let lax = deadline.3.is_lax();
        let slot = match self
            .queues
            .iter()
            .position(|(d, l, _)| *d == after && *l == lax)
        {
            Some(i) => Some(i),
            None if self.queues.len() < MAX_QUEUES => {
                self.queues.push((after, lax, VecDeque::new()));
                Some(self.queues.len() - 1)
            }
            None => None,
        };
        match slot {
            Some(i) if self.queues[i].2.back().is_none_or(|b| *b <= deadline) => {
                self.queues[i].2.push_back(deadline)
            }
            _ => self.overflow.push(Reverse(deadline)),
        }
    }

    /// Drops the timers at the front of each queue (and the top of the
    /// heap) that `stale` says were cancelled, up to the first live one.
    pub(super) fn drop_stale_fronts(&mut self, stale: impl Fn(&Deadline) -> bool) {
        for (_, _, q) in &mut self.queues {
            while q.front().is_some_and(&stale) {
                q.pop_front();
            }
        }
        while self.overflow.peek().is_some_and(|Reverse(d)| stale(d)) {
            self.overflow.pop();
        }
    }

    /// When the timer task must wake next: the earliest deadline, where a
    /// lax timer's counts with its slack (the wake-up then fires every
    /// timer due by then, lax timers up to their slack late together).
    /// Timers in the overflow heap keep their time.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        let queued = self.queues.iter().filter_map(|(after, _, q)| {
            let &(at, _, _, timer) = q.front()?;
            Some(wake_time(timer, at, *after))
        });
        let heaped = self.overflow.peek().map(|Reverse(d)| d.0);
        queued.chain(heaped).min()
    }

    /// The earliest timer.
    pub(super) fn peek(&self) -> Option<Deadline> {
        self.earliest().map(|(_, d)| d)
    }

    /// Removes and returns the earliest timer.
    pub(super) fn pop(&mut self) -> Option<Deadline> {
        let (from, deadline) = self.earliest()?;
        match from {
            Some(i) => self.queues[i].2.pop_front(),
            None => self.overflow.pop().map(|Reverse(d)| d),
        };
        Some(deadline)
    }

    /// The earliest timer and where it is: a queue's index, or the heap.
    fn earliest(&self) -> Option<(Option<usize>, Deadline)> {
        let queued = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, (_, _, q))| q.front().map(|d| (Some(i), *d)));
        let heaped = self.overflow.peek().map(|Reverse(d)| (None, *d));
        queued.chain(heaped).min_by_key(|&(_, d)| (d.0, d.1))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queues.iter().map(|(_, _, q)| q.len()).sum::<usize>() + self.overflow.len()
    }

    /// Gives back room a past peak left (see `Inner::shrink_after_peak`).
    pub(super) fn shrink_if_sparse(&mut self, sparse: impl Fn(usize, usize) -> bool) {
        for (_, _, q) in &mut self.queues {
            if sparse(q.len(), q.capacity()) {
                q.shrink_to(2 * q.len());
            }
        }
        if sparse(self.overflow.len(), self.overflow.capacity()) {
            self.overflow.shrink_to(2 * self.overflow.len());
        }
    }
}

#[cfg(test)]
mod tests;

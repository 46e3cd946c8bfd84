//! Port pool: even RTP port + the next odd port for RTCP, taken from a
//! configured range.
//!
//! Free pairs sit in a FIFO queue: a freed pair goes to the back, so it is
//! handed out again only after every other free pair has been used, which
//! keeps stray packets of the last call away from the next one. Allocation,
//! release and reservation of a given pair are O(1) (amortised): the queue
//! holds `(pair, generation)` entries and an entry whose generation is stale,
//! or whose pair was reserved directly, is skipped when it reaches the front.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, Default)]
struct Pair {
    in_use: bool,
    generation: u32,
}

/// The pool. Not thread-safe by itself; the relay wraps it in a mutex.
#[derive(Debug)]
pub(crate) struct PortPool {
    first: u32,
    pairs: Vec<Pair>,
    queue: VecDeque<(u32, u32)>,
    free: usize,
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

    pub(crate) fn new(min: u16, max: u16) -> PortPool {
        let count = Self::pair_count(min, max);
        PortPool {
            first: u32::from(min) + u32::from(min) % 2,
            pairs: vec![Pair::default(); count],
            queue: (0..count as u32).map(|i| (i, 0)).collect(),
            free: count,
        }
    }

    fn index(&self, rtp_port: u16) -> Option<usize> {
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

    /// Takes the least recently freed pair; returns its RTP (even) port.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        while let Some((i, generation)) = self.queue.pop_front() {
            let pair = &mut self.pairs[i as usize];
            if pair.in_use || pair.generation != generation {
                continue; // stale entry
            }
            pair.in_use = true;
            self.free -= 1;
            return Some(self.port(i));
        }
        None
    }

    /// Takes a given pair (restoring a snapshot).
    pub(crate) fn reserve(&mut self, rtp_port: u16) -> Result<(), &'static str> {
        let i = self
            .index(rtp_port)
            .ok_or("not an RTP (even) port of the configured range")?;
        let pair = &mut self.pairs[i];
        if pair.in_use {
            return Err("already in use by another session");
        }
        pair.in_use = true;
        self.free -= 1;
        Ok(())
    }

    /// Gives a pair back; it goes to the back of the queue. Unknown or free
    /// ports are ignored.
    pub(crate) fn release(&mut self, rtp_port: u16) {
        let Some(i) = self.index(rtp_port) else {
            return;
        };
        let pair = &mut self.pairs[i];
        if !pair.in_use {
            return;
        }
        pair.in_use = false;
        pair.generation = pair.generation.wrapping_add(1);
        self.queue.push_back((i as u32, pair.generation));
        self.free += 1;
    }

    /// Pairs not in use.
    pub(crate) fn free_pairs(&self) -> usize {
        self.free
    }

    /// All pairs of the range.
    pub(crate) fn total_pairs(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
mod tests;

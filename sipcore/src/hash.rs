//! The hasher of the maps every SIP message touches: the transaction
//! layer's entries and index, the gate's tables, the B2BUA's call store.
//!
//! foldhash (hashbrown's own default, already in the tree) rather than
//! std's SipHash-1-3: several times cheaper on short keys such as branches,
//! Call-IDs and addresses (issue 15: SipHash was ~6 % of a call's
//! instructions, 704,632 -> 658,733 per call with foldhash,
//! `loadtest/bench/b2bua-instructions.sh 600 20`).
//!
//! The keys come from the network, so a sender must not be able to work
//! out keys that collide. foldhash's own `RandomState` seeds itself from
//! address-space layout and the clock, which its authors call only
//! "minimally DoS-resistant"; here the seed shared by every map is drawn
//! once from the OS's random generator (through `rand`), and every map adds
//! a random seed of its own, so nothing about it can be guessed from the
//! binary or the time of start.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use foldhash::quality::{FoldHasher, SeedableRandomState};
use foldhash::SharedSeed;

/// A [`BuildHasher`] with a random seed of its own on top of a random
/// seed of the process, both from the OS's generator. Make one with
/// `Hasher::default()` (each call draws a new per-map seed).
#[derive(Clone, Debug)]
pub struct Hasher(SeedableRandomState);

impl Default for Hasher {
    fn default() -> Hasher {
        static PROCESS: OnceLock<SharedSeed> = OnceLock::new();
        let shared = PROCESS.get_or_init(|| SharedSeed::from_u64(rand::random()));
        Hasher(SeedableRandomState::with_seed(rand::random(), shared))
    }
}

impl BuildHasher for Hasher {
    type Hasher = FoldHasher<'static>;

    fn build_hasher(&self) -> FoldHasher<'static> {
        self.0.build_hasher()
    }
}

/// std's `HashMap` with [`Hasher`] (make one with `Map::default()`).
pub type Map<K, V> = std::collections::HashMap<K, V, Hasher>;
/// std's `HashSet` with [`Hasher`].
pub type Set<T> = std::collections::HashSet<T, Hasher>;

#[cfg(test)]
mod tests;

//! The calls of every shard, counted together: `limits.max_calls` and a
//! trunk's `max_calls` cap the node, not each shard. Each shard's call
//! store adds a call here when it stores one and takes it away when it
//! removes it; a shard asks the node's figures before it takes a new
//! call.
//!
//! Atomics, not a lock or a message to a counting task: a shard never
//! waits for another to take or refuse a call. The check and the count
//! are two steps, so shards that admit a call at the same instant may
//! pass a cap by at most one call each (N − 1 above the cap with N
//! shards, for as long as those calls last); one shard alone never
//! passes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Calls up on the node: in all and by source (trunk) name.
#[derive(Debug, Default)]
pub struct CallTally {
    total: AtomicUsize,
    /// One counter per source name ever seen. The names are the trunks
    /// of the configuration (and the registrar's phones), never a
    /// stranger's words: a call's source is named before it is stored,
    /// so the map stays as small as the configuration.
    by_source: RwLock<HashMap<String, Arc<AtomicUsize>>>,
}

impl CallTally {
    /// A call from `source` was stored.
    pub fn add(&self, source: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.counter(source).fetch_add(1, Ordering::Relaxed);
    }

    /// A call from `source` was removed.
    pub fn remove(&self, source: &str) {
        let _ = self
            .total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let _ = self
            .counter(source)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Calls up on the node.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Calls up on the node from the source named `source`.
    pub fn calls_from(&self, source: &str) -> usize {
        let known = match self.by_source.read() {
            Ok(map) => map.get(source).map(|n| n.load(Ordering::Relaxed)),
            Err(poisoned) => poisoned
                .into_inner()
                .get(source)
                .map(|n| n.load(Ordering::Relaxed)),
        };
        known.unwrap_or(0)
    }

    /// The counter of `source`, made on its first call.
    fn counter(&self, source: &str) -> Arc<AtomicUsize> {
        let found = match self.by_source.read() {
            Ok(map) => map.get(source).cloned(),
            Err(poisoned) => poisoned.into_inner().get(source).cloned(),
        };
        if let Some(n) = found {
            return n;
        }
        let mut map = self
            .by_source
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(source.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests;

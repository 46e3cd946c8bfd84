//! The node's SIP endpoint figures with shards: each shard's endpoint
//! counts only what its own socket and transaction layer saw, so the
//! node-wide series (`tandem_sip_messages_received_total`,
//! `tandem_sip_server_transactions`, `tandem_sip_overload_total`,
//! `tandem_sip_refused_total{reason="unverified_response"}`, …) are the
//! sum over every shard. Each shard writes its endpoint's figures into
//! its own slot once a second; the node's task sums the slots and
//! publishes that.
//!
//! The slots start at zero and a shard only ever overwrites its own with
//! a later snapshot of monotonic counters, so the sum never goes back: a
//! shard that has not reported yet adds nothing, one that stopped keeps
//! its last figures (Prometheus counters must not decrease).

use std::sync::Mutex;

use sipcore::endpoint::EndpointStats;

/// One endpoint's figures: its stats and, kept apart from them by its
/// transaction layer, the stray responses dropped as not ours.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EndpointFigures {
    pub stats: EndpointStats,
    pub unverified_responses: u64,
}

impl EndpointFigures {
    /// Sums another shard's figures into these. Destructured without
    /// `..`: a new field must be summed.
    pub fn add(&mut self, other: &EndpointFigures) {
        let EndpointFigures {
            stats,
            unverified_responses,
        } = other;
        self.stats.add(stats);
        self.unverified_responses = self
            .unverified_responses
            .saturating_add(*unverified_responses);
    }
}

/// One slot per shard.
#[derive(Debug)]
pub struct EndpointSlots {
    slots: Vec<Mutex<EndpointFigures>>,
}

impl EndpointSlots {
    pub fn new(shards: u32) -> Self {
        EndpointSlots {
            slots: (0..shards)
                .map(|_| Mutex::new(EndpointFigures::default()))
                .collect(),
        }
    }

    /// Shard `shard`'s endpoint figures now (a shard out of range is
    /// ignored: there is none).
    pub fn publish(&self, shard: u32, figures: EndpointFigures) {
        if let Some(slot) = self.slots.get(shard as usize) {
            // Plain figures, whole after any panic: a poisoned lock's
            // value is still good.
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = figures;
        }
    }

    /// The node's figures: every shard's last snapshot, summed.
    pub fn sum(&self) -> EndpointFigures {
        let mut sum = EndpointFigures::default();
        for slot in &self.slots {
            sum.add(&slot.lock().unwrap_or_else(|e| e.into_inner()));
        }
        sum
    }
}

#[cfg(test)]
mod tests;

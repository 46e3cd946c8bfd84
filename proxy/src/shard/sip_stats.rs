//! The node's SIP endpoint figures with shards: each shard's endpoint
//! counts only what its own socket and transaction layer saw, so the
//! node-wide series (`tandem_sip_messages_received_total`,
//! `tandem_sip_server_transactions`, `tandem_sip_overload_total`, …) are
//! the sum over every shard. Each shard writes its endpoint's snapshot
//! into its own slot once a second; the node's task sums the slots and
//! publishes that.
//!
//! The slots start at zero and a shard only ever overwrites its own with
//! a later snapshot of monotonic counters, so the sum never goes back: a
//! shard that has not reported yet adds nothing, one that stopped keeps
//! its last figures (Prometheus counters must not decrease).

use std::sync::Mutex;

use sipcore::endpoint::EndpointStats;

/// One slot per shard.
#[derive(Debug)]
pub struct EndpointSlots {
    slots: Vec<Mutex<EndpointStats>>,
}

impl EndpointSlots {
    pub fn new(shards: u32) -> Self {
        EndpointSlots {
            slots: (0..shards)
                .map(|_| Mutex::new(EndpointStats::default()))
                .collect(),
        }
    }

    /// Shard `shard`'s endpoint figures now (a shard out of range is
    /// ignored: there is none).
    pub fn publish(&self, shard: u32, stats: EndpointStats) {
        if let Some(slot) = self.slots.get(shard as usize) {
            // Plain figures, whole after any panic: a poisoned lock's
            // value is still good.
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        }
    }

    /// The node's figures: every shard's last snapshot, summed.
    pub fn sum(&self) -> EndpointStats {
        let mut sum = EndpointStats::default();
        for slot in &self.slots {
            sum.add(&slot.lock().unwrap_or_else(|e| e.into_inner()));
        }
        sum
    }
}

#[cfg(test)]
mod tests;

//! Caps on calls (per trunk and in total) and the budget of log lines
//! about refused INVITEs: what a trunk that sends more than agreed, or a
//! flood of refusals, may cost.

use std::time::{Duration, Instant};

use super::Machine;
use crate::error::Error;

/// Lines about refused INVITEs: one per this interval at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Machine {
    /// Whether one more call from `source` stays within `limits.max_calls`
    /// and the trunk's `max_calls`; else the 503 (with Retry-After) to
    /// answer. A trunk is never banned: it is told to come back later.
    pub(super) fn within_call_caps(&self, source: &str) -> Result<(), Error> {
        // With shards the caps hold for the node: every shard's calls.
        let (up, from_source) = match self.store.tally() {
            Some(node) => (node.total(), node.calls_from(source)),
            None => (self.store.len(), self.store.calls_from(source)),
        };
        let total = self.settings.max_calls;
        if total > 0 && up >= total {
            return Err(Error::internal(
                503,
                "Service Unavailable",
                format!("{total} calls up, the most allowed"),
            ));
        }
        if let Some(max) = self.policy.max_calls(source) {
            if from_source >= max {
                return Err(Error::internal(
                    503,
                    "Service Unavailable",
                    format!("{max} calls up from {source}, the most allowed for it"),
                ));
            }
        }
        Ok(())
    }
}

/// At most one line per interval, with the number of refusals it stands
/// for: a flood of refused INVITEs must not become a flood of log lines.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// When the last line was written.
    logged: Option<Instant>,
    /// Refusals not logged since.
    unlogged: u64,
}

impl RefusalLog {
    /// One refusal at `now`: Some(refusals it stands for, itself
    /// included) when a line is due.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self
            .logged
            .is_some_and(|at| now.saturating_duration_since(at) < REFUSAL_LOG_INTERVAL)
        {
            return None;
        }
        self.logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

//! The members' health with shards: shard 0 alone probes the members
//! (N shards probing each would send N OPTIONS per interval to every
//! member, and cost every shard the probes' timers and transactions), and
//! publishes what it finds; the other shards follow it.
//!
//! A `watch` channel: shard 0 replaces the list only when a member's
//! health changed, and a follower's check on its tick is one atomic
//! load when nothing did.

use tokio::sync::watch;

/// Each member's name and whether it is up.
pub type MemberHealth = Vec<(String, bool)>;

/// A shard's side of the members' health.
#[derive(Debug)]
pub enum HealthShare {
    /// Shard 0: probes, and publishes.
    Publish(watch::Sender<MemberHealth>),
    /// The others: no probes; they take shard 0's findings.
    Follow(watch::Receiver<MemberHealth>),
}

impl HealthShare {
    /// The publisher, and a follower per other shard (`shards - 1`).
    pub fn for_shards(shards: u32) -> Vec<HealthShare> {
        let (tx, rx) = watch::channel(MemberHealth::new());
        let mut shares = vec![HealthShare::Publish(tx)];
        shares.extend((1..shards).map(|_| HealthShare::Follow(rx.clone())));
        shares
    }

    /// Whether this shard sends the probes.
    pub fn probes(&self) -> bool {
        matches!(self, HealthShare::Publish(_))
    }

    /// Shard 0: publishes `now` if it differs from what was published.
    pub fn publish(&self, now: &[(&str, bool)]) {
        let HealthShare::Publish(tx) = self else {
            return;
        };
        tx.send_if_modified(|published| {
            let same = published.len() == now.len()
                && published
                    .iter()
                    .zip(now)
                    .all(|((name, up), (now_name, now_up))| name == now_name && up == now_up);
            if !same {
                *published = now
                    .iter()
                    .map(|&(name, up)| (name.to_owned(), up))
                    .collect();
            }
            !same
        });
    }

    /// A follower: shard 0's findings, when they changed since the last
    /// call.
    pub fn changed(&mut self) -> Option<MemberHealth> {
        let HealthShare::Follow(rx) = self else {
            return None;
        };
        if !rx.has_changed().unwrap_or(false) {
            return None;
        }
        Some(rx.borrow_and_update().clone())
    }
}

#[cfg(test)]
mod tests;

//! The one timer of the engine loop: when the earliest of its deadlines
//! (the machine's next timer, housekeeping, probes, the survival tick,
//! the DNS refresh, the drain) falls due.
//!
//! Made once and moved, not made anew on every pass of the loop: a new
//! tokio timer that is due before what the time driver last planned to
//! wake for makes tokio wake its own thread through the runtime's eventfd
//! (a `write(2)` and an extra `epoll_wait` round), and at 1,000 calls a
//! second a fresh `sleep_until` per pass did that about once per call
//! (issue 15, round 3). Moving a pending timer later costs nothing in
//! tokio (no re-registration); only a deadline moved earlier, or one set
//! after the timer fired, registers it again.

use std::pin::Pin;
use std::time::Instant;

use tokio::time::Sleep;

pub(super) struct EngineTimer {
    sleep: Pin<Box<Sleep>>,
    /// The deadline the timer waits for; None: disarmed.
    armed: Option<Instant>,
    /// Whether the timer is pending in tokio's wheel (set, not yet fired).
    pending: bool,
    /// Times the timer was (re)registered with tokio's time driver.
    registrations: u64,
}

impl EngineTimer {
    pub(super) fn new() -> EngineTimer {
        EngineTimer {
            // Disarmed: the deadline is never polled until `set`.
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
            pending: false,
            registrations: 0,
        }
    }

    /// Waits for `next` (None: no deadline). Does nothing to the tokio
    /// timer when the deadline is unchanged.
    pub(super) fn set(&mut self, next: Option<Instant>) {
        if next == self.armed {
            return;
        }
        if let Some(t) = next {
            // tokio re-registers a pending timer only when it moves
            // earlier; otherwise it only notes the new deadline.
            if !self.pending || self.armed.is_none_or(|a| t < a) {
                self.registrations += 1;
            }
            self.sleep.as_mut().reset(tokio::time::Instant::from_std(t));
            self.pending = true;
        }
        self.armed = next;
    }

    #[cfg(test)]
    fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Resolves when the armed deadline is due, and disarms the timer
    /// (the next `set` arms it again, even for the same instant).
    /// Only to be awaited while armed.
    pub(super) async fn fired(&mut self) {
        self.sleep.as_mut().await;
        self.armed = None;
        self.pending = false;
    }

    #[cfg(test)]
    fn registrations(&self) -> u64 {
        self.registrations
    }
}

#[cfg(test)]
mod tests;

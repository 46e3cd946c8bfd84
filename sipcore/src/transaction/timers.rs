//! Transaction timers (RFC 3261 §17, table 4 of appendix A; RFC 6026 §8.2).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Delay after which an INVITE server transaction sends `100 Trying` itself
/// when the TU has not sent a provisional response yet (§17.2.1).
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// Minimum of Timer D on unreliable transports (§17.1.1.2).
pub const TIMER_D_MIN: Duration = Duration::from_secs(32);

/// The base timer values every transaction timer is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerConfig {
    /// RTT estimate; initial retransmission interval (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// The timers of the four transaction state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// INVITE request retransmission (client, unreliable only).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait for response retransmissions after a non-2xx (client INVITE).
    D,
    /// Non-INVITE request retransmission (client, unreliable only).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE final response retransmission (server, unreliable only).
    G,
    /// Wait for ACK (server INVITE).
    H,
    /// Wait for ACK retransmissions (server INVITE).
    I,
    /// Wait for non-INVITE request retransmissions (server).
    J,
    /// Wait for non-INVITE response retransmissions (client).
    K,
    /// Wait for INVITE retransmissions after a 2xx, RFC 6026 (server).
    L,
    /// Wait for 2xx retransmissions, RFC 6026 (client).
    M,
    /// Send `100 Trying` if the TU has not answered yet (server INVITE,
    /// §17.2.1); fires after [`TRYING_DELAY`].
    Trying,
}

impl Timer {
    /// Whether this is one of the doubling retransmission timers (A, E, G).
    pub fn is_retransmission(self) -> bool {
        matches!(self, Timer::A | Timer::E | Timer::G)
    }

    /// Whether this timer may fire a little late (at most [`lax_slack`] of
    /// its duration): the wait states (D, I, J, K, L, M), which only end a
    /// transaction that absorbed retransmissions, and the timeouts (B, F,
    /// H), 64*T1 and mostly cancelled before they fire. Their firings then
    /// share wake-ups: at 1,000 calls a second some 7,000 of them a second
    /// would each wake the layer's timer task on a millisecond of its own
    /// (issue 15: low rates must not be dominated by wake-ups). Never
    /// early: a wait state is at least as long as RFC 3261 says.
    /// Retransmissions and the 100 Trying delay keep their time.
    pub fn is_lax(self) -> bool {
        !matches!(self, Timer::A | Timer::E | Timer::G | Timer::Trying)
    }
}

/// How late a lax timer (see [`Timer::is_lax`]) that ran for `duration`
/// may fire: 1/64 of it, at most 100 ms (32 s wait states: 100 ms; T4:
/// 78 ms; a zero timer of a reliable transport: none).
pub fn lax_slack(duration: Duration) -> Duration {
    (duration / 64).min(Duration::from_millis(100))
}

/// When the timer task must be awake for `timer`, due at `at` after
/// running for `duration`: at `at`, or for a lax one up to its slack later.
pub(super) fn wake_time(
    timer: Timer,
    at: tokio::time::Instant,
    duration: Duration,
) -> tokio::time::Instant {
    if timer.is_lax() {
        at + lax_slack(duration)
    } else {
        at
    }
}

impl TimerConfig {
    /// Checks that the values can drive the machines: T1 must be non-zero
    /// (a zero T1 would retransmit in a loop) and T2 at least T1.
    /// The error names the offending field.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.t1.is_zero() {
            return Err("t1 must be greater than zero");
        }
        if self.t2 < self.t1 {
            return Err("t2 must not be less than t1");
        }
        Ok(())
    }

    /// 64*T1: timers B, F, H, J (unreliable), L and M.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The (initial) duration of `timer` on a transport that is `reliable`
    /// or not.
    ///
    /// * A, E, G: T1 (the first retransmission interval; on reliable
    ///   transports these timers are never started).
    /// * B, F, H, L, M: 64*T1 on any transport.
    /// * J: 64*T1 unreliable, 0 reliable.
    /// * D: at least 32 s unreliable (`max(32 s, 64*T1)`), 0 reliable.
    /// * I, K: T4 unreliable, 0 reliable.
    /// * Trying: 200 ms.
    pub fn duration(&self, timer: Timer, reliable: bool) -> Duration {
        let unreliable_only = |d: Duration| if reliable { Duration::ZERO } else { d };
        match timer {
            Timer::A | Timer::E | Timer::G => self.t1,
            Timer::B | Timer::F | Timer::H | Timer::L | Timer::M => self.timeout(),
            Timer::J => unreliable_only(self.timeout()),
            Timer::D => unreliable_only(self.timeout().max(TIMER_D_MIN)),
            Timer::I | Timer::K => unreliable_only(self.t4),
            Timer::Trying => TRYING_DELAY,
        }
    }

    /// The interval after a retransmission timer that ran for `current`
    /// fired: A doubles without cap (Timer B ends it), E and G double up to
    /// T2. Other timers do not repeat and keep `current`.
    pub fn next_interval(&self, timer: Timer, current: Duration) -> Duration {
        match timer {
            Timer::A => current.saturating_mul(2),
            Timer::E | Timer::G => current.saturating_mul(2).min(self.t2),
            _ => current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults() {
        let c = TimerConfig::default();
        assert_eq!((c.t1, c.t2, c.t4), (ms(500), ms(4000), ms(5000)));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn durations_unreliable() {
        let c = TimerConfig::default();
        for t in [Timer::A, Timer::E, Timer::G] {
            assert_eq!(c.duration(t, false), ms(500));
        }
        for t in [Timer::B, Timer::F, Timer::H, Timer::J, Timer::L, Timer::M] {
            assert_eq!(c.duration(t, false), ms(32_000), "{t:?}");
        }
        assert_eq!(c.duration(Timer::D, false), ms(32_000));
        assert_eq!(c.duration(Timer::I, false), ms(5000));
        assert_eq!(c.duration(Timer::K, false), ms(5000));
        assert_eq!(c.duration(Timer::Trying, false), ms(200));
    }

    #[test]
    fn durations_reliable() {
        let c = TimerConfig::default();
        for t in [Timer::D, Timer::I, Timer::J, Timer::K] {
            assert_eq!(c.duration(t, true), Duration::ZERO, "{t:?}");
        }
        for t in [Timer::B, Timer::F, Timer::H, Timer::L, Timer::M] {
            assert_eq!(c.duration(t, true), ms(32_000), "{t:?}");
        }
    }

    #[test]
    fn timer_d_follows_a_large_t1() {
        let c = TimerConfig {
            t1: ms(1000),
            ..TimerConfig::default()
        };
        assert_eq!(c.duration(Timer::D, false), ms(64_000));
        let c = TimerConfig {
            t1: ms(100),
            ..TimerConfig::default()
        };
        assert_eq!(c.duration(Timer::D, false), ms(32_000));
        assert_eq!(c.duration(Timer::B, false), ms(6400));
    }

    #[test]
    fn backoff() {
        let c = TimerConfig::default();
        let mut a = c.duration(Timer::A, false);
        let mut seq = vec![];
        for _ in 0..7 {
            seq.push(a.as_millis());
            a = c.next_interval(Timer::A, a);
        }
        assert_eq!(seq, [500, 1000, 2000, 4000, 8000, 16000, 32000]);
        for t in [Timer::E, Timer::G] {
            let mut d = c.duration(t, false);
            let mut seq = vec![];
            for _ in 0..6 {
                seq.push(d.as_millis());
                d = c.next_interval(t, d);
            }
            assert_eq!(seq, [500, 1000, 2000, 4000, 4000, 4000]);
        }
    }

    #[test]
    fn validate_names_the_field() {
        let c = TimerConfig {
            t1: Duration::ZERO,
            ..TimerConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("t1"));
        let c = TimerConfig {
            t2: ms(100),
            ..TimerConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("t2"));
    }

    #[test]
    fn serde_derives() {
        // sipcore has no serde format crate; this checks the bounds the
        // replication code relies on.
        fn is_serde<T: Serialize + for<'a> Deserialize<'a>>() {}
        is_serde::<TimerConfig>();
        is_serde::<Timer>();
    }
}

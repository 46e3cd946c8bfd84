//! Non-INVITE client transaction (RFC 3261 §17.1.2).
//!
//! ```text
//!        Trying ── Timer E: resend, E = min(2E, T2)
//!          │ │ 1xx: to TU
//!          │ └──────▶ Proceeding ── Timer E: resend, E = T2; 1xx: to TU
//!          │              │
//!          │ 200-699: to TU (from either)
//!          ▼              ▼
//!        Completed ── responses absorbed
//!          │ Timer K (0 if reliable)
//!          ▼
//!        Terminated ◀── Timer F (timeout) or transport error, from
//!                       Trying or Proceeding: inform TU
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{start, Action, ClientEvent, StatusClass, Timer, TimerConfig};

/// States of the non-INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The non-INVITE client transaction as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    reliable: bool,
    config: TimerConfig,
    /// The interval Timer E was last started with.
    timer_e: Duration,
}

impl ClientNonInvite {
    /// Creates the transaction for a request the TU sends, in state Trying.
    /// The actions send the request and start Timer F (and Timer E on an
    /// unreliable transport).
    pub fn new(config: TimerConfig, reliable: bool) -> (Self, Vec<Action>) {
        let timer_e = config.duration(Timer::E, reliable);
        let tx = ClientNonInvite {
            state: ClientNonInviteState::Trying,
            reliable,
            config,
            timer_e,
        };
        let mut actions = vec![Action::SendRequest];
        if !reliable {
            actions.push(start(Timer::E, timer_e));
        }
        actions.push(start(Timer::F, config.duration(Timer::F, reliable)));
        (tx, actions)
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// Feeds one event; returns what the driver must do, in order.
    pub fn handle(&mut self, event: ClientEvent) -> Vec<Action> {
        use ClientNonInviteState as S;
        match (self.state, event) {
            (S::Terminated, _) => vec![],

            (S::Trying | S::Proceeding, ClientEvent::TimerFired(Timer::E)) => {
                self.timer_e = if self.state == S::Trying {
                    self.config.next_interval(Timer::E, self.timer_e)
                } else {
                    self.config.t2
                };
                vec![Action::SendRequest, start(Timer::E, self.timer_e)]
            }
            (S::Trying | S::Proceeding, ClientEvent::TimerFired(Timer::F)) => {
                self.state = S::Terminated;
                vec![Action::Timeout(Timer::F), Action::Terminated]
            }
            (S::Trying | S::Proceeding, ClientEvent::TransportError) => {
                self.state = S::Terminated;
                vec![Action::TransportError, Action::Terminated]
            }
            (S::Trying | S::Proceeding, ClientEvent::Response(code)) => {
                match StatusClass::of(code) {
                    StatusClass::Provisional => {
                        self.state = S::Proceeding;
                        vec![Action::PassToTu]
                    }
                    StatusClass::Success | StatusClass::Failure => {
                        let mut actions = Vec::with_capacity(4);
                        if !self.reliable {
                            actions.push(Action::CancelTimer(Timer::E));
                        }
                        actions.push(Action::CancelTimer(Timer::F));
                        actions.push(Action::PassToTu);
                        let k = self.config.duration(Timer::K, self.reliable);
                        if k.is_zero() {
                            self.state = S::Terminated;
                            actions.push(Action::Terminated);
                        } else {
                            self.state = S::Completed;
                            actions.push(start(Timer::K, k));
                        }
                        actions
                    }
                    StatusClass::Invalid => vec![],
                }
            }

            (S::Completed, ClientEvent::TimerFired(Timer::K)) => {
                self.state = S::Terminated;
                vec![Action::Terminated]
            }

            // Response retransmissions in Completed are absorbed; stale
            // timers are ignored.
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{ms, Sim};
    use super::*;

    fn tx(reliable: bool) -> Sim<ClientNonInvite> {
        Sim::new(ClientNonInvite::new(TimerConfig::default(), reliable))
    }

    #[test]
    fn timer_e_capped_at_t2_until_timer_f() {
        let mut s = tx(false);
        s.run_until(ms(40_000));
        assert_eq!(
            s.times_of(Action::SendRequest),
            [0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert_eq!(s.times_of(Action::Timeout(Timer::F)), [32_000]);
        assert_eq!(s.times_of(Action::Terminated), [32_000]);
        assert!(s.pending().is_empty());
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let mut s = tx(false);
        // E fired at 500 (next 1000 → due 1500).
        assert_eq!(
            s.event_at(ms(600), ClientEvent::Response(100)),
            [Action::PassToTu]
        );
        assert_eq!(s.tx.state(), ClientNonInviteState::Proceeding);
        s.run_until(ms(40_000));
        // 1500 was scheduled before the 1xx; from then on E = T2.
        assert_eq!(
            s.times_of(Action::SendRequest),
            [0, 500, 1500, 5500, 9500, 13_500, 17_500, 21_500, 25_500, 29_500]
        );
        assert_eq!(s.times_of(Action::Timeout(Timer::F)), [32_000]);
    }

    #[test]
    fn final_response_then_timer_k() {
        let mut s = tx(false);
        s.event_at(ms(100), ClientEvent::Response(100));
        let a = s.event_at(ms(800), ClientEvent::Response(200));
        assert_eq!(
            a,
            [
                Action::CancelTimer(Timer::E),
                Action::CancelTimer(Timer::F),
                Action::PassToTu,
                Action::StartTimer {
                    timer: Timer::K,
                    after: ms(5000)
                }
            ]
        );
        assert_eq!(s.tx.state(), ClientNonInviteState::Completed);
        // Retransmitted final response and late provisionals are absorbed.
        assert!(s.event_at(ms(1000), ClientEvent::Response(200)).is_empty());
        assert!(s.event(ClientEvent::Response(180)).is_empty());
        s.run_until(ms(60_000));
        assert_eq!(s.times_of(Action::SendRequest), [0, 500]);
        assert_eq!(s.times_of(Action::Terminated), [5800]);
        assert_eq!(s.times_of(Action::PassToTu), [100, 800]);
        // After termination.
        assert!(s.event(ClientEvent::Response(200)).is_empty());
    }

    #[test]
    fn failure_from_trying() {
        let mut s = tx(false);
        let a = s.event(ClientEvent::Response(403));
        assert_eq!(a[2], Action::PassToTu);
        assert_eq!(s.pending(), [Timer::K]);
    }

    #[test]
    fn reliable_never_retransmits_and_skips_completed() {
        let mut s = tx(true);
        assert_eq!(s.pending(), [Timer::F]);
        s.run_until(ms(10_000));
        assert_eq!(s.times_of(Action::SendRequest), [0]);
        let a = s.event(ClientEvent::Response(200));
        assert_eq!(
            a,
            [
                Action::CancelTimer(Timer::F),
                Action::PassToTu,
                Action::Terminated
            ]
        );
        assert!(s.tx.is_terminated());
    }

    #[test]
    fn reliable_timeout() {
        let mut s = tx(true);
        s.run_until(ms(40_000));
        assert_eq!(s.times_of(Action::SendRequest), [0]);
        assert_eq!(s.times_of(Action::Timeout(Timer::F)), [32_000]);
    }

    #[test]
    fn transport_error_in_trying_and_proceeding() {
        let mut s = tx(false);
        assert_eq!(
            s.event(ClientEvent::TransportError),
            [Action::TransportError, Action::Terminated]
        );
        let mut s = tx(false);
        s.event(ClientEvent::Response(100));
        assert_eq!(
            s.event(ClientEvent::TransportError),
            [Action::TransportError, Action::Terminated]
        );
    }

    #[test]
    fn ignores_stale_timers() {
        let mut s = tx(false);
        s.event(ClientEvent::Response(200));
        assert!(s.event(ClientEvent::TimerFired(Timer::E)).is_empty());
        assert!(s.event(ClientEvent::TimerFired(Timer::F)).is_empty());
        assert!(s.event(ClientEvent::TransportError).is_empty());
        assert_eq!(s.tx.state(), ClientNonInviteState::Completed);
    }
}

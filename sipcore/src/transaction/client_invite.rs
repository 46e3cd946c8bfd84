//! INVITE client transaction (RFC 3261 §17.1.1, as changed by RFC 6026 §7.2
//! and §8.4).
//!
//! ```text
//!                       Calling ──Timer A: resend, A*=2
//!          1xx: to TU │   │   │ Timer B / transport error: inform TU
//!                     ▼   │   └────────────────────────────────┐
//!   1xx: to TU ── Proceeding                                   │
//!                     │   │ 2xx (from Calling or Proceeding):   │
//!   300-699: ACK,     │   └─ to TU ──▶ Accepted ── 2xx: to TU   │
//!   to TU             ▼                   │ Timer M             │
//!   (also from     Completed ── 300-699: ACK                    │
//!    Calling)         │ Timer D (0 if reliable)  │              │
//!                     ▼                          ▼              ▼
//!                               Terminated
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{start, Action, ClientEvent, StatusClass, Timer, TimerConfig};

/// States of the INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    /// RFC 6026: a 2xx was received; further 2xx go to the TU until Timer M.
    Accepted,
    Completed,
    Terminated,
}

/// The INVITE client transaction as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInvite {
    state: ClientInviteState,
    reliable: bool,
    config: TimerConfig,
    /// The interval Timer A was last started with.
    timer_a: Duration,
}

impl ClientInvite {
    /// Creates the transaction for a request the TU sends, in state
    /// Calling. The actions send the request and start Timer B (and Timer A
    /// on an unreliable transport).
    pub fn new(config: TimerConfig, reliable: bool) -> (Self, Vec<Action>) {
        let timer_a = config.duration(Timer::A, reliable);
        let tx = ClientInvite {
            state: ClientInviteState::Calling,
            reliable,
            config,
            timer_a,
        };
        let mut actions = vec![Action::SendRequest];
        if !reliable {
            actions.push(start(Timer::A, timer_a));
        }
        actions.push(start(Timer::B, config.duration(Timer::B, reliable)));
        (tx, actions)
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// Feeds one event; returns what the driver must do, in order.
    pub fn handle(&mut self, event: ClientEvent) -> Vec<Action> {
        use ClientInviteState as S;
        match (self.state, event) {
            (S::Terminated, _) => vec![],

            (S::Calling, ClientEvent::TimerFired(Timer::A)) => {
                self.timer_a = self.config.next_interval(Timer::A, self.timer_a);
                vec![Action::SendRequest, start(Timer::A, self.timer_a)]
            }
            (S::Calling, ClientEvent::TimerFired(Timer::B)) => {
                self.state = S::Terminated;
                vec![Action::Timeout(Timer::B), Action::Terminated]
            }

            (S::Calling | S::Proceeding, ClientEvent::Response(code)) => {
                match StatusClass::of(code) {
                    StatusClass::Provisional => {
                        let mut actions = Vec::with_capacity(3);
                        if self.state == S::Calling {
                            // No retransmissions in Proceeding, and Timer B
                            // only applies to Calling (the TU runs Timer C).
                            actions.extend(self.cancel_calling_timers());
                            self.state = S::Proceeding;
                        }
                        actions.push(Action::PassToTu);
                        actions
                    }
                    StatusClass::Success => {
                        let mut actions = self.cancel_calling_timers();
                        actions.push(Action::PassToTu);
                        actions.push(start(
                            Timer::M,
                            self.config.duration(Timer::M, self.reliable),
                        ));
                        self.state = S::Accepted;
                        actions
                    }
                    StatusClass::Failure => {
                        let mut actions = self.cancel_calling_timers();
                        actions.push(Action::SendAck);
                        actions.push(Action::PassToTu);
                        actions.extend(self.enter_completed());
                        actions
                    }
                    StatusClass::Invalid => vec![],
                }
            }

            // RFC 6026 §8.4: 2xx retransmissions (and 2xx of other forks)
            // go to the TU, which ACKs them; the transaction sends no ACK.
            (S::Accepted, ClientEvent::Response(code)) => match StatusClass::of(code) {
                StatusClass::Success => vec![Action::PassToTu],
                _ => vec![],
            },
            (S::Accepted, ClientEvent::TimerFired(Timer::M)) => self.terminate(),

            // Retransmissions of the final response: ACK again, absorb.
            (S::Completed, ClientEvent::Response(code)) => match StatusClass::of(code) {
                StatusClass::Failure => vec![Action::SendAck],
                _ => vec![],
            },
            (S::Completed, ClientEvent::TimerFired(Timer::D)) => self.terminate(),

            (S::Calling | S::Completed, ClientEvent::TransportError) => {
                self.state = S::Terminated;
                vec![Action::TransportError, Action::Terminated]
            }

            // Stale timers, transport errors where nothing is sent.
            _ => vec![],
        }
    }

    fn cancel_calling_timers(&self) -> Vec<Action> {
        if self.state != ClientInviteState::Calling {
            return vec![];
        }
        let mut actions = Vec::with_capacity(2);
        if !self.reliable {
            actions.push(Action::CancelTimer(Timer::A));
        }
        actions.push(Action::CancelTimer(Timer::B));
        actions
    }

    fn enter_completed(&mut self) -> Vec<Action> {
        let d = self.config.duration(Timer::D, self.reliable);
        if d.is_zero() {
            self.terminate()
        } else {
            self.state = ClientInviteState::Completed;
            vec![start(Timer::D, d)]
        }
    }

    fn terminate(&mut self) -> Vec<Action> {
        self.state = ClientInviteState::Terminated;
        vec![Action::Terminated]
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{ms, Sim};
    use super::*;

    fn tx(reliable: bool) -> Sim<ClientInvite> {
        Sim::new(ClientInvite::new(TimerConfig::default(), reliable))
    }

    #[test]
    fn timer_a_doubles_until_timer_b() {
        let mut s = tx(false);
        s.run_until(ms(40_000));
        assert_eq!(
            s.times_of(Action::SendRequest),
            [0, 500, 1500, 3500, 7500, 15_500, 31_500]
        );
        assert_eq!(s.times_of(Action::Timeout(Timer::B)), [32_000]);
        assert_eq!(s.times_of(Action::Terminated), [32_000]);
        assert!(s.tx.is_terminated());
        assert!(s.pending().is_empty());
    }

    #[test]
    fn reliable_sends_once_and_times_out() {
        let mut s = tx(true);
        assert!(!s.pending().contains(&Timer::A));
        s.run_until(ms(40_000));
        assert_eq!(s.times_of(Action::SendRequest), [0]);
        assert_eq!(s.times_of(Action::Timeout(Timer::B)), [32_000]);
    }

    #[test]
    fn provisional_stops_retransmissions_and_timer_b() {
        let mut s = tx(false);
        s.run_until(ms(600));
        let a = s.event_at(ms(700), ClientEvent::Response(180));
        assert_eq!(
            a,
            [
                Action::CancelTimer(Timer::A),
                Action::CancelTimer(Timer::B),
                Action::PassToTu
            ]
        );
        assert_eq!(s.tx.state(), ClientInviteState::Proceeding);
        assert_eq!(s.event(ClientEvent::Response(183)), [Action::PassToTu]);
        s.run_until(ms(300_000));
        assert_eq!(s.times_of(Action::SendRequest), [0, 500]);
        assert_eq!(s.tx.state(), ClientInviteState::Proceeding);
        assert!(s.pending().is_empty());
    }

    #[test]
    fn failure_is_acked_and_retransmissions_reacked() {
        let mut s = tx(false);
        s.event_at(ms(100), ClientEvent::Response(100));
        let a = s.event_at(ms(200), ClientEvent::Response(486));
        assert_eq!(
            a,
            [
                Action::SendAck,
                Action::PassToTu,
                Action::StartTimer {
                    timer: Timer::D,
                    after: ms(32_000)
                }
            ]
        );
        assert_eq!(s.tx.state(), ClientInviteState::Completed);
        // Retransmission of the 486: ACK again, not to the TU.
        assert_eq!(
            s.event_at(ms(1000), ClientEvent::Response(486)),
            [Action::SendAck]
        );
        // Stray provisional and 2xx: absorbed.
        assert_eq!(s.event(ClientEvent::Response(180)), []);
        assert_eq!(s.event(ClientEvent::Response(200)), []);
        s.run_until(ms(60_000));
        assert_eq!(s.times_of(Action::Terminated), [32_200]);
        // Late response after termination: nothing.
        assert_eq!(s.event(ClientEvent::Response(486)), []);
    }

    #[test]
    fn failure_in_calling_cancels_a_and_b() {
        let mut s = tx(false);
        let a = s.event_at(ms(10), ClientEvent::Response(503));
        assert_eq!(
            &a[..4],
            [
                Action::CancelTimer(Timer::A),
                Action::CancelTimer(Timer::B),
                Action::SendAck,
                Action::PassToTu
            ]
        );
        assert_eq!(s.pending(), [Timer::D]);
        s.run_until(ms(60_000));
        assert_eq!(s.times_of(Action::SendRequest), [0]);
        assert_eq!(s.times_of(Action::Timeout(Timer::B)), Vec::<u64>::new());
    }

    #[test]
    fn failure_on_reliable_terminates_at_once() {
        let mut s = tx(true);
        let a = s.event(ClientEvent::Response(404));
        assert_eq!(
            a,
            [
                Action::CancelTimer(Timer::B),
                Action::SendAck,
                Action::PassToTu,
                Action::Terminated
            ]
        );
        assert!(s.tx.is_terminated());
    }

    #[test]
    fn accepted_passes_2xx_retransmissions_to_tu() {
        let mut s = tx(false);
        s.event_at(ms(100), ClientEvent::Response(180));
        let a = s.event_at(ms(1000), ClientEvent::Response(200));
        assert_eq!(
            a,
            [
                Action::PassToTu,
                Action::StartTimer {
                    timer: Timer::M,
                    after: ms(32_000)
                }
            ]
        );
        assert_eq!(s.tx.state(), ClientInviteState::Accepted);
        // Retransmitted 2xx (or a 2xx of another fork): to the TU, no ACK.
        assert_eq!(
            s.event_at(ms(1500), ClientEvent::Response(200)),
            [Action::PassToTu]
        );
        assert_eq!(
            s.event_at(ms(2500), ClientEvent::Response(202)),
            [Action::PassToTu]
        );
        // Late non-2xx or provisionals: absorbed.
        assert_eq!(s.event(ClientEvent::Response(180)), []);
        assert_eq!(s.event(ClientEvent::Response(500)), []);
        s.run_until(ms(60_000));
        assert_eq!(s.times_of(Action::Terminated), [33_000]);
        assert_eq!(s.times_of(Action::SendAck), Vec::<u64>::new());
        assert_eq!(s.event(ClientEvent::Response(200)), []);
    }

    #[test]
    fn success_in_calling_stops_retransmission() {
        let mut s = tx(false);
        let a = s.event_at(ms(700), ClientEvent::Response(200));
        assert_eq!(
            a[..3],
            [
                Action::CancelTimer(Timer::A),
                Action::CancelTimer(Timer::B),
                Action::PassToTu
            ]
        );
        assert_eq!(s.pending(), [Timer::M]);
        s.run_until(ms(100_000));
        assert_eq!(s.times_of(Action::SendRequest), [0, 500]);
        assert_eq!(s.times_of(Action::Terminated), [32_700]);
    }

    #[test]
    fn reliable_accepted_still_waits_timer_m() {
        let mut s = tx(true);
        s.event(ClientEvent::Response(200));
        assert_eq!(s.pending(), [Timer::M]);
        assert_eq!(s.tx.state(), ClientInviteState::Accepted);
    }

    #[test]
    fn transport_error() {
        let mut s = tx(false);
        assert_eq!(
            s.event(ClientEvent::TransportError),
            [Action::TransportError, Action::Terminated]
        );
        let mut s = tx(false);
        s.event(ClientEvent::Response(480));
        assert_eq!(
            s.event(ClientEvent::TransportError),
            [Action::TransportError, Action::Terminated]
        );
    }

    #[test]
    fn stale_timers_and_bad_codes_are_ignored() {
        let mut s = tx(false);
        s.event(ClientEvent::Response(180));
        assert_eq!(s.event(ClientEvent::TimerFired(Timer::A)), []);
        assert_eq!(s.event(ClientEvent::TimerFired(Timer::B)), []);
        assert_eq!(s.event(ClientEvent::TimerFired(Timer::D)), []);
        assert_eq!(s.event(ClientEvent::Response(99)), []);
        assert_eq!(s.event(ClientEvent::Response(700)), []);
        assert_eq!(s.tx.state(), ClientInviteState::Proceeding);
    }

    #[test]
    fn snapshot_resumes_where_it_was() {
        let mut s = tx(false);
        s.run_until(ms(2000));
        let copy = s.tx.clone();
        assert_eq!(copy, s.tx);
        // The copy continues the doubling from the same interval.
        let mut c = copy;
        assert_eq!(
            c.handle(ClientEvent::TimerFired(Timer::A)),
            [
                Action::SendRequest,
                Action::StartTimer {
                    timer: Timer::A,
                    after: ms(4000)
                }
            ]
        );
    }
}

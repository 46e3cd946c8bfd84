//! INVITE server transaction (RFC 3261 §17.2.1, as changed by RFC 6026 §7.1
//! and §8.5–8.7).
//!
//! ```text
//!   INVITE: to TU, start the 200 ms Trying timer
//!        │
//!        ▼
//!    Proceeding ── INVITE: resend last provisional; 1xx from TU: send;
//!        │ │         Trying timer, TU silent: send 100 Trying
//!        │ └── 2xx from TU: send ──▶ Accepted ── INVITE: absorb;
//!        │                              │        2xx from TU: send;
//!        │ 300-699 from TU: send        │        ACK: to TU
//!        ▼                              │ Timer L
//!    Completed ── INVITE: resend; Timer G: resend, G = min(2G, T2)
//!        │ │ ACK                         │
//!        │ └──▶ Confirmed ── ACK, INVITE: absorb
//!        │         │ Timer I (0 if reliable)
//!        ▼         ▼                     ▼
//!    Terminated ◀── Timer H (no ACK) or transport error: inform TU
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{start, Action, ServerEvent, StatusClass, Timer, TimerConfig};

/// States of the INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    /// RFC 6026: the TU sent a 2xx; INVITE retransmissions are absorbed and
    /// ACKs go to the TU until Timer L.
    Accepted,
    Terminated,
}

/// The INVITE server transaction as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliable: bool,
    config: TimerConfig,
    /// The interval Timer G was last started with.
    timer_g: Duration,
    /// Whether a response (the TU's or our 100 Trying) has been sent, so
    /// that there is one to resend.
    responded: bool,
}

impl ServerInvite {
    /// Creates the transaction for a received INVITE, in state Proceeding.
    /// The actions pass the INVITE to the TU and start the 200 ms timer
    /// after which a `100 Trying` is sent if the TU has not sent a response
    /// by then. A TU that wants the 100 at once (a proxy, §16.2) sends it
    /// itself.
    pub fn new(config: TimerConfig, reliable: bool) -> (Self, Vec<Action>) {
        let tx = ServerInvite {
            state: ServerInviteState::Proceeding,
            reliable,
            config,
            timer_g: config.duration(Timer::G, reliable),
            responded: false,
        };
        let actions = vec![
            Action::PassToTu,
            start(Timer::Trying, config.duration(Timer::Trying, reliable)),
        ];
        (tx, actions)
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// Feeds one event; returns what the driver must do, in order.
    pub fn handle(&mut self, event: ServerEvent) -> Vec<Action> {
        use ServerInviteState as S;
        match (self.state, event) {
            (S::Terminated, _) => vec![],

            (S::Proceeding, ServerEvent::TimerFired(Timer::Trying)) => {
                if self.responded {
                    vec![]
                } else {
                    self.responded = true;
                    vec![Action::SendTrying]
                }
            }
            (S::Proceeding, ServerEvent::Retransmission) => self.resend(),
            (S::Proceeding, ServerEvent::TuResponse(code)) => {
                let class = StatusClass::of(code);
                if class == StatusClass::Invalid {
                    return vec![];
                }
                let mut actions = Vec::with_capacity(4);
                if !self.responded {
                    actions.push(Action::CancelTimer(Timer::Trying));
                    self.responded = true;
                }
                actions.push(Action::SendResponse);
                match class {
                    StatusClass::Success => {
                        self.state = S::Accepted;
                        actions.push(start(
                            Timer::L,
                            self.config.duration(Timer::L, self.reliable),
                        ));
                    }
                    StatusClass::Failure => {
                        self.state = S::Completed;
                        if !self.reliable {
                            actions.push(start(Timer::G, self.timer_g));
                        }
                        actions.push(start(
                            Timer::H,
                            self.config.duration(Timer::H, self.reliable),
                        ));
                    }
                    _ => {}
                }
                actions
            }
            (S::Proceeding | S::Completed, ServerEvent::TransportError) => {
                self.state = S::Terminated;
                vec![Action::TransportError, Action::Terminated]
            }

            (S::Completed, ServerEvent::Retransmission) => self.resend(),
            (S::Completed, ServerEvent::TimerFired(Timer::G)) => {
                self.timer_g = self.config.next_interval(Timer::G, self.timer_g);
                vec![Action::ResendResponse, start(Timer::G, self.timer_g)]
            }
            (S::Completed, ServerEvent::TimerFired(Timer::H)) => {
                self.state = S::Terminated;
                vec![Action::Timeout(Timer::H), Action::Terminated]
            }
            (S::Completed, ServerEvent::Ack) => {
                let mut actions = Vec::with_capacity(3);
                if !self.reliable {
                    actions.push(Action::CancelTimer(Timer::G));
                }
                actions.push(Action::CancelTimer(Timer::H));
                let i = self.config.duration(Timer::I, self.reliable);
                if i.is_zero() {
                    self.state = S::Terminated;
                    actions.push(Action::Terminated);
                } else {
                    self.state = S::Confirmed;
                    actions.push(start(Timer::I, i));
                }
                actions
            }

            (S::Confirmed, ServerEvent::TimerFired(Timer::I)) => {
                self.state = S::Terminated;
                vec![Action::Terminated]
            }

            // RFC 6026 §8.7: the TU retransmits its 2xx through the
            // transaction; INVITE retransmissions are absorbed, ACKs (for
            // the 2xx) go to the TU.
            (S::Accepted, ServerEvent::TuResponse(code)) => {
                if StatusClass::of(code) == StatusClass::Success {
                    vec![Action::SendResponse]
                } else {
                    vec![]
                }
            }
            (S::Accepted, ServerEvent::Ack) => vec![Action::PassToTu],
            (S::Accepted, ServerEvent::TransportError) => vec![Action::TransportError],
            (S::Accepted, ServerEvent::TimerFired(Timer::L)) => {
                self.state = S::Terminated;
                vec![Action::Terminated]
            }

            // Confirmed absorbs ACKs and INVITEs; Accepted absorbs INVITEs;
            // responses from the TU after a final one and stale timers are
            // ignored.
            _ => vec![],
        }
    }

    fn resend(&self) -> Vec<Action> {
        if self.responded {
            vec![Action::ResendResponse]
        } else {
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{ms, Sim};
    use super::*;

    fn tx(reliable: bool) -> Sim<ServerInvite> {
        Sim::new(ServerInvite::new(TimerConfig::default(), reliable))
    }

    #[test]
    fn creation_passes_invite_up() {
        let s = tx(false);
        assert_eq!(s.log[0].1, Action::PassToTu);
        assert_eq!(s.pending(), [Timer::Trying]);
        assert_eq!(s.tx.state(), ServerInviteState::Proceeding);
    }

    #[test]
    fn trying_after_200ms_when_tu_is_silent() {
        let mut s = tx(false);
        // INVITE retransmitted before any response: nothing to resend.
        assert!(s.event_at(ms(100), ServerEvent::Retransmission).is_empty());
        s.run_until(ms(1000));
        assert_eq!(s.times_of(Action::SendTrying), [200]);
        // Now the 100 is resent for retransmissions.
        assert_eq!(
            s.event_at(ms(1000), ServerEvent::Retransmission),
            [Action::ResendResponse]
        );
        // A later TU provisional does not cancel an absent timer.
        assert_eq!(
            s.event(ServerEvent::TuResponse(180)),
            [Action::SendResponse]
        );
    }

    #[test]
    fn no_trying_when_tu_answers_in_time() {
        let mut s = tx(false);
        let a = s.event_at(ms(50), ServerEvent::TuResponse(180));
        assert_eq!(
            a,
            [Action::CancelTimer(Timer::Trying), Action::SendResponse]
        );
        s.run_until(ms(1000));
        assert!(s.times_of(Action::SendTrying).is_empty());
        assert_eq!(
            s.event(ServerEvent::Retransmission),
            [Action::ResendResponse]
        );
    }

    #[test]
    fn timer_g_capped_at_t2_until_timer_h() {
        let mut s = tx(false);
        let a = s.event_at(ms(100), ServerEvent::TuResponse(486));
        assert_eq!(
            a,
            [
                Action::CancelTimer(Timer::Trying),
                Action::SendResponse,
                Action::StartTimer {
                    timer: Timer::G,
                    after: ms(500)
                },
                Action::StartTimer {
                    timer: Timer::H,
                    after: ms(32_000)
                }
            ]
        );
        assert_eq!(s.tx.state(), ServerInviteState::Completed);
        s.run_until(ms(40_000));
        assert_eq!(
            s.times_of(Action::ResendResponse),
            [600, 1600, 3600, 7600, 11_600, 15_600, 19_600, 23_600, 27_600, 31_600]
        );
        assert_eq!(s.times_of(Action::Timeout(Timer::H)), [32_100]);
        assert_eq!(s.times_of(Action::Terminated), [32_100]);
        assert!(s.event(ServerEvent::Ack).is_empty());
    }

    #[test]
    fn ack_moves_completed_to_confirmed() {
        let mut s = tx(false);
        s.event_at(ms(0), ServerEvent::TuResponse(603));
        // A retransmitted INVITE in Completed gets the final response again.
        assert_eq!(
            s.event_at(ms(300), ServerEvent::Retransmission),
            [Action::ResendResponse]
        );
        let a = s.event_at(ms(700), ServerEvent::Ack);
        assert_eq!(
            a,
            [
                Action::CancelTimer(Timer::G),
                Action::CancelTimer(Timer::H),
                Action::StartTimer {
                    timer: Timer::I,
                    after: ms(5000)
                }
            ]
        );
        assert_eq!(s.tx.state(), ServerInviteState::Confirmed);
        // ACK and INVITE retransmissions are absorbed.
        assert!(s.event_at(ms(800), ServerEvent::Ack).is_empty());
        assert!(s.event(ServerEvent::Retransmission).is_empty());
        s.run_until(ms(60_000));
        assert_eq!(s.times_of(Action::ResendResponse), [300, 500]);
        assert_eq!(s.times_of(Action::Terminated), [5700]);
        assert!(s.times_of(Action::PassToTu) == [0]);
    }

    #[test]
    fn reliable_failure_no_g_and_ack_terminates() {
        let mut s = tx(true);
        let a = s.event(ServerEvent::TuResponse(404));
        assert_eq!(
            a,
            [
                Action::CancelTimer(Timer::Trying),
                Action::SendResponse,
                Action::StartTimer {
                    timer: Timer::H,
                    after: ms(32_000)
                }
            ]
        );
        assert_eq!(
            s.event_at(ms(100), ServerEvent::Ack),
            [Action::CancelTimer(Timer::H), Action::Terminated]
        );
    }

    #[test]
    fn reliable_timer_h() {
        let mut s = tx(true);
        s.event(ServerEvent::TuResponse(500));
        s.run_until(ms(40_000));
        assert!(s.times_of(Action::ResendResponse).is_empty());
        assert_eq!(s.times_of(Action::Timeout(Timer::H)), [32_000]);
    }

    #[test]
    fn accepted_absorbs_invite_and_passes_ack() {
        let mut s = tx(false);
        s.event_at(ms(10), ServerEvent::TuResponse(180));
        let a = s.event_at(ms(500), ServerEvent::TuResponse(200));
        assert_eq!(
            a,
            [
                Action::SendResponse,
                Action::StartTimer {
                    timer: Timer::L,
                    after: ms(32_000)
                }
            ]
        );
        assert_eq!(s.tx.state(), ServerInviteState::Accepted);
        // The transaction itself never retransmits the 2xx.
        s.run_until(ms(5000));
        assert!(s.times_of(Action::ResendResponse).is_empty());
        // INVITE retransmission: absorbed, not to the TU, nothing resent.
        assert!(s.event(ServerEvent::Retransmission).is_empty());
        // The TU's 2xx retransmissions go out.
        assert_eq!(
            s.event(ServerEvent::TuResponse(200)),
            [Action::SendResponse]
        );
        // A non-2xx after the 2xx is refused.
        assert!(s.event(ServerEvent::TuResponse(500)).is_empty());
        // ACKs for the 2xx go to the TU.
        assert_eq!(s.event_at(ms(6000), ServerEvent::Ack), [Action::PassToTu]);
        assert_eq!(s.event(ServerEvent::Ack), [Action::PassToTu]);
        assert_eq!(s.tx.state(), ServerInviteState::Accepted);
        s.run_until(ms(60_000));
        assert_eq!(s.times_of(Action::Terminated), [32_500]);
        assert!(s.event(ServerEvent::Retransmission).is_empty());
        assert!(s.event(ServerEvent::Ack).is_empty());
    }

    #[test]
    fn accepted_on_reliable_still_waits_timer_l() {
        let mut s = tx(true);
        s.event(ServerEvent::TuResponse(200));
        assert_eq!(s.pending(), [Timer::L]);
    }

    #[test]
    fn accepted_transport_error_is_reported_and_absorbing_goes_on() {
        let mut s = tx(false);
        s.event(ServerEvent::TuResponse(200));
        assert_eq!(
            s.event(ServerEvent::TransportError),
            [Action::TransportError]
        );
        assert_eq!(s.tx.state(), ServerInviteState::Accepted);
    }

    #[test]
    fn transport_error_in_proceeding_and_completed() {
        let mut s = tx(false);
        assert_eq!(
            s.event(ServerEvent::TransportError),
            [Action::TransportError, Action::Terminated]
        );
        let mut s = tx(false);
        s.event(ServerEvent::TuResponse(480));
        assert_eq!(
            s.event(ServerEvent::TransportError),
            [Action::TransportError, Action::Terminated]
        );
    }

    #[test]
    fn ignores_out_of_place_events() {
        let mut s = tx(false);
        // ACK in Proceeding (cannot match before a final response).
        assert!(s.event(ServerEvent::Ack).is_empty());
        assert!(s.event(ServerEvent::TuResponse(99)).is_empty());
        assert!(s.event(ServerEvent::TimerFired(Timer::G)).is_empty());
        s.event(ServerEvent::TuResponse(486));
        // A second final response from the TU is dropped.
        assert!(s.event(ServerEvent::TuResponse(200)).is_empty());
        assert!(s.event(ServerEvent::TimerFired(Timer::Trying)).is_empty());
        assert_eq!(s.tx.state(), ServerInviteState::Completed);
    }
}

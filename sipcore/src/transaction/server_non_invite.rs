//! Non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! ```text
//!   request: to TU
//!        │
//!        ▼
//!     Trying ── request retransmission: absorb
//!        │ │ 1xx from TU: send
//!        │ └──▶ Proceeding ── 1xx from TU: send; request: resend last
//!        │          │
//!        │ 200-699 from TU: send (from either)
//!        ▼          ▼
//!     Completed ── request: resend final; TU responses: dropped
//!        │ Timer J (0 if reliable)
//!        ▼
//!     Terminated ◀── transport error (Proceeding, Completed): inform TU
//! ```

use serde::{Deserialize, Serialize};

use super::{start, Action, ServerEvent, StatusClass, Timer, TimerConfig};

/// States of the non-INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The non-INVITE server transaction as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliable: bool,
    config: TimerConfig,
}

impl ServerNonInvite {
    /// Creates the transaction for a received request, in state Trying. The
    /// action passes the request to the TU.
    pub fn new(config: TimerConfig, reliable: bool) -> (Self, Vec<Action>) {
        let tx = ServerNonInvite {
            state: ServerNonInviteState::Trying,
            reliable,
            config,
        };
        (tx, vec![Action::PassToTu])
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// Feeds one event; returns what the driver must do, in order.
    pub fn handle(&mut self, event: ServerEvent) -> Vec<Action> {
        use ServerNonInviteState as S;
        match (self.state, event) {
            (S::Terminated, _) => vec![],

            (S::Trying | S::Proceeding, ServerEvent::TuResponse(code)) => {
                match StatusClass::of(code) {
                    StatusClass::Provisional => {
                        self.state = S::Proceeding;
                        vec![Action::SendResponse]
                    }
                    StatusClass::Success | StatusClass::Failure => {
                        let j = self.config.duration(Timer::J, self.reliable);
                        if j.is_zero() {
                            self.state = S::Terminated;
                            vec![Action::SendResponse, Action::Terminated]
                        } else {
                            self.state = S::Completed;
                            vec![Action::SendResponse, start(Timer::J, j)]
                        }
                    }
                    StatusClass::Invalid => vec![],
                }
            }
            (S::Proceeding | S::Completed, ServerEvent::Retransmission) => {
                vec![Action::ResendResponse]
            }
            (S::Proceeding | S::Completed, ServerEvent::TransportError) => {
                self.state = S::Terminated;
                vec![Action::TransportError, Action::Terminated]
            }
            (S::Completed, ServerEvent::TimerFired(Timer::J)) => {
                self.state = S::Terminated;
                vec![Action::Terminated]
            }

            // Trying absorbs retransmissions (no response to resend yet);
            // TU responses after the final one, ACKs (never match a
            // non-INVITE) and stale timers are ignored.
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{ms, Sim};
    use super::*;

    fn tx(reliable: bool) -> Sim<ServerNonInvite> {
        Sim::new(ServerNonInvite::new(TimerConfig::default(), reliable))
    }

    #[test]
    fn trying_absorbs_retransmissions() {
        let mut s = tx(false);
        assert_eq!(s.log, [(ms(0), Action::PassToTu)]);
        assert!(s.pending().is_empty());
        assert!(s.event_at(ms(500), ServerEvent::Retransmission).is_empty());
        assert_eq!(s.tx.state(), ServerNonInviteState::Trying);
    }

    #[test]
    fn proceeding_resends_provisional() {
        let mut s = tx(false);
        assert_eq!(
            s.event(ServerEvent::TuResponse(100)),
            [Action::SendResponse]
        );
        assert_eq!(s.tx.state(), ServerNonInviteState::Proceeding);
        assert_eq!(
            s.event(ServerEvent::Retransmission),
            [Action::ResendResponse]
        );
        assert_eq!(
            s.event(ServerEvent::TuResponse(183)),
            [Action::SendResponse]
        );
    }

    #[test]
    fn completed_resends_final_until_timer_j() {
        let mut s = tx(false);
        s.event_at(ms(10), ServerEvent::TuResponse(100));
        let a = s.event_at(ms(20), ServerEvent::TuResponse(200));
        assert_eq!(
            a,
            [
                Action::SendResponse,
                Action::StartTimer {
                    timer: Timer::J,
                    after: ms(32_000)
                }
            ]
        );
        assert_eq!(s.tx.state(), ServerNonInviteState::Completed);
        assert_eq!(
            s.event_at(ms(1000), ServerEvent::Retransmission),
            [Action::ResendResponse]
        );
        // Responses from the TU after the final one are dropped.
        assert!(s.event(ServerEvent::TuResponse(500)).is_empty());
        s.run_until(ms(40_000));
        assert_eq!(s.times_of(Action::Terminated), [32_020]);
        // Late retransmission after termination: nothing here (the layer
        // then sees a new request).
        assert!(s.event(ServerEvent::Retransmission).is_empty());
    }

    #[test]
    fn final_from_trying() {
        let mut s = tx(false);
        let a = s.event(ServerEvent::TuResponse(404));
        assert_eq!(a[0], Action::SendResponse);
        assert_eq!(s.pending(), [Timer::J]);
    }

    #[test]
    fn reliable_terminates_after_final() {
        let mut s = tx(true);
        assert_eq!(
            s.event(ServerEvent::TuResponse(200)),
            [Action::SendResponse, Action::Terminated]
        );
        assert!(s.tx.is_terminated());
    }

    #[test]
    fn transport_error() {
        let mut s = tx(false);
        // Nothing was sent in Trying.
        assert!(s.event(ServerEvent::TransportError).is_empty());
        s.event(ServerEvent::TuResponse(100));
        assert_eq!(
            s.event(ServerEvent::TransportError),
            [Action::TransportError, Action::Terminated]
        );
        let mut s = tx(false);
        s.event(ServerEvent::TuResponse(200));
        assert_eq!(
            s.event(ServerEvent::TransportError),
            [Action::TransportError, Action::Terminated]
        );
    }

    #[test]
    fn ignores_out_of_place_events() {
        let mut s = tx(false);
        assert!(s.event(ServerEvent::Ack).is_empty());
        assert!(s.event(ServerEvent::TimerFired(Timer::J)).is_empty());
        assert!(s.event(ServerEvent::TuResponse(0)).is_empty());
        assert_eq!(s.tx.state(), ServerNonInviteState::Trying);
    }
}

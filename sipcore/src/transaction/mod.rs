//! SIP transactions (RFC 3261 §17 with RFC 6026).
//!
//! The four state machines ([`ClientInvite`], [`ClientNonInvite`],
//! [`ServerInvite`], [`ServerNonInvite`]) are plain data and do no I/O:
//! the driver feeds them an event ([`ClientEvent`] / [`ServerEvent`]) and
//! carries out the [`Action`]s they return, in order. They hold no
//! messages, futures or instants, so a transaction can be serialised and
//! handed to a standby node as it is. The driver keeps the messages (the
//! request, the last response, the ACK) and the timer deadlines.
//!
//! [`TransactionLayer`] is that driver for tokio: one map of transactions,
//! one timer task, retransmission absorbing, ACK building, CANCEL lookup.
//!
//! Every machine is told at creation whether its transport is reliable
//! (TCP, TLS): then it never retransmits and its wait timers (D, I, J, K)
//! are zero, which the machine carries out by terminating at once instead
//! of starting a zero timer.

mod branch;
mod client_invite;
mod client_non_invite;
mod deadlines;
mod layer;
mod server_invite;
mod server_non_invite;
mod timers;

#[cfg(test)]
mod sim;

use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use branch::{BranchKey, TAG_BYTES as BRANCH_TAG_BYTES};
pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use layer::{
    build_ack, response_target, ClientKey, Outgoing, OverloadStats, ServerKey,
    ServerTransactionStats, TransactionError, TransactionKey, TransactionLayer, TransactionState,
    Transmit, TuEvent, TuQueueConfig, TuReceiver, Unsent,
};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use timers::{Timer, TimerConfig, TIMER_D_MIN, TRYING_DELAY};

/// What a client transaction can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientEvent {
    /// A response with this status code matched the transaction (§17.1.3).
    Response(u16),
    /// A timer that the machine started has fired.
    TimerFired(Timer),
    /// The transport could not send the request or the ACK (§17.1.4).
    TransportError,
}

/// What a server transaction can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerEvent {
    /// The request that created the transaction was received again.
    Retransmission,
    /// An ACK matched the (INVITE) transaction (§17.2.3).
    Ack,
    /// The TU sends a response with this status code.
    TuResponse(u16),
    /// A timer that the machine started has fired.
    TimerFired(Timer),
    /// The transport could not send a response (§17.2.4).
    TransportError,
}

/// What the driver has to do. A machine returns them in the order they are
/// to be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Send the transaction's request (first send or retransmission).
    SendRequest,
    /// Send the ACK for the non-2xx final response just received (client
    /// INVITE). The driver builds it per §17.1.1.3 from the request and the
    /// response on first use and keeps it for the retransmissions of the
    /// response.
    SendAck,
    /// Send the response that the TU has just handed over, and keep it as
    /// the transaction's last response.
    SendResponse,
    /// Send the last response again.
    ResendResponse,
    /// Build a `100 Trying` from the request (§8.2.6), send it and keep it
    /// as the last response (server INVITE, §17.2.1).
    SendTrying,
    /// Start `timer` to fire after `after`; a timer of the same kind that is
    /// still pending is replaced.
    StartTimer { timer: Timer, after: Duration },
    /// Cancel `timer` if it is pending.
    CancelTimer(Timer),
    /// Pass the message of this event (request, response or ACK) to the TU.
    PassToTu,
    /// The transaction timed out: no final response before Timer B / F (the
    /// TU acts as on a 408), or no ACK before Timer H.
    Timeout(Timer),
    /// Tell the TU that the transport failed (§17.1.4, §17.2.4).
    TransportError,
    /// The transaction is over: drop it with all its pending timers.
    Terminated,
}

/// The class of a status code as the machines see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusClass {
    Provisional,
    Success,
    Failure,
    /// Outside 100..=699; the machines ignore such codes.
    Invalid,
}

impl StatusClass {
    fn of(code: u16) -> StatusClass {
        match code {
            100..=199 => StatusClass::Provisional,
            200..=299 => StatusClass::Success,
            300..=699 => StatusClass::Failure,
            _ => StatusClass::Invalid,
        }
    }
}

fn start(timer: Timer, after: Duration) -> Action {
    Action::StartTimer { timer, after }
}

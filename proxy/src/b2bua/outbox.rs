//! What the machine asks the driver to do, collected while one event is
//! handled and handed over in order.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use media_relay::{SessionId, Side};
use sipcore::message::{Message, Method, ResponseBuilder};
use sipcore::transaction::{ClientKey, ServerKey};
use sipcore::transport::Target;
use sipcore::ParseError;

use super::call::UnixMillis;

/// One thing for the driver to do. Actions of one event are carried out
/// in the order given.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send `request` to `target` as a new client transaction (its key is
    /// `key`, from the request's Via branch). A failure to send comes back
    /// as a transport error of that key.
    SendRequest {
        key: ClientKey,
        request: Message,
        target: Target,
    },
    /// Send `response` on the server transaction `key`.
    Respond { key: ServerKey, response: Message },
    /// End the server transaction `key` at once, after sending `answer`
    /// (if any) exactly once: for requests not served (unknown or wrong
    /// sources), so nothing is retransmitted to a spoofed address.
    Forget {
        key: ServerKey,
        answer: Option<Message>,
    },
    /// Send a message outside any transaction: the ACK of a 2xx, a 2xx
    /// retransmission for an adopted call, a response whose transaction
    /// lives on the node this one took over from.
    SendRaw { target: Target, bytes: Bytes },
    /// Open the relay session of a new call (both sides' ports); the
    /// answer comes back as `Event::MediaCreated`. `rtcp_mux`: leg A's
    /// offer names `a=rtcp-mux` (or there is no offer yet), so RTP sockets
    /// alone may do; otherwise RTCP sockets are bound from the start (a
    /// parked pair is reused whole, not bound again per call).
    CreateMedia {
        call: u64,
        session: SessionId,
        rtcp_mux: bool,
    },
    /// The relay learns where `side`'s peer wants RTP (from its SDP) and
    /// the IP that leg's SIP comes from (`sip_source`: a peer behind NAT
    /// sends its RTP from there; the relay's latching allows it).
    SetRemote {
        session: SessionId,
        side: Side,
        addr: SocketAddr,
        sip_source: Option<IpAddr>,
    },
    /// RTCP multiplexing (RFC 5761) on a call's relay session, told
    /// whatever the SDP's address (a held `c=0.0.0.0` still negotiates it).
    RtcpMux {
        session: SessionId,
        change: RtcpMuxChange,
    },
    /// Leg B's RTP now goes to (and comes from) a new media server, whose
    /// SIP comes from `sip_source`; `rtcp_mux`: its answer accepted
    /// rtcp-mux (leg A keeps what it agreed: it is not asked again).
    SwitchUpstream {
        session: SessionId,
        addr: SocketAddr,
        sip_source: Option<IpAddr>,
        rtcp_mux: bool,
    },
    /// Close a call's relay session (after its CDR, if any, was written).
    RemoveMedia { session: SessionId },
    /// A call ended: the CDR line (the driver adds the relay's stream
    /// statistics, then carries out the `RemoveMedia` that follows).
    CallEnded(Box<CallEnd>),
    /// A call was answered and start records are asked for
    /// (`Machine::set_start_records`): the record so far (`end_ms` 0, no
    /// reason).
    CallStarted(Box<CallEnd>),
}

/// Everything of a CDR line the machine knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub call: u64,
    pub session: SessionId,
    pub a_call_id: String,
    pub b_call_id: String,
    /// The source (trunk) by name.
    pub source: String,
    /// The routing rule that matched, and the destination group.
    pub rule: String,
    pub group: String,
    pub caller: String,
    pub callee: String,
    /// `name@ms` of every media server the call used.
    pub servers: Vec<String>,
    pub resumes: u32,
    pub setup_ms: UnixMillis,
    pub answer_ms: UnixMillis,
    pub end_ms: UnixMillis,
    pub reason: String,
    /// Members with times, resume and takeover marks, the BYE's Reason.
    pub history: super::CallHistory,
}

#[derive(Debug, Default)]
pub struct Outbox {
    actions: Vec<Action>,
    /// Server transactions of calls adopted at a takeover: they exist
    /// only on the node we took over from, so their responses go out
    /// statelessly, to where §18.2.2 sends them.
    pub adopted: HashMap<ServerKey, Target>,
}

impl Outbox {
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    pub fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Takes back a list `take` gave out, emptied, to hold the next
    /// event's actions: one list reused rather than one allocated and
    /// freed for every event.
    pub fn recycle(&mut self, mut list: Vec<Action>) {
        list.clear();
        if self.actions.is_empty() && self.actions.capacity() < list.capacity() {
            self.actions = list;
        }
    }

    /// Sends a response on a server transaction, built from its request.
    pub fn respond(
        &mut self,
        key: &ServerKey,
        request: &Message,
        status: u16,
        reason: &str,
        headers: &[(&str, &str)],
    ) {
        let mut b = ResponseBuilder::new(request, status, reason);
        for (n, v) in headers {
            b = b.header(n, v);
        }
        self.send_response(key, b.build_message());
    }

    /// The answer to leg A's in-dialog request while its call is moving to
    /// another media server: 491 for an offer (the caller retries it a
    /// moment later, RFC 3261 §14.1), 503 with Retry-After for the rest
    /// (RFC 5057: neither ends the dialog).
    pub fn respond_call_moving(&mut self, key: &ServerKey, request: &Message) {
        let warning = ("Warning", "399 tandem \"media server failed, call moving\"");
        if matches!(request.method(), Some(Method::Invite | Method::Update)) {
            self.respond(
                key,
                request,
                491,
                "Request Pending",
                &[warning, ("Retry-After", "1")],
            );
        } else {
            self.respond(
                key,
                request,
                503,
                "Service Unavailable",
                &[warning, ("Retry-After", "1")],
            );
        }
    }

    /// Sends a response made by a builder (`build_message`: the parsed
    /// form without a second parse).
    pub fn send_response(&mut self, key: &ServerKey, built: Result<Message, ParseError>) {
        match built {
            Ok(msg) => self.deliver_response(key, msg),
            Err(e) => tracing::error!(error = %e, "built an unparseable response"),
        }
    }

    /// Hands a response to its server transaction, or, for one adopted
    /// at a takeover (it lives on the old node), sends it statelessly.
    pub fn deliver_response(&mut self, key: &ServerKey, response: Message) {
        match self.adopted.get(key).copied() {
            Some(target) => {
                // A final answer other than a 2xx ends the need for the
                // route (a 2xx's ends with its ACK: `Retransmit2xx`).
                if response.status().is_some_and(|s| s >= 300) {
                    self.adopted.remove(key);
                }
                self.actions.push(Action::SendRaw {
                    target,
                    bytes: response.as_bytes().clone(),
                })
            }
            None => self.actions.push(Action::Respond {
                key: key.clone(),
                response,
            }),
        }
    }

    /// Ends a server transaction without an answer.
    pub fn forget(&mut self, key: ServerKey, answer: Option<Message>) {
        self.actions.push(Action::Forget { key, answer });
    }

    /// Ends a server transaction with one stateless answer (`Warning`
    /// says why).
    pub fn forget_answered(
        &mut self,
        key: ServerKey,
        request: &Message,
        status: u16,
        reason: &str,
        warning: &str,
    ) {
        let built = ResponseBuilder::new(request, status, reason)
            .header("Warning", warning)
            .build_message();
        match built {
            Ok(answer) => self.forget(key, Some(answer)),
            Err(e) => tracing::error!(error = %e, "built an unparseable response"),
        }
    }

    pub fn send_raw(&mut self, target: Target, bytes: Bytes) {
        self.actions.push(Action::SendRaw { target, bytes });
    }
}

/// What an SDP passing through Tandem changes about RTCP multiplexing.
/// Mux is in use on a leg iff its offer and its answer both carry
/// `a=rtcp-mux` (RFC 5761 §5.1.1, RFC 8035), so routing follows answers
/// only: a rejected offer (488, 491, timeout) changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcpMuxChange {
    /// An offer without `a=rtcp-mux` leaves: it names RTCP ports on the
    /// relay (port+1), and the answer may refuse mux, so both sides' RTCP
    /// sockets are bound before the peer can send. Routing is unchanged.
    BindSockets,
    /// An answer passed: `side` (None: both legs, since leg A's answer is
    /// leg B's answer rewritten) multiplexes iff `mux`. An answer can
    /// carry `a=rtcp-mux` only if its offer did.
    Agreed { side: Option<Side>, mux: bool },
}

//! Requests inside an established call: ACK, BYE, CANCEL before the
//! answer, and everything Tandem forwards from one leg to the other
//! (re-INVITE and UPDATE for hold/unhold and session refresh, INFO for
//! DTMF, OPTIONS, NOTIFY, …). A forwarded request is a new request in the
//! other leg's dialog; its final answer comes back as the answer to the
//! original one. SDP is rewritten both ways, so the relay stays in the path.

use bytes::Bytes;
use sipcore::dialog::DialogError;
use sipcore::message::{Message, Method, RequestBuilder, ResponseBuilder};
use sipcore::transaction::{ClientKey, ServerKey};
use sipcore::transport::Target;

use super::call::{CallState, LateAck, Leg};
use super::{ClientRole, Machine, Refusal, SdpRole, TimerEvent};
use crate::media::is_sdp;

/// Headers a forwarded in-dialog request or response keeps.
const FORWARDED_HEADERS: &[&str] = &[
    "Session-Expires",
    "Min-SE",
    "Event",
    "Subscription-State",
    "Info-Package",
    "Recv-Info",
    "Reason",
    "Refer-To",
    "Referred-By",
];

impl Machine {
    pub(super) fn on_in_dialog_request(
        &mut self,
        key: ServerKey,
        request: Message,
        source: Target,
    ) {
        let Some((id, leg)) = self.call_of(request.call_id()) else {
            self.out
                .respond(&key, &request, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        // Before the dialog sees it (its CSeq would move on): a BYE with
        // the right Call-ID and tags from elsewhere must not end the call.
        if !self.sent_by_leg_peer(id, leg, source) {
            return self.refuse_wrong_source(key, &request);
        }
        let Some(call) = self.store.get_mut(id) else {
            self.out
                .respond(&key, &request, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        let dialog = match leg {
            Leg::A => call.a.dialog.as_mut(),
            Leg::B => call.b.dialog.as_mut(),
        };
        let checked = match dialog {
            Some(d) => d.on_remote_request(&request),
            None => Err(DialogError::NotThisDialog),
        };
        match checked {
            Ok(()) => {}
            Err(DialogError::CSeqOutOfOrder { .. }) => {
                self.out.respond(
                    &key,
                    &request,
                    500,
                    "Server Internal Error",
                    &[("Warning", "399 tandem \"CSeq out of order\"")],
                );
                return;
            }
            Err(_) => {
                self.out
                    .respond(&key, &request, 481, "Call/Transaction Does Not Exist", &[]);
                return;
            }
        }
        let method = request.method().cloned().unwrap_or(Method::Ack);
        match method {
            Method::Bye => {
                let cancel_resume =
                    call.resuming.is_some() && call.b.provisional && call.b.invite_key.is_some();
                self.out.respond(&key, &request, 200, "OK", &[]);
                let reason = match leg {
                    Leg::A => "bye_caller",
                    Leg::B => "bye_server",
                };
                let (bye_a, bye_b) = (leg == Leg::B, leg == Leg::A);
                if let (Some(c), Some(r)) = (self.store.get_mut(id), request.header("Reason")) {
                    c.history.reason_header = Some(r.to_owned());
                }
                if cancel_resume {
                    // The caller hung up while its call was moving: the
                    // new server's ringing INVITE must not stay behind.
                    self.send_leg_b_cancel(id);
                }
                self.end_call(id, reason, bye_a, bye_b);
            }
            _ if leg == Leg::A && call.resuming.is_some() => {
                self.out.respond_call_moving(&key, &request);
            }
            Method::Invite | Method::Update if call.offer_pending => {
                // Glare (RFC 3261 §14.2, RFC 3311 §5.2).
                let retry_after = if leg == Leg::A { "1" } else { "2" };
                self.out.respond(
                    &key,
                    &request,
                    491,
                    "Request Pending",
                    &[("Retry-After", retry_after)],
                );
            }
            _ => self.forward_request(id, leg, key, request, method),
        }
    }

    fn forward_request(
        &mut self,
        id: u64,
        from: Leg,
        key: ServerKey,
        request: Message,
        method: Method,
    ) {
        let to = from.other();
        let Some(call) = self.store.get(id) else {
            return;
        };
        let via = self
            .tokens
            .via(&self.settings, self.leg_transport(call, to));
        let target = self.leg_target(call, to);
        // An ACK's SDP answers a late offer; any other request's offers.
        let role = if request.method() == Some(&Method::Ack) {
            SdpRole::Answer
        } else {
            SdpRole::Offer
        };
        let body = match self.rewrite_body(id, from, &request, role) {
            Ok(b) => b,
            Err(e) => {
                self.out.respond(
                    &key,
                    &request,
                    e.status,
                    e.reason,
                    &[("Warning", &e.warning())],
                );
                return;
            }
        };
        let carried: Vec<(&str, &str)> = request
            .iter_headers()
            .filter(|(n, _)| self.policy.carried(n))
            .collect();
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        let dialog = match to {
            Leg::A => call.a.dialog.as_mut(),
            Leg::B => call.b.dialog.as_mut(),
        };
        let (Some(dialog), Some(target)) = (dialog, target) else {
            self.out
                .respond(&key, &request, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        let mut req: RequestBuilder = dialog.request(&method, &via);
        let max_forwards = request.max_forwards().unwrap_or(70).saturating_sub(1);
        if max_forwards == 0 {
            self.out.respond(&key, &request, 483, "Too Many Hops", &[]);
            return;
        }
        req = req.header("Max-Forwards", &max_forwards.to_string());
        for name in FORWARDED_HEADERS {
            for v in request.headers(name) {
                req = req.header(name, v);
            }
        }
        if request.supports("timer") {
            req = req.header("Supported", "timer");
        }
        for (name, value) in carried {
            req = req.header(name, value);
        }
        if let Some((ct, body)) = body {
            if to == Leg::B && crate::media::is_sdp(Some(&ct)) {
                call.set_b_local_sdp(body.clone());
            }
            req = req.body(&ct, body);
        }
        if from == Leg::B && is_sdp(request.content_type()) && !request.body().is_empty() {
            call.set_b_remote_sdp(Bytes::copy_from_slice(request.body()));
        }
        if matches!(method, Method::Invite | Method::Update) {
            call.offer_pending = true;
        }
        let role = ClientRole::Forwarded {
            call: id,
            to,
            origin: key.clone(),
            request: Box::new(request.clone()),
        };
        if self
            .send_request(req.build_message(), target, role)
            .is_none()
        {
            if let Some(c) = self.store.get_mut(id) {
                c.offer_pending = false;
            }
            self.out.respond(
                &key,
                &request,
                500,
                "Server Internal Error",
                &[("Warning", "399 tandem \"cannot forward\"")],
            );
        }
    }

    /// The body of a message from leg `from` as it goes to the other leg:
    /// SDP rewritten through the relay, anything else unchanged.
    fn rewrite_body(
        &mut self,
        id: u64,
        from: Leg,
        msg: &Message,
        role: SdpRole,
    ) -> Result<Option<(String, Bytes)>, crate::error::Error> {
        if msg.body().is_empty() {
            return Ok(None);
        }
        let ct = msg
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        if !is_sdp(Some(&ct)) {
            return Ok(Some((ct, msg.body_bytes())));
        }
        let sdp = self.relay_sdp(id, from.side(), msg.body(), role)?;
        Ok(Some(("application/sdp".to_owned(), sdp)))
    }

    pub(super) fn on_forwarded_response(
        &mut self,
        id: u64,
        to: Leg,
        origin: ServerKey,
        request: Box<Message>,
        response: Message,
    ) {
        let status = response.status().unwrap_or(0);
        if status < 200 || !self.store.contains(id) {
            return;
        }
        if to == Leg::B && matches!(status, 408 | 481 | 503) && self.resumes_on_in_dialog_failure()
        {
            if let Some(c) = self.store.get_mut(id) {
                c.offer_pending = false;
            }
            self.out.respond_call_moving(&origin, &request);
            self.leg_b_in_dialog_failure(id, &format!("in_dialog_{status}"));
            return;
        }
        let method = response.cseq().method.clone();
        let from = to.other();
        let Some(call) = self.store.get(id) else {
            return;
        };
        let origin_transport = self.leg_transport(call, from);
        let ack_via = self
            .tokens
            .via(&self.settings, self.leg_transport(call, to));
        let ack_target = self.leg_target(call, to);
        // A response's SDP answers the request's, or offers (the ACK
        // answers) when the request had none.
        let role = if request.body().is_empty() {
            SdpRole::Offer
        } else {
            SdpRole::Answer
        };
        let body = self
            .rewrite_body(id, to, &response, role)
            .unwrap_or_else(|e| {
                tracing::warn!(call = id, error = %e, "answer SDP not usable");
                None
            });
        let contact = self.contact(origin_transport);
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        if matches!(method, Method::Invite | Method::Update) {
            call.offer_pending = false;
        }
        if (200..300).contains(&status) {
            // Leg B's side of the offer/answer: what a resume offers.
            match (to, &body) {
                (Leg::B, _) if is_sdp(response.content_type()) && !response.body().is_empty() => {
                    call.set_b_remote_sdp(Bytes::copy_from_slice(response.body()));
                }
                (Leg::A, Some((ct, b))) if is_sdp(Some(ct)) => call.set_b_local_sdp(b.clone()),
                _ => {}
            }
        }
        let dialog = match to {
            Leg::A => call.a.dialog.as_mut(),
            Leg::B => call.b.dialog.as_mut(),
        };
        if let Some(d) = dialog {
            d.on_response(&response);
        }
        let ok = (200..300).contains(&status);
        if ok && matches!(method, Method::Invite | Method::Update) {
            call.refreshed_at = self.wall;
        }
        let mut b = ResponseBuilder::new(&request, status, response.reason_phrase().unwrap_or(""));
        if ok && matches!(method, Method::Invite | Method::Update) {
            b = b.header("Contact", &contact);
        }
        for name in [
            "Session-Expires",
            "Min-SE",
            "Retry-After",
            "Reason",
            "Warning",
            "Allow",
        ] {
            if let Some(v) = response.header(name) {
                b = b.header(name, v);
            }
        }
        if response.require().any(|t| t.eq_ignore_ascii_case("timer")) {
            b = b.header("Require", "timer");
        }
        if let Some((ct, body)) = body {
            b = b.body(&ct, body);
        }
        let built = b.build_message();
        if ok && method == Method::Invite {
            // ACK the leg that answered at once, its offer having come from
            // the other side (the ACK carries no body) — unless the asker
            // sent no offer (late offer): then the answer is in the asker's
            // ACK, and the answering leg's ACK waits for it. Either way the
            // leg that asked gets the 2xx until it ACKs.
            let seq = response.cseq().seq;
            let late_offer = request.body().is_empty()
                && !response.body().is_empty()
                && is_sdp(response.content_type());
            if late_offer {
                call.late_ack = Some(LateAck {
                    leg: to,
                    seq,
                    asked_seq: request.cseq().seq,
                });
            } else {
                let ack = match to {
                    Leg::A => call.a.dialog.as_ref().map(|d| d.ack(seq, &ack_via).build()),
                    Leg::B => call.b.dialog.as_ref().map(|d| d.ack(seq, &ack_via).build()),
                };
                if let (Some(ack), Some(target)) = (ack, ack_target) {
                    self.out.send_raw(target, ack);
                }
            }
            if let Ok(msg) = &built {
                self.store.await_ack(id, from, request.cseq().seq);
                let t1 = self.settings.t1;
                self.timers.at(
                    self.now + t1,
                    TimerEvent::Retransmit2xx {
                        call: id,
                        leg: from,
                        key: origin.clone(),
                        response: Box::new(msg.clone()),
                        interval: t1,
                        give_up: self.now + 64 * t1,
                    },
                );
            }
        }
        self.out.send_response(&origin, built);
    }

    pub(super) fn on_ack(&mut self, ack: Message, source: Target) {
        let Some((id, leg)) = self.call_of(ack.call_id()) else {
            return;
        };
        if !self.sent_by_leg_peer(id, leg, source) {
            // An ACK gets no answer: dropped, counted.
            self.obs.refused(Refusal::WrongDialogSource);
            return;
        }
        if self.store.awaits_ack(id, leg, ack.cseq().seq) {
            self.store.acked(id, leg);
            self.cancel_timer(id, super::CallTimer::Retransmit2xx(leg));
        }
        let late = self
            .store
            .get(id)
            .and_then(|c| c.late_ack)
            .filter(|l| l.leg == leg.other() && l.asked_seq == ack.cseq().seq);
        if let Some(late) = late {
            self.send_late_ack(id, late, &ack);
        }
        if leg != Leg::A {
            return;
        }
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        if call.state == CallState::Answered {
            call.state = CallState::Confirmed;
            self.obs.call_answered();
        }
        if call.b.ack_pending {
            let body = match self.rewrite_body(id, Leg::A, &ack, SdpRole::Answer) {
                Ok(Some((_, b))) => Some(b),
                _ => None,
            };
            self.send_leg_b_ack(id, body);
        }
    }

    /// The ACK for `late.leg`'s 2xx to a late-offer re-INVITE, with the
    /// answer the other leg's `ack` brought, rewritten to the relay.
    fn send_late_ack(&mut self, id: u64, late: LateAck, ack: &Message) {
        let from = late.leg.other();
        let body = self
            .rewrite_body(id, from, ack, SdpRole::Answer)
            .ok()
            .flatten();
        let Some(call) = self.store.get(id) else {
            return;
        };
        let target = self.leg_target(call, late.leg);
        let via = self
            .tokens
            .via(&self.settings, self.leg_transport(call, late.leg));
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        call.late_ack = None;
        if let Some((ct, b)) = &body {
            if is_sdp(Some(ct)) {
                match late.leg {
                    Leg::B => call.set_b_local_sdp(b.clone()),
                    Leg::A => call.set_b_remote_sdp(Bytes::copy_from_slice(ack.body())),
                }
            }
        }
        let dialog = match late.leg {
            Leg::A => call.a.dialog.as_ref(),
            Leg::B => call.b.dialog.as_ref(),
        };
        let (Some(dialog), Some(target)) = (dialog, target) else {
            return;
        };
        let mut out = dialog.ack(late.seq, &via);
        if let Some((ct, b)) = body {
            out = out.body(&ct, b);
        }
        self.out.send_raw(target, out.build());
    }

    pub(super) fn on_cancel(&mut self, key: ServerKey, cancel: Message, source: Target) {
        // The INVITE a CANCEL cancels has the same branch and sent-by
        // (RFC 3261 §9.2); it is still leg A's open INVITE transaction.
        let invite_key = (key.method == Method::Cancel).then(|| ServerKey {
            method: Method::Invite,
            ..key.clone()
        });
        let found = invite_key.as_ref().and_then(|ik| {
            let (id, leg) = self.call_of(cancel.call_id())?;
            let call = self.store.get(id)?;
            (leg == Leg::A && call.a.invite_key.as_deref() == Some(ik)).then_some(id)
        });
        let Some(id) = found else {
            self.out
                .respond(&key, &cancel, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        if !self.sent_by_leg_peer(id, Leg::A, source) {
            return self.refuse_wrong_source(key, &cancel);
        }
        self.out.respond(&key, &cancel, 200, "OK", &[]);
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        if let Some(ik) = call.a.invite_key.take() {
            let resp = ResponseBuilder::with_to_tag(
                &call.a.invite,
                487,
                "Request Terminated",
                Some(&call.a.local_tag),
            )
            .build_message();
            self.out.send_response(&ik, resp);
        }
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        call.state = CallState::Cancelling;
        if call.forking.is_some() {
            return self.cancel_forks(id);
        }
        if call.b.provisional {
            self.send_leg_b_cancel(id);
        }
        // Otherwise the CANCEL goes out with leg B's first provisional
        // response (§9.1: not before), see `finish_cancel`.
    }

    /// Leg B answered while the call is being cancelled.
    pub(super) fn finish_cancel(&mut self, id: u64, response: &Message) {
        let status = response.status().unwrap_or(0);
        match status {
            101..=199 => self.send_leg_b_cancel(id),
            200..=299 => {
                self.reject_late_2xx(response);
                self.end_call(id, "cancelled", false, false);
            }
            _ => self.end_call(id, "cancelled", false, false),
        }
    }

    pub(super) fn send_leg_b_cancel(&mut self, id: u64) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let target = self.leg_target(call, Leg::B);
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        if call.b.cancel_sent {
            return;
        }
        call.b.cancel_sent = true;
        let bytes = cancel_for(&call.b.invite);
        if let Some(target) = target {
            self.send_request(bytes, target, ClientRole::Own);
        }
    }

    /// A response that matched no transaction of ours. Whoever sent it
    /// chose its Contact: it is acted on only when it proves to be ours
    /// (its branch carries our tag) and belongs to a leg-B dialog we
    /// have, and then our ACK goes to the member, never to its Contact.
    /// Everything else is dropped and counted.
    pub(super) fn on_stray_response(&mut self, response: Message) {
        // The answer to a leg-B INVITE sent by the node we took over from.
        if let Some(key) = ClientKey::from_message(&response) {
            if self.adopted_client(&key) {
                return self.on_response(key, response);
            }
        }
        let status = response.status().unwrap_or(0);
        if !(200..300).contains(&status) || response.cseq().method != Method::Invite {
            return;
        }
        // A 2xx retransmitted after leg B's INVITE transaction ended (RFC
        // 6026; on the standby after a takeover, any): our ACK was lost.
        let leg_b = self
            .call_of(response.call_id())
            .filter(|&(_, leg)| leg == Leg::B)
            .map(|(id, _)| id)
            .filter(|&id| self.is_leg_b_dialog(id, &response));
        match leg_b {
            Some(id) if self.tokens.made(&response) => self.resend_leg_b_ack(id, &response),
            _ => self.obs.refused(Refusal::Stray2xx),
        }
    }

    /// A 2xx retransmitted on a live INVITE transaction of ours whose
    /// role is over: ACK it again (the peer answers our branch: it saw
    /// our INVITE); one for no call of ours is a late answer, hung up.
    pub(super) fn on_2xx_retransmission(&mut self, response: Message) {
        let status = response.status().unwrap_or(0);
        if !(200..300).contains(&status) || response.cseq().method != Method::Invite {
            return;
        }
        match self.call_of(response.call_id()) {
            Some((id, Leg::B)) => self.resend_leg_b_ack(id, &response),
            Some(_) => {}
            None => self.reject_late_2xx(&response),
        }
    }

    /// Leg B's ACK again, for a retransmission of its INVITE's 2xx.
    fn resend_leg_b_ack(&mut self, id: u64, response: &Message) {
        let resend = self
            .store
            .get(id)
            .is_some_and(|c| !c.b.ack_pending && response.cseq().seq == c.b.invite.cseq().seq);
        if resend {
            self.send_leg_b_ack(id, None);
        }
    }

    /// Whether a response's Call-ID and tags are leg B's dialog of call
    /// `id` (our From tag, the member's To tag).
    fn is_leg_b_dialog(&self, id: u64, response: &Message) -> bool {
        self.store
            .get(id)
            .and_then(|c| c.b.dialog.as_ref())
            .is_some_and(|d| {
                *d.id.call_id == *response.call_id()
                    && Some(&*d.id.local_tag) == response.from_tag()
                    && Some(&*d.id.remote_tag) == response.to_tag()
            })
    }

    /// Whether a request for leg `leg` of call `id` comes from that leg's
    /// peer (see `leg_source_ok`).
    fn sent_by_leg_peer(&self, id: u64, leg: Leg, source: Target) -> bool {
        self.store
            .get(id)
            .is_some_and(|c| self.leg_source_ok(c, leg, source.addr.ip()))
    }

    /// An in-dialog request from outside its leg's networks: one
    /// stateless 403, counted, the call untouched.
    fn refuse_wrong_source(&mut self, key: ServerKey, request: &Message) {
        tracing::info!(
            call_id = request.call_id(),
            "in-dialog request from outside the call's peers refused"
        );
        self.obs.refused(Refusal::WrongDialogSource);
        self.out.forget_answered(
            key,
            request,
            403,
            "Forbidden",
            "399 tandem \"not from this call's peer\"",
        );
    }
}

/// The CANCEL of an INVITE we sent (§9.1: same Request-URI, Via, From,
/// To, Call-ID and CSeq number).
pub(super) fn cancel_for(inv: &Message) -> Result<Message, sipcore::ParseError> {
    RequestBuilder::new(&Method::Cancel, inv.request_uri_str().unwrap_or_default())
        .header("Via", inv.top_via().raw)
        .header("Max-Forwards", "70")
        // The INVITE's route (a phone's Path): "the same Route header
        // field values as the request being cancelled" (RFC 3261 §9.1).
        .headers("Route", inv.headers("Route"))
        .header("From", inv.header("From").unwrap_or_default())
        .header("To", inv.header("To").unwrap_or_default())
        .header("Call-ID", inv.call_id())
        .header("CSeq", &format!("{} CANCEL", inv.cseq().seq))
        .header("Reason", "SIP;cause=487;text=\"Request Terminated\"")
        .build_message()
}

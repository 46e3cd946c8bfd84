//! A new call: leg A's INVITE is checked, a media session is opened, a
//! pool member is chosen and leg B's INVITE is sent; leg B's answers come
//! back here. Before the answer, a member that fails (408, 5xx, timeout,
//! transport error) is replaced by the next one without leg A noticing.

use bytes::Bytes;
use media_relay::{SessionId, SessionInfo, Side};
use sipcore::dialog::{Dialog, DialogState};
use sipcore::message::{Message, Method, RequestBuilder, ResponseBuilder};
use sipcore::transaction::{ClientKey, ServerKey};
use sipcore::transport::Target;

use super::call::{push_exact, Call, CallState, Forking, Leg, LegA, LegB};
use super::register::Caller;
use super::{
    kept_leg_b_invite, member_transport, Action, ClientRole, Machine, Route, SdpRole, TimerEvent,
};
use crate::error::Error;
use crate::media::is_sdp;

/// Option tags Tandem supports end to end. 100rel is not among them: a
/// `Require: 100rel` gets 420, a `Supported: 100rel` is not passed on, so
/// media servers answer with plain provisional responses.
const SUPPORTED: &[&str] = &["timer"];

impl Machine {
    pub(super) fn on_new_invite(&mut self, key: ServerKey, invite: Message, source: Target) {
        let phone = match self.identify_caller(&key, &invite, source) {
            Caller::Trunk => false,
            Caller::Phone => true,
            Caller::Answered => return,
        };
        let source_name = match self.admit(&invite, source, phone) {
            Ok(name) => name,
            Err(e) => {
                self.obs.call_rejected(e.status);
                if let Some(refused) = self.refusals.note(self.now) {
                    tracing::info!(peer = %source.addr, call_id = invite.call_id(), status = e.status, detail = %e.detail, refused, "INVITE refused (refused: how many since the last such line)");
                }
                let mut headers = vec![("Warning", e.warning())];
                if e.status == 420 {
                    headers.push(("Unsupported", unsupported(&invite).join(", ")));
                }
                if e.status == 503 {
                    headers.push(("Retry-After", "5".into()));
                }
                let hs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.out.respond(&key, &invite, e.status, e.reason, &hs);
                return;
            }
        };
        // A retransmitted INVITE is absorbed by the transaction layer; a
        // second INVITE with the same Call-ID and no To tag (a new branch)
        // would be a fork: refuse it rather than open a second call.
        if self.store.has_leg_a(invite.call_id()) {
            self.out.respond(
                &key,
                &invite,
                482,
                "Loop Detected",
                &[("Warning", "399 tandem \"duplicate Call-ID\"")],
            );
            return;
        }
        let minute_of_day = ((self.wall / 60_000) % 1440) as u16;
        let mut forking = None;
        let mut fallback = None;
        let (rule, group, ruri_user) = match self.policy.route(&invite, &source_name, minute_of_day)
        {
            Route::Location {
                rule,
                user,
                host,
                fork,
                fork_timeout_s,
                fallback,
            } => {
                let (aor, contacts) = self.location_contacts(&user, &host);
                if !contacts.is_empty() {
                    forking = Some(Box::new(Forking {
                        mode: fork,
                        timeout_s: fork_timeout_s,
                        pending: contacts,
                        ringing: Vec::new(),
                        abandoned: Vec::new(),
                        best: None,
                    }));
                    (rule, usize::MAX, user)
                } else if let Some(g) = fallback.and_then(|g| self.dests.group_named(&g)) {
                    tracing::info!(
                        call_id = invite.call_id(),
                        aor,
                        "not registered: to the fallback group"
                    );
                    (rule, g, user)
                } else {
                    self.obs.route_matched(&rule);
                    self.obs.call_rejected(404);
                    let warning = format!("399 tandem \"{aor} is not registered\"");
                    self.out
                        .respond(&key, &invite, 404, "Not Found", &[("Warning", &warning)]);
                    return;
                }
            }
            Route::Group {
                rule,
                group,
                ruri_user,
                fallback: group_fallback,
            } => match self.dests.group_named(&group) {
                Some(g) => {
                    fallback = group_fallback;
                    (rule, g, ruri_user)
                }
                None => {
                    // The configuration names only groups it has.
                    tracing::error!(rule, group, "rule names an unknown group");
                    self.obs.call_rejected(500);
                    self.out
                        .respond(&key, &invite, 500, "Server Internal Error", &[]);
                    return;
                }
            },
            Route::Redirect {
                rule,
                group,
                ruri_user,
            } => return self.redirect(&key, &invite, &rule, &group, &ruri_user),
            Route::Reject { rule, code, reason } => {
                self.obs.route_matched(&rule);
                self.obs.call_rejected(code);
                tracing::info!(
                    call_id = invite.call_id(),
                    rule,
                    code,
                    "INVITE rejected by rule"
                );
                let warning = format!("399 tandem \"rejected by rule {rule}\"");
                self.out
                    .respond(&key, &invite, code, &reason, &[("Warning", &warning)]);
                return;
            }
            Route::Unmatched => {
                self.obs.call_rejected(404);
                self.out.respond(
                    &key,
                    &invite,
                    404,
                    "Not Found",
                    &[("Warning", "399 tandem \"no routing rule matches\"")],
                );
                return;
            }
        };
        self.obs.route_matched(&rule);
        self.out.respond(&key, &invite, 100, "Trying", &[]);

        let id = self.store.allocate_id();
        let had_offer = !invite.body().is_empty() && is_sdp(invite.content_type());
        let now = self.wall;
        let call = Call {
            id,
            state: CallState::Calling,
            a: LegA {
                call_id: invite.call_id().to_owned(),
                local_tag: self.tokens.token(12),
                invite: invite.clone(),
                invite_key: Some(Box::new(key.clone())),
                source_name,
                transport: source.transport,
                source: source.addr,
                dialog: None,
                had_offer,
            },
            b: LegB {
                call_id: String::new(),
                local_tag: String::new(),
                group,
                member: usize::MAX,
                tried: Vec::new(),
                invite: invite.clone(),
                invite_key: None,
                dialog: None,
                provisional: false,
                ack_pending: false,
                cancel_sent: false,
                phone: None,
            },
            rule,
            ruri_user: Some(ruri_user),
            fell_back: false,
            fallback,
            media: id,
            media_info: None,
            created_at: now,
            answered_at: None,
            refreshed_at: now,
            session_expires: None,
            offer_pending: false,
            late_ack: None,
            servers: Vec::new(),
            b_local_sdp: None,
            b_remote_sdp: None,
            b_held: false,
            b_sides_held: Some([false, false]),
            offer: None,
            resuming: None,
            resumes: 0,
            moves: 0,
            forking,
            started: self.now,
            history: Default::default(),
        };
        if let Err(e) = self.store.insert(call) {
            // Cannot happen (the Call-ID was checked above, ids are
            // fresh); refused rather than trusted.
            tracing::error!(call = id, conflict = ?e, "call not stored");
            self.out
                .respond(&key, &invite, 500, "Server Internal Error", &[]);
            return;
        }
        self.obs.calls_active(self.store.len());
        // Leg B goes out once the relay has ports for both legs (the offer
        // to the media server must carry them).
        // Which sockets to start with is a hint: the SDP's own answer
        // settles rtcp-mux later (`RtcpMux`), binding what is missing.
        let body = invite.body();
        let rtcp_mux = body.is_empty() || memchr::memmem::find(body, b"a=rtcp-mux").is_some();
        self.out.push(Action::CreateMedia {
            call: id,
            session: SessionId(id),
            rtcp_mux,
        });
    }

    /// The relay answered a new call's `CreateMedia`: rewrite leg A's
    /// offer to the relay and send leg B; without ports, 503.
    pub(super) fn on_media_created(&mut self, id: u64, result: Result<SessionInfo, String>) {
        let session = SessionId(id);
        let Some(call) = self.store.get_mut(id) else {
            // The call ended meanwhile.
            if result.is_ok() {
                self.out.push(Action::RemoveMedia { session });
            }
            return;
        };
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                let e = Error::internal(503, "Service Unavailable", format!("no media ports: {e}"));
                let w = e.warning();
                return self.refuse_unstarted(id, &e, &[("Warning", &w), ("Retry-After", "5")]);
            }
        };
        call.media_info = Some(info);
        if call.state == CallState::Cancelling {
            return self.end_call(id, "cancelled", false, false);
        }
        if call.a.had_offer {
            let body = Bytes::copy_from_slice(call.a.invite.body());
            match self.relay_sdp(id, Side::A, &body, SdpRole::Offer) {
                Ok(offer) => {
                    if let Some(call) = self.store.get_mut(id) {
                        call.offer = Some(offer);
                        // The caller's own SDP is not needed again: leg A's
                        // INVITE is kept for its headers only.
                        call.a.invite = call.a.invite.without_body();
                    }
                }
                Err(e) => {
                    let w = e.warning();
                    self.out.push(Action::RemoveMedia { session });
                    return self.refuse_unstarted(id, &e, &[("Warning", &w)]);
                }
            }
        }
        if self.store.get(id).is_some_and(|c| c.forking.is_some()) {
            return self.ring_next(id);
        }
        self.try_next_member(id, "no media server available");
    }

    /// Refuses a call that never reached a media server: leg A's final
    /// response, and the call forgotten without a CDR (it never started).
    fn refuse_unstarted(&mut self, id: u64, e: &Error, headers: &[(&str, &str)]) {
        self.obs.call_rejected(e.status);
        if let Some(mut call) = self.store.remove(id) {
            if let Some(key) = call.a.invite_key.take() {
                let mut b = ResponseBuilder::with_to_tag(
                    &call.a.invite,
                    e.status,
                    e.reason,
                    Some(&call.a.local_tag),
                );
                for (n, v) in headers {
                    b = b.header(n, v);
                }
                self.out.send_response(&key, b.build_message());
            }
        }
        self.obs.calls_active(self.store.len());
    }

    /// Redirect-server mode: 302 with the group's members that are up as
    /// Contacts (q by priority); no call is made.
    fn redirect(
        &mut self,
        key: &ServerKey,
        invite: &Message,
        rule: &str,
        group: &str,
        ruri_user: &str,
    ) {
        self.obs.route_matched(rule);
        let contacts: Vec<String> = self
            .dests
            .group_named(group)
            .and_then(|g| self.dests.group(g))
            .map(|pool| crate::routing::redirect_contacts(pool, ruri_user))
            .unwrap_or_default()
            .iter()
            .map(|c| c.header_value())
            .collect();
        if contacts.is_empty() {
            self.obs.call_rejected(503);
            let w = format!("399 tandem \"no member of group {group} is up\"");
            self.out.respond(
                key,
                invite,
                503,
                "Service Unavailable",
                &[("Warning", &w), ("Retry-After", "5")],
            );
            return;
        }
        let tag = self.tokens.token(12);
        let mut b = ResponseBuilder::with_to_tag(invite, 302, "Moved Temporarily", Some(&tag));
        for c in &contacts {
            b = b.header("Contact", c);
        }
        tracing::info!(call_id = invite.call_id(), rule, group, "INVITE redirected");
        self.out.send_response(key, b.build_message());
    }

    /// Checks that decide before anything is allocated; the source's name.
    fn admit(&self, invite: &Message, source: Target, phone: bool) -> Result<String, Error> {
        if self.draining {
            return Err(Error::internal(503, "Service Unavailable", "shutting down"));
        }
        let name = if phone {
            Some(super::PHONE_SOURCE.to_owned())
        } else {
            self.policy.source(source.addr.ip()).map(str::to_owned)
        };
        let Some(name) = name else {
            return Err(Error::downstream(
                403,
                "Forbidden",
                format!("source {} is not a configured trunk", source.addr.ip()),
            ));
        };
        self.within_call_caps(&name)?;
        if invite.max_forwards() == Some(0) {
            return Err(Error::downstream(483, "Too Many Hops", "Max-Forwards is 0"));
        }
        let me = self.settings.advertised;
        // Parsed, not printed: `[v6]` hosts compare too.
        let is_me = |host: &str| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == me.ip())
        };
        if invite
            .vias()
            .any(|v| is_me(v.host) && v.sent_by_port() == me.port())
        {
            return Err(Error::downstream(
                482,
                "Loop Detected",
                "the INVITE already passed through Tandem",
            ));
        }
        if let Some(uri) = invite.request_uri() {
            if !uri.is_sip() && !uri.scheme.eq_ignore_ascii_case("tel") {
                return Err(Error::downstream(
                    416,
                    "Unsupported URI Scheme",
                    format!("scheme {}", uri.scheme),
                ));
            }
        }
        if !unsupported(invite).is_empty() {
            return Err(Error::downstream(
                420,
                "Bad Extension",
                "required extension not supported",
            ));
        }
        Ok(name)
    }

    /// Sends leg B's INVITE to the next healthy member not tried yet; when
    /// none is left, answers leg A with `last_error`.
    pub(super) fn try_next_member(&mut self, id: u64, why: &str) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let tried = call.b.tried.clone();
        let body = call.offer.clone();
        let group = call.b.group;
        let (call_id, from_user) = hash_keys(call, &self.dests);
        let Some(member) = self.dests.select(group, &tried, &call_id, &from_user) else {
            if self.fall_back(id, group) {
                return self.try_next_member(id, why);
            }
            let e = Error::upstream(503, "Service Unavailable", why.to_owned());
            self.fail_call(id, e.status, e.reason, Some(e.warning()), "no_server");
            return;
        };
        let sent = self.send_leg_b_invite(id, member, body, &[]);
        if let Some(call) = self.store.get_mut(id) {
            call.b.tried = {
                let mut t = tried;
                t.push(member);
                t
            };
        }
        if !sent {
            self.leg_b_failed(
                id,
                &ClientKey {
                    branch: String::new(),
                    method: Method::Invite,
                },
                "send failed",
            );
        }
    }

    /// No member of the call's group is left: moves a call that has not
    /// fallen back yet to the group policy names. True when it did.
    fn fall_back(&mut self, id: u64, group: usize) -> bool {
        let Some(name) = self.dests.group(group).map(|g| g.name.clone()) else {
            return false;
        };
        // The rule's own fallback first, else the policy's.
        let Some(alt) = self
            .store
            .get(id)
            .and_then(|c| c.fallback.clone())
            .or_else(|| self.policy.fallback(&name))
            .and_then(|alt| self.dests.group_named(&alt))
            .filter(|&alt| alt != group)
        else {
            return false;
        };
        let Some(call) = self.store.get_mut(id).filter(|c| !c.fell_back) else {
            return false;
        };
        call.fell_back = true;
        call.b.group = alt;
        tracing::info!(call = id, from = %name, "no member left: falling back");
        true
    }

    /// Builds and sends a new leg B INVITE for call `id` to `member`:
    /// A's identity and carried headers, fresh Call-ID and tags, `offer`
    /// (or A's non-SDP body) and `extra` headers. Leg B is replaced by
    /// the new one (its `tried` list is kept). False when nothing could be
    /// sent (the caller decides what follows).
    pub(super) fn send_leg_b_invite(
        &mut self,
        id: u64,
        member: usize,
        offer: Option<Bytes>,
        extra: &[(&str, &str)],
    ) -> bool {
        let Some(m) = self.member(member).cloned() else {
            return false;
        };
        let transport = member_transport(m.transport);
        let Some(call) = self.store.get(id) else {
            return false;
        };
        let ruri_user = match &call.ruri_user {
            Some(u) => u.as_str(),
            None => call
                .a
                .invite
                .request_uri()
                .and_then(|u| u.user)
                .unwrap_or(""),
        };
        let ruri = if ruri_user.is_empty() {
            format!("sip:{}", m.address)
        } else {
            format!("sip:{ruri_user}@{}", m.address)
        };
        let to_user = call.a.invite.to_header().uri().user.map(str::to_owned);
        let to_host = m.address.to_string();
        let Some((b_invite, b_call_id, b_tag)) = self.build_leg_b_invite(
            id,
            &ruri,
            (to_user.as_deref(), &to_host),
            transport,
            offer.as_ref(),
            extra,
            &[],
        ) else {
            return false;
        };
        let target = Target {
            transport,
            addr: m.address,
            connection: None,
        };
        let key = self.send_request(
            Ok(b_invite.clone()),
            target,
            ClientRole::LegBInvite { call: id },
        );
        // Kept for CANCEL and the dialog: the headers they use only (the
        // offer is kept once, in `offer` / `b_local_sdp`).
        let b_invite = kept_leg_b_invite(&b_invite);
        let timeout = self.settings.member_answer_timeout;
        let Some(call) = self.store.get_mut(id) else {
            return false;
        };
        let tried = std::mem::take(&mut call.b.tried);
        let leg = LegB {
            call_id: b_call_id.clone(),
            local_tag: b_tag,
            group: call.b.group,
            member,
            tried,
            invite: b_invite,
            invite_key: key.clone(),
            dialog: None,
            provisional: false,
            ack_pending: false,
            cancel_sent: false,
            phone: None,
        };
        if !self.store.set_leg_b(id, leg) {
            tracing::error!(call = id, "leg B not stored");
            return false;
        }
        let Some(call) = self.store.get_mut(id) else {
            return false;
        };
        if let Some(offer) = offer {
            call.set_b_local_sdp(offer);
        }
        push_exact(&mut call.servers, (m.name.clone(), self.wall));
        call.history.tried(&m.name, self.wall);
        if let Some(m) = self.dests.member_mut(member) {
            m.active_calls += 1;
        }
        match key {
            Some(key) => {
                self.timers.at(
                    self.now + timeout,
                    TimerEvent::MemberAnswer { call: id, key },
                );
                true
            }
            None => false,
        }
    }

    /// Leg B's INVITE for call `id` to `ruri`: A's identity and carried
    /// headers, To `to` (user, host), fresh Call-ID and tags, `offer` (or
    /// A's non-SDP body), `extra` headers and `routes` (a phone's Path).
    /// The bytes, the message, its Call-ID and From tag.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_leg_b_invite(
        &mut self,
        id: u64,
        ruri: &str,
        to: (Option<&str>, &str),
        transport: sipcore::transport::TransportKind,
        offer: Option<&Bytes>,
        extra: &[(&str, &str)],
        routes: &[String],
    ) -> Option<(Message, String, String)> {
        let b_call_id = self.tokens.call_id();
        let b_tag = self.tokens.token(12);
        let via = self.tokens.via(&self.settings, transport);
        let contact = self.contact(transport);
        let call = self.store.get(id)?;
        let a = &call.a.invite;
        let from = a.from_header();
        let a_to = a.to_header();
        let host = &self.advertised;
        // `display <sip:user@host>` (the tag appended after), in one string.
        let ident = |display: Option<&str>, user: Option<&str>, host: &str, tag: &str| {
            let mut out = String::with_capacity(64);
            if let Some(d) = display {
                out.push_str(d);
                out.push(' ');
            }
            out.push_str("<sip:");
            if let Some(u) = user {
                out.push_str(u);
                out.push('@');
            }
            out.push_str(host);
            out.push('>');
            if !tag.is_empty() {
                out.push_str(";tag=");
                out.push_str(tag);
            }
            out
        };
        let max_forwards = a.max_forwards().unwrap_or(70).saturating_sub(1).to_string();
        let mut req = RequestBuilder::new(&Method::Invite, ruri)
            .header("Via", &via)
            .header("Max-Forwards", &max_forwards);
        for route in routes {
            req = req.header("Route", route);
        }
        req = req
            .header("From", &ident(from.display, from.uri().user, host, &b_tag))
            .header("To", &ident(a_to.display, to.0, to.1, ""))
            .header("Call-ID", &b_call_id)
            .header("CSeq", "1 INVITE")
            .header("Contact", &contact)
            .header("Allow", super::ALLOW);
        if a.supports("timer") {
            req = req.header("Supported", "timer");
        }
        for name in ["Session-Expires", "Min-SE"] {
            if let Some(v) = a.header(name) {
                req = req.header(name, v);
            }
        }
        for (name, value) in a.iter_headers() {
            if self.policy.carried(name) {
                req = req.header(name, value);
            }
        }
        for (name, value) in extra {
            req = req.header(name, value);
        }
        if let Some(offer) = offer {
            req = req.body("application/sdp", offer.clone());
        } else if !a.body().is_empty() && !is_sdp(a.content_type()) {
            // A body Tandem does not rewrite (not SDP) passes unchanged.
            req = req.body(
                a.content_type().unwrap_or("application/octet-stream"),
                a.body_bytes(),
            );
        }
        let Ok(b_invite) = req.build_message() else {
            tracing::error!(call = id, "built an unparseable leg B INVITE");
            return None;
        };
        Some((b_invite, b_call_id, b_tag))
    }

    pub(super) fn on_leg_b_invite_response(&mut self, id: u64, key: ClientKey, response: Message) {
        let status = response.status().unwrap_or(0);
        let member = self
            .store
            .get(id)
            .filter(|c| c.b.invite_key.as_ref() == Some(&key))
            .map(|c| c.b.member);
        self.leg_b_invite_response(id, key, response);
        // Any answer but 408 and 5xx shows the member's SIP alive (it
        // counts for groups that are not probed; after the call has moved
        // on, so that a member going down does not move it twice).
        if let Some(member) = member {
            self.request_outcome(member, !(status == 408 || status >= 500));
        }
    }

    fn leg_b_invite_response(&mut self, id: u64, key: ClientKey, response: Message) {
        let status = response.status().unwrap_or(0);
        let Some(call) = self.store.get_mut(id) else {
            if (200..300).contains(&status) {
                self.reject_late_2xx(&response);
            }
            return;
        };
        if call.b.invite_key.as_ref() != Some(&key) {
            // An answer of a member we already gave up on.
            if (200..300).contains(&status) {
                self.reject_late_2xx(&response);
            }
            return;
        }
        if status == 100 {
            return;
        }
        if call.resuming.is_some() {
            return self.on_resume_response(id, response);
        }
        call.b.provisional = true;
        let state = call.state;
        if state == CallState::Cancelling {
            self.finish_cancel(id, &response);
            return;
        }
        match status {
            101..=199 => self.forward_provisional(id, response),
            200..=299 => self.on_leg_b_answer(id, response),
            _ => {
                let retry = status == 408 || (500..600).contains(&status);
                if retry && matches!(state, CallState::Calling | CallState::Early) {
                    self.release_member(id, "failed");
                    let why = format!("media server answered {status}");
                    tracing::info!(
                        call = id,
                        status,
                        "member failed before answer, trying the next"
                    );
                    self.try_next_member(id, &why);
                } else {
                    let reason = response.reason_phrase().unwrap_or("").to_owned();
                    let extra: Vec<(String, String)> = ["Retry-After", "Reason", "Warning"]
                        .iter()
                        .filter_map(|n| response.header(n).map(|v| (n.to_string(), v.to_owned())))
                        .collect();
                    self.fail_call_with(id, status, &reason, &extra, "rejected");
                }
            }
        }
    }

    fn forward_provisional(&mut self, id: u64, response: Message) {
        let early_media = if !response.body().is_empty() && is_sdp(response.content_type()) {
            let role = self.role_of_leg_b_sdp(id);
            self.relay_sdp(id, Side::B, response.body(), role).ok()
        } else {
            None
        };
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        if response.to_tag().is_some() {
            if let Ok(d) = Dialog::from_uac_response(&call.b.invite, &response, "") {
                call.b.dialog = Some(d);
            }
        }
        let status = response.status().unwrap_or(180);
        let reason = response.reason_phrase().unwrap_or("Ringing");
        self.ring_leg_a(id, status, reason, early_media);
    }

    /// Leg A hears a provisional response (with the relay's early-media
    /// SDP, if any): the call is early.
    pub(super) fn ring_leg_a(
        &mut self,
        id: u64,
        status: u16,
        reason: &str,
        early_media: Option<Bytes>,
    ) {
        let Some(transport) = self.store.get(id).map(|c| c.a.transport) else {
            return;
        };
        let contact = self.contact(transport);
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        call.state = CallState::Early;
        let mut b =
            ResponseBuilder::with_to_tag(&call.a.invite, status, reason, Some(&call.a.local_tag))
                .header("Contact", &contact);
        if let Some(sdp) = early_media {
            b = b.body("application/sdp", sdp);
        }
        if let Some(key) = call.a.invite_key.clone() {
            self.out.send_response(&key, b.build_message());
        }
    }

    pub(super) fn on_leg_b_answer(&mut self, id: u64, response: Message) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let local_contact = self.contact(self.leg_transport(call, Leg::B));
        let a_contact = self.contact(call.a.transport);
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        let b_dialog = match Dialog::from_uac_response(&call.b.invite, &response, &local_contact) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "media server's 2xx cannot make a dialog");
                self.reject_late_2xx(&response);
                self.release_member(id, "failed");
                self.try_next_member(id, "media server answered without Contact");
                return;
            }
        };
        call.b.dialog = Some(b_dialog);
        // Not through `cancel_timer` (the call is borrowed): an answer
        // timer has no stateless route to drop.
        self.timers.cancel(id, super::CallTimer::MemberAnswer);
        if !response.body().is_empty() && is_sdp(response.content_type()) {
            call.set_b_remote_sdp(Bytes::copy_from_slice(response.body()));
        }
        let had_offer = call.a.had_offer;
        let mut body: Option<Bytes> = None;
        if !response.body().is_empty() && is_sdp(response.content_type()) {
            // With a late offer (leg A's INVITE had no SDP) this is the
            // offer; leg A's ACK brings the answer.
            let role = if had_offer {
                SdpRole::Answer
            } else {
                SdpRole::Offer
            };
            match self.relay_sdp(id, Side::B, response.body(), role) {
                Ok(b) => body = Some(b),
                Err(e) => {
                    tracing::warn!(call = id, error = %e, "media server's SDP not usable")
                }
            }
        }
        // ACK leg B now unless A's ACK must bring the answer (late offer).
        if had_offer {
            self.send_leg_b_ack(id, None);
        } else if let Some(call) = self.store.get_mut(id) {
            call.b.ack_pending = true;
        }
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        let mut b =
            ResponseBuilder::with_to_tag(&call.a.invite, 200, "OK", Some(&call.a.local_tag))
                .header("Contact", &a_contact)
                .header("Allow", super::ALLOW);
        if let Some(se) = response.header("Session-Expires") {
            b = b.header("Session-Expires", se);
            if response.require().any(|t| t.eq_ignore_ascii_case("timer")) {
                b = b.header("Require", "timer");
            }
            call.session_expires = sipcore::message::split_list(se)
                .next()
                .and_then(|v| v.split(';').next())
                .and_then(|v| v.trim().parse().ok());
        }
        if let Some(body) = body {
            b = b.body("application/sdp", body);
        }
        let ok = b.build_message();
        let a_dialog = ok.as_ref().ok().and_then(|_| {
            Dialog::from_uas_request(
                &call.a.invite,
                &call.a.local_tag,
                &a_contact,
                DialogState::Confirmed,
            )
            .ok()
        });
        call.a.dialog = a_dialog;
        // Leg A's responses and dialog are made: keep of its INVITE only
        // what a later leg B, the CDR and the hash read.
        call.a.invite = super::kept_answered_leg_a_invite(&call.a.invite, &*self.policy);
        call.state = CallState::Answered;
        let now = self.wall;
        call.answered_at = Some(now);
        call.history.answered(now);
        call.refreshed_at = now;
        self.obs
            .setup_latency(self.now.saturating_duration_since(call.started));
        let t1 = self.settings.t1;
        let seq = call.a.invite.cseq().seq;
        if let (Some(key), Ok(msg)) = (call.a.invite_key.take(), ok) {
            self.out.send_response(&key, Ok(msg.clone()));
            self.store.await_ack(id, Leg::A, seq);
            let now = self.now;
            self.timers.at(
                now + t1,
                TimerEvent::Retransmit2xx {
                    call: id,
                    leg: Leg::A,
                    key: *key,
                    response: Box::new(msg),
                    interval: t1,
                    give_up: now + 64 * t1,
                },
            );
        }
        if self.start_records {
            if let Some(call) = self.store.get(id) {
                let record = self.call_record(call, 0, "");
                self.out.push(Action::CallStarted(Box::new(record)));
            }
        }
    }

    /// ACK for leg B's 2xx (§13.2.2.4), with the answer when A's ACK
    /// brought one (late offer).
    pub(super) fn send_leg_b_ack(&mut self, id: u64, body: Option<Bytes>) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let via = self
            .tokens
            .via(&self.settings, self.leg_transport(call, Leg::B));
        let target = self.leg_target(call, Leg::B);
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        call.b.ack_pending = false;
        let Some(dialog) = call.b.dialog.as_ref() else {
            return;
        };
        let mut ack = dialog.ack(call.b.invite.cseq().seq, &via);
        if let Some(body) = body {
            call.set_b_local_sdp(body.clone());
            ack = ack.body("application/sdp", body);
        }
        if let Some(target) = target {
            self.out.send_raw(target, ack.build());
        }
    }

    /// A 2xx nobody wants (a member answered after we moved on, or after a
    /// CANCEL): ACK it and hang up so no call is left on the server.
    pub(super) fn reject_late_2xx(&mut self, response: &Message) {
        self.reject_late_2xx_at(response, None)
    }

    /// The same, sent to `target` (a phone's flow) rather than to the
    /// 2xx's Contact.
    pub(super) fn reject_late_2xx_at(&mut self, response: &Message, target: Option<Target>) {
        if response.cseq().method != Method::Invite {
            return;
        }
        let Some(contact) = response
            .contacts()
            .next()
            .and_then(Result::ok)
            .map(|c| c.uri.to_owned())
        else {
            return;
        };
        let target = match target {
            Some(t) => t,
            None => {
                let Some(addr) = super::uri_socket_addr(&contact) else {
                    return;
                };
                Target::udp(addr)
            }
        };
        let transport = target.transport;
        let from = response.header("From").unwrap_or_default();
        let to = response.header("To").unwrap_or_default();
        let seq = response.cseq().seq;
        let ack = RequestBuilder::new(&Method::Ack, &contact)
            .header("Via", &self.tokens.via(&self.settings, transport))
            .header("From", from)
            .header("To", to)
            .header("Call-ID", response.call_id())
            .header("CSeq", &format!("{seq} ACK"))
            .build();
        self.out.send_raw(target, ack);
        if self
            .hung_up_b
            .insert(response.call_id().to_owned(), self.now)
            .is_some()
        {
            // A retransmission of a 2xx we already hung up: the ACK above
            // was all it needed.
            return;
        }
        let bye = RequestBuilder::new(&Method::Bye, &contact)
            .header("Via", &self.tokens.via(&self.settings, transport))
            .header("From", from)
            .header("To", to)
            .header("Call-ID", response.call_id())
            .header("CSeq", &format!("{} BYE", seq + 1))
            .header("Reason", "SIP;cause=200;text=\"Call completed elsewhere\"")
            .build_message();
        self.send_request(bye, target, ClientRole::Own);
    }

    /// Leg B's INVITE failed without a final response (timeout, transport
    /// error): before the answer, try the next member.
    pub(super) fn leg_b_failed(&mut self, id: u64, key: &ClientKey, why: &str) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        if !key.branch.is_empty() && call.b.invite_key.as_ref() != Some(key) {
            return;
        }
        let member = call.b.member;
        self.leg_b_gone(id, why);
        self.request_outcome(member, false);
    }

    /// Leg B's INVITE is lost (the caller has checked it was the current
    /// one): resume elsewhere, try the next member, or end a cancelled
    /// call.
    fn leg_b_gone(&mut self, id: u64, why: &str) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        if call.resuming.is_some() {
            return self.resume_attempt_failed(id, why);
        }
        match call.state {
            CallState::Calling | CallState::Early => {
                tracing::info!(call = id, member = %self.member_name(call.b.member), why, "trying the next member");
                self.release_member(id, "failed");
                self.try_next_member(id, why);
            }
            CallState::Cancelling => self.end_call(id, "cancelled", false, false),
            _ => {}
        }
    }

    /// The call lets go of its current member; `why` goes to its CDR.
    pub(super) fn release_member(&mut self, id: u64, why: &str) {
        if let Some(call) = self.store.get_mut(id) {
            let m = call.b.member;
            call.b.invite_key = None;
            call.history.left(self.wall, why);
            if let Some(member) = self.dests.member_mut(m) {
                member.active_calls = member.active_calls.saturating_sub(1);
            }
        }
    }

    /// Answers leg A's INVITE with a final error and forgets the call.
    pub(super) fn fail_call(
        &mut self,
        id: u64,
        status: u16,
        reason: &str,
        warning: Option<String>,
        outcome: &str,
    ) {
        let extra: Vec<(String, String)> = warning
            .map(|w| ("Warning".to_owned(), w))
            .into_iter()
            .collect();
        self.fail_call_with(id, status, reason, &extra, outcome);
    }

    fn fail_call_with(
        &mut self,
        id: u64,
        status: u16,
        reason: &str,
        extra: &[(String, String)],
        outcome: &str,
    ) {
        if let Some(call) = self.store.get_mut(id) {
            if let Some(key) = call.a.invite_key.take() {
                let mut b = ResponseBuilder::with_to_tag(
                    &call.a.invite,
                    status,
                    reason,
                    Some(&call.a.local_tag),
                );
                for (n, v) in extra {
                    b = b.header(n, v);
                }
                let bytes = b.build_message();
                self.out.send_response(&key, bytes);
            }
        }
        self.end_call(id, outcome, false, false);
    }
}

/// Option tags of `Require` that Tandem does not support.
fn unsupported(invite: &Message) -> Vec<String> {
    invite
        .require()
        .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .map(str::to_owned)
        .collect()
}

/// What the hash strategies hash: the call's leg-A Call-ID and From user
/// (empty for the other strategies, which ignore them).
pub(super) fn hash_keys(call: &Call, dests: &crate::pool::Destinations) -> (String, String) {
    let hashed = dests
        .group(call.b.group)
        .is_some_and(|p| p.strategy().is_hash());
    if !hashed {
        return (String::new(), String::new());
    }
    let from = call.a.invite.from_header();
    (
        call.a.call_id.clone(),
        from.uri().user.unwrap_or("").to_owned(),
    )
}

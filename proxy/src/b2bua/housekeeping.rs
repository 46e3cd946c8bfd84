//! Timers, OPTIONS probes of the pool, session hygiene and the end of a
//! call (BYEs, relay session freed, CDR line, metrics).

use std::time::Duration;

use media_relay::{SessionId, Side};
use sipcore::message::{Message, Method, RequestBuilder};
use sipcore::transaction::{response_target, ServerKey};
use sipcore::transport::Target;

use super::call::{Call, CallState, Leg, UnixMillis};
use super::journal::EventKind;
use super::{member_transport, Action, CallEnd, ClientRole, Machine, TimerEvent};
use crate::pool::Health;

/// How far behind its own timers the machine may run before a probe's
/// timeout no longer proves anything about the member.
const LATE: Duration = Duration::from_millis(100);

/// How long a call may stay unanswered (INVITE timer C, RFC 3261 §16.6).
const RING_LIMIT: Duration = Duration::from_secs(180);

impl Machine {
    pub(super) fn fire_timers(&mut self) {
        let now = self.now;
        while let Some((due, event)) = self.timers.pop_due(now) {
            match event {
                TimerEvent::MemberAnswer { call, key } => {
                    // A new call may ring as long as the trunk lets it; a
                    // resume may not: its caller hears silence meanwhile.
                    let (waiting, ringing_resume) =
                        self.store.get(call).map_or((false, false), |c| {
                            let mine = c.b.invite_key.as_ref() == Some(&key);
                            let resume = c.resuming.is_some();
                            (
                                mine && (!c.b.provisional || resume),
                                mine && resume && c.b.provisional,
                            )
                        });
                    if waiting {
                        if ringing_resume {
                            self.send_leg_b_cancel(call);
                        }
                        self.store.unbind_client(&key);
                        self.leg_b_failed(call, &key, "media server did not answer");
                    }
                }
                TimerEvent::Retransmit2xx {
                    call,
                    leg,
                    key,
                    response,
                    interval,
                    give_up,
                } => {
                    if !self.store.awaits_ack(call, leg, response.cseq().seq) {
                        // Acked: a stateless route for its retransmissions
                        // (a takeover's, or `on_response_unsent`'s) is done.
                        self.out.adopted.remove(&key);
                        continue;
                    }
                    if now >= give_up {
                        // No ACK for 64*T1: the dialog is dead (§13.3.1.4).
                        self.out.adopted.remove(&key);
                        self.store.acked(call, leg);
                        tracing::warn!(call, ?leg, "no ACK for the 2xx; ending the call");
                        self.end_call(call, "no_ack", leg == Leg::B, leg == Leg::A);
                        continue;
                    }
                    self.out.deliver_response(&key, (*response).clone());
                    let t2 = self.settings.t2;
                    let interval = (interval * 2).min(t2);
                    self.timers.at(
                        now + interval,
                        TimerEvent::Retransmit2xx {
                            call,
                            leg,
                            key,
                            response,
                            interval,
                            give_up,
                        },
                    );
                }
                TimerEvent::ResumeRetry { call } => self.resume_retry(call),
                TimerEvent::ForkTimeout { call, key } => self.on_fork_timeout(call, key),
                TimerEvent::MemberRetry { member } => {
                    if let Some(change) = self.dests.force_up(member) {
                        let name = self.member_name(member);
                        tracing::info!(member = %name, "member rested: it gets calls again");
                        self.obs.member_health(&name, change.now == Health::Up);
                        self.journal_member(
                            member,
                            EventKind::MemberUp,
                            "rested: gets calls again",
                        );
                    }
                }
                TimerEvent::ProbeTimeout { member, key } => {
                    let outstanding = self
                        .probes
                        .get(member)
                        .is_some_and(|p| p.as_ref() == Some(&key));
                    if outstanding && now.saturating_duration_since(due) > LATE {
                        // The machine itself is behind (overload): the
                        // answer may be waiting in its queue. A probe it
                        // has not read yet is no failure of the member —
                        // declaring one would fail every call on a busy
                        // node. Look again once it has caught up.
                        self.timers
                            .at(now + LATE, TimerEvent::ProbeTimeout { member, key });
                        continue;
                    }
                    if let Some(p) = self
                        .probes
                        .get_mut(member)
                        .filter(|p| p.as_ref() == Some(&key))
                    {
                        *p = None;
                        self.store.unbind_client(&key);
                        let sent = self.probed_at.get(member).copied().flatten();
                        if self.take_wan_answered(member) {
                            // It answered the WAN's probes meanwhile (the
                            // WANs have counted that): a keepalive lost on
                            // a lossy WAN, no failure.
                            self.judge_member(member, true);
                        } else if sent.is_some_and(|t| self.wan_silent_for(member, t)) {
                            // The whole WAN is silent: the WAN judges.
                        } else {
                            self.probe_outcome(member, false);
                        }
                    }
                }
            }
        }
    }

    /// Sends one OPTIONS to each member of a probing group that has no
    /// probe outstanding and whose group's interval has passed.
    pub(super) fn send_probes(&mut self) {
        for member in 0..self.dests.len() {
            let Some((interval, timeout)) = self.dests.timing(member) else {
                continue;
            };
            // A little early is on time: the tick runs at the shortest
            // interval and a due member must not wait a whole tick more.
            let slack = self.settings.probe_interval / 10;
            let due = self.probed_at.get(member).is_some_and(|at| {
                at.is_none_or(|t| self.now.saturating_duration_since(t) + slack >= interval)
            });
            if self.dests.probed(member)
                && due
                && self.probes.get(member).is_some_and(Option::is_none)
            {
                if let Some(at) = self.probed_at.get_mut(member) {
                    *at = Some(self.now);
                }
                self.send_probe(member, timeout);
            }
        }
    }

    /// One OPTIONS keepalive to `member` (it replaces an outstanding one,
    /// whose outcome is then ignored); its outcome comes back through
    /// [`probe_outcome`](Self::probe_outcome).
    pub(super) fn send_probe(&mut self, member: usize, timeout: Duration) {
        if let Some(old) = self.probes.get_mut(member).and_then(Option::take) {
            // Its answer, should it still come, is a stray now.
            self.store.unbind_client(&old);
        }
        {
            let Some(m) = self.member(member).cloned() else {
                return;
            };
            let transport = member_transport(m.transport);
            let bytes = self.options_to(m.address, transport);
            let target = sipcore::transport::Target {
                transport,
                addr: m.address,
                connection: None,
            };
            if let Some(key) = self.send_request(bytes, target, ClientRole::Probe { member }) {
                self.journal.probe_sent(&m.name, self.now);
                if let Some(p) = self.probes.get_mut(member) {
                    *p = Some(key.clone());
                }
                self.timers
                    .at(self.now + timeout, TimerEvent::ProbeTimeout { member, key });
            } else {
                self.probe_outcome(member, false);
            }
        }
    }

    /// An OPTIONS keepalive of ours to `addr`.
    pub(super) fn options_to(
        &mut self,
        addr: std::net::SocketAddr,
        transport: sipcore::transport::TransportKind,
    ) -> Result<sipcore::message::Message, sipcore::ParseError> {
        RequestBuilder::new(&Method::Options, &format!("sip:{addr}"))
            .header("Via", &self.tokens.via(&self.settings, transport))
            .header(
                "From",
                &format!(
                    "<sip:tandem@{}>;tag={}",
                    self.settings.advertised,
                    self.tokens.token(10)
                ),
            )
            .header("To", &format!("<sip:{addr}>"))
            .header("Call-ID", &self.tokens.call_id())
            .header("CSeq", "1 OPTIONS")
            .header("Max-Forwards", "70")
            .build_message()
    }

    pub(super) fn probe_outcome(&mut self, member: usize, alive: bool) {
        if alive {
            self.wan_member_alive(member);
        }
        self.judge_member(member, alive);
    }

    /// A keepalive's outcome for the member's own health (its evidence for
    /// the WANs, if any, already counted).
    fn judge_member(&mut self, member: usize, alive: bool) {
        // The next interval starts afresh.
        self.take_wan_answered(member);
        if self.settle_suspect(member, alive) {
            return;
        }
        let before = self.member_state(member);
        let change = self.dests.outcome(member, alive);
        self.journal_state_since(member, before);
        if let Some(change) = change {
            let name = self.member_name(member);
            match change.now {
                Health::Down => tracing::warn!(member = %name, "media server is down"),
                Health::Up => tracing::info!(member = %name, "media server is up"),
            }
            self.obs.member_health(&name, change.now == Health::Up);
            if change.now == Health::Down {
                self.journal_member(member, EventKind::MemberDown, "keepalives unanswered");
                self.member_failed(member, "keepalive");
            } else {
                self.journal_member(member, EventKind::MemberUp, "answers keepalives again");
            }
        }
    }

    /// The outcome of a real request to a member (leg B's INVITE answered,
    /// or failed: timeout, transport error, 408, 5xx). Members of a group
    /// with `probe = "off"` are judged by these alone, as Kamailio's
    /// dispatcher does by default: `failures_to_down` failures in a row
    /// take one down; it rests for the group's interval, then gets calls
    /// again (one more failure takes it down again). Probed members are
    /// judged by their probes.
    pub(super) fn request_outcome(&mut self, member: usize, alive: bool) {
        if alive {
            self.wan_member_alive(member);
        }
        if self.dests.probed(member) {
            return;
        }
        let before = self.member_state(member);
        let change = self.dests.outcome(member, alive);
        self.journal_state_since(member, before);
        let Some(change) = change else {
            return;
        };
        let name = self.member_name(member);
        self.obs.member_health(&name, change.now == Health::Up);
        if change.now == Health::Up {
            self.journal_member(member, EventKind::MemberUp, "answers requests again");
        }
        if change.now == Health::Down {
            self.journal_member(member, EventKind::MemberDown, "its requests failed");
            tracing::warn!(member = %name, "member down: its requests failed");
            let rest = self
                .dests
                .timing(member)
                .map_or(Duration::from_secs(1), |t| t.0);
            self.timers
                .at(self.now + rest, TimerEvent::MemberRetry { member });
            self.member_failed(member, "requests_failed");
        }
    }

    /// Session hygiene: calls that nobody hangs up are ended here.
    pub(super) fn housekeeping(&mut self) {
        let now = self.wall;
        let max_ms = self.settings.max_duration_s * 1000;
        let media_ms = self.settings.media_timeout_s * 1000;
        let mut ends: Vec<(u64, &'static str)> = Vec::new();
        self.expire_bindings();
        let mut timeouts: Vec<u64> = Vec::new();
        for (id, call) in self.store.iter() {
            match call.state {
                CallState::Calling | CallState::Early => {
                    if now.saturating_sub(call.created_at) > RING_LIMIT.as_millis() as u64 {
                        timeouts.push(*id);
                    }
                }
                CallState::Cancelling => {
                    if now.saturating_sub(call.created_at) > RING_LIMIT.as_millis() as u64 + 64_000
                    {
                        ends.push((*id, "cancelled"));
                    }
                }
                CallState::Answered | CallState::Confirmed => {
                    let answered = call.answered_at.unwrap_or(call.created_at);
                    if max_ms > 0 && now.saturating_sub(answered) > max_ms {
                        ends.push((*id, "max_duration"));
                    } else if let Some(se) = call.session_expires {
                        if now.saturating_sub(call.refreshed_at) > se as u64 * 1000 {
                            ends.push((*id, "session_expired"));
                        }
                    }
                    // Media silence counts from when this node began to
                    // serve the call (a takeover), not from the answer.
                    let watched = answered.max(self.serving_since);
                    if media_ms > 0 && now.saturating_sub(watched) > media_ms {
                        let session = SessionId(call.media);
                        let idle = |side| {
                            self.media
                                .idle(session, side)
                                .ok()
                                .map(|d| d.map_or(u64::MAX, |d: Duration| d.as_millis() as u64))
                                .unwrap_or(u64::MAX)
                        };
                        if idle(Side::A) > media_ms && idle(Side::B) > media_ms {
                            ends.push((*id, "media_timeout"));
                        }
                    }
                }
            }
        }
        for id in timeouts {
            self.cancel_ringing_leg_b(id);
            self.fail_call(
                id,
                408,
                "Request Timeout",
                Some("399 tandem \"no answer in time\"".into()),
                "timeout",
            );
        }
        for (id, reason) in ends {
            tracing::info!(call = id, reason, "ending call");
            let answered = self.store.get(id).is_some_and(|c| c.a.dialog.is_some());
            self.end_call(id, reason, answered, answered);
        }
        // A 2xx is retransmitted for at most 64*T1 (RFC 3261 §13.3.1.4).
        let horizon = 64 * self.settings.t1;
        let now = self.now;
        self.hung_up_b
            .retain(|_, at| now.saturating_duration_since(*at) < horizon);
        self.timers.shrink_after_peak();
    }

    /// The drain's deadline: nothing is left up. Ringing calls are
    /// cancelled towards the server and refused towards the caller (503,
    /// try again elsewhere), answered ones get a BYE on both legs; every
    /// one gets a CDR with reason `shutdown`.
    pub(super) fn end_calls_for_shutdown(&mut self) {
        let ids: Vec<(u64, CallState)> = self.store.iter().map(|(id, c)| (*id, c.state)).collect();
        tracing::warn!(
            calls = ids.len(),
            "shutdown: the drain's deadline has passed; ending the calls still up"
        );
        for (id, state) in ids {
            match state {
                CallState::Calling | CallState::Early => {
                    self.cancel_ringing_leg_b(id);
                    self.fail_call(
                        id,
                        503,
                        "Service Unavailable",
                        Some("399 tandem \"shutting down\"".into()),
                        "shutdown",
                    );
                }
                CallState::Cancelling => self.end_call(id, "shutdown", false, false),
                CallState::Answered | CallState::Confirmed => {
                    // A resume INVITE ringing on the new member.
                    if self.store.get(id).is_some_and(|c| c.resuming.is_some()) {
                        self.cancel_ringing_leg_b(id);
                    }
                    self.end_call(id, "shutdown", true, true)
                }
            }
        }
    }

    /// CANCELs leg B's INVITE if it rings (a provisional came: §9.1 allows
    /// a CANCEL only then): the member must not be left with a call nobody
    /// will ACK. Before any provisional there is nothing to cancel yet.
    fn cancel_ringing_leg_b(&mut self, id: u64) {
        let ringing = self
            .store
            .get(id)
            .is_some_and(|c| c.b.provisional && c.b.invite_key.is_some());
        if ringing {
            self.send_leg_b_cancel(id);
        }
    }

    /// Start records (`type: start` CDRs at each answer) on or off.
    pub fn set_start_records(&mut self, on: bool) {
        self.start_records = on;
    }

    /// The CDR of `call` as it stands: ended at `end_ms` for `reason`
    /// (0 and empty for a start record).
    pub(super) fn call_record(&self, call: &Call, end_ms: UnixMillis, reason: &str) -> CallEnd {
        CallEnd {
            call: call.id,
            session: SessionId(call.media),
            a_call_id: call.a.call_id.clone(),
            b_call_id: call.b.call_id.clone(),
            source: call.a.source_name.clone(),
            rule: call.rule.clone(),
            group: self
                .dests
                .group(call.b.group)
                .map(|g| g.name.clone())
                .unwrap_or_default(),
            caller: call.a.invite.from_header().uri.to_string(),
            callee: call.a.invite.to_header().uri.to_string(),
            servers: call
                .servers
                .iter()
                .map(|(n, t)| format!("{n}@{t}"))
                .collect(),
            resumes: call.resumes,
            setup_ms: call.created_at,
            answer_ms: call.answered_at.unwrap_or(0),
            end_ms,
            reason: reason.to_owned(),
            history: call.history.clone(),
        }
    }

    /// A response whose server transaction the layer had ended already
    /// (its cap on waiting transactions ends the oldest early, and an
    /// INVITE's waits in RFC 6026's Accepted state until its ACK). Only a
    /// 2xx to leg A's INVITE that still awaits its ACK matters: it and its
    /// retransmissions go on statelessly, to where §18.2.2 sends leg A's
    /// responses, so that a lost 2xx still reaches the caller. Anything
    /// else is not sent (logged at debug, as the driver did before).
    pub(super) fn on_response_unsent(&mut self, key: ServerKey, response: Message) {
        if !response.status().is_some_and(|s| (200..300).contains(&s))
            || response.cseq().method != Method::Invite
        {
            tracing::debug!(status = ?response.status(), "response not sent: its transaction has ended");
            return;
        }
        let Some((id, Leg::A)) = self.store.find(response.call_id()) else {
            return;
        };
        if !self.store.awaits_ack(id, Leg::A, response.cseq().seq) {
            return;
        }
        let Some(call) = self.store.get(id) else {
            return;
        };
        let source = Target {
            transport: call.a.transport,
            addr: call.a.source,
            connection: None,
        };
        let target = response_target(&call.a.invite, source);
        tracing::debug!(call = id, %target, "2xx goes on statelessly: its transaction ended early");
        self.out.adopted.insert(key, target);
        self.out.push(Action::SendRaw {
            target,
            bytes: response.as_bytes().clone(),
        });
    }

    /// Ends a call: BYE to the legs asked for, the relay session freed,
    /// one CDR line, metrics.
    pub(super) fn end_call(&mut self, id: u64, reason: &str, bye_a: bool, bye_b: bool) {
        let Some(mut call) = self.store.remove(id) else {
            return;
        };
        self.cancel_call_timers(id);
        // Phones still ringing for this call stop (a 2xx that crosses the
        // CANCEL is hung up when it comes: `on_fork_response`).
        if let Some(f) = call.forking.take() {
            for leg in f.ringing.iter().chain(&f.abandoned) {
                if let (true, false, Some(phone)) = (leg.provisional, leg.cancel_sent, &leg.phone) {
                    let cancel = super::in_dialog::cancel_for(&leg.invite);
                    self.send_request(cancel, phone.target(), ClientRole::Own);
                }
            }
        }
        if call.answered_at.is_some() {
            // Leg B's dialog ends here (our BYE below, or the server's own
            // BYE): its late 2xx retransmissions only need an ACK.
            self.hung_up_b.insert(call.b.call_id.clone(), self.now);
        }
        if let Some(m) = self.dests.member_mut(call.b.member) {
            if call.b.invite_key.is_some() || call.b.dialog.is_some() {
                m.active_calls = m.active_calls.saturating_sub(1);
            }
        }
        let bye_reason = format!("Q.850;cause=16;text=\"{reason}\"");
        for (leg, wanted) in [(Leg::A, bye_a), (Leg::B, bye_b)] {
            if !wanted {
                continue;
            }
            let via = self
                .tokens
                .via(&self.settings, self.leg_transport(&call, leg));
            let target = self.leg_target(&call, leg);
            let dialog = match leg {
                Leg::A => call.a.dialog.as_mut(),
                Leg::B => call.b.dialog.as_mut(),
            };
            if let (Some(d), Some(target)) = (dialog, target) {
                let bye = d
                    .request(&Method::Bye, &via)
                    .header("Reason", &bye_reason)
                    .build_message();
                self.send_request(bye, target, ClientRole::Own);
            }
        }
        call.history.left(self.wall, "call_ended");
        // The Reason Tandem put in its BYEs when Tandem ended the call; a
        // party's own BYE has its Reason recorded already (if it had one).
        let party_hung_up = matches!(reason, "bye_caller" | "bye_server");
        if !party_hung_up && (bye_a || bye_b) {
            call.history.reason_header = Some(bye_reason);
        }
        let session = SessionId(call.media);
        let record = self.call_record(&call, self.wall, reason);
        self.out.push(Action::CallEnded(Box::new(record)));
        self.out.push(Action::RemoveMedia { session });
        self.obs.call_ended(reason, call.answered_at.is_some());
        self.obs.calls_active(self.store.len());
    }
}

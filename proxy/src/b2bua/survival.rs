//! Call survival: when a media server fails, its answered calls are
//! resumed on another member while the caller stays on the line.
//!
//! Detection feeds one queue: the pool's OPTIONS keepalive taking a member
//! down, media silence on leg B confirmed per member by a probe, and
//! in-dialog failures of leg B. The queue is drained at a fixed pace
//! (`survival.resume_rate`), so that a member with a thousand calls dying
//! sends the survivors a steady stream of INVITEs rather than a wall.
//!
//! A resume is a fresh leg B: new Call-ID and tags, leg A's identity and
//! carried headers, `X-Tandem-Resumed` for the new server's dialplan, and
//! the codec leg A already uses. When it answers, the relay's leg-B side
//! switches to the new server (with SSRC/sequence/timestamp continuity
//! toward leg A); leg A sees nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use media_relay::{SessionId, Side};
use sipcore::dialog::Dialog;
use sipcore::message::{Message, Method};
use sipcore::sdp::{Direction, Sdp};
use std::time::Instant;

use super::call::{CallState, Leg, ResumeMark, Resuming};
use super::journal::EventKind;
use super::{Action, ClientRole, Machine, SdpRole, TimerEvent};
use crate::media::{is_sdp, narrow_offer};

/// Survival's own state in the engine.
#[derive(Debug, Default)]
pub(super) struct Survival {
    /// Calls waiting for their resume INVITE, oldest first.
    queue: VecDeque<u64>,
    /// Resume INVITEs that may be sent now (token bucket).
    allowance: f64,
    last_refill: Option<Instant>,
    /// Per member: media silence seen, its confirming probe outstanding.
    suspect: Vec<bool>,
    /// Per member: when a suspicion was last cleared (no new one before
    /// a health interval has passed, so a silent call on a live server
    /// does not keep the member probed).
    cleared_at: Vec<Option<Instant>>,
}

impl Survival {
    /// Whether calls wait for their resume INVITE.
    pub(super) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Queues call `id` for a resume INVITE (a takeover adopts calls the
    /// old node had queued).
    pub(super) fn queue_resume(&mut self, id: u64) {
        self.queue.push_back(id);
    }

    /// Whether member `i` is suspect (media silence seen, its confirming
    /// probe outstanding).
    pub(super) fn is_suspect(&self, i: usize) -> bool {
        self.suspect.get(i).copied().unwrap_or(false)
    }

    /// Moves the per-member state to a new numbering of `n` members.
    pub(super) fn remap_members(&mut self, n: usize, map: impl Fn(usize) -> Option<usize>) {
        let mut suspect = vec![false; n];
        let mut cleared_at = vec![None; n];
        for (old, &s) in self.suspect.iter().enumerate() {
            if let Some(slot) = map(old).and_then(|new| suspect.get_mut(new)) {
                *slot = s;
            }
        }
        for (old, &c) in self.cleared_at.iter().enumerate() {
            if let Some(slot) = map(old).and_then(|new| cleared_at.get_mut(new)) {
                *slot = c;
            }
        }
        self.suspect = suspect;
        self.cleared_at = cleared_at;
    }
}

/// What the media of one member's answered calls says (see
/// [`Machine::media_by_member`]).
#[derive(Debug)]
struct MemberMedia {
    member: usize,
    refused: bool,
    silent: usize,
    counted: usize,
}

impl Machine {
    /// The member's calls go to the resume queue (keepalive or media said
    /// it is dead).
    pub(super) fn member_failed(&mut self, member: usize, reason: &str) {
        let ids: Vec<u64> = self
            .store
            .values()
            .filter(|c| c.b.member == member && c.resuming.is_none())
            .filter(|c| matches!(c.state, CallState::Answered | CallState::Confirmed))
            .map(|c| c.id)
            .collect();
        if !ids.is_empty() {
            tracing::warn!(
                member = %self.member_name(member),
                calls = ids.len(),
                reason,
                "media server failed: resuming its calls"
            );
        }
        for id in ids {
            self.call_failed(id, reason);
        }
        // Calls still ringing there go to another member as any failure
        // before the answer does; the trunk sees one call.
        let ringing: Vec<u64> = self
            .store
            .values()
            .filter(|c| c.b.member == member && c.b.invite_key.is_some())
            .filter(|c| matches!(c.state, CallState::Calling | CallState::Early))
            .map(|c| c.id)
            .collect();
        for id in ringing {
            self.release_member(id, "failed");
            self.try_next_member(id, "media server down");
        }
    }

    /// One answered call lost its media server: queue its resume (or end
    /// it, with survival off).
    pub(super) fn call_failed(&mut self, id: u64, reason: &str) {
        // Survival on, and the call's group resumes (a carrier or a PBX
        // group may not: its calls end with their server).
        let enabled = self.settings.survival.enabled
            && self
                .store
                .get(id)
                .is_some_and(|c| self.dests.resumes(c.b.member));
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        if call.resuming.is_some()
            || !matches!(call.state, CallState::Answered | CallState::Confirmed)
        {
            return;
        }
        if !enabled {
            tracing::info!(call = id, reason, "media server failed; survival is off");
            self.end_call(id, "media_server_failed", true, false);
            return;
        }
        let from = call.b.member;
        call.resuming = Some(Box::new(Resuming {
            from,
            reason: reason.to_owned(),
            detected_at: self.wall,
            tried: vec![from],
            hold_until: None,
            planned: false,
            to: None,
            detected: self.now,
        }));
        self.release_leg_b(id);
        self.survival.queue.push_back(id);
    }

    /// The operator moves an answered call off its member (`tandem
    /// move`): the same resume as for a failure, first to `to` if given.
    /// Returns whether the call was queued.
    pub(super) fn plan_move(&mut self, id: u64, to: Option<usize>) -> bool {
        let Some(call) = self.store.get_mut(id) else {
            return false;
        };
        if call.resuming.is_some()
            || !matches!(call.state, CallState::Answered | CallState::Confirmed)
        {
            return false;
        }
        let from = call.b.member;
        call.resuming = Some(Box::new(Resuming {
            from,
            reason: "moved by the operator".to_owned(),
            detected_at: self.wall,
            tried: vec![from],
            hold_until: None,
            planned: true,
            to,
            detected: self.now,
        }));
        self.release_leg_b(id);
        self.survival.queue.push_back(id);
        true
    }

    /// Lets go of the failed leg B: BYE (a server whose SIP still lives
    /// must not keep a ghost call), member count, Call-ID index.
    fn release_leg_b(&mut self, id: u64) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let target = self.leg_target(call, Leg::B);
        let via = self
            .tokens
            .via(&self.settings, self.leg_transport(call, Leg::B));
        // The CDR tells the operator's move from a failure's resume.
        let planned = call.resuming.as_ref().is_some_and(|r| r.planned);
        self.release_member(id, if planned { "moved" } else { "resumed_away" });
        let old_call_id = self.store.unindex_leg_b(id);
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        call.b.ack_pending = false;
        // The old member learns why its call ends: it failed, or the
        // operator moved the call (it is fine, and may be asked to drain).
        let reason = if call.resuming.as_ref().is_some_and(|r| r.planned) {
            "SIP;cause=200;text=\"call moved by the operator\""
        } else {
            "SIP;cause=503;text=\"media server failed, call moved\""
        };
        let bye = call.b.dialog.take().map(|mut d| {
            d.request(&Method::Bye, &via)
                .header("Reason", reason)
                .build_message()
        });
        if let (Some(bye), Some(target)) = (bye, target) {
            self.send_request(bye, target, ClientRole::Own);
        }
        self.store.acked(id, Leg::B);
        if let Some(old) = old_call_id {
            self.hung_up_b.insert(old, self.now);
        }
    }

    /// Sends the resume INVITEs the pace allows. Runs on the survival tick.
    pub(super) fn drain_resumes(&mut self) {
        let now = self.now;
        let rate = f64::from(self.settings.survival.resume_rate);
        let elapsed = self
            .survival
            .last_refill
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.survival.last_refill = Some(now);
        // A burst of at most a tenth of a second's worth (at least one).
        self.survival.allowance =
            (self.survival.allowance + rate * elapsed).min((rate / 10.0).max(1.0));
        while self.survival.allowance >= 1.0 {
            let Some(id) = self.survival.queue.pop_front() else {
                break;
            };
            if self
                .store
                .get(id)
                .and_then(|c| c.resuming.as_ref())
                .is_some()
            {
                self.survival.allowance -= 1.0;
                self.send_resume(id);
            }
        }
    }

    /// The resume INVITE to the next member, or what `on_no_server` says.
    fn send_resume(&mut self, id: u64) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let Some(r) = call.resuming.clone() else {
            return;
        };
        let from_name = self.member_name(r.from);
        let group = call.b.group;
        let (call_id, from_user) = super::invite::hash_keys(call, &self.dests);
        // The member the operator moves the call to, while it can take
        // it; else (or once it failed) any member as for a failure.
        let asked = r.to.filter(|&m| {
            !r.tried.contains(&m)
                && self.dests.group_of(m) == Some(group)
                && self
                    .member(m)
                    .is_some_and(|m| m.health == crate::pool::Health::Up && !m.draining)
        });
        let Some(member) =
            asked.or_else(|| self.dests.select(group, &r.tried, &call_id, &from_user))
        else {
            return self.no_server_left(id);
        };
        let offer = match (&call.b_local_sdp, &call.b_remote_sdp) {
            (Some(offer), Some(answer)) => match narrow_offer(offer, answer) {
                Ok(narrowed) => Some(narrowed),
                Err(e) => {
                    tracing::debug!(call = id, error = %e, "offering the last SDP unchanged");
                    Some(offer.clone())
                }
            },
            (offer, _) => offer.clone(),
        };
        let resumed = format!("{};from={from_name}", call.a.call_id);
        let sent = self.send_leg_b_invite(id, member, offer, &[("X-Tandem-Resumed", &resumed)]);
        if let Some(r) = self.store.get_mut(id).and_then(|c| c.resuming.as_mut()) {
            r.tried.push(member);
        }
        tracing::info!(
            call = id,
            from = %from_name,
            to = %self.member_name(member),
            "resume INVITE sent"
        );
        if !sent {
            self.resume_attempt_failed(id, "resume INVITE not sent");
        }
    }

    /// The member tried for a resume refused, timed out or could not be
    /// reached: try the next one (at the same pace as the rest).
    pub(super) fn resume_attempt_failed(&mut self, id: u64, why: &str) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let Some(r) = call.resuming.as_ref() else {
            return;
        };
        let (from, to) = (self.member_name(r.from), self.member_name(call.b.member));
        let planned = r.planned;
        self.count_resume(planned, &from, &to, "failed");
        // A move's attempt that failed tries the next member: the
        // operator's business, not a failure of the service.
        let kind = if planned {
            EventKind::MoveFailed
        } else {
            EventKind::ResumeFailed
        };
        self.journal
            .note(self.wall, kind, &from, &format!("{to}: {why}"));
        tracing::info!(call = id, member = %to, why, "resume attempt failed");
        self.mark_resume(id, from, to, "failed");
        self.release_member(id, "failed");
        self.store.unindex_leg_b(id);
        self.survival.queue.push_back(id);
    }

    /// No member left for a resume.
    fn no_server_left(&mut self, id: u64) {
        let hold_s = self.settings.survival.hold_retry_s;
        let Some((from, planned)) = self
            .store
            .get(id)
            .and_then(|c| c.resuming.as_ref())
            .map(|r| (self.member_name(r.from), r.planned))
        else {
            return;
        };
        // A moved call's old leg is gone already: it waits for a member
        // (for `hold_retry_s`) rather than being hung up at once.
        let hold = self.settings.survival.hold_on_no_server || planned;
        let Some(r) = self.store.get_mut(id).and_then(|c| c.resuming.as_mut()) else {
            return;
        };
        let now = self.wall;
        if hold {
            let until = *r.hold_until.get_or_insert(now + hold_s * 1000);
            if now < until {
                // Retry every member but the one that failed, in a second.
                r.tried.truncate(1);
                self.timers.at(
                    self.now + std::time::Duration::from_secs(1),
                    TimerEvent::ResumeRetry { call: id },
                );
                return;
            }
            self.count_resume(planned, &from, "", "gave_up");
            self.mark_resume(id, from.clone(), String::new(), "gave_up");
        } else {
            self.count_resume(planned, &from, "", "no_server");
            self.mark_resume(id, from.clone(), String::new(), "no_server");
        }
        self.journal.note(
            self.wall,
            EventKind::ResumeFailed,
            &from,
            "no media server left: call ended",
        );
        tracing::warn!(call = id, from = %from, "no media server left for the call; hanging up");
        self.end_call(id, "no_media_server", true, false);
    }

    /// One resume attempt's end, counted as a resume (a failure) or as a
    /// move (the operator's), so that alerts on resumes stay about
    /// failures.
    fn count_resume(&mut self, planned: bool, from: &str, to: &str, outcome: &str) {
        if planned {
            self.obs.call_moved(from, to, outcome);
        } else {
            self.obs.call_resumed(from, to, outcome);
        }
    }

    /// A resume attempt's end, for the call's CDR.
    fn mark_resume(&mut self, id: u64, from: String, to: String, outcome: &str) {
        let at = self.wall;
        if let Some(call) = self.store.get_mut(id) {
            call.history.resumed(ResumeMark {
                at,
                from,
                to,
                outcome: outcome.to_owned(),
            });
        }
    }

    pub(super) fn resume_retry(&mut self, id: u64) {
        if self.store.get(id).is_some_and(|c| c.resuming.is_some()) {
            self.survival.queue.push_back(id);
        }
    }

    /// A response to a resume INVITE (provisional ones are not forwarded:
    /// leg A is already answered).
    pub(super) fn on_resume_response(&mut self, id: u64, response: Message) {
        let status = response.status().unwrap_or(0);
        match status {
            0..=199 => {
                if let Some(c) = self.store.get_mut(id) {
                    c.b.provisional = true;
                }
            }
            200..=299 => self.on_resume_answer(id, response),
            _ => self.resume_attempt_failed(id, &format!("answered {status}")),
        }
    }

    fn on_resume_answer(&mut self, id: u64, response: Message) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let member = call.b.member;
        let local_contact = self.contact(self.leg_transport(call, Leg::B));
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        let dialog = match Dialog::from_uac_response(&call.b.invite, &response, &local_contact) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "resume 2xx cannot make a dialog");
                self.reject_late_2xx(&response);
                return self.resume_attempt_failed(id, "2xx without a usable Contact");
            }
        };
        call.b.dialog = Some(dialog);
        call.b.invite_key = None;
        let session = SessionId(call.media);
        let new_addr = answer_rtp_addr(&response);
        let rtcp_mux = answer_rtcp_mux(&response);
        let previous = call.b_remote_sdp.clone();
        if is_sdp(response.content_type()) && !response.body().is_empty() {
            call.set_b_remote_sdp(Bytes::copy_from_slice(response.body()));
        }
        self.send_leg_b_ack(id, None);
        let sip_source = self.member(member).map(|m| m.address.ip());
        match new_addr {
            Some(addr) => self.out.push(Action::SwitchUpstream {
                session,
                addr,
                sip_source,
                rtcp_mux,
            }),
            None => tracing::warn!(
                call = id,
                "relay not switched to the new server: the answer has no RTP address"
            ),
        }
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        let Some(r) = call.resuming.take() else {
            return;
        };
        call.resumes += 1;
        if r.planned {
            call.moves += 1;
        }
        call.history.answered(self.wall);
        let codec_changed = codec_changed(previous.as_deref(), call.b_remote_sdp.as_deref());
        let from = self.member_name(r.from);
        let to = self.member_name(member);
        if codec_changed {
            // The new server insisted on another codec: leg A must hear of
            // it, or the trunk decodes garbage.
            self.reoffer_leg_a(id);
        }
        self.count_resume(r.planned, &from, &to, "ok");
        self.mark_resume(id, from.clone(), to.clone(), "ok");
        if !r.planned {
            self.obs
                .resume_latency(self.now.saturating_duration_since(r.detected));
        }
        let kind = if r.planned {
            EventKind::CallMoved
        } else {
            EventKind::ResumeOk
        };
        self.journal
            .note(self.wall, kind, &from, &format!("to {to}"));
        tracing::info!(
            call = id,
            from = %from,
            to = %to,
            reason = %r.reason,
            ms = self.now.saturating_duration_since(r.detected).as_millis() as u64,
            "call resumed"
        );
    }

    /// A re-INVITE on leg A offering what the new server answered
    /// (rewritten to the relay), sent when a resume changed the codec.
    fn reoffer_leg_a(&mut self, id: u64) {
        let Some(sdp) = self.store.get(id).and_then(|c| c.b_remote_sdp.clone()) else {
            return;
        };
        let body = match self.relay_sdp(id, Side::B, &sdp, SdpRole::Offer) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(call = id, error = %e, "cannot re-offer leg A");
                return;
            }
        };
        let Some(call) = self.store.get(id) else {
            return;
        };
        let transport = call.a.transport;
        let target = self.leg_target(call, Leg::A);
        let via = self.tokens.via(&self.settings, transport);
        let contact = self.contact(transport);
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        let (Some(dialog), Some(target)) = (call.a.dialog.as_mut(), target) else {
            return;
        };
        let req = dialog
            .request(&Method::Invite, &via)
            .header("Contact", &contact)
            .header("Max-Forwards", "70")
            .body("application/sdp", body)
            .build_message();
        call.offer_pending = true;
        self.send_request(req, target, ClientRole::Reoffer { call: id });
    }

    /// Media silence: leg B quiet while leg A talks makes the member
    /// suspect; its probe then decides. Runs on the survival tick.
    pub(super) fn check_media_silence(&mut self) {
        let silence_ms = self.settings.survival.media_silence_ms;
        if silence_ms == 0 || !self.settings.survival.enabled {
            return;
        }
        let members = self.dests.len();
        self.survival.suspect.resize(members, false);
        self.survival.cleared_at.resize(members, None);
        let cooldown = self.settings.probe_interval;
        let mut newly: Vec<(usize, &str)> = Vec::new();
        for m in self.media_by_member(silence_ms) {
            // Only a member that answers OPTIONS can have a suspicion
            // confirmed or cleared by a probe.
            if !self.dests.probed(m.member) {
                continue;
            }
            if m.silent > 0 {
                newly.push((m.member, "media silence on leg B"));
            } else if m.refused {
                newly.push((m.member, "media server's RTP port refuses packets"));
            }
        }
        newly.retain(|&(m, _)| {
            !self.survival.suspect.get(m).copied().unwrap_or(true)
                && self.survival.cleared_at.get(m).is_some_and(|c| {
                    c.is_none_or(|t| self.now.saturating_duration_since(t) >= cooldown)
                })
        });
        for (member, why) in newly {
            if let Some(s) = self.survival.suspect.get_mut(member) {
                *s = true;
            }
            let name = self.member_name(member);
            tracing::info!(member = %name, why, "member suspect, probing");
            self.obs.member_state(&name, "suspect");
            self.journal_member(member, EventKind::MemberSuspect, why);
            let timeout =
                std::time::Duration::from_millis(self.settings.survival.suspect_probe_timeout_ms);
            self.send_probe(member, timeout);
        }
    }

    /// One pass over the answered calls that are not being moved, per
    /// member: whether a leg-B peer refused RTP (ICMP port unreachable) in
    /// the last second — on a LAN, a media server process that died says
    /// so within one packet — and the calls that count for silence
    /// (answered long enough, not on hold, leg A's RTP arriving), of which
    /// how many are silent on leg B. Both are only suspicions: the probe
    /// decides.
    fn media_by_member(&self, silence_ms: u64) -> Vec<MemberMedia> {
        let recent = std::time::Duration::from_secs(1);
        let mut out: Vec<MemberMedia> = Vec::new();
        let now = self.wall;
        for call in self.store.values() {
            if call.state != CallState::Confirmed && call.state != CallState::Answered {
                continue;
            }
            if call.resuming.is_some() {
                continue;
            }
            if !out.iter().any(|e| e.member == call.b.member) {
                out.push(MemberMedia {
                    member: call.b.member,
                    refused: false,
                    silent: 0,
                    counted: 0,
                });
            }
            let Some(entry) = out.iter_mut().find(|e| e.member == call.b.member) else {
                continue;
            };
            let session = SessionId(call.media);
            if !entry.refused {
                let refused = self.media.refused_since(session, Side::B);
                entry.refused = refused.is_some_and(|d| d < recent);
            }
            if call.b_held {
                continue;
            }
            // A node that took the call over has seen its media only
            // since then.
            let since = call.answered_at.unwrap_or(now).max(self.serving_since);
            if now.saturating_sub(since) < silence_ms {
                continue;
            }
            let idle_ms = |side| -> Option<u64> {
                self.media
                    .idle(session, side)
                    .ok()
                    .map(|d| d.map_or(u64::MAX, |d| d.as_millis() as u64))
            };
            let (Some(a), Some(b)) = (idle_ms(Side::A), idle_ms(Side::B)) else {
                continue;
            };
            if a >= silence_ms {
                // The caller is quiet too: nothing to compare with.
                continue;
            }
            entry.counted += 1;
            if b >= silence_ms {
                entry.silent += 1;
            }
        }
        out
    }

    /// The outcome of a probe of a suspect member: no answer confirms the
    /// failure; an answer clears it unless every call that counts on the
    /// member is silent (its SIP lives but its media is dead).
    /// Returns true when the member is failed by this.
    pub(super) fn settle_suspect(&mut self, member: usize, alive: bool) -> bool {
        if !self.survival.suspect.get(member).copied().unwrap_or(false) {
            return false;
        }
        if let Some(s) = self.survival.suspect.get_mut(member) {
            *s = false;
        }
        let name = self.member_name(member);
        let media_dead = alive && {
            let silence_ms = self.settings.survival.media_silence_ms;
            let min_calls = self.settings.survival.media_dead_min_calls.max(1);
            self.media_by_member(silence_ms)
                .iter()
                .any(|m| m.member == member && m.silent >= min_calls && m.silent == m.counted)
        };
        if alive && !media_dead {
            tracing::info!(member = %name, "suspect member answered and has live media: cleared");
            if let Some(c) = self.survival.cleared_at.get_mut(member) {
                *c = Some(self.now);
            }
            self.obs.member_state(&name, "up");
            self.journal_member(member, EventKind::MemberCleared, "answered, media alive");
            return false;
        }
        let why = if alive {
            "media_silence"
        } else {
            "probe_after_silence"
        };
        if let Some(change) = self.dests.force_down(member) {
            tracing::warn!(member = %name, why, "media server is down");
            self.obs
                .member_health(&name, change.now == crate::pool::Health::Up);
            self.journal_member(member, EventKind::MemberDown, why);
        }
        self.member_failed(member, why);
        true
    }

    /// In-dialog failure on leg B (408/481/503 or no answer): resume.
    pub(super) fn leg_b_in_dialog_failure(&mut self, id: u64, why: &str) {
        if self.settings.survival.in_dialog_failure {
            tracing::info!(call = id, why, "in-dialog failure on leg B");
            self.call_failed(id, why);
        }
    }
}

/// The RTP address of the first stream of a response's SDP.
fn answer_rtp_addr(response: &Message) -> Option<SocketAddr> {
    if !is_sdp(response.content_type()) {
        return None;
    }
    let sdp = Sdp::parse(response.body()).ok()?;
    let m = sdp.media().first()?;
    let ip = m.connection().filter(|ip| !ip.is_unspecified())?;
    (!m.is_rejected()).then(|| SocketAddr::new(ip, m.port()))
}

/// Whether an answer's first stream accepts rtcp-mux (RFC 5761).
fn answer_rtcp_mux(response: &Message) -> bool {
    is_sdp(response.content_type())
        && Sdp::parse(response.body())
            .ok()
            .and_then(|sdp| sdp.media().first().map(|m| m.rtcp_mux()))
            .unwrap_or(false)
}

/// Whether either side of leg B's last exchange holds the stream (any
/// direction but sendrecv): such a call is quiet on purpose.
pub(super) fn on_hold(local: Option<&[u8]>, remote: Option<&[u8]>) -> bool {
    [local, remote].into_iter().flatten().any(|body| {
        Sdp::parse(body)
            .ok()
            .and_then(|s| {
                s.media()
                    .first()
                    .map(|m| m.direction() != Direction::SendRecv || m.is_on_hold())
            })
            .unwrap_or(false)
    })
}

/// Whether two answers chose different codecs (encoding name and clock
/// rate of the first stream's first format).
fn codec_changed(before: Option<&[u8]>, after: Option<&[u8]>) -> bool {
    let codec = |b: &[u8]| -> Option<(String, u32)> {
        let sdp = Sdp::parse(b).ok()?;
        let m = sdp.media().first()?;
        let c = m.codec()?;
        Some(match c.rtpmap {
            Some(r) => (r.encoding.to_ascii_lowercase(), r.clock_rate),
            // Static payload types (RFC 3551) often come without rtpmap.
            None => match c.format {
                "0" => ("pcmu".to_owned(), 8000),
                "8" => ("pcma".to_owned(), 8000),
                "9" => ("g722".to_owned(), 8000),
                "18" => ("g729".to_owned(), 8000),
                other => (other.to_owned(), 8000),
            },
        })
    };
    match (before.and_then(codec), after.and_then(codec)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;

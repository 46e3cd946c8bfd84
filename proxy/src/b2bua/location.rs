//! A call to a registered AOR (the routing action `location`): its
//! contacts ring as legs B of their own (forks), all at once (parallel)
//! or one after another by q (sequential). The first 2xx wins and becomes
//! the call's leg B; the others are cancelled, and a 2xx that arrives
//! after its fork was given up is ACKed and hung up (RFC 3261 §16.7 as a
//! B2BUA does it). A fork that fails is one answer among several: the
//! caller hears the best of them (§16.7 step 6) only when none is left.
//!
//! A leg B to a phone is sent over the flow the phone registered on (its
//! source address, its TCP connection), never to a private Contact.

use media_relay::Side;
use sipcore::message::Message;
use sipcore::transaction::ClientKey;

use super::call::{push_exact, CallState, LegB, PhoneTarget};
use super::in_dialog::cancel_for;
use super::{ClientRole, Machine, TimerEvent};
use crate::config::ForkMode;
use crate::media::is_sdp;

impl Machine {
    /// The contacts of `user` at `host` (a registrar domain, else the
    /// first one), best first; the AOR. Empty without a registrar.
    pub(super) fn location_contacts(&self, user: &str, host: &str) -> (String, Vec<PhoneTarget>) {
        let Some(reg) = self.registrar.as_ref() else {
            return (format!("{user}@{host}"), Vec::new());
        };
        let domains = &reg.bindings.settings().domains;
        let domain = if domains.iter().any(|d| d == host) {
            host
        } else {
            domains.first().map_or(host, String::as_str)
        };
        let aor = format!("{user}@{domain}");
        let contacts = reg
            .bindings
            .lookup(&aor, self.wall)
            .into_iter()
            .map(|b| PhoneTarget {
                aor: aor.clone(),
                uri: b.contact.clone(),
                path: b.path.clone(),
                flow: b.flow.clone(),
            })
            .collect();
        (aor, contacts)
    }

    /// Rings the next contacts: every pending one (parallel) or the next
    /// (sequential). When nothing rings and nothing is left, leg A gets
    /// the best answer heard.
    pub(super) fn ring_next(&mut self, id: u64) {
        loop {
            let Some(f) = self.store.get_mut(id).and_then(|c| c.forking.as_mut()) else {
                return;
            };
            if !f.ringing.is_empty() {
                return;
            }
            let batch: Vec<PhoneTarget> = match f.mode {
                ForkMode::Parallel => std::mem::take(&mut f.pending),
                ForkMode::Sequential if f.pending.is_empty() => Vec::new(),
                ForkMode::Sequential => vec![f.pending.remove(0)],
            };
            if batch.is_empty() {
                // No answer, or "try elsewhere" (503), from every phone
                // is "not available" to the caller, not a server error.
                let (status, reason) = f
                    .best
                    .clone()
                    .filter(|(s, _)| !matches!(s, 408 | 503))
                    .unwrap_or((480, "Temporarily Unavailable".to_owned()));
                return self.fail_call(id, status, &reason, None, "rejected");
            }
            for phone in batch {
                self.send_fork(id, phone);
            }
            // A fork whose send failed at once is not ringing: go on.
        }
    }

    /// Sends one fork's INVITE to `phone`.
    fn send_fork(&mut self, id: u64, phone: PhoneTarget) {
        let Some(call) = self.store.get(id) else {
            return;
        };
        let offer = call.offer.clone();
        let (user, host) = phone.aor.split_once('@').unwrap_or(("", &phone.aor));
        let (user, host) = (user.to_owned(), host.to_owned());
        let routes = phone.path.clone();
        let Some((invite, call_id, tag)) = self.build_leg_b_invite(
            id,
            &phone.uri,
            (
                Some(&user).filter(|u| !u.is_empty()).map(String::as_str),
                &host,
            ),
            phone.flow.transport,
            offer.as_ref(),
            &[],
            &routes,
        ) else {
            return;
        };
        let target = phone.target();
        let Some(key) = self.send_request(
            Ok(invite.clone()),
            target,
            ClientRole::Fork { call: id, target },
        ) else {
            return;
        };
        let leg = LegB {
            call_id,
            local_tag: tag,
            group: usize::MAX,
            member: usize::MAX,
            tried: Vec::new(),
            invite: super::kept_leg_b_invite(&invite),
            invite_key: Some(key.clone()),
            dialog: None,
            provisional: false,
            ack_pending: false,
            cancel_sent: false,
            phone: Some(Box::new(phone)),
        };
        let Some(f) = self.store.get_mut(id).and_then(|c| c.forking.as_mut()) else {
            return;
        };
        let timeout = f.timeout_s;
        let sequential = f.mode == ForkMode::Sequential;
        f.ringing.push(leg);
        if sequential {
            self.timers.at(
                self.now + std::time::Duration::from_secs(u64::from(timeout)),
                TimerEvent::ForkTimeout { call: id, key },
            );
        }
    }

    /// A response to a fork's INVITE.
    pub(super) fn on_fork_response(
        &mut self,
        id: u64,
        key: ClientKey,
        target: sipcore::transport::Target,
        response: Message,
    ) {
        let status = response.status().unwrap_or(0);
        let Some(call) = self.store.get_mut(id) else {
            // The call is over: a phone that answers now is hung up.
            if (200..300).contains(&status) {
                self.reject_late_2xx_at(&response, Some(target));
            }
            return;
        };
        let state = call.state;
        let Some(f) = call.forking.as_mut() else {
            if (200..300).contains(&status) {
                self.reject_late_2xx_at(&response, Some(target));
            }
            return;
        };
        if status == 100 {
            return;
        }
        let mine = |l: &LegB| l.invite_key.as_ref() == Some(&key);
        if let Some(i) = f.abandoned.iter().position(mine) {
            return self.on_abandoned_response(id, i, target, &response);
        }
        let Some(i) = f.ringing.iter().position(mine) else {
            if (200..300).contains(&status) {
                self.reject_late_2xx_at(&response, Some(target));
            }
            return;
        };
        if state == CallState::Cancelling {
            // on_cancel abandoned every fork; a fork still ringing here
            // was sent after it: abandon it now.
            let leg = f.ringing.remove(i);
            f.abandoned.push(leg);
            let j = f.abandoned.len() - 1;
            return self.on_abandoned_response(id, j, target, &response);
        }
        match status {
            101..=199 => {
                if let Some(leg) = f.ringing.get_mut(i) {
                    leg.provisional = true;
                }
                let only = f.ringing.len() == 1 && f.pending.is_empty();
                self.forward_fork_provisional(id, response, only);
            }
            200..=299 => self.fork_answered(id, i, response),
            _ => {
                let leg = f.ringing.remove(i);
                let reason = response.reason_phrase().unwrap_or("").to_owned();
                f.best = Some(better(f.best.take(), (status, reason)));
                tracing::info!(call = id, contact = ?leg.phone.as_ref().map(|p| &p.uri), status, "fork refused");
                if (600..700).contains(&status) {
                    // A 6xx ends the search (§16.7 step 5).
                    f.pending.clear();
                    self.abandon_ringing(id);
                    let reason = response.reason_phrase().unwrap_or("Decline").to_owned();
                    return self.fail_call(id, status, &reason, None, "rejected");
                }
                self.ring_next(id);
            }
        }
    }

    /// A fork failed without an answer (timeout, transport error).
    pub(super) fn on_fork_failure(&mut self, id: u64, key: &ClientKey) {
        let Some(f) = self.store.get_mut(id).and_then(|c| c.forking.as_mut()) else {
            return;
        };
        let mine = |l: &LegB| l.invite_key.as_ref() == Some(key);
        if let Some(i) = f.abandoned.iter().position(mine) {
            f.abandoned.remove(i);
            return self.cancelled_forks_done(id);
        }
        let Some(i) = f.ringing.iter().position(mine) else {
            return;
        };
        f.ringing.remove(i);
        f.best = Some(better(f.best.take(), (408, "Request Timeout".into())));
        if self
            .store
            .get(id)
            .is_some_and(|c| c.state == CallState::Cancelling)
        {
            return self.cancelled_forks_done(id);
        }
        self.ring_next(id);
    }

    /// Sequential forking: the contact rang long enough.
    pub(super) fn on_fork_timeout(&mut self, id: u64, key: ClientKey) {
        let Some(f) = self.store.get_mut(id).and_then(|c| c.forking.as_mut()) else {
            return;
        };
        let Some(i) = f
            .ringing
            .iter()
            .position(|l| l.invite_key.as_ref() == Some(&key))
        else {
            return;
        };
        let leg = f.ringing.remove(i);
        // Not an answer of the phone's: ranked as no answer (408), which
        // the caller hears as 480 only when no phone said more.
        f.best = Some(better(f.best.take(), (408, "Request Timeout".into())));
        f.abandoned.push(leg);
        let j = f.abandoned.len() - 1;
        self.cancel_abandoned(id, j);
        self.ring_next(id);
    }

    /// The first 2xx: this fork is the call's leg B from now on; the
    /// others are given up.
    fn fork_answered(&mut self, id: u64, i: usize, response: Message) {
        let Some(call) = self.store.get_mut(id) else {
            return;
        };
        let Some(f) = call.forking.as_mut() else {
            return;
        };
        let leg = f.ringing.remove(i);
        f.pending.clear();
        let name = leg
            .phone
            .as_ref()
            .map_or_else(String::new, |p| format!("phone:{}", p.aor));
        call.history.tried(&name, self.wall);
        push_exact(&mut call.servers, (name, self.wall));
        if let Some(offer) = call.offer.clone() {
            call.set_b_local_sdp(offer);
        }
        if !self.store.set_leg_b(id, leg) {
            tracing::error!(call = id, "answering fork not stored as leg B");
        }
        self.abandon_ringing(id);
        self.on_leg_b_answer(id, response);
    }

    /// Every fork still ringing is given up (CANCEL once provisional).
    pub(super) fn abandon_ringing(&mut self, id: u64) {
        let Some(f) = self.store.get_mut(id).and_then(|c| c.forking.as_mut()) else {
            return;
        };
        let start = f.abandoned.len();
        let ringing = std::mem::take(&mut f.ringing);
        f.abandoned.extend(ringing);
        let end = f.abandoned.len();
        for j in start..end {
            self.cancel_abandoned(id, j);
        }
    }

    /// The caller cancelled a forking call: every fork is given up; the
    /// call ends when the last one has answered.
    pub(super) fn cancel_forks(&mut self, id: u64) {
        let Some(f) = self.store.get_mut(id).and_then(|c| c.forking.as_mut()) else {
            return;
        };
        f.pending.clear();
        self.abandon_ringing(id);
        self.cancelled_forks_done(id);
    }

    /// A cancelled call whose forks all answered ends.
    fn cancelled_forks_done(&mut self, id: u64) {
        let done = self.store.get(id).is_some_and(|c| {
            c.state == CallState::Cancelling
                && c.forking
                    .as_ref()
                    .is_none_or(|f| f.ringing.is_empty() && f.abandoned.is_empty())
        });
        if done {
            self.end_call(id, "cancelled", false, false);
        }
    }

    /// Sends the CANCEL of abandoned fork `j` if it may be sent now (a
    /// provisional came, §9.1) and was not sent yet.
    fn cancel_abandoned(&mut self, id: u64, j: usize) {
        let Some(leg) = self
            .store
            .get_mut(id)
            .and_then(|c| c.forking.as_mut())
            .and_then(|f| f.abandoned.get_mut(j))
        else {
            return;
        };
        if !leg.provisional || leg.cancel_sent {
            return;
        }
        leg.cancel_sent = true;
        let bytes = cancel_for(&leg.invite);
        let Some(target) = leg.phone.as_deref().map(PhoneTarget::target) else {
            return;
        };
        self.send_request(bytes, target, ClientRole::Own);
    }

    /// An answer of a fork given up: a provisional lets its CANCEL go, a
    /// 2xx is ACKed and hung up, a final answer ends it.
    fn on_abandoned_response(
        &mut self,
        id: u64,
        j: usize,
        target: sipcore::transport::Target,
        response: &Message,
    ) {
        let status = response.status().unwrap_or(0);
        match status {
            101..=199 => {
                if let Some(leg) = self
                    .store
                    .get_mut(id)
                    .and_then(|c| c.forking.as_mut())
                    .and_then(|f| f.abandoned.get_mut(j))
                {
                    leg.provisional = true;
                }
                self.cancel_abandoned(id, j);
            }
            _ => {
                if (200..300).contains(&status) {
                    self.reject_late_2xx_at(response, Some(target));
                }
                if let Some(f) = self.store.get_mut(id).and_then(|c| c.forking.as_mut()) {
                    if j < f.abandoned.len() {
                        f.abandoned.remove(j);
                    }
                }
                self.cancelled_forks_done(id);
            }
        }
    }

    /// A fork rings: leg A hears it. Early media is relayed only when this
    /// fork is the only one (two phones' early media cannot share leg A).
    fn forward_fork_provisional(&mut self, id: u64, response: Message, only: bool) {
        let early_media = if only && !response.body().is_empty() && is_sdp(response.content_type())
        {
            let role = self.role_of_leg_b_sdp(id);
            self.relay_sdp(id, Side::B, response.body(), role).ok()
        } else {
            None
        };
        let status = response.status().unwrap_or(180);
        // A 183 whose early media is not relayed is plain ringing.
        let (status, reason) = if early_media.is_none() && status == 183 {
            (180, "Ringing")
        } else {
            (status, response.reason_phrase().unwrap_or("Ringing"))
        };
        self.ring_leg_a(id, status, reason, early_media);
    }
}

/// The better of two final answers for the caller (§16.7 step 6): a 6xx
/// over anything; otherwise the lowest class, and within a class the
/// first; 408 and 503 only when nothing else came (a phone that did not
/// answer says less than one that was busy).
fn better(best: Option<(u16, String)>, new: (u16, String)) -> (u16, String) {
    let Some(best) = best else {
        return new;
    };
    let rank = |s: u16| match s {
        600..=699 => 0,
        408 | 503 => 9,
        s => s / 100,
    };
    if rank(new.0) < rank(best.0) {
        new
    } else {
        best
    }
}

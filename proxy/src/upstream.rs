//! Dual registration as plain data: Tandem registers its phones' AORs
//! with the central registrar on their behalf (Contact = Tandem), so the
//! centre's calls to a phone come through Tandem, and Tandem — not the
//! phones — renews them when the WAN comes back.
//!
//! One [`Registration`] per AOR that has local bindings (so the table is
//! bounded by the registrar's `max_bindings`), with one Call-ID and an
//! increasing CSeq (RFC 3261 §10.2.4) and the last digest challenge, which
//! refreshes answer pre-emptively with the nonce count going up.
//!
//! Events in: a local binding added or removed ([`Upstream::binding`]),
//! the answer to our REGISTER ([`Upstream::on_answer`]) or its failure
//! ([`Upstream::on_failure`]), a tick ([`Upstream::tick`]), the WAN's
//! state ([`Upstream::set_wan_down`]). Out: [`UpstreamRequest`]s, "send
//! this REGISTER for AOR X"; the call machine (`b2bua::upstream`) builds
//! and sends them.
//!
//! * While the WAN is down nothing is sent (no REGISTER storm into a dead
//!   link), and every registration is due for renewal when it returns.
//! * When the WAN returns, at start-up and at a takeover, the renewals are
//!   paced: spread evenly over `renew_window`, so at most
//!   `ceil(n / window)` go out in any second — never a burst.
//! * A refresh is due at 1/2 to 2/3 of the granted time, the fraction
//!   drawn per AOR and round from a hash, so phones that registered
//!   together do not refresh together.
//!
//! Nothing here reads a clock or a socket.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sipcore::digest::Challenge;

/// `[registrar.upstream]`, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// The central registrar (`host:port`, an IP literal).
    pub registrar: SocketAddr,
    /// The central digest realm (its HA1 lines are in the credentials
    /// file).
    pub realm: String,
    /// The AOR domain at the centre (To/From and Request-URI host).
    pub domain: String,
    /// The registration time asked for (seconds).
    pub expires_s: u32,
    /// Renewals after a WAN outage, a start or a takeover are spread over
    /// this.
    pub renew_window: Duration,
    /// The `[[wan]]` the centre lies across: while it is down nothing is
    /// sent.
    pub wan: Option<String>,
}

/// Where an AOR's upstream registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpState {
    /// Not registered at the centre (new, or renewal pending).
    Unregistered,
    /// A REGISTER is out.
    Registering,
    /// The centre granted it until then.
    Registered { until: Instant },
    /// The centre refused it (or did not answer: 408); tried again then.
    Failed { status: u16, retry_at: Instant },
    /// A REGISTER with Expires: 0 is out (the last local binding went).
    Removing,
}

/// Every state's label (metrics, admin), in one order.
pub const STATE_LABELS: [&str; 5] = [
    "unregistered",
    "registering",
    "registered",
    "failed",
    "removing",
];

impl UpState {
    fn index(self) -> usize {
        match self {
            UpState::Unregistered => 0,
            UpState::Registering => 1,
            UpState::Registered { .. } => 2,
            UpState::Failed { .. } => 3,
            UpState::Removing => 4,
        }
    }

    pub fn label(self) -> &'static str {
        STATE_LABELS
            .get(self.index())
            .copied()
            .unwrap_or("unregistered")
    }

    fn in_flight(self) -> bool {
        matches!(self, UpState::Registering | UpState::Removing)
    }
}

/// One AOR's registration at the centre.
#[derive(Debug, Clone)]
pub struct Registration {
    pub state: UpState,
    /// One Call-ID per AOR for as long as Tandem keeps it (§10.2.4).
    pub call_id: String,
    /// The CSeq of the last REGISTER sent.
    pub cseq: u32,
    /// Local bindings exist: the AOR belongs at the centre.
    wanted: bool,
    /// The centre may hold a binding of ours (a 2xx granted one and none
    /// removed it since): what a removal is sent for.
    at_centre: bool,
    /// When the next REGISTER is due (its entry in `Upstream::due`).
    due: Option<Instant>,
    /// The last challenge, answered pre-emptively (`nc` counting up).
    challenge: Option<Challenge>,
    /// It came in a 407 (Proxy-Authorization), not a 401.
    proxy: bool,
    nc: u32,
    /// The nonce the request out answered: a challenge with it again means
    /// the credentials are wrong.
    answered_nonce: Option<String>,
    /// Requests of this round (challenge answers, 423 retries): bounded.
    tries: u32,
    /// The time asked for (raised by a 423's Min-Expires).
    expires_s: u32,
    /// Failures in a row (the backoff doubles with each).
    failures: u32,
}

impl Registration {
    /// A wanted registration (the AOR has local bindings), nothing sent
    /// in this process yet.
    fn new(state: UpState, call_id: String, cseq: u32, at_centre: bool) -> Registration {
        Registration {
            state,
            call_id,
            cseq,
            wanted: true,
            at_centre,
            due: None,
            challenge: None,
            proxy: false,
            nc: 0,
            answered_nonce: None,
            tries: 0,
            expires_s: 0,
            failures: 0,
        }
    }
}

/// "Send this REGISTER for AOR `aor`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    pub aor: String,
    pub call_id: String,
    pub cseq: u32,
    /// 0: the binding at the centre is removed.
    pub expires_s: u32,
    pub auth: Option<AuthAnswer>,
}

/// The challenge to answer, with its nonce count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAnswer {
    pub challenge: Challenge,
    pub nc: u32,
    /// Proxy-Authorization (a 407's), else Authorization.
    pub proxy: bool,
}

/// The centre's final answer to our REGISTER, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// 2xx: the time granted to our Contact (its `expires`, else the
    /// Expires header).
    pub granted_s: Option<u32>,
    /// 423: Min-Expires.
    pub min_expires: Option<u32>,
    /// 401/407: the challenge we can answer (our realm, an algorithm we
    /// hold an HA1 for), if any.
    pub challenge: Option<Challenge>,
    pub proxy: bool,
    /// Retry-After of an error (seconds).
    pub retry_after_s: Option<u32>,
}

/// What became of a final answer (metrics: `tandem_upstream_register_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Registered,
    Removed,
    Challenged,
    /// A 423: asked again for the Min-Expires.
    Retried,
    Failed,
    /// Not ours (no request out for the AOR): ignored.
    Stale,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Registered => "registered",
            Outcome::Removed => "removed",
            Outcome::Challenged => "challenged",
            Outcome::Retried => "interval_too_brief",
            Outcome::Failed => "failed",
            Outcome::Stale => "stale",
        }
    }
}

/// Requests of one round beyond the first (two challenge answers — one
/// may be stale — and a 423 retry): a centre that keeps asking is failed.
const MAX_TRIES: u32 = 3;
/// Backoff after a failure: doubling from this...
const BACKOFF_FIRST: Duration = Duration::from_secs(30);
/// ...to at most this.
const BACKOFF_MAX: Duration = Duration::from_secs(1800);
/// Failed removals (Expires: 0) of an AOR before it is given up.
const MAX_REMOVAL_FAILURES: u32 = 3;
/// A 423 asking for more than a day is not followed.
const MAX_EXPIRES_S: u32 = 86_400;

/// Every upstream registration.
pub struct Upstream {
    settings: UpstreamSettings,
    regs: HashMap<Arc<str>, Registration>,
    /// `(due, AOR)` of every registration with something to send: the
    /// tick takes the front, nothing scans the table.
    due: BTreeSet<(Instant, Arc<str>)>,
    /// Registrations per state (gauges), kept as states change.
    counts: [usize; 5],
    wan_down: bool,
    /// Call-IDs: this prefix (random per process, from the caller) and a
    /// counter.
    call_id_prefix: String,
    call_ids: u64,
    /// AORs whose replicated form changed since `take_changed`.
    changed: BTreeSet<Arc<str>>,
}

impl Upstream {
    pub fn new(settings: UpstreamSettings, call_id_prefix: String) -> Upstream {
        Upstream {
            settings,
            regs: HashMap::new(),
            due: BTreeSet::new(),
            counts: [0; 5],
            wan_down: false,
            call_id_prefix,
            call_ids: 0,
            changed: BTreeSet::new(),
        }
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// A new configuration (SIGHUP): applies to the next requests.
    pub fn set_settings(&mut self, settings: UpstreamSettings) {
        self.settings = settings;
    }

    pub fn get(&self, aor: &str) -> Option<&Registration> {
        self.regs.get(aor)
    }

    pub fn len(&self) -> usize {
        self.regs.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }

    /// Registrations per state, in [`STATE_LABELS`] order.
    pub fn counts(&self) -> [usize; 5] {
        self.counts
    }

    pub fn wan_down(&self) -> bool {
        self.wan_down
    }

    /// The AOR's local bindings changed: `present` whether it has any now.
    /// A new AOR is registered at once (a phone registering is paced by
    /// the phone); the last binding gone removes it at the centre.
    pub fn binding(&mut self, aor: &str, present: bool, now: Instant) {
        match self.regs.get_mut(aor) {
            None if !present => {}
            None => {
                let call_id = self.next_call_id();
                let reg = Registration::new(UpState::Unregistered, call_id, 0, false);
                let key = self.insert(aor, reg);
                self.changed.insert(key);
                self.set_due(aor, Some(now));
            }
            Some(reg) => {
                if reg.wanted == present {
                    return;
                }
                reg.wanted = present;
                let in_flight = reg.state.in_flight();
                if in_flight {
                    // Its answer decides what comes next.
                    return;
                }
                if present || reg.at_centre {
                    self.set_due(aor, Some(now));
                } else {
                    self.remove(aor);
                }
            }
        }
    }

    /// AORs in the table (reconciling with the registrar).
    pub fn aors(&self) -> impl Iterator<Item = &str> {
        self.regs.keys().map(|k| &**k)
    }

    /// Every registration due at `now` (none while the WAN is down).
    pub fn tick(&mut self, now: Instant) -> Vec<UpstreamRequest> {
        let mut out = Vec::new();
        if self.wan_down {
            return out;
        }
        while let Some((when, aor)) = self.due.first().cloned() {
            if when > now {
                break;
            }
            self.due.remove(&(when, aor.clone()));
            let Some(reg) = self.regs.get_mut(&aor) else {
                continue;
            };
            reg.due = None;
            if reg.state.in_flight() {
                continue;
            }
            if !reg.wanted && !reg.at_centre {
                self.remove(&aor);
                continue;
            }
            reg.tries = 0;
            reg.answered_nonce = None;
            if let Some(r) = self.request(&aor) {
                out.push(r);
            }
        }
        out
    }

    /// The next REGISTER for `aor` (a refresh, a registration or a
    /// removal, by what is wanted), with the cached challenge answered.
    fn request(&mut self, aor: &str) -> Option<UpstreamRequest> {
        let reg = self.regs.get_mut(aor)?;
        reg.cseq = reg.cseq.wrapping_add(1).max(1);
        let expires_s = if reg.wanted { reg.expires_s } else { 0 };
        let auth = reg.challenge.as_ref().map(|challenge| {
            reg.nc = reg.nc.saturating_add(1);
            AuthAnswer {
                challenge: challenge.clone(),
                nc: reg.nc,
                proxy: reg.proxy,
            }
        });
        reg.answered_nonce = auth.as_ref().map(|a| a.challenge.nonce.clone());
        let request = UpstreamRequest {
            aor: aor.to_owned(),
            call_id: reg.call_id.clone(),
            cseq: reg.cseq,
            expires_s,
            auth,
        };
        let state = if expires_s == 0 {
            UpState::Removing
        } else {
            UpState::Registering
        };
        self.set_state(aor, state);
        Some(request)
    }

    /// The centre's final answer to the REGISTER out for `aor`; a request
    /// to send at once when the answer asks for one (a challenge, 423).
    pub fn on_answer(
        &mut self,
        aor: &str,
        answer: &Answer,
        now: Instant,
    ) -> (Outcome, Option<UpstreamRequest>) {
        let Some(reg) = self.regs.get_mut(aor) else {
            return (Outcome::Stale, None);
        };
        let removing = match reg.state {
            UpState::Registering => false,
            UpState::Removing => true,
            _ => return (Outcome::Stale, None),
        };
        let status = answer.status;
        if (200..300).contains(&status) {
            reg.failures = 0;
            reg.tries = 0;
            if removing {
                reg.at_centre = false;
                let wanted = reg.wanted;
                self.set_state(aor, UpState::Unregistered);
                if wanted {
                    self.set_due(aor, Some(now));
                } else {
                    self.remove(aor);
                }
                return (Outcome::Removed, None);
            }
            // A centre granting years is taken at a day: refreshed well
            // before, and no far-future time to overflow.
            let granted = answer.granted_s.unwrap_or(reg.expires_s).min(MAX_EXPIRES_S);
            if granted == 0 {
                // A 2xx that kept nothing of ours: as good as a refusal.
                return (Outcome::Failed, self.fail(aor, status, None, now));
            }
            reg.at_centre = true;
            let until = now + Duration::from_secs(u64::from(granted));
            let refresh = refresh_after(&reg.call_id, reg.cseq, granted);
            let wanted = reg.wanted;
            self.set_state(aor, UpState::Registered { until });
            // The last binding went while the REGISTER was out: removed now.
            let due = if wanted { now + refresh } else { now };
            self.set_due(aor, Some(due));
            return (Outcome::Registered, None);
        }
        if status == 401 || status == 407 {
            let Some(challenge) = answer.challenge.clone() else {
                return (Outcome::Failed, self.fail(aor, status, None, now));
            };
            let repeated = reg.answered_nonce.as_deref() == Some(challenge.nonce.as_str());
            if (repeated && !challenge.stale) || reg.tries >= MAX_TRIES {
                // Our answer to this very nonce was refused: wrong
                // credentials, not a stale nonce.
                return (Outcome::Failed, self.fail(aor, status, None, now));
            }
            reg.tries += 1;
            reg.challenge = Some(challenge);
            reg.proxy = answer.proxy || status == 407;
            reg.nc = 0;
            return (Outcome::Challenged, self.resend(aor));
        }
        if status == 423 {
            let raised = answer
                .min_expires
                .filter(|&m| m > reg.expires_s && m <= MAX_EXPIRES_S);
            if let (Some(min), false) = (raised, removing || reg.tries >= MAX_TRIES) {
                reg.tries += 1;
                reg.expires_s = min;
                return (Outcome::Retried, self.resend(aor));
            }
        }
        (
            Outcome::Failed,
            self.fail(aor, status, answer.retry_after_s, now),
        )
    }

    /// The same round again at once (a challenge to answer, a longer
    /// time to ask for), unless the WAN went down meanwhile: then it waits
    /// for the WAN like every other.
    fn resend(&mut self, aor: &str) -> Option<UpstreamRequest> {
        if self.wan_down {
            self.set_state(aor, UpState::Unregistered);
            return None;
        }
        self.request(aor)
    }

    /// The REGISTER out for `aor` got no answer (timeout, transport
    /// error). While the WAN is down that is no failure of the centre's:
    /// the registration waits for the WAN.
    pub fn on_failure(&mut self, aor: &str, now: Instant) -> Outcome {
        match self.regs.get(aor) {
            Some(reg) if reg.state.in_flight() => {}
            _ => return Outcome::Stale,
        }
        if self.wan_down {
            self.set_state(aor, UpState::Unregistered);
            return Outcome::Failed;
        }
        let _ = self.fail(aor, 408, None, now);
        Outcome::Failed
    }

    /// Failed with `status`: tried again after a backoff (Retry-After if
    /// the centre named one), jittered per AOR.
    fn fail(
        &mut self,
        aor: &str,
        status: u16,
        retry_after_s: Option<u32>,
        now: Instant,
    ) -> Option<UpstreamRequest> {
        let reg = self.regs.get_mut(aor)?;
        reg.failures = reg.failures.saturating_add(1);
        reg.tries = 0;
        if !reg.wanted && reg.failures >= MAX_REMOVAL_FAILURES {
            // A removal the centre keeps refusing: its binding expires
            // there on its own; not kept here for ever.
            self.remove(aor);
            return None;
        }
        let backoff = match retry_after_s {
            Some(s) => Duration::from_secs(u64::from(s)).min(BACKOFF_MAX),
            None => {
                let doubled =
                    BACKOFF_FIRST.saturating_mul(1 << reg.failures.saturating_sub(1).min(10));
                let full = doubled.min(BACKOFF_MAX);
                // 3/4 to 1 of it: AORs refused together retry apart.
                full.mul_f64(0.75 + 0.25 * unit_hash(&reg.call_id, reg.cseq))
            }
        };
        let retry_at = now + backoff;
        self.set_state(aor, UpState::Failed { status, retry_at });
        self.set_due(aor, Some(retry_at));
        None
    }

    /// The WAN the centre lies across is down (or up again). Down: nothing
    /// is sent and every registration waits for renewal. Up: every one
    /// is renewed, paced over the window.
    pub fn set_wan_down(&mut self, down: bool, now: Instant) {
        if self.wan_down == down {
            return;
        }
        self.wan_down = down;
        if down {
            let aors: Vec<Arc<str>> = self.regs.keys().cloned().collect();
            for aor in aors {
                self.set_due(&aor, None);
            }
        } else {
            self.pace(now, |_| true);
        }
    }

    /// Start-up (bindings from the snapshot) or a takeover: what is not
    /// registered with time to spare is renewed, paced over the window.
    pub fn pace_pending(&mut self, now: Instant) {
        self.pace(now, |r| match r.state {
            UpState::Registered { .. } => r.due.is_none_or(|d| d <= now),
            _ => true,
        });
    }

    /// The registrations `pick` chooses (and that have something to do)
    /// are spread evenly over the renew window, the most urgent first:
    /// those not registered, then by how soon they expire. With spacing
    /// `window / n`, no second holds more than `ceil(n / window)`.
    fn pace(&mut self, now: Instant, pick: impl Fn(&Registration) -> bool) {
        let mut picked: Vec<(u8, Option<Instant>, Arc<str>)> = self
            .regs
            .iter()
            .filter(|(_, r)| (r.wanted || r.at_centre) && !r.state.in_flight() && pick(r))
            .map(|(aor, r)| match r.state {
                UpState::Registered { until } => (1, Some(until), aor.clone()),
                _ => (0, None, aor.clone()),
            })
            .collect();
        picked.sort_unstable();
        let n = picked.len() as u32;
        if n == 0 {
            return;
        }
        let step = self.settings.renew_window / n;
        for (i, (_, _, aor)) in picked.into_iter().enumerate() {
            self.set_due(&aor, Some(now + step * i as u32));
        }
    }

    /// A new AOR in the table (counted; not yet due).
    fn insert(&mut self, aor: &str, mut reg: Registration) -> Arc<str> {
        reg.expires_s = self.settings.expires_s;
        if let Some(c) = self.counts.get_mut(reg.state.index()) {
            *c += 1;
        }
        let key: Arc<str> = Arc::from(aor);
        self.regs.insert(key.clone(), reg);
        key
    }

    /// Forgets an AOR.
    fn remove(&mut self, aor: &str) {
        self.set_due(aor, None);
        if let Some((key, reg)) = self.regs.remove_entry(aor) {
            if let Some(c) = self.counts.get_mut(reg.state.index()) {
                *c = c.saturating_sub(1);
            }
            self.changed.insert(key);
        }
    }

    fn set_state(&mut self, aor: &str, state: UpState) {
        let Some((key, reg)) = self.regs.get_key_value(aor) else {
            return;
        };
        let (key, old) = (key.clone(), reg.state);
        if let Some(c) = self.counts.get_mut(old.index()) {
            *c = c.saturating_sub(1);
        }
        if let Some(c) = self.counts.get_mut(state.index()) {
            *c += 1;
        }
        if let Some(reg) = self.regs.get_mut(aor) {
            reg.state = state;
        }
        self.changed.insert(key);
    }

    /// Moves the AOR's entry in the due index.
    fn set_due(&mut self, aor: &str, due: Option<Instant>) {
        let Some((key, reg)) = self.regs.get_key_value(aor) else {
            return;
        };
        let key = key.clone();
        if let Some(old) = reg.due {
            self.due.remove(&(old, key.clone()));
        }
        if let Some(t) = due {
            self.due.insert((t, key.clone()));
        }
        if let Some(reg) = self.regs.get_mut(aor) {
            reg.due = due;
        }
    }

    fn next_call_id(&mut self) -> String {
        self.call_ids += 1;
        format!("{}-{}", self.call_id_prefix, self.call_ids)
    }

    /// AORs whose replicated form changed since the last call.
    pub fn take_changed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// The AOR's replicated form (None: it is gone). `now`/`wall`: the
    /// same moment, to turn the expiry into wall-clock time.
    pub fn record(&self, aor: &str, now: Instant, wall_ms: u64) -> Option<UpstreamRecord> {
        let reg = self.regs.get(aor)?;
        let until_ms = match reg.state {
            UpState::Registered { until } => {
                Some(wall_ms + until.saturating_duration_since(now).as_millis() as u64)
            }
            _ => None,
        };
        let refresh_ms = reg
            .due
            .map(|d| wall_ms + d.saturating_duration_since(now).as_millis() as u64);
        Some(UpstreamRecord {
            registered_until_ms: until_ms,
            refresh_ms,
            call_id: reg.call_id.clone(),
            cseq: reg.cseq,
            at_centre: reg.at_centre,
        })
    }

    /// A replicated record (follower), or a deletion. The follower sends
    /// nothing; at a takeover [`Upstream::pace_pending`] renews what is
    /// due, with the same Call-ID and the next CSeq.
    pub fn apply_record(
        &mut self,
        aor: &str,
        record: Option<&UpstreamRecord>,
        now: Instant,
        wall_ms: u64,
    ) {
        self.remove(aor);
        let Some(rec) = record else {
            return;
        };
        let at = |ms: u64| now + Duration::from_millis(ms.saturating_sub(wall_ms));
        let state = match rec.registered_until_ms {
            Some(ms) if ms > wall_ms => UpState::Registered { until: at(ms) },
            _ => UpState::Unregistered,
        };
        let reg = Registration::new(state, rec.call_id.clone(), rec.cseq, rec.at_centre);
        self.insert(aor, reg);
        let due = match state {
            UpState::Registered { .. } => rec.refresh_ms.map(at),
            _ => None,
        };
        self.set_due(aor, due);
        // A follower's copy is not a change of its own.
        self.changed.remove(aor);
    }
}

/// An AOR's upstream registration as a replication record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRecord {
    /// Wall-clock milliseconds the centre holds it until (None: not
    /// registered).
    pub registered_until_ms: Option<u64>,
    /// When its refresh is due (wall-clock ms).
    pub refresh_ms: Option<u64>,
    pub call_id: String,
    pub cseq: u32,
    pub at_centre: bool,
}

/// When a registration granted for `granted_s` is refreshed: after 1/2 to
/// 2/3 of it, the fraction from the Call-ID and CSeq.
fn refresh_after(call_id: &str, cseq: u32, granted_s: u32) -> Duration {
    let fraction = 0.5 + (1.0 / 6.0) * unit_hash(call_id, cseq);
    Duration::from_secs(u64::from(granted_s)).mul_f64(fraction)
}

/// A number in [0, 1) from a Call-ID and CSeq (FNV-1a): jitter without a
/// random source, the same on every run of a test.
fn unit_hash(call_id: &str, cseq: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.bytes().chain(cseq.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;

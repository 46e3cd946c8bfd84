//! AOR → contacts, with the rules of RFC 3261 §10.3.
//!
//! Every AOR's bindings live in one small `Vec` (a handful of contacts,
//! `max_contacts` at most), found by a hash of the AOR. Expiry is ordered
//! by an index of `(earliest expiry, AOR)`, one entry per AOR: `expire`
//! takes only the AORs whose time has come, and a REGISTER touches only
//! its own AOR — nothing anywhere scans every binding.
//!
//! The index is a `BTreeSet` rather than a binary heap with lazily
//! deleted (generation-stamped) entries: an AOR's old entry is removed
//! exactly when its earliest expiry moves, so the index never holds more
//! entries than there are AORs. A lazy heap keeps a stale entry for every
//! refresh until its old time comes, so a phone re-registering in a loop
//! would grow it; with exact removal no REGISTER pattern can.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sipcore::message::{Message, NameAddr, Uri};
use sipcore::transport::{ConnectionId, TransportKind};

use super::{RegistrarSettings, WhenFull};
use crate::b2bua::UnixMillis;

/// A Contact URI longer than this is refused (400): a binding is kept for
/// an hour and copied to the standby, so what a phone may store is bounded.
pub const MAX_CONTACT_URI: usize = 512;
/// Contact values in one REGISTER, at most (a desk phone sends one).
pub const MAX_CONTACTS_PER_REQUEST: usize = 16;
/// The User-Agent kept with a binding is cut to this many bytes.
pub const MAX_USER_AGENT: usize = 128;
/// `+sip.instance` values longer than this are refused (a `urn:uuid:` is
/// 45 bytes).
pub const MAX_INSTANCE: usize = 256;
/// Call-IDs longer than this are refused (Kamailio's limit too).
pub const MAX_CALL_ID: usize = 255;
/// Path values of one REGISTER, at most, and their bytes in all.
pub const MAX_PATH_ENTRIES: usize = 8;
pub const MAX_PATH_BYTES: usize = 2048;
/// AORs longer than this are not served ([`aor_of`] gives None).
pub const MAX_AOR: usize = 256;

/// The flow a REGISTER arrived on (RFC 5626 in its simple form): requests
/// to the phone go back over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub transport: TransportKind,
    /// Source address and port as seen (after NAT).
    pub source: SocketAddr,
    /// The stream connection it came on (not replicated: a connection
    /// lives on one node).
    #[serde(skip)]
    pub connection: Option<ConnectionId>,
}

impl Flow {
    /// Where requests to the phone go: back over this flow.
    pub fn target(&self) -> sipcore::transport::Target {
        sipcore::transport::Target {
            transport: self.transport,
            addr: self.source,
            connection: self.connection,
        }
    }
}

/// One contact of an AOR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The Contact URI as the phone gave it (without the angle brackets
    /// and header parameters).
    pub contact: String,
    pub expires_at: UnixMillis,
    /// q × 1000 (0..=1000; 1000 when absent).
    pub q: u16,
    /// `+sip.instance` and `reg-id` (RFC 5626).
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    /// Path header values (RFC 3327), in order: requests to the contact
    /// carry them as Route.
    pub path: Vec<String>,
    pub flow: Flow,
    pub user_agent: Option<String>,
    /// When it was first registered (the oldest is replaced first).
    pub registered_at: UnixMillis,
}

impl Binding {
    /// The RFC 5626 flow key, when the phone gave both parts.
    fn outbound_key(&self) -> Option<(&str, u32)> {
        Some((self.instance.as_deref()?, self.reg_id?))
    }

    /// Whether a new contact (URI, RFC 5626 key) is this binding: the same
    /// instance and reg-id when both sides have them (a new flow of the
    /// same phone replaces the old one, RFC 5626 §6), else an equivalent
    /// URI (RFC 3261 §10.3 step 8).
    fn is_same_contact(&self, uri: &Uri<'_>, key: Option<(&str, u32)>) -> bool {
        match (self.outbound_key(), key) {
            (Some((i, r)), Some((ni, nr))) => r == nr && i.eq_ignore_ascii_case(ni),
            _ => Uri::parse(&self.contact).is_ok_and(|own| uri_equivalent(&own, uri)),
        }
    }
}

/// Why a REGISTER is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// 423 with Min-Expires.
    #[error("interval too brief (min {min_expires} s)")]
    IntervalTooBrief { min_expires: u32 },
    /// 403: the AOR has `max_contacts` and `when_full = reject`.
    #[error("too many contacts")]
    TooManyContacts,
    /// 500: an older REGISTER of the same Call-ID (§10.3 step 7).
    #[error("out-of-order CSeq for this Call-ID")]
    OutOfOrder,
    /// 503: `max_bindings` reached.
    #[error("registrar full")]
    Full,
    /// 400 with the reason.
    #[error("{0}")]
    Bad(String),
}

/// The Retry-After of a 503 when the registrar is full: soon enough for a
/// phone to get in once bindings expire, late enough not to hammer it.
const FULL_RETRY_AFTER_S: u32 = 5;

impl RegisterError {
    /// Status and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegisterError::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            RegisterError::TooManyContacts => (403, "Forbidden"),
            RegisterError::OutOfOrder => (500, "Server Internal Error"),
            RegisterError::Full => (503, "Service Unavailable"),
            RegisterError::Bad(_) => (400, "Bad Request"),
        }
    }

    /// Extra headers of the error response (Min-Expires, Retry-After).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            RegisterError::IntervalTooBrief { min_expires } => {
                vec![("Min-Expires", min_expires.to_string())]
            }
            RegisterError::Full => vec![("Retry-After", FULL_RETRY_AFTER_S.to_string())],
            _ => Vec::new(),
        }
    }
}

fn bad(reason: impl Into<String>) -> RegisterError {
    RegisterError::Bad(reason.into())
}

/// The canonical AOR of a To/Request URI: `user@host`, host lower-case,
/// no port or parameters; None when the URI has no user or is not SIP
/// (or the AOR would be longer than [`MAX_AOR`]).
pub fn aor_of(uri: &str) -> Option<String> {
    let uri = Uri::parse(uri).ok()?;
    if !uri.is_sip() || uri.host.is_empty() {
        return None;
    }
    let user = uri.user.filter(|u| !u.is_empty())?;
    if user.len() + 1 + uri.host.len() > MAX_AOR {
        return None;
    }
    Some(format!("{user}@{}", uri.host.to_ascii_lowercase()))
}

/// URI equivalence of RFC 3261 §19.1.4, on the escaped text: scheme and
/// host compare case-insensitively, user and password exactly, ports only
/// when both name one or neither does; `transport`, `user`, `ttl`,
/// `method` and `maddr` must agree when either URI has them, any other
/// parameter only when both have it; headers must be the same set.
pub fn uri_equivalent(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    const MUST_AGREE: [&str; 5] = ["transport", "user", "ttl", "method", "maddr"];
    if !a.scheme.eq_ignore_ascii_case(b.scheme)
        || a.user != b.user
        || a.password != b.password
        || !a.host.eq_ignore_ascii_case(b.host)
        || a.port != b.port
    {
        return false;
    }
    let same_value = |x: Option<&str>, y: Option<&str>| match (x, y) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    };
    // URI parameters hold no quoted strings: `;` always separates them.
    for param in a.params.split(';').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let other = b.param(name);
        let must = MUST_AGREE.iter().any(|m| m.eq_ignore_ascii_case(name));
        if (must || other.is_some()) && !same_value(Some(value), other) {
            return false;
        }
    }
    // A must-agree parameter only in `b`.
    if MUST_AGREE
        .iter()
        .any(|m| b.param(m).is_some() && a.param(m).is_none())
    {
        return false;
    }
    let mut ha: Vec<&str> = a.headers.split('&').filter(|h| !h.is_empty()).collect();
    let mut hb: Vec<&str> = b.headers.split('&').filter(|h| !h.is_empty()).collect();
    ha.sort_unstable();
    hb.sort_unstable();
    ha == hb
}

/// One AOR's bindings and its key in the expiry index.
#[derive(Debug)]
struct AorBindings {
    bindings: Vec<Binding>,
    /// The earliest `expires_at` of `bindings` (its entry in
    /// `Bindings::expiry`).
    earliest: UnixMillis,
}

/// Every binding of every AOR.
pub struct Bindings {
    settings: RegistrarSettings,
    aors: HashMap<Arc<str>, AorBindings>,
    /// `(earliest expiry, AOR)` of every AOR: the next to expire first.
    expiry: BTreeSet<(UnixMillis, Arc<str>)>,
    /// Bindings in all (kept, not counted: `len` is O(1)).
    count: usize,
    /// AORs changed since `take_changed`. Bounded by the AORs that exist
    /// or existed since the last call, which the caller makes often.
    changed: HashSet<Arc<str>>,
    /// The same for the call machine's own use (dual registration), kept
    /// apart so that neither consumer steals the other's changes; None
    /// until [`Bindings::watch`] (no cost without it).
    watched: Option<HashSet<Arc<str>>>,
}

/// What one Contact value of a REGISTER asks for, checked.
struct ContactRequest<'m> {
    uri: Uri<'m>,
    /// Seconds granted; 0 removes.
    expires: u32,
    q: u16,
    instance: Option<&'m str>,
    reg_id: Option<u32>,
}

impl ContactRequest<'_> {
    fn outbound_key(&self) -> Option<(&str, u32)> {
        Some((self.instance?, self.reg_id?))
    }
}

impl Bindings {
    pub fn new(settings: RegistrarSettings) -> Bindings {
        Bindings {
            settings,
            aors: HashMap::new(),
            expiry: BTreeSet::new(),
            count: 0,
            changed: HashSet::new(),
            watched: None,
        }
    }

    /// From now on, changed AORs are also noted for [`Bindings::take_watched`].
    pub fn watch(&mut self) {
        self.watched.get_or_insert_with(HashSet::new);
    }

    /// AORs changed (by REGISTER or expiry) since the last call, when
    /// watched; a follower's replicated copies are not among them.
    pub fn take_watched(&mut self) -> Vec<String> {
        match self.watched.as_mut() {
            Some(w) if !w.is_empty() => w.drain().map(|a| a.to_string()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn settings(&self) -> &RegistrarSettings {
        &self.settings
    }

    /// A new configuration (SIGHUP): limits apply to the next REGISTER.
    pub fn set_settings(&mut self, settings: RegistrarSettings) {
        self.settings = settings;
    }

    /// Applies a REGISTER for `aor` (already authenticated, domain
    /// checked) that came over `flow` at `wall`: adds, refreshes and
    /// removes bindings per §10.3 and returns the AOR's bindings after it
    /// (for the 200's Contact list). A query (no Contact) changes nothing.
    ///
    /// All or nothing: the AOR's bindings are changed on a copy that
    /// replaces them only when every Contact of the request was accepted.
    pub fn register(
        &mut self,
        request: &Message,
        aor: &str,
        flow: Flow,
        wall: UnixMillis,
    ) -> Result<Vec<Binding>, RegisterError> {
        let mut contacts = Vec::new();
        for contact in request.contacts() {
            let contact = contact.map_err(|_| bad("malformed Contact"))?;
            if contacts.len() == MAX_CONTACTS_PER_REQUEST {
                return Err(bad(format!(
                    "more than {MAX_CONTACTS_PER_REQUEST} Contact values"
                )));
            }
            contacts.push(contact);
        }
        let current: Vec<Binding> = self
            .aors
            .get(aor)
            .map(|a| {
                a.bindings
                    .iter()
                    .filter(|b| b.expires_at > wall)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if contacts.is_empty() {
            return Ok(sorted(current));
        }
        let call_id = request.call_id();
        if call_id.len() > MAX_CALL_ID {
            return Err(bad(format!("Call-ID longer than {MAX_CALL_ID} bytes")));
        }
        let cseq = request.cseq().seq;
        if contacts.iter().any(|c| c.uri == "*") {
            // §10.3 step 6: `*` only alone and with Expires: 0; it removes
            // every binding, unless one was made by this Call-ID with the
            // same or a later CSeq (then the request is out of order).
            if contacts.len() != 1 {
                return Err(bad("Contact: * must be the only Contact"));
            }
            if request.expires() != Some(0) {
                return Err(bad("Contact: * needs Expires: 0"));
            }
            if current
                .iter()
                .any(|b| b.call_id == call_id && cseq <= b.cseq)
            {
                return Err(RegisterError::OutOfOrder);
            }
            self.commit(aor, Vec::new());
            return Ok(Vec::new());
        }
        let requests = contacts
            .iter()
            .map(|c| self.contact_request(c, request.expires()))
            .collect::<Result<Vec<_>, _>>()?;
        let path = path_of(request)?;
        let user_agent = request.header("User-Agent").map(truncated_user_agent);

        let mut work = current;
        // Bindings this request wrote: a second Contact for the same URI
        // in one REGISTER updates it again rather than being out of order.
        let mut written = vec![false; work.len()];
        for req in &requests {
            let key = req.outbound_key();
            let found = work.iter().position(|b| b.is_same_contact(&req.uri, key));
            if let Some(i) = found {
                let b = &work[i];
                if !written[i] && b.call_id == call_id && cseq <= b.cseq {
                    return Err(RegisterError::OutOfOrder);
                }
            }
            if req.expires == 0 {
                if let Some(i) = found {
                    work.remove(i);
                    written.remove(i);
                }
                continue;
            }
            let binding = Binding {
                contact: req.uri.raw.to_owned(),
                expires_at: wall + u64::from(req.expires) * 1000,
                q: req.q,
                instance: req.instance.map(str::to_owned),
                reg_id: req.reg_id,
                call_id: call_id.to_owned(),
                cseq,
                path: path.clone(),
                flow: flow.clone(),
                user_agent: user_agent.clone(),
                registered_at: found.map_or(wall, |i| work[i].registered_at),
            };
            match found {
                Some(i) => {
                    work[i] = binding;
                    written[i] = true;
                }
                None => {
                    if work.len() >= self.settings.max_contacts {
                        let i = self.room_for_one(&work, &written)?;
                        work.remove(i);
                        written.remove(i);
                    }
                    work.push(binding);
                    written.push(true);
                }
            }
        }
        let stored = self.aors.get(aor).map_or(0, |a| a.bindings.len());
        if work.len() > stored && self.count - stored + work.len() > self.settings.max_bindings {
            return Err(RegisterError::Full);
        }
        self.commit(aor, work.clone());
        Ok(sorted(work))
    }

    /// Which binding to drop for a new one when the AOR is full: the one
    /// that expires soonest among those this request did not write.
    fn room_for_one(&self, work: &[Binding], written: &[bool]) -> Result<usize, RegisterError> {
        if self.settings.when_full == WhenFull::Reject {
            return Err(RegisterError::TooManyContacts);
        }
        work.iter()
            .enumerate()
            .filter(|(i, _)| !written[*i])
            .min_by_key(|(_, b)| b.expires_at)
            .map(|(i, _)| i)
            // The request alone names more contacts than an AOR may have.
            .ok_or(RegisterError::TooManyContacts)
    }

    /// Checks one Contact value: URI, expires (§10.3 step 7), q, RFC 5626
    /// parameters.
    fn contact_request<'m>(
        &self,
        contact: &NameAddr<'m>,
        header_expires: Option<u32>,
    ) -> Result<ContactRequest<'m>, RegisterError> {
        if contact.uri.len() > MAX_CONTACT_URI {
            return Err(bad(format!(
                "Contact URI longer than {MAX_CONTACT_URI} bytes"
            )));
        }
        let uri = Uri::parse(contact.uri).map_err(|_| bad("malformed Contact URI"))?;
        if !uri.is_sip() || uri.host.is_empty() {
            return Err(bad("Contact must be a sip: or sips: URI"));
        }
        let s = &self.settings;
        let requested = match contact.param("expires") {
            // RFC 3261 §20.19: a malformed value is the default.
            Some(v) => parse_delta_seconds(v).unwrap_or(s.default_expires),
            None => header_expires.unwrap_or(s.default_expires),
        };
        let expires = match requested {
            0 => 0,
            e if e < s.min_expires => {
                return Err(RegisterError::IntervalTooBrief {
                    min_expires: s.min_expires,
                })
            }
            e => e.min(s.max_expires),
        };
        let q = match contact.param("q") {
            Some(v) => parse_q(v).ok_or_else(|| bad(format!("bad q value {v:?}")))?,
            None => 1000,
        };
        let instance = match contact.param("+sip.instance") {
            Some(v) => {
                let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                match v {
                    Some(v) if !v.is_empty() && v.len() <= MAX_INSTANCE => Some(v),
                    _ => return Err(bad("bad +sip.instance")),
                }
            }
            None => None,
        };
        let reg_id = match contact.param("reg-id") {
            Some(v) => Some(digits_u32(v).ok_or_else(|| bad("bad reg-id"))?),
            None => None,
        };
        Ok(ContactRequest {
            uri,
            expires,
            q,
            instance,
            reg_id,
        })
    }

    /// Replaces the AOR's bindings (none: deletes it) and notes the change.
    fn commit(&mut self, aor: &str, bindings: Vec<Binding>) {
        if let Some(key) = self.replace_aor(aor, bindings) {
            if let Some(w) = self.watched.as_mut() {
                w.insert(key.clone());
            }
            self.changed.insert(key);
        }
    }

    /// Replaces the AOR's bindings (an empty list deletes it), keeping the
    /// count and the expiry index right; not noted as a change. The AOR's
    /// key when something was there before or is now.
    pub(super) fn replace_aor(&mut self, aor: &str, bindings: Vec<Binding>) -> Option<Arc<str>> {
        let key = match self.aors.remove_entry(aor) {
            Some((key, old)) => {
                self.expiry.remove(&(old.earliest, key.clone()));
                self.count -= old.bindings.len();
                key
            }
            None if bindings.is_empty() => return None,
            None => Arc::from(aor),
        };
        if let Some(earliest) = bindings.iter().map(|b| b.expires_at).min() {
            self.count += bindings.len();
            self.expiry.insert((earliest, key.clone()));
            let entry = AorBindings { bindings, earliest };
            self.aors.insert(key.clone(), entry);
        }
        Some(key)
    }

    /// The unexpired bindings of `aor`, highest q first, then most
    /// recently registered first.
    pub fn lookup(&self, aor: &str, wall: UnixMillis) -> Vec<&Binding> {
        let mut found: Vec<&Binding> = self
            .aors
            .get(aor)
            .map(|a| a.bindings.iter().filter(|b| b.expires_at > wall).collect())
            .unwrap_or_default();
        found.sort_by(|a, b| order(a, b));
        found
    }

    /// Removes bindings whose time has come; how many. Only the AORs at
    /// the front of the expiry index are looked at.
    pub fn expire(&mut self, wall: UnixMillis) -> usize {
        let mut removed = 0;
        while let Some((earliest, aor)) = self.expiry.first().cloned() {
            if earliest > wall {
                break;
            }
            let Some(entry) = self.aors.get(&aor).filter(|e| e.earliest == earliest) else {
                // Cannot happen (the index follows the map exactly); were
                // it ever stale, drop the entry rather than loop on it.
                self.expiry.remove(&(earliest, aor));
                continue;
            };
            let before = entry.bindings.len();
            let left: Vec<Binding> = entry
                .bindings
                .iter()
                .filter(|b| b.expires_at > wall)
                .cloned()
                .collect();
            removed += before - left.len();
            self.commit(&aor, left);
        }
        removed
    }

    /// When the next binding expires.
    pub fn next_expiry(&self) -> Option<UnixMillis> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// Notes every AOR as changed: bindings loaded from the snapshot at
    /// start are news to a standby that connects.
    pub fn mark_all_changed(&mut self) {
        self.changed.extend(self.aors.keys().cloned());
    }

    /// AORs changed since the last call (for replication and snapshots),
    /// in AOR order.
    pub fn take_changed(&mut self) -> Vec<String> {
        let mut changed: Vec<String> = self.changed.drain().map(|a| a.to_string()).collect();
        changed.sort_unstable();
        changed
    }

    /// The AOR's bindings as a replication record (None: it has none):
    /// JSON of the `Vec<Binding>`.
    pub fn record(&self, aor: &str) -> Option<Vec<u8>> {
        let entry = self.aors.get(aor)?;
        // Serialising plain structs to a Vec cannot fail; an empty record
        // would be refused by `apply_record` rather than misread.
        Some(serde_json::to_vec(&entry.bindings).unwrap_or_default())
    }

    /// A replicated record (None: the AOR was deleted). Not noted as a
    /// change.
    pub fn apply_record(&mut self, aor: &str, data: Option<&[u8]>) -> Result<(), String> {
        let bindings = match data {
            Some(data) => serde_json::from_slice::<Vec<Binding>>(data)
                .map_err(|e| format!("bindings of {aor}: {e}"))?,
            None => Vec::new(),
        };
        self.replace_aor(aor, bindings);
        Ok(())
    }

    /// Bindings in all.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// AORs in all.
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    /// Every AOR with its bindings (admin listing), in AOR order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Binding])> {
        let mut all: Vec<(&str, &[Binding])> = self.unordered().collect();
        all.sort_unstable_by_key(|(aor, _)| *aor);
        all.into_iter()
    }

    /// Every AOR with its bindings in no order (snapshots: no sort).
    pub(super) fn unordered(&self) -> impl Iterator<Item = (&str, &[Binding])> {
        self.aors
            .iter()
            .map(|(aor, a)| (&**aor, a.bindings.as_slice()))
    }

    /// Contact header values for a 200 OK: `<uri>;expires=N[;q=0.5]`,
    /// with `+sip.instance` and `reg-id` when the phone gave them (RFC
    /// 5626 §6: the phone learns that its flow was registered). N is the
    /// remaining time rounded up; expired bindings are left out.
    pub fn contact_values(bindings: &[Binding], wall: UnixMillis) -> Vec<String> {
        bindings
            .iter()
            .filter(|b| b.expires_at > wall)
            .map(|b| {
                let remaining = (b.expires_at - wall).div_ceil(1000);
                let mut value = format!("<{}>;expires={remaining}", b.contact);
                if b.q != 1000 {
                    value.push_str(";q=");
                    value.push_str(&format_q(b.q));
                }
                if let Some(instance) = &b.instance {
                    value.push_str(&format!(";+sip.instance=\"{instance}\""));
                }
                if let Some(reg_id) = b.reg_id {
                    value.push_str(&format!(";reg-id={reg_id}"));
                }
                value
            })
            .collect()
    }
}

/// Highest q first, then the most recently registered.
fn order(a: &Binding, b: &Binding) -> std::cmp::Ordering {
    b.q.cmp(&a.q).then(b.registered_at.cmp(&a.registered_at))
}

fn sorted(mut bindings: Vec<Binding>) -> Vec<Binding> {
    bindings.sort_by(order);
    bindings
}

/// delta-seconds (RFC 3261 §25.1): digits; a value too large for 32 bits
/// is as long as it gets (it is shortened to the maximum anyway).
fn parse_delta_seconds(v: &str) -> Option<u32> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits_u32(v).unwrap_or(u32::MAX))
}

/// A decimal number of digits only (no sign), None when it overflows.
fn digits_u32(v: &str) -> Option<u32> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// `qvalue` (RFC 3261 §20.10): `0`, `1`, `0.d`, `0.dd`, `0.ddd`, `1.0`,
/// `1.00`, `1.000`, as thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if v.ends_with('.') {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, d) in frac.bytes().enumerate() {
        thousandths += u16::from(d - b'0') * [100, 10, 1][i];
    }
    let q = whole + thousandths;
    (q <= 1000).then_some(q)
}

/// Thousandths as a qvalue, without trailing zeros.
fn format_q(q: u16) -> String {
    if q >= 1000 {
        return "1".into();
    }
    let digits = format!("{q:03}");
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        "0".into()
    } else {
        format!("0.{digits}")
    }
}

/// Every Path value (RFC 3327), in order, each comma-separated item on
/// its own, within [`MAX_PATH_ENTRIES`] and [`MAX_PATH_BYTES`].
fn path_of(request: &Message) -> Result<Vec<String>, RegisterError> {
    let mut path = Vec::new();
    let mut bytes = 0;
    for value in request.header_values("Path") {
        bytes += value.len();
        if path.len() == MAX_PATH_ENTRIES || bytes > MAX_PATH_BYTES {
            return Err(bad("Path too long"));
        }
        NameAddr::parse(value, "Path").map_err(|_| bad("malformed Path"))?;
        path.push(value.to_owned());
    }
    Ok(path)
}

/// The User-Agent cut to [`MAX_USER_AGENT`] bytes at a character boundary.
fn truncated_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(MAX_USER_AGENT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].to_owned()
}

#[cfg(test)]
mod tests;

//! AOR → contacts, with the rules of RFC 3261 §10.3. SKELETON.
#![allow(unused_variables)]

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sipcore::message::Message;
use sipcore::transport::{ConnectionId, Target, TransportKind};

use super::RegistrarSettings;
use crate::b2bua::UnixMillis;

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
    pub fn target(&self) -> Target {
        Target {
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

impl RegisterError {
    /// Status and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        todo!()
    }

    /// Extra headers of the error response (Min-Expires, Retry-After).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        todo!()
    }
}

/// The canonical AOR of a To/Request URI: `user@host`, host lower-case,
/// no port or parameters; None when the URI has no user or is not SIP.
pub fn aor_of(uri: &str) -> Option<String> {
    todo!()
}

/// Every binding of every AOR.
pub struct Bindings {
    settings: RegistrarSettings,
}

impl Bindings {
    pub fn new(settings: RegistrarSettings) -> Bindings {
        todo!()
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
    pub fn register(
        &mut self,
        request: &Message,
        aor: &str,
        flow: Flow,
        wall: UnixMillis,
    ) -> Result<Vec<Binding>, RegisterError> {
        todo!()
    }

    /// The unexpired bindings of `aor`, highest q first, then most
    /// recently registered first.
    pub fn lookup(&self, aor: &str, wall: UnixMillis) -> Vec<&Binding> {
        todo!()
    }

    /// Removes bindings whose time has come; how many.
    pub fn expire(&mut self, wall: UnixMillis) -> usize {
        todo!()
    }

    /// When the next binding expires.
    pub fn next_expiry(&self) -> Option<UnixMillis> {
        todo!()
    }

    /// AORs changed since the last call (for replication and snapshots).
    pub fn take_changed(&mut self) -> Vec<String> {
        todo!()
    }

    /// The AOR's bindings as a replication record (None: it has none).
    pub fn record(&self, aor: &str) -> Option<Vec<u8>> {
        todo!()
    }

    /// A replicated record (None: the AOR was deleted). Not noted as a
    /// change.
    pub fn apply_record(&mut self, aor: &str, data: Option<&[u8]>) -> Result<(), String> {
        todo!()
    }

    /// Bindings in all.
    pub fn len(&self) -> usize {
        todo!()
    }

    /// Every AOR with its bindings (admin listing), in AOR order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Binding])> {
        std::iter::empty()
    }

    /// Contact header values for a 200 OK: `<uri>;expires=N[;q=0.5]`.
    pub fn contact_values(bindings: &[Binding], wall: UnixMillis) -> Vec<String> {
        todo!()
    }
}

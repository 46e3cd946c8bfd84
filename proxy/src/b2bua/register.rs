//! Phones: REGISTER (RFC 3261 §10.3) with digest authentication, and the
//! authentication of INVITEs from phones (407). The rules live in
//! `crate::registrar`; this file is the flow: which answer goes out, what
//! is counted.

use sipcore::message::{Message, ResponseBuilder};
use sipcore::transaction::ServerKey;
use sipcore::transport::Target;

use super::Machine;
use crate::registrar::auth::AuthKind;
use crate::registrar::{aor_of, AuthOutcome, Bindings, Flow};

/// Who sent a new INVITE.
pub(super) enum Caller {
    /// A trunk (or no registrar: the trunk check decides).
    Trunk,
    /// A phone that proved to be this user.
    Phone,
    /// Answered already (challenged, refused or dropped).
    Answered,
}

impl Machine {
    pub(super) fn on_register(&mut self, key: ServerKey, request: Message, source: Target) {
        let request = with_received(request, source);
        let wall = self.wall;
        let Some(reg) = self.registrar.as_mut() else {
            return self.out.respond(
                &key,
                &request,
                405,
                "Method Not Allowed",
                &[("Allow", super::ALLOW)],
            );
        };
        let to = request.to_header();
        let to_uri = to.uri();
        let host = to_uri.host.to_ascii_lowercase();
        let Some(aor) = aor_of(to.uri).filter(|_| reg.serves(&host)) else {
            self.obs.register_result("forbidden");
            return self.out.respond(
                &key,
                &request,
                403,
                "Forbidden",
                &[("Warning", "399 tandem \"not a domain of this registrar\"")],
            );
        };
        let user = match self.authenticate(&request, AuthKind::Www, source) {
            AuthOutcome::Authenticated { user } => user,
            outcome => return self.auth_answer(key, &request, outcome, "register"),
        };
        if aor.split_once('@').map(|(u, _)| u) != Some(user.as_str()) {
            self.obs.register_result("forbidden");
            return self.out.respond(
                &key,
                &request,
                403,
                "Forbidden",
                &[(
                    "Warning",
                    "399 tandem \"these credentials cannot register this AOR\"",
                )],
            );
        }
        let flow = Flow {
            transport: source.transport,
            source: source.addr,
            connection: source.connection,
        };
        let Some(reg) = self.registrar.as_mut() else {
            return;
        };
        match reg.bindings.register(&request, &aor, flow, wall) {
            Ok(bindings) => {
                let total = reg.bindings.len();
                let contacts = Bindings::contact_values(&bindings, wall);
                let mut b =
                    ResponseBuilder::with_to_tag(&request, 200, "OK", Some(&self.tokens.token(12)));
                for c in &contacts {
                    b = b.header("Contact", c);
                }
                // RFC 3327 §5.3: the Path the registrar stored goes back.
                for path in request.headers("Path") {
                    b = b.header("Path", path);
                }
                b = b.header("Date", &http_date(wall));
                self.out.send_response(&key, b.build_message());
                self.obs.register_result("ok");
                self.obs.registrations_active(total);
                tracing::debug!(aor, contacts = contacts.len(), "registered");
            }
            Err(e) => {
                let (status, reason) = e.status();
                let headers = e.headers();
                let warning = format!("399 tandem \"{e}\"");
                let mut hs: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                hs.push(("Warning", &warning));
                self.obs.register_result("refused");
                self.out.respond(&key, &request, status, reason, &hs);
            }
        }
    }

    /// Who sent a new INVITE: a trunk, or (with a registrar) a phone with
    /// the right credentials for its From user; anyone else is
    /// challenged, refused or dropped here.
    pub(super) fn identify_caller(
        &mut self,
        key: &ServerKey,
        invite: &Message,
        source: Target,
    ) -> Caller {
        if self.registrar.is_none() || self.policy.source(source.addr.ip()).is_some() {
            return Caller::Trunk;
        }
        let Some(reg) = self.registrar.as_ref() else {
            return Caller::Trunk;
        };
        if !reg.bindings.settings().authenticate_invites {
            // Trusted by where it registered from: the From AOR has a
            // binding whose flow is this INVITE's source address.
            let ip = source.addr.ip();
            let from = invite.from_header();
            let registered = aor_of(from.uri).is_some_and(|aor| {
                reg.bindings
                    .lookup(&aor, self.wall)
                    .iter()
                    .any(|b| b.flow.source.ip() == ip)
            });
            if registered {
                return Caller::Phone;
            }
            self.obs.call_rejected(403);
            self.out.respond(
                key,
                invite,
                403,
                "Forbidden",
                &[("Warning", "399 tandem \"not a registered phone\"")],
            );
            return Caller::Answered;
        }
        let user = match self.authenticate(invite, AuthKind::Proxy, source) {
            AuthOutcome::Authenticated { user } => user,
            outcome => {
                self.auth_answer(key.clone(), invite, outcome, "invite");
                return Caller::Answered;
            }
        };
        // A phone calls as itself: the From user is the one whose
        // credentials it showed (no caller-ID spoofing through Tandem).
        if invite.from_header().uri().user != Some(user.as_str()) {
            self.obs.call_rejected(403);
            self.out.respond(
                key,
                invite,
                403,
                "Forbidden",
                &[(
                    "Warning",
                    "399 tandem \"From does not match the credentials\"",
                )],
            );
            return Caller::Answered;
        }
        Caller::Phone
    }

    /// The digest check of `request` from `source`, its failures counted
    /// (locked-out attempts too).
    fn authenticate(&mut self, request: &Message, kind: AuthKind, source: Target) -> AuthOutcome {
        let (now, wall_s) = (self.now, self.wall / 1000);
        let Some(reg) = self.registrar.as_mut() else {
            return AuthOutcome::Ignored;
        };
        let failed =
            |r: &crate::registrar::Registrar| r.auth.failures_total() + r.auth.ignored_total();
        let before = failed(reg);
        let outcome = reg.auth.check(request, kind, source.addr.ip(), now, wall_s);
        let failures = failed(reg).saturating_sub(before);
        self.obs.auth_failed(failures);
        outcome
    }

    /// Answers a request whose authentication did not succeed.
    fn auth_answer(&mut self, key: ServerKey, request: &Message, outcome: AuthOutcome, what: &str) {
        let (result, status, reason, headers) = match outcome {
            AuthOutcome::Authenticated { .. } => return,
            AuthOutcome::Challenge {
                status,
                reason,
                headers,
            } => ("challenged", status, reason, headers),
            AuthOutcome::Failed {
                status,
                reason,
                headers,
            } => ("auth_failed", status, reason, headers),
            AuthOutcome::Ignored => ("ignored", 0, "", Vec::new()),
        };
        if what == "register" {
            self.obs.register_result(result);
        }
        if status == 0 {
            // A locked-out (source, user): nothing goes back, nothing is
            // kept.
            return self.out.forget(key, None);
        }
        let hs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.out.respond(&key, request, status, reason, &hs);
    }

    /// Bindings whose time came are removed (from the housekeeping tick;
    /// the registrar's heap makes this cheap when none is due).
    pub(super) fn expire_bindings(&mut self) {
        let wall = self.wall;
        let Some(reg) = self.registrar.as_mut().filter(|r| !r.bindings.is_empty()) else {
            return;
        };
        if reg.bindings.next_expiry().is_some_and(|t| t <= wall) && reg.bindings.expire(wall) > 0 {
            let n = reg.bindings.len();
            self.obs.registrations_active(n);
        }
    }

    /// The registrar, if on (replication, snapshots, the admin listing).
    pub fn registrar(&self) -> Option<&crate::registrar::Registrar> {
        self.registrar.as_ref()
    }

    pub fn registrar_mut(&mut self) -> Option<&mut crate::registrar::Registrar> {
        self.registrar.as_mut()
    }

    /// Turns the registrar on (or off).
    pub fn set_registrar(&mut self, registrar: Option<crate::registrar::Registrar>) {
        if let Some(r) = &registrar {
            self.obs.registrations_active(r.bindings.len());
        }
        self.registrar = registrar;
    }

    /// A replicated binding record (follower) or a deletion.
    pub fn apply_binding_record(&mut self, aor: &str, data: Option<&[u8]>) {
        let Some(reg) = self.registrar.as_mut() else {
            return;
        };
        if let Err(e) = reg.bindings.apply_record(aor, data) {
            tracing::error!(aor, error = %e, "replicated binding unreadable");
        }
        let n = reg.bindings.len();
        self.obs.registrations_active(n);
    }
}

/// RFC 3581 §4: a request whose top Via asks for `rport` has the source
/// port (and `received`, the source address) filled in, so that every
/// response built from it tells a phone behind NAT where it was seen —
/// what it needs to keep its NAT binding open and to notice the NAT.
fn with_received(request: Message, source: Target) -> Message {
    let via = request.top_via();
    if source.transport.is_stream() || via.rport() != Some(None) {
        return request;
    }
    let Some(params_at) = via.raw.len().checked_sub(via.params.len()) else {
        return request;
    };
    let head = via.raw.get(..params_at).unwrap_or(via.raw);
    let kept: String = via
        .params
        .split(';')
        .filter(|p| !p.trim().is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("").trim();
            !name.eq_ignore_ascii_case("rport") && !name.eq_ignore_ascii_case("received")
        })
        .map(|p| format!(";{}", p.trim()))
        .collect();
    let top = format!(
        "{head}{kept};received={};rport={}",
        source.addr.ip(),
        source.addr.port()
    );
    request
        .edit()
        .pop_via()
        .push_via(top)
        .build_message()
        .unwrap_or(request)
}

/// An RFC 1123 date for the Date header (§20.17), from Unix milliseconds.
fn http_date(wall: super::UnixMillis) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(wall))
}

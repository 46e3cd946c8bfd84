//! Who may do what on the admin API. The decision is a pure function of
//! the request's method and path, whether the listener is on loopback,
//! what is configured and the credential presented ([`decide`]); the
//! middleware ([`require`]) only finds the credential and applies the
//! verdict.
//!
//! The rule: every POST needs the admin token; a GET needs it too unless
//! the listener is on a loopback address (reading `/status` there is as
//! open as `ss` or `ps`). `/metrics` has its own optional token, so that
//! a scraper does not hold the key to `/switchover`. A browser trades the
//! admin token once for a session cookie (`/login`). A wrong credential
//! is refused wherever it is presented; every refusal is counted in
//! `tandem_admin_auth_failures_total`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::config::{AdminConfig, AdminToken};

#[cfg(test)]
mod tests;

/// The session cookie's name.
const COOKIE: &str = "tandem_session";
/// Sessions alive at once, at most: a login beyond them ends the oldest,
/// so that logins (even with the right token) cannot grow memory.
const MAX_SESSIONS: usize = 32;
/// A session ends this long after its login.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// The credential a request presents, already checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// None (or a session cookie that has expired: a browser then logs in
    /// again, it is no attack).
    Missing,
    /// The admin token, or a live session.
    Admin,
    /// The metrics token.
    Metrics,
    /// A bearer token that is neither.
    Wrong,
}

/// What is configured, as far as the decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `admin.listen` is a loopback address.
    pub loopback: bool,
    /// `admin.token_file` is set.
    pub admin_token: bool,
    /// `admin.metrics_token_file` is set.
    pub metrics_token: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 401 with `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// A request that needs the admin token on a node that has none: 403
    /// naming the key to set.
    NoToken,
}

/// The verdict for one request.
pub fn decide(policy: Policy, method: &Method, path: &str, credential: Credential) -> Decision {
    // The login checks the token itself (it is how a browser presents it);
    // a logout only ends the session its cookie names.
    if path == "/login" || path == "/logout" {
        return Decision::Allow;
    }
    let read_only = method == Method::GET || method == Method::HEAD;
    match credential {
        Credential::Admin => return Decision::Allow,
        Credential::Wrong => return Decision::Unauthorized,
        Credential::Metrics if read_only && path == "/metrics" => return Decision::Allow,
        // Valid, but not for this: as if none had been presented.
        Credential::Metrics | Credential::Missing => {}
    }
    if read_only && path == "/metrics" && policy.metrics_token {
        return Decision::Unauthorized;
    }
    if read_only && policy.loopback {
        return Decision::Allow;
    }
    if !read_only && !policy.admin_token {
        return Decision::NoToken;
    }
    Decision::Unauthorized
}

/// The live browser sessions: random ids with an expiry, at most
/// `cap`. A handful at most, so a list compared in full (constant time per
/// entry) rather than a map whose lookup time depends on the id.
#[derive(Debug)]
pub struct Sessions {
    live: Vec<(String, Instant)>,
    cap: usize,
    ttl: Duration,
}

impl Sessions {
    pub fn new(cap: usize, ttl: Duration) -> Self {
        Sessions {
            live: Vec::new(),
            cap,
            ttl,
        }
    }

    /// Opens session `id`; the expired ones go, and when `cap` are still
    /// live the one closest to its end makes room.
    pub fn open(&mut self, id: String, now: Instant) {
        self.live.retain(|(_, end)| *end > now);
        if self.live.len() >= self.cap {
            if let Some(oldest) = (0..self.live.len()).min_by_key(|&i| self.live[i].1) {
                self.live.swap_remove(oldest);
            }
        }
        self.live.push((id, now + self.ttl));
    }

    pub fn is_live(&self, id: &str, now: Instant) -> bool {
        let mut found = subtle::Choice::from(0);
        for (live, end) in &self.live {
            found |=
                live.as_bytes().ct_eq(id.as_bytes()) & subtle::Choice::from(u8::from(*end > now));
        }
        found.into()
    }

    pub fn close(&mut self, id: &str) {
        self.live
            .retain(|(live, _)| !bool::from(live.as_bytes().ct_eq(id.as_bytes())));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

/// The outcome of a login.
pub enum Login {
    /// The `Set-Cookie` value of the new session.
    Opened(String),
    WrongToken,
    NoToken,
}

/// The admin API's credentials and sessions.
pub struct Auth {
    policy: Policy,
    token: Option<AdminToken>,
    metrics_token: Option<AdminToken>,
    /// Held for a few comparisons, never across an await.
    sessions: Mutex<Sessions>,
}

/// Marks a request that came through the admin Unix socket (a request
/// extension, never from the wire): only who may open the socket file
/// (mode 0600: its owner, and root) can send one, so it counts as the
/// admin token.
#[derive(Debug, Clone, Copy)]
pub struct LocalSocket;

impl Auth {
    /// The TCP listener's policy is for `config.listen` (none: only the
    /// socket, which needs no policy).
    pub fn new(config: &AdminConfig) -> Self {
        Auth {
            policy: Policy {
                loopback: config.listen.is_none_or(|l| l.ip().is_loopback()),
                admin_token: config.token.is_some(),
                metrics_token: config.metrics_token.is_some(),
            },
            token: config.token.clone(),
            metrics_token: config.metrics_token.clone(),
            sessions: Mutex::new(Sessions::new(MAX_SESSIONS, SESSION_TTL)),
        }
    }

    /// The credential of a request: its `Authorization: Bearer` token
    /// when it has that header, else its session cookie.
    pub fn credential(&self, headers: &HeaderMap, now: Instant) -> Credential {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let presented = value
                .to_str()
                .ok()
                .and_then(|v| {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .unwrap_or("");
            return if matches(self.token.as_ref(), presented) {
                Credential::Admin
            } else if matches(self.metrics_token.as_ref(), presented) {
                Credential::Metrics
            } else {
                Credential::Wrong
            };
        }
        match session_cookie(headers) {
            Some(id) if self.lock().is_live(id, now) => Credential::Admin,
            _ => Credential::Missing,
        }
    }

    /// `POST /login`: the admin token opens a session.
    pub fn login(&self, presented: &str) -> Login {
        if self.token.is_none() {
            return Login::NoToken;
        }
        if !matches(self.token.as_ref(), presented.trim()) {
            return Login::WrongToken;
        }
        let id = new_session_id();
        self.lock().open(id.clone(), Instant::now());
        Login::Opened(format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_TTL.as_secs()
        ))
    }

    /// `POST /logout`: ends the session the request's cookie names.
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.lock().close(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A panic while holding it cannot leave the list inconsistent
        // (each change is one Vec operation): poisoning is ignored.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Constant-time comparison with a configured token (none: no match).
fn matches(token: Option<&AdminToken>, presented: &str) -> bool {
    token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(presented.as_bytes())))
}

/// 128 random bits from the operating system, in hex.
fn new_session_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value that makes a browser forget its session.
pub fn expired_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

pub fn count_failure() {
    metrics::counter!("tandem_admin_auth_failures_total").increment(1);
}

pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer realm=\"tandem\""),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "missing or wrong admin token (Authorization: Bearer <token>, or log in at /login)\n",
    )
        .into_response()
}

pub fn no_token() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "this node has no admin token: set admin.token_file to allow changes through the admin API\n",
    )
        .into_response()
}

/// The middleware in front of every route.
pub async fn require(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let credential = if request.extensions().get::<LocalSocket>().is_some() {
        Credential::Admin
    } else {
        auth.credential(request.headers(), Instant::now())
    };
    match decide(
        auth.policy,
        request.method(),
        request.uri().path(),
        credential,
    ) {
        Decision::Allow => next.run(request).await,
        Decision::Unauthorized => {
            count_failure();
            unauthorized()
        }
        Decision::NoToken => {
            count_failure();
            no_token()
        }
    }
}

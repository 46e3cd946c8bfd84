//! The admin HTTP API: `GET /metrics` (Prometheus), `GET /status` (JSON:
//! this node and its pair), `POST /switchover` (a controlled switchover
//! to the standby; `tandem switchover` calls it), `POST
//! /notify/master|backup|fault` (with `ha.external_role`: the external
//! owner of the floating address reports this node's new state; `tandem
//! notify` calls it, from keepalived's notify script for instance), and
//! `GET|POST /login`, `POST /logout` (a session cookie for browsers);
//! planned work on media servers: `GET /calls[?member=][&limit=]`, `GET
//! /members`, `POST /members/NAME/drain|undrain`, `POST
//! /move?from=NAME[&to=NAME][&max=N]` (`tandem calls`, `members`,
//! `drain`, `move`); and the live status page (`page`): `GET /` (the
//! page), `GET /overview` (its data as JSON, once) and `GET /events` (the
//! same, pushed every second as server-sent events).
//!
//! An axum [`Router`] with one state and one authentication middleware
//! (`auth`), so that more pages (a status page, server-sent events) are
//! one `.route` each and are guarded like the rest. The listener
//! (`listener`) caps connections, header size and time, and backs off
//! accept errors: the admin port must never become a way to slow the
//! node down.

mod auth;
mod client;
mod listener;
mod page;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::config::AdminConfig;
use crate::driver::Command;

pub use client::{request, AdminAddr};

/// Request bodies are not used but for the login form's token: anything
/// larger is refused before it is read.
const BODY_LIMIT: usize = 4096;

#[derive(Clone)]
pub struct Admin {
    pub metrics: PrometheusHandle,
    pub sync: Option<state_sync::SyncHandle>,
    /// The engine's command queue (bounded: a flood of requests gets 503,
    /// the engine is not buried under them).
    pub engine: mpsc::Sender<Command>,
}

/// What every handler sees.
#[derive(Clone)]
struct AppState {
    admin: Admin,
    auth: Arc<auth::Auth>,
    /// The status page's feed, shared by its viewers.
    page: Arc<page::Feed>,
}

/// Binds `admin.listen` and `admin.socket` (either, both or none) and
/// serves the API on each from a task of its own.
pub async fn serve(config: &AdminConfig, admin: Admin) -> anyhow::Result<()> {
    if config.listen.is_none() && config.socket.is_none() {
        return Ok(());
    }
    let state = AppState {
        admin,
        auth: Arc::new(auth::Auth::new(config)),
        page: Arc::new(page::Feed::default()),
    };
    let router = router(state);
    listener::register_metrics();
    if let Some(listen) = config.listen {
        let tcp = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("admin listener on {listen}: {e}"))?;
        tokio::spawn(listener::accept_loop(tcp, router.clone()));
    }
    if let Some(path) = &config.socket {
        let unix = listener::bind_private_socket(path)
            .map_err(|e| anyhow::anyhow!("admin socket {}: {e}", path.display()))?;
        // Whoever can open the socket passed its file permissions: that
        // is the credential (see `auth::LocalSocket`).
        let router = router.layer(axum::Extension(auth::LocalSocket));
        tokio::spawn(listener::accept_loop(unix, router));
    }
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/switchover", post(switchover))
        .route("/registrations", get(registrations))
        .route("/wan", get(wans))
        .route("/wan/{name}/{mode}", post(force_wan))
        .route("/notify/{state}", post(notify))
        .route("/calls", get(calls))
        .route("/members", get(members))
        .route("/members/{name}/{mode}", post(drain_member))
        .route("/move", post(move_calls))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/", get(page::page))
        .route("/overview", get(page::overview))
        .route("/events", get(page::events))
        .fallback(not_found)
        // Every route and the fallback: a stranger learns nothing, not
        // even which paths exist, before authenticating.
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.admin.metrics.render(),
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Response {
    // The WANs come from the engine; a busy or stopped engine leaves them
    // out (null) rather than failing the pair's status.
    let wans = ask_engine(&state, |reply| Command::Wans { reply })
        .await
        .ok()
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok());
    (
        [(header::CONTENT_TYPE, "application/json")],
        status_json(&state.admin, wans),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct SwitchoverQuery {
    #[serde(default)]
    force: Option<String>,
}

/// Why the engine did not answer a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unavailable {
    /// Its queue is full.
    Busy,
    /// It took too long to answer (the status page does not wait on a
    /// stuck engine: it says so).
    Slow,
    Stopped,
}

impl Unavailable {
    fn text(self) -> &'static str {
        match self {
            Unavailable::Busy => "the engine is busy with earlier commands\n",
            Unavailable::Slow => "the engine did not answer in time\n",
            Unavailable::Stopped => "the engine has stopped\n",
        }
    }

    /// The 503 to send.
    fn response(self) -> Response {
        text(StatusCode::SERVICE_UNAVAILABLE, self.text())
    }
}

/// Hands `command` (made with its reply channel) to the engine and waits
/// for the answer, unless its queue is full or it has stopped.
async fn ask<T>(
    engine: &mpsc::Sender<Command>,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Unavailable> {
    let (tx, rx) = oneshot::channel();
    match engine.try_send(command(tx)) {
        Ok(()) => rx.await.map_err(|_| Unavailable::Stopped),
        Err(mpsc::error::TrySendError::Full(_)) => Err(Unavailable::Busy),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Unavailable::Stopped),
    }
}

/// [`ask`], with the 503 to send when the engine does not answer.
async fn ask_engine<T>(
    state: &AppState,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Response> {
    ask(&state.admin.engine, command)
        .await
        .map_err(Unavailable::response)
}

/// A JSON body.
fn json(body: String) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn switchover(
    State(state): State<AppState>,
    Query(query): Query<SwitchoverQuery>,
) -> Response {
    let force = matches!(query.force.as_deref(), Some("1" | "true"));
    match ask_engine(&state, |reply| Command::Switchover { force, reply }).await {
        Ok(Ok(())) => text(StatusCode::OK, "switched over\n"),
        Ok(Err(why)) => text(StatusCode::CONFLICT, format!("{why}\n")),
        Err(refused) => refused,
    }
}

#[derive(serde::Deserialize)]
struct RegistrationsQuery {
    aor: Option<String>,
    limit: Option<usize>,
}

/// `GET /registrations[?aor=alice@example.com][&limit=N]`: the
/// registrar's bindings as JSON (at most 1,000 AORs unless `limit` says
/// otherwise).
async fn registrations(
    State(state): State<AppState>,
    Query(query): Query<RegistrationsQuery>,
) -> Response {
    let (aor, limit) = (query.aor, query.limit.unwrap_or(1000));
    match ask_engine(&state, |reply| Command::Registrations { aor, limit, reply }).await {
        Ok(Some(body)) => json(body + "\n"),
        Ok(None) => text(StatusCode::NOT_FOUND, "no registrar is configured\n"),
        Err(refused) => refused,
    }
}

/// `GET /wan`: every `[[wan]]`, its state, judgement and override.
async fn wans(State(state): State<AppState>) -> Response {
    match ask_engine(&state, |reply| Command::Wans { reply }).await {
        Ok(body) => json(body),
        Err(refused) => refused,
    }
}

/// `POST /wan/NAME/down|up|auto`: planned work on a WAN.
async fn force_wan(
    State(state): State<AppState>,
    Path((name, mode)): Path<(String, String)>,
) -> Response {
    let Some(mode) = crate::wan::Forced::parse(&mode) else {
        return text(StatusCode::NOT_FOUND, "mode: down, up or auto\n");
    };
    match ask_engine(&state, |reply| Command::ForceWan {
        wan: name,
        mode,
        reply,
    })
    .await
    {
        Ok(Ok(down)) => text(StatusCode::OK, if down { "down\n" } else { "up\n" }),
        Ok(Err(why)) => text(StatusCode::NOT_FOUND, format!("{why}\n")),
        Err(refused) => refused,
    }
}

async fn notify(State(state): State<AppState>, Path(role): Path<String>) -> Response {
    let master = match role.as_str() {
        "master" => true,
        "backup" | "fault" => false,
        _ => return not_found().await,
    };
    match &state.admin.sync {
        Some(sync) => {
            sync.notify(master);
            text(StatusCode::OK, "noted\n")
        }
        None => text(StatusCode::CONFLICT, "no standby pair is configured\n"),
    }
}

/// For a browser: the form that trades the admin token for a session
/// cookie (an `EventSource` cannot send an `Authorization` header).
async fn login_form() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Tandem login</title>\
         <form method=post action=/login>\
         <label>Admin token <input type=password name=token autofocus></label> \
         <button>Log in</button></form>\n",
    )
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    match state.auth.login(&form.token) {
        auth::Login::Opened(cookie) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, cookie),
                // The status page.
                (header::LOCATION, "/".to_owned()),
            ],
        )
            .into_response(),
        auth::Login::WrongToken => {
            auth::count_failure();
            auth::unauthorized()
        }
        auth::Login::NoToken => {
            auth::count_failure();
            auth::no_token()
        }
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.auth.logout(&headers);
    (
        StatusCode::OK,
        [(header::SET_COOKIE, auth::expired_cookie())],
        "logged out\n",
    )
        .into_response()
}

fn status_json(admin: &Admin, wans: Option<serde_json::Value>) -> String {
    format!("{}\n", status_value(admin, wans))
}

/// This node and its pair (`GET /status`; the status page's "node").
fn status_value(admin: &Admin, wans: Option<serde_json::Value>) -> serde_json::Value {
    let Some(sync) = &admin.sync else {
        return serde_json::json!({ "role": "single", "wan": wans });
    };
    let s = sync.status();
    serde_json::json!({
        "node": s.node,
        "role": s.role.name(),
        "epoch": s.epoch,
        "peer_role": s.peer_role.map(|r| r.name()),
        "peer_epoch": s.peer_epoch,
        "seq": s.seq,
        "standby_connected": s.standby_connected,
        "lag_records": s.lag_records,
        "lag_ms": s.lag_ms,
        "records": s.records,
        "digest": s.digest,
        "takeovers": s.takeovers,
        "last_takeover_ms": s.last_takeover_ms,
        "wan": wans,
    })
}

#[derive(serde::Deserialize)]
struct CallsQuery {
    member: Option<String>,
    limit: Option<usize>,
}

/// `GET /calls[?member=ms1][&limit=N]`: the calls in progress as JSON,
/// oldest first (at most 1,000 unless `limit` says otherwise).
async fn calls(State(state): State<AppState>, Query(query): Query<CallsQuery>) -> Response {
    let (member, limit) = (query.member, query.limit.unwrap_or(1000));
    match ask_engine(&state, |reply| Command::Calls {
        member,
        limit,
        reply,
    })
    .await
    {
        Ok(Ok(body)) => json(body),
        Ok(Err(why)) => text(StatusCode::NOT_FOUND, format!("{why}\n")),
        Err(refused) => refused,
    }
}

/// `GET /members`: every destination member, its state, whether it is
/// draining and its calls.
async fn members(State(state): State<AppState>) -> Response {
    match ask_engine(&state, |reply| Command::Members { reply }).await {
        Ok(body) => json(body),
        Err(refused) => refused,
    }
}

/// `POST /members/NAME/drain|undrain`: no new calls to a member (it keeps
/// its calls), or calls again.
async fn drain_member(
    State(state): State<AppState>,
    Path((member, mode)): Path<(String, String)>,
) -> Response {
    let on = match mode.as_str() {
        "drain" => true,
        "undrain" => false,
        _ => return not_found().await,
    };
    match ask_engine(&state, |reply| Command::DrainMember { member, on, reply }).await {
        Ok(Ok(changed)) => text(
            StatusCode::OK,
            match (on, changed) {
                (true, true) => "draining\n",
                (true, false) => "draining already\n",
                (false, true) => "undrained\n",
                (false, false) => "not draining\n",
            },
        ),
        Ok(Err(why)) => text(StatusCode::CONFLICT, format!("{why}\n")),
        Err(refused) => refused,
    }
}

#[derive(serde::Deserialize)]
struct MoveQuery {
    from: String,
    to: Option<String>,
    max: Option<usize>,
}

/// `POST /move?from=ms1[&to=ms2][&max=N]`: the answered calls on a member
/// are resumed on others (paced); the reply says how many were scheduled.
async fn move_calls(State(state): State<AppState>, Query(query): Query<MoveQuery>) -> Response {
    let MoveQuery { from, to, max } = query;
    match ask_engine(&state, |reply| Command::MoveCalls {
        from,
        to,
        max,
        reply,
    })
    .await
    {
        Ok(Ok(report)) => json(serde_json::to_string(&report).unwrap_or_default() + "\n"),
        Ok(Err(why)) => text(StatusCode::CONFLICT, format!("{why}\n")),
        Err(refused) => refused,
    }
}

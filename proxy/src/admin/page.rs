//! The live status page: `GET /` (one self-contained HTML page, no
//! external assets), `GET /overview` (its data as JSON, once: for tests,
//! scripts and the CLI) and `GET /events` (the same pushed every
//! [`PUSH_EVERY`] as server-sent events, which the page listens to).
//!
//! The admin port must never slow the node: the engine is asked for the
//! overview at most about once per [`FRESH`] however many viewers there
//! are (they share the last copy), and at most [`MAX_STREAMS`] event
//! streams are open at once (more get 503). Each stream ends with its
//! connection (the listener's connection lifetime, at most); the page's
//! `EventSource` then reconnects by itself after the `retry` we set.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::{ask, json, status_value, text, AppState, Unavailable};
use crate::driver::Command;

/// Event streams open at once, at most.
pub const MAX_STREAMS: usize = 16;
/// How often a stream pushes the overview.
pub const PUSH_EVERY: Duration = Duration::from_secs(1);
/// An overview this young is handed out again rather than asked anew.
const FRESH: Duration = Duration::from_millis(900);
/// How long the engine may take to answer for the page.
const ENGINE_DEADLINE: Duration = Duration::from_secs(2);
/// How soon a browser reconnects a stream that ended.
const RECONNECT: Duration = Duration::from_secs(1);

const PAGE: &str = include_str!("page.html");

/// The engine's overview as JSON, or why there is none.
type Overview = Result<Arc<str>, Unavailable>;

/// What the viewers share: the stream slots and the last overview.
pub struct Feed {
    streams: Arc<Semaphore>,
    /// Held while the engine is asked, so that viewers arriving meanwhile
    /// wait for that answer instead of asking again.
    /// An engine that did not answer is remembered as long: a stuck
    /// engine must not get one more command per viewer.
    latest: Mutex<Option<(Instant, Overview)>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            latest: Mutex::new(None),
        }
    }
}

impl Feed {
    /// The overview: the last one if it is fresh, else a new one.
    async fn current(&self, state: &AppState) -> Overview {
        let mut latest = self.latest.lock().await;
        if let Some((_, body)) = latest.as_ref().filter(|(at, _)| at.elapsed() < FRESH) {
            return body.clone();
        }
        let body = overview_json(state).await.map(Arc::from);
        *latest = Some((Instant::now(), body.clone()));
        body
    }
}

/// The engine's overview with this node's pair state as `node`.
async fn overview_json(state: &AppState) -> Result<String, Unavailable> {
    let asked = ask(&state.admin.engine, |reply| Command::Overview { reply });
    let engine = tokio::time::timeout(ENGINE_DEADLINE, asked)
        .await
        .map_err(|_| Unavailable::Slow)??;
    let mut overview: Value = serde_json::from_str(&engine).unwrap_or_default();
    let mut node = status_value(&state.admin, None);
    if let Some(node) = node.as_object_mut() {
        // The WANs are the overview's own.
        node.remove("wan");
    }
    if let Some(map) = overview.as_object_mut() {
        map.insert("node".into(), node);
    }
    Ok(overview.to_string())
}

/// `GET /`.
pub async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

/// `GET /overview`.
pub async fn overview(State(state): State<AppState>) -> Response {
    match state.page.current(&state).await {
        Ok(body) => json(format!("{body}\n")),
        Err(why) => why.response(),
    }
}

/// `GET /events`: `event: overview` with the overview's JSON every
/// [`PUSH_EVERY`] (`event: unavailable` with the reason while the engine
/// does not answer).
pub async fn events(State(state): State<AppState>) -> Response {
    let Ok(slot) = state.page.streams.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many status page viewers: close one, or read /overview\n",
        );
    };
    let mut interval = tokio::time::interval(PUSH_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The slot is held as long as the stream lives: until its connection
    // ends.
    let stream = futures::stream::unfold(
        (state, slot, interval, true),
        |(state, slot, mut interval, first)| async move {
            interval.tick().await;
            let event = match state.page.current(&state).await {
                Ok(body) => Event::default().event("overview").data(&*body),
                Err(why) => Event::default()
                    .event("unavailable")
                    .data(why.text().trim_end()),
            };
            let event = if first { event.retry(RECONNECT) } else { event };
            Some((Ok::<_, Infallible>(event), (state, slot, interval, false)))
        },
    );
    Sse::new(stream).into_response()
}

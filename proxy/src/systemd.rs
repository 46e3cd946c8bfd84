//! Running under systemd (`Type=notify`, `deploy/systemd/tandem.service`):
//! `READY=1` once the listeners are bound and the pair's role is settled,
//! `STATUS=` lines (role, calls), `STOPPING=1` at shutdown, and
//! `WATCHDOG=1` only while the engine proves progress.
//!
//! Every message is one datagram to `$NOTIFY_SOCKET`; without it (not
//! started by systemd) each call here does nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::driver::Heartbeat;

/// The longest pause between two looks at the engine: `STATUS=` follows
/// the role and the calls this closely.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// One notification; a failure to send is logged, never fatal (the
/// service manager may be restarting).
fn send(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "sd_notify not sent");
    }
}

/// `READY=1` with a first `STATUS=`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`, and why.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The `STATUS=` line: this node's role and its calls.
pub fn status_line(role: &str, calls: usize) -> String {
    format!("{role}, {calls} calls")
}

/// The engine's housekeeping tick (`driver`): its heartbeat moves at
/// least this often.
const ENGINE_TICK: Duration = Duration::from_millis(500);

/// Whether a watchdog ping may go out: the engine's heartbeat moved
/// `since_moved` ago, and pings go every `every` (half of WATCHDOG_USEC).
/// A few engine ticks of slack, so that a ping period shorter than the
/// tick never skips a ping of a live engine; a stuck engine stops the
/// pings within `every` or three ticks, whichever is longer.
pub fn engine_alive(since_moved: Duration, every: Duration) -> bool {
    since_moved <= every.max(3 * ENGINE_TICK)
}

/// Starts the notifier's thread: `STATUS=` when it changes and, when
/// systemd asked for a watchdog (`WATCHDOG_USEC`), `WATCHDOG=1` every half
/// of its period — only if the engine's heartbeat moved since the last
/// ping. The thread is not a tokio task: a runtime that is itself stuck
/// must stop the pings too, not keep them going. `role` names this node's
/// role (`lone` without a pair).
pub fn spawn_notifier(heartbeat: Arc<Heartbeat>, role: Box<dyn Fn() -> String + Send>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled().map(|period| period / 2);
    // The heartbeat is sampled four times per ping.
    let pause = watchdog.map_or(STATUS_EVERY, |w| (w / 4).min(STATUS_EVERY));
    let spawned = std::thread::Builder::new()
        .name("sd-notify".into())
        .spawn(move || {
            let mut ticks = heartbeat.ticks.load(Ordering::Relaxed);
            let mut moved_at = Instant::now();
            let mut last_ping = Instant::now();
            let mut last_status = String::new();
            let mut stalled = false;
            loop {
                std::thread::sleep(pause);
                let now_ticks = heartbeat.ticks.load(Ordering::Relaxed);
                if now_ticks != ticks {
                    ticks = now_ticks;
                    moved_at = Instant::now();
                }
                let status = status_line(&role(), heartbeat.calls.load(Ordering::Relaxed));
                if status != last_status {
                    send(&[NotifyState::Status(&status)]);
                    last_status = status;
                }
                let Some(every) = watchdog else { continue };
                if last_ping.elapsed() + pause / 2 < every {
                    continue;
                }
                if engine_alive(moved_at.elapsed(), every) {
                    last_ping = Instant::now();
                    stalled = false;
                    send(&[NotifyState::Watchdog]);
                } else if !stalled {
                    stalled = true;
                    tracing::error!(
                        ticks,
                        "the call engine has made no progress: watchdog pings stopped (systemd will restart this node)"
                    );
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "the sd_notify thread did not start");
    }
}

#[cfg(test)]
mod tests;

//! The admin HTTP listener: `GET /metrics` (Prometheus), `GET /status`
//! (JSON: this node and its pair), `POST /switchover` (a controlled
//! switchover to the standby; `tandem switchover` calls it), `POST
//! /notify/master|backup|fault` (with `ha.external_role`: the external
//! owner of the floating address reports this node's new state; `tandem
//! notify` calls it, from keepalived's notify script for instance).
//!
//! HTTP/1.0-style: one request per connection, a few bytes each way; it is
//! for operators and scrapers, not for load. Requests are bounded in size
//! and time.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::driver::Command;

#[derive(Clone)]
pub struct Admin {
    pub metrics: PrometheusHandle,
    pub sync: Option<state_sync::SyncHandle>,
    /// The engine's command queue (bounded: a flood of requests gets 503,
    /// the engine is not buried under them).
    pub engine: mpsc::Sender<Command>,
}

pub async fn serve(listen: SocketAddr, admin: Admin) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("admin listener on {listen}: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let admin = admin.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, admin)).await;
            });
        }
    });
    Ok(())
}

async fn handle(mut stream: TcpStream, admin: Admin) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Up to the end of the headers; bodies are not used.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", admin.metrics.render()),
        ("GET", "/status") => (200, "application/json", status_json(&admin)),
        ("POST", "/switchover" | "/switchover?force=1") => {
            let (tx, rx) = oneshot::channel();
            let force = path.ends_with("force=1");
            match admin
                .engine
                .try_send(Command::Switchover { force, reply: tx })
            {
                Ok(()) => match rx.await {
                    Ok(Ok(())) => (200, "text/plain", "switched over\n".to_string()),
                    Ok(Err(why)) => (409, "text/plain", format!("{why}\n")),
                    Err(_) => (503, "text/plain", "the engine has stopped\n".to_string()),
                },
                Err(mpsc::error::TrySendError::Full(_)) => (
                    503,
                    "text/plain",
                    "the engine is busy with earlier commands\n".to_string(),
                ),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    (503, "text/plain", "the engine has stopped\n".to_string())
                }
            }
        }
        ("POST", "/notify/master" | "/notify/backup" | "/notify/fault") => match &admin.sync {
            Some(sync) => {
                sync.notify(path == "/notify/master");
                (200, "text/plain", "noted\n".to_string())
            }
            None => (
                409,
                "text/plain",
                "no standby pair is configured\n".to_string(),
            ),
        },
        (_, "/metrics" | "/status" | "/switchover") => {
            (405, "text/plain", "method not allowed\n".to_string())
        }
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn status_json(admin: &Admin) -> String {
    let Some(sync) = &admin.sync else {
        return "{\"role\":\"single\"}\n".into();
    };
    let s = sync.status();
    let v = serde_json::json!({
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
    });
    format!("{v}\n")
}

/// `tandem switchover|status --admin ADDR`: one request to a running node.
pub fn request(admin: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(10);
    let mut s = std::net::TcpStream::connect_timeout(&admin, timeout)
        .map_err(|e| format!("cannot reach the admin API at {admin}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: tandem\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| format!("{admin}: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("{admin}: {e}"))?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{admin}: not an HTTP answer"))?;
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((status, body))
}

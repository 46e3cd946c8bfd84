//! Helpers shared by the transport tests. Every wait has a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Incoming, TransportConfig, Transports};

/// Deadline of every wait in these tests: generous, never a speed check.
pub(crate) const DEADLINE: Duration = Duration::from_secs(5);

pub(crate) async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub(crate) async fn recv(rx: &mut mpsc::Receiver<Incoming>) -> Incoming {
    within("an incoming message", rx.recv())
        .await
        .expect("incoming channel closed")
}

/// Poll `cond` until it holds.
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

pub(crate) fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub(crate) fn bind(config: &TransportConfig) -> (Transports, mpsc::Receiver<Incoming>) {
    Transports::bind(localhost(), config).expect("bind on 127.0.0.1")
}

pub(crate) fn request(method: &str, body: &str) -> bytes::Bytes {
    let text = format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK-{method}\r\n\
         Call-ID: test-{method}\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    bytes::Bytes::from(text)
}

pub(crate) fn response(body: &str) -> bytes::Bytes {
    let text = format!(
        "SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    bytes::Bytes::from(text)
}

//! The SIP TCP listener's limits against the running binary: one source
//! cannot hold more than `max_connections_per_ip` connections while another
//! still gets in; a connection that sends nothing is closed at the
//! first-message deadline; a peer sending one byte a second is closed at
//! the message deadline while a normal client keeps being answered; and
//! `/metrics` counts each by reason.

use std::net::SocketAddr;
use std::time::Duration;

use testkit::{Tandem, TandemConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
/// Every wait in this file; generous, never a speed check.
const DEADLINE: Duration = Duration::from_secs(10);

async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ip.parse().unwrap(), 0))
        .unwrap();
    tokio::time::timeout(DEADLINE, socket.connect(to))
        .await
        .expect("connect within the deadline")
        .unwrap_or_else(|e| panic!("connect from {ip}: {e}"))
}

fn options(from: SocketAddr, to: SocketAddr, id: &str) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {from};branch=z9hG4bK{id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{from}>;tag=t{id}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: {id}@tcp-limits\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends an OPTIONS on `stream` and waits for Tandem's 200 on it.
async fn answered(stream: &mut TcpStream, id: &str, tandem: &Tandem) {
    let req = options(stream.local_addr().unwrap(), tandem.sip_addr(), id);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 2048];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(DEADLINE, read).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("SIP/2.0 200"),
        "no 200 to OPTIONS {id}: {text:?}\n{}",
        tandem.log_tail(20)
    );
}

/// Waits until Tandem closes `stream` (EOF or reset); returns what was
/// read meanwhile.
async fn closed_by_tandem(stream: &mut TcpStream, what: &str, tandem: &Tandem) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(DEADLINE, read).await.is_err() {
        panic!(
            "{what}: still open after {DEADLINE:?}\n{}",
            tandem.log_tail(20)
        );
    }
    got
}

#[tokio::test]
async fn tcp_peers_cannot_hold_connections_for_nothing() {
    let member: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", member)])
            .without_health()
            .extra_toml(
                "[sip.tcp]\nmax_connections_per_ip = 2\n\
                 first_message_timeout_ms = 1500\nmessage_timeout_ms = 2000\n",
            ),
    )
    .await;
    let to = tandem.sip_addr();

    // Per-source cap: the third connection from 127.0.0.2 is closed, one
    // from 127.0.0.3 is served, and so are the first two.
    let mut first = connect_from("127.0.0.2", to).await;
    let mut second = connect_from("127.0.0.2", to).await;
    answered(&mut first, "a1", &tandem).await;
    answered(&mut second, "a2", &tandem).await;
    let mut third = connect_from("127.0.0.2", to).await;
    // Closed at once, so the request on it gets no answer (the write
    // itself may fail: the connection may be reset already).
    let req = options(third.local_addr().unwrap(), to, "a4");
    let _ = third.write_all(req.as_bytes()).await;
    let got = closed_by_tandem(&mut third, "third connection from one source", &tandem).await;
    assert!(
        !String::from_utf8_lossy(&got).contains("SIP/2.0"),
        "the connection over the per-source cap was served"
    );
    let mut normal = connect_from("127.0.0.3", to).await;
    answered(&mut normal, "b1", &tandem).await;
    answered(&mut first, "a3", &tandem).await;

    // A connection that sends nothing.
    let mut silent = connect_from("127.0.0.4", to).await;
    closed_by_tandem(&mut silent, "silent connection", &tandem).await;

    // A peer that sends a message, then the next one a byte a second.
    let slow = {
        let mut s = connect_from("127.0.0.5", to).await;
        answered(&mut s, "c1", &tandem).await;
        s
    };
    let slow_from = slow.local_addr().unwrap();
    let (mut slow_read, mut slow_write) = slow.into_split();
    let trickle = tokio::spawn(async move {
        // At most 30 bytes, one a second, until Tandem closes.
        for &b in options(slow_from, to, "c2").as_bytes().iter().take(30) {
            if slow_write.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    answered(&mut normal, "b2", &tandem).await;
    let closed = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 256];
        while let Ok(n) = slow_read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "trickling connection still open after {DEADLINE:?}\n{}",
        tandem.log_tail(20)
    );
    answered(&mut normal, "b3", &tandem).await;

    let refused = [("reason", "per_ip_limit")];
    tandem
        .wait_metric(
            "tandem_sip_tcp_connections_refused_total",
            &refused,
            1.0,
            DEADLINE,
        )
        .await;
    for reason in ["first_message_timeout", "message_timeout"] {
        tandem
            .wait_metric(
                "tandem_sip_tcp_connections_closed_total",
                &[("reason", reason)],
                1.0,
                DEADLINE,
            )
            .await;
    }
    // The two from 127.0.0.2 and the normal client are still open.
    tandem
        .wait_metric("tandem_sip_tcp_connections_open", &[], 3.0, DEADLINE)
        .await;
}

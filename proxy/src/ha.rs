//! The proxy's side of the hot-standby pair that is not call state: the
//! probe that tells a node about to take over whether the floating
//! address still answers SIP (then only the pair link is down and it must
//! not take over).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipcore::message::Message;
use sipcore::transaction::BranchKey;
use state_sync::VipProbe;
use tokio::net::UdpSocket;

/// An OPTIONS to `vip` from an ephemeral port on this node's own address
/// (never from the floating address: the answer would go to whoever holds
/// it). Any response with our Call-ID within the timeout means "alive".
pub fn vip_probe(vip: SocketAddr, branches: BranchKey) -> VipProbe {
    Arc::new(move |timeout: Duration| {
        let branches = branches.clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, options_answered(vip, &branches)).await {
                Ok(Ok(answered)) => answered,
                Ok(Err(e)) => {
                    tracing::debug!(%vip, error = %e, "floating-address probe");
                    false
                }
                Err(_) => false,
            }
        })
    })
}

async fn options_answered(vip: SocketAddr, branches: &BranchKey) -> std::io::Result<bool> {
    let bind: SocketAddr = match vip {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(vip).await?;
    let local = sock.local_addr()?;
    let call_id = format!("vip-probe-{}", crate::driver::token(16));
    // Made with the pair's key: the active node knows the probe is its
    // peer's (it comes from an address that is no trunk) and answers it.
    let branch = branches.branch(&crate::driver::token(12));
    let tag = crate::driver::token(8);
    // The connected socket's address is the one the kernel picked toward
    // the floating address: ours, not the floating one.
    let msg = format!(
        "OPTIONS sip:{vip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tandem-standby@{local}>;tag={tag}\r\n\
         To: <sip:{vip}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    // Sent again every 40 ms until the caller's deadline: one lost
    // datagram must not look like a dead node.
    let mut buf = vec![0u8; 4096];
    loop {
        sock.send(msg.as_bytes()).await?;
        let wait = tokio::time::timeout(Duration::from_millis(40), sock.recv(&mut buf)).await;
        let Ok(received) = wait else { continue };
        let n = match received {
            Ok(n) => n,
            // ICMP port unreachable: a host holds the address, no SIP on it.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(false),
            Err(e) => return Err(e),
        };
        if let Ok(m) = Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])) {
            if m.status().is_some() && m.call_id() == call_id {
                return Ok(true);
            }
        }
    }
}

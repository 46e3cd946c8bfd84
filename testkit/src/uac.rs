//! A test UAC of the project's own that registers with digest
//! authentication, for the algorithms Debian's SIPp 3.6.1 and baresip 1.0
//! do not do (SHA-256, SHA-512-256; MD5 too). UDP on 127.0.0.1 only.
//!
//! It sends a REGISTER, takes the 401, picks the challenge with the
//! algorithm asked for (or the topmost it can answer, as RFC 8760 §2.4
//! says), answers it with [`sipcore::digest::authorization`] and returns the
//! final answer. Every wait has a deadline; requests are retransmitted as
//! RFC 3261 Timer E does (500 ms, doubling, at most 4 s apart).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use sipcore::digest::{authorization, Algorithm, Challenge};
use sipcore::message::{Message, Method, RequestBuilder};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// How long one REGISTER transaction may take before the UAC gives up
/// (RFC 3261's Timer F is 32 s; a test wants its answer sooner).
const TRANSACTION_DEADLINE: Duration = Duration::from_secs(10);
/// Timer E's first and largest interval (T1, T2).
const RETRANSMIT_FIRST: Duration = Duration::from_millis(500);
const RETRANSMIT_MAX: Duration = Duration::from_secs(4);

/// What a registration came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterResult {
    /// The final status of the last REGISTER (200 when registered).
    pub status: u16,
    /// The Contact values of the final response (the registrar's list of
    /// current bindings, with their `expires`).
    pub contacts: Vec<String>,
    /// The algorithm of the challenge answered (`MD5`, `SHA-256`,
    /// `SHA-512-256`); empty when the first REGISTER was not challenged.
    pub algorithm_used: String,
}

/// Registers `aor_user@domain` with the registrar at `server`: Contact
/// `<sip:aor_user@127.0.0.1:contact_port>`, Expires `expires` (0
/// unregisters that contact). `algorithm_preference` names the algorithm
/// to answer (an error when the registrar does not offer it); None takes
/// the topmost challenge the UAC can answer.
pub async fn register(
    server: SocketAddr,
    aor_user: &str,
    domain: &str,
    password: &str,
    algorithm_preference: Option<&str>,
    expires: u32,
    contact_port: u16,
) -> anyhow::Result<RegisterResult> {
    let wanted = match algorithm_preference {
        None => None,
        Some(name) => {
            Some(Algorithm::parse(name).ok_or_else(|| anyhow!("unknown algorithm {name:?}"))?)
        }
    };
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .context("bind the UAC's socket on 127.0.0.1")?;
    let local = socket.local_addr()?;
    let request_uri = format!("sip:{domain}");
    let call_id = format!("{:016x}@127.0.0.1", rand::random::<u64>());
    let from_tag = format!("{:08x}", rand::random::<u32>());
    let register = |cseq: u32, authorization: Option<(&str, &str)>| {
        let mut builder = RequestBuilder::new(&Method::Register, &request_uri)
            .header(
                "Via",
                &format!(
                    "SIP/2.0/UDP {local};branch=z9hG4bK{:016x};rport",
                    rand::random::<u64>()
                ),
            )
            .header("From", &format!("<sip:{aor_user}@{domain}>;tag={from_tag}"))
            .header("To", &format!("<sip:{aor_user}@{domain}>"))
            .header("Call-ID", &call_id)
            .header("CSeq", &format!("{cseq} REGISTER"))
            .header(
                "Contact",
                &format!("<sip:{aor_user}@127.0.0.1:{contact_port}>"),
            )
            .header("Expires", &expires.to_string())
            .header("User-Agent", "tandem-testkit-uac");
        if let Some((name, value)) = authorization {
            builder = builder.header(name, value);
        }
        builder.build()
    };

    let first = transaction(&socket, server, register(1, None)).await?;
    let status = first.status().unwrap_or(0);
    let (challenge_header, answer_header) = match status {
        401 => ("WWW-Authenticate", "Authorization"),
        407 => ("Proxy-Authenticate", "Proxy-Authorization"),
        _ => return Ok(result(&first, "")),
    };
    let challenges: Vec<Challenge> = first
        .headers(challenge_header)
        .filter_map(|value| Challenge::parse(value).ok())
        .collect();
    let challenge = match wanted {
        Some(algorithm) => challenges.iter().find(|c| c.algorithm == algorithm),
        None => challenges.first(),
    }
    .ok_or_else(|| {
        anyhow!(
            "no {} challenge to answer in the {status}: {:?}",
            algorithm_preference.unwrap_or("supported"),
            first.headers(challenge_header).collect::<Vec<_>>()
        )
    })?;
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let value = authorization(
        challenge,
        aor_user,
        password,
        "REGISTER",
        &request_uri,
        &cnonce,
        1,
    );
    let second = transaction(&socket, server, register(2, Some((answer_header, &value)))).await?;
    Ok(result(&second, challenge.algorithm.as_str()))
}

fn result(response: &Message, algorithm_used: &str) -> RegisterResult {
    RegisterResult {
        status: response.status().unwrap_or(0),
        contacts: response
            .header_values("Contact")
            .map(|c| c.trim().to_owned())
            .collect(),
        algorithm_used: algorithm_used.to_owned(),
    }
}

/// Sends `request` until a final response with its branch arrives (or the
/// deadline passes), and returns that response.
async fn transaction(
    socket: &UdpSocket,
    server: SocketAddr,
    request: Bytes,
) -> anyhow::Result<Message> {
    let sent = Message::parse(request.clone()).context("the UAC's own request")?;
    let branch = sent
        .top_via()
        .branch()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the UAC's own Via has no branch"))?;
    let deadline = Instant::now() + TRANSACTION_DEADLINE;
    let mut interval = RETRANSMIT_FIRST;
    let mut buf = vec![0u8; 65_535];
    loop {
        socket.send_to(&request, server).await?;
        let resend_at = Instant::now() + interval;
        interval = (interval * 2).min(RETRANSMIT_MAX);
        loop {
            let wait_until = resend_at.min(deadline);
            let received = tokio::time::timeout_at(wait_until, socket.recv_from(&mut buf)).await;
            let Ok(received) = received else {
                if Instant::now() >= deadline {
                    bail!("no final response from {server} in {TRANSACTION_DEADLINE:?}");
                }
                break; // retransmit
            };
            let (len, from) = received?;
            if from != server {
                continue;
            }
            let Ok(response) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else {
                continue;
            };
            let ours = response.top_via().branch() == Some(branch.as_str());
            match response.status() {
                Some(status) if ours && status >= 200 => return Ok(response),
                _ => continue, // provisional, or not ours
            }
        }
    }
}

#[cfg(test)]
mod tests;

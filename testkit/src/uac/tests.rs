//! The UAC against a tiny registrar in the test: it challenges with every
//! algorithm and verifies with `sipcore::digest` directly (the real
//! registrar lives in the proxy binary, out of testkit's reach).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sipcore::digest::{Algorithm, Challenge, Credentials, NonceCheck, NonceKey};
use sipcore::message::{Message, ResponseBuilder};
use tokio::net::UdpSocket;

use super::*;

const DOMAIN: &str = "example.org";
const PASSWORD: &str = "secret";
const NOW_S: u64 = 1_800_000_000;

/// Starts the responder; it offers `offered` in that order and answers
/// until `requests` REGISTERs were handled or 20 s passed.
async fn responder(offered: Vec<Algorithm>, requests: usize) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(tokio::time::timeout(Duration::from_secs(20), async move {
        let key = NonceKey::from_secret(b"responder");
        let mut buf = vec![0u8; 65_535];
        for _ in 0..requests {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            let request = Message::parse(Bytes::copy_from_slice(&buf[..len])).unwrap();
            let response = answer(&request, &key, &offered);
            socket.send_to(&response, from).await.unwrap();
        }
    }));
    addr
}

/// 401 with one challenge per algorithm; 200 with the Contact for right
/// credentials; 403 otherwise.
fn answer(request: &Message, key: &NonceKey, offered: &[Algorithm]) -> Bytes {
    let Some(value) = request.header("Authorization") else {
        let nonce = key.issue(NOW_S, DOMAIN);
        return offered
            .iter()
            .fold(
                ResponseBuilder::new(request, 401, "Unauthorized"),
                |builder, &algorithm| {
                    let challenge = Challenge {
                        realm: DOMAIN.into(),
                        nonce: nonce.clone(),
                        algorithm,
                        opaque: Some("op".into()),
                        stale: false,
                        qop_auth: true,
                    };
                    builder.header("WWW-Authenticate", &challenge.to_header_value())
                },
            )
            .build();
    };
    let credentials = Credentials::parse(value).unwrap();
    let user = request
        .from_header()
        .uri()
        .user
        .unwrap_or_default()
        .to_owned();
    let right = credentials.username == user
        && credentials.realm == DOMAIN
        && offered.contains(&credentials.algorithm)
        && credentials.opaque.as_deref() == Some("op")
        && credentials.nc == Some(1)
        && Some(credentials.uri.as_str()) == request.request_uri_str()
        && matches!(
            key.check(&credentials.nonce, NOW_S, DOMAIN, 60),
            NonceCheck::Valid { .. }
        )
        && credentials.verify(
            "REGISTER",
            &credentials.algorithm.ha1(&user, DOMAIN, PASSWORD),
        );
    if !right {
        return ResponseBuilder::new(request, 403, "Forbidden").build();
    }
    let contact = format!(
        "{};expires={}",
        request.header("Contact").unwrap(),
        request.expires().unwrap()
    );
    ResponseBuilder::new(request, 200, "OK")
        .header("Contact", &contact)
        .build()
}

#[tokio::test]
async fn registers_with_each_algorithm_asked_for() {
    let every = vec![Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256];
    for name in ["SHA-256", "SHA-512-256", "MD5", "sha-256"] {
        let server = responder(every.clone(), 2).await;
        let result = register(server, "alice", DOMAIN, PASSWORD, Some(name), 600, 5099)
            .await
            .unwrap();
        assert_eq!(
            result,
            RegisterResult {
                status: 200,
                contacts: vec!["<sip:alice@127.0.0.1:5099>;expires=600".into()],
                algorithm_used: Algorithm::parse(name).unwrap().as_str().into(),
            }
        );
    }
}

#[tokio::test]
async fn without_a_preference_the_topmost_challenge_is_answered() {
    let server = responder(vec![Algorithm::Sha512_256, Algorithm::Md5], 2).await;
    let result = register(server, "bob", DOMAIN, PASSWORD, None, 60, 5098)
        .await
        .unwrap();
    assert_eq!(result.status, 200);
    assert_eq!(result.algorithm_used, "SHA-512-256");
}

#[tokio::test]
async fn a_wrong_password_gets_the_registrars_answer() {
    let server = responder(vec![Algorithm::Sha256], 2).await;
    let result = register(server, "alice", DOMAIN, "guess", Some("SHA-256"), 60, 5097)
        .await
        .unwrap();
    assert_eq!(result.status, 403);
    assert!(result.contacts.is_empty());
}

#[tokio::test]
async fn an_algorithm_not_offered_is_an_error() {
    let server = responder(vec![Algorithm::Md5], 1).await;
    let err = register(
        server,
        "alice",
        DOMAIN,
        PASSWORD,
        Some("SHA-512-256"),
        60,
        5096,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("no SHA-512-256 challenge"),
        "{err}"
    );
    let err = register(server, "alice", DOMAIN, PASSWORD, Some("SHA-1"), 60, 5096)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown algorithm"), "{err}");
}

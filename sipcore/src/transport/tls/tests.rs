//! TLS against the transport's own TLS client: certificates are made at
//! test time by rcgen into a temporary directory (no key is committed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use testkit::certs::TestCa;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::*;
use crate::transport::test_util::*;
use crate::transport::{Incoming, Target, TcpConfig, TransportConfig, TransportKind, Transports};

/// A CA, and certificates it signs, as PEM files in one temp dir.
struct Ca {
    dir: tempfile::TempDir,
    ca: TestCa,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let ca = TestCa::new(name);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Ca { dir, ca }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP addresses): (cert, key)
    /// files.
    fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let cert_file = self.dir.path().join(format!("{file}.pem"));
        let key_file = self.dir.path().join(format!("{file}.key"));
        self.ca.issue(names, &cert_file, &key_file);
        (cert_file, key_file)
    }

    fn server(&self, client_ca: Option<&Ca>) -> ServerIdentity {
        let (cert, key) = self.issue("server", &["127.0.0.1", "sip.test"]);
        let ca = client_ca.map(|c| c.ca_file());
        ServerIdentity::new(server_config(&cert, &key, ca.as_deref()).unwrap())
    }
}

fn tls_config(
    server: Option<ServerIdentity>,
    client: Option<Arc<ClientConfig>>,
) -> TransportConfig {
    TransportConfig {
        tls: Some(TlsConfig {
            port: 0,
            server,
            client,
        }),
        ..TransportConfig::default()
    }
}

fn tls_addr(t: &Transports) -> SocketAddr {
    t.tls().expect("TLS configured").local_addr()
}

/// `client` sends a request to `server` over TLS; it must arrive.
async fn request_arrives(
    client: &Transports,
    server: &Transports,
    rx: &mut mpsc::Receiver<Incoming>,
) -> Incoming {
    let req = request("INVITE", "v=0\r\n");
    within(
        "TLS send",
        client.send(&Target::tls(tls_addr(server)), req.clone()),
    )
    .await
    .unwrap();
    let got = recv(rx).await;
    assert_eq!(got.data, req);
    assert_eq!(got.transport, TransportKind::Tls);
    got
}

#[tokio::test]
async fn request_and_reply_over_tls() {
    let ca = Ca::new("ca1");
    let (server, mut server_rx) = bind(&tls_config(Some(ca.server(None)), None));
    let client_config = client_config(&ca.ca_file()).unwrap();
    let (client, mut client_rx) = bind(&tls_config(None, Some(client_config)));

    let got = request_arrives(&client, &server, &mut server_rx).await;
    // The reply goes back on the same TLS connection.
    let resp = response("");
    within("TLS reply", server.send(&got.reply_target(), resp.clone()))
        .await
        .unwrap();
    let reply = recv(&mut client_rx).await;
    assert_eq!(reply.data, resp);
    assert_eq!(reply.transport, TransportKind::Tls);
    assert_eq!(reply.source, tls_addr(&server));
    // TLS has its own counters; TCP saw nothing.
    let stats = server.stats();
    assert_eq!(
        (stats.tls.messages_received, stats.tls.messages_sent),
        (1, 1)
    );
    assert_eq!(stats.tcp.connections_opened, 0);
}

#[tokio::test]
async fn a_server_the_ca_did_not_sign_is_refused() {
    let (ca, other) = (Ca::new("ca1"), Ca::new("other"));
    let (server, _rx) = bind(&tls_config(Some(other.server(None)), None));
    let (client, _crx) = bind(&tls_config(
        None,
        Some(client_config(&ca.ca_file()).unwrap()),
    ));
    let err = within(
        "TLS send",
        client.send(&Target::tls(tls_addr(&server)), request("OPTIONS", "")),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    assert_eq!(client.stats().tls.handshake_failures, 1);
    assert_eq!(client.tls().unwrap().connection_count(), 0);
}

#[tokio::test]
async fn server_name_is_checked_when_given() {
    let ca = Ca::new("ca1");
    let (server, mut rx) = bind(&tls_config(Some(ca.server(None)), None));
    let (client, _crx) = bind(&tls_config(
        None,
        Some(client_config(&ca.ca_file()).unwrap()),
    ));
    let tls = client.tls().unwrap();
    // A name the certificate does not hold fails ...
    tls.set_server_name(tls_addr(&server), "wrong.test")
        .unwrap();
    let to = Target::tls(tls_addr(&server));
    let sent = client.send(&to, request("OPTIONS", ""));
    assert!(within("TLS send", sent).await.is_err());
    // ... the one it holds passes.
    tls.set_server_name(tls_addr(&server), "sip.test").unwrap();
    request_arrives(&client, &server, &mut rx).await;
}

/// A client config presenting a certificate of `ca`.
fn client_with_cert(trusted: &Ca, issuer: &Ca) -> Arc<ClientConfig> {
    let (cert, key) = issuer.issue("client", &["client.test"]);
    let certs = read_certs(&cert).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(read_roots(&trusted.ca_file()).unwrap())
        .with_client_auth_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

#[tokio::test]
async fn a_client_without_a_valid_certificate_is_refused_when_one_is_required() {
    let (ca, clients_ca, stranger_ca) = (Ca::new("ca1"), Ca::new("clients"), Ca::new("stranger"));
    let (server, mut rx) = bind(&tls_config(Some(ca.server(Some(&clients_ca))), None));
    let to = Target::tls(tls_addr(&server));

    // No certificate, and one from a CA the server does not trust: with
    // TLS 1.3 the client may finish its side and write before the server
    // refuses, so what counts is that nothing arrives.
    let without = client_config(&ca.ca_file()).unwrap();
    let wrong = client_with_cert(&ca, &stranger_ca);
    for config in [without, wrong] {
        let (client, _crx) = bind(&tls_config(None, Some(config)));
        let _ = within("TLS send", client.send(&to, request("OPTIONS", ""))).await;
    }
    eventually("two refused handshakes", || {
        server.stats().tls.handshake_failures == 2
    })
    .await;

    let (client, _crx) = bind(&tls_config(None, Some(client_with_cert(&ca, &clients_ca))));
    request_arrives(&client, &server, &mut rx).await;
    // Only the certified client's message arrived.
    assert_eq!(server.stats().tls.messages_received, 1);
}

#[tokio::test]
async fn a_replaced_certificate_is_used_by_new_handshakes() {
    let (old_ca, new_ca) = (Ca::new("old"), Ca::new("new"));
    let identity = old_ca.server(None);
    let (server, mut rx) = bind(&tls_config(Some(identity.clone()), None));
    let trusts_old = client_config(&old_ca.ca_file()).unwrap();
    let trusts_new = client_config(&new_ca.ca_file()).unwrap();
    let (before, _b) = bind(&tls_config(None, Some(trusts_old.clone())));
    request_arrives(&before, &server, &mut rx).await;

    identity.replace(new_ca.server(None).current());

    // A new handshake sees the new certificate: a client trusting only
    // the old CA fails, one trusting the new CA passes.
    let (old_client, _o) = bind(&tls_config(None, Some(trusts_old)));
    let to = Target::tls(tls_addr(&server));
    let sent = old_client.send(&to, request("OPTIONS", ""));
    assert!(within("TLS send", sent).await.is_err());
    let (new_client, _n) = bind(&tls_config(None, Some(trusts_new)));
    request_arrives(&new_client, &server, &mut rx).await;
    // The connection made before the swap keeps working.
    request_arrives(&before, &server, &mut rx).await;
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_at_the_first_message_deadline() {
    let ca = Ca::new("ca1");
    let config = TransportConfig {
        tcp: TcpConfig {
            first_message_timeout: Duration::from_secs(1),
            ..TcpConfig::default()
        },
        ..tls_config(Some(ca.server(None)), None)
    };
    let (server, _rx) = bind(&config);
    let mut raw = within("connect", TcpStream::connect(tls_addr(&server)))
        .await
        .unwrap();
    within("the server to close the stalled handshake", async {
        let mut buf = [0u8; 64];
        while let Ok(n) = raw.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert_eq!(server.stats().tls.handshake_failures, 1);
    assert_eq!(server.stats().tls.closed_first_message_timeout, 1);
}

#[test]
fn unreadable_files_are_named() {
    let err = server_config(
        Path::new("/nonexistent/cert.pem"),
        Path::new("/nonexistent/key.pem"),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = client_config(&empty).unwrap_err();
    assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
}

/// A client from a network of an entry gets that entry's config (the
/// first that holds it), any other the default.
#[test]
fn a_peer_gets_the_config_of_the_first_network_holding_it() {
    let ca = Ca::new("by-network");
    let (cert, key) = ca.issue("server", &["127.0.0.1"]);
    let config = || server_config(&cert, &key, None).unwrap();
    let (default, trunk, other) = (config(), config(), config());
    let net = |s: &str| vec![s.parse::<IpNet>().unwrap()];
    let identity = ServerIdentity::new(ServerConfigs {
        default: default.clone(),
        by_network: vec![
            (net("127.0.0.2/32"), trunk.clone()),
            (net("127.0.0.0/30"), other.clone()),
        ],
    });
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(Arc::ptr_eq(&identity.current_for(ip("127.0.0.2")), &trunk));
    assert!(Arc::ptr_eq(&identity.current_for(ip("127.0.0.1")), &other));
    assert!(Arc::ptr_eq(
        &identity.current_for(ip("127.0.0.9")),
        &default
    ));
    assert!(Arc::ptr_eq(&identity.current(), &default));
    // A replacement without entries: everyone gets the new default.
    let renewed = config();
    identity.replace(renewed.clone());
    assert!(Arc::ptr_eq(
        &identity.current_for(ip("127.0.0.2")),
        &renewed
    ));
}

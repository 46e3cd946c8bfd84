//! SIP over TLS against the running binary, with a rustls client of the
//! test's own (Debian's SIPp has no TLS): an OPTIONS over TLS is answered
//! on the TLS connection; SIGHUP after the certificate files changed makes
//! new handshakes see the new certificate; with `client_ca_file` a client
//! without a certificate from that CA gets nothing through. Certificates
//! are made by rcgen at test time into a temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use testkit::certs::TestCa;
use testkit::{Tandem, TandemConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
/// Every wait in this file; generous, never a speed check.
const DEADLINE: Duration = Duration::from_secs(10);

fn roots(ca: &TestCa) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    roots
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Tandem's provider; deprecated only for lacking post-quantum kx.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `ca`, presenting `cert` (files) when given.
fn client(ca: &TestCa, cert: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca));
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// An OPTIONS over TLS to `to` gets Tandem's 200.
async fn answered(connector: &tokio_rustls::TlsConnector, to: SocketAddr, tandem: &Tandem) {
    let status = options_over_tls(connector, to).await;
    let ok = Ok("SIP/2.0 200 OK");
    assert_eq!(status.as_deref(), ok, "{}", tandem.log_tail(20));
}

/// Sends an OPTIONS over TLS to `to`; the response's first line, or the
/// error that stopped it (handshake, reset, nothing within the deadline).
async fn options_over_tls(
    connector: &tokio_rustls::TlsConnector,
    to: SocketAddr,
) -> Result<String, String> {
    let exchange = async {
        let tcp = TcpStream::connect(to).await.map_err(|e| e.to_string())?;
        let from = tcp.local_addr().unwrap();
        let name = ServerName::from(to.ip());
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let req = format!(
            "OPTIONS sips:{to} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {from};branch=z9hG4bK{}\r\n\
             Max-Forwards: 70\r\n\
             From: <sips:probe@{from}>;tag=t1\r\n\
             To: <sips:{to}>\r\n\
             Call-ID: {}@tls-test\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            from.port(),
            from.port()
        );
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) => return Err("closed".to_string()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
        let text = String::from_utf8_lossy(&got).to_string();
        Ok(text.lines().next().unwrap_or_default().to_string())
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within the deadline".into()))
}

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    Files {
        cert: p("server.pem"),
        key: p("server.key"),
        client_ca: p("client-ca.pem"),
        client_cert: p("client.pem"),
        client_key: p("client.key"),
        _dir: dir,
    }
}

async fn start(files: &Files, client_ca: bool) -> (Tandem, SocketAddr) {
    let port = testkit::free_port();
    let mut table = format!(
        "[sip.tls]\nport = {port}\ncert_file = {:?}\nkey_file = {:?}\n",
        files.cert, files.key
    );
    if client_ca {
        table += &format!("client_ca_file = {:?}\n", files.client_ca);
    }
    let member: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", member)])
            .without_health()
            .extra_toml(&table),
    )
    .await;
    let to = SocketAddr::new(tandem.sip_addr().ip(), port);
    (tandem, to)
}

#[tokio::test]
async fn options_over_tls_and_certificate_reload_on_sighup() {
    let (old_ca, new_ca) = (TestCa::new("old"), TestCa::new("new"));
    let f = files();
    old_ca.issue(&["127.0.0.1"], &f.cert, &f.key);
    let (tandem, to) = start(&f, false).await;

    let trusts_old = client(&old_ca, None);
    let trusts_new = client(&new_ca, None);
    answered(&trusts_old, to, &tandem).await;

    // Renewed files, then SIGHUP: new handshakes see the new certificate.
    new_ca.issue(&["127.0.0.1"], &f.cert, &f.key);
    tandem.signal("HUP");
    testkit::wait_for("the TLS certificate reload", DEADLINE, || async {
        if tandem.log().contains("TLS certificate reloaded") {
            Ok(())
        } else {
            Err(tandem.log_tail(10))
        }
    })
    .await;
    let refused = options_over_tls(&trusts_old, to).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.starts_with("handshake")),
        "{refused:?}"
    );
    answered(&trusts_new, to, &tandem).await;
    tandem
        .wait_metric(
            "tandem_sip_messages_received_total",
            &[("transport", "tls")],
            2.0,
            DEADLINE,
        )
        .await;
}

#[tokio::test]
async fn a_client_without_a_certificate_from_the_client_ca_gets_nothing_through() {
    let (server_ca, clients_ca, stranger_ca) = (
        TestCa::new("server"),
        TestCa::new("clients"),
        TestCa::new("stranger"),
    );
    let f = files();
    server_ca.issue(&["127.0.0.1"], &f.cert, &f.key);
    std::fs::write(&f.client_ca, clients_ca.pem()).unwrap();
    let (tandem, to) = start(&f, true).await;

    let anonymous = options_over_tls(&client(&server_ca, None), to).await;
    assert!(anonymous.is_err(), "no certificate: {anonymous:?}");
    stranger_ca.issue(&["client.test"], &f.client_cert, &f.client_key);
    let stranger = client(&server_ca, Some((&f.client_cert, &f.client_key)));
    let refused = options_over_tls(&stranger, to).await;
    assert!(refused.is_err(), "wrong CA: {refused:?}");

    clients_ca.issue(&["client.test"], &f.client_cert, &f.client_key);
    let certified = client(&server_ca, Some((&f.client_cert, &f.client_key)));
    answered(&certified, to, &tandem).await;
    tandem
        .wait_metric(
            "tandem_sip_tls_handshake_failures_total",
            &[],
            2.0,
            DEADLINE,
        )
        .await;
}

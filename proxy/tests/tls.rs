//! SIP over TLS against the running binary, with a rustls client of the
//! test's own (Debian's SIPp has no TLS): an OPTIONS over TLS is answered
//! on the TLS connection; SIGHUP after the certificate files changed makes
//! new handshakes see the new certificate; with `client_ca_file` a client
//! without a certificate from that CA gets nothing through. Certificates
//! are made by rcgen at test time into a temporary directory.

use std::net::{Ipv4Addr, SocketAddr};
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
    options_over_tls_from(connector, Ipv4Addr::LOCALHOST, to).await
}

/// As [`options_over_tls`], from the address `from` (a port of its own).
async fn options_over_tls_from(
    connector: &tokio_rustls::TlsConnector,
    from: Ipv4Addr,
    to: SocketAddr,
) -> Result<String, String> {
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::from((from, 0)))
            .map_err(|e| e.to_string())?;
        let tcp = socket.connect(to).await.map_err(|e| e.to_string())?;
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
    tandem.wait_log("TLS certificate reloaded", DEADLINE).await;
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

/// Reads one SIP message (headers and `Content-Length` body) off `tls`,
/// keeping what follows in `buf`.
async fn read_message(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    buf: &mut Vec<u8>,
) -> String {
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let body = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + body {
                    let msg: Vec<u8> = buf.drain(..end + 4 + body).collect();
                    return String::from_utf8_lossy(&msg).to_string();
                }
            }
            let mut chunk = [0u8; 4096];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!("TLS connection closed mid-call"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a SIP message within the deadline")
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

#[tokio::test]
async fn a_call_over_tls_reaches_a_udp_member_and_a_bye_ends_it() {
    testkit::require_sipp();
    let ms = testkit::Sipp::builtin("uas", None).arg("-aa");
    let mut ms = ms.spawn();
    ms.wait_ready(DEADLINE).await;
    let ca = TestCa::new("ca");
    let f = files();
    ca.issue(&["127.0.0.1"], &f.cert, &f.key);
    let port = testkit::free_port();
    let table = format!(
        "[sip.tls]\nport = {port}\ncert_file = {:?}\nkey_file = {:?}\n",
        f.cert, f.key
    );
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())])
            .without_health()
            .extra_toml(&table),
    )
    .await;
    let to = SocketAddr::new(tandem.sip_addr().ip(), port);
    let tcp = TcpStream::connect(to).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let mut tls = client(&ca, None)
        .connect(ServerName::from(to.ip()), tcp)
        .await
        .unwrap();
    let mut buf = Vec::new();

    let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    let dialog = format!(
        "From: <sips:caller@{me}>;tag=caller\r\nTo: <sips:1000@{to}>{{to_tag}}\r\n\
         Call-ID: tls-call@{me}\r\nMax-Forwards: 70\r\nContact: <sips:caller@{me}>\r\n"
    );
    let request = |method: &str, cseq: u32, branch: &str, to_tag: &str, body: &str| {
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sips:1000@{to} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{branch}\r\n{}\
             CSeq: {cseq} {method}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            dialog.replace("{to_tag}", to_tag),
            body.len()
        )
    };
    let invite = request("INVITE", 1, "inv", "", sdp);
    tls.write_all(invite.as_bytes()).await.unwrap();
    let ok = loop {
        let msg = read_message(&mut tls, &mut buf).await;
        let status = msg.lines().next().unwrap_or_default().to_string();
        if status.starts_with("SIP/2.0 1") {
            continue;
        }
        assert!(
            status.starts_with("SIP/2.0 200"),
            "{msg}\n{}",
            tandem.log_tail(20)
        );
        break msg;
    };
    assert!(header(&ok, "CSeq").ends_with("INVITE"), "{ok}");
    let to_header = header(&ok, "To");
    let tag = &to_header[to_header.find(";tag=").expect("a To tag")..];
    tls.write_all(request("ACK", 1, "ack", tag, "").as_bytes())
        .await
        .unwrap();

    tls.write_all(request("BYE", 2, "bye", tag, "").as_bytes())
        .await
        .unwrap();
    let bye_ok = read_message(&mut tls, &mut buf).await;
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    assert!(header(&bye_ok, "CSeq").ends_with("BYE"), "{bye_ok}");
    // The member (SIPp over UDP) answered and got the BYE: a whole call,
    // bridged TLS -> UDP.
    ms.wait_stat("SuccessfulCall(C)", 1, DEADLINE).await;
    let cdrs = tandem.wait_cdrs(1, DEADLINE).await;
    assert_eq!(cdrs.len(), 1);
    ms.kill().await;
}

/// `[sip.tls]` of a Tandem whose listener certificate (for 127.0.0.1,
/// signed by `ca`) is written into `f`, verifying TLS members against
/// `ca` too.
fn tls_table(port: u16, ca: &TestCa, f: &Files) -> String {
    ca.issue(&["127.0.0.1"], &f.cert, &f.key);
    std::fs::write(&f.client_ca, ca.pem()).unwrap();
    format!(
        "[sip.tls]\nport = {port}\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
        f.cert, f.key, f.client_ca
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_tls_member_goes_over_tls() {
    testkit::require_sipp();
    let ca = TestCa::new("ca");
    // B: a second Tandem, reached over TLS, in front of a SIPp UAS.
    let mut ms = testkit::Sipp::builtin("uas", None).arg("-aa").spawn();
    ms.wait_ready(DEADLINE).await;
    let (fb, b_tls) = (files(), testkit::free_port());
    let b = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", ms.addr())])
            .without_health()
            .extra_toml(&tls_table(b_tls, &ca, &fb)),
    )
    .await;
    // A: every call to the group whose one member is B over TLS.
    let (fa, a_tls) = (files(), testkit::free_port());
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let a_table = tls_table(a_tls, &ca, &fa)
        + &format!(
            "\n[[group]]\nname = \"tls\"\nprobe = \"off\"\nresume = false\n\
             [[group.member]]\nname = \"b\"\naddress = \"127.0.0.1:{b_tls}\"\ntransport = \"tls\"\n\n\
             [[rule]]\nname = \"all\"\ngroup = \"tls\"\n"
        );
    let a = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", unused)])
            .without_health()
            .extra_toml(&a_table),
    )
    .await;

    let uac = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/sipp/uac.xml");
    let out = testkit::Sipp::scenario_file(&uac, Some(a.sip_addr()))
        .args(["-m", "1"])
        .run(Duration::from_secs(20))
        .await;
    assert_eq!(
        (out.exit_code, out.successful, out.failed),
        (Some(0), 1, 0),
        "{}\nA:\n{}\nB:\n{}",
        out.log,
        a.log_tail(20),
        b.log_tail(20)
    );
    // A sent and B received over TLS.
    a.wait_metric(
        "tandem_sip_messages_sent_total",
        &[("transport", "tls")],
        3.0,
        DEADLINE,
    )
    .await;
    let m = b.metrics().await;
    assert!(
        m.get(
            "tandem_sip_messages_received_total",
            &[("transport", "tls")]
        ) >= 3.0,
        "{}",
        m.text()
    );
    ms.kill().await;
}

/// `tls_client_ca_file` on a trunk: a TLS client from that trunk's
/// networks (127.0.0.2) needs a certificate from the trunk's CA; a client
/// from another trunk (127.0.0.1) needs none, there being no listener-wide
/// `client_ca_file`.
#[tokio::test]
async fn a_trunk_with_its_own_client_ca_needs_a_certificate_from_it() {
    let (server_ca, trunk_ca, stranger_ca) = (
        TestCa::new("server"),
        TestCa::new("trunk"),
        TestCa::new("stranger"),
    );
    let f = files();
    server_ca.issue(&["127.0.0.1"], &f.cert, &f.key);
    std::fs::write(&f.client_ca, trunk_ca.pem()).unwrap();
    let port = testkit::free_port();
    let table = format!(
        "[sip.tls]\nport = {port}\ncert_file = {:?}\nkey_file = {:?}\n\n\
         [[trunk]]\nname = \"secure\"\nnetworks = [\"127.0.0.2/32\"]\ntls_client_ca_file = {:?}\n",
        f.cert, f.key, f.client_ca
    );
    let member: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let tandem = Tandem::start(
        TANDEM,
        TandemConfig::new([("ms1", member)])
            .without_health()
            .trunk_networks(["127.0.0.1/32"])
            .extra_toml(&table),
    )
    .await;
    let to = SocketAddr::new(tandem.sip_addr().ip(), port);
    let secure = Ipv4Addr::new(127, 0, 0, 2);

    let anonymous = client(&server_ca, None);
    answered(&anonymous, to, &tandem).await;
    let refused = options_over_tls_from(&anonymous, secure, to).await;
    assert!(refused.is_err(), "no certificate: {refused:?}");

    stranger_ca.issue(&["client.test"], &f.client_cert, &f.client_key);
    let stranger = client(&server_ca, Some((&f.client_cert, &f.client_key)));
    let refused = options_over_tls_from(&stranger, secure, to).await;
    assert!(refused.is_err(), "wrong CA: {refused:?}");

    trunk_ca.issue(&["client.test"], &f.client_cert, &f.client_key);
    let certified = client(&server_ca, Some((&f.client_cert, &f.client_key)));
    let status = options_over_tls_from(&certified, secure, to).await;
    assert_eq!(
        status.as_deref(),
        Ok("SIP/2.0 200 OK"),
        "{}",
        tandem.log_tail(20)
    );
}

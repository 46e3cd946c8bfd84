//! Debian's SIPp 3.6.1 and baresip 1.0 registering against the
//! [`Authenticator`] behind a tiny UDP responder on 127.0.0.1: the proof
//! that [`DEFAULT_ALGORITHMS`] lets both authenticate, and of why the
//! default is MD5 alone (baresip gives up on a 401 that offers SHA-256 at
//! all). Every process is killed by its handle; every wait has a deadline.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::*;
use sipcore::message::ResponseBuilder;

const PHONE_REALM: &str = "127.0.0.1";
const DEADLINE: Duration = Duration::from_secs(15);

/// A registrar of sorts: every REGISTER goes through an [`Authenticator`]
/// offering `algorithms` (alice/secret known); 401 with the challenges,
/// 200 echoing the Contact, or 403. Each outcome is sent on the channel.
async fn responder(algorithms: &[Algorithm]) -> (SocketAddr, mpsc::UnboundedReceiver<AuthOutcome>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    crate::registrar::credentials::write_passwd(&path, "alice", PHONE_REALM, "secret").unwrap();
    let settings = AuthSettings {
        realm: PHONE_REALM.into(),
        algorithms: algorithms.to_vec(),
        ..AuthSettings::default()
    };
    let auth = Arc::new(Mutex::new(Authenticator::new(
        settings,
        key(),
        Credentials::load(&path).unwrap(),
    )));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(tokio::time::timeout(DEADLINE * 2, async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            let Ok(request) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else {
                continue;
            };
            if request.method() != Some(&sipcore::message::Method::Register) {
                continue;
            }
            let wall_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let outcome = auth.lock().unwrap().check(
                &request,
                AuthKind::Www,
                from.ip(),
                Instant::now(),
                wall_s,
            );
            let response = match &outcome {
                AuthOutcome::Challenge {
                    status,
                    reason,
                    headers,
                }
                | AuthOutcome::Failed {
                    status,
                    reason,
                    headers,
                } => headers
                    .iter()
                    .fold(
                        ResponseBuilder::new(&request, *status, reason),
                        |builder, (name, value)| builder.header(name, value),
                    )
                    .build(),
                AuthOutcome::Authenticated { .. } => {
                    let contact = format!("{};expires=60", request.header("Contact").unwrap());
                    ResponseBuilder::new(&request, 200, "OK")
                        .header("Contact", &contact)
                        .build()
                }
                AuthOutcome::Ignored => continue,
            };
            socket.send_to(&response, from).await.unwrap();
            let _ = tx.send(outcome);
        }
    }));
    (addr, rx)
}

/// The outcomes seen until alice is authenticated (Some) or `within`
/// passes (None).
async fn wait_authenticated(
    rx: &mut mpsc::UnboundedReceiver<AuthOutcome>,
    within: Duration,
) -> Option<Vec<AuthOutcome>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(outcome)) => {
                let done = outcome == authenticated("alice");
                seen.push(outcome);
                if done {
                    return Some(seen);
                }
            }
            _ => return None,
        }
    }
}

/// A SIPp scenario: REGISTER, 401, REGISTER with SIPp's digest answer,
/// 200.
fn sipp_register_scenario() -> String {
    let register = |cseq: u32, authentication: &str| {
        format!(
            r#"  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:alice@127.0.0.1>;tag=[call_number]
      To: <sip:alice@127.0.0.1>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:alice@[local_ip]:[local_port]>{authentication}
      Expires: 60
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"#
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n\
         <scenario name=\"register with digest\">\n{}  <recv response=\"401\" auth=\"true\"/>\n\
         {}  <recv response=\"200\"/>\n</scenario>\n",
        register(1, ""),
        register(2, "\n      [authentication username=alice password=secret]"),
    )
}

/// SIPp registers once against `algorithms`; whether it succeeded.
async fn sipp_registers(algorithms: &[Algorithm]) -> (bool, String) {
    let (server, mut rx) = responder(algorithms).await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("register.xml");
    std::fs::write(&scenario, sipp_register_scenario()).unwrap();
    let outcome = testkit::Sipp::scenario_file(&scenario, Some(server))
        .args(["-m", "1", "-timeout", "10s"])
        .run(DEADLINE)
        .await;
    let ok = outcome.exit_code == Some(0) && outcome.successful == 1;
    if ok {
        assert!(wait_authenticated(&mut rx, DEADLINE).await.is_some());
    }
    (ok, outcome.log)
}

#[tokio::test]
async fn sipp_registers_with_the_default_algorithms() {
    let (ok, log) = sipp_registers(&DEFAULT_ALGORITHMS).await;
    assert!(ok, "{log}");
    // It also copes with MD5 listed first before stronger ones...
    let (ok, log) = sipp_registers(&[Algorithm::Md5, Algorithm::Sha256]).await;
    assert!(ok, "{log}");
    // ...but not with a stronger one first (it reads the first only).
    let (ok, _) = sipp_registers(&[Algorithm::Sha256, Algorithm::Md5]).await;
    assert!(!ok, "SIPp 3.6.1 answered SHA-256: the default could change");
}

/// baresip registers alice against `algorithms`: whether the responder
/// authenticated her `within` that time (a phone answers a 401 in
/// milliseconds; one that does not within seconds has given up).
async fn baresip_registers(algorithms: &[Algorithm], within: Duration) -> bool {
    assert!(
        std::process::Command::new("baresip")
            .arg("-h")
            .output()
            .is_ok(),
        "baresip not found: run ./scripts/test, which installs Debian's baresip-core"
    );
    let (server, mut rx) = responder(algorithms).await;
    let dir = tempfile::tempdir().unwrap();
    // Headless: no audio driver, only the account module.
    std::fs::write(
        dir.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{}\n\
             module_path /usr/lib/baresip/modules\nmodule_app account.so\n",
            testkit::free_port()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        format!(
            "<sip:alice@127.0.0.1;transport=udp>;auth_pass=secret;\
             outbound=\"sip:{server}\";regint=60\n"
        ),
    )
    .unwrap();
    let mut baresip = tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start baresip");
    let registered = wait_authenticated(&mut rx, within).await.is_some();
    let _ = baresip.kill().await;
    registered
}

#[tokio::test]
async fn baresip_registers_with_the_default_algorithms() {
    assert!(baresip_registers(&DEFAULT_ALGORITHMS, DEADLINE).await);
    // Any non-MD5 challenge in the 401 stops it: why MD5 is the default
    // alone.
    assert!(
        !baresip_registers(&[Algorithm::Md5, Algorithm::Sha256], Duration::from_secs(4)).await,
        "baresip 1.0 answered beside a SHA-256 challenge: the default could change"
    );
}

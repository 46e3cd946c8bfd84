//! The admin API's guard, end to end against the real binary: changes
//! need the admin token, a wrong token is refused and counted, start is
//! refused without a token on a non-loopback address or with a token file
//! others can read, a browser's session cookie, the metrics token, the
//! connection cap and accept errors backed off.
//!
//! Every Tandem listens on fresh 127.0.0.1 ports; a non-loopback admin
//! address (0.0.0.0) only appears in a config that is refused before
//! anything is bound. Every wait has a deadline; every process is killed
//! by pid.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use testkit::{free_port, wait_for, HttpAnswer, Tandem, TandemConfig, TEST_ADMIN_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const SECS: fn(u64) -> Duration = Duration::from_secs;
const FAILURES: &str = "tandem_admin_auth_failures_total";

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One pool member that never answers: the admin tests place no calls.
fn config() -> TandemConfig {
    TandemConfig::new([("ms1", localhost(free_port()))]).without_health()
}

/// A single node of a pair whose peer never comes, its role decided by
/// `/notify` (`ha.external_role`): what keepalived's notify script drives.
/// The pair's secret file lives in `dir` (mode 0600, an absolute path).
fn external_role_node(dir: &std::path::Path) -> TandemConfig {
    config().external_role_node(dir)
}

/// One admin request that must be answered `status`.
async fn expect(
    tandem: &Tandem,
    status: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> HttpAnswer {
    let answer = tandem
        .admin_request(method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(
        answer.status, status,
        "{method} {path} {headers:?}: {answer:?}"
    );
    answer
}

async fn role(tandem: &Tandem) -> String {
    let answer = expect(tandem, 200, "GET", "/status", &[], "").await;
    let status: Value = serde_json::from_str(&answer.body).expect("status JSON");
    status["role"].as_str().unwrap_or_default().to_owned()
}

async fn wait_role(tandem: &Tandem, want: &str) {
    wait_for(&format!("role {want}"), SECS(5), || async {
        let r = role(tandem).await;
        if r == want {
            Ok(())
        } else {
            Err(r)
        }
    })
    .await
}

/// `tandem ARGS…`, killed by pid when it has not exited within 10 s.
async fn cli(args: &[&str]) -> (bool, String) {
    let mut child = tokio::process::Command::new(TANDEM)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run tandem");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut text = String::new();
    let ended = tokio::time::timeout(SECS(10), async {
        let _ = stderr.read_to_string(&mut text).await;
        child.wait().await
    })
    .await;
    match ended {
        Ok(Ok(status)) => (status.success(), text),
        _ => {
            let _ = child.start_kill();
            panic!("tandem {args:?} still running after 10 s; stderr so far: {text}");
        }
    }
}

#[tokio::test]
async fn changes_without_the_admin_token_are_refused_counted_and_do_nothing() {
    let secrets = tempfile::tempdir().unwrap();
    let tandem = Tandem::start(TANDEM, external_role_node(secrets.path())).await;
    let admin = tandem.admin_addr().to_string();
    let config = tandem.config_path().display().to_string();

    // Without a token the CLI is refused; with the node's config (which
    // names the token file) it gets through.
    let (ok, stderr) = cli(&["notify", "--admin", &admin, "master"]).await;
    assert!(!ok && stderr.contains("401"), "{stderr}");
    assert_eq!(role(&tandem).await, "starting");
    let (ok, stderr) = cli(&["notify", "--config", &config, "master"]).await;
    assert!(ok, "{stderr}");
    wait_role(&tandem, "active").await;

    let wrong = "Authorization: Bearer testkit-admin-token-012345678X";
    for (path, headers) in [
        ("/notify/backup", &[][..]),
        ("/notify/fault", &[][..]),
        ("/switchover", &[][..]),
        ("/switchover?force=1", &[][..]),
        ("/notify/backup", &[wrong][..]),
        ("/switchover", &[wrong][..]),
    ] {
        let answer = expect(&tandem, 401, "POST", path, headers, "").await;
        assert_eq!(
            answer.header("WWW-Authenticate"),
            Some("Bearer realm=\"tandem\""),
            "{answer:?}"
        );
    }
    // A wrong token is refused even on a GET that needs none.
    expect(&tandem, 401, "GET", "/status", &[wrong], "").await;
    tandem.wait_metric(FAILURES, &[], 8.0, SECS(5)).await;
    // Nothing reached the node: still active (a notification takes
    // effect within milliseconds, as the one above did).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(role(&tandem).await, "active");

    // With the token (the CLI reads it from --token-file) it is done.
    let token_file = tandem.config_path().with_file_name("admin.token");
    let (ok, stderr) = cli(&[
        "notify",
        "--admin",
        &admin,
        "--token-file",
        &token_file.display().to_string(),
        "BACKUP",
    ])
    .await;
    assert!(ok, "{stderr}");
    wait_role(&tandem, "reconnecting").await;
    tandem.wait_metric(FAILURES, &[], 8.0, SECS(5)).await;
}

#[tokio::test]
async fn without_a_token_file_changes_are_refused_and_the_key_is_named() {
    let tandem = Tandem::start(TANDEM, config().admin_token(None)).await;
    let answer = expect(&tandem, 403, "POST", "/switchover", &[], "").await;
    assert!(answer.body.contains("admin.token_file"), "{answer:?}");
    // Reading on loopback stays open.
    let answer = expect(&tandem, 200, "GET", "/status", &[], "").await;
    let status: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(status["role"], "single", "{answer:?}");
    assert_eq!(status["wan"], serde_json::json!([]), "{answer:?}");
}

/// Writes `config` for a Tandem that must refuse to start and runs it:
/// its stderr.
async fn refused_start(config: TandemConfig, admin: SocketAddr) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = config.write(dir.path(), localhost(free_port()), admin, 20000..=20063);
    let path = path.display().to_string();
    let (ok, check) = cli(&["check", "--config", &path]).await;
    assert!(!ok, "tandem check accepted it");
    let (ok, run) = cli(&["run", "--config", &path]).await;
    assert!(!ok, "tandem run started");
    assert_eq!(check, run, "check and run give the same reason");
    run
}

#[tokio::test]
async fn a_non_loopback_admin_address_without_a_token_is_refused_at_start() {
    let admin = SocketAddr::from(([0, 0, 0, 0], free_port()));
    let stderr = refused_start(config().admin_token(None), admin).await;
    assert!(stderr.contains("admin.token_file"), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(stderr.contains("tandem.toml"), "names the file: {stderr}");
}

#[tokio::test]
async fn a_token_file_others_can_read_is_refused_at_start() {
    let config = config()
        .admin_token(None)
        .admin_toml("token_file = \"open.token\"")
        .file("open.token", &format!("{TEST_ADMIN_TOKEN}\n"), 0o644);
    let stderr = refused_start(config, localhost(free_port())).await;
    assert!(stderr.contains("admin.token_file"), "{stderr}");
    assert!(stderr.contains("open.token"), "{stderr}");
    assert!(stderr.contains("mode 0644"), "{stderr}");
}

const METRICS_TOKEN: &str = "testkit-metrics-token-0123456789";

fn with_metrics_token() -> TandemConfig {
    config()
        .admin_toml("metrics_token_file = \"metrics.token\"")
        .file("metrics.token", &format!("{METRICS_TOKEN}\n"), 0o600)
}

#[tokio::test]
async fn metrics_need_their_own_token_or_the_admin_token_when_one_is_set() {
    let tandem = Tandem::start(TANDEM, with_metrics_token()).await;
    let metrics_token = format!("Authorization: Bearer {METRICS_TOKEN}");
    let admin_token = format!("Authorization: Bearer {TEST_ADMIN_TOKEN}");
    expect(&tandem, 401, "GET", "/metrics", &[], "").await;
    let answer = expect(&tandem, 200, "GET", "/metrics", &[&metrics_token], "").await;
    assert!(answer.body.contains(FAILURES), "{}", answer.body);
    expect(&tandem, 200, "GET", "/metrics", &[&admin_token], "").await;
    // The scraper's token changes nothing.
    expect(&tandem, 401, "POST", "/switchover", &[&metrics_token], "").await;
}

#[tokio::test]
async fn a_browser_presents_the_token_once_and_its_session_cookie_is_accepted() {
    // With a metrics token, GET /metrics needs a credential even on
    // loopback: the cookie is checked on a GET as well as on a POST.
    let tandem = Tandem::start(TANDEM, with_metrics_token()).await;
    let form = "application/x-www-form-urlencoded";
    let content_type = format!("Content-Type: {form}");
    let answer = expect(
        &tandem,
        401,
        "POST",
        "/login",
        &[&content_type],
        "token=not-the-token-0123456",
    )
    .await;
    assert!(answer.header("Set-Cookie").is_none(), "{answer:?}");

    let answer = expect(
        &tandem,
        303,
        "POST",
        "/login",
        &[&content_type],
        &format!("token={TEST_ADMIN_TOKEN}"),
    )
    .await;
    let set_cookie = answer.header("Set-Cookie").expect("a session cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = format!(
        "Cookie: {}",
        set_cookie.split(';').next().expect("name=value")
    );

    expect(&tandem, 200, "GET", "/metrics", &[&cookie], "").await;
    expect(&tandem, 200, "GET", "/status", &[&cookie], "").await;
    // A POST with the cookie reaches the handler (a single node has no
    // standby to switch to: 409, not 401).
    expect(&tandem, 409, "POST", "/switchover", &[&cookie], "").await;
    // A made-up session is no credential.
    let forged = "Cookie: tandem_session=00112233445566778899aabbccddeeff";
    expect(&tandem, 401, "GET", "/metrics", &[forged], "").await;

    expect(&tandem, 200, "POST", "/logout", &[&cookie], "").await;
    expect(&tandem, 401, "GET", "/metrics", &[&cookie], "").await;
}

/// Mirrors `listener::MAX_CONNECTIONS`.
const CONNECTION_CAP: usize = 32;

#[tokio::test]
async fn idle_connections_cannot_lock_the_operator_out() {
    let tandem = Tandem::start(TANDEM, config()).await;
    // The cap's worth of connections that never send a byte, then more.
    let mut idle = Vec::new();
    for _ in 0..CONNECTION_CAP {
        idle.push(TcpStream::connect(tandem.admin_addr()).await.unwrap());
    }
    // Let the accept loop take them all before the extra ones come.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..8 {
        let mut extra = TcpStream::connect(tandem.admin_addr()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(SECS(2), extra.read_to_end(&mut answer))
            .await
            .expect("a connection beyond the cap is answered and closed at once")
            .ok();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    }
    // The idle ones are dropped after the header timeout, and the
    // operator's request gets through (bounded: the timeout is 5 s).
    wait_for("the operator's request served", SECS(20), || async {
        match tandem.admin_request_with_token("POST", "/switchover").await {
            Ok(a) if a.status == 409 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mut closed = 0;
    for conn in &mut idle {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(SECS(1), conn.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, CONNECTION_CAP, "every idle connection was closed");
    let m = tandem.metrics().await;
    assert!(
        m.get("tandem_admin_connections_shed_total", &[]) >= 8.0,
        "{}",
        m.text()
    );
}

#[tokio::test]
async fn header_bytes_sent_slowly_do_not_keep_a_connection() {
    let tandem = Tandem::start(TANDEM, config()).await;
    let mut slow = TcpStream::connect(tandem.admin_addr()).await.unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\n").await.unwrap();
    let started = tokio::time::Instant::now();
    // One header byte per 500 ms never completes the head.
    let closed = tokio::time::timeout(SECS(15), async {
        loop {
            if slow.write_all(b"X").await.is_err() {
                return;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(500), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {} // a 408 answer before the close
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a connection trickling its headers was still open after {:?}",
        started.elapsed()
    );
}

/// The process's open file descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn accept_errors_are_backed_off_not_spun() {
    let tandem = Tandem::start(TANDEM, config()).await;
    let pid = tandem.pid().expect("tandem runs");
    // A few descriptors to spare, then connections beyond them: every
    // accept fails with EMFILE while they wait in the backlog.
    let limit = open_fds(pid) + 4;
    // prlimit: util-linux, essential in Debian.
    let set = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("run prlimit");
    assert!(set.success(), "prlimit --nofile={limit}");
    let mut waiting = Vec::new();
    for _ in 0..12 {
        waiting.push(TcpStream::connect(tandem.admin_addr()).await.unwrap());
    }
    tokio::time::sleep(SECS(2)).await;
    drop(waiting);
    // The descriptors come back as the server sees the clients gone.
    let metrics = wait_for("/metrics again", SECS(20), || tandem.try_metrics()).await;
    let errors = metrics.get("tandem_admin_accept_errors_total", &[]);
    assert!(errors >= 1.0, "EMFILE was hit: {}", metrics.text());
    // Backed off from 5 ms doubling to 1 s: a dozen or so in 2 s. A
    // loop retrying at once makes hundreds of thousands.
    assert!(errors < 200.0, "{errors} accept errors in about 2 s");
    assert!(tandem.log().contains("accept failed, backing off"));
}

#[tokio::test]
async fn the_admin_socket_is_private_and_its_permissions_are_the_credential() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // No token at all: over TCP every change is refused.
    let tandem = Tandem::start(
        TANDEM,
        config()
            .admin_token(None)
            .admin_toml("socket = \"admin.sock\""),
    )
    .await;
    let socket = tandem.config_path().with_file_name("admin.sock");
    let meta = std::fs::symlink_metadata(&socket).expect("the admin socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner only");
    expect(&tandem, 403, "POST", "/switchover", &[], "").await;

    // Through the socket the request reaches the handler (a single node
    // has no standby: 409).
    let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
    s.write_all(b"POST /switchover HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(SECS(5), s.read_to_string(&mut answer))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.0 409"), "{answer}");

    // The CLI with the node's config takes the socket.
    let config = tandem.config_path().display().to_string();
    let (ok, stderr) = cli(&["switchover", "--config", &config]).await;
    assert!(!ok && stderr.contains("409"), "{stderr}");
    let (ok, stderr) = cli(&["status", "--socket", &socket.display().to_string()]).await;
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn oversized_headers_and_bodies_are_refused() {
    let tandem = Tandem::start(TANDEM, config()).await;
    // Headers over 8 KiB: 431, not read further.
    let pad = format!("X-Pad: {}", "a".repeat(12 * 1024));
    expect(&tandem, 431, "GET", "/status", &[&pad], "").await;
    // A body over 4 KiB (only the login form has one): 413.
    let body = format!("token={}", "a".repeat(8 * 1024));
    expect(
        &tandem,
        413,
        "POST",
        "/login",
        &["Content-Type: application/x-www-form-urlencoded"],
        &body,
    )
    .await;
    // Within the limits the same requests are served.
    expect(&tandem, 200, "GET", "/status", &["X-Pad: a"], "").await;
}

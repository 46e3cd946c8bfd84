//! The live status page in a real browser: Tandem with two SIPp members
//! answering OPTIONS, headless Chromium (Debian's `chromium`) driven over
//! its DevTools protocol logs in with the admin token, opens `/`, sees
//! both members UP; one member's SIPp is killed and the same page — not
//! reloaded — shows it DOWN. A screenshot is saved under
//! `target/test-artifacts/`.
//!
//! Also: the page's routes refuse a wrong credential, and event streams
//! are capped.
//!
//! Chromium is driven through `--remote-debugging-pipe` (JSON messages
//! ending in NUL on its fds 3 and 4), here two FIFOs in a temporary
//! directory: no websocket, no network, nothing downloaded. It runs in a
//! process group of its own, killed by its id at the end. Every wait has
//! a deadline; every process is killed by pid.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use testkit::{wait_for, Sipp, Tandem, TandemConfig, TEST_ADMIN_TOKEN};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::net::TcpStream;

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");
const CHROMIUM: &str = "/usr/bin/chromium";
const SECS: fn(u64) -> Duration = Duration::from_secs;
/// How long one DevTools command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

/// Headless Chromium and its DevTools pipe.
struct Chromium {
    pid: u32,
    child: std::process::Child,
    to_browser: pipe::Sender,
    from_browser: BufReader<pipe::Receiver>,
    next_id: u64,
    /// Its profile and the FIFOs; removed when dropped.
    _dir: tempfile::TempDir,
}

impl Chromium {
    fn start() -> Chromium {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: apt-get install chromium (scripts/test does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let (to_path, from_path) = (dir.path().join("to"), dir.path().join("from"));
        for fifo in [&to_path, &from_path] {
            let made = std::process::Command::new("mkfifo")
                .arg(fifo)
                .status()
                .expect("run mkfifo");
            assert!(made.success(), "mkfifo {}", fifo.display());
        }
        // Both ends opened read-write here: neither open waits for the
        // browser, and a browser that dies shows as a deadline, not a hang.
        let to_browser = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&to_path)
            .expect("open the pipe to the browser");
        let from_browser = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&from_path)
            .expect("open the pipe from the browser");
        let profile = dir.path().join("profile");
        let log = std::fs::File::create(dir.path().join("chromium.log")).expect("log");
        use std::os::unix::process::CommandExt;
        // `exec`: the shell only sets up fds 3 and 4, the pid is the
        // browser's.
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec {CHROMIUM} --headless --no-sandbox --disable-gpu --disable-quic \
                 --no-first-run --disable-background-networking --disable-component-update \
                 --disable-sync --disable-extensions --disable-default-apps --mute-audio \
                 --user-data-dir='{}' --remote-debugging-pipe about:blank 3<'{}' 4>'{}'",
                profile.display(),
                to_path.display(),
                from_path.display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start chromium");
        Chromium {
            pid: child.id(),
            child,
            to_browser,
            from_browser: BufReader::new(from_browser),
            next_id: 0,
            _dir: dir,
        }
    }

    /// One DevTools command (to a page when `session` is given); its
    /// result. Events that arrive meanwhile are skipped.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = s.into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        let exchange = async {
            self.to_browser.write_all(&bytes).await?;
            loop {
                let mut buf = Vec::new();
                self.from_browser.read_until(0, &mut buf).await?;
                buf.pop();
                let answer: Value = serde_json::from_slice(&buf).unwrap_or_default();
                if answer["id"] == id {
                    return Ok::<Value, std::io::Error>(answer);
                }
            }
        };
        let answer = tokio::time::timeout(COMMAND_DEADLINE, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer in {COMMAND_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// A new tab at `url`; the session to drive it.
    async fn open(&mut self, url: &str) -> String {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": url }))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned()
    }

    /// The value of `expression` in the page (a string, number, bool).
    async fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// A PNG of the page, written to `path`.
    async fn screenshot(&mut self, session: &str, path: &Path) {
        let shot = self
            .call(
                Some(session),
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64");
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("artifact dir");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The browser by its pid, then whatever it started (renderer,
        // zygote, utility processes: its process group, whose id is its
        // pid).
        let pid = self.pid.to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        let _ = self.child.wait();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }
}

/// Where test artifacts go: `target/test-artifacts/`.
fn artifact(name: &str) -> PathBuf {
    Path::new(TANDEM)
        .parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .join("test-artifacts")
        .join(name)
}

/// Polls `expression` in the page every 100 ms until `done` accepts its
/// value (returned), failing the test at `deadline`.
async fn wait_eval(
    chromium: &mut Chromium,
    session: &str,
    expression: &str,
    deadline: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let value = chromium.eval(session, expression).await;
        if done(&value) {
            return value;
        }
        if tokio::time::Instant::now() >= until {
            panic!("timed out after {deadline:?} waiting for `{expression}`; last: {value}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each member row of the page: [name, the state text it shows].
const MEMBER_ROWS: &str = "JSON.stringify([...document.querySelectorAll('tr[data-member]')]\
     .map(r => [r.dataset.member, r.querySelector('.state').textContent]))";

/// Waits until the page shows `want` (name, state text) for its members.
async fn wait_rows(chromium: &mut Chromium, session: &str, want: &[(&str, &str)]) {
    let want = serde_json::to_string(want).expect("JSON");
    wait_eval(chromium, session, MEMBER_ROWS, SECS(10), |rows| {
        rows.as_str() == Some(want.as_str())
    })
    .await;
}

async fn uas() -> testkit::SippProcess {
    let mut ms = Sipp::builtin("uas", None).arg("-aa").spawn();
    ms.wait_ready(SECS(5)).await;
    ms
}

#[tokio::test]
async fn the_page_shows_a_member_going_down_live_in_a_real_browser() {
    let ms1 = uas().await;
    let mut ms2 = uas().await;
    // Keepalives every 500 ms, 300 ms to answer, two misses take a member
    // down.
    let config =
        TandemConfig::new([("ms1", ms1.addr()), ("ms2", ms2.addr())]).health(500, 300, 2, 1);
    let tandem = Tandem::start(TANDEM, config).await;
    let base = format!("http://{}", tandem.admin_addr());

    let mut chromium = Chromium::start();
    // The browser logs in with the admin token and lands on the page.
    let page = chromium.open(&format!("{base}/login")).await;
    wait_eval(
        &mut chromium,
        &page,
        "!!document.querySelector('input[name=token]')",
        SECS(10),
        |ready| ready == true,
    )
    .await;
    chromium
        .eval(
            &page,
            &format!(
                "document.querySelector('input[name=token]').value = '{TEST_ADMIN_TOKEN}';\
                 document.forms[0].submit(); true"
            ),
        )
        .await;
    wait_eval(
        &mut chromium,
        &page,
        "location.pathname + ' ' + document.title + ' ' + document.readyState",
        SECS(10),
        |at| at == "/ Tandem status complete",
    )
    .await;
    let cookies = chromium
        .call(Some(&page), "Network.getCookies", json!({}))
        .await;
    assert!(
        cookies["cookies"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "tandem_session")),
        "the login set a session cookie: {cookies}"
    );
    // A phone's screen.
    chromium
        .call(
            Some(&page),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 412, "height": 900, "deviceScaleFactor": 1, "mobile": true }),
        )
        .await;

    wait_rows(&mut chromium, &page, &[("ms1", "UP ✓"), ("ms2", "UP ✓")]).await;
    chromium.eval(&page, "window.tandemTestMarker = 42").await;

    let pid = ms2.pid().expect("sipp's pid");
    ms2.kill().await;
    eprintln!("killed ms2's SIPp (pid {pid})");
    wait_rows(&mut chromium, &page, &[("ms1", "UP ✓"), ("ms2", "DOWN ✗")]).await;
    // Set before the kill and still there: the page was never reloaded,
    // the change came live.
    let kept = chromium.eval(&page, "window.tandemTestMarker === 42").await;
    assert_eq!(kept, true, "the page was reloaded");
    // The event list names it too.
    let events = chromium
        .eval(&page, "document.getElementById('events').textContent")
        .await;
    let events = events.as_str().unwrap_or_default();
    assert!(
        events.contains("member down") && events.contains("ms2"),
        "{events}"
    );

    let shot = artifact("status-page.png");
    chromium.screenshot(&page, &shot).await;
    eprintln!("screenshot: {}", shot.display());
    drop(chromium);
    drop(ms1);
}

/// `GET` on `path` through a raw connection, left open: the status line
/// and the connection (an event stream does not end).
async fn open_get(admin: SocketAddr, path: &str, headers: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(admin).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: tandem\r\n{headers}\r\n");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.expect("read") == 0 {
                break;
            }
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(SECS(5), read)
        .await
        .expect("the answer's head within 5 s");
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, s)
}

/// Waits until the newest event of `/overview` is of `kind`; that event.
async fn wait_event(tandem: &Tandem, auth: &str, kind: &str) -> Value {
    wait_for(&format!("a {kind} event"), SECS(5), || async {
        let answer = tandem
            .admin_request("GET", "/overview", &[auth], "")
            .await?;
        let overview: Value = serde_json::from_str(&answer.body).map_err(|e| e.to_string())?;
        let newest = overview["events"][0].clone();
        if newest["kind"] == kind {
            Ok(newest)
        } else {
            Err(overview["events"].to_string())
        }
    })
    .await
}

#[tokio::test]
async fn the_page_and_its_feeds_need_a_credential_list_reloads_and_cap_event_streams() {
    let ms1 = uas().await;
    let tandem = Tandem::start(TANDEM, TandemConfig::new([("ms1", ms1.addr())])).await;
    let wrong = "Authorization: Bearer testkit-admin-token-012345678X";
    for path in ["/", "/overview", "/events"] {
        let answer = tandem
            .admin_request("GET", path, &[wrong], "")
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(answer.status, 401, "{path}: {answer:?}");
    }
    // With the token: the page, the JSON once, the stream.
    let auth = format!("Authorization: Bearer {TEST_ADMIN_TOKEN}");
    let answer = tandem
        .admin_request("GET", "/", &[&auth], "")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("new EventSource(\"/events\")"));
    assert!(
        !answer.body.contains("src=\"http") && !answer.body.contains("href=\"http"),
        "no external assets"
    );
    let answer = tandem
        .admin_request("GET", "/overview", &[&auth], "")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let overview: Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(overview["node"]["role"], "single", "{overview:#}");
    assert_eq!(overview["groups"][0]["members"][0]["name"], "ms1");

    // A reload (SIGHUP) and a refused one are in the event list.
    tandem.signal("HUP");
    wait_event(&tandem, &auth, "config_reloaded").await;
    let path = tandem.config_path();
    let mut broken = std::fs::read_to_string(&path).expect("config");
    broken += "\n[[pool.member]]\nname = \"ms9\"\naddress = \"not an address\"\n";
    std::fs::write(&path, broken).expect("write config");
    tandem.signal("HUP");
    let refused = wait_event(&tandem, &auth, "config_refused").await;
    assert_eq!(refused["alarm"], true, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("address")),
        "the reason: {refused}"
    );

    // 16 streams at once; the 17th is refused until one closes.
    let headers = format!("{auth}\r\n");
    let mut streams = Vec::new();
    for i in 0..16 {
        let (status, s) = open_get(tandem.admin_addr(), "/events", &headers).await;
        assert!(status.contains(" 200 "), "stream {i}: {status}");
        streams.push(s);
    }
    let (status, _) = open_get(tandem.admin_addr(), "/events", &headers).await;
    assert!(status.contains(" 503 "), "{status}");
    drop(streams.pop());
    // The server notices the closed stream at its next push (≤ 1 s).
    wait_for("a stream slot freed", SECS(5), || async {
        let (status, s) = open_get(tandem.admin_addr(), "/events", &headers).await;
        if status.contains(" 200 ") {
            Ok(s)
        } else {
            Err(status)
        }
    })
    .await;
    drop(streams);
}

/// `POST /notify/{state}` with the admin token (the external owner of the
/// floating address, keepalived for instance, says what this node is).
async fn notify(tandem: &Tandem, state: &str) {
    let auth = format!("Authorization: Bearer {TEST_ADMIN_TOKEN}");
    let answer = tandem
        .admin_request("POST", &format!("/notify/{state}"), &[&auth], "")
        .await
        .unwrap_or_else(|e| panic!("notify {state}: {e}"));
    assert_eq!(answer.status, 200, "notify {state}: {answer:?}");
}

#[tokio::test]
async fn becoming_active_stepping_down_and_a_takeover_are_listed_and_counted() {
    // One node of a pair whose peer never comes, its role set through
    // /notify (`ha.external_role`).
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pair.secret");
    std::fs::write(&secret, "q8Vt3LwZ0rN5yXe2KcH7mJpA9sUdF4gB\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let port = || SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let ha = format!(
        "[ha]\nnode = \"a\"\nsecret_file = \"{}\"\nrealtime_priority = 0\n\
         external_role = true\nlink = {{ listen = \"{}\", peer = \"{}\" }}\n",
        secret.display(),
        port(),
        port(),
    );
    let config = TandemConfig::new([("ms1", port())])
        .without_health()
        .extra_toml(&ha);
    let tandem = Tandem::start(TANDEM, config).await;
    let auth = format!("Authorization: Bearer {TEST_ADMIN_TOKEN}");

    // The pair's first epoch: active, no takeover.
    notify(&tandem, "master").await;
    let active = wait_event(&tandem, &auth, "active").await;
    assert!(
        active["detail"]
            .as_str()
            .is_some_and(|d| d.contains("epoch 1")),
        "{active}"
    );
    notify(&tandem, "backup").await;
    wait_event(&tandem, &auth, "step_down").await;
    // Serving again after someone else may have: a takeover.
    notify(&tandem, "master").await;
    let takeover = wait_event(&tandem, &auth, "takeover").await;
    assert_eq!(takeover["alarm"], true, "{takeover}");
    let answer = tandem
        .admin_request("GET", "/overview", &[&auth], "")
        .await
        .unwrap();
    let overview: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(overview["last_hour"]["takeovers"], 1, "{overview:#}");
    assert_eq!(overview["node"]["role"], "active", "{overview:#}");
    let kinds = overview["events"]
        .as_array()
        .map(|events| events.iter().map(|e| e["kind"].clone()).collect::<Vec<_>>());
    assert_eq!(
        kinds,
        Some(vec![json!("takeover"), json!("step_down"), json!("active")]),
        "{overview:#}"
    );
}

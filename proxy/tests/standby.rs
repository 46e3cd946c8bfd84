//! Hot standby in the network-namespace testbed (deploy/testbed): two
//! Tandem nodes with the floating address 10.77.0.100, SIPp media servers
//! echoing RTP, tandem-load as the trunk. Every process runs inside the
//! lab's namespaces, which the test creates and removes (also when it
//! fails); every wait has a deadline.
//!
//! The tests share the two cores of a CI machine with debug builds, so
//! they run one at a time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::lab::Lab;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tandem_load() -> PathBuf {
    // Built by `cargo test --workspace`; named here so a missing build is
    // a clear failure.
    let p = Path::new(TANDEM).with_file_name("tandem-load");
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p loadtest` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// A process in a lab namespace, killed by pid when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct HaLab {
    lab: Lab,
    dir: tempfile::TempDir,
    procs: Vec<(String, Proc)>,
    /// Replacements applied to both nodes' configuration.
    edits: Vec<(String, String)>,
    /// The `tandem` binary a wrapper runs (a copy where another user can
    /// reach it, see `files_for_uid`).
    program: String,
}

impl HaLab {
    fn up(hint: &str) -> HaLab {
        testkit::require_sipp();
        let _ = tandem_load();
        HaLab {
            lab: Lab::up(hint).expect("lab up"),
            dir: tempfile::tempdir().unwrap(),
            procs: Vec::new(),
            edits: Vec::new(),
            program: TANDEM.to_owned(),
        }
    }

    fn edit(&mut self, from: &str, to: &str) {
        self.edits.push((from.into(), to.into()));
    }

    fn spawn(
        &mut self,
        name: &str,
        node: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
    ) {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .lab
            .command(node, program)
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        self.procs.retain(|(n, _)| n != name);
        self.procs.push((name.into(), Proc { child, log }));
    }

    fn proc(&mut self, name: &str) -> &mut Proc {
        &mut self.procs.iter_mut().find(|(n, _)| n == name).unwrap().1
    }

    /// A SIPp media server in `ms1`/`ms2`, answering OPTIONS (-aa) and
    /// echoing RTP; `scenario` (deploy/sipp) replaces the built-in UAS.
    fn media_server(&mut self, ms: &str, scenario: Option<(&str, u64)>) {
        let ip = if ms == "ms1" {
            "10.77.0.21"
        } else {
            "10.77.0.22"
        };
        let mut args: Vec<String> = Vec::new();
        match scenario {
            Some((file, d_ms)) => {
                let path = workspace().join("deploy/sipp").join(file);
                args.extend(["-sf".into(), path.display().to_string()]);
                args.extend(["-d".into(), d_ms.to_string()]);
            }
            None => args.extend(["-sn".into(), "uas".into()]),
        }
        for a in [
            "-i",
            ip,
            "-p",
            "5060",
            "-mi",
            ip,
            "-rtp_echo",
            "-aa",
            "-nostdin",
        ] {
            args.push(a.into());
        }
        args.extend(["-buff_size".into(), "4194304".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(ms, ms, "sipp", &args);
    }

    /// Starts Tandem on node `a` or `b` with the testbed's configuration.
    fn tandem(&mut self, node: &str) {
        self.tandem_with(node, &[]);
    }

    /// Starts Tandem on `node` under `wrapper` (`setpriv …`, ending with
    /// `--`), with the testbed's configuration.
    fn tandem_with(&mut self, node: &str, wrapper: &[&str]) {
        let mut text =
            std::fs::read_to_string(workspace().join(format!("deploy/testbed/tandem-{node}.toml")))
                .unwrap();
        for (from, to) in &self.edits {
            assert!(
                text.contains(from.as_str()),
                "config edit {from:?} matches nothing"
            );
            text = text.replace(from.as_str(), to);
        }
        // An edit may name the node (its own CDR file).
        let text = text.replace("@NODE@", node);
        let path = self.dir.path().join(format!("tandem-{node}.toml"));
        std::fs::write(&path, text).unwrap();
        // The admin token the testbed configs name (`token_file =
        // "admin.token"`, beside them), for `tandem switchover --config`.
        let token = self.dir.path().join("admin.token");
        std::fs::write(&token, format!("{}\n", testkit::TEST_ADMIN_TOKEN)).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let path = path.display().to_string();
        let mut args: Vec<&str> = wrapper.to_vec();
        let program = self.program.clone();
        args.extend([program.as_str(), "run", "--config", &path]);
        match args.split_first() {
            Some((program, rest)) if !wrapper.is_empty() => self.spawn(node, node, program, rest),
            _ => self.spawn(node, node, TANDEM, &args[1..]),
        }
    }

    /// Makes the lab's files readable by `uid` (a node run as a user
    /// other than root, as systemd's `User=` does): the directory, the
    /// admin token, and a copy of the pair's secret (mode 0600, owned by
    /// `uid`) that the configuration names instead of the testbed's.
    fn files_for_uid(&mut self, uid: u32) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = dir.join("pair.secret");
        std::fs::copy("/run/tandem-testbed/pair.secret", &secret).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let token = dir.join("admin.token");
        std::fs::write(&token, format!("{}\n", testkit::TEST_ADMIN_TOKEN)).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        for f in [&secret, &token] {
            std::os::unix::fs::chown(f, Some(uid), Some(uid)).unwrap();
        }
        let secret = secret.display().to_string();
        self.edit("/run/tandem-testbed/pair.secret", &secret);
        // A checkout under a private directory (/root) is out of the
        // user's reach: the binary is copied beside the files then.
        let reachable = Command::new("setpriv")
            .args([&format!("--reuid={uid}"), "--", "test", "-x", TANDEM])
            .status()
            .is_ok_and(|s| s.success());
        if !reachable {
            let copy = self.dir.path().join("tandem");
            std::fs::copy(TANDEM, &copy).unwrap();
            self.program = copy.display().to_string();
        }
    }

    /// `GET /status` of a node (None while it does not answer).
    fn status(&self, node: &str) -> Option<Value> {
        let out = self
            .lab
            .command(node, TANDEM)
            .args(["status", "--json", "--admin", "127.0.0.1:9090"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    async fn wait_status(
        &self,
        node: &str,
        what: &str,
        deadline: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + deadline;
        loop {
            let s = self.status(node);
            if let Some(s) = s.as_ref().filter(|s| ok(s)) {
                return s.clone();
            }
            if Instant::now() > end {
                panic!(
                    "timed out waiting for {node}: {what}; last status {s:?}\n--- {node} log tail ---\n{}",
                    self.log_tail(node, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self, name: &str, lines: usize) -> String {
        let log = self
            .procs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.log())
            .unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Both media servers, node `a` active, node `b` its standby in sync.
    /// Both media servers with the same scenario (see `media_server`).
    fn media_servers(&mut self, scenario: Option<(&str, u64)>) {
        self.media_server("ms1", scenario);
        self.media_server("ms2", scenario);
    }

    async fn pair(&mut self) {
        self.media_servers(None);
        self.start_pair().await;
    }

    async fn start_pair(&mut self) {
        self.tandem("a");
        self.wait_status("a", "active", Duration::from_secs(10), |s| {
            s["role"] == "active"
        })
        .await;
        self.tandem("b");
        self.wait_status("b", "standby", Duration::from_secs(10), |s| {
            s["role"] == "standby"
        })
        .await;
    }

    /// The arguments of a tandem-load named `name` in the trunk
    /// namespace (its JSON report: NAME.json).
    fn load_args_as(&self, name: &str, args: &[&str]) -> Vec<String> {
        let json = self
            .dir
            .path()
            .join(format!("{name}.json"))
            .display()
            .to_string();
        let mut v: Vec<String> = [
            "call",
            "-t",
            "10.77.0.100",
            "--json",
            &json,
            "--per-call",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn start_load(&mut self, args: &[&str]) {
        self.start_load_as("load", args);
    }

    /// A tandem-load of its own, `name`, beside others.
    fn start_load_as(&mut self, name: &str, args: &[&str]) {
        let args = self.load_args_as(name, args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(name, "trunk", tandem_load(), &args);
    }

    /// Waits for process `name` to exit; its exit status.
    async fn wait_exit(&mut self, name: &str, deadline: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.proc(name).child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > end {
                panic!(
                    "{name} still running after {deadline:?}\n{}\n--- b ---\n{}",
                    self.log_tail(name, 20),
                    self.log_tail("b", 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn finish_load(&mut self, deadline: Duration) -> Value {
        self.finish_load_as("load", deadline).await
    }

    async fn finish_load_as(&mut self, name: &str, deadline: Duration) -> Value {
        let status = self.wait_exit(name, deadline).await;
        let json = self.dir.path().join(format!("{name}.json"));
        let text = std::fs::read_to_string(json).unwrap_or_else(|e| {
            panic!(
                "tandem-load ({status}) wrote no JSON: {e}\n{}",
                self.log_tail(name, 40)
            )
        });
        serde_json::from_str(&text).unwrap()
    }

    /// Waits for tandem-load and checks that every one of its `n` calls
    /// was completed (answered, held, hung up by the trunk).
    async fn all_completed(&mut self, n: u64, deadline: Duration) -> Value {
        self.all_completed_as("load", n, deadline).await
    }

    async fn all_completed_as(&mut self, name: &str, n: u64, deadline: Duration) -> Value {
        let report = self.finish_load_as(name, deadline).await;
        assert_eq!(
            outcomes(&report).get("completed"),
            Some(&n),
            "{}\n--- b ---\n{}",
            report["calls"],
            self.log_tail("b", 30)
        );
        report
    }

    /// Whether `node` holds the floating address.
    fn holds_vip(&self, node: &str) -> bool {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.lab.ns(node),
                "-4",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("10.77.0.100/")
    }

    /// SIPp phones in the trunk's namespace registering (with
    /// `register_digest.xml`, users from `users`, 600 s) to the floating
    /// address; `extra`: SIPp's further arguments.
    fn phones(&mut self, users: &Path, extra: &[&str]) {
        let register = workspace().join("deploy/sipp/register_digest.xml");
        let (users, register) = (users.display().to_string(), register.display().to_string());
        let mut args = vec![
            "10.77.0.100:5060",
            "-sf",
            &register,
            "-inf",
            &users,
            "-key",
            "domain",
            "example.test",
            "-key",
            "expires",
            "600",
        ];
        args.extend_from_slice(extra);
        self.spawn("phones", "trunk", "sipp", &args);
    }

    /// A second address on `node`'s eth0 (in the testbed's /24).
    fn add_address(&self, node: &str, ip: &str) {
        let added = Command::new("ip")
            .args([
                "-n",
                &self.lab.ns(node),
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ])
            .status()
            .unwrap();
        assert!(added.success());
    }

    /// `GET /registrations` of a node, parsed (None while it does not
    /// answer); `admin`: its admin address in its namespace.
    fn registrations(&self, node: &str, admin: &str) -> Option<Value> {
        let out = self
            .lab
            .command(node, TANDEM)
            .args(["registrations", "--admin", admin])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn testbed(&self, args: &[&str]) -> String {
        let mut cmd = vec![testkit::lab::testbed_script().display().to_string()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        cmd.join(" ")
    }
}

/// The calls of a tandem-load report, by outcome/reason.
fn outcomes(report: &Value) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for c in report["per_call"].as_array().into_iter().flatten() {
        let key = match c["reason"].as_str() {
            Some(r) => format!("{}:{r}", c["outcome"].as_str().unwrap_or("?")),
            None => c["outcome"].as_str().unwrap_or("?").to_string(),
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

fn max_gap_ms(report: &Value) -> f64 {
    report["failure"]["rtp"]["gap_ms"]["max"]
        .as_f64()
        .unwrap_or(f64::MAX)
}

#[tokio::test]
async fn killed_active_node_the_standby_keeps_every_call_and_both_sides_can_hang_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("kill");
    // The calls are older than the media timeout when b takes them over:
    // their silence counts from the takeover, not from their answer.
    lab.edit(
        "member_answer_timeout_ms = 4000",
        "member_answer_timeout_ms = 4000\nmedia_timeout_s = 2",
    );
    // Each node's CDRs in a file of its own.
    let cdr = format!("{}/cdr-@NODE@.jsonl", lab.dir.path().display());
    lab.edit("[pool]\n", &format!("[cdr]\npath = \"{cdr}\"\n\n[pool]\n"));
    lab.media_server("ms1", None);
    // ms2 hangs up its calls itself, 6 s after answering: after the
    // takeover, that BYE must find its way to the trunk.
    lab.media_server("ms2", Some(("answer_then_bye_uas.xml", 6000)));
    lab.start_pair().await;
    let kill = lab.testbed(&["kill", lab.lab.name(), "a"]);
    lab.start_load(&[
        "-r",
        "10",
        "-n",
        "10",
        "--hold",
        "9s",
        "--fail-at",
        "2.5",
        "--fail-cmd",
        &kill,
    ]);
    let b = lab
        .wait_status("b", "takes over", Duration::from_secs(15), |s| {
            s["role"] == "active"
        })
        .await;
    assert_eq!(b["epoch"], 2, "the takeover raised the epoch");
    assert!(lab.holds_vip("b"));
    let report = lab.finish_load(Duration::from_secs(30)).await;
    let o = outcomes(&report);
    let f = &report["failure"];
    assert_eq!(f["calls_up"], 10, "all calls up at the kill: {f}");
    assert_eq!(
        (
            o.get("completed").copied(),
            o.get("dropped:remote_bye").copied()
        ),
        (Some(5), Some(5)),
        "ms1's calls ended by the trunk's BYE, ms2's by the server's: {o:?}\n{}",
        lab.log_tail("b", 30)
    );
    assert_eq!(f["rtp"]["ssrc_changes"], 0);
    // Audio came back through the new active node (not a timed check: a
    // call without the takeover would be silent for the rest of its 9 s).
    assert!(max_gap_ms(&report) < 3000.0, "gap {}", max_gap_ms(&report));
    assert!(lab
        .log_tail("b", 200)
        .contains("calls adopted from the copy"));
    // b's CDRs tell that each call was adopted at the takeover (epoch 2)
    // and which member it was on.
    let cdrs: Vec<Value> = std::fs::read_to_string(lab.dir.path().join("cdr-b.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(cdrs.len(), 10, "{cdrs:?}\n{}", lab.log_tail("b", 30));
    for c in &cdrs {
        let takeovers = c["takeovers"].as_array().unwrap();
        assert_eq!(takeovers.len(), 1, "{c}");
        assert_eq!(takeovers[0]["epoch"], 2, "{c}");
        assert!(c["members"][0]["answered_ms"].is_u64(), "{c}");
        assert!(
            c["answer_ms"].as_u64() < takeovers[0]["at_ms"].as_u64(),
            "{c}"
        );
    }
}

#[tokio::test]
async fn a_cut_pair_link_is_no_takeover_and_the_standby_resyncs_when_it_heals() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("pair");
    // Without the auxiliary heartbeats a cut pair link silences the peer
    // completely: only the probe of the floating address stops b.
    lab.edit("aux = {", "# aux = {");
    lab.pair().await;
    lab.start_load(&["-r", "10", "-n", "5", "--hold", "8s", "--no-rtp"]);
    lab.wait_status("b", "5 calls copied", Duration::from_secs(10), |s| {
        s["records"]["call"] == 5
    })
    .await;
    lab.lab.cut("pair").unwrap();
    // Longer than the peer-lost time (500 ms) and several check rounds.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        assert!(!lab.holds_vip("b"), "never two nodes holding the address");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = lab.status("b").unwrap();
    assert_ne!(b["role"], "active", "{b}");
    assert_eq!(lab.status("a").unwrap()["role"], "active");
    lab.lab.heal("pair").unwrap();
    let a = lab.status("a").unwrap();
    let b = lab
        .wait_status("b", "resynced", Duration::from_secs(10), |s| {
            s["role"] == "standby" && s["records"]["call"] == 5
        })
        .await;
    assert_eq!(b["epoch"], a["epoch"]);
    lab.all_completed(5, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn an_isolated_active_node_is_replaced_and_steps_down_when_it_comes_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("isol");
    lab.pair().await;
    let cut = lab.testbed(&["cut", lab.lab.name(), "a"]);
    lab.start_load(&[
        "-r",
        "10",
        "-n",
        "6",
        "--hold",
        "8s",
        "--fail-at",
        "1.5",
        "--fail-cmd",
        &cut,
    ]);
    lab.wait_status("b", "takes over", Duration::from_secs(15), |s| {
        s["role"] == "active" && s["epoch"] == 2
    })
    .await;
    // Every call kept, through b.
    lab.all_completed(6, Duration::from_secs(30)).await;
    // a is still active in its own eyes, behind its cut cables.
    assert!(lab.holds_vip("a"));
    lab.lab.heal("a").unwrap();
    let a = lab
        .wait_status(
            "a",
            "steps down and resyncs",
            Duration::from_secs(10),
            |s| s["role"] == "standby" && s["epoch"] == 2,
        )
        .await;
    assert!(!lab.holds_vip("a"), "the old active dropped the address");
    assert!(lab.holds_vip("b"));
    let b = lab.status("b").unwrap();
    assert_eq!(a["digest"], b["digest"], "full resync: {a} vs {b}");
    assert!(lab.log_tail("a", 100).contains("stepping down"));
}

#[tokio::test]
async fn a_standby_restarted_under_load_ends_with_exactly_the_active_set() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("rest");
    lab.pair().await;
    // 50 calls/s for 6 s, each held 8 s: ~300 calls, new ones arriving
    // while the standby restarts.
    lab.start_load(&["-r", "50", "-n", "300", "--hold", "8s", "--no-rtp"]);
    lab.wait_status("a", "200 calls up", Duration::from_secs(15), |s| {
        s["records"]["call"].as_u64().unwrap_or(0) >= 200
    })
    .await;
    lab.proc("b").kill();
    lab.tandem("b");
    lab.wait_status("b", "standby again", Duration::from_secs(10), |s| {
        s["role"] == "standby"
    })
    .await;
    // Once the load has placed its last call, both must hold the same set.
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let (a, b) = (lab.status("a").unwrap(), lab.status("b").unwrap());
        if a["digest"] == b["digest"] && a["records"]["call"].as_u64() >= Some(250) {
            break;
        }
        assert!(Instant::now() < end, "standby never level: a {a}\nb {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lab.all_completed(300, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_call_ringing_at_the_takeover_is_answered_afterwards() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("ring");
    // Both servers ring 3 s before answering.
    lab.media_servers(Some(("late_answer_uas.xml", 3000)));
    lab.start_pair().await;
    let kill = lab.testbed(&["kill", lab.lab.name(), "a"]);
    lab.start_load(&[
        "-r",
        "10",
        "-n",
        "2",
        "--hold",
        "4s",
        "--fail-at",
        "1",
        "--fail-cmd",
        &kill,
    ]);
    lab.wait_status("b", "takes over", Duration::from_secs(15), |s| {
        s["role"] == "active"
    })
    .await;
    // Answered through b, held and hung up.
    let report = lab.all_completed(2, Duration::from_secs(30)).await;
    assert!(
        report["rtp"]["packets_received"].as_u64().unwrap_or(0) > 0,
        "{}",
        report["rtp"]
    );
}

#[tokio::test]
async fn a_switchover_swaps_the_roles_without_losing_a_call() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("swo");
    lab.pair().await;
    lab.start_load(&["-r", "10", "-n", "8", "--hold", "6s"]);
    lab.wait_status("b", "8 calls copied", Duration::from_secs(10), |s| {
        s["records"]["call"] == 8
    })
    .await;
    // The node's config names its admin token file: a switchover needs it.
    let config = lab.dir.path().join("tandem-a.toml");
    let out = lab
        .lab
        .command("a", TANDEM)
        .args(["switchover", "--admin", "127.0.0.1:9090", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.wait_status("b", "active", Duration::from_secs(5), |s| {
        s["role"] == "active"
    })
    .await;
    lab.wait_status("a", "standby", Duration::from_secs(10), |s| {
        s["role"] == "standby" && s["records"]["call"] == 8
    })
    .await;
    assert!(lab.holds_vip("b") && !lab.holds_vip("a"));
    let report = lab.all_completed(8, Duration::from_secs(30)).await;
    assert_eq!(report["rtp"]["ssrc_changes"], 0);
}

#[tokio::test]
async fn in_dialog_re_invites_and_bye_work_through_the_new_active_node() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("rinv");
    lab.media_servers(Some(("reinvite_uas.xml", 0)));
    lab.start_pair().await;
    // One call, answered, then 4 s before the caller's hold re-INVITE.
    let scenario = workspace().join("deploy/sipp/reinvite_later_uac.xml");
    let scenario = scenario.display().to_string();
    lab.spawn(
        "caller",
        "trunk",
        "sipp",
        &[
            "10.77.0.100:5060",
            "-sf",
            &scenario,
            "-i",
            "10.77.0.10",
            "-p",
            "5060",
            "-m",
            "1",
            "-d",
            "4000",
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
        ],
    );
    lab.wait_status("b", "the call copied", Duration::from_secs(10), |s| {
        s["records"]["call"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    lab.lab.kill("a").unwrap();
    lab.wait_status("b", "takes over", Duration::from_secs(10), |s| {
        s["role"] == "active"
    })
    .await;
    // The re-INVITEs (CSeq 2 and 3 from the caller; Tandem's own CSeq
    // toward the server above the replicated one) and the BYE all go
    // through b; SIPp fails on any unexpected answer.
    let status = lab.wait_exit("caller", Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "caller's SIPp: {status}\n{}\n--- b ---\n{}",
        lab.log_tail("caller", 30),
        lab.log_tail("b", 30)
    );
}

/// 200 SIPp phones register (digest) to the active node; `kill -9` of
/// the active; the trunk then calls every AOR through the new active node
/// and every phone answers — none registered again (their scenario
/// registers once, for 600 s).
#[tokio::test]
async fn phones_registered_to_the_killed_active_node_are_called_through_the_new_one() {
    const PHONES: usize = 200;
    const PHONE_IP: &str = "10.77.0.30";
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("regs");
    // The phones' own address, beside the trunk's (which stays the only
    // trunk).
    lab.add_address("trunk", PHONE_IP);
    // Users, their HA1 lines (`tandem passwd`) and SIPp's injection file.
    let creds = lab.dir.path().join("credentials");
    let users = lab.dir.path().join("users.csv");
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..PHONES {
        let (user, password) = (format!("phone{i:03}"), format!("pw-{i:03}-x"));
        let mut child = Command::new(TANDEM)
            .args([
                "passwd",
                "--realm",
                "example.test",
                "--user",
                &user,
                "--file",
            ])
            .arg(&creds)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        assert!(child.wait().unwrap().success());
        csv += &format!("{user};{password};[authentication username={user} password={password}]\n");
    }
    std::fs::write(&users, csv).unwrap();
    lab.edit(
        "networks = [\"10.77.0.0/24\"]",
        "networks = [\"10.77.0.10/32\"]",
    );
    lab.edit(
        "[pool]\nname = \"media\"",
        &format!(
            "[limits]\nstranger_rate = 0\n\n\
             [registrar]\ndomains = [\"example.test\"]\ncredentials_file = \"{}\"\n\n\
             [[rule]]\nname = \"phones\"\nruri_user_prefix = \"phone\"\nlocation = true\n\n\
             [[rule]]\nname = \"rest\"\ngroup = \"media\"\n\n\
             [pool]\nname = \"media\"",
            creds.display()
        ),
    );
    lab.pair().await;

    lab.phones(
        &users,
        &[
            "-set",
            "unregister",
            "yes",
            "-d",
            "120000",
            "-oocsn",
            "uas",
            "-rtp_echo",
            "-i",
            PHONE_IP,
            "-mi",
            PHONE_IP,
            "-p",
            "5070",
            "-m",
            "200",
            "-r",
            "50",
            "-l",
            "200",
            "-nostdin",
            "-buff_size",
            "4194304",
        ],
    );
    // Every binding is on the standby before the active dies.
    lab.wait_status("b", "every binding copied", Duration::from_secs(30), |s| {
        s["records"]["binding"] == PHONES as u64
    })
    .await;
    lab.lab.kill("a").unwrap();
    lab.wait_status("b", "takes over", Duration::from_secs(10), |s| {
        s["role"] == "active"
    })
    .await;

    let calls = workspace().join("deploy/sipp/call_users_uac.xml");
    let calls_arg = calls.display().to_string();
    let users_arg = users.display().to_string();
    lab.spawn(
        "caller",
        "trunk",
        "sipp",
        &[
            "10.77.0.100:5060",
            "-sf",
            &calls_arg,
            "-inf",
            &users_arg,
            "-i",
            "10.77.0.10",
            "-p",
            "5060",
            "-m",
            "200",
            "-r",
            "50",
            "-l",
            "50",
            "-d",
            "200",
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
            "-buff_size",
            "4194304",
        ],
    );
    let status = lab.wait_exit("caller", Duration::from_secs(60)).await;
    let caller_log = lab.proc("caller").log();
    let unexpected: Vec<&str> = caller_log
        .lines()
        .skip_while(|l| !l.contains("unexpected message"))
        .take(12)
        .collect();
    assert!(
        status.success(),
        "caller's SIPp: {status}\n{}\n{}\n--- b ---\n{}\n--- phones ---\n{}",
        unexpected.join("\n"),
        lab.log_tail("caller", 40),
        lab.log_tail("b", 30),
        lab.log_tail("phones", 20)
    );
}

/// Benchmark, not a check of speed (run by hand, figures in
/// BENCHMARKS.md): node a starts alone with 100,000 bindings in its
/// snapshot file; then node b starts fresh and the time until it holds
/// every binding is printed, with a's load time.
///
/// `cargo test --release -p proxy --test standby -- --ignored --nocapture fresh_standby`
#[tokio::test]
#[ignore]
async fn fresh_standby_copies_100k_bindings() {
    const N: usize = 100_000;
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("r100k");
    let snapshot = lab.dir.path().join("bindings-a.jsonl");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut text = String::new();
    for i in 0..N {
        let aor = format!("phone{i:06}@example.test");
        let source = format!("10.{}.{}.{}:5060", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        let line = serde_json::json!({
            "aor": aor,
            "bindings": [{
                "contact": format!("sip:phone{i:06}@{source};transport=udp"),
                "expires_at": now_ms + 3_600_000,
                "q": 1000,
                "instance": format!("<urn:uuid:00000000-0000-4000-8000-{i:012}>"),
                "reg_id": 1,
                "call_id": format!("{i:032x}@192.0.2.1"),
                "cseq": 7,
                "path": [],
                "flow": { "transport": "Udp", "source": source },
                "user_agent": "Bench Phone 1.0",
                "registered_at": now_ms,
            }],
        });
        text += &line.to_string();
        text.push('\n');
    }
    std::fs::write(&snapshot, text).unwrap();
    let creds = lab.dir.path().join("credentials");
    std::fs::write(&creds, "").unwrap();
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let registrar = |snapshot: Option<&Path>| {
        format!(
            "[registrar]\ndomains = [\"example.test\"]\ncredentials_file = \"{}\"\n{}\n\
             [pool]\nname = \"media\"",
            creds.display(),
            snapshot
                .map(|p| format!("snapshot_file = \"{}\"", p.display()))
                .unwrap_or_default()
        )
    };
    lab.edit("[pool]\nname = \"media\"", &registrar(Some(&snapshot)));
    lab.media_servers(None);
    lab.tandem("a");
    lab.wait_status("a", "active", Duration::from_secs(30), |s| {
        s["role"] == "active"
    })
    .await;
    // b starts with no snapshot of its own: a fresh standby.
    lab.edits.clear();
    lab.edit("[pool]\nname = \"media\"", &registrar(None));
    let started = Instant::now();
    lab.tandem("b");
    let status = lab
        .wait_status("b", "every binding copied", Duration::from_secs(60), |s| {
            s["records"]["binding"] == N as u64
        })
        .await;
    let copied = started.elapsed();
    let loaded = lab
        .log_tail("a", 200)
        .lines()
        .find(|l| l.contains("bindings loaded from the snapshot"))
        .map(str::to_owned)
        .unwrap_or_default();
    println!("a: {loaded}");
    println!(
        "b: {N} bindings held {:.2} s after b was started (status: {})",
        copied.as_secs_f64(),
        status["records"]
    );
}

/// The branch pair keeps its fallback across a takeover: the WAN is
/// forced down on the active node, the state reaches the standby as a
/// record, the active dies, and the new active still routes by the
/// WAN-down rules (its `GET /wan` says down).
#[tokio::test]
async fn a_takeover_during_a_wan_outage_keeps_the_branch_in_fallback() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("wan");
    lab.edit(
        "[pool]\nname = \"media\"",
        "[[wan]]\nname = \"dc\"\ngroups = [\"media\"]\n\n[pool]\nname = \"media\"",
    );
    lab.pair().await;
    let config_a = lab.dir.path().join("tandem-a.toml").display().to_string();
    let forced = lab
        .lab
        .command("a", TANDEM)
        .args(["wan", "--config", &config_a, "dc", "down"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forced.stdout).trim(), "down");
    lab.wait_status("b", "the WAN state copied", Duration::from_secs(10), |s| {
        s["records"]["wan"] == 1
    })
    .await;
    lab.lab.kill("a").unwrap();
    lab.wait_status("b", "takes over", Duration::from_secs(10), |s| {
        s["role"] == "active"
    })
    .await;
    let out = lab
        .lab
        .command("b", TANDEM)
        .args(["wan", "--admin", "127.0.0.1:9090"])
        .output()
        .unwrap();
    let wans: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        wans[0]["state"],
        "down",
        "{wans}\n{}",
        lab.log_tail("b", 20)
    );
    assert_eq!(wans[0]["forced"], "down", "{wans}");
}

/// Dual registration across a takeover: the branch pair registers its
/// phones' AORs with a central registrar (a third Tandem, in the trunk's
/// namespace); every upstream registration is copied to the standby; the
/// active dies; the new active holds them with the same Call-ID and CSeq
/// and sends nothing at once (their refresh is minutes away), and the
/// centre still has every AOR bound to the floating address.
#[tokio::test]
async fn upstream_registrations_survive_a_takeover_with_their_call_ids() {
    const PHONES: usize = 10;
    const PHONE_IP: &str = "10.77.0.31";
    const CENTRE: &str = "10.77.0.10:5080";
    const CENTRE_ADMIN: &str = "127.0.0.1:9091";
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("upreg");
    lab.add_address("trunk", PHONE_IP);
    // Each user's HA1 in the branch's realm and in the centre's.
    let creds = lab.dir.path().join("credentials");
    let users = lab.dir.path().join("users.csv");
    let mut lines = String::new();
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..PHONES {
        let (user, password) = (format!("phone{i:03}"), format!("pw-{i:03}-x"));
        for realm in ["example.test", "centre.test"] {
            let ha1 = sipcore::digest::Algorithm::Md5.ha1(&user, realm, &password);
            lines += &format!("{user}:{realm}:MD5:{ha1}\n");
        }
        csv += &format!("{user};{password};[authentication username={user} password={password}]\n");
    }
    std::fs::write(&creds, lines).unwrap();
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(&users, csv).unwrap();

    // The centre: a registrar for centre.test beside the trunk.
    let centre = lab.dir.path().join("centre.toml");
    std::fs::write(
        &centre,
        format!(
            "[sip]\nlisten = [\"{CENTRE}\"]\n\n[admin]\nlisten = \"{CENTRE_ADMIN}\"\n\n\
             [media]\nip = \"10.77.0.10\"\nport_min = 40000\nport_max = 40099\n\n\
             [limits]\nstranger_rate = 0\n\n\
             [[trunk]]\nname = \"none\"\nnetworks = [\"10.77.0.99/32\"]\n\n\
             [registrar]\ndomains = [\"centre.test\"]\ncredentials_file = \"{}\"\n\n\
             [pool]\nname = \"media\"\n\n[[pool.member]]\nname = \"ms1\"\naddress = \"10.77.0.21:5060\"\n",
            creds.display()
        ),
    )
    .unwrap();
    let centre_arg = centre.display().to_string();
    lab.spawn("centre", "trunk", TANDEM, &["run", "--config", &centre_arg]);

    // The branch pair: the phones' registrar, registering them upstream.
    lab.edit(
        "networks = [\"10.77.0.0/24\"]",
        "networks = [\"10.77.0.10/32\"]",
    );
    lab.edit(
        "[pool]\nname = \"media\"",
        &format!(
            "[limits]\nstranger_rate = 0\n\n\
             [registrar]\ndomains = [\"example.test\"]\ncredentials_file = \"{}\"\n\n\
             [registrar.upstream]\nregistrar = \"{CENTRE}\"\nrealm = \"centre.test\"\ndomain = \"centre.test\"\n\n\
             [pool]\nname = \"media\"",
            creds.display()
        ),
    );
    lab.pair().await;

    let phones = PHONES.to_string();
    lab.phones(
        &users,
        &[
            "-i", PHONE_IP, "-p", "5070", "-m", &phones, "-r", "20", "-nostdin",
        ],
    );
    // Every AOR registered at the centre, and the standby's copy says so.
    let registered = |doc: &Value| {
        doc["aors"]
            .as_array()
            .map(|aors| {
                aors.iter()
                    .filter(|a| a["upstream"]["state"] == "registered")
                    .count()
            })
            .unwrap_or(0)
    };
    let end = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let copy = lab.registrations("b", "127.0.0.1:9090");
        if let Some(doc) = copy.as_ref().filter(|d| registered(d) == PHONES) {
            break doc.clone();
        }
        assert!(
            Instant::now() < end,
            "standby copy: {copy:?}\n--- a ---\n{}\n--- centre ---\n{}",
            lab.log_tail("a", 20),
            lab.log_tail("centre", 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let active = lab.registrations("a", "127.0.0.1:9090").unwrap();
    assert_eq!(
        before["aors"][0]["upstream"]["call_id"],
        active["aors"][0]["upstream"]["call_id"]
    );

    lab.lab.kill("a").unwrap();
    lab.wait_status("b", "takes over", Duration::from_secs(10), |s| {
        s["role"] == "active"
    })
    .await;
    // Some seconds of serving: nothing re-registered, same Call-IDs and
    // CSeqs (a node without the copy would register every AOR anew).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = lab.registrations("b", "127.0.0.1:9090").unwrap();
    assert_eq!(registered(&after), PHONES, "{after}");
    for i in 0..PHONES {
        let (was, now) = (
            &before["aors"][i]["upstream"],
            &after["aors"][i]["upstream"],
        );
        assert_eq!(
            (&was["call_id"], &was["cseq"]),
            (&now["call_id"], &now["cseq"]),
            "{after}"
        );
    }
    // The centre: every AOR bound to the pair's floating address.
    let centre_doc = lab.registrations("trunk", CENTRE_ADMIN).unwrap();
    assert_eq!(centre_doc["aor_count"], PHONES as u64, "{centre_doc}");
    assert!(
        centre_doc
            .to_string()
            .contains("sip:phone000@10.77.0.100:5060"),
        "{centre_doc}"
    );
}

/// A takeover during maintenance keeps the operator's drain: node a
/// drains ms1 (`tandem drain member ms1`), the drain reaches b with the
/// member's record, a dies, and b, serving now, sends every new call to
/// ms2.
#[tokio::test]
async fn a_takeover_during_maintenance_keeps_the_drained_member_drained() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("drn");
    lab.pair().await;
    let config_a = lab.dir.path().join("tandem-a.toml").display().to_string();
    let drained = lab
        .lab
        .command("a", TANDEM)
        .args(["drain", "member", "ms1", "--config", &config_a])
        .output()
        .unwrap();
    assert!(
        drained.status.success(),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
    let ms1_draining = |lab: &HaLab, node: &str| -> Option<bool> {
        let out = lab
            .lab
            .command(node, TANDEM)
            .args(["members", "--json", "--admin", "127.0.0.1:9090"])
            .output()
            .ok()?;
        let members: Value = serde_json::from_slice(&out.stdout).ok()?;
        members.as_array()?.iter().find(|m| m["member"] == "ms1")?["draining"].as_bool()
    };
    let end = Instant::now() + Duration::from_secs(10);
    while ms1_draining(&lab, "b") != Some(true) {
        assert!(
            Instant::now() < end,
            "b never learnt of the drain\n{}",
            lab.log_tail("b", 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lab.lab.kill("a").unwrap();
    lab.wait_status("b", "takes over", Duration::from_secs(10), |s| {
        s["role"] == "active"
    })
    .await;
    assert_eq!(ms1_draining(&lab, "b"), Some(true));
    // New calls through b: none goes to the drained ms1.
    lab.start_load(&["-r", "10", "-n", "6", "--hold", "3s"]);
    let end = Instant::now() + Duration::from_secs(10);
    let calls = loop {
        let out = lab
            .lab
            .command("b", TANDEM)
            .args(["calls", "--json", "--admin", "127.0.0.1:9090"])
            .output()
            .unwrap();
        let calls: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let n = calls.as_array().map_or(0, Vec::len);
        if n == 6 || Instant::now() > end {
            break calls;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let members: Vec<&str> = calls
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["member"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(members, ["ms2"; 6], "{calls}\n{}", lab.log_tail("b", 20));
    lab.all_completed(6, Duration::from_secs(30)).await;
}

/// `setpriv` arguments that run a program as `nobody` with exactly the
/// capabilities `caps` (as `CAP_X CAP_Y`) inheritable, ambient and in the
/// bounding set: what `deploy/systemd/tandem.service` gives it with
/// `User=`, `AmbientCapabilities=` and `CapabilityBoundingSet=`.
fn as_nobody_with(caps: &str) -> Vec<String> {
    let set: String = std::iter::once("-all".to_string())
        .chain(
            caps.split_whitespace()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");
    [
        "setpriv".to_string(),
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
        "--".into(),
    ]
    .to_vec()
}

const NOBODY: u32 = 65534;

/// The capabilities of the unit file, as its AmbientCapabilities= line
/// says.
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(workspace().join("deploy/systemd/tandem.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit has AmbientCapabilities=");
    let bounding = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit has CapabilityBoundingSet=");
    assert_eq!(line, bounding, "ambient and bounding sets differ");
    line.to_owned()
}

#[tokio::test]
async fn with_exactly_the_units_capabilities_as_a_user_a_pair_takes_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("caps");
    lab.files_for_uid(NOBODY);
    lab.media_servers(None);
    let wrapper = as_nobody_with(&unit_capabilities());
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    lab.tandem_with("a", &wrapper);
    lab.wait_status("a", "active", Duration::from_secs(10), |s| {
        s["role"] == "active"
    })
    .await;
    assert!(lab.holds_vip("a"), "{}", lab.log_tail("a", 30));
    lab.tandem_with("b", &wrapper);
    lab.wait_status("b", "standby", Duration::from_secs(10), |s| {
        s["role"] == "standby"
    })
    .await;
    // Not root: the process runs as nobody.
    let pid = lab.proc("b").child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains(&NOBODY.to_string()), "{uid}");
    // The takeover needs every capability: the fencing ping (NET_RAW),
    // the address (NET_ADMIN), the gratuitous ARP (NET_RAW).
    lab.proc("a").kill();
    lab.wait_status("b", "takes over", Duration::from_secs(15), |s| {
        s["role"] == "active"
    })
    .await;
    assert!(lab.holds_vip("b"), "{}", lab.log_tail("b", 30));
    lab.start_load(&["-r", "5", "-n", "3", "--hold", "1s"]);
    lab.all_completed(3, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn without_cap_net_raw_a_pair_node_refuses_to_start_naming_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("noraw");
    lab.files_for_uid(NOBODY);
    let caps = unit_capabilities().replace("CAP_NET_RAW", "");
    let wrapper = as_nobody_with(&caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    lab.tandem_with("a", &wrapper);
    let status = lab.wait_exit("a", Duration::from_secs(10)).await;
    let log = lab.log_tail("a", 30);
    assert!(!status.success(), "{log}");
    assert!(log.contains("ha.vip needs CAP_NET_RAW"), "{log}");
    assert!(
        log.contains("ha.fencing.probe_hosts needs CAP_NET_RAW"),
        "{log}"
    );
    assert!(!log.contains("needs CAP_NET_ADMIN"), "{log}");
    assert!(!lab.holds_vip("a"));
}

#[tokio::test]
async fn sigterm_on_the_active_node_hands_its_20_calls_to_the_standby_and_exits() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("term");
    lab.pair().await;
    lab.start_load(&["-r", "10", "-n", "20", "--hold", "8s"]);
    lab.wait_status("b", "20 calls copied", Duration::from_secs(15), |s| {
        s["records"]["call"] == 20
    })
    .await;
    let pid = lab.proc("a").child.id();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // A switchover, then the exit: well before the 30 s drain.
    let status = lab.wait_exit("a", Duration::from_secs(15)).await;
    assert!(status.success(), "{status}\n{}", lab.log_tail("a", 30));
    assert!(
        lab.log_tail("a", 50)
            .contains("the calls were handed over to the standby"),
        "{}",
        lab.log_tail("a", 50)
    );
    lab.wait_status("b", "active", Duration::from_secs(5), |s| {
        s["role"] == "active"
    })
    .await;
    assert!(lab.holds_vip("b") && !lab.holds_vip("a"));
    // New calls from the trunk while the 20 are still up: b serves them
    // (before: the stopping node kept the address and refused them).
    lab.start_load_as("new", &["-r", "10", "-n", "10", "--hold", "1s"]);
    let new = lab.finish_load_as("new", Duration::from_secs(30)).await;
    assert_eq!(
        outcomes(&new).get("completed"),
        Some(&10),
        "new calls: {:?}",
        outcomes(&new)
    );
    // 20/20: every call answered, held and hung up by the trunk, its BYE
    // answered end to end through b.
    let report = lab.all_completed(20, Duration::from_secs(30)).await;
    assert_eq!(report["rtp"]["ssrc_changes"], 0);
}

/// The RTP kernel fast path across a takeover: both nodes run with
/// `media.fast_path = "on"`; a's kernel forwards the calls' RTP; a is
/// killed; b, which installed the kernel entries when it pre-bound the
/// replicated sessions, forwards them in its kernel from the moment it
/// holds the floating address (out of its eth0, the peers being in other
/// namespaces): the caller hears one stream, and b's user-space relay
/// stays out of the way.
#[tokio::test]
async fn with_the_kernel_fast_path_a_takeover_keeps_one_continuous_stream() {
    if let Some(why) = testkit::bpf_refused() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = HaLab::up("bpf");
    lab.edit(
        "port_max = 29999\n",
        "port_max = 29999\nfast_path = \"on\"\n",
    );
    lab.pair().await;
    let kill = lab.testbed(&["kill", lab.lab.name(), "a"]);
    lab.start_load(&[
        "-r",
        "10",
        "-n",
        "4",
        "--hold",
        "8s",
        "--fail-at",
        "3",
        "--fail-cmd",
        &kill,
    ]);
    lab.wait_status("b", "takes over", Duration::from_secs(15), |s| {
        s["role"] == "active"
    })
    .await;
    let report = lab.all_completed(4, Duration::from_secs(30)).await;
    let f = &report["failure"];
    assert_eq!(f["calls_up"], 4, "all calls up at the kill: {f}");
    assert_eq!(report["rtp"]["ssrc_changes"], 0, "{}", report["rtp"]);
    assert_eq!(report["rtp"]["duplicates"], 0, "{}", report["rtp"]);
    for call in report["per_call"].as_array().expect("per-call records") {
        assert_eq!(call["rtp"]["seq_restarts"], 0, "{call}");
    }
    assert!(max_gap_ms(&report) < 3000.0, "gap {}", max_gap_ms(&report));
    // b's kernel forwarded the rest of the calls; its user-space relay the
    // first packet or two of each stream (the copy b holds was replicated
    // at the answer, before latching: the first packet after the takeover
    // latches in user space, which then hands the stream to the kernel)
    // and RTCP. The bounds follow from the run's own figures: each of the
    // 4 calls x 2 streams at 50 pps lasts 8 s from its start (within the
    // first 0.5 s); b serves it from the kill plus the gap at most.
    const STREAMS: f64 = 4.0 * 2.0;
    let after_s = 8.0 - f["at_s"].as_f64().expect("failure time") - max_gap_ms(&report) / 1000.0;
    // 80 %: room for a sender slowed by a loaded box (here ~90 % is seen);
    // with the fast path off it is 0.
    let kernel_min = (0.8 * STREAMS * 50.0 * after_s).max(STREAMS * 50.0 * 0.5);
    // With the fast path off b's user space relays all of it (~2,000).
    let user_max = STREAMS * 8.0;
    let metrics = || {
        let out = lab
            .lab
            .command("b", "curl")
            .args(["-sf", "-H"])
            .arg(format!(
                "Authorization: Bearer {}",
                testkit::TEST_ADMIN_TOKEN
            ))
            .arg("http://127.0.0.1:9090/metrics")
            .output()
            .unwrap();
        testkit::Metrics::parse(&String::from_utf8_lossy(&out.stdout))
    };
    // The fast path's metric is refreshed every 500 ms: polled.
    let (kernel, user) = testkit::wait_for("b's fast path counter", Duration::from_secs(5), || {
        let m = metrics();
        let kernel = m.get("tandem_rtp_fast_path_packets_total", &[]);
        let user = m.get("tandem_rtp_packets_relayed_total", &[]);
        let r = if kernel >= kernel_min {
            Ok((kernel, user))
        } else {
            Err(format!("{kernel} < {kernel_min} in the kernel"))
        };
        async move { r }
    })
    .await;
    assert!(
        user <= user_max,
        "b forwarded {kernel} packets in the kernel, {user} (> {user_max}) in user space\n{}",
        lab.log_tail("b", 30)
    );
}
